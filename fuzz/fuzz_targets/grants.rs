//! The SHOW GRANTS reader: any line is understood or ignored, never a panic; a grant it keeps
//! can be replayed and revoked for another account, and never carries a password clause.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotor_mysql::grants::Grant;
use rotor_mysql::sql::Account;

fuzz_target!(|line: &str| {
    let app = Account { user: "app".into(), host: "%".into() };
    let clone = Account { user: "app_clone".into(), host: "%".into() };
    if let Some(grant) = Grant::parse(line, &app) {
        let sql = grant.grant_sql(&clone).expect("grant");
        assert!(sql.contains("`app_clone`@`%`"));
        let _ = grant.revoke_sql(&clone).expect("revoke");
        let _ = grant.is_usage();
    }
});
