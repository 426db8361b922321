//! The local stack's MariaDB, seen from the tests: statements as root over the unix socket
//! (through the `mariadb` client), an independent login check (the application's view), the
//! general log, and a proxy that hides the server's TLS capability.

use std::io::Write;
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::stack_setting;

/// The stack's MariaDB server.
#[derive(Debug, Clone)]
pub struct MariaDb {
    /// TCP port on 127.0.0.1 and 127.0.0.2.
    pub port: u16,
    cnf: String,
    log: String,
}

impl MariaDb {
    /// The server; panics with instructions if the stack is down.
    pub fn new() -> Self {
        let setting =
            |name: &str| stack_setting(name).expect("no MariaDB in the local stack: run `scripts/stack up`");
        MariaDb {
            port: setting("ROTOR_MARIADB_PORT").parse().expect("port"),
            cnf: setting("ROTOR_MARIADB_CNF"),
            log: setting("ROTOR_MARIADB_LOG"),
        }
    }

    fn client(&self, args: &[&str], sql: &str) -> Result<String, String> {
        let mut child = Command::new("mariadb")
            .args(args)
            .args(["--batch", "--skip-column-names", "--raw"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("mariadb client: {e}"))?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(sql.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL as root (unix socket authentication); returns the rows, tab-separated.
    pub fn run(&self, sql: &str) -> String {
        self.client(&[&format!("--defaults-file={}", self.cnf), "--user=root"], sql)
            .unwrap_or_else(|e| panic!("mariadb: {sql}: {e}"))
    }

    /// Runs SQL as `user` over TCP with TLS, as an application would.
    pub fn run_as(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let password = format!("--password={password}");
        self.client(
            &[
                "--no-defaults",
                "--protocol=tcp",
                "--host=127.0.0.1",
                "--port",
                &port,
                "--user",
                user,
                &password,
                "--ssl",
            ],
            sql,
        )
    }

    /// Whether `user` logs in with `password`.
    pub fn logs_in(&self, user: &str, password: &str) -> bool {
        self.run_as(user, password, "SELECT 1").is_ok()
    }

    /// `SHOW GRANTS FOR user@host`, normalised: the grantee replaced by `GRANTEE`, the password
    /// hash removed, sorted.
    pub fn normalised_grants(&self, user: &str, host: &str) -> Vec<String> {
        let grantee = format!("{}@{}", ident(user), ident(host));
        let mut lines: Vec<String> = self
            .run(&format!("SHOW GRANTS FOR {grantee}"))
            .lines()
            .map(|line| {
                let mut line = line.replace(&grantee, "GRANTEE");
                if let Some(start) = line.find(" IDENTIFIED BY PASSWORD '") {
                    let rest = &line[start + " IDENTIFIED BY PASSWORD '".len()..];
                    let end = rest.find('\'').map(|i| i + 1).unwrap_or(rest.len());
                    line = format!("{}{}", &line[..start], &rest[end..]);
                }
                line
            })
            .collect();
        lines.sort();
        lines
    }

    /// One column of `mysql.user` for an account.
    pub fn user_column(&self, column: &str, user: &str, host: &str) -> Option<String> {
        let sql = format!(
            "SELECT {column} FROM mysql.user WHERE User = {} AND Host = {}",
            literal(user),
            literal(host)
        );
        self.run(&sql).lines().next().map(str::to_owned)
    }

    /// The general log (every statement the server received).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).expect("general log")).into_owned()
    }

    /// The logins the server refused so far to any of `users` (the general log's "Access
    /// denied" connects).
    pub fn refused_logins(&self, users: &[&str]) -> usize {
        let log = self.log();
        users
            .iter()
            .map(|user| log.matches(&format!("Access denied for user '{user}'@")).count())
            .sum()
    }
}

impl Default for MariaDb {
    fn default() -> Self {
        Self::new()
    }
}

/// Quotes a name for test set-up SQL.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string for test set-up SQL (default SQL mode).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A TCP proxy in front of `port` that clears the TLS capability (CLIENT_SSL) in the server's
/// greeting: the server seen through it does not offer TLS. Returns the proxy's port.
pub async fn tls_hiding_proxy(port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let proxy_port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let mut header = [0u8; 4];
                if server.read_exact(&mut header).await.is_err() {
                    return;
                }
                let length =
                    usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
                let mut greeting = vec![0u8; length];
                if server.read_exact(&mut greeting).await.is_err() {
                    return;
                }
                // protocol version, server version (NUL-terminated), thread id (4), scramble (8),
                // filler (1), then the lower capability flags; CLIENT_SSL is 0x0800.
                if let Some(nul) = greeting.iter().skip(1).position(|b| *b == 0) {
                    let flags = 1 + nul + 1 + 4 + 8 + 1;
                    if let Some(high) = greeting.get_mut(flags + 1) {
                        *high &= !0x08;
                    }
                }
                if client.write_all(&header).await.is_err() || client.write_all(&greeting).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    proxy_port
}
