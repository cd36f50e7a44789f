//! Finds libfwp and its header.
//!
//! The library is looked up, in order, in
//! 1. `FWP_LIB_DIR` (a directory holding libfwp.so / libfwp.dylib / fwp.lib),
//! 2. `pkg-config --variable=libdir fwp` (an installed libfwp),
//! 3. the project's CMake build directories `<repo>/build*/` (newest library wins),
//!
//! and the build fails with a message listing everything that was tried. The
//! directory is passed on to dependent crates as `DEP_FWP_LIB_DIR` (this crate
//! declares `links = "fwp"`), so their build scripts can add an rpath.
//!
//! The header (`FWP_INCLUDE_DIR`, then pkg-config's cflags, then `<repo>/include`)
//! is compiled into a small C program that prints every struct's size and field
//! offsets; the crate's `layout` test compares them with the Rust declarations.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FWP_LIB_DIR");
    println!("cargo:rerun-if-env-changed=FWP_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rustc-check-cfg=cfg(fwp_layout_probe)");

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    // bindings/rust/fwp-sys -> repository root
    let repo_root = manifest_dir.join("../../..");

    let lib_dir = find_library(&repo_root);
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=fwp");
    // Lets this crate's own tests run without LD_LIBRARY_PATH; dependents get
    // the directory through DEP_FWP_LIB_DIR.
    if !cfg!(windows) && env::var("CARGO_CFG_TARGET_OS").map(|os| os != "windows").unwrap_or(true) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    }
    println!("cargo:lib_dir={}", lib_dir.display());

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    match find_header(&repo_root).and_then(|inc| layout_probe(&inc, &out_dir)) {
        Ok(code) => {
            fs::write(out_dir.join("c_layout.rs"), code).expect("write c_layout.rs");
            println!("cargo:rustc-cfg=fwp_layout_probe");
        }
        Err(why) => {
            println!("cargo:warning=fwp-sys: the struct layout test is unavailable: {why}");
            let code = format!(
                "#[test]\nfn layout_matches_c() {{ panic!(\"the C layout probe could not run: {}\"); }}\n",
                why.replace('\\', "\\\\").replace('"', "\\\"")
            );
            fs::write(out_dir.join("c_layout.rs"), code).expect("write c_layout.rs");
        }
    }
}

fn library_file_names() -> &'static [&'static str] {
    if cfg!(target_os = "macos") {
        &["libfwp.dylib"]
    } else if cfg!(windows) {
        &["fwp.lib", "fwp.dll.a", "libfwp.dll.a"]
    } else {
        &["libfwp.so"]
    }
}

fn library_in(dir: &Path) -> Option<PathBuf> {
    library_file_names().iter().map(|n| dir.join(n)).find(|p| p.exists())
}

