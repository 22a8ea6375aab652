//! The GIDS rows of the bench (issue 12 §9): a GIDS unblock by `scunblock` against OpenSC's
//! `gids-tool --unblock` on the same virtual GIDS card, in the same round-robin as the other
//! rows. Goal: scunblock's median wall time at most half of gids-tool's.
//!
//! The card lives on its own stack (`DIR/gids`, slot 0 of 2), so the main stack keeps one
//! card and `agent_auto` still finds exactly one. It is `scunblock-vcard --family gids` with
//! its default ATR (the TPM virtual smart card's, which the built-in `gids` profile claims),
//! the example key of Microsoft's GIDS docs (gids-tool takes 24-byte keys only) and a
//! blocked PIN at the start. Both tools set the same new PIN on every run, so the card does
//! the same work each time and nothing re-blocks it between runs.
//!
//! The two tools authenticate differently, each in its usual way: scunblock with GIDS's
//! external form (one 8-byte challenge, what a CM response fits), gids-tool with the mutual
//! form (two 16-byte randoms, 40-byte cryptograms both ways), then RESET RETRY COUNTER and,
//! for gids-tool, a logout. This compares the two programs doing one unblock, not the same
//! APDUs (the ISO rows do that against `opensc-tool`).
//!
//! gids-tool runs with the system's OpenSC configuration (what a user gets: its disconnect
//! leaves the card), and once more with `disconnect_action = reset`, the agent's card work.
//! Checks: every run must exit 0; gids-tool's output and the card's state (PIN, tries, one
//! RESET RETRY COUNTER per run) are checked before and after the round-robin.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use scunblock_testkit::stack::VStack;

use crate::proc::Proc;
use crate::report::verdict;
use crate::rows::{Action, Env, Row};
use crate::stats::{fmt_stat, Stat};
use crate::{die, insert, or_die, start_stack, NEW_PIN};

/// The GIDS example admin key (Microsoft's docs; gids-tool wants exactly 24 bytes).
const KEY: &str = "010203040506070801020304050607080102030405060708";
/// The goal: scunblock wall / gids-tool wall.
const GOAL: f64 = 0.5;

pub const AGENT: &str = "gids_agent";
pub const TOOL: &str = "gids_tool";
pub const TOOL_RESET: &str = "gids_tool_reset";

/// The GIDS stack and the commands that run against it.
pub struct Gids {
    stack: VStack,
    agent: Proc,
    tool: Proc,
    tool_reset: Proc,
}

impl Gids {
    /// Start the GIDS stack with its card, write the key file, build the commands.
    /// `reset_conf` is the OpenSC configuration with `disconnect_action = reset`.
    pub fn start(repo: &Path, work: &Path, env: &Env, reset_conf: &Path) -> Gids {
        let stack = start_stack(repo, work.join("gids"), 2);
        insert(
            &stack,
            0,
            &[
                "--family",
                "gids",
                "--admin-key",
                KEY,
                "--pin-tries",
                "0",
                "--quiet",
                "--no-apdu-log",
                "--state-on-events",
            ],
        );
        let key = work.join("gids-admin.key");
        fs::write(&key, format!("{KEY}\n")).expect("write the GIDS key file");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
            .expect("chmod the GIDS key file");
        let csock = stack.csock();
        let agent = Proc::new(
            &env.agent,
            &[
                &"--reader",
                &"0",
                &"unblock",
                &"--admin-key-file",
                &key,
                &"--new-pin-env",
                &"BENCH_NEW_PIN",
                &"--allow-unknown-tries",
            ],
        )
        .env("PCSCLITE_CSOCK_NAME", &csock)
        .env("BENCH_NEW_PIN", NEW_PIN);
        // The key and the PIN from the environment, as the third-party tests pass them.
        let tool = Proc::new(
            gids_tool(),
            &[
                &"-r",
                &"0",
                &"--unblock",
                &"--admin-key",
                &"env:BENCH_GIDS_KEY",
                &"--pin",
                &"env:BENCH_NEW_PIN",
            ],
        )
        .env("PCSCLITE_CSOCK_NAME", &csock)
        .env("BENCH_GIDS_KEY", KEY)
        .env("BENCH_NEW_PIN", NEW_PIN);
        let tool_reset = tool.clone().env("OPENSC_CONF", reset_conf);
        Gids {
            stack,
            agent,
            tool,
            tool_reset,
        }
    }

