//! Hostile input, for every engine: secret values that are not JSON objects, keys missing, extra
//! or of the wrong type, a huge value, a binary secret that is not UTF-8, malformed events, and
//! identifiers of maximal length. Each gets a clear error (or works) — never a panic, never a
//! write, never the value echoed.

use rotor_database::{DatabaseEngine, Strategy};
use rotor_mysql::Mysql;
use rotor_postgres::tls::TlsConfigs;
use rotor_postgres::Postgres;
use rotor_ssh_key::SshKeyEngine;
use rotor_tests::mariadb_server::MariaDb;
use rotor_tests::postgres_server::{ident, PgServer};
use rotor_tests::*;
use secret_rotor::{Engine, ErrorKind, Passwords, Rotor, Step};
use serde_json::{json, Value};

const SECRET_WORD: &str = "hunter2-Sentinel";

/// Rotates a secret holding `value` (a string, or bytes for a binary secret) with `engine`;
/// expects createSecret to refuse it with `expected` in the message and nothing written.
async fn refused<E: Engine>(engine: E, value: Result<String, Vec<u8>>, expected: &str) {
    let client = secrets_manager_client().await;
    let request = client.create_secret().name(format!("hostile-{}", random_hex(6)));
    let request = match &value {
        Ok(text) => request.secret_string(text),
        Err(bytes) => request.secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(bytes.clone())),
    };
    let arn = request.send().await.expect("CreateSecret").arn.expect("ARN");
    let store = Recording::new(client.clone());
    let rotor = Rotor::with_passwords(Ok(engine), store.clone(), Passwords::from_lookup(|_| None, ""));
    let token = new_token();
    start_rotation(&client, &arn, &token).await;
    let err = rotor
        .handle(&event(Step::CreateSecret, &arn, &token), deadline())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidSecret, "{expected}: {err}");
    assert!(
        err.to_string().contains(expected),
        "expected {expected:?} in: {err}"
    );
    assert!(
        !err.to_string().contains(SECRET_WORD),
        "the value was echoed: {err}"
    );
    assert_eq!(writes(&store.calls()), 0, "{expected}: nothing written");
}

fn pg() -> DatabaseEngine<Postgres> {
    DatabaseEngine::new(Postgres::new(TlsConfigs::new(None)), Strategy::AlternatingUsers)
}

fn my() -> DatabaseEngine<Mysql> {
    DatabaseEngine::new(Mysql::new(None, None), Strategy::SingleUser)
}

fn with(base: &Value, key: &str, value: Value) -> String {
    let mut out = base.clone();
    if value.is_null() {
        out.as_object_mut().expect("object").remove(key);
    } else {
        out[key] = value;
    }
    out.to_string()
}

#[tokio::test]
async fn database_secrets_with_the_wrong_shape_are_refused() {
    let base = json!({"engine": "postgres", "host": "db", "username": "app", "password": SECRET_WORD,
                      "masterarn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:m"});
    let cases: Vec<(String, &str)> = vec![
        (format!("password={SECRET_WORD}"), "not valid JSON"),
        (format!("[\"{SECRET_WORD}\"]"), "found an array"),
        (format!("\"{SECRET_WORD}\""), "found a string"),
        ("42".to_owned(), "found a number"),
        ("null".to_owned(), "found null"),
        (format!("{{\"password\": \"{SECRET_WORD}\""), "not valid JSON"),
        (
            with(&base, "engine", Value::Null),
            "missing required key `engine`",
        ),
        (with(&base, "engine", json!("oracle")), "key `engine` is `oracle`"),
        (with(&base, "host", Value::Null), "missing required key `host`"),
        (with(&base, "host", json!("")), "key `host` must not be empty"),
        (
            with(&base, "username", json!({"name": "app"})),
            "key `username` must be a string, found an object",
        ),
        (
            with(&base, "password", json!(12345)),
            "key `password` must be a string, found a number",
        ),
        (
            with(&base, "port", json!([5432])),
            "key `port` must be a port number",
        ),
        (
            with(&base, "port", json!("54x2")),
            "key `port` must be a port number",
        ),
        (
            with(&base, "port", json!(70000)),
            "key `port` must be a port number",
        ),
        (
            with(&base, "dbname", json!(true)),
            "key `dbname` must be a string",
        ),
        (with(&base, "sslmode", json!(7)), "key `sslmode` must be a string"),
        (
            with(&base, "sslmode", json!("maybe")),
            "key `sslmode` must be one of",
        ),
        (
            with(&base, "masterarn", Value::Null),
            "missing required key `masterarn`",
        ),
        (with(&base, "username", json!("nul\u{0}byte")), "NUL"),
    ];
    for (value, expected) in cases {
        refused(pg(), Ok(value), expected).await;
    }
    let my_base = with(&base, "engine", json!("mysql"));
    let my_base: Value = serde_json::from_str(&my_base).unwrap();
    refused(
        my(),
        Ok(with(&my_base, "userhost", json!(["%"]))),
        "key `userhost` must be a string",
    )
    .await;
    refused(
        my(),
        Ok(with(&my_base, "engine", json!("postgres"))),
        "this function rotates mysql, aurora-mysql, mariadb",
    )
    .await;
}

