//! The unblock flow, top to bottom.
//!
//! ATR → (SELECT) → admin tries → PIN tries → GET CHALLENGE → response →
//! EXTERNAL AUTHENTICATE → RESET RETRY COUNTER → PIN tries, all inside ONE
//! card transaction. The admin response is sent at most once per run: no
//! code path retries it.

use serde::Serialize;

use crate::card::{Applet, Tries};
use crate::error::Error;
use crate::log;
use crate::responder::{CardContext, Ending, Responder};
use crate::secret::Pin;
use crate::transport::{Channel, ScriptedTransport, Trace, Transport};

/// A card connection the flow can run transactions on.
pub trait Session {
    fn reader(&self) -> &str;
    fn atr(&self) -> &[u8];
    /// Run `f` inside one card transaction.
    fn transaction<R>(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Transport) -> Result<R, Error>,
    ) -> Result<R, Error>;
}

impl Session for crate::reader::Connection {
    fn reader(&self) -> &str {
        crate::reader::Connection::reader(self)
    }
    fn atr(&self) -> &[u8] {
        crate::reader::Connection::atr(self)
    }
    fn transaction<R>(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Transport) -> Result<R, Error>,
    ) -> Result<R, Error> {
        crate::reader::Connection::transaction(self, f)
    }
}

/// A scripted card for unit and property tests of the flow.
pub struct ScriptedSession {
    pub transport: ScriptedTransport,
    pub atr: Vec<u8>,
}

impl Session for ScriptedSession {
    fn reader(&self) -> &str {
        "Scripted Reader 00 00"
    }
    fn atr(&self) -> &[u8] {
        &self.atr
    }
    fn transaction<R>(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Transport) -> Result<R, Error>,
    ) -> Result<R, Error> {
        f(&mut self.transport)
    }
}

/// What the run should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Admin authentication, then RESET RETRY COUNTER with the new PIN.
    Unblock,
    /// Admin authentication only (`scunblock auth`).
    AuthOnly,
    /// Read the ATR and the counters and check them as an unblock would;
    /// authenticate nothing (`--dry-run`).
    DryRun,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Spend the last admin try.
    pub force_last_try: bool,
    pub trace: Trace,
    /// The card id the user gave (`--card-id`), if any.
    pub card_id: Option<String>,
}

/// What a run found and did. Filled in as the flow goes, so a failed run
/// still reports what it learned (reader, ATR, tries).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    pub reader: String,
    pub atr: String,
    pub profile: String,
    pub responder: String,
    pub card_id: Option<String>,
    pub admin_tries: Tries,
    pub pin_tries_before: Tries,
    pub challenge_sent: bool,
    pub admin_authenticated: bool,
    pub pin_reset: bool,
    pub pin_tries_after: Tries,
    /// What the responder did (CM: request id, HTTP calls, handshakes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cm: Option<serde_json::Value>,
}

/// A failed run: the error and what was learned before it.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    pub outcome: Option<Outcome>,
}

impl From<Error> for Box<Failure> {
    fn from(error: Error) -> Box<Failure> {
        Box::new(Failure {
            error,
            outcome: None,
        })
    }
}

/// Run the flow on one card. `new_pin` is required in [`Mode::Unblock`].
pub fn run<S: Session>(
    session: &mut S,
    applet: &dyn Applet,
    responder: &mut dyn Responder,
    new_pin: Option<&Pin>,
    opts: &Options,
) -> Result<Outcome, Box<Failure>> {
    let mut out = Outcome {
        reader: session.reader().to_string(),
        atr: crate::apdu::spaced_hex(session.atr()),
        profile: applet.name().to_string(),
        responder: responder.name().to_string(),
        card_id: opts.card_id.clone(),
        ..Outcome::default()
    };
    let result = unblock(session, applet, responder, new_pin, opts, &mut out);
    // Tell the responder how it ended: CM completes its request only after a
    // full success, abandons it when the card refused the response, and
    // otherwise leaves it open so the same request can be used again.
    let ending = match &result {
        _ if opts.mode == Mode::DryRun => None,
        Ok(()) => Some(Ending::Succeeded),
        Err(Error::AdminRejected { .. } | Error::AdminBlocked { .. }) if out.challenge_sent => {
            Some(Ending::Rejected)
        }
        Err(_) => Some(Ending::Interrupted),
    };
    let finished = ending.map_or(Ok(()), |e| responder.finish(e));
    out.cm = responder.report();
    match result.and(finished) {
        Ok(()) => Ok(out),
        Err(error) => Err(Box::new(Failure {
            error,
            outcome: Some(out),
        })),
    }
}

