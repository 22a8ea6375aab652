//! Command and response APDUs (ISO/IEC 7816-4, short length fields) and the
//! status words, decoded once into [`Status`].
//!
//! Sensitive command data (PINs) is a type: [`Data::Sensitive`] is zeroized on
//! drop and prints as `REDACTED` in `Debug` and in the APDU trace.

use std::fmt;

use serde::{Serialize, Serializer};
use zeroize::Zeroizing;

/// Instruction bytes used by the card profiles.
pub mod ins {
    pub const SELECT: u8 = 0xA4;
    pub const MANAGE_SECURITY_ENVIRONMENT: u8 = 0x22;
    pub const GENERAL_AUTHENTICATE: u8 = 0x87;
    pub const GET_DATA: u8 = 0xCB;
    /// YubiKey GET METADATA (PIV extension).
    pub const GET_METADATA: u8 = 0xF7;
    pub const GET_CHALLENGE: u8 = 0x84;
    pub const EXTERNAL_AUTHENTICATE: u8 = 0x82;
    pub const RESET_RETRY_COUNTER: u8 = 0x2C;
    pub const VERIFY: u8 = 0x20;
    pub const GET_RESPONSE: u8 = 0xC0;
}

/// The data field of a command APDU.
#[derive(Clone, Default)]
pub enum Data {
    /// No data field (case 1 or case 2 command).
    #[default]
    None,
    /// Data that may be shown in a trace.
    Plain(Vec<u8>),
    /// Secret data (a PIN): zeroized on drop, never printed.
    Sensitive(Zeroizing<Vec<u8>>),
}

impl Data {
    pub fn len(&self) -> usize {
        match self {
            Data::None => 0,
            Data::Plain(d) => d.len(),
            Data::Sensitive(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Data::None => &[],
            Data::Plain(d) => d,
            Data::Sensitive(d) => d,
        }
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Data::None => f.write_str("None"),
            Data::Plain(d) => write!(f, "Plain({})", hex::encode_upper(d)),
            Data::Sensitive(d) => write!(f, "Sensitive(REDACTED, {} bytes)", d.len()),
        }
    }
}

/// A command APDU with short length fields.
#[derive(Clone, Debug)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Data,
    /// Expected response length; `Some(0)` means up to 256 bytes.
    pub le: Option<u8>,
    /// The command carries an admin response and may spend a try: the
    /// channel sends at most one such command per run ([`Command::spends_try`]).
    pub spends_try: bool,
}

impl Command {
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Command {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: Data::None,
            le: None,
            spends_try: false,
        }
    }

    /// Mark this command as one that spends an admin try when its data is
    /// wrong (the admin response). The channel refuses a second one.
    pub fn spends_try(mut self) -> Command {
        self.spends_try = true;
        self
    }

    pub fn data(mut self, data: Vec<u8>) -> Command {
        self.data = Data::Plain(data);
        self
    }

    pub fn sensitive(mut self, data: Zeroizing<Vec<u8>>) -> Command {
        self.data = Data::Sensitive(data);
        self
    }

    pub fn le(mut self, le: u8) -> Command {
        self.le = Some(le);
        self
    }

    /// A command that carries data may authenticate or change the card: the
    /// transport never sends it a second time (no 6Cxx resend).
    pub fn may_resend(&self) -> bool {
        self.data.is_empty()
    }

    /// The encoded APDU. Zeroized on drop, since it may hold a PIN.
    ///
    /// The data field is at most 255 bytes: constructors in this crate only
    /// build short APDUs, and longer data is truncated to keep Lc honest.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let data = self.data.bytes();
        let data = &data[..data.len().min(255)];
        let mut out = Zeroizing::new(Vec::with_capacity(6 + data.len()));
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if !data.is_empty() {
            out.push(data.len() as u8);
            out.extend_from_slice(data);
        }
        if let Some(le) = self.le {
            out.push(le);
        }
        out
    }

    /// The trace line for this command, with sensitive data redacted.
    pub fn trace(&self) -> String {
        let mut s = format!(
            "{:02X} {:02X} {:02X} {:02X}",
            self.cla, self.ins, self.p1, self.p2
        );
        match &self.data {
            Data::None => {}
            Data::Plain(d) => {
                s.push_str(&format!(" {:02X} {}", d.len(), spaced_hex(d)));
            }
            Data::Sensitive(d) => {
                s.push_str(&format!(" {:02X} REDACTED({} bytes)", d.len(), d.len()));
            }
        }
        if let Some(le) = self.le {
            s.push_str(&format!(" {le:02X}"));
        }
        s
    }
}

