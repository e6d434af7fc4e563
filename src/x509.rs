//! Reading certificates back: one summary type that validation, state reuse, `verify` and
//! `inspect` all use, so that every reader of a certificate sees the same fields.

use serde::Serialize;
use std::net::IpAddr;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// What etcdpack needs to know about a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertInfo {
    /// Subject CN.
    pub common_name: String,
    /// Subject O values.
    pub organizations: Vec<String>,
    /// Issuer CN.
    pub issuer_common_name: String,
    /// DNS SANs in certificate order.
    pub dns_names: Vec<String>,
    /// IP SANs in certificate order.
    pub ip_addresses: Vec<IpAddr>,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// Serial number, lowercase hex without leading zeros.
    pub serial_hex: String,
    /// NotBefore, seconds since the epoch.
    pub not_before: i64,
    /// NotAfter, seconds since the epoch.
    pub not_after: i64,
    /// SubjectKeyIdentifier, if the certificate has one.
    #[serde(skip)]
    pub subject_key_id: Option<Vec<u8>>,
    /// Subject public key info, DER.
    #[serde(skip)]
    pub spki_der: Vec<u8>,
    /// The whole certificate, DER.
    #[serde(skip)]
    pub der: Vec<u8>,
}

/// Parses the first `CERTIFICATE` block of a PEM text (as kubeadm reads only the first).
pub fn parse_pem(text: &str) -> Result<CertInfo, String> {
    let blocks = pem::parse_many(text).map_err(|e| e.to_string())?;
    let block = blocks
        .into_iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| "no CERTIFICATE block".to_string())?;
    parse_der(block.contents())
}

/// Parses a DER certificate.
pub fn parse_der(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let cn = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or_default().to_string()
    };
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    let mut is_ca = false;
    let mut subject_key_id = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                        GeneralName::IPAddress(b) => {
                            if let Some(ip) = ip_from_bytes(b) {
                                ip_addresses.push(ip)
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::SubjectKeyIdentifier(k) => subject_key_id = Some(k.0.to_vec()),
            _ => {}
        }
    }
    Ok(CertInfo {
        common_name: cn(cert.subject()),
        organizations: cert
            .subject()
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect(),
        issuer_common_name: cn(cert.issuer()),
        dns_names,
        ip_addresses,
        is_ca,
        serial_hex: {
            let s = cert.raw_serial_as_string().replace(':', "");
            let t = s.trim_start_matches('0');
            if t.is_empty() { "0".into() } else { t.to_string() }
        },
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        subject_key_id,
        spki_der: cert.public_key().raw.to_vec(),
        der: der.to_vec(),
    })
}

/// Whether `child` (DER) carries a valid signature by the key of `issuer` (DER).
pub fn signed_by(child: &[u8], issuer: &[u8]) -> bool {
    let (Ok((_, child)), Ok((_, issuer))) =
        (X509Certificate::from_der(child), X509Certificate::from_der(issuer))
    else {
        return false;
    };
    child.issuer() == issuer.subject() && child.verify_signature(Some(issuer.public_key())).is_ok()
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// Formats epoch seconds as RFC 3339 UTC (`2026-11-21T23:55:00Z`).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
