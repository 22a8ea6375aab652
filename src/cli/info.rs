//! `scunblock info`: the card's family, ATR and tries. Authenticates nothing.

use super::args::Global;
use super::output::Reporter;
use super::{connect, profiles, trace, CmdResult};
use scunblock::flow::{self, Identify};
use scunblock::reader::ReaderSelector;

pub(super) fn run(g: &Global, reporter: &Reporter) -> CmdResult {
    let profiles = profiles(g)?;
    let sel = ReaderSelector::parse(g.reader.as_deref())?;
    let mut conn = connect(g, &sel)?;
    let result = flow::inspect(&mut conn, Identify::Find(&profiles), &trace(g));
    conn.close(false);
    let (outcome, _) = result?;
    reporter.info(&outcome);
    Ok(())
}
