//! Where the test kit's binaries and the repository's scripts are.
//!
//! A binary is found next to the running executable: cargo puts the test kit's binaries in
//! `target/<profile>/`, the bench runs from there too, and test executables run from
//! `target/<profile>/deps/`. This works for the main crate's integration tests, the test
//! kit's own tests and the bench alike, without `CARGO_BIN_EXE_*` (which only the crate
//! that owns a binary sees).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// `$env_override` if set, else `name` in the running executable's directory or its parent.
pub fn locate(name: &str, env_override: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_override) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("the path of the running executable")?;
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&file))
        .collect();
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => bail!(
            "{name} is missing (looked at {}): run cargo build --workspace first (or cargo \
             test --workspace), or set {env_override}",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The virtual card (`$SCUNBLOCK_VCARD`, else next to the running executable).
pub fn vcard_bin() -> PathBuf {
    crate::or_panic(locate("scunblock-vcard", "SCUNBLOCK_VCARD"))
}

/// The CM test server (`$SCUNBLOCK_CMSERVER`, else next to the running executable).
pub fn cmserver_bin() -> PathBuf {
    crate::or_panic(locate("scunblock-cmserver", "SCUNBLOCK_CMSERVER"))
}

/// Another PC/SC client for the fault tests (`$SCUNBLOCK_HOLDCARD`, else next to the
/// running executable).
pub fn holdcard_bin() -> PathBuf {
    crate::or_panic(locate("scunblock-holdcard", "SCUNBLOCK_HOLDCARD"))
}

/// The repository: `$SCUNBLOCK_REPO`, else the one this crate was built from (it lives in
/// tests/testkit).
pub fn repo_dir() -> PathBuf {
    match std::env::var_os("SCUNBLOCK_REPO") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    }
}

/// `scripts/vstack` (`$SCUNBLOCK_VSTACK`, else in [`repo_dir`]).
pub fn vstack_script() -> PathBuf {
    match std::env::var_os("SCUNBLOCK_VSTACK") {
        Some(p) => PathBuf::from(p),
        None => repo_dir().join("scripts/vstack"),
    }
}
