//! The card's 3DES admin key and the challenge/response computed with it.
//!
//! Response = 3DES-EDE-ECB(key, challenge): one 8-byte block, so ECB and CBC
//! with a zero IV agree. Keys are 24 bytes (3-key) or 16 bytes (2-key); parity
//! bits are ignored and weak keys (the all-zero default among them) are
//! accepted, as the cards accept them.

use std::fmt;

use des::cipher::{BlockCipherEncrypt, KeyInit};
use des::{TdesEde2, TdesEde3};
use zeroize::Zeroizing;

use crate::error::Error;

/// A byte-string newtype with hex `Debug`: for values that are not secret.
macro_rules! public_bytes {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Vec<u8>);

        impl $name {
            pub fn new(bytes: Vec<u8>) -> $name {
                $name(bytes)
            }
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
            pub fn len(&self) -> usize {
                self.0.len()
            }
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode_upper(&self.0))
            }
        }
    };
}

public_bytes!(
    /// The challenge a card sent for admin authentication.
    Challenge
);

public_bytes!(
    /// The admin response (cryptogram) for one challenge. It is single-use: it
    /// authenticates nothing once the card has consumed the challenge.
    Cryptogram
);

/// A 2-key or 3-key 3DES admin key. Zeroized on drop; never printed.
pub struct AdminKey {
    bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminKey({} bytes, REDACTED)", self.bytes.len())
    }
}

impl AdminKey {
    /// A key from its raw bytes: 16 or 24.
    pub fn from_bytes(bytes: &[u8]) -> Result<AdminKey, Error> {
        match bytes.len() {
            16 | 24 => Ok(AdminKey {
                bytes: Zeroizing::new(bytes.to_vec()),
            }),
            n => Err(Error::usage(format!(
                "the admin key has {n} bytes; a 3DES admin key has 24 (3-key) or 16 (2-key)"
            ))),
        }
    }

