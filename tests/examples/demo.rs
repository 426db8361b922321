//! The demo (`scripts/demo`): on the local stack, a PostgreSQL, a MariaDB and an SSH-key secret,
//! each rotated by its real function binary running behind the Lambda Runtime API, driven by the
//! operator CLI (`rotor rotate --local`), with the labels before and after and the proof, checked
//! on the real servers, that `AWSCURRENT` logs in.

use std::process::Command;

use rotor_tests::lambda::{workspace_root, LambdaFunction};
use rotor_tests::mariadb_server::MariaDb;
use rotor_tests::postgres_server::{ident, PgServer};
use rotor_tests::ssh_hosts::{keygen, ssh_user, SshHost};
use rotor_tests::*;
use serde_json::{json, Value};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Rotates `arn` with `rotor rotate --local` through `function`, showing the CLI's own output
/// (the labels before and after, each step's outcome and duration).
async fn rotate_with_cli(function: &LambdaFunction, arn: &str) -> Result<()> {
    println!("  $ rotor rotate {arn} --local --function {}", function.name);
    let status = Command::new(workspace_root().join("target/debug/rotor"))
        .args([
            "rotate",
            arn,
            "--local",
            "--invoke-endpoint",
            &function.invoke_endpoint,
            "--function",
            &function.name,
        ])
        .env(
            "AWS_ENDPOINT_URL",
            stack_setting("AWS_ENDPOINT_URL").ok_or("stack")?,
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .status()?;
    if !status.success() {
        return Err(format!("rotor rotate failed for {arn}").into());
    }
    Ok(())
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let client = secrets_manager_client().await;
    let ca = stack_setting("ROTOR_TLS_CA").ok_or("no CA: run scripts/stack up")?;
    let tag = random_hex(3);

    println!("== PostgreSQL 17, single user, verified TLS ==");
    let pg = PgServer::named("pg17");
    let user = format!("demo_app_{tag}");
    pg.run(&format!(
        "CREATE ROLE {} LOGIN PASSWORD 'initial-Password-1'",
        ident(&user)
    ))
    .await;
    let value = json!({"engine": "postgres", "host": "localhost", "port": pg.port, "username": user,
                       "password": "initial-Password-1", "dbname": "postgres", "sslmode": "verify-full"});
    let arn = create_secret(&client, "demo-postgres", &value.to_string()).await;
    let function = LambdaFunction::start("postgres", &[("DATABASE_CA_BUNDLE", &ca)]);
    rotate_with_cli(&function, &arn).await?;
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    let previous = value_at(&client, &arn, "AWSPREVIOUS").await;
    let now = pg.logs_in(&user, &text(&current, "password")).await;
    let before = pg.logs_in(&user, &text(&previous, "password")).await;
    println!(
        "  proof: AWSCURRENT logs in: {now}; AWSPREVIOUS logs in: {before} (single user: expected false)"
    );
    if !now || before {
        return Err("PostgreSQL does not agree with the labels".into());
    }

    println!("\n== MariaDB 10.11, alternating users, verified TLS ==");
    let db = MariaDb::new();
    let (user, master) = (format!("demo_app_{tag}"), format!("demo_master_{tag}"));
    db.run(&format!(
        "CREATE USER `{user}`@'%' IDENTIFIED BY 'initial-Password-1'; GRANT SELECT ON mysql.* TO `{user}`@'%'; \
         CREATE USER `{master}`@'%' IDENTIFIED BY 'master-Password-1'; GRANT ALL ON *.* TO `{master}`@'%' WITH GRANT OPTION;"
    ));
    let master_value = json!({"engine": "mariadb", "host": "127.0.0.1", "port": db.port, "username": master,
                              "password": "master-Password-1"});
    let master_arn = create_secret(&client, "demo-mariadb-master", &master_value.to_string()).await;
    let value = json!({"engine": "mariadb", "host": "127.0.0.1", "port": db.port, "username": user,
                       "password": "initial-Password-1", "masterarn": master_arn, "ssl": true});
    let arn = create_secret(&client, "demo-mariadb", &value.to_string()).await;
    let function = LambdaFunction::start(
        "mysql",
        &[
            ("ROTATION_STRATEGY", "alternating-users"),
            ("DATABASE_CA_BUNDLE", &ca),
        ],
    );
    rotate_with_cli(&function, &arn).await?;
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    let previous = value_at(&client, &arn, "AWSPREVIOUS").await;
    let now = db.logs_in(&text(&current, "username"), &text(&current, "password"));
    let before = db.logs_in(&text(&previous, "username"), &text(&previous, "password"));
    println!(
        "  proof: AWSCURRENT ({}) logs in: {now}; AWSPREVIOUS ({}) logs in: {before} (alternating: expected true)",
        text(&current, "username"),
        text(&previous, "username")
    );
    if !now || !before {
        return Err("MariaDB does not agree with the labels".into());
    }

    println!("\n== SSH key pair on two hosts, host keys pinned ==");
    let hosts = SshHost::both();
    let (private, public) = keygen("demo initial key");
    for host in &hosts {
        host.set_authorized_keys(&format!("{public}\n"), 0o600);
    }
    let value = json!({"username": ssh_user(), "private_key": private, "public_key": public,
                       "hosts": [hosts[0].address, hosts[1].address],
                       "host_keys": {hosts[0].address.as_str(): hosts[0].host_key(),
                                     hosts[1].address.as_str(): hosts[1].host_key_fingerprint()}});
    let arn = create_secret(&client, "demo-ssh", &value.to_string()).await;
    let function = LambdaFunction::start("ssh-key", &[]);
    rotate_with_cli(&function, &arn).await?;
    let current = text(&value_at(&client, &arn, "AWSCURRENT").await, "private_key");
    for host in &hosts {
        let now = host.logs_in(&current);
        let before = host.logs_in(&private);
        println!(
            "  proof: {}: AWSCURRENT key logs in: {now}; the old key: {before} (expected false)",
            host.address
        );
        if !now || before {
            return Err("an SSH host does not agree with the labels".into());
        }
    }
    println!("\ndone: three secrets rotated by their real functions; every server agrees with AWSCURRENT");
    Ok(())
}
