//! ISO/IEC 7816-3 Answer-To-Reset (ATR) decoding.
//!
//! [`Atr::parse`] accepts only a well-formed ATR. [`Atr::parse_lenient`] decodes
//! as much as it can of a damaged one and returns the problems beside it, so
//! `info` can show both. [`Atr::describe`] renders the decode as lines a person
//! reads (TS, T0, every interface byte, the historical bytes, TCK), and
//! [`lookup_names`] finds the card in the system copy of pcsc-tools'
//! `smartcard_list.txt`, which is the only I/O in this module.
//!
//! This file holds the structure (the types and the decode of TS, T0, the interface bytes
//! and TCK); `historical` decodes the historical bytes (ISO/IEC 7816-4), `describe` turns a
//! decode into lines, and `names` looks the ATR up in the list.
//!
//! Nothing here panics, whatever the input.

mod describe;
mod historical;
mod names;

use std::fmt::Write as _;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use historical::decode_historical;
pub use historical::{CompactTlv, HistoricalBytes, HistoricalFormat, StatusIndicator};
pub use names::{lookup_names, lookup_names_in, SMARTCARD_LIST_PATH};

/// Longest ATR that ISO/IEC 7816-3 allows: TS plus at most 32 bytes.
pub const MAX_ATR_LEN: usize = 33;

/// Why a byte string is not a well-formed ATR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtrError {
    #[error("empty ATR (no card, or the reader returned nothing)")]
    Empty,
    #[error("invalid TS byte {0:02X}: expected 3B (direct convention) or 3F (inverse convention)")]
    BadTs(u8),
    #[error(
        "ATR truncated: its structure announces at least {expected} bytes but only {actual} are present"
    )]
    Truncated { expected: usize, actual: usize },
    #[error(
        "ATR has unexpected trailing bytes: it should end after {expected} bytes but {actual} are present"
    )]
    ExtraBytes { expected: usize, actual: usize },
    #[error("wrong TCK: expected {expected:02X}, found {found:02X}")]
    BadTck { expected: u8, found: u8 },
    #[error("TCK missing: it is required because a protocol other than T=0 is offered")]
    MissingTck,
    #[error("ATR too long: {0} bytes (ISO/IEC 7816-3 allows at most 33)")]
    TooLong(usize),
    #[error("invalid ATR hex string: {0}")]
    InvalidHex(String),
}

/// Bit convention announced by TS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Convention {
    /// TS = 3B.
    Direct,
    /// TS = 3F.
    Inverse,
}

/// Interface bytes TAi, TBi, TCi, TDi of one group `i` (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceGroup {
    /// The group number `i`.
    pub index: usize,
    /// The protocol T named by TD(i-1), to which this group relates; `None`
    /// for group 1, whose bytes are global. (TA2/TB2 are global as well, TC2
    /// is specific to T=0, and T=15 marks global bytes.)
    pub for_protocol: Option<u8>,
    #[serde(serialize_with = "ser_opt_byte")]
    pub ta: Option<u8>,
    #[serde(serialize_with = "ser_opt_byte")]
    pub tb: Option<u8>,
    #[serde(serialize_with = "ser_opt_byte")]
    pub tc: Option<u8>,
    #[serde(serialize_with = "ser_opt_byte")]
    pub td: Option<u8>,
}

impl InterfaceGroup {
    /// The protocol T named by this group's TD, if it has one.
    pub fn td_protocol(&self) -> Option<u8> {
        self.td.map(|td| td & 0x0F)
    }
}

/// Outcome of the TCK check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TckStatus {
    /// Only T=0 is offered: there must be no TCK.
    NotRequired,
    /// XOR of T0..TCK is 00.
    Ok,
    /// The TCK present is not the XOR of T0 up to it.
    Wrong {
        #[serde(serialize_with = "ser_byte")]
        expected: u8,
    },
    /// A TCK is required but the ATR ends before it.
    Missing,
    /// The ATR ends inside the interface bytes, so whether a TCK is required
    /// is not known.
    Unknown,
}

/// T=1 error detection code (first TCi for T=1, bit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorDetection {
    Lrc,
    Crc,
}

/// Clock stop indicator X (first TAi for T=15, bits 8-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockStop {
    NotSupported,
    StateL,
    StateH,
    NoPreference,
}

/// TA2: the card starts in specific mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpecificMode {
    /// Protocol T to use.
    pub protocol: u8,
    /// b8 = 0: the card can change to negotiable mode (by a warm reset).
    pub can_change: bool,
    /// b5 = 1: Fi/Di are defined implicitly, not by TA1.
    pub implicit_parameters: bool,
}

/// T=1 parameters, with the ISO/IEC 7816-3 defaults where a byte is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct T1Parameters {
    /// Information field size for the card (first TAi for T=1, default 32).
    pub ifsc: u8,
    /// Block waiting integer (first TBi for T=1, bits 8-5, default 4).
    pub bwi: u8,
    /// Character waiting integer (first TBi for T=1, bits 4-1, default 13).
    pub cwi: u8,
    /// First TCi for T=1, default LRC.
    pub error_detection: ErrorDetection,
}

impl Default for T1Parameters {
    fn default() -> Self {
        T1Parameters {
            ifsc: 32,
            bwi: 4,
            cwi: 13,
            error_detection: ErrorDetection::Lrc,
        }
    }
}

/// The transmission parameters the interface bytes set, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parameters {
    /// Clock rate conversion integer Fi (TA1, default 372); `None` for an RFU code.
    pub fi: Option<u16>,
    /// Baud rate adjustment integer Di (TA1, default 1); `None` for an RFU code.
    pub di: Option<u8>,
    /// Maximum clock frequency in kHz that goes with Fi (default 5000).
    pub f_max_khz: Option<u32>,
    /// Extra guard time N (TC1, default 0; 255 = minimum guard time).
    pub extra_guard_time: u8,
    /// TA2, when present.
    pub specific_mode: Option<SpecificMode>,
    /// T=0 work waiting integer WI (TC2, default 10), when T=0 is offered.
    pub t0_wi: Option<u8>,
    /// T=1 parameters, when T=1 is offered.
    pub t1: Option<T1Parameters>,
    /// Clock stop indicator (first TAi for T=15), when present.
    pub clock_stop: Option<ClockStop>,
    /// Classes of operating conditions accepted ('A' 5 V, 'B' 3 V, 'C' 1.8 V),
    /// from the first TAi for T=15, when present.
    pub classes: Option<Vec<char>>,
    /// Standard or proprietary use of contact C6 (first TBi for T=15), when present.
    #[serde(serialize_with = "ser_opt_byte")]
    pub spu: Option<u8>,
}

/// A decoded ATR.
///
/// From [`Atr::parse`] it is well formed. From [`Atr::parse_lenient`] it holds
/// what could be read: the historical bytes may be fewer than K, the TCK
/// missing or wrong ([`Atr::tck_status`]) and bytes may follow the end
/// ([`Atr::extra_bytes`]).
#[derive(Debug, Clone, Serialize)]
pub struct Atr {
    #[serde(rename = "hex", serialize_with = "ser_hex")]
    raw: Vec<u8>,
    convention: Convention,
    #[serde(serialize_with = "ser_byte")]
    ts: u8,
    #[serde(serialize_with = "ser_byte")]
    t0: u8,
    /// K, the number of historical bytes T0 announces.
    historical_count: u8,
    interface_groups: Vec<InterfaceGroup>,
    /// Interface bytes announced but absent ("TC1", "TD1"): the ATR ends
    /// inside its interface bytes.
    missing_interface_bytes: Vec<String>,
    protocols: Vec<u8>,
    parameters: Parameters,
    #[serde(serialize_with = "ser_hex")]
    historical: Vec<u8>,
    historical_decoded: HistoricalBytes,
    #[serde(serialize_with = "ser_opt_byte")]
    tck: Option<u8>,
    tck_status: TckStatus,
    #[serde(serialize_with = "ser_hex")]
    extra: Vec<u8>,
}

