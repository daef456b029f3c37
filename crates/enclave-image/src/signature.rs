//! Signing: RSA-3072 with public exponent 3, PKCS#1 v1.5 over SHA-256 — the key type SGX
//! enclave signing uses, so one key (and one signature server) signs SGX and software enclaves.
//! The signer identity is SHA-256 of the modulus as 384 little-endian bytes, like SGX's
//! MRSIGNER.
//!
//! What is signed is the *signing material*, not the manifest: a short text binding the
//! measurement and the identity fields. It can be written to a file, signed elsewhere (an HSM,
//! `openssl dgst -sha256 -sign`, the signature server) and the signature attached afterwards.

use std::fs;
use std::path::Path;

use rsa::pkcs1::{
    DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey,
};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ImageError;
use crate::manifest::Manifest;

pub const KEY_BITS: usize = 3072;
pub const PUBLIC_EXPONENT: u32 = 3;
const MATERIAL_HEADER: &str = "RUNE-SOFTWARE-ENCLAVE-SIGNING-MATERIAL-V1";

/// `signature.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub version: u32,
    /// Hex SHA-256 of the manifest's canonical encoding.
    pub measurement: String,
    /// Hex of the signer identity (SHA-256 of the modulus, little-endian).
    pub signer: String,
    /// Hex of the modulus, big-endian.
    pub modulus: String,
    pub exponent: u32,
    /// Hex of the PKCS#1 v1.5 signature over SHA-256 of the signing material.
    pub signature: String,
}

/// What a valid signature establishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub measurement: [u8; 32],
    pub signer: [u8; 32],
    pub debug: bool,
    pub product_id: u16,
    pub security_version: u16,
}

/// The bytes a signer signs for `manifest`.
pub fn signing_material(manifest: &Manifest) -> Vec<u8> {
    format!(
        "{MATERIAL_HEADER}\nmeasurement={}\ndebug={}\nproduct_id={}\nsecurity_version={}\n",
        hex::encode(manifest.measurement()),
        u8::from(manifest.debug),
        manifest.product_id,
        manifest.security_version
    )
    .into_bytes()
}

/// SHA-256 of the 384-byte little-endian modulus.
pub fn signer_of(key: &RsaPublicKey) -> [u8; 32] {
    let mut modulus = key.n().to_bytes_le();
    modulus.resize(KEY_BITS / 8, 0);
    Sha256::digest(&modulus).into()
}

pub fn generate_key() -> Result<RsaPrivateKey, ImageError> {
    let mut rng = rand::rngs::OsRng;
    RsaPrivateKey::new_with_exp(&mut rng, KEY_BITS, &BigUint::from(PUBLIC_EXPONENT))
        .map_err(|e| ImageError::Key(format!("generating an RSA-{KEY_BITS} key: {e}")))
}

pub fn private_key_to_pem(key: &RsaPrivateKey) -> Result<String, ImageError> {
    key.to_pkcs1_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| ImageError::Key(e.to_string()))
}

pub fn public_key_to_pem(key: &RsaPublicKey) -> Result<String, ImageError> {
    key.to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| ImageError::Key(e.to_string()))
}

/// Reads a PKCS#1 or PKCS#8 PEM private key and checks it is an RSA-3072 e=3 key.
pub fn private_key_from_pem(pem: &str) -> Result<RsaPrivateKey, ImageError> {
    let key = RsaPrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem))
        .map_err(|e| ImageError::Key(format!("not an RSA private key in PEM: {e}")))?;
    check_key_shape(&key.to_public_key())?;
    Ok(key)
}

/// Reads a PKCS#1 or SubjectPublicKeyInfo PEM public key and checks its shape.
pub fn public_key_from_pem(pem: &str) -> Result<RsaPublicKey, ImageError> {
    let key = RsaPublicKey::from_pkcs1_pem(pem)
        .or_else(|_| RsaPublicKey::from_public_key_pem(pem))
        .map_err(|e| ImageError::Key(format!("not an RSA public key in PEM: {e}")))?;
    check_key_shape(&key)?;
    Ok(key)
}

fn check_key_shape(key: &RsaPublicKey) -> Result<(), ImageError> {
    if key.n().bits() != KEY_BITS || key.e() != &BigUint::from(PUBLIC_EXPONENT) {
        return Err(ImageError::Key(format!(
            "an RSA-{} key with exponent {} was given; enclave signing needs RSA-{KEY_BITS} with \
             exponent {PUBLIC_EXPONENT}",
            key.n().bits(),
            key.e()
        )));
    }
    Ok(())
}

