//! End-to-end checks of scunblock-cmserver: a real process on loopback, driven by a minimal
//! HTTP/1.1 client (and rustls for https).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use scunblock_testkit::cm::{
    test_ca, CmServer, API_PATH as API, DOCS_CARD_ID as CARD, DOCS_REQUEST as REQ,
    DOCS_SMARTCARD as SC,
};

/// The server's `HOST:PORT`, and a plain-HTTP client connected to it.
trait Loopback {
    fn addr(&self) -> String;
    fn connect(&self) -> Client<TcpStream>;
}

impl Loopback for CmServer {
    fn addr(&self) -> String {
        self.url
            .split("://")
            .nth(1)
            .expect("the URL has a scheme")
            .to_string()
    }

    fn connect(&self) -> Client<TcpStream> {
        let addr = self.addr();
        Client::new(TcpStream::connect(&addr).unwrap(), &addr)
    }
}

struct Client<S: Read + Write> {
    s: BufReader<S>,
    host: String,
}

impl<S: Read + Write> Client<S> {
    fn new(s: S, host: &str) -> Self {
        Client {
            s: BufReader::new(s),
            host: host.into(),
        }
    }

    fn try_call(
        &mut self,
        method: &str,
        target: &str,
        json: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        let bad = |what: &str| std::io::Error::other(what.to_string());
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(b) = json {
            req += &format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            );
        }
        req += "\r\n";
        req += json.unwrap_or("");
        self.s.get_mut().write_all(req.as_bytes())?;
        self.s.get_mut().flush()?;
        let mut line = String::new();
        self.s.read_line(&mut line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut len = 0;
        loop {
            let mut h = String::new();
            self.s.read_line(&mut h)?;
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                len = v.trim().parse().map_err(|_| bad("bad Content-Length"))?;
            }
        }
        let mut body = vec![0; len];
        self.s.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    fn call(&mut self, method: &str, target: &str, json: Option<&str>) -> (u16, String) {
        self.try_call(method, target, json).unwrap()
    }

    fn get(&mut self, target: &str) -> (u16, String) {
        self.call("GET", target, None)
    }
}

fn docs_example_target() -> String {
    format!(
        "/certificatemanagement/api/v1.0/requests/{REQ}/smartcards/{SC}/authenticationresponse\
         ?cardid={CARD}&challenge=1hFD%2Bcz%2F0so%3D&diversified=False"
    )
}

#[test]
fn docs_example_over_one_kept_alive_connection() {
    let srv = CmServer::start(&[]);
    let mut c = srv.connect();
    assert_eq!(
        c.get(&docs_example_target()),
        (200, "\"F0Zudm4wPLY=\"".into())
    );
    let (status, body) = c.get(&format!("{API}/SMARTCARDS/{SC}/Operations"));
    assert_eq!(
        (status, body.as_str()),
        (200, r#"["renew","unblock","retire"]"#)
    );
    let log = srv.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["conn"], log[1]["conn"]);
    assert_eq!(log[1]["conn_seq"], 2);
    assert_eq!(log[0]["peer"], log[1]["peer"]);
    assert_eq!(
        log[0]["query"],
        format!("cardid={CARD}&challenge=1hFD%2Bcz%2F0so%3D&diversified=False")
    );
    assert_eq!(log[0]["info"]["response"], "17466e766e303cb6");
    // A second connection gets another id.
    srv.connect().get(&format!("{API}/smartcards"));
    assert_ne!(srv.requests()[2]["conn"], log[0]["conn"]);
}

