//! The secret value parser and its accessors, and every engine's parse: any text is accepted or
//! refused with a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secret_rotor::{Engine, ErrorKind, SecretJson, SecretString};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let raw = SecretString::from(text);
    if let Ok(doc) = SecretJson::parse(&raw) {
        let _ = doc.required_str("username");
        let _ = doc.port("port", 5432);
        let _ = doc.optional_bool("ssl");
        let round = SecretJson::parse(&doc.to_secret_string()).expect("a rendered document parses");
        assert_eq!(round.to_secret_string(), doc.to_secret_string());
    }
    for result in [
        rotor_ssh_key::SshKeyEngine::default().parse(&raw).map(drop),
        rotor_database::DatabaseSecret::parse(&raw, &["postgres"], 5432).map(drop),
    ] {
        if let Err(err) = result {
            assert_eq!(err.kind(), ErrorKind::InvalidSecret);
        }
    }
});
