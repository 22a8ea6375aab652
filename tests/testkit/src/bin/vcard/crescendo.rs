//! The `crescendo` personality: the ACA (administrative) instance of an HID Crescendo card,
//! from HID's public low-level API pages as docs/cards.md ("HID Crescendo") sums them up:
//! GET CHALLENGE (8 bytes for a 3DES XAUTH key, 16 for AES-128), EXTERNAL AUTHENTICATE with
//! XAUTH key 1 (P2 01) in ECB, UNLOCK PIN with the new PIN FF-padded to 8. The card also
//! carries a PIV instance, so it answers the PIV SELECT with 9000 too: only its ATR tells it
//! from a PIV card.

use super::apdu::{sw, Command, Response};
use super::card::{
    tries_sw, unpad_ff, Card, INS_EXTERNAL_AUTHENTICATE, INS_GET_CHALLENGE,
    INS_RESET_RETRY_COUNTER, INS_SELECT, INS_VERIFY, PIN_REF,
};
use super::crypto::MgmtAlg;

/// The ACA's AID.
pub const ACA_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x79, 0x10, 0x00];
/// XAUTH key 1, the only admin key the card has.
const XAUTH_KEY: u8 = 0x01;

impl Card {
    pub(super) fn crescendo(&mut self, cmd: &Command, challenge: Option<Vec<u8>>) -> Response {
        match cmd.ins {
            INS_SELECT => crescendo_select(cmd),
            INS_GET_CHALLENGE => self.crescendo_get_challenge(cmd),
            INS_EXTERNAL_AUTHENTICATE => self.crescendo_external_authenticate(cmd, challenge),
            INS_RESET_RETRY_COUNTER => self.crescendo_unlock_pin(cmd),
            INS_VERIFY => self.crescendo_verify(cmd),
            _ => Response::sw(sw::INS_NOT_SUPPORTED),
        }
    }

    /// GET CHALLENGE `00 84 00 00 00` (or Le = the key's block): 8 or 16 bytes.
    fn crescendo_get_challenge(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0 || cmd.p2 != 0 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        let block = self.persistent.admin_key.alg().block_len();
        match cmd.le {
            Some(256) => {}
            Some(n) if n == block => {}
            _ => return Response::sw(sw::wrong_le(block as u8)),
        }
        if !cmd.data.is_empty() {
            return Response::sw(sw::WRONG_LENGTH);
        }
        Response::ok(self.new_challenge(block))
    }

