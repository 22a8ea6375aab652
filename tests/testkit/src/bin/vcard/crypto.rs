//! The card's admin key: 3DES (the Base CSP / GIDS / CM key) or AES (PIV management keys of
//! YubiKey firmware 5.7+, Crescendo XAUTH keys), with the one-block ECB the challenge/response
//! schemes use and the 3DES-CBC of the GIDS mutual scheme. Own code, independent of the
//! scunblock crate, so that the card checks the agent rather than agreeing with it.

use aes::{Aes128, Aes192, Aes256};
use des::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use des::{TdesEde2, TdesEde3};

/// The algorithm of the admin key, named as PIV's algorithm identifiers name them
/// (P1 of GENERAL AUTHENTICATE; GET METADATA tag 01).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MgmtAlg {
    Tdes,
    Aes128,
    Aes192,
    Aes256,
}

impl MgmtAlg {
    pub fn parse(s: &str) -> Result<MgmtAlg, String> {
        match s {
            "3des" => Ok(MgmtAlg::Tdes),
            "aes128" => Ok(MgmtAlg::Aes128),
            "aes192" => Ok(MgmtAlg::Aes192),
            "aes256" => Ok(MgmtAlg::Aes256),
            _ => Err(format!(
                "unknown key algorithm {s:?} (3des, aes128, aes192, aes256)"
            )),
        }
    }

    /// The name of the command line and the state file.
    pub fn name(self) -> &'static str {
        match self {
            MgmtAlg::Tdes => "3des",
            MgmtAlg::Aes128 => "aes128",
            MgmtAlg::Aes192 => "aes192",
            MgmtAlg::Aes256 => "aes256",
        }
    }

    /// SP 800-78 algorithm identifier (PIV P1 and YubiKey metadata).
    pub fn piv_id(self) -> u8 {
        match self {
            MgmtAlg::Tdes => 0x03,
            MgmtAlg::Aes128 => 0x08,
            MgmtAlg::Aes192 => 0x0A,
            MgmtAlg::Aes256 => 0x0C,
        }
    }

    /// Block size: the challenge length of the single-step schemes.
    pub fn block_len(self) -> usize {
        match self {
            MgmtAlg::Tdes => 8,
            _ => 16,
        }
    }

    fn key_len_fits(self, len: usize) -> bool {
        match self {
            MgmtAlg::Tdes => len == 16 || len == 24,
            MgmtAlg::Aes128 => len == 16,
            MgmtAlg::Aes192 => len == 24,
            MgmtAlg::Aes256 => len == 32,
        }
    }

    /// The all-zero key of this algorithm (the default admin key).
    pub fn zero_key_len(self) -> usize {
        match self {
            MgmtAlg::Tdes | MgmtAlg::Aes192 => 24,
            MgmtAlg::Aes128 => 16,
            MgmtAlg::Aes256 => 32,
        }
    }
}

/// The admin key: 3DES 16 bytes (2-key EDE) or 24 bytes (3-key EDE), AES 16/24/32 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKey {
    alg: MgmtAlg,
    bytes: Vec<u8>,
}

impl AdminKey {
    /// A 3DES key (what every family but AES PIV/Crescendo uses).
    pub fn new(bytes: Vec<u8>) -> Result<AdminKey, String> {
        AdminKey::with_alg(MgmtAlg::Tdes, bytes)
    }

