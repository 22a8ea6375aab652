//! Hostile inputs (issue 13), each rule over the real pcscd + vpcd stack: a CM (or proxy)
//! that echoes secrets, arguments out of every range, a reader whose name carries escape
//! sequences, stdin and files that never end, a 100 MB CM body, concurrent runs on one
//! card, and a card that changes while a run waits. Needs root (private namespaces) and the
//! packages of `scripts/vstack install`; every wait is bounded and nothing asserts how long
//! anything took.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::cm::{cm_unblock_args, long_pin_profile, CmServer, DOCS_CARD_ID};
use common::rig::{blocked, Rig as Row};
use common::run::{apdus, cryptograms, drain, secret_file, unblock_args, Run, ZERO_KEY};
use common::stack::{holdcard_bin, VStack};
use serde_json::Value;

const PIN: &str = "Ab3$x9Qz";
const CM_PIN: &str = "2468013579";
/// Peak RSS every bounded-read run must stay under (issue 13: 64 MB).
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// A hang (a read that never ends) fails the test instead of blocking it.
const HANG: Duration = Duration::from_secs(30);

/// The reader name a malicious USB device could choose: ESC, an OSC title sequence ended
/// by BEL, a C1 CSI (U+009B: also a UTF-8 continuation byte), a bidi override.
const EVIL_NAME: &str = "Evil\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}Rdr";

/// A code point that must never reach a terminal or the journal raw (the tool's own line
/// ends aside): C0, DEL, C1, the bidi controls, the line/paragraph separators.
fn unsafe_char(c: char) -> bool {
    c != '\n'
        && matches!(c as u32,
            0x00..=0x1f | 0x7f..=0x9f | 0x61c | 0x200e | 0x200f | 0x2028..=0x202e | 0x2066..=0x2069)
}

/// Every unsafe code point in `what` (decoded: 0x9B alone is a UTF-8 continuation byte).
fn assert_terminal_safe(what: &str, text: &str) {
    let bad: Vec<String> = text
        .chars()
        .filter(|c| unsafe_char(*c))
        .map(|c| format!("U+{:04X}", c as u32))
        .collect();
    assert!(bad.is_empty(), "{what}: raw {bad:?} in:\n{text}");
}

/// One stack with a blocked-PIN card (golden challenge), and a directory for files; every
/// run gets the new PIN in NEW_PIN.
fn row(card_args: &[&str]) -> Row {
    row_on(VStack::start(2), card_args)
}

fn row_on(stack: VStack, card_args: &[&str]) -> Row {
    Row::on(stack, &blocked(card_args), &[("NEW_PIN", PIN)])
}

/// What the hostile rows add to the rig: the zero key, measured runs, an untouched card.
impl Row {
    fn key(&self) -> String {
        self.key_file(ZERO_KEY)
    }

    /// Run with stdin from `stdin` (a file: /dev/zero ...), and the peak RSS in KiB.
    fn run_measured(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&Path>,
    ) -> (Run, u64) {
        measured(&self.stack.csock(), args, &self.env(env), stdin)
    }

    /// A [`run_measured`](Row::run_measured) that must exit `code` saying `message` on
    /// stderr, its peak RSS under [`RSS_LIMIT_KIB`]; `what` names it in the test's log.
    fn run_bounded(
        &self,
        what: &str,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&Path>,
        (code, message): (i32, &str),
    ) {
        let (run, rss) = self.run_measured(args, env, stdin);
        run.expect(code);
        run.stderr_has(message);
        assert!(rss < RSS_LIMIT_KIB, "peak RSS {rss} KiB");
        eprintln!("{what}: exit {code}, peak RSS {rss} KiB");
    }

    /// The card's APDU log shows nothing at all (the card untouched).
    fn assert_untouched(&self) {
        let s = self.card.state();
        assert!(apdus(&s).is_empty(), "the card got APDUs: {s:#}");
    }
}

