//! The `occlum` carrier: the container's rootfs becomes an Occlum instance (an SGX enclave
//! running the image's programs on the Occlum LibOS), signed for this node, which rune starts
//! through the Occlum PAL.
//!
//! Layout: the instance is the directory `<process.cwd>/occlum_instance` of the container
//! (Occlum's own default name; upstream put the instance files straight into the working
//! directory, so a container working in `/` got `Occlum.json`, `build/` and `run/` in its
//! root). A container that sets `ENCLAVE_RUNTIME_ARGS` names the instance directory itself
//! (relative to its working directory, or absolute). The path is followed in the image the way
//! the kernel will follow it inside the container (`/var/run -> /run` works), never past the
//! rootfs, and rune is given the absolute path it leads to as `ENCLAVE_RUNTIME_ARGS`. An
//! instance the container's mounts would hide is refused. Server side, the carrier writes:
//!
//! ```text
//! <instance>/Occlum.json               the settings below
//! <instance>/build/lib/libocclum-libos.signed.so   the enclave, signed by this node's signer
//! <instance>/build/...                 the rest of `occlum build`'s output (Enclave.xml, the
//!                                      image as an integrity-protected SEFS in mount/__ROOT)
//! <instance>/run/                      Occlum's writable layer, empty
//! ```
//!
//! Files the image already had there are replaced, never removed. The image's own files stay
//! in the rootfs as they were; the enclave sees the copy sealed into `build/mount/__ROOT`.
//!
//! Server side, in a private workspace under the conversion's scratch directory: `occlum init`;
//! the generated `Occlum.json`; a copy of the rootfs as the instance's `image/` with Occlum's
//! own files put over it ([`rootfs::copy_image_out`]: symlinks stay symlinks and can never lead
//! a host tool out of the copy); `occlum build`; `sgx_sign gendata` for the SIGSTRUCT material;
//! `rune-enclave sign-material` with the node's signer; `sgx_sign catsig`; then the instance,
//! without `image/`, into the rootfs. Client side, the image must hold an instance already
//! built and signed by its author; only its presence can be checked here, because the CPU
//! checks an SGX signature when it loads the enclave and this needs SGX hardware.
//!
//! Per container, in server mode, the `OCCLUM_*` variables of [`config`] set `Occlum.json`.

mod config;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::Spec;
use sha2::{Digest, Sha256};

use super::signing::in_config_terms;
use super::tool::{field, identity};
use super::{env_value, program, rootfs, Carrier, CarrierError, Context, Plan, Signer};
use crate::config::SignatureMethod;
use config::OcclumSettings;

pub struct Occlum;

/// Bumped when the conversion's output changes for the same inputs.
const CONVERSION_VERSION: &str = "1";
/// The instance directory's name inside the working directory.
const INSTANCE_DIR: &str = "occlum_instance";
const RUNTIME_ARGS: &str = "ENCLAVE_RUNTIME_ARGS";
/// Inside the instance.
const UNSIGNED_LIBOS: &str = "build/lib/libocclum-libos.so";
const SIGNED_LIBOS: &str = "build/lib/libocclum-libos.signed.so";
const ENCLAVE_XML: &str = "build/Enclave.xml";
/// The plan input holding the `Occlum.json` text, which convert writes as keyed.
const OCCLUM_JSON_INPUT: &str = "Occlum.json";

/// SIGSTRUCT HEADER, the first bytes of what `sgx_sign gendata` writes.
const SIGSTRUCT_HEADER: [u8; 12] = [
    0x06, 0x00, 0x00, 0x00, 0xe1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
];
/// SIGSTRUCT header (128 bytes) and body (128 bytes).
const MATERIAL_LEN: usize = 256;
/// ENCLAVEHASH (MRENCLAVE) within the material.
const MRENCLAVE: std::ops::Range<usize> = 188..220;

fn cwd(spec: &Spec) -> Result<PathBuf, CarrierError> {
    let cwd = spec
        .process()
        .as_ref()
        .map(|p| p.cwd().clone())
        .unwrap_or_else(|| PathBuf::from("/"));
    if !cwd.is_absolute() {
        return Err(CarrierError::Setting(format!(
            "process.cwd {:?} is not absolute: give the container an absolute working directory",
            cwd.display().to_string()
        )));
    }
    Ok(cwd)
}

fn splits(value: &str) -> bool {
    value.contains(',') || value.chars().any(char::is_whitespace)
}

