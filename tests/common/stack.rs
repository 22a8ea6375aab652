//! The virtual PC/SC stack for integration tests: the test kit's launcher
//! (tests/testkit/src/stack.rs), plus the scunblock binary under test, which only this
//! crate's tests can name (`CARGO_BIN_EXE_scunblock`).
#![allow(dead_code, unused_imports)]

use std::process::Command;

pub use scunblock_testkit::bins::{cmserver_bin, holdcard_bin, vcard_bin};
pub use scunblock_testkit::stack::{Card, VStack};

/// The tests' profiles directory (tests/profiles: the virtual card's ATR
/// claimed for `iso`), which every run of the binary gets as
/// SCUNBLOCK_PROFILES_DIR unless a test sets its own.
pub const TEST_PROFILES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/profiles");

/// A Command for the scunblock binary under test.
pub fn scunblock() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scunblock"));
    cmd.env("SCUNBLOCK_PROFILES_DIR", TEST_PROFILES_DIR)
        .env_remove("SCUNBLOCK_ALLOW_UNKNOWN_TRIES");
    cmd
}
