//! Mounting the rootfs mounts containerd sends with `Create` onto `<bundle>/rootfs`, and
//! unmounting them.

use std::io;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// One mount from the request.
#[derive(Debug, Clone)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Flags named by mount options; `true` clears the flag.
fn flag(option: &str) -> Option<(bool, MsFlags)> {
    Some(match option {
        "async" => (true, MsFlags::MS_SYNCHRONOUS),
        "atime" => (true, MsFlags::MS_NOATIME),
        "bind" => (false, MsFlags::MS_BIND),
        "defaults" => (false, MsFlags::empty()),
        "dev" => (true, MsFlags::MS_NODEV),
        "diratime" => (true, MsFlags::MS_NODIRATIME),
        "dirsync" => (false, MsFlags::MS_DIRSYNC),
        "exec" => (true, MsFlags::MS_NOEXEC),
        "mand" => (false, MsFlags::MS_MANDLOCK),
        "noatime" => (false, MsFlags::MS_NOATIME),
        "nodev" => (false, MsFlags::MS_NODEV),
        "nodiratime" => (false, MsFlags::MS_NODIRATIME),
        "noexec" => (false, MsFlags::MS_NOEXEC),
        "nomand" => (true, MsFlags::MS_MANDLOCK),
        "norelatime" => (true, MsFlags::MS_RELATIME),
        "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
        "nosuid" => (false, MsFlags::MS_NOSUID),
        "rbind" => (false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
        "relatime" => (false, MsFlags::MS_RELATIME),
        "remount" => (false, MsFlags::MS_REMOUNT),
        "ro" => (false, MsFlags::MS_RDONLY),
        "rw" => (true, MsFlags::MS_RDONLY),
        "strictatime" => (false, MsFlags::MS_STRICTATIME),
        "suid" => (true, MsFlags::MS_NOSUID),
        "sync" => (false, MsFlags::MS_SYNCHRONOUS),
        _ => return None,
    })
}

fn propagation(option: &str) -> Option<MsFlags> {
    Some(match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Splits options into mount flags, propagation flags and file-system data.
fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut prop = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        if let Some((clear, f)) = flag(o) {
            if clear {
                flags.remove(f);
            } else {
                flags.insert(f);
            }
        } else if let Some(p) = propagation(o) {
            prop.insert(p);
        } else {
            data.push(o);
        }
    }
    (flags, prop, data.join(","))
}

/// Mounts `m` on `target`.
pub fn mount_one(m: &Mount, target: &Path) -> io::Result<()> {
    let (flags, prop, data) = parse_options(&m.options);
    let page = 4096;
    if data.len() >= page {
        return Err(io::Error::other(format!(
            "mount options of {} are {} bytes, more than a page; not supported",
            m.kind,
            data.len()
        )));
    }
    let fstype = (!m.kind.is_empty()).then_some(m.kind.as_str());
    let source = (!m.source.is_empty()).then_some(m.source.as_str());
    let data_opt = (!data.is_empty()).then_some(data.as_str());
    if !flags.contains(MsFlags::MS_REMOUNT) || data_opt.is_some() {
        mount(source, target, fstype, flags, data_opt).map_err(|e| {
            io::Error::other(format!(
                "mount {} {:?} on {}: {e}",
                m.kind,
                m.source,
                target.display()
            ))
        })?;
    }
    if !prop.is_empty() {
        mount::<str, Path, str, str>(None, target, None, prop, None)
            .map_err(|e| io::Error::other(format!("propagation of {}: {e}", target.display())))?;
    }
    // A bind mount ignores MS_RDONLY: remount it read-only.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        mount::<str, Path, str, str>(None, target, None, flags | MsFlags::MS_REMOUNT, None)
            .map_err(|e| io::Error::other(format!("remount {} ro: {e}", target.display())))?;
    }
    Ok(())
}

/// Mounts every mount on `target` in order; on failure unmounts what was mounted.
pub fn mount_all(mounts: &[Mount], target: &Path) -> io::Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..i {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts everything mounted on `target` (stacked mounts included); Ok when nothing is.
pub fn unmount_all(target: &Path) -> io::Result<()> {
    for _ in 0..64 {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                // Busy (a process still holds it): detach it, the kernel finishes later.
                umount2(target, MntFlags::MNT_DETACH).map_err(io::Error::from)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (f, p, d) = parse_options(&o(&["rbind", "ro", "rprivate"]));
        assert!(f.contains(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY));
        assert_eq!(p, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(d, "");
        let (f, _, d) = parse_options(&o(&[
            "index=off",
            "ro",
            "rw",
            "lowerdir=/a:/b",
            "upperdir=/u",
        ]));
        assert!(!f.contains(MsFlags::MS_RDONLY));
        assert_eq!(d, "index=off,lowerdir=/a:/b,upperdir=/u");
    }
}
