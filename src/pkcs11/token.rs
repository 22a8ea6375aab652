//! The PKCS#11 calls, through `cryptoki`: load the module, pick the token
//! the URI names, log in once, find the key, encrypt. Each failure gets its
//! own message saying what to do next.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;

use super::uri::Pkcs11Uri;
use super::AskPin;
use crate::admin_key::KeyAlg;
use crate::error::Error;

/// A loaded and initialised PKCS#11 module. Cheap to clone (shared).
#[derive(Clone)]
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
}

impl Module {
    /// Load the module. Loading runs the module's code: its path must be as
    /// trusted as this binary (docs/keys.md).
    pub fn load(path: &Path) -> Result<Module, Error> {
        let ctx = Pkcs11::new(path).map_err(|e| {
            Error::responder(format!(
                "cannot load the PKCS#11 module {}: {e}. Check the path (--pkcs11-module, \
                 module-path= in the URI or {}) and that it is a PKCS#11 library for this \
                 architecture",
                path.display(),
                super::MODULE_ENV
            ))
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(Error::responder(format!(
                    "the PKCS#11 module {} loaded but does not start (C_Initialize: {e}); \
                     check its configuration",
                    path.display()
                )))
            }
        }
        Ok(Module {
            ctx,
            path: path.to_path_buf(),
        })
    }

    /// The one slot whose token matches the URI; the tokens seen when none
    /// or several do.
    pub fn find_token(&self, uri: &Pkcs11Uri) -> Result<Slot, Error> {
        if !self.library_matches(uri)? {
            return Err(Error::responder(format!(
                "no token matches: the module {} is not the library the URI names \
                 (library-manufacturer/-description/-version)",
                self.path.display()
            )));
        }
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(|e| p11("listing the slots (C_GetSlotList)", e))?;
        let mut seen = Vec::new();
        let mut found = Vec::new();
        for slot in slots {
            let (Ok(t), Ok(s)) = (self.ctx.get_token_info(slot), self.ctx.get_slot_info(slot))
            else {
                continue;
            };
            seen.push(format!(
                "\"{}\" (manufacturer \"{}\", model \"{}\", serial \"{}\", slot-id {})",
                t.label(),
                t.manufacturer_id(),
                t.model(),
                t.serial_number(),
                slot.id()
            ));
            let eq = |want: &Option<String>, have: &str| {
                want.as_deref()
                    .is_none_or(|w| w.trim_end() == have.trim_end())
            };
            if eq(&uri.token, t.label())
                && eq(&uri.manufacturer, t.manufacturer_id())
                && eq(&uri.model, t.model())
                && eq(&uri.serial, t.serial_number())
                && eq(&uri.slot_description, s.slot_description())
                && eq(&uri.slot_manufacturer, s.manufacturer_id())
                && uri.slot_id.is_none_or(|id| id == slot.id())
            {
                found.push(slot);
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] if seen.is_empty() => Err(Error::responder(format!(
                "no token matches the URI: the module {} shows no token at all. Is the token \
                 plugged in and initialised?",
                self.path.display()
            ))),
            [] => Err(Error::responder(format!(
                "no token matches the URI (token=, serial=, ...); the tokens seen: {}",
                seen.join("; ")
            ))),
            _ => Err(Error::responder(format!(
                "{} tokens match the URI; name one with serial= or slot-id=. The tokens seen: {}",
                found.len(),
                seen.join("; ")
            ))),
        }
    }

    fn library_matches(&self, uri: &Pkcs11Uri) -> Result<bool, Error> {
        if uri.library_manufacturer.is_none()
            && uri.library_description.is_none()
            && uri.library_version.is_none()
        {
            return Ok(true);
        }
        let info = self
            .ctx
            .get_library_info()
            .map_err(|e| p11("reading the module's information (C_GetInfo)", e))?;
        let v = info.library_version();
        Ok(uri
            .library_manufacturer
            .as_deref()
            .is_none_or(|m| m.trim_end() == info.manufacturer_id().trim_end())
            && uri
                .library_description
                .as_deref()
                .is_none_or(|d| d.trim_end() == info.library_description().trim_end())
            && uri
                .library_version
                .is_none_or(|want| want == (v.major(), v.minor())))
    }

