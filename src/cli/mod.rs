//! The command line: parse, validate every input, call the library, report.

mod args;
mod output;
mod respond;
mod version;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

pub use args::Cli;
use args::{AuthArgs, CmArgs, CmAuthMode, Command, Global, PinArgs, PukArgs, WatchArgs};
use output::Reporter;

use crate::cm_client::{CmAuth, CmClient, CmConfig};
use crate::cm_responder::{Approval, CmResponder};
use crate::error::Error;
use crate::flow::{self, Mode, Options};
use crate::ids::Guid;
use crate::key_source::{KeySource, ResponderFactory, SecretFrom, SecretKind, Use};
use crate::negotiate::NegotiateConfig;
use crate::profile::ProfileChoice;
use crate::reader::{self, Connection, ReaderSelector};
use crate::responder::{CardContext, NoResponder, Responder};
use crate::secret::{self, Pin, Source, Token};
use crate::transport::Trace;

/// Parse the command line, run, and return the process exit code.
pub fn main() -> u8 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(code) => return code,
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

/// Parse through clap's `try_get_matches_from`, so that every usage error, clap's own
/// included, is exit 2 and, with `--json` on the command line, the JSON error document.
/// `--help` and `--version` print and exit 0.
fn parse(args: &[std::ffi::OsString]) -> Result<Cli, u8> {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    let parsed = command
        .try_get_matches_from_mut(args)
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m));
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
            if let Some(c) = ["readers", "info", "unblock", "auth", "watch"]
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
            let profiles = profiles(g)?;
            let sel = ReaderSelector::parse(g.reader.as_deref())?;
            let mut conn = connect(g, &sel)?;
            let result = flow::identify(&mut conn, &profiles, &trace(g))
                .map_err(Box::<flow::Failure>::from)
                .and_then(|(applet, source)| {
                    let mut o = flow::inspect(&mut conn, applet.as_ref(), &trace(g))?;
                    o.profile_source = Some(source);
                    Ok(o)
                });
            conn.close(false);
            let outcome = result?;
            reporter.info(&outcome);
            Ok(())
        }
        Command::Unblock(a) => unblock(g, &a.common, Some((&a.pin, &a.puk)), reporter),
        Command::Auth(a) => unblock(g, a, None, reporter),
        Command::Watch(a) => watch(g, a),
        Command::Respond(a) => respond::run(a, reporter, g.json),
    }
}

/// `unblock` and `auth`: validate every input, then touch the card.
fn unblock(
    g: &Global,
    a: &AuthArgs,
    unblock: Option<(&PinArgs, &PukArgs)>,
    reporter: &Reporter,
) -> CmdResult {
    // 1. Everything the user gave, checked before the card is touched.
    let profiles = profiles(g)?;
    let card_id = a
        .card_id
        .as_deref()
        .map(|c| Guid::parse(c, "--card-id"))
        .transpose()?;
    let sel = ReaderSelector::parse(g.reader.as_deref())?;
    let puk_given = unblock.is_some_and(|(_, puk)| puk.given());
    let key_given = a.key.given();
    if unblock.is_some() && !a.dry_run && !key_given && !puk_given {
        return Err(Error::usage(
            "unblock needs where the admin response comes from (--admin-key-file PATH, \
             --admin-key-env VAR, --pkcs11-key URI, --cm URL or --manual) or, for a PIV card, \
             the PUK \
             (--puk-env VAR, --puk-file PATH, --puk-stdin or --puk-prompt)",
        )
        .into());
    }
    let new_pin = match unblock {
        Some((p, _)) if !a.dry_run => Some(read_new_pin(p)?),
        _ => None,
    };
    let puk = match unblock {
        Some((_, p)) if !a.dry_run && puk_given => Some(read_puk(p)?),
        _ => None,
    };
    let mut responder = if puk_given || (a.dry_run && !key_given) {
        Box::new(NoResponder)
    } else {
        responder(a, g.json)?
    };
    let mode = match (&new_pin, &puk) {
        _ if a.dry_run => Mode::DryRun,
        (Some(new_pin), Some(puk)) => Mode::UnblockWithPuk { puk, new_pin },
        (Some(new_pin), None) => Mode::Unblock { new_pin },
        _ => Mode::AuthOnly,
    };
    let opts = Options {
        mode,
        force_last_try: a.force_last_try,
        allow_unknown_tries: a.allow_unknown_tries,
        trace: trace(g),
        card_id,
    };

    // 2. The card: its family, then the one flow.
    let mut conn = connect(g, &sel)?;
    let result = flow::identify(&mut conn, &profiles, &opts.trace)
        .and_then(|(applet, source)| {
            flow::check_fit(applet.as_ref(), &mode, key_given).map(|()| (applet, source))
        })
        .map_err(Box::<flow::Failure>::from)
        .and_then(|(applet, source)| {
            flow::run(&mut conn, applet.as_ref(), responder.as_mut(), &opts)
                .map(|mut o| {
                    o.profile_source = Some(source);
                    o
                })
                .map_err(|mut f| {
                    if let Some(o) = f.outcome.as_mut() {
                        o.profile_source = Some(source);
                    }
                    f
                })
        });
    let authenticated = match &result {
        Ok(o) => o.response_sent || o.puk_sent,
        Err(f) => f
            .outcome
            .as_ref()
            .is_some_and(|o| o.response_sent || o.puk_sent),
    };
    // Drop any security state this run created.
    conn.close(authenticated);
    let outcome = result?;
    reporter.unblocked(&mode, &outcome);
    Ok(())
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
    crate::log::verbose(format!("reader: {chosen}"));
    Connection::open(&ctx, &chosen, wait)
}

