//! Watch events: what happened, when, in which reader; written as one JSON
//! object per line (`--json`) or one readable line each, flushed at once.
//! docs/kiosk.md's event table is the reference: each [`What`] variant holds
//! that row's fields, and [`What::fields`] lists them in its order.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::apdu::Tries;

/// What happened: one variant per event name, with that event's fields.
#[derive(Clone, Debug)]
pub enum What {
    ServiceUp,
    ServiceLost {
        message: String,
    },
    ReaderAdded,
    ReaderRemoved,
    CardInserted {
        /// Null when neither the card nor PC/SC gave one.
        atr: Option<String>,
        pin_tries: Tries,
        admin_tries: Tries,
        card_id: Option<String>,
    },
    CardRemoved,
    UnblockStarted {
        atr: String,
        card_id: Option<String>,
        /// The card's family.
        profile: String,
        /// `local-key`, `cm`, or `puk`.
        responder: String,
        pin_tries: Tries,
        admin_tries: Tries,
    },
    UnblockSucceeded {
        card_id: Option<String>,
        /// After the reset.
        pin_tries: Tries,
        /// Before the authentication.
        admin_tries: Tries,
        responder: String,
        cm: Option<Value>,
        /// Set when the event closes its card's unblock ([`What::elapsed`]).
        elapsed_ms: Option<u64>,
    },
    UnblockFailed {
        class: &'static str,
        /// Null for the watcher's own `shutdown` class.
        exit_code: Option<u8>,
        message: String,
        sw: Option<u16>,
        admin_tries: Tries,
        pin_tries: Tries,
        hint: Option<String>,
        cm: Option<Value>,
        elapsed_ms: Option<u64>,
    },
    Skipped {
        reason: &'static str,
        message: String,
    },
}

impl What {
    /// The event's name (the `event` field).
    pub fn name(&self) -> &'static str {
        match self {
            What::ServiceUp => "service_up",
            What::ServiceLost { .. } => "service_lost",
            What::ReaderAdded => "reader_added",
            What::ReaderRemoved => "reader_removed",
            What::CardInserted { .. } => "card_inserted",
            What::CardRemoved => "card_removed",
            What::UnblockStarted { .. } => "unblock_started",
            What::UnblockSucceeded { .. } => "unblock_succeeded",
            What::UnblockFailed { .. } => "unblock_failed",
            What::Skipped { .. } => "skipped",
        }
    }

    /// An unblock's result with the time since the card arrived; other
    /// events unchanged.
    pub fn elapsed(mut self, ms: u64) -> What {
        if let What::UnblockSucceeded { elapsed_ms, .. } | What::UnblockFailed { elapsed_ms, .. } =
            &mut self
        {
            *elapsed_ms = Some(ms);
        }
        self
    }

    /// The fields after `time`, `event` and `reader`, in docs/kiosk.md's
    /// order; `Null` where unknown.
    fn fields(&self) -> Vec<(&'static str, Value)> {
        let tries = |t: &Tries| serde_json::to_value(t).unwrap_or(Value::Null);
        let sw = |sw: &Option<u16>| Value::from(sw.map(|sw| format!("{sw:04X}")));
        match self {
            What::ServiceUp | What::ReaderAdded | What::ReaderRemoved | What::CardRemoved => {
                Vec::new()
            }
            What::ServiceLost { message } => vec![("message", message.as_str().into())],
            What::CardInserted {
                atr,
                pin_tries,
                admin_tries,
                card_id,
            } => vec![
                ("atr", atr.clone().into()),
                ("pin_tries", tries(pin_tries)),
                ("admin_tries", tries(admin_tries)),
                ("card_id", card_id.clone().into()),
            ],
            What::UnblockStarted {
                atr,
                card_id,
                profile,
                responder,
                pin_tries,
                admin_tries,
            } => vec![
                ("atr", atr.as_str().into()),
                ("card_id", card_id.clone().into()),
                ("profile", profile.as_str().into()),
                ("responder", responder.as_str().into()),
                ("pin_tries", tries(pin_tries)),
                ("admin_tries", tries(admin_tries)),
            ],
            What::UnblockSucceeded {
                card_id,
                pin_tries,
                admin_tries,
                responder,
                cm,
                elapsed_ms,
            } => vec![
                ("card_id", card_id.clone().into()),
                ("pin_tries", tries(pin_tries)),
                ("admin_tries", tries(admin_tries)),
                ("responder", responder.as_str().into()),
                ("cm", cm.clone().unwrap_or(Value::Null)),
                ("elapsed_ms", (*elapsed_ms).into()),
            ],
            What::UnblockFailed {
                class,
                exit_code,
                message,
                sw: code,
                admin_tries,
                pin_tries,
                hint,
                cm,
                elapsed_ms,
            } => vec![
                ("class", (*class).into()),
                ("exit_code", (*exit_code).into()),
                ("message", message.as_str().into()),
                ("sw", sw(code)),
                ("admin_tries", tries(admin_tries)),
                ("pin_tries", tries(pin_tries)),
                ("hint", hint.clone().into()),
                ("cm", cm.clone().unwrap_or(Value::Null)),
                ("elapsed_ms", (*elapsed_ms).into()),
            ],
            What::Skipped { reason, message } => vec![
                ("reason", (*reason).into()),
                ("message", message.as_str().into()),
            ],
        }
    }
}

