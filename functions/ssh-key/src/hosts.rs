//! The fleet: `host[:port]` entries and each host's pinned host keys.
//!
//! A pin is a public key (`ssh-ed25519 AAAA…`, `ecdsa-sha2-nistp256 AAAA…`, optionally as a whole
//! `known_hosts` line) or a `SHA256:` fingerprint, bare or as `ssh-keygen -lf` prints it (with its
//! key type in parentheses). A host may have several pins (what `ssh-keyscan` prints lists every key
//! type the host has); the session offers only the pinned host-key algorithms, and the host is
//! accepted when the key it presents matches any of its pins. A host without a pin is an error: an
//! unknown host key is never accepted.

use std::fmt;

use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKey};
use secret_rotor::Error;
use serde_json::Value;

/// One host of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Name or address.
    pub name: String,
    /// SSH port (default 22).
    pub port: u16,
    /// The pinned host keys (at least one).
    pub pins: Vec<Pin>,
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

/// The host-key algorithms a session can verify, in the order it prefers them. RSA is not among
/// them: the function is built without RSA (see functions/ssh-key/README.md), so an RSA-only pin is refused when
/// the secret is read.
pub const VERIFIABLE_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
];

/// A pinned host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The key itself.
    Key(Box<PublicKey>),
    /// Its SHA-256 fingerprint, `SHA256:…`, and its algorithm when the pin names it.
    Fingerprint {
        /// `SHA256:…` without base64 padding.
        hash: String,
        /// The key type, from `ssh-keygen -lf`'s `(ED25519)` suffix; `None` for a bare fingerprint.
        algorithm: Option<Algorithm>,
    },
}

impl Pin {
    /// Parses a pin: a public key, a `known_hosts` line, or a `SHA256:` fingerprint (bare, or the
    /// whole line `ssh-keygen -lf` prints).
    ///
    /// ```
    /// use rotor_ssh_key::hosts::Pin;
    /// let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOexxNc9Jm6lCJC+ZrC4PnK1CspHmPeucpP9gfAWazFj";
    /// assert!(matches!(Pin::parse(key).unwrap(), Pin::Key(_)));
    /// assert!(matches!(Pin::parse(&format!("[db-1]:2222 {key}")).unwrap(), Pin::Key(_)));
    /// let printed = "256 SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU root@db-1 (ED25519)";
    /// assert!(matches!(Pin::parse(printed).unwrap(), Pin::Fingerprint { algorithm: Some(_), .. }));
    /// assert!(matches!(Pin::parse("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU").unwrap(),
    ///     Pin::Fingerprint { algorithm: None, .. }));
    /// assert!(Pin::parse("trust me").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let words: Vec<&str> = text.split_whitespace().collect();
        // "SHA256:…" or "bits SHA256:… [comment] (TYPE)" as ssh-keygen -lf prints it.
        if let Some(at) = words.iter().take(2).position(|w| w.starts_with("SHA256:")) {
            let fingerprint = &words[at]["SHA256:".len()..];
            if fingerprint.is_empty() || (at == 1 && words[0].parse::<u32>().is_err()) {
                return Err(Error::invalid_secret(
                    "a `SHA256:` host key fingerprint is malformed",
                ));
            }
            let algorithm = match words.last().filter(|_| words.len() > at + 1) {
                Some(kind) if kind.starts_with('(') && kind.ends_with(')') => {
                    let bits = words.first().and_then(|b| b.parse().ok()).filter(|_| at == 1);
                    fingerprint_algorithm(&kind[1..kind.len() - 1], bits)?
                }
                _ => None,
            };
            return Ok(Pin::Fingerprint {
                hash: format!("SHA256:{}", fingerprint.trim_end_matches('=')),
                algorithm,
            });
        }
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

    /// Whether the server's key is this pin.
    pub fn matches(&self, key: &PublicKey) -> bool {
        match self {
            Pin::Key(pinned) => pinned.key_data() == key.key_data(),
            Pin::Fingerprint { hash, algorithm } => {
                algorithm.as_ref().is_none_or(|a| *a == key.algorithm())
                    && key.fingerprint(HashAlg::Sha256).to_string().trim_end_matches('=') == hash
            }
        }
    }

