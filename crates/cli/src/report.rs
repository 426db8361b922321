//! `rotor report`: for many secrets at once (named, or found by tag with `ListSecrets`), the
//! rotation settings, the last and next rotation, whether a rotation is stuck (and since when),
//! and, with `--logs`, the last failed step read from each rotation function's log group.
//!
//! Secrets Manager keeps no record of a failed rotation. What it does keep, and what this
//! report relies on first, is the label state: a version labelled `AWSPENDING` but not
//! `AWSCURRENT` is a rotation that started and did not finish (stuck, or running right now), and
//! that version's `CreatedDate` (from `ListSecretVersionIds`) is when it started. The failure
//! itself exists only in the function's logs: every step the framework runs ends with a JSON
//! line `"step succeeded"` or `"step failed"` carrying `secret_arn`, `step`, `token` and, for a
//! failure, `error_type` and `error` (never a secret value). `--logs` reads those lines; a failure
//! is the secret's *last rotation failed* unless a later `finishSecret` succeeded (or the secret's
//! `LastRotatedDate` is later). No secret value is ever read: this module never calls
//! `GetSecretValue`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::primitives::{DateTime, DateTimeFormat};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_sdk_secretsmanager::Client;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::output::Output;
use crate::status::{diagnose, Logins};
use crate::{CliError, Exit};
use secret_rotor::{AWSCURRENT, AWSPENDING};

/// What `report` was asked to do.
#[derive(Debug, Clone)]
pub struct ReportArgs {
    /// Secret names or ARNs (or else `tags`).
    pub secrets: Vec<String>,
    /// `KEY=VALUE` filters: the secrets carrying every one of these tags exactly.
    pub tags: Vec<String>,
    /// Read each rotation function's log group for the last failed step.
    pub logs: bool,
    /// How far back `logs` reads, in days.
    pub logs_days: u32,
    /// `ListSecrets` page size (1 to 100).
    pub page_size: i32,
}

/// Secrets described at once.
const CONCURRENCY: usize = 8;

/// The lines `--logs` asks CloudWatch Logs for: failed steps, and finished rotations (which
/// resolve an earlier failure). Every line is parsed and checked again here.
pub const LOG_FILTER_PATTERN: &str =
    r#"{ ($.outcome = "failed") || (($.step = "finishSecret") && ($.message = "step succeeded")) }"#;

/// Parses a `--tag` argument, `KEY=VALUE` (split at the first `=`; the value may be empty).
///
/// ```
/// use rotor_cli::report::parse_tag;
/// assert_eq!(parse_tag("team=db=x").unwrap(), ("team".to_owned(), "db=x".to_owned()));
/// assert!(parse_tag("team").is_err());
/// assert!(parse_tag("=db").is_err());
/// ```
pub fn parse_tag(arg: &str) -> Result<(String, String), CliError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(CliError::usage(format!(
            "--tag {arg:?}: expected KEY=VALUE (a non-empty key)"
        ))),
    }
}

/// The function's name in a Lambda ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`);
/// anything else is returned as it is.
///
/// ```
/// use rotor_cli::report::function_name;
/// assert_eq!(function_name("arn:aws:lambda:eu-west-1:123456789012:function:pg"), "pg");
/// assert_eq!(function_name("arn:aws:lambda:eu-west-1:123456789012:function:pg:live"), "pg");
/// assert_eq!(function_name("pg"), "pg");
/// ```
pub fn function_name(arn: &str) -> &str {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.iter().position(|p| *p == "function") {
        Some(i) if i + 1 < parts.len() && !parts[i + 1].is_empty() => parts[i + 1],
        _ => arn,
    }
}

/// The version that is `AWSPENDING` but not `AWSCURRENT`: a rotation started and did not finish.
pub fn stuck_version(labels: &HashMap<String, Vec<String>>) -> Option<&str> {
    labels
        .iter()
        .find(|(_, stages)| stages.iter().any(|s| s == AWSPENDING) && !stages.iter().any(|s| s == AWSCURRENT))
        .map(|(version, _)| version.as_str())
}

