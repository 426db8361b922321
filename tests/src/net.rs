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

/// What a [`PacketCutter`] does once it has forwarded the client's packet number `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything (and count the client's packets).
    None,
    /// Close the connection both ways, as a reset middlebox or a dead link does.
    Cut {
        /// Right after the client's packet of this number (from 1).
        after: usize,
    },
    /// Stop forwarding both ways and hold the connection open, as a black hole does.
    Stall {
        /// Right after the client's packet of this number (from 1).
        after: usize,
    },
}

/// A forwarder in front of an SSH server that counts the client's SSH packets (across all the
/// connections it forwards) and cuts or stalls the connection right after a chosen one: a fault
/// on the wire at an exact point of a session, which a crash point inside the function cannot be.
///
/// Packet boundaries are read from the client's stream: the version line, then `length` + body
/// before the client's `SSH_MSG_NEWKEYS`, and `length` + body + 16-byte tag after it. That needs
/// the server to use an AEAD cipher whose length field is not encrypted (AES-GCM): the stack's
/// second host offers only those.
pub struct PacketCutter {
    /// The port to list in the secret.
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<CutterState>>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct CutterState {
    fault: Fault,
    packets: usize,
    faults: usize,
    /// Bumped by every `arm`: a stalled connection is let go when the fault changes.
    generation: u64,
}

impl PacketCutter {
    /// A forwarder to `target` on 127.0.0.1, forwarding everything.
    pub async fn start(target: u16) -> PacketCutter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(CutterState {
            fault: Fault::None,
            packets: 0,
            faults: 0,
            generation: 0,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await {
                        forward_counting(client, server, state).await;
                    }
                });
            }
        });
        PacketCutter { port, state, task }
    }

    /// Sets the fault and starts counting the client's packets from zero.
    pub fn arm(&self, fault: Fault) {
        let mut state = self.state.lock().expect("cutter state");
        state.fault = fault;
        state.packets = 0;
        state.faults = 0;
        state.generation += 1;
    }

    /// The client packets forwarded since the last [`arm`](Self::arm).
    pub fn packets(&self) -> usize {
        self.state.lock().expect("cutter state").packets
    }

    /// How many connections the fault hit since the last [`arm`](Self::arm).
    pub fn faults(&self) -> usize {
        self.state.lock().expect("cutter state").faults
    }
}

impl Drop for PacketCutter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The length of the first whole packet at the start of `buffer`, if it holds one.
fn next_packet(buffer: &[u8], version_seen: bool, encrypted: bool) -> Option<usize> {
    if !version_seen {
        return buffer.windows(2).position(|w| w == b"\r\n").map(|at| at + 2);
    }
    let length = u32::from_be_bytes(buffer.get(..4)?.try_into().ok()?) as usize;
    let total = 4 + length + if encrypted { 16 } else { 0 };
    (buffer.len() >= total).then_some(total)
}

async fn forward_counting(
    client: TcpStream,
    server: TcpStream,
    state: std::sync::Arc<std::sync::Mutex<CutterState>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_back = stalled.clone();
    let back = tokio::spawn(async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stop_back.load(std::sync::atomic::Ordering::SeqCst) {
                        // Stalled: swallow, never answer.
                        continue;
                    }
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        client_write
    });
    let (mut version_seen, mut encrypted) = (false, false);
    let mut pending = Vec::new();
    let mut buffer = vec![0u8; 32 * 1024];
    'connection: loop {
        let n = match client_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..n]);
        while let Some(length) = next_packet(&pending, version_seen, encrypted) {
            let packet: Vec<u8> = pending.drain(..length).collect();
            if server_write.write_all(&packet).await.is_err() {
                break 'connection;
            }
            if version_seen && !encrypted && packet.get(5) == Some(&21) {
                encrypted = true; // the client's SSH_MSG_NEWKEYS: its next packets use the new keys
            }
            version_seen = true;
            let (fault, generation) = {
                let mut state = state.lock().expect("cutter state");
                state.packets += 1;
                let hit = match state.fault {
                    Fault::Cut { after } if state.packets == after => Some(true),
                    Fault::Stall { after } if state.packets == after => Some(false),
                    _ => None,
                };
                if hit.is_some() {
                    state.faults += 1;
                }
                (hit, state.generation)
            };
            match fault {
                Some(true) => {
                    back.abort();
                    return; // both halves dropped: the connection is closed
                }
                Some(false) => {
                    stalled.store(true, std::sync::atomic::Ordering::SeqCst);
                    // Hold the connection open and read nothing more from it, until re-armed.
                    let _held = (client_read, server_write);
                    while state.lock().expect("cutter state").generation == generation {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    back.abort();
                    return;
                }
                None => {}
            }
        }
    }
    let _ = server_write.shutdown().await;
    let _ = back.await;
}

