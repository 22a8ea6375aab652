//! RFC 7512 PKCS#11 URIs (`--pkcs11-key`): any text parses or is a usage error (exit 2),
//! never a panic; a parsed URI always names the key object, and `{card_id}` substitution
//! keeps every other character of the label.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scunblock::pkcs11::Pkcs11Uri;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Pkcs11Uri::parse(text) {
        Ok(u) => {
            assert!(u.object.is_some() || u.id.is_some());
            let id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
            match u.object_for(Some(id)) {
                Ok(Some(label)) => assert!(!label.contains("{card_id}")),
                Ok(None) => assert!(u.object.is_none()),
                Err(e) => panic!("a known card id was refused: {e}"),
            }
            if u.per_card() {
                assert_eq!(u.object_for(None).unwrap_err().exit_code(), 2);
            }
        }
        Err(e) => assert_eq!(e.exit_code(), 2, "{e}"),
    }
});
