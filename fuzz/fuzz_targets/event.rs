//! The invocation event parser: any JSON is accepted or refused with a typed error, never a
//! panic, and a parsed event's Debug never shows its RotationToken.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secret_rotor::{ErrorKind, RotationEvent};

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    match RotationEvent::from_json(&payload) {
        Ok(event) => {
            if let Some(token) = &event.rotation_token {
                if token.len() > 3 {
                    assert!(!format!("{event:?}").contains(token.expose()));
                }
            }
        }
        Err(err) => assert_eq!(err.kind(), ErrorKind::InvalidEvent),
    }
});
