//! Card profiles: a card family and its parameters, as data.
//!
//! A profile names its family (`iso`, `gids`, `piv`, `crescendo`: one
//! [`crate::card::Applet`] each), the family's parameters, the new-PIN policy
//! shared by every family, and optional ATR patterns that claim cards for it.
//! Built-in profiles carry the family's defaults; a TOML file starts from the
//! built-in profile of its `family` (default `iso`) and overrides its keys:
//!
//! ```toml
//! family = "gids"                          # iso | gids | piv | crescendo
//! name = "site-gids"
//! atr = ["3B 8D 01 80 FB A0 00 00 03 97 42 54 46 59 04 01 CF", "3B 8D .. 80"]
//!
//! [pin]                                    # the new-PIN policy (every family)
//! min_len = 4
//! max_len = 16
//! charset = "printable"                    # printable | digits | alphanumeric | any
//!
//! [gids]                                   # the family's own parameters
//! mse_p1 = 0x81
//! key_ref = 0x80
//! ```
//!
//! Flat files without `family` are `iso` profiles, as before families existed:
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
//!
//! docs/cards.md describes each family and its parameters.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::admin_key::KeyAlg;
use crate::error::Error;
use crate::secret::Pin;

/// Where detection looks for site profiles unless `--profiles-dir` says.
pub const DEFAULT_PROFILES_DIR: &str = "/etc/scunblock/profiles.d";

/// A card family: how the card spells the four steps of an unblock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// ISO 7816-4 GET CHALLENGE / EXTERNAL AUTHENTICATE / RESET RETRY COUNTER.
    #[default]
    Iso,
    /// GIDS (Windows' inbox minidriver, TPM virtual smart cards): GENERAL AUTHENTICATE.
    Gids,
    /// PIV / YubiKey: 9B management key; the PIN is reset with the PUK.
    Piv,
    /// HID Crescendo: the ACA instance's XAUTH key and UNLOCK PIN.
    Crescendo,
}

impl Family {
    pub const ALL: [Family; 4] = [Family::Iso, Family::Gids, Family::Piv, Family::Crescendo];

    pub fn name(self) -> &'static str {
        match self {
            Family::Iso => "iso",
            Family::Gids => "gids",
            Family::Piv => "piv",
            Family::Crescendo => "crescendo",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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

impl PinPadding {
    /// A PIN (or PUK) padded this way, in a zeroizing buffer.
    pub fn block(self, pin: &Pin) -> Zeroizing<Vec<u8>> {
        // Allocated at its final size: growing it for the padding would free a
        // copy of the PIN that Zeroizing never sees.
        let mut block = Zeroizing::new(Vec::with_capacity(pin.len().max(8)));
        block.extend_from_slice(pin.as_bytes());
        if self == PinPadding::Ff8 {
            block.resize(8, 0xFF);
        }
        block
    }
}

/// The admin key's algorithm as a profile states it: `auto` asks the card
/// (PIV GET METADATA; Crescendo's challenge length).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgChoice {
    #[default]
    Auto,
    #[serde(rename = "3des")]
    Tdes,
    Aes128,
    Aes192,
    Aes256,
}

impl AlgChoice {
    /// The algorithm, when the profile fixes it.
    pub fn fixed(self) -> Option<KeyAlg> {
        match self {
            AlgChoice::Auto => None,
            AlgChoice::Tdes => Some(KeyAlg::Tdes),
            AlgChoice::Aes128 => Some(KeyAlg::Aes128),
            AlgChoice::Aes192 => Some(KeyAlg::Aes192),
            AlgChoice::Aes256 => Some(KeyAlg::Aes256),
        }
    }
}

/// GIDS parameters (MSE SET and GENERAL AUTHENTICATE in external mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GidsParams {
    /// MSE SET P1: 81 (external authentication; GidsApplet also takes C1).
    pub mse_p1: u8,
    /// The admin key reference (`83 01 <key_ref>`).
    pub key_ref: u8,
    /// The PIN reference of RESET RETRY COUNTER.
    pub pin_reference: u8,
}

impl Default for GidsParams {
    fn default() -> GidsParams {
        GidsParams {
            mse_p1: 0x81,
            key_ref: 0x80,
            pin_reference: 0x80,
        }
    }
}

/// PIV parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PivParams {
    /// The management key reference (9B).
    pub key_ref: u8,
    /// The management key's algorithm: `auto` asks YubiKey's GET METADATA
    /// and falls back to 3DES.
    pub key_alg: AlgChoice,
}

