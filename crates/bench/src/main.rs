//! The benchmark: release function binaries run as Lambda runs them, each behind its own
//! zero-latency Runtime API, against the local stack. Prints cold start, warm step and rotation
//! latency, peak memory, Secrets Manager calls, database connections and refused logins per
//! rotation, the round-trip floors and each figure as a multiple of its floor, and a scale run.
//! With `--reference DIR --python PY`, AWS's Python functions (the user's `lambda_function.py`
//! files, under `awslambdaric`) run the same way against the same servers, side by side.
//!
//! `scripts/bench` builds everything and runs it; `rotor-bench --runs N --scale N --processes P
//! --ssh-fleet HOSTS [--reference DIR --python PY]` (`--ssh-fleet 0` skips the fleet run).

mod http;
mod proxy;
mod runtime;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rotor_tests::fixtures;
use rotor_tests::lambda::workspace_root;
use rotor_tests::mariadb_server::MariaDb;
use rotor_tests::postgres_server::{ident, PgServer};
use rotor_tests::ssh_hosts::SshHost;
use rotor_tests::*;
use secret_rotor::driver::{Driver, Progress, StepInvoker};
use secret_rotor::{BoxFuture, Outcome, RotationEvent, Step};
use serde_json::{json, Value};

use crate::runtime::RuntimeApi;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A benchmarked function: its name, binary and environment.
type BenchedFunction<'a> = (&'a str, &'a str, Vec<(&'a str, String)>);

/// Extra environment variables of a function.
type Env<'a> = Vec<(&'a str, String)>;

/// How a function process is started.
#[derive(Clone, Copy)]
enum Program<'a> {
    /// A bootstrap of ours (or the echo function).
    Bootstrap(&'a Path),
    /// A reference function: `lambda_function.py` in `dir`, under awslambdaric.
    Python { python: &'a Path, dir: &'a Path },
}

/// A function process behind its own Runtime API.
struct Function {
    api: RuntimeApi,
    child: Child,
    spawned: Instant,
}

impl Function {
    async fn spawn(binary: &Path, env: &[(&str, String)], endpoint: &str) -> Result<Function> {
        Self::start(Program::Bootstrap(binary), env, endpoint).await
    }

