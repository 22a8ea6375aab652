//! Command line (clap: `--option VALUE` or `--option=VALUE`), and the server configuration
//! it builds.

use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _, Parser};

use crate::faults::{Faults, Malformed, Target};
use crate::keys::{AdminKey, KeyStore};
use crate::state::{Flow, RequestStatus, State};

/// What the server serves, shown after the options in `--help`.
const ROUTES: &str = "\
Serves /CertificateManagement/api/v1.0 (any case):
  GET  /smartcards[?cardid=ID]            GET /smartcards/{scid}
  GET  /smartcards/{scid}/operations
  GET  /requests                          POST /requests {type, smartcard, datacollection, comment}
  GET  /requests/{id}                     PUT  /requests/{id} {status}
  GET  /requests/{reqid}/smartcards/{scid}/authenticationresponse?cardid=&challenge=&diversified=[&atr=]
  GET  /requests/{reqid}/smartcards/{scid}/diversifiedkey?cardid=[&atr=]
The docs' example card (scid 17cf063d-e337-4aa9-a822-346554ddd3c9, card id
bc88f13f-83ba-4037-8262-46eba1291c6e) and its approved request
a9b4b42c-cc50-4c9b-89d1-bbc0bcd5a099 always exist.";

/// scunblock-cmserver: a MIM CM REST API test server (loopback only; for tests and
/// benchmarks)
#[derive(Parser)]
// An option given twice takes its last value (repeatable ones collect every value).
#[command(name = "scunblock-cmserver", after_help = ROUTES, args_override_self = true)]
struct Cli {
    /// Prints `listening on http(s)://IP:PORT`
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:0",
        help_heading = "Listening"
    )]
    listen: String,
    /// Also write the port number to FILE
    #[arg(long, value_name = "FILE", help_heading = "Listening")]
    port_file: Option<PathBuf>,
    /// Serve https with this certificate (needs --tls-key)
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_key",
        help_heading = "Listening"
    )]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_cert",
        help_heading = "Listening"
    )]
    tls_key: Option<PathBuf>,
    /// Require a client certificate issued by this CA (mutual TLS)
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_cert",
        help_heading = "Listening"
    )]
    client_ca: Option<PathBuf>,
    /// Exit when stdin closes (the test harness holds the pipe)
    #[arg(long, help_heading = "Listening")]
    exit_on_stdin_eof: bool,
    /// Append one JSON line per request (`-` = stderr)
    #[arg(long, value_name = "FILE", help_heading = "Listening")]
    log: Option<PathBuf>,

    /// Register a smart card (repeatable)
    #[arg(long, value_name = "SCID=CARDID", value_parser = guid_pair, help_heading = "Cards and keys")]
    smartcard: Vec<(String, String)>,
    /// A card's operations, comma-separated [default: renew,unblock,retire]
    #[arg(long, value_name = "SCID=LIST", value_parser = operations, help_heading = "Cards and keys")]
    operations: Vec<(String, Vec<String>)>,
    /// Operations of cards without --operations
    #[arg(long, value_name = "LIST", value_parser = ops_list, help_heading = "Cards and keys")]
    default_operations: Option<OpsList>,
    /// The Atr reported for a card
    #[arg(long, value_name = "SCID=HEX", value_parser = pair, help_heading = "Cards and keys")]
    atr: Vec<(String, String)>,
    /// Register an approved Unblock request (repeatable)
    #[arg(long, value_name = "REQID=SCID", value_parser = guid_pair, help_heading = "Cards and keys")]
    request: Vec<(String, String)>,
    /// A card's 3DES admin key, 24 or 16 bytes (repeatable)
    #[arg(long, value_name = "CARDID=HEX", value_parser = card_key, help_heading = "Cards and keys")]
    key: Vec<(String, AdminKey)>,
    /// Mark a card diversified, with this key (repeatable)
    #[arg(long, value_name = "CARDID=HEX", value_parser = card_key, help_heading = "Cards and keys")]
    diversified_key: Vec<(String, AdminKey)>,
    /// Key for cards without --key [default: 24 zero bytes]
    #[arg(long, value_name = "HEX", value_parser = AdminKey::from_hex, help_heading = "Cards and keys")]
    default_key: Option<AdminKey>,
    /// Unknown card ids/smart cards/requests are accepted (made up)
    #[arg(long, help_heading = "Cards and keys")]
    lenient: bool,

    /// The first N GET /requests/{id} answer Pending (0: approved at creation)
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        help_heading = "Request flow"
    )]
    approve_after: u32,
    /// Decide Denied instead of Approved
    #[arg(long, help_heading = "Request flow")]
    deny: bool,
    /// Status as a name ("Approved") instead of a number (3)
    #[arg(long, help_heading = "Request flow")]
    status_names: bool,

    /// Answer ENDPOINT with CODE (204 or 300-599); ENDPOINT is all or authresponse,
    /// diversifiedkey, smartcards, smartcard, operations, list-requests, create-request,
    /// get-request, put-request
    #[arg(long, value_name = "ENDPOINT=CODE", value_parser = fail_rule, help_heading = "Faults")]
    fail: Vec<(Target, u16)>,
    /// = --fail authresponse=CODE (500 carries a correlation id)
    #[arg(long, value_name = "CODE", value_parser = Faults::parse_code, help_heading = "Faults")]
    fail_authresponse: Vec<u16>,
    /// Only the first N matching requests fail
    #[arg(long, value_name = "N", help_heading = "Faults")]
    fail_times: Option<u32>,
    /// Sleep before answering ENDPOINT
    #[arg(long, value_name = "ENDPOINT=MS", value_parser = delay_rule, help_heading = "Faults")]
    delay: Vec<(Target, u64)>,
    /// = --delay authresponse=MS
    #[arg(long, value_name = "MS", help_heading = "Faults")]
    delay_ms: Vec<u64>,
    /// 200 authenticationresponse that is broken: json (not JSON), base64 (not base64),
    /// length (7 bytes), length9 (9 bytes)
    #[arg(long, value_name = "KIND", value_parser = Malformed::parse, help_heading = "Faults")]
    malformed: Option<Malformed>,
    /// Answer challenges with a different key
    #[arg(long, help_heading = "Faults")]
    wrong_response: bool,
    /// Answer every API request CODE (400 or 500) with the request's headers in the body (a
    /// detailed error page, a WAF, a proxy)
    #[arg(long, value_name = "CODE", value_parser = echo_code, help_heading = "Faults")]
    echo_headers: Option<u16>,
    /// Answer every API request 200 with a JSON string of BYTES bytes
    #[arg(long, value_name = "BYTES", help_heading = "Faults")]
    huge_body: Option<usize>,

    /// 401 (WWW-Authenticate: Bearer) without `Authorization: Bearer TOKEN`
    #[arg(long, value_name = "TOKEN", help_heading = "Authentication")]
    require_bearer: Option<String>,
    /// Answer everything 401 with WWW-Authenticate: Negotiate
    #[arg(long = "always-401", help_heading = "Authentication")]
    always_401: bool,
    /// Require Negotiate (SPNEGO/Kerberos), verified with the service keys in KT, per
    /// connection as IIS does (replay cache next to KT)
    #[arg(long, value_name = "KT", help_heading = "Authentication")]
    negotiate_keytab: Option<PathBuf>,
    /// Accept only tickets for this service principal
    #[arg(
        long,
        value_name = "SVC/HOST",
        requires = "negotiate_keytab",
        help_heading = "Authentication"
    )]
    negotiate_spn: Option<String>,
    /// No connection stays signed in (IIS authPersistSingleRequest)
    #[arg(long, requires = "negotiate_keytab", help_heading = "Authentication")]
    negotiate_per_request: bool,
    /// Check tls-server-end-point bindings of --tls-cert (require), or expect those of
    /// another certificate (wrong: every sign-in fails)
    #[arg(long, value_name = "require|wrong", value_parser = crate::negotiate::ChannelBinding::parse, requires = "negotiate_keytab", help_heading = "Authentication")]
    negotiate_channel_binding: Option<crate::negotiate::ChannelBinding>,
}

