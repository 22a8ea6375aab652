//! The card's admin key and the challenge/response computed with it.
//!
//! Response = E-ECB(key, challenge): one block (8 bytes for 3DES, 16 for
//! AES), so ECB and CBC with a zero IV agree. The algorithm is the card's
//! ([`KeyAlg`]), never guessed from the key's length: 16 and 24 bytes fit both
//! 3DES and AES. 3DES keys are 24 bytes (3-key) or 16 bytes (2-key); parity
//! bits are ignored and weak keys (the all-zero default, single DES in 3DES
//! form such as the PIV default 0102..08 x3) are accepted, as the cards
//! accept them.

use std::fmt;

use aes::{Aes128, Aes192, Aes256};
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

/// The algorithm of a card's admin key, as the card reports it (PIV GET
/// METADATA, the family's default otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlg {
    /// Triple DES (2- or 3-key), 8-byte challenges. What CM computes.
    #[default]
    Tdes,
    Aes128,
    Aes192,
    Aes256,
}

impl KeyAlg {
    /// The challenge (block) length.
    pub fn block_len(self) -> usize {
        match self {
            KeyAlg::Tdes => 8,
            _ => 16,
        }
    }

    /// Whether a key of `len` bytes is a key of this algorithm.
    pub fn fits(self, len: usize) -> bool {
        match self {
            KeyAlg::Tdes => len == 16 || len == 24,
            KeyAlg::Aes128 => len == 16,
            KeyAlg::Aes192 => len == 24,
            KeyAlg::Aes256 => len == 32,
        }
    }

    /// The key lengths this algorithm takes, for messages.
    pub fn key_lens(self) -> &'static str {
        match self {
            KeyAlg::Tdes => "24 bytes (48 hex digits) or 16 (32)",
            KeyAlg::Aes128 => "16 bytes (32 hex digits)",
            KeyAlg::Aes192 => "24 bytes (48 hex digits)",
            KeyAlg::Aes256 => "32 bytes (64 hex digits)",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::Tdes => "3DES",
            KeyAlg::Aes128 => "AES-128",
            KeyAlg::Aes192 => "AES-192",
            KeyAlg::Aes256 => "AES-256",
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An admin key: 16 or 24 bytes (3DES or AES-128/192) or 32 (AES-256). Its
/// algorithm comes from the card. Zeroized on drop; never printed.
pub struct AdminKey {
    bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminKey({} bytes, REDACTED)", self.bytes.len())
    }
}

impl AdminKey {
    /// A key from its raw bytes: 16, 24 or 32.
    pub fn from_bytes(bytes: &[u8]) -> Result<AdminKey, Error> {
        match bytes.len() {
            16 | 24 | 32 => Ok(AdminKey {
                bytes: Zeroizing::new(bytes.to_vec()),
            }),
            n => Err(Error::usage(format!(
                "the admin key has {n} bytes; a 3DES admin key has 24 (3-key) or 16 (2-key), \
                 an AES key 16, 24 or 32"
            ))),
        }
    }

