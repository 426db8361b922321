//! The password policy (the reference functions' environment variables) and its two sources.
//!
//! Both sources produce passwords from the same [`PasswordPolicy`]: Secrets Manager's
//! `GetRandomPassword` (the default, as the reference functions do) and a local generator on the
//! operating system's CSPRNG (`PASSWORD_SOURCE=local`), which saves one network round trip per
//! rotation. Every password, whatever its source, is checked against the policy before use.

use std::fmt;

use crate::error::Error;
use crate::secret::SecretString;
use crate::store::SecretsStore;

/// The characters of each class, as `GetRandomPassword` defines them.
const LOWERCASE: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPERCASE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const NUMBERS: &str = "0123456789";
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// `GetRandomPassword` accepts lengths 1 to 4096.
const MAX_LENGTH: usize = 4096;

/// A character class of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    /// `a`–`z`.
    Lowercase,
    /// `A`–`Z`.
    Uppercase,
    /// `0`–`9`.
    Numbers,
    /// The 32 ASCII punctuation characters.
    Punctuation,
}

impl CharClass {
    const ALL: [CharClass; 4] = [
        CharClass::Lowercase,
        CharClass::Uppercase,
        CharClass::Numbers,
        CharClass::Punctuation,
    ];

    fn characters(self) -> &'static str {
        match self {
            CharClass::Lowercase => LOWERCASE,
            CharClass::Uppercase => UPPERCASE,
            CharClass::Numbers => NUMBERS,
            CharClass::Punctuation => PUNCTUATION,
        }
    }

    fn variable(self) -> &'static str {
        match self {
            CharClass::Lowercase => "EXCLUDE_LOWERCASE",
            CharClass::Uppercase => "EXCLUDE_UPPERCASE",
            CharClass::Numbers => "EXCLUDE_NUMBERS",
            CharClass::Punctuation => "EXCLUDE_PUNCTUATION",
        }
    }

    fn name(self) -> &'static str {
        match self {
            CharClass::Lowercase => "lowercase letters",
            CharClass::Uppercase => "uppercase letters",
            CharClass::Numbers => "numbers",
            CharClass::Punctuation => "punctuation",
        }
    }

    fn of(c: char) -> Option<CharClass> {
        CharClass::ALL
            .into_iter()
            .find(|class| class.characters().contains(c))
    }
}

/// What a generated password must look like: CONTRACT §5, with the reference's variable names.
///
/// ```
/// use secret_rotor::PasswordPolicy;
/// let env = |name: &str| match name {
///     "PASSWORD_LENGTH" => Some("20".to_owned()),
///     "EXCLUDE_PUNCTUATION" => Some("Yes".to_owned()),
///     _ => None,
/// };
/// let policy = PasswordPolicy::from_lookup(env, ":/@\"'\\").unwrap();
/// assert_eq!(policy.length, 20);
/// assert!(policy.exclude_punctuation && policy.require_each_included_type);
/// let password = policy.generate_local().unwrap();
/// assert_eq!(password.len(), 20);
/// policy.check(&password).unwrap();
///
/// let bad = |name: &str| (name == "PASSWORD_LENGTH").then(|| "abc".to_owned());
/// let err = PasswordPolicy::from_lookup(bad, "").unwrap_err();
/// assert!(err.to_string().contains("PASSWORD_LENGTH"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// `PASSWORD_LENGTH` (default 32).
    pub length: usize,
    /// `EXCLUDE_CHARACTERS` (default per engine).
    pub exclude_characters: String,
    /// `EXCLUDE_NUMBERS`.
    pub exclude_numbers: bool,
    /// `EXCLUDE_PUNCTUATION`.
    pub exclude_punctuation: bool,
    /// `EXCLUDE_UPPERCASE`.
    pub exclude_uppercase: bool,
    /// `EXCLUDE_LOWERCASE`.
    pub exclude_lowercase: bool,
    /// `REQUIRE_EACH_INCLUDED_TYPE` (default true).
    pub require_each_included_type: bool,
}

impl fmt::Debug for PasswordPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordPolicy")
            .field("length", &self.length)
            .field("exclude_characters", &self.exclude_characters)
            .field("exclude_numbers", &self.exclude_numbers)
            .field("exclude_punctuation", &self.exclude_punctuation)
            .field("exclude_uppercase", &self.exclude_uppercase)
            .field("exclude_lowercase", &self.exclude_lowercase)
            .field("require_each_included_type", &self.require_each_included_type)
            .finish()
    }
}

