//! The harness the end-to-end suites share: the local stack's endpoints, a driver that plays
//! Secrets Manager (start a rotation, invoke the four steps, clear `AWSPENDING`), a store
//! wrapper that records every call, a log capture, and an in-memory engine for tests of the
//! protocol itself.
//!
//! Every suite runs against the real servers that `scripts/stack up` starts; a suite that cannot
//! reach them fails with a message saying so, never silently passes.

pub mod cli;
pub mod emf;
pub mod fixtures;
pub mod lambda;
pub mod mariadb_server;
pub mod memory_engine;
pub mod net;
pub mod postgres_server;
pub mod ssh_hosts;
pub mod tls_matrix;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::RotationRulesType;
use aws_sdk_secretsmanager::Client;
use secret_rotor::driver::{Driver, InProcess, RotationService};
use secret_rotor::testing::conformance::KitStore;
use secret_rotor::testing::Operation;
use secret_rotor::{
    BoxFuture, Deadline, Engine, Error, Outcome, PasswordPolicy, Passwords, RotationEvent, Rotor,
    SecretDescription, SecretString, SecretsManager, SecretsStore, Step, Version, AWSCURRENT, AWSPREVIOUS,
};

/// The local stack's settings, from the environment or else `.local/stack.env`.
pub fn stack_setting(name: &str) -> Option<String> {
    if let Ok(value) = std::env::var(name) {
        return Some(value);
    }
    let file = std::fs::read_to_string(stack_env_file()).ok()?;
    file.lines().find_map(|line| {
        let (key, value) = line.strip_prefix("export ")?.split_once('=')?;
        (key == name).then(|| value.trim_matches('\'').to_owned())
    })
}

fn stack_env_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local/stack.env")
}

/// A Secrets Manager client on the local stack's moto server. Built from explicit settings, so
/// tests never mutate the process environment.
pub async fn secrets_manager_client() -> Client {
    let endpoint = stack_setting("AWS_ENDPOINT_URL")
        .expect("no Secrets Manager endpoint: run `scripts/stack up` first (it writes .local/stack.env)");
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "stack",
        ))
        .build();
    let client = Client::from_conf(config);
    if let Err(e) = client.list_secrets().max_results(1).send().await {
        panic!(
            "moto server unreachable: {}; run `scripts/stack up`",
            aws_sdk_secretsmanager::error::DisplayErrorContext(e)
        );
    }
    client
}

/// The RDS API of the local stack's moto server (the RDS topology `scripts/stack` creates), as
/// the database functions ask it.
pub fn rds_api() -> std::sync::Arc<rotor_rds::Rds> {
    let endpoint = stack_setting("AWS_ENDPOINT_URL")
        .expect("no RDS endpoint: run `scripts/stack up` first (it writes .local/stack.env)");
    rds_api_at(&endpoint)
}

/// The RDS API at `endpoint` (the stack's, or a faulty port in front of it).
pub fn rds_api_at(endpoint: &str) -> std::sync::Arc<rotor_rds::Rds> {
    let config = aws_sdk_rds::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_rds::config::Credentials::new(
            "testing", "testing", None, None, "stack",
        ))
        .build();
    std::sync::Arc::new(rotor_rds::Rds::new(aws_sdk_rds::Client::from_conf(config)))
}

/// A random number below `n`, for random delays.
pub fn random_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("random");
    u64::from_le_bytes(bytes) % n
}

/// A random hex string, for unique names and version tokens.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("OS random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh version token in UUID form, as Secrets Manager makes them.
pub use secret_rotor::testing::new_token;

/// Creates a secret with a unique name; returns its ARN.
pub async fn create_secret(client: &Client, prefix: &str, value: &str) -> String {
    let out = client
        .create_secret()
        .name(format!("{prefix}-{}", random_hex(6)))
        .secret_string(value)
        .send()
        .await
        .expect("CreateSecret");
    out.arn.expect("CreateSecret returns an ARN")
}

/// Does what Secrets Manager does before invoking the function: `RotateSecret`, which enables
/// rotation and labels an empty version `token` with `AWSPENDING`. moto cannot invoke a
/// function and answers ResourceNotFoundException after doing so; AWS would answer success.
pub async fn start_rotation(client: &Client, secret_arn: &str, token: &str) {
    start_rotation_with(client, secret_arn, token, true).await;
}

