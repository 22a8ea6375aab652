//! The agent on every card family (issue 12), over the real stack: the `scunblock` binary,
//! a private pcscd + vpcd, and `scunblock-vcard --family gids|piv|crescendo|iso`, plus the
//! CM test server for the golden vector with the card id read from the card.
//!
//! The virtual card's families are cross-checked against OpenSC and yubico-piv-tool in
//! tests/thirdparty.rs; here the agent is checked against them. Each test asserts the exit
//! code, the JSON report and the card's own state file (counters, PIN, APDU log), so a run
//! that sent a second cryptogram, or one at all where none was allowed, fails.

mod common;

use std::time::Duration;

use common::cm::{CmServer, DOCS_CHALLENGE_B64, DOCS_RESPONSE_B64};
use common::rig::Rig;
use common::run::{
    admin_key_file, apdus, unblock_args, Run, GOLDEN_CHALLENGE, GOLDEN_RESPONSE, PIV_DEFAULT_KEY,
    WRONG_KEY, ZERO_KEY,
};
use common::stack::{Card, VStack};
use serde_json::Value;

const PIN: &str = "24681357";
const PUK: &str = "12345678";
/// The card's default id bytes, and the GUID .NET (and so CM) makes of them.
const CARD_ID_BYTES: &str = "00112233445566778899AABBCCDDEEFF";
const CARD_GUID: &str = "33221100-5544-7766-8899-aabbccddeeff";
const CARD_GUID_PLAIN: &str = "00112233-4455-6677-8899-aabbccddeeff";
const SCID: &str = "5b1b4c1e-8d0a-4a7e-9b7e-2f6f0a0e5c11";

/// A stack with one card of `family` (PIN blocked, the CM docs' challenge unless `extra`
/// picks a management algorithm) and `extra` options; every run gets NEW_PIN and PUK.
fn setup(family: &str, extra: &[&str]) -> Rig {
    let mut args = vec!["--family", family, "--pin-tries", "0"];
    if !extra.contains(&"--mgmt-alg") {
        args.extend_from_slice(&["--challenge", GOLDEN_CHALLENGE]);
    }
    args.extend_from_slice(extra);
    Rig::new(&args, &[("NEW_PIN", PIN), ("PUK", PUK)])
}

/// The unblocks and authentications of these tests, on a [`setup`] card.
impl Rig {
    /// `unblock --puk-env PUK --new-pin-env NEW_PIN --json` plus `extra` (a PIV unblock).
    fn unblock_with_puk(&self, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let mut args = vec![
            "unblock",
            "--puk-env",
            "PUK",
            "--new-pin-env",
            "NEW_PIN",
            "--json",
        ];
        args.extend_from_slice(extra);
        self.run(&args, env)
    }

    /// `auth --admin-key-file KEY` plus `extra`.
    fn auth_with_key(&self, key: &str, extra: &[&str]) -> Run {
        let key = self.key_file(key);
        let mut args = vec!["auth", "--admin-key-file", &key];
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }

    /// `--cm URL --allow-http --cm-auth=none --allow-unknown-tries` after `command`, then
    /// `extra`: `command` through the CM test server.
    fn through_cm(&self, command: &str, cm: &CmServer, extra: &[&str]) -> Run {
        let mut args = vec![
            command,
            "--cm",
            &cm.url,
            "--allow-http",
            "--cm-auth=none",
            "--allow-unknown-tries",
        ];
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }
}

/// The admin responses the card received (every family's cryptogram-carrying APDU).
fn responses(state: &Value) -> u64 {
    state["admin_responses"].as_u64().expect("admin_responses")
}

/// Whether the card received an APDU starting with `prefix` (lowercase hex).
fn sent_any(state: &Value, prefix: &str) -> bool {
    apdus(state).iter().any(|a| a.starts_with(prefix))
}

fn pin_of(state: &Value) -> String {
    state["pin"].as_str().unwrap_or_default().to_string()
}

