//! The fleet: `host[:port]` entries and each host's pinned host key.
//!
//! A pin is a public key (`ssh-ed25519 AAAA…`, optionally as a whole `known_hosts` line) or a
//! `SHA256:` fingerprint as `ssh-keygen -lf` prints it. A host without a pin is an error: an
//! unknown host key is never accepted.

use std::fmt;

use russh::keys::{HashAlg, PublicKey};
use secret_rotor::Error;
use serde_json::Value;

/// One host of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Name or address.
    pub name: String,
    /// SSH port (default 22).
    pub port: u16,
    /// The pinned host key.
    pub pin: Pin,
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

/// A pinned host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The key itself.
    Key(Box<PublicKey>),
    /// Its SHA-256 fingerprint, `SHA256:…`.
    Fingerprint(String),
}

impl Pin {
    /// Parses a pin: a public key, a `known_hosts` line, or a `SHA256:` fingerprint.
    ///
    /// ```
    /// use rotor_ssh_key::hosts::Pin;
    /// let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOexxNc9Jm6lCJC+ZrC4PnK1CspHmPeucpP9gfAWazFj";
    /// assert!(matches!(Pin::parse(key).unwrap(), Pin::Key(_)));
    /// assert!(matches!(Pin::parse(&format!("[db-1]:2222 {key}")).unwrap(), Pin::Key(_)));
    /// assert!(matches!(Pin::parse("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU").unwrap(), Pin::Fingerprint(_)));
    /// assert!(Pin::parse("trust me").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        if let Some(fingerprint) = text.strip_prefix("SHA256:") {
            if fingerprint.is_empty() || fingerprint.contains(char::is_whitespace) {
                return Err(Error::invalid_secret(
                    "a `SHA256:` host key fingerprint is malformed",
                ));
            }
            return Ok(Pin::Fingerprint(format!(
                "SHA256:{}",
                fingerprint.trim_end_matches('=')
            )));
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        // "type base64 [comment]" or "hosts type base64 [comment]" (known_hosts).
        for start in 0..words.len().min(2) {
            if let (Some(kind), Some(data)) = (words.get(start), words.get(start + 1)) {
                if let Ok(key) = PublicKey::from_openssh(&format!("{kind} {data}")) {
                    return Ok(Pin::Key(Box::new(key)));
                }
            }
        }
        Err(Error::invalid_secret(
            "a host key pin must be a public key, a known_hosts line or a SHA256: fingerprint",
        ))
    }

    /// Whether the server's key is the pinned one.
    pub fn matches(&self, key: &PublicKey) -> bool {
        match self {
            Pin::Key(pinned) => pinned.key_data() == key.key_data(),
            Pin::Fingerprint(fingerprint) => {
                key.fingerprint(HashAlg::Sha256).to_string().trim_end_matches('=') == fingerprint
            }
        }
    }
}

/// Parses `host[:port]` (IPv6 as `[addr]:port`).
fn parse_address(entry: &str) -> Result<(String, u16), Error> {
    let bad = || Error::invalid_secret(format!("`hosts` entry {entry:?} is not host[:port]"));
    let entry = entry.trim();
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, port) = rest.split_once(']').ok_or_else(bad)?;
        let port = match port.strip_prefix(':') {
            Some(port) => port.parse().map_err(|_| bad())?,
            None if port.is_empty() => 22,
            None => return Err(bad()),
        };
        return Ok((host.to_owned(), port));
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Ok((host.to_owned(), port.parse().map_err(|_| bad())?)),
        _ if entry.is_empty() || entry.contains(char::is_whitespace) => Err(bad()),
        _ => Ok((entry.to_owned(), 22)),
    }
}