/// What one framework log line says about a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFact {
    /// `"step failed"`.
    Failed {
        /// The step.
        step: String,
        /// The Lambda `errorType` (`TargetError`, …).
        error_type: String,
        /// The error (the framework never puts a secret value in it).
        error: String,
        /// The rotation's token.
        token: String,
    },
    /// `"step succeeded"` for finishSecret: the rotation finished.
    Finished,
}

/// Reads a framework log line: the secret it is about (`secret_arn`, the event's `SecretId`)
/// and what it says. Other lines are `None`.
///
/// ```
/// use rotor_cli::report::{parse_log_line, LogFact};
/// let line = r#"{"message":"step failed","secret_arn":"arn:s","step":"setSecret","token":"t","outcome":"failed","error_type":"TargetError","error":"no"}"#;
/// let (secret, fact) = parse_log_line(line).unwrap();
/// assert_eq!(secret, "arn:s");
/// assert!(matches!(fact, LogFact::Failed { step, .. } if step == "setSecret"));
/// let done = r#"{"message":"step succeeded","secret_arn":"arn:s","step":"finishSecret","outcome":"finished"}"#;
/// assert_eq!(parse_log_line(done), Some(("arn:s".to_owned(), LogFact::Finished)));
/// let set = r#"{"message":"step succeeded","secret_arn":"arn:s","step":"setSecret","outcome":"set"}"#;
/// assert_eq!(parse_log_line(set), None);
/// ```
pub fn parse_log_line(line: &str) -> Option<(String, LogFact)> {
    let value: Value = serde_json::from_str(line.trim()).ok()?;
    let field = |name: &str| value.get(name).and_then(Value::as_str);
    let secret = field("secret_arn").filter(|s| !s.is_empty())?.to_owned();
    let fact = match (field("message")?, field("outcome")) {
        ("step failed", Some("failed")) => LogFact::Failed {
            step: field("step").unwrap_or_default().to_owned(),
            error_type: field("error_type").unwrap_or_default().to_owned(),
            error: field("error").unwrap_or_default().to_owned(),
            token: field("token").unwrap_or_default().to_owned(),
        },
        ("step succeeded", Some(outcome)) if outcome != "failed" && field("step") == Some("finishSecret") => {
            LogFact::Finished
        }
        _ => return None,
    };
    Some((secret, fact))
}

/// The last failed step of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// When (milliseconds since the epoch, the log event's timestamp).
    pub at_ms: i64,
    /// The step.
    pub step: String,
    /// The Lambda `errorType`.
    pub error_type: String,
    /// The error.
    pub error: String,
    /// The rotation's token.
    pub token: String,
    /// A later rotation finished (a `finishSecret` success in the logs, or a later
    /// `LastRotatedDate`): the failure is history, not the state of the last rotation.
    pub resolved: bool,
}