#[tokio::test]
async fn a_binary_secret_that_is_not_utf8_and_a_huge_value_are_handled() {
    let invalid = vec![0xff, 0xfe, b'{', 0x80, b'}'];
    refused(pg(), Err(invalid), "is a binary secret that is not UTF-8 text").await;

    // A huge value (close to Secrets Manager's 64 KB limit) is parsed, kept and rotated.
    let server = PgServer::named("pg15");
    let user = format!("huge_{}", random_hex(4));
    server
        .run(&format!(
            "CREATE ROLE {} LOGIN PASSWORD 'initial-Password-1'",
            ident(&user)
        ))
        .await;
    let filler: String = "x".repeat(60_000);
    let value = json!({"engine": "postgres", "host": "127.0.0.1", "port": server.port, "username": user,
                       "password": "initial-Password-1", "notes": filler});
    let client = secrets_manager_client().await;
    let arn = create_secret(&client, "hostile-huge", &value.to_string()).await;
    let ca = stack_setting("ROTOR_TLS_CA").map(Into::into);
    let rotor = Rotor::with_passwords(
        Ok(DatabaseEngine::new(
            Postgres::new(TlsConfigs::new(ca)),
            Strategy::SingleUser,
        )),
        Recording::new(client.clone()),
        Passwords::from_lookup(|_| None, ""),
    );
    rotate_fully(&rotor, &client, &arn, &new_token())
        .await
        .expect("a huge value rotates");
    let current = value_at(&client, &arn, "AWSCURRENT").await;
    assert_eq!(current["notes"].as_str().map(str::len), Some(60_000));
    assert!(server.logs_in(&user, current["password"].as_str().unwrap()).await);
}

#[tokio::test]
async fn ssh_secrets_with_the_wrong_shape_are_refused() {
    let (private, public) = rotor_tests::ssh_hosts::keygen("hostile");
    let base = json!({"username": "deploy", "private_key": private, "public_key": public,
                      "hosts": ["10.0.0.1"], "host_keys": {"10.0.0.1": public}});
    let cases: Vec<(String, &str)> = vec![
        (with(&base, "hosts", json!("10.0.0.1")), "`hosts` must be a list"),
        (with(&base, "hosts", json!([])), "`hosts` is empty"),
        (
            with(&base, "hosts", json!([1])),
            "`hosts` must be a list of strings",
        ),
        (with(&base, "hosts", json!(["a b"])), "is not host[:port]"),
        (
            with(&base, "host_keys", json!("x")),
            "`host_keys` must be an object",
        ),
        (
            with(&base, "host_keys", json!({"10.0.0.1": SECRET_WORD})),
            "a host key pin must be",
        ),
        (
            with(&base, "private_key", json!(SECRET_WORD)),
            "not an OpenSSH private key",
        ),
        (
            with(&base, "public_key", json!(SECRET_WORD)),
            "not an authorized_keys line",
        ),
        (
            with(&base, "username", Value::Null),
            "missing required key `username`",
        ),
    ];
    for (value, expected) in cases {
        refused(SshKeyEngine::default(), Ok(value), expected).await;
    }
}

