//! Negotiate tokens from SSPI on Windows (the "Negotiate" package, through
//! the `windows` crate): the logged-on user's credentials, Kerberos, and NTLM
//! where IIS allows it (SSPI decides, not us).
//!
//! Channel bindings go in a SECBUFFER_CHANNEL_BINDINGS buffer holding a
//! SEC_CHANNEL_BINDINGS header followed by the application data, as IIS
//! Extended Protection expects.

use std::ptr;

use windows::core::{w, HRESULT, PCWSTR};
use windows::Win32::Foundation::{
    SEC_E_BAD_BINDINGS, SEC_E_CONTEXT_EXPIRED, SEC_E_KDC_UNABLE_TO_REFER, SEC_E_LOGON_DENIED,
    SEC_E_MUTUAL_AUTH_FAILED, SEC_E_NO_AUTHENTICATING_AUTHORITY, SEC_E_NO_CREDENTIALS, SEC_E_OK,
    SEC_E_TARGET_UNKNOWN, SEC_E_WRONG_PRINCIPAL, SEC_I_COMPLETE_AND_CONTINUE,
    SEC_I_COMPLETE_NEEDED,
};
use windows::Win32::Security::Authentication::Identity::{
    AcquireCredentialsHandleW, CompleteAuthToken, DeleteSecurityContext, FreeContextBuffer,
    FreeCredentialsHandle, InitializeSecurityContextW, QueryCredentialsAttributesW, SecBuffer,
    SecBufferDesc, SecPkgCredentials_NamesW, ISC_REQ_ALLOCATE_MEMORY, ISC_REQ_CONNECTION,
    ISC_REQ_MUTUAL_AUTH, SECBUFFER_CHANNEL_BINDINGS, SECBUFFER_TOKEN, SECBUFFER_VERSION,
    SECPKG_CRED_ATTR_NAMES, SECPKG_CRED_OUTBOUND, SECURITY_NATIVE_DREP, SEC_CHANNEL_BINDINGS,
};
use windows::Win32::Security::Credentials::SecHandle;

use super::{Context, Failure, MechError, Provider, Spn};

/// The logged-on user's outbound credentials for the Negotiate package.
pub struct Sspi {
    cred: SecHandle,
}

impl Drop for Sspi {
    fn drop(&mut self) {
        // SAFETY: a handle from AcquireCredentialsHandleW, released once.
        unsafe {
            let _ = FreeCredentialsHandle(&self.cred);
        }
    }
}

impl Sspi {
    pub fn acquire() -> Result<Sspi, MechError> {
        let mut cred = SecHandle::default();
        let mut expiry = 0i64;
        // SAFETY: out-pointers to locals; no auth data (the logged-on user).
        unsafe {
            AcquireCredentialsHandleW(
                PCWSTR::null(),
                w!("Negotiate"),
                SECPKG_CRED_OUTBOUND,
                None,
                None,
                None,
                None,
                &mut cred,
                Some(&mut expiry),
            )
        }
        .map_err(|e| classify(e.code(), &e.message()))?;
        Ok(Sspi { cred })
    }
}

impl Provider for Sspi {
    fn principal(&self) -> Option<String> {
        let mut names = SecPkgCredentials_NamesW::default();
        // SAFETY: `names` receives a buffer that FreeContextBuffer releases.
        unsafe {
            QueryCredentialsAttributesW(
                &self.cred,
                SECPKG_CRED_ATTR_NAMES,
                (&mut names as *mut SecPkgCredentials_NamesW).cast(),
            )
            .ok()?;
            if names.sUserName.is_null() {
                return None;
            }
            let name = PCWSTR(names.sUserName).to_string().ok();
            let _ = FreeContextBuffer(names.sUserName.cast());
            name
        }
    }

    fn context(&self, spn: &Spn, bindings: Option<Vec<u8>>) -> Result<Box<dyn Context>, MechError> {
        let target: Vec<u16> = spn.to_string().encode_utf16().chain([0]).collect();
        Ok(Box::new(SspiCtx {
            cred: self.cred,
            ctx: None,
            target,
            bindings: bindings.map(bindings_buffer),
            complete: false,
        }))
    }
}

/// SEC_CHANNEL_BINDINGS followed by the application data, in one buffer.
fn bindings_buffer(app_data: Vec<u8>) -> Vec<u8> {
    let header_len = std::mem::size_of::<SEC_CHANNEL_BINDINGS>();
    let header = SEC_CHANNEL_BINDINGS {
        cbApplicationDataLength: app_data.len() as u32,
        dwApplicationDataOffset: header_len as u32,
        ..Default::default()
    };
    let mut buf = vec![0u8; header_len + app_data.len()];
    // SAFETY: `buf` has room for the header; write_unaligned needs no alignment.
    unsafe {
        ptr::write_unaligned(buf.as_mut_ptr().cast::<SEC_CHANNEL_BINDINGS>(), header);
    }
    buf[header_len..].copy_from_slice(&app_data);
    buf
}

struct SspiCtx {
    /// Borrowed from `Sspi`, which outlives every handshake of the run.
    cred: SecHandle,
    ctx: Option<SecHandle>,
    target: Vec<u16>,
    bindings: Option<Vec<u8>>,
    complete: bool,
}

