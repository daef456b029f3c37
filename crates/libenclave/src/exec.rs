//! What an exec into an enclave container can be: the enclave runtime starts the process from
//! the init-runelet, with the container's user and working directory, because the PAL API
//! carries neither. A request for another user or directory is refused rather than silently
//! run as the container's; a request for extra capabilities gets the container's.

use oci_spec::runtime::Process;

use crate::config::strip_settings;
use crate::error::EnclaveError;

/// Adapts `process` (from `rune exec` flags or `--process`) for the enclave of a container
/// whose own process is `container`.
pub fn adapt_exec_process(container: &Process, process: &mut Process) -> Result<(), EnclaveError> {
    let mut env = process.env().clone().unwrap_or_default();
    strip_settings(&mut env);
    process.set_env(Some(env));

    let (want, have) = (process.user(), container.user());
    if want.uid() != have.uid() || want.gid() != have.gid() {
        return Err(EnclaveError::Unsupported(format!(
            "exec as user {}:{} is not possible in an enclave container: its processes run as \
             the container's user {}:{}",
            want.uid(),
            want.gid(),
            have.uid(),
            have.gid()
        )));
    }
    if process.cwd() != container.cwd() {
        return Err(EnclaveError::Unsupported(format!(
            "exec in {} is not possible in an enclave container: its processes run in the \
             container's working directory {}",
            process.cwd().display(),
            container.cwd().display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(uid: u32, cwd: &str, env: &[&str]) -> Process {
        let mut p = Process::default();
        let mut user = p.user().clone();
        user.set_uid(uid);
        p.set_user(user);
        p.set_cwd(cwd.into());
        p.set_env(Some(env.iter().map(|s| s.to_string()).collect()));
        p
    }

    #[test]
    fn strips_settings_and_refuses_other_users_and_directories() {
        let container = process(0, "/", &[]);
        let mut exec = process(
            0,
            "/",
            &["A=1", "ENCLAVE_TYPE=software", "ENCLAVE_RUNTIME_PATH=/x"],
        );
        adapt_exec_process(&container, &mut exec).expect("same user and cwd");
        assert_eq!(exec.env().clone().unwrap_or_default(), vec!["A=1"]);

        let mut other_user = process(1000, "/", &[]);
        let err = adapt_exec_process(&container, &mut other_user).expect_err("other user");
        assert!(err.to_string().contains("1000"), "{err}");
        let mut other_cwd = process(0, "/tmp", &[]);
        assert!(adapt_exec_process(&container, &mut other_cwd).is_err());
    }
}
