//! What the user sees: readable text, or one JSON document on stdout.

use serde_json::{json, Value};

use scunblock::card::Tries;
use scunblock::error::Error;
use scunblock::flow::{Mode, Outcome};
use scunblock::reader::ReaderInfo;

/// `println!` without the panic on a closed stdout (`scunblock info | head -1`):
/// the card's result must never turn into a crash. The line is scrubbed of secrets and
/// made terminal-safe ([`scunblock::scrub`], [`scunblock::sanitize`]).
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let line = crate::cli::output::safe_text(&format!($($t)*));
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }};
}

/// `eprintln!` without the panic on a closed stderr; scrubbed and terminal-safe.
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let line = crate::cli::output::safe_text(&format!($($t)*));
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }};
}

/// Text for the terminal: secrets blanked, then every control, C1 and bidi code point
/// escaped (the tool's own line ends kept).
pub fn safe_text(s: &str) -> String {
    scunblock::sanitize::text(&scunblock::scrub::text(s)).into_owned()
}

/// One JSON document (pretty) or line: secrets blanked in every string, then C1, DEL and
/// bidi characters written as `\uXXXX`.
pub fn safe_json(mut doc: Value, pretty: bool) -> String {
    scunblock::scrub::value(&mut doc);
    let text = if pretty {
        serde_json::to_string_pretty(&doc)
    } else {
        serde_json::to_string(&doc)
    }
    .unwrap_or_default();
    scunblock::sanitize::json(&text).into_owned()
}

