//! Throwaway SoftHSM2 tokens for the PKCS#11 tests: each lives in its own
//! temporary directory, named by SOFTHSM2_CONF, and keys are imported with
//! OpenSC's pkcs11-tool as sensitive, non-extractable secret keys. The
//! packages come from scripts/deps; a missing tool fails the test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// OpenSC's PKCS#11 spy: logs every call of the module named by $PKCS11SPY.
pub const SPY: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";
pub const USER_PIN: &str = "918273";
const SO_PIN: &str = "12345678";

pub struct SoftHsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
}

impl SoftHsm {
    /// A fresh SoftHSM with one token, `label`, whose user PIN is [`USER_PIN`].
    pub fn new(label: &str) -> SoftHsm {
        assert!(
            Path::new(SOFTHSM).is_file(),
            "{SOFTHSM} is missing: scripts/deps installs softhsm2"
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let h = SoftHsm { dir, conf };
        h.init_token(label);
        h
    }

    /// Another token in the same SoftHSM.
    pub fn init_token(&self, label: &str) {
        self.run(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                SO_PIN,
                "--pin",
                USER_PIN,
            ],
        );
    }

    /// Delete a token (as if it were pulled out: its objects are gone).
    pub fn delete_token(&self, label: &str) {
        self.run("softhsm2-util", &["--delete-token", "--token", label]);
    }

    pub fn env(&self) -> (&'static str, String) {
        ("SOFTHSM2_CONF", self.conf.display().to_string())
    }

    /// Import `key` (raw bytes) as a sensitive, non-extractable secret key:
    /// `key_type` as pkcs11-tool spells it (DES3:24, AES:16).
    pub fn import(&self, token: &str, label: &str, id: &str, key_type: &str, key: &[u8]) {
        let file = self.dir.path().join(format!("{label}.bin"));
        std::fs::write(&file, key).unwrap();
        let f = file.display().to_string();
        let mut args = logged_in(token);
        args.extend_from_slice(&[
            "--write-object",
            &f,
            "--type",
            "secrkey",
            "--key-type",
            key_type,
            "--sensitive",
            "--label",
            label,
            "--id",
            id,
        ]);
        self.run("pkcs11-tool", &args);
        std::fs::remove_file(&file).unwrap();
    }

    /// `pkcs11-tool --list-objects` of the token, logged in.
    pub fn list(&self, token: &str) -> String {
        let mut args = logged_in(token);
        args.push("--list-objects");
        self.run("pkcs11-tool", &args)
    }

    /// Try to read the key's value out of the token; the output and whether it worked.
    pub fn try_extract(&self, token: &str, label: &str) -> (bool, String) {
        let out = self.dir.path().join("extracted.bin");
        let o = Command::new("pkcs11-tool")
            .args(logged_in(token))
            .args([
                "--read-object",
                "--type",
                "secrkey",
                "--label",
                label,
                "--output-file",
            ])
            .arg(&out)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .expect("pkcs11-tool (scripts/deps installs opensc)");
        let got = std::fs::read(&out).unwrap_or_default();
        (
            o.status.success() && !got.is_empty(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    fn run(&self, tool: &str, args: &[&str]) -> String {
        let o = Command::new(tool)
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/deps installs softhsm2 and opensc)"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{tool} {args:?} failed:\n{text}");
        text
    }
}

/// pkcs11-tool's options that open `token` of SoftHSM and log in with [`USER_PIN`].
fn logged_in(token: &str) -> Vec<&str> {
    vec![
        "--module",
        SOFTHSM,
        "--token-label",
        token,
        "--login",
        "--pin",
        USER_PIN,
    ]
}

/// 3DES-ECB of one block, computed by openssl: the independent check.
pub fn openssl_des3(key_hex: &str, block_hex: &str) -> String {
    openssl_ecb("-des-ede3", key_hex, block_hex)
}

pub fn openssl_ecb(cipher: &str, key_hex: &str, block_hex: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut c = Command::new("openssl")
        .args(["enc", cipher, "-K", key_hex, "-nopad"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (scripts/deps installs it)");
    c.stdin
        .take()
        .unwrap()
        .write_all(&hex::decode(block_hex).unwrap())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    hex::encode(o.stdout)
}
