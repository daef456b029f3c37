//! Property-based fuzzing of the software PAL's library API: [`verify_report`], which a
//! verifier runs on report bytes it received from an enclave (or from anyone). The manifest,
//! signature and policy the PAL loads are parsed by `enclave-image` and fuzzed there; the rest
//! of this crate runs only inside the loaded PAL.
//!
//! The reports here are written from the layout in `src/report.rs` with an independent HMAC, so
//! the test also checks that the documented layout is the implemented one.
//!
//! `PROPTEST_CASES=100000 cargo test -p liberpal-software --test fuzz` runs more cases.

use hmac::{Hmac, Mac};
use liberpal_software::report::{REPORT_DATA_OFFSET, REPORT_MAC_OFFSET, REPORT_MAGIC};
use liberpal_software::{verify_report, ReportBody, ReportError, REPORT_LEN};
use proptest::prelude::*;
use sha2::Sha256;

/// `cases` unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

fn mac(key: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

/// A report with any header, MACed with `key`.
fn report(key: &[u8; 32], header: [u8; 16], rest: &[u8; 128]) -> Vec<u8> {
    let mut report = header.to_vec();
    report.extend_from_slice(rest);
    let tag = mac(key, &report);
    report.extend_from_slice(&tag);
    report
}

fn body() -> impl Strategy<Value = ReportBody> {
    (
        prop::array::uniform32(any::<u8>()),
        prop::array::uniform32(any::<u8>()),
        any::<bool>(),
        any::<u16>(),
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 64),
    )
        .prop_map(
            |(measurement, signer, debug, product_id, security_version, data)| {
                let mut report_data = [0u8; 64];
                report_data.copy_from_slice(&data);
                ReportBody {
                    measurement,
                    signer,
                    debug,
                    product_id,
                    security_version,
                    report_data,
                }
            },
        )
}

/// `body` as the PAL writes it (layout in `src/report.rs`).
fn encode(key: &[u8; 32], body: &ReportBody) -> Vec<u8> {
    let mut header = [0u8; 16];
    header[..8].copy_from_slice(&REPORT_MAGIC);
    header[8..10].copy_from_slice(&1u16.to_le_bytes());
    header[10..12].copy_from_slice(&u16::from(body.debug).to_le_bytes());
    header[12..14].copy_from_slice(&body.product_id.to_le_bytes());
    header[14..16].copy_from_slice(&body.security_version.to_le_bytes());
    let mut rest = [0u8; 128];
    rest[..32].copy_from_slice(&body.measurement);
    rest[32..64].copy_from_slice(&body.signer);
    rest[REPORT_DATA_OFFSET - 16..REPORT_MAC_OFFSET - 16].copy_from_slice(&body.report_data);
    report(key, header, &rest)
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_bytes_never_verify(key in prop::array::uniform32(any::<u8>()),
        bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let err = verify_report(&key, &bytes).expect_err("random bytes verified");
        prop_assert!(!err.to_string().is_empty());
        if bytes.len() != REPORT_LEN {
            prop_assert_eq!(err, ReportError::Length(bytes.len()));
        }
    }

    #[test]
    fn reports_round_trip(key in prop::array::uniform32(any::<u8>()), body in body()) {
        let report = encode(&key, &body);
        prop_assert_eq!(report.len(), REPORT_LEN);
        prop_assert_eq!(verify_report(&key, &report), Ok(body));
    }

    #[test]
    fn a_bit_flip_never_verifies(
        key in prop::array::uniform32(any::<u8>()),
        body in body(),
        at in 0..REPORT_LEN,
        bit in 0..8u8,
    ) {
        let mut report = encode(&key, &body);
        report[at] ^= 1 << bit;
        prop_assert_eq!(verify_report(&key, &report), Err(ReportError::Mac));
    }

    #[test]
    fn another_key_never_verifies(
        key in prop::array::uniform32(any::<u8>()),
        other in prop::array::uniform32(any::<u8>()),
        body in body(),
    ) {
        prop_assume!(key != other);
        prop_assert_eq!(verify_report(&other, &encode(&key, &body)), Err(ReportError::Mac));
    }

    #[test]
    fn truncated_or_extended_reports_never_verify(
        key in prop::array::uniform32(any::<u8>()),
        body in body(),
        cut in 0..REPORT_LEN,
        extra in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let report = encode(&key, &body);
        prop_assert_eq!(verify_report(&key, &report[..cut]), Err(ReportError::Length(cut)));
        let mut longer = report.clone();
        longer.extend(extra);
        prop_assert!(verify_report(&key, &longer).is_err());
    }

    #[test]
    fn a_correct_mac_over_a_bad_header_is_refused(
        key in prop::array::uniform32(any::<u8>()),
        header in prop::array::uniform16(any::<u8>()),
        rest in prop::collection::vec(any::<u8>(), 128),
        keep_magic in any::<bool>(),
    ) {
        let mut header = header;
        if keep_magic {
            header[..8].copy_from_slice(&REPORT_MAGIC);
        }
        let mut body = [0u8; 128];
        body.copy_from_slice(&rest);
        let report = report(&key, header, &body);
        let version = u16::from_le_bytes([header[8], header[9]]);
        let flags = u16::from_le_bytes([header[10], header[11]]);
        match verify_report(&key, &report) {
            Ok(parsed) => {
                prop_assert_eq!(&header[..8], &REPORT_MAGIC[..]);
                prop_assert_eq!(version, 1);
                prop_assert_eq!(flags & !1, 0);
                prop_assert_eq!(parsed.debug, flags == 1);
            }
            Err(err) => prop_assert!(matches!(
                err,
                ReportError::Magic | ReportError::Version(_) | ReportError::Flags(_)
            )),
        }
    }
}
