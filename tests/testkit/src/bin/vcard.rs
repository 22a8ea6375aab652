//! scunblock-vcard: a virtual smart card for vpcd (vsmartcard): a Microsoft Base CSP / ISO 7816
//! card by default, or a GIDS, PIV (YubiKey) or HID Crescendo card (`--family`).
//!
//! It connects to vpcd as a card (TCP, default 127.0.0.1:35963 = vpcd slot 0). Every frame
//! both ways is a u16 big-endian length and a payload. From vpcd, 1-byte payloads are
//! control: 00 power off, 01 power on, 02 reset, 04 "send the ATR" (answered with the ATR);
//! longer payloads are command APDUs, answered with the response APDU. The connection
//! closing means the card is removed; `scripts/vstack card` starts this binary.
//!
//! # The card, `--family iso` (the default; `--help` lists the options)
//! - GET CHALLENGE `00 84 00 00 08` (Le 08 or 00): 8 random bytes (or `--challenge`) + 9000,
//!   another Le: 6C08. The challenge is single-use: ANY command other than an EXTERNAL
//!   AUTHENTICATE with data clears it, and so do power off, reset and removal (GET RESPONSE
//!   in T=0 mode is the exception: it only fetches the data).
//! - EXTERNAL AUTHENTICATE `00 82 P1 P2 08 <3DES-EDE-ECB(admin key, challenge)>`: blocked
//!   6983, no challenge 6985, data length != 8 6700, P2 != --key-ref 6A88; right: admin
//!   authenticated, tries back to max, 9000; wrong: tries - 1, 63Cx (6983 at zero). The
//!   challenge is consumed either way. `00 82 00 P2` without data: 63Cx / 6983 (no change).
//! - RESET RETRY COUNTER `00 2C 02 80 Lc <new PIN>`: P1 != 02 6A86, P2 != 80 6A88, not
//!   admin-authenticated 6982, PIN length outside --pin-min..--pin-max-len 6A80; else the PIN
//!   is set, its tries go back to max, admin authentication is used up, 9000.
//! - VERIFY `00 20 00 80 [Lc PIN]`: blocked 6983; without data 9000 if verified in this
//!   session, else 63Cx (with --verify-empty-counts: a failed try); with data right 9000
//!   (tries back to max), wrong 63Cx / 6983.
//! - SELECT `00 A4 04 xx Lc AID`: 9000 if AID == --aid, else 6A82.
//! - GET RESPONSE `00 C0 00 00 Le` (only with --t0): pending bytes, 61xx while more remain.
//!   With --t0 every response with data is announced as `61xx` first (--t0-chunk N: at most
//!   N bytes per piece).
//! - Unknown INS 6D00, CLA != 00 6E00, fewer than 4 bytes or inconsistent Lc 6700.
//! - Power off / reset / removal drop admin authentication, PIN verification, the challenge
//!   and pending T=0 data.
//!
//! # Card families (`--family gids|piv|crescendo`)
//! Written from the clients' sources (OpenSC card-gids.c, gids-tool.c, card-piv.c;
//! yubico-piv-tool lib/ykpiv.c; GidsApplet) and HID's documentation, as
//! docs/cards.md summarizes them; `tests/thirdparty.rs` checks them
//! with those clients. What every family shares:
//! - The admin key (`--admin-key`; PIV 9B / Crescendo XAUTH: 3DES or AES, `--mgmt-alg`) has
//!   an internal retry counter (`--admin-tries`, `--admin-max`): a wrong answer costs one
//!   try, at zero every admin authentication answers 6983, a right one restores the maximum.
//!   No command reports it (no 63Cx query exists on these cards), except Crescendo's UNLOCK
//!   PIN without XAUTH, which answers 63CX as HID documents it.
//! - The challenge and a pending mutual step are single-use: any other command clears them
//!   (6985 at the response step), and so do power off, reset and removal.
//! - `--card-id HEX` (16 bytes, default 00112233445566778899AABBCCDDEEFF) is the GIDS cardid
//!   and the PIV CHUID GUID; `--no-card-id`: no cardid object / no CHUID (6A82).
//! - Default ATRs: gids the Microsoft TPM virtual smart card's
//!   `3B 8D 01 80 FB A0 00 00 03 97 42 54 46 59 04 01 CF`; piv a YubiKey 5's
//!   `3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 40`; crescendo a
//!   C2300's `3B D5 96 FF 81 91 FE 1F C3 43 32 33 30 30 CC`.
//!
//! GIDS (gids.rs):
//! - SELECT `00 A4 04 00|0C` of the GIDS AID (9 bytes or more of A0 00 00 03 97 42 54 46 59
//!   02 01) -> FCI `61 12 4F 0B <AID> 73 03 40 01 C0` (P2 0C: none) + 9000; other AIDs 6A82;
//!   SELECT `00 A4 00 0C 02 3F FF` (the applet file) 9000.
//! - MSE SET `00 22 81|C1 A4 03 83 01 80` -> 9000 (key ref other than 80 6A88).
//! - GENERAL AUTHENTICATE `00 87 00 00` (after MSE, else 6985; a new card 6986):
//!   `7C 02 81 00` -> `7C 0A 81 08 <C>`; `7C 0A 82 08 <3DES-ECB(K, C)>` -> 9000 / 6982;
//!   mutual `7C 12 81 10 <R1>` -> `7C 12 81 10 <R2>`; `7C 2A 82 28 <3DES-CBC(K, IV 0,
//!   R2 || R1 || Z1 (7) || 80)>` -> `7C 2A 82 28 <3DES-CBC(K, R1 || R2 || Z2 || 80)>` (44
//!   bytes) / 6982. No challenge 6985, another template 6984.
//! - RESET RETRY COUNTER `00 2C 02 80 Lc <PIN>` after admin authentication (6982 without;
//!   length outside --pin-min..--pin-max-len 6700): PIN set, tries to max, all auth dropped.
//! - VERIFY `00 20 00 80 [PIN]` as the iso card; `00 20 00 82` logs everything out.
//! - GET DATA `00 CB <file> 04 5C 02 <DO> 00`: 3FFF/7F71 the PIN status `7F 71 06 97 01
//!   <left> 93 01 <limit>`; 3FFF/7F73 (PUK) 6A88; the objects: master file A000/DF1F
//!   (records mscp, cardid, cardapps, cardcf, mscp/cmapfile), cardid A012/DF20, cardapps,
//!   cardcf, cmapfile; others 6A82.
//! - `--gids-uninitialised`: a new card (no objects, no admin authentication) that takes
//!   what `gids-tool --initialize` sends: CHANGE REFERENCE DATA `00 24 01 80` (the first
//!   PIN), CREATE FILE `00 E0`, ACTIVATE `00 44`, PUT DATA `00 DB` (objects; 3FFF tag 70 the
//!   admin key `84 01 80 A5 { 87 18 <key> .. }`; A012/DF20 the card id); ACTIVATE after
//!   SELECT 3FFF ends the initialisation. An initialised card wants admin or PIN
//!   authentication for PUT DATA (6982) and refuses CHANGE REFERENCE DATA (6985).
//!
//! PIV (piv.rs):
//! - SELECT of any prefix (5 bytes or more) of A0 00 00 03 08 00 00 10 00 01 00 -> `61 11 4F
//!   06 00 00 10 00 01 00 79 07 4F 05 A0 00 00 03 08` + 9000; other AIDs 6A82.
//! - GENERAL AUTHENTICATE `00 87 <alg> 9B` (alg: 03 3DES, 08/0A/0C AES-128/192/256; other
//!   than the key's 6A86, key other than 9B 6A88): `7C 02 81 00` -> `7C 0A 81 08 <C>` (AES
//!   `7C 12 81 10`); `7C 0A 82 08 <E(K, C)>` -> 9000 / --wrong-response-sw (default 6982);
//!   witness `7C 02 80 00` -> `7C 0A 80 08 <E(K, W)>`; `7C 14 80 08 <W> 81 08 <C2>` ->
//!   `7C 0A 82 08 <E(K, C2)>` / --wrong-response-sw.
//! - VERIFY `00 20 00 80 [08 <PIN FF-padded>]` (empty: 63Cx, 9000 once verified); `00 20 00
//!   81` (PUK) 6A88.
//! - RESET RETRY COUNTER `00 2C 00 80 10 <PUK ‖ new PIN, FF-padded to 8 each>` -> 9000 /
//!   63Cx (wrong PUK: one PUK try less) / 6983 (PUK blocked) / 6700 (Lc != 16).
//! - GET DATA `00 CB 3F FF 05 5C 03 5F C1 02 00` -> `53 3B <CHUID: 30 19 FASC-N, 34 10 GUID,
//!   35 08 expiry, 3E 00, FE 00>` (yubico-piv-tool's template); other objects 6A82. PUT DATA
//!   `00 DB 3F FF .. 5C <tag> 53 <object>` after 9B authentication stores an object; a
//!   CHUID's GUID becomes the card id.
//! - YubiKey extras (off with --no-metadata: 6D00): GET METADATA `00 F7 00 9B|80|81`, GET
//!   VERSION `00 FD` (5.7.1), GET SERIAL `00 F8` (12345678).
//!
//! Crescendo (crescendo.rs):
//! - SELECT of the ACA `A0 00 00 00 79 10 00` and of the PIV AID (5 bytes or more) -> 9000.
//! - GET CHALLENGE `00 84 00 00 00` -> 8 bytes (3DES) or 16 (aes128) + 9000.
//! - EXTERNAL AUTHENTICATE `00 82 00 01 Lc <ECB(K, C)>` -> 9000 / 6300 wrong / 6985 no
//!   challenge / 6A88 P2 != 01 / 6983 blocked.
//! - UNLOCK PIN `00 2C 02 00 08 <PIN FF-padded>` -> 9000 / 63CX not XAUTH-authenticated /
//!   6A80 bad format / 6983 XAUTH blocked.
//! - VERIFY `00 20 00 80` of the PIV instance's PIN (FF-padded; empty 63Cx).
//!
//! # Faults
//! `--vanish-after N` (Nth command APDU, 1-based, control bytes not counted) and
//! `--vanish-on-ins XX` close the connection WITHOUT processing that APDU and exit 0;
//! `--vanish-after-ins XX` processes it (state updated and saved), then closes without
//! answering and exits 0; `--respond-ins XX=HEX` answers every APDU with INS XX with exactly
//! those bytes (possibly none) and changes no state (not even the pending challenge: the
//! exchange is invisible to the card). `--delay-ins XX=MS` stalls MS milliseconds on every
//! APDU with INS XX before anything else happens to it (the state file lists the APDU
//! before the stall), e.g. to stop pcscd while the host waits for the answer. Every INS
//! option also takes `XX+data`: only APDUs with a data field match, so `82+data` hits
//! EXTERNAL AUTHENTICATE with a cryptogram but never the admin tries query `00 82 00 00`. A vanished APDU is still logged in
//! `apdus` (and counted) but has no entry in `responses`. An EMPTY response (`XX=`) is sent,
//! then the connection is closed: vpcd 0.8 waits for more bytes after an empty frame and
//! only EOF releases the host (which gets 0 bytes, and the card is removed).
//!
//! Vanishing closes with a TCP reset (`--vanish-fin`: a normal close). Measured with vpcd 0.8
//! (Debian 12): either way the host's SCardTransmit SUCCEEDS with an EMPTY response (0 bytes,
//! no status word), and pcscd sees the removal at its next poll (<= 400 ms). Current vpcd
//! sources fail the transmit on a reset (pcscd: SCARD_E_NOT_TRANSACTED) and give the empty
//! response on a normal close.
//!
//! # State file (`--state FILE`)
//! If FILE exists at start, the persistent fields are loaded from it (they override the
//! command line; `--fresh-state` ignores the file): `admin_tries`, `admin_max`, `pin_tries`,
//! `pin_max`, `pin_hex` (or `pin`), `admin_key` with `mgmt_alg`, `puk_tries`, `puk_max`,
//! `puk_hex`, `card_id` (null: none) and `gids_initialised`. So a re-inserted card (same FILE) keeps its
//! counters across process restarts. The file is rewritten atomically (tmp + rename) at start,
//! after every connection, control event and command APDU (BEFORE the response is sent, so
//! a host that has its answer can read the state), as pretty JSON, one top-level key per
//! line (`  "key": value,`; keys sorted, then "apdus" and "responses" last):
//! ```json
//! { "pid": 1234,                 // this process: tells a fresh file from an old one
//!   "powered": true,
//!   "admin_tries": 5, "admin_max": 5, "pin_tries": 3, "pin_max": 3,
//!   "pin": "12345678",           // lossy UTF-8 of the PIN bytes; "pin_hex" is exact
//!   "pin_hex": "3132333435363738",
//!   "admin_key": "000000000000000000000000000000000000000000000000",
//!   "admin_authenticated": false, "pin_verified": false,
//!   "challenge": null,           // or the pending challenge as hex
//!   "apdus": ["0084000008"],     // every command APDU this process received, lowercase hex
//!   "responses": ["d61143f9ccffd2ca9000"],   // every response sent, lowercase hex
//!   "family": "iso", "mgmt_alg": "3des",
//!   "card_id": "00112233445566778899aabbccddeeff",   // or null
//!   "puk_tries": 3, "puk_max": 3, "puk_hex": "3132333435363738",
//!   "gids_initialised": true,
//!   "admin_responses": 0,        // APDUs that carried an admin cryptogram: EXTERNAL
//!                                // AUTHENTICATE with data; GENERAL AUTHENTICATE whose 7C
//!                                // holds 82 (a response) or 80 with a value (PIV witness)
//!   "ext_auth_with_data": 0,     // EXTERNAL AUTHENTICATE with data received
//!   "rrc": 0,                    // RESET RETRY COUNTER received
//!   "atr_requests": 1,           // control 04 received
//!   "power_ons": 1, "resets": 0, "connections": 1,
//!   "local_port": 41234,         // our end of the vpcd connection (null: none)
//!   "cpu_us": 1234 }             // this process's CPU time so far (benchmarks)
//! ```
//! Only the fields named above are loaded; the rest (session, logs, counters of events) is
//! per process and starts empty.
//! Rewriting the file costs ~0.1 ms plus its size (ext4: ~0.4 ms at 5000 logged APDUs);
//! `--no-apdu-log` keeps the two logs empty for long runs (the counters still count).
//! `--state-on-events` rewrites the file only at start and on connection and power events
//! (benchmarks: the host then spends on the card what a real card would cost it).
//!
//! # Connection
//! Connecting is retried every 50 ms for --connect-timeout seconds (exit 1 after that). When
//! vpcd closes the connection the card exits 0, or with --reconnect powers off and connects
//! again (every 100 ms, forever), keeping its state. SIGTERM/SIGINT just end the process.

