//! The demo: one real rotation on the local stack, shown step by step.
//!
//! Creates a Redis ACL user and its secret (with a master secret) on the local stack's Redis and
//! Secrets Manager API, then rotates it twice with the example engine, the way Secrets Manager
//! would, printing each step's outcome and duration and the labels afterwards. Run it with
//! `scripts/demo`, which starts the stack first.

use std::process::Command;
use std::time::Instant;

use example_redis::RedisAclEngine;
use rotor_tests::*;
use secret_rotor::{Passwords, Rotor, Step};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port = stack_setting("ROTOR_REDIS_PORT").ok_or("no Redis port: run `scripts/stack up`")?;
    let client = secrets_manager_client().await;
    let suffix = random_hex(3);
    let (admin, app) = (format!("demo-admin-{suffix}"), format!("demo-app-{suffix}"));
    for (user, password, rules) in [
        (&admin, "admin-Password-1", "+@all"),
        (&app, "initial-Password-1", "+@read"),
    ] {
        let status = Command::new("redis-cli")
            .args([
                "-p",
                &port,
                "ACL",
                "SETUSER",
                user,
                "on",
                &format!(">{password}"),
                "~*",
                "&*",
                rules,
            ])
            .output()?;
        if !status.status.success() {
            return Err(format!("redis-cli failed for {user}").into());
        }
    }
    let master = json!({"engine": "redis", "host": "127.0.0.1", "port": port, "username": admin,
                        "password": "admin-Password-1"});
    let master_arn = create_secret(&client, "demo-redis-master", &master.to_string()).await;
    let secret = json!({"engine": "redis", "host": "127.0.0.1", "port": port, "username": app,
                        "password": "initial-Password-1", "masterarn": master_arn});
    let arn = create_secret(&client, "demo-redis-app", &secret.to_string()).await;
    println!("secret {arn}\n  user {app} on redis 127.0.0.1:{port}, master {admin}");

    let rotor = Rotor::with_passwords(
        Ok(RedisAclEngine),
        Recording::new(client.clone()),
        Passwords::from_env(""),
    );
    for rotation in 1..=2 {
        let token = new_token();
        println!("rotation {rotation}: token {token}");
        start_rotation(&client, &arn, &token).await;
        for step in Step::ALL {
            let started = Instant::now();
            let outcome = rotor.handle(&event(step, &arn, &token), deadline()).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            match outcome {
                Ok(outcome) => println!("  {step:<13} {:<16} {ms:7.1} ms", outcome.as_str()),
                Err(err) => {
                    println!("  {step:<13} FAILED ({}) {err}", err.kind());
                    return Err(err.into());
                }
            }
        }
        end_rotation(&client, &arn, &token).await;
        for (version, stages) in labels(&client, &arn).await {
            println!("  version {version}: {}", stages.join(", "));
        }
    }
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    let previous = value_at(&client, &arn, "AWSPREVIOUS").await;
    let auth = |password: &serde_json::Value| -> Result<bool, std::io::Error> {
        let password = password.as_str().unwrap_or_default();
        let out = Command::new("redis-cli")
            .args(["-p", &port, "--no-auth-warning", "AUTH", &app, password])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "OK")
    };
    if !auth(&current["password"])? || auth(&previous["password"])? {
        return Err("Redis does not agree with the secret's labels".into());
    }
    println!("checked on Redis: AWSCURRENT logs in, AWSPREVIOUS (superseded) no longer does");
    Ok(())
}