/// GNU time (`scripts/deps` installs it): the child's peak RSS. Not wait4's rusage of our
/// own child: Linux keeps the larger of the parent's RSS across fork and exec in
/// ru_maxrss, so a child of this (large) test process would report the test's size.
const GNU_TIME: &str = "/usr/bin/time";

/// Run the binary under GNU time in its own process group and return the run and its peak
/// RSS (KiB). Killed (and the test failed) if it runs longer than [`HANG`].
fn measured(csock: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&Path>) -> (Run, u64) {
    use std::os::unix::process::CommandExt;
    assert!(
        Path::new(GNU_TIME).is_file(),
        "{GNU_TIME} is missing: scripts/deps install (Debian package time)"
    );
    let out_dir = tempfile::tempdir().unwrap();
    let rss_file = out_dir.path().join("rss");
    let mut cmd = Command::new(GNU_TIME);
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_scunblock"))
        .args(args)
        .process_group(0)
        .env_remove("SCUNBLOCK_READER")
        .env("PCSCLITE_CSOCK_NAME", csock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(match stdin {
            Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
            None => Stdio::null(),
        });
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn scunblock under GNU time");
    let pgid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(HANG) {
        Ok(out) => out.expect("wait for scunblock"),
        Err(_) => {
            // SAFETY: signals the process group of our own child (time and scunblock).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            panic!("scunblock {args:?} still ran after {HANG:?} (killed): an unbounded read?");
        }
    };
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let rss = std::fs::read_to_string(&rss_file).unwrap_or_default();
    let rss = rss
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("GNU time wrote no peak RSS: {rss:?}\n{}", run.all()));
    (run, rss)
}

// --- 1. secrets never come back out ---------------------------------------------------------

const TOKEN: &str = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0-hostile";

/// Every form of the bearer token that could show up.
fn token_forms() -> Vec<String> {
    vec![
        TOKEN.to_string(),
        // A part long enough to identify it (a cut-off echo).
        TOKEN[..20].to_string(),
        base64::engine::general_purpose::STANDARD.encode(TOKEN),
        hex::encode(TOKEN),
    ]
}

fn echo_run(code: &str, token_from_file: bool, json: bool) {
    let r = row(&[]);
    let cm = CmServer::start(&["--echo-headers", code]);
    let profile = long_pin_profile(r.dir.path());
    let token_file = secret_file(r.dir.path(), "token", format!("{TOKEN}\n").as_bytes());
    let token_file = token_file.display().to_string();
    let mut args = cm_unblock_args(&profile, &cm.url);
    if !json {
        args.retain(|a| *a != "--json");
    }
    args.extend(["--allow-http", "--cm-auth", "bearer", "-v", "--trace"]);
    if token_from_file {
        args.extend(["--cm-token-file", &token_file]);
    } else {
        args.extend(["--cm-token-env", "CM_TOKEN"]);
    }
    let run = r.run(&args, &[("NEW_PIN", CM_PIN), ("CM_TOKEN", TOKEN)]);
    run.expect(6);
    // The server did get (and echo) the token: the test would prove nothing otherwise.
    let sent = cm.requests();
    assert!(
        sent.iter()
            .any(|q| q["headers"].to_string().contains(TOKEN)),
        "the token never reached the echoing server: {sent:?}"
    );
    let all = run.all();
    for form in token_forms() {
        assert!(
            !all.contains(&form),
            "{form:?} leaked (HTTP {code}):\n{all}"
        );
    }
    assert!(all.contains("REDACTED"), "no REDACTED in:\n{all}");
    if json {
        let doc = run.json();
        assert_eq!(doc["error"]["class"], "responder");
        let msg = doc["error"]["message"].as_str().unwrap();
        assert!(msg.contains("REDACTED"), "{msg}");
    }
    assert_eq!(cryptograms(&r.card.state()), 0);
}

#[test]
fn a_token_echoed_in_a_500_body_is_redacted() {
    echo_run("500", false, true);
    echo_run("500", true, false);
}

#[test]
fn a_token_echoed_in_a_400_body_is_redacted() {
    echo_run("400", true, true);
    echo_run("400", false, false);
}

