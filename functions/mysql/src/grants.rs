//! Copying an account's privileges exactly, from the server's own `SHOW GRANTS` statements.
//!
//! Each line is tokenized (backticks, quoted strings with their escapes, words, symbols), the
//! grantee is located as a token sequence `TO user@host` matching the account (so grants to
//! `PUBLIC` or to roles are never mistaken for the user's), and only the privilege part (and
//! `WITH GRANT OPTION` / `WITH ADMIN OPTION`) is kept: `IDENTIFIED BY PASSWORD '…'` (the password
//! hash), `REQUIRE …` and resource limits are dropped. Database names keep the server's own
//! quoting, so `` `my\_db` `` stays a literal underscore and `` `sh%` `` stays a wildcard.
//! Syncing a clone compares the two sets: extra grants are revoked, missing ones granted.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::sql::Account;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Quoted(char),
    Symbol(char),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    span: Range<usize>,
}

fn tokenize(text: &str) -> Vec<Token> {
    let bytes: Vec<char> = text.chars().collect();
    let offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let kind = if c == '`' || c == '\'' || c == '"' {
            i += 1;
            while i < bytes.len() {
                if c != '`' && bytes[i] == '\\' {
                    i += 2;
                    continue;
                }
                if bytes[i] == c {
                    if bytes.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            Kind::Quoted(c)
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            while i < bytes.len() && (bytes[i].is_alphanumeric() || bytes[i] == '_' || bytes[i] == '$') {
                i += 1;
            }
            Kind::Word
        } else {
            i += 1;
            Kind::Symbol(c)
        };
        tokens.push(Token {
            kind,
            span: offsets[start]..offsets[i.min(bytes.len())],
        });
    }
    tokens
}

fn is_word(text: &str, token: Option<&Token>, word: &str) -> bool {
    token.is_some_and(|t| t.kind == Kind::Word && text[t.span.clone()].eq_ignore_ascii_case(word))
}

/// The value of a name token: quotes removed and unescaped.
fn unquote(text: &str, token: &Token) -> String {
    let raw = &text[token.span.clone()];
    // An unterminated quote at the end of a line is a token of its own, one character long.
    let inner = |quote: char| {
        let rest = raw.strip_prefix(quote).unwrap_or(raw);
        rest.strip_suffix(quote).unwrap_or(rest)
    };
    match token.kind {
        Kind::Quoted('`') => inner('`').replace("``", "`"),
        Kind::Quoted(q) => {
            let inner = inner(q);
            let mut out = String::new();
            let mut chars = inner.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c if c == q && chars.peek() == Some(&q) => {
                        chars.next();
                        out.push(q);
                    }
                    c => out.push(c),
                }
            }
            out
        }
        _ => raw.to_owned(),
    }
}

/// Finds `user @ host` matching `account` at `tokens[at..]`.
fn account_at(text: &str, tokens: &[Token], at: usize, account: &Account) -> bool {
    match (tokens.get(at), tokens.get(at + 1), tokens.get(at + 2)) {
        (Some(user), Some(at_sign), Some(host)) => {
            at_sign.kind == Kind::Symbol('@')
                && unquote(text, user) == account.user
                && unquote(text, host) == account.host
        }
        _ => false,
    }
}

/// One privilege statement of an account, without its grantee.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grant {
    /// `GRANT <privileges> ON <target>` or `GRANT <role>`, and the option it carries.
    Privileges {
        /// The statement up to (not including) `TO`.
        head: String,
        /// `GRANT` or `ADMIN` when the grant carries `WITH … OPTION`.
        option: Option<&'static str>,
    },
    /// `SET DEFAULT ROLE <role>` (MariaDB prints it with the grants).
    DefaultRole(String),
}

