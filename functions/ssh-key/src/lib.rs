//! The SSH key rotation engine: an ed25519 key pair, pushed to every host of a fleet.
//!
//! createSecret makes a new key pair whose comment marks it as managed by this function for this
//! secret and version ([`authorized_keys::managed_comment`]). setSecret logs in to every host with
//! the current key — the host key must match its pin ([`hosts`]) — and adds the new public key to
//! the user's `authorized_keys`: idempotently, atomically (written beside, checked unchanged, then
//! renamed, mode kept), and only after every host has been reached, so an unknown host key or an
//! unreachable host changes nothing anywhere. testSecret logs in with the new key everywhere and
//! checks a command's exit status. After the labels move, the finish hook removes the superseded
//! key from every host (also when finishSecret is retried), or keeps it until the next rotation
//! with `SSH_KEEP_PREVIOUS_KEY`. Hosts are handled concurrently (`SSH_MAX_CONCURRENCY`), each
//! connect and command bounded by the invocation's deadline; failures come back as one report
//! naming each host.

pub mod authorized_keys;
pub mod hosts;
pub mod remote;

use std::future::Future;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use russh::keys::ssh_key::private::{Ed25519Keypair, KeypairData};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey, PublicKey};
use secret_rotor::zeroize::Zeroizing;
use secret_rotor::{Context, Deadline, Engine, Error, ErrorKind, SecretJson, SecretString};
use sha2::{Digest, Sha256};

use crate::hosts::{parse_fleet, Host};
use crate::remote::Remote;

/// Each host of a fleet, with no input.
fn every_host(fleet: &[Host]) -> Vec<(&Host, ())> {
    fleet.iter().map(|host| (host, ())).collect()
}

/// Reads the user's `authorized_keys` (empty when missing).
const READ_SCRIPT: &str = r#"cat "$HOME/.ssh/authorized_keys" 2>/dev/null || true"#;

/// Replaces `authorized_keys` with stdin, atomically, if it still has the hash we read.
fn write_script(expected_sha256: &str) -> String {
    format!(
        r#"set -eu
d="$HOME/.ssh"; f="$d/authorized_keys"
umask 077
mkdir -p "$d"
t=$(mktemp "$d/.authorized_keys.XXXXXX")
trap 'rm -f "$t"' EXIT
cat > "$t"
if [ -e "$f" ]; then chmod "$(stat -c %a "$f")" "$t"; else chmod 600 "$t"; fi
h=$(cat "$f" 2>/dev/null | sha256sum | cut -c1-64)
if [ "$h" != "{expected_sha256}" ]; then echo "authorized_keys changed while it was being edited" >&2; exit 4; fi
mv -f "$t" "$f"
trap - EXIT
"#
    )
}

/// The engine and its settings (environment variables of the function).
#[derive(Debug, Clone)]
pub struct SshKeyEngine {
    /// `SSH_KEEP_PREVIOUS_KEY`: keep the previous key valid until the next rotation.
    pub keep_previous: bool,
    /// `SSH_MAX_CONCURRENCY`: hosts handled at once (default 10).
    pub max_concurrency: usize,
    /// `SSH_TEST_COMMAND`: what testSecret runs on every host (default `true`).
    pub test_command: String,
}

impl Default for SshKeyEngine {
    fn default() -> Self {
        Self {
            keep_previous: false,
            max_concurrency: 10,
            test_command: "true".to_owned(),
        }
    }
}

