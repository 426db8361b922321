//! RDS and Aurora as a platform team runs them, on the stack's RDS API (moto) and real servers.
//!
//! `scripts/stack` creates, in moto's RDS API, an instance on PostgreSQL 15 with a read replica
//! (a real streaming replica of it), an Aurora PostgreSQL cluster on PostgreSQL 17 with two
//! instances, an instance on MariaDB and an unrelated instance, each with an RDS-managed master
//! secret (`rds!db-…`, `rds!cluster-…`: only `username` and `password`, and RDS's system tag).
//! Their endpoint names resolve to loopback (`/etc/hosts`) and the stack's certificate covers
//! them, so every login verifies TLS against the name the secret gives.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use rotor_database::{DatabaseEngine, Strategy};
use rotor_mysql::Mysql;
use rotor_postgres::tls::TlsConfigs;
use rotor_postgres::Postgres;
use rotor_tests::cli::{rotor, rotor_json};
use rotor_tests::lambda::LambdaFunction;
use rotor_tests::mariadb_server::MariaDb;
use rotor_tests::postgres_server::{ident, literal, PgServer};
use rotor_tests::*;
use secret_rotor::{Engine, ErrorKind, Passwords, Rotor, Step};
use serde_json::{json, Value};

const INITIAL: &str = "initial-Password-1";

fn setting(name: &str) -> String {
    stack_setting(name).unwrap_or_else(|| panic!("no {name} in the stack: run `scripts/stack up`"))
}

fn ca() -> PathBuf {
    PathBuf::from(setting("ROTOR_TLS_CA"))
}

fn rotor_for<E: Engine>(engine: E, client: &Client) -> Rotor<E> {
    let passwords = Passwords::from_lookup(|_| None, engine.default_excluded_characters());
    Rotor::with_passwords(Ok(engine), Recording::new(client.clone()), passwords)
}

/// The PostgreSQL engine as the function builds it (RDS asked through the stack's API).
fn postgres(strategy: Strategy) -> DatabaseEngine<Postgres> {
    DatabaseEngine::new(Postgres::new(TlsConfigs::new(Some(ca()))), strategy).with_rds(rds_api())
}

/// A role on `server` with [`INITIAL`], which the RDS master (`admin`, the stack's) may manage:
/// on PostgreSQL 16+ a CREATEROLE master needs ADMIN OPTION on a role it did not create.
async fn pg_user(server: &PgServer) -> String {
    let user = format!("rds_{}", random_hex(4));
    let mut sql = format!(
        "CREATE ROLE {u} LOGIN PASSWORD {p}; GRANT CONNECT ON DATABASE postgres TO {u};",
        u = ident(&user),
        p = literal(INITIAL)
    );
    if server.name != "pg15" {
        sql.push_str(&format!(" GRANT {} TO admin WITH ADMIN OPTION;", ident(&user)));
    }
    // Concurrent grants to one role fail with "tuple concurrently updated": one at a time.
    static ROLE_CHANGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = ROLE_CHANGES.lock().await;
    server.run(&sql).await;
    user
}

/// An alternating-users secret for `user` on `host:port`, whose master is `master_arn`.
async fn secret(
    client: &Client,
    engine: &str,
    host: &str,
    port: u16,
    user: &str,
    master_arn: &str,
) -> String {
    let value = json!({"engine": engine, "host": host, "port": port, "username": user,
                       "password": INITIAL, "dbname": if engine == "postgres" { "postgres" } else { "mysql" },
                       "masterarn": master_arn});
    create_secret(client, "rds", &value.to_string()).await
}

/// An alternating-users secret for `user` on the stack's RDS instance `rotor-pg15`, whose master
/// is its RDS-managed secret.
async fn pg15_secret(client: &Client, server: &PgServer, user: &str) -> String {
    let host = setting("ROTOR_RDS_PG15_HOST");
    let master_arn = setting("ROTOR_RDS_PG15_MASTER_ARN");
    secret(client, "postgres", &host, server.port, user, &master_arn).await
}

