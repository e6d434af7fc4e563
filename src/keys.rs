//! Private keys: the five algorithms kubeadm knows, written in the PEM forms kubeadm writes.
//!
//! Randomness enters the pipeline only through a [`KeySource`], which the shell chooses: the
//! operating system in production, a seeded generator in tests. Each draw is named by a label,
//! so a seeded source gives the same key for the same label whatever order threads run in.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::AssociatedOid;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, OsRng, RngCore, SeedableRng};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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

/// A private key of one of the supported algorithms.
#[derive(Clone)]
pub enum PrivateKey {
    /// RSA of any supported size.
    Rsa(Box<rsa::RsaPrivateKey>),
    /// ECDSA P-256.
    P256(p256::SecretKey),
    /// ECDSA P-384.
    P384(p384::SecretKey),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.algorithm())
    }
}

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

impl PrivateKey {
    /// Generates a key from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(alg: KeyAlgorithm, rng: &mut R) -> PrivateKey {
        let rsa = |rng: &mut R, bits| {
            PrivateKey::Rsa(Box::new(
                rsa::RsaPrivateKey::new(rng, bits).expect("RSA key generation with a valid size"),
            ))
        };
        match alg {
            KeyAlgorithm::Rsa2048 => rsa(rng, 2048),
            KeyAlgorithm::Rsa3072 => rsa(rng, 3072),
            KeyAlgorithm::Rsa4096 => rsa(rng, 4096),
            KeyAlgorithm::EcdsaP256 => PrivateKey::P256(p256::SecretKey::random(rng)),
            KeyAlgorithm::EcdsaP384 => PrivateKey::P384(p384::SecretKey::random(rng)),
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PrivateKey::Rsa(k) => match rsa::traits::PublicKeyParts::size(k.as_ref()) * 8 {
                0..=2048 => KeyAlgorithm::Rsa2048,
                2049..=3072 => KeyAlgorithm::Rsa3072,
                _ => KeyAlgorithm::Rsa4096,
            },
            PrivateKey::P256(_) => KeyAlgorithm::EcdsaP256,
            PrivateKey::P384(_) => KeyAlgorithm::EcdsaP384,
        }
    }

    /// PEM as kubeadm writes keys: `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1).
    pub fn to_kubeadm_pem(&self) -> String {
        let (tag, der) = match self {
            PrivateKey::Rsa(k) => {
                ("RSA PRIVATE KEY", k.to_pkcs1_der().expect("PKCS#1 encoding").as_bytes().to_vec())
            }
            PrivateKey::P256(k) => (
                "EC PRIVATE KEY",
                sec1_der(
                    &k.to_bytes(),
                    p256::NistP256::OID,
                    k.public_key().to_encoded_point(false).as_bytes(),
                ),
            ),
            PrivateKey::P384(k) => (
                "EC PRIVATE KEY",
                sec1_der(
                    &k.to_bytes(),
                    p384::NistP384::OID,
                    k.public_key().to_encoded_point(false).as_bytes(),
                ),
            ),
        };
        pem_encode(tag, &der)
    }

    /// PKCS#8 DER, the form the signing library takes.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        let doc = match self {
            PrivateKey::Rsa(k) => k.to_pkcs8_der(),
            PrivateKey::P256(k) => k.to_pkcs8_der(),
            PrivateKey::P384(k) => k.to_pkcs8_der(),
        };
        doc.expect("PKCS#8 encoding").as_bytes().to_vec()
    }

    /// DER SubjectPublicKeyInfo of the public half.
    pub fn public_key_der(&self) -> Vec<u8> {
        let doc = match self {
            PrivateKey::Rsa(k) => k.to_public_key().to_public_key_der(),
            PrivateKey::P256(k) => k.public_key().to_public_key_der(),
            PrivateKey::P384(k) => k.public_key().to_public_key_der(),
        };
        doc.expect("SPKI encoding").as_bytes().to_vec()
    }

    /// Reads the PEM forms kubeadm reads: `RSA PRIVATE KEY`, `EC PRIVATE KEY`, `PRIVATE KEY`.
    /// Blocks that are not keys are skipped.
    pub fn from_pem(text: &str) -> Result<PrivateKey, KeyError> {
        let blocks = pem::parse_many(text).map_err(|e| KeyError(format!("not PEM: {e}")))?;
        for block in blocks {
            let der = block.contents();
            match block.tag() {
                "RSA PRIVATE KEY" => {
                    return rsa::RsaPrivateKey::from_pkcs1_der(der)
                        .map(|k| PrivateKey::Rsa(Box::new(k)))
                        .map_err(|e| KeyError(format!("bad RSA PRIVATE KEY: {e}")));
                }
                "EC PRIVATE KEY" => {
                    if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
                        return Ok(PrivateKey::P256(k));
                    }
                    return p384::SecretKey::from_sec1_der(der)
                        .map(PrivateKey::P384)
                        .map_err(|_| KeyError("EC PRIVATE KEY is not on P-256 or P-384".into()));
                }
                "PRIVATE KEY" => {
                    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
                        return Ok(PrivateKey::Rsa(Box::new(k)));
                    }
                    if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
                        return Ok(PrivateKey::P256(k));
                    }
                    return p384::SecretKey::from_pkcs8_der(der)
                        .map(PrivateKey::P384)
                        .map_err(|_| KeyError("PRIVATE KEY is not RSA, ECDSA P-256 or P-384".into()));
                }
                _ => continue,
            }
        }
        Err(KeyError("no private key block found".into()))
    }

    /// The key as rcgen signs with it.
    pub fn to_rcgen(&self) -> rcgen::KeyPair {
        let alg = match self.algorithm() {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            _ => &rcgen::PKCS_RSA_SHA256,
        };
        let pem = pem_encode("PRIVATE KEY", &self.to_pkcs8_der());
        rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, alg).expect("key accepted by rcgen")
    }
}

