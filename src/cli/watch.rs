//! `scunblock watch`: check every option, load the key (or CM setup) once,
//! then watch until SIGTERM/SIGINT. The watcher itself is the library's
//! (src/watch.rs). Which options go with --unblock is clap's (args.rs).

use std::time::Duration;

use super::args::{Global, WatchArgs};
use super::{cm, cm_options_need_cm, profiles, CmdResult};
use scunblock::key_source::{KeySource, Use};
use scunblock::watch;

pub(super) fn run(g: &Global, a: &WatchArgs) -> CmdResult {
    // Before anything can start a thread: SIGTERM/SIGINT go to one thread.
    watch::block_signals();
    let profiles = profiles(g)?;
    let readers = watch::readers(g.reader.as_deref())?;
    cm_options_need_cm(&a.key, &a.cm)?;
    // The key is read, CM checked or the token logged in to, once, before
    // any reader is watched. clap gives a key source with --unblock, and
    // only then; watch runs unattended and asks for no token PIN.
    let source = a.key.source();
    let responders = match &source {
        Some(src) if a.unblock => Some(src.factory(
            Use::Watch,
            &|url, p| cm::factory(url, &a.cm, p, g.json),
            None,
        )?),
        _ => None,
    };
    // Secrets' variables: already removed by secret::read; the commands'
    // environments drop them again by name.
    let hidden_env = source
        .iter()
        .flat_map(KeySource::secret_vars)
        .chain(a.cm.cm_token_env.iter().cloned())
        .collect();
    let cfg = watch::Config {
        unblock: a.unblock,
        always: a.always,
        retry_after_failure: a.retry_after_failure,
        new_pin_command: a.new_pin_command.clone(),
        new_pin_timeout: Duration::from_secs(a.new_pin_timeout),
        card_id_command: a.card_id_command.clone(),
        card_id_timeout: Duration::from_secs(a.card_id_timeout),
        puk_command: a.puk_command.clone(),
        allow_unknown_tries: a.allow_unknown_tries,
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
        readers,
        trace: g.trace,
        json: g.json,
        hidden_env,
    };
    watch::run(cfg, profiles, responders)?;
    Ok(())
}
