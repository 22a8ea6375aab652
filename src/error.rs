//! The error type, its exit codes and what to do next.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok |
//! | 1 | unexpected (the card answered something no profile expects, or a bug) |
//! | 2 | bad input, usage or the wrong card; no cryptogram was sent |
//! | 3 | PC/SC service, reader or card unavailable, or the card removed or reset mid-flow |
//! | 4 | the card rejected the admin response (or the PUK); the tries left are reported |
//! | 5 | admin key (or PUK) blocked, the last try refused without --force-last-try, or unknown admin tries refused without --allow-unknown-tries |
//! | 6 | responder failure (CM, HTTP, manual input); no cryptogram was sent |
//! | 7 | the card rejected the new PIN |

use crate::apdu::Tries;

/// The card step a status word answered, for messages and hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Select,
    ManageSecurityEnvironment,
    GetData,
    GetChallenge,
    ExternalAuthenticate,
    GeneralAuthenticate,
    ResetRetryCounter,
    UnlockPin,
}

impl Step {
    /// The step that carries the admin response, in any family.
    pub fn is_admin_response(self) -> bool {
        matches!(self, Step::ExternalAuthenticate | Step::GeneralAuthenticate)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Select => "SELECT",
            Step::ManageSecurityEnvironment => "MSE SET",
            Step::GetData => "GET DATA",
            Step::GetChallenge => "GET CHALLENGE",
            Step::ExternalAuthenticate => "EXTERNAL AUTHENTICATE",
            Step::GeneralAuthenticate => "GENERAL AUTHENTICATE",
            Step::ResetRetryCounter => "RESET RETRY COUNTER",
            Step::UnlockPin => "UNLOCK PIN",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input or usage, found before any cryptogram was sent.
    #[error("{0}")]
    Usage(String),

    /// The card in the reader is not the one this run is for (another card
    /// id, or a family that does not take this key source); nothing was sent.
    #[error("{0}")]
    WrongCard(String),

    /// PC/SC service, reader or card not available, or lost mid-flow.
    #[error("{message}")]
    Unavailable {
        message: String,
        hint: Option<String>,
    },

    /// After a reconnect (another process reset the card while this run waited), the
    /// reader holds a different card: nothing more is sent to it. `what` names what
    /// differs: "ATR" (compared by the connection) or "card id" (by the flow).
    #[error("the card in reader {reader} changed while this run waited ({what} {before}, now {after}); nothing was sent to the new card")]
    CardChanged {
        reader: String,
        what: &'static str,
        before: String,
        after: String,
    },

    /// The card refused the admin response.
    #[error("the card rejected the admin response (SW {sw:04X}){}", tries_suffix(*tries_left))]
    AdminRejected { sw: u16, tries_left: Tries },

    /// The admin key is blocked. `sw` is the status word that said so, when
    /// it came with this step (a tries query that said "blocked" is reported
    /// as tries, not as a status word the card never sent here).
    #[error("the admin key is blocked on this card{}; the card cannot be unblocked with an admin response any more", sw_suffix(*sw))]
    AdminBlocked { sw: Option<u16> },

    /// One admin try is left and --force-last-try was not given.
    #[error("only ONE admin try is left on this card; a wrong response would block the admin key, on many cards for good. Nothing was sent")]
    LastTryRefused,

    /// The card does not report its admin tries and the run was not allowed
    /// to spend one blindly.
    #[error("the card does not report its admin tries, so any try may be its last; a wrong response could block the admin key for good. Nothing was sent")]
    UnknownTriesRefused,

    /// The card refused the PUK.
    #[error("the card rejected the PUK (SW {sw:04X}){}", puk_suffix(*tries_left))]
    PukRejected { sw: u16, tries_left: Tries },

    /// The PUK is blocked.
    #[error("the PUK is blocked on this card{}", sw_suffix(*sw))]
    PukBlocked { sw: Option<u16> },

    /// One PUK try is left and --force-last-try was not given.
    #[error("only ONE PUK try is left on this card; a wrong PUK would block it. Nothing was sent")]
    PukLastTryRefused,

    /// The responder could not produce a response; nothing was sent.
    #[error("{0}")]
    Responder(String),

    /// The card rejected the new PIN.
    #[error("the card rejected the new PIN at {step}: SW {sw:04X} ({status}){}", pin_suffix(*pin_tries))]
    PinRejected {
        step: Step,
        sw: u16,
        status: crate::apdu::Status,
        pin_tries: Tries,
    },

    /// The card answered a status word this step does not expect.
    #[error("{step}: the card answered SW {sw:04X} ({status})")]
    Card {
        step: Step,
        sw: u16,
        status: crate::apdu::Status,
        /// What the card's family says this answer means ([`crate::card::Applet::explain`]).
        hint: Option<&'static str>,
    },

    /// A malformed answer from the card.
    #[error("{0}")]
    Protocol(String),

    /// Anything else.
    #[error("{0}")]
    Unexpected(String),
}

fn tries_suffix(t: Tries) -> String {
    match t {
        Tries::Left(1) => "; 1 admin try left (the LAST one)".into(),
        Tries::Left(n) => format!("; {n} admin tries left"),
        Tries::Blocked => "; the admin key is now blocked".into(),
        _ => String::new(),
    }
}

fn sw_suffix(sw: Option<u16>) -> String {
    sw.map(|sw| format!(" (SW {sw:04X})")).unwrap_or_default()
}

fn puk_suffix(t: Tries) -> String {
    match t {
        Tries::Left(1) => "; 1 PUK try left (the LAST one)".into(),
        Tries::Left(n) => format!("; {n} PUK tries left"),
        Tries::Blocked => "; the PUK is now blocked".into(),
        _ => String::new(),
    }
}

fn pin_suffix(t: Tries) -> String {
    match t {
        Tries::Left(n) => format!("; PIN tries left: {n}"),
        Tries::Blocked => "; the PIN is still blocked".into(),
        Tries::Verified => "; PIN verified".into(),
        Tries::Unknown => String::new(),
    }
}

impl Error {
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    /// The card answered `r` at `step`, which that step does not expect. The
    /// family's hint is attached by the flow ([`crate::card::Applet::explain`]).
    pub fn card(step: Step, r: &crate::apdu::Response) -> Error {
        Error::Card {
            step,
            sw: r.sw,
            status: r.status(),
            hint: None,
        }
    }

