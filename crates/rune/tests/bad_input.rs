//! Bad input: every case must fail with a non-zero exit, exactly one
//! non-empty line on stderr naming what is wrong, and nothing left behind.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

/// Assert `o` failed with one stderr line mentioning one of `words`
/// (case-insensitive).
#[track_caller]
fn assert_error_mentions(o: &Output, words: &[&str]) {
    let line = o.one_error_line();
    assert!(
        words.iter().any(|w| line.contains(&w.to_lowercase())),
        "error line should mention one of {words:?}: {o}"
    );
}

/// `create` on a broken bundle: fails, one line mentioning `words`,
/// nothing left behind. Same for `run`.
#[track_caller]
fn assert_create_and_run_fail(root: &Root, b: &Bundle, words: &[&str]) {
    for cmd in ["create", "run"] {
        let o = root.run(&[cmd, "--bundle", &b.dir_str(), &b.id]);
        assert_error_mentions(&o, words);
        assert!(
            root.state(&b.id).is_none(),
            "{cmd}: container exists after failure"
        );
        assert_nothing_left(root, &b.id, b.dir());
    }
}

#[test]
fn config_that_is_not_json() {
    let root = Root::new();
    let b = Bundle::new(&root, &["true"]);
    fs::write(b.config_path(), "this is { not json").expect("write");
    // runc says only "invalid character ..."; rune should name config.json.
    assert_create_and_run_fail(&root, &b, &["config", "json", "invalid", "parse"]);
}

#[test]
fn config_without_process() {
    let root = Root::new();
    let mut b = Bundle::new(&root, &["true"]);
    b.edit(|c| {
        c.as_object_mut().expect("object").remove("process");
    });
    assert_create_and_run_fail(&root, &b, &["process"]);
}

#[test]
fn config_without_root() {
    let root = Root::new();
    let mut b = Bundle::new(&root, &["true"]);
    b.edit(|c| {
        c.as_object_mut().expect("object").remove("root");
    });
    assert_create_and_run_fail(&root, &b, &["root"]);
}

#[test]
fn config_with_wrong_type() {
    let root = Root::new();
    let mut b = Bundle::new(&root, &["true"]);
    b.edit(|c| c["process"]["args"] = serde_json::json!("true"));
    assert_create_and_run_fail(
        &root,
        &b,
        &["args", "process", "config", "json", "sequence", "array"],
    );
}

#[test]
fn missing_rootfs() {
    let root = Root::new();
    let b = Bundle::new(&root, &["true"]);
    fs::remove_dir_all(b.rootfs()).expect("remove rootfs");
    assert_create_and_run_fail(&root, &b, &["rootfs", &b.rootfs().to_string_lossy()]);
}

#[test]
fn missing_executable() {
    let root = Root::new();
    let b = Bundle::new(&root, &["/no/such/binary"]);
    assert_create_and_run_fail(&root, &b, &["/no/such/binary", "no such file", "not found"]);
}

#[test]
fn missing_bundle_dir() {
    let root = Root::new();
    let id = unique("rt-nobundle");
    let dir = std::env::temp_dir().join(unique("rt-no-such-bundle"));
    let o = root.run(&["create", "--bundle", &dir.to_string_lossy(), &id]);
    assert_error_mentions(
        &o,
        &[
            &dir.to_string_lossy(),
            "bundle",
            "config.json",
            "no such file",
        ],
    );
    assert_nothing_left(&root, &id, &dir);
}