/// [`start_rotation`] with `RotateImmediately` given: `false` makes a pending version holding a
/// copy of the current value, against which only testSecret runs.
pub async fn start_rotation_with(client: &Client, secret_arn: &str, token: &str, immediately: bool) {
    let result = client
        .rotate_secret()
        .secret_id(secret_arn)
        .client_request_token(token)
        .rotation_lambda_arn("arn:aws:lambda:us-east-1:123456789012:function:secret-rotor-under-test")
        .rotation_rules(RotationRulesType::builder().automatically_after_days(30).build())
        .rotate_immediately(immediately)
        .send()
        .await;
    if let Err(e) = result {
        assert_eq!(
            e.code(),
            Some("ResourceNotFoundException"),
            "RotateSecret: {}",
            aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
        );
    }
    let stages = labels(client, secret_arn).await;
    assert!(
        stages
            .get(token)
            .is_some_and(|s| s.iter().any(|l| l == "AWSPENDING")),
        "RotateSecret did not label {token} AWSPENDING: {stages:?}"
    );
}

/// What Secrets Manager does after a successful finishSecret: removes `AWSPENDING`.
pub async fn end_rotation(client: &Client, secret_arn: &str, token: &str) {
    client
        .update_secret_version_stage()
        .secret_id(secret_arn)
        .version_stage("AWSPENDING")
        .remove_from_version_id(token)
        .send()
        .await
        .expect("UpdateSecretVersionStage removing AWSPENDING");
}

/// Points the secret's rotation at `function_arn` (RotateSecret, as the service records it), and
/// leaves no rotation in progress.
pub async fn set_rotation_function(client: &Client, arn: &str, function_arn: &str) {
    let token = new_token();
    let _ = client
        .rotate_secret()
        .secret_id(arn)
        .client_request_token(&token)
        .rotation_lambda_arn(function_arn)
        .rotation_rules(RotationRulesType::builder().automatically_after_days(30).build())
        .send()
        .await;
    end_rotation(client, arn, &token).await;
}

/// Each version id and its labels (versions without labels omitted), sorted for stable output.
pub async fn labels(client: &Client, secret_arn: &str) -> BTreeMap<String, Vec<String>> {
    let out = client
        .describe_secret()
        .secret_id(secret_arn)
        .send()
        .await
        .expect("DescribeSecret");
    out.version_ids_to_stages
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, stages)| !stages.is_empty())
        .map(|(id, mut stages)| {
            stages.sort();
            (id, stages)
        })
        .collect()
}

/// The version id carrying `stage`.
pub async fn version_with(client: &Client, secret_arn: &str, stage: &str) -> Option<String> {
    labels(client, secret_arn)
        .await
        .into_iter()
        .find(|(_, stages)| stages.iter().any(|s| s == stage))
        .map(|(id, _)| id)
}

/// The value of a version (by label), parsed as JSON.
pub async fn value_at(client: &Client, secret_arn: &str, stage: &str) -> serde_json::Value {
    let out = client
        .get_secret_value()
        .secret_id(secret_arn)
        .version_stage(stage)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GetSecretValue {stage}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            )
        });
    serde_json::from_str(out.secret_string().expect("a string secret")).expect("a JSON secret")
}

/// A rotation event.
pub fn event(step: Step, secret_arn: &str, token: &str) -> RotationEvent {
    RotationEvent {
        step,
        secret_id: secret_arn.to_owned(),
        client_request_token: token.to_owned(),
        rotation_token: None,
    }
}

/// A generous time for one in-process invocation.
pub const STEP_TIME: Duration = Duration::from_secs(30);

/// A generous deadline for in-process invocations.
pub fn deadline() -> Deadline {
    Deadline::after(STEP_TIME)
}