    pub fn protocol(msg: impl Into<String>) -> Error {
        Error::Protocol(msg.into())
    }

    pub fn responder(msg: impl Into<String>) -> Error {
        Error::Responder(msg.into())
    }

    /// The card left the reader mid-flow.
    pub fn card_removed() -> Error {
        Error::unavailable(
            "the card was removed",
            Some("insert it again and re-run; `scunblock info` shows the tries left".to_string()),
        )
    }

    /// Another process reset the card mid-flow.
    pub fn card_reset() -> Error {
        Error::unavailable(
            "the card was reset by another process mid-flow",
            Some(
                "close other smart card software and re-run; `scunblock info` shows the tries \
                 left"
                    .to_string(),
            ),
        )
    }

    pub fn unavailable(msg: impl Into<String>, hint: impl Into<Option<String>>) -> Error {
        Error::Unavailable {
            message: msg.into(),
            hint: hint.into(),
        }
    }

    /// The process exit code documented in docs/cli.md.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::WrongCard(_) => 2,
            Error::Unavailable { .. } | Error::CardChanged { .. } => 3,
            Error::AdminRejected { .. } | Error::PukRejected { .. } => 4,
            Error::AdminBlocked { .. }
            | Error::LastTryRefused
            | Error::UnknownTriesRefused
            | Error::PukBlocked { .. }
            | Error::PukLastTryRefused => 5,
            Error::Responder(_) => 6,
            Error::PinRejected { .. } => 7,
            Error::Card { .. } | Error::Protocol(_) | Error::Unexpected(_) => 1,
        }
    }

    /// A short class name for JSON output and kiosk events.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::WrongCard(_) => "wrong_card",
            Error::UnknownTriesRefused => "unknown_tries_refused",
            Error::PukRejected { .. } => "puk_rejected",
            Error::PukBlocked { .. } => "puk_blocked",
            Error::PukLastTryRefused => "puk_last_try_refused",
            Error::Unavailable { .. } => "unavailable",
            Error::CardChanged { .. } => "card_changed",
            Error::AdminRejected { .. } => "admin_rejected",
            Error::AdminBlocked { .. } => "admin_blocked",
            Error::LastTryRefused => "last_try_refused",
            Error::Responder(_) => "responder",
            Error::PinRejected { .. } => "pin_rejected",
            Error::Card { .. } => "card",
            Error::Protocol(_) => "protocol",
            Error::Unexpected(_) => "unexpected",
        }
    }

    /// The admin tries left, where this error knows them.
    pub fn admin_tries(&self) -> Option<Tries> {
        match self {
            Error::AdminRejected { tries_left, .. } => Some(*tries_left),
            Error::AdminBlocked { .. } => Some(Tries::Blocked),
            Error::LastTryRefused => Some(Tries::Left(1)),
            _ => None,
        }
    }

    /// The PUK tries left, where this error knows them.
    pub fn puk_tries(&self) -> Option<Tries> {
        match self {
            Error::PukRejected { tries_left, .. } => Some(*tries_left),
            Error::PukBlocked { .. } => Some(Tries::Blocked),
            Error::PukLastTryRefused => Some(Tries::Left(1)),
            _ => None,
        }
    }

    /// The PIN tries left, where this error knows them.
    pub fn pin_tries(&self) -> Option<Tries> {
        match self {
            Error::PinRejected { pin_tries, .. } => Some(*pin_tries),
            _ => None,
        }
    }

    /// The status word behind this error, when the card gave one.
    pub fn sw(&self) -> Option<u16> {
        match self {
            Error::AdminRejected { sw, .. }
            | Error::PukRejected { sw, .. }
            | Error::PinRejected { sw, .. }
            | Error::Card { sw, .. } => Some(*sw),
            Error::AdminBlocked { sw } | Error::PukBlocked { sw } => *sw,
            _ => None,
        }
    }

    /// What the user should do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Usage(_) => Some("see `scunblock --help`; nothing was sent to the card".into()),
            Error::WrongCard(_) => Some(
                "check which card is in the reader (`scunblock info` shows its family and id); \
                 no cryptogram was sent"
                    .into(),
            ),
            Error::UnknownTriesRefused => Some(
                "make sure the key (or the CM request) is right for this card, then run again \
                 with --allow-unknown-tries (or SCUNBLOCK_ALLOW_UNKNOWN_TRIES=1) to spend a try"
                    .into(),
            ),
            Error::PukRejected { .. } => Some(
                "check the PUK with the card holder before trying again; every wrong PUK spends \
                 a PUK try"
                    .into(),
            ),
            Error::PukBlocked { .. } => Some(
                "the PUK cannot unblock the PIN any more; on a YubiKey only a PIV reset (which \
                 erases its keys) helps: re-issue the card through CM"
                    .into(),
            ),
            Error::PukLastTryRefused => Some(
                "make sure the PUK is right, then run again with --force-last-try to spend it"
                    .into(),
            ),
            Error::Unavailable { hint, .. } => hint.clone(),
            Error::CardChanged { .. } => Some(
                "run again for the card now in the reader; a CM request made for the old card \
                 stays open for it"
                    .into(),
            ),
            Error::AdminRejected { .. } => Some(
                "check that the admin key (or the CM request and card id) belongs to this card \
                 before trying again; every wrong response spends a try"
                    .into(),
            ),
            Error::AdminBlocked { .. } => Some(
                "the card must be retired or re-issued through CM; no tool can unblock it".into(),
            ),
            Error::LastTryRefused => Some(
                "make sure the key is right, then run again with --force-last-try to spend it"
                    .into(),
            ),
            Error::Responder(_) => {
                Some("no cryptogram was sent to the card; no try was spent".into())
            }
            Error::PinRejected { .. } => Some(
                "the admin authentication succeeded; choose a PIN that meets the card's policy \
                 (length, characters) and run again"
                    .into(),
            ),
            Error::Card { hint, .. } => Some(hint.map(str::to_string).unwrap_or_else(|| {
                "run again with --trace to see the APDUs; check the card profile (--profile)"
                    .to_string()
            })),
            Error::Protocol(_) => Some(
                "run again with --trace to see the APDUs; check the card profile (--profile)"
                    .into(),
            ),
            Error::Unexpected(_) => None,
        }
    }
}
