//! Adds an rpath to the directory of libfwp found by fwp-sys (passed on as
//! `DEP_FWP_LIB_DIR` because fwp-sys declares `links = "fwp"`), so that this
//! crate's tests, doc tests and examples run without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_FWP_LIB_DIR");
    if let Ok(dir) = std::env::var("DEP_FWP_LIB_DIR") {
        let windows = std::env::var("CARGO_CFG_TARGET_OS").map(|os| os == "windows").unwrap_or(false);
        if !windows {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