#[test]
fn gids_golden_vector_through_cm_with_the_card_id_from_the_card() {
    let s = setup("gids", &["--card-id", CARD_ID_BYTES]);
    let cm = CmServer::start(&["--smartcard", &format!("{SCID}={CARD_GUID}")]);
    let r = s.through_cm("unblock", &cm, &["--new-pin-env", "NEW_PIN", "--json"]);
    r.expect(0);
    let doc = r.json();
    assert_eq!(doc["profile"], "gids");
    assert_eq!(doc["profile_source"], "detected");
    assert_eq!(doc["card_id"], CARD_GUID);
    assert_eq!(doc["card_id_raw"], CARD_ID_BYTES);
    assert_eq!(doc["admin_tries"], Value::Null);
    assert_eq!(doc["pin_tries_after"], 3);
    // CM looked the card up by the id read from the card and answered the docs' challenge.
    let log = cm.requests();
    let lookup = &cm.requests_to("smartcards")[0];
    assert!(
        lookup["query"].as_str().unwrap().contains(CARD_GUID),
        "{log:?}"
    );
    let auth = cm.requests_to("authresponse");
    assert_eq!(auth.len(), 1, "{log:?}");
    let q = auth[0]["query"].as_str().unwrap();
    assert!(q.contains(&format!("cardid={CARD_GUID}")), "{q}");
    assert_eq!(auth[0]["info"]["challenge"], GOLDEN_CHALLENGE);
    assert_eq!(auth[0]["info"]["response"], GOLDEN_RESPONSE);
    let st = s.state();
    assert_eq!(responses(&st), 1);
    assert_eq!(pin_of(&st), PIN);
    assert_eq!(st["pin_tries"], 3);
    // The docs' base64 forms of the same vector.
    assert_eq!(DOCS_CHALLENGE_B64, "1hFD+cz/0so=");
    assert_eq!(DOCS_RESPONSE_B64, "F0Zudm4wPLY=");
    let ga_response = format!("008700000c7c0a8208{GOLDEN_RESPONSE}");
    assert!(apdus(&st).contains(&ga_response), "{:?}", apdus(&st));
}

#[test]
fn gids_trace_shows_no_apdu_between_challenge_and_response() {
    let s = setup("gids", &[]);
    let key = s.key_file(ZERO_KEY);
    let mut args = unblock_args(&key);
    args.extend_from_slice(&["--allow-unknown-tries", "--trace"]);
    let r = s.run(&args, &[]);
    r.expect(0);
    let sent: Vec<&str> = r
        .stderr
        .lines()
        .filter_map(|l| l.split("apdu > ").nth(1))
        .collect();
    let challenge = sent
        .iter()
        .position(|l| l.starts_with("00 87 00 00 04 7C 02 81 00"))
        .unwrap_or_else(|| panic!("no challenge in the trace:\n{}", r.stderr));
    assert!(
        sent[challenge + 1].starts_with("00 87 00 00 0C 7C 0A 82 08 17 46 6E 76"),
        "the APDU after the challenge is not the response:\n{}",
        r.stderr
    );
    assert!(
        sent[challenge - 1].starts_with("00 22 81 A4"),
        "{}",
        r.stderr
    );
    // The PIN is redacted in the trace.
    r.stderr_has("00 2C 02 80 08 REDACTED(8 bytes)");
    assert!(!r.stderr.contains("32 34 36 38"), "{}", r.stderr);
}

#[test]
fn unknown_admin_tries_are_refused_without_the_opt_in() {
    let s = setup("gids", &[]);
    let r = s.unblock_with_key(ZERO_KEY, &[]);
    r.expect(5);
    let doc = r.json();
    assert_eq!(doc["error"]["class"], "unknown_tries_refused");
    assert_eq!(doc["admin_tries"], Value::Null);
    r.stderr_has("--allow-unknown-tries");
    let st = s.state();
    assert_eq!(responses(&st), 0);
    assert!(
        !sent_any(&st, "0087"),
        "a challenge was asked for: {:?}",
        apdus(&st)
    );
    // The environment variable opts in, as a kiosk's watch.env does.
    let r = s.run(
        &unblock_args(&s.key_file(ZERO_KEY)),
        &[("SCUNBLOCK_ALLOW_UNKNOWN_TRIES", "1")],
    );
    r.expect(0);
    assert!(
        r.stdout
            .contains("Admin tries:  unknown (the card does not report them)"),
        "{}",
        r.stdout
    );
    assert_eq!(responses(&s.state()), 1);
}

