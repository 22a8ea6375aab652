//! scunblock-holdcard: another PC/SC client, for the fault tests (tests/faults.rs). It takes a
//! reader's card the way other smart card software would and holds it, or resets it.
//!
//! ```text
//! scunblock-holdcard [--reader NAME] [--mode MODE] [--hold SECS] [--repeat N] [--interval-ms MS]
//!   MODE exclusive    connect SCARD_SHARE_EXCLUSIVE, hold SECS, disconnect (default)
//!        transaction  connect shared, SCardBeginTransaction, hold SECS, end it
//!        reset        connect shared, then N times (every MS): SCardReconnect with
//!                     SCARD_RESET_CARD; then disconnect leaving the card
//!        disconnect-reset  connect shared, disconnect with SCARD_RESET_CARD
//! ```
//!
//! stdout, one line each, flushed: `held` once it has the card (the test waits for it), then
//! `released`; in the reset modes `reset ok` or `reset error: <pcsc error>` per attempt. The
//! pcscd socket comes from PCSCLITE_CSOCK_NAME like any client. Exit 0, or 1 with the PC/SC
//! error on stderr (no reader, no card, sharing violation ...). The default reader is the
//! first one PC/SC lists.

use std::ffi::CString;
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use pcsc::{Card, Context, Disposition, Protocols, Scope, ShareMode};

/// Another PC/SC client for the fault tests: takes a reader's card and holds it, or resets
/// it. Prints `held` once it has the card, then `released` (and `reset ok` or `reset error:
/// ...` per reset).
#[derive(Parser)]
#[command(name = "scunblock-holdcard", args_override_self = true)]
struct Options {
    /// The reader [default: the first one PC/SC lists]
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
    /// What to do with the card
    #[arg(long, value_enum, default_value_t = Mode::Exclusive)]
    mode: Mode,
    /// How long to hold the card (exclusive, transaction), in seconds (at most a day)
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = seconds)]
    hold: Duration,
    /// How many resets (reset)
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: u32,
    /// Between two resets, in ms (reset)
    #[arg(long = "interval-ms", value_name = "MS", default_value_t = 50)]
    interval_ms: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Connect SCARD_SHARE_EXCLUSIVE, hold SECS, disconnect
    Exclusive,
    /// Connect shared, SCardBeginTransaction, hold SECS, end it
    Transaction,
    /// Connect shared, then N times (every MS): SCardReconnect with SCARD_RESET_CARD; then
    /// disconnect leaving the card
    Reset,
    /// Connect shared, disconnect with SCARD_RESET_CARD
    DisconnectReset,
}

/// Seconds, clamped to 0..=one day; NaN and infinities are refused (no panic).
fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() => Ok(Duration::from_secs_f64(secs.clamp(0.0, 86_400.0))),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn connect(ctx: &Context, reader: &CString, mode: ShareMode) -> anyhow::Result<Card> {
    ctx.connect(reader, mode, Protocols::ANY).context("connect")
}

fn run(o: &Options) -> anyhow::Result<()> {
    let ctx = Context::establish(Scope::User).context("establish")?;
    let reader = match &o.reader {
        Some(r) => CString::new(r.as_str()).context("the reader name has a NUL")?,
        None => match ctx
            .list_readers_owned()
            .context("list readers")?
            .into_iter()
            .next()
        {
            Some(r) => r,
            None => bail!("no reader"),
        },
    };
    match o.mode {
        Mode::Exclusive => {
            let card = connect(&ctx, &reader, ShareMode::Exclusive)?;
            say("held");
            std::thread::sleep(o.hold);
            card.disconnect(Disposition::LeaveCard)
                .map_err(|(_, e)| e)
                .context("disconnect")?;
            say("released");
        }
        Mode::Transaction => {
            let mut card = connect(&ctx, &reader, ShareMode::Shared)?;
            let tx = card.transaction().context("begin transaction")?;
            say("held");
            std::thread::sleep(o.hold);
            tx.end(Disposition::LeaveCard)
                .map_err(|(_, e)| e)
                .context("end transaction")?;
            say("released");
        }
        Mode::Reset => {
            let mut card = connect(&ctx, &reader, ShareMode::Shared)?;
            say("held");
            for k in 0..o.repeat {
                if k > 0 {
                    std::thread::sleep(Duration::from_millis(o.interval_ms));
                }
                match card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::ResetCard) {
                    Ok(()) => say("reset ok"),
                    Err(e) => say(&format!("reset error: {e}")),
                }
            }
            let _ = card.disconnect(Disposition::LeaveCard);
            say("released");
        }
        Mode::DisconnectReset => {
            let card = connect(&ctx, &reader, ShareMode::Shared)?;
            say("held");
            match card.disconnect(Disposition::ResetCard) {
                Ok(()) => say("reset ok"),
                Err((_, e)) => say(&format!("reset error: {e}")),
            }
            say("released");
        }
    }
    Ok(())
}

fn main() {
    // Usage errors: clap's message and exit code 2.
    let o = Options::parse();
    if let Err(e) = run(&o) {
        eprintln!("scunblock-holdcard: {e:#}");
        std::process::exit(1);
    }
}