impl Default for PivParams {
    fn default() -> PivParams {
        PivParams {
            key_ref: 0x9B,
            key_alg: AlgChoice::Auto,
        }
    }
}

/// HID Crescendo parameters (the ACA instance).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrescendoParams {
    /// EXTERNAL AUTHENTICATE P2: the XAUTH key number.
    pub xauth_key: u8,
    /// The XAUTH key's algorithm: `auto` takes it from the challenge length
    /// (8 bytes 3DES, 16 AES-128).
    pub key_alg: AlgChoice,
}

impl Default for CrescendoParams {
    fn default() -> CrescendoParams {
        CrescendoParams {
            xauth_key: 0x01,
            key_alg: AlgChoice::Auto,
        }
    }
}

/// A card family with every parameter of its APDUs, the new-PIN policy and
/// the ATR patterns that claim cards for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CardProfile {
    pub name: String,
    pub family: Family,
    /// ATR patterns: hex bytes, `..` for any byte; the whole ATR must match.
    pub atr: Vec<String>,
    // The iso family's parameters (flat, as profile files had them before
    // families existed).
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
    // The new-PIN policy, every family (`[pin]` in files).
    pub pin_min_len: usize,
    pub pin_max_len: usize,
    pub pin_charset: PinCharset,
    pub pin_padding: PinPadding,
    // The other families' parameters: present exactly for their family.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gids: Option<GidsParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub piv: Option<PivParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crescendo: Option<CrescendoParams>,
}

impl Default for CardProfile {
    fn default() -> CardProfile {
        CardProfile::iso()
    }
}

/// The keys of the iso family's parameters, refused in other families'
/// files unless they keep the built-in value.
const ISO_KEYS: [&str; 10] = [
    "cla",
    "select_aid",
    "challenge_len",
    "ext_auth_p1",
    "ext_auth_p2",
    "admin_tries_query",
    "pin_reference",
    "rrc_p1",
    "rrc_p2",
    "pin_tries_query",
];

/// The Microsoft TPM virtual smart card's ATR (GIDS; no other OpenSC driver
/// claims it).
const TPM_VSC_ATR: &str = "3B 8D 01 80 FB A0 00 00 03 97 42 54 46 59 04 01 CF";

/// HID Crescendo C2300 family ATRs, from pcsc-tools' smartcard_list.txt:
/// C2300, Crescendo Key, C2300 FIPS (contact), C2300 FIPS (contactless).
const CRESCENDO_ATRS: [&str; 4] = [
    "3B D5 96 FF 81 91 FE 1F C3 43 32 33 30 30 CC",
    "3B D9 96 FF 81 91 FE 1F C3 43 32 33 30 30 2D 4B 45 59 BA",
    "3B DA 96 FF 81 91 FE 1F C3 43 32 33 30 30 2D 46 49 50 53 E2",
    "3B 8A 80 01 43 32 33 30 30 2D 46 49 50 53 68",
];

impl CardProfile {
    /// The built-in ISO / Base CSP profile.
    pub fn iso() -> CardProfile {
        CardProfile {
            name: "iso".into(),
            family: Family::Iso,
            atr: Vec::new(),
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
            gids: None,
            piv: None,
            crescendo: None,
        }
    }

    /// The built-in GIDS profile: PINs of 4 to 16 bytes (GidsApplet's range).
    pub fn gids() -> CardProfile {
        CardProfile {
            name: "gids".into(),
            family: Family::Gids,
            atr: vec![TPM_VSC_ATR.into()],
            pin_max_len: 16,
            gids: Some(GidsParams::default()),
            ..CardProfile::iso()
        }
    }

    /// The built-in PIV profile: PIN and PUK of 6 to 8 bytes, FF-padded.
    pub fn piv() -> CardProfile {
        CardProfile {
            name: "piv".into(),
            family: Family::Piv,
            pin_min_len: 6,
            pin_max_len: 8,
            pin_padding: PinPadding::Ff8,
            piv: Some(PivParams::default()),
            ..CardProfile::iso()
        }
    }

    /// The built-in HID Crescendo profile: claims the C2300 family by ATR.
    pub fn crescendo() -> CardProfile {
        CardProfile {
            name: "crescendo".into(),
            family: Family::Crescendo,
            atr: CRESCENDO_ATRS.iter().map(|a| a.to_string()).collect(),
            pin_max_len: 8,
            pin_padding: PinPadding::Ff8,
            crescendo: Some(CrescendoParams::default()),
            ..CardProfile::iso()
        }
    }