#[test]
fn wrong_keys_spend_exactly_one_cryptogram_in_every_family() {
    for (family, code_class) in [
        ("gids", "admin_rejected"),
        ("crescendo", "admin_rejected"),
        ("iso", "admin_rejected"),
    ] {
        let s = setup(family, &[]);
        let r = s.unblock_with_key(WRONG_KEY, &["--allow-unknown-tries"]);
        r.expect(4);
        assert_eq!(r.json()["error"]["class"], code_class, "{family}");
        let st = s.state();
        assert_eq!(responses(&st), 1, "{family}: {:?}", apdus(&st));
        assert_eq!(st["rrc"], 0, "{family}");
    }
    // PIV: `auth` with a wrong 9B key; the card answers 6A80, still a rejected response.
    let s = setup("piv", &["--wrong-response-sw", "6A80"]);
    let r = s.auth_with_key(WRONG_KEY, &["--allow-unknown-tries", "--json"]);
    r.expect(4);
    assert_eq!(r.json()["error"]["sw"], "6A80");
    assert_eq!(responses(&s.state()), 1);
}

#[test]
fn a_card_id_that_is_not_the_cards_is_the_wrong_card() {
    let s = setup("gids", &["--card-id", CARD_ID_BYTES]);
    let r = s.unblock_with_key(
        ZERO_KEY,
        &[
            "--allow-unknown-tries",
            "--card-id",
            "{33221100-5544-7766-8899-AABBCCDDEE00}",
        ],
    );
    r.expect(2);
    let doc = r.json();
    assert_eq!(doc["error"]["class"], "wrong_card");
    assert_eq!(doc["card_id_raw"], CARD_ID_BYTES);
    assert_eq!(responses(&s.state()), 0);
    // Either byte order of the card's own id is this card; the form given is reported.
    for given in [CARD_GUID, CARD_GUID_PLAIN] {
        let r = s.unblock_with_key(
            ZERO_KEY,
            &["--allow-unknown-tries", "--dry-run", "--card-id", given],
        );
        r.expect(0);
        assert_eq!(r.json()["card_id"], given);
    }
}

#[test]
fn gids_is_detected_by_select_when_its_atr_is_unknown() {
    // An ATR no profile claims: detection SELECTs PIV (6A82 here), then GIDS.
    let s = setup("gids", &["--atr", "3B 87 01 80 55 76 63 61 72 64 32"]);
    let r = s.run(&["info", "--json"], &[]);
    r.expect(0);
    let doc = r.json();
    assert_eq!(doc["profile"], "gids");
    assert_eq!(doc["profile_source"], "detected");
    assert_eq!(doc["card_id"], CARD_GUID);
    assert_eq!(doc["pin_tries_before"], 0);
    let sent = apdus(&s.state());
    assert!(
        sent[0].starts_with("00a4040009a00000030800001000"),
        "{sent:?}"
    );
    assert!(
        sent[1].starts_with("00a4040009a00000039742544659"),
        "{sent:?}"
    );
    let text = s.run(&["info"], &[]);
    text.expect(0);
    text.stdout_has("Profile:      gids (detected)");
    text.stdout_has(&format!(
        "Card ID:      {{{CARD_GUID}}} (bytes {CARD_ID_BYTES})"
    ));
    // --profile forces the family: no detection SELECT of PIV.
    let forced = s.run(&["info", "--profile", "gids", "--json"], &[]);
    forced.expect(0);
    assert_eq!(forced.json()["profile_source"], "option");
}

#[test]
fn piv_resets_the_pin_with_the_puk_and_refuses_the_admin_key() {
    let s = setup("piv", &["--puk-tries", "3"]);
    // The admin key cannot reset a PIV PIN: exit 2, no cryptogram.
    let r = s.unblock_with_key(PIV_DEFAULT_KEY, &["--allow-unknown-tries"]);
    r.expect(2);
    let doc = r.json();
    assert_eq!(doc["error"]["class"], "wrong_card");
    assert!(doc["error"]["message"].as_str().unwrap().contains("PUK"));
    assert_eq!(responses(&s.state()), 0);
    // The PUK does.
    let r = s.unblock_with_puk(&[], &[]);
    r.expect(0);
    let doc = r.json();
    assert_eq!(doc["profile"], "piv");
    assert_eq!(doc["responder"], "puk");
    assert_eq!(doc["puk_tries"], 3);
    assert_eq!(doc["pin_tries_after"], 3);
    assert_eq!(doc["card_id"], CARD_GUID);
    let st = s.state();
    assert_eq!(pin_of(&st), PIN);
    assert_eq!(responses(&st), 0);
    assert!(sent_any(&st, "002c008010"), "{:?}", apdus(&st));
    // A PUK on a card that takes none: exit 2 before anything is sent.
    let g = setup("gids", &[]);
    let r = g.unblock_with_puk(&[], &[]);
    r.expect(2);
    assert_eq!(r.json()["error"]["class"], "wrong_card");
    assert_eq!(g.state()["rrc"], 0);
}