/// A comma-separated list (a newtype: clap reads a bare `Vec` field as repeated values).
#[derive(Clone)]
struct OpsList(Vec<String>);

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Clone)]
pub struct AuthGate {
    pub always_401: bool,
    pub bearer: Option<String>,
    /// `--negotiate-keytab` and friends (see negotiate.rs).
    pub negotiate: Option<crate::negotiate::Options>,
}

#[derive(Debug)]
pub struct Config {
    pub listen: String,
    pub port_file: Option<PathBuf>,
    pub log: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    pub exit_on_stdin_eof: bool,
    pub lenient: bool,
    pub auth: AuthGate,
    pub keys: KeyStore,
    pub faults: Faults,
    pub state: State,
}

/// `NAME=VALUE`.
fn pair(v: &str) -> Result<(String, String), String> {
    v.split_once('=')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| format!("{v:?}: expected NAME=VALUE"))
}

/// `GUID=VALUE`.
fn guid_pair(v: &str) -> Result<(String, String), String> {
    let (id, value) = pair(v)?;
    if crate::util::is_guid(&id) {
        Ok((id, value))
    } else {
        Err(format!("{id:?} is not a GUID"))
    }
}

fn split_ops(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn ops_list(v: &str) -> Result<OpsList, String> {
    Ok(OpsList(split_ops(v)))
}

fn operations(v: &str) -> Result<(String, Vec<String>), String> {
    let (scid, list) = pair(v)?;
    Ok((scid, split_ops(&list)))
}

fn card_key(v: &str) -> Result<(String, AdminKey), String> {
    let (card, hex) = pair(v)?;
    Ok((card, AdminKey::from_hex(&hex)?))
}

fn fail_rule(v: &str) -> Result<(Target, u16), String> {
    let (ep, code) = pair(v)?;
    Ok((Target::parse(&ep)?, Faults::parse_code(&code)?))
}

fn delay_rule(v: &str) -> Result<(Target, u64), String> {
    let (ep, ms) = pair(v)?;
    let ms = ms
        .parse()
        .map_err(|_| format!("{v:?}: expected milliseconds"))?;
    Ok((Target::parse(&ep)?, ms))
}

fn echo_code(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(c @ (400 | 500)) => Ok(c),
        _ => Err(format!("{v:?}: expected 400 or 500")),
    }
}

