//! A crash at every point. For every engine and strategy, one rotation is recorded to list the
//! crash points it passes (before and after every Secrets Manager call, database statement and
//! per-host SSH action); then, for each point, a fresh secret is rotated and dies exactly there.
//! At that instant some labelled version must authenticate against the real server (the matrix
//! says which); the whole rotation is then re-driven with the same token, as Secrets Manager
//! retries, and must converge: `AWSCURRENT` authenticates, the token is `AWSCURRENT`, no version is
//! `AWSPENDING` without being current, and no second password was generated. The matrix is written
//! to `.local/crash-matrix.txt` (scripts/test prints it).

use std::fmt::Write as _;

use aws_sdk_secretsmanager::Client;
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
use secret_rotor::{failpoint, Engine, Passwords, Rotor};
use serde_json::{json, Value};

/// Where a labelled value is checked against the real target.
enum Target {
    Postgres(PgServer),
    Mariadb(MariaDb),
    Ssh([SshHost; 2]),
}

impl Target {
    async fn authenticates(&self, value: &Value) -> bool {
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
        match self {
            Target::Postgres(server) => server.logs_in(&text("username"), &text("password")).await,
            Target::Mariadb(db) => db.logs_in(&text("username"), &text("password")),
            Target::Ssh(hosts) => hosts.iter().all(|host| host.logs_in(&text("private_key"))),
        }
    }
}

/// One secret, its target, and a rotor for it.
struct Subject<E: Engine> {
    client: Client,
    arn: String,
    store: Recording,
    rotor: Rotor<E>,
    target: Target,
}

async fn value_if_any(client: &Client, arn: &str, stage: &str) -> Option<Value> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .version_stage(stage)
        .send()
        .await
        .ok()?;
    serde_json::from_str(out.secret_string()?).ok()
}

/// Runs the matrix for one engine and strategy; returns its rows.
async fn matrix<E: Engine>(label: &str, setup: impl AsyncFn() -> Subject<E>) -> String {
    let subject = setup().await;
    failpoint::record();
    let recorded = rotate_fully(&subject.rotor, &subject.client, &subject.arn, &new_token()).await;
    let points = failpoint::off();
    assert!(
        recorded.is_ok(),
        "{label}: the recording rotation failed: {:?}",
        recorded.err()
    );
    assert!(points.len() >= 8, "{label}: only {} crash points", points.len());
    let mut rows = String::new();
    for index in 0..points.len() {
        let subject = setup().await;
        let token = new_token();
        start_rotation(&subject.client, &subject.arn, &token).await;
        failpoint::fail_at(index);
        let crashed = run_steps(&subject.rotor, &subject.arn, &token).await;
        let point = failpoint::off().first().copied().unwrap_or("(not reached)");
        let Err((step, _)) = crashed else {
            panic!(
                "{label}: #{index} ({} expected) of {points:?}: the rotation did not reach it",
                points[index]
            );
        };

        // At the instant of the crash: which labelled versions authenticate?
        let mut working = Vec::new();
        for stage in ["AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"] {
            if let Some(value) = value_if_any(&subject.client, &subject.arn, stage).await {
                if subject.target.authenticates(&value).await {
                    working.push(stage);
                }
            }
        }
        assert!(
            !working.is_empty(),
            "{label}: crash at #{index} {point}: no labelled version authenticates"
        );
        let pending_at_crash = value_if_any(&subject.client, &subject.arn, "AWSPENDING").await;
        let generated_at_crash = count(&subject.store.calls(), "GetRandomPassword");

        // Secrets Manager retries the whole rotation with the same token.
        let retried = run_steps(&subject.rotor, &subject.arn, &token).await;
        assert!(
            retried.is_ok(),
            "{label}: crash at #{index} {point}: the retry failed: {:?}",
            retried.err()
        );
        end_rotation(&subject.client, &subject.arn, &token).await;
        let current = value_at(&subject.client, &subject.arn, "AWSCURRENT").await;
        assert!(
            subject.target.authenticates(&current).await,
            "{label}: #{index} {point}: AWSCURRENT refused"
        );
        let labels = labels(&subject.client, &subject.arn).await;
        assert_eq!(
            labels[&token],
            vec!["AWSCURRENT".to_owned()],
            "{label}: #{index} {point}: {labels:?}"
        );
        assert!(
            !labels.values().any(|s| s.iter().any(|l| l == "AWSPENDING")),
            "{label}: #{index} {point}: AWSPENDING left: {labels:?}"
        );
        // A password generated but never stored is discarded; once a pending value is stored, the
        // retry must not generate another.
        let generated = count(&subject.store.calls(), "GetRandomPassword") - generated_at_crash;
        let allowed = if pending_at_crash.is_some() { 0 } else { 1 };
        assert!(
            generated <= allowed,
            "{label}: #{index} {point}: {generated} more passwords generated on retry"
        );
        if let Some(pending) = pending_at_crash.filter(|p| p != &current) {
            let same = ["password", "private_key"]
                .iter()
                .all(|key| pending[*key] == current[*key]);
            assert!(
                same,
                "{label}: #{index} {point}: the retry stored a different secret than the crashed attempt"
            );
        }
        writeln!(
            rows,
            "{label:<32} {index:>3}  {step:<13} {point:<40} {:<28} converged",
            working.join(",")
        )
        .ok();
    }
    rows
}

