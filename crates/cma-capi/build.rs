//! libcma.so links the unwinder statically instead of needing libgcc_s.so.1.
//!
//! Every process that preloads libcma would otherwise load libgcc_s.so.1
//! too, and its constructor probes the processor with a run of `cpuid`
//! instructions, each a trap to the hypervisor on a virtual machine: about
//! 6% of `git --version`. Rust's std asks the linker for `-lgcc_s`; a
//! linker script of that name in a directory searched first answers with
//! the static `libgcc_eh.a` (built position-independent, as `gcc -shared
//! -static-libgcc` needs), whose symbols stay local to libcma.so (the
//! cdylib exports only its own C API).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !(target.contains("linux") && target.contains("gnu")) {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let script = out.join("libgcc_s.so");
    std::fs::write(&script, "INPUT(-lgcc_eh)\n").expect("write the libgcc_s linker script");
    println!("cargo:rustc-link-search=native={}", out.display());
}
