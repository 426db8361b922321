//! Editing an `authorized_keys` file, as pure functions on its text.
//!
//! The function owns exactly the lines whose comment is its managed marker for the secret
//! (`secret-rotor:<secret>:<version>`), plus the secret's own superseded key. Every other line —
//! comments, blank lines, other people's keys, options — is kept byte for byte, in order.

use russh::keys::PublicKey;

/// The comment marking a key as managed by this function for `secret` at `version`.
///
/// ```
/// use rotor_ssh_key::authorized_keys::managed_comment;
/// let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:deploy-key-AbCdEf";
/// assert_eq!(managed_comment(arn, "v1"), "secret-rotor:deploy-key-AbCdEf:v1");
/// ```
pub fn managed_comment(secret_id: &str, version: &str) -> String {
    format!("{}{version}", managed_prefix(secret_id))
}

/// The comment prefix shared by every version of a secret's keys.
pub fn managed_prefix(secret_id: &str) -> String {
    let name = secret_id
        .rsplit_once(":secret:")
        .map(|(_, name)| name)
        .unwrap_or(secret_id);
    let name: String = name
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    format!("secret-rotor:{name}:")
}

/// One `authorized_keys` line, understood.
struct KeyLine<'a> {
    /// The options field (`from="…",no-pty`), empty when the line has none.
    options: &'a str,
    key: PublicKey,
    comment: &'a str,
    /// Where the key's base64 ends in the line (what follows is the comment).
    key_end: usize,
}

/// The options, key and comment of an `authorized_keys` line.
fn parse_line(line: &str) -> Option<KeyLine<'_>> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    // Try "type data comment", then skip an options field (which may hold quoted spaces).
    let mut rest = trimmed;
    for _ in 0..2 {
        let mut words = rest.splitn(3, char::is_whitespace);
        if let (Some(kind), Some(data)) = (words.next(), words.next()) {
            if let Ok(key) = PublicKey::from_openssh(&format!("{kind} {data}")) {
                let options = trimmed[..trimmed.len() - rest.len()].trim_end();
                let rest_start = (line.len() - line.trim_start().len()) + (trimmed.len() - rest.len());
                let separator = rest[kind.len()..].chars().next().map_or(0, char::len_utf8);
                return Some(KeyLine {
                    options,
                    key,
                    comment: words.next().unwrap_or("").trim(),
                    key_end: rest_start + kind.len() + separator + data.len(),
                });
            }
        }
        rest = skip_options(rest)?;
    }
    None
}

/// Skips the options field at the start of a line (commas, quoted strings).
fn skip_options(line: &str) -> Option<&str> {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Some(line[i..].trim_start()),
            _ => {}
        }
    }
    None
}

/// Whether the file already authorizes `key` (any line with the same key).
pub fn contains_key(content: &str, key: &PublicKey) -> bool {
    content
        .lines()
        .filter_map(parse_line)
        .any(|line| line.key.key_data() == key.key_data())
}

/// Why a new key cannot be authorized beside the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddRefused {
    /// No line holds the current key (it logs in through another file or a command).
    CurrentKeyAbsent,
    /// Several lines hold the current key (their options may differ): which to copy is a guess.
    CurrentKeyOnLines(usize),
}

impl std::fmt::Display for AddRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddRefused::CurrentKeyAbsent => write!(
                f,
                "the current key is not in ~/.ssh/authorized_keys (it logs in through another file \
                 or an AuthorizedKeysCommand): only keys in that file can be rotated"
            ),
            AddRefused::CurrentKeyOnLines(n) => write!(
                f,
                "the current key is on {n} lines of ~/.ssh/authorized_keys: leave one line for it \
                 (with the options the key should have)"
            ),
        }
    }
}

/// The options field of the one line that holds `current` (empty when it has none).
pub fn current_options<'a>(content: &'a str, current: &PublicKey) -> Result<&'a str, AddRefused> {
    let mut found = content
        .lines()
        .filter_map(parse_line)
        .filter(|line| line.key.key_data() == current.key_data())
        .map(|line| line.options);
    match (found.next(), found.count()) {
        (None, _) => Err(AddRefused::CurrentKeyAbsent),
        (Some(options), 0) => Ok(options),
        (Some(_), more) => Err(AddRefused::CurrentKeyOnLines(more + 1)),
    }
}

