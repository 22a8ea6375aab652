//! The Negotiate gate: IIS Windows Authentication with Kerberos, verified for real by a GSSAPI
//! acceptor (SPNEGO) with the service keys from `--negotiate-keytab`.
//!
//! Like IIS (authPersistNonNTLM, the default), authentication is per TCP connection: a request
//! without `Authorization` on a connection that is not signed in gets `401` +
//! `WWW-Authenticate: Negotiate`; `Authorization: Negotiate <token>` is fed to the acceptor:
//! a continuation token goes back in a `401`, a complete context signs the connection in and
//! the request is served, with the acceptor's final token (mutual authentication) in
//! `WWW-Authenticate: Negotiate <token>` of the answer. Later requests on that connection need
//! no `Authorization`. A token that does not verify gets a bare `401` challenge.
//!
//! Options: `--negotiate-per-request` signs no connection in (IIS authPersistSingleRequest):
//! every request needs its own handshake. `--negotiate-spn SERVICE/HOST` accepts only tickets for that service (the keytab
//! may hold more); `--negotiate-channel-binding MODE` checks RFC 5929 tls-server-end-point
//! bindings computed from `--tls-cert`: `require` (the client must send matching bindings, as
//! IIS Extended Protection "Require"), `wrong` (the server expects bindings of another
//! certificate, as behind a TLS-intercepting proxy: every sign-in fails).
//!
//! The request log's `info` says what happened: `auth` = `negotiate-missing` (challenged),
//! `negotiate-continue`, `negotiate` (signed in by this request; `user`, `mutual`,
//! `channel_bound`), `negotiate-connection` (served on a signed-in connection; `user`),
//! `negotiate-rejected` (`error` holds the acceptor's message). A request with a first token
//! also has `mech`: `spnego`, `krb5` (a bare Kerberos token, as Wine's SSPI sends) or `other`.

// Without the `negotiate` feature only the option parsing is used.
#![cfg_attr(not(feature = "negotiate"), allow(dead_code))]

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::http::{ConnMeta, Request, Response};

/// `--negotiate-channel-binding`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelBinding {
    Require,
    Wrong,
}

impl ChannelBinding {
    pub fn parse(v: &str) -> Result<ChannelBinding, String> {
        match v {
            "require" => Ok(ChannelBinding::Require),
            "wrong" => Ok(ChannelBinding::Wrong),
            _ => Err(format!(
                "--negotiate-channel-binding {v:?}: expected require or wrong"
            )),
        }
    }
}

/// The Negotiate options of the command line.
#[derive(Clone, Debug)]
pub struct Options {
    pub keytab: PathBuf,
    pub spn: Option<String>,
    pub channel_binding: Option<ChannelBinding>,
    /// `--negotiate-per-request`: no connection stays signed in (IIS
    /// authPersistSingleRequest=true): every request needs a handshake.
    pub per_request: bool,
}

/// What the gate decided for one request.
pub enum Verdict {
    /// Serve the request; add this `WWW-Authenticate` value to the answer, if any.
    Pass(Option<String>),
    /// Answer with this instead.
    Deny(Response),
}

