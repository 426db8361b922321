//! `rotor`: the operator CLI (see the library documentation).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use rotor_cli::check::{check, CheckArgs, EngineKind, FunctionTarget};
use rotor_cli::output::Output;
use rotor_cli::report::{report, ReportArgs};
use rotor_cli::rotate::{rotate, RotateArgs};
use rotor_cli::status::{status, StatusArgs};
use rotor_cli::{secrets_manager, CliError, Exit};
use rotor_database::Strategy;
use secret_rotor::Step;

#[derive(Parser)]
#[command(
    name = "rotor",
    version,
    about = "Drive, diagnose and preflight Secrets Manager rotations"
)]
struct Cli {
    /// One JSON document on stdout instead of human output.
    #[arg(long, global = true)]
    json: bool,
    /// Secrets Manager endpoint (default: the AWS SDK's configuration, AWS_ENDPOINT_URL included).
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rotate a secret: in AWS (RotateSecret, then follow it), or --local through the Invoke API.
    Rotate {
        /// Secret name or ARN.
        secret: String,
        /// Play Secrets Manager here, invoking the function through a local Invoke API.
        #[arg(long)]
        local: bool,
        /// The local Invoke API.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9000")]
        invoke_endpoint: String,
        /// The function to invoke (default: the secret's rotation function).
        #[arg(long)]
        function: Option<String>,
        /// Run only this step (needs --local and --token).
        #[arg(long, value_enum)]
        step: Option<StepArg>,
        /// The version token (default: a new one).
        #[arg(long)]
        token: Option<String>,
        /// Seconds to wait for a step (local) or the whole rotation (AWS).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Versions, labels, schedule, rotation function, and what to do if a rotation is stuck
    /// (checked by logging in with each labelled version).
    Status {
        /// Secret name or ARN.
        secret: String,
        /// The function the secret belongs to (default: the engine whose function accepts it).
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// Extra CA bundle (PEM), as the function's DATABASE_CA_BUNDLE.
        #[arg(long, env = "DATABASE_CA_BUNDLE")]
        ca_bundle: Option<PathBuf>,
    },
    /// Preflight: the engine's own checks (parse, TLS, logins with AWSCURRENT and the master or
    /// every SSH host, in the rotation's order), changing nothing; here, or inside the deployed
    /// function with --function.
    Check {
        /// Secret name or ARN.
        secret: String,
        /// The function the secret belongs to (which checks run here).
        #[arg(long, value_enum, required_unless_present = "function")]
        engine: Option<EngineArg>,
        /// Its strategy (databases).
        #[arg(long, value_enum, default_value = "single-user")]
        strategy: StrategyArg,
        /// Extra CA bundle (PEM), as the function's DATABASE_CA_BUNDLE.
        #[arg(long, env = "DATABASE_CA_BUNDLE")]
        ca_bundle: Option<PathBuf>,
        /// Run the checks inside this deployed function (the Lambda Invoke API), from its network.
        #[arg(long)]
        function: Option<String>,
        /// With --function: a local Invoke API instead of AWS Lambda's.
        #[arg(long, requires = "function")]
        local: bool,
        /// The local Invoke API.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9000")]
        invoke_endpoint: String,
    },
    /// Many secrets at once: rotation enabled, function, last and next rotation, a stuck rotation
    /// (since when), and with --logs the last failed step from the functions' logs.
    Report {
        /// Secret names or ARNs (or select them with --tag).
        secrets: Vec<String>,
        /// Report every secret carrying this tag exactly (KEY=VALUE; repeat: all of them).
        #[arg(long, value_name = "KEY=VALUE")]
        tag: Vec<String>,
        /// Also read each rotation function's log group (/aws/lambda/NAME) for the last failed
        /// step (CloudWatch Logs FilterLogEvents calls).
        #[arg(long)]
        logs: bool,
        /// How many days back --logs reads.
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        logs_days: u32,
        /// ListSecrets page size (tests).
        #[arg(long, hide = true, default_value_t = 100)]
        page_size: i32,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StepArg {
    #[value(name = "createSecret")]
    Create,
    #[value(name = "setSecret")]
    Set,
    #[value(name = "testSecret")]
    Test,
    #[value(name = "finishSecret")]
    Finish,
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    Postgres,
    Mysql,
    SshKey,
}

impl From<EngineArg> for EngineKind {
    fn from(engine: EngineArg) -> Self {
        match engine {
            EngineArg::Postgres => EngineKind::Postgres,
            EngineArg::Mysql => EngineKind::Mysql,
            EngineArg::SshKey => EngineKind::SshKey,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    SingleUser,
    AlternatingUsers,
}

async fn run(cli: Cli, out: &mut Output) -> Result<Exit, CliError> {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = secrets_manager(&shared, cli.endpoint.as_deref());
    match cli.command {
        Command::Rotate {
            secret,
            local,
            invoke_endpoint,
            function,
            step,
            token,
            timeout,
        } => {
            let step = step.map(|s| match s {
                StepArg::Create => Step::CreateSecret,
                StepArg::Set => Step::SetSecret,
                StepArg::Test => Step::TestSecret,
                StepArg::Finish => Step::FinishSecret,
            });
            let logs = aws_sdk_cloudwatchlogs::Client::new(&shared);
            let args = RotateArgs {
                secret,
                local,
                invoke_endpoint,
                function,
                step,
                token,
                timeout: Duration::from_secs(timeout),
            };
            rotate(&client, &logs, &args, out).await
        }
        Command::Status {
            secret,
            engine,
            ca_bundle,
        } => {
            let args = StatusArgs {
                secret,
                engine: engine.map(EngineKind::from),
                ca_bundle,
            };
            status(&client, &args, out).await
        }
        Command::Check {
            secret,
            engine,
            strategy,
            ca_bundle,
            function,
            local,
            invoke_endpoint,
        } => {
            let args = CheckArgs {
                secret,
                engine: engine.map_or(EngineKind::Postgres, EngineKind::from),
                strategy: match strategy {
                    StrategyArg::SingleUser => Strategy::SingleUser,
                    StrategyArg::AlternatingUsers => Strategy::AlternatingUsers,
                },
                ca_bundle,
                function: function.map(|name| FunctionTarget {
                    name,
                    local_endpoint: local.then_some(invoke_endpoint),
                    shared: (!local).then(|| shared.clone()),
                }),
                aws: Some(shared.clone()),
            };
            check(&client, &args, out).await
        }
        Command::Report {
            secrets,
            tag,
            logs,
            logs_days,
            page_size,
        } => {
            let logs_client = logs.then(|| aws_sdk_cloudwatchlogs::Client::new(&shared));
            let args = ReportArgs {
                secrets,
                tags: tag,
                logs,
                logs_days,
                page_size,
            };
            report(&client, logs_client.as_ref(), &args, out).await
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = Output::new(cli.json);
    let (exit, error) = match run(cli, &mut out).await {
        Ok(exit) => (exit, None),
        Err(err) => (err.exit, Some(err.message)),
    };
    out.finish(exit, error.as_deref());
    ExitCode::from(exit as u8)
}
