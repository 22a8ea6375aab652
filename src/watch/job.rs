//! One inserted card, on a thread of its own: read it, report it and, with
//! `--unblock`, run the one unblock flow ([`crate::flow::run`]) on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::command::{self, Failure as CommandFailure};
use super::event::{Event, What};
use super::{ResponderFactory, Shared};
use crate::card::{Applet, Tries, Unlock};
use crate::card_info::CardInfo;
use crate::error::Error;
use crate::flow::{self, Identify, Mode, Options};
use crate::ids::Guid;
use crate::reader::Connection;
use crate::responder::CardContext;
use crate::secret::{self, Pin};
use crate::transport::Trace;

/// How long to wait for another process to release the card.
const OPEN_WAIT: Duration = Duration::from_secs(5);

/// A card's identity for the failure memory, whichever reader it is in: its
/// ATR and the id read from the card (else the one `--card-id-command`
/// printed).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CardKey {
    atr: Vec<u8>,
    id: Option<String>,
}

/// One insertion of a card in a reader, shared by its worker thread and the
/// watcher loop.
pub struct Job {
    pub reader: String,
    /// The ATR PC/SC reported at insertion (spaced hex), if any.
    pub atr: Option<String>,
    /// When the watcher saw the card arrive.
    seen: Instant,
    /// The card left the reader (or the service went away).
    removed: AtomicBool,
    done: AtomicBool,
    /// Serialises this job's reports with the watcher's.
    reports: Mutex<Reports>,
}

#[derive(Default)]
struct Reports {
    inserted: bool,
    /// An unblock_started awaits its unblock_succeeded/failed or skipped.
    open: bool,
    finished: bool,
}

