//! Drive a real reader, read-only: list the readers, connect to the first one with a card (or
//! the one named as the argument), find the card's family and print its tries. Nothing is
//! authenticated and no PIN is sent; what it reads is what `scunblock info` shows.
//!
//!     cargo run --example real_reader [READER NAME]

use std::time::Duration;

use scunblock::flow::{inspect, Identify};
use scunblock::profile::ProfileChoice;
use scunblock::reader::{self, Connection};
use scunblock::transport::Trace;

fn main() -> Result<(), scunblock::Error> {
    let ctx = reader::establish()?;
    let readers = reader::list(&ctx)?;
    for r in &readers {
        let card = r.atr.as_deref().unwrap_or("no card");
        println!("{}: {} ({card})", r.index, r.name);
    }
    let wanted = std::env::args().nth(1);
    let Some(r) = readers.iter().find(|r| match &wanted {
        Some(name) => &r.name == name,
        None => r.card_present,
    }) else {
        println!(
            "no reader with a card{}",
            wanted.map(|w| format!(" named {w:?}")).unwrap_or_default()
        );
        return Ok(());
    };
    let mut conn = Connection::open(&ctx, &r.name, Duration::from_secs(2))?;
    // The family: `--profile` is not given, so the site's profiles and detection decide.
    let choice = ProfileChoice::new(None, None)?;
    let (out, applet) =
        inspect(&mut conn, Identify::Find(&choice), &Trace::off()).map_err(|f| f.error)?;
    println!(
        "family: {} (profile {}, {:?})",
        applet.family(),
        applet.name(),
        out.profile_source
    );
    println!(
        "admin tries: {}, PIN tries: {}",
        out.admin_tries, out.pin_tries_before
    );
    if let Some(puk) = out.puk_tries {
        println!("PUK tries: {puk}");
    }
    println!("card id: {}", out.card.card_id.as_deref().unwrap_or("none"));
    conn.close(false);
    Ok(())
}
