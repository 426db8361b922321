//! A counting proxy in front of the Secrets Manager API: forwards each request as is and counts
//! them by operation (`X-Amz-Target`), so the benchmark can report the calls a rotation makes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::http::read_message;

/// Calls seen, by operation.
#[derive(Clone, Default)]
pub struct Counts(Arc<Mutex<BTreeMap<String, u64>>>);

impl Counts {
    /// A copy of the counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn add(&self, operation: &str) {
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry(operation.to_owned()).or_default() += 1;
        }
    }
}

/// Starts the proxy to `upstream_port`; returns its port and the counts.
pub async fn start(upstream_port: u16) -> std::io::Result<(u16, Counts)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let counts = Counts::default();
    let shared = counts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counts = shared.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, mut client_write) = client.into_split();
                let (server_read, mut server_write) = server.into_split();
                let mut from_client = BufReader::new(client_read);
                let mut from_server = BufReader::new(server_read);
                while let Ok(Some(request)) = read_message(&mut from_client).await {
                    let operation = operation_of(&request);
                    counts.add(&operation);
                    if server_write.write_all(&request.to_bytes()).await.is_err() {
                        return;
                    }
                    let Ok(Some(response)) = read_message(&mut from_server).await else {
                        return;
                    };
                    if client_write.write_all(&response.to_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, counts))
}

/// The API operation of a request: `X-Amz-Target`'s last part (Secrets Manager's JSON protocol),
/// else the form body's `Action` (RDS's query protocol).
fn operation_of(request: &crate::http::Message) -> String {
    if let Some(target) = request.header("x-amz-target") {
        return target.rsplit('.').next().unwrap_or("?").to_owned();
    }
    String::from_utf8_lossy(&request.body)
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or("?")
        .to_owned()
}
