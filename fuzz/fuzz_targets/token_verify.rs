//! Fuzzes the resume-token verifier with arbitrary bytes: it must never panic, and a token it
//! accepts must carry the claims a valid token has. Run: see docs/tokens.md.
#![no_main]

use std::time::Duration;

use broker_ops::contracts::Contracts;
use broker_ops::token::{self, Keys, VerifyOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = Keys::from_pairs(&[("k1", "0123456789abcdef0123456789abcdef"), ("k2", "fedcba9876543210fedcba9876543210")]);
    let contract = Contracts::default().token;
    let opts = VerifyOptions { leeway: Duration::from_secs(30), now: 1_800_000_000, contract: &contract };
    let v = token::verify(data, &keys, opts);
    if v.valid {
        assert!(v.signature_ok && v.exp.is_some());
    }
    let _ = token::render::Inspected::of(&String::from_utf8_lossy(data), 1_800_000_000);
});
