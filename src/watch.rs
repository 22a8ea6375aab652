//! Kiosk mode (`scunblock watch`): watch every reader, report every change
//! as an event, and with `--unblock` run the one unblock flow
//! ([`crate::flow::run`]) on each inserted card whose PIN is blocked.
//!
//! - One thread (this module's loop) waits in `SCardGetStatusChange` on all
//!   readers plus the PnP pseudo-reader, and only reports and dispatches: it
//!   never talks to a card, so it keeps reporting while flows run.
//! - Each insertion gets a worker thread ([`job`]) with its own PC/SC context
//!   (pcsc-lite serialises calls on one context): one slow card, front end or
//!   CM call never holds up another reader.
//! - A card whose admin response failed is remembered (ATR + card id) for the
//!   life of the process and not tried again unless `--retry-after-failure`.
//! - pcscd going away gives `service_lost`; the loop re-establishes its
//!   context with backoff (100 ms doubling to 5 s) and gives `service_up`.
//! - SIGTERM/SIGINT stop new work, wait for flows in progress (bounded by
//!   `--shutdown-timeout`), and return Ok (exit 0).
//!
//! See docs/kiosk.md for the event reference.

mod command;
pub mod event;
mod job;
mod shutdown;

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pcsc::{Context, ReaderState, Scope, State};

pub use event::{Emitter, Event, What};
use job::{CardKey, Job};
pub use shutdown::{block_signals, Shutdown};

use crate::error::Error;
use crate::profile::ProfileChoice;
use crate::reader::ReaderSelector;

/// The longest single wait in SCardGetStatusChange. Changes, SCardCancel and
/// finished workers wake it earlier; this bounds a lost wake-up.
const WAIT: Duration = Duration::from_secs(2);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Up this long, the service counts as back for good (the backoff resets).
const STABLE: Duration = Duration::from_secs(10);
/// After the shutdown timeout: how long helper commands get to be ended.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// Which readers to watch (`--reader`): the selector of the other commands,
/// all readers by default, but not its index form, since indexes change as
/// readers come and go.
pub fn readers(reader: Option<&str>) -> Result<ReaderSelector, Error> {
    match ReaderSelector::parse(reader)? {
        ReaderSelector::Index(_) => Err(Error::usage(
            "watch: --reader N (an index) changes as readers come and go; \
             give @NAME or part of the name",
        )),
        sel => Ok(sel),
    }
}

/// What the watcher does; checked by the CLI before it starts.
#[derive(Clone, Debug)]
pub struct Config {
    /// Unblock inserted cards (else only report).
    pub unblock: bool,
    /// Unblock every card, not only those whose PIN is blocked.
    pub always: bool,
    /// Try a card again after its admin response failed.
    pub retry_after_failure: bool,
    pub new_pin_command: Option<String>,
    pub new_pin_timeout: Duration,
    pub card_id_command: Option<String>,
    pub card_id_timeout: Duration,
    /// Command that prints the PUK of a PIV card (its PIN is reset with it).
    pub puk_command: Option<String>,
    /// Send a cryptogram to cards that do not report their admin tries.
    pub allow_unknown_tries: bool,
    pub shutdown_timeout: Duration,
    /// From [`readers`]: never an index.
    pub readers: ReaderSelector,
    /// APDU trace on stderr, each line prefixed with the reader.
    pub trace: bool,
    /// One JSON object per line (else readable lines).
    pub json: bool,
    /// Variables no helper command may inherit (secrets' names).
    pub hidden_env: Vec<String>,
}

pub use crate::key_source::ResponderFactory;

/// What the watcher loop and the workers share.
pub(crate) struct Shared {
    cfg: Config,
    /// The profile of every card (`--profile`) or the profiles detection
    /// chooses from, card by card.
    profiles: ProfileChoice,
    responders: Option<Arc<dyn ResponderFactory>>,
    out: Emitter,
    shutdown: Arc<Shutdown>,
    /// Cards whose admin response failed, and why.
    failures: Mutex<HashMap<CardKey, String>>,
}

impl Shared {
    fn emit(&self, e: &Event) {
        if !self.out.emit(e) && !self.shutdown.is_set() {
            crate::log::warn("standard output is gone: stopping");
            self.shutdown.trigger();
        }
    }

    fn failed_before(&self, key: &CardKey) -> Option<String> {
        let f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.get(key).cloned()
    }

    fn remember_failure(&self, key: CardKey, why: String) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.insert(key, why);
    }
}

