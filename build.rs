//! Link options for the binaries.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Relative relocations packed (DT_RELR, glibc 2.36+, binutils 2.38+): the position-
    // independent binary has ~34,000 of them, an 810 KB table the loader reads, and keeps
    // resident, at every start; packed it is a few KB. Idle RSS and start-up both shrink.
    if std::env::var("TARGET").is_ok_and(|t| t.ends_with("-linux-gnu")) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
