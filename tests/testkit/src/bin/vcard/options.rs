//! Command line of scunblock-vcard (clap: `--opt VALUE` or `--opt=VALUE`), and the rules
//! between its options.

use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory as _, Parser};

use super::card::{AdminKey, Config, Family, InsMatch, MgmtAlg, Persistent, DEFAULT_CARD_ID};

/// T=1, historical bytes 80 | 55 "vcard" (category 80, compact-TLV tag 5 = issuer data), TCK.
pub const DEFAULT_ATR: &str = "3B 87 01 80 55 76 63 61 72 64 31";
/// The Microsoft TPM virtual smart card (GIDS): no other OpenSC driver claims it.
pub const GIDS_ATR: &str = "3B 8D 01 80 FB A0 00 00 03 97 42 54 46 59 04 01 CF";
/// A YubiKey 5 (CCID interface): "Yubikey" in the historical bytes.
pub const PIV_ATR: &str = "3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 69 4B 65 79 40";
/// HID Crescendo C2300 ("C2300" in the historical bytes).
pub const CRESCENDO_ATR: &str = "3B D5 96 FF 81 91 FE 1F C3 43 32 33 30 30 CC";

/// The ATR a family's card has when --atr is not given.
pub fn default_atr(family: Family) -> &'static str {
    match family {
        Family::Iso => DEFAULT_ATR,
        Family::Gids => GIDS_ATR,
        Family::Piv => PIV_ATR,
        Family::Crescendo => CRESCENDO_ATR,
    }
}

