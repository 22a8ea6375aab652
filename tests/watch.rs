//! `scunblock watch` (kiosk mode): the real binary as a long-running child against a real
//! pcscd + vpcd + virtual cards. Its `--json` event lines are read on a thread; every wait
//! is bounded and nothing asserts how long anything took. Needs root (private namespaces)
//! and the packages `scripts/vstack install` brings.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::cm::{CmServer, DOCS_CARD_ID, DOCS_SMARTCARD};
use common::run::{admin_key_file, apdus, cryptograms, secret_file, WRONG_KEY, ZERO_KEY};
use common::stack::VStack;
use serde_json::Value;

/// Bound of every wait for an event or a state: generous (2 cores shared with other work).
const WAIT: Duration = Duration::from_secs(20);
const PIN: &str = "24681357";

/// A running `scunblock watch --json`.
struct Watcher {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Watcher {
    /// Start `scunblock watch --json ARGS` against `stack`, with `env` added.
    fn start(stack: &VStack, args: &[&str], env: &[(&str, &str)]) -> Watcher {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr.log");
        let mut cmd = common::stack::scunblock();
        cmd.arg("watch")
            .arg("--json")
            .args(args)
            .env_remove("SCUNBLOCK_READER")
            .env("PCSCLITE_CSOCK_NAME", stack.csock())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn scunblock watch");
        let events = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line:?}"));
                sink.lock().unwrap().push(v);
            }
        });
        let w = Watcher {
            child,
            events,
            stderr,
            _dir: dir,
        };
        w.wait_for("service_up", None, 1);
        w
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Events named `event` (in `reader`, if given), in order.
    fn named(&self, event: &str, reader: Option<&str>) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == event && reader.is_none_or(|r| e["reader"] == r))
            .collect()
    }

    /// Wait until there are `n` events named `event` (in `reader`); return the nth.
    fn wait_for(&self, event: &str, reader: Option<&str>, n: usize) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.named(event, reader);
            if found.len() >= n {
                return found[n - 1].clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "no {event} #{n} (reader {reader:?}) within {WAIT:?}\nevents:\n{}\nstderr:\n{}",
                    self.dump(),
                    self.stderr()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn dump(&self) -> String {
        self.events()
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signals our own child process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// SIGTERM, then the exit code (killed after a bound).
    fn stop(mut self) -> (i32, Vec<Value>, String) {
        self.signal(libc::SIGTERM);
        let code = self.wait_exit();
        // The reader thread ends with the pipe; give it a moment to push the last lines.
        sleep(Duration::from_millis(50));
        let stderr = self.stderr();
        assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
        (code, self.events(), stderr)
    }

    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "watch did not exit after SIGTERM\nevents:\n{}\nstderr:\n{}",
                    self.dump(),
                    self.stderr()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stack, a key file, and a directory for helper scripts.
struct Kiosk {
    stack: VStack,
    dir: tempfile::TempDir,
}

impl Kiosk {
    fn new(readers: usize) -> Kiosk {
        Kiosk {
            stack: VStack::start(readers),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn key(&self, hex: &str) -> String {
        admin_key_file(self.dir.path(), hex)
    }

    /// An executable shell script in the kiosk directory; returns its path.
    fn script(&self, name: &str, body: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        p.display().to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn reader(&self, slot: usize) -> String {
        self.stack.reader_name(slot)
    }

    /// `watch --unblock --admin-key-file KEY --new-pin-command CMD EXTRA...`
    fn unblocking(&self, key: &str, pin_command: &str, extra: &[&str]) -> Watcher {
        let key = self.key(key);
        let mut args = vec![
            "--unblock",
            "--admin-key-file",
            &key,
            "--new-pin-command",
            pin_command,
        ];
        args.extend_from_slice(extra);
        Watcher::start(&self.stack, &args, &[])
    }
}

fn blocked() -> Vec<&'static str> {
    vec!["--pin-tries", "0", "--quiet"]
}

fn wait_file(p: &Path) {
    let deadline = Instant::now() + WAIT;
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        sleep(Duration::from_millis(20));
    }
}

fn time(e: &Value) -> &str {
    e["time"].as_str().expect("every event has a time")
}

#[test]
fn insertion_and_removal_are_reported() {
    let k = Kiosk::new(2);
    let w = Watcher::start(&k.stack, &[], &[]);
    let r0 = k.reader(0);
    for slot in 0..2 {
        w.wait_for("reader_added", Some(&k.reader(slot)), 1);
    }
    let card = k
        .stack
        .insert(0, &["--pin-tries", "2", "--admin-tries", "4", "--quiet"]);
    let ins = w.wait_for("card_inserted", Some(&r0), 1);
    assert_eq!(ins["atr"], "3B 87 01 80 55 76 63 61 72 64 31");
    assert_eq!(ins["pin_tries"], 2);
    assert_eq!(ins["admin_tries"], 4);
    assert!(ins["card_id"].is_null(), "the iso profile cannot read it");
    card.remove();
    w.wait_for("card_removed", Some(&r0), 1);
    let (code, events, _) = w.stop();
    assert_eq!(code, 0);
    // Every event: RFC 3339 UTC with milliseconds, and a reader field.
    for e in &events {
        let t = time(e);
        assert!(
            t.len() == 24 && t.ends_with('Z') && &t[10..11] == "T" && &t[19..20] == ".",
            "{e}"
        );
        assert!(e.get("reader").is_some(), "{e}");
    }
    // Reporting only: the card was read, never authenticated.
    assert_eq!(cryptograms(&card.state()), 0);
    assert!(!events.iter().any(|e| e["event"] == "unblock_started"));
}

#[test]
fn a_blocked_card_is_unblocked_on_insertion() {
    let k = Kiosk::new(2);
    let env_file = k.path("env");
    let cmd = k.script(
        "pin",
        &format!(
            "printf '%s|%s|%s|%s' \"$SCUNBLOCK_READER\" \"$SCUNBLOCK_ATR\" \
             \"${{SCUNBLOCK_CARD_ID-unset}}\" \"${{WATCH_TEST_KEY-unset}}\" > {}\necho {PIN}",
            env_file.display()
        ),
    );
    // The key from the environment: the PIN command must not inherit it.
    let w = Watcher::start(
        &k.stack,
        &[
            "--unblock",
            "--admin-key-env",
            "WATCH_TEST_KEY",
            "--new-pin-command",
            &cmd,
        ],
        &[("WATCH_TEST_KEY", ZERO_KEY)],
    );
    let (r0, r1) = (k.reader(0), k.reader(1));
    let card = k.stack.insert(0, &blocked());
    let fine = k.stack.insert(1, &["--quiet"]);
    let ok = w.wait_for("unblock_succeeded", Some(&r0), 1);
    assert_eq!(ok["pin_tries"], 3);
    assert_eq!(ok["responder"], "local-key");
    let skipped = w.wait_for("skipped", Some(&r1), 1);
    assert_eq!(skipped["reason"], "pin_not_blocked");
    let state = card.state();
    assert_eq!(state["pin"], PIN);
    assert_eq!(state["pin_tries"], 3);
    assert_eq!(state["ext_auth_with_data"], 1);
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        format!("{r0}|3B87018055766361726431|unset|unset")
    );
    assert_eq!(cryptograms(&fine.state()), 0);
    // In order: inserted (blocked), started, succeeded.
    let mine: Vec<Value> = w
        .events()
        .into_iter()
        .filter(|e| e["reader"] == r0.as_str())
        .collect();
    let names: Vec<&str> = mine.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "reader_added",
            "card_inserted",
            "unblock_started",
            "unblock_succeeded"
        ]
    );
    assert_eq!(mine[1]["pin_tries"], 0);
    let (code, _, stderr) = w.stop();
    assert_eq!(code, 0);
    assert!(
        !stderr.contains(PIN) && !stderr.contains(ZERO_KEY),
        "{stderr}"
    );
}

