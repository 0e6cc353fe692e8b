//! Hub downloads against a local stand-in for the Hub (plain HTTP on 127.0.0.1 answering as huggingface.co
//! does: commit and etag headers, ranged GETs): the cache layout diffusers shares, resuming a download cut
//! off half-way, timeouts on a server that never answers, and messages for missing and gated files.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wgsd::hub::download::Hub;

/// How the stand-in behaves.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Serve,
    /// Send only this many body bytes of a full download, then close.
    CutAfter(usize),
    /// Accept and never answer.
    Hang,
    Status(u16),
}

struct FakeHub {
    url: String,
    /// Every Range header received.
    ranges: Arc<Mutex<Vec<String>>>,
    mode: Arc<Mutex<Mode>>,
}

fn start(body: Vec<u8>) -> FakeHub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let mode = Arc::new(Mutex::new(Mode::Serve));
    let (r, m) = (ranges.clone(), mode.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (body, r, m) = (body.clone(), r.clone(), m.clone());
            std::thread::spawn(move || answer(stream, &body, &r, *m.lock().unwrap()));
        }
    });
    FakeHub { url, ranges, mode }
}

fn answer(mut stream: TcpStream, body: &[u8], ranges: &Mutex<Vec<String>>, mode: Mode) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = Some(v.trim().to_string());
        }
    }
    let range = range.unwrap_or_else(|| "0-".into());
    ranges.lock().unwrap().push(range.clone());
    match mode {
        Mode::Hang => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        Mode::Status(code) => {
            let _ = write!(stream, "HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        _ => {}
    }
    let (a, b) = range.split_once('-').unwrap();
    let start: usize = a.parse().unwrap();
    let end: usize = if b.is_empty() { body.len() - 1 } else { b.parse().unwrap() };
    let mut part = &body[start..=end];
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nx-repo-commit: c0ffee\r\netag: \"abc123\"\r\nContent-Range: bytes {start}-{end}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len(),
        part.len()
    );
    let _ = stream.write_all(head.as_bytes());
    if let Mode::CutAfter(n) = mode {
        if part.len() > 1 {
            part = &part[..n.min(part.len())];
        }
    }
    let _ = stream.write_all(part);
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-hubdl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn hub(url: &str, read_timeout: u64) -> Hub {
    Hub::new(url, None, Duration::from_secs(2), Duration::from_secs(read_timeout))
}

#[test]
fn downloads_land_in_the_shared_cache_layout_and_resume() {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let fake = start(body.clone());
    let cache = temp("cache");
    *fake.mode.lock().unwrap() = Mode::CutAfter(30_000);
    let e = hub(&fake.url, 5).download(&cache, "org/model", "unet/w.safetensors").unwrap_err().to_string();
    assert!(e.contains("run again to resume"), "{e}");
    let partial = cache.join("models--org--model/blobs/abc123.incomplete");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 30_000);

    *fake.mode.lock().unwrap() = Mode::Serve;
    let p = hub(&fake.url, 5).download(&cache, "org/model", "unet/w.safetensors").unwrap();
    assert_eq!(p, cache.join("models--org--model/snapshots/c0ffee/unet/w.safetensors"));
    assert_eq!(std::fs::read(&p).unwrap(), body);
    assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_symlink(), "snapshots link to blobs");
    assert_eq!(std::fs::read_to_string(cache.join("models--org--model/refs/main")).unwrap(), "c0ffee");
    assert!(!partial.exists());
    assert!(fake.ranges.lock().unwrap().contains(&"30000-".to_string()), "resumed from byte 30000: {:?}", fake.ranges.lock().unwrap());

    // Present and complete: only the metadata probe goes out.
    let before = fake.ranges.lock().unwrap().len();
    hub(&fake.url, 5).download(&cache, "org/model", "unet/w.safetensors").unwrap();
    assert_eq!(fake.ranges.lock().unwrap()[before..], ["0-0".to_string()]);
}

#[test]
fn a_server_that_never_answers_times_out() {
    let fake = start(vec![0; 10]);
    *fake.mode.lock().unwrap() = Mode::Hang;
    let t = Instant::now();
    let e = hub(&fake.url, 1).download(&temp("hang"), "org/model", "model_index.json").unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    assert!(e.contains("org/model/model_index.json") && e.contains("WGSD_HUB_READ_TIMEOUT"), "{e}");
}

#[test]
fn missing_and_gated_files_say_what_to_do() {
    let fake = start(vec![0; 10]);
    for (code, want) in [(404, "no such repository or file"), (401, "HF_TOKEN"), (403, "HF_TOKEN"), (500, "HTTP 500")] {
        *fake.mode.lock().unwrap() = Mode::Status(code);
        let e = hub(&fake.url, 5).download(&temp("status"), "org/model", "model_index.json").unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("org/model/model_index.json"), "{code}: {e}");
    }
    // Nothing listens here: a connection error, named.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let e = hub(&format!("http://{closed}"), 5).download(&temp("closed"), "org/model", "model_index.json").unwrap_err().to_string();
    assert!(e.contains("cannot download org/model/model_index.json"), "{e}");
}
