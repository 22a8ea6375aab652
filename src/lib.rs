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
pub mod cli;
pub mod cm_client;
pub mod cm_responder;
pub mod error;
pub mod flow;
pub mod ids;
pub mod iso7816;
pub mod log;
pub mod negotiate;
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