#[path = "vcard/apdu.rs"]
mod apdu;
#[path = "vcard/card.rs"]
mod card;
#[path = "vcard/crescendo.rs"]
mod crescendo;
#[path = "vcard/crypto.rs"]
mod crypto;
#[path = "vcard/gids.rs"]
mod gids;
#[path = "vcard/link.rs"]
mod link;
#[path = "vcard/options.rs"]
mod options;
#[path = "vcard/piv.rs"]
mod piv;
#[path = "vcard/state_file.rs"]
mod state_file;

use std::time::{Duration, Instant};

use card::Card;
use link::Link;
use options::Options;
use state_file::StateFile;

/// How a connection ended.
enum End {
    /// vpcd closed it (or it broke): the card was "removed" by the reader side.
    Closed(String),
    /// A fault option made the card vanish: exit.
    Vanish,
}

struct VCard {
    card: Card,
    atr: Vec<u8>,
    /// `--atr-after-reset`: the ATR from the first warm reset (or second power-on) on: a
    /// different card, as far as the host can tell.
    atr_after_reset: Option<Vec<u8>>,
    powered_once: bool,
    state: Option<StateFile>,
    save_failed: bool,
    commands: u64,
    vanish_after: Option<u64>,
    vanish_on_ins: Option<card::InsMatch>,
    vanish_after_ins: Option<card::InsMatch>,
    delay_ins: Vec<(card::InsMatch, Duration)>,
    apdu_time: Duration,
    quiet: bool,
    save_per_apdu: bool,
}

