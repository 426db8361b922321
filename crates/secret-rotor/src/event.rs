//! The invocation event Secrets Manager sends, one per step.
//!
//! `aws_lambda_events`' `SecretsManagerSecretRotationEvent` has no `RotationToken` and derives a
//! `Debug` that would print it if it had; [`RotationEvent`] wraps its fields with a typed
//! [`Step`] and keeps the token in a [`SecretString`]. Parsing is done field by field from the
//! raw JSON so that no error message can echo a value.

use std::fmt;
use std::str::FromStr;

use aws_lambda_events::event::secretsmanager::SecretsManagerSecretRotationEvent;
use serde_json::Value;

use crate::error::Error;
use crate::secret::{json_kind, SecretString};

/// One of the four steps of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Generate the pending value and store it under `AWSPENDING`.
    CreateSecret,
    /// Make the target accept the pending value.
    SetSecret,
    /// Prove the pending value works against the target.
    TestSecret,
    /// Move `AWSCURRENT` to the pending version.
    FinishSecret,
}

impl Step {
    /// All steps, in the order Secrets Manager runs them.
    pub const ALL: [Step; 4] = [
        Step::CreateSecret,
        Step::SetSecret,
        Step::TestSecret,
        Step::FinishSecret,
    ];

    /// The name as it appears in the event (`createSecret`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CreateSecret => "createSecret",
            Step::SetSecret => "setSecret",
            Step::TestSecret => "testSecret",
            Step::FinishSecret => "finishSecret",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Step {
    type Err = Error;

    /// ```
    /// use secret_rotor::Step;
    /// assert_eq!("setSecret".parse::<Step>().unwrap(), Step::SetSecret);
    /// let err = "dropSecret".parse::<Step>().unwrap_err();
    /// assert!(err.to_string().contains("`dropSecret`"));
    /// ```
    fn from_str(s: &str) -> Result<Self, Error> {
        Step::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| {
                // A step name is not secret, but cap what we echo from untrusted input.
                let shown: String = s.chars().take(64).collect();
                Error::invalid_event(format!(
                    "unknown step `{shown}` (expected createSecret, setSecret, testSecret or finishSecret)"
                ))
            })
    }
}

/// A rotation event: which step, of which secret, for which new version.
#[derive(Clone, PartialEq, Eq)]
pub struct RotationEvent {
    /// The step to run.
    pub step: Step,
    /// The secret's ARN (or name).
    pub secret_id: String,
    /// The version id being rotated in; it carries `AWSPENDING`.
    pub client_request_token: String,
    /// Passed on to `PutSecretValue`; never logged.
    pub rotation_token: Option<SecretString>,
}

impl RotationEvent {
    /// The invocation payload Secrets Manager sends (the `RotationToken` included, in clear: it
    /// is what a driver sends to the function).
    ///
    /// ```
    /// use secret_rotor::{RotationEvent, Step};
    /// let payload = serde_json::json!({"Step": "setSecret", "SecretId": "arn:s",
    ///                                  "ClientRequestToken": "t", "RotationToken": "r"});
    /// assert_eq!(RotationEvent::from_json(&payload).unwrap().to_json(), payload);
    /// ```
    pub fn to_json(&self) -> Value {
        let mut payload = serde_json::json!({
            "Step": self.step.as_str(),
            "SecretId": self.secret_id,
            "ClientRequestToken": self.client_request_token,
        });
        if let Some(token) = &self.rotation_token {
            payload["RotationToken"] = Value::String(token.expose().to_owned());
        }
        payload
    }

