//! Identifiers from the user and from CM: GUIDs, checked before use so no
//! path or query can be injected through them.

use std::fmt;

use crate::error::Error;

/// A GUID, kept in its canonical lower-case 8-4-4-4-12 form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Guid(String);

impl Guid {
    /// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, with or without braces.
    /// `what` names the option in the error message.
    pub fn parse(text: &str, what: &str) -> Result<Guid, Error> {
        let t = text.trim();
        let inner = match (t.strip_prefix('{'), t.strip_suffix('}')) {
            (Some(_), Some(_)) if t.len() >= 2 => &t[1..t.len() - 1],
            (None, None) => t,
            _ => return Err(bad(text, what)),
        };
        let groups: Vec<&str> = inner.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        if groups.len() != 5
            || groups
                .iter()
                .zip(lens)
                .any(|(g, n)| g.len() != n || !g.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(bad(text, what));
        }
        Ok(Guid(inner.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A card's own 16-byte id (the minidriver `cardid`; GIDS `cardid`, PIV
/// CHUID GUID), as the card holds it.
///
/// Windows and CM treat the 16 bytes as a GUID the way .NET's
/// `new Guid(byte[16])` does: the first three fields little-endian, so bytes
/// `00112233445566778899AABBCCDDEEFF` are `33221100-5544-7766-8899-aabbccddeeff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CardId(pub [u8; 16]);

impl CardId {
    pub fn from_slice(bytes: &[u8]) -> Option<CardId> {
        bytes.try_into().ok().map(CardId)
    }

    /// The GUID as CM takes it (.NET byte order).
    pub fn guid(&self) -> Guid {
        let b = &self.0;
        let swapped = [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ];
        Guid::from_bytes_in_order(&swapped)
    }

    /// The 16 bytes read as a GUID in plain order (the override for a site
    /// where the .NET rule turns out wrong).
    pub fn guid_plain(&self) -> Guid {
        Guid::from_bytes_in_order(&self.0)
    }

    /// The raw bytes, upper-case hex.
    pub fn hex(&self) -> String {
        hex::encode_upper(self.0)
    }

    /// Which GUID form a given id is of this card: the .NET form, the plain
    /// byte order, or none (another card).
    pub fn matches(&self, given: &Guid) -> bool {
        *given == self.guid() || *given == self.guid_plain()
    }
}

impl fmt::Debug for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardId({})", self.hex())
    }
}

impl Guid {
    /// The canonical text of 16 bytes taken in order.
    fn from_bytes_in_order(b: &[u8; 16]) -> Guid {
        let h = hex::encode(b);
        Guid(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        ))
    }
}

fn bad(text: &str, what: &str) -> Error {
    let shown: String = text.chars().take(60).filter(|c| !c.is_control()).collect();
    Error::usage(format!(
        "{what} {shown:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, braces optional)"
    ))
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_guids_with_or_without_braces() {
        let g = Guid::parse("{BC88F13F-83BA-4037-8262-46EBA1291C6E}", "--card-id").unwrap();
        assert_eq!(g.as_str(), "bc88f13f-83ba-4037-8262-46eba1291c6e");
        assert_eq!(
            Guid::parse("bc88f13f-83ba-4037-8262-46eba1291c6e", "x").unwrap(),
            g
        );
    }

    #[test]
    fn card_ids_convert_as_dotnet_does() {
        let id =
            CardId::from_slice(&hex::decode("00112233445566778899AABBCCDDEEFF").unwrap()).unwrap();
        assert_eq!(id.guid().as_str(), "33221100-5544-7766-8899-aabbccddeeff");
        assert_eq!(
            id.guid_plain().as_str(),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert_eq!(id.hex(), "00112233445566778899AABBCCDDEEFF");
        for given in [
            "{33221100-5544-7766-8899-AABBCCDDEEFF}",
            "00112233-4455-6677-8899-aabbccddeeff",
        ] {
            assert!(id.matches(&Guid::parse(given, "x").unwrap()), "{given}");
        }
        assert!(!id.matches(&Guid::parse("33221100-5544-7766-8899-aabbccddeef0", "x").unwrap()));
        assert!(CardId::from_slice(&[0; 15]).is_none());
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "{}",
            "{bc88f13f-83ba-4037-8262-46eba1291c6e",
            "bc88f13f-83ba-4037-8262-46eba1291c6e}",
            "bc88f13f83ba4037826246eba1291c6e",
            "bc88f13f-83ba-4037-8262-46eba1291c6g",
            "../../requests/bc88f13f-83ba-4037-8262",
            "bc88f13f-83ba-4037-8262-46eba1291c6e?x=1",
            "bc88f13f-83ba-4037-8262-46eba1291c6e/..",
        ] {
            let e = Guid::parse(bad, "--card-id").unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }
}
