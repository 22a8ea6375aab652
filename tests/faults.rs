//! The fault-injection matrix (docs/reliability.md): the real binary against a real pcscd +
//! vpcd + the virtual card, with faults injected by the card (`scunblock-vcard` fault
//! options), by another PC/SC client (`scunblock-holdcard`), by killing pcscd, and by the
//! CM test server. Needs root and `cargo build --workspace` (the testkit binaries).
//!
//! The rows of docs/reliability.md's tables are `#[rstest]` cases named after its "test"
//! column, one function per table where the rows share their steps; the rows with their own
//! choreography (another client, a CM approval in progress) are tests of their own.
//!
//! Every row asserts, through [`check`]: the documented exit code; no panic; at most one
//! EXTERNAL AUTHENTICATE with data reached the card; no RESET RETRY COUNTER unless the
//! answer to that EXTERNAL AUTHENTICATE was 9000; and a clear message on stderr (plus the
//! same exit code in the JSON document). The rows that cannot be produced on pcsc-lite
//! (a reset by another process INSIDE our transaction) run on a scripted transport.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::cm::{CmServer, DOCS_CARD_ID as CARDID, DOCS_REQUEST as REQ, DOCS_SMARTCARD as SCID};
use common::rig::{blocked, Rig as Row};
use common::run::{apdus, cryptograms, unblock_args, Run, WRONG_KEY, ZERO_KEY};
use common::stack::{Card, VStack};
use rstest::rstest;
use serde_json::Value;

const PIN: &str = "Ab3$x9Qz";

/// One row: its own stack, a card whose PIN is blocked (golden challenge), key files; every
/// run gets the new PIN in NEW_PIN.
fn row(card_args: &[&str]) -> Row {
    Row::new(&blocked(card_args), &[("NEW_PIN", PIN)])
}

/// What the rows add to the rig: the zero key's unblock, and runs in the background.
impl Row {
    /// `scunblock unblock` with the zero key, the new PIN from the environment, --json, and
    /// `extra` (e.g. `--force-last-try`, `--trace`).
    fn unblock(&self, extra: &[&str]) -> Run {
        self.unblock_with_key(ZERO_KEY, extra)
    }

    /// The same, started in the background (for faults injected while it runs).
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut cmd = common::stack::scunblock();
        cmd.args(args)
            .env_remove("SCUNBLOCK_READER")
            .env("PCSCLITE_CSOCK_NAME", self.stack.csock())
            .env("NEW_PIN", PIN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn scunblock")
    }

    fn spawn_unblock(&self, extra: &[&str]) -> Child {
        let key = self.key_file(ZERO_KEY);
        let mut args = unblock_args(&key);
        args.push("--json");
        args.extend_from_slice(extra);
        self.spawn(&args, &[])
    }

    /// Waits until the card has received an APDU starting with `prefix` (hex).
    fn wait_for_apdu(&self, prefix: &str) {
        self.card.wait_state(Duration::from_secs(10), |s| {
            apdus(s).iter().any(|a| a.starts_with(prefix))
        });
    }
}

/// Waits for a background scunblock (bounded: a hang fails the row).
/// `unblock --cm` through the full CM workflow (approval polled every 0.3 s), in the
/// background, with a profile that allows the 10-digit PIN.
fn spawn_cm_workflow(r: &Row, cm: &CmServer, dir: &std::path::Path, extra: &[&str]) -> Child {
    let profile = long_pin_profile(dir);
    let mut args = cm_args(&profile, cm, CARDID);
    args.extend_from_slice(&["--approval-poll", "0.3", "--json"]);
    args.extend_from_slice(extra);
    r.spawn(&args, &[])
}

/// `unblock --profile P --cm URL --allow-http --cm-auth none --card-id ID --new-pin-env
/// NEW_PIN`: the rows' unblock through the CM test server.
fn cm_args<'a>(profile: &'a str, cm: &'a CmServer, card_id: &'a str) -> Vec<&'a str> {
    vec![
        "unblock",
        "--profile",
        profile,
        "--cm",
        &cm.url,
        "--allow-http",
        "--cm-auth",
        "none",
        "--card-id",
        card_id,
        "--new-pin-env",
        "NEW_PIN",
    ]
}