    async fn start(program: Program<'_>, env: &[(&str, String)], endpoint: &str) -> Result<Function> {
        let api = RuntimeApi::start().await?;
        let mut command = match program {
            Program::Bootstrap(binary) => {
                let mut command = Command::new(binary);
                command.env_clear().env("AWS_LAMBDA_RUNTIME_API", &api.base_url);
                command
            }
            Program::Python { python, dir } => {
                let mut command = Command::new(python);
                command
                    .args(["-m", "awslambdaric", "lambda_function.lambda_handler"])
                    .current_dir(dir)
                    .env_clear()
                    // awslambdaric wants host:port; boto3 reads the region, and the reference
                    // its endpoint, from these names.
                    .env(
                        "AWS_LAMBDA_RUNTIME_API",
                        api.base_url.trim_start_matches("http://"),
                    )
                    .env("AWS_DEFAULT_REGION", "us-east-1")
                    .env("SECRETS_MANAGER_ENDPOINT", endpoint)
                    .env("AWS_EC2_METADATA_DISABLED", "true");
                command
            }
        };
        command
            .envs([
                ("AWS_LAMBDA_FUNCTION_NAME", "bench".to_owned()),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
                ("AWS_ENDPOINT_URL", endpoint.to_owned()),
                ("AWS_LAMBDA_LOG_LEVEL", "WARN".to_owned()),
                ("PASSWORD_SOURCE", "local".to_owned()),
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.clone())))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // For looking inside (the cold start's parts): ROTOR_BENCH_LOGS=FILE appends every
        // function's output to FILE, at ROTOR_BENCH_LOG_LEVEL (DEBUG by default).
        if let Some(path) = std::env::var_os("ROTOR_BENCH_LOGS") {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            let level = std::env::var("ROTOR_BENCH_LOG_LEVEL").unwrap_or_else(|_| "DEBUG".to_owned());
            command
                .env("AWS_LAMBDA_LOG_LEVEL", level)
                .stdout(file.try_clone()?)
                .stderr(file);
        }
        let spawned = Instant::now();
        let child = command.spawn()?;
        Ok(Function { api, child, spawned })
    }

    /// Invokes `steps` for `token` through the framework's driver (events as the service sends
    /// them, without a RotationToken); each step's time, in order.
    async fn steps(&self, steps: &[Step], arn: &str, token: &str) -> Result<Vec<Duration>> {
        let mut times = Vec::with_capacity(steps.len());
        Driver::steps_only(self)
            .with_rotation_token(false)
            .steps(arn, token, steps, |progress| {
                if let Progress::Finished(_, _, elapsed) = progress {
                    times.push(elapsed);
                }
            })
            .await
            .map_err(|(step, e)| format!("{step}: {e}"))?;
        Ok(times)
    }

    /// The process's open file descriptors now.
    fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    /// Peak resident memory (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl StepInvoker for Function {
    type Error = String;

    fn invoke<'a>(
        &'a self,
        event: &'a RotationEvent,
    ) -> BoxFuture<'a, std::result::Result<Option<Outcome>, String>> {
        Box::pin(async move {
            self.api
                .invoke(&event.to_json(), TIMEOUT)
                .await
                .map(|_| None)
                .map_err(|e| e.to_string())
        })
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One whole rotation through `function`, as the service drives it; per-step durations.
async fn rotation(
    function: &Function,
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<[Duration; 4]> {
    let token = new_token();
    start_rotation(client, arn, &token).await;
    let mut times = [Duration::ZERO; 4];
    for (slot, time) in times
        .iter_mut()
        .zip(function.steps(&Step::ALL, arn, &token).await?)
    {
        *slot = time;
    }
    end_rotation(client, arn, &token).await;
    Ok(times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median, min, max of values.
fn stats(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A subject of the benchmark: a fresh secret on its target, and how to count the target's
/// accepted and refused logins (from the server's own log) so far.
struct Subject {
    arn: String,
    connections: Box<dyn Fn() -> usize>,
    refused: Box<dyn Fn() -> usize>,
}

/// The user, its alternate and the master of a database fixture: the logins a rotation makes.
fn logins_of(fixture: &fixtures::Fixture) -> Vec<String> {
    let mut users = vec![fixture.user.clone(), format!("{}_clone", fixture.user)];
    users.extend(fixture.master.clone());
    users
}

/// Counts the occurrences of any of `patterns` in a server's log (as `log` reads it).
fn log_counter(log: impl Fn() -> String + 'static, patterns: Vec<String>) -> Box<dyn Fn() -> usize> {
    Box::new(move || {
        let log = log();
        patterns.iter().map(|p| log.matches(p.as_str()).count()).sum()
    })
}

async fn postgres_subject() -> Subject {
    let server = PgServer::named("pg17");
    let fixture = fixtures::postgres(&server, "localhost", json!({"ssl": true})).await;
    let users = logins_of(&fixture);
    postgres_counted(fixture.arn, server, &users)
}

/// A PostgreSQL subject: the connections and refused logins of `users` in `server`'s log.
fn postgres_counted(arn: String, server: PgServer, users: &[String]) -> Subject {
    let log = server.clone();
    let connections = log_counter(
        move || log.log(),
        users
            .iter()
            .map(|u| format!("connection authorized: user={u} "))
            .collect(),
    );
    let refused = log_counter(
        move || server.log(),
        users
            .iter()
            .map(|u| format!("password authentication failed for user \"{u}\""))
            .collect(),
    );
    Subject {
        arn,
        connections,
        refused,
    }
}

/// `engine`: `mariadb` for ours, `mysql` for the reference (which knows no other name; its
/// master secret then says `mysql` too).
async fn mysql_subject(engine: &str) -> Subject {
    let db = MariaDb::new();
    let fixture = fixtures::mariadb(&db, "localhost", json!({"ssl": true, "engine": engine})).await;
    if let (Some(master_arn), "mysql") = (&fixture.master_arn, engine) {
        let client = secrets_manager_client().await;
        let mut master = value_at(&client, master_arn, "AWSCURRENT").await;
        master["engine"] = json!("mysql");
        client
            .put_secret_value()
            .secret_id(master_arn)
            .secret_string(master.to_string())
            .send()
            .await
            .expect("master secret as the reference reads it");
    }
    // MariaDB's general log: a `Connect` line per accepted login, an "Access denied" one per
    // refused login.
    let users = logins_of(&fixture);
    let log = db.clone();
    let connections = log_counter(
        move || log.log(),
        users.iter().map(|u| format!("Connect\t{u}@")).collect(),
    );
    let refused = log_counter(
        move || db.log(),
        users
            .iter()
            .map(|u| format!("Access denied for user '{u}'@"))
            .collect(),
    );
    Subject {
        arn: fixture.arn,
        connections,
        refused,
    }
}

/// An alternating-users secret on the stack's RDS instance (`scripts/stack`'s RDS topology in
/// moto) whose master is its RDS-managed `rds!db-…` secret: the rotation asks RDS for the writer.
async fn postgres_rds_subject() -> Subject {
    let server = PgServer::named("pg15");
    let setting =
        |name: &str| stack_setting(name).unwrap_or_else(|| panic!("no {name}: run `scripts/stack up`"));
    let user = format!("bench_{}", random_hex(4));
    server
        .run(&format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{}'",
            fixtures::INITIAL_PASSWORD
        ))
        .await;
    let value = json!({"engine": "postgres", "host": setting("ROTOR_RDS_PG15_HOST"), "port": server.port,
                       "username": user, "password": fixtures::INITIAL_PASSWORD,
                       "masterarn": setting("ROTOR_RDS_PG15_MASTER_ARN")});
    let client = secrets_manager_client().await;
    let arn = create_secret(&client, "bench-rds", &value.to_string()).await;
    let users = [user.clone(), format!("{user}_clone"), "admin".to_owned()];
    postgres_counted(arn, server, &users)
}

async fn ssh_subject() -> Subject {
    Subject {
        arn: fixtures::ssh(&SshHost::both()).await.arn,
        connections: Box::new(|| 0),
        refused: Box::new(|| 0),
    }
}

#[derive(Default)]
struct Figures {
    cold: Vec<f64>,
    /// setSecret in the cold process (the first that may build a client at first use).
    cold_set: Vec<f64>,
    steps: [Vec<f64>; 4],
    rotation: Vec<f64>,
    rss: Vec<f64>,
    calls: BTreeMap<String, u64>,
    connections: usize,
    refused: usize,
}

async fn measure(
    name: &str,
    program: Program<'_>,
    env: &[(&str, String)],
    runs: usize,
    endpoint: &str,
    counts: &proxy::Counts,
    setup: impl AsyncFn() -> Subject,
) -> Result<Figures> {
    let client = secrets_manager_client().await;
    let mut figures = Figures::default();
    for _ in 0..runs {
        let subject = setup().await;
        // Cold: spawn -> createSecret answered, the event waiting as Lambda has it when it
        // starts a process for an invocation (the rotation begun before the spawn).
        let token = new_token();
        start_rotation(&client, &subject.arn, &token).await;
        let function = Function::start(program, env, endpoint).await?;
        function
            .steps(&[Step::CreateSecret], &subject.arn, &token)
            .await?;
        figures.cold.push(ms(function.spawned.elapsed()));
        let rest = function
            .steps(
                &[Step::SetSecret, Step::TestSecret, Step::FinishSecret],
                &subject.arn,
                &token,
            )
            .await?;
        figures.cold_set.push(rest.first().map_or(0.0, |t| ms(*t)));
        end_rotation(&client, &subject.arn, &token).await;
        // Warm rotations.
        for _ in 0..3 {
            let before_calls = counts.snapshot();
            let before_connections = (subject.connections)();
            let before_refused = (subject.refused)();
            let times = rotation(&function, &client, &subject.arn).await?;
            for (i, t) in times.iter().enumerate() {
                figures.steps[i].push(ms(*t));
            }
            figures.rotation.push(times.iter().map(|t| ms(*t)).sum());
            let after = counts.snapshot();
            figures.calls = after
                .iter()
                .map(|(op, n)| (op.clone(), n - before_calls.get(op).copied().unwrap_or(0)))
                .collect();
            figures.calls.retain(|_, n| *n > 0);
            figures.connections = (subject.connections)() - before_connections;
            figures.refused = (subject.refused)() - before_refused;
        }
        figures.rss.push(function.peak_rss_kib() as f64 / 1024.0);
    }
    println!("measured {name}");
    Ok(figures)
}

/// One function's figures, reduced: medians (with min and max), the floor and the multiple.
struct Summary {
    cold: (f64, f64, f64),
    steps: [f64; 4],
    rotation: (f64, f64, f64),
    rss: f64,
    calls: u64,
    call_list: String,
    floor: f64,
    multiple: f64,
}

impl Summary {
    fn of(figures: &mut Figures, sm_floor: f64, db_floor: f64) -> Summary {
        let cold = stats(&mut figures.cold);
        let steps = [0, 1, 2, 3].map(|i| stats(&mut figures.steps[i]).0);
        let rotation = stats(&mut figures.rotation);
        let (_, _, rss) = stats(&mut figures.rss);
        let calls: u64 = figures.calls.values().sum();
        let call_list: Vec<String> = figures.calls.iter().map(|(op, n)| format!("{op} {n}")).collect();
        let floor = calls as f64 * sm_floor + figures.connections as f64 * db_floor;
        let multiple = if floor > 0.0 { rotation.0 / floor } else { 0.0 };
        Summary {
            cold,
            steps,
            rotation,
            rss,
            calls,
            call_list: call_list.join(", "),
            floor,
            multiple,
        }
    }
}

/// Measures one of ours (`reference`: false) or one reference function.
#[allow(clippy::too_many_arguments)]
async fn run_subject(
    name: &str,
    kind: &str,
    reference: bool,
    program: Program<'_>,
    env: &[(&str, String)],
    runs: usize,
    endpoint: &str,
    counts: &proxy::Counts,
) -> Result<Figures> {
    match kind {
        "postgres" => {
            measure(name, program, env, runs, endpoint, counts, async || {
                postgres_subject().await
            })
            .await
        }
        "postgres-rds" => {
            measure(name, program, env, runs, endpoint, counts, async || {
                postgres_rds_subject().await
            })
            .await
        }
        "mysql" => {
            let engine = if reference { "mysql" } else { "mariadb" };
            measure(name, program, env, runs, endpoint, counts, async || {
                mysql_subject(engine).await
            })
            .await
        }
        _ => {
            measure(name, program, env, runs, endpoint, counts, async || {
                ssh_subject().await
            })
            .await
        }
    }
}

/// AWS's four database functions from `dir` (the user's copies), each run from a temporary copy
/// whose one trust-store path (Amazon Linux's bundle) names the stack's CA instead, so that they
/// verify TLS as ours do.
async fn run_reference(
    dir: &Path,
    python: &Path,
    ca: &str,
    runs: usize,
    endpoint: &str,
    counts: &proxy::Counts,
) -> Result<Vec<(&'static str, Figures)>> {
    // (name as ours are named, kind of subject, folder in `dir`, extra environment)
    let functions: [(&str, &str, &str, Env); 4] = [
        (
            "postgres/single-user",
            "postgres",
            "SecretsManagerRDSPostgreSQLRotationSingleUser",
            vec![],
        ),
        (
            "postgres/alternating-users",
            "postgres",
            "SecretsManagerRDSPostgreSQLRotationMultiUser",
            vec![],
        ),
        (
            "mysql/single-user (MariaDB)",
            "mysql",
            "SecretsManagerRDSMySQLRotationSingleUser",
            vec![],
        ),
        (
            "mysql/alternating-users (MariaDB)",
            "mysql",
            "SecretsManagerRDSMySQLRotationMultiUser",
            // Its default (16) is MySQL 5.7's limit; the fixtures' names are longer.
            vec![("USERNAME_CHARACTER_LIMIT", "80".to_owned())],
        ),
    ];
    // The functions run from their copies' folder: a relative interpreter path would not resolve
    // (and a resolved symlink would leave the venv).
    let python = &std::path::absolute(python)?;
    let copies = workspace_root().join("target/tmp/reference-functions");
    let mut results = Vec::new();
    for (name, kind, folder, env) in functions {
        let source = dir.join(folder).join("lambda_function.py");
        let code = std::fs::read_to_string(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        let trust_store = "/etc/pki/tls/cert.pem";
        if !code.contains(trust_store) {
            return Err(format!(
                "{}: no {trust_store} to point at the stack's CA",
                source.display()
            )
            .into());
        }
        let copy = copies.join(folder);
        std::fs::create_dir_all(&copy)?;
        std::fs::write(copy.join("lambda_function.py"), code.replace(trust_store, ca))?;
        let program = Program::Python { python, dir: &copy };
        let figures = run_subject(name, kind, true, program, &env, runs, endpoint, counts).await?;
        results.push((name, figures));
    }
    Ok(results)
}

fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let runs = arg("--runs", 5);
    let scale = arg("--scale", 1000);
    let processes = arg("--processes", 4);
    let ssh_fleet = arg("--ssh-fleet", 200);
    let root = workspace_root();
    let bootstrap = |bin: &str| root.join("target/lambda").join(bin).join("bootstrap");
    let moto_port: u16 = stack_setting("AWS_ENDPOINT_URL")
        .and_then(|u| u.rsplit(':').next()?.parse().ok())
        .ok_or("no Secrets Manager endpoint: run scripts/stack up")?;
    let (proxy_port, counts) = proxy::start(moto_port).await?;
    let endpoint = format!("http://127.0.0.1:{proxy_port}");
    let ca = stack_setting("ROTOR_TLS_CA").ok_or("no CA")?;

    // The Runtime API's own overhead, with an echo function.
    let echo = root.join("target/release/echo-function");
    let mut echo_cold = Vec::new();
    let mut echo_warm = Vec::new();
    for _ in 0..runs {
        let function = Function::spawn(&echo, &[], &endpoint).await?;
        function.api.invoke(&json!({"ping": 1}), TIMEOUT).await?;
        echo_cold.push(ms(function.spawned.elapsed()));
        for _ in 0..100 {
            let started = Instant::now();
            function.api.invoke(&json!({"ping": 1}), TIMEOUT).await?;
            echo_warm.push(ms(started.elapsed()));
        }
    }

    // The floor: one Secrets Manager round trip, one database connect + login + query.
    let proxied = aws_sdk_secretsmanager::Client::from_conf(
        secrets_manager_client()
            .await
            .config()
            .to_builder()
            .endpoint_url(&endpoint)
            .build(),
    );
    let floor_subject = postgres_subject().await;
    let mut sm_rtt = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        proxied
            .describe_secret()
            .secret_id(&floor_subject.arn)
            .send()
            .await?;
        sm_rtt.push(ms(started.elapsed()));
    }
    let client = secrets_manager_client().await;
    let value: Value = value_at(&client, &floor_subject.arn, "AWSCURRENT").await;
    let secret =
        rotor_database::DatabaseSecret::parse(&value.to_string().as_str().into(), &["postgres"], 5432)?;
    let driver = rotor_postgres::Postgres::new(rotor_postgres::tls::TlsConfigs::new(Some(ca.clone().into())));
    let mut db_rtt = Vec::new();
    for _ in 0..20 {
        use rotor_database::Database;
        let started = Instant::now();
        let mut session = driver
            .login(&secret, secret_rotor::Deadline::after(TIMEOUT))
            .await?;
        driver
            .check(&mut session, secret_rotor::Deadline::after(TIMEOUT))
            .await?;
        db_rtt.push(ms(started.elapsed()));
    }
    let (sm_floor, _, _) = stats(&mut sm_rtt);
    let (db_floor, _, _) = stats(&mut db_rtt);

    let subjects: Vec<BenchedFunction> = vec![
        (
            "postgres/single-user",
            "postgres",
            vec![("DATABASE_CA_BUNDLE", ca.clone())],
        ),
        (
            "postgres/alternating-users",
            "postgres",
            vec![
                ("DATABASE_CA_BUNDLE", ca.clone()),
                ("ROTATION_STRATEGY", "alternating-users".into()),
            ],
        ),
        (
            "postgres/alternating-users, RDS-managed master (PostgreSQL 15)",
            "postgres-rds",
            vec![
                ("DATABASE_CA_BUNDLE", ca.clone()),
                ("ROTATION_STRATEGY", "alternating-users".into()),
            ],
        ),
        (
            "mysql/single-user (MariaDB)",
            "mysql",
            vec![("DATABASE_CA_BUNDLE", ca.clone())],
        ),
        (
            "mysql/alternating-users (MariaDB)",
            "mysql",
            vec![
                ("DATABASE_CA_BUNDLE", ca.clone()),
                ("ROTATION_STRATEGY", "alternating-users".into()),
            ],
        ),
        ("ssh-key (2 hosts)", "ssh-key", vec![]),
    ];
    let mut results = Vec::new();
    for (name, bin, env) in &subjects {
        // `postgres-rds`: the postgres function, on the stack's RDS instance.
        let binary = bootstrap(bin.strip_suffix("-rds").unwrap_or(bin));
        let program = Program::Bootstrap(&binary);
        let figures = run_subject(name, bin, false, program, env, runs, &endpoint, &counts).await?;
        results.push((*name, figures));
    }
    let reference = match (text_arg("--reference"), text_arg("--python")) {
        (Some(dir), Some(python)) => {
            Some(run_reference(Path::new(&dir), Path::new(&python), &ca, runs, &endpoint, &counts).await?)
        }
        (Some(_), None) => return Err("--reference needs --python (scripts/bench passes it)".into()),
        _ => None,
    };

    println!("\n## Runtime API overhead (echo function, {runs} processes x 100 invocations)\n");
    let (echo_cold, lo, hi) = stats(&mut echo_cold);
    println!("cold start (spawn -> first answer): median {echo_cold:.2} ms (min {lo:.2}, max {hi:.2})");
    let (m, lo, hi) = stats(&mut echo_warm);
    println!("warm invocation round trip:          median {m:.3} ms (min {lo:.3}, max {hi:.3})");
    println!("\n## Floor\n\none Secrets Manager round trip (DescribeSecret, warm connection): median {sm_floor:.2} ms");
    println!("one PostgreSQL connect + TLS + SCRAM login + SELECT 1:            median {db_floor:.2} ms");
    let cold_floor = echo_cold + 4.0 * sm_floor;
    println!(
        "cold start floor: the echo function's cold start + createSecret's 4 round trips = {cold_floor:.2} ms"
    );
    println!("\n## Per engine ({runs} cold processes; 3 warm rotations each)\n");
    println!("| function | cold start ms | x cold floor | create | set | test | finish | warm rotation ms | peak RSS MiB | SM calls/rotation | DB conns | refused logins | floor ms | x floor |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut summaries = BTreeMap::new();
    let mut cold_sets = Vec::new();
    for (name, mut figures) in results {
        let summary = Summary::of(&mut figures, sm_floor, db_floor);
        let (cold, cold_lo, cold_hi) = summary.cold;
        let (rotation, rot_lo, rot_hi) = summary.rotation;
        let [create, set, test, finish] = summary.steps;
        println!(
            "| {name} | {cold:.1} ({cold_lo:.1}-{cold_hi:.1}) | {:.2} | {create:.1} | {set:.1} | {test:.1} | {finish:.1} | {rotation:.1} ({rot_lo:.1}-{rot_hi:.1}) | {:.1} | {}: {} | {} | {} | {:.1} | {:.2} |",
            cold / cold_floor,
            summary.rss,
            summary.calls,
            summary.call_list,
            figures.connections,
            figures.refused,
            summary.floor,
            summary.multiple,
        );
        let (cold_set, _, _) = stats(&mut figures.cold_set);
        cold_sets.push(format!("| {name} | {cold_set:.1} | {set:.1} |"));
        summaries.insert(name, (summary, figures.connections, figures.refused));
    }
    println!("\n## setSecret in the cold process and warm (a client built at first use shows here)\n");
    println!("| function | cold process setSecret ms | warm setSecret ms |");
    println!("|---|---|---|");
    for line in cold_sets {
        println!("{line}");
    }
    if let Some(reference) = reference {
        println!("\n## Side by side with AWS's Python functions (same Runtime API server, Secrets Manager and databases; {runs} cold processes, 3 warm rotations each)\n");
        println!("| function | cold start ms ours / theirs (ratio) | warm rotation ms ours / theirs (ratio) | peak RSS MiB ours / theirs (ratio) | SM calls ours / theirs | DB conns ours / theirs | refused logins ours / theirs |");
        println!("|---|---|---|---|---|---|---|");
        for (name, mut figures) in reference {
            let Some((ours, our_connections, our_refused)) = summaries.get(name) else {
                continue;
            };
            let theirs = Summary::of(&mut figures, sm_floor, db_floor);
            println!(
                "| {name} | {:.1} / {:.1} ({:.3}) | {:.1} / {:.1} ({:.3}) | {:.1} / {:.1} ({:.2}) | {} / {} | {our_connections} / {} | {our_refused} / {} |",
                ours.cold.0,
                theirs.cold.0,
                ours.cold.0 / theirs.cold.0,
                ours.rotation.0,
                theirs.rotation.0,
                ours.rotation.0 / theirs.rotation.0,
                ours.rss,
                theirs.rss,
                ours.rss / theirs.rss,
                ours.calls,
                theirs.calls,
                figures.connections,
                figures.refused,
            );
        }
    }

    if ssh_fleet > 0 {
        ssh_fleet_run(ssh_fleet, &bootstrap("ssh-key"), &endpoint).await?;
    }
    if scale > 0 {
        scale_run(scale, processes, &bootstrap("postgres"), &ca, &endpoint).await?;
    }
    Ok(())
}

/// Rotates one SSH key across `size` hosts of the stack's fleet (each its own sshd, host key and
/// authorized_keys), at a few session bounds: each step's time and the function's peak open file
/// descriptors, sampled every millisecond.
async fn ssh_fleet_run(size: usize, binary: &Path, endpoint: &str) -> Result<()> {
    let hosts = SshHost::fleet(size);
    let client = secrets_manager_client().await;
    println!("\n## SSH key across {size} hosts (one sshd each, on loopback)\n");
    println!("| SSH_MAX_CONCURRENCY | rotation | create ms | set ms | test ms | finish ms | peak open fds | fds at rest |");
    println!("|---|---|---|---|---|---|---|---|");
    for concurrency in [10usize, 32] {
        let arn = fixtures::ssh(&hosts).await.arn;
        let env = [("SSH_MAX_CONCURRENCY", concurrency.to_string())];
        let function = Function::spawn(binary, &env, endpoint).await?;
        for rotation in ["cold", "warm"] {
            let token = new_token();
            start_rotation(&client, &arn, &token).await;
            let at_rest = function.open_descriptors();
            let mut peak = 0;
            let times: Vec<f64> = {
                let call = function.steps(&Step::ALL, &arn, &token);
                tokio::pin!(call);
                let times = loop {
                    tokio::select! {
                        result = &mut call => break result?,
                        _ = tokio::time::sleep(Duration::from_millis(1)) => {
                            peak = peak.max(function.open_descriptors());
                        }
                    }
                };
                times.into_iter().map(ms).collect()
            };
            end_rotation(&client, &arn, &token).await;
            println!(
                "| {concurrency} | {rotation} | {:.1} | {:.1} | {:.1} | {:.1} | {peak} | {at_rest} |",
                times[0], times[1], times[2], times[3]
            );
        }
    }
    Ok(())
}

/// Rotates `count` PostgreSQL secrets (each its own role) through one process, then through
/// `processes` processes at once; throughput, latency distribution, convergence.
async fn scale_run(count: usize, processes: usize, binary: &Path, ca: &str, endpoint: &str) -> Result<()> {
    let server = PgServer::named("pg17");
    let client = secrets_manager_client().await;
    println!("\n## Scale: {count} PostgreSQL secrets (single user, verified TLS), each its own role\n");
    for parallel in [1, processes] {
        let tag = random_hex(3);
        let roles: Vec<String> = (0..count).map(|i| format!("s_{tag}_{i}")).collect();
        let sql: String = roles
            .iter()
            .map(|r| format!("CREATE ROLE {} LOGIN PASSWORD 'initial-Password-1';", ident(r)))
            .collect();
        server.run(&sql).await;
        let mut arns = Vec::with_capacity(count);
        for chunk in roles.chunks(32) {
            let creations = chunk.iter().map(|role| {
                let value = json!({"engine": "postgres", "host": "localhost", "port": server.port, "username": role,
                                   "password": "initial-Password-1", "ssl": true});
                let client = client.clone();
                async move { create_secret(&client, "scale", &value.to_string()).await }
            });
            arns.extend(join_all(creations).await);
        }
        let mut functions = Vec::new();
        for _ in 0..parallel {
            functions
                .push(Function::spawn(binary, &[("DATABASE_CA_BUNDLE", ca.to_owned())], endpoint).await?);
        }
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(count);
        let lanes: Vec<Vec<String>> = (0..parallel)
            .map(|p| arns.iter().skip(p).step_by(parallel).cloned().collect())
            .collect();
        let work = functions.iter().zip(lanes).map(|(function, lane)| {
            let client = client.clone();
            async move {
                let mut times = Vec::new();
                for arn in lane {
                    let begun = Instant::now();
                    rotation(function, &client, &arn)
                        .await
                        .map_err(|e| e.to_string())?;
                    times.push(ms(begun.elapsed()));
                }
                Ok::<_, String>(times)
            }
        });
        for lane in join_all(work).await {
            latencies.extend(lane?);
        }
        let wall = started.elapsed();
        latencies.sort_by(|a, b| a.total_cmp(b));
        let rss: Vec<String> = functions
            .iter()
            .map(|f| format!("{:.1}", f.peak_rss_kib() as f64 / 1024.0))
            .collect();
        drop(functions);
        // Convergence: every AWSCURRENT logs in, and the database agrees.
        let mut converged = 0;
        for chunk in arns.chunks(16) {
            let checks = chunk.iter().map(|arn| {
                let (client, server) = (client.clone(), server.clone());
                async move {
                    let value = value_at(&client, arn, "AWSCURRENT").await;
                    server
                        .logs_in(
                            value["username"].as_str().unwrap_or_default(),
                            value["password"].as_str().unwrap_or_default(),
                        )
                        .await
                }
            });
            converged += join_all(checks).await.into_iter().filter(|ok| *ok).count();
        }
        println!(
            "{parallel} process(es): {count} rotations in {:.1} s = {:.1} rotations/s; latency p50 {:.1} ms, p90 {:.1}, p99 {:.1}, max {:.1}; peak RSS {} MiB; converged {converged}/{count}",
            wall.as_secs_f64(),
            count as f64 / wall.as_secs_f64(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1],
            rss.join("/"),
        );
        if converged != count {
            return Err(format!("only {converged} of {count} secrets converged").into());
        }
    }
    Ok(())
}
