//! The `rotor` binary run as an operator runs it, against the local stack.

use std::process::Command;

use serde_json::Value;

use crate::lambda::workspace_root;
use crate::stack_setting;

/// Runs `rotor ARGS` (built by `scripts/build-bins`) with the stack's endpoint,
/// region, dummy credentials and CA: its exit code, stdout and stderr.
pub fn rotor(args: &[&str]) -> (i32, String, String) {
    let binary = workspace_root().join("target/debug/rotor");
    assert!(binary.exists(), "no rotor binary: run `scripts/build-bins`");
    let out = Command::new(binary)
        .args(args)
        .env(
            "AWS_ENDPOINT_URL",
            stack_setting("AWS_ENDPOINT_URL").expect("stack"),
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("DATABASE_CA_BUNDLE", stack_setting("ROTOR_TLS_CA").expect("CA"))
        .output()
        .expect("rotor runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `rotor --json ARGS`: its exit code and its one JSON document.
pub fn rotor_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = rotor(&all);
    let value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {stdout} {stderr}"));
    (code, value)
}