/// Wait (at most 10 s) until CM's log shows a call to `route`.
fn wait_for_cm(cm: &CmServer, route: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cm.requests_to(route).is_empty() {
        assert!(Instant::now() < deadline, "no CM call to {route}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(child: Child) -> Run {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("scunblock did not finish within 30 s")
        .expect("wait for scunblock");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The invariants of every row; returns the card's state for the row's own checks.
fn check(r: &Run, card: &Card, code: i32, message: &str) -> Value {
    r.expect(code);
    assert!(
        r.all().contains(message),
        "want {message:?} in the output:\n{}",
        r.all()
    );
    if code != 0 && r.stdout.trim_start().starts_with('{') {
        assert_eq!(r.json()["exit_code"], code, "{}", r.stdout);
    }
    let state = card.state();
    assert_invariants(&state);
    state
}

/// At most one cryptogram; RESET RETRY COUNTER only after a 9000 to it.
fn assert_invariants(state: &Value) {
    assert!(cryptograms(state) <= 1, "{state:#}");
    let log = apdus(state);
    let responses: Vec<String> = state["responses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(rrc) = log.iter().position(|a| a.starts_with("002c")) {
        let ea = log
            .iter()
            .position(|a| a.starts_with("0082") && a.len() > 10)
            .expect("RESET RETRY COUNTER without an EXTERNAL AUTHENTICATE");
        assert!(ea < rrc, "{log:?}");
        // A vanished APDU is logged but not answered, and only the last one can vanish:
        // the answers line up with the APDUs before it.
        assert_eq!(
            responses.get(ea).map(String::as_str),
            Some("9000"),
            "RESET RETRY COUNTER after a rejected admin response: {state:#}"
        );
    }
}

fn count(state: &Value, prefix: &str) -> usize {
    apdus(state)
        .iter()
        .filter(|a| a.starts_with(prefix))
        .count()
}

/// What a row expects beyond [`check`]'s invariants: the "expected" column of its table.
#[derive(Default)]
struct Expect {
    /// (APDU prefix in lowercase hex, exact count in the card's log).
    apdus: Vec<(&'static str, usize)>,
    /// (APDU prefix, at least this many).
    apdus_at_least: Vec<(&'static str, usize)>,
    cryptograms: Option<usize>,
    /// Fields of the card's state file (`admin_tries`, `rrc`, `pin`).
    card: Vec<(&'static str, Value)>,
    /// JSON pointers into scunblock's `--json` document.
    json: Vec<(&'static str, Value)>,
    says: Vec<&'static str>,
    never_says: Vec<&'static str>,
}

fn expect() -> Expect {
    Expect::default()
}

impl Expect {
    fn apdus(mut self, prefix: &'static str, n: usize) -> Expect {
        self.apdus.push((prefix, n));
        self
    }
    fn apdus_at_least(mut self, prefix: &'static str, n: usize) -> Expect {
        self.apdus_at_least.push((prefix, n));
        self
    }
    /// No GET CHALLENGE reached the card.
    fn no_challenge(self) -> Expect {
        self.apdus("0084", 0)
    }
    fn cryptograms(mut self, n: usize) -> Expect {
        self.cryptograms = Some(n);
        self
    }
    fn admin_tries(mut self, n: u64) -> Expect {
        self.card.push(("admin_tries", n.into()));
        self
    }
    /// RESET RETRY COUNTERs the card processed.
    fn rrc(mut self, n: u64) -> Expect {
        self.card.push(("rrc", n.into()));
        self
    }
    /// The card's PIN is the new one.
    fn pin_set(mut self) -> Expect {
        self.card.push(("pin", PIN.into()));
        self
    }
    fn json(mut self, pointer: &'static str, value: impl Into<Value>) -> Expect {
        self.json.push((pointer, value.into()));
        self
    }
    /// stderr contains `text`.
    fn says(mut self, text: &'static str) -> Expect {
        self.says.push(text);
        self
    }
    fn never_says(mut self, text: &'static str) -> Expect {
        self.never_says.push(text);
        self
    }

    fn verify(&self, run: &Run, state: &Value) {
        for (prefix, n) in &self.apdus {
            assert_eq!(count(state, prefix), *n, "{prefix}: {:?}", apdus(state));
        }
        for (prefix, n) in &self.apdus_at_least {
            assert!(count(state, prefix) >= *n, "{prefix}: {:?}", apdus(state));
        }
        if let Some(n) = self.cryptograms {
            assert_eq!(cryptograms(state), n, "cryptograms: {:?}", apdus(state));
        }
        for (field, value) in &self.card {
            assert_eq!(&state[field], value, "card's {field}: {state:#}");
        }
        if !self.json.is_empty() {
            let doc = run.json();
            for (pointer, value) in &self.json {
                assert_eq!(doc.pointer(pointer), Some(value), "{pointer}: {doc:#}");
            }
        }
        for text in &self.says {
            assert!(run.stderr.contains(text), "want {text:?}: {}", run.stderr);
        }
        for text in &self.never_says {
            assert!(!run.stderr.contains(text), "{text:?}: {}", run.stderr);
        }
    }
}

/// One row of a card-side table: a card with `card_args`, `unblock` with `key` and `extra`,
/// then the invariants, the exit code, the message and `expected`.
fn card_row(
    card_args: &[&str],
    key: &str,
    extra: &[&str],
    code: i32,
    message: &str,
    expected: Expect,
) {
    let r = row(card_args);
    let run = r.unblock_with_key(key, extra);
    let state = check(&run, &r.card, code, message);
    expected.verify(&run, &state);
}

// --- card removed --------------------------------------------------------------------------

/// docs/reliability.md, "Card removed". The card answers nothing from the APDU the option
/// names on: the first one; the cryptogram (never processed); the APDU after the processed
/// cryptogram (right key: authenticated; wrong key: the card counted the try but could not
/// say so); the answer to a processed RESET RETRY COUNTER (the PIN was set).
#[rstest]
#[case::removed_after_the_atr(&["--vanish-after", "1"], ZERO_KEY,
    expect().no_challenge().cryptograms(0))]
#[case::removed_after_get_challenge(&["--vanish-on-ins", "82+data"], ZERO_KEY,
    expect().admin_tries(5).rrc(0).says("scunblock info"))]
#[case::removed_after_external_authenticate(&["--vanish-after-ins", "82+data"], ZERO_KEY,
    expect().admin_tries(5).rrc(0)
        .json("/admin_authenticated", false).json("/response_sent", true)
        .json("/challenge_sent", true))]
#[case::removed_after_a_wrong_external_authenticate(&["--vanish-after-ins", "82+data"], WRONG_KEY,
    expect().admin_tries(4).says("may have").says("scunblock info"))]
