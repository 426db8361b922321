//! The contract's engine-independent conformance cases (§8: 1–7, 15–18; 20 is in leaks.rs), driven the way
//! Secrets Manager drives a rotation, against the local stack's real Secrets Manager API (moto
//! server). The target is the in-memory engine; the protocol under test is the framework's.

use aws_sdk_secretsmanager::Client;
use rotor_database::testing::MemoryDatabase;
use rotor_tests::memory_engine::{fail_next_test, memory_engine, MemoryEngine};
use rotor_tests::*;
use secret_rotor::{
    ErrorKind, Outcome, PasswordPolicy, PasswordSource, Passwords, Rotor, SecretString, Step,
};
use serde_json::{json, Value};

const EXCLUDED: &str = ":/@\"'\\";

fn secret_value(password: &str) -> Value {
    json!({
        "engine": "memory",
        "host": "db.internal",
        "username": "app",
        "password": password,
        "port": 5432,
        "dbname": "app",
        "ssl": true,
        "nothing": null,
        "extra": {"nested": [1, "x", false]}
    })
}

struct Fixture {
    client: Client,
    arn: String,
    db: MemoryDatabase,
    store: Recording,
    rotor: Rotor<MemoryEngine>,
}

impl Fixture {
    async fn new(value: Value) -> Self {
        let client = secrets_manager_client().await;
        let arn = create_secret(&client, "conformance", &value.to_string()).await;
        let db = MemoryDatabase::new();
        let store = Recording::new(client.clone());
        let rotor = rotor(memory_engine(&db), store.clone());
        Self {
            client,
            arn,
            db,
            store,
            rotor,
        }
    }

    /// A secret whose user exists on the target with `password`.
    async fn with_user(password: &str) -> Self {
        let fixture = Self::new(secret_value(password)).await;
        fixture.db.add_user("app", password);
        fixture
    }

    async fn step(&self, step: Step, token: &str) -> Result<Outcome, secret_rotor::Error> {
        self.rotor
            .handle(&event(step, &self.arn, token), deadline())
            .await
    }

    fn writes(&self) -> usize {
        writes(&self.store.calls())
    }

    async fn password_at(&self, stage: &str) -> String {
        value_at(&self.client, &self.arn, stage).await["password"]
            .as_str()
            .expect("password")
            .to_owned()
    }

    async fn pending_exists(&self, token: &str) -> bool {
        self.client
            .get_secret_value()
            .secret_id(&self.arn)
            .version_id(token)
            .version_stage("AWSPENDING")
            .send()
            .await
            .is_ok()
    }
}

#[tokio::test]
async fn case01_malformed_events_are_rejected_before_any_call() {
    let fixture = Fixture::with_user("initial-Password-1").await;
    let missing_token = json!({"Step": "createSecret", "SecretId": fixture.arn});
    let err = fixture
        .rotor
        .handle_json(&missing_token, deadline())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEvent);
    assert!(err.to_string().contains("`ClientRequestToken`"), "{err}");

    let unknown_step =
        json!({"Step": "rollbackSecret", "SecretId": fixture.arn, "ClientRequestToken": new_token()});
    let err = fixture
        .rotor
        .handle_json(&unknown_step, deadline())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEvent);
    assert!(err.to_string().contains("unknown step `rollbackSecret`"), "{err}");
    assert!(
        fixture.store.calls().lock().unwrap().is_empty(),
        "no Secrets Manager call for a bad event"
    );
}

