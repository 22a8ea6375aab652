//! Windows Integrated Authentication for the CM client: HTTP Negotiate
//! (RFC 4559), Kerberos through SPNEGO, the way IIS in front of MIM CM expects.
//!
//! The exchange, once per run:
//! 1. A request goes out without `Authorization`. A `401` offering
//!    `WWW-Authenticate: Negotiate` starts a handshake (a 401 that does not
//!    offer Negotiate is handed back to the caller as it is).
//! 2. The same request is sent again with `Authorization: Negotiate <token>`.
//!    A `401` carrying a continuation token is answered with the next token,
//!    at most [`MAX_ROUNDS`] tokens per handshake, on the same keep-alive
//!    connection (the 401 bodies are drained so that reqwest reuses it).
//! 3. The final answer's `WWW-Authenticate: Negotiate <token>`, when CM sends
//!    one (IIS does for Kerberos), is checked: mutual authentication. A token
//!    that does not verify fails the call.
//! 4. IIS keeps a Kerberos-authenticated connection authenticated, so later
//!    requests go without `Authorization`. A later `401` (a new connection,
//!    or IIS with authPersistSingleRequest) runs one new handshake for that
//!    request. Every request runs at most one handshake of at most
//!    [`MAX_ROUNDS`] tokens, so nothing loops: a run makes at most as many
//!    handshakes as it makes CM calls.
//!
//! Not sending the token preemptively costs one anonymous `401` per run, and
//! gives the handshake the connection's TLS certificate for the channel
//! bindings (`--cm-channel-binding`, IIS Extended Protection: RFC 5929
//! tls-server-end-point, see [`channel_binding`]).
//!
//! Tokens come from GSSAPI with the SPNEGO mechanism on Unix (the ticket
//! cache after `kinit`, or a keytab), and from SSPI "Negotiate" on Windows
//! (the logged-on user). Both are behind the `negotiate` cargo feature (on
//! by default). NTLM is not offered on Unix. See docs/cm.md.

pub mod channel_binding;
#[cfg(all(feature = "negotiate", unix))]
mod gss;
#[cfg(all(feature = "negotiate", unix))]
mod gssapi;
#[cfg(all(feature = "negotiate", windows))]
mod sspi;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine;
use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use crate::error::Error;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Tokens sent in one handshake before giving up (Kerberos needs one).
pub const MAX_ROUNDS: u32 = 3;
/// The message for "no credentials", exactly.
pub const NO_TICKET: &str = "no Kerberos ticket: run kinit or give --keytab";
/// At most this much of a 401 body is read to keep the connection reusable.
const DRAIN_LIMIT: u64 = 256 * 1024;

/// What the user configured for Negotiate.
#[derive(Clone, Debug, Default)]
pub struct NegotiateConfig {
    /// `--cm-spn`: the service principal, default `HTTP/<host of --cm>`.
    pub spn: Option<String>,
    /// `--keytab` (or KRB5_CLIENT_KTNAME): sign in from a keytab.
    pub keytab: Option<PathBuf>,
    /// `--cm-channel-binding`: send tls-server-end-point channel bindings.
    pub channel_binding: bool,
}

/// A service principal name: `SERVICE/HOST` or `SERVICE/HOST@REALM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spn {
    pub service: String,
    pub host: String,
    pub realm: Option<String>,
}

impl Spn {
    /// `HTTP/<host>` for a CM URL's host (IPv6 brackets dropped).
    pub fn for_host(host: &str) -> Spn {
        Spn {
            service: "HTTP".to_string(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            realm: None,
        }
    }

    /// `--cm-spn`: `SERVICE/HOST[@REALM]`.
    pub fn parse(text: &str) -> Result<Spn, Error> {
        let bad = || {
            Error::usage(format!(
                "--cm-spn {text:?} is not a service principal: expected SERVICE/HOST or \
                 SERVICE/HOST@REALM, e.g. HTTP/cm.example.com"
            ))
        };
        if text.is_empty() || !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err(bad());
        }
        let (name, realm) = match text.rsplit_once('@') {
            Some((n, r)) if !r.is_empty() && !r.contains('/') => (n, Some(r.to_string())),
            Some(_) => return Err(bad()),
            None => (text, None),
        };
        let (service, host) = name.split_once('/').ok_or_else(bad)?;
        if service.is_empty() || host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(bad());
        }
        Ok(Spn {
            service: service.to_string(),
            host: host.to_string(),
            realm,
        })
    }
}