/// The instance directory, relative to the rootfs and free of symlinks (module docs).
fn instance(ctx: &Context, spec: &Spec) -> Result<PathBuf, CarrierError> {
    let cwd = cwd(spec)?;
    let wanted = match env_value(spec, RUNTIME_ARGS).filter(|v| !v.is_empty()) {
        Some(args) if splits(&args) => {
            return Err(CarrierError::Setting(format!(
                "{RUNTIME_ARGS}={args:?}: the Occlum PAL takes one argument, the instance \
                 directory, and rune splits the value at commas; give one path without commas \
                 or spaces, or leave {RUNTIME_ARGS} unset for <working dir>/{INSTANCE_DIR}"
            )))
        }
        // An absolute value replaces the working directory.
        Some(args) => cwd.join(args),
        None => cwd.join(INSTANCE_DIR),
    };
    let rel = rootfs::resolve(ctx.rootfs, &wanted).map_err(|e| {
        CarrierError::io(
            &format!(
                "the Occlum instance directory {} in the image",
                wanted.display()
            ),
            e,
        )
    })?;
    let shown = Path::new("/").join(&rel);
    if rel.as_os_str().is_empty() {
        return Err(CarrierError::Setting(format!(
            "the Occlum instance directory {} is the container's root in this image: set the \
             working directory (process.cwd {}) or {RUNTIME_ARGS} to another directory",
            wanted.display(),
            cwd.display()
        )));
    }
    if splits(&shown.to_string_lossy()) {
        return Err(CarrierError::Setting(format!(
            "the Occlum instance directory {} leads to {} in this image, a path with a comma or \
             space that rune would split: set the working directory (process.cwd {}) or \
             {RUNTIME_ARGS} to a plain path",
            wanted.display(),
            shown.display(),
            cwd.display()
        )));
    }
    for mount in spec.mounts().iter().flatten() {
        let dest = mount.destination();
        // rune resolves mount destinations inside the rootfs too.
        let covered = rootfs::resolve(ctx.rootfs, dest)
            .map_err(|e| CarrierError::io(&format!("mount destination {}", dest.display()), e))?;
        if rel.starts_with(&covered) {
            return Err(CarrierError::Setting(format!(
                "the Occlum instance directory {} would be hidden by the container's mount on {} \
                 ({}): set the working directory (process.cwd {}) or {RUNTIME_ARGS} to a path \
                 outside the container's mounts",
                shown.display(),
                dest.display(),
                mount.typ().as_deref().unwrap_or("bind"),
                cwd.display()
            )));
        }
    }
    Ok(rel)
}

/// The program the PAL will be asked to start, as rune will name it: args[0] when absolute,
/// else the first `PATH` entry holding it. It must be an executable file of the image, the
/// only files the enclave has.
fn entry_point(ctx: &Context, spec: &Spec) -> Result<String, CarrierError> {
    let (program, path) = program(spec)?;
    let candidates: Vec<PathBuf> = if program.starts_with('/') {
        vec![PathBuf::from(&program)]
    } else if program.contains('/') {
        return Err(CarrierError::Setting(format!(
            "process.args[0] {program:?} is a relative path: give the program's absolute path \
             in the image, or a bare name found through PATH (Occlum's entry points are \
             absolute)"
        )));
    } else {
        path.split(':')
            .filter(|dir| dir.starts_with('/'))
            .map(|dir| Path::new(dir).join(&program))
            .collect()
    };
    for candidate in &candidates {
        let found = rootfs::resolve(ctx.rootfs, candidate)
            .ok()
            .filter(|rel| !rel.as_os_str().is_empty())
            .and_then(|rel| rootfs::stat(ctx.rootfs, &rel).ok().flatten())
            .is_some_and(|st| rootfs::is_regular(&st) && st.st_mode & 0o111 != 0);
        if found {
            return Ok(candidate.to_string_lossy().into_owned());
        }
    }
    let searched = if program.starts_with('/') {
        String::new()
    } else {
        format!(" through PATH {path:?}")
    };
    Err(CarrierError::Setting(format!(
        "process.args[0] {program:?} is not an executable file of the image{searched}: the \
         Occlum enclave can only run the image's programs; give the path of one"
    )))
}

fn settings(ctx: &Context, spec: &Spec) -> Result<OcclumSettings, CarrierError> {
    OcclumSettings::from_env(entry_point(ctx, spec)?, |name| env_value(spec, name))
}

