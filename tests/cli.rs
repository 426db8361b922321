//! The operator CLI (`rotor`, as built by `cargo build --bins`) against the local stack:
//! `rotate --local` through a function behind the Invoke API, `status` on a healthy and on a
//! stuck secret, `check` for every engine, `--json` and the exit codes.

use rotor_tests::cli::{rotor, rotor_json};
use rotor_tests::lambda::LambdaFunction;
use rotor_tests::mariadb_server::MariaDb;
use rotor_tests::postgres_server::{ident, PgServer};
use rotor_tests::ssh_hosts::{keygen, ssh_user, SshHost};
use rotor_tests::*;
use serde_json::{json, Value};

/// A PostgreSQL role and its secret on PostgreSQL 15.
async fn pg_secret(server: &PgServer, password: &str) -> (String, String) {
    let user = format!("cli_{}", random_hex(4));
    server
        .run(&format!(
            "CREATE ROLE {} LOGIN PASSWORD 'initial-Password-1'",
            ident(&user)
        ))
        .await;
    let client = secrets_manager_client().await;
    let value = json!({"engine": "postgres", "host": "127.0.0.1", "port": server.port, "username": user, "password": password});
    (create_secret(&client, "cli-pg", &value.to_string()).await, user)
}

#[tokio::test]
async fn rotate_local_runs_each_step_through_the_invoke_api() {
    let server = PgServer::named("pg15");
    let (arn, user) = pg_secret(&server, "initial-Password-1").await;
    let ca = stack_setting("ROTOR_TLS_CA").expect("CA");
    let function = LambdaFunction::start("postgres", &[("DATABASE_CA_BUNDLE", &ca)]);
    let endpoint = function.invoke_endpoint.as_str();
    let (code, out) = rotor_json(&[
        "rotate",
        &arn,
        "--local",
        "--invoke-endpoint",
        endpoint,
        "--function",
        "postgres",
    ]);
    assert_eq!(code, 0, "{out}");
    let steps = out["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["createSecret", "setSecret", "testSecret", "finishSecret"]);
    assert!(steps
        .iter()
        .all(|s| s["ok"] == json!(true) && s["duration_ms"].as_f64().is_some()));
    let token = out["token"].as_str().unwrap();
    assert_eq!(out["labels_after"][token], json!(["AWSCURRENT"]));
    let client = secrets_manager_client().await;
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    assert!(server.logs_in(&user, current["password"].as_str().unwrap()).await);

    // Human output, one step at a time (debugging a single step).
    let token = new_token();
    start_rotation(&client, &arn, &token).await;
    for step in ["createSecret", "setSecret"] {
        let (code, stdout, stderr) = rotor(&[
            "rotate",
            &arn,
            "--local",
            "--invoke-endpoint",
            endpoint,
            "--function",
            "postgres",
            "--step",
            step,
            "--token",
            &token,
        ]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains(&format!("{step:<13} ok")), "{stdout}");
    }
    let pending = value_at(&client, &arn, "AWSPENDING").await;
    assert!(
        server.logs_in(&user, pending["password"].as_str().unwrap()).await,
        "setSecret ran"
    );
}

#[tokio::test]
async fn rotate_local_stops_at_the_first_failure_with_its_error() {
    let server = PgServer::named("pg15");
    let (arn, _) = pg_secret(&server, "not-the-Password-1").await;
    let ca = stack_setting("ROTOR_TLS_CA").expect("CA");
    let function = LambdaFunction::start("postgres", &[("DATABASE_CA_BUNDLE", &ca)]);
    let (code, out) = rotor_json(&[
        "rotate",
        &arn,
        "--local",
        "--invoke-endpoint",
        &function.invoke_endpoint,
        "--function",
        "postgres",
    ]);
    assert_eq!(code, 1, "{out}");
    let steps = out["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "stopped at setSecret: {out}");
    assert_eq!(steps[1]["error_type"], json!("TargetError"));
    assert!(
        steps[1]["error"].as_str().unwrap().contains("unable to log in"),
        "{out}"
    );
    assert!(
        out["error"].as_str().unwrap().starts_with("setSecret failed"),
        "{out}"
    );
}

#[tokio::test]
async fn status_is_healthy_after_a_rotation_and_diagnoses_a_stuck_one() {
    let client = secrets_manager_client().await;
    let arn = create_secret(&client, "cli-status", "{}").await;
    let (code, out) = rotor_json(&["status", &arn]);
    assert_eq!(code, 0, "{out}");
    assert!(out["problems"].is_null(), "{out}");

    let token = new_token();
    start_rotation(&client, &arn, &token).await;
    let (code, out) = rotor_json(&["status", &arn]);
    assert_eq!(code, 3, "{out}");
    let problem = out["problems"][0]["problem"].as_str().unwrap();
    assert!(
        problem.contains("rotation stuck") && problem.contains(&token),
        "{out}"
    );
    assert!(
        out["problems"][0]["remedy"]
            .as_str()
            .unwrap()
            .contains("--remove-from-version-id"),
        "{out}"
    );
    assert_eq!(out["versions"][&token], json!(["AWSPENDING"]));
    let (code, stdout, _) = rotor(&["status", &arn]);
    assert_eq!(code, 3);
    assert!(
        stdout.contains("PROBLEM") && stdout.contains("function   arn:aws:lambda:"),
        "{stdout}"
    );

    let (code, _, stderr) = rotor(&["status", "no-such-secret"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("ResourceNotFoundException"), "{stderr}");
}

#[tokio::test]
async fn check_logs_in_for_every_engine_and_changes_nothing() {
    let server = PgServer::named("pg17");
    let (arn, _) = pg_secret(&server, "initial-Password-1").await;
    let client = secrets_manager_client().await;
    let before = labels(&client, &arn).await;
    let (code, out) = rotor_json(&["check", &arn, "--engine", "postgres"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        check_named(&out, "AWSCURRENT logs in")["detail"],
        json!("TLS yes"),
        "{out}"
    );
    assert_eq!(labels(&client, &arn).await, before, "nothing written");
    let (bad, _) = pg_secret(&server, "wrong-Password-1").await;
    let (code, out) = rotor_json(&["check", &bad, "--engine", "postgres"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(check_named(&out, "AWSCURRENT logs in")["ok"], json!(false));

    let db = MariaDb::new();
    let user = format!("cli_{}", random_hex(4));
    let master = format!("cli_master_{}", random_hex(4));
    db.run(&format!(
        "CREATE USER `{user}`@'%' IDENTIFIED BY 'initial-Password-1'; \
         CREATE USER `{master}`@'%' IDENTIFIED BY 'master-Password-1'; GRANT ALL ON *.* TO `{master}`@'%' WITH GRANT OPTION;"
    ));
    let master_arn = create_secret(
        &client,
        "cli-master",
        &json!({"engine": "mariadb", "host": "127.0.0.1", "port": db.port, "username": master, "password": "master-Password-1"})
            .to_string(),
    )
    .await;
    let my_arn = create_secret(
        &client,
        "cli-mariadb",
        &json!({"engine": "mariadb", "host": "127.0.0.1", "port": db.port, "username": user,
                "password": "initial-Password-1", "masterarn": master_arn})
        .to_string(),
    )
    .await;
    let (code, out) = rotor_json(&[
        "check",
        &my_arn,
        "--engine",
        "mysql",
        "--strategy",
        "alternating-users",
    ]);
    assert_eq!(code, 0, "{out}");
    let logins = check_named(&out, "AWSCURRENT logs in, then the master (as setSecret does)");
    assert!(
        logins["detail"]
            .as_str()
            .unwrap()
            .starts_with("master: MariaDB 10.11"),
        "{out}"
    );
    assert_eq!(logins["ok"], json!(true), "{out}");
    assert!(
        out["plan"].as_str().unwrap().contains(&format!("{user}_clone")),
        "{out}"
    );

    let hosts = SshHost::both();
    let (private, public) = keygen("cli check");
    for host in &hosts {
        host.set_authorized_keys(&format!("{public}\n"), 0o600);
    }
    let ssh_arn = create_secret(
        &client,
        "cli-ssh",
        &json!({"username": ssh_user(), "private_key": private, "public_key": public,
                "hosts": [hosts[0].address, hosts[1].address],
                "host_keys": {hosts[0].address.as_str(): hosts[0].host_key(), hosts[1].address.as_str(): hosts[0].host_key()}})
        .to_string(),
    )
    .await;
    let (code, out) = rotor_json(&["check", &ssh_arn, "--engine", "ssh-key"]);
    assert_eq!(code, 1, "the second host's pin is wrong: {out}");
    let hosts_check = check_named(
        &out,
        "every host: pinned host key, AWSCURRENT logs in, authorized_keys editable",
    );
    let detail = hosts_check["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("[{}]", hosts[1].address))
            && detail.contains("matches none of its pinned keys"),
        "{out}"
    );
    assert!(!detail.contains(&format!("[{}]", hosts[0].address)), "{out}");
}

/// The check of `name` in a `rotor check --json` answer.
fn check_named<'a>(out: &'a Value, name: &str) -> &'a Value {
    out["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == json!(name)))
        .unwrap_or_else(|| panic!("no check {name:?} in {out}"))
}

/// `rotor check` follows the function's own order, by the engine's own code: when AWSCURRENT
/// does not log in, the master is never contacted; a master on another server is refused before
/// any login with it.
#[tokio::test]
async fn check_never_uses_the_master_before_the_secret_proves_itself() {
    let server = PgServer::named("pg17");
    let client = secrets_manager_client().await;
    let fixture = rotor_tests::fixtures::postgres(&server, "127.0.0.1", json!({})).await;
    let open = std::sync::Arc::new(rotor_tests::net::OpenConnections::default());
    let relay = rotor_tests::net::Relay::start(server.port, std::time::Duration::ZERO, open.clone()).await;
    // The master reached only through the counting relay (another port: another server).
    let master_arn = fixture.master_arn.clone().unwrap();
    let mut master = value_at(&client, &master_arn, "AWSCURRENT").await;
    master["port"] = json!(relay.port);
    let master_arn = create_secret(&client, "cli-master-relay", &master.to_string()).await;
    let mut value = value_at(&client, &fixture.arn, "AWSCURRENT").await;
    value["masterarn"] = json!(master_arn);
    let same_server = create_secret(&client, "cli-other-server", &value.to_string()).await;
    value["password"] = json!("wrong-Password-1");
    let refused = create_secret(&client, "cli-refused", &value.to_string()).await;
    let name = "AWSCURRENT logs in, then the master (as setSecret does)";
    for (arn, expected) in [
        (&refused, "the master secret was not used"),
        (&same_server, "the rotated secret for 127.0.0.1"),
    ] {
        let (code, out) = rotor_json(&[
            "check",
            arn,
            "--engine",
            "postgres",
            "--strategy",
            "alternating-users",
        ]);
        assert_eq!(code, 1, "{out}");
        let detail = check_named(&out, name)["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(expected), "{out}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(open.total(), 0, "the master was never contacted");
}

/// `rotor check --function NAME --local`: the check runs inside the function, through the local
/// Invoke API, for a secret that function rotates.
#[tokio::test]
async fn check_runs_inside_the_function_through_the_invoke_api() {
    let server = PgServer::named("pg17");
    let ca = stack_setting("ROTOR_TLS_CA").expect("CA");
    let function = LambdaFunction::start("postgres", &[("DATABASE_CA_BUNDLE", &ca)]);
    let client = secrets_manager_client().await;
    let (arn, _) = pg_secret(&server, "initial-Password-1").await;
    let endpoint = function.invoke_endpoint.clone();
    // Another function's secret first: refused, naming this function's ARN.
    let args = [
        "check",
        &arn,
        "--function",
        "postgres",
        "--local",
        "--invoke-endpoint",
        &endpoint,
    ];
    let (code, _, stderr) = rotor(&args);
    assert_eq!(code, 2, "{stderr}");
    let own_arn = stderr
        .split("not by this function (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("the refusal names the function: {stderr}"))
        .to_owned();
    set_rotation_function(&client, &arn, &own_arn).await;
    let (code, out) = rotor_json(&args);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["function"], json!("postgres"));
    assert_eq!(
        check_named(&out, "AWSCURRENT logs in")["detail"],
        json!("TLS yes"),
        "{out}"
    );
}

/// A PostgreSQL 15 secret whose rotation was started (`token` is `AWSPENDING`) and whose
/// function ran the given steps through `rotor rotate --local --step`, then stopped.
async fn stuck_pg_rotation(steps: &[&str]) -> (PgServer, LambdaFunction, String, String, String) {
    let server = PgServer::named("pg15");
    let (arn, user) = pg_secret(&server, "initial-Password-1").await;
    let ca = stack_setting("ROTOR_TLS_CA").expect("CA");
    let function = LambdaFunction::start("postgres", &[("DATABASE_CA_BUNDLE", &ca)]);
    let client = secrets_manager_client().await;
    let token = new_token();
    start_rotation(&client, &arn, &token).await;
    for step in steps {
        let (code, stdout, stderr) = rotor(&[
            "rotate",
            &arn,
            "--local",
            "--invoke-endpoint",
            &function.invoke_endpoint,
            "--function",
            "postgres",
            "--step",
            step,
            "--token",
            &token,
        ]);
        assert_eq!(code, 0, "{step}: {stdout}{stderr}");
    }
    (server, function, arn, user, token)
}

#[tokio::test]
async fn status_advises_finishing_a_single_user_rotation_stuck_after_set_secret() {
    let (server, function, arn, user, token) = stuck_pg_rotation(&["createSecret", "setSecret"]).await;
    let client = secrets_manager_client().await;
    let pending = value_at(&client, &arn, "AWSPENDING").await;
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    assert!(server.logs_in(&user, pending["password"].as_str().unwrap()).await);
    assert!(!server.logs_in(&user, current["password"].as_str().unwrap()).await);

    let (code, out) = rotor_json(&["status", &arn]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(out["logins"]["AWSPENDING"]["ok"], json!(true), "{out}");
    assert_eq!(out["logins"]["AWSCURRENT"]["ok"], json!(false), "{out}");
    let problem = &out["problems"][0];
    assert_eq!(problem["advice"], json!("finish"), "{out}");
    let remedy = problem["remedy"].as_str().unwrap();
    assert!(
        remedy.contains(&format!("--token {token} --step finishSecret"))
            && remedy.contains(&format!(
                "--version-stage AWSCURRENT --move-to-version-id {token}"
            )),
        "{remedy}"
    );
    assert!(
        !remedy.contains("--version-stage AWSPENDING"),
        "clearing AWSPENDING would lose the only password that works: {remedy}"
    );
    for secret in [&pending, &current] {
        assert!(!out.to_string().contains(secret["password"].as_str().unwrap()));
    }
    let (code, stdout, _) = rotor(&["status", &arn]);
    assert_eq!(code, 3);
    assert!(
        stdout.contains("AWSPENDING logs in") && stdout.contains("AWSCURRENT does NOT log in"),
        "{stdout}"
    );

    // The advice works: finishing through the function makes AWSCURRENT the password that logs in.
    let (code, stdout, stderr) = rotor(&[
        "rotate",
        &arn,
        "--local",
        "--invoke-endpoint",
        &function.invoke_endpoint,
        "--function",
        "postgres",
        "--token",
        &token,
        "--step",
        "finishSecret",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    assert!(server.logs_in(&user, current["password"].as_str().unwrap()).await);
    let (code, out) = rotor_json(&["status", &arn]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn status_says_clearing_is_safe_when_the_pending_password_was_never_set() {
    let (_server, _function, arn, _user, token) = stuck_pg_rotation(&["createSecret"]).await;
    let (code, out) = rotor_json(&["status", &arn]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(out["logins"]["AWSCURRENT"]["ok"], json!(true), "{out}");
    assert_eq!(out["logins"]["AWSPENDING"]["ok"], json!(false), "{out}");
    let problem = &out["problems"][0];
    assert_eq!(problem["advice"], json!("clear"), "{out}");
    let remedy = problem["remedy"].as_str().unwrap();
    assert!(
        remedy.contains("safe")
            && remedy.contains(&format!(
                "--version-stage AWSPENDING --remove-from-version-id {token}"
            )),
        "{remedy}"
    );
    assert!(!remedy.contains("--step finishSecret"), "{remedy}");
}

#[tokio::test]
async fn rotate_step_without_local_is_refused() {
    let client = secrets_manager_client().await;
    let arn = create_secret(&client, "cli-step", "{}").await;
    // A secret with a rotation function, so that nothing but the check stops the command.
    let setup = new_token();
    start_rotation(&client, &arn, &setup).await;
    end_rotation(&client, &arn, &setup).await;
    let before = (
        labels(&client, &arn).await,
        rotation_configuration(&client, &arn).await,
    );
    let (code, stdout, stderr) = rotor(&["rotate", &arn, "--step", "setSecret", "--token", &new_token()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("--step") && stderr.contains("--local"),
        "{stderr}"
    );
    let after = (
        labels(&client, &arn).await,
        rotation_configuration(&client, &arn).await,
    );
    assert_eq!(after, before, "nothing started, nothing changed");
}

/// The secret's rotation configuration, as DescribeSecret shows it.
async fn rotation_configuration(client: &aws_sdk_secretsmanager::Client, arn: &str) -> Value {
    let d = client
        .describe_secret()
        .secret_id(arn)
        .send()
        .await
        .expect("DescribeSecret");
    let rules = d.rotation_rules.as_ref();
    json!({
        "enabled": d.rotation_enabled,
        "function": d.rotation_lambda_arn,
        "days": rules.and_then(|r| r.automatically_after_days),
        "schedule": rules.and_then(|r| r.schedule_expression.clone()),
        "duration": rules.and_then(|r| r.duration.clone()),
    })
}

#[tokio::test]
async fn rotate_local_keeps_the_secrets_rotation_configuration() {
    let server = PgServer::named("pg15");
    let (arn, user) = pg_secret(&server, "initial-Password-1").await;
    let client = secrets_manager_client().await;
    // The secret's own configuration, in another partition and with its own schedule. moto
    // sets it only through RotateSecret, which also leaves an empty AWSPENDING version: cleared.
    let own_function = "arn:aws-cn:lambda:cn-north-1:210987654321:function:team-rotator";
    let setup = new_token();
    let result = client
        .rotate_secret()
        .secret_id(&arn)
        .client_request_token(&setup)
        .rotation_lambda_arn(own_function)
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(7)
                .build(),
        )
        .send()
        .await;
    assert!(result.is_err(), "moto cannot invoke a function");
    end_rotation(&client, &arn, &setup).await;
    let before = rotation_configuration(&client, &arn).await;
    assert_eq!(before["function"], json!(own_function), "{before}");
    assert_eq!(before["days"], json!(7), "{before}");
    assert_eq!(before["enabled"], json!(true), "{before}");

    let ca = stack_setting("ROTOR_TLS_CA").expect("CA");
    let function = LambdaFunction::start("postgres", &[("DATABASE_CA_BUNDLE", &ca)]);
    let (code, out) = rotor_json(&[
        "rotate",
        &arn,
        "--local",
        "--invoke-endpoint",
        &function.invoke_endpoint,
        "--function",
        "postgres",
    ]);
    assert_eq!(code, 0, "{out}");
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    assert!(server.logs_in(&user, current["password"].as_str().unwrap()).await);
    assert_eq!(
        rotation_configuration(&client, &arn).await,
        before,
        "the rotation configuration changed"
    );
}

#[test]
fn a_function_arn_is_derived_in_the_secrets_own_partition() {
    use rotor_cli::rotate::function_arn;
    for (secret, function) in [
        (
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
            "arn:aws:lambda:eu-west-1:123456789012:function:postgres",
        ),
        (
            "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:db-AbCdEf",
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:postgres",
        ),
        (
            "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:db-AbCdEf",
            "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:postgres",
        ),
    ] {
        assert_eq!(function_arn(secret, "postgres").as_deref(), Some(function));
    }
    assert_eq!(function_arn("db-name-only", "postgres"), None);
}
