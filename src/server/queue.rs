//! The job queue: requests wait first-in first-out for the one worker thread that owns the GPU. A full
//! queue refuses at once (503); a request whose client goes away withdraws its job (the `Ticket` is
//! dropped with the request), and a running job whose client left stops at its next step. The worker
//! publishes progress for `GET /progress` and obeys `interrupt` and `skip`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use super::error::{ApiError, ApiResult};
use super::jobs::{Control, Engine, JobOutput, JobSpec};

/// What the worker is asked to do.
pub enum Work {
    Generate(Box<JobSpec>),
    /// Load a checkpoint (`POST options` with `sd_model_checkpoint`), with no LoRA merged.
    LoadModel(String),
}

/// What it answers.
pub enum Done {
    Generated(JobOutput),
    Loaded,
}

type Reply = ApiResult<Done>;

/// What `GET /progress` shows: A1111's `state` fields.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// "txt2img", "img2img", "load model", or "" when idle.
    pub job: String,
    pub job_count: usize,
    pub job_no: usize,
    pub sampling_step: usize,
    pub sampling_steps: usize,
    pub job_timestamp: String,
    pub started: Option<Instant>,
    pub interrupted: bool,
    pub skipped: bool,
}

struct Entry {
    id: u64,
    label: &'static str,
    work: Work,
    reply: oneshot::Sender<Reply>,
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Entry>,
    next_id: u64,
    closed: bool,
    running: bool,
}

pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    max_waiting: usize,
    progress: Mutex<Progress>,
    interrupt: AtomicBool,
    skip: AtomicBool,
}

/// A submitted job: await it with [`Ticket::wait`]; dropping it unanswered withdraws the job.
pub struct Ticket {
    id: u64,
    rx: Option<oneshot::Receiver<Reply>>,
    queue: Arc<Queue>,
    cancel: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Queue {
    pub fn new(max_waiting: usize) -> Self {
        Queue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            max_waiting,
            progress: Mutex::new(Progress::default()),
            interrupt: AtomicBool::new(false),
            skip: AtomicBool::new(false),
        }
    }

    /// Queues `work`; refused with 503 and `Retry-After` when `max_waiting` jobs already wait or the
    /// server is shutting down.
    pub fn submit(self: &Arc<Self>, label: &'static str, work: Work) -> ApiResult<Ticket> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(ApiError::unavailable("the server is shutting down", 30));
        }
        if s.waiting.len() >= self.max_waiting {
            return Err(ApiError::unavailable(
                format!("the queue is full ({} jobs waiting, --max-queue {}); try again later", s.waiting.len(), self.max_waiting),
                5,
            ));
        }
        s.next_id += 1;
        let id = s.next_id;
        let (tx, rx) = oneshot::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        s.waiting.push_back(Entry { id, label, work, reply: tx, cancel: cancel.clone() });
        self.ready.notify_one();
        Ok(Ticket { id, rx: Some(rx), queue: self.clone(), cancel })
    }

    /// Jobs waiting (not counting the running one).
    pub fn waiting(&self) -> usize {
        lock(&self.state).waiting.len()
    }

    pub fn busy(&self) -> bool {
        lock(&self.state).running
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// Refuses new jobs, answers the waiting ones 503 and lets the worker end after the running job.
    pub fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        for e in s.waiting.drain(..) {
            let _ = e.reply.send(Err(ApiError::unavailable("the server is shutting down", 30)));
        }
        self.ready.notify_all();
    }

    /// Ends the running job after its current step (its images so far are still returned); jobs waiting
    /// are not touched, as in A1111.
    pub fn interrupt(&self) {
        if self.busy() {
            self.interrupt.store(true, Ordering::SeqCst);
            lock(&self.progress).interrupted = true;
        }
    }

    /// Ends the running batch after its current step and goes on with the next one.
    pub fn skip(&self) {
        if self.busy() {
            self.skip.store(true, Ordering::SeqCst);
            lock(&self.progress).skipped = true;
        }
    }

    pub fn progress(&self) -> Progress {
        lock(&self.progress).clone()
    }

    fn withdraw(&self, id: u64) {
        lock(&self.state).waiting.retain(|e| e.id != id);
    }

    /// The worker loop: runs jobs in order until the queue is closed and empty. Blocks its thread.
    pub fn run_worker(self: Arc<Self>, mut engine: Engine) {
        loop {
            let entry = {
                let mut s = lock(&self.state);
                loop {
                    if let Some(e) = s.waiting.pop_front() {
                        s.running = true;
                        break e;
                    }
                    if s.closed {
                        return;
                    }
                    s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            };
            self.interrupt.store(false, Ordering::SeqCst);
            self.skip.store(false, Ordering::SeqCst);
            *lock(&self.progress) = Progress {
                job: entry.label.to_string(),
                job_count: 1,
                job_timestamp: timestamp(),
                started: Some(Instant::now()),
                ..Default::default()
            };
            let ctl = WorkerControl { queue: &self, cancel: &entry.cancel };
            let reply = if entry.cancel.load(Ordering::SeqCst) {
                Err(ApiError::new(axum::http::StatusCode::REQUEST_TIMEOUT, "the client went away"))
            } else {
                // A panic in the pipeline answers 500 and drops the model (its state is not trusted); the
                // server keeps serving.
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match entry.work {
                    Work::Generate(spec) => engine.run(&spec, &ctl).map(Done::Generated).map_err(ApiError::from_wgsd),
                    Work::LoadModel(name) => engine.ensure(&name, &[]).map(|()| Done::Loaded).map_err(ApiError::from_wgsd),
                }));
                run.unwrap_or_else(|p| {
                    engine.unload();
                    let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                    Err(ApiError::internal(format!("internal error: {msg}")))
                })
            };
            *lock(&self.progress) = Progress::default();
            lock(&self.state).running = false;
            let _ = entry.reply.send(reply);
        }
    }
}

struct WorkerControl<'a> {
    queue: &'a Queue,
    cancel: &'a AtomicBool,
}

impl Control for WorkerControl<'_> {
    fn batch_started(&self, index: usize, count: usize) {
        let mut p = lock(&self.queue.progress);
        p.job_no = index;
        p.job_count = count;
        p.sampling_step = 0;
        p.skipped = false;
    }

    fn step(&self, step: usize, total: usize) {
        let mut p = lock(&self.queue.progress);
        p.sampling_step = step;
        p.sampling_steps = total;
    }

    fn stop_batch(&self) -> bool {
        self.queue.interrupt.load(Ordering::SeqCst) || self.queue.skip.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst)
    }

    fn stop_job(&self) -> bool {
        self.queue.skip.store(false, Ordering::SeqCst);
        self.queue.interrupt.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst)
    }
}

/// A1111's `job_timestamp`: local-free UTC `YYYYMMDDhhmmss`.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

impl Ticket {
    /// The job's answer.
    pub async fn wait(mut self) -> Reply {
        let rx = self.rx.take().expect("a ticket is awaited once");
        let r = rx.await;
        // Answered (or dropped by a closing queue): nothing left to withdraw.
        self.cancel = Arc::new(AtomicBool::new(false));
        self.id = 0;
        r.unwrap_or_else(|_| Err(ApiError::unavailable("the server is shutting down", 30)))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.id != 0 {
            // The request ended before its answer (the client disconnected): take the job out of the
            // queue, or stop it at its next step if it is running.
            self.queue.withdraw(self.id);
            self.cancel.store(true, Ordering::SeqCst);
        }
    }
}