fn unblock<S: Session>(
    session: &mut S,
    applet: &dyn Applet,
    responder: &mut dyn Responder,
    new_pin: Option<&Pin>,
    opts: &Options,
    out: &mut Outcome,
) -> Result<(), Error> {
    if opts.mode == Mode::Unblock && new_pin.is_none() {
        return Err(Error::usage("unblock needs a new PIN"));
    }
    let mut card = CardContext {
        reader: out.reader.clone(),
        atr: session.atr().to_vec(),
        card_id: opts.card_id.clone(),
        ..CardContext::default()
    };

    // A responder that must reach a server first (a CM request waiting for
    // approval) does so outside any transaction, after a read-only look.
    if responder.needs_preparation() || opts.mode == Mode::DryRun {
        session.transaction(&mut |t| {
            let mut ch = Channel::new(t, opts.trace.clone());
            preflight(&mut ch, applet, opts, out)?;
            out.card_id = out.card_id.take().or(applet.card_id(&mut ch)?);
            Ok(())
        })?;
        if opts.mode == Mode::DryRun {
            return Ok(());
        }
        card.card_id = out.card_id.clone();
        responder.prepare(&card)?;
    }

    session.transaction(&mut |t| {
        let mut ch = Channel::new(t, opts.trace.clone());
        // 1-3. SELECT, admin tries, PIN tries; refuse a blocked key or the last try.
        preflight(&mut ch, applet, opts, out)?;

        // 4. GET CHALLENGE: single-use, it dies with the next command.
        let challenge = applet.get_challenge(&mut ch)?;

        // 5. The response. Checked before it goes anywhere near the card.
        let cryptogram = responder.respond(&challenge, &card)?;
        if cryptogram.len() != challenge.len() {
            return Err(Error::responder(format!(
                "the {} responder gave {} bytes for a {}-byte challenge; nothing was sent to the card",
                responder.name(),
                cryptogram.len(),
                challenge.len()
            )));
        }

        // 6. EXTERNAL AUTHENTICATE: sent once, whatever the card answers.
        out.challenge_sent = true;
        applet.external_authenticate(&mut ch, &cryptogram)?;
        out.admin_authenticated = true;
        log::verbose("admin authentication succeeded");
        let Some(pin) = new_pin.filter(|_| opts.mode == Mode::Unblock) else {
            return Ok(());
        };

        // 7. RESET RETRY COUNTER with the new PIN.
        applet.reset_retry_counter(&mut ch, pin)?;
        out.pin_reset = true;

        // 8. The PIN tries now.
        out.pin_tries_after = applet.pin_tries(&mut ch)?;
        Ok(())
    })
}

/// Read the ATR, the counters and the card id; authenticate nothing (`info`).
pub fn inspect<S: Session>(
    session: &mut S,
    applet: &dyn Applet,
    trace: &Trace,
) -> Result<Outcome, Box<Failure>> {
    let mut out = Outcome {
        reader: session.reader().to_string(),
        atr: crate::apdu::spaced_hex(session.atr()),
        profile: applet.name().to_string(),
        ..Outcome::default()
    };
    let result = session.transaction(&mut |t| {
        let mut ch = Channel::new(t, trace.clone());
        applet.select(&mut ch)?;
        out.admin_tries = applet.admin_tries(&mut ch)?;
        out.pin_tries_before = applet.pin_tries(&mut ch)?;
        out.card_id = applet.card_id(&mut ch)?;
        Ok(())
    });
    match result {
        Ok(()) => Ok(out),
        Err(error) => Err(Box::new(Failure {
            error,
            outcome: Some(out),
        })),
    }
}

