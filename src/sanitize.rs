//! The one terminal sanitizer, and the JSON escaping that goes with it.
//!
//! Outside strings (reader names, which a USB device partly chooses itself; names from
//! smartcard_list.txt; profile names; card data; server text) may carry escape sequences.
//! Raw on a terminal or in the journal they can move the cursor, retitle the window, hide
//! text or reorder it. Every text line the tool writes goes through [`text`] (or
//! [`line`] for one-line records); every JSON document through [`json`].
//!
//! Unsafe code points: C0 controls (U+0000..U+001F), DEL (U+007F), C1 controls
//! (U+0080..U+009F), the bidirectional marks, embeddings, overrides and isolates (U+061C,
//! U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) and the line/paragraph separators U+2028,
//! U+2029. C1 is checked on decoded code points: byte 0x9B alone is also a UTF-8
//! continuation byte.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal or the journal raw.
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// `s` for one line of text: every unsafe code point escaped, line ends included
/// (`\x1b`, `\n`, `\u{9b}`, `\u{202e}`).
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// `s` for text output of one or more lines: like [`line`], but `\n` stays a line end
/// (the tool's own multi-line messages). Every line then starts with our own text.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_newline: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newline && c == '\n');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// A serialized JSON document with every unsafe code point inside its strings written as
/// `\uXXXX`. serde_json already escapes C0 inside strings but writes DEL, C1 and the bidi
/// characters raw. Outside strings a JSON text holds only ASCII punctuation, digits,
/// letters and whitespace, so whitespace (C0) is left alone and everything else unsafe can
/// only be string content: the parsed document keeps the exact string.
pub fn json(doc: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && (c as u32) >= 0x7f;
    if !doc.chars().any(unsafe_char) {
        return Cow::Borrowed(doc);
    }
    let mut out = String::with_capacity(doc.len() + 16);
    for c in doc.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_c1_and_bidi() {
        let s = "Evil\u{1b}]0;pwned\u{7}\u{9b}2J\u{202e}cba\u{7f} 00 00";
        let l = line(s);
        assert_eq!(l, "Evil\\x1b]0;pwned\\x07\\u{9b}2J\\u{202e}cba\\x7f 00 00");
        assert!(!l.chars().any(is_unsafe));
        assert_eq!(line("a\nb"), "a\\nb");
        assert_eq!(text("a\nb\u{1b}"), "a\nb\\x1b");
        assert!(matches!(line("Virtual PCD 00 00"), Cow::Borrowed(_)));
        assert_eq!(line("Ä ü € ✓"), "Ä ü € ✓");
    }

    #[test]
    fn json_keeps_the_exact_string() {
        let name = "R\u{1b}[31m\u{7}\u{9b}\u{202e}\u{2066}\u{7f}x";
        let doc = serde_json::to_string_pretty(&serde_json::json!({ "name": name })).unwrap();
        let safe = json(&doc);
        assert!(!safe.chars().any(|c| is_unsafe(c) && c != '\n'), "{safe}");
        assert!(
            safe.contains("\\u009b") && safe.contains("\\u202e"),
            "{safe}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["name"], name);
    }
}