#[tokio::test]
async fn malformed_events_get_invalid_event_errors() {
    let client = secrets_manager_client().await;
    let store = Recording::new(client);
    let rotor = Rotor::with_passwords(Ok(pg()), store.clone(), Passwords::from_lookup(|_| None, ""));
    let long = "s".repeat(100_000);
    let cases = [
        (json!(null), "found null"),
        (json!([1, 2]), "found an array"),
        (json!({}), "missing required field `Step`"),
        (
            json!({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": ["t"]}),
            "must be a string, found an array",
        ),
        (
            json!({"Step": long, "SecretId": "s", "ClientRequestToken": "t"}),
            "unknown step",
        ),
        (
            json!({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": "t", "RotationToken": {"x": SECRET_WORD}}),
            "`RotationToken` must be a string",
        ),
    ];
    for (payload, expected) in cases {
        let err = rotor.handle_json(&payload, deadline()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidEvent, "{err}");
        assert!(err.to_string().contains(expected), "{expected}: {err}");
        assert!(err.to_string().len() < 300, "a long input is not echoed whole");
        assert!(!err.to_string().contains(SECRET_WORD));
    }
    assert!(
        store.calls().lock().unwrap().is_empty(),
        "no call for a malformed event"
    );
}

#[tokio::test]
async fn identifiers_of_maximal_length_work() {
    // PostgreSQL: 63 bytes (with a multi-byte character); MariaDB: 80 characters.
    let server = PgServer::named("pg17");
    let user = format!("é{}", "m".repeat(53)) + &random_hex(4);
    assert_eq!(user.len(), 63);
    server
        .run(&format!(
            "CREATE ROLE {} LOGIN PASSWORD 'initial-Password-1'",
            ident(&user)
        ))
        .await;
    let client = secrets_manager_client().await;
    let value = json!({"engine": "postgres", "host": "127.0.0.1", "port": server.port, "username": user, "password": "initial-Password-1"});
    let arn = create_secret(&client, "hostile-long-pg", &value.to_string()).await;
    let ca = stack_setting("ROTOR_TLS_CA").map(Into::into);
    let rotor = Rotor::with_passwords(
        Ok(DatabaseEngine::new(
            Postgres::new(TlsConfigs::new(ca.clone())),
            Strategy::SingleUser,
        )),
        Recording::new(client.clone()),
        Passwords::from_lookup(|_| None, ""),
    );
    rotate_fully(&rotor, &client, &arn, &new_token())
        .await
        .expect("63-byte role");
    assert!(
        server
            .logs_in(
                &user,
                value_at(&client, &arn, "AWSCURRENT").await["password"]
                    .as_str()
                    .unwrap()
            )
            .await
    );

    let db = MariaDb::new();
    let user = format!("Ü{}", "m".repeat(71)) + &random_hex(4);
    assert_eq!(user.chars().count(), 80);
    db.run(&format!(
        "CREATE USER `{user}`@'%' IDENTIFIED BY 'initial-Password-1'"
    ));
    let value = json!({"engine": "mariadb", "host": "127.0.0.1", "port": db.port, "username": user, "password": "initial-Password-1"});
    let arn = create_secret(&client, "hostile-long-my", &value.to_string()).await;
    let rotor = Rotor::with_passwords(
        Ok(DatabaseEngine::new(Mysql::new(ca, None), Strategy::SingleUser)),
        Recording::new(client.clone()),
        Passwords::from_lookup(|_| None, ""),
    );
    rotate_fully(&rotor, &client, &arn, &new_token())
        .await
        .expect("80-character user");
    assert!(db.logs_in(
        &user,
        value_at(&client, &arn, "AWSCURRENT").await["password"]
            .as_str()
            .unwrap()
    ));
}