impl Grant {
    /// Parses one line of `SHOW GRANTS FOR account`; `None` for lines about another grantee.
    ///
    /// ```
    /// use rotor_mysql::grants::Grant;
    /// use rotor_mysql::sql::Account;
    /// let app = Account { user: "app".into(), host: "10.0.%".into() };
    /// let line = r"GRANT SELECT, INSERT ON `my\_db`.* TO `app`@`10.0.%` WITH GRANT OPTION";
    /// let clone = Account { user: "app_clone".into(), host: "10.0.%".into() };
    /// assert_eq!(Grant::parse(line, &app).unwrap().grant_sql(&clone).unwrap(),
    ///            r"GRANT SELECT, INSERT ON `my\_db`.* TO `app_clone`@`10.0.%` WITH GRANT OPTION");
    /// let usage = "GRANT USAGE ON *.* TO `app`@`10.0.%` IDENTIFIED BY PASSWORD '*2B60' REQUIRE SSL";
    /// let usage = Grant::parse(usage, &app).unwrap();
    /// assert!(usage.is_usage());
    /// assert!(!usage.grant_sql(&clone).unwrap().contains("PASSWORD"));
    /// assert!(Grant::parse("GRANT SELECT ON `test`.* TO PUBLIC", &app).is_none());
    /// ```
    pub fn parse(line: &str, account: &Account) -> Option<Grant> {
        let tokens = tokenize(line);
        if is_word(line, tokens.first(), "SET") {
            let role_start = tokens.iter().position(|t| is_word(line, Some(t), "ROLE"))? + 1;
            let for_at = tokens.iter().position(|t| is_word(line, Some(t), "FOR"))?;
            if !account_at(line, &tokens, for_at + 1, account) || role_start >= for_at {
                return None;
            }
            let role = line[tokens[role_start].span.start..tokens[for_at - 1].span.end].to_owned();
            return (!role.eq_ignore_ascii_case("NONE")).then_some(Grant::DefaultRole(role));
        }
        if !is_word(line, tokens.first(), "GRANT") {
            return None;
        }
        let to = (1..tokens.len())
            .find(|&i| is_word(line, tokens.get(i), "TO") && account_at(line, &tokens, i + 1, account))?;
        let head = line[..tokens[to].span.start].trim_end().to_owned();
        let rest = &tokens[to + 4..];
        let option = rest.windows(3).find_map(|w| {
            let with = is_word(line, Some(&w[0]), "WITH") && is_word(line, Some(&w[2]), "OPTION");
            match () {
                _ if with && is_word(line, Some(&w[1]), "GRANT") => Some("GRANT"),
                _ if with && is_word(line, Some(&w[1]), "ADMIN") => Some("ADMIN"),
                _ => None,
            }
        });
        Some(Grant::Privileges { head, option })
    }

    /// `GRANT USAGE ON *.*`: the account's existence, not a privilege to copy.
    pub fn is_usage(&self) -> bool {
        matches!(self, Grant::Privileges { head, .. }
            if head.split_whitespace().collect::<Vec<_>>().join(" ").eq_ignore_ascii_case("GRANT USAGE ON *.*"))
    }

    /// The statement giving this grant to `to`.
    pub fn grant_sql(&self, to: &Account) -> Result<String, secret_rotor::Error> {
        Ok(match self {
            Grant::Privileges { head, option } => {
                let option = option.map(|o| format!(" WITH {o} OPTION")).unwrap_or_default();
                format!("{head} TO {}{option}", to.sql()?)
            }
            Grant::DefaultRole(role) => format!("SET DEFAULT ROLE {role} FOR {}", to.sql()?),
        })
    }

