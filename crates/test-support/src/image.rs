//! Images built locally, since no registry is reachable: busybox (Debian's busybox-static)
//! and a pause image for CRI sandboxes (a static C program). Both are OCI layouts made with
//! umoci and turned into docker archives with skopeo, which `ctr images import` takes.
//! Cached under `<target>/test-cache`, with the same entries as rune's own tests.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{cached_dir, sh};

pub const IMAGE_REF: &str = "localhost/rune-busybox:test";
pub const PAUSE_IMAGE_REF: &str = "localhost/rune-pause:test";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
tester:x:1000:1000:tester:/tmp:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ntester:x:1000:\nnogroup:x:65534:\n";

const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The sandbox's init. It must outlive every container of the pod and stop on the signal
/// containerd sends (SIGTERM, SIGKILL as a last resort); as pid 1 of a shared pid namespace
/// it would also inherit orphans, hence the reaping.
const PAUSE_C: &str = r#"#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction sa = {0};
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return 1;
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGCHLD, &sa, NULL) != 0)
        return 1;
    for (;;)
        pause();
}
"#;

pub fn busybox_rootfs() -> PathBuf {
    cached_dir("busybox-rootfs-v1", |dir| {
        for d in [
            "bin", "etc", "tmp", "proc", "sys", "dev", "root", "usr/bin", "var",
        ] {
            fs::create_dir_all(dir.join(d)).expect("mkdir in rootfs");
        }
        fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))
            .expect("chmod /tmp");
        fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy /bin/busybox");
        let list = sh(&["/bin/busybox", "--list"]).ok();
        for applet in list.stdout.split_whitespace() {
            if applet == "busybox" || applet.contains('/') {
                continue;
            }
            symlink("busybox", dir.join("bin").join(applet)).expect("applet symlink");
        }
        fs::write(dir.join("etc/passwd"), PASSWD).expect("write passwd");
        fs::write(dir.join("etc/group"), GROUP).expect("write group");
    })
}

/// An OCI layout (tag `rune-test`) holding `rootfs` as one layer, with `config` given to
/// `umoci config`.
fn oci_layout(cache_name: &str, rootfs: &Path, config: &[&str]) -> PathBuf {
    cached_dir(cache_name, |dir| {
        let layout = dir.join("layout");
        let layout_s = layout.to_string_lossy().into_owned();
        let image = format!("{layout_s}:rune-test");
        sh(&["umoci", "init", "--layout", &layout_s]).ok();
        sh(&["umoci", "new", "--image", &image]).ok();
        sh(&[
            "umoci",
            "insert",
            "--image",
            &image,
            &rootfs.to_string_lossy(),
            "/",
        ])
        .ok();
        let mut args = vec!["umoci", "config", "--image", &image];
        args.extend_from_slice(config);
        sh(&args).ok();
        let _ = sh(&["umoci", "gc", "--layout", &layout_s]);
    })
    .join("layout")
}

/// A docker archive of `layout`'s `rune-test` tag, named `image_ref` for `ctr images import`.
fn docker_archive(cache_name: &str, layout: &Path, file: &str, image_ref: &str) -> PathBuf {
    cached_dir(cache_name, |dir| {
        let tar = dir.join(file);
        sh(&[
            "skopeo",
            "--insecure-policy",
            "copy",
            &format!("oci:{}:rune-test", layout.display()),
            &format!("docker-archive:{}:{image_ref}", tar.display()),
        ])
        .ok();
    })
    .join(file)
}

pub fn busybox_oci_layout() -> PathBuf {
    let rootfs = busybox_rootfs();
    oci_layout(
        "busybox-oci-v1",
        &rootfs,
        &[
            "--config.cmd",
            "sh",
            "--config.env",
            IMAGE_PATH,
            "--config.workingdir",
            "/",
        ],
    )
}

/// The busybox image as a docker archive named [`IMAGE_REF`].
pub fn busybox_image_tar() -> PathBuf {
    docker_archive(
        "busybox-image-tar-v1",
        &busybox_oci_layout(),
        "busybox.tar",
        IMAGE_REF,
    )
}

/// A root filesystem holding only `/pause`, compiled from [`PAUSE_C`] with `gcc -static`.
pub fn pause_rootfs() -> PathBuf {
    cached_dir("pause-rootfs-v1", |dir| {
        let src = dir.join("pause.c");
        let rootfs = dir.join("rootfs");
        for d in ["dev", "proc", "sys"] {
            fs::create_dir_all(rootfs.join(d)).expect("mkdir in pause rootfs");
        }
        fs::write(&src, PAUSE_C).expect("write pause.c");
        let bin = rootfs.join("pause");
        sh(&[
            "gcc",
            "-static",
            "-O2",
            "-Wall",
            "-Werror",
            "-o",
            &bin.to_string_lossy(),
            &src.to_string_lossy(),
        ])
        .ok();
        sh(&["strip", &bin.to_string_lossy()]).ok();
    })
    .join("rootfs")
}

pub fn pause_oci_layout() -> PathBuf {
    let rootfs = pause_rootfs();
    oci_layout(
        "pause-oci-v1",
        &rootfs,
        &["--config.entrypoint", "/pause", "--config.workingdir", "/"],
    )
}

/// The pause image as a docker archive named [`PAUSE_IMAGE_REF`].
pub fn pause_image_tar() -> PathBuf {
    docker_archive(
        "pause-image-tar-v1",
        &pause_oci_layout(),
        "pause.tar",
        PAUSE_IMAGE_REF,
    )
}
