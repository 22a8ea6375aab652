//! The terminal questions, without echo: the new PIN, the PUK and a PKCS#11
//! token's PIN. The library checks what is typed; only the asking is here.

use std::io::IsTerminal;

use zeroize::Zeroizing;

use scunblock::error::Error;

/// Ask twice on the terminal without echo. `None` when stdin is no terminal.
pub(super) fn new_pin() -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("New PIN: ")
            .map_err(|e| Error::usage(format!("cannot read the PIN from the terminal: {e}")))?,
    );
    let second = Zeroizing::new(
        rpassword::prompt_password("New PIN again: ")
            .map_err(|e| Error::usage(format!("cannot read the PIN from the terminal: {e}")))?,
    );
    if *first != *second {
        return Err(Error::usage(
            "the two PINs differ; nothing was sent to the card",
        ));
    }
    Ok(Some(Zeroizing::new(first.as_bytes().to_vec())))
}

/// Ask once on the terminal without echo. `None` when stdin is no terminal.
pub(super) fn secret(prompt: &str) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let text = Zeroizing::new(
        rpassword::prompt_password(prompt)
            .map_err(|e| Error::usage(format!("cannot read from the terminal: {e}")))?,
    );
    Ok(Some(Zeroizing::new(text.as_bytes().to_vec())))
}

/// The PIN of the PKCS#11 token labelled `label`, asked on /dev/tty without
/// echo (the library's [`scunblock::pkcs11::AskPin`]; it refuses an empty one).
pub(super) fn token_pin(label: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let text =
        rpassword::prompt_password(format!("PIN of the token \"{label}\": ")).map_err(|e| {
            Error::usage(format!(
                "cannot ask for the token PIN on the terminal ({e}): give --pkcs11-pin-env VAR \
                 or --pkcs11-pin-file PATH"
            ))
        })?;
    Ok(Zeroizing::new(text.into_bytes()))
}
