//! The card itself: a state machine driven with byte strings (no network here), with one
//! personality per card family. This file holds what every family shares (the session, the
//! persistent state, the logs, the single-use challenge, T=0) and the `iso` personality; the
//! other families live in gids.rs, piv.rs and crescendo.rs. See the top of vcard.rs for the
//! behaviour.

use std::collections::BTreeMap;

use super::apdu::{auth_template, sw, tlv, Command, Response};
pub use super::crypto::{AdminKey, MgmtAlg};

pub const INS_VERIFY: u8 = 0x20;
pub const INS_CHANGE_REFERENCE_DATA: u8 = 0x24;
pub const INS_RESET_RETRY_COUNTER: u8 = 0x2C;
pub const INS_EXTERNAL_AUTHENTICATE: u8 = 0x82;
pub const INS_GET_CHALLENGE: u8 = 0x84;
pub const INS_GENERAL_AUTHENTICATE: u8 = 0x87;
pub const INS_SELECT: u8 = 0xA4;
pub const INS_GET_RESPONSE: u8 = 0xC0;
pub const INS_GET_DATA: u8 = 0xCB;
pub const INS_PUT_DATA: u8 = 0xDB;

/// PIN reference (ISO "specific" PIN 80) for VERIFY and RESET RETRY COUNTER.
pub const PIN_REF: u8 = 0x80;

/// The card family the card plays (`--family`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// The generic Base CSP dialect: GET CHALLENGE, EXTERNAL AUTHENTICATE, RESET RETRY COUNTER.
    Iso,
    /// GIDS (Windows' inbox minidriver, TPM virtual smart cards, GidsApplet).
    Gids,
    /// PIV with YubiKey's extensions.
    Piv,
    /// HID Crescendo (ACA XAUTH key).
    Crescendo,
}

impl Family {
    pub fn parse(s: &str) -> Result<Family, String> {
        match s {
            "iso" => Ok(Family::Iso),
            "gids" => Ok(Family::Gids),
            "piv" => Ok(Family::Piv),
            "crescendo" => Ok(Family::Crescendo),
            _ => Err(format!("unknown family {s:?} (iso, gids, piv, crescendo)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Iso => "iso",
            Family::Gids => "gids",
            Family::Piv => "piv",
            Family::Crescendo => "crescendo",
        }
    }
}

/// Which command APDUs a fault option applies to: `XX` matches every APDU with INS XX,
/// `XX+data` only those with a data field. So `82+data` is EXTERNAL AUTHENTICATE with a
/// cryptogram, never the admin tries query `00 82 00 00` (INS 82 without data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InsMatch {
    pub ins: u8,
    pub with_data: bool,
}

impl InsMatch {
    /// Every APDU with this INS.
    #[cfg(test)]
    pub fn any(ins: u8) -> InsMatch {
        InsMatch {
            ins,
            with_data: false,
        }
    }

    /// `XX` or `XX+data`.
    pub fn parse(
        s: &str,
        parse_byte: impl Fn(&str) -> Result<u8, String>,
    ) -> Result<InsMatch, String> {
        match s.strip_suffix("+data") {
            Some(ins) => Ok(InsMatch {
                ins: parse_byte(ins)?,
                with_data: true,
            }),
            None => Ok(InsMatch {
                ins: parse_byte(s)?,
                with_data: false,
            }),
        }
    }