/// The last failure among one secret's log facts (`(timestamp ms, fact)`, any order), and
/// whether a later finished rotation (in the facts, or `last_rotated_ms`) resolved it.
///
/// ```
/// use rotor_cli::report::{last_failure, LogFact};
/// let failed = |step: &str| LogFact::Failed { step: step.into(), error_type: "TargetError".into(),
///                                             error: "no".into(), token: "t".into() };
/// let facts = vec![(10, failed("setSecret")), (20, LogFact::Finished), (30, failed("testSecret"))];
/// let last = last_failure(&facts, None).unwrap();
/// assert_eq!((last.step.as_str(), last.resolved), ("testSecret", false));
/// let facts = vec![(10, failed("setSecret")), (20, LogFact::Finished)];
/// assert!(last_failure(&facts, None).unwrap().resolved);
/// assert!(last_failure(&[(10, failed("setSecret"))], Some(11)).unwrap().resolved);
/// assert_eq!(last_failure(&[(20, LogFact::Finished)], None), None);
/// ```
pub fn last_failure(facts: &[(i64, LogFact)], last_rotated_ms: Option<i64>) -> Option<Failure> {
    let finished = facts
        .iter()
        .filter(|(_, fact)| *fact == LogFact::Finished)
        .map(|(at, _)| *at)
        .max();
    let (at_ms, fact) = facts
        .iter()
        .filter(|(_, fact)| matches!(fact, LogFact::Failed { .. }))
        .max_by_key(|(at, _)| *at)?;
    let LogFact::Failed {
        step,
        error_type,
        error,
        token,
    } = fact
    else {
        return None;
    };
    let resolved = finished.is_some_and(|f| f > *at_ms) || last_rotated_ms.is_some_and(|r| r > *at_ms);
    Some(Failure {
        at_ms: *at_ms,
        step: step.clone(),
        error_type: error_type.clone(),
        error: error.clone(),
        token: token.clone(),
        resolved,
    })
}

/// What `--logs` found for a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogsRead {
    /// `--logs` not given.
    NotRequested,
    /// The secret has no rotation function, so no log group.
    NoFunction,
    /// The group was read from `since_ms` on.
    Read {
        /// The log group.
        group: String,
        /// Start of the window read.
        since_ms: i64,
    },
    /// The group does not exist (the function never ran, or logs elsewhere).
    NoGroup {
        /// The log group.
        group: String,
    },
    /// The group could not be read.
    Unreadable {
        /// The log group.
        group: String,
        /// Why.
        error: String,
    },
}

/// A rotation that started and did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// The version labelled `AWSPENDING` (its id is the rotation's token).
    pub version: String,
    /// When that version was created (the rotation started), if known.
    pub since: Option<String>,
}

/// One secret's line of the report.
#[derive(Debug, Clone)]
pub struct SecretReport {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// `RotationEnabled` (`None`: rotation never configured).
    pub rotation_enabled: Option<bool>,
    /// The rotation function's name.
    pub function: Option<String>,
    /// The schedule (expression or `every N days`).
    pub schedule: Option<String>,
    /// `LastRotatedDate`.
    pub last_rotated: Option<String>,
    /// `NextRotationDate`.
    pub next_rotation: Option<String>,
    /// A stuck (or running) rotation.
    pub stuck: Option<Stuck>,
    /// The last failed step found in the logs.
    pub last_failure: Option<Failure>,
    /// What `--logs` read.
    pub logs: LogsRead,
    /// Every problem `rotor status` would report (the stuck rotation included), with its
    /// one-word advice; `rotor status SECRET` says what to do.
    pub problems: Vec<(String, &'static str)>,
}

impl SecretReport {
    /// The last rotation failed (a failure in the logs no later rotation resolved).
    pub fn failed(&self) -> bool {
        self.last_failure.as_ref().is_some_and(|f| !f.resolved)
    }

    /// Whether someone should look at it: stuck, failed, or another problem.
    pub fn needs_attention(&self) -> bool {
        self.stuck.is_some() || self.failed() || !self.problems.is_empty()
    }

    /// One word: `stuck`, `failed`, `attention` (another problem), or `ok`.
    pub fn state(&self) -> &'static str {
        if self.stuck.is_some() {
            "stuck"
        } else if self.failed() {
            "failed"
        } else if !self.problems.is_empty() {
            "attention"
        } else {
            "ok"
        }
    }

