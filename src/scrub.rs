//! The secret scrubber: every secret the process holds, in every form it could be echoed
//! back in, blanked to `REDACTED` in every text that leaves the process.
//!
//! A CM error page (an ASP.NET detailed error, a WAF, a debugging proxy) can echo the
//! request headers, bearer token included; a hostile server can echo anything it was sent.
//! Types that hold secrets never print them, but outside text can carry them back in. So
//! the secrets are registered here when they are read, and the output paths (the report,
//! `-v`, warnings, the trace, watch events) pass every line through [`text`] or
//! [`value`] before it is written.
//!
//! Forms: the bearer token and the token file's content as text; the admin key as raw
//! bytes, hex (upper, lower, spaced, colon-separated) and base64 (standard and URL-safe);
//! the PIN, PUK and PKCS#11 PIN as whole tokens only (not inside a longer run of letters
//! and digits), so that a 4-digit PIN does not blank unrelated numbers.

use std::sync::Mutex;

use base64::Engine;
use zeroize::Zeroizing;

/// What a scrubbed secret shows as.
pub const REDACTED: &str = "REDACTED";

/// Substrings shorter than this are matched as whole tokens only: blanking every "00" of
/// a short secret would blank unrelated text.
const MIN_SUBSTRING: usize = 6;

struct Entry {
    text: Zeroizing<String>,
    whole_token: bool,
}

static SECRETS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn add(text: &str, whole_token: bool) {
    let text = text.trim();
    if text.is_empty() || text == REDACTED {
        return;
    }
    let whole_token = whole_token || text.chars().count() < MIN_SUBSTRING;
    let mut all = SECRETS.lock().unwrap_or_else(|p| p.into_inner());
    if all
        .iter()
        .any(|e| *e.text == text && e.whole_token == whole_token)
    {
        return;
    }
    // Sized once (String::from copies into an exact allocation), zeroized on drop.
    let mut owned = Zeroizing::new(String::with_capacity(text.len()));
    owned.push_str(text);
    all.push(Entry {
        text: owned,
        whole_token,
    });
    // Longest first: a secret that contains another is blanked whole.
    all.sort_by_key(|e| std::cmp::Reverse(e.text.len()));
}

/// A secret text (bearer token, a token file's content), blanked wherever it appears.
pub fn register_text(secret: &str) {
    add(secret, false);
}

/// Secret bytes as read from a file or variable: the text itself, if it is text.
pub fn register_raw(secret: &[u8]) {
    if let Ok(t) = std::str::from_utf8(secret) {
        add(t, false);
    }
}

/// Key bytes (the admin key): raw, hex in both cases, spaced and colon-separated, base64.
/// Every form is built in a buffer sized once and zeroized when dropped: no unzeroized
/// copy of the key's digits is freed on the way (tests/secrets.rs scans freed memory).
pub fn register_key(key: &[u8]) {
    use std::fmt::Write as _;
    if key.is_empty() {
        return;
    }
    register_raw(key);
    for upper in [true, false] {
        for sep in ["", " ", ":"] {
            let mut form = Zeroizing::new(String::with_capacity(key.len() * 3));
            for (i, b) in key.iter().enumerate() {
                if i > 0 {
                    form.push_str(sep);
                }
                let _ = if upper {
                    write!(form, "{b:02X}")
                } else {
                    write!(form, "{b:02x}")
                };
            }
            add(&form, false);
        }
    }
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        let mut form = Zeroizing::new(vec![0u8; key.len().div_ceil(3) * 4]);
        if let Ok(n) = engine.encode_slice(key, &mut form[..]) {
            if let Ok(text) = std::str::from_utf8(&form[..n]) {
                add(text, false);
            }
        }
    }
}

/// A PIN, PUK or PKCS#11 PIN: blanked as a whole token only.
pub fn register_pin(pin: &[u8]) {
    if let Ok(t) = std::str::from_utf8(pin) {
        add(t, true);
    }
}

/// Drop a PIN registered with [`register_pin`] (watch: once its card's job has ended).
pub fn forget_pin(pin: &[u8]) {
    if let Ok(t) = std::str::from_utf8(pin) {
        let t = t.trim();
        let mut all = SECRETS.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|e| !(e.whole_token && *e.text == t));
    }
}

/// `s` with every registered secret blanked.
pub fn text(s: &str) -> String {
    let all = SECRETS.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = s.to_string();
    for e in all.iter() {
        if out.contains(e.text.as_str()) {
            out = replace(&out, &e.text, e.whole_token);
        }
    }
    out
}

/// Every string in a JSON value scrubbed (keys included), before it is serialized: a
/// secret with `"` or `\` in it would not match in the serialized text.
pub fn value(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            let t = text(s);
            if t != *s {
                *s = t;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(value),
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let clean = text(&k);
                if let Some(mut inner) = m.remove(&k) {
                    value(&mut inner);
                    m.insert(clean, inner);
                }
            }
        }
        _ => {}
    }
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(char::is_alphanumeric)
}

fn replace(s: &str, secret: &str, whole_token: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(secret) {
        let (before, after) = (&rest[..at], &rest[at + secret.len()..]);
        let bounded = !whole_token
            || (!is_word(before.chars().next_back()) && !is_word(after.chars().next()));
        out.push_str(before);
        if bounded {
            out.push_str(REDACTED);
            rest = after;
        } else {
            // Not a whole token here: keep its first character and look further on.
            let first = secret.chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[at..at + first]);
            rest = &rest[at + first..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // One registry per process: each test uses secrets of its own.
    #[test]
    fn blanks_every_form_of_a_key() {
        let key = [0x5a, 0x17, 0xc3, 0x09, 0xee, 0x41, 0x88, 0x2d];
        register_key(&key);
        for form in [
            "5A17C309EE41882D",
            "5a17c309ee41882d",
            "5A 17 C3 09 EE 41 88 2D",
            "5a:17:c3:09:ee:41:88:2d",
            "WhfDCe5BiC0=",
            "WhfDCe5BiC0",
        ] {
            assert_eq!(text(&format!("key <{form}>!")), "key <REDACTED>!", "{form}");
        }
    }

    #[test]
    fn blanks_tokens_anywhere_and_pins_as_whole_tokens() {
        register_text("eyJ-token-7731");
        assert_eq!(
            text("Authorization: Bearer eyJ-token-7731xyz"),
            "Authorization: Bearer REDACTEDxyz"
        );
        register_pin(b"4821");
        assert_eq!(text("pin 4821."), "pin REDACTED.");
        assert_eq!(
            text("SW 94821 and 48210 and x4821"),
            "SW 94821 and 48210 and x4821"
        );
        assert_eq!(text("4821"), "REDACTED");
        let mut v = serde_json::json!({"m": ["a 4821 b", {"k": "eyJ-token-7731"}], "n": 4821});
        value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"m": ["a REDACTED b", {"k": "REDACTED"}], "n": 4821})
        );
    }
}
