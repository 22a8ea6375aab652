//! Windows Integrated Authentication (SPNEGO / Kerberos) for the CM client.
//!
//! Not built yet: `--cm-auth negotiate` is refused with exit 2 until the
//! GSSAPI (Linux) and SSPI (Windows) token providers land.

use std::path::PathBuf;

use crate::error::Error;

/// What the user configured for Negotiate.
#[derive(Clone, Debug, Default)]
pub struct NegotiateConfig {
    /// `--cm-spn`: the service principal, default `HTTP/<host of --cm>`.
    pub spn: Option<String>,
    /// `--keytab` (or KRB5_CLIENT_KTNAME): sign in from a keytab.
    pub keytab: Option<PathBuf>,
    /// `--cm-channel-binding`: send tls-server-end-point channel bindings.
    pub channel_binding: bool,
}

/// Runs the Negotiate handshake for one CM client.
pub struct Negotiator {
    handshakes: u32,
}

impl Negotiator {
    pub fn new(_cfg: NegotiateConfig, _base: &reqwest::Url) -> Result<Negotiator, Error> {
        Err(Error::usage(
            "--cm-auth negotiate is not built yet: use --cm-auth bearer (with --cm-token-env or \
             --cm-token-file) or --cm-auth none",
        ))
    }

    /// How many handshakes ran.
    pub fn handshakes(&self) -> u32 {
        self.handshakes
    }

    /// Send a request (built by `send` with the given Authorization header),
    /// answering a Negotiate challenge.
    pub fn send(
        &mut self,
        send: &mut dyn FnMut(Option<String>) -> Result<reqwest::blocking::Response, Error>,
    ) -> Result<reqwest::blocking::Response, Error> {
        send(None)
    }
}
