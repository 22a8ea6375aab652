//! Where the admin response comes from, decided once for every command.
//!
//! The command line gives one [`KeySource`]; [`KeySource::factory`] builds,
//! once, what makes each card's [`Responder`]: the same code for `unblock`,
//! `auth`, `respond` and `watch`. A new key source is one arm here and one
//! `Responder`. Every secret read on the way is a [`SecretKind`], which
//! knows its flag names and its file rules.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

use crate::admin_key::{AdminKey, Challenge, Cryptogram, KeyAlg};
use crate::error::Error;
use crate::pkcs11::{AskPin, Pkcs11Config, Pkcs11Key, Pkcs11Responder, Sessions, TokenPin};
use crate::responder::{CardContext, LocalKey, Manual, Responder};
use crate::secret::{self, Source};

/// Every kind of secret scunblock reads: its name in messages, its flags,
/// and whether a file of it that others can read may be accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    AdminKey,
    NewPin,
    CmToken,
    TokenPin,
}

impl SecretKind {
    /// The secret's name in messages.
    pub fn what(self) -> &'static str {
        match self {
            SecretKind::AdminKey => "admin key",
            SecretKind::NewPin => "new PIN",
            SecretKind::CmToken => "bearer token",
            SecretKind::TokenPin => "token PIN",
        }
    }

    /// The options that give it: (environment variable, file).
    pub fn flags(self) -> (&'static str, &'static str) {
        match self {
            SecretKind::AdminKey => ("--admin-key-env", "--admin-key-file"),
            SecretKind::NewPin => ("--new-pin-env", "--new-pin-file"),
            SecretKind::CmToken => ("--cm-token-env", "--cm-token-file"),
            SecretKind::TokenPin => ("--pkcs11-pin-env", "--pkcs11-pin-file"),
        }
    }

    /// The option that accepts a file group or others can read, where one
    /// exists. The CM token and the token PIN have none: a readable file of
    /// them is always refused.
    pub fn insecure_file_flag(self) -> Option<&'static str> {
        match self {
            SecretKind::AdminKey => Some("--allow-insecure-key-file"),
            SecretKind::NewPin => Some("--allow-insecure-pin-file"),
            SecretKind::CmToken | SecretKind::TokenPin => None,
        }
    }

    /// Whether a file's one trailing line end is not part of the secret
    /// (PINs and tokens; a key file is parsed, so it does not matter).
    fn strips_line_end(self) -> bool {
        !matches!(self, SecretKind::AdminKey)
    }

    /// Read it from a variable or a file, under this kind's rules.
    pub fn read(
        self,
        from: &SecretFrom,
        allow_insecure: bool,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let allow = allow_insecure && self.insecure_file_flag().is_some();
        match from {
            SecretFrom::Env(var) => secret::read(&Source::Env(var), self.what(), false),
            SecretFrom::File(path) => {
                let raw = secret::read(&Source::File(path), self.what(), allow)?;
                Ok(if self.strips_line_end() {
                    Zeroizing::new(secret::strip_line_end(&raw).to_vec())
                } else {
                    raw
                })
            }
        }
    }
}

/// A secret's variable or file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretFrom {
    Env(String),
    File(PathBuf),
}

impl SecretFrom {
    pub fn new(env: Option<&String>, file: Option<&PathBuf>) -> Option<SecretFrom> {
        match (env, file) {
            (Some(v), _) => Some(SecretFrom::Env(v.clone())),
            (None, Some(p)) => Some(SecretFrom::File(p.clone())),
            (None, None) => None,
        }
    }
}

/// The one key source of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The admin key itself, from a variable or a file.
    Key {
        from: SecretFrom,
        allow_insecure_file: bool,
    },
    /// A person types the response (`--manual`).
    Manual,
    /// MIM CM at this URL.
    Cm(String),
    /// A secret key object in a PKCS#11 token.
    Pkcs11 {
        uri: String,
        module: Option<PathBuf>,
        pin: Option<SecretFrom>,
    },
}

/// What the responders are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// `unblock`, `auth`: one card, a person may be at the terminal.
    OneCard,
    /// `respond`: no card; the response is printed.
    Respond,
    /// `watch --unblock`: many cards, unattended, in parallel.
    Watch,
}

/// Makes the responder for each card (a CM responder holds one card's
/// request, so every card gets its own). Built once per run.
pub trait ResponderFactory: Send + Sync {
    /// The responders' name ("local-key", "cm", "pkcs11").
    fn name(&self) -> &'static str;
    /// The responder cannot work without the card id (CM, a per-card key).
    fn needs_card_id(&self) -> bool {
        false
    }
    fn make(&self, card: &CardContext) -> Result<Box<dyn Responder>, Error>;
}

