//! Diagnostics on stderr: `-v` messages, warnings and the APDU trace.
//!
//! Nothing here ever receives a secret: callers pass text built from types
//! whose `Debug`/`Display` redact.

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
