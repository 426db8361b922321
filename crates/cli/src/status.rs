//! `rotor status`: versions, labels, schedule, the rotation function, and a diagnosis. For a
//! stuck rotation it first logs in with each labelled version (as `rotor check` does), because
//! what is safe to do depends on which password the target has.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use secret_rotor::Deadline;
use serde::Serialize;

use rotor_database::rds::{CLUSTER_TAG, INSTANCE_TAG};

use crate::check::{login, read_at, EngineKind, Login};
use crate::output::Output;
use crate::{CliError, Exit};
use secret_rotor::{SecretJson, AWSCURRENT, AWSPENDING, AWSPREVIOUS};

/// What `status` was asked to do.
#[derive(Debug, Clone)]
pub struct StatusArgs {
    /// Secret name or ARN.
    pub secret: String,
    /// The function the secret belongs to (default: the engine whose function accepts the value).
    pub engine: Option<EngineKind>,
    /// Extra CA bundle, as the function's `DATABASE_CA_BUNDLE`.
    pub ca_bundle: Option<PathBuf>,
}

/// A problem found in a secret's rotation state, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub remedy: String,
    /// The remedy in one word: `finish`, `clear`, `repair` (no labelled version logs in),
    /// `check` (logins not checked), `move-current`, `attach-function`.
    pub advice: &'static str,
}

/// Whether each labelled stage logged in (`AWSCURRENT` → `Ok(details)` or `Err(why)`); a stage
/// absent was not checked.
pub type Logins = BTreeMap<&'static str, Login>;

/// The stages whose login `status` checks for a stuck rotation.
pub const CHECKED_STAGES: [&str; 3] = [AWSCURRENT, AWSPENDING, AWSPREVIOUS];

/// Diagnoses a rotation state from the labels and the logins: `AWSPENDING` on a version that is
/// not `AWSCURRENT` means a rotation started and did not finish, and Secrets Manager refuses new
/// rotations until it is finished or cleared. Which of the two is safe depends on which version
/// logs in: after a single-user setSecret only `AWSPENDING` does, and clearing it would leave the
/// only working password in an unlabelled version.
///
/// ```
/// use std::collections::{BTreeMap, HashMap};
/// use rotor_cli::status::diagnose;
/// let mut labels = HashMap::new();
/// labels.insert("v1".to_owned(), vec!["AWSCURRENT".to_owned()]);
/// assert!(diagnose("s", &labels, Some(true), Some("arn:f"), &BTreeMap::new()).is_empty());
/// labels.insert("v2".to_owned(), vec!["AWSPENDING".to_owned()]);
/// let mut logins = BTreeMap::new();
/// logins.insert("AWSCURRENT", Err("password authentication failed".to_owned()));
/// logins.insert("AWSPENDING", Ok("TLS yes".to_owned()));
/// let found = diagnose("s", &labels, Some(true), Some("arn:f"), &logins);
/// assert!(found[0].problem.contains("v2"));
/// assert_eq!(found[0].advice, "finish");
/// logins.insert("AWSCURRENT", Ok("TLS yes".to_owned()));
/// logins.insert("AWSPENDING", Err("password authentication failed".to_owned()));
/// assert_eq!(diagnose("s", &labels, Some(true), Some("arn:f"), &logins)[0].advice, "clear");
/// ```
pub fn diagnose(
    secret: &str,
    labels: &HashMap<String, Vec<String>>,
    rotation_enabled: Option<bool>,
    function: Option<&str>,
    logins: &Logins,
) -> Vec<Diagnosis> {
    let mut found = Vec::new();
    let has = |version: &str, stage: &str| labels.get(version).is_some_and(|s| s.iter().any(|l| l == stage));
    let current = labels
        .keys()
        .find(|version| has(version, AWSCURRENT))
        .map(String::as_str);
    for version in labels.keys() {
        if has(version, AWSPENDING) && !has(version, AWSCURRENT) {
            let (advice, remedy) = stuck_remedy(secret, version, current, logins);
            found.push(Diagnosis {
                problem: format!(
                    "rotation stuck: version {version} is AWSPENDING but not AWSCURRENT, so a rotation started \
                     and did not finish; Secrets Manager refuses new rotations until it is finished or cleared"
                ),
                remedy,
                advice,
            });
        }
    }
    if current.is_none() {
        found.push(Diagnosis {
            problem: "no version is AWSCURRENT: applications cannot read the secret".to_owned(),
            remedy: format!(
                "move AWSCURRENT to a working version: `aws secretsmanager update-secret-version-stage --secret-id \
                 {secret} --version-stage AWSCURRENT --move-to-version-id VERSION`"
            ),
            advice: "move-current",
        });
    }
    if rotation_enabled == Some(true) && function.is_none_or(str::is_empty) {
        found.push(Diagnosis {
            problem: "rotation is enabled but no rotation function is set".to_owned(),
            remedy: "attach a function: `aws secretsmanager rotate-secret --rotation-lambda-arn ARN`"
                .to_owned(),
            advice: "attach-function",
        });
    }
    found
}

