//! A Lambda Runtime API that adds no latency of its own: the four routes, keep-alive, an
//! invocation handed to the waiting `/next` as soon as it is submitted. One server per function
//! process (a killed process can never take another's invocation).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::BufReader;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::http::{read_message, respond};

type Reply = oneshot::Sender<Result<Value, String>>;

struct Invocation {
    payload: Vec<u8>,
    reply: Reply,
}

/// The server.
pub struct RuntimeApi {
    /// `http://127.0.0.1:PORT`, for `AWS_LAMBDA_RUNTIME_API`.
    pub base_url: String,
    queue: mpsc::Sender<Invocation>,
}

struct Shared {
    next: Mutex<mpsc::Receiver<Invocation>>,
    waiting: Mutex<HashMap<String, Reply>>,
    ids: AtomicU64,
}

impl RuntimeApi {
    /// Starts a server on a free port.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (queue, receiver) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            next: Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            ids: AtomicU64::new(0),
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Ok(RuntimeApi {
            base_url: format!("http://127.0.0.1:{port}"),
            queue,
        })
    }

    /// Invokes the function with `payload`; its result, or its error document as text.
    pub async fn invoke(&self, payload: &Value, timeout: Duration) -> Result<Value, String> {
        let (reply, answer) = oneshot::channel();
        let payload = payload.to_string().into_bytes();
        self.queue
            .send(Invocation { payload, reply })
            .await
            .map_err(|_| "the server stopped".to_owned())?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the invocation was dropped".to_owned()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }
}

async fn serve(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    while let Ok(Some(request)) = read_message(&mut reader).await {
        let path = request
            .start
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let result = if path.ends_with("/runtime/invocation/next") {
            let invocation = shared.next.lock().await.recv().await;
            let Some(invocation) = invocation else { return };
            let id = format!("bench-{}", shared.ids.fetch_add(1, Ordering::Relaxed));
            shared.waiting.lock().await.insert(id.clone(), invocation.reply);
            let deadline =
                SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(30);
            let headers = [
                ("Content-Type", "application/json".to_owned()),
                ("Lambda-Runtime-Aws-Request-Id", id),
                ("Lambda-Runtime-Deadline-Ms", deadline.as_millis().to_string()),
                (
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned(),
                ),
                (
                    "Lambda-Runtime-Trace-Id",
                    "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
                ),
            ];
            respond(&mut write, "200 OK", &headers, &invocation.payload).await
        } else if let Some(rest) = path.split("/runtime/invocation/").nth(1) {
            let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            if let Some(reply) = shared.waiting.lock().await.remove(id) {
                let body = String::from_utf8_lossy(&request.body).into_owned();
                let outcome = match kind {
                    "response" => Ok(serde_json::from_str(&body).unwrap_or(Value::Null)),
                    _ => Err(body),
                };
                let _ = reply.send(outcome);
            }
            respond(&mut write, "202 Accepted", &[], b"{}").await
        } else {
            // /runtime/init/error and anything else: accept.
            respond(&mut write, "202 Accepted", &[], b"{}").await
        };
        if result.is_err() {
            return;
        }
    }
}
