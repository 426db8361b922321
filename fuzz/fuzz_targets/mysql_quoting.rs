//! MySQL quoting, in both SQL modes: a string literal or identifier built by the function reads
//! back as exactly the input (the MariaDB suite checks the same against the server).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotor_mysql::sql::{quote_identifier, quote_string};

fn read_back(literal: &str, backslash_escapes: bool) -> String {
    let inner = literal.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')).expect("quoted");
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if backslash_escapes => out.push(chars.next().expect("an escape is never last")),
            '\'' => {
                assert_eq!(chars.next(), Some('\''), "a lone quote ends the literal");
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    out
}

fuzz_target!(|text: &str| {
    for mode in [true, false] {
        match quote_string(text, mode) {
            Ok(literal) => assert_eq!(read_back(&literal, mode), text),
            Err(_) => assert!(text.contains('\0')),
        }
    }
    if let Ok(quoted) = quote_identifier(text) {
        let inner = quoted.strip_prefix('`').and_then(|q| q.strip_suffix('`')).expect("quoted");
        assert!(!inner.replace("``", "").contains('`'));
        assert_eq!(inner.replace("``", "`"), text);
    }
});
