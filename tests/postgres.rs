//! The PostgreSQL function end to end: both strategies against real PostgreSQL 15 and 17 (TLS
//! with the stack's CA, every statement logged) and the real Secrets Manager API. Contract §8
//! cases 8–14 and 19, and the application's view after every rotation.

use std::path::PathBuf;

use aws_sdk_secretsmanager::Client;
use rotor_database::{DatabaseEngine, DatabaseSecret, Strategy};
use rotor_postgres::tls::TlsConfigs;
use rotor_postgres::Postgres;
use rotor_tests::postgres_server::{ident, literal, tls_refusing_proxy, PgServer};
use rotor_tests::*;
use secret_rotor::{ErrorKind, Passwords, Rotor, SecretString, Step};
use serde_json::{json, Value};

const INITIAL: &str = "initial-Password-1";

fn ca(name: &str) -> PathBuf {
    PathBuf::from(stack_setting(name).expect("no TLS CA: run `scripts/stack up`"))
}

fn driver() -> Postgres {
    Postgres::new(TlsConfigs::new(Some(ca("ROTOR_TLS_CA"))))
}

type PgRotor = Rotor<DatabaseEngine<Postgres>>;

fn pg_rotor(strategy: Strategy, store: Recording) -> PgRotor {
    let passwords = Passwords::from_lookup(|_| None, ":/@\"'\\");
    Rotor::with_passwords(Ok(DatabaseEngine::new(driver(), strategy)), store, passwords)
}

/// One rotated role on one server, with its secret.
struct Case {
    server: PgServer,
    client: Client,
    store: Recording,
    rotor: PgRotor,
    arn: String,
    master_arn: Option<String>,
}

impl Case {
    /// A role `user` with password `INITIAL`, and its secret (`extra` keys merged in).
    async fn single(server: &PgServer, user: &str, extra: Value) -> Case {
        server
            .run(&format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                ident(user),
                literal(INITIAL)
            ))
            .await;
        Self::with_secret(server, Strategy::SingleUser, user, extra, None).await
    }

    /// A role `user`, a non-superuser master with CREATEROLE (as on RDS), and the secret.
    /// On PostgreSQL 16+ the master gets ADMIN OPTION on the role when `grant_admin`.
    async fn alternating(server: &PgServer, user: &str, grant_admin: bool) -> Case {
        let master = format!("master_{}", random_hex(4));
        server
            .run(&format!(
                "CREATE ROLE {u} LOGIN PASSWORD {p}; CREATE ROLE {m} LOGIN CREATEROLE PASSWORD {mp};",
                u = ident(user),
                p = literal(INITIAL),
                m = ident(&master),
                mp = literal("master-Password-1"),
            ))
            .await;
        if grant_admin && server.name != "pg15" {
            server
                .run(&format!(
                    "GRANT {} TO {} WITH ADMIN OPTION",
                    ident(user),
                    ident(&master)
                ))
                .await;
        }
        let client = secrets_manager_client().await;
        let master_value = json!({"engine": "postgres", "host": "127.0.0.1", "port": server.port,
                                  "username": master, "password": "master-Password-1"});
        let master_arn = create_secret(&client, "pg-master", &master_value.to_string()).await;
        Self::with_secret(
            server,
            Strategy::AlternatingUsers,
            user,
            json!({"masterarn": master_arn}),
            Some(master_arn),
        )
        .await
    }

    async fn with_secret(
        server: &PgServer,
        strategy: Strategy,
        user: &str,
        extra: Value,
        master_arn: Option<String>,
    ) -> Case {
        let client = secrets_manager_client().await;
        let mut value = json!({"engine": "postgres", "host": "127.0.0.1", "port": server.port.to_string(),
                               "username": user, "password": INITIAL, "dbname": "postgres",
                               "application": {"team": "payments"}});
        for (key, extra) in extra.as_object().expect("extra keys").clone() {
            value[key] = extra;
        }
        let arn = create_secret(&client, "pg", &value.to_string()).await;
        let store = Recording::new(client.clone());
        let rotor = pg_rotor(strategy, store.clone());
        Case {
            server: server.clone(),
            client,
            store,
            rotor,
            arn,
            master_arn,
        }
    }

    async fn rotate(&self) -> Result<(), (Step, secret_rotor::Error)> {
        rotate_fully(&self.rotor, &self.client, &self.arn, &new_token())
            .await
            .map(drop)
    }

    async fn credentials(&self, stage: &str) -> (String, String) {
        let value = value_at(&self.client, &self.arn, stage).await;
        (
            value["username"].as_str().unwrap().to_owned(),
            value["password"].as_str().unwrap().to_owned(),
        )
    }

    async fn logs_in(&self, stage: &str) -> bool {
        let (user, password) = self.credentials(stage).await;
        self.server.logs_in(&user, &password).await
    }

    /// Every connection this function made for `user` was encrypted.
    fn assert_connections_encrypted(&self, user: &str) {
        let log = self.server.log();
        let ours: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("connection authorized") && l.contains("application_name=secret-rotor"))
            .filter(|l| l.contains(&format!("user={user} ")))
            .collect();
        assert!(
            !ours.is_empty(),
            "{}: no connection of the function as {user} in the log",
            self.server.name
        );
        for line in ours {
            assert!(
                line.contains("SSL enabled"),
                "{}: unencrypted connection: {line}",
                self.server.name
            );
        }
    }
}

