//! scunblock-bench: the timing driver behind `scripts/bench` (issue 7).
//!
//! On the virtual stack (`scripts/vstack`, our card with a fixed challenge, TCP_NODELAY and
//! TCP_QUICKACK on its socket) it measures, in one run:
//!
//! 1. the floor: the agent's 6 APDUs from a minimal `pcsc` loop in this process, per
//!    iteration context establish, connect, one transaction, the APDUs, disconnect with
//!    reset (as the agent does after an admin authentication) and release; the 6 APDUs
//!    alone; the same iteration as a whole process (`--floor-once`); and `true`;
//! 2. the C peer: `opensc-tool -c default -r 0 -s ...` sending the same 6 APDUs, a whole
//!    process (with OpenSC's default disconnect, and with `disconnect_action = reset`: the
//!    same card work as the agent);
//! 3. the agent: `scunblock unblock --admin-key-file`, a whole process;
//! 4. the agent via CM (`scunblock-cmserver` on loopback, http and https): with
//!    `--request-id/--smartcard-id`, and the full workflow; HTTP calls and TCP connections
//!    per run from the server's request log (`conn`);
//! 5. the kiosk: `scunblock watch --unblock --json` over 4 readers with 1, 2 or 4 cards,
//!    seen at once (cards in before a watcher starts: its first `card_inserted` to its last
//!    `unblock_succeeded`) and live (cards inserted while it watches: the last insertion, as
//!    a `--monitor` process sees it, to the last `unblock_succeeded`);
//! 6. cold start (`scunblock --version`), `readers`, `info`: wall, CPU, peak RSS; the
//!    binary size; and (full mode, valgrind present) callgrind instruction counts;
//! 7. GIDS (issue 12): `scunblock unblock` against OpenSC's `gids-tool --unblock` on the same
//!    virtual GIDS card, on a stack of its own (`gids.rs`).
//!
//! The commands of 1-4, 6 and 7 run round-robin (A B C A B C ...), a warm-up round first. Whole
//! processes are timed from spawn to `wait4`, which also gives their user+sys CPU and peak
//! RSS. Medians and min–max are printed; nothing is asserted about times.
//!
//! Every card exchange is checked (status words, exit codes, the card's admin tries at the
//! end), so a figure never comes from a run that did something else. Needs root (the
//! stacks use namespaces) and `cargo build --release --workspace --bins`; `scripts/bench`
//! installs and builds what is missing, then runs this.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pcsc::{Context, Disposition, Protocols, Scope, ShareMode};
use serde_json::Value;

#[path = "bench/gids.rs"]
mod gids;

/// The virtual card's fixed challenge and the response under the all-zero 24-byte key (the
/// CM docs' example vector: the CM test server's docs card has the same key).
const CHALLENGE: &str = "D61143F9CCFFD2CA";
const RESPONSE: &str = "17466E766E303CB6";
const NEW_PIN: &str = "24681357";
const ZERO_KEY: &str = "000000000000000000000000000000000000000000000000";
const DOCS_SMARTCARD: &str = "17cf063d-e337-4aa9-a822-346554ddd3c9";
const DOCS_CARD_ID: &str = "bc88f13f-83ba-4037-8262-46eba1291c6e";

/// The agent's exchange for an unblock, as `scunblock --trace unblock` shows it (iso
/// profile): admin tries, PIN tries, GET CHALLENGE, EXTERNAL AUTHENTICATE, RESET RETRY
/// COUNTER (new PIN "24681357"), PIN tries. With the expected answers of a card with 5 admin
/// tries and 3 PIN tries.
fn exchange() -> Vec<(String, String)> {
    let pin_hex = hex::encode_upper(NEW_PIN);
    vec![
        ("00820000".into(), "63C5".into()),
        ("00200080".into(), "63C3".into()),
        ("0084000008".into(), format!("{CHALLENGE}9000")),
        (format!("0082000008{RESPONSE}"), "9000".into()),
        (format!("002C028008{pin_hex}"), "9000".into()),
        ("00200080".into(), "63C3".into()),
    ]
}

const USAGE: &str = "\
usage: scunblock-bench --work DIR [--quick] [--runs N] [--warmup N] [--kiosk-runs N]
                       [--doc FILE] [--raw FILE] [--no-kiosk] [--no-callgrind]
                       [--baseline SCUNBLOCK]

  --work DIR        scratch directory (the stacks, logs, keys); should be empty
  --quick           15 runs each after 2 warm-up, 1 kiosk round, no callgrind (< 1 min)
  --runs N          measured runs per command (default 101; at least 15)
  --warmup N        warm-up rounds, not counted (default 5)
  --kiosk-runs N    measured kiosk rounds per card count (default 15)
  --doc FILE        write the results into FILE between the bench markers (created if
                    missing); without it the markdown goes to stdout only
  --raw FILE        write every sample as JSON
  --no-kiosk        skip the kiosk rows
  --no-callgrind    skip the callgrind instruction counts
  --baseline BIN    also measure this scunblock binary (unblock, info, --version), in the
                    same round-robin: before/after figures for a change
Environment: SCUNBLOCK_BIN_DIR (default: this binary's directory: scunblock,
scunblock-vcard, scunblock-cmserver), SCUNBLOCK_REPO (default: found from the binary's path;
for scripts/vstack and scripts/testca), OPENSC_TOOL (default opensc-tool), GIDS_TOOL (default
gids-tool).";

struct Opts {
    work: PathBuf,
    quick: bool,
    runs: usize,
    warmup: usize,
    kiosk_runs: usize,
    doc: Option<PathBuf>,
    raw: Option<PathBuf>,
    kiosk: bool,
    callgrind: bool,
    /// Another scunblock binary (e.g. built before a change), measured alongside.
    baseline: Option<PathBuf>,
    bin: PathBuf,
    repo: PathBuf,
    opensc_tool: PathBuf,
}

/// Long-running helpers (the watcher, the monitor) to end if the bench dies.
static HELPERS: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

fn helper_started(child: &Child) {
    if let Ok(mut h) = HELPERS.lock() {
        h.push(child.id() as libc::pid_t);
    }
}

fn helper_ended(child: &Child) {
    if let Ok(mut h) = HELPERS.lock() {
        h.retain(|&p| p != child.id() as libc::pid_t);
    }
}

