//! `rotor check`: a preflight that changes nothing. Reads the secret as its function would, logs
//! in with `AWSCURRENT` (and the master for alternating users), and says what a rotation would do.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use rotor_database::{Database, DatabaseEngine, DatabaseSecret, Strategy, UserPair};
use rotor_mysql::Mysql;
use rotor_postgres::tls::TlsConfigs;
use rotor_postgres::Postgres;
use rotor_rds::Rds;
use rotor_ssh_key::{SshKeyEngine, SshSecret};
use secret_rotor::{Deadline, Engine, Passwords, SecretString, SecretsManager};
use serde_json::{json, Value};

use crate::invoke::{InvokeClient, InvokeError};
use crate::output::Output;
use crate::{CliError, Exit};
use secret_rotor::AWSCURRENT;

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
    /// Run the check inside this deployed function instead of here.
    pub function: Option<FunctionTarget>,
    /// The AWS configuration the RDS API is asked with, as the functions ask it (an RDS-managed
    /// master, endpoints); `None` builds it from the environment.
    pub aws: Option<aws_config::SdkConfig>,
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

/// The RDS API the preflight asks, as the functions do, with the command's AWS configuration
/// (its client is built at the first call).
fn rds(aws: Option<&aws_config::SdkConfig>) -> Arc<Rds> {
    Arc::new(match aws {
        Some(config) => Rds::new(aws_sdk_rds::Client::new(config)),
        None => Rds::from_env(),
    })
}

