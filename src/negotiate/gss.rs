//! Negotiate tokens from GSSAPI (MIT Kerberos or Heimdal) with the SPNEGO
//! mechanism, through the library loaded on the first sign-in ([`gssapi`]).
//!
//! Credentials: the default ticket cache (after `kinit`; MIT also falls back
//! to the default client keytab, KRB5_CLIENT_KTNAME), or with `--keytab` the
//! keytab's first principal, whose tickets go to a private in-memory cache
//! (`gss_acquire_cred_from` with `client_keytab` and `ccache`, MIT 1.11+):
//! the user's own ticket cache is neither read nor overwritten.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::gssapi::{self as sys, Cred, Ctx, Error as GssError, Gssapi, Name};
use super::{Context, Failure, MechError, Provider, Spn};

/// Initiator credentials for SPNEGO.
pub struct Gss {
    api: &'static Gssapi,
    cred: Rc<Cred<'static>>,
}

impl Gss {
    /// Load GSSAPI and acquire the credentials now, so that a missing library
    /// or ticket is reported before the card is touched.
    pub fn acquire(keytab: Option<&Path>) -> Result<Gss, MechError> {
        let api = sys::get().map_err(unavailable)?;
        let cred = match keytab {
            None => {
                // Kerberos first, for its own words ("No Kerberos credentials available
                // (default cache: ...)", an expired ticket); SPNEGO would only say that it
                // cannot find mechanisms to negotiate.
                let krb5 = api.acquire_cred(sys::MECH_KRB5, None).map_err(classify)?;
                krb5.lifetime().map_err(classify)?;
                api.acquire_cred(sys::MECH_SPNEGO, None)
            }
            Some(kt) => acquire_from_keytab(api, kt),
        }
        .map_err(classify)?;
        Ok(Gss {
            api,
            cred: Rc::new(cred),
        })
    }
}

impl Provider for Gss {
    fn principal(&self) -> Option<String> {
        let name = self.cred.name().ok()?;
        let shown = name.display();
        Some(shown.unwrap_or_else(|_| "<name can't be displayed>".into()))
    }

    fn context(&self, spn: &Spn, bindings: Option<Vec<u8>>) -> Result<Box<dyn Context>, MechError> {
        let target = match &spn.realm {
            // A host-based name: MIT maps HTTP@host to HTTP/host@<realm of host>.
            None => self.api.import_name(
                format!("{}@{}", spn.service, spn.host).as_bytes(),
                sys::NT_HOSTBASED_SERVICE,
            ),
            // A full principal, taken as it is.
            Some(_) => self
                .api
                .import_name(spn.to_string().as_bytes(), sys::NT_KRB5_PRINCIPAL),
        }
        .map_err(classify)?;
        Ok(Box::new(GssCtx {
            ctx: Ctx::new(self.api),
            cred: Rc::clone(&self.cred),
            target,
            bindings,
            complete: false,
        }))
    }
}

/// A context with what it needs (fields drop in order: the context before
/// the credentials it uses).
struct GssCtx {
    ctx: Ctx<'static>,
    cred: Rc<Cred<'static>>,
    target: Name<'static>,
    bindings: Option<Vec<u8>>,
    complete: bool,
}

impl Context for GssCtx {
    fn step(&mut self, input: Option<&[u8]>) -> Result<Option<Vec<u8>>, MechError> {
        if self.complete {
            return Ok(None);
        }
        let step = self.ctx.init(
            &self.cred,
            &self.target,
            sys::MECH_SPNEGO,
            sys::GSS_C_MUTUAL_FLAG,
            self.bindings.as_deref(),
            input,
        );
        match step {
            Ok((token, more)) => {
                self.complete = !more;
                Ok((more || !token.is_empty()).then_some(token))
            }
            // A failure on the server's token: it did not verify.
            Err(e) if input.is_some() => {
                let mut m = classify(e);
                if m.failure == Failure::Other {
                    m.failure = Failure::BadServerToken;
                }
                Err(m)
            }
            Err(e) => Err(classify(e)),
        }
    }

    fn is_complete(&self) -> bool {
        self.complete
    }
}

/// No GSSAPI library: the message says which one to install (exit 6).
fn unavailable(detail: String) -> MechError {
    MechError {
        failure: Failure::Other,
        detail,
    }
}