    /// The statements taking this grant away from `from`.
    ///
    /// ```
    /// use rotor_mysql::grants::Grant;
    /// use rotor_mysql::sql::Account;
    /// let a = Account { user: "a".into(), host: "%".into() };
    /// let g = Grant::parse("GRANT SELECT (`id`), UPDATE ON `shop`.`orders` TO `a`@`%` WITH GRANT OPTION", &a).unwrap();
    /// assert_eq!(g.revoke_sql(&a).unwrap(), vec![
    ///     "REVOKE SELECT (`id`), UPDATE ON `shop`.`orders` FROM `a`@`%`".to_owned(),
    ///     "REVOKE GRANT OPTION ON `shop`.`orders` FROM `a`@`%`".to_owned(),
    /// ]);
    /// let role = Grant::parse("GRANT `reader` TO `a`@`%`", &a).unwrap();
    /// assert_eq!(role.revoke_sql(&a).unwrap(), vec!["REVOKE `reader` FROM `a`@`%`".to_owned()]);
    /// ```
    pub fn revoke_sql(&self, from: &Account) -> Result<Vec<String>, secret_rotor::Error> {
        let who = from.sql()?;
        Ok(match self {
            Grant::Privileges { head, option } => {
                let body = head.get("GRANT".len()..).unwrap_or_default().trim_start();
                let mut statements = vec![format!("REVOKE {body} FROM {who}")];
                if *option == Some("GRANT") {
                    let tokens = tokenize(body);
                    if let Some(on) = tokens.iter().position(|t| is_word(body, Some(t), "ON")) {
                        let target = body[tokens[on].span.end..].trim();
                        statements.push(format!("REVOKE GRANT OPTION ON {target} FROM {who}"));
                    }
                }
                statements
            }
            Grant::DefaultRole(_) => vec![format!("SET DEFAULT ROLE NONE FOR {who}")],
        })
    }
}

/// The grants of `account` among `SHOW GRANTS` lines, `USAGE` left out.
pub fn grants_of<'a>(lines: impl IntoIterator<Item = &'a str>, account: &Account) -> BTreeSet<Grant> {
    lines
        .into_iter()
        .filter_map(|line| Grant::parse(line, account))
        .filter(|grant| !grant.is_usage())
        .collect()
}

/// The authentication plugin named in an account's own `SHOW GRANTS` (MariaDB prints
/// `IDENTIFIED BY PASSWORD '…'` for native accounts, `IDENTIFIED VIA plugin` for others).
pub fn plugin_in_grants<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<String> {
    for line in lines {
        let tokens = tokenize(line);
        for (i, token) in tokens.iter().enumerate() {
            if !is_word(line, Some(token), "IDENTIFIED") {
                continue;
            }
            if is_word(line, tokens.get(i + 1), "VIA") || is_word(line, tokens.get(i + 1), "WITH") {
                return tokens.get(i + 2).map(|t| unquote(line, t));
            }
            if is_word(line, tokens.get(i + 1), "BY") {
                return Some("mysql_native_password".to_owned());
            }
        }
    }
    None
}

