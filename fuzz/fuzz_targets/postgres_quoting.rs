//! PostgreSQL quoting: an identifier or literal built by the function reads back, by SQL's own
//! rules, as exactly the input (the suites check the same against a real server).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotor_postgres::sql::{quote_identifier, quote_literal};

fuzz_target!(|text: &str| {
    match quote_identifier(text) {
        Ok(quoted) => {
            let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).expect("quoted");
            assert!(!inner.replace("\"\"", "").contains('"'), "a lone quote ends the identifier");
            assert_eq!(inner.replace("\"\"", "\""), text);
        }
        Err(_) => assert!(text.contains('\0')),
    }
    match quote_literal(text) {
        Ok(quoted) => {
            let inner = quoted.strip_prefix("E'").and_then(|q| q.strip_suffix('\'')).expect("quoted");
            // Read it back as PostgreSQL reads an E'' string: \x escapes, '' is a quote.
            let mut out = String::new();
            let mut chars = inner.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next().expect("an escape is never last")),
                    '\'' => {
                        assert_eq!(chars.next(), Some('\''), "a lone quote ends the literal");
                        out.push('\'');
                    }
                    c => out.push(c),
                }
            }
            assert_eq!(out, text);
        }
        Err(_) => assert!(text.contains('\0')),
    }
});
