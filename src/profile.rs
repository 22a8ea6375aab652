//! Card profiles: every APDU parameter of the unblock flow, as data.
//!
//! The built-in profile `iso` matches Microsoft Base CSP cards that speak
//! ISO 7816-4 GET CHALLENGE / EXTERNAL AUTHENTICATE / RESET RETRY COUNTER.
//! `--profile FILE` reads a TOML file whose keys override `iso`:
//!
//! ```toml
//! name = "my-card"
//! cla = 0x00
//! select_aid = "A000000397425446590201"   # optional SELECT before the flow
//! challenge_len = 8
//! ext_auth_p1 = 0x00
//! ext_auth_p2 = 0x01                       # admin key reference
//! admin_tries_query = true                 # 00 82 P1 P2 without data
//! pin_reference = 0x80
//! rrc_p1 = 0x02
//! rrc_p2 = 0x80
//! pin_tries_query = true                   # VERIFY without data
//! pin_min_len = 4
//! pin_max_len = 8
//! pin_charset = "printable"                # printable | digits | alphanumeric | any
//! pin_padding = "none"                     # none | ff8
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::secret::Pin;

/// Which characters a new PIN may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinCharset {
    /// Printable ASCII, 0x20..=0x7E.
    Printable,
    /// 0-9 only.
    Digits,
    /// A-Z, a-z, 0-9.
    Alphanumeric,
    /// Any byte.
    Any,
}

/// How the PIN is padded in RESET RETRY COUNTER.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinPadding {
    None,
    /// Padded with FF to 8 bytes (PIV style).
    Ff8,
}

/// Every parameter of the flow's APDUs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardProfile {
    pub name: String,
    pub cla: u8,
    /// AID to SELECT before the flow (hex), if any.
    pub select_aid: Option<String>,
    /// The challenge length the card must give (and the responder answer).
    pub challenge_len: u8,
    pub ext_auth_p1: u8,
    pub ext_auth_p2: u8,
    /// Ask for the admin tries left with an EXTERNAL AUTHENTICATE without data.
    pub admin_tries_query: bool,
    pub pin_reference: u8,
    pub rrc_p1: u8,
    pub rrc_p2: u8,
    /// Ask for the PIN tries left with a VERIFY without data. Some cards count
    /// an empty VERIFY as a failed try: turn it off for them.
    pub pin_tries_query: bool,
    pub pin_min_len: usize,
    pub pin_max_len: usize,
    pub pin_charset: PinCharset,
    pub pin_padding: PinPadding,
}

impl Default for CardProfile {
    fn default() -> CardProfile {
        CardProfile::iso()
    }
}

impl CardProfile {
    /// The built-in ISO / Base CSP profile.
    pub fn iso() -> CardProfile {
        CardProfile {
            name: "iso".into(),
            cla: 0x00,
            select_aid: None,
            challenge_len: 8,
            ext_auth_p1: 0x00,
            ext_auth_p2: 0x00,
            admin_tries_query: true,
            pin_reference: 0x80,
            rrc_p1: 0x02,
            rrc_p2: 0x80,
            pin_tries_query: true,
            pin_min_len: 4,
            pin_max_len: 8,
            pin_charset: PinCharset::Printable,
            pin_padding: PinPadding::None,
        }
    }

