//! `rotor rotate`: against AWS, start a rotation and follow it; locally, play Secrets Manager.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::RotationRulesType;
use aws_sdk_secretsmanager::Client;
use secret_rotor::Step;
use serde_json::{json, Value};

use crate::invoke::{InvokeClient, InvokeError};
use crate::output::Output;
use crate::{new_token, CliError, Exit};

/// What `rotate` was asked to do.
#[derive(Debug, Clone)]
pub struct RotateArgs {
    /// Secret name or ARN.
    pub secret: String,
    /// Play Secrets Manager locally instead of asking AWS to rotate.
    pub local: bool,
    /// The local Invoke API (`http://127.0.0.1:9000`).
    pub invoke_endpoint: String,
    /// The function to invoke (default: the secret's rotation function's name).
    pub function: Option<String>,
    /// Run only this step (with `token`).
    pub step: Option<Step>,
    /// The version token (default: a new one).
    pub token: Option<String>,
    /// How long to wait for one step (local) or the whole rotation (AWS).
    pub timeout: Duration,
}

/// Each version's labels, from `DescribeSecret`.
pub async fn labels(client: &Client, secret: &str) -> Result<HashMap<String, Vec<String>>, CliError> {
    let out = client
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| CliError::from_sdk("DescribeSecret", e))?;
    Ok(out.version_ids_to_stages.unwrap_or_default())
}