/// RFC 5929 tls-server-end-point application data for a PEM certificate file (first
/// certificate): the hash of the signature algorithm, SHA-256 for MD5/SHA-1.
pub fn end_point_bindings(cert_pem: &Path) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let cert = CertificateDer::pem_file_iter(cert_pem)
        .map_err(|e| format!("{}: {e}", cert_pem.display()))?
        .next()
        .ok_or_else(|| format!("{}: no certificate", cert_pem.display()))?
        .map_err(|e| format!("{}: {e}", cert_pem.display()))?;
    let der: &[u8] = cert.as_ref();
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, ..}, .. }
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (tag, len_byte) = (*b.first()?, *b.get(1)? as usize);
        let (len, start) = if len_byte < 0x80 {
            (len_byte, 2)
        } else {
            let n = len_byte & 0x7f;
            let len = b
                .get(2..2 + n)?
                .iter()
                .fold(0usize, |a, &x| a << 8 | x as usize);
            (len, 2 + n)
        };
        Some((tag, b.get(start..start + len)?, b.get(start + len..)?))
    }
    let bad = || format!("{}: not an X.509 certificate", cert_pem.display());
    let (_, cert_body, _) = tlv(der).ok_or_else(bad)?;
    let (_, _tbs, rest) = tlv(cert_body).ok_or_else(bad)?;
    let (_, alg, _) = tlv(rest).ok_or_else(bad)?;
    let (_, oid, _) = tlv(alg).ok_or_else(bad)?;
    let hash = match oid {
        // ecdsa-with-SHA384, sha384WithRSAEncryption
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]
        | [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c] => &ring::digest::SHA384,
        // ecdsa-with-SHA512, sha512WithRSAEncryption
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04]
        | [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d] => &ring::digest::SHA512,
        // SHA-256 signatures, and SHA-1/MD5 ones (RFC 5929 4.1)
        _ => &ring::digest::SHA256,
    };
    let mut data = b"tls-server-end-point:".to_vec();
    data.extend_from_slice(ring::digest::digest(hash, der).as_ref());
    Ok(data)
}

#[cfg(feature = "negotiate")]
pub use acceptor::Gate;

#[cfg(not(feature = "negotiate"))]
pub struct Gate;

#[cfg(not(feature = "negotiate"))]
impl Gate {
    pub fn new(_o: &Options, _tls_cert: Option<&Path>) -> Result<Gate, String> {
        Err("--negotiate-keytab: this build has no GSSAPI (the `negotiate` feature)".into())
    }
    pub fn check(&self, _r: &Request, _c: &ConnMeta, _i: &mut Map<String, Value>) -> Verdict {
        Verdict::Deny(crate::faults::negotiate_challenge())
    }
}

#[cfg(feature = "negotiate")]
mod acceptor {
    use std::collections::HashMap;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::ptr;
    use std::sync::Mutex;

    use base64::{engine::general_purpose::STANDARD as B64, Engine};
    use libgssapi::context::{SecurityContext, ServerCtx};
    use libgssapi::credential::Cred;
    use libgssapi::error::{Error as GssError, MajorFlags};
    use serde_json::json;

    use super::*;

    /// GSS_C_CHANNEL_BOUND_FLAG (MIT 1.19+): the initiator's bindings matched ours.
    const CHANNEL_BOUND: u32 = 0x800;
    /// Connections remembered at most (a test server: old ones are forgotten in bulk).
    const MAX_CONNS: usize = 4096;

    enum Conn {
        /// A handshake waiting for the client's next token.
        Pending(ServerCtx),
        /// Signed in as this principal.
        SignedIn(String),
    }

    pub struct Gate {
        cred: Cred,
        spn: Option<String>,
        bindings: Option<Vec<u8>>,
        mode: Option<ChannelBinding>,
        per_request: bool,
        conns: Mutex<HashMap<u64, Conn>>,
    }

    impl Gate {
        pub fn new(o: &Options, tls_cert: Option<&Path>) -> Result<Gate, String> {
            let bindings = match (o.channel_binding, tls_cert) {
                (None, _) => None,
                (Some(_), None) => {
                    return Err("--negotiate-channel-binding needs --tls-cert".to_string())
                }
                (Some(ChannelBinding::Require), Some(cert)) => Some(end_point_bindings(cert)?),
                (Some(ChannelBinding::Wrong), Some(_)) => {
                    let mut b = b"tls-server-end-point:".to_vec();
                    b.extend_from_slice(&[0x5a; 32]);
                    Some(b)
                }
            };
            let cred = acquire(&o.keytab)
                .map_err(|e| format!("--negotiate-keytab {}: {e}", o.keytab.display()))?;
            Ok(Gate {
                cred,
                spn: o.spn.clone(),
                bindings,
                mode: o.channel_binding,
                per_request: o.per_request,
                conns: Mutex::new(HashMap::new()),
            })
        }

