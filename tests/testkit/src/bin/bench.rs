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
//!
//! Layout: `opts` (the command line), `rows` (the round-robin's rows and the round-robin),
//! `floor` (the in-process floor), `proc` (timed processes), `stats`, `kiosk`, `gids`,
//! `callgrind`, `machine` (what it ran on), `clock`, `report` (markdown and JSON). The
//! stacks and the CM servers come from the test kit's library (`scunblock_testkit`).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context as _;
use scunblock_testkit::cm::{try_test_ca, CmServer, DOCS_CARD_ID, DOCS_SMARTCARD};
use scunblock_testkit::stack::{Insert, StackConfig, VStack};

use crate::callgrind::callgrind;
use crate::clock::utc_now;
use crate::floor::Floor;
use crate::kiosk::{kiosk, new_pin_script};
use crate::machine::loadavg;
use crate::opts::parse_opts;
use crate::proc::Proc;
use crate::report::{report, write_doc, write_raw, Report};
use crate::rows::{request_ids, round_robin, Action, Env, Row};

#[path = "bench/callgrind.rs"]
mod callgrind;
#[path = "bench/clock.rs"]
mod clock;
#[path = "bench/floor.rs"]
mod floor;
#[path = "bench/gids.rs"]
mod gids;
#[path = "bench/kiosk.rs"]
mod kiosk;
#[path = "bench/machine.rs"]
mod machine;
#[path = "bench/opts.rs"]
mod opts;
#[path = "bench/proc.rs"]
mod proc;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/rows.rs"]
mod rows;
#[path = "bench/stats.rs"]
mod stats;

/// The virtual card's fixed challenge and the response under the all-zero 24-byte key (the
/// CM docs' example vector: the CM test server's docs card has the same key).
pub const CHALLENGE: &str = "D61143F9CCFFD2CA";

pub const RESPONSE: &str = "17466E766E303CB6";

pub const NEW_PIN: &str = "24681357";

pub const ZERO_KEY: &str = "000000000000000000000000000000000000000000000000";

/// The agent's exchange for an unblock, as `scunblock --trace unblock` shows it (iso
/// profile): admin tries, PIN tries, GET CHALLENGE, EXTERNAL AUTHENTICATE, RESET RETRY
/// COUNTER (new PIN "24681357"), PIN tries. With the expected answers of a card with 5 admin
/// tries and 3 PIN tries.
pub fn exchange() -> Vec<(String, String)> {
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

/// Long-running helpers (the watcher, the monitor) to end if the bench dies.
pub static HELPERS: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

pub fn helper_started(child: &Child) {
    if let Ok(mut h) = HELPERS.lock() {
        h.push(child.id() as libc::pid_t);
    }
}

pub fn helper_ended(child: &Child) {
    if let Ok(mut h) = HELPERS.lock() {
        h.retain(|&p| p != child.id() as libc::pid_t);
    }
}

pub fn die(msg: impl AsRef<str>) -> ! {
    eprintln!("scunblock-bench: {}", msg.as_ref());
    if let Ok(h) = HELPERS.lock() {
        for &pid in h.iter() {
            // SAFETY: signalling a child of ours that has not been reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    std::process::exit(1);
}

/// Stop with `e`'s whole context chain (and the helpers).
fn or_die<T>(r: anyhow::Result<T>) -> T {
    r.unwrap_or_else(|e| die(format!("{e:#}")))
}

/// A `scripts/vstack` stack of `readers` slots in `dir`, with the card binary in
/// `SCUNBLOCK_VCARD`; stopped on drop (scripts/bench also stops it on exit).
fn start_stack(repo: &Path, dir: PathBuf, readers: usize) -> VStack {
    or_die(
        scunblock_testkit::bins::locate("scunblock-vcard", "SCUNBLOCK_VCARD").and_then(|vcard| {
            let config = StackConfig {
                script: repo.join("scripts/vstack"),
                vcard,
                dir: Some(dir),
                pair_name: None,
                debug: false,
            };
            VStack::try_start(readers, config)
        }),
    )
}

/// Insert a new card into `slot` and wait until pcscd has read its ATR.
fn insert(stack: &VStack, slot: usize, card_args: &[&str]) {
    or_die(stack.try_insert(slot, Insert::New, card_args));
}

/// A CM test server from `bin`, its request log at `log`, its stderr in a directory of
/// its own under `work`.
fn start_cm(bin: &Path, work: &Path, log: PathBuf, args: &[OsString]) -> CmServer {
    or_die(
        tempfile::Builder::new()
            .prefix("cm-")
            .tempdir_in(work)
            .context("a directory for the CM server")
            .and_then(|dir| CmServer::try_start(&bin.join("scunblock-cmserver"), dir, log, args)),
    )
}

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
    let stack = start_stack(&o.repo, work.join("stack"), 2);
    insert(
        &stack,
        0,
        &[
            "--challenge",
            CHALLENGE,
            "--quiet",
            "--no-apdu-log",
            "--state-on-events",
        ],
    );
    let reader = or_die(stack.try_reader_name(0));
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
    or_die(try_test_ca(&o.repo, &ca_dir));
    let mut https_args = cm_args.clone();
    https_args.extend([
        "--tls-cert".into(),
        ca_dir.join("server.pem").into_os_string(),
        "--tls-key".into(),
        ca_dir.join("server-key.pem").into_os_string(),
    ]);
    let mut servers = vec![
        start_cm(&o.bin, &work, work.join("cm-http.jsonl"), &cm_args),
        start_cm(&o.bin, &work, work.join("cm-https.jsonl"), &https_args),
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
    let card = or_die(env.stack.try_card_state(0));
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
        let _ = or_die(servers[0].new_requests());
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
