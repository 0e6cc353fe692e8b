//! The HTTP routes: A1111's `/sdapi/v1/…` endpoints and `/health`, with A1111's response shapes.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::api::{json_object, typed, GenerationRequest, PngInfoRequest};
use super::auth::{self, Auth};
use super::catalog::Catalog;
use super::error::{ApiError, ApiResult};
use super::jobs::{JobOutput, JobSpec, LoadedInfo};
use super::limits::{in_range, Limits};
use super::queue::{Done, Queue, Work};
use super::request::{decode_base64, find_checkpoint, job_spec, Settings, SCHEDULERS};
use super::pnginfo::{parse_infotext, text_chunks};

/// What every handler shares.
pub struct AppState {
    pub queue: Arc<Queue>,
    pub catalog: Arc<Catalog>,
    pub limits: Limits,
    pub settings: Mutex<Settings>,
    /// Options clients set that wgsd does not use, echoed back by `GET options`.
    pub other_options: Mutex<Map<String, Value>>,
    pub loaded: Arc<Mutex<LoadedInfo>>,
}

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>, auth: Option<Auth>) -> Router {
    let api = Router::new()
        .route("/sdapi/v1/txt2img", post(txt2img))
        .route("/sdapi/v1/img2img", post(img2img))
        .route("/sdapi/v1/sd-models", get(sd_models))
        .route("/sdapi/v1/refresh-checkpoints", post(refresh))
        .route("/sdapi/v1/samplers", get(samplers))
        .route("/sdapi/v1/schedulers", get(schedulers))
        .route("/sdapi/v1/options", get(get_options).post(set_options))
        .route("/sdapi/v1/progress", get(progress))
        .route("/sdapi/v1/interrupt", post(interrupt))
        .route("/sdapi/v1/skip", post(skip))
        .route("/sdapi/v1/loras", get(loras))
        .route("/sdapi/v1/refresh-loras", post(refresh))
        .route("/sdapi/v1/embeddings", get(embeddings))
        .route("/sdapi/v1/png-info", post(png_info))
        .route("/sdapi/v1/scripts", get(scripts))
        .route_layer(axum::middleware::from_fn_with_state(auth, auth::require));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        // axum's default (2 MB) is too small for base64 images; the body extractor enforces ours.
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), refuse_oversize))
        .with_state(state)
}

/// A request that declares a body over the limit gets its 413 after the body has been read and dropped
/// (up to a bound): answering while the client is still sending makes most clients see a reset connection
/// ("broken pipe") instead of the answer.
async fn refuse_oversize(State(s): St, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let limit = s.limits.max_body_bytes;
    let declared = req.headers().get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        let drain = limit.saturating_mul(4).max(limit.saturating_add(16 << 20));
        let _ = axum::body::to_bytes(req.into_body(), drain).await;
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than this server's limit of {limit} bytes (--max-body-mb)"),
        )
        .into_response();
    }
    next.run(req).await
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The body, or a 4xx naming the server's limit when it is too large.
fn body(state: &AppState, b: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(e.status(), format!("the request body is larger than this server's limit of {} bytes (--max-body-mb)", state.limits.max_body_bytes))
        } else {
            ApiError::new(e.status(), format!("cannot read the request body: {e}"))
        }
    })
}

async fn health(State(s): St) -> Response {
    let model = lock(&s.loaded).model.clone();
    let (status, code) = if s.queue.is_closed() { ("shutting down", StatusCode::SERVICE_UNAVAILABLE) } else { ("ok", StatusCode::OK) };
    (code, Json(json!({"status": status, "model": model, "busy": s.queue.busy(), "queued": s.queue.waiting()}))).into_response()
}

async fn txt2img(State(s): St, b: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    generate(s, b, false).await
}

async fn img2img(State(s): St, b: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    generate(s, b, true).await
}