/// A virtual smart card for vpcd (vsmartcard): Base CSP style (iso), GIDS, PIV or Crescendo.
///
/// Options take `--opt VALUE` or `--opt=VALUE`. Fault options match APDUs by INS: `XX` is
/// every APDU with INS XX, `XX+data` only those with a data field (e.g. `82+data` =
/// EXTERNAL AUTHENTICATE with a cryptogram, not the query 00 82 00 00).
#[derive(Parser)]
// As the scripts and tests expect: an option given twice takes its last value.
#[command(name = "scunblock-vcard", args_override_self = true)]
struct Cli {
    /// vpcd host
    #[arg(
        long,
        value_name = "HOST",
        default_value = "127.0.0.1",
        help_heading = "Connection"
    )]
    host: String,
    /// vpcd port (35963 = slot 0; 35964 = slot 1)
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 35963,
        help_heading = "Connection"
    )]
    port: u16,
    /// Keep trying to connect this long
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds, help_heading = "Connection")]
    connect_timeout: Duration,
    /// When vpcd closes the connection, reconnect (forever, every 100 ms) instead of exiting
    #[arg(long, help_heading = "Connection")]
    reconnect: bool,

    /// iso (the generic Base CSP dialect), gids, piv or crescendo (see vcard.rs)
    #[arg(long, value_name = "NAME", default_value = "iso", value_parser = Family::parse, help_heading = "Card")]
    family: Family,
    /// The ATR [default per family: iso 3B 87 01 80 55 76 63 61 72 64 31, gids the TPM
    /// virtual smart card's, piv a YubiKey 5's, crescendo a C2300's]
    #[arg(long, value_name = "HEX", value_parser = hex_bytes, help_heading = "Card")]
    atr: Option<Bytes>,
    /// Answer this ATR from the first reset (or second power-on) on
    #[arg(long, value_name = "HEX", value_parser = hex_bytes, help_heading = "Card")]
    atr_after_reset: Option<Bytes>,
    /// The admin key (PIV: 9B management key; crescendo: XAUTH key): 3DES 16 or 24 bytes,
    /// AES 16/24/32 [default: all zero, 24 bytes, AES-128 16, AES-256 32]
    #[arg(long, value_name = "HEX", value_parser = hex_bytes, help_heading = "Card")]
    admin_key: Option<Bytes>,
    /// 3des, aes128, aes192, aes256 (piv); 3des, aes128 (crescendo)
    #[arg(long, value_name = "ALG", default_value = "3des", value_parser = MgmtAlg::parse, help_heading = "Card")]
    mgmt_alg: MgmtAlg,
    /// 16 bytes: GIDS cardid, PIV CHUID GUID [default: 00112233445566778899AABBCCDDEEFF]
    #[arg(long, value_name = "HEX", value_parser = card_id, help_heading = "Card")]
    card_id: Option<[u8; 16]>,
    /// GIDS: no cardid object; PIV: no CHUID
    #[arg(long, help_heading = "Card")]
    no_card_id: bool,
    /// GIDS: a new card without file system or admin key, for gids-tool --initialize
    #[arg(long, help_heading = "Card")]
    gids_uninitialised: bool,
    /// PIV PUK
    #[arg(
        long,
        value_name = "ASCII",
        default_value = "12345678",
        allow_hyphen_values = true,
        help_heading = "Card"
    )]
    puk: String,
    /// PUK tries left [default: --puk-max]
    #[arg(long, value_name = "N", help_heading = "Card")]
    puk_tries: Option<u32>,
    /// PUK tries at most
    #[arg(long, value_name = "N", default_value_t = 3, help_heading = "Card")]
    puk_max: u32,
    /// PIV: not a YubiKey (GET METADATA, VERSION, SERIAL answer 6D00)
    #[arg(long, help_heading = "Card")]
    no_metadata: bool,
    /// PIV: the status word of a wrong 9B response [default: 6982]
    #[arg(long, value_name = "HEX", value_parser = status_word, help_heading = "Card")]
    wrong_response_sw: Option<u16>,
    /// iso: EXTERNAL AUTHENTICATE P2 [default: 00]
    #[arg(long, value_name = "HEX", value_parser = parse_byte, help_heading = "Card")]
    key_ref: Option<u8>,
    /// Admin tries left [default: --admin-max]
    #[arg(long, value_name = "N", help_heading = "Card")]
    admin_tries: Option<u32>,
    /// Admin tries at most
    #[arg(long, value_name = "N", default_value_t = 5, help_heading = "Card")]
    admin_max: u32,
    /// The user PIN
    #[arg(
        long,
        value_name = "ASCII",
        default_value = "12345678",
        allow_hyphen_values = true,
        help_heading = "Card"
    )]
    pin: String,
    /// PIN tries left [default: --pin-max]
    #[arg(long, value_name = "N", help_heading = "Card")]
    pin_tries: Option<u32>,
    /// PIN tries at most
    #[arg(long, value_name = "N", default_value_t = 3, help_heading = "Card")]
    pin_max: u32,
    /// Shortest PIN RESET RETRY COUNTER accepts [default: 4]
    #[arg(long, value_name = "N", help_heading = "Card")]
    pin_min: Option<usize>,
    /// Longest PIN RESET RETRY COUNTER accepts [default: 16]
    #[arg(long, value_name = "N", help_heading = "Card")]
    pin_max_len: Option<usize>,
    /// iso: SELECT by this AID answers 9000 (otherwise 6A82)
    #[arg(long, value_name = "HEX", value_parser = hex_bytes, help_heading = "Card")]
    aid: Option<Bytes>,
    /// Fixed challenge instead of random ones (8 bytes; AES keys 16)
    #[arg(long, value_name = "HEX", value_parser = hex_bytes, help_heading = "Card")]
    challenge: Option<Bytes>,
    /// T=0: data only via 61xx + GET RESPONSE
    #[arg(long, help_heading = "Card")]
    t0: bool,
    /// Announce at most N bytes per 61xx (1..256; implies --t0) [default: 256]
    #[arg(long, value_name = "N", help_heading = "Card")]
    t0_chunk: Option<usize>,
    /// Answer the first GET CHALLENGE with 6C08
    #[arg(long, help_heading = "Card")]
    sw6c: bool,
    /// An empty VERIFY counts as a failed PIN try
    #[arg(long, help_heading = "Card")]
    verify_empty_counts: bool,

    /// On the Nth command APDU, close the connection unprocessed, exit 0
    #[arg(long, value_name = "N", help_heading = "Faults")]
    vanish_after: Option<u64>,
    /// On the first matching APDU, close unprocessed, exit 0
    #[arg(long, value_name = "INS", value_parser = parse_ins, help_heading = "Faults")]
    vanish_on_ins: Option<InsMatch>,
    /// Process the first matching APDU, then close unanswered, exit 0
    #[arg(long, value_name = "INS", value_parser = parse_ins, help_heading = "Faults")]
    vanish_after_ins: Option<InsMatch>,
    /// Vanish with a normal close, not a TCP reset (vpcd 0.8 gives the host an empty
    /// response either way)
    #[arg(long, help_heading = "Faults")]
    vanish_fin: bool,
    /// Answer every matching APDU with exactly HEX (may be empty); repeatable
    #[arg(long, value_name = "INS=HEX", value_parser = respond_ins, help_heading = "Faults")]
    respond_ins: Vec<(InsMatch, Vec<u8>)>,
    /// Take MS milliseconds over every command APDU before answering (a real card's
    /// processing time; benchmarks)
    #[arg(long, value_name = "MS", default_value_t = 0, help_heading = "Faults")]
    apdu_time: u64,
    /// Stall MS milliseconds on every matching APDU before processing it (the state file
    /// already lists it); repeatable
    #[arg(long, value_name = "INS=MS", value_parser = delay_ins, help_heading = "Faults")]
    delay_ins: Vec<(InsMatch, Duration)>,

    /// Load counters/PIN/key from FILE if it exists; rewrite it (atomically) after every
    /// APDU and power event
    #[arg(long, value_name = "FILE", help_heading = "State")]
    state: Option<PathBuf>,
    /// Ignore what FILE holds (start from the options)
    #[arg(long, help_heading = "State")]
    fresh_state: bool,
    /// Keep the apdus/responses logs empty (counters still count): the file is rewritten per
    /// APDU, a long log makes that slower
    #[arg(long, help_heading = "State")]
    no_apdu_log: bool,
    /// Rewrite the file only at start and on connection and power events, not after each
    /// APDU (benchmarks: a real card's work costs the host nothing; the per-APDU rewrite is
    /// 4 system calls)
    #[arg(long, help_heading = "State")]
    state_on_events: bool,
    /// Do not log every APDU on stderr
    #[arg(long, help_heading = "State")]
    quiet: bool,
}