impl Job {
    pub fn new(reader: &str, atr: Option<String>) -> Arc<Job> {
        Arc::new(Job {
            reader: reader.to_string(),
            atr,
            seen: Instant::now(),
            removed: AtomicBool::new(false),
            done: AtomicBool::new(false),
            reports: Mutex::new(Reports::default()),
        })
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    fn reports(&self) -> std::sync::MutexGuard<'_, Reports> {
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The card left: report the removal (after its insertion, which is
    /// reported now with what is known if the worker has not yet).
    pub fn removed(&self, shared: &Shared, removal: Event) {
        self.removed.store(true, Ordering::SeqCst);
        let mut r = self.reports();
        if !r.inserted {
            r.inserted = true;
            shared.emit(&self.inserted_event(&Inspection::default()));
        }
        shared.emit(&removal);
    }

    /// Shutdown gave up waiting for this job: close its unblock, if open.
    pub fn abandon(&self, shared: &Shared) {
        let mut r = self.reports();
        if r.open && !r.finished {
            r.finished = true;
            let what = What::UnblockFailed {
                class: "shutdown",
                exit_code: None,
                message: "the watcher stopped (--shutdown-timeout) before this flow finished; \
                          check the card with `scunblock info`"
                    .into(),
                sw: None,
                admin_tries: Tries::Unknown,
                pin_tries: Tries::Unknown,
                hint: None,
                cm: None,
                elapsed_ms: None,
            };
            shared.emit(&Event::reader(
                &self.reader,
                what.elapsed(self.elapsed_ms()),
            ));
        }
    }

    fn report_inserted(&self, shared: &Shared, found: &Inspection) {
        let mut r = self.reports();
        if !r.inserted {
            r.inserted = true;
            shared.emit(&self.inserted_event(found));
        }
    }

    /// `card_inserted` with what reading the card found (nothing, when it
    /// could not be read: then the ATR PC/SC reported).
    pub(super) fn inserted_event(&self, found: &Inspection) -> Event {
        let what = What::CardInserted {
            atr: found.atr().or_else(|| self.atr.clone()),
            pin_tries: found.pin_tries,
            admin_tries: found.admin_tries,
            card_id: found.card.card_id.clone(),
        };
        Event::reader(&self.reader, what)
    }

    fn start(&self, shared: &Shared, what: What) {
        let mut r = self.reports();
        r.open = true;
        shared.emit(&Event::reader(&self.reader, what));
    }

    /// Since the watcher saw the card arrive.
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.seen.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The one closing event of an unblock (or a skip): emitted once. An
    /// unblock's result says how long it took since the card arrived.
    fn finish(&self, shared: &Shared, what: What) {
        let mut r = self.reports();
        if !r.finished {
            r.finished = true;
            let what = what.elapsed(self.elapsed_ms());
            shared.emit(&Event::reader(&self.reader, what));
        }
    }

    fn skip(&self, shared: &Shared, reason: &'static str, message: impl Into<String>) {
        let message = message.into();
        self.finish(shared, What::Skipped { reason, message });
    }
}

/// What reading the card found.
#[derive(Default)]
pub(super) struct Inspection {
    /// The card's family, detected (or forced by --profile).
    applet: Option<Box<dyn Applet>>,
    /// The reader, the ATR (empty: the card could not be opened) and the
    /// card's id (its own, else the one `--card-id-command` printed).
    card: CardInfo,
    pin_tries: Tries,
    admin_tries: Tries,
    /// Why the card could not be read, if it could not.
    error: Option<Error>,
    /// Why the card id command gave no id, if it gave none.
    card_id_problem: Option<String>,
    /// The id `--card-id-command` printed (checked against the card's own).
    card_id_given: Option<Guid>,
    /// The card's own id bytes (hex), where the card has one.
    card_id_raw: Option<String>,
}

impl Inspection {
    /// The card's identity for the failure memory: the card's own id bytes
    /// where it has them, since the id given may take either GUID form.
    fn key(&self) -> CardKey {
        CardKey {
            atr: self.card.atr.clone(),
            id: self
                .card_id_raw
                .clone()
                .or_else(|| self.card.card_id.clone()),
        }
    }

    /// The ATR read (spaced hex), if the card could be opened.
    fn atr(&self) -> Option<String> {
        (!self.card.atr.is_empty()).then(|| self.card.atr_hex())
    }
}

/// The worker: everything that happens to one insertion.
pub fn run(shared: Arc<Shared>, job: Arc<Job>) {
    let mut conn = open(&job.reader);
    let found = inspect(&shared, &job, conn.as_mut().ok());
    job.report_inserted(&shared, &found);
    let mut authenticated = false;
    if shared.cfg.unblock {
        match conn.as_mut() {
            Ok(c) => authenticated = unblock(&shared, &job, c, &found),
            Err(e) => job.skip(
                &shared,
                "unreadable",
                format!("the card cannot be read: {e}"),
            ),
        }
    }
    if let Ok(c) = conn {
        // Drop any admin security state the flow created.
        c.close(authenticated);
    }
    job.done.store(true, Ordering::SeqCst);
    shared.shutdown.wake();
}

fn open(reader: &str) -> Result<Connection, Error> {
    let ctx = crate::reader::establish()?;
    Connection::open(&ctx, reader, OPEN_WAIT)
}

/// Read the card's tries and id (read-only queries), and the card id from
/// `--card-id-command` where the card does not tell it.
fn inspect(shared: &Shared, job: &Job, conn: Option<&mut Connection>) -> Inspection {
    let mut found = Inspection::default();
    let Some(conn) = conn else {
        return found;
    };
    found.card = CardInfo::new(&job.reader, conn.atr());
    let trace = trace(shared, job);
    match flow::inspect(conn, Identify::Find(&shared.profiles), &trace) {
        Ok((o, applet)) => {
            found.pin_tries = o.pin_tries_before;
            found.admin_tries = o.admin_tries;
            found.card.card_id = o.card.card_id;
            found.card_id_raw = o.card_id_raw;
            found.applet = Some(applet);
        }
        Err(f) => found.error = Some(f.error),
    }
    if found.error.is_none() {
        if let Some(cmd) = &shared.cfg.card_id_command {
            match card_id_from(shared, job, cmd, found.atr().as_deref()) {
                Ok(id) => {
                    // The card's own id wins for reports; the flow checks that they agree.
                    found.card.card_id = found.card.card_id.take().or(Some(id.to_string()));
                    found.card_id_given = Some(id);
                }
                Err(why) => {
                    crate::log::warn(format!("[{}] --card-id-command: {why}", job.reader));
                    found.card_id_problem = Some(why);
                }
            }
        }
    }
    found
}

fn card_id_from(shared: &Shared, job: &Job, cmd: &str, atr: Option<&str>) -> Result<Guid, String> {
    let spec = command::Spec {
        command: cmd,
        env: card_env(&job.reader, atr, None),
        hidden_env: &shared.cfg.hidden_env,
        timeout: shared.cfg.card_id_timeout,
    };
    let out = command::run(&spec, &|| card_id_stop(shared, job)).map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&out).map_err(|_| "its output is not UTF-8".to_string())?;
    Guid::parse(text, "the card id it printed").map_err(|e| e.to_string())
}

fn card_env(
    reader: &str,
    atr: Option<&str>,
    card_id: Option<&str>,
) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("SCUNBLOCK_READER", Some(reader.to_string())),
        ("SCUNBLOCK_ATR", atr.map(|a| a.replace(' ', ""))),
        ("SCUNBLOCK_CARD_ID", card_id.map(str::to_string)),
    ]
}

