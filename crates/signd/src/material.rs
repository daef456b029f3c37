//! Which request bodies the server agrees to sign.
//!
//! Upstream's server signs any bytes it is sent, which makes it an open signing oracle for the
//! enclave key. This server signs only `RUNE-SOFTWARE-ENCLAVE-SIGNING-MATERIAL-V1` material as
//! written by [`enclave_image::signing_material`], byte for byte:
//!
//! ```text
//! RUNE-SOFTWARE-ENCLAVE-SIGNING-MATERIAL-V1\n
//! measurement=<64 lowercase hex digits>\n
//! debug=<0|1>\n
//! product_id=<decimal u16, no sign, no leading zero>\n
//! security_version=<decimal u16, no sign, no leading zero>\n
//! ```
//!
//! Nothing may precede, follow or sit between these five lines (no `\r`, no blank line, no
//! trailing data).
//!
//! It also signs SGX SIGSTRUCT material as `sgx_sign gendata` writes it, checked field by field
//! as described in [`crate::sgx`], unless that is switched off.

use std::fmt;

use crate::sgx::{self, SgxMaterial};

/// The first line of software-enclave signing material.
pub const MATERIAL_HEADER: &str = "RUNE-SOFTWARE-ENCLAVE-SIGNING-MATERIAL-V1";

/// Signing material the server agrees to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Material {
    Software(SoftwareMaterial),
    Sgx(SgxMaterial),
}

impl Material {
    /// Software material, or (when `accept_sgx`) SGX gendata material; nothing else.
    pub fn parse(body: &[u8], accept_sgx: bool) -> Result<Self, NotMaterial> {
        if sgx::looks_like_sgx(body) {
            if !accept_sgx {
                return Err(NotMaterial(
                    "SGX signing material is not accepted by this server".into(),
                ));
            }
            return sgx::parse(body).map(Material::Sgx).map_err(NotMaterial);
        }
        SoftwareMaterial::parse(body).map(Material::Software)
    }

    /// The format name written to the audit log.
    pub fn format(&self) -> &'static str {
        match self {
            Material::Software(_) => MATERIAL_HEADER,
            Material::Sgx(_) => "SGX-SIGSTRUCT-GENDATA",
        }
    }

    /// The software-enclave measurement, or MRENCLAVE.
    pub fn measurement(&self) -> [u8; 32] {
        match self {
            Material::Software(m) => m.measurement,
            Material::Sgx(m) => m.mrenclave,
        }
    }

    pub fn debug(&self) -> bool {
        match self {
            Material::Software(m) => m.debug,
            Material::Sgx(m) => m.debug,
        }
    }

    pub fn product_id(&self) -> u16 {
        match self {
            Material::Software(m) => m.product_id,
            Material::Sgx(m) => m.isv_prod_id,
        }
    }

    pub fn security_version(&self) -> u16 {
        match self {
            Material::Software(m) => m.security_version,
            Material::Sgx(m) => m.isv_svn,
        }
    }
}

/// What software-enclave material says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftwareMaterial {
    pub measurement: [u8; 32],
    pub debug: bool,
    pub product_id: u16,
    pub security_version: u16,
}

/// Why a body is not signing material; the message is sent to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotMaterial(pub String);

impl fmt::Display for NotMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the body is not signing material ({MATERIAL_HEADER} text, or SGX `sgx_sign \
             gendata` output): {}",
            self.0
        )
    }
}

impl std::error::Error for NotMaterial {}

