//! `aics weights`: list, locate and download torchvision's published ImageNet weights.
//!
//! Files go to `$XDG_CACHE_HOME/aics/weights` (or `~/.cache/aics/weights`), are checked against
//! the SHA-256 prefix in their name before they are kept, and are reused once there. The
//! download goes to a temporary file that is renamed into place only after the check, so an
//! interrupted or corrupt download never looks like a cached file.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aics_vision::weights::{hash_prefix, published_file, PUBLISHED, TORCHVISION_BASE_URL};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

#[derive(clap::Args, Debug)]
pub struct WeightsArgs {
    #[command(subcommand)]
    pub cmd: WeightsCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum WeightsCmd {
    /// The models with published weights, and whether each is in the cache.
    List,
    /// Download a model's published weights into the cache (reused if already there).
    Fetch {
        /// Zoo model name (see `aics weights list`).
        model: String,
        /// Base address to download from instead of torchvision's.
        #[arg(long, env = "AICS_WEIGHTS_URL", default_value = TORCHVISION_BASE_URL)]
        base_url: String,
    },
    /// Print the cached weights file of a model.
    Path { model: String },
}

/// `$XDG_CACHE_HOME/aics/weights`, else `~/.cache/aics/weights`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("aics").join("weights")
}

/// The cached weights of `model`, if they have been fetched.
pub fn cached(model: &str) -> Option<PathBuf> {
    let p = cache_dir().join(published_file(model)?);
    p.is_file().then_some(p)
}

pub fn run(a: WeightsArgs) -> Result<()> {
    match a.cmd {
        WeightsCmd::List => {
            for (model, file) in PUBLISHED {
                let state = match cached(model) {
                    Some(p) => format!("cached: {}", p.display()),
                    None => "not fetched".into(),
                };
                println!("{model:<38} {file:<52} {state}");
            }
            Ok(())
        }
        WeightsCmd::Path { model } => {
            let file = file_for(&model)?;
            let p = cache_dir().join(file);
            if !p.is_file() {
                bail!(
                    "{}: not fetched; run `aics weights fetch {model}`",
                    p.display()
                );
            }
            println!("{}", p.display());
            Ok(())
        }
        WeightsCmd::Fetch { model, base_url } => {
            let p = fetch(&model, &base_url)?;
            println!("{}", p.display());
            Ok(())
        }
    }
}

fn file_for(model: &str) -> Result<&'static str> {
    published_file(model).with_context(|| {
        let names: Vec<&str> = PUBLISHED.iter().map(|(m, _)| *m).collect();
        format!(
            "no published weights for `{model}` (available: {})",
            names.join(", ")
        )
    })
}

/// Download (or find in the cache) the published weights of `model`.
pub fn fetch(model: &str, base_url: &str) -> Result<PathBuf> {
    let file = file_for(model)?;
    let dir = cache_dir();
    let dest = dir.join(file);
    if dest.is_file() {
        eprintln!("{}: already in the cache", dest.display());
        return Ok(dest);
    }
    fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let url = format!("{}/{file}", base_url.trim_end_matches('/'));
    let tmp = dir.join(format!(".{file}.part"));
    let result = download(&url, &tmp).and_then(|digest| {
        let want = hash_prefix(file).unwrap_or("");
        if !digest.starts_with(want) {
            bail!("{url}: SHA-256 {digest} does not start with {want}, the hash in the file name; the download is corrupt or not the published file");
        }
        fs::rename(&tmp, &dest)
            .with_context(|| format!("{}: cannot move into place", dest.display()))
    });
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(dest)
}

/// Stream `url` into `tmp` (fsynced) with a progress bar; returns the SHA-256 as hex.
fn download(url: &str, tmp: &Path) -> Result<String> {
    let resp = ureq::get(url).call().map_err(|e| {
        let why = match e {
            ureq::Error::Status(code, _) => format!("HTTP status {code}"),
            ureq::Error::Transport(t) => match t.message() {
                Some(m) => format!("{}: {m}", t.kind()),
                None => t.kind().to_string(),
            },
        };
        anyhow::anyhow!(
            "could not download {url} ({why}); download that file by other means and pass it with --weights PATH"
        )
    })?;
    let len = resp
        .header("Content-Length")
        .and_then(|v| v.parse::<u64>().ok());
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
    let mut reader = resp.into_reader();
    let mut out =
        fs::File::create(tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("{url}: download interrupted after {total} bytes"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("{}: write failed", tmp.display()))?;
        total += n as u64;
        pb.set_position(total);
    }
    if let Some(n) = len {
        if total != n {
            bail!("{url}: download ended after {total} of {n} bytes");
        }
    }
    out.sync_all()
        .with_context(|| format!("{}: sync failed", tmp.display()))?;
    pb.finish_and_clear();
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
