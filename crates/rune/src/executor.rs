//! Where libcontainer's container process differs from runc's, the difference is fixed here,
//! around whichever executor runs the workload (the default one, or an enclave's).

use std::collections::HashMap;

use caps::CapSet;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use nix::sys::signal::SigSet;
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
        self.0.validate(spec)
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        self.0.setup_envs(envs)
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // `rune exec` blocks signals before libcontainer clones the process, so that none is
        // lost; the process must not keep them blocked.
        let _ = SigSet::all().thread_unblock();
        self.0.exec(spec)
    }
}

fn drop_all_capabilities() -> Result<(), caps::errors::CapsError> {
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Bounding)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::clear(None, CapSet::Permitted)?;
    caps::clear(None, CapSet::Effective)
}