/// How the CM arm is built: the CLI owns the CM options.
pub type CmBuilder<'a> = &'a dyn Fn(&str, Use) -> Result<Arc<dyn ResponderFactory>, Error>;

impl KeySource {
    /// The short name used in reports and messages.
    pub fn name(&self) -> &'static str {
        match self {
            KeySource::Key { .. } => "local-key",
            KeySource::Manual => "manual",
            KeySource::Cm(_) => "cm",
            KeySource::Pkcs11 { .. } => "pkcs11",
        }
    }

    /// Environment variables that hold this source's secrets: helper
    /// commands never inherit them.
    pub fn secret_vars(&self) -> Vec<String> {
        match self {
            KeySource::Key {
                from: SecretFrom::Env(v),
                ..
            }
            | KeySource::Pkcs11 {
                pin: Some(SecretFrom::Env(v)),
                ..
            } => vec![v.clone()],
            _ => Vec::new(),
        }
    }

    /// Build, once, what makes each card's responder: every secret is read,
    /// the key loaded or the token logged in to, before any card. `ask`: how
    /// to ask a person for a token PIN that was not given (the CLI's terminal
    /// prompt); `watch` runs unattended and never asks.
    pub fn factory(
        &self,
        purpose: Use,
        cm: CmBuilder<'_>,
        ask: Option<AskPin<'_>>,
    ) -> Result<Arc<dyn ResponderFactory>, Error> {
        match self {
            KeySource::Key {
                from,
                allow_insecure_file,
            } => {
                let text = SecretKind::AdminKey.read(from, *allow_insecure_file)?;
                crate::scrub::register_raw(&text);
                let key = AdminKey::parse(&text)?;
                key.register_for_scrubbing();
                crate::log::verbose(format!(
                    "admin key: {} bytes, check value {}",
                    key.len(),
                    key.check_value(KeyAlg::Tdes)
                ));
                Ok(Arc::new(SharedKey::new(key)))
            }
            KeySource::Manual => match purpose {
                Use::OneCard => Ok(Arc::new(ManualFactory)),
                Use::Respond => Err(Error::usage(
                    "respond computes the response itself: --manual is not a key source here; \
                     use --admin-key-file, --admin-key-env, --pkcs11-key or --cm",
                )),
                Use::Watch => Err(Error::usage(
                    "watch runs unattended: --manual is not available; use --admin-key-file, \
                     --admin-key-env, --pkcs11-key or --cm",
                )),
            },
            KeySource::Cm(url) => cm(url, purpose),
            KeySource::Pkcs11 { uri, module, pin } => {
                let cfg = Pkcs11Config::new(uri, module.as_deref())?;
                let pin: TokenPin = pin
                    .as_ref()
                    .map(|p| SecretKind::TokenPin.read(p, false))
                    .transpose()?;
                if let Some(pin) = &pin {
                    crate::scrub::register_pin(pin);
                }
                let (sessions, ask) = match purpose {
                    Use::Watch => (Sessions::PerCard, None),
                    _ => (Sessions::One, ask.filter(|_| pin.is_none())),
                };
                let key = Pkcs11Key::open(&cfg, pin, sessions, ask);
                let key = match (purpose, key) {
                    (_, Ok(k)) => k,
                    // watch: a module that does not load or a failed login
                    // stops it before any reader is watched (docs/kiosk.md).
                    (Use::Watch, Err(Error::Responder(m))) => {
                        return Err(Error::usage(format!("watch cannot start: {m}")))
                    }
                    (_, Err(e)) => return Err(e),
                };
                Ok(Arc::new(Pkcs11Factory(key)))
            }
        }
    }
}

/// One admin key, loaded once, shared by every card's flow. The key stays in
/// its zeroizing type; each flow borrows it for one response.
pub struct SharedKey(Arc<Mutex<LocalKey>>);

impl SharedKey {
    pub fn new(key: AdminKey) -> SharedKey {
        SharedKey(Arc::new(Mutex::new(LocalKey::new(key))))
    }
}

impl ResponderFactory for SharedKey {
    fn name(&self) -> &'static str {
        "local-key"
    }
    fn make(&self, _card: &CardContext) -> Result<Box<dyn Responder>, Error> {
        Ok(Box::new(SharedKeyResponder(self.0.clone())))
    }
}