/// When to stop the card id command: the card left, or the watcher stops
/// (the card is not taken on then).
fn card_id_stop(shared: &Shared, job: &Job) -> Option<&'static str> {
    if job.is_removed() {
        Some("the card was removed")
    } else if shared.shutdown.is_set() {
        Some("the watcher is stopping")
    } else {
        None
    }
}

/// When to stop the new PIN command: the card left, or the watcher stopped
/// waiting for flows in progress (a stop request alone lets it finish).
fn new_pin_stop(shared: &Shared, job: &Job) -> Option<&'static str> {
    if job.is_removed() {
        Some("the card was removed")
    } else if shared.shutdown.is_aborted() {
        Some("the watcher stopped before the PIN was given (--shutdown-timeout)")
    } else {
        None
    }
}

fn trace(shared: &Shared, job: &Job) -> Trace {
    Trace {
        enabled: shared.cfg.trace,
        prefix: job.reader.clone(),
    }
}

/// Decide, get the new PIN, run the flow, report. True when an admin
/// response went to the card (the card is then reset on disconnect).
fn unblock(shared: &Shared, job: &Job, conn: &mut Connection, found: &Inspection) -> bool {
    let (applet, factory) = match decide(shared, job, found) {
        Ok(f) => f,
        Err((reason, message)) => {
            job.skip(shared, reason, message);
            return false;
        }
    };
    let puk_unlock = applet.unlock() == Unlock::Puk;
    let atr = found.card.atr_hex();
    job.start(
        shared,
        What::UnblockStarted {
            atr: atr.clone(),
            card_id: found.card.card_id.clone(),
            profile: applet.name().to_string(),
            responder: factory.map_or("puk", |f| f.name()).to_string(),
            pin_tries: found.pin_tries,
            admin_tries: found.admin_tries,
        },
    );

    // The new PIN from the front end (and the PUK, for a PIV card).
    let card_id = found.card.card_id.as_deref();
    let ask_for = |asked| ask(shared, job, asked, applet, &atr, card_id);
    let secrets = ask_for(Asked::NewPin).and_then(|pin| {
        let puk = if puk_unlock {
            Some(ask_for(Asked::Puk)?)
        } else {
            None
        };
        Ok((pin, puk))
    });
    let (pin, puk) = match secrets {
        Ok(pin) => pin,
        Err(PinProblem::Removed) => {
            job.finish(
                shared,
                failed(&Error::card_removed(), Tries::Unknown, Tries::Unknown, None),
            );
            return false;
        }
        Err(PinProblem::Skip(reason, message)) => {
            job.skip(shared, reason, message);
            return false;
        }
    };

    // The responder for this card, then the one unblock flow.
    let card = CardContext {
        info: CardInfo {
            atr: conn.atr().to_vec(),
            ..found.card.clone()
        },
        ..CardContext::default()
    };
    let made = match factory {
        Some(f) => f.make(&card),
        None => Ok(Box::new(crate::responder::NoResponder) as Box<dyn crate::responder::Responder>),
    };
    let mut responder = match made {
        Ok(r) => r,
        Err(e) => {
            job.finish(shared, failed(&e, Tries::Unknown, Tries::Unknown, None));
            return false;
        }
    };
    let mode = match &puk {
        Some(puk) => Mode::UnblockWithPuk { puk, new_pin: &pin },
        None => Mode::Unblock { new_pin: &pin },
    };
    let opts = Options {
        mode,
        force_last_try: false,
        allow_unknown_tries: shared.cfg.allow_unknown_tries,
        trace: trace(shared, job),
        card_id: found.card_id_given.clone(),
    };
    let result = flow::run(conn, Identify::Known(applet), responder.as_mut(), &opts);
    drop(opts);
    // The PIN (and PUK) stay registered with the scrubber until this card's last event is out.
    let sent = match result {
        Ok(out) => {
            job.finish(
                shared,
                What::UnblockSucceeded {
                    card_id: out.card.card_id.clone(),
                    pin_tries: out.pin_tries_after,
                    admin_tries: out.admin_tries,
                    responder: out.responder.clone(),
                    cm: out.responder_report.clone(),
                    elapsed_ms: None,
                },
            );
            out.response_sent
        }
        Err(f) => {
            let o = f.outcome.as_ref();
            if spent_and_refused(&f.error, o) {
                shared.remember_failure(found.key(), f.error.to_string());
            }
            job.finish(
                shared,
                failed(
                    &f.error,
                    o.map(|o| o.admin_tries).unwrap_or_default(),
                    o.map(|o| o.pin_tries_before).unwrap_or_default(),
                    o.and_then(|o| o.responder_report.clone()),
                ),
            );
            o.is_some_and(|o| o.response_sent)
        }
    };
    crate::scrub::forget_pin(pin.as_bytes());
    if let Some(puk) = &puk {
        crate::scrub::forget_pin(puk.as_bytes());
    }
    drop((pin, puk));
    sent
}

