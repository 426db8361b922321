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

/// The key and comment of an `authorized_keys` line (options, if any, skipped).
fn parse_line(line: &str) -> Option<(PublicKey, String)> {
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
                return Some((key, words.next().unwrap_or("").trim().to_owned()));
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
        .any(|(k, _)| k.key_data() == key.key_data())
}

/// The content with `line` appended (never a duplicate; a missing final newline is added).
///
/// ```
/// use rotor_ssh_key::authorized_keys::with_key;
/// use russh::keys::PublicKey;
/// let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOexxNc9Jm6lCJC+ZrC4PnK1CspHmPeucpP9gfAWazFj new";
/// let key = PublicKey::from_openssh(line).unwrap();
/// assert_eq!(with_key("# team keys", &key, line).unwrap(), format!("# team keys\n{line}\n"));
/// assert!(with_key(&format!("{line}\n"), &key, line).is_none(), "already there");
/// ```
pub fn with_key(content: &str, key: &PublicKey, line: &str) -> Option<String> {
    if contains_key(content, key) {
        return None;
    }
    let mut out = content.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line.trim_end());
    out.push('\n');
    Some(out)
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
        let remove = parse_line(line).is_some_and(|(key, comment)| {
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
    let data = key.to_openssh().ok()?.split_whitespace().nth(1)?.to_owned();
    let mut changed = false;
    let mut out = String::with_capacity(content.len() + 64);
    for line in content.split_inclusive('\n') {
        let unmanaged_match = parse_line(line)
            .is_some_and(|(k, comment)| k.key_data() == key.key_data() && !comment.starts_with(prefix));
        match line.find(&data).filter(|_| unmanaged_match) {
            Some(at) => {
                changed = true;
                out.push_str(&line[..at + data.len()]);
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
        assert_eq!(
            without_superseded(&adopted, &prefix, &[&key(B)], None).unwrap(),
            format!("ssh-ed25519 {B} bob\n")
        );
    }

    #[test]
    fn options_with_quoted_spaces_are_understood() {
        let line = format!("from=\"10.0.0.1\",command=\"run this\" ssh-ed25519 {A} c");
        assert!(contains_key(&line, &key(A)));
        assert!(!contains_key("ssh-ed25519 garbage", &key(A)));
    }
}