/// Reads `hosts` (a list of `host[:port]`) and `host_keys` (an object from host entry to pin,
/// or a list of `known_hosts` lines) into the fleet.
pub fn parse_fleet(hosts: Option<&Value>, host_keys: Option<&Value>) -> Result<Vec<Host>, Error> {
    let entries = match hosts {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| Error::invalid_secret("`hosts` must be a list of strings"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => return Err(Error::invalid_secret("`hosts` is empty")),
        Some(_) => {
            return Err(Error::invalid_secret(
                "`hosts` must be a list of host[:port] strings",
            ))
        }
        None => return Err(Error::invalid_secret("missing required key `hosts`")),
    };
    let mut fleet = Vec::with_capacity(entries.len());
    for entry in entries {
        let (name, port) = parse_address(entry)?;
        let pin = find_pin(host_keys, entry, &name, port)?
            .ok_or_else(|| Error::invalid_secret(format!("host {entry} has no pinned key in `host_keys`")))?;
        let host = Host { name, port, pin };
        if fleet
            .iter()
            .any(|h: &Host| h.name == host.name && h.port == host.port)
        {
            return Err(Error::invalid_secret(format!("host {entry} is listed twice")));
        }
        fleet.push(host);
    }
    Ok(fleet)
}

fn find_pin(host_keys: Option<&Value>, entry: &str, name: &str, port: u16) -> Result<Option<Pin>, Error> {
    let bracketed = format!("[{name}]:{port}");
    let candidates = [
        entry.to_owned(),
        format!("{name}:{port}"),
        bracketed.clone(),
        name.to_owned(),
    ];
    match host_keys {
        None => Err(Error::invalid_secret("missing required key `host_keys`")),
        Some(Value::Object(map)) => {
            for candidate in &candidates {
                if let Some(value) = map.get(candidate) {
                    let text = value.as_str().ok_or_else(|| {
                        Error::invalid_secret(format!("`host_keys` of {entry} must be a string"))
                    })?;
                    return Pin::parse(text)
                        .map(Some)
                        .map_err(|e| e.context(format!("host_keys of {entry}")));
                }
            }
            Ok(None)
        }
        Some(Value::Array(lines)) => {
            for line in lines {
                let line = line
                    .as_str()
                    .ok_or_else(|| Error::invalid_secret("`host_keys` lines must be strings"))?;
                let Some(names) = line.split_whitespace().next() else {
                    continue;
                };
                let known_as = |n: &str| n == bracketed || (port == 22 && n == name) || n == entry;
                if names.split(',').any(known_as) {
                    return Pin::parse(line)
                        .map(Some)
                        .map_err(|e| e.context(format!("host_keys of {entry}")));
                }
            }
            Ok(None)
        }
        Some(_) => Err(Error::invalid_secret(
            "`host_keys` must be an object or a list of known_hosts lines",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOexxNc9Jm6lCJC+ZrC4PnK1CspHmPeucpP9gfAWazFj";

    #[test]
    fn addresses_and_pins() {
        assert_eq!(parse_address("db-1").unwrap(), ("db-1".into(), 22));
        assert_eq!(parse_address("10.0.0.5:2222").unwrap(), ("10.0.0.5".into(), 2222));
        assert_eq!(parse_address("[::1]:2200").unwrap(), ("::1".into(), 2200));
        assert!(parse_address("db 1").is_err());
        assert!(parse_address("db:port").is_err());

        let fleet = parse_fleet(
            Some(&json!(["db-1", "10.0.0.5:2222"])),
            Some(&json!({"db-1": KEY, "10.0.0.5:2222": "SHA256:abc"})),
        )
        .unwrap();
        assert_eq!(fleet.len(), 2);
        let known_hosts = json!([
            format!("db-1,db-1.internal {KEY}"),
            format!("[10.0.0.5]:2222 {KEY} comment")
        ]);
        assert_eq!(
            parse_fleet(Some(&json!(["db-1", "10.0.0.5:2222"])), Some(&known_hosts))
                .unwrap()
                .len(),
            2
        );

        let err = parse_fleet(Some(&json!(["db-2"])), Some(&json!({"db-1": KEY}))).unwrap_err();
        assert!(err.to_string().contains("host db-2 has no pinned key"), "{err}");
        let err = parse_fleet(Some(&json!(["db-1", "db-1:22"])), Some(&json!({"db-1": KEY}))).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }
}
