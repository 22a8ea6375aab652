//! What the unblock flow asks of a card, and one implementation per card
//! family.
//!
//! [`Applet`] is the seam between the flow and a card family: one method per
//! card operation, each with a typed result. Each family is one file
//! ([`iso`], [`gids`], [`piv`], [`crescendo`]) plus its built-in profile in
//! [`crate::profile`]; [`for_profile`] picks the applet, [`detect`] picks the
//! profile for a card. docs/cards.md gives every family's APDUs.

pub mod crescendo;
pub mod detect;
pub mod gids;
pub mod iso;
pub mod piv;

use crate::admin_key::{Challenge, Cryptogram, KeyAlg};
use crate::apdu::Status;
use crate::error::{Error, Step};
use crate::ids::CardId;
use crate::profile::{CardProfile, Family};
use crate::secret::Pin;
use crate::transport::Channel;

pub use crate::apdu::Tries;
pub use iso::IsoApplet;

/// How a family sets a new user PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlock {
    /// After admin authentication with the admin key (the minidriver's
    /// challenge/response unblock).
    AdminKey,
    /// With the PUK (PIV): the admin key cannot reset the PIN.
    Puk,
}

/// A fresh admin challenge and the algorithm its response must use.
#[derive(Clone, Debug)]
pub struct AdminChallenge {
    pub challenge: Challenge,
    pub alg: KeyAlg,
}

/// The card operations of the unblock flow. Every method sends only the
/// APDUs its name says; none spends a try except [`Applet::authenticate`]
/// and [`Applet::reset_pin_with_puk`].
pub trait Applet: Send + Sync {
    /// The profile this applet runs with.
    fn profile(&self) -> &CardProfile;

    /// The profile's name, for reports.
    fn name(&self) -> &str {
        &self.profile().name
    }

    /// The card family.
    fn family(&self) -> Family {
        self.profile().family
    }

    /// How this family sets a new PIN.
    fn unlock(&self) -> Unlock {
        Unlock::AdminKey
    }

    /// Check a new PIN against the card's policy before any cryptogram.
    fn check_pin(&self, pin: &Pin) -> Result<(), Error> {
        self.profile().check_pin(pin)
    }

    /// Select the application, where the card needs it.
    fn select(&self, ch: &mut Channel) -> Result<(), Error>;

    /// The admin tries left, without spending one. Unknown for the families
    /// whose cards do not report them.
    fn admin_tries(&self, _ch: &mut Channel) -> Result<Tries, Error> {
        Ok(Tries::Unknown)
    }

    /// The PIN tries left, without spending one.
    fn pin_tries(&self, ch: &mut Channel) -> Result<Tries, Error>;

    /// The PUK tries left, without spending one (families with a PUK).
    fn puk_tries(&self, _ch: &mut Channel) -> Result<Tries, Error> {
        Ok(Tries::Unknown)
    }

    /// The card's own id, where the family has one (GIDS `cardid`, PIV CHUID).
    fn card_id(&self, _ch: &mut Channel) -> Result<Option<CardId>, Error> {
        Ok(None)
    }

    /// The admin key's algorithm, where the card tells it before the
    /// challenge (`None`: the challenge will tell).
    fn key_alg(&self, _ch: &mut Channel) -> Result<Option<KeyAlg>, Error> {
        Ok(Some(KeyAlg::Tdes))
    }

    /// A fresh, single-use challenge for admin authentication. `alg` is what
    /// [`Applet::key_alg`] said.
    fn get_challenge(&self, ch: &mut Channel, alg: Option<KeyAlg>)
        -> Result<AdminChallenge, Error>;

    /// Send the admin response. Sent once; the card may spend a try.
    fn authenticate(&self, ch: &mut Channel, alg: KeyAlg, c: &Cryptogram) -> Result<(), Error>;

    /// Set the new PIN and reset its counter (after admin authentication).
    fn reset_pin(&self, ch: &mut Channel, pin: &Pin) -> Result<(), Error>;