/// The content with `new_line` (the new key) authorized exactly as `current` is: with the current
/// line's options, so that a rotation never widens what the key may do. The current line is
/// re-commented as managed (`<prefix>adopted`) when it is not yet, so that once superseded it is
/// removed by whichever later finish reaches the host. `Ok(None)` when the new key is already
/// there (a retry).
///
/// ```
/// use rotor_ssh_key::authorized_keys::with_key_beside;
/// use russh::keys::PublicKey;
/// let old = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOexxNc9Jm6lCJC+ZrC4PnK1CspHmPeucpP9gfAWazFj";
/// let new = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAIKn7xs11ogG4GDxNVQwEuXqi31wiZPjckKAzL6aX90 s:v2";
/// let (current, key) = (PublicKey::from_openssh(old).unwrap(), PublicKey::from_openssh(new).unwrap());
/// let content = format!("from=\"10.1.0.0/16\",no-pty {old} by hand\n");
/// assert_eq!(
///     with_key_beside(&content, "s:", &current, &key, new).unwrap().unwrap(),
///     format!("from=\"10.1.0.0/16\",no-pty {old} s:adopted\nfrom=\"10.1.0.0/16\",no-pty {new}\n")
/// );
/// ```
pub fn with_key_beside(
    content: &str,
    prefix: &str,
    current: &PublicKey,
    key: &PublicKey,
    new_line: &str,
) -> Result<Option<String>, AddRefused> {
    if contains_key(content, key) {
        return Ok(None);
    }
    let options = current_options(content, current)?;
    let mut out = adopt(content, prefix, current).unwrap_or_else(|| content.to_owned());
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !options.is_empty() {
        out.push_str(options);
        out.push(' ');
    }
    out.push_str(new_line.trim_end());
    out.push('\n');
    Ok(Some(out))
}

/// The content without this secret's keys other than `keep`: lines carrying the secret's managed
/// prefix, and lines holding `superseded` (the secret's previous key, managed or not). `None` when
/// nothing changes.
pub fn without_superseded(
    content: &str,
    prefix: &str,
    keep: &[&PublicKey],
    superseded: Option<&PublicKey>,
) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(content.len());
    for line in content.split_inclusive('\n') {
        let remove = parse_line(line).is_some_and(|KeyLine { key, comment, .. }| {
            let kept = keep.iter().any(|k| k.key_data() == key.key_data());
            let ours =
                comment.starts_with(prefix) || superseded.is_some_and(|s| s.key_data() == key.key_data());
            ours && !kept
        });
        if remove {
            changed = true;
        } else {
            out.push_str(line);
        }
    }
    changed.then_some(out)
}

