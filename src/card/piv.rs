//! The `piv` family: PIV cards and YubiKeys (Yubico's minidriver, Windows'
//! inbox PIV minidriver).
//!
//! ```text
//! 00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00    SELECT PIV (SP 800-73's right-truncated AID)
//! 00 F7 00 9B                                     YubiKey GET METADATA: 01 <alg> (03 3DES, 08/0A/0C AES)
//! 00 20 00 80                                     PIN tries: 63Cx
//! 00 F7 00 81  (else 00 20 00 81)                 PUK tries: 06 <total> <left> (many cards: 6A88)
//! 00 CB 3F FF 05 5C 03 5F C1 02 00                CHUID: 53 .. 34 10 <GUID> ..: the card id
//! 00 87 <alg> 9B 04 7C 02 81 00                   -> 7C 0A 81 08 <challenge> (AES: 7C 12 81 10 ..)
//! 00 87 <alg> 9B 0C 7C 0A 82 08 <E(K, c)>         the 9B response: 9000; 6982 or 6A80 wrong
//! 00 2C 00 80 10 <PUK FF-padded> <PIN FF-padded>  RESET RETRY COUNTER with the PUK
//! ```
//!
//! PIV defines no admin-key PIN reset: `unblock` takes the PUK; the 9B
//! management key serves `auth`. The management key's tries are not
//! reported.

use crate::admin_key::{Challenge, Cryptogram, KeyAlg};
use crate::apdu::{ins, Command, Status};
use crate::card::{
    admin_verdict, pin_verdict, try_answer, AdminChallenge, Applet, Tries, TryAnswer, Unlock,
};
use crate::error::{Error, Step};
use crate::ids::CardId;
use crate::iso7816;
use crate::profile::{CardProfile, PinPadding, PivParams};
use crate::secret::Pin;
use crate::tlv;
use crate::transport::Channel;

/// SP 800-73's PIV AID, right-truncated (as Windows and most hosts select it).
pub const AID: [u8; 9] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00];

const PIN_REF: u8 = 0x80;
const PUK_REF: u8 = 0x81;

pub struct PivApplet {
    profile: CardProfile,
    params: PivParams,
}

impl PivApplet {
    pub fn new(profile: CardProfile) -> PivApplet {
        let params = profile.piv.clone().unwrap_or_default();
        PivApplet { profile, params }
    }

    /// YubiKey GET METADATA of a key or PIN slot; `None` where the card does
    /// not answer it (not a YubiKey, or firmware before 5.3).
    fn metadata(&self, ch: &mut Channel, slot: u8) -> Result<Option<Vec<u8>>, Error> {
        let r = ch.send(&Command::new(0x00, ins::GET_METADATA, 0x00, slot).le(0))?;
        Ok((r.status() == Status::Success).then_some(r.data))
    }
}

/// The PIV algorithm byte of a key algorithm (GENERAL AUTHENTICATE P1).
pub fn alg_byte(alg: KeyAlg) -> u8 {
    match alg {
        KeyAlg::Tdes => 0x03,
        KeyAlg::Aes128 => 0x08,
        KeyAlg::Aes192 => 0x0A,
        KeyAlg::Aes256 => 0x0C,
    }
}

fn alg_of(byte: u8) -> Option<KeyAlg> {
    match byte {
        0x03 => Some(KeyAlg::Tdes),
        0x08 => Some(KeyAlg::Aes128),
        0x0A => Some(KeyAlg::Aes192),
        0x0C => Some(KeyAlg::Aes256),
        _ => None,
    }
}

/// The GUID (tag 34) of a CHUID (the value of tag 53).
pub fn chuid_guid(chuid: &[u8]) -> Option<CardId> {
    CardId::from_slice(tlv::find(chuid, 0x34)?)
}

impl Applet for PivApplet {
    fn profile(&self) -> &CardProfile {
        &self.profile
    }

    fn unlock(&self) -> Unlock {
        Unlock::Puk
    }

    fn select(&self, ch: &mut Channel) -> Result<(), Error> {
        let r = ch.send(&iso7816::select_aid(&AID))?;
        iso7816::expect_ok(Step::Select, &r)
    }

    fn pin_tries(&self, ch: &mut Channel) -> Result<Tries, Error> {
        iso7816::verify_query(ch, 0x00, PIN_REF)
    }

    fn puk_tries(&self, ch: &mut Channel) -> Result<Tries, Error> {
        if let Some(meta) = self.metadata(ch, PUK_REF)? {
            if let Some(&[_total, left]) = tlv::find(&meta, 0x06) {
                return Ok(if left == 0 {
                    Tries::Blocked
                } else {
                    Tries::Left(left)
                });
            }
        }
        Ok(match iso7816::verify_query(ch, 0x00, PUK_REF)? {
            Tries::Verified => Tries::Unknown,
            t => t,
        })
    }

