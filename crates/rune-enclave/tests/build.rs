//! `rune-enclave build` on real programs: a static busybox, dynamically linked glibc programs
//! in Debian's layout, `#!` scripts, RPATH/RUNPATH with `$ORIGIN`, and `--trust` directories.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn static_busybox_with_a_symlinked_entrypoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    let out = ok(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--entrypoint",
        "//bin/./busybox",
        "--writable",
        "/tmp",
        "--env",
        "PATH=/bin",
        "--env",
        "HOME=/tmp",
        "--host-env",
        "TZ",
        "--memory",
        "64M",
        "--max-threads",
        "8",
        "--max-processes",
        "4",
        "--product-id",
        "7",
        "--security-version",
        "3",
    ]);
    assert!(out.contains("(unsigned)"), "{out}");

    let manifest = manifest(&rootfs);
    let busybox = file_sha256(&rootfs.join("bin/busybox"));
    let trusted = trusted(&rootfs);
    // The entrypoint as given and the file it resolves to, with the same digest.
    assert_eq!(trusted.len(), 2, "{trusted:?}");
    assert_eq!(trusted["/bin/sh"], busybox.as_str());
    assert_eq!(trusted["/bin/busybox"], busybox.as_str());
    assert_eq!(
        manifest["entrypoints"],
        serde_json::json!(["/bin/sh", "/bin/busybox"])
    );
    assert_eq!(manifest["writable_paths"], serde_json::json!(["/tmp"]));
    assert_eq!(
        manifest["env"],
        serde_json::json!({"default": ["PATH=/bin", "HOME=/tmp"], "host_allowed": ["TZ"]})
    );
    assert_eq!(manifest["memory_size"], 64 << 20);
    assert_eq!(manifest["max_threads"], 8);
    assert_eq!(manifest["max_processes"], 4);
    assert_eq!(manifest["product_id"], 7);
    assert_eq!(manifest["security_version"], 3);
    assert_eq!(manifest["debug"], false);
    assert!(!rootfs.join(".rune-enclave/signature.json").exists());

    let measurement = ok(&["measure", "--rootfs", s(&rootfs)]);
    assert!(out.contains(measurement.trim()), "{out} / {measurement}");
    assert_eq!(measurement.trim().len(), 64);

    // Defaults; and a symlinked entrypoint brings its target as an entrypoint.
    ok(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/sh"]);
    let manifest = common::manifest(&rootfs);
    assert_eq!(
        manifest["entrypoints"],
        serde_json::json!(["/bin/sh", "/bin/busybox"])
    );
    assert_eq!(manifest["memory_size"], 256 << 20);
    assert_eq!(manifest["max_threads"], 64);
    assert_eq!(manifest["max_processes"], 16);
    assert_eq!(manifest["product_id"], 0);
}

#[test]
fn rebuilding_removes_a_stale_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    ok(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/sh"]);
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    assert!(rootfs.join(".rune-enclave/signature.json").exists());
    let out = ok(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--debug",
    ]);
    assert!(out.contains("stale"), "{out}");
    assert!(!rootfs.join(".rune-enclave/signature.json").exists());
}

