//! Shared parts of the integration tests. Each test binary compiles its own copy, so unused
//! items are normal: every module allows dead_code itself (`#![allow(dead_code)]`).

pub mod cm;
pub mod hsm;
pub mod rig;
pub mod run;
pub mod secrets;
pub mod stack;

/// Whether every test must really run: in CI (`CI` set, as every CI service does) or when
/// `SCUNBLOCK_REQUIRE_ALL=1` (exported by scripts/test). There a missing part is a failure,
/// so the test command cannot go green without running the test.
pub fn all_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("SCUNBLOCK_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// The one rule for a test whose part (a KDC, another user, a tool) may be missing: `part`
/// is what the test needs, or why it cannot be had. `Some` lets the test go on; on a
/// developer's machine `None` says on stderr, past the harness's capture, that `test` was
/// SKIPPED and why (the caller returns); under [`all_required`] it fails the test instead.
#[allow(dead_code)]
pub fn require<T, E: std::fmt::Display>(test: &str, part: Result<T, E>) -> Option<T> {
    use std::io::Write;
    match part {
        Ok(t) => Some(t),
        Err(why) if all_required() => {
            panic!("{test} cannot run: {why} (CI or SCUNBLOCK_REQUIRE_ALL=1: a missing part fails)")
        }
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}
