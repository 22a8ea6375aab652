//! Who answers the card's challenge: the local admin key, a person reading
//! the challenge over the phone, or MIM CM (see `cm_client`).
//!
//! A responder either returns a cryptogram or fails; the flow checks the
//! cryptogram's length before anything goes to the card, so a failure here
//! never spends an admin try.

use std::io::BufRead;

use base64::Engine;

use crate::admin_key::{AdminKey, Challenge, Cryptogram, KeyAlg};
use crate::card_info::CardInfo;
use crate::error::Error;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a responder knows about the card it answers for.
#[derive(Clone, Debug, Default)]
pub struct CardContext {
    /// Reader, ATR and card id (CM needs the id; the flow fills it in
    /// after reading the card).
    pub info: CardInfo,
    /// The algorithm of the card's admin key (the card says; 3DES by default).
    pub key_alg: KeyAlg,
}

/// How the flow ended, for a responder that reports back (CM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Admin authentication (and the PIN reset, if asked) succeeded.
    Succeeded,
    /// The card rejected the response.
    Rejected,
    /// Anything else: the card may not have seen a response.
    Interrupted,
}

pub trait Responder {
    /// A short name for reports: "local-key", "manual", "cm".
    fn name(&self) -> &'static str;

    /// True when [`Responder::prepare`] talks to a server and may take long
    /// (a CM request waiting for approval): the flow runs it outside any
    /// card transaction.
    fn needs_preparation(&self) -> bool {
        false
    }

    /// The responder cannot answer without the card id (CM): the flow
    /// refuses before the challenge when no id is known.
    fn needs_card_id(&self) -> bool {
        false
    }

    /// Check, before the challenge, that this responder can answer for a
    /// card whose admin key has this algorithm (a local key of the wrong
    /// length is exit 2; CM computes 3DES only).
    fn check_alg(&self, _alg: KeyAlg) -> Result<(), Error> {
        Ok(())
    }

    /// Work before the challenge, outside any card transaction.
    fn prepare(&mut self, _card: &CardContext) -> Result<(), Error> {
        Ok(())
    }

    /// The response to one challenge.
    fn respond(&mut self, challenge: &Challenge, card: &CardContext) -> Result<Cryptogram, Error>;

    /// Told how the flow ended (CM closes or abandons its request).
    fn finish(&mut self, _ending: Ending) -> Result<(), Error> {
        Ok(())
    }

    /// What the responder did, for the run's report (CM request, calls).
    fn report(&self) -> Option<serde_json::Value> {
        None
    }
}

/// The responder's answer to `challenge`, refused unless it has exactly the
/// challenge's length: a response of the wrong length never goes anywhere.
pub fn checked_response(
    responder: &mut dyn Responder,
    challenge: &Challenge,
    card: &CardContext,
) -> Result<Cryptogram, Error> {
    let cryptogram = responder.respond(challenge, card)?;
    if cryptogram.len() != challenge.len() {
        return Err(Error::responder(format!(
            "the {} responder gave {} bytes for a {}-byte challenge; the response was not used \
             and nothing was sent to the card",
            responder.name(),
            cryptogram.len(),
            challenge.len()
        )));
    }
    Ok(cryptogram)
}

/// The admin key held locally.
pub struct LocalKey {
    key: AdminKey,
}

impl LocalKey {
    pub fn new(key: AdminKey) -> LocalKey {
        LocalKey { key }
    }
}

impl Responder for LocalKey {
    fn name(&self) -> &'static str {
        "local-key"
    }

    fn check_alg(&self, alg: KeyAlg) -> Result<(), Error> {
        self.key.check_alg(alg)
    }

    fn respond(&mut self, challenge: &Challenge, card: &CardContext) -> Result<Cryptogram, Error> {
        self.key
            .respond(card.key_alg, challenge)
            .map_err(|e| Error::responder(format!("local key: {e}")))
    }
}

/// No responder: for runs that authenticate nothing (`--dry-run`).
pub struct NoResponder;