/// `/bin/ls` from the host with its libraries, in Debian's merged-/usr layout: the ELF
/// interpreter is reached through the absolute `/lib64` symlink, which must resolve inside
/// the rootfs.
#[test]
fn dynamic_program_pulls_in_interpreter_and_libraries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dynamic_rootfs(dir.path(), "ls-rootfs", Path::new("/bin/ls"), &[]);
    ok(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/ls"]);
    let trusted = trusted(&rootfs);

    let ld = file_sha256(&rootfs.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"));
    assert_eq!(digest_of(&rootfs, "/lib64/ld-linux-x86-64.so.2"), ld);
    assert_eq!(
        digest_of(&rootfs, "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        ld
    );
    let libc = file_sha256(&rootfs.join("usr/lib/x86_64-linux-gnu/libc.so.6"));
    // Found by the loader's first search directory, /lib/x86_64-linux-gnu (through the
    // /lib -> usr/lib symlink), and listed under its canonical path too.
    assert_eq!(digest_of(&rootfs, "/lib/x86_64-linux-gnu/libc.so.6"), libc);
    assert_eq!(
        digest_of(&rootfs, "/usr/lib/x86_64-linux-gnu/libc.so.6"),
        libc
    );
    assert_eq!(
        digest_of(&rootfs, "/bin/ls"),
        file_sha256(&rootfs.join("usr/bin/ls"))
    );
    assert!(trusted.contains_key("/usr/bin/ls"));
    // Every library ldd names on the host is there.
    for lib in host_libraries(Path::new("/bin/ls")) {
        let name = lib.file_name().expect("name").to_string_lossy().to_string();
        assert!(
            trusted
                .keys()
                .any(|k| k.ends_with(&format!("/x86_64-linux-gnu/{name}"))),
            "{name} missing from {trusted:?}"
        );
    }
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    ok(&["verify", "--rootfs", s(&rootfs)]);
}

#[test]
fn a_missing_library_is_named_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dynamic_rootfs(dir.path(), "ls-rootfs", Path::new("/bin/ls"), &["libc.so"]);
    let err = fails(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/ls"]);
    assert!(err.contains("--entrypoint /bin/ls"), "{err}");
    assert!(err.contains("needs libc.so.6"), "{err}");
    assert!(err.contains("copy it in"), "{err}");
    assert!(!rootfs.join(".rune-enclave/manifest.json").exists());

    let rootfs = dynamic_rootfs(dir.path(), "no-ld", Path::new("/bin/ls"), &["ld-linux"]);
    let err = fails(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/ls"]);
    assert!(
        err.contains("ELF interpreter /lib64/ld-linux-x86-64.so.2"),
        "{err}"
    );
}

/// Debian's python3: a symlinked entrypoint, the interpreter, libc and friends, and the
/// standard library as a `--trust` directory. As root the result is also run in a chroot, which
/// shows that the files found are the files the loader needs.
#[test]
fn python3_with_its_standard_library() {
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "python3 is part of the Debian machine image"
    );
    // python3.11 on Debian 12: the versioned name is the real file and the stdlib's directory.
    let real = fs::canonicalize(python).expect("canonicalize");
    let name = real
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    let tag = name.trim_start_matches("python").replace('.', "");
    let stdlib = format!("/usr/lib/{name}");
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dynamic_rootfs(dir.path(), "py-rootfs", python, &[]);
    let status = Command::new("cp")
        .args(["-a", &stdlib])
        .arg(rootfs.join("usr/lib/"))
        .status()
        .expect("cp");
    assert!(status.success());

    let out = run(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/usr/bin/python3",
        "--trust",
        &stdlib,
        "--writable",
        "/tmp",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Extension modules whose libraries were not copied are reported, not fatal; so is
    // Debian's sitecustomize.py, a symlink into /etc, which this rootfs lacks.
    let ssl = format!("_ssl.cpython-{tag}-x86_64-linux-gnu.so needs libssl.so.3");
    assert!(stderr.contains(&ssl), "{stderr}");
    let sitecustomize = format!("{stdlib}/sitecustomize.py");
    if fs::symlink_metadata(&sitecustomize).is_ok_and(|m| m.file_type().is_symlink()) {
        let warning = format!("{sitecustomize} is a dangling symlink");
        assert!(stderr.contains(&warning), "{stderr}");
    }

    let real_path = format!("/usr/bin/{name}");
    assert_eq!(
        manifest(&rootfs)["entrypoints"],
        serde_json::json!(["/usr/bin/python3", real_path])
    );
    let trusted = trusted(&rootfs);
    let python_digest = file_sha256(&rootfs.join(real_path.trim_start_matches('/')));
    assert_eq!(digest_of(&rootfs, "/usr/bin/python3"), python_digest);
    assert_eq!(digest_of(&rootfs, &real_path), python_digest);
    for key in [
        "/lib64/ld-linux-x86-64.so.2".to_string(),
        "/lib/x86_64-linux-gnu/libc.so.6".to_string(),
        "/usr/lib/x86_64-linux-gnu/libc.so.6".to_string(),
        "/lib/x86_64-linux-gnu/libm.so.6".to_string(),
        format!("{stdlib}/os.py"),
        format!("{stdlib}/json/__init__.py"),
        format!("{stdlib}/lib-dynload/_json.cpython-{tag}-x86_64-linux-gnu.so"),
    ] {
        assert!(trusted.contains_key(&key), "{key} missing");
    }
    let os_py = format!("{stdlib}/os.py");
    assert_eq!(digest_of(&rootfs, &os_py), file_sha256(Path::new(&os_py)));
    // Relative symlinks in the standard library are listed with their target's digest.
    let mut links = 0;
    for entry in fs::read_dir(&stdlib).expect("read_dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        let key = path.to_string_lossy().to_string();
        let Ok(target) = fs::read_link(&path) else {
            continue;
        };
        if target.is_relative() && fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            let resolved = fs::canonicalize(&path).expect("canonicalize");
            assert_eq!(
                digest_of(&rootfs, &key),
                digest_of(&rootfs, &resolved.to_string_lossy()),
                "{key}"
            );
            links += 1;
        }
    }
    assert!(links > 0, "Debian's {stdlib} has relative symlinks");
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    ok(&["verify", "--rootfs", s(&rootfs)]);

    if is_root() && have("chroot") {
        let out = Command::new("chroot")
            .arg(&rootfs)
            .args([
                "/usr/bin/python3",
                "-S",
                "-c",
                "import json; print(json.dumps([1, 2]))",
            ])
            .output()
            .expect("chroot");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "[1, 2]",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn scripts_bring_their_interpreter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    let script = rootfs.join("bin/hello");
    fs::write(&script, "#!/bin/sh -e\necho hello\n").expect("write");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    ok(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/hello",
    ]);
    let trusted = trusted(&rootfs);
    let keys: Vec<&String> = trusted.keys().collect();
    assert_eq!(keys, ["/bin/busybox", "/bin/hello", "/bin/sh"]);

    // A script whose interpreter is missing.
    fs::write(&script, "#!/usr/bin/perl\nprint 1;\n").expect("write");
    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/hello",
    ]);
    assert!(err.contains("#! interpreter of /bin/hello"), "{err}");
    assert!(
        err.contains("/usr/bin/perl does not exist in the rootfs"),
        "{err}"
    );
}

