//! Unit tests of the occlum carrier (to be written).
#[allow(unused_imports)]
use crate::carrier::Tools;
#[test]
fn placeholder_uses_with_dir() {
    let _ = Tools::with_dir(std::path::PathBuf::from("/nonexistent"));
}
