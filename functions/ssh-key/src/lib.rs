//! The SSH key rotation engine: an ed25519 key pair, pushed to every host of a fleet.
//!
//! createSecret makes a new key pair whose comment marks it as managed by this function for this
//! secret and version ([`authorized_keys::managed_comment`]). setSecret first reads every host with
//! the current key — the host key must match one of its pins ([`hosts`]) — and plans its edit:
//! the new key with exactly the current key's options, the current line marked as managed. Only
//! when every host was reached and planned does it edit, each host on a session of its own: the
//! new `authorized_keys` is written beside the old one, checked to have arrived whole (length and
//! SHA-256) and the old one unchanged, then renamed over it, mode kept — a cut connection or a
//! killed process leaves the old file or the new one. testSecret logs in with the new key
//! everywhere and checks a command's exit status. After the labels move, the finish hook removes
//! the superseded key from every host (also when finishSecret is retried), or keeps it until the
//! next rotation with `SSH_KEEP_PREVIOUS_KEY`. At most `SSH_MAX_CONCURRENCY` sessions are open at
//! once, each connect and command bounded by the invocation's deadline, and no edit starts too
//! close to it (a retry continues); failures come back as one report naming each host.

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
use secret_rotor::{Context, Deadline, Engine, Error, ErrorKind, Report, SecretJson, SecretString};
use sha2::{Digest, Sha256};

use crate::hosts::{parse_fleet, Host};
use crate::remote::Remote;

/// Each host of a fleet, with no input.
fn every_host(fleet: &[Host]) -> Vec<(&Host, ())> {
    fleet.iter().map(|host| (host, ())).collect()
}

/// The first line `READ_SCRIPT` prints: proof that the function's own command ran, and not a
/// forced `command=` of the key's `authorized_keys` line in its place.
macro_rules! read_marker {
    () => {
        "secret-rotor: authorized_keys follows"
    };
}
const READ_MARKER: &str = read_marker!();

/// Prints the marker, then the user's `authorized_keys` (nothing when missing).
const READ_SCRIPT: &str = concat!(
    "printf '%s\\n' '",
    read_marker!(),
    r#"'; cat "$HOME/.ssh/authorized_keys" 2>/dev/null || true"#
);

