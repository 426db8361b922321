//! Faults of the parts around a rotation, and the process killed for real.
//!
//! - The database refusing connections during setSecret, or hanging: the step fails cleanly within
//!   its deadline with a retryable error, and the rotation completes when retried after the fault.
//! - A Secrets Manager endpoint refusing connections: the same.
//! - The function process killed with SIGKILL at random moments of each step, through the Runtime
//!   API; a fresh process (on a fresh port) re-drives the rotation, which converges.

use std::time::{Duration, Instant};

use rotor_cli::invoke::InvokeClient;
use rotor_database::{DatabaseEngine, Strategy};
use rotor_postgres::tls::TlsConfigs;
use rotor_postgres::Postgres;
use rotor_tests::lambda::LambdaFunction;
use rotor_tests::net::Switch;
use rotor_tests::postgres_server::{ident, PgServer};
use rotor_tests::*;
use secret_rotor::{Deadline, ErrorKind, Passwords, Rotor, SecretsManager, Step};
use serde_json::{json, Value};

fn pg_rotor(store: Recording) -> Rotor<DatabaseEngine<Postgres>> {
    let ca = stack_setting("ROTOR_TLS_CA").map(Into::into);
    let engine = DatabaseEngine::new(Postgres::new(TlsConfigs::new(ca)), Strategy::SingleUser);
    Rotor::with_passwords(Ok(engine), store, Passwords::from_lookup(|_| None, ""))
}

/// A role on PostgreSQL 17 and its secret pointing at `port` (the server, or a switch before it).
async fn pg_secret(server: &PgServer, port: u16) -> (String, String) {
    let user = format!("fault_{}", random_hex(4));
    server
        .run(&format!(
            "CREATE ROLE {} LOGIN PASSWORD 'initial-Password-1'",
            ident(&user)
        ))
        .await;
    let client = secrets_manager_client().await;
    let value = json!({"engine": "postgres", "host": "127.0.0.1", "port": port, "username": user,
                       "password": "initial-Password-1"});
    (create_secret(&client, "fault-pg", &value.to_string()).await, user)
}

async fn logs_in(server: &PgServer, value: &Value) -> bool {
    server
        .logs_in(
            value["username"].as_str().unwrap_or_default(),
            value["password"].as_str().unwrap_or_default(),
        )
        .await
}

