//! One SSH session to one host: the pinned host key checked before anything else, public-key
//! login, and commands whose exit status is always checked.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Preferred};
use secret_rotor::{Deadline, Error};

use crate::hosts::Host;

/// The longest a single connect may take, whatever the invocation's deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing a session waits for its connection to end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Accepts the server only if its key matches one of the host's pins; remembers what it saw.
struct PinnedHostKey {
    host: Host,
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(key.clone());
        }
        Ok(self.host.accepts(key))
    }
}

/// What a remote command did.
pub struct Output {
    /// Its exit status (`None`: the server sent none).
    pub status: Option<u32>,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

/// An authenticated session on one host.
pub struct Remote {
    handle: Handle<PinnedHostKey>,
    host: String,
}

impl Remote {
    /// Connects to `host`, checks its key against the pin, and logs in as `user` with `key`.
    pub async fn connect(
        host: &Host,
        user: &str,
        key: &Arc<PrivateKey>,
        deadline: Deadline,
    ) -> Result<Self, Error> {
        secret_rotor::failpoint!("ssh.connect.before")?;
        let mut offered = host.offered_algorithms();
        let mut handle = loop {
            let seen = Arc::new(Mutex::new(None));
            match Self::handshake(host, &offered, seen.clone(), deadline).await? {
                Ok(handle) => break handle,
                Err(russh::Error::UnknownKey) => {
                    let seen = seen.lock().ok().and_then(|s| s.clone());
                    // A pin that does not say its algorithm (a bare fingerprint) may be of another
                    // of the host's keys: ask for the next algorithm before refusing.
                    let presented = seen.as_ref().map(PublicKey::algorithm);
                    let before = offered.len();
                    offered.retain(|a| Some(a) != presented.as_ref());
                    if offered.len() < before && !offered.is_empty() {
                        continue;
                    }
                    let seen = seen.map_or_else(
                        || "a certificate".to_owned(),
                        |key| format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256)),
                    );
                    return Err(Error::target(format!(
                        "{host}: host key {seen} matches none of its pinned keys: refusing to connect"
                    )));
                }
                Err(e) => return Err(Error::transient(format!("{host}: cannot connect: {e}"))),
            }
        };
        let auth = deadline
            .run(format!("logging in to {host}"), async {
                handle
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), None))
                    .await
                    .map_err(|e| Error::transient(format!("{host}: login failed: {e}")))
            })
            .await?;
        if !auth.success() {
            Self {
                handle,
                host: host.to_string(),
            }
            .close()
            .await;
            return Err(Error::target(format!(
                "{host}: user {user} was refused with this key"
            )));
        }
        Ok(Self {
            handle,
            host: host.to_string(),
        })
    }

    /// One key exchange with `host`, offering only `algorithms` for its host key.
    async fn handshake(
        host: &Host,
        algorithms: &[Algorithm],
        seen: Arc<Mutex<Option<PublicKey>>>,
        deadline: Deadline,
    ) -> Result<Result<Handle<PinnedHostKey>, russh::Error>, Error> {
        let handler = PinnedHostKey {
            host: host.clone(),
            seen,
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(deadline.remaining().max(Duration::from_secs(1))),
            nodelay: true,
            preferred: Preferred {
                key: Cow::Owned(algorithms.to_vec()),
                ..Preferred::default()
            },
            ..Default::default()
        });
        let budget = deadline.remaining_at_most(CONNECT_TIMEOUT);
        tokio::time::timeout(
            budget,
            client::connect(config, (host.name.as_str(), host.port), handler),
        )
        .await
        .map_err(|_| Error::timeout(format!("connecting to {host}")))
    }

    /// Runs `command`, feeding it `stdin`, and collects its output and exit status.
    pub async fn run(&mut self, command: &str, stdin: &[u8], deadline: Deadline) -> Result<Output, Error> {
        secret_rotor::failpoint!("ssh.command.before")?;
        let host = self.host.clone();
        let handle = &mut self.handle;
        deadline
            .run(format!("running a command on {host}"), async move {
                let io = |e: russh::Error| Error::transient(format!("{host}: {e}"));
                let mut channel = handle.channel_open_session().await.map_err(io)?;
                channel.exec(true, command).await.map_err(io)?;
                if !stdin.is_empty() {
                    channel.data(stdin).await.map_err(io)?;
                }
                channel.eof().await.map_err(io)?;
                let mut output = Output {
                    status: None,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                };
                while let Some(message) = channel.wait().await {
                    match message {
                        ChannelMsg::Data { data } => output.stdout.extend_from_slice(&data),
                        ChannelMsg::ExtendedData { data, ext: 1 } => output.stderr.extend_from_slice(&data),
                        ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
                        _ => {}
                    }
                }
                Ok(output)
            })
            .await
    }

    /// Runs `command` and requires exit status 0; the error quotes its stderr (never secret:
    /// only public keys travel to hosts).
    pub async fn run_ok(
        &mut self,
        command: &str,
        stdin: &[u8],
        deadline: Deadline,
    ) -> Result<Vec<u8>, Error> {
        let output = self.run(command, stdin, deadline).await?;
        match output.status {
            Some(0) => Ok(output.stdout),
            status => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let stderr: String = stderr.trim().chars().take(300).collect();
                let status = status.map_or("no exit status".to_owned(), |s| format!("exit status {s}"));
                Err(Error::target(format!(
                    "{}: command failed ({status}): {stderr}",
                    self.host
                )))
            }
        }
    }

    /// Closes the session politely and waits (briefly) for its connection to close.
    pub async fn close(mut self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        // The session's own task holds the socket after `disconnect` returns: waiting for the
        // task to end makes the bound on concurrent sessions a bound on open connections too.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, &mut self.handle).await;
    }
}