/// Replaces `authorized_keys` with stdin, atomically, only if stdin arrived whole (`new_len`
/// bytes hashing to `new_sha256`) and the file still hashes to `old_sha256`. A connection cut
/// before or while the input arrives leaves a short temporary file: it is removed, and the file
/// keeps every line it had.
fn write_script(old_sha256: &str, new_len: usize, new_sha256: &str) -> String {
    format!(
        r#"set -eu
d="$HOME/.ssh"; f="$d/authorized_keys"
umask 077
mkdir -p "$d"
t=$(mktemp "$d/.authorized_keys.XXXXXX")
trap 'rm -f "$t"' EXIT
trap 'exit 129' HUP INT TERM PIPE
cat > "$t"
n=$(wc -c < "$t")
if [ "$n" -ne {new_len} ] || [ "$(sha256sum < "$t" | cut -c1-64)" != "{new_sha256}" ]; then echo "the new authorized_keys arrived incomplete ($n of {new_len} bytes): left unchanged" >&2; exit 5; fi
if [ -e "$f" ]; then chmod "$(stat -c %a "$f")" "$t"; else chmod 600 "$t"; fi
h=$(cat "$f" 2>/dev/null | sha256sum | cut -c1-64)
if [ "$h" != "{old_sha256}" ]; then echo "authorized_keys changed while it was being edited" >&2; exit 4; fi
mv -f "$t" "$f"
trap - EXIT
"#
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Host edits are not started with less than this left before the deadline: the step stops
/// cleanly, and the retry finds the hosts already done.
const EDIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// At most this many hosts are named in one error; the count says how many failed.
const NAMED_FAILURES: usize = 10;

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
        let failed = failures.len();
        let mut named = failures;
        if named.len() > NAMED_FAILURES {
            named.truncate(NAMED_FAILURES);
            named.push(format!("and {} more", failed - NAMED_FAILURES));
        }
        if failed == 0 {
            return Ok(results
                .into_iter()
                .filter_map(|(host, r)| r.ok().map(|t| (host, t)))
                .collect());
        }
        let retryable = results
            .iter()
            .any(|(_, r)| r.as_ref().is_err_and(|e| e.kind().is_retryable()));
        let message = format!("{what}: {failed} of {total} hosts failed: {}", named.join("; "));
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

    /// Logs in to `host` with this secret's own key, reads `authorized_keys` through the
    /// function's own command, and logs out.
    async fn read_authorized_keys_on(&self, host: &Host, deadline: Deadline) -> Result<String, Error> {
        let mut remote = self.login(host, &self.key, deadline).await?;
        let read = read_authorized_keys(&mut remote, deadline).await;
        remote.close().await;
        read
    }

    /// Logs in to `host` with this secret's own key (host key checked against its pin) and
    /// logs out: a preflight that changes nothing.
    pub async fn check_login(&self, host: &Host, deadline: Deadline) -> Result<(), Error> {
        self.login(host, &self.key, deadline).await?.close().await;
        Ok(())
    }
}

/// Reads the user's `authorized_keys` through the function's own command.
async fn read_authorized_keys(remote: &mut Remote, deadline: Deadline) -> Result<String, Error> {
    let output = remote.run(READ_SCRIPT, b"", deadline).await?;
    let text = String::from_utf8(output.stdout)
        .map_err(|_| Error::target("authorized_keys is not UTF-8 text: refusing to edit it"))?;
    match text
        .strip_prefix(READ_MARKER)
        .and_then(|rest| rest.strip_prefix('\n'))
    {
        Some(content) if output.status == Some(0) => Ok(content.to_owned()),
        _ => Err(Error::target(
            "the function's commands do not run with this key (a forced `command=` on its \
             authorized_keys line, or a restricted shell): the key cannot be rotated by this function",
        )),
    }
}

/// Replaces `authorized_keys`, which read as `old`, with `new`: applied only if `new` arrived
/// whole and the file is still `old`.
async fn replace_authorized_keys(
    remote: &mut Remote,
    old: &str,
    new: &str,
    deadline: Deadline,
) -> Result<(), Error> {
    let script = write_script(
        &sha256_hex(old.as_bytes()),
        new.len(),
        &sha256_hex(new.as_bytes()),
    );
    remote.run_ok(&script, new.as_bytes(), deadline).await.map(drop)
}

/// Reads `authorized_keys`, applies `edit`, and writes the result back if it changed.
async fn edit_authorized_keys(
    remote: &mut Remote,
    deadline: Deadline,
    edit: impl FnOnce(&str) -> Option<String>,
) -> Result<bool, Error> {
    let content = read_authorized_keys(remote, deadline).await?;
    let Some(new_content) = edit(&content) else {
        return Ok(false);
    };
    replace_authorized_keys(remote, &content, &new_content, deadline).await?;
    Ok(true)
}

/// What setSecret found on a host: the file as read, and what it must become.
struct PlannedEdit {
    read: String,
    new: String,
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
        let prefix = authorized_keys::managed_prefix(ctx.secret_id());
        let line = pending.public_line()?;
        let (prefix, line) = (prefix.as_str(), line.as_str());
        // Every host read and planned first, each session closed before the next opens (bounded
        // by SSH_MAX_CONCURRENCY): an unreachable host, an unknown host key or a key line that
        // cannot be copied changes nothing anywhere.
        let plans = self
            .on_every_host(
                every_host(&current.fleet),
                "checking every host with the current key (nothing changed on any host)",
                |host, ()| async move {
                    let read = current.read_authorized_keys_on(host, deadline).await?;
                    let planned = authorized_keys::with_key_beside(
                        &read,
                        prefix,
                        &current.public_key,
                        &pending.public_key,
                        line,
                    )
                    .map_err(|refused| Error::target(refused.to_string()))?;
                    Ok(planned.map(|new| PlannedEdit { read, new }))
                },
            )
            .await?;
        let hosts = plans.len();
        let edits: Vec<(&Host, PlannedEdit)> = plans
            .into_iter()
            .filter_map(|(host, plan)| plan.map(|plan| (host, plan)))
            .collect();
        let changed = edits.len();
        // Hosts that already have the key (a retry) need nothing; one that is edited stays done,
        // so a retry after the deadline continues where this attempt stopped.
        self.on_every_host(edits, "adding the new key", |host, plan| async move {
            if deadline.remaining() < EDIT_MARGIN {
                return Err(Error::timeout(format!(
                    "adding the key to {host}: not started so close to the deadline; a retry continues"
                )));
            }
            let mut remote = current.login(host, &current.key, deadline).await?;
            let result = replace_authorized_keys(&mut remote, &plan.read, &plan.new, deadline).await;
            remote.close().await;
            result
        })
        .await?;
        tracing::info!(
            secret_arn = ctx.secret_id(),
            hosts,
            changed,
            "new key authorized on every host"
        );
        Ok(())
    }

    /// setSecret's first phase, run alone: every host reached with the current key (host key
    /// matched against its pins), its `authorized_keys` read by the function's own command, and
    /// the current key's line one that a new key can copy — nothing written.
    async fn preflight(&self, ctx: &Context<'_, Self>, report: &mut Report) {
        let Some(current) = report.record("AWSCURRENT parses", ctx.current().await, |c| {
            format!("user {}, {} hosts", c.username, c.fleet.len())
        }) else {
            return;
        };
        let deadline = ctx.deadline();
        let hosts = self
            .on_every_host(
                every_host(&current.fleet),
                "checking every host with the current key",
                |host, ()| async move {
                    let read = current.read_authorized_keys_on(host, deadline).await?;
                    authorized_keys::current_options(&read, &current.public_key)
                        .map(drop)
                        .map_err(|refused| Error::target(refused.to_string()))
                },
            )
            .await;
        report.record(
            "every host: pinned host key, AWSCURRENT logs in, authorized_keys editable",
            hosts,
            |hosts| format!("{} hosts", hosts.len()),
        );
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
                    if deadline.remaining() < EDIT_MARGIN {
                        return Err(Error::timeout(format!(
                            "removing the key from {host}: not started so close to the deadline; a retry continues"
                        )));
                    }
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