    fn card_id(&self, ch: &mut Channel) -> Result<Option<CardId>, Error> {
        let r = ch.send(&iso7816::get_data(0x3FFF, &[0x5F, 0xC1, 0x02]))?;
        match r.status() {
            Status::Success => {}
            Status::NotFound | Status::ReferenceDataNotFound => return Ok(None),
            _ => return Err(Error::card(Step::GetData, &r)),
        }
        Ok(tlv::find(&r.data, 0x53).and_then(chuid_guid))
    }

    fn key_alg(&self, ch: &mut Channel) -> Result<Option<KeyAlg>, Error> {
        if let Some(alg) = self.params.key_alg.fixed() {
            return Ok(Some(alg));
        }
        let meta = self.metadata(ch, self.params.key_ref)?;
        let Some(meta) = meta else {
            // No metadata: the PIV default, 3DES (P1 03).
            return Ok(Some(KeyAlg::Tdes));
        };
        let byte = tlv::find(&meta, 0x01).and_then(|v| v.first().copied());
        match byte.and_then(alg_of) {
            Some(alg) => Ok(Some(alg)),
            None => Err(Error::protocol(format!(
                "GET METADATA 9B: the card names management key algorithm {}, which is \
                 neither 3DES nor AES; nothing was sent",
                byte.map_or("none".into(), |b| format!("{b:02X}"))
            ))),
        }
    }

    fn get_challenge(
        &self,
        ch: &mut Channel,
        alg: Option<KeyAlg>,
    ) -> Result<AdminChallenge, Error> {
        let alg = alg.unwrap_or(KeyAlg::Tdes);
        let cmd = iso7816::general_authenticate(alg_byte(alg), self.params.key_ref, &[0x81, 0x00]);
        let r = ch.send(&cmd)?;
        iso7816::expect_ok(Step::GeneralAuthenticate, &r)?;
        let challenge = iso7816::template_value(&r.data, 0x81)
            .filter(|c| c.len() == alg.block_len())
            .ok_or_else(|| {
                Error::protocol(format!(
                    "GENERAL AUTHENTICATE: the card's answer holds no {}-byte challenge for its \
                     {alg} key; no response was computed or sent",
                    alg.block_len()
                ))
            })?;
        Ok(AdminChallenge {
            challenge: Challenge::new(challenge.to_vec()),
            alg,
        })
    }

    fn authenticate(&self, ch: &mut Channel, alg: KeyAlg, c: &Cryptogram) -> Result<(), Error> {
        let cmd = iso7816::general_authenticate(
            alg_byte(alg),
            self.params.key_ref,
            &tlv::encode(0x82, c.as_bytes()),
        )
        .spends_try();
        let r = ch.send(&cmd)?;
        // At the response step 6A80 is a rejected response, not bad input.
        admin_verdict(
            Step::GeneralAuthenticate,
            &r,
            &[Status::SecurityNotSatisfied, Status::IncorrectData],
        )
    }

    fn reset_pin(&self, _ch: &mut Channel, _pin: &Pin) -> Result<(), Error> {
        Err(Error::WrongCard(
            "a PIV card resets its PIN with the PUK, not with the admin key".into(),
        ))
    }

