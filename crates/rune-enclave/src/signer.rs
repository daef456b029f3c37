//! Who signs: a local private key, or a signature server speaking upstream's
//! `/api/v1/signature` API (`rune-signd`).
//!
//! Nothing a server returns is taken on trust: its public key must have the enclave key shape
//! (RSA-3072, e=3), be the `--signer` key when one is pinned, and its signature must verify
//! over the exact material that was sent. Callers write nothing before [`Signer::sign`] has
//! returned, so a refused answer leaves every file as it was.

use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::SignerArgs;

/// The signing endpoint, relative to the server's base URL.
const SIGN_PATH: &str = "/api/v1/signature/pkcs1";
const SIGNATURE_BYTES: usize = enclave_image::KEY_BITS / 8;
/// Connect, read and write each; a signature takes the server milliseconds.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A real answer is about 1 KiB; a server sending more is broken or hostile.
const RESPONSE_LIMIT: u64 = 64 * 1024;
/// How much of a server's error message is repeated in ours.
const MESSAGE_LIMIT: usize = 300;

pub enum Signer {
    Local(RsaPrivateKey),
    Server(Client),
}

/// A signature checked against `public` over the material it was made for.
pub struct Signed {
    pub public: RsaPublicKey,
    pub signature: Vec<u8>,
}

impl Signer {
    /// Reads the key, or the token, CA and pin for the server: every local mistake is reported
    /// before the server is contacted.
    pub fn from_args(args: &SignerArgs) -> Result<Self> {
        match (&args.key, &args.server) {
            (Some(path), None) => {
                let pem = fs::read_to_string(path)
                    .with_context(|| format!("--key {}", path.display()))?;
                let key = enclave_image::private_key_from_pem(&pem)
                    .map_err(|e| anyhow!("--key {}: {e}", path.display()))?;
                Ok(Signer::Local(key))
            }
            (None, Some(url)) => Ok(Signer::Server(Client::new(url, args)?)),
            _ => bail!("give exactly one of --key and --server"),
        }
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `material`, verified before it is returned.
    pub fn sign(&self, material: &[u8]) -> Result<Signed> {
        match self {
            Signer::Local(key) => {
                let digest = Sha256::digest(material);
                // Blinded: the unblinded private-key operation leaks timing (RUSTSEC-2023-0071).
                let signature = key
                    .sign_with_rng(
                        &mut rand::rngs::OsRng,
                        Pkcs1v15Sign::new::<Sha256>(),
                        &digest,
                    )
                    .context("signing with --key")?;
                let public = key.to_public_key();
                // A miscomputed RSA-CRT signature would also give away the key's factors:
                // never release one that does not verify.
                if !verifies(&public, material, &signature) {
                    bail!("signing with --key produced a signature that does not verify; nothing was written");
                }
                Ok(Signed { public, signature })
            }
            Signer::Server(client) => client.sign(material),
        }
    }
}

/// Whether `signature` is `public`'s PKCS#1 v1.5 signature over SHA-256 of `material`.
pub fn verifies(public: &RsaPublicKey, material: &[u8], signature: &[u8]) -> bool {
    public
        .verify(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(material),
            signature,
        )
        .is_ok()
}

/// A signature server.
pub struct Client {
    /// The base URL as given, without trailing `/`.
    base: String,
    https: bool,
    agent: ureq::Agent,
    token: Option<String>,
    pin: Option<(PathBuf, RsaPublicKey)>,
}

impl Client {
    fn new(url: &str, args: &SignerArgs) -> Result<Self> {
        let server = ServerUrl::parse(url)?;
        let token = args.token_file.as_deref().map(read_token).transpose()?;
        let pin = match &args.signer {
            Some(path) => {
                let pem = fs::read_to_string(path)
                    .with_context(|| format!("--signer {}", path.display()))?;
                let key = enclave_image::public_key_from_pem(&pem)
                    .map_err(|e| anyhow!("--signer {}: {e}", path.display()))?;
                Some((path.clone(), key))
            }
            None => None,
        };
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(TIMEOUT)
            .timeout_read(TIMEOUT)
            .timeout_write(TIMEOUT)
            // A redirect would carry the bearer token wherever the answer points.
            .redirects(0)
            .user_agent(concat!("rune-enclave/", env!("CARGO_PKG_VERSION")));
        match (server.https, &args.ca_cert) {
            (true, Some(ca)) => builder = builder.tls_config(tls_config(ca)?),
            (true, None) => bail!(
                "--server {url}: https needs --ca-cert, the PEM certificate of the CA that \
                 issued the server's certificate (the system's CAs are not used for a signing \
                 server)"
            ),
            (false, Some(ca)) => bail!(
                "--ca-cert {}: only used for https, but --server {url} is plain http; give an \
                 https:// URL or drop --ca-cert",
                ca.display()
            ),
            (false, None) if !server.loopback => eprintln!(
                "rune-enclave: warning: --server {url} is plain http off this machine: the token \
                 and the material cross the network in the clear{}; use https with --ca-cert",
                if pin.is_some() {
                    ""
                } else {
                    ", and without --signer anyone on the way could answer with a key of their own"
                }
            ),
            (false, None) => {}
        }
        Ok(Client {
            base: server.base,
            https: server.https,
            agent: builder.build(),
            token,
            pin,
        })
    }

