//! Negotiate tokens from GSSAPI (MIT Kerberos or Heimdal) with the SPNEGO
//! mechanism, through the `libgssapi` crate.
//!
//! Credentials: the default ticket cache (after `kinit`; MIT also falls back
//! to the default client keytab, KRB5_CLIENT_KTNAME), or with `--keytab` the
//! keytab's first principal, whose tickets go to a private in-memory cache
//! (`gss_acquire_cred_from` with `client_keytab` and `ccache`, MIT 1.11+):
//! the user's own ticket cache is neither read nor overwritten.

use std::path::Path;

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::error::{Error as GssError, MajorFlags};
use libgssapi::name::Name;
use libgssapi::oid::{
    OidSet, GSS_MECH_KRB5, GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL,
};

use super::{Context, Failure, MechError, Provider, Spn};

/// Initiator credentials for SPNEGO.
pub struct Gss {
    cred: Cred,
}

impl Gss {
    /// Acquire the credentials now, so that a missing ticket is reported
    /// before the card is touched.
    pub fn acquire(keytab: Option<&Path>) -> Result<Gss, MechError> {
        let cred = match keytab {
            None => {
                // Kerberos first, for its own words ("No Kerberos credentials available
                // (default cache: ...)", an expired ticket); SPNEGO would only say that it
                // cannot find mechanisms to negotiate.
                let krb5 = Cred::acquire(
                    None,
                    None,
                    CredUsage::Initiate,
                    Some(&oid_set(GSS_MECH_KRB5)?),
                )
                .map_err(classify)?;
                if let Err(e) = krb5.lifetime() {
                    return Err(classify(e));
                }
                Cred::acquire(
                    None,
                    None,
                    CredUsage::Initiate,
                    Some(&oid_set(GSS_MECH_SPNEGO)?),
                )
            }
            Some(kt) => acquire_from_keytab(kt),
        }
        .map_err(classify)?;
        Ok(Gss { cred })
    }
}

fn oid_set(oid: libgssapi::oid::Oid<'static>) -> Result<OidSet, MechError> {
    let mut set = OidSet::new();
    set.add(oid).map_err(classify)?;
    Ok(set)
}

impl Provider for Gss {
    fn principal(&self) -> Option<String> {
        self.cred.name().ok().map(|n| n.to_string())
    }

    fn context(&self, spn: &Spn, bindings: Option<Vec<u8>>) -> Result<Box<dyn Context>, MechError> {
        let name = match &spn.realm {
            // A host-based name: MIT maps HTTP@host to HTTP/host@<realm of host>.
            None => Name::new(
                format!("{}@{}", spn.service, spn.host).as_bytes(),
                Some(GSS_NT_HOSTBASED_SERVICE),
            ),
            // A full principal, taken as it is.
            Some(_) => Name::new(spn.to_string().as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)),
        }
        .map_err(classify)?;
        Ok(Box::new(GssCtx {
            ctx: ClientCtx::new(
                Some(self.cred.clone()),
                name,
                CtxFlags::GSS_C_MUTUAL_FLAG,
                Some(GSS_MECH_SPNEGO),
            ),
            bindings,
        }))
    }
}

struct GssCtx {
    ctx: ClientCtx,
    bindings: Option<Vec<u8>>,
}

impl Context for GssCtx {
    fn step(&mut self, input: Option<&[u8]>) -> Result<Option<Vec<u8>>, MechError> {
        let first = input.is_none();
        match self.ctx.step(input, self.bindings.as_deref()) {
            Ok(token) => Ok(token.map(|t| t.to_vec())),
            Err(e) if !first => {
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
        self.ctx.is_complete()
    }
}

/// `gss_acquire_cred_from` with `client_keytab` and a private memory ccache
/// (not in the `libgssapi` crate's safe API). Kerberos first, so that its
/// own error (KDC unreachable, unknown client ...) reaches the user: SPNEGO
/// reports any of them as "cannot find mechanisms to negotiate". The SPNEGO
/// credentials then find the ticket in the same memory cache.
#[cfg(not(target_os = "macos"))]
fn acquire_from_keytab(keytab: &Path) -> Result<Cred, GssError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicU32, Ordering};

