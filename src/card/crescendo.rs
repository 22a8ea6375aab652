//! The `crescendo` family: HID Crescendo C2300, C4000 and Crescendo Key,
//! through their ACA instance (HID's public low-level API):
//!
//! ```text
//! 00 A4 04 00 07 A0 00 00 00 79 10 00 00          SELECT ACA
//! 00 84 00 00 00                                  GET CHALLENGE: 8 bytes (3DES key) or 16 (AES-128)
//! 00 82 00 01 Lc <E-ECB(K, challenge)>            EXTERNAL AUTHENTICATE, XAUTH key 1: 9000; 6300 wrong
//! 00 2C 02 00 08 <new PIN FF-padded to 8>         UNLOCK PIN
//! ```
//!
//! A Crescendo card also carries a PIV instance, so a PIV SELECT would claim
//! it: only its ATR (or `--profile crescendo`) chooses this family. It
//! reports neither admin nor PIN tries, and its card id is UNCONFIRMED.

use crate::admin_key::{Challenge, Cryptogram, KeyAlg};
use crate::apdu::{ins, Command, Status};
use crate::card::{admin_verdict, pin_verdict, AdminChallenge, Applet, Tries};
use crate::error::{Error, Step};
use crate::iso7816;
use crate::profile::{CardProfile, CrescendoParams};
use crate::secret::Pin;
use crate::transport::Channel;

/// The ACA (Access Control Applet) instance's AID.
pub const ACA_AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x79, 0x10, 0x00];

pub struct CrescendoApplet {
    profile: CardProfile,
    params: CrescendoParams,
}

impl CrescendoApplet {
    pub fn new(profile: CardProfile) -> CrescendoApplet {
        let params = profile.crescendo.clone().unwrap_or_default();
        CrescendoApplet { profile, params }
    }
}

impl Applet for CrescendoApplet {
    fn profile(&self) -> &CardProfile {
        &self.profile
    }

