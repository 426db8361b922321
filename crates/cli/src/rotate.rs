//! `rotor rotate`: against AWS, start a rotation and follow it; locally, play Secrets Manager.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::types::RotationRulesType;
use aws_sdk_secretsmanager::Client;
use secret_rotor::Step;
use serde_json::Value;

use crate::invoke::{InvokeClient, InvokeError, InvokeStep};
use crate::output::Output;
use crate::{new_token, CliError, Exit};
use secret_rotor::driver::{Driver, Progress};
use secret_rotor::{AWSCURRENT, AWSPENDING};

/// One step of `rotor rotate --local --json`.
#[derive(Debug, serde::Serialize)]
struct StepDoc<'a> {
    step: &'a str,
    ok: bool,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The rotation function and schedule `rotate` attached to a secret that had none.
#[derive(Debug, serde::Serialize)]
struct ConfiguredDoc<'a> {
    function: &'a str,
    automatically_after_days: i64,
}

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
    versions.sort_by_key(|(_, stages)| !stages.iter().any(|s| s == AWSCURRENT));
    out.say(format!("{title}:"));
    for (version, stages) in &versions {
        out.say(format!("  {version}  {}", stages.join(", ")));
    }
    out.set_doc(
        &title.replace(' ', "_"),
        &versions.into_iter().collect::<BTreeMap<_, _>>(),
    );
}

/// Runs the command.
pub async fn rotate(
    client: &Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    args: &RotateArgs,
    out: &mut Output,
) -> Result<Exit, CliError> {
    if args.step.is_some() && !args.local {
        return Err(CliError::usage(
            "--step runs one step through the local Invoke API: it needs --local (without --local, \
             rotate starts a whole rotation in AWS)",
        ));
    }
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
    out.set_doc("secret_arn", &arn);
    out.set_doc("function", &function);
    print_labels(
        out,
        &description.version_ids_to_stages.clone().unwrap_or_default(),
        "labels before",
    );
    let token = match &args.token {
        Some(token) => token.clone(),
        None => new_token()?,
    };
    out.set_doc("token", &token);
    if args.local {
        rotate_locally(client, &description, &arn, &function, &token, args, out).await
    } else {
        rotate_in_aws(client, logs, &arn, &function, &token, args, out).await
    }
}

async fn rotate_locally(
    client: &Client,
    description: &DescribeSecretOutput,
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
            start_rotation(client, description, arn, function, token, out).await?;
            Step::ALL.to_vec()
        }
    };
    out.say(format!("token {token}"));
    // The framework's driver, as tests and the benchmark use it; events as the service sends
    // them, without a RotationToken (only the service has one).
    let step_invoker = InvokeStep {
        client: &invoker,
        function,
        timeout: args.timeout,
    };
    let driven = Driver::steps_only(&step_invoker)
        .with_rotation_token(false)
        .steps(arn, token, &steps, |progress| match progress {
            Progress::Started(step) => out.progress(format!("  {step:<13} running…")),
            Progress::Finished(step, result, elapsed) => {
                let ms = elapsed.as_secs_f64() * 1000.0;
                out.progress_done();
                match result {
                    Ok(_) => {
                        out.say(format!("  {step:<13} ok      {ms:8.1} ms"));
                        out.push_doc(
                            "steps",
                            &StepDoc {
                                step: step.as_str(),
                                ok: true,
                                duration_ms: ms,
                                error_type: None,
                                error: None,
                            },
                        );
                    }
                    Err(err) => {
                        out.say(format!("  {step:<13} FAILED  {ms:8.1} ms  {err}"));
                        let (error_type, message) = match err {
                            InvokeError::Function { error_type, message } => {
                                (error_type.as_str(), message.as_str())
                            }
                            InvokeError::Unreachable(why) => ("InvokeApiUnreachable", why.as_str()),
                        };
                        out.push_doc(
                            "steps",
                            &StepDoc {
                                step: step.as_str(),
                                ok: false,
                                duration_ms: ms,
                                error_type: Some(error_type),
                                error: Some(message),
                            },
                        );
                    }
                }
            }
        })
        .await;
    if let Err((step, err)) = driven {
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
    if args.step.is_none() || args.step == Some(Step::FinishSecret) {
        // What the service does once finishSecret succeeded.
        let now = labels(client, arn).await?;
        let finished = now.get(token).is_some_and(|s| s.iter().any(|l| l == AWSCURRENT));
        if finished && now.get(token).is_some_and(|s| s.iter().any(|l| l == AWSPENDING)) {
            client
                .update_secret_version_stage()
                .secret_id(arn)
                .version_stage(AWSPENDING)
                .remove_from_version_id(token)
                .send()
                .await
                .map_err(|e| CliError::from_sdk("UpdateSecretVersionStage", e))?;
        }
    }
    print_labels(out, &labels(client, arn).await?, "labels after");
    Ok(Exit::Ok)
}

