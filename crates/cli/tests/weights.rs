//! `aics weights fetch` against a local HTTP server (no network): the hash in the file name is
//! checked, a good file is cached and reused, and a bad or missing one leaves nothing behind.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Serve `body` for every GET of `/models/NAME` (404 for other paths); returns the base URL and
/// a request counter.
fn serve(name: &'static str, body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/models", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut line = String::new();
            let mut r = BufReader::new(s.try_clone().unwrap());
            if r.read_line(&mut line).is_err() {
                continue;
            }
            // skip the headers
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
            }
            h.fetch_add(1, Ordering::SeqCst);
            let want = format!("GET /models/{name} ");
            if line.starts_with(&want) {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(&body);
            } else {
                let _ = write!(
                    s,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        }
    });
    (base, hits)
}

fn fetch(model: &str, base: &str, cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aics"))
        .args(["weights", "fetch", model, "--base-url", base])
        .env("XDG_CACHE_HOME", cache)
        .output()
        .unwrap()
}

fn tmp(name: &str) -> aics_testkit::TempDir {
    aics_testkit::TempDir::new(&format!("weights-{name}"))
}

#[test]
fn corrupt_download_is_rejected_and_not_cached() {
    let (base, _) = serve(
        "resnet18-f37072fd.pth",
        b"not the published weights".to_vec(),
    );
    let cache = tmp("corrupt");
    let out = fetch("resnet18", &base, &cache);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("SHA-256") && err.contains("f37072fd"), "{err}");
    let dir = cache.join("aics/weights");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

#[test]
fn missing_file_and_unreachable_server_name_the_address() {
    let (base, _) = serve("something-else.pth", vec![]);
    let cache = tmp("missing");
    let out = fetch("vgg16", &base, &cache);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("vgg16-397923af.pth") && err.contains("404") && err.contains("--weights"),
        "{err}"
    );
    // a port nobody listens on
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/models", l.local_addr().unwrap());
    drop(l);
    let out = fetch("vgg16", &dead, &cache);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&dead) && err.contains("--weights"),
        "{err}"
    );
}

/// The real MobileNetV2 file (fetched by `scripts/setup.sh`) has the SHA-256 its name
/// promises: it is cached, then reused without another request.
#[test]
#[ignore = "needs the fetched assets: bash scripts/setup.sh"]
fn good_download_is_cached_and_reused() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let real = root.join(".cache/weights/mobilenet_v2-b0353104.pth");
    let body = std::fs::read(&real).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: this test needs the fetched assets (bash scripts/setup.sh)",
            real.display()
        )
    });
    let (base, hits) = serve("mobilenet_v2-b0353104.pth", body.clone());
    let cache = tmp("good");
    let out = fetch("mobilenet_v2", &base, &cache);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = cache.join("aics/weights/mobilenet_v2-b0353104.pth");
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        path.to_str().unwrap()
    );
    let out = fetch("mobilenet_v2", &base, &cache);
    assert!(out.status.success());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the second fetch used the cache"
    );
}