impl Signature {
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let bytes = fs::read(path).map_err(|e| ImageError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// Signs `manifest` with `key` in one step.
    pub fn sign(manifest: &Manifest, key: &RsaPrivateKey) -> Result<Self, ImageError> {
        manifest.validate()?;
        check_key_shape(&key.to_public_key())?;
        let digest = Sha256::digest(signing_material(manifest));
        // Blinded: the unblinded private-key operation leaks timing (RUSTSEC-2023-0071).
        let signature = key
            .sign_with_rng(
                &mut rand::rngs::OsRng,
                Pkcs1v15Sign::new::<Sha256>(),
                &digest,
            )
            .map_err(|e| ImageError::Signature(format!("signing: {e}")))?;
        Self::attach(manifest, &key.to_public_key(), &signature)
    }

    /// The second step of two-step signing: a signature made elsewhere over
    /// [`signing_material`], checked before it is accepted.
    pub fn attach(
        manifest: &Manifest,
        key: &RsaPublicKey,
        signature: &[u8],
    ) -> Result<Self, ImageError> {
        let attached = Self {
            version: 1,
            measurement: hex::encode(manifest.measurement()),
            signer: hex::encode(signer_of(key)),
            modulus: hex::encode(key.n().to_bytes_be()),
            exponent: PUBLIC_EXPONENT,
            signature: hex::encode(signature),
        };
        attached.verify(manifest)?;
        Ok(attached)
    }

    /// Checks that this signature is a valid RSA-3072 e=3 signature over `manifest`.
    pub fn verify(&self, manifest: &Manifest) -> Result<Verified, ImageError> {
        manifest.validate()?;
        let fail = |why: &str| Err(ImageError::Signature(why.to_string()));
        if self.version != 1 {
            return fail("unsupported signature version");
        }
        let measurement = manifest.measurement();
        if self.measurement != hex::encode(measurement) {
            return fail("the manifest does not match the signed measurement (was it edited?)");
        }
        if self.exponent != PUBLIC_EXPONENT {
            return fail("the public exponent must be 3");
        }
        let modulus = hex::decode(&self.modulus)
            .map_err(|_| ImageError::Signature("modulus is not hex".into()))?;
        let key = RsaPublicKey::new(
            BigUint::from_bytes_be(&modulus),
            BigUint::from(PUBLIC_EXPONENT),
        )
        .map_err(|e| ImageError::Signature(format!("bad public key: {e}")))?;
        check_key_shape(&key).map_err(|e| ImageError::Signature(e.to_string()))?;
        let signer = signer_of(&key);
        if self.signer != hex::encode(signer) {
            return fail("the signer field does not match the modulus");
        }
        let signature = hex::decode(&self.signature)
            .map_err(|_| ImageError::Signature("signature is not hex".into()))?;
        let digest = Sha256::digest(signing_material(manifest));
        key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
            .map_err(|_| {
                ImageError::Signature("the signature does not verify with the signer's key".into())
            })?;
        Ok(Verified {
            measurement,
            signer,
            debug: manifest.debug,
            product_id: manifest.product_id,
            security_version: manifest.security_version,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::manifest::tests::sample;

    /// Key generation is slow; one key serves every test.
    fn key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| generate_key().expect("keygen"))
    }

    #[test]
    fn sign_then_verify() {
        let manifest = sample();
        let signature = Signature::sign(&manifest, key()).expect("sign");
        let verified = signature.verify(&manifest).expect("verify");
        assert_eq!(verified.measurement, manifest.measurement());
        assert_eq!(verified.signer, signer_of(&key().to_public_key()));
        let json = signature.to_json();
        let back: Signature = serde_json::from_slice(&json).expect("round trip");
        assert_eq!(back, signature);
    }

    #[test]
    fn two_step_signing_matches_one_step() {
        let manifest = sample();
        let material = signing_material(&manifest);
        let digest = Sha256::digest(&material);
        let raw = key()
            .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
            .expect("sign");
        let attached = Signature::attach(&manifest, &key().to_public_key(), &raw).expect("attach");
        assert_eq!(attached, Signature::sign(&manifest, key()).expect("sign"));
        assert!(Signature::attach(&manifest, &key().to_public_key(), &raw[1..]).is_err());
    }

    #[test]
    fn tampering_is_detected() {
        let manifest = sample();
        let signature = Signature::sign(&manifest, key()).expect("sign");

        let mut edited = manifest.clone();
        edited.debug = true;
        let err = signature.verify(&edited).expect_err("edited manifest");
        assert!(err.to_string().contains("edited"), "{err}");

        let mut forged = signature.clone();
        let mut bytes = hex::decode(&forged.signature).expect("hex");
        bytes[10] ^= 1;
        forged.signature = hex::encode(bytes);
        assert!(forged.verify(&manifest).is_err());

        let mut other_signer = signature.clone();
        other_signer.signer = "00".repeat(32);
        assert!(other_signer.verify(&manifest).is_err());
    }

    #[test]
    fn pem_round_trip_and_shape() {
        let pem = private_key_to_pem(key()).expect("pem");
        let back = private_key_from_pem(&pem).expect("parse");
        assert_eq!(&back, key());
        let public = public_key_to_pem(&key().to_public_key()).expect("pem");
        assert_eq!(
            public_key_from_pem(&public).expect("parse"),
            key().to_public_key()
        );
        assert!(private_key_from_pem("not a key").is_err());
    }
}