    /// Parses the raw invocation payload.
    ///
    /// ```
    /// use secret_rotor::{RotationEvent, Step};
    /// let event = RotationEvent::from_json(&serde_json::json!({
    ///     "Step": "createSecret", "SecretId": "arn:s", "ClientRequestToken": "t",
    ///     "RotationToken": "very-secret"
    /// })).unwrap();
    /// assert_eq!(event.step, Step::CreateSecret);
    /// assert!(!format!("{event:?}").contains("very-secret"));
    /// let err = RotationEvent::from_json(&serde_json::json!({"Step": "createSecret", "SecretId": "s"}));
    /// assert!(err.unwrap_err().to_string().contains("ClientRequestToken"));
    /// ```
    pub fn from_json(payload: &Value) -> Result<Self, Error> {
        let Value::Object(map) = payload else {
            return Err(Error::invalid_event(format!(
                "the event must be a JSON object, found {}",
                json_kind(payload)
            )));
        };
        let field = |name: &str| -> Result<Option<&str>, Error> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(Error::invalid_event(format!(
                    "field `{name}` must be a string, found {}",
                    json_kind(other)
                ))),
            }
        };
        let required = |name: &str| -> Result<&str, Error> {
            field(name)?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::invalid_event(format!("missing required field `{name}`")))
        };
        Ok(Self {
            step: required("Step")?.parse()?,
            secret_id: required("SecretId")?.to_owned(),
            client_request_token: required("ClientRequestToken")?.to_owned(),
            rotation_token: field("RotationToken")?
                .filter(|s| !s.is_empty())
                .map(SecretString::from),
        })
    }
}

impl TryFrom<SecretsManagerSecretRotationEvent> for RotationEvent {
    type Error = Error;

    /// Converts the `aws_lambda_events` type (which cannot carry a `RotationToken`).
    fn try_from(event: SecretsManagerSecretRotationEvent) -> Result<Self, Error> {
        let nonempty = |name: &str, value: String| {
            if value.is_empty() {
                Err(Error::invalid_event(format!("missing required field `{name}`")))
            } else {
                Ok(value)
            }
        };
        Ok(Self {
            step: event.step.parse()?,
            secret_id: nonempty("SecretId", event.secret_id)?,
            client_request_token: nonempty("ClientRequestToken", event.client_request_token)?,
            rotation_token: None,
        })
    }
}

impl fmt::Debug for RotationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotationEvent")
            .field("step", &self.step)
            .field("secret_id", &self.secret_id)
            .field("client_request_token", &self.client_request_token)
            .field(
                "rotation_token",
                &self.rotation_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejects_malformed_events_with_named_fields() {
        let cases = [
            (json!([]), "must be a JSON object, found an array"),
            (json!("createSecret"), "found a string"),
            (json!({"SecretId": "s", "ClientRequestToken": "t"}), "`Step`"),
            (
                json!({"Step": "createSecret", "ClientRequestToken": "t"}),
                "`SecretId`",
            ),
            (
                json!({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": ""}),
                "`ClientRequestToken`",
            ),
            (
                json!({"Step": 3, "SecretId": "s", "ClientRequestToken": "t"}),
                "`Step` must be a string, found a number",
            ),
            (
                json!({"Step": "rotate", "SecretId": "s", "ClientRequestToken": "t"}),
                "unknown step `rotate`",
            ),
            (
                json!({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": "t", "RotationToken": 5}),
                "`RotationToken` must be a string",
            ),
        ];
        for (payload, expected) in cases {
            let err = RotationEvent::from_json(&payload).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidEvent);
            assert!(err.to_string().contains(expected), "{payload}: {err}");
        }
    }

    #[test]
    fn ignores_unknown_fields_and_converts_from_aws_lambda_events() {
        let payload =
            json!({"Step": "finishSecret", "SecretId": "s", "ClientRequestToken": "t", "Extra": {"a": 1}});
        let event = RotationEvent::from_json(&payload).unwrap();
        assert_eq!(event.step, Step::FinishSecret);
        assert!(event.rotation_token.is_none());

        let upstream: SecretsManagerSecretRotationEvent = serde_json::from_value(payload).unwrap();
        assert_eq!(RotationEvent::try_from(upstream).unwrap(), event);
    }
}
