//! The values of one rotation's versions, kept between its steps in a warm process.
//!
//! A secret version's value never changes once written, so a value read (or written) by one step
//! of a rotation is the value a later step of the same rotation would read: setSecret and
//! testSecret then make no `GetSecretValue` call at all when they run in the process that ran
//! createSecret. What is kept, and for how long, is bounded:
//!
//! - keyed by the secret's ARN (as `DescribeSecret` answers it, so a deleted and re-created secret
//!   of the same name is another key) and the version id, never by a label, which moves;
//! - only versions the preamble named (by id) are read through it, never another secret;
//! - every entry of a secret is dropped when its rotation finishes or a step of it fails (a retry
//!   reads afresh), entries idle for [`IDLE_LIMIT`] are dropped, and at most [`CAPACITY`] are kept
//!   (the least recently used goes first);
//! - values are [`SecretString`]s: zeroized when dropped.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::secret::SecretString;

/// How long an entry may sit unused. The steps of one rotation follow each other within
/// seconds; a long SSH step is the only thing that waits longer, and it then reads again.
pub const IDLE_LIMIT: Duration = Duration::from_secs(120);

/// The most values kept at once: a few rotations' worth (each uses up to three versions).
pub const CAPACITY: usize = 16;

struct Entry {
    secret: String,
    version: String,
    value: SecretString,
    used: Instant,
}

/// Version values by (secret ARN, version id), shared by the invocations of one process.
#[derive(Default)]
pub struct ValueCache {
    entries: Mutex<Vec<Entry>>,
}

impl ValueCache {
    /// An empty cache (a cold process).
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // A panic while holding the lock leaves a list that is still well formed.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value of `version` of `secret`, if this process read or wrote it recently.
    pub fn get(&self, secret: &str, version: &str) -> Option<SecretString> {
        self.get_at(secret, version, Instant::now())
    }

    fn get_at(&self, secret: &str, version: &str, now: Instant) -> Option<SecretString> {
        let mut entries = self.entries();
        entries.retain(|e| now.saturating_duration_since(e.used) < IDLE_LIMIT);
        let entry = entries
            .iter_mut()
            .find(|e| e.secret == secret && e.version == version)?;
        entry.used = now;
        Some(entry.value.clone())
    }

    /// Keeps `value` as the value of `version` of `secret`.
    pub fn put(&self, secret: &str, version: &str, value: &SecretString) {
        self.put_at(secret, version, value, Instant::now());
    }

    fn put_at(&self, secret: &str, version: &str, value: &SecretString, now: Instant) {
        let mut entries = self.entries();
        entries.retain(|e| {
            now.saturating_duration_since(e.used) < IDLE_LIMIT
                && !(e.secret == secret && e.version == version)
        });
        if entries.len() >= CAPACITY {
            if let Some(oldest) = entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i)
            {
                entries.swap_remove(oldest);
            }
        }
        entries.push(Entry {
            secret: secret.to_owned(),
            version: version.to_owned(),
            value: value.clone(),
            used: now,
        });
    }

    /// Drops every value of `secret`: its rotation finished or a step failed.
    pub fn forget(&self, secret: &str) {
        self.entries().retain(|e| e.secret != secret);
    }

    /// How many values are kept now.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> SecretString {
        SecretString::from(text)
    }

    #[test]
    fn a_value_is_served_only_for_its_own_secret_and_version() {
        let cache = ValueCache::new();
        cache.put("arn:a", "v1", &value("a1"));
        cache.put("arn:b", "v1", &value("b1"));
        cache.put("arn:a", "v2", &value("a2"));
        assert_eq!(
            cache.get("arn:a", "v1").as_ref().map(SecretString::expose),
            Some("a1")
        );
        assert_eq!(
            cache.get("arn:b", "v1").as_ref().map(SecretString::expose),
            Some("b1")
        );
        assert_eq!(
            cache.get("arn:a", "v2").as_ref().map(SecretString::expose),
            Some("a2")
        );
        assert!(cache.get("arn:b", "v2").is_none());
        assert!(cache.get("arn:a", "v3").is_none());
        assert!(cache.get("arn:a:v1", "").is_none());
    }

    #[test]
    fn forgetting_a_secret_keeps_the_others() {
        let cache = ValueCache::new();
        cache.put("arn:a", "v1", &value("a1"));
        cache.put("arn:a", "v2", &value("a2"));
        cache.put("arn:b", "v1", &value("b1"));
        cache.forget("arn:a");
        assert!(cache.get("arn:a", "v1").is_none());
        assert!(cache.get("arn:a", "v2").is_none());
        assert!(cache.get("arn:b", "v1").is_some());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn idle_entries_expire_and_use_keeps_them() {
        let cache = ValueCache::new();
        let start = Instant::now();
        cache.put_at("arn:a", "v1", &value("a1"), start);
        cache.put_at("arn:a", "v2", &value("a2"), start);
        let almost = start + IDLE_LIMIT - Duration::from_secs(1);
        assert!(cache.get_at("arn:a", "v1", almost).is_some());
        let later = start + IDLE_LIMIT + Duration::from_secs(1);
        assert!(
            cache.get_at("arn:a", "v1", later).is_some(),
            "used at `almost`, so not idle"
        );
        assert!(cache.get_at("arn:a", "v2", later).is_none(), "idle since `start`");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_least_recently_used_goes_when_full() {
        let cache = ValueCache::new();
        let start = Instant::now();
        for i in 0..CAPACITY {
            let at = start + Duration::from_millis(i as u64);
            cache.put_at("arn:a", &format!("v{i}"), &value("x"), at);
        }
        // v0 is used again, so v1 is now the least recently used.
        let touched = start + Duration::from_millis(CAPACITY as u64);
        assert!(cache.get_at("arn:a", "v0", touched).is_some());
        cache.put_at("arn:a", "new", &value("y"), touched + Duration::from_millis(1));
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.get_at("arn:a", "v1", touched).is_none());
        assert!(cache.get_at("arn:a", "v0", touched).is_some());
        assert!(cache.get_at("arn:a", "new", touched).is_some());
    }

    #[test]
    fn writing_a_version_again_replaces_its_value() {
        let cache = ValueCache::new();
        cache.put("arn:a", "v1", &value("first"));
        cache.put("arn:a", "v1", &value("second"));
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.get("arn:a", "v1").as_ref().map(SecretString::expose),
            Some("second")
        );
    }
}