/// The Secrets Manager operations a [`Recording`] store saw, with the secret each was about.
pub type CallLog = Arc<Mutex<Vec<(&'static str, String)>>>;

/// The labels as they were before a move: the old AWSCURRENT's id, the old AWSPREVIOUS's id.
type LabelsBefore = (String, Option<String>);

/// A [`SecretsStore`] that forwards to the real one and records each operation, optionally
/// presenting `DescribeSecret`'s `RotationEnabled` as absent (some emulators and old secrets).
#[derive(Clone)]
pub struct Recording {
    inner: SecretsManager,
    client: Client,
    calls: CallLog,
    failures: Arc<Mutex<Vec<(Operation, Error)>>>,
    hide_rotation_enabled: bool,
    fixed_password: Option<String>,
    stale_labels: Option<Arc<Mutex<Option<LabelsBefore>>>>,
}

impl Recording {
    /// Records calls on `client`.
    pub fn new(client: Client) -> Self {
        Self {
            inner: SecretsManager::new(client.clone()),
            client,
            calls: CallLog::default(),
            failures: Arc::default(),
            hide_rotation_enabled: false,
            fixed_password: None,
            stale_labels: None,
        }
    }

    /// After `UpdateSecretVersionStage`, answers reads by label as before the move, as Secrets
    /// Manager may (it does not promise read-after-write consistency for labels).
    pub fn with_stale_labels_after_a_move(mut self) -> Self {
        self.stale_labels = Some(Arc::default());
        self
    }

    /// Answers `DescribeSecret` without `RotationEnabled`.
    pub fn hiding_rotation_enabled(mut self) -> Self {
        self.hide_rotation_enabled = true;
        self
    }

    /// Answers `GetRandomPassword` with `password` (to test passwords of every character).
    pub fn with_fixed_password(mut self, password: &str) -> Self {
        self.fixed_password = Some(password.to_owned());
        self
    }

    /// The shared call log.
    pub fn calls(&self) -> CallLog {
        self.calls.clone()
    }

    fn record(&self, operation: &'static str, secret_id: &str) {
        self.calls
            .lock()
            .expect("call log")
            .push((operation, secret_id.to_owned()));
    }

    /// The failure injected for the next call of `operation`, if any (taken).
    fn injected(&self, operation: Operation) -> Option<Error> {
        let mut failures = self.failures.lock().expect("failures");
        let at = failures.iter().position(|(op, _)| *op == operation)?;
        Some(failures.remove(at).1)
    }
}

/// The name under which a [`Recording`] logs `operation`.
fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Describe => "DescribeSecret",
        Operation::GetValue => "GetSecretValue",
        Operation::PutPending => "PutSecretValue",
        Operation::MoveCurrent => "UpdateSecretVersionStage",
        Operation::RandomPassword => "GetRandomPassword",
    }
}

impl RotationService for Recording {
    fn begin<'a>(&'a self, secret_id: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            start_rotation(&self.client, secret_id, token).await;
            Ok(())
        })
    }

    fn end<'a>(&'a self, secret_id: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            end_rotation(&self.client, secret_id, token).await;
            Ok(())
        })
    }
}

/// The framework's conformance kit on the stack's real Secrets Manager API: each case on a new
/// recording store (its own call log and failures), secrets created and read through the API.
impl KitStore for Recording {
    fn for_case(&self) -> Self {
        Recording::new(self.client.clone())
    }

    fn create<'a>(&'a self, name: &'a str, value: &'a SecretString) -> BoxFuture<'a, String> {
        Box::pin(async move { create_secret(&self.client, name, value.expose()).await })
    }

    fn labels<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, BTreeMap<String, Vec<String>>> {
        Box::pin(async move { labels(&self.client, secret_id).await })
    }

    fn value<'a>(&'a self, secret_id: &'a str, id: &'a str) -> BoxFuture<'a, Option<SecretString>> {
        Box::pin(async move {
            let out = self
                .client
                .get_secret_value()
                .secret_id(secret_id)
                .version_id(id)
                .send()
                .await
                .ok()?;
            out.secret_string().map(SecretString::from)
        })
    }

    fn count(&self, operation: Operation) -> usize {
        count(&self.calls, operation_name(operation))
    }

    fn fail_next(&self, operation: Operation, error: Error) {
        self.failures.lock().expect("failures").push((operation, error));
    }
}

/// The calls of a log from entry `from` on, by operation (`DescribeSecret` 4, …).
pub fn operations_since(calls: &CallLog, from: usize) -> BTreeMap<&'static str, usize> {
    operations_on_since(calls, None, from)
}

/// The calls about `secret_id` (every secret: `None`) from entry `from` on, by operation.
pub fn operations_on_since(
    calls: &CallLog,
    secret_id: Option<&str>,
    from: usize,
) -> BTreeMap<&'static str, usize> {
    let mut operations = BTreeMap::new();
    for (operation, id) in calls.lock().expect("call log").iter().skip(from) {
        if secret_id.is_none_or(|wanted| wanted == id) {
            *operations.entry(*operation).or_insert(0) += 1;
        }
    }
    operations
}

