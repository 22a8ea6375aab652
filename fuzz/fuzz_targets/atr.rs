//! The ATR decoder: any bytes, strict and lenient, and the text forms.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scunblock::atr::{self, Atr};

fuzz_target!(|data: &[u8]| {
    let strict = Atr::parse(data);
    let (lenient, problems) = Atr::parse_lenient(data);
    // `parse` succeeds exactly when the lenient decode finds no problem.
    assert_eq!(strict.is_ok(), problems.is_empty(), "{problems:?}");
    for p in &problems {
        let _ = p.to_string();
    }
    if let Some(a) = &lenient {
        // What `info` shows: every line, the JSON document, the hex form.
        let _ = a.describe();
        let _ = serde_json::to_string(a).expect("an ATR serializes");
        let _ = (
            a.protocols(),
            a.tck_status(),
            a.historical_info(),
            a.is_truncated(),
        );
        let hex = a.hex();
        assert_eq!(
            atr::bytes_from_hex(&hex).expect("our own hex parses"),
            a.bytes()
        );
    }
    if let Ok(a) = &strict {
        assert_eq!(a.bytes(), data);
        let again: Atr = a.hex().parse().expect("a valid ATR's hex is a valid ATR");
        assert_eq!(again.bytes(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = atr::bytes_from_hex(text);
        let _ = text.parse::<Atr>();
    }
});