    /// `enabled`, `disabled`, or `never-configured`.
    pub fn rotation(&self) -> &'static str {
        match self.rotation_enabled {
            Some(true) => "enabled",
            Some(false) => "disabled",
            None => "never-configured",
        }
    }

    /// The JSON object of this secret.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.doc()).unwrap_or(Value::Null)
    }

    /// This secret as `rotor report --json` prints it.
    fn doc(&self) -> SecretDoc<'_> {
        let logs = match &self.logs {
            LogsRead::NotRequested => LogsDoc::default(),
            LogsRead::NoFunction => LogsDoc {
                reason: Some("no rotation function"),
                ..LogsDoc::default()
            },
            LogsRead::Read { group, since_ms } => LogsDoc {
                read: true,
                group: Some(group),
                since: Some(date_ms(*since_ms)),
                ..LogsDoc::default()
            },
            LogsRead::NoGroup { group } => LogsDoc {
                group: Some(group),
                reason: Some("log group not found"),
                ..LogsDoc::default()
            },
            LogsRead::Unreadable { group, error } => LogsDoc {
                group: Some(group),
                error: Some(error),
                ..LogsDoc::default()
            },
        };
        SecretDoc {
            name: &self.name,
            arn: &self.arn,
            rotation: self.rotation(),
            rotation_enabled: self.rotation_enabled,
            rotation_function: self.function.as_deref(),
            schedule: self.schedule.as_deref(),
            last_rotated: self.last_rotated.as_deref(),
            next_rotation: self.next_rotation.as_deref(),
            state: self.state(),
            attention: self.needs_attention(),
            stuck: self.stuck.as_ref().map(|s| StuckDoc {
                version: &s.version,
                since: s.since.as_deref(),
            }),
            last_failure: self.last_failure.as_ref().map(|f| FailureDoc {
                at: date_ms(f.at_ms),
                step: &f.step,
                error_type: &f.error_type,
                error: &f.error,
                token: &f.token,
                resolved: f.resolved,
            }),
            logs,
            problems: self
                .problems
                .iter()
                .map(|(problem, advice)| ProblemDoc { problem, advice })
                .collect(),
        }
    }
}

/// One secret in `rotor report --json`.
#[derive(Debug, Serialize)]
struct SecretDoc<'a> {
    name: &'a str,
    arn: &'a str,
    rotation: &'static str,
    rotation_enabled: Option<bool>,
    rotation_function: Option<&'a str>,
    schedule: Option<&'a str>,
    last_rotated: Option<&'a str>,
    next_rotation: Option<&'a str>,
    state: &'static str,
    attention: bool,
    stuck: Option<StuckDoc<'a>>,
    last_failure: Option<FailureDoc<'a>>,
    logs: LogsDoc<'a>,
    problems: Vec<ProblemDoc<'a>>,
}

/// A rotation stuck since when.
#[derive(Debug, Serialize)]
struct StuckDoc<'a> {
    version: &'a str,
    since: Option<&'a str>,
}

/// The last failure found in the function's logs.
#[derive(Debug, Serialize)]
struct FailureDoc<'a> {
    at: Option<String>,
    step: &'a str,
    error_type: &'a str,
    error: &'a str,
    token: &'a str,
    resolved: bool,
}

/// What was read of the function's logs.
#[derive(Debug, Default, Serialize)]
struct LogsDoc<'a> {
    read: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// A problem, and the one-word advice.
#[derive(Debug, Serialize)]
struct ProblemDoc<'a> {
    problem: &'a str,
    advice: &'static str,
}

/// The counts of `rotor report --json`.
#[derive(Debug, Serialize)]
struct SummaryDoc {
    secrets: usize,
    stuck: usize,
    failed: usize,
    attention: usize,
    logs_read: bool,
}

/// A date to the second, RFC 3339.
fn date(t: &DateTime) -> Option<String> {
    DateTime::from_secs(t.secs()).fmt(DateTimeFormat::DateTime).ok()
}

