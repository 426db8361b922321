//! The TLS matrix both database suites run (contract §8 case 19): log in with a driver under
//! given `ssl`/`sslmode` keys, and check the outcome — encrypted or not, or an error that names
//! the problem and is not mistaken for a transient fault.

use rotor_database::{Database, DatabaseSecret};
use secret_rotor::{Error, ErrorKind, SecretString};
use serde_json::{json, Value};

/// Logs in with `driver` as `user`/`password` on `host:port` (secret `engine`), with `keys`
/// merged into the secret; whether the session is encrypted, as `encrypted` reads it.
pub async fn login<D: Database>(
    driver: &D,
    engine: &str,
    (host, port): (&str, u16),
    (user, password): (&str, &str),
    keys: Value,
    encrypted: impl Fn(&D::Session) -> bool,
) -> Result<bool, Error> {
    let mut value =
        json!({"engine": engine, "host": host, "port": port, "username": user, "password": password});
    for (key, item) in keys.as_object().cloned().unwrap_or_default() {
        value[key] = item;
    }
    let secret = DatabaseSecret::parse(
        &SecretString::from(value.to_string()),
        &[engine],
        driver.default_port(),
    )?;
    let session = driver.login(&secret, crate::deadline()).await?;
    Ok(encrypted(&session))
}

/// Checks one case: `expected` is `Ok(encrypted)` or `Err(text the error must contain)`.
pub fn check(name: &str, expected: Result<bool, &str>, outcome: Result<bool, Error>) {
    match (expected, outcome) {
        (Ok(expected), Ok(encrypted)) => assert_eq!(encrypted, expected, "{name}"),
        (Err(expected), Err(err)) => {
            assert!(err.to_string().contains(expected), "{name}: {err}");
            assert_ne!(err.kind(), ErrorKind::Transient, "{name}: {err}");
        }
        (expected, outcome) => panic!("{name}: expected {expected:?}, got {outcome:?}"),
    }
}

/// One case of a suite's matrix: name, driver (trust roots), host, port, secret keys, expected
/// (`Ok(encrypted)` or `Err(text the error must contain)`).
pub type Case<'a, D> = (&'a str, &'a D, &'a str, u16, Value, Result<bool, &'a str>);

/// The cases every engine shares for a server that offers no TLS (`port` declines it): no
/// downgrade under the default or `prefer`; plaintext only when the secret says so.
pub fn without_tls<'a, D>(driver: &'a D, host: &'a str, port: u16) -> Vec<Case<'a, D>> {
    vec![
        (
            "default, server without TLS: no downgrade",
            driver,
            host,
            port,
            json!({}),
            Err("set `\"sslmode\": \"disable\"`"),
        ),
        (
            "sslmode prefer, server without TLS: no downgrade",
            driver,
            host,
            port,
            json!({"sslmode": "prefer"}),
            Err("does not offer TLS, and this secret requires it"),
        ),
        (
            "ssl false, server without TLS",
            driver,
            host,
            port,
            json!({"ssl": false}),
            Ok(false),
        ),
        (
            "sslmode disable, server without TLS",
            driver,
            host,
            port,
            json!({"sslmode": "disable"}),
            Ok(false),
        ),
    ]
}
