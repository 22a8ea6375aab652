//! Card profile TOML (`--profile FILE`): whatever loads is valid, and round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scunblock::profile::{CardProfile, PinPadding};
use scunblock::secret::Pin;
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = CardProfile::from_toml(text) else {
        return;
    };
    assert!(!p.name.is_empty());
    assert!(p.challenge_len > 0 && p.challenge_len % 8 == 0, "{p:?}");
    assert!(
        p.pin_min_len >= 1 && p.pin_min_len <= p.pin_max_len,
        "{p:?}"
    );
    assert!(p.cla != 0xFF);
    if p.select_aid.is_some() {
        let aid = p.select_aid_bytes().expect("a loaded AID decodes");
        assert!((1..=16).contains(&aid.len()), "{p:?}");
    }
    // What loads, saved and loaded again, is the same profile.
    let saved = toml::to_string(&p).expect("a profile serializes");
    assert_eq!(
        CardProfile::from_toml(&saved).expect("a saved profile loads"),
        p,
        "{saved}"
    );
    // The longest PIN the policy accepts fits a short APDU, padded as the profile says.
    let longest = Pin::new(Zeroizing::new(vec![b'7'; p.pin_max_len]));
    if p.check_pin(&longest).is_ok() {
        let block = p.pin_block(&longest);
        assert!(block.len() <= 255);
        if p.pin_padding == PinPadding::Ff8 {
            assert_eq!(block.len(), 8);
        }
    }
    let too_long = Pin::new(Zeroizing::new(vec![b'7'; p.pin_max_len + 1]));
    assert_eq!(p.check_pin(&too_long).map_err(|e| e.exit_code()), Err(2));
});