impl PasswordPolicy {
    /// The policy with the reference's defaults and `exclude_characters` as given.
    pub fn with_defaults(exclude_characters: &str) -> Self {
        Self {
            length: 32,
            exclude_characters: exclude_characters.to_owned(),
            exclude_numbers: false,
            exclude_punctuation: false,
            exclude_uppercase: false,
            exclude_lowercase: false,
            require_each_included_type: true,
        }
    }

    /// Reads the policy from the process environment; `default_exclude` is the engine's default
    /// for `EXCLUDE_CHARACTERS`.
    pub fn from_env(default_exclude: &str) -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok(), default_exclude)
    }

    /// Reads the policy through `lookup` (an environment), validates it, and names the variable
    /// at fault in any error.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        default_exclude: &str,
    ) -> Result<Self, Error> {
        let flag = |name: &str, default: bool| -> Result<bool, Error> {
            match lookup(name) {
                None => Ok(default),
                Some(value) => parse_flag(&value).ok_or_else(|| {
                    Error::configuration(format!(
                        "{name}={value:?} is not a boolean (use true/1/y/yes or false/0/n/no)"
                    ))
                }),
            }
        };
        let length = match lookup("PASSWORD_LENGTH") {
            None => 32,
            Some(value) => value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LENGTH).contains(n))
                .ok_or_else(|| {
                    Error::configuration(format!(
                        "PASSWORD_LENGTH={value:?} is not a whole number from 1 to {MAX_LENGTH}"
                    ))
                })?,
        };
        let policy = Self {
            length,
            exclude_characters: lookup("EXCLUDE_CHARACTERS").unwrap_or_else(|| default_exclude.to_owned()),
            exclude_numbers: flag("EXCLUDE_NUMBERS", false)?,
            exclude_punctuation: flag("EXCLUDE_PUNCTUATION", false)?,
            exclude_uppercase: flag("EXCLUDE_UPPERCASE", false)?,
            exclude_lowercase: flag("EXCLUDE_LOWERCASE", false)?,
            require_each_included_type: flag("REQUIRE_EACH_INCLUDED_TYPE", true)?,
        };
        policy.validate()?;
        Ok(policy)
    }

    fn class_excluded(&self, class: CharClass) -> bool {
        match class {
            CharClass::Lowercase => self.exclude_lowercase,
            CharClass::Uppercase => self.exclude_uppercase,
            CharClass::Numbers => self.exclude_numbers,
            CharClass::Punctuation => self.exclude_punctuation,
        }
    }

    /// The included classes, each with the characters `EXCLUDE_CHARACTERS` leaves in it.
    fn alphabet(&self) -> Vec<(CharClass, Vec<u8>)> {
        CharClass::ALL
            .into_iter()
            .filter(|class| !self.class_excluded(*class))
            .map(|class| {
                let chars = class
                    .characters()
                    .bytes()
                    .filter(|b| !self.exclude_characters.contains(char::from(*b)))
                    .collect();
                (class, chars)
            })
            .collect()
    }

    /// Checks that passwords can be generated at all; the error names the variable to change.
    pub fn validate(&self) -> Result<(), Error> {
        let alphabet = self.alphabet();
        if alphabet.is_empty() {
            return Err(Error::configuration(
                "EXCLUDE_NUMBERS, EXCLUDE_PUNCTUATION, EXCLUDE_UPPERCASE and EXCLUDE_LOWERCASE exclude every character class",
            ));
        }
        if let Some((class, _)) = alphabet.iter().find(|(_, chars)| chars.is_empty()) {
            return Err(Error::configuration(format!(
                "EXCLUDE_CHARACTERS removes every one of the {}; set {}=true to exclude the class instead",
                class.name(),
                class.variable()
            )));
        }
        if self.require_each_included_type && self.length < alphabet.len() {
            return Err(Error::configuration(format!(
                "PASSWORD_LENGTH={} is shorter than the {} character classes REQUIRE_EACH_INCLUDED_TYPE requires",
                self.length,
                alphabet.len()
            )));
        }
        Ok(())
    }

    /// Checks a password against the policy; the error says which rule failed, never the value.
    pub fn check(&self, password: &SecretString) -> Result<(), Error> {
        let password = password.expose();
        let count = password.chars().count();
        if count != self.length {
            return Err(Error::transient(format!(
                "generated password has {count} characters, the policy asks for {}",
                self.length
            )));
        }
        let alphabet = self.alphabet();
        let mut seen = [false; 4];
        for c in password.chars() {
            let allowed = CharClass::of(c)
                .filter(|class| !self.class_excluded(*class))
                .is_some_and(|_| !self.exclude_characters.contains(c));
            if !allowed {
                return Err(Error::transient(
                    "generated password contains a character the policy excludes",
                ));
            }
            if let Some(class) = CharClass::of(c) {
                seen[class as usize] = true;
            }
        }
        if self.require_each_included_type {
            if let Some((class, _)) = alphabet.iter().find(|(class, _)| !seen[*class as usize]) {
                return Err(Error::transient(format!(
                    "generated password has no {} though REQUIRE_EACH_INCLUDED_TYPE is set",
                    class.name()
                )));
            }
        }
        Ok(())
    }

    /// A password from the operating system's CSPRNG, uniform over all passwords the policy
    /// allows (rejection sampling, so no class or position is favoured).
    pub fn generate_local(&self) -> Result<SecretString, Error> {
        self.validate()?;
        let alphabet = self.alphabet();
        let all: Vec<u8> = alphabet
            .iter()
            .flat_map(|(_, chars)| chars.iter().copied())
            .collect();
        let mut random = RandomBytes::default();
        loop {
            let mut password = String::with_capacity(self.length);
            for _ in 0..self.length {
                password.push(char::from(all[random.below(all.len())?]));
            }
            let password = SecretString::new(password);
            if !self.require_each_included_type
                || alphabet
                    .iter()
                    .all(|(_, chars)| password.expose().bytes().any(|b| chars.contains(&b)))
            {
                return Ok(password);
            }
        }
    }
}

