//! The virtual PC/SC stack for integration tests: a private pcscd + vpcd (own mount and
//! network namespace, own socket) and `scunblock-vcard` cards, all through `scripts/vstack`.
//!
//! Needs root (namespaces) and the packages of `scripts/vstack install`, and the testkit
//! binaries: `cargo build --workspace` (or `cargo test --workspace`). Every `VStack` is
//! independent, so tests run in parallel. Clients reach it with
//! `PCSCLITE_CSOCK_NAME=<stack.csock()>` in their environment. That is per process (and
//! libpcsclite may keep the first value it read), so talk to a stack from a child process
//! (the `scunblock` binary), not from the multi-threaded test process itself.
//!
//! Environment: `SCUNBLOCK_VCARD` (card binary; the harness sets it for the script),
//! `SCUNBLOCK_VSTACK` (the script), `VSTACK_KEEP=1` (keep the stack directory and its logs),
//! `VSTACK_DEBUG=1` (pcscd --debug into dir/pcscd.log). A failing test prints the tails of
//! the card and pcscd logs.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running pcscd with `readers` vpcd slots; stopped (every card too) on drop.
pub struct VStack {
    dir: tempfile::TempDir,
    readers: usize,
}

/// A card process in a slot. Dropping it leaves the card inserted; `VStack`'s drop ends it.
pub struct Card {
    slot: usize,
    pid: u32,
    state_path: PathBuf,
    log_path: PathBuf,
    stack_dir: PathBuf,
}

impl VStack {
    /// Starts a stack with `readers` slots (even: vpcd gives 2 per driver copy).
    pub fn start(readers: usize) -> VStack {
        VStack::start_with(readers, None)
    }

    /// Like [`VStack::start`], with slot pair 0's FRIENDLYNAME set to `name` (any text but
    /// '"' and line ends): pcscd names its readers "NAME 00 00" and "NAME 00 01". For the
    /// tests of a reader whose USB descriptor strings carry escape sequences.
    pub fn start_named(readers: usize, name: &str) -> VStack {
        VStack::start_with(readers, Some(name))
    }

