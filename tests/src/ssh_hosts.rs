//! The local stack's two OpenSSH hosts, seen from the tests: each host's `authorized_keys` (its
//! own copy of the user's home), its host key, an independent login check with the `ssh` client
//! (the application's view), and key pairs made by `ssh-keygen`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use crate::{random_hex, stack_setting};

/// One sshd of the stack.
#[derive(Debug, Clone)]
pub struct SshHost {
    /// `127.0.0.1:port`.
    pub address: String,
    /// Port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

/// The user the hosts accept.
pub fn ssh_user() -> String {
    stack_setting("ROTOR_SSH_USER").expect("no SSH hosts in the local stack: run `scripts/stack up`")
}

impl SshHost {
    /// Both hosts.
    pub fn both() -> [SshHost; 2] {
        [Self::named("SSH1"), Self::named("SSH2")]
    }

    /// The first `count` hosts of the stack's fleet (`scripts/stack up fleet`).
    pub fn fleet(count: usize) -> Vec<SshHost> {
        let setting = |what: &str| {
            stack_setting(&format!("ROTOR_FLEET_{what}"))
                .expect("no SSH fleet in the local stack: run `scripts/stack up`")
        };
        let size: usize = setting("SIZE").parse().expect("fleet size");
        assert!(
            count <= size,
            "the stack's fleet has {size} hosts, {count} wanted"
        );
        let base: u16 = setting("BASE_PORT").parse().expect("fleet port");
        let dir = PathBuf::from(setting("DIR"));
        (1..=count)
            .map(|i| {
                let port = base + i as u16;
                SshHost {
                    address: format!("127.0.0.1:{port}"),
                    port,
                    dir: dir.join(format!("h{i:03}")),
                }
            })
            .collect()
    }

    /// What `ssh-keyscan` prints for this host: one `known_hosts` line per host key, in its order.
    pub fn keyscan(&self) -> Vec<String> {
        let out = Command::new("ssh-keyscan")
            .args(["-p", &self.port.to_string(), "127.0.0.1"])
            .stderr(std::process::Stdio::null())
            .output()
            .expect("ssh-keyscan");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// This host's public host key of `kind` (`ed25519`, `ecdsa`, `rsa`), as a line.
    pub fn host_key_of(&self, kind: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("ssh_host_{kind}_key.pub")))
            .expect("host key")
            .trim()
            .to_owned()
    }

    /// `ssh-keygen -lf`'s line for this host's key of `kind` (`256 SHA256:… comment (ECDSA)`).
    pub fn fingerprint_line(&self, kind: &str) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.join(format!("ssh_host_{kind}_key.pub")))
            .output()
            .expect("ssh-keygen -lf");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A public key of `kind` that is not this host's.
    pub fn stranger_key(&self, kind: &str) -> String {
        let path = std::env::temp_dir().join(format!("rotor-stranger-{}", random_hex(6)));
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen");
        assert!(status.success());
        let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("pub"));
        public.trim().to_owned()
    }

    fn named(key: &str) -> SshHost {
        let setting = |what: &str| {
            stack_setting(&format!("ROTOR_{key}_{what}"))
                .expect("no SSH hosts in the local stack: run `scripts/stack up`")
        };
        let port: u16 = setting("PORT").parse().expect("port");
        SshHost {
            address: format!("127.0.0.1:{port}"),
            port,
            dir: PathBuf::from(setting("DIR")),
        }
    }

    fn authorized_keys_path(&self) -> PathBuf {
        self.dir.join("home/.ssh/authorized_keys")
    }

    /// Whether an edit of `authorized_keys` is under way: the function's temporary file
    /// (`.authorized_keys.XXXXXX`, renamed over the file at the end) exists beside it.
    pub fn edit_in_progress(&self) -> bool {
        let Some(dir) = self.authorized_keys_path().parent().map(PathBuf::from) else {
            return false;
        };
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".authorized_keys.")
            })
        })
    }

    /// The user's `authorized_keys` on this host.
    pub fn authorized_keys(&self) -> String {
        std::fs::read_to_string(self.authorized_keys_path()).unwrap_or_default()
    }

    /// Replaces the user's `authorized_keys` on this host (owner and mode as the stack made it,
    /// unless `mode` says otherwise).
    pub fn set_authorized_keys(&self, content: &str, mode: u32) {
        let path = self.authorized_keys_path();
        std::fs::write(&path, content).expect("write authorized_keys");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let user = ssh_user();
        let status = Command::new("chown")
            .arg(format!("{user}:"))
            .arg(&path)
            .status()
            .expect("chown");
        assert!(status.success());
    }

    /// The file mode of `authorized_keys`.
    pub fn authorized_keys_mode(&self) -> u32 {
        std::fs::metadata(self.authorized_keys_path())
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    /// This host's public host key, as an `ssh-ed25519 AAAA… comment` line.
    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("ssh_host_ed25519_key.pub"))
            .expect("host key")
            .trim()
            .to_owned()
    }

    /// The host key's `SHA256:` fingerprint, as `ssh-keygen -lf` prints it.
    pub fn host_key_fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.join("ssh_host_ed25519_key.pub"))
            .output()
            .expect("ssh-keygen -lf");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned()
    }

    /// Whether the `ssh` client logs in to this host with `private_key` and runs `true`.
    pub fn logs_in(&self, private_key: &str) -> bool {
        let port = self.port;
        let key_file = std::env::temp_dir().join(format!("rotor-key-{}", random_hex(6)));
        std::fs::write(&key_file, private_key).expect("key file");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
        let status = Command::new("ssh")
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=5",
            ])
            .arg("-i")
            .arg(&key_file)
            .args(["-p", &port.to_string()])
            .arg(format!("{}@127.0.0.1", ssh_user()))
            .arg("true")
            .stderr(std::process::Stdio::null())
            .status()
            .expect("ssh runs");
        let _ = std::fs::remove_file(&key_file);
        status.success()
    }
}

/// A fresh ed25519 key pair from `ssh-keygen`: (private key PEM, public key line).
pub fn keygen(comment: &str) -> (String, String) {
    let path = std::env::temp_dir().join(format!("rotor-keygen-{}", random_hex(6)));
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let private = std::fs::read_to_string(&path).expect("private key");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    (private, public.trim().to_owned())
}
