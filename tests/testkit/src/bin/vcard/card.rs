//! The card itself: a Microsoft Base CSP / ISO 7816 style state machine, driven with byte
//! strings (no network here). See the top of vcard.rs for the behaviour.

use des::cipher::{BlockCipherEncrypt, KeyInit};
use des::{TdesEde2, TdesEde3};

use super::apdu::{sw, Command, Response};

const INS_VERIFY: u8 = 0x20;
const INS_RESET_RETRY_COUNTER: u8 = 0x2C;
const INS_EXTERNAL_AUTHENTICATE: u8 = 0x82;
const INS_GET_CHALLENGE: u8 = 0x84;
const INS_SELECT: u8 = 0xA4;
const INS_GET_RESPONSE: u8 = 0xC0;

/// PIN reference (ISO "specific" PIN 80) for VERIFY and RESET RETRY COUNTER.
const PIN_REF: u8 = 0x80;

/// The 3DES admin key: 16 bytes (2-key EDE) or 24 bytes (3-key EDE).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKey(Vec<u8>);

impl AdminKey {
    pub fn new(bytes: Vec<u8>) -> Result<AdminKey, String> {
        match bytes.len() {
            16 | 24 => Ok(AdminKey(bytes)),
            n => Err(format!("admin key must be 16 or 24 bytes, got {n}")),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// 3DES-EDE-ECB of one 8-byte block: the expected EXTERNAL AUTHENTICATE cryptogram.
    pub fn encrypt(&self, block: [u8; 8]) -> [u8; 8] {
        let mut b = block.into();
        match self.0.len() {
            16 => TdesEde2::new_from_slice(&self.0)
                .expect("16-byte key")
                .encrypt_block(&mut b),
            _ => TdesEde3::new_from_slice(&self.0)
                .expect("24-byte key")
                .encrypt_block(&mut b),
        }
        b.into()
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

/// Card behaviour fixed for the life of the process (from the command line).
#[derive(Clone)]
pub struct Config {
    pub key_ref: u8,
    pub aid: Option<Vec<u8>>,
    pub fixed_challenge: Option<[u8; 8]>,
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
}

impl Default for Config {
    fn default() -> Config {
        Config {
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
}

/// Security state; cleared by power off, reset and card removal.
#[derive(Default, Clone)]
pub struct Session {
    pub admin_authenticated: bool,
    pub pin_verified: bool,
    pub challenge: Option<[u8; 8]>,
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
    sw6c_sent: bool,
}

impl Card {
    pub fn new(config: Config, persistent: Persistent) -> Card {
        Card {
            config,
            persistent,
            session: Session::default(),
            log: Log::default(),
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
        let response = if cmd.cla != 0x00 {
            Response::sw(sw::CLA_NOT_SUPPORTED)
        } else {
            match cmd.ins {
                INS_GET_CHALLENGE => self.get_challenge(&cmd),
                INS_EXTERNAL_AUTHENTICATE => self.external_authenticate(&cmd, challenge),
                INS_RESET_RETRY_COUNTER => self.reset_retry_counter(&cmd),
                INS_VERIFY => self.verify(&cmd),
                INS_SELECT => self.select(&cmd),
                _ => Response::sw(sw::INS_NOT_SUPPORTED),
            }
        };
        self.t0_wrap(response)
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
        let challenge = self
            .config
            .fixed_challenge
            .unwrap_or_else(rand::random::<[u8; 8]>);
        self.session.challenge = Some(challenge);
        Response::ok(challenge.to_vec())
    }

    fn external_authenticate(&mut self, cmd: &Command, challenge: Option<[u8; 8]>) -> Response {
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
        let Some(challenge) = challenge else {
            return Response::sw(sw::CONDITIONS_NOT_SATISFIED);
        };
        if cmd.data.len() != 8 {
            return Response::sw(sw::WRONG_LENGTH);
        }
        if cmd.p2 != self.config.key_ref {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        // A new authentication attempt drops the previous admin state.
        self.session.admin_authenticated = false;
        let expected = p.admin_key.encrypt(challenge);
        if constant_time_eq(&expected, &cmd.data) {
            p.admin_tries = p.admin_max;
            self.session.admin_authenticated = true;
            Response::sw(sw::OK)
        } else {
            p.admin_tries = p.admin_tries.saturating_sub(1);
            Response::sw(tries_sw(p.admin_tries))
        }
    }

    fn reset_retry_counter(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0x02 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        if cmd.p2 != PIN_REF {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        if !self.session.admin_authenticated {
            return Response::sw(sw::SECURITY_NOT_SATISFIED);
        }
        if !(self.config.pin_min..=self.config.pin_max_len).contains(&cmd.data.len()) {
            return Response::sw(sw::INCORRECT_DATA);
        }
        let p = &mut self.persistent;
        p.pin = cmd.data.clone();
        p.pin_tries = p.pin_max;
        self.session.admin_authenticated = false;
        self.session.pin_verified = false;
        Response::sw(sw::OK)
    }

    fn verify(&mut self, cmd: &Command) -> Response {
        if cmd.p1 != 0x00 {
            return Response::sw(sw::INCORRECT_P1P2);
        }
        if cmd.p2 != PIN_REF {
            return Response::sw(sw::REF_DATA_NOT_FOUND);
        }
        let p = &mut self.persistent;
        if p.pin_tries == 0 {
            return Response::sw(sw::AUTH_BLOCKED);
        }
        if cmd.data.is_empty() && !self.config.verify_empty_counts {
            return if self.session.pin_verified {
                Response::sw(sw::OK)
            } else {
                Response::sw(sw::tries_left(p.pin_tries))
            };
        }
        // An empty VERIFY with --verify-empty-counts never matches (PINs are >= 1 byte).
        if !cmd.data.is_empty() && constant_time_eq(&p.pin, &cmd.data) {
            p.pin_tries = p.pin_max;
            self.session.pin_verified = true;
            Response::sw(sw::OK)
        } else {
            p.pin_tries = p.pin_tries.saturating_sub(1);
            self.session.pin_verified = false;
            Response::sw(tries_sw(p.pin_tries))
        }
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

fn tries_sw(tries: u32) -> u16 {
    if tries == 0 {
        sw::AUTH_BLOCKED
    } else {
        sw::tries_left(tries)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO_KEY: [u8; 24] = [0; 24];
    const CHALLENGE: &str = "d61143f9ccffd2ca";

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn card_with(config: Config) -> Card {
        Card::new(
            config,
            Persistent {
                admin_key: AdminKey::new(ZERO_KEY.to_vec()).unwrap(),
                admin_tries: 5,
                admin_max: 5,
                pin: b"12345678".to_vec(),
                pin_tries: 3,
                pin_max: 3,
            },
        )
    }

    fn card() -> Card {
        card_with(Config {
            fixed_challenge: Some(h(CHALLENGE).try_into().unwrap()),
            ..Config::default()
        })
    }

    /// Sends an APDU given in hex and returns the response in hex.
    fn tx(card: &mut Card, apdu: &str) -> String {
        hex::encode(card.transmit(&h(apdu)))
    }

    fn authenticate(card: &mut Card) {
        assert_eq!(tx(card, "00 84 00 00 08"), format!("{CHALLENGE}9000"));
        assert_eq!(tx(card, "00 82 00 00 08 17466e766e303cb6"), "9000");
    }

    #[test]
    fn golden_vector_zero_key() {
        let key = AdminKey::new(ZERO_KEY.to_vec()).unwrap();
        let cryptogram = key.encrypt(h(CHALLENGE).try_into().unwrap());
        assert_eq!(hex::encode(cryptogram), "17466e766e303cb6");
        // A 16-byte key K1||K2 is the 24-byte key K1||K2||K1.
        let k16 = h("0123456789abcdeffedcba9876543210");
        let k24 = [&k16[..], &k16[..8]].concat();
        let block = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            AdminKey::new(k16).unwrap().encrypt(block),
            AdminKey::new(k24).unwrap().encrypt(block)
        );
        assert!(AdminKey::new(vec![0; 8]).is_err());
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
        assert_eq!(tx(&mut c, "00 20 00 80"), "63c3");
        assert_eq!(tx(&mut c, "00 20 00 80 04 31323334"), "9000");
        assert_eq!(tx(&mut c, "00 20 00 80"), "9000");
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
        assert_eq!(tx(&mut c, "00 2C 00 80 04 31323334"), "6a86");
        assert_eq!(tx(&mut c, "00 2C 02 80 03 313233"), "6a80");
        assert_eq!(
            tx(&mut c, "00 2C 02 80 11 3132333435363738393031323334353637"),
            "6a80"
        );
        assert_eq!(
            tx(&mut c, "00 2C 02 80 10 31323334353637383930313233343536"),
            "9000"
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
        assert_eq!(tx(&mut c, "00 20 00 80"), "63c3");
        assert_eq!(tx(&mut c, "00 20 00 80 04 39393939"), "63c2");
        assert_eq!(tx(&mut c, "00 20 00 80 04 39393939"), "63c1");
        assert_eq!(tx(&mut c, "00 20 00 80"), "63c1");
        assert_eq!(tx(&mut c, "00 20 00 80 08 3132333435363738"), "9000");
        assert_eq!(tx(&mut c, "00 20 00 80"), "9000");
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
        assert_eq!(tx(&mut c, "00 20 00 80"), "63c2");
        assert_eq!(tx(&mut c, "00 20 00 80"), "63c1");
        assert_eq!(tx(&mut c, "00 20 00 80"), "6983");
    }

    #[test]
    fn t0_chaining() {
        let mut c = card_with(Config {
            t0: true,
            t0_chunk: 3,
            fixed_challenge: Some(h(CHALLENGE).try_into().unwrap()),
            ..Config::default()
        });
        assert_eq!(tx(&mut c, "00 84 00 00 08"), "6103");
        assert_eq!(tx(&mut c, "00 C0 00 00 03"), "d611436103");
        assert_eq!(tx(&mut c, "00 C0 00 00 03"), "f9ccff6102");
        assert_eq!(tx(&mut c, "00 C0 00 00 02"), "d2ca9000");
        assert_eq!(tx(&mut c, "00 C0 00 00 02"), "6985");
        // GET RESPONSE keeps the challenge.
        assert_eq!(tx(&mut c, "00 82 00 00 08 17466e766e303cb6"), "9000");
        // Without a chunk limit everything comes in one GET RESPONSE; no data, no 61xx.
        c.config.t0_chunk = 256;
        assert_eq!(tx(&mut c, "00 84 00 00 00"), "6108");
        assert_eq!(tx(&mut c, "00 C0 00 00 08"), format!("{CHALLENGE}9000"));
        assert_eq!(tx(&mut c, "00 20 00 80"), "63c3");
        // Another command drops what was pending.
        assert_eq!(tx(&mut c, "00 84 00 00 08"), "6108");
        assert_eq!(tx(&mut c, "00 20 00 80"), "63c3");
        assert_eq!(tx(&mut c, "00 C0 00 00 08"), "6985");
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
            fixed_challenge: Some([7; 8]),
            ..Config::default()
        });
        assert_eq!(tx(&mut c, "00 84 00 00 00"), "6c08");
        assert_eq!(tx(&mut c, "00 84 00 00 08"), "07070707070707079000");
        assert_eq!(tx(&mut c, "00 84 00 00 00"), "07070707070707079000");
        assert_eq!(tx(&mut c, "00 84 00 00 04"), "6c08");
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
        assert_eq!(tx(&mut c, "00 A4 04 00 0B A000000397425446590201"), "9000");
        assert_eq!(tx(&mut c, "00 A4 04 00 02 A000"), "6a82");
        assert_eq!(tx(&mut c, "00 12 00 00"), "6d00");
        assert_eq!(tx(&mut c, "80 84 00 00 08"), "6e00");
        assert_eq!(tx(&mut c, "00 84"), "6700");
        assert_eq!(tx(&mut c, "00 84 00 00 08 01"), "6700");
        assert_eq!(tx(&mut c, "00 84 01 00 08"), "6a86");
        assert_eq!(tx(&mut c, "00 20 00 81"), "6a88");
        assert_eq!(tx(&mut c, "00 82 00 01"), "6a88");
        assert_eq!(tx(&mut c, "00 CA 00 00 00"), "0102");
        assert_eq!(tx(&mut c, "00 CB"), "");
        // `CC+data`: only the APDU with a data field is answered by the fault.
        assert_eq!(tx(&mut c, "00 CC 00 00 02 0102"), "6f00");
        assert_eq!(tx(&mut c, "00 CC 00 00"), "6d00");
        assert_eq!(tx(&mut c, "00 CC 00 00 08"), "6d00");
    }

    #[test]
    fn key_ref() {
        let mut c = card_with(Config {
            key_ref: 0x80,
            fixed_challenge: Some(h(CHALLENGE).try_into().unwrap()),
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
        let mut seed = 0x1234_5678_u32;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let len = (seed % 12) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    let b = (seed >> (i % 4 * 8)) as u8;
                    // Mostly CLA 00 and INS the card knows, so the paths get exercised.
                    match i {
                        0 => b & 0x01,
                        1 => [0x20, 0x2C, 0x82, 0x84, 0xA4, 0xC0][usize::from(b) % 6],
                        _ => b,
                    }
                })
                .collect();
            let r = c.transmit(&bytes);
            assert!(r.len() >= 2);
        }
    }
}
