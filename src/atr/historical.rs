//! The historical bytes (ISO/IEC 7816-4 8.1.1): the category indicator, the compact-TLV
//! data objects and the status indicator, decoded and described.

use std::fmt::Write as _;

use serde::Serialize;

use super::{ascii, ser_hex, ser_opt_byte, ser_opt_sw, spaced_hex};

/// How the historical bytes are organised (category indicator, ISO/IEC 7816-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoricalFormat {
    /// No historical bytes.
    None,
    /// 00: compact-TLV objects followed by a mandatory 3-byte status indicator.
    CompactTlvWithStatus,
    /// 10: the next byte is a DIR data reference.
    DirDataReference,
    /// 80: compact-TLV objects (a status indicator object may come last).
    CompactTlv,
    /// 81..8F: reserved for future use.
    Reserved,
    /// Anything else: proprietary.
    Proprietary,
}

/// One compact-TLV data object of the historical bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompactTlv {
    /// Tag nibble (1 country code ... F application identifier).
    pub tag: u8,
    /// What ISO/IEC 7816-4 calls this tag.
    pub name: &'static str,
    /// Length nibble; more than `value.len()` when the bytes ran out.
    pub declared_len: u8,
    #[serde(serialize_with = "ser_hex")]
    pub value: Vec<u8>,
}

impl CompactTlv {
    /// The object claims more bytes than the historical bytes hold.
    pub fn is_truncated(&self) -> bool {
        self.value.len() < usize::from(self.declared_len)
    }
}

/// Life cycle status and status word from the historical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusIndicator {
    #[serde(serialize_with = "ser_opt_byte")]
    pub lcs: Option<u8>,
    #[serde(serialize_with = "ser_opt_sw")]
    pub sw: Option<u16>,
}

/// The historical bytes, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoricalBytes {
    #[serde(serialize_with = "ser_opt_byte")]
    pub category: Option<u8>,
    pub format: HistoricalFormat,
    pub objects: Vec<CompactTlv>,
    /// Category 00: the last three bytes; category 80: the last status
    /// indicator object (tag 8), if any.
    pub status: Option<StatusIndicator>,
    /// Category 10: the DIR data reference.
    #[serde(serialize_with = "ser_opt_byte")]
    pub dir_data_reference: Option<u8>,
}

// ---------------------------------------------------------------------------
// Historical bytes (ISO/IEC 7816-4)

fn tag_name(tag: u8) -> &'static str {
    match tag {
        0x1 => "country code",
        0x2 => "issuer identification number",
        0x3 => "card service data",
        0x4 => "initial access data",
        0x5 => "card issuer's data",
        0x6 => "pre-issuing data",
        0x7 => "card capabilities",
        0x8 => "status indicator",
        0xF => "application identifier",
        _ => "RFU",
    }
}

fn parse_compact_tlv(mut data: &[u8]) -> Vec<CompactTlv> {
    let mut objects = Vec::new();
    while let Some((&first, rest)) = data.split_first() {
        let take = usize::from(first & 0x0F).min(rest.len());
        let (value, tail) = rest.split_at(take);
        objects.push(CompactTlv {
            tag: first >> 4,
            name: tag_name(first >> 4),
            declared_len: first & 0x0F,
            value: value.to_vec(),
        });
        data = tail;
    }
    objects
}

fn status_from_object(value: &[u8]) -> Option<StatusIndicator> {
    match *value {
        [lcs] => Some(StatusIndicator {
            lcs: Some(lcs),
            sw: None,
        }),
        [sw1, sw2] => Some(StatusIndicator {
            lcs: None,
            sw: Some(u16::from_be_bytes([sw1, sw2])),
        }),
        [lcs, sw1, sw2] => Some(StatusIndicator {
            lcs: Some(lcs),
            sw: Some(u16::from_be_bytes([sw1, sw2])),
        }),
        _ => None,
    }
}

pub(super) fn decode_historical(h: &[u8]) -> HistoricalBytes {
    let mut out = HistoricalBytes {
        category: h.first().copied(),
        format: HistoricalFormat::None,
        objects: Vec::new(),
        status: None,
        dir_data_reference: None,
    };
    let Some((&category, rest)) = h.split_first() else {
        return out;
    };
    match category {
        0x00 => {
            out.format = HistoricalFormat::CompactTlvWithStatus;
            if let Some(split) = rest.len().checked_sub(3) {
                let (objects, status) = rest.split_at(split);
                out.objects = parse_compact_tlv(objects);
                out.status = status_from_object(status);
            }
        }
        0x10 => {
            out.format = HistoricalFormat::DirDataReference;
            out.dir_data_reference = rest.first().copied();
        }
        0x80 => {
            out.format = HistoricalFormat::CompactTlv;
            out.objects = parse_compact_tlv(rest);
            out.status = out
                .objects
                .iter()
                .rev()
                .find(|o| o.tag == 8)
                .and_then(|o| status_from_object(&o.value));
        }
        0x81..=0x8F => out.format = HistoricalFormat::Reserved,
        _ => out.format = HistoricalFormat::Proprietary,
    }
    out
}

