//! Secret material that cannot leak: redacted when printed, zeroized when dropped.
//!
//! Everything that comes out of a secret value (passwords, private keys, the whole JSON
//! document, the `RotationToken`) travels in one of these two types, so a `{:?}` in a log
//! line or an error message can only ever print `<redacted>`.

use std::fmt;

use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::error::Error;

/// A string that must never be printed: a password, a private key, a token.
///
/// `Debug` and `Display` print `<redacted>`; the memory is zeroized on drop. The only way to
/// see the value is [`SecretString::expose`], which makes every use easy to audit.
///
/// ```
/// use secret_rotor::SecretString;
/// let password = SecretString::from("hunter2");
/// assert_eq!(format!("{password:?} {password}"), "SecretString(<redacted>) <redacted>");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value; the caller's `String` is moved, not copied.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself. Keep the borrow short and never format it into a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (not secret, useful in validation messages).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A secret value that is a JSON object, the format of every database secret.
///
/// Keys the engine does not know are kept verbatim (same JSON types) when the pending value is
/// derived from the current one. Accessors return errors that name the key and the expected
/// type, never the value. Every string in the document is zeroized on drop.
///
/// ```
/// use secret_rotor::{SecretJson, SecretString};
/// let raw = SecretString::from(r#"{"username":"app","password":"p","port":"5432","x":[1]}"#);
/// let mut doc = SecretJson::parse(&raw).unwrap();
/// assert_eq!(doc.required_str("username").unwrap(), "app");
/// assert_eq!(doc.port("port", 3306).unwrap(), 5432);
/// doc.set_secret("password", &SecretString::from("q"));
/// let out = doc.to_secret_string();
/// assert!(out.expose().contains(r#""x":[1]"#));
/// assert!(format!("{doc:?}").contains("<redacted>"));
/// ```
#[derive(Clone, PartialEq)]
pub struct SecretJson {
    map: Map<String, Value>,
}

impl SecretJson {
    /// Parses a secret value that must be a JSON object.
    ///
    /// The error names what is wrong (not JSON, not an object) and where, never the content.
    pub fn parse(raw: &SecretString) -> Result<Self, Error> {
        let value: Value = serde_json::from_str(raw.expose()).map_err(|e| {
            Error::invalid_secret(format!(
                "the secret value is not valid JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        match value {
            Value::Object(map) => Ok(Self { map }),
            mut other => {
                let kind = json_kind(&other);
                zeroize_value(&mut other);
                Err(Error::invalid_secret(format!(
                    "the secret value must be a JSON object, found {kind}"
                )))
            }
        }
    }

    /// An empty document, for engines that build a value from parts.
    pub fn new() -> Self {
        Self { map: Map::new() }
    }

    /// Whether the key is present (with any type, `null` included).
    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// The string at `key`, `None` when absent or `null`; any other type is an error.
    pub fn optional_str(&self, key: &str) -> Result<Option<&str>, Error> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Error::invalid_secret(format!(
                "key `{key}` must be a string, found {}",
                json_kind(other)
            ))),
        }
    }

    /// The non-empty string at `key`; absence, emptiness or another type is an error naming it.
    pub fn required_str(&self, key: &str) -> Result<&str, Error> {
        match self.optional_str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(Error::invalid_secret(format!("key `{key}` must not be empty"))),
            None => Err(Error::invalid_secret(format!("missing required key `{key}`"))),
        }
    }

    /// Like [`SecretJson::required_str`], for a value that is itself secret.
    pub fn required_secret(&self, key: &str) -> Result<SecretString, Error> {
        self.required_str(key).map(SecretString::from)
    }

    /// A TCP port given as a JSON number or a string of digits; `default` when absent.
    pub fn port(&self, key: &str, default: u16) -> Result<u16, Error> {
        let bad = || Error::invalid_secret(format!("key `{key}` must be a port number (1-65535)"));
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0)
                .ok_or_else(bad),
            Some(Value::String(s)) => s.trim().parse::<u16>().ok().filter(|n| *n != 0).ok_or_else(bad),
            Some(_) => Err(bad()),
        }
    }

    /// A flag given as a JSON boolean or the strings `"true"`/`"false"`; `None` when absent.
    pub fn optional_bool(&self, key: &str) -> Result<Option<bool>, Error> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(Error::invalid_secret(format!(
                "key `{key}` must be true or false"
            ))),
        }
    }

    /// Sets a plain (non-secret) string, replacing any previous value.
    pub fn set_str(&mut self, key: &str, value: &str) {
        self.insert(key, Value::String(value.to_owned()));
    }

    /// Sets a secret string, replacing (and zeroizing) any previous value.
    pub fn set_secret(&mut self, key: &str, value: &SecretString) {
        self.insert(key, Value::String(value.expose().to_owned()));
    }

    /// Sets any JSON value.
    pub fn insert(&mut self, key: &str, value: Value) {
        if let Some(mut old) = self.map.insert(key.to_owned(), value) {
            zeroize_value(&mut old);
        }
    }

    /// Read access to the raw value at `key`, for engines with keys of their own shape.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// Serializes the document back into a secret value.
    pub fn to_secret_string(&self) -> SecretString {
        // Serializing a map of JSON values cannot fail.
        SecretString::new(serde_json::to_string(&self.map).unwrap_or_default())
    }
}