/// Upper-case hex with a space between bytes, as APDU traces show it.
pub fn spaced_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// A response APDU: data and the status word.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: u16,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response({} bytes, SW {:04X})", self.data.len(), self.sw)
    }
}

impl Response {
    /// Split raw bytes into data and status word. `None` when fewer than two
    /// bytes came back: such an answer has no status word at all.
    pub fn from_bytes(raw: &[u8]) -> Option<Response> {
        if raw.len() < 2 {
            return None;
        }
        let (data, sw) = raw.split_at(raw.len() - 2);
        Some(Response {
            data: data.to_vec(),
            sw: u16::from_be_bytes([sw[0], sw[1]]),
        })
    }

    pub fn status(&self) -> Status {
        Status::from(self.sw)
    }

    pub fn trace(&self) -> String {
        if self.data.is_empty() {
            format!("{:04X} ({})", self.sw, self.status())
        } else {
            format!(
                "{} {:04X} ({})",
                spaced_hex(&self.data),
                self.sw,
                self.status()
            )
        }
    }
}

/// A status word, decoded. Every SW the tool acts on has its own variant;
/// the rest keep their value in [`Status::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 9000
    Success,
    /// 61xx: xx more bytes wait for GET RESPONSE (00 means 256).
    MoreData(u8),
    /// 6Cxx: wrong Le, resend with Le = xx.
    WrongLe(u8),
    /// 63Cx: verification failed or counter query, x tries left.
    TriesLeft(u8),
    /// 6300: authentication failed, no counter information.
    AuthFailed,
    /// 6700
    WrongLength,
    /// 6982
    SecurityNotSatisfied,
    /// 6983
    Blocked,
    /// 6984
    ReferenceDataNotUsable,
    /// 6985
    ConditionsNotSatisfied,
    /// 6A80
    IncorrectData,
    /// 6A82
    NotFound,
    /// 6A86
    IncorrectP1P2,
    /// 6A88
    ReferenceDataNotFound,
    /// 6D00
    InsNotSupported,
    /// 6E00
    ClaNotSupported,
    Other(u16),
}

impl From<u16> for Status {
    fn from(sw: u16) -> Status {
        match sw {
            0x9000 => Status::Success,
            0x6300 => Status::AuthFailed,
            0x6700 => Status::WrongLength,
            0x6982 => Status::SecurityNotSatisfied,
            0x6983 => Status::Blocked,
            0x6984 => Status::ReferenceDataNotUsable,
            0x6985 => Status::ConditionsNotSatisfied,
            0x6A80 => Status::IncorrectData,
            0x6A82 => Status::NotFound,
            0x6A86 => Status::IncorrectP1P2,
            0x6A88 => Status::ReferenceDataNotFound,
            0x6D00 => Status::InsNotSupported,
            0x6E00 => Status::ClaNotSupported,
            _ => match (sw >> 8, sw & 0xFF) {
                (0x61, n) => Status::MoreData(n as u8),
                (0x6C, n) => Status::WrongLe(n as u8),
                (0x63, n) if n & 0xF0 == 0xC0 => Status::TriesLeft((n & 0x0F) as u8),
                _ => Status::Other(sw),
            },
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Success => f.write_str("success"),
            Status::MoreData(n) => write!(f, "{} more bytes available", more_len(*n)),
            Status::WrongLe(n) => write!(f, "wrong Le, expected {n}"),
            Status::TriesLeft(n) => write!(f, "{n} tries left"),
            Status::AuthFailed => f.write_str("authentication failed"),
            Status::WrongLength => f.write_str("wrong length"),
            Status::SecurityNotSatisfied => f.write_str("security status not satisfied"),
            Status::Blocked => f.write_str("authentication method blocked"),
            Status::ReferenceDataNotUsable => f.write_str("reference data not usable"),
            Status::ConditionsNotSatisfied => f.write_str("conditions of use not satisfied"),
            Status::IncorrectData => f.write_str("incorrect data"),
            Status::NotFound => f.write_str("file or application not found"),
            Status::IncorrectP1P2 => f.write_str("incorrect P1/P2"),
            Status::ReferenceDataNotFound => f.write_str("referenced data not found"),
            Status::InsNotSupported => f.write_str("instruction not supported"),
            Status::ClaNotSupported => f.write_str("class not supported"),
            Status::Other(_) => f.write_str("unknown status"),
        }
    }
}