#[test]
fn two_cards_are_unblocked_in_parallel() {
    let k = Kiosk::new(2);
    // Each PIN command leaves a marker and waits until both flows have asked for their PIN:
    // neither can finish before the other has started. Then a pause, so that the other
    // card's unblock_started is also strictly earlier in milliseconds.
    let marks = k.path("marks");
    std::fs::create_dir(&marks).unwrap();
    let cmd = k.script(
        "pin",
        &format!(
            "touch \"{m}/$SCUNBLOCK_READER\"\n\
             n=0\n\
             while [ \"$(ls {m} | wc -l)\" -lt 2 ]; do\n\
               sleep 0.05; n=$((n+1)); [ $n -gt 600 ] && exit 9\n\
             done\n\
             sleep 0.2\n\
             echo {PIN}",
            m = marks.display()
        ),
    );
    let w = k.unblocking(ZERO_KEY, &cmd, &[]);
    let (ra, rb) = (k.reader(0), k.reader(1));
    let a = k.stack.insert(0, &blocked());
    let b = k.stack.insert(1, &blocked());
    let ok_a = w.wait_for("unblock_succeeded", Some(&ra), 1);
    let ok_b = w.wait_for("unblock_succeeded", Some(&rb), 1);
    let start_a = w.wait_for("unblock_started", Some(&ra), 1);
    let start_b = w.wait_for("unblock_started", Some(&rb), 1);
    // Overlap: each started before the other succeeded.
    assert!(time(&start_b) < time(&ok_a), "{start_b} / {ok_a}");
    assert!(time(&start_a) < time(&ok_b), "{start_a} / {ok_b}");
    assert_eq!(a.state()["pin"], PIN);
    assert_eq!(b.state()["pin"], PIN);
    assert_eq!(w.stop().0, 0);
}

