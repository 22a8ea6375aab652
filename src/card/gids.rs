//! The `gids` family: Windows' inbox GIDS minidriver's cards, TPM virtual
//! smart cards and GIDS applets. Admin authentication in GIDS "external"
//! mode, the one that maps onto CM's single 8-byte challenge:
//!
//! ```text
//! 00 A4 04 00 09 A0 00 00 03 97 42 54 46 59 00    SELECT GIDS
//! 00 CB 3F FF 04 5C 02 7F 71 00                   PIN status: 7F 71 06 97 01 <left> 93 01 <limit>
//! 00 CB A0 00 04 5C 02 DF 1F 00                   master file -> where `cardid` lives (A012/DF20)
//! 00 CB A0 12 04 5C 02 DF 20 00                   cardid: DF 20 10 <16 bytes>
//! 00 22 81 A4 03 83 01 80                         MSE SET: external authentication, key 80
//! 00 87 00 00 04 7C 02 81 00 00                   GENERAL AUTHENTICATE -> 7C 0A 81 08 <challenge>
//! 00 87 00 00 0C 7C 0A 82 08 <3DES(K, challenge)> the response: 9000, or 6982 (wrong)
//! 00 2C 02 80 Lc <new PIN>                        RESET RETRY COUNTER
//! ```
//!
//! GIDS cards do not report their admin tries. A SELECT between the
//! challenge and the response clears the challenge (6985).

use crate::admin_key::{Challenge, Cryptogram, KeyAlg};
use crate::apdu::{ins, Command, Status};
use crate::card::{admin_verdict, pin_verdict, AdminChallenge, Applet, Tries};
use crate::error::{Error, Step};
use crate::ids::CardId;
use crate::iso7816;
use crate::profile::{CardProfile, GidsParams};
use crate::secret::Pin;
use crate::tlv;
use crate::transport::Channel;

/// The GIDS application identifier.
pub const AID: [u8; 9] = [0xA0, 0x00, 0x00, 0x03, 0x97, 0x42, 0x54, 0x46, 0x59];

/// Where the master file lives (file A000, data object DF1F).
const MASTER_FILE: (u16, u16) = (0xA000, 0xDF1F);
/// Where the PIN status lives (file 3FFF, data object 7F71).
const PIN_STATUS: (u16, u16) = (0x3FFF, 0x7F71);

pub struct GidsApplet {
    profile: CardProfile,
    params: GidsParams,
}

impl GidsApplet {
    pub fn new(profile: CardProfile) -> GidsApplet {
        let params = profile.gids.clone().unwrap_or_default();
        GidsApplet { profile, params }
    }

    /// GET DATA of one data object; `None` when the card has none (6A82, 6A88).
    fn get_data(
        &self,
        ch: &mut Channel,
        (file, tag): (u16, u16),
    ) -> Result<Option<Vec<u8>>, Error> {
        let r = ch.send(&iso7816::get_data(file, &tag.to_be_bytes()))?;
        match r.status() {
            Status::Success => {}
            Status::NotFound | Status::ReferenceDataNotFound => return Ok(None),
            _ => return Err(Error::card(Step::GetData, &r)),
        }
        let value = tlv::find(&r.data, u32::from(tag)).ok_or_else(|| {
            Error::protocol(format!(
                "GET DATA {file:04X}/{tag:04X}: the card's answer is not the data object"
            ))
        })?;
        Ok(Some(value.to_vec()))
    }
}

/// The (file, data object) of the `cardid` entry of a master file: byte 0
/// is 01, then 28-byte records (directory[9], file[9], 2 padding bytes,
/// DO id LE32, file id LE32).
pub fn cardid_location(master: &[u8]) -> Option<(u16, u16)> {
    let records = master.get(1..)?;
    records.chunks_exact(28).find_map(|r| {
        let name = |b: &[u8]| -> Vec<u8> { b.iter().copied().take_while(|c| *c != 0).collect() };
        if !name(&r[0..9]).is_empty() || name(&r[9..18]) != b"cardid" {
            return None;
        }
        let dobj = u32::from_le_bytes(r[20..24].try_into().ok()?);
        let fid = u32::from_le_bytes(r[24..28].try_into().ok()?);
        Some((u16::try_from(fid).ok()?, u16::try_from(dobj).ok()?))
    })
}