/// Tries left on a counter, as the card reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Tries {
    Left(u8),
    Blocked,
    /// The PIN is verified in this session (VERIFY without data gave 9000).
    Verified,
    /// The card does not say, or the profile does not ask.
    #[default]
    Unknown,
}

impl Tries {
    /// As a number for reports: blocked is 0; unknown and verified are none.
    pub fn count(self) -> Option<u8> {
        match self {
            Tries::Left(n) => Some(n),
            Tries::Blocked => Some(0),
            Tries::Verified | Tries::Unknown => None,
        }
    }

    pub fn is_blocked(self) -> bool {
        matches!(self, Tries::Blocked | Tries::Left(0))
    }

    /// Decode a counter query's status word.
    pub fn from_query(status: Status) -> Tries {
        match status {
            Status::TriesLeft(0) | Status::Blocked => Tries::Blocked,
            Status::TriesLeft(n) => Tries::Left(n),
            Status::Success => Tries::Verified,
            _ => Tries::Unknown,
        }
    }
}

impl Serialize for Tries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.count() {
            Some(n) => s.serialize_u8(n),
            None => s.serialize_none(),
        }
    }
}

impl std::fmt::Display for Tries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tries::Left(n) => write!(f, "{n}"),
            Tries::Blocked => f.write_str("0 (blocked)"),
            Tries::Verified => f.write_str("verified"),
            Tries::Unknown => f.write_str("unknown"),
        }
    }
}

/// The byte count a 61xx announces (00 means 256).
pub fn more_len(n: u8) -> usize {
    if n == 0 {
        256
    } else {
        n as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_base_csp_commands() {
        let gc = Command::new(0, ins::GET_CHALLENGE, 0, 0).le(8);
        assert_eq!(&gc.to_bytes()[..], &[0x00, 0x84, 0x00, 0x00, 0x08]);
        let ea = Command::new(0, ins::EXTERNAL_AUTHENTICATE, 0, 0).data(vec![0x17; 8]);
        assert_eq!(ea.to_bytes()[4], 8);
        assert_eq!(ea.to_bytes().len(), 13);
        let query = Command::new(0, ins::VERIFY, 0, 0x80);
        assert_eq!(&query.to_bytes()[..], &[0x00, 0x20, 0x00, 0x80]);
    }

    #[test]
    fn trace_and_debug_redact_sensitive_data() {
        let rrc = Command::new(0, ins::RESET_RETRY_COUNTER, 2, 0x80)
            .sensitive(Zeroizing::new(b"12345678".to_vec()));
        let t = rrc.trace();
        assert_eq!(t, "00 2C 02 80 08 REDACTED(8 bytes)");
        let d = format!("{rrc:?}");
        assert!(d.contains("REDACTED"));
        assert!(!d.contains("31 32") && !d.contains("3132") && !d.contains("12345678"));
        // The encoded bytes still carry the PIN.
        assert_eq!(&rrc.to_bytes()[5..], b"12345678");
        assert!(!rrc.may_resend());
    }

    #[test]
    fn decodes_status_words() {
        assert_eq!(Status::from(0x9000), Status::Success);
        assert_eq!(Status::from(0x63C3), Status::TriesLeft(3));
        assert_eq!(Status::from(0x63C0), Status::TriesLeft(0));
        assert_eq!(Status::from(0x6300), Status::AuthFailed);
        assert_eq!(Status::from(0x6310), Status::Other(0x6310));
        assert_eq!(Status::from(0x6108), Status::MoreData(8));
        assert_eq!(Status::from(0x6C08), Status::WrongLe(8));
        assert_eq!(Status::from(0x6983), Status::Blocked);
        assert_eq!(Status::from(0x6A88), Status::ReferenceDataNotFound);
        assert_eq!(Status::from(0x1234), Status::Other(0x1234));
        assert_eq!(more_len(0), 256);
    }

    #[test]
    fn splits_responses() {
        assert_eq!(Response::from_bytes(&[]), None);
        assert_eq!(Response::from_bytes(&[0x90]), None);
        let r = Response::from_bytes(&[1, 2, 0x90, 0x00]).unwrap();
        assert_eq!(r.data, vec![1, 2]);
        assert_eq!(r.status(), Status::Success);
        assert_eq!(r.trace(), "01 02 9000 (success)");
    }
}