impl fmt::Display for Spn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.host)?;
        if let Some(r) = &self.realm {
            write!(f, "@{r}")?;
        }
        Ok(())
    }
}

/// Why the security package failed, for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No credentials (no ticket cache, nothing usable in it).
    NoCredentials,
    /// The ticket (or the credentials) expired.
    Expired,
    /// The KDC does not know the service principal.
    UnknownSpn,
    /// No KDC could be reached.
    KdcUnreachable,
    /// The server's token did not verify (mutual authentication, bindings).
    BadServerToken,
    /// Anything else.
    Other,
}

/// An error of the platform's security package: what kind, and its own words.
#[derive(Clone, Debug)]
pub struct MechError {
    pub failure: Failure,
    pub detail: String,
}

/// One handshake's security context.
trait Context {
    /// Feed the server's token (`None` to start); the token to send, if any.
    fn step(&mut self, input: Option<&[u8]>) -> Result<Option<Vec<u8>>, MechError>;
    /// The context is established (the last server token verified).
    fn is_complete(&self) -> bool;
}

/// A platform's security package with the credentials acquired once.
trait Provider {
    /// Who signs in, for `-v` (e.g. `user@REALM`).
    fn principal(&self) -> Option<String>;
    /// A fresh context for `spn`, with channel bindings (application data).
    fn context(&self, spn: &Spn, bindings: Option<Vec<u8>>) -> Result<Box<dyn Context>, MechError>;
}

/// What the handshake needs from an HTTP answer (a trait so that unit tests
/// can script the server).
trait Reply: Sized {
    fn status(&self) -> StatusCode;
    fn headers(&self) -> &HeaderMap;
    /// The DER server certificate of the connection (TLS only).
    fn peer_certificate(&self) -> Option<Vec<u8>>;
    /// Read and drop the body so that the connection can be reused.
    fn drain(self);
}

impl Reply for reqwest::blocking::Response {
    fn status(&self) -> StatusCode {
        reqwest::blocking::Response::status(self)
    }
    fn headers(&self) -> &HeaderMap {
        reqwest::blocking::Response::headers(self)
    }
    fn peer_certificate(&self) -> Option<Vec<u8>> {
        self.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .map(<[u8]>::to_vec)
    }
    fn drain(self) {
        let _ = std::io::copy(&mut self.take(DRAIN_LIMIT), &mut std::io::sink());
    }
}

/// Runs the Negotiate handshake for one CM client.
pub struct Negotiator {
    spn: Spn,
    keytab: Option<PathBuf>,
    channel_binding: bool,
    provider: Box<dyn Provider>,
    handshakes: u32,
    /// The last handshake succeeded and CM has not asked again since.
    signed_in: bool,
}

