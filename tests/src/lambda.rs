//! Function binaries run as Lambda runs them: `cargo lambda watch --only-lambda-apis` emulates
//! the Runtime API and the Invoke API on a port of its own, and the binary (as built by
//! `cargo build --bins`) is started with a clean environment holding what Lambda sets, plus the
//! function's own variables. Its stdout (the JSON log lines) is kept for leak checks.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{random_hex, stack_setting};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A function process behind its own emulated Runtime and Invoke APIs.
pub struct LambdaFunction {
    /// The function's name (its binary's name, as cargo-lambda requires).
    pub name: String,
    /// The Invoke API, `http://127.0.0.1:PORT`.
    pub invoke_endpoint: String,
    /// Where the function's stdout and stderr go.
    pub log_path: PathBuf,
    watch: Child,
    function: Child,
}

impl LambdaFunction {
    /// Starts the emulator and `binary` with the environment Lambda sets and `env`, logging at
    /// `AWS_LAMBDA_LOG_LEVEL=TRACE` unless `env` says otherwise.
    pub fn start(binary: &str, env: &[(&str, &str)]) -> LambdaFunction {
        let root = workspace_root();
        let cargo_lambda = root.join(".local/venv/bin/cargo-lambda");
        assert!(
            cargo_lambda.exists(),
            "no cargo-lambda: run `scripts/tools` (scripts/test does)"
        );
        let executable = root.join("target/debug").join(binary);
        assert!(
            executable.exists(),
            "no {binary} binary: run `scripts/build-bins` (scripts/test does)"
        );
        let port = free_port();
        let tag = random_hex(4);
        let log_dir = root.join(".local/lambda-logs");
        std::fs::create_dir_all(&log_dir).expect("log directory");
        let watch_log =
            std::fs::File::create(log_dir.join(format!("watch-{binary}-{tag}.log"))).expect("watch log");
        let watch = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(&root)
            .stdout(watch_log.try_clone().expect("log"))
            .stderr(watch_log)
            .spawn()
            .expect("cargo lambda watch starts");
        wait_for_port(port, "cargo lambda watch");
        let log_path = log_dir.join(format!("{binary}-{tag}.log"));
        let log = std::fs::File::create(&log_path).expect("function log");
        let endpoint =
            stack_setting("AWS_ENDPOINT_URL").expect("no Secrets Manager endpoint: run `scripts/stack up`");
        let runtime_api = format!("http://127.0.0.1:{port}/.rt/{binary}");
        let log_group = format!("/aws/lambda/{binary}");
        let lambda_env = [
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", binary),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", log_group.as_str()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_SESSION_TOKEN", "testing"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("LAMBDA_TASK_ROOT", "/var/task"),
            ("_HANDLER", "bootstrap"),
            ("TZ", ":UTC"),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ];
        let function = Command::new(&executable)
            .env_clear()
            .envs(lambda_env)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("the function starts");
        LambdaFunction {
            name: binary.to_owned(),
            invoke_endpoint: format!("http://127.0.0.1:{port}"),
            log_path,
            watch,
            function,
        }
    }

    /// Kills the function process with SIGKILL, as Lambda does on a timeout or a deploy.
    pub fn kill_function(&mut self) {
        let _ = self.function.kill();
        let _ = self.function.wait();
    }

    /// Everything the function wrote so far.
    pub fn logs(&self) -> String {
        read_lossy(&self.log_path)
    }
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

impl Drop for LambdaFunction {
    fn drop(&mut self) {
        for child in [&mut self.function, &mut self.watch] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