impl SshKeyEngine {
    /// Reads the settings from the environment; invalid values are configuration errors.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut engine = Self::default();
        if let Some(value) = lookup("SSH_KEEP_PREVIOUS_KEY") {
            engine.keep_previous = match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "y" | "yes" => true,
                "false" | "0" | "n" | "no" | "" => false,
                _ => {
                    return Err(Error::configuration(format!(
                        "SSH_KEEP_PREVIOUS_KEY={value:?} is not a boolean"
                    )))
                }
            };
        }
        if let Some(value) = lookup("SSH_MAX_CONCURRENCY") {
            engine.max_concurrency = value.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::configuration(format!(
                    "SSH_MAX_CONCURRENCY={value:?} is not a positive whole number"
                ))
            })?;
        }
        if let Some(value) = lookup("SSH_TEST_COMMAND").filter(|v| !v.trim().is_empty()) {
            engine.test_command = value;
        }
        Ok(engine)
    }

    /// Runs `action` on each `(host, input)`, at most `max_concurrency` at once; one report
    /// naming every host that failed.
    async fn on_every_host<'a, S, T, F, Fut>(
        &self,
        items: Vec<(&'a Host, S)>,
        what: &str,
        action: F,
    ) -> Result<Vec<(&'a Host, T)>, Error>
    where
        F: Fn(&'a Host, S) -> Fut,
        Fut: Future<Output = Result<T, Error>> + 'a,
    {
        let total = items.len();
        let mut work = Vec::with_capacity(total);
        for (host, input) in items {
            let future = action(host, input);
            work.push(async move { (host, future.await) });
        }
        let results: Vec<(&Host, Result<T, Error>)> = stream::iter(work)
            .buffer_unordered(self.max_concurrency)
            .collect()
            .await;
        let failures: Vec<String> = results
            .iter()
            .filter_map(|(host, r)| r.as_ref().err().map(|e| format!("[{host}] {e}")))
            .collect();
        if failures.is_empty() {
            return Ok(results
                .into_iter()
                .filter_map(|(host, r)| r.ok().map(|t| (host, t)))
                .collect());
        }
        let retryable = results
            .iter()
            .any(|(_, r)| r.as_ref().is_err_and(|e| e.kind().is_retryable()));
        let message = format!(
            "{what}: {} of {total} hosts failed: {}",
            failures.len(),
            failures.join("; ")
        );
        Err(Error::new(
            if retryable {
                ErrorKind::Transient
            } else {
                ErrorKind::Target
            },
            message,
        ))
    }
}

/// A parsed SSH key secret.
pub struct SshSecret {
    doc: SecretJson,
    /// `username`.
    pub username: String,
    private_pem: SecretString,
    key: Arc<PrivateKey>,
    /// The public key (`public_key`).
    pub public_key: PublicKey,
    /// The fleet (`hosts` with `host_keys`).
    pub fleet: Vec<Host>,
}

impl SshSecret {
    fn parse(value: &SecretString) -> Result<Self, Error> {
        let doc = SecretJson::parse(value)?;
        match doc
            .optional_str("key_type")?
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("ed25519") | Some("ssh-ed25519") => {}
            Some(other) => {
                let shown: String = other.chars().take(20).collect();
                return Err(Error::invalid_secret(format!(
                    "key `key_type` is {shown:?}: only ed25519 is supported (RSA is not offered: the Rust RSA \
                     implementation has a known timing side channel)"
                )));
            }
        }
        let username = doc.required_str("username")?.to_owned();
        let private_pem = doc.required_secret("private_key")?;
        let key = PrivateKey::from_openssh(private_pem.expose())
            .map_err(|_| Error::invalid_secret("key `private_key` is not an OpenSSH private key"))?;
        if key.is_encrypted() {
            return Err(Error::invalid_secret(
                "key `private_key` is encrypted: store it without a passphrase",
            ));
        }
        let public_key = PublicKey::from_openssh(doc.required_str("public_key")?)
            .map_err(|_| Error::invalid_secret("key `public_key` is not an authorized_keys line"))?;
        if public_key.key_data() != key.public_key().key_data() {
            return Err(Error::invalid_secret(
                "key `public_key` is not the public half of `private_key`",
            ));
        }
        let fleet = parse_fleet(doc.get("hosts"), doc.get("host_keys"))?;
        Ok(Self {
            doc,
            username,
            private_pem,
            key: Arc::new(key),
            public_key,
            fleet,
        })
    }

    fn public_line(&self) -> Result<String, Error> {
        self.public_key
            .to_openssh()
            .map_err(|e| Error::invalid_secret(format!("cannot encode the public key: {e}")))
    }

    async fn login(&self, host: &Host, key: &Arc<PrivateKey>, deadline: Deadline) -> Result<Remote, Error> {
        Remote::connect(host, &self.username, key, deadline).await
    }

    /// Logs in to `host` with this secret's own key (host key checked against its pin) and
    /// logs out: a preflight that changes nothing.
    pub async fn check_login(&self, host: &Host, deadline: Deadline) -> Result<(), Error> {
        self.login(host, &self.key, deadline).await?.close().await;
        Ok(())
    }
}

/// Reads `authorized_keys`, applies `edit`, and writes the result back if it changed.
async fn edit_authorized_keys(
    remote: &mut Remote,
    deadline: Deadline,
    edit: impl FnOnce(&str) -> Option<String>,
) -> Result<bool, Error> {
    let content = remote.run_ok(READ_SCRIPT, b"", deadline).await?;
    let content = String::from_utf8(content)
        .map_err(|_| Error::target("authorized_keys is not UTF-8 text: refusing to edit it"))?;
    let Some(new_content) = edit(&content) else {
        return Ok(false);
    };
    let expected: String = Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    remote
        .run_ok(&write_script(&expected), new_content.as_bytes(), deadline)
        .await?;
    Ok(true)
}

