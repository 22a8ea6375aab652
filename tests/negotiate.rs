//! `--cm-auth negotiate` (the default with --cm) against real parts: a throwaway MIT Kerberos
//! KDC on loopback (`scripts/krb5-realm`), the CM test server verifying the SPNEGO tokens as a
//! GSSAPI acceptor (`--negotiate-keytab`), the real binary, and the virtual card under pcscd.
//!
//! The KDC packages are installed by `scripts/krb5-realm install` (the test script runs it;
//! the first test here runs it too if they are missing). Only when they cannot be installed
//! (no root, no apt) do these tests skip, saying why, and only outside CI: with `CI` or
//! `SCUNBLOCK_REQUIRE_ALL=1` set (scripts/test sets it) they fail ([`common::require`]).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use common::cm::{
    cm_unblock_args, long_pin_profile, CmServer, DOCS_REQUEST as REQ, DOCS_SMARTCARD as SCID,
};
use common::run::{apdus, cryptograms, scunblock, tool, Run, GOLDEN_CHALLENGE};
use common::stack::{Card, VStack};
use serde_json::Value;

const PIN: &str = "7531902468";
const NO_TICKET: &str = "no Kerberos ticket: run kinit or give --keytab";

/// A throwaway realm SCUNBLOCK.TEST with its KDC (see scripts/krb5-realm); stopped on drop.
struct Realm {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/krb5-realm")
}

/// Install the KDC packages once per test binary; `Err(reason)` if that is impossible.
fn kdc_available() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let have = |tool: &str| {
                ["/usr/sbin", "/usr/bin", "/sbin"]
                    .iter()
                    .any(|d| Path::new(d).join(tool).is_file())
            };
            if have("krb5kdc") && have("kadmin.local") && have("kinit") {
                return Ok(());
            }
            let out = Command::new("bash")
                .arg(script())
                .arg("install")
                .output()
                .map_err(|e| format!("cannot run scripts/krb5-realm install: {e}"))?;
            if out.status.success() && have("krb5kdc") {
                Ok(())
            } else {
                Err(format!(
                    "the MIT KDC packages are missing and `scripts/krb5-realm install` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })
        .clone()
}

impl Realm {
    /// `None` (after saying why) when no KDC can be had on this machine; a failure instead
    /// in CI and under scripts/test ([`common::require`]).
    fn start() -> Option<Realm> {
        common::require("Kerberos test (no KDC)", kdc_available())?;
        let dir = tempfile::Builder::new()
            .prefix("krb5-realm-")
            .tempdir()
            .unwrap();
        let started = Instant::now();
        let out = tool(
            Command::new("bash")
                .arg(script())
                .arg("start")
                .arg(dir.path()),
            "scripts/krb5-realm start",
        );
        eprintln!("realm + KDC up in {} ms", started.elapsed().as_millis());
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| {
                k.starts_with("KRB5") && !k.starts_with("KRB5_KDC") && *k != "KRB5_REALM"
            })
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Realm { dir, env })
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// The client's environment: this realm's krb5.conf, ticket cache and replay cache, and
    /// no default client keytab.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.push((
            "KRB5_CLIENT_KTNAME".into(),
            format!("FILE:{}", self.path("no-such.keytab")),
        ));
        env
    }

    /// `kinit [LIFETIME] -k -t client.keytab scunblock@SCUNBLOCK.TEST` into this realm's
    /// ticket cache.
    fn kinit(&self, lifetime: &[&str]) {
        tool(
            Command::new("kinit")
                .args(lifetime)
                .args(["-k", "-t", &self.path("client.keytab")])
                .arg("scunblock@SCUNBLOCK.TEST")
                .envs(self.env()),
            "kinit",
        );
    }

    fn stop_kdc(&self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

impl Drop for Realm {
    fn drop(&mut self) {
        self.stop_kdc();
    }
}

struct Setup {
    stack: VStack,
    card: Card,
}

fn setup() -> Setup {
    let stack = VStack::start(2);
    let card = stack.insert(
        0,
        &[
            "--challenge",
            GOLDEN_CHALLENGE,
            "--pin-tries",
            "0",
            "--pin-max-len",
            "16",
        ],
    );
    Setup { stack, card }
}

/// The CM server requiring Negotiate with the realm's HTTP keytab, plus `extra`.
fn cm_server(realm: &Realm, extra: &[&str]) -> CmServer {
    let keytab = realm.path("http.keytab");
    let mut args = vec!["--negotiate-keytab", keytab.as_str()];
    args.extend_from_slice(extra);
    CmServer::start(&args)
}

/// `http://localhost:PORT`: the host name gives the SPN HTTP/localhost.
fn localhost_url(cm: &CmServer) -> String {
    format!("http://localhost:{}", cm.port())
}

fn unblock(s: &Setup, realm: &Realm, url: &str, extra: &[&str]) -> Run {
    unblock_env(s, realm, url, extra, &[])
}

fn unblock_env(
    s: &Setup,
    realm: &Realm,
    url: &str,
    extra: &[&str],
    more_env: &[(&str, &str)],
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let profile = long_pin_profile(dir.path());
    let mut args = cm_unblock_args(&profile, url);
    args.push("-v");
    args.extend_from_slice(extra);
    let env = realm.env();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("NEW_PIN", PIN));
    env.extend_from_slice(more_env);
    let started = Instant::now();
    let r = scunblock(Some(&s.stack.csock()), &args, &env, None);
    eprintln!(
        "scunblock {:?} -> {} in {} ms",
        &extra,
        r.code,
        started.elapsed().as_millis()
    );
    for line in r
        .stderr
        .lines()
        .filter(|l| l.contains("error") || l.contains("Negotiate"))
    {
        eprintln!("  {line}");
    }
    r
}

