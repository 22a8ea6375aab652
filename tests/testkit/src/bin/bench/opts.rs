//! Command-line options of scunblock-bench (clap), and what they default to.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::die;
use crate::floor::Floor;
use crate::kiosk::monitor;

/// The timing driver behind `scripts/bench`: the floor, the C peer, the agent (local key
/// and via CM), the kiosk, cold start and the GIDS rows, round-robin on the virtual stack.
#[derive(Parser)]
#[command(
    name = "scunblock-bench",
    args_override_self = true,
    after_help = "Environment: SCUNBLOCK_BIN_DIR (default: this binary's directory: scunblock, \
scunblock-vcard, scunblock-cmserver), SCUNBLOCK_REPO (default: found from the binary's path; \
for scripts/vstack and scripts/testca), OPENSC_TOOL (default opensc-tool), GIDS_TOOL (default \
gids-tool)."
)]
struct Cli {
    /// Scratch directory (the stacks, logs, keys); should be empty
    #[arg(long, value_name = "DIR", required_unless_present_any = ["monitor", "floor_once"])]
    work: Option<PathBuf>,
    /// 15 runs each after 2 warm-up, 1 kiosk round, no callgrind (< 1 min)
    #[arg(long)]
    quick: bool,
    /// Measured runs per command (at least 15) [default: 101; --quick 15]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(15..))]
    runs: Option<u64>,
    /// Warm-up rounds, not counted [default: 5; --quick 2]
    #[arg(long, value_name = "N")]
    warmup: Option<usize>,
    /// Measured kiosk rounds per card count [default: 15; --quick 1]
    #[arg(long, value_name = "N")]
    kiosk_runs: Option<usize>,
    /// Write the results into FILE between the bench markers (created if missing); without
    /// it the markdown goes to stdout only
    #[arg(long, value_name = "FILE")]
    doc: Option<PathBuf>,
    /// Write every sample as JSON
    #[arg(long, value_name = "FILE")]
    raw: Option<PathBuf>,
    /// Skip the kiosk rows
    #[arg(long)]
    no_kiosk: bool,
    /// Skip the callgrind instruction counts
    #[arg(long)]
    no_callgrind: bool,
    /// Also measure this scunblock binary (unblock, info, --version), in the same
    /// round-robin: before/after figures for a change
    #[arg(long, value_name = "BIN")]
    baseline: Option<PathBuf>,
    /// (internal) The kiosk's PC/SC monitor: print insertions and removals
    #[arg(long, hide = true)]
    monitor: bool,
    /// (internal) One floor iteration on READER as a whole process
    #[arg(long, value_name = "READER", hide = true)]
    floor_once: Option<String>,
}

pub struct Opts {
    pub work: PathBuf,
    pub quick: bool,
    pub runs: usize,
    pub warmup: usize,
    pub kiosk_runs: usize,
    pub doc: Option<PathBuf>,
    pub raw: Option<PathBuf>,
    pub kiosk: bool,
    pub callgrind: bool,
    /// Another scunblock binary (e.g. built before a change), measured alongside.
    pub baseline: Option<PathBuf>,
    pub bin: PathBuf,
    pub repo: PathBuf,
    pub opensc_tool: PathBuf,
}

/// The options; `--monitor` and `--floor-once` run here and exit.
pub fn parse_opts() -> Opts {
    let cli = Cli::parse();
    if cli.monitor {
        monitor();
    }
    if let Some(reader) = &cli.floor_once {
        // One floor iteration as a whole process (the "floor as a process" row).
        Floor::new(reader).run().unwrap_or_else(|e| die(e));
        std::process::exit(0);
    }
    let Some(work) = cli.work else {
        die("--work DIR is required");
    };
    let quick = cli.quick;
    let runs = cli.runs.map_or(if quick { 15 } else { 101 }, |n| {
        usize::try_from(n).unwrap_or_else(|_| die("--runs: too many"))
    });
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
        warmup: cli.warmup.unwrap_or(if quick { 2 } else { 5 }),
        kiosk_runs: cli.kiosk_runs.unwrap_or(if quick { 1 } else { 15 }),
        doc: cli.doc,
        raw: cli.raw,
        kiosk: !cli.no_kiosk,
        callgrind: !cli.no_callgrind && !quick,
        baseline: cli.baseline,
        bin,
        repo,
        opensc_tool: std::env::var_os("OPENSC_TOOL")
            .map(PathBuf::from)
            .unwrap_or_else(|| "opensc-tool".into()),
    }
}