    /// The pinned key's algorithm, when the pin says.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self {
            Pin::Key(key) => Some(key.algorithm()),
            Pin::Fingerprint { algorithm, .. } => algorithm.clone(),
        }
    }
}

/// The algorithm named in `ssh-keygen -lf`'s suffix (`ED25519`, `RSA`, `ECDSA` with the curve
/// told by the size); `None` when it cannot be told.
fn fingerprint_algorithm(kind: &str, bits: Option<u32>) -> Result<Option<Algorithm>, Error> {
    let curve = match bits {
        Some(256) => Some(EcdsaCurve::NistP256),
        Some(384) => Some(EcdsaCurve::NistP384),
        Some(521) => Some(EcdsaCurve::NistP521),
        _ => None,
    };
    match kind.to_ascii_uppercase().as_str() {
        "ED25519" => Ok(Some(Algorithm::Ed25519)),
        "RSA" => Ok(Some(Algorithm::Rsa { hash: None })),
        "ECDSA" => Ok(curve.map(|curve| Algorithm::Ecdsa { curve })),
        _ => Err(Error::invalid_secret(
            "a host key fingerprint names an unknown key type",
        )),
    }
}

impl Host {
    /// The host-key algorithms to offer to this host, most preferred first: the pinned ones that
    /// can be verified, or every verifiable one when a pin does not say its algorithm.
    pub fn offered_algorithms(&self) -> Vec<Algorithm> {
        if self.pins.iter().any(|p| p.algorithm().is_none()) {
            return VERIFIABLE_ALGORITHMS.to_vec();
        }
        VERIFIABLE_ALGORITHMS
            .iter()
            .filter(|offered| {
                self.pins
                    .iter()
                    .any(|p| p.algorithm().is_some_and(|a| a == **offered))
            })
            .cloned()
            .collect()
    }

