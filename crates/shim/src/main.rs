//! `containerd-shim-rune-v2`: the containerd shim v2 of runtime `io.containerd.rune.v2`
//! (containerd 1.6, task API v2). It drives the `rune` binary as containerd's runc shim drives
//! runc, so the CLI and the shim share one code path.

mod carrier;
mod config;
mod events;
#[cfg(test)]
mod fuzz_tests;
mod metrics;
mod mount;
mod oom;
mod process;
mod reaper;
mod runtime;
mod service;
mod stdio;
mod trim;

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| matches!(a.as_str(), "-v" | "-version" | "--version"))
    {
        println!(
            "containerd-shim-rune-v2:\n  Version: {}\n  Runtime: io.containerd.rune.v2 (task API v2)",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    // One malloc arena: per-thread arenas each keep their own partly used pages, which adds up
    // to hundreds of KiB in a process that is mostly idle.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let config = containerd_shim::Config {
        // The shim reaps its children itself (see reaper.rs): the rune commands it runs must be
        // waited for by pid, which the library's reaper does not allow.
        no_reaper: true,
        ..Default::default()
    };
    containerd_shim::run::<service::Shim>("io.containerd.rune.v2", Some(config));
}
