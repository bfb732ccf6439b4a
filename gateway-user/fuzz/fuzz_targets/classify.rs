//! The guardrail classifier on arbitrary text: must never panic, must say something about
//! every statement, and hiding a statement in an executable comment must not change what it
//! is (`/*! X */` is classified as `X`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::guard::classify;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let classified = classify(sql);
    assert!(!classified.is_empty());
    if !sql.contains("*/") && !sql.contains("/*") && !sql.contains(';') {
        let hidden = classify(&format!("/*!50000 {sql} */"));
        assert_eq!(hidden.len(), classified.len(), "{sql:?}");
        for (a, b) in hidden.iter().zip(&classified) {
            assert_eq!(a.verb, b.verb, "{sql:?}");
        }
    }
});
