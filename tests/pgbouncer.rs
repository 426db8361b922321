//! The PostgreSQL function through PgBouncer: the stack's PgBouncer (transaction pooling, TLS
//! with the stack's certificate, SCRAM logins checked against the server's verifiers) in front of
//! PostgreSQL 15, the secrets naming PgBouncer (`localhost`, verified TLS). Both strategies rotate
//! twice; nothing the function sets stays on the server connections PgBouncer pools for other
//! clients (it sends no `options` startup parameter, which PgBouncer refuses, and bounds its
//! statements with `SET LOCAL statement_timeout`); and a password change left waiting for a lock
//! is cancelled by the server at the step's deadline, not only abandoned by the function.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use rotor_database::{DatabaseEngine, Strategy};
use rotor_postgres::tls::TlsConfigs;
use rotor_postgres::Postgres;
use rotor_tests::fixtures::{postgres_accounts, INITIAL_PASSWORD};
use rotor_tests::postgres_server::{ident, literal, pgbouncer_port, PgServer};
use rotor_tests::*;
use secret_rotor::{Deadline, Passwords, Rotor, Step};
use serde_json::{json, Value};
use tokio_postgres::SimpleQueryMessage;

type PgRotor = Rotor<DatabaseEngine<Postgres>>;

fn pg_rotor(strategy: Strategy, store: Recording) -> PgRotor {
    let ca = PathBuf::from(stack_setting("ROTOR_TLS_CA").expect("no TLS CA: run `scripts/stack up`"));
    let engine = DatabaseEngine::new(Postgres::new(TlsConfigs::new(Some(ca))), strategy);
    Rotor::with_passwords(Ok(engine), store, Passwords::from_lookup(|_| None, ":/@\"'\\"))
}

/// PgBouncer and the server behind it.
struct Bouncer {
    port: u16,
    server: PgServer,
}

impl Bouncer {
    fn new() -> Bouncer {
        Bouncer {
            port: pgbouncer_port(),
            server: PgServer::named("pg15"),
        }
    }

    /// A session through PgBouncer as an application opens it (plaintext, which the stack's
    /// PgBouncer allows: independent of the code under test).
    async fn connect(&self, user: &str, password: &str) -> Result<tokio_postgres::Client, String> {
        rotor_tests::postgres_server::app_session(self.port, user, password).await
    }

    /// Whether `user` logs in with `password` through PgBouncer and runs a query there.
    async fn logs_in(&self, user: &str, password: &str) -> bool {
        match self.connect(user, password).await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    }