    pub fn matches(&self, apdu: &[u8]) -> bool {
        apdu.get(1) == Some(&self.ins) && (!self.with_data || has_data(apdu))
    }
}

/// The APDU carries a data field (Lc): parsed where it parses, else "longer than a
/// case 2 command".
pub fn has_data(apdu: &[u8]) -> bool {
    match Command::parse(apdu) {
        Ok(cmd) => !cmd.data.is_empty(),
        Err(_) => apdu.len() > 5,
    }
}

/// Whether a command APDU carries an admin cryptogram (the `admin_responses` counter):
/// EXTERNAL AUTHENTICATE with data, or GENERAL AUTHENTICATE whose `7C` template holds a
/// response (`82`, external and GIDS mutual) or the host's decrypted PIV witness (`80` with
/// a value).
pub fn carries_admin_response(apdu: &[u8]) -> bool {
    match apdu.get(1) {
        Some(&INS_EXTERNAL_AUTHENTICATE) => has_data(apdu),
        Some(&INS_GENERAL_AUTHENTICATE) => Command::parse(apdu)
            .ok()
            .and_then(|cmd| {
                auth_template(&cmd.data).map(|items| {
                    items
                        .iter()
                        .any(|t| t.tag == 0x82 || (t.tag == 0x80 && !t.value.is_empty()))
                })
            })
            .unwrap_or(false),
        _ => false,
    }
}

/// Card behaviour fixed for the life of the process (from the command line).
#[derive(Clone)]
pub struct Config {
    pub family: Family,
    pub key_ref: u8,
    pub aid: Option<Vec<u8>>,
    /// Fixed challenge (8 bytes, or 16 for an AES key) instead of random ones.
    pub fixed_challenge: Option<Vec<u8>>,
    /// Play T=0: data comes back only through `61xx` + GET RESPONSE.
    pub t0: bool,
    /// Largest piece announced in a `61xx` (1..=256).
    pub t0_chunk: usize,
    /// Answer the first GET CHALLENGE of the process with `6C08`.
    pub sw6c: bool,
    pub verify_empty_counts: bool,
    pub pin_min: usize,
    pub pin_max_len: usize,
    /// Matching APDUs -> raw response bytes, answered without any processing.
    pub respond_ins: Vec<(InsMatch, Vec<u8>)>,
    /// Keep every APDU and response in the log (off: only the counters; for long runs).
    pub log_apdus: bool,
    /// PIV: what a wrong 9B response gets (YubiKey 6982; other cards 6A80).
    pub wrong_response_sw: u16,
    /// PIV: YubiKey's GET METADATA, GET VERSION and GET SERIAL (off: 6D00, a plain PIV card).
    pub metadata: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            family: Family::Iso,
            key_ref: 0x00,
            aid: None,
            fixed_challenge: None,
            t0: false,
            t0_chunk: 256,
            sw6c: false,
            verify_empty_counts: false,
            pin_min: 4,
            pin_max_len: 16,
            respond_ins: Vec::new(),
            log_apdus: true,
            wrong_response_sw: sw::SECURITY_NOT_SATISFIED,
            metadata: true,
        }
    }
}

/// What survives a power cycle and a process restart (saved in the state file).
#[derive(Clone)]
pub struct Persistent {
    pub admin_key: AdminKey,
    pub admin_tries: u32,
    pub admin_max: u32,
    pub pin: Vec<u8>,
    pub pin_tries: u32,
    pub pin_max: u32,
    /// GIDS `cardid` / PIV CHUID GUID (None: the card has none).
    pub card_id: Option<[u8; 16]>,
    /// PIV PUK (unpadded) and its counter.
    pub puk: Vec<u8>,
    pub puk_tries: u32,
    pub puk_max: u32,
    /// GIDS: the file system exists (false: a new card waiting for `gids-tool --initialize`).
    pub gids_initialised: bool,
}

impl Default for Persistent {
    fn default() -> Persistent {
        Persistent {
            admin_key: AdminKey::new(vec![0; 24]).expect("24-byte 3DES key"),
            admin_tries: 5,
            admin_max: 5,
            pin: b"12345678".to_vec(),
            pin_tries: 3,
            pin_max: 3,
            card_id: Some(DEFAULT_CARD_ID),
            puk: b"12345678".to_vec(),
            puk_tries: 3,
            puk_max: 3,
            gids_initialised: true,
        }
    }
}

/// `--card-id`'s default.
pub const DEFAULT_CARD_ID: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
];

/// A pending step of a two-step mutual scheme (single-use like the challenge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutual {
    /// GIDS: the host's R1 and the card's R2 (16 bytes each).
    Gids { r1: Vec<u8>, r2: Vec<u8> },
    /// PIV: the witness the card encrypted; the host must send it back decrypted.
    PivWitness(Vec<u8>),
}

/// Security state; cleared by power off, reset and card removal.
#[derive(Default, Clone)]
pub struct Session {
    pub admin_authenticated: bool,
    pub pin_verified: bool,
    pub challenge: Option<Vec<u8>>,
    pub mutual: Option<Mutual>,
    /// GIDS: P1 of the last MANAGE SECURITY ENVIRONMENT (81 external, C1 mutual).
    pub mse: Option<u8>,
    /// GIDS: the file selected by id (SELECT 00 0C 3FFF during initialisation).
    pub selected_fid: Option<u16>,
    /// T=0: response bytes (data || SW) still to be fetched with GET RESPONSE.
    pub pending: Option<Vec<u8>>,
}

/// What this process saw (the per-process logs of the state file).
#[derive(Default, Clone)]
pub struct Log {
    pub powered: bool,
    pub apdus: Vec<Vec<u8>>,
    pub responses: Vec<Vec<u8>>,
    pub ext_auth_with_data: u64,
    pub rrc: u64,
    /// APDUs that carried an admin cryptogram (see [`carries_admin_response`]).
    pub admin_responses: u64,
    pub atr_requests: u64,
    pub power_ons: u64,
    pub resets: u64,
    pub connections: u64,
    /// Our TCP port of the current vpcd connection (None: not connected).
    pub local_port: Option<u16>,
}