impl Atr {
    /// Parse a well-formed ATR; the first problem found is the error.
    pub fn parse(bytes: &[u8]) -> Result<Atr, AtrError> {
        match decode(bytes) {
            (Some(atr), problems) if problems.is_empty() => Ok(atr),
            // No decode always comes with a problem; Empty is never reached.
            (_, problems) => Err(problems.into_iter().next().unwrap_or(AtrError::Empty)),
        }
    }

    /// Decode what can be decoded and list every problem found.
    ///
    /// The ATR is `None` only when there is nothing to decode (empty input,
    /// invalid TS, or TS alone). The list is empty exactly when
    /// [`Atr::parse`] succeeds.
    pub fn parse_lenient(bytes: &[u8]) -> (Option<Atr>, Vec<AtrError>) {
        decode(bytes)
    }

    /// The bytes as received, including any trailing extra bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Upper-case hex, bytes separated by spaces: `3B 8D 01 ...`.
    pub fn hex(&self) -> String {
        spaced_hex(&self.raw)
    }

    /// Direct (TS = 3B) or inverse (TS = 3F).
    pub fn convention(&self) -> Convention {
        self.convention
    }

    /// The initial character TS.
    pub fn ts(&self) -> u8 {
        self.ts
    }

    /// The format byte T0: Y1 in the high nibble, K in the low one.
    pub fn t0(&self) -> u8 {
        self.t0
    }

    /// K: how many historical bytes T0 announces (may exceed
    /// `historical().len()` for a truncated ATR).
    pub fn historical_count(&self) -> u8 {
        self.historical_count
    }

    /// The interface byte groups that hold at least one byte, in order.
    pub fn interface_groups(&self) -> &[InterfaceGroup] {
        &self.interface_groups
    }

    /// Protocols offered, in the order the TDi name them, without T=15
    /// (which marks global bytes, not a protocol). T=0 when no TDi names one.
    pub fn protocols(&self) -> Vec<u8> {
        self.protocols.clone()
    }

    /// Transmission parameters from the interface bytes, defaults applied.
    pub fn parameters(&self) -> &Parameters {
        &self.parameters
    }

    /// The historical bytes present (fewer than K if the ATR is truncated).
    pub fn historical(&self) -> &[u8] {
        &self.historical
    }

    /// The historical bytes decoded per ISO/IEC 7816-4.
    pub fn historical_info(&self) -> &HistoricalBytes {
        &self.historical_decoded
    }

    /// The TCK byte, when the ATR has one.
    pub fn tck(&self) -> Option<u8> {
        self.tck
    }

    /// Whether a TCK is required, and if so whether it is present and right.
    pub fn tck_status(&self) -> TckStatus {
        self.tck_status
    }

    /// Bytes received after the end of the ATR (lenient parse only).
    pub fn extra_bytes(&self) -> &[u8] {
        &self.extra
    }

    /// The ATR ends before all the bytes its structure announces.
    pub fn is_truncated(&self) -> bool {
        !self.missing_interface_bytes.is_empty()
            || self.historical.len() < usize::from(self.historical_count)
    }
}

impl FromStr for Atr {
    type Err = AtrError;

    /// Strict parse of hex text such as `3B 02 14 50` or `3b:02:14:50`.
    fn from_str(s: &str) -> Result<Atr, AtrError> {
        Atr::parse(&bytes_from_hex(s)?)
    }
}