fn authorizations(log: &[Value]) -> Vec<&str> {
    log.iter()
        .filter_map(|q| q["headers"]["authorization"].as_str())
        .collect()
}

fn conns(log: &[Value]) -> std::collections::BTreeSet<u64> {
    log.iter().map(|q| q["conn"].as_u64().unwrap()).collect()
}

fn handshake_lines(r: &Run) -> Vec<&str> {
    r.stderr
        .lines()
        .filter(|l| l.contains("CM: Negotiate handshake with"))
        .collect()
}

/// The card is untouched by a failed sign-in: no cryptogram, all admin tries left.
fn assert_card_untouched(s: &Setup) {
    let state = s.card.state();
    assert_eq!(cryptograms(&state), 0, "{:?}", apdus(&state));
    assert_eq!(state["admin_tries"], 5);
}

#[test]
fn unblock_with_a_keytab_signs_in_once_for_the_whole_workflow() {
    let Some(realm) = Realm::start() else { return };
    let s = setup();
    let cm = cm_server(
        &realm,
        &["--negotiate-spn", "HTTP/localhost", "--approve-after", "2"],
    );
    let keytab = realm.path("client.keytab");
    let r = unblock(
        &s,
        &realm,
        &localhost_url(&cm),
        &[
            "--allow-http",
            "--keytab",
            &keytab,
            "--approval-poll",
            "0.2",
        ],
    );
    r.expect(0);
    assert_eq!(s.card.state()["pin"], PIN);
    let doc = r.json();
    assert_eq!(doc["cm"]["negotiate_handshakes"], 1, "{doc}");

    let log = cm.requests();
    let routes: Vec<&str> = log
        .iter()
        .map(|q| q["route"].as_str().unwrap_or("-"))
        .collect();
    // find smartcard, operations, create request, polls, authenticationresponse, PUT
    for want in [
        "smartcards",
        "operations",
        "create-request",
        "get-request",
        "authresponse",
        "put-request",
    ] {
        assert!(routes.contains(&want), "{want} missing from {routes:?}");
    }
    assert!(log.len() >= 8, "{routes:?}");
    // Exactly one token on the wire, one TCP connection for everything.
    let auths = authorizations(&log);
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert!(auths[0].starts_with("Negotiate "), "{auths:?}");
    assert_eq!(conns(&log).len(), 1, "{log:?}");
    // The anonymous 401, the signed-in retry (mutual auth), then the connection is signed in.
    assert_eq!(
        (log[0]["status"].as_u64(), log[0]["info"]["auth"].as_str()),
        (Some(401), Some("negotiate-missing"))
    );
    assert_eq!(log[1]["info"]["auth"], "negotiate");
    assert_eq!(log[1]["info"]["user"], "scunblock@SCUNBLOCK.TEST");
    assert_eq!(log[1]["info"]["target"], "HTTP/localhost@SCUNBLOCK.TEST");
    assert_eq!(log[1]["info"]["mutual"], true);
    assert!(
        log[2..]
            .iter()
            .all(|q| q["info"]["auth"] == "negotiate-connection"),
        "{log:?}"
    );
    assert_eq!(log.iter().filter(|q| q["status"] == 401).count(), 1);
    // One -v line for the one handshake, naming the SPN; mutual authentication checked.
    let lines = handshake_lines(&r);
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(
        lines[0].contains("HTTP/localhost done (1 round, mutual authentication verified"),
        "{}",
        lines[0]
    );
    eprintln!("{} ({} HTTP requests)", lines[0], log.len());
    // The keytab's tickets stay in memory: the user's ticket cache is not created.
    assert!(!Path::new(&realm.path("ccache")).exists());
}