fn write_matrix(name: &str, rows: &str) {
    let dir = workspace_root().join(".local/crash-matrix");
    std::fs::create_dir_all(&dir).expect("matrix directory");
    let header = format!(
        "{:<32} {:>3}  {:<13} {:<40} {:<28} retry\n",
        "engine", "#", "step", "crash point", "authenticating at the crash"
    );
    std::fs::write(dir.join(format!("{name}.txt")), format!("{header}{rows}")).expect("matrix file");
}

async fn postgres_subject(strategy: Strategy) -> Subject<DatabaseEngine<Postgres>> {
    let server = PgServer::named("pg17");
    let fixture = fixtures::postgres(&server, "127.0.0.1", json!({})).await;
    let client = secrets_manager_client().await;
    let store = Recording::new(client.clone());
    let ca = stack_setting("ROTOR_TLS_CA").map(Into::into);
    let engine = DatabaseEngine::new(Postgres::new(TlsConfigs::new(ca)), strategy);
    let rotor = Rotor::with_passwords(Ok(engine), store.clone(), Passwords::from_lookup(|_| None, ""));
    Subject {
        client,
        arn: fixture.arn,
        store,
        rotor,
        target: Target::Postgres(server),
    }
}

async fn mysql_subject(strategy: Strategy) -> Subject<DatabaseEngine<Mysql>> {
    let db = MariaDb::new();
    let fixture = fixtures::mariadb(&db, "127.0.0.1", json!({})).await;
    let client = secrets_manager_client().await;
    let store = Recording::new(client.clone());
    let engine = DatabaseEngine::new(
        Mysql::new(stack_setting("ROTOR_TLS_CA").map(Into::into), None),
        strategy,
    );
    let rotor = Rotor::with_passwords(
        Ok(engine),
        store.clone(),
        Passwords::from_lookup(|_| None, "/@\"'\\"),
    );
    Subject {
        client,
        arn: fixture.arn,
        store,
        rotor,
        target: Target::Mariadb(db),
    }
}

async fn ssh_subject() -> Subject<SshKeyEngine> {
    let hosts = SshHost::both();
    let fixture = fixtures::ssh(&hosts).await;
    let client = secrets_manager_client().await;
    let store = Recording::new(client.clone());
    let rotor = Rotor::with_passwords(
        Ok(SshKeyEngine::default()),
        store.clone(),
        Passwords::from_lookup(|_| None, ""),
    );
    Subject {
        client,
        arn: fixture.arn,
        store,
        rotor,
        target: Target::Ssh(hosts),
    }
}

#[tokio::test]
async fn postgres_survives_a_crash_at_every_point() {
    let mut rows = matrix("postgres/single-user", async || {
        postgres_subject(Strategy::SingleUser).await
    })
    .await;
    rows += &matrix("postgres/alternating-users", async || {
        postgres_subject(Strategy::AlternatingUsers).await
    })
    .await;
    write_matrix("postgres", &rows);
}

#[tokio::test]
async fn mysql_survives_a_crash_at_every_point() {
    let mut rows = matrix("mysql/single-user", async || {
        mysql_subject(Strategy::SingleUser).await
    })
    .await;
    rows += &matrix("mysql/alternating-users", async || {
        mysql_subject(Strategy::AlternatingUsers).await
    })
    .await;
    write_matrix("mysql", &rows);
}

#[tokio::test]
async fn ssh_key_survives_a_crash_at_every_point() {
    let rows = matrix("ssh-key", async || ssh_subject().await).await;
    write_matrix("ssh-key", &rows);
}