    /// Parse what a key file or variable holds: hex text of 48 or 32 digits
    /// (spaces, tabs, colons, dashes and line ends allowed, optional 0x), or the
    /// raw 24 or 16 bytes. Text that looks like hex is always read as hex, so a
    /// mistyped hex key is refused rather than used as raw bytes.
    pub fn parse(input: &[u8]) -> Result<AdminKey, Error> {
        let looks_textual = input
            .iter()
            .all(|b| b.is_ascii_hexdigit() || b" \t\r\n:-xX".contains(b));
        if looks_textual && !input.is_empty() {
            // Sized once: a Vec grown by collect() would free copies of the
            // key's digits on the way, which Zeroizing never sees.
            let mut digits: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(input.len()));
            digits.extend(
                strip_0x(input)
                    .iter()
                    .copied()
                    .filter(|b| b.is_ascii_hexdigit()),
            );
            if strip_0x(input).iter().any(|b| *b == b'x' || *b == b'X') {
                return Err(Error::usage(
                    "the admin key text is not valid hex (an 'x' in the middle)",
                ));
            }
            if digits.len() != 48 && digits.len() != 32 {
                return Err(Error::usage(format!(
                    "the admin key has {} hex digits; it needs 48 (24-byte 3-key) or 32 (16-byte 2-key)",
                    digits.len()
                )));
            }
            let mut raw = Zeroizing::new(vec![0u8; digits.len() / 2]);
            hex::decode_to_slice(&digits[..], &mut raw[..])
                .map_err(|_| Error::usage("the admin key is not valid hex"))?;
            return AdminKey::from_bytes(&raw);
        }
        match input.len() {
            16 | 24 => AdminKey::from_bytes(input),
            n => Err(Error::usage(format!(
                "the admin key is neither hex text (48 or 32 digits) nor raw bytes (24 or 16): got {n} bytes"
            ))),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The response to a card's challenge: 3DES-EDE-ECB over each 8-byte block.
    pub fn respond(&self, challenge: &Challenge) -> Result<Cryptogram, Error> {
        let c = challenge.as_bytes();
        if c.is_empty() || c.len() % 8 != 0 {
            return Err(Error::protocol(format!(
                "the card's challenge has {} bytes; 3DES needs a multiple of 8",
                c.len()
            )));
        }
        let mut out = c.to_vec();
        self.encrypt_blocks(&mut out);
        Ok(Cryptogram(out))
    }

    /// Key check value: the first 3 bytes of 3DES(key, 00..00), as shown by
    /// key ceremonies and HSMs. Identifies a key without revealing it.
    pub fn check_value(&self) -> String {
        let mut block = vec![0u8; 8];
        self.encrypt_blocks(&mut block);
        hex::encode_upper(&block[..3])
    }

    fn encrypt_blocks(&self, data: &mut [u8]) {
        match self.bytes.len() {
            24 => {
                let c = TdesEde3::new_from_slice(&self.bytes).expect("24-byte key");
                for block in data.chunks_exact_mut(8) {
                    c.encrypt_block(block.try_into().expect("8-byte block"));
                }
            }
            _ => {
                let c = TdesEde2::new_from_slice(&self.bytes).expect("16-byte key");
                for block in data.chunks_exact_mut(8) {
                    c.encrypt_block(block.try_into().expect("8-byte block"));
                }
            }
        }
    }
}

fn strip_0x(input: &[u8]) -> &[u8] {
    let trimmed = input.trim_ascii_start();
    trimmed
        .strip_prefix(b"0x")
        .or_else(|| trimmed.strip_prefix(b"0X"))
        .unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    #[test]
    fn golden_vector_from_the_cm_docs() {
        let key = AdminKey::from_bytes(&[0u8; 24]).unwrap();
        let challenge = Challenge::new(B64.decode("1hFD+cz/0so=").unwrap());
        assert_eq!(hex::encode(challenge.as_bytes()), "d61143f9ccffd2ca");
        let response = key.respond(&challenge).unwrap();
        assert_eq!(hex::encode(response.as_bytes()), "17466e766e303cb6");
        assert_eq!(B64.encode(response.as_bytes()), "F0Zudm4wPLY=");
    }

    #[test]
    fn two_key_equals_three_key_with_k3_eq_k1() {
        let k2: Vec<u8> = (1..=16).collect();
        let mut k3 = k2.clone();
        k3.extend_from_slice(&k2[..8]);
        let c = Challenge::new(hex::decode("0102030405060708").unwrap());
        let a = AdminKey::from_bytes(&k2).unwrap().respond(&c).unwrap();
        let b = AdminKey::from_bytes(&k3).unwrap().respond(&c).unwrap();
        assert_eq!(a, b);
        // openssl enc -des-ede3 -K 0102..18 -nopad over 0102030405060708
        let k: Vec<u8> = (1..=24).collect();
        let r = AdminKey::from_bytes(&k).unwrap().respond(&c).unwrap();
        assert_ne!(r.as_bytes(), c.as_bytes());
    }

    #[test]
    fn parses_key_text_and_raw_bytes() {
        let zero = AdminKey::parse(b"000000000000000000000000000000000000000000000000\n").unwrap();
        assert_eq!(zero.len(), 24);
        let spaced =
            AdminKey::parse(b"01 02 03 04 05 06 07 08:01 02 03 04 05 06 07 08\r\n").unwrap();
        assert_eq!(spaced.len(), 16);
        assert_eq!(
            AdminKey::parse(b"0x0102030405060708010203040506070801020304050607 08")
                .unwrap()
                .len(),
            24
        );
        let raw: Vec<u8> = (0x80..0x98).collect();
        assert_eq!(AdminKey::parse(&raw).unwrap().len(), 24);
        // A truncated hex key is refused, never taken as raw bytes.
        let e = AdminKey::parse(b"000000000000000000000000").unwrap_err();
        assert!(e.to_string().contains("24 hex digits"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(AdminKey::parse(b"").is_err());
        assert!(AdminKey::parse(b"zz").is_err());
        assert!(AdminKey::parse(&[0xFFu8; 20]).is_err());
        assert!(AdminKey::parse(b"00x0000000000000000000000000000000000000000000000").is_err());
    }

    #[test]
    fn key_never_debug_prints() {
        let key = AdminKey::parse(b"0102030405060708010203040506070801020304050607FF").unwrap();
        let d = format!("{key:?}");
        assert!(
            d.contains("REDACTED") && !d.contains("0102") && !d.contains("FF"),
            "{d}"
        );
    }

    #[test]
    fn check_value_of_the_zero_key() {
        // 3DES with an all-zero key is single DES with key 0: E(0) = 8CA64DE9C1B123A7.
        assert_eq!(
            AdminKey::from_bytes(&[0; 24]).unwrap().check_value(),
            "8CA64D"
        );
    }

    #[test]
    fn odd_challenges_are_refused() {
        let key = AdminKey::from_bytes(&[0; 24]).unwrap();
        assert!(key.respond(&Challenge::new(vec![0; 9])).is_err());
        assert!(key.respond(&Challenge::new(vec![])).is_err());
    }
}
