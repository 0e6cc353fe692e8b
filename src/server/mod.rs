//! `wgsd serve`: an HTTP API compatible with AUTOMATIC1111's `/sdapi/v1`, so its clients (webuiapi,
//! SillyTavern, Open WebUI, …) can drive wgsd.
//!
//! - [`routes`]: the endpoints; [`api`]: request bodies; [`request`]: checking a request into a job;
//! - [`queue`]: the first-in first-out queue and the one worker thread that owns the GPU;
//! - [`jobs`]: the loaded model and a job run as `wgsd generate` runs it;
//! - [`catalog`]: models, LoRAs and embeddings by name, inside their folders only;
//! - [`auth`], [`limits`]: access control and request limits; [`pnginfo`]: `png-info`.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod error;
pub mod jobs;
pub mod limits;
pub mod pnginfo;
pub mod queue;
pub mod request;
pub mod routes;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::pipeline::safety::SafetyMode;

use self::auth::Auth;
use self::catalog::{Catalog, ModelEntry};
use self::jobs::{Engine, LoadedInfo};
use self::limits::Limits;
use self::queue::Queue;
use self::request::Settings;
use self::routes::AppState;

/// Everything `wgsd serve` takes.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub model: String,
    /// With a single-file `model` (and single files in `models_dir`): the diffusers folder or repo id of
    /// their configs.
    pub config: Option<String>,
    pub models_dir: Option<PathBuf>,
    pub lora_dir: Option<PathBuf>,
    pub embeddings_dir: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    pub api_auth: Option<String>,
    pub api_key: Option<String>,
    /// Listen on a non-loopback address without authentication.
    pub insecure: bool,
    pub max_queue: usize,
    pub limits: Limits,
    pub safety: SafetyMode,
}

/// The addresses `host:port` resolves to; a non-loopback one needs authentication or `insecure`.
fn bind_addresses(o: &ServeOptions, auth: Option<&Auth>) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (o.host.as_str(), o.port)
        .to_socket_addrs()
        .map_err(|e| Error::usage(format!("--host {}: cannot resolve it: {e}", o.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::usage(format!("--host {}: no address", o.host)));
    }
    if auth.is_none() && !o.insecure {
        if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(Error::usage(format!(
                "--host {}: {} is reachable from other machines; protect it with --api-auth user:password or --api-key KEY \
                 (or pass --insecure to serve it without authentication)",
                o.host,
                a.ip()
            )));
        }
    }
    Ok(addrs)
}

/// Loads the model, listens, and serves until SIGTERM or Ctrl-C: then new jobs are refused, waiting jobs
/// answered 503, the running job finishes and is answered, and the server exits.
pub fn serve(gpu: Arc<Gpu>, o: ServeOptions) -> Result<()> {
    let auth = Auth::from_args(o.api_auth.as_deref(), o.api_key.as_deref()).map_err(Error::usage)?;
    let addrs = bind_addresses(&o, auth.as_ref())?;
    if o.max_queue == 0 {
        return Err(Error::usage("--max-queue must be at least 1"));
    }
    for (flag, dir) in [("--models-dir", &o.models_dir), ("--lora-dir", &o.lora_dir), ("--embeddings-dir", &o.embeddings_dir)] {
        if let Some(d) = dir {
            if !d.is_dir() {
                return Err(Error::usage(format!("{flag} {}: not a folder", d.display())));
            }
        }
    }
    let initial = ModelEntry { name: crate::generate::model_label(&o.model), source: o.model.clone(), config: o.config.clone() };
    let catalog = Arc::new(Catalog {
        initial: initial.clone(),
        models_dir: o.models_dir.clone(),
        config: o.config.clone(),
        lora_dir: o.lora_dir.clone(),
        embeddings_dir: o.embeddings_dir.clone(),
    });
    let loaded = Arc::new(Mutex::new(LoadedInfo::default()));
    let mut engine = Engine::new(gpu, catalog.clone(), o.safety, loaded.clone());
    // Load before listening: a model that does not load is a startup error, and the first request is fast.
    engine.ensure(&initial.name, &[])?;

    let queue = Arc::new(Queue::new(o.max_queue));
    let worker = {
        let q = queue.clone();
        std::thread::Builder::new().name("wgsd-gpu".into()).spawn(move || q.run_worker(engine)).map_err(|e| Error::usage(format!("cannot start the worker: {e}")))?
    };
    let state = Arc::new(AppState {
        queue: queue.clone(),
        catalog,
        limits: o.limits.clone(),
        settings: Mutex::new(Settings { checkpoint: initial.name.clone(), clip_skip: 1 }),
        other_options: Mutex::new(Default::default()),
        loaded,
    });
    let app = routes::router(state, auth);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::usage(format!("cannot start the async runtime: {e}")))?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addrs[..]).await.map_err(|e| Error::usage(format!("cannot listen on {}:{}: {e}", o.host, o.port)))?;
        let local = listener.local_addr().map_err(|e| Error::usage(e.to_string()))?;
        eprintln!("wgsd serve: listening on http://{local} (model {}, queue up to {})", initial.name, o.max_queue);
        let q = queue.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                eprintln!("wgsd serve: shutting down: refusing new jobs, finishing the running one");
                q.close();
            })
            .await
            .map_err(|e| Error::usage(format!("server error: {e}")))
    });
    queue.close();
    let _ = worker.join();
    eprintln!("wgsd serve: stopped");
    served
}

/// SIGTERM (what orchestrators send) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
