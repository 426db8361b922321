//! `rotor report` (the binary, as built by `cargo build -p rotor-cli --bins`) against moto: a few
//! dozen secrets in every rotation state, found by an exact tag (ListSecrets matches tag
//! prefixes, paginated here 7 at a time), classified in the table and in `--json` alike, with
//! the exit status; and `--logs`, reading the last failed step from a function's log group fed
//! with the framework's own log lines (captured from real steps of the in-memory engine).
//!
//! moto gives every version the CreatedDate "now" and never sets LastRotatedDate through a
//! RotateSecret that cannot invoke a function: neither date's value is asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::Tag;
use aws_sdk_secretsmanager::Client;
use rotor_database::testing::MemoryDatabase;
use rotor_tests::cli::{rotor, rotor_json};
use rotor_tests::memory_engine::{fail_next_test, memory_engine};
use rotor_tests::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TAG_KEY: &str = "rotor-report";

/// The report's secrets by name.
fn by_name(report: &Value) -> BTreeMap<String, Value> {
    report["secrets"]
        .as_array()
        .unwrap_or_else(|| panic!("no secrets: {report}"))
        .iter()
        .map(|s| (s["name"].as_str().expect("name").to_owned(), s.clone()))
        .collect()
}

/// Creates a secret `name` with `tags`; returns its ARN.
async fn create(client: &Client, name: &str, value: &str, tags: &[(&str, &str)]) -> String {
    let mut request = client.create_secret().name(name).secret_string(value);
    for (key, value) in tags {
        request = request.tags(Tag::builder().key(*key).value(*value).build());
    }
    request.send().await.expect("CreateSecret").arn.expect("an ARN")
}

/// `RotateSecret` with `function` (moto labels the empty version AWSPENDING, then cannot
/// invoke the function).
async fn start(client: &Client, arn: &str, token: &str, function: &str) {
    let result = client
        .rotate_secret()
        .secret_id(arn)
        .client_request_token(token)
        .rotation_lambda_arn(format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{function}"
        ))
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .send()
        .await;
    if let Err(e) = result {
        assert_eq!(e.code(), Some("ResourceNotFoundException"), "RotateSecret");
    }
    assert!(
        labels(client, arn)
            .await
            .get(token)
            .is_some_and(|s| s.iter().any(|l| l == "AWSPENDING")),
        "RotateSecret labelled {token} AWSPENDING"
    );
}

/// What finishSecret does: AWSCURRENT moves to `token`.
async fn move_current(client: &Client, arn: &str, token: &str) {
    let current = version_with(client, arn, "AWSCURRENT").await.expect("current");
    client
        .update_secret_version_stage()
        .secret_id(arn)
        .version_stage("AWSCURRENT")
        .move_to_version_id(token)
        .remove_from_version_id(current)
        .send()
        .await
        .expect("UpdateSecretVersionStage AWSCURRENT");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Rotation never configured.
    Never,
    /// Rotated: AWSCURRENT moved to the new version, AWSPENDING cleared.
    Finished,
    /// AWSPENDING left on a version that is not AWSCURRENT.
    Stuck,
    /// Rotated, then rotation turned off (CancelRotateSecret).
    Disabled,
    /// AWSCURRENT moved, AWSPENDING still on the same version: a valid end state.
    PendingOnCurrent,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Never => "never",
            Kind::Finished => "finished",
            Kind::Stuck => "stuck",
            Kind::Disabled => "disabled",
            Kind::PendingOnCurrent => "pending-on-current",
        }
    }
}