fn str_of(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

async fn pg_logs_in(server: &PgServer, client: &Client, arn: &str, stage: &str) -> bool {
    let value = value_at(client, arn, stage).await;
    server
        .logs_in(&str_of(&value, "username"), &str_of(&value, "password"))
        .await
}

/// Done when: an alternating-users secret whose master is an RDS-managed `rds!db-…` secret
/// rotates twice through the function behind the Runtime API.
#[tokio::test]
async fn postgres_with_an_rds_managed_master_rotates_twice_through_the_runtime_api() {
    let server = PgServer::named("pg15");
    let client = secrets_manager_client().await;
    let user = pg_user(&server).await;
    let master_arn = setting("ROTOR_RDS_PG15_MASTER_ARN");
    let master = value_at(&client, &master_arn, "AWSCURRENT").await;
    assert!(
        master.get("host").is_none(),
        "an RDS-managed master names no host: {master:?}"
    );
    let arn = pg15_secret(&client, &server, &user).await;
    let ca = setting("ROTOR_TLS_CA");
    let function = LambdaFunction::start(
        "postgres",
        &[
            ("ROTATION_STRATEGY", "alternating-users"),
            ("DATABASE_CA_BUNDLE", &ca),
        ],
    );
    let invoker = rotor_cli::invoke::InvokeClient::new(&function.invoke_endpoint).expect("endpoint");
    let steps = rotor_cli::invoke::InvokeStep {
        client: &invoker,
        function: &function.name,
        timeout: Duration::from_secs(60),
    };
    let mut users = Vec::new();
    for _ in 0..2 {
        let token = new_token();
        start_rotation(&client, &arn, &token).await;
        let result = secret_rotor::driver::Driver::steps_only(&steps)
            .steps(&arn, &token, &Step::ALL, |_| ())
            .await;
        if let Err((step, err)) = result {
            panic!("{step} failed: {err}\n{}", function.logs());
        }
        end_rotation(&client, &arn, &token).await;
        assert!(pg_logs_in(&server, &client, &arn, "AWSCURRENT").await);
        assert!(pg_logs_in(&server, &client, &arn, "AWSPREVIOUS").await);
        users.push(str_of(&value_at(&client, &arn, "AWSCURRENT").await, "username"));
    }
    assert_eq!(users, vec![format!("{user}_clone"), user.clone()]);
    let logs = function.logs();
    assert!(
        logs.contains("the RDS-managed master secret is for RDS DB instance rotor-pg15"),
        "the function said where the master's database is:\n{logs}"
    );
    assert!(
        !logs.contains("P@55w0rd!"),
        "the master's password reached the logs"
    );
}

#[tokio::test]
async fn mariadb_with_an_rds_managed_master_rotates_twice() {
    let db = MariaDb::new();
    let client = secrets_manager_client().await;
    let user = format!("rds_{}", random_hex(4));
    db.run(&format!(
        "CREATE USER `{user}`@'%' IDENTIFIED BY '{INITIAL}'; GRANT SELECT ON mysql.* TO `{user}`@'%';"
    ));
    let arn = secret(
        &client,
        "mariadb",
        &setting("ROTOR_RDS_MARIADB_HOST"),
        db.port,
        &user,
        &setting("ROTOR_RDS_MARIADB_MASTER_ARN"),
    )
    .await;
    let engine =
        DatabaseEngine::new(Mysql::new(Some(ca()), None), Strategy::AlternatingUsers).with_rds(rds_api());
    let rotor = rotor_for(engine, &client);
    for _ in 0..2 {
        if let Err((step, err)) = rotate_fully(&rotor, &client, &arn, &new_token()).await {
            panic!("{step} failed: {err}");
        }
        for stage in ["AWSCURRENT", "AWSPREVIOUS"] {
            let value = value_at(&client, &arn, stage).await;
            assert!(
                db.logs_in(&str_of(&value, "username"), &str_of(&value, "password")),
                "{stage}"
            );
        }
    }
    assert_eq!(
        db.normalised_grants(&user, "%"),
        db.normalised_grants(&format!("{user}_clone"), "%")
    );
}

#[tokio::test]
async fn a_secret_on_the_aurora_reader_endpoint_or_an_instance_endpoint_rotates_with_the_cluster_master() {
    let server = PgServer::named("pg17");
    let client = secrets_manager_client().await;
    let master_arn = setting("ROTOR_RDS_AURORA_MASTER_ARN");
    for host in [
        setting("ROTOR_RDS_AURORA_READER_HOST"),
        setting("ROTOR_RDS_AURORA_INSTANCE_HOST"),
    ] {
        let user = pg_user(&server).await;
        let arn = secret(&client, "postgres", &host, server.port, &user, &master_arn).await;
        let rotor = rotor_for(postgres(Strategy::AlternatingUsers), &client);
        for _ in 0..2 {
            if let Err((step, err)) = rotate_fully(&rotor, &client, &arn, &new_token()).await {
                panic!("{host}: {step} failed: {err}");
            }
            assert!(pg_logs_in(&server, &client, &arn, "AWSCURRENT").await, "{host}");
            assert!(pg_logs_in(&server, &client, &arn, "AWSPREVIOUS").await, "{host}");
        }
    }
}

#[tokio::test]
async fn a_secret_on_an_unrelated_server_is_refused_naming_both_servers() {
    let server = PgServer::named("pg17");
    let client = secrets_manager_client().await;
    let user = pg_user(&server).await;
    let unrelated = setting("ROTOR_RDS_UNRELATED_HOST");
    // The unrelated instance is on the same machine here, so only RDS's answer can refuse it.
    let arn = secret(
        &client,
        "postgres",
        &unrelated,
        server.port,
        &user,
        &setting("ROTOR_RDS_AURORA_MASTER_ARN"),
    )
    .await;
    let rotor = rotor_for(postgres(Strategy::AlternatingUsers), &client);
    let (step, err) = rotate_fully(&rotor, &client, &arn, &new_token())
        .await
        .unwrap_err();
    assert_eq!(
        (step, err.kind()),
        (Step::SetSecret, ErrorKind::InvalidSecret),
        "{err}"
    );
    let message = err.to_string();
    let writer = setting("ROTOR_RDS_AURORA_WRITER_HOST");
    assert!(
        message.contains(&format!(
            "{writer}:{} (RDS DB cluster rotor-aurora-pg)",
            server.port
        )) && message.contains(&format!("{unrelated}:{}", server.port)),
        "{message}"
    );
    assert!(
        !server.role_exists(&format!("{user}_clone")).await,
        "nothing was created on the refused server"
    );
}

/// The replica is a real streaming replica of PostgreSQL 15, its replay paused: testSecret on
/// it is refused until the password arrives, waits, and passes once replay resumes; the password
/// was set on the writer.
#[tokio::test]
async fn test_secret_on_a_read_replica_waits_for_the_password_to_replicate() {
    let primary = PgServer::named("pg15");
    let replica = PgServer::named("pg15_replica");
    let client = secrets_manager_client().await;
    let user = pg_user(&primary).await;
    wait_until_logs_in(&replica, &user, INITIAL).await;
    let arn = secret(
        &client,
        "postgres",
        &setting("ROTOR_RDS_PG15_REPLICA_HOST"),
        replica.port,
        &user,
        &setting("ROTOR_RDS_PG15_MASTER_ARN"),
    )
    .await;
    let rotor = rotor_for(postgres(Strategy::AlternatingUsers), &client);
    let token = new_token();
    start_rotation(&client, &arn, &token).await;
    let logs = CapturedLogs::default();
    let _guard = logs.set_default("info");
    let handle = |step| {
        let event = event(step, &arn, &token);
        let rotor = &rotor;
        async move { rotor.handle(&event, deadline()).await }
    };
    handle(Step::CreateSecret).await.expect("createSecret");
    let pending = value_at_version(&client, &arn, &token).await;
    let (clone, password) = (str_of(&pending, "username"), str_of(&pending, "password"));
    let replay = replica.admin().await;
    replay
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .expect("pause replay");
    handle(Step::SetSecret)
        .await
        .unwrap_or_else(|e| panic!("setSecret: {e}\n{}", logs.text()));
    assert!(
        primary.logs_in(&clone, &password).await,
        "the password was set on the writer"
    );
    assert!(
        !replica.logs_in(&clone, &password).await,
        "not yet on the paused replica"
    );
    let resume = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        replay
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .expect("resume replay");
    });
    let started = std::time::Instant::now();
    let tested = handle(Step::TestSecret).await;
    resume.await.expect("resumed");
    tested.unwrap_or_else(|e| panic!("testSecret: {e}\n{}", logs.text()));
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "testSecret waited for replay"
    );
    assert!(
        logs.text().contains("waiting for the password to replicate"),
        "{}",
        logs.text()
    );
    handle(Step::FinishSecret).await.expect("finishSecret");
    end_rotation(&client, &arn, &token).await;
    assert!(pg_logs_in(&replica, &client, &arn, "AWSCURRENT").await);
    assert!(pg_logs_in(&replica, &client, &arn, "AWSPREVIOUS").await);
}