/// Write a JSON document on stdout as is (already made safe).
fn out_raw(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Write a line on stderr as is (already made safe).
fn err_raw(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

pub struct Reporter {
    json: bool,
    command: &'static str,
}

impl Reporter {
    pub fn new(json: bool, command: &'static str) -> Reporter {
        Reporter { json, command }
    }

    fn emit(&self, mut doc: Value) {
        doc["ok"] = json!(doc.get("ok").cloned().unwrap_or(json!(true)));
        // `response_sent` was `challenge_sent` before: both keys for one release.
        if let Some(sent) = doc.get("response_sent").cloned() {
            doc["challenge_sent"] = sent;
        }
        doc["command"] = json!(self.command);
        out_raw(&safe_json(doc, true));
    }

    pub fn readers(&self, readers: &[ReaderInfo]) {
        if self.json {
            self.emit(json!({ "readers": readers }));
            return;
        }
        if readers.is_empty() {
            outln!("No readers found.");
        }
        for r in readers {
            let state = match (r.card_present, r.exclusive, r.mute) {
                (true, true, _) => "card (in exclusive use)",
                (true, _, true) => "card (mute)",
                (true, _, _) => "card",
                _ => "empty",
            };
            outln!("{}: {}  [{}]", r.index, r.name, state);
            if let Some(atr) = &r.atr {
                outln!("   ATR {atr}");
            }
        }
    }

    pub fn info(&self, o: &Outcome) {
        let (atr, problems) = scunblock::atr::Atr::parse_lenient(&o.card.atr);
        let names = atr
            .as_ref()
            .map(scunblock::atr::lookup_names)
            .unwrap_or_default();
        if self.json {
            let mut doc = serde_json::to_value(o).unwrap_or_default();
            doc["atr_decoded"] = serde_json::to_value(&atr).unwrap_or_default();
            doc["atr_problems"] = json!(problems.iter().map(|p| p.to_string()).collect::<Vec<_>>());
            doc["atr_names"] = json!(names);
            self.emit(doc);
            return;
        }
        outln!("Reader:       {}", o.card.reader);
        outln!("ATR:          {}", o.card.atr_hex());
        for n in &names {
            outln!("              {n}");
        }
        if let Some(atr) = &atr {
            for line in atr.describe() {
                outln!("  {line}");
            }
        }
        for p in &problems {
            outln!("  ATR problem: {p}");
        }
        outln!("Profile:      {}", profile_text(o));
        card_lines(o);
        outln!("PIN tries:    {}", tries_text(o.pin_tries_before, "PIN"));
        if let Some(t) = o.puk_tries {
            outln!("PUK tries:    {}", tries_text(t, "PUK"));
        }
        outln!("Admin tries:  {}", tries_text(o.admin_tries, "admin key"));
    }

    pub fn unblocked(&self, mode: &Mode, o: &Outcome) {
        if self.json {
            let mut doc = serde_json::to_value(o).unwrap_or_default();
            doc["dry_run"] = json!(mode.is_dry_run());
            self.emit(doc);
            return;
        }
        outln!("Reader:       {}", o.card.reader);
        outln!("ATR:          {}", o.card.atr_hex());
        outln!("Profile:      {}", profile_text(o));
        card_lines(o);
        outln!("Admin tries:  {}", tries_text(o.admin_tries, "admin key"));
        outln!("PIN tries:    {}", tries_text(o.pin_tries_before, "PIN"));
        if let Some(t) = o.puk_tries {
            outln!("PUK tries:    {}", tries_text(t, "PUK"));
        }
        match mode {
            Mode::DryRun => outln!("Dry run: no authentication was sent."),
            Mode::AuthOnly => outln!("Admin authentication: OK ({})", o.responder),
            Mode::Unblock { .. } => {
                outln!("Admin authentication: OK ({})", o.responder);
                outln!(
                    "New PIN set. PIN tries left: {}",
                    tries_text(o.pin_tries_after, "PIN")
                );
            }
            Mode::UnblockWithPuk { .. } => outln!(
                "New PIN set with the PUK. PIN tries left: {}",
                tries_text(o.pin_tries_after, "PIN")
            ),
        }
    }

    /// `respond`: one line of hex, which `--manual` takes as it is.
    pub fn respond(&self, response: &[u8]) {
        use base64::Engine;
        let hex = hex::encode(response);
        if self.json {
            self.emit(json!({
                "response_hex": hex,
                "response_base64": base64::engine::general_purpose::STANDARD.encode(response),
            }));
        } else {
            outln!("{hex}");
        }
    }

    pub fn failure(&self, e: &Error, o: Option<&Outcome>) {
        if self.json {
            let mut doc = o
                .and_then(|o| serde_json::to_value(o).ok())
                .unwrap_or_else(|| json!({}));
            doc["ok"] = json!(false);
            doc["exit_code"] = json!(e.exit_code());
            doc["error"] = json!({
                "class": e.class(),
                "message": e.to_string(),
                "hint": e.hint(),
                "sw": e.sw().map(|sw| format!("{sw:04X}")),
            });
            if let Some(t) = e.admin_tries() {
                doc["admin_tries"] = serde_json::to_value(t).unwrap_or_default();
            }
            if let Some(t) = e.pin_tries() {
                doc["pin_tries_after"] = serde_json::to_value(t).unwrap_or_default();
            }
            if let Some(t) = e.puk_tries() {
                doc["puk_tries"] = serde_json::to_value(t).unwrap_or_default();
            }
            self.emit(doc);
        }
        errln!("scunblock: error: {e}");
        if let Some(o) = o {
            if !o.card.reader.is_empty() {
                errln!(
                    "  reader {}; admin tries left: {}; PIN tries left: {}",
                    o.card.reader,
                    admin_tries_text(e, o),
                    pin_tries_text(e, o),
                );
            }
        }
        if let Some(h) = e.hint() {
            errln!("  next: {h}");
        }
    }
}

/// The admin tries after a failed run. The count read before the run is only still
/// true when the card's verdict on the admin response is known: a run cut off after the
/// response went out (card removed, pcscd gone, a garbled answer) may have spent a try.
fn admin_tries_text(e: &Error, o: &Outcome) -> String {
    let verdict_lost = matches!(e, Error::Unavailable { .. } | Error::Protocol(_));
    match e.admin_tries() {
        Some(t) => tries_text(t, "admin key"),
        None if o.response_sent && !o.admin_authenticated && verdict_lost => format!(
            "{} before the admin response was sent (the card may have counted it; \
             `scunblock info` shows the count now)",
            tries_text(o.admin_tries, "admin key")
        ),
        None => tries_text(o.admin_tries, "admin key"),
    }
}

/// The PIN tries after a failed run: once the admin authentication succeeded, RESET
/// RETRY COUNTER may have set the new PIN even though its answer was lost.
fn pin_tries_text(e: &Error, o: &Outcome) -> String {
    match e.pin_tries() {
        Some(t) => tries_text(t, "PIN"),
        None if o.pin_reset => "unknown (the new PIN was set)".into(),
        None if o.admin_authenticated => "unknown: the new PIN may have been set \
             (`scunblock info` shows the PIN tries now)"
            .into(),
        None => tries_text(o.pin_tries_before, "PIN"),
    }
}

/// "gids (detected)", "piv (option)".
fn profile_text(o: &Outcome) -> String {
    match o.profile_source {
        Some(src) => format!(
            "{} ({})",
            o.profile,
            serde_json::to_value(src)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
        None => o.profile.clone(),
    }
}

/// The card id: the GUID as sent to CM, and the card's own bytes.
fn card_lines(o: &Outcome) {
    match (&o.card.card_id, &o.card_id_raw) {
        (Some(id), Some(raw)) => outln!("Card ID:      {{{id}}} (bytes {raw})"),
        (Some(id), None) => outln!("Card ID:      {{{id}}} (given; the card has none)"),
        (None, _) => {}
    }
}

fn tries_text(t: Tries, what: &str) -> String {
    match t {
        Tries::Left(1) => format!("1 (LAST TRY: a wrong attempt blocks the {what})"),
        Tries::Left(n) => n.to_string(),
        Tries::Blocked => "0 (blocked)".into(),
        Tries::Verified => "verified".into(),
        Tries::Unknown => "unknown (the card does not report them)".into(),
    }
}

/// CM workflow progress on stderr: a JSON line each with --json, else text.
pub fn progress(json: bool, p: &scunblock::cm_responder::Progress) {
    use scunblock::cm_responder::Progress as P;
    let (event, fields, text) = match p {
        P::SmartcardFound { smartcard_id } => (
            "cm_smartcard_found",
            json!({ "smartcard_id": smartcard_id }),
            format!("CM smartcard {smartcard_id}"),
        ),
        P::RequestCreated { request_id } => (
            "cm_request_created",
            json!({ "request_id": request_id }),
            format!("CM unblock request {request_id} created; waiting for approval"),
        ),
        P::Waiting { request_id, status, polls, waited_secs } => (
            "cm_approval_pending",
            json!({ "request_id": request_id, "status": status, "polls": polls, "waited_secs": waited_secs }),
            format!("waiting for approval of {request_id}: status {status}, {waited_secs} s"),
        ),
        P::Approved { request_id } => (
            "cm_request_approved",
            json!({ "request_id": request_id }),
            format!("CM request {request_id} approved"),
        ),
        P::RequestClosed { request_id, status } => (
            "cm_request_closed",
            json!({ "request_id": request_id, "status": status }),
            format!("CM request {request_id} marked {status}"),
        ),
        P::RequestLeftOpen { request_id } => (
            "cm_request_left_open",
            json!({ "request_id": request_id }),
            format!(
                "CM request {request_id} left open: re-run with --request-id {request_id} once the card is back"
            ),
        ),
    };
    if json {
        let mut doc = fields;
        doc["event"] = json!(event);
        err_raw(&safe_json(doc, false));
    } else {
        errln!("scunblock: {text}");
    }
}
