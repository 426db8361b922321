//! The SSH key function end to end against two real OpenSSH hosts (each with its own
//! `authorized_keys`) and the real Secrets Manager API. The hosts are shared, so the tests take
//! turns.

use aws_sdk_secretsmanager::Client;
use rotor_ssh_key::SshKeyEngine;
use rotor_tests::net::Switch;
use rotor_tests::ssh_hosts::{keygen, ssh_user, SshHost};
use rotor_tests::*;
use secret_rotor::{ErrorKind, Outcome, Passwords, Rotor, Step};
use serde_json::{json, Value};
use tokio::sync::Mutex;

static HOSTS: Mutex<()> = Mutex::const_new(());

const FOREIGN: &str = "# deploy keys\nno-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAIKn7xs11ogG4GDxNVQwEuXqi31wiZPjckKAzL6aX90 alice@laptop\n";

struct Fleet {
    client: Client,
    arn: String,
    hosts: [SshHost; 2],
    rotor: Rotor<SshKeyEngine>,
    initial_private: String,
}

/// The secret's value for `hosts` (addresses) pinned to the two stack hosts' keys; the first
/// pinned by key, the second by fingerprint.
fn secret_value(private: &str, public: &str, addresses: [&str; 2], pins: [String; 2]) -> Value {
    json!({
        "username": ssh_user(),
        "private_key": private,
        "public_key": public,
        "hosts": addresses,
        "host_keys": {addresses[0]: pins[0], addresses[1]: pins[1]},
        "purpose": {"team": "deploy"}
    })
}

impl Fleet {
    /// Both hosts with a foreign key and the initial key (mode 0640), the secret, a rotor.
    async fn new(engine: SshKeyEngine, second_address: Option<&str>) -> Fleet {
        let hosts = SshHost::both();
        let (private, public) = keygen("initial key, made by hand");
        for host in &hosts {
            host.set_authorized_keys(&format!("{FOREIGN}{public}\n"), 0o640);
        }
        let addresses = [
            hosts[0].address.as_str(),
            second_address.unwrap_or(&hosts[1].address),
        ];
        let pins = [hosts[0].host_key(), hosts[1].host_key_fingerprint()];
        let client = secrets_manager_client().await;
        let value = secret_value(&private, &public, addresses, pins);
        let arn = create_secret(&client, "ssh", &value.to_string()).await;
        let rotor = Rotor::with_passwords(
            Ok(engine),
            Recording::new(client.clone()),
            Passwords::from_lookup(|_| None, ""),
        );
        Fleet {
            client,
            arn,
            hosts,
            rotor,
            initial_private: private,
        }
    }