    /// Whether `slot` still holds a token the module can describe.
    pub fn token_present(&self, slot: Slot) -> bool {
        self.ctx
            .get_slot_info(slot)
            .is_ok_and(|i| i.token_present())
            && self.ctx.get_token_info(slot).is_ok()
    }

    /// A read-only session with the token in `slot`.
    pub fn open_session(&self, slot: Slot) -> Result<TokenSession, Error> {
        let info = self
            .ctx
            .get_token_info(slot)
            .map_err(|e| p11("reading the token's information (C_GetTokenInfo)", e))?;
        let session = self
            .ctx
            .open_ro_session(slot)
            .map_err(|e| p11("opening a session (C_OpenSession)", e))?;
        Ok(TokenSession {
            module: self.clone(),
            session,
            slot,
            label: info.label().trim_end().to_string(),
            login_required: info.login_required(),
            protected_path: info.protected_authentication_path(),
            logged_in: Cell::new(false),
        })
    }
}

/// A found key object, with the algorithm it is used for.
pub struct Key {
    handle: ObjectHandle,
    mechanism: Mechanism<'static>,
}

/// One session with the token. The session that logged in logs out when
/// dropped; dropping closes it (cryptoki's `Session`).
pub struct TokenSession {
    module: Module,
    session: Session,
    slot: Slot,
    label: String,
    login_required: bool,
    protected_path: bool,
    /// This session logged in (and so logs out when dropped).
    logged_in: Cell<bool>,
}

impl TokenSession {
    pub fn slot(&self) -> Slot {
        self.slot
    }

    pub fn token_label(&self) -> &str {
        &self.label
    }

    /// The session still works and, where the token needs it, is logged in.
    pub fn is_logged_in(&self) -> bool {
        match self.session.get_session_info() {
            Ok(i) => {
                !self.login_required
                    || matches!(
                        i.session_state(),
                        SessionState::RoUser | SessionState::RwUser
                    )
            }
            Err(_) => false,
        }
    }