#[tokio::test]
async fn case02_rotation_disabled_is_refused_and_absent_flag_proceeds() {
    let fixture = Fixture::with_user("initial-Password-1").await;
    let token = new_token();
    start_rotation(&fixture.client, &fixture.arn, &token).await;
    fixture
        .client
        .cancel_rotate_secret()
        .secret_id(&fixture.arn)
        .send()
        .await
        .expect("CancelRotateSecret");
    let before = labels(&fixture.client, &fixture.arn).await;
    for step in Step::ALL {
        let err = fixture.step(step, &token).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RotationState);
        assert!(err.to_string().contains("is not enabled for rotation"), "{err}");
    }
    assert_eq!(fixture.writes(), 0);
    assert_eq!(labels(&fixture.client, &fixture.arn).await, before);

    // A description without RotationEnabled (as some emulators give) does not block rotation.
    let fixture = Fixture::with_user("initial-Password-1").await;
    let store = fixture.store.clone().hiding_rotation_enabled();
    let rotor = rotor(memory_engine(&fixture.db), store);
    let token = new_token();
    rotate_fully(&rotor, &fixture.client, &fixture.arn, &token)
        .await
        .expect("rotation");
    assert_eq!(
        version_with(&fixture.client, &fixture.arn, "AWSCURRENT")
            .await
            .as_deref(),
        Some(token.as_str())
    );
}

#[tokio::test]
async fn case03_unknown_token_or_previous_only_token_is_refused() {
    let fixture = Fixture::with_user("initial-Password-1").await;
    let first = version_with(&fixture.client, &fixture.arn, "AWSCURRENT")
        .await
        .expect("current version");
    let token = new_token();
    rotate_fully(&fixture.rotor, &fixture.client, &fixture.arn, &token)
        .await
        .expect("rotation");
    let writes_before = fixture.writes();

    let unknown = new_token();
    for step in Step::ALL {
        let err = fixture.step(step, &unknown).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RotationState);
        assert!(err.to_string().contains("has no stage for rotation"), "{err}");
    }
    assert_eq!(
        labels(&fixture.client, &fixture.arn).await[&first],
        vec!["AWSPREVIOUS".to_owned()]
    );
    for step in Step::ALL {
        let err = fixture.step(step, &first).await.unwrap_err();
        assert!(err.to_string().contains("not set as AWSPENDING"), "{err}");
    }
    assert_eq!(fixture.writes(), writes_before);
}

#[tokio::test]
async fn case04_token_already_current_succeeds_without_writing() {
    let fixture = Fixture::with_user("initial-Password-1").await;
    let token = new_token();
    rotate_fully(&fixture.rotor, &fixture.client, &fixture.arn, &token)
        .await
        .expect("rotation");
    let writes_before = fixture.writes();
    let labels_before = labels(&fixture.client, &fixture.arn).await;
    for step in Step::ALL {
        assert_eq!(fixture.step(step, &token).await.unwrap(), Outcome::AlreadyCurrent);
    }
    assert_eq!(fixture.writes(), writes_before);
    assert_eq!(labels(&fixture.client, &fixture.arn).await, labels_before);
    // That the finish hook runs again on a retried finishSecret is proven by the protocol's unit
    // tests (`secret_rotor`, in memory): the database strategies have no hook.
}

#[tokio::test]
async fn case05_create_writes_one_pending_value_that_keeps_every_other_key() {
    let fixture = Fixture::with_user("initial-Password-1").await;
    let token = new_token();
    start_rotation(&fixture.client, &fixture.arn, &token).await;
    assert_eq!(
        fixture.step(Step::CreateSecret, &token).await.unwrap(),
        Outcome::Created
    );
    assert_eq!(count(&fixture.store.calls(), "PutSecretValue"), 1);

    let current = value_at(&fixture.client, &fixture.arn, "AWSCURRENT").await;
    let pending = value_at(&fixture.client, &fixture.arn, "AWSPENDING").await;
    let mut expected = current.clone();
    expected["password"] = pending["password"].clone();
    assert_eq!(
        pending, expected,
        "every key but the password is kept, with its JSON type"
    );
    assert_ne!(pending["password"], current["password"]);
    let password = SecretString::from(pending["password"].as_str().unwrap());
    PasswordPolicy::with_defaults(EXCLUDED)
        .check(&password)
        .expect("the password honours the policy");
    // AWSCURRENT did not move.
    let labels = labels(&fixture.client, &fixture.arn).await;
    assert_eq!(labels[&token], vec!["AWSPENDING".to_owned()]);
}