impl Engine for SshKeyEngine {
    type Secret = SshSecret;

    fn name(&self) -> &str {
        "ssh-key"
    }

    fn parse(&self, value: &SecretString) -> Result<SshSecret, Error> {
        SshSecret::parse(value)
    }

    fn render(&self, secret: &SshSecret) -> Result<SecretString, Error> {
        let mut doc = secret.doc.clone();
        doc.set_secret("private_key", &secret.private_pem);
        doc.set_str("public_key", &secret.public_line()?);
        Ok(doc.to_secret_string())
    }

    async fn create_pending(&self, ctx: &Context<'_, Self>) -> Result<SshSecret, Error> {
        let current = ctx.current().await?;
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|e| Error::transient(format!("the operating system's random source failed: {e}")))?;
        let mut key = PrivateKey::new(KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)), "")
            .map_err(|e| Error::transient(format!("cannot build the key pair: {e}")))?;
        key.set_comment(authorized_keys::managed_comment(ctx.secret_id(), ctx.token()));
        debug_assert_eq!(key.algorithm(), Algorithm::Ed25519);
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| Error::transient(format!("cannot encode the private key: {e}")))?;
        let public_key = key.public_key().clone();
        Ok(SshSecret {
            doc: current.doc.clone(),
            username: current.username.clone(),
            private_pem: SecretString::from(pem.as_str()),
            key: Arc::new(key),
            public_key,
            fleet: current.fleet.clone(),
        })
    }

    async fn set_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        let (pending, current) = (ctx.pending().await?, ctx.current().await?);
        if pending.username != current.username || pending.fleet != current.fleet {
            return Err(Error::invalid_secret(
                "the pending secret is for another user or other hosts than the current one: refusing to change them",
            ));
        }
        let deadline = ctx.deadline();
        // Every host first: an unknown host key or an unreachable host changes nothing anywhere.
        let sessions = self
            .on_every_host(
                every_host(&current.fleet),
                "logging in with the current key",
                |host, ()| async move { current.login(host, &current.key, deadline).await },
            )
            .await?;
        let line = pending.public_line()?;
        let line = line.as_str();
        let changed = self
            .on_every_host(sessions, "adding the new key", |_, mut remote| async move {
                let result = edit_authorized_keys(&mut remote, deadline, |content| {
                    authorized_keys::with_key(content, &pending.public_key, line)
                })
                .await;
                remote.close().await;
                result
            })
            .await?;
        tracing::info!(
            secret_arn = ctx.secret_id(),
            hosts = changed.len(),
            changed = changed.iter().filter(|(_, changed)| *changed).count(),
            "new key authorized on every host"
        );
        Ok(())
    }

    async fn test_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        let pending = ctx.pending().await?;
        let deadline = ctx.deadline();
        let command = self.test_command.as_str();
        self.on_every_host(
            every_host(&pending.fleet),
            "logging in with the new key",
            |host, ()| async move {
                let mut remote = pending.login(host, &pending.key, deadline).await?;
                let result = remote.run_ok(command, b"", deadline).await;
                remote.close().await;
                result.map(drop)
            },
        )
        .await
        .map(drop)
    }

    async fn after_finish(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        let current = ctx.current().await?;
        let previous = ctx.previous().await?;
        let deadline = ctx.deadline();
        let prefix = authorized_keys::managed_prefix(ctx.secret_id());
        let mut keep = vec![&current.public_key];
        let mut superseded = previous.map(|p| &p.public_key);
        let mut adopt_previous = None;
        if self.keep_previous {
            adopt_previous = superseded.take();
            keep.extend(adopt_previous);
        }
        let (keep, prefix) = (&keep, prefix.as_str());
        let removed = self
            .on_every_host(
                every_host(&current.fleet),
                "removing the superseded key",
                |host, ()| async move {
                    let mut remote = current.login(host, &current.key, deadline).await?;
                    let result = edit_authorized_keys(&mut remote, deadline, |content| {
                        let removed = authorized_keys::without_superseded(content, prefix, keep, superseded);
                        // Grace: the kept previous key, if it predates this function, becomes managed
                        // so that the next rotation removes it.
                        let content_now = removed.as_deref().unwrap_or(content);
                        let adopted =
                            adopt_previous.and_then(|key| authorized_keys::adopt(content_now, prefix, key));
                        adopted.or(removed)
                    })
                    .await;
                    remote.close().await;
                    result
                },
            )
            .await?;
        tracing::info!(
            secret_arn = ctx.secret_id(),
            changed = removed.iter().filter(|(_, changed)| *changed).count(),
            keep_previous = self.keep_previous,
            "superseded keys removed"
        );
        Ok(())
    }
}
