//! Secrets as types, and the only places they are read from.
//!
//! A [`Pin`] or [`Token`] is zeroized on drop and prints `REDACTED` in
//! `Debug` and `Display`. Secrets come from an environment variable (removed
//! from the process environment once read, so child processes never inherit
//! it), a file (refused when group or others can read it), standard input or
//! a no-echo prompt: never from the command line.

use std::fmt;
use std::io::BufRead;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::Error;

/// A user PIN (or PUK): bytes, zeroized on drop.
#[derive(Clone)]
pub struct Pin(Zeroizing<Vec<u8>>);

impl Pin {
    /// Not registered with the scrubber by itself (the flow's tests and fuzz targets make
    /// millions): the command line and watch register the PINs they read
    /// ([`Pin::register_for_scrubbing`]).
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Pin {
        Pin(bytes)
    }

    /// Blank this PIN (as a whole token) in every output from now on, until
    /// [`crate::scrub::forget_pin`].
    pub fn register_for_scrubbing(&self) {
        crate::scrub::register_pin(&self.0);
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

/// The most a secret file (admin key, PIN, token, client key, PKCS#11 PIN) may hold.
pub const SECRET_FILE_CAP: u64 = 64 * 1024;
/// The most a certificate file (`--cm-ca-file`, `--cm-client-cert`) may hold.
pub const CERT_FILE_CAP: u64 = 1024 * 1024;
/// The most a card profile file (`--profile`) may hold.
pub const PROFILE_FILE_CAP: u64 = 64 * 1024;
/// The most one line of standard input (new PIN, PUK, manual response) may hold,
/// line end included.
pub const STDIN_LINE_CAP: usize = 4 * 1024;

fn read_file(path: &Path, what: &str, allow_insecure: bool) -> Result<Zeroizing<Vec<u8>>, Error> {
    read_regular_file(path, what, SECRET_FILE_CAP, |meta| {
        check_file_mode(path, meta, what, allow_insecure)
    })
}

/// Read a file the tool was pointed at: a regular file of at most `cap` bytes, or exit 2
/// at once. It is opened without blocking and checked on the open handle, so a FIFO, a
/// device (/dev/zero), a directory, or a file swapped for one after a check, is refused
/// without reading, and a file that grows while being read is cut off at `cap` + 1 bytes
/// and refused. `check` sees the handle's metadata (file mode rules). The bytes are
/// zeroized when dropped: several of these files hold secrets.
pub fn read_regular_file(
    path: &Path,
    what: &str,
    cap: u64,
    check: impl FnOnce(&std::fs::Metadata) -> Result<(), Error>,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    use std::io::Read;
    let (file, meta) = open_regular_file(path, what, cap)?;
    check(&meta)?;
    // Sized once (the length seen, at most the cap, + 1): no reallocation leaves an
    // unzeroized copy behind.
    let want = usize::try_from(meta.len().min(cap) + 1).unwrap_or(usize::MAX);
    let mut bytes = Zeroizing::new(Vec::with_capacity(want));
    file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| {
        Error::usage(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })?;
    if bytes.len() as u64 > cap {
        return Err(too_large(path, what, cap, bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_regular_file`] for a file no file mode rule applies to (a
/// certificate, a profile).
pub fn read_public_file(path: &Path, what: &str, cap: u64) -> Result<Zeroizing<Vec<u8>>, Error> {
    read_regular_file(path, what, cap, |_| Ok(()))
}

/// The most a keytab (`--keytab`) may hold; the GSSAPI library reads it.
pub const KEYTAB_FILE_CAP: u64 = 1024 * 1024;

fn too_large(path: &Path, what: &str, cap: u64, len: u64) -> Error {
    Error::usage(format!(
        "the {what} file {} is {len} bytes or more: a {what} file may hold at most {cap}",
        path.display()
    ))
}

/// Open a file the tool was pointed at without blocking (a FIFO would block the open
/// itself until a writer came) and check, on the open handle, that it is a regular file
/// of at most `cap` bytes: exit 2 otherwise. For a file another library reads (a keytab),
/// this is the whole check.
pub fn open_regular_file(
    path: &Path,
    what: &str,
    cap: u64,
) -> Result<(std::fs::File, std::fs::Metadata), Error> {
    let cannot = |e: std::io::Error| {
        Error::usage(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(Error::usage(format!(
            "the {what} file {} is not a regular file (a FIFO, device or directory is \
             refused)",
            path.display()
        )));
    }
    if meta.len() > cap {
        return Err(too_large(path, what, cap, meta.len()));
    }
    Ok((file, meta))
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
    match read_line_bounded(&mut std::io::stdin().lock(), STDIN_LINE_CAP) {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err(Error::usage(format!(
            "standard input ended before the {what} was given"
        ))),
        Err(LineError::TooLong) => Err(Error::usage(format!(
            "the {what} line on standard input is longer than {STDIN_LINE_CAP} bytes; \
             nothing was sent to the card"
        ))),
        Err(LineError::Io(e)) => Err(Error::usage(format!(
            "cannot read the {what} from standard input: {e}"
        ))),
    }
}

/// Why [`read_line_bounded`] gave no line.
#[derive(Debug)]
pub enum LineError {
    /// More than the cap before a line end.
    TooLong,
    Io(std::io::Error),
}

/// One line of `input`, its line end ("\n" or "\r\n") dropped, read into one zeroizing
/// buffer allocated once: at most `cap` bytes are kept, whatever `input` holds (stdin from
/// /dev/zero is refused after `cap` bytes, not read until memory runs out). `None` when
/// the input ends before anything was read; a last line without a line end counts.
pub fn read_line_bounded(
    input: &mut dyn BufRead,
    cap: usize,
) -> Result<Option<Zeroizing<Vec<u8>>>, LineError> {
    let mut line = Zeroizing::new(Vec::with_capacity(cap));
    let mut any = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if buf.is_empty() {
            break;
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        if line.len() + chunk.len() > cap {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = chunk.len();
        input.consume(used);
        if done {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    let keep = strip_line_end(&line).len();
    line.truncate(keep);
    Ok(Some(line))
}

/// Drop one trailing "\n" or "\r\n": what a file or `echo` adds.
pub fn strip_line_end(bytes: &[u8]) -> &[u8] {
    let b = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    b.strip_suffix(b"\r").unwrap_or(b)
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
        assert_eq!(format!("{tok:?}"), "Token(REDACTED)");
    }

    #[test]
    fn reads_a_bounded_line() {
        let mut r = std::io::Cursor::new(b"1234\r\nrest".to_vec());
        assert_eq!(
            &read_line_bounded(&mut r, 16).unwrap().unwrap()[..],
            b"1234"
        );
        assert_eq!(
            &read_line_bounded(&mut r, 16).unwrap().unwrap()[..],
            b"rest"
        );
        assert!(read_line_bounded(&mut r, 16).unwrap().is_none());
        let mut zeros = std::io::BufReader::new(std::io::repeat(0));
        assert!(matches!(
            read_line_bounded(&mut zeros, 4096),
            Err(LineError::TooLong)
        ));
        let mut exact = std::io::Cursor::new(b"12345678\n".to_vec());
        assert!(read_line_bounded(&mut exact, 9).unwrap().is_some());
        let mut over = std::io::Cursor::new(b"123456789\n".to_vec());
        assert!(read_line_bounded(&mut over, 9).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_devices_and_directories() {
        for p in ["/dev/zero", "/dev/null", "/"] {
            let e = read_public_file(Path::new(p), "CA", CERT_FILE_CAP).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{p}");
            assert!(e.to_string().contains("not a regular file"), "{p}: {e}");
        }
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
        use crate::testing::{chmod, file_with_mode};
        let (_dir, p) = file_with_mode("key", "00", 0o644);
        let err = read(&Source::File(&p), "admin key", false).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(read(&Source::File(&p), "admin key", true).is_ok());
        chmod(&p, 0o600);
        assert_eq!(
            &read(&Source::File(&p), "admin key", false).unwrap()[..],
            b"00"
        );
    }
}