#[test]
fn kill_with_unknown_signal() {
    let root = Root::new();
    let b = Bundle::new(&root, &["sleep", "1000"]);
    root.run(&["create", "--bundle", &b.dir_str(), &b.id]).ok();
    root.run(&["start", &b.id]).ok();
    root.wait_status(&b.id, "running");
    let pid = root.pid(&b.id);

    let o = root.run(&["kill", &b.id, "NOSUCHSIG"]);
    assert_error_mentions(&o, &["nosuchsig", "signal"]);
    let o = root.run(&["kill", &b.id, "999"]);
    assert_error_mentions(&o, &["999", "signal"]);

    // The container is untouched.
    assert_eq!(root.status(&b.id), "running");
    assert_eq!(root.pid(&b.id), pid);
    root.run(&["delete", "--force", &b.id]).ok();
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn create_with_id_in_use() {
    let root = Root::new();
    let first = Bundle::new(&root, &["sleep", "1000"]);
    root.run(&["create", "--bundle", &first.dir_str(), &first.id])
        .ok();
    let pid = root.pid(&first.id);

    // Another bundle, same id.
    let second = Bundle::new(&root, &["true"]);
    for cmd in ["create", "run"] {
        let o = root.run(&[cmd, "--bundle", &second.dir_str(), &first.id]);
        assert_error_mentions(&o, &[&first.id, "exist", "in use"]);
        assert!(
            processes_in(second.dir()).is_empty(),
            "{cmd} started a process in the second bundle"
        );
    }

    // The existing container is untouched and still startable.
    let st = root.state(&first.id).expect("first container still exists");
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["pid"].as_i64(), Some(pid), "{st}");
    let bundle = st["bundle"].as_str().expect("bundle");
    assert_eq!(
        fs::canonicalize(bundle).expect("bundle exists"),
        fs::canonicalize(first.dir()).expect("canon")
    );
    root.run(&["start", &first.id]).ok();
    root.wait_status(&first.id, "running");
    root.run(&["delete", "--force", &first.id]).ok();
    assert_nothing_left(&root, &first.id, first.dir());
    assert_nothing_left(&root, &first.id, second.dir());
}

#[test]
fn commands_on_unknown_id() {
    let root = Root::new();
    // Make the root exist (and hold one unrelated container) so that the
    // failure is about the id, not the root.
    let other = Bundle::new(&root, &["sleep", "1000"]);
    root.run(&["create", "--bundle", &other.dir_str(), &other.id])
        .ok();

    let id = unique("rt-unknown");
    let cases: Vec<Vec<&str>> = vec![
        vec!["state", &id],
        vec!["kill", &id],
        vec!["kill", &id, "KILL"],
        vec!["delete", &id],
        vec!["start", &id],
        vec!["exec", &id, "true"],
    ];
    for args in cases {
        let o = root.run(&args);
        assert_error_mentions(&o, &[&id, "not exist", "not found", "no such"]);
        assert!(
            !root.path().join(&id).exists(),
            "{args:?} created state for {id}"
        );
    }
    // `delete --force` of an unknown id: runc succeeds silently; either way
    // nothing may be created and stderr has at most one line.
    let o = root.run(&["delete", "--force", &id]);
    assert!(o.stderr_lines().len() <= 1, "{o}");
    assert_nothing_left(&root, &id, Path::new("/nonexistent-bundle"));
    // The unrelated container is untouched.
    assert_eq!(root.status(&other.id), "created");
}

#[test]
fn invalid_container_id() {
    let root = Root::new();
    let b = Bundle::new(&root, &["true"]);
    for id in ["../escape", "a/b", ""] {
        let o = root.run(&["create", "--bundle", &b.dir_str(), id]);
        assert!(!o.success(), "id {id:?} accepted: {o}");
        assert!(o.stderr_lines().len() == 1, "{o}");
        assert!(processes_in(b.dir()).is_empty());
    }
    assert!(
        !root
            .path()
            .parent()
            .expect("parent")
            .join("escape")
            .exists(),
        "../escape created a dir"
    );
}

#[test]
fn delete_running_container_without_force() {
    let root = Root::new();
    let b = Bundle::new(&root, &["sleep", "1000"]);
    root.run(&["create", "--bundle", &b.dir_str(), &b.id]).ok();
    root.run(&["start", &b.id]).ok();
    root.wait_status(&b.id, "running");
    let pid = root.pid(&b.id);

    let o = root.run(&["delete", &b.id]);
    assert_error_mentions(&o, &[&b.id, "running", "force"]);
    assert_eq!(root.status(&b.id), "running");
    assert_eq!(root.pid(&b.id), pid);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // Still usable.
    root.run(&["exec", &b.id, "true"]).ok();

    root.run(&["delete", "--force", &b.id]).ok();
    assert!(root.state(&b.id).is_none());
    assert_nothing_left(&root, &b.id, b.dir());
}

