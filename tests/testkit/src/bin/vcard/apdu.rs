//! Command APDU parsing (ISO 7816-4 short and extended cases) and response building.

/// A parsed command APDU. `le` is the number of bytes the host expects
/// (an encoded `00` means 256, or 65536 in extended form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    pub le: Option<usize>,
}

/// Why a byte string is not a command APDU (the card answers 6700).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl Command {
    pub fn parse(apdu: &[u8]) -> Result<Command, Malformed> {
        let (header, body) = match apdu {
            [cla, ins, p1, p2, body @ ..] => ([*cla, *ins, *p1, *p2], body),
            _ => return Err(Malformed),
        };
        let (data, le) = parse_body(body)?;
        Ok(Command {
            cla: header[0],
            ins: header[1],
            p1: header[2],
            p2: header[3],
            data: data.to_vec(),
            le,
        })
    }
}

/// Splits what follows the 4 header bytes into (data, Le).
fn parse_body(body: &[u8]) -> Result<(&[u8], Option<usize>), Malformed> {
    let short_le = |b: u8| if b == 0 { 256 } else { usize::from(b) };
    let ext_le = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
        0 => 65536,
        n => usize::from(n),
    };
    match body {
        // Case 1.
        [] => Ok((&[], None)),
        // Case 2 short.
        [le] => Ok((&[], Some(short_le(*le)))),
        // Case 2 extended.
        [0, hi, lo] => Ok((&[], Some(ext_le(*hi, *lo)))),
        // Extended case 3 / 4.
        [0, hi, lo, rest @ ..] => {
            let lc = usize::from(u16::from_be_bytes([*hi, *lo]));
            if lc == 0 {
                return Err(Malformed);
            }
            match rest.len().checked_sub(lc) {
                Some(0) => Ok((rest, None)),
                Some(2) => Ok((&rest[..lc], Some(ext_le(rest[lc], rest[lc + 1])))),
                _ => Err(Malformed),
            }
        }
        // Short case 3 / 4.
        [lc, rest @ ..] => {
            let lc = usize::from(*lc);
            match rest.len().checked_sub(lc) {
                Some(0) => Ok((rest, None)),
                Some(1) => Ok((&rest[..lc], Some(short_le(rest[lc])))),
                _ => Err(Malformed),
            }
        }
    }
}

/// A response APDU before T=0 treatment: data and the status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<u8>,
    pub sw: u16,
}

impl Response {
    pub fn sw(sw: u16) -> Response {
        Response {
            data: Vec::new(),
            sw,
        }
    }

    pub fn ok(data: Vec<u8>) -> Response {
        Response { data, sw: sw::OK }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_be_bytes());
        out
    }
}

/// One BER-TLV element: tag (1 or 2 bytes, as a number) and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u16,
    pub value: &'a [u8],
}

/// Parses a run of BER-TLV elements (tags of 1 or 2 bytes, lengths up to `82 xx xx`);
/// None when the bytes are not exactly such a run.
pub fn parse_tlvs(mut data: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (tag, rest) = match data {
            [t, rest @ ..] if t & 0x1F != 0x1F => (u16::from(*t), rest),
            [t1, t2, rest @ ..] => (u16::from_be_bytes([*t1, *t2]), rest),
            _ => return None,
        };
        let (len, rest) = match rest {
            [l, rest @ ..] if *l < 0x80 => (usize::from(*l), rest),
            [0x81, l, rest @ ..] => (usize::from(*l), rest),
            [0x82, hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => return None,
        };
        if rest.len() < len {
            return None;
        }
        out.push(Tlv {
            tag,
            value: &rest[..len],
        });
        data = &rest[len..];
    }
    Some(out)
}

/// The inside of a `7C` dynamic authentication template (GENERAL AUTHENTICATE data):
/// None unless the data is exactly one `7C` element holding a run of TLVs.
pub fn auth_template(data: &[u8]) -> Option<Vec<Tlv<'_>>> {
    match parse_tlvs(data)?.as_slice() {
        [Tlv { tag: 0x7C, value }] => parse_tlvs(value),
        _ => None,
    }
}

/// Encodes one TLV (tag given as its bytes; BER length).
pub fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    match value.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
        n => {
            let n = u16::try_from(n).unwrap_or(u16::MAX);
            out.push(0x82);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(value);
    out
}