/// What to do about the stuck version `pending`, given which stages log in.
fn stuck_remedy(
    secret: &str,
    pending: &str,
    current: Option<&str>,
    logins: &Logins,
) -> (&'static str, String) {
    let works = |stage: &str| logins.get(stage).map(Result::is_ok);
    let finish_function = format!("`rotor rotate {secret} --local --token {pending} --step finishSecret`");
    let finish_label = format!(
        "`aws secretsmanager update-secret-version-stage --secret-id {secret} --version-stage AWSCURRENT \
         --move-to-version-id {pending}{}`",
        current
            .map(|c| format!(" --remove-from-version-id {c}"))
            .unwrap_or_default()
    );
    let clear = format!(
        "`aws secretsmanager update-secret-version-stage --secret-id {secret} --version-stage AWSPENDING \
         --remove-from-version-id {pending}`"
    );
    let retry = format!(
        "`rotor rotate {secret} --local --token {pending} --step setSecret`, then testSecret and finishSecret"
    );
    let logs = format!("the function's logs (filter token = \"{pending}\" and outcome = \"failed\")");
    match (works(AWSCURRENT), works(AWSPENDING)) {
        (_, Some(true)) => (
            "finish",
            format!(
                "AWSPENDING logs in{}: finish this rotation; do not clear AWSPENDING. Through the function (behind a \
                 local Invoke API; add --function and --invoke-endpoint as needed): {finish_function}; or move the \
                 label yourself: {finish_label}",
                if works(AWSCURRENT) == Some(true) {
                    " (so does AWSCURRENT)"
                } else {
                    " and AWSCURRENT does not, so AWSPENDING holds the only password that works"
                }
            ),
        ),
        (Some(true), Some(false)) => (
            "clear",
            format!(
                "AWSCURRENT logs in and AWSPENDING does not (its password was never set): clearing the label is \
                 safe: {clear}; or find why in {logs}, fix it, and retry the same rotation: {retry}"
            ),
        ),
        (Some(false), Some(false)) if works(AWSPREVIOUS) == Some(true) => (
            "repair",
            format!(
                "neither AWSCURRENT nor AWSPENDING logs in, AWSPREVIOUS does: do not clear AWSPENDING or move \
                 AWSCURRENT; retry the rotation (a single-user setSecret logs in with AWSPREVIOUS when AWSCURRENT \
                 is refused): {retry}"
            ),
        ),
        (Some(false), Some(false)) => (
            "repair",
            "neither AWSCURRENT nor AWSPENDING logs in (see the logins; AWSPREVIOUS neither, if there is one): \
             clearing or finishing would leave no working password labelled; restore access first (reset the \
             password to AWSCURRENT's by hand, or fix what refuses the login), check with `rotor status` again"
                .to_owned(),
        ),
        _ => (
            "check",
            format!(
                "which version logs in was not checked (give --engine): check before acting, because clearing \
                 AWSPENDING after a single-user setSecret loses the only password that works. If AWSPENDING logs \
                 in, finish: {finish_function} or {finish_label}; if only AWSCURRENT does, clear: {clear}; to \
                 continue instead, find why in {logs}, fix it, and retry: {retry}"
            ),
        ),
    }
}

