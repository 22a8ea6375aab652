//! Build script: records the git revision for the long `--version`
//! (src/cli/version.rs). It asks git once per change of HEAD and tolerates
//! having no git or no repository (a source tarball): the revision is then
//! unknown, unless SCUNBLOCK_GIT_REV gives it (packagers building from a tarball).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// Rerun when HEAD moves: HEAD itself (checkout), the branch it points to
/// (commit), and packed-refs (gc). Only files that exist: cargo reruns the script
/// on every build for a missing one.
fn watch_head() {
    let mut files = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        files.push(git(&["rev-parse", "--git-path", &branch]));
    }
    files.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for f in files.into_iter().flatten() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._~".contains(&b))
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SCUNBLOCK_GIT_REV");
    let rev = match std::env::var("SCUNBLOCK_GIT_REV") {
        // One word: it becomes one line of `--version` (and a rustc-env value).
        Ok(rev) if is_word(rev.trim()) => Some(rev.trim().to_owned()),
        _ => {
            watch_head();
            git(&["rev-parse", "--short=12", "HEAD"]).filter(|r| is_word(r))
        }
    };
    // Empty when unknown: version.rs then leaves the line out.
    println!(
        "cargo:rustc-env=SCUNBLOCK_GIT_REV={}",
        rev.unwrap_or_default()
    );
}
