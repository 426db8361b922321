//! Ready-made secrets on the stack's servers: a user with password `initial-Password-1`, a master
//! allowed to manage it (as on RDS), the master's secret, and the user's secret naming it, so
//! that one fixture serves both strategies. The accounts alone ([`postgres_accounts`],
//! [`mariadb_accounts`], [`ssh_keys`]) serve the conformance kit, which keeps its secrets itself.

use serde_json::{json, Value};

use crate::mariadb_server::MariaDb;
use crate::postgres_server::{ident, PgServer};
use crate::ssh_hosts::{keygen, ssh_user, SshHost};
use crate::{create_secret, random_hex, secrets_manager_client};

/// The password every fixture user starts with.
pub const INITIAL_PASSWORD: &str = "initial-Password-1";

/// A fixture's secret and names.
pub struct Fixture {
    /// The user's secret.
    pub arn: String,
    /// The user (or SSH account).
    pub user: String,
    /// The master's secret (databases).
    pub master_arn: Option<String>,
    /// The master's user name (databases).
    pub master: Option<String>,
    /// The first private key (SSH).
    pub private_key: Option<String>,
}

fn merge(mut value: Value, extra: &Value) -> String {
    for (key, item) in extra.as_object().cloned().unwrap_or_default() {
        value[key] = item;
    }
    value.to_string()
}

/// A fixture's accounts on a database server and their secret values, before any secret exists.
pub struct Accounts {
    /// The user.
    pub user: String,
    /// The master's user name.
    pub master: String,
    /// The user's secret value, without `masterarn`.
    pub value: Value,
    /// The master's secret value.
    pub master_value: Value,
}

impl Accounts {
    /// The user's secret value naming the master's secret.
    pub fn value_with_master(&self, master_arn: &str) -> Value {
        let mut value = self.value.clone();
        value["masterarn"] = json!(master_arn);
        value
    }

    /// Both secrets in the stack's Secrets Manager; `extra` keys merged into the user's.
    async fn into_fixture(self, prefix: &str, extra: &Value) -> Fixture {
        let client = secrets_manager_client().await;
        let master_arn = create_secret(
            &client,
            &format!("{prefix}-master"),
            &self.master_value.to_string(),
        )
        .await;
        let arn = create_secret(
            &client,
            prefix,
            &merge(self.value_with_master(&master_arn), extra),
        )
        .await;
        Fixture {
            arn,
            user: self.user,
            master_arn: Some(master_arn),
            master: Some(self.master),
            private_key: None,
        }
    }
}

/// A PostgreSQL role with [`INITIAL_PASSWORD`] and a CREATEROLE master (`master-Password-1`)
/// with ADMIN OPTION on it, and their secret values on `host` (`127.0.0.1` or `localhost`).
pub async fn postgres_accounts(server: &PgServer, host: &str) -> Accounts {
    let (user, master) = (
        format!("fx_{}", random_hex(4)),
        format!("fx_master_{}", random_hex(4)),
    );
    server
        .run(&format!(
            "CREATE ROLE {u} LOGIN PASSWORD '{INITIAL_PASSWORD}'; \
             CREATE ROLE {m} LOGIN CREATEROLE PASSWORD 'master-Password-1'; GRANT {u} TO {m} WITH ADMIN OPTION;",
            u = ident(&user),
            m = ident(&master)
        ))
        .await;
    let master_value = json!({"engine": "postgres", "host": host, "port": server.port, "username": master,
                              "password": "master-Password-1", "ssl": true});
    let value = json!({"engine": "postgres", "host": host, "port": server.port, "username": user,
                       "password": INITIAL_PASSWORD});
    Accounts {
        user,
        master,
        value,
        master_value,
    }
}

/// A PostgreSQL role, a CREATEROLE master with ADMIN OPTION on it, and their secrets on
/// `host` (`127.0.0.1` or `localhost`); `extra` keys are merged into the user's secret.
pub async fn postgres(server: &PgServer, host: &str, extra: Value) -> Fixture {
    postgres_accounts(server, host)
        .await
        .into_fixture("fx-pg", &extra)
        .await
}

/// A MariaDB user on `%` with [`INITIAL_PASSWORD`], a master with every privilege WITH GRANT
/// OPTION (`master-Password-1`), and their secret values on `host`.
pub fn mariadb_accounts(db: &MariaDb, host: &str) -> Accounts {
    let (user, master) = (
        format!("fx_{}", random_hex(4)),
        format!("fx_master_{}", random_hex(4)),
    );
    db.run(&format!(
        "CREATE USER `{user}`@'%' IDENTIFIED BY '{INITIAL_PASSWORD}'; GRANT SELECT ON mysql.* TO `{user}`@'%'; \
         CREATE USER `{master}`@'%' IDENTIFIED BY 'master-Password-1'; \
         GRANT ALL PRIVILEGES ON *.* TO `{master}`@'%' WITH GRANT OPTION;"
    ));
    let master_value = json!({"engine": "mariadb", "host": host, "port": db.port, "username": master,
                              "password": "master-Password-1", "ssl": true});
    let value = json!({"engine": "mariadb", "host": host, "port": db.port, "username": user,
                       "password": INITIAL_PASSWORD});
    Accounts {
        user,
        master,
        value,
        master_value,
    }
}

/// A MariaDB user on `%`, a master with every privilege WITH GRANT OPTION, and their secrets.
pub async fn mariadb(db: &MariaDb, host: &str, extra: Value) -> Fixture {
    mariadb_accounts(db, host)
        .into_fixture("fx-mariadb", &extra)
        .await
}

/// A fresh key pair authorized (alone) on `hosts`, and the secret value for it with every host
/// pinned; the private key.
pub fn ssh_keys(hosts: &[SshHost]) -> (Value, String) {
    let (private, public) = keygen("fixture");
    for host in hosts {
        host.set_authorized_keys(&format!("{public}\n"), 0o600);
    }
    let addresses: Vec<&str> = hosts.iter().map(|h| h.address.as_str()).collect();
    let pins: serde_json::Map<String, serde_json::Value> = hosts
        .iter()
        .map(|h| (h.address.clone(), json!(h.host_key())))
        .collect();
    let value = json!({"username": ssh_user(), "private_key": private, "public_key": public,
                       "hosts": addresses, "host_keys": pins});
    (value, private)
}

/// A fresh key pair authorized (alone) on both stack hosts, and its secret, both hosts pinned.
pub async fn ssh(hosts: &[SshHost]) -> Fixture {
    let (value, private) = ssh_keys(hosts);
    let client = secrets_manager_client().await;
    let arn = create_secret(&client, "fx-ssh", &value.to_string()).await;
    Fixture {
        arn,
        user: ssh_user(),
        master_arn: None,
        master: None,
        private_key: Some(private),
    }
}
