#![allow(dead_code, unused_imports)]
//! The MIM CM REST test server for integration tests: the test kit's launcher
//! (tests/testkit/src/cm.rs), plus the scunblock command line of the CM tests.

use std::path::Path;

pub use scunblock_testkit::bins::cmserver_bin as cmserver_binary;
pub use scunblock_testkit::cm::{
    test_ca, CmServer, TestCa, API_PATH, DOCS_CARD_ID, DOCS_CHALLENGE_B64, DOCS_REQUEST,
    DOCS_RESPONSE_B64, DOCS_SMARTCARD,
};

/// A card profile file in `dir` that allows a 10-digit PIN (the CM tests' PIN).
pub fn long_pin_profile(dir: &Path) -> String {
    let p = dir.join("p.toml");
    std::fs::write(&p, "pin_max_len = 12\npin_charset = \"digits\"\n").unwrap();
    p.display().to_string()
}

/// The CM tests' command line: unblock the docs' card through CM at `url`, the new PIN
/// from NEW_PIN (allowed by `profile`, a [`long_pin_profile`]), JSON output.
pub fn cm_unblock_args<'a>(profile: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        "unblock",
        "--profile",
        profile,
        "--cm",
        url,
        "--card-id",
        DOCS_CARD_ID,
        "--new-pin-env",
        "NEW_PIN",
        "--json",
    ]
}