    fn reset_pin_with_puk(&self, ch: &mut Channel, puk: &Pin, pin: &Pin) -> Result<(), Error> {
        // SP 800-73 pads both with FF to 8, whatever a profile file says about
        // the new PIN's padding; no unzeroized copy of either is made.
        let mut data = zeroize::Zeroizing::new(Vec::with_capacity(16));
        data.extend_from_slice(&PinPadding::Ff8.block(puk));
        data.extend_from_slice(&PinPadding::Ff8.block(pin));
        let cmd = Command::new(0x00, ins::RESET_RETRY_COUNTER, 0x00, PIN_REF)
            .sensitive(data)
            .spends_try();
        let r = ch.send(&cmd)?;
        // A PUK the card refuses with 6982 is rejected; any other word is about the new PIN.
        match try_answer(&r, &[Status::SecurityNotSatisfied]) {
            TryAnswer::Accepted => Ok(()),
            TryAnswer::Blocked => Err(Error::PukBlocked { sw: Some(r.sw) }),
            TryAnswer::Rejected(tries_left) => Err(Error::PukRejected {
                sw: r.sw,
                tries_left,
            }),
            TryAnswer::Other => pin_verdict(Step::ResetRetryCounter, &r, || self.pin_tries(ch)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedTransport;
    use crate::transport::Trace;
    use zeroize::Zeroizing;

    fn applet() -> PivApplet {
        PivApplet::new(CardProfile::piv())
    }

    fn secret(s: &str) -> Pin {
        Pin::new(Zeroizing::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn the_algorithm_comes_from_the_card() {
        let mut t = ScriptedTransport::new()
            .expect("00F7009B00", "01010A020200010501019000")
            .expect("00F7009B00", "6D00")
            .expect("00F7009B00", "0101079000");
        let mut ch = Channel::new(&mut t, Trace::off());
        let a = applet();
        assert_eq!(a.key_alg(&mut ch).unwrap(), Some(KeyAlg::Aes192));
        assert_eq!(a.key_alg(&mut ch).unwrap(), Some(KeyAlg::Tdes));
        assert_eq!(a.key_alg(&mut ch).unwrap_err().exit_code(), 1);
    }

    #[test]
    fn a_fixed_algorithm_asks_nothing() {
        let p = CardProfile::from_toml("family = \"piv\"\n[piv]\nkey_alg = \"aes128\"").unwrap();
        let mut t = ScriptedTransport::new();
        let mut ch = Channel::new(&mut t, Trace::off());
        assert_eq!(
            PivApplet::new(p).key_alg(&mut ch).unwrap(),
            Some(KeyAlg::Aes128)
        );
        assert!(t.received.is_empty());
    }

    #[test]
    fn aes_challenge_and_response() {
        let mut t = ScriptedTransport::new()
            .expect(
                "0087089B047C028100",
                "7C1281100102030405060708090A0B0C0D0E0F109000",
            )
            .expect(&format!("0087089B147C128210{}", "00".repeat(16)), "6A80");
        let mut ch = Channel::new(&mut t, Trace::off());
        let a = applet();
        let c = a.get_challenge(&mut ch, Some(KeyAlg::Aes128)).unwrap();
        assert_eq!(c.challenge.len(), 16);
        let e = a
            .authenticate(&mut ch, c.alg, &Cryptogram::new(vec![0; 16]))
            .unwrap_err();
        assert_eq!(e.exit_code(), 4, "6A80 at the response step is a rejection");
        assert!(t.done());
    }

    #[test]
    fn a_3des_challenge_of_the_wrong_length_is_refused() {
        let mut t = ScriptedTransport::new().expect(
            "0087039B047C028100",
            "7C1281100102030405060708090A0B0C0D0E0F109000",
        );
        let mut ch = Channel::new(&mut t, Trace::off());
        let e = applet().get_challenge(&mut ch, None).unwrap_err();
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn the_card_id_is_the_chuid_guid() {
        let guid = "00112233445566778899AABBCCDDEEFF";
        let inner = format!(
            "3019{}3410{guid}350832303330303130313E00FE00",
            "D4".repeat(25)
        );
        let chuid = format!("53{:02X}{inner}9000", inner.len() / 2);
        let mut t = ScriptedTransport::new()
            .expect("00CB3FFF055C035FC10200", &chuid)
            .expect("00CB3FFF055C035FC10200", "6A82");
        let mut ch = Channel::new(&mut t, Trace::off());
        let id = applet().card_id(&mut ch).unwrap().unwrap();
        assert_eq!(id.hex(), guid);
        assert_eq!(applet().card_id(&mut ch).unwrap(), None);
    }

    #[test]
    fn puk_tries_from_metadata_or_an_empty_verify() {
        let mut t = ScriptedTransport::new()
            .expect("00F7008100", "0101FF06020302 9000")
            .expect("00F7008100", "6D00")
            .expect("00200081", "6A88")
            .expect("00F7008100", "6D00")
            .expect("00200081", "63C1");
        let mut ch = Channel::new(&mut t, Trace::off());
        let a = applet();
        assert_eq!(a.puk_tries(&mut ch).unwrap(), Tries::Left(2));
        assert_eq!(a.puk_tries(&mut ch).unwrap(), Tries::Unknown);
        assert_eq!(a.puk_tries(&mut ch).unwrap(), Tries::Left(1));
    }

    #[test]
    fn puk_reset_and_its_answers() {
        let block = "00 2C 00 80 10 3132333435363738 3837363534333231";
        for (sw, code) in [
            ("9000", None),
            ("63C2", Some(4)),
            ("6983", Some(5)),
            ("6A80", Some(7)),
        ] {
            let mut t = ScriptedTransport::new().expect(block, sw);
            if sw == "6A80" {
                t = t.expect("00200080", "6983");
            }
            let mut ch = Channel::new(&mut t, Trace::off());
            let r = applet().reset_pin_with_puk(&mut ch, &secret("12345678"), &secret("87654321"));
            assert_eq!(r.as_ref().err().map(|e| e.exit_code()), code, "{sw}");
        }
        // Shorter secrets are FF-padded, each to 8.
        let mut t =
            ScriptedTransport::new().expect("002C0080103132333435363738313233343536FFFF", "9000");
        let mut ch = Channel::new(&mut t, Trace::off());
        applet()
            .reset_pin_with_puk(&mut ch, &secret("12345678"), &secret("123456"))
            .unwrap();
    }
}
