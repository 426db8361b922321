//! The operator CLI (`rotor`, as built by `cargo build --bins`) against the local stack:
//! `rotate --local` through a function behind the Invoke API, `status` on a healthy and on a
//! stuck secret, `check` for every engine, `--json` and the exit codes.

use std::process::Command;

use rotor_tests::lambda::{workspace_root, LambdaFunction};
use rotor_tests::mariadb_server::MariaDb;
use rotor_tests::postgres_server::{ident, PgServer};
use rotor_tests::ssh_hosts::{keygen, ssh_user, SshHost};
use rotor_tests::*;
use serde_json::{json, Value};

/// Runs `rotor ARGS` against the stack's Secrets Manager: (exit code, stdout, stderr).
fn rotor(args: &[&str]) -> (i32, String, String) {
    let binary = workspace_root().join("target/debug/rotor");
    assert!(
        binary.exists(),
        "no rotor binary: run `cargo build --workspace --bins`"
    );
    let out = Command::new(binary)
        .args(args)
        .env(
            "AWS_ENDPOINT_URL",
            stack_setting("AWS_ENDPOINT_URL").expect("stack"),
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("DATABASE_CA_BUNDLE", stack_setting("ROTOR_TLS_CA").expect("CA"))
        .output()
        .expect("rotor runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rotor_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = rotor(&all);
    let value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout} {stderr}"));
    (code, value)
}

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
    assert_eq!(out["current_login"]["details"], json!("TLS yes"), "{out}");
    assert_eq!(labels(&client, &arn).await, before, "nothing written");
    let (bad, _) = pg_secret(&server, "wrong-Password-1").await;
    let (code, out) = rotor_json(&["check", &bad, "--engine", "postgres"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["current_login"]["ok"], json!(false));

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
    assert!(
        out["current_login"]["details"]
            .as_str()
            .unwrap()
            .starts_with("MariaDB 10.11"),
        "{out}"
    );
    assert_eq!(out["master_login"]["ok"], json!(true), "{out}");
    assert!(
        out["plan"].as_str().unwrap().contains(&format!("{user}_clone")),
        "{out}"
    );

    let hosts = SshHost::both();
    let (private, public) = keygen("cli check");
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
    let hosts_out = out["hosts"].as_array().unwrap();
    assert!(
        hosts_out[1]["error"]
            .as_str()
            .unwrap()
            .contains("matches none of its pinned keys"),
        "{out}"
    );
}