/// Bytes from hex text; spaces, tabs and ':' between digits are ignored.
pub fn bytes_from_hex(s: &str) -> Result<Vec<u8>, AtrError> {
    let mut digits = Vec::with_capacity(s.len());
    for c in s.chars() {
        if c.is_whitespace() || c == ':' {
            continue;
        }
        match c.to_digit(16) {
            Some(d) => digits.push(d as u8),
            None => return Err(AtrError::InvalidHex(format!("unexpected character {c:?}"))),
        }
    }
    if digits.len() % 2 != 0 {
        return Err(AtrError::InvalidHex("odd number of hex digits".to_string()));
    }
    Ok(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

// ---------------------------------------------------------------------------
// Structure

fn decode(bytes: &[u8]) -> (Option<Atr>, Vec<AtrError>) {
    let Some(&ts) = bytes.first() else {
        return (None, vec![AtrError::Empty]);
    };
    let convention = match ts {
        0x3B => Convention::Direct,
        0x3F => Convention::Inverse,
        other => return (None, vec![AtrError::BadTs(other)]),
    };
    let Some(&t0) = bytes.get(1) else {
        return (
            None,
            vec![AtrError::Truncated {
                expected: 2,
                actual: 1,
            }],
        );
    };

    let len = bytes.len();
    let mut problems = Vec::new();
    if len > MAX_ATR_LEN {
        problems.push(AtrError::TooLong(len));
    }

    let k = usize::from(t0 & 0x0F);
    let mut groups = Vec::new();
    let mut pos = 2;
    let mut y = t0 >> 4;
    let mut index = 1;
    let mut for_protocol = None;
    let mut tck_required = false;
    let mut missing_interface = Vec::new();
    loop {
        let mut group = InterfaceGroup {
            index,
            for_protocol,
            ta: None,
            tb: None,
            tc: None,
            td: None,
        };
        for (bit, letter, slot) in [
            (0x1, 'A', &mut group.ta),
            (0x2, 'B', &mut group.tb),
            (0x4, 'C', &mut group.tc),
            (0x8, 'D', &mut group.td),
        ] {
            if y & bit != 0 {
                match bytes.get(pos) {
                    Some(&b) => {
                        *slot = Some(b);
                        pos += 1;
                    }
                    None => missing_interface.push(format!("T{letter}{index}")),
                }
            }
        }
        let td = group.td;
        if group.ta.is_some() || group.tb.is_some() || group.tc.is_some() || td.is_some() {
            groups.push(group);
        }
        // Once a byte is missing every later one is too, so `td` is None then.
        let Some(td) = td else { break };
        let t = td & 0x0F;
        tck_required |= t != 0;
        for_protocol = Some(t);
        y = td >> 4;
        index += 1;
    }

    let mut historical = Vec::new();
    let mut tck = None;
    let mut extra = Vec::new();
    let tck_status;
    if !missing_interface.is_empty() {
        problems.push(AtrError::Truncated {
            expected: pos + missing_interface.len() + k + usize::from(tck_required),
            actual: len,
        });
        tck_status = if tck_required {
            TckStatus::Missing
        } else {
            TckStatus::Unknown
        };
    } else if pos + k > len {
        historical = bytes.get(pos..).unwrap_or_default().to_vec();
        problems.push(AtrError::Truncated {
            expected: pos + k + usize::from(tck_required),
            actual: len,
        });
        tck_status = if tck_required {
            TckStatus::Missing
        } else {
            TckStatus::NotRequired
        };
    } else {
        let hist_end = pos + k;
        historical = bytes.get(pos..hist_end).unwrap_or_default().to_vec();
        let mut end = hist_end;
        if tck_required {
            match bytes.get(hist_end) {
                None => {
                    problems.push(AtrError::MissingTck);
                    tck_status = TckStatus::Missing;
                }
                Some(&found) => {
                    end += 1;
                    tck = Some(found);
                    let expected = xor(bytes.get(1..hist_end).unwrap_or_default());
                    if expected == found {
                        tck_status = TckStatus::Ok;
                    } else {
                        problems.push(AtrError::BadTck { expected, found });
                        tck_status = TckStatus::Wrong { expected };
                    }
                }
            }
        } else {
            tck_status = TckStatus::NotRequired;
        }
        if len > end {
            extra = bytes.get(end..).unwrap_or_default().to_vec();
            problems.push(AtrError::ExtraBytes {
                expected: end,
                actual: len,
            });
        }
    }

    let protocols = offered_protocols(&groups);
    let parameters = parameters(&classify(&groups), &protocols);
    let historical_decoded = decode_historical(&historical);
    let atr = Atr {
        raw: bytes.to_vec(),
        convention,
        ts,
        t0,
        historical_count: t0 & 0x0F,
        interface_groups: groups,
        missing_interface_bytes: missing_interface,
        protocols,
        parameters,
        historical,
        historical_decoded,
        tck,
        tck_status,
        extra,
    };
    (Some(atr), problems)
}

fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

fn offered_protocols(groups: &[InterfaceGroup]) -> Vec<u8> {
    let mut protocols = Vec::new();
    for t in groups.iter().filter_map(InterfaceGroup::td_protocol) {
        if t != 15 && !protocols.contains(&t) {
            protocols.push(t);
        }
    }
    if protocols.is_empty() {
        protocols.push(0);
    }
    protocols
}

/// What an interface byte means, by its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    FiDi,
    Vpp1,
    GuardTime,
    SpecificMode,
    Vpp2,
    T0Wi,
    Structure,
    T1Ifsc,
    T1Waiting,
    T1ErrorDetection,
    T15ClockClass,
    T15Spu,
    /// Relates to protocol T, not decoded (or not defined by ISO/IEC 7816-3).
    Other(u8),
}

struct InterfaceByte {
    letter: char,
    index: usize,
    for_protocol: Option<u8>,
    value: u8,
    role: Role,
}

impl InterfaceByte {
    fn name(&self) -> String {
        format!("T{}{}", self.letter, self.index)
    }
}

/// Every interface byte with its meaning: TA1/TB1/TC1 and TA2/TB2 are global,
/// TC2 is for T=0; from group 3 on, the first TA/TB/TC after a TD naming T=1
/// (or T=15) carries the T=1 (or global) parameters.
fn classify(groups: &[InterfaceGroup]) -> Vec<InterfaceByte> {
    // Seen yet: first TA, TB, TC for T=1, then first TA, TB for T=15.
    let mut seen = [false; 5];
    let mut out = Vec::new();
    for g in groups {
        let t = g.for_protocol.unwrap_or(0);
        let mut first = |slot: usize| !std::mem::replace(&mut seen[slot], true);
        for (letter, value) in [('A', g.ta), ('B', g.tb), ('C', g.tc), ('D', g.td)] {
            let Some(value) = value else { continue };
            // A guard runs only when its letter, group and protocol match.
            let role = match (letter, g.index, t) {
                ('A', 1, _) => Role::FiDi,
                ('A', 2, _) => Role::SpecificMode,
                ('A', _, 1) if first(0) => Role::T1Ifsc,
                ('A', _, 15) if first(3) => Role::T15ClockClass,
                ('B', 1, _) => Role::Vpp1,
                ('B', 2, _) => Role::Vpp2,
                ('B', _, 1) if first(1) => Role::T1Waiting,
                ('B', _, 15) if first(4) => Role::T15Spu,
                ('C', 1, _) => Role::GuardTime,
                ('C', 2, _) => Role::T0Wi,
                ('C', _, 1) if first(2) => Role::T1ErrorDetection,
                ('D', _, _) => Role::Structure,
                _ => Role::Other(t),
            };
            out.push(InterfaceByte {
                letter,
                index: g.index,
                for_protocol: g.for_protocol,
                value,
                role,
            });
        }
    }
    out
}

/// ISO/IEC 7816-3 table 7: Fi and f(max) in kHz for the high nibble of TA1.
fn fi_fmax(code: u8) -> (Option<u16>, Option<u32>) {
    match code & 0x0F {
        0 => (Some(372), Some(4000)),
        1 => (Some(372), Some(5000)),
        2 => (Some(558), Some(6000)),
        3 => (Some(744), Some(8000)),
        4 => (Some(1116), Some(12000)),
        5 => (Some(1488), Some(16000)),
        6 => (Some(1860), Some(20000)),
        9 => (Some(512), Some(5000)),
        0xA => (Some(768), Some(7500)),
        0xB => (Some(1024), Some(10000)),
        0xC => (Some(1536), Some(15000)),
        0xD => (Some(2048), Some(20000)),
        _ => (None, None),
    }
}

/// ISO/IEC 7816-3 table 8: Di for the low nibble of TA1.
fn di(code: u8) -> Option<u8> {
    match code & 0x0F {
        1 => Some(1),
        2 => Some(2),
        3 => Some(4),
        4 => Some(8),
        5 => Some(16),
        6 => Some(32),
        7 => Some(64),
        8 => Some(12),
        9 => Some(20),
        _ => None,
    }
}

fn clock_stop(b: u8) -> ClockStop {
    match b >> 6 {
        0 => ClockStop::NotSupported,
        1 => ClockStop::StateL,
        2 => ClockStop::StateH,
        _ => ClockStop::NoPreference,
    }
}

fn classes(b: u8) -> Vec<char> {
    [(0x01, 'A'), (0x02, 'B'), (0x04, 'C')]
        .into_iter()
        .filter(|(bit, _)| b & bit != 0)
        .map(|(_, class)| class)
        .collect()
}

fn parameters(bytes: &[InterfaceByte], protocols: &[u8]) -> Parameters {
    let mut p = Parameters {
        fi: Some(372),
        di: Some(1),
        f_max_khz: Some(5000),
        extra_guard_time: 0,
        specific_mode: None,
        t0_wi: None,
        t1: None,
        clock_stop: None,
        classes: None,
        spu: None,
    };
    let mut wi = 10;
    let mut t1 = T1Parameters::default();
    for b in bytes {
        let v = b.value;
        match b.role {
            Role::FiDi => {
                (p.fi, p.f_max_khz) = fi_fmax(v >> 4);
                p.di = di(v);
            }
            Role::GuardTime => p.extra_guard_time = v,
            Role::SpecificMode => {
                p.specific_mode = Some(SpecificMode {
                    protocol: v & 0x0F,
                    can_change: v & 0x80 == 0,
                    implicit_parameters: v & 0x10 != 0,
                })
            }
            Role::T0Wi => wi = v,
            Role::T1Ifsc => t1.ifsc = v,
            Role::T1Waiting => {
                t1.bwi = v >> 4;
                t1.cwi = v & 0x0F;
            }
            Role::T1ErrorDetection => {
                t1.error_detection = if v & 0x01 != 0 {
                    ErrorDetection::Crc
                } else {
                    ErrorDetection::Lrc
                }
            }
            Role::T15ClockClass => {
                p.clock_stop = Some(clock_stop(v));
                p.classes = Some(classes(v));
            }
            Role::T15Spu => p.spu = Some(v),
            Role::Vpp1 | Role::Vpp2 | Role::Structure | Role::Other(_) => {}
        }
    }
    p.t0_wi = protocols.contains(&0).then_some(wi);
    p.t1 = protocols.contains(&1).then_some(t1);
    p
}

// ---------------------------------------------------------------------------
// Formatting and serialisation helpers

fn spaced_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

fn ascii(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (0x20..0x7F).contains(&b) {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect()
}

fn ser_hex<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&spaced_hex(bytes))
}