#[test]
fn a_server_that_signs_in_per_request_gets_a_handshake_per_request() {
    // IIS with authPersistSingleRequest=true: every request is challenged again; each one
    // gets one new handshake on the same connection, none loops.
    let Some(realm) = Realm::start() else { return };
    let s = setup();
    let cm = cm_server(&realm, &["--negotiate-per-request", "--approve-after", "1"]);
    let keytab = realm.path("client.keytab");
    let r = unblock(
        &s,
        &realm,
        &localhost_url(&cm),
        &[
            "--allow-http",
            "--keytab",
            &keytab,
            "--approval-poll",
            "0.2",
        ],
    );
    r.expect(0);
    let log = cm.requests();
    let served = log.iter().filter(|q| q["status"] != 401).count();
    assert_eq!(authorizations(&log).len(), served, "{log:?}");
    assert_eq!(log.len(), 2 * served);
    assert_eq!(
        r.json()["cm"]["negotiate_handshakes"],
        served,
        "{}",
        r.stdout
    );
    assert_eq!(handshake_lines(&r).len(), served);
    r.stderr_has("asked to sign in again");
    assert_eq!(conns(&log).len(), 1);
}

#[test]
fn unblock_with_the_ticket_cache_after_kinit() {
    let Some(realm) = Realm::start() else { return };
    realm.kinit(&[]);
    let s = setup();
    let cm = cm_server(&realm, &["--negotiate-spn", "HTTP/localhost"]);
    let r = unblock(
        &s,
        &realm,
        &localhost_url(&cm),
        &["--allow-http", "--request-id", REQ, "--smartcard-id", SCID],
    );
    r.expect(0);
    assert_eq!(s.card.state()["pin"], PIN);
    r.stderr_has("as scunblock@SCUNBLOCK.TEST");
    let log = cm.requests();
    assert_eq!(authorizations(&log).len(), 1, "{log:?}");
    assert_eq!(conns(&log).len(), 1);
    assert_eq!(log.last().unwrap()["route"], "put-request");
    assert_eq!(log.last().unwrap()["info"]["auth"], "negotiate-connection");
    assert_eq!(handshake_lines(&r).len(), 1, "{}", r.stderr);
    // The service ticket went to the user's cache, as kinit + any Kerberos client does.
    let klist = Command::new("klist").envs(realm.env()).output().unwrap();
    assert!(String::from_utf8_lossy(&klist.stdout).contains("HTTP/localhost@SCUNBLOCK.TEST"));
}

#[test]
fn unblock_with_krb5_client_ktname() {
    let Some(realm) = Realm::start() else { return };
    let s = setup();
    let cm = cm_server(&realm, &["--negotiate-spn", "HTTP/localhost"]);
    let kt = format!("FILE:{}", realm.path("client.keytab"));
    let r = unblock_env(
        &s,
        &realm,
        &localhost_url(&cm),
        &["--allow-http", "--request-id", REQ, "--smartcard-id", SCID],
        &[("KRB5_CLIENT_KTNAME", &kt)],
    );
    r.expect(0);
    assert_eq!(authorizations(&cm.requests()).len(), 1);
    assert_eq!(handshake_lines(&r).len(), 1, "{}", r.stderr);
}

