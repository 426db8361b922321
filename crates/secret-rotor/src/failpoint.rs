//! Crash points for the reliability tests.
//!
//! The framework and every engine mark each point where a crash would leave a different state:
//! before and after every Secrets Manager call, database statement and per-host SSH action
//! (`failpoint!("name")`). Built without the `failpoints` feature (every release), a point is an
//! inlined `Ok(())`. With it, a test can record the points one rotation passes, then make the
//! rotation die at any one of them — the step returns at once, as if the process had been
//! killed there — and check what the secret and the target look like at that instant.
//!
//! The plan is per thread: tests run each rotation on a current-thread runtime.

/// Marks a crash point: `failpoint!("name")?` (the `?` is the caller's, so the early return is
/// visible where it happens). `Ok(())` unless the `failpoints` feature is on and a test armed it.
#[macro_export]
macro_rules! failpoint {
    ($name:expr) => {
        $crate::failpoint::hit($name)
    };
}

/// Passes the point `name` (see [`failpoint!`]).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &'static str) -> Result<(), crate::Error> {
    Ok(())
}

#[cfg(feature = "failpoints")]
pub use armed::*;

#[cfg(feature = "failpoints")]
mod armed {
    use std::cell::RefCell;

    use crate::error::Error;

    enum Plan {
        Off,
        Record(Vec<&'static str>),
        FailAt {
            index: usize,
            seen: usize,
            failed: Option<&'static str>,
        },
    }

    thread_local! {
        static PLAN: RefCell<Plan> = const { RefCell::new(Plan::Off) };
    }

    /// Passes the point `name`: records it, or fails here if this is the armed point.
    pub fn hit(name: &'static str) -> Result<(), Error> {
        PLAN.with_borrow_mut(|plan| match plan {
            Plan::Off => Ok(()),
            Plan::Record(points) => {
                points.push(name);
                Ok(())
            }
            Plan::FailAt { index, seen, failed } => {
                let this = *seen;
                *seen += 1;
                if this == *index {
                    *failed = Some(name);
                }
                // Once crashed, every later point fails too: a dead process does nothing more,
                // even where the code tolerates one failed call (a login probe).
                match failed {
                    Some(crashed) => Err(Error::transient(format!(
                        "simulated crash at failpoint {crashed}"
                    ))),
                    None => Ok(()),
                }
            }
        })
    }

    /// Starts recording the points passed on this thread.
    pub fn record() {
        PLAN.with_borrow_mut(|plan| *plan = Plan::Record(Vec::new()));
    }

    /// Arms a crash at the `index`-th point passed from now on (counting from 0).
    pub fn fail_at(index: usize) {
        PLAN.with_borrow_mut(|plan| {
            *plan = Plan::FailAt {
                index,
                seen: 0,
                failed: None,
            }
        });
    }

    /// Disarms; returns the recorded points, or the point that failed (as a one-element list).
    pub fn off() -> Vec<&'static str> {
        PLAN.with_borrow_mut(|plan| match std::mem::replace(plan, Plan::Off) {
            Plan::Off => Vec::new(),
            Plan::Record(points) => points,
            Plan::FailAt { failed, .. } => failed.into_iter().collect(),
        })
    }
}