/// The rotation function's ARN for a secret that has none: `function` named in the secret's own
/// partition, region and account (`None` if `secret_arn` is not a Secrets Manager ARN). A
/// `function` that is already an ARN is kept.
///
/// ```
/// assert_eq!(
///     rotor_cli::rotate::function_arn("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:db-AbCdEf", "pg").as_deref(),
///     Some("arn:aws-cn:lambda:cn-north-1:123456789012:function:pg")
/// );
/// ```
pub fn function_arn(secret_arn: &str, function: &str) -> Option<String> {
    if function.starts_with("arn:") {
        return Some(function.to_owned());
    }
    let parts: Vec<&str> = secret_arn.splitn(6, ':').collect();
    match parts[..] {
        ["arn", partition, "secretsmanager", region, account, _]
            if !partition.is_empty() && !region.is_empty() && !account.is_empty() =>
        {
            Some(format!(
                "arn:{partition}:lambda:{region}:{account}:function:{function}"
            ))
        }
        _ => None,
    }
}

/// Days between rotations given to a secret that had no rotation configured (as the template's
/// example schedule, `rate(30 days)`).
const NEW_SECRET_DAYS: i64 = 30;

/// What Secrets Manager does before the first invocation: an empty version `token` labelled
/// `AWSPENDING` (createSecret refuses a token the secret does not know, and PutSecretValue
/// cannot store an empty value). Only `RotateSecret` creates it. It is called with the secret's
/// own function ARN, unchanged (leaving it out makes emulators clear it) and no RotationRules,
/// so the rotation configuration stays as it was; this is checked, and a secret whose rotation is
/// disabled is refused (RotateSecret would enable it). A secret with no function gets `function`
/// in its own partition, with a schedule. A local emulator that cannot invoke
/// functions answers ResourceNotFoundException after labelling the version, which is accepted.
async fn start_rotation(
    client: &Client,
    description: &DescribeSecretOutput,
    arn: &str,
    function: &str,
    token: &str,
    out: &mut Output,
) -> Result<(), CliError> {
    let own = description
        .rotation_lambda_arn
        .as_deref()
        .filter(|own| !own.is_empty());
    let request = client.rotate_secret().secret_id(arn).client_request_token(token);
    let request = match own {
        Some(_) if description.rotation_enabled == Some(false) => {
            return Err(CliError::usage(format!(
                "rotation is disabled for {arn}: its function refuses to rotate it, and starting a rotation \
                 would turn it on again; turn it on first if that is intended (`aws secretsmanager rotate-secret \
                 --secret-id {arn} --no-rotate-immediately`)"
            )))
        }
        Some(own) => {
            out.say(format!(
                "RotateSecret with the secret's own function {own} and schedule, unchanged (in AWS the service \
                 also invokes that function for this token)"
            ));
            request.rotation_lambda_arn(own)
        }
        None => {
            let lambda = function_arn(arn, function).ok_or_else(|| {
                CliError::usage(format!(
                    "{arn} is not a Secrets Manager ARN: cannot name a rotation function for it"
                ))
            })?;
            out.say(format!(
                "{arn} had no rotation function: RotateSecret attaches {lambda}, every {NEW_SECRET_DAYS} days"
            ));
            out.set_doc(
                "rotation_configured",
                &ConfiguredDoc {
                    function: &lambda,
                    automatically_after_days: NEW_SECRET_DAYS,
                },
            );
            request.rotation_lambda_arn(lambda).rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(NEW_SECRET_DAYS)
                    .build(),
            )
        }
    };
    if let Err(e) = request.send().await {
        if e.code() != Some("ResourceNotFoundException") {
            return Err(CliError::from_sdk("RotateSecret", e));
        }
    }
    let now = client
        .describe_secret()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| CliError::from_sdk("DescribeSecret", e))?;
    let configuration = |d: &DescribeSecretOutput| {
        (
            d.rotation_enabled,
            d.rotation_lambda_arn.clone(),
            d.rotation_rules.clone(),
        )
    };
    if own.is_some() && configuration(&now) != configuration(description) {
        return Err(CliError::failed(format!(
            "RotateSecret changed the rotation configuration of {arn} (before: {:?}, now: {:?}); stopped before \
             the first step, with the empty version {token} AWSPENDING",
            configuration(description),
            configuration(&now)
        )));
    }
    let pending = now
        .version_ids_to_stages
        .as_ref()
        .and_then(|versions| versions.get(token))
        .is_some_and(|s| s.iter().any(|l| l == AWSPENDING));
    if !pending {
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
        let current = stages.is_some_and(|s| s.iter().any(|l| l == AWSCURRENT));
        let still_pending = stages.is_some_and(|s| s.iter().any(|l| l == AWSPENDING));
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
            out.set_doc("failed_step", &step);
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