#[tokio::test]
async fn database_refusing_or_hanging_during_set_fails_within_the_deadline_then_converges() {
    let server = PgServer::named("pg17");
    let mut switch = Switch::off(server.port).await;
    switch.on().await;
    let (arn, _) = pg_secret(&server, switch.port).await;
    let client = secrets_manager_client().await;
    let rotor = pg_rotor(Recording::new(client.clone()));
    let token = begin_rotation(&rotor, &client, &arn).await;

    // The database stops: refused connections.
    switch.stop();
    let started = Instant::now();
    let err = rotor
        .handle(
            &event(Step::SetSecret, &arn, &token),
            Deadline::after(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    assert!(err.kind().is_retryable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "within the deadline");

    // The database hangs: the deadline bounds the step.
    switch.hang().await;
    let started = Instant::now();
    let err = rotor
        .handle(
            &event(Step::SetSecret, &arn, &token),
            Deadline::after(Duration::from_secs(2)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    assert!(
        logs_in(&server, &current).await,
        "nothing changed: AWSCURRENT still works"
    );

    // Back: the service's retry completes the rotation with the same password.
    switch.on().await;
    let pending = value_at(&client, &arn, "AWSPENDING").await;
    run_steps(&rotor, &arn, &token).await.expect("retried rotation");
    end_rotation(&client, &arn, &token).await;
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    assert_eq!(current["password"], pending["password"]);
    assert!(logs_in(&server, &current).await);
}

#[tokio::test]
async fn secrets_manager_refusing_connections_is_transient_then_converges() {
    let server = PgServer::named("pg17");
    let (arn, _) = pg_secret(&server, server.port).await;
    let client = secrets_manager_client().await;
    let token = new_token();
    start_rotation(&client, &arn, &token).await;

    let closed = Switch::off(1).await;
    let unreachable = aws_sdk_secretsmanager::Client::from_conf(
        client
            .config()
            .to_builder()
            .endpoint_url(format!("http://127.0.0.1:{}", closed.port))
            .build(),
    );
    let broken = Rotor::with_passwords(
        Ok(DatabaseEngine::new(
            Postgres::new(TlsConfigs::new(None)),
            Strategy::SingleUser,
        )),
        SecretsManager::new(unreachable),
        Passwords::from_lookup(|_| None, ""),
    );
    let started = Instant::now();
    let err = broken
        .handle(
            &event(Step::CreateSecret, &arn, &token),
            Deadline::after(Duration::from_secs(10)),
        )
        .await
        .unwrap_err();
    assert!(err.kind().is_retryable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains("DescribeSecret"), "{err}");

    let rotor = pg_rotor(Recording::new(client.clone()));
    run_steps(&rotor, &arn, &token)
        .await
        .expect("rotation once the endpoint answers");
    end_rotation(&client, &arn, &token).await;
    assert!(logs_in(&server, &value_at(&client, &arn, "AWSCURRENT").await).await);
}

#[tokio::test]
async fn the_function_killed_with_sigkill_mid_step_then_re_driven_converges() {
    let server = PgServer::named("pg17");
    let ca = stack_setting("ROTOR_TLS_CA").expect("CA");
    let client = secrets_manager_client().await;
    let mut report = Vec::new();
    for round in 0..8 {
        let (arn, _) = pg_secret(&server, server.port).await;
        let token = new_token();
        start_rotation(&client, &arn, &token).await;
        let victim = Step::ALL[round % 4];
        let delay = Duration::from_millis(random_below(40));
        for step in Step::ALL {
            // A fresh process on a fresh port for every invocation, as after a crash: a dead
            // process's pending request can never take the next one's invocation.
            let mut function = LambdaFunction::start("postgres", &[("DATABASE_CA_BUNDLE", &ca)]);
            let invoker = InvokeClient::new(&function.invoke_endpoint).expect("endpoint");
            let payload = json!({"Step": step.as_str(), "SecretId": arn, "ClientRequestToken": token});
            if step != victim {
                invoker
                    .invoke("postgres", &payload, Duration::from_secs(30))
                    .await
                    .expect("step");
                continue;
            }
            let call = invoker.invoke("postgres", &payload, Duration::from_secs(30));
            tokio::select! {
                result = call => { result.expect("the step finished before the kill"); }
                _ = tokio::time::sleep(delay) => {}
            }
            function.kill_function();
            break;
        }
        // At this instant some labelled version must authenticate.
        let mut working = Vec::new();
        for stage in ["AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"] {
            let value = client
                .get_secret_value()
                .secret_id(&arn)
                .version_stage(stage)
                .send()
                .await;
            if let Some(text) = value.ok().and_then(|v| v.secret_string) {
                let value: Value = serde_json::from_str(&text).expect("JSON");
                if logs_in(&server, &value).await {
                    working.push(stage);
                }
            }
        }
        assert!(
            !working.is_empty(),
            "round {round}: killed in {victim} after {delay:?}: nothing authenticates"
        );
        // The service retries the whole rotation with the same token, on a new process.
        let function = LambdaFunction::start("postgres", &[("DATABASE_CA_BUNDLE", &ca)]);
        let invoker = InvokeClient::new(&function.invoke_endpoint).expect("endpoint");
        for step in Step::ALL {
            let payload = json!({"Step": step.as_str(), "SecretId": arn, "ClientRequestToken": token});
            invoker
                .invoke("postgres", &payload, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("round {round}: retry {step}: {e}"));
        }
        end_rotation(&client, &arn, &token).await;
        let current = value_at(&client, &arn, "AWSCURRENT").await;
        assert!(
            logs_in(&server, &current).await,
            "round {round}: AWSCURRENT logs in after the retry"
        );
        assert_eq!(labels(&client, &arn).await[&token], vec!["AWSCURRENT".to_owned()]);
        report.push(format!(
            "killed in {victim} after {delay:?}: {} authenticated; retry converged",
            working.join(",")
        ));
    }
    println!("{}", report.join("\n"));
}