/// The contract's minimum of calls for a rotation whose steps share a process: a
/// `DescribeSecret` per step, createSecret's read of `AWSCURRENT`, its pending probe and
/// `PutSecretValue`, finishSecret's `UpdateSecretVersionStage`; plus `GetRandomPassword` when
/// `generated`, and `master_reads` reads of another secret.
pub fn minimum_calls(generated: bool, master_reads: usize) -> BTreeMap<&'static str, usize> {
    let mut calls: BTreeMap<&'static str, usize> = [
        ("DescribeSecret", 4),
        ("GetSecretValue", 2 + master_reads),
        ("PutSecretValue", 1),
        ("UpdateSecretVersionStage", 1),
    ]
    .into();
    if generated {
        calls.insert("GetRandomPassword", 1);
    }
    calls
}

/// How many calls a log holds.
pub fn calls_so_far(calls: &CallLog) -> usize {
    calls.lock().expect("call log").len()
}

/// Counts the operations in a call log.
pub fn count(calls: &CallLog, operation: &str) -> usize {
    calls
        .lock()
        .expect("call log")
        .iter()
        .filter(|(op, _)| *op == operation)
        .count()
}

/// Counts the calls of any operation about `secret_id`.
pub fn calls_about(calls: &CallLog, secret_id: &str) -> usize {
    calls
        .lock()
        .expect("call log")
        .iter()
        .filter(|(_, id)| id == secret_id)
        .count()
}

/// Counts the writes (`PutSecretValue`, `UpdateSecretVersionStage`) in a call log.
pub fn writes(calls: &CallLog) -> usize {
    count(calls, "PutSecretValue") + count(calls, "UpdateSecretVersionStage")
}

impl SecretsStore for Recording {
    fn describe<'a>(&'a self, secret_id: &'a str) -> BoxFuture<'a, Result<SecretDescription, Error>> {
        self.record("DescribeSecret", secret_id);
        let injected = self.injected(Operation::Describe);
        Box::pin(async move {
            if let Some(error) = injected {
                return Err(error);
            }
            let mut description = self.inner.describe(secret_id).await?;
            if self.hide_rotation_enabled {
                description.rotation_enabled = None;
            }
            Ok(description)
        })
    }

    fn get_value<'a>(
        &'a self,
        secret_id: &'a str,
        version: Version<'a>,
    ) -> BoxFuture<'a, Result<Option<SecretString>, Error>> {
        self.record("GetSecretValue", secret_id);
        if let Some(error) = self.injected(Operation::GetValue) {
            return Box::pin(async move { Err(error) });
        }
        let before_move = self
            .stale_labels
            .as_ref()
            .and_then(|stale| stale.lock().expect("stale labels").clone());
        match (before_move, version) {
            (Some((current, _)), Version::Stage(AWSCURRENT)) => {
                Box::pin(async move { self.inner.get_value(secret_id, Version::Id(&current)).await })
            }
            (Some((_, previous)), Version::Stage(AWSPREVIOUS)) => Box::pin(async move {
                match previous {
                    Some(previous) => self.inner.get_value(secret_id, Version::Id(&previous)).await,
                    None => Ok(None),
                }
            }),
            (_, version) => self.inner.get_value(secret_id, version),
        }
    }

    fn put_pending<'a>(
        &'a self,
        secret_id: &'a str,
        token: &'a str,
        value: &'a SecretString,
        rotation_token: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.record("PutSecretValue", secret_id);
        if let Some(error) = self.injected(Operation::PutPending) {
            return Box::pin(async move { Err(error) });
        }
        self.inner.put_pending(secret_id, token, value, rotation_token)
    }

    fn move_current<'a>(
        &'a self,
        secret_id: &'a str,
        to: &'a str,
        from: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.record("UpdateSecretVersionStage", secret_id);
        if let Some(error) = self.injected(Operation::MoveCurrent) {
            return Box::pin(async move { Err(error) });
        }
        let Some(stale) = self.stale_labels.clone() else {
            return self.inner.move_current(secret_id, to, from);
        };
        Box::pin(async move {
            let before = self.inner.describe(secret_id).await?;
            if let Some(current) = before.version_with(AWSCURRENT) {
                let previous = before.version_with(AWSPREVIOUS).map(str::to_owned);
                *stale.lock().expect("stale labels") = Some((current.to_owned(), previous));
            }
            self.inner.move_current(secret_id, to, from).await
        })
    }

    fn random_password<'a>(
        &'a self,
        policy: &'a PasswordPolicy,
    ) -> BoxFuture<'a, Result<SecretString, Error>> {
        self.record("GetRandomPassword", "");
        if let Some(error) = self.injected(Operation::RandomPassword) {
            return Box::pin(async move { Err(error) });
        }
        match &self.fixed_password {
            Some(password) => {
                let password = SecretString::from(password.as_str());
                Box::pin(async move { Ok(password) })
            }
            None => self.inner.random_password(policy),
        }
    }
}

