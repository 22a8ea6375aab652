//! `--cm`: the real binary against the CM test server (real HTTP on loopback)
//! and the virtual card under a real pcscd.

mod common;

use common::cm::{
    cm_unblock_args, long_pin_profile, CmServer, DOCS_CARD_ID as CARDID, DOCS_REQUEST as REQ,
    DOCS_SMARTCARD as SCID,
};
use common::run::{apdus, cryptograms, scunblock, Run, GOLDEN_CHALLENGE, GOLDEN_RESPONSE};
use common::stack::{Card, VStack};

const PIN: &str = "7531902468";

struct Setup {
    stack: VStack,
    card: Card,
}

fn setup(card_args: &[&str]) -> Setup {
    let stack = VStack::start(2);
    let mut args = vec![
        "--challenge",
        GOLDEN_CHALLENGE,
        "--pin-tries",
        "0",
        "--pin-max-len",
        "16",
    ];
    args.extend_from_slice(card_args);
    let card = stack.insert(0, &args);
    Setup { stack, card }
}

fn unblock(s: &Setup, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let profile = long_pin_profile(dir.path());
    let mut args = cm_unblock_args(&profile, url);
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("NEW_PIN", PIN));
    scunblock(Some(&s.stack.csock()), &args, &env, None)
}

const DOCS_IDS: [&str; 6] = [
    "--request-id",
    REQ,
    "--smartcard-id",
    SCID,
    "--allow-http",
    "--cm-auth=none",
];