#[tokio::test]
async fn single_user_rotates_twice_over_verified_tls_without_plaintext_in_the_log() {
    for server in PgServer::all() {
        let user = format!("app_{}", random_hex(4));
        let case = Case::single(&server, &user, json!({"ssl": true})).await;
        let mut generated = Vec::new();
        for rotation in 1..=2 {
            case.rotate()
                .await
                .unwrap_or_else(|(step, e)| panic!("{} rotation {rotation}: {step}: {e}", server.name));
            assert!(
                case.logs_in("AWSCURRENT").await,
                "{}: AWSCURRENT logs in",
                server.name
            );
            assert!(
                !case.logs_in("AWSPREVIOUS").await,
                "{}: single user: AWSPREVIOUS no longer does",
                server.name
            );
            generated.push(case.credentials("AWSCURRENT").await.1);
        }
        let current = value_at(&case.client, &case.arn, "AWSCURRENT").await;
        assert_eq!(
            current["application"],
            json!({"team": "payments"}),
            "unknown keys kept"
        );
        assert_eq!(
            current["port"],
            json!(server.port.to_string()),
            "port kept as a string"
        );
        case.assert_connections_encrypted(&user);
        let log = server.log();
        assert!(
            log.contains(&format!(
                "ALTER ROLE \"{user}\" WITH PASSWORD E'SCRAM-SHA-256$4096:"
            )),
            "{}: the statement log shows the verifier",
            server.name
        );
        for password in &generated {
            assert!(
                !log.contains(password.as_str()),
                "{}: a new password reached the server log",
                server.name
            );
        }
    }
}

#[tokio::test]
async fn alternating_users_rotate_and_keep_the_clone_a_member() {
    for server in PgServer::all() {
        let user = format!("app_{}", random_hex(4));
        let clone = format!("{user}_clone");
        let case = Case::alternating(&server, &user, true).await;
        let table = ident(&format!("{user}_data"));
        server
            .run(&format!(
                "CREATE TABLE {table} (n int); ALTER TABLE {table} OWNER TO {}",
                ident(&user)
            ))
            .await;

        case.rotate()
            .await
            .unwrap_or_else(|(step, e)| panic!("{}: {step}: {e}", server.name));
        assert_eq!(case.credentials("AWSCURRENT").await.0, clone);
        assert!(
            case.logs_in("AWSCURRENT").await,
            "{}: the clone logs in",
            server.name
        );
        assert!(
            case.logs_in("AWSPREVIOUS").await,
            "{}: alternating: AWSPREVIOUS still logs in",
            server.name
        );
        assert!(
            server.is_member(&clone, &user).await,
            "{}: the clone is a member of the original",
            server.name
        );
        let (_, clone_password) = case.credentials("AWSCURRENT").await;
        let read = server
            .run_as(&clone, &clone_password, &format!("SELECT count(*) FROM {table}"))
            .await;
        assert!(
            read.is_ok(),
            "{}: the clone has the original's privileges: {read:?}",
            server.name
        );

        case.rotate()
            .await
            .unwrap_or_else(|(step, e)| panic!("{}: {step}: {e}", server.name));
        assert_eq!(
            case.credentials("AWSCURRENT").await.0,
            user,
            "app -> app_clone -> app"
        );
        assert!(case.logs_in("AWSCURRENT").await && case.logs_in("AWSPREVIOUS").await);

        // Membership is checked at every rotation: a revoked grant comes back.
        server
            .run(&format!("REVOKE {} FROM {}", ident(&user), ident(&clone)))
            .await;
        case.rotate()
            .await
            .unwrap_or_else(|(step, e)| panic!("{}: {step}: {e}", server.name));
        assert_eq!(case.credentials("AWSCURRENT").await.0, clone);
        assert!(
            server.is_member(&clone, &user).await,
            "{}: membership restored",
            server.name
        );
        let (_, password) = case.credentials("AWSCURRENT").await;
        assert!(!server.log().contains(password.as_str()));
        case.assert_connections_encrypted(&clone);
    }
}

#[tokio::test]
async fn postgres_16_master_without_admin_option_gets_the_grant_that_fixes_it() {
    let server = PgServer::named("pg17");
    let user = format!("app_{}", random_hex(4));
    let case = Case::alternating(&server, &user, false).await;
    let (step, err) = case.rotate().await.unwrap_err();
    assert_eq!(step, Step::SetSecret);
    assert_eq!(err.kind(), ErrorKind::Target);
    assert!(
        err.to_string()
            .contains(&format!("GRANT \"{user}\" TO \"master_")),
        "{err}"
    );
    assert!(err.to_string().contains("WITH ADMIN OPTION"), "{err}");
    assert!(case.logs_in("AWSCURRENT").await);
}

#[tokio::test]
async fn case08_clone_name_over_the_identifier_limit_is_refused() {
    for server in PgServer::all() {
        let user = format!("u{}", "x".repeat(52)) + &random_hex(4); // 61 bytes, clone would be 67
        let case = Case::alternating(&server, &user, true).await;
        let token = new_token();
        start_rotation(&case.client, &case.arn, &token).await;
        let err = case
            .rotor
            .handle(&event(Step::CreateSecret, &case.arn, &token), deadline())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSecret);
        assert!(err.to_string().contains("PostgreSQL allows 63"), "{err}");
        assert_eq!(writes(&case.store.calls()), 0);
    }
}