/// Watch until SIGTERM/SIGINT (or stdout closing). Call [`block_signals`]
/// first, before anything starts a thread.
pub fn run(
    cfg: Config,
    profiles: ProfileChoice,
    responders: Option<Arc<dyn ResponderFactory>>,
) -> Result<(), Error> {
    let shutdown = Shutdown::new();
    shutdown::listen(shutdown.clone());
    let shared = Arc::new(Shared {
        out: Emitter::new(cfg.json),
        cfg,
        profiles,
        responders,
        shutdown,
        failures: Mutex::new(HashMap::new()),
    });
    let mut w = Watcher::new(shared.clone());
    w.watch();
    w.finish();
    if shared.out.is_broken() {
        return Err(Error::Unexpected(
            "standard output was closed; stopped watching".into(),
        ));
    }
    Ok(())
}

/// A watched reader.
struct Slot {
    name: String,
    present: bool,
    /// pcsc-lite's event counter (changes on insertion and removal).
    count: Option<u32>,
    job: Option<Arc<Job>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Unknown,
    Up,
    Down,
}

struct Watcher {
    shared: Arc<Shared>,
    ctx: Option<Context>,
    service: Service,
    backoff: Duration,
    /// When the service last came up.
    up_since: Instant,
    /// Parallel to `states` minus its last entry, the PnP pseudo-reader.
    slots: Vec<Slot>,
    states: Vec<ReaderState>,
    rescan: bool,
    workers: Vec<(Arc<Job>, JoinHandle<()>)>,
}

impl Watcher {
    fn new(shared: Arc<Shared>) -> Watcher {
        Watcher {
            shared,
            ctx: None,
            service: Service::Unknown,
            backoff: BACKOFF_START,
            up_since: Instant::now(),
            slots: Vec::new(),
            states: Vec::new(),
            rescan: true,
            workers: Vec::new(),
        }
    }

    fn stopping(&self) -> bool {
        self.shared.shutdown.is_set()
    }

    fn watch(&mut self) {
        while !self.stopping() {
            self.reap();
            if self.ctx.is_none() {
                self.connect();
                continue;
            }
            if self.rescan {
                if let Err(e) = self.scan() {
                    self.lost(e);
                    continue;
                }
            }
            self.wait();
        }
    }

