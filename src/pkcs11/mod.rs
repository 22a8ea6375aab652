//! The admin key in a PKCS#11 token or HSM: the response to the card's
//! challenge is computed inside the token (`C_Encrypt`, `CKM_DES3_ECB` or
//! `CKM_AES_ECB`), so the key never exists in this process. See docs/keys.md.
//!
//! Every failure is a responder failure (exit 6, nothing sent to the card)
//! with its own message: the module does not load, no token matches, a
//! wrong token PIN (`C_Login` is called once and never retried), the key
//! object is missing or of the wrong type or length, the mechanism is not
//! supported, the token was removed.

mod token;
pub mod uri;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::admin_key::{Challenge, Cryptogram, KeyAlg};
use crate::error::Error;
use crate::responder::{CardContext, Responder};
pub use token::{Module, TokenSession};
pub use uri::Pkcs11Uri;

/// The environment variable naming the module, after `--pkcs11-module` and
/// the URI's `module-path`.
pub const MODULE_ENV: &str = "SCUNBLOCK_PKCS11_MODULE";

/// Where p11-kit's proxy module is installed on the usual Linux layouts: it
/// loads every module registered with p11-kit.
#[cfg(unix)]
const P11_KIT_PROXY: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib64/p11-kit-proxy.so",
    "/usr/lib/p11-kit-proxy.so",
    "/usr/local/lib/p11-kit-proxy.so",
];

/// The token's user PIN, zeroized on drop; `None` for a token that needs no
/// login or asks on its own pad.
pub type TokenPin = Option<Zeroizing<Vec<u8>>>;

/// How to ask a person for a token's user PIN (the token's label given): the
/// terminal question is the CLI's; the library only calls it, and checks the answer.
pub type AskPin<'a> = &'a dyn Fn(&str) -> Result<Zeroizing<Vec<u8>>, Error>;

/// Everything to reach the key, checked before any card is touched.
pub struct Pkcs11Config {
    pub uri: Pkcs11Uri,
    pub module: PathBuf,
}