/// SELECT and the counters; refuses to go on when the admin key is blocked
/// or only its last try is left (unless forced).
fn preflight(
    ch: &mut Channel,
    applet: &dyn Applet,
    opts: &Options,
    out: &mut Outcome,
) -> Result<(), Error> {
    applet.select(ch)?;
    out.admin_tries = applet.admin_tries(ch)?;
    out.pin_tries_before = applet.pin_tries(ch)?;
    log::verbose(format!(
        "admin tries left: {}; PIN tries left: {}",
        out.admin_tries, out.pin_tries_before
    ));
    match out.admin_tries {
        Tries::Blocked | Tries::Left(0) => return Err(Error::AdminBlocked { sw: 0x6983 }),
        Tries::Left(1) if !opts.force_last_try => return Err(Error::LastTryRefused),
        Tries::Left(1) => log::warn(
            "spending the LAST admin try (--force-last-try): a wrong response blocks the admin key",
        ),
        Tries::Left(2) => {
            log::warn("2 admin tries left: if this response is wrong, only the last one remains")
        }
        Tries::Unknown if applet.name() == "iso" => {}
        Tries::Unknown => log::verbose("the card does not report its admin tries"),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_key::AdminKey;
    use crate::card::IsoApplet;
    use crate::profile::CardProfile;
    use crate::responder::LocalKey;
    use zeroize::Zeroizing;

    const GOLDEN_CHALLENGE: &str = "D61143F9CCFFD2CA";
    const GOLDEN_RESPONSE: &str = "17466E766E303CB6";

    fn opts(mode: Mode) -> Options {
        Options {
            mode,
            force_last_try: false,
            trace: Trace::off(),
            card_id: None,
        }
    }

    /// The counter queries of an iso card with these answers.
    fn card(admin: &str, pin: &str) -> ScriptedTransport {
        ScriptedTransport::new()
            .expect("00820000", admin)
            .expect("00200080", pin)
    }

    /// GET CHALLENGE answered with the CM docs' challenge.
    fn challenge(t: ScriptedTransport) -> ScriptedTransport {
        t.expect("0084000008", &format!("{GOLDEN_CHALLENGE}9000"))
    }

    /// Run the iso flow with `key` (24 bytes of `key_byte`) over the script; the new PIN
    /// is 24681357 in unblock mode. Returns what the card received and the result.
    fn play(
        t: ScriptedTransport,
        key_byte: u8,
        o: &Options,
    ) -> (ScriptedTransport, Result<Outcome, Box<Failure>>) {
        let mut s = ScriptedSession {
            transport: t,
            atr: vec![0x3B, 0x02, 0x14, 0x50],
        };
        let applet = IsoApplet::new(CardProfile::iso());
        let mut key = LocalKey::new(AdminKey::from_bytes(&[key_byte; 24]).unwrap());
        let pin = Pin::new(Zeroizing::new(b"24681357".to_vec()));
        let new_pin = (o.mode == Mode::Unblock).then_some(&pin);
        let r = run(&mut s, &applet, &mut key, new_pin, o);
        (s.transport, r)
    }

    #[test]
    fn unblocks_with_the_golden_vector() {
        let t = challenge(card("63C5", "6983"))
            .expect(&format!("0082000008{GOLDEN_RESPONSE}"), "9000")
            .expect("002C0280083234363831333537", "9000")
            .expect("00200080", "63C3");
        let (t, r) = play(t, 0, &opts(Mode::Unblock));
        let out = r.unwrap();
        assert!(t.done());
        assert_eq!(out.admin_tries, Tries::Left(5));
        assert_eq!(out.pin_tries_before, Tries::Blocked);
        assert!(out.admin_authenticated && out.pin_reset);
        assert_eq!(out.pin_tries_after, Tries::Left(3));
    }

    #[test]
    fn refuses_the_last_try_without_the_flag() {
        let (t, r) = play(card("63C1", "6983"), 0, &opts(Mode::Unblock));
        let f = r.unwrap_err();
        assert_eq!(f.error.exit_code(), 5);
        assert!(!f.outcome.unwrap().challenge_sent);
        assert_eq!(t.received.len(), 2);
    }

    #[test]
    fn spends_the_last_try_with_the_flag() {
        let t =
            challenge(card("63C1", "6983")).expect(&format!("0082000008{GOLDEN_RESPONSE}"), "9000");
        let mut o = opts(Mode::AuthOnly);
        o.force_last_try = true;
        let out = play(t, 0, &o).1.unwrap();
        assert!(out.admin_authenticated && !out.pin_reset);
    }

    #[test]
    fn blocked_admin_key_sends_no_challenge() {
        let (t, r) = play(card("6983", "6983"), 0, &opts(Mode::Unblock));
        assert_eq!(r.unwrap_err().error.exit_code(), 5);
        assert!(t.done());
    }

    #[test]
    fn wrong_key_spends_exactly_one_try() {
        // DES ignores parity bits: 0x02 bytes are a key other than the zero key.
        let (t, r) = play(
            challenge(card("63C5", "6983")).expect("", "63C4"),
            2,
            &opts(Mode::Unblock),
        );
        let f = r.unwrap_err();
        assert_eq!(f.error.exit_code(), 4);
        assert_eq!(f.error.admin_tries(), Some(Tries::Left(4)));
        assert!(t.done());
        assert_ne!(hex::encode_upper(&t.received[3][5..]), GOLDEN_RESPONSE);
    }

    #[test]
    fn dry_run_checks_the_tries_and_sends_no_challenge() {
        let f = play(card("63C1", "6983"), 0, &opts(Mode::DryRun))
            .1
            .unwrap_err();
        assert_eq!(f.error.exit_code(), 5);
        let (t, r) = play(card("63C5", "6983"), 0, &opts(Mode::DryRun));
        assert!(!r.unwrap().challenge_sent);
        assert!(t.done());
    }

    #[test]
    fn inspect_authenticates_nothing() {
        let mut s = ScriptedSession {
            transport: card("63C5", "63C3"),
            atr: vec![0x3B, 0x02, 0x14, 0x50],
        };
        let applet = IsoApplet::new(CardProfile::iso());
        let out = inspect(&mut s, &applet, &Trace::off()).unwrap();
        assert_eq!(out.admin_tries, Tries::Left(5));
        assert_eq!(out.pin_tries_before, Tries::Left(3));
        assert!(!out.challenge_sent);
    }
}
