//! Private keys: the five algorithms kubeadm knows, made by one backend (aws-lc-rs, through
//! rcgen, which also signs the certificates) and written in the PEM forms kubeadm writes.
//!
//! Randomness enters the pipeline only through a [`KeySource`], which the shell chooses: the
//! operating system in production, committed test keys in tests. Each draw is named by a
//! label (`infra0/etcd-server`), so a source can answer per label whatever order threads
//! run in.

use crate::der;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A key algorithm, named as kubeadm's v1beta4 `encryptionAlgorithm` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// RSA 2048 (kubeadm's default).
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    /// RSA 3072.
    #[serde(rename = "RSA-3072")]
    Rsa3072,
    /// RSA 4096.
    #[serde(rename = "RSA-4096")]
    Rsa4096,
    /// ECDSA on P-256.
    #[serde(rename = "ECDSA-P256")]
    EcdsaP256,
    /// ECDSA on P-384 (kubeadm 1.34+).
    #[serde(rename = "ECDSA-P384")]
    EcdsaP384,
}

/// All algorithms, in the order error messages list them.
pub const ALGORITHMS: [KeyAlgorithm; 5] = [
    KeyAlgorithm::Rsa2048,
    KeyAlgorithm::Rsa3072,
    KeyAlgorithm::Rsa4096,
    KeyAlgorithm::EcdsaP256,
    KeyAlgorithm::EcdsaP384,
];

impl KeyAlgorithm {
    /// The kubeadm name.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa2048 => "RSA-2048",
            KeyAlgorithm::Rsa3072 => "RSA-3072",
            KeyAlgorithm::Rsa4096 => "RSA-4096",
            KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
            KeyAlgorithm::EcdsaP384 => "ECDSA-P384",
        }
    }

    /// Whether this is an RSA algorithm.
    pub fn is_rsa(self) -> bool {
        matches!(self, KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096)
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        ALGORITHMS.into_iter().find(|a| a.name() == s).ok_or(())
    }
}

/// A private key of one of the supported algorithms, held as PKCS#8 DER with its public key.
#[derive(Clone)]
pub struct PrivateKey {
    alg: KeyAlgorithm,
    pkcs8: Vec<u8>,
    spki: Vec<u8>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.alg)
    }
}

/// Why a key could not be read or made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The curves, with their DER OIDs (named-curve parameters).
const P256_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const EC_PUBLIC_KEY_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

impl KeyAlgorithm {
    fn rcgen_alg(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            _ => &rcgen::PKCS_RSA_SHA256,
        }
    }

    fn curve_oid(self) -> Option<&'static [u8]> {
        match self {
            KeyAlgorithm::EcdsaP256 => Some(P256_OID),
            KeyAlgorithm::EcdsaP384 => Some(P384_OID),
            _ => None,
        }
    }

    /// The DER AlgorithmIdentifier of the key (not of the signature).
    fn key_algorithm_id(self) -> Vec<u8> {
        match self.curve_oid() {
            Some(curve) => der::seq(&[der::oid(EC_PUBLIC_KEY_OID), der::oid(curve)]),
            None => der::seq(&[der::oid(RSA_ENCRYPTION_OID), der::null()]),
        }
    }
}