#[test]
fn piv_puk_guards_and_a_wrong_puk() {
    let s = setup("piv", &["--puk-tries", "1"]);
    let r = s.unblock_with_puk(&[], &[]);
    r.expect(5);
    assert_eq!(r.json()["error"]["class"], "puk_last_try_refused");
    assert_eq!(s.state()["rrc"], 0);
    let s = setup("piv", &["--puk-tries", "3"]);
    let r = s.unblock_with_puk(&[], &[("PUK", "87654321")]);
    r.expect(4);
    let doc = r.json();
    assert_eq!(doc["error"]["class"], "puk_rejected");
    assert_eq!(doc["puk_tries"], 2);
    assert_eq!(s.state()["puk_tries"], 2);
}

#[test]
fn piv_auth_with_3des_and_aes_management_keys() {
    let s = setup("piv", &["--admin-key", PIV_DEFAULT_KEY]);
    let r = s.auth_with_key(PIV_DEFAULT_KEY, &["--allow-unknown-tries", "--json"]);
    r.expect(0);
    assert_eq!(r.json()["key_alg"], "tdes");
    assert_eq!(responses(&s.state()), 1);
    // An AES-192 card: the algorithm comes from GET METADATA, not the key's length.
    let aes_key = "000102030405060708090a0b0c0d0e0f1011121314151617";
    let s = setup("piv", &["--mgmt-alg", "aes192", "--admin-key", aes_key]);
    let r = s.auth_with_key(aes_key, &["--allow-unknown-tries", "--json"]);
    r.expect(0);
    assert_eq!(r.json()["key_alg"], "aes192");
    assert!(sent_any(&s.state(), "00870a9b"));
    // A 16-byte key cannot be an AES-192 key: exit 2, no challenge asked.
    let r = s.auth_with_key(
        "000102030405060708090a0b0c0d0e0f",
        &["--allow-unknown-tries", "--json"],
    );
    r.expect(2);
    assert_eq!(responses(&s.state()), 1, "no second response");
}

#[test]
fn crescendo_is_chosen_by_its_atr_and_unblocks() {
    let s = setup("crescendo", &[]);
    let r = s.unblock_with_key(ZERO_KEY, &["--allow-unknown-tries"]);
    r.expect(0);
    let doc = r.json();
    assert_eq!(doc["profile"], "crescendo");
    assert_eq!(doc["profile_source"], "detected");
    let st = s.state();
    assert_eq!(pin_of(&st), PIN);
    assert_eq!(responses(&st), 1);
    let sent = apdus(&st);
    assert!(sent.contains(&"0084000000".to_string()), "{sent:?}");
    assert!(sent.iter().any(|a| a.starts_with("002c020008")), "{sent:?}");
    // No PIV SELECT: the ATR decided.
    assert!(
        !sent.iter().any(|a| a.starts_with("00a4040009a000000308")),
        "{sent:?}"
    );
    // An AES-128 XAUTH key: 16-byte challenge and response.
    let aes = "00112233445566778899aabbccddeeff";
    let s = setup("crescendo", &["--mgmt-alg", "aes128", "--admin-key", aes]);
    let r = s.unblock_with_key(aes, &["--allow-unknown-tries"]);
    r.expect(0);
    assert_eq!(r.json()["key_alg"], "aes128");
    assert_eq!(pin_of(&s.state()), PIN);
}

