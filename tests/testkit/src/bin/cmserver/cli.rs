//! Command line. No parser crate: the options are few and all of one of two shapes
//! (`--flag` or `--option VALUE` / `--option=VALUE`).

use std::path::PathBuf;

use crate::faults::{Faults, Malformed, Target};
use crate::keys::{AdminKey, KeyStore};
use crate::state::{Flow, RequestStatus, State};

pub const USAGE: &str = "\
scunblock-cmserver: a MIM CM REST API test server (loopback only; for tests and benchmarks)

Serves /CertificateManagement/api/v1.0 (any case):
  GET  /smartcards[?cardid=ID]            GET /smartcards/{scid}
  GET  /smartcards/{scid}/operations
  GET  /requests                          POST /requests {type, smartcard, datacollection, comment}
  GET  /requests/{id}                     PUT  /requests/{id} {status}
  GET  /requests/{reqid}/smartcards/{scid}/authenticationresponse?cardid=&challenge=&diversified=[&atr=]
  GET  /requests/{reqid}/smartcards/{scid}/diversifiedkey?cardid=[&atr=]
The docs' example card (scid 17cf063d-e337-4aa9-a822-346554ddd3c9, card id
bc88f13f-83ba-4037-8262-46eba1291c6e) and its approved request
a9b4b42c-cc50-4c9b-89d1-bbc0bcd5a099 always exist.

Listening:
  --listen ADDR               default 127.0.0.1:0; prints `listening on http(s)://IP:PORT`
  --port-file FILE            also write the port number to FILE
  --tls-cert PEM --tls-key PEM   serve https
  --client-ca PEM             require a client certificate issued by this CA (mutual TLS)
  --exit-on-stdin-eof         exit when stdin closes (the test harness holds the pipe)
  --log FILE                  append one JSON line per request (`-` = stderr)
Cards and keys:
  --smartcard SCID=CARDID     register a smart card (repeatable)
  --operations SCID=LIST      its operations, comma-separated (default renew,unblock,retire)
  --default-operations LIST   operations of cards without --operations
  --atr SCID=HEX              the Atr reported for a card
  --request REQID=SCID        register an approved Unblock request (repeatable)
  --key CARDID=HEX            a card's 3DES admin key, 24 or 16 bytes (repeatable)
  --diversified-key CARDID=HEX   mark a card diversified, with this key (repeatable)
  --default-key HEX           key for cards without --key (default 24 zero bytes)
  --lenient                   unknown card ids/smart cards/requests are accepted (made up)
Request flow:
  --approve-after N           the first N GET /requests/{id} answer Pending (default 0:
                              approved at creation)
  --deny                      decide Denied instead of Approved
  --status-names              Status as a name (\"Approved\") instead of a number (3)
Faults:
  --fail ENDPOINT=CODE        answer ENDPOINT with CODE (204 or 300-599); ENDPOINT is all or
                              authresponse, diversifiedkey, smartcards, smartcard, operations,
                              list-requests, create-request, get-request, put-request
  --fail-authresponse CODE    = --fail authresponse=CODE (500 carries a correlation id)
  --fail-times N              only the first N matching requests fail
  --delay ENDPOINT=MS         sleep before answering ENDPOINT
  --delay-ms MS               = --delay authresponse=MS
  --malformed KIND            200 authenticationresponse that is broken: json (not JSON),
                              base64 (not base64), length (7 bytes), length9 (9 bytes)
  --wrong-response            answer challenges with a different key
  --echo-headers CODE         answer every API request CODE (400 or 500) with the request's
                              headers in the body (a detailed error page, a WAF, a proxy)
  --huge-body BYTES           answer every API request 200 with a JSON string of BYTES bytes
Authentication:
  --require-bearer TOKEN      401 (WWW-Authenticate: Bearer) without `Authorization: Bearer TOKEN`
  --always-401                answer everything 401 with WWW-Authenticate: Negotiate
  --negotiate-keytab KT       require Negotiate (SPNEGO/Kerberos), verified with the service
                              keys in KT, per connection as IIS does (replay cache next to KT)
  --negotiate-spn SVC/HOST    accept only tickets for this service principal
  --negotiate-per-request     no connection stays signed in (IIS authPersistSingleRequest)
  --negotiate-channel-binding require|wrong
                              check tls-server-end-point bindings of --tls-cert (require), or
                              expect those of another certificate (wrong: every sign-in fails)
";

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

pub enum Parsed {
    Run(Box<Config>),
    Help,
}

fn pair<'a>(opt: &str, v: &'a str) -> Result<(&'a str, &'a str), String> {
    v.split_once('=')
        .ok_or_else(|| format!("{opt} {v:?}: expected NAME=VALUE"))
}

