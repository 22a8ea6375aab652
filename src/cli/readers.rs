//! `scunblock readers`: the readers, whether each holds a card, and its ATR.

use super::output::Reporter;
use super::CmdResult;
use scunblock::reader;

pub(super) fn run(reporter: &Reporter) -> CmdResult {
    let ctx = reader::establish()?;
    let readers = reader::list(&ctx)?;
    reporter.readers(&readers);
    Ok(())
}