/// Parses the reference's truthy values, and their opposites; anything else is `None`.
fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "y" | "yes" => Some(true),
        "false" | "0" | "n" | "no" | "" => Some(false),
        _ => None,
    }
}

/// Buffered OS randomness, zeroized on drop because it becomes password characters.
#[derive(Default)]
struct RandomBytes {
    buffer: zeroize::Zeroizing<Vec<u8>>,
}

impl RandomBytes {
    /// A uniform index below `n` (`n` ≤ 256), by rejecting the bytes that would bias it.
    fn below(&mut self, n: usize) -> Result<usize, Error> {
        let limit = 256 - 256 % n;
        loop {
            if self.buffer.is_empty() {
                self.buffer.resize(256, 0);
                getrandom::fill(&mut self.buffer).map_err(|e| {
                    Error::transient(format!("the operating system's random source failed: {e}"))
                })?;
            }
            let byte = usize::from(self.buffer.pop().unwrap_or_default());
            if byte < limit {
                return Ok(byte % n);
            }
        }
    }
}

/// Where new passwords come from (`PASSWORD_SOURCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordSource {
    /// `GetRandomPassword` (`PASSWORD_SOURCE=secretsmanager`, the default).
    #[default]
    SecretsManager,
    /// The local CSPRNG (`PASSWORD_SOURCE=local`): one network round trip fewer.
    Local,
}

impl PasswordSource {
    /// Reads `PASSWORD_SOURCE` through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        match lookup("PASSWORD_SOURCE") {
            None => Ok(Self::default()),
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "" | "secretsmanager" | "secrets-manager" => Ok(Self::SecretsManager),
                "local" => Ok(Self::Local),
                _ => Err(Error::configuration(format!(
                    "PASSWORD_SOURCE={value:?} is not `secretsmanager` or `local`"
                ))),
            },
        }
    }
}

/// The password generator an engine calls through [`Context::new_password`]: one policy, one
/// source, configured once per process.
///
/// [`Context::new_password`]: crate::Context::new_password
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwords {
    policy: PasswordPolicy,
    source: PasswordSource,
}

impl Passwords {
    /// A generator with the given policy and source.
    pub fn new(policy: PasswordPolicy, source: PasswordSource) -> Self {
        Self { policy, source }
    }

