//! One SSH session to one host: the pinned host key checked before anything else, public-key
//! login, and commands whose exit status is always checked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use secret_rotor::{Deadline, Error};

use crate::hosts::{Host, Pin};

/// The longest a single connect may take, whatever the invocation's deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts the server only if its key is the pinned one; remembers what it saw for the error.
struct PinnedHostKey {
    pin: Pin,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(key.fingerprint(HashAlg::Sha256).to_string());
        }
        Ok(self.pin.matches(key))
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
        secret_rotor::failpoint!("ssh.connect.before");
        let seen = Arc::new(Mutex::new(None));
        let handler = PinnedHostKey {
            pin: host.pin.clone(),
            seen: seen.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(deadline.remaining().max(Duration::from_secs(1))),
            nodelay: true,
            ..Default::default()
        });
        let budget = deadline.remaining_at_most(CONNECT_TIMEOUT);
        let connected = tokio::time::timeout(
            budget,
            client::connect(config, (host.name.as_str(), host.port), handler),
        )
        .await
        .map_err(|_| Error::timeout(format!("connecting to {host}")))?;
        let mut handle = match connected {
            Ok(handle) => handle,
            Err(russh::Error::UnknownKey) => {
                let seen = seen
                    .lock()
                    .ok()
                    .and_then(|s| s.clone())
                    .unwrap_or_else(|| "a certificate".into());
                return Err(Error::target(format!(
                    "{host}: host key {seen} does not match the pinned key: refusing to connect"
                )));
            }
            Err(e) => return Err(Error::transient(format!("{host}: cannot connect: {e}"))),
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
            return Err(Error::target(format!(
                "{host}: user {user} was refused with this key"
            )));
        }
        Ok(Self {
            handle,
            host: host.to_string(),
        })
    }

    /// Runs `command`, feeding it `stdin`, and collects its output and exit status.
    pub async fn run(&mut self, command: &str, stdin: &[u8], deadline: Deadline) -> Result<Output, Error> {
        secret_rotor::failpoint!("ssh.command.before");
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

    /// Closes the session politely.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}
