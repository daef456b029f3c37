# shellcheck shell=bash
# Building a small real image locally, with no image registry: a root filesystem made of
# Debian's static busybox, packed as an OCI image by umoci and converted by skopeo into an
# archive that `ctr images import` and `docker load` accept. Source it (after common.sh).
#
#   image_busybox_rootfs DIR                    fill DIR with a busybox root filesystem
#   image_build_busybox_oci LAYOUT TAG [HOOK]   make OCI layout LAYOUT with image LAYOUT:TAG
#                                               (uses LAYOUT.bundle as scratch space); HOOK,
#                                               a function, gets the rootfs before packing
#                                               (to sign an enclave image into it, say)
#   image_to_archive LAYOUT TAG ARCHIVE NAME [docker-archive|oci-archive]
#                                               write LAYOUT:TAG to ARCHIVE, named NAME
#   image_build_busybox_archive WORKDIR NAME [HOOK]
#                                               all of it: prints the archive's path
#   image_build_rootfs_archive WORKDIR NAME ROOTFS CMD...
#                                               an image of a copy of ROOTFS (a Debian
#                                               python3 root, say) with command CMD
#   image_build_pause_archive WORKDIR NAME      the pod sandbox image: /pause alone,
#                                               compiled from images/pause/pause.c

IMAGE_PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_image_static_busybox() {
    local bb
    for bb in /bin/busybox /usr/bin/busybox; do
        # ldd fails on a static binary; its message says so.
        if [ -x "$bb" ] && [[ "$(LC_ALL=C ldd "$bb" 2>&1 || true)" == *"not a dynamic"* ]]; then
            printf '%s\n' "$bb"
            return 0
        fi
    done
    die "no static busybox found (apt-get install busybox-static; scripts/install-deps.sh does it)"
}

image_busybox_rootfs() {
    local root="$1" bb applet
    bb="$(_image_static_busybox)"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,root,run,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    install -m 0755 "$bb" "$root/bin/busybox"
    # One symlink per applet, where busybox itself would install it (bin/sh, usr/bin/awk, ...).
    while read -r applet; do
        case "$applet" in bin/busybox | linuxrc | "") continue ;; esac
        ln -sfn /bin/busybox "$root/$applet"
    done < <("$root/bin/busybox" --list-full)
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    : >"$root/etc/hosts"
    : >"$root/etc/resolv.conf"
}

image_build_busybox_oci() {
    local layout="$1" tag="$2" hook="${3:-}" bundle
    [ -d "$layout" ] || umoci init --layout "$layout"
    umoci new --image "$layout:$tag"
    bundle="$layout.bundle" # beside the layout, so a failure leaves nothing elsewhere
    rm -rf "$bundle"
    umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
    image_busybox_rootfs "$bundle/rootfs"
    [ -z "$hook" ] || "$hook" "$bundle/rootfs"
    umoci repack --image "$layout:$tag" "$bundle"
    rm -rf "$bundle"
    umoci config --image "$layout:$tag" \
        --author rune --os linux --architecture "$(_image_goarch)" \
        --config.env "$IMAGE_PATH_ENV" --config.workingdir / --config.cmd /bin/sh \
        --history.comment "busybox root filesystem for rune"
}

_image_goarch() {
    case "$(uname -m)" in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) uname -m ;;
    esac
}

image_to_archive() {
    local layout="$1" tag="$2" archive="$3" name="$4" format="${5:-docker-archive}"
    rm -f "$archive"
    case "$format" in
    docker-archive) skopeo --insecure-policy copy --quiet "oci:$layout:$tag" "docker-archive:$archive:$name" ;;
    oci-archive) skopeo --insecure-policy copy --quiet "oci:$layout:$tag" "oci-archive:$archive:$name" ;;
    *) die "unknown archive format $format" ;;
    esac
}

image_build_busybox_archive() {
    local work="$1" name="$2" hook="${3:-}"
    mkdir -p "$work"
    rm -rf "$work/oci"
    image_build_busybox_oci "$work/oci" busybox "$hook" >&2
    image_to_archive "$work/oci" busybox "$work/busybox.tar" "$name" docker-archive >&2
    printf '%s\n' "$work/busybox.tar"
}

# _image_pack LAYOUT TAG FILL CMD...: a one-layer image whose root FILL (a function given the
# root directory) fills, with command CMD.
_image_pack() {
    local layout="$1" tag="$2" fill="$3" bundle
    shift 3
    rm -rf "$layout"
    umoci init --layout "$layout"
    umoci new --image "$layout:$tag"
    bundle="$layout.bundle"
    rm -rf "$bundle"
    umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
    "$fill" "$bundle/rootfs"
    umoci repack --image "$layout:$tag" "$bundle"
    rm -rf "$bundle"
    local cfg=(--author rune --os linux --architecture "$(_image_goarch)" --config.workingdir /)
    for arg in "$@"; do cfg+=(--config.cmd "$arg"); done
    umoci config --image "$layout:$tag" "${cfg[@]}" --config.env "$IMAGE_PATH_ENV" \
        --history.comment "built locally for rune"
}

image_build_rootfs_archive() {
    local work="$1" name="$2" src="$3"
    shift 3
    [ -d "$src" ] || die "no root filesystem at $src"
    _image_fill_copy() { cp -a "$src/." "$1/"; }
    mkdir -p "$work"
    _image_pack "$work/oci" img _image_fill_copy "$@" >&2
    image_to_archive "$work/oci" img "$work/image.tar" "$name" docker-archive >&2
    rm -rf "$work/oci"
    printf '%s\n' "$work/image.tar"
}

image_build_pause_archive() {
    local work="$1" name="$2"
    command -v gcc >/dev/null || die "gcc is missing (scripts/install-deps.sh installs it)"
    mkdir -p "$work"
    gcc -static -O2 -Wall -Werror -o "$work/pause" "$RUNE_REPO/images/pause/pause.c" ||
        die "could not compile images/pause/pause.c (is libc6-dev installed?)"
    _image_fill_pause() {
        mkdir -p "$1"/{dev,proc,sys}
        install -m 0755 "$work/pause" "$1/pause"
    }
    _image_pack "$work/oci" pause _image_fill_pause /pause >&2
    image_to_archive "$work/oci" pause "$work/pause.tar" "$name" docker-archive >&2
    rm -rf "$work/oci"
    printf '%s\n' "$work/pause.tar"
}
