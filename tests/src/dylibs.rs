//! Builds the shared-library (cdylib) versions of the plugins, so that `cargo test` alone is
//! enough: no prior build step, no checked-in binaries.
//!
//! The build goes to its own target directory: the `cargo test` that runs us holds the lock on
//! the main one for as long as the tests run, and a nested build there would wait forever.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every crate built as a loadable library, by package name.
pub const PLUGIN_PACKAGES: &[&str] = &[
    "warren-plugin-direct",
    "warren-plugin-fanout",
    "warren-plugin-topic",
    "warren-plugin-headers",
    "warren-example-consistent-hash",
    "warren-fixture-panicking-plugin",
    "warren-fixture-wrong-major-plugin",
    "warren-fixture-no-entry-plugin",
    "warren-fixture-duplicate-name-a",
    "warren-fixture-duplicate-name-b",
];

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Builds every plugin library once per process (debug or release) and returns the
/// directory holding them. Panics with cargo's output if the build fails: every test that
/// loads a library depends on it.
pub fn build_all(release: bool) -> &'static Path {
    static DEBUG: OnceLock<PathBuf> = OnceLock::new();
    static RELEASE: OnceLock<PathBuf> = OnceLock::new();
    let cell = if release { &RELEASE } else { &DEBUG };
    cell.get_or_init(|| build(release))
}

fn build(release: bool) -> PathBuf {
    let root = workspace_root();
    let target_dir = root.join("target").join("plugin-dylibs");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .arg("build")
        .arg("--quiet")
        .arg("--target-dir")
        .arg(&target_dir);
    if release {
        command.arg("--release");
    }
    let features: Vec<String> = PLUGIN_PACKAGES
        .iter()
        .map(|p| format!("{p}/dylib"))
        .collect();
    for package in PLUGIN_PACKAGES {
        command.arg("-p").arg(package);
    }
    command.arg("--features").arg(features.join(","));
    let output = command
        .output()
        .expect("cargo can be run to build the plugin libraries");
    assert!(
        output.status.success(),
        "building the plugin libraries failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target_dir.join(if release { "release" } else { "debug" })
}

/// The file name of a package's library on this platform (`libwarren_plugin_topic.so`).
pub fn library_file_name(package: &str) -> String {
    let stem = package.replace('-', "_");
    format!(
        "{}{stem}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Path of one built library.
pub fn library(package: &str, release: bool) -> PathBuf {
    build_all(release).join(library_file_name(package))
}

/// A new directory holding the named packages' libraries: a plugins directory for one
/// scenario. Every call gets its own directory, and the libraries are hard links, never
/// copies written in place: a library that some test already loaded is mapped into this
/// process, and rewriting its file would pull the code out from under it.
pub fn plugins_dir(scenario: &str, packages: &[&str]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let unique = format!(
        "{}-{}-{scenario}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let dir = workspace_root()
        .join("target")
        .join("plugin-dirs")
        .join(unique);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scenario plugins dir can be created");
    for package in packages {
        let from = library(package, false);
        let to = dir.join(library_file_name(package));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)
                .unwrap_or_else(|e| panic!("copy {} failed: {e}", from.display()));
        }
    }
    dir
}

/// A registry holding only the built-in types, loaded from their release shared libraries:
/// the benchmarks' "dylib" side.
pub fn release_builtins() -> warren::plugin::ExchangeTypeRegistry {
    let mut registry = warren::plugin::ExchangeTypeRegistry::empty();
    for package in &PLUGIN_PACKAGES[..4] {
        registry
            .load_library(&library(package, true))
            .expect("release dylib loads");
    }
    registry
}
