//! The preflight: what a rotation of one secret would need — Secrets Manager reached, the value
//! parsed, the logins and hosts it would use, in the order the rotation uses them — checked
//! without changing anything, by the engine's own logic. The deployed function runs it for a
//! check event (so that it is seen from the function's network), and `rotor check` runs it from
//! the operator's machine.

use serde_json::{json, Value};

use crate::deadline::Deadline;
use crate::engine::{Context, Engine};
use crate::error::Error;
use crate::event::Step;
use crate::password::Passwords;
use crate::store::SecretsStore;

/// The key of a check event: `{"RotorCheck": {"SecretId": "…"}}`, which no Secrets Manager event
/// carries.
pub const CHECK_EVENT_KEY: &str = "RotorCheck";

/// One thing checked, and what was found (never a secret value: user names, hosts, TLS, errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it holds.
    pub ok: bool,
    /// What was found, or why it failed.
    pub detail: String,
}

/// Everything a preflight checked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The secret checked.
    pub secret_id: String,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    fn new(secret_id: &str) -> Self {
        Self {
            secret_id: secret_id.to_owned(),
            checks: Vec::new(),
        }
    }

    /// Records a check that holds.
    pub fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        });
    }

    /// Records a check that failed, with its error (errors never carry secret values).
    pub fn fail(&mut self, name: impl Into<String>, error: &Error) {
        self.checks.push(Check {
            name: name.into(),
            ok: false,
            detail: format!("{} ({})", error, error.kind().error_type()),
        });
    }

    /// Records `result` under `name`, describing a success with `detail`; the value if it held.
    pub fn record<T>(
        &mut self,
        name: &str,
        result: Result<T, Error>,
        detail: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                self.pass(name, detail(&value));
                Some(value)
            }
            Err(error) => {
                self.fail(name, &error);
                None
            }
        }
    }

    /// Whether every check held.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|check| check.ok)
    }

    /// The report as one JSON document: `{"secret", "ok", "checks": [{"check", "ok", "detail"}]}`.
    pub fn to_json(&self) -> Value {
        json!({
            "secret": self.secret_id,
            "ok": self.ok(),
            "checks": self.checks.iter().map(|c| json!({"check": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
        })
    }
}

/// Whether two Lambda function ARNs name the same function (a version or alias qualifier aside).
fn same_function(a: &str, b: &str) -> bool {
    let unqualified = |arn: &str| arn.split(':').take(7).collect::<Vec<_>>().join(":");
    unqualified(a) == unqualified(b)
}

/// Runs the preflight of `secret_id`. With `caller` (the function's own ARN), only a secret whose
/// rotation function is that function is checked: anything else is refused before any read.
///
/// A check that fails is in the report, not an error; an error means the check was refused.
pub async fn preflight<E: Engine>(
    engine: &E,
    store: &dyn SecretsStore,
    passwords: &Passwords,
    secret_id: &str,
    caller: Option<&str>,
    deadline: Deadline,
) -> Result<Report, Error> {
    let mut report = Report::new(secret_id);
    let described = deadline
        .run(format!("describing {secret_id}"), store.describe(secret_id))
        .await;
    let Some(description) = report.record("Secrets Manager reached (DescribeSecret)", described, |d| {
        format!(
            "rotation {}, function {}",
            match d.rotation_enabled {
                Some(true) => "enabled",
                Some(false) => "disabled",
                None => "not configured",
            },
            d.rotation_lambda_arn.as_deref().unwrap_or("none")
        )
    }) else {
        return Ok(report);
    };
    if let Some(caller) = caller {
        match description.rotation_lambda_arn.as_deref() {
            Some(function) if same_function(function, caller) => {}
            other => {
                return Err(Error::invalid_event(format!(
                    "secret {secret_id} is rotated by {}, not by this function ({caller}): a function \
                     checks only the secrets it rotates",
                    other.unwrap_or("no function")
                )))
            }
        }
    }
    let ctx = Context::new(
        engine,
        store,
        passwords,
        secret_id,
        "",
        Step::TestSecret,
        deadline,
    );
    engine.preflight(&ctx, &mut report).await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_arns_compare_without_their_qualifier() {
        let arn = "arn:aws-cn:lambda:cn-north-1:123456789012:function:rotor-postgres";
        assert!(same_function(arn, &format!("{arn}:live")));
        assert!(same_function(&format!("{arn}:3"), arn));
        assert!(!same_function(
            arn,
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:rotor-mysql"
        ));
        assert!(!same_function(
            arn,
            "arn:aws:lambda:cn-north-1:123456789012:function:rotor-postgres"
        ));
    }
}