fn date_ms(ms: i64) -> Option<String> {
    date(&DateTime::from_secs(ms.div_euclid(1000)))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// What Secrets Manager says about one secret (no value).
struct Described {
    arn: String,
    name: String,
    rotation_enabled: Option<bool>,
    function_arn: Option<String>,
    schedule: Option<String>,
    last_rotated: Option<DateTime>,
    next_rotation: Option<DateTime>,
    labels: HashMap<String, Vec<String>>,
    tags: Vec<(String, String)>,
    /// The stuck version's `CreatedDate`, if there is one and the date is known.
    stuck_since: Option<DateTime>,
}

impl Described {
    fn new(d: DescribeSecretOutput, id: &str) -> Self {
        let schedule = d.rotation_rules.as_ref().map(crate::status::schedule_of);
        Self {
            arn: d.arn.clone().unwrap_or_else(|| id.to_owned()),
            name: d.name.clone().unwrap_or_else(|| id.to_owned()),
            rotation_enabled: d.rotation_enabled,
            function_arn: d.rotation_lambda_arn.clone().filter(|f| !f.is_empty()),
            schedule,
            last_rotated: d.last_rotated_date,
            next_rotation: d.next_rotation_date,
            labels: d.version_ids_to_stages.clone().unwrap_or_default(),
            tags: d
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
                .collect(),
            stuck_since: None,
        }
    }
}

/// Whether `tags` carries every one of `wanted` exactly (ListSecrets' tag filters match
/// prefixes, and a key and a value of two different tags).
fn has_tags(tags: &[(String, String)], wanted: &[(String, String)]) -> bool {
    wanted.iter().all(|w| tags.iter().any(|t| t == w))
}

/// The ARNs of the secrets carrying every tag of `wanted`: `ListSecrets` filtered by the first
/// tag's key and value (server side), every page, then checked exactly here.
async fn list_tagged(
    client: &Client,
    wanted: &[(String, String)],
    page_size: i32,
    out: &Output,
) -> Result<Vec<String>, CliError> {
    let (key, value) = &wanted[0];
    let mut filters = Vec::new();
    // A leading `!` would make the filter a negation.
    if !key.starts_with('!') {
        filters.push(
            Filter::builder()
                .key(FilterNameStringType::TagKey)
                .values(key)
                .build(),
        );
    }
    if !value.is_empty() && !value.starts_with('!') {
        filters.push(
            Filter::builder()
                .key(FilterNameStringType::TagValue)
                .values(value)
                .build(),
        );
    }
    let mut pages = client
        .list_secrets()
        .set_filters(Some(filters))
        .max_results(page_size)
        .into_paginator()
        .send();
    let mut arns = Vec::new();
    let mut seen = 0usize;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| CliError::from_sdk("ListSecrets", e))?;
        for entry in page.secret_list() {
            seen += 1;
            let tags: Vec<(String, String)> = entry
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            if let (true, Some(arn)) = (has_tags(&tags, wanted), entry.arn()) {
                arns.push(arn.to_owned());
            }
        }
        out.progress(format!("listing secrets… {seen} seen, {} match", arns.len()));
    }
    out.progress_done();
    Ok(arns)
}

/// DescribeSecret, and for a stuck rotation the pending version's CreatedDate. `None`: the
/// secret is gone, or (`wanted`) no longer carries the tags.
async fn describe(
    client: Client,
    id: String,
    wanted: Vec<(String, String)>,
) -> Result<Option<Described>, CliError> {
    let d = match client.describe_secret().secret_id(&id).send().await {
        Ok(d) => d,
        Err(e) if !wanted.is_empty() && e.code() == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(CliError::from_sdk(&format!("DescribeSecret {id}"), e)),
    };
    let mut described = Described::new(d, &id);
    if !wanted.is_empty() && !has_tags(&described.tags, &wanted) {
        return Ok(None);
    }
    if let Some(version) = stuck_version(&described.labels).map(str::to_owned) {
        let mut pages = client
            .list_secret_version_ids()
            .secret_id(&described.arn)
            .max_results(100)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| CliError::from_sdk("ListSecretVersionIds", e))?;
            if let Some(v) = page
                .versions()
                .iter()
                .find(|v| v.version_id() == Some(version.as_str()))
            {
                described.stuck_since = v.created_date;
                break;
            }
        }
    }
    Ok(Some(described))
}