/// Checks the request, queues it, waits for the worker (dropping the wait — a client gone — withdraws the
/// job), and answers `{images, parameters, info}`.
async fn generate(s: Arc<AppState>, b: Result<Bytes, BytesRejection>, img2img: bool) -> ApiResult<Json<Value>> {
    let bytes = body(&s, b)?;
    let obj = json_object(&bytes)?;
    let req: GenerationRequest = typed(&obj)?;
    let settings = lock(&s.settings).clone();
    let (catalog, limits) = (s.catalog.clone(), s.limits.clone());
    // Decoding images and looking up files is blocking work: keep it off the async threads.
    let spec = tokio::task::spawn_blocking(move || job_spec(&req, img2img, &settings, &catalog, &limits).map(|spec| (spec, req)))
        .await
        .map_err(|e| ApiError::internal(format!("internal error: {e}")))?;
    let (spec, req) = spec?;
    let label = if img2img { "img2img" } else { "txt2img" };
    let ticket = s.queue.submit(label, Work::Generate(Box::new(spec.clone())))?;
    let out = match ticket.wait().await? {
        Done::Generated(out) => out,
        Done::Loaded => return Err(ApiError::internal("internal error: the worker answered another job")),
    };
    if req.override_settings_restore_afterwards == Some(false) && spec.model != lock(&s.settings).checkpoint {
        lock(&s.settings).checkpoint = spec.model.clone();
    }
    let send = req.send_images.unwrap_or(true);
    let images: Vec<Value> = if send { out.images.iter().map(|png| Value::String(base64::engine::general_purpose::STANDARD.encode(png))).collect() } else { vec![] };
    let mut parameters = obj;
    if img2img && !req.include_init_images.unwrap_or(false) {
        // A1111 does not echo the (large) input images unless asked.
        parameters.insert("init_images".into(), Value::Null);
        parameters.insert("mask".into(), Value::Null);
    }
    Ok(Json(json!({"images": images, "parameters": parameters, "info": info(&spec, &out).to_string()})))
}

/// A1111's `info`: the job's settings and, per image, its prompt, seed and infotext.
fn info(spec: &JobSpec, out: &JobOutput) -> Value {
    let n = out.images.len();
    json!({
        "prompt": spec.prompt,
        "all_prompts": vec![spec.prompt.clone(); n],
        "negative_prompt": spec.negative_prompt,
        "all_negative_prompts": vec![spec.negative_prompt.clone(); n],
        "seed": spec.seed,
        "all_seeds": out.seeds,
        "subseed": -1,
        "all_subseeds": vec![-1; n],
        "subseed_strength": 0,
        "width": spec.width,
        "height": spec.height,
        "sampler_name": out.sampler_name,
        "scheduler": if spec.karras { "Karras" } else { "Automatic" },
        "cfg_scale": spec.cfg_scale,
        "steps": spec.steps,
        "batch_size": spec.batch_size,
        "n_iter": spec.n_iter,
        "restore_faces": false,
        "sd_model_name": out.model,
        "sd_model_hash": Value::Null,
        "denoising_strength": spec.init.as_ref().map(|i| i.strength),
        "clip_skip": spec.clip_skip,
        "is_using_inpainting_conditioning": spec.init.as_ref().is_some_and(|i| i.mask.is_some()),
        "index_of_first_image": 0,
        "infotexts": out.infotexts,
        "styles": [],
        "job_timestamp": Value::Null,
        "interrupted": out.interrupted,
        "nsfw_flagged": out.flagged,
        "version": concat!("wgsd ", env!("CARGO_PKG_VERSION")),
    })
}

async fn sd_models(State(s): St) -> Json<Value> {
    let list: Vec<Value> = s
        .catalog
        .models()
        .into_iter()
        .map(|m| json!({"title": m.name, "model_name": m.name, "hash": Value::Null, "sha256": Value::Null, "filename": m.name, "config": Value::Null}))
        .collect();
    Json(Value::Array(list))
}

/// The folders are read on every listing, so a refresh has nothing to do.
async fn refresh() -> Json<Value> {
    Json(json!(null))
}

async fn samplers() -> Json<Value> {
    let mut seen = Vec::new();
    let mut list = Vec::new();
    for s in crate::schedulers::A1111_SAMPLERS {
        if seen.contains(&s.display) {
            // pndm and plms are one sampler (PLMS) under two short names.
            continue;
        }
        seen.push(s.display);
        let aliases: Vec<String> = crate::schedulers::A1111_SAMPLERS.iter().filter(|o| o.display == s.display).map(|o| o.name.to_string()).collect();
        list.push(json!({"name": s.display, "aliases": aliases, "options": {}}));
    }
    Json(Value::Array(list))
}

async fn schedulers() -> Json<Value> {
    let list: Vec<Value> = SCHEDULERS
        .iter()
        .map(|(name, label, rho)| json!({"name": name, "label": label, "aliases": Value::Null, "default_rho": rho.unwrap_or(-1.0), "need_inner_model": false}))
        .collect();
    Json(Value::Array(list))
}

async fn get_options(State(s): St) -> Json<Value> {
    let settings = lock(&s.settings).clone();
    let mut o = lock(&s.other_options).clone();
    o.insert("sd_model_checkpoint".into(), json!(settings.checkpoint));
    o.insert("sd_checkpoint_hash".into(), Value::Null);
    o.insert("CLIP_stopat_last_layers".into(), json!(settings.clip_skip));
    o.entry("samples_format").or_insert(json!("png"));
    Json(Value::Object(o))
}

