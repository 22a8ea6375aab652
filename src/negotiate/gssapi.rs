//! The few GSSAPI calls of the Negotiate initiator, from the system's library
//! loaded (`dlopen`) on the first Negotiate sign-in: a run that never signs in
//! with Negotiate does not load MIT Kerberos and its six libraries (0.7 ms and
//! 0.9 MiB per run, docs/performance.md), and the build needs no Kerberos headers.
//!
//! The declarations follow MIT's <gssapi/gssapi.h> and <gssapi/gssapi_ext.h>
//! (RFC 2744); Heimdal's agree. Apple's GSS framework packs the structures to
//! 2 bytes on x86_64 (`#pragma pack(push,2)`, not on arm64): the `repr`s follow.
//! The library is never unloaded: Kerberos registers atexit and thread-exit
//! handlers that point into it.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::null_mut;
use std::sync::OnceLock;
use std::{fmt, slice};

use libloading::Library;

type OM_uint32 = u32;
type gss_name_t = *mut c_void;
type gss_cred_id_t = *mut c_void;
type gss_ctx_id_t = *mut c_void;
type gss_OID = *mut gss_OID_desc;
type gss_OID_set = *mut gss_OID_set_desc;
type gss_buffer_t = *mut gss_buffer_desc;

/// The structures of gssapi.h: `repr(C)`, packed to 2 bytes where Apple's are.
macro_rules! structs {
    ($($name:ident { $($field:ident: $ty:ty),* })*) => {$(
        #[repr(C)]
        #[cfg_attr(all(target_os = "macos", target_arch = "x86_64"), repr(packed(2)))]
        #[derive(Clone, Copy)]
        struct $name { $($field: $ty),* }
    )*};
}

structs! {
    gss_buffer_desc { length: usize, value: *mut c_void }
    gss_OID_desc { length: OM_uint32, elements: *mut c_void }
    gss_OID_set_desc { count: usize, elements: gss_OID }
    gss_channel_bindings_struct {
        initiator_addrtype: OM_uint32, initiator_address: gss_buffer_desc,
        acceptor_addrtype: OM_uint32, acceptor_address: gss_buffer_desc,
        application_data: gss_buffer_desc
    }
}

/// gssapi_ext.h (MIT; unused on macOS).
#[repr(C)]
struct gss_key_value_element_desc {
    key: *const c_char,
    value: *const c_char,
}

#[repr(C)]
struct gss_key_value_set_desc {
    count: OM_uint32,
    elements: *mut gss_key_value_element_desc,
}

const GSS_S_CONTINUE_NEEDED: u32 = 1;
pub const GSS_S_BAD_NAME: u32 = 2 << 16;
pub const GSS_S_NO_CRED: u32 = 7 << 16;
pub const GSS_S_CREDENTIALS_EXPIRED: u32 = 11 << 16;
pub const GSS_S_FAILURE: u32 = 13 << 16;
pub const GSS_S_UNAVAILABLE: u32 = 16 << 16;
/// The routine error field of a major status (a number, not flags).
pub const ROUTINE_ERROR_MASK: u32 = 0x00ff_0000;
/// The calling and routine error fields (GSS_ERROR).
const ERROR_MASK: u32 = 0xffff_0000;
const GSS_C_INDEFINITE: u32 = u32::MAX;
const GSS_C_INITIATE: c_int = 1;
pub const GSS_C_MUTUAL_FLAG: u32 = 2;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;
const EMPTY: gss_buffer_desc = gss_buffer_desc {
    length: 0,
    value: null_mut(),
};