/// One event.
#[derive(Clone, Debug)]
pub struct Event {
    pub time: SystemTime,
    /// None for the service events.
    pub reader: Option<String>,
    pub what: What,
}

impl Event {
    /// An event of the PC/SC service (no reader).
    pub fn service(what: What) -> Event {
        Event {
            time: SystemTime::now(),
            reader: None,
            what,
        }
    }

    /// An event of one reader (or the card in it).
    pub fn reader(reader: &str, what: What) -> Event {
        Event {
            time: SystemTime::now(),
            reader: Some(reader.to_string()),
            what,
        }
    }

    /// The one line this event is written as: `{"time":..,"event":..,
    /// "reader":..,<fields>}` (`json`), else `TIME EVENT [READER]
    /// name=value ...` with strings quoted when they hold spaces and null
    /// fields left out. Outside text (reader names, server messages) is
    /// blanked of secrets, then made safe for the terminal or the journal
    /// (`watch --json` under systemd).
    pub fn line(&self, json: bool) -> String {
        let time = stamp(self.time);
        let reader = self.reader.as_deref().map(crate::scrub::text);
        let mut fields = self.what.fields();
        for (_, v) in fields.iter_mut() {
            crate::scrub::value(v);
        }
        let mut s = String::with_capacity(160);
        if json {
            s.push_str("{\"time\":");
            s.push_str(&Value::from(time).to_string());
            s.push_str(",\"event\":");
            s.push_str(&Value::from(self.what.name()).to_string());
            s.push_str(",\"reader\":");
            s.push_str(&Value::from(reader).to_string());
            for (name, value) in &fields {
                s.push(',');
                s.push_str(&Value::from(*name).to_string());
                s.push(':');
                s.push_str(&value.to_string());
            }
            s.push('}');
            return crate::sanitize::json(&s).into_owned();
        }
        s.push_str(&time);
        s.push(' ');
        s.push_str(self.what.name());
        if let Some(r) = &reader {
            s.push_str(&format!(" [{r}]"));
        }
        for (name, value) in &fields {
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
        crate::sanitize::line(&s).into_owned()
    }
}

/// RFC 3339 in UTC with milliseconds: `2026-11-28T21:13:38.474Z`. humantime
/// writes 1970 to 9999 only (it panics before, fails after): a clock set that
/// wrong gets the nearest time it can write.
fn stamp(t: SystemTime) -> String {
    let last = UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
    humantime::format_rfc3339_millis(t.clamp(UNIX_EPOCH, last)).to_string()
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
        let line = e.line(self.json);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    fn timed(mut e: Event, t: SystemTime) -> Event {
        e.time = t;
        e
    }

    #[test]
    fn times_are_rfc3339_utc_with_millis() {
        let line = |secs, millis| {
            let e = timed(Event::service(What::ServiceUp), at(secs, millis));
            e.line(false)
        };
        assert_eq!(line(0, 0), "1970-01-01T00:00:00.000Z service_up");
        // date -u -d @951782400 = 2000-02-29 00:00:00 (a leap day of a /400 year)
        assert_eq!(line(951_782_400, 7), "2000-02-29T00:00:00.007Z service_up");
        // date -u -d @1709251199 = 2024-02-29 23:59:59
        assert_eq!(
            line(1_709_251_199, 999),
            "2024-02-29T23:59:59.999Z service_up"
        );
        // date -u -d @4107542400 = 2100-03-01 (2100 is no leap year)
        assert_eq!(
            line(4_107_542_400, 0),
            "2100-03-01T00:00:00.000Z service_up"
        );
        // A clock set before 1970 or after 9999 gives no panic.
        assert_eq!(
            stamp(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            stamp(at(253_402_300_800 * 2, 0)),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn json_lines_keep_the_documented_field_order() {
        let e = Event::reader(
            "Virtual PCD 00 00",
            What::CardInserted {
                atr: Some("3B 02 14 50".into()),
                pin_tries: Tries::Left(0),
                admin_tries: Tries::Unknown,
                card_id: None,
            },
        );
        let line = timed(e, at(0, 5)).line(true);
        assert_eq!(
            line,
            r#"{"time":"1970-01-01T00:00:00.005Z","event":"card_inserted","reader":"Virtual PCD 00 00","atr":"3B 02 14 50","pin_tries":0,"admin_tries":null,"card_id":null}"#
        );
        let service = Event::service(What::ServiceUp).line(true);
        assert_eq!(
            serde_json::from_str::<Value>(&service).unwrap()["reader"],
            json!(null)
        );
    }

    #[test]
    fn failures_carry_every_field_and_their_elapsed_time() {
        let e = Event::reader(
            "R",
            What::UnblockFailed {
                class: "admin_rejected",
                exit_code: Some(4),
                message: "the card refused".into(),
                sw: Some(0x63C4),
                admin_tries: Tries::Left(4),
                pin_tries: Tries::Left(0),
                hint: None,
                cm: None,
                elapsed_ms: None,
            }
            .elapsed(12),
        );
        assert_eq!(
            timed(e, at(0, 0)).line(true),
            r#"{"time":"1970-01-01T00:00:00.000Z","event":"unblock_failed","reader":"R","class":"admin_rejected","exit_code":4,"message":"the card refused","sw":"63C4","admin_tries":4,"pin_tries":0,"hint":null,"cm":null,"elapsed_ms":12}"#
        );
    }

    #[test]
    fn text_lines_quote_what_has_spaces_and_drop_nulls() {
        let e = Event::reader(
            "Virtual PCD 00 01",
            What::UnblockStarted {
                atr: "3B 02".into(),
                card_id: None,
                profile: "gids".into(),
                responder: "local-key".into(),
                pin_tries: Tries::Left(0),
                admin_tries: Tries::Unknown,
            },
        );
        assert_eq!(
            timed(e, at(0, 0)).line(false),
            "1970-01-01T00:00:00.000Z unblock_started [Virtual PCD 00 01] atr=\"3B 02\" profile=gids responder=local-key pin_tries=0"
        );
        let skipped = Event::reader(
            "Virtual PCD 00 01",
            What::Skipped {
                reason: "failed_before",
                message: "the card refused".into(),
            },
        );
        assert_eq!(
            timed(skipped, at(0, 0)).line(false),
            "1970-01-01T00:00:00.000Z skipped [Virtual PCD 00 01] reason=failed_before message=\"the card refused\""
        );
    }

    /// Every event with its fields named as docs/kiosk.md's event table
    /// names them, in its order.
    #[test]
    fn the_fields_are_those_of_the_documented_table() {
        let t = Tries::Unknown;
        let every = [
            What::ServiceUp,
            What::ServiceLost {
                message: "m".into(),
            },
            What::ReaderAdded,
            What::ReaderRemoved,
            What::CardInserted {
                atr: None,
                pin_tries: t,
                admin_tries: t,
                card_id: None,
            },
            What::CardRemoved,
            What::UnblockStarted {
                atr: String::new(),
                card_id: None,
                profile: String::new(),
                responder: String::new(),
                pin_tries: t,
                admin_tries: t,
            },
            What::UnblockSucceeded {
                card_id: None,
                pin_tries: t,
                admin_tries: t,
                responder: String::new(),
                cm: None,
                elapsed_ms: None,
            },
            What::UnblockFailed {
                class: "",
                exit_code: None,
                message: String::new(),
                sw: None,
                admin_tries: t,
                pin_tries: t,
                hint: None,
                cm: None,
                elapsed_ms: None,
            },
            What::Skipped {
                reason: "",
                message: String::new(),
            },
        ];
        let doc = include_str!("../../docs/kiosk.md");
        let table = &doc[doc
            .find("| event | fields | when |")
            .expect("the event table")..];
        let mut documented = Vec::new();
        for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = row.split('|').collect();
            // The fields cell without its parenthesised remarks, then its `names`.
            let mut fields = String::new();
            let mut depth = 0;
            for c in cells[2].chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    c if depth == 0 => fields.push(c),
                    _ => {}
                }
            }
            let names: Vec<String> = fields
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            documented.push((cells[1].trim().trim_matches('`').to_string(), names));
        }
        let ours: Vec<(String, Vec<String>)> = every
            .iter()
            .map(|w| {
                let names = w.fields().into_iter().map(|(n, _)| n.to_string()).collect();
                (w.name().to_string(), names)
            })
            .collect();
        assert_eq!(ours, documented);
    }
}
