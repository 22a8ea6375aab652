//! The --state FILE: load the persistent fields at start, write everything after each event.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::card::{AdminKey, Card, MgmtAlg, Persistent};

pub struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    /// The APDU and response logs rendered so far: the file is rewritten after every
    /// APDU, so each entry is hex-encoded once, not on every save (5000 APDUs stay fast).
    apdus: RenderedList,
    responses: RenderedList,
}

#[derive(Default)]
struct RenderedList {
    count: usize,
    text: String,
}

impl RenderedList {
    fn update(&mut self, entries: &[Vec<u8>]) -> &str {
        for entry in entries.get(self.count..).unwrap_or_default() {
            if self.count > 0 {
                self.text.push(',');
            }
            self.text.push_str("\n    \"");
            self.text.push_str(&hex::encode(entry));
            self.text.push('"');
            self.count += 1;
        }
        &self.text
    }
}

impl StateFile {
    pub fn new(path: &Path) -> StateFile {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        StateFile {
            path: path.to_path_buf(),
            tmp: PathBuf::from(tmp),
            apdus: RenderedList::default(),
            responses: RenderedList::default(),
        }
    }

    /// The persistent fields of an existing file, applied over `defaults`.
    /// A missing file gives `defaults`; an unreadable or corrupt one is an error.
    pub fn load(&self, defaults: Persistent) -> Result<Persistent, String> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(defaults),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", self.path.display()))?;
        persistent_from_json(&v, defaults).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Atomically replaces the file (write a temporary file, then rename).
    /// Pretty JSON equal to [`to_json`]: one top-level key per line as `  "key": value,`
    /// (keys sorted, then "apdus" and "responses" last, one entry per line).
    pub fn save(&mut self, card: &Card) -> std::io::Result<()> {
        let mut scalars = scalars(card);
        // This process's CPU time so far (user + system), for benchmarks.
        scalars["cpu_us"] = json!(cpu_us());
        let small = serde_json::to_string_pretty(&scalars).expect("JSON of plain values");
        let mut text = String::with_capacity(small.len() + 64 * card.log.apdus.len() + 64);
        text.push_str(small.trim_end().trim_end_matches('}').trim_end());
        for (name, list) in [
            ("apdus", self.apdus.update(&card.log.apdus)),
            ("responses", self.responses.update(&card.log.responses)),
        ] {
            text.push_str(",\n  \"");
            text.push_str(name);
            text.push_str("\": [");
            if !list.is_empty() {
                text.push_str(list);
                text.push_str("\n  ");
            }
            text.push(']');
        }
        text.push_str("\n}\n");
        let mut f = fs::File::create(&self.tmp)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        fs::rename(&self.tmp, &self.path)
    }
}