/// An object identifier: its DER encoding without tag and length.
#[derive(Clone, Copy)]
pub struct Oid(&'static [u8]);

/// Kerberos V5, 1.2.840.113554.1.2.2.
pub const MECH_KRB5: Oid = Oid(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02");
/// SPNEGO, 1.3.6.1.5.5.2.
pub const MECH_SPNEGO: Oid = Oid(b"\x2b\x06\x01\x05\x05\x02");
/// GSS_C_NT_HOSTBASED_SERVICE (`service@host`), 1.2.840.113554.1.2.1.4.
pub const NT_HOSTBASED_SERVICE: Oid = Oid(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x01\x04");
/// GSS_KRB5_NT_PRINCIPAL_NAME (`service/host@REALM`), 1.2.840.113554.1.2.2.1.
pub const NT_KRB5_PRINCIPAL: Oid = Oid(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01");

impl Oid {
    /// The C descriptor (`gss_OID` is mutable in the prototypes, never written).
    fn desc(self) -> gss_OID_desc {
        gss_OID_desc {
            length: self.0.len() as OM_uint32,
            elements: self.0.as_ptr().cast_mut().cast(),
        }
    }
}

/// A buffer the library only reads.
fn borrowed(bytes: &[u8]) -> gss_buffer_desc {
    gss_buffer_desc {
        length: bytes.len(),
        value: bytes.as_ptr().cast_mut().cast(),
    }
}

/// The libraries tried, in order.
#[cfg(not(target_os = "macos"))]
const LIBRARIES: &[&str] = &["libgssapi_krb5.so.2", "libgssapi.so.3"];
#[cfg(target_os = "macos")]
const LIBRARIES: &[&str] = &["/System/Library/Frameworks/GSS.framework/GSS"];

#[cfg(not(target_os = "macos"))]
const NEEDED: &str = "Negotiate needs MIT Kerberos' libgssapi_krb5.so.2 (Debian/Ubuntu package \
                      libgssapi-krb5-2, RHEL krb5-libs) or Heimdal's libgssapi.so.3";
#[cfg(target_os = "macos")]
const NEEDED: &str = "Negotiate needs the GSS framework of macOS";

/// A failed call: its major status and GSSAPI's words.
#[derive(Clone, Debug)]
pub struct Error {
    pub major: u32,
    /// "MAJOR (MINOR)", from gss_display_status.
    pub text: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `Gssapi`, a field per function (named as in C, with its prototype, all
/// returning the major status), and `open`, which finds them in a library.
macro_rules! functions {
    (optional $opt:ident($($oarg:ty),*); $($name:ident($($arg:ty),*);)*) => {
        /// The loaded library's functions.
        pub struct Gssapi {
            $opt: Option<unsafe extern "C" fn($($oarg),*) -> OM_uint32>,
            $($name: unsafe extern "C" fn($($arg),*) -> OM_uint32,)*
            /// Keeps the functions valid; never dropped (it lives in a static).
            _lib: Library,
        }

        /// # Safety
        /// Loading a library runs its initialisers.
        unsafe fn open(name: &str) -> Result<Gssapi, libloading::Error> {
            // SAFETY: the caller's.
            let lib = unsafe { Library::new(name)? };
            // SAFETY: each field's type is its function's prototype in the headers; the
            // pointers stay valid as long as `_lib`.
            unsafe {
                Ok(Gssapi {
                    // Not on macOS: Apple has none (and packs the structures).
                    $opt: match cfg!(target_os = "macos") {
                        true => None,
                        false => sym(&lib, stringify!($opt)).ok(),
                    },
                    $($name: sym(&lib, stringify!($name))?,)*
                    _lib: lib,
                })
            }
        }
    };
}

functions! {
    // gssapi_ext.h, MIT 1.11+ (the credential store: --keytab).
    optional gss_acquire_cred_from(*mut u32, gss_name_t, u32, gss_OID_set, c_int,
        *const gss_key_value_set_desc, *mut gss_cred_id_t, *mut gss_OID_set, *mut u32);
    gss_acquire_cred(*mut u32, gss_name_t, u32, gss_OID_set, c_int, *mut gss_cred_id_t,
        *mut gss_OID_set, *mut u32);
    gss_inquire_cred(*mut u32, gss_cred_id_t, *mut gss_name_t, *mut u32, *mut c_int,
        *mut gss_OID_set);
    gss_display_name(*mut u32, gss_name_t, gss_buffer_t, *mut gss_OID);
    gss_import_name(*mut u32, gss_buffer_t, gss_OID, *mut gss_name_t);
    gss_init_sec_context(*mut u32, gss_cred_id_t, *mut gss_ctx_id_t, gss_name_t, gss_OID, u32,
        u32, *mut gss_channel_bindings_struct, gss_buffer_t, *mut gss_OID, gss_buffer_t,
        *mut u32, *mut u32);
    gss_delete_sec_context(*mut u32, *mut gss_ctx_id_t, gss_buffer_t);
    gss_release_cred(*mut u32, *mut gss_cred_id_t);
    gss_release_name(*mut u32, *mut gss_name_t);
    gss_release_buffer(*mut u32, gss_buffer_t);
    gss_display_status(*mut u32, u32, c_int, gss_OID, *mut u32, gss_buffer_t);
}

/// A function of `lib`, copied out of its `Symbol`.
///
/// # Safety
/// `T` must be the function's type; the copy is valid while `lib` is loaded.
unsafe fn sym<T: Copy>(lib: &Library, name: &str) -> Result<T, libloading::Error> {
    // SAFETY: the caller's.
    Ok(*unsafe { lib.get::<T>(name.as_bytes()) }?)
}

/// The library, loaded on first use, once per process; `Err` says what to do.
pub fn get() -> Result<&'static Gssapi, String> {
    static GSSAPI: OnceLock<Result<Gssapi, String>> = OnceLock::new();
    GSSAPI
        .get_or_init(|| load(LIBRARIES))
        .as_ref()
        .map_err(Clone::clone)
}

/// The first of `names` that loads with every function.
pub fn load(names: &[&str]) -> Result<Gssapi, String> {
    let mut why = Vec::new();
    for name in names {
        // SAFETY: MIT's, Heimdal's and Apple's initialisers may run at any time.
        match unsafe { open(name) } {
            Ok(api) => return Ok(api),
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(format!(
        "{NEEDED}, and none could be loaded ({}): install it, or sign in to CM another way: \
         --cm-auth bearer (with --cm-token-env or --cm-token-file) or --cm-auth none",
        why.join("; ")
    ))
}

impl Gssapi {
    /// Run `f` with a minor status out-pointer: `Err` with GSSAPI's words if the
    /// major status it returns is an error, else that status.
    fn call(&self, f: impl FnOnce(&mut u32) -> u32) -> Result<u32, Error> {
        let mut minor = 0;
        match f(&mut minor) {
            major if major & ERROR_MASK != 0 => Err(self.error(major, minor)),
            major => Ok(major),
        }
    }

    /// An error with GSSAPI's words, "MAJOR (MINOR)" as the `libgssapi` crate wrote them.
    pub fn error(&self, major: u32, minor: u32) -> Error {
        let mut text = String::new();
        for (code, kind, which) in [
            (major, GSS_C_GSS_CODE, "Major"),
            (minor, GSS_C_MECH_CODE, "Minor"),
        ] {
            let mut more = 0;
            // At most 8 messages (a code has one or two): a bound for a confused library.
            for _ in 0..8 {
                let mut buf = Buffer(EMPTY, self);
                // SAFETY: out-pointers to locals; `buf` releases what it receives.
                let major = unsafe {
                    let b = &mut buf.0;
                    (self.gss_display_status)(&mut 0, code, kind, null_mut(), &mut more, b)
                };
                if major & ERROR_MASK != 0 {
                    text.push_str(&format!("unknown GSSAPI({which}) error code({code})\n"));
                    break;
                }
                let words = String::from_utf8_lossy(buf.bytes());
                match kind {
                    GSS_C_GSS_CODE => text.push_str(&words),
                    _ => text.push_str(&format!(" ({words})")),
                }
                if more == 0 {
                    break;
                }
            }
        }
        Error { major, text }
    }

    /// Initiator credentials for `mech`: the default ones, or from a credential
    /// store (GSS_S_UNAVAILABLE where the library has no `gss_acquire_cred_from`).
    pub fn acquire_cred(
        &self,
        mech: Oid,
        store: Option<&[(&CStr, &CStr)]>,
    ) -> Result<Cred<'_>, Error> {
        let mut oid = mech.desc();
        let mut mechs = gss_OID_set_desc {
            count: 1,
            elements: &mut oid,
        };
        let mut cred = Cred(self, null_mut());
        let out = &mut cred.1;
        match store {
            // SAFETY: `mechs` and its OID outlive the call; `cred` releases what it receives.
            None => self.call(|m| unsafe {
                (self.gss_acquire_cred)(
                    m,
                    null_mut(),
                    GSS_C_INDEFINITE,
                    &mut mechs,
                    GSS_C_INITIATE,
                    out,
                    null_mut(),
                    null_mut(),
                )
            }),
            Some(store) => {
                let f = self
                    .gss_acquire_cred_from
                    .ok_or_else(|| self.error(GSS_S_UNAVAILABLE, 0))?;
                let mut elements: Vec<_> = store
                    .iter()
                    .map(|(k, v)| gss_key_value_element_desc {
                        key: k.as_ptr(),
                        value: v.as_ptr(),
                    })
                    .collect();
                let store = gss_key_value_set_desc {
                    count: elements.len() as OM_uint32,
                    elements: elements.as_mut_ptr(),
                };
                // SAFETY: as above, and the store, its elements and strings outlive the call.
                self.call(|m| unsafe {
                    f(
                        m,
                        null_mut(),
                        GSS_C_INDEFINITE,
                        &mut mechs,
                        GSS_C_INITIATE,
                        &store,
                        out,
                        null_mut(),
                        null_mut(),
                    )
                })
            }
        }?;
        Ok(cred)
    }

    /// A name of type `kind`.
    pub fn import_name(&self, text: &[u8], kind: Oid) -> Result<Name<'_>, Error> {
        let (mut buf, mut oid) = (borrowed(text), kind.desc());
        let mut name = Name(self, null_mut());
        // SAFETY: the call only reads `buf` and `oid`; `name` releases what it receives.
        self.call(|m| unsafe { (self.gss_import_name)(m, &mut buf, &mut oid, &mut name.1) })?;
        Ok(name)
    }
}

/// A buffer the library allocated, released on drop.
struct Buffer<'a>(gss_buffer_desc, &'a Gssapi);

impl Buffer<'_> {
    fn bytes(&self) -> &[u8] {
        let gss_buffer_desc { length, value } = self.0;
        if value.is_null() {
            return &[];
        }
        // SAFETY: the library filled `length` bytes at `value`, alive until released.
        unsafe { slice::from_raw_parts(value.cast(), length) }
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        if !self.0.value.is_null() {
            // SAFETY: a buffer the library allocated, released once.
            unsafe { (self.1.gss_release_buffer)(&mut 0, &mut self.0) };
        }
    }
}

/// Credentials, released on drop.
pub struct Cred<'a>(&'a Gssapi, gss_cred_id_t);

impl Cred<'_> {
    /// Seconds the credentials stay valid (GSS_S_CREDENTIALS_EXPIRED if they do not).
    pub fn lifetime(&self) -> Result<u32, Error> {
        let mut lifetime = 0;
        // SAFETY: a valid handle; the one out-pointer asked for is a local.
        self.0.call(|m| unsafe {
            (self.0.gss_inquire_cred)(m, self.1, null_mut(), &mut lifetime, null_mut(), null_mut())
        })?;
        Ok(lifetime)
    }

    /// Whose credentials they are.
    pub fn name(&self) -> Result<Name<'_>, Error> {
        let mut name = Name(self.0, null_mut());
        // SAFETY: a valid handle; `name` releases what it receives.
        self.0.call(|m| unsafe {
            (self.0.gss_inquire_cred)(m, self.1, &mut name.1, null_mut(), null_mut(), null_mut())
        })?;
        Ok(name)
    }
}

