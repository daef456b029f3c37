//! What each enclave type needs from the host: a probe that says whether this host can serve it,
//! and the device nodes (and for SGX the aesmd socket directory) the container must see.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDeviceBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, Mount, MountBuilder, Spec,
};

use crate::config::EnclaveType;
use crate::error::EnclaveError;

const SGX_DEVICES: &[&str] = &[
    "/dev/sgx_enclave",
    "/dev/sgx/enclave",
    "/dev/sgx_provision",
    "/dev/sgx/provision",
    "/dev/isgx",
    "/dev/gsgx",
];
const AESMD_DIR: &str = "/var/run/aesmd";

/// The device nodes an enclave type uses, those the host has are passed through.
fn device_paths(enclave_type: EnclaveType) -> &'static [&'static str] {
    match enclave_type {
        EnclaveType::IntelSgx => SGX_DEVICES,
        EnclaveType::AwsNitroEnclaves => &["/dev/nitro_enclaves"],
        EnclaveType::Jailhouse => &["/dev/jailhouse"],
        EnclaveType::Kvm => &["/dev/kvm"],
        EnclaveType::Software => &[],
    }
}

/// Refuses a type this host cannot serve, saying what is missing.
pub fn check_available(enclave_type: EnclaveType) -> Result<(), EnclaveError> {
    let unavailable = |reason: &str| EnclaveError::Unavailable {
        enclave_type: enclave_type.name(),
        reason: reason.to_string(),
    };
    let has_char_device =
        |paths: &[&str]| paths.iter().any(|p| char_device(Path::new(p)).is_some());
    match enclave_type {
        EnclaveType::Software => Ok(()),
        EnclaveType::IntelSgx if !cpu_has_sgx() => Err(unavailable("the CPU does not report SGX")),
        EnclaveType::IntelSgx
            if !has_char_device(&["/dev/sgx_enclave", "/dev/sgx/enclave", "/dev/isgx"]) =>
        {
            Err(unavailable(
                "no SGX device node (/dev/sgx_enclave, /dev/sgx/enclave or /dev/isgx)",
            ))
        }
        EnclaveType::IntelSgx => Ok(()),
        other if has_char_device(device_paths(other)) => Ok(()),
        other => Err(unavailable(&format!(
            "no {} device",
            device_paths(other).join(" or ")
        ))),
    }
}

/// CPUID leaf 7, sub-leaf 0, EBX bit 2.
fn cpu_has_sgx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let max_leaf = std::arch::x86_64::__cpuid(0).eax;
        if max_leaf < 7 {
            return false;
        }
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        leaf7.ebx & (1 << 2) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// (major, minor) of the char device at `path`, symlinks followed.
fn char_device(path: &Path) -> Option<(i64, i64)> {
    let meta = fs::metadata(path).ok()?;
    if !meta.file_type().is_char_device() {
        return None;
    }
    let rdev = meta.rdev();
    Some((
        i64::from(nix::sys::stat::major(rdev) as u32),
        i64::from(nix::sys::stat::minor(rdev) as u32),
    ))
}

/// Adds the type's host devices to `linux.devices` and allows them in the device cgroup; for
/// SGX also bind-mounts the aesmd socket directory when the host has one.
pub fn add_host_resources(spec: &mut Spec, enclave_type: EnclaveType) -> Result<(), EnclaveError> {
    let present: Vec<(PathBuf, i64, i64)> = device_paths(enclave_type)
        .iter()
        .filter_map(|p| char_device(Path::new(p)).map(|(ma, mi)| (PathBuf::from(p), ma, mi)))
        .collect();

    if !present.is_empty() {
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut devices = linux.devices().clone().unwrap_or_default();
        let mut resources = linux.resources().clone().unwrap_or_default();
        let mut rules = resources.devices().clone().unwrap_or_default();
        for (path, major, minor) in present {
            if !devices.iter().any(|d| d.path() == &path) {
                let device = LinuxDeviceBuilder::default()
                    .path(path.clone())
                    .typ(LinuxDeviceType::C)
                    .major(major)
                    .minor(minor)
                    .file_mode(0o666u32)
                    .uid(0u32)
                    .gid(0u32)
                    .build()
                    .map_err(|e| {
                        EnclaveError::Protocol(format!("device {}: {e}", path.display()))
                    })?;
                devices.push(device);
            }
            let rule = LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(major)
                .minor(minor)
                .access("rwm")
                .build()
                .map_err(|e| {
                    EnclaveError::Protocol(format!("device rule {}: {e}", path.display()))
                })?;
            rules.push(rule);
        }
        resources.set_devices(Some(rules));
        linux
            .set_devices(Some(devices))
            .set_resources(Some(resources));
        spec.set_linux(Some(linux));
    }

    if enclave_type == EnclaveType::IntelSgx && Path::new(AESMD_DIR).is_dir() {
        add_aesmd_mount(spec)?;
    }
    Ok(())
}

fn add_aesmd_mount(spec: &mut Spec) -> Result<(), EnclaveError> {
    let mut mounts: Vec<Mount> = spec.mounts().clone().unwrap_or_default();
    let taken = mounts.iter().any(|m| {
        let dest = m.destination().to_string_lossy().to_lowercase();
        dest == "/var/run/aesmd" || dest == "/run/aesmd"
    });
    if taken {
        return Ok(());
    }
    let mount = MountBuilder::default()
        .destination(AESMD_DIR)
        .typ("bind")
        .source(AESMD_DIR)
        .options(vec!["rbind".to_string(), "rprivate".to_string()])
        .build()
        .map_err(|e| EnclaveError::Protocol(format!("aesmd mount: {e}")))?;
    mounts.push(mount);
    spec.set_mounts(Some(mounts));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_is_always_available() {
        assert!(check_available(EnclaveType::Software).is_ok());
    }

    #[test]
    fn kvm_follows_dev_kvm() {
        let has_kvm = char_device(Path::new("/dev/kvm")).is_some();
        assert_eq!(check_available(EnclaveType::Kvm).is_ok(), has_kvm);
        let mut spec = Spec::default();
        add_host_resources(&mut spec, EnclaveType::Kvm).expect("adds devices");
        let linux = spec.linux().clone().expect("linux");
        let listed = linux
            .devices()
            .clone()
            .unwrap_or_default()
            .iter()
            .any(|d| d.path() == Path::new("/dev/kvm"));
        assert_eq!(listed, has_kvm);
    }

    #[test]
    fn missing_hardware_is_named() {
        if char_device(Path::new("/dev/jailhouse")).is_none() {
            let err = check_available(EnclaveType::Jailhouse).expect_err("no jailhouse here");
            assert!(err.to_string().contains("/dev/jailhouse"), "{err}");
        }
    }
}
