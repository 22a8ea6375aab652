//! `scunblock respond CHALLENGE KEY-SOURCE`: the helpdesk half of a phone
//! unblock. The user reads out the challenge that Windows' unblock screen
//! (or `scunblock unblock --manual`) shows; this computes the response with
//! the same key sources as every other command and prints one line that
//! `--manual` accepts as it is. It touches no card.

use base64::Engine;

use super::args::{KeyAlgArg, RespondArgs};
use super::output::Reporter;
use super::{cm_options_need_cm, one_responder, CmdResult};
use scunblock::admin_key::{Challenge, KeyAlg};
use scunblock::card_info::CardInfo;
use scunblock::error::Error;
use scunblock::ids::Guid;
use scunblock::key_source::Use;
use scunblock::responder::{checked_response, CardContext, Ending};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub(super) fn run(a: &RespondArgs, reporter: &Reporter, json: bool) -> CmdResult {
    let alg = match a.key_alg {
        KeyAlgArg::Tdes => KeyAlg::Tdes,
        KeyAlgArg::Aes128 => KeyAlg::Aes128,
        KeyAlgArg::Aes192 => KeyAlg::Aes192,
        KeyAlgArg::Aes256 => KeyAlg::Aes256,
    };
    let challenge = parse_challenge(&a.challenge, alg)?;
    cm_options_need_cm(&a.key, &a.cm)?;
    let Some(source) = a.key.source() else {
        return Err(Error::usage(
            "respond needs a key source: --admin-key-file PATH, --admin-key-env VAR, \
             --pkcs11-key URI or --cm URL",
        )
        .into());
    };
    let card_id = a
        .card_id
        .as_deref()
        .map(|c| Guid::parse(c, "--card-id"))
        .transpose()?;
    let mut responder = one_responder(&source, Use::Respond, &a.cm, json)?;
    let card = CardContext {
        info: CardInfo {
            card_id: card_id.map(|c| c.to_string()),
            ..CardInfo::default()
        },
        key_alg: alg,
    };
    if responder.needs_card_id() && card.info.card_id.is_none() {
        return Err(Error::usage(format!(
            "the {} key source needs the card id here (no card is read): give --card-id GUID",
            responder.name()
        ))
        .into());
    }
    responder.check_alg(alg)?;
    if responder.needs_preparation() {
        responder.prepare(&card)?;
    }
    let response = checked_response(responder.as_mut(), &challenge, &card);
    // Whether the card takes it is not known here: a CM request stays open.
    let _ = responder.finish(Ending::Interrupted);
    let response = response?;
    reporter.respond(response.as_bytes());
    Ok(())
}

/// The challenge as read out: hex (spaces and colons allowed) or base64,
/// exactly one block of the card's algorithm. Anything else is exit 2.
fn parse_challenge(text: &str, alg: KeyAlg) -> Result<Challenge, Error> {
    let want = alg.block_len();
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    // Base64 of 8 or 16 bytes ends in `=`, so text of hex digits only is hex.
    let bytes = if compact.len() % 2 == 0 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(&compact).ok()
    } else {
        B64.decode(compact.as_bytes()).ok()
    };
    match bytes {
        Some(b) if b.len() == want => Ok(Challenge::new(b)),
        Some(b) => Err(Error::usage(format!(
            "the challenge has {} bytes; a {alg} card's challenge has {want}{}",
            b.len(),
            if b.len() == 16 && alg == KeyAlg::Tdes {
                " (an AES card? give --key-alg aes128, aes192 or aes256)"
            } else {
                ""
            }
        ))),
        None => Err(Error::usage(format!(
            "the challenge is neither {} hex digits nor base64",
            want * 2
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_in_hex_or_base64() {
        for text in [
            "d61143f9ccffd2ca",
            "D6 11 43 F9 CC FF D2 CA",
            "1hFD+cz/0so=",
        ] {
            let c = parse_challenge(text, KeyAlg::Tdes).unwrap();
            assert_eq!(hex::encode(c.as_bytes()), "d61143f9ccffd2ca", "{text}");
        }
        let aes = parse_challenge("00112233445566778899aabbccddeeff", KeyAlg::Aes128).unwrap();
        assert_eq!(aes.len(), 16);
    }

    #[test]
    fn a_challenge_of_the_wrong_length_is_exit_2() {
        for (text, alg) in [
            ("d61143f9ccffd2", KeyAlg::Tdes),
            ("d61143f9ccffd2caff", KeyAlg::Tdes),
            ("00112233445566778899aabbccddeeff", KeyAlg::Tdes),
            ("d61143f9ccffd2ca", KeyAlg::Aes128),
            ("", KeyAlg::Tdes),
            ("not a challenge!", KeyAlg::Tdes),
        ] {
            let e = parse_challenge(text, alg).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{text}");
        }
    }
}
