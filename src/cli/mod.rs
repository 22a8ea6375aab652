//! The command line: parse, validate every input, call the library, report.

mod args;
mod output;
mod respond;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use zeroize::Zeroizing;

pub use args::Cli;
use args::{AuthArgs, CmArgs, CmAuthMode, Command, Global, PinArgs, WatchArgs};
use output::Reporter;

use crate::card::{Applet, IsoApplet};
use crate::cm_client::{CmAuth, CmClient, CmConfig};
use crate::cm_responder::{Approval, CmResponder};
use crate::error::Error;
use crate::flow::{self, Mode, Options};
use crate::ids::Guid;
use crate::key_source::{KeySource, ResponderFactory, SecretFrom, SecretKind, Use};
use crate::negotiate::NegotiateConfig;
use crate::profile::CardProfile;
use crate::reader::{self, Connection, ReaderSelector};
use crate::responder::{CardContext, NoResponder, Responder};
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
        Command::Watch(a) => watch(g, a),
        Command::Respond(a) => respond::run(a, reporter, g.json),
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
    let chosen = reader::select(&ctx, sel, wait)?;
    crate::log::verbose(format!("reader: {chosen}"));
    Connection::open(&ctx, &chosen, wait)
}

/// The responder for the key source the user chose (one card).
fn responder(
    a: &AuthArgs,
    card_id: Option<&Guid>,
    mode: Mode,
    json: bool,
) -> Result<Box<dyn Responder>, Error> {
    if a.key.cm.is_none() && a.cm.any_given() {
        return Err(Error::usage(
            "the MIM CM options (--request-id, --cm-auth, ...) need --cm URL",
        ));
    }
    let Some(source) = a.key.source() else {
        if mode == Mode::DryRun {
            // Nothing will be authenticated: no key needed.
            return Ok(Box::new(NoResponder));
        }
        return Err(Error::usage(
            "choose where the admin response comes from: --admin-key-file PATH, \
             --admin-key-env VAR, --pkcs11-key URI, --cm URL or --manual",
        ));
    };
    one_responder(&source, Use::OneCard, &a.cm, card_id, json)
}

/// The responder for one card (`unblock`, `auth`, `respond`), from the one
/// factory every command uses.
fn one_responder(
    source: &KeySource,
    purpose: Use,
    cm: &CmArgs,
    card_id: Option<&Guid>,
    json: bool,
) -> Result<Box<dyn Responder>, Error> {
    let factory = source.factory(purpose, &|url, p| cm_factory(url, cm, p, json))?;
    if factory.needs_card_id() && card_id.is_none() {
        return Err(Error::usage(match source {
            KeySource::Cm(_) => {
                "--card-id is required with --cm: the iso card profile cannot read the card id \
                 from the card (CM shows it as the smartcard's SerialNumber)"
            }
            _ => {
                "the key's label uses {card_id}: give --card-id GUID (the iso card profile \
                 cannot read the card id from the card)"
            }
        }));
    }
    factory.make(&CardContext {
        card_id: card_id.map(Guid::to_string),
        ..CardContext::default()
    })
}

/// The CM arm of [`KeySource::factory`], with every CM option checked
/// before the card is touched.
fn cm_factory(
    url: &str,
    c: &CmArgs,
    purpose: Use,
    json: bool,
) -> Result<Arc<dyn ResponderFactory>, Error> {
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
    if purpose == Use::Watch && (request_id.is_some() || smartcard_id.is_some()) {
        return Err(Error::usage(
            "watch: --request-id and --smartcard-id belong to one card; watch finds or \
             creates the CM request of each card itself",
        ));
    }
    if request_id.is_some() && smartcard_id.is_none() {
        crate::log::verbose(
            "--request-id without --smartcard-id: looking the smartcard up by --card-id",
        );
    }
    let setup = cm_setup(url, c)?;
    if purpose == Use::Watch {
        // Checks the URL, TLS files and client options now, not at the first card.
        // (For one card, make() builds the client, after the card id is checked.)
        drop(setup.client()?);
    }
    Ok(Arc::new(CmFactory {
        setup,
        json,
        request_id,
        smartcard_id,
    }))
}

/// Everything to reach CM, read and checked once: each card's responder
/// (`watch` makes one per card) is built from it.
struct CmSetup {
    url: String,
    auth: CmAuth,
    ca_file: Option<std::path::PathBuf>,
    client_cert: Option<std::path::PathBuf>,
    client_key: Option<std::path::PathBuf>,
    timeout: Duration,
    allow_http: bool,
    diversified: bool,
    approval: Approval,
}