#[tokio::test]
async fn case06_create_again_writes_nothing_and_keeps_the_password() {
    let fixture = Fixture::with_user("initial-Password-1").await;
    let token = new_token();
    start_rotation(&fixture.client, &fixture.arn, &token).await;
    fixture.step(Step::CreateSecret, &token).await.unwrap();
    let first = fixture.password_at("AWSPENDING").await;
    for _ in 0..2 {
        assert_eq!(
            fixture.step(Step::CreateSecret, &token).await.unwrap(),
            Outcome::AlreadyCreated
        );
    }
    assert_eq!(count(&fixture.store.calls(), "PutSecretValue"), 1);
    assert_eq!(count(&fixture.store.calls(), "GetRandomPassword"), 1);
    assert_eq!(fixture.password_at("AWSPENDING").await, first);
}

#[tokio::test]
async fn case07_invalid_current_value_is_named_and_nothing_is_written() {
    let mut missing_host = secret_value("initial-Password-1");
    missing_host.as_object_mut().unwrap().remove("host");
    let mut wrong_engine = secret_value("initial-Password-1");
    wrong_engine["engine"] = json!("mysql");
    let mut numeric_user = secret_value("initial-Password-1");
    numeric_user["username"] = json!(42);
    let cases = [
        (missing_host, "missing required key `host`"),
        (wrong_engine, "key `engine` is `mysql`"),
        (numeric_user, "key `username` must be a string, found a number"),
        (
            json!(["initial-Password-1"]),
            "must be a JSON object, found an array",
        ),
        (
            json!("initial-Password-1"),
            "must be a JSON object, found a string",
        ),
    ];
    for (value, expected) in cases {
        let fixture = Fixture::new(value).await;
        let token = new_token();
        start_rotation(&fixture.client, &fixture.arn, &token).await;
        let err = fixture.step(Step::CreateSecret, &token).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSecret);
        assert!(err.to_string().contains(expected), "{err}");
        assert!(!err.to_string().contains("initial-Password-1"), "{err}");
        assert_eq!(fixture.writes(), 0);
        assert!(!fixture.pending_exists(&token).await);
    }
    // Not JSON at all.
    let client = secrets_manager_client().await;
    let arn = create_secret(&client, "conformance", "password=hunter2").await;
    let store = Recording::new(client.clone());
    let rotor = rotor(memory_engine(&MemoryDatabase::new()), store.clone());
    let token = new_token();
    start_rotation(&client, &arn, &token).await;
    let err = rotor
        .handle(&event(Step::CreateSecret, &arn, &token), deadline())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    assert!(!err.to_string().contains("hunter2"));
    assert_eq!(writes(&store.calls()), 0);
}

#[tokio::test]
async fn case15_test_secret_passes_on_working_fails_on_broken_and_writes_nothing_on_a_copy() {
    // Working pending.
    let fixture = Fixture::with_user("initial-Password-1").await;
    let token = new_token();
    start_rotation(&fixture.client, &fixture.arn, &token).await;
    fixture.step(Step::CreateSecret, &token).await.unwrap();
    // Not set yet: the pending password does not log in.
    let err = fixture.step(Step::TestSecret, &token).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Target);
    assert!(
        err.to_string().contains("unable to log in with pending secret"),
        "{err}"
    );
    fixture.step(Step::SetSecret, &token).await.unwrap();
    assert_eq!(
        fixture.step(Step::TestSecret, &token).await.unwrap(),
        Outcome::Tested
    );

    // RotateImmediately=false: pending is a copy of current, only testSecret runs.
    let fixture = Fixture::with_user("initial-Password-1").await;
    let token = new_token();
    start_rotation_with(&fixture.client, &fixture.arn, &token, false).await;
    assert_eq!(
        fixture.step(Step::TestSecret, &token).await.unwrap(),
        Outcome::Tested
    );
    assert_eq!(fixture.writes(), 0);
    assert_eq!(fixture.db.changes().len(), 0);
}

