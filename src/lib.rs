//! scunblock: unblock MIM CM managed Base CSP smart cards over PC/SC.
//!
//! The flow ([`flow`]) reads the ATR, finds the card's family (GIDS, PIV,
//! Crescendo or ISO: [`card`]), asks the card ([`card::Applet`]) for a
//! challenge, gets the admin response from a [`responder::Responder`] (a
//! local [`admin_key::AdminKey`], a person, or MIM CM) and completes the
//! admin authentication and the PIN reset in one PC/SC transaction.

pub mod admin_key;
pub mod apdu;
pub mod atr;
pub mod card;
pub mod card_info;
pub mod cm_client;
pub mod cm_responder;
pub mod error;
pub mod flow;
pub mod ids;
pub mod iso7816;
pub mod key_source;
pub mod log;
pub mod negotiate;
pub mod pkcs11;
pub mod profile;
pub mod reader;
pub mod responder;
pub mod sanitize;
pub mod scrub;
pub mod secret;
pub mod testing;
pub mod tlv;
pub mod transport;
pub mod watch;

pub use error::Error;

/// For unit tests whose part may be missing (the system's GSSAPI library, pcsc-tools' list):
/// whether every test must run, in CI (`CI` set) or under scripts/test
/// (`SCUNBLOCK_REQUIRE_ALL=1`). Then a missing part fails the test; elsewhere it says
/// SKIPPED. The integration tests' copy of the rule is `require` in tests/common/mod.rs.
#[cfg(test)]
pub(crate) fn all_tests_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("SCUNBLOCK_REQUIRE_ALL").is_ok_and(|v| v == "1")
}