    /// Reads the policy and `PASSWORD_SOURCE` from the environment.
    pub fn from_env(default_exclude: &str) -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok(), default_exclude)
    }

    /// Reads the policy and `PASSWORD_SOURCE` through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        default_exclude: &str,
    ) -> Result<Self, Error> {
        Ok(Self::new(
            PasswordPolicy::from_lookup(&lookup, default_exclude)?,
            PasswordSource::from_lookup(&lookup)?,
        ))
    }

    /// The policy.
    pub fn policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    /// The source.
    pub fn source(&self) -> PasswordSource {
        self.source
    }

    /// A new password that honours the policy, whichever source made it.
    pub async fn generate(&self, store: &dyn SecretsStore) -> Result<SecretString, Error> {
        let password = match self.source {
            PasswordSource::Local => self.policy.generate_local()?,
            PasswordSource::SecretsManager => store.random_password(&self.policy).await?,
        };
        self.policy.check(&password)?;
        Ok(password)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn invalid_settings_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("PASSWORD_LENGTH", "abc")], "PASSWORD_LENGTH"),
            (&[("PASSWORD_LENGTH", "0")], "PASSWORD_LENGTH"),
            (&[("PASSWORD_LENGTH", "4097")], "PASSWORD_LENGTH"),
            (
                &[("PASSWORD_LENGTH", "3")],
                "PASSWORD_LENGTH=3 is shorter than the 4",
            ),
            (&[("EXCLUDE_NUMBERS", "maybe")], "EXCLUDE_NUMBERS"),
            (
                &[("REQUIRE_EACH_INCLUDED_TYPE", "sure")],
                "REQUIRE_EACH_INCLUDED_TYPE",
            ),
            (
                &[
                    ("EXCLUDE_NUMBERS", "1"),
                    ("EXCLUDE_PUNCTUATION", "y"),
                    ("EXCLUDE_UPPERCASE", "YES"),
                    ("EXCLUDE_LOWERCASE", "True"),
                ],
                "exclude every character class",
            ),
            (
                &[("EXCLUDE_CHARACTERS", "0123456789")],
                "set EXCLUDE_NUMBERS=true",
            ),
        ];
        for (vars, expected) in cases {
            let err = PasswordPolicy::from_lookup(env(vars), "").unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Configuration);
            assert!(err.to_string().contains(expected), "{vars:?}: {err}");
        }
        let err = PasswordSource::from_lookup(env(&[("PASSWORD_SOURCE", "kms")])).unwrap_err();
        assert!(err.to_string().contains("PASSWORD_SOURCE"));
    }

    #[test]
    fn defaults_match_the_reference() {
        let policy = PasswordPolicy::from_lookup(env(&[]), ":/@\"'\\").unwrap();
        assert_eq!(policy, PasswordPolicy::with_defaults(":/@\"'\\"));
        let policy = PasswordPolicy::from_lookup(env(&[("EXCLUDE_CHARACTERS", "")]), "abc").unwrap();
        assert_eq!(policy.exclude_characters, "");
        assert_eq!(
            PasswordSource::from_lookup(env(&[])).unwrap(),
            PasswordSource::SecretsManager
        );
        assert_eq!(
            PasswordSource::from_lookup(env(&[("PASSWORD_SOURCE", "Local")])).unwrap(),
            PasswordSource::Local
        );
    }

    #[test]
    fn check_rejects_what_the_policy_forbids() {
        let policy = PasswordPolicy {
            length: 4,
            ..PasswordPolicy::with_defaults("@")
        };
        policy.check(&"aB3!".into()).unwrap();
        for bad in ["aB3", "aB3@", "aB34", "aB3é"] {
            assert!(policy.check(&bad.into()).is_err(), "{bad}");
        }
    }

    fn arbitrary_policy() -> impl Strategy<Value = PasswordPolicy> {
        (
            1usize..80,
            proptest::collection::vec(proptest::char::range('!', '~'), 0..40),
            any::<[bool; 5]>(),
        )
            .prop_map(|(length, exclude, flags)| PasswordPolicy {
                length,
                exclude_characters: exclude.into_iter().collect(),
                exclude_numbers: flags[0],
                exclude_punctuation: flags[1],
                exclude_uppercase: flags[2],
                exclude_lowercase: flags[3],
                require_each_included_type: flags[4],
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn local_passwords_honour_every_valid_policy(policy in arbitrary_policy()) {
            match policy.validate() {
                Ok(()) => {
                    let password = policy.generate_local().unwrap();
                    prop_assert!(policy.check(&password).is_ok(), "{:?}", policy);
                }
                Err(err) => prop_assert_eq!(err.kind(), crate::ErrorKind::Configuration),
            }
        }
    }
}