#[case::removed_before_reset_retry_counter_answers(&["--vanish-after-ins", "2C"], ZERO_KEY,
    expect().rrc(1).pin_set().json("/admin_authenticated", true).says("may have been set"))]
fn card_removed(#[case] card: &[&str], #[case] key: &str, #[case] expected: Expect) {
    card_row(card, key, &[], 3, "the card was removed", expected);
}

// --- reset by another process --------------------------------------------------------------

/// `scunblock-holdcard` (tests/testkit/src/bin/holdcard.rs), next to the scunblock binary.
fn holdcard_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_scunblock"))
        .parent()
        .expect("a target directory")
        .join(format!(
            "scunblock-holdcard{}",
            std::env::consts::EXE_SUFFIX
        ));
    assert!(
        bin.is_file(),
        "{} is missing: run cargo build --workspace first (or cargo test --workspace)",
        bin.display()
    );
    bin
}

/// Another PC/SC client on the stack's reader 0; returns once it printed `held`.
struct Holder {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Holder {
    fn start(stack: &VStack, args: &[&str]) -> Holder {
        let mut child = Command::new(holdcard_bin())
            .arg("--reader")
            .arg(stack.reader_name(0))
            .args(args)
            .env("PCSCLITE_CSOCK_NAME", stack.csock())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn scunblock-holdcard");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Holder { child, lines }
    }