/// Bytes from hex (a newtype: clap reads a bare `Vec<u8>` field as repeated values).
#[derive(Clone)]
struct Bytes(Vec<u8>);

pub struct Options {
    pub host: String,
    pub port: u16,
    pub connect_timeout: Duration,
    pub reconnect: bool,
    pub atr: Vec<u8>,
    pub atr_after_reset: Option<Vec<u8>>,
    pub config: Config,
    pub persistent: Persistent,
    pub vanish_after: Option<u64>,
    pub vanish_on_ins: Option<InsMatch>,
    pub vanish_after_ins: Option<InsMatch>,
    pub vanish_fin: bool,
    /// Matching APDUs -> how long to stall before processing them.
    pub delay_ins: Vec<(InsMatch, Duration)>,
    /// Every command APDU takes this long (a real card's processing time).
    pub apdu_time: Duration,
    pub state: Option<PathBuf>,
    pub fresh_state: bool,
    pub quiet: bool,
    /// Rewrite the state file after every command APDU (else only on events).
    pub save_per_apdu: bool,
}

/// Hex with optional spaces or colons between bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let clean: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    hex::decode(&clean).map_err(|e| format!("bad hex {s:?}: {e}"))
}

fn parse_byte(s: &str) -> Result<u8, String> {
    match parse_hex(s)?.as_slice() {
        [b] => Ok(*b),
        _ => Err(format!("expected one hex byte, got {s:?}")),
    }
}

fn parse_ins(s: &str) -> Result<InsMatch, String> {
    InsMatch::parse(s, parse_byte)
}

fn hex_bytes(s: &str) -> Result<Bytes, String> {
    parse_hex(s).map(Bytes)
}

fn card_id(s: &str) -> Result<[u8; 16], String> {
    parse_hex(s)?
        .try_into()
        .map_err(|_| "must be 16 bytes".to_string())
}

fn status_word(s: &str) -> Result<u16, String> {
    match parse_hex(s)?.as_slice() {
        [a, b] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err("must be 2 bytes".into()),
    }
}

/// `INS=HEX` (HEX may be empty).
fn respond_ins(s: &str) -> Result<(InsMatch, Vec<u8>), String> {
    let (ins, raw) = s
        .split_once('=')
        .ok_or_else(|| format!("wants XX=HEX, got {s:?}"))?;
    Ok((parse_ins(ins)?, parse_hex(raw)?))
}