impl Negotiator {
    /// Check the options and acquire the credentials (before the card is
    /// touched): bad options exit 2, missing credentials exit 6.
    pub fn new(cfg: NegotiateConfig, base: &reqwest::Url) -> Result<Negotiator, Error> {
        let spn = match &cfg.spn {
            Some(text) => Spn::parse(text.trim())?,
            None => Spn::for_host(base.host_str().unwrap_or_default()),
        };
        if cfg.channel_binding && base.scheme() != "https" {
            return Err(Error::usage(
                "--cm-channel-binding binds the sign-in to the TLS connection: it needs an \
                 https --cm URL",
            ));
        }
        if let Some(kt) = &cfg.keytab {
            // A regular file, opened without blocking: a FIFO would hang the open.
            crate::secret::open_regular_file(kt, "--keytab", crate::secret::KEYTAB_FILE_CAP)?;
        }
        let provider =
            platform_provider(&cfg).map_err(|e| failure_message(e, &spn, cfg.keytab.as_deref()))?;
        crate::log::verbose(format!(
            "CM: Negotiate (Kerberos) as {} for {spn}{}",
            provider
                .principal()
                .unwrap_or_else(|| "the logged-on user".to_string()),
            match &cfg.keytab {
                Some(kt) => format!(", from keytab {}", kt.display()),
                None => String::new(),
            }
        ));
        Ok(Negotiator::with_provider(spn, cfg, provider))
    }

    fn with_provider(spn: Spn, cfg: NegotiateConfig, provider: Box<dyn Provider>) -> Negotiator {
        Negotiator {
            spn,
            keytab: cfg.keytab,
            channel_binding: cfg.channel_binding,
            provider,
            handshakes: 0,
            signed_in: false,
        }
    }

    /// How many handshakes ran.
    pub fn handshakes(&self) -> u32 {
        self.handshakes
    }

    /// Send a request (built by `send` with the given Authorization header),
    /// answering a Negotiate challenge.
    pub fn send(
        &mut self,
        send: &mut dyn FnMut(Option<String>) -> Result<reqwest::blocking::Response, Error>,
    ) -> Result<reqwest::blocking::Response, Error> {
        self.exchange(send)
    }