impl Default for SecretJson {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key names are not secret and help when debugging a malformed secret.
        f.debug_struct("SecretJson")
            .field("keys", &self.map.keys().collect::<Vec<_>>())
            .field("values", &"<redacted>")
            .finish()
    }
}

impl Drop for SecretJson {
    fn drop(&mut self) {
        for value in self.map.values_mut() {
            zeroize_value(value);
        }
    }
}

fn zeroize_value(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_value),
        Value::Object(map) => map.values_mut().for_each(zeroize_value),
        _ => {}
    }
}

/// A JSON type's name for error messages (never the value).
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_contain_values() {
        let cases = [
            r#""hunter2""#,
            r#"["hunter2"]"#,
            r#"{"password": "hunter2""#,
            r#"{"password": hunter2}"#,
        ];
        for case in cases {
            let err = SecretJson::parse(&SecretString::from(case)).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let doc = SecretJson::parse(&SecretString::from(r#"{"port": "hunter2", "u": 7}"#)).unwrap();
        let err = doc.port("port", 1).unwrap_err().to_string();
        assert!(err.contains("`port`") && !err.contains("hunter2"), "{err}");
        let err = doc.required_str("u").unwrap_err().to_string();
        assert!(err.contains("`u` must be a string, found a number"), "{err}");
        let err = doc.required_str("missing").unwrap_err().to_string();
        assert!(err.contains("missing required key `missing`"), "{err}");
    }

    #[test]
    fn port_accepts_numbers_and_strings() {
        let doc = SecretJson::parse(&SecretString::from(
            r#"{"a": 5432, "b": " 3306", "c": 0, "d": 70000, "e": 1.5}"#,
        ))
        .unwrap();
        assert_eq!(doc.port("a", 1).unwrap(), 5432);
        assert_eq!(doc.port("b", 1).unwrap(), 3306);
        assert_eq!(doc.port("absent", 7).unwrap(), 7);
        for bad in ["c", "d", "e"] {
            assert!(doc.port(bad, 1).is_err(), "{bad}");
        }
    }

    /// Found by fuzzing (fuzz/regressions/secret_json): a number beyond `u64` is a float, and
    /// serde_json's default float parsing is not exact, so the value written back drifted at
    /// every rotation. With `float_roundtrip` a rendered value parses to itself.
    #[test]
    fn a_huge_number_renders_the_same_after_every_round_trip() {
        let raw = SecretString::from(format!(r#"{{"": 55555555{}7}}"#, "3".repeat(52)));
        let once = SecretJson::parse(&raw).expect("parses").to_secret_string();
        let twice = SecretJson::parse(&once).expect("parses").to_secret_string();
        assert_eq!(once.expose(), twice.expose());
    }

    #[test]
    fn round_trip_keeps_unknown_keys_and_types() {
        let raw = r#"{"n":1,"b":true,"z":null,"o":{"k":[1,"x"]},"password":"old"}"#;
        let mut doc = SecretJson::parse(&SecretString::from(raw)).unwrap();
        doc.set_secret("password", &SecretString::from("new"));
        let out: Value = serde_json::from_str(doc.to_secret_string().expose()).unwrap();
        let expected: Value =
            serde_json::from_str(r#"{"n":1,"b":true,"z":null,"o":{"k":[1,"x"]},"password":"new"}"#).unwrap();
        assert_eq!(out, expected);
    }
}
