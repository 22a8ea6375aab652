#![allow(dead_code)]
//! Harness for the MIM CM REST test server (`scunblock-cmserver`, package scunblock-testkit).
//!
//! ```ignore
//! let cm = CmServer::start(&["--smartcard", &format!("{SCID}={CARDID}"), "--approve-after", "1"]);
//! // run scunblock with `--cm <cm.url>` ...
//! let log = cm.requests();              // one JSON object per HTTP request, in order
//! assert_eq!(log[0]["route"], "smartcards");
//! ```
//!
//! The server binary is built by `cargo build --workspace` (or `cargo test --workspace`) into
//! the same target directory as `scunblock`; `SCUNBLOCK_CMSERVER=/path` overrides the lookup.
//! The server listens on 127.0.0.1 with a free port and logs to a file in a private temp
//! dir; it exits when this handle is dropped (and by itself if the test process dies, since
//! it watches its stdin pipe).
//!
//! Log line fields (see tests/testkit/src/bin/cmserver/log.rs): seq, conn (TCP connection id:
//! equal ids = one reused connection), conn_seq, peer, tls, client_cert, method, path (raw),
//! query (raw, not decoded), headers (lowercased names), body, status, route (authresponse,
//! diversifiedkey, smartcards, smartcard, operations, list-requests, create-request,
//! get-request, put-request, or null), info (what the server did: key_source, challenge and
//! response in hex, created request id, final_status, injected code, correlation_id, error).
//! A line is written before its response is sent: once the client has its answer, the line
//! is there. (A client that timed out before the answer sees its line only after the
//! server's delay has passed.)

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The ids and vector of the CM docs' example (always registered in the server).
pub const DOCS_REQUEST: &str = "a9b4b42c-cc50-4c9b-89d1-bbc0bcd5a099";
pub const DOCS_SMARTCARD: &str = "17cf063d-e337-4aa9-a822-346554ddd3c9";
pub const DOCS_CARD_ID: &str = "bc88f13f-83ba-4037-8262-46eba1291c6e";
/// Challenge d61143f9ccffd2ca; the response under the all-zero 24-byte key is 17466e766e303cb6.
pub const DOCS_CHALLENGE_B64: &str = "1hFD+cz/0so=";
pub const DOCS_RESPONSE_B64: &str = "F0Zudm4wPLY=";
/// The API root under the server URL.
pub const API_PATH: &str = "/CertificateManagement/api/v1.0";

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

const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct CmServer {
    child: Child,
    /// `http://127.0.0.1:PORT` (or `https://...`), without a trailing slash.
    pub url: String,
    log: PathBuf,
    dir: tempfile::TempDir,
}

/// Where the server binary is: next to `scunblock` in the target directory.
pub fn cmserver_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SCUNBLOCK_CMSERVER") {
        return PathBuf::from(p);
    }
    let main = Path::new(env!("CARGO_BIN_EXE_scunblock"));
    let dir = main
        .parent()
        .expect("CARGO_BIN_EXE_scunblock has a parent directory");
    let bin = dir.join(format!(
        "scunblock-cmserver{}",
        std::env::consts::EXE_SUFFIX
    ));
    if !bin.is_file() {
        panic!(
            "the CM test server is not built ({} is missing): run cargo build --workspace first \
             (or cargo test --workspace)",
            bin.display()
        );
    }
    bin
}

impl CmServer {
    /// Start the server with extra arguments (see `scunblock-cmserver --help`); waits for
    /// its `listening on` line. `--listen`, `--log` and `--exit-on-stdin-eof` are passed
    /// before `args`; do not pass `--log` yourself, or `requests()` reads the wrong file.
    pub fn start(args: &[&str]) -> CmServer {
        let dir = tempfile::Builder::new()
            .prefix("scunblock-cm.")
            .tempdir()
            .expect("create a temp dir for the CM server");
        let log = dir.path().join("requests.jsonl");
        let stderr_path = dir.path().join("stderr.log");
        let stderr = File::create(&stderr_path).expect("create the CM server's stderr file");
        let bin = cmserver_binary();
        let mut child = Command::new(&bin)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--log")
            .arg(&log)
            .arg("--exit-on-stdin-eof")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));

        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            // Keep draining so that the server can never block on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx.recv_timeout(START_TIMEOUT);
        let url = match &line {
            Ok(Ok(l)) => l.trim().strip_prefix("listening on ").map(str::to_string),
            _ => None,
        };
        let Some(url) = url else {
            let _ = child.kill();
            let status = child.wait();
            let mut err = String::new();
            let _ = File::open(&stderr_path).and_then(|mut f| f.read_to_string(&mut err));
            panic!(
                "scunblock-cmserver {args:?} did not start (first stdout line: {line:?}, \
                 exit: {status:?}); its stderr:\n{err}"
            );
        };
        CmServer {
            child,
            url,
            log,
            dir,
        }
    }

    /// `start` with `--tls-cert/--tls-key` from a [`test_ca`], plus `args` (e.g.
    /// `["--client-ca", &ca.ca_cert]` for mutual TLS).
    pub fn start_https(ca: &TestCa, args: &[&str]) -> CmServer {
        let mut all = vec![
            "--tls-cert",
            ca.server_cert.as_str(),
            "--tls-key",
            ca.server_key.as_str(),
        ];
        all.extend_from_slice(args);
        CmServer::start(&all)
    }

    /// The API root: `{url}/CertificateManagement/api/v1.0`.
    pub fn api(&self) -> String {
        format!("{}{API_PATH}", self.url)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the URL ends with :PORT")
    }

    /// A private temp directory that lives as long as the server (for keys, certs ...).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The logged requests so far, in order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("bad CM server log line {l:?}: {e}"))
            })
            .collect()
    }

    /// The logged requests to one route (e.g. "authresponse", "put-request").
    pub fn requests_to(&self, route: &str) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["route"] == route)
            .collect()
    }

    /// What the server wrote to stderr (TLS handshake failures and the like).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for CmServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PKI made by `scripts/testca` (openssl), as UTF-8 path strings ready to be
/// passed as arguments: a CA, a server certificate for localhost and 127.0.0.1 signed by it,
/// a self-signed server certificate (same names, trusted by nobody), and a client
/// certificate signed by the CA (for `--client-ca`, mutual TLS).
pub struct TestCa {
    pub dir: PathBuf,
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub self_signed_cert: String,
    pub self_signed_key: String,
    pub client_cert: String,
    pub client_key: String,
    /// Client key + certificate in one PEM (reqwest's Identity::from_pem, curl --cert).
    pub client_identity: String,
}

/// Run `scripts/testca DIR` (about 0.2 s); panics with openssl's output if it fails.
pub fn test_ca(dir: &Path) -> TestCa {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testca");
    let out = Command::new("sh")
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "scripts/testca failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |name: &str| {
        dir.join(name)
            .to_str()
            .expect("the test CA directory is a UTF-8 path")
            .to_string()
    };
    TestCa {
        dir: dir.to_path_buf(),
        ca_cert: p("ca.pem"),
        server_cert: p("server.pem"),
        server_key: p("server-key.pem"),
        self_signed_cert: p("self-signed.pem"),
        self_signed_key: p("self-signed-key.pem"),
        client_cert: p("client.pem"),
        client_key: p("client-key.pem"),
        client_identity: p("client-identity.pem"),
    }
}
