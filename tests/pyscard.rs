//! A third-party cross-check of our ATR decoder: pyscard (python3-pyscard, `scripts/deps
//! install`). Every real ATR constant of src/atr/mod.rs's unit tests (the block between "Real
//! ATRs" and "End of the real ATRs") goes into a virtual card (`scunblock-vcard --atr`), one
//! slot each, on one private pcscd + vpcd. A python3 script reads every reader through pcscd
//! with pyscard (`smartcard.System.readers()`, `connection.getATR()`) and parses the ATR
//! with `smartcard.ATR.ATR`; `scunblock info --json` decodes it with ours (`atr_decoded`).
//! The test asserts that both saw the ATR the card was given, and that they agree field by
//! field: TS and the convention, T0 and K, TA/TB/TC/TD of every interface group, the
//! historical bytes, the TCK and whether it is right, the protocols (getSupportedProtocols,
//! isT0Supported, isT1Supported), Fi, Di and the extra guard time N.
//!
//! Known differences, asserted rather than skipped:
//! - pyscard lists T=15 among the supported protocols when a TDi names it; T=15 is no
//!   protocol but marks global interface bytes (ISO/IEC 7816-3 8.2.3), so our `protocols`
//!   leave it out. The test asserts pyscard's T=15 exactly when one of our TDi names T=15.
//! - pyscard keeps a group (TA/TB/TC/TD all None) for an ATR with no interface bytes at all;
//!   we list only the groups that hold a byte. The test compares the groups that hold one.
//! - pyscard's Di table marks code 7 RFU; ISO/IEC 7816-3:2006 (table 8) defines it as 64.
//!   Where TA1's Di code is 7 the test asserts our 64 and pyscard's "RFU".
//!
//! The inverse-convention ATRs (TS = 3F: DSS_ROM10, ATHENA_T0_INVERSE, GEMXPLORE) are served
//! like the others: vpcd passes the card's ATR bytes to pcscd unchanged (as a reader delivers
//! them, TS = 3F and the rest as values), and pyscard reads and parses them with no difference.
//!
//! pyscard missing FAILS the test under CI or SCUNBLOCK_REQUIRE_ALL=1 (`common::require`) and
//! says SKIPPED elsewhere. The interpreter is `SCUNBLOCK_PYTHON` when set, else the first of
//! `python3` and `/usr/bin/python3` that imports pyscard (a pyenv `python3` first in PATH does
//! not see Debian's package). Needs root and `cargo build --workspace`, like every stack test.

mod common;

use std::process::{Command, Stdio};

use common::run::scunblock;
use common::stack::VStack;
use serde_json::Value;

/// The unit tests' source: the real ATRs are read from it, so a new one is checked here too.
const ATR_SOURCE: &str = include_str!("../src/atr/mod.rs");

/// Every `const NAME: &str = "HEX";` of the real-ATR block of src/atr/mod.rs: (NAME, HEX).
fn real_atrs() -> Vec<(String, String)> {
    let start = ATR_SOURCE
        .find("// Real ATRs,")
        .expect("src/atr/mod.rs has the real-ATR block");
    let end = start
        + ATR_SOURCE[start..]
            .find("// End of the real ATRs.")
            .expect("the real-ATR block ends");
    let block = &ATR_SOURCE[start..end];
    let mut out = Vec::new();
    let mut rest = block;
    while let Some(at) = rest.find("const ") {
        rest = &rest[at + "const ".len()..];
        let name = rest[..rest.find(':').expect("const NAME:")].trim();
        let open = rest.find('"').expect("an ATR string");
        let close = open + 1 + rest[open + 1..].find('"').expect("the string ends");
        out.push((name.to_string(), rest[open + 1..close].to_string()));
        rest = &rest[close + 1..];
    }
    out
}

/// Reads every reader of the stack with pyscard; prints one JSON object per reader.
const PYSCARD_SCRIPT: &str = r#"
import json, sys
from smartcard.System import readers
from smartcard.ATR import ATR

out = []
for r in readers():
    row = {"reader": str(r)}
    try:
        c = r.createConnection()
        c.connect()
        raw = c.getATR()
        c.disconnect()
    except Exception as e:
        row["error"] = repr(e)
        out.append(row)
        continue
    a = ATR(raw)
    row.update({
        "atr": raw,
        "ts": a.TS,
        "t0": a.T0,
        "k": a.K,
        "groups": [
            {"index": n + 1, "ta": a.TA[n], "tb": a.TB[n], "tc": a.TC[n], "td": a.TD[n]}
            for n in range(len(a.TA))
        ],
        "historical": list(a.getHistoricalBytes()),
        "tck": a.getChecksum(),
        "checksum_ok": getattr(a, "checksumOK", None),
        "protocols": sorted(a.getSupportedProtocols().keys()),
        "t0_supported": a.isT0Supported(),
        "t1_supported": a.isT1Supported(),
        "fi": a.getClockRateConversion(),
        "di": a.getBitRateFactor(),
        "n": a.getGuardTime(),
    })
    out.append(row)