fn guid_arg(opt: &str, v: &str) -> Result<(), String> {
    if crate::util::is_guid(v) {
        Ok(())
    } else {
        Err(format!("{opt}: {v:?} is not a GUID"))
    }
}

fn ops_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut args = args.into_iter();
    let mut listen = "127.0.0.1:0".to_string();
    let mut port_file = None;
    let mut log = None;
    let (mut cert, mut key, mut client_ca) = (None, None, None);
    let mut exit_on_stdin_eof = false;
    let mut lenient = false;
    let mut auth = AuthGate::default();
    let (mut negotiate_keytab, mut negotiate_spn, mut negotiate_cb) = (None, None, None);
    let mut negotiate_per_request = false;
    let mut keys = KeyStore::default();
    let mut faults = Faults::default();
    let mut flow = Flow::default();
    let mut default_ops = None;
    let mut smartcards = Vec::new();
    let mut operations = Vec::new();
    let mut atrs = Vec::new();
    let mut requests = Vec::new();

    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let flag = |inline: &Option<String>| match inline {
            Some(_) => Err(format!("{name} takes no value")),
            None => Ok(()),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => args.next().ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--listen" => listen = value()?,
            "--port-file" => port_file = Some(PathBuf::from(value()?)),
            "--log" => log = Some(PathBuf::from(value()?)),
            "--tls-cert" => cert = Some(PathBuf::from(value()?)),
            "--tls-key" => key = Some(PathBuf::from(value()?)),
            "--client-ca" => client_ca = Some(PathBuf::from(value()?)),
            "--exit-on-stdin-eof" => {
                flag(&inline)?;
                exit_on_stdin_eof = true
            }
            "--lenient" => {
                flag(&inline)?;
                lenient = true
            }
            "--key" => {
                let v = value()?;
                let (card, hex) = pair(&name, &v)?;
                keys.insert(card, AdminKey::from_hex(hex)?);
            }
            "--diversified-key" => {
                let v = value()?;
                let (card, hex) = pair(&name, &v)?;
                keys.insert_diversified(card, AdminKey::from_hex(hex)?);
            }
            "--default-key" => keys.set_default(AdminKey::from_hex(&value()?)?),
            "--smartcard" => {
                let v = value()?;
                let (scid, card) = pair(&name, &v)?;
                guid_arg(&name, scid)?;
                smartcards.push((scid.to_string(), card.to_string()));
            }
            "--operations" => {
                let v = value()?;
                let (scid, list) = pair(&name, &v)?;
                operations.push((scid.to_string(), ops_list(list)));
            }
            "--default-operations" => default_ops = Some(ops_list(&value()?)),
            "--atr" => {
                let v = value()?;
                let (scid, atr) = pair(&name, &v)?;
                atrs.push((scid.to_string(), atr.to_string()));
            }
            "--request" => {
                let v = value()?;
                let (reqid, scid) = pair(&name, &v)?;
                guid_arg(&name, reqid)?;
                requests.push((reqid.to_string(), scid.to_string()));
            }
            "--approve-after" => {
                let v = value()?;
                flow.approve_after = v
                    .parse()
                    .map_err(|_| format!("--approve-after {v:?}: expected a number"))?;
            }
            "--deny" => {
                flag(&inline)?;
                flow.deny = true
            }
            "--status-names" => {
                flag(&inline)?;
                flow.status_names = true
            }
            "--fail" => {
                let v = value()?;
                let (ep, code) = pair(&name, &v)?;
                faults
                    .fail
                    .push((Target::parse(ep)?, Faults::parse_code(code)?));
            }
            "--fail-authresponse" => {
                let code = Faults::parse_code(&value()?)?;
                faults
                    .fail
                    .push((Target::One(crate::routes::Endpoint::AuthResponse), code));
            }
            "--fail-times" => {
                let v = value()?;
                faults.fail_times = Some(
                    v.parse()
                        .map_err(|_| format!("--fail-times {v:?}: expected a number"))?,
                );
            }
            "--delay" => {
                let v = value()?;
                let (ep, ms) = pair(&name, &v)?;
                let ms = ms
                    .parse()
                    .map_err(|_| format!("--delay {v:?}: expected milliseconds"))?;
                faults.delay.push((Target::parse(ep)?, ms));
            }
            "--delay-ms" => {
                let v = value()?;
                let ms = v
                    .parse()
                    .map_err(|_| format!("--delay-ms {v:?}: expected milliseconds"))?;
                faults
                    .delay
                    .push((Target::One(crate::routes::Endpoint::AuthResponse), ms));
            }
            "--malformed" => faults.malformed = Some(Malformed::parse(&value()?)?),
            "--wrong-response" => {
                flag(&inline)?;
                faults.wrong_response = true
            }
            "--echo-headers" => {
                let v = value()?;
                match v.parse::<u16>() {
                    Ok(c @ (400 | 500)) => faults.echo_headers = Some(c),
                    _ => return Err(format!("--echo-headers {v:?}: expected 400 or 500")),
                }
            }
            "--huge-body" => {
                let v = value()?;
                faults.huge_body = Some(
                    v.parse()
                        .map_err(|_| format!("--huge-body {v:?}: expected bytes"))?,
                );
            }
            "--require-bearer" => auth.bearer = Some(value()?),
            "--always-401" => {
                flag(&inline)?;
                auth.always_401 = true
            }
            "--negotiate-keytab" => negotiate_keytab = Some(PathBuf::from(value()?)),
            "--negotiate-spn" => negotiate_spn = Some(value()?),
            "--negotiate-per-request" => {
                flag(&inline)?;
                negotiate_per_request = true
            }
            "--negotiate-channel-binding" => {
                negotiate_cb = Some(crate::negotiate::ChannelBinding::parse(&value()?)?)
            }
            other => return Err(format!("unknown option {other:?} (see --help)")),
        }
    }

    auth.negotiate = match (negotiate_keytab, negotiate_spn, negotiate_cb) {
        (None, None, None) if !negotiate_per_request => None,
        (Some(keytab), spn, channel_binding) => Some(crate::negotiate::Options {
            keytab,
            spn,
            channel_binding,
            per_request: negotiate_per_request,
        }),
        _ => return Err("--negotiate-* options need --negotiate-keytab".into()),
    };

    let tls = match (cert, key, client_ca) {
        (None, None, None) => None,
        (Some(cert), Some(key), client_ca) => Some(TlsFiles {
            cert,
            key,
            client_ca,
        }),
        _ => {
            return Err("--tls-cert and --tls-key go together (and --client-ca needs them)".into())
        }
    };

    let mut state = State::new(flow, default_ops);
    for (scid, card) in &smartcards {
        state.add_smartcard(scid, card);
    }
    for (reqid, scid) in &requests {
        state.add_request(reqid, scid, RequestStatus::Approved);
    }
    for (scid, ops) in operations {
        state.set_operations(&scid, ops)?;
    }
    for (scid, atr) in &atrs {
        state.set_atr(scid, atr)?;
    }

    Ok(Parsed::Run(Box::new(Config {
        listen,
        port_file,
        log,
        tls,
        exit_on_stdin_eof,
        lenient,
        auth,
        keys,
        faults,
        state,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(c) => Ok(*c),
            Parsed::Help => Err("help".into()),
        }
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
        assert!(matches!(parse(["--help".to_string()]), Ok(Parsed::Help)));
    }
}
