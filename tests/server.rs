//! `wgsd serve` end to end: the binary is started on the tiny fixture models on a free loopback port and
//! driven over HTTP — every endpoint, images equal to `wgsd generate`'s for the same settings, the queue
//! under concurrent clients, interrupt and skip, a full queue, clients that leave, auth, limits, bad
//! input, SIGTERM — and by the `webuiapi` Python client where it is installed (the test says SKIPPED
//! plainly where it is not). Without the fixtures each test prints SKIPPED.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

fn wgsd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgsd"));
    c.env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()));
    c
}

fn tiny(name: &str) -> Option<PathBuf> {
    wgsd::testing::tiny_model(name).map(|p| p.canonicalize().unwrap())
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgsd-server-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A running `wgsd serve`, killed when dropped; its log is kept for failure messages.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = wgsd()
            .arg("serve")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wgsd serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut log = l.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("the server did not start:\n{}", log.lock().unwrap());
            }
        };
        Server { child, base: format!("http://{addr}"), log }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn get(&self, path: &str) -> Reply {
        call("GET", &self.url(path), None, &[])
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        call("POST", &self.url(path), Some(&body.to_string()), &[])
    }

    /// POST that must succeed; returns the JSON.
    fn ok(&self, path: &str, body: &Value) -> Value {
        let r = self.post(path, body);
        assert_eq!(r.status, 200, "POST {path} {body}: {} {}\n{}", r.status, r.body, self.log());
        r.body
    }

    /// Polls GET `path` until `done` holds (10 s at most).
    fn wait_for(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) {
        let t = Instant::now();
        loop {
            let r = self.get(path);
            if done(&r.body) {
                return;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "timed out waiting for {what}: last {path} = {}", r.body);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn detail(&self) -> String {
        self.body["detail"].as_str().unwrap_or("").to_string()
    }
}

fn call(method: &str, url: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Reply {
    call_with(ureq::AgentBuilder::new().timeout(Duration::from_secs(600)).build(), method, url, body, headers)
}

fn call_with(agent: ureq::Agent, method: &str, url: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent.request(method, url).set("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match body {
        Some(b) => req.send_string(b),
        None => req.call(),
    };
    let resp = match resp {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Reply { status: 0, body: json!(e.to_string()), headers: vec![] },
    };
    let status = resp.status();
    let headers = resp.headers_names().iter().map(|h| (h.clone(), resp.header(h).unwrap_or("").to_string())).collect();
    let text = resp.into_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, body, headers }
}

/// A decoded PNG: RGB bytes and its `parameters` text.
fn png(bytes: &[u8]) -> (Vec<u8>, String) {
    let mut r = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let params = r
        .info()
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == "parameters")
        .map(|t| t.text.clone())
        .or_else(|| r.info().utf8_text.iter().find(|t| t.keyword == "parameters").and_then(|t| t.get_text().ok()))
        .unwrap_or_default();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (buf, params)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The images of an A1111 response, decoded.
fn images(resp: &Value) -> Vec<(Vec<u8>, String)> {
    resp["images"].as_array().unwrap().iter().map(|i| png(&base64::engine::general_purpose::STANDARD.decode(i.as_str().unwrap()).unwrap())).collect()
}

fn info(resp: &Value) -> Value {
    serde_json::from_str(resp["info"].as_str().expect("info is a JSON string")).unwrap()
}

/// Runs a `wgsd` generating command into `dir` and returns its images (`n` numbered files when n > 1).
fn cli(dir: &Path, name: &str, n: usize, args: &[&str]) -> Vec<(Vec<u8>, String)> {
    let out = dir.join(format!("{name}.png"));
    let o = wgsd().args(args).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "wgsd {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    let files = if n == 1 { vec![out] } else { (1..=n).map(|i| dir.join(format!("{name}-{i}.png"))).collect() };
    files.iter().map(|f| png(&std::fs::read(f).unwrap())).collect()
}

fn assert_same(server: &[(Vec<u8>, String)], cli: &[(Vec<u8>, String)], what: &str) {
    assert_eq!(server.len(), cli.len(), "{what}: image count");
    for (i, (s, c)) in server.iter().zip(cli).enumerate() {
        assert_eq!(s.1, c.1, "{what}: image {i}: the infotext differs from wgsd generate's");
        assert!(s.0 == c.0, "{what}: image {i}: the pixels differ from wgsd generate's");
    }
}

/// txt2img, img2img and inpainting (4- and 9-channel) give exactly `wgsd generate`'s pixels and
/// infotexts for the same settings; batches and n_iter follow the CLI's seeds; seed −1 reports the seed it
/// used, which reproduces the image; A1111 sampler display names with the Karras scheduler work.
#[test]
fn images_equal_the_command_line() {
    let (Some(sd15), Some(_)) = (tiny("sd15"), tiny("sd15-inpaint")) else { return };
    let fixtures = sd15.parent().unwrap().to_path_buf();
    let dir = temp_dir("equal");
    let s = Server::start(&["--model", sd15.to_str().unwrap(), "--models-dir", fixtures.to_str().unwrap()]);
    let m = sd15.to_str().unwrap();

    // txt2img, 2 batches of 2.
    let r = s.ok("/sdapi/v1/txt2img", &json!({"prompt": "a red fox", "negative_prompt": "blurry", "seed": 42, "steps": 2, "width": 64,
        "height": 64, "cfg_scale": 7, "sampler_name": "Euler a", "batch_size": 2, "n_iter": 2, "some_client_field": {"x": 1}}));
    let want = cli(&dir, "t", 4, &["generate", "--model", m, "--prompt", "a red fox", "--negative-prompt", "blurry", "--seed", "42", "--steps", "2",
        "--width", "64", "--height", "64", "--cfg-scale", "7", "--sampler", "euler_a", "--n-images", "4", "--batch", "2"]);
    assert_same(&images(&r), &want, "txt2img batch");
    let i = info(&r);
    assert_eq!(i["all_seeds"], json!([42, 42, 44, 44]), "{i}");
    assert_eq!(i["infotexts"].as_array().unwrap().len(), 4);
    assert!(i["infotexts"][0].as_str().unwrap().contains("Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64, Model: sd15"), "{i}");
    assert_eq!(r["parameters"]["prompt"], "a red fox");

    // DPM++ 2M with the Karras scheduler = --sampler dpmpp_2m --karras.
    let r = s.ok("/sdapi/v1/txt2img", &json!({"prompt": "a fox", "seed": 7, "steps": 2, "width": 64, "height": 64, "sampler_name": "DPM++ 2M", "scheduler": "Karras"}));
    let want = cli(&dir, "k", 1, &["generate", "--model", m, "--prompt", "a fox", "--seed", "7", "--steps", "2", "--width", "64", "--height", "64",
        "--cfg-scale", "7", "--sampler", "dpmpp_2m", "--karras"]);
    assert_same(&images(&r), &want, "DPM++ 2M Karras");
    assert!(want[0].1.contains("Sampler: DPM++ 2M Karras"));
    // A1111's older one-name form.
    let r = s.ok("/sdapi/v1/txt2img", &json!({"prompt": "a fox", "seed": 7, "steps": 2, "width": 64, "height": 64, "sampler_name": "DPM++ 2M Karras"}));
    assert_same(&images(&r), &want, "DPM++ 2M Karras as one name");
    assert_eq!(info(&r)["scheduler"], "Karras");

    // Seed -1: a random seed, reported; asking for it again gives the same pixels.
    let a = s.ok("/sdapi/v1/txt2img", &json!({"prompt": "x", "seed": -1, "steps": 1, "width": 64, "height": 64}));
    let seed = info(&a)["seed"].as_u64().expect("the seed used");
    assert_eq!(info(&a)["all_seeds"][0].as_u64(), Some(seed));
    let b = s.ok("/sdapi/v1/txt2img", &json!({"prompt": "x", "seed": seed, "steps": 1, "width": 64, "height": 64}));
    assert_same(&images(&a), &images(&b), "seed -1 then its seed");

    // img2img (data: URL prefix accepted), resized to the requested size like --width/--height.
    let init = std::fs::read(fixtures.join("init.png")).unwrap();
    let mask = std::fs::read(fixtures.join("mask.png")).unwrap();
    let r = s.ok("/sdapi/v1/img2img", &json!({"init_images": [format!("data:image/png;base64,{}", b64(&init))], "prompt": "a fox", "seed": 3,
        "steps": 4, "width": 64, "height": 64, "denoising_strength": 0.6, "sampler_name": "Euler"}));
    let want = cli(&dir, "i", 1, &["img2img", "--model", m, "--image", fixtures.join("init.png").to_str().unwrap(), "--strength", "0.6",
        "--prompt", "a fox", "--seed", "3", "--steps", "4", "--width", "64", "--height", "64", "--cfg-scale", "7", "--sampler", "euler"]);
    assert_same(&images(&r), &want, "img2img");
    assert!(r["parameters"]["init_images"].is_null(), "init images are not echoed back unless asked");

    // A mask on a 4-channel model: blended inpainting.
    let r = s.ok("/sdapi/v1/img2img", &json!({"init_images": [b64(&init)], "mask": b64(&mask), "prompt": "a fox", "seed": 5, "steps": 3,
        "width": 64, "height": 64, "denoising_strength": 0.8, "sampler_name": "DDIM", "mask_blur": 4, "inpaint_full_res": true}));
    let want = cli(&dir, "p", 1, &["inpaint", "--model", m, "--image", fixtures.join("init.png").to_str().unwrap(), "--mask",
        fixtures.join("mask.png").to_str().unwrap(), "--strength", "0.8", "--prompt", "a fox", "--seed", "5", "--steps", "3", "--width", "64",
        "--height", "64", "--cfg-scale", "7", "--sampler", "ddim"]);
    assert_same(&images(&r), &want, "inpaint (4-channel)");

    // The 9-channel inpainting model, picked for this request by override_settings (the server's
    // checkpoint stays sd15 afterwards).
    let r = s.ok("/sdapi/v1/img2img", &json!({"init_images": [b64(&init)], "mask": b64(&mask), "prompt": "a fox", "seed": 5, "steps": 2,
        "width": 64, "height": 64, "denoising_strength": 1.0, "override_settings": {"sd_model_checkpoint": "sd15-inpaint"}}));
    let want = cli(&dir, "q", 1, &["inpaint", "--model", fixtures.join("sd15-inpaint").to_str().unwrap(), "--image",
        fixtures.join("init.png").to_str().unwrap(), "--mask", fixtures.join("mask.png").to_str().unwrap(), "--strength", "1",
        "--prompt", "a fox", "--seed", "5", "--steps", "2", "--width", "64", "--height", "64", "--cfg-scale", "7"]);
    assert_same(&images(&r), &want, "inpaint (9-channel, override_settings)");
    assert!(info(&r)["is_using_inpainting_conditioning"].as_bool().unwrap());
    assert_eq!(s.get("/sdapi/v1/options").body["sd_model_checkpoint"], "sd15");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The listing endpoints, switching checkpoints by `options`, CLIP skip, every listed sampler and
/// scheduler accepted by name, LoRA tags found in --lora-dir (and equal to the CLI's), embeddings, png-info.
#[test]
fn endpoints_models_samplers_loras_embeddings_pnginfo() {
    let (Some(sd15), Some(train)) = (tiny("sd15"), wgsd::testing::train_fixtures()) else { return };
    let fixtures = sd15.parent().unwrap().to_path_buf();
    let dir = temp_dir("endpoints");
    let loras = dir.join("loras/sub");
    std::fs::create_dir_all(&loras).unwrap();
    std::fs::copy(train.join("lora_sd15.safetensors"), loras.join("style.safetensors")).unwrap();
    std::fs::write(dir.join("secret.safetensors"), b"outside the LoRA folder").unwrap();
    // A symbolic link inside the folder that leads out of it is neither listed nor loaded.
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.join("secret.safetensors"), dir.join("loras/evil.safetensors")).unwrap();
    let embs = dir.join("embs");
    std::fs::create_dir_all(&embs).unwrap();
    let width = 32;
    for (name, w) in [("wgsdfox", width), ("other_family", width * 2)] {
        let t = wgsd::train::save::HostTensor { name: "emb_params".into(), shape: vec![2, w], values: vec![0.01; 2 * w] };
        std::fs::write(embs.join(format!("{name}.safetensors")), wgsd::train::save::safetensors_bytes(&[t], None).unwrap()).unwrap();
    }
    let s = Server::start(&["--model", sd15.to_str().unwrap(), "--models-dir", fixtures.to_str().unwrap(), "--lora-dir",
        dir.join("loras").to_str().unwrap(), "--embeddings-dir", embs.to_str().unwrap()]);

    let h = s.get("/health");
    assert_eq!((h.status, h.body["status"].as_str()), (200, Some("ok")));
    let models = s.get("/sdapi/v1/sd-models").body;
    let titles: Vec<&str> = models.as_array().unwrap().iter().map(|m| m["title"].as_str().unwrap()).collect();
    for want in ["sd15", "sd15-inpaint", "sd2", "sd2-depth"] {
        assert!(titles.contains(&want), "{titles:?}");
    }
    assert!(models[0].get("model_name").is_some() && models[0].get("hash").is_some() && models[0].get("filename").is_some());

    // Switch to sd2 and back; generation follows the option.
    assert_eq!(s.post("/sdapi/v1/options", &json!({"sd_model_checkpoint": "sd2", "some_ui_option": true})).status, 200);
    let o = s.get("/sdapi/v1/options").body;
    assert_eq!((o["sd_model_checkpoint"].as_str(), o["some_ui_option"].as_bool()), (Some("sd2"), Some(true)));
    let r = s.ok("/sdapi/v1/txt2img", &json!({"prompt": "x", "steps": 1, "width": 64, "height": 64, "seed": 1}));
    assert!(images(&r)[0].1.contains("Model: sd2"), "{}", images(&r)[0].1);
    let bad = s.post("/sdapi/v1/options", &json!({"sd_model_checkpoint": "../sd2"}));
    assert_eq!(bad.status, 404, "{}", bad.body);
    assert_eq!(s.post("/sdapi/v1/options", &json!({"sd_model_checkpoint": "sd15", "CLIP_stopat_last_layers": 2})).status, 200);
    let r = s.ok("/sdapi/v1/txt2img", &json!({"prompt": "x", "steps": 1, "width": 64, "height": 64, "seed": 1}));
    assert!(images(&r)[0].1.contains("Model: sd15") && images(&r)[0].1.contains("Clip skip: 2"), "{}", images(&r)[0].1);
    assert_eq!(s.post("/sdapi/v1/options", &json!({"CLIP_stopat_last_layers": 1})).status, 200);

    // Every sampler `samplers` lists, by its display name, with every scheduler it takes.
    let samplers = s.get("/sdapi/v1/samplers").body;
    let names: Vec<String> = samplers.as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect();
    for want in ["Euler a", "Euler", "DPM++ 2M", "DDIM", "UniPC"] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    assert!(samplers[0]["aliases"].is_array() && samplers[0]["options"].is_object());
    let scheds = s.get("/sdapi/v1/schedulers").body;
    let labels: Vec<&str> = scheds.as_array().unwrap().iter().map(|x| x["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["Automatic", "Karras"]);
    for key in ["name", "aliases", "default_rho", "need_inner_model"] {
        assert!(scheds[0].get(key).is_some(), "{key}");
    }
    for name in &names {
        for sched in ["Automatic", "Karras"] {
            let r = s.post("/sdapi/v1/txt2img", &json!({"prompt": "x", "steps": 2, "width": 64, "height": 64, "seed": 1, "sampler_name": name, "scheduler": sched}));
            let karras_ok = wgsd::schedulers::parse_a1111(name).unwrap().0.karras_ok;
            if sched == "Karras" && !karras_ok {
                assert_eq!(r.status, 400, "{name} {sched}: {}", r.body);
                assert!(r.detail().contains("Karras"), "{}", r.detail());
            } else {
                assert_eq!(r.status, 200, "{name} {sched}: {}", r.body);
                let want = if sched == "Karras" { format!("Sampler: {name} Karras,") } else { format!("Sampler: {name},") };
                assert!(images(&r.body)[0].1.contains(&want), "{name}: {}", images(&r.body)[0].1);
            }
        }
    }

    // LoRAs: listed; a tag merges it exactly as the CLI does; names cannot leave the folder.
    let l = s.get("/sdapi/v1/loras").body;
    assert_eq!(l, json!([{"name": "style", "alias": "style", "path": "sub/style.safetensors", "metadata": {}}]));
    let prompt = "a fox <lora:style:0.7>";
    let r = s.ok("/sdapi/v1/txt2img", &json!({"prompt": prompt, "steps": 2, "width": 64, "height": 64, "seed": 9, "sampler_name": "Euler"}));
    let want = cli(&dir, "lora", 1, &["generate", "--model", sd15.to_str().unwrap(), "--prompt", prompt, "--lora-dir", dir.join("loras").to_str().unwrap(),
        "--seed", "9", "--steps", "2", "--width", "64", "--height", "64", "--cfg-scale", "7", "--sampler", "euler"]);
    assert_same(&images(&r), &want, "LoRA");
    let plain = s.ok("/sdapi/v1/txt2img", &json!({"prompt": "a fox", "steps": 2, "width": 64, "height": 64, "seed": 9, "sampler_name": "Euler"}));
    assert!(images(&plain)[0].0 != images(&r)[0].0, "the LoRA must change the image");
    let mut escapes = vec![("<lora:../secret>", "'..'"), ("<lora:/etc/passwd>", "absolute"), ("<lora:nope>", "no LoRA named"), ("<lora:sub\\style>", "backslash")];
    if cfg!(unix) {
        escapes.push(("<lora:evil>", "outside the LoRA folder"));
    }
    for (tag, want) in escapes {
        let r = s.post("/sdapi/v1/txt2img", &json!({"prompt": format!("x {tag}"), "steps": 1, "width": 64, "height": 64}));
        assert_eq!(r.status, 400, "{tag}: {}", r.body);
        assert!(r.detail().contains(want), "{tag}: {}", r.detail());
    }

    // Embeddings: the one of this width is loaded, the other skipped.
    let e = s.get("/sdapi/v1/embeddings").body;
    assert_eq!(e["loaded"]["wgsdfox"]["vectors"], 2, "{e}");
    assert_eq!(e["loaded"]["wgsdfox"]["shape"], width, "{e}");
    assert_eq!(e["skipped"]["other_family"]["shape"], width * 2, "{e}");
    s.ok("/sdapi/v1/txt2img", &json!({"prompt": "a wgsdfox", "steps": 1, "width": 64, "height": 64}));
    assert!(s.log().contains("embeddings in the prompt: wgsdfox"), "{}", s.log());

    // png-info reads a generated image back.
    let r = s.ok("/sdapi/v1/txt2img", &json!({"prompt": "a (fox:1.2)", "negative_prompt": "rain", "seed": 11, "steps": 1, "width": 64, "height": 72}));
    let p = s.ok("/sdapi/v1/png-info", &json!({"image": format!("data:image/png;base64,{}", r["images"][0].as_str().unwrap())}));
    assert_eq!(p["info"].as_str(), Some(images(&r)[0].1.as_str()));
    assert_eq!(p["parameters"]["Prompt"], "a (fox:1.2)");
    assert_eq!(p["parameters"]["Negative prompt"], "rain");
    assert_eq!((p["parameters"]["Seed"].as_str(), p["parameters"]["Size-2"].as_str()), (Some("11"), Some("72")));
    let r = s.post("/sdapi/v1/png-info", &json!({"image": b64(b"not an image")}));
    assert_eq!(r.status, 400, "{}", r.body);
    let _ = std::fs::remove_dir_all(&dir);
}

/// N clients at once: every image arrives and equals the one made alone with its seed. Then, with a
/// queue of 2: progress, a client that gives up takes its waiting job with it, a full queue answers 503
/// with Retry-After, interrupt ends the running job (its images so far returned), skip ends a batch and
/// goes on, and the jobs waiting behind them are all answered.
#[test]
fn queue_concurrency_interrupt_skip_and_full_queue() {
    let Some(sd15) = tiny("sd15") else { return };
    let m = sd15.to_str().unwrap();
    {
        let s = Arc::new(Server::start(&["--model", m]));
        let body = |seed: u64| json!({"prompt": "a fox", "seed": seed, "steps": 2, "width": 64, "height": 64, "sampler_name": "Euler a"});
        let handles: Vec<_> = (0..6u64)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || (i, s.ok("/sdapi/v1/txt2img", &body(100 + i))))
            })
            .collect();
        let results: Vec<(u64, Value)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.len(), 6);
        for (i, r) in &results {
            assert_eq!(info(r)["all_seeds"], json!([100 + i]));
            let alone = s.ok("/sdapi/v1/txt2img", &body(100 + i));
            assert_same(&images(r), &images(&alone), &format!("concurrent client {i}"));
        }
        let seen: std::collections::HashSet<Vec<u8>> = results.iter().map(|(_, r)| images(r)[0].0.clone()).collect();
        assert_eq!(seen.len(), 6, "six seeds, six different images");
    }

    let s = Arc::new(Server::start(&["--model", m, "--max-queue", "2"]));
    let long = json!({"prompt": "a", "seed": 1, "steps": 150, "width": 128, "height": 128, "sampler_name": "Euler"});
    let short = |seed: u64| json!({"prompt": "b", "seed": seed, "steps": 1, "width": 64, "height": 64});
    let spawn = |body: Value| {
        let s = s.clone();
        std::thread::spawn(move || s.post("/sdapi/v1/txt2img", &body))
    };
    let a = spawn(long.clone());
    s.wait_for("/sdapi/v1/progress", "the long job to run", |p| p["state"]["sampling_step"].as_u64().unwrap_or(0) >= 1);
    let p = s.get("/sdapi/v1/progress").body;
    assert_eq!(p["state"]["job"], "txt2img");
    assert!(p["progress"].as_f64().unwrap() > 0.0 && p["eta_relative"].as_f64().unwrap() > 0.0, "{p}");
    assert_eq!(p["state"]["sampling_steps"], 150);
    let b = spawn(short(1));
    s.wait_for("/health", "one job waiting", |h| h["queued"] == 1);
    // A client that gives up while its job waits: the job leaves the queue.
    let impatient = call_with(ureq::AgentBuilder::new().timeout(Duration::from_millis(700)).build(), "POST", &s.url("/sdapi/v1/txt2img"), Some(&short(2).to_string()), &[]);
    assert_eq!(impatient.status, 0, "the impatient client timed out: {}", impatient.body);
    s.wait_for("/health", "the abandoned job to leave the queue", |h| h["queued"] == 1);
    let c = spawn(short(3));
    s.wait_for("/health", "two jobs waiting", |h| h["queued"] == 2);
    let full = s.post("/sdapi/v1/txt2img", &short(4));
    assert_eq!(full.status, 503, "{}", full.body);
    assert!(full.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok()), "{:?}", full.headers);
    assert!(full.detail().contains("queue is full"), "{}", full.detail());

    assert_eq!(s.post("/sdapi/v1/interrupt", &json!({})).status, 200);
    let a = a.join().unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(images(&a.body).len(), 1, "an interrupted job still returns its image");
    assert_eq!(info(&a.body)["interrupted"], true);
    for (j, seed) in [(b, 1), (c, 3)] {
        let r = j.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(info(&r.body)["all_seeds"], json!([seed]));
    }
    let log = s.log();
    assert!(log.contains("job: txt2img seed 3,"), "{log}");
    assert!(!log.contains("job: txt2img seed 2,"), "the abandoned job must not run:\n{log}");

    // Skip: the first batch ends early, the second runs; nothing is interrupted.
    let job = spawn(json!({"prompt": "a", "seed": 1, "steps": 150, "n_iter": 2, "width": 64, "height": 64, "sampler_name": "Euler"}));
    s.wait_for("/sdapi/v1/progress", "batch 1 to run", |p| p["state"]["sampling_step"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(s.post("/sdapi/v1/skip", &json!({})).status, 200);
    s.wait_for("/sdapi/v1/progress", "batch 2 to start", |p| p["state"]["job_no"] == 1);
    assert_eq!(s.post("/sdapi/v1/interrupt", &json!({})).status, 200);
    let r = job.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(images(&r.body).len(), 2);
    s.wait_for("/sdapi/v1/progress", "idle", |p| p["state"]["job_count"] == 0 && p["progress"] == 0.0);
}

/// --api-auth (HTTP Basic) and --api-key (Bearer); /health stays open; a non-loopback --host without
/// either is refused at startup.
#[test]
fn auth_and_bind_safety() {
    let Some(sd15) = tiny("sd15") else { return };
    let m = sd15.to_str().unwrap();
    let s = Server::start(&["--model", m, "--api-auth", "alice:s3cret,bob:pw"]);
    assert_eq!(s.get("/health").status, 200);
    let r = s.get("/sdapi/v1/options");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")), "{:?}", r.headers);
    let basic = |u: &str, p: &str| format!("Basic {}", b64(format!("{u}:{p}").as_bytes()));
    let url = s.url("/sdapi/v1/options");
    assert_eq!(call("GET", &url, None, &[("Authorization", &basic("alice", "wrong"))]).status, 401);
    assert_eq!(call("GET", &url, None, &[("Authorization", &basic("alice", "s3cret"))]).status, 200);
    assert_eq!(call("GET", &url, None, &[("Authorization", &basic("bob", "pw"))]).status, 200);
    let t = call("POST", &s.url("/sdapi/v1/txt2img"), Some(r#"{"prompt":"x","steps":1,"width":64,"height":64}"#), &[]);
    assert_eq!(t.status, 401, "generation needs the credential too");
    drop(s);

    let s = Server::start(&["--model", m, "--api-key", "k-123"]);
    let url = s.url("/sdapi/v1/samplers");
    assert_eq!(call("GET", &url, None, &[]).status, 401);
    assert_eq!(call("GET", &url, None, &[("Authorization", "Bearer nope")]).status, 401);
    assert_eq!(call("GET", &url, None, &[("Authorization", "Bearer k-123")]).status, 200);
    assert_eq!(call("GET", &url, None, &[("X-API-Key", "k-123")]).status, 200);
    drop(s);

    let o = wgsd().args(["serve", "--model", m, "--host", "0.0.0.0", "--port", "0"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--api-auth") && err.contains("--insecure"), "{err}");
    let o = wgsd().args(["serve", "--model", m, "--api-auth", "nopassword"]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("user:password"));
}

/// Limits and bad input: each answered 4xx with a message naming the field; the server keeps serving.
#[test]
fn limits_and_bad_input_are_4xx_with_a_message() {
    let Some(sd15) = tiny("sd15") else { return };
    let s = Server::start(&["--model", sd15.to_str().unwrap(), "--max-body-mb", "1", "--max-pixels", "16384", "--max-steps", "10",
        "--max-batch", "2", "--max-images", "3"]);
    let ok = |extra: Value| {
        let mut b = json!({"prompt": "x", "steps": 1, "width": 64, "height": 64});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let png_b64 = b64(&std::fs::read(sd15.parent().unwrap().join("init.png")).unwrap());
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("txt2img", ok(json!({"width": 100})), 400, "width: 100 is not a multiple of 8"),
        ("txt2img", ok(json!({"width": 256, "height": 256})), 400, "--max-pixels"),
        ("txt2img", ok(json!({"height": 0})), 400, "height: 0 is out of range"),
        ("txt2img", ok(json!({"steps": 0})), 400, "steps: 0 is out of range"),
        ("txt2img", ok(json!({"steps": 11})), 400, "steps: 11 is out of range"),
        ("txt2img", ok(json!({"batch_size": 3})), 400, "batch_size: 3 is out of range"),
        ("txt2img", ok(json!({"batch_size": 2, "n_iter": 2})), 400, "--max-images"),
        ("txt2img", ok(json!({"cfg_scale": -1})), 400, "cfg_scale"),
        ("txt2img", ok(json!({"seed": -5})), 400, "seed: -5"),
        ("txt2img", ok(json!({"steps": "many"})), 422, "steps: expected an integer"),
        ("txt2img", ok(json!({"steps": 2.5})), 422, "steps: expected an integer"),
        ("txt2img", ok(json!({"prompt": 5})), 422, "prompt: invalid type"),
        ("txt2img", ok(json!({"sampler_name": "Bogus"})), 400, "sampler_name: unknown sampler 'Bogus'"),
        ("txt2img", ok(json!({"scheduler": "Exponential"})), 400, "scheduler: 'exponential'"),
        ("txt2img", ok(json!({"sampler_name": "Euler a", "scheduler": "Karras"})), 400, "no Karras variant"),
        ("txt2img", ok(json!({"enable_hr": true})), 400, "enable_hr"),
        ("txt2img", ok(json!({"override_settings": {"sd_model_checkpoint": "/etc"}})), 404, "override_settings.sd_model_checkpoint"),
        ("img2img", ok(json!({})), 400, "init_images: img2img needs one init image"),
        ("img2img", ok(json!({"init_images": ["%%%"]})), 400, "init_images[0]: bad base64"),
        ("img2img", ok(json!({"init_images": [b64(b"hello, not an image")]})), 400, "init_images[0]: not a PNG"),
        ("img2img", ok(json!({"init_images": [b64(&b"\x89PNG\r\n\x1a\n broken"[..])]})), 400, "init_images[0]: cannot decode"),
        ("img2img", ok(json!({"init_images": ["data:image/png,abc"]})), 400, "data URL"),
        ("img2img", ok(json!({"init_images": [png_b64.clone()], "denoising_strength": 0})), 400, "denoising_strength: 0"),
        ("img2img", ok(json!({"init_images": [png_b64.clone()], "denoising_strength": 1.5})), 400, "denoising_strength: 1.5"),
        ("img2img", ok(json!({"init_images": [png_b64.clone()], "mask": "***"})), 400, "mask: bad base64"),
        ("img2img", ok(json!({"init_images": [png_b64.clone(), png_b64.clone()]})), 400, "init_images: 2 images"),
        ("png-info", json!({}), 400, "image: a base64 image is required"),
    ];
    for (path, body, status, want) in &cases {
        let r = s.post(&format!("/sdapi/v1/{path}"), body);
        assert_eq!(r.status, *status, "{path} {body}: {}", r.body);
        assert!(r.detail().contains(want), "{path} {body}: wanted '{want}' in: {}", r.detail());
    }
    // Malformed bodies.
    for (raw, want) in [("{\"steps\": ", "malformed JSON"), ("[1, 2]", "must be a JSON object"), ("", "empty")] {
        let r = call("POST", &s.url("/sdapi/v1/txt2img"), Some(raw), &[]);
        assert_eq!(r.status, 400, "{raw:?}: {}", r.body);
        assert!(r.detail().contains(want), "{raw:?}: {}", r.detail());
    }
    // A body over the limit.
    let big = json!({"prompt": "x".repeat(2 << 20)});
    let r = s.post("/sdapi/v1/txt2img", &big);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.detail().contains("--max-body-mb"), "{}", r.detail());
    assert_eq!(s.get("/sdapi/v1/nothing-here").status, 404);
    assert_eq!(s.get("/sdapi/v1/txt2img").status, 405);
    // Still serving, with the limits' edge values accepted.
    s.ok("/sdapi/v1/txt2img", &ok(json!({"steps": 10, "batch_size": 1, "n_iter": 3, "width": 128, "height": 128, "seed": 1.0})));
}

/// SIGTERM: the running job finishes and is answered, new jobs are refused, the process exits cleanly.
#[test]
fn sigterm_finishes_the_running_job_then_exits() {
    let Some(sd15) = tiny("sd15") else { return };
    let mut s = Server::start(&["--model", sd15.to_str().unwrap()]);
    let url = s.url("/sdapi/v1/txt2img");
    let job = std::thread::spawn(move || call("POST", &url, Some(r#"{"prompt":"a","seed":1,"steps":12,"width":128,"height":128,"sampler_name":"Euler"}"#), &[]));
    s.wait_for("/sdapi/v1/progress", "the job to run", |p| p["state"]["sampling_step"].as_u64().unwrap_or(0) >= 1);
    let pid = s.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    let refused = s.post("/sdapi/v1/txt2img", &json!({"prompt": "b", "steps": 1, "width": 64, "height": 64}));
    assert!(refused.status == 0 || refused.status == 503, "a new job after SIGTERM: {} {}", refused.status, refused.body);
    let r = job.join().unwrap();
    assert_eq!(r.status, 200, "the running job must finish: {}", r.body);
    assert_eq!(info(&r.body)["interrupted"], false);
    assert_eq!(images(&r.body).len(), 1);
    let t = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the server did not exit after SIGTERM:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}\n{}", s.log());
    assert!(s.log().contains("shutting down"));
}

/// The `webuiapi` client from PyPI (tests/webuiapi_client.py): txt2img, img2img with a mask, models and
/// options, samplers, png-info; its txt2img image equals `wgsd generate`'s. Needs python3 with webuiapi
/// (installed with pip here when missing and the network allows); otherwise it prints SKIPPED.
#[test]
fn webuiapi_client() {
    let Some(sd15) = tiny("sd15") else { return };
    let has = || Command::new("python3").args(["-c", "import webuiapi"]).output().is_ok_and(|o| o.status.success());
    if !has() {
        let _ = Command::new("python3").args(["-m", "pip", "install", "--quiet", "webuiapi"]).output();
    }
    if !has() {
        println!("SKIPPED: webuiapi_client: python3 with the webuiapi package is not available (pip install webuiapi); the client was NOT tested");
        eprintln!("SKIPPED: webuiapi_client: python3 with the webuiapi package is not available; the client was NOT tested");
        return;
    }
    let fixtures = sd15.parent().unwrap().to_path_buf();
    let dir = temp_dir("webuiapi");
    let s = Server::start(&["--model", sd15.to_str().unwrap(), "--models-dir", fixtures.to_str().unwrap(), "--api-auth", "user:pw"]);
    let port = s.base.rsplit(':').next().unwrap().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webuiapi_client.py");
    let o = Command::new("python3")
        .arg(&script)
        .args(["--port", &port, "--user", "user", "--password", "pw", "--out", dir.to_str().unwrap()])
        .args(["--init", fixtures.join("init.png").to_str().unwrap(), "--mask", fixtures.join("mask.png").to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    println!("{out}");
    assert!(o.status.success(), "webuiapi_client.py failed:\n{out}\n{}\nserver log:\n{}", String::from_utf8_lossy(&o.stderr), s.log());
    assert!(out.contains("webuiapi: all checks passed"), "{out}");
    let got = png(&std::fs::read(dir.join("txt2img.png")).unwrap());
    let want = cli(&dir, "cli", 1, &["generate", "--model", sd15.to_str().unwrap(), "--prompt", "a red fox", "--seed", "42", "--steps", "2",
        "--width", "64", "--height", "64", "--cfg-scale", "7", "--sampler", "euler_a"]);
    assert!(got.0 == want[0].0, "webuiapi's txt2img image differs from wgsd generate's");
    let _ = std::fs::remove_dir_all(&dir);
}