async fn value_at_version(client: &Client, arn: &str, version: &str) -> Value {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .version_id(version)
        .send()
        .await
        .expect("GetSecretValue");
    serde_json::from_str(out.secret_string().expect("string")).expect("JSON")
}

/// The RDS API refusing connections, then hanging: setSecret fails (transient, then out of time
/// within its deadline) before it changes anything, and the retry of the same token converges
/// once RDS answers again.
#[tokio::test]
async fn the_rds_api_refusing_or_hanging_fails_set_secret_cleanly_and_the_retry_converges() {
    let server = PgServer::named("pg15");
    let client = secrets_manager_client().await;
    let user = pg_user(&server).await;
    let arn = pg15_secret(&client, &server, &user).await;
    let moto_port: u16 = setting("AWS_ENDPOINT_URL")
        .rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .expect("the stack's endpoint has a port");
    let mut switch = rotor_tests::net::Switch::off(moto_port).await;
    let engine = DatabaseEngine::new(
        Postgres::new(TlsConfigs::new(Some(ca()))),
        Strategy::AlternatingUsers,
    )
    .with_rds(rds_api_at(&format!("http://127.0.0.1:{}", switch.port)));
    let rotor = rotor_for(engine, &client);
    let token = new_token();
    start_rotation(&client, &arn, &token).await;
    let step = |step, budget| {
        let event = event(step, &arn, &token);
        let rotor = &rotor;
        async move { rotor.handle(&event, secret_rotor::Deadline::after(budget)).await }
    };
    step(Step::CreateSecret, STEP_TIME).await.expect("createSecret");
    let clone = format!("{user}_clone");
    let clone_exists = || server.role_exists(&clone);

    let refused = step(Step::SetSecret, STEP_TIME).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Transient, "{refused}");
    assert!(refused.to_string().contains("DescribeDBInstances"), "{refused}");
    assert!(!clone_exists().await, "nothing changed while RDS refused");

    switch.hang().await;
    let started = std::time::Instant::now();
    let hung = step(Step::SetSecret, Duration::from_secs(3)).await.unwrap_err();
    assert_eq!(hung.kind(), ErrorKind::Timeout, "{hung}");
    assert!(
        hung.to_string().contains("asking RDS for the master's database"),
        "{hung}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the deadline"
    );
    assert!(!clone_exists().await, "nothing changed while RDS hung");

    switch.on().await;
    for retried in [Step::SetSecret, Step::TestSecret, Step::FinishSecret] {
        step(retried, STEP_TIME)
            .await
            .unwrap_or_else(|e| panic!("{retried}: {e}"));
    }
    end_rotation(&client, &arn, &token).await;
    assert!(pg_logs_in(&server, &client, &arn, "AWSCURRENT").await);
    assert!(pg_logs_in(&server, &client, &arn, "AWSPREVIOUS").await);
}