#[test]
fn root_that_is_a_file() {
    let scratch = TempDir::new("badroot");
    let file = scratch.join("not-a-dir");
    fs::write(&file, "x").expect("write file");
    let root = Root::new();
    let b = Bundle::new(&root, &["sleep", "1000"]);
    for cmd in ["create", "run"] {
        let mut c = Command::new(rune_bin());
        c.arg("--root")
            .arg(&file)
            .args([cmd, "--bundle", &b.dir_str(), &b.id]);
        let o = run_cmd(&mut c, None, CMD_TIMEOUT);
        assert_error_mentions(
            &o,
            &[&file.to_string_lossy(), "root", "directory", "not a dir"],
        );
        assert_eq!(fs::read_to_string(&file).expect("file intact"), "x");
        assert_nothing_left(&root, &b.id, b.dir());
    }
    // Other commands on that root fail cleanly too.
    let mut c = Command::new(rune_bin());
    c.arg("--root").arg(&file).args(["state", &b.id]);
    let o = run_cmd(&mut c, None, CMD_TIMEOUT);
    assert!(!o.success(), "{o}");
    assert_eq!(o.stderr_lines().len(), 1, "{o}");
}

/// A read-only bind mount of a scratch dir; unmounted on drop.
struct ReadOnlyMount {
    dir: TempDir,
}

impl ReadOnlyMount {
    fn new() -> ReadOnlyMount {
        let dir = TempDir::new("romount");
        fs::create_dir_all(dir.join("src")).expect("mkdir");
        fs::create_dir_all(dir.join("ro")).expect("mkdir");
        sh(&[
            "mount",
            "--bind",
            &dir.join("src").to_string_lossy(),
            &dir.join("ro").to_string_lossy(),
        ])
        .ok();
        sh(&[
            "mount",
            "-o",
            "remount,bind,ro",
            &dir.join("ro").to_string_lossy(),
        ])
        .ok();
        ReadOnlyMount { dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.join("ro")
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.join("ro"))
            .status();
    }
}

#[test]
fn root_on_read_only_mount() {
    let ro = ReadOnlyMount::new();
    assert!(
        fs::write(ro.path().join("probe"), "x").is_err(),
        "mount is not read-only"
    );
    let bad_root = ro.path().join("state");
    let root = Root::new();
    let b = Bundle::new(&root, &["sleep", "1000"]);
    for cmd in ["create", "run"] {
        let mut c = Command::new(rune_bin());
        c.arg("--root")
            .arg(&bad_root)
            .args([cmd, "--bundle", &b.dir_str(), &b.id]);
        let o = run_cmd(&mut c, None, CMD_TIMEOUT);
        assert_error_mentions(
            &o,
            &[
                &bad_root.to_string_lossy(),
                &ro.path().to_string_lossy(),
                "read-only",
                "root",
            ],
        );
        assert!(!bad_root.exists());
        assert_nothing_left(&root, &b.id, b.dir());
    }
}

#[test]
fn bad_global_and_command_flags() {
    let root = Root::new();
    let b = Bundle::new(&root, &["true"]);
    // Unknown command / flag: non-zero exit, something on stderr.
    for args in [
        vec!["no-such-command"],
        vec!["create", "--no-such-flag", "--bundle", &b.dir_str(), &b.id],
    ] {
        let o = root.run(&args);
        assert!(!o.success(), "{o}");
        assert!(!o.stderr.trim().is_empty(), "{o}");
        assert_nothing_left(&root, &b.id, b.dir());
    }
    // A missing id argument.
    let o = root.run(&["state"]);
    assert!(!o.success(), "{o}");
}
