//! Builds the recording shim (`shim/recorder.c`) into a shared object that
//! the tests load into a child process with `LD_PRELOAD`, and tells the crate
//! where it is (`POWERLOSS_SHIM`).
//!
//! The shim is not linked into the crate: it must be a separate `.so` so that
//! the dynamic linker puts its `open`, `pwrite64`, `fsync`... in front of
//! libc's for the whole child process, SQLite's calls included.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=shim/recorder.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let shim = out.join("libpowerloss_recorder.so");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" {
        // Interposing libc with LD_PRELOAD is how Linux works; elsewhere the
        // tests skip themselves and the path below names no file.
        println!("cargo:rustc-env=POWERLOSS_SHIM={}", shim.display());
        return;
    }
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .opt_level(2)
        .get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-Wall", "-Wextra"])
        // The fortified `open` is an inline wrapper that would clash with
        // the shim's own definition.
        .arg("-U_FORTIFY_SOURCE")
        .arg("-o")
        .arg(&shim)
        .arg("shim/recorder.c")
        .args(["-ldl", "-lpthread"])
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("compiling shim/recorder.c failed ({s})"),
        Err(e) => panic!("could not run the C compiler for shim/recorder.c: {e}"),
    }
    println!("cargo:rustc-env=POWERLOSS_SHIM={}", shim.display());
}