/// The LibOS's content digest, so that an Occlum upgrade converts images again.
fn libos_identity(path: &Path) -> Result<String, CarrierError> {
    let failed = |e: io::Error| {
        CarrierError::Io(format!(
            "[enclave_runtime.occlum] enclave_libos_path {}: {e}",
            path.display()
        ))
    };
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::warn!(
                "occlum carrier: no LibOS at {}: set [enclave_runtime.occlum] enclave_libos_path \
                 to the installed libocclum-libos.so, or cached conversions outlive an Occlum \
                 upgrade",
                path.display()
            );
            return Ok(format!("absent:{}", path.display()));
        }
        Err(e) => return Err(failed(e)),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(failed)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn instance_of(plan: &Plan) -> Result<&Path, CarrierError> {
    plan.outputs
        .first()
        .map(PathBuf::as_path)
        .ok_or_else(|| CarrierError::Io("the occlum plan names no instance directory".into()))
}

/// The configuration keys naming the tools, for errors about a tool that cannot be run.
const OCCLUM_KEY: &str = "occlum_path in [enclave_runtime.occlum]";
const SGX_SIGN_KEY: &str = "sgx_tool_sign";

/// Adds the shim config key naming the tool to a "cannot run" error.
fn configured_by(key: &'static str) -> impl Fn(CarrierError) -> CarrierError {
    move |e| match e {
        CarrierError::Tool { what, message } if message.starts_with("cannot run ") => {
            CarrierError::Tool {
                what,
                message: format!(
                    "{message}; set {key} in {}",
                    crate::config::Config::path().display()
                ),
            }
        }
        other => other,
    }
}

fn tool_error(what: &str, message: String) -> CarrierError {
    CarrierError::Tool {
        what: what.to_string(),
        message,
    }
}

fn private_dir(path: &Path, mode: u32) -> Result<(), CarrierError> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| CarrierError::io(&format!("create {}", path.display()), e))
}

/// Puts the files `occlum init` made (the musl loader and libraries Occlum's programs link)
/// into the image copy over the image's own. A symlink of the image on the way
/// (`/lib -> usr/lib`) is followed as the enclave will follow it, never out of the copy.
fn overlay(src: &Path, image: &Path, rel: &Path) -> Result<(), CarrierError> {
    let failed = |what: &Path, e: io::Error| {
        CarrierError::io(
            &format!("put Occlum's /{} into the image copy", what.display()),
            e,
        )
    };
    let entries = fs::read_dir(src.join(rel)).map_err(|e| failed(rel, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| failed(rel, e))?;
        let child = rel.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| failed(&child, e))?;
        let target = rootfs::resolve(image, &child).map_err(|e| failed(&child, e))?;
        let at_root = target.as_os_str().is_empty();
        if kind.is_dir() {
            if !at_root {
                rootfs::create_dir_all(image, &target).map_err(|e| failed(&child, e))?;
            }
            overlay(src, image, &child)?;
        } else if at_root {
            return Err(failed(
                &child,
                io::Error::other("the image's symlinks make it the root directory"),
            ));
        } else {
            rootfs::copy_in(&entry.path(), image, &target).map_err(|e| failed(&child, e))?;
        }
    }
    Ok(())
}

/// The unsigned enclave `occlum build` made: `libocclum-libos.so`, or the one versioned
/// `libocclum-libos.so.<N>` some Occlum releases write instead.
fn unsigned_libos(workspace: &Path) -> Result<PathBuf, CarrierError> {
    let plain = workspace.join(UNSIGNED_LIBOS);
    if plain.is_file() {
        return Ok(plain);
    }
    let lib = workspace.join("build/lib");
    let mut versioned: Vec<PathBuf> = fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libocclum-libos.so.") && !n.contains("signed"))
                && p.is_file()
        })
        .collect();
    if versioned.len() == 1 {
        if let Some(found) = versioned.pop() {
            return Ok(found);
        }
    }
    Err(tool_error(
        "occlum build",
        format!(
            "left no single unsigned enclave in {} (found {} libocclum-libos.so.<N>): check \
             [enclave_runtime.occlum] occlum_path names Occlum 0.21 or later",
            lib.display(),
            versioned.len()
        ),
    ))
}

/// Checks `sgx_sign gendata`'s output is SIGSTRUCT material, before anything is signed.
fn check_material(bytes: &[u8], material: &Path, sgx_sign: &Path) -> Result<(), CarrierError> {
    if bytes.len() == MATERIAL_LEN && bytes.starts_with(&SIGSTRUCT_HEADER) {
        return Ok(());
    }
    Err(tool_error(
        "sgx_sign gendata",
        format!(
            "{} holds {} bytes that are not the {MATERIAL_LEN}-byte SIGSTRUCT header and body: \
             check that sgx_tool_sign ({}) is Intel's sgx_sign",
            material.display(),
            bytes.len(),
            sgx_sign.display()
        ),
    ))
}

