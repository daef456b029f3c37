//! `rune-signd`: see the library docs for the API.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use rune_signd::{server, Audit, Service, Signer, Token, DEFAULT_BODY_LIMIT};

/// The enclave signature server: signs rune software-enclave signing material with an
/// RSA-3072 e=3 key over upstream's /api/v1/signature API, behind TLS and a bearer token.
#[derive(Parser, Debug)]
#[command(name = "rune-signd", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port. The bound address is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:9080")]
    listen: SocketAddr,
    /// Signing key (PEM, RSA-3072 e=3); created with mode 0600 when it does not exist.
    #[arg(long)]
    key: PathBuf,
    /// File holding the bearer token clients must send (at least 16 printable characters).
    #[arg(long)]
    token_file: PathBuf,
    /// TLS certificate chain (PEM).
    #[arg(
        long,
        requires = "tls_key",
        required_unless_present = "insecure_plain_http"
    )]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(
        long,
        requires = "tls_cert",
        required_unless_present = "insecure_plain_http"
    )]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead of TLS (tests only; loopback addresses only).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    insecure_plain_http: bool,
    /// Also append audit lines (JSON, one per signature) to this file (mode 0600).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Sign only rune software-enclave material, not SGX `sgx_sign gendata` material.
    #[arg(long)]
    refuse_sgx_material: bool,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = DEFAULT_BODY_LIMIT)]
    body_limit: usize,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("rune-signd: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.insecure_plain_http && !args.listen.ip().is_loopback() {
        bail!("--insecure-plain-http is only allowed on a loopback address");
    }
    let token = Token::from_file(&args.token_file)?;
    warn_if_exposed(&args.token_file, "token file");
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls_acceptor(cert, key)?),
        _ => None,
    };
    let signer = Signer::load_or_create(&args.key)?;
    warn_if_exposed(&args.key, "signing key");
    let audit = Audit::new(args.audit_log.as_deref(), true)?;
    let signer_id = signer.id_hex();
    let service = Arc::new(
        Service::new(signer, token, audit, args.body_limit)
            .accept_sgx_material(!args.refuse_sgx_material),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let bound = listener.local_addr().context("bound address")?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(
                stdout,
                "listening on {bound} ({scheme}), signer {signer_id}"
            )?;
            stdout.flush()?;
        }
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        tokio::select! {
            result = server::serve(listener, tls, service) => result,
            _ = tokio::signal::ctrl_c() => Ok(()),
            _ = terminate.recv() => Ok(()),
        }
    })
}

/// Secrets readable by group or others are used, but loudly.
fn warn_if_exposed(path: &Path, what: &str) {
    if let Ok(metadata) = std::fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "rune-signd: warning: {what} {} has mode {mode:o}; it should be 0600",
                path.display()
            );
        }
    }
}
