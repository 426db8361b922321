//! The RDS API as the database functions need it, on `aws-sdk-rds`.
//!
//! [`Rds`] implements `rotor_database::rds::RdsApi` (two calls: `DescribeDBInstances` and
//! `DescribeDBClusters` of one resource), so that an alternating-users rotation whose master is
//! an RDS-managed secret (`rds!db-…`, `rds!cluster-…`: no `host`) finds its database, and so
//! that a secret on a reader, a replica or an instance endpoint is known to be on the master's
//! database. The client is built at the first call, not at the function's start: a rotation
//! that never asks RDS (single user, or a master with a `host` on the very same endpoint) pays
//! nothing for it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rotor_database::{Database, DatabaseEngine};
//!
//! fn asking_rds<D: Database>(engine: DatabaseEngine<D>) -> DatabaseEngine<D> {
//!     engine.with_rds(Arc::new(rotor_rds::Rds::from_env()))
//! }
//! ```

use aws_sdk_rds::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rds::Client;
use rotor_database::rds::{RdsApi, RdsCluster, RdsInstance};
use secret_rotor::{BoxFuture, Error};
use tokio::sync::OnceCell;

/// [`RdsApi`] on the RDS API, its client built at first use from the environment
/// (`AWS_ENDPOINT_URL_RDS`, then `AWS_ENDPOINT_URL`, name its endpoint).
#[derive(Debug, Default)]
pub struct Rds {
    client: OnceCell<Client>,
}

impl Rds {
    /// The API, built at its first call.
    pub fn from_env() -> Self {
        Self::default()
    }

    /// The API on a client built elsewhere.
    pub fn new(client: Client) -> Self {
        Self {
            client: OnceCell::new_with(Some(client)),
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let config =
                    secret_rotor::aws::sdk_config(&["AWS_ENDPOINT_URL_RDS", "AWS_ENDPOINT_URL"]).await;
                Client::new(&config)
            })
            .await
    }
}

/// Whether RDS answered that the resource does not exist.
fn not_found<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(err, SdkError::ServiceError(service)
        if matches!(service.err().code(), Some("DBInstanceNotFound" | "DBInstanceNotFoundFault" | "DBClusterNotFoundFault")))
}

fn port(port: Option<i32>) -> Option<u16> {
    port.and_then(|p| u16::try_from(p).ok())
}

impl RdsApi for Rds {
    fn instance<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RdsInstance>, Error>> {
        Box::pin(async move {
            let out = match self
                .client()
                .await
                .describe_db_instances()
                .db_instance_identifier(id)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(secret_rotor::aws::sdk_error("DescribeDBInstances", id, e)),
            };
            Ok(out.db_instances.unwrap_or_default().into_iter().next().map(|i| {
                let endpoint = i.endpoint.and_then(|e| Some((e.address?, port(e.port)?)));
                RdsInstance {
                    id: i.db_instance_identifier.unwrap_or_default(),
                    arn: i.db_instance_arn,
                    engine: i.engine.unwrap_or_default(),
                    endpoint,
                    cluster: i.db_cluster_identifier,
                    replica_source: i.read_replica_source_db_instance_identifier,
                }
            }))
        })
    }

    fn cluster<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RdsCluster>, Error>> {
        Box::pin(async move {
            let out = match self
                .client()
                .await
                .describe_db_clusters()
                .db_cluster_identifier(id)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(secret_rotor::aws::sdk_error("DescribeDBClusters", id, e)),
            };
            Ok(out
                .db_clusters
                .unwrap_or_default()
                .into_iter()
                .next()
                .map(|c| RdsCluster {
                    id: c.db_cluster_identifier.unwrap_or_default(),
                    arn: c.db_cluster_arn,
                    engine: c.engine.unwrap_or_default(),
                    endpoint: c.endpoint,
                    reader_endpoint: c.reader_endpoint,
                    port: port(c.port),
                    members: c
                        .db_cluster_members
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|m| {
                            Some((m.db_instance_identifier?, m.is_cluster_writer.unwrap_or(false)))
                        })
                        .collect(),
                }))
        })
    }
}
