//! Secrets as types, and the only places they are read from.
//!
//! A [`Pin`] or [`Token`] is zeroized on drop and prints `REDACTED` in
//! `Debug` and `Display`. Secrets come from an environment variable (removed
//! from the process environment once read, so child processes never inherit
//! it), a file (refused when group or others can read it), standard input or
//! a no-echo prompt: never from the command line.

use std::fmt;
use std::io::{BufRead, IsTerminal};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::Error;

/// A user PIN (or PUK): bytes, zeroized on drop.
#[derive(Clone)]
pub struct Pin(Zeroizing<Vec<u8>>);

impl Pin {
    /// The PIN is registered with the scrubber (as a whole token) for as long as the
    /// process runs, or until [`crate::scrub::forget_pin`].
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Pin {
        crate::scrub::register_pin(&bytes);
        Pin(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(REDACTED)")
    }
}

/// A bearer token or other secret text, zeroized on drop.
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

impl Token {
    /// The token is registered with the scrubber.
    pub fn new(text: Zeroizing<String>) -> Token {
        crate::scrub::register_text(&text);
        Token(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(REDACTED)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

/// Where a secret is read from; `what` names it in error messages.
#[derive(Debug, Clone)]
pub enum Source<'a> {
    Env(&'a str),
    File(&'a Path),
    Stdin,
}

/// Read a secret's raw bytes. Env values and files keep their bytes; the
/// caller decides how to trim or parse them.
pub fn read(
    source: &Source<'_>,
    what: &str,
    allow_insecure_file: bool,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    match source {
        Source::Env(var) => read_env(var, what),
        Source::File(path) => read_file(path, what, allow_insecure_file),
        Source::Stdin => read_stdin_line(what),
    }
}

fn read_env(var: &str, what: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    if var.is_empty() {
        return Err(Error::usage(format!("the {what} variable name is empty")));
    }
    match std::env::var_os(var) {
        None => Err(Error::usage(format!(
            "environment variable {var} (the {what}) is not set: export it, or use the file option"
        ))),
        Some(value) => {
            let bytes = Zeroizing::new(value.into_encoded_bytes());
            // Children (a kiosk's --new-pin-command, say) must not inherit it.
            std::env::remove_var(var);
            if bytes.is_empty() {
                return Err(Error::usage(format!(
                    "environment variable {var} (the {what}) is empty"
                )));
            }
            Ok(bytes)
        }
    }
}

fn read_file(path: &Path, what: &str, allow_insecure: bool) -> Result<Zeroizing<Vec<u8>>, Error> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::usage(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(Error::usage(format!(
            "the {what} file {} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > 64 * 1024 {
        return Err(Error::usage(format!(
            "the {what} file {} is {} bytes: too large for a {what}",
            path.display(),
            meta.len()
        )));
    }
    check_file_mode(path, &meta, what, allow_insecure)?;
    let bytes = std::fs::read(path).map_err(|e| {
        Error::usage(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })?;
    Ok(Zeroizing::new(bytes))
}

#[cfg(unix)]
fn check_file_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    what: &str,
    allow_insecure: bool,
) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 && !allow_insecure {
        let override_flag = match what {
            "admin key" => " (or pass --allow-insecure-key-file)",
            "new PIN" => " (or pass --allow-insecure-pin-file)",
            _ => "",
        };
        return Err(Error::usage(format!(
            "the {what} file {} has mode {mode:03o}: group or others can read it. \
             Run `chmod 600 {}`{override_flag}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_file_mode(
    _path: &Path,
    _meta: &std::fs::Metadata,
    _what: &str,
    _allow_insecure: bool,
) -> Result<(), Error> {
    // Windows: access is governed by ACLs, which the file's owner sets.
    Ok(())
}

fn read_stdin_line(what: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut line = Zeroizing::new(String::new());
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::usage(format!("cannot read the {what} from standard input: {e}")))?;
    if n == 0 {
        return Err(Error::usage(format!(
            "standard input ended before the {what} was given"
        )));
    }
    Ok(Zeroizing::new(strip_line_end(line.as_bytes()).to_vec()))
}

/// Drop one trailing "\n" or "\r\n": what a file or `echo` adds.
pub fn strip_line_end(bytes: &[u8]) -> &[u8] {
    let b = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// Ask twice on the terminal without echo. `None` when stdin is no terminal.
pub fn prompt_new_pin() -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("New PIN: ")
            .map_err(|e| Error::usage(format!("cannot read the PIN from the terminal: {e}")))?,
    );
    let second = Zeroizing::new(
        rpassword::prompt_password("New PIN again: ")
            .map_err(|e| Error::usage(format!("cannot read the PIN from the terminal: {e}")))?,
    );
    if *first != *second {
        return Err(Error::usage(
            "the two PINs differ; nothing was sent to the card",
        ));
    }
    Ok(Some(Zeroizing::new(first.as_bytes().to_vec())))
}

/// Make this process undumpable while it holds secrets (Linux); elsewhere
/// set the core size limit to zero where the platform has one.
pub fn disable_core_dumps() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) only changes this process's flag.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    // SAFETY: setrlimit with a valid pointer to a local struct.
    unsafe {
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_debug_print() {
        let pin = Pin::new(Zeroizing::new(b"24681357".to_vec()));
        assert_eq!(format!("{pin:?}"), "Pin(REDACTED)");
        let tok = Token::new(Zeroizing::new("s3cr3t-token".into()));
        assert_eq!(format!("{tok:?} {tok}"), "Token(REDACTED) REDACTED");
    }

    #[test]
    fn strips_one_line_end() {
        assert_eq!(strip_line_end(b"1234\r\n"), b"1234");
        assert_eq!(strip_line_end(b"1234\n"), b"1234");
        assert_eq!(strip_line_end(b"1234\n\n"), b"1234\n");
        assert_eq!(strip_line_end(b"1234"), b"1234");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_readable_secret_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, "00").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&Source::File(&p), "admin key", false).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(read(&Source::File(&p), "admin key", true).is_ok());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            &read(&Source::File(&p), "admin key", false).unwrap()[..],
            b"00"
        );
    }
}
