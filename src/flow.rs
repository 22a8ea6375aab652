//! The unblock flow, top to bottom.
//!
//! ATR → family ([`Identify`]) → SELECT → tries → card id → challenge →
//! response → admin authentication → new PIN → PIN tries, all of it inside
//! ONE card transaction (two where a responder must reach a server before the
//! challenge: CM) with no APDU between the challenge and the response. The admin response is sent at most once per run: no code path
//! retries it. PIV resets the PIN with the PUK instead ([`Mode::UnblockWithPuk`]).

use serde::Serialize;

use crate::admin_key::KeyAlg;
use crate::card::{AdminChallenge, Applet, Tries, Unlock};
use crate::card_info::CardInfo;
use crate::error::Error;
use crate::ids::{CardId, Guid};
use crate::log;
use crate::profile::{ProfileChoice, ProfileSource};
use crate::responder::{checked_response, CardContext, Ending, Responder};
use crate::secret::Pin;
pub use crate::transport::Session;
use crate::transport::{Channel, Trace};

/// How the flow learns the card's family.
#[derive(Clone, Copy)]
pub enum Identify<'a> {
    /// Already identified (watch identifies a card before it decides to
    /// unblock it).
    Known(&'a dyn Applet),
    /// `--profile`, or detection (ATR patterns, then the PIV and GIDS
    /// SELECTs), inside the run's first transaction: no transaction of its own.
    Find(&'a ProfileChoice),
}

/// What the run should do. The secrets a mode needs travel with it.
#[derive(Clone, Copy, Debug)]
pub enum Mode<'a> {
    /// Admin authentication, then RESET RETRY COUNTER with the new PIN.
    Unblock { new_pin: &'a Pin },
    /// RESET RETRY COUNTER with the PUK and the new PIN (PIV): no admin key.
    UnblockWithPuk { puk: &'a Pin, new_pin: &'a Pin },
    /// Admin authentication only (`scunblock auth`).
    AuthOnly,
    /// Read the ATR and the counters and check them as an unblock would;
    /// authenticate nothing (`--dry-run`).
    DryRun,
}

impl Mode<'_> {
    pub fn is_dry_run(&self) -> bool {
        matches!(self, Mode::DryRun)
    }

    /// Whether the run sends an admin response.
    pub fn sends_cryptogram(&self) -> bool {
        matches!(self, Mode::Unblock { .. } | Mode::AuthOnly)
    }
}

#[derive(Clone, Debug)]
pub struct Options<'a> {
    pub mode: Mode<'a>,
    /// Spend the last admin (or PUK) try.
    pub force_last_try: bool,
    /// Send a cryptogram to a card that does not report its admin tries.
    pub allow_unknown_tries: bool,
    pub trace: Trace,
    /// The card id the user gave (`--card-id`, watch's `--card-id-command`),
    /// if any: it must be the card's own id where the card has one.
    pub card_id: Option<Guid>,
}

/// What a run found and did. Filled in as the flow goes, so a failed run
/// still reports what it learned (reader, ATR, tries).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    /// Reader, ATR and the card id as sent to CM; JSON has them at the top
    /// level, as before.
    #[serde(flatten)]
    pub card: CardInfo,
    pub profile: String,
    /// "detected" or "option" (`--profile`); none for [`Identify::Known`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_source: Option<ProfileSource>,
    pub responder: String,
    /// The 16 bytes of the card's own id, hex (null: the card has none).
    pub card_id_raw: Option<String>,
    pub admin_tries: Tries,
    pub pin_tries_before: Tries,
    /// The PUK tries, for families that reset the PIN with the PUK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub puk_tries: Option<Tries>,
    /// The admin key's algorithm, where the card told it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_alg: Option<KeyAlg>,
    /// An admin response went to the card.
    pub response_sent: bool,
    /// A PUK went to the card.
    pub puk_sent: bool,
    pub admin_authenticated: bool,
    pub pin_reset: bool,
    pub pin_tries_after: Tries,
    /// What the responder did (CM: request id, HTTP calls, handshakes). JSON
    /// `cm`, its name since the first release.
    #[serde(rename = "cm", skip_serializing_if = "Option::is_none")]
    pub responder_report: Option<serde_json::Value>,
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

impl Outcome {
    fn new<S: Session>(session: &S) -> Outcome {
        Outcome {
            card: CardInfo::new(session.reader(), session.atr()),
            ..Outcome::default()
        }
    }