/// This process's CPU time (user + system) in µs, from getrusage.
fn cpu_us() -> u64 {
    // SAFETY: rusage is plain old data, filled by getrusage for this process.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a local.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// The whole state as JSON (what the file holds, but `cpu_us`).
#[cfg(test)]
pub fn to_json(card: &Card) -> Value {
    let hexes = |v: &Vec<Vec<u8>>| v.iter().map(hex::encode).collect::<Vec<_>>();
    let mut v = scalars(card);
    v["apdus"] = json!(hexes(&card.log.apdus));
    v["responses"] = json!(hexes(&card.log.responses));
    v
}

/// Everything but the two logs.
fn scalars(card: &Card) -> Value {
    let p = &card.persistent;
    let s = &card.session;
    let l = &card.log;
    json!({
        "pid": std::process::id(),
        "powered": l.powered,
        "admin_tries": p.admin_tries,
        "admin_max": p.admin_max,
        "pin_tries": p.pin_tries,
        "pin_max": p.pin_max,
        "pin": String::from_utf8_lossy(&p.pin),
        "pin_hex": hex::encode(&p.pin),
        "admin_key": hex::encode(p.admin_key.bytes()),
        "mgmt_alg": p.admin_key.alg().name(),
        "family": card.config.family.name(),
        "card_id": p.card_id.map(hex::encode),
        "puk_tries": p.puk_tries,
        "puk_max": p.puk_max,
        "puk_hex": hex::encode(&p.puk),
        "gids_initialised": p.gids_initialised,
        "admin_responses": l.admin_responses,
        "admin_authenticated": s.admin_authenticated,
        "pin_verified": s.pin_verified,
        "challenge": s.challenge.as_ref().map(hex::encode),
        "ext_auth_with_data": l.ext_auth_with_data,
        "rrc": l.rrc,
        "atr_requests": l.atr_requests,
        "power_ons": l.power_ons,
        "resets": l.resets,
        "connections": l.connections,
        "local_port": l.local_port,
    })
}

fn persistent_from_json(v: &Value, mut p: Persistent) -> Result<Persistent, String> {
    let count = |name: &str| -> Result<Option<u32>, String> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("{name}: not a count: {x}")),
        }
    };
    let hex_field = |name: &str| -> Result<Option<Vec<u8>>, String> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => hex::decode(s).map(Some).map_err(|e| format!("{name}: {e}")),
            Some(x) => Err(format!("{name}: not a hex string: {x}")),
        }
    };
    // One field after another, in this order: of several bad fields, the first is reported.
    for (name, counter) in [
        ("admin_tries", &mut p.admin_tries),
        ("admin_max", &mut p.admin_max),
        ("pin_tries", &mut p.pin_tries),
        ("pin_max", &mut p.pin_max),
    ] {
        if let Some(n) = count(name)? {
            *counter = n;
        }
    }
    if let Some(pin) = hex_field("pin_hex")? {
        p.pin = pin;
    } else if let Some(pin) = v.get("pin").and_then(Value::as_str) {
        p.pin = pin.as_bytes().to_vec();
    }
    for (name, counter) in [("puk_tries", &mut p.puk_tries), ("puk_max", &mut p.puk_max)] {
        if let Some(n) = count(name)? {
            *counter = n;
        }
    }
    if let Some(puk) = hex_field("puk_hex")? {
        p.puk = puk;
    }
    let alg = match v.get("mgmt_alg").and_then(Value::as_str) {
        Some(name) => MgmtAlg::parse(name)?,
        None => p.admin_key.alg(),
    };
    if let Some(key) = hex_field("admin_key")? {
        p.admin_key = AdminKey::with_alg(alg, key)?;
    }
    // `card_id: null` is a card without an id; a file without the key keeps the default.
    match v.get("card_id") {
        None => {}
        Some(Value::Null) => p.card_id = None,
        Some(_) => {
            let id = hex_field("card_id")?.unwrap_or_default();
            p.card_id = Some(
                id.try_into()
                    .map_err(|_| "card_id: not 16 bytes".to_string())?,
            );
        }
    }
    if let Some(b) = v.get("gids_initialised").and_then(Value::as_bool) {
        p.gids_initialised = b;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::super::card::Config;
    use super::*;

    fn persistent() -> Persistent {
        Persistent::default()
    }

    #[test]
    fn round_trip_keeps_persistent_fields_only() {
        let dir = std::env::temp_dir().join(format!("vcard-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("card.json");
        let file = StateFile::new(&path);

        let mut card = Card::new(Config::default(), persistent());
        card.persistent.admin_tries = 2;
        card.persistent.pin_tries = 0;
        card.persistent.pin = b"9999".to_vec();
        card.persistent.admin_key = AdminKey::new(vec![0x11; 16]).unwrap();
        card.transmit(&[0x00, 0x84, 0x00, 0x00, 0x08]);
        let mut file = file;
        file.save(&card).unwrap();
        card.transmit(&[0x00, 0x20, 0x00, 0x80]);
        file.save(&card).unwrap();

        let text = fs::read_to_string(&path).unwrap();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["cpu_us"].is_u64(), "{v}");
        v.as_object_mut().unwrap().remove("cpu_us");
        assert_eq!(v, to_json(&card));
        assert!(text.contains(&format!("\n  \"pid\": {},\n", std::process::id())));
        assert_eq!(v["responses"][1], "6983");
        assert_eq!(v["apdus"][0], "0084000008");
        assert_eq!(v["pin"], "9999");
        assert_eq!(v["pin_tries"], 0);

        let loaded = file.load(persistent()).unwrap();
        assert_eq!(
            (loaded.admin_tries, loaded.pin_tries, loaded.pin.as_slice()),
            (2, 0, &b"9999"[..])
        );
        assert_eq!(loaded.admin_key.bytes(), &[0x11; 16]);

        assert_eq!(v["family"], "iso");
        assert_eq!(v["card_id"], "00112233445566778899aabbccddeeff");
        assert_eq!(v["admin_responses"], 0);

        // The PUK, the card id and an AES key survive a reload; `card_id: null` is no id.
        card.persistent.puk = b"777777".to_vec();
        card.persistent.puk_tries = 1;
        card.persistent.card_id = None;
        card.persistent.gids_initialised = false;
        card.persistent.admin_key = AdminKey::with_alg(MgmtAlg::Aes128, vec![0x22; 16]).unwrap();
        file.save(&card).unwrap();
        let loaded = file.load(persistent()).unwrap();
        assert_eq!(
            (loaded.puk.as_slice(), loaded.puk_tries, loaded.card_id),
            (&b"777777"[..], 1, None)
        );
        assert_eq!(loaded.admin_key.alg(), MgmtAlg::Aes128);
        assert!(!loaded.gids_initialised);
        // A file from before the families (no card_id key) keeps the default id.
        fs::write(&path, "{\"pin_tries\": 2}").unwrap();
        assert_eq!(
            file.load(persistent()).unwrap().card_id,
            persistent().card_id
        );
        fs::write(&path, "{\"card_id\": \"0011\"}").unwrap();
        assert!(file.load(persistent()).is_err());
        fs::write(&path, "{\"admin_key\": \"00\", \"mgmt_alg\": \"aes128\"}").unwrap();
        assert!(file.load(persistent()).is_err());
        file.save(&card).unwrap();
        let v: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            (&v["mgmt_alg"], &v["puk_hex"]),
            (&json!("aes128"), &json!("373737373737"))
        );

        fs::write(&path, "{\"pin_tries\": 1}").unwrap();
        let loaded = file.load(persistent()).unwrap();
        assert_eq!((loaded.pin_tries, loaded.admin_tries), (1, 5));

        fs::write(&path, "not json").unwrap();
        assert!(file.load(persistent()).is_err());
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(file.load(persistent()).unwrap().pin_tries, 3);
    }
}
