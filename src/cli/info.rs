//! `scunblock info`: the card's family, ATR and tries. Authenticates nothing.

use super::args::Global;
use super::output::Reporter;
use super::{connect, profiles, trace, CmdResult};
use scunblock::flow;
use scunblock::reader::ReaderSelector;

pub(super) fn run(g: &Global, reporter: &Reporter) -> CmdResult {
    let profiles = profiles(g)?;
    let sel = ReaderSelector::parse(g.reader.as_deref())?;
    let mut conn = connect(g, &sel)?;
    let result = flow::identify(&mut conn, &profiles, &trace(g))
        .map_err(Box::<flow::Failure>::from)
        .and_then(|(applet, source)| {
            let mut o = flow::inspect(&mut conn, applet.as_ref(), &trace(g))?;
            o.profile_source = Some(source);
            Ok(o)
        });
    conn.close(false);
    let outcome = result?;
    reporter.info(&outcome);
    Ok(())
}
