//! `rune-signd`: the enclave signature server.
//!
//! It speaks upstream Inclavare Containers' signature-server API so that upstream's shim client
//! (and rune's) can use it unchanged, but fixes upstream's flaws: every signing and key request
//! needs a bearer token, the transport is TLS, only enclave signing material is signed (never
//! arbitrary bytes), bodies are size-limited and every signature is written to an audit log.
//!
//! | method + path | auth | response |
//! |---|---|---|
//! | `GET`/`HEAD /` | none | 200, empty |
//! | `GET /ping` | none | 200 `ping` |
//! | `GET /healthz` | none | 200 `ok` |
//! | `POST /api/v1/signature/pkcs1` | bearer | 200 JSON `{"signature": base64(sig), "publicKey": PEM, "signer": hex}` |
//! | `GET /api/v1/signature/public-key` | bearer | 200 public key PEM (SubjectPublicKeyInfo, `PUBLIC KEY`) |
//!
//! The signing response keeps upstream's JSON shape (`signature` is the base64 of the raw
//! RSA-3072 e=3 PKCS#1 v1.5 signature over SHA-256 of the body; `publicKey` the PEM); `signer` is
//! an addition (hex SHA-256 of the little-endian modulus, like MRSIGNER) that upstream's client
//! ignores. Errors are `text/plain` messages: 400 (not signing material), 401 (no or wrong
//! token, with `WWW-Authenticate: Bearer`), 404, 405, 413 (body over the limit), 500.
//!
//! Only signing material is signed ([`material`]): `RUNE-SOFTWARE-ENCLAVE-SIGNING-MATERIAL-V1`
//! text exactly as `enclave_image::signing_material` writes it, and SGX `sgx_sign gendata`
//! output (SIGSTRUCT header + body, 256 bytes, every fixed and reserved field checked, see
//! [`sgx`]) unless the server is started with `--refuse-sgx-material`.
//!
//! [`Service::handle`] is the whole request logic, without sockets; `server` runs it over
//! hyper + rustls.

pub mod material;
pub mod server;
pub mod sgx;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{bail, Context};
use base64::Engine;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use material::{Material, NotMaterial, SoftwareMaterial, MATERIAL_HEADER};

/// Default request-body limit: real material is under 200 bytes.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
pub const SIGN_PATH: &str = "/api/v1/signature/pkcs1";
pub const PUBLIC_KEY_PATH: &str = "/api/v1/signature/public-key";

/// The signing key and what is derived from it.
pub struct Signer {
    key: RsaPrivateKey,
    public_pem: String,
    id: [u8; 32],
}

impl Signer {
    pub fn new(key: RsaPrivateKey) -> anyhow::Result<Self> {
        // Refuses keys of another shape (the PEM round trip runs enclave-image's check).
        let pem = enclave_image::private_key_to_pem(&key)?;
        let key = enclave_image::private_key_from_pem(&pem)?;
        let public = key.to_public_key();
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .context("encoding the public key")?;
        let id = enclave_image::signer_of(&public);
        Ok(Self {
            key,
            public_pem,
            id,
        })
    }

    /// Loads the key at `path`, or creates an RSA-3072 e=3 key there (mode 0600) when there is
    /// no file. An existing key of another shape is an error, never replaced.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        match fs::read_to_string(path) {
            Ok(pem) => {
                let key = enclave_image::private_key_from_pem(&pem)
                    .with_context(|| format!("signing key {}", path.display()))?;
                Self::new(key)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = enclave_image::generate_key()?;
                let pem = enclave_image::private_key_to_pem(&key)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("creating signing key {}", path.display()))?;
                file.write_all(pem.as_bytes())
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("writing signing key {}", path.display()))?;
                Self::new(key)
            }
            Err(e) => Err(e).with_context(|| format!("reading signing key {}", path.display())),
        }
    }

    /// The public key as SubjectPublicKeyInfo PEM (what upstream serves and `sgx_sign` reads).
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// Hex of the signer identity (SHA-256 of the little-endian modulus).
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// RSA PKCS#1 v1.5 over SHA-256 of `data`.
    pub fn sign(&self, data: &[u8]) -> anyhow::Result<Vec<u8>> {
        let digest = Sha256::digest(data);
        // Blinded: over the network, the unblinded private-key operation's timing is what
        // RUSTSEC-2023-0071 measures. The rsa crate is not constant-time even so; see README.
        self.key
            .sign_with_rng(
                &mut rand::rngs::OsRng,
                Pkcs1v15Sign::new::<Sha256>(),
                &digest,
            )
            .context("RSA signing")
    }
}

/// The bearer token, kept only as its SHA-256 so comparison time does not depend on where (or
/// whether the lengths) differ.
pub struct Token([u8; 32]);

impl Token {
    pub fn new(token: &str) -> anyhow::Result<Self> {
        if token.len() < 16 {
            bail!("the token must be at least 16 characters");
        }
        if token.bytes().any(|b| !b.is_ascii_graphic()) {
            bail!("the token must be printable ASCII without spaces");
        }
        Ok(Self(Sha256::digest(token.as_bytes()).into()))
    }