async fn login_database<D: Database>(db: &D, secret: &DatabaseSecret, deadline: Deadline) -> Login {
    match db.login(secret, deadline).await {
        Ok(session) => Ok(db.describe(&session)),
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
            login_database(engine.database(), &secret, deadline).await
        }
        EngineKind::Mysql => {
            let engine = mysql(ca_bundle, Strategy::SingleUser);
            let secret = engine.parse(value).map_err(|e| e.to_string())?;
            login_database(engine.database(), &secret, deadline).await
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
    read_at(client, secret, AWSCURRENT).await
}

/// Runs the command: the engine's own preflight (the checks the deployed function runs for a
/// check event, in the rotation's order), here, or — with `--function` — inside the deployed
/// function, through the Invoke API.
pub async fn check(client: &Client, args: &CheckArgs, out: &mut Output) -> Result<Exit, CliError> {
    let deadline = Deadline::after(Duration::from_secs(30));
    let mut doc = CheckDoc {
        secret: args.secret.clone(),
        function: args.function.as_ref().map(|f| f.name.clone()),
        ok: false,
        checks: None,
        plan: None,
    };
    out.set_all(&doc);
    let report = match &args.function {
        Some(function) => invoke_check(function, &args.secret).await?,
        None => {
            let store = SecretsManager::new(client.clone());
            match args.engine {
                EngineKind::Postgres => {
                    let engine =
                        postgres(args.ca_bundle.as_deref(), args.strategy).with_rds(rds(args.aws.as_ref()));
                    run_preflight(&engine, &store, &args.secret, deadline).await?
                }
                EngineKind::Mysql => {
                    let engine =
                        mysql(args.ca_bundle.as_deref(), args.strategy).with_rds(rds(args.aws.as_ref()));
                    run_preflight(&engine, &store, &args.secret, deadline).await?
                }
                EngineKind::SshKey => {
                    let engine = SshKeyEngine::from_env()?;
                    run_preflight(&engine, &store, &args.secret, deadline).await?
                }
            }
        }
    };
    let ok = report["ok"].as_bool().unwrap_or(false);
    for check in report["checks"].as_array().into_iter().flatten() {
        out.say(format!(
            "{} {}: {}",
            if check["ok"].as_bool() == Some(true) {
                "ok  "
            } else {
                "FAIL"
            },
            check["check"].as_str().unwrap_or_default(),
            check["detail"].as_str().unwrap_or_default()
        ));
    }
    doc.ok = ok;
    doc.checks = Some(report["checks"].clone());
    if args.function.is_none() {
        if let Some(plan) = plan(client, args).await? {
            out.say(format!("a rotation would: {plan}"));
            doc.plan = Some(plan);
        }
    }
    out.set_all(&doc);
    Ok(if ok { Exit::Ok } else { Exit::Failed })
}

/// `rotor check --json`: the secret, where the checks ran, each check (as the preflight's report
/// gives them) and, run here, what a rotation would do.
#[derive(Debug, serde::Serialize)]
struct CheckDoc {
    secret: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<String>,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    checks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<String>,
}

/// Where `--function` runs the check.
#[derive(Debug, Clone)]
pub struct FunctionTarget {
    /// The function's name (or ARN).
    pub name: String,
    /// A local Invoke API (`--local`), else AWS Lambda's.
    pub local_endpoint: Option<String>,
    /// The AWS configuration, for Lambda's Invoke API.
    pub shared: Option<aws_config::SdkConfig>,
}

async fn run_preflight<E: Engine>(
    engine: &E,
    store: &SecretsManager,
    secret: &str,
    deadline: Deadline,
) -> Result<serde_json::Value, CliError> {
    let passwords = Passwords::from_lookup(|_| None, engine.default_excluded_characters())?;
    let report = secret_rotor::preflight(engine, store, &passwords, secret, None, deadline).await?;
    Ok(report.to_json())
}

/// The check event, answered by the deployed function.
async fn invoke_check(function: &FunctionTarget, secret: &str) -> Result<serde_json::Value, CliError> {
    let payload = json!({ secret_rotor::CHECK_EVENT_KEY: { "SecretId": secret } });
    match (&function.local_endpoint, &function.shared) {
        (Some(endpoint), _) => {
            let invoker = InvokeClient::new(endpoint).map_err(CliError::usage)?;
            invoker
                .invoke(&function.name, &payload, Duration::from_secs(60))
                .await
                .map_err(|e| match e {
                    InvokeError::Function { .. } => CliError::usage(format!("{}: {e}", function.name)),
                    InvokeError::Unreachable(_) => CliError::transient(e.to_string()),
                })
        }
        (None, Some(shared)) => {
            let lambda = aws_sdk_lambda::Client::new(shared);
            let answer = lambda
                .invoke()
                .function_name(&function.name)
                .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
                .send()
                .await
                .map_err(|e| CliError::from_sdk("Invoke", e))?;
            let body = answer.payload.map(|p| p.into_inner()).unwrap_or_default();
            let value =
                crate::invoke::parse_response(&body).map_err(|e| CliError::transient(e.to_string()))?;
            match answer.function_error {
                Some(_) => Err(CliError::usage(format!(
                    "{}: {}: {}",
                    function.name,
                    value["errorType"].as_str().unwrap_or("error"),
                    value["errorMessage"].as_str().unwrap_or_default()
                ))),
                None => Ok(value),
            }
        }
        (None, None) => Err(CliError::usage(
            "--function needs --local or an AWS configuration",
        )),
    }
}

/// What a rotation would do, from `AWSCURRENT` (no login).
async fn plan(client: &Client, args: &CheckArgs) -> Result<Option<String>, CliError> {
    let Ok(value) = read(client, &args.secret).await else {
        return Ok(None);
    };
    Ok(Some(match args.engine {
        EngineKind::SshKey => {
            let engine = SshKeyEngine::from_env()?;
            let Ok(secret) = engine.parse(&value) else {
                return Ok(None);
            };
            format!(
                "add a new ed25519 key to {} hosts, test it, then remove the current one{}",
                secret.fleet.len(),
                if engine.keep_previous {
                    " at the next rotation (grace)"
                } else {
                    ""
                }
            )
        }
        EngineKind::Postgres | EngineKind::Mysql => {
            let parsed = match args.engine {
                EngineKind::Postgres => postgres(None, args.strategy).parse(&value),
                _ => mysql(None, args.strategy).parse(&value),
            };
            let Ok(secret) = parsed else { return Ok(None) };
            match args.strategy {
                Strategy::SingleUser => format!(
                    "set a new password for {} (the user changes its own)",
                    secret.username
                ),
                Strategy::AlternatingUsers => {
                    let pair = UserPair::of(&secret.username);
                    format!(
                        "give {} a new password (created with {}'s privileges if missing), then make it AWSCURRENT",
                        pair.other(&secret.username),
                        pair.original
                    )
                }
            }
        }
    }))
}
