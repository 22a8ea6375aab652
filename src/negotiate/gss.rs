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
use libgssapi::oid::{OidSet, GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL};

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
                let mut mechs = OidSet::new();
                mechs.add(GSS_MECH_SPNEGO).map_err(classify)?;
                Cred::acquire(None, None, CredUsage::Initiate, Some(&mechs))
            }
            Some(kt) => acquire_from_keytab(kt),
        }
        .map_err(classify)?;
        // MIT acquires lazily: a cache without a usable TGT fails here only
        // when asked for the lifetime.
        if keytab.is_none() {
            if let Err(e) = cred.lifetime() {
                return Err(classify(e));
            }
        }
        Ok(Gss { cred })
    }
}

impl Provider for Gss {
    fn principal(&self) -> Option<String> {
        self.cred.name().ok().map(|n| n.to_string())
    }

    fn context(
        &self,
        spn: &Spn,
        bindings: Option<Vec<u8>>,
    ) -> Result<Box<dyn Context>, MechError> {
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
/// (not in the `libgssapi` crate's safe API).
#[cfg(not(target_os = "macos"))]
fn acquire_from_keytab(keytab: &Path) -> Result<Cred, GssError> {
    use libgssapi_sys as sys;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::ptr;
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
    let mut elements = [
        sys::gss_key_value_element_desc {
            key: c"client_keytab".as_ptr(),
            value: kt_name.as_ptr(),
        },
        sys::gss_key_value_element_desc {
            key: c"ccache".as_ptr(),
            value: ccache.as_ptr(),
        },
    ];
    let store = sys::gss_key_value_set_desc {
        count: elements.len() as u32,
        elements: elements.as_mut_ptr(),
    };
    // The SPNEGO OID, 1.3.6.1.5.5.2.
    let mut spnego_oid = *b"\x2b\x06\x01\x05\x05\x02";
    let mut spnego = sys::gss_OID_desc {
        length: spnego_oid.len() as u32,
        elements: spnego_oid.as_mut_ptr().cast(),
    };
    let mut mechs = sys::gss_OID_set_desc {
        count: 1,
        elements: &mut spnego,
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

/// Sort a GSSAPI error into what the user can act on; keep GSSAPI's words.
fn classify(e: GssError) -> MechError {
    let detail = e.to_string().trim().replace('\n', " ");
    let text = detail.to_ascii_lowercase();
    let failure = if text.contains("server") && text.contains("not found in kerberos database") {
        Failure::UnknownSpn
    } else if text.contains("cannot contact any kdc")
        || text.contains("cannot find kdc")
        || text.contains("cannot resolve network address for kdc")
        || text.contains("unable to reach any kdc")
    {
        Failure::KdcUnreachable
    } else if e.major.contains(MajorFlags::GSS_S_CREDENTIALS_EXPIRED)
        || text.contains("ticket expired")
        || text.contains("credentials have expired")
    {
        Failure::Expired
    } else if e.major.contains(MajorFlags::GSS_S_NO_CRED)
        || text.contains("no kerberos credentials available")
        || text.contains("no credentials cache found")
    {
        Failure::NoCredentials
    } else {
        Failure::Other
    };
    MechError { failure, detail }
}