fn die(msg: impl AsRef<str>) -> ! {
    eprintln!("scunblock-bench: {}", msg.as_ref());
    if let Ok(h) = HELPERS.lock() {
        for &pid in h.iter() {
            // SAFETY: signalling a child of ours that has not been reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    std::process::exit(1);
}

fn parse_opts() -> Opts {
    let mut args = std::env::args_os().skip(1);
    let mut work = None;
    let (mut quick, mut runs, mut warmup, mut kiosk_runs) = (false, None, None, None);
    let (mut doc, mut raw, mut kiosk, mut callgrind) = (None, None, true, true);
    let mut baseline = None;
    let num = |v: Option<OsString>, name: &str| -> usize {
        v.and_then(|v| v.to_str().and_then(|s| s.parse().ok()))
            .unwrap_or_else(|| die(format!("{name} needs a number\n{USAGE}")))
    };
    while let Some(a) = args.next() {
        match a.to_str().unwrap_or("") {
            "--work" => work = args.next().map(PathBuf::from),
            "--quick" => quick = true,
            "--runs" => runs = Some(num(args.next(), "--runs")),
            "--warmup" => warmup = Some(num(args.next(), "--warmup")),
            "--kiosk-runs" => kiosk_runs = Some(num(args.next(), "--kiosk-runs")),
            "--doc" => doc = args.next().map(PathBuf::from),
            "--raw" => raw = args.next().map(PathBuf::from),
            "--no-kiosk" => kiosk = false,
            "--no-callgrind" => callgrind = false,
            "--baseline" => baseline = args.next().map(PathBuf::from),
            "--monitor" => monitor(),
            "--floor-once" => {
                // One floor iteration as a whole process (the "floor as a process" row).
                let reader = args.next().unwrap_or_else(|| die("--floor-once READER"));
                let floor = Floor::new(reader.to_str().unwrap_or_else(|| die("reader name")));
                floor.run().unwrap_or_else(|e| die(e));
                std::process::exit(0);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => die(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let work = work.unwrap_or_else(|| die(format!("--work DIR is required\n{USAGE}")));
    let runs = runs.unwrap_or(if quick { 15 } else { 101 });
    if runs < 15 {
        die("--runs must be at least 15");
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| die(format!("current_exe: {e}")));
    let bin = std::env::var_os("SCUNBLOCK_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe.parent().expect("the binary has a directory").into());
    let repo = std::env::var_os("SCUNBLOCK_REPO")
        .map(PathBuf::from)
        .or_else(|| {
            exe.ancestors()
                .find(|d| d.join("scripts/vstack").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| die("cannot find the repository (scripts/vstack): set SCUNBLOCK_REPO"));
    Opts {
        work,
        quick,
        runs,
        warmup: warmup.unwrap_or(if quick { 2 } else { 5 }),
        kiosk_runs: kiosk_runs.unwrap_or(if quick { 1 } else { 15 }),
        doc,
        raw,
        kiosk,
        callgrind: callgrind && !quick,
        baseline,
        bin,
        repo,
        opensc_tool: std::env::var_os("OPENSC_TOOL")
            .map(PathBuf::from)
            .unwrap_or_else(|| "opensc-tool".into()),
    }
}

// --- statistics -------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(xs: &[f64]) -> Option<Stat> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stat {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// `12.34 (11.90–15.02)` with `prec` decimals.
fn fmt_stat(s: Option<Stat>, prec: usize) -> String {
    match s {
        Some(s) => format!("{:.p$} ({:.p$}–{:.p$})", s.median, s.min, s.max, p = prec),
        None => "–".into(),
    }
}

// --- processes --------------------------------------------------------------------------

/// One measured process run.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    wall_ms: f64,
    cpu_ms: f64,
    rss_kib: f64,
    /// The floor only: the 6 APDUs alone.
    apdu_ms: f64,
}

#[derive(Clone, Debug)]
struct Proc {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Proc {
    fn new(program: impl Into<PathBuf>, args: &[&dyn AsRef<OsStr>]) -> Proc {
        Proc {
            program: program.into(),
            args: args.iter().map(|a| a.as_ref().to_os_string()).collect(),
            env: Vec::new(),
        }
    }

    fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Proc {
        self.env.push((k.into(), v.as_ref().to_os_string()));
        self
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).env_remove("SCUNBLOCK_READER");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Spawn, wait with `wait4`: wall time, the child's user+sys CPU and peak RSS. Its
    /// stdout goes to `out` (or /dev/null), stderr to `err`.
    fn measure(&self, out: Option<&Path>, err: &Path) -> Result<(Sample, ExitStatus), String> {
        let stdout = match out {
            Some(p) => Stdio::from(File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
            None => Stdio::null(),
        };
        let stderr = File::create(err).map_err(|e| format!("{}: {e}", err.display()))?;
        let mut cmd = self.command();
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        let (status, ru) = wait4(&child)?;
        let wall = started.elapsed();
        let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
        Ok((
            Sample {
                wall_ms: wall.as_secs_f64() * 1000.0,
                cpu_ms: tv(ru.ru_utime) + tv(ru.ru_stime),
                rss_kib: ru.ru_maxrss as f64,
                apdu_ms: 0.0,
            },
            status,
        ))
    }

    /// `measure`, and fail with the command's stderr unless it exited 0.
    fn measure_ok(&self, out: Option<&Path>, err: &Path) -> Result<Sample, String> {
        let (s, status) = self.measure(out, err)?;
        if !status.success() {
            return Err(format!(
                "{} failed ({status}); stderr:\n{}",
                self.display(),
                fs::read_to_string(err).unwrap_or_default()
            ));
        }
        Ok(s)
    }
}

fn wait4(child: &Child) -> Result<(ExitStatus, libc::rusage), String> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data; zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own unwaited child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            return Ok((ExitStatus::from_raw(status), ru));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {e}"));
        }
    }
}

/// Run a helper (vstack, testca ...) to completion; its stdout, or die with its stderr.
fn run_helper(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| die(format!("cannot run {cmd:?}: {e}")));
    if !out.status.success() {
        die(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn self_cpu_ms() -> f64 {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// --- the virtual stack ------------------------------------------------------------------

/// A `scripts/vstack` stack; stopped on drop (scripts/bench also stops it on exit).
struct Stack {
    repo: PathBuf,
    dir: PathBuf,
}

impl Stack {
    fn start(repo: &Path, dir: PathBuf, readers: usize) -> Stack {
        let s = Stack {
            repo: repo.to_path_buf(),
            dir,
        };
        s.vstack(&[
            "start".as_ref(),
            s.dir.as_os_str(),
            "--readers".as_ref(),
            readers.to_string().as_ref(),
        ]);
        s
    }

    fn vstack(&self, args: &[&OsStr]) -> String {
        run_helper(Command::new(self.repo.join("scripts/vstack")).args(args))
    }

    fn vstack_cmd(&self) -> Command {
        Command::new(self.repo.join("scripts/vstack"))
    }

    fn csock(&self) -> PathBuf {
        self.dir.join("run/pcscd.comm")
    }

    /// Insert a new card into `slot` and wait until pcscd has read its ATR.
    fn insert(&self, slot: usize, card_args: &[&str]) {
        let mut args: Vec<&OsStr> = vec!["card".as_ref(), self.dir.as_os_str(), "--slot".as_ref()];
        let slot_s = slot.to_string();
        args.push(slot_s.as_ref());
        args.push("--".as_ref());
        args.extend(card_args.iter().map(OsStr::new));
        self.vstack(&args);
    }

    fn reader_name(&self, slot: usize) -> String {
        let slots = fs::read_to_string(self.dir.join("slots")).unwrap_or_default();
        slots
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ' ');
                (f.next()? == slot.to_string()).then(|| f.nth(1).map(str::to_string))?
            })
            .unwrap_or_else(|| die(format!("no slot {slot} in {}", self.dir.display())))
    }

    fn card_state(&self, slot: usize) -> Value {
        let text = fs::read_to_string(self.dir.join(format!("card-{slot}.json")))
            .unwrap_or_else(|e| die(format!("card state of slot {slot}: {e}")));
        serde_json::from_str(&text).unwrap_or_else(|e| die(format!("card state: {e}")))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self
            .vstack_cmd()
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// --- the CM test server -----------------------------------------------------------------

struct CmServer {
    child: Child,
    url: String,
    log: PathBuf,
    /// How far the log has been read.
    offset: u64,
}

impl CmServer {
    fn start(bin: &Path, log: PathBuf, args: &[OsString]) -> CmServer {
        let mut child = Command::new(bin.join("scunblock-cmserver"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--log")
            .arg(&log)
            .arg("--exit-on-stdin-eof")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| die(format!("cannot run scunblock-cmserver: {e}")));
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| die(format!("scunblock-cmserver did not start: {line:?}")))
            .to_string();
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        CmServer {
            child,
            url,
            log,
            offset: 0,
        }
    }

    /// The requests logged since the last call.
    fn new_requests(&mut self) -> Vec<Value> {
        let Ok(mut f) = File::open(&self.log) else {
            return vec![];
        };
        let _ = f.seek(SeekFrom::Start(self.offset));
        let mut text = String::new();
        let _ = f.read_to_string(&mut text);
        // Whole lines only (a line is written before its response is sent).
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        self.offset += whole as u64;
        text[..whole]
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| die(format!("cm log: {e}"))))
            .collect()
    }
}

impl Drop for CmServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Request ids the servers know in advance, one per run of the `--request-id` rows (a
/// request is Completed by the run that uses it).
fn request_ids(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("00000000-0000-4000-8000-{i:012x}"))
        .collect()
}

// --- the measured commands --------------------------------------------------------------

/// What one row of the round-robin runs.
enum Action {
    Floor,
    Proc(Box<Proc>),
}

struct Row {
    key: &'static str,
    label: String,
    action: Action,
    /// Index into the CM servers (for the request log), if it talks to one.
    cm: Option<usize>,
    /// The `--request-id` rows take a fresh request id per run.
    request_ids: Option<Vec<String>>,
    samples: Vec<Sample>,
    /// Per run: (HTTP calls, distinct TCP connections).
    http: Vec<(usize, usize)>,
}

impl Row {
    fn new(key: &'static str, label: impl Into<String>, action: Action) -> Row {
        Row {
            key,
            label: label.into(),
            action,
            cm: None,
            request_ids: None,
            samples: vec![],
            http: vec![],
        }
    }

    fn wall(&self) -> Option<Stat> {
        stat(&self.samples.iter().map(|s| s.wall_ms).collect::<Vec<_>>())
    }
    fn cpu(&self) -> Option<Stat> {
        stat(&self.samples.iter().map(|s| s.cpu_ms).collect::<Vec<_>>())
    }
    fn rss_mib(&self) -> Option<Stat> {
        stat(
            &self
                .samples
                .iter()
                .map(|s| s.rss_kib / 1024.0)
                .collect::<Vec<_>>(),
        )
    }
    fn apdu(&self) -> Option<Stat> {
        stat(&self.samples.iter().map(|s| s.apdu_ms).collect::<Vec<_>>())
    }
}

/// The floor: one unblock's APDUs from this process, with the session around them.
struct Floor {
    reader: CString,
    apdus: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Floor {
    fn new(reader: &str) -> Floor {
        Floor {
            reader: CString::new(reader).unwrap_or_else(|_| die("reader name with NUL")),
            apdus: exchange()
                .into_iter()
                .map(|(c, r)| (hex::decode(c).expect("hex"), hex::decode(r).expect("hex")))
                .collect(),
        }
    }

    fn run(&self) -> Result<Sample, String> {
        let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE];
        let cpu0 = self_cpu_ms();
        let t0 = Instant::now();
        let ctx = Context::establish(Scope::User).map_err(|e| format!("establish: {e}"))?;
        let mut card = ctx
            .connect(&self.reader, ShareMode::Shared, Protocols::ANY)
            .map_err(|e| format!("connect: {e}"))?;
        let apdu_time;
        {
            let tx = card
                .transaction()
                .map_err(|e| format!("transaction: {e}"))?;
            let a0 = Instant::now();
            for (cmd, want) in &self.apdus {
                let got = tx
                    .transmit(cmd, &mut buf)
                    .map_err(|e| format!("transmit: {e}"))?;
                if got != want.as_slice() {
                    return Err(format!(
                        "floor: {} answered {}, expected {}",
                        hex::encode_upper(cmd),
                        hex::encode_upper(got),
                        hex::encode_upper(want)
                    ));
                }
            }
            apdu_time = a0.elapsed();
            tx.end(Disposition::LeaveCard)
                .map_err(|(_, e)| format!("end transaction: {e}"))?;
        }
        card.disconnect(Disposition::ResetCard)
            .map_err(|(_, e)| format!("disconnect: {e}"))?;
        ctx.release().map_err(|(_, e)| format!("release: {e}"))?;
        let wall = t0.elapsed();
        Ok(Sample {
            wall_ms: wall.as_secs_f64() * 1000.0,
            cpu_ms: self_cpu_ms() - cpu0,
            rss_kib: 0.0,
            apdu_ms: apdu_time.as_secs_f64() * 1000.0,
        })
    }
}

struct Env {
    agent: PathBuf,
    key: PathBuf,
    stack: Stack,
}

impl Env {
    /// `scunblock ARGS` against the main stack, new PIN from the environment.
    fn agent(&self, args: &[&dyn AsRef<OsStr>]) -> Proc {
        Proc::new(&self.agent, args)
            .env("PCSCLITE_CSOCK_NAME", self.stack.csock())
            .env("BENCH_NEW_PIN", NEW_PIN)
    }
}

fn round_robin(rows: &mut [Row], floor: &Floor, servers: &mut [CmServer], o: &Opts, work: &Path) {
    let err = work.join("stderr.txt");
    let total = o.warmup + o.runs;
    for round in 0..total {
        for row in rows.iter_mut() {
            let sample = match &row.action {
                Action::Floor => floor.run(),
                Action::Proc(p) => {
                    let mut p = (**p).clone();
                    if let Some(ids) = &row.request_ids {
                        p.args.push("--request-id".into());
                        p.args.push(ids[round].clone().into());
                    }
                    p.measure_ok(None, &err)
                }
            };
            let sample = sample.unwrap_or_else(|e| die(format!("{}: {e}", row.label)));
            let http = row.cm.map(|i| {
                let reqs = servers[i].new_requests();
                let conns: BTreeSet<String> = reqs.iter().map(|r| r["conn"].to_string()).collect();
                if reqs
                    .iter()
                    .any(|r| r["status"].as_u64().is_none_or(|s| s >= 300))
                {
                    die(format!("{}: a CM call failed: {reqs:?}", row.label));
                }
                (reqs.len(), conns.len())
            });
            if round >= o.warmup {
                row.samples.push(sample);
                if let Some(h) = http {
                    row.http.push(h);
                }
            }
        }
        if round + 1 == o.warmup {
            eprintln!("scunblock-bench: warm-up done, measuring {} rounds", o.runs);
        }
    }
}

// --- the kiosk ---------------------------------------------------------------------------

/// The kiosk's ways to put the cards in at once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    /// The cards are in before a watcher starts: it finds them all in its first look and
    /// starts every flow at the same moment.
    AtOnce,
    /// As `AtOnce`, with pcscd, the cards and the watcher on one CPU: how much of the
    /// flows' time is CPU work, so what ratio more cores could give at best.
    OneCore,
    /// As `AtOnce`, with cards that take `SLOW_APDU_MS` over each APDU, as real ones do.
    SlowCard,
    /// One watcher runs all along; the cards are inserted while it watches.
    Live,
}

/// A real card's time per APDU for `Way::SlowCard` (fast contact cards take 2-20 ms).
const SLOW_APDU_MS: u32 = 5;

impl Way {
    const ALL: [Way; 4] = [Way::AtOnce, Way::OneCore, Way::SlowCard, Way::Live];

    fn key(self) -> &'static str {
        match self {
            Way::AtOnce => "at_once",
            Way::OneCore => "one_core",
            Way::SlowCard => "slow_card",
            Way::Live => "live",
        }
    }

    fn title(self) -> String {
        match self {
            Way::AtOnce => "Seen at once".into(),
            Way::OneCore => "Seen at once, everything on one CPU".into(),
            Way::SlowCard => format!("Seen at once, cards taking {SLOW_APDU_MS} ms per APDU"),
            Way::Live => "Live insertions".into(),
        }
    }
}

struct KioskTrial {
    cards: usize,
    /// How the cards were put in, and on what.
    way: Way,
    /// The main figure: the last card's PC/SC insertion (pcscd reports it present; seen by
    /// a separate monitor process) to the last `unblock_succeeded` line, ms.
    pcsc_ms: f64,
    /// Last `card_inserted` to last `unblock_succeeded`, from the events' own timestamps
    /// (ms resolution).
    event_ms: f64,
    /// Seen at once: the watcher's whole CPU (start-up included; its PIN commands too) and
    /// pcscd's CPU over the round (clock ticks), ms.
    watch_cpu_ms: f64,
    pcscd_cpu_ms: f64,
    /// Seen at once: the virtual cards' processes, their whole life (getrusage), ms.
    cards_cpu_ms: f64,
    /// Per card: PC/SC insertion to its `unblock_succeeded`.
    per_card_ms: Vec<f64>,
    /// Per card: PC/SC insertion to its `card_inserted` line (the watcher reads the card
    /// before it reports it).
    to_report_ms: Vec<f64>,
    /// First to last PC/SC insertion: how far apart pcscd saw the cards.
    spread_ms: f64,
}

enum Kiosk {
    NotBuilt,
    Skipped,
    Done {
        trials: Vec<KioskTrial>,
        readers: usize,
    },
}

/// `HH:MM:SS.mmm` of an RFC 3339 time, in ms since midnight.
fn time_of_day_ms(s: &str) -> Option<f64> {
    let t = s.split('T').nth(1)?;
    let h: f64 = t.get(0..2)?.parse().ok()?;
    let m: f64 = t.get(3..5)?.parse().ok()?;
    let end = t[6..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(t.len(), |i| i + 6);
    let sec: f64 = t.get(6..end)?.parse().ok()?;
    Some(((h * 60.0 + m) * 60.0 + sec) * 1000.0)
}

/// CLOCK_MONOTONIC in ns: one clock for this process and the monitor.
fn mono_ns() -> u64 {
    // SAFETY: timespec is plain old data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn ms_between(a: u64, b: u64) -> f64 {
    (b as f64 - a as f64) / 1e6
}

/// `scunblock-bench --monitor`: print `NS inserted|removed READER` (CLOCK_MONOTONIC) for
/// every card arriving in or leaving a reader of the stack in PCSCLITE_CSOCK_NAME; `ready`
/// once armed. The kiosk's independent clock for "the card is in".
fn monitor() -> ! {
    use std::io::Write;
    realtime_probe();
    let ctx = Context::establish(Scope::User).unwrap_or_else(|e| die(format!("monitor: {e}")));
    let names = ctx
        .list_readers_owned()
        .unwrap_or_else(|e| die(format!("monitor: {e}")));
    let mut states: Vec<pcsc::ReaderState> = names
        .into_iter()
        .map(|n| pcsc::ReaderState::new(n, pcsc::State::UNAWARE))
        .collect();
    let mut present = vec![false; states.len()];
    let mut out = std::io::stdout();
    let mut first = true;
    loop {
        match ctx.get_status_change(Duration::from_secs(1), &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => die(format!("monitor: {e}")),
        }
        let now = mono_ns();
        for (i, s) in states.iter_mut().enumerate() {
            let is = s.event_state().contains(pcsc::State::PRESENT);
            if is != present[i] {
                present[i] = is;
                let what = if is { "inserted" } else { "removed" };
                let _ = writeln!(out, "{now} {what} {}", s.name().to_string_lossy());
            }
            s.sync_current_state();
        }
        if first {
            let _ = writeln!(out, "ready");
            first = false;
        }
        if out.flush().is_err() {
            std::process::exit(0);
        }
    }
}

/// A line from the watcher (JSON event) or from the monitor, with when it was read.
enum Line {
    Event(u64, Value),
    Pcsc(u64, bool, String),
    Ready,
}

/// The watcher and the monitor processes, whose output lines arrive on `lines`.
struct Kids {
    children: Vec<Child>,
    lines: Receiver<Line>,
}

impl Kids {
    fn next(&self, deadline: Instant) -> Option<Line> {
        match self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(x) => Some(x),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => die("the watcher or the monitor exited"),
        }
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for child in &mut self.children {
            stop_child(child);
        }
    }
}

/// SIGTERM, wait (SIGKILL after 5 s); the child's user+sys CPU in ms, its reaped children
/// included (wait4), when it ended by itself.
fn stop_child(child: &mut Child) -> Option<f64> {
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut cpu = None;
    while Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: rusage is plain old data; zero is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals; pid is our own child.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
            cpu = Some(tv(ru.ru_utime) + tv(ru.ru_stime));
            break;
        }
        if r < 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if cpu.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    helper_ended(child);
    cpu
}

/// Run the calling thread SCHED_FIFO (root), so that a probe that only waits and
/// timestamps wakes at once instead of after whatever else the 2 cores run. Best effort.
fn realtime_probe() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: 0 = the calling thread; a valid parameter struct.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
}

/// A process's user+sys CPU so far, ms (from /proc, clock-tick resolution).
fn proc_cpu_ms(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, whole line).
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks * 1000.0 / hz)
}

/// The kiosk's `--new-pin-command`: a `/bin/sh` script that prints the new PIN, as a
/// site's front end might be.
fn new_pin_script(work: &Path) -> PathBuf {
    let pin_cmd = work.join("new-pin.sh");
    fs::write(&pin_cmd, format!("#!/bin/sh\nprintf '%s\\n' {NEW_PIN}\n"))
        .unwrap_or_else(|e| die(format!("{}: {e}", pin_cmd.display())));
    fs::set_permissions(&pin_cmd, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| die(format!("{}: {e}", pin_cmd.display())));
    pin_cmd
}

/// Pin every thread of process `pid` to CPU `cpu`, or with `None` let it run anywhere.
/// Threads it starts later inherit the affinity of the thread that starts them.
fn pin_to_cpu(pid: &str, cpu: Option<usize>) {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    let set = cpu_set(cpu);
    for tid in tasks.flatten() {
        if let Some(tid) = tid.file_name().to_str().and_then(|t| t.parse().ok()) {
            // SAFETY: a valid cpu_set_t of the size given; a vanished thread fails harmlessly.
            unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
        }
    }
}

/// CPU `cpu` alone, or every CPU.
fn cpu_set(cpu: Option<usize>) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain old data; CPU_SET writes within it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    for c in cpu.map_or(0..all, |c| c..c + 1) {
        // SAFETY: as above.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

/// Start `scunblock --json watch --unblock` on the stack, on CPU `cpu` only if given; its
/// lines go to `tx`.
fn spawn_watch(
    env: &Env,
    stack: &Stack,
    pin_cmd: &Path,
    work: &Path,
    tx: Sender<Line>,
    cpu: Option<usize>,
) -> Child {
    let err = File::options()
        .create(true)
        .append(true)
        .open(work.join("watch.stderr"))
        .expect("open watch.stderr");
    let mut cmd = Command::new(&env.agent);
    if cpu.is_some() {
        use std::os::unix::process::CommandExt;
        let set = cpu_set(cpu);
        // SAFETY: sched_setaffinity is a plain system call, safe between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .args(["--json", "watch", "--unblock", "--admin-key-file"])
        .arg(&env.key)
        .arg("--new-pin-command")
        .arg(pin_cmd)
        .env("PCSCLITE_CSOCK_NAME", stack.csock())
        .env_remove("SCUNBLOCK_READER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| die(format!("cannot run scunblock watch: {e}")));
    helper_started(&child);
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        realtime_probe();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let at = mono_ns();
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send(Line::Event(at, v)).is_err() {
                    break;
                }
            }
        }
    });
    child
}