async fn wait_until_logs_in(server: &PgServer, user: &str, password: &str) {
    for _ in 0..100 {
        if server.logs_in(user, password).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{user} never reached {}", server.name);
}

#[tokio::test]
async fn the_cli_knows_rds_managed_masters() {
    let client = secrets_manager_client().await;
    let master_arn = setting("ROTOR_RDS_PG15_MASTER_ARN");
    let (code, stdout, stderr) = rotor(&["status", &master_arn]);
    assert!(
        stdout.contains("managed    by RDS, master secret of DB instance arn:aws:rds:us-east-1:"),
        "{code} {stdout} {stderr}"
    );
    let (_, doc) = rotor_json(&["status", &master_arn]);
    assert!(
        doc["managed_by_rds"]
            .as_str()
            .is_some_and(|r| r.ends_with(":db:rotor-pg15")),
        "{doc}"
    );
    assert!(
        doc.get("master").is_none(),
        "an RDS-managed master names none: {doc}"
    );
    let server = PgServer::named("pg15");
    let user = pg_user(&server).await;
    let arn = pg15_secret(&client, &server, &user).await;
    let (_, stdout, stderr) = rotor(&["status", &arn]);
    assert!(
        stdout.contains("(managed by RDS for DB instance"),
        "{stdout} {stderr}"
    );
    let (code, stdout, stderr) = rotor(&[
        "check",
        &arn,
        "--engine",
        "postgres",
        "--strategy",
        "alternating-users",
    ]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert!(
        stdout.contains("then the master")
            && stdout.contains("the master's database, from RDS: RDS DB instance rotor-pg15"),
        "{stdout}"
    );
}

/// Single user changes the password where the secret points: on a read replica the server
/// refuses, and the step fails saying the server accepts no writes and that passwords are set on
/// the writer, with nothing changed. (Retryable: a writer failing over answers the same.)
#[tokio::test]
async fn single_user_on_a_read_replica_fails_saying_passwords_are_set_on_the_writer() {
    let primary = PgServer::named("pg15");
    let replica = PgServer::named("pg15_replica");
    let client = secrets_manager_client().await;
    let user = pg_user(&primary).await;
    wait_until_logs_in(&replica, &user, INITIAL).await;
    let value = json!({"engine": "postgres", "host": setting("ROTOR_RDS_PG15_REPLICA_HOST"),
                       "port": replica.port, "username": user, "password": INITIAL, "dbname": "postgres"});
    let arn = create_secret(&client, "rds", &value.to_string()).await;
    let rotor = rotor_for(postgres(Strategy::SingleUser), &client);
    let (step, err) = rotate_fully(&rotor, &client, &arn, &new_token())
        .await
        .unwrap_err();
    assert_eq!(
        (step, err.kind()),
        (Step::SetSecret, ErrorKind::Transient),
        "{err}"
    );
    assert!(
        err.to_string().contains("accepts no writes")
            && err.to_string().contains("passwords are set on the writer"),
        "{err}"
    );
    assert!(
        primary.logs_in(&user, INITIAL).await,
        "the password did not change"
    );
}
