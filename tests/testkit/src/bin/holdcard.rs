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

use pcsc::{Card, Context, Disposition, Protocols, Scope, ShareMode};

const USAGE: &str = "usage: scunblock-holdcard [--reader NAME] \
[--mode exclusive|transaction|reset|disconnect-reset] [--hold SECS] [--repeat N] [--interval-ms MS]";

struct Options {
    reader: Option<String>,
    mode: String,
    hold: Duration,
    repeat: u32,
    interval: Duration,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        reader: None,
        mode: "exclusive".into(),
        hold: Duration::from_secs(5),
        repeat: 1,
        interval: Duration::from_millis(50),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--reader" => o.reader = Some(value()?),
            "--mode" => o.mode = value()?,
            "--hold" => {
                let s: f64 = value()?.parse().map_err(|_| "--hold: seconds")?;
                o.hold = Duration::from_secs_f64(s.clamp(0.0, 86_400.0));
            }
            "--repeat" => o.repeat = value()?.parse().map_err(|_| "--repeat: a count")?,
            "--interval-ms" => {
                o.interval = Duration::from_millis(value()?.parse().map_err(|_| "--interval-ms")?)
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !["exclusive", "transaction", "reset", "disconnect-reset"].contains(&o.mode.as_str()) {
        return Err(format!("unknown --mode {}", o.mode));
    }
    Ok(o)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn connect(ctx: &Context, reader: &CString, mode: ShareMode) -> Result<Card, String> {
    ctx.connect(reader, mode, Protocols::ANY)
        .map_err(|e| format!("connect: {e}"))
}

fn run(o: &Options) -> Result<(), String> {
    let ctx = Context::establish(Scope::User).map_err(|e| format!("establish: {e}"))?;
    let reader = match &o.reader {
        Some(r) => CString::new(r.as_str()).map_err(|_| "reader name has a NUL")?,
        None => ctx
            .list_readers_owned()
            .map_err(|e| format!("list readers: {e}"))?
            .into_iter()
            .next()
            .ok_or("no reader")?,
    };
    match o.mode.as_str() {
        "exclusive" => {
            let card = connect(&ctx, &reader, ShareMode::Exclusive)?;
            say("held");
            std::thread::sleep(o.hold);
            card.disconnect(Disposition::LeaveCard)
                .map_err(|(_, e)| format!("disconnect: {e}"))?;
            say("released");
        }
        "transaction" => {
            let mut card = connect(&ctx, &reader, ShareMode::Shared)?;
            let tx = card
                .transaction()
                .map_err(|e| format!("begin transaction: {e}"))?;
            say("held");
            std::thread::sleep(o.hold);
            tx.end(Disposition::LeaveCard)
                .map_err(|(_, e)| format!("end transaction: {e}"))?;
            say("released");
        }
        "reset" => {
            let mut card = connect(&ctx, &reader, ShareMode::Shared)?;
            say("held");
            for k in 0..o.repeat {
                if k > 0 {
                    std::thread::sleep(o.interval);
                }
                match card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::ResetCard) {
                    Ok(()) => say("reset ok"),
                    Err(e) => say(&format!("reset error: {e}")),
                }
            }
            let _ = card.disconnect(Disposition::LeaveCard);
            say("released");
        }
        _ => {
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
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("scunblock-holdcard: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&o) {
        eprintln!("scunblock-holdcard: {e}");
        std::process::exit(1);
    }
}