impl PrivateKey {
    /// Generates a key with the operating system's randomness.
    pub fn generate(alg: KeyAlgorithm) -> Result<PrivateKey, KeyError> {
        let size = match alg {
            KeyAlgorithm::Rsa2048 => Some(rcgen::RsaKeySize::_2048),
            KeyAlgorithm::Rsa3072 => Some(rcgen::RsaKeySize::_3072),
            KeyAlgorithm::Rsa4096 => Some(rcgen::RsaKeySize::_4096),
            _ => None,
        };
        let kp = match size {
            Some(size) => rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size),
            None => rcgen::KeyPair::generate_for(alg.rcgen_alg()),
        }
        .map_err(|e| KeyError(format!("cannot generate a {alg} key: {e}")))?;
        PrivateKey::from_pkcs8(alg, kp.serialize_der())
    }

    /// A key from PKCS#8 DER of a known algorithm; the public half is read back through rcgen.
    fn from_pkcs8(alg: KeyAlgorithm, pkcs8: Vec<u8>) -> Result<PrivateKey, KeyError> {
        let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
            alg.rcgen_alg(),
        )
        .map_err(|e| KeyError(format!("not a usable {alg} key: {e}")))?;
        let public = rcgen::PublicKeyData::der_bytes(&kp);
        let spki = der::seq(&[alg.key_algorithm_id(), der::bit_string(public)]);
        Ok(PrivateKey { alg, pkcs8, spki })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The private key structure inside the PKCS#8 envelope: PKCS#1 for RSA, SEC1 for EC.
    fn inner(&self) -> Vec<u8> {
        der::pkcs8_inner(&self.pkcs8).expect("own PKCS#8 parses").1
    }

    /// PEM as kubeadm writes keys: `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1 with
    /// the named curve and the public key, as Go's `x509.MarshalECPrivateKey` writes it).
    pub fn to_kubeadm_pem(&self) -> String {
        match self.alg.curve_oid() {
            None => pem_encode("RSA PRIVATE KEY", &self.inner()),
            Some(curve) => {
                let scalar = der::sec1_scalar(&self.inner()).expect("own SEC1 parses");
                let point = der::spki_bits(&self.spki).expect("own SPKI parses");
                let sec1 = der::seq(&[
                    der::integer_small(1),
                    der::octet_string(&scalar),
                    der::explicit(0, &der::oid(curve)),
                    der::explicit(1, &der::bit_string(&point)),
                ]);
                pem_encode("EC PRIVATE KEY", &sec1)
            }
        }
    }

    /// PKCS#8 DER, the form the signing library takes.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        self.pkcs8.clone()
    }

    /// DER SubjectPublicKeyInfo of the public half.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.spki.clone()
    }

    /// The subjectPublicKey BIT STRING's bytes (what Go hashes into a SubjectKeyId).
    pub fn public_key_bits(&self) -> Vec<u8> {
        der::spki_bits(&self.spki).expect("own SPKI parses")
    }

    /// Reads the PEM forms kubeadm reads: `RSA PRIVATE KEY`, `EC PRIVATE KEY`, `PRIVATE KEY`.
    /// Blocks that are not keys are skipped.
    pub fn from_pem(text: &str) -> Result<PrivateKey, KeyError> {
        let blocks = pem::parse_many(text).map_err(|e| KeyError(format!("not PEM: {e}")))?;
        for block in blocks {
            let der_bytes = block.contents();
            let (alg, pkcs8) = match block.tag() {
                "RSA PRIVATE KEY" => {
                    let alg = der::rsa_size(der_bytes)
                        .and_then(rsa_algorithm)
                        .ok_or_else(|| KeyError("RSA PRIVATE KEY is not RSA 2048, 3072 or 4096".into()))?;
                    (alg, der::pkcs8_wrap(&alg.key_algorithm_id(), der_bytes))
                }
                "EC PRIVATE KEY" => {
                    let alg = match der::sec1_curve(der_bytes) {
                        Some(c) if c == P256_OID => KeyAlgorithm::EcdsaP256,
                        Some(c) if c == P384_OID => KeyAlgorithm::EcdsaP384,
                        Some(_) => return Err(KeyError("EC PRIVATE KEY is not on P-256 or P-384".into())),
                        None => match der::sec1_scalar(der_bytes).map(|s| s.len()) {
                            Some(32) => KeyAlgorithm::EcdsaP256,
                            Some(48) => KeyAlgorithm::EcdsaP384,
                            _ => return Err(KeyError("EC PRIVATE KEY is not on P-256 or P-384".into())),
                        },
                    };
                    (alg, der::pkcs8_wrap(&alg.key_algorithm_id(), der_bytes))
                }
                "PRIVATE KEY" => {
                    let (alg_id, inner) =
                        der::pkcs8_inner(der_bytes).ok_or_else(|| KeyError("bad PRIVATE KEY".into()))?;
                    let alg = ALGORITHMS
                        .into_iter()
                        .filter(|a| !a.is_rsa())
                        .find(|a| a.key_algorithm_id() == alg_id)
                        .or_else(|| {
                            (der::algorithm_oid(&alg_id).as_deref() == Some(RSA_ENCRYPTION_OID))
                                .then(|| der::rsa_size(&inner).and_then(rsa_algorithm))
                                .flatten()
                        })
                        .ok_or_else(|| KeyError("PRIVATE KEY is not RSA, ECDSA P-256 or P-384".into()))?;
                    (alg, der_bytes.to_vec())
                }
                _ => continue,
            };
            return PrivateKey::from_pkcs8(alg, pkcs8);
        }
        Err(KeyError("no private key block found".into()))
    }

    /// The key as rcgen signs with it.
    pub fn to_rcgen(&self) -> rcgen::KeyPair {
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &rustls_pki_types::PrivatePkcs8KeyDer::from(self.pkcs8.as_slice()),
            self.alg.rcgen_alg(),
        )
        .expect("key accepted by rcgen")
    }
}