    /// Load a TOML profile file (keys override `iso`).
    pub fn load(path: &Path) -> Result<CardProfile, Error> {
        let bytes = crate::secret::read_regular_file(
            path,
            "profile",
            crate::secret::PROFILE_FILE_CAP,
            |_| Ok(()),
        )?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::usage(format!("the profile {} is not UTF-8 text", path.display()))
        })?;
        CardProfile::from_toml(text)
            .map_err(|e| Error::usage(format!("profile {}: {e}", path.display())))
    }

    /// Parse and validate profile text.
    pub fn from_toml(text: &str) -> Result<CardProfile, String> {
        let mut p: CardProfile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if p.name.is_empty() || (p.name == "iso" && p != CardProfile::iso()) {
            p.name = "custom".into();
        }
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<(), String> {
        if self.cla == 0xFF {
            return Err("cla FF is reserved (PPS)".into());
        }
        if let Some(aid) = &self.select_aid {
            let bytes = self.select_aid_bytes_of(aid)?;
            if !(1..=16).contains(&bytes.len()) {
                return Err(format!(
                    "select_aid has {} bytes; an AID has 1 to 16",
                    bytes.len()
                ));
            }
        }
        if self.challenge_len == 0 || self.challenge_len % 8 != 0 {
            return Err(format!(
                "challenge_len {} is not a positive multiple of 8 (3DES blocks)",
                self.challenge_len
            ));
        }
        if self.pin_min_len == 0 || self.pin_min_len > self.pin_max_len {
            return Err(format!(
                "pin_min_len {} and pin_max_len {} do not make a range",
                self.pin_min_len, self.pin_max_len
            ));
        }
        let limit = match self.pin_padding {
            PinPadding::None => 127,
            PinPadding::Ff8 => 8,
        };
        if self.pin_max_len > limit {
            return Err(format!(
                "pin_max_len {} is more than {limit}, the most this padding allows",
                self.pin_max_len
            ));
        }
        Ok(())
    }

    fn select_aid_bytes_of(&self, aid: &str) -> Result<Vec<u8>, String> {
        let clean: String = aid
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        hex::decode(&clean).map_err(|_| format!("select_aid {aid:?} is not hex"))
    }

    /// The AID to select, if any (validated at load).
    pub fn select_aid_bytes(&self) -> Option<Vec<u8>> {
        self.select_aid
            .as_deref()
            .and_then(|a| self.select_aid_bytes_of(a).ok())
    }

    /// Check a new PIN against this profile's policy. Says what is wrong
    /// without echoing the PIN.
    pub fn check_pin(&self, pin: &Pin) -> Result<(), Error> {
        let n = pin.len();
        if n < self.pin_min_len || n > self.pin_max_len {
            return Err(Error::usage(format!(
                "the new PIN has {n} characters; profile {} needs {} to {}",
                self.name, self.pin_min_len, self.pin_max_len
            )));
        }
        let ok = |b: &u8| match self.pin_charset {
            PinCharset::Printable => (0x20..=0x7E).contains(b),
            PinCharset::Digits => b.is_ascii_digit(),
            PinCharset::Alphanumeric => b.is_ascii_alphanumeric(),
            PinCharset::Any => true,
        };
        if let Some(pos) = pin.as_bytes().iter().position(|b| !ok(b)) {
            let allowed = match self.pin_charset {
                PinCharset::Printable => "printable ASCII",
                PinCharset::Digits => "digits",
                PinCharset::Alphanumeric => "letters and digits",
                PinCharset::Any => "any byte",
            };
            return Err(Error::usage(format!(
                "the new PIN has a character that is not {allowed} at position {}",
                pos + 1
            )));
        }
        Ok(())
    }

    /// The PIN as RESET RETRY COUNTER carries it.
    pub fn pin_block(&self, pin: &Pin) -> Zeroizing<Vec<u8>> {
        // Allocated at its final size: growing it for the padding would free a
        // copy of the PIN that Zeroizing never sees.
        let mut block = Zeroizing::new(Vec::with_capacity(pin.len().max(8)));
        block.extend_from_slice(pin.as_bytes());
        if self.pin_padding == PinPadding::Ff8 {
            block.resize(8, 0xFF);
        }
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(s: &str) -> Pin {
        Pin::new(Zeroizing::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn overrides_iso_from_toml() {
        let p = CardProfile::from_toml(
            "name = \"crescendo\"\next_auth_p2 = 0x01\npin_tries_query = false\nselect_aid = \"A0 00 00 03 97\"\n",
        )
        .unwrap();
        assert_eq!(p.ext_auth_p2, 1);
        assert!(!p.pin_tries_query);
        assert_eq!(p.rrc_p1, 2);
        assert_eq!(p.select_aid_bytes().unwrap(), vec![0xA0, 0, 0, 3, 0x97]);
        assert_eq!(CardProfile::from_toml("").unwrap(), CardProfile::iso());
    }

    #[test]
    fn rejects_bad_profiles() {
        for bad in [
            "unknown_key = 1",
            "cla = 256",
            "cla = 0xFF",
            "select_aid = \"xyz\"",
            "pin_min_len = 9",
            "challenge_len = 7",
            "pin_padding = \"ff8\"\npin_max_len = 12",
            "pin_charset = \"emoji\"",
            "not toml",
        ] {
            assert!(CardProfile::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pin_policy() {
        let iso = CardProfile::iso();
        assert!(iso.check_pin(&pin("1234")).is_ok());
        assert!(iso.check_pin(&pin("Ab c!~78")).is_ok());
        let e = iso.check_pin(&pin("123")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains("123 "), "{e}");
        assert!(iso.check_pin(&pin("123456789")).is_err());
        assert!(iso.check_pin(&pin("12\u{e9}4")).is_err());
        assert!(iso.check_pin(&pin("12\n4")).is_err());
        let digits = CardProfile::from_toml("pin_charset = \"digits\"").unwrap();
        let e = digits.check_pin(&pin("12a4")).unwrap_err();
        assert!(e.to_string().contains("position 3"), "{e}");
    }

    #[test]
    fn pads_with_ff_to_8() {
        let p = CardProfile::from_toml("pin_padding = \"ff8\"").unwrap();
        assert_eq!(&p.pin_block(&pin("1234"))[..], b"1234\xFF\xFF\xFF\xFF");
        assert_eq!(&CardProfile::iso().pin_block(&pin("1234"))[..], b"1234");
    }
}
