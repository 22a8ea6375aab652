//! The report: markdown (stdout, and between the bench markers of docs/performance.md)
//! and the raw samples as JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::gids;
use crate::kiosk::{Kiosk, KioskTrial, Way, SLOW_APDU_MS};
use crate::machine::{first_line, machine};
use crate::opts::Opts;
use crate::rows::{Action, Row};
use crate::stats::{fmt_stat, stat, Stat};
use crate::{die, CHALLENGE};

pub struct Report<'a> {
    pub o: &'a Opts,
    pub rows: &'a [Row],
    pub kiosk: &'a Kiosk,
    pub instr: &'a [(String, u64)],
    pub date: String,
    pub load: (String, String),
    pub agent: &'a Path,
    pub reader: String,
}

pub const BEGIN: &str =
    "<!-- bench:begin: written by scripts/bench, edits here are overwritten -->";

pub const END: &str = "<!-- bench:end -->";

pub fn write_doc(doc: &Path, md: &str) {
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

pub fn write_raw(path: &Path, rows: &[Row], kiosk: &Kiosk) {
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

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

pub fn report(r: &Report) -> String {
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

pub fn kiosk_missing(k: &Kiosk) -> &'static str {
    match k {
        Kiosk::NotBuilt => "not measured: watch not built yet",
        Kiosk::Skipped => "not measured: skipped (--no-kiosk)",
        Kiosk::Done { .. } => "",
    }
}

pub fn group(n: u64) -> String {
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