/// The configuration of this process; on a usage error or `--help`, clap's message and
/// exit.
pub fn from_args() -> Config {
    parse(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// The configuration from `argv` (the program name first).
pub fn parse<I, T>(argv: I) -> Result<Config, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    config(cli, &matches).map_err(|e| Cli::command().error(ErrorKind::ValueValidation, e))
}

/// `--fail` and `--fail-authresponse` rules in command-line order (for one endpoint the
/// last rule wins, whichever option gave it).
fn fail_rules(cli: &mut Cli, matches: &ArgMatches) -> Vec<(Target, u16)> {
    let at = |id: &str| -> Vec<usize> { matches.indices_of(id).into_iter().flatten().collect() };
    let auth = Target::One(crate::routes::Endpoint::AuthResponse);
    let mut rules: Vec<(usize, (Target, u16))> = at("fail")
        .into_iter()
        .zip(std::mem::take(&mut cli.fail))
        .chain(
            at("fail_authresponse")
                .into_iter()
                .zip(cli.fail_authresponse.iter().map(|&code| (auth, code))),
        )
        .collect();
    rules.sort_by_key(|(i, _)| *i);
    rules.into_iter().map(|(_, rule)| rule).collect()
}

/// The rules between options that clap does not carry, and the server state they build.
fn config(mut cli: Cli, matches: &ArgMatches) -> Result<Config, String> {
    let mut keys = KeyStore::default();
    for (card, key) in &cli.key {
        keys.insert(card, *key);
    }
    for (card, key) in &cli.diversified_key {
        keys.insert_diversified(card, *key);
    }
    if let Some(key) = cli.default_key {
        keys.set_default(key);
    }

    let auth_delay = Target::One(crate::routes::Endpoint::AuthResponse);
    let mut faults = Faults::default();
    faults.fail = fail_rules(&mut cli, matches);
    faults.fail_times = cli.fail_times;
    faults.delay = cli
        .delay
        .iter()
        .copied()
        .chain(cli.delay_ms.iter().map(|&ms| (auth_delay, ms)))
        .collect();
    faults.malformed = cli.malformed;
    faults.wrong_response = cli.wrong_response;
    faults.echo_headers = cli.echo_headers;
    faults.huge_body = cli.huge_body;

    let auth = AuthGate {
        always_401: cli.always_401,
        bearer: cli.require_bearer,
        negotiate: cli
            .negotiate_keytab
            .map(|keytab| crate::negotiate::Options {
                keytab,
                spn: cli.negotiate_spn,
                channel_binding: cli.negotiate_channel_binding,
                per_request: cli.negotiate_per_request,
            }),
    };

    // clap checks that --tls-cert and --tls-key come together (and --client-ca with them).
    let tls = match (cli.tls_cert, cli.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            client_ca: cli.client_ca,
        }),
        _ => None,
    };

    let flow = Flow {
        approve_after: cli.approve_after,
        deny: cli.deny,
        status_names: cli.status_names,
    };
    let mut state = State::new(flow, cli.default_operations.map(|o| o.0));
    for (scid, card) in &cli.smartcard {
        state.add_smartcard(scid, card);
    }
    for (reqid, scid) in &cli.request {
        state.add_request(reqid, scid, RequestStatus::Approved);
    }
    for (scid, ops) in cli.operations {
        state.set_operations(&scid, ops)?;
    }
    for (scid, atr) in &cli.atr {
        state.set_atr(scid, atr)?;
    }

    Ok(Config {
        listen: cli.listen,
        port_file: cli.port_file,
        log: cli.log,
        tls,
        exit_on_stdin_eof: cli.exit_on_stdin_eof,
        lenient: cli.lenient,
        auth,
        keys,
        faults,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        parse(std::iter::once(&"scunblock-cmserver").chain(args)).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        assert!(c.tls.is_none());
        assert_eq!(
            c.state.operations_or_default(crate::state::DOCS_SMARTCARD),
            ["renew", "unblock", "retire"]
        );
    }

    #[test]
    fn options() {
        let sc = "11111111-2222-3333-4444-555555555555";
        let c = run(&[
            "--smartcard",
            &format!("{sc}=aaaaaaaa-0000-0000-0000-000000000001"),
            &format!("--operations={sc}=renew,retire"),
            "--key",
            &format!("aaaaaaaa-0000-0000-0000-000000000001={}", "01".repeat(24)),
            "--fail-authresponse",
            "500",
            "--delay-ms=250",
            "--malformed",
            "length9",
            "--approve-after",
            "2",
            "--deny",
        ])
        .unwrap();
        assert_eq!(c.state.operations_or_default(sc), ["renew", "retire"]);
        assert_eq!(c.faults.fail.len(), 1);
        assert_eq!(c.faults.malformed, Some(Malformed::Length9));
        assert_eq!(c.state.flow.approve_after, 2);
        assert!(c.state.flow.deny);
    }

    #[test]
    fn fail_rules_keep_their_order() {
        let auth = Target::One(crate::routes::Endpoint::AuthResponse);
        let c = run(&["--fail-authresponse", "503", "--fail", "authresponse=500"]).unwrap();
        assert_eq!(c.faults.fail, [(auth, 503), (auth, 500)]);
        let c = run(&["--fail=authresponse=500", "--fail-authresponse=503"]).unwrap();
        assert_eq!(c.faults.fail, [(auth, 500), (auth, 503)]);
    }

    #[test]
    fn an_option_given_twice_takes_its_last_value() {
        let c = run(&[
            "--approve-after",
            "1",
            "--approve-after",
            "3",
            "--listen=127.0.0.1:1",
        ])
        .unwrap();
        assert_eq!(c.state.flow.approve_after, 3);
        assert_eq!(c.listen, "127.0.0.1:1");
    }

    #[test]
    fn errors() {
        assert!(run(&["--nope"]).is_err());
        assert!(run(&["--listen"]).is_err());
        assert!(run(&["--key", "x"]).is_err());
        assert!(run(&["--default-key", "0011"]).is_err());
        assert!(run(&["--fail-authresponse", "200"]).is_err());
        assert!(run(&["--tls-cert", "a.pem"]).is_err());
        assert!(run(&["--deny=yes"]).is_err());
        assert!(run(&["--operations", "11111111-2222-3333-4444-555555555555=x"]).is_err());
        assert!(run(&["--smartcard", "notaguid=x"]).is_err());
        let help = parse(["scunblock-cmserver", "--help"])
            .err()
            .map(|e| e.kind());
        assert_eq!(help, Some(clap::error::ErrorKind::DisplayHelp));
    }
}