impl SoftwareMaterial {
    /// The exact bytes this material is written as (what `signing_material` produces).
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{MATERIAL_HEADER}\nmeasurement={}\ndebug={}\nproduct_id={}\nsecurity_version={}\n",
            hex::encode(self.measurement),
            u8::from(self.debug),
            self.product_id,
            self.security_version
        )
        .into_bytes()
    }

    /// Parses `body`, accepting only the exact line structure described in the module docs.
    pub fn parse(body: &[u8]) -> Result<Self, NotMaterial> {
        let bad = |why: &str| NotMaterial(why.to_string());
        let text = std::str::from_utf8(body).map_err(|_| bad("it is not UTF-8 text"))?;
        let text = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("it does not end with a newline"))?;
        let lines: Vec<&str> = text.split('\n').collect();
        if lines.first() != Some(&MATERIAL_HEADER) {
            return Err(bad(&format!("the first line is not {MATERIAL_HEADER}")));
        }
        if lines.len() != 5 {
            return Err(bad(&format!(
                "it has {} lines; expected exactly 5 (header, measurement, debug, product_id, \
                 security_version)",
                lines.len()
            )));
        }
        let field = |line: &str, key: &str| -> Result<String, NotMaterial> {
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_string)
                .ok_or_else(|| NotMaterial(format!("expected a {key}= line, found {line:?}")))
        };
        let measurement = field(lines[1], "measurement")?;
        if measurement.len() != 64
            || !measurement
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("measurement is not 64 lowercase hex digits"));
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&measurement, &mut digest)
            .map_err(|_| bad("measurement is not hex"))?;
        let debug = match field(lines[2], "debug")?.as_str() {
            "0" => false,
            "1" => true,
            _ => return Err(bad("debug is not 0 or 1")),
        };
        let product_id = decimal_u16(&field(lines[3], "product_id")?)
            .ok_or_else(|| bad("product_id is not a decimal number from 0 to 65535"))?;
        let security_version = decimal_u16(&field(lines[4], "security_version")?)
            .ok_or_else(|| bad("security_version is not a decimal number from 0 to 65535"))?;
        let material = SoftwareMaterial {
            measurement: digest,
            debug,
            product_id,
            security_version,
        };
        // Belt and braces: exactly one spelling is accepted.
        if material.encode() != body {
            return Err(bad("it is not in canonical form"));
        }
        Ok(material)
    }
}

/// A u16 in canonical decimal: digits only, no leading zero unless it is "0".
fn decimal_u16(text: &str) -> Option<u16> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SoftwareMaterial {
        SoftwareMaterial {
            measurement: [0xab; 32],
            debug: false,
            product_id: 7,
            security_version: 65535,
        }
    }

    #[test]
    fn round_trip() {
        let material = sample();
        assert_eq!(SoftwareMaterial::parse(&material.encode()), Ok(material));
        let zero = SoftwareMaterial {
            product_id: 0,
            security_version: 0,
            debug: true,
            ..sample()
        };
        assert_eq!(SoftwareMaterial::parse(&zero.encode()), Ok(zero));
    }

    #[test]
    fn refuses_anything_else() {
        let good = String::from_utf8(sample().encode()).expect("utf8");
        let cases = [
            String::new(),
            "hello".to_string(),
            good.trim_end().to_string(),
            format!("{good}extra\n"),
            format!("{good}\n"),
            good.replace('\n', "\r\n"),
            good.replace("product_id=7", "product_id=07"),
            good.replace("product_id=7", "product_id=+7"),
            good.replace("product_id=7", "product_id=65536"),
            good.replace("security_version=65535", "security_version=-1"),
            good.replace("debug=0", "debug=false"),
            good.replace("abab", "ABAB"),
            good.replace("measurement=ab", "measurement="),
            good.replace("measurement=", "measurement ="),
            good.replace("MATERIAL-V1", "MATERIAL-V2"),
            format!(" {good}"),
        ];
        for case in cases {
            assert!(Material::parse(case.as_bytes(), true).is_err(), "{case:?}");
        }
        let gendata = crate::sgx::tests::sample();
        let sgx = Material::parse(&gendata, true).expect("sgx material");
        assert_eq!(sgx.measurement(), [0x5a; 32]);
        assert_eq!(sgx.format(), "SGX-SIGSTRUCT-GENDATA");
        let refused = Material::parse(&gendata, false).expect_err("sgx refused");
        assert!(refused.to_string().contains("not accepted"), "{refused}");
        assert!(Material::parse(&[0xff, 0xfe, b'\n'], true).is_err());
    }
}
