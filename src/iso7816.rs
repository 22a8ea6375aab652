//! ISO 7816-4 commands the card families share, built once: SELECT by AID,
//! GET DATA of a data object, the counter query (VERIFY without data), and
//! GENERAL AUTHENTICATE with a `7C` template.

use crate::apdu::{ins, Command, Response, Status};
use crate::card::Tries;
use crate::error::{Error, Step};
use crate::tlv;
use crate::transport::Channel;

/// SELECT by AID (`00 A4 04 00 Lc AID 00`).
pub fn select_aid(aid: &[u8]) -> Command {
    Command::new(0x00, ins::SELECT, 0x04, 0x00)
        .data(aid.to_vec())
        .le(0)
}

/// Whether a SELECT answer means "this application is here": 9000 (61xx
/// was already followed by GET RESPONSE in the channel). Anything else,
/// 6A82, 6999 or whatever a card says, means it is not.
pub fn selected(r: &Response) -> bool {
    r.status() == Status::Success
}

/// GET DATA of a data object `tag` in `file` (`00 CB hi lo Lc 5C len tag 00`;
/// GIDS files, PIV uses 3FFF).
pub fn get_data(file: u16, tag: &[u8]) -> Command {
    let [hi, lo] = file.to_be_bytes();
    Command::new(0x00, ins::GET_DATA, hi, lo)
        .data(tlv::encode(0x5C, tag))
        .le(0)
}

/// The tries left on a PIN, without spending one: VERIFY without data.
pub fn verify_query(ch: &mut Channel, cla: u8, reference: u8) -> Result<Tries, Error> {
    let r = ch.send(&Command::new(cla, ins::VERIFY, 0x00, reference))?;
    Ok(Tries::from_query(r.status()))
}

/// GENERAL AUTHENTICATE with a `7C` dynamic authentication template holding
/// the given TLVs.
pub fn general_authenticate(p1: u8, p2: u8, inner: &[u8]) -> Command {
    Command::new(0x00, ins::GENERAL_AUTHENTICATE, p1, p2).data(tlv::encode(0x7C, inner))
}

/// The value of `tag` inside the `7C` template of a GENERAL AUTHENTICATE
/// answer.
pub fn template_value(data: &[u8], tag: u32) -> Option<&[u8]> {
    tlv::find(tlv::find(data, 0x7C)?, tag)
}

/// Err(Error::Card) for any status but 9000.
pub fn expect_ok(step: Step, r: &Response) -> Result<(), Error> {
    match r.status() {
        Status::Success => Ok(()),
        _ => Err(Error::card(step, r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_shared_commands() {
        let s = select_aid(&hex::decode("A000000308000010").unwrap());
        assert_eq!(
            hex::encode_upper(&s.to_bytes()[..]),
            "00A4040008A00000030800001000"
        );
        let g = get_data(0x3FFF, &[0x5F, 0xC1, 0x02]);
        assert_eq!(
            hex::encode_upper(&g.to_bytes()[..]),
            "00CB3FFF055C035FC10200"
        );
        let g = get_data(0xA000, &[0xDF, 0x1F]);
        assert_eq!(hex::encode_upper(&g.to_bytes()[..]), "00CBA000045C02DF1F00");
        let ga = general_authenticate(0x03, 0x9B, &[0x81, 0x00]);
        assert_eq!(hex::encode_upper(&ga.to_bytes()[..]), "0087039B047C028100");
    }
}