    /// The next line, within `timeout`.
    fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    fn wait(mut self) -> i32 {
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn reset_by_another_process_waits_for_our_transaction() {
    // pcsc-lite queues another client's SCardConnect/SCardReconnect(RESET) while a
    // transaction is held: the reset cannot land inside the flow. Measured: the other
    // client only gets the card once the run is over, then resets it. (The mid-transaction
    // case other stacks can produce is the scripted row below.)
    let r = row(&["--delay-ins", "84=2000"]);
    let run = r.spawn_unblock(&["--trace"]);
    r.wait_for_apdu("0084");
    let holder = Holder::start(&r.stack, &["--mode", "reset"]);
    assert_eq!(
        holder.line(Duration::from_millis(1000)),
        None,
        "the other client got the card during our transaction"
    );
    let run = finish(run);
    let s = check(&run, &r.card, 0, "\"pin_reset\": true");
    assert_eq!(
        holder.line(Duration::from_secs(10)).as_deref(),
        Some("held")
    );
    assert_eq!(
        holder.line(Duration::from_secs(10)).as_deref(),
        Some("reset ok")
    );
    assert_eq!(holder.wait(), 0);
    assert_eq!(s["pin"], PIN);
    assert_eq!(cryptograms(&s), 1);
}

#[test]
fn reset_between_the_cm_transactions_reconnects() {
    // With --cm the flow reads the card, waits for CM's approval OUTSIDE any transaction,
    // then runs the challenge/response transaction. A reset in between is answered by one
    // reconnect (nothing of the second transaction was sent yet), and the run completes.
    let r = row(&[]);
    let cm = CmServer::start(&["--approve-after", "4"]);
    let dir = tempfile::tempdir().unwrap();
    let run = spawn_cm_workflow(&r, &cm, dir.path(), &["-v"]);
    wait_for_cm(&cm, "create-request");
    let holder = Holder::start(&r.stack, &["--mode", "reset"]);
    assert_eq!(holder.line(Duration::from_secs(5)).as_deref(), Some("held"));
    assert_eq!(
        holder.line(Duration::from_secs(5)).as_deref(),
        Some("reset ok")
    );
    let run = finish(run);
    let s = check(
        &run,
        &r.card,
        0,
        "reset by another process between transactions",
    );
    assert!(s["resets"].as_u64() >= Some(1), "{s:#}");
    assert_eq!(s["pin"], PIN);
    assert_eq!(cryptograms(&s), 1);
}

/// A card profile allowing the CM tests' PIN (as tests/cm.rs does).
fn long_pin_profile(dir: &Path) -> String {
    let p = dir.join("p.toml");
    std::fs::write(&p, "pin_max_len = 12\n").unwrap();
    p.display().to_string()
}

/// SCARD_W_RESET_CARD inside the transaction (Windows resets a card held idle in a
/// transaction for 5 s; pcsc-lite cannot produce it, see above): on a scripted transport,
/// at each step after the admin tries query.
#[test]
fn reset_mid_transaction_scripted() {
    use scunblock::admin_key::AdminKey;
    use scunblock::card::IsoApplet;
    use scunblock::flow::{self, Mode, Options};
    use scunblock::profile::CardProfile;
    use scunblock::responder::LocalKey;
    use scunblock::secret::Pin;
    use scunblock::testing::{ScriptFault, ScriptedSession, ScriptedTransport};
    use scunblock::transport::Trace;

    let steps = [
        ("00820000", "63C5"),
        ("00200080", "6983"),
        ("0084000008", "D61143F9CCFFD2CA9000"),
        ("008200000817466E766E303CB6", "9000"),
        ("002C028008416233247839517A", "9000"),
    ];
    for at in 1..steps.len() {
        let mut t = ScriptedTransport::new();
        for (cmd, resp) in &steps[..at] {
            t = t.expect(cmd, resp);
        }
        t = t.fault(steps[at].0, ScriptFault::Reset);
        let mut session = ScriptedSession {
            transport: t,
            atr: vec![0x3B, 0x02, 0x14, 0x50],
        };
        let applet = IsoApplet::new(CardProfile::iso());
        let mut key = LocalKey::new(AdminKey::from_bytes(&[0; 24]).unwrap());
        let pin = Pin::new(zeroize::Zeroizing::new(PIN.as_bytes().to_vec()));
        let opts = Options {
            mode: Mode::Unblock { new_pin: &pin },
            force_last_try: false,
            allow_unknown_tries: false,
            trace: Trace::off(),
            card_id: None,
        };
        let f = flow::run(
            &mut session,
            flow::Identify::Known(&applet),
            &mut key,
            &opts,
        )
        .unwrap_err();
        assert_eq!(f.error.exit_code(), 3, "reset at step {at}: {}", f.error);
        assert!(
            f.error.to_string().contains("reset by another process"),
            "{}",
            f.error
        );
        let sent = &session.transport.received;
        assert_eq!(sent.len(), at + 1, "nothing after the reset");
        let cryptograms = sent.iter().filter(|a| a.len() > 5 && a[1] == 0x82).count();
        assert!(cryptograms <= 1);
        let o = f.outcome.unwrap();
        assert_eq!(o.response_sent, at >= 3);
        assert_eq!(o.admin_authenticated, at >= 4);
    }
}

// --- another process holds the card --------------------------------------------------------

#[test]
fn exclusive_holder_without_wait_exits_3_at_once() {
    let r = row(&[]);
    let holder = Holder::start(&r.stack, &["--mode", "exclusive", "--hold", "10"]);
    assert_eq!(holder.line(Duration::from_secs(5)).as_deref(), Some("held"));
    let started = Instant::now();
    let run = r.unblock(&[]);
    let s = check(&run, &r.card, 3, "another process holds the card");
    assert!(started.elapsed() < Duration::from_secs(3));
    run.stderr_has("--wait-card");
    assert!(apdus(&s).is_empty());
}

#[test]
fn exclusive_holder_past_wait_card_exits_3() {
    let r = row(&[]);
    let holder = Holder::start(&r.stack, &["--mode", "exclusive", "--hold", "10"]);
    assert_eq!(holder.line(Duration::from_secs(5)).as_deref(), Some("held"));
    let started = Instant::now();
    let run = r.unblock(&["--wait-card", "2"]);
    let took = started.elapsed();
    let s = check(&run, &r.card, 3, "exclusively (waited 2 s)");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(apdus(&s).is_empty());
}

#[test]
fn exclusive_holder_that_releases_in_time() {
    let r = row(&[]);
    let holder = Holder::start(&r.stack, &["--mode", "exclusive", "--hold", "1.5"]);
    assert_eq!(holder.line(Duration::from_secs(5)).as_deref(), Some("held"));
    let started = Instant::now();
    let run = r.unblock(&["--wait-card", "10"]);
    let s = check(&run, &r.card, 0, "");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(holder.wait(), 0);
    assert_eq!(s["pin"], PIN);
    assert_eq!(cryptograms(&s), 1);
}

#[test]
fn transaction_holder_is_waited_for() {
    // Another client inside a transaction (shared mode): pcscd queues our connect until it
    // ends, whatever --wait-card says (pcsc-lite gives no way to bound that wait). The run
    // then completes normally.
    let r = row(&[]);
    let holder = Holder::start(&r.stack, &["--mode", "transaction", "--hold", "1.5"]);
    assert_eq!(holder.line(Duration::from_secs(5)).as_deref(), Some("held"));
    let started = Instant::now();
    let s = check(&r.unblock(&[]), &r.card, 0, "");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(holder.wait(), 0);
    assert_eq!(s["pin"], PIN);
}

// --- pcscd killed --------------------------------------------------------------------------

/// docs/reliability.md, "pcscd killed": the card stalls the APDU `stalled` (hex prefix) for
/// 5 s, and pcscd is killed while it does.
#[rstest]
#[case::pcscd_killed_during_get_challenge("84=5000", "0084",
    expect().cryptograms(0).admin_tries(5).json("/response_sent", false)
        .json("/challenge_sent", false))]
#[case::pcscd_killed_after_admin_authentication("2C=5000", "002c",
    expect().json("/admin_authenticated", true).says("may have been set"))]
