//! Running the real `scunblock` binary in tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;

/// A finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Assert the exit code, showing the output when it differs, and that
    /// nothing panicked.
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
        self
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Assert that stderr contains `needle`, showing stderr when it does not.
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(self.stderr.contains(needle), "{}", self.stderr);
        self
    }

    /// Assert that stdout contains `needle`, showing stdout when it does not.
    pub fn stdout_has(&self, needle: &str) -> &Run {
        assert!(self.stdout.contains(needle), "{}", self.stdout);
        self
    }
}

/// Run `scunblock` with `args`, the given environment and stdin. `csock` is
/// the private pcscd's socket (PCSCLITE_CSOCK_NAME).
pub fn scunblock(
    csock: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Run {
    let mut cmd = super::stack::scunblock();
    cmd.args(args)
        .env_remove("SCUNBLOCK_READER")
        .env_remove("PCSCLITE_CSOCK_NAME")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(s) = csock {
        cmd.env("PCSCLITE_CSOCK_NAME", s);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn scunblock");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().unwrap();
        si.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().expect("wait for scunblock");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run another program (a third-party tool, a set-up script) to its end with
/// stdin closed; a failure fails the test with what the program printed.
pub fn tool(cmd: &mut std::process::Command, what: &str) -> std::process::Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run it: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// All that is left in a child's pipe (`child.stdout.take()` or `child.stderr.take()`),
/// as text.
pub fn drain(pipe: Option<impl std::io::Read>) -> String {
    let mut text = String::new();
    pipe.expect("a piped stream")
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Write a secret file with mode 600.
pub fn secret_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    p
}

/// `hex` and a newline in the 0600 file `admin.key` of `dir` (a `--admin-key-file`); its path.
pub fn admin_key_file(dir: &Path, hex: &str) -> String {
    secret_file(dir, "admin.key", format!("{hex}\n").as_bytes())
        .display()
        .to_string()
}

/// `unblock --admin-key-file KEY --new-pin-env NEW_PIN`: the local-key unblock the tests
/// start from (a test adds its own options after it).
pub fn unblock_args(key_file: &str) -> Vec<&str> {
    vec![
        "unblock",
        "--admin-key-file",
        key_file,
        "--new-pin-env",
        "NEW_PIN",
    ]
}

pub const ZERO_KEY: &str = "000000000000000000000000000000000000000000000000";
/// A key that is not the card's. Not "01" * 24: DES ignores parity bits, so that is the
/// zero key again.
pub const WRONG_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";
/// The PIV default management key (3DES, three equal halves), also the GIDS example key of
/// Microsoft's docs.
pub const PIV_DEFAULT_KEY: &str = "010203040506070801020304050607080102030405060708";
pub const GOLDEN_CHALLENGE: &str = "d61143f9ccffd2ca";
pub const GOLDEN_RESPONSE: &str = "17466e766e303cb6";

/// The card's APDU log (lowercase hex strings).
pub fn apdus(state: &Value) -> Vec<String> {
    state["apdus"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_lowercase))
                .collect()
        })
        .unwrap_or_default()
}

/// EXTERNAL AUTHENTICATE commands with data in an APDU log.
pub fn cryptograms(state: &Value) -> usize {
    apdus(state)
        .iter()
        .filter(|a| a.starts_with("0082") && a.len() > 8)
        .count()
}
