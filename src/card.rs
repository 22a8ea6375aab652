//! What the unblock flow asks of a card, and the ISO / Base CSP implementation.
//!
//! [`Applet`] is the seam between the flow and a card family: one method per
//! card operation, each with a typed result. [`IsoApplet`] drives any card
//! that speaks ISO 7816-4 with the parameters of a [`CardProfile`]. A GIDS
//! applet (GENERAL AUTHENTICATE, see docs/protocol.md) is another
//! implementation of the same trait; the flow does not change.

use serde::{Serialize, Serializer};

use crate::admin_key::{Challenge, Cryptogram};
use crate::apdu::{ins, Command, Status};
use crate::error::Error;
use crate::profile::CardProfile;
use crate::secret::Pin;
use crate::transport::Channel;

/// Tries left on a counter, as the card reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Tries {
    Left(u8),
    Blocked,
    /// The PIN is verified in this session (VERIFY without data gave 9000).
    Verified,
    /// The card does not say, or the profile does not ask.
    #[default]
    Unknown,
}

impl Tries {
    /// As a number for reports: blocked is 0; unknown and verified are none.
    pub fn count(self) -> Option<u8> {
        match self {
            Tries::Left(n) => Some(n),
            Tries::Blocked => Some(0),
            Tries::Verified | Tries::Unknown => None,
        }
    }

    pub fn is_blocked(self) -> bool {
        matches!(self, Tries::Blocked | Tries::Left(0))
    }

    /// Decode a counter query's status word.
    fn from_query(status: Status) -> Tries {
        match status {
            Status::TriesLeft(0) | Status::Blocked => Tries::Blocked,
            Status::TriesLeft(n) => Tries::Left(n),
            Status::Success => Tries::Verified,
            _ => Tries::Unknown,
        }
    }
}

impl Serialize for Tries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.count() {
            Some(n) => s.serialize_u8(n),
            None => s.serialize_none(),
        }
    }
}

impl std::fmt::Display for Tries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tries::Left(n) => write!(f, "{n}"),
            Tries::Blocked => f.write_str("0 (blocked)"),
            Tries::Verified => f.write_str("verified"),
            Tries::Unknown => f.write_str("unknown"),
        }
    }
}

/// The card operations of the unblock flow.
pub trait Applet {
    /// The profile's name, for reports.
    fn name(&self) -> &str;
    /// The challenge length this card gives.
    fn challenge_len(&self) -> usize;
    /// Check a new PIN against the card's policy before the card is touched.
    fn check_pin(&self, pin: &Pin) -> Result<(), Error>;
    /// Select the application, where the card needs it.
    fn select(&self, ch: &mut Channel) -> Result<(), Error>;
    /// The admin tries left, without spending one.
    fn admin_tries(&self, ch: &mut Channel) -> Result<Tries, Error>;
    /// The PIN tries left, without spending one.
    fn pin_tries(&self, ch: &mut Channel) -> Result<Tries, Error>;
    /// A fresh, single-use challenge for admin authentication.
    fn get_challenge(&self, ch: &mut Channel) -> Result<Challenge, Error>;
    /// Send the admin response. Sent once; the card may spend a try.
    fn external_authenticate(&self, ch: &mut Channel, c: &Cryptogram) -> Result<(), Error>;
    /// Set the new PIN and reset its counter (after admin authentication).
    fn reset_retry_counter(&self, ch: &mut Channel, pin: &Pin) -> Result<(), Error>;
    /// The card's id, where the card can tell it (GIDS/minidriver `cardid`).
    fn card_id(&self, _ch: &mut Channel) -> Result<Option<String>, Error> {
        Ok(None)
    }
}

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
    fn name(&self) -> &str {
        &self.profile.name
    }

    fn challenge_len(&self) -> usize {
        self.profile.challenge_len as usize
    }

    fn check_pin(&self, pin: &Pin) -> Result<(), Error> {
        self.profile.check_pin(pin)
    }

    fn select(&self, ch: &mut Channel) -> Result<(), Error> {
        let Some(aid) = self.profile.select_aid_bytes() else {
            return Ok(());
        };
        let r = ch.send(&self.cmd(ins::SELECT, 0x04, 0x00).data(aid), false)?;
        match r.status() {
            Status::Success => Ok(()),
            status => Err(Error::Card {
                step: "SELECT",
                sw: r.sw,
                status,
            }),
        }
    }

    fn admin_tries(&self, ch: &mut Channel) -> Result<Tries, Error> {
        if !self.profile.admin_tries_query {
            return Ok(Tries::Unknown);
        }
        let p = &self.profile;
        let r = ch.send(
            &self.cmd(ins::EXTERNAL_AUTHENTICATE, p.ext_auth_p1, p.ext_auth_p2),
            false,
        )?;
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
        let r = ch.send(
            &self.cmd(ins::VERIFY, 0x00, self.profile.pin_reference),
            false,
        )?;
        Ok(Tries::from_query(r.status()))
    }

    fn get_challenge(&self, ch: &mut Channel) -> Result<Challenge, Error> {
        let want = self.profile.challenge_len;
        let r = ch.send(&self.cmd(ins::GET_CHALLENGE, 0, 0).le(want), false)?;
        if r.status() != Status::Success {
            return Err(Error::Card {
                step: "GET CHALLENGE",
                sw: r.sw,
                status: r.status(),
            });
        }
        if r.data.len() != want as usize {
            return Err(Error::protocol(format!(
                "GET CHALLENGE: the card sent a {}-byte challenge; the profile expects {want}. \
                 No response was computed or sent",
                r.data.len()
            )));
        }
        Ok(Challenge::new(r.data))
    }

    fn external_authenticate(&self, ch: &mut Channel, c: &Cryptogram) -> Result<(), Error> {
        let p = &self.profile;
        let cmd = self
            .cmd(ins::EXTERNAL_AUTHENTICATE, p.ext_auth_p1, p.ext_auth_p2)
            .data(c.as_bytes().to_vec());
        let r = ch.send(&cmd, true)?;
        match r.status() {
            Status::Success => Ok(()),
            Status::TriesLeft(0) | Status::Blocked => Err(Error::AdminBlocked { sw: r.sw }),
            Status::TriesLeft(n) => Err(Error::AdminRejected {
                sw: r.sw,
                tries_left: Tries::Left(n),
            }),
            Status::AuthFailed | Status::SecurityNotSatisfied => {
                // No count in the answer: ask (read-only), where the profile allows.
                let tries_left = self.admin_tries(ch).unwrap_or(Tries::Unknown);
                Err(Error::AdminRejected {
                    sw: r.sw,
                    tries_left,
                })
            }
            status => Err(Error::Card {
                step: "EXTERNAL AUTHENTICATE",
                sw: r.sw,
                status,
            }),
        }
    }

    fn reset_retry_counter(&self, ch: &mut Channel, pin: &Pin) -> Result<(), Error> {
        let p = &self.profile;
        let cmd = self
            .cmd(ins::RESET_RETRY_COUNTER, p.rrc_p1, p.rrc_p2)
            .sensitive(p.pin_block(pin));
        let r = ch.send(&cmd, false)?;
        match r.status() {
            Status::Success => Ok(()),
            status => Err(Error::PinRejected {
                step: "RESET RETRY COUNTER",
                sw: r.sw,
                status,
                pin_tries: self.pin_tries(ch).unwrap_or(Tries::Unknown),
            }),
        }
    }
}

