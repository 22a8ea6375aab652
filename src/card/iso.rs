//! The `iso` family: ISO 7816-4 GET CHALLENGE, EXTERNAL AUTHENTICATE and
//! RESET RETRY COUNTER, every parameter from the [`CardProfile`] (the
//! generic dialect of our virtual card and of vendor cards a site describes
//! in a profile file).
//!
//! ```text
//! [00 A4 04 00 Lc AID 00]            SELECT, when the profile has select_aid
//! 00 82 P1 P2                         admin tries query: 63Cx
//! 00 20 00 80                         PIN tries query: 63Cx
//! 00 84 00 00 08                      GET CHALLENGE
//! 00 82 P1 P2 08 <E(K, challenge)>    EXTERNAL AUTHENTICATE (spends a try when wrong)
//! 00 2C 02 80 Lc <new PIN>            RESET RETRY COUNTER
//! ```

use crate::admin_key::{Challenge, Cryptogram, KeyAlg};
use crate::apdu::{ins, Command, Status};
use crate::card::{admin_verdict, pin_verdict, AdminChallenge, Applet, Tries};
use crate::error::{Error, Step};
use crate::iso7816;
use crate::profile::CardProfile;
use crate::secret::Pin;
use crate::transport::Channel;

/// ISO 7816-4 / Base CSP card, parameterised by a [`CardProfile`].
#[derive(Clone, Debug)]
pub struct IsoApplet {
    pub profile: CardProfile,
}

impl IsoApplet {
    pub fn new(profile: CardProfile) -> IsoApplet {
        IsoApplet { profile }
    }

    fn cmd(&self, ins: u8, p1: u8, p2: u8) -> Command {
        Command::new(self.profile.cla, ins, p1, p2)
    }
}

impl Applet for IsoApplet {
    fn profile(&self) -> &CardProfile {
        &self.profile
    }

    fn select(&self, ch: &mut Channel) -> Result<(), Error> {
        let Some(aid) = self.profile.select_aid_bytes() else {
            return Ok(());
        };
        let r = ch.send(&self.cmd(ins::SELECT, 0x04, 0x00).data(aid))?;
        iso7816::expect_ok(Step::Select, &r)
    }

    fn admin_tries(&self, ch: &mut Channel) -> Result<Tries, Error> {
        if !self.profile.admin_tries_query {
            return Ok(Tries::Unknown);
        }
        let p = &self.profile;
        let r = ch.send(&self.cmd(ins::EXTERNAL_AUTHENTICATE, p.ext_auth_p1, p.ext_auth_p2))?;
        Ok(match Tries::from_query(r.status()) {
            // 9000 to a query means "no authentication needed": no count.
            Tries::Verified => Tries::Unknown,
            t => t,
        })
    }

    fn pin_tries(&self, ch: &mut Channel) -> Result<Tries, Error> {
        if !self.profile.pin_tries_query {
            return Ok(Tries::Unknown);
        }
        iso7816::verify_query(ch, self.profile.cla, self.profile.pin_reference)
    }

    fn get_challenge(
        &self,
        ch: &mut Channel,
        _alg: Option<KeyAlg>,
    ) -> Result<AdminChallenge, Error> {
        let want = self.profile.challenge_len;
        let r = ch.send(&self.cmd(ins::GET_CHALLENGE, 0, 0).le(want))?;
        iso7816::expect_ok(Step::GetChallenge, &r)?;
        if r.data.len() != want as usize {
            return Err(Error::protocol(format!(
                "GET CHALLENGE: the card sent a {}-byte challenge; the profile expects {want}. \
                 No response was computed or sent",
                r.data.len()
            )));
        }
        Ok(AdminChallenge {
            challenge: Challenge::new(r.data),
            alg: KeyAlg::Tdes,
        })
    }

    fn authenticate(&self, ch: &mut Channel, _alg: KeyAlg, c: &Cryptogram) -> Result<(), Error> {
        let p = &self.profile;
        let cmd = self
            .cmd(ins::EXTERNAL_AUTHENTICATE, p.ext_auth_p1, p.ext_auth_p2)
            .data(c.as_bytes().to_vec())
            .spends_try();
        let r = ch.send(&cmd)?;
        match admin_verdict(Step::ExternalAuthenticate, &r, &[]) {
            Err(Error::Card {
                status: Status::AuthFailed | Status::SecurityNotSatisfied,
                ..
            }) => {
                // No count in the answer: ask (read-only), where the profile allows.
                let tries_left = self.admin_tries(ch).unwrap_or(Tries::Unknown);
                Err(Error::AdminRejected {
                    sw: r.sw,
                    tries_left,
                })
            }
            other => other,
        }
    }