/// Whether this card is to be unblocked: the responder factory, or why not.
type Decision<'a> = (&'a dyn Applet, Option<&'a dyn ResponderFactory>);

fn decide<'a>(
    shared: &'a Shared,
    job: &Job,
    found: &'a Inspection,
) -> Result<Decision<'a>, (&'static str, String)> {
    if let Some(e) = &found.error {
        return Err(("unreadable", format!("the card cannot be read: {e}")));
    }
    let Some(applet) = found.applet.as_deref() else {
        return Err(("unreadable", "the card's family is unknown".into()));
    };
    if !shared.cfg.always {
        match found.pin_tries {
            t if t.is_blocked() => {}
            Tries::Left(n) => {
                return Err((
                    "pin_not_blocked",
                    format!("the PIN is not blocked ({n} tries left); --always unblocks any card"),
                ))
            }
            _ => {
                return Err((
                    "pin_not_blocked",
                    "the card does not say that its PIN is blocked; --always unblocks any card"
                        .into(),
                ))
            }
        }
    }
    let atr = found.card.atr_hex();
    if !shared.cfg.retry_after_failure {
        if let Some(why) = shared.failed_before(&found.key()) {
            let id = found
                .card
                .card_id
                .as_deref()
                .map(|c| format!(", card id {c}"))
                .unwrap_or_default();
            return Err((
                "failed_before",
                format!(
                    "an admin response for this card (ATR {atr}{id}) already failed: {why}. \
                     It is not retried: check the key, then restart the watcher or give \
                     --retry-after-failure"
                ),
            ));
        }
    }
    if applet.unlock() == Unlock::Puk {
        if shared.cfg.puk_command.is_none() {
            return Err((
                "needs_puk",
                format!(
                    "this is a {} card: its PIN is reset with the PUK, not the admin key; give \
                     --puk-command to unblock such cards",
                    applet.family()
                ),
            ));
        }
        if shared.shutdown.is_set() || job.is_removed() {
            return Err(("shutting_down", "the watcher is stopping".into()));
        }
        return Ok((applet, None));
    }
    let Some(factory) = shared.responders.as_deref() else {
        return Err(("no_responder", "no admin key or CM configured".into()));
    };
    if factory.needs_card_id() && found.card.card_id.is_none() {
        let why = match &found.card_id_problem {
            Some(p) => format!("--card-id-command failed: {p}"),
            None => "the card profile cannot read it; give --card-id-command".to_string(),
        };
        return Err((
            "card_id_unknown",
            format!("the {} responder needs the card id: {why}", factory.name()),
        ));
    }
    if shared.shutdown.is_set() || job.is_removed() {
        return Err(("shutting_down", "the watcher is stopping".into()));
    }
    Ok((applet, Some(factory)))
}