fn pcscd_killed(#[case] delay: &str, #[case] stalled: &str, #[case] expected: Expect) {
    let r = row(&["--delay-ins", delay]);
    let run = r.spawn_unblock(&[]);
    r.wait_for_apdu(stalled);
    r.stack.kill_pcscd();
    let run = finish(run);
    let state = check(&run, &r.card, 3, "pcscd");
    expected.verify(&run, &state);
}

#[test]
fn pcscd_killed_while_cm_approves() {
    // Between the CM workflow's two transactions: the second one finds no pcscd; the card
    // never saw a challenge, and the CM request is left open for a re-run.
    let r = row(&[]);
    let cm = CmServer::start(&["--approve-after", "4"]);
    let dir = tempfile::tempdir().unwrap();
    let run = spawn_cm_workflow(&r, &cm, dir.path(), &[]);
    wait_for_cm(&cm, "get-request");
    r.stack.kill_pcscd();
    let run = finish(run);
    let s = check(&run, &r.card, 3, "pcscd");
    assert_eq!(count(&s, "0084"), 0);
    assert_eq!(cryptograms(&s), 0);
    run.stderr_has("cm_request_left_open");
}

// --- what the card answers -----------------------------------------------------------------

/// docs/reliability.md, "What the card answers": `card` makes the virtual card answer so.
/// An empty answer: vpcd 0.8 only delivers one when the card closes the connection, so the
/// host sees 0 bytes and PC/SC reports the card gone. 6A88: a real one, the card's admin key
/// sits at another reference (P2 01), and the tries query is answered 6A88 too. 6D00: the
/// card knows no INS 82 at all. Both leave the admin tries unknown: `--allow-unknown-tries`.
#[rstest]
#[case::empty_answer_to_get_challenge(&["--respond-ins", "84="], &[],
    3, "the card was removed", expect().cryptograms(0))]