struct SharedKeyResponder(Arc<Mutex<LocalKey>>);

impl Responder for SharedKeyResponder {
    fn name(&self) -> &'static str {
        "local-key"
    }
    fn check_alg(&self, alg: KeyAlg) -> Result<(), Error> {
        let key = self.0.lock().unwrap_or_else(|p| p.into_inner());
        key.check_alg(alg)
    }
    fn respond(&mut self, challenge: &Challenge, card: &CardContext) -> Result<Cryptogram, Error> {
        let mut key = self.0.lock().unwrap_or_else(|p| p.into_inner());
        key.respond(challenge, card)
    }
}

/// `--manual`: the response is typed on standard input.
struct ManualFactory;

impl ResponderFactory for ManualFactory {
    fn name(&self) -> &'static str {
        "manual"
    }
    fn make(&self, _card: &CardContext) -> Result<Box<dyn Responder>, Error> {
        Ok(Box::new(Manual::new(std::io::stdin().lock())))
    }
}

/// The key in a PKCS#11 token, logged in to once.
struct Pkcs11Factory(Arc<Pkcs11Key>);

impl ResponderFactory for Pkcs11Factory {
    fn name(&self) -> &'static str {
        "pkcs11"
    }
    fn needs_card_id(&self) -> bool {
        self.0.per_card()
    }
    fn make(&self, _card: &CardContext) -> Result<Box<dyn Responder>, Error> {
        Ok(Box::new(Pkcs11Responder(self.0.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_kind_names_its_flags() {
        for k in [
            SecretKind::AdminKey,
            SecretKind::NewPin,
            SecretKind::CmToken,
            SecretKind::TokenPin,
        ] {
            let (env, file) = k.flags();
            assert!(env.ends_with("-env") && file.ends_with("-file"), "{k:?}");
            assert!(!k.what().is_empty());
        }
        assert_eq!(SecretKind::TokenPin.insecure_file_flag(), None);
        assert_eq!(
            SecretKind::AdminKey.insecure_file_flag(),
            Some("--allow-insecure-key-file")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_token_pin_file_others_can_read_is_refused_even_when_allowed() {
        use crate::testing::{chmod, file_with_mode};
        let (_dir, p) = file_with_mode("pin", "123456\n", 0o644);
        let from = SecretFrom::File(p.clone());
        let e = SecretKind::TokenPin.read(&from, true).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        chmod(&p, 0o600);
        let pin = SecretKind::TokenPin.read(&from, false).unwrap();
        assert_eq!(&pin[..], b"123456");
    }

    #[test]
    fn manual_is_no_key_source_for_respond_or_watch() {
        let no_cm: CmBuilder<'_> = &|_, _| Err(Error::usage("no CM here"));
        for purpose in [Use::Respond, Use::Watch] {
            let e = KeySource::Manual
                .factory(purpose, no_cm, None)
                .err()
                .unwrap();
            assert_eq!(e.exit_code(), 2, "{purpose:?}");
            assert!(e.to_string().contains("--manual"), "{e}");
        }
        assert!(KeySource::Manual.factory(Use::OneCard, no_cm, None).is_ok());
    }

    #[test]
    fn a_module_that_does_not_load_is_exit_6_or_exit_2_in_watch() {
        let src = KeySource::Pkcs11 {
            uri: "pkcs11:token=t;object=k?module-path=/nonexistent/libnothing.so".into(),
            module: None,
            pin: None,
        };
        let no_cm: CmBuilder<'_> = &|_, _| Err(Error::usage("no CM here"));
        let e = src.factory(Use::OneCard, no_cm, None).err().unwrap();
        assert_eq!(e.exit_code(), 6, "{e}");
        assert!(
            e.to_string().contains("cannot load the PKCS#11 module"),
            "{e}"
        );
        let e = src.factory(Use::Watch, no_cm, None).err().unwrap();
        assert_eq!(e.exit_code(), 2, "{e}");
    }

    #[test]
    fn the_shared_key_answers_for_every_card() {
        let f = SharedKey::new(AdminKey::from_bytes(&[0; 24]).unwrap());
        let challenge = Challenge::new(hex::decode("d61143f9ccffd2ca").unwrap());
        for _ in 0..2 {
            let mut r = f.make(&CardContext::default()).unwrap();
            let c = r.respond(&challenge, &CardContext::default()).unwrap();
            assert_eq!(hex::encode(c.as_bytes()), "17466e766e303cb6");
        }
    }
}