    fn start_with(readers: usize, name: Option<&str>) -> VStack {
        assert!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() } == 0,
            "the virtual PC/SC stack needs root (private mount + network namespaces); \
             run the tests as root with the packages of `scripts/vstack install`"
        );
        let dir = tempfile::Builder::new()
            .prefix("vstack-")
            .tempdir()
            .expect("create a temporary directory for the stack");
        let stack = VStack { dir, readers };
        let readers_arg = readers.to_string();
        let mut args = vec![
            OsStr::new("start"),
            stack.dir().as_os_str(),
            OsStr::new("--readers"),
            OsStr::new(&readers_arg),
        ];
        if std::env::var_os("VSTACK_DEBUG").is_some_and(|v| v == "1") {
            args.push(OsStr::new("--debug"));
        }
        let pair_name = name.map(|n| format!("0={n}"));
        if let Some(p) = &pair_name {
            args.push(OsStr::new("--pair-name"));
            args.push(OsStr::new(p));
        }
        stack.vstack(&args);
        stack
    }

    /// Inserts a NEW card into `slot` (0-based): `args` are scunblock-vcard options; its
    /// state file is `dir/card-<slot>.json` (fresh) unless `args` has `--state`. Returns once
    /// pcscd has powered the card and read its ATR.
    pub fn insert(&self, slot: usize, args: &[&str]) -> Card {
        self.insert_card(slot, false, true, args)
    }

    /// Like [`VStack::insert`], but returns as soon as the card process runs: for a card
    /// that a watcher may finish with (or that may vanish) before readiness is checked.
    pub fn insert_no_wait(&self, slot: usize, args: &[&str]) -> Card {
        self.insert_card(slot, false, false, args)
    }

    /// Puts the card last in `slot` back: counters, PIN and key come from its state file.
    pub fn reinsert(&self, slot: usize, args: &[&str]) -> Card {
        self.insert_card(slot, true, true, args)
    }

    fn insert_card(&self, slot: usize, reinsert: bool, wait: bool, args: &[&str]) -> Card {
        assert!(
            slot < self.readers,
            "slot {slot} of a {}-slot stack",
            self.readers
        );
        let slot_arg = slot.to_string();
        let mut cmd: Vec<&OsStr> = vec![
            OsStr::new("card"),
            self.dir().as_os_str(),
            OsStr::new("--slot"),
            OsStr::new(&slot_arg),
        ];
        if reinsert {
            cmd.push(OsStr::new("--reinsert"));
        }
        if !wait {
            cmd.push(OsStr::new("--no-wait"));
        }
        cmd.push(OsStr::new("--"));
        cmd.extend(args.iter().map(OsStr::new));
        let out = self.vstack(&cmd);
        let pid = out
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("vstack card printed no pid: {out:?}"));
        let state_path = std::fs::read_to_string(self.dir().join(format!("card-{slot}.state")))
            .map(|s| PathBuf::from(s.trim_end()))
            .unwrap_or_else(|_| self.dir().join(format!("card-{slot}.json")));
        Card {
            slot,
            pid,
            state_path,
            log_path: self.dir().join(format!("card-{slot}.log")),
            stack_dir: self.dir().to_path_buf(),
        }
    }

    /// The `PCSCLITE_CSOCK_NAME` value for clients of this stack.
    pub fn csock(&self) -> PathBuf {
        self.dir().join("run/pcscd.comm")
    }

    /// pcscd's name of the reader of `slot`: "Virtual PCD 00 00", "Virtual PCD 00 01",
    /// then "Virtual PCD B 00 00", "Virtual PCD B 00 01" (slots 2, 3), "Virtual PCD C ..."
    pub fn reader_name(&self, slot: usize) -> String {
        let slots = std::fs::read_to_string(self.dir().join("slots")).expect("read dir/slots");
        slots
            .lines()
            .find_map(|line| {
                let mut fields = line.splitn(3, ' ');
                (fields.next()? == slot.to_string())
                    .then(|| fields.nth(1).map(str::to_string))
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no slot {slot} in a {}-slot stack", self.readers))
    }

    /// The vpcd TCP port of `slot` inside the stack's network namespace.
    pub fn port(&self, slot: usize) -> u16 {
        35963 + u16::try_from(slot).expect("slot number")
    }

    pub fn readers(&self) -> usize {
        self.readers
    }

    /// Stops pcscd only; cards started with `--reconnect` keep retrying.
    pub fn kill_pcscd(&self) {
        self.vstack(&[OsStr::new("kill-pcscd"), self.dir().as_os_str()]);
    }

    /// Starts pcscd again in the same directory and network namespace (running
    /// `--reconnect` cards come back within ~100 ms plus a pcscd poll).
    pub fn restart_pcscd(&self) {
        self.vstack(&[OsStr::new("restart-pcscd"), self.dir().as_os_str()]);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// pcscd's log (errors only, everything with VSTACK_DEBUG=1).
    pub fn pcscd_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("pcscd.log")).unwrap_or_default()
    }

    fn vstack(&self, args: &[&OsStr]) -> String {
        run_vstack(args)
    }
}