enum PinProblem {
    /// The card left while the front end was asked.
    Removed,
    Skip(&'static str, String),
}

/// A secret the watcher reads from a front-end command and checks against
/// the profile: the new PIN, or the PUK of a PIV card.
#[derive(Clone, Copy)]
enum Asked {
    NewPin,
    Puk,
}

/// How asking can fail; each secret has its own skip reason for each
/// (docs/kiosk.md).
#[derive(Clone, Copy)]
enum Why {
    NotGiven,
    Failed,
    TimedOut,
    Invalid,
}

impl Asked {
    /// The option that names the command, and the command given.
    fn command(self, cfg: &super::Config) -> (&'static str, Option<&str>) {
        match self {
            Asked::NewPin => ("--new-pin-command", cfg.new_pin_command.as_deref()),
            Asked::Puk => ("--puk-command", cfg.puk_command.as_deref()),
        }
    }

    fn reason(self, why: Why) -> &'static str {
        match (self, why) {
            (Asked::NewPin, Why::NotGiven | Why::Failed) => "new_pin_command_failed",
            (Asked::NewPin, Why::TimedOut) => "new_pin_command_timeout",
            (Asked::NewPin, Why::Invalid) => "new_pin_invalid",
            (Asked::Puk, Why::NotGiven) => "needs_puk",
            (Asked::Puk, Why::Failed) => "puk_command_failed",
            (Asked::Puk, Why::TimedOut) => "puk_command_timeout",
            (Asked::Puk, Why::Invalid) => "puk_invalid",
        }
    }

    /// The profile's policy for this secret.
    fn check(self, applet: &dyn Applet, secret: &Pin) -> Result<(), String> {
        match self {
            Asked::NewPin => applet
                .check_pin(secret)
                .map_err(|e| format!("the new PIN: {e}")),
            Asked::Puk => applet
                .profile()
                .check_secret(secret, "PUK")
                .map_err(|e| format!("the PUK: {e}")),
        }
    }
}