impl Carrier for Occlum {
    fn name(&self) -> &'static str {
        "occlum"
    }

    fn plan(&self, ctx: &Context, spec: &Spec) -> Result<Plan, CarrierError> {
        let instance = instance(ctx, spec)?;
        let occlum = &ctx.config.enclave_runtime.occlum;
        let mut inputs = vec![
            ("conversion".to_string(), CONVERSION_VERSION.to_string()),
            ("cwd".to_string(), cwd(spec)?.display().to_string()),
            ("instance".to_string(), instance.display().to_string()),
        ];
        if ctx.config.enclave_runtime.signature_method == SignatureMethod::Server {
            inputs.push((
                OCCLUM_JSON_INPUT.to_string(),
                settings(ctx, spec)?.occlum_json()?,
            ));
            inputs.push((
                "libos".to_string(),
                libos_identity(&occlum.enclave_libos_path())?,
            ));
            for (name, path) in [
                ("occlum", occlum.occlum_path()),
                ("sgx_sign", ctx.config.sgx_sign()),
                ("rune-enclave", ctx.tools.find("rune-enclave")),
            ] {
                inputs.push((name.to_string(), identity(&path)));
            }
            let signer = Signer::from_config(ctx.config, ctx.tools)?;
            inputs.push(("signer".to_string(), signer.identity()?));
        }
        Ok(Plan {
            inputs,
            env: vec![
                ("ENCLAVE_TYPE".to_string(), "intelSgx".to_string()),
                (
                    "ENCLAVE_RUNTIME_PATH".to_string(),
                    occlum.enclave_runtime_path().to_string_lossy().into_owned(),
                ),
                (
                    RUNTIME_ARGS.to_string(),
                    Path::new("/").join(&instance).display().to_string(),
                ),
            ],
            outputs: vec![instance],
            // The container's own value, resolved in the image as the PAL would resolve it.
            replaces: vec![RUNTIME_ARGS],
        })
    }

    fn convert(&self, ctx: &Context, _spec: &Spec, plan: &Plan) -> Result<String, CarrierError> {
        let instance = instance_of(plan)?;
        let occlum_json = plan
            .inputs
            .iter()
            .find(|(name, _)| name == OCCLUM_JSON_INPUT)
            .map(|(_, text)| text)
            .ok_or_else(|| CarrierError::Io("the occlum plan has no Occlum.json".into()))?;
        let occlum = ctx.config.enclave_runtime.occlum.occlum_path();
        let sgx_sign = ctx.config.sgx_sign();
        let io = |what: &str, path: &Path, e: io::Error| {
            CarrierError::io(&format!("{what} {}", path.display()), e)
        };

        let workspace = ctx.work.join(INSTANCE_DIR);
        private_dir(&workspace, 0o755)?;
        ctx.tools
            .run(
                "occlum init",
                Command::new(&occlum).arg("init").current_dir(&workspace),
            )
            .map_err(configured_by(OCCLUM_KEY))?;
        let config_path = workspace.join("Occlum.json");
        fs::write(&config_path, occlum_json).map_err(|e| io("write", &config_path, e))?;

        let image = workspace.join("image");
        let occlum_files = ctx.work.join("occlum-image-files");
        fs::rename(&image, &occlum_files)
            .map_err(|e| tool_error("occlum init", format!("made no {}: {e}", image.display())))?;
        let copied = rootfs::copy_image_out(ctx.rootfs, &image, instance)
            .map_err(|e| CarrierError::io("copy the rootfs into the Occlum image", e))?;
        if !copied.special.is_empty() {
            log::info!(
                "container {}: occlum: {} device nodes, fifos or sockets of the image left out \
                 of the enclave (it has its own /dev), e.g. /{}",
                ctx.id,
                copied.special.len(),
                copied.special[0].display()
            );
        }
        if copied.rewritten_links > 0 {
            log::debug!(
                "container {}: occlum: {} absolute or climbing symlinks made relative in the \
                 image copy",
                ctx.id,
                copied.rewritten_links
            );
        }
        overlay(&occlum_files, &image, Path::new(""))?;
        ctx.tools
            .run(
                "occlum build",
                Command::new(&occlum).arg("build").current_dir(&workspace),
            )
            .map_err(configured_by(OCCLUM_KEY))?;

        let unsigned = unsigned_libos(&workspace)?;
        let xml = workspace.join(ENCLAVE_XML);
        if !xml.is_file() {
            return Err(tool_error(
                "occlum build",
                format!(
                    "wrote no {}: check [enclave_runtime.occlum] occlum_path names Occlum 0.21 \
                     or later",
                    xml.display()
                ),
            ));
        }
        let signing = ctx.work.join("signing");
        private_dir(&signing, 0o700)?;
        let material = signing.join("enclave_sig.dat");
        let signature = signing.join("signature.dat");
        let public_key = signing.join("public_key.pem");
        ctx.tools
            .run(
                "sgx_sign gendata",
                Command::new(&sgx_sign)
                    .arg("gendata")
                    .arg("-enclave")
                    .arg(&unsigned)
                    .arg("-config")
                    .arg(&xml)
                    .arg("-out")
                    .arg(&material),
            )
            .map_err(configured_by(SGX_SIGN_KEY))?;
        let bytes = fs::read(&material).map_err(|e| {
            tool_error(
                "sgx_sign gendata",
                format!("wrote no {}: {e}", material.display()),
            )
        })?;
        check_material(&bytes, &material, &sgx_sign)?;

        let signer = Signer::from_config(ctx.config, ctx.tools)?;
        let what = "sign the SGX signing material";
        let out = ctx
            .tools
            .run(
                what,
                Command::new(ctx.tools.find("rune-enclave"))
                    .arg("sign-material")
                    .arg("--material")
                    .arg(&material)
                    .args(signer.args())
                    .arg("--signature-out")
                    .arg(&signature)
                    .arg("--public-key-out")
                    .arg(&public_key),
            )
            .map_err(in_config_terms)?;
        let signer_id = field(&out, "signer").ok_or_else(|| {
            tool_error(
                what,
                "rune-enclave sign-material printed no `signer:` line: install the rune-enclave \
                 built with this shim"
                    .into(),
            )
        })?;

        let signed = workspace.join(SIGNED_LIBOS);
        ctx.tools
            .run(
                "sgx_sign catsig",
                Command::new(&sgx_sign)
                    .arg("catsig")
                    .arg("-enclave")
                    .arg(&unsigned)
                    .arg("-config")
                    .arg(&xml)
                    .arg("-out")
                    .arg(&signed)
                    .arg("-key")
                    .arg(&public_key)
                    .arg("-sig")
                    .arg(&signature)
                    .arg("-unsigned")
                    .arg(&material),
            )
            .map_err(configured_by(SGX_SIGN_KEY))?;
        if !signed.is_file() {
            return Err(tool_error(
                "sgx_sign catsig",
                format!("wrote no {}", signed.display()),
            ));
        }

        // `image/` is sealed into build/mount/__ROOT; the instance needs no plain copy.
        let entries = fs::read_dir(&workspace).map_err(|e| io("read", &workspace, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io("read", &workspace, e))?;
            if entry.file_name() == "image" {
                continue;
            }
            let rel = instance.join(entry.file_name());
            rootfs::copy_in(&entry.path(), ctx.rootfs, &rel).map_err(|e| {
                CarrierError::io(
                    &format!(
                        "write the Occlum instance into the rootfs at /{}",
                        rel.display()
                    ),
                    e,
                )
            })?;
        }
        Ok(format!(
            "mrenclave {} signer {signer_id} material-sha256 {}",
            hex::encode(&bytes[MRENCLAVE]),
            hex::encode(Sha256::digest(&bytes))
        ))
    }

    fn verify(&self, ctx: &Context, _spec: &Spec, plan: &Plan) -> Result<String, CarrierError> {
        let instance = instance_of(plan)?;
        let libos = instance.join(SIGNED_LIBOS);
        let shown = Path::new("/").join(&libos);
        let missing = |why: String| {
            CarrierError::Setting(format!(
                "signature_method = \"client\": the image has no signed Occlum instance at /{} \
                 ({why}): build and sign the instance into the image there, point \
                 {RUNTIME_ARGS} at the image's instance, or convert on this node with \
                 signature_method = \"server\"",
                instance.display()
            ))
        };
        match rootfs::stat(ctx.rootfs, &libos) {
            Ok(Some(st)) if rootfs::is_regular(&st) => {}
            Ok(Some(_)) => return Err(missing(format!("{} is not a file", shown.display()))),
            Ok(None) => return Err(missing(format!("{} is missing", shown.display()))),
            Err(e) => return Err(missing(e.to_string())),
        }
        let mut file = rootfs::open_file(ctx.rootfs, &libos).map_err(|e| missing(e.to_string()))?;
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut hasher)
            .map_err(|e| CarrierError::io(&format!("read {}", shown.display()), e))?;
        Ok(format!(
            "client-signed Occlum instance /{} (libocclum-libos.signed.so sha256 {}); its SGX \
             signature is checked by the CPU when the enclave is loaded, which the shim cannot \
             do without SGX hardware",
            instance.display(),
            hex::encode(hasher.finalize())
        ))
    }
}

#[cfg(test)]
mod tests;
