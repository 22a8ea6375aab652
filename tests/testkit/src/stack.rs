//! The virtual PC/SC stack: a private pcscd + vpcd (own mount and network namespace, own
//! socket) and `scunblock-vcard` cards, all through `scripts/vstack`.
//!
//! Needs root (namespaces) and the packages of `scripts/vstack install`, and the test kit's
//! binaries: `cargo build --workspace` (or `cargo test --workspace`). Every `VStack` is
//! independent, so tests run in parallel. Clients reach it with
//! `PCSCLITE_CSOCK_NAME=<stack.csock()>` in their environment. That is per process (and
//! libpcsclite may keep the first value it read), so talk to a stack from a child process
//! (the `scunblock` binary), not from the multi-threaded test process itself.
//!
//! Environment: `SCUNBLOCK_VCARD` (card binary; passed on to the script),
//! `SCUNBLOCK_VSTACK` (the script), `VSTACK_KEEP=1` (keep a temporary stack directory and
//! its logs), `VSTACK_DEBUG=1` (pcscd --debug into dir/pcscd.log). A failing test prints
//! the tails of the card and pcscd logs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde_json::Value;

use crate::or_panic;

/// How to start a stack: the script, the card binary, where it lives.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// `scripts/vstack`.
    pub script: PathBuf,
    /// `scunblock-vcard`, passed to the script as `SCUNBLOCK_VCARD`.
    pub vcard: PathBuf,
    /// The stack directory (created by the script); `None`: a fresh temporary directory,
    /// removed on drop unless `VSTACK_KEEP=1`.
    pub dir: Option<PathBuf>,
    /// FRIENDLYNAME of slot pair 0 (see [`VStack::start_named`]).
    pub pair_name: Option<String>,
    /// pcscd --debug into dir/pcscd.log.
    pub debug: bool,
}

impl StackConfig {
    /// The tests' configuration: the script and card from [`crate::bins`], a temporary
    /// directory, `VSTACK_DEBUG` from the environment.
    pub fn from_env() -> anyhow::Result<StackConfig> {
        Ok(StackConfig {
            script: crate::bins::vstack_script(),
            vcard: crate::bins::locate("scunblock-vcard", "SCUNBLOCK_VCARD")?,
            dir: None,
            pair_name: None,
            debug: std::env::var_os("VSTACK_DEBUG").is_some_and(|v| v == "1"),
        })
    }
}

enum StackDir {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

/// A running pcscd with `readers` vpcd slots; stopped (every card too) on drop.
pub struct VStack {
    dir: StackDir,
    readers: usize,
    script: PathBuf,
    vcard: PathBuf,
}

/// A card process in a slot. Dropping it leaves the card inserted; `VStack`'s drop ends it.
pub struct Card {
    slot: usize,
    pid: u32,
    state_path: PathBuf,
    log_path: PathBuf,
    script: PathBuf,
    vcard: PathBuf,
    stack_dir: PathBuf,
}

/// How [`VStack::try_insert`] puts a card in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// A new card; returns once pcscd has powered it and read its ATR.
    New,
    /// A new card; returns as soon as its process runs.
    NoWait,
    /// The card last in the slot, from its state file; waits like `New`.
    Reinsert,
}

impl VStack {
    /// Starts a stack with `readers` slots (even: vpcd gives 2 per driver copy).
    pub fn start(readers: usize) -> VStack {
        or_panic(StackConfig::from_env().and_then(|c| VStack::try_start(readers, c)))
    }

    /// Like [`VStack::start`], with slot pair 0's FRIENDLYNAME set to `name` (any text but
    /// '"' and line ends): pcscd names its readers "NAME 00 00" and "NAME 00 01". For the
    /// tests of a reader whose USB descriptor strings carry escape sequences.
    pub fn start_named(readers: usize, name: &str) -> VStack {
        or_panic(StackConfig::from_env().and_then(|mut c| {
            c.pair_name = Some(name.to_string());
            VStack::try_start(readers, c)
        }))
    }

