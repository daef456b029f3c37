//! SGX signing material as `sgx_sign gendata` writes it: the HEADER section of SIGSTRUCT
//! (offsets 0..128) followed by its BODY section (offsets 900..1028), 256 bytes, which is what an
//! SGX signature (RSA-3072 e=3, PKCS#1 v1.5, SHA-256) is made over.
//!
//! Offsets within the 256 bytes, all integers little-endian:
//!
//! | offset | size | field | accepted values |
//! |---|---|---|---|
//! | 0 | 12 | HEADER | `06000000E100000000000100` |
//! | 12 | 4 | TYPE | bit 31 (debug) only; bits 30..0 zero |
//! | 16 | 4 | MODULEVENDOR | `0x0000` or `0x8086` |
//! | 20 | 4 | DATE | BCD `yyyymmdd` (each nibble 0–9) |
//! | 24 | 16 | HEADER2 | `01010000600000006000000001000000` |
//! | 40 | 4 | SWDEFINED (HWVERSION) | 0 (launch enclaves are not signed here) |
//! | 44 | 84 | reserved | zero |
//! | 128 | 4 | MISCSELECT | any |
//! | 132 | 4 | MISCMASK | any |
//! | 136 | 4 | reserved | zero |
//! | 140 | 16 | ISVEXTPRODID (KSS) | any |
//! | 156 | 16 | ATTRIBUTES (flags, xfrm) | any; flags bit 1 = DEBUG |
//! | 172 | 16 | ATTRIBUTEMASK | any |
//! | 188 | 32 | ENCLAVEHASH (MRENCLAVE) | any |
//! | 220 | 16 | reserved | zero |
//! | 236 | 16 | ISVFAMILYID (KSS) | any |
//! | 252 | 2 | ISVPRODID | any |
//! | 254 | 2 | ISVSVN | any |

pub const SGX_MATERIAL_LEN: usize = 256;
pub const SGX_HEADER: [u8; 12] = [
    0x06, 0x00, 0x00, 0x00, 0xe1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
];
pub const SGX_HEADER2: [u8; 16] = [
    0x01, 0x01, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
];
const ATTRIBUTE_DEBUG: u64 = 1 << 1;

/// What SGX material says; enough for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SgxMaterial {
    pub mrenclave: [u8; 32],
    /// ATTRIBUTES.DEBUG, or TYPE bit 31.
    pub debug: bool,
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub vendor: u32,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Whether `body` claims to be SGX material (starts with the SIGSTRUCT header).
pub fn looks_like_sgx(body: &[u8]) -> bool {
    body.starts_with(&SGX_HEADER)
}

/// Checks every field listed in the module docs.
pub fn parse(body: &[u8]) -> Result<SgxMaterial, String> {
    if body.len() != SGX_MATERIAL_LEN {
        return Err(format!(
            "SGX signing material is {SGX_MATERIAL_LEN} bytes (SIGSTRUCT header + body), not {}",
            body.len()
        ));
    }
    if body[..12] != SGX_HEADER {
        return Err("SIGSTRUCT HEADER is not 06000000E100000000000100".into());
    }
    let kind = u32_at(body, 12);
    if kind & 0x7fff_ffff != 0 {
        return Err("SIGSTRUCT TYPE has reserved bits set".into());
    }
    let vendor = u32_at(body, 16);
    if vendor != 0 && vendor != 0x8086 {
        return Err(format!(
            "SIGSTRUCT MODULEVENDOR is {vendor:#x}, not 0 or 0x8086"
        ));
    }
    if !body[20..24]
        .iter()
        .all(|b| (b >> 4) <= 9 && (b & 0x0f) <= 9)
    {
        return Err("SIGSTRUCT DATE is not BCD".into());
    }
    if body[24..40] != SGX_HEADER2 {
        return Err("SIGSTRUCT HEADER2 is not 01010000600000006000000001000000".into());
    }
    if u32_at(body, 40) != 0 {
        return Err("SIGSTRUCT SWDEFINED is not 0 (launch enclaves are not signed here)".into());
    }
    for (range, name) in [
        (44..128, "reserved (44)"),
        (136..140, "reserved (908)"),
        (220..236, "reserved (992)"),
    ] {
        if body[range].iter().any(|&b| b != 0) {
            return Err(format!("SIGSTRUCT {name} bytes are not zero"));
        }
    }
    let mut mrenclave = [0u8; 32];
    mrenclave.copy_from_slice(&body[188..220]);
    Ok(SgxMaterial {
        mrenclave,
        debug: kind & 0x8000_0000 != 0 || u64_at(body, 156) & ATTRIBUTE_DEBUG != 0,
        isv_prod_id: u16_at(body, 252),
        isv_svn: u16_at(body, 254),
        vendor,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A well-formed gendata blob.
    pub(crate) fn sample() -> Vec<u8> {
        let mut body = vec![0u8; SGX_MATERIAL_LEN];
        body[..12].copy_from_slice(&SGX_HEADER);
        body[20..24].copy_from_slice(&0x2026_1203u32.to_le_bytes());
        body[24..40].copy_from_slice(&SGX_HEADER2);
        body[132..136].copy_from_slice(&u32::MAX.to_le_bytes());
        body[156..164].copy_from_slice(&0x4u64.to_le_bytes());
        body[164..172].copy_from_slice(&0x3u64.to_le_bytes());
        body[172..180].copy_from_slice(&0xffff_ffff_ffff_fffbu64.to_le_bytes());
        body[188..220].copy_from_slice(&[0x5a; 32]);
        body[252..254].copy_from_slice(&7u16.to_le_bytes());
        body[254..256].copy_from_slice(&2u16.to_le_bytes());
        body
    }

    #[test]
    fn parses_gendata() {
        let material = parse(&sample()).expect("valid");
        assert_eq!(material.mrenclave, [0x5a; 32]);
        assert!(!material.debug);
        assert_eq!((material.isv_prod_id, material.isv_svn), (7, 2));
        let mut debug = sample();
        debug[156] |= 0x2;
        assert!(parse(&debug).expect("valid").debug);
        let mut intel = sample();
        intel[16..20].copy_from_slice(&0x8086u32.to_le_bytes());
        assert_eq!(parse(&intel).expect("valid").vendor, 0x8086);
    }

    #[test]
    fn refuses_malformed() {
        let edits: [(usize, u8); 9] = [
            (0, 0x07),   // HEADER
            (12, 0x01),  // TYPE reserved bit
            (16, 0x01),  // vendor
            (20, 0x0a),  // DATE not BCD
            (30, 0xff),  // HEADER2
            (40, 0x01),  // SWDEFINED
            (100, 0x01), // reserved
            (137, 0x01), // reserved
            (230, 0x01), // reserved
        ];
        for (at, value) in edits {
            let mut body = sample();
            body[at] = value;
            assert!(parse(&body).is_err(), "edit at {at}");
        }
        let mut long = sample();
        long.push(0);
        assert!(parse(&long).is_err());
        assert!(parse(&sample()[..255]).is_err());
    }
}