impl Drop for VStack {
    fn drop(&mut self) {
        let out = Command::new(vstack_script())
            .arg("stop")
            .arg(self.dir())
            .stdin(Stdio::null())
            .output();
        if let Ok(out) = &out {
            if !out.status.success() {
                eprintln!("vstack stop: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        if std::thread::panicking() {
            // The test failed: show what the card and pcscd said.
            let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir())
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
            logs.sort();
            for log in logs {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!(
                    "--- {} (last {} lines)\n{}",
                    log.display(),
                    tail.len(),
                    tail.join("\n")
                );
            }
        }
        if std::env::var_os("VSTACK_KEEP").is_some_and(|v| v == "1") {
            self.dir.disable_cleanup(true);
            eprintln!("VSTACK_KEEP=1: kept {}", self.dir().display());
        }
    }
}

impl Card {
    pub fn slot(&self) -> usize {
        self.slot
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// The card's state file (see tests/testkit/src/bin/vcard.rs): counters, PIN, the APDU
    /// and response logs ("apdus", "responses": lowercase hex), "ext_auth_with_data", ...
    pub fn state(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let err = match std::fs::read_to_string(&self.state_path) {
                Ok(text) => match serde_json::from_str(&text) {
                    Ok(v) => return v,
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                panic!("card state {}: {err}", self.state_path.display());
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `pred(state)` holds and returns that state; panics after `timeout`.
    pub fn wait_state(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.state();
            if pred(&state) {
                return state;
            }
            if Instant::now() >= deadline {
                panic!(
                    "card in slot {}: state condition not met after {timeout:?}: {state:#}\nlog:\n{}",
                    self.slot,
                    self.log()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Removes the card (ends its process); returns once pcscd has seen the slot empty.
    pub fn remove(&self) {
        run_vstack(&[
            OsStr::new("remove"),
            self.stack_dir.as_os_str(),
            OsStr::new("--slot"),
            OsStr::new(&self.slot.to_string()),
        ]);
    }

    /// Whether the card process still runs (a zombie counts as ended).
    pub fn is_alive(&self) -> bool {
        process_alive(self.pid)
    }

    /// Waits until the card process ends (e.g. after a --vanish-* fault); panics after
    /// `timeout`.
    pub fn wait_exit(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.is_alive() {
            if Instant::now() >= deadline {
                panic!(
                    "card in slot {} (pid {}) still runs after {timeout:?}\nlog:\n{}",
                    self.slot,
                    self.pid,
                    self.log()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// The card's stderr: connection events, control bytes, "> APDU < RESPONSE" lines.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// Alive and not a zombie (`kill -0` says yes to zombies; /proc/PID/stat does not).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

fn run_vstack(args: &[&OsStr]) -> String {
    let script = vstack_script();
    let out = Command::new(&script)
        .args(args)
        .env("SCUNBLOCK_VCARD", vcard_bin())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if !out.status.success() {
        panic!(
            "{} {} failed ({}):\n{}{}\n(the virtual stack needs root and the packages of \
             `scripts/vstack install`)",
            script.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn vstack_script() -> PathBuf {
    match std::env::var_os("SCUNBLOCK_VSTACK") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/vstack"),
    }
}

/// A binary built next to `scunblock` (target/<profile>/NAME).
fn sibling_bin(name: &str, env_override: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_override) {
        return PathBuf::from(p);
    }
    let main = Path::new(env!("CARGO_BIN_EXE_scunblock"));
    let bin = main
        .parent()
        .expect("CARGO_BIN_EXE_scunblock has a directory")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run cargo build --workspace first (or cargo test --workspace)",
        bin.display()
    );
    bin
}

/// The virtual card (`$SCUNBLOCK_VCARD`, else next to the scunblock binary).
pub fn vcard_bin() -> PathBuf {
    sibling_bin("scunblock-vcard", "SCUNBLOCK_VCARD")
}

/// The CM test server (`$SCUNBLOCK_CMSERVER`, else next to the scunblock binary).
pub fn cmserver_bin() -> PathBuf {
    sibling_bin("scunblock-cmserver", "SCUNBLOCK_CMSERVER")
}

/// The tests' profiles directory (tests/profiles: the virtual card's ATR
/// claimed for `iso`), which every run of the binary gets as
/// SCUNBLOCK_PROFILES_DIR unless a test sets its own.
pub const TEST_PROFILES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/profiles");

/// A Command for the scunblock binary under test.
pub fn scunblock() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scunblock"));
    cmd.env("SCUNBLOCK_PROFILES_DIR", TEST_PROFILES_DIR)
        .env_remove("SCUNBLOCK_ALLOW_UNKNOWN_TRIES");
    cmd
}