impl Pkcs11Config {
    /// Parse the URI and find the module: `--pkcs11-module`, the URI's
    /// `module-path`, `$SCUNBLOCK_PKCS11_MODULE`, p11-kit's proxy.
    pub fn new(uri: &str, module_flag: Option<&Path>) -> Result<Pkcs11Config, Error> {
        let uri = Pkcs11Uri::parse(uri)?;
        let module = module_flag
            .map(Path::to_path_buf)
            .or_else(|| uri.module_path.as_ref().map(PathBuf::from))
            .or_else(|| {
                std::env::var_os(MODULE_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(default_module)
            .ok_or_else(|| {
                Error::usage(format!(
                    "no PKCS#11 module: give --pkcs11-module PATH, module-path= in the URI or \
                     {MODULE_ENV}{}",
                    if cfg!(windows) {
                        " (Windows has no p11-kit proxy to fall back on)"
                    } else {
                        " (p11-kit's proxy module is not installed)"
                    }
                ))
            })?;
        Ok(Pkcs11Config { uri, module })
    }
}

#[cfg(unix)]
fn default_module() -> Option<PathBuf> {
    P11_KIT_PROXY
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

#[cfg(not(unix))]
fn default_module() -> Option<PathBuf> {
    None
}

/// Find the card's key and encrypt the challenge with it in the token.
fn respond_in(
    session: &TokenSession,
    uri: &Pkcs11Uri,
    challenge: &Challenge,
    card: &CardContext,
) -> Result<Cryptogram, Error> {
    let alg = card.key_alg;
    check_challenge(alg, challenge.len())?;
    let label = uri.object_for(card.info.card_id.as_deref())?;
    let key = session.find_key(uri, label.as_deref(), alg)?;
    if crate::log::is_verbose() {
        // The token computes the check value; the key never leaves it.
        let kcv = session.check_value(&key, alg)?;
        crate::log::verbose(format!(
            "pkcs11: token \"{}\", key {}, {alg}, check value {kcv}",
            session.token_label(),
            uri.describe_object(label.as_deref()),
        ));
    }
    let out = session.encrypt(&key, alg, challenge.as_bytes())?;
    Ok(Cryptogram::new(out))
}

fn check_challenge(alg: KeyAlg, len: usize) -> Result<(), Error> {
    let block = alg.block_len();
    if len == 0 || len % block != 0 {
        return Err(Error::protocol(format!(
            "the card's challenge has {len} bytes; {alg} needs a multiple of {block}"
        )));
    }
    Ok(())
}

/// The key in its token, logged in once.
///
/// - `unblock`, `auth`, `respond` ([`Sessions::One`]): one session for the
///   run, logged in at the start, logged out and closed when the last
///   reference drops (every path, errors included).
/// - `watch` ([`Sessions::PerCard`]): the login session stays open for the
///   life of the watcher (a token's login state lasts as long as one of the
///   application's sessions is open) and each card gets its own short
///   session, so flows run in parallel. When the token goes away and comes
///   back, the next card logs in again with the kept PIN, only if the first
///   login succeeded and no later one failed.
pub struct Pkcs11Key {
    module: Module,
    uri: Pkcs11Uri,
    pin: TokenPin,
    sessions: Sessions,
    state: Mutex<State>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sessions {
    One,
    PerCard,
}

struct State {
    login: Option<TokenSession>,
    /// Why logging in again is no longer tried (a re-login failed: another
    /// try could spend the token's PIN tries).
    gave_up: Option<String>,
}

impl Pkcs11Key {
    /// Load the module, find the token, open a session and log in (`ask`:
    /// the question to a person when the token needs a PIN and none was
    /// given). Failures are responder failures (exit 6); `watch` turns
    /// them into exit 2 before it watches a reader.
    pub fn open(
        cfg: &Pkcs11Config,
        pin: TokenPin,
        sessions: Sessions,
        ask: Option<AskPin<'_>>,
    ) -> Result<Arc<Pkcs11Key>, Error> {
        let module = Module::load(&cfg.module)?;
        let slot = module.find_token(&cfg.uri)?;
        let login = module.open_session(slot)?;
        login.login(pin.as_ref().map(|p| p.as_slice()), ask)?;
        crate::log::verbose(format!(
            "pkcs11: module {}, token \"{}\" (slot-id {})",
            cfg.module.display(),
            login.token_label(),
            slot.id()
        ));
        Ok(Arc::new(Pkcs11Key {
            module,
            uri: cfg.uri.clone(),
            // Kept (zeroized) only where a re-login may need it.
            pin: if sessions == Sessions::PerCard {
                pin
            } else {
                None
            },
            sessions,
            state: Mutex::new(State {
                login: Some(login),
                gave_up: None,
            }),
        }))
    }

    /// The key's label depends on the card id (`{card_id}`).
    pub fn per_card(&self) -> bool {
        self.uri.per_card()
    }

    /// Answer one challenge in a session of the token.
    pub fn respond(&self, challenge: &Challenge, card: &CardContext) -> Result<Cryptogram, Error> {
        self.with_session(|s| respond_in(s, &self.uri, challenge, card))
    }

    /// Before the challenge: the key exists and fits the card's algorithm
    /// (a per-card key is looked up with the challenge, once the id is known).
    pub fn check_alg(&self, alg: KeyAlg) -> Result<(), Error> {
        if self.uri.per_card() {
            return Ok(());
        }
        self.with_session(|s| {
            s.find_key(&self.uri, self.uri.object.as_deref(), alg)
                .map(drop)
        })
    }

    /// Run `f` in a session: the run's one session, or (watch) a short one of
    /// its own, logging in again first if the token came back.
    fn with_session<T>(
        &self,
        f: impl FnOnce(&TokenSession) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.sessions == Sessions::One {
            let session = st
                .login
                .as_ref()
                .ok_or_else(|| Error::responder("pkcs11: the session with the token is closed"))?;
            return f(session);
        }
        if let Some(why) = &st.gave_up {
            return Err(Error::responder(format!(
                "pkcs11: {why}; restart the watcher once the token is back"
            )));
        }
        if !st.login.as_ref().is_some_and(TokenSession::is_logged_in) {
            // The token went away (or its login was lost): log in again, once.
            st.login = None;
            let slot = self.module.find_token(&self.uri)?;
            let login = self.module.open_session(slot)?;
            if let Err(e) = login.login(self.pin.as_ref().map(|p| p.as_slice()), None) {
                st.gave_up = Some(format!(
                    "logging in again after the token returned failed ({e})"
                ));
                return Err(e);
            }
            crate::log::verbose(format!(
                "pkcs11: token \"{}\" is back: logged in again",
                login.token_label()
            ));
            st.login = Some(login);
        }
        let slot = st
            .login
            .as_ref()
            .map(TokenSession::slot)
            .ok_or_else(|| Error::responder("pkcs11: no session with the token"))?;
        drop(st);
        let result = self.module.open_session(slot).and_then(|s| f(&s));
        if result.is_err() && !self.module.token_present(slot) {
            // The token went away under this card: the next card logs in again
            // (its login session may still look alive to the module).
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.login.as_ref().is_some_and(|l| l.slot() == slot) {
                st.login = None;
                crate::log::verbose("pkcs11: the token is gone; the next card logs in again");
            }
        }
        result
    }
}

/// A [`Responder`] over a shared [`Pkcs11Key`].
pub struct Pkcs11Responder(pub Arc<Pkcs11Key>);

impl Responder for Pkcs11Responder {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    fn needs_card_id(&self) -> bool {
        self.0.per_card()
    }

    fn check_alg(&self, alg: KeyAlg) -> Result<(), Error> {
        self.0.check_alg(alg)
    }

    fn respond(&mut self, challenge: &Challenge, card: &CardContext) -> Result<Cryptogram, Error> {
        self.0.respond(challenge, card)
    }
}
