//! The kiosk rows: `scunblock watch --unblock --json` over 4 readers with 1, 2 or 4
//! cards, seen at once and live, timed against an independent PC/SC monitor process
//! (`scunblock-bench --monitor`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use pcsc::{Context, Scope};
use scunblock_testkit::stack::VStack;
use serde_json::Value;

use crate::clock::{mono_ns, ms_between, time_of_day_ms};
use crate::opts::Opts;
use crate::proc::stop_child;
use crate::rows::Env;
use crate::{die, helper_started, or_die, start_stack, CHALLENGE, NEW_PIN};

/// The kiosk's ways to put the cards in at once.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Way {
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
pub const SLOW_APDU_MS: u32 = 5;

impl Way {
    pub const ALL: [Way; 4] = [Way::AtOnce, Way::OneCore, Way::SlowCard, Way::Live];

    pub fn key(self) -> &'static str {
        match self {
            Way::AtOnce => "at_once",
            Way::OneCore => "one_core",
            Way::SlowCard => "slow_card",
            Way::Live => "live",
        }
    }

    pub fn title(self) -> String {
        match self {
            Way::AtOnce => "Seen at once".into(),
            Way::OneCore => "Seen at once, everything on one CPU".into(),
            Way::SlowCard => format!("Seen at once, cards taking {SLOW_APDU_MS} ms per APDU"),
            Way::Live => "Live insertions".into(),
        }
    }
}

pub struct KioskTrial {
    pub cards: usize,
    /// How the cards were put in, and on what.
    pub way: Way,
    /// The main figure: the last card's PC/SC insertion (pcscd reports it present; seen by
    /// a separate monitor process) to the last `unblock_succeeded` line, ms.
    pub pcsc_ms: f64,
    /// Last `card_inserted` to last `unblock_succeeded`, from the events' own timestamps
    /// (ms resolution).
    pub event_ms: f64,
    /// Seen at once: the watcher's whole CPU (start-up included; its PIN commands too) and
    /// pcscd's CPU over the round (clock ticks), ms.
    pub watch_cpu_ms: f64,
    pub pcscd_cpu_ms: f64,
    /// Seen at once: the virtual cards' processes, their whole life (getrusage), ms.
    pub cards_cpu_ms: f64,
    /// Per card: PC/SC insertion to its `unblock_succeeded`.
    pub per_card_ms: Vec<f64>,
    /// Per card: PC/SC insertion to its `card_inserted` line (the watcher reads the card
    /// before it reports it).
    pub to_report_ms: Vec<f64>,
    /// First to last PC/SC insertion: how far apart pcscd saw the cards.
    pub spread_ms: f64,
}

pub enum Kiosk {
    NotBuilt,
    Skipped,
    Done {
        trials: Vec<KioskTrial>,
        readers: usize,
    },
}

/// `scunblock-bench --monitor`: print `NS inserted|removed READER` (CLOCK_MONOTONIC) for
/// every card arriving in or leaving a reader of the stack in PCSCLITE_CSOCK_NAME; `ready`
/// once armed. The kiosk's independent clock for "the card is in".
pub fn monitor() -> ! {
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
pub enum Line {
    Event(u64, Value),
    Pcsc(u64, bool, String),
    Ready,
}

/// The watcher and the monitor processes, whose output lines arrive on `lines`.
pub struct Kids {
    pub children: Vec<Child>,
    pub lines: Receiver<Line>,
}

impl Kids {
    pub fn next(&self, deadline: Instant) -> Option<Line> {
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

/// Run the calling thread SCHED_FIFO (root), so that a probe that only waits and
/// timestamps wakes at once instead of after whatever else the 2 cores run. Best effort.
pub fn realtime_probe() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: 0 = the calling thread; a valid parameter struct.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
}

/// A process's user+sys CPU so far, ms (from /proc, clock-tick resolution).
pub fn proc_cpu_ms(pid: &str) -> Option<f64> {
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
pub fn new_pin_script(work: &Path) -> PathBuf {
    let pin_cmd = work.join("new-pin.sh");
    fs::write(&pin_cmd, format!("#!/bin/sh\nprintf '%s\\n' {NEW_PIN}\n"))
        .unwrap_or_else(|e| die(format!("{}: {e}", pin_cmd.display())));
    fs::set_permissions(&pin_cmd, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| die(format!("{}: {e}", pin_cmd.display())));
    pin_cmd
}

/// Pin every thread of process `pid` to CPU `cpu`, or with `None` let it run anywhere.
/// Threads it starts later inherit the affinity of the thread that starts them.
pub fn pin_to_cpu(pid: &str, cpu: Option<usize>) {
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
pub fn cpu_set(cpu: Option<usize>) -> libc::cpu_set_t {
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
pub fn spawn_watch(
    env: &Env,
    stack: &VStack,
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
pub fn vstack_each(stack: &VStack, n: usize, args: &dyn Fn(usize) -> Vec<String>) {
    let spawned: Vec<Child> = (0..n)
        .map(|slot| {
            stack
                .command()
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

pub fn kiosk(o: &Opts, env: &Env) -> Kiosk {
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
    let stack = start_stack(&o.repo, o.work.join("kiosk"), readers);
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
        let mut a: Vec<String> = vec!["card".into(), stack.dir().display().to_string()];
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
            stack.dir().display().to_string(),
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
    let pcscd_pid = fs::read_to_string(stack.dir().join("pcscd.pid")).unwrap_or_default();
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
                        let pid = fs::read_to_string(stack.dir().join(format!("card-{slot}.pid")))
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
                        or_die(stack.try_card_state(slot))["cpu_us"]
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