// --- 2. no panic on any argument --------------------------------------------------------------

#[test]
fn out_of_range_numbers_are_usage_errors_with_json() {
    let r = row(&[]);
    let key = r.key();
    let cm = [
        "--cm",
        "http://127.0.0.1:9",
        "--allow-http",
        "--card-id",
        DOCS_CARD_ID,
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["info", "--wait-card", "18446744073709551615"],
            "--wait-card",
        ),
        (vec!["info", "--wait-card", "86401"], "--wait-card"),
        (vec!["info", "--wait-card=-1"], "--wait-card"),
        (vec!["unblock", "--timeout", "0"], "--timeout"),
        (vec!["unblock", "--timeout", "3601"], "--timeout"),
        (
            vec!["unblock", "--approval-timeout", "86401"],
            "--approval-timeout",
        ),
        (
            vec!["unblock", "--approval-poll", "0.19"],
            "--approval-poll",
        ),
        (vec!["unblock", "--approval-poll", "0"], "--approval-poll"),
        (
            vec!["unblock", "--approval-poll", "3600.5"],
            "--approval-poll",
        ),
        (vec!["unblock", "--approval-poll", "NaN"], "--approval-poll"),
        (vec!["unblock", "--approval-poll", "inf"], "--approval-poll"),
        (
            vec!["unblock", "--approval-poll", "1e400"],
            "--approval-poll",
        ),
        (vec!["watch", "--new-pin-timeout", "0"], "--new-pin-timeout"),
        (
            vec!["watch", "--card-id-timeout", "99999999999999999999"],
            "--card-id-timeout",
        ),
        (
            vec!["watch", "--shutdown-timeout", "3601"],
            "--shutdown-timeout",
        ),
        // clap's own errors: unknown options, a missing value, two key sources.
        (vec!["info", "--no-such-option"], "--no-such-option"),
        (vec!["unblock", "--admin-key-file"], "--admin-key-file"),
        (
            vec!["unblock", "--manual", "--admin-key-file", &key],
            "--manual",
        ),
    ];
    for (args, option) in cases {
        let mut with_cm = args.clone();
        if args[0] == "unblock" && !args.contains(&"--admin-key-file") {
            with_cm.extend(cm);
        }
        for json in [true, false] {
            let mut a = with_cm.clone();
            if json {
                a.push("--json");
            }
            let run = r.run(&a, &[]);
            run.expect(2);
            assert!(
                run.stderr.contains(option),
                "{a:?}: the message does not name {option}:\n{}",
                run.stderr
            );
            if json {
                let doc = run.json();
                assert_eq!(doc["ok"], false, "{a:?}");
                assert_eq!(doc["exit_code"], 2, "{a:?}");
                assert_eq!(doc["error"]["class"], "usage", "{a:?}");
                assert_eq!(doc["command"], args[0], "{a:?}");
                let msg = doc["error"]["message"].as_str().unwrap();
                assert!(msg.contains(option), "{a:?}: {msg}");
            } else {
                assert!(run.stdout.is_empty(), "{a:?}: {}", run.stdout);
            }
        }
    }
    // The edges of each range parse (and then fail, or not, for other reasons).
    for args in [
        vec!["info", "--wait-card", "0", "--json"],
        vec!["info", "--wait-card", "86400", "--json"],
    ] {
        let run = r.run(&args, &[]);
        run.expect(0);
    }
    r.card
        .wait_state(Duration::from_secs(5), |s| cryptograms(s) == 0);
    assert!(
        apdus(&r.card.state())
            .iter()
            .all(|a| !a.starts_with("0084")),
        "a usage error reached the card"
    );
}