/// The statements that make `clone`'s grants exactly `desired`: revocations of what it has
/// beyond them, then the missing grants (roles before default roles).
pub fn sync_statements(
    desired: &BTreeSet<Grant>,
    actual: &BTreeSet<Grant>,
    clone: &Account,
) -> Result<Vec<String>, secret_rotor::Error> {
    let mut statements = Vec::new();
    for extra in actual.difference(desired) {
        statements.extend(extra.revoke_sql(clone)?);
    }
    for missing in desired.difference(actual) {
        statements.push(missing.grant_sql(clone)?);
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unterminated_one_character_quote_is_no_panic() {
        let app = Account {
            user: "app".into(),
            host: "%".into(),
        };
        for line in [
            "GRANT SELECT ON *.* TO 'app'@'",
            "GRANT SELECT ON *.* TO `app`@`",
            "GRANT SELECT ON *.* TO \"",
            "GRANT PROXY ON ''@'' TO 'app'@'%' WITH GRANT OPTION '",
            "'",
        ] {
            let _ = Grant::parse(line, &app);
        }
    }

    use super::*;

    fn account(user: &str, host: &str) -> Account {
        Account {
            user: user.into(),
            host: host.into(),
        }
    }

    #[test]
    fn mariadb_show_grants_are_copied_exactly() {
        let app = account("app", "10.0.%");
        let lines = [
            "GRANT `xrole` TO `app`@`10.0.%`",
            "GRANT USAGE ON *.* TO `app`@`10.0.%` IDENTIFIED BY PASSWORD '*2B602296A79E0A8784ACC5C88D92E46588CCA3C3' REQUIRE SSL",
            r"GRANT SELECT, INSERT ON `my\_db`.* TO `app`@`10.0.%` WITH GRANT OPTION",
            "GRANT SELECT ON `sh%`.* TO `app`@`10.0.%`",
            "GRANT SELECT (`id`), UPDATE ON `shop`.`orders` TO `app`@`10.0.%`",
            "GRANT EXECUTE ON PROCEDURE `shop`.`p` TO `app`@`10.0.%`",
            "GRANT SELECT ON `test`.* TO PUBLIC",
            "GRANT SELECT ON `other`.* TO `app`@`%`",
            "SET DEFAULT ROLE `xrole` FOR `app`@`10.0.%`",
        ];
        let desired = grants_of(lines, &app);
        let clone = account("app_clone", "10.0.%");
        let statements = sync_statements(&desired, &BTreeSet::new(), &clone).unwrap();
        assert_eq!(
            statements,
            vec![
                "GRANT EXECUTE ON PROCEDURE `shop`.`p` TO `app_clone`@`10.0.%`",
                "GRANT SELECT (`id`), UPDATE ON `shop`.`orders` TO `app_clone`@`10.0.%`",
                "GRANT SELECT ON `sh%`.* TO `app_clone`@`10.0.%`",
                r"GRANT SELECT, INSERT ON `my\_db`.* TO `app_clone`@`10.0.%` WITH GRANT OPTION",
                "GRANT `xrole` TO `app_clone`@`10.0.%`",
                "SET DEFAULT ROLE `xrole` FOR `app_clone`@`10.0.%`",
            ]
        );
        assert!(statements
            .iter()
            .all(|s| !s.contains("PASSWORD") && !s.contains("REQUIRE")));
    }

    #[test]
    fn sync_revokes_extras_and_fixes_changed_grants() {
        let app = account("app", "%");
        let clone = account("app_clone", "%");
        let desired = grants_of(["GRANT SELECT, INSERT ON `db`.* TO `app`@`%`"], &app);
        let actual = grants_of(
            [
                "GRANT SELECT ON `db`.* TO `app_clone`@`%`",
                "GRANT DELETE ON `x`.* TO `app_clone`@`%` WITH GRANT OPTION",
            ],
            &clone,
        );
        assert_eq!(
            sync_statements(&desired, &actual, &clone).unwrap(),
            vec![
                "REVOKE DELETE ON `x`.* FROM `app_clone`@`%`",
                "REVOKE GRANT OPTION ON `x`.* FROM `app_clone`@`%`",
                "REVOKE SELECT ON `db`.* FROM `app_clone`@`%`",
                "GRANT SELECT, INSERT ON `db`.* TO `app_clone`@`%`",
            ]
        );
        assert!(sync_statements(&desired, &desired, &clone).unwrap().is_empty());
    }

    #[test]
    fn grantee_names_with_quotes_and_at_signs_match_exactly() {
        let weird = account("we`ird@x'y", "h%");
        let line = "GRANT SELECT ON `d`.* TO `we``ird@x'y`@`h%`";
        assert!(Grant::parse(line, &weird).is_some());
        assert!(Grant::parse(line, &account("we`ird@x'y", "%")).is_none());
        let quoted = "GRANT SELECT ON `d`.* TO 'we`ird@x\\'y'@'h%'";
        assert!(Grant::parse(quoted, &weird).is_some());
    }

    #[test]
    fn plugin_is_read_from_mariadb_grants() {
        let native = ["GRANT USAGE ON *.* TO `a`@`%` IDENTIFIED BY PASSWORD '*2B60'"];
        assert_eq!(plugin_in_grants(native).as_deref(), Some("mysql_native_password"));
        let ed = ["GRANT USAGE ON *.* TO `a`@`%` IDENTIFIED VIA ed25519 USING 'abc'"];
        assert_eq!(plugin_in_grants(ed).as_deref(), Some("ed25519"));
        assert_eq!(plugin_in_grants(["GRANT USAGE ON *.* TO `a`@`%`"]), None);
    }
}
