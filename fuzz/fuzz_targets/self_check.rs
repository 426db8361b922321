//! Crashes on exactly one input, which scripts/fuzz-self-check gives it as a seed: the proof that
//! scripts/fuzz reports a crash as a failure. scripts/fuzz never runs it unless named.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(data != b"secret-rotor fuzz self-check", "the self-check's crash");
});
