//! RDS as the strategies need it: where an RDS-managed master secret's database is, and which
//! endpoints reach the same database.
//!
//! RDS keeps a master password in Secrets Manager itself (`ManageMasterUserPassword`): a secret
//! named `rds!db-…` or `rds!cluster-…` that holds only `username` and `password`, with a system
//! tag naming its DB instance or cluster. Its endpoint comes from the RDS API, through the narrow
//! [`RdsApi`] (the function's implementation is the `rotor-rds` crate, on `aws-sdk-rds`; tests
//! use [`crate::testing::MemoryRds`]).
//!
//! "The same server" is decided by that API, never by how alike two names look: a host reaches
//! an instance when it is the instance's endpoint or the endpoint of one of its read replicas,
//! and a cluster when it is the cluster's writer or reader endpoint or the endpoint of one of its
//! instances. A host name only says which instance or cluster to ask about (its first label is
//! the identifier); the endpoint RDS returns must then be that very host and port.

use secret_rotor::{BoxFuture, Error, SecretDescription};

/// The tag RDS puts on the master secret of a DB instance: the instance's ARN.
pub const INSTANCE_TAG: &str = "aws:rds:primaryDBInstanceArn";
/// The tag RDS puts on the master secret of a DB cluster: the cluster's ARN.
pub const CLUSTER_TAG: &str = "aws:rds:primaryDBClusterArn";

/// A DB instance, as `DescribeDBInstances` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RdsInstance {
    /// `DBInstanceIdentifier`.
    pub id: String,
    /// `DBInstanceArn`.
    pub arn: Option<String>,
    /// `Engine` (`postgres`, `mariadb`, `aurora-postgresql`, …).
    pub engine: String,
    /// `Endpoint`: address and port (none while the instance is being created).
    pub endpoint: Option<(String, u16)>,
    /// `DBClusterIdentifier`: the cluster the instance belongs to.
    pub cluster: Option<String>,
    /// `ReadReplicaSourceDBInstanceIdentifier`: the instance this one replicates (an identifier,
    /// or an ARN for a replica in another region).
    pub replica_source: Option<String>,
}

/// A DB cluster, as `DescribeDBClusters` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RdsCluster {
    /// `DBClusterIdentifier`.
    pub id: String,
    /// `DBClusterArn`.
    pub arn: Option<String>,
    /// `Engine`.
    pub engine: String,
    /// `Endpoint`: the writer endpoint.
    pub endpoint: Option<String>,
    /// `ReaderEndpoint`.
    pub reader_endpoint: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// `DBClusterMembers`: each instance's identifier, and whether it is the writer.
    pub members: Vec<(String, bool)>,
}

/// The two RDS calls the strategies make. Both take an identifier or an ARN and answer `None`
/// when RDS knows no such resource.
pub trait RdsApi: Send + Sync {
    /// `DescribeDBInstances` of one instance.
    fn instance<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RdsInstance>, Error>>;

    /// `DescribeDBClusters` of one cluster.
    fn cluster<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RdsCluster>, Error>>;
}

/// The database a master secret is for, as RDS describes it: where writes go, and what else
/// reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdsServer {
    /// A DB instance (not in a cluster).
    Instance(RdsInstance),
    /// A DB cluster.
    Cluster(RdsCluster),
}

impl RdsServer {
    /// The writer's host and port.
    pub fn writer(&self) -> Option<(&str, u16)> {
        match self {
            Self::Instance(instance) => instance
                .endpoint
                .as_ref()
                .map(|(host, port)| (host.as_str(), *port)),
            Self::Cluster(cluster) => cluster.endpoint.as_deref().zip(cluster.port),
        }
    }

    /// The RDS engine.
    pub fn engine(&self) -> &str {
        match self {
            Self::Instance(instance) => &instance.engine,
            Self::Cluster(cluster) => &cluster.engine,
        }
    }

    /// `DB instance <id>` or `DB cluster <id>`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Instance(instance) => format!("RDS DB instance {}", instance.id),
            Self::Cluster(cluster) => format!("RDS DB cluster {}", cluster.id),
        }
    }

    /// Whether `reference` (an identifier or an ARN, as RDS gives them) names this server.
    fn is(&self, reference: &str) -> bool {
        let (id, arn) = match self {
            Self::Instance(instance) => (&instance.id, &instance.arn),
            Self::Cluster(cluster) => (&cluster.id, &cluster.arn),
        };
        reference == id || arn.as_deref() == Some(reference)
    }
}

/// Whether `host` is an RDS endpoint name (`….rds.amazonaws.com`, `….rds.amazonaws.com.cn`), so
/// that asking RDS about it can make sense.
pub fn is_rds_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.split('.').any(|label| label == "rds") && host.contains(".amazonaws.com")
}

