//! The CM docs' golden vector (docs/protocol.md, "The golden vector, worked through") on a
//! scripted card: no reader, no pcscd. The two seams of the flow are in plain sight: the card
//! (`IsoApplet` over a `ScriptedTransport` that expects each APDU byte for byte) and the
//! responder (`LocalKey`, the all-zero 3DES admin key). Exits 1 if the vector does not match.
//!
//!     cargo run --example scripted_unblock

use scunblock::admin_key::AdminKey;
use scunblock::card::{IsoApplet, Tries};
use scunblock::flow::{run, Identify, Mode, Options};
use scunblock::profile::CardProfile;
use scunblock::responder::LocalKey;
use scunblock::secret::Pin;
use scunblock::testing::{ScriptedSession, ScriptedTransport};
use scunblock::transport::Trace;

const CHALLENGE: &str = "D61143F9CCFFD2CA"; // from the card
const RESPONSE: &str = "17466E766E303CB6"; // E(all-zero 3DES key, CHALLENGE): the CM docs' answer

fn main() -> Result<(), String> {
    // The card: admin tries, PIN tries (blocked), the challenge, then it wants RESPONSE.
    let card = ScriptedTransport::new()
        .expect("00820000", "63C5")
        .expect("00200080", "6983")
        .expect("0084000008", &format!("{CHALLENGE}9000"))
        .expect(&format!("0082000008{RESPONSE}"), "9000")
        .expect("002C0280083234363831333537", "9000") // RESET RETRY COUNTER, PIN 24681357
        .expect("00200080", "63C3");
    let mut session = ScriptedSession {
        transport: card,
        atr: vec![0x3B, 0x02, 0x14, 0x50],
    };
    let applet = IsoApplet::new(CardProfile::iso());
    let mut responder = LocalKey::new(AdminKey::from_bytes(&[0; 24]).map_err(|e| e.to_string())?);
    let new_pin = Pin::new(zeroize::Zeroizing::new(b"24681357".to_vec()));
    let opts = Options {
        mode: Mode::Unblock { new_pin: &new_pin },
        force_last_try: false,
        allow_unknown_tries: false,
        trace: Trace::off(),
        card_id: None,
    };
    let out = run(
        &mut session,
        Identify::Known(&applet),
        &mut responder,
        &opts,
    )
    .map_err(|f| f.error.to_string())?;
    if !session.transport.done() || !out.pin_reset || out.pin_tries_after != Tries::Left(3) {
        return Err(format!(
            "the card's script was not played to the end: {out:?}"
        ));
    }
    println!("golden vector: challenge {CHALLENGE} -> response {RESPONSE}; PIN reset, 3 tries");
    Ok(())
}