pub struct Card {
    pub config: Config,
    pub persistent: Persistent,
    pub session: Session,
    pub log: Log,
    /// Data objects: GIDS keyed by file id || DO tag (4 bytes), PIV by object tag (3 bytes).
    /// Rebuilt from `persistent` at start; PUT DATA changes them.
    pub objects: BTreeMap<Vec<u8>, Vec<u8>>,
    sw6c_sent: bool,
}

impl Card {
    pub fn new(config: Config, persistent: Persistent) -> Card {
        let objects = match config.family {
            Family::Gids => super::gids::initial_objects(&persistent),
            Family::Piv => super::piv::initial_objects(&persistent),
            _ => BTreeMap::new(),
        };
        Card {
            config,
            persistent,
            session: Session::default(),
            log: Log::default(),
            objects,
            sw6c_sent: false,
        }
    }

    pub fn power_on(&mut self) {
        self.session = Session::default();
        self.log.powered = true;
        self.log.power_ons += 1;
    }

    pub fn reset(&mut self) {
        self.session = Session::default();
        self.log.powered = true;
        self.log.resets += 1;
    }

    /// Power off, also what a closed connection (card removed) means.
    pub fn power_off(&mut self) {
        self.session = Session::default();
        self.log.powered = false;
    }

    pub fn atr_requested(&mut self) {
        self.log.atr_requests += 1;
    }

    /// Logs a received command APDU and its counters (before any fault injection).
    pub fn receive(&mut self, apdu: &[u8]) {
        if self.config.log_apdus {
            self.log.apdus.push(apdu.to_vec());
        }
        match apdu.get(1) {
            Some(&INS_EXTERNAL_AUTHENTICATE) if apdu.len() > 5 => self.log.ext_auth_with_data += 1,
            Some(&INS_RESET_RETRY_COUNTER) => self.log.rrc += 1,
            _ => {}
        }
        if carries_admin_response(apdu) {
            self.log.admin_responses += 1;
        }
    }

    /// Logs a response that is sent back.
    pub fn sent(&mut self, response: &[u8]) {
        if self.config.log_apdus {
            self.log.responses.push(response.to_vec());
        }
    }

    /// receive + process + sent: one full exchange (what the unit tests use).
    #[cfg(test)]
    pub fn transmit(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.receive(apdu);
        let response = self.process(apdu);
        self.sent(&response);
        response
    }