    /// Into a failure. What was learned goes with it once the run is known to
    /// fit the card: a card of the wrong family, or one no family fits, has
    /// only the error (its tries were never read).
    fn failed(self, error: Error, card: &Card) -> Box<Failure> {
        let known = card.fits || matches!(card.how, Identify::Known(_));
        Box::new(Failure {
            error,
            outcome: known.then_some(self),
        })
    }
}

/// The card's applet for one run: given, or found by the first transaction's
/// first step, once.
struct Card<'a> {
    how: Identify<'a>,
    found: Option<Box<dyn Applet>>,
    fits: bool,
}

impl<'a> Card<'a> {
    /// A known family is in the outcome from the start.
    fn new(how: Identify<'a>, out: &mut Outcome) -> Card<'a> {
        if let Identify::Known(applet) = how {
            out.profile = applet.name().to_string();
        }
        Card {
            how,
            found: None,
            fits: false,
        }
    }

    /// The applet, identified (at most two read-only SELECTs, the first time
    /// only) and checked against the run ([`check_fit`]).
    fn identify(
        &mut self,
        ch: &mut Channel,
        mode: Option<&Mode>,
        out: &mut Outcome,
    ) -> Result<&dyn Applet, Error> {
        let applet: &dyn Applet = match self.how {
            Identify::Known(applet) => applet,
            Identify::Find(choice) => match &mut self.found {
                Some(found) => &**found,
                slot @ None => {
                    let (profile, source) =
                        crate::card::detect::profile(ch, &out.card.atr, choice)?;
                    out.profile = profile.name.clone();
                    out.profile_source = Some(source);
                    &**slot.insert(crate::card::for_profile(profile))
                }
            },
        };
        if let Some(mode) = mode.filter(|_| !self.fits) {
            check_fit(applet, mode)?;
        }
        self.fits = true;
        Ok(applet)
    }

    /// The applet, once known.
    fn applet(&self) -> Option<&dyn Applet> {
        match self.how {
            Identify::Known(applet) => Some(applet),
            Identify::Find(_) => self.found.as_deref(),
        }
    }
}

/// Check that the run fits the card's family, before anything is sent: a
/// PIV card takes the PUK, the others the admin key; the secrets meet the
/// card's policy.
pub fn check_fit(applet: &dyn Applet, mode: &Mode) -> Result<(), Error> {
    let family = applet.family();
    match (applet.unlock(), mode) {
        (Unlock::Puk, Mode::Unblock { .. }) => {
            return Err(Error::WrongCard(format!(
                "this is a {family} card: it resets its PIN with the PUK, not with an admin key \
                 or CM; give the PUK (--puk-env, --puk-file, --puk-stdin or the prompt). \
                 Nothing was sent"
            )))
        }
        (Unlock::AdminKey, Mode::UnblockWithPuk { .. }) => {
            return Err(Error::WrongCard(format!(
                "this is a {family} card: it takes no PUK; its PIN is reset after admin \
                 authentication with the admin key (--admin-key-file, --admin-key-env, --cm or \
                 --manual). Nothing was sent"
            )))
        }
        _ => {}
    }
    match mode {
        Mode::Unblock { new_pin } => applet.check_pin(new_pin),
        Mode::UnblockWithPuk { puk, new_pin } => {
            applet.check_pin(new_pin)?;
            applet.profile().check_secret(puk, "PUK")
        }
        _ => Ok(()),
    }
}

/// Run the flow on one card.
pub fn run<S: Session>(
    session: &mut S,
    identify: Identify,
    responder: &mut dyn Responder,
    opts: &Options,
) -> Result<Outcome, Box<Failure>> {
    let mut out = Outcome {
        // A PIV unblock has no responder: the PUK answers for itself.
        responder: match opts.mode {
            Mode::UnblockWithPuk { .. } => "puk",
            _ => responder.name(),
        }
        .to_string(),
        ..Outcome::new(session)
    };
    let mut card = Card::new(identify, &mut out);
    let result = unblock(session, &mut card, responder, opts, &mut out)
        .map_err(|e| explained(e, card.applet()));
    // Tell the responder how it ended: CM completes its request only after a
    // full success, abandons it when the card refused the response, and
    // otherwise leaves it open so the same request can be used again.
    let ending = match &result {
        _ if !opts.mode.sends_cryptogram() => None,
        Ok(()) => Some(Ending::Succeeded),
        Err(Error::AdminRejected { .. } | Error::AdminBlocked { .. }) if out.response_sent => {
            Some(Ending::Rejected)
        }
        Err(_) => Some(Ending::Interrupted),
    };
    let finished = ending.map_or(Ok(()), |e| responder.finish(e));
    out.responder_report = responder.report();
    match result.and(finished) {
        Ok(()) => Ok(out),
        Err(error) => Err(out.failed(error, &card)),
    }
}

fn unblock<S: Session>(
    session: &mut S,
    card: &mut Card,
    responder: &mut dyn Responder,
    opts: &Options,
    out: &mut Outcome,
) -> Result<(), Error> {
    let mut context = CardContext {
        info: out.card.clone(),
        ..CardContext::default()
    };

    // A responder that must reach a server first (a CM request waiting for
    // approval) does so outside any transaction, after a read-only look.
    let mut first_look = None;
    if responder.needs_preparation() || opts.mode.is_dry_run() {
        session.transaction(&mut |t| {
            let mut ch = Channel::new(t, opts.trace.clone());
            let applet = card.identify(&mut ch, Some(&opts.mode), out)?;
            preflight(&mut ch, applet, &*responder, opts, out)
        })?;
        if opts.mode.is_dry_run() {
            return Ok(());
        }
        first_look = Some(out.card_id_raw.clone());
        context.info.card_id = out.card.card_id.clone();
        responder.prepare(&context)?;
    }

    session.transaction(&mut |t| {
        let mut ch = Channel::new(t, opts.trace.clone());
        // 0. The family (read-only SELECTs, first transaction only), and
        // whether the run fits it (a PUK for PIV, the admin key for the rest).
        let applet = card.identify(&mut ch, Some(&opts.mode), out)?;
        // 1-3. SELECT, tries, card id, key algorithm; refuse a blocked key,
        // the last try and unknown tries (unless allowed).
        preflight(&mut ch, applet, &*responder, opts, out)?;
        // The card may have been reset and swapped while the responder waited
        // (a CM approval): the id read now must be the one read before.
        if let Some(before) = first_look.as_ref().filter(|id| **id != out.card_id_raw) {
            let shown = |id: &Option<String>| id.clone().unwrap_or_else(|| "none".into());
            return Err(Error::CardChanged {
                reader: out.card.reader.clone(),
                what: "card id",
                before: shown(before),
                after: shown(&out.card_id_raw),
            });
        }
        context.info.card_id = out.card.card_id.clone();

        // PIV: the PUK resets the PIN; no admin response at all.
        if let Mode::UnblockWithPuk { puk, new_pin } = opts.mode {
            out.puk_sent = true;
            applet.reset_pin_with_puk(&mut ch, puk, new_pin)?;
            out.pin_reset = true;
            out.pin_tries_after = applet.pin_tries(&mut ch)?;
            return Ok(());
        }

        // 4. The challenge: single-use, it dies with the next command.
        let AdminChallenge { challenge, alg } = applet.get_challenge(&mut ch, out.key_alg)?;
        out.key_alg = Some(alg);
        context.key_alg = alg;

        // 5. The response, from the responder: no APDU until it is checked.
        responder.check_alg(alg)?;
        let cryptogram = checked_response(&mut *responder, &challenge, &context)?;

        // 6. The admin response: sent once, whatever the card answers.
        out.response_sent = true;
        applet.authenticate(&mut ch, alg, &cryptogram)?;
        out.admin_authenticated = true;
        log::verbose("admin authentication succeeded");
        let Mode::Unblock { new_pin } = opts.mode else {
            return Ok(());
        };

        // 7. The new PIN, and its tries now.
        applet.reset_pin(&mut ch, new_pin)?;
        out.pin_reset = true;
        out.pin_tries_after = applet.pin_tries(&mut ch)?;
        Ok(())
    })
}

/// Read the ATR, the counters and the card id in one transaction;
/// authenticate nothing (`info`, watch's look at each card). The card's applet
/// comes back too, for a run that follows ([`Identify::Known`]).
pub fn inspect<S: Session>(
    session: &mut S,
    identify: Identify,
    trace: &Trace,
) -> Result<(Outcome, Box<dyn Applet>), Box<Failure>> {
    let mut out = Outcome::new(session);
    let mut card = Card::new(identify, &mut out);
    let result = session
        .transaction(&mut |t| {
            let mut ch = Channel::new(t, trace.clone());
            let applet = card.identify(&mut ch, None, &mut out)?;
            applet.select(&mut ch)?;
            out.admin_tries = applet.admin_tries(&mut ch)?;
            out.pin_tries_before = applet.pin_tries(&mut ch)?;
            if applet.unlock() == Unlock::Puk {
                out.puk_tries = Some(applet.puk_tries(&mut ch)?);
            }
            record_card_id(&mut out, applet.card_id(&mut ch)?, None)?;
            Ok(crate::card::for_profile(applet.profile().clone()))
        })
        .map_err(|e| explained(e, card.applet()));
    match result {
        Ok(applet) => Ok((out, applet)),
        Err(error) => Err(out.failed(error, &card)),
    }
}

/// The family's hint attached to a card error ([`Applet::explain`]).
fn explained(e: Error, applet: Option<&dyn Applet>) -> Error {
    match (e, applet) {
        (
            Error::Card {
                step,
                sw,
                status,
                hint: None,
            },
            Some(applet),
        ) => Error::Card {
            step,
            sw,
            status,
            hint: applet.explain(step, status),
        },
        (e, _) => e,
    }
}

/// The card's id in the outcome, checked against the id the user gave: the
/// .NET GUID form or the plain byte order of the card's own bytes, or the
/// wrong card is in the reader. CM gets the form that was given.
fn record_card_id(
    out: &mut Outcome,
    own: Option<CardId>,
    given: Option<&Guid>,
) -> Result<(), Error> {
    out.card_id_raw = own.map(|id| id.hex());
    out.card.card_id = match (given, own) {
        (Some(given), Some(own)) if !own.matches(given) => {
            return Err(Error::WrongCard(format!(
                "the card in the reader has card id {} (bytes {}), not {given}: the wrong card is \
                 in the reader. Nothing was sent",
                own.guid(),
                own.hex()
            )))
        }
        (Some(given), _) => Some(given.to_string()),
        (None, own) => own.map(|id| id.guid().to_string()),
    };
    Ok(())
}

/// SELECT, the counters, the card id and the key's algorithm; refuses to go
/// on when the key (or the PUK) is blocked, only its last try is left
/// (unless forced), or the admin tries are unknown (unless allowed).
fn preflight(
    ch: &mut Channel,
    applet: &dyn Applet,
    responder: &dyn Responder,
    opts: &Options,
    out: &mut Outcome,
) -> Result<(), Error> {
    applet.select(ch)?;
    out.admin_tries = applet.admin_tries(ch)?;
    out.pin_tries_before = applet.pin_tries(ch)?;
    let puk = match opts.mode {
        Mode::UnblockWithPuk { .. } => true,
        Mode::DryRun => applet.unlock() == Unlock::Puk,
        _ => false,
    };
    if applet.unlock() == Unlock::Puk {
        out.puk_tries = Some(applet.puk_tries(ch)?);
    }
    record_card_id(out, applet.card_id(ch)?, opts.card_id.as_ref())?;
    if responder.needs_card_id() && out.card.card_id.is_none() {
        let why = match responder.name() {
            "cm" => "CM shows it as the smartcard's SerialNumber",
            _ => "the key's label uses {card_id}",
        };
        return Err(Error::usage(format!(
            "--card-id is required with the {} key source: this {} card has no card id to \
             read ({why}). Nothing was sent",
            responder.name(),
            applet.family()
        )));
    }
    log::verbose(format!(
        "admin tries left: {}; PIN tries left: {}",
        out.admin_tries, out.pin_tries_before
    ));
    if puk {
        return puk_guard(out.puk_tries.unwrap_or_default(), opts);
    }
    if opts.mode.sends_cryptogram() {
        out.key_alg = applet.key_alg(ch)?;
        if let Some(alg) = out.key_alg {
            responder.check_alg(alg)?;
        }
    }
    match out.admin_tries {
        Tries::Blocked | Tries::Left(0) => return Err(Error::AdminBlocked { sw: None }),
        Tries::Left(1) if !opts.force_last_try => return Err(Error::LastTryRefused),
        Tries::Left(1) => log::warn(
            "spending the LAST admin try (--force-last-try): a wrong response blocks the admin key",
        ),
        Tries::Left(2) => {
            log::warn("2 admin tries left: if this response is wrong, only the last one remains")
        }
        Tries::Unknown if !opts.allow_unknown_tries => return Err(Error::UnknownTriesRefused),
        Tries::Unknown => log::warn(
            "the card does not report its admin tries: this try may be its last \
             (--allow-unknown-tries)",
        ),
        _ => {}
    }
    Ok(())
}

/// The PUK's guard: a blocked PUK, its last try (unless forced). Unknown PUK
/// tries only warn: the PUK is typed by its holder, as a PIN is.
fn puk_guard(tries: Tries, opts: &Options) -> Result<(), Error> {
    match tries {
        Tries::Blocked | Tries::Left(0) => Err(Error::PukBlocked { sw: None }),
        Tries::Left(1) if !opts.force_last_try => Err(Error::PukLastTryRefused),
        Tries::Left(1) => {
            log::warn("spending the LAST PUK try (--force-last-try): a wrong PUK blocks it");
            Ok(())
        }
        Tries::Unknown => {
            log::warn("the card does not report its PUK tries; going on");
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_key::AdminKey;
    use crate::card::{for_profile, IsoApplet};
    use crate::profile::CardProfile;
    use crate::responder::LocalKey;
    use crate::testing::{ScriptedSession, ScriptedTransport};
    use zeroize::Zeroizing;

    const GOLDEN_CHALLENGE: &str = "D61143F9CCFFD2CA";
    const GOLDEN_RESPONSE: &str = "17466E766E303CB6";

    #[derive(Clone, Copy, PartialEq)]
    enum Run {
        Unblock,
        Auth,
        Dry,
        Puk,
    }

    fn secret(s: &str) -> Pin {
        Pin::new(Zeroizing::new(s.as_bytes().to_vec()))
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

    /// Run the flow of `applet` with `key` (24 bytes of `key_byte`) over the script; the
    /// new PIN is 24681357, the PUK 12345678. Returns what the card received and the result.
    fn play_with(
        t: ScriptedTransport,
        applet: &dyn Applet,
        key_byte: u8,
        run_as: Run,
        adjust: impl Fn(&mut Options),
    ) -> (ScriptedTransport, Result<Outcome, Box<Failure>>) {
        let mut s = ScriptedSession {
            transport: t,
            atr: vec![0x3B, 0x02, 0x14, 0x50],
        };
        let mut key = LocalKey::new(AdminKey::from_bytes(&[key_byte; 24]).unwrap());
        let pin = secret("24681357");
        let puk = secret("12345678");
        let mode = match run_as {
            Run::Unblock => Mode::Unblock { new_pin: &pin },
            Run::Auth => Mode::AuthOnly,
            Run::Dry => Mode::DryRun,
            Run::Puk => Mode::UnblockWithPuk {
                puk: &puk,
                new_pin: &pin,
            },
        };
        let mut o = Options {
            mode,
            force_last_try: false,
            allow_unknown_tries: false,
            trace: Trace::off(),
            card_id: None,
        };
        adjust(&mut o);
        let r = run(&mut s, Identify::Known(applet), &mut key, &o);
        (s.transport, r)
    }

    fn play(
        t: ScriptedTransport,
        key_byte: u8,
        run_as: Run,
    ) -> (ScriptedTransport, Result<Outcome, Box<Failure>>) {
        play_with(
            t,
            &IsoApplet::new(CardProfile::iso()),
            key_byte,
            run_as,
            |_| {},
        )
    }

    #[test]
    fn unblocks_with_the_golden_vector() {
        let t = challenge(card("63C5", "6983"))
            .expect(&format!("0082000008{GOLDEN_RESPONSE}"), "9000")
            .expect("002C0280083234363831333537", "9000")
            .expect("00200080", "63C3");
        let (t, r) = play(t, 0, Run::Unblock);
        let out = r.unwrap();
        assert!(t.done());
        assert_eq!(out.admin_tries, Tries::Left(5));
        assert_eq!(out.pin_tries_before, Tries::Blocked);
        assert!(out.admin_authenticated && out.pin_reset);
        assert_eq!(out.pin_tries_after, Tries::Left(3));
    }

    #[test]
    fn refuses_the_last_try_without_the_flag() {
        let (t, r) = play(card("63C1", "6983"), 0, Run::Unblock);
        let f = r.unwrap_err();
        assert_eq!(f.error.exit_code(), 5);
        assert!(!f.outcome.unwrap().response_sent);
        assert_eq!(t.received.len(), 2);
    }

    #[test]
    fn spends_the_last_try_with_the_flag() {
        let t =
            challenge(card("63C1", "6983")).expect(&format!("0082000008{GOLDEN_RESPONSE}"), "9000");
        let iso = IsoApplet::new(CardProfile::iso());
        let (_, r) = play_with(t, &iso, 0, Run::Auth, |o| o.force_last_try = true);
        let out = r.unwrap();
        assert!(out.admin_authenticated && !out.pin_reset);
    }

    #[test]
    fn blocked_admin_key_sends_no_challenge() {
        let (t, r) = play(card("6983", "6983"), 0, Run::Unblock);
        assert_eq!(r.unwrap_err().error.exit_code(), 5);
        assert!(t.done());
    }

    #[test]
    fn unknown_admin_tries_need_the_opt_in() {
        let (t, r) = play(card("6D00", "6983"), 0, Run::Unblock);
        let f = r.unwrap_err();
        assert_eq!(f.error.exit_code(), 5);
        assert_eq!(f.error.class(), "unknown_tries_refused");
        assert!(t.done(), "no challenge, no cryptogram");
        let t = challenge(card("6D00", "6983"))
            .expect(&format!("0082000008{GOLDEN_RESPONSE}"), "9000")
            .expect("002C0280083234363831333537", "9000")
            .expect("00200080", "63C3");
        let iso = IsoApplet::new(CardProfile::iso());
        let (t, r) = play_with(t, &iso, 0, Run::Unblock, |o| o.allow_unknown_tries = true);
        assert!(r.unwrap().pin_reset);
        assert!(t.done());
    }

    #[test]
    fn wrong_key_spends_exactly_one_try() {
        // DES ignores parity bits: 0x02 bytes are a key other than the zero key.
        let (t, r) = play(
            challenge(card("63C5", "6983")).expect("", "63C4"),
            2,
            Run::Unblock,
        );
        let f = r.unwrap_err();
        assert_eq!(f.error.exit_code(), 4);
        assert_eq!(f.error.admin_tries(), Some(Tries::Left(4)));
        assert!(t.done());
        // printf '\xd6\x11\x43\xf9\xcc\xff\xd2\xca' |
        //   openssl enc -des-ede3 -K 0202..02 -nopad | xxd -p
        assert_eq!(hex::encode(&t.received[3][5..]), "b7aed6683a94d067");
    }

    #[test]
    fn dry_run_checks_the_tries_and_sends_no_challenge() {
        let f = play(card("63C1", "6983"), 0, Run::Dry).1.unwrap_err();
        assert_eq!(f.error.exit_code(), 5);
        let (t, r) = play(card("63C5", "6983"), 0, Run::Dry);
        assert!(!r.unwrap().response_sent);
        assert!(t.done());
    }

    /// The GIDS preflight: SELECT, PIN status, master file without a cardid.
    fn gids_preflight() -> ScriptedTransport {
        ScriptedTransport::new()
            .expect("00A4040009A0000003974254465900", "9000")
            .expect("00CB3FFF045C027F7100", "7F71069701009301039000")
            .expect("00CBA000045C02DF1F00", "6A82")
    }

    #[test]
    fn gids_unblock_with_the_golden_vector_and_nothing_between() {
        let t = gids_preflight()
            .expect("002281A403830180", "9000")
            .expect(
                "00870000047C02810000",
                &format!("7C0A8108{GOLDEN_CHALLENGE}9000"),
            )
            .expect(&format!("008700000C7C0A8208{GOLDEN_RESPONSE}"), "9000")
            .expect("002C0280083234363831333537", "9000")
            .expect("00CB3FFF045C027F7100", "7F71069701039301039000");
        let gids = for_profile(CardProfile::gids());
        let (t, r) = play_with(t, gids.as_ref(), 0, Run::Unblock, |o| {
            o.allow_unknown_tries = true
        });
        let out = r.unwrap();
        assert!(t.done());
        assert_eq!(out.admin_tries, Tries::Unknown);
        assert_eq!(out.pin_tries_after, Tries::Left(3));
        // The response came right after the challenge.
        let ga = t
            .received
            .iter()
            .position(|a| a.starts_with(&[0x00, 0x87, 0, 0, 4]))
            .unwrap();
        assert_eq!(&t.received[ga + 1][..2], &[0x00, 0x87]);
    }

    #[test]
    fn gids_refuses_unknown_tries_without_the_opt_in() {
        let gids = for_profile(CardProfile::gids());
        let (t, r) = play_with(gids_preflight(), gids.as_ref(), 0, Run::Unblock, |_| {});
        assert_eq!(r.unwrap_err().error.class(), "unknown_tries_refused");
        assert!(t.done());
    }

    #[test]
    fn a_card_id_that_is_not_this_cards_is_the_wrong_card() {
        let master = {
            let mut m = vec![0x01];
            let mut r = [0u8; 28];
            r[9..15].copy_from_slice(b"cardid");
            r[20..24].copy_from_slice(&0xDF20u32.to_le_bytes());
            r[24..28].copy_from_slice(&0xA012u32.to_le_bytes());
            m.extend_from_slice(&r);
            crate::tlv::encode(0xDF1F, &m)
        };
        let preflight = || {
            ScriptedTransport::new()
                .expect("00A4040009A0000003974254465900", "9000")
                .expect("00CB3FFF045C027F7100", "7F71069701009301039000")
                .expect(
                    "00CBA000045C02DF1F00",
                    &format!("{}9000", hex::encode(&master)),
                )
                .expect(
                    "00CBA012045C02DF2000",
                    "DF201000112233445566778899AABBCCDDEEFF9000",
                )
        };
        let gids = for_profile(CardProfile::gids());
        let (t, r) = play_with(preflight(), gids.as_ref(), 0, Run::Unblock, |o| {
            o.allow_unknown_tries = true;
            o.card_id = Some(Guid::parse("33221100-5544-7766-8899-aabbccddeef0", "x").unwrap());
        });
        let f = r.unwrap_err();
        assert_eq!((f.error.exit_code(), f.error.class()), (2, "wrong_card"));
        assert!(t.done());
        // Read, not given: the .NET form goes to CM; the bytes are reported.
        let (_, r) = play_with(preflight(), gids.as_ref(), 0, Run::Dry, |o| {
            o.allow_unknown_tries = true
        });
        let out = r.unwrap();
        assert_eq!(
            out.card.card_id.as_deref(),
            Some("33221100-5544-7766-8899-aabbccddeeff")
        );
        assert_eq!(
            out.card_id_raw.as_deref(),
            Some("00112233445566778899AABBCCDDEEFF")
        );
    }

    /// A PIV card whose PIN is blocked: SELECT, then the PIN status.
    fn piv_blocked_pin() -> ScriptedTransport {
        ScriptedTransport::new()
            .expect("00A4040009A0000003080000100000", "9000")
            .expect("00200080", "6983")
    }

    /// The PIV preflight on a card without metadata: the PUK tries from an
    /// empty VERIFY (unknown), and no CHUID.
    fn piv_preflight() -> ScriptedTransport {
        piv_blocked_pin()
            .expect("00F7008100", "6D00")
            .expect("00200081", "6A88")
            .expect("00CB3FFF055C035FC10200", "6A82")
    }

    #[test]
    fn piv_resets_the_pin_with_the_puk_and_no_cryptogram() {
        let t = piv_preflight()
            .expect(
                "002C008010313233343536373832343638313335 37"
                    .replace(' ', "")
                    .as_str(),
                "9000",
            )
            .expect("00200080", "63C3");
        let piv = for_profile(CardProfile::piv());
        let (t, r) = play_with(t, piv.as_ref(), 0, Run::Puk, |_| {});
        let out = r.unwrap();
        assert!(t.done());
        assert!(out.pin_reset && out.puk_sent && !out.response_sent);
        assert_eq!(out.puk_tries, Some(Tries::Unknown));
    }

    #[test]
    fn piv_refuses_the_last_puk_try_without_the_flag() {
        let t = piv_blocked_pin()
            .expect("00F7008100", "0101FF060203019000")
            .expect("00CB3FFF055C035FC10200", "6A82");
        let piv = for_profile(CardProfile::piv());
        let (t, r) = play_with(t, piv.as_ref(), 0, Run::Puk, |_| {});
        let f = r.unwrap_err();
        assert_eq!(f.error.class(), "puk_last_try_refused");
        assert_eq!(f.error.exit_code(), 5);
        assert!(t.done());
    }

    #[test]
    fn a_key_that_does_not_fit_the_cards_algorithm_sends_nothing() {
        let t = piv_preflight().expect("00F7009B00", "0101089000");
        let piv = for_profile(CardProfile::piv());
        // A 24-byte key on a card whose 9B key is AES-128.
        let (t, r) = play_with(t, piv.as_ref(), 0, Run::Auth, |o| {
            o.allow_unknown_tries = true
        });
        assert_eq!(r.unwrap_err().error.exit_code(), 2);
        assert!(t.done(), "no challenge was asked for");
    }

    #[test]
    fn the_family_must_fit_the_run() {
        let pin = secret("24681357");
        let piv = for_profile(CardProfile::piv());
        let e = check_fit(piv.as_ref(), &Mode::Unblock { new_pin: &pin }).unwrap_err();
        assert_eq!(e.class(), "wrong_card");
        assert!(e.to_string().contains("PUK"), "{e}");
        let gids = for_profile(CardProfile::gids());
        let puk = secret("12345678");
        let e = check_fit(
            gids.as_ref(),
            &Mode::UnblockWithPuk {
                puk: &puk,
                new_pin: &pin,
            },
        )
        .unwrap_err();
        assert_eq!(e.class(), "wrong_card");
        assert!(check_fit(piv.as_ref(), &Mode::AuthOnly).is_ok());
        let short = secret("123");
        let e = check_fit(gids.as_ref(), &Mode::Unblock { new_pin: &short }).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    /// The detection SELECTs (PIV, then GIDS) answered "not found": an ISO card.
    fn detected_iso(t: ScriptedTransport) -> ScriptedTransport {
        let mut d = ScriptedTransport::new()
            .expect("00A4040009A0000003080000100000", "6A82")
            .expect("00A4040009A0000003974254465900", "6A82");
        d.script.extend(t.script);
        d
    }

    /// Run with `--profile` not given: the flow detects the family itself.
    fn play_detected(
        t: ScriptedTransport,
        mode: Mode,
    ) -> (ScriptedTransport, Result<Outcome, Box<Failure>>) {
        let mut s = ScriptedSession {
            transport: t,
            atr: vec![0x3B, 0x02, 0x14, 0x50],
        };
        let mut key = LocalKey::new(AdminKey::from_bytes(&[0; 24]).unwrap());
        let opts = Options {
            mode,
            force_last_try: false,
            allow_unknown_tries: false,
            trace: Trace::off(),
            card_id: None,
        };
        let choice = ProfileChoice::Detect { site: vec![] };
        let r = run(&mut s, Identify::Find(&choice), &mut key, &opts);
        (s.transport, r)
    }

    #[test]
    fn detection_and_the_unblock_share_one_transaction() {
        let pin = secret("24681357");
        let t = detected_iso(challenge(card("63C5", "6983")))
            .expect(&format!("0082000008{GOLDEN_RESPONSE}"), "9000")
            .expect("002C0280083234363831333537", "9000")
            .expect("00200080", "63C3");
        let (t, r) = play_detected(t, Mode::Unblock { new_pin: &pin });
        let out = r.unwrap();
        assert!(t.done());
        assert_eq!(t.transactions, 1);
        assert_eq!(out.profile, "iso");
        assert_eq!(out.profile_source, Some(ProfileSource::Detected));
        assert!(out.pin_reset);
    }

    #[test]
    fn a_detected_family_that_does_not_fit_stops_after_the_select() {
        let pin = secret("24681357");
        let t = ScriptedTransport::new().expect("00A4040009A0000003080000100000", "9000");
        let (t, r) = play_detected(t, Mode::Unblock { new_pin: &pin });
        let f = r.unwrap_err();
        assert_eq!(f.error.class(), "wrong_card");
        // Its tries were never read: no outcome to report them from.
        assert!(f.outcome.is_none());
        assert!(t.done());
        assert_eq!(t.received.len(), 1);
    }

    #[test]
    fn inspect_authenticates_nothing() {
        let mut s = ScriptedSession {
            transport: card("63C5", "63C3"),
            atr: vec![0x3B, 0x02, 0x14, 0x50],
        };
        let applet = IsoApplet::new(CardProfile::iso());
        let (out, _) = inspect(&mut s, Identify::Known(&applet), &Trace::off()).unwrap();
        assert_eq!(out.admin_tries, Tries::Left(5));
        assert_eq!(out.pin_tries_before, Tries::Left(3));
        assert!(!out.response_sent);
    }

    #[test]
    fn the_card_facts_stay_top_level_json_keys() {
        let out = Outcome {
            card: CardInfo {
                reader: "R".into(),
                atr: vec![0x3B, 0x02],
                card_id: Some("00112233-4455-6677-8899-aabbccddeeff".into()),
            },
            ..Outcome::default()
        };
        let v = serde_json::to_value(&out).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "admin_authenticated",
                "admin_tries",
                "atr",
                "card_id",
                "card_id_raw",
                "pin_reset",
                "pin_tries_after",
                "pin_tries_before",
                "profile",
                "puk_sent",
                "reader",
                "responder",
                "response_sent",
            ]
        );
        assert_eq!(v["atr"], "3B 02");
        assert_eq!(v["reader"], "R");
        assert_eq!(v["card_id"], "00112233-4455-6677-8899-aabbccddeeff");
    }
}