#[tokio::test]
async fn case16_finish_moves_the_labels_once() {
    let fixture = Fixture::with_user("initial-Password-1").await;
    let old = version_with(&fixture.client, &fixture.arn, "AWSCURRENT")
        .await
        .unwrap();
    let token = new_token();
    start_rotation(&fixture.client, &fixture.arn, &token).await;
    for step in [Step::CreateSecret, Step::SetSecret, Step::TestSecret] {
        fixture.step(step, &token).await.unwrap();
    }
    assert_eq!(
        fixture.step(Step::FinishSecret, &token).await.unwrap(),
        Outcome::Finished
    );
    let after = labels(&fixture.client, &fixture.arn).await;
    assert!(after[&token].contains(&"AWSCURRENT".to_owned()), "{after:?}");
    assert_eq!(after[&old], vec!["AWSPREVIOUS".to_owned()]);
    assert_eq!(count(&fixture.store.calls(), "UpdateSecretVersionStage"), 1);

    assert_eq!(
        fixture.step(Step::FinishSecret, &token).await.unwrap(),
        Outcome::AlreadyCurrent
    );
    assert_eq!(count(&fixture.store.calls(), "UpdateSecretVersionStage"), 1);
    assert_eq!(labels(&fixture.client, &fixture.arn).await, after);
}

#[tokio::test]
async fn case17_two_rotations_in_a_row() {
    let fixture = Fixture::with_user("initial-Password-1").await;
    let first = new_token();
    let second = new_token();
    rotate_fully(&fixture.rotor, &fixture.client, &fixture.arn, &first)
        .await
        .expect("first rotation");
    let first_password = fixture.password_at("AWSCURRENT").await;
    rotate_fully(&fixture.rotor, &fixture.client, &fixture.arn, &second)
        .await
        .expect("second rotation");

    let labels = labels(&fixture.client, &fixture.arn).await;
    assert_eq!(labels[&second], vec!["AWSCURRENT".to_owned()]);
    assert_eq!(labels[&first], vec!["AWSPREVIOUS".to_owned()]);
    assert_eq!(labels.len(), 2, "older versions carry no label: {labels:?}");

    let target = &fixture.db;
    assert!(target.logs_in("app", &fixture.password_at("AWSCURRENT").await));
    assert!(
        !target.logs_in("app", &first_password),
        "single user: AWSPREVIOUS no longer works"
    );
    assert!(!target.logs_in("app", "initial-Password-1"));
    assert_eq!(target.changes().len(), 2);
}

#[tokio::test]
async fn case18_retry_after_a_failed_test_converges_on_the_same_password() {
    let fixture = Fixture::with_user("initial-Password-1").await;
    fail_next_test(&fixture.db);
    let token = new_token();
    start_rotation(&fixture.client, &fixture.arn, &token).await;
    let (step, err) = run_steps(&fixture.rotor, &fixture.arn, &token).await.unwrap_err();
    assert_eq!(step, Step::TestSecret);
    assert_eq!(err.kind(), ErrorKind::Target);
    let pending = fixture.password_at("AWSPENDING").await;

    // Secrets Manager retries the whole rotation with the same token.
    let outcomes = run_steps(&fixture.rotor, &fixture.arn, &token)
        .await
        .expect("retried rotation");
    end_rotation(&fixture.client, &fixture.arn, &token).await;
    assert_eq!(outcomes[&Step::CreateSecret], Outcome::AlreadyCreated);
    assert_eq!(
        count(&fixture.store.calls(), "GetRandomPassword"),
        1,
        "no second password"
    );
    assert_eq!(count(&fixture.store.calls(), "PutSecretValue"), 1);
    assert_eq!(fixture.password_at("AWSCURRENT").await, pending);
    assert_eq!(
        fixture.db.changes().len(),
        1,
        "the retried setSecret changed nothing"
    );
    assert!(fixture.db.logs_in("app", &pending));
}

