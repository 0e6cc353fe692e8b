//! Where a run's wall-clock time goes besides the GPU work (`wgsd --timings …`): totals per phase —
//! reading and converting weights, uploading them, compiling pipelines, building plans — in process-wide
//! counters; the rest of the wall time is GPU work and host code (tokenizer, schedulers, PNG encoding).
//! GPU work is not timed here: drivers run it on their own threads (lavapipe: its worker pool), and
//! timers around wgpu's submit and wait calls read ~0 on lavapipe while its kernels ran for seconds, so a
//! host timer would misattribute it; per-kernel GPU times come from timestamps (`wgsd bench models
//! --profile`). A timed call costs two clock reads, so
//! the counters are always on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A host-side phase of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading weights from their files and converting them (f16 narrowing, f16/bf16 widening).
    WeightRead,
    /// Copying weights (and other host data) into GPU buffers.
    Upload,
    /// Compiling compute pipelines (first use of each kernel variant in the process).
    Pipelines,
    /// Building plans: buffer assignment, bind groups and the pipelines they need.
    PlanBuild,
}

const PHASES: [Phase; 4] = [Phase::WeightRead, Phase::Upload, Phase::Pipelines, Phase::PlanBuild];

impl Phase {
    fn index(self) -> usize {
        self as usize
    }
    fn label(self) -> &'static str {
        match self {
            Phase::WeightRead => "reading weights",
            Phase::Upload => "uploading",
            Phase::Pipelines => "compiling pipelines",
            Phase::PlanBuild => "building plans",
        }
    }
}

static NANOS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static CALLS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Runs `f`, adding its wall-clock time to `phase`.
pub fn timed<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let out = f();
    NANOS[phase.index()].fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    CALLS[phase.index()].fetch_add(1, Ordering::Relaxed);
    out
}

/// The totals so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Seconds and calls per phase, in [`Phase`] order.
    pub seconds: [f64; 4],
    pub calls: [u64; 4],
}

impl Timings {
    pub fn now() -> Timings {
        let mut t = Timings::default();
        for p in PHASES {
            t.seconds[p.index()] = NANOS[p.index()].load(Ordering::Relaxed) as f64 * 1e-9;
            t.calls[p.index()] = CALLS[p.index()].load(Ordering::Relaxed);
        }
        t
    }

    /// Seconds spent in `phase`.
    pub fn get(&self, phase: Phase) -> f64 {
        self.seconds[phase.index()]
    }

    /// Timed calls of `phase`.
    pub fn calls_of(&self, phase: Phase) -> u64 {
        self.calls[phase.index()]
    }

    /// One line per phase with time and calls, then the rest of `wall`. Pipeline compilation happens
    /// while plans are built (plans create the pipelines they need), so it is shown inside that phase.
    pub fn report(&self, wall: f64) -> String {
        let mut s = format!("timings (wall clock, whole run {wall:.2} s):");
        for p in PHASES {
            let i = p.index();
            let inside = match p {
                Phase::Pipelines => " (inside building plans, or while weights upload)",
                Phase::Upload => " (summed over the threads that upload: two under --low-vram)",
                _ => "",
            };
            s.push_str(&format!("\n  {:<22} {:8.2} s in {} calls{inside}", p.label(), self.seconds[i], self.calls[i]));
        }
        let host = self.get(Phase::WeightRead) + self.get(Phase::Upload) + self.get(Phase::PlanBuild);
        s.push_str(&format!("\n  {:<22} {:8.2} s", "GPU work and the rest", (wall - host).max(0.0)));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_calls_add_to_their_phase_and_the_rest_is_reported() {
        let before = Timings::now();
        let v = timed(Phase::Upload, || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            7
        });
        assert_eq!(v, 7);
        let after = Timings::now();
        assert!(after.get(Phase::Upload) - before.get(Phase::Upload) >= 0.019);
        assert!(after.calls[Phase::Upload.index()] > before.calls[Phase::Upload.index()]);
        let r = after.report(1e6);
        assert!(r.contains("uploading") && r.contains("compiling pipelines") && r.contains("GPU work and the rest"), "{r}");
    }
}