mod arguments {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    /// Option words and values, valid and hostile: huge, negative, fractional, NaN, control
    /// characters, non-numbers.
    fn word() -> impl Strategy<Value = String> {
        // `select` of n values weighs n: as likely as n `Just`s in the `prop_oneof!`.
        let numbers = prop_oneof![
            12 => select(&[
                "18446744073709551615",
                "18446744073709551616",
                "-1",
                "0",
                "1",
                "0.2",
                "NaN",
                "inf",
                "1e308",
                "3600",
                "\u{1b}[2J",
                "",
            ][..])
            .prop_map(str::to_string),
            1 => "[0-9]{1,25}",
            1 => "-?[0-9]{0,5}\\.[0-9]{0,5}",
            1 => "\\PC{0,12}",
        ];
        prop_oneof![
            3 => select(&[
                "--wait-card",
                "--timeout",
                "--approval-timeout",
                "--approval-poll",
                "--reader",
                "--json",
                "--dry-run",
                "--card-id",
                "--request-id",
                "--cm",
                "--allow-http",
                "--cm-auth",
                "--new-pin-env",
                "--new-pin-stdin",
                "--manual",
                "--profile",
                "--force-last-try",
                "-v",
                "--trace",
                "--",
            ][..])
            .prop_map(str::to_string),
            3 => numbers,
        ]
    }

    fn command() -> impl Strategy<Value = Vec<String>> {
        (
            prop_oneof![
                Just("readers"),
                Just("info"),
                Just("unblock"),
                Just("auth"),
                Just("bogus")
            ],
            proptest::collection::vec(word(), 0..8),
        )
            .prop_map(|(c, rest)| {
                let mut v = vec![c.to_string()];
                // A --wait-card that parses must not make a case wait for a missing card.
                let mut rest = rest;
                for i in 0..rest.len() {
                    if rest[i] == "--wait-card"
                        && i + 1 < rest.len()
                        && rest[i + 1].parse::<u64>().is_ok_and(|n| n <= 86_400)
                    {
                        rest[i + 1] = "0".into();
                    }
                }
                v.extend(rest);
                v
            })
    }

    #[test]
    fn no_argument_makes_the_process_panic() {
        let r = row(&[]);
        let config = ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(args in command())| {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let (run, _) = r.run_measured(&a, &[("NEW_PIN", "12345678")], None);
            prop_assert_ne!(run.code, 101, "{:?} panicked:\n{}", a, run.all());
            prop_assert!(!run.stderr.contains("panicked"), "{:?}:\n{}", a, run.stderr);
            prop_assert!((0..=7).contains(&run.code), "{:?}: exit {}\n{}", a, run.code, run.all());
            if run.code == 2 && a.iter().take_while(|w| **w != "--").any(|w| *w == "--json") {
                let doc: Value = serde_json::from_str(&run.stdout)
                    .map_err(|e| TestCaseError::fail(format!("{a:?}: no JSON ({e}):\n{}", run.all())))?;
                prop_assert_eq!(&doc["exit_code"], 2);
            }
        });
    }
}

// --- 3. terminal-safe text ------------------------------------------------------------------------

fn evil_row() -> Row {
    let stack = VStack::start_named(2, EVIL_NAME);
    row_on(stack, &[])
}

#[test]
fn a_hostile_reader_name_never_reaches_a_stream_raw() {
    let r = evil_row();
    let name = r.stack.reader_name(0);
    assert!(name.contains('\u{9b}'), "the stack's reader name: {name:?}");
    let key = r.key();
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("readers", vec!["readers"]),
        ("info", vec!["info"]),
        ("info -v --trace", vec!["info", "-v", "--trace"]),
        (
            "--reader error list",
            vec!["info", "--reader", "no-such-reader"],
        ),
        ("unblock", [unblock_args(&key), vec!["-v"]].concat()),
    ];
    for (what, args) in &runs {
        for json in [false, true] {
            let mut a = args.clone();
            if json {
                a.push("--json");
            }
            let run = r.run(&a, &[]);
            assert!(
                run.code == 0 || run.code == 2,
                "{what}: exit {}\n{}",
                run.code,
                run.all()
            );
            assert_terminal_safe(&format!("{what} stdout"), &run.stdout);
            assert_terminal_safe(&format!("{what} stderr"), &run.stderr);
            if json {
                // JSON keeps the exact name.
                let doc = run.json();
                let found = match *what {
                    "readers" => doc["readers"][0]["name"].clone(),
                    "--reader error list" => {
                        let m = doc["error"]["message"].as_str().unwrap().to_string();
                        assert!(m.contains(&name), "{what}: {m:?}");
                        Value::from(name.clone())
                    }
                    _ => doc["reader"].clone(),
                };
                assert_eq!(found, Value::from(name.clone()), "{what}");
            } else {
                assert!(
                    run.all()
                        .contains("Evil\\x1b]0;pwned\\x07\\u{9b}2J\\u{202e}Rdr"),
                    "{what}:\n{}",
                    run.all()
                );
            }
        }
    }
    assert_eq!(r.card.state()["pin"], PIN);
}

