//! Command line of scunblock-vcard (hand-parsed: `--opt VALUE` or `--opt=VALUE`).

use std::path::PathBuf;
use std::time::Duration;

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

pub const USAGE: &str = "\
usage: scunblock-vcard [OPTIONS]
A virtual smart card for vpcd (vsmartcard): Base CSP style (iso), GIDS, PIV or Crescendo.

connection:
  --host HOST             vpcd host (default 127.0.0.1)
  --port PORT             vpcd port (default 35963 = slot 0; 35964 = slot 1)
  --connect-timeout SECS  keep trying to connect this long (default 10)
  --reconnect             when vpcd closes the connection, reconnect (forever, every 100 ms)
                          instead of exiting
card:
  --family NAME           iso (default: the generic Base CSP dialect), gids, piv or crescendo
                          (the card families of issue 12; see vcard.rs)
  --atr HEX               (default per family: iso 3B 87 01 80 55 76 63 61 72 64 31,
                          gids the TPM virtual smart card's, piv a YubiKey 5's,
                          crescendo a C2300's)
  --atr-after-reset HEX   answer this ATR from the first reset (or second power-on) on
  --admin-key HEX         the admin key (PIV: 9B management key; crescendo: XAUTH key):
                          3DES 16 or 24 bytes, AES 16/24/32 (default all zero, 24 bytes,
                          AES-128 16, AES-256 32)
  --mgmt-alg ALG          3des (default), aes128, aes192, aes256 (piv); 3des, aes128
                          (crescendo)
  --card-id HEX           16 bytes: GIDS cardid, PIV CHUID GUID
                          (default 00112233445566778899AABBCCDDEEFF)
  --no-card-id            GIDS: no cardid object; PIV: no CHUID
  --gids-uninitialised    GIDS: a new card without file system or admin key, for
                          gids-tool --initialize
  --puk ASCII             PIV PUK (default 12345678)
  --puk-tries N           (default: --puk-max)     --puk-max N (default 3)
  --no-metadata           PIV: not a YubiKey (GET METADATA, VERSION, SERIAL answer 6D00)
  --wrong-response-sw HEX PIV: the status word of a wrong 9B response (default 6982)
  --key-ref HEX           iso: EXTERNAL AUTHENTICATE P2 (default 00)
  --admin-tries N         (default: --admin-max)   --admin-max N (default 5)
  --pin ASCII             (default 12345678)
  --pin-tries N           (default: --pin-max)     --pin-max N   (default 3)
  --pin-min N             shortest PIN RESET RETRY COUNTER accepts (default 4)
  --pin-max-len N         longest PIN RESET RETRY COUNTER accepts (default 16)
  --aid HEX               iso: SELECT by this AID answers 9000 (otherwise 6A82)
  --challenge HEX         fixed challenge instead of random ones (8 bytes; AES keys 16)
  --t0                    T=0: data only via 61xx + GET RESPONSE
  --t0-chunk N            announce at most N bytes per 61xx (1..256, default 256)
  --sw6c                  answer the first GET CHALLENGE with 6C08
  --verify-empty-counts   an empty VERIFY counts as a failed PIN try
faults (INS is XX: every APDU with INS XX, or XX+data: only those with a data field,
        e.g. 82+data = EXTERNAL AUTHENTICATE with a cryptogram, not the query 00 82 00 00):
  --vanish-after N        on the Nth command APDU, close the connection unprocessed, exit 0
  --vanish-on-ins INS     on the first matching APDU, close unprocessed, exit 0
  --vanish-after-ins INS  process the first matching APDU, then close unanswered, exit 0
  --vanish-fin            vanish with a normal close, not a TCP reset (vpcd 0.8 gives the
                          host an empty response either way)
  --respond-ins INS=HEX   answer every matching APDU with exactly HEX (may be empty);
                          repeatable
  --apdu-time MS          take MS milliseconds over every command APDU before answering
                          (a real card's processing time; benchmarks)
  --delay-ins INS=MS      stall MS milliseconds on every matching APDU before processing
                          it (the state file already lists it); repeatable
state:
  --state FILE            load counters/PIN/key from FILE if it exists; rewrite it
                          (atomically) after every APDU and power event
  --fresh-state           ignore what FILE holds (start from the options)
  --no-apdu-log           keep the apdus/responses logs empty (counters still count): the file
                          is rewritten per APDU, a long log makes that slower
  --state-on-events       rewrite the file only at start and on connection and power events,
                          not after each APDU (benchmarks: a real card's work costs the
                          host nothing; the per-APDU rewrite is 4 system calls)
  --quiet                 do not log every APDU on stderr
  --help";

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

pub enum Parsed {
    Run(Box<Options>),
    Help,
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

fn parse_num<T: std::str::FromStr>(name: &str, s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{name}: not a number: {s:?}"))
}

pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Parsed, String> {
    let mut host = "127.0.0.1".to_string();
    let mut port = 35963u16;
    let mut connect_timeout = 10.0f64;
    let mut reconnect = false;
    let mut atr = None;
    let mut atr_after_reset = None;
    let mut config = Config::default();
    let mut admin_key = None;
    let mut mgmt_alg = MgmtAlg::Tdes;
    let mut card_id = Some(DEFAULT_CARD_ID);
    let mut gids_initialised = true;
    let mut puk = b"12345678".to_vec();
    let (mut puk_tries, mut puk_max) = (None, 3u32);
    let mut pin = b"12345678".to_vec();
    let (mut pin_tries, mut pin_max) = (None, 3u32);
    let (mut admin_tries, mut admin_max) = (None, 5u32);
    let mut vanish_after = None;
    let mut vanish_on_ins = None;
    let mut vanish_after_ins = None;
    let mut vanish_fin = false;
    let mut delay_ins = Vec::new();
    let mut apdu_time = Duration::ZERO;
    let mut state = None;
    let mut fresh_state = false;
    let mut quiet = false;
    let mut save_per_apdu = true;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => args.next().ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match name.as_str() {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--host" => host = value()?,
            "--port" => port = parse_num(&name, &value()?)?,
            "--connect-timeout" => connect_timeout = parse_num(&name, &value()?)?,
            "--reconnect" => reconnect = true,
            "--family" => config.family = Family::parse(&value()?)?,
            "--atr" => atr = Some(parse_hex(&value()?)?),
            "--atr-after-reset" => atr_after_reset = Some(parse_hex(&value()?)?),
            "--admin-key" => admin_key = Some(parse_hex(&value()?)?),
            "--mgmt-alg" => mgmt_alg = MgmtAlg::parse(&value()?)?,
            "--card-id" => {
                let id = parse_hex(&value()?)?;
                card_id = Some(
                    id.try_into()
                        .map_err(|_| "--card-id must be 16 bytes".to_string())?,
                );
            }
            "--no-card-id" => card_id = None,
            "--gids-uninitialised" => gids_initialised = false,
            "--puk" => puk = value()?.into_bytes(),
            "--puk-tries" => puk_tries = Some(parse_num(&name, &value()?)?),
            "--puk-max" => puk_max = parse_num(&name, &value()?)?,
            "--no-metadata" => config.metadata = false,
            "--wrong-response-sw" => {
                let v = parse_hex(&value()?)?;
                config.wrong_response_sw = match v.as_slice() {
                    [a, b] => u16::from_be_bytes([*a, *b]),
                    _ => return Err("--wrong-response-sw must be 2 bytes".into()),
                };
            }
            "--key-ref" => config.key_ref = parse_byte(&value()?)?,
            "--admin-tries" => admin_tries = Some(parse_num(&name, &value()?)?),
            "--admin-max" => admin_max = parse_num(&name, &value()?)?,
            "--pin" => pin = value()?.into_bytes(),
            "--pin-tries" => pin_tries = Some(parse_num(&name, &value()?)?),
            "--pin-max" => pin_max = parse_num(&name, &value()?)?,
            "--pin-min" => config.pin_min = parse_num(&name, &value()?)?,
            "--pin-max-len" => config.pin_max_len = parse_num(&name, &value()?)?,
            "--aid" => config.aid = Some(parse_hex(&value()?)?),
            "--challenge" => config.fixed_challenge = Some(parse_hex(&value()?)?),
            "--t0" => config.t0 = true,
            "--t0-chunk" => {
                config.t0 = true;
                config.t0_chunk = parse_num(&name, &value()?)?;
            }
            "--sw6c" => config.sw6c = true,
            "--verify-empty-counts" => config.verify_empty_counts = true,
            "--vanish-after" => vanish_after = Some(parse_num(&name, &value()?)?),
            "--vanish-on-ins" => vanish_on_ins = Some(parse_ins(&value()?)?),
            "--vanish-after-ins" => vanish_after_ins = Some(parse_ins(&value()?)?),
            "--vanish-fin" => vanish_fin = true,
            "--respond-ins" => {
                let v = value()?;
                let (ins, raw) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--respond-ins wants XX=HEX, got {v:?}"))?;
                config.respond_ins.push((parse_ins(ins)?, parse_hex(raw)?));
            }
            "--delay-ins" => {
                let v = value()?;
                let (ins, ms) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--delay-ins wants XX=MS, got {v:?}"))?;
                let ms: u64 = parse_num(&name, ms)?;
                delay_ins.push((parse_ins(ins)?, Duration::from_millis(ms)));
            }
            "--apdu-time" => apdu_time = Duration::from_millis(parse_num(&name, &value()?)?),
            "--state" => state = Some(PathBuf::from(value()?)),
            "--fresh-state" => fresh_state = true,
            "--no-apdu-log" => config.log_apdus = false,
            "--quiet" => quiet = true,
            "--state-on-events" => save_per_apdu = false,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }

    let family = config.family;
    let atr = match atr {
        Some(atr) => atr,
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
    let admin_tries = admin_tries.unwrap_or(admin_max);
    let pin_tries = pin_tries.unwrap_or(pin_max);
    if admin_tries > admin_max {
        return Err(format!(
            "--admin-tries {admin_tries} > --admin-max {admin_max}"
        ));
    }
    if pin_tries > pin_max {
        return Err(format!("--pin-tries {pin_tries} > --pin-max {pin_max}"));
    }
    let puk_tries = puk_tries.unwrap_or(puk_max);
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
    let admin_key = admin_key.unwrap_or_else(|| vec![0; mgmt_alg.zero_key_len()]);
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
    if connect_timeout.is_nan() || connect_timeout < 0.0 {
        return Err("--connect-timeout must be >= 0".into());
    }
    Ok(Parsed::Run(Box::new(Options {
        host,
        port,
        connect_timeout: Duration::from_secs_f64(connect_timeout.min(1e9)),
        reconnect,
        atr,
        atr_after_reset,
        config,
        persistent: Persistent {
            admin_key,
            admin_tries,
            admin_max,
            pin,
            pin_tries,
            pin_max,
            card_id,
            puk,
            puk_tries,
            puk_max,
            gids_initialised,
        },
        vanish_after,
        vanish_on_ins,
        vanish_after_ins,
        vanish_fin,
        delay_ins,
        apdu_time,
        state,
        fresh_state,
        quiet,
        save_per_apdu,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help => Err("help".into()),
        }
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