/// SEC1 `ECPrivateKey` as Go's `x509.MarshalECPrivateKey` writes it: version 1, the scalar,
/// the named curve and the uncompressed public key. (The RustCrypto encoder leaves out the
/// curve, which Go and OpenSSL then refuse.)
fn sec1_der(scalar: &[u8], curve: sec1::der::asn1::ObjectIdentifier, public: &[u8]) -> Vec<u8> {
    use sec1::der::Encode;
    sec1::EcPrivateKey {
        private_key: scalar,
        parameters: Some(sec1::EcParameters::NamedCurve(curve)),
        public_key: Some(public),
    }
    .to_der()
    .expect("SEC1 encoding")
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

/// The operating system's randomness: what production uses.
pub struct OsKeys;

impl KeySource for OsKeys {
    fn key(&self, alg: KeyAlgorithm, _label: &str) -> PrivateKey {
        PrivateKey::generate(alg, &mut OsRng)
    }
    fn serial(&self, _label: &str) -> u64 {
        serial_from(&mut OsRng)
    }
}

/// A seeded source for tests: the same seed and label always give the same key.
pub struct SeededKeys(pub u64);

impl SeededKeys {
    fn rng(&self, what: &str, label: &str) -> ChaCha20Rng {
        let digest = Sha256::new()
            .chain_update(self.0.to_be_bytes())
            .chain_update(what)
            .chain_update([0])
            .chain_update(label)
            .finalize();
        ChaCha20Rng::from_seed(digest.into())
    }
}

impl KeySource for SeededKeys {
    fn key(&self, alg: KeyAlgorithm, label: &str) -> PrivateKey {
        PrivateKey::generate(alg, &mut self.rng(alg.name(), label))
    }
    fn serial(&self, label: &str) -> u64 {
        serial_from(&mut self.rng("serial", label))
    }
}

fn serial_from<R: RngCore>(rng: &mut R) -> u64 {
    // Uniform in [1, 2^63 - 1): kubeadm's rand.Int(rand.Reader, MaxInt64-1) + 1.
    loop {
        let v = rng.next_u64() >> 1;
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
        let keys = SeededKeys(7);
        for (alg, tag) in [
            (KeyAlgorithm::Rsa2048, "RSA PRIVATE KEY"),
            (KeyAlgorithm::EcdsaP256, "EC PRIVATE KEY"),
            (KeyAlgorithm::EcdsaP384, "EC PRIVATE KEY"),
        ] {
            let key = keys.key(alg, "x");
            let text = key.to_kubeadm_pem();
            assert!(text.starts_with(&format!("-----BEGIN {tag}-----\n")), "{text}");
            assert!(!text.contains('\r'));
            if !alg.is_rsa() {
                // Go and OpenSSL need the curve inside the SEC1 structure.
                use sec1::der::Decode;
                let block = pem::parse(&text).unwrap();
                let ec = sec1::EcPrivateKey::from_der(block.contents()).unwrap();
                assert!(ec.parameters.and_then(|p| p.named_curve()).is_some(), "{alg}: curve missing");
                assert!(ec.public_key.is_some(), "{alg}: public key missing");
            }
            let back = PrivateKey::from_pem(&text).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert_eq!(back.public_key_der(), key.public_key_der());
            let pkcs8 = pem_encode("PRIVATE KEY", &key.to_pkcs8_der());
            assert_eq!(PrivateKey::from_pem(&pkcs8).unwrap().public_key_der(), key.public_key_der());
        }
    }

    #[test]
    fn seeded_keys_depend_on_label_only() {
        let a = SeededKeys(1).key(KeyAlgorithm::EcdsaP256, "infra0/server");
        let b = SeededKeys(1).key(KeyAlgorithm::EcdsaP256, "infra0/server");
        let c = SeededKeys(1).key(KeyAlgorithm::EcdsaP256, "infra1/server");
        assert_eq!(a.public_key_der(), b.public_key_der());
        assert_ne!(a.public_key_der(), c.public_key_der());
        let s = SeededKeys(1).serial("x");
        assert!((1..(1 << 63) - 1).contains(&s));
    }

    #[test]
    fn rejects_non_keys() {
        assert!(PrivateKey::from_pem("hello").is_err());
        let cert_only = pem_encode("CERTIFICATE", b"abc");
        assert!(PrivateKey::from_pem(&cert_only).is_err());
    }
}
