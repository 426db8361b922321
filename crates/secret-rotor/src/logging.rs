//! JSON-line logs that never carry a secret, at any level.
//!
//! The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's advanced logging controls) or
//! else `RUST_LOG`, default `info`. Whatever the level, TRACE events of the dependencies that
//! dump raw HTTP bodies or invocation payloads are dropped: the AWS SDK logs every request body
//! (the new password in `PutSecretValue`) and the Lambda runtime logs every event (the
//! `RotationToken`) at TRACE.

use std::fmt;

use serde_json::{json, Map, Value};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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

/// The metric namespace when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_METRICS_NAMESPACE: &str = "SecretRotor";

/// CloudWatch metrics carried by each step's end line, in the Embedded Metric Format: CloudWatch
/// Logs extracts them from the log event itself, so they cost no API call and no dependency.
///
/// Metrics `StepDuration` (milliseconds), `StepSucceeded` and `StepFailed` (counts, 0 or 1), with
/// the dimension sets `[function]`, `[function, step]` and, on a failure, `[function, step,
/// error_type]`. Every field is the step's name, the function's name, a number or an error type:
/// never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepMetrics {
    /// The CloudWatch namespace.
    pub namespace: String,
    /// The `function` dimension: the Lambda function's name.
    pub function: String,
}

impl StepMetrics {
    /// From `METRICS_NAMESPACE` (default [`DEFAULT_METRICS_NAMESPACE`]; empty turns the metrics
    /// off) and `AWS_LAMBDA_FUNCTION_NAME`.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The same, through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let namespace = lookup("METRICS_NAMESPACE").unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_owned());
        let namespace = namespace.trim();
        if namespace.is_empty() {
            return None;
        }
        Some(Self {
            namespace: namespace.chars().take(255).collect(),
            function: lookup("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "secret-rotor".to_owned()),
        })
    }

    /// Adds the metric members and the `_aws` metadata to a step end line (which has `step`,
    /// `outcome`, `duration_ms` and, on failures, `error_type`).
    fn decorate(&self, line: &mut Map<String, Value>, timestamp_ms: u64) {
        let failed = line.get("outcome").and_then(Value::as_str) == Some("failed");
        let duration = line.get("duration_ms").cloned().unwrap_or(json!(0));
        line.insert("function".into(), json!(self.function));
        line.insert("StepDuration".into(), duration);
        line.insert("StepSucceeded".into(), json!(u8::from(!failed)));
        line.insert("StepFailed".into(), json!(u8::from(failed)));
        let mut dimensions = vec![json!(["function"]), json!(["function", "step"])];
        if failed && line.get("error_type").is_some_and(Value::is_string) {
            dimensions.push(json!(["function", "step", "error_type"]));
        }
        line.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": dimensions,
                    "Metrics": [
                        {"Name": "StepDuration", "Unit": "Milliseconds"},
                        {"Name": "StepSucceeded", "Unit": "Count"},
                        {"Name": "StepFailed", "Unit": "Count"},
                    ],
                }],
            }),
        );
    }
}

/// The JSON line format, with [`StepMetrics`] added to the step end lines.
struct JsonLines {
    json: format::Format<format::Json>,
    metrics: Option<StepMetrics>,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let fields = event.metadata().fields();
        let step_end = fields.field("outcome").is_some() && fields.field("duration_ms").is_some();
        let Some(metrics) = self.metrics.as_ref().filter(|_| step_end) else {
            return self.json.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.json.format_event(ctx, Writer::new(&mut line), event)?;
        let Ok(Value::Object(mut document)) = serde_json::from_str::<Value>(line.trim_end()) else {
            return writer.write_str(&line);
        };
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        metrics.decorate(&mut document, timestamp_ms);
        writeln!(writer, "{}", Value::Object(document))
    }
}

/// A subscriber writing JSON lines to `writer`, filtered by `filter` and the body guard; the
/// step end lines carry `metrics` when given.
pub fn subscriber<W>(
    filter: EnvFilter,
    metrics: Option<StepMetrics>,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let json = format::Format::default()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true);
    let layer = tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(JsonLines { json, metrics })
        .with_writer(writer)
        .with_filter(filter.and(filter::filter_fn(safe_to_log)));
    Registry::default().with(layer)
}

/// Installs the subscriber on stdout (what Lambda sends to CloudWatch), with the step metrics of
/// the environment. Does nothing if a subscriber is already installed.
pub fn init() {
    let _ = tracing::subscriber::set_global_default(subscriber(
        env_filter(),
        StepMetrics::from_env(),
        std::io::stdout,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_metrics_from_the_environment() {
        let metrics =
            StepMetrics::from_lookup(|name| (name == "AWS_LAMBDA_FUNCTION_NAME").then(|| "f".into()));
        assert_eq!(
            metrics,
            Some(StepMetrics {
                namespace: DEFAULT_METRICS_NAMESPACE.into(),
                function: "f".into()
            })
        );
        assert_eq!(
            StepMetrics::from_lookup(|name| (name == "METRICS_NAMESPACE").then(|| " ".into())),
            None
        );
        let mut line = serde_json::from_value::<Map<String, Value>>(json!({
            "step": "setSecret", "outcome": "failed", "duration_ms": 12, "error_type": "TargetError"
        }))
        .unwrap();
        metrics.unwrap().decorate(&mut line, 7);
        assert_eq!(line["StepFailed"], json!(1));
        assert_eq!(line["StepDuration"], json!(12));
        assert_eq!(line["_aws"]["Timestamp"], json!(7));
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([
                ["function"],
                ["function", "step"],
                ["function", "step", "error_type"]
            ])
        );
    }

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
        let subscriber = subscriber(EnvFilter::new("trace"), None, writer);
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