/// `INS=MS`.
fn delay_ins(s: &str) -> Result<(InsMatch, Duration), String> {
    let (ins, ms) = s
        .split_once('=')
        .ok_or_else(|| format!("wants XX=MS, got {s:?}"))?;
    let ms: u64 = ms
        .parse()
        .map_err(|_| format!("not a number of ms: {ms:?}"))?;
    Ok((parse_ins(ins)?, Duration::from_millis(ms)))
}

/// Seconds, at least 0 (NaN and infinities refused: no panic), at most 1e9.
fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs >= 0.0 && secs.is_finite() => Ok(Duration::from_secs_f64(secs.min(1e9))),
        _ => Err(format!("must be a number of seconds >= 0, got {s:?}")),
    }
}

impl Options {
    /// The options of this process; on a usage error or `--help`, clap's message and exit.
    pub fn from_args() -> Options {
        let cli = Cli::parse();
        Options::try_from(cli)
            .unwrap_or_else(|e| Cli::command().error(ErrorKind::ValueValidation, e).exit())
    }
}

/// The options from `args` (without the program name), every error as text.
#[cfg(test)]
fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let argv = std::iter::once("scunblock-vcard".to_string()).chain(args);
    Options::try_from(Cli::try_parse_from(argv).map_err(|e| e.to_string())?)
}

/// The rules between options, and the defaults that depend on other options.
impl TryFrom<Cli> for Options {
    type Error = String;