#[test]
fn no_ticket_exits_6_before_the_card_is_touched() {
    let Some(realm) = Realm::start() else { return };
    let s = setup();
    let cm = cm_server(&realm, &[]);
    let r = unblock(&s, &realm, &localhost_url(&cm), &["--allow-http"]);
    r.expect(6);
    r.stderr_has(NO_TICKET);
    assert_eq!(r.json()["exit_code"], 6);
    assert!(
        cm.requests().is_empty(),
        "nothing is sent without credentials"
    );
    assert_card_untouched(&s);
    // The same when the default client keytab is named but missing: still the ticket cache.
    assert!(apdus(&s.card.state())
        .iter()
        .all(|a| !a.starts_with("0082")));
}

#[test]
fn an_expired_ticket_exits_6() {
    let Some(realm) = Realm::start() else { return };
    realm.kinit(&["-l", "1s"]);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let s = setup();
    let cm = cm_server(&realm, &[]);
    let r = unblock(&s, &realm, &localhost_url(&cm), &["--allow-http"]);
    r.expect(6);
    assert!(
        r.stderr
            .contains("the Kerberos ticket has expired: run kinit again"),
        "{}",
        r.stderr
    );
    assert!(cm.requests().is_empty());
    assert_card_untouched(&s);
}

#[test]
fn a_wrong_spn_exits_6_naming_it() {
    let Some(realm) = Realm::start() else { return };
    let s = setup();
    let cm = cm_server(&realm, &[]);
    let keytab = realm.path("client.keytab");
    let r = unblock(
        &s,
        &realm,
        &localhost_url(&cm),
        &[
            "--allow-http",
            "--keytab",
            &keytab,
            "--cm-spn",
            "HTTP/cm-alias.example",
        ],
    );
    r.expect(6);
    r.stderr_has("SPN HTTP/cm-alias.example");
    r.stderr_has("kvno HTTP/cm-alias.example");
    // The anonymous request got its 401; no token could be made.
    let log = cm.requests();
    assert_eq!(authorizations(&log).len(), 0, "{log:?}");
    // A full principal name is taken as it is (no host-to-realm mapping).
    let r = unblock(
        &s,
        &realm,
        &localhost_url(&cm),
        &[
            "--allow-http",
            "--keytab",
            &keytab,
            "--cm-spn",
            "HTTP/cm2.localhost@SCUNBLOCK.TEST",
        ],
    );
    r.expect(6);
    r.stderr_has("SPN HTTP/cm2.localhost@SCUNBLOCK.TEST");
    assert!(
        r.stderr
            .contains("Server HTTP/cm2.localhost@SCUNBLOCK.TEST not found in Kerberos database"),
        "{}",
        r.stderr
    );
    assert_card_untouched(&s);
}

#[test]
fn a_server_that_keeps_answering_401_ends_with_exit_6() {
    let Some(realm) = Realm::start() else { return };
    let s = setup();
    let cm = CmServer::start(&["--always-401"]);
    let keytab = realm.path("client.keytab");
    let started = Instant::now();
    let r = unblock(
        &s,
        &realm,
        &localhost_url(&cm),
        &["--allow-http", "--keytab", &keytab],
    );
    r.expect(6);
    assert!(started.elapsed().as_secs() < 20);
    r.stderr_has("CM rejected the Negotiate sign-in");
    r.stderr_has("HTTP/localhost");
    let log = cm.requests();
    assert_eq!(log.len(), 2, "one anonymous request, one token: {log:?}");
    assert_eq!(authorizations(&log).len(), 1);
    assert_card_untouched(&s);
}