/// Run `vstack ARGS` for each of slots 0..n at once; wait for all.
fn vstack_each(stack: &Stack, n: usize, args: &dyn Fn(usize) -> Vec<String>) {
    let spawned: Vec<Child> = (0..n)
        .map(|slot| {
            stack
                .vstack_cmd()
                .args(args(slot))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| die(format!("vstack: {e}")))
        })
        .collect();
    for mut c in spawned {
        let st = c.wait().unwrap_or_else(|e| die(format!("vstack: {e}")));
        if !st.success() {
            die("vstack failed");
        }
    }
}

fn kiosk(o: &Opts, env: &Env) -> Kiosk {
    if !o.kiosk {
        return Kiosk::Skipped;
    }
    let help = Command::new(&env.agent)
        .args(["watch", "--help"])
        .stdin(Stdio::null())
        .output();
    if !help.is_ok_and(|h| h.status.success()) {
        eprintln!("scunblock-bench: `scunblock watch` is not built: kiosk rows not measured");
        return Kiosk::NotBuilt;
    }
    let readers = 4;
    let stack = Stack::start(&o.repo, o.work.join("kiosk"), readers);
    let pin_cmd = new_pin_script(&o.work);
    let (tx, rx) = mpsc::channel();
    let mut kids = Kids {
        children: vec![],
        lines: rx,
    };
    // The monitor first, armed before the watcher starts.
    let mut mon = Command::new(std::env::current_exe().expect("current_exe"))
        .arg("--monitor")
        .env("PCSCLITE_CSOCK_NAME", stack.csock())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| die(format!("cannot run the monitor: {e}")));
    helper_started(&mon);
    let out = mon.stdout.take().expect("piped");
    kids.children.push(mon);
    let txm = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let msg = if line == "ready" {
                Line::Ready
            } else {
                let mut f = line.splitn(3, ' ');
                let ns = f.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let inserted = f.next() == Some("inserted");
                Line::Pcsc(ns, inserted, f.next().unwrap_or("").to_string())
            };
            if txm.send(msg).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match kids.next(deadline) {
            Some(Line::Ready) => break,
            Some(_) => {}
            None => die("the PC/SC monitor did not start"),
        }
    }
    let vcard_args = |slot: usize, wait: bool, way: Way| -> Vec<String> {
        let mut a: Vec<String> = vec!["card".into(), stack.dir.display().to_string()];
        a.extend(["--slot".into(), slot.to_string()]);
        if !wait {
            a.push("--no-wait".into());
        }
        a.extend(
            [
                "--",
                "--challenge",
                CHALLENGE,
                "--pin-tries",
                "0",
                "--quiet",
                "--no-apdu-log",
                "--state-on-events",
            ]
            .map(String::from),
        );
        if way == Way::SlowCard {
            a.extend(["--apdu-time".into(), SLOW_APDU_MS.to_string()]);
        }
        a
    };
    let remove_args = |slot: usize| -> Vec<String> {
        vec![
            "remove".into(),
            stack.dir.display().to_string(),
            "--slot".into(),
            slot.to_string(),
        ]
    };
    let watch_ready = |kids: &Kids| -> u64 {
        // Every reader reported: the read time of the last `reader_added`.
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match kids.next(deadline) {
                Some(Line::Event(at, v)) if v["event"] == "reader_added" => {
                    seen.insert(v["reader"].to_string());
                    if seen.len() == readers {
                        return at;
                    }
                }
                Some(_) => {}
                None => die(format!(
                    "watch did not report {readers} readers within 15 s; stderr:\n{}",
                    fs::read_to_string(o.work.join("watch.stderr")).unwrap_or_default()
                )),
            }
        }
    };
    // Reads lines until `n` cards are done (and, live, seen by the monitor).
    let collect = |kids: &Kids, n: usize, live: bool| {
        let mut pcsc_in: BTreeMap<String, u64> = BTreeMap::new();
        let mut reported: BTreeMap<String, (u64, f64)> = BTreeMap::new();
        let mut done: BTreeMap<String, (u64, f64)> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while done.len() < n || (live && pcsc_in.len() < n) {
            let Some(line) = kids.next(deadline) else {
                die(format!(
                    "kiosk: {n} card(s): {} seen by PC/SC, {} unblock_succeeded within 30 s",
                    pcsc_in.len(),
                    done.len()
                ))
            };
            let (at, v) = match line {
                Line::Pcsc(ns, true, reader) => {
                    pcsc_in.insert(reader, ns);
                    continue;
                }
                Line::Event(at, v) => (at, v),
                _ => continue,
            };
            let reader = v["reader"].as_str().unwrap_or("").to_string();
            let t = v["time"]
                .as_str()
                .and_then(time_of_day_ms)
                .unwrap_or(f64::NAN);
            match v["event"].as_str().unwrap_or("") {
                "card_inserted" => {
                    reported.insert(reader, (at, t));
                }
                "unblock_succeeded" => {
                    done.insert(reader, (at, t));
                }
                "unblock_failed" | "skipped" => die(format!("kiosk: {v}")),
                _ => {}
            }
        }
        if reported.len() != n {
            die(format!(
                "kiosk: {} card_inserted for {n} cards: {:?}",
                reported.len(),
                reported.keys()
            ));
        }
        (pcsc_in, reported, done)
    };
    let last = |m: &BTreeMap<String, (u64, f64)>| {
        (
            m.values().map(|x| x.0).max().expect("n > 0"),
            m.values().map(|x| x.1).fold(f64::MIN, f64::max),
        )
    };

    // Live: one watcher; cards inserted while it runs.
    let mut watch = spawn_watch(env, &stack, &pin_cmd, &o.work, tx.clone(), None);
    watch_ready(&kids);
    std::thread::sleep(Duration::from_millis(200));
    while kids.lines.try_recv().is_ok() {}
    let mut trials = vec![];
    for round in 0..=o.kiosk_runs {
        for n in [1usize, 2, 4] {
            vstack_each(&stack, n, &|slot| vcard_args(slot, false, Way::Live));
            let (pcsc_in, reported, done) = collect(&kids, n, true);
            if done.keys().any(|r| !pcsc_in.contains_key(r)) {
                die(format!(
                    "kiosk: readers do not match: PC/SC {:?}, done {:?}",
                    pcsc_in.keys(),
                    done.keys()
                ));
            }
            let last_in = *pcsc_in.values().max().expect("n > 0");
            let first_in = *pcsc_in.values().min().expect("n > 0");
            let ((last_ok, last_ok_t), (_, last_rep_t)) = (last(&done), last(&reported));
            let trial = KioskTrial {
                cards: n,
                way: Way::Live,
                watch_cpu_ms: f64::NAN,
                pcscd_cpu_ms: f64::NAN,
                cards_cpu_ms: f64::NAN,
                pcsc_ms: ms_between(last_in, last_ok),
                event_ms: last_ok_t - last_rep_t,
                per_card_ms: done
                    .iter()
                    .map(|(r, (at, _))| ms_between(pcsc_in[r], *at))
                    .collect(),
                to_report_ms: reported
                    .iter()
                    .filter_map(|(r, (at, _))| Some(ms_between(*pcsc_in.get(r)?, *at)))
                    .collect(),
                spread_ms: ms_between(first_in, last_in),
            };
            vstack_each(&stack, n, &remove_args);
            let mut removed = 0;
            let deadline = Instant::now() + Duration::from_secs(10);
            while removed < n {
                match kids.next(deadline) {
                    Some(Line::Event(_, v)) if v["event"] == "card_removed" => removed += 1,
                    Some(_) => {}
                    None => die("kiosk: card_removed events missing"),
                }
            }
            if round > 0 {
                trials.push(trial);
            }
        }
    }
    let _ = stop_child(&mut watch);

    // At once: the cards are in before a watcher starts, so it finds them all in its first
    // look and starts every flow at the same moment. From the watcher's first
    // `card_inserted` line (its start-up, the same for 1 or 4 cards, is left out).
    let pcscd_pid = fs::read_to_string(stack.dir.join("pcscd.pid")).unwrap_or_default();
    let pcscd_pid = pcscd_pid.trim();
    for way in [Way::AtOnce, Way::OneCore, Way::SlowCard] {
        let one_cpu = (way == Way::OneCore).then_some(0);
        for round in 0..=o.kiosk_runs {
            for n in [1usize, 2, 4] {
                vstack_each(&stack, n, &|slot| vcard_args(slot, true, way));
                while kids.lines.try_recv().is_ok() {}
                if let Some(cpu) = one_cpu {
                    pin_to_cpu(pcscd_pid, Some(cpu));
                    for slot in 0..n {
                        let pid = fs::read_to_string(stack.dir.join(format!("card-{slot}.pid")))
                            .unwrap_or_default();
                        pin_to_cpu(pid.trim(), Some(cpu));
                    }
                }
                let pcscd0 = proc_cpu_ms(pcscd_pid);
                let mut watch = spawn_watch(env, &stack, &pin_cmd, &o.work, tx.clone(), one_cpu);
                watch_ready(&kids);
                let (_, reported, done) = collect(&kids, n, false);
                let pcscd_cpu = proc_cpu_ms(pcscd_pid)
                    .zip(pcscd0)
                    .map_or(f64::NAN, |(b, a)| b - a);
                let watch_cpu = stop_child(&mut watch).unwrap_or(f64::NAN);
                // The cards' own count (getrusage, in their state file as of their last
                // event: the disconnect that ended the flow).
                let cards_cpu: f64 = (0..n)
                    .map(|slot| {
                        stack.card_state(slot)["cpu_us"]
                            .as_f64()
                            .unwrap_or(f64::NAN)
                            / 1e3
                    })
                    .sum();
                let (last_ok, last_ok_t) = last(&done);
                let t0 = reported.values().map(|x| x.0).min().expect("n > 0");
                let first_rep_t = reported.values().map(|x| x.1).fold(f64::MAX, f64::min);
                let trial = KioskTrial {
                    cards: n,
                    way,
                    watch_cpu_ms: watch_cpu,
                    pcscd_cpu_ms: pcscd_cpu,
                    cards_cpu_ms: cards_cpu,
                    pcsc_ms: ms_between(t0, last_ok),
                    event_ms: last_ok_t - first_rep_t,
                    per_card_ms: done.values().map(|(at, _)| ms_between(t0, *at)).collect(),
                    to_report_ms: reported
                        .values()
                        .map(|(at, _)| ms_between(t0, *at))
                        .collect(),
                    spread_ms: 0.0,
                };
                vstack_each(&stack, n, &remove_args);
                while kids.lines.try_recv().is_ok() {}
                if round > 0 {
                    trials.push(trial);
                }
            }
        }
        pin_to_cpu(pcscd_pid, None);
    }
    drop(kids);
    drop(stack);
    Kiosk::Done { trials, readers }
}

