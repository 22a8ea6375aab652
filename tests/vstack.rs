//! The test harness itself: scripts/vstack + scunblock-vcard under a real pcscd.
//! Needs root and the packages of `scripts/vstack install`. What pcscd did is read from the
//! cards' state files (power-ons, ATR requests, connections), not through a PC/SC client.

mod common;

use std::time::Duration;

use common::stack::VStack;

#[test]
fn four_slots_have_their_own_readers_and_ports() {
    let stack = VStack::start(4);
    let names: Vec<String> = (0..4).map(|k| stack.reader_name(k)).collect();
    assert_eq!(
        names,
        [
            "Virtual PCD 00 00",
            "Virtual PCD 00 01",
            "Virtual PCD B 00 00",
            "Virtual PCD B 00 01"
        ]
    );
    let cards: Vec<_> = (0..4).map(|k| stack.insert(k, &["--quiet"])).collect();
    for (k, card) in cards.iter().enumerate() {
        let state = card.state();
        // pcscd powered it on once (and powers idle cards off again after a while).
        assert_eq!(state["power_ons"], 1, "slot {k}");
        assert!(card.log().contains(&format!(":{}", stack.port(k))));
    }
    assert!(stack.csock().exists());
}

#[test]
fn reinsert_keeps_the_counters_insert_does_not() {
    let stack = VStack::start(2);
    let card = stack.insert(0, &["--pin-tries", "1", "--admin-tries", "2"]);
    assert_eq!(card.state()["pin_tries"], 1);
    card.remove();
    assert!(!card.is_alive());
    let again = stack.reinsert(0, &[]);
    assert_ne!(again.pid(), card.pid());
    let state = again.state();
    assert_eq!(
        (state["pin_tries"].as_u64(), state["admin_tries"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        state["apdus"].as_array().map(Vec::len),
        Some(0),
        "logs are per process"
    );
    again.remove();
    let fresh = stack.insert(0, &[]);
    assert_eq!(fresh.state()["pin_tries"], 3);
}

#[test]
fn reconnecting_card_survives_a_pcscd_restart() {
    let stack = VStack::start(2);
    let card = stack.insert(0, &["--reconnect"]);
    let plain = stack.insert(1, &[]);
    stack.kill_pcscd();
    plain.wait_exit(Duration::from_secs(5));
    assert!(card.is_alive());
    stack.restart_pcscd();
    let state = card.wait_state(Duration::from_secs(5), |s| {
        s["connections"] == 2 && s["power_ons"].as_u64() >= Some(2)
    });
    assert_eq!(state["pid"], card.pid());
}

#[test]
fn two_stacks_at_once() {
    let a = VStack::start(2);
    let b = VStack::start(2);
    assert_ne!(a.csock(), b.csock());
    let ca = a.insert(0, &["--pin", "1111"]);
    let cb = b.insert(0, &["--pin", "2222"]);
    assert_eq!(ca.state()["pin"], "1111");
    assert_eq!(cb.state()["pin"], "2222");
    assert_eq!(a.reader_name(0), b.reader_name(0));
}