/// The content with the line holding `key` re-commented as managed (`<prefix>adopted`), so that a
/// key the secret held before this function managed it (the first key, put there by hand) is
/// removed by a later rotation. `None` when no such unmanaged line exists.
pub fn adopt(content: &str, prefix: &str, key: &PublicKey) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(content.len() + 64);
    for line in content.split_inclusive('\n') {
        let unmanaged_end = parse_line(line)
            .filter(|found| found.key.key_data() == key.key_data() && !found.comment.starts_with(prefix))
            .map(|found| found.key_end);
        match unmanaged_end {
            Some(at) => {
                changed = true;
                out.push_str(&line[..at]);
                out.push(' ');
                out.push_str(prefix);
                out.push_str("adopted");
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOexxNc9Jm6lCJC+ZrC4PnK1CspHmPeucpP9gfAWazFj";
    const B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAIKn7xs11ogG4GDxNVQwEuXqi31wiZPjckKAzL6aX90";

    fn key(data: &str) -> PublicKey {
        PublicKey::from_openssh(&format!("ssh-ed25519 {data}")).unwrap()
    }

    #[test]
    fn removes_only_this_secrets_superseded_keys() {
        let prefix = managed_prefix("arn:aws:secretsmanager:r:1:secret:deploy-XyZ");
        let content = format!(
            "# keep this comment\n\
             command=\"echo hi\",no-pty ssh-ed25519 {B} alice@laptop\n\
             ssh-ed25519 {A} {prefix}v1\n\
             ssh-ed25519 {B} secret-rotor:other-secret:v9\n\
             \n\
             ssh-ed25519 {A} original-unmanaged"
        );
        let (a, b) = (key(A), key(B));
        // Keeping B (the new key): A goes, both as managed and as the superseded key.
        let out = without_superseded(&content, &prefix, &[&b], Some(&a)).unwrap();
        assert_eq!(
            out,
            format!(
                "# keep this comment\n\
                 command=\"echo hi\",no-pty ssh-ed25519 {B} alice@laptop\n\
                 ssh-ed25519 {B} secret-rotor:other-secret:v9\n\n"
            )
        );
        // Nothing of ours left: no change.
        assert!(without_superseded(&out, &prefix, &[&b], Some(&a)).is_none());
        // Grace: keep both.
        assert!(without_superseded(&content, &prefix, &[&a, &b], None).is_none());
    }

    #[test]
    fn adopting_the_first_key_marks_it_managed() {
        let prefix = managed_prefix("s");
        let content = format!("no-pty ssh-ed25519 {A} made by hand\nssh-ed25519 {B} bob\n");
        let adopted = adopt(&content, &prefix, &key(A)).unwrap();
        assert_eq!(
            adopted,
            format!("no-pty ssh-ed25519 {A} secret-rotor:s:adopted\nssh-ed25519 {B} bob\n")
        );
        assert!(adopt(&adopted, &prefix, &key(A)).is_none());
        // The key's base64 inside an option is not the key field.
        let tricky = format!("command=\"echo {A}\" ssh-ed25519 {A} hand\n");
        assert_eq!(
            adopt(&tricky, &prefix, &key(A)).unwrap(),
            format!("command=\"echo {A}\" ssh-ed25519 {A} secret-rotor:s:adopted\n")
        );
        assert_eq!(
            without_superseded(&adopted, &prefix, &[&key(B)], None).unwrap(),
            format!("ssh-ed25519 {B} bob\n")
        );
    }

    #[test]
    fn the_new_key_carries_exactly_the_current_keys_options() {
        let prefix = managed_prefix("s");
        let (a, b) = (key(A), key(B));
        let new_line = format!("ssh-ed25519 {B} {prefix}v2");
        let options =
            r#"from="10.1.0.0/16",no-port-forwarding,no-agent-forwarding,no-pty,expiry-time="20991231""#;
        let content = format!("# team\n{options} ssh-ed25519 {A} {prefix}v1\n");
        assert_eq!(
            with_key_beside(&content, &prefix, &a, &b, &new_line)
                .unwrap()
                .unwrap(),
            format!("{content}{options} {new_line}\n"),
            "managed current line untouched, options copied"
        );
        // No options: a plain line; a hand-made current line is adopted.
        let plain = format!("ssh-ed25519 {A} by hand");
        assert_eq!(
            with_key_beside(&plain, &prefix, &a, &b, &new_line)
                .unwrap()
                .unwrap(),
            format!("ssh-ed25519 {A} {prefix}adopted\n{new_line}\n")
        );
        // Already there: nothing to do, whatever the current key's lines.
        assert_eq!(
            with_key_beside(&format!("{new_line}\n"), &prefix, &a, &b, &new_line),
            Ok(None)
        );
        assert_eq!(
            with_key_beside("# nothing", &prefix, &a, &b, &new_line),
            Err(AddRefused::CurrentKeyAbsent)
        );
        let twice = format!("no-pty ssh-ed25519 {A} x\nssh-ed25519 {A} y\n");
        assert_eq!(
            with_key_beside(&twice, &prefix, &a, &b, &new_line),
            Err(AddRefused::CurrentKeyOnLines(2))
        );
        assert_eq!(
            current_options(&twice[..twice.find('\n').unwrap()], &a),
            Ok("no-pty")
        );
    }

    #[test]
    fn options_with_quoted_spaces_are_understood() {
        let line = format!("from=\"10.0.0.1\",command=\"run this\" ssh-ed25519 {A} c");
        assert!(contains_key(&line, &key(A)));
        assert!(!contains_key("ssh-ed25519 garbage", &key(A)));
    }
}