#[test]
fn a_wrong_key_is_tried_once_across_reinsertions() {
    let k = Kiosk::new(2);
    let cmd = format!("echo {PIN}");
    let w = k.unblocking(WRONG_KEY, &cmd, &[]);
    let r0 = k.reader(0);
    let card = k.stack.insert(0, &blocked());
    let failed = w.wait_for("unblock_failed", Some(&r0), 1);
    assert_eq!(failed["class"], "admin_rejected");
    assert_eq!(failed["exit_code"], 4);
    assert_eq!(failed["admin_tries"], 4);
    assert_eq!(card.state()["ext_auth_with_data"], 1);
    card.remove();
    w.wait_for("card_removed", Some(&r0), 1);

    let again = k.stack.reinsert(0, &["--quiet"]);
    let skipped = w.wait_for("skipped", Some(&r0), 1);
    assert_eq!(skipped["reason"], "failed_before");
    let ins = w.wait_for("card_inserted", Some(&r0), 2);
    assert_eq!(ins["admin_tries"], 4);
    let state = again.state();
    assert_eq!(state["ext_auth_with_data"], 0, "no second cryptogram");
    assert_eq!(state["admin_tries"], 4);
    assert!(!apdus(&state).iter().any(|a| a.starts_with("0084")));
    assert_eq!(w.named("unblock_started", None).len(), 1);
    assert_eq!(w.stop().0, 0);
}

#[test]
fn retry_after_failure_tries_again_on_the_next_insertion() {
    let k = Kiosk::new(2);
    let cmd = format!("echo {PIN}");
    let w = k.unblocking(WRONG_KEY, &cmd, &["--retry-after-failure"]);
    let r0 = k.reader(0);
    let card = k.stack.insert(0, &blocked());
    w.wait_for("unblock_failed", Some(&r0), 1);
    card.remove();
    w.wait_for("card_removed", Some(&r0), 1);
    let again = k.stack.reinsert(0, &["--quiet"]);
    let second = w.wait_for("unblock_failed", Some(&r0), 2);
    assert_eq!(second["class"], "admin_rejected");
    assert_eq!(second["admin_tries"], 3);
    assert_eq!(again.state()["ext_auth_with_data"], 1);
    assert_eq!(again.state()["admin_tries"], 3);
    assert!(w.named("skipped", None).is_empty());
    assert_eq!(w.stop().0, 0);
}

#[test]
fn a_card_removed_mid_flow_fails_and_the_next_insertion_starts_fresh() {
    let k = Kiosk::new(2);
    let cmd = format!("echo {PIN}");
    let w = k.unblocking(ZERO_KEY, &cmd, &[]);
    let r0 = k.reader(0);
    // The card vanishes at RESET RETRY COUNTER, after the admin authentication.
    // Not waiting for readiness: the watcher may be done with it (and it gone) first.
    let card = k
        .stack
        .insert_no_wait(0, &["--pin-tries", "0", "--quiet", "--vanish-on-ins", "2c"]);
    let failed = w.wait_for("unblock_failed", Some(&r0), 1);
    assert_eq!(failed["class"], "unavailable", "{failed}");
    assert_eq!(failed["exit_code"], 3);
    card.wait_exit(WAIT);
    w.wait_for("card_removed", Some(&r0), 1);
    assert_eq!(card.state()["pin_tries"], 0, "still blocked");

    let again = k.stack.reinsert(0, &["--quiet"]);
    let ok = w.wait_for("unblock_succeeded", Some(&r0), 1);
    assert_eq!(ok["pin_tries"], 3);
    assert_eq!(again.state()["pin"], PIN);
    assert_eq!(again.state()["admin_tries"], 5);
    assert_eq!(w.stop().0, 0);
}