        pub fn check(
            &self,
            req: &Request,
            conn: &ConnMeta,
            info: &mut Map<String, Value>,
        ) -> Verdict {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            let token = req
                .header("authorization")
                .and_then(|h| h.trim().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("negotiate"))
                .map(|(_, t)| t.trim().to_string());
            let Some(token) = token else {
                if let Some(Conn::SignedIn(user)) = conns.get(&conn.id) {
                    info.insert("auth".into(), json!("negotiate-connection"));
                    info.insert("user".into(), json!(user));
                    return Verdict::Pass(None);
                }
                info.insert("auth".into(), json!("negotiate-missing"));
                return Verdict::Deny(crate::faults::negotiate_challenge());
            };
            let reject = |info: &mut Map<String, Value>, why: String| {
                info.insert("auth".into(), json!("negotiate-rejected"));
                info.insert("error".into(), json!(why));
                Verdict::Deny(crate::faults::negotiate_challenge())
            };
            let Ok(token) = B64.decode(token.as_bytes()) else {
                conns.remove(&conn.id);
                return reject(info, "the Negotiate token is not base64".into());
            };
            let mut ctx = match conns.remove(&conn.id) {
                Some(Conn::Pending(ctx)) => ctx,
                _ => {
                    info.insert("mech".into(), json!(token_mech(&token)));
                    ServerCtx::new(Some(self.cred.clone()))
                }
            };
            if conns.len() >= MAX_CONNS {
                conns.clear();
            }
            let out = match ctx.step(&token, self.bindings.as_deref()) {
                Ok(out) => out.map(|b| B64.encode(&*b)),
                Err(e) => return reject(info, e.to_string()),
            };
            if !ctx.is_complete() {
                let Some(out) = out else {
                    return reject(info, "the acceptor wants more but sent no token".into());
                };
                conns.insert(conn.id, Conn::Pending(ctx));
                info.insert("auth".into(), json!("negotiate-continue"));
                return Verdict::Deny(challenge_with(&out));
            }
            let user = ctx
                .source_name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into());
            let target = ctx.target_name().map(|n| n.to_string()).unwrap_or_default();
            let flags = ctx.flags().map(|f| f.bits()).unwrap_or(0);
            let bound = flags & CHANNEL_BOUND != 0;
            if let Some(spn) = &self.spn {
                if !(target == *spn || target.starts_with(&format!("{spn}@"))) {
                    return reject(info, format!("ticket for {target}, not for {spn}"));
                }
            }
            if self.mode == Some(ChannelBinding::Require) && !bound {
                return reject(
                    info,
                    "no channel bindings (Extended Protection: Require)".into(),
                );
            }
            info.insert("auth".into(), json!("negotiate"));
            info.insert("user".into(), json!(user));
            info.insert("target".into(), json!(target));
            info.insert("mutual".into(), json!(out.is_some()));
            info.insert("channel_bound".into(), json!(bound));
            if !self.per_request {
                conns.insert(conn.id, Conn::SignedIn(user));
            }
            Verdict::Pass(out.map(|t| format!("Negotiate {t}")))
        }
    }

    /// The mechanism of an initial context token (RFC 2743 3.1: 0x60, length, the mech OID):
    /// "spnego", "krb5" (a bare Kerberos token), or "other".
    fn token_mech(token: &[u8]) -> &'static str {
        let head = &token[..token.len().min(24)];
        let has = |oid: &[u8]| head.windows(oid.len()).any(|w| w == oid);
        if token.first() != Some(&0x60) {
            "other"
        } else if has(b"\x06\x06\x2b\x06\x01\x05\x05\x02") {
            "spnego"
        } else if has(b"\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02") {
            "krb5"
        } else {
            "other"
        }
    }

    /// The 401 challenge with a continuation token instead of a bare `Negotiate`.
    fn challenge_with(token: &str) -> Response {
        let mut r = crate::faults::negotiate_challenge();
        for (name, value) in &mut r.headers {
            if name.eq_ignore_ascii_case("www-authenticate") {
                *value = format!("Negotiate {token}");
            }
        }
        r
    }

    /// Acceptor credentials for SPNEGO from a keytab (`gss_acquire_cred_from`, MIT), with a
    /// replay cache next to the keytab.
    fn acquire(keytab: &Path) -> Result<Cred, String> {
        use libgssapi_sys as sys;
        std::fs::File::open(keytab).map_err(|e| e.to_string())?;
        let mut kt = b"FILE:".to_vec();
        kt.extend_from_slice(keytab.as_os_str().as_bytes());
        let dir = keytab.parent().unwrap_or(Path::new("."));
        let mut rc = b"file2:".to_vec();
        rc.extend_from_slice(dir.join("cmserver.rcache2").as_os_str().as_bytes());
        let kt = CString::new(kt).map_err(|e| e.to_string())?;
        let rc = CString::new(rc).map_err(|e| e.to_string())?;
        let mut elements = [
            sys::gss_key_value_element_desc {
                key: c"keytab".as_ptr(),
                value: kt.as_ptr(),
            },
            sys::gss_key_value_element_desc {
                key: c"rcache".as_ptr(),
                value: rc.as_ptr(),
            },
        ];
        let store = sys::gss_key_value_set_desc {
            count: elements.len() as u32,
            elements: elements.as_mut_ptr(),
        };
        // SPNEGO, and bare Kerberos tokens too: Wine's SSPI "Negotiate" sends the Kerberos
        // token without the SPNEGO wrapper (scripts/wine-test), and the Windows Negotiate
        // package behind IIS takes such a token as well.
        let mut spnego_oid = *b"\x2b\x06\x01\x05\x05\x02";
        let mut krb5_oid = *b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02";
        let mut oids = [
            sys::gss_OID_desc {
                length: spnego_oid.len() as u32,
                elements: spnego_oid.as_mut_ptr().cast(),
            },
            sys::gss_OID_desc {
                length: krb5_oid.len() as u32,
                elements: krb5_oid.as_mut_ptr().cast(),
            },
        ];
        let mut mechs = sys::gss_OID_set_desc {
            count: oids.len(),
            elements: oids.as_mut_ptr(),
        };
        let mut minor: sys::OM_uint32 = 0;
        let mut cred: sys::gss_cred_id_t = ptr::null_mut();
        // SAFETY: all pointers outlive the call; the new handle is owned by `Cred`.
        let major = unsafe {
            sys::gss_acquire_cred_from(
                &mut minor,
                ptr::null_mut(),
                sys::_GSS_C_INDEFINITE,
                &mut mechs,
                sys::GSS_C_ACCEPT as sys::gss_cred_usage_t,
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
            }
            .to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_binding_modes() {
        assert_eq!(
            ChannelBinding::parse("require"),
            Ok(ChannelBinding::Require)
        );
        assert_eq!(ChannelBinding::parse("wrong"), Ok(ChannelBinding::Wrong));
        assert!(ChannelBinding::parse("accept").is_err());
    }

    #[test]
    fn options_need_the_keytab() {
        let parse =
            |args: &[&str]| crate::cli::parse(std::iter::once(&"scunblock-cmserver").chain(args));
        assert!(parse(&["--negotiate-spn", "HTTP/localhost"]).is_err());
        assert!(parse(&["--negotiate-per-request"]).is_err());
        match parse(&["--negotiate-keytab", "/k", "--negotiate-per-request"]) {
            Ok(c) => {
                let o = c.auth.negotiate.expect("negotiate options");
                assert_eq!(o.keytab, PathBuf::from("/k"));
                assert!(o.per_request);
                assert_eq!(o.channel_binding, None);
            }
            _ => panic!("--negotiate-keytab /k does not parse"),
        }
    }
}
