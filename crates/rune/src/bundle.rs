//! Reading a bundle's config.json before anything is created, so that a bad bundle fails with a
//! message naming the file and the field instead of an error from deep inside container setup.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::Spec;
use serde_json::Value;

/// A bundle whose config.json parsed and whose root filesystem exists.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
}

pub fn load(dir: &Path) -> Result<Bundle> {
    let dir = fs::canonicalize(dir).map_err(|err| match err.kind() {
        ErrorKind::NotFound => anyhow!("bundle {} does not exist", dir.display()),
        _ => anyhow!("bundle {}: {err}", dir.display()),
    })?;
    let path = dir.join("config.json");
    let bytes = fs::read(&path).map_err(|err| match err.kind() {
        ErrorKind::NotFound => anyhow!(
            "{} not found: a bundle needs a config.json (`rune spec` writes one)",
            path.display()
        ),
        _ => anyhow!("cannot read {}: {err}", path.display()),
    })?;
    let spec = parse(&bytes).with_context(|| path.display().to_string())?;
    check_rootfs(&dir, &spec).with_context(|| path.display().to_string())?;
    Ok(Bundle { dir, spec })
}

/// Parses config.json, naming the first missing or malformed field.
pub fn parse(bytes: &[u8]) -> Result<Spec> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|err| anyhow!("not valid JSON: {err}"))?;
    let Some(object) = value.as_object() else {
        bail!("not a JSON object: the OCI runtime config is an object with `process` and `root`");
    };
    for (field, what) in [
        ("process", "the process to run in the container"),
        ("root", "the container's root filesystem (`root.path`)"),
        ("linux", "the Linux namespaces and settings"),
    ] {
        if object.get(field).is_none_or(Value::is_null) {
            bail!("`{field}` is missing: it sets {what}");
        }
    }

    let spec: Spec = serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            anyhow!("{inner}")
        } else {
            anyhow!("`{path}`: {inner}")
        }
    })?;
    let args_empty = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .is_none_or(|args| args.is_empty());
    if args_empty {
        bail!("`process.args` is empty: name the program to run");
    }
    Ok(spec)
}

fn check_rootfs(bundle: &Path, spec: &Spec) -> Result<()> {
    let Some(root) = spec.root() else {
        bail!("`root` is missing");
    };
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        bail!(
            "`root.path` {} ({}) is not a directory: unpack the image's root filesystem there",
            root.path().display(),
            rootfs.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"},"linux":{}}"#;

    fn error_of(text: &str) -> String {
        match parse(text.as_bytes()) {
            Ok(_) => panic!("{text} parsed"),
            Err(err) => format!("{err:#}"),
        }
    }

    #[test]
    fn accepts_a_minimal_config() {
        let spec = parse(MINIMAL.as_bytes()).expect("minimal config parses");
        assert_eq!(
            spec.root().as_ref().map(|r| r.path().clone()),
            Some("rootfs".into())
        );
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(error_of("{not json").contains("not valid JSON"));
        assert!(error_of("[]").contains("not a JSON object"));
        assert!(error_of(r#"{"root":{"path":"r"},"linux":{}}"#).contains("`process` is missing"));
        assert!(
            error_of(r#"{"process":{"args":["sh"],"cwd":"/"},"linux":{}}"#)
                .contains("`root` is missing")
        );
        assert!(
            error_of(r#"{"process":null,"root":{"path":"r"},"linux":{}}"#)
                .contains("`process` is missing")
        );
        let no_args = MINIMAL.replace(r#""args":["sh"],"#, r#""args":[],"#);
        assert!(error_of(&no_args).contains("process.args"));
        let no_user = MINIMAL.replace(r#","user":{"uid":0,"gid":0}"#, "");
        assert!(error_of(&no_user).contains("`process`: missing field `user`"));
        let bad_uid = MINIMAL.replace(r#""uid":0"#, r#""uid":"root""#);
        assert!(error_of(&bad_uid).contains("`process.user.uid`"));
    }

    #[test]
    fn never_panics_on_truncated_input() {
        for end in 0..MINIMAL.len() {
            let _ = parse(&MINIMAL.as_bytes()[..end]);
        }
    }
}