#[test]
fn the_server_rejecting_the_token_exits_6() {
    let Some(realm) = Realm::start() else { return };
    let s = setup();
    // The server takes only tickets for HTTP/127.0.0.1; the client asks for HTTP/localhost.
    let cm = cm_server(&realm, &["--negotiate-spn", "HTTP/127.0.0.1"]);
    let keytab = realm.path("client.keytab");
    let r = unblock(
        &s,
        &realm,
        &localhost_url(&cm),
        &["--allow-http", "--keytab", &keytab],
    );
    r.expect(6);
    r.stderr_has("CM rejected the Negotiate sign-in");
    let log = cm.requests();
    assert_eq!(log[1]["info"]["auth"], "negotiate-rejected", "{log:?}");
    assert_card_untouched(&s);
    // With the URL's host matching the server's SPN it works.
    let r = unblock(&s, &realm, &cm.url, &["--allow-http", "--keytab", &keytab]);
    r.expect(0);
    r.stderr_has("handshake with HTTP/127.0.0.1 done");
}

#[test]
fn an_unreachable_kdc_exits_6() {
    let Some(realm) = Realm::start() else { return };
    let s = setup();
    let cm = cm_server(&realm, &[]);
    realm.stop_kdc();
    let keytab = realm.path("client.keytab");
    let r = unblock(
        &s,
        &realm,
        &localhost_url(&cm),
        &["--allow-http", "--keytab", &keytab],
    );
    r.expect(6);
    r.stderr_has("cannot reach a Kerberos KDC");
    assert_card_untouched(&s);
}

#[test]
fn an_unreachable_kdc_with_a_ticket_cache_exits_6() {
    let Some(realm) = Realm::start() else { return };
    realm.kinit(&[]);
    realm.stop_kdc();
    let s = setup();
    let cm = cm_server(&realm, &[]);
    // The TGT is there, but the service ticket needs the KDC.
    let r = unblock(&s, &realm, &localhost_url(&cm), &["--allow-http"]);
    r.expect(6);
    r.stderr_has("cannot reach a Kerberos KDC");
    assert_card_untouched(&s);
}

#[test]
fn channel_bindings_over_https() {
    let Some(realm) = Realm::start() else { return };
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let ca = common::cm::test_ca(dir.path());
    let keytab = realm.path("client.keytab");
    let start = |mode: &str| {
        CmServer::start_https(
            &ca,
            &[
                "--negotiate-keytab",
                &realm.path("http.keytab"),
                "--negotiate-channel-binding",
                mode,
            ],
        )
    };
    let url = |cm: &CmServer| format!("https://localhost:{}", cm.port());
    let ids = [
        "--request-id",
        REQ,
        "--smartcard-id",
        SCID,
        "--cm-ca-file",
        &ca.ca_cert,
        "--keytab",
        &keytab,
    ];

    // Extended Protection "Require": the bindings of the server certificate are checked.
    let cm = start("require");
    let mut args = ids.to_vec();
    args.push("--cm-channel-binding");
    let r = unblock(&s, &realm, &url(&cm), &args);
    r.expect(0);
    let log = cm.requests();
    assert_eq!(log[1]["info"]["channel_bound"], true, "{log:?}");
    assert_eq!(authorizations(&log).len(), 1);

    // Without --cm-channel-binding the server refuses.
    let s2 = setup();
    let r = unblock(&s2, &realm, &url(&cm), &ids);
    r.expect(6);
    r.stderr_has("--cm-channel-binding");
    assert_card_untouched(&s2);

    // Bindings for another certificate (a TLS-intercepting proxy): refused.
    let wrong = start("wrong");
    let r = unblock(&s2, &realm, &url(&wrong), &args);
    r.expect(6);
    assert!(
        wrong.requests()[1]["info"]["error"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("binding"),
        "{:?}",
        wrong.requests()
    );
    assert_card_untouched(&s2);
}

#[test]
fn bad_negotiate_options_exit_2() {
    let Some(realm) = Realm::start() else { return };
    let s = setup();
    for (extra, needle) in [
        (vec!["--allow-http", "--cm-channel-binding"], "https"),
        (vec!["--allow-http", "--cm-spn", "not a spn"], "--cm-spn"),
        (
            vec!["--allow-http", "--keytab", "/nonexistent/client.keytab"],
            "--keytab",
        ),
    ] {
        let r = unblock(&s, &realm, "http://localhost:9", &extra);
        r.expect(2);
        assert!(r.stderr.contains(needle), "{extra:?}: {}", r.stderr);
    }
    assert_card_untouched(&s);
}
