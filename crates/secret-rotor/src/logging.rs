//! JSON-line logs that never carry a secret, at any level.
//!
//! The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's advanced logging controls) or
//! else `RUST_LOG`, default `info`. Whatever the level, TRACE events of the dependencies that
//! dump raw HTTP bodies or invocation payloads are dropped: the AWS SDK logs every request body
//! (the new password in `PutSecretValue`) and the Lambda runtime logs every event (the
//! `RotationToken`) at TRACE.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{filter, Layer, Registry};

/// Dependencies whose TRACE events may contain request or response bodies.
const BODY_DUMPING_TARGETS: &[&str] = &[
    "aws_smithy",
    "aws_sdk",
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "hyper",
    "h2",
    "lambda_runtime",
    "tokio_postgres",
    "postgres_protocol",
    "mysql_async",
    "mysql_common",
    "russh",
    "rustls",
];

fn safe_to_log(metadata: &Metadata<'_>) -> bool {
    *metadata.level() < Level::TRACE
        || !BODY_DUMPING_TARGETS
            .iter()
            .any(|prefix| metadata.target().starts_with(prefix))
}

/// The level filter from the environment: `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`.
pub fn env_filter() -> EnvFilter {
    env_filter_from(|name| std::env::var(name).ok())
}

fn env_filter_from(lookup: impl Fn(&str) -> Option<String>) -> EnvFilter {
    if let Some(level) = lookup("AWS_LAMBDA_LOG_LEVEL") {
        let level = match level.trim().to_ascii_uppercase().as_str() {
            "TRACE" => LevelFilter::TRACE,
            "DEBUG" => LevelFilter::DEBUG,
            "WARN" => LevelFilter::WARN,
            "ERROR" | "FATAL" => LevelFilter::ERROR,
            _ => LevelFilter::INFO,
        };
        return EnvFilter::default().add_directive(level.into());
    }
    match lookup("RUST_LOG") {
        Some(directives) => EnvFilter::builder()
            .with_default_directive(LevelFilter::INFO.into())
            .parse_lossy(directives),
        None => EnvFilter::default().add_directive(LevelFilter::INFO.into()),
    }
}

/// A subscriber writing JSON lines to `writer`, filtered by `filter` and the body guard.
pub fn subscriber<W>(filter: EnvFilter, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_writer(writer)
        .with_filter(filter.and(filter::filter_fn(safe_to_log)));
    Registry::default().with(layer)
}

/// Installs the subscriber on stdout (what Lambda sends to CloudWatch). Does nothing if a
/// subscriber is already installed.
pub fn init() {
    let _ = tracing::subscriber::set_global_default(subscriber(env_filter(), std::io::stdout));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_level_wins_over_rust_log() {
        let filter = env_filter_from(|name| match name {
            "AWS_LAMBDA_LOG_LEVEL" => Some("debug".into()),
            "RUST_LOG" => Some("trace".into()),
            _ => None,
        });
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::DEBUG));
        let filter = env_filter_from(|name| (name == "RUST_LOG").then(|| "warn".into()));
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::WARN));
        assert_eq!(
            env_filter_from(|_| None).max_level_hint(),
            Some(LevelFilter::INFO)
        );
    }

    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn trace_events_of_body_dumping_dependencies_are_dropped() {
        let buffer = Buffer::default();
        let writer = {
            let buffer = buffer.clone();
            move || buffer.clone()
        };
        let subscriber = subscriber(EnvFilter::new("trace"), writer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "lambda_runtime::layers::api_response", body = "RotationToken-xyz", "raw event");
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", request = "password-xyz", "request");
            tracing::debug!(target: "lambda_runtime::layers::api_response", "kept at debug");
            tracing::trace!(target: "my_engine", "kept: an engine's own trace");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(
            !text.contains("RotationToken-xyz") && !text.contains("password-xyz"),
            "{text}"
        );
        assert!(
            text.contains("kept at debug") && text.contains("an engine's own trace"),
            "{text}"
        );
    }
}
