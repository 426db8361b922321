//! End to end as Lambda runs it: every engine and strategy, its real function binary started by
//! the harness behind cargo-lambda's Runtime and Invoke APIs (the environment Lambda sets, logs at
//! TRACE), driven through the Invoke API by a driver that plays Secrets Manager — with a
//! `RotationToken` in every event — rotating twice, the application's view checked on the real
//! server after each rotation, and the function's whole log searched for every secret it handled.

use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use rotor_cli::invoke::{InvokeClient, InvokeStep};
use rotor_tests::fixtures;
use rotor_tests::lambda::LambdaFunction;
use rotor_tests::mariadb_server::MariaDb;
use rotor_tests::postgres_server::PgServer;
use rotor_tests::ssh_hosts::SshHost;
use rotor_tests::*;
use secret_rotor::driver::Driver;
use secret_rotor::Step;
use serde_json::{json, Value};

/// Plays Secrets Manager for one rotation through the Invoke API; returns the secrets handled
/// (for the leak check).
async fn rotate_through_invoke_api(function: &LambdaFunction, client: &Client, arn: &str) -> Vec<String> {
    let invoker = InvokeClient::new(&function.invoke_endpoint).expect("endpoint");
    let token = new_token();
    start_rotation(client, arn, &token).await;
    // The framework's driver; each event carries a RotationToken, as the service's do.
    let steps = InvokeStep {
        client: &invoker,
        function: &function.name,
        timeout: Duration::from_secs(60),
    };
    let driver = Driver::steps_only(&steps);
    let rotation_token = driver
        .event(Step::CreateSecret, arn, &token)
        .rotation_token
        .map(|t| t.expose().to_owned())
        .expect("the driver sends a RotationToken");
    if let Err((step, err)) = driver.steps(arn, &token, &Step::ALL, |_| ()).await {
        panic!("{}: {step} failed: {err}\n{}", function.name, function.logs());
    }
    end_rotation(client, arn, &token).await;
    let current = value_at(client, arn, "AWSCURRENT").await;
    let mut secrets = vec![rotation_token];
    for key in ["password", "private_key"] {
        if let Some(secret) = current[key].as_str() {
            secrets.push(secret.to_owned());
        }
    }
    secrets
}

fn assert_no_leak(function: &LambdaFunction, secrets: &[String]) {
    let logs = function.logs();
    assert!(
        logs.contains("\"step\":\"finishSecret\""),
        "{}: the function logged its steps",
        function.name
    );
    assert!(
        logs.contains("\"level\":\"TRACE\"") || logs.contains("\"level\":\"DEBUG\""),
        "{}: verbose logs",
        function.name
    );
    for secret in secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "{}: a secret reached the function's logs",
            function.name
        );
        // A private key is checked line by line too (the PEM body without its armour).
        for line in secret.lines().filter(|l| l.len() > 20 && !l.starts_with("-----")) {
            assert!(
                !logs.contains(line),
                "{}: part of a private key reached the logs",
                function.name
            );
        }
    }
}