#[tokio::test]
async fn both_password_sources_honour_the_policy() {
    let client = secrets_manager_client().await;
    let store = Recording::new(client);
    let mut checked = 0;
    for flags in 0u8..32 {
        for (length, excluded) in [(4, ""), (12, EXCLUDED), (32, "aeiouAEIOU01!"), (64, "%$`")] {
            let policy = PasswordPolicy {
                length,
                exclude_characters: excluded.to_owned(),
                exclude_numbers: flags & 1 != 0,
                exclude_punctuation: flags & 2 != 0,
                exclude_uppercase: flags & 4 != 0,
                exclude_lowercase: flags & 8 != 0,
                require_each_included_type: flags & 16 != 0,
            };
            if policy.validate().is_err() {
                continue;
            }
            for source in [PasswordSource::SecretsManager, PasswordSource::Local] {
                let passwords = Passwords::new(policy.clone(), source);
                // `generate` checks the result against the policy and fails if it does not honour it.
                passwords
                    .generate(&store)
                    .await
                    .unwrap_or_else(|e| panic!("{source:?} {policy:?}: {e}"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 100, "only {checked} combinations checked");
}

/// The values a process keeps between steps: two rotations interleaved step by step in one
/// process each read their own secret's values (never the other's), a step that fails forgets
/// what was kept so its retry reads afresh, a cold process reads what it needs, and nothing is
/// kept once a rotation finished.
#[tokio::test]
async fn kept_values_never_cross_secrets_and_retries_and_cold_processes_read_afresh() {
    let client = secrets_manager_client().await;
    let db = MemoryDatabase::new();
    db.add_user("app", "initial-Password-1");
    db.add_user("other", "other-Password-1");
    let first = create_secret(&client, "kept-a", &secret_value("initial-Password-1").to_string()).await;
    let mut other_value = secret_value("other-Password-1");
    other_value["username"] = json!("other");
    let second = create_secret(&client, "kept-b", &other_value.to_string()).await;
    let store = Recording::new(client.clone());
    let calls = store.calls();
    let rotor = rotor(memory_engine(&db), store);
    let (token_a, token_b) = (new_token(), new_token());
    start_rotation(&client, &first, &token_a).await;
    start_rotation(&client, &second, &token_b).await;
    for step in [Step::CreateSecret, Step::SetSecret] {
        for (arn, token) in [(&first, &token_a), (&second, &token_b)] {
            rotor
                .handle(&event(step, arn, token), deadline())
                .await
                .expect("step");
        }
    }
    let from = calls_so_far(&calls);
    // testSecret fails once for the first secret: what was kept of it is dropped.
    fail_next_test(&db);
    let failed = rotor
        .handle(&event(Step::TestSecret, &first, &token_a), deadline())
        .await;
    assert!(failed.is_err(), "the forced failure");
    for (arn, token) in [(&first, &token_a), (&second, &token_b)] {
        rotor
            .handle(&event(Step::TestSecret, arn, token), deadline())
            .await
            .expect("testSecret");
    }
    let read_again: Vec<String> = calls.lock().unwrap()[from..]
        .iter()
        .filter(|(op, _)| *op == "GetSecretValue")
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(
        read_again,
        vec![first.clone()],
        "only the retry after the failure reads (the pending value of its own secret)"
    );
    // A cold process (a new rotor) reads what finishSecret needs; the warm one finishes the other.
    let cold = rotor_tests::rotor(memory_engine(&db), Recording::new(client.clone()));
    cold.handle(&event(Step::FinishSecret, &first, &token_a), deadline())
        .await
        .expect("finish in a cold process");
    rotor
        .handle(&event(Step::FinishSecret, &second, &token_b), deadline())
        .await
        .expect("finish");
    end_rotation(&client, &first, &token_a).await;
    end_rotation(&client, &second, &token_b).await;
    for (arn, user) in [(&first, "app"), (&second, "other")] {
        let current = value_at(&client, arn, "AWSCURRENT").await;
        assert_eq!(current["username"], json!(user), "each secret kept its own user");
        assert!(db.logs_in(user, current["password"].as_str().expect("password")));
    }
    assert!(cold.cache().is_empty(), "the cold process finished: nothing kept");
    assert!(
        rotor.cache().get(&second, &token_b).is_none(),
        "the warm process finished the second rotation: nothing of it kept"
    );
    // The first rotation finished elsewhere: what the warm process still holds of it is right
    // (a version's value never changes) and goes when idle.
    assert_eq!(
        rotor
            .cache()
            .get(&first, &token_a)
            .map(|v| serde_json::from_str::<Value>(v.expose()).expect("JSON")["password"].clone()),
        Some(json!(value_at(&client, &first, "AWSCURRENT").await["password"]))
    );
}