fn ser_byte<S: Serializer>(b: &u8, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{b:02X}"))
}

fn ser_opt_byte<S: Serializer>(b: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&format!("{b:02X}")),
        None => s.serialize_none(),
    }
}

fn ser_opt_sw<S: Serializer>(sw: &Option<u16>, s: S) -> Result<S::Ok, S::Error> {
    match sw {
        Some(sw) => s.serialize_str(&format!("{sw:04X}")),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn atr(s: &str) -> Vec<u8> {
        bytes_from_hex(s).expect("test ATR hex")
    }

    pub(super) fn parsed(s: &str) -> Atr {
        Atr::parse(&atr(s)).expect("valid ATR")
    }

    fn lines_contain(atr: &Atr, needle: &str) -> bool {
        atr.describe().iter().any(|l| l.contains(needle))
    }

    // Real ATRs, from cards and from pcsc-tools' smartcard_list.txt. tests/pyscard.rs reads
    // every constant between this line and "End of the real ATRs" and checks that pyscard's
    // ATR parser, reading the ATR through pcscd, decodes it as we do.
    pub(super) const MS_VSC: &str = "3B 8D 01 80 FB A0 00 00 03 97 42 54 46 59 04 01 CF";
    pub(super) const YUBIKEY_5_NFC: &str =
        "3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 40";
    const FEITIAN: &str = "3B 9F 95 81 31 FE 9F 00 66 46 53 05 01 00 11 71 DF 00 00 03 90 00 80";
    const GPK8000: &str = "3B A7 00 40 18 80 65 A2 08 01 01 52";
    pub(super) const MULTIFLEX: &str = "3B 02 14 50";
    const DSS_ROM10: &str =
        "3F FF 95 00 FF 91 81 71 A0 47 00 44 4E 41 53 50 30 31 30 20 52 65 76 41 32 30 48";
    const ATHENA_T0_INVERSE: &str = "3F 96 18 80 01 80 51 00 61 10 30 9F";
    pub(super) const GEMXPLORE: &str = "3F 2F 00 80 69 AF 03 07 01 59 00 00 0A 0E 83 3E 9F 16";
    // smartcard_list.txt: "Yubico Yubikey 4 OTP+CCID".
    const YUBIKEY_4: &str = "3B F8 13 00 00 81 31 FE 15 59 75 62 69 6B 65 79 34 D4";
    // "Yubikey 5 NFC (via NFC)".
    const YUBIKEY_5_NFC_CONTACTLESS: &str = "3B 8D 80 01 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 F9";
    // "NIST demo PIV card".
    const NIST_PIV_DEMO: &str = "3B 8F 80 01 80 73 CC 91 CB F9 A0 00 00 03 08 00 00 10 00 29";
    // "Gemalto IDPrime MD 840" (T=0 only: no TD1, no TCK).
    const IDPRIME_MD_840: &str = "3B 7F 96 00 00 80 31 80 65 B0 85 03 00 EF 12 0F FE 82 90 00";
    // "IDPrime 930 FIPS Level 2 (T=1 CT=96)".
    const IDPRIME_930: &str =
        "3B FF 96 00 00 81 31 FE 43 80 31 80 65 B0 84 61 60 FB 12 0F FD 82 90 00 0C";
    // "HID Global - Crescendo C2300": TD3 names T=15 (global bytes in TA4).
    const CRESCENDO_C2300: &str = "3B D5 96 FF 81 91 FE 1F C3 43 32 33 30 30 CC";
    // "Crescendo Key (USB Type-A)".
    const CRESCENDO_KEY: &str = "3B D9 96 FF 81 91 FE 1F C3 43 32 33 30 30 2D 4B 45 59 BA";
    // End of the real ATRs.

    #[test]
    fn microsoft_virtual_smart_card() {
        let a = parsed(MS_VSC);
        assert_eq!(a.hex(), MS_VSC);
        assert_eq!(a.convention(), Convention::Direct);
        assert_eq!(a.t0(), 0x8D);
        assert_eq!(a.historical_count(), 13);
        assert_eq!(
            a.interface_groups(),
            &[InterfaceGroup {
                index: 1,
                for_protocol: None,
                ta: None,
                tb: None,
                tc: None,
                td: Some(0x01),
            }]
        );
        // TD1 names T=1, so T=0 is not offered.
        assert_eq!(a.protocols(), vec![1]);
        assert_eq!(
            a.historical(),
            atr("80 FB A0 00 00 03 97 42 54 46 59 04 01")
        );
        assert_eq!(a.tck(), Some(0xCF));
        assert_eq!(a.tck_status(), TckStatus::Ok);
        let p = a.parameters();
        assert_eq!((p.fi, p.di, p.f_max_khz), (Some(372), Some(1), Some(5000)));
        assert_eq!(p.t0_wi, None);
        assert_eq!(p.t1, Some(T1Parameters::default()));
        let h = a.historical_info();
        assert_eq!(h.category, Some(0x80));
        assert_eq!(h.format, HistoricalFormat::CompactTlv);
        assert_eq!(h.objects.len(), 1);
        assert_eq!(h.objects[0].tag, 0xF);
        assert_eq!(h.objects[0].value, atr("A0 00 00 03 97 42 54 46 59 04 01"));
        assert!(!h.objects[0].is_truncated());
        assert_eq!(h.status, None);
        assert!(lines_contain(
            &a,
            "TD1 = 01: Y2 = 0000 (no interface bytes follow), protocol T=1"
        ));
        assert!(lines_contain(&a, "TCK = CF: TCK OK"));
        assert!(lines_contain(&a, "Protocols offered: T=1"));
    }

    #[test]
    fn yubikey_5_nfc() {
        let a = parsed(YUBIKEY_5_NFC);
        assert_eq!(a.historical_count(), 13);
        let g = a.interface_groups();
        assert_eq!(g.len(), 3);
        assert_eq!(
            (g[0].ta, g[0].tb, g[0].tc, g[0].td),
            (Some(0x13), Some(0), Some(0), Some(0x81))
        );
        assert_eq!((g[1].for_protocol, g[1].td), (Some(1), Some(0x31)));
        assert_eq!((g[1].ta, g[1].tb, g[1].tc), (None, None, None));
        assert_eq!(
            (g[2].for_protocol, g[2].ta, g[2].tb),
            (Some(1), Some(0xFE), Some(0x15))
        );
        assert_eq!(a.protocols(), vec![1]);
        let p = a.parameters();
        // TA1 = 13: Fi code 1 -> 372 (5 MHz), Di code 3 -> 4.
        assert_eq!((p.fi, p.di, p.f_max_khz), (Some(372), Some(4), Some(5000)));
        assert_eq!(p.extra_guard_time, 0);
        assert_eq!(
            p.t1,
            Some(T1Parameters {
                ifsc: 254,
                bwi: 1,
                cwi: 5,
                error_detection: ErrorDetection::Lrc,
            })
        );
        let h = a.historical_info();
        assert_eq!(h.format, HistoricalFormat::CompactTlv);
        assert_eq!(h.objects.len(), 2);
        assert_eq!(
            (h.objects[0].tag, h.objects[0].value.clone()),
            (7, atr("C0 21 C0"))
        );
        assert_eq!(
            (h.objects[1].tag, h.objects[1].value.clone()),
            (5, b"YubiKey".to_vec())
        );
        assert_eq!(a.tck(), Some(0x40));
        assert_eq!(a.tck_status(), TckStatus::Ok);
    }

    #[test]
    fn yubikey_description_reads_like_a_decoder() {
        let expected = [
            "TS = 3B: direct convention",
            "T0 = FD: Y1 = 1111 (TA1 TB1 TC1 TD1 follow), K = 13 historical byte(s)",
            "TA1 = 13: Fi = 372, Di = 4, 93 cycles/ETU (43010 bit/s at 4 MHz, 53763 bit/s at fmax = 5 MHz)",
            "TB1 = 00: VPP not connected (TB1 is deprecated)",
            "TC1 = 00: extra guard time N = 0 (character guard time 12 etu)",
            "TD1 = 81: Y2 = 1000 (TD2 follows), protocol T=1",
            "TD2 = 31: Y3 = 0011 (TA3 TB3 follow), protocol T=1",
            "TA3 = FE: T=1 IFSC = 254 bytes",
            "TB3 = 15: T=1 BWI = 1, CWI = 5 (CWT = 11 + 2^5 = 43 etu, BWT = 11 etu + 2^1 x 960 x 372/f, about 179 ms at 4 MHz)",
            "Historical bytes (K = 13): 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 \".s.!.WYubiKey\"",
            "  Category indicator 80: compact-TLV data objects (a status indicator may come last)",
            "  73: tag 7 (card capabilities), 3 byte(s): C0 21 C0",
            "    selection methods C0: DF selection by full DF name, DF selection by partial DF name",
            "    data coding 21: write functions proprietary, FF as first tag byte invalid, data unit 2 quartet(s)",
            "    C0: command chaining, extended Lc and Le fields, no logical channels",
            "  57: tag 5 (card issuer's data), 7 byte(s): 59 75 62 69 4B 65 79 \"YubiKey\"",
            "Protocols offered: T=1",
            "TCK = 40: TCK OK",
        ];
        assert_eq!(parsed(YUBIKEY_5_NFC).describe(), expected);
    }

    #[test]
    fn feitian_atr_offers_t1_and_carries_a_tck() {
        // TD1 = 81 names T=1, so this ATR needs (and has) a TCK: 80.
        let a = parsed(FEITIAN);
        assert_eq!(a.protocols(), vec![1]);
        assert_eq!(a.tck(), Some(0x80));
        assert_eq!(a.tck_status(), TckStatus::Ok);
        let p = a.parameters();
        // TA1 = 95: Fi code 9 -> 512 (5 MHz), Di code 5 -> 16.
        assert_eq!((p.fi, p.di, p.f_max_khz), (Some(512), Some(16), Some(5000)));
        // TD2 = 31 -> TA3 = FE (IFSC 254), TB3 = 9F (BWI 9, CWI 15).
        let t1 = p.t1.expect("T=1 parameters");
        assert_eq!((t1.ifsc, t1.bwi, t1.cwi), (254, 9, 15));
        let h = a.historical_info();
        assert_eq!(h.format, HistoricalFormat::CompactTlvWithStatus);
        let tags: Vec<(u8, Vec<u8>)> = h.objects.iter().map(|o| (o.tag, o.value.clone())).collect();
        assert_eq!(
            tags,
            vec![
                (6, atr("46 53 05 01 00 11")),
                (7, vec![0xDF]),
                (0, vec![]),
                (0, vec![]),
            ]
        );
        assert_eq!(
            h.status,
            Some(StatusIndicator {
                lcs: Some(0x03),
                sw: Some(0x9000),
            })
        );
        assert!(lines_contain(
            &a,
            "  Status indicator: LCS = 03 (initialisation state), SW = 90 00 (no error)"
        ));
        // Without its last byte the ATR lacks the TCK.
        let bytes = atr(FEITIAN);
        assert_eq!(
            Atr::parse(&bytes[..bytes.len() - 1]).unwrap_err(),
            AtrError::MissingTck
        );
    }

    #[test]
    fn t0_with_explicit_td1_has_no_tck() {
        let a = parsed(GPK8000);
        assert_eq!(
            a.interface_groups(),
            &[
                InterfaceGroup {
                    index: 1,
                    for_protocol: None,
                    ta: None,
                    tb: Some(0x00),
                    tc: None,
                    td: Some(0x40),
                },
                InterfaceGroup {
                    index: 2,
                    for_protocol: Some(0),
                    ta: None,
                    tb: None,
                    tc: Some(0x18),
                    td: None,
                },
            ]
        );
        assert_eq!(a.protocols(), vec![0]);
        assert_eq!(a.parameters().t0_wi, Some(0x18));
        assert_eq!(a.parameters().t1, None);
        assert_eq!(a.tck(), None);
        assert_eq!(a.tck_status(), TckStatus::NotRequired);
        let h = a.historical_info();
        assert_eq!(h.objects.len(), 1);
        assert_eq!(
            (h.objects[0].tag, h.objects[0].value.clone()),
            (6, atr("A2 08 01 01 52"))
        );
        assert!(lines_contain(
            &a,
            "TC2 = 18: T=0 work waiting integer WI = 24"
        ));
        assert!(lines_contain(
            &a,
            "TCK: absent, not required (only T=0 offered)"
        ));
    }

    #[test]
    fn simplest_t0_atr() {
        let a = parsed(MULTIFLEX);
        assert!(a.interface_groups().is_empty());
        assert_eq!(a.protocols(), vec![0]);
        assert_eq!(a.historical(), &[0x14, 0x50]);
        assert_eq!(a.historical_info().format, HistoricalFormat::Proprietary);
        assert_eq!(a.tck_status(), TckStatus::NotRequired);
        let p = a.parameters();
        assert_eq!((p.fi, p.di, p.t0_wi), (Some(372), Some(1), Some(10)));
        assert!(lines_contain(
            &a,
            "Protocols offered: T=0 (implicit: no TD1)"
        ));
        assert!(lines_contain(
            &a,
            "T0 = 02: Y1 = 0000 (no interface bytes follow), K = 2"
        ));
    }

    #[test]
    fn atrs_of_the_piv_idprime_and_crescendo_cards() {
        // (ATR, protocols, TA1, TCK)
        for (hex, protocols, ta1, tck) in [
            (YUBIKEY_4, vec![1], Some(0x13), Some(0xD4)),
            (YUBIKEY_5_NFC_CONTACTLESS, vec![0, 1], None, Some(0xF9)),
            (NIST_PIV_DEMO, vec![0, 1], None, Some(0x29)),
            (IDPRIME_MD_840, vec![0], Some(0x96), None),
            (IDPRIME_930, vec![1], Some(0x96), Some(0x0C)),
            (CRESCENDO_C2300, vec![1], Some(0x96), Some(0xCC)),
            (CRESCENDO_KEY, vec![1], Some(0x96), Some(0xBA)),
        ] {
            let a = parsed(hex);
            assert_eq!(a.hex(), hex);
            assert_eq!(a.protocols(), protocols, "{hex}");
            assert_eq!(a.interface_groups()[0].ta, ta1, "{hex}");
            assert_eq!(a.historical().len(), usize::from(a.historical_count()));
            assert_eq!(a.tck(), tck, "{hex}");
            let status = if tck.is_some() {
                TckStatus::Ok
            } else {
                TckStatus::NotRequired
            };
            assert_eq!(a.tck_status(), status, "{hex}");
        }
        assert_eq!(parsed(YUBIKEY_4).historical(), b"Yubikey4");
        assert_eq!(parsed(CRESCENDO_KEY).historical(), b"C2300-KEY");
        // TD3 = 1F names T=15: TA4 = C3 is the clock stop and classes byte, not a protocol.
        let p = parsed(CRESCENDO_C2300).parameters().clone();
        assert_eq!(p.clock_stop, Some(ClockStop::NoPreference));
        assert_eq!(p.classes, Some(vec!['A', 'B']));
        // TA1 = 96: Fi code 9 -> 512, Di code 6 -> 32.
        assert_eq!((p.fi, p.di), (Some(512), Some(32)));
    }

    #[test]
    fn inverse_convention_t1_with_specific_mode() {
        let a = parsed(DSS_ROM10);
        assert_eq!(a.convention(), Convention::Inverse);
        assert_eq!(a.protocols(), vec![1]);
        let p = a.parameters();
        assert_eq!((p.fi, p.di), (Some(512), Some(16)));
        assert_eq!(p.extra_guard_time, 255);
        assert_eq!(
            p.specific_mode,
            Some(SpecificMode {
                protocol: 1,
                can_change: false,
                implicit_parameters: false,
            })
        );
        assert_eq!(
            p.t1,
            Some(T1Parameters {
                ifsc: 0xA0,
                bwi: 4,
                cwi: 7,
                error_detection: ErrorDetection::Lrc,
            })
        );
        assert_eq!(a.historical(), b"DNASP010 RevA20");
        assert_eq!(a.tck_status(), TckStatus::Ok);
        assert!(lines_contain(&a, "TS = 3F: inverse convention"));
        assert!(lines_contain(
            &a,
            "TA2 = 81: specific mode, protocol T=1, unable to change mode, Fi/Di as in TA1"
        ));
        assert!(lines_contain(&a, "TC3 = 00: T=1 error detection code: LRC"));
    }

    #[test]
    fn inverse_convention_t0_and_t1() {
        let a = parsed(ATHENA_T0_INVERSE);
        // TD1 = 80 names T=0, TD2 = 01 names T=1: a TCK is required.
        assert_eq!(a.protocols(), vec![0, 1]);
        assert_eq!(a.tck(), Some(0x9F));
        assert_eq!(a.tck_status(), TckStatus::Ok);
        // TA1 = 18: Fi 372, Di code 8 -> 12; 372 / 12 = 31 cycles per ETU.
        assert_eq!(
            (a.parameters().fi, a.parameters().di),
            (Some(372), Some(12))
        );
        assert!(lines_contain(&a, "Fi = 372, Di = 12, 31 cycles/ETU"));
        let objects: Vec<(u8, u8, Vec<u8>)> = a
            .historical_info()
            .objects
            .iter()
            .map(|o| (o.tag, o.declared_len, o.value.clone()))
            .collect();
        assert_eq!(
            objects,
            vec![(5, 1, vec![0x00]), (6, 1, vec![0x10]), (3, 0, vec![])]
        );
    }

    #[test]
    fn inverse_convention_sim_status_object_last() {
        let a = parsed(GEMXPLORE);
        assert_eq!(a.convention(), Convention::Inverse);
        assert_eq!(a.protocols(), vec![0]);
        let h = a.historical_info();
        assert_eq!(h.objects.len(), 2);
        assert_eq!((h.objects[0].tag, h.objects[0].value.len()), (6, 9));
        assert_eq!(
            h.status,
            Some(StatusIndicator {
                lcs: Some(0x3E),
                sw: Some(0x9F16),
            })
        );
        assert!(lines_contain(&a, "    LCS = 3E (proprietary), SW = 9F 16"));
    }

    #[test]
    fn t15_global_bytes() {
        // HID iClass SE processor: TA1 = 96, TD1 = 91 (T=1, TA2 TD2),
        // TA2 = 81, TD2 = B1 (T=1, TA3 TB3 TD3), TA3 = FE, TB3 = 55,
        // TD3 = 1F (T=15, TA4), TA4 = C7, K = 0, TCK = D4.
        let a = parsed("3B 90 96 91 81 B1 FE 55 1F C7 D4");
        assert_eq!(a.protocols(), vec![1]);
        assert_eq!(a.tck_status(), TckStatus::Ok);
        let p = a.parameters();
        assert_eq!((p.fi, p.di, p.f_max_khz), (Some(512), Some(32), Some(5000)));
        let t1 = p.t1.expect("T=1");
        assert_eq!((t1.ifsc, t1.bwi, t1.cwi), (254, 5, 5));
        assert_eq!(p.clock_stop, Some(ClockStop::NoPreference));
        assert_eq!(p.classes, Some(vec!['A', 'B', 'C']));
        assert_eq!(p.spu, None);
        assert!(a.historical().is_empty());
        assert!(lines_contain(
            &a,
            "TA4 = C7: global: clock stop, no preference, classes accepted: A (5 V), B (3 V), C (1.8 V)"
        ));
        assert!(lines_contain(
            &a,
            "TD3 = 1F: Y4 = 0001 (TA4 follows), protocol T=15 (global interface bytes follow)"
        ));
        assert!(lines_contain(&a, "Fi = 512, Di = 32, 16 cycles/ETU"));
        assert!(lines_contain(&a, "No historical bytes"));
    }

    #[test]
    fn only_the_first_ta_for_t1_is_ifsc() {
        // TD1 = 81 (T=1, TD2), TD2 = 91 (T=1, TA3 TD3), TA3 = 20,
        // TD3 = 11 (T=1, TA4), TA4 = FE, K = 0,
        // TCK = 80 ^ 81 ^ 91 ^ 20 ^ 11 ^ FE = 5F.
        let a = parsed("3B 80 81 91 20 11 FE 5F");
        assert_eq!(a.parameters().t1.map(|t1| t1.ifsc), Some(0x20));
        assert!(lines_contain(&a, "TA3 = 20: T=1 IFSC = 32 bytes"));
        assert!(lines_contain(&a, "TA4 = FE: relates to T=1, not decoded"));
    }

    #[test]
    fn t15_in_td1_is_flagged_but_decoded() {
        // eToken R2: TD1 = 1F names T=15, which TD1 may not; T=15 still
        // makes the TCK (52) required, and T=0 stays the default protocol.
        let a = parsed("3B 81 1F 00 CC 52");
        assert_eq!(a.protocols(), vec![0]);
        assert_eq!(a.tck_status(), TckStatus::Ok);
        assert!(lines_contain(&a, "protocol T=15 (invalid in TD1)"));
    }

    #[test]
    fn empty_and_bad_ts() {
        assert_eq!(Atr::parse(&[]).unwrap_err(), AtrError::Empty);
        assert_eq!(Atr::parse(&[0x00]).unwrap_err(), AtrError::BadTs(0x00));
        assert_eq!(
            Atr::parse(&atr("00 02 14 50")).unwrap_err(),
            AtrError::BadTs(0x00)
        );
        // Inverse convention as read without the reader converting it.
        assert_eq!(Atr::parse(&[0x03]).unwrap_err(), AtrError::BadTs(0x03));
        let (none, problems) = Atr::parse_lenient(&[]);
        assert!(none.is_none());
        assert_eq!(problems, vec![AtrError::Empty]);
        assert_eq!(
            Atr::parse(&[0x3B]).unwrap_err(),
            AtrError::Truncated {
                expected: 2,
                actual: 1
            }
        );
    }

    #[test]
    fn truncated_interface_bytes() {
        // T0 = FD announces TA1 TB1 TC1 TD1 and 13 historical bytes.
        let bytes = atr("3B FD 13 00");
        assert_eq!(
            Atr::parse(&bytes).unwrap_err(),
            AtrError::Truncated {
                expected: 4 + 2 + 13,
                actual: 4
            }
        );
        let (a, problems) = Atr::parse_lenient(&bytes);
        let a = a.expect("partial decode");
        assert_eq!(problems.len(), 1);
        assert!(a.is_truncated());
        assert_eq!(a.interface_groups()[0].ta, Some(0x13));
        assert_eq!(a.interface_groups()[0].tc, None);
        assert_eq!(a.tck_status(), TckStatus::Unknown);
        assert!(lines_contain(
            &a,
            "The ATR ends here: TC1 TD1 announced but missing"
        ));
        assert!(lines_contain(&a, "Protocols offered: not known"));
        assert!(lines_contain(&a, "Historical bytes: none present (K = 13)"));
    }

    #[test]
    fn truncated_historical_bytes() {
        let full = atr(YUBIKEY_5_NFC);
        let cut = &full[..18];
        assert_eq!(
            Atr::parse(cut).unwrap_err(),
            AtrError::Truncated {
                expected: 23,
                actual: 18
            }
        );
        let (a, problems) = Atr::parse_lenient(cut);
        let a = a.expect("partial decode");
        assert_eq!(problems.len(), 1);
        assert_eq!(a.historical().len(), 9);
        assert_eq!(a.tck_status(), TckStatus::Missing);
        assert_eq!(a.protocols(), vec![1]);
        assert!(lines_contain(
            &a,
            "Historical bytes (K = 13, only 9 present)"
        ));
        // "57" announces 7 bytes, only 3 of which arrived.
        let last = a.historical_info().objects.last().expect("objects").clone();
        assert_eq!((last.tag, last.declared_len, last.value.len()), (5, 7, 3));
        assert!(last.is_truncated());
    }

    #[test]
    fn wrong_tck() {
        let mut bytes = atr(MS_VSC);
        *bytes.last_mut().expect("non-empty") = 0xCE;
        assert_eq!(
            Atr::parse(&bytes).unwrap_err(),
            AtrError::BadTck {
                expected: 0xCF,
                found: 0xCE
            }
        );
        let (a, problems) = Atr::parse_lenient(&bytes);
        let a = a.expect("decoded");
        assert_eq!(problems.len(), 1);
        assert_eq!(a.tck_status(), TckStatus::Wrong { expected: 0xCF });
        assert!(lines_contain(&a, "TCK = CE: TCK wrong: expected CF"));
        assert_eq!(
            a.historical(),
            atr("80 FB A0 00 00 03 97 42 54 46 59 04 01")
        );
    }

    #[test]
    fn missing_tck() {
        let bytes = atr(MS_VSC);
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(Atr::parse(cut).unwrap_err(), AtrError::MissingTck);
        let (a, _) = Atr::parse_lenient(cut);
        let a = a.expect("decoded");
        assert_eq!(a.tck(), None);
        assert_eq!(a.tck_status(), TckStatus::Missing);
        assert!(lines_contain(&a, "TCK missing"));
    }

    #[test]
    fn extra_bytes() {
        // A T=0-only ATR followed by one more byte (an entry of pcsc-tools'
        // list has exactly this ATR): the byte is not a valid TCK either.
        let bytes = atr("3B 02 14 50 11");
        assert_eq!(
            Atr::parse(&bytes).unwrap_err(),
            AtrError::ExtraBytes {
                expected: 4,
                actual: 5
            }
        );
        let (a, problems) = Atr::parse_lenient(&bytes);
        let a = a.expect("decoded");
        assert_eq!(problems.len(), 1);
        assert_eq!(a.extra_bytes(), &[0x11]);
        assert_eq!(a.bytes(), bytes.as_slice());
        assert_eq!(a.historical(), &[0x14, 0x50]);
        assert!(lines_contain(&a, "Extra bytes after the ATR: 11"));
        assert!(!lines_contain(&a, "checksum byte"));

        // After a TCK.
        let mut bytes = atr(MS_VSC);
        bytes.extend([0x90, 0x00]);
        assert_eq!(
            Atr::parse(&bytes).unwrap_err(),
            AtrError::ExtraBytes {
                expected: 17,
                actual: 19
            }
        );

        // A T=0 card that sends a checksum anyway: 02 ^ 14 ^ 50 = 46.
        let (a, _) = Atr::parse_lenient(&atr("3B 02 14 50 46"));
        assert!(lines_contain(&a.expect("decoded"), "a checksum byte"));
    }

    #[test]
    fn too_long() {
        // Structurally complete T=0 ATR: T0 = 8F, sixteen TDi = 80, a last
        // TD = 00, 15 historical bytes: 2 + 17 + 15 = 34 bytes.
        let mut bytes = vec![0x3B, 0x8F];
        bytes.extend([0x80; 16]);
        bytes.push(0x00);
        bytes.extend([0x41; 15]);
        assert_eq!(bytes.len(), 34);
        assert_eq!(Atr::parse(&bytes).unwrap_err(), AtrError::TooLong(34));
        let (a, problems) = Atr::parse_lenient(&bytes);
        assert_eq!(problems, vec![AtrError::TooLong(34)]);
        let a = a.expect("decoded");
        assert_eq!(a.interface_groups().len(), 17);
        assert_eq!(a.protocols(), vec![0]);
        // One byte shorter (15 TDi = 80) is the longest allowed.
        let mut ok = vec![0x3B, 0x8F];
        ok.extend([0x80; 15]);
        ok.push(0x00);
        ok.extend([0x41; 15]);
        assert_eq!(ok.len(), MAX_ATR_LEN);
        assert!(Atr::parse(&ok).is_ok());
    }

    #[test]
    fn error_messages_are_clear() {
        assert_eq!(
            AtrError::BadTck {
                expected: 0xCF,
                found: 0x01
            }
            .to_string(),
            "wrong TCK: expected CF, found 01"
        );
        assert_eq!(
            AtrError::BadTs(0x00).to_string(),
            "invalid TS byte 00: expected 3B (direct convention) or 3F (inverse convention)"
        );
        assert_eq!(
            AtrError::TooLong(40).to_string(),
            "ATR too long: 40 bytes (ISO/IEC 7816-3 allows at most 33)"
        );
    }

    #[test]
    fn hex_text() {
        assert_eq!(bytes_from_hex("3b:02:14:50").unwrap(), atr("3B 02 14 50"));
        assert_eq!(
            bytes_from_hex("3B021450").unwrap(),
            vec![0x3B, 0x02, 0x14, 0x50]
        );
        assert!(matches!(
            bytes_from_hex("3B 0"),
            Err(AtrError::InvalidHex(_))
        ));
        assert!(matches!(
            bytes_from_hex("3B 0G"),
            Err(AtrError::InvalidHex(_))
        ));
        let a: Atr = YUBIKEY_5_NFC.parse().unwrap();
        assert_eq!(a.hex(), YUBIKEY_5_NFC);
        assert_eq!(
            "3B 02 14".parse::<Atr>().unwrap_err(),
            AtrError::Truncated {
                expected: 4,
                actual: 3
            }
        );
    }

    #[test]
    fn json_has_hex_strings_and_decoded_fields() {
        let v = serde_json::to_value(parsed(MS_VSC)).unwrap();
        assert_eq!(v["hex"], MS_VSC);
        assert_eq!(v["convention"], "direct");
        assert_eq!(v["ts"], "3B");
        assert_eq!(v["t0"], "8D");
        assert_eq!(v["historical_count"], 13);
        assert_eq!(v["interface_groups"][0]["td"], "01");
        assert_eq!(v["interface_groups"][0]["ta"], serde_json::Value::Null);
        assert_eq!(v["protocols"], serde_json::json!([1]));
        assert_eq!(v["parameters"]["fi"], 372);
        assert_eq!(v["parameters"]["t1"]["ifsc"], 32);
        assert_eq!(v["parameters"]["t1"]["error_detection"], "lrc");
        assert_eq!(v["historical"], "80 FB A0 00 00 03 97 42 54 46 59 04 01");
        assert_eq!(v["historical_decoded"]["category"], "80");
        assert_eq!(v["historical_decoded"]["format"], "compact_tlv");
        assert_eq!(
            v["historical_decoded"]["objects"][0]["value"],
            "A0 00 00 03 97 42 54 46 59 04 01"
        );
        assert_eq!(
            v["historical_decoded"]["objects"][0]["name"],
            "application identifier"
        );
        assert_eq!(v["tck"], "CF");
        assert_eq!(v["tck_status"]["status"], "ok");
        assert_eq!(v["extra"], "");

        let (a, _) = Atr::parse_lenient(&atr("3B 8D 01 80 FB A0 00 00 03 97 42 54 46 59 04 01 00"));
        let v = serde_json::to_value(a.unwrap()).unwrap();
        assert_eq!(
            v["tck_status"],
            serde_json::json!({"status": "wrong", "expected": "CF"})
        );
        let v = serde_json::to_value(parsed(FEITIAN)).unwrap();
        assert_eq!(v["historical_decoded"]["status"]["sw"], "9000");
        assert_eq!(v["historical_decoded"]["status"]["lcs"], "03");
    }

    // -- never panic ----------------------------------------------------------

    /// xorshift64*: a small deterministic generator, no dependencies.
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        pub(super) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub(super) fn byte(&mut self) -> u8 {
            (self.next() >> 32) as u8
        }
        pub(super) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn exercise(bytes: &[u8]) {
        let strict = Atr::parse(bytes);
        let (lenient, problems) = Atr::parse_lenient(bytes);
        assert_eq!(strict.is_ok(), problems.is_empty(), "{bytes:02X?}");
        if let Err(e) = &strict {
            assert_eq!(Some(e), problems.first());
            let _ = e.to_string();
        }
        match lenient {
            Some(a) => {
                assert_eq!(a.bytes(), bytes);
                // The protocols are the TDs' (T=15 is no protocol), T=0 when none names one.
                let mut offered: Vec<u8> = Vec::new();
                for t in a
                    .interface_groups()
                    .iter()
                    .filter_map(|g| g.td.map(|td| td & 0x0F))
                {
                    if t != 15 && !offered.contains(&t) {
                        offered.push(t);
                    }
                }
                if offered.is_empty() {
                    offered.push(0);
                }
                assert_eq!(a.protocols(), offered, "{bytes:02X?}");
                // The lines start with TS and T0 as the bytes say, and end with the TCK's or
                // the extra bytes'.
                let lines = a.describe();
                assert!(
                    lines[0].starts_with(&format!("TS = {:02X}: ", bytes[0])),
                    "{lines:?}"
                );
                assert!(
                    lines[1].starts_with(&format!("T0 = {:02X}: ", bytes[1])),
                    "{lines:?}"
                );
                let last = lines.last().map(String::as_str).unwrap_or_default();
                let tck_line = if a.extra_bytes().is_empty() {
                    last
                } else {
                    &lines[lines.len() - 2]
                };
                assert!(tck_line.starts_with("TCK"), "{lines:?}");
                assert_eq!(last.starts_with("Extra bytes"), !a.extra_bytes().is_empty());
                let _ = a.hex();
                serde_json::to_string(&a).expect("serialises");
                if let Ok(s) = &strict {
                    assert_eq!(s.describe(), a.describe());
                    assert!(!s.is_truncated());
                    assert!(s.extra_bytes().is_empty());
                    assert!(matches!(
                        s.tck_status(),
                        TckStatus::Ok | TckStatus::NotRequired
                    ));
                }
            }
            None => assert!(!problems.is_empty()),
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x5EED_0A7F_1234_5678);
        for _ in 0..30_000 {
            let len = rng.below(41);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
            if !bytes.is_empty() && rng.below(10) < 8 {
                bytes[0] = if rng.below(2) == 0 { 0x3B } else { 0x3F };
            }
            exercise(&bytes);
        }
    }

    /// A well-formed ATR from random choices, and what it should decode to.
    fn random_valid(rng: &mut Rng) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut bytes = vec![if rng.below(2) == 0 { 0x3B } else { 0x3F }, 0];
        let k = rng.below(16);
        let groups = rng.below(5);
        let mut y: u8 = (rng.byte() & 0x07) | if groups > 0 { 0x08 } else { 0 };
        bytes[1] = (y << 4) | k as u8;
        let mut tds = Vec::new();
        let mut i = 0;
        loop {
            for bit in [0x1, 0x2, 0x4] {
                if y & bit != 0 {
                    bytes.push(rng.byte());
                }
            }
            if y & 0x8 == 0 {
                break;
            }
            i += 1;
            let t = [0u8, 1, 1, 15, 2, 14][rng.below(6)];
            let more = if i < groups { 0x08 } else { 0 };
            y = (rng.byte() & 0x07) | more;
            bytes.push((y << 4) | t);
            tds.push(t);
        }
        let historical: Vec<u8> = (0..k).map(|_| rng.byte()).collect();
        bytes.extend(&historical);
        if tds.iter().any(|&t| t != 0) {
            bytes.push(xor(&bytes[1..]));
        }
        let mut protocols: Vec<u8> = Vec::new();
        for t in tds {
            if t != 15 && !protocols.contains(&t) {
                protocols.push(t);
            }
        }
        if protocols.is_empty() {
            protocols.push(0);
        }
        (bytes, protocols, historical)
    }

    #[test]
    fn generated_atrs_decode_and_damage_is_reported() {
        let mut rng = Rng(0x0DDB_A11C_AFE0_F00D);
        let mut checked = 0;
        for _ in 0..3_000 {
            let (bytes, protocols, historical) = random_valid(&mut rng);
            if bytes.len() > MAX_ATR_LEN {
                assert_eq!(
                    Atr::parse(&bytes).unwrap_err(),
                    AtrError::TooLong(bytes.len())
                );
                continue;
            }
            checked += 1;
            let a = Atr::parse(&bytes).unwrap_or_else(|e| panic!("{bytes:02X?}: {e}"));
            assert_eq!(a.protocols(), protocols);
            assert_eq!(a.historical(), historical.as_slice());
            // Every shorter prefix is an error, and so is one more byte.
            for cut in 0..bytes.len() {
                assert!(Atr::parse(&bytes[..cut]).is_err());
                exercise(&bytes[..cut]);
            }
            let mut longer = bytes.clone();
            longer.push(rng.byte());
            assert!(Atr::parse(&longer).is_err());
            // Flipping one byte never panics.
            let mut damaged = bytes.clone();
            let at = rng.below(damaged.len());
            damaged[at] ^= 1 << rng.below(8);
            exercise(&damaged);
        }
        assert!(checked > 1_500, "{checked}");
    }
}
