//! The few DER structures of private and public keys that etcdpack writes or reads itself
//! (PKCS#8 envelopes, SEC1 as Go writes it, SubjectPublicKeyInfo): small enough that a
//! hand-written encoder and reader are clearer than another crate.

/// A tag-length-value.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already-encoded parts.
pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// An OBJECT IDENTIFIER from its encoded content bytes.
pub fn oid(content: &[u8]) -> Vec<u8> {
    tlv(0x06, content)
}

/// NULL.
pub fn null() -> Vec<u8> {
    vec![0x05, 0x00]
}

/// A small non-negative INTEGER.
pub fn integer_small(v: u8) -> Vec<u8> {
    if v < 0x80 { tlv(0x02, &[v]) } else { tlv(0x02, &[0, v]) }
}

/// An OCTET STRING.
pub fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(0x04, content)
}

/// A BIT STRING of whole bytes (no unused bits).
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![0];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

/// `[n] EXPLICIT` around an encoded value.
pub fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

/// Reads one TLV: (tag, content, rest).
pub fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The elements of a SEQUENCE's content.
fn elements(mut content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, value, rest) = read(content)?;
        out.push((tag, value));
        content = rest;
    }
    Some(out)
}

fn sequence(input: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    match read(input)? {
        (0x30, content, _) => elements(content),
        _ => None,
    }
}

/// PKCS#8 PrivateKeyInfo → (AlgorithmIdentifier DER, inner private key DER).
pub fn pkcs8_inner(pkcs8: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let els = sequence(pkcs8)?;
    let (&(0x02, _), &(0x30, alg), &(0x04, key)) = (els.first()?, els.get(1)?, els.get(2)?) else {
        return None;
    };
    Some((tlv(0x30, alg), key.to_vec()))
}

/// A PKCS#8 PrivateKeyInfo (version 0) around `inner`.
pub fn pkcs8_wrap(algorithm_id: &[u8], inner: &[u8]) -> Vec<u8> {
    seq(&[integer_small(0), algorithm_id.to_vec(), octet_string(inner)])
}

/// The OID content of an AlgorithmIdentifier.
pub fn algorithm_oid(algorithm_id: &[u8]) -> Option<Vec<u8>> {
    match sequence(algorithm_id)?.first()? {
        (0x06, oid) => Some(oid.to_vec()),
        _ => None,
    }
}

/// The modulus size in bits of a PKCS#1 RSAPrivateKey.
pub fn rsa_size(pkcs1: &[u8]) -> Option<usize> {
    let els = sequence(pkcs1)?;
    let &(0x02, modulus) = els.get(1)? else { return None };
    let significant = modulus.iter().skip_while(|b| **b == 0).count();
    Some(significant * 8)
}

/// The private scalar of a SEC1 ECPrivateKey.
pub fn sec1_scalar(sec1: &[u8]) -> Option<Vec<u8>> {
    match sequence(sec1)?.get(1)? {
        (0x04, scalar) => Some(scalar.to_vec()),
        _ => None,
    }
}

/// The named curve's OID content in a SEC1 ECPrivateKey, when it says.
pub fn sec1_curve(sec1: &[u8]) -> Option<Vec<u8>> {
    sequence(sec1)?.iter().find(|(t, _)| *t == 0xa0).and_then(|(_, v)| match read(v)? {
        (0x06, oid, _) => Some(oid.to_vec()),
        _ => None,
    })
}

/// Whether a SEC1 ECPrivateKey carries its public key.
pub fn sec1_has_public_key(sec1: &[u8]) -> bool {
    sequence(sec1).is_some_and(|els| els.iter().any(|(t, _)| *t == 0xa1))
}

/// The subjectPublicKey BIT STRING's bytes of a SubjectPublicKeyInfo.
pub fn spki_bits(spki: &[u8]) -> Option<Vec<u8>> {
    match sequence(spki)?.get(1)? {
        (0x03, bits) => bits.split_first().filter(|(unused, _)| **unused == 0).map(|(_, b)| b.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let v = tlv(0x04, &vec![7u8; n]);
            let (tag, content, rest) = read(&v).unwrap();
            assert_eq!((tag, content.len(), rest.len()), (0x04, n, 0));
        }
        assert!(read(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(read(&[0x04, 0x05, 1]).is_none());
    }

    #[test]
    fn pkcs8_wraps_and_unwraps() {
        let alg = seq(&[oid(&[1, 2, 3]), null()]);
        let p = pkcs8_wrap(&alg, b"inner");
        assert_eq!(pkcs8_inner(&p), Some((alg.clone(), b"inner".to_vec())));
        assert_eq!(algorithm_oid(&alg), Some(vec![1, 2, 3]));
    }
}