    pub fn with_alg(alg: MgmtAlg, bytes: Vec<u8>) -> Result<AdminKey, String> {
        if !alg.key_len_fits(bytes.len()) {
            let want = match alg {
                MgmtAlg::Tdes => "16 or 24",
                MgmtAlg::Aes128 => "16",
                MgmtAlg::Aes192 => "24",
                MgmtAlg::Aes256 => "32",
            };
            return Err(format!(
                "{} keys are {want} bytes, got {}",
                alg.name(),
                bytes.len()
            ));
        }
        Ok(AdminKey { alg, bytes })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn alg(&self) -> MgmtAlg {
        self.alg
    }

    /// ECB encryption of one block (8 bytes 3DES, 16 AES): the expected response to a
    /// challenge. A block of the wrong size gives None.
    pub fn encrypt(&self, block: &[u8]) -> Option<Vec<u8>> {
        self.crypt(block, true)
    }

    /// ECB decryption of one block (the PIV witness, the GIDS mutual block).
    pub fn decrypt(&self, block: &[u8]) -> Option<Vec<u8>> {
        self.crypt(block, false)
    }

    fn crypt(&self, block: &[u8], encrypt: bool) -> Option<Vec<u8>> {
        if block.len() != self.alg.block_len() {
            return None;
        }
        let k = &self.bytes;
        let mut out = block.to_vec();
        match (self.alg, k.len()) {
            (MgmtAlg::Tdes, 16) => run(TdesEde2::new_from_slice(k).ok()?, &mut out, encrypt),
            (MgmtAlg::Tdes, _) => run(TdesEde3::new_from_slice(k).ok()?, &mut out, encrypt),
            (MgmtAlg::Aes128, _) => run(Aes128::new_from_slice(k).ok()?, &mut out, encrypt),
            (MgmtAlg::Aes192, _) => run(Aes192::new_from_slice(k).ok()?, &mut out, encrypt),
            (MgmtAlg::Aes256, _) => run(Aes256::new_from_slice(k).ok()?, &mut out, encrypt),
        }
        Some(out)
    }

    /// 3DES-CBC with a zero IV, no padding (GIDS mutual authentication); None for an AES key
    /// or data that is not whole blocks.
    pub fn cbc(&self, data: &[u8], encrypt: bool) -> Option<Vec<u8>> {
        if self.alg != MgmtAlg::Tdes || !data.len().is_multiple_of(8) {
            return None;
        }
        let mut prev = [0u8; 8];
        let mut out = Vec::with_capacity(data.len());
        for block in data.chunks(8) {
            if encrypt {
                let x: Vec<u8> = block.iter().zip(prev).map(|(a, b)| a ^ b).collect();
                let c = self.encrypt(&x)?;
                prev.copy_from_slice(&c);
                out.extend_from_slice(&c);
            } else {
                let p = self.decrypt(block)?;
                out.extend(p.iter().zip(prev).map(|(a, b)| a ^ b));
                prev.copy_from_slice(block);
            }
        }
        Some(out)
    }
}

/// One block in place, either direction.
fn run<C: BlockCipherEncrypt + BlockCipherDecrypt>(cipher: C, block: &mut [u8], encrypt: bool) {
    let mut b = des::cipher::Block::<C>::default();
    b.copy_from_slice(block);
    if encrypt {
        cipher.encrypt_block(&mut b);
    } else {
        cipher.decrypt_block(&mut b);
    }
    block.copy_from_slice(&b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn golden_vector_zero_key() {
        let key = AdminKey::new(vec![0; 24]).unwrap();
        let c = key.encrypt(&h("d61143f9ccffd2ca")).unwrap();
        assert_eq!(hex::encode(&c), "17466e766e303cb6");
        assert_eq!(key.decrypt(&c).unwrap(), h("d61143f9ccffd2ca"));
        // A 16-byte key K1||K2 is the 24-byte key K1||K2||K1.
        let k16 = h("0123456789abcdeffedcba9876543210");
        let k24 = [&k16[..], &k16[..8]].concat();
        let block = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            AdminKey::new(k16).unwrap().encrypt(&block),
            AdminKey::new(k24).unwrap().encrypt(&block)
        );
        assert!(AdminKey::new(vec![0; 8]).is_err());
        assert_eq!(key.encrypt(&[0; 16]), None);
    }

    #[test]
    fn aes_fips197_vectors() {
        // FIPS-197 appendix C.1 / C.2 / C.3.
        let pt = h("00112233445566778899aabbccddeeff");
        let key = |n: usize| (0..n as u8).collect::<Vec<u8>>();
        for (alg, n, ct) in [
            (MgmtAlg::Aes128, 16, "69c4e0d86a7b0430d8cdb78070b4c55a"),
            (MgmtAlg::Aes192, 24, "dda97ca4864cdfe06eaf70a0ec0d7191"),
            (MgmtAlg::Aes256, 32, "8ea2b7ca516745bfeafc49904b496089"),
        ] {
            let k = AdminKey::with_alg(alg, key(n)).unwrap();
            assert_eq!(hex::encode(k.encrypt(&pt).unwrap()), ct, "{alg:?}");
            assert_eq!(k.decrypt(&h(ct)).unwrap(), pt);
        }
        assert!(AdminKey::with_alg(MgmtAlg::Aes128, vec![0; 24]).is_err());
        assert!(AdminKey::with_alg(MgmtAlg::Aes256, vec![0; 16]).is_err());
        assert_eq!(MgmtAlg::parse("aes192"), Ok(MgmtAlg::Aes192));
        assert!(MgmtAlg::parse("des").is_err());
    }

    #[test]
    fn cbc_round_trip_chains_blocks() {
        let key = AdminKey::new(h("0102030405060708").repeat(3)).unwrap();
        let data = [7u8; 40];
        let c = key.cbc(&data, true).unwrap();
        // Equal plaintext blocks give different ciphertext blocks in CBC: printf '\x07%.0s'
        // {1..40} | openssl enc -des-ede3-cbc -K 0102..08 (x3) -iv 0 -nopad | xxd -p
        assert_eq!(
            hex::encode(&c),
            "3feff785125d73e0f61e158b01840e8c28525988b007fda5150952057d1b17e2f06631f397ffbd65"
        );
        assert_eq!(c[..8], key.encrypt(&data[..8]).unwrap()[..]);
        assert_eq!(key.cbc(&c, false).unwrap(), data);
        assert_eq!(key.cbc(&data[..7], true), None);
    }
}