impl Drop for Cred<'_> {
    fn drop(&mut self) {
        if !self.1.is_null() {
            // SAFETY: a handle the library gave, released once.
            unsafe { (self.0.gss_release_cred)(&mut 0, &mut self.1) };
        }
    }
}

/// A name, released on drop.
pub struct Name<'a>(&'a Gssapi, gss_name_t);

impl Name<'_> {
    /// The printable form (e.g. `user@REALM`).
    pub fn display(&self) -> Result<String, Error> {
        let mut buf = Buffer(EMPTY, self.0);
        // SAFETY: a valid handle; `buf` releases what it receives; no name type asked.
        self.0
            .call(|m| unsafe { (self.0.gss_display_name)(m, self.1, &mut buf.0, null_mut()) })?;
        Ok(String::from_utf8_lossy(buf.bytes()).into_owned())
    }
}

impl Drop for Name<'_> {
    fn drop(&mut self) {
        if !self.1.is_null() {
            // SAFETY: a handle the library gave, released once.
            unsafe { (self.0.gss_release_name)(&mut 0, &mut self.1) };
        }
    }
}

/// An initiator's security context, deleted on drop.
pub struct Ctx<'a>(&'a Gssapi, gss_ctx_id_t);

impl<'a> Ctx<'a> {
    pub fn new(api: &'a Gssapi) -> Self {
        Ctx(api, null_mut())
    }