/// A rotor on a recording store with the default password policy for `engine`, passwords from
/// `GetRandomPassword` (the default source).
pub fn rotor<E: Engine>(engine: E, store: Recording) -> Rotor<E> {
    let passwords = Passwords::from_lookup(|_| None, engine.default_excluded_characters());
    Rotor::with_passwords(Ok(engine), store, passwords)
}

/// Starts a rotation of `secret_arn` (as the service does) and runs createSecret through
/// `rotor`; the rotation's token.
pub async fn begin_rotation<E: Engine>(rotor: &Rotor<E>, client: &Client, secret_arn: &str) -> String {
    let token = new_token();
    start_rotation(client, secret_arn, &token).await;
    rotor
        .handle(&event(Step::CreateSecret, secret_arn, &token), deadline())
        .await
        .expect("createSecret");
    token
}

/// The stack's Secrets Manager API as the service side of the framework's [`Driver`]: begins a
/// rotation with [`start_rotation`], ends it with [`end_rotation`].
pub struct StackService<'a>(pub &'a Client);

impl RotationService for StackService<'_> {
    fn begin<'a>(&'a self, secret_id: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            start_rotation(self.0, secret_id, token).await;
            Ok(())
        })
    }

    fn end<'a>(&'a self, secret_id: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            end_rotation(self.0, secret_id, token).await;
            Ok(())
        })
    }
}

fn outcomes(steps: Vec<(Step, Option<Outcome>)>) -> HashMap<Step, Outcome> {
    steps
        .into_iter()
        .filter_map(|(step, outcome)| Some((step, outcome?)))
        .collect()
}

/// Plays one whole rotation the way Secrets Manager does (the framework's [`Driver`] on the
/// stack's API, in process): start it, run the four steps, clear `AWSPENDING`. Returns the
/// first failing step's error.
pub async fn rotate_fully<E: Engine>(
    rotor: &Rotor<E>,
    client: &Client,
    secret_arn: &str,
    token: &str,
) -> Result<HashMap<Step, Outcome>, (Step, Error)> {
    let invoker = InProcess::new(rotor, STEP_TIME);
    Driver::new(&StackService(client), &invoker)
        .with_rotation_token(false)
        .rotate_with(secret_arn, token)
        .await
        .map(outcomes)
}

/// Invokes the four steps in order, stopping at the first failure.
pub async fn run_steps<E: Engine>(
    rotor: &Rotor<E>,
    secret_arn: &str,
    token: &str,
) -> Result<HashMap<Step, Outcome>, (Step, Error)> {
    let invoker = InProcess::new(rotor, STEP_TIME);
    Driver::steps_only(&invoker)
        .with_rotation_token(false)
        .steps(secret_arn, token, &Step::ALL, |_| ())
        .await
        .map(outcomes)
}

/// Log lines captured from the framework's JSON subscriber.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }

    /// The framework's JSON subscriber at `directives` for this thread (a current-thread test
    /// runtime), until the guard is dropped.
    pub fn set_default(&self, directives: &str) -> tracing::subscriber::DefaultGuard {
        let filter = tracing_subscriber::EnvFilter::new(directives);
        tracing::subscriber::set_default(secret_rotor::logging::subscriber(filter, None, self.clone()))
    }

    /// Installs the framework's JSON subscriber at `directives` for the whole process (a test
    /// binary with a single test).
    pub fn install_globally(&self, directives: &str) {
        let filter = tracing_subscriber::EnvFilter::new(directives);
        tracing::subscriber::set_global_default(secret_rotor::logging::subscriber(
            filter,
            None,
            self.clone(),
        ))
        .expect("no other global subscriber");
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
