//! `scunblock unblock` and `scunblock auth`: validate every input, then touch
//! the card once. The new PIN and the PUK are read here, from the one source
//! given.

use std::io::IsTerminal;

use zeroize::Zeroizing;

use super::args::{AuthArgs, Global, PinArgs, PukArgs};
use super::output::Reporter;
use super::{cm_options_need_cm, connect, one_responder, profiles, prompt, trace, CmdResult};
use scunblock::error::Error;
use scunblock::flow::{self, Identify, Mode, Options};
use scunblock::ids::Guid;
use scunblock::key_source::Use;
use scunblock::reader::ReaderSelector;
use scunblock::responder::{NoResponder, Responder};
use scunblock::secret::{self, Pin, Source};

/// `unblock` (with the new PIN and PUK options) and `auth` (without).
pub(super) fn run(
    g: &Global,
    a: &AuthArgs,
    unblock: Option<(&PinArgs, &PukArgs)>,
    reporter: &Reporter,
) -> CmdResult {
    // 1. Everything the user gave, checked before the card is touched.
    let profiles = profiles(g)?;
    let card_id = a
        .card_id
        .as_deref()
        .map(|c| Guid::parse(c, "--card-id"))
        .transpose()?;
    let sel = ReaderSelector::parse(g.reader.as_deref())?;
    let puk_given = unblock.is_some_and(|(_, puk)| puk.given());
    let key_given = a.key.given();
    // Not a clap rule: --dry-run lifts it, and clap's groups cannot say "unless".
    if unblock.is_some() && !a.dry_run && !key_given && !puk_given {
        return Err(Error::usage(
            "unblock needs where the admin response comes from (--admin-key-file PATH, \
             --admin-key-env VAR, --pkcs11-key URI, --cm URL or --manual) or, for a PIV card, \
             the PUK \
             (--puk-env VAR, --puk-file PATH, --puk-stdin or --puk-prompt)",
        )
        .into());
    }
    let new_pin = match unblock {
        Some((p, _)) if !a.dry_run => Some(read_new_pin(p)?),
        _ => None,
    };
    let puk = match unblock {
        Some((_, p)) if !a.dry_run && puk_given => Some(read_puk(p)?),
        _ => None,
    };
    let mut responder = if puk_given || (a.dry_run && !key_given) {
        Box::new(NoResponder)
    } else {
        responder(a, g.json)?
    };
    let mode = match (&new_pin, &puk) {
        _ if a.dry_run => Mode::DryRun,
        (Some(new_pin), Some(puk)) => Mode::UnblockWithPuk { puk, new_pin },
        (Some(new_pin), None) => Mode::Unblock { new_pin },
        _ => Mode::AuthOnly,
    };
    let opts = Options {
        mode,
        force_last_try: a.force_last_try,
        allow_unknown_tries: a.allow_unknown_tries,
        trace: trace(g),
        card_id,
    };

    // 2. The card: its family, then the one flow, in one transaction.
    let mut conn = connect(g, &sel)?;
    let result = flow::run(
        &mut conn,
        Identify::Find(&profiles),
        responder.as_mut(),
        &opts,
    );
    let authenticated = match &result {
        Ok(o) => o.response_sent || o.puk_sent,
        Err(f) => f
            .outcome
            .as_ref()
            .is_some_and(|o| o.response_sent || o.puk_sent),
    };
    // Drop any security state this run created.
    conn.close(authenticated);
    let outcome = result?;
    reporter.unblocked(&mode, &outcome);
    Ok(())
}

/// The responder for the key source the user chose (one card), from the one
/// factory every command uses. Whether it needs the card id is decided once
/// the card is read (the flow's preflight).
fn responder(a: &AuthArgs, json: bool) -> Result<Box<dyn Responder>, Error> {
    cm_options_need_cm(&a.key, &a.cm)?;
    let Some(source) = a.key.source() else {
        return Err(Error::usage(
            "choose where the admin response comes from: --admin-key-file PATH, \
             --admin-key-env VAR, --pkcs11-key URI, --cm URL or --manual",
        ));
    };
    one_responder(&source, Use::OneCard, &a.cm, json)
}

/// The PUK from the one source given (checked against the card's policy
/// once the family is known).
fn read_puk(p: &PukArgs) -> Result<Pin, Error> {
    let bytes: Zeroizing<Vec<u8>> = if let Some(var) = &p.puk_env {
        secret::read(&Source::Env(var), "PUK", false)?
    } else if let Some(path) = &p.puk_file {
        let raw = secret::read(&Source::File(path), "PUK", false)?;
        Zeroizing::new(secret::strip_line_end(&raw).to_vec())
    } else if p.puk_stdin {
        secret::read(&Source::Stdin, "PUK", false)?
    } else {
        prompt::secret("PUK: ")?
            .ok_or_else(|| Error::usage("--puk-prompt: no terminal to ask for the PUK"))?
    };
    let puk = Pin::new(bytes);
    puk.register_for_scrubbing();
    Ok(puk)
}

/// The new PIN from the one source given (checked against the card's policy
/// once the family is known).
fn read_new_pin(p: &PinArgs) -> Result<Pin, Error> {
    let bytes: Zeroizing<Vec<u8>> = if let Some(var) = &p.new_pin_env {
        secret::read(&Source::Env(var), "new PIN", false)?
    } else if let Some(path) = &p.new_pin_file {
        let raw = secret::read(&Source::File(path), "new PIN", p.allow_insecure_pin_file)?;
        Zeroizing::new(secret::strip_line_end(&raw).to_vec())
    } else if p.new_pin_stdin {
        secret::read(&Source::Stdin, "new PIN", false)?
    } else if std::io::stdin().is_terminal() {
        prompt::new_pin()?.ok_or_else(|| Error::usage("no terminal to ask for the PIN"))?
    } else {
        return Err(Error::usage(
            "give the new PIN with --new-pin-env VAR, --new-pin-file PATH or --new-pin-stdin \
             (standard input is not a terminal, so it cannot be asked for)",
        ));
    };
    let pin = Pin::new(bytes);
    pin.register_for_scrubbing();
    Ok(pin)
}