/// `gss_acquire_cred_from` with `client_keytab` and a private memory ccache.
/// Kerberos first, so that its own error (KDC unreachable, unknown client ...)
/// reaches the user: SPNEGO reports any of them as "cannot find mechanisms to
/// negotiate". The SPNEGO credentials then find the ticket in the same memory
/// cache. Apple's GSS framework has no client keytab (GSS_S_UNAVAILABLE):
/// `kinit -k -t KEYTAB` first.
fn acquire_from_keytab(api: &'static Gssapi, keytab: &Path) -> Result<Cred<'static>, GssError> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let bad_name = |_| api.error(sys::GSS_S_BAD_NAME, 0);
    let mut kt_name = b"FILE:".to_vec();
    kt_name.extend_from_slice(keytab.as_os_str().as_bytes());
    let kt_name = CString::new(kt_name).map_err(bad_name)?;
    let ccache = CString::new(format!(
        "MEMORY:scunblock-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
    .map_err(bad_name)?;
    let store = [
        (c"client_keytab", kt_name.as_c_str()),
        (c"ccache", ccache.as_c_str()),
    ];
    drop(api.acquire_cred(sys::MECH_KRB5, Some(&store))?);
    api.acquire_cred(sys::MECH_SPNEGO, Some(&store))
}

/// The routine error field of a major status (a number, not flags).
fn routine(e: &GssError) -> u32 {
    e.major & sys::ROUTINE_ERROR_MASK
}

/// GSSAPI's words for an error: "MAJOR (MINOR)", or only the minor status
/// when the major one is generic ("Unspecified GSS failure.  Minor code may
/// provide more information", "No credentials were supplied ...").
fn detail(e: &GssError) -> String {
    let mut full = e.to_string().trim().replace('\n', " ");
    if let Some(major) = full.strip_suffix(" (Success)") {
        full = major.to_string();
    }
    let generic = [sys::GSS_S_FAILURE, sys::GSS_S_NO_CRED].contains(&routine(e));
    if generic && full.ends_with(')') {
        if let Some(open) = full.find(" (") {
            let minor = full[open + 2..full.len() - 1].trim();
            if !minor.is_empty() && !minor.starts_with("Unknown") {
                return minor.to_string();
            }
        }
    }
    full
}

/// Sort a GSSAPI error into what the user can act on; keep GSSAPI's words.
fn classify(e: GssError) -> MechError {
    let detail = detail(&e);
    let text = detail.to_ascii_lowercase();
    let failure = if text.contains("server") && text.contains("not found in kerberos database") {
        Failure::UnknownSpn
    } else if text.contains("cannot contact any kdc")
        || text.contains("cannot find kdc")
        || text.contains("cannot resolve network address for kdc")
        || text.contains("unable to reach any kdc")
    {
        Failure::KdcUnreachable
    } else if routine(&e) == sys::GSS_S_CREDENTIALS_EXPIRED
        || text.contains("ticket expired")
        || text.contains("credentials have expired")
    {
        Failure::Expired
    } else if routine(&e) == sys::GSS_S_NO_CRED
        || text.contains("no kerberos credentials available")
        || text.contains("no credentials cache found")
    {
        Failure::NoCredentials
    } else {
        Failure::Other
    };
    MechError { failure, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_gssapi_words() {
        let kdc = "Unspecified GSS failure.  Minor code may provide more information (Cannot \
                   contact any KDC for realm 'R')";
        let expired = "The referenced credential has expired (Unknown error)";
        let unavailable = "The operation or option is not available or unsupported (Unknown error)";
        // (major status, GSSAPI's words, class, the detail shown)
        let cases = [
            (
                sys::GSS_S_NO_CRED,
                "No credentials were supplied, or the credentials were unavailable or \
                 inaccessible (No Kerberos credentials available (default cache: FILE:/tmp/cc))",
                Failure::NoCredentials,
                "No Kerberos credentials available (default cache: FILE:/tmp/cc)",
            ),
            (
                sys::GSS_S_FAILURE,
                "Unspecified GSS failure.  Minor code may provide more information (Server \
                 HTTP/x@R not found in Kerberos database)",
                Failure::UnknownSpn,
                "Server HTTP/x@R not found in Kerberos database",
            ),
            (
                sys::GSS_S_CREDENTIALS_EXPIRED,
                expired,
                Failure::Expired,
                expired,
            ),
            (
                sys::GSS_S_FAILURE,
                kdc,
                Failure::KdcUnreachable,
                "Cannot contact any KDC for realm 'R'",
            ),
            (
                sys::GSS_S_UNAVAILABLE,
                unavailable,
                Failure::Other,
                unavailable,
            ),
        ];
        for (major, text, failure, detail) in cases {
            let m = classify(GssError {
                major,
                text: text.into(),
            });
            assert_eq!(m.failure, failure, "{text}");
            assert_eq!(m.detail, detail, "{text}");
        }
    }

    #[test]
    fn a_missing_library_exits_6_saying_what_to_install() {
        let Err(detail) = sys::load(&["libscunblock-no-such-gssapi.so.9"]) else {
            panic!("a library that does not exist loaded");
        };
        let e = super::super::failure_message(unavailable(detail), &Spn::for_host("cm.test"), None);
        assert_eq!(e.exit_code(), 6);
        let text = e.to_string();
        assert!(
            text.contains("Negotiate sign-in to CM as HTTP/cm.test failed"),
            "{text}"
        );
        assert!(text.contains("install it"), "{text}");
    }
}