    fn connect(&mut self) {
        match Context::establish(Scope::User) {
            Ok(ctx) => {
                self.shared.shutdown.set_context(Some(ctx.clone()));
                self.ctx = Some(ctx);
                self.service = Service::Up;
                self.up_since = Instant::now();
                self.rescan = true;
                self.states = vec![ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE)];
                self.shared.emit(&Event::service(What::ServiceUp));
            }
            Err(e) => {
                if self.service != Service::Down {
                    self.service = Service::Down;
                    crate::log::verbose(format!("PC/SC service unavailable: {e}"));
                    self.shared.emit(&Event::service(What::ServiceLost {
                        message: e.to_string(),
                    }));
                }
                self.shared.shutdown.sleep(self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// The service went away: every reader and card with it. The backoff
    /// starts over only when the service had been up for a while, so a
    /// service that fails at once is not hammered either.
    fn lost(&mut self, e: pcsc::Error) {
        self.shared.emit(&Event::service(What::ServiceLost {
            message: e.to_string(),
        }));
        for slot in std::mem::take(&mut self.slots) {
            self.drop_reader(slot);
        }
        self.states.clear();
        self.shared.shutdown.set_context(None);
        self.ctx = None;
        self.service = Service::Down;
        if self.up_since.elapsed() >= STABLE {
            self.backoff = BACKOFF_START;
        }
        self.shared.shutdown.sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn drop_reader(&self, slot: Slot) {
        if slot.present {
            self.card_removed(&slot);
        }
        self.shared
            .emit(&Event::reader(&slot.name, What::ReaderRemoved));
    }

    fn card_removed(&self, slot: &Slot) {
        let e = Event::reader(&slot.name, What::CardRemoved);
        match &slot.job {
            Some(job) => job.removed(&self.shared, e),
            None => self.shared.emit(&e),
        }
    }

    /// List the readers; report those added and removed.
    fn scan(&mut self) -> Result<(), pcsc::Error> {
        let Some(ctx) = &self.ctx else {
            return Ok(());
        };
        let names: Vec<String> = match ctx.list_readers_owned() {
            Ok(n) => n
                .into_iter()
                .map(|c| c.to_string_lossy().into_owned())
                .filter(|n| self.shared.cfg.readers.names_by_name(n))
                .collect(),
            Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
            Err(e) => return Err(e),
        };
        self.rescan = false;
        // Removed readers.
        let mut i = 0;
        while i < self.slots.len() {
            if names.contains(&self.slots[i].name) {
                i += 1;
            } else {
                let slot = self.slots.remove(i);
                self.states.remove(i);
                self.drop_reader(slot);
            }
        }
        // Added readers (their state is learnt at the next wait).
        for name in names {
            if self.slots.iter().any(|s| s.name == name) {
                continue;
            }
            let Ok(cname) = CString::new(name.clone()) else {
                continue;
            };
            self.shared.emit(&Event::reader(&name, What::ReaderAdded));
            let at = self.slots.len();
            self.states
                .insert(at, ReaderState::new(cname, State::UNAWARE));
            self.slots.push(Slot {
                name,
                present: false,
                count: None,
                job: None,
            });
        }
        Ok(())
    }

    /// One status-change wait, and what it found.
    fn wait(&mut self) {
        let Some(ctx) = self.ctx.clone() else {
            return;
        };
        // A worker that finished wakes us (SCardCancel) to be reaped.
        let timeout = WAIT;
        match ctx.get_status_change(timeout, &mut self.states) {
            Ok(()) => {}
            Err(pcsc::Error::Timeout | pcsc::Error::Cancelled) => return,
            Err(pcsc::Error::UnknownReader | pcsc::Error::ReaderUnavailable) => {
                self.rescan = true;
                // Do not spin while PC/SC settles a reader change.
                self.shared.shutdown.sleep(Duration::from_millis(100));
                return;
            }
            Err(e) => return self.lost(e),
        }
        let pnp = self.states.len() - 1;
        if self.states[pnp].event_state().contains(State::CHANGED) {
            self.rescan = true;
        }
        for i in 0..self.slots.len() {
            let ev = self.states[i].event_state();
            if ev.intersects(State::UNKNOWN | State::IGNORE) {
                self.rescan = true;
            }
            let present = ev.contains(State::PRESENT)
                && !ev.intersects(State::EMPTY | State::UNKNOWN | State::UNAVAILABLE);
            let count = self.states[i].event_count();
            let atr = (present && !self.states[i].atr().is_empty())
                .then(|| crate::apdu::spaced_hex(self.states[i].atr()));
            self.transition(i, present, count, atr);
        }
        for s in self.states.iter_mut() {
            s.sync_current_state();
        }
    }

    fn transition(&mut self, i: usize, present: bool, count: u32, atr: Option<String>) {
        let was = self.slots[i].present;
        // Present before and now, but the event counter moved: the card was
        // swapped between two waits.
        let swapped = was && present && self.slots[i].count.is_some_and(|c| c != count);
        self.slots[i].count = Some(count);
        if was && (!present || swapped) {
            self.card_removed(&self.slots[i]);
            self.slots[i].present = false;
            self.slots[i].job = None;
        }
        if present && !self.slots[i].present {
            self.slots[i].present = true;
            self.inserted(i, atr);
        }
    }

    fn inserted(&mut self, i: usize, atr: Option<String>) {
        let name = self.slots[i].name.clone();
        let job = Job::new(&name, atr);
        let shared = self.shared.clone();
        let j = job.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("card {name}"))
            .spawn(move || job::run(shared, j));
        match spawned {
            Ok(handle) => {
                self.slots[i].job = Some(job.clone());
                self.workers.push((job, handle));
            }
            Err(e) => {
                crate::log::warn(format!("cannot start a thread for {name}: {e}"));
                self.shared
                    .emit(&job.inserted_event(&job::Inspection::default()));
            }
        }
    }

    /// Join the workers that are done.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            if self.workers[i].0.is_done() {
                let (_, handle) = self.workers.swap_remove(i);
                let _ = handle.join();
            } else {
                i += 1;
            }
        }
    }

    /// Stopping: wait for the flows in progress, up to the shutdown timeout;
    /// then end the helper commands still running and give up on the rest.
    fn finish(&mut self) {
        let deadline = Instant::now() + self.shared.cfg.shutdown_timeout;
        self.join_workers(deadline);
        if !self.workers.is_empty() {
            self.shared.shutdown.abort();
            self.join_workers(Instant::now() + ABORT_GRACE);
        }
        for (job, _) in &self.workers {
            crate::log::warn(format!(
                "[{}] the flow did not finish within --shutdown-timeout; leaving it",
                job.reader
            ));
            job.abandon(&self.shared);
        }
        self.shared.shutdown.set_context(None);
    }

    fn join_workers(&mut self, deadline: Instant) {
        loop {
            self.reap();
            if self.workers.is_empty() || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_chosen_by_name_never_by_index() {
        let watched = |sel: Option<&str>, name: &str| readers(sel).unwrap().names_by_name(name);
        assert!(watched(None, "Virtual PCD 00 00"));
        assert!(watched(Some("pcd b"), "Virtual PCD B 00 01"));
        assert!(!watched(Some("pcd b"), "Virtual PCD 00 01"));
        assert!(watched(Some("@Virtual PCD 00 01"), "Virtual PCD 00 01"));
        assert!(!watched(Some("@Virtual PCD 00"), "Virtual PCD 00 01"));
        let refused = readers(Some("1")).unwrap_err();
        assert_eq!(refused.exit_code(), 2);
        assert!(refused.to_string().contains("an index"), "{refused}");
        assert_eq!(readers(Some("")).unwrap_err().exit_code(), 2);
    }
}
