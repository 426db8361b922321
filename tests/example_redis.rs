//! The example engine (Redis ACL) rotates a real Redis server's user twice, through the
//! framework, against the local stack's moto server.

use std::process::Command;

use rotor_example_redis::RedisAclEngine;
use rotor_tests::*;
use secret_rotor::{ErrorKind, Outcome, Passwords, Rotor, Step};
use serde_json::json;

fn redis_port() -> u16 {
    stack_setting("ROTOR_REDIS_PORT")
        .and_then(|p| p.parse().ok())
        .expect("no Redis port: run `scripts/stack up`")
}

fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis_port().to_string(), "--no-auth-warning"])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An administrator `admin` (password `admin-Password-1`, every command) and a user `app`
/// (`initial-Password-1`) on the real server.
fn create_users(admin: &str, app: &str) {
    let admin_rule = [
        "ACL",
        "SETUSER",
        admin,
        "on",
        ">admin-Password-1",
        "~*",
        "&*",
        "+@all",
    ];
    assert_eq!(redis_cli(&admin_rule), "OK");
    let app_rule = ["ACL", "SETUSER", app, "on", ">initial-Password-1", "~*", "+@all"];
    assert_eq!(redis_cli(&app_rule), "OK");
}

fn logs_in(user: &str, password: &str) -> bool {
    redis_cli(&["AUTH", user, password]) == "OK"
}

async fn current_password(client: &aws_sdk_secretsmanager::Client, arn: &str, stage: &str) -> String {
    value_at(client, arn, stage).await["password"]
        .as_str()
        .expect("password")
        .to_owned()
}

#[tokio::test]
async fn example_engine_rotates_a_redis_acl_user_twice() {
    let client = secrets_manager_client().await;
    let suffix = random_hex(4);
    let (admin, app) = (format!("admin-{suffix}"), format!("app-{suffix}"));
    create_users(&admin, &app);
    let server = json!({"engine": "redis", "host": "127.0.0.1", "port": redis_port()});
    let mut master = server.clone();
    master["username"] = json!(admin);
    master["password"] = json!("admin-Password-1");
    let master_arn = create_secret(&client, "redis-master", &master.to_string()).await;
    let mut secret = server.clone();
    secret["port"] = json!(redis_port().to_string());
    secret["username"] = json!(app);
    secret["password"] = json!("initial-Password-1");
    secret["masterarn"] = json!(master_arn);
    secret["team"] = json!({"owner": "payments"});
    let arn = create_secret(&client, "redis-app", &secret.to_string()).await;

    let store = Recording::new(client.clone());
    let rotor = Rotor::with_passwords(
        Ok(RedisAclEngine),
        store.clone(),
        Passwords::from_lookup(|_| None, ""),
    );
    let mut previous = "initial-Password-1".to_owned();
    for _ in 0..2 {
        let token = new_token();
        let from = calls_so_far(&store.calls());
        rotate_fully(&rotor, &client, &arn, &token)
            .await
            .expect("rotation");
        // The contract's minimum on the rotated secret in one process (the master is read
        // besides): setSecret, testSecret and the finish hook read none of its versions.
        assert_eq!(
            operations_on_since(&store.calls(), Some(&arn), from),
            minimum_calls(false, 0)
        );
        let current = current_password(&client, &arn, "AWSCURRENT").await;
        assert_ne!(current, previous);
        assert!(logs_in(&app, &current), "AWSCURRENT logs in");
        assert!(
            !logs_in(&app, &previous),
            "the finish hook removed the superseded password"
        );
        assert_eq!(current_password(&client, &arn, "AWSPREVIOUS").await, previous);

        // finishSecret retried after the labels moved: the hook runs again and changes nothing.
        let outcome = rotor
            .handle(&event(Step::FinishSecret, &arn, &token), deadline())
            .await;
        assert_eq!(outcome.expect("retried finish"), Outcome::AlreadyCurrent);
        assert!(logs_in(&app, &current));
        previous = current;
    }
    assert_eq!(
        value_at(&client, &arn, "AWSCURRENT").await["team"],
        json!({"owner": "payments"})
    );
}

#[tokio::test]
async fn example_engine_refuses_a_master_for_another_server() {
    let client = secrets_manager_client().await;
    let suffix = random_hex(4);
    let app = format!("app-{suffix}");
    assert_eq!(
        redis_cli(&["ACL", "SETUSER", &app, "on", ">initial-Password-1", "~*", "+@all"]),
        "OK"
    );
    let master = json!({"engine": "redis", "host": "10.0.0.9", "username": "admin", "password": "x"});
    let master_arn = create_secret(&client, "redis-master", &master.to_string()).await;
    let secret = json!({"engine": "redis", "host": "127.0.0.1", "port": redis_port(), "username": app,
                        "password": "initial-Password-1", "masterarn": master_arn});
    let arn = create_secret(&client, "redis-app", &secret.to_string()).await;
    let rotor = Rotor::with_passwords(
        Ok(RedisAclEngine),
        Recording::new(client.clone()),
        Passwords::from_lookup(|_| None, ""),
    );
    let (step, err) = rotate_fully(&rotor, &client, &arn, &new_token())
        .await
        .unwrap_err();
    assert_eq!(step, Step::SetSecret);
    assert_eq!(err.kind(), ErrorKind::InvalidSecret);
    assert!(err.to_string().contains("another server"), "{err}");
    assert!(logs_in(&app, "initial-Password-1"), "nothing changed");
}

/// The real Redis of the stack, as the conformance kit asks it.
struct Redis;

impl secret_rotor::testing::conformance::Target for Redis {
    async fn authenticates(&self, value: &secret_rotor::SecretString) -> bool {
        let value: serde_json::Value = serde_json::from_str(value.expose()).unwrap_or_default();
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
        logs_in(&text("username"), &text("password"))
    }
}

/// What an engine author writes to prove an engine: the framework's conformance kit (contract
/// cases, Secrets Manager faults, the crash matrix) against the engine's own real target.
#[tokio::test]
async fn the_example_engine_passes_the_conformance_kit() {
    use secret_rotor::testing::conformance::Conformance;
    use secret_rotor::testing::MemoryStore;
    use secret_rotor::SecretString;

    let report = Conformance::new("example-redis", &Redis)
        .run(async |store: &MemoryStore| {
            let (admin, app) = (
                format!("kit-admin-{}", random_hex(4)),
                format!("kit-{}", random_hex(4)),
            );
            create_users(&admin, &app);
            let server = json!({"engine": "redis", "host": "127.0.0.1", "port": redis_port()});
            let mut master = server.clone();
            (master["username"], master["password"]) = (json!(admin), json!("admin-Password-1"));
            let master_arn = store.create_secret(&admin, &SecretString::from(master.to_string()));
            let mut secret = server;
            (secret["username"], secret["password"]) = (json!(app), json!("initial-Password-1"));
            secret["masterarn"] = json!(master_arn);
            (RedisAclEngine, SecretString::from(secret.to_string()))
        })
        .await;
    assert!(report.contains("converged"), "the crash matrix ran:\n{report}");
    println!("{report}");
}
