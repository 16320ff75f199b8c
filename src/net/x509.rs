//! The two things sluice reads out of an X.509 certificate: the subject's common name (the `cert`
//! method takes the user name from a client certificate's CN, as PostgreSQL does) and the
//! `tls-server-end-point` channel-binding hash of its own server certificate (RFC 5929 §4.1:
//! the certificate hashed with its signature's hash function, SHA-256 for MD5 and SHA-1).
//!
//! A small DER walk, no I/O: the certificates were already checked by rustls (or are sluice's
//! own), so anything that does not parse is simply "not there" (`None`).

use sha2::{Digest, Sha256, Sha384, Sha512};

/// One DER element: its tag, its contents, and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0] EXPLICIT` (the version of a TBSCertificate).
const CONTEXT_0: u8 = 0xa0;
/// 2.5.4.3, commonName.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// (tbsCertificate contents, signatureAlgorithm OID).
fn parts(cert: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, cert, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, rest) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, alg, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, oid, _) = element(alg)?;
    (tag == OID).then_some((tbs, oid))
}

/// The subject's common name (the first, if there are several, as PostgreSQL reads it).
pub fn common_name(cert: &[u8]) -> Option<String> {
    let (tbs, _) = parts(cert)?;
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, validity, subject.
    let (tag, _, after) = element(rest)?;
    if tag == CONTEXT_0 {
        rest = after;
    }
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (tag, mut subject, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    while !subject.is_empty() {
        let (tag, mut rdn, after) = element(subject)?;
        subject = after;
        if tag != SET {
            return None;
        }
        while !rdn.is_empty() {
            let (_, attr, after) = element(rdn)?;
            rdn = after;
            let (tag, oid, value) = element(attr)?;
            if tag == OID && oid == CN_OID {
                let (_, text, _) = element(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

/// The `tls-server-end-point` hash of `cert`; `None` when its signature has no hash function
/// of its own (Ed25519, Ed448: RFC 5929 does not define the binding then, and PostgreSQL does
/// not offer SCRAM-SHA-256-PLUS either) or the certificate does not parse.
pub fn end_point_hash(cert: &[u8]) -> Option<Vec<u8>> {
    let (_, oid) = parts(cert)?;
    // 1.2.840.113549.1.1.x (RSA) and 1.2.840.10045.4.3.x (ECDSA): the last byte names the hash.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    // 1.3.101.112 / 113: Ed25519, Ed448.
    const EDDSA: &[u8] = &[0x2b, 0x65];
    let hash = match oid {
        [p @ .., 12] if p == RSA => Hash::Sha384,
        [p @ .., 13] if p == RSA => Hash::Sha512,
        [p @ .., 3] if p == ECDSA => Hash::Sha384,
        [p @ .., 4] if p == ECDSA => Hash::Sha512,
        [p @ .., _] if p == EDDSA => return None,
        // SHA-256 itself, and MD5 and SHA-1, which RFC 5929 replaces with SHA-256.
        _ => Hash::Sha256,
    };
    Some(match hash {
        Hash::Sha256 => Sha256::digest(cert).to_vec(),
        Hash::Sha384 => Sha384::digest(cert).to_vec(),
        Hash::Sha512 => Sha512::digest(cert).to_vec(),
    })
}

enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["db.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "sluice tests");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_the_subject_common_name() {
        let der = cert("alice", &rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(common_name(&der).as_deref(), Some("alice"));
        let der = cert("bob ünicode", &rcgen::PKCS_ED25519);
        assert_eq!(common_name(&der).as_deref(), Some("bob ünicode"));
    }

    #[test]
    fn no_common_name_and_garbage_are_none() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(common_name(&der), None);
        assert_eq!(common_name(b"\x30\x03\x02\x01"), None);
        assert_eq!(end_point_hash(&[]), None);
        let mut cut = cert("a", &rcgen::PKCS_ECDSA_P256_SHA256);
        cut.truncate(40);
        assert_eq!(common_name(&cut), None);
    }

    #[test]
    fn end_point_hash_follows_the_signature_hash() {
        let der = cert("s", &rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(end_point_hash(&der), Some(Sha256::digest(&der).to_vec()));
        let der = cert("s", &rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(end_point_hash(&der), Some(Sha384::digest(&der).to_vec()));
        let der = cert("s", &rcgen::PKCS_ED25519);
        assert_eq!(end_point_hash(&der), None);
    }
}
