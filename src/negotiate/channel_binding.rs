//! TLS channel bindings for Negotiate: RFC 5929 `tls-server-end-point`.
//!
//! The application data is `"tls-server-end-point:"` followed by a hash of
//! the server's DER certificate. The hash is the one of the certificate's
//! signature algorithm, except that MD5 and SHA-1 are replaced by SHA-256
//! (RFC 5929 section 4.1). IIS with Extended Protection compares it with the
//! hash of its own certificate, so a TLS-intercepting proxy in between makes
//! the sign-in fail instead of being relayed.
//!
//! Only the signature algorithm is read from the certificate: a minimal DER
//! walk, no X.509 parser.

/// The prefix of the channel binding application data.
pub const PREFIX: &[u8] = b"tls-server-end-point:";

/// The hashes RFC 5929 can pick for today's certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

// DER contents of the OIDs involved.
const MD5_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04];
const SHA1_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
const RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const SHA1_RSA_OIW: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1d];
const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const DSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x03];
const DSA_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x02];
const MD5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05];
const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const CONTEXT_0: u8 = 0xa0;

/// One DER element: (tag, contents, the rest after it). Single-byte tags,
/// definite lengths up to 4 length bytes.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The contents of a SEQUENCE and what follows it.
fn sequence(input: &[u8]) -> Option<(&[u8], &[u8])> {
    match element(input)? {
        (SEQUENCE, body, rest) => Some((body, rest)),
        _ => None,
    }
}

/// An AlgorithmIdentifier's OID and its parameters (raw, possibly empty).
fn algorithm(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (body, _) = sequence(input)?;
    match element(body)? {
        (OID, oid, params) => Some((oid, params)),
        _ => None,
    }
}

/// The hash RFC 5929 prescribes for a DER certificate.
pub fn hash_for(cert: &[u8]) -> Result<Hash, String> {
    let bad = || "the server certificate is not DER X.509".to_string();
    let (cert_body, _) = sequence(cert).ok_or_else(bad)?;
    let (_, after_tbs) = sequence(cert_body).ok_or_else(bad)?;
    let (oid, params) = algorithm(after_tbs).ok_or_else(bad)?;
    match oid {
        MD5_RSA | SHA1_RSA | SHA1_RSA_OIW | ECDSA_SHA1 | DSA_SHA1 => Ok(Hash::Sha256),
        SHA256_RSA | ECDSA_SHA256 | DSA_SHA256 => Ok(Hash::Sha256),
        SHA384_RSA | ECDSA_SHA384 => Ok(Hash::Sha384),
        SHA512_RSA | ECDSA_SHA512 => Ok(Hash::Sha512),
        RSA_PSS => pss_hash(params).ok_or_else(|| {
            "the server certificate's RSASSA-PSS parameters are not understood".to_string()
        }),
        other => Err(format!(
            "no tls-server-end-point hash is defined for the server certificate's signature \
             algorithm (OID {})",
            oid_text(other)
        )),
    }
}

/// RSASSA-PSS-params: `[0] hashAlgorithm` (default SHA-1, which maps to SHA-256).
fn pss_hash(params: &[u8]) -> Option<Hash> {
    let (body, _) = sequence(params)?;
    let hash_oid = match element(body) {
        Some((CONTEXT_0, explicit, _)) => algorithm(explicit)?.0,
        _ => SHA1,
    };
    match hash_oid {
        MD5 | SHA1 | SHA256 => Some(Hash::Sha256),
        SHA384 => Some(Hash::Sha384),
        SHA512 => Some(Hash::Sha512),
        _ => None,
    }
}

/// Dotted text of an OID, for messages.
fn oid_text(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut value: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (value / 40).min(2);
                parts.push(first);
                parts.push(value - first * 40);
            } else {
                parts.push(value);
            }
            value = 0;
        } else if i == oid.len() - 1 {
            parts.push(value);
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The channel binding application data for a server certificate.
#[cfg(feature = "negotiate")]
pub fn application_data(cert: &[u8]) -> Result<Vec<u8>, String> {
    use ring::digest;
    let alg = match hash_for(cert)? {
        Hash::Sha256 => &digest::SHA256,
        Hash::Sha384 => &digest::SHA384,
        Hash::Sha512 => &digest::SHA512,
    };
    let mut data = PREFIX.to_vec();
    data.extend_from_slice(digest::digest(alg, cert).as_ref());
    Ok(data)
}

#[cfg(not(feature = "negotiate"))]
pub fn application_data(_cert: &[u8]) -> Result<Vec<u8>, String> {
    Err("this build has no Negotiate support".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if body.len() < 0x80 {
            v.push(body.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    /// A certificate skeleton: SEQUENCE { tbs, AlgorithmIdentifier, BIT STRING }.
    fn cert(sig_oid: &[u8], params: &[u8]) -> Vec<u8> {
        let tbs = der(SEQUENCE, &[0x02, 0x01, 0x01].repeat(100)); // long form length
        let mut alg = der(OID, sig_oid);
        alg.extend_from_slice(params);
        let mut body = tbs;
        body.extend(der(SEQUENCE, &alg));
        body.extend(der(0x03, &[0, 1, 2, 3]));
        der(SEQUENCE, &body)
    }

    #[test]
    fn picks_the_rfc5929_hash() {
        assert_eq!(hash_for(&cert(ECDSA_SHA256, &[])), Ok(Hash::Sha256));
        assert_eq!(hash_for(&cert(SHA1_RSA, &[0x05, 0x00])), Ok(Hash::Sha256));
        assert_eq!(hash_for(&cert(MD5_RSA, &[0x05, 0x00])), Ok(Hash::Sha256));
        assert_eq!(hash_for(&cert(SHA384_RSA, &[0x05, 0x00])), Ok(Hash::Sha384));
        assert_eq!(hash_for(&cert(ECDSA_SHA512, &[])), Ok(Hash::Sha512));
        // RSASSA-PSS: default parameters (SHA-1 -> SHA-256), and explicit SHA-384.
        assert_eq!(
            hash_for(&cert(RSA_PSS, &der(SEQUENCE, &[]))),
            Ok(Hash::Sha256)
        );
        let sha384 = der(SEQUENCE, &der(OID, SHA384));
        let params = der(SEQUENCE, &der(CONTEXT_0, &sha384));
        assert_eq!(hash_for(&cert(RSA_PSS, &params)), Ok(Hash::Sha384));
        // Ed25519 (1.3.101.112): RFC 5929 has no answer.
        let e = hash_for(&cert(&[0x2b, 0x65, 0x70], &[])).unwrap_err();
        assert!(e.contains("1.3.101.112"), "{e}");
        assert!(hash_for(b"not DER").is_err());
        assert!(hash_for(&[]).is_err());
        assert!(hash_for(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn oid_text_is_dotted() {
        assert_eq!(oid_text(SHA256_RSA), "1.2.840.113549.1.1.11");
        assert_eq!(oid_text(SHA256), "2.16.840.1.101.3.4.2.1");
    }

    #[cfg(feature = "negotiate")]
    #[test]
    fn application_data_is_prefix_and_hash() {
        let c = cert(ECDSA_SHA384, &[]);
        let d = application_data(&c).unwrap();
        assert!(d.starts_with(PREFIX));
        assert_eq!(d.len(), PREFIX.len() + 48);
        assert_eq!(
            &d[PREFIX.len()..],
            ring::digest::digest(&ring::digest::SHA384, &c).as_ref()
        );
    }
}
