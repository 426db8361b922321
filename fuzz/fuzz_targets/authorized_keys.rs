//! authorized_keys editing: any file content is edited without a panic; adding a key yields it
//! exactly once, with the current key's options; removing this secret's keys never touches a line it does not own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotor_ssh_key::authorized_keys::{
    adopt, contains_key, current_options, managed_prefix, with_key_beside, without_superseded,
};
use russh::keys::PublicKey;

const NEW: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOexxNc9Jm6lCJC+ZrC4PnK1CspHmPeucpP9gfAWazFj secret-rotor:s:v2";
const OLD: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAIKn7xs11ogG4GDxNVQwEuXqi31wiZPjckKAzL6aX90 secret-rotor:s:v1";

fuzz_target!(|content: &str| {
    let new = PublicKey::from_openssh(NEW).expect("key");
    let old = PublicKey::from_openssh(OLD).expect("key");
    let prefix = managed_prefix("s");
    if let Ok(Some(added)) = with_key_beside(content, &prefix, &old, &new, NEW) {
        assert!(contains_key(&added, &new) && !contains_key(content, &new));
        let options = current_options(content, &old).expect("one current line");
        assert!(added.lines().any(|l| l == format!("{options} {NEW}").trim_start()), "options copied");
        assert_eq!(added.lines().count(), content.lines().count() + 1, "one line added");
    }
    if let Some(removed) = without_superseded(content, &prefix, &[&new], Some(&old)) {
        for line in removed.lines() {
            assert!(content.lines().any(|l| l == line), "only removals");
        }
    }
    let _ = adopt(content, &prefix, &old);
});
