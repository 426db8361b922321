//! Contract §8 case 20: no password or `RotationToken` reaches a log line (at TRACE, the most
//! verbose level) or an error message, through whole rotations with the in-memory engine against
//! the real Secrets Manager API. Alone in its test binary, with the capture installed as the
//! global subscriber: a per-thread subscriber can miss events when parallel tests on other
//! threads first register the same callsites without one.

use aws_sdk_secretsmanager::Client;
use rotor_database::testing::MemoryDatabase;
use rotor_tests::memory_engine::{fail_next_test, memory_engine, MemoryEngine};
use rotor_tests::*;
use secret_rotor::{Rotor, SecretString, Step};
use serde_json::json;

struct Fixture {
    client: Client,
    arn: String,
    db: MemoryDatabase,
    rotor: Rotor<MemoryEngine>,
}

impl Fixture {
    async fn with_user(password: &str) -> Self {
        let client = secrets_manager_client().await;
        let value =
            json!({"engine": "memory", "host": "db.internal", "username": "app", "password": password});
        let arn = create_secret(&client, "leaks", &value.to_string()).await;
        let db = MemoryDatabase::new();
        db.add_user("app", password);
        let rotor = rotor(memory_engine(&db), Recording::new(client.clone()));
        Self {
            client,
            arn,
            db,
            rotor,
        }
    }

    async fn password_at(&self, stage: &str) -> String {
        value_at(&self.client, &self.arn, stage).await["password"]
            .as_str()
            .expect("password")
            .to_owned()
    }
}

#[tokio::test]
async fn case20_no_secret_reaches_logs_or_errors_even_at_trace() {
    let logs = CapturedLogs::default();
    logs.install_globally("trace");
    let initial = "initial-Password-1";
    let fixture = Fixture::with_user(initial).await;
    let rotation_token = format!("rotation-token-{}", random_hex(12));
    let mut errors = Vec::new();

    // A full rotation with a RotationToken, then one whose testSecret fails.
    let token = new_token();
    start_rotation(&fixture.client, &fixture.arn, &token).await;
    for step in Step::ALL {
        let mut event = event(step, &fixture.arn, &token);
        event.rotation_token = Some(SecretString::from(rotation_token.as_str()));
        fixture.rotor.handle(&event, deadline()).await.expect("step");
    }
    end_rotation(&fixture.client, &fixture.arn, &token).await;
    let rotated = fixture.password_at("AWSCURRENT").await;

    fail_next_test(&fixture.db);
    let token = new_token();
    start_rotation(&fixture.client, &fixture.arn, &token).await;
    errors.push(
        run_steps(&fixture.rotor, &fixture.arn, &token)
            .await
            .unwrap_err()
            .1
            .to_string(),
    );
    let pending = fixture.password_at("AWSPENDING").await;
    // And a broken value: its password must not be echoed by the parse error either.
    let broken = fixture
        .rotor
        .handle_json(&json!({"Step": "createSecret", "SecretId": 7}), deadline())
        .await;
    errors.push(broken.unwrap_err().to_string());

    let text = logs.text();
    assert!(
        text.contains("\"step\":\"createSecret\""),
        "logs were captured: {text}"
    );
    assert!(text.contains("\"outcome\":\"failed\""), "{text}");
    for secret in [
        initial,
        rotated.as_str(),
        pending.as_str(),
        rotation_token.as_str(),
    ] {
        assert!(!text.contains(secret), "a secret value reached the logs");
        for error in &errors {
            assert!(
                !error.contains(secret),
                "a secret value reached an error: {error}"
            );
        }
    }
}
