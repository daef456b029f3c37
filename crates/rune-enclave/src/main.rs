//! `rune-enclave`: builds, signs, measures, verifies and inspects software enclave images.
//!
//! The image format (manifest, measurement, signature, signer policy) is the
//! `enclave-image` library's and is written down in `docs/enclave-image.md`; this binary finds
//! the files an image must trust inside a hostile rootfs, hashes them, and drives the library.

mod collect;
mod commands;
mod elf;
#[cfg(test)]
mod fuzz_tests;
mod hash;
mod rootfs;
mod signer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rune-enclave",
    version,
    about = "Build, sign and check rune software enclave images",
    long_about = "Build, sign and check rune software enclave images.\n\nAn image is \
                  /.rune-enclave/manifest.json and /.rune-enclave/signature.json inside a \
                  container rootfs. The format is described in docs/enclave-image.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate an RSA-3072 signing key with public exponent 3 and print its signer identity
    Keygen(KeygenArgs),
    /// Write the (unsigned) manifest of the image in a rootfs
    Build(BuildArgs),
    /// Sign the manifest with a private key or a signature server (one-step signing)
    Sign(SignArgs),
    /// Sign raw signing material (e.g. `sgx_sign gendata` output) with a key or a server
    SignMaterial(SignMaterialArgs),
    /// Write the exact bytes to sign, for signing elsewhere (two-step signing, step 1)
    GenMaterial(GenMaterialArgs),
    /// Attach a signature made elsewhere, after checking it (two-step signing, step 2)
    Attach(AttachArgs),
    /// Print the measurement of the manifest
    Measure(MeasureArgs),
    /// Check the signature, every trusted file and, optionally, a signer policy
    Verify(VerifyArgs),
    /// Show what an image is: measurement, signer, identity, entrypoints, limits
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#1 PEM, mode 0600); must not exist
    #[arg(long, value_name = "KEY.pem")]
    pub out: PathBuf,
    /// Also write the public key (PKCS#1 PEM); must not exist
    #[arg(long, value_name = "PUB.pem")]
    pub public_out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RootfsArg {
    /// The container's root filesystem
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub rootfs: RootfsArg,
    /// A program the enclave may start (path inside the rootfs); repeatable
    #[arg(long = "entrypoint", value_name = "PATH", required = true)]
    pub entrypoints: Vec<String>,
    /// A path (file or directory) the enclave may write; repeatable
    #[arg(long = "writable", value_name = "PATH")]
    pub writable: Vec<String>,
    /// A default environment variable of the workload; repeatable, kept in order
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// A host (container) environment variable let through; repeatable
    #[arg(long = "host-env", value_name = "NAME")]
    pub host_env: Vec<String>,
    /// Address-space limit of each enclave process (binary units: K, M, G, T)
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    pub memory: u64,
    /// Thread limit
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_threads: u32,
    /// Process limit
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_processes: u32,
    /// Mark the image as a debug enclave (production signer policies refuse it)
    #[arg(long)]
    pub debug: bool,
    /// Product id (signed identity field)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub product_id: u16,
    /// Security version (signed identity field)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub security_version: u16,
    /// Also trust this file, or every file under this directory; repeatable
    #[arg(long = "trust", value_name = "PATH")]
    pub trust: Vec<String>,
    /// Leave this path, and everything under it, out of the trusted files: a mount point
    /// whose content the container runtime provides at run time (e.g. /etc/hosts); repeatable
    #[arg(long = "exclude", value_name = "PATH")]
    pub exclude: Vec<String>,
    /// Look up an --entrypoint without `/` in these directories (colon-separated, as the
    /// workload's PATH), the way rune resolves the workload's program at run time
    #[arg(long, value_name = "PATH")]
    pub search_path: Option<String>,
}

