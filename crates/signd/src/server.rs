//! The network side: TLS (rustls) and HTTP/1.1 (hyper) around [`Service::handle`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::{Body, Request, Response, Service};

/// Connections served at once; more wait in the accept loop.
const MAX_CONNECTIONS: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// An over-limit body up to this size is read and thrown away before the 413 is sent, so that
/// clients which write the whole body before reading the answer see the 413 rather than a reset
/// connection; a larger one is not read at all.
const DRAIN_LIMIT: u64 = 1 << 20;

/// A TLS acceptor for the PEM certificate chain and private key (PKCS#8, PKCS#1 or SEC1).
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    if chain.is_empty() {
        bail!("TLS certificate {}: no CERTIFICATE in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("TLS certificate and key do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections on `listener` forever (TLS when `tls` is given).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Arc<Service>,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .context("connection limiter closed")?;
        let (stream, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("rune-signd: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = Arc::clone(&service);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                Some(tls) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, client, service).await,
                        Ok(Err(e)) => eprintln!("rune-signd: TLS handshake with {client}: {e}"),
                        Err(_) => eprintln!("rune-signd: TLS handshake with {client}: timed out"),
                    }
                }
                None => connection(stream, client, service).await,
            }
        });
    }
}

async fn connection<S>(stream: S, client: SocketAddr, service: Arc<Service>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handler = service_fn(move |request| respond(Arc::clone(&service), client, request));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let serving = builder.serve_connection(TokioIo::new(stream), handler);
    match tokio::time::timeout(CONNECTION_LIFETIME, serving).await {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(e)) => {
            if !e.is_incomplete_message() {
                eprintln!("rune-signd: connection from {client}: {e}");
            }
        }
    }
}

async fn respond(
    service: Arc<Service>,
    client: SocketAddr,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let limit = service.body_limit();
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let body = if declared.is_some_and(|length| length > DRAIN_LIMIT) {
        Body::TooLarge
    } else {
        match tokio::time::timeout(BODY_TIMEOUT, read_body(request.into_body(), limit)).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                return Ok(to_hyper(Response::text(
                    400,
                    format!("reading the body: {e}"),
                )))
            }
            Err(_) => return Ok(to_hyper(Response::text(408, "timed out reading the body"))),
        }
    };
    let request = Request {
        method,
        path,
        authorization,
        client,
        body,
    };
    let response = tokio::task::spawn_blocking(move || service.handle(request))
        .await
        .unwrap_or_else(|e| Response::text(500, format!("request handler failed: {e}")));
    Ok(to_hyper(response))
}

/// Up to `limit` bytes of body; past that, drains up to [`DRAIN_LIMIT`] and says `TooLarge`.
async fn read_body(mut incoming: Incoming, limit: usize) -> Result<Body, hyper::Error> {
    let mut kept = Vec::new();
    let mut seen: u64 = 0;
    while let Some(frame) = incoming.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len() as u64);
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= limit as u64 {
            kept.extend_from_slice(&data);
        }
    }
    if seen > limit as u64 {
        Ok(Body::TooLarge)
    } else {
        Ok(Body::Complete(kept))
    }
}

fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(response.content_type),
    );
    for (name, value) in response.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    out
}
