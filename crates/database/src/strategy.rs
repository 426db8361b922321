//! The rotation strategy of a deployed function (`ROTATION_STRATEGY`) and the alternating
//! users' names.

use std::fmt;

use secret_rotor::Error;

/// The suffix of the second user of the alternating-users strategy.
pub const CLONE_SUFFIX: &str = "_clone";

/// How a function rotates its secrets; one deployed function serves many secrets of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The user changes its own password (`single-user`, the default).
    #[default]
    SingleUser,
    /// Two users, `app` and `app_clone`, take turns; a master secret changes the passwords
    /// (`alternating-users`), so the previous credentials keep working until the next rotation.
    AlternatingUsers,
}

impl Strategy {
    /// Reads `ROTATION_STRATEGY` through `lookup`.
    ///
    /// ```
    /// use rotor_database::Strategy;
    /// assert_eq!(Strategy::from_lookup(|_| None).unwrap(), Strategy::SingleUser);
    /// let env = |_: &str| Some("alternating-users".to_owned());
    /// assert_eq!(Strategy::from_lookup(env).unwrap(), Strategy::AlternatingUsers);
    /// let bad = |_: &str| Some("round-robin".to_owned());
    /// assert!(Strategy::from_lookup(bad).unwrap_err().to_string().contains("ROTATION_STRATEGY"));
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        match lookup("ROTATION_STRATEGY") {
            None => Ok(Self::default()),
            Some(value) => match value.trim().to_ascii_lowercase().replace('_', "-").as_str() {
                "" | "single-user" | "single" => Ok(Self::SingleUser),
                "alternating-users" | "alternating" | "multi-user" => Ok(Self::AlternatingUsers),
                _ => Err(Error::configuration(format!(
                    "ROTATION_STRATEGY={value:?} is not `single-user` or `alternating-users`"
                ))),
            },
        }
    }

    /// Reads `ROTATION_STRATEGY` from the environment.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The name used in `ROTATION_STRATEGY` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::SingleUser => "single-user",
            Strategy::AlternatingUsers => "alternating-users",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The two users of the alternating strategy, whichever of them is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPair {
    /// The user the secret started with (`app`).
    pub original: String,
    /// The second user (`app_clone`), a member of / granted the same as the original.
    pub clone_user: String,
}

impl UserPair {
    /// The pair that `username` belongs to.
    ///
    /// ```
    /// use rotor_database::UserPair;
    /// let pair = UserPair::of("app_clone");
    /// assert_eq!((pair.original.as_str(), pair.clone_user.as_str()), ("app", "app_clone"));
    /// assert_eq!(pair.other("app_clone"), "app");
    /// assert_eq!(UserPair::of("app").other("app"), "app_clone");
    /// ```
    pub fn of(username: &str) -> Self {
        match username.strip_suffix(CLONE_SUFFIX) {
            Some(original) if !original.is_empty() => Self {
                original: original.to_owned(),
                clone_user: username.to_owned(),
            },
            _ => Self {
                original: username.to_owned(),
                clone_user: format!("{username}{CLONE_SUFFIX}"),
            },
        }
    }

    /// The user that is not `username`.
    pub fn other(&self, username: &str) -> &str {
        if username == self.clone_user {
            &self.original
        } else {
            &self.clone_user
        }
    }

    /// Whether `username` is the clone.
    pub fn is_clone(&self, username: &str) -> bool {
        username == self.clone_user
    }
}