    fn explain(&self, step: Step, status: Status) -> Option<&'static str> {
        match (step, status) {
            (Step::ExternalAuthenticate, Status::ReferenceDataNotFound) => Some(
                "the Crescendo's XAUTH key is not initialised (6A88): the card was never \
                 personalised with an admin key",
            ),
            (Step::UnlockPin, Status::TriesLeft(_)) => Some(
                "the card did not take the admin authentication for UNLOCK PIN (63CX): run \
                 `scunblock info` before trying again",
            ),
            _ => crate::card::explain(step, status),
        }
    }

    fn select(&self, ch: &mut Channel) -> Result<(), Error> {
        let r = ch.send(&iso7816::select_aid(&ACA_AID))?;
        iso7816::expect_ok(Step::Select, &r)
    }

    /// No query is documented: an empty VERIFY might count as a try.
    fn pin_tries(&self, _ch: &mut Channel) -> Result<Tries, Error> {
        Ok(Tries::Unknown)
    }

    fn key_alg(&self, _ch: &mut Channel) -> Result<Option<KeyAlg>, Error> {
        Ok(self.params.key_alg.fixed())
    }

    fn get_challenge(
        &self,
        ch: &mut Channel,
        alg: Option<KeyAlg>,
    ) -> Result<AdminChallenge, Error> {
        let r = ch.send(&Command::new(0x00, ins::GET_CHALLENGE, 0x00, 0x00).le(0))?;
        iso7816::expect_ok(Step::GetChallenge, &r)?;
        // The challenge's length is the XAUTH key's type.
        let told = match r.data.len() {
            8 => KeyAlg::Tdes,
            16 => KeyAlg::Aes128,
            n => {
                return Err(Error::protocol(format!(
                    "GET CHALLENGE: the card sent {n} bytes; a Crescendo sends 8 (3DES) or 16 \
                     (AES-128). No response was computed or sent"
                )))
            }
        };
        if let Some(fixed) = alg.filter(|a| a.block_len() != told.block_len()) {
            return Err(Error::protocol(format!(
                "GET CHALLENGE: the card sent a {}-byte challenge, but the profile says its \
                 XAUTH key is {fixed}; no response was computed or sent",
                r.data.len()
            )));
        }
        Ok(AdminChallenge {
            challenge: Challenge::new(r.data),
            alg: alg.unwrap_or(told),
        })
    }

    fn authenticate(&self, ch: &mut Channel, _alg: KeyAlg, c: &Cryptogram) -> Result<(), Error> {
        let cmd = Command::new(
            0x00,
            ins::EXTERNAL_AUTHENTICATE,
            0x00,
            self.params.xauth_key,
        )
        .data(c.as_bytes().to_vec())
        .spends_try();
        let r = ch.send(&cmd)?;
        admin_verdict(Step::ExternalAuthenticate, &r, &[Status::AuthFailed])
    }

    fn reset_pin(&self, ch: &mut Channel, pin: &Pin) -> Result<(), Error> {
        let cmd = Command::new(0x00, ins::RESET_RETRY_COUNTER, 0x02, 0x00)
            .sensitive(self.profile.pin_block(pin));
        let r = ch.send(&cmd)?;
        // No PIN tries query on this family.
        pin_verdict(Step::UnlockPin, &r, || Ok(Tries::Unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedTransport;
    use crate::transport::Trace;
    use zeroize::Zeroizing;

    fn applet() -> CrescendoApplet {
        CrescendoApplet::new(CardProfile::crescendo())
    }

    #[test]
    fn the_challenge_length_tells_the_key_type() {
        let mut t = ScriptedTransport::new()
            .expect("0084000000", "D61143F9CCFFD2CA9000")
            .expect("0084000000", "000102030405060708090A0B0C0D0E0F9000")
            .expect("0084000000", "0001029000");
        let mut ch = Channel::new(&mut t, Trace::off());
        let a = applet();
        assert_eq!(a.get_challenge(&mut ch, None).unwrap().alg, KeyAlg::Tdes);
        assert_eq!(a.get_challenge(&mut ch, None).unwrap().alg, KeyAlg::Aes128);
        assert_eq!(a.get_challenge(&mut ch, None).unwrap_err().exit_code(), 1);
    }

    #[test]
    fn xauth_answers() {
        let c = Cryptogram::new(hex::decode("17466E766E303CB6").unwrap());
        for (sw, code) in [
            ("9000", None),
            ("6300", Some(4)),
            ("6983", Some(5)),
            ("6A88", Some(1)),
            ("6985", Some(1)),
        ] {
            let mut t = ScriptedTransport::new().expect("008200010817466E766E303CB6", sw);
            let mut ch = Channel::new(&mut t, Trace::off());
            let r = applet().authenticate(&mut ch, KeyAlg::Tdes, &c);
            assert_eq!(r.as_ref().err().map(|e| e.exit_code()), code, "{sw}");
        }
    }

    #[test]
    fn unlock_pin_pads_with_ff() {
        let pin = Pin::new(Zeroizing::new(b"1234".to_vec()));
        let mut t = ScriptedTransport::new()
            .expect("002C02000831323334FFFFFFFF", "9000")
            .expect("002C02000831323334FFFFFFFF", "6A80");
        let mut ch = Channel::new(&mut t, Trace::off());
        applet().reset_pin(&mut ch, &pin).unwrap();
        assert_eq!(
            applet().reset_pin(&mut ch, &pin).unwrap_err().exit_code(),
            7
        );
    }
}

#[cfg(test)]
mod hint_tests {
    use super::*;
    use crate::apdu::Response;

    #[test]
    fn the_family_explains_its_own_answers() {
        let a = CrescendoApplet::new(CardProfile::crescendo());
        let hint = a.explain(Step::ExternalAuthenticate, Status::ReferenceDataNotFound);
        assert!(hint.unwrap().contains("XAUTH key is not initialised"));
        // Anything else: the shared explanation.
        let lost = a.explain(Step::ExternalAuthenticate, Status::ConditionsNotSatisfied);
        assert!(lost.unwrap().contains("lost the challenge"));
        let e = Error::card(
            Step::UnlockPin,
            &Response::from_bytes(&[0x6A, 0x80]).unwrap(),
        );
        assert_eq!(
            e.to_string(),
            "UNLOCK PIN: the card answered SW 6A80 (incorrect data)"
        );
    }
}
