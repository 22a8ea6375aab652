//! PC/SC: the service, the readers, choosing one, and the connection whose
//! transactions the flow runs in.

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};
use serde::Serialize;

use crate::error::Error;
use crate::transport::{Session, Transport};

/// How the user picked a reader (`--reader`, SCUNBLOCK_READER).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReaderSelector {
    /// The only reader holding a card.
    Auto,
    /// `N`: the reader at this index in `scunblock readers`.
    Index(usize),
    /// `@NAME`: exactly this name.
    Exact(String),
    /// Anything else: a case-insensitive substring of the name.
    Substring(String),
}

impl ReaderSelector {
    pub fn parse(s: Option<&str>) -> Result<ReaderSelector, Error> {
        let Some(s) = s else {
            return Ok(ReaderSelector::Auto);
        };
        if s.is_empty() {
            return Err(Error::usage(
                "--reader is empty: give an index, @NAME or part of a name",
            ));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(Error::usage("--reader contains control characters"));
        }
        if let Some(exact) = s.strip_prefix('@') {
            return Ok(ReaderSelector::Exact(exact.to_string()));
        }
        if s.chars().all(|c| c.is_ascii_digit()) {
            return s
                .parse()
                .map(ReaderSelector::Index)
                .map_err(|_| Error::usage(format!("--reader {s}: index too large")));
        }
        Ok(ReaderSelector::Substring(s.to_string()))
    }

    /// Whether the reader at `index` named `name` is one this selector names
    /// (`Auto` names every reader: the cards decide).
    fn names(&self, index: usize, name: &str) -> bool {
        match self {
            ReaderSelector::Index(i) => *i == index,
            _ => self.names_by_name(name),
        }
    }

    /// Whether the reader named `name` is one this selector names by the
    /// name alone (`Auto` names every reader, an index none): for readers
    /// that come and go (`watch`), whose indexes do not last.
    pub fn names_by_name(&self, name: &str) -> bool {
        match self {
            ReaderSelector::Auto => true,
            ReaderSelector::Index(_) => false,
            ReaderSelector::Exact(n) => n == name,
            ReaderSelector::Substring(part) => name.to_lowercase().contains(&part.to_lowercase()),
        }
    }
}

/// One reader, as PC/SC reports it now.
#[derive(Clone, Debug, Serialize)]
pub struct ReaderInfo {
    pub index: usize,
    pub name: String,
    pub card_present: bool,
    /// ATR of the card in the reader, spaced upper-case hex.
    pub atr: Option<String>,
    /// Another process has the card open exclusively.
    pub exclusive: bool,
    /// The card does not answer (mute).
    pub mute: bool,
    #[serde(skip)]
    pub atr_bytes: Option<Vec<u8>>,
}

/// The PC/SC service.
pub fn establish() -> Result<Context, Error> {
    Context::establish(Scope::User).map_err(|e| map_service_error(e, "connect to"))
}

fn map_service_error(e: pcsc::Error, doing: &str) -> Error {
    match e {
        pcsc::Error::NoService | pcsc::Error::ServiceStopped | pcsc::Error::CommError => {
            Error::unavailable(
                format!("cannot {doing} the PC/SC service (pcscd): {e}"),
                Some(
                    "start it (Linux: `sudo systemctl start pcscd.socket`; Windows: the \
                     \"Smart Card\" service); if PCSCLITE_CSOCK_NAME is set, it must name a \
                     running pcscd's socket"
                        .to_string(),
                ),
            )
        }
        other => Error::unavailable(format!("PC/SC error: {other}"), None),
    }
}

/// All readers with their state, in PC/SC order.
pub fn list(ctx: &Context) -> Result<Vec<ReaderInfo>, Error> {
    states_of(ctx, names(ctx)?)
}