    async fn key_at(&self, stage: &str) -> String {
        value_at(&self.client, &self.arn, stage).await["private_key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn rotate(&self) -> Result<String, (Step, secret_rotor::Error)> {
        let token = new_token();
        rotate_fully(&self.rotor, &self.client, &self.arn, &token).await?;
        Ok(token)
    }

    fn ours(&self, host: &SshHost) -> usize {
        host.authorized_keys()
            .lines()
            .filter(|l| l.contains("secret-rotor:"))
            .count()
    }
}

#[tokio::test]
async fn rotates_twice_across_both_hosts_keeping_foreign_keys_and_mode() {
    let _turn = HOSTS.lock().await;
    let fleet = Fleet::new(SshKeyEngine::default(), None).await;
    let mut previous = fleet.initial_private.clone();
    for rotation in 1..=2 {
        let token = fleet
            .rotate()
            .await
            .unwrap_or_else(|(step, e)| panic!("rotation {rotation}: {step}: {e}"));
        let current = fleet.key_at("AWSCURRENT").await;
        assert!(current.contains("OPENSSH PRIVATE KEY"));
        let public = value_at(&fleet.client, &fleet.arn, "AWSCURRENT").await["public_key"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            public.starts_with("ssh-ed25519 ") && public.ends_with(&token),
            "managed comment: {public}"
        );
        for host in &fleet.hosts {
            assert!(host.logs_in(&current), "{}: AWSCURRENT logs in", host.address);
            assert!(
                !host.logs_in(&previous),
                "{}: the old key is refused after finish",
                host.address
            );
            let content = host.authorized_keys();
            assert!(
                content.starts_with(FOREIGN),
                "{}: foreign lines kept: {content}",
                host.address
            );
            assert_eq!(
                fleet.ours(host),
                1,
                "{}: exactly one managed line: {content}",
                host.address
            );
            assert_eq!(host.authorized_keys_mode(), 0o640, "{}: mode kept", host.address);
        }
        previous = current;
    }
    assert_eq!(
        value_at(&fleet.client, &fleet.arn, "AWSCURRENT").await["purpose"],
        json!({"team": "deploy"})
    );
}

#[tokio::test]
async fn grace_setting_keeps_the_previous_key_until_the_next_rotation() {
    let _turn = HOSTS.lock().await;
    let engine = SshKeyEngine {
        keep_previous: true,
        ..SshKeyEngine::default()
    };
    let fleet = Fleet::new(engine, None).await;
    fleet
        .rotate()
        .await
        .unwrap_or_else(|(step, e)| panic!("{step}: {e}"));
    let first = fleet.key_at("AWSCURRENT").await;
    for host in &fleet.hosts {
        assert!(host.logs_in(&first));
        assert!(
            host.logs_in(&fleet.initial_private),
            "{}: grace: the previous key still works",
            host.address
        );
    }
    fleet
        .rotate()
        .await
        .unwrap_or_else(|(step, e)| panic!("{step}: {e}"));
    let second = fleet.key_at("AWSCURRENT").await;
    for host in &fleet.hosts {
        assert!(
            host.logs_in(&second) && host.logs_in(&first),
            "{}: current and previous work",
            host.address
        );
        assert!(
            !host.logs_in(&fleet.initial_private),
            "{}: the key before is gone",
            host.address
        );
        assert!(host.authorized_keys().starts_with(FOREIGN));
    }
}

#[tokio::test]
async fn a_wrong_pinned_host_key_changes_nothing_on_any_host() {
    let _turn = HOSTS.lock().await;
    let hosts = SshHost::both();
    let (private, public) = keygen("initial");
    for host in &hosts {
        host.set_authorized_keys(&format!("{FOREIGN}{public}\n"), 0o600);
    }
    // The second host is pinned to the first host's key.
    let value = secret_value(
        &private,
        &public,
        [&hosts[0].address, &hosts[1].address],
        [hosts[0].host_key(), hosts[0].host_key()],
    );
    let client = secrets_manager_client().await;
    let arn = create_secret(&client, "ssh", &value.to_string()).await;
    let rotor = Rotor::with_passwords(
        Ok(SshKeyEngine::default()),
        Recording::new(client.clone()),
        Passwords::from_lookup(|_| None, ""),
    );
    let before: Vec<String> = hosts.iter().map(SshHost::authorized_keys).collect();
    let (step, err) = rotate_fully(&rotor, &client, &arn, &new_token())
        .await
        .unwrap_err();
    assert_eq!(step, Step::SetSecret);
    assert_eq!(err.kind(), ErrorKind::Target);
    assert!(
        err.to_string().contains(&format!("[{}]", hosts[1].address)),
        "names the host: {err}"
    );
    assert!(err.to_string().contains("does not match the pinned key"), "{err}");
    let after: Vec<String> = hosts.iter().map(SshHost::authorized_keys).collect();
    assert_eq!(after, before, "nothing changed on any host");
}

#[tokio::test]
async fn an_unreachable_host_is_named_and_a_retry_completes_when_it_is_back() {
    let _turn = HOSTS.lock().await;
    let hosts = SshHost::both();
    let mut switch = Switch::off(hosts[1].port).await;
    let address = format!("127.0.0.1:{}", switch.port);
    let fleet = Fleet::new(SshKeyEngine::default(), Some(&address)).await;
    let token = new_token();
    start_rotation(&fleet.client, &fleet.arn, &token).await;
    let (step, err) = run_steps(&fleet.rotor, &fleet.arn, &token).await.unwrap_err();
    assert_eq!(step, Step::SetSecret);
    assert!(err.kind().is_retryable(), "{err}");
    assert!(
        err.to_string().contains(&format!("[{address}]")),
        "names the host: {err}"
    );
    assert_eq!(
        fleet.ours(&hosts[0]),
        0,
        "nothing added while a host was unreachable"
    );

    switch.on().await;
    let outcomes = run_steps(&fleet.rotor, &fleet.arn, &token)
        .await
        .expect("retried rotation");
    end_rotation(&fleet.client, &fleet.arn, &token).await;
    assert_eq!(outcomes[&Step::CreateSecret], Outcome::AlreadyCreated);
    let current = fleet.key_at("AWSCURRENT").await;
    assert!(hosts[0].logs_in(&current));
    // (The blocking ssh client cannot go through the in-process switch: ask the host directly.)
    assert!(hosts[1].logs_in(&current));
    assert!(!hosts[1].logs_in(&fleet.initial_private));
}

#[tokio::test]
async fn a_crash_between_hosts_then_a_rerun_converges_without_duplicates() {
    let _turn = HOSTS.lock().await;
    let fleet = Fleet::new(SshKeyEngine::default(), None).await;
    let token = new_token();
    start_rotation(&fleet.client, &fleet.arn, &token).await;
    fleet
        .rotor
        .handle(&event(Step::CreateSecret, &fleet.arn, &token), deadline())
        .await
        .unwrap();
    // The state a crash after the first host leaves: the new key on host 1 only.
    let pending = value_at(&fleet.client, &fleet.arn, "AWSPENDING").await;
    let line = pending["public_key"].as_str().unwrap();
    let first = fleet.hosts[0].authorized_keys();
    fleet.hosts[0].set_authorized_keys(&format!("{first}{line}\n"), 0o640);

    let outcomes = run_steps(&fleet.rotor, &fleet.arn, &token).await.expect("re-run");
    end_rotation(&fleet.client, &fleet.arn, &token).await;
    assert_eq!(outcomes[&Step::FinishSecret], Outcome::Finished);
    for host in &fleet.hosts {
        assert_eq!(
            host.authorized_keys()
                .matches(line.split_whitespace().nth(1).unwrap())
                .count(),
            1,
            "no duplicate"
        );
        assert!(host.logs_in(pending["private_key"].as_str().unwrap()));
    }

    // finishSecret retried after the labels moved: the hook removes a superseded key that came
    // back (as if the first finish died before reaching this host).
    let old_public = value_at(&fleet.client, &fleet.arn, "AWSPREVIOUS").await["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = fleet.hosts[1].authorized_keys();
    fleet.hosts[1].set_authorized_keys(&format!("{second}{old_public}\n"), 0o640);
    let outcome = fleet
        .rotor
        .handle(&event(Step::FinishSecret, &fleet.arn, &token), deadline())
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::AlreadyCurrent);
    assert!(
        !fleet.hosts[1].logs_in(&fleet.initial_private),
        "the retried finish removed the old key"
    );
}

#[tokio::test]
async fn the_test_command_exit_status_is_checked() {
    let _turn = HOSTS.lock().await;
    let engine = SshKeyEngine {
        test_command: "exit 3".to_owned(),
        ..SshKeyEngine::default()
    };
    let fleet = Fleet::new(engine, None).await;
    let (step, err) = fleet.rotate().await.unwrap_err();
    assert_eq!(step, Step::TestSecret);
    assert!(err.to_string().contains("exit status 3"), "{err}");
    for host in &fleet.hosts {
        assert!(
            host.logs_in(&fleet.initial_private),
            "the current key still works"
        );
    }
}

#[tokio::test]
async fn malformed_secrets_are_refused_before_anything_is_written() {
    let hosts = SshHost::both();
    let (private, public) = keygen("k");
    let (_, other_public) = keygen("other");
    let pins = || [hosts[0].host_key(), hosts[1].host_key()];
    let addresses = [hosts[0].address.as_str(), hosts[1].address.as_str()];
    let mut rsa = secret_value(&private, &public, addresses, pins());
    rsa["key_type"] = json!("rsa");
    let mismatched = secret_value(&private, &other_public, addresses, pins());
    let mut unpinned = secret_value(&private, &public, addresses, pins());
    unpinned["host_keys"] = json!({addresses[0]: hosts[0].host_key()});
    let mut not_a_key = secret_value(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nhunter2\n",
        &public,
        addresses,
        pins(),
    );
    not_a_key["key_type"] = json!("ed25519");
    let cases = [
        (rsa, "only ed25519 is supported"),
        (mismatched, "not the public half"),
        (unpinned, "has no pinned key"),
        (not_a_key, "not an OpenSSH private key"),
    ];
    let client = secrets_manager_client().await;
    for (value, expected) in cases {
        let arn = create_secret(&client, "ssh", &value.to_string()).await;
        let store = Recording::new(client.clone());
        let rotor = Rotor::with_passwords(
            Ok(SshKeyEngine::default()),
            store.clone(),
            Passwords::from_lookup(|_| None, ""),
        );
        let (step, err) = rotate_fully(&rotor, &client, &arn, &new_token())
            .await
            .unwrap_err();
        assert_eq!(
            (step, err.kind()),
            (Step::CreateSecret, ErrorKind::InvalidSecret),
            "{err}"
        );
        assert!(err.to_string().contains(expected), "{err}");
        assert!(!err.to_string().contains("hunter2"));
        assert_eq!(writes(&store.calls()), 0);
    }
}
