//! The in-memory engine of the protocol suites: the framework's own single-user database strategy
//! on the fake driver (`rotor_database::testing::MemoryDatabase`), so that the suites against the
//! real Secrets Manager API exercise the real strategy, not a copy of it.

use rotor_database::testing::{Action, MemoryDatabase};
use rotor_database::{DatabaseEngine, Strategy};
use secret_rotor::Error;

/// The engine: single user on the fake driver.
pub type MemoryEngine = DatabaseEngine<MemoryDatabase>;

/// A fresh engine on `db` (shared: the test keeps `db` to look at it).
pub fn memory_engine(db: &MemoryDatabase) -> MemoryEngine {
    DatabaseEngine::new(db.clone(), Strategy::SingleUser)
}

/// The next testSecret of an engine on `db` fails (its session check does).
pub fn fail_next_test(db: &MemoryDatabase) {
    db.fail_next(
        Action::Check,
        Error::target("the pending session failed its check (forced)"),
    );
}