/// The readers' names, in PC/SC order.
///
/// One `SCardListReaders` into a buffer that holds pcsc-lite's most (16 readers of up to
/// 128 bytes): `list_readers_owned` asks for the length first, which costs pcsc-lite a
/// second request to pcscd on every run (docs/performance.md). A longer list (other
/// PC/SC stacks) falls back to that.
fn names(ctx: &Context) -> Result<Vec<CString>, Error> {
    let mut buf = [0u8; 4096];
    let result = match ctx.list_readers(&mut buf) {
        Ok(n) => Ok(n.map(CStr::to_owned).collect()),
        Err(pcsc::Error::InsufficientBuffer) => ctx.list_readers_owned(),
        Err(e) => Err(e),
    };
    match result {
        Ok(n) => Ok(n),
        Err(pcsc::Error::NoReadersAvailable) => Ok(vec![]),
        Err(e) => Err(map_service_error(e, "list the readers of")),
    }
}

fn states_of(ctx: &Context, names: Vec<CString>) -> Result<Vec<ReaderInfo>, Error> {
    let mut states: Vec<ReaderState> = names
        .iter()
        .map(|n| ReaderState::new(n.clone(), State::UNAWARE))
        .collect();
    if !states.is_empty() {
        match ctx.get_status_change(Duration::ZERO, &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => return Err(map_service_error(e, "read reader states from")),
        }
    }
    Ok(states
        .iter()
        .enumerate()
        .map(|(index, s)| info_from_state(index, s))
        .collect())
}

/// A reader's info from its PC/SC state.
pub fn info_from_state(index: usize, s: &ReaderState) -> ReaderInfo {
    let ev = s.event_state();
    let present = ev.contains(State::PRESENT);
    let atr = (present && !s.atr().is_empty()).then(|| s.atr().to_vec());
    ReaderInfo {
        index,
        name: s.name().to_string_lossy().into_owned(),
        card_present: present,
        atr: atr.as_deref().map(crate::apdu::spaced_hex),
        exclusive: ev.contains(State::EXCLUSIVE),
        mute: ev.contains(State::MUTE),
        atr_bytes: atr,
    }
}