    static SEQ: AtomicU32 = AtomicU32::new(0);
    let bad_name = GssError {
        major: MajorFlags::GSS_S_BAD_NAME,
        minor: 0,
    };
    let mut kt_name = b"FILE:".to_vec();
    kt_name.extend_from_slice(keytab.as_os_str().as_bytes());
    let kt_name = CString::new(kt_name).map_err(|_| bad_name)?;
    let ccache = CString::new(format!(
        "MEMORY:scunblock-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
    .map_err(|_| bad_name)?;
    let store = [
        (c"client_keytab", kt_name.as_c_str()),
        (c"ccache", ccache.as_c_str()),
    ];
    // The Kerberos OID 1.2.840.113554.1.2.2, then SPNEGO 1.3.6.1.5.5.2.
    drop(acquire_from(
        &store,
        b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02",
    )?);
    acquire_from(&store, b"\x2b\x06\x01\x05\x05\x02")
}

/// Initiator credentials of one mechanism from a credential store.
#[cfg(not(target_os = "macos"))]
fn acquire_from(
    store: &[(&std::ffi::CStr, &std::ffi::CStr)],
    mech: &[u8],
) -> Result<Cred, GssError> {
    use libgssapi_sys as sys;
    use std::ptr;

    let mut elements: Vec<sys::gss_key_value_element_desc> = store
        .iter()
        .map(|(k, v)| sys::gss_key_value_element_desc {
            key: k.as_ptr(),
            value: v.as_ptr(),
        })
        .collect();
    let store = sys::gss_key_value_set_desc {
        count: elements.len() as u32,
        elements: elements.as_mut_ptr(),
    };
    let mut oid = mech.to_vec();
    let mut oid_desc = sys::gss_OID_desc {
        length: oid.len() as u32,
        elements: oid.as_mut_ptr().cast(),
    };
    let mut mechs = sys::gss_OID_set_desc {
        count: 1,
        elements: &mut oid_desc,
    };
    let mut minor: sys::OM_uint32 = 0;
    let mut cred: sys::gss_cred_id_t = ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the store, its strings and
    // the OID set live until it returns; `cred` receives a new handle that
    // `Cred::from_c` takes ownership of (released on drop).
    let major = unsafe {
        sys::gss_acquire_cred_from(
            &mut minor,
            ptr::null_mut(),
            sys::_GSS_C_INDEFINITE,
            &mut mechs,
            sys::GSS_C_INITIATE as sys::gss_cred_usage_t,
            &store,
            &mut cred,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if major == sys::GSS_S_COMPLETE {
        // SAFETY: a handle just returned by gss_acquire_cred_from.
        Ok(unsafe { Cred::from_c(cred) })
    } else {
        Err(GssError {
            major: MajorFlags::from_bits_retain(major),
            minor,
        })
    }
}

/// Apple's GSS framework has no client keytab: `kinit -k -t KEYTAB` first.
#[cfg(target_os = "macos")]
fn acquire_from_keytab(_keytab: &Path) -> Result<Cred, GssError> {
    Err(GssError {
        major: MajorFlags::GSS_S_UNAVAILABLE,
        minor: 0,
    })
}

/// The routine error field of a major status (a number, not flags).
fn routine(e: &GssError) -> u32 {
    e.major.bits() & 0x00ff_0000
}

/// GSSAPI's words for an error: "MAJOR (MINOR)", or only the minor status
/// when the major one is generic ("Unspecified GSS failure.  Minor code may
/// provide more information", "No credentials were supplied ...").
fn detail(e: &GssError) -> String {
    let mut full = e.to_string().trim().replace('\n', " ");
    if let Some(major) = full.strip_suffix(" (Success)") {
        full = major.to_string();
    }
    let generic = [MajorFlags::GSS_S_FAILURE, MajorFlags::GSS_S_NO_CRED]
        .iter()
        .any(|m| routine(e) == m.bits());
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
    } else if routine(&e) == MajorFlags::GSS_S_CREDENTIALS_EXPIRED.bits()
        || text.contains("ticket expired")
        || text.contains("credentials have expired")
    {
        Failure::Expired
    } else if routine(&e) == MajorFlags::GSS_S_NO_CRED.bits()
        || text.contains("no kerberos credentials available")
        || text.contains("no credentials cache found")
    {
        Failure::NoCredentials
    } else {
        Failure::Other
    };
    MechError { failure, detail }
}
