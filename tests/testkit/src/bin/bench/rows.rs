//! The rows of the round-robin and the round-robin itself (A B C A B C ..., a warm-up
//! round first); every run is checked, so a figure never comes from a run that did
//! something else.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use scunblock_testkit::cm::CmServer;
use scunblock_testkit::stack::VStack;

use crate::floor::Floor;
use crate::opts::Opts;
use crate::proc::{Proc, Sample};
use crate::stats::{stat, Stat};
use crate::{die, or_die, NEW_PIN};

/// Request ids the servers know in advance, one per run of the `--request-id` rows (a
/// request is Completed by the run that uses it).
pub fn request_ids(n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("00000000-0000-4000-8000-{i:012x}"))
        .collect()
}

/// What one row of the round-robin runs.
pub enum Action {
    Floor,
    Proc(Box<Proc>),
}

pub struct Row {
    pub key: &'static str,
    pub label: String,
    pub action: Action,
    /// Index into the CM servers (for the request log), if it talks to one.
    pub cm: Option<usize>,
    /// The `--request-id` rows take a fresh request id per run.
    pub request_ids: Option<Vec<String>>,
    pub samples: Vec<Sample>,
    /// Per run: (HTTP calls, distinct TCP connections).
    pub http: Vec<(usize, usize)>,
}

impl Row {
    pub fn new(key: &'static str, label: impl Into<String>, action: Action) -> Row {
        Row {
            key,
            label: label.into(),
            action,
            cm: None,
            request_ids: None,
            samples: vec![],
            http: vec![],
        }
    }

    pub fn wall(&self) -> Option<Stat> {
        stat(&self.samples.iter().map(|s| s.wall_ms).collect::<Vec<_>>())
    }
    pub fn cpu(&self) -> Option<Stat> {
        stat(&self.samples.iter().map(|s| s.cpu_ms).collect::<Vec<_>>())
    }
    pub fn rss_mib(&self) -> Option<Stat> {
        stat(
            &self
                .samples
                .iter()
                .map(|s| s.rss_kib / 1024.0)
                .collect::<Vec<_>>(),
        )
    }
    pub fn apdu(&self) -> Option<Stat> {
        stat(&self.samples.iter().map(|s| s.apdu_ms).collect::<Vec<_>>())
    }
}

pub struct Env {
    pub agent: PathBuf,
    pub key: PathBuf,
    pub stack: VStack,
}

impl Env {
    /// `scunblock ARGS` against the main stack, new PIN from the environment.
    pub fn agent(&self, args: &[&dyn AsRef<OsStr>]) -> Proc {
        Proc::new(&self.agent, args)
            .env("PCSCLITE_CSOCK_NAME", self.stack.csock())
            .env("BENCH_NEW_PIN", NEW_PIN)
    }
}

pub fn round_robin(
    rows: &mut [Row],
    floor: &Floor,
    servers: &mut [CmServer],
    o: &Opts,
    work: &Path,
) {
    let err = work.join("stderr.txt");
    let total = o.warmup + o.runs;
    for round in 0..total {
        for row in rows.iter_mut() {
            let sample = match &row.action {
                Action::Floor => floor.run(),
                Action::Proc(p) => {
                    let mut p = (**p).clone();
                    if let Some(ids) = &row.request_ids {
                        p.args.push("--request-id".into());
                        p.args.push(ids[round].clone().into());
                    }
                    p.measure_ok(None, &err)
                }
            };
            let sample = sample.unwrap_or_else(|e| die(format!("{}: {e}", row.label)));
            let http = row.cm.map(|i| {
                let reqs = or_die(servers[i].new_requests());
                let conns: BTreeSet<String> = reqs.iter().map(|r| r["conn"].to_string()).collect();
                if reqs
                    .iter()
                    .any(|r| r["status"].as_u64().is_none_or(|s| s >= 300))
                {
                    die(format!("{}: a CM call failed: {reqs:?}", row.label));
                }
                (reqs.len(), conns.len())
            });
            if round >= o.warmup {
                row.samples.push(sample);
                if let Some(h) = http {
                    row.http.push(h);
                }
            }
        }
        if round + 1 == o.warmup {
            eprintln!("scunblock-bench: warm-up done, measuring {} rounds", o.runs);
        }
    }
}
