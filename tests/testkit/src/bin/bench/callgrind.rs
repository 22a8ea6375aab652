//! Callgrind instruction counts: repeatable where time is not.

use std::fs;
use std::path::Path;

use crate::proc::Proc;

/// Instructions executed in user space (callgrind's Ir total) by one run of `p`.
pub fn callgrind(p: &Proc, work: &Path) -> Result<u64, String> {
    let out = work.join("callgrind.out");
    let mut v = Proc::new(
        "valgrind",
        &[
            &"--tool=callgrind",
            &format!("--callgrind-out-file={}", out.display()),
        ],
    );
    v.args.push(p.program.clone().into());
    v.args.extend(p.args.iter().cloned());
    v.env = p.env.clone();
    let err = work.join("callgrind.stderr");
    v.measure_ok(None, &err)?;
    let text = fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| "no callgrind summary".to_string())
}