impl Responder for NoResponder {
    fn name(&self) -> &'static str {
        "none"
    }

    fn respond(
        &mut self,
        _challenge: &Challenge,
        _card: &CardContext,
    ) -> Result<Cryptogram, Error> {
        Err(Error::responder(
            "no admin key source was given; nothing was sent to the card",
        ))
    }
}

/// A person computes the response elsewhere (helpdesk by phone): the
/// challenge is shown, the response is read from a line of input.
pub struct Manual<R: BufRead> {
    input: R,
}

impl<R: BufRead> Manual<R> {
    pub fn new(input: R) -> Manual<R> {
        Manual { input }
    }
}

impl<R: BufRead> Responder for Manual<R> {
    fn name(&self) -> &'static str {
        "manual"
    }

    fn respond(&mut self, challenge: &Challenge, card: &CardContext) -> Result<Cryptogram, Error> {
        let c = challenge.as_bytes();
        crate::log::say(format!("Card in {}:", card.info.reader));
        crate::log::say(format!("  challenge (hex):    {}", hex::encode_upper(c)));
        crate::log::say(format!("  challenge (base64): {}", B64.encode(c)));
        crate::log::say("Enter the response (hex or base64), then Enter:");
        let cap = crate::secret::STDIN_LINE_CAP;
        let line = match crate::secret::read_line_bounded(&mut self.input, cap) {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(Error::responder(
                    "no response was entered (input ended); nothing was sent to the card",
                ))
            }
            Err(crate::secret::LineError::TooLong) => {
                return Err(Error::responder(format!(
                    "the response line is longer than {cap} bytes; nothing was sent to the card"
                )))
            }
            Err(crate::secret::LineError::Io(e)) => {
                return Err(Error::responder(format!("cannot read the response: {e}")))
            }
        };
        let text = String::from_utf8_lossy(&line);
        parse_response_text(text.trim(), c.len()).map(Cryptogram::new)
    }
}

/// Parse a response typed by a person or sent by a server: hex (spaces and
/// colons allowed) or base64, exactly `want` bytes.
pub fn parse_response_text(text: &str, want: usize) -> Result<Vec<u8>, Error> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if compact.is_empty() {
        return Err(Error::responder(
            "the response is empty; nothing was sent to the card",
        ));
    }
    let bytes = if compact.len() == want * 2 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(&compact).ok()
    } else {
        B64.decode(compact.as_bytes()).ok()
    };
    let Some(bytes) = bytes else {
        return Err(Error::responder(format!(
            "the response is neither {} hex digits nor base64; nothing was sent to the card",
            want * 2
        )));
    };
    if bytes.len() != want {
        return Err(Error::responder(format!(
            "the response has {} bytes, the challenge {want}; nothing was sent to the card",
            bytes.len()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> Challenge {
        Challenge::new(hex::decode("d61143f9ccffd2ca").unwrap())
    }

    #[test]
    fn local_key_answers_the_golden_vector() {
        let mut r = LocalKey::new(AdminKey::from_bytes(&[0; 24]).unwrap());
        let c = r.respond(&golden(), &CardContext::default()).unwrap();
        assert_eq!(B64.encode(c.as_bytes()), "F0Zudm4wPLY=");
    }

    #[test]
    fn manual_reads_hex_or_base64() {
        for typed in [
            "17466e766e303cb6\n",
            "17 46 6E 76 6E 30 3C B6\r\n",
            "F0Zudm4wPLY=\n",
        ] {
            let mut m = Manual::new(typed.as_bytes());
            let c = m.respond(&golden(), &CardContext::default()).unwrap();
            assert_eq!(hex::encode(c.as_bytes()), "17466e766e303cb6", "{typed}");
        }
    }

    #[test]
    fn manual_rejects_bad_input_before_the_card() {
        for typed in [
            "",
            "\n",
            "17466e766e303c\n",
            "F0Zudm4wPLb2Lg==\n",
            "not a response\n",
        ] {
            let mut m = Manual::new(typed.as_bytes());
            let e = m.respond(&golden(), &CardContext::default()).unwrap_err();
            assert_eq!(e.exit_code(), 6, "{typed:?}");
        }
    }
}