    /// The built-in profile of a family.
    pub fn builtin(family: Family) -> CardProfile {
        match family {
            Family::Iso => CardProfile::iso(),
            Family::Gids => CardProfile::gids(),
            Family::Piv => CardProfile::piv(),
            Family::Crescendo => CardProfile::crescendo(),
        }
    }

    /// A built-in profile by name.
    pub fn by_name(name: &str) -> Option<CardProfile> {
        Family::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .map(CardProfile::builtin)
    }

    /// `--profile NAME|FILE`: a built-in name wins; a file path contains `/`
    /// or ends in `.toml`.
    pub fn named_or_file(arg: &str) -> Result<CardProfile, Error> {
        if let Some(p) = CardProfile::by_name(arg) {
            return Ok(p);
        }
        if arg.contains('/') || arg.ends_with(".toml") {
            return CardProfile::load(Path::new(arg));
        }
        Err(Error::usage(format!(
            "--profile {:?} is neither a built-in profile (iso, gids, piv, crescendo) nor a \
             file (a path with / or ending in .toml)",
            arg.chars().take(60).collect::<String>()
        )))
    }

    /// Load a TOML profile file.
    pub fn load(path: &Path) -> Result<CardProfile, Error> {
        let bytes =
            crate::secret::read_public_file(path, "profile", crate::secret::PROFILE_FILE_CAP)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::usage(format!("the profile {} is not UTF-8 text", path.display()))
        })?;
        CardProfile::from_toml(text)
            .map_err(|e| Error::usage(format!("profile {}: {e}", path.display())))
    }

    /// Parse and validate profile text: the built-in profile of its family,
    /// with the file's keys over it.
    pub fn from_toml(text: &str) -> Result<CardProfile, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let family = match table.get("family") {
            None => Family::Iso,
            Some(v) => v
                .clone()
                .try_into()
                .map_err(|_| format!("family {v} is not one of iso, gids, piv, crescendo"))?,
        };
        let builtin = CardProfile::builtin(family);
        // `[pin]` is the shared policy's spelling; the flat pin_* keys are the same keys.
        if let Some(pin) = table.remove("pin") {
            let toml::Value::Table(pin) = pin else {
                return Err("pin must be a table: [pin]".into());
            };
            for (k, v) in pin {
                if !["min_len", "max_len", "charset", "padding"].contains(&k.as_str()) {
                    return Err(format!("unknown key pin.{k}"));
                }
                let flat = format!("pin_{k}");
                if table.contains_key(&flat) {
                    return Err(format!("pin.{k} and {flat} say the same thing: keep one"));
                }
                table.insert(flat, v);
            }
        }
        let base = toml::Table::try_from(&builtin).map_err(|e| e.to_string())?;
        if family != Family::Iso {
            for key in ISO_KEYS {
                if table.get(key).is_some_and(|v| base.get(key) != Some(v)) {
                    return Err(format!("{key} is a parameter of family iso, not {family}"));
                }
            }
        }
        for other in Family::ALL.into_iter().filter(|f| *f != family) {
            if table.contains_key(other.name()) && other != Family::Iso {
                return Err(format!("[{other}] does not apply to family {family}"));
            }
        }
        let merged = merge(base, table);
        let mut p: CardProfile = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let reserved = CardProfile::by_name(&p.name);
        if p.name.is_empty() || reserved.is_some_and(|b| b != p) {
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
        if self.atr.len() > 64 {
            return Err(format!("{} ATR patterns; at most 64", self.atr.len()));
        }
        for a in &self.atr {
            AtrPattern::parse(a)?;
        }
        let sections = [
            (Family::Gids, self.gids.is_some()),
            (Family::Piv, self.piv.is_some()),
            (Family::Crescendo, self.crescendo.is_some()),
        ];
        for (f, present) in sections {
            if present != (f == self.family) {
                return Err(format!("[{f}] goes with family = \"{f}\" only"));
            }
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

    /// Whether one of this profile's ATR patterns claims `atr`.
    pub fn claims(&self, atr: &[u8]) -> bool {
        self.atr
            .iter()
            .filter_map(|a| AtrPattern::parse(a).ok())
            .any(|p| p.matches(atr))
    }

    /// Check a new PIN against this profile's policy. Says what is wrong
    /// without echoing the PIN.
    pub fn check_pin(&self, pin: &Pin) -> Result<(), Error> {
        self.check_secret(pin, "new PIN")
    }

    /// Check a PIN-like secret (the new PIN, a PUK) against the policy.
    pub fn check_secret(&self, pin: &Pin, what: &str) -> Result<(), Error> {
        let n = pin.len();
        if n < self.pin_min_len || n > self.pin_max_len {
            return Err(Error::usage(format!(
                "the {what} has {n} characters; profile {} needs {} to {}",
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
                "the {what} has a character that is not {allowed} at position {}",
                pos + 1
            )));
        }
        Ok(())
    }

    /// The PIN as RESET RETRY COUNTER carries it.
    pub fn pin_block(&self, pin: &Pin) -> Zeroizing<Vec<u8>> {
        self.pin_padding.block(pin)
    }
}

/// Deep-merge `over` into `base` (tables key by key; other values replace).
fn merge(mut base: toml::Table, over: toml::Table) -> toml::Table {
    for (k, v) in over {
        match (base.remove(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                base.insert(k, toml::Value::Table(merge(b, o)));
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
    base
}

/// An ATR pattern: bytes, `..` for any byte; the whole ATR must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AtrPattern(Vec<Option<u8>>);

impl AtrPattern {
    pub fn parse(text: &str) -> Result<AtrPattern, String> {
        let compact: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        if compact.len() % 2 != 0 || compact.is_empty() || compact.len() > 66 {
            return Err(format!(
                "ATR pattern {text:?}: 1 to 33 bytes of hex or .. each"
            ));
        }
        let mut out = Vec::with_capacity(compact.len() / 2);
        for pair in compact.as_bytes().chunks(2) {
            if pair == b".." {
                out.push(None);
                continue;
            }
            let byte = std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("ATR pattern {text:?}: not hex or .."))?;
            out.push(Some(byte));
        }
        Ok(AtrPattern(out))
    }

    pub fn matches(&self, atr: &[u8]) -> bool {
        self.0.len() == atr.len()
            && self
                .0
                .iter()
                .zip(atr)
                .all(|(p, b)| p.is_none_or(|p| p == *b))
    }
}

/// Where the profile of a run comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileSource {
    /// `--profile`: detection skipped.
    Option,
    /// Detected from the card (ATR, then SELECT).
    Detected,
}

/// What a run may use: one profile forced by `--profile`, or the profiles
/// detection chooses from (site files first, then the built-ins).
#[derive(Clone, Debug)]
pub enum ProfileChoice {
    Forced(CardProfile),
    Detect {
        /// Profile files of the profiles directory, in file-name order.
        site: Vec<CardProfile>,
    },
}

impl ProfileChoice {
    /// `--profile` if given; else every `*.toml` of `dir` (or
    /// [`DEFAULT_PROFILES_DIR`]; a missing directory is no error). A bad file
    /// is exit 2: a site's profile must not be ignored silently.
    pub fn new(profile: Option<&str>, dir: Option<&Path>) -> Result<ProfileChoice, Error> {
        if let Some(arg) = profile {
            return Ok(ProfileChoice::Forced(CardProfile::named_or_file(arg)?));
        }
        let given = dir.is_some();
        let dir = dir.map_or_else(|| PathBuf::from(DEFAULT_PROFILES_DIR), Path::to_path_buf);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if !given && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ProfileChoice::Detect { site: Vec::new() })
            }
            Err(e) => {
                return Err(Error::usage(format!(
                    "cannot read the profiles directory {}: {e}",
                    dir.display()
                )))
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .take(256)
            .collect();
        paths.sort();
        let site = paths
            .iter()
            .map(|p| CardProfile::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProfileChoice::Detect { site })
    }

    /// The profile whose ATR patterns claim `atr`: site files first, then the
    /// built-ins.
    pub fn by_atr(site: &[CardProfile], atr: &[u8]) -> Option<CardProfile> {
        site.iter()
            .cloned()
            .chain(Family::ALL.into_iter().map(CardProfile::builtin))
            .find(|p| p.claims(atr))
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
            "name = \"crescendo-ish\"\next_auth_p2 = 0x01\npin_tries_query = false\nselect_aid = \"A0 00 00 03 97\"\n",
        )
        .unwrap();
        assert_eq!(p.ext_auth_p2, 1);
        assert!(!p.pin_tries_query);
        assert_eq!(p.rrc_p1, 2);
        assert_eq!(p.family, Family::Iso);
        assert_eq!(p.select_aid_bytes().unwrap(), vec![0xA0, 0, 0, 3, 0x97]);
        assert_eq!(CardProfile::from_toml("").unwrap(), CardProfile::iso());
    }

    #[test]
    fn family_files_start_from_the_builtin() {
        let p = CardProfile::from_toml(
            "family = \"gids\"\nname = \"site\"\natr = [\"3B 8D .. 80\"]\n[pin]\nmax_len = 12\n[gids]\nmse_p1 = 0xC1\n",
        )
        .unwrap();
        assert_eq!(p.family, Family::Gids);
        assert_eq!(p.name, "site");
        assert_eq!(p.pin_max_len, 12);
        assert_eq!(p.pin_min_len, 4);
        let g = p.gids.as_ref().unwrap();
        assert_eq!((g.mse_p1, g.key_ref), (0xC1, 0x80));
        assert!(p.claims(&[0x3B, 0x8D, 0x42, 0x80]));
        assert!(!p.claims(&[0x3B, 0x8D, 0x42, 0x81]));
        assert!(!p.claims(&[0x3B, 0x8D, 0x42]));
        let piv = CardProfile::from_toml("family = \"piv\"").unwrap();
        assert_eq!(piv, CardProfile::piv());
        assert_eq!(piv.name, "piv");
        // Same name as a built-in but different: not passed off as the built-in.
        let renamed = CardProfile::from_toml("family = \"piv\"\n[pin]\nmin_len = 7").unwrap();
        assert_eq!(renamed.name, "custom");
    }

    #[test]
    fn every_builtin_round_trips() {
        for f in Family::ALL {
            let p = CardProfile::builtin(f);
            let saved = toml::to_string(&p).unwrap();
            assert_eq!(CardProfile::from_toml(&saved).unwrap(), p, "{saved}");
            assert_eq!(CardProfile::by_name(f.name()).unwrap(), p);
        }
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
            "family = \"idprime\"",
            "family = \"gids\"\next_auth_p2 = 1",
            "family = \"gids\"\n[piv]\nkey_ref = 0x9B",
            "[gids]\nmse_p1 = 0x81",
            "family = \"piv\"\n[piv]\nkey_alg = \"des\"",
            "[pin]\nmin_len = 4\npin_min_len = 4",
            "[pin]\nlength = 4",
            "atr = [\"3B 8\"]",
            "atr = [\"3B ZZ\"]",
            "pin = 4",
        ] {
            assert!(CardProfile::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn builtin_names_win_and_paths_need_a_slash_or_toml() {
        assert_eq!(
            CardProfile::named_or_file("crescendo").unwrap(),
            CardProfile::crescendo()
        );
        let e = CardProfile::named_or_file("idprime").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("built-in"), "{e}");
        assert_eq!(
            CardProfile::named_or_file("./missing.toml")
                .unwrap_err()
                .exit_code(),
            2
        );
    }

    #[test]
    fn builtin_atr_patterns() {
        let vsc = hex::decode("3B8D0180FBA000000397425446590401CF").unwrap();
        assert_eq!(
            ProfileChoice::by_atr(&[], &vsc).map(|p| p.family),
            Some(Family::Gids)
        );
        let c2300 = hex::decode("3BD596FF8191FE1FC343323330 30CC".replace(' ', "")).unwrap();
        assert_eq!(
            ProfileChoice::by_atr(&[], &c2300).map(|p| p.family),
            Some(Family::Crescendo)
        );
        assert_eq!(ProfileChoice::by_atr(&[], &[0x3B, 0x00]), None);
        // A site file claims before the built-ins.
        let site = CardProfile::from_toml(&format!(
            "family = \"iso\"\nname = \"site\"\natr = [\"{}\"]",
            "3B 8D 01 80 FB A0 00 00 03 97 42 54 46 59 04 01 CF"
        ))
        .unwrap();
        assert_eq!(
            ProfileChoice::by_atr(&[site], &vsc).map(|p| p.name),
            Some("site".to_string())
        );
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
        let e = CardProfile::piv()
            .check_secret(&pin("12345"), "PUK")
            .unwrap_err();
        assert!(e.to_string().contains("the PUK has 5"), "{e}");
    }

    #[test]
    fn pads_with_ff_to_8() {
        let p = CardProfile::from_toml("pin_padding = \"ff8\"").unwrap();
        assert_eq!(&p.pin_block(&pin("1234"))[..], b"1234\xFF\xFF\xFF\xFF");
        assert_eq!(&CardProfile::iso().pin_block(&pin("1234"))[..], b"1234");
    }
}