/// A secret in state `kind`; returns the pending token of a stuck one.
async fn make(
    client: &Client,
    name: &str,
    tags: &[(&str, &str)],
    kind: Kind,
    function: &str,
) -> Option<String> {
    let arn = create(client, name, r#"{"engine":"memory"}"#, tags).await;
    let token = new_token();
    match kind {
        Kind::Never => return None,
        Kind::Stuck => {
            start(client, &arn, &token, function).await;
            return Some(token);
        }
        Kind::Finished | Kind::Disabled | Kind::PendingOnCurrent => {
            start(client, &arn, &token, function).await;
            move_current(client, &arn, &token).await;
            if kind != Kind::PendingOnCurrent {
                end_rotation(client, &arn, &token).await;
            }
            if kind == Kind::Disabled {
                client
                    .cancel_rotate_secret()
                    .secret_id(&arn)
                    .send()
                    .await
                    .expect("CancelRotateSecret");
            }
        }
    }
    None
}

#[tokio::test]
async fn report_finds_exactly_the_tagged_secrets_and_classifies_each_state() {
    let client = secrets_manager_client().await;
    let run = random_hex(6);
    let value = format!("run-{run}");
    let function = format!("report-fn-{run}");
    let plan = [
        (Kind::Never, 8),
        (Kind::Finished, 8),
        (Kind::Stuck, 8),
        (Kind::Disabled, 3),
        (Kind::PendingOnCurrent, 3),
    ];
    let mut expected: BTreeMap<String, Kind> = BTreeMap::new();
    let mut stuck_tokens: BTreeMap<String, String> = BTreeMap::new();
    for (kind, n) in plan {
        for i in 0..n {
            let name = format!("report-{run}-{}-{i}", kind.word());
            let tags = [(TAG_KEY, value.as_str()), ("state", kind.word())];
            if let Some(token) = make(&client, &name, &tags, kind, &function).await {
                stuck_tokens.insert(name.clone(), token);
            }
            expected.insert(name, kind);
        }
    }
    assert_eq!(expected.len(), 30);
    // Not to be reported: untagged, and tags that ListSecrets matches by prefix (a longer value,
    // the value under a longer key); two of them stuck, so a wrong match would also show in the
    // counts and the exit status.
    let other_value = format!("{value}-other");
    type Tags<'a> = Vec<(&'a str, &'a str)>;
    let decoys: [(&str, Tags, Kind); 5] = [
        ("untagged-a", vec![], Kind::Stuck),
        ("untagged-b", vec![("state", "finished")], Kind::Finished),
        ("longer-value", vec![(TAG_KEY, other_value.as_str())], Kind::Stuck),
        (
            "longer-key",
            vec![("rotor-report-other", value.as_str())],
            Kind::Finished,
        ),
        (
            "both-split",
            vec![("rotor-report-x", "y"), ("z", value.as_str())],
            Kind::Never,
        ),
    ];
    let mut decoy_names = BTreeSet::new();
    for (suffix, tags, kind) in &decoys {
        let name = format!("report-{run}-decoy-{suffix}");
        make(&client, &name, tags, *kind, &function).await;
        decoy_names.insert(name);
    }

    let tag = format!("{TAG_KEY}={value}");
    let (code, report) = rotor_json(&["report", "--tag", &tag, "--page-size", "7"]);
    assert_eq!(code, 3, "stuck secrets make the exit status 3: {report}");
    assert_eq!(report["exit_code"], json!(3));
    assert_eq!(report["ok"], json!(false));
    let found = by_name(&report);
    assert_eq!(
        found.keys().cloned().collect::<BTreeSet<_>>(),
        expected.keys().cloned().collect::<BTreeSet<_>>(),
        "exactly the secrets tagged {tag}, over pages of 7"
    );
    assert!(found.keys().all(|name| !decoy_names.contains(name)));
    let fn_name = json!(function);
    for (name, kind) in &expected {
        let s = &found[name];
        let expect = |field: &str, want: Value| assert_eq!(s[field], want, "{name} ({kind:?}) {field}: {s}");
        expect("last_failure", Value::Null);
        expect("logs", json!({"read": false}));
        assert!(s["arn"].as_str().unwrap().contains(name.as_str()), "{s}");
        match kind {
            Kind::Never => {
                expect("rotation", json!("never-configured"));
                expect("rotation_enabled", Value::Null);
                expect("rotation_function", Value::Null);
                expect("next_rotation", Value::Null);
                expect("state", json!("ok"));
                expect("stuck", Value::Null);
                expect("attention", json!(false));
            }
            Kind::Finished | Kind::PendingOnCurrent => {
                expect("rotation", json!("enabled"));
                expect("rotation_enabled", json!(true));
                expect("rotation_function", fn_name.clone());
                expect("schedule", json!("every 30 days"));
                assert!(s["next_rotation"].is_string(), "{name}: {s}");
                expect("state", json!("ok"));
                expect("stuck", Value::Null);
                expect("problems", json!([]));
                expect("attention", json!(false));
            }
            Kind::Disabled => {
                expect("rotation", json!("disabled"));
                expect("rotation_enabled", json!(false));
                expect("rotation_function", fn_name.clone());
                expect("state", json!("ok"));
                expect("attention", json!(false));
            }
            Kind::Stuck => {
                expect("rotation", json!("enabled"));
                expect("rotation_function", fn_name.clone());
                expect("state", json!("stuck"));
                expect("attention", json!(true));
                let stuck = &s["stuck"];
                assert_eq!(stuck["version"], json!(stuck_tokens[name]), "{s}");
                let since = stuck["since"].as_str().unwrap_or_else(|| panic!("since: {s}"));
                assert!(
                    since.len() == 20 && since.ends_with('Z'),
                    "RFC 3339 to the second: {since}"
                );
                assert_eq!(s["problems"][0]["advice"], json!("check"), "{s}");
            }
        }
    }
    assert_eq!(
        report["summary"],
        json!({"secrets": 30, "stuck": 8, "failed": 0, "attention": 8, "logs_read": false})
    );
    assert_eq!(report["tags"], json!({TAG_KEY: value}));

    // The table carries the same facts, one line per secret.
    let (code, table, stderr) = rotor(&["report", "--tag", &tag, "--page-size", "7"]);
    assert_eq!(code, 3, "{table}{stderr}");
    assert!(table.starts_with("NAME "), "{table}");
    for (name, s) in &found {
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(name.as_str()))
            .collect();
        assert_eq!(rows.len(), 1, "{name} on one line:\n{table}");
        let cells: Vec<&str> = rows[0].split_whitespace().collect();
        let rotation = s["rotation"]
            .as_str()
            .unwrap()
            .replace("never-configured", "never");
        assert_eq!(cells[1], rotation, "{}", rows[0]);
        assert_eq!(
            cells[2],
            s["rotation_function"].as_str().unwrap_or("-"),
            "{}",
            rows[0]
        );
        assert_eq!(
            cells[4],
            s["next_rotation"].as_str().unwrap_or("-"),
            "{}",
            rows[0]
        );
        let state = cells[5..].join(" ");
        if s["stuck"].is_null() {
            assert_eq!(state, "ok -", "{}", rows[0]);
        } else {
            // moto dates a version "now" at each ListSecretVersionIds: only the form is compared.
            let since = state
                .strip_prefix("STUCK since ")
                .and_then(|s| s.strip_suffix(" -"));
            assert!(
                since.is_some_and(|d| d.len() == 20 && d.ends_with('Z')),
                "{}",
                rows[0]
            );
        }
    }
    for decoy in &decoy_names {
        assert!(!table.contains(decoy.as_str()), "{decoy} is not tagged {tag}");
    }
    for (name, token) in &stuck_tokens {
        assert!(
            table.contains(&format!(
                "{name}: version {token} is AWSPENDING but not AWSCURRENT"
            )),
            "a note for {name}:\n{table}"
        );
        assert!(table.contains(&format!("`rotor status {name}`")), "{table}");
    }
    assert!(
        table.contains("30 secrets, 8 need attention: stuck 8, last rotation failed 0, other problem 0"),
        "{table}"
    );

    // Several tags: all of them, exactly. The finished ones alone are healthy: exit 0.
    let (code, healthy) = rotor_json(&["report", "--tag", &tag, "--tag", "state=finished"]);
    assert_eq!(code, 0, "{healthy}");
    assert_eq!(healthy["ok"], json!(true));
    let names: BTreeSet<String> = by_name(&healthy).into_keys().collect();
    let finished: BTreeSet<String> = expected
        .iter()
        .filter(|(_, k)| **k == Kind::Finished)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(names, finished);

    // Named secrets (name or ARN), in the order given; one stuck among them is exit 3.
    let never = format!("report-{run}-never-0");
    let finished_arn = found[&format!("report-{run}-finished-1")]["arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, named) = rotor_json(&["report", &finished_arn, &never]);
    assert_eq!(code, 0, "{named}");
    let order: Vec<&str> = named["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, [format!("report-{run}-finished-1"), never.clone()]);
    let stuck = format!("report-{run}-stuck-3");
    let (code, named) = rotor_json(&["report", &never, &stuck]);
    assert_eq!(code, 3, "{named}");
    assert_eq!(named["summary"]["stuck"], json!(1));

    // Usage errors: exit 2, still one JSON document.
    let missing = format!("report-{run}-missing");
    for args in [
        vec!["report"],
        vec!["report", "--tag", "no-equals-sign"],
        vec!["report", missing.as_str()],
        vec!["report", never.as_str(), "--tag", tag.as_str()],
    ] {
        let (code, out) = rotor_json(&args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out["error"].is_string(), "{out}");
    }
    let nothing = format!("{TAG_KEY}=run-{run}-nothing");
    let (code, out) = rotor_json(&["report", "--tag", &nothing]);
    assert_eq!(code, 2, "a tag no secret carries: {out}");
}

/// A call to moto's CloudWatch Logs JSON API (the test crate has no Logs SDK client).
async fn logs_api(action: &str, body: Value) -> Value {
    let endpoint = stack_setting("AWS_ENDPOINT_URL").expect("stack");
    let address = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let body = body.to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nX-Amz-Target: Logs_20140328.{action}\r\n\
         Content-Type: application/x-amz-json-1.1\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/logs/aws4_request, \
         SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&address).await.expect("moto");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("receive");
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{action}: {response}"
    );
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

#[tokio::test]
async fn report_logs_gives_the_last_failed_step_from_the_function_log_group() {
    // The framework's own log lines, from real steps (alone in this binary to install it).
    let logs = CapturedLogs::default();
    logs.install_globally("info");
    let client = secrets_manager_client().await;
    let run = random_hex(6);
    let value = format!("logs-{run}");
    let function = format!("report-logs-fn-{run}");
    let no_group = format!("report-nogroup-fn-{run}");
    let tags = [(TAG_KEY, value.as_str())];
    let db = MemoryDatabase::new();
    let rotor_engine = rotor_tests::rotor(memory_engine(&db), Recording::new(client.clone()));
    let mut arns = BTreeMap::new();
    for which in ["stuck", "retried", "abandoned", "healthy", "never", "nogroup"] {
        let user = format!("app-{which}-{run}");
        db.add_user(&user, "initial-Password-1");
        let secret = json!({"engine": "memory", "host": "db.internal", "username": user, "password": "initial-Password-1"});
        let name = format!("report-{run}-{which}");
        arns.insert(which, create(&client, &name, &secret.to_string(), &tags).await);
    }
    let arn = |which: &str| arns[which].clone();
    let fail_once = || fail_next_test(&db);

    // stuck: testSecret failed, AWSPENDING left.
    let stuck_token = new_token();
    start(&client, &arn("stuck"), &stuck_token, &function).await;
    fail_once();
    let (step, _) = run_steps(&rotor_engine, &arn("stuck"), &stuck_token)
        .await
        .expect_err("testSecret fails");
    assert_eq!(step, secret_rotor::Step::TestSecret);
    // retried: the same failure, then the same rotation retried to the end.
    let token = new_token();
    start(&client, &arn("retried"), &token, &function).await;
    fail_once();
    run_steps(&rotor_engine, &arn("retried"), &token)
        .await
        .expect_err("testSecret fails");
    run_steps(&rotor_engine, &arn("retried"), &token)
        .await
        .expect("the retry finishes");
    end_rotation(&client, &arn("retried"), &token).await;
    // abandoned: the failure, then AWSPENDING cleared by hand; the last rotation failed.
    let abandoned_token = new_token();
    start(&client, &arn("abandoned"), &abandoned_token, &function).await;
    fail_once();
    run_steps(&rotor_engine, &arn("abandoned"), &abandoned_token)
        .await
        .expect_err("testSecret fails");
    end_rotation(&client, &arn("abandoned"), &abandoned_token).await;
    // healthy: a whole rotation; nogroup: the same through a function without a log group.
    for (which, function) in [("healthy", &function), ("nogroup", &no_group)] {
        let token = new_token();
        start(&client, &arn(which), &token, function).await;
        run_steps(&rotor_engine, &arn(which), &token)
            .await
            .expect("a rotation");
        end_rotation(&client, &arn(which), &token).await;
    }

    // The function's log group as Lambda would fill it: platform lines, the framework's lines
    // of these secrets and of another one, and, 10 days ago, a failure of the healthy secret.
    let ours: BTreeSet<&str> = arns.values().map(String::as_str).collect();
    let captured: Vec<String> = logs
        .text()
        .lines()
        .filter(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["secret_arn"].as_str().map(|s| ours.contains(s)))
                .unwrap_or(false)
        })
        .map(str::to_owned)
        .collect();
    assert!(
        captured.iter().filter(|l| l.contains("\"step failed\"")).count() >= 3,
        "captured the failures: {captured:?}"
    );
    let old_failure = json!({"message": "step failed", "secret_arn": arn("healthy"), "step": "setSecret",
                             "token": "old-token", "outcome": "failed", "error_type": "TargetError",
                             "error": "an old failure"});
    let other_secret = json!({"message": "step failed", "secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:someone-else",
                              "step": "setSecret", "token": "t", "outcome": "failed", "error_type": "TargetError", "error": "x"});
    let now = now_ms() - 60_000;
    let mut events = vec![json!({"timestamp": now - 10 * 86_400_000, "message": old_failure.to_string()})];
    let mut lines = vec![
        "START RequestId: 1 Version: $LATEST".to_owned(),
        other_secret.to_string(),
    ];
    lines.extend(captured);
    lines.push("END RequestId: 1".to_owned());
    events.extend(
        lines
            .iter()
            .enumerate()
            .map(|(i, line)| json!({"timestamp": now + i as i64, "message": line})),
    );
    let group = format!("/aws/lambda/{function}");
    logs_api("CreateLogGroup", json!({"logGroupName": group})).await;
    logs_api(
        "CreateLogStream",
        json!({"logGroupName": group, "logStreamName": "2024/01/01/[$LATEST]abc"}),
    )
    .await;
    let put = logs_api(
        "PutLogEvents",
        json!({"logGroupName": group, "logStreamName": "2024/01/01/[$LATEST]abc", "logEvents": events}),
    )
    .await;
    assert!(put.get("rejectedLogEventsInfo").is_none(), "{put}");

    let tag = format!("{TAG_KEY}={value}");
    let (code, report) = rotor_json(&["report", "--tag", &tag, "--logs", "--logs-days", "7"]);
    assert_eq!(code, 3, "{report}");
    let found = by_name(&report);
    let get = |which: &str| &found[&format!("report-{run}-{which}")];
    let read = json!(true);

    let stuck = get("stuck");
    assert_eq!(stuck["state"], json!("stuck"), "{stuck}");
    assert_eq!(stuck["stuck"]["version"], json!(stuck_token));
    assert_eq!(stuck["logs"]["read"], read);
    assert_eq!(stuck["logs"]["group"], json!(group));
    let failure = &stuck["last_failure"];
    assert_eq!(failure["step"], json!("testSecret"), "{stuck}");
    assert_eq!(failure["error_type"], json!("TargetError"));
    assert_eq!(failure["token"], json!(stuck_token));
    assert_eq!(failure["resolved"], json!(false));
    assert!(failure["error"]
        .as_str()
        .unwrap()
        .contains("the pending session failed its check"));
    assert!(failure["at"].is_string());

    let retried = get("retried");
    assert_eq!(retried["state"], json!("ok"), "{retried}");
    assert_eq!(retried["attention"], json!(false));
    assert_eq!(retried["last_failure"]["step"], json!("testSecret"));
    assert_eq!(
        retried["last_failure"]["resolved"],
        json!(true),
        "a later finishSecret succeeded"
    );

    let abandoned = get("abandoned");
    assert_eq!(abandoned["state"], json!("failed"), "{abandoned}");
    assert_eq!(abandoned["stuck"], Value::Null);
    assert_eq!(abandoned["attention"], json!(true));
    assert_eq!(abandoned["last_failure"]["token"], json!(abandoned_token));
    assert_eq!(abandoned["last_failure"]["resolved"], json!(false));

    let healthy = get("healthy");
    assert_eq!(healthy["state"], json!("ok"), "{healthy}");
    assert_eq!(
        healthy["last_failure"],
        Value::Null,
        "the old failure is outside 7 days"
    );
    assert_eq!(healthy["logs"]["read"], read);

    assert_eq!(
        get("never")["logs"],
        json!({"read": false, "reason": "no rotation function"})
    );
    assert_eq!(get("nogroup")["state"], json!("ok"));
    assert_eq!(
        get("nogroup")["logs"],
        json!({"read": false, "group": format!("/aws/lambda/{no_group}"), "reason": "log group not found"})
    );
    assert_eq!(
        report["summary"],
        json!({"secrets": 6, "stuck": 1, "failed": 2, "attention": 2, "logs_read": true})
    );

    // 14 days back: the old failure is seen, and resolved by the rotation after it.
    let (_, wider) = rotor_json(&["report", "--tag", &tag, "--logs", "--logs-days", "14"]);
    let healthy = &by_name(&wider)[&format!("report-{run}-healthy")];
    assert_eq!(
        healthy["last_failure"]["error"],
        json!("an old failure"),
        "{healthy}"
    );
    assert_eq!(healthy["last_failure"]["resolved"], json!(true));
    assert_eq!(healthy["state"], json!("ok"));

    // The table says the same, with the failure's details below it.
    let (code, table, stderr) = rotor(&["report", "--tag", &tag, "--logs", "--logs-days", "7"]);
    assert_eq!(code, 3, "{table}{stderr}");
    let row = |which: &str| {
        let name = format!("report-{run}-{which}");
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("{name}:\n{table}"))
            .to_owned()
    };
    assert!(row("stuck").contains("STUCK since"), "{table}");
    assert!(row("stuck").trim_end().ends_with("testSecret"), "{table}");
    assert!(
        row("retried").trim_end().ends_with("testSecret (resolved)"),
        "{table}"
    );
    assert!(row("abandoned").contains(" FAILED "), "{table}");
    assert!(row("healthy").trim_end().ends_with("none in 7 d"), "{table}");
    assert!(row("nogroup").trim_end().ends_with("no log group"), "{table}");
    assert!(
        table.contains(&format!(
            "report-{run}-abandoned: last rotation failed at {}: testSecret TargetError:",
            abandoned["last_failure"]["at"].as_str().unwrap()
        )),
        "{table}"
    );
    assert!(
        !table.contains("someone-else") && !table.contains("an old failure"),
        "{table}"
    );
    assert!(!table.contains("initial-Password-1"), "no secret value");
}