impl Applet for GidsApplet {
    fn profile(&self) -> &CardProfile {
        &self.profile
    }

    fn explain(&self, step: Step, status: Status) -> Option<&'static str> {
        match (step, status) {
            (Step::GeneralAuthenticate, Status::Other(0x6986)) => Some(
                "the GIDS card is still in initialisation mode: finish its personalisation \
                 (it has no admin key in use yet)",
            ),
            (Step::GeneralAuthenticate, Status::ReferenceDataNotUsable) => Some(
                "the card refused the authentication template (6984): check mse_p1 and key_ref \
                 in the [gids] profile",
            ),
            _ => crate::card::explain(step, status),
        }
    }

    fn select(&self, ch: &mut Channel) -> Result<(), Error> {
        let r = ch.send(&iso7816::select_aid(&AID))?;
        iso7816::expect_ok(Step::Select, &r)
    }

    fn pin_tries(&self, ch: &mut Channel) -> Result<Tries, Error> {
        let Some(status) = self.get_data(ch, PIN_STATUS)? else {
            return Ok(Tries::Unknown);
        };
        let left = tlv::find(&status, 0x97).and_then(|v| v.first().copied());
        Ok(match left {
            Some(0) => Tries::Blocked,
            Some(n) => Tries::Left(n),
            None => Tries::Unknown,
        })
    }

    fn card_id(&self, ch: &mut Channel) -> Result<Option<CardId>, Error> {
        let Some(master) = self.get_data(ch, MASTER_FILE)? else {
            return Ok(None);
        };
        let Some(location) = cardid_location(&master) else {
            return Ok(None);
        };
        let Some(id) = self.get_data(ch, location)? else {
            return Ok(None);
        };
        CardId::from_slice(&id).map(Some).ok_or_else(|| {
            Error::protocol(format!(
                "the card's cardid has {} bytes; a cardid has 16",
                id.len()
            ))
        })
    }

    fn get_challenge(
        &self,
        ch: &mut Channel,
        _alg: Option<KeyAlg>,
    ) -> Result<AdminChallenge, Error> {
        let mse = Command::new(
            0x00,
            ins::MANAGE_SECURITY_ENVIRONMENT,
            self.params.mse_p1,
            0xA4,
        )
        .data(vec![0x83, 0x01, self.params.key_ref]);
        let r = ch.send(&mse)?;
        iso7816::expect_ok(Step::ManageSecurityEnvironment, &r)?;
        let r = ch.send(&iso7816::general_authenticate(0x00, 0x00, &[0x81, 0x00]).le(0))?;
        iso7816::expect_ok(Step::GeneralAuthenticate, &r)?;
        let challenge = iso7816::template_value(&r.data, 0x81)
            .filter(|c| c.len() == 8)
            .ok_or_else(|| {
                Error::protocol(
                    "GENERAL AUTHENTICATE: the card's answer holds no 8-byte challenge \
                     (7C 0A 81 08 ...); no response was computed or sent",
                )
            })?;
        Ok(AdminChallenge {
            challenge: Challenge::new(challenge.to_vec()),
            alg: KeyAlg::Tdes,
        })
    }

    fn authenticate(&self, ch: &mut Channel, _alg: KeyAlg, c: &Cryptogram) -> Result<(), Error> {
        let cmd = iso7816::general_authenticate(0x00, 0x00, &tlv::encode(0x82, c.as_bytes()))
            .spends_try();
        let r = ch.send(&cmd)?;
        admin_verdict(
            Step::GeneralAuthenticate,
            &r,
            &[Status::SecurityNotSatisfied],
        )
    }

    fn reset_pin(&self, ch: &mut Channel, pin: &Pin) -> Result<(), Error> {
        let cmd = Command::new(
            0x00,
            ins::RESET_RETRY_COUNTER,
            0x02,
            self.params.pin_reference,
        )
        .sensitive(self.profile.pin_block(pin));
        let r = ch.send(&cmd)?;
        pin_verdict(Step::ResetRetryCounter, &r, || self.pin_tries(ch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedTransport;
    use crate::transport::Trace;

    fn master_file(records: &[(&str, &str, u16, u16)]) -> Vec<u8> {
        let mut m = vec![0x01];
        for (dir, file, fid, dobj) in records {
            let mut r = [0u8; 28];
            r[..dir.len()].copy_from_slice(dir.as_bytes());
            r[9..9 + file.len()].copy_from_slice(file.as_bytes());
            r[20..24].copy_from_slice(&u32::from(*dobj).to_le_bytes());
            r[24..28].copy_from_slice(&u32::from(*fid).to_le_bytes());
            m.extend_from_slice(&r);
        }
        m
    }

    fn applet() -> GidsApplet {
        GidsApplet::new(CardProfile::gids())
    }

    #[test]
    fn finds_the_cardid_in_the_master_file() {
        let m = master_file(&[
            ("mscp", "cmapfile", 0xA010, 0xDF23),
            ("", "cardid", 0xA012, 0xDF20),
        ]);
        assert_eq!(cardid_location(&m), Some((0xA012, 0xDF20)));
        assert_eq!(cardid_location(&m[..30]), None);
        assert_eq!(cardid_location(&[]), None);
    }

    #[test]
    fn reads_pin_tries_and_card_id() {
        let m = master_file(&[("", "cardid", 0xA012, 0xDF20)]);
        let mut answer = tlv::encode(0xDF1F, &m);
        answer.extend_from_slice(&[0x90, 0x00]);
        let mut t = ScriptedTransport::new()
            .expect("00CB3FFF045C027F7100", "7F71069701029301039000")
            .expect("00CBA000045C02DF1F00", &hex::encode(answer))
            .expect(
                "00CBA012045C02DF2000",
                "DF201000112233445566778899AABBCCDDEEFF9000",
            )
            .expect("00CB3FFF045C027F7100", "7F71069701009301039000");
        let mut ch = Channel::new(&mut t, Trace::off());
        let a = applet();
        assert_eq!(a.pin_tries(&mut ch).unwrap(), Tries::Left(2));
        let id = a.card_id(&mut ch).unwrap().unwrap();
        assert_eq!(id.guid().as_str(), "33221100-5544-7766-8899-aabbccddeeff");
        assert_eq!(a.pin_tries(&mut ch).unwrap(), Tries::Blocked);
        assert_eq!(a.admin_tries(&mut ch).unwrap(), Tries::Unknown);
        assert!(t.done());
    }

    #[test]
    fn no_master_file_means_no_card_id() {
        let mut t = ScriptedTransport::new().expect("00CBA000045C02DF1F00", "6A82");
        let mut ch = Channel::new(&mut t, Trace::off());
        assert_eq!(applet().card_id(&mut ch).unwrap(), None);
    }

    #[test]
    fn external_authentication_with_the_golden_vector() {
        let mut t = ScriptedTransport::new()
            .expect("0022 81A4 03 830180", "9000")
            .expect("00870000047C02810000", "7C0A8108D61143F9CCFFD2CA9000")
            .expect("008700000C7C0A820817466E766E303CB6", "9000");
        let mut ch = Channel::new(&mut t, Trace::off());
        let a = applet();
        let c = a.get_challenge(&mut ch, None).unwrap();
        assert_eq!(
            hex::encode_upper(c.challenge.as_bytes()),
            "D61143F9CCFFD2CA"
        );
        let key = crate::admin_key::AdminKey::from_bytes(&[0; 24]).unwrap();
        let r = key.respond(c.alg, &c.challenge).unwrap();
        a.authenticate(&mut ch, c.alg, &r).unwrap();
        assert!(t.done());
    }

    #[test]
    fn rejected_and_lost_challenges() {
        let c = Cryptogram::new(vec![0; 8]);
        for (sw, code) in [("6982", 4), ("6983", 5), ("6985", 1), ("6984", 1)] {
            let mut t = ScriptedTransport::new().expect("008700000C7C0A82080000000000000000", sw);
            let mut ch = Channel::new(&mut t, Trace::off());
            let e = applet()
                .authenticate(&mut ch, KeyAlg::Tdes, &c)
                .unwrap_err();
            assert_eq!(e.exit_code(), code, "{sw}");
        }
    }

    #[test]
    fn a_challenge_answer_without_a_challenge_is_refused() {
        let mut t = ScriptedTransport::new()
            .expect("002281A403830180", "9000")
            .expect("00870000047C02810000", "7C0281009000");
        let mut ch = Channel::new(&mut t, Trace::off());
        let e = applet().get_challenge(&mut ch, None).unwrap_err();
        assert_eq!(e.exit_code(), 1);
    }
}
