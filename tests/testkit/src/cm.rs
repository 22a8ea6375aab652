//! The MIM CM REST test server (`scunblock-cmserver`) as a child process, and a throwaway
//! test CA for its https side.
//!
//! ```ignore
//! let cm = CmServer::start(&["--smartcard", &format!("{SCID}={CARDID}"), "--approve-after", "1"]);
//! // run scunblock with `--cm <cm.url>` ...
//! let log = cm.requests();              // one JSON object per HTTP request, in order
//! assert_eq!(log[0]["route"], "smartcards");
//! ```
//!
//! The server binary is found by [`crate::bins::cmserver_bin`] (`SCUNBLOCK_CMSERVER=/path`
//! overrides it). The server listens on 127.0.0.1 with a free port and logs to a file in a
//! private temp dir; it exits when its handle is dropped (and by itself if the process that
//! started it dies, since it watches its stdin pipe).
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

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use serde_json::Value;

use crate::or_panic;

/// The ids and vector of the CM docs' example (always registered in the server).
pub const DOCS_REQUEST: &str = "a9b4b42c-cc50-4c9b-89d1-bbc0bcd5a099";
pub const DOCS_SMARTCARD: &str = "17cf063d-e337-4aa9-a822-346554ddd3c9";
pub const DOCS_CARD_ID: &str = "bc88f13f-83ba-4037-8262-46eba1291c6e";
/// Challenge d61143f9ccffd2ca; the response under the all-zero 24-byte key is 17466e766e303cb6.
pub const DOCS_CHALLENGE_B64: &str = "1hFD+cz/0so=";
pub const DOCS_RESPONSE_B64: &str = "F0Zudm4wPLY=";
/// The API root under the server URL.
pub const API_PATH: &str = "/CertificateManagement/api/v1.0";

const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct CmServer {
    child: Child,
    /// `http://127.0.0.1:PORT` (or `https://...`), without a trailing slash.
    pub url: String,
    log: PathBuf,
    /// How far [`CmServer::new_requests`] has read the log.
    offset: u64,
    dir: tempfile::TempDir,
}

impl CmServer {
    /// Start the server with extra arguments (see `scunblock-cmserver --help`); waits for
    /// its `listening on` line. `--listen`, `--log` and `--exit-on-stdin-eof` are passed
    /// before `args`; do not pass `--log` yourself, or `requests()` reads the wrong file.
    pub fn start(args: &[&str]) -> CmServer {
        or_panic(
            crate::bins::locate("scunblock-cmserver", "SCUNBLOCK_CMSERVER").and_then(|bin| {
                let dir = private_dir()?;
                let log = dir.path().join("requests.jsonl");
                CmServer::try_start(&bin, dir, log, args)
            }),
        )
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

    /// Start `bin` with its request log at `log` and its stderr in `dir`/stderr.log; `dir`
    /// lives as long as the server (see [`CmServer::dir`]).
    pub fn try_start(
        bin: &Path,
        dir: tempfile::TempDir,
        log: PathBuf,
        args: &[impl AsRef<OsStr>],
    ) -> anyhow::Result<CmServer> {
        let stderr_path = dir.path().join("stderr.log");
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("create {}", stderr_path.display()))?;
        let mut child = Command::new(bin)
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
            .with_context(|| format!("cannot run {}", bin.display()))?;

        let stdout = child.stdout.take().context("piped stdout")?;
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
            let args: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
            bail!(
                "scunblock-cmserver {args:?} did not start (first stdout line: {line:?}, \
                 exit: {status:?}); its stderr:\n{err}"
            );
        };
        Ok(CmServer {
            child,
            url,
            log,
            offset: 0,
            dir,
        })
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

    /// The server process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The logged requests so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        or_panic(parse_log(&text))
    }

    /// The logged requests to one route (e.g. "authresponse", "put-request").
    pub fn requests_to(&self, route: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["route"] == route)
            .collect()
    }

    /// The requests logged since the last call (whole lines only).
    pub fn new_requests(&mut self) -> anyhow::Result<Vec<Value>> {
        let Ok(mut f) = File::open(&self.log) else {
            return Ok(vec![]);
        };
        f.seek(SeekFrom::Start(self.offset))
            .context("seek in the CM server log")?;
        let mut text = String::new();
        f.read_to_string(&mut text)
            .context("read the CM server log")?;
        // Whole lines only (a line is written before its response is sent).
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        self.offset += whole as u64;
        parse_log(&text[..whole])
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

fn private_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("scunblock-cm.")
        .tempdir()
        .context("create a temp dir for the CM server")
}

fn parse_log(text: &str) -> anyhow::Result<Vec<Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad CM server log line {l:?}")))
        .collect()
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
    or_panic(try_test_ca(&crate::bins::repo_dir(), dir))
}

/// `REPO/scripts/testca DIR`, as a `Result`.
pub fn try_test_ca(repo: &Path, dir: &Path) -> anyhow::Result<TestCa> {
    let script = repo.join("scripts/testca");
    let out = Command::new("sh")
        .arg(&script)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    ensure!(
        out.status.success(),
        "scripts/testca failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |name: &str| -> anyhow::Result<String> {
        let path = dir.join(name);
        path.to_str()
            .map(str::to_string)
            .with_context(|| format!("{} is not a UTF-8 path", path.display()))
    };
    Ok(TestCa {
        dir: dir.to_path_buf(),
        ca_cert: p("ca.pem")?,
        server_cert: p("server.pem")?,
        server_key: p("server-key.pem")?,
        self_signed_cert: p("self-signed.pem")?,
        self_signed_key: p("self-signed-key.pem")?,
        client_cert: p("client.pem")?,
        client_key: p("client-key.pem")?,
        client_identity: p("client-identity.pem")?,
    })
}
