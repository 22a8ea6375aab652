//! The facts that name one card in one reader, as every report gives them:
//! the flow's outcome, the responder's context and the watcher's events.

use serde::{Serialize, Serializer};

/// A card in a reader: where it is, what it answered to the reset, and its
/// id where one is known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CardInfo {
    /// The PC/SC reader name.
    pub reader: String,
    /// The answer to reset; JSON and reports show it as spaced hex.
    #[serde(serialize_with = "spaced_hex")]
    pub atr: Vec<u8>,
    /// The card id as sent to CM: lowercase, hyphenated, no braces (null:
    /// the card has none and none was given).
    pub card_id: Option<String>,
}

impl CardInfo {
    pub fn new(reader: &str, atr: &[u8]) -> CardInfo {
        CardInfo {
            reader: reader.to_string(),
            atr: atr.to_vec(),
            card_id: None,
        }
    }

    /// The ATR as reports show it: `3B 02 14 50`.
    pub fn atr_hex(&self) -> String {
        crate::apdu::spaced_hex(&self.atr)
    }
}

fn spaced_hex<S: Serializer>(atr: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::apdu::spaced_hex(atr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_atr_is_spaced_hex_in_json() {
        let mut card = CardInfo::new("Virtual PCD 00 00", &[0x3B, 0x02, 0x14, 0x50]);
        card.card_id = Some("00112233-4455-6677-8899-aabbccddeeff".into());
        assert_eq!(card.atr_hex(), "3B 02 14 50");
        assert_eq!(
            serde_json::to_string(&card).unwrap(),
            r#"{"reader":"Virtual PCD 00 00","atr":"3B 02 14 50","card_id":"00112233-4455-6677-8899-aabbccddeeff"}"#
        );
    }
}
