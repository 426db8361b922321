//! `rotor check`: a preflight that changes nothing. Reads the secret as its function would, logs
//! in with `AWSCURRENT` (and the master for alternating users), and says what a rotation would do.

use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use rotor_database::tls::TlsMode;
use rotor_database::{Database, DatabaseEngine, DatabaseSecret, Strategy, UserPair};
use rotor_mysql::Mysql;
use rotor_postgres::tls::TlsConfigs;
use rotor_postgres::Postgres;
use rotor_ssh_key::SshKeyEngine;
use secret_rotor::{Deadline, Engine, SecretString};
use serde_json::json;

use crate::output::Output;
use crate::{CliError, Exit};

/// Which function the secret belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// `functions/postgres`.
    Postgres,
    /// `functions/mysql`.
    Mysql,
    /// `functions/ssh-key`.
    SshKey,
}

/// What `check` was asked to do.
#[derive(Debug, Clone)]
pub struct CheckArgs {
    /// Secret name or ARN.
    pub secret: String,
    /// The function the secret belongs to.
    pub engine: EngineKind,
    /// The strategy of that function (databases).
    pub strategy: Strategy,
    /// Extra CA bundle, as the function's `DATABASE_CA_BUNDLE`.
    pub ca_bundle: Option<PathBuf>,
}

async fn read(client: &Client, secret: &str) -> Result<SecretString, CliError> {
    let out = client
        .get_secret_value()
        .secret_id(secret)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .map_err(|e| CliError::from_sdk("GetSecretValue", e))?;
    out.secret_string
        .map(SecretString::new)
        .ok_or_else(|| CliError::usage(format!("{secret} has no string value at AWSCURRENT")))
}

/// Runs the command.
pub async fn check(client: &Client, args: &CheckArgs, out: &mut Output) -> Result<Exit, CliError> {
    let deadline = Deadline::after(Duration::from_secs(30));
    let value = read(client, &args.secret).await?;
    out.set("secret", json!(args.secret));
    match args.engine {
        EngineKind::Postgres => {
            let engine = DatabaseEngine::new(
                Postgres::new(TlsConfigs::new(args.ca_bundle.clone())),
                args.strategy,
            );
            check_database(client, &engine, &value, deadline, out, |session| {
                format!("TLS {}", if session.tls { "yes" } else { "no" })
            })
            .await
        }
        EngineKind::Mysql => {
            let engine = DatabaseEngine::new(Mysql::new(args.ca_bundle.clone(), None), args.strategy);
            check_database(client, &engine, &value, deadline, out, |session| {
                format!(
                    "{}, account {}@{}, TLS {}",
                    session.version,
                    session.account.user,
                    session.account.host,
                    if session.tls { "yes" } else { "no" }
                )
            })
            .await
        }
        EngineKind::SshKey => check_ssh(&value, deadline, out).await,
    }
}

async fn check_database<D: Database>(
    client: &Client,
    engine: &DatabaseEngine<D>,
    value: &SecretString,
    deadline: Deadline,
    out: &mut Output,
    describe: impl Fn(&D::Session) -> String,
) -> Result<Exit, CliError> {
    let secret = engine.parse(value)?;
    let mode = TlsMode::from_secret(secret.doc())?;
    out.say(format!(
        "secret     valid for {} ({}:{}, user {}, TLS mode {mode:?})",
        engine.name(),
        secret.host,
        secret.port,
        secret.username
    ));
    out.set("engine", json!(engine.name()));
    out.set("tls_mode", json!(format!("{mode:?}")));
    let mut ok = true;
    match engine.database().login(&secret, deadline).await {
        Ok(session) => {
            let details = describe(&session);
            out.say(format!("AWSCURRENT logs in: {details}"));
            out.set("current_login", json!({"ok": true, "details": details}));
        }
        Err(err) => {
            ok = false;
            out.say(format!("AWSCURRENT does NOT log in: {err}"));
            out.set("current_login", json!({"ok": false, "error": err.to_string()}));
        }
    }
    let plan = match engine.strategy() {
        Strategy::SingleUser => format!(
            "set a new password for {} (the user changes its own)",
            secret.username
        ),
        Strategy::AlternatingUsers => {
            let pair = UserPair::of(&secret.username);
            let next = pair.other(&secret.username).to_owned();
            let masterarn = secret.masterarn()?.to_owned();
            let master = DatabaseSecret::parse_master(
                &read(client, &masterarn).await?,
                engine.database().default_port(),
            )?;
            match engine.database().login(&master, deadline).await {
                Ok(session) if master.same_server(&secret) => {
                    let details = describe(&session);
                    out.say(format!("master {} logs in: {details}", master.username));
                    out.set("master_login", json!({"ok": true, "details": details}));
                }
                Ok(_) => {
                    ok = false;
                    out.say("master secret is for another server");
                    out.set("master_login", json!({"ok": false, "error": "another server"}));
                }
                Err(err) => {
                    ok = false;
                    out.say(format!("master does NOT log in: {err}"));
                    out.set("master_login", json!({"ok": false, "error": err.to_string()}));
                }
            }
            format!("give {next} a new password (created with {}'s privileges if missing), then make it AWSCURRENT", pair.original)
        }
    };
    out.say(format!("a rotation would: {plan}"));
    out.set("plan", json!(plan));
    Ok(if ok { Exit::Ok } else { Exit::Failed })
}

async fn check_ssh(value: &SecretString, deadline: Deadline, out: &mut Output) -> Result<Exit, CliError> {
    let engine = SshKeyEngine::from_env()?;
    let secret = engine.parse(value)?;
    out.say(format!(
        "secret     valid for ssh-key (user {}, {} hosts)",
        secret.username,
        secret.fleet.len()
    ));
    let mut ok = true;
    for host in &secret.fleet {
        match secret.check_login(host, deadline).await {
            Ok(()) => {
                out.say(format!("  {host}: host key matches its pin, AWSCURRENT logs in"));
                out.push("hosts", json!({"host": host.to_string(), "ok": true}));
            }
            Err(err) => {
                ok = false;
                out.say(format!("  {host}: {err}"));
                out.push(
                    "hosts",
                    json!({"host": host.to_string(), "ok": false, "error": err.to_string()}),
                );
            }
        }
    }
    let plan = format!(
        "add a new ed25519 key to {} hosts, test it, then remove the current one{}",
        secret.fleet.len(),
        if engine.keep_previous {
            " at the next rotation (grace)"
        } else {
            ""
        }
    );
    out.say(format!("a rotation would: {plan}"));
    out.set("plan", json!(plan));
    Ok(if ok { Exit::Ok } else { Exit::Failed })
}
