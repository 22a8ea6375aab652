//! RFC 7512 PKCS#11 URIs: `pkcs11:token=scunblock;object=admin-key?module-path=/usr/lib/...`.
//!
//! No maintained crate parses them (p11-kit and GnuTLS do it in C), so this
//! is a small parser of its own. It is strict where leniency would be
//! dangerous: an unknown or repeated attribute is refused rather than
//! ignored, because a misspelt `tokn=` silently matching every token could
//! send the challenge to the wrong key. `pin-value` and `pin-source` are
//! refused: a PIN in a URI ends up in argv and shell history.

use crate::error::Error;

/// The attributes of a parsed URI. Values are percent-decoded; `None` means
/// the attribute was absent (it then matches anything).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub model: Option<String>,
    pub slot_id: Option<u64>,
    pub slot_description: Option<String>,
    pub slot_manufacturer: Option<String>,
    pub library_manufacturer: Option<String>,
    pub library_description: Option<String>,
    /// `library-version=M` or `M.N`.
    pub library_version: Option<(u8, u8)>,
    /// The key object's label (`CKA_LABEL`).
    pub object: Option<String>,
    /// The key object's `CKA_ID`, raw bytes.
    pub id: Option<Vec<u8>>,
    /// `type=`: only `secret-key` is accepted (the admin key is a secret key).
    pub object_type: Option<String>,
    /// `module-path=` query attribute.
    pub module_path: Option<String>,
}

impl Pkcs11Uri {
    /// Parse `text`. Every problem is a usage error (exit 2): the URI comes
    /// from the command line and is checked before any card is touched.
    pub fn parse(text: &str) -> Result<Pkcs11Uri, Error> {
        let bad = |why: String| Error::usage(format!("--pkcs11-key: {why}"));
        let rest = match text.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("pkcs11") => rest,
            _ => {
                return Err(bad("not a PKCS#11 URI: it must start with `pkcs11:` \
                     (for example pkcs11:token=scunblock;object=admin-key)"
                    .into()))
            }
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        // Every attribute once, in the path or the query.
        let mut seen: Vec<String> = Vec::new();
        let mut split_new = |attr: &str| -> Result<(String, Vec<u8>), Error> {
            let (name, value) = split_attr(attr).map_err(&bad)?;
            if seen.contains(&name) {
                return Err(bad(format!("the attribute `{name}` appears twice")));
            }
            seen.push(name.clone());
            Ok((name, value))
        };
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = split_new(attr)?;
            uri.set_path_attr(&name, value).map_err(&bad)?;
        }
        for attr in query.unwrap_or("").split('&').filter(|a| !a.is_empty()) {
            let (name, value) = split_new(attr)?;
            uri.set_query_attr(&name, value).map_err(&bad)?;
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(bad(
                "name the key object with `object=LABEL` or `id=%01` (or both)".into(),
            ));
        }
        Ok(uri)
    }

    fn set_path_attr(&mut self, name: &str, value: Vec<u8>) -> Result<(), String> {
        let text = |v: Vec<u8>| {
            String::from_utf8(v).map_err(|_| format!("the value of `{name}` is not UTF-8"))
        };
        match name {
            "token" => self.token = Some(text(value)?),
            "manufacturer" => self.manufacturer = Some(text(value)?),
            "serial" => self.serial = Some(text(value)?),
            "model" => self.model = Some(text(value)?),
            "slot-description" => self.slot_description = Some(text(value)?),
            "slot-manufacturer" => self.slot_manufacturer = Some(text(value)?),
            "library-manufacturer" => self.library_manufacturer = Some(text(value)?),
            "library-description" => self.library_description = Some(text(value)?),
            "object" => self.object = Some(text(value)?),
            "id" => {
                if value.is_empty() {
                    return Err("`id=` is empty".into());
                }
                self.id = Some(value)
            }
            "slot-id" => {
                let t = text(value)?;
                let n = t
                    .parse::<u64>()
                    .ok()
                    .filter(|_| t.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| format!("slot-id `{t}` is not a decimal number"))?;
                self.slot_id = Some(n)
            }
            "library-version" => {
                let t = text(value)?;
                self.library_version = Some(
                    parse_version(&t)
                        .ok_or_else(|| format!("library-version `{t}` is not M or M.N"))?,
                )
            }
            "type" => {
                let t = text(value)?;
                if t != "secret-key" {
                    return Err(format!(
                        "type={t}: the admin key is a secret key; use type=secret-key or leave type out"
                    ));
                }
                self.object_type = Some(t)
            }
            other => {
                return Err(format!(
                    "unknown attribute `{other}` (known: token, manufacturer, serial, model, \
                     slot-id, slot-description, slot-manufacturer, library-manufacturer, \
                     library-description, library-version, object, id, type)"
                ))
            }
        }
        Ok(())
    }

    fn set_query_attr(&mut self, name: &str, value: Vec<u8>) -> Result<(), String> {
        match name {
            "pin-value" | "pin-source" => Err(format!(
                "`{name}` is refused: a PIN in a URI ends up in the process list and shell \
                 history; give the token PIN with --pkcs11-pin-env VAR or --pkcs11-pin-file PATH"
            )),
            "module-path" => {
                let t = String::from_utf8(value)
                    .map_err(|_| "the value of `module-path` is not UTF-8".to_string())?;
                if t.is_empty() {
                    return Err("`module-path=` is empty".into());
                }
                self.module_path = Some(t);
                Ok(())
            }
            "module-name" => Err(
                "`module-name` is not supported: name the module file with module-path= or \
                 --pkcs11-module PATH"
                    .into(),
            ),
            other => Err(format!(
                "unknown query attribute `{other}` (known: module-path)"
            )),
        }
    }

    /// The URI names the object through `{card_id}`: one key per card.
    pub fn per_card(&self) -> bool {
        self.object.as_deref().is_some_and(|o| o.contains(CARD_ID))
    }

    /// The object label for a card: `{card_id}` replaced by its id.
    pub fn object_for(&self, card_id: Option<&str>) -> Result<Option<String>, Error> {
        match (&self.object, card_id) {
            (Some(o), _) if !o.contains(CARD_ID) => Ok(Some(o.clone())),
            (Some(o), Some(id)) => Ok(Some(o.replace(CARD_ID, id))),
            (Some(_), None) => Err(Error::usage(
                "the key's label uses {card_id} but the card id is not known: give --card-id \
                 (watch: --card-id-command); nothing was sent to the card",
            )),
            (None, _) => Ok(None),
        }
    }

    /// How the key is named, for messages (never secret).
    pub fn describe_object(&self, label: Option<&str>) -> String {
        let mut parts = Vec::new();
        if let Some(l) = label.or(self.object.as_deref()) {
            parts.push(format!("label \"{l}\""));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id {}", hex::encode(id)));
        }
        parts.join(", ")
    }
}

