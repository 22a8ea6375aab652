//! Diagnostics on stderr: `-v` messages, warnings and the APDU trace.
//!
//! Callers pass text built from types whose `Debug`/`Display` redact. Outside text
//! (server messages, reader names, card data) can still carry a secret back in or an
//! escape sequence, so every line is scrubbed ([`crate::scrub`]) and made terminal-safe
//! ([`crate::sanitize`]) here, on its way out.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static VERBOSE: AtomicBool = AtomicBool::new(false);

pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

pub fn is_verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

fn emit(line: &str) {
    let line = crate::scrub::text(line);
    let line = crate::sanitize::text(&line);
    let stderr = std::io::stderr();
    let mut lock = stderr.lock();
    let _ = writeln!(lock, "{line}");
}

/// A `-v` message.
pub fn verbose(msg: impl AsRef<str>) {
    if is_verbose() {
        emit(&format!("scunblock: {}", msg.as_ref()));
    }
}

/// A line for the person at the terminal, always shown (no prefix).
pub fn say(msg: impl AsRef<str>) {
    emit(msg.as_ref());
}

/// A warning, always shown.
pub fn warn(msg: impl AsRef<str>) {
    emit(&format!("scunblock: warning: {}", msg.as_ref()));
}

/// One APDU trace line.
pub fn trace_line(prefix: &str, line: &str) {
    if prefix.is_empty() {
        emit(&format!("apdu {line}"));
    } else {
        emit(&format!("apdu [{prefix}] {line}"));
    }
}