/// Describes every secret, [`CONCURRENCY`] at a time, in the order given.
async fn describe_all(
    client: &Client,
    ids: &[String],
    wanted: &[(String, String)],
    out: &Output,
) -> Result<Vec<Described>, CliError> {
    let mut found = Vec::with_capacity(ids.len());
    for (n, chunk) in ids.chunks(CONCURRENCY).enumerate() {
        let mut tasks = JoinSet::new();
        for (i, id) in chunk.iter().enumerate() {
            let task = describe(client.clone(), id.clone(), wanted.to_vec());
            tasks.spawn(async move { (i, task.await) });
        }
        let mut results = Vec::with_capacity(chunk.len());
        while let Some(joined) = tasks.join_next().await {
            let (i, result) = joined.map_err(|e| CliError::failed(format!("describing a secret: {e}")))?;
            results.push((i, result?));
        }
        results.sort_by_key(|(i, _)| *i);
        found.extend(results.into_iter().filter_map(|(_, d)| d));
        if ids.len() > CONCURRENCY {
            out.progress(format!(
                "describing secrets… {} of {}",
                (n * CONCURRENCY + chunk.len()),
                ids.len()
            ));
        }
    }
    out.progress_done();
    Ok(found)
}

/// Every framework line of a log group since `since_ms`, by the secret they are about.
type FactsBySecret = HashMap<String, Vec<(i64, LogFact)>>;

/// Reads a function's log group: `Ok(None)` if it does not exist.
async fn read_group(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    since_ms: i64,
    out: &Output,
) -> Result<Option<FactsBySecret>, CliError> {
    let mut pages = logs
        .filter_log_events()
        .log_group_name(group)
        .start_time(since_ms)
        .filter_pattern(LOG_FILTER_PATTERN)
        .into_paginator()
        .send();
    let mut facts = FactsBySecret::new();
    let mut lines = 0usize;
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                out.progress_done();
                return Ok(None);
            }
            Err(e) => {
                out.progress_done();
                return Err(CliError::from_sdk(&format!("FilterLogEvents {group}"), e));
            }
        };
        for event in page.events() {
            let (Some(message), Some(at)) = (event.message(), event.timestamp()) else {
                continue;
            };
            if let Some((secret, fact)) = parse_log_line(message) {
                lines += 1;
                facts.entry(secret).or_default().push((at, fact));
            }
        }
        out.progress(format!("reading {group}… {lines} rotation lines"));
    }
    out.progress_done();
    Ok(Some(facts))
}