    fn sign(&self, material: &[u8]) -> Result<Signed> {
        let url = format!("{}{SIGN_PATH}", self.base);
        let mut request = self
            .agent
            .post(&url)
            .set("Content-Type", "application/octet-stream");
        if let Some(token) = &self.token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let response = match request.send_bytes(material) {
            Ok(response) if response.status() == 200 => response,
            Ok(response) => bail!(
                "the signature server {} answered {} to POST {SIGN_PATH}; expected 200 with \
                 the signature (is --server the server's base URL?)",
                self.base,
                describe(response)
            ),
            Err(ureq::Error::Status(401, response)) => {
                let fix = if self.token.is_some() {
                    "check that --token-file holds the server's current token"
                } else {
                    "give the server's token with --token-file"
                };
                bail!(
                    "the signature server refused the token ({}); {fix}",
                    describe(response)
                )
            }
            Err(ureq::Error::Status(_, response)) => bail!(
                "the signature server {} refused to sign: {}",
                self.base,
                describe(response)
            ),
            Err(ureq::Error::Transport(e)) => {
                let hint = if self.https {
                    "; for https, --ca-cert must be the CA that issued the server's certificate \
                     and the URL's host one of the certificate's names"
                } else {
                    ""
                };
                bail!(
                    "cannot get a signature from the signature server {}: {e}{hint}",
                    self.base
                )
            }
        };
        let body = read_limited(response)
            .with_context(|| format!("reading the answer of the signature server {}", self.base))?;
        self.check(&body, material)
    }

    /// The checks on a 200 answer: `{"signature": base64, "publicKey": PEM, "signer": hex}`.
    fn check(&self, body: &[u8], material: &[u8]) -> Result<Signed> {
        let from = format!("the signature server {}", self.base);
        let json: Value = serde_json::from_slice(body).map_err(|e| {
            anyhow!(
                "{from}: the answer is not JSON ({e}); is --server the base URL of a signature \
                 server?"
            )
        })?;
        let field = |name: &str| {
            json.get(name).and_then(Value::as_str).ok_or_else(|| {
                anyhow!("{from}: the answer has no string field `{name}`; refusing it")
            })
        };
        let public = enclave_image::public_key_from_pem(field("publicKey")?)
            .map_err(|e| anyhow!("{from}: its publicKey: {e}; refusing it"))?;
        let signer = hex::encode(enclave_image::signer_of(&public));
        // `signer` is rune-signd's addition; upstream servers leave it out.
        if let Some(claimed) = json.get("signer") {
            if !claimed
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case(&signer))
            {
                bail!(
                    "{from}: the answer's signer {claimed} is not the identity of its publicKey \
                     ({signer}); refusing it"
                );
            }
        }
        if let Some((path, pinned)) = &self.pin {
            if pinned != &public {
                bail!(
                    "{from}: signed with the key of signer {signer}, not the --signer {} key \
                     (signer {}); refusing the signature (is it the right server, or was the \
                     key rotated?)",
                    path.display(),
                    hex::encode(enclave_image::signer_of(pinned))
                );
            }
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(field("signature")?)
            .map_err(|e| anyhow!("{from}: its signature is not base64 ({e}); refusing it"))?;
        if signature.len() != SIGNATURE_BYTES {
            bail!(
                "{from}: its signature is {} bytes, but an RSA-{} signature is {SIGNATURE_BYTES} \
                 bytes; refusing it",
                signature.len(),
                enclave_image::KEY_BITS
            );
        }
        if !verifies(&public, material, &signature) {
            bail!(
                "{from}: its signature does not verify over the signing material with its \
                 publicKey (signer {signer}): tampered or wrong signature; refusing it"
            );
        }
        Ok(Signed { public, signature })
    }
}

/// `--server`, checked: only a base URL, so that the endpoint path is ours to add.
struct ServerUrl {
    base: String,
    https: bool,
    loopback: bool,
}

impl ServerUrl {
    fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| {
            anyhow!(
                "--server {url:?}: {why}; give the server's base URL, such as \
                 https://127.0.0.1:9443"
            )
        };
        let scheme = |prefix: &str| {
            url.get(..prefix.len())
                .filter(|p| p.eq_ignore_ascii_case(prefix))
                .map(|_| &url[prefix.len()..])
        };
        let (https, rest) = match (scheme("https://"), scheme("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(bad("not an http:// or https:// URL")),
        };
        if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                "a base URL has no query, fragment, space or control character",
            ));
        }
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains('@') {
            return Err(bad(
                "credentials do not belong in the URL (use --token-file)",
            ));
        }
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority
                .rsplit_once(':')
                .map_or(authority, |(host, _port)| host),
        };
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        Ok(ServerUrl {
            base: url.trim_end_matches('/').to_string(),
            https,
            loopback,
        })
    }
}