#[tokio::test]
async fn case09_set_again_when_pending_logs_in_changes_nothing() {
    let cases = PgServer::all().into_iter().flat_map(|server| {
        [
            (server.clone(), Strategy::SingleUser),
            (server, Strategy::AlternatingUsers),
        ]
    });
    for (server, strategy) in cases {
        let user = format!("app_{}", random_hex(4));
        let case = match strategy {
            Strategy::SingleUser => Case::single(&server, &user, json!({})).await,
            Strategy::AlternatingUsers => Case::alternating(&server, &user, true).await,
        };
        let token = new_token();
        start_rotation(&case.client, &case.arn, &token).await;
        case.rotor
            .handle(&event(Step::CreateSecret, &case.arn, &token), deadline())
            .await
            .unwrap();
        case.rotor
            .handle(&event(Step::SetSecret, &case.arn, &token), deadline())
            .await
            .unwrap();
        let pending_user = value_at(&case.client, &case.arn, "AWSPENDING").await["username"]
            .as_str()
            .unwrap()
            .to_owned();
        let stored = server.stored_verifier(&pending_user).await;
        case.rotor
            .handle(&event(Step::SetSecret, &case.arn, &token), deadline())
            .await
            .unwrap();
        assert_eq!(
            server.stored_verifier(&pending_user).await,
            stored,
            "{strategy}: no DDL on a retried setSecret"
        );
    }
}

/// A rotation whose four steps run in one process makes the contract's minimum of Secrets
/// Manager calls (setSecret and testSecret read nothing: the values createSecret read and wrote
/// are kept), and single user makes no login the server refuses. Alternating users keep one:
/// the contract's probe of the pending credentials (docs/testing.md, "Secrets Manager calls and logins").
#[tokio::test]
async fn one_process_rotates_with_the_minimum_of_calls_and_no_needless_refused_login() {
    for server in PgServer::all() {
        for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
            let user = format!("app_{}", random_hex(4));
            let clone = format!("{user}_clone");
            let case = match strategy {
                Strategy::SingleUser => Case::single(&server, &user, json!({})).await,
                Strategy::AlternatingUsers => Case::alternating(&server, &user, true).await,
            };
            // The first rotation of alternating users creates the clone; measure the second.
            case.rotate().await.unwrap();
            let from = calls_so_far(&case.store.calls());
            let refused = server.refused_logins(&[&user, &clone]);
            case.rotate().await.unwrap();
            let master_read = usize::from(strategy == Strategy::AlternatingUsers);
            assert_eq!(
                operations_since(&case.store.calls(), from),
                minimum_calls(true, master_read),
                "{} {strategy}",
                server.name
            );
            assert_eq!(
                server.refused_logins(&[&user, &clone]) - refused,
                master_read,
                "{} {strategy}: refused logins in one rotation",
                server.name
            );
            assert!(case.logs_in("AWSCURRENT").await);
            assert!(
                case.rotor.cache().is_empty(),
                "nothing kept once the rotation finished"
            );
        }
    }
}

#[tokio::test]
async fn case10_pending_for_another_user_or_host_is_refused_without_ddl() {
    for server in PgServer::all() {
        for (key, value) in [("username", json!("postgres")), ("host", json!("10.1.2.3"))] {
            let user = format!("app_{}", random_hex(4));
            let case = Case::single(&server, &user, json!({})).await;
            let token = new_token();
            start_rotation(&case.client, &case.arn, &token).await;
            let mut pending = value_at(&case.client, &case.arn, "AWSCURRENT").await;
            pending[key] = value;
            pending["password"] = json!("attacker-Chosen-1");
            case.client
                .put_secret_value()
                .secret_id(&case.arn)
                .client_request_token(&token)
                .secret_string(pending.to_string())
                .version_stages("AWSPENDING")
                .send()
                .await
                .expect("PutSecretValue");
            let before = (
                server.stored_verifier(&user).await,
                server.stored_verifier("postgres").await,
            );
            let err = case
                .rotor
                .handle(&event(Step::SetSecret, &case.arn, &token), deadline())
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidSecret, "{key}");
            assert!(err.to_string().contains("refusing"), "{err}");
            assert!(!err.to_string().contains("attacker-Chosen-1"));
            assert_eq!(
                (
                    server.stored_verifier(&user).await,
                    server.stored_verifier("postgres").await
                ),
                before
            );
        }
    }
}