/// The server of an RDS-managed master secret, from its system tag; `Ok(None)` when the secret
/// carries neither tag (it is not managed by RDS).
pub async fn managed_master(
    api: &dyn RdsApi,
    description: &SecretDescription,
) -> Result<Option<RdsServer>, Error> {
    if let Some(arn) = description.tags.get(CLUSTER_TAG) {
        return match api.cluster(arn).await? {
            Some(cluster) => Ok(Some(RdsServer::Cluster(cluster))),
            None => Err(Error::invalid_secret(format!(
                "it is the RDS-managed master secret of DB cluster {arn}, which RDS does not know"
            ))),
        };
    }
    if let Some(arn) = description.tags.get(INSTANCE_TAG) {
        return match api.instance(arn).await? {
            Some(instance) => Ok(Some(RdsServer::Instance(instance))),
            None => Err(Error::invalid_secret(format!(
                "it is the RDS-managed master secret of DB instance {arn}, which RDS does not know"
            ))),
        };
    }
    Ok(None)
}

/// The server that `host:port` is an endpoint of, asked of RDS; `None` when RDS lists no such
/// endpoint (or `host` is not an RDS name).
pub async fn server_at(api: &dyn RdsApi, host: &str, port: u16) -> Result<Option<RdsServer>, Error> {
    let Some((id, cluster_endpoint)) = identifier_of(host) else {
        return Ok(None);
    };
    if cluster_endpoint {
        return Ok(api
            .cluster(id)
            .await?
            .filter(|cluster| {
                cluster.port == Some(port)
                    && [&cluster.endpoint, &cluster.reader_endpoint]
                        .into_iter()
                        .any(|endpoint| endpoint.as_deref().is_some_and(|e| same_host(e, host)))
            })
            .map(RdsServer::Cluster));
    }
    let Some(instance) = api.instance(id).await?.filter(|i| endpoint_is(i, host, port)) else {
        return Ok(None);
    };
    if let Some(cluster) = &instance.cluster {
        return Ok(api.cluster(cluster).await?.map(RdsServer::Cluster));
    }
    if let Some(source) = &instance.replica_source {
        return Ok(api.instance(source).await?.map(RdsServer::Instance));
    }
    Ok(Some(RdsServer::Instance(instance)))
}

/// Whether `host:port` reaches `server`: its writer, its cluster's reader endpoint, one of its
/// cluster's instances, or one of its read replicas, by the endpoints RDS returns.
pub async fn reaches(api: &dyn RdsApi, server: &RdsServer, host: &str, port: u16) -> Result<bool, Error> {
    if server
        .writer()
        .is_some_and(|(h, p)| same_host(h, host) && p == port)
    {
        return Ok(true);
    }
    if let RdsServer::Cluster(cluster) = server {
        let reader = cluster.reader_endpoint.as_deref();
        if reader.is_some_and(|r| same_host(r, host)) && cluster.port == Some(port) {
            return Ok(true);
        }
    }
    let Some((id, false)) = identifier_of(host) else {
        return Ok(false);
    };
    let Some(instance) = api.instance(id).await?.filter(|i| endpoint_is(i, host, port)) else {
        return Ok(false);
    };
    Ok(match server {
        RdsServer::Cluster(_) => instance.cluster.as_deref().is_some_and(|c| server.is(c)),
        RdsServer::Instance(_) => instance.replica_source.as_deref().is_some_and(|s| server.is(s)),
    })
}

/// Whether `host:port` is an endpoint that only reads (a cluster's reader endpoint, an instance
/// of a cluster that is not its writer, a read replica), where a password set on the writer
/// arrives by replication.
pub async fn is_replica(api: &dyn RdsApi, host: &str, port: u16) -> Result<bool, Error> {
    let Some((id, cluster_endpoint)) = identifier_of(host) else {
        return Ok(false);
    };
    if cluster_endpoint {
        return Ok(api.cluster(id).await?.is_some_and(|cluster| {
            cluster.port == Some(port)
                && cluster
                    .reader_endpoint
                    .as_deref()
                    .is_some_and(|r| same_host(r, host))
        }));
    }
    let Some(instance) = api.instance(id).await?.filter(|i| endpoint_is(i, host, port)) else {
        return Ok(false);
    };
    if instance.replica_source.is_some() {
        return Ok(true);
    }
    match &instance.cluster {
        Some(cluster) => Ok(api.cluster(cluster).await?.is_some_and(|cluster| {
            cluster
                .members
                .iter()
                .any(|(member, writer)| *member == instance.id && !writer)
        })),
        None => Ok(false),
    }
}