    /// Log in as the user, once: `C_Login` is never retried, because every
    /// wrong PIN spends one of the token's tries. Nothing happens for a
    /// token that needs no login. Without a PIN, a token with a PIN pad
    /// asks on its pad; otherwise `ask` (the CLI's no-echo question on the
    /// terminal), when given, is asked for it with the token's label.
    pub fn login(&self, pin: Option<&[u8]>, ask: Option<AskPin<'_>>) -> Result<(), Error> {
        if !self.login_required {
            crate::log::verbose(format!("pkcs11: token \"{}\" needs no login", self.label));
            return Ok(());
        }
        let asked;
        let pin: Option<&[u8]> = match (pin, ask) {
            (Some(p), _) => Some(p),
            (None, _) if self.protected_path => None,
            (None, Some(ask)) => {
                asked = ask(&self.label)?;
                if asked.is_empty() {
                    return Err(Error::usage("the token PIN is empty"));
                }
                crate::scrub::register_pin(&asked);
                Some(&asked[..])
            }
            (None, None) => {
                return Err(Error::usage(format!(
                    "the token \"{}\" needs its user PIN: give --pkcs11-pin-env VAR or \
                     --pkcs11-pin-file PATH",
                    self.label
                )))
            }
        };
        let result = match pin {
            Some(p) => self
                .session
                .login_with_raw(UserType::User, &RawAuthPin::new(Box::new(p.to_vec()))),
            None => self.session.login(UserType::User, None),
        };
        match result {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                // Only the session that logged in logs out.
                self.logged_in.set(true);
                Ok(())
            }
            Err(P11Error::Pkcs11(RvError::PinIncorrect, _)) => Err(Error::responder(format!(
                "the token PIN is wrong (token \"{}\"). It was tried once and is not tried \
                 again{}. Check --pkcs11-pin-env/--pkcs11-pin-file before the next run",
                self.label,
                self.pin_flags()
            ))),
            Err(P11Error::Pkcs11(RvError::PinLocked, _)) => Err(Error::responder(format!(
                "the token's user PIN is locked (token \"{}\"); unlock it with its SO PIN \
                 (for SoftHSM: softhsm2-util; others: the token's tool)",
                self.label
            ))),
            Err(P11Error::Pkcs11(RvError::PinLenRange, _)) => Err(Error::responder(format!(
                "the token PIN has a length the token \"{}\" does not accept; nothing was \
                 tried",
                self.label
            ))),
            Err(e) => Err(p11("logging in (C_Login)", e)),
        }
    }

    /// The token's PIN flags, after a failed login.
    fn pin_flags(&self) -> String {
        let Ok(t) = self.module.ctx.get_token_info(self.slot) else {
            return String::new();
        };
        let mut f = Vec::new();
        if t.user_pin_count_low() {
            f.push("CKF_USER_PIN_COUNT_LOW (wrong PINs were entered)");
        }
        if t.user_pin_final_try() {
            f.push("CKF_USER_PIN_FINAL_TRY (one more wrong PIN locks it)");
        }
        if t.user_pin_locked() {
            f.push("CKF_USER_PIN_LOCKED");
        }
        if f.is_empty() {
            "; the token shows no PIN warning flag".into()
        } else {
            format!("; the token says: {}", f.join(", "))
        }
    }

    /// The secret key the URI names (with `label` for this card), checked
    /// to fit the card's algorithm.
    pub fn find_key(
        &self,
        uri: &Pkcs11Uri,
        label: Option<&str>,
        alg: KeyAlg,
    ) -> Result<Key, Error> {
        let mut template = vec![Attribute::Class(ObjectClass::SECRET_KEY)];
        if let Some(l) = label {
            template.push(Attribute::Label(l.as_bytes().to_vec()));
        }
        if let Some(id) = &uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        let named = uri.describe_object(label);
        let found = self
            .session
            .find_objects(&template)
            .map_err(|e| p11("looking for the key (C_FindObjects)", e))?;
        let handle = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(Error::responder(format!(
                "the key object ({named}) is not on the token \"{}\"{}. Import it (docs/keys.md) \
                     or fix object=/id= in the URI",
                self.label,
                self.other_keys()
            )))
            }
            more => {
                return Err(Error::responder(format!(
                    "{} secret keys on the token \"{}\" match ({named}); name one with both \
                     object= and id=",
                    more.len(),
                    self.label
                )))
            }
        };
        let attrs = self
            .session
            .get_attributes(handle, &[AttributeType::KeyType, AttributeType::ValueLen])
            .map_err(|e| p11("reading the key's type (C_GetAttributeValue)", e))?;
        let mut key_type = None;
        let mut value_len = None;
        for a in attrs {
            match a {
                Attribute::KeyType(t) => key_type = Some(t),
                // CK_ULONG: 64 bits on Unix, 32 on Windows.
                Attribute::ValueLen(n) => value_len = usize::try_from(*n).ok(),
                _ => {}
            }
        }
        let wrong = |what: String| {
            Error::responder(format!(
                "the key object ({named}) on the token \"{}\" is {what}, but the card's admin \
                 key is {alg}: import a {alg} key under that name",
                self.label
            ))
        };
        let mechanism = match (alg, key_type) {
            (KeyAlg::Tdes, Some(t)) if t == KeyType::DES3 || t == KeyType::DES2 => {
                Mechanism::Des3Ecb
            }
            (KeyAlg::Aes128 | KeyAlg::Aes192 | KeyAlg::Aes256, Some(t)) if t == KeyType::AES => {
                match value_len {
                    Some(n) if alg.fits(n) => Mechanism::AesEcb,
                    Some(n) => return Err(wrong(format!("an AES key of {n} bytes"))),
                    None => {
                        return Err(wrong(
                            "an AES key whose length the token does not tell".into(),
                        ))
                    }
                }
            }
            (_, Some(t)) => return Err(wrong(format!("a {t} key"))),
            (_, None) => return Err(wrong("a key of unknown type".into())),
        };
        Ok(Key { handle, mechanism })
    }

    /// The labels of the secret keys the session can see, for a "not found".
    fn other_keys(&self) -> String {
        let Ok(all) = self
            .session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
        else {
            return String::new();
        };
        let labels: Vec<String> = all
            .iter()
            .filter_map(|h| {
                self.session
                    .get_attributes(*h, &[AttributeType::Label])
                    .ok()
            })
            .flatten()
            .filter_map(|a| match a {
                Attribute::Label(l) => Some(format!("\"{}\"", String::from_utf8_lossy(&l))),
                _ => None,
            })
            .collect();
        if labels.is_empty() {
            "; it holds no secret key this session can see".into()
        } else {
            format!("; the secret keys it holds: {}", labels.join(", "))
        }
    }

    /// Encrypt `data` (whole blocks) with the key, inside the token.
    pub fn encrypt(&self, key: &Key, alg: KeyAlg, data: &[u8]) -> Result<Vec<u8>, Error> {
        let out = self
            .session
            .encrypt(&key.mechanism, key.handle, data)
            .map_err(|e| match e {
                P11Error::Pkcs11(RvError::MechanismInvalid, _) => Error::responder(format!(
                    "the token \"{}\" does not support {} ({alg}); use a token that does",
                    self.label,
                    mechanism_name(alg)
                )),
                P11Error::Pkcs11(
                    RvError::KeyTypeInconsistent
                    | RvError::KeySizeRange
                    | RvError::KeyFunctionNotPermitted,
                    _,
                ) => Error::responder(format!(
                    "the token \"{}\" refused the key for {} ({e}): the key must be a {alg} \
                     key with CKA_ENCRYPT true",
                    self.label,
                    mechanism_name(alg)
                )),
                e => p11("encrypting the challenge (C_Encrypt)", e),
            })?;
        if out.len() != data.len() {
            return Err(Error::responder(format!(
                "the token gave {} bytes for a {}-byte challenge; nothing was sent to the card",
                out.len(),
                data.len()
            )));
        }
        Ok(out)
    }

    /// Key check value computed by the token: the first 3 bytes of the
    /// encrypted zero block.
    pub fn check_value(&self, key: &Key, alg: KeyAlg) -> Result<String, Error> {
        let out = self.encrypt(key, alg, &vec![0u8; alg.block_len()])?;
        Ok(hex::encode_upper(&out[..3]))
    }
}

impl Drop for TokenSession {
    fn drop(&mut self) {
        if self.logged_in.get() {
            // Logs the application out of the token; the session closes
            // when `session` drops right after.
            let _ = self.session.logout();
        }
    }
}

fn mechanism_name(alg: KeyAlg) -> &'static str {
    match alg {
        KeyAlg::Tdes => "CKM_DES3_ECB",
        _ => "CKM_AES_ECB",
    }
}

/// A PKCS#11 error from `what`, with what it means for the user.
fn p11(what: &str, e: P11Error) -> Error {
    match e {
        P11Error::Pkcs11(
            RvError::TokenNotPresent
            | RvError::DeviceRemoved
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed,
            _,
        ) => Error::responder(format!(
            "the token was removed ({what}: {e}); put it back and try again"
        )),
        P11Error::Pkcs11(RvError::UserNotLoggedIn, _) => Error::responder(format!(
            "the token's login was lost ({what}: {e}); was the token removed?"
        )),
        e => Error::responder(format!("PKCS#11: {what} failed: {e}")),
    }
}