    /// One gss_init_sec_context call: the token to send (maybe empty), and whether
    /// the mechanism wants another server token (GSS_S_CONTINUE_NEEDED).
    /// `bindings`: the application data of the channel bindings.
    pub fn init(
        &mut self,
        cred: &Cred,
        target: &Name,
        mech: Oid,
        flags: u32,
        bindings: Option<&[u8]>,
        input: Option<&[u8]>,
    ) -> Result<(Vec<u8>, bool), Error> {
        let mut cb = gss_channel_bindings_struct {
            initiator_addrtype: 0,
            initiator_address: EMPTY,
            acceptor_addrtype: 0,
            acceptor_address: EMPTY,
            application_data: borrowed(bindings.unwrap_or_default()),
        };
        let cb: *mut _ = if bindings.is_some() {
            &mut cb
        } else {
            null_mut()
        };
        let mut input = input.map(borrowed);
        let input = input.as_mut().map_or(null_mut(), |b| b as gss_buffer_t);
        let mut oid = mech.desc();
        let mut out = Buffer(EMPTY, self.0);
        let (ctx, out_ptr) = (&mut self.1, &mut out.0);
        // SAFETY: valid handles; the call only reads the bindings, input token and OID,
        // all alive; it creates or continues `ctx` (deleted on drop); `out` releases what
        // it receives.
        let major = self.0.call(|m| unsafe {
            (self.0.gss_init_sec_context)(
                m,
                cred.1,
                ctx,
                target.1,
                &mut oid,
                flags,
                GSS_C_INDEFINITE,
                cb,
                input,
                null_mut(),
                out_ptr,
                null_mut(),
                null_mut(),
            )
        })?;
        Ok((out.bytes().to_vec(), major & GSS_S_CONTINUE_NEEDED != 0))
    }
}

