//! scunblock: unblock MIM CM managed Base CSP smart cards over PC/SC.
//!
//! The flow ([`flow`]) reads the ATR, asks the card ([`card::Applet`]) for a
//! challenge, gets the admin response from a [`responder::Responder`] (a
//! local 3DES [`admin_key::AdminKey`], a person, or MIM CM) and completes
//! EXTERNAL AUTHENTICATE and RESET RETRY COUNTER in one PC/SC transaction.

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
pub mod key_source;
pub mod log;
pub mod negotiate;
pub mod pkcs11;
pub mod profile;
pub mod reader;
pub mod responder;
pub mod secret;
pub mod transport;
pub mod watch;

pub use error::Error;
