//! Response APDUs from a card that answers anything: status-word decoding, T=0 GET RESPONSE
//! chaining (61xx), the single 6Cxx resend, the card operations on top, and the whole
//! unblock flow. The card's answers come from the input.
//!
//! Input: byte 0 picks what to drive, byte 1 options; the rest are answers, each a length
//! byte and that many bytes (length FF: the card is removed; input exhausted: removed too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scunblock::admin_key::{AdminKey, Cryptogram, KeyAlg};
use scunblock::apdu::{ins, Command, Response, Status};
use scunblock::card::{Applet, IsoApplet, Tries};
use scunblock::error::Error;
use scunblock::flow::{self, Mode, Options, Session};
use scunblock::profile::CardProfile;
use scunblock::responder::LocalKey;
use scunblock::secret::Pin;
use scunblock::transport::{Channel, Trace, Transport};
use zeroize::Zeroizing;

/// Longest exchange `Channel::send` may make: the command, one 6Cxx resend, 64 GET RESPONSE.
const MAX_EXCHANGES: usize = 66;

struct FuzzCard<'a> {
    answers: &'a [u8],
    /// Every APDU received, and the raw answer given to it (None: removed).
    log: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Transport for FuzzCard<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, Error> {
        let answer = match self.answers.split_first() {
            Some((&n, rest)) if n != 0xFF => {
                let n = usize::from(n).min(rest.len());
                self.answers = &rest[n..];
                Some(rest[..n].to_vec())
            }
            _ => None,
        };
        self.log.push((apdu.to_vec(), answer.clone()));
        answer.ok_or_else(scunblock::Error::card_removed)
    }
}

fn with_data(apdu: &[u8]) -> bool {
    apdu.len() > 5
}

fn is_cryptogram(apdu: &[u8]) -> bool {
    apdu.get(1) == Some(&ins::EXTERNAL_AUTHENTICATE) && with_data(apdu)
}

fn sw_of(answer: &Option<Vec<u8>>) -> Option<u16> {
    let a = answer.as_ref()?;
    Response::from_bytes(a).map(|r| r.sw)
}

/// One `Channel::send` of a command.
fn drive_channel(sel: u8, opt: u8, card: &mut FuzzCard) {
    let cmd = match sel % 7 {
        0 => Command::new(0, ins::GET_CHALLENGE, 0, 0).le(8),
        1 => Command::new(0, ins::GET_CHALLENGE, 0, 0).le(0),
        2 => Command::new(0, ins::EXTERNAL_AUTHENTICATE, 0, 0),
        3 => Command::new(0, ins::VERIFY, 0, 0x80),
        4 => Command::new(0, ins::EXTERNAL_AUTHENTICATE, 0, 0).data(vec![0x17; 8]),
        5 => Command::new(0, ins::RESET_RETRY_COUNTER, 2, 0x80)
            .sensitive(Zeroizing::new(b"1234".to_vec())),
        _ => Command::new(0, ins::SELECT, 4, 0).data(vec![0xA0, 0, 0, 3, 0x97]),
    };
    let spends_try = opt & 1 != 0;
    let cmd = if spends_try { cmd.spends_try() } else { cmd };
    let encoded = cmd.to_bytes().to_vec();
    let mut ch = Channel::new(card, Trace::off());
    let result = ch.send(&cmd);
    let sent = ch.apdus_sent() as usize;
    if spends_try {
        // The guard: a second try-spending command never reaches the card.
        assert!(ch.send(&cmd).is_err());
        assert_eq!(ch.apdus_sent() as usize, sent);
    }
    drop(ch);
    assert_eq!(sent, card.log.len());
    assert!(sent <= MAX_EXCHANGES, "{sent} exchanges");
    assert_eq!(card.log[0].0, encoded);
    for (k, (apdu, _)) in card.log.iter().enumerate().skip(1) {
        let get_response = apdu.len() == 5 && apdu[1] == ins::GET_RESPONSE && apdu[2..4] == [0, 0];
        // The only other command: the one 6Cxx resend of a command WITHOUT data.
        let resend = k == 1 && !with_data(&encoded) && apdu[..4] == encoded[..4];
        assert!(get_response || resend, "unexpected APDU {apdu:02X?}");
        assert!(!with_data(apdu), "data sent twice: {apdu:02X?}");
    }
    match result {
        Ok(r) => {
            assert!(!matches!(r.status(), Status::MoreData(_)));
            assert_eq!(Some(r.sw), sw_of(&card.log.last().unwrap().1));
            let _ = (r.trace(), r.status().to_string());
        }
        Err(e) => assert!(matches!(e.exit_code(), 1 | 3), "{e}"),
    }
}

