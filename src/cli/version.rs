//! The long `--version`: the release, the git revision it was built from
//! (when build.rs could ask git) and the cargo features compiled in, so a bug
//! report says exactly which build it is about. `-V` stays `scunblock X.Y.Z`.

use std::sync::LazyLock;

/// The cargo features that change behaviour, in the order of Cargo.toml.
fn features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(feature = "negotiate") {
        f.push("negotiate");
    }
    f
}

/// What `--version` prints after "scunblock ".
pub fn long() -> &'static str {
    static LONG: LazyLock<String> = LazyLock::new(|| {
        let mut s = env!("CARGO_PKG_VERSION").to_owned();
        let rev = env!("SCUNBLOCK_GIT_REV");
        if !rev.is_empty() {
            s.push_str("\ngit: ");
            s.push_str(rev);
        }
        let features = features();
        s.push_str("\nfeatures: ");
        s.push_str(&if features.is_empty() {
            "none".to_owned()
        } else {
            features.join(" ")
        });
        s
    });
    LONG.as_str()
}