    fn exchange<R: Reply>(
        &mut self,
        send: &mut dyn FnMut(Option<String>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let first = send(None)?;
        if first.status() != StatusCode::UNAUTHORIZED || !offers_negotiate(first.headers()) {
            return Ok(first);
        }
        if self.signed_in {
            crate::log::verbose(
                "CM: asked to sign in again (a new connection, or IIS authPersistSingleRequest)",
            );
        }
        self.signed_in = false;
        self.handshake(first, send)
    }

    fn handshake<R: Reply>(
        &mut self,
        challenge: R,
        send: &mut dyn FnMut(Option<String>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.handshakes += 1;
        let started = Instant::now();
        let bindings = if self.channel_binding {
            let cert = challenge.peer_certificate().ok_or_else(|| {
                Error::responder(
                    "--cm-channel-binding: the connection to CM has no TLS server certificate",
                )
            })?;
            Some(
                channel_binding::application_data(&cert)
                    .map_err(|e| Error::responder(format!("--cm-channel-binding: {e}")))?,
            )
        } else {
            None
        };
        challenge.drain();
        let mut ctx = self
            .provider
            .context(&self.spn, bindings)
            .map_err(|e| self.failure(e))?;
        let mut token = match ctx.step(None).map_err(|e| self.failure(e))? {
            Some(t) => t,
            None => {
                return Err(Error::responder(format!(
                    "Negotiate for {}: the security package produced no token",
                    self.spn
                )))
            }
        };
        for round in 1..=MAX_ROUNDS {
            let reply = send(Some(format!("Negotiate {}", B64.encode(&token))))?;
            let server_token = negotiate_token(reply.headers())?;
            if reply.status() == StatusCode::UNAUTHORIZED {
                let next = match server_token {
                    Some(t) if !ctx.is_complete() => {
                        ctx.step(Some(&t)).map_err(|e| self.failure(e))?
                    }
                    _ => None,
                };
                reply.drain();
                match next {
                    Some(t) if round < MAX_ROUNDS => {
                        token = t;
                        continue;
                    }
                    Some(_) => break,
                    None => return Err(self.rejected()),
                }
            }
            // Any other status: CM took the token (403/404/500 are its
            // answers to the request, reported by the caller).
            if let Some(t) = server_token {
                if !ctx.is_complete() {
                    // The final token: it must verify and complete the context.
                    ctx.step(Some(&t)).map_err(|e| self.failure(e))?;
                    if !ctx.is_complete() {
                        return Err(self.failure(MechError {
                            failure: Failure::BadServerToken,
                            detail: "the handshake is not complete after CM's final token"
                                .to_string(),
                        }));
                    }
                }
            }
            let mutual = ctx.is_complete();
            self.signed_in = true;
            crate::log::verbose(format!(
                "CM: Negotiate handshake with {} done ({round} round{}, {}, {} ms)",
                self.spn,
                if round == 1 { "" } else { "s" },
                if mutual {
                    "mutual authentication verified"
                } else {
                    "CM sent no final token: mutual authentication not checked"
                },
                started.elapsed().as_millis()
            ));
            return Ok(reply);
        }
        Err(Error::responder(format!(
            "CM did not accept the Negotiate sign-in for {} within {MAX_ROUNDS} rounds",
            self.spn
        )))
    }

    fn failure(&self, e: MechError) -> Error {
        failure_message(e, &self.spn, self.keytab.as_deref())
    }

    fn rejected(&self) -> Error {
        Error::responder(format!(
            "CM rejected the Negotiate sign-in (401 to the Kerberos token for {spn}): check \
             that {spn} is registered on the CM web agent's account (setspn -Q {spn}) and its \
             key is current, that the clocks agree, and that IIS allows this user; with IIS \
             Extended Protection set to Require, add --cm-channel-binding",
            spn = self.spn
        ))
    }
}

#[cfg(all(feature = "negotiate", unix))]
fn platform_provider(cfg: &NegotiateConfig) -> Result<Box<dyn Provider>, MechError> {
    Ok(Box::new(gss::Gss::acquire(cfg.keytab.as_deref())?))
}

#[cfg(all(feature = "negotiate", windows))]
fn platform_provider(cfg: &NegotiateConfig) -> Result<Box<dyn Provider>, MechError> {
    if cfg.keytab.is_some() {
        return Err(MechError {
            failure: Failure::Other,
            detail: "--keytab is for Linux and macOS; on Windows the logged-on user signs in"
                .to_string(),
        });
    }
    Ok(Box::new(sspi::Sspi::acquire()?))
}

#[cfg(not(all(feature = "negotiate", any(unix, windows))))]
fn platform_provider(_cfg: &NegotiateConfig) -> Result<Box<dyn Provider>, MechError> {
    Err(MechError {
        failure: Failure::Other,
        detail: "this scunblock was built without Negotiate (the `negotiate` cargo feature): \
                 use --cm-auth bearer (with --cm-token-env or --cm-token-file) or --cm-auth none"
            .to_string(),
    })
}

/// The exit-6 message for a security package failure.
fn failure_message(e: MechError, spn: &Spn, keytab: Option<&Path>) -> Error {
    let d = e.detail;
    Error::responder(match e.failure {
        Failure::NoCredentials => match keytab {
            Some(kt) => format!(
                "cannot get a Kerberos ticket from --keytab {}: {d}",
                kt.display()
            ),
            None => format!("{NO_TICKET} ({d})"),
        },
        Failure::Expired => {
            format!("the Kerberos ticket has expired: run kinit again or give --keytab ({d})")
        }
        Failure::UnknownSpn => format!(
            "Kerberos does not know the SPN {spn} ({d}): check it with `kvno {spn}`, and give \
             the right one with --cm-spn (CNAME aliases and custom app-pool accounts need it)"
        ),
        Failure::KdcUnreachable => format!(
            "cannot reach a Kerberos KDC ({d}): check the network and the realm's kdc entries \
             in krb5.conf"
        ),
        Failure::BadServerToken => format!(
            "CM's Negotiate answer for {spn} did not verify (mutual authentication failed): {d}"
        ),
        Failure::Other => format!("Negotiate sign-in to CM as {spn} failed: {d}"),
    })
}

/// The challenges of `WWW-Authenticate` headers: (scheme, rest).
fn challenges(headers: &HeaderMap) -> impl Iterator<Item = (String, String)> + '_ {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|c| {
            let c = c.trim();
            let (scheme, rest) = c.split_once(' ').unwrap_or((c, ""));
            (!scheme.is_empty() && !scheme.contains('='))
                .then(|| (scheme.to_string(), rest.trim().to_string()))
        })
}

