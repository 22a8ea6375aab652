//! [`Atr::describe`]: a decode as the lines a person reads (`scunblock info`), one per byte
//! or field, in the terms of ISO/IEC 7816-3.

use std::fmt::Write as _;

use super::historical::describe_historical;
use super::{
    ascii, classes, classify, clock_stop, di, fi_fmax, spaced_hex, xor, Atr, ClockStop, Convention,
    InterfaceByte, Role, TckStatus,
};

impl Atr {
    /// Human-readable lines, one per byte or field, sub-fields indented.
    /// The raw ATR itself and the problem list are not repeated here.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        let convention = match self.convention {
            Convention::Direct => "direct convention",
            Convention::Inverse => "inverse convention",
        };
        out.push(format!("TS = {:02X}: {convention}", self.ts));
        let y1 = self.t0 >> 4;
        out.push(format!(
            "T0 = {:02X}: Y1 = {y1:04b} ({}), K = {} historical byte(s)",
            self.t0,
            following(y1, 1),
            self.historical_count
        ));
        for byte in classify(&self.interface_groups) {
            out.push(format!(
                "{} = {:02X}: {}",
                byte.name(),
                byte.value,
                describe_interface_byte(&byte)
            ));
        }
        if !self.missing_interface_bytes.is_empty() {
            out.push(format!(
                "The ATR ends here: {} announced but missing",
                self.missing_interface_bytes.join(" ")
            ));
        }

        let k = usize::from(self.historical_count);
        if k == 0 {
            out.push("No historical bytes".to_string());
        } else if self.historical.is_empty() {
            out.push(format!("Historical bytes: none present (K = {k})"));
        } else {
            let count = if self.historical.len() < k {
                format!("K = {k}, only {} present", self.historical.len())
            } else {
                format!("K = {k}")
            };
            out.push(format!(
                "Historical bytes ({count}): {} \"{}\"",
                spaced_hex(&self.historical),
                ascii(&self.historical)
            ));
            describe_historical(&self.historical_decoded, &self.historical, &mut out);
        }

        let has_td1 = self
            .interface_groups
            .first()
            .is_some_and(|g| g.index == 1 && g.td.is_some());
        let list = self
            .protocols
            .iter()
            .map(|t| format!("T={t}"))
            .collect::<Vec<_>>()
            .join(", ");
        if !self.missing_interface_bytes.is_empty() {
            out.push(
                "Protocols offered: not known (the ATR ends inside the interface bytes)"
                    .to_string(),
            );
        } else if has_td1 {
            out.push(format!("Protocols offered: {list}"));
        } else {
            out.push(format!("Protocols offered: {list} (implicit: no TD1)"));
        }

        out.push(match self.tck_status {
            TckStatus::NotRequired => "TCK: absent, not required (only T=0 offered)".to_string(),
            TckStatus::Ok => format!("TCK = {:02X}: TCK OK", self.tck.unwrap_or(0)),
            TckStatus::Wrong { expected } => format!(
                "TCK = {:02X}: TCK wrong: expected {expected:02X}",
                self.tck.unwrap_or(0)
            ),
            TckStatus::Missing => {
                "TCK missing: required because a protocol other than T=0 is offered".to_string()
            }
            TckStatus::Unknown => "TCK: not checked (the ATR is truncated)".to_string(),
        });

        if !self.extra.is_empty() {
            let mut line = format!("Extra bytes after the ATR: {}", spaced_hex(&self.extra));
            if self.tck_status == TckStatus::NotRequired
                && self.extra.len() == 1
                && xor(self.raw.get(1..).unwrap_or_default()) == 0
            {
                line.push_str(" (a checksum byte, as if a TCK were required)");
            }
            out.push(line);
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Interface byte descriptions

/// "TA2 TD2 follow" for the indicator nibble Y(i) of group `i`.
fn following(y: u8, i: usize) -> String {
    let names: Vec<String> = ['A', 'B', 'C', 'D']
        .iter()
        .enumerate()
        .filter(|(bit, _)| y & (1 << bit) != 0)
        .map(|(_, letter)| format!("T{letter}{i}"))
        .collect();
    match names.len() {
        0 => "no interface bytes follow".to_string(),
        1 => format!("{} follows", names[0]),
        _ => format!("{} follow", names.join(" ")),
    }
}

fn mhz(khz: u32) -> String {
    if khz % 1000 == 0 {
        format!("{} MHz", khz / 1000)
    } else {
        format!("{}.{} MHz", khz / 1000, (khz % 1000) / 100)
    }
}

fn describe_fi_di(v: u8) -> String {
    let (fi, f_max) = fi_fmax(v >> 4);
    let d = di(v);
    let fi_text = fi.map_or(format!("RFU (code {:X})", v >> 4), |f| f.to_string());
    let di_text = d.map_or(format!("RFU (code {:X})", v & 0x0F), |d| d.to_string());
    let mut text = format!("Fi = {fi_text}, Di = {di_text}");
    if let (Some(fi), Some(d), Some(f_max)) = (fi, d, f_max) {
        let (fi, d) = (u64::from(fi), u64::from(d));
        let cycles = if fi % d == 0 {
            (fi / d).to_string()
        } else {
            format!("{:.2}", fi as f64 / d as f64)
        };
        let _ = write!(
            text,
            ", {cycles} cycles/ETU ({} bit/s at 4 MHz, {} bit/s at fmax = {})",
            4_000_000 * d / fi,
            u64::from(f_max) * 1000 * d / fi,
            mhz(f_max)
        );
    } else {
        text.push_str(" (invalid value)");
    }
    text
}

fn describe_interface_byte(b: &InterfaceByte) -> String {
    let v = b.value;
    match b.role {
        Role::FiDi => describe_fi_di(v),
        Role::Vpp1 => {
            if v == 0 {
                "VPP not connected (TB1 is deprecated)".to_string()
            } else {
                let current = match (v >> 5) & 0x03 {
                    0 => "25 mA",
                    1 => "50 mA",
                    2 => "100 mA",
                    _ => "RFU",
                };
                format!(
                    "VPP programming voltage PI1 = {} V, current I = {current} (deprecated, ignored since ISO/IEC 7816-3:2006)",
                    v & 0x1F
                )
            }
        }
        Role::GuardTime => {
            if v == 255 {
                "extra guard time N = 255: minimum guard time (12 etu for T=0, 11 etu for T=1)"
                    .to_string()
            } else {
                format!(
                    "extra guard time N = {v} (character guard time {} etu)",
                    12 + u16::from(v)
                )
            }
        }
        Role::SpecificMode => {
            let change = if v & 0x80 != 0 {
                "unable to change mode"
            } else {
                "capable to change mode"
            };
            let params = if v & 0x10 != 0 {
                "parameters defined implicitly"
            } else {
                "Fi/Di as in TA1"
            };
            let rfu = if v & 0x60 != 0 { " (RFU bits set)" } else { "" };
            format!(
                "specific mode, protocol T={}, {change}, {params}{rfu}",
                v & 0x0F
            )
        }
        Role::Vpp2 => format!("VPP programming voltage PI2 = {v} (units of 0.1 V; deprecated)"),
        Role::T0Wi => {
            let mut text = if v == 0 {
                "T=0 work waiting integer WI = 0 (RFU)".to_string()
            } else {
                format!("T=0 work waiting integer WI = {v} (WT = 960 x {v} x Fi/f)")
            };
            if let Some(t) = b.for_protocol.filter(|&t| t != 0) {
                let _ = write!(text, ", but TD1 names T={t}");
            }
            text
        }
        Role::Structure => {
            let t = v & 0x0F;
            let mut text = format!(
                "Y{} = {:04b} ({}), protocol T={t}",
                b.index + 1,
                v >> 4,
                following(v >> 4, b.index + 1)
            );
            if t == 15 {
                text.push_str(if b.index == 1 {
                    " (invalid in TD1)"
                } else {
                    " (global interface bytes follow)"
                });
            }
            text
        }
        Role::T1Ifsc => match v {
            0 | 255 => format!("T=1 IFSC = {v} (RFU)"),
            _ => format!("T=1 IFSC = {v} bytes"),
        },
        Role::T1Waiting => {
            let (bwi, cwi) = (v >> 4, v & 0x0F);
            let mut text = format!(
                "T=1 BWI = {bwi}, CWI = {cwi} (CWT = 11 + 2^{cwi} = {} etu",
                11 + (1u32 << cwi)
            );
            if bwi <= 9 {
                // BWT = 11 etu + 2^BWI x 960 x 372 / f; the 11 etu are negligible.
                let ms = ((1u64 << bwi) * 960 * 372 + 2000) / 4000;
                let _ = write!(
                    text,
                    ", BWT = 11 etu + 2^{bwi} x 960 x 372/f, about {ms} ms at 4 MHz)"
                );
            } else {
                text.push_str(", BWI > 9 is RFU)");
            }
            text
        }
        Role::T1ErrorDetection => {
            let code = if v & 0x01 != 0 { "CRC" } else { "LRC" };
            let rfu = if v & 0xFE != 0 { " (RFU bits set)" } else { "" };
            format!("T=1 error detection code: {code}{rfu}")
        }
        Role::T15ClockClass => {
            let stop = match clock_stop(v) {
                ClockStop::NotSupported => "clock stop not supported",
                ClockStop::StateL => "clock stop in state L",
                ClockStop::StateH => "clock stop in state H",
                ClockStop::NoPreference => "clock stop, no preference",
            };
            let names: Vec<&str> = classes(v)
                .into_iter()
                .map(|c| match c {
                    'A' => "A (5 V)",
                    'B' => "B (3 V)",
                    _ => "C (1.8 V)",
                })
                .collect();
            let class_text = if names.is_empty() {
                "no class indicated".to_string()
            } else {
                format!("classes accepted: {}", names.join(", "))
            };
            let rfu = if v & 0x38 != 0 {
                " (RFU class bits set)"
            } else {
                ""
            };
            format!("global: {stop}, {class_text}{rfu}")
        }
        Role::T15Spu => match v {
            0 => "global: SPU (contact C6) not used".to_string(),
            v if v & 0x80 != 0 => {
                format!(
                    "global: SPU (contact C6) proprietary use, value {:02X}",
                    v & 0x7F
                )
            }
            v => format!("global: SPU (contact C6) standard use, value {v:02X}"),
        },
        Role::Other(t) => format!("relates to T={t}, not decoded"),
    }
}