/// Pick the reader the user meant. Several readers with cards and no
/// `--reader` is a usage error that lists them.
pub fn choose(readers: &[ReaderInfo], sel: &ReaderSelector) -> Result<ReaderInfo, Error> {
    let listing = || {
        readers
            .iter()
            .map(|r| {
                format!(
                    "  {}: {}{}",
                    r.index,
                    r.name,
                    if r.card_present { " (card)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    if readers.is_empty() {
        return Err(Error::unavailable(
            "no smart card reader found",
            Some("connect a reader; check that pcscd sees it (`scunblock readers`)".to_string()),
        ));
    }
    let found: Vec<&ReaderInfo> = readers
        .iter()
        .filter(|r| sel.names(r.index, &r.name))
        .filter(|r| r.card_present || *sel != ReaderSelector::Auto)
        .collect();
    match (found.len(), sel) {
        (1, _) => Ok(found[0].clone()),
        (0, ReaderSelector::Auto) => Err(Error::unavailable(
            "no card in any reader",
            Some(format!("insert the card, or wait for it with --wait-card SECS. Readers:\n{}", listing())),
        )),
        (0, _) => Err(Error::usage(format!(
            "no reader matches --reader {}. Readers:\n{}",
            describe(sel),
            listing()
        ))),
        (_, ReaderSelector::Auto) => Err(Error::usage(format!(
            "several readers hold a card; choose one with --reader (index, @NAME or part of the name):\n{}",
            listing()
        ))),
        _ => Err(Error::usage(format!(
            "--reader {} matches several readers; use an index or @NAME:\n{}",
            describe(sel),
            listing()
        ))),
    }
}

fn describe(sel: &ReaderSelector) -> String {
    match sel {
        ReaderSelector::Auto => "(auto)".into(),
        ReaderSelector::Index(i) => i.to_string(),
        ReaderSelector::Exact(n) => format!("@{n}"),
        ReaderSelector::Substring(s) => s.clone(),
    }
}

/// The reader to connect to: without `--wait-card`, where the names alone
/// decide (an exact name, an index, a part of one name, or the only reader),
/// at once: a missing card then fails the connection with the same error.
/// Otherwise the one [`wait_for_reader`] finds.
pub fn select(ctx: &Context, sel: &ReaderSelector, wait: Duration) -> Result<String, Error> {
    let names = names(ctx)?;
    if wait.is_zero() {
        if let Some(name) = chosen_by_name(&names, sel) {
            return Ok(name);
        }
    }
    wait_for_reader(ctx, sel, wait, Some(names)).map(|r| r.name)
}

/// The one reader `sel` names without looking at the cards, if it names one.
fn chosen_by_name(names: &[CString], sel: &ReaderSelector) -> Option<String> {
    let mut found: Vec<String> = names
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .enumerate()
        .filter(|(i, n)| sel.names(*i, n))
        .map(|(_, n)| n)
        .collect();
    (found.len() == 1).then(|| found.remove(0))
}

/// Wait (up to `wait`) until the selected reader holds a card, then return
/// it. `names`: the readers just listed, if they were.
fn wait_for_reader(
    ctx: &Context,
    sel: &ReaderSelector,
    wait: Duration,
    mut names: Option<Vec<CString>>,
) -> Result<ReaderInfo, Error> {
    let deadline = Instant::now() + wait;
    loop {
        let readers = match names.take() {
            Some(n) => states_of(ctx, n)?,
            None => list(ctx)?,
        };
        let chosen = choose(&readers, sel);
        let remaining = deadline.saturating_duration_since(Instant::now());
        match chosen {
            Ok(r) if r.card_present => return Ok(r),
            Ok(r) if remaining.is_zero() => {
                return Err(Error::unavailable(
                    format!("no card in reader {}", r.name),
                    Some("insert the card, or wait for it with --wait-card SECS".to_string()),
                ))
            }
            Err(e) if remaining.is_zero() || !matches!(e, Error::Unavailable { .. }) => {
                return Err(e)
            }
            _ => {}
        }
        // Sleep until something changes, at most until the deadline.
        let mut states: Vec<ReaderState> = readers
            .iter()
            .filter_map(|r| CString::new(r.name.clone()).ok())
            .map(|n| ReaderState::new(n, State::UNAWARE))
            .collect();
        states.push(ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE));
        // First call learns the current state, second waits for a change.
        let _ = ctx.get_status_change(Duration::ZERO, &mut states);
        for s in states.iter_mut() {
            s.sync_current_state();
        }
        match ctx.get_status_change(remaining.min(Duration::from_secs(1)), &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(pcsc::Error::UnknownReader) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(map_service_error(e, "watch the readers of")),
        }
    }
}

/// Reconnects after another process's reset that a run makes without `--wait-card`
/// (with it: as many as fit in the wait, at least these). Concurrent runs on one card
/// (a kiosk script running `unblock` per request) each reset the card at their end; a run
/// waiting for its turn can see one reset per run ahead of it.
pub const MIN_RECONNECTS: u32 = 16;

/// A connection to the card in one reader.
pub struct Connection {
    card: pcsc::Card,
    reader: String,
    /// The ATR the connection was opened with: after every reconnect the card must show
    /// the same one, or the run stops ([`Error::CardChanged`]).
    atr: Vec<u8>,
    /// How long `--wait-card` lets this run wait, for reconnects too.
    wait: Duration,
    /// Reconnects made so far (after another process reset the card).
    reconnects: u32,
    /// The receive buffer of every transaction on this connection (an extended APDU's
    /// answer fits), zeroed once when the connection opens rather than once per
    /// transaction: a run has two (the family's detection, then the flow).
    buf: Vec<u8>,
}

impl Connection {
    /// Connect in shared mode. While another process holds the card
    /// exclusively, retry until `wait` has passed.
    pub fn open(ctx: &Context, reader: &str, wait: Duration) -> Result<Connection, Error> {
        let name = CString::new(reader)
            .map_err(|_| Error::usage("the reader name contains a NUL byte"))?;
        let deadline = Instant::now() + wait;
        let mut resets = 0;
        let mut card = loop {
            match ctx.connect(&name, ShareMode::Shared, Protocols::ANY) {
                Ok(card) => break card,
                Err(pcsc::Error::SharingViolation) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                // Another run's end-of-run reset under way (the card's protocol is
                // undefined until it is powered again): connect again, shortly.
                Err(pcsc::Error::ResetCard | pcsc::Error::ProtoMismatch)
                    if resets < MIN_RECONNECTS * 4 =>
                {
                    resets += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(connect_error(e, reader, wait)),
            }
        };
        // One SCardStatus call with room for any reader name and ATR (the
        // owned variant asks for the lengths first: a second round trip). Another
        // run's end-of-run reset between our connect and this call: reconnect (nothing
        // was sent yet, and this ATR is the one the run then holds on to).
        let (mut names, mut atr_buf) = ([0u8; 1024], [0u8; pcsc::MAX_ATR_SIZE]);
        let atr = loop {
            let status = match card.status2(&mut names, &mut atr_buf) {
                Ok(s) => Ok(s.atr().to_vec()),
                Err(pcsc::Error::InsufficientBuffer) => {
                    card.status2_owned().map(|s| s.atr().to_vec())
                }
                Err(e) => Err(e),
            };
            match status {
                Err(pcsc::Error::ResetCard | pcsc::Error::ProtoMismatch)
                    if resets < MIN_RECONNECTS * 4 =>
                {
                    resets += 1;
                    match card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard)
                    {
                        Ok(())
                        | Err(
                            pcsc::Error::ResetCard
                            | pcsc::Error::ProtoMismatch
                            | pcsc::Error::SharingViolation,
                        ) => std::thread::sleep(Duration::from_millis(20)),
                        Err(e) => return Err(connect_error(e, reader, wait)),
                    }
                }
                other => break other.map_err(|e| connect_error(e, reader, wait))?,
            }
        };
        Ok(Connection {
            card,
            reader: reader.to_string(),
            atr,
            wait,
            buf: vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED],
            reconnects: 0,
        })
    }

    /// How many times this connection reconnected after another process reset the card.
    /// A flow that read a card id before may compare it again when this grew (the ATR is
    /// compared here, on every reconnect).
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    pub fn reader(&self) -> &str {
        &self.reader
    }

    pub fn atr(&self) -> &[u8] {
        &self.atr
    }

    /// Run `f` inside one PC/SC transaction. A card reset by another process before the
    /// transaction began, or inside it while only reads went out ([`is_read_only`]: no
    /// challenge yet), is answered by a reconnect and `f` again, as often as `--wait-card`
    /// allows or [`MIN_RECONNECTS`] times; after each the card must show the ATR this
    /// connection was opened with, or the run stops with [`Error::CardChanged`]. A reset
    /// once anything else went out (GET CHALLENGE on) is the caller's error, never retried.
    pub fn transaction<R>(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Transport) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let deadline = Instant::now() + self.wait;
        let mut tries = 0u32;
        loop {
            match self.card.transaction2() {
                Ok(tx) => {
                    let mut t = PcscTransport {
                        tx: &tx,
                        buf: &mut self.buf,
                        only_reads: true,
                        reset: false,
                    };
                    let result = f(&mut t);
                    let retry = result.is_err() && t.retryable();
                    let _ = tx.end(Disposition::LeaveCard);
                    if !retry {
                        return result;
                    }
                    // Another run's end-of-run reset landed in this transaction before
                    // anything but reads went out: reconnect and run it again.
                }
                Err((_, pcsc::Error::ResetCard)) => {}
                Err((_, e)) => return Err(transmit_error(e)),
            }
            tries += 1;
            if tries > MIN_RECONNECTS && Instant::now() >= deadline {
                return Err(transmit_error(pcsc::Error::ResetCard));
            }
            crate::log::verbose(
                "the card was reset by another process between transactions (nothing of \
                 this transaction was sent yet): reconnecting",
            );
            self.reconnect()?;
        }
    }

    /// Reconnect after a reset, then check that the card is still the one this
    /// connection was opened with (its ATR).
    fn reconnect(&mut self) -> Result<(), Error> {
        let mut again = 0u32;
        let atr = loop {
            let status = self
                .card
                .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard)
                .and_then(|()| self.card.status2_owned().map(|s| s.atr().to_vec()));
            match status {
                Ok(atr) => break atr,
                // Reset again (or being reset), or held by another run right now: once
                // more, shortly.
                Err(
                    pcsc::Error::ResetCard
                    | pcsc::Error::ProtoMismatch
                    | pcsc::Error::SharingViolation,
                ) if again < MIN_RECONNECTS * 4 => {
                    again += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(transmit_error(e)),
            }
        };
        self.reconnects += 1;
        if atr != self.atr {
            return Err(Error::CardChanged {
                reader: self.reader.clone(),
                what: "ATR",
                before: crate::apdu::spaced_hex(&self.atr),
                after: crate::apdu::spaced_hex(&atr),
            });
        }
        Ok(())
    }

    /// Disconnect. `reset` resets the card, dropping any security state
    /// (admin authentication) the run created.
    pub fn close(self, reset: bool) {
        let disposition = if reset {
            Disposition::ResetCard
        } else {
            Disposition::LeaveCard
        };
        let _ = self.card.disconnect(disposition);
    }
}

struct PcscTransport<'a, 'tx> {
    tx: &'a pcsc::Transaction<'tx>,
    /// The connection's receive buffer ([`Connection::buf`]).
    buf: &'a mut [u8],
    /// Every command the card received in this transaction only read ([`is_read_only`]).
    only_reads: bool,
    /// A command failed because another process reset the card.
    reset: bool,
}

impl PcscTransport<'_, '_> {
    /// Whether the transaction failed on a reset before anything but reads went out: then
    /// the whole transaction may run again on a reconnected card.
    fn retryable(&self) -> bool {
        self.reset && self.only_reads
    }
}

/// ISO 7816-4 commands that only read: SELECT, READ BINARY/RECORD, GET DATA, GET
/// RESPONSE, and VERIFY without data (the PIN tries query). Anything else, GET CHALLENGE
/// first of all, ends the part of a transaction that a reset lets run again.
fn is_read_only(apdu: &[u8]) -> bool {
    match apdu.get(1) {
        Some(0xA4 | 0xB0 | 0xB1 | 0xB2 | 0xB3 | 0xCA | 0xCB | 0xC0) => true,
        // VERIFY and EXTERNAL AUTHENTICATE without data or Le: the tries queries.
        Some(0x20 | 0x82) => apdu.len() <= 4,
        _ => false,
    }
}

impl Transport for PcscTransport<'_, '_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Error> {
        let resp = match self.tx.transmit(apdu, &mut *self.buf) {
            Ok(r) => r.to_vec(),
            Err(e) => {
                // pcsc-lite refuses a transmit after another process's reset with either
                // error, before anything reaches the card (the reset leaves the card's
                // protocol undefined): this command was not sent.
                self.reset |= matches!(e, pcsc::Error::ResetCard | pcsc::Error::ProtoMismatch);
                return Err(transmit_error(e));
            }
        };
        // Counted once the card has it: a GET CHALLENGE refused for a reset never went out.
        self.only_reads &= is_read_only(apdu);
        if resp.len() < 2 {
            // No status word: a card pulled mid-command can look like this
            // (vpcd answers an empty APDU). Ask PC/SC whether it is still there.
            check_still_present(self.tx)?;
        }
        Ok(resp)
    }
}

