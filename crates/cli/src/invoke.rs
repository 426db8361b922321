//! A client of the Lambda Invoke API (`POST /2015-03-31/functions/NAME/invocations`), as served
//! locally by `cargo lambda watch`: one plain HTTP/1.1 request per invocation.

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why an invocation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The function ran and returned an error.
    Function {
        /// `errorType` (the framework's error kind).
        error_type: String,
        /// `errorMessage`.
        message: String,
    },
    /// The Invoke API could not be reached or answered something else.
    Unreachable(String),
}

impl fmt::Display for InvokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvokeError::Function { error_type, message } => write!(f, "{error_type}: {message}"),
            InvokeError::Unreachable(why) => write!(f, "the Invoke API failed: {why}"),
        }
    }
}

impl std::error::Error for InvokeError {}

/// Rotation steps through the Invoke API, for the framework's [`Driver`](secret_rotor::driver::Driver):
/// each step invokes `function`, waiting at most `timeout`.
pub struct InvokeStep<'a> {
    /// The Invoke API.
    pub client: &'a InvokeClient,
    /// The function's name.
    pub function: &'a str,
    /// How long one step may take.
    pub timeout: Duration,
}

impl secret_rotor::driver::StepInvoker for InvokeStep<'_> {
    type Error = InvokeError;

    fn invoke<'a>(
        &'a self,
        event: &'a secret_rotor::RotationEvent,
    ) -> secret_rotor::BoxFuture<'a, Result<Option<secret_rotor::Outcome>, InvokeError>> {
        Box::pin(async move {
            self.client
                .invoke(self.function, &event.to_json(), self.timeout)
                .await
                .map(|_| None)
        })
    }
}

/// The Invoke API at `http://host:port`.
#[derive(Debug, Clone)]
pub struct InvokeClient {
    host: String,
    port: u16,
}

impl InvokeClient {
    /// A client for `endpoint` (`http://127.0.0.1:9000`).
    ///
    /// ```
    /// let client = rotor_cli::invoke::InvokeClient::new("http://127.0.0.1:9000/").unwrap();
    /// assert!(rotor_cli::invoke::InvokeClient::new("https://lambda.eu-west-1.amazonaws.com").is_err());
    /// ```
    pub fn new(endpoint: &str) -> Result<Self, String> {
        let rest = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| format!("{endpoint}: the local Invoke API is plain http://host:port"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| format!("{endpoint}: bad port"))?),
            None => (authority, 80),
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// Invokes `function` with `payload`, waiting at most `timeout`.
    pub async fn invoke(
        &self,
        function: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<Value, InvokeError> {
        match tokio::time::timeout(timeout, self.request(function, payload)).await {
            Ok(result) => result,
            Err(_) => Err(InvokeError::Unreachable(format!(
                "no answer within {}s",
                timeout.as_secs()
            ))),
        }
    }

    async fn request(&self, function: &str, payload: &Value) -> Result<Value, InvokeError> {
        let unreachable =
            |e: std::io::Error| InvokeError::Unreachable(format!("{}:{}: {e}", self.host, self.port));
        let body = payload.to_string();
        let request = format!(
            "POST /2015-03-31/functions/{function}/invocations HTTP/1.1\r\nHost: {}:{}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.port,
            body.len()
        );
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(unreachable)?;
        stream.write_all(request.as_bytes()).await.map_err(unreachable)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(unreachable)?;
        parse_response(&response)
    }
}

/// Reads an Invoke API response: a 200 is the function's result, unless the
/// `X-Amz-Function-Error` header says it failed (as AWS does); a 4xx/5xx with
/// `{errorType, errorMessage}` is a function error (as cargo-lambda does).
pub fn parse_response(response: &[u8]) -> Result<Value, InvokeError> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| InvokeError::Unreachable("malformed HTTP response".to_owned()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| InvokeError::Unreachable("malformed HTTP status".to_owned()))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    let function_error = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("x-amz-function-error"));
    let json: Option<Value> = serde_json::from_str(body.trim()).ok();
    let error_fields = json.as_ref().and_then(|v| {
        Some((
            v.get("errorType")?.as_str()?.to_owned(),
            v.get("errorMessage")?.as_str()?.to_owned(),
        ))
    });
    match (status, function_error, error_fields) {
        (200, false, _) => Ok(json.unwrap_or(Value::Null)),
        (_, _, Some((error_type, message))) => Err(InvokeError::Function { error_type, message }),
        (status, _, None) => {
            let shown: String = body.trim().chars().take(300).collect();
            Err(InvokeError::Unreachable(format!("HTTP {status}: {shown}")))
        }
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_of_both_styles() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnull").unwrap(),
            Value::Null
        );
        let cargo_lambda = b"HTTP/1.1 500 Internal Server Error\r\n\r\n{\"errorType\":\"TargetError\",\"errorMessage\":\"no\"}";
        let aws = b"HTTP/1.1 200 OK\r\nX-Amz-Function-Error: Unhandled\r\n\r\n{\"errorType\":\"TargetError\",\"errorMessage\":\"no\"}";
        for response in [&cargo_lambda[..], &aws[..]] {
            assert_eq!(
                parse_response(response).unwrap_err(),
                InvokeError::Function {
                    error_type: "TargetError".into(),
                    message: "no".into()
                }
            );
        }
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nnull\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), Value::Null);
        assert!(matches!(
            parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n{}"),
            Err(InvokeError::Unreachable(_))
        ));
    }
}