#[test]
fn a_card_pulled_while_its_verdict_is_pending_is_not_retried() {
    let k = Kiosk::new(2);
    let w = k.unblocking(ZERO_KEY, &format!("echo {PIN}"), &[]);
    let r0 = k.reader(0);
    // Gone with the cryptogram on its way: the card may have counted it.
    let card = k.stack.insert_no_wait(
        0,
        &["--pin-tries", "0", "--quiet", "--vanish-on-ins", "82+data"],
    );
    let failed = w.wait_for("unblock_failed", Some(&r0), 1);
    assert_eq!(failed["class"], "unavailable", "{failed}");
    card.wait_exit(WAIT);
    w.wait_for("card_removed", Some(&r0), 1);
    let again = k.stack.reinsert(0, &["--quiet"]);
    let skipped = w.wait_for("skipped", Some(&r0), 1);
    assert_eq!(skipped["reason"], "failed_before", "{skipped}");
    assert_eq!(again.state()["ext_auth_with_data"], 0, "no second response");
    assert_eq!(w.stop().0, 0);
}

#[test]
fn pcscd_restarting_is_survived() {
    let k = Kiosk::new(2);
    let w = Watcher::start(&k.stack, &[], &[]);
    let r1 = k.reader(1);
    let _card = k.stack.insert(1, &["--reconnect", "--quiet"]);
    w.wait_for("card_inserted", Some(&r1), 1);
    k.stack.kill_pcscd();
    w.wait_for("service_lost", None, 1);
    w.wait_for("card_removed", Some(&r1), 1);
    w.wait_for("reader_removed", Some(&r1), 1);
    k.stack.restart_pcscd();
    w.wait_for("service_up", None, 2);
    w.wait_for("reader_added", Some(&r1), 2);
    let again = w.wait_for("card_inserted", Some(&r1), 2);
    assert_eq!(again["pin_tries"], 3);
    // Order: lost, then up again.
    let service: Vec<String> = w
        .events()
        .iter()
        .filter(|e| e["reader"].is_null())
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(service, ["service_up", "service_lost", "service_up"]);
    assert_eq!(w.stop().0, 0);
}

#[test]
fn sigterm_lets_the_flow_in_progress_finish() {
    let k = Kiosk::new(2);
    let asked = k.path("asked");
    let cmd = k.script(
        "pin",
        &format!("touch {}\nsleep 1\necho {PIN}", asked.display()),
    );
    let w = k.unblocking(ZERO_KEY, &cmd, &[]);
    let r0 = k.reader(0);
    let card = k.stack.insert(0, &blocked());
    w.wait_for("unblock_started", Some(&r0), 1);
    wait_file(&asked);
    let (code, events, _) = w.stop();
    assert_eq!(code, 0);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "unblock_succeeded" && e["reader"] == r0.as_str()),
        "{events:?}"
    );
    assert_eq!(card.state()["pin"], PIN);
}

#[test]
fn the_shutdown_timeout_bounds_the_wait_and_ends_the_pin_command() {
    let k = Kiosk::new(2);
    let pid_file = k.path("pid");
    let cmd = k.script(
        "pin",
        &format!("echo $$ > {}\nexec sleep 600", pid_file.display()),
    );
    let w = k.unblocking(ZERO_KEY, &cmd, &["--shutdown-timeout", "1"]);
    let r0 = k.reader(0);
    let card = k.stack.insert(0, &blocked());
    wait_file(&pid_file);
    let (code, events, _) = w.stop();
    assert_eq!(code, 0);
    let skipped: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "skipped" && e["reader"] == r0.as_str())
        .collect();
    assert_eq!(skipped.len(), 1, "{events:?}");
    assert_eq!(skipped[0]["reason"], "shutting_down");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "the PIN command still runs");
        sleep(Duration::from_millis(20));
    }
    assert_eq!(cryptograms(&card.state()), 0);
}

