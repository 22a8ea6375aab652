//! Medians and ranges of the samples.

#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn stat(xs: &[f64]) -> Option<Stat> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stat {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// `12.34 (11.90–15.02)` with `prec` decimals.
pub fn fmt_stat(s: Option<Stat>, prec: usize) -> String {
    match s {
        Some(s) => format!("{:.p$} ({:.p$}–{:.p$})", s.median, s.min, s.max, p = prec),
        None => "–".into(),
    }
}