/// Logs in with each labelled stage of [`CHECKED_STAGES`]; `Err(why)` when the engine is unknown.
async fn check_logins(
    client: &Client,
    arn: &str,
    labels: &HashMap<String, Vec<String>>,
    args: &StatusArgs,
) -> Result<Logins, String> {
    let labelled = |stage: &str| labels.values().any(|s| s.iter().any(|l| l == stage));
    let mut values = Vec::new();
    for stage in CHECKED_STAGES.into_iter().filter(|stage| labelled(stage)) {
        let value = read_at(client, arn, stage).await.map_err(|e| e.message);
        values.push((stage, value));
    }
    let engine = match args.engine {
        Some(engine) => engine,
        None => values
            .iter()
            .find_map(|(_, value)| EngineKind::of(value.as_ref().ok()?))
            .ok_or("no labelled value is a secret of a known engine (give --engine)")?,
    };
    let mut logins = Logins::new();
    for (stage, value) in values {
        let deadline = Deadline::after(Duration::from_secs(30));
        let result = match value {
            Ok(value) => login(engine, args.ca_bundle.as_deref(), &value, deadline).await,
            Err(why) => Err(why),
        };
        logins.insert(stage, result);
    }
    Ok(logins)
}

/// Runs the command.
pub async fn status(client: &Client, args: &StatusArgs, out: &mut Output) -> Result<Exit, CliError> {
    let secret = args.secret.as_str();
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
    let schedule = d.rotation_rules.as_ref().map(schedule_of);
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
    let managed_by_rds = rds_resource(d.tags());
    if let Some(resource) = &managed_by_rds {
        out.say(format!(
            "managed    by RDS, master secret of {resource}: RDS rotates it itself, with no rotation function"
        ));
    }
    // An RDS-managed master names no master of its own; its value is not read.
    let master = match managed_by_rds {
        Some(_) => None,
        None => master_of(client, &arn).await,
    };
    if let Some(master) = &master {
        out.say(format!("master     {master}"));
    }
    let mut versions: Vec<_> = labels.iter().filter(|(_, s)| !s.is_empty()).collect();
    versions.sort_by_key(|(_, s)| !s.iter().any(|l| l == AWSCURRENT));
    out.say("versions");
    for (version, stages) in &versions {
        out.say(format!("  {version}  {}", stages.join(", ")));
    }
    let mut doc = StatusDoc {
        secret_arn: arn.clone(),
        rotation_enabled: d.rotation_enabled,
        rotation_function: d.rotation_lambda_arn.clone(),
        schedule: schedule.clone(),
        last_rotated: date(d.last_rotated_date.as_ref()),
        next_rotation: date(d.next_rotation_date.as_ref()),
        versions: versions
            .iter()
            .map(|(v, s)| ((*v).clone(), (*s).clone()))
            .collect(),
        managed_by_rds: managed_by_rds.clone(),
        master,
        logins_error: None,
        logins: None,
        problems: Vec::new(),
    };
    let stuck = labels
        .values()
        .any(|s| s.iter().any(|l| l == AWSPENDING) && !s.iter().any(|l| l == AWSCURRENT));
    let mut logins = Logins::new();
    if stuck {
        match check_logins(client, &arn, &labels, args).await {
            Ok(checked) => logins = checked,
            Err(why) => {
                out.say(format!("logins     not checked: {why}"));
                doc.logins_error = Some(why.to_string());
            }
        }
        for (stage, result) in &logins {
            match result {
                Ok(details) => out.say(format!("login      {stage} logs in: {details}")),
                Err(why) => out.say(format!("login      {stage} does NOT log in: {why}")),
            }
        }
        doc.logins = Some(
            logins
                .iter()
                .map(|(stage, result)| {
                    let fact = match result {
                        Ok(details) => LoginDoc {
                            ok: true,
                            details: Some(details.clone()),
                            error: None,
                        },
                        Err(why) => LoginDoc {
                            ok: false,
                            details: None,
                            error: Some(why.clone()),
                        },
                    };
                    ((*stage).to_owned(), fact)
                })
                .collect(),
        );
    }
    let mut found = diagnose(
        &arn,
        &labels,
        d.rotation_enabled,
        d.rotation_lambda_arn.as_deref(),
        &logins,
    );
    if managed_by_rds.is_some() {
        found = for_rds_managed(found);
    }
    for diagnosis in &found {
        out.say(format!(
            "PROBLEM    {}\nDO         {}",
            diagnosis.problem, diagnosis.remedy
        ));
        doc.problems.push(ProblemDoc {
            problem: diagnosis.problem.clone(),
            remedy: diagnosis.remedy.clone(),
            advice: diagnosis.advice,
        });
    }
    out.set_all(&doc);
    if found.is_empty() {
        out.say("healthy    no rotation in progress or stuck");
        Ok(Exit::Ok)
    } else {
        Ok(Exit::Attention)
    }
}