#[test]
fn a_failing_or_bad_new_pin_command_skips_the_card() {
    let k = Kiosk::new(2);
    let (r0, r1) = (k.reader(0), k.reader(1));
    // Slot 0: the front end fails; slot 1: it gives a PIN the profile refuses (too short).
    let cmd = k.script(
        "pin",
        &format!("if [ \"$SCUNBLOCK_READER\" = \"{r0}\" ]; then echo {PIN}; exit 3; fi\necho 12"),
    );
    let w = k.unblocking(ZERO_KEY, &cmd, &[]);
    let a = k.stack.insert(0, &blocked());
    let b = k.stack.insert(1, &blocked());
    let sa = w.wait_for("skipped", Some(&r0), 1);
    assert_eq!(sa["reason"], "new_pin_command_failed", "{sa}");
    assert!(sa["message"].as_str().unwrap().contains("status 3"), "{sa}");
    let sb = w.wait_for("skipped", Some(&r1), 1);
    assert_eq!(sb["reason"], "new_pin_invalid", "{sb}");
    for card in [&a, &b] {
        let state = card.state();
        assert_eq!(state["ext_auth_with_data"], 0);
        assert!(!apdus(&state).iter().any(|x| x.starts_with("0084")));
        assert_eq!(state["pin_tries"], 0);
    }
    assert!(w.named("unblock_failed", None).is_empty());
    assert_eq!(w.stop().0, 0);
}

#[test]
fn cm_gives_each_card_its_own_request_in_parallel() {
    let k = Kiosk::new(4);
    const SCID2: &str = "0d8c3a7e-5f43-4a8a-9c55-1f0a3c2b9e11";
    const CARDID2: &str = "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    // A slow authentication response: both cards are in their CM call at once.
    let cm = CmServer::start(&[
        "--smartcard",
        &format!("{SCID2}={CARDID2}"),
        "--delay-ms",
        "1500",
    ]);
    let (r0, r3) = (k.reader(0), k.reader(3));
    let ids = k.script(
        "card-id",
        &format!(
            "if [ \"$SCUNBLOCK_READER\" = \"{r0}\" ]; then echo {DOCS_CARD_ID}; \
             else echo '{{{CARDID2}}}'; fi"
        ),
    );
    let pin = k.script("pin", &format!("echo \"{PIN}\""));
    let w = Watcher::start(
        &k.stack,
        &[
            "--unblock",
            "--cm",
            &cm.url,
            "--allow-http",
            "--cm-auth",
            "none",
            "--approval-poll",
            "0.2",
            "--card-id-command",
            &ids,
            "--new-pin-command",
            &pin,
        ],
        &[],
    );
    let a = k.stack.insert(0, &blocked());
    let b = k.stack.insert(3, &blocked());
    let ok_a = w.wait_for("unblock_succeeded", Some(&r0), 1);
    let ok_b = w.wait_for("unblock_succeeded", Some(&r3), 1);
    let start_a = w.wait_for("unblock_started", Some(&r0), 1);
    let start_b = w.wait_for("unblock_started", Some(&r3), 1);
    assert_eq!(start_a["card_id"], DOCS_CARD_ID);
    assert_eq!(start_b["card_id"], CARDID2);
    assert_eq!(ok_a["cm"]["smartcard_id"], DOCS_SMARTCARD);
    assert_eq!(ok_b["cm"]["smartcard_id"], SCID2);
    assert_ne!(ok_a["cm"]["request_id"], ok_b["cm"]["request_id"]);
    assert_eq!(a.state()["pin"], PIN);
    assert_eq!(b.state()["pin"], PIN);
    // Each request created, answered once and completed.
    assert_eq!(cm.requests_to("create-request").len(), 2);
    assert_eq!(cm.requests_to("authresponse").len(), 2);
    assert_eq!(cm.requests_to("put-request").len(), 2);
    // The two slow CM calls overlapped: each flow started before the other ended.
    assert!(time(&start_b) < time(&ok_a) && time(&start_a) < time(&ok_b));
    assert_eq!(w.stop().0, 0);
}

#[test]
fn usage_errors_exit_2_before_watching() {
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(dir.path(), "admin.key", ZERO_KEY.as_bytes())
        .display()
        .to_string();
    let cases: [&[&str]; 4] = [
        &["--unblock", "--admin-key-file", &key],
        &["--unblock", "--new-pin-command", "echo 1234"],
        &["--admin-key-file", &key],
        &["--unblock", "--manual", "--new-pin-command", "echo 1234"],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_scunblock"))
            .arg("watch")
            .args(args)
            .env("PCSCLITE_CSOCK_NAME", dir.path().join("no-pcscd.comm"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