    /// Computes the response APDU and updates the card state.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        if let Some((_, raw)) = self
            .config
            .respond_ins
            .iter()
            .find(|(m, _)| m.matches(apdu))
        {
            return raw.clone();
        }
        let cmd = match Command::parse(apdu) {
            Ok(cmd) => cmd,
            Err(_) => {
                self.session.challenge = None;
                self.session.mutual = None;
                self.session.pending = None;
                return Response::sw(sw::WRONG_LENGTH).to_bytes();
            }
        };
        if cmd.ins == INS_GET_RESPONSE && self.config.t0 {
            // Fetching the data of the previous command keeps the challenge alive.
            return self.get_response(&cmd);
        }
        self.session.pending = None;
        // Single-use challenge: whatever comes now consumes it.
        let challenge = self.session.challenge.take();
        let mutual = self.session.mutual.take();
        let response = if cmd.cla != 0x00 {
            Response::sw(sw::CLA_NOT_SUPPORTED)
        } else {
            match self.config.family {
                Family::Iso => self.iso(&cmd, challenge),
                Family::Gids => self.gids(&cmd, challenge, mutual),
                Family::Piv => self.piv(&cmd, challenge, mutual),
                Family::Crescendo => self.crescendo(&cmd, challenge),
            }
        };
        self.t0_wrap(response)
    }

    /// A new challenge of `len` bytes (the fixed one if given), remembered as pending.
    pub fn new_challenge(&mut self, len: usize) -> Vec<u8> {
        let challenge = match &self.config.fixed_challenge {
            Some(fixed) if fixed.len() == len => fixed.clone(),
            _ => random_bytes(len),
        };
        self.session.challenge = Some(challenge.clone());
        challenge
    }

    /// Checks a single-step response against the consumed challenge and keeps the admin
    /// retry counter (wrong: one try less; right: back to max, admin authenticated).
    /// `Err(sw)` for no challenge (6985) or a blocked key (6983); `Ok(right)` otherwise.
    pub fn check_admin_response(
        &mut self,
        challenge: Option<Vec<u8>>,
        response: &[u8],
    ) -> Result<bool, u16> {
        if self.persistent.admin_tries == 0 {
            return Err(sw::AUTH_BLOCKED);
        }
        let Some(challenge) = challenge else {
            return Err(sw::CONDITIONS_NOT_SATISFIED);
        };
        let expected = self.persistent.admin_key.encrypt(&challenge);
        let right = expected.is_some_and(|e| constant_time_eq(&e, response));
        self.admin_outcome(right);
        Ok(right)
    }

    /// GENERAL AUTHENTICATE's challenge in the external form: `7C .. 81 <n new bytes>`.
    pub fn template_challenge(&mut self, n: usize) -> Response {
        let c = self.new_challenge(n);
        Response::ok(tlv(&[0x7C], &tlv(&[0x81], &c)))
    }

    /// The answer to an admin response to `challenge`: 9000 when right, `wrong` (the family's
    /// status word) when not, or what [`check_admin_response`](Card::check_admin_response)
    /// refused it with.
    pub fn admin_response(
        &mut self,
        challenge: Option<Vec<u8>>,
        response: &[u8],
        wrong: u16,
    ) -> Response {
        match self.check_admin_response(challenge, response) {
            Err(sw) => Response::sw(sw),
            Ok(true) => Response::sw(sw::OK),
            Ok(false) => Response::sw(wrong),
        }
    }

    /// Applies the outcome of an admin authentication attempt to the counter and session.
    pub fn admin_outcome(&mut self, right: bool) {
        let p = &mut self.persistent;
        self.session.admin_authenticated = right;
        if right {
            p.admin_tries = p.admin_max;
        } else {
            p.admin_tries = p.admin_tries.saturating_sub(1);
        }
    }

    /// The `iso` personality (the generic Base CSP dialect).
    fn iso(&mut self, cmd: &Command, challenge: Option<Vec<u8>>) -> Response {
        match cmd.ins {
            INS_GET_CHALLENGE => self.get_challenge(cmd),
            INS_EXTERNAL_AUTHENTICATE => self.external_authenticate(cmd, challenge),
            INS_RESET_RETRY_COUNTER => self.reset_retry_counter(cmd),
            INS_VERIFY => self.verify(cmd),
            INS_SELECT => self.select(cmd),
            _ => Response::sw(sw::INS_NOT_SUPPORTED),
        }
    }

    fn get_challenge(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0 || cmd.p2 != 0 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        if self.config.sw6c && !self.sw6c_sent {
            self.sw6c_sent = true;
            return Response::sw(sw::wrong_le(8));
        }
        if !cmd.data.is_empty() {
            return Response::sw(sw::WRONG_LENGTH);
        }
        match cmd.le {
            Some(8) | Some(256) => {}
            _ => return Response::sw(sw::wrong_le(8)),
        }
        Response::ok(self.new_challenge(8))
    }

    fn external_authenticate(&mut self, cmd: &Command, challenge: Option<Vec<u8>>) -> Response {
        let p = &mut self.persistent;
        if cmd.data.is_empty() {
            // The admin tries query; changes nothing.
            return if cmd.p2 != self.config.key_ref {
                Response::sw(sw::REF_DATA_NOT_FOUND)
            } else if p.admin_tries == 0 {
                Response::sw(sw::AUTH_BLOCKED)
            } else {
                Response::sw(sw::tries_left(p.admin_tries))
            };
        }
        if p.admin_tries == 0 {
            return Response::sw(sw::AUTH_BLOCKED);
        }
        if challenge.is_none() {
            return Response::sw(sw::CONDITIONS_NOT_SATISFIED);
        }
        if cmd.data.len() != 8 {
            return Response::sw(sw::WRONG_LENGTH);
        }
        if cmd.p2 != self.config.key_ref {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        match self.check_admin_response(challenge, &cmd.data) {
            Err(sw) => Response::sw(sw),
            Ok(true) => Response::sw(sw::OK),
            Ok(false) => Response::sw(tries_sw(self.persistent.admin_tries)),
        }
    }

    fn reset_retry_counter(&mut self, cmd: &Command) -> Response {
        let refused = (!self.session.admin_authenticated).then_some(sw::SECURITY_NOT_SATISFIED);
        self.set_bare_pin(cmd, 0x02, refused, sw::INCORRECT_DATA)
    }

    /// A new PIN sent bare, as the card stores it (`00 <ins> <p1> 80 Lc <PIN>`): P1 other than
    /// `p1` 6A86, P2 other than the PIN 6A88, then `refused` (the family's state check, e.g.
    /// no admin authentication), then a length outside min..max `bad_length` (the families
    /// answer that differently).
    pub fn set_bare_pin(
        &mut self,
        cmd: &Command,
        p1: u8,
        refused: Option<u16>,
        bad_length: u16,
    ) -> Response {
        if cmd.p1 != p1 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        if cmd.p2 != PIN_REF {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        if let Some(sw) = refused {
            return Response::sw(sw);
        }
        if !(self.config.pin_min..=self.config.pin_max_len).contains(&cmd.data.len()) {
            return Response::sw(bad_length);
        }
        self.set_pin(cmd.data.clone());
        Response::sw(sw::OK)
    }

    /// A new PIN: tries back to max, every authentication of the session dropped.
    pub fn set_pin(&mut self, pin: Vec<u8>) {
        let p = &mut self.persistent;
        p.pin = pin;
        p.pin_tries = p.pin_max;
        self.session.admin_authenticated = false;
        self.session.pin_verified = false;
    }

    /// VERIFY of the PIN given as the card stores it (`pin`: None for an empty VERIFY).
    pub fn verify_pin(&mut self, pin: Option<&[u8]>) -> Response {
        let p = &mut self.persistent;
        if p.pin_tries == 0 {
            return Response::sw(sw::AUTH_BLOCKED);
        }
        if pin.is_none() && !self.config.verify_empty_counts {
            return if self.session.pin_verified {
                Response::sw(sw::OK)
            } else {
                Response::sw(sw::tries_left(p.pin_tries))
            };
        }
        // An empty VERIFY with --verify-empty-counts never matches (PINs are >= 1 byte).
        if pin.is_some_and(|pin| !pin.is_empty() && constant_time_eq(&p.pin, pin)) {
            p.pin_tries = p.pin_max;
            self.session.pin_verified = true;
            Response::sw(sw::OK)
        } else {
            p.pin_tries = p.pin_tries.saturating_sub(1);
            self.session.pin_verified = false;
            Response::sw(tries_sw(p.pin_tries))
        }
    }

    fn verify(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0x00 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        if cmd.p2 != PIN_REF {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        let pin = (!cmd.data.is_empty()).then_some(cmd.data.as_slice());
        self.verify_pin(pin)
    }

    fn select(&mut self, cmd: &Command) -> Response {
        match &self.config.aid {
            Some(aid) if cmd.p1 == 0x04 && *aid == cmd.data => Response::sw(sw::OK),
            _ => Response::sw(sw::NOT_FOUND),
        }
    }

    /// T=0: a response with data is held back and announced with `61xx`.
    fn t0_wrap(&mut self, response: Response) -> Vec<u8> {
        if !self.config.t0 || response.data.is_empty() {
            return response.to_bytes();
        }
        let len = response.data.len();
        self.session.pending = Some(response.to_bytes());
        Response::sw(sw::bytes_remaining(len.min(self.config.t0_chunk))).to_bytes()
    }

    fn get_response(&mut self, cmd: &Command) -> Vec<u8> {
        let Some(mut pending) = self.session.pending.take() else {
            return Response::sw(sw::CONDITIONS_NOT_SATISFIED).to_bytes();
        };
        if cmd.p1 != 0 || cmd.p2 != 0 {
            return Response::sw(sw::INCORRECT_P1P2).to_bytes();
        }
        let Some(le) = cmd.le else {
            return Response::sw(sw::WRONG_LENGTH).to_bytes();
        };
        // `pending` is data || final SW.
        let data_left = pending.len() - 2;
        let n = le.min(data_left);
        let mut out: Vec<u8> = pending.drain(..n).collect();
        let data_left = data_left - n;
        if data_left == 0 {
            out.extend_from_slice(&pending);
        } else {
            let announce = data_left.min(self.config.t0_chunk);
            out.extend_from_slice(&sw::bytes_remaining(announce).to_be_bytes());
            self.session.pending = Some(pending);
        }
        out
    }
}

/// `63Cx`, or `6983` at zero tries.
pub fn tries_sw(tries: u32) -> u16 {
    if tries == 0 {
        sw::AUTH_BLOCKED
    } else {
        sw::tries_left(tries)
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random::<u8>()).collect()
}

/// A PIN or PUK as PIV and Crescendo send it: 8 bytes, `FF`-padded. None when it is not
/// that (wrong length, empty, or FF in the middle).
pub fn unpad_ff(padded: &[u8]) -> Option<&[u8]> {
    if padded.len() != 8 {
        return None;
    }
    let end = padded.iter().position(|&b| b == 0xFF).unwrap_or(8);
    (end > 0 && padded[end..].iter().all(|&b| b == 0xFF)).then_some(&padded[..end])
}

/// What the families' unit tests share: APDUs written as hex, and transcripts of them.
#[cfg(test)]
pub mod transcript {
    use super::Card;

    /// The CM docs' challenge, and its 3DES-ECB under the zero key.
    pub const CHALLENGE: &str = "d61143f9ccffd2ca";
    pub const RESPONSE: &str = "17466e766e303cb6";

    /// The bytes of `s`, hex with spaces anywhere.
    pub fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    /// Sends an APDU given in hex and returns the response in hex.
    pub fn tx(card: &mut Card, apdu: &str) -> String {
        hex::encode(card.transmit(&h(apdu)))
    }

    /// Sends each APDU in turn: each must get its answer (hex, the status word last).
    pub fn transcript(card: &mut Card, steps: &[(&str, &str)]) {
        for (apdu, answer) in steps {
            assert_eq!(tx(card, apdu), *answer, "the answer to {apdu}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transcript::{h, transcript, tx, CHALLENGE};
    use super::*;

    const ZERO_KEY: [u8; 24] = [0; 24];

    fn card_with(config: Config) -> Card {
        Card::new(
            config,
            Persistent {
                admin_key: AdminKey::new(ZERO_KEY.to_vec()).unwrap(),
                ..Persistent::default()
            },
        )
    }

    fn card() -> Card {
        card_with(Config {
            fixed_challenge: Some(h(CHALLENGE)),
            ..Config::default()
        })
    }

    fn authenticate(card: &mut Card) {
        assert_eq!(tx(card, "00 84 00 00 08"), format!("{CHALLENGE}9000"));
        assert_eq!(tx(card, "00 82 00 00 08 17466e766e303cb6"), "9000");
    }

    #[test]
    fn full_unblock() {
        let mut c = card();
        c.persistent.pin_tries = 0;
        assert_eq!(tx(&mut c, "00 20 00 80"), "6983");
        authenticate(&mut c);
        assert!(c.session.admin_authenticated);
        assert_eq!(tx(&mut c, "00 2C 02 80 04 31323334"), "9000");
        assert_eq!(c.persistent.pin, b"1234");
        assert_eq!(c.persistent.pin_tries, 3);
        assert!(!c.session.admin_authenticated);
        transcript(
            &mut c,
            &[
                ("00 20 00 80", "63c3"),
                ("00 20 00 80 04 31323334", "9000"),
                ("00 20 00 80", "9000"),
            ],
        );
        assert_eq!(c.log.ext_auth_with_data, 1);
        assert_eq!(c.log.rrc, 1);
        assert_eq!(c.log.apdus.len(), 7);
        assert_eq!(c.log.responses.len(), 7);
    }

    #[test]
    fn challenge_is_single_use() {
        let mut c = card();
        authenticate(&mut c);
        // Used once: a replay has no challenge.
        assert_eq!(tx(&mut c, "00 82 00 00 08 17466e766e303cb6"), "6985");
        // Any other command in between clears it.
        for between in [
            "00 82 00 00",
            "00 20 00 80",
            "00 A4 04 00 01 AA",
            "00 FF 00 00",
            "00",
        ] {
            tx(&mut c, "00 84 00 00 08");
            tx(&mut c, between);
            assert_eq!(
                tx(&mut c, "00 82 00 00 08 17466e766e303cb6"),
                "6985",
                "{between}"
            );
        }
        // Power events clear it.
        tx(&mut c, "00 84 00 00 08");
        c.reset();
        assert_eq!(tx(&mut c, "00 82 00 00 08 17466e766e303cb6"), "6985");
        // A wrong cryptogram consumes it as well.
        tx(&mut c, "00 84 00 00 08");
        assert_eq!(tx(&mut c, "00 82 00 00 08 0000000000000000"), "63c4");
        assert_eq!(tx(&mut c, "00 82 00 00 08 17466e766e303cb6"), "6985");
        // And so does an EXTERNAL AUTHENTICATE with a wrong length or key reference.
        tx(&mut c, "00 84 00 00 08");
        assert_eq!(tx(&mut c, "00 82 00 00 04 17466e76"), "6700");
        assert_eq!(tx(&mut c, "00 82 00 00 08 17466e766e303cb6"), "6985");
        tx(&mut c, "00 84 00 00 00");
        assert_eq!(tx(&mut c, "00 82 00 01 08 17466e766e303cb6"), "6a88");
        assert_eq!(c.persistent.admin_tries, 4);
    }

    #[test]
    fn admin_tries_count_down_to_blocked() {
        let mut c = card();
        assert_eq!(tx(&mut c, "00 82 00 00"), "63c5");
        for left in (1..5).rev() {
            tx(&mut c, "00 84 00 00 08");
            assert_eq!(
                tx(&mut c, "00 82 00 00 08 0102030405060708"),
                format!("63c{left}")
            );
            assert_eq!(tx(&mut c, "00 82 00 00"), format!("63c{left}"));
        }
        tx(&mut c, "00 84 00 00 08");
        assert_eq!(tx(&mut c, "00 82 00 00 08 0102030405060708"), "6983");
        assert_eq!(tx(&mut c, "00 82 00 00"), "6983");
        // Blocked: even the right cryptogram is refused.
        tx(&mut c, "00 84 00 00 08");
        assert_eq!(tx(&mut c, "00 82 00 00 08 17466e766e303cb6"), "6983");
        assert!(!c.session.admin_authenticated);
        assert_eq!(c.persistent.admin_tries, 0);
    }

    #[test]
    fn right_cryptogram_resets_admin_tries() {
        let mut c = card();
        tx(&mut c, "00 84 00 00 08");
        tx(&mut c, "00 82 00 00 08 0102030405060708");
        assert_eq!(c.persistent.admin_tries, 4);
        authenticate(&mut c);
        assert_eq!(c.persistent.admin_tries, 5);
    }

    #[test]
    fn no_challenge_first() {
        let mut c = card();
        assert_eq!(tx(&mut c, "00 82 00 00 08 17466e766e303cb6"), "6985");
        assert_eq!(c.persistent.admin_tries, 5);
    }

    #[test]
    fn rrc_needs_admin_auth() {
        let mut c = card();
        assert_eq!(tx(&mut c, "00 2C 02 80 04 31323334"), "6982");
        authenticate(&mut c);
        transcript(
            &mut c,
            &[
                ("00 2C 00 80 04 31323334", "6a86"),
                ("00 2C 02 80 03 313233", "6a80"),
                ("00 2C 02 80 11 3132333435363738393031323334353637", "6a80"),
                ("00 2C 02 80 10 31323334353637383930313233343536", "9000"),
            ],
        );
        // Admin authentication is used up by the reset.
        assert_eq!(tx(&mut c, "00 2C 02 80 04 31323334"), "6982");
        // Power off drops admin authentication too.
        authenticate(&mut c);
        c.power_off();
        c.power_on();
        assert_eq!(tx(&mut c, "00 2C 02 80 04 31323334"), "6982");
    }

    #[test]
    fn pin_tries() {
        let mut c = card();
        transcript(
            &mut c,
            &[
                ("00 20 00 80", "63c3"),
                ("00 20 00 80 04 39393939", "63c2"),
                ("00 20 00 80 04 39393939", "63c1"),
                ("00 20 00 80", "63c1"),
                ("00 20 00 80 08 3132333435363738", "9000"),
                ("00 20 00 80", "9000"),
            ],
        );
        c.reset();
        assert_eq!(tx(&mut c, "00 20 00 80"), "63c3");
        for sw in ["63c2", "63c1", "6983", "6983"] {
            assert_eq!(tx(&mut c, "00 20 00 80 04 39393939"), sw);
        }
        assert_eq!(tx(&mut c, "00 20 00 80 08 3132333435363738"), "6983");
        assert_eq!(tx(&mut c, "00 20 00 80"), "6983");
    }

    #[test]
    fn verify_empty_counts() {
        let mut c = card_with(Config {
            verify_empty_counts: true,
            ..Config::default()
        });
        transcript(
            &mut c,
            &[
                ("00 20 00 80", "63c2"),
                ("00 20 00 80", "63c1"),
                ("00 20 00 80", "6983"),
            ],
        );
    }

    #[test]
    fn t0_chaining() {
        let mut c = card_with(Config {
            t0: true,
            t0_chunk: 3,
            fixed_challenge: Some(h(CHALLENGE)),
            ..Config::default()
        });
        transcript(
            &mut c,
            &[
                ("00 84 00 00 08", "6103"),
                ("00 C0 00 00 03", "d611436103"),
                ("00 C0 00 00 03", "f9ccff6102"),
                ("00 C0 00 00 02", "d2ca9000"),
                ("00 C0 00 00 02", "6985"),
            ],
        );
        // GET RESPONSE keeps the challenge.
        assert_eq!(tx(&mut c, "00 82 00 00 08 17466e766e303cb6"), "9000");
        // Without a chunk limit everything comes in one GET RESPONSE; no data, no 61xx.
        c.config.t0_chunk = 256;
        transcript(
            &mut c,
            &[
                ("00 84 00 00 00", "6108"),
                ("00 C0 00 00 08", &format!("{CHALLENGE}9000")),
                ("00 20 00 80", "63c3"),
            ],
        );
        // Another command drops what was pending.
        transcript(
            &mut c,
            &[
                ("00 84 00 00 08", "6108"),
                ("00 20 00 80", "63c3"),
                ("00 C0 00 00 08", "6985"),
            ],
        );
    }

    #[test]
    fn get_response_needs_t0() {
        let mut c = card();
        assert_eq!(tx(&mut c, "00 C0 00 00 08"), "6d00");
    }

    #[test]
    fn sw6c_first_challenge() {
        let mut c = card_with(Config {
            sw6c: true,
            fixed_challenge: Some(vec![7; 8]),
            ..Config::default()
        });
        transcript(
            &mut c,
            &[
                ("00 84 00 00 00", "6c08"),
                ("00 84 00 00 08", "07070707070707079000"),
                ("00 84 00 00 00", "07070707070707079000"),
                ("00 84 00 00 04", "6c08"),
            ],
        );
    }

    #[test]
    fn random_challenges_differ() {
        let mut c = card_with(Config::default());
        let a = tx(&mut c, "00 84 00 00 08");
        let b = tx(&mut c, "00 84 00 00 08");
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
    }

    #[test]
    fn errors() {
        let mut c = card_with(Config {
            aid: Some(h("A000000397425446590201")),
            respond_ins: vec![
                (InsMatch::any(0xCA), h("0102")),
                (InsMatch::any(0xCB), vec![]),
                (
                    InsMatch {
                        ins: 0xCC,
                        with_data: true,
                    },
                    h("6f00"),
                ),
            ],
            ..Config::default()
        });
        transcript(
            &mut c,
            &[
                ("00 A4 04 00 0B A000000397425446590201", "9000"),
                ("00 A4 04 00 02 A000", "6a82"),
                ("00 12 00 00", "6d00"),
                ("80 84 00 00 08", "6e00"),
                ("00 84", "6700"),
                ("00 84 00 00 08 01", "6700"),
                ("00 84 01 00 08", "6a86"),
                ("00 20 00 81", "6a88"),
                ("00 82 00 01", "6a88"),
                ("00 CA 00 00 00", "0102"),
                ("00 CB", ""),
            ],
        );
        // `CC+data`: only the APDU with a data field is answered by the fault.
        transcript(
            &mut c,
            &[
                ("00 CC 00 00 02 0102", "6f00"),
                ("00 CC 00 00", "6d00"),
                ("00 CC 00 00 08", "6d00"),
            ],
        );
    }

    #[test]
    fn key_ref() {
        let mut c = card_with(Config {
            key_ref: 0x80,
            fixed_challenge: Some(h(CHALLENGE)),
            ..Config::default()
        });
        assert_eq!(tx(&mut c, "00 82 00 80"), "63c5");
        tx(&mut c, "00 84 00 00 08");
        assert_eq!(tx(&mut c, "00 82 00 00 08 17466e766e303cb6"), "6a88");
        tx(&mut c, "00 84 00 00 08");
        assert_eq!(tx(&mut c, "00 82 00 80 08 17466e766e303cb6"), "9000");
    }

    #[test]
    fn never_panics_on_junk() {
        let mut c = card_with(Config {
            t0: true,
            t0_chunk: 1,
            ..Config::default()
        });
        junk(&mut c, &[0x20, 0x2C, 0x82, 0x84, 0xA4, 0xC0], 20_000);
    }

    /// Every family, including a GIDS card still waiting for initialisation and AES keys,
    /// fed random APDUs around the INS it knows and `7C` templates of every shape.
    #[test]
    fn no_family_panics_on_junk() {
        let ins = [
            0x20, 0x22, 0x24, 0x2C, 0x44, 0x82, 0x84, 0x87, 0xA4, 0xC0, 0xCB, 0xDB, 0xE0, 0xF7,
            0xF8, 0xFD,
        ];
        for family in [Family::Gids, Family::Piv, Family::Crescendo] {
            for (alg, key_len, initialised) in [
                (MgmtAlg::Tdes, 24, true),
                (MgmtAlg::Tdes, 16, false),
                (MgmtAlg::Aes128, 16, true),
                (MgmtAlg::Aes256, 32, true),
            ] {
                let mut c = Card::new(
                    Config {
                        family,
                        ..Config::default()
                    },
                    Persistent {
                        admin_key: AdminKey::with_alg(alg, vec![0; key_len]).unwrap(),
                        gids_initialised: initialised,
                        admin_tries: 200,
                        admin_max: 200,
                        ..Persistent::default()
                    },
                );
                junk(&mut c, &ins, 5_000);
            }
        }
    }

    fn junk(c: &mut Card, ins: &[u8], rounds: usize) {
        let mut seed = 0x1234_5678_u32;
        for round in 0..rounds {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let len = (seed % 48) as usize;
            let mut bytes: Vec<u8> = (0..len)
                .map(|i| {
                    let b = (seed.rotate_left(i as u32 * 7)) as u8;
                    // Mostly CLA 00 and INS the card knows, so the paths get exercised.
                    match i {
                        0 => b & 0x01,
                        1 => ins[usize::from(b) % ins.len()],
                        _ => b,
                    }
                })
                .collect();
            // Every other APDU: a well-formed Lc around a 7C template of random inside.
            if round % 2 == 0 && bytes.len() > 8 {
                let inner = bytes.len() - 7;
                bytes[4] = (bytes.len() - 5) as u8;
                bytes[5] = 0x7C;
                bytes[6] = (inner) as u8;
                bytes[7] = [0x80, 0x81, 0x82][usize::from(bytes[7]) % 3];
                bytes[8] = [0, 8, 16, 40][usize::from(bytes[8]) % 4].min(inner - 2) as u8;
            }
            let r = c.transmit(&bytes);
            assert!(r.len() >= 2);
        }
    }
}
