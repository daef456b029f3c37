//! The subcommands. Measuring, signing and policy are the `enclave-image` library's; what is
//! here is finding files, hashing them, and reading and writing the image files safely.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use enclave_image::{
    EnvPolicy, Manifest, Policy, Signature, SignedImage, KEY_BITS, MANIFEST_FILE, MANIFEST_VERSION,
    SIGNATURE_FILE,
};
use serde_json::json;

use crate::collect::{Collected, Collector};
use crate::hash;
use crate::rootfs::{self, Rootfs};
use crate::signer::Signer;
use crate::{
    AttachArgs, BuildArgs, GenMaterialArgs, InspectArgs, KeygenArgs, MeasureArgs, SignArgs,
    SignMaterialArgs, VerifyArgs,
};

const SIGNATURE_BYTES: usize = KEY_BITS / 8;

pub fn keygen(args: &KeygenArgs) -> Result<()> {
    let outputs: Vec<&Path> = std::iter::once(args.out.as_path())
        .chain(args.public_out.as_deref())
        .collect();
    if args.public_out.as_deref() == Some(args.out.as_path()) {
        bail!("--out and --public-out name the same file; give two paths");
    }
    // Checked first: generating the key takes a while.
    for path in &outputs {
        if fs::symlink_metadata(path).is_ok() {
            bail!(
                "{}: already exists; refusing to overwrite a key (remove it or choose another path)",
                path.display()
            );
        }
    }
    let key = enclave_image::generate_key()?;
    let public = key.to_public_key();
    let pem = enclave_image::private_key_to_pem(&key)?;
    write_new(&args.out, pem.as_bytes(), 0o600)?;
    if let Some(path) = &args.public_out {
        write_new(
            path,
            enclave_image::public_key_to_pem(&public)?.as_bytes(),
            0o644,
        )?;
    }
    println!("{}", hex::encode(enclave_image::signer_of(&public)));
    eprintln!(
        "rune-enclave: wrote {} (RSA-{KEY_BITS}, e=3, mode 0600){}; the line above is its \
         signer identity",
        args.out.display(),
        args.public_out
            .as_ref()
            .map(|p| format!(" and {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// Creates `path` with `mode`; never replaces or follows anything already there.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => anyhow!(
                "{}: already exists; refusing to overwrite a key (remove it or choose another \
                 path)",
                path.display()
            ),
            _ => anyhow!("{}: {e}", path.display()),
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn build(args: &BuildArgs) -> Result<()> {
    let rootfs = Rootfs::open(&args.rootfs.rootfs)?;

    let mut entrypoints: Vec<String> = Vec::new();
    let mut searched = Vec::new();
    for given in &args.entrypoints {
        let bare = !given.is_empty() && !given.contains('/');
        let path = match &args.search_path {
            Some(search_path) if bare => {
                let found = rootfs.search(given, search_path)?;
                searched.push(format!("{given} -> {found}"));
                found
            }
            None if bare => bail!(
                "--entrypoint {given:?}: must be an absolute path inside the rootfs; to look a \
                 program name up as rune does at run time, give --search-path (the workload's \
                 PATH)"
            ),
            _ => given.clone(),
        };
        let path = rootfs::normalise(&path, "--entrypoint")?;
        if !entrypoints.contains(&path) {
            entrypoints.push(path);
        }
    }
    let mut writable: Vec<String> = Vec::new();
    for path in &args.writable {
        let path = rootfs::normalise(path, "--writable")?;
        if !writable.contains(&path) {
            writable.push(path);
        }
    }
    for entry in &args.env {
        match entry.split_once('=') {
            Some((name, _)) if !name.is_empty() && !entry.contains(['\n', '\0']) => {}
            _ => bail!("--env {entry:?}: write NAME=value (no newline or NUL)"),
        }
    }
    for name in &args.host_env {
        if name.is_empty() || name.contains(['=', '\n', '\0']) {
            bail!("--host-env {name:?}: give a variable name only (no `=`, newline or NUL)");
        }
    }

    let mut excluded: Vec<String> = Vec::new();
    for path in &args.exclude {
        let path = rootfs::normalise(path, "--exclude")?;
        if path == "/" {
            bail!("--exclude /: would leave every file out; exclude the mount points only");
        }
        if !excluded.contains(&path) {
            excluded.push(path);
        }
    }
    let mut trusted: Vec<String> = Vec::new();
    for path in &args.trust {
        trusted.push(rootfs::normalise(path, "--trust")?);
    }
    for (option, path) in entrypoints
        .iter()
        .map(|p| ("--entrypoint", p))
        .chain(trusted.iter().map(|p| ("--trust", p)))
    {
        if let Some(x) = excluded.iter().find(|x| inside(path, x)) {
            bail!(
                "{option} {path}: is under --exclude {x}, whose content the runtime provides at \
                 run time, so it cannot be trusted; name a path of the image itself"
            );
        }
    }

    let mut collector = Collector::new(&rootfs);
    for path in &entrypoints {
        collector.entrypoint(path)?;
    }
    for path in &trusted {
        collector.trust(path)?;
    }
    let mut collected = collector.finish();
    if !excluded.is_empty() {
        leave_out(&mut collected, &excluded, &entrypoints)?;
    }
    for warning in &collected.warnings {
        eprintln!("rune-enclave: warning: {warning}");
    }
    // The software PAL starts an entrypoint only if the file it resolves to is an entrypoint
    // too (so a repointed symlink is refused): list the target of `/bin/sh -> busybox`.
    let mut resolved_targets = Vec::new();
    for path in &entrypoints {
        if let Some(canonical) = collected.files.get(path) {
            if canonical != path
                && !entrypoints.contains(canonical)
                && !resolved_targets.contains(canonical)
            {
                resolved_targets.push(canonical.clone());
            }
        }
    }
    entrypoints.extend(resolved_targets);

    if let Some((dir, path)) = writable_trusted(&writable, collected.files.keys()) {
        bail!(
            "--writable {dir}: holds the trusted file {path}, which the enclave could then \
             change; make a narrower path writable"
        );
    }

    let digests = hash::hash_all(&rootfs, &collected.sizes);
    let mut trusted_files = BTreeMap::new();
    for (key, canonical) in &collected.files {
        match digests.get(canonical) {
            Some(Ok(digest)) => {
                trusted_files.insert(key.clone(), digest.clone());
            }
            Some(Err(e)) => bail!("trusted file {key}: {e}"),
            None => bail!("trusted file {key}: was not hashed"),
        }
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        entrypoints,
        trusted_files,
        writable_paths: writable,
        env: EnvPolicy {
            default: args.env.clone(),
            host_allowed: args.host_env.clone(),
        },
        memory_size: args.memory,
        max_threads: args.max_threads,
        max_processes: args.max_processes,
        debug: args.debug,
        product_id: args.product_id,
        security_version: args.security_version,
    };
    manifest.validate().context("the manifest that was built")?;

    // The old signature goes first: interrupted, this leaves an unsigned image, never a
    // signature beside a manifest it was not made for.
    let stale = rootfs.remove_image_file(SIGNATURE_FILE)?;
    let path = rootfs.write_image_file(MANIFEST_FILE, &manifest.to_json())?;
    let bytes: u64 = collected.sizes.values().sum();
    println!("manifest: {} (unsigned)", path.display());
    for found in &searched {
        println!("entrypoint found through --search-path: {found}");
    }
    if stale {
        println!("removed the stale {SIGNATURE_FILE}: sign the image again");
    }
    println!(
        "trusted files: {} paths, {} distinct files, {}",
        manifest.trusted_files.len(),
        collected.sizes.len(),
        human_bytes(bytes)
    );
    println!("measurement: {}", hex::encode(manifest.measurement()));
    Ok(())
}

/// The first trusted path at or beneath a writable path, with that writable path: the
/// enclave could rewrite its own code after launch, so neither build nor verify accepts it.
/// Whether `path` is `dir` or lies under it.
fn inside(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Drops the files under an excluded path (by name or by what a symlink resolves to): a mount
/// covers them at run time, so their digests could never match. An entrypoint resolving into
/// one is an error, since the enclave could not start it.
fn leave_out(collected: &mut Collected, excluded: &[String], entrypoints: &[String]) -> Result<()> {
    let covered = |path: &str| excluded.iter().find(|x| inside(path, x));
    for e in entrypoints {
        if let Some(canonical) = collected.files.get(e) {
            if let Some(x) = covered(canonical) {
                bail!("--entrypoint {e}: resolves to {canonical}, under --exclude {x}");
            }
        }
    }
    let mut dropped = Vec::new();
    collected.files.retain(|key, canonical| {
        let keep = covered(key).is_none() && covered(canonical).is_none();
        if !keep {
            dropped.push(key.clone());
        }
        keep
    });
    let kept: HashSet<&String> = collected.files.values().collect();
    collected
        .sizes
        .retain(|canonical, _| kept.contains(canonical));
    for key in dropped {
        collected.warnings.push(format!(
            "{key}: left out of the trusted files (a mount point covers it at run time; the \
             enclave cannot read it)"
        ));
    }
    Ok(())
}

fn writable_trusted<'a>(
    writable: &'a [String],
    trusted: impl Iterator<Item = &'a String> + Clone,
) -> Option<(&'a str, &'a str)> {
    writable.iter().find_map(|dir| {
        trusted
            .clone()
            .find(|path| inside(path, dir))
            .map(|path| (dir.as_str(), path.as_str()))
    })
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The manifest of the image in `rootfs`, validated.
fn load_manifest(rootfs: &Rootfs) -> Result<(Manifest, std::path::PathBuf)> {
    let path = rootfs.image_file(MANIFEST_FILE)?;
    if !path.exists() {
        bail!(
            "{}: no manifest; run `rune-enclave build --rootfs {} --entrypoint PROGRAM` first",
            path.display(),
            rootfs.host().display()
        );
    }
    Ok((Manifest::load(&path)?, path))
}

/// Refuses to sign an image whose files no longer match its manifest (it could never verify).
/// A quick test, not verification: every path is resolved, but only files whose status
/// changed since the manifest was written are hashed again. `verify` checks everything.
fn require_files_match(
    rootfs: &Rootfs,
    manifest: &Manifest,
    manifest_path: &Path,
    what: &str,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let written = (meta.mtime(), meta.mtime_nsec());
    let (mismatches, _) = hash::check(rootfs, manifest, hash::Scope::ChangedSince(written));
    if !mismatches.is_empty() {
        bail!(
            "{}; refusing to {what} a manifest that no longer matches the rootfs (run \
             `rune-enclave build` again)",
            hash::summary(&mismatches)
        );
    }
    Ok(())
}

pub fn sign(args: &SignArgs) -> Result<()> {
    let rootfs = Rootfs::open(&args.rootfs.rootfs)?;
    let (manifest, manifest_path) = load_manifest(&rootfs)?;
    let signer = Signer::from_args(&args.signer)?;
    require_files_match(&rootfs, &manifest, &manifest_path, "sign")?;
    let signature = match &signer {
        Signer::Local(key) => Signature::sign(&manifest, key)?,
        Signer::Server(_) => {
            let signed = signer.sign(&enclave_image::signing_material(&manifest))?;
            // Checked by the client already; attaching checks the whole signature.json again
            // (measurement, signer, modulus) as verify will.
            Signature::attach(&manifest, &signed.public, &signed.signature).map_err(|e| {
                anyhow!(
                    "the signature server's signature: {e}: tampered or wrong signature; \
                     nothing was written"
                )
            })?
        }
    };
    let path = rootfs.write_image_file(SIGNATURE_FILE, &signature.to_json())?;
    println!("signature: {}", path.display());
    println!("measurement: {}", signature.measurement);
    println!("signer: {}", signature.signer);
    Ok(())
}

pub fn sign_material(args: &SignMaterialArgs) -> Result<()> {
    if args.signature_out == args.public_key_out {
        bail!(
            "--signature-out and --public-key-out name the same file ({}); give two paths",
            args.signature_out.display()
        );
    }
    let signer = Signer::from_args(&args.signer)?;
    let material = fs::read(&args.material)
        .with_context(|| format!("--material {}", args.material.display()))?;
    if material.is_empty() {
        bail!(
            "--material {}: empty; give the signing material (e.g. `sgx_sign gendata` output)",
            args.material.display()
        );
    }
    let signed = signer.sign(&material)?;
    let public_pem = {
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        // SubjectPublicKeyInfo, as rune-signd serves it and `sgx_sign catsig` reads it; made
        // from the checked key rather than copied from the server's text.
        signed
            .public
            .to_public_key_pem(LineEnding::LF)
            .context("encoding the public key")?
    };
    write_atomic_pair(
        (&args.signature_out, &signed.signature),
        (&args.public_key_out, public_pem.as_bytes()),
    )?;
    println!(
        "signature: {} ({} bytes)",
        args.signature_out.display(),
        signed.signature.len()
    );
    println!("public key: {}", args.public_key_out.display());
    println!(
        "signer: {}",
        hex::encode(enclave_image::signer_of(&signed.public))
    );
    Ok(())
}

/// Replaces two files, each through a temporary file beside it and a rename, so that neither
/// is ever seen half written; both temporaries are complete before either rename.
fn write_atomic_pair(first: (&Path, &[u8]), second: (&Path, &[u8])) -> Result<()> {
    let tmp_first = write_temporary(first.0, first.1, 1)?;
    let tmp_second = match write_temporary(second.0, second.1, 2) {
        Ok(tmp) => tmp,
        Err(e) => {
            let _ = fs::remove_file(&tmp_first);
            return Err(e);
        }
    };
    for (tmp, path) in [(&tmp_first, first.0), (&tmp_second, second.0)] {
        if let Err(e) = fs::rename(tmp, path) {
            let _ = fs::remove_file(&tmp_first);
            let _ = fs::remove_file(&tmp_second);
            return Err(e).with_context(|| format!("replacing {}", path.display()));
        }
    }
    Ok(())
}

/// `path`'s content, mode 0644, written and synced to a new file beside it. `n` keeps the
/// temporaries of one run apart even when two spellings name the same file.
fn write_temporary(path: &Path, bytes: &[u8], n: u32) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let Some(name) = path.file_name() else {
        bail!(
            "{}: not a file name; give the file to write",
            path.display()
        );
    };
    let tmp = path.with_file_name(format!(
        ".{}.{}.{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", tmp.display())),
    }
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut file| {
            // The umask must not make the public outputs unreadable to the shim's other users.
            file.set_permissions(fs::Permissions::from_mode(0o644))?;
            file.write_all(bytes)?;
            file.sync_all()
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("writing {} (for {})", tmp.display(), path.display()));
    }
    Ok(tmp)
}

pub fn gen_material(args: &GenMaterialArgs) -> Result<()> {
    let rootfs = Rootfs::open(&args.rootfs.rootfs)?;
    let (manifest, manifest_path) = load_manifest(&rootfs)?;
    require_files_match(
        &rootfs,
        &manifest,
        &manifest_path,
        "make signing material for",
    )?;
    let material = enclave_image::signing_material(&manifest);
    if args.out.as_os_str() == "-" {
        io::stdout()
            .write_all(&material)
            .context("writing the signing material to standard output")?;
        return Ok(());
    }
    fs::write(&args.out, &material).with_context(|| format!("--out {}", args.out.display()))?;
    eprintln!(
        "rune-enclave: wrote the signing material to {0}; sign it with e.g. `openssl dgst \
         -sha256 -sign KEY.pem -out sig.bin {0}`, then run `rune-enclave attach`",
        args.out.display()
    );
    Ok(())
}

pub fn attach(args: &AttachArgs) -> Result<()> {
    let rootfs = Rootfs::open(&args.rootfs.rootfs)?;
    let (manifest, _) = load_manifest(&rootfs)?;
    let pem = fs::read_to_string(&args.public_key)
        .with_context(|| format!("--public-key {}", args.public_key.display()))?;
    let public = enclave_image::public_key_from_pem(&pem)
        .map_err(|e| anyhow!("--public-key {}: {e}", args.public_key.display()))?;
    let raw = fs::read(&args.signature)
        .with_context(|| format!("--signature {}", args.signature.display()))?;
    if raw.len() != SIGNATURE_BYTES {
        bail!(
            "--signature {}: {} bytes, but an RSA-{KEY_BITS} signature is {SIGNATURE_BYTES} \
             bytes; give the raw PKCS#1 v1.5 signature (as `openssl dgst -sha256 -sign` writes \
             it), not hex or base64",
            args.signature.display(),
            raw.len()
        );
    }
    let signature = Signature::attach(&manifest, &public, &raw).map_err(|e| {
        anyhow!(
            "--signature {}: {e}; it must be made over the material from `rune-enclave \
             gen-material` for this manifest, with the key of --public-key",
            args.signature.display()
        )
    })?;
    let path = rootfs.write_image_file(SIGNATURE_FILE, &signature.to_json())?;
    println!("signature: {} (verified)", path.display());
    println!("measurement: {}", signature.measurement);
    println!("signer: {}", signature.signer);
    Ok(())
}

pub fn measure(args: &MeasureArgs) -> Result<()> {
    let rootfs = Rootfs::open(&args.rootfs.rootfs)?;
    let (manifest, _) = load_manifest(&rootfs)?;
    println!("{}", hex::encode(manifest.measurement()));
    if !args.recompute {
        return Ok(());
    }
    let (mismatches, now) = hash::check(&rootfs, &manifest, hash::Scope::All);
    if mismatches.is_empty() {
        println!(
            "all {} trusted files match the manifest",
            manifest.trusted_files.len()
        );
        return Ok(());
    }
    for mismatch in &mismatches {
        match &mismatch.actual {
            Some(actual) => println!(
                "differs: {}: {} (now {actual})",
                mismatch.path, mismatch.problem
            ),
            None => println!("differs: {}: {}", mismatch.path, mismatch.problem),
        }
    }
    if now.len() == manifest.trusted_files.len() {
        let mut current = manifest.clone();
        current.trusted_files = now;
        println!(
            "measurement of the rootfs as it is now: {}",
            hex::encode(current.measurement())
        );
    }
    bail!(
        "{} of {} trusted files differ from the manifest: {}",
        mismatches.len(),
        manifest.trusted_files.len(),
        hash::summary(&mismatches)
    )
}

pub fn verify(args: &VerifyArgs) -> Result<()> {
    let rootfs = Rootfs::open(&args.rootfs.rootfs)?;
    let (manifest, _) = load_manifest(&rootfs)?;
    let signature_path = rootfs.image_file(SIGNATURE_FILE)?;
    if !signature_path.exists() {
        bail!(
            "{}: the image is not signed; run `rune-enclave sign --rootfs DIR --key KEY` (or \
             gen-material and attach)",
            signature_path.display()
        );
    }
    let signature = Signature::load(&signature_path)?;
    let image = SignedImage {
        manifest,
        signature,
    };
    let verified = image
        .verify()
        .map_err(|e| anyhow!("{}: {e}", signature_path.display()))?;
    if let Some((dir, path)) = writable_trusted(
        &image.manifest.writable_paths,
        image.manifest.trusted_files.keys(),
    ) {
        bail!(
            "manifest: trusted file {path} is at or beneath the writable path {dir}; the enclave \
             could change it after launch (rebuild without that writable path)"
        );
    }
    let policy = match &args.policy {
        Some(path) => {
            let policy = Policy::load(path)?;
            policy.admit(&verified)?;
            Some(policy)
        }
        None => None,
    };
    let (mismatches, _) = hash::check(&rootfs, &image.manifest, hash::Scope::All);
    if !mismatches.is_empty() {
        bail!("{}", hash::summary(&mismatches));
    }
    println!("verified: {}", rootfs.host().display());
    println!("measurement: {}", hex::encode(verified.measurement));
    println!("signer: {}", hex::encode(verified.signer));
    println!(
        "trusted files: {} intact",
        image.manifest.trusted_files.len()
    );
    match policy {
        Some(policy) => println!("policy: {} admits it", policy.path.display()),
        None => println!("policy: none given (the signer was not checked against a policy)"),
    }
    Ok(())
}

pub fn inspect(args: &InspectArgs) -> Result<()> {
    let rootfs = Rootfs::open(&args.rootfs.rootfs)?;
    let (manifest, _) = load_manifest(&rootfs)?;
    let signature_path = rootfs.image_file(SIGNATURE_FILE)?;
    let (status, signer) = if signature_path.exists() {
        match Signature::load(&signature_path) {
            Ok(signature) => match signature.verify(&manifest) {
                Ok(verified) => ("valid".to_string(), Some(hex::encode(verified.signer))),
                Err(e) => (format!("invalid: {e}"), Some(signature.signer)),
            },
            Err(e) => (format!("unreadable: {e}"), None),
        }
    } else {
        ("none (unsigned)".to_string(), None)
    };
    let measurement = hex::encode(manifest.measurement());

    if args.json {
        let value = json!({
            "measurement": measurement,
            "signature": status,
            "signer": signer,
            "debug": manifest.debug,
            "product_id": manifest.product_id,
            "security_version": manifest.security_version,
            "entrypoints": manifest.entrypoints,
            "writable_paths": manifest.writable_paths,
            "env": {
                "default": manifest.env.default,
                "host_allowed": manifest.env.host_allowed,
            },
            "limits": {
                "memory_size": manifest.memory_size,
                "max_threads": manifest.max_threads,
                "max_processes": manifest.max_processes,
            },
            "counts": {
                "entrypoints": manifest.entrypoints.len(),
                "trusted_files": manifest.trusted_files.len(),
                "writable_paths": manifest.writable_paths.len(),
                "env_default": manifest.env.default.len(),
                "env_host_allowed": manifest.env.host_allowed.len(),
            },
        });
        let text = serde_json::to_string_pretty(&value).context("encoding JSON")?;
        println!("{text}");
        return Ok(());
    }

    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(" ")
        }
    };
    println!("measurement:       {measurement}");
    println!("signature:         {status}");
    println!("signer:            {}", signer.as_deref().unwrap_or("-"));
    println!("debug:             {}", manifest.debug);
    println!("product id:        {}", manifest.product_id);
    println!("security version:  {}", manifest.security_version);
    println!("entrypoints:       {}", list(&manifest.entrypoints));
    println!("writable paths:    {}", list(&manifest.writable_paths));
    println!("env (default):     {}", list(&manifest.env.default));
    println!("env (from host):   {}", list(&manifest.env.host_allowed));
    println!(
        "memory size:       {} ({})",
        manifest.memory_size,
        human_bytes(manifest.memory_size)
    );
    println!("max threads:       {}", manifest.max_threads);
    println!("max processes:     {}", manifest.max_processes);
    println!("trusted files:     {}", manifest.trusted_files.len());
    Ok(())
}