/// The identifier an RDS host name carries (its first label), and whether it is a cluster
/// endpoint (`<id>.cluster-…`, `<id>.cluster-ro-…`, `<id>.cluster-custom-…`).
fn identifier_of(host: &str) -> Option<(&str, bool)> {
    if !is_rds_host(host) {
        return None;
    }
    let mut labels = host.split('.');
    let id = labels.next().filter(|id| is_identifier(id))?;
    let cluster_endpoint = labels
        .next()
        .is_some_and(|label| label.to_ascii_lowercase().starts_with("cluster-"));
    Some((id, cluster_endpoint))
}

/// RDS's rule for instance and cluster identifiers (1 to 63 letters, digits and hyphens, a letter
/// first, no hyphen last or twice in a row): anything else RDS would refuse to describe with an
/// error, where the answer is simply that no such endpoint exists.
fn is_identifier(id: &str) -> bool {
    id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--")
}

fn endpoint_is(instance: &RdsInstance, host: &str, port: u16) -> bool {
    instance
        .endpoint
        .as_ref()
        .is_some_and(|(h, p)| same_host(h, host) && *p == port)
}

/// Host names compare without case (DNS), and nothing else is forgiven.
fn same_host(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The function families of RDS engines: `aurora-postgresql` is `postgres`, `aurora-mysql` and
/// the first Aurora (`aurora`) are `mysql`.
pub fn engine_family(rds_engine: &str) -> &str {
    match rds_engine {
        "aurora" | "aurora-mysql" => "mysql",
        "aurora-postgresql" => "postgres",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryRds;

    const SUFFIX: &str = "abc.us-east-1.rds.amazonaws.com";

    fn instance(id: &str, cluster: Option<&str>, source: Option<&str>) -> RdsInstance {
        RdsInstance {
            id: id.to_owned(),
            arn: Some(format!("arn:aws:rds:us-east-1:123456789012:db:{id}")),
            engine: "postgres".to_owned(),
            endpoint: Some((format!("{id}.{SUFFIX}"), 5432)),
            cluster: cluster.map(str::to_owned),
            replica_source: source.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn replicas_are_the_reader_the_cluster_readers_and_read_replicas_only() {
        let rds = MemoryRds::new();
        rds.add_instance(instance("main", None, None));
        rds.add_instance(instance("main-replica", None, Some("main")));
        rds.add_instance(instance("writer-1", Some("aurora"), None));
        rds.add_instance(instance("reader-2", Some("aurora"), None));
        rds.add_cluster(RdsCluster {
            id: "aurora".to_owned(),
            endpoint: Some(format!("aurora.cluster-{SUFFIX}")),
            reader_endpoint: Some(format!("aurora.cluster-ro-{SUFFIX}")),
            port: Some(5432),
            members: vec![("writer-1".to_owned(), true), ("reader-2".to_owned(), false)],
            ..RdsCluster::default()
        });
        for (host, port, expected) in [
            (format!("main.{SUFFIX}"), 5432, false),
            (format!("main-replica.{SUFFIX}"), 5432, true),
            (format!("main-replica.{SUFFIX}"), 5433, false),
            (format!("aurora.cluster-{SUFFIX}"), 5432, false),
            (format!("aurora.cluster-ro-{SUFFIX}"), 5432, true),
            (format!("writer-1.{SUFFIX}"), 5432, false),
            (format!("reader-2.{SUFFIX}"), 5432, true),
            (format!("unknown.{SUFFIX}"), 5432, false),
            ("db.example.com".to_owned(), 5432, false),
        ] {
            assert_eq!(
                is_replica(&rds, &host, port).await.unwrap(),
                expected,
                "{host}:{port}"
            );
        }
    }

    #[test]
    fn only_rds_names_with_a_valid_identifier_are_asked_about() {
        assert_eq!(
            identifier_of("db-1.abc.us-east-1.rds.amazonaws.com"),
            Some(("db-1", false))
        );
        assert_eq!(
            identifier_of("aurora.cluster-ro-abc.us-east-1.rds.amazonaws.com"),
            Some(("aurora", true))
        );
        assert_eq!(
            identifier_of("DB.abc.cn-north-1.rds.amazonaws.com.cn"),
            Some(("DB", false))
        );
        for host in [
            "db.example.com",
            "127.0.0.1",
            "a--b.abc.us-east-1.rds.amazonaws.com",
            "1db.abc.us-east-1.rds.amazonaws.com",
            "db-.abc.us-east-1.rds.amazonaws.com",
            ".abc.us-east-1.rds.amazonaws.com",
            "rds.example.com",
        ] {
            assert_eq!(identifier_of(host), None, "{host}");
        }
    }
}