/// Run the command of `asked` and check what it printed.
fn ask(
    shared: &Shared,
    job: &Job,
    asked: Asked,
    applet: &dyn Applet,
    atr: &str,
    card_id: Option<&str>,
) -> Result<Pin, PinProblem> {
    let (option, cmd) = asked.command(&shared.cfg);
    let Some(cmd) = cmd else {
        return Err(PinProblem::Skip(
            asked.reason(Why::NotGiven),
            format!("no {option}"),
        ));
    };
    let spec = command::Spec {
        command: cmd,
        env: card_env(&job.reader, Some(atr), card_id),
        hidden_env: &shared.cfg.hidden_env,
        timeout: shared.cfg.new_pin_timeout,
    };
    let pin = match command::run(&spec, &|| new_pin_stop(shared, job)) {
        Ok(out) => {
            let pin = Pin::new(zeroize::Zeroizing::new(
                secret::strip_line_end(&out).to_vec(),
            ));
            pin.register_for_scrubbing();
            pin
        }
        Err(CommandFailure::Stopped(_)) if job.is_removed() => return Err(PinProblem::Removed),
        Err(e @ CommandFailure::TimedOut(_)) => {
            return Err(PinProblem::Skip(
                asked.reason(Why::TimedOut),
                format!("{option}: {e}"),
            ))
        }
        Err(CommandFailure::Stopped(why)) => {
            return Err(PinProblem::Skip("shutting_down", format!("{option} {why}")))
        }
        Err(e) => {
            return Err(PinProblem::Skip(
                asked.reason(Why::Failed),
                format!("{option}: {e}"),
            ))
        }
    };
    if pin.is_empty() {
        return Err(PinProblem::Skip(
            asked.reason(Why::Invalid),
            format!("{option} printed nothing"),
        ));
    }
    if let Err(why) = asked.check(applet, &pin) {
        return Err(PinProblem::Skip(asked.reason(Why::Invalid), why));
    }
    Ok(pin)
}

/// Whether this failure must never be retried automatically: the card
/// refused an admin response (or its admin key is blocked), or an admin
/// response went to the card and the flow stopped before the card accepted
/// it, whatever stopped it. A card pulled while its verdict was pending may
/// have counted a wrong response: it is treated as a refusal. A card pulled
/// after the admin authentication succeeded starts fresh on the next
/// insertion.
fn spent_and_refused(e: &Error, o: Option<&flow::Outcome>) -> bool {
    match e {
        Error::AdminRejected { .. } | Error::AdminBlocked { .. } => true,
        _ => o.is_some_and(|o| o.response_sent && !o.admin_authenticated),
    }
}

/// `unblock_failed` for this error; the tries the error carries win over
/// those read before.
fn failed(e: &Error, admin_tries: Tries, pin_tries: Tries, cm: Option<Value>) -> What {
    What::UnblockFailed {
        class: e.class(),
        exit_code: Some(e.exit_code()),
        message: e.to_string(),
        sw: e.sw(),
        admin_tries: e.admin_tries().unwrap_or(admin_tries),
        pin_tries: e.pin_tries().unwrap_or(pin_tries),
        hint: e.hint(),
        cm,
        elapsed_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Outcome;

    #[test]
    fn only_spent_responses_are_remembered() {
        let sent = Outcome {
            response_sent: true,
            ..Outcome::default()
        };
        let rejected = Error::AdminRejected {
            sw: 0x63C4,
            tries_left: Tries::Left(4),
        };
        assert!(spent_and_refused(&rejected, Some(&sent)));
        assert!(spent_and_refused(
            &Error::AdminBlocked { sw: Some(0x6983) },
            None
        ));
        // Removed while the response's verdict was pending: it may have been counted.
        assert!(spent_and_refused(&Error::card_removed(), Some(&sent)));
        // An odd answer to the response counts as a refusal ...
        assert!(spent_and_refused(&Error::protocol("odd"), Some(&sent)));
        // ... but not before a response was sent, or after it was accepted.
        assert!(!spent_and_refused(&Error::protocol("odd"), None));
        let accepted = Outcome {
            response_sent: true,
            admin_authenticated: true,
            ..Outcome::default()
        };
        assert!(!spent_and_refused(&Error::protocol("odd"), Some(&accepted)));
        // Removed after the admin authentication: the next insertion starts fresh.
        assert!(!spent_and_refused(&Error::card_removed(), Some(&accepted)));
        assert!(!spent_and_refused(&Error::LastTryRefused, None));
    }
}
