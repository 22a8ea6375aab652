//! The command line: parse, validate every input, call the library, report.
//! One file per command (readers, info, unblock and auth, watch, respond); the
//! clap definition is args.rs, the CM options cm.rs, the terminal prompts
//! prompt.rs and every report output.rs. This file parses and dispatches.

mod args;
mod cm;
mod info;
mod output;
mod prompt;
mod readers;
mod respond;
mod unblock;
mod version;
mod watch;

use std::time::Duration;

use args::{CmArgs, Command, Global, KeyArgs};
use output::Reporter;
use scunblock::error::Error;
use scunblock::flow;
use scunblock::key_source::{KeySource, Use};
use scunblock::profile::ProfileChoice;
use scunblock::reader::{self, Connection, ReaderSelector};
use scunblock::responder::{CardContext, Responder};
use scunblock::secret;
use scunblock::transport::Trace;

/// Parse the command line, run, and return the process exit code.
pub fn main() -> u8 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    scunblock::log::set_verbose(cli.global.verbose);
    secret::disable_core_dumps();
    // `watch` writes one event per line itself; its startup errors go to stderr.
    let json = cli.global.json && !matches!(cli.command, Command::Watch(_));
    let reporter = Reporter::new(json, cli.command.name());
    match run(&cli, &reporter) {
        Ok(()) => 0,
        Err(f) => {
            reporter.failure(&f.error, f.outcome.as_ref());
            f.error.exit_code()
        }
    }
}

type CmdResult = Result<(), Box<flow::Failure>>;

/// Parse through clap's `try_get_matches_from`, so that every usage error, clap's own
/// included, is exit 2 and, with `--json` on the command line, the JSON error document.
/// `--help` and `--version` print and exit 0.
fn parse(args: &[std::ffi::OsString]) -> Result<args::Cli, u8> {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = args::Cli::command().long_version(version::long());
    let parsed = command
        .try_get_matches_from_mut(args)
        .and_then(|mut m| args::Cli::from_arg_matches_mut(&mut m));
    // The command tree is freed by the process's exit, not here (once per process, also
    // for `watch`): dropping its thousands of small allocations cost a local-key unblock
    // 0.12 M of its 1.78 M instructions. `from_arg_matches_mut` takes the values out of
    // the matches instead of copying them all first (docs/performance.md).
    std::mem::forget(command);
    let e = match parsed {
        Ok(cli) => return Ok(cli),
        Err(e) => e,
    };
    if !e.use_stderr() {
        let _ = e.print();
        return Err(0);
    }
    // Before a lone "--", `--json` is the option; after it, an operand.
    let words = args
        .iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str());
    let (mut json, mut command) = (false, "scunblock");
    for w in words {
        json |= w == "--json";
        if command == "scunblock" {
            if let Some(c) = ["readers", "info", "unblock", "auth", "watch", "respond"]
                .into_iter()
                .find(|c| *c == w)
            {
                command = c;
            }
        }
    }
    // clap's message without its "error: ", the usage block and the pointer to --help,
    // which the hint gives.
    let rendered = e.render().to_string();
    let message = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join("\n");
    let message = message.trim().trim_start_matches("error:").trim();
    let error = Error::usage(message);
    Reporter::new(json, command).failure(&error, None);
    Err(2)
}

fn run(cli: &args::Cli, reporter: &Reporter) -> CmdResult {
    let g = &cli.global;
    match &cli.command {
        Command::Readers => readers::run(reporter),
        Command::Info => info::run(g, reporter),
        Command::Unblock(a) => unblock::run(g, &a.common, Some((&a.pin, &a.puk)), reporter),
        Command::Auth(a) => unblock::run(g, a, None, reporter),
        Command::Watch(a) => watch::run(g, a),
        Command::Respond(a) => respond::run(a, reporter, g.json),
    }
}

/// `--profile`, or the profiles detection chooses from.
fn profiles(g: &Global) -> Result<ProfileChoice, Error> {
    ProfileChoice::new(g.profile.as_deref(), g.profiles_dir.as_deref())
}

fn trace(g: &Global) -> Trace {
    Trace {
        enabled: g.trace,
        prefix: String::new(),
    }
}

fn connect(g: &Global, sel: &ReaderSelector) -> Result<Connection, Error> {
    let ctx = reader::establish()?;
    let wait = Duration::from_secs(g.wait_card);
    let chosen = reader::select(&ctx, sel, wait)?;
    scunblock::log::verbose(format!("reader: {chosen}"));
    Connection::open(&ctx, &chosen, wait)
}

/// The MIM CM options without `--cm`: refused, not silently ignored. clap's
/// `requires = "cm"` (args.rs) cannot say it alone: clap waives a requirement
/// whose target conflicts with an argument given, and `--cm` conflicts with
/// the other key sources, so `--admin-key-file K --request-id R` passes it.
fn cm_options_need_cm(key: &KeyArgs, cm: &CmArgs) -> Result<(), Error> {
    if key.cm.is_none() && cm.any_given() {
        return Err(Error::usage(
            "the MIM CM options (--request-id, --cm-auth, ...) need --cm URL",
        ));
    }
    Ok(())
}

/// The responder for one card (`unblock`, `auth`, `respond`), from the one
/// factory every command uses; a token PIN not given is asked on the terminal.
fn one_responder(
    source: &KeySource,
    purpose: Use,
    cm: &CmArgs,
    json: bool,
) -> Result<Box<dyn Responder>, Error> {
    let factory = source.factory(
        purpose,
        &|url, p| cm::factory(url, cm, p, json),
        Some(&prompt::token_pin),
    )?;
    factory.make(&CardContext::default())
}
