//! scunblock-testkit as a library: the launchers that the integration tests, the test kit's
//! own tests and the bench share, so that each starts a virtual stack or a CM test server
//! the same way instead of keeping a copy.
//!
//! - [`stack`]: a private pcscd + vpcd (`scripts/vstack`) and `scunblock-vcard` cards;
//! - [`cm`]: the MIM CM REST test server (`scunblock-cmserver`) and a throwaway test CA;
//! - [`bins`]: where the test kit's binaries and scripts are.
//!
//! It does not depend on the scunblock crate and shares none of its crypto: the test kit
//! stays an independent check of the agent. Fallible set-up returns `anyhow::Result` with
//! context (the bench reports it and stops its helpers); the tests' panicking methods
//! (`VStack::start`, `CmServer::start`, ...) are thin wrappers that panic with that chain.

pub mod bins;
pub mod cm;
pub mod stack;

/// Panics with the whole context chain of `r`'s error: the tests' side of a `try_` call.
pub(crate) fn or_panic<T>(r: anyhow::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e:#}"))
}
