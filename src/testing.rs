//! Test doubles: a scripted card transport and session, for unit tests,
//! property tests, fuzz targets and examples. A script lists each expected
//! command APDU and the card's raw answer (or a transport fault).

use crate::error::Error;
use crate::transport::{Session, Transport};

/// One scripted exchange: the expected command and the answer or fault.
pub type ScriptStep = (Vec<u8>, Result<Vec<u8>, ScriptFault>);

/// A transport that plays a script: each expected command (as bytes) and the
/// raw answer. Used by unit tests and property tests of the flow.
#[derive(Debug, Default)]
pub struct ScriptedTransport {
    pub script: std::collections::VecDeque<ScriptStep>,
    /// Every APDU received, in order.
    pub received: Vec<Vec<u8>>,
    /// The transactions a [`ScriptedSession`] ran on it.
    pub transactions: usize,
}

/// A transport fault a script can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptFault {
    Removed,
    Reset,
}

impl ScriptedTransport {
    pub fn new() -> ScriptedTransport {
        ScriptedTransport::default()
    }

    /// Expect `cmd` (hex) and answer `resp` (hex).
    pub fn expect(mut self, cmd: &str, resp: &str) -> ScriptedTransport {
        self.script.push_back((unhex(cmd), Ok(unhex(resp))));
        self
    }

    /// Expect `cmd` and fail with a transport fault.
    pub fn fault(mut self, cmd: &str, fault: ScriptFault) -> ScriptedTransport {
        self.script.push_back((unhex(cmd), Err(fault)));
        self
    }

    pub fn done(&self) -> bool {
        self.script.is_empty()
    }
}

fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("test script hex")
}

impl Transport for ScriptedTransport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Error> {
        self.received.push(apdu.to_vec());
        let Some((want, answer)) = self.script.pop_front() else {
            return Err(Error::Unexpected(format!(
                "script ended, but got {}",
                hex::encode_upper(apdu)
            )));
        };
        if !want.is_empty() && want != apdu {
            return Err(Error::Unexpected(format!(
                "script expected {} but got {}",
                hex::encode_upper(&want),
                hex::encode_upper(apdu)
            )));
        }
        match answer {
            Ok(bytes) => Ok(bytes),
            Err(ScriptFault::Removed) => Err(Error::card_removed()),
            Err(ScriptFault::Reset) => Err(Error::card_reset()),
        }
    }
}

/// A scripted card for unit and property tests of the flow.
pub struct ScriptedSession {
    pub transport: ScriptedTransport,
    pub atr: Vec<u8>,
}

impl Session for ScriptedSession {
    fn reader(&self) -> &str {
        "Scripted Reader 00 00"
    }
    fn atr(&self) -> &[u8] {
        &self.atr
    }
    fn transaction<R>(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Transport) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.transport.transactions += 1;
        f(&mut self.transport)
    }
}

/// A file holding `contents`, with the Unix permissions `mode`, in a fresh
/// temporary directory that lives as long as the returned guard.
#[cfg(all(test, unix))]
pub(crate) fn file_with_mode(
    name: &str,
    contents: &str,
    mode: u32,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, contents).unwrap();
    chmod(&p, mode);
    (dir, p)
}

/// Set a test file's Unix permissions.
#[cfg(all(test, unix))]
pub(crate) fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
