//! Downloading one file of a Hub repository into the Hugging Face cache, laid out as `huggingface_hub`
//! lays it out so diffusers and wgsd share it: `models--org--name/blobs/<etag>` holds the bytes,
//! `snapshots/<commit>/<file>` links to the blob, `refs/main` names the commit.
//!
//! Unlike a bare HTTP GET it never hangs and never starts over: connections and reads time out
//! (`WGSD_HUB_CONNECT_TIMEOUT` / `WGSD_HUB_READ_TIMEOUT`, seconds; 10 and 60 by default), the bytes go to
//! `blobs/<etag>.incomplete` and a later run resumes from where that file ends (HTTP Range), and each file
//! is announced with its size, large ones with a progress bar.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};

/// Files above this size get a progress bar (the configs and tokenizer files do not).
const PROGRESS_MIN: u64 = 4 << 20;

/// The Hub endpoint, credentials and timeouts.
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    /// Follows no redirect: the first answer carries the commit and etag headers.
    probe: ureq::Agent,
    /// Follows redirects (large files are served from a CDN).
    fetch: ureq::Agent,
}

/// What the Hub says about a file before it is downloaded.
struct Metadata {
    commit: String,
    etag: String,
    size: u64,
}

fn seconds(var: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

/// `1.6 GiB`, `492 MiB`, `12 KiB`.
pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.0} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.0} MiB", b / 1_048_576.0),
        _ => format!("{:.1} GiB", b / 1_073_741_824.0),
    }
}

impl Hub {
    /// `HF_ENDPOINT` (default https://huggingface.co) and `HF_TOKEN` (else the token file the Hugging Face
    /// CLI writes under `HF_HOME`).
    pub fn from_env(hf_home: Option<&Path>) -> Hub {
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
        let token = std::env::var("HF_TOKEN")
            .ok()
            .or_else(|| hf_home.and_then(|h| std::fs::read_to_string(h.join("token")).ok()))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        Hub::new(&endpoint, token, seconds("WGSD_HUB_CONNECT_TIMEOUT", 10), seconds("WGSD_HUB_READ_TIMEOUT", 60))
    }