/// Runs the command.
pub async fn report(
    client: &Client,
    logs: Option<&aws_sdk_cloudwatchlogs::Client>,
    args: &ReportArgs,
    out: &mut Output,
) -> Result<Exit, CliError> {
    let wanted = args
        .tags
        .iter()
        .map(|t| parse_tag(t))
        .collect::<Result<Vec<_>, _>>()?;
    match (args.secrets.is_empty(), wanted.is_empty()) {
        (true, true) => {
            return Err(CliError::usage(
                "name the secrets (names or ARNs), or select them with --tag KEY=VALUE",
            ))
        }
        (false, false) => {
            return Err(CliError::usage(
                "give secrets or --tag, not both (--tag reports every secret carrying the tags)",
            ))
        }
        _ => {}
    }
    if !(1..=100).contains(&args.page_size) {
        return Err(CliError::usage("--page-size is 1 to 100"));
    }
    if args.logs && args.logs_days == 0 {
        return Err(CliError::usage("--logs-days is at least 1"));
    }
    let logs = if args.logs {
        Some(logs.ok_or_else(|| CliError::usage("--logs needs a CloudWatch Logs client"))?)
    } else {
        None
    };

    let ids = if wanted.is_empty() {
        args.secrets.clone()
    } else {
        out.set_doc(
            "tags",
            &wanted.iter().cloned().collect::<BTreeMap<String, String>>(),
        );
        list_tagged(client, &wanted, args.page_size, out).await?
    };
    let mut described = describe_all(client, &ids, &wanted, out).await?;
    let mut arns = HashSet::new();
    described.retain(|d| arns.insert(d.arn.clone()));
    if !wanted.is_empty() {
        described.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if described.is_empty() {
        let tags: Vec<String> = wanted.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(CliError::usage(format!(
            "no secret carries the tags {}",
            tags.join(", ")
        )));
    }

    // --logs: one scan per function's log group, whatever the number of its secrets.
    let since_ms = now_ms() - i64::from(args.logs_days) * 86_400_000;
    let mut groups: BTreeMap<String, Result<Option<FactsBySecret>, CliError>> = BTreeMap::new();
    if let Some(logs) = logs {
        let functions: HashSet<&str> = described
            .iter()
            .filter_map(|d| d.function_arn.as_deref().map(function_name))
            .collect();
        for function in functions {
            let group = format!("/aws/lambda/{function}");
            let read = read_group(logs, &group, since_ms, out).await;
            groups.insert(group, read);
        }
    }
    let mut logs_error: Option<CliError> = None;

    let mut reports = Vec::with_capacity(described.len());
    for d in &described {
        let function = d.function_arn.as_deref().map(|f| function_name(f).to_owned());
        let stuck = stuck_version(&d.labels).map(|version| Stuck {
            version: version.to_owned(),
            since: d.stuck_since.as_ref().and_then(date),
        });
        let (logs_read, last) = match (logs.is_some(), &function) {
            (false, _) => (LogsRead::NotRequested, None),
            (true, None) => (LogsRead::NoFunction, None),
            (true, Some(function)) => {
                let group = format!("/aws/lambda/{function}");
                match groups.get(&group) {
                    Some(Ok(Some(facts))) => {
                        let mine: Vec<(i64, LogFact)> = [&d.arn, &d.name]
                            .into_iter()
                            .collect::<HashSet<_>>()
                            .into_iter()
                            .filter_map(|id| facts.get(id.as_str()))
                            .flatten()
                            .cloned()
                            .collect();
                        let last_rotated_ms = d.last_rotated.and_then(|t| t.to_millis().ok());
                        (
                            LogsRead::Read { group, since_ms },
                            last_failure(&mine, last_rotated_ms),
                        )
                    }
                    Some(Ok(None)) => (LogsRead::NoGroup { group }, None),
                    Some(Err(e)) => {
                        if logs_error.is_none() {
                            logs_error = Some(CliError {
                                exit: e.exit,
                                message: e.message.clone(),
                            });
                        }
                        (
                            LogsRead::Unreadable {
                                group,
                                error: e.message.clone(),
                            },
                            None,
                        )
                    }
                    None => (LogsRead::NotRequested, None),
                }
            }
        };
        let problems = diagnose(
            &d.arn,
            &d.labels,
            d.rotation_enabled,
            d.function_arn.as_deref(),
            &Logins::new(),
        )
        .into_iter()
        .map(|found| (found.problem, found.advice))
        .collect();
        reports.push(SecretReport {
            name: d.name.clone(),
            arn: d.arn.clone(),
            rotation_enabled: d.rotation_enabled,
            function,
            schedule: d.schedule.clone(),
            last_rotated: d.last_rotated.as_ref().and_then(date),
            next_rotation: d.next_rotation.as_ref().and_then(date),
            stuck,
            last_failure: last,
            logs: logs_read,
            problems,
        });
    }

    print_table(out, &reports, args);
    let count = |f: &dyn Fn(&SecretReport) -> bool| reports.iter().filter(|r| f(r)).count();
    let stuck = count(&|r| r.stuck.is_some());
    let failed = count(&|r| r.failed());
    let attention = count(&|r| r.needs_attention());
    out.set_doc(
        "secrets",
        &reports.iter().map(SecretReport::doc).collect::<Vec<_>>(),
    );
    out.set_doc(
        "summary",
        &SummaryDoc {
            secrets: reports.len(),
            stuck,
            failed,
            attention,
            logs_read: args.logs,
        },
    );
    out.say(if attention == 0 {
        format!("{} secrets, none needs attention", reports.len())
    } else {
        format!(
            "{} secrets, {attention} need attention: stuck {stuck}, last rotation failed {failed}, other problem {}",
            reports.len(),
            attention - count(&|r| r.stuck.is_some() || r.failed())
        )
    });
    if attention > 0 {
        Ok(Exit::Attention)
    } else if let Some(error) = logs_error {
        Err(error)
    } else {
        Ok(Exit::Ok)
    }
}

/// The table, then a note per secret that needs attention.
fn print_table(out: &Output, reports: &[SecretReport], args: &ReportArgs) {
    if out.is_json() {
        return;
    }
    let dash = || "-".to_owned();
    let mut rows: Vec<[String; 7]> = vec![[
        "NAME".into(),
        "ROTATION".into(),
        "FUNCTION".into(),
        "LAST ROTATED".into(),
        "NEXT ROTATION".into(),
        "STATE".into(),
        "LAST FAILURE".into(),
    ]];
    for r in reports {
        let state = match (&r.stuck, r.state()) {
            (Some(stuck), _) => format!("STUCK since {}", stuck.since.as_deref().unwrap_or("(unknown)")),
            (None, "failed") => "FAILED".to_owned(),
            (None, "attention") => "ATTENTION".to_owned(),
            (None, _) => "ok".to_owned(),
        };
        let failure = match (&r.logs, &r.last_failure) {
            (_, Some(f)) => format!(
                "{} {}{}",
                date_ms(f.at_ms).unwrap_or_default(),
                f.step,
                if f.resolved { " (resolved)" } else { "" }
            ),
            (LogsRead::Read { .. }, None) => format!("none in {} d", args.logs_days),
            (LogsRead::NoGroup { .. }, None) => "no log group".to_owned(),
            (LogsRead::Unreadable { .. }, None) => "logs unreadable".to_owned(),
            (LogsRead::NotRequested | LogsRead::NoFunction, None) => dash(),
        };
        rows.push([
            r.name.clone(),
            r.rotation().replace("never-configured", "never"),
            r.function.clone().unwrap_or_else(dash),
            r.last_rotated.clone().unwrap_or_else(dash),
            r.next_rotation.clone().unwrap_or_else(dash),
            state,
            failure,
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.say(line.join("  ").trim_end());
    }
    let mut notes = Vec::new();
    for r in reports {
        if let Some(stuck) = &r.stuck {
            notes.push(format!(
                "{}: version {} is AWSPENDING but not AWSCURRENT since {}: a rotation started and did not finish \
                 (or is running now); Secrets Manager refuses new rotations until it is finished or cleared. \
                 `rotor status {}` says which is safe",
                r.name,
                stuck.version,
                stuck.since.as_deref().unwrap_or("an unknown date"),
                r.name
            ));
        }
        if let Some(f) = r.last_failure.as_ref().filter(|f| !f.resolved) {
            notes.push(format!(
                "{}: last rotation failed at {}: {} {}: {} (token {})",
                r.name,
                date_ms(f.at_ms).unwrap_or_default(),
                f.step,
                f.error_type,
                f.error,
                f.token
            ));
        }
        if let LogsRead::Unreadable { group, error } = &r.logs {
            notes.push(format!("{}: could not read {group}: {error}", r.name));
        }
        for (problem, _) in &r.problems {
            if !problem.starts_with("rotation stuck") {
                notes.push(format!("{}: {problem}", r.name));
            }
        }
    }
    if !notes.is_empty() {
        out.say("");
        for note in notes {
            out.say(note);
        }
    }
    if !args.logs {
        out.say("(last failure not read: --logs reads it from each rotation function's log group)");
    }
}
