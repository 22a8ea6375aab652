//! What the figures were measured on: the machine, its load, tool versions.

use std::fs;
use std::process::{Command, Stdio};

pub fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn machine() -> String {
    let cpu = field_of("/proc/cpuinfo", "model name")
        .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "?".into());
    let hv = if fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains(" hypervisor")) {
        ", virtual machine"
    } else {
        ""
    };
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let os = field_of("/etc/os-release", "PRETTY_NAME=")
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    let mem = field_of("/proc/meminfo", "MemTotal:")
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .map_or(String::new(), |kb| {
            format!(", {:.1} GiB RAM", kb / 1024.0 / 1024.0)
        });
    format!("nproc {nproc}, {cpu}{hv}{mem}; Linux {kernel}; {os}")
}

/// The rest of the first line of the file at `path` that starts with `prefix`.
fn field_of(path: &str, prefix: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
}
