//! A crash at every point, through the framework's conformance kit (`secret_rotor::testing::
//! conformance`) on the stack's real Secrets Manager API and real servers. For every engine and
//! strategy the kit rotates twice, repeats every step, fails each Secrets Manager call once, and
//! then records the crash points one rotation passes (before and after every Secrets Manager
//! call, database statement and per-host SSH action) and, for each point, rotates a fresh secret
//! that dies exactly there. At that instant some labelled version must authenticate against the
//! real server (the matrix says which); the whole rotation is then re-driven with the same token,
//! as Secrets Manager retries, and must converge: `AWSCURRENT` authenticates, the token is
//! `AWSCURRENT`, nothing is left `AWSPENDING`, and no second password was generated. The matrix is
//! written to `.local/crash-matrix/` (scripts/test prints it).

use rotor_database::{DatabaseEngine, Strategy};
use rotor_mysql::Mysql;
use rotor_postgres::tls::TlsConfigs;
use rotor_postgres::Postgres;
use rotor_ssh_key::SshKeyEngine;
use rotor_tests::fixtures;
use rotor_tests::lambda::workspace_root;
use rotor_tests::mariadb_server::MariaDb;
use rotor_tests::postgres_server::PgServer;
use rotor_tests::ssh_hosts::SshHost;
use rotor_tests::*;
use secret_rotor::testing::conformance::{Conformance, KitStore, Target};
use secret_rotor::SecretString;
use serde_json::Value;

/// Where a labelled value is checked against the real target.
enum Server {
    Postgres(PgServer),
    Mariadb(MariaDb),
    Ssh(Vec<SshHost>),
}

impl Target for Server {
    async fn authenticates(&self, value: &SecretString) -> bool {
        let value: Value = serde_json::from_str(value.expose()).unwrap_or_default();
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
        match self {
            Server::Postgres(server) => server.logs_in(&text("username"), &text("password")).await,
            Server::Mariadb(db) => db.logs_in(&text("username"), &text("password")),
            Server::Ssh(hosts) => hosts.iter().all(|host| host.logs_in(&text("private_key"))),
        }
    }
}

fn write_matrix(name: &str, rows: &str) {
    let dir = workspace_root().join(".local/crash-matrix");
    std::fs::create_dir_all(&dir).expect("matrix directory");
    let header = format!(
        "{:<32} {:>3}  {:<13} {:<44} {:<28} retry\n",
        "engine", "#", "step", "crash point", "authenticating at the crash"
    );
    std::fs::write(dir.join(format!("{name}.txt")), format!("{header}{rows}")).expect("matrix file");
}

/// The matrix rows of a kit's report (its other lines say which cases passed).
fn rows(report: &str) -> String {
    report
        .lines()
        .filter(|line| line.ends_with("converged") && !line.contains(": "))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The user's secret value, its master's secret created in `store` first.
async fn with_master(store: &Recording, accounts: fixtures::Accounts) -> SecretString {
    let master = SecretString::from(accounts.master_value.to_string());
    let master_arn = store.create("fx-master", &master).await;
    SecretString::from(accounts.value_with_master(&master_arn).to_string())
}

#[tokio::test]
async fn postgres_survives_a_crash_at_every_point() {
    let server = PgServer::named("pg17");
    let target = Server::Postgres(server.clone());
    let store = Recording::new(secrets_manager_client().await);
    let ca = stack_setting("ROTOR_TLS_CA").map(Into::into);
    let mut matrix = String::new();
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let report = Conformance::new(&format!("postgres/{strategy}"), &target)
            .run_on(&store, async |store: &Recording| {
                let accounts = fixtures::postgres_accounts(&server, "127.0.0.1").await;
                let engine = DatabaseEngine::new(Postgres::new(TlsConfigs::new(ca.clone())), strategy);
                (engine, with_master(store, accounts).await)
            })
            .await;
        matrix += &rows(&report);
    }
    write_matrix("postgres", &matrix);
}

#[tokio::test]
async fn mysql_survives_a_crash_at_every_point() {
    let db = MariaDb::new();
    let target = Server::Mariadb(MariaDb::new());
    let store = Recording::new(secrets_manager_client().await);
    let mut matrix = String::new();
    for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
        let report = Conformance::new(&format!("mysql/{strategy}"), &target)
            .run_on(&store, async |store: &Recording| {
                let accounts = fixtures::mariadb_accounts(&db, "127.0.0.1");
                let engine = DatabaseEngine::new(
                    Mysql::new(stack_setting("ROTOR_TLS_CA").map(Into::into), None),
                    strategy,
                );
                (engine, with_master(store, accounts).await)
            })
            .await;
        matrix += &rows(&report);
    }
    write_matrix("mysql", &matrix);
}

#[tokio::test]
async fn ssh_key_survives_a_crash_at_every_point() {
    let hosts = SshHost::both();
    let target = Server::Ssh(hosts.to_vec());
    let store = Recording::new(secrets_manager_client().await);
    let report = Conformance::new("ssh-key", &target)
        .run_on(&store, async |_store: &Recording| {
            let (value, _) = fixtures::ssh_keys(&hosts);
            (SshKeyEngine::default(), SecretString::from(value.to_string()))
        })
        .await;
    write_matrix("ssh-key", &rows(&report));
}
