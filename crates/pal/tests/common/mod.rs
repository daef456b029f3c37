//! Helpers shared by the integration tests: compiling the C conformance PALs and reading what
//! they recorded.
#![allow(dead_code)] // each test crate uses a different subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// `crates/pal`.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The C compiler: `$CC`, else `cc`.
pub fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".to_owned())
}

/// Runs the C compiler with `args` and panics with its output if it fails.
pub fn run_cc(args: &[&str]) {
    let out = Command::new(cc())
        .args(args)
        .output()
        .expect("run the C compiler ($CC or cc)");
    assert!(
        out.status.success(),
        "{} {:?} failed:\n{}",
        cc(),
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A conformance PAL compiled into its own temporary directory. Each build is a distinct file,
/// so dlopen gives every test its own copy of the PAL's global state.
pub struct TestPal {
    pub dir: TempDir,
    pub so: PathBuf,
    pub record: PathBuf,
}

impl TestPal {
    /// Compiles `tests/pals/<source>` with `-D<define>` for each of `defines`.
    pub fn build(source: &str, defines: &[&str]) -> TestPal {
        let dir = tempfile::tempdir().expect("temp dir");
        let so = dir.path().join(format!(
            "liberpal-{}.so",
            source.trim_end_matches(".c").replace('_', "-")
        ));
        let src = crate_dir().join("tests/pals").join(source);
        let include = format!("-I{}", crate_dir().join("include").display());
        let defines: Vec<String> = defines.iter().map(|d| format!("-D{d}")).collect();
        let mut args = vec![
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-shared",
            "-fPIC",
            include.as_str(),
        ];
        args.extend(defines.iter().map(String::as_str));
        args.extend([
            src.to_str().expect("UTF-8 path"),
            "-o",
            so.to_str().expect("UTF-8 path"),
        ]);
        run_cc(&args);
        let record = dir.path().join("calls.log");
        TestPal { dir, so, record }
    }

    /// An args string recording into this PAL's log, plus `extra` tokens.
    pub fn args(&self, extra: &str) -> String {
        let mut args = format!("record={}", self.record.display());
        if !extra.is_empty() {
            args.push(' ');
            args.push_str(extra);
        }
        args
    }

    /// The recorded calls, one per line (empty if nothing was recorded yet).
    pub fn calls(&self) -> Vec<String> {
        match fs::read_to_string(&self.record) {
            Ok(s) => s.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The recorded calls' function names.
    pub fn call_names(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Quotes `s` as the conformance PALs record strings.
pub fn q(s: &str) -> String {
    let mut out = String::from("\"");
    // Non-ASCII passes through untouched: the PAL writes the bytes as they are.
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\0'..='\x1f' | '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes a string array as the conformance PALs record it.
pub fn qv<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| q(s.as_ref())).collect();
    format!("[{}]", inner.join(","))
}

/// `items` as owned strings.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Writes a file and returns its path.
pub fn write_file(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).expect("write file");
    path
}