json.dump(out, sys.stdout)
"#;

/// The interpreter that imports pyscard, or why there is none.
fn python_with_pyscard() -> Result<String, String> {
    let candidates: Vec<String> = match std::env::var("SCUNBLOCK_PYTHON") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => vec!["python3".into(), "/usr/bin/python3".into()],
    };
    let mut tried = Vec::new();
    for py in &candidates {
        let ok = Command::new(py)
            .args(["-c", "import smartcard.System, smartcard.ATR"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(py.clone());
        }
        tried.push(py.as_str());
    }
    Err(format!(
        "no python3 with pyscard (tried {}): install python3-pyscard (`scripts/deps install`)",
        tried.join(", ")
    ))
}

/// Upper-case hex, bytes separated by spaces, as `atr_decoded` writes bytes.
fn spaced(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A byte of pyscard's JSON (an integer or null) as `atr_decoded` writes it ("9F" or null).
fn byte(v: &Value) -> Value {
    match v.as_u64() {
        Some(b) => Value::from(format!("{b:02X}")),
        None => Value::Null,
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_array()
        .expect("a byte list")
        .iter()
        .map(|b| u8::try_from(b.as_u64().expect("a byte")).expect("a byte"))
        .collect()
}

/// pyscard and `atr_decoded` agree on `hex`, the ATR the card was given (`name` for messages).
fn assert_agree(name: &str, hex: &str, py: &Value, ours: &Value) {
    let given = spaced(&atr_bytes(hex));
    let at = |field: &str| format!("{name} ({hex}): {field}\npyscard: {py}\nours: {ours}");
    // The ATR pcscd gave pyscard, and the one we decoded, are the card's.
    assert_eq!(
        spaced(&bytes(&py["atr"])),
        given,
        "{}",
        at("ATR read by pyscard")
    );
    assert_eq!(ours["hex"], given, "{}", at("ATR read by scunblock"));

    assert_eq!(byte(&py["ts"]), ours["ts"], "{}", at("TS"));
    let convention = match py["ts"].as_u64() {
        Some(0x3B) => "direct",
        Some(0x3F) => "inverse",
        other => panic!("{}", at(&format!("pyscard's TS {other:?}"))),
    };
    assert_eq!(ours["convention"], convention, "{}", at("convention"));
    assert_eq!(byte(&py["t0"]), ours["t0"], "{}", at("T0"));
    assert_eq!(py["k"], ours["historical_count"], "{}", at("K"));

    // The interface groups that hold a byte (see the module comment).
    let py_groups: Vec<Value> = py["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| ["ta", "tb", "tc", "td"].iter().any(|k| !g[*k].is_null()))
        .map(|g| {
            serde_json::json!({
                "index": g["index"],
                "ta": byte(&g["ta"]),
                "tb": byte(&g["tb"]),
                "tc": byte(&g["tc"]),
                "td": byte(&g["td"]),
            })
        })
        .collect();
    let our_groups: Vec<Value> = ours["interface_groups"]
        .as_array()
        .expect("interface_groups")
        .iter()
        .map(|g| {
            serde_json::json!({
                "index": g["index"], "ta": g["ta"], "tb": g["tb"], "tc": g["tc"], "td": g["td"],
            })
        })
        .collect();
    assert_eq!(py_groups, our_groups, "{}", at("interface groups"));

    assert_eq!(
        spaced(&bytes(&py["historical"])),
        ours["historical"],
        "{}",
        at("historical bytes")
    );

    // TCK: present for the same ATRs, the same byte, right for both.
    assert_eq!(byte(&py["tck"]), ours["tck"], "{}", at("TCK"));
    let status = ours["tck_status"]["status"].as_str().expect("tck_status");
    if py["tck"].is_null() {
        assert_eq!(status, "not_required", "{}", at("TCK status"));
    } else {
        assert_eq!(py["checksum_ok"], true, "{}", at("pyscard's checksumOK"));
        assert_eq!(status, "ok", "{}", at("TCK status"));
    }

    // Protocols: pyscard's without T=15, which it lists when a TDi names it.
    let ours_protocols: Vec<String> = ours["protocols"]
        .as_array()
        .expect("protocols")
        .iter()
        .map(|t| format!("T={t}"))
        .collect();
    let mut py_protocols: Vec<String> = py["protocols"]
        .as_array()
        .expect("protocols")
        .iter()
        .map(|t| t.as_str().expect("T=n").to_string())
        .collect();
    let py_t15 = py_protocols.iter().any(|t| t == "T=15");
    py_protocols.retain(|t| t != "T=15");
    let mut sorted = ours_protocols.clone();
    sorted.sort();
    assert_eq!(py_protocols, sorted, "{}", at("protocols"));
    let names_t15 = ours["interface_groups"]
        .as_array()
        .expect("interface_groups")
        .iter()
        .any(|g| {
            g["td"]
                .as_str()
                .is_some_and(|td| u8::from_str_radix(td, 16).unwrap() & 0x0F == 15)
        });
    assert_eq!(py_t15, names_t15, "{}", at("a TDi naming T=15"));
    assert_eq!(
        py["t0_supported"],
        ours_protocols.iter().any(|t| t == "T=0"),
        "{}",
        at("T=0 supported")
    );
    assert_eq!(
        py["t1_supported"],
        ours_protocols.iter().any(|t| t == "T=1"),
        "{}",
        at("T=1 supported")
    );

    // Fi, Di and the extra guard time N (pyscard: None without TC1; ours: the default 0).
    let params = &ours["parameters"];
    assert_eq!(py["fi"], params["fi"], "{}", at("Fi"));
    let di_code = ours["interface_groups"][0]["ta"]
        .as_str()
        .filter(|_| ours["interface_groups"][0]["index"] == 1)
        .map(|ta| u8::from_str_radix(ta, 16).unwrap() & 0x0F);
    if di_code == Some(7) {
        assert_eq!(
            (&py["di"], &params["di"]),
            (&Value::from("RFU"), &Value::from(64)),
            "{}",
            at("Di code 7")
        );
    } else {
        assert_eq!(py["di"], params["di"], "{}", at("Di"));
    }
    let n = if py["n"].is_null() {
        Value::from(0)
    } else {
        py["n"].clone()
    };
    assert_eq!(n, params["extra_guard_time"], "{}", at("N"));
}

fn atr_bytes(hex: &str) -> Vec<u8> {
    hex::decode(hex.replace(' ', "")).expect("ATR hex")
}

#[test]
fn pyscard_decodes_every_real_atr_as_we_do() {
    let atrs = real_atrs();
    assert!(
        atrs.len() >= 12,
        "src/atr/mod.rs lists {} real ATRs; the cross-check wants at least 12: {atrs:?}",
        atrs.len()
    );
    for name in [
        "MS_VSC",
        "YUBIKEY_5_NFC",
        "DSS_ROM10",
        "ATHENA_T0_INVERSE",
        "GEMXPLORE",
    ] {
        assert!(
            atrs.iter().any(|(n, _)| n == name),
            "{name} missing from {atrs:?}"
        );
    }
    let Some(python) = common::require(
        "pyscard_decodes_every_real_atr_as_we_do",
        python_with_pyscard(),
    ) else {
        return;
    };
    // One stack, one slot per ATR (vpcd: 2 to 16 slots, in pairs).
    assert!(
        atrs.len() <= 16,
        "more than 16 real ATRs: use a second stack"
    );
    let stack = VStack::start(atrs.len().div_ceil(2) * 2);
    let cards: Vec<_> = atrs
        .iter()
        .enumerate()
        .map(|(slot, (_, hex))| stack.insert(slot, &["--atr", hex]))
        .collect();

    let out = common::run::tool(
        Command::new(&python)
            .args(["-c", PYSCARD_SCRIPT])
            .env("PCSCLITE_CSOCK_NAME", stack.csock()),
        "the pyscard script",
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pyscard's output is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    for (slot, (name, hex)) in atrs.iter().enumerate() {
        let reader = stack.reader_name(slot);
        let py = rows
            .iter()
            .find(|r| r["reader"] == reader.as_str())
            .unwrap_or_else(|| panic!("pyscard did not list {reader}: {rows:?}"));
        assert!(
            py.get("error").is_none(),
            "{name} ({hex}): pyscard could not read {reader}: {py}\ncard log:\n{}",
            cards[slot].log()
        );
        // Every card is the ISO personality whatever ATR it announces: `--profile iso`, or
        // the ATR of a GIDS or PIV card would pick a family this card does not speak.
        let run = scunblock(
            Some(&stack.csock()),
            &[
                "info",
                "--json",
                "--profile",
                "iso",
                "--reader",
                &format!("@{reader}"),
            ],
            &[],
            None,
        );
        let doc = run.json();
        let ours = &doc["atr_decoded"];
        assert!(
            ours.is_object(),
            "{name} ({hex}): no atr_decoded (exit {}):\n{}",
            run.code,
            run.all()
        );
        assert_eq!(
            doc["atr_problems"],
            serde_json::json!([]),
            "{name} ({hex}): a real ATR with problems"
        );
        assert_agree(name, hex, py, ours);
    }
}