    /// What a status word means at a step on this family's cards: the hint
    /// attached to [`Error::Card`].
    fn explain(&self, step: Step, status: Status) -> Option<&'static str> {
        explain(step, status)
    }

    /// Set the new PIN with the PUK (families whose [`Applet::unlock`] is
    /// [`Unlock::Puk`]). A wrong PUK spends a PUK try.
    fn reset_pin_with_puk(&self, _ch: &mut Channel, _puk: &Pin, _pin: &Pin) -> Result<(), Error> {
        Err(Error::Unexpected(format!(
            "the {} family does not reset a PIN with a PUK",
            self.family()
        )))
    }
}

/// The applet of a profile's family.
pub fn for_profile(profile: CardProfile) -> Box<dyn Applet> {
    match profile.family {
        Family::Iso => Box::new(IsoApplet::new(profile)),
        Family::Gids => Box::new(gids::GidsApplet::new(profile)),
        Family::Piv => Box::new(piv::PivApplet::new(profile)),
        Family::Crescendo => Box::new(crescendo::CrescendoApplet::new(profile)),
    }
}

/// How a card answered a command that spends a try (an admin response, a
/// PUK), decoded the way every family shares: 9000 accepted; 63Cx rejected
/// with x tries left; 6983 (or 63C0) blocked; the family's own rejection
/// words (`rejected`) rejected with the count unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryAnswer {
    Accepted,
    Blocked,
    Rejected(Tries),
    /// Any other status word: the caller decides.
    Other,
}

pub(crate) fn try_answer(r: &crate::apdu::Response, rejected: &[Status]) -> TryAnswer {
    match r.status() {
        Status::Success => TryAnswer::Accepted,
        Status::TriesLeft(0) | Status::Blocked => TryAnswer::Blocked,
        Status::TriesLeft(n) => TryAnswer::Rejected(Tries::Left(n)),
        status if rejected.contains(&status) => TryAnswer::Rejected(Tries::Unknown),
        _ => TryAnswer::Other,
    }
}

/// The admin answer to a response ([`try_answer`]); any other status word
/// is a card error of `step`.
pub(crate) fn admin_verdict(
    step: Step,
    r: &crate::apdu::Response,
    rejected: &[Status],
) -> Result<(), Error> {
    match try_answer(r, rejected) {
        TryAnswer::Accepted => Ok(()),
        TryAnswer::Blocked => Err(Error::AdminBlocked { sw: Some(r.sw) }),
        TryAnswer::Rejected(tries_left) => Err(Error::AdminRejected {
            sw: r.sw,
            tries_left,
        }),
        TryAnswer::Other => Err(Error::card(step, r)),
    }
}

/// The answer to a new PIN, decoded the way every family shares: 9000 ok;
/// anything else a rejected PIN, with the PIN tries read back (read-only)
/// where the family can tell them.
pub(crate) fn pin_verdict(
    step: Step,
    r: &crate::apdu::Response,
    pin_tries: impl FnOnce() -> Result<Tries, Error>,
) -> Result<(), Error> {
    match r.status() {
        Status::Success => Ok(()),
        status => Err(Error::PinRejected {
            step,
            sw: r.sw,
            status,
            pin_tries: pin_tries().unwrap_or(Tries::Unknown),
        }),
    }
}

/// What a status word means at a step, for every family: the hint
/// [`Applet::explain`] gives unless the family knows better.
pub fn explain(step: Step, status: Status) -> Option<&'static str> {
    match (step, status) {
        (s, Status::ConditionsNotSatisfied) if s.is_admin_response() => Some(
            "the card lost the challenge (another command came between the challenge and \
             the response); no try was spent. Run again",
        ),
        (s, Status::ReferenceDataNotFound) if s.is_admin_response() => Some(
            "the card has no admin key at this key reference (or it is not initialised): \
             check the key reference in the profile (ext_auth_p2 for iso; key_ref of [gids] \
             or [piv]; xauth_key of [crescendo])",
        ),
        (_, Status::InsNotSupported) => {
            Some("the card does not support this command: it needs another card profile")
        }
        (_, Status::ClaNotSupported) => {
            Some("the card refused the CLA byte: check cla in the profile")
        }
        (_, Status::IncorrectP1P2) => Some("the card refused P1/P2: check the card profile"),
        (Step::Select, Status::NotFound) => Some(
            "the card has no application with this AID: check select_aid in the profile, or \
             let scunblock detect the family (no --profile)",
        ),
        _ => None,
    }
}