/// `rotor status --json`: the secret's rotation configuration, its labelled versions, and for a
/// stuck rotation which versions log in and what to do.
#[derive(Debug, Serialize)]
struct StatusDoc {
    secret_arn: String,
    rotation_enabled: Option<bool>,
    rotation_function: Option<String>,
    schedule: Option<String>,
    last_rotated: Option<String>,
    next_rotation: Option<String>,
    versions: BTreeMap<String, Vec<String>>,
    /// The RDS instance or cluster whose master secret this is (RDS rotates it).
    #[serde(skip_serializing_if = "Option::is_none")]
    managed_by_rds: Option<String>,
    /// The master secret an alternating-users secret names, and what it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    master: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logins_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logins: Option<BTreeMap<String, LoginDoc>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<ProblemDoc>,
}

/// Whether one labelled version logged in.
#[derive(Debug, Serialize)]
struct LoginDoc {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A problem found, and what to do.
#[derive(Debug, Serialize)]
struct ProblemDoc {
    problem: String,
    remedy: String,
    advice: &'static str,
}

/// `DB instance <arn>` or `DB cluster <arn>` when the tags are those RDS puts on the master
/// secrets it manages.
fn rds_resource(tags: &[aws_sdk_secretsmanager::types::Tag]) -> Option<String> {
    tags.iter().find_map(|tag| match (tag.key(), tag.value()) {
        (Some(INSTANCE_TAG), Some(arn)) => Some(format!("DB instance {arn}")),
        (Some(CLUSTER_TAG), Some(arn)) => Some(format!("DB cluster {arn}")),
        _ => None,
    })
}

/// The `masterarn` of the secret's `AWSCURRENT`, and what that master is: managed by RDS (no
/// host: the function asks RDS for the writer), or on a host of its own. `None` when the secret
/// names no master, or its value cannot be read here (nothing else in `status` needs it).
async fn master_of(client: &Client, arn: &str) -> Option<String> {
    let value = read_at(client, arn, AWSCURRENT).await.ok()?;
    let doc = SecretJson::parse(&value).ok()?;
    let master = doc.optional_str("masterarn").ok()??.to_owned();
    let described = match client.describe_secret().secret_id(&master).send().await {
        Ok(d) => d,
        Err(e) => {
            let why = CliError::from_sdk("DescribeSecret", e).message;
            return Some(format!("{master} (not described: {why})"));
        }
    };
    Some(match rds_resource(described.tags()) {
        Some(resource) => {
            format!("{master} (managed by RDS for {resource}: the function asks RDS for its writer endpoint)")
        }
        None => format!("{master} (not managed by RDS: its value names the host)"),
    })
}

/// The diagnosis of a secret RDS manages (a master secret with `ManageMasterUserPassword`): RDS
/// rotates it with no rotation function, so the advice to attach one does not apply.
///
/// ```
/// use std::collections::{BTreeMap, HashMap};
/// use rotor_cli::status::{diagnose, for_rds_managed};
/// let labels = HashMap::from([("v1".to_owned(), vec!["AWSCURRENT".to_owned()])]);
/// let found = diagnose("rds!db-1", &labels, Some(true), None, &BTreeMap::new());
/// assert_eq!(found[0].advice, "attach-function");
/// assert!(for_rds_managed(found).is_empty());
/// ```
pub fn for_rds_managed(found: Vec<Diagnosis>) -> Vec<Diagnosis> {
    found
        .into_iter()
        .filter(|diagnosis| diagnosis.advice != "attach-function")
        .collect()
}

/// A rotation schedule as people read it: its expression, else `every N days`.
pub fn schedule_of(rules: &aws_sdk_secretsmanager::types::RotationRulesType) -> String {
    rules
        .schedule_expression
        .clone()
        .or_else(|| {
            rules
                .automatically_after_days
                .map(|days| format!("every {days} days"))
        })
        .unwrap_or_default()
}