/// Does a 401 offer Negotiate?
fn offers_negotiate(headers: &HeaderMap) -> bool {
    challenges(headers).any(|(s, _)| s.eq_ignore_ascii_case("negotiate"))
}

/// The server's Negotiate token, if it sent one.
fn negotiate_token(headers: &HeaderMap) -> Result<Option<Vec<u8>>, Error> {
    let Some((_, token)) =
        challenges(headers).find(|(s, t)| s.eq_ignore_ascii_case("negotiate") && !t.is_empty())
    else {
        return Ok(None);
    };
    B64.decode(token.as_bytes()).map(Some).map_err(|_| {
        Error::responder("CM sent a malformed Negotiate token (not base64) in WWW-Authenticate")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    #[test]
    fn parses_spns() {
        assert_eq!(
            Spn::parse("HTTP/cm.example.com").unwrap(),
            Spn {
                service: "HTTP".into(),
                host: "cm.example.com".into(),
                realm: None
            }
        );
        let s = Spn::parse("HTTP/cm.example.com@EXAMPLE.COM").unwrap();
        assert_eq!(s.realm.as_deref(), Some("EXAMPLE.COM"));
        assert_eq!(s.to_string(), "HTTP/cm.example.com@EXAMPLE.COM");
        for bad in [
            "", "HTTP", "HTTP/", "/host", "HTTP/a/b", "HTTP/h@", "HTTP/h x", "a@b/c",
        ] {
            assert_eq!(Spn::parse(bad).unwrap_err().exit_code(), 2, "{bad:?}");
        }
        assert_eq!(Spn::for_host("[::1]").to_string(), "HTTP/::1");
        assert_eq!(Spn::for_host("localhost").to_string(), "HTTP/localhost");
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn reads_challenges() {
        assert!(offers_negotiate(&headers(&["Negotiate", "NTLM"])));
        assert!(offers_negotiate(&headers(&["NTLM, negotiate"])));
        assert!(!offers_negotiate(&headers(&[
            "Bearer realm=\"x\", error=\"invalid_token\""
        ])));
        assert!(!offers_negotiate(&headers(&[])));
        assert_eq!(negotiate_token(&headers(&["Negotiate"])).unwrap(), None);
        assert_eq!(
            negotiate_token(&headers(&["NTLM", "Negotiate oYGX"])).unwrap(),
            Some(vec![0xa1, 0x81, 0x97])
        );
        assert_eq!(
            negotiate_token(&headers(&["Negotiate !!"]))
                .unwrap_err()
                .exit_code(),
            6
        );
    }

    /// A scripted server answer.
    struct Answer {
        status: u16,
        headers: HeaderMap,
    }

    impl Reply for Answer {
        fn status(&self) -> StatusCode {
            StatusCode::from_u16(self.status).unwrap()
        }
        fn headers(&self) -> &HeaderMap {
            &self.headers
        }
        fn peer_certificate(&self) -> Option<Vec<u8>> {
            None
        }
        fn drain(self) {}
    }

    fn answer(status: u16, www: &[&str]) -> Answer {
        Answer {
            status,
            headers: headers(www),
        }
    }

    /// A mechanism that needs `rounds` server tokens "s1", "s2" ... and
    /// sends "c1", "c2" ...; the last server token completes it.
    struct Fake {
        rounds: usize,
        step: usize,
        complete: bool,
        log: Rc<RefCell<Vec<String>>>,
    }

    impl Context for Fake {
        fn step(&mut self, input: Option<&[u8]>) -> Result<Option<Vec<u8>>, MechError> {
            self.log.borrow_mut().push(format!(
                "step {:?}",
                input.map(|i| String::from_utf8_lossy(i).to_string())
            ));
            if let Some(i) = input {
                if i != format!("s{}", self.step).as_bytes() {
                    return Err(MechError {
                        failure: Failure::BadServerToken,
                        detail: "bad token".into(),
                    });
                }
            }
            if self.step == self.rounds {
                self.complete = true;
                return Ok(None);
            }
            self.step += 1;
            Ok(Some(format!("c{}", self.step).into_bytes()))
        }
        fn is_complete(&self) -> bool {
            self.complete
        }
    }

    struct FakeProvider {
        rounds: usize,
        log: Rc<RefCell<Vec<String>>>,
    }

    impl Provider for FakeProvider {
        fn principal(&self) -> Option<String> {
            Some("user@TEST".into())
        }
        fn context(&self, _: &Spn, _: Option<Vec<u8>>) -> Result<Box<dyn Context>, MechError> {
            Ok(Box::new(Fake {
                rounds: self.rounds,
                step: 0,
                complete: false,
                log: Rc::clone(&self.log),
            }))
        }
    }

    fn negotiator(rounds: usize) -> (Negotiator, Rc<RefCell<Vec<String>>>) {
        let log = Rc::new(RefCell::new(Vec::new()));
        let n = Negotiator::with_provider(
            Spn::for_host("cm.test"),
            NegotiateConfig::default(),
            Box::new(FakeProvider {
                rounds,
                log: Rc::clone(&log),
            }),
        );
        (n, log)
    }

    /// Run one exchange against scripted answers; the Authorization headers sent.
    fn run(n: &mut Negotiator, answers: Vec<Answer>) -> (Result<u16, Error>, Vec<Option<String>>) {
        let mut answers: VecDeque<Answer> = answers.into();
        let mut sent = Vec::new();
        let r = n.exchange(&mut |auth: Option<String>| {
            sent.push(auth);
            Ok(answers
                .pop_front()
                .expect("the client sent more than scripted"))
        });
        (r.map(|a| a.status), sent)
    }

    fn tok(s: &str) -> Option<String> {
        Some(format!("Negotiate {}", B64.encode(s)))
    }

    #[test]
    fn one_round_with_mutual_auth_then_the_connection_stays_signed_in() {
        let (mut n, log) = negotiator(1);
        let (r, sent) = run(
            &mut n,
            vec![
                answer(401, &["Negotiate", "NTLM"]),
                answer(200, &["Negotiate czE="]),
            ],
        );
        assert_eq!(r.unwrap(), 200);
        assert_eq!(sent, vec![None, tok("c1")]);
        assert_eq!(n.handshakes(), 1);
        assert_eq!(*log.borrow(), ["step None", "step Some(\"s1\")"]);
        // Later requests: no Authorization, no handshake.
        let (r, sent) = run(&mut n, vec![answer(200, &[])]);
        assert_eq!((r.unwrap(), sent), (200, vec![None]));
        assert_eq!(n.handshakes(), 1);
    }

    #[test]
    fn continuation_tokens_loop_and_are_bounded() {
        let (mut n, _) = negotiator(2);
        let (r, sent) = run(
            &mut n,
            vec![
                answer(401, &["Negotiate"]),
                answer(401, &["Negotiate czE="]),
                answer(200, &["Negotiate czI="]),
            ],
        );
        assert_eq!(r.unwrap(), 200);
        assert_eq!(sent, vec![None, tok("c1"), tok("c2")]);

        // A mechanism that never finishes against a server that keeps asking.
        let (mut n, _) = negotiator(10);
        let mut answers = vec![answer(401, &["Negotiate"])];
        for t in ["czE=", "czI=", "czM=", "czQ="] {
            answers.push(answer(401, &[&format!("Negotiate {t}")]));
        }
        let (r, sent) = run(&mut n, answers);
        let e = r.unwrap_err();
        assert_eq!(e.exit_code(), 6);
        assert!(e.to_string().contains("within 3 rounds"), "{e}");
        assert_eq!(sent.len(), 1 + MAX_ROUNDS as usize);
    }

    #[test]
    fn a_bare_401_after_the_token_is_a_rejection() {
        let (mut n, _) = negotiator(1);
        let (r, sent) = run(
            &mut n,
            vec![answer(401, &["Negotiate"]), answer(401, &["Negotiate"])],
        );
        let e = r.unwrap_err();
        assert!(
            e.to_string().contains("CM rejected the Negotiate sign-in"),
            "{e}"
        );
        assert!(e.to_string().contains("HTTP/cm.test"), "{e}");
        assert_eq!(sent.len(), 2);
    }

    #[test]
    fn a_final_token_that_does_not_verify_fails() {
        let (mut n, _) = negotiator(1);
        let (r, _) = run(
            &mut n,
            vec![
                answer(401, &["Negotiate"]),
                answer(200, &["Negotiate eHg="]),
            ],
        );
        let e = r.unwrap_err();
        assert!(
            e.to_string().contains("mutual authentication failed"),
            "{e}"
        );
    }

    #[test]
    fn a_final_token_that_leaves_the_handshake_open_fails() {
        let (mut n, _) = negotiator(2);
        let (r, _) = run(
            &mut n,
            vec![
                answer(401, &["Negotiate"]),
                answer(200, &["Negotiate czE="]),
            ],
        );
        let e = r.unwrap_err().to_string();
        assert!(e.contains("not complete after CM's final token"), "{e}");
    }

    #[test]
    fn no_final_token_is_accepted_unverified() {
        let (mut n, _) = negotiator(1);
        let (r, _) = run(&mut n, vec![answer(401, &["Negotiate"]), answer(200, &[])]);
        assert_eq!(r.unwrap(), 200);
    }

    #[test]
    fn a_401_without_negotiate_goes_back_to_the_caller() {
        let (mut n, _) = negotiator(1);
        let (r, sent) = run(&mut n, vec![answer(401, &["Bearer"])]);
        assert_eq!((r.unwrap(), sent.len()), (401, 1));
        assert_eq!(n.handshakes(), 0);
    }

    #[test]
    fn a_later_401_gets_one_new_handshake_for_that_request() {
        let (mut n, _) = negotiator(1);
        let ok = || {
            vec![
                answer(401, &["Negotiate"]),
                answer(200, &["Negotiate czE="]),
            ]
        };
        for i in 1..=5 {
            let (r, sent) = run(&mut n, ok());
            assert_eq!(r.unwrap(), 200);
            assert_eq!(sent, vec![None, tok("c1")]);
            assert_eq!(n.handshakes(), i);
        }
        // The new handshake is refused: an error, not another one.
        let (r, sent) = run(
            &mut n,
            vec![answer(401, &["Negotiate"]), answer(401, &["Negotiate"])],
        );
        assert!(r.unwrap_err().to_string().contains("rejected"));
        assert_eq!(sent.len(), 2);
        assert_eq!(n.handshakes(), 6);
    }

    #[test]
    fn failure_messages() {
        let spn = Spn::for_host("cm.test");
        let e = |f| {
            failure_message(
                MechError {
                    failure: f,
                    detail: "d".into(),
                },
                &spn,
                None,
            )
            .to_string()
        };
        assert!(e(Failure::NoCredentials).starts_with(NO_TICKET));
        assert!(e(Failure::UnknownSpn).contains("SPN HTTP/cm.test"));
        assert!(e(Failure::KdcUnreachable).contains("KDC"));
        let kt = failure_message(
            MechError {
                failure: Failure::NoCredentials,
                detail: "d".into(),
            },
            &spn,
            Some(Path::new("/k.keytab")),
        );
        assert!(kt.to_string().contains("--keytab /k.keytab"), "{kt}");
        assert_eq!(kt.exit_code(), 6);
    }
}