    /// Starts a stack as `config` says.
    pub fn try_start(readers: usize, config: StackConfig) -> anyhow::Result<VStack> {
        ensure!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() } == 0,
            "the virtual PC/SC stack needs root (private mount + network namespaces); \
             run as root with the packages of `scripts/vstack install`"
        );
        let dir = match config.dir {
            Some(d) => StackDir::Given(d),
            None => StackDir::Temp(
                tempfile::Builder::new()
                    .prefix("vstack-")
                    .tempdir()
                    .context("create a temporary directory for the stack")?,
            ),
        };
        let stack = VStack {
            dir,
            readers,
            script: config.script,
            vcard: config.vcard,
        };
        let readers_arg = readers.to_string();
        let mut args = vec![
            OsStr::new("start"),
            stack.dir().as_os_str(),
            OsStr::new("--readers"),
            OsStr::new(&readers_arg),
        ];
        if config.debug {
            args.push(OsStr::new("--debug"));
        }
        let pair_name = config.pair_name.map(|n| format!("0={n}"));
        if let Some(p) = &pair_name {
            args.push(OsStr::new("--pair-name"));
            args.push(OsStr::new(p));
        }
        stack.try_run(&args)?;
        Ok(stack)
    }

    /// Inserts a NEW card into `slot` (0-based): `args` are scunblock-vcard options; its
    /// state file is `dir/card-<slot>.json` (fresh) unless `args` has `--state`. Returns once
    /// pcscd has powered the card and read its ATR.
    pub fn insert(&self, slot: usize, args: &[&str]) -> Card {
        or_panic(self.try_insert(slot, Insert::New, args))
    }

    /// Like [`VStack::insert`], but returns as soon as the card process runs: for a card
    /// that a watcher may finish with (or that may vanish) before readiness is checked.
    pub fn insert_no_wait(&self, slot: usize, args: &[&str]) -> Card {
        or_panic(self.try_insert(slot, Insert::NoWait, args))
    }

    /// Puts the card last in `slot` back: counters, PIN and key come from its state file.
    pub fn reinsert(&self, slot: usize, args: &[&str]) -> Card {
        or_panic(self.try_insert(slot, Insert::Reinsert, args))
    }

    /// Puts a card into `slot` (see [`Insert`]); `args` are scunblock-vcard options.
    pub fn try_insert(&self, slot: usize, how: Insert, args: &[&str]) -> anyhow::Result<Card> {
        ensure!(
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
        match how {
            Insert::New => {}
            Insert::NoWait => cmd.push(OsStr::new("--no-wait")),
            Insert::Reinsert => cmd.push(OsStr::new("--reinsert")),
        }
        cmd.push(OsStr::new("--"));
        cmd.extend(args.iter().map(OsStr::new));
        let out = self.try_run(&cmd)?;
        let pid = out
            .trim()
            .parse()
            .with_context(|| format!("vstack card printed no pid: {out:?}"))?;
        Ok(Card {
            slot,
            pid,
            state_path: self.state_path(slot),
            log_path: self.dir().join(format!("card-{slot}.log")),
            script: self.script.clone(),
            vcard: self.vcard.clone(),
            stack_dir: self.dir().to_path_buf(),
        })
    }

    /// The state file of the card last put into `slot`: the one its `--state` named
    /// (recorded by the script in `card-<slot>.state`), else `card-<slot>.json`.
    fn state_path(&self, slot: usize) -> PathBuf {
        std::fs::read_to_string(self.dir().join(format!("card-{slot}.state")))
            .map(|s| PathBuf::from(s.trim_end()))
            .unwrap_or_else(|_| self.dir().join(format!("card-{slot}.json")))
    }

    /// The state of the card last put into `slot`, read once (see [`Card::state`]).
    pub fn try_card_state(&self, slot: usize) -> anyhow::Result<Value> {
        read_state(&self.state_path(slot))
    }

    /// The `PCSCLITE_CSOCK_NAME` value for clients of this stack.
    pub fn csock(&self) -> PathBuf {
        self.dir().join("run/pcscd.comm")
    }

    /// pcscd's name of the reader of `slot`: "Virtual PCD 00 00", "Virtual PCD 00 01",
    /// then "Virtual PCD B 00 00", "Virtual PCD B 00 01" (slots 2, 3), "Virtual PCD C ..."
    pub fn reader_name(&self, slot: usize) -> String {
        or_panic(self.try_reader_name(slot))
    }

    /// [`VStack::reader_name`], as a `Result`.
    pub fn try_reader_name(&self, slot: usize) -> anyhow::Result<String> {
        let path = self.dir().join("slots");
        let slots =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        slots
            .lines()
            .find_map(|line| {
                let mut fields = line.splitn(3, ' ');
                (fields.next()? == slot.to_string())
                    .then(|| fields.nth(1).map(str::to_string))
                    .flatten()
            })
            .with_context(|| format!("no slot {slot} in a {}-slot stack", self.readers))
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
        or_panic(self.try_run(&[OsStr::new("kill-pcscd"), self.dir().as_os_str()]));
    }

    /// Starts pcscd again in the same directory and network namespace (running
    /// `--reconnect` cards come back within ~100 ms plus a pcscd poll).
    pub fn restart_pcscd(&self) {
        or_panic(self.try_run(&[OsStr::new("restart-pcscd"), self.dir().as_os_str()]));
    }

    pub fn dir(&self) -> &Path {
        match &self.dir {
            StackDir::Temp(t) => t.path(),
            StackDir::Given(p) => p,
        }
    }

    /// pcscd's log (errors only, everything with VSTACK_DEBUG=1).
    pub fn pcscd_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("pcscd.log")).unwrap_or_default()
    }

    /// A Command for the stack's script, with the card binary in its environment: for
    /// subcommands the methods do not cover (or that must not wait).
    pub fn command(&self) -> Command {
        script_command(&self.script, &self.vcard)
    }

    /// Runs the script with `args`; its stdout, or an error with its output.
    pub fn try_run(&self, args: &[&OsStr]) -> anyhow::Result<String> {
        run_script(&self.script, &self.vcard, args)
    }
}

