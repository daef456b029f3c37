//! The software enclave image: what an enclave may run and with which limits (the
//! [`Manifest`]), its measurement, the signature over it, and the node's signer policy.
//!
//! An image lives in the container's rootfs under `/.rune-enclave/`: `manifest.json` and
//! `signature.json`. The format is written down in `docs/enclave-image.md` so that anyone can
//! recompute a measurement and check a signature without rune. This crate knows nothing of
//! containers; the `rune-enclave` CLI, the signature server, the shim's carriers and the
//! software PAL all use it, so measuring and signing have one implementation.

mod digest;
mod error;
mod manifest;
mod policy;
mod signature;

pub use digest::{digest_file, verify_files};
pub use error::ImageError;
pub use manifest::{EnvPolicy, Manifest, MANIFEST_VERSION};
pub use policy::Policy;
pub use signature::{
    generate_key, private_key_from_pem, private_key_to_pem, public_key_from_pem, public_key_to_pem,
    signer_of, signing_material, Signature, Verified, KEY_BITS, PUBLIC_EXPONENT,
};

use std::path::{Path, PathBuf};

/// The image directory inside a rootfs.
pub const IMAGE_DIR: &str = ".rune-enclave";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const SIGNATURE_FILE: &str = "signature.json";

/// Where the manifest of the image in `rootfs` is.
pub fn manifest_path(rootfs: &Path) -> PathBuf {
    rootfs.join(IMAGE_DIR).join(MANIFEST_FILE)
}

/// Where the signature of the image in `rootfs` is.
pub fn signature_path(rootfs: &Path) -> PathBuf {
    rootfs.join(IMAGE_DIR).join(SIGNATURE_FILE)
}

/// A manifest with its signature, as read from a rootfs.
#[derive(Clone, Debug)]
pub struct SignedImage {
    pub manifest: Manifest,
    pub signature: Signature,
}

impl SignedImage {
    pub fn load(rootfs: &Path) -> Result<Self, ImageError> {
        let manifest = Manifest::load(&manifest_path(rootfs))?;
        let signature = Signature::load(&signature_path(rootfs))?;
        Ok(Self {
            manifest,
            signature,
        })
    }

    /// Checks the signature against the manifest; says nothing about the files.
    pub fn verify(&self) -> Result<Verified, ImageError> {
        self.signature.verify(&self.manifest)
    }
}