/// The token in `path`: one line, sent as `Authorization: Bearer <token>`. Errors never show
/// the token itself.
fn read_token(path: &Path) -> Result<String> {
    let text =
        fs::read_to_string(path).with_context(|| format!("--token-file {}", path.display()))?;
    let token = text.trim_end_matches(['\n', '\r']);
    if token.is_empty() {
        bail!(
            "--token-file {}: empty; put the signature server's bearer token in it",
            path.display()
        );
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "--token-file {}: the token must be one line of printable ASCII without spaces \
             (as rune-signd's token is)",
            path.display()
        );
    }
    Ok(token.to_string())
}

/// A client configuration trusting only the certificates in `path`.
fn tls_config(path: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("--ca-cert {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--ca-cert {}: not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!(
            "--ca-cert {}: no CERTIFICATE in it; give the PEM certificate of the CA that issued \
             the server's certificate",
            path.display()
        );
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| {
            anyhow!(
                "--ca-cert {}: a certificate that cannot be a trust anchor: {e}",
                path.display()
            )
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_limited(response: ureq::Response) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(RESPONSE_LIMIT + 1)
        .read_to_end(&mut body)?;
    if body.len() as u64 > RESPONSE_LIMIT {
        bail!("the answer is larger than {RESPONSE_LIMIT} bytes; refusing it");
    }
    Ok(body)
}

/// `401 Unauthorized: invalid bearer token`: the status and the server's message, cut short
/// and without control characters (the server's text lands on a terminal).
fn describe(response: ureq::Response) -> String {
    let status = format!("{} {}", response.status(), response.status_text());
    let body = read_limited(response).unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let mut message: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MESSAGE_LIMIT)
        .collect();
    if text.trim().chars().count() > MESSAGE_LIMIT {
        message.push_str("...");
    }
    let status: String = status
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect();
    if message.is_empty() {
        status
    } else {
        format!("{status}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let ok = |url: &str| ServerUrl::parse(url).expect(url);
        let server = ok("https://127.0.0.1:9443/");
        assert_eq!(server.base, "https://127.0.0.1:9443");
        assert!(server.https && server.loopback);
        let server = ok("HTTP://signer.example:80/prefix");
        assert_eq!(server.base, "HTTP://signer.example:80/prefix");
        assert!(!server.https && !server.loopback);
        assert!(ok("http://[::1]:9080").loopback);
        assert!(ok("http://localhost").loopback);
        for bad in [
            "ftp://host",
            "127.0.0.1:9443",
            "https://",
            "https:///path",
            "https://user:pw@host",
            "https://host/?q=1",
            "https://host/#x",
            "https://ho st",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        fs::write(&path, "abc-123_XYZ\r\n").expect("write");
        assert_eq!(read_token(&path).expect("token"), "abc-123_XYZ");
        for bad in ["", "\n", "two words\n", "line\nline\n"] {
            fs::write(&path, bad).expect("write");
            let err = read_token(&path).expect_err(bad).to_string();
            assert!(err.contains("--token-file"), "{err}");
        }
    }
}
