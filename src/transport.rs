//! The card transport seam and the APDU channel on top of it.
//!
//! [`Transport`] moves raw bytes (PC/SC in production, a scripted card in unit
//! tests). [`Channel`] sends [`Command`]s over it: T=0 GET RESPONSE chaining
//! (61xx) and the single 6Cxx resend live here and nowhere else, as does the
//! APDU trace and the guard that refuses a second try-spending command.

use std::time::Instant;

use crate::apdu::{ins, Command, Response, Status};
use crate::error::Error;

/// Raw APDU exchange with a card, inside whatever transaction the caller holds.
pub trait Transport {
    /// Send one command APDU, return the raw response (data || SW1 SW2).
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Where the APDU trace goes.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// Print the trace to stderr.
    pub enabled: bool,
    /// Prefix for each line (the reader name in the kiosk).
    pub prefix: String,
}

impl Trace {
    pub fn off() -> Trace {
        Trace::default()
    }

    /// `line` runs only when tracing is on: formatting every APDU and answer in hex for
    /// nothing was a measurable share of a local-key unblock (docs/performance.md).
    fn line(&self, line: impl FnOnce() -> String) {
        if self.enabled {
            crate::log::trace_line(&self.prefix, &line());
        }
    }
}

/// Upper bound on GET RESPONSE rounds: a card answering 61xx forever must
/// not keep us looping.
const MAX_GET_RESPONSE_ROUNDS: usize = 64;

/// An APDU channel over a transport.
pub struct Channel<'t> {
    transport: &'t mut dyn Transport,
    trace: Trace,
    tries_spent: u32,
    sent: u32,
}

impl<'t> Channel<'t> {
    pub fn new(transport: &'t mut dyn Transport, trace: Trace) -> Channel<'t> {
        Channel {
            transport,
            trace,
            tries_spent: 0,
            sent: 0,
        }
    }

    /// How many APDUs went to the card on this channel.
    pub fn apdus_sent(&self) -> u32 {
        self.sent
    }

    /// Send a command and return the final response, after T=0 handling.
    ///
    /// A command marked as spending a try ([`Command::spends_try`]: the admin
    /// response of every family) goes out at most once per channel, whatever
    /// the card answers: a second attempt is refused here as a last line of
    /// defence.
    pub fn send(&mut self, cmd: &Command) -> Result<Response, Error> {
        if cmd.spends_try {
            if self.tries_spent > 0 {
                return Err(Error::Unexpected(
                    "refused to send a second admin authentication in one run (internal safety guard)"
                        .into(),
                ));
            }
            self.tries_spent += 1;
        }
        let mut resp = self.exchange(cmd)?;
        if let Status::WrongLe(le) = resp.status() {
            if cmd.may_resend() {
                let again = cmd.clone().le(le);
                resp = self.exchange(&again)?;
            }
        }
        let mut data = std::mem::take(&mut resp.data);
        let mut rounds = 0;
        while let Status::MoreData(n) = resp.status() {
            rounds += 1;
            if rounds > MAX_GET_RESPONSE_ROUNDS {
                return Err(Error::protocol(format!(
                    "the card kept answering 61xx after {MAX_GET_RESPONSE_ROUNDS} GET RESPONSE rounds"
                )));
            }
            let get = Command::new(cmd.cla, ins::GET_RESPONSE, 0, 0).le(n);
            resp = self.exchange(&get)?;
            data.append(&mut resp.data);
        }
        resp.data = data;
        Ok(resp)
    }

    fn exchange(&mut self, cmd: &Command) -> Result<Response, Error> {
        self.trace.line(|| format!("> {}", cmd.trace()));
        let started = Instant::now();
        self.sent += 1;
        let raw = self.transport.transmit(&cmd.to_bytes())?;
        let Some(resp) = Response::from_bytes(&raw) else {
            self.trace
                .line(|| format!("< {} (no status word)", crate::apdu::spaced_hex(&raw)));
            return Err(Error::protocol(format!(
                "the card answered {} byte(s) to {:02X} {:02X}: a response needs at least a status word",
                raw.len(),
                cmd.cla,
                cmd.ins
            )));
        };
        self.trace.line(|| {
            format!(
                "< {}  [{:.1} ms]",
                resp.trace(),
                started.elapsed().as_secs_f64() * 1000.0
            )
        });
        Ok(resp)
    }
}

/// A card connection the flow can run transactions on (PC/SC in production,
/// [`crate::testing::ScriptedSession`] in tests).
pub trait Session {
    fn reader(&self) -> &str;
    fn atr(&self) -> &[u8];
    /// Run `f` inside one card transaction.
    fn transaction<R>(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Transport) -> Result<R, Error>,
    ) -> Result<R, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScriptedTransport;