#[test]
fn entrypoints_must_be_runnable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    fs::write(rootfs.join("bin/data"), "just text\n").expect("write");
    let err = fails(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/data"]);
    assert!(err.contains("not executable"), "{err}");
    fs::set_permissions(rootfs.join("bin/data"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let err = fails(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/data"]);
    assert!(
        err.contains("neither an ELF program nor a #! script"),
        "{err}"
    );
    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/nothing",
    ]);
    assert!(
        err.contains("/bin/nothing does not exist in the rootfs"),
        "{err}"
    );
    let err = fails(&["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin"]);
    assert!(err.contains("a directory, not a regular file"), "{err}");
    let err = fails(&["build", "--rootfs", s(&rootfs), "--entrypoint", "bin/sh"]);
    assert!(err.contains("absolute"), "{err}");
    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/../bin/sh",
    ]);
    assert!(err.contains("without `..`"), "{err}");
}

#[test]
fn bad_arguments_name_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    let base = ["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/sh"];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let check = |extra: &[&str], expected: &str| {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        assert!(!out.status.success(), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    };
    check(
        &["--env", "NOEQUALS"],
        "--env \"NOEQUALS\": write NAME=value",
    );
    check(&["--env", "=x"], "write NAME=value");
    check(&["--host-env", "A=B"], "--host-env \"A=B\"");
    check(&["--memory", "lots"], "not a size");
    check(&["--memory", "0"], "above 0");
    check(&["--max-threads", "0"], "--max-threads");
    check(&["--product-id", "70000"], "--product-id");
    check(
        &["--writable", "/bin"],
        "--writable /bin: holds the trusted file /bin/busybox",
    );
    check(&["--writable", "/"], "holds the trusted file");
    check(&["--trust", "/nothing"], "--trust /nothing");
    let missing = dir.path().join("no-such-rootfs");
    let out = run(&["build", "--rootfs", s(&missing), "--entrypoint", "/bin/sh"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rootfs"));
    // Writable paths that hold no trusted file are fine.
    ok(&with(&["--writable", "/tmp", "--writable", "/bin-data"])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
}

#[test]
fn trusted_directories_are_walked_inside_the_rootfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    let data = rootfs.join("srv/app");
    fs::create_dir_all(data.join("sub/deeper")).expect("mkdir");
    fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
    fs::write(data.join("a.txt"), "a").expect("write");
    fs::write(data.join("sub/deeper/b.txt"), "b").expect("write");
    fs::write(rootfs.join("etc/config"), "inside").expect("write");
    symlink("/etc/config", data.join("config")).expect("symlink");
    symlink("/etc", data.join("etc-dir")).expect("symlink");
    symlink("/no/such/file", data.join("dangling")).expect("symlink");

    let out = run(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--trust",
        "/srv/app",
        "--trust",
        "/etc/config",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("/srv/app/dangling is a dangling symlink"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/srv/app/etc-dir is a symlink to the directory /etc, not followed"),
        "{stderr}"
    );
    let trusted = trusted(&rootfs);
    let keys: Vec<&str> = trusted.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "/bin/busybox",
            "/bin/sh",
            "/etc/config",
            "/srv/app/a.txt",
            "/srv/app/config",
            "/srv/app/sub/deeper/b.txt",
        ]
    );
    assert_eq!(trusted["/srv/app/config"], sha256_hex(b"inside").as_str());
    assert_eq!(trusted["/srv/app/a.txt"], sha256_hex(b"a").as_str());

    // Trusting everything skips the image directory itself.
    ok(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--trust",
        "/srv",
    ]);
    let out = run(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--trust",
        "/",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!trusted_keys(&rootfs)
        .iter()
        .any(|k| k.contains(".rune-enclave")));
    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/sh",
        "--trust",
        "/.rune-enclave",
    ]);
    assert!(err.contains("image directory"), "{err}");
}

