//! The admin key store and the 3DES challenge/response.
//!
//! Response = 3DES-EDE-ECB(admin key, 8-byte challenge). Keys are 24 bytes (3-key) or 16
//! bytes (2-key). The all-zero key is a DES weak key and must work: the docs' own example
//! uses it.

use std::collections::HashMap;

use des::cipher::{Array, BlockCipherEncrypt, KeyInit};
use des::{TdesEde2, TdesEde3};

use crate::util::normalize_id;

/// A Base CSP admin key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AdminKey {
    Tdes3([u8; 24]),
    Tdes2([u8; 16]),
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Test keys, but still: do not print them by accident.
        match self {
            AdminKey::Tdes3(_) => f.write_str("AdminKey::Tdes3(..)"),
            AdminKey::Tdes2(_) => f.write_str("AdminKey::Tdes2(..)"),
        }
    }
}

impl AdminKey {
    pub const ZERO: AdminKey = AdminKey::Tdes3([0; 24]);

    /// 48 or 32 hex digits (spaces and ':' allowed between them).
    pub fn from_hex(s: &str) -> Result<AdminKey, String> {
        let clean: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        let bytes = hex::decode(&clean).map_err(|e| format!("key {s:?} is not hex: {e}"))?;
        match bytes.len() {
            24 => Ok(AdminKey::Tdes3(bytes.try_into().expect("length checked"))),
            16 => Ok(AdminKey::Tdes2(bytes.try_into().expect("length checked"))),
            n => Err(format!(
                "key {s:?} has {n} bytes: a 3DES admin key has 24 (or 16)"
            )),
        }
    }

    /// The key in 24-byte form (a 2-key key is K1 K2 K1).
    pub fn to_24(self) -> [u8; 24] {
        match self {
            AdminKey::Tdes3(k) => k,
            AdminKey::Tdes2(k) => {
                let mut out = [0u8; 24];
                out[..16].copy_from_slice(&k);
                out[16..].copy_from_slice(&k[..8]);
                out
            }
        }
    }

    /// 3DES-EDE-ECB of one block.
    pub fn encrypt(&self, block: [u8; 8]) -> [u8; 8] {
        let mut b = Array::from(block);
        match self {
            AdminKey::Tdes3(k) => TdesEde3::new_from_slice(k)
                .expect("24-byte key")
                .encrypt_block(&mut b),
            AdminKey::Tdes2(k) => TdesEde2::new_from_slice(k)
                .expect("16-byte key")
                .encrypt_block(&mut b),
        }
        b.into()
    }

    /// A key that differs from this one in bits DES does not ignore: XOR with a mask whose
    /// every byte has its top bit set (DES ignores only the low, parity, bit of each byte).
    pub fn perturbed(&self, mask: &[u8]) -> AdminKey {
        let mut out = *self;
        let bytes: &mut [u8] = match &mut out {
            AdminKey::Tdes3(k) => k,
            AdminKey::Tdes2(k) => k,
        };
        for (i, b) in bytes.iter_mut().enumerate() {
            let m = mask.get(i % mask.len().max(1)).copied().unwrap_or(0x5a);
            *b ^= 0x80 | (m << 1);
        }
        out
    }
}

/// Which key answered a challenge (written to the request log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `--key CARDID=HEX`
    Card,
    /// `--default-key`
    Default,
    /// `--diversified-key CARDID=HEX`
    Diversified,
    /// diversified=True for a card without a registered diversified key: a stand-in
    /// derivation (CM's real algorithm is not public), so the answer is wrong for the card.
    Derived,
}

impl KeySource {
    pub fn name(self) -> &'static str {
        match self {
            KeySource::Card => "card",
            KeySource::Default => "default",
            KeySource::Diversified => "diversified",
            KeySource::Derived => "derived",
        }
    }
}

/// Admin keys by card id (ids normalized: no braces, lowercase).
#[derive(Debug, Clone)]
pub struct KeyStore {
    default: AdminKey,
    cards: HashMap<String, AdminKey>,
    diversified: HashMap<String, AdminKey>,
}

impl Default for KeyStore {
    fn default() -> Self {
        KeyStore::new(AdminKey::ZERO)
    }
}

impl KeyStore {
    pub fn new(default: AdminKey) -> KeyStore {
        KeyStore {
            default,
            cards: HashMap::new(),
            diversified: HashMap::new(),
        }
    }

    pub fn set_default(&mut self, key: AdminKey) {
        self.default = key;
    }

    pub fn insert(&mut self, card_id: &str, key: AdminKey) {
        self.cards.insert(normalize_id(card_id), key);
    }