/// One card operation of the iso profile.
fn drive_applet(sel: u8, card: &mut FuzzCard) {
    let applet = IsoApplet::new(CardProfile::iso());
    let mut ch = Channel::new(card, Trace::off());
    let pin = Pin::new(Zeroizing::new(b"24681357".to_vec()));
    let code = |r: Result<(), Error>| r.err().map(|e| e.exit_code());
    let code = match sel % 5 {
        0 => code(applet.admin_tries(&mut ch).map(drop)),
        1 => code(applet.pin_tries(&mut ch).map(drop)),
        2 => match applet.get_challenge(&mut ch, None) {
            Ok(c) => {
                assert_eq!(c.challenge.len(), 8);
                None
            }
            Err(e) => Some(e.exit_code()),
        },
        3 => code(applet.authenticate(&mut ch, KeyAlg::Tdes, &Cryptogram::new(vec![0x17; 8]))),
        _ => code(applet.reset_pin(&mut ch, &pin)),
    };
    drop(ch);
    if let Some(c) = code {
        assert!((1..=7).contains(&c) && c != 2 && c != 6, "exit {c}");
    }
    let cryptograms = card.log.iter().filter(|(a, _)| is_cryptogram(a)).count();
    assert!(cryptograms <= 1);
}

struct FuzzSession<'a> {
    card: FuzzCard<'a>,
    transactions: usize,
}

impl Session for FuzzSession<'_> {
    fn reader(&self) -> &str {
        "Fuzz Reader 00 00"
    }
    fn atr(&self) -> &[u8] {
        &[0x3B, 0x02, 0x14, 0x50]
    }
    fn transaction<R>(
        &mut self,
        f: &mut dyn FnMut(&mut dyn Transport) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.transactions += 1;
        f(&mut self.card)
    }
}

/// The whole flow: never a second cryptogram, no RESET RETRY COUNTER unless the card
/// accepted the cryptogram, nothing at all for a refused last try.
fn drive_flow(sel: u8, opt: u8, card: FuzzCard) {
    let pin = Pin::new(Zeroizing::new(b"24681357".to_vec()));
    let mode = [
        Mode::Unblock { new_pin: &pin },
        Mode::AuthOnly,
        Mode::DryRun,
    ][usize::from(sel % 3)];
    let unblock = sel % 3 == 0;
    let force_last_try = opt & 1 != 0;
    let allow_unknown_tries = opt & 2 != 0;
    let mut session = FuzzSession {
        card,
        transactions: 0,
    };
    let applet = IsoApplet::new(CardProfile::iso());
    let mut key = LocalKey::new(AdminKey::from_bytes(&[0; 24]).expect("a 24-byte key"));
    let opts = Options {
        mode,
        force_last_try,
        allow_unknown_tries,
        trace: Trace::off(),
        card_id: None,
    };
    let result = flow::run(&mut session, flow::Identify::Known(&applet), &mut key, &opts);
    let log = &session.card.log;
    let cryptograms: Vec<usize> = (0..log.len())
        .filter(|&i| is_cryptogram(&log[i].0))
        .collect();
    assert!(cryptograms.len() <= 1, "{} cryptograms", cryptograms.len());
    let rrc = log
        .iter()
        .position(|(a, _)| a.get(1) == Some(&ins::RESET_RETRY_COUNTER));
    if let Some(r) = rrc {
        let ea = *cryptograms
            .first()
            .expect("RESET RETRY COUNTER without a cryptogram");
        assert!(ea < r && unblock);
        // The cryptogram's final answer (after any GET RESPONSE chain) was 9000.
        assert_eq!(sw_of(&log[r - 1].1), Some(0x9000));
    }
    if mode.is_dry_run() {
        assert!(cryptograms.is_empty());
        assert!(!log
            .iter()
            .any(|(a, _)| a.get(1) == Some(&ins::GET_CHALLENGE)));
    }
    let outcome = match &result {
        Ok(o) => Some(o),
        Err(f) => f.outcome.as_ref(),
    };
    if let Some(o) = outcome {
        assert_eq!(o.response_sent, !cryptograms.is_empty());
        if matches!(o.admin_tries, Tries::Left(0) | Tries::Blocked)
            || (o.admin_tries == Tries::Left(1) && !force_last_try)
            || (o.admin_tries == Tries::Unknown && !allow_unknown_tries)
        {
            assert!(cryptograms.is_empty());
        }
    }
    if let Err(f) = &result {
        let c = f.error.exit_code();
        assert!(
            (1..=7).contains(&c) && c != 2 && c != 6,
            "exit {c}: {}",
            f.error
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [what, sel, opt, answers @ ..] = data else {
        return;
    };
    // Decoding on its own.
    if let Some(r) = Response::from_bytes(answers) {
        let _ = (r.trace(), format!("{r:?}"), r.status().to_string());
    }
    let mut card = FuzzCard {
        answers,
        log: Vec::new(),
    };
    match what % 3 {
        0 => drive_channel(*sel, *opt, &mut card),
        1 => drive_applet(*sel, &mut card),
        _ => drive_flow(*sel, *opt, card),
    }
});