    fn reset_pin(&self, ch: &mut Channel, pin: &Pin) -> Result<(), Error> {
        let p = &self.profile;
        let cmd = self
            .cmd(ins::RESET_RETRY_COUNTER, p.rrc_p1, p.rrc_p2)
            .sensitive(p.pin_block(pin));
        let r = ch.send(&cmd)?;
        pin_verdict(Step::ResetRetryCounter, &r, || self.pin_tries(ch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedTransport;
    use crate::transport::Trace;

    fn applet() -> IsoApplet {
        IsoApplet::new(CardProfile::iso())
    }

    #[test]
    fn counter_queries() {
        let mut t = ScriptedTransport::new()
            .expect("00820000", "63C5")
            .expect("00200080", "6983")
            .expect("00820000", "6983")
            .expect("00200080", "9000")
            .expect("00820000", "6D00");
        let mut ch = Channel::new(&mut t, Trace::off());
        let a = applet();
        assert_eq!(a.admin_tries(&mut ch).unwrap(), Tries::Left(5));
        assert_eq!(a.pin_tries(&mut ch).unwrap(), Tries::Blocked);
        assert_eq!(a.admin_tries(&mut ch).unwrap(), Tries::Blocked);
        assert_eq!(a.pin_tries(&mut ch).unwrap(), Tries::Verified);
        assert_eq!(a.admin_tries(&mut ch).unwrap(), Tries::Unknown);
    }

    #[test]
    fn queries_are_skipped_when_the_profile_says_so() {
        let p =
            CardProfile::from_toml("admin_tries_query = false\npin_tries_query = false").unwrap();
        let mut t = ScriptedTransport::new();
        let mut ch = Channel::new(&mut t, Trace::off());
        let a = IsoApplet::new(p);
        assert_eq!(a.admin_tries(&mut ch).unwrap(), Tries::Unknown);
        assert_eq!(a.pin_tries(&mut ch).unwrap(), Tries::Unknown);
        assert!(t.received.is_empty());
    }

    #[test]
    fn external_authenticate_decodes_the_answer() {
        let c = Cryptogram::new(hex::decode("17466E766E303CB6").unwrap());
        let cases: [(&str, Option<u8>); 5] = [
            ("9000", None),
            ("63C2", Some(4)),
            ("6983", Some(5)),
            ("63C0", Some(5)),
            ("6985", Some(1)),
        ];
        for (sw, code) in cases {
            let mut t = ScriptedTransport::new().expect("008200000817466E766E303CB6", sw);
            let mut ch = Channel::new(&mut t, Trace::off());
            let r = applet().authenticate(&mut ch, KeyAlg::Tdes, &c);
            assert_eq!(r.as_ref().err().map(|e| e.exit_code()), code, "{sw}");
            if sw == "63C2" {
                assert_eq!(r.unwrap_err().admin_tries(), Some(Tries::Left(2)));
            }
        }
    }

    #[test]
    fn a_6300_rejection_asks_for_the_count_without_data() {
        let c = Cryptogram::new(vec![0; 8]);
        let mut t = ScriptedTransport::new()
            .expect("00820001080000000000000000", "6300")
            .expect("00820001", "63C3");
        let p = CardProfile::from_toml("ext_auth_p2 = 1").unwrap();
        let mut ch = Channel::new(&mut t, Trace::off());
        let e = IsoApplet::new(p)
            .authenticate(&mut ch, KeyAlg::Tdes, &c)
            .unwrap_err();
        assert_eq!(e.exit_code(), 4);
        assert_eq!(e.admin_tries(), Some(Tries::Left(3)));
    }

    #[test]
    fn challenge_must_have_the_profile_length() {
        let mut t = ScriptedTransport::new().expect("0084000008", "D61143F9CCFFD2CA009000");
        let mut ch = Channel::new(&mut t, Trace::off());
        let e = applet().get_challenge(&mut ch, None).unwrap_err();
        assert!(e.to_string().contains("9-byte"), "{e}");
    }

    #[test]
    fn rejected_pin_reports_pin_tries() {
        let pin = Pin::new(zeroize::Zeroizing::new(b"1234".to_vec()));
        let mut t = ScriptedTransport::new()
            .expect("002C02800431323334", "6A80")
            .expect("00200080", "6983");
        let mut ch = Channel::new(&mut t, Trace::off());
        let e = applet().reset_pin(&mut ch, &pin).unwrap_err();
        assert_eq!(e.exit_code(), 7);
        assert_eq!(e.pin_tries(), Some(Tries::Blocked));
    }

    #[test]
    fn select_when_the_profile_has_an_aid() {
        let p = CardProfile::from_toml("select_aid = \"A000000397\"").unwrap();
        let mut t = ScriptedTransport::new().expect("00A4040005A000000397", "6A82");
        let mut ch = Channel::new(&mut t, Trace::off());
        let e = IsoApplet::new(p).select(&mut ch).unwrap_err();
        assert_eq!(e.sw(), Some(0x6A82));
    }
}