fn rsa_algorithm(bits: usize) -> Option<KeyAlgorithm> {
    match bits {
        2048 => Some(KeyAlgorithm::Rsa2048),
        3072 => Some(KeyAlgorithm::Rsa3072),
        4096 => Some(KeyAlgorithm::Rsa4096),
        _ => None,
    }
}

/// PEM with LF line endings and 64-column lines, as Go's `pem.Encode` writes.
pub fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Where keys and serial numbers come from.
pub trait KeySource: Sync {
    /// A new key for the thing named `label`.
    fn key(&self, alg: KeyAlgorithm, label: &str) -> PrivateKey;
    /// A serial number in [1, 2^63-1), as kubeadm draws them.
    fn serial(&self, label: &str) -> u64;
}

/// The operating system's randomness (through aws-lc-rs): what production uses.
pub struct OsKeys;

impl KeySource for OsKeys {
    fn key(&self, alg: KeyAlgorithm, _label: &str) -> PrivateKey {
        PrivateKey::generate(alg).expect("key generation with the system's randomness")
    }
    fn serial(&self, _label: &str) -> u64 {
        serial_from(|| {
            let mut b = [0u8; 8];
            aws_lc_rs::rand::fill(&mut b).expect("system randomness");
            u64::from_be_bytes(b)
        })
    }
}

/// Uniform in [1, 2^63 - 1) from uniform 64-bit draws: kubeadm's
/// `rand.Int(rand.Reader, MaxInt64-1) + 1`.
pub fn serial_from(mut draw: impl FnMut() -> u64) -> u64 {
    loop {
        let v = draw() >> 1;
        if (1..(1u64 << 63) - 1).contains(&v) {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_forms_match_kubeadm_and_round_trip() {
        for (alg, tag) in [
            (KeyAlgorithm::Rsa2048, "RSA PRIVATE KEY"),
            (KeyAlgorithm::EcdsaP256, "EC PRIVATE KEY"),
            (KeyAlgorithm::EcdsaP384, "EC PRIVATE KEY"),
        ] {
            let key = OsKeys.key(alg, "x");
            let text = key.to_kubeadm_pem();
            assert!(text.starts_with(&format!("-----BEGIN {tag}-----\n")), "{text}");
            assert!(!text.contains('\r'));
            if !alg.is_rsa() {
                // Go and OpenSSL need the curve inside the SEC1 structure.
                let block = pem::parse(&text).unwrap();
                assert_eq!(der::sec1_curve(block.contents()).as_deref(), alg.curve_oid(), "{alg}: curve");
                assert!(der::sec1_has_public_key(block.contents()), "{alg}: public key missing");
            }
            let back = PrivateKey::from_pem(&text).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.public_key_der(), key.public_key_der());
            let pkcs8 = pem_encode("PRIVATE KEY", &key.to_pkcs8_der());
            let again = PrivateKey::from_pem(&pkcs8).unwrap();
            assert_eq!((again.algorithm(), again.public_key_der()), (alg, key.public_key_der()));
        }
    }

    #[test]
    fn generated_keys_differ_and_serials_are_in_range() {
        let a = OsKeys.key(KeyAlgorithm::EcdsaP256, "a");
        let b = OsKeys.key(KeyAlgorithm::EcdsaP256, "a");
        assert_ne!(a.public_key_der(), b.public_key_der());
        for _ in 0..100 {
            assert!((1..(1 << 63) - 1).contains(&OsKeys.serial("x")));
        }
        // Draws outside [1, 2^63-1) after the shift are drawn again.
        let mut draws = [u64::MAX, 0, 2].into_iter();
        assert_eq!(serial_from(|| draws.next().unwrap()), 1);
    }

    #[test]
    fn rejects_non_keys() {
        assert!(PrivateKey::from_pem("hello").is_err());
        let cert_only = pem_encode("CERTIFICATE", b"abc");
        assert!(PrivateKey::from_pem(&cert_only).is_err());
    }
}
