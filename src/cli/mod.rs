//! The command line: parse, validate every input, call the library, report.

mod args;
mod output;

use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use zeroize::Zeroizing;

pub use args::Cli;
use args::{AuthArgs, CmArgs, CmAuthMode, Command, Global, PinArgs};
use output::Reporter;

use crate::admin_key::AdminKey;
use crate::card::{Applet, IsoApplet};
use crate::cm_client::{CmAuth, CmClient, CmConfig};
use crate::cm_responder::{Approval, CmResponder};
use crate::error::Error;
use crate::flow::{self, Mode, Options};
use crate::ids::Guid;
use crate::negotiate::NegotiateConfig;
use crate::profile::CardProfile;
use crate::reader::{self, Connection, ReaderSelector};
use crate::responder::{LocalKey, Manual, Responder};
use crate::secret::{self, Pin, Source, Token};
use crate::transport::Trace;

/// Parse the command line, run, and return the process exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    crate::log::set_verbose(cli.global.verbose);
    secret::disable_core_dumps();
    let reporter = Reporter::new(cli.global.json, cli.command.name());
    match run(&cli, &reporter) {
        Ok(()) => 0,
        Err(f) => {
            reporter.failure(&f.error, f.outcome.as_ref());
            f.error.exit_code()
        }
    }
}

type CmdResult = Result<(), Box<flow::Failure>>;

fn run(cli: &Cli, reporter: &Reporter) -> CmdResult {
    let g = &cli.global;
    match &cli.command {
        Command::Readers => {
            let ctx = reader::establish()?;
            let readers = reader::list(&ctx)?;
            reporter.readers(&readers);
            Ok(())
        }
        Command::Info => {
            let applet = applet(g)?;
            let sel = ReaderSelector::parse(g.reader.as_deref())?;
            let mut conn = connect(g, &sel)?;
            let result = flow::inspect(&mut conn, &applet, &trace(g));
            conn.close(false);
            match result {
                Ok(outcome) => {
                    reporter.info(&outcome);
                    Ok(())
                }
                Err(f) => Err(f),
            }
        }
        Command::Unblock(a) => {
            let mode = if a.common.dry_run {
                Mode::DryRun
            } else {
                Mode::Unblock
            };
            unblock(g, &a.common, Some(&a.pin), mode, reporter)
        }
        Command::Auth(a) => {
            let mode = if a.dry_run {
                Mode::DryRun
            } else {
                Mode::AuthOnly
            };
            unblock(g, a, None, mode, reporter)
        }
    }
}

/// `unblock` and `auth`: validate every input, then touch the card.
fn unblock(
    g: &Global,
    a: &AuthArgs,
    pin: Option<&PinArgs>,
    mode: Mode,
    reporter: &Reporter,
) -> CmdResult {
    // 1. Everything the user gave, checked before the card is touched.
    let applet = applet(g)?;
    let card_id = a
        .card_id
        .as_deref()
        .map(|c| Guid::parse(c, "--card-id"))
        .transpose()?;
    let sel = ReaderSelector::parse(g.reader.as_deref())?;
    let new_pin = match (mode, pin) {
        (Mode::Unblock, Some(p)) => Some(new_pin(p, &applet)?),
        _ => None,
    };
    let mut responder = responder(a, card_id.as_ref(), mode, g.json)?;
    let opts = Options {
        mode,
        force_last_try: a.force_last_try,
        trace: trace(g),
        card_id: card_id.map(|c| c.to_string()),
    };

    // 2. The card.
    let mut conn = connect(g, &sel)?;
    let result = flow::run(
        &mut conn,
        &applet,
        responder.as_mut(),
        new_pin.as_ref(),
        &opts,
    );
    let authenticated = match &result {
        Ok(o) => o.challenge_sent,
        Err(f) => f.outcome.as_ref().is_some_and(|o| o.challenge_sent),
    };
    // Drop any admin security state this run created.
    conn.close(authenticated);
    match result {
        Ok(outcome) => {
            reporter.unblocked(mode, &outcome);
            Ok(())
        }
        Err(f) => Err(f),
    }
}

fn applet(g: &Global) -> Result<IsoApplet, Error> {
    let profile = match &g.profile {
        Some(path) => CardProfile::load(path)?,
        None => CardProfile::iso(),
    };
    Ok(IsoApplet::new(profile))
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
    let chosen = reader::wait_for_reader(&ctx, sel, wait)?;
    crate::log::verbose(format!("reader: {}", chosen.name));
    Connection::open(&ctx, &chosen.name, wait)
}

/// The responder for the key source the user chose.
fn responder(
    a: &AuthArgs,
    card_id: Option<&Guid>,
    mode: Mode,
    json: bool,
) -> Result<Box<dyn Responder>, Error> {
    let k = &a.key;
    if let Some(url) = &k.cm {
        return cm_responder(url, &a.cm, card_id, json);
    }
    let key_source = match (&k.admin_key_file, &k.admin_key_env) {
        (Some(path), None) => Some(Source::File(path)),
        (None, Some(var)) => Some(Source::Env(var)),
        _ => None,
    };
    if let Some(source) = key_source {
        let text = secret::read(&source, "admin key", k.allow_insecure_key_file)?;
        let key = AdminKey::parse(&text)?;
        crate::log::verbose(format!(
            "admin key: {} bytes, check value {}",
            key.len(),
            key.check_value()
        ));
        return Ok(Box::new(LocalKey::new(key)));
    }
    if k.manual {
        return Ok(Box::new(Manual::new(std::io::stdin().lock())));
    }
    if mode == Mode::DryRun {
        // Nothing will be authenticated: no key needed.
        return Ok(Box::new(Manual::new(std::io::empty())));
    }
    Err(Error::usage(
        "choose where the admin response comes from: --admin-key-file PATH, --admin-key-env VAR, --cm URL or --manual",
    ))
}

