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
