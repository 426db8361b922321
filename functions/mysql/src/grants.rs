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
    /// MySQL 8: the `DEFAULT ROLE` list of `SHOW CREATE USER` (in `mysql.default_roles`, not
    /// printed by `SHOW GRANTS`), as SQL: `` `r1`@`%`,`r2`@`%` ``.
    MySqlDefaultRoles(String),
    /// MySQL 8 with `partial_revokes`: `REVOKE <privileges> ON <schema>.*`, the part between
    /// `REVOKE` and `FROM`; replayed after the grants it restricts.
    PartialRevoke(String),
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
        if is_word(line, tokens.first(), "REVOKE") {
            let from = (1..tokens.len()).find(|&i| {
                is_word(line, tokens.get(i), "FROM") && account_at(line, &tokens, i + 1, account)
            })?;
            let body = line[tokens[0].span.end..tokens[from].span.start]
                .trim()
                .to_owned();
            return Some(Grant::PartialRevoke(body));
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
            Grant::MySqlDefaultRoles(roles) => format!("SET DEFAULT ROLE {roles} TO {}", to.sql()?),
            Grant::PartialRevoke(body) => format!("REVOKE {body} FROM {}", to.sql()?),
        })
    }

    /// The statement as a person reads it, without a grantee: for error messages.
    pub fn describe(&self) -> String {
        match self {
            Grant::Privileges { head, option } => match option {
                Some(option) => format!("{head} WITH {option} OPTION"),
                None => head.clone(),
            },
            Grant::DefaultRole(role) => format!("SET DEFAULT ROLE {role}"),
            Grant::MySqlDefaultRoles(roles) => format!("DEFAULT ROLE {roles}"),
            Grant::PartialRevoke(body) => format!("REVOKE {body}"),
        }
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
                // A proxy grant goes whole, its grant option with it.
                let proxy = tokenize(body)
                    .first()
                    .is_some_and(|t| body[t.span.clone()].eq_ignore_ascii_case("PROXY"));
                if *option == Some("GRANT") && !proxy {
                    let tokens = tokenize(body);
                    if let Some(on) = tokens.iter().position(|t| is_word(body, Some(t), "ON")) {
                        let target = body[tokens[on].span.end..].trim();
                        statements.push(format!("REVOKE GRANT OPTION ON {target} FROM {who}"));
                    }
                }
                statements
            }
            Grant::DefaultRole(_) => vec![format!("SET DEFAULT ROLE NONE FOR {who}")],
            Grant::MySqlDefaultRoles(_) => vec![format!("SET DEFAULT ROLE NONE TO {who}")],
            // Lifting a partial revoke is granting back what it took away, on that schema.
            Grant::PartialRevoke(body) => vec![format!("GRANT {body} TO {who}")],
        })
    }
}