fn pkg_config(args: &[&str]) -> Result<String, String> {
    let output =
        Command::new("pkg-config").args(args).output().map_err(|e| format!("could not run pkg-config ({e})"))?;
    if !output.status.success() {
        return Err(format!(
            "`pkg-config {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn find_library(repo_root: &Path) -> PathBuf {
    let mut tried = Vec::new();

    if let Some(dir) = env::var_os("FWP_LIB_DIR") {
        let dir = PathBuf::from(dir);
        if let Some(lib) = library_in(&dir) {
            println!("cargo:rerun-if-changed={}", lib.display());
            return dir;
        }
        // An explicit setting that does not work is an error, not a hint.
        panic!("fwp-sys: FWP_LIB_DIR={} does not contain {}", dir.display(), library_file_names().join(" or "));
    }
    tried.push("FWP_LIB_DIR: not set".to_string());

    match pkg_config(&["--variable=libdir", "fwp"]) {
        Ok(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if let Some(lib) = library_in(&dir) {
                println!("cargo:rerun-if-changed={}", lib.display());
                return dir;
            }
            tried.push(format!("pkg-config: libdir {} holds no libfwp", dir.display()));
        }
        Ok(_) => tried.push("pkg-config: fwp.pc has no libdir".to_string()),
        Err(e) => tried.push(format!("pkg-config: {e}")),
    }

    // The project's own CMake build trees: <repo>/build*/libfwp.so (or lib/).
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir(repo_root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with("build") || !entry.path().is_dir() {
                continue;
            }
            for dir in [entry.path(), entry.path().join("lib")] {
                if let Some(lib) = library_in(&dir) {
                    let modified =
                        fs::metadata(&lib).and_then(|m| m.modified()).unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                    candidates.push((modified, dir));
                }
            }
        }
    }
    candidates.sort();
    if let Some((_, dir)) = candidates.pop() {
        if let Some(lib) = library_in(&dir) {
            println!("cargo:rerun-if-changed={}", lib.display());
        }
        return dir;
    }
    tried.push(format!("CMake build directories: no {}/build*/{{,lib/}}libfwp in {}", repo_root.display(), {
        let root = repo_root.canonicalize().unwrap_or_else(|_| repo_root.to_path_buf());
        root.display().to_string()
    }));

    panic!(
        "fwp-sys: libfwp was not found. Looked in:\n  - {}\nBuild the library (cmake --build <build dir> --target fwp) \
         or set FWP_LIB_DIR to the directory that holds it.",
        tried.join("\n  - ")
    );
}

fn find_header(repo_root: &Path) -> Result<PathBuf, String> {
    let has_header = |dir: &Path| dir.join("fwp").join("fwp.h").exists();
    if let Some(dir) = env::var_os("FWP_INCLUDE_DIR") {
        let dir = PathBuf::from(dir);
        return if has_header(&dir) {
            Ok(dir)
        } else {
            Err(format!("FWP_INCLUDE_DIR={} has no fwp/fwp.h", dir.display()))
        };
    }
    let in_repo = repo_root.join("include");
    if has_header(&in_repo) {
        println!("cargo:rerun-if-changed={}", in_repo.join("fwp").display());
        return Ok(in_repo);
    }
    if let Ok(flags) = pkg_config(&["--cflags-only-I", "fwp"]) {
        for flag in flags.split_whitespace() {
            if let Some(dir) = flag.strip_prefix("-I") {
                if has_header(Path::new(dir)) {
                    return Ok(PathBuf::from(dir));
                }
            }
        }
    }
    Err("fwp/fwp.h not found (set FWP_INCLUDE_DIR)".to_string())
}

/// The text of a public header with each `#include "fwp/X.h"` line replaced by
/// that header's text (once each), so the umbrella fwp.h reads as the whole API.
fn read_public_headers(path: &Path, seen: &mut Vec<PathBuf>) -> Result<String, String> {
    if seen.iter().any(|p| p == path) {
        return Ok(String::new());
    }
    seen.push(path.to_path_buf());
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = String::new();
    for line in text.lines() {
        let included = line
            .trim_start()
            .strip_prefix("#include \"fwp/")
            .and_then(|rest| rest.strip_suffix('"'));
        match included {
            Some(name) => out.push_str(&read_public_headers(&path.with_file_name(name), seen)?),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}

/// The struct definitions of the header: (name, [field names]).
fn header_structs(header: &str) -> Vec<(String, Vec<String>)> {
    // Drop comments first; the header's field comments contain ';'.
    let mut text = String::new();
    let mut rest = header;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map(|i| &after[i + 2..]).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map(|i| &after[i..]).unwrap_or("");
        } else {
            let c = rest.chars().next().unwrap();
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    let mut structs = Vec::new();
    let mut search = text.as_str();
    while let Some(pos) = search.find("typedef struct ") {
        search = &search[pos + "typedef struct ".len()..];
        let Some(brace) = search.find('{') else { break };
        let Some(semi) = search.find(';') else { break };
        if semi < brace {
            continue; // an opaque forward declaration
        }
        let name = search[..brace].trim().to_string();
        let Some(close) = search.find('}') else { break };
        let fields = search[brace + 1..close]
            .split(';')
            .filter_map(|decl| {
                let decl = decl.trim();
                if decl.is_empty() {
                    return None;
                }
                let decl = decl.split('[').next().unwrap().trim();
                let ident: String = decl
                    .chars()
                    .rev()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                Some(ident)
            })
            .collect();
        structs.push((name, fields));
        search = &search[close..];
    }
    structs
}

/// Compiles and runs a C program that prints the layout test as Rust code.
fn layout_probe(include_dir: &Path, out_dir: &Path) -> Result<String, String> {
    if env::var("TARGET").ok() != env::var("HOST").ok() {
        return Err("cross-compiling: the probe cannot run on the build machine".to_string());
    }
    let header = read_public_headers(&include_dir.join("fwp/fwp.h"), &mut Vec::new())?;
    let structs = header_structs(&header);
    if structs.is_empty() {
        return Err("no struct definitions found in fwp.h".to_string());
    }
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"fwp/fwp.h\"\nint main(void) {\n\
         puts(\"#[test]\\nfn layout_matches_c() {\");\n",
    );
    for (name, fields) in &structs {
        c.push_str(&format!(
            "printf(\"    assert_eq!(core::mem::size_of::<crate::{name}>(), %zu, \\\"size of {name}\\\");\\n\", sizeof({name}));\n"
        ));
        c.push_str(&format!(
            "printf(\"    assert_eq!(core::mem::align_of::<crate::{name}>(), %zu, \\\"alignment of {name}\\\");\\n\", _Alignof({name}));\n"
        ));
        for field in fields {
            c.push_str(&format!(
                "printf(\"    assert_eq!(core::mem::offset_of!(crate::{name}, {field}), %zu, \\\"offset of {name}.{field}\\\");\\n\", offsetof({name}, {field}));\n"
            ));
            c.push_str(&format!(
                "printf(\"    assert_eq!(crate::layout::field_size(|s: &crate::{name}| &s.{field}), %zu, \\\"size of {name}.{field}\\\");\\n\", sizeof((({name}*)0)->{field}));\n"
            ));
        }
    }
    for enum_name in enum_names(&header) {
        c.push_str(&format!(
            "printf(\"    assert_eq!(core::mem::size_of::<crate::{enum_name}>(), %zu, \\\"size of enum {enum_name}\\\");\\n\", sizeof({enum_name}));\n"
        ));
    }
    c.push_str("puts(\"}\");\nreturn 0;\n}\n");

    let src = out_dir.join("fwp_layout_probe.c");
    let exe = out_dir.join("fwp_layout_probe");
    fs::write(&src, c).map_err(|e| e.to_string())?;
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .arg("-std=c11")
        .arg("-I")
        .arg(include_dir)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .status()
        .map_err(|e| format!("could not run the C compiler `{cc}` ({e})"))?;
    if !status.success() {
        return Err(format!("`{cc}` failed to compile the layout probe"));
    }
    let output = Command::new(&exe).output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err("the layout probe failed".to_string());
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

/// Names of the `typedef enum name {...} name;` declarations.
fn enum_names(header: &str) -> Vec<String> {
    header
        .split("typedef enum ")
        .skip(1)
        .filter_map(|s| {
            let name: String = s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}