#[case::empty_answer_to_external_authenticate(&["--respond-ins", "82+data="], &[],
    3, "the card was removed", expect().admin_tries(5).rrc(0))]
#[case::one_byte_answer_to_get_challenge(&["--respond-ins", "84=90"], &[],
    1, "answered 1 byte(s) to 00 84: a response needs at least a status word",
    expect().cryptograms(0))]
#[case::one_byte_answer_to_external_authenticate(&["--respond-ins", "82+data=90"], &[],
    1, "answered 1 byte(s) to 00 82",
    // Its verdict on the response is lost: the try may be spent.
    expect().says("may have counted it").cryptograms(1).rrc(0))]
#[case::unknown_status_word_to_get_challenge(&["--respond-ins", "84=6F00"], &[],
    1, "GET CHALLENGE: the card answered SW 6F00", expect().cryptograms(0))]
#[case::unknown_status_word_to_external_authenticate(&["--respond-ins", "82+data=6F00"], &[],
    1, "EXTERNAL AUTHENTICATE: the card answered SW 6F00",
    expect().rrc(0).json("/error/sw", "6F00"))]
#[case::challenge_lost_6985(&["--respond-ins", "82+data=6985"], &[],
    1, "SW 6985",
    // The card said what it did: no "may have" about the tries. Not retried.
    expect().says("lost the challenge").never_says("may have").rrc(0).cryptograms(1))]
