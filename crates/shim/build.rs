// The shim is a long-lived process per container (or pod): link it as a fixed-address
// executable, so that the dynamic loader has no relocations to apply to its read-only data at
// start-up. A PIE's relocated `.data.rel.ro` pages become private dirty memory in every shim
// (about 350 KiB here).
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