/// The responder for the key source the user chose (one card), from the one
/// factory every command uses. Whether it needs the card id is decided once
/// the card is read (the flow's preflight).
fn responder(a: &AuthArgs, json: bool) -> Result<Box<dyn Responder>, Error> {
    if a.key.cm.is_none() && a.cm.any_given() {
        return Err(Error::usage(
            "the MIM CM options (--request-id, --cm-auth, ...) need --cm URL",
        ));
    }
    let Some(source) = a.key.source() else {
        return Err(Error::usage(
            "choose where the admin response comes from: --admin-key-file PATH, \
             --admin-key-env VAR, --pkcs11-key URI, --cm URL or --manual",
        ));
    };
    one_responder(&source, Use::OneCard, &a.cm, json)
}

/// The responder for one card (`unblock`, `auth`, `respond`), from the one
/// factory every command uses.
fn one_responder(
    source: &KeySource,
    purpose: Use,
    cm: &CmArgs,
    json: bool,
) -> Result<Box<dyn Responder>, Error> {
    let factory = source.factory(purpose, &|url, p| cm_factory(url, cm, p, json))?;
    factory.make(&CardContext::default())
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
            "--request-id without --smartcard-id: looking the smartcard up by the card id",
        );
    }
    let setup = cm_setup(url, c)?;
    // Checks the URL, TLS files and client options now, before the card.
    drop(setup.client()?);
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
            crate::scrub::register_raw(&raw);
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
        request_id: Option<Guid>,
        smartcard_id: Option<Guid>,
        progress: Box<dyn FnMut(&crate::cm_responder::Progress)>,
    ) -> Result<Box<dyn Responder>, Error> {
        Ok(Box::new(CmResponder::new(
            self.client()?,
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
    let profiles = profiles(g)?;
    let readers = crate::watch::readers(g.reader.as_deref())?;
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
        puk_command: a.puk_command.clone(),
        allow_unknown_tries: a.allow_unknown_tries,
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
        readers,
        trace: g.trace,
        json: g.json,
        hidden_env,
    };
    crate::watch::run(cfg, profiles, responders)?;
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

    fn make(&self, _card: &crate::responder::CardContext) -> Result<Box<dyn Responder>, Error> {
        let json = self.json;
        self.setup.responder(
            self.request_id.clone(),
            self.smartcard_id.clone(),
            Box::new(move |p| output::progress(json, p)),
        )
    }
}

/// The PUK from the one source given (checked against the card's policy
/// once the family is known).
fn read_puk(p: &PukArgs) -> Result<Pin, Error> {
    let bytes: Zeroizing<Vec<u8>> = if let Some(var) = &p.puk_env {
        secret::read(&Source::Env(var), "PUK", false)?
    } else if let Some(path) = &p.puk_file {
        let raw = secret::read(&Source::File(path), "PUK", false)?;
        Zeroizing::new(secret::strip_line_end(&raw).to_vec())
    } else if p.puk_stdin {
        secret::read(&Source::Stdin, "PUK", false)?
    } else {
        secret::prompt_secret("PUK: ")?
            .ok_or_else(|| Error::usage("--puk-prompt: no terminal to ask for the PUK"))?
    };
    let puk = Pin::new(bytes);
    puk.register_for_scrubbing();
    Ok(puk)
}

/// The new PIN from the one source given (checked against the card's policy
/// once the family is known).
fn read_new_pin(p: &PinArgs) -> Result<Pin, Error> {
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
    pin.register_for_scrubbing();
    Ok(pin)
}