fn function_name(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

fn print_labels(out: &mut Output, labels: &HashMap<String, Vec<String>>, title: &str) {
    let mut versions: Vec<_> = labels.iter().filter(|(_, stages)| !stages.is_empty()).collect();
    versions.sort_by_key(|(_, stages)| !stages.iter().any(|s| s == "AWSCURRENT"));
    out.say(format!("{title}:"));
    for (version, stages) in &versions {
        out.say(format!("  {version}  {}", stages.join(", ")));
    }
    out.set(
        &title.replace(' ', "_"),
        Value::Object(versions.iter().map(|(v, s)| ((*v).clone(), json!(s))).collect()),
    );
}

/// Runs the command.
pub async fn rotate(
    client: &Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    args: &RotateArgs,
    out: &mut Output,
) -> Result<Exit, CliError> {
    let description = client
        .describe_secret()
        .secret_id(&args.secret)
        .send()
        .await
        .map_err(|e| CliError::from_sdk("DescribeSecret", e))?;
    let arn = description.arn.clone().unwrap_or_else(|| args.secret.clone());
    let function = match (&args.function, description.rotation_lambda_arn.as_deref()) {
        (Some(function), _) => function.clone(),
        (None, Some(lambda_arn)) if !lambda_arn.is_empty() => function_name(lambda_arn).to_owned(),
        (None, _) => {
            return Err(CliError::usage(format!(
                "{arn} has no rotation function: give --function NAME"
            )))
        }
    };
    out.say(format!("secret {arn}\nfunction {function}"));
    out.set("secret_arn", json!(arn));
    out.set("function", json!(function));
    print_labels(
        out,
        &description.version_ids_to_stages.clone().unwrap_or_default(),
        "labels before",
    );
    let token = match &args.token {
        Some(token) => token.clone(),
        None => new_token()?,
    };
    out.set("token", json!(token));
    if args.local {
        rotate_locally(client, &arn, &function, &token, args, out).await
    } else {
        rotate_in_aws(client, logs, &arn, &function, &token, args, out).await
    }
}

async fn rotate_locally(
    client: &Client,
    arn: &str,
    function: &str,
    token: &str,
    args: &RotateArgs,
    out: &mut Output,
) -> Result<Exit, CliError> {
    let invoker = InvokeClient::new(&args.invoke_endpoint).map_err(CliError::usage)?;
    let steps: Vec<Step> = match args.step {
        Some(step) => {
            if args.token.is_none() {
                return Err(CliError::usage(
                    "--step needs --token (the version being rotated in)",
                ));
            }
            vec![step]
        }
        None => {
            start_rotation(client, arn, function, token).await?;
            Step::ALL.to_vec()
        }
    };
    out.say(format!("token {token}"));
    for step in steps {
        let event = json!({"Step": step.as_str(), "SecretId": arn, "ClientRequestToken": token});
        out.progress(format!("  {step:<13} running…"));
        let started = Instant::now();
        let result = invoker.invoke(function, &event, args.timeout).await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        out.progress_done();
        match result {
            Ok(_) => {
                out.say(format!("  {step:<13} ok      {ms:8.1} ms"));
                out.push(
                    "steps",
                    json!({"step": step.as_str(), "ok": true, "duration_ms": ms}),
                );
            }
            Err(err) => {
                out.say(format!("  {step:<13} FAILED  {ms:8.1} ms  {err}"));
                let (error_type, message) = match &err {
                    InvokeError::Function { error_type, message } => (error_type.clone(), message.clone()),
                    InvokeError::Unreachable(why) => ("InvokeApiUnreachable".to_owned(), why.clone()),
                };
                out.push(
                    "steps",
                    json!({"step": step.as_str(), "ok": false, "duration_ms": ms,
                           "error_type": error_type, "error": message}),
                );
                let exit = match &err {
                    InvokeError::Unreachable(_) => Exit::Transient,
                    InvokeError::Function { error_type, .. }
                        if error_type == "TransientError" || error_type == "TimeoutError" =>
                    {
                        Exit::Transient
                    }
                    InvokeError::Function { .. } => Exit::Failed,
                };
                return Err(CliError {
                    exit,
                    message: format!("{step} failed: {err}"),
                });
            }
        }
    }
    if args.step.is_none() || args.step == Some(Step::FinishSecret) {
        // What the service does once finishSecret succeeded.
        let now = labels(client, arn).await?;
        let finished = now
            .get(token)
            .is_some_and(|s| s.iter().any(|l| l == "AWSCURRENT"));
        if finished
            && now
                .get(token)
                .is_some_and(|s| s.iter().any(|l| l == "AWSPENDING"))
        {
            client
                .update_secret_version_stage()
                .secret_id(arn)
                .version_stage("AWSPENDING")
                .remove_from_version_id(token)
                .send()
                .await
                .map_err(|e| CliError::from_sdk("UpdateSecretVersionStage", e))?;
        }
    }
    print_labels(out, &labels(client, arn).await?, "labels after");
    Ok(Exit::Ok)
}

/// What Secrets Manager does before the first invocation: `RotateSecret`, which labels an empty
/// version `token` with `AWSPENDING`. A local emulator that cannot invoke functions answers
/// ResourceNotFoundException after doing that, which is accepted here.
async fn start_rotation(client: &Client, arn: &str, function: &str, token: &str) -> Result<(), CliError> {
    let region = arn
        .split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .unwrap_or("us-east-1");
    let account = arn
        .split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .unwrap_or("000000000000");
    let result = client
        .rotate_secret()
        .secret_id(arn)
        .client_request_token(token)
        .rotation_lambda_arn(format!("arn:aws:lambda:{region}:{account}:function:{function}"))
        .rotation_rules(RotationRulesType::builder().automatically_after_days(30).build())
        .send()
        .await;
    if let Err(e) = result {
        if e.code() != Some("ResourceNotFoundException") {
            return Err(CliError::from_sdk("RotateSecret", e));
        }
    }
    let now = labels(client, arn).await?;
    if !now
        .get(token)
        .is_some_and(|s| s.iter().any(|l| l == "AWSPENDING"))
    {
        return Err(CliError::failed(format!(
            "RotateSecret did not label {token} AWSPENDING"
        )));
    }
    Ok(())
}

async fn rotate_in_aws(
    client: &Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    arn: &str,
    function: &str,
    token: &str,
    args: &RotateArgs,
    out: &mut Output,
) -> Result<Exit, CliError> {
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    client
        .rotate_secret()
        .secret_id(arn)
        .client_request_token(token)
        .send()
        .await
        .map_err(|e| CliError::from_sdk("RotateSecret", e))?;
    out.say(format!("rotation started, token {token}"));
    let started = Instant::now();
    let log_group = format!("/aws/lambda/{function}");
    loop {
        let now = labels(client, arn).await?;
        let stages = now.get(token);
        let current = stages.is_some_and(|s| s.iter().any(|l| l == "AWSCURRENT"));
        let still_pending = stages.is_some_and(|s| s.iter().any(|l| l == "AWSPENDING"));
        if current && !still_pending {
            out.progress_done();
            out.say(format!(
                "rotation finished in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            print_labels(out, &now, "labels after");
            return Ok(Exit::Ok);
        }
        if let Some((step, error_type, error)) = failed_step(logs, &log_group, token, started_ms).await {
            out.progress_done();
            out.say(format!("{step} FAILED: {error_type}: {error}"));
            out.say("Secrets Manager retries a failed rotation; `rotor status` shows where it stands.");
            out.set("failed_step", json!(step));
            return Err(CliError::failed(format!("{step} failed: {error_type}: {error}")));
        }
        if started.elapsed() > args.timeout {
            out.progress_done();
            return Err(CliError::transient(format!(
                "the rotation did not finish within {}s; follow it with `rotor status {arn}`",
                args.timeout.as_secs()
            )));
        }
        out.progress(format!(
            "waiting for the rotation… {:.0} s",
            started.elapsed().as_secs_f64()
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The first failed step of `token` in the function's log group, if any.
async fn failed_step(
    logs: &aws_sdk_cloudwatchlogs::Client,
    log_group: &str,
    token: &str,
    since_ms: i64,
) -> Option<(String, String, String)> {
    let pattern = format!("{{ ($.token = \"{token}\") && ($.outcome = \"failed\") }}");
    let events = logs
        .filter_log_events()
        .log_group_name(log_group)
        .filter_pattern(pattern)
        .start_time(since_ms)
        .send()
        .await
        .ok()?
        .events
        .unwrap_or_default();
    events
        .iter()
        .find_map(|event| parse_failure(event.message.as_deref()?))
}

/// Reads a framework "step failed" log line: (step, error type, error).
///
/// ```
/// let line = r#"{"message":"step failed","step":"setSecret","outcome":"failed","error_type":"TargetError","error":"no"}"#;
/// assert_eq!(rotor_cli::rotate::parse_failure(line),
///            Some(("setSecret".into(), "TargetError".into(), "no".into())));
/// ```
pub fn parse_failure(line: &str) -> Option<(String, String, String)> {
    let value: Value = serde_json::from_str(line).ok()?;
    if value.get("outcome")?.as_str()? != "failed" {
        return None;
    }
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Some((field("step"), field("error_type"), field("error")))
}