    /// Mark a card as diversified, with the key its admin key was diversified to.
    pub fn insert_diversified(&mut self, card_id: &str, key: AdminKey) {
        self.diversified.insert(normalize_id(card_id), key);
    }

    /// The card's base (not diversified) key.
    pub fn base_key(&self, card_id: &str) -> (AdminKey, KeySource) {
        match self.cards.get(&normalize_id(card_id)) {
            Some(k) => (*k, KeySource::Card),
            None => (self.default, KeySource::Default),
        }
    }

    /// The card's diversified key: the registered one, else a derived stand-in.
    pub fn diversified_key(&self, card_id: &str) -> (AdminKey, KeySource) {
        let id = normalize_id(card_id);
        match self.diversified.get(&id) {
            Some(k) => (*k, KeySource::Diversified),
            None => (
                self.base_key(&id).0.perturbed(id.as_bytes()),
                KeySource::Derived,
            ),
        }
    }

    /// The key CM would answer with for this card and `diversified` query value.
    pub fn lookup(&self, card_id: &str, diversified: bool) -> (AdminKey, KeySource) {
        if diversified {
            self.diversified_key(card_id)
        } else {
            self.base_key(card_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::STANDARD as B64, Engine};

    /// The CM docs' example: all-zero 24-byte key, challenge 1hFD+cz/0so= -> F0Zudm4wPLY=.
    #[test]
    fn golden_vector_from_cm_docs() {
        let challenge: [u8; 8] = B64.decode("1hFD+cz/0so=").unwrap().try_into().unwrap();
        assert_eq!(hex::encode(challenge), "d61143f9ccffd2ca");
        let key = AdminKey::from_hex(&"00".repeat(24)).unwrap();
        assert_eq!(key, AdminKey::ZERO);
        let response = key.encrypt(challenge);
        assert_eq!(hex::encode(response), "17466e766e303cb6");
        assert_eq!(B64.encode(response), "F0Zudm4wPLY=");
        // The default key store answers the same for any card.
        let store = KeyStore::default();
        let (k, src) = store.lookup("bc88f13f-83ba-4037-8262-46eba1291c6e", false);
        assert_eq!(src, KeySource::Default);
        assert_eq!(B64.encode(k.encrypt(challenge)), "F0Zudm4wPLY=");
    }

    #[test]
    fn two_key_equals_k1k2k1() {
        let k2 = AdminKey::from_hex("0102030405060708 1112131415161718").unwrap();
        let k3 = AdminKey::Tdes3(k2.to_24());
        let c = *b"\x01\x23\x45\x67\x89\xab\xcd\xef";
        assert_eq!(k2.encrypt(c), k3.encrypt(c));
    }

    #[test]
    fn key_parsing() {
        assert!(AdminKey::from_hex("00").is_err());
        assert!(AdminKey::from_hex(&"zz".repeat(24)).is_err());
        assert!(matches!(
            AdminKey::from_hex(&"01:02:03:04:05:06:07:08:".repeat(3)),
            Ok(AdminKey::Tdes3(_))
        ));
    }

    #[test]
    fn store_lookup_and_diversification() {
        let mut s = KeyStore::default();
        let k = AdminKey::from_hex(&"0102030405060708".repeat(3)).unwrap();
        let d = AdminKey::from_hex(&"a1a2a3a4a5a6a7a8".repeat(3)).unwrap();
        s.insert("{AAAAAAAA-0000-0000-0000-000000000001}", k);
        s.insert_diversified("aaaaaaaa-0000-0000-0000-000000000002", d);
        let id1 = "aaaaaaaa-0000-0000-0000-000000000001";
        assert_eq!(s.lookup(id1, false), (k, KeySource::Card));
        let (derived, src) = s.lookup(id1, true);
        assert_eq!(src, KeySource::Derived);
        let c = [7u8; 8];
        assert_ne!(derived.encrypt(c), k.encrypt(c));
        assert_eq!(
            s.lookup("AAAAAAAA-0000-0000-0000-000000000002", true),
            (d, KeySource::Diversified)
        );
    }

    #[test]
    fn perturbed_key_really_differs() {
        // Flipping only parity bits would give the same cipher: make sure we do not.
        let c = [0x42u8; 8];
        for key in [AdminKey::ZERO, AdminKey::Tdes2([0xff; 16])] {
            assert_ne!(key.perturbed(&[0]).encrypt(c), key.encrypt(c));
            assert_ne!(key.perturbed(b"x").encrypt(c), key.encrypt(c));
        }
    }
}