/// `--exclude`: mount points the runtime fills at run time (CRI's /etc/hosts) are left out of
/// a trusted directory, and cannot be trusted or started by name.
#[test]
fn excluded_mount_points_are_left_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    fs::create_dir_all(rootfs.join("etc/ssl")).expect("mkdir");
    fs::write(rootfs.join("etc/hosts"), "127.0.0.1 localhost").expect("write");
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/:/bin/sh").expect("write");
    fs::write(rootfs.join("etc/ssl/cert.pem"), "cert").expect("write");
    symlink("/etc/hosts", rootfs.join("etc/hosts.link")).expect("symlink");
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/sh"];
        args.extend_from_slice(extra);
        run(&args)
    };

    let out = build(&[
        "--trust",
        "/etc",
        "--exclude",
        "/etc/hosts",
        "--exclude",
        "/etc/ssl/",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        trusted_keys(&rootfs),
        ["/bin/busybox", "/bin/sh", "/etc/passwd"],
        "{stderr}"
    );
    // A symlink into an excluded path goes too, and each dropped file is named.
    for key in ["/etc/hosts", "/etc/hosts.link", "/etc/ssl/cert.pem"] {
        assert!(
            stderr.contains(&format!("{key}: left out of the trusted files")),
            "{stderr}"
        );
    }

    let build_fails = |extra: &[&str]| {
        let mut args = vec!["build", "--rootfs", s(&rootfs), "--entrypoint", "/bin/sh"];
        args.extend_from_slice(extra);
        fails(&args)
    };
    let err = build_fails(&["--trust", "/etc/hosts", "--exclude", "/etc/hosts"]);
    assert!(
        err.contains("--trust /etc/hosts: is under --exclude /etc/hosts"),
        "{err}"
    );
    let err = build_fails(&["--exclude", "/bin"]);
    assert!(
        err.contains("--entrypoint /bin/sh: is under --exclude /bin"),
        "{err}"
    );
    let err = build_fails(&["--exclude", "/"]);
    assert!(err.contains("--exclude /"), "{err}");
}

fn trusted_keys(rootfs: &Path) -> Vec<String> {
    trusted(rootfs).keys().cloned().collect()
}