impl VCard {
    fn save(&mut self) {
        let Some(state) = &mut self.state else { return };
        if let Err(e) = state.save(&self.card) {
            if !self.save_failed {
                eprintln!("vcard: cannot write the state file: {e}");
            }
            self.save_failed = true;
        }
    }

    fn serve(&mut self, link: &mut Link) -> End {
        loop {
            let frame = match link.read_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return End::Closed("vpcd closed the connection".into()),
                Err(e) => return End::Closed(format!("connection broken: {e}")),
            };
            let reply = match frame.as_slice() {
                [] => None,
                [control] => self.control(*control),
                apdu => match self.command(apdu) {
                    Some(response) => Some(response),
                    None => return End::Vanish,
                },
            };
            if let Some(reply) = reply {
                if let Err(e) = link.write_frame(&reply) {
                    return End::Closed(format!("connection broken: {e}"));
                }
                if reply.is_empty() {
                    // vpcd 0.8 then blocks in recv(len 0, MSG_WAITALL) until a byte or EOF
                    // comes: only closing lets the host have its empty response.
                    return End::Closed(
                        "sent an empty response; closing (vpcd waits for EOF)".into(),
                    );
                }
            }
        }
    }

    fn swap_atr(&mut self) {
        if let Some(atr) = self.atr_after_reset.take() {
            eprintln!("vcard: --atr-after-reset: ATR now {}", hex::encode(&atr));
            self.atr = atr;
        }
    }

    fn control(&mut self, byte: u8) -> Option<Vec<u8>> {
        let reply = match byte {
            0x00 => {
                self.card.power_off();
                None
            }
            0x01 => {
                self.card.power_on();
                if std::mem::replace(&mut self.powered_once, true) {
                    self.swap_atr();
                }
                None
            }
            0x02 => {
                self.card.reset();
                self.swap_atr();
                None
            }
            0x04 => {
                self.card.atr_requested();
                Some(self.atr.clone())
            }
            other => {
                eprintln!("vcard: ignoring unknown control byte {other:02x}");
                None
            }
        };
        if !self.quiet && byte != 0x04 {
            eprintln!("vcard: control {byte:02x}");
        }
        // An ATR request is not a power event.
        if self.save_per_apdu || byte != 0x04 {
            self.save();
        }
        reply
    }

    /// The response to send, or None when the card vanishes.
    fn command(&mut self, apdu: &[u8]) -> Option<Vec<u8>> {
        self.card.receive(apdu);
        self.commands += 1;
        let matches = |m: &Option<card::InsMatch>| m.is_some_and(|m| m.matches(apdu));
        let delay = self
            .delay_ins
            .iter()
            .find(|(m, _)| m.matches(apdu))
            .map(|d| d.1);
        if let Some(delay) = delay {
            // Saved first: a test waiting for this APDU sees it while the card stalls.
            self.save();
            eprintln!(
                "vcard: > {} : stalling {} ms",
                hex::encode(apdu),
                delay.as_millis()
            );
            std::thread::sleep(delay);
        }
        if self.vanish_after == Some(self.commands) || matches(&self.vanish_on_ins) {
            eprintln!("vcard: > {} : vanishing unprocessed", hex::encode(apdu));
            self.save();
            return None;
        }
        let response = self.card.process(apdu);
        if !self.apdu_time.is_zero() {
            std::thread::sleep(self.apdu_time);
        }
        if matches(&self.vanish_after_ins) {
            eprintln!(
                "vcard: > {} : processed ({}), vanishing unanswered",
                hex::encode(apdu),
                hex::encode(&response)
            );
            self.save();
            return None;
        }
        self.card.sent(&response);
        if self.save_per_apdu {
            self.save();
        }
        if !self.quiet {
            eprintln!(
                "vcard: > {} < {}",
                hex::encode(apdu),
                hex::encode(&response)
            );
        }
        Some(response)
    }
}

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    // Started in the background by a script, SIGINT may arrive ignored: take it back so an
    // interrupted test run does not leave cards behind.
    // SAFETY: plain signal disposition changes at start, before any thread exists.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
    // Usage errors and --help: clap prints and exits (2 on errors).
    let opts = Options::from_args();
    let state = opts.state.as_deref().map(StateFile::new);
    let persistent = match (&state, opts.fresh_state) {
        (Some(file), false) => match file.load(opts.persistent.clone()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("scunblock-vcard: cannot load the state file: {e}");
                return 2;
            }
        },
        _ => opts.persistent.clone(),
    };
    let mut vcard = VCard {
        card: Card::new(opts.config.clone(), persistent),
        atr: opts.atr.clone(),
        atr_after_reset: opts.atr_after_reset.clone(),
        powered_once: false,
        state,
        save_failed: false,
        commands: 0,
        vanish_after: opts.vanish_after,
        vanish_on_ins: opts.vanish_on_ins,
        vanish_after_ins: opts.vanish_after_ins,
        delay_ins: opts.delay_ins.clone(),
        apdu_time: opts.apdu_time,
        quiet: opts.quiet,
        save_per_apdu: opts.save_per_apdu,
    };
    vcard.save();
    eprintln!(
        "vcard: pid {} ({} card) for vpcd at {}:{} (admin tries {}/{}, PIN tries {}/{})",
        std::process::id(),
        opts.config.family.name(),
        opts.host,
        opts.port,
        vcard.card.persistent.admin_tries,
        vcard.card.persistent.admin_max,
        vcard.card.persistent.pin_tries,
        vcard.card.persistent.pin_max,
    );

    let (host, port) = (opts.host.as_str(), opts.port);
    let mut deadline = Some(Instant::now() + opts.connect_timeout);
    let mut interval = Duration::from_millis(50);
    loop {
        let mut link = match Link::connect(host, port, deadline, interval) {
            Ok(link) => link,
            Err(e) => {
                eprintln!("scunblock-vcard: cannot connect to vpcd at {host}:{port}: {e}");
                return 1;
            }
        };
        vcard.card.log.connections += 1;
        vcard.card.log.local_port = link.local_port();
        vcard.save();
        eprintln!("vcard: connected to vpcd at {host}:{port} (card inserted)");
        match vcard.serve(&mut link) {
            End::Vanish => {
                if opts.vanish_fin {
                    link.close();
                } else {
                    link.abort();
                }
                return 0;
            }
            End::Closed(why) => {
                link.close();
                vcard.card.log.local_port = None;
                vcard.card.power_off();
                vcard.save();
                eprintln!("vcard: {why}");
                if !opts.reconnect {
                    return 0;
                }
            }
        }
        deadline = None;
        interval = Duration::from_millis(100);
    }
}