    /// The `statement_timeout` of every server connection PgBouncer pools for `user`, by
    /// backend pid. The pooled connections are the server's backends of `user` (in these tests
    /// only PgBouncer opens any, and direct logins come later); as many sessions through
    /// PgBouncer each hold one, in a transaction, so that each reads a different one.
    async fn pooled_statement_timeouts(&self, user: &str, password: &str) -> BTreeMap<i32, String> {
        let pooled: Vec<i32> = self
            .server
            .admin()
            .await
            .query(
                "SELECT pid FROM pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'",
                &[&user],
            )
            .await
            .expect("pg_stat_activity")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(
            !pooled.is_empty(),
            "PgBouncer keeps no server connection of {user}: the function did not go through it"
        );
        let mut sessions = Vec::new();
        for _ in &pooled {
            let session = self
                .connect(user, password)
                .await
                .unwrap_or_else(|e| panic!("{user} through PgBouncer: {e}"));
            session.batch_execute("BEGIN").await.expect("BEGIN");
            sessions.push(session);
        }
        let mut seen = BTreeMap::new();
        for session in &sessions {
            let messages = session
                .simple_query("SELECT pg_backend_pid(); SHOW statement_timeout")
                .await
                .expect("a fresh session's settings");
            let values: Vec<String> = messages
                .iter()
                .filter_map(|message| match message {
                    SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect();
            let pid = values[0].parse().expect("a pid");
            seen.insert(pid, values[1].clone());
        }
        for session in &sessions {
            session.batch_execute("COMMIT").await.expect("COMMIT");
        }
        for pid in &pooled {
            assert!(
                seen.contains_key(pid),
                "{user}: pooled server connection {pid} not reached (seen {seen:?})"
            );
        }
        seen
    }

    /// Nothing the function ran stayed on `user`'s pooled server connections: each has the
    /// server's default `statement_timeout` (0), as a fresh session through PgBouncer sees it.
    async fn assert_pool_untouched(&self, user: &str, password: &str, when: &str) {
        let timeouts = self.pooled_statement_timeouts(user, password).await;
        for (pid, timeout) in &timeouts {
            assert_eq!(
                timeout, "0",
                "{when}: {user}'s pooled server connection {pid} kept a statement_timeout"
            );
        }
    }
}

/// How many of `user`'s backends wait for a lock.
async fn waiting_for_locks(admin: &tokio_postgres::Client, user: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock'",
            &[&user],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

async fn credentials(client: &Client, arn: &str, stage: &str) -> (String, String) {
    let value = value_at(client, arn, stage).await;
    (
        value["username"].as_str().expect("username").to_owned(),
        value["password"].as_str().expect("password").to_owned(),
    )
}

/// A secret for `user` naming PgBouncer, verified TLS to it; `extra` keys merged in.
fn through_pgbouncer(bouncer: &Bouncer, mut value: Value) -> String {
    value["host"] = json!("localhost");
    value["port"] = json!(bouncer.port);
    value["ssl"] = json!(true);
    value.to_string()
}

#[tokio::test]
async fn single_user_rotates_twice_through_pgbouncer_leaving_the_pool_untouched() {
    let bouncer = Bouncer::new();
    let client = secrets_manager_client().await;
    let accounts = postgres_accounts(&bouncer.server, "localhost").await;
    let user = accounts.user.clone();
    let arn = create_secret(
        &client,
        "pgbouncer-single",
        &through_pgbouncer(&bouncer, accounts.value.clone()),
    )
    .await;
    let rotor = pg_rotor(Strategy::SingleUser, Recording::new(client.clone()));
    let mut old = INITIAL_PASSWORD.to_owned();
    for rotation in 1..=2 {
        rotate_fully(&rotor, &client, &arn, &new_token())
            .await
            .unwrap_or_else(|(step, e)| panic!("rotation {rotation} through PgBouncer: {step}: {e}"));
        let (_, new) = credentials(&client, &arn, "AWSCURRENT").await;
        assert_ne!(new, old, "rotation {rotation}: a new password");
        // First, before any other session of the user reaches the server.
        bouncer
            .assert_pool_untouched(&user, &new, &format!("after rotation {rotation}"))
            .await;
        assert!(
            bouncer.logs_in(&user, &new).await,
            "rotation {rotation}: the new password logs in through PgBouncer"
        );
        assert!(
            bouncer.server.logs_in(&user, &new).await,
            "rotation {rotation}: the new password logs in directly"
        );
        assert!(
            !bouncer.logs_in(&user, &old).await,
            "rotation {rotation}: the old password no longer logs in through PgBouncer"
        );
        assert!(
            !bouncer.server.logs_in(&user, &old).await,
            "rotation {rotation}: the old password no longer logs in directly"
        );
        old = new;
    }
    // The password change reached the server through PgBouncer in a transaction bounded by
    // SET LOCAL, the verifier in it, never the password.
    let log = bouncer.server.log();
    let change = format!("ALTER ROLE \"{user}\" WITH PASSWORD E'SCRAM-SHA-256$4096:");
    let lines: Vec<&str> = log.lines().filter(|line| line.contains(&change)).collect();
    assert_eq!(lines.len(), 2, "one password change per rotation: {lines:#?}");
    for line in lines {
        assert!(
            line.contains("BEGIN; SET LOCAL statement_timeout = "),
            "the change is bounded on the server: {line}"
        );
    }
    assert!(!log.contains(old.as_str()), "no password in the server's log");
}

#[tokio::test]
async fn alternating_users_rotate_twice_through_pgbouncer_with_equal_privileges() {
    let bouncer = Bouncer::new();
    let server = &bouncer.server;
    let client = secrets_manager_client().await;
    let accounts = postgres_accounts(server, "localhost").await;
    let (user, master) = (accounts.user.clone(), accounts.master.clone());
    let clone = format!("{user}_clone");
    // What the users must share: a table the original owns, a setting and a role.
    let (table, reports) = (format!("{user}_data"), format!("{user}_reports"));
    server
        .run(&format!(
            "CREATE TABLE {t} (n int); INSERT INTO {t} VALUES (1); ALTER TABLE {t} OWNER TO {u}; \
             CREATE ROLE {r} NOLOGIN; GRANT {r} TO {m} WITH ADMIN OPTION; GRANT {r} TO {u}; \
             ALTER ROLE {u} SET work_mem = '8MB';",
            t = ident(&table),
            u = ident(&user),
            r = ident(&reports),
            m = ident(&master),
        ))
        .await;
    // The master's secret on the same PgBouncer host and port, as the strategy requires.
    let master_arn = create_secret(
        &client,
        "pgbouncer-master",
        &through_pgbouncer(&bouncer, accounts.master_value.clone()),
    )
    .await;
    let arn = create_secret(
        &client,
        "pgbouncer-alternating",
        &through_pgbouncer(&bouncer, accounts.value_with_master(&master_arn)),
    )
    .await;
    let rotor = pg_rotor(Strategy::AlternatingUsers, Recording::new(client.clone()));
    for (rotation, expected) in [(1, &clone), (2, &user)] {
        rotate_fully(&rotor, &client, &arn, &new_token())
            .await
            .unwrap_or_else(|(step, e)| panic!("rotation {rotation} through PgBouncer: {step}: {e}"));
        let (current, password) = credentials(&client, &arn, "AWSCURRENT").await;
        let (previous, previous_password) = credentials(&client, &arn, "AWSPREVIOUS").await;
        assert_eq!(&current, expected, "rotation {rotation}: the users swap");
        assert_ne!(current, previous, "rotation {rotation}");
        // First, before any other session of these users reaches the server.
        let when = format!("after rotation {rotation}");
        bouncer.assert_pool_untouched(&current, &password, &when).await;
        bouncer
            .assert_pool_untouched(&master, "master-Password-1", &when)
            .await;
        for (who, secret) in [(&current, &password), (&previous, &previous_password)] {
            assert!(
                bouncer.logs_in(who, secret).await,
                "rotation {rotation}: {who} logs in through PgBouncer"
            );
            assert!(
                server.logs_in(who, secret).await,
                "rotation {rotation}: {who} logs in directly"
            );
        }
        // Equal privileges: the same settings and roles (the clone's `role` setting apart), and
        // through PgBouncer both users act as the original and read its table.
        let mut clone_settings = server.role_settings(&clone).await;
        clone_settings.retain(|setting| setting != &format!("role={user}"));
        assert_eq!(
            clone_settings,
            server.role_settings(&user).await,
            "rotation {rotation}"
        );
        assert!(
            server.is_member(&user, &reports).await && server.is_member(&clone, &reports).await,
            "rotation {rotation}: both users have the original's roles"
        );
        for (who, secret) in [(&current, &password), (&previous, &previous_password)] {
            let session = bouncer
                .connect(who, secret)
                .await
                .unwrap_or_else(|e| panic!("{who} through PgBouncer: {e}"));
            let rows = session
                .simple_query(&format!(
                    "SELECT current_user::text, (SELECT count(*) FROM {})::text",
                    ident(&table)
                ))
                .await
                .unwrap_or_else(|e| panic!("rotation {rotation}: {who} reads the table: {e}"));
            let row = rows
                .iter()
                .find_map(|message| match message {
                    SimpleQueryMessage::Row(row) => Some((
                        row.get(0).unwrap_or_default().to_owned(),
                        row.get(1).unwrap_or_default().to_owned(),
                    )),
                    _ => None,
                })
                .expect("a row");
            assert_eq!(
                row,
                (user.clone(), "1".to_owned()),
                "rotation {rotation}: {who} acts as {user}"
            );
        }
    }
}

/// Proves the pool check sensitive: a session-level `SET` through a transaction-mode pool stays
/// on the server connection, and the next client, a stranger, inherits it. This is what a
/// function setting its statement timeout for the session would do to every application behind
/// PgBouncer.
#[tokio::test]
async fn a_session_set_through_pgbouncer_would_leak_to_the_next_client() {
    let bouncer = Bouncer::new();
    let user = format!("pgb_leak_{}", random_hex(4));
    bouncer
        .server
        .run(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            ident(&user),
            literal(INITIAL_PASSWORD)
        ))
        .await;
    let session = bouncer
        .connect(&user, INITIAL_PASSWORD)
        .await
        .expect("through PgBouncer");
    session
        .batch_execute("SET statement_timeout = 4321")
        .await
        .expect("SET");
    drop(session);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let timeouts = bouncer.pooled_statement_timeouts(&user, INITIAL_PASSWORD).await;
    assert!(
        timeouts.values().any(|timeout| timeout == "4321ms"),
        "a session SET stays on the pooled connection: {timeouts:?}"
    );
}

/// Another session holds the role's row in pg_authid (an open transaction that changed the
/// role), so the function's ALTER ROLE waits for it. The step fails at its deadline and the
/// server cancels the waiting statement then too (SET LOCAL statement_timeout): nothing of the
/// function's stays queued for the lock after the step, behind PgBouncer, whose client went away.
/// Once the lock is gone the retry completes the rotation.
#[tokio::test]
async fn a_password_change_waiting_for_a_lock_is_cancelled_by_the_server_at_the_deadline() {
    let bouncer = Bouncer::new();
    let server = &bouncer.server;
    let client = secrets_manager_client().await;
    let accounts = postgres_accounts(server, "localhost").await;
    let user = accounts.user.clone();
    let arn = create_secret(
        &client,
        "pgbouncer-locked",
        &through_pgbouncer(&bouncer, accounts.value.clone()),
    )
    .await;
    let rotor = pg_rotor(Strategy::SingleUser, Recording::new(client.clone()));
    let token = begin_rotation(&rotor, &client, &arn).await;

    let holder = server.admin().await;
    holder
        .batch_execute(&format!("BEGIN; ALTER ROLE {} CONNECTION LIMIT 50", ident(&user)))
        .await
        .expect("holding the role's row");
    let cancelled_before = server
        .log()
        .matches("canceling statement due to statement timeout")
        .count();
    let step_deadline = Duration::from_secs(3);
    let started = Instant::now();
    let set_secret = event(Step::SetSecret, &arn, &token);
    let step = rotor.handle(&set_secret, Deadline::after(step_deadline));
    // While the step runs: its statement is seen waiting for the lock.
    let watch = async {
        let admin = server.admin().await;
        let until = Instant::now() + step_deadline;
        while Instant::now() < until {
            if waiting_for_locks(&admin, &user).await > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    let (result, seen_waiting) = tokio::join!(step, watch);
    let elapsed = started.elapsed();
    let err = result.expect_err("the password change cannot take the lock");
    assert!(err.kind().is_retryable(), "{err}");
    assert!(
        elapsed < step_deadline + Duration::from_millis(500),
        "took {elapsed:?}"
    );
    assert!(seen_waiting, "the function's ALTER ROLE waited for the lock");

    // The server gave up on it too, while the lock is still held.
    let admin = server.admin().await;
    let mut still_waiting = 0;
    for _ in 0..40 {
        still_waiting = waiting_for_locks(&admin, &user).await;
        if still_waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        still_waiting, 0,
        "the server still runs the abandoned ALTER ROLE, queued for the lock, after the step's deadline"
    );
    assert!(
        server
            .log()
            .matches("canceling statement due to statement timeout")
            .count()
            > cancelled_before,
        "the server cancelled it (statement_timeout)"
    );
    assert!(
        server.logs_in(&user, INITIAL_PASSWORD).await,
        "nothing changed: the current password still works"
    );

    holder.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    let (_, pending) = credentials(&client, &arn, "AWSPENDING").await;
    run_steps(&rotor, &arn, &token)
        .await
        .unwrap_or_else(|(step, e)| panic!("retry once the lock is gone: {step}: {e}"));
    end_rotation(&client, &arn, &token).await;
    assert!(bouncer.logs_in(&user, &pending).await);
    assert!(!bouncer.logs_in(&user, INITIAL_PASSWORD).await);
}