impl Drop for SspiCtx {
    fn drop(&mut self) {
        if let Some(ctx) = &self.ctx {
            // SAFETY: a context made by InitializeSecurityContextW, deleted once.
            unsafe {
                let _ = DeleteSecurityContext(ctx);
            }
        }
    }
}

impl Context for SspiCtx {
    fn step(&mut self, input: Option<&[u8]>) -> Result<Option<Vec<u8>>, MechError> {
        let mut input_token = input.map(<[u8]>::to_vec).unwrap_or_default();
        let mut in_buffers = Vec::new();
        if input.is_some() {
            in_buffers.push(SecBuffer {
                cbBuffer: input_token.len() as u32,
                BufferType: SECBUFFER_TOKEN,
                pvBuffer: input_token.as_mut_ptr().cast(),
            });
        }
        if let Some(b) = &mut self.bindings {
            in_buffers.push(SecBuffer {
                cbBuffer: b.len() as u32,
                BufferType: SECBUFFER_CHANNEL_BINDINGS,
                pvBuffer: b.as_mut_ptr().cast(),
            });
        }
        let in_desc = SecBufferDesc {
            ulVersion: SECBUFFER_VERSION,
            cBuffers: in_buffers.len() as u32,
            pBuffers: in_buffers.as_mut_ptr(),
        };
        let mut out_buffer = SecBuffer {
            cbBuffer: 0,
            BufferType: SECBUFFER_TOKEN,
            pvBuffer: ptr::null_mut(),
        };
        let mut out_desc = SecBufferDesc {
            ulVersion: SECBUFFER_VERSION,
            cBuffers: 1,
            pBuffers: &mut out_buffer,
        };
        let mut new_ctx = self.ctx.unwrap_or_default();
        let mut attrs = 0u32;
        // SAFETY: every buffer lives across the call; SSPI allocates the output
        // token (ISC_REQ_ALLOCATE_MEMORY), released below with FreeContextBuffer.
        let status = unsafe {
            InitializeSecurityContextW(
                Some(&self.cred),
                self.ctx.as_ref().map(|c| c as *const SecHandle),
                Some(self.target.as_ptr()),
                ISC_REQ_MUTUAL_AUTH | ISC_REQ_CONNECTION | ISC_REQ_ALLOCATE_MEMORY,
                0,
                SECURITY_NATIVE_DREP,
                (!in_buffers.is_empty()).then_some(&in_desc as *const SecBufferDesc),
                0,
                Some(&mut new_ctx),
                Some(&mut out_desc),
                &mut attrs,
                None,
            )
        };
        if self.ctx.is_none() && !status.is_err() {
            self.ctx = Some(new_ctx);
        }
        let token = if out_buffer.pvBuffer.is_null() {
            Vec::new()
        } else {
            // SAFETY: SSPI allocated cbBuffer bytes at pvBuffer.
            let t = unsafe {
                std::slice::from_raw_parts(
                    out_buffer.pvBuffer.cast::<u8>(),
                    out_buffer.cbBuffer as usize,
                )
                .to_vec()
            };
            // SAFETY: allocated by SSPI for us.
            unsafe {
                let _ = FreeContextBuffer(out_buffer.pvBuffer);
            }
            t
        };
        if status.is_err() {
            return Err(classify(status, &status.message()));
        }
        if status == SEC_I_COMPLETE_NEEDED || status == SEC_I_COMPLETE_AND_CONTINUE {
            if let Some(ctx) = &self.ctx {
                // SAFETY: the context just initialized and its output descriptor.
                unsafe { CompleteAuthToken(ctx, &out_desc) }
                    .map_err(|e| classify(e.code(), &e.message()))?;
            }
        }
        // SEC_I_CONTINUE_NEEDED / SEC_I_COMPLETE_AND_CONTINUE: the server must answer.
        self.complete = status == SEC_E_OK || status == SEC_I_COMPLETE_NEEDED;
        Ok((!token.is_empty()).then_some(token))
    }

    fn is_complete(&self) -> bool {
        self.complete
    }
}

fn classify(code: HRESULT, message: &str) -> MechError {
    let failure = if code == SEC_E_NO_CREDENTIALS || code == SEC_E_LOGON_DENIED {
        Failure::NoCredentials
    } else if code == SEC_E_CONTEXT_EXPIRED {
        Failure::Expired
    } else if code == SEC_E_TARGET_UNKNOWN || code == SEC_E_WRONG_PRINCIPAL {
        Failure::UnknownSpn
    } else if code == SEC_E_NO_AUTHENTICATING_AUTHORITY || code == SEC_E_KDC_UNABLE_TO_REFER {
        Failure::KdcUnreachable
    } else if code == SEC_E_MUTUAL_AUTH_FAILED || code == SEC_E_BAD_BINDINGS {
        Failure::BadServerToken
    } else {
        Failure::Other
    };
    MechError {
        failure,
        detail: format!("SSPI {:#010x}: {}", code.0 as u32, message.trim()),
    }
}