#[case::key_not_set_6a88(&["--key-ref", "01"], &["--allow-unknown-tries"],
    1, "SW 6A88", expect().says("ext_auth_p2").admin_tries(5).cryptograms(1))]
#[case::external_authenticate_unsupported_6d00(&["--respond-ins", "82=6D00"],
    &["--allow-unknown-tries"],
    1, "SW 6D00", expect().says("another card profile").cryptograms(1).rrc(0))]
#[case::nine_byte_challenge(&["--respond-ins", "84=D61143F9CCFFD2CA009000"], &[],
    1, "9-byte challenge", expect().cryptograms(0))]
#[case::t0_chains_of_61xx(&["--t0", "--t0-chunk", "3"], &["--trace"],
    0, "\"pin_reset\": true", expect().apdus_at_least("00c00000", 3).pin_set())]
#[case::endless_61xx_is_cut_off(&["--respond-ins", "84=6108", "--respond-ins", "C0=006101"], &[],
    // Every GET RESPONSE gives one byte and 6101 again.
    1, "kept answering 61xx", expect().apdus("00c0", 64).cryptograms(0))]
#[case::wrong_le_6cxx_is_resent_once(&["--sw6c"], &[],
    0, "", expect().apdus("0084", 2).pin_set())]
#[case::repeated_6cxx_is_not_resent_again(&["--respond-ins", "84=6C08"], &[],
    1, "SW 6C08", expect().apdus("0084", 2).cryptograms(0))]
#[case::six_c_to_the_cryptogram_is_never_resent(&["--respond-ins", "82+data=6C08"], &[],
    1, "SW 6C08", expect().cryptograms(1).rrc(0))]
fn card_answers(
    #[case] card: &[&str],
    #[case] extra: &[&str],
    #[case] code: i32,
    #[case] message: &str,
    #[case] expected: Expect,
) {
    card_row(card, ZERO_KEY, extra, code, message, expected);
}

// --- RESET RETRY COUNTER rejected, admin tries -----------------------------------------------

/// docs/reliability.md, "RESET RETRY COUNTER rejected, admin tries". A right response
/// restores the admin tries; a wrong one on the last try blocks the key.
#[rstest]
#[case::reset_retry_counter_rejected_6a80(&["--pin-max-len", "6"], ZERO_KEY, &[],
    7, "SW 6A80",
    expect().says("PIN tries left: 0 (blocked)")
        .json("/pin_tries_after", 0).json("/error/sw", "6A80").rrc(1))]
#[case::last_admin_try_is_refused_without_the_flag(&["--admin-tries", "1"], ZERO_KEY, &[],
    5, "only ONE admin try is left",
    expect().says("--force-last-try").no_challenge().cryptograms(0).json("/admin_tries", 1))]
#[case::last_admin_try_is_spent_with_the_flag(&["--admin-tries", "1"], ZERO_KEY,
    &["--force-last-try"],
    0, "spending the LAST admin try", expect().cryptograms(1).admin_tries(5).pin_set())]
#[case::last_admin_try_spent_on_a_wrong_key_blocks(&["--admin-tries", "1"], WRONG_KEY,
    &["--force-last-try"],
    5, "blocked", expect().cryptograms(1).admin_tries(0).rrc(0))]
#[case::blocked_admin_key_sends_nothing(&["--admin-tries", "0"], ZERO_KEY, &["--force-last-try"],
    5, "blocked", expect().no_challenge())]
fn tries_and_reset_retry_counter(
    #[case] card: &[&str],
    #[case] key: &str,
    #[case] extra: &[&str],
    #[case] code: i32,
    #[case] message: &str,
    #[case] expected: Expect,
) {
    card_row(card, key, extra, code, message, expected);
}

