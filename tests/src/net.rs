//! Network faults on demand: a port that forwards to a server when switched on, refuses
//! connections when off, and can swallow them without answering (a hung server).

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A port that forwards to a host when switched on, and refuses connections when off.
pub struct Switch {
    /// The port to list in the secret.
    pub port: u16,
    target: u16,
    task: Option<JoinHandle<()>>,
}

impl Switch {
    /// A switch in front of `target`, initially off (nothing listens on `port`).
    pub async fn off(target: u16) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        Switch {
            port,
            target,
            task: None,
        }
    }

    /// Accepts connections and never answers (a server that hangs).
    pub async fn hang(&mut self) {
        self.stop();
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind the switch port");
        self.task = Some(tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                held.push(client);
            }
        }));
    }

    /// Refuses connections again (nothing listens).
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Starts forwarding.
    pub async fn on(&mut self) {
        self.stop();
        // The aborted task's listener closes asynchronously: retry the bind briefly.
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(_) if attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => panic!("rebind the switch port: {e}"),
            }
        };
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop();
    }
}
