//! The shapes a leaked secret could take in output.
#![allow(dead_code)]

use base64::Engine;

/// `bytes` as hex (both cases, plain, spaced, colon-separated), base64 and,
/// when printable, as text.
pub fn forms(bytes: &[u8]) -> Vec<String> {
    let lower = hex::encode(bytes);
    let upper = hex::encode_upper(bytes);
    let spaced = |s: &str, sep: &str| {
        s.as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_string())
            .collect::<Vec<_>>()
            .join(sep)
    };
    let mut v = vec![
        spaced(&upper, " "),
        spaced(&lower, " "),
        spaced(&upper, ":"),
        spaced(&lower, ":"),
        lower,
        upper,
        base64::engine::general_purpose::STANDARD.encode(bytes),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ];
    if bytes.len() >= 4 && bytes.iter().all(|b| b.is_ascii_graphic()) {
        v.push(String::from_utf8(bytes.to_vec()).unwrap());
    }
    v
}