// --- CM (the rest of the CM failures are in tests/cm.rs) -----------------------------------

/// `unblock --cm` with the docs' ids against `cm`, plus `extra`.
fn cm_unblock(r: &Row, cm: &CmServer, ids: bool, extra: &[&str]) -> Run {
    let profile = long_pin_profile(r.dir.path());
    let mut args = cm_args(&profile, cm, CARDID);
    args.push("--json");
    if ids {
        args.extend_from_slice(&["--request-id", REQ, "--smartcard-id", SCID]);
    }
    args.extend_from_slice(extra);
    r.run(&args, &[])
}

#[test]
fn cm_workflow_failures_send_no_cryptogram() {
    let r = row(&[]);
    let other_card = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let ops = format!("{SCID}=renew,retire");
    let cases: Vec<(Vec<&str>, Vec<&str>, &str)> = vec![
        (
            vec!["--approve-after", "1000"],
            vec!["--approval-poll", "0.2", "--approval-timeout", "1"],
            "not approved within 1 s",
        ),
        (vec!["--operations", &ops], vec![], "does not offer unblock"),
        (
            vec!["--fail", "smartcards=503"],
            vec![],
            "CM answered HTTP 503",
        ),
        (
            vec!["--fail", "create-request=500"],
            vec![],
            "CM had an internal error",
        ),
        (
            vec!["--fail", "get-request=403"],
            vec!["--approval-poll", "0.2"],
            "CM denied access",
        ),
        (
            vec!["--approve-after", "1", "--deny"],
            vec!["--approval-poll", "0.2"],
            "denied",
        ),
    ];
    for (server, client, message) in cases {
        let cm = CmServer::start(&server);
        let run = cm_unblock(&r, &cm, false, &client);
        let s = check(&run, &r.card, 6, message);
        assert_eq!(cryptograms(&s), 0, "{server:?}");
        assert_eq!(
            count(&s, "0084"),
            0,
            "{server:?}: no challenge while CM fails"
        );
    }
    // A card id CM does not know.
    let cm = CmServer::start(&[]);
    let profile = long_pin_profile(r.dir.path());
    let run = r.run(&cm_args(&profile, &cm, other_card), &[]);
    let s = check(&run, &r.card, 6, "knows no smartcard");
    assert_eq!(cryptograms(&s), 0);
}

#[test]
fn cm_response_of_nine_bytes_is_refused() {
    let r = row(&[]);
    let cm = CmServer::start(&["--malformed", "length9"]);
    let run = cm_unblock(&r, &cm, true, &[]);
    let s = check(&run, &r.card, 6, "nothing was sent to the card");
    assert_eq!(cryptograms(&s), 0);
    assert_eq!(s["admin_tries"], 5);
}

#[test]
fn card_removed_while_cm_approves() {
    // The card leaves between the two transactions: the second finds it gone, no challenge
    // was asked, and the CM request is left open for a re-run with --request-id.
    let r = row(&[]);
    let cm = CmServer::start(&["--approve-after", "4"]);
    let profile = long_pin_profile(r.dir.path());
    let run = r.spawn(
        &[
            "unblock",
            "--profile",
            &profile,
            "--cm",
            &cm.url,
            "--allow-http",
            "--cm-auth",
            "none",
            "--card-id",
            CARDID,
            "--approval-poll",
            "0.5",
            "--new-pin-env",
            "NEW_PIN",
            "--json",
        ],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while cm.requests_to("get-request").is_empty() {
        assert!(Instant::now() < deadline, "no approval poll");
        std::thread::sleep(Duration::from_millis(20));
    }
    r.card.remove();
    let run = finish(run);
    let s = check(&run, &r.card, 3, "the card was removed");
    assert_eq!(count(&s, "0084"), 0);
    assert_eq!(cryptograms(&s), 0);
    run.stderr_has("cm_request_left_open");
    assert!(cm.requests_to("put-request").is_empty(), "not closed");
}
