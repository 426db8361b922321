//! The local stack's PostgreSQL servers, seen from the tests: a superuser session over the unix
//! socket (for setting up roles and reading what the server stores), an independent login check
//! over TCP (the application's view, not the code under test), the server's statement log, and
//! a proxy that refuses TLS (a server that "does not offer TLS").

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::{Client, NoTls};

use crate::stack_setting;

/// One PostgreSQL server of the stack.
#[derive(Debug, Clone)]
pub struct PgServer {
    /// `pg15` or `pg17`.
    pub name: &'static str,
    /// TCP port on 127.0.0.1 (and 127.0.0.2).
    pub port: u16,
    socket: String,
    log: PathBuf,
}

impl PgServer {
    /// Both servers (PostgreSQL 15 and 17); panics with instructions if the stack is down.
    pub fn all() -> Vec<PgServer> {
        ["pg15", "pg17"].into_iter().map(Self::named).collect()
    }

    /// The server called `name`.
    pub fn named(name: &'static str) -> PgServer {
        let key = name.to_ascii_uppercase();
        let setting = |what: &str| {
            stack_setting(&format!("ROTOR_{key}_{what}"))
                .unwrap_or_else(|| panic!("no {name} in the local stack: run `scripts/stack up`"))
        };
        PgServer {
            name,
            port: setting("PORT").parse().expect("port"),
            socket: setting("SOCKET"),
            log: PathBuf::from(setting("LOG")),
        }
    }

    /// A superuser session over the unix socket (trust authentication).
    pub async fn admin(&self) -> Client {
        let (client, connection) = tokio_postgres::Config::new()
            .host(&self.socket)
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect(NoTls)
            .await
            .unwrap_or_else(|e| panic!("{}: superuser connection: {e}", self.name));
        tokio::spawn(connection);
        client
    }

    /// Runs SQL as the superuser.
    pub async fn run(&self, sql: &str) {
        self.admin()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}", self.name));
    }

    /// Whether `user` logs in with `password` (plaintext TCP, independent of the code under
    /// test: this is what an application sees).
    pub async fn logs_in(&self, user: &str, password: &str) -> bool {
        self.run_as(user, password, "SELECT 1").await.is_ok()
    }

    /// Runs SQL as `user`, as an application would.
    pub async fn run_as(&self, user: &str, password: &str, sql: &str) -> Result<(), String> {
        app_session(self.port, user, password)
            .await?
            .simple_query(sql)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Whether a role named `role` exists.
    pub async fn role_exists(&self, role: &str) -> bool {
        self.admin()
            .await
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .expect("pg_roles")
            .is_some()
    }

    /// The stored SCRAM verifier of a role (changes whenever its password is set).
    pub async fn stored_verifier(&self, role: &str) -> Option<String> {
        let row = self
            .admin()
            .await
            .query_opt("SELECT rolpassword FROM pg_authid WHERE rolname = $1", &[&role])
            .await
            .expect("pg_authid");
        row.and_then(|row| row.get(0))
    }

    /// A role's settings (`pg_roles.rolconfig`: `name=value`), sorted.
    pub async fn role_settings(&self, role: &str) -> Vec<String> {
        let row = self
            .admin()
            .await
            .query_one(
                "SELECT coalesce(rolconfig, '{}'::text[]) FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await
            .expect("pg_roles");
        let mut settings: Vec<String> = row.get(0);
        settings.sort();
        settings
    }

    /// The owners of the tables in `schema`, sorted, without repeats.
    pub async fn table_owners(&self, schema: &str) -> Vec<String> {
        self.admin()
            .await
            .query(
                "SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
                &[&schema],
            )
            .await
            .expect("pg_tables")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// Whether `member` is a direct member of `role`.
    pub async fn is_member(&self, member: &str, role: &str) -> bool {
        self.admin()
            .await
            .query_opt(
                "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
                 JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = $1 AND u.rolname = $2",
                &[&role, &member],
            )
            .await
            .expect("pg_auth_members")
            .is_some()
    }

    /// The server's log (every statement, every connection), as text.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).expect("server log")).into_owned()
    }

    /// The logins the server refused so far to any of `users` (its "password authentication
    /// failed" lines).
    pub fn refused_logins(&self, users: &[&str]) -> usize {
        let log = self.log();
        users
            .iter()
            .map(|user| {
                let line = format!("password authentication failed for user \"{user}\"");
                log.matches(&line).count()
            })
            .sum()
    }
}

/// The port of the stack's PgBouncer (on 127.0.0.1, in front of pg15, transaction pooling, TLS
/// allowed with the stack's certificate, SCRAM logins checked against pg15); panics saying how to
/// start it when the stack has none.
pub fn pgbouncer_port() -> u16 {
    let port = stack_setting("ROTOR_PGBOUNCER_PORT").unwrap_or_else(|| {
        panic!(
            "no PgBouncer in the local stack: ROTOR_PGBOUNCER_PORT is neither in the environment nor in \
             .local/stack.env; run `scripts/stack up` (or `scripts/stack up pg15 pgbouncer`)"
        )
    });
    port.parse()
        .unwrap_or_else(|e| panic!("ROTOR_PGBOUNCER_PORT={port}: not a port: {e}"))
}

/// Quotes an identifier for test set-up SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a literal for test set-up SQL.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A session as `user` on 127.0.0.1:`port` (a server, or a pooler in front of one), opened as an
/// application opens it: plaintext, independent of the code under test.
pub async fn app_session(port: u16, user: &str, password: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect(NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(client)
}

/// A TCP proxy in front of `port` that answers every SSLRequest with `N`: the server seen
/// through it does not offer TLS. Returns the proxy's port.
pub async fn tls_refusing_proxy(port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let proxy_port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut first = [0u8; 8];
                if client.read_exact(&mut first).await.is_err() {
                    return;
                }
                let ssl_request = first == [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                if ssl_request {
                    if client.write_all(b"N").await.is_err() {
                        return;
                    }
                } else if server.write_all(&first).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    proxy_port
}

/// A man in the middle that answers "no TLS" to the TLS request and then asks for the password
/// in clear (`AuthenticationCleartextPassword`), as an attacker on the path can. Returns its port
/// and everything a client sent it after the TLS request (the startup message and any password).
pub async fn cleartext_password_phisher() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind phisher");
    let port = listener.local_addr().expect("address").port();
    let captured = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = captured.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 8];
                if client.read_exact(&mut first).await.is_err() {
                    return;
                }
                if first == [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
                    if client.write_all(b"N").await.is_err() {
                        return;
                    }
                } else if let Ok(mut sink) = sink.lock() {
                    sink.extend_from_slice(&first);
                }
                // Whatever startup message comes: ask for the password in clear.
                let mut buffer = [0u8; 4096];
                let mut asked = false;
                loop {
                    match tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buffer))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 => {
                            if let Ok(mut sink) = sink.lock() {
                                sink.extend_from_slice(&buffer[..n]);
                            }
                            if !asked {
                                asked = true;
                                if client.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await.is_err() {
                                    return;
                                }
                            }
                        }
                        _ => return,
                    }
                }
            });
        }
    });
    (port, captured)
}