/// The placeholder for the card id in an object label.
pub const CARD_ID: &str = "{card_id}";

fn split_attr(attr: &str) -> Result<(String, Vec<u8>), String> {
    let (name, value) = attr
        .split_once('=')
        .ok_or_else(|| format!("`{attr}` is not NAME=VALUE"))?;
    let name = String::from_utf8(percent_decode(name)?)
        .map_err(|_| "an attribute name is not UTF-8".to_string())?;
    if name.is_empty() {
        return Err(format!("`{attr}` has no attribute name"));
    }
    Ok((name, percent_decode(value)?))
}

/// Decode `%XX` escapes; every other character stands for itself.
pub fn percent_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|_| b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
                .ok_or_else(|| {
                    format!("bad percent escape in `{s}`: % must be followed by two hex digits")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn parse_version(t: &str) -> Option<(u8, u8)> {
    let num = |s: &str| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse::<u8>().ok()
        } else {
            None
        }
    };
    match t.split_once('.') {
        Some((m, n)) => Some((num(m)?, num(n)?)),
        None => Some((num(t)?, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_examples() {
        let u = Pkcs11Uri::parse("pkcs11:token=scunblock;object=admin-key").unwrap();
        assert_eq!(u.token.as_deref(), Some("scunblock"));
        assert_eq!(u.object.as_deref(), Some("admin-key"));
        assert_eq!(u.id, None);
        let u = Pkcs11Uri::parse("pkcs11:token=scunblock;id=%01").unwrap();
        assert_eq!(u.id, Some(vec![1]));
        assert_eq!(u.object, None);
        let u = Pkcs11Uri::parse(
            "pkcs11:serial=1234abcd;manufacturer=SoftHSM%20project;slot-id=7;model=SoftHSM%20v2;\
             object=k;type=secret-key?module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .unwrap();
        assert_eq!(u.serial.as_deref(), Some("1234abcd"));
        assert_eq!(u.manufacturer.as_deref(), Some("SoftHSM project"));
        assert_eq!(u.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(u.slot_id, Some(7));
        assert_eq!(
            u.module_path.as_deref(),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
    }

    #[test]
    fn rfc_7512_examples() {
        // RFC 7512 section 3.3 (those naming an object).
        let u = Pkcs11Uri::parse(
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;\
             model=1.0;object=my-certificate;type=secret-key",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(u.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        let u = Pkcs11Uri::parse("pkcs11:object=my-sign-key;id=%69%95%3E%5C%F4%BD%EC%91").unwrap();
        assert_eq!(
            u.id,
            Some(vec![0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91])
        );
        let u = Pkcs11Uri::parse(
            "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft;\
             library-version=1.23;object=a%2Fb%3Bc",
        )
        .unwrap();
        assert_eq!(u.library_version, Some((1, 23)));
        assert_eq!(u.object.as_deref(), Some("a/b;c"));
        let u = Pkcs11Uri::parse("PKCS11:object=x;library-version=7").unwrap();
        assert_eq!(u.library_version, Some((7, 0)));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for (uri, says) in [
            ("token=scunblock;object=k", "pkcs11:"),
            ("pkcs11:token=scunblock", "object="),
            ("pkcs11:", "object="),
            ("pkcs11:object=k?pin-value=1234", "pin-value"),
            ("pkcs11:object=k?pin-source=file:/p", "pin-source"),
            ("pkcs11:object=k;tokn=x", "tokn"),
            ("pkcs11:object=k;object=j", "twice"),
            ("pkcs11:object=k;type=private", "secret-key"),
            ("pkcs11:object=k;slot-id=-1", "slot-id"),
            ("pkcs11:object=k;slot-id=0x1", "slot-id"),
            ("pkcs11:object=k;library-version=1.x", "library-version"),
            ("pkcs11:object=%zz", "percent"),
            ("pkcs11:object=%1", "percent"),
            ("pkcs11:object=%+1", "percent"),
            ("pkcs11:object=%FF", "UTF-8"),
            ("pkcs11:object", "NAME=VALUE"),
            ("pkcs11:=x;object=k", "no attribute name"),
            ("pkcs11:id=", "empty"),
            ("pkcs11:object=k?module-name=softhsm2", "module-path"),
            ("pkcs11:object=k?module-path=", "empty"),
            ("pkcs11:object=k?x-vendor=1", "unknown"),
        ] {
            let e = Pkcs11Uri::parse(uri).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{uri}");
            assert!(e.to_string().contains(says), "{uri}: {e}");
        }
    }

    #[test]
    fn card_id_goes_into_the_label() {
        let u = Pkcs11Uri::parse("pkcs11:token=t;object=admin-{card_id}").unwrap();
        assert!(u.per_card());
        let id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        assert_eq!(
            u.object_for(Some(id)).unwrap().as_deref(),
            Some("admin-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        );
        assert_eq!(u.object_for(None).unwrap_err().exit_code(), 2);
        let fixed = Pkcs11Uri::parse("pkcs11:object=admin").unwrap();
        assert!(!fixed.per_card());
        assert_eq!(fixed.object_for(None).unwrap().as_deref(), Some("admin"));
        // Percent-encoded braces work too.
        let enc = Pkcs11Uri::parse("pkcs11:object=a-%7Bcard_id%7D").unwrap();
        assert!(enc.per_card());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2fc").unwrap(), b"a b/c");
        assert_eq!(percent_decode("%00%ff").unwrap(), vec![0, 0xff]);
        assert!(percent_decode("%").is_err());
        assert!(percent_decode("%g0").is_err());
        assert_eq!(percent_decode("").unwrap(), b"");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = Pkcs11Uri::parse(&s);
            let _ = Pkcs11Uri::parse(&format!("pkcs11:{s}"));
        }

        #[test]
        fn any_label_round_trips(label in proptest::collection::vec(proptest::num::u8::ANY, 1..40)) {
            let s = String::from_utf8_lossy(&label).into_owned();
            let enc: String = s.bytes().map(|b| format!("%{b:02x}")).collect();
            let u = Pkcs11Uri::parse(&format!("pkcs11:object={enc}")).unwrap();
            proptest::prop_assert_eq!(u.object.as_deref(), Some(s.as_str()));
        }
    }
}
