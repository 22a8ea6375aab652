//! `-V` and `--version`: the short form is one line for scripts, the long one
//! says which build it is (git revision, features). No card or stack needed.

use std::process::Command;

fn run(flag: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_scunblock"))
        .arg(flag)
        .output()
        .expect("run scunblock");
    assert!(out.status.success(), "{flag}: {:?}", out.status);
    assert!(out.stderr.is_empty(), "{flag} wrote on stderr");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn short_version_is_one_line() {
    assert_eq!(
        run("-V"),
        format!("scunblock {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn long_version_adds_the_revision_and_the_features() {
    let text = run("--version");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("scunblock {}", env!("CARGO_PKG_VERSION")),
        "{text}"
    );
    // The tests run from the git checkout (scripts/test), so build.rs knew the revision
    // (unless SCUNBLOCK_GIT_REV overrode it).
    let rev = std::env::var("SCUNBLOCK_GIT_REV")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_head)
        .expect("a git checkout or SCUNBLOCK_GIT_REV");
    // HEAD may have moved since the build only if the binary is stale; cargo test rebuilds.
    assert_eq!(
        lines.get(1).copied(),
        Some(format!("git: {rev}").as_str()),
        "{text}"
    );
    let features = if cfg!(feature = "negotiate") {
        "negotiate"
    } else {
        "none"
    };
    assert_eq!(
        lines.get(2).copied(),
        Some(format!("features: {features}").as_str()),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
}
