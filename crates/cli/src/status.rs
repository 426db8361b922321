//! `rotor status`: versions, labels, schedule, the rotation function, and a diagnosis.

use aws_sdk_secretsmanager::Client;
use serde_json::{json, Value};

use crate::output::Output;
use crate::{CliError, Exit};

/// A problem found in a secret's rotation state, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub remedy: String,
}

/// Diagnoses a rotation state from the labels: `AWSPENDING` on a version that is not
/// `AWSCURRENT` means a rotation started and did not finish, and Secrets Manager refuses new
/// rotations until it is finished or cleared.
///
/// ```
/// use std::collections::HashMap;
/// let mut labels = HashMap::new();
/// labels.insert("v1".to_owned(), vec!["AWSCURRENT".to_owned()]);
/// assert!(rotor_cli::status::diagnose("s", &labels, Some(true), Some("arn:f")).is_empty());
/// labels.insert("v2".to_owned(), vec!["AWSPENDING".to_owned()]);
/// let found = rotor_cli::status::diagnose("s", &labels, Some(true), Some("arn:f"));
/// assert!(found[0].problem.contains("v2"));
/// ```
pub fn diagnose(
    secret: &str,
    labels: &std::collections::HashMap<String, Vec<String>>,
    rotation_enabled: Option<bool>,
    function: Option<&str>,
) -> Vec<Diagnosis> {
    let mut found = Vec::new();
    let has = |version: &str, stage: &str| labels.get(version).is_some_and(|s| s.iter().any(|l| l == stage));
    for version in labels.keys() {
        if has(version, "AWSPENDING") && !has(version, "AWSCURRENT") {
            found.push(Diagnosis {
                problem: format!(
                    "rotation stuck: version {version} is AWSPENDING but not AWSCURRENT, so a rotation started \
                     and did not finish; Secrets Manager refuses new rotations until it is finished or cleared"
                ),
                remedy: format!(
                    "find why in the function's logs (filter token = \"{version}\" and outcome = \"failed\"), fix \
                     it, then finish the same rotation: `rotor rotate {secret} --token {version} --step setSecret` \
                     and the later steps, or start over by clearing the label: `aws secretsmanager \
                     update-secret-version-stage --secret-id {secret} --version-stage AWSPENDING \
                     --remove-from-version-id {version}`"
                ),
            });
        }
    }
    if !labels.values().any(|s| s.iter().any(|l| l == "AWSCURRENT")) {
        found.push(Diagnosis {
            problem: "no version is AWSCURRENT: applications cannot read the secret".to_owned(),
            remedy: format!(
                "move AWSCURRENT to a working version: `aws secretsmanager update-secret-version-stage --secret-id \
                 {secret} --version-stage AWSCURRENT --move-to-version-id VERSION`"
            ),
        });
    }
    if rotation_enabled == Some(true) && function.is_none_or(str::is_empty) {
        found.push(Diagnosis {
            problem: "rotation is enabled but no rotation function is set".to_owned(),
            remedy: "attach a function: `aws secretsmanager rotate-secret --rotation-lambda-arn ARN`"
                .to_owned(),
        });
    }
    found
}

/// Runs the command.
pub async fn status(client: &Client, secret: &str, out: &mut Output) -> Result<Exit, CliError> {
    let d = client
        .describe_secret()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| CliError::from_sdk("DescribeSecret", e))?;
    let arn = d.arn.clone().unwrap_or_else(|| secret.to_owned());
    let labels = d.version_ids_to_stages.clone().unwrap_or_default();
    let date = |t: Option<&aws_sdk_secretsmanager::primitives::DateTime>| {
        t.and_then(|t| {
            t.fmt(aws_sdk_secretsmanager::primitives::DateTimeFormat::DateTime)
                .ok()
        })
    };
    let schedule = d.rotation_rules.as_ref().map(|r| {
        r.schedule_expression
            .clone()
            .or_else(|| {
                r.automatically_after_days
                    .map(|days| format!("every {days} days"))
            })
            .unwrap_or_default()
    });
    out.say(format!("secret     {arn}"));
    out.say(format!(
        "rotation   {}",
        match d.rotation_enabled {
            Some(true) => "enabled",
            Some(false) => "disabled",
            None => "never configured",
        }
    ));
    out.say(format!(
        "function   {}",
        d.rotation_lambda_arn.as_deref().unwrap_or("-")
    ));
    out.say(format!("schedule   {}", schedule.as_deref().unwrap_or("-")));
    out.say(format!(
        "last       {}",
        date(d.last_rotated_date.as_ref()).unwrap_or_else(|| "-".into())
    ));
    out.say(format!(
        "next       {}",
        date(d.next_rotation_date.as_ref()).unwrap_or_else(|| "-".into())
    ));
    let mut versions: Vec<_> = labels.iter().filter(|(_, s)| !s.is_empty()).collect();
    versions.sort_by_key(|(_, s)| !s.iter().any(|l| l == "AWSCURRENT"));
    out.say("versions");
    for (version, stages) in &versions {
        out.say(format!("  {version}  {}", stages.join(", ")));
    }
    out.set("secret_arn", json!(arn));
    out.set("rotation_enabled", json!(d.rotation_enabled));
    out.set("rotation_function", json!(d.rotation_lambda_arn));
    out.set("schedule", json!(schedule));
    out.set("last_rotated", json!(date(d.last_rotated_date.as_ref())));
    out.set("next_rotation", json!(date(d.next_rotation_date.as_ref())));
    out.set(
        "versions",
        Value::Object(versions.iter().map(|(v, s)| ((*v).clone(), json!(s))).collect()),
    );
    let found = diagnose(
        &arn,
        &labels,
        d.rotation_enabled,
        d.rotation_lambda_arn.as_deref(),
    );
    for diagnosis in &found {
        out.say(format!(
            "PROBLEM    {}\nDO         {}",
            diagnosis.problem, diagnosis.remedy
        ));
        out.push(
            "problems",
            json!({"problem": diagnosis.problem, "remedy": diagnosis.remedy}),
        );
    }
    if found.is_empty() {
        out.say("healthy    no rotation in progress or stuck");
        Ok(Exit::Ok)
    } else {
        Ok(Exit::Attention)
    }
}
