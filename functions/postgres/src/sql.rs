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

/// Settings whose value is a list of names that PostgreSQL stores quoted (`"$user", public`):
/// `ALTER ROLE … SET` must get them back as one literal per element, not as one string.
const LIST_QUOTED_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
];

/// `ALTER ROLE "role" SET name TO value` for one `name=value` entry of `pg_roles.rolconfig`,
/// giving the role the same setting (list settings element by element).
///
/// ```
/// use rotor_postgres::sql::set_role_setting;
/// assert_eq!(set_role_setting("app", "work_mem=64MB").unwrap(),
///            r#"ALTER ROLE "app" SET "work_mem" TO E'64MB'"#);
/// assert_eq!(set_role_setting("app", r#"search_path="$user", public, "My ""S""""#).unwrap(),
///            r#"ALTER ROLE "app" SET "search_path" TO E'$user', E'public', E'My "S"'"#);
/// assert!(set_role_setting("app", "no equals sign").is_err());
/// ```
pub fn set_role_setting(role: &str, entry: &str) -> Result<String, Error> {
    let (name, value) = entry
        .split_once('=')
        .ok_or_else(|| Error::target(format!("role setting {entry:?} is not name=value")))?;
    let values = if LIST_QUOTED_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        split_quoted_list(value)
            .iter()
            .map(|element| quote_literal(element))
            .collect::<Result<Vec<_>, _>>()?
            .join(", ")
    } else {
        quote_literal(value)?
    };
    Ok(format!(
        "ALTER ROLE {} SET {} TO {values}",
        quote_identifier(role)?,
        quote_identifier(name)?
    ))
}

/// The elements of a list setting as PostgreSQL prints it: comma-separated, each element bare
/// or double-quoted with `""` for a quote.
fn split_quoted_list(value: &str) -> Vec<String> {
    let mut elements = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => elements.push(std::mem::take(&mut current).trim().to_owned()),
            c if !quoted && c.is_whitespace() && current.is_empty() => {}
            c => current.push(c),
        }
    }
    elements.push(current.trim().to_owned());
    elements
}