impl Drop for VStack {
    fn drop(&mut self) {
        let out = self
            .command()
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
            print_log_tails(self.dir());
        }
        if let StackDir::Temp(t) = &mut self.dir {
            if std::env::var_os("VSTACK_KEEP").is_some_and(|v| v == "1") {
                t.disable_cleanup(true);
                eprintln!("VSTACK_KEEP=1: kept {}", t.path().display());
            }
        }
    }
}

/// The last 40 lines of every `*.log` in `dir`, on stderr.
fn print_log_tails(dir: &Path) {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
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
    /// Retried for 2 s: the card rewrites it while it runs.
    pub fn state(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match read_state(&self.state_path) {
                Ok(v) => return v,
                Err(e) if Instant::now() >= deadline => panic!("{e:#}"),
                Err(_) => sleep(Duration::from_millis(20)),
            }
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
        or_panic(run_script(
            &self.script,
            &self.vcard,
            &[
                OsStr::new("remove"),
                self.stack_dir.as_os_str(),
                OsStr::new("--slot"),
                OsStr::new(&self.slot.to_string()),
            ],
        ));
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

fn read_state(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("card state {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("card state {}", path.display()))
}

/// Alive and not a zombie (`kill -0` says yes to zombies; /proc/PID/stat does not).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

fn script_command(script: &Path, vcard: &Path) -> Command {
    let mut cmd = Command::new(script);
    cmd.env("SCUNBLOCK_VCARD", vcard);
    cmd
}

fn run_script(script: &Path, vcard: &Path, args: &[&OsStr]) -> anyhow::Result<String> {
    let out = script_command(script, vcard)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!(
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
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