/// An executable helper command in `dir` that prints `value` (the kiosk front end).
fn print_command(dir: &std::path::Path, name: &str, value: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\necho {value}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// `scunblock watch --json --unblock --new-pin-command <prints PIN> --admin-key-file <KEY>`
/// plus `extra`, on `stack`.
struct WatchRun {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl WatchRun {
    fn start(stack: &VStack, key: &str, extra: &[&str]) -> WatchRun {
        let dir = tempfile::tempdir().unwrap();
        let key = admin_key_file(dir.path(), key);
        let pin_cmd = print_command(dir.path(), "pin.sh", PIN);
        let mut cmd = common::stack::scunblock();
        cmd.args([
            "watch",
            "--json",
            "--unblock",
            "--new-pin-command",
            &pin_cmd,
        ])
        .arg("--admin-key-file")
        .arg(&key)
        .args(extra)
        .env("PCSCLITE_CSOCK_NAME", stack.csock())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        WatchRun {
            child: cmd.spawn().unwrap(),
            _dir: dir,
        }
    }

    /// SIGTERM; the events it wrote. It must exit 0.
    fn stop(self) -> Vec<Value> {
        // SAFETY: signals our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let out = self.child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Wait (bounded) until `card`'s state satisfies `pred`, then a moment for the events.
fn wait_card(card: &Card, pred: &dyn Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline && !pred(&card.state()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
}

/// The events named `event` in `reader` (any reader: `None`).
fn events_of<'a>(events: &'a [Value], reader: Option<&str>, event: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == event && reader.is_none_or(|r| e["reader"] == r))
        .collect()
}

/// The one event named `event` in `reader` (any reader: `None`); there must be exactly one.
fn only_event<'a>(events: &'a [Value], reader: Option<&str>, event: &str) -> &'a Value {
    let found = events_of(events, reader, event);
    assert_eq!(found.len(), 1, "{events:?}");
    found[0]
}

#[test]
fn watch_unblocks_gids_and_iso_and_skips_piv_without_a_puk_command() {
    let stack = VStack::start(4);
    let gids = stack.insert(0, &["--family", "gids", "--pin-tries", "0"]);
    let piv = stack.insert(1, &["--family", "piv", "--pin-tries", "0"]);
    let iso = stack.insert(2, &["--pin-tries", "0"]);
    let run = WatchRun::start(&stack, ZERO_KEY, &["--allow-unknown-tries"]);
    wait_card(&iso, &|s| pin_of(s) == PIN);
    wait_card(&gids, &|s| pin_of(s) == PIN);
    let events = run.stop();
    let (r_gids, r_piv, r_iso) = (
        stack.reader_name(0),
        stack.reader_name(1),
        stack.reader_name(2),
    );
    only_event(&events, Some(&r_gids), "unblock_succeeded");
    only_event(&events, Some(&r_iso), "unblock_succeeded");
    let skipped = only_event(&events, Some(&r_piv), "skipped");
    assert_eq!(skipped["reason"], "needs_puk");
    assert!(skipped["message"].as_str().unwrap().contains("PUK"));
    assert_eq!(
        events_of(&events, Some(&r_gids), "unblock_started")[0]["profile"],
        "gids"
    );
    assert_eq!(pin_of(&gids.state()), PIN);
    assert_eq!(pin_of(&iso.state()), PIN);
    assert_eq!(responses(&gids.state()), 1);
    assert_eq!(responses(&piv.state()), 0);
    assert_eq!(piv.state()["rrc"], 0);
}

#[test]
fn watch_unblocks_piv_with_a_puk_command() {
    let stack = VStack::start(2);
    let piv = stack.insert(0, &["--family", "piv", "--pin-tries", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let puk_cmd = print_command(dir.path(), "puk.sh", PUK);
    let run = WatchRun::start(&stack, ZERO_KEY, &["--puk-command", &puk_cmd]);
    wait_card(&piv, &|s| pin_of(s) == PIN);
    let events = run.stop();
    let done = only_event(&events, None, "unblock_succeeded");
    assert_eq!(done["responder"], "puk");
    assert_eq!(pin_of(&piv.state()), PIN);
    assert_eq!(responses(&piv.state()), 0);
}

#[test]
fn watch_refuses_unknown_tries_without_the_opt_in() {
    let stack = VStack::start(2);
    let gids = stack.insert(0, &["--family", "gids", "--pin-tries", "0"]);
    let run = WatchRun::start(&stack, ZERO_KEY, &[]);
    // The card is read (its PIN status object), then refused: wait for the read.
    wait_card(&gids, &|s| sent_any(s, "00cb3fff"));
    let events = run.stop();
    let failed = only_event(&events, None, "unblock_failed");
    assert_eq!(failed["class"], "unknown_tries_refused");
    assert_eq!(failed["exit_code"], 5);
    let st = gids.state();
    assert_eq!(responses(&st), 0);
    assert_ne!(pin_of(&st), PIN);
}

#[test]
fn watch_remembers_a_refused_gids_card_by_its_card_id() {
    let stack = VStack::start(2);
    let args = ["--family", "gids", "--pin-tries", "0"];
    let card = stack.insert(0, &args);
    let run = WatchRun::start(&stack, WRONG_KEY, &["--allow-unknown-tries"]);
    // The wrong key: one response, refused.
    wait_card(&card, &|s| responses(s) == 1);
    card.remove();
    // The same card again (same id): not tried again.
    let again = stack.reinsert(0, &args);
    wait_card(&again, &|s| sent_any(s, "00cba012"));
    let events = run.stop();
    let failed = only_event(&events, None, "unblock_failed");
    assert_eq!(failed["class"], "admin_rejected");
    let skipped = only_event(&events, None, "skipped");
    assert_eq!(skipped["reason"], "failed_before");
    assert!(skipped["message"].as_str().unwrap().contains(CARD_GUID));
    assert_eq!(responses(&again.state()), 0, "not tried again");
}

#[test]
fn piv_and_crescendo_golden_vector_through_cm() {
    // PIV: `auth` through CM with the card id read from the CHUID (the 9B key is 3DES, zero).
    let s = setup("piv", &["--admin-key", ZERO_KEY]);
    let cm = CmServer::start(&["--smartcard", &format!("{SCID}={CARD_GUID}")]);
    let r = s.through_cm("auth", &cm, &["--json"]);
    r.expect(0);
    assert_eq!(r.json()["card_id"], CARD_GUID);
    let auth = cm.requests_to("authresponse");
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0]["info"]["challenge"], GOLDEN_CHALLENGE);
    assert_eq!(auth[0]["info"]["response"], GOLDEN_RESPONSE);
    let sent = apdus(&s.state());
    let response = format!("0087039b0c7c0a8208{GOLDEN_RESPONSE}");
    assert!(sent.contains(&response), "{sent:?}");
    assert_eq!(responses(&s.state()), 1);

    // Crescendo has no card id: --card-id is required, and CM gets it as given.
    let s = setup("crescendo", &[]);
    let cm = CmServer::start(&["--smartcard", &format!("{SCID}={CARD_GUID}")]);
    let base = ["--new-pin-env", "NEW_PIN", "--json"];
    let r = s.through_cm("unblock", &cm, &base);
    r.expect(2);
    r.stderr_has("--card-id is required");
    assert_eq!(responses(&s.state()), 0);
    let mut args = base.to_vec();
    args.extend_from_slice(&["--card-id", CARD_GUID]);
    let r = s.through_cm("unblock", &cm, &args);
    r.expect(0);
    assert_eq!(r.json()["card_id"], CARD_GUID);
    assert_eq!(r.json()["card_id_raw"], Value::Null);
    let st = s.state();
    assert_eq!(pin_of(&st), PIN);
    let response = "008200010817466e766e303cb6".to_string();
    assert!(apdus(&st).contains(&response), "{:?}", apdus(&st));
}

#[test]
fn every_family_without_reported_tries_refuses_without_the_opt_in() {
    for family in ["gids", "crescendo"] {
        let s = setup(family, &[]);
        let r = s.unblock_with_key(ZERO_KEY, &[]);
        r.expect(5);
        assert_eq!(
            r.json()["error"]["class"],
            "unknown_tries_refused",
            "{family}"
        );
        assert_eq!(responses(&s.state()), 0, "{family}");
    }
    let s = setup("piv", &["--admin-key", ZERO_KEY]);
    let r = s.auth_with_key(ZERO_KEY, &["--json"]);
    r.expect(5);
    assert_eq!(r.json()["error"]["class"], "unknown_tries_refused");
    assert_eq!(responses(&s.state()), 0);
    // An iso card that answers its tries query needs no opt-in.
    let s = setup("iso", &[]);
    s.unblock_with_key(ZERO_KEY, &[]).expect(0);
}

#[test]
fn a_piv_card_id_that_is_not_the_cards_is_the_wrong_card() {
    let s = setup("piv", &["--puk-tries", "3"]);
    let r = s.unblock_with_puk(&["--card-id", "bc88f13f-83ba-4037-8262-46eba1291c6e"], &[]);
    r.expect(2);
    assert_eq!(r.json()["error"]["class"], "wrong_card");
    let st = s.state();
    assert_eq!(st["rrc"], 0);
    assert_eq!(st["puk_tries"], 3);
}
