//! Where libcontainer's container process differs from runc's, the difference is fixed here,
//! around whichever executor runs the workload (the default one, or an enclave's).

use std::collections::HashMap;

use caps::CapSet;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use nix::sys::signal::{SigHandler, SigSet, Signal};
use oci_spec::runtime::Spec;

#[derive(Clone)]
pub struct RuncParity<E>(pub E);

impl<E: Executor + Clone + 'static> Executor for RuncParity<E> {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        // runc gives a process whose config lists no capabilities none at all; libcontainer
        // leaves it every capability it had.
        let no_capabilities = spec
            .process()
            .as_ref()
            .is_some_and(|p| p.capabilities().is_none());
        if no_capabilities {
            drop_all_capabilities().map_err(|e| {
                ExecutorValidationError::ArgValidationError(format!(
                    "cannot drop capabilities: {e}"
                ))
            })?;
        }
        match without_path(spec) {
            // runc looks an absolute program up without PATH; libcontainer's check insists on
            // a PATH entry (images built FROM scratch often have none). An empty one makes
            // its lookup runc's: a path is taken as it is, a bare name is not found.
            Some(with_empty) => self.0.validate(&with_empty),
            None => self.0.validate(spec),
        }
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        self.0.setup_envs(envs)
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // `rune exec` blocks signals before libcontainer clones the process, so that none is
        // lost; the process must not keep them blocked.
        let _ = SigSet::all().thread_unblock();
        // A workload started by runc never inherits an ignored SIGHUP or SIGINT (runc's Go
        // runtime takes them over to forward them, which un-ignores them), so a container run
        // under nohup can still trap HUP. Other ignored signals stay ignored, as with runc.
        for signal in [Signal::SIGHUP, Signal::SIGINT] {
            // SAFETY: SIG_DFL installs no handler; this single-threaded process execs next.
            let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        }
        self.0.exec(spec)
    }
}

/// `spec` with an empty `PATH=` added to its process environment, when it has none.
fn without_path(spec: &Spec) -> Option<Spec> {
    let process = spec.process().as_ref()?;
    let env = process.env().clone().unwrap_or_default();
    if env.iter().any(|e| e.starts_with("PATH=")) {
        return None;
    }
    let mut process = process.clone();
    let mut env = env;
    env.push("PATH=".to_string());
    process.set_env(Some(env));
    let mut spec = spec.clone();
    spec.set_process(Some(process));
    Some(spec)
}

fn drop_all_capabilities() -> Result<(), caps::errors::CapsError> {
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Bounding)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::clear(None, CapSet::Permitted)?;
    caps::clear(None, CapSet::Effective)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::ProcessBuilder;

    fn spec(env: &[&str]) -> Spec {
        let mut spec = Spec::default();
        spec.set_process(Some(
            ProcessBuilder::default()
                .args(vec!["/pause".to_string()])
                .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .build()
                .unwrap(),
        ));
        spec
    }

    #[test]
    fn a_missing_path_is_validated_as_an_empty_one() {
        let fixed = without_path(&spec(&["A=1"])).unwrap();
        let env = fixed.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, ["A=1", "PATH="]);
        assert!(without_path(&spec(&["PATH=/bin", "A=1"])).is_none());
    }
}