/// Connections open at once through a set of [`Relay`]s, and the most there ever were.
#[derive(Debug, Default)]
pub struct OpenConnections {
    now: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    total: std::sync::atomic::AtomicUsize,
}

impl OpenConnections {
    /// The most connections that were open at once.
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn total(&self) -> usize {
        self.total.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A forwarder that holds each new connection for `delay` before connecting it through (a slow
/// link), and counts open connections in a shared [`OpenConnections`].
pub struct Relay {
    /// The port to list in the secret.
    pub port: u16,
    task: JoinHandle<()>,
}

impl Relay {
    /// A relay to `target` on 127.0.0.1.
    pub async fn start(
        target: u16,
        delay: std::time::Duration,
        open: std::sync::Arc<OpenConnections>,
    ) -> Relay {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let open = open.clone();
                tokio::spawn(async move {
                    open.total.fetch_add(1, SeqCst);
                    let now = open.now.fetch_add(1, SeqCst) + 1;
                    open.peak.fetch_max(now, SeqCst);
                    tokio::time::sleep(delay).await;
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        open.now.fetch_sub(1, SeqCst);
                        return;
                    };
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    // Counted open until the client's side ends: what the function holds, not how
                    // long the server takes to answer the close.
                    let up = async {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                        open.now.fetch_sub(1, SeqCst);
                        let _ = server_write.shutdown().await;
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Relay { port, task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A forwarder to `target` that stops forwarding a connection (both ways, holding it open) as
/// soon as the client sends `pattern` — a server that hangs in the middle of a statement. Only
/// plaintext connections can show the pattern.
pub async fn stall_on(target: u16, pattern: &'static [u8]) -> (u16, JoinHandle<()>) {
    fault_on(target, pattern, false).await
}

/// A forwarder to `target` that closes the first connection, both ways, in which the client
/// sends `pattern` (that packet is not forwarded), and forwards everything after: a link cut once,
/// right before a statement reaches the server. Only plaintext connections can show the pattern.
pub async fn cut_on(target: u16, pattern: &'static [u8]) -> (u16, JoinHandle<()>) {
    fault_on(target, pattern, true).await
}

async fn fault_on(target: u16, pattern: &'static [u8], cut: bool) -> (u16, JoinHandle<()>) {
    let cut_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let cut_done = cut_done.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let hung = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let hung_back = hung.clone();
                // Dropping a write half would close the connection: when hung, both halves stay
                // alive and answers are swallowed.
                let back = tokio::spawn(async move {
                    let mut buffer = vec![0u8; 16 * 1024];
                    while let Ok(n) = server_read.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        if !hung_back.load(std::sync::atomic::Ordering::SeqCst)
                            && client_write.write_all(&buffer[..n]).await.is_err()
                        {
                            break;
                        }
                    }
                    std::future::pending::<()>().await
                });
                let mut buffer = vec![0u8; 16 * 1024];
                loop {
                    let n = match client_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let seen = buffer[..n].windows(pattern.len()).any(|w| w == pattern);
                    if seen && cut && !cut_done.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        // Both halves dropped: the connection closes.
                        break;
                    }
                    if seen && !cut {
                        hung.store(true, std::sync::atomic::Ordering::SeqCst);
                        let _held = (client_read, server_write);
                        loop {
                            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        }
                    }
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
                back.abort();
            });
        }
    });
    (port, task)
}
