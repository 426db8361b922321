//! `rotor check`: a preflight that changes nothing. Reads the secret as its function would, logs
//! in with `AWSCURRENT` (and the master for alternating users), and says what a rotation would do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use rotor_database::tls::TlsMode;
use rotor_database::{Database, DatabaseEngine, DatabaseSecret, Strategy, UserPair};
use rotor_mysql::{MySession, Mysql};
use rotor_postgres::tls::TlsConfigs;
use rotor_postgres::{PgSession, Postgres};
use rotor_ssh_key::{SshKeyEngine, SshSecret};
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

impl EngineKind {
    /// The engine whose function accepts `value` (the first that parses it), if any.
    pub fn of(value: &SecretString) -> Option<EngineKind> {
        if postgres(None, Strategy::SingleUser).parse(value).is_ok() {
            Some(EngineKind::Postgres)
        } else if mysql(None, Strategy::SingleUser).parse(value).is_ok() {
            Some(EngineKind::Mysql)
        } else {
            let ssh = SshKeyEngine::from_env().ok()?;
            ssh.parse(value).is_ok().then_some(EngineKind::SshKey)
        }
    }
}

/// What one login proved: `Ok(details)` (TLS, server, account) or `Err(why)`. Never a secret value.
pub type Login = Result<String, String>;

fn postgres(ca_bundle: Option<&Path>, strategy: Strategy) -> DatabaseEngine<Postgres> {
    DatabaseEngine::new(
        Postgres::new(TlsConfigs::new(ca_bundle.map(Path::to_owned))),
        strategy,
    )
}

fn mysql(ca_bundle: Option<&Path>, strategy: Strategy) -> DatabaseEngine<Mysql> {
    DatabaseEngine::new(Mysql::new(ca_bundle.map(Path::to_owned), None), strategy)
}

fn yes_no(yes: bool) -> &'static str {
    if yes {
        "yes"
    } else {
        "no"
    }
}

fn postgres_details(session: &PgSession) -> String {
    format!("TLS {}", yes_no(session.tls))
}

fn mysql_details(session: &MySession) -> String {
    format!(
        "{}, account {}@{}, TLS {}",
        session.version,
        session.account.user,
        session.account.host,
        yes_no(session.tls)
    )
}

async fn login_database<D: Database>(
    db: &D,
    secret: &DatabaseSecret,
    deadline: Deadline,
    describe: fn(&D::Session) -> String,
) -> Login {
    match db.login(secret, deadline).await {
        Ok(session) => Ok(describe(&session)),
        Err(err) => Err(err.to_string()),
    }
}

/// Each host of the fleet: its host key checked against its pins, then a login with the key.
async fn login_hosts(secret: &SshSecret, deadline: Deadline) -> Vec<(String, Result<(), String>)> {
    let mut results = Vec::new();
    for host in &secret.fleet {
        let result = secret
            .check_login(host, deadline)
            .await
            .map_err(|e| e.to_string());
        results.push((host.to_string(), result));
    }
    results
}

/// Logs in with the credentials of one secret value as the function of `engine` would (every
/// host for SSH keys), changing nothing: `check` does it with `AWSCURRENT`, `status` with each
/// labelled version of a stuck rotation. A value that does not parse is an `Err` too.
pub async fn login(
    engine: EngineKind,
    ca_bundle: Option<&Path>,
    value: &SecretString,
    deadline: Deadline,
) -> Login {
    match engine {
        EngineKind::Postgres => {
            let engine = postgres(ca_bundle, Strategy::SingleUser);
            let secret = engine.parse(value).map_err(|e| e.to_string())?;
            login_database(engine.database(), &secret, deadline, postgres_details).await
        }
        EngineKind::Mysql => {
            let engine = mysql(ca_bundle, Strategy::SingleUser);
            let secret = engine.parse(value).map_err(|e| e.to_string())?;
            login_database(engine.database(), &secret, deadline, mysql_details).await
        }
        EngineKind::SshKey => {
            let engine = SshKeyEngine::from_env().map_err(|e| e.to_string())?;
            let secret = engine.parse(value).map_err(|e| e.to_string())?;
            let hosts = login_hosts(&secret, deadline).await;
            let failed: Vec<String> = hosts
                .iter()
                .filter_map(|(host, result)| Some(format!("{host}: {}", result.as_ref().err()?)))
                .collect();
            if failed.is_empty() {
                Ok(format!("{} hosts", hosts.len()))
            } else {
                Err(failed.join("; "))
            }
        }
    }
}

/// The string value of `secret` at `stage`.
pub async fn read_at(client: &Client, secret: &str, stage: &str) -> Result<SecretString, CliError> {
    let out = client
        .get_secret_value()
        .secret_id(secret)
        .version_stage(stage)
        .send()
        .await
        .map_err(|e| CliError::from_sdk("GetSecretValue", e))?;
    out.secret_string
        .map(SecretString::new)
        .ok_or_else(|| CliError::usage(format!("{secret} has no string value at {stage}")))
}

async fn read(client: &Client, secret: &str) -> Result<SecretString, CliError> {
    read_at(client, secret, "AWSCURRENT").await
}

/// Runs the command.
pub async fn check(client: &Client, args: &CheckArgs, out: &mut Output) -> Result<Exit, CliError> {
    let deadline = Deadline::after(Duration::from_secs(30));
    let value = read(client, &args.secret).await?;
    out.set("secret", json!(args.secret));
    match args.engine {
        EngineKind::Postgres => {
            let engine = postgres(args.ca_bundle.as_deref(), args.strategy);
            check_database(client, &engine, &value, deadline, out, postgres_details).await
        }
        EngineKind::Mysql => {
            let engine = mysql(args.ca_bundle.as_deref(), args.strategy);
            check_database(client, &engine, &value, deadline, out, mysql_details).await
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
    describe: fn(&D::Session) -> String,
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
    match login_database(engine.database(), &secret, deadline, describe).await {
        Ok(details) => {
            out.say(format!("AWSCURRENT logs in: {details}"));
            out.set("current_login", json!({"ok": true, "details": details}));
        }
        Err(err) => {
            ok = false;
            out.say(format!("AWSCURRENT does NOT log in: {err}"));
            out.set("current_login", json!({"ok": false, "error": err}));
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
            match login_database(engine.database(), &master, deadline, describe).await {
                Ok(details) if master.same_server(&secret) => {
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
                    out.set("master_login", json!({"ok": false, "error": err}));
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
    for (host, result) in login_hosts(&secret, deadline).await {
        match result {
            Ok(()) => {
                out.say(format!("  {host}: host key matches its pin, AWSCURRENT logs in"));
                out.push("hosts", json!({"host": host, "ok": true}));
            }
            Err(err) => {
                ok = false;
                out.say(format!("  {host}: {err}"));
                out.push("hosts", json!({"host": host, "ok": false, "error": err}));
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