// --- callgrind ---------------------------------------------------------------------------

/// Instructions executed in user space (callgrind's Ir total) by one run of `p`.
fn callgrind(p: &Proc, work: &Path) -> Result<u64, String> {
    let out = work.join("callgrind.out");
    let mut v = Proc::new(
        "valgrind",
        &[
            &"--tool=callgrind",
            &format!("--callgrind-out-file={}", out.display()),
        ],
    );
    v.args.push(p.program.clone().into());
    v.args.extend(p.args.iter().cloned());
    v.env = p.env.clone();
    let err = work.join("callgrind.stderr");
    v.measure_ok(None, &err)?;
    let text = fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| "no callgrind summary".to_string())
}

// --- the machine -------------------------------------------------------------------------

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "?".into());
    let hv = if fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains(" hypervisor")) {
        ", virtual machine"
    } else {
        ""
    };
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let os = fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_default();
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
            })
        })
        .map_or(String::new(), |kb| {
            format!(", {:.1} GiB RAM", kb / 1024.0 / 1024.0)
        });
    format!("nproc {nproc}, {cpu}{hv}{mem}; Linux {kernel}; {os}")
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

// --- main --------------------------------------------------------------------------------

fn main() {
    let o = parse_opts();
    fs::create_dir_all(&o.work).unwrap_or_else(|e| die(format!("{}: {e}", o.work.display())));
    let work = o.work.canonicalize().expect("work dir");
    let load_start = loadavg();
    let date = utc_now();
    let agent = o.bin.join("scunblock");
    for b in ["scunblock", "scunblock-vcard", "scunblock-cmserver"] {
        if !o.bin.join(b).is_file() {
            die(format!(
                "{} missing: cargo build --release --workspace --bins",
                o.bin.join(b).display()
            ));
        }
    }
    std::env::set_var("SCUNBLOCK_VCARD", o.bin.join("scunblock-vcard"));

    // The main stack: one card in slot 0, fixed challenge, 5 admin tries, 3 PIN tries.
    eprintln!("scunblock-bench: starting the virtual stack");
    let stack = Stack::start(&o.repo, work.join("stack"), 2);
    stack.insert(
        0,
        &[
            "--challenge",
            CHALLENGE,
            "--quiet",
            "--no-apdu-log",
            "--state-on-events",
        ],
    );
    let reader = stack.reader_name(0);
    // libpcsclite reads this once, at the first call: before the floor's first establish.
    std::env::set_var("PCSCLITE_CSOCK_NAME", stack.csock());

    let key = work.join("admin.key");
    fs::write(&key, format!("{ZERO_KEY}\n")).expect("write the key file");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod the key file");
    let reset_conf = work.join("opensc-reset.conf");
    fs::write(
        &reset_conf,
        "app default {\n    reader_driver pcsc {\n        disconnect_action = reset;\n    }\n}\n",
    )
    .expect("write the OpenSC config");
    let env = Env {
        agent: agent.clone(),
        key: key.clone(),
        stack,
    };
    eprintln!("scunblock-bench: starting the GIDS stack");
    let gids = gids::Gids::start(&o.repo, &work, &env, &reset_conf);

    // The CM test servers: http and https, the docs card (all-zero key) with one approved
    // request per run of the --request-id rows.
    // Two ranges (the agent's rows and the baseline's), then a few for callgrind.
    let per_range = o.warmup + o.runs;
    let ids = request_ids(2 * per_range + 4);
    let mut cm_args: Vec<OsString> = vec![
        "--smartcard".into(),
        format!("{DOCS_SMARTCARD}={DOCS_CARD_ID}").into(),
    ];
    for id in &ids {
        cm_args.push("--request".into());
        cm_args.push(format!("{id}={DOCS_SMARTCARD}").into());
    }
    let ca_dir = work.join("ca");
    run_helper(
        Command::new(o.repo.join("scripts/testca"))
            .arg(&ca_dir)
            .stdout(Stdio::null()),
    );
    let mut https_args = cm_args.clone();
    https_args.extend([
        "--tls-cert".into(),
        ca_dir.join("server.pem").into_os_string(),
        "--tls-key".into(),
        ca_dir.join("server-key.pem").into_os_string(),
    ]);
    let mut servers = vec![
        CmServer::start(&o.bin, work.join("cm-http.jsonl"), &cm_args),
        CmServer::start(&o.bin, work.join("cm-https.jsonl"), &https_args),
    ];

    // The rows of the round-robin.
    let floor = Floor::new(&reader);
    let exe = std::env::current_exe().expect("current_exe");
    let floor_proc =
        Proc::new(&exe, &[&"--floor-once", &reader]).env("PCSCLITE_CSOCK_NAME", env.stack.csock());
    let true_bin = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("true");
    let mut opensc_args: Vec<OsString> =
        vec!["-c".into(), "default".into(), "-r".into(), "0".into()];
    for (c, _) in exchange() {
        opensc_args.push("-s".into());
        opensc_args.push(c.into());
    }
    let opensc = Proc {
        program: o.opensc_tool.clone(),
        args: opensc_args,
        env: vec![("PCSCLITE_CSOCK_NAME".into(), env.stack.csock().into())],
    };
    let opensc_reset = opensc.clone().env("OPENSC_CONF", &reset_conf);
    // `--reader 0`: the reader opensc-tool's `-r 0` names (PC/SC's first), so both pick
    // it by name; `agent_auto` measures the search for the reader that holds a card.
    let unblock_auto = env.agent(&[
        &"unblock",
        &"--admin-key-file",
        &key,
        &"--new-pin-env",
        &"BENCH_NEW_PIN",
    ]);
    let mut unblock = unblock_auto.clone();
    unblock.args.splice(0..0, ["--reader".into(), "0".into()]);
    let cm = |url: &str, direct: bool, https: bool| -> Proc {
        let mut args: Vec<OsString> = vec![
            "--reader".into(),
            "0".into(),
            "unblock".into(),
            "--new-pin-env".into(),
            "BENCH_NEW_PIN".into(),
            "--cm".into(),
            url.into(),
            "--cm-auth".into(),
            "none".into(),
            "--card-id".into(),
            DOCS_CARD_ID.into(),
        ];
        if https {
            args.push("--cm-ca-file".into());
            args.push(ca_dir.join("ca.pem").into());
        } else {
            args.push("--allow-http".into());
        }
        if direct {
            args.push("--smartcard-id".into());
            args.push(DOCS_SMARTCARD.into());
        }
        let mut p = env.agent(&[]);
        p.args = args;
        p
    };
    let mut rows = vec![
        Row::new(
            "floor",
            "floor: `pcsc` loop in one process (establish, connect, transaction, 6 APDUs, disconnect with reset, release)",
            Action::Floor,
        ),
        Row::new(
            "floor_proc",
            "floor as a whole process (`scunblock-bench --floor-once`: Rust, libpcsclite only)",
            Action::Proc(Box::new(floor_proc.clone())),
        ),
        Row::new(
            "true",
            "process start and exit alone: `true` (C, libc only)",
            Action::Proc(Box::new(Proc::new(true_bin, &[]))),
        ),
        Row::new(
            "pin_cmd",
            "the kiosk's `--new-pin-command` alone (a `/bin/sh` script printing the PIN)",
            Action::Proc(Box::new(Proc::new(new_pin_script(&work), &[]))),
        ),
        Row::new(
            "opensc",
            "`opensc-tool -c default -r 0 -s …` ×6 (OpenSC default: disconnect leaves the card)",
            Action::Proc(Box::new(opensc.clone())),
        ),
        Row::new(
            "opensc_reset",
            "`opensc-tool` as above, `disconnect_action = reset` (the agent's card work)",
            Action::Proc(Box::new(opensc_reset.clone())),
        ),
        Row::new(
            "agent",
            "`scunblock --reader 0 unblock --admin-key-file` (local key; the reader named as \
             `-r 0` names it to opensc-tool)",
            Action::Proc(Box::new(unblock.clone())),
        ),
        Row::new(
            "agent_auto",
            "`scunblock unblock --admin-key-file` (no `--reader`: it looks for the reader that \
             holds a card)",
            Action::Proc(Box::new(unblock_auto)),
        ),
    ];
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let cm_row = |key, label: &str, server: usize, direct: bool| {
        let mut r = Row::new(
            key,
            label,
            Action::Proc(Box::new(cm(&urls[server], direct, server == 1))),
        );
        r.cm = Some(server);
        if direct {
            r.request_ids = Some(ids.clone());
        }
        r
    };
    rows.push(cm_row(
        "cm_http_direct",
        "`--cm http://127.0.0.1` `--request-id --smartcard-id`",
        0,
        true,
    ));
    rows.push(cm_row(
        "cm_http_flow",
        "`--cm http://127.0.0.1`, full workflow (find card, create request, …)",
        0,
        false,
    ));
    rows.push(cm_row(
        "cm_https_direct",
        "`--cm https://127.0.0.1` (TLS 1.3, test CA) `--request-id --smartcard-id`",
        1,
        true,
    ));
    rows.push(cm_row(
        "cm_https_flow",
        "`--cm https://127.0.0.1`, full workflow",
        1,
        false,
    ));
    rows.push(Row::new(
        "version",
        "`scunblock --version` (cold start)",
        Action::Proc(Box::new(env.agent(&[&"--version"]))),
    ));
    rows.push(Row::new(
        "readers",
        "`scunblock readers`",
        Action::Proc(Box::new(env.agent(&[&"readers"]))),
    ));
    rows.push(Row::new(
        "info",
        "`scunblock info`",
        Action::Proc(Box::new(env.agent(&[&"info"]))),
    ));
    rows.extend(gids.rows());
    if let Some(base) = &o.baseline {
        let with = |p: Proc| Proc {
            program: base.clone(),
            ..p
        };
        rows.push(Row::new(
            "base_agent",
            "baseline `scunblock --reader 0 unblock --admin-key-file`",
            Action::Proc(Box::new(with(unblock.clone()))),
        ));
        rows.push(Row::new(
            "base_info",
            "baseline `scunblock info`",
            Action::Proc(Box::new(with(env.agent(&[&"info"])))),
        ));
        rows.push(Row::new(
            "base_version",
            "baseline `scunblock --version`",
            Action::Proc(Box::new(with(env.agent(&[&"--version"])))),
        ));
        let mut r = Row::new(
            "base_cm_http_direct",
            "baseline `--cm http://…` `--request-id`",
            Action::Proc(Box::new(with(cm(&urls[0], true, false)))),
        );
        r.cm = Some(0);
        r.request_ids = Some(ids[per_range..].to_vec());
        rows.push(r);
        let mut r = Row::new(
            "base_cm_https_direct",
            "baseline `--cm https://…` `--request-id`",
            Action::Proc(Box::new(with(cm(&urls[1], true, true)))),
        );
        r.cm = Some(1);
        r.request_ids = Some(ids[per_range..].to_vec());
        rows.push(r);
    }

    // Check the C peer really sends our APDUs and gets the expected answers.
    let out = work.join("opensc.out");
    opensc
        .measure_ok(Some(&out), &work.join("stderr.txt"))
        .unwrap_or_else(|e| die(e));
    let text = fs::read_to_string(&out).unwrap_or_default();
    let sent = text.matches("Sending:").count();
    let ok = text.contains("SW1=0x63, SW2=0xC5") && text.contains("D6 11 43 F9 CC FF D2 CA");
    if sent != 6 || !ok {
        die(format!(
            "opensc-tool did not replay the exchange as expected:\n{text}"
        ));
    }
    gids.check_before(&work);

    eprintln!(
        "scunblock-bench: {} commands round-robin, {} warm-up + {} measured rounds",
        rows.len(),
        o.warmup,
        o.runs
    );
    let started = Instant::now();
    round_robin(&mut rows, &floor, &mut servers, &o, &work);
    eprintln!(
        "scunblock-bench: round-robin done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let card = env.stack.card_state(0);
    if card["admin_tries"] != 5 || card["pin_tries"] != 3 || card["pin"] != NEW_PIN {
        die(format!(
            "the card is not in the expected state after the runs: {card:#}"
        ));
    }
    gids.check_after(o.warmup + o.runs, &work);

    // Callgrind: instructions, repeatable where time is not.
    let mut instr: Vec<(String, u64)> = vec![];
    let have_valgrind = Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if o.callgrind && have_valgrind {
        eprintln!("scunblock-bench: callgrind");
        let mut direct = cm(&urls[0], true, false);
        direct.args.push("--request-id".into());
        direct.args.push(ids[2 * per_range].clone().into());
        let mut list: Vec<(&str, Proc)> = vec![
            ("`scunblock --version`", env.agent(&[&"--version"])),
            ("`scunblock readers`", env.agent(&[&"readers"])),
            ("`scunblock info`", env.agent(&[&"info"])),
            ("`scunblock unblock` (local key)", unblock.clone()),
            (
                "floor as a process (`scunblock-bench --floor-once`)",
                floor_proc.clone(),
            ),
            ("`opensc-tool` ×6 APDUs, reset", opensc_reset.clone()),
            ("`scunblock unblock --cm http://… --request-id`", direct),
        ];
        list.extend(gids.callgrind_list());
        if let Some(base) = &o.baseline {
            for (label, p) in [
                ("baseline `scunblock --version`", env.agent(&[&"--version"])),
                ("baseline `scunblock info`", env.agent(&[&"info"])),
                ("baseline `scunblock unblock` (local key)", unblock.clone()),
            ] {
                list.push((
                    label,
                    Proc {
                        program: base.clone(),
                        ..p
                    },
                ));
            }
        }
        for (label, p) in list {
            match callgrind(&p, &work) {
                Ok(n) => instr.push((label.to_string(), n)),
                Err(e) => eprintln!("scunblock-bench: callgrind {label}: {e}"),
            }
        }
        let _ = servers[0].new_requests();
    }

    eprintln!("scunblock-bench: kiosk");
    let kiosk = kiosk(&o, &env);
    drop(servers);
    let load_end = loadavg();

    let md = report(&Report {
        o: &o,
        rows: &rows,
        kiosk: &kiosk,
        instr: &instr,
        date,
        load: (load_start, load_end),
        agent: &agent,
        reader,
    });
    print!("{md}");
    if let Some(doc) = &o.doc {
        write_doc(doc, &md);
        eprintln!("scunblock-bench: wrote {}", doc.display());
    }
    if let Some(raw) = &o.raw {
        write_raw(raw, &rows, &kiosk);
    }
}

// --- the report --------------------------------------------------------------------------

struct Report<'a> {
    o: &'a Opts,
    rows: &'a [Row],
    kiosk: &'a Kiosk,
    instr: &'a [(String, u64)],
    date: String,
    load: (String, String),
    agent: &'a Path,
    reader: String,
}