    fn try_from(cli: Cli) -> Result<Options, String> {
        let defaults = Config::default();
        let config = Config {
            family: cli.family,
            key_ref: cli.key_ref.unwrap_or(defaults.key_ref),
            aid: cli.aid.map(|b| b.0),
            fixed_challenge: cli.challenge.map(|b| b.0),
            t0: cli.t0 || cli.t0_chunk.is_some(),
            t0_chunk: cli.t0_chunk.unwrap_or(defaults.t0_chunk),
            sw6c: cli.sw6c,
            verify_empty_counts: cli.verify_empty_counts,
            pin_min: cli.pin_min.unwrap_or(defaults.pin_min),
            pin_max_len: cli.pin_max_len.unwrap_or(defaults.pin_max_len),
            respond_ins: cli.respond_ins,
            log_apdus: !cli.no_apdu_log,
            wrong_response_sw: cli.wrong_response_sw.unwrap_or(defaults.wrong_response_sw),
            metadata: !cli.no_metadata,
        };
        let family = config.family;
        let mgmt_alg = cli.mgmt_alg;
        let atr = match cli.atr {
            Some(atr) => atr.0,
            None => parse_hex(default_atr(family))?,
        };
        if !(1..=33).contains(&atr.len()) {
            return Err(format!("--atr must be 1..33 bytes, got {}", atr.len()));
        }
        if !(1..=256).contains(&config.t0_chunk) {
            return Err("--t0-chunk must be 1..256".into());
        }
        if config.pin_min > config.pin_max_len {
            return Err("--pin-min is larger than --pin-max-len".into());
        }
        let (admin_max, pin_max, puk_max) = (cli.admin_max, cli.pin_max, cli.puk_max);
        let admin_tries = cli.admin_tries.unwrap_or(admin_max);
        let pin_tries = cli.pin_tries.unwrap_or(pin_max);
        if admin_tries > admin_max {
            return Err(format!(
                "--admin-tries {admin_tries} > --admin-max {admin_max}"
            ));
        }
        if pin_tries > pin_max {
            return Err(format!("--pin-tries {pin_tries} > --pin-max {pin_max}"));
        }
        let puk_tries = cli.puk_tries.unwrap_or(puk_max);
        if puk_tries > puk_max {
            return Err(format!("--puk-tries {puk_tries} > --puk-max {puk_max}"));
        }
        let alg_fits = match family {
            Family::Piv => true,
            Family::Crescendo => super::crescendo::alg_supported(mgmt_alg),
            Family::Iso | Family::Gids => mgmt_alg == MgmtAlg::Tdes,
        };
        if !alg_fits {
            return Err(format!(
                "--mgmt-alg {} does not fit --family {}",
                mgmt_alg.name(),
                family.name()
            ));
        }
        let admin_key = cli
            .admin_key
            .map_or_else(|| vec![0; mgmt_alg.zero_key_len()], |b| b.0);
        let admin_key =
            AdminKey::with_alg(mgmt_alg, admin_key).map_err(|e| format!("--admin-key: {e}"))?;
        if let Some(c) = &config.fixed_challenge {
            if c.len() != mgmt_alg.block_len() {
                return Err(format!(
                    "--challenge must be {} bytes for a {} key",
                    mgmt_alg.block_len(),
                    mgmt_alg.name()
                ));
            }
        }
        let card_id = if cli.no_card_id {
            None
        } else {
            Some(cli.card_id.unwrap_or(DEFAULT_CARD_ID))
        };
        Ok(Options {
            host: cli.host,
            port: cli.port,
            connect_timeout: cli.connect_timeout,
            reconnect: cli.reconnect,
            atr,
            atr_after_reset: cli.atr_after_reset.map(|b| b.0),
            config,
            persistent: Persistent {
                admin_key,
                admin_tries,
                admin_max,
                pin: cli.pin.into_bytes(),
                pin_tries,
                pin_max,
                card_id,
                puk: cli.puk.into_bytes(),
                puk_tries,
                puk_max,
                gids_initialised: !cli.gids_uninitialised,
            },
            vanish_after: cli.vanish_after,
            vanish_on_ins: cli.vanish_on_ins,
            vanish_after_ins: cli.vanish_after_ins,
            vanish_fin: cli.vanish_fin,
            delay_ins: cli.delay_ins,
            apdu_time: Duration::from_millis(cli.apdu_time),
            state: cli.state,
            fresh_state: cli.fresh_state,
            quiet: cli.quiet,
            save_per_apdu: !cli.state_on_events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn default_atr_has_a_valid_tck() {
        let atr = run(&[]).unwrap().atr;
        assert_eq!(atr[0], 0x3B);
        // TD1 names T=1, so TCK is present and T0..TCK XOR to zero.
        assert_eq!(atr[1] & 0x0F, (atr.len() - 4) as u8);
        assert_eq!(atr[2], 0x01);
        assert_eq!(atr[1..].iter().fold(0, |a, b| a ^ b), 0);
    }

    #[test]
    fn options() {
        let o = run(&[
            "--port=35966",
            "--admin-key",
            "00112233445566778899aabbccddeeff",
            "--pin-max",
            "5",
            "--respond-ins",
            "84=6A82",
            "--respond-ins",
            "CA=",
            "--t0-chunk",
            "4",
            "--key-ref",
            "80",
        ])
        .unwrap();
        assert_eq!(o.port, 35966);
        assert_eq!(o.persistent.admin_key.bytes().len(), 16);
        assert_eq!((o.persistent.pin_tries, o.persistent.pin_max), (5, 5));
        assert_eq!(o.persistent.admin_tries, 5);
        assert_eq!(
            o.config.respond_ins,
            vec![
                (InsMatch::any(0x84), vec![0x6A, 0x82]),
                (InsMatch::any(0xCA), vec![])
            ]
        );
        assert!(o.config.t0);
        assert_eq!(o.config.t0_chunk, 4);
        assert_eq!(o.config.key_ref, 0x80);
    }

    #[test]
    fn ins_with_data_and_delays() {
        let o = run(&[
            "--respond-ins",
            "82+data=6985",
            "--vanish-after-ins=2C",
            "--vanish-on-ins",
            "82+data",
            "--delay-ins",
            "84=1500",
            "--delay-ins=82+data=20",
            "--apdu-time",
            "5",
            "--state-on-events",
        ])
        .unwrap();
        assert_eq!(o.apdu_time, Duration::from_millis(5));
        assert!(!o.save_per_apdu);
        let ea = InsMatch {
            ins: 0x82,
            with_data: true,
        };
        assert_eq!(o.config.respond_ins, vec![(ea, vec![0x69, 0x85])]);
        assert_eq!(o.vanish_on_ins, Some(ea));
        assert_eq!(o.vanish_after_ins, Some(InsMatch::any(0x2C)));
        assert_eq!(
            o.delay_ins,
            vec![
                (InsMatch::any(0x84), Duration::from_millis(1500)),
                (ea, Duration::from_millis(20))
            ]
        );
        assert!(ea.matches(&[0, 0x82, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]));
        assert!(!ea.matches(&[0, 0x82, 0, 0]));
        assert!(!ea.matches(&[0, 0x84, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]));
    }

    #[test]
    fn families() {
        let o = run(&[]).unwrap();
        assert_eq!(o.config.family, Family::Iso);
        assert_eq!(o.atr, parse_hex(DEFAULT_ATR).unwrap());
        for (family, atr) in [
            ("gids", GIDS_ATR),
            ("piv", PIV_ATR),
            ("crescendo", CRESCENDO_ATR),
        ] {
            let o = run(&["--family", family]).unwrap();
            assert_eq!(o.atr, parse_hex(atr).unwrap(), "{family}");
            // Every default ATR has a valid TCK (T=1 offered: T0..TCK XOR to zero).
            assert_eq!(o.atr[1..].iter().fold(0, |a, b| a ^ b), 0, "{family}");
            assert_eq!(o.persistent.card_id, Some(DEFAULT_CARD_ID));
        }
        let o = run(&[
            "--family=piv",
            "--mgmt-alg",
            "aes192",
            "--admin-key",
            "000102030405060708090a0b0c0d0e0f1011121314151617",
            "--challenge",
            "000102030405060708090a0b0c0d0e0f",
            "--puk",
            "87654321",
            "--puk-max",
            "5",
            "--puk-tries=2",
            "--no-card-id",
            "--no-metadata",
            "--wrong-response-sw",
            "6A80",
            "--atr",
            "3B 80 80 01 01",
        ])
        .unwrap();
        assert_eq!(o.persistent.admin_key.alg(), MgmtAlg::Aes192);
        assert_eq!(o.config.fixed_challenge.as_ref().map(Vec::len), Some(16));
        assert_eq!(
            (
                o.persistent.puk.as_slice(),
                o.persistent.puk_tries,
                o.persistent.puk_max
            ),
            (&b"87654321"[..], 2, 5)
        );
        assert_eq!(o.persistent.card_id, None);
        assert!(!o.config.metadata);
        assert_eq!(o.config.wrong_response_sw, 0x6A80);
        assert_eq!(o.atr, vec![0x3B, 0x80, 0x80, 0x01, 0x01]);
        let o = run(&["--family", "crescendo", "--mgmt-alg", "aes128"]).unwrap();
        assert_eq!(o.persistent.admin_key.bytes(), &[0; 16]);
        let o = run(&[
            "--family",
            "gids",
            "--gids-uninitialised",
            "--card-id",
            "ff".repeat(16).as_str(),
        ])
        .unwrap();
        assert!(!o.persistent.gids_initialised);
        assert_eq!(o.persistent.card_id, Some([0xFF; 16]));
    }

    #[test]
    fn an_option_given_twice_takes_its_last_value() {
        let o = run(&[
            "--pin-max-len",
            "8",
            "--pin-max-len=16",
            "--pin",
            "1",
            "--pin",
            "2",
        ])
        .unwrap();
        assert_eq!(o.config.pin_max_len, 16);
        assert_eq!(o.persistent.pin, b"2");
    }

    #[test]
    fn bad_options() {
        for bad in [
            &["--admin-key", "0011"][..],
            &["--pin-tries", "4"],
            &["--port"],
            &["--bogus"],
            &["--challenge", "0102"],
            &["--t0-chunk", "0"],
            &["--vanish-on-ins", "8282"],
            &["--respond-ins", "84"],
            &["--respond-ins", "82+dat=9000"],
            &["--delay-ins", "84"],
            &["--delay-ins", "84=soon"],
            &["--vanish-after-ins", "+data"],
            &["--family", "idprime"],
            &["--mgmt-alg", "aes128"],
            &["--family", "gids", "--mgmt-alg", "aes128"],
            &["--family", "crescendo", "--mgmt-alg", "aes192"],
            &[
                "--family",
                "piv",
                "--mgmt-alg",
                "aes256",
                "--admin-key",
                "00".repeat(24).as_str(),
            ],
            &[
                "--family",
                "piv",
                "--mgmt-alg",
                "aes128",
                "--challenge",
                "0102030405060708",
            ],
            &["--card-id", "0011"],
            &["--puk-tries", "4"],
            &["--wrong-response-sw", "69"],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
    }
}
