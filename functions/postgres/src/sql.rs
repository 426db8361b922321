//! SQL text built by this function: quoted identifiers, and password verifiers computed
//! client-side so that no plaintext password ever reaches the server (or its statement log).

use secret_rotor::zeroize::Zeroizing;
use secret_rotor::{Error, SecretString};

/// PostgreSQL's identifier limit (NAMEDATALEN - 1): longer names are silently truncated by the
/// server, so a role this function creates must fit.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Quotes an identifier: `"` + the name with `"` doubled + `"`. Works for any name PostgreSQL
/// accepts (capitals, spaces, quotes, semicolons, non-ASCII); a NUL byte cannot be in a name.
///
/// ```
/// use rotor_postgres::sql::quote_identifier;
/// assert_eq!(quote_identifier("app").unwrap(), r#""app""#);
/// assert_eq!(quote_identifier(r#"We"ird; DROP"#).unwrap(), r#""We""ird; DROP""#);
/// assert!(quote_identifier("a\0b").is_err());
/// ```
pub fn quote_identifier(name: &str) -> Result<String, Error> {
    if name.contains('\0') {
        return Err(Error::invalid_secret(
            "a PostgreSQL identifier cannot contain a NUL character",
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Quotes a string literal for a server with `standard_conforming_strings` on (the default since
/// 9.1) or off: the `E''` form, with quotes and backslashes escaped.
///
/// ```
/// use rotor_postgres::sql::quote_literal;
/// assert_eq!(quote_literal(r"it's a \ test").unwrap(), r"E'it''s a \\ test'");
/// ```
pub fn quote_literal(text: &str) -> Result<String, Error> {
    if text.contains('\0') {
        return Err(Error::invalid_secret(
            "a PostgreSQL string cannot contain a NUL character",
        ));
    }
    Ok(format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''")))
}

/// The SCRAM-SHA-256 verifier of a password (random salt, 4096 iterations), which
/// `ALTER ROLE … PASSWORD` stores as is. The server never sees the password itself.
///
/// ```
/// use rotor_postgres::sql::scram_verifier;
/// let verifier = scram_verifier(&"pa'ss\\word".into());
/// assert!(verifier.starts_with("SCRAM-SHA-256$4096:"));
/// assert!(!verifier.contains("pa'ss"));
/// ```
pub fn scram_verifier(password: &SecretString) -> Zeroizing<String> {
    Zeroizing::new(postgres_protocol::password::scram_sha_256(
        password.expose().as_bytes(),
    ))
}

/// `{verb} ROLE "name" WITH [LOGIN] PASSWORD 'verifier'`: `verb` is `CREATE` or `ALTER`;
/// `login` adds the LOGIN attribute (a role changing its own password may not set attributes).
pub fn role_password_statement(
    verb: &str,
    role: &str,
    login: bool,
    password: &SecretString,
) -> Result<Zeroizing<String>, Error> {
    let verifier = scram_verifier(password);
    Ok(Zeroizing::new(format!(
        "{verb} ROLE {} WITH {}PASSWORD {}",
        quote_identifier(role)?,
        if login { "LOGIN " } else { "" },
        quote_literal(&verifier)?
    )))
}
