//! Small helpers: GUIDs, id normalization, dates.

use std::time::SystemTime;

/// A random (version 4) GUID in lowercase 8-4-4-4-12 form.
pub fn new_guid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// How ids are compared: trimmed, without surrounding braces, lowercase. CM shows the card
/// id as "{guid}"; clients may send it with or without braces, in any case.
pub fn normalize_id(s: &str) -> String {
    let t = s.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(t);
    t.to_ascii_lowercase()
}

/// Whether `s` (already normalized or not) is a GUID in 8-4-4-4-12 form, as .NET's Guid
/// parser would accept it in its common forms (with or without braces).
pub fn is_guid(s: &str) -> bool {
    let n = normalize_id(s);
    let b = n.as_bytes();
    if b.len() == 32 {
        return b.iter().all(u8::is_ascii_hexdigit);
    }
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// RFC 9110 IMF-fixdate, for the Date header.
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// ISO 8601 UTC with milliseconds, as .NET serializes DateTime.
pub fn iso8601(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_millis(784_111_777_123);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(iso8601(t), "1994-11-06T08:49:37.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn guids() {
        let g = new_guid();
        assert!(is_guid(&g), "{g}");
        assert_eq!(&g[14..15], "4");
        assert!(is_guid("{BC88F13F-83BA-4037-8262-46EBA1291C6E}"));
        assert!(!is_guid("bc88f13f-83ba-4037-8262-46eba1291c6"));
        assert!(!is_guid("not-a-guid"));
        assert_eq!(
            normalize_id(" {BC88F13F-83BA-4037-8262-46EBA1291C6E} "),
            "bc88f13f-83ba-4037-8262-46eba1291c6e"
        );
    }
}
