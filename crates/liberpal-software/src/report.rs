//! The software enclave's local report: what `pal_get_local_report` writes, and
//! [`verify_report`] for a verifier on the same node.
//!
//! Layout (176 bytes; integers little-endian; fits rune's 432-byte report buffer, and
//! `report_len` is set to 176):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 8 | magic `RUNESWRP` |
//! | 8 | 2 | version, 1 |
//! | 10 | 2 | flags: bit 0 = debug enclave; other bits 0 |
//! | 12 | 2 | product id (manifest `product_id`) |
//! | 14 | 2 | security version (manifest `security_version`) |
//! | 16 | 32 | measurement: SHA-256 of the manifest's canonical encoding |
//! | 48 | 32 | signer: SHA-256 of the signing key's modulus (384 bytes, little-endian) |
//! | 80 | 64 | report data: the first 64 bytes of `target_info`, zero-padded if shorter |
//! | 144 | 32 | HMAC-SHA256 over bytes 0..144, keyed with the node's report key |
//!
//! Unlike an SGX report, the MAC key is not specific to a target enclave: it is the node's
//! report key, so anyone holding it (root on the node, see `DEFAULT_REPORT_KEY_PATH`) can
//! verify, and forge, reports. The enclave's processes never hold it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a report.
pub const REPORT_LEN: usize = 176;
/// First bytes of every report.
pub const REPORT_MAGIC: [u8; 8] = *b"RUNESWRP";
/// Layout version.
pub const REPORT_VERSION: u16 = 1;
/// Length of the report data.
pub const REPORT_DATA_LEN: usize = 64;
/// Offset of the report data.
pub const REPORT_DATA_OFFSET: usize = 80;
/// Offset of the MAC (the length of the MACed part).
pub const REPORT_MAC_OFFSET: usize = 144;

const FLAG_DEBUG: u16 = 1;

/// What a report says about an enclave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportBody {
    pub measurement: [u8; 32],
    pub signer: [u8; 32],
    pub debug: bool,
    pub product_id: u16,
    pub security_version: u16,
    pub report_data: [u8; REPORT_DATA_LEN],
}

/// Why a report was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("report is {0} bytes, expected {REPORT_LEN}")]
    Length(usize),
    #[error("report MAC does not verify with this key (wrong key, or the report was altered)")]
    Mac,
    #[error("not a software enclave report (bad magic)")]
    Magic,
    #[error("unsupported report version {0}")]
    Version(u16),
    #[error("unknown report flags {0:#06x}")]
    Flags(u16),
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8; 32]) -> HmacSha256 {
    // HMAC takes keys of any length; a 32-byte key cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

impl ReportBody {
    /// The report for this body, MACed with `key`.
    pub(crate) fn to_report(&self, key: &[u8; 32]) -> [u8; REPORT_LEN] {
        let mut out = [0u8; REPORT_LEN];
        out[0..8].copy_from_slice(&REPORT_MAGIC);
        out[8..10].copy_from_slice(&REPORT_VERSION.to_le_bytes());
        let flags = if self.debug { FLAG_DEBUG } else { 0 };
        out[10..12].copy_from_slice(&flags.to_le_bytes());
        out[12..14].copy_from_slice(&self.product_id.to_le_bytes());
        out[14..16].copy_from_slice(&self.security_version.to_le_bytes());
        out[16..48].copy_from_slice(&self.measurement);
        out[48..80].copy_from_slice(&self.signer);
        out[REPORT_DATA_OFFSET..REPORT_MAC_OFFSET].copy_from_slice(&self.report_data);
        let mut m = mac(key);
        m.update(&out[..REPORT_MAC_OFFSET]);
        out[REPORT_MAC_OFFSET..].copy_from_slice(&m.finalize().into_bytes());
        out
    }
}

/// The report data for `target_info`: its first 64 bytes, zero-padded.
pub(crate) fn report_data(target_info: &[u8]) -> [u8; REPORT_DATA_LEN] {
    let mut data = [0u8; REPORT_DATA_LEN];
    let n = target_info.len().min(REPORT_DATA_LEN);
    data[..n].copy_from_slice(&target_info[..n]);
    data
}

/// Checks a report made on this node (MAC with the node's report key, in constant time; then
/// the layout) and returns what it says.
pub fn verify_report(key: &[u8; 32], report: &[u8]) -> Result<ReportBody, ReportError> {
    let report: &[u8; REPORT_LEN] = report
        .try_into()
        .map_err(|_| ReportError::Length(report.len()))?;
    let mut m = mac(key);
    m.update(&report[..REPORT_MAC_OFFSET]);
    m.verify_slice(&report[REPORT_MAC_OFFSET..])
        .map_err(|_| ReportError::Mac)?;
    if report[0..8] != REPORT_MAGIC {
        return Err(ReportError::Magic);
    }
    let u16_at = |at: usize| u16::from_le_bytes([report[at], report[at + 1]]);
    let version = u16_at(8);
    if version != REPORT_VERSION {
        return Err(ReportError::Version(version));
    }
    let flags = u16_at(10);
    if flags & !FLAG_DEBUG != 0 {
        return Err(ReportError::Flags(flags));
    }
    let array32 = |at: usize| {
        let mut a = [0u8; 32];
        a.copy_from_slice(&report[at..at + 32]);
        a
    };
    let mut data = [0u8; REPORT_DATA_LEN];
    data.copy_from_slice(&report[REPORT_DATA_OFFSET..REPORT_MAC_OFFSET]);
    Ok(ReportBody {
        measurement: array32(16),
        signer: array32(48),
        debug: flags & FLAG_DEBUG != 0,
        product_id: u16_at(12),
        security_version: u16_at(14),
        report_data: data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> ReportBody {
        ReportBody {
            measurement: [1; 32],
            signer: [2; 32],
            debug: true,
            product_id: 0x1234,
            security_version: 0x5678,
            report_data: report_data(b"nonce"),
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let r = body().to_report(&[9; 32]);
        assert_eq!(&r[0..8], b"RUNESWRP");
        assert_eq!(&r[8..16], &[1, 0, 1, 0, 0x34, 0x12, 0x78, 0x56]);
        assert_eq!(&r[16..48], &[1; 32]);
        assert_eq!(&r[48..80], &[2; 32]);
        assert_eq!(&r[80..85], b"nonce");
        assert!(r[85..144].iter().all(|&b| b == 0));
        assert_eq!(verify_report(&[9; 32], &r), Ok(body()));
    }

    #[test]
    fn any_change_or_wrong_key_fails() {
        let r = body().to_report(&[9; 32]);
        assert_eq!(verify_report(&[8; 32], &r), Err(ReportError::Mac));
        for i in 0..REPORT_LEN {
            let mut bad = r;
            bad[i] ^= 0x01;
            assert_eq!(
                verify_report(&[9; 32], &bad),
                Err(ReportError::Mac),
                "byte {i}"
            );
        }
        assert_eq!(
            verify_report(&[9; 32], &r[..175]),
            Err(ReportError::Length(175))
        );
        let mut long = r.to_vec();
        long.push(0);
        assert_eq!(
            verify_report(&[9; 32], &long),
            Err(ReportError::Length(177))
        );
    }

    #[test]
    fn report_data_is_cut_or_padded() {
        let long: Vec<u8> = (0..200).map(|i| i as u8).collect();
        assert_eq!(report_data(&long)[..], long[..64]);
        assert_eq!(report_data(&[]), [0; 64]);
    }
}
