//! Which card family a card is, when `--profile` does not say.
//!
//! 1. The ATR patterns of the profiles (site files first, then the
//!    built-ins), as Windows maps a vendor card to its minidriver by ATR.
//! 2. SELECT of the PIV AID `A0 00 00 03 08 00 00 10 00`.
//! 3. SELECT of the GIDS AID `A0 00 00 03 97 42 54 46 59`.
//! 4. Otherwise `iso`.
//!
//! PIV before GIDS is the order of Windows' inbox class minidriver, so a
//! card that carries both is treated the way Windows and CM see it. Any
//! answer to a detection SELECT but 9000 (61xx is followed by GET RESPONSE)
//! means "not this family". The SELECTs are read-only; they appear in the
//! trace.

use crate::card::{gids, piv};
use crate::error::Error;
use crate::iso7816;
use crate::profile::{CardProfile, Family, ProfileChoice, ProfileSource};
use crate::transport::Channel;

/// The profile for this card, and where it came from.
pub fn profile(
    ch: &mut Channel,
    atr: &[u8],
    choice: &ProfileChoice,
) -> Result<(CardProfile, ProfileSource), Error> {
    let site = match choice {
        ProfileChoice::Forced(p) => return Ok((p.clone(), ProfileSource::Option)),
        ProfileChoice::Detect { site } => site,
    };
    if let Some(p) = ProfileChoice::by_atr(site, atr) {
        crate::log::verbose(format!("profile {}: claimed by the ATR", p.name));
        return Ok((p, ProfileSource::Detected));
    }
    for (family, aid) in [(Family::Piv, &piv::AID[..]), (Family::Gids, &gids::AID[..])] {
        let r = ch.send(&iso7816::select_aid(aid))?;
        if iso7816::selected(&r) {
            crate::log::verbose(format!("profile {family}: the card selects its AID"));
            return Ok((CardProfile::builtin(family), ProfileSource::Detected));
        }
    }
    Ok((CardProfile::iso(), ProfileSource::Detected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedTransport;
    use crate::transport::Trace;

    const PIV_SELECT: &str = "00A4040009A0000003080000100000";
    const GIDS_SELECT: &str = "00A4040009A0000003974254465900";

    fn detect(t: &mut ScriptedTransport, atr: &[u8]) -> (Family, ProfileSource) {
        let mut ch = Channel::new(t, Trace::off());
        let (p, s) = profile(&mut ch, atr, &ProfileChoice::Detect { site: vec![] }).unwrap();
        (p.family, s)
    }

    #[test]
    fn piv_first_then_gids_then_iso() {
        let atr = [0x3B, 0x00];
        let mut t = ScriptedTransport::new().expect(PIV_SELECT, "9000");
        assert_eq!(detect(&mut t, &atr), (Family::Piv, ProfileSource::Detected));
        let mut t = ScriptedTransport::new()
            .expect(PIV_SELECT, "6A82")
            .expect(GIDS_SELECT, "6108")
            .expect("00C0000008", "6F06840401020304 9000");
        assert_eq!(detect(&mut t, &atr).0, Family::Gids);
        for other in ["6999", "6D00", "6E00"] {
            let mut t = ScriptedTransport::new()
                .expect(PIV_SELECT, other)
                .expect(GIDS_SELECT, other);
            assert_eq!(detect(&mut t, &atr).0, Family::Iso, "{other}");
            assert!(t.done());
        }
    }

    #[test]
    fn the_atr_claims_before_any_select() {
        let c2300 = hex::decode("3BD596FF8191FE1FC343323330 30CC".replace(' ', "")).unwrap();
        let mut t = ScriptedTransport::new();
        assert_eq!(detect(&mut t, &c2300).0, Family::Crescendo);
        assert!(t.received.is_empty());
    }

    #[test]
    fn a_forced_profile_sends_nothing() {
        let mut t = ScriptedTransport::new();
        let mut ch = Channel::new(&mut t, Trace::off());
        let (p, s) = profile(
            &mut ch,
            &[0x3B, 0x00],
            &ProfileChoice::Forced(CardProfile::gids()),
        )
        .unwrap();
        assert_eq!((p.family, s), (Family::Gids, ProfileSource::Option));
        assert!(t.received.is_empty());
    }
}
