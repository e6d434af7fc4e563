//! Detached signatures: ECDSA P-256 over SHA-256, DER-encoded, so that
//! `openssl dgst -sha256 -verify signing-key.pub -signature X.sig X` checks them on any host.
//!
//! Signing uses RFC 6979 deterministic nonces: the same key and bytes give the same signature,
//! which keeps `dist/` byte-identical across rebuilds.

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

/// Why a signing key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SignError(pub String);

/// A loaded signing key.
pub struct Signer256(SigningKey);

impl Signer256 {
    /// Loads the PKCS#8 PEM signing key from the state folder.
    pub fn from_pem(pem: &str) -> Result<Signer256, SignError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Signer256)
            .map_err(|e| SignError(format!("signing key is not a PKCS#8 ECDSA P-256 key: {e}")))
    }

    /// Detached DER signature of `data`.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let sig: Signature = self.0.sign(data);
        sig.to_der().as_bytes().to_vec()
    }

    /// The public key as PEM (SubjectPublicKeyInfo), what `openssl dgst -verify` reads.
    pub fn public_pem(&self) -> String {
        self.0.verifying_key().to_public_key_pem(LineEnding::LF).expect("SPKI PEM")
    }

    /// SHA-256 of the public key's DER, for operators to pin: `SHA256:<hex>`.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.public_pem()).expect("own key parses")
    }
}

/// `SHA256:<hex>` of a PEM public key's DER.
pub fn fingerprint_of(public_pem: &str) -> Result<String, SignError> {
    let key = VerifyingKey::from_public_key_pem(public_pem)
        .map_err(|e| SignError(format!("not an ECDSA P-256 public key: {e}")))?;
    let der = key.to_public_key_der().map_err(|e| SignError(e.to_string()))?;
    Ok(format!("SHA256:{}", hex::encode(Sha256::digest(der.as_bytes()))))
}

/// Checks a DER signature of `data` against a PEM public key.
pub fn verify(public_pem: &str, data: &[u8], sig_der: &[u8]) -> Result<(), SignError> {
    let key = VerifyingKey::from_public_key_pem(public_pem)
        .map_err(|e| SignError(format!("not an ECDSA P-256 public key: {e}")))?;
    let sig =
        DerSignature::try_from(sig_der).map_err(|_| SignError("the signature is not DER ECDSA".into()))?;
    key.verify(data, &sig).map_err(|_| SignError("the signature does not match".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyAlgorithm, KeySource, OsKeys, pem_encode};

    #[test]
    fn sign_and_verify_round_trip_and_is_deterministic() {
        let key = OsKeys.key(KeyAlgorithm::EcdsaP256, "signing-key");
        let s = Signer256::from_pem(&pem_encode("PRIVATE KEY", &key.to_pkcs8_der())).unwrap();
        let sig = s.sign(b"hello");
        assert_eq!(sig, s.sign(b"hello"));
        verify(&s.public_pem(), b"hello", &sig).unwrap();
        assert!(verify(&s.public_pem(), b"hellO", &sig).is_err());
        assert!(s.fingerprint().starts_with("SHA256:"));
    }
}
