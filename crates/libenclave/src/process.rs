//! Small helpers about the workload's process, run inside the container.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use oci_spec::runtime::Spec;

/// argv and env exactly as config.json lists them (order kept, empty strings kept), plus
/// `HOME` when config.json has none: libcontainer (like runc) derives it from the user's passwd
/// entry and has put it in this process's env, and a workload must see the same env in an
/// enclave as outside one.
pub fn argv_env(spec: &Spec) -> (Vec<String>, Vec<String>) {
    let process = spec.process().as_ref();
    let argv = process.and_then(|p| p.args().clone()).unwrap_or_default();
    let mut env = process.and_then(|p| p.env().clone()).unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        if let Ok(home) = std::env::var("HOME") {
            env.push(format!("HOME={home}"));
        }
    }
    (argv, env)
}

/// As upstream: a bare program name that resolves through the workload's PATH inside the
/// container is replaced by that path; anything else (an enclave-image path, for instance) is
/// passed to the PAL verbatim.
pub fn resolve_argv0(mut argv: Vec<String>, env: &[String]) -> Vec<String> {
    let Some(program) = argv.first() else {
        return argv;
    };
    if program.is_empty() || program.contains('/') {
        return argv;
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("");
    let found = path
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        });
    if let Some(found) = found {
        argv[0] = found.to_string_lossy().into_owned();
    }
    argv
}

/// Zombie children of this process, from /proc (the container's own).
pub fn zombie_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // The command may contain spaces and parentheses; fields resume after the last ')'.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
            state == Some("Z") && ppid == Some(me)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_resolve_through_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let argv = resolve_argv0(vec!["sh".into(), "-c".into()], &env);
        assert!(argv[0].ends_with("/sh"), "{argv:?}");
        let argv = resolve_argv0(vec!["no-such-program-here".into()], &env);
        assert_eq!(argv[0], "no-such-program-here");
        let argv = resolve_argv0(vec!["/bin/app".into()], &env);
        assert_eq!(argv[0], "/bin/app");
        assert!(resolve_argv0(Vec::new(), &env).is_empty());
    }

    #[test]
    fn finds_a_zombie_child() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id() as i32;
        let mut seen = false;
        for _ in 0..200 {
            if zombie_children().contains(&pid) {
                seen = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.wait().expect("reap true");
        assert!(seen, "zombie {pid} not seen");
    }
}