const BEGIN: &str = "<!-- bench:begin: written by scripts/bench, edits here are overwritten -->";
const END: &str = "<!-- bench:end -->";

fn write_doc(doc: &Path, md: &str) {
    let block = format!("{BEGIN}\n{md}{END}\n");
    let old = fs::read_to_string(doc).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if b > a => {
            format!(
                "{}{block}{}",
                &old[..a],
                old[b + END.len()..].trim_start_matches('\n')
            )
        }
        _ if old.is_empty() => format!("# Performance\n\n{block}"),
        _ => format!("{}\n{block}", old.trim_end()),
    };
    if let Some(dir) = doc.parent() {
        let _ = fs::create_dir_all(dir);
    }
    fs::write(doc, new).unwrap_or_else(|e| die(format!("{}: {e}", doc.display())));
}

fn write_raw(path: &Path, rows: &[Row], kiosk: &Kiosk) {
    let mut v = serde_json::Map::new();
    for r in rows {
        v.insert(
            r.key.into(),
            serde_json::json!({
                "label": r.label,
                "wall_ms": r.samples.iter().map(|s| s.wall_ms).collect::<Vec<_>>(),
                "cpu_ms": r.samples.iter().map(|s| s.cpu_ms).collect::<Vec<_>>(),
                "rss_kib": r.samples.iter().map(|s| s.rss_kib).collect::<Vec<_>>(),
                "apdu_ms": r.samples.iter().map(|s| s.apdu_ms).collect::<Vec<_>>(),
                "http": r.http,
            }),
        );
    }
    if let Kiosk::Done { trials, .. } = kiosk {
        v.insert(
            "kiosk".into(),
            trials
                .iter()
                .map(|t| {
                    serde_json::json!({"cards": t.cards, "event_ms": t.event_ms,
                        "way": t.way.key(), "watch_cpu_ms": t.watch_cpu_ms, "pcscd_cpu_ms": t.pcscd_cpu_ms, "cards_cpu_ms": t.cards_cpu_ms, "pcsc_ms": t.pcsc_ms, "per_card_ms": t.per_card_ms, "to_report_ms": t.to_report_ms, "spread_ms": t.spread_ms})
                })
                .collect(),
        );
    }
    if let Some(dir) = path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let _ = fs::write(
        path,
        serde_json::to_string_pretty(&Value::Object(v)).unwrap_or_default(),
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn report(r: &Report) -> String {
    let row = |k: &str| r.rows.iter().find(|x| x.key == k);
    let must = |k: &str| row(k).expect("row");
    let med = |s: Option<Stat>| s.map_or(f64::NAN, |s| s.median);
    let wall = |k: &str| med(must(k).wall());
    let (agent_wall, floor_wall) = (wall("agent"), wall("floor"));
    let size = fs::metadata(r.agent).map_or(0, |m| m.len());
    let mut s = String::new();
    let o = r.o;
    let _ = writeln!(
        s,
        "Run of {} ({} mode: {} runs per command after {} warm-up rounds, round-robin; {}). \
         Load average (1, 5, 15 min): {} at the start, {} at the end.\n",
        r.date,
        if o.quick { "quick" } else { "full" },
        o.runs,
        o.warmup,
        match r.kiosk {
            Kiosk::Done { .. } => format!(
                "kiosk: {} rounds per card count and way, after 1 warm-up",
                o.kiosk_runs
            ),
            other => format!("kiosk {}", kiosk_missing(other)),
        },
        r.load.0,
        r.load.1
    );
    let _ = writeln!(s, "Machine: {}.  ", machine());
    let _ = writeln!(
        s,
        "Software: {}; {}; pcscd {}; reader \"{}\" (vpcd) with `scunblock-vcard` (fixed \
         challenge {CHALLENGE}, TCP_NODELAY + TCP_QUICKACK).\n",
        first_line(r.agent.to_str().unwrap_or("scunblock"), &["--version"]),
        first_line(o.opensc_tool.to_str().unwrap_or("opensc-tool"), &["--info"])
            .split(" [")
            .next()
            .unwrap_or(""),
        first_line("/usr/sbin/pcscd", &["--version"])
            .split_whitespace()
            .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .unwrap_or("?")
            .trim_end_matches('.'),
        r.reader
    );

    // Targets.
    let ratio_c = agent_wall / wall("opensc_reset");
    let ratio_c_leave = agent_wall / wall("opensc");
    let cpu = med(must("agent").cpu());
    let agent_keys = ["agent", "version", "readers", "info"];
    let rss_max = r
        .rows
        .iter()
        .filter(|x| agent_keys.contains(&x.key) || x.key.starts_with("cm_"))
        .filter_map(|x| x.rss_mib().map(|st| st.max))
        .fold(0.0, f64::max);
    let rss_unblock = must("agent").rss_mib().map_or(f64::NAN, |st| st.max);
    // (ratio, 1 card ms, 4 cards ms) of one way.
    let kiosk_ratio = |way: Way| match r.kiosk {
        Kiosk::Done { trials, .. } => {
            let m = |n: usize| {
                med(stat(
                    &trials
                        .iter()
                        .filter(|t| t.cards == n && t.way == way)
                        .map(|t| t.pcsc_ms)
                        .collect::<Vec<_>>(),
                ))
            };
            Some((m(4) / m(1), m(1), m(4)))
        }
        _ => None,
    };
    let _ = writeln!(s, "### Against the targets of issue 7\n");
    let _ = writeln!(s, "| measure | target | measured | |\n|---|---|---|---|");
    let _ = writeln!(
        s,
        "| agent wall / opensc-tool wall, same APDUs | ≤ 1.0 | {ratio_c:.2} ({agent_wall:.2} / \
         {:.2} ms, both resetting the card at disconnect; {ratio_c_leave:.2} against OpenSC's \
         default disconnect, which leaves it) | {} |",
        wall("opensc_reset"),
        verdict(ratio_c <= 1.0)
    );
    let _ = writeln!(
        s,
        "| agent CPU per unblock (user+sys) | ≤ 5 ms | {cpu:.2} ms | {} |",
        verdict(cpu <= 5.0)
    );
    let _ = writeln!(
        s,
        "| agent peak RSS | ≤ 15 MB | {rss_unblock:.1} MiB for `unblock` with a local key; \
         {rss_max:.1} MiB the most of any agent command here (CM over https included) | {} |",
        verdict(rss_max * 1.048_576 <= 15.0)
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match Way::ALL.map(kiosk_ratio) {
        [Some((k, one, four)), Some((k1, ..)), Some((ks, ones, fours)), Some((kl, onel, fourl))] => {
            let _ = writeln!(
                s,
                "| 4 cards in 4 readers / 1 card | ≤ 1.3 | {k:.2} with the cards seen at once \
                 ({four:.1} / {one:.1} ms), where {cores} cores allow {:.2} at best ({k1:.2} \
                 on one CPU / {cores}); {ks:.2} with cards taking {SLOW_APDU_MS} ms per APDU \
                 ({fours:.1} / {ones:.1} ms); {kl:.2} for live insertions, which pcscd sees \
                 apart ({fourl:.1} / {onel:.1} ms) | {} |",
                (k1 / cores as f64).max(1.0),
                verdict(k <= 1.3)
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "| 4 cards in 4 readers / 1 card | ≤ 1.3 | {} | – |",
                kiosk_missing(r.kiosk)
            );
        }
    }
    let _ = writeln!(
        s,
        "| Negotiate handshakes per unblock | 1 | not measured here (no KDC in this bench): \
         measured by the Negotiate tests (`tests/negotiate.rs` checks `negotiate_handshakes` \
         = 1 and one handshake line per unblock) | – |"
    );
    let _ = writeln!(
        s,
        "| agent wall − floor | ≤ 2 ms | {:.2} ms ({agent_wall:.2} − {floor_wall:.2}); of \
         which process start of a minimal Rust PC/SC client: {:.2} ms (floor as a process − \
         floor) | {} |",
        agent_wall - floor_wall,
        wall("floor_proc") - floor_wall,
        verdict(agent_wall - floor_wall <= 2.0)
    );
    let _ = writeln!(
        s,
        "\nRatios: agent/floor {:.2}, agent/floor as a process {:.2}; agent/opensc-tool \
         {ratio_c:.2} (both reset the card), {ratio_c_leave:.2} (OpenSC's default \
         disconnect).\n",
        agent_wall / floor_wall,
        agent_wall / wall("floor_proc")
    );

    // 1-3.
    let _ = writeln!(
        s,
        "### One unblock: the same 6 APDUs\n\nMedian (min–max) of {} runs each; wall and \
         CPU in ms, peak RSS in MiB. Whole processes are timed from spawn to `wait4`; CPU is \
         the child's user+sys from `wait4`. The in-process floor's CPU is the bench's own.\n",
        o.runs
    );
    let _ = writeln!(
        s,
        "| command | wall ms | CPU ms | peak RSS MiB |\n|---|---|---|---|"
    );
    let line = |s: &mut String, x: &Row| {
        let rss = if matches!(x.action, Action::Floor) {
            "–".to_string()
        } else {
            fmt_stat(x.rss_mib(), 1)
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {rss} |",
            x.label,
            fmt_stat(x.wall(), 2),
            fmt_stat(x.cpu(), 2)
        );
    };
    for k in [
        "floor",
        "floor_proc",
        "true",
        "pin_cmd",
        "opensc",
        "opensc_reset",
        "agent",
        "agent_auto",
    ] {
        let x = must(k);
        line(&mut s, x);
        if k == "floor" {
            let _ = writeln!(
                s,
                "| floor: the 6 APDUs alone (first transmit to last answer) | {} | | |",
                fmt_stat(x.apdu(), 2)
            );
        }
    }

    // 7, next to the other single unblocks.
    gids::report(&mut s, r.rows);

    // 4.
    let direct = |k: &str| {
        (
            wall(k),
            med(stat(
                &must(k).http.iter().map(|h| h.0 as f64).collect::<Vec<_>>(),
            )),
        )
    };
    let _ = writeln!(
        s,
        "\n### Agent via CM (`scunblock-cmserver` on loopback)\n\nHTTP calls and TCP \
         connections per run come from the server's request log (`conn`: equal ids = one \
         reused connection). Extra per run: median wall − the local-key agent's. Per \
         additional call: (full workflow − `--request-id` run) / the difference in calls (the \
         workflow also reads the card once more, outside the transaction, before asking CM).\n"
    );
    let _ = writeln!(
        s,
        "| command | wall ms | CPU ms | peak RSS MiB | HTTP calls / run | TCP connections / run | extra per run ms |\n|---|---|---|---|---|---|---|"
    );
    for k in [
        "cm_http_direct",
        "cm_http_flow",
        "cm_https_direct",
        "cm_https_flow",
    ] {
        let x = must(k);
        let calls: BTreeSet<usize> = x.http.iter().map(|h| h.0).collect();
        let conns: BTreeSet<usize> = x.http.iter().map(|h| h.1).collect();
        let show = |set: &BTreeSet<usize>| {
            set.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.2} |",
            x.label,
            fmt_stat(x.wall(), 2),
            fmt_stat(x.cpu(), 2),
            fmt_stat(x.rss_mib(), 1),
            show(&calls),
            show(&conns),
            wall(k) - agent_wall
        );
    }
    for (scheme, d, f) in [
        ("http", "cm_http_direct", "cm_http_flow"),
        ("https", "cm_https_direct", "cm_https_flow"),
    ] {
        let ((wd, cd), (wf, cf)) = (direct(d), direct(f));
        let _ = writeln!(
            s,
            "\n{scheme}: {:.2} ms per additional CM call ({wf:.2} − {wd:.2} ms over {:.0} calls).",
            (wf - wd) / (cf - cd),
            cf - cd
        );
    }

    // 5.
    let _ = writeln!(s, "\n### Kiosk: `scunblock watch --unblock --json`\n");
    match r.kiosk {
        Kiosk::Done { trials, readers } => {
            let _ = writeln!(
                s,
                "`scunblock watch --unblock --json` over {readers} readers (local key; \
                 `--new-pin-command` is a `/bin/sh` script), with 1, 2 or 4 new cards (PIN \
                 blocked), then the cards removed. Four ways to put the cards in at once:\n\n\
                 - *Seen at once*: the cards are in before a watcher starts, so its first look \
                 finds them all and every flow starts at the same moment. Time from its first \
                 `card_inserted` line (reported once that card was read; the watcher's \
                 start-up is left out) to its last `unblock_succeeded`; per card, from that \
                 same first line. This is the concurrency figure.\n\
                 - *Seen at once, everything on one CPU*: the same, with pcscd, the cards and \
                 the watcher (its PIN commands too) pinned to CPU 0. The virtual card answers \
                 at once, so a flow is CPU work from end to end: if 4 cards take about 4 × \
                 one card's time here, the ratio on N cores can at best be this one / N.\n\
                 - *Seen at once, cards taking {SLOW_APDU_MS} ms per APDU* (`scunblock-vcard \
                 --apdu-time {SLOW_APDU_MS}`): real cards spend milliseconds on each APDU, \
                 in the card, not on the host's CPU.\n\
                 - *Live*: one watcher runs all along, and the cards are inserted together. \
                 pcscd polls each slot on its own ~400 ms cycle, so it sees them up to ~30 ms \
                 apart (spread). Insertion is when PC/SC reports a card present, as seen by a \
                 separate monitor process (`scunblock-bench --monitor`, \
                 SCardGetStatusChange), which wakes on the same event as the watcher.\n\n\
                 The watcher's lines are timed when they are read (CLOCK_MONOTONIC, as the \
                 monitor's). The event-timestamp column uses the events' own `time` (ms): \
                 `card_inserted` to `unblock_succeeded` (the watcher reads the card before it \
                 reports it). Median (min–max) of {} rounds each, ms.\n",
                o.kiosk_runs
            );
            for way in Way::ALL {
                let title = way.title();
                let _ = writeln!(
                    s,
                    "{title}:\n\n| cards | last insertion → last `unblock_succeeded` | \
                     event timestamps | per card: insertion → `unblock_succeeded` | per card: \
                     insertion → `card_inserted` | insertion spread |\n|---|---|---|---|---|---|"
                );
                for n in [1usize, 2, 4] {
                    let t: Vec<&KioskTrial> = trials
                        .iter()
                        .filter(|t| t.cards == n && t.way == way)
                        .collect();
                    let f = |g: &dyn Fn(&KioskTrial) -> f64| {
                        stat(&t.iter().map(|x| g(x)).collect::<Vec<_>>())
                    };
                    let all = |g: &dyn Fn(&KioskTrial) -> &Vec<f64>| {
                        stat(
                            &t.iter()
                                .flat_map(|x| g(x).iter().copied())
                                .collect::<Vec<_>>(),
                        )
                    };
                    let spread = if way == Way::Live {
                        fmt_stat(f(&|x| x.spread_ms), 0)
                    } else {
                        "–".to_string()
                    };
                    let _ = writeln!(
                        s,
                        "| {n} | {} | {} | {} | {} | {spread} |",
                        fmt_stat(f(&|x| x.pcsc_ms), 1),
                        fmt_stat(f(&|x| x.event_ms), 0),
                        fmt_stat(all(&|x| &x.per_card_ms), 1),
                        fmt_stat(all(&|x| &x.to_report_ms), 1),
                    );
                }
                if let Some((k, _, _)) = kiosk_ratio(way) {
                    let _ = writeln!(s, "\n4 cards / 1 card: {k:.2}.\n");
                }
                if way == Way::AtOnce {
                    let cpu = |n: usize, g: &dyn Fn(&KioskTrial) -> f64| {
                        let v: Vec<f64> = trials
                            .iter()
                            .filter(|t| t.way == way && t.cards == n)
                            .map(g)
                            .filter(|x| x.is_finite())
                            .collect();
                        v.iter().sum::<f64>() / v.len().max(1) as f64
                    };
                    let (w1, w4) = (cpu(1, &|t| t.watch_cpu_ms), cpu(4, &|t| t.watch_cpu_ms));
                    let (p1, p4) = (cpu(1, &|t| t.pcscd_cpu_ms), cpu(4, &|t| t.pcscd_cpu_ms));
                    let (c1, c4) = (cpu(1, &|t| t.cards_cpu_ms), cpu(4, &|t| t.cards_cpu_ms));
                    let _ = writeln!(
                        s,
                        "CPU per round, mean: the watcher (its whole life: start-up, PIN \
                         commands and flows; `wait4`) {w1:.1} ms with 1 card, {w4:.1} ms with \
                         4, so {:.1} ms per additional card; pcscd (clock ticks, so only a mean \
                         means anything) {p1:.1} ms with 1 card, {p4:.1} ms with 4; the virtual \
                         cards' processes (their whole life) {c1:.1} ms with 1 \
                         card, {c4:.1} ms with 4.\n",
                        (w4 - w1) / 3.0
                    );
                }
            }
        }
        other => {
            let _ = writeln!(s, "{}", kiosk_missing(other));
        }
    }

    // 6.
    let _ = writeln!(
        s,
        "\n### Cold start, size, peak RSS per command\n\nBinary: `{}` {:.2} MiB ({} bytes; \
         release profile: lto = \"fat\", codegen-units = 1, debuginfo stripped).\n",
        r.agent.display(),
        size as f64 / 1048576.0,
        size
    );
    let _ = writeln!(
        s,
        "| command | wall ms | CPU ms | peak RSS MiB |\n|---|---|---|---|"
    );
    for k in ["version", "readers", "info", "agent"] {
        line(&mut s, must(k));
    }
    if !r.instr.is_empty() {
        let _ = writeln!(
            s,
            "\nInstructions executed in user space, one run each (`valgrind --tool=callgrind`, \
             Ir; includes the dynamic loader and libc start-up):\n"
        );
        let _ = writeln!(s, "| command | instructions |\n|---|---|");
        for (label, n) in r.instr {
            let _ = writeln!(s, "| {label} | {} |", group(*n));
        }
    }
    if let (Some(_), Some(base)) = (row("base_agent"), &o.baseline) {
        let _ = writeln!(
            s,
            "\n### Baseline `{}`, measured in the same round-robin\n",
            base.display()
        );
        let _ = writeln!(
            s,
            "| command | baseline wall ms | wall ms | baseline CPU ms | CPU ms | baseline RSS MiB | RSS MiB |\n|---|---|---|---|---|---|---|"
        );
        for (b, k, label) in [
            ("base_agent", "agent", "`unblock` (local key)"),
            ("base_info", "info", "`info`"),
            ("base_version", "version", "`--version`"),
            (
                "base_cm_http_direct",
                "cm_http_direct",
                "`unblock --cm http://… --request-id`",
            ),
            (
                "base_cm_https_direct",
                "cm_https_direct",
                "`unblock --cm https://… --request-id`",
            ),
        ] {
            let (b, k) = (must(b), must(k));
            let _ = writeln!(
                s,
                "| {label} | {} | {} | {} | {} | {} | {} |",
                fmt_stat(b.wall(), 2),
                fmt_stat(k.wall(), 2),
                fmt_stat(b.cpu(), 2),
                fmt_stat(k.cpu(), 2),
                fmt_stat(b.rss_mib(), 1),
                fmt_stat(k.rss_mib(), 1)
            );
        }
    }
    s
}

fn kiosk_missing(k: &Kiosk) -> &'static str {
    match k {
        Kiosk::NotBuilt => "not measured: watch not built yet",
        Kiosk::Skipped => "not measured: skipped (--no-kiosk)",
        Kiosk::Done { .. } => "",
    }
}

fn group(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}
