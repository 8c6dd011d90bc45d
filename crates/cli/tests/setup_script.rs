//! `scripts/setup.sh` on a machine without Debian's or Python's package tools: it stops with
//! one line that says what is missing and how to give the files by path, not a shell error.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> aics_testkit::TempDir {
    aics_testkit::TempDir::new(&format!("setup-{name}"))
}

/// A copy of the scripts in a fresh "repository" at `root`, and a bin folder holding the
/// ordinary shell tools but neither apt-get, dpkg-deb, python3 nor pip.
fn sandbox(root: &Path) -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    for f in ["setup.sh", "fetch-assets.sh"] {
        std::fs::copy(repo.join("scripts").join(f), root.join("scripts").join(f)).unwrap();
    }
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tools = [
        "bash",
        "dirname",
        "basename",
        "rm",
        "mkdir",
        "cp",
        "mv",
        "mktemp",
        "cut",
        "id",
        "cat",
        "ls",
        "chmod",
        "chown",
        "sha256sum",
        "cargo",
    ];
    for t in tools {
        let found = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(t))
                    .find(|p| p.is_file())
            })
            .unwrap_or(None);
        if let Some(src) = found {
            std::os::unix::fs::symlink(src, bin.join(t)).unwrap();
        }
    }
    for t in ["apt-get", "dpkg-deb", "python3", "pip"] {
        assert!(!bin.join(t).exists());
    }
    bin
}

fn run_setup(root: &Path, bin: &Path) -> (bool, String) {
    let out = Command::new(bin.join("bash"))
        .arg(root.join("scripts/setup.sh"))
        .env("PATH", bin)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn setup_without_apt_or_pip_says_what_is_missing_in_one_line() {
    let root = tmp("no-tools");
    let bin = sandbox(&root);

    // no apt-get: Fashion-MNIST cannot be fetched
    let (ok, err) = run_setup(&root, &bin);
    assert!(!ok, "setup passed without apt-get: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{err}");
    let l = lines[0];
    assert!(
        l.contains("'apt-get' is not available")
            && l.contains("train-images-idx3-ubyte.gz")
            && l.contains(".cache/fashion-mnist")
            && l.contains("--dataset fashion-mnist:DIR"),
        "{l}"
    );

    // with the data set given by hand, the next step needs pip for the weights
    let fm = root.join(".cache/fashion-mnist");
    std::fs::create_dir_all(&fm).unwrap();
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::write(fm.join(f), b"x").unwrap();
    }
    let (ok, err) = run_setup(&root, &bin);
    assert!(!ok, "setup passed without python3: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{err}");
    assert!(
        lines[0].contains("'python3' is not available")
            && lines[0].contains("mobilenet_v2-b0353104.pth")
            && lines[0].contains("--weights"),
        "{}",
        lines[0]
    );
    assert!(!err.contains("command not found"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