    /// Reads the token file; surrounding whitespace (a trailing newline) is ignored.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?;
        Self::new(text.trim()).with_context(|| format!("token file {}", path.display()))
    }

    /// Whether an `Authorization` header value carries this token.
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let Some((scheme, presented)) = value.split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let presented: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        bool::from(presented.ct_eq(&self.0))
    }
}

/// Where audit lines go: always stderr, and a file when one is given. A signature is only
/// released once its audit line has been written to the file.
pub struct Audit {
    file: Option<Mutex<File>>,
    stderr: bool,
    #[cfg(test)]
    lines: Mutex<Vec<String>>,
}

impl Audit {
    pub fn new(file: Option<&Path>, stderr: bool) -> anyhow::Result<Self> {
        let file = match file {
            Some(path) => Some(Mutex::new(
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("opening audit log {}", path.display()))?,
            )),
            None => None,
        };
        Ok(Self {
            file,
            stderr,
            #[cfg(test)]
            lines: Mutex::new(Vec::new()),
        })
    }

    fn record(&self, line: &str) -> io::Result<()> {
        #[cfg(test)]
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line.to_string());
        if self.stderr {
            eprintln!("{line}");
        }
        if let Some(file) = &self.file {
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
            file.write_all(format!("{line}\n").as_bytes())?;
            file.flush()?;
        }
        Ok(())
    }
}

/// A request as the server layer hands it over.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub client: SocketAddr,
    pub body: Body,
}

/// The request body, or why it was not read.
#[derive(Debug)]
pub enum Body {
    Complete(Vec<u8>),
    /// Longer than the limit (by `Content-Length` or while reading).
    TooLarge,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn text(status: u16, text: impl Into<String>) -> Self {
        let mut body = text.into().into_bytes();
        if !body.is_empty() && !body.ends_with(b"\n") && status >= 400 {
            body.push(b'\n');
        }
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body,
        }
    }

    fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// The request logic: routing, authentication, limits, material check, signing, audit.
pub struct Service {
    signer: Signer,
    token: Token,
    audit: Audit,
    body_limit: usize,
    accept_sgx: bool,
}

impl Service {
    pub fn new(signer: Signer, token: Token, audit: Audit, body_limit: usize) -> Self {
        Self {
            signer,
            token,
            audit,
            body_limit,
            accept_sgx: true,
        }
    }

    /// Whether SGX `sgx_sign gendata` material is signed (it is by default).
    pub fn accept_sgx_material(mut self, accept: bool) -> Self {
        self.accept_sgx = accept;
        self
    }

    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Order of checks: route, method, token, size, material. A client without the token learns
    /// nothing about the body rules.
    pub fn handle(&self, request: Request) -> Response {
        let method = request.method.as_str();
        let get = method == "GET" || method == "HEAD";
        let allow = |allowed: &str| {
            Response::text(405, format!("method {method} not allowed; use {allowed}"))
                .with_header("allow", allowed)
        };
        match request.path.as_str() {
            "/" if get => Response::text(200, ""),
            "/ping" if get => Response::text(200, "ping"),
            "/healthz" if get => Response::text(200, "ok"),
            "/" | "/ping" | "/healthz" => allow("GET, HEAD"),
            PUBLIC_KEY_PATH => {
                if !get {
                    return allow("GET, HEAD");
                }
                if let Some(refused) = self.authenticate(&request) {
                    return refused;
                }
                let mut response = Response::text(200, self.signer.public_key_pem());
                response.content_type = "application/x-pem-file";
                response
            }
            SIGN_PATH => {
                if method != "POST" {
                    return allow("POST");
                }
                if let Some(refused) = self.authenticate(&request) {
                    return refused;
                }
                self.sign(&request)
            }
            _ => Response::text(404, format!("no such endpoint: {}", request.path)),
        }
    }

    fn authenticate(&self, request: &Request) -> Option<Response> {
        if self.token.accepts(request.authorization.as_deref()) {
            return None;
        }
        let reason = if request.authorization.is_some() {
            "invalid bearer token"
        } else {
            "missing bearer token (Authorization: Bearer <token>)"
        };
        Some(Response::text(401, reason).with_header("www-authenticate", "Bearer"))
    }

    fn sign(&self, request: &Request) -> Response {
        let body = match &request.body {
            Body::Complete(body) if body.len() <= self.body_limit => body,
            _ => {
                return Response::text(
                    413,
                    format!("the body is larger than {} bytes", self.body_limit),
                )
            }
        };
        let material = match Material::parse(body, self.accept_sgx) {
            Ok(material) => material,
            Err(e) => return Response::text(400, e.to_string()),
        };
        let signature = match self.signer.sign(body) {
            Ok(signature) => signature,
            Err(e) => return Response::text(500, format!("signing failed: {e:#}")),
        };
        let line = serde_json::json!({
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "event": "sign",
            "client": request.client.to_string(),
            "format": material.format(),
            "measurement": hex::encode(material.measurement()),
            "debug": material.debug(),
            "product_id": material.product_id(),
            "security_version": material.security_version(),
            "signer": self.signer.id_hex(),
        })
        .to_string();
        if let Err(e) = self.audit.record(&line) {
            return Response::text(500, format!("writing the audit log failed: {e}"));
        }
        let json = serde_json::json!({
            "signature": base64::engine::general_purpose::STANDARD.encode(&signature),
            "publicKey": self.signer.public_key_pem(),
            "signer": self.signer.id_hex(),
        });
        Response {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: json.to_string().into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    const TOKEN: &str = "0123456789abcdef-test-token";

    fn key() -> RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| enclave_image::generate_key().expect("keygen"))
            .clone()
    }

