//! Watch events: what happened, when, in which reader; written as one JSON
//! object per line (`--json`) or one readable line each, flushed at once.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The event names (the `event` field).
pub mod kind {
    pub const SERVICE_UP: &str = "service_up";
    pub const SERVICE_LOST: &str = "service_lost";
    pub const READER_ADDED: &str = "reader_added";
    pub const READER_REMOVED: &str = "reader_removed";
    pub const CARD_INSERTED: &str = "card_inserted";
    pub const CARD_REMOVED: &str = "card_removed";
    pub const UNBLOCK_STARTED: &str = "unblock_started";
    pub const UNBLOCK_SUCCEEDED: &str = "unblock_succeeded";
    pub const UNBLOCK_FAILED: &str = "unblock_failed";
    pub const SKIPPED: &str = "skipped";
}

/// One event. Its fields keep the order they were added in.
#[derive(Clone, Debug)]
pub struct Event {
    pub time: SystemTime,
    pub kind: &'static str,
    /// None for the service events.
    pub reader: Option<String>,
    pub fields: Vec<(&'static str, Value)>,
}

impl Event {
    pub fn new(kind: &'static str, reader: Option<&str>) -> Event {
        Event {
            time: SystemTime::now(),
            kind,
            reader: reader.map(str::to_string),
            fields: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<Value>) -> Event {
        self.fields.push((name, value.into()));
        self
    }

    /// `{"time":..,"event":..,"reader":..,<fields>}` on one line.
    pub fn to_json_line(&self) -> String {
        let mut s = String::with_capacity(160);
        s.push_str("{\"time\":");
        s.push_str(&Value::from(rfc3339_millis(self.time)).to_string());
        s.push_str(",\"event\":");
        s.push_str(&Value::from(self.kind).to_string());
        s.push_str(",\"reader\":");
        s.push_str(&Value::from(self.reader.clone()).to_string());
        for (name, value) in &self.fields {
            s.push(',');
            s.push_str(&Value::from(*name).to_string());
            s.push(':');
            s.push_str(&value.to_string());
        }
        s.push('}');
        s
    }

    /// `TIME EVENT [READER] name=value ...`, strings quoted when they hold spaces.
    pub fn to_text_line(&self) -> String {
        let mut s = format!("{} {}", rfc3339_millis(self.time), self.kind);
        if let Some(r) = &self.reader {
            s.push_str(&format!(" [{r}]"));
        }
        for (name, value) in &self.fields {
            let v = match value {
                Value::Null => continue,
                Value::String(t) if t.is_empty() || t.contains(char::is_whitespace) => {
                    Value::from(t.as_str()).to_string()
                }
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            s.push_str(&format!(" {name}={v}"));
        }
        s
    }
}

/// Writes events to stdout, one line each, whole lines only, flushed at once.
pub struct Emitter {
    json: bool,
    lock: Mutex<()>,
    broken: AtomicBool,
}

impl Emitter {
    pub fn new(json: bool) -> Emitter {
        Emitter {
            json,
            lock: Mutex::new(()),
            broken: AtomicBool::new(false),
        }
    }

    /// Write one event. Returns false when stdout is gone (the reader of our
    /// output exited): the watcher then stops.
    pub fn emit(&self, e: &Event) -> bool {
        // Outside text (reader names, server messages) blanked of secrets, then made
        // safe for the terminal or the journal (`watch --json` under systemd).
        let mut e = e.clone();
        e.reader = e.reader.map(|r| crate::scrub::text(&r));
        for (_, v) in e.fields.iter_mut() {
            crate::scrub::value(v);
        }
        let line = if self.json {
            crate::sanitize::json(&e.to_json_line()).into_owned()
        } else {
            crate::sanitize::line(&e.to_text_line()).into_owned()
        };
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let ok = writeln!(out, "{line}").and_then(|()| out.flush()).is_ok();
        if !ok {
            self.broken.store(true, Ordering::SeqCst);
        }
        ok
    }

    /// Whether a write to stdout has failed.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }
}

/// RFC 3339 in UTC with milliseconds: `2025-03-01T09:30:12.345Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (the well-known era/day-of-era computation).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn formats_rfc3339_with_millis() {
        assert_eq!(rfc3339_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // date -u -d @951782400 = 2000-02-29 00:00:00 (a leap day of a /400 year)
        assert_eq!(
            rfc3339_millis(at(951_782_400, 7)),
            "2000-02-29T00:00:00.007Z"
        );
        // date -u -d @1709251199 = 2024-02-29 23:59:59
        assert_eq!(
            rfc3339_millis(at(1_709_251_199, 999)),
            "2024-02-29T23:59:59.999Z"
        );
        // date -u -d @4102444800 = 2100-01-01 (2100 is no leap year)
        assert_eq!(
            rfc3339_millis(at(4_107_542_400, 0)),
            "2100-03-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_millis(at(4_102_444_800, 0)),
            "2100-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn json_lines_keep_the_field_order() {
        let mut e = Event::new(kind::CARD_INSERTED, Some("Virtual PCD 00 00"))
            .with("atr", "3B 02 14 50")
            .with("pin_tries", 0)
            .with("card_id", Value::Null);
        e.time = at(0, 5);
        let line = e.to_json_line();
        assert_eq!(
            line,
            r#"{"time":"1970-01-01T00:00:00.005Z","event":"card_inserted","reader":"Virtual PCD 00 00","atr":"3B 02 14 50","pin_tries":0,"card_id":null}"#
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["pin_tries"], 0);
        let service = Event::new(kind::SERVICE_UP, None).to_json_line();
        assert_eq!(
            serde_json::from_str::<Value>(&service).unwrap()["reader"],
            json!(null)
        );
    }

    #[test]
    fn text_lines_quote_what_has_spaces_and_drop_nulls() {
        let mut e = Event::new(kind::SKIPPED, Some("Virtual PCD 00 01"))
            .with("reason", "failed_before")
            .with("message", "the card refused")
            .with("card_id", Value::Null);
        e.time = at(0, 0);
        assert_eq!(
            e.to_text_line(),
            "1970-01-01T00:00:00.000Z skipped [Virtual PCD 00 01] reason=failed_before message=\"the card refused\""
        );
    }
}