    /// A Hub at `endpoint` with these timeouts.
    pub fn new(endpoint: &str, token: Option<String>, connect: Duration, read: Duration) -> Hub {
        let agent = |redirects: u32| {
            ureq::AgentBuilder::new()
                .timeout_connect(connect)
                .timeout_read(read)
                .redirects(redirects)
                .try_proxy_from_env(true)
                .user_agent(concat!("wgsd/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Hub { endpoint: endpoint.trim_end_matches('/').to_string(), token, probe: agent(0), fetch: agent(8) }
    }

    fn get(&self, agent: &ureq::Agent, url: &str, range: &str) -> ureq::Request {
        let mut r = agent.get(url).set("Range", range);
        if let Some(t) = &self.token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        r
    }

    /// Downloads `repo`'s `file` (revision main) into the cache rooted at `cache` unless it is there, and
    /// returns its snapshot path.
    pub fn download(&self, cache: &Path, repo: &str, file: &str) -> Result<PathBuf> {
        let url = format!("{}/{repo}/resolve/main/{file}", self.endpoint);
        let what = format!("{repo}/{file}");
        let meta = self.metadata(&url, &what)?;
        let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
        let blob = repo_dir.join("blobs").join(&meta.etag);
        let io = |e: std::io::Error, p: &Path| Error::usage(format!("cannot write the Hugging Face cache at {}: {e}", p.display()));
        std::fs::create_dir_all(repo_dir.join("blobs")).map_err(|e| io(e, &repo_dir))?;
        if std::fs::metadata(&blob).map(|m| m.len()).ok() != Some(meta.size) {
            self.download_blob(&url, &what, &blob, meta.size)?;
        }
        let pointer = repo_dir.join("snapshots").join(&meta.commit).join(file);
        let parent = pointer.parent().unwrap_or(&repo_dir);
        std::fs::create_dir_all(parent).map_err(|e| io(e, parent))?;
        link_blob(&blob, &pointer).map_err(|e| io(e, &pointer))?;
        std::fs::create_dir_all(repo_dir.join("refs")).map_err(|e| io(e, &repo_dir))?;
        std::fs::write(repo_dir.join("refs/main"), &meta.commit).map_err(|e| io(e, &repo_dir))?;
        Ok(pointer)
    }

    /// The commit, etag and size of a file: one ranged GET of its first byte, relative redirects followed
    /// by hand (the Hub's own answer has the headers; a CDN's does not), an absolute one only for the size.
    fn metadata(&self, url: &str, what: &str) -> Result<Metadata> {
        let mut current = url.to_string();
        for _ in 0..8 {
            let resp = self.call(self.get(&self.probe, &current, "bytes=0-0"), what)?;
            if (300..400).contains(&resp.status()) {
                let location = resp.header("Location").ok_or_else(|| bad_answer(what, "a redirect without a Location"))?.to_string();
                if location.starts_with('/') {
                    current = format!("{}{location}", self.endpoint);
                    continue;
                }
                let commit = resp.header("x-repo-commit").ok_or_else(|| bad_answer(what, "no x-repo-commit header"))?.to_string();
                let etag = resp.header("x-linked-etag").or(resp.header("etag")).ok_or_else(|| bad_answer(what, "no etag header"))?.replace('"', "");
                let sized = self.call(self.get(&self.fetch, &location, "bytes=0-0"), what)?;
                return Ok(Metadata { commit, etag, size: content_size(&sized, what)? });
            }
            let commit = resp.header("x-repo-commit").ok_or_else(|| bad_answer(what, "no x-repo-commit header"))?.to_string();
            let etag = resp.header("x-linked-etag").or(resp.header("etag")).ok_or_else(|| bad_answer(what, "no etag header"))?.replace('"', "");
            let size = content_size(&resp, what)?;
            return Ok(Metadata { commit, etag, size });
        }
        Err(bad_answer(what, "too many redirects"))
    }

    /// Calls, turning HTTP and transport failures into messages a user can act on.
    fn call(&self, req: ureq::Request, what: &str) -> Result<ureq::Response> {
        match req.call() {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(code, r)) if (300..400).contains(&code) => Ok(r),
            Err(ureq::Error::Status(code, _)) => Err(Error::usage(match code {
                401 | 403 => format!("cannot download {what}: HTTP {code} — a gated or private repository: accept its licence on huggingface.co and set HF_TOKEN"),
                404 => format!("cannot download {what}: HTTP 404 — no such repository or file (check the repo id, or pass a local diffusers folder)"),
                416 => format!("cannot download {what}: HTTP 416 — the server refused the byte range"),
                _ => format!("cannot download {what}: HTTP {code} from {}", self.endpoint),
            })),
            Err(ureq::Error::Transport(t)) => Err(Error::usage(format!(
                "cannot download {what}: {t} (no answer within the timeouts? WGSD_HUB_CONNECT_TIMEOUT / WGSD_HUB_READ_TIMEOUT set them in seconds; \
                 HF_HUB_OFFLINE=1 uses only the cache)"
            ))),
        }
    }

    /// Fetches the bytes into `<blob>.incomplete`, resuming from its end, then renames it to `blob`.
    /// A lock on the partial file keeps two wgsd runs from writing it at once.
    fn download_blob(&self, url: &str, what: &str, blob: &Path, size: u64) -> Result<()> {
        let partial = blob.with_extension("incomplete");
        let io = |e: std::io::Error| Error::usage(format!("cannot write {}: {e}", partial.display()));
        let mut file = OpenOptions::new().create(true).append(true).open(&partial).map_err(io)?;
        if file.try_lock().is_err() {
            return Err(Error::usage(format!("{what} is being downloaded by another process (lock on {})", partial.display())));
        }
        let mut have = file.metadata().map_err(io)?.len();
        if have > size {
            file.set_len(0).map_err(io)?;
            have = 0;
        }
        if have > 0 {
            eprintln!("downloading {what} ({}), resuming at {}", human_size(size), human_size(have));
        } else {
            eprintln!("downloading {what} ({})", human_size(size));
        }
        if have < size {
            let resp = self.call(self.get(&self.fetch, url, &format!("bytes={have}-")), what)?;
            // A server that ignores the range sends everything: start the file over.
            if have > 0 && resp.status() != 206 {
                file.set_len(0).map_err(io)?;
                have = 0;
            }
            let bar = (size >= PROGRESS_MIN).then(|| {
                let b = ProgressBar::new(size);
                b.set_style(
                    ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                b.set_message(what.to_string());
                b.set_position(have);
                b
            });
            copy_body(resp.into_reader(), &mut file, size - have, bar.as_ref(), what)?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        }
        file.sync_all().map_err(io)?;
        let got = file.metadata().map_err(io)?.len();
        if got != size {
            return Err(Error::usage(format!(
                "downloading {what}: got {} of {} bytes; run again to resume from {}",
                got,
                size,
                partial.display()
            )));
        }
        drop(file);
        std::fs::rename(&partial, blob).map_err(io)
    }
}

/// Copies at most `left` bytes, flushing as it goes so an interrupted run keeps what arrived.
fn copy_body(mut body: impl Read, file: &mut File, mut left: u64, bar: Option<&ProgressBar>, what: &str) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = body.read(&mut buf).map_err(|e| {
            Error::usage(format!("downloading {what}: {e}; what arrived is kept, run again to resume (WGSD_HUB_READ_TIMEOUT sets the read timeout)"))
        })?;
        if n == 0 {
            break;
        }
        let n = n.min(left as usize);
        file.write_all(&buf[..n]).map_err(|e| Error::usage(format!("downloading {what}: cannot write: {e}")))?;
        left -= n as u64;
        if let Some(b) = bar {
            b.inc(n as u64);
        }
    }
    file.flush().map_err(|e| Error::usage(format!("downloading {what}: cannot write: {e}")))
}

fn bad_answer(what: &str, why: &str) -> Error {
    Error::usage(format!("cannot download {what}: the Hub's answer is not usable ({why})"))
}

/// The total size from `Content-Range: bytes 0-0/SIZE`, or `Content-Length` when the range was ignored.
fn content_size(resp: &ureq::Response, what: &str) -> Result<u64> {
    if let Some(cr) = resp.header("Content-Range") {
        return cr.rsplit('/').next().and_then(|s| s.trim().parse().ok()).ok_or_else(|| bad_answer(what, "a bad Content-Range"));
    }
    resp.header("Content-Length").and_then(|s| s.trim().parse().ok()).ok_or_else(|| bad_answer(what, "no Content-Range or Content-Length"))
}

/// `snapshots/<commit>/<file>` → `blobs/<etag>`: a relative symlink where possible, else a copy.
fn link_blob(blob: &Path, pointer: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(pointer);
    #[cfg(unix)]
    {
        let depth = pointer.strip_prefix(blob.parent().and_then(Path::parent).unwrap_or(Path::new(""))).map(|p| p.components().count()).unwrap_or(0);
        let mut rel = PathBuf::new();
        for _ in 1..depth {
            rel.push("..");
        }
        rel.push("blobs");
        rel.push(blob.file_name().unwrap_or_default());
        if std::os::unix::fs::symlink(&rel, pointer).is_ok() {
            return Ok(());
        }
    }
    std::fs::copy(blob, pointer).map(|_| ())
}