/// The CM responder, with every CM option checked before the card is touched.
fn cm_responder(
    url: &str,
    c: &CmArgs,
    card_id: Option<&Guid>,
    json: bool,
) -> Result<Box<dyn Responder>, Error> {
    let card_id = card_id.cloned().ok_or_else(|| {
        Error::usage(
            "--card-id is required with --cm: the iso card profile cannot read the card id \
             from the card (CM shows it as the smartcard's SerialNumber)",
        )
    })?;
    let request_id = c
        .request_id
        .as_deref()
        .map(|r| Guid::parse(r, "--request-id"))
        .transpose()?;
    let smartcard_id = c
        .smartcard_id
        .as_deref()
        .map(|s| Guid::parse(s, "--smartcard-id"))
        .transpose()?;
    if request_id.is_some() && smartcard_id.is_none() {
        crate::log::verbose(
            "--request-id without --smartcard-id: looking the smartcard up by --card-id",
        );
    }
    let token_given = c.cm_token_env.is_some() || c.cm_token_file.is_some();
    let mode = c.cm_auth.unwrap_or(if token_given {
        CmAuthMode::Bearer
    } else {
        CmAuthMode::Negotiate
    });
    let auth = match mode {
        CmAuthMode::Bearer => {
            let raw = match (&c.cm_token_env, &c.cm_token_file) {
                (Some(var), _) => secret::read(&Source::Env(var), "bearer token", false)?,
                (None, Some(path)) => secret::read(&Source::File(path), "bearer token", false)?,
                (None, None) => return Err(Error::usage(
                    "--cm-auth bearer needs the token: --cm-token-env VAR or --cm-token-file PATH",
                )),
            };
            let text = std::str::from_utf8(secret::strip_line_end(&raw))
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
                .ok_or_else(|| Error::usage("the bearer token is empty or not printable ASCII"))?;
            CmAuth::Bearer(Token::new(Zeroizing::new(text.to_string())))
        }
        _ if token_given => {
            return Err(Error::usage(
                "--cm-token-env/--cm-token-file go with --cm-auth bearer",
            ))
        }
        CmAuthMode::None => CmAuth::None,
        CmAuthMode::Negotiate => CmAuth::Negotiate(NegotiateConfig {
            spn: c.cm_spn.clone(),
            keytab: c.keytab.clone(),
            channel_binding: c.cm_channel_binding,
        }),
    };
    if !(c.approval_poll.is_finite() && c.approval_poll > 0.0 && c.approval_poll <= 3600.0) {
        return Err(Error::usage(
            "--approval-poll must be between 0 and 3600 seconds",
        ));
    }
    if c.timeout == 0 {
        return Err(Error::usage("--timeout must be at least 1 second"));
    }
    let client = CmClient::new(CmConfig {
        url: url.to_string(),
        auth,
        ca_file: c.cm_ca_file.clone(),
        client_cert: c.cm_client_cert.clone(),
        client_key: c.cm_client_key.clone(),
        timeout: Duration::from_secs(c.timeout),
        allow_http: c.allow_http,
    })?;
    let approval = Approval {
        timeout: Duration::from_secs(c.approval_timeout),
        poll: Duration::from_secs_f64(c.approval_poll),
    };
    Ok(Box::new(CmResponder::new(
        client,
        card_id,
        request_id,
        smartcard_id,
        c.diversified,
        approval,
        Box::new(move |p| output::progress(json, p)),
    )))
}

/// The new PIN from the one source given, checked against the profile.
fn new_pin(p: &PinArgs, applet: &IsoApplet) -> Result<Pin, Error> {
    let bytes: Zeroizing<Vec<u8>> = if let Some(var) = &p.new_pin_env {
        secret::read(&Source::Env(var), "new PIN", false)?
    } else if let Some(path) = &p.new_pin_file {
        let raw = secret::read(&Source::File(path), "new PIN", p.allow_insecure_pin_file)?;
        Zeroizing::new(secret::strip_line_end(&raw).to_vec())
    } else if p.new_pin_stdin {
        secret::read(&Source::Stdin, "new PIN", false)?
    } else if std::io::stdin().is_terminal() {
        secret::prompt_new_pin()?.ok_or_else(|| Error::usage("no terminal to ask for the PIN"))?
    } else {
        return Err(Error::usage(
            "give the new PIN with --new-pin-env VAR, --new-pin-file PATH or --new-pin-stdin \
             (standard input is not a terminal, so it cannot be asked for)",
        ));
    };
    let pin = Pin::new(bytes);
    applet.check_pin(&pin)?;
    Ok(pin)
}