fn life_cycle_status(lcs: u8) -> &'static str {
    match lcs {
        0x00 => "no information given",
        0x01 => "creation state",
        0x03 => "initialisation state",
        0x05 | 0x07 => "operational state (activated)",
        0x04 | 0x06 => "operational state (deactivated)",
        0x0C..=0x0F => "termination state",
        0x10..=0xFF => "proprietary",
        _ => "RFU",
    }
}

fn describe_status(s: &StatusIndicator) -> String {
    let mut parts = Vec::new();
    if let Some(lcs) = s.lcs {
        parts.push(format!("LCS = {lcs:02X} ({})", life_cycle_status(lcs)));
    }
    if let Some(sw) = s.sw {
        let note = if sw == 0x9000 { " (no error)" } else { "" };
        parts.push(format!("SW = {:02X} {:02X}{note}", sw >> 8, sw & 0xFF));
    }
    parts.join(", ")
}

/// The names of the bits of `b` that are set, in the table's order.
fn set_bits(b: u8, bits: &[(u8, &str)]) -> Vec<String> {
    bits.iter()
        .filter(|(mask, _)| b & mask != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

fn bit_list(b: u8, bits: &[(u8, &str)]) -> String {
    let set = set_bits(b, bits);
    if set.is_empty() {
        "none".to_string()
    } else {
        set.join(", ")
    }
}

fn describe_card_service(b: u8) -> String {
    const SERVICES: [(u8, &str); 4] = [
        (0x80, "application selection by full DF name"),
        (0x40, "application selection by partial DF name"),
        (0x20, "BER-TLV data objects in EF.DIR"),
        (0x10, "BER-TLV data objects in EF.ATR"),
    ];
    let mut parts = set_bits(b, &SERVICES);
    parts.push(match (b >> 1) & 0x07 {
        0b100 => "EF.DIR/EF.ATR read by READ BINARY".to_string(),
        0b000 => "EF.DIR/EF.ATR read by READ RECORD(S)".to_string(),
        0b010 => "EF.DIR/EF.ATR read by GET DATA".to_string(),
        other => format!("EF.DIR/EF.ATR access {other:03b} (RFU)"),
    });
    parts.push(if b & 0x01 != 0 {
        "card without MF".to_string()
    } else {
        "card with MF".to_string()
    });
    format!("card service data {b:02X}: {}", parts.join(", "))
}

fn describe_capabilities(value: &[u8], out: &mut Vec<String>) {
    const SELECTION: [(u8, &str); 8] = [
        (0x80, "DF selection by full DF name"),
        (0x40, "DF selection by partial DF name"),
        (0x20, "DF selection by path"),
        (0x10, "DF selection by file identifier"),
        (0x08, "implicit DF selection"),
        (0x04, "short EF identifier"),
        (0x02, "record number"),
        (0x01, "record identifier"),
    ];
    if let Some(&b) = value.first() {
        out.push(format!(
            "    selection methods {b:02X}: {}",
            bit_list(b, &SELECTION)
        ));
    }
    if let Some(&b) = value.get(1) {
        let write = match (b >> 5) & 0x03 {
            0 => "one-time write",
            1 => "proprietary",
            2 => "write OR",
            _ => "write AND",
        };
        let tlv = if b & 0x80 != 0 {
            "EFs of TLV structure supported, "
        } else {
            ""
        };
        let ff = if b & 0x10 != 0 { "valid" } else { "invalid" };
        out.push(format!(
            "    data coding {b:02X}: {tlv}write functions {write}, FF as first tag byte {ff}, data unit {} quartet(s)",
            1u32 << (b & 0x0F)
        ));
    }
    if let Some(&b) = value.get(2) {
        const LENGTHS: [(u8, &str); 3] = [
            (0x80, "command chaining"),
            (0x40, "extended Lc and Le fields"),
            (0x20, "extended length information in EF.ATR/INFO"),
        ];
        let mut parts = set_bits(b, &LENGTHS);
        match (b >> 3) & 0x03 {
            0 => parts.push("no logical channels".to_string()),
            assign => {
                let by = match assign {
                    1 => "by the interface device",
                    2 => "by the card",
                    _ => "by the card and the interface device",
                };
                let max = match b & 0x07 {
                    7 => "8 or more".to_string(),
                    n => (n + 1).to_string(),
                };
                parts.push(format!(
                    "logical channel numbers assigned {by}, at most {max} logical channels"
                ));
            }
        }
        out.push(format!("    {b:02X}: {}", parts.join(", ")));
    }
    if let Some(rest) = value.get(3..).filter(|r| !r.is_empty()) {
        out.push(format!("    further bytes: {}", spaced_hex(rest)));
    }
}

fn describe_object(o: &CompactTlv, out: &mut Vec<String>) {
    let mut line = format!(
        "  {:X}{:X}: tag {:X} ({}), {} byte(s)",
        o.tag,
        o.declared_len,
        o.tag,
        o.name,
        o.value.len()
    );
    if !o.value.is_empty() {
        let _ = write!(line, ": {}", spaced_hex(&o.value));
        if matches!(o.tag, 0x4 | 0x5 | 0x6 | 0xF) {
            let _ = write!(line, " \"{}\"", ascii(&o.value));
        }
    }
    if o.is_truncated() {
        let _ = write!(line, " (truncated: {} byte(s) announced)", o.declared_len);
    }
    out.push(line);
    match o.tag {
        0x3 => {
            if let Some(&b) = o.value.first() {
                out.push(format!("    {}", describe_card_service(b)));
            }
        }
        0x7 => describe_capabilities(&o.value, out),
        0x8 => {
            if let Some(status) = status_from_object(&o.value) {
                out.push(format!("    {}", describe_status(&status)));
            }
        }
        _ => {}
    }
}

pub(super) fn describe_historical(h: &HistoricalBytes, raw: &[u8], out: &mut Vec<String>) {
    let category = h.category.unwrap_or(0);
    match h.format {
        HistoricalFormat::None => return,
        HistoricalFormat::CompactTlvWithStatus => {
            out.push(
                "  Category indicator 00: compact-TLV data objects, then a 3-byte status indicator"
                    .to_string(),
            );
        }
        HistoricalFormat::DirDataReference => {
            out.push("  Category indicator 10: DIR data reference follows".to_string());
            match h.dir_data_reference {
                Some(r) => out.push(format!("  DIR data reference: {r:02X}")),
                None => out.push("  DIR data reference: missing".to_string()),
            }
            if let Some(rest) = raw.get(2..).filter(|r| !r.is_empty()) {
                out.push(format!("  Further bytes: {}", spaced_hex(rest)));
            }
        }
        HistoricalFormat::CompactTlv => {
            out.push(
                "  Category indicator 80: compact-TLV data objects (a status indicator may come last)"
                    .to_string(),
            );
        }
        HistoricalFormat::Reserved => {
            out.push(format!(
                "  Category indicator {category:02X}: reserved for future use, not decoded"
            ));
        }
        HistoricalFormat::Proprietary => {
            out.push(format!(
                "  Category indicator {category:02X}: proprietary format, not decoded"
            ));
        }
    }
    for o in &h.objects {
        describe_object(o, out);
    }
    if h.format == HistoricalFormat::CompactTlvWithStatus {
        match &h.status {
            Some(status) => out.push(format!("  Status indicator: {}", describe_status(status))),
            None => out.push(
                "  Status indicator missing: category 00 needs 3 bytes after the objects"
                    .to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn historical_categories() {
        let h = decode_historical(&[0x10, 0x42, 0x01]);
        assert_eq!(h.format, HistoricalFormat::DirDataReference);
        assert_eq!(h.dir_data_reference, Some(0x42));
        assert_eq!(
            decode_historical(&[0x85, 1]).format,
            HistoricalFormat::Reserved
        );
        assert_eq!(decode_historical(&[]).format, HistoricalFormat::None);
        // Category 00 without room for its status indicator.
        let h = decode_historical(&[0x00, 0x90]);
        assert_eq!(h.format, HistoricalFormat::CompactTlvWithStatus);
        assert_eq!(h.status, None);
        // 31: tag 3 (card service data), 1 byte; 82: status indicator, SW only.
        let h = decode_historical(&[0x80, 0x31, 0xC0, 0x82, 0x90, 0x00]);
        assert_eq!(h.objects.len(), 2);
        assert_eq!(
            h.status,
            Some(StatusIndicator {
                lcs: None,
                sw: Some(0x9000)
            })
        );
        let mut lines = Vec::new();
        describe_historical(&h, &[0x80, 0x31, 0xC0, 0x82, 0x90, 0x00], &mut lines);
        assert!(lines.iter().any(|l| l
            == "    card service data C0: application selection by full DF name, application selection by partial DF name, EF.DIR/EF.ATR read by READ RECORD(S), card with MF"));
    }
}
