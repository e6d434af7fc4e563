//! X.509 extensions encoded and ordered exactly as Go's crypto/x509 writes them for kubeadm:
//! KeyUsage (critical), ExtKeyUsage, BasicConstraints (critical), SubjectKeyId (CA only),
//! AuthorityKeyId (leaves only), SubjectAltName. rcgen would write the same content in
//! another order and add a SubjectKeyId to leaves, so etcdpack hands it finished extensions.

use crate::der::tlv as der;
use rcgen::CustomExtension;
use std::net::IpAddr;

fn ext(oid: &[u64], critical: bool, value: Vec<u8>) -> CustomExtension {
    let mut e = CustomExtension::from_oid_content(oid, value);
    e.set_criticality(critical);
    e
}

/// KeyUsage: digitalSignature and keyEncipherment, plus keyCertSign on a CA. Go writes the
/// BIT STRING with its trailing zero bits counted as unused.
pub fn key_usage(ca: bool) -> CustomExtension {
    // bit 0 digitalSignature, bit 2 keyEncipherment, bit 5 keyCertSign (MSB first)
    let (byte, unused) = if ca { (0b1010_0100, 2) } else { (0b1010_0000, 5) };
    ext(&[2, 5, 29, 15], true, der(0x03, &[unused, byte]))
}

/// ExtKeyUsage: serverAuth then clientAuth on serving certs, clientAuth alone otherwise.
pub fn ext_key_usage(server_auth: bool) -> CustomExtension {
    const SERVER: [u8; 8] = [0x2b, 6, 1, 5, 5, 7, 3, 1];
    const CLIENT: [u8; 8] = [0x2b, 6, 1, 5, 5, 7, 3, 2];
    let mut seq = Vec::new();
    if server_auth {
        seq.extend(der(0x06, &SERVER));
    }
    seq.extend(der(0x06, &CLIENT));
    ext(&[2, 5, 29, 37], false, der(0x30, &seq))
}

/// BasicConstraints: CA:TRUE without a path length, or CA:FALSE (an empty SEQUENCE).
pub fn basic_constraints(ca: bool) -> CustomExtension {
    let content = if ca { der(0x01, &[0xff]) } else { Vec::new() };
    ext(&[2, 5, 29, 19], true, der(0x30, &content))
}

/// SubjectKeyIdentifier.
pub fn subject_key_id(id: &[u8]) -> CustomExtension {
    ext(&[2, 5, 29, 14], false, der(0x04, id))
}

/// AuthorityKeyIdentifier with the issuer's key identifier only.
pub fn authority_key_id(id: &[u8]) -> CustomExtension {
    ext(&[2, 5, 29, 35], false, der(0x30, &der(0x80, id)))
}

/// SubjectAltName: DNS names, then IP addresses (4 or 16 octets), as Go orders them.
pub fn subject_alt_name(dns: &[String], ips: &[IpAddr]) -> Option<CustomExtension> {
    if dns.is_empty() && ips.is_empty() {
        return None;
    }
    let mut seq = Vec::new();
    for d in dns {
        seq.extend(der(0x82, d.as_bytes()));
    }
    for ip in ips {
        match ip {
            IpAddr::V4(v4) => seq.extend(der(0x87, &v4.octets())),
            IpAddr::V6(v6) => seq.extend(der(0x87, &v6.octets())),
        }
    }
    Some(ext(&[2, 5, 29, 17], false, der(0x30, &seq)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_go() {
        assert_eq!(key_usage(true).content(), [0x03, 0x02, 0x02, 0xa4]);
        assert_eq!(key_usage(false).content(), [0x03, 0x02, 0x05, 0xa0]);
        assert!(key_usage(false).criticality());
        assert_eq!(basic_constraints(true).content(), [0x30, 0x03, 0x01, 0x01, 0xff]);
        assert_eq!(basic_constraints(false).content(), [0x30, 0x00]);
        assert_eq!(authority_key_id(&[1, 2]).content(), [0x30, 0x04, 0x80, 0x02, 1, 2]);
        assert_eq!(ext_key_usage(false).content(), [0x30, 0x0a, 0x06, 0x08, 0x2b, 6, 1, 5, 5, 7, 3, 2]);
        assert!(subject_alt_name(&[], &[]).is_none());
        let long = der(0x04, &[0u8; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
    }
}
