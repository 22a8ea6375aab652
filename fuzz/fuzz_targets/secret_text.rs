//! Secret text parsing: the admin key (file or variable content), the admin response a
//! person types or a server sends (hex or base64), and the new PIN's policy. Errors are
//! usage/responder errors that never echo the secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scunblock::admin_key::{AdminKey, Challenge, KeyAlg};
use scunblock::profile::CardProfile;
use scunblock::responder::parse_response_text;
use scunblock::secret::{self, Pin};
use zeroize::Zeroizing;

/// `input` looks like key or response material (12+ characters of the base64/hex
/// alphabet, with a digit): no error message may contain it.
fn secret_like(input: &str) -> bool {
    input.len() >= 12
        && input.chars().any(|c| c.is_ascii_digit())
        && input
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=')
}

fuzz_target!(|data: &[u8]| {
    let text = std::str::from_utf8(data).ok();

    // The admin key.
    match AdminKey::parse(data) {
        Ok(key) => {
            // 3DES (16 or 24 bytes) or AES (16, 24 or 32): the card says which.
            assert!([16, 24, 32].contains(&key.len()));
            assert!(format!("{key:?}").contains("REDACTED"));
            let alg = if key.len() == 32 {
                KeyAlg::Aes256
            } else {
                KeyAlg::Tdes
            };
            let c = key
                .respond(alg, &Challenge::new(vec![0xA5; alg.block_len()]))
                .expect("one block");
            assert_eq!(c.len(), alg.block_len());
            assert_eq!(key.check_value(alg).len(), 6);
            // A key that does not fit the card's algorithm is refused, never used.
            if key.len() == 32 {
                assert_eq!(
                    key.check_alg(KeyAlg::Tdes).map_err(|e| e.exit_code()),
                    Err(2)
                );
            }
        }
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "{e}");
            if let Some(t) = text.map(str::trim) {
                assert!(!(secret_like(t) && e.to_string().contains(t)), "{e}");
            }
        }
    }

    // The admin response as typed (--manual) or sent.
    if let Some(t) = text {
        for want in [8, 16] {
            match parse_response_text(t, want) {
                Ok(bytes) => assert_eq!(bytes.len(), want),
                Err(e) => {
                    assert_eq!(e.exit_code(), 6, "{e}");
                    assert!(!(secret_like(t.trim()) && e.to_string().contains(t.trim())));
                }
            }
        }
    }

    // The new PIN against the built-in policy and a digits-only, FF-padded one.
    let stripped = secret::strip_line_end(data);
    assert!(data.starts_with(stripped));
    let pin = Pin::new(Zeroizing::new(stripped.to_vec()));
    assert_eq!(format!("{pin:?}"), "Pin(REDACTED)");
    let iso = CardProfile::iso();
    let digits = CardProfile::from_toml("pin_charset = \"digits\"\npin_padding = \"ff8\"")
        .expect("a valid profile");
    for p in [&iso, &digits] {
        match p.check_pin(&pin) {
            Ok(()) => {
                assert!((p.pin_min_len..=p.pin_max_len).contains(&pin.len()));
                let block = p.pin_block(&pin);
                assert!(block.starts_with(pin.as_bytes()) && block.len() <= 255);
            }
            Err(e) => {
                assert_eq!(e.exit_code(), 2);
                let shown = String::from_utf8_lossy(pin.as_bytes()).into_owned();
                let quiet = shown.len() >= 6
                    && !shown.chars().any(char::is_whitespace)
                    && shown.chars().any(|c| c.is_ascii_digit());
                assert!(!(quiet && e.to_string().contains(&shown)), "{e}");
            }
        }
    }
});
