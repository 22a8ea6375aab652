//! One private stack with one card in reader 0 and a directory for the run's files: the
//! harness of the tests that run the binary against a single card (families, faults,
//! hostile). Each test file says which card and which environment its runs get.
#![allow(dead_code)]

use serde_json::Value;

use super::run::{admin_key_file, scunblock, unblock_args, Run, GOLDEN_CHALLENGE};
use super::stack::{Card, VStack};

/// The card options of a blocked PIN (no tries left) that asks the CM docs' challenge.
pub const BLOCKED: [&str; 4] = ["--challenge", GOLDEN_CHALLENGE, "--pin-tries", "0"];

/// [`BLOCKED`] followed by `card_args`.
pub fn blocked<'a>(card_args: &[&'a str]) -> Vec<&'a str> {
    let mut args = BLOCKED.to_vec();
    args.extend_from_slice(card_args);
    args
}

pub struct Rig {
    pub stack: VStack,
    pub card: Card,
    pub dir: tempfile::TempDir,
    /// What every run's environment starts with; a run's own values come later and win.
    env: Vec<(&'static str, &'static str)>,
}

impl Rig {
    /// A new stack (two readers) with a card started with `card_args`; every run gets `env`.
    pub fn new(card_args: &[&str], env: &[(&'static str, &'static str)]) -> Rig {
        Rig::on(VStack::start(2), card_args, env)
    }

    /// The same on a stack the test started itself.
    pub fn on(stack: VStack, card_args: &[&str], env: &[(&'static str, &'static str)]) -> Rig {
        let card = stack.insert(0, card_args);
        Rig {
            stack,
            card,
            dir: tempfile::tempdir().unwrap(),
            env: env.to_vec(),
        }
    }

    /// `hex` in the rig's admin.key (0600); its path.
    pub fn key_file(&self, hex: &str) -> String {
        admin_key_file(self.dir.path(), hex)
    }

    /// The rig's environment, then `env`.
    pub fn env<'a>(&self, env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all: Vec<(&str, &str)> = self.env.clone();
        all.extend_from_slice(env);
        all
    }

    /// `scunblock args` on the rig's stack, with the rig's environment and then `env`.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        scunblock(Some(&self.stack.csock()), args, &self.env(env), None)
    }

    /// `unblock --admin-key-file <key> --new-pin-env NEW_PIN --json` plus `extra`.
    pub fn unblock_with_key(&self, key: &str, extra: &[&str]) -> Run {
        let key = self.key_file(key);
        let mut args = unblock_args(&key);
        args.push("--json");
        args.extend_from_slice(extra);
        self.run(&args, &[])
    }

    pub fn state(&self) -> Value {
        self.card.state()
    }
}