/// A program and a library of our own, linked with `$ORIGIN`-relative DT_RUNPATH and DT_RPATH.
#[test]
fn runpath_and_rpath_with_origin() {
    assert!(have("gcc"), "gcc is installed by scripts/install-deps.sh");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir_all(&src).expect("mkdir");
    fs::write(src.join("lib.c"), "int answer(void) { return 42; }\n").expect("write");
    fs::write(
        src.join("main.c"),
        "int answer(void);\nint main(void) { return answer() == 42 ? 0 : 1; }\n",
    )
    .expect("write");
    let gcc = |args: &[&str]| {
        let status = Command::new("gcc")
            .args(args)
            .current_dir(&src)
            .status()
            .expect("gcc");
        assert!(status.success(), "gcc {args:?}");
    };
    gcc(&[
        "-shared",
        "-fPIC",
        "-Wl,-soname,libanswer.so.1",
        "-o",
        "libanswer.so.1",
        "lib.c",
    ]);
    for (name, tags) in [
        ("runpath", "--enable-new-dtags"),
        ("rpath", "--disable-new-dtags"),
    ] {
        gcc(&[
            "-o",
            name,
            "main.c",
            "-L.",
            "-l:libanswer.so.1",
            &format!("-Wl,{tags},-rpath,$ORIGIN/../opt/lib"),
        ]);
        let rootfs = dynamic_rootfs(
            dir.path(),
            &format!("{name}-rootfs"),
            Path::new("/bin/true"),
            &[],
        );
        fs::create_dir_all(rootfs.join("app/bin")).expect("mkdir");
        fs::create_dir_all(rootfs.join("app/opt/lib")).expect("mkdir");
        fs::copy(src.join(name), rootfs.join("app/bin/prog")).expect("copy");
        fs::copy(
            src.join("libanswer.so.1"),
            rootfs.join("app/opt/lib/libanswer.so.1"),
        )
        .expect("copy");
        ok(&[
            "build",
            "--rootfs",
            s(&rootfs),
            "--entrypoint",
            "/app/bin/prog",
        ]);
        let trusted = trusted_keys(&rootfs);
        // The lookup path has `..` in it, so only the canonical path is listed.
        assert!(
            trusted.contains(&"/app/opt/lib/libanswer.so.1".to_string()),
            "{name}: {trusted:?}"
        );
        assert!(
            trusted.contains(&"/lib/x86_64-linux-gnu/libc.so.6".to_string()),
            "{name}"
        );
        // The loader agrees: run from the rootfs directory (a bare chroot has no /proc, which
        // glibc needs for the main program's $ORIGIN), the program finds its library.
        let status = Command::new(rootfs.join("app/bin/prog"))
            .status()
            .expect("run prog");
        assert!(status.success(), "{name} does not find its library");
        // Without the library the build fails, naming the search path it used.
        fs::remove_file(rootfs.join("app/opt/lib/libanswer.so.1")).expect("rm");
        let err = fails(&[
            "build",
            "--rootfs",
            s(&rootfs),
            "--entrypoint",
            "/app/bin/prog",
        ]);
        assert!(err.contains("needs libanswer.so.1"), "{err}");
        assert!(err.contains("/app/bin/../opt/lib"), "{err}");
    }
}

#[test]
fn search_path_resolves_a_bare_entrypoint_as_rune_will() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = busybox_rootfs(dir.path());
    // Earlier PATH entries that must be passed over: missing, a non-executable `sh`, and a
    // symlink to the host's busybox path that leads nowhere inside this rootfs.
    fs::create_dir_all(rootfs.join("usr/local/bin")).expect("mkdir");
    fs::write(rootfs.join("usr/local/bin/sh"), "not a program\n").expect("write");
    fs::create_dir_all(rootfs.join("opt/bin")).expect("mkdir");
    symlink("/usr/bin/env", rootfs.join("opt/bin/sh")).expect("symlink");
    let search = "/nowhere::/usr/local/bin:/opt/bin:/usr/bin:/bin";

    let out = ok(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "sh",
        "--search-path",
        search,
        "--writable",
        "/tmp",
    ]);
    assert!(
        out.contains("entrypoint found through --search-path: sh -> /bin/sh"),
        "{out}"
    );
    // Recorded as rune will hand it to the PAL, and its resolution inside the rootfs.
    assert_eq!(
        manifest(&rootfs)["entrypoints"],
        serde_json::json!(["/bin/sh", "/bin/busybox"])
    );
    let busybox = file_sha256(Path::new("/bin/busybox"));
    assert_eq!(digest_of(&rootfs, "/bin/sh"), busybox);
    assert_eq!(digest_of(&rootfs, "/bin/busybox"), busybox);
    assert!(!trusted(&rootfs).contains_key("/usr/local/bin/sh"));
    ok(&["sign", "--rootfs", s(&rootfs), "--key", key_path()]);
    ok(&["verify", "--rootfs", s(&rootfs)]);

    // Absolute entrypoints are taken as given, search path or not.
    ok(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "/bin/busybox",
        "--search-path",
        search,
    ]);
    assert_eq!(
        manifest(&rootfs)["entrypoints"],
        serde_json::json!(["/bin/busybox"])
    );

    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "no-such-program",
        "--search-path",
        "/usr/bin:/bin",
    ]);
    assert!(err.contains("no-such-program"), "{err}");
    assert!(err.contains("\"/usr/bin:/bin\""), "{err}");
    let err = fails(&[
        "build",
        "--rootfs",
        s(&rootfs),
        "--entrypoint",
        "sh",
        "--search-path",
        "/usr/local/bin:/opt/bin",
    ]);
    assert!(err.contains("/usr/local/bin/sh is not executable"), "{err}");
    // Without --search-path a bare name stays an error, which says how to look it up.
    let err = fails(&["build", "--rootfs", s(&rootfs), "--entrypoint", "sh"]);
    assert!(
        err.contains("absolute") && err.contains("--search-path"),
        "{err}"
    );
}