#[test]
fn the_docs_own_request() {
    let s = setup(&[]);
    let cm = CmServer::start(&[]);
    let r = unblock(&s, &cm.url, &DOCS_IDS, &[]);
    r.expect(0);
    let doc = r.json();
    assert_eq!(doc["responder"], "cm");
    assert_eq!(doc["pin_tries_after"], 3);
    let log = cm.requests();
    let auth: Vec<_> = log
        .iter()
        .filter(|q| {
            q["path"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .ends_with("/authenticationresponse")
        })
        .collect();
    assert_eq!(auth.len(), 1, "{log:?}");
    let query = auth[0]["query"].as_str().unwrap();
    assert!(query.contains("challenge=1hFD%2Bcz%2F0so%3D"), "{query}");
    assert!(query.contains(&format!("cardid={CARDID}")), "{query}");
    assert!(query.contains("diversified=False"), "{query}");
    assert!(query.contains("atr=3B"), "{query}");
    assert_eq!(
        auth[0]["path"].as_str().unwrap(),
        format!("/CertificateManagement/api/v1.0/requests/{REQ}/smartcards/{SCID}/authenticationresponse")
    );
    let state = s.card.state();
    assert!(apdus(&state).contains(&format!("0082000008{GOLDEN_RESPONSE}")));
    assert_eq!(state["pin"], PIN);
    // The request given by id is completed after the unblock.
    let put: Vec<_> = log.iter().filter(|q| q["method"] == "PUT").collect();
    assert_eq!(put.len(), 1, "{log:?}");
}

#[test]
fn every_cm_failure_sends_no_cryptogram() {
    let s = setup(&[]);
    let cases: [(&[&str], &str, &[&str]); 9] = [
        (
            &["--fail-authresponse", "204"],
            "CM returned no response for this card/request",
            &[],
        ),
        (
            &["--fail-authresponse", "401"],
            "CM refused authentication",
            &[],
        ),
        (&["--fail-authresponse", "403"], "Sensitive API group", &[]),
        (&["--fail-authresponse", "404"], "Clm.WebApi.Enabled", &[]),
        (&["--fail-authresponse", "500"], "correlation ID", &[]),
        (
            &["--delay-ms", "3000"],
            "did not answer",
            &["--timeout", "1"],
        ),
        (&["--malformed", "json"], "not JSON", &[]),
        (&["--malformed", "base64"], "not base64", &[]),
        (
            &["--malformed", "length"],
            "nothing was sent to the card",
            &[],
        ),
    ];
    for (server_args, message, client_args) in cases {
        let cm = CmServer::start(server_args);
        let mut extra = DOCS_IDS.to_vec();
        extra.extend_from_slice(client_args);
        let r = unblock(&s, &cm.url, &extra, &[]);
        r.expect(6);
        assert!(
            r.stderr.contains(message),
            "{server_args:?}: want {message:?} in\n{}",
            r.stderr
        );
        assert_eq!(r.json()["exit_code"], 6);
        assert_eq!(cryptograms(&s.card.state()), 0, "{server_args:?}");
    }
    // Nothing listens: a connect error.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = unblock(&s, &format!("http://127.0.0.1:{port}"), &DOCS_IDS, &[]);
    r.expect(6);
    r.stderr_has("cannot connect");
    assert_eq!(cryptograms(&s.card.state()), 0);
    assert_eq!(s.card.state()["admin_tries"], 5);
}

#[test]
fn a_wrong_response_spends_exactly_one_try() {
    let s = setup(&[]);
    let cm = CmServer::start(&["--wrong-response"]);
    let r = unblock(&s, &cm.url, &DOCS_IDS, &[]);
    r.expect(4);
    assert_eq!(r.json()["admin_tries"], 4);
    assert_eq!(cryptograms(&s.card.state()), 1);
    assert_eq!(s.card.state()["admin_tries"], 4);
    // The request is abandoned, and the user is told.
    let put: Vec<_> = cm
        .requests()
        .into_iter()
        .filter(|q| q["method"] == "PUT")
        .collect();
    assert_eq!(put.len(), 1);
    r.stderr_has("Abandoned");
}

/// The full CM workflow (no request or smartcard id), polling for approval quickly.
const WORKFLOW: [&str; 5] = [
    "--allow-http",
    "--cm-auth",
    "none",
    "--approval-poll",
    "0.2",
];

#[test]
fn full_workflow_with_approval_after_polls() {
    let s = setup(&[]);
    let cm = CmServer::start(&["--approve-after", "3"]);
    let r = unblock(&s, &cm.url, &WORKFLOW, &[]);
    r.expect(0);
    let doc = r.json();
    assert_eq!(doc["cm"]["smartcard_id"], SCID);
    let reqid = doc["cm"]["request_id"].as_str().unwrap().to_string();
    r.stderr_has("cm_approval_pending");
    let log = cm.requests();
    let seq: Vec<String> = log
        .iter()
        .map(|q| {
            let path = q["path"].as_str().unwrap().to_lowercase();
            let tail = path
                .trim_start_matches("/certificatemanagement/api/v1.0/")
                .to_string();
            format!(
                "{} {}",
                q["method"].as_str().unwrap(),
                tail.replace(&reqid, "R").replace(SCID, "S")
            )
        })
        .collect();
    assert_eq!(seq[0], "GET smartcards");
    assert_eq!(seq[1], "GET smartcards/S/operations");
    assert_eq!(seq[2], "POST requests");
    let polls = seq.iter().filter(|s| *s == "GET requests/R").count();
    assert!(polls >= 3, "{seq:?}");
    assert_eq!(
        seq[seq.len() - 2],
        "GET requests/R/smartcards/S/authenticationresponse"
    );
    assert_eq!(seq[seq.len() - 1], "PUT requests/R");
    assert!(log[0]["query"].as_str().unwrap().contains(CARDID));
    // One HTTP client, keep-alive: every call on one connection.
    let peers: std::collections::HashSet<_> = log.iter().map(|q| q["peer"].to_string()).collect();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(s.card.state()["pin"], PIN);
}

#[test]
fn denied_request_sends_nothing() {
    let s = setup(&[]);
    let cm = CmServer::start(&["--approve-after", "1", "--deny", "--status-names"]);
    let r = unblock(&s, &cm.url, &WORKFLOW, &[]);
    r.expect(6);
    r.stderr_has("denied");
    assert!(!apdus(&s.card.state()).iter().any(|a| a.starts_with("0084")));
}

#[test]
fn https_with_a_test_ca_and_a_rejected_self_signed_certificate() {
    let s = setup(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ca = common::cm::test_ca(dir.path());
    let cm = CmServer::start(&["--tls-cert", &ca.server_cert, "--tls-key", &ca.server_key]);
    assert!(cm.url.starts_with("https://"));
    let mut ok_args = DOCS_IDS.to_vec();
    ok_args.retain(|a| *a != "--allow-http");
    ok_args.extend_from_slice(&["--cm-ca-file", &ca.ca_cert]);
    unblock(&s, &cm.url, &ok_args, &[]).expect(0);

    // Without the CA: refused before the card sees a cryptogram.
    let s2 = setup(&[]);
    let mut no_ca = DOCS_IDS.to_vec();
    no_ca.retain(|a| *a != "--allow-http");
    let r = unblock(&s2, &cm.url, &no_ca, &[]);
    r.expect(6);
    r.stderr_has("certificate");
    let selfsigned = CmServer::start(&[
        "--tls-cert",
        &ca.self_signed_cert,
        "--tls-key",
        &ca.self_signed_key,
    ]);
    let r = unblock(&s2, &selfsigned.url, &ok_args, &[]);
    r.expect(6);
    assert_eq!(cryptograms(&s2.card.state()), 0);
    // Plain http needs the explicit flag.
    let r = unblock(&s2, "http://127.0.0.1:9", &no_ca, &[]);
    r.expect(2);
    r.stderr_has("--allow-http");
}

#[test]
fn bearer_token_from_env_never_shows() {
    let s = setup(&[]);
    let token = "eyJ0eXAiOiJKV1QiLCJhbGciOi.secret-bearer-token";
    let cm = CmServer::start(&["--require-bearer", token]);
    let mut args = DOCS_IDS.to_vec();
    args.retain(|a| *a != "--cm-auth=none");
    args.extend_from_slice(&[
        "--cm-auth",
        "bearer",
        "--cm-token-env",
        "CM_TOKEN",
        "-v",
        "--trace",
    ]);
    let r = unblock(&s, &cm.url, &args, &[("CM_TOKEN", token)]);
    r.expect(0);
    assert!(!r.all().contains("secret-bearer-token"));
    let r = unblock(&s, &cm.url, &args, &[("CM_TOKEN", "wrong-token")]);
    r.expect(6);
    r.stderr_has("refused authentication");
}

#[test]
fn bad_cm_input_exits_2_before_the_card() {
    let s = setup(&[]);
    for (extra, needle) in [
        (
            vec!["--request-id", "not-a-guid", "--allow-http"],
            "not a GUID",
        ),
        (
            vec![
                "--smartcard-id",
                "17cf063d-e337-4aa9-a822-346554ddd3c9/../x",
                "--allow-http",
            ],
            "not a GUID",
        ),
        (
            vec!["--cm-auth", "bearer", "--allow-http"],
            "--cm-token-env",
        ),
    ] {
        let r = unblock(&s, "http://127.0.0.1:9", &extra, &[]);
        r.expect(2);
        assert!(r.stderr.contains(needle), "{extra:?}\n{}", r.stderr);
    }
    let r = scunblock(
        Some(&s.stack.csock()),
        &[
            "unblock",
            "--cm",
            "https://cm.example",
            "--cm-auth",
            "none",
            "--new-pin-env",
            "P",
        ],
        &[("P", "1234")],
        None,
    );
    // The iso card has no card id to read: refused after reading the card, before any
    // challenge.
    r.expect(2);
    r.stderr_has("--card-id is required");
    let sent = apdus(&s.card.state());
    assert!(
        !sent
            .iter()
            .any(|a| a.starts_with("0084") || a.starts_with("0082000008")),
        "{sent:?}"
    );
}