/// MySQL 8: the `DEFAULT ROLE` clause of `SHOW CREATE USER`, as a grant; `None` when the
/// statement has none.
///
/// ```
/// use rotor_mysql::grants::{default_roles_in_create_user, Grant};
/// let sql = "CREATE USER `app`@`%` IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$x' \
///            DEFAULT ROLE `reader`@`%`,`writer`@`%` REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK";
/// assert_eq!(default_roles_in_create_user(sql),
///            Some(Grant::MySqlDefaultRoles("`reader`@`%`,`writer`@`%`".into())));
/// assert_eq!(default_roles_in_create_user("CREATE USER `app`@`%` REQUIRE NONE"), None);
/// ```
pub fn default_roles_in_create_user(statement: &str) -> Option<Grant> {
    let tokens = tokenize(statement);
    let start = (0..tokens.len()).find(|&i| {
        is_word(statement, tokens.get(i), "DEFAULT") && is_word(statement, tokens.get(i + 1), "ROLE")
    })? + 2;
    // The list is `role@host` items separated by commas; it ends at the next keyword.
    let mut end = start;
    let mut item = start;
    while tokens.get(item + 1).is_some_and(|t| t.kind == Kind::Symbol('@')) && tokens.get(item + 2).is_some()
    {
        end = item + 3;
        match tokens.get(end) {
            Some(comma) if comma.kind == Kind::Symbol(',') => item = end + 1,
            _ => break,
        }
    }
    if end == start {
        return None;
    }
    Some(Grant::MySqlDefaultRoles(
        statement[tokens[start].span.start..tokens[end - 1].span.end].to_owned(),
    ))
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

/// The differences between two accounts' grants, as a person reads them: what `other` lacks,
/// then what it has beyond `reference`. Empty when they hold exactly the same.
pub fn differences(reference: &BTreeSet<Grant>, other: &BTreeSet<Grant>) -> Vec<String> {
    reference
        .difference(other)
        .map(|grant| format!("missing {}", grant.describe()))
        .chain(
            other
                .difference(reference)
                .map(|grant| format!("extra {}", grant.describe())),
        )
        .collect()
}

/// The statements that make `clone`'s grants exactly `desired`: revocations of what it has
/// beyond them, then the missing grants (roles before default roles, partial revokes after the
/// grants they restrict: the order of [`Grant`]'s variants).
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
    fn mysql_8_partial_revokes_are_replayed_after_the_grants_they_restrict() {
        let app = account("app", "%");
        let clone = account("app_clone", "%");
        let lines = [
            "GRANT SELECT, INSERT ON *.* TO `app`@`%`",
            "REVOKE SELECT, INSERT ON `mysql`.* FROM `app`@`%`",
            "GRANT `reader`@`%` TO `app`@`%`",
            "REVOKE SELECT ON `other`.* FROM `someone`@`%`",
        ];
        let desired = grants_of(lines, &app);
        assert_eq!(
            sync_statements(&desired, &BTreeSet::new(), &clone).unwrap(),
            vec![
                "GRANT SELECT, INSERT ON *.* TO `app_clone`@`%`",
                "GRANT `reader`@`%` TO `app_clone`@`%`",
                "REVOKE SELECT, INSERT ON `mysql`.* FROM `app_clone`@`%`",
            ]
        );
        // A partial revoke the clone has and the original has not is lifted.
        let actual = grants_of(
            [
                "GRANT SELECT, INSERT ON *.* TO `app_clone`@`%`",
                "GRANT `reader`@`%` TO `app_clone`@`%`",
                "REVOKE SELECT, INSERT ON `mysql`.* FROM `app_clone`@`%`",
                "REVOKE DELETE ON `shop`.* FROM `app_clone`@`%`",
            ],
            &clone,
        );
        assert_eq!(
            sync_statements(&desired, &actual, &clone).unwrap(),
            vec!["GRANT DELETE ON `shop`.* TO `app_clone`@`%`"]
        );
        assert_eq!(
            differences(&desired, &actual),
            vec!["extra REVOKE DELETE ON `shop`.*"]
        );
    }

    #[test]
    fn mysql_8_default_roles_and_proxy_grants() {
        let clone = account("app_clone", "%");
        let roles = default_roles_in_create_user(
            "CREATE USER `app`@`%` IDENTIFIED WITH 'mysql_native_password' AS '*2B60' \
             DEFAULT ROLE `reader`@`%` REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK",
        )
        .unwrap();
        assert_eq!(
            roles.grant_sql(&clone).unwrap(),
            "SET DEFAULT ROLE `reader`@`%` TO `app_clone`@`%`"
        );
        assert_eq!(
            roles.revoke_sql(&clone).unwrap(),
            vec!["SET DEFAULT ROLE NONE TO `app_clone`@`%`"]
        );
        let app = account("app", "%");
        let proxy = Grant::parse("GRANT PROXY ON ''@'' TO 'app'@'%' WITH GRANT OPTION", &app).unwrap();
        assert_eq!(
            proxy.grant_sql(&clone).unwrap(),
            "GRANT PROXY ON ''@'' TO `app_clone`@`%` WITH GRANT OPTION"
        );
        assert_eq!(
            proxy.revoke_sql(&clone).unwrap(),
            vec!["REVOKE PROXY ON ''@'' FROM `app_clone`@`%`"]
        );
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