/// Read the CM token and check every CM option, once.
fn cm_setup(url: &str, c: &CmArgs) -> Result<CmSetup, Error> {
    let token_given = c.cm_token_env.is_some() || c.cm_token_file.is_some();
    let mode = c.cm_auth.unwrap_or(if token_given {
        CmAuthMode::Bearer
    } else {
        CmAuthMode::Negotiate
    });
    let auth = match mode {
        CmAuthMode::Bearer => {
            let raw = match (&c.cm_token_env, &c.cm_token_file) {
                (Some(var), _) => SecretKind::CmToken.read(&SecretFrom::Env(var.clone()), false)?,
                (None, Some(path)) => {
                    SecretKind::CmToken.read(&SecretFrom::File(path.clone()), false)?
                }
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
    Ok(CmSetup {
        url: url.to_string(),
        auth,
        ca_file: c.cm_ca_file.clone(),
        client_cert: c.cm_client_cert.clone(),
        client_key: c.cm_client_key.clone(),
        timeout: Duration::from_secs(c.timeout),
        allow_http: c.allow_http,
        diversified: c.diversified,
        approval: Approval {
            timeout: Duration::from_secs(c.approval_timeout),
            poll: Duration::from_secs_f64(c.approval_poll),
        },
    })
}

impl CmSetup {
    fn client(&self) -> Result<CmClient, Error> {
        CmClient::new(CmConfig {
            url: self.url.clone(),
            auth: match &self.auth {
                CmAuth::None => CmAuth::None,
                CmAuth::Bearer(t) => CmAuth::Bearer(t.clone()),
                CmAuth::Negotiate(n) => CmAuth::Negotiate(n.clone()),
            },
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            timeout: self.timeout,
            allow_http: self.allow_http,
        })
    }

    fn responder(
        &self,
        card_id: Guid,
        request_id: Option<Guid>,
        smartcard_id: Option<Guid>,
        progress: Box<dyn FnMut(&crate::cm_responder::Progress)>,
    ) -> Result<Box<dyn Responder>, Error> {
        Ok(Box::new(CmResponder::new(
            self.client()?,
            card_id,
            request_id,
            smartcard_id,
            self.diversified,
            self.approval,
            progress,
        )))
    }
}

/// `watch`: check every option, load the key (or CM setup) once, then watch
/// until SIGTERM/SIGINT.
fn watch(g: &Global, a: &WatchArgs) -> CmdResult {
    // Before anything can start a thread: SIGTERM/SIGINT go to one thread.
    crate::watch::block_signals();
    let applet = applet(g)?;
    let readers = match ReaderSelector::parse(g.reader.as_deref())? {
        ReaderSelector::Auto => crate::watch::ReaderFilter::All,
        ReaderSelector::Exact(n) => crate::watch::ReaderFilter::Exact(n),
        ReaderSelector::Substring(s) => crate::watch::ReaderFilter::Substring(s),
        ReaderSelector::Index(_) => {
            return Err(Error::usage(
                "watch: --reader N (an index) changes as readers come and go; \
                 give @NAME or part of the name",
            )
            .into())
        }
    };
    let k = &a.key;
    if k.cm.is_none() && a.cm.any_given() {
        return Err(Error::usage(
            "the MIM CM options (--cm-auth, --cm-ca-file, ...) need --cm URL",
        )
        .into());
    }
    let source = k.source();
    if !a.unblock && source.is_some() {
        return Err(Error::usage(
            "watch: the key source (admin key, --pkcs11-key, --cm, --manual) is only used \
             with --unblock",
        )
        .into());
    }
    if a.unblock && source.is_none() {
        return Err(Error::usage(
            "watch --unblock: choose where the admin response comes from: \
             --admin-key-file PATH, --admin-key-env VAR, --pkcs11-key URI or --cm URL",
        )
        .into());
    }
    if a.unblock && a.new_pin_command.is_none() {
        return Err(Error::usage(
            "watch --unblock needs --new-pin-command CMD: the kiosk front end that asks the \
             card holder for the new PIN (see docs/kiosk.md)",
        )
        .into());
    }
    for (secs, name) in [
        (a.new_pin_timeout, "--new-pin-timeout"),
        (a.card_id_timeout, "--card-id-timeout"),
    ] {
        if secs == 0 {
            return Err(Error::usage(format!("{name} must be at least 1 second")).into());
        }
    }
    // The key is read, CM checked or the token logged in to, once, before
    // any reader is watched.
    let responders = match &source {
        Some(src) if a.unblock => {
            Some(src.factory(Use::Watch, &|url, p| cm_factory(url, &a.cm, p, g.json))?)
        }
        _ => None,
    };
    // Secrets' variables: already removed by secret::read; the commands'
    // environments drop them again by name.
    let hidden_env = source
        .iter()
        .flat_map(KeySource::secret_vars)
        .chain(a.cm.cm_token_env.iter().cloned())
        .collect();
    let cfg = crate::watch::Config {
        unblock: a.unblock,
        always: a.always,
        retry_after_failure: a.retry_after_failure,
        new_pin_command: a.new_pin_command.clone(),
        new_pin_timeout: Duration::from_secs(a.new_pin_timeout),
        card_id_command: a.card_id_command.clone(),
        card_id_timeout: Duration::from_secs(a.card_id_timeout),
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
        readers,
        trace: g.trace,
        json: g.json,
        hidden_env,
    };
    crate::watch::run(cfg, Arc::new(applet), responders)?;
    Ok(())
}

/// One CM responder per card (each holds its card's request); for one
/// card, the request and smartcard the user named.
struct CmFactory {
    setup: CmSetup,
    json: bool,
    request_id: Option<Guid>,
    smartcard_id: Option<Guid>,
}

impl ResponderFactory for CmFactory {
    fn name(&self) -> &'static str {
        "cm"
    }

    fn needs_card_id(&self) -> bool {
        true
    }

    fn make(&self, card: &crate::responder::CardContext) -> Result<Box<dyn Responder>, Error> {
        let id = card
            .card_id
            .as_deref()
            .ok_or_else(|| Error::responder("CM needs the card id; none is known"))?;
        let card_id = Guid::parse(id, "the card id")?;
        let json = self.json;
        self.setup.responder(
            card_id,
            self.request_id.clone(),
            self.smartcard_id.clone(),
            Box::new(move |p| output::progress(json, p)),
        )
    }
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