    fn challenge_cmd() -> Command {
        Command::new(0, ins::GET_CHALLENGE, 0, 0).le(8)
    }

    #[test]
    fn trace_lines_are_made_only_when_tracing() {
        let made = std::cell::Cell::new(0);
        Trace::off().line(|| {
            made.set(made.get() + 1);
            String::new()
        });
        assert_eq!(made.get(), 0, "a line was formatted with the trace off");
        let on = Trace {
            enabled: true,
            prefix: String::new(),
        };
        on.line(|| {
            made.set(made.get() + 1);
            "unit test trace line".into()
        });
        assert_eq!(made.get(), 1);
    }

    #[test]
    fn follows_61xx_with_get_response() {
        let mut t = ScriptedTransport::new()
            .expect("0084000008", "6108")
            .expect("00C0000008", "D61143F9CCFFD2CA9000");
        let mut ch = Channel::new(&mut t, Trace::off());
        let r = ch.send(&challenge_cmd()).unwrap();
        assert_eq!(hex::encode_upper(&r.data), "D61143F9CCFFD2CA");
        assert_eq!(r.sw, 0x9000);
        assert_eq!(ch.apdus_sent(), 2);
    }

    #[test]
    fn chains_several_get_responses() {
        let mut t = ScriptedTransport::new()
            .expect("0084000008", "6104")
            .expect("00C0000004", "D61143F96104")
            .expect("00C0000004", "CCFFD2CA9000");
        let mut ch = Channel::new(&mut t, Trace::off());
        let r = ch.send(&challenge_cmd()).unwrap();
        assert_eq!(hex::encode_upper(&r.data), "D61143F9CCFFD2CA");
    }

    #[test]
    fn resends_once_on_6cxx() {
        let mut t = ScriptedTransport::new()
            .expect("0084000000", "6C08")
            .expect("0084000008", "D61143F9CCFFD2CA9000");
        let mut ch = Channel::new(&mut t, Trace::off());
        let r = ch
            .send(&Command::new(0, ins::GET_CHALLENGE, 0, 0).le(0))
            .unwrap();
        assert_eq!(r.data.len(), 8);
        // A second 6Cxx is returned as is, not resent forever.
        let mut t = ScriptedTransport::new()
            .expect("0084000000", "6C08")
            .expect("0084000008", "6C09");
        let mut ch = Channel::new(&mut t, Trace::off());
        let r = ch
            .send(&Command::new(0, ins::GET_CHALLENGE, 0, 0).le(0))
            .unwrap();
        assert_eq!(r.status(), Status::WrongLe(9));
        assert!(t.done());
    }

    #[test]
    fn never_resends_a_command_with_data() {
        let mut t = ScriptedTransport::new().expect("008200000817466E766E303CB6", "6C08");
        let mut ch = Channel::new(&mut t, Trace::off());
        let cmd = Command::new(0, ins::EXTERNAL_AUTHENTICATE, 0, 0)
            .data(hex::decode("17466E766E303CB6").unwrap())
            .spends_try();
        let r = ch.send(&cmd).unwrap();
        assert_eq!(r.status(), Status::WrongLe(8));
        assert_eq!(t.received.len(), 1);
    }

    #[test]
    fn refuses_a_second_try_spending_command() {
        let mut t = ScriptedTransport::new().expect("008200000817466E766E303CB6", "63C4");
        let mut ch = Channel::new(&mut t, Trace::off());
        let cmd = Command::new(0, ins::EXTERNAL_AUTHENTICATE, 0, 0)
            .data(hex::decode("17466E766E303CB6").unwrap())
            .spends_try();
        assert_eq!(ch.send(&cmd).unwrap().sw, 0x63C4);
        assert!(ch.send(&cmd).is_err());
        assert_eq!(t.received.len(), 1);
    }

    #[test]
    fn short_answers_are_protocol_errors() {
        for answer in ["", "90"] {
            let mut t = ScriptedTransport::new().expect("0084000008", answer);
            let mut ch = Channel::new(&mut t, Trace::off());
            let e = ch.send(&challenge_cmd()).unwrap_err();
            assert_eq!(e.exit_code(), 1);
            assert!(e.to_string().contains("status word"), "{e}");
        }
    }

    #[test]
    fn endless_61xx_is_bounded() {
        let mut t = ScriptedTransport::new().expect("0084000008", "6101");
        for _ in 0..=MAX_GET_RESPONSE_ROUNDS {
            t = t.expect("00C0000001", "006101");
        }
        let mut ch = Channel::new(&mut t, Trace::off());
        assert!(ch.send(&challenge_cmd()).is_err());
    }
}
