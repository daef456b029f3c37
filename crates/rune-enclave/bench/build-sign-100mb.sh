#!/usr/bin/env bash
# Times `rune-enclave build` + `rune-enclave sign` (release) on a ~100 MB rootfs made from the
# host's Debian python3: the interpreter and its libraries, /usr/lib/python3.11 and
# /usr/lib/python3/dist-packages (about 4,600 files). Warm page cache; prints each run and the
# minimum and median of build+sign.
#   crates/rune-enclave/bench/build-sign-100mb.sh [RUNS]    (default 20)
set -euo pipefail
runs=${1:-20}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$repo"
cargo build --release -q -p rune-enclave
bin=$repo/target/release/rune-enclave

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs"/usr/bin "$rootfs"/usr/lib/x86_64-linux-gnu "$rootfs"/usr/lib/python3 "$rootfs"/lib64 "$rootfs"/tmp
ln -s usr/bin "$rootfs/bin"
ln -s usr/lib "$rootfs/lib"
ln -s /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$rootfs/lib64/ld-linux-x86-64.so.2"
cp -a /usr/bin/python3 /usr/bin/python3.11 "$rootfs/usr/bin/"
for lib in $(ldd /usr/bin/python3.11 | grep -o '/[^ ]*'); do
    target=$(readlink -f "$lib")
    cp -a "$target" "$rootfs$target"
    dir=$(readlink -f "$(dirname "$lib")")
    # the soname link beside its file (libz.so.1 -> libz.so.1.2.13)
    if [ "$dir" = "$(dirname "$target")" ] && [ ! -e "$rootfs$dir/$(basename "$lib")" ]; then
        cp -a "$dir/$(basename "$lib")" "$rootfs$dir/"
    fi
done
cp -a /usr/lib/python3.11 "$rootfs/usr/lib/"
cp -a /usr/lib/python3/dist-packages "$rootfs/usr/lib/python3/"
"$bin" keygen --out "$work/key.pem" >/dev/null 2>&1
echo "rootfs: $(du -sh --apparent-size "$rootfs" | cut -f1), $(find "$rootfs" -type f | wc -l) files; $(nproc) CPUs"

build() {
    "$bin" build --rootfs "$rootfs" --entrypoint /usr/bin/python3 \
        --trust /usr/lib/python3.11 --trust /usr/lib/python3/dist-packages --writable /tmp \
        >/dev/null 2>&1
}
build # warm the page cache
totals=()
for _ in $(seq "$runs"); do
    t0=$(date +%s%N)
    build
    t1=$(date +%s%N)
    "$bin" sign --rootfs "$rootfs" --key "$work/key.pem" >/dev/null
    t2=$(date +%s%N)
    printf 'build %3d ms  sign %3d ms  total %3d ms\n' $(((t1 - t0) / 1000000)) $(((t2 - t1) / 1000000)) $(((t2 - t0) / 1000000))
    totals+=($(((t2 - t0) / 1000000)))
done
sorted=$(printf '%s\n' "${totals[@]}" | sort -n)
echo "build+sign: min $(echo "$sorted" | head -1) ms, median $(echo "$sorted" | sed -n "$(((runs + 1) / 2))p") ms, max $(echo "$sorted" | tail -1) ms"
"$bin" verify --rootfs "$rootfs" | grep 'trusted files'