impl Drop for Ctx<'_> {
    fn drop(&mut self) {
        if !self.1.is_null() {
            // SAFETY: a context the library created, deleted once; no output token.
            unsafe { (self.0.gss_delete_sec_context)(&mut 0, &mut self.1, null_mut()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The DER content octets of a dotted OID.
    fn der(dotted: &str) -> Vec<u8> {
        let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
        let mut out = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &arc in &arcs[2..] {
            let mut septets = vec![(arc & 0x7f) as u8];
            let mut rest = arc >> 7;
            while rest > 0 {
                septets.push((rest & 0x7f) as u8 | 0x80);
                rest >>= 7;
            }
            out.extend(septets.iter().rev());
        }
        out
    }

    #[test]
    fn oids() {
        assert_eq!(MECH_KRB5.0, der("1.2.840.113554.1.2.2"));
        assert_eq!(MECH_SPNEGO.0, der("1.3.6.1.5.5.2"));
        assert_eq!(NT_HOSTBASED_SERVICE.0, der("1.2.840.113554.1.2.1.4"));
        assert_eq!(NT_KRB5_PRINCIPAL.0, der("1.2.840.113554.1.2.2.1"));
    }

    /// As gcc lays out MIT's gssapi.h and gssapi_ext.h (sizeof, offsetof).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn layouts_match_the_headers() {
        assert_eq!(size_of::<gss_buffer_desc>(), 16);
        assert_eq!(offset_of!(gss_buffer_desc, value), 8);
        assert_eq!(size_of::<gss_OID_desc>(), 16);
        assert_eq!(offset_of!(gss_OID_desc, elements), 8);
        assert_eq!(size_of::<gss_OID_set_desc>(), 16);
        assert_eq!(size_of::<gss_channel_bindings_struct>(), 64);
        assert_eq!(
            offset_of!(gss_channel_bindings_struct, acceptor_addrtype),
            24
        );
        assert_eq!(
            offset_of!(gss_channel_bindings_struct, application_data),
            48
        );
        assert_eq!(size_of::<gss_key_value_set_desc>(), 16);
        assert_eq!(offset_of!(gss_key_value_set_desc, elements), 8);
    }

    /// Apple's pack(2) on x86_64.
    #[cfg(all(target_os = "macos", target_arch = "x86_64"))]
    #[test]
    fn layouts_match_apples_packed_headers() {
        assert_eq!(size_of::<gss_OID_desc>(), 12);
        assert_eq!(size_of::<gss_channel_bindings_struct>(), 56);
        assert_eq!(
            offset_of!(gss_channel_bindings_struct, application_data),
            40
        );
    }

    #[test]
    fn a_missing_library_says_what_to_install() {
        let Err(e) = load(&["libscunblock-no-such.so.9", "libscunblock-nor-this.so.1"]) else {
            panic!("a library that does not exist loaded");
        };
        for want in [
            NEEDED,
            "(libscunblock-no-such.so.9: ",
            "; libscunblock-nor-this.so.1: ",
        ] {
            assert!(e.contains(want), "{want:?} not in {e}");
        }
    }

    /// With the system's library (skipped, saying so, where it is not installed; a failure
    /// in CI or under scripts/test: `crate::all_tests_required`).
    #[test]
    fn names_and_words_from_the_system_library() {
        let api = match get() {
            Ok(api) => api,
            Err(e) if crate::all_tests_required() => panic!("no GSSAPI library: {e}"),
            Err(e) => return eprintln!("SKIPPED (no GSSAPI library): {e}"),
        };
        let name = api
            .import_name(b"HTTP@cm.example", NT_HOSTBASED_SERVICE)
            .unwrap();
        assert_eq!(name.display().unwrap(), "HTTP@cm.example");
        let e = api.error(GSS_S_NO_CRED, 0);
        assert!(e.text.starts_with("No credentials were supplied"), "{e}");
        assert!(!e.text.contains("unknown GSSAPI"), "{e}");
    }
}