/// Who signs: a local private key, or a signature server (`rune-signd`).
#[derive(Args, Debug)]
#[command(group(
    clap::ArgGroup::new("signing_key")
        .required(true)
        .multiple(false)
        .args(["key", "server"])
))]
pub struct SignerArgs {
    /// The private key (PKCS#1 or PKCS#8 PEM, RSA-3072, e=3)
    #[arg(long, value_name = "KEY.pem")]
    pub key: Option<PathBuf>,
    /// Sign with this signature server instead (base URL, http:// or https://)
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The server's bearer token (one line; a trailing newline is ignored)
    #[arg(long, value_name = "FILE", conflicts_with = "key")]
    pub token_file: Option<PathBuf>,
    /// The CA certificate(s) (PEM) that https servers are checked against; needed for https
    #[arg(long, value_name = "PEM", conflicts_with = "key")]
    pub ca_cert: Option<PathBuf>,
    /// Accept only a signature by this public key (PKCS#1 or SubjectPublicKeyInfo PEM)
    #[arg(long, value_name = "PUB.pem", conflicts_with = "key")]
    pub signer: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    #[command(flatten)]
    pub rootfs: RootfsArg,
    #[command(flatten)]
    pub signer: SignerArgs,
}

#[derive(Args, Debug)]
pub struct SignMaterialArgs {
    /// The bytes to sign (PKCS#1 v1.5 over their SHA-256), e.g. `sgx_sign gendata` output
    #[arg(long, value_name = "FILE")]
    pub material: PathBuf,
    #[command(flatten)]
    pub signer: SignerArgs,
    /// Where to write the raw signature (384 bytes; replaced atomically, mode 0644)
    #[arg(long, value_name = "FILE")]
    pub signature_out: PathBuf,
    /// Where to write the signer's public key (SubjectPublicKeyInfo PEM; mode 0644)
    #[arg(long, value_name = "FILE")]
    pub public_key_out: PathBuf,
}

#[derive(Args, Debug)]
pub struct GenMaterialArgs {
    #[command(flatten)]
    pub rootfs: RootfsArg,
    /// Where to write the signing material (`-` for standard output)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    #[command(flatten)]
    pub rootfs: RootfsArg,
    /// The signer's public key (PKCS#1 or SubjectPublicKeyInfo PEM)
    #[arg(long, value_name = "PUB.pem")]
    pub public_key: PathBuf,
    /// The raw PKCS#1 v1.5 signature (384 bytes) over SHA-256 of the signing material
    #[arg(long, value_name = "FILE")]
    pub signature: PathBuf,
}

#[derive(Args, Debug)]
pub struct MeasureArgs {
    #[command(flatten)]
    pub rootfs: RootfsArg,
    /// Also hash every trusted file again and report those that differ (changes nothing)
    #[arg(long)]
    pub recompute: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub rootfs: RootfsArg,
    /// A signer policy (TOML: allowed_signers, allow_debug) the image must satisfy
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub rootfs: RootfsArg,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `256M`, `1G`, `4096`: bytes, with binary K/M/G/T suffixes (`Ki`, `KiB`, `KB` alike).
fn parse_size(text: &str) -> Result<u64, String> {
    let bad =
        || format!("{text:?} is not a size; write bytes or a number with K, M, G or T (256M)");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KI" | "KIB" => 10,
        "M" | "MB" | "MI" | "MIB" => 20,
        "G" | "GB" | "GI" | "GIB" => 30,
        "T" | "TB" | "TI" | "TIB" => 40,
        _ => return Err(bad()),
    };
    match number.checked_mul(1u64 << shift) {
        Some(0) => Err(format!("{text:?}: the memory size must be above 0")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text:?} is too large")),
    }
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => commands::keygen(&args),
        Command::Build(args) => commands::build(&args),
        Command::Sign(args) => commands::sign(&args),
        Command::SignMaterial(args) => commands::sign_material(&args),
        Command::GenMaterial(args) => commands::gen_material(&args),
        Command::Attach(args) => commands::attach(&args),
        Command::Measure(args) => commands::measure(&args),
        Command::Verify(args) => commands::verify(&args),
        Command::Inspect(args) => commands::inspect(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the whole cause chain, outermost first.
            let message = format!("{err:#}").replace('\n', " ");
            eprintln!("rune-enclave: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE; restore the default so `rune-enclave inspect | head` ends quietly.
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "M", "0", "12X", "-1", "1.5G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
