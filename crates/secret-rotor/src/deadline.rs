//! The invocation's deadline, which bounds everything a step does.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use crate::error::Error;

/// When the current invocation must have answered.
///
/// A small margin is kept before Lambda's own deadline so that a step that runs out of time
/// can still report *why* instead of being killed mid-sentence.
///
/// ```
/// use std::time::Duration;
/// use secret_rotor::Deadline;
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let deadline = Deadline::after(Duration::from_millis(300));
/// let err = deadline.run("waiting for Godot", std::future::pending::<Result<(), secret_rotor::Error>>()).await;
/// assert_eq!(err.unwrap_err().kind(), secret_rotor::ErrorKind::Timeout);
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// Kept free at the end of the invocation to report an error.
    pub const MARGIN: Duration = Duration::from_millis(250);

    /// A deadline `budget` from now (before the margin is taken off).
    pub fn after(budget: Duration) -> Self {
        let now = Instant::now();
        Self {
            at: now + budget.saturating_sub(Self::MARGIN),
        }
    }

    /// From the Lambda context's deadline (wall-clock time).
    pub fn from_system_time(deadline: SystemTime) -> Self {
        Self::after(deadline.duration_since(SystemTime::now()).unwrap_or_default())
    }

    /// From the Runtime API's `Lambda-Runtime-Deadline-Ms`: milliseconds since the Unix epoch.
    /// Values before 2001 cannot be an absolute deadline; some emulators (cargo-lambda's) send
    /// the timeout itself there, so such a value is read as milliseconds from now.
    ///
    /// ```
    /// use std::time::Duration;
    /// use secret_rotor::Deadline;
    /// let relative = Deadline::from_runtime_ms(600_000);
    /// assert!(relative.remaining() > Duration::from_secs(590));
    /// let past = Deadline::from_runtime_ms(1_700_000_000_000); // November 2023
    /// assert_eq!(past.remaining(), Duration::ZERO);
    /// ```
    pub fn from_runtime_ms(deadline_ms: u64) -> Self {
        const YEAR_2001_MS: u64 = 978_307_200_000;
        if deadline_ms < YEAR_2001_MS {
            Self::after(Duration::from_millis(deadline_ms))
        } else {
            Self::from_system_time(SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms))
        }
    }

    /// The instant work must be done by.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Time left; zero once passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// `remaining()`, but at most `cap`: for one connect or statement among several.
    pub fn remaining_at_most(&self, cap: Duration) -> Duration {
        self.remaining().min(cap)
    }

    /// Runs `work`, failing with a timeout error naming `what` if the deadline passes first.
    pub async fn run<T>(
        &self,
        what: impl std::fmt::Display,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout_at(self.at.into(), work).await {
            Ok(result) => result,
            Err(_) => Err(Error::timeout(what)),
        }
    }
}