fn str_of(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn postgres_both_strategies_through_the_runtime_api() {
    let server = PgServer::named("pg17");
    let ca = stack_setting("ROTOR_TLS_CA").expect("CA");
    let client = secrets_manager_client().await;
    for strategy in ["single-user", "alternating-users"] {
        let arn = fixtures::postgres(&server, "127.0.0.1", json!({})).await.arn;
        let function = LambdaFunction::start(
            "postgres",
            &[("ROTATION_STRATEGY", strategy), ("DATABASE_CA_BUNDLE", &ca)],
        );
        let mut secrets = Vec::new();
        for _ in 0..2 {
            secrets.extend(rotate_through_invoke_api(&function, &client, &arn).await);
            let current = value_at(&client, &arn, "AWSCURRENT").await;
            let previous = value_at(&client, &arn, "AWSPREVIOUS").await;
            assert!(
                server
                    .logs_in(&str_of(&current, "username"), &str_of(&current, "password"))
                    .await,
                "{strategy}"
            );
            let previous_works = server
                .logs_in(&str_of(&previous, "username"), &str_of(&previous, "password"))
                .await;
            assert_eq!(
                previous_works,
                strategy == "alternating-users",
                "{strategy}: AWSPREVIOUS"
            );
        }
        assert_no_leak(&function, &secrets);
    }
}

#[tokio::test]
async fn mysql_both_strategies_through_the_runtime_api() {
    let db = MariaDb::new();
    let ca = stack_setting("ROTOR_TLS_CA").expect("CA");
    let client = secrets_manager_client().await;
    for strategy in ["single-user", "alternating-users"] {
        let arn = fixtures::mariadb(&db, "127.0.0.1", json!({"ssl": true}))
            .await
            .arn;
        let function = LambdaFunction::start(
            "mysql",
            &[("ROTATION_STRATEGY", strategy), ("DATABASE_CA_BUNDLE", &ca)],
        );
        let mut secrets = Vec::new();
        for _ in 0..2 {
            secrets.extend(rotate_through_invoke_api(&function, &client, &arn).await);
            let current = value_at(&client, &arn, "AWSCURRENT").await;
            let previous = value_at(&client, &arn, "AWSPREVIOUS").await;
            assert!(
                db.logs_in(&str_of(&current, "username"), &str_of(&current, "password")),
                "{strategy}"
            );
            let previous_works = db.logs_in(&str_of(&previous, "username"), &str_of(&previous, "password"));
            assert_eq!(
                previous_works,
                strategy == "alternating-users",
                "{strategy}: AWSPREVIOUS"
            );
        }
        assert_no_leak(&function, &secrets);
    }
}

#[tokio::test]
async fn ssh_key_through_the_runtime_api() {
    let hosts = SshHost::both();
    let fixture = fixtures::ssh(&hosts).await;
    let (arn, private) = (fixture.arn, fixture.private_key.expect("key"));
    let client = secrets_manager_client().await;
    let function = LambdaFunction::start("ssh-key", &[]);
    let mut secrets = vec![private.clone()];
    let mut previous = private;
    for _ in 0..2 {
        secrets.extend(rotate_through_invoke_api(&function, &client, &arn).await);
        let current = str_of(&value_at(&client, &arn, "AWSCURRENT").await, "private_key");
        for host in &hosts {
            assert!(host.logs_in(&current), "{}: AWSCURRENT logs in", host.address);
            assert!(
                !host.logs_in(&previous),
                "{}: the old key is refused",
                host.address
            );
        }
        previous = current;
    }
    assert_no_leak(&function, &secrets);
}

#[tokio::test]
async fn a_configuration_error_is_reported_by_every_invocation() {
    let client = secrets_manager_client().await;
    let function = LambdaFunction::start("postgres", &[("PASSWORD_LENGTH", "abc")]);
    let invoker = InvokeClient::new(&function.invoke_endpoint).expect("endpoint");
    let arn = create_secret(&client, "rt-config", "{}").await;
    let event = json!({"Step": "createSecret", "SecretId": arn, "ClientRequestToken": new_token()});
    for _ in 0..2 {
        let err = invoker
            .invoke("postgres", &event, Duration::from_secs(30))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("ConfigurationError: ") && text.contains("PASSWORD_LENGTH"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_bad_event_gets_a_typed_error() {
    let function = LambdaFunction::start("ssh-key", &[]);
    let invoker = InvokeClient::new(&function.invoke_endpoint).expect("endpoint");
    let err = invoker
        .invoke(
            "ssh-key",
            &json!({"Step": "deleteSecret", "SecretId": "s", "ClientRequestToken": "t"}),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("InvalidEventError: unknown step `deleteSecret`"),
        "{err}"
    );
}

/// A failed rotation, as CloudWatch sees it: the failed step's end line is an Embedded Metric
/// Format document whose metrics (StepFailed = 1 by function, step and error type; the duration)
/// are extracted exactly as CloudWatch Logs would, and a succeeded step counts 0 failures.
#[tokio::test]
async fn a_failed_rotation_is_a_cloudwatch_metric_extracted_from_its_log_line() {
    let server = PgServer::named("pg17");
    let ca = stack_setting("ROTOR_TLS_CA").expect("CA");
    let client = secrets_manager_client().await;
    let value = json!({"engine": "postgres", "host": "127.0.0.1", "port": server.port,
                       "username": format!("nobody_{}", random_hex(4)), "password": "not-the-password-1"});
    let arn = create_secret(&client, "emf", &value.to_string()).await;
    let function = LambdaFunction::start(
        "postgres",
        &[
            ("DATABASE_CA_BUNDLE", &ca),
            ("METRICS_NAMESPACE", "SecretRotorTest"),
        ],
    );
    let invoker = InvokeClient::new(&function.invoke_endpoint).expect("endpoint");
    let token = new_token();
    start_rotation(&client, &arn, &token).await;
    let event = |step: Step| json!({"Step": step.as_str(), "SecretId": arn, "ClientRequestToken": token});
    invoker
        .invoke("postgres", &event(Step::CreateSecret), Duration::from_secs(30))
        .await
        .expect("createSecret");
    let err = invoker
        .invoke("postgres", &event(Step::SetSecret), Duration::from_secs(30))
        .await
        .expect_err("nothing logs in: setSecret fails");
    assert!(err.to_string().contains("TargetError"), "{err}");
    end_rotation(&client, &arn, &token).await;

    // One EMF document per step end line: the metrics of each step, as CloudWatch extracts them.
    let mut documents = Vec::new();
    for line in function.logs().lines() {
        let data =
            rotor_tests::emf::extract(line).unwrap_or_else(|e| panic!("CloudWatch would reject {line}: {e}"));
        if !data.is_empty() {
            documents.push(data);
        }
    }
    let of_step = |step: &str| {
        documents
            .iter()
            .find(|data| {
                data.iter()
                    .any(|d| d.dimensions.get("step").map(String::as_str) == Some(step))
            })
            .unwrap_or_else(|| panic!("no metrics for {step}: {documents:#?}"))
    };
    let find = |data: &[rotor_tests::emf::Datum], name: &str, dims: &[(&str, &str)]| {
        let dims: std::collections::BTreeMap<String, String> =
            dims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        data.iter()
            .find(|d| d.name == name && d.dimensions == dims)
            .unwrap_or_else(|| panic!("no {name} {dims:?} in {data:#?}"))
            .clone()
    };
    let function_name = ("function", "postgres");
    let (set, create) = (of_step("setSecret"), of_step("createSecret"));
    let failed = find(
        set,
        "StepFailed",
        &[
            function_name,
            ("step", "setSecret"),
            ("error_type", "TargetError"),
        ],
    );
    assert_eq!(
        (failed.namespace.as_str(), failed.value, failed.unit.as_deref()),
        ("SecretRotorTest", 1.0, Some("Count"))
    );
    assert_eq!(
        find(set, "StepFailed", &[function_name]).value,
        1.0,
        "the alarm's dimension set"
    );
    assert_eq!(find(create, "StepFailed", &[function_name]).value, 0.0);
    assert_eq!(
        find(
            create,
            "StepSucceeded",
            &[function_name, ("step", "createSecret")]
        )
        .value,
        1.0
    );
    assert!(
        !create.iter().any(|d| d.dimensions.contains_key("error_type")),
        "no error type on a success"
    );
    let duration = find(set, "StepDuration", &[function_name, ("step", "setSecret")]);
    assert_eq!(duration.unit.as_deref(), Some("Milliseconds"));
    assert!(duration.value >= 0.0 && duration.timestamp_ms > 1_700_000_000_000);
    // Nothing secret in the metric lines.
    for line in function.logs().lines().filter(|l| l.contains("\"_aws\"")) {
        assert!(!line.contains("not-the-password-1"), "{line}");
    }
}

/// The preflight from inside the deployed function: a check event names a secret, the function
/// runs the engine's own checks from its own network and answers a report with no secret in it;
/// an unreachable database is a failed check; a secret of another function is refused.
#[tokio::test]
async fn the_function_answers_a_check_event_for_the_secrets_it_rotates() {
    let server = PgServer::named("pg17");
    let ca = stack_setting("ROTOR_TLS_CA").expect("CA");
    let client = secrets_manager_client().await;
    let function = LambdaFunction::start("postgres", &[("DATABASE_CA_BUNDLE", &ca)]);
    let invoker = InvokeClient::new(&function.invoke_endpoint).expect("endpoint");
    let healthy = fixtures::postgres(&server, "127.0.0.1", json!({})).await;
    let check = |arn: &str| json!({"RotorCheck": {"SecretId": arn}});

    // A secret of another function: refused, and the refusal names this function's ARN.
    set_rotation_function(
        &client,
        &healthy.arn,
        "arn:aws:lambda:us-east-1:123456789012:function:someone-else",
    )
    .await;
    let refused = invoker
        .invoke("postgres", &check(&healthy.arn), Duration::from_secs(30))
        .await
        .expect_err("another function's secret");
    let message = refused.to_string();
    assert!(
        message.contains("InvalidEventError") && message.contains("someone-else"),
        "{message}"
    );
    let own_arn = message
        .split("not by this function (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the function's own ARN")
        .to_owned();

    set_rotation_function(&client, &healthy.arn, &own_arn).await;
    let report = invoker
        .invoke("postgres", &check(&healthy.arn), Duration::from_secs(30))
        .await
        .expect("check");
    assert_eq!(report["ok"], json!(true), "{report}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Secrets Manager reached (DescribeSecret)",
            "AWSCURRENT parses",
            "the next user name",
            "AWSCURRENT logs in"
        ]
    );
    assert_eq!(report["checks"][3]["detail"], json!("TLS yes"), "{report}");
    assert!(
        !report.to_string().contains(fixtures::INITIAL_PASSWORD),
        "no secret in the report"
    );

    // An unreachable database: the login check fails, the report says why.
    let mut value = value_at(&client, &healthy.arn, "AWSCURRENT").await;
    value["port"] = json!(rotor_tests::net::Switch::off(server.port).await.port);
    let unreachable = create_secret(&client, "check-down", &value.to_string()).await;
    set_rotation_function(&client, &unreachable, &own_arn).await;
    let report = invoker
        .invoke("postgres", &check(&unreachable), Duration::from_secs(30))
        .await
        .expect("check");
    assert_eq!(report["ok"], json!(false), "{report}");
    let login = &report["checks"][3];
    assert_eq!(
        (login["check"].as_str(), login["ok"].as_bool()),
        (Some("AWSCURRENT logs in"), Some(false)),
        "{report}"
    );
    assert!(
        login["detail"].as_str().unwrap().contains("TransientError"),
        "{report}"
    );
    assert_eq!(labels(&client, &unreachable).await.len(), 1, "nothing written");
}

/// The binaries behind the Runtime API are the functions as shipped: no crash point compiled in
/// (the test crate's `failpoints` feature must not reach them through feature unification).
#[test]
fn the_function_binaries_under_test_carry_no_failpoint() {
    for binary in ["postgres", "mysql", "ssh-key", "example-redis"] {
        let path = rotor_tests::lambda::workspace_root()
            .join("target/debug")
            .join(binary);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}: run scripts/build-bins", path.display()));
        // The armed crash points' code (its symbol names): absent without the feature. (A point's
        // name may stay in a debug binary either way, as the argument of the inlined no-op.)
        let marker: &[u8] = b"failpoint5armed";
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "{binary} was built with failpoints: build it with scripts/build-bins"
        );
    }
}