    fn service() -> Service {
        Service::new(
            Signer::new(key()).expect("signer"),
            Token::new(TOKEN).expect("token"),
            Audit::new(None, false).expect("audit"),
            DEFAULT_BODY_LIMIT,
        )
    }

    fn request(method: &str, path: &str, auth: Option<&str>, body: Body) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            authorization: auth.map(str::to_string),
            client: "192.0.2.1:4242".parse().expect("addr"),
            body,
        }
    }

    fn material() -> Vec<u8> {
        SoftwareMaterial {
            measurement: [0x11; 32],
            debug: false,
            product_id: 1,
            security_version: 2,
        }
        .encode()
    }

    #[test]
    fn signs_material_and_audits() {
        let service = service();
        let bearer = format!("Bearer {TOKEN}");
        let response = service.handle(request(
            "POST",
            SIGN_PATH,
            Some(&bearer),
            Body::Complete(material()),
        ));
        assert_eq!(
            response.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&response.body)
        );
        let json: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
        let signature = base64::engine::general_purpose::STANDARD
            .decode(json["signature"].as_str().expect("signature"))
            .expect("base64");
        let public = key().to_public_key();
        public
            .verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(material()),
                &signature,
            )
            .expect("verifies");
        assert_eq!(json["publicKey"], service.signer().public_key_pem());
        let lines = service.audit.lines.lock().expect("lock");
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains(&hex::encode([0x11; 32])), "{}", lines[0]);
        assert!(lines[0].contains("192.0.2.1:4242"), "{}", lines[0]);
    }

    #[test]
    fn auth_limits_and_routing() {
        let service = service();
        let bearer = format!("Bearer {TOKEN}");
        let status = |method: &str, path: &str, auth: Option<&str>, body: Body| {
            service.handle(request(method, path, auth, body)).status
        };
        let body = || Body::Complete(material());
        assert_eq!(status("POST", SIGN_PATH, None, body()), 401);
        assert_eq!(
            status("POST", SIGN_PATH, Some("Bearer wrong-token-123456"), body()),
            401
        );
        assert_eq!(status("POST", SIGN_PATH, Some(TOKEN), body()), 401);
        assert_eq!(status("POST", SIGN_PATH, None, Body::TooLarge), 401);
        assert_eq!(
            status("POST", SIGN_PATH, Some(&bearer), Body::TooLarge),
            413
        );
        assert_eq!(
            status(
                "POST",
                SIGN_PATH,
                Some(&bearer),
                Body::Complete(b"hello".to_vec())
            ),
            400
        );
        assert_eq!(status("GET", SIGN_PATH, Some(&bearer), body()), 405);
        assert_eq!(status("GET", PUBLIC_KEY_PATH, None, body()), 401);
        assert_eq!(status("GET", PUBLIC_KEY_PATH, Some(&bearer), body()), 200);
        assert_eq!(status("GET", "/ping", None, body()), 200);
        assert_eq!(status("GET", "/healthz", None, body()), 200);
        assert_eq!(status("HEAD", "/", None, body()), 200);
        assert_eq!(status("GET", "/nope", None, body()), 404);
        assert!(service.audit.lines.lock().expect("lock").is_empty());
        let gendata = crate::sgx::tests::sample();
        assert_eq!(
            status(
                "POST",
                SIGN_PATH,
                Some(&bearer),
                Body::Complete(gendata.clone())
            ),
            200
        );
        assert_eq!(service.audit.lines.lock().expect("lock").len(), 1);
        let strict = service.accept_sgx_material(false);
        let response = strict.handle(request(
            "POST",
            SIGN_PATH,
            Some(&bearer),
            Body::Complete(gendata),
        ));
        assert_eq!(response.status, 400);
    }

    #[test]
    fn token_rules() {
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in it!!").is_err());
        let token = Token::new(TOKEN).expect("token");
        assert!(token.accepts(Some(&format!("bearer {TOKEN}"))));
        assert!(!token.accepts(Some(&format!("Basic {TOKEN}"))));
        assert!(!token.accepts(Some(&format!("Bearer {TOKEN}x"))));
        assert!(!token.accepts(None));
    }

    #[test]
    fn refuses_other_key_shapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        let small = RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).expect("keygen");
        let pem =
            rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_pem(&small, LineEnding::LF).expect("pem");
        fs::write(&path, pem.as_bytes()).expect("write");
        let err = Signer::load_or_create(&path).err().expect("refused");
        assert!(format!("{err:#}").contains("RSA-3072"), "{err:#}");
        fs::write(&path, "garbage").expect("write");
        assert!(Signer::load_or_create(&path).is_err());
    }
}
