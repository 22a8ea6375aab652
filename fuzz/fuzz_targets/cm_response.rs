//! CM answers: the authenticationresponse body (JSON string -> base64 -> exactly the
//! challenge's length), request statuses, correlation ids, GUIDs and the --cm URL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scunblock::cm_client::{self, RequestStatus};
use scunblock::ids::Guid;
use serde_json::Value;

fn check_decode(v: &Value, want: usize) {
    match cm_client::decode_response(v, want) {
        Ok(bytes) => assert_eq!(bytes.len(), want),
        Err(e) => {
            assert_eq!(e.exit_code(), 6, "{e}");
            // Server text is shown sanitized: no control characters reach the terminal.
            assert!(!e.to_string().chars().any(char::is_control), "{e:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let want = [8usize, 16, 0, 1][usize::from(sel & 3)];
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // The body as CM sends it (any JSON) ...
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        check_decode(&v, want);
        let _ = RequestStatus::from_json(&v);
    }
    // ... and the body as a JSON string holding this text.
    check_decode(&Value::String(text.to_string()), want);

    if let Some(id) = cm_client::correlation_id(text) {
        assert!(Guid::parse(&id, "").is_ok(), "{id}");
    }
    if let Ok(g) = Guid::parse(text, "--card-id") {
        // Canonical form: parses back to itself, 36 characters, lower case.
        assert_eq!(g.as_str().len(), 36);
        assert_eq!(Guid::parse(&g.to_string(), "x").expect("round trip"), g);
        assert_eq!(g.as_str(), g.as_str().to_ascii_lowercase());
    }
    if let Ok(base) = cm_client::parse_base_url(text, sel & 0x80 != 0) {
        assert!(matches!(base.scheme(), "https" | "http"));
        assert!(base.query().is_none() && base.password().is_none());
        let url = cm_client::api_url(&base, "requests", &[("challenge", text)]);
        // The query value is percent-encoded: it cannot add parameters.
        assert_eq!(url.query_pairs().count(), 1, "{url}");
    }
});