/// Run `scunblock watch ARGS` (with `--json` if `json`) until its stdout shows `until`,
/// then SIGTERM it; returns its stdout and stderr. Bounded: no `until` within 20 s fails.
fn watch_until(
    stack: &VStack,
    args: &[&str],
    env: &[(&str, &str)],
    json: bool,
    until: &str,
) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("watch.out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scunblock"));
    cmd.arg("watch")
        .args(args)
        .env_remove("SCUNBLOCK_READER")
        .env("PCSCLITE_CSOCK_NAME", stack.csock())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if json {
        cmd.arg("--json");
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains(until)
    {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no {until} from watch {args:?}: {}",
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let stderr = drain(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let text = String::from_utf8_lossy(&std::fs::read(&out).unwrap()).into_owned();
    (text, stderr)
}

#[test]
fn watch_escapes_a_hostile_reader_name_in_text_and_json() {
    let r = evil_row();
    let name = r.stack.reader_name(0);
    for json in [false, true] {
        let (text, stderr) = watch_until(&r.stack, &[], &[], json, "card_inserted");
        assert_terminal_safe("watch stdout", &text);
        assert_terminal_safe("watch stderr", &stderr);
        if json {
            let inserted: Value = text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .find(|v| v["event"] == "card_inserted")
                .unwrap();
            assert_eq!(inserted["reader"], Value::from(name.clone()));
        } else {
            assert!(
                text.contains("[Evil\\x1b]0;pwned\\x07\\u{9b}2J\\u{202e}Rdr 00 00]"),
                "{text}"
            );
        }
    }
}

#[test]
fn watch_events_never_carry_an_echoed_token() {
    let r = row(&[]);
    let cm = CmServer::start(&["--echo-headers", "500"]);
    let card_id = format!("echo {DOCS_CARD_ID}");
    let args = [
        "--unblock",
        "--cm",
        cm.url.as_str(),
        "--allow-http",
        "--cm-auth",
        "bearer",
        "--cm-token-env",
        "CM_TOKEN",
        "--card-id-command",
        &card_id,
        "--new-pin-command",
        "echo 24681357",
        "--trace",
        "-v",
    ];
    for json in [true, false] {
        let (text, stderr) = watch_until(
            &r.stack,
            &args,
            &[("CM_TOKEN", TOKEN)],
            json,
            "unblock_failed",
        );
        assert!(
            cm.requests()
                .iter()
                .any(|q| q["headers"].to_string().contains(TOKEN)),
            "the token never reached the echoing server"
        );
        let all = format!("{text}\n{stderr}");
        for form in token_forms() {
            assert!(!all.contains(&form), "{form:?} leaked:\n{all}");
        }
        assert!(text.contains("Bearer REDACTED"), "{text}");
    }
    assert_eq!(cryptograms(&r.card.state()), 0);
}

// --- 4. every read is bounded -------------------------------------------------------------------

#[test]
fn new_pin_stdin_from_dev_zero_is_exit_2_in_bounded_memory() {
    let r = row(&[]);
    let key = r.key();
    r.run_bounded(
        "new-pin-stdin < /dev/zero",
        &[
            "unblock",
            "--admin-key-file",
            &key,
            "--new-pin-stdin",
            "--json",
        ],
        &[],
        Some(Path::new("/dev/zero")),
        (2, "longer than 4096 bytes"),
    );
    r.assert_untouched();
}

#[test]
fn manual_response_from_dev_zero_is_exit_6_in_bounded_memory() {
    let r = row(&[]);
    r.run_bounded(
        "--manual < /dev/zero",
        &["unblock", "--manual", "--new-pin-env", "NEW_PIN", "--json"],
        &[],
        Some(Path::new("/dev/zero")),
        (6, "longer than 4096 bytes"),
    );
    let s = r.card.state();
    assert_eq!(cryptograms(&s), 0, "{s:#}");
    assert!(apdus(&s).iter().all(|a| !a.starts_with("002c")), "{s:#}");
}

#[test]
fn a_100_mb_cm_body_is_exit_6_in_bounded_memory() {
    let r = row(&[]);
    let cm = CmServer::start(&["--huge-body", "104857600"]);
    let profile = long_pin_profile(r.dir.path());
    let mut args = cm_unblock_args(&profile, &cm.url);
    args.extend(["--allow-http", "--cm-auth", "none"]);
    r.run_bounded(
        "100 MB CM body",
        &args,
        &[("NEW_PIN", CM_PIN)],
        None,
        (6, "larger than 1048576 bytes"),
    );
    assert_eq!(cryptograms(&r.card.state()), 0);
}

/// A FIFO nobody writes to, and /dev/zero, for every option that names a file: exit 2,
/// bounded memory, the card untouched.
#[test]
fn every_file_option_refuses_a_fifo_and_a_device() {
    let r = row(&[]);
    let fifo = r.dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let key = r.key();
    let token = secret_file(r.dir.path(), "token", b"tok\n")
        .display()
        .to_string();
    let cm = CmServer::start(&[]);
    for bad in [fifo.clone(), PathBuf::from("/dev/zero")] {
        let bad = bad.to_str().unwrap();
        let cm_args = |extra: &[&'static str]| -> Vec<String> {
            let mut v: Vec<String> = [
                "unblock",
                "--cm",
                cm.url.as_str(),
                "--allow-http",
                "--card-id",
                DOCS_CARD_ID,
                "--new-pin-env",
                "NEW_PIN",
                "--json",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            v.extend(
                extra
                    .iter()
                    .map(|s| s.replace("BAD", bad).replace("TOKEN", &token)),
            );
            v
        };
        let local = |opt: &str| -> Vec<String> {
            let mut v: Vec<String> = ["unblock", "--json"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            match opt {
                "--admin-key-file" => v.extend([
                    "--admin-key-file".into(),
                    bad.into(),
                    "--new-pin-env".into(),
                    "NEW_PIN".into(),
                ]),
                "--new-pin-file" => v.extend([
                    "--admin-key-file".into(),
                    key.clone(),
                    "--new-pin-file".into(),
                    bad.into(),
                ]),
                _ => v.extend([
                    "--profile".into(),
                    bad.into(),
                    "--admin-key-file".into(),
                    key.clone(),
                    "--new-pin-env".into(),
                    "NEW_PIN".into(),
                ]),
            }
            v
        };
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("--admin-key-file", local("--admin-key-file")),
            ("--new-pin-file", local("--new-pin-file")),
            ("--profile", local("--profile")),
            (
                "--cm-token-file",
                cm_args(&["--cm-auth", "bearer", "--cm-token-file", "BAD"]),
            ),
            (
                "--cm-ca-file",
                cm_args(&["--cm-auth", "none", "--cm-ca-file", "BAD"]),
            ),
            (
                "--keytab",
                cm_args(&["--cm-auth", "negotiate", "--keytab", "BAD"]),
            ),
            (
                "--cm-client-cert",
                cm_args(&[
                    "--cm-auth",
                    "bearer",
                    "--cm-token-file",
                    "TOKEN",
                    "--cm-client-cert",
                    "BAD",
                    "--cm-client-key",
                    "TOKEN",
                ]),
            ),
            (
                "--cm-client-key",
                cm_args(&[
                    "--cm-auth",
                    "none",
                    "--cm-client-cert",
                    "TOKEN",
                    "--cm-client-key",
                    "BAD",
                ]),
            ),
        ];
        for (option, args) in cases {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let (run, rss) = r.run_measured(&a, &[], None);
            run.expect(2);
            let doc = run.json();
            assert_eq!(doc["error"]["class"], "usage", "{option} {bad}");
            let msg = doc["error"]["message"].as_str().unwrap();
            assert!(msg.contains("not a regular file"), "{option} {bad}: {msg}");
            assert!(rss < RSS_LIMIT_KIB, "{option} {bad}: peak RSS {rss} KiB");
        }
    }
    assert!(
        cm.requests().is_empty(),
        "CM was called: {:?}",
        cm.requests()
    );
    r.assert_untouched();
}

// --- 5. many runs on one card -------------------------------------------------------------------

#[test]
fn eight_concurrent_runs_on_one_card_all_succeed() {
    let r = row(&[]);
    let key = r.key();
    let children: Vec<_> = (0..8)
        .map(|_| {
            let (tx, rx) = mpsc::channel();
            let csock = r.stack.csock();
            let key = key.clone();
            std::thread::spawn(move || {
                let run = common::run::scunblock(
                    Some(&csock),
                    &[
                        "unblock",
                        "--admin-key-file",
                        &key,
                        "--new-pin-env",
                        "NEW_PIN",
                        "--json",
                        "-v",
                    ],
                    &[("NEW_PIN", PIN)],
                    None,
                );
                let _ = tx.send(run);
            });
            rx
        })
        .collect();
    for rx in children {
        let run = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a run hung");
        run.expect(0);
        assert_eq!(run.json()["pin_reset"], true);
    }
    let s = r.card.state();
    assert_eq!(cryptograms(&s), 8, "{s:#}");
    let rrc = apdus(&s).iter().filter(|a| a.starts_with("002c")).count();
    assert_eq!(rrc, 8, "{s:#}");
    assert_eq!(s["pin"], PIN);
}

// --- 6. a different card after a reconnect ----------------------------------------------------

/// `scunblock-holdcard`: resets the card like another run.
fn reset_card(stack: &VStack) {
    let mut child = Command::new(holdcard_bin())
        .args(["--reader", &stack.reader_name(0), "--mode", "reset"])
        .env("PCSCLITE_CSOCK_NAME", stack.csock())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{lines:?}");
    assert!(lines.iter().any(|l| l == "reset ok"), "{lines:?}");
}

#[test]
fn a_different_card_after_a_reconnect_is_exit_3_before_any_challenge() {
    // The default ATR with one historical byte changed (and its TCK).
    let r = row(&["--atr-after-reset", "3B87018055766361726530"]);
    let cm = CmServer::start(&["--approve-after", "25"]);
    let profile = long_pin_profile(r.dir.path());
    let mut args = cm_unblock_args(&profile, &cm.url);
    args.extend([
        "--allow-http",
        "--cm-auth",
        "none",
        "--approval-poll",
        "0.2",
        "-v",
    ]);
    let (tx, rx) = mpsc::channel();
    {
        let csock = r.stack.csock();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        std::thread::spawn(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = tx.send(common::run::scunblock(
                Some(&csock),
                &a,
                &[("NEW_PIN", CM_PIN)],
                None,
            ));
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while cm.requests_to("get-request").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no approval poll: {:?}",
            cm.requests()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    reset_card(&r.stack);
    let run = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the run hung");
    run.expect(3);
    let doc = run.json();
    assert_eq!(doc["error"]["class"], "card_changed", "{doc:#}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("changed"),
        "{doc:#}"
    );
    let s = r.card.state();
    assert!(
        apdus(&s).iter().all(|a| !a.starts_with("0084")),
        "a challenge went to the new card: {s:#}"
    );
    assert_eq!(cryptograms(&s), 0);
    assert!(
        cm.requests_to("authresponse").is_empty(),
        "CM was asked for a response"
    );
}