    /// The rows to add to the round-robin.
    pub fn rows(&self) -> Vec<Row> {
        vec![
            Row::new(
                AGENT,
                "`scunblock --reader 0 unblock --admin-key-file --allow-unknown-tries` (GIDS \
                 external authentication)",
                Action::Proc(Box::new(self.agent.clone())),
            ),
            Row::new(
                TOOL,
                "`gids-tool -r 0 --unblock --admin-key env:… --pin env:…` (GIDS mutual \
                 authentication; OpenSC's default disconnect leaves the card)",
                Action::Proc(Box::new(self.tool.clone())),
            ),
            Row::new(
                TOOL_RESET,
                "`gids-tool` as above, `disconnect_action = reset` (the agent's card work)",
                Action::Proc(Box::new(self.tool_reset.clone())),
            ),
        ]
    }

    /// The commands whose instructions callgrind counts (after `check_after`: these runs
    /// unblock the card too).
    pub fn callgrind_list(&self) -> Vec<(&'static str, Proc)> {
        vec![
            ("`scunblock unblock` (local key), GIDS", self.agent.clone()),
            ("`gids-tool --unblock`, GIDS", self.tool.clone()),
        ]
    }

    /// One run of each tool before the round-robin: both must unblock (exit 0, gids-tool
    /// saying so), the first one a blocked PIN.
    pub fn check_before(&self, work: &Path) {
        let err = work.join("stderr.txt");
        self.agent.measure_ok(None, &err).unwrap_or_else(|e| die(e));
        let out = work.join("gids-tool.out");
        self.tool
            .measure_ok(Some(&out), &err)
            .unwrap_or_else(|e| die(e));
        let text = fs::read_to_string(&out).unwrap_or_default();
        if !text.contains("Administrator authentication successful")
            || !text.contains("Unblock PIN done successfully")
        {
            die(format!("gids-tool --unblock did not unblock:\n{text}"));
        }
    }

    /// After `rounds` rounds of the rows: one more agent run (its reset at disconnect makes
    /// the card, started with `--state-on-events`, write its state), then the card must have
    /// seen one RESET RETRY COUNTER and one admin cryptogram per run, and hold the new PIN.
    pub fn check_after(&self, rounds: usize, work: &Path) {
        self.agent
            .measure_ok(None, &work.join("stderr.txt"))
            .unwrap_or_else(|e| die(e));
        // check_before's 2 runs, 3 rows per round, the run above.
        let runs = (2 + 3 * rounds + 1) as u64;
        let card = or_die(self.stack.try_card_state(0));
        if card["rrc"] != runs
            || card["admin_responses"] != runs
            || card["pin"] != NEW_PIN
            || card["pin_tries"] != 3
            || card["admin_tries"] != 5
        {
            die(format!(
                "the GIDS card is not in the expected state after {runs} unblocks: {card:#}"
            ));
        }
    }
}

/// `gids-tool` from PATH (the opensc package), or GIDS_TOOL.
fn gids_tool() -> PathBuf {
    std::env::var_os("GIDS_TOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| "gids-tool".into())
}

/// The markdown section: the three rows and the ratio against the goal.
pub fn report(s: &mut String, rows: &[Row]) {
    let must = |k: &str| {
        rows.iter()
            .find(|x| x.key == k)
            .unwrap_or_else(|| die(format!("no row {k}")))
    };
    let med = |s: Option<Stat>| s.map_or(f64::NAN, |s| s.median);
    let (agent, tool, reset) = (must(AGENT), must(TOOL), must(TOOL_RESET));
    let (wa, wt, wr) = (med(agent.wall()), med(tool.wall()), med(reset.wall()));
    let ratio = wa / wt;
    let _ = writeln!(
        s,
        "\n### GIDS: `scunblock` against `gids-tool --unblock` (issue 12)\n\nThe same virtual \
         GIDS card (`scunblock-vcard --family gids`, its own stack), the same new PIN, in the \
         same round-robin as the rows above. Each tool authenticates its usual way: scunblock \
         with GIDS's external form (one 8-byte challenge), gids-tool with the mutual form. \
         Median (min–max), ms and MiB.\n"
    );
    let _ = writeln!(
        s,
        "| command | wall ms | CPU ms | peak RSS MiB |\n|---|---|---|---|"
    );
    for x in [agent, tool, reset] {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            x.label,
            fmt_stat(x.wall(), 2),
            fmt_stat(x.cpu(), 2),
            fmt_stat(x.rss_mib(), 1)
        );
    }
    let _ = writeln!(
        s,
        "\n| measure | goal | measured | |\n|---|---|---|---|\n| scunblock wall / \
         gids-tool wall, GIDS unblock | ≤ {GOAL} | {ratio:.2} ({wa:.2} / {wt:.2} ms; {:.2} \
         against gids-tool resetting the card at disconnect, {wr:.2} ms) | {} |",
        wa / wr,
        verdict(ratio <= GOAL)
    );
}