    /// Parse what a key file or variable holds: hex text of 48, 32 or 64
    /// digits (spaces, tabs, colons, dashes and line ends allowed, optional
    /// 0x), or the raw 24, 16 or 32 bytes. Text that looks like hex is always read as hex, so a
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
            if ![32, 48, 64].contains(&digits.len()) {
                return Err(Error::usage(format!(
                    "the admin key has {} hex digits; it needs 48 (24-byte 3-key 3DES or \
                     AES-192), 32 (16-byte 2-key 3DES or AES-128) or 64 (AES-256)",
                    digits.len()
                )));
            }
            let mut raw = Zeroizing::new(vec![0u8; digits.len() / 2]);
            hex::decode_to_slice(&digits[..], &mut raw[..])
                .map_err(|_| Error::usage("the admin key is not valid hex"))?;
            return AdminKey::from_bytes(&raw);
        }
        match input.len() {
            16 | 24 | 32 => AdminKey::from_bytes(input),
            n => Err(Error::usage(format!(
                "the admin key is neither hex text (32, 48 or 64 digits) nor raw bytes (16, 24 \
                 or 32): got {n} bytes"
            ))),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Blank this key, in all its printable forms, in every output from now on
    /// ([`crate::scrub::register_key`]). The command line does so for the key it reads.
    pub fn register_for_scrubbing(&self) {
        crate::scrub::register_key(&self.bytes);
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Check that this key is a key of the card's algorithm: exit 2, before
    /// any challenge, when it is not.
    pub fn check_alg(&self, alg: KeyAlg) -> Result<(), Error> {
        if alg.fits(self.len()) {
            return Ok(());
        }
        Err(Error::usage(format!(
            "the admin key has {} bytes, but the card's admin key is {alg}, which takes {}; \
             nothing was sent to the card",
            self.len(),
            alg.key_lens()
        )))
    }

    /// The response to a card's challenge: E-ECB under the card's algorithm,
    /// over each block.
    pub fn respond(&self, alg: KeyAlg, challenge: &Challenge) -> Result<Cryptogram, Error> {
        self.check_alg(alg)?;
        let c = challenge.as_bytes();
        let block = alg.block_len();
        if c.is_empty() || c.len() % block != 0 {
            return Err(Error::protocol(format!(
                "the card's challenge has {} bytes; {alg} needs a multiple of {block}",
                c.len()
            )));
        }
        let mut out = c.to_vec();
        self.encrypt_blocks(alg, &mut out);
        Ok(Cryptogram(out))
    }

    /// Key check value: the first 3 bytes of E(key, 00..00) (one block), as
    /// shown by key ceremonies and HSMs. Identifies a key without revealing
    /// it. For a 16- or 24-byte key it is the 3DES value unless `alg` says
    /// AES.
    pub fn check_value(&self, alg: KeyAlg) -> String {
        let alg = if alg.fits(self.len()) {
            alg
        } else {
            KeyAlg::Aes256
        };
        let mut block = vec![0u8; alg.block_len()];
        self.encrypt_blocks(alg, &mut block);
        hex::encode_upper(&block[..3])
    }

    /// Encrypt whole blocks in place. `alg` fits the key (checked by callers).
    fn encrypt_blocks(&self, alg: KeyAlg, data: &mut [u8]) {
        fn ecb<C: BlockCipherEncrypt + KeyInit>(key: &[u8], data: &mut [u8]) {
            // Key lengths were checked against the algorithm: this cannot fail.
            let Ok(c) = C::new_from_slice(key) else {
                return;
            };
            for block in data.chunks_exact_mut(C::block_size()) {
                if let Ok(block) = block.try_into() {
                    c.encrypt_block(block);
                }
            }
        }
        let k = &self.bytes[..];
        match (alg, k.len()) {
            (KeyAlg::Tdes, 24) => ecb::<TdesEde3>(k, data),
            (KeyAlg::Tdes, _) => ecb::<TdesEde2>(k, data),
            (KeyAlg::Aes128, _) => ecb::<Aes128>(k, data),
            (KeyAlg::Aes192, _) => ecb::<Aes192>(k, data),
            (KeyAlg::Aes256, _) => ecb::<Aes256>(k, data),
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
    /// `openssl enc -des-ede3 -K 0102..18 -nopad` over 0102030405060708.
    const OPENSSL_DES_EDE3_0102_18: &str = "948b35b581e58150";

    #[test]
    fn golden_vector_from_the_cm_docs() {
        let key = AdminKey::from_bytes(&[0u8; 24]).unwrap();
        let challenge = Challenge::new(B64.decode("1hFD+cz/0so=").unwrap());
        assert_eq!(hex::encode(challenge.as_bytes()), "d61143f9ccffd2ca");
        let response = key.respond(KeyAlg::Tdes, &challenge).unwrap();
        assert_eq!(hex::encode(response.as_bytes()), "17466e766e303cb6");
        assert_eq!(B64.encode(response.as_bytes()), "F0Zudm4wPLY=");
    }

    #[test]
    fn two_key_equals_three_key_with_k3_eq_k1() {
        let k2: Vec<u8> = (1..=16).collect();
        let mut k3 = k2.clone();
        k3.extend_from_slice(&k2[..8]);
        let c = Challenge::new(hex::decode("0102030405060708").unwrap());
        let a = AdminKey::from_bytes(&k2)
            .unwrap()
            .respond(KeyAlg::Tdes, &c)
            .unwrap();
        let b = AdminKey::from_bytes(&k3)
            .unwrap()
            .respond(KeyAlg::Tdes, &c)
            .unwrap();
        assert_eq!(a, b);
        // printf '\x01\x02\x03\x04\x05\x06\x07\x08' |
        //   openssl enc -des-ede3 -K 0102..18 -nopad | xxd -p
        let k: Vec<u8> = (1..=24).collect();
        let r = AdminKey::from_bytes(&k)
            .unwrap()
            .respond(KeyAlg::Tdes, &c)
            .unwrap();
        assert_eq!(hex::encode(r.as_bytes()), OPENSSL_DES_EDE3_0102_18);
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
            AdminKey::from_bytes(&[0; 24])
                .unwrap()
                .check_value(KeyAlg::Tdes),
            "8CA64D"
        );
    }

    #[test]
    fn aes_keys_match_fips_197_and_openssl() {
        // FIPS-197 appendix C; `openssl enc -aes-N-ecb -K 0001.. -nopad` gives the same.
        let plain = Challenge::new(hex::decode("00112233445566778899aabbccddeeff").unwrap());
        for (alg, n, want) in [
            (KeyAlg::Aes128, 16, "69c4e0d86a7b0430d8cdb78070b4c55a"),
            (KeyAlg::Aes192, 24, "dda97ca4864cdfe06eaf70a0ec0d7191"),
            (KeyAlg::Aes256, 32, "8ea2b7ca516745bfeafc49904b496089"),
        ] {
            let k: Vec<u8> = (0..n).collect();
            let key = AdminKey::from_bytes(&k).unwrap();
            let r = key.respond(alg, &plain).unwrap();
            assert_eq!(hex::encode(r.as_bytes()), want, "{alg}");
        }
    }

    #[test]
    fn the_card_decides_the_algorithm_not_the_key_length() {
        let key = AdminKey::parse(b"000102030405060708090a0b0c0d0e0f1011121314151617").unwrap();
        assert!(key.check_alg(KeyAlg::Tdes).is_ok());
        assert!(key.check_alg(KeyAlg::Aes192).is_ok());
        let e = key.check_alg(KeyAlg::Aes128).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("AES-128"), "{e}");
        let aes256 = AdminKey::from_bytes(&[7; 32]).unwrap();
        assert_eq!(aes256.check_alg(KeyAlg::Tdes).unwrap_err().exit_code(), 2);
        // The PIV default management key: single DES in 3DES form, accepted.
        let piv = AdminKey::parse(b"010203040506070801020304050607080102030405060708").unwrap();
        let c = Challenge::new(hex::decode("0102030405060708").unwrap());
        assert_eq!(
            hex::encode(piv.respond(KeyAlg::Tdes, &c).unwrap().as_bytes()),
            "77a7d6bcf57962b9"
        );
    }

    #[test]
    fn odd_challenges_are_refused() {
        let key = AdminKey::from_bytes(&[0; 24]).unwrap();
        assert!(key
            .respond(KeyAlg::Tdes, &Challenge::new(vec![0; 9]))
            .is_err());
        assert!(key.respond(KeyAlg::Tdes, &Challenge::new(vec![])).is_err());
        assert!(key
            .respond(KeyAlg::Aes192, &Challenge::new(vec![0; 8]))
            .is_err());
    }
}