    /// EXTERNAL AUTHENTICATE `00 82 00 01 Lc <ECB(K, challenge)>`: 9000, wrong 6300 (one try
    /// less), no challenge 6985, P2 other than XAUTH key 1 6A88, blocked 6983.
    fn crescendo_external_authenticate(
        &mut self,
        cmd: &Command,
        challenge: Option<Vec<u8>>,
    ) -> Response {
        if cmd.p1 != 0 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        if cmd.p2 != XAUTH_KEY {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        if cmd.data.is_empty() {
            // No tries query on this card: a bare EXTERNAL AUTHENTICATE is just wrong.
            return Response::sw(sw::WRONG_LENGTH);
        }
        if challenge.is_some() && cmd.data.len() != self.persistent.admin_key.alg().block_len() {
            return Response::sw(sw::WRONG_LENGTH);
        }
        self.admin_response(challenge, &cmd.data, sw::WRONG_CRYPTOGRAM)
    }

    /// UNLOCK PIN `00 2C 02 00 08 <new PIN FF-padded to 8>` after XAUTH: 9000; not
    /// authenticated 63CX (X: the XAUTH tries left, as HID documents it); bad format 6A80;
    /// XAUTH blocked 6983.
    fn crescendo_unlock_pin(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0x02 || cmd.p2 != 0x00 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        if self.persistent.admin_tries == 0 {
            return Response::sw(sw::AUTH_BLOCKED);
        }
        if !self.session.admin_authenticated {
            return Response::sw(tries_sw(self.persistent.admin_tries));
        }
        match unpad_ff(&cmd.data) {
            Some(pin) if (self.config.pin_min..=self.config.pin_max_len).contains(&pin.len()) => {
                let pin = pin.to_vec();
                self.set_pin(pin);
                Response::sw(sw::OK)
            }
            _ => Response::sw(sw::INCORRECT_DATA),
        }
    }

    /// VERIFY of the PIV instance's PIN (`00 20 00 80`, FF-padded to 8; empty: 63Cx).
    fn crescendo_verify(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0 || cmd.p2 != PIN_REF {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        if cmd.data.is_empty() {
            return self.verify_pin(None);
        }
        match unpad_ff(&cmd.data) {
            Some(pin) => {
                let pin = pin.to_vec();
                self.verify_pin(Some(&pin))
            }
            None => Response::sw(sw::INCORRECT_DATA),
        }
    }
}

/// SELECT: the ACA, or a prefix (5 bytes or more) of the PIV AID -> 9000; else 6A82.
fn crescendo_select(cmd: &Command) -> Response {
    let piv = &super::piv::AID;
    let aca = cmd.data == ACA_AID;
    let piv_prefix = cmd.data.len() >= 5 && piv.starts_with(&cmd.data);
    if cmd.p1 == 0x04 && (aca || piv_prefix) {
        Response::sw(sw::OK)
    } else {
        Response::sw(sw::NOT_FOUND)
    }
}

/// The XAUTH key types the card takes (`--mgmt-alg`).
pub fn alg_supported(alg: MgmtAlg) -> bool {
    matches!(alg, MgmtAlg::Tdes | MgmtAlg::Aes128)
}

#[cfg(test)]
mod tests {
    use super::super::card::transcript::{h, transcript, tx};
    use super::super::card::{AdminKey, Config, Family, Persistent};
    use super::*;

    fn card(key: AdminKey, challenge: &str) -> Card {
        Card::new(
            Config {
                family: Family::Crescendo,
                fixed_challenge: Some(h(challenge)),
                ..Config::default()
            },
            Persistent {
                admin_key: key,
                ..Persistent::default()
            },
        )
    }

    #[test]
    fn unlock_with_a_3des_key() {
        let mut c = card(AdminKey::new(vec![0; 24]).unwrap(), "d61143f9ccffd2ca");
        transcript(
            &mut c,
            &[
                ("00 A4 04 00 07 A0 00 00 00 79 10 00 00", "9000"),
                ("00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00", "9000"),
                ("00 A4 04 00 09 A0 00 00 03 97 42 54 46 59 00", "6a82"),
                ("00 2C 02 00 08 31 32 33 34 FF FF FF FF", "63c5"),
                ("00 84 00 00 00", "d61143f9ccffd2ca9000"),
                ("00 82 00 01 08 17466e766e303cb6", "9000"),
                ("00 2C 02 00 08 31 32 33 FF FF FF FF FF", "6a80"),
                ("00 2C 02 00 08 31 32 FF 34 FF FF FF FF", "6a80"),
                ("00 2C 02 00 08 31 32 33 34 FF FF FF FF", "9000"),
            ],
        );
        assert_eq!(c.persistent.pin, b"1234");
        assert!(!c.session.admin_authenticated);
        assert_eq!(tx(&mut c, "00 20 00 80 08 31 32 33 34 FF FF FF FF"), "9000");
        assert_eq!(c.log.admin_responses, 1);
        assert_eq!(c.log.ext_auth_with_data, 1);
    }

    #[test]
    fn errors_and_blocking() {
        let mut c = card(AdminKey::new(vec![0; 24]).unwrap(), "d61143f9ccffd2ca");
        assert_eq!(tx(&mut c, "00 82 00 01 08 17466e766e303cb6"), "6985");
        tx(&mut c, "00 84 00 00 00");
        assert_eq!(tx(&mut c, "00 82 00 02 08 17466e766e303cb6"), "6a88");
        assert_eq!(tx(&mut c, "00 84 00 00 10"), "6c08");
        c.persistent.admin_tries = 2;
        for _ in 0..2 {
            tx(&mut c, "00 84 00 00 00");
            assert_eq!(tx(&mut c, "00 82 00 01 08 0000000000000000"), "6300");
        }
        tx(&mut c, "00 84 00 00 00");
        assert_eq!(tx(&mut c, "00 82 00 01 08 17466e766e303cb6"), "6983");
        assert_eq!(tx(&mut c, "00 2C 02 00 08 31 32 33 34 FF FF FF FF"), "6983");
        assert_eq!(c.persistent.admin_tries, 0);
    }

    #[test]
    fn aes128_key_gives_16_byte_challenges() {
        let key = AdminKey::with_alg(MgmtAlg::Aes128, vec![0; 16]).unwrap();
        let challenge = "000102030405060708090a0b0c0d0e0f";
        let mut c = card(key.clone(), challenge);
        assert_eq!(tx(&mut c, "00 84 00 00 00"), format!("{challenge}9000"));
        let r = hex::encode(key.encrypt(&h(challenge)).unwrap());
        assert_eq!(tx(&mut c, &format!("00 82 00 01 10 {r}")), "9000");
        assert!(alg_supported(MgmtAlg::Aes128));
        assert!(!alg_supported(MgmtAlg::Aes192));
    }
}