/// After an answer without a status word: the card may have gone. PC/SC may
/// take one polling period to notice, so look for up to a second.
///
/// Only an explicit "gone" counts: a RemovedCard (or other) error, or the ABSENT
/// state. A missing PRESENT bit proves nothing: on Windows the pcsc crate maps
/// the one state value SCardStatus returns to one flag (a connected card reports
/// SPECIFIC alone), and Wine passes pcsc-lite's bitmask through, which the crate
/// does not recognise as any Windows value (empty status). Treating "no PRESENT"
/// as removed turned a card that answers badly (exit 1) into a removed card
/// (exit 3) there; scripts/wine-test checks this.
fn check_still_present(card: &pcsc::Card) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(1);
    // Room for any reader name and ATR: no length query (Wine's SCardStatus has
    // answered one with a length its next call then found too small).
    let (mut names, mut atr) = ([0u8; 1024], [0u8; pcsc::MAX_ATR_SIZE]);
    loop {
        let gone = match card.status2(&mut names, &mut atr) {
            Ok(s) => card_gone(s.status()),
            // Too small a buffer says nothing about the card: still there.
            Err(pcsc::Error::InsufficientBuffer) => false,
            Err(e) => return Err(transmit_error(e)),
        };
        if gone {
            return Err(transmit_error(pcsc::Error::RemovedCard));
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state says the card is gone: ABSENT (pcsc-lite sets it in its bitmask,
/// Windows returns SCARD_ABSENT as its single value). Nothing else does.
fn card_gone(status: pcsc::Status) -> bool {
    status.contains(pcsc::Status::ABSENT)
}

fn connect_error(e: pcsc::Error, reader: &str, wait: Duration) -> Error {
    match e {
        pcsc::Error::NoSmartcard | pcsc::Error::RemovedCard => Error::unavailable(
            format!("no card in reader {reader}"),
            Some("insert the card, or wait for it with --wait-card SECS".to_string()),
        ),
        pcsc::Error::SharingViolation => Error::unavailable(
            format!(
                "another process holds the card in {reader} exclusively (waited {} s)",
                wait.as_secs()
            ),
            Some(
                "close the other application (or give --wait-card SECS to wait longer)".to_string(),
            ),
        ),
        pcsc::Error::UnknownReader | pcsc::Error::ReaderUnavailable => Error::unavailable(
            format!("reader {reader} is gone"),
            Some("reconnect it; `scunblock readers` lists what PC/SC sees".to_string()),
        ),
        pcsc::Error::UnresponsiveCard
        | pcsc::Error::UnpoweredCard
        | pcsc::Error::UnsupportedCard => Error::unavailable(
            format!("the card in {reader} does not answer: {e}"),
            Some("reinsert the card (chip first, the right way up)".to_string()),
        ),
        other => map_service_error(other, "use"),
    }
}

fn transmit_error(e: pcsc::Error) -> Error {
    let (message, hint) = match e {
        pcsc::Error::RemovedCard | pcsc::Error::NoSmartcard => return Error::card_removed(),
        pcsc::Error::ResetCard => return Error::card_reset(),
        pcsc::Error::NoService | pcsc::Error::ServiceStopped | pcsc::Error::CommError => (
            format!("the PC/SC service (pcscd) went away: {e}"),
            "restart pcscd and re-run; `scunblock info` shows the tries left",
        ),
        other => (
            format!("PC/SC error while talking to the card: {other}"),
            "re-run; `scunblock info` shows the tries left",
        ),
    };
    Error::Unavailable {
        message,
        hint: Some(hint.to_string()),
    }
}

impl Session for Connection {
    fn reader(&self) -> &str {
        Connection::reader(self)
    }
    fn atr(&self) -> &[u8] {
        Connection::atr(self)
    }
    fn transaction<R>(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Transport) -> Result<R, Error>,
    ) -> Result<R, Error> {
        Connection::transaction(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_absent_state_means_the_card_is_gone() {
        use pcsc::Status;
        assert!(card_gone(Status::ABSENT));
        assert!(card_gone(Status::ABSENT | Status::UNKNOWN));
        // Windows: one value per state (a connected card: SPECIFIC alone); Wine: pcsc-lite's
        // bitmask, which the crate maps to no flag at all. Neither is a removal.
        assert!(!card_gone(Status::SPECIFIC));
        assert!(!card_gone(Status::empty()));
        assert!(!card_gone(
            Status::PRESENT | Status::POWERED | Status::NEGOTIABLE
        ));
    }

    #[test]
    fn names_alone_decide_only_when_they_name_one_reader() {
        let names: Vec<CString> = ["Virtual PCD 00 00", "Virtual PCD 00 01", "Yubico YubiKey"]
            .iter()
            .map(|n| CString::new(*n).unwrap())
            .collect();
        let pick = |sel: &str| chosen_by_name(&names, &ReaderSelector::parse(Some(sel)).unwrap());
        assert_eq!(pick("1").as_deref(), Some("Virtual PCD 00 01"));
        assert_eq!(pick("@Yubico YubiKey").as_deref(), Some("Yubico YubiKey"));
        assert_eq!(pick("yubi").as_deref(), Some("Yubico YubiKey"));
        // Several matches, none, or no selector with several readers: the states decide
        // (and the errors list the readers).
        assert_eq!(pick("virtual"), None);
        assert_eq!(pick("3"), None);
        assert_eq!(pick("@Yubico"), None);
        assert_eq!(chosen_by_name(&names, &ReaderSelector::Auto), None);
        assert_eq!(
            chosen_by_name(&names[2..], &ReaderSelector::Auto).as_deref(),
            Some("Yubico YubiKey")
        );
        assert_eq!(chosen_by_name(&[], &ReaderSelector::Auto), None);
    }

    fn reader(index: usize, name: &str, card: bool) -> ReaderInfo {
        ReaderInfo {
            index,
            name: name.into(),
            card_present: card,
            atr: None,
            exclusive: false,
            mute: false,
            atr_bytes: None,
        }
    }

    #[test]
    fn only_reads_may_run_again_after_a_reset() {
        // (APDU, whether it only reads)
        for (apdu, read_only) in [
            (&b"\x00\xA4\x04\x00\x02\x3F\x00"[..], true),
            (b"\x00\xCA\x01\x00\x00", true),
            (b"\x00\xCB\x3F\xFF\x02\x5C\x00", true),
            (b"\x00\x20\x00\x80", true),
            (b"\x00\x82\x00\x00", true),
            (b"\x00\xC0\x00\x00\x10", true),
            (b"\x00\x84\x00\x00\x08", false),
            (
                b"\x00\x82\x00\x00\x08\x17\x46\x6e\x76\x6e\x30\x3c\xb6",
                false,
            ),
            (b"\x00\x20\x00\x80\x04\x31\x32\x33\x34", false),
            (b"\x00\x2C\x02\x80\x04\x31\x32\x33\x34", false),
            (b"\x00\x87\x03\x9B\x04\x7C\x02\x81\x00", false),
            (b"\x00\x82\x00\x00\x00", false),
            (b"", false),
        ] {
            assert_eq!(is_read_only(apdu), read_only, "{apdu:02X?}");
        }
    }

    #[test]
    fn parses_selectors() {
        assert_eq!(ReaderSelector::parse(None).unwrap(), ReaderSelector::Auto);
        assert_eq!(
            ReaderSelector::parse(Some("1")).unwrap(),
            ReaderSelector::Index(1)
        );
        assert_eq!(
            ReaderSelector::parse(Some("@Virtual PCD 00 00")).unwrap(),
            ReaderSelector::Exact("Virtual PCD 00 00".into())
        );
        assert_eq!(
            ReaderSelector::parse(Some("yubi")).unwrap(),
            ReaderSelector::Substring("yubi".into())
        );
        assert!(ReaderSelector::parse(Some("")).is_err());
        assert!(ReaderSelector::parse(Some("99999999999999999999999")).is_err());
    }

    #[test]
    fn chooses_readers() {
        let rs = vec![
            reader(0, "Virtual PCD 00 00", true),
            reader(1, "Virtual PCD 00 01", false),
            reader(2, "Yubico YubiKey OTP+FIDO+CCID 00 00", true),
        ];
        let auto = choose(&rs, &ReaderSelector::Auto).unwrap_err();
        assert_eq!(auto.exit_code(), 2);
        assert!(auto.to_string().contains("Yubico"), "{auto}");
        assert_eq!(choose(&rs, &ReaderSelector::Index(1)).unwrap().index, 1);
        assert_eq!(
            choose(&rs, &ReaderSelector::Substring("YUBI".into()))
                .unwrap()
                .index,
            2
        );
        assert_eq!(
            choose(&rs, &ReaderSelector::Substring("pcd".into()))
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            choose(&rs, &ReaderSelector::Exact("Virtual PCD 00".into()))
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(choose(&rs[..2], &ReaderSelector::Auto).unwrap().index, 0);
        assert_eq!(
            choose(&rs[1..2], &ReaderSelector::Auto)
                .unwrap_err()
                .exit_code(),
            3
        );
        assert_eq!(
            choose(&[], &ReaderSelector::Auto).unwrap_err().exit_code(),
            3
        );
    }
}