/// Status words the card uses.
pub mod sw {
    pub const OK: u16 = 0x9000;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const WRONG_CRYPTOGRAM: u16 = 0x6300;
    pub const SECURITY_NOT_SATISFIED: u16 = 0x6982;
    pub const AUTH_BLOCKED: u16 = 0x6983;
    pub const DATA_INVALID: u16 = 0x6984;
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    pub const COMMAND_NOT_ALLOWED: u16 = 0x6986;
    pub const INCORRECT_DATA: u16 = 0x6A80;
    pub const NOT_FOUND: u16 = 0x6A82;
    pub const INCORRECT_P1P2: u16 = 0x6A86;
    pub const REF_DATA_NOT_FOUND: u16 = 0x6A88;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;

    /// `63Cx`: verification failed, x tries left (capped at 15).
    pub fn tries_left(tries: u32) -> u16 {
        0x63C0 | tries.min(15) as u16
    }

    /// `6Cxx`: wrong Le, resend with Le = xx.
    pub fn wrong_le(exact: u8) -> u16 {
        0x6C00 | u16::from(exact)
    }

    /// `61xx`: xx more bytes available with GET RESPONSE (`00` = 256).
    pub fn bytes_remaining(n: usize) -> u16 {
        0x6100 | (n.min(256) & 0xFF) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(hex: &str) -> Result<Command, Malformed> {
        Command::parse(&hex::decode(hex).unwrap())
    }

    #[test]
    fn cases() {
        let c = parse("00820000").unwrap();
        assert_eq!((c.ins, c.data.len(), c.le), (0x82, 0, None));
        let c = parse("0084000008").unwrap();
        assert_eq!((c.data.len(), c.le), (0, Some(8)));
        let c = parse("0084000000").unwrap();
        assert_eq!(c.le, Some(256));
        let c = parse("002C0280083132333435363738").unwrap();
        assert_eq!(
            (c.p1, c.p2, c.data.as_slice(), c.le),
            (2, 0x80, &b"12345678"[..], None)
        );
        let c = parse("00A4040002AABB00").unwrap();
        assert_eq!((c.data.as_slice(), c.le), (&[0xAA, 0xBB][..], Some(256)));
        let c = parse("00840000000008").unwrap();
        assert_eq!(c.le, Some(8));
        let c = parse("0020008000000231320000").unwrap();
        assert_eq!((c.data.as_slice(), c.le), (&b"12"[..], Some(65536)));
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "00",
            "008200",
            "0082000003AABB",
            "0082000001AABBCC",
            "0082000000000000",
        ] {
            assert_eq!(parse(bad), Err(Malformed), "{bad}");
        }
    }

    #[test]
    fn tlvs() {
        let d = hex::decode("7c0a8108d61143f9ccffd2ca").unwrap();
        let t = auth_template(&d).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].tag, t[0].value.len()), (0x81, 8));
        let d = hex::decode("7c028100").unwrap();
        let t = auth_template(&d).unwrap();
        assert_eq!((t[0].tag, t[0].value), (0x81, &[][..]));
        let d = hex::decode("5c035fc102df2002aabb").unwrap();
        let t = parse_tlvs(&d).unwrap();
        assert_eq!((t[0].tag, t[0].value), (0x5C, &[0x5F, 0xC1, 0x02][..]));
        // DF 20: a two-byte tag (the first byte ends in 1F).
        assert_eq!((t[1].tag, t[1].value), (0xDF20, &[0xAA, 0xBB][..]));
        let long = tlv(&[0x53], &[1; 200]);
        assert_eq!(&long[..3], &[0x53, 0x81, 200]);
        assert_eq!(parse_tlvs(&long).unwrap()[0].value.len(), 200);
        assert_eq!(
            tlv(&[0xDF, 0x20], &[9; 300])[..5],
            [0xDF, 0x20, 0x82, 0x01, 0x2C]
        );
        for bad in ["7c", "7c0a81", "7c028100aa", "8182", "7c0281"] {
            assert!(auth_template(&hex::decode(bad).unwrap()).is_none(), "{bad}");
        }
    }

    #[test]
    fn status_words() {
        assert_eq!(sw::tries_left(2), 0x63C2);
        assert_eq!(sw::tries_left(99), 0x63CF);
        assert_eq!(sw::bytes_remaining(256), 0x6100);
        assert_eq!(sw::bytes_remaining(8), 0x6108);
        assert_eq!(Response::ok(vec![1]).to_bytes(), vec![1, 0x90, 0]);
    }
}