    /// Whether the key a host presented matches any of its pins.
    pub fn accepts(&self, key: &PublicKey) -> bool {
        self.pins.iter().any(|pin| pin.matches(key))
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

/// Reads `hosts` (a list of `host[:port]`) and `host_keys` into the fleet. `host_keys` is an
/// object from host entry to its pins (one pin, several pins one per line, or a list of pins), or a
/// list of `known_hosts` lines (every line naming the host is one of its pins).
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
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    for entry in entries {
        let (name, port) = parse_address(entry)?;
        let pins = find_pins(host_keys, entry, &name, port)?;
        if pins.is_empty() {
            return Err(Error::invalid_secret(format!(
                "host {entry} has no pinned key in `host_keys`"
            )));
        }
        let host = Host { name, port, pins };
        if host.offered_algorithms().is_empty() {
            return Err(Error::invalid_secret(format!(
                "host {entry}: only RSA host keys are pinned, and this function does not verify RSA: \
                 pin its ed25519 or ECDSA key (`ssh-keyscan -t ed25519,ecdsa`)"
            )));
        }
        if !seen.insert((host.name.clone(), host.port)) {
            return Err(Error::invalid_secret(format!("host {entry} is listed twice")));
        }
        fleet.push(host);
    }
    Ok(fleet)
}

fn find_pins(host_keys: Option<&Value>, entry: &str, name: &str, port: u16) -> Result<Vec<Pin>, Error> {
    let bracketed = format!("[{name}]:{port}");
    let candidates = [
        entry.to_owned(),
        format!("{name}:{port}"),
        bracketed.clone(),
        name.to_owned(),
    ];
    let parse = |text: &str| Pin::parse(text).map_err(|e| e.context(format!("host_keys of {entry}")));
    let not_text = || {
        Error::invalid_secret(format!(
            "`host_keys` of {entry} must be a string or a list of strings"
        ))
    };
    match host_keys {
        None => Err(Error::invalid_secret("missing required key `host_keys`")),
        Some(Value::Object(map)) => {
            let Some(value) = candidates.iter().find_map(|c| map.get(c)) else {
                return Ok(Vec::new());
            };
            let texts: Vec<&str> = match value {
                Value::String(text) => text.lines().filter(|l| !l.trim().is_empty()).collect(),
                Value::Array(items) => items
                    .iter()
                    .map(|item| item.as_str().ok_or_else(not_text))
                    .collect::<Result<_, _>>()?,
                _ => return Err(not_text()),
            };
            texts.into_iter().map(parse).collect()
        }
        Some(Value::Array(lines)) => {
            let mut pins = Vec::new();
            for line in lines {
                let line = line
                    .as_str()
                    .ok_or_else(|| Error::invalid_secret("`host_keys` lines must be strings"))?;
                let Some(names) = line.split_whitespace().next() else {
                    continue;
                };
                let known_as = |n: &str| n == bracketed || (port == 22 && n == name) || n == entry;
                if !line.trim_start().starts_with('#') && names.split(',').any(known_as) {
                    pins.push(parse(line)?);
                }
            }
            Ok(pins)
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

    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIDXv1WzYBImP+mpNGZaXgepJl+xy1EOf5+Ur7l7a9eYUI8z4mXf5rODyzEpWg2n+bmVbnOOrMJVjn7vtF3Da4U=";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCr42c+vbL+H5uwqWCEu7+lKCuZT3Q0Jx4BiH9+V2XW8maRB3XqCsA7L2tKlobo14RkBxTejVLG52yHWBRMaWicv9voxsNgOefR8njzlz/qQlVbjlMUDxoR/nzAO7lzbKVrTCEQn3hR36muWLVIYDLSqm9mUJOaSDCPbsp+1B5NmQ== x";

    #[test]
    fn several_pins_per_host_offer_only_their_algorithms() {
        // ssh-keyscan order: rsa and ecdsa before ed25519.
        let scanned = json!([
            format!("[db-1]:2222 {RSA}"),
            format!("[db-1]:2222 {ECDSA}"),
            format!("[db-1]:2222 {KEY}"),
            format!("[db-2]:2222 {KEY}"),
        ]);
        let fleet = parse_fleet(Some(&json!(["db-1:2222"])), Some(&scanned)).unwrap();
        assert_eq!(fleet[0].pins.len(), 3);
        assert_eq!(
            fleet[0].offered_algorithms(),
            VERIFIABLE_ALGORITHMS[..2].to_vec(),
            "ed25519 and P-256, no RSA"
        );
        let ecdsa_only = parse_fleet(Some(&json!(["db-1"])), Some(&json!({"db-1": [ECDSA]}))).unwrap();
        assert_eq!(
            ecdsa_only[0].offered_algorithms(),
            vec![VERIFIABLE_ALGORITHMS[1].clone()]
        );
        let ecdsa_key = PublicKey::from_openssh(ECDSA).unwrap();
        assert!(ecdsa_only[0].accepts(&ecdsa_key));
        assert!(!ecdsa_only[0].accepts(&PublicKey::from_openssh(KEY).unwrap()));
        // Several pins as lines of one string; a bare fingerprint offers every algorithm.
        let lines = parse_fleet(
            Some(&json!(["db-1"])),
            Some(&json!({"db-1": format!("{ECDSA}\nSHA256:abc\n")})),
        )
        .unwrap();
        assert_eq!(lines[0].pins.len(), 2);
        assert_eq!(lines[0].offered_algorithms(), VERIFIABLE_ALGORITHMS.to_vec());
        let err = parse_fleet(Some(&json!(["db-1"])), Some(&json!({"db-1": RSA}))).unwrap_err();
        assert!(err.to_string().contains("only RSA host keys are pinned"), "{err}");
    }

    #[test]
    fn fingerprints_as_ssh_keygen_prints_them() {
        let key = PublicKey::from_openssh(KEY).unwrap();
        let hash = key.fingerprint(HashAlg::Sha256).to_string();
        let printed = Pin::parse(&format!("256 {hash} root@db-1 (ED25519)")).unwrap();
        assert!(printed.matches(&key));
        assert_eq!(printed.algorithm(), Some(Algorithm::Ed25519));
        let wrong_type = Pin::parse(&format!("256 {hash} root@db-1 (ECDSA)")).unwrap();
        assert!(!wrong_type.matches(&key));
        assert_eq!(
            wrong_type.algorithm(),
            Some(Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256
            })
        );
        assert!(Pin::parse(&hash).unwrap().matches(&key));
        assert!(Pin::parse("SHA256:").is_err());
        assert!(Pin::parse("many SHA256:abc").is_err());
    }
}