#[test]
fn unblock_flow_with_approval_after_polls() {
    let sc = "11111111-2222-3333-4444-555555555555";
    let card = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    let key = "0102030405060708".repeat(3);
    let srv = CmServer::start(&[
        "--smartcard",
        &format!("{sc}={card}"),
        "--key",
        &format!("{card}={key}"),
        "--approve-after",
        "1",
    ]);
    let mut c = srv.connect();
    let (s, body) = c.get(&format!("{API}/smartcards?cardid=%7B{card}%7D"));
    let cards: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((s, cards[0]["Uuid"].as_str()), (200, Some(sc)));
    let body =
        format!(r#"{{"type":"Unblock","smartcard":"{sc}","datacollection":[],"comment":""}}"#);
    let (s, created) = c.call("POST", &format!("{API}/requests"), Some(&body));
    assert_eq!(s, 201);
    let path: String = serde_json::from_str(&created).unwrap();
    let id = path.strip_prefix("api/v1.0/requests/").unwrap().to_string();
    let status = |c: &mut Client<TcpStream>| {
        let (_, b) = c.get(&format!("{API}/requests/{id}"));
        serde_json::from_str::<Value>(&b).unwrap()["Status"].clone()
    };
    assert_eq!(status(&mut c), 1);
    assert_eq!(status(&mut c), 3);
    let ar = format!(
        "{API}/requests/{id}/smartcards/{sc}/authenticationresponse?cardid={card}\
         &challenge=1hFD%2Bcz%2F0so%3D&diversified=False"
    );
    let (s, resp) = c.get(&ar);
    assert_eq!(s, 200);
    // 3DES-EDE(0102030405060708 x3, d61143f9ccffd2ca), checked with openssl.
    assert_eq!(resp, "\"K1EIo4id/24=\"");
    let (s, _) = c.call(
        "PUT",
        &format!("{API}/requests/{id}"),
        Some(r#"{"status":"Completed"}"#),
    );
    assert_eq!(s, 200);
    let log = srv.requests();
    assert_eq!(log.last().unwrap()["info"]["final_status"], "Completed");
    assert!(log.iter().all(|l| l["conn"] == log[0]["conn"]));
}

#[test]
fn faults_and_hostile_input() {
    let srv = CmServer::start(&["--fail-authresponse", "500"]);
    let (s, body) = srv.connect().get(&docs_example_target());
    assert_eq!(s, 500);
    let id = srv.requests()[0]["info"]["correlation_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(body.contains(&format!("Correlation ID: {id}")), "{body}");

    // A 100 KB query: 414, and the server lives on.
    let huge = format!("{API}/smartcards?cardid={}", "a".repeat(100_000));
    assert_eq!(srv.connect().get(&huge).0, 414);
    let mut raw = TcpStream::connect(srv.addr()).unwrap();
    raw.write_all(b"\x16\x03\x01\x00\xff garbage\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    assert!(sink.starts_with(b"HTTP/1.1 400"));
    assert_eq!(srv.connect().get(&format!("{API}/smartcards")).0, 200);
}

#[test]
fn auth_gates() {
    let srv = CmServer::start(&["--always-401"]);
    assert_eq!(srv.connect().get(&format!("{API}/smartcards")).0, 401);
    let srv = CmServer::start(&["--require-bearer", "t0ken"]);
    assert_eq!(srv.connect().get(&format!("{API}/smartcards")).0, 401);
}

#[test]
fn exits_cleanly_on_sigterm() {
    let mut srv = CmServer::start(&[]);
    let pid = srv.child().id() as libc::pid_t;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = srv.child().wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

fn tls_client(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    })
}

fn https_get(
    srv: &CmServer,
    config: Arc<rustls::ClientConfig>,
    target: &str,
) -> std::io::Result<(u16, String)> {
    let name = "localhost".try_into().unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tls = rustls::StreamOwned::new(conn, TcpStream::connect(srv.addr())?);
    Client::new(tls, &srv.addr()).try_call("GET", target, None)
}

#[test]
fn https_and_mutual_tls() {
    // A missing openssl fails the test (test_ca panics with its output), never skips it.
    let pki = tempfile::tempdir().unwrap();
    let ca = test_ca(pki.path());
    let p = |n: &str| ca.dir.join(n);
    let srv = CmServer::start_https(&ca, &[]);
    let target = format!("{API}/smartcards/{SC}/operations");
    let ok = https_get(&srv, tls_client(&p("ca.pem"), None), &target).unwrap();
    assert_eq!(ok.0, 200);
    assert!(srv.requests()[0]["tls"].as_bool().unwrap());
    // A client that does not trust the server's issuer fails.
    assert!(https_get(&srv, tls_client(&p("self-signed.pem"), None), &target).is_err());

    let mtls = CmServer::start_https(&ca, &["--client-ca", &ca.ca_cert]);
    let with_cert = tls_client(&p("ca.pem"), Some((&p("client.pem"), &p("client-key.pem"))));
    assert_eq!(https_get(&mtls, with_cert, &target).unwrap().0, 200);
    assert_eq!(mtls.requests()[0]["client_cert"], true);
    assert!(https_get(&mtls, tls_client(&p("ca.pem"), None), &target).is_err());
    assert_eq!(mtls.requests().len(), 1);
}