#[tokio::test]
async fn case11_single_user_falls_back_to_previous_and_fails_clearly_without_it() {
    for server in PgServer::all() {
        let user = format!("app_{}", random_hex(4));
        let case = Case::single(&server, &user, json!({})).await;
        case.rotate().await.expect("first rotation");
        // A restore from a snapshot taken before that rotation: the server has the old password.
        server
            .run(&format!(
                "ALTER ROLE {} PASSWORD {}",
                ident(&user),
                literal(INITIAL)
            ))
            .await;
        assert!(!case.logs_in("AWSCURRENT").await);
        case.rotate().await.expect("rotation through AWSPREVIOUS");
        assert!(case.logs_in("AWSCURRENT").await);

        server
            .run(&format!(
                "ALTER ROLE {} PASSWORD {}",
                ident(&user),
                literal("changed-Elsewhere-1")
            ))
            .await;
        let (step, err) = case.rotate().await.unwrap_err();
        assert_eq!(step, Step::SetSecret);
        assert_eq!(err.kind(), ErrorKind::Target);
        assert!(
            err.to_string()
                .contains("unable to log in with previous, current or pending"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn case12_alternating_current_refused_means_master_never_read() {
    for server in PgServer::all() {
        let user = format!("app_{}", random_hex(4));
        let case = Case::alternating(&server, &user, true).await;
        server
            .run(&format!(
                "ALTER ROLE {} PASSWORD {}",
                ident(&user),
                literal("changed-Elsewhere-1")
            ))
            .await;
        let (step, err) = case.rotate().await.unwrap_err();
        assert_eq!(step, Step::SetSecret);
        assert!(err.to_string().contains("master secret was not used"), "{err}");
        let master_arn = case.master_arn.as_deref().unwrap();
        assert_eq!(
            calls_about(&case.store.calls(), master_arn),
            0,
            "the master secret was never read"
        );
        assert!(
            server.stored_verifier(&format!("{user}_clone")).await.is_none(),
            "no clone created"
        );
    }
}

#[tokio::test]
async fn case13_usernames_are_identifiers_never_sql() {
    let names = [
        r#"We"ird; DROP ROLE postgres; --"#,
        "Ünïcødé Üser ✓",
        "UPPER Case",
        r"back\slash 'quote'",
    ];
    for server in PgServer::all() {
        for (i, name) in names.iter().enumerate() {
            let user = format!("{name} {}", random_hex(2));
            let case = if i % 2 == 0 {
                Case::single(&server, &user, json!({})).await
            } else {
                Case::alternating(&server, &user, true).await
            };
            case.rotate()
                .await
                .unwrap_or_else(|(step, e)| panic!("{} {user:?}: {step}: {e}", server.name));
            assert!(case.logs_in("AWSCURRENT").await, "{} {user:?}", server.name);
        }
        let survived = server
            .admin()
            .await
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = 'postgres'", &[])
            .await;
        assert!(
            survived.expect("query").is_some(),
            "{}: no name was run as SQL",
            server.name
        );
    }
}

#[tokio::test]
async fn case14_passwords_with_every_allowed_character_work() {
    let every: String = (33u8..127).map(char::from).collect(); // all 94 printable ASCII characters
    for server in PgServer::all() {
        for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
            let user = format!("app_{}", random_hex(4));
            let mut case = match strategy {
                Strategy::SingleUser => Case::single(&server, &user, json!({})).await,
                Strategy::AlternatingUsers => Case::alternating(&server, &user, true).await,
            };
            let store = Recording::new(case.client.clone()).with_fixed_password(&every);
            let passwords = Passwords::from_lookup(
                |name| match name {
                    "EXCLUDE_CHARACTERS" => Some(String::new()),
                    "PASSWORD_LENGTH" => Some("94".to_owned()),
                    _ => None,
                },
                "",
            );
            case.rotor = Rotor::with_passwords(Ok(DatabaseEngine::new(driver(), strategy)), store, passwords);
            case.rotate()
                .await
                .unwrap_or_else(|(step, e)| panic!("{} {strategy}: {step}: {e}", server.name));
            let (user, password) = case.credentials("AWSCURRENT").await;
            assert_eq!(password, every);
            assert!(server.logs_in(&user, &every).await, "{} {strategy}", server.name);
        }
    }
}

/// Name, driver (trust roots), host, port, secret keys, expected: encrypted or error text.
type TlsCase<'a> = tls_matrix::Case<'a, Postgres>;

/// A man in the middle that declines TLS and asks for the password in clear gets nothing under
/// the default, not even the user name; only an explicit `sslmode: disable` talks to it.
#[tokio::test]
async fn a_server_that_declines_tls_and_asks_for_a_cleartext_password_gets_nothing() {
    let (port, captured) = rotor_tests::postgres_server::cleartext_password_phisher().await;
    let user = format!("phished_{}", random_hex(4));
    for keys in [
        json!({}),
        json!({"ssl": true}),
        json!({"sslmode": "prefer"}),
        json!({"sslmode": "require"}),
    ] {
        let outcome = tls_matrix::login(
            &driver(),
            "postgres",
            ("127.0.0.1", port),
            (&user, INITIAL),
            keys.clone(),
            |s| s.tls,
        )
        .await;
        let err = outcome.expect_err("no login through the phisher");
        assert!(err.to_string().contains("does not offer TLS"), "{keys}: {err}");
        assert_eq!(err.kind(), ErrorKind::Target, "{keys}: {err}");
        let seen = captured.lock().unwrap().clone();
        assert!(
            seen.is_empty(),
            "{keys}: the client sent {} bytes after the TLS request",
            seen.len()
        );
    }
    // Explicit plaintext: the startup message goes (the user asked for it), and a login error.
    let _ = tls_matrix::login(
        &driver(),
        "postgres",
        ("127.0.0.1", port),
        (&user, INITIAL),
        json!({"sslmode": "disable"}),
        |s| s.tls,
    )
    .await;
    let seen = String::from_utf8_lossy(&captured.lock().unwrap()).into_owned();
    assert!(seen.contains(&user), "sslmode disable talks in clear, as asked");
}

#[tokio::test]
async fn case19_tls_matrix() {
    for server in PgServer::all() {
        let user = format!("tls_{}", random_hex(4));
        server
            .run(&format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                ident(&user),
                literal(INITIAL)
            ))
            .await;
        let trusted = driver();
        let wrong_ca = Postgres::new(TlsConfigs::new(Some(ca("ROTOR_TLS_OTHER_CA"))));
        let no_tls_port = tls_refusing_proxy(server.port).await;
        let port = server.port;
        let ip = "127.0.0.1";
        let wrong_name = "127.0.0.2"; // served, but not in the certificate
        let tls = true;
        let plain = false;
        let mut cases: Vec<TlsCase> = vec![
            ("default, trusted CA", &trusted, ip, port, json!({}), Ok(tls)),
            (
                "default, wrong CA: no downgrade",
                &wrong_ca,
                ip,
                port,
                json!({}),
                Err("TLS failed"),
            ),
            (
                "default, wrong host name",
                &trusted,
                wrong_name,
                port,
                json!({}),
                Err("TLS failed"),
            ),
            (
                "unrecognised ssl value = default",
                &trusted,
                ip,
                port,
                json!({"ssl": "maybe"}),
                Ok(tls),
            ),
            ("ssl true", &trusted, ip, port, json!({"ssl": true}), Ok(tls)),
            (
                "ssl \"true\", wrong CA",
                &wrong_ca,
                ip,
                port,
                json!({"ssl": "true"}),
                Err("TLS failed"),
            ),
            (
                "ssl true, server without TLS",
                &trusted,
                ip,
                no_tls_port,
                json!({"ssl": true}),
                Err("does not offer TLS, and this secret requires it"),
            ),
            ("ssl false", &trusted, ip, port, json!({"ssl": false}), Ok(plain)),
            (
                "ssl \"false\"",
                &wrong_ca,
                ip,
                port,
                json!({"ssl": "false"}),
                Ok(plain),
            ),
            (
                "sslmode disable",
                &trusted,
                ip,
                port,
                json!({"sslmode": "disable"}),
                Ok(plain),
            ),
            (
                "sslmode prefer, wrong CA",
                &wrong_ca,
                ip,
                port,
                json!({"sslmode": "prefer"}),
                Err("TLS failed"),
            ),
            (
                "sslmode require, wrong CA",
                &wrong_ca,
                ip,
                port,
                json!({"sslmode": "require"}),
                Ok(tls),
            ),
            (
                "sslmode require, no TLS",
                &trusted,
                ip,
                no_tls_port,
                json!({"sslmode": "require"}),
                Err("does not offer TLS, and this secret requires it"),
            ),
            (
                "sslmode verify-ca, wrong host name",
                &trusted,
                wrong_name,
                port,
                json!({"sslmode": "verify-ca"}),
                Ok(tls),
            ),
            (
                "sslmode verify-ca, wrong CA",
                &wrong_ca,
                ip,
                port,
                json!({"sslmode": "verify-ca"}),
                Err("TLS failed"),
            ),
            (
                "sslmode verify-full, localhost",
                &trusted,
                "localhost",
                port,
                json!({"sslmode": "verify-full"}),
                Ok(tls),
            ),
            (
                "sslmode verify-full, wrong name",
                &trusted,
                wrong_name,
                port,
                json!({"sslmode": "verify-full"}),
                Err("TLS failed"),
            ),
            (
                "sslmode wins over ssl",
                &trusted,
                ip,
                port,
                json!({"ssl": false, "sslmode": "verify-full"}),
                Ok(tls),
            ),
            (
                "sslmode bogus",
                &trusted,
                ip,
                port,
                json!({"sslmode": "allow"}),
                Err("key `sslmode` must be"),
            ),
        ];
        cases.extend(tls_matrix::without_tls(&trusted, ip, no_tls_port));
        for (name, driver, host, port, keys, expected) in cases {
            let outcome = tls_matrix::login(driver, "postgres", (host, port), (&user, INITIAL), keys, |s| {
                s.tls
            })
            .await;
            tls_matrix::check(&format!("{}: {name}", server.name), expected, outcome);
        }
        // A wrong password costs one login attempt, not a second one in plaintext.
        let before = server
            .log()
            .matches(&format!("password authentication failed for user \"{user}\""))
            .count();
        let value =
            json!({"engine": "postgres", "host": ip, "port": port, "username": user, "password": "wrong-1"});
        let secret =
            DatabaseSecret::parse(&SecretString::from(value.to_string()), &["postgres"], 5432).unwrap();
        use rotor_database::Database;
        let err = trusted
            .login(&secret, deadline())
            .await
            .err()
            .expect("wrong password refused");
        assert_eq!(err.kind(), ErrorKind::Target, "{err}");
        let after = server
            .log()
            .matches(&format!("password authentication failed for user \"{user}\""))
            .count();
        assert_eq!(after - before, 1, "{}: exactly one login attempt", server.name);
    }
}

#[tokio::test]
async fn literals_and_identifiers_round_trip_through_the_server() {
    use rotor_postgres::sql::{quote_identifier, quote_literal};
    let every: String = (1u8..127).map(char::from).collect::<String>() + "é✓'\\\"";
    for server in PgServer::all() {
        let admin = server.admin().await;
        for mode in ["on", "off"] {
            admin
                .batch_execute(&format!("SET standard_conforming_strings = {mode}"))
                .await
                .unwrap();
            let row = admin
                .query_one(&format!("SELECT {}::text", quote_literal(&every).unwrap()), &[])
                .await
                .unwrap();
            assert_eq!(
                row.get::<_, String>(0),
                every,
                "{}: standard_conforming_strings {mode}",
                server.name
            );
        }
        // Identifiers are limited to 63 bytes: the awkward characters only.
        let identifier = format!("We\"ird \\ 'q' é✓;-- $1 % {}", random_hex(2));
        let row = admin
            .query_one(
                &format!("SELECT 1 AS {}", quote_identifier(&identifier).unwrap()),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.columns()[0].name(), identifier, "{}", server.name);
    }
}

/// The function sets passwords with the master's privileges: a secret whose alternate is the
/// master itself, or whose pending user is a superuser, is refused and changes nothing.
#[tokio::test]
async fn alternating_users_never_rotate_the_master_or_a_superuser() {
    let server = PgServer::named("pg17");
    let client = secrets_manager_client().await;
    let fixture = rotor_tests::fixtures::postgres(&server, "127.0.0.1", json!({})).await;
    let master_arn = fixture.master_arn.clone().unwrap();
    let master = value_at(&client, &master_arn, "AWSCURRENT").await;
    let master_user = master["username"].as_str().unwrap().to_owned();
    let master_password = master["password"].as_str().unwrap().to_owned();
    // The master's "clone" as the rotated user: its alternate is the master.
    let decoy = format!("{master_user}_clone");
    let superuser_clone = format!("{}_clone", fixture.user);
    server
        .run(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}; CREATE ROLE {} LOGIN SUPERUSER PASSWORD 'super-Password-1';",
            ident(&decoy),
            literal(INITIAL),
            ident(&superuser_clone)
        ))
        .await;
    let decoy_value = json!({"engine": "postgres", "host": "127.0.0.1", "port": server.port, "username": decoy,
                             "password": INITIAL, "masterarn": master_arn});
    let decoy_arn = create_secret(&client, "pg-decoy", &decoy_value.to_string()).await;
    for (arn, expected) in [
        (&decoy_arn, "refusing to rotate the master into itself"),
        (&fixture.arn, "is a superuser"),
    ] {
        let store = Recording::new(client.clone());
        let rotor = pg_rotor(Strategy::AlternatingUsers, store.clone());
        let (step, err) = rotate_fully(&rotor, &client, arn, &new_token())
            .await
            .unwrap_err();
        assert_eq!(
            (step, err.kind()),
            (Step::SetSecret, ErrorKind::InvalidSecret),
            "{err}"
        );
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert!(
        server.logs_in(&master_user, &master_password).await,
        "the master's password is unchanged"
    );
    assert!(
        server.logs_in(&superuser_clone, "super-Password-1").await,
        "the superuser's password is unchanged"
    );
}

/// The clone's transaction hangs on the server: the step fails at its deadline, and the
/// ROLLBACK after it is bounded by the same deadline instead of waiting forever.
#[tokio::test]
async fn a_server_hanging_in_the_clone_transaction_fails_the_step_within_its_deadline() {
    let server = PgServer::named("pg17");
    let client = secrets_manager_client().await;
    let fixture = rotor_tests::fixtures::postgres(&server, "127.0.0.1", json!({})).await;
    let (port, _stall) = rotor_tests::net::stall_on(server.port, b"BEGIN;").await;
    let arn = alternating_through(&client, &fixture, port).await;
    let rotor = pg_rotor(Strategy::AlternatingUsers, Recording::new(client.clone()));
    let token = begin_rotation(&rotor, &client, &arn).await;
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        rotor.handle(
            &event(Step::SetSecret, &arn, &token),
            secret_rotor::Deadline::after(std::time::Duration::from_secs(3)),
        ),
    )
    .await
    .expect("setSecret hung past its deadline (an unbounded ROLLBACK)");
    let err = result.expect_err("the transaction hung");
    assert!(err.kind().is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("setting the password, settings and roles of the pending user"),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // The server as the stall left it: no clone half-made, the current user still logs in.
    let clone = format!("{}_clone", fixture.user);
    assert!(
        !server.role_exists(&clone).await,
        "the clone's transaction never committed"
    );
    assert!(server.logs_in(&fixture.user, INITIAL).await);
}

/// An alternating-users secret of `fixture`'s user whose logins, the master's included, go
/// through a forwarder on `port`: the master in plaintext, so that the forwarder sees its
/// transaction (the rotated user keeps verified TLS).
async fn alternating_through(client: &Client, fixture: &rotor_tests::fixtures::Fixture, port: u16) -> String {
    let master_arn = fixture.master_arn.clone().expect("a master");
    let mut master = value_at(client, &master_arn, "AWSCURRENT").await;
    master["port"] = json!(port);
    master["sslmode"] = json!("disable");
    if let Some(master) = master.as_object_mut() {
        master.remove("ssl");
    }
    let master_arn = create_secret(client, "pg-master-forwarded", &master.to_string()).await;
    let value = json!({"engine": "postgres", "host": "127.0.0.1", "port": port, "username": fixture.user,
                       "password": INITIAL, "masterarn": master_arn});
    create_secret(client, "pg-forwarded", &value.to_string()).await
}

/// The link to the server is cut right before the pending user's transaction (password,
/// settings, roles and the clone's creation, one simple query) reaches it: setSecret fails
/// retryably, the server holds no half-made clone and the current user still logs in, and the
/// retry of the same token converges with the clone logging in with the pending password.
#[tokio::test]
async fn a_link_cut_before_the_clone_transaction_changes_nothing_and_the_retry_converges() {
    let server = PgServer::named("pg17");
    let client = secrets_manager_client().await;
    let fixture = rotor_tests::fixtures::postgres(&server, "127.0.0.1", json!({})).await;
    let (port, _cut) = rotor_tests::net::cut_on(server.port, b"BEGIN;").await;
    let arn = alternating_through(&client, &fixture, port).await;
    let rotor = pg_rotor(Strategy::AlternatingUsers, Recording::new(client.clone()));
    let token = begin_rotation(&rotor, &client, &arn).await;
    let err = rotor
        .handle(&event(Step::SetSecret, &arn, &token), deadline())
        .await
        .expect_err("the link was cut");
    assert!(err.kind().is_retryable(), "{err}");
    let clone = format!("{}_clone", fixture.user);
    assert!(!server.role_exists(&clone).await, "no half-made clone");
    assert!(server.logs_in(&fixture.user, INITIAL).await);
    for step in [Step::SetSecret, Step::TestSecret, Step::FinishSecret] {
        rotor
            .handle(&event(step, &arn, &token), deadline())
            .await
            .unwrap_or_else(|e| panic!("retried {step}: {e}"));
    }
    end_rotation(&client, &arn, &token).await;
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    assert_eq!(current["username"], json!(clone));
    assert!(
        server
            .logs_in(&clone, current["password"].as_str().unwrap_or_default())
            .await
    );
    assert!(
        server.logs_in(&fixture.user, INITIAL).await,
        "AWSPREVIOUS still logs in"
    );
}

/// The master's user name of an alternating case.
async fn master_name(case: &Case) -> String {
    let master = value_at(
        &case.client,
        case.master_arn.as_deref().expect("master"),
        "AWSCURRENT",
    )
    .await;
    master["username"].as_str().expect("master username").to_owned()
}

#[tokio::test]
async fn alternating_users_share_one_owner_so_either_uses_what_the_other_created() {
    for server in PgServer::all() {
        let user = format!("app_{}", random_hex(4));
        let schema = format!("{user}_schema");
        let case = Case::alternating(&server, &user, true).await;
        server
            .run(&format!(
                "CREATE SCHEMA {} AUTHORIZATION {}",
                ident(&schema),
                ident(&user)
            ))
            .await;
        let s = ident(&schema);
        // Three swaps: app_clone, app, app_clone. Each user, when current, uses fully (reads,
        // writes, alters) every table the other created, then creates one of its own.
        for swap in 1..=3 {
            case.rotate()
                .await
                .unwrap_or_else(|(step, e)| panic!("{} swap {swap}: {step}: {e}", server.name));
            let (who, password) = case.credentials("AWSCURRENT").await;
            for earlier in 1..swap {
                let sql = format!(
                    "INSERT INTO {s}.t{earlier} (n) VALUES ({swap}); SELECT count(*) FROM {s}.t{earlier}; \
                     UPDATE {s}.t{earlier} SET n = n + 1; ALTER TABLE {s}.t{earlier} ADD COLUMN c{swap} int"
                );
                let used = server.run_as(&who, &password, &sql).await;
                assert!(
                    used.is_ok(),
                    "{} swap {swap}: {who} uses t{earlier}: {used:?}",
                    server.name
                );
            }
            let created = server
                .run_as(
                    &who,
                    &password,
                    &format!("CREATE TABLE {s}.t{swap} (n int); INSERT INTO {s}.t{swap} VALUES (0)"),
                )
                .await;
            assert!(
                created.is_ok(),
                "{} swap {swap}: {who} creates: {created:?}",
                server.name
            );
            assert_eq!(
                server.table_owners(&schema).await,
                vec![user.clone()],
                "{} swap {swap}: the original role owns what either created",
                server.name
            );
        }
        let (who, password) = case.credentials("AWSCURRENT").await;
        assert_eq!(who, format!("{user}_clone"));
        let dropped = server
            .run_as(&who, &password, &format!("DROP TABLE {s}.t1, {s}.t2, {s}.t3"))
            .await;
        assert!(
            dropped.is_ok(),
            "{}: the clone drops what app created: {dropped:?}",
            server.name
        );
    }
}

#[tokio::test]
async fn a_clone_of_the_earlier_scheme_is_upgraded_and_hands_its_objects_to_the_original() {
    for server in PgServer::all() {
        let user = format!("app_{}", random_hex(4));
        let clone = format!("{user}_clone");
        let schema = format!("{user}_schema");
        let app_case = Case::alternating(&server, &user, true).await;
        let master = master_name(&app_case).await;
        let master_arn = app_case.master_arn.clone().expect("master");
        // As an earlier version (or AWS's functions) left it: a clone that is a member of the
        // original, logs in as itself, and owns the table it created while current.
        server
            .run(&format!(
                "CREATE ROLE {c} LOGIN PASSWORD {p}; GRANT {u} TO {c}; \
                 CREATE SCHEMA {s} AUTHORIZATION {u}; CREATE TABLE {s}.legacy (n int); \
                 ALTER TABLE {s}.legacy OWNER TO {c};",
                c = ident(&clone),
                u = ident(&user),
                s = ident(&schema),
                p = literal(INITIAL),
            ))
            .await;
        if server.name != "pg15" {
            server
                .run(&format!(
                    "GRANT {} TO {} WITH ADMIN OPTION",
                    ident(&clone),
                    ident(&master)
                ))
                .await;
        }
        let case = Case::with_secret(
            &server,
            Strategy::AlternatingUsers,
            &clone,
            json!({"masterarn": master_arn}),
            Some(master_arn.clone()),
        )
        .await;
        case.rotate()
            .await
            .unwrap_or_else(|(step, e)| panic!("{}: {step}: {e}", server.name));
        assert_eq!(case.credentials("AWSCURRENT").await.0, user);
        assert_eq!(
            server.table_owners(&schema).await,
            vec![user.clone()],
            "{}: the clone's table went to the original",
            server.name
        );
        assert!(
            server
                .role_settings(&clone)
                .await
                .contains(&format!("role={user}")),
            "{}: the clone now acts as the original: {:?}",
            server.name,
            server.role_settings(&clone).await
        );
        let (_, password) = case.credentials("AWSCURRENT").await;
        let s = ident(&schema);
        let used = server
            .run_as(
                &user,
                &password,
                &format!("INSERT INTO {s}.legacy VALUES (1); ALTER TABLE {s}.legacy ADD COLUMN m int"),
            )
            .await;
        assert!(
            used.is_ok(),
            "{}: app uses the clone's old table: {used:?}",
            server.name
        );
        case.rotate()
            .await
            .unwrap_or_else(|(step, e)| panic!("{}: {step}: {e}", server.name));
        let (who, password) = case.credentials("AWSCURRENT").await;
        assert_eq!(who, clone);
        let dropped = server
            .run_as(&who, &password, &format!("DROP TABLE {s}.legacy"))
            .await;
        assert!(dropped.is_ok(), "{}: {dropped:?}", server.name);
    }
}

#[tokio::test]
async fn settings_and_roles_follow_the_current_user_and_test_secret_names_a_difference() {
    for server in PgServer::all() {
        let user = format!("app_{}", random_hex(4));
        let clone = format!("{user}_clone");
        let extra = format!("{user}_reports");
        let case = Case::alternating(&server, &user, true).await;
        let master = master_name(&case).await;
        server
            .run(&format!(
                "CREATE ROLE {e} NOLOGIN; GRANT {e} TO {m} WITH ADMIN OPTION; \
                 SET ROLE {m}; GRANT {e} TO {u}; RESET ROLE; ALTER ROLE {u} SET work_mem = '8MB'; ALTER ROLE {u} SET search_path = \"$user\", \"My Schema\", public;",
                e = ident(&extra),
                m = ident(&master),
                u = ident(&user),
            ))
            .await;
        case.rotate()
            .await
            .unwrap_or_else(|(step, e)| panic!("{}: {step}: {e}", server.name));
        let app_settings = server.role_settings(&user).await;
        let mut expected = app_settings.clone();
        expected.push(format!("role={user}"));
        expected.sort();
        assert_eq!(server.role_settings(&clone).await, expected, "{}", server.name);
        assert!(
            server.is_member(&clone, &extra).await,
            "{}: the clone has app's roles",
            server.name
        );

        // Taken from the current user (the clone), taken from the other at the next rotation.
        // (On PostgreSQL 16+ a membership is revoked by whoever granted it: here the master,
        // which granted both.)
        server
            .run(&format!(
                "ALTER ROLE {c} RESET work_mem; REVOKE {e} FROM {c} GRANTED BY {m};",
                c = ident(&clone),
                e = ident(&extra),
                m = ident(&master),
            ))
            .await;
        case.rotate()
            .await
            .unwrap_or_else(|(step, e)| panic!("{}: {step}: {e}", server.name));
        assert_eq!(case.credentials("AWSCURRENT").await.0, user);
        assert!(
            !server
                .role_settings(&user)
                .await
                .iter()
                .any(|s| s.starts_with("work_mem=")),
            "{}: {:?}",
            server.name,
            server.role_settings(&user).await
        );
        assert!(!server.is_member(&user, &extra).await, "{}", server.name);

        // testSecret compares: a setting the pending user has beyond the current one is named.
        let token = new_token();
        start_rotation(&case.client, &case.arn, &token).await;
        for step in [Step::CreateSecret, Step::SetSecret] {
            case.rotor
                .handle(&event(step, &case.arn, &token), deadline())
                .await
                .unwrap_or_else(|e| panic!("{}: {step}: {e}", server.name));
        }
        server
            .run(&format!("ALTER ROLE {} SET work_mem = '1MB'", ident(&clone)))
            .await;
        let err = case
            .rotor
            .handle(&event(Step::TestSecret, &case.arn, &token), deadline())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Target, "{}: {err}", server.name);
        assert!(
            err.to_string().contains("setting work_mem extra"),
            "{}: {err}",
            server.name
        );
        let (_, pending_password) = case.credentials("AWSPENDING").await;
        assert!(!err.to_string().contains(&pending_password));
        server
            .run(&format!("ALTER ROLE {} RESET work_mem", ident(&clone)))
            .await;
        case.rotor
            .handle(&event(Step::TestSecret, &case.arn, &token), deadline())
            .await
            .unwrap_or_else(|e| panic!("{}: testSecret once they match: {e}", server.name));
    }
}