/// What a GET CHALLENGE / EXTERNAL AUTHENTICATE status word means, for docs
/// and messages.
pub fn explain_card_error(step: &str, status: Status) -> Option<&'static str> {
    match (step, status) {
        ("EXTERNAL AUTHENTICATE", Status::ConditionsNotSatisfied) => Some(
            "the card lost the challenge (another command came between GET CHALLENGE and \
             EXTERNAL AUTHENTICATE); no try was spent. Run again",
        ),
        ("EXTERNAL AUTHENTICATE", Status::ReferenceDataNotFound) => Some(
            "the card has no admin key at this key reference: check ext_auth_p2 in the profile",
        ),
        (_, Status::InsNotSupported) => {
            Some("the card does not support this command: it needs another card profile")
        }
        (_, Status::ClaNotSupported) => {
            Some("the card refused the CLA byte: check cla in the profile")
        }
        (_, Status::IncorrectP1P2) => Some("the card refused P1/P2: check the card profile"),
        ("SELECT", Status::NotFound) => {
            Some("the card has no application with this AID: check select_aid in the profile")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{ScriptedTransport, Trace};

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
            let r = applet().external_authenticate(&mut ch, &c);
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
            .external_authenticate(&mut ch, &c)
            .unwrap_err();
        assert_eq!(e.exit_code(), 4);
        assert_eq!(e.admin_tries(), Some(Tries::Left(3)));
    }

    #[test]
    fn challenge_must_have_the_profile_length() {
        let mut t = ScriptedTransport::new().expect("0084000008", "D61143F9CCFFD2CA009000");
        let mut ch = Channel::new(&mut t, Trace::off());
        let e = applet().get_challenge(&mut ch).unwrap_err();
        assert!(e.to_string().contains("9-byte"), "{e}");
    }

    #[test]
    fn rejected_pin_reports_pin_tries() {
        let pin = Pin::new(zeroize::Zeroizing::new(b"1234".to_vec()));
        let mut t = ScriptedTransport::new()
            .expect("002C02800431323334", "6A80")
            .expect("00200080", "6983");
        let mut ch = Channel::new(&mut t, Trace::off());
        let e = applet().reset_retry_counter(&mut ch, &pin).unwrap_err();
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