/// Sets options. `sd_model_checkpoint` loads the checkpoint (in the queue, after the jobs before it) and
/// answers when it is loaded, as A1111 does; `CLIP_stopat_last_layers` sets CLIP skip; other keys are
/// kept and echoed back.
async fn set_options(State(s): St, b: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    let bytes = body(&s, b)?;
    let obj = json_object(&bytes)?;
    let clip_skip = match obj.get("CLIP_stopat_last_layers") {
        None => None,
        Some(v) => Some(in_range("CLIP_stopat_last_layers", v.as_i64().ok_or_else(|| ApiError::bad_request("CLIP_stopat_last_layers: expected an integer"))?, 1, 12)?),
    };
    let checkpoint = match obj.get("sd_model_checkpoint") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(find_checkpoint(&s.catalog, name, "sd_model_checkpoint")?),
        Some(_) => return Err(ApiError::bad_request("sd_model_checkpoint: expected a string")),
    };
    if let Some(name) = checkpoint {
        let ticket = s.queue.submit("load model", Work::LoadModel(name.clone()))?;
        ticket.wait().await?;
        lock(&s.settings).checkpoint = name;
    }
    if let Some(c) = clip_skip {
        lock(&s.settings).clip_skip = c;
    }
    let mut other = lock(&s.other_options);
    for (k, v) in obj {
        if k != "sd_model_checkpoint" && k != "CLIP_stopat_last_layers" && other.len() < 1000 {
            other.insert(k, v);
        }
    }
    Ok(Json(json!(null)))
}

async fn progress(State(s): St) -> Json<Value> {
    let p = s.queue.progress();
    let elapsed = p.started.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
    let fraction = if p.job_count == 0 || p.job.is_empty() {
        0.0
    } else {
        let step = if p.sampling_steps > 0 { p.sampling_step as f64 / p.sampling_steps as f64 } else { 0.0 };
        ((p.job_no as f64 + step) / p.job_count as f64).clamp(0.0, 1.0)
    };
    let eta = if fraction > 0.0 { elapsed / fraction - elapsed } else { 0.0 };
    let active = !p.job.is_empty();
    Json(json!({
        "progress": fraction,
        "eta_relative": eta,
        "state": {
            "skipped": p.skipped,
            "interrupted": p.interrupted,
            "stopping_generation": false,
            "job": p.job,
            "job_count": if active { p.job_count } else { 0 },
            "job_timestamp": p.job_timestamp,
            "job_no": p.job_no,
            "sampling_step": p.sampling_step,
            "sampling_steps": p.sampling_steps,
            "queued": s.queue.waiting(),
        },
        "current_image": Value::Null,
        "textinfo": Value::Null,
    }))
}

async fn interrupt(State(s): St) -> Json<Value> {
    s.queue.interrupt();
    Json(json!(null))
}

async fn skip(State(s): St) -> Json<Value> {
    s.queue.skip();
    Json(json!(null))
}

async fn loras(State(s): St) -> Json<Value> {
    let list: Vec<Value> = s.catalog.loras().into_iter().map(|(name, rel)| json!({"name": name, "alias": name, "path": rel, "metadata": {}})).collect();
    Json(Value::Array(list))
}

async fn embeddings(State(s): St) -> Json<Value> {
    let info = lock(&s.loaded).clone();
    let item = |(name, vectors, width): &(String, usize, usize)| {
        (name.clone(), json!({"step": Value::Null, "sd_checkpoint": Value::Null, "sd_checkpoint_name": Value::Null, "shape": width, "vectors": vectors}))
    };
    let loaded: Map<String, Value> = info.embeddings.iter().map(item).collect();
    let skipped: Map<String, Value> = info.skipped.iter().map(item).collect();
    Json(json!({"loaded": loaded, "skipped": skipped}))
}

async fn png_info(State(s): St, b: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    let bytes = body(&s, b)?;
    let req: PngInfoRequest = typed(&json_object(&bytes)?)?;
    let Some(image) = req.image.filter(|i| !i.trim().is_empty()) else {
        return Err(ApiError::bad_request("image: a base64 image is required"));
    };
    let raw = decode_base64("image", &image)?;
    let (info, items) = text_chunks(&raw)?;
    let parameters = parse_infotext(&info);
    Ok(Json(json!({"info": info, "items": items, "parameters": parameters})))
}

/// wgsd has no scripts; clients (webuiapi) ask to see which extensions exist.
async fn scripts() -> Json<Value> {
    Json(json!({"txt2img": [], "img2img": []}))
}
