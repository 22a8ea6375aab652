//! BER-TLV, as far as smart card data objects need it: the `7C` dynamic
//! authentication templates of GENERAL AUTHENTICATE and the answers of GET
//! DATA (GIDS, PIV). Tags of one to three bytes, definite lengths up to
//! 65535. Card data is hostile: every parse is bounded and never panics.

/// One TLV: its tag (the tag bytes, big-endian) and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u32,
    pub value: &'a [u8],
}

/// Split `data` into its TLVs (one level). `None` when it is not BER-TLV.
pub fn parse(mut data: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        // 00 and FF between objects are padding (ISO 7816-4 5.2.2).
        if data[0] == 0x00 || data[0] == 0xFF {
            data = &data[1..];
            continue;
        }
        let (tlv, rest) = next(data)?;
        out.push(tlv);
        data = rest;
    }
    Some(out)
}

/// The first TLV of `data` and what follows it.
pub fn next(data: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let mut i = 0;
    let mut tag = u32::from(*data.first()?);
    i += 1;
    if tag & 0x1F == 0x1F {
        loop {
            let b = *data.get(i)?;
            i += 1;
            tag = (tag << 8) | u32::from(b);
            if b & 0x80 == 0 {
                break;
            }
            if i >= 3 {
                return None;
            }
        }
    }
    let first = *data.get(i)?;
    i += 1;
    let len = match first {
        0..=0x7F => usize::from(first),
        0x81 => {
            let n = usize::from(*data.get(i)?);
            i += 1;
            n
        }
        0x82 => {
            let n = usize::from(*data.get(i)?) << 8 | usize::from(*data.get(i + 1)?);
            i += 2;
            n
        }
        _ => return None,
    };
    let end = i.checked_add(len)?;
    let value = data.get(i..end)?;
    Some((Tlv { tag, value }, &data[end..]))
}

/// The value of the first TLV with `tag` at this level.
pub fn find(data: &[u8], tag: u32) -> Option<&[u8]> {
    parse(data)?
        .into_iter()
        .find(|t| t.tag == tag)
        .map(|t| t.value)
}

/// Encode one TLV (tag of 1 to 3 bytes; value shorter than 64 KiB).
pub fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 7);
    let tag_bytes = tag.to_be_bytes();
    let skip = tag_bytes.iter().take(3).take_while(|b| **b == 0).count();
    out.extend_from_slice(&tag_bytes[skip..]);
    match value.len() {
        n @ 0..=0x7F => out.push(n as u8),
        n @ 0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_general_authenticate_answer() {
        let data = hex::decode("7C0A8108D61143F9CCFFD2CA").unwrap();
        let inner = find(&data, 0x7C).unwrap();
        assert_eq!(
            find(inner, 0x81).unwrap(),
            hex::decode("D61143F9CCFFD2CA").unwrap()
        );
        assert_eq!(find(inner, 0x82), None);
    }

    #[test]
    fn two_byte_tags_and_long_lengths() {
        let pin = hex::decode("7F7106970103930103").unwrap();
        let v = find(&pin, 0x7F71).unwrap();
        assert_eq!(find(v, 0x97), Some(&[3u8][..]));
        let mut big = vec![0x53, 0x82, 0x01, 0x00];
        big.extend(vec![0xAB; 256]);
        assert_eq!(find(&big, 0x53).unwrap().len(), 256);
        assert_eq!(encode(0x53, &[0xAB; 256]), big);
        assert_eq!(encode(0x7F71, &[1]), vec![0x7F, 0x71, 1, 1]);
        assert_eq!(encode(0x5FC102, &[]), vec![0x5F, 0xC1, 0x02, 0]);
    }

    #[test]
    fn hostile_data_never_panics() {
        for bad in [
            &b""[..],
            &[0x7C],
            &[0x7C, 0x05, 1],
            &[0x7C, 0x83, 0, 0, 1],
            &[0x1F],
            &[0x1F, 0xFF, 0xFF, 0xFF, 0x01],
            &[0x7C, 0x82, 0xFF],
        ] {
            assert!(find(bad, 0x7C).is_none(), "{bad:02X?}");
        }
        assert_eq!(parse(&[0x00, 0xFF]).unwrap(), vec![]);
    }
}
