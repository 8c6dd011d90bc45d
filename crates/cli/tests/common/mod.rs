//! Helpers the CLI's end-to-end tests share: run the binary, expect success or one clear error
//! line, and a fresh temporary folder.

#![allow(dead_code)]

pub use aics_testkit::TempDir;
use std::process::{Command, Output};

/// Run `aics` with `args`.
pub fn aics(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aics"))
        .args(args)
        .output()
        .expect("run aics")
}

/// The stdout of a run that must succeed.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "aics failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error line of a run that must fail: non-zero exit, no panic, one line starting `error:`.
pub fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!e.contains("panicked"), "panic: {e}");
    assert_eq!(e.lines().count(), 1, "error should be one line: {e}");
    assert!(e.starts_with("error:"), "{e}");
    e
}

/// A fresh folder under the system's temporary folder, deleted when the test is done with it.
pub fn tmp(name: &str) -> TempDir {
    TempDir::new(&format!("cli-{name}"))
}
