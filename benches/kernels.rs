//! `cargo bench`: the same kernel table as `wgsd bench kernels` (pass `-- --quick` for reduced sizes).

use std::sync::Arc;

use wgsd::bench::{run_kernels, BenchOptions};
use wgsd::{Gpu, GpuOptions};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let gpu = match Gpu::new(&GpuOptions::from_env()) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let opts = BenchOptions { quick, reps: if quick { 1 } else { 3 }, filter: None };
    if let Err(e) = run_kernels(&gpu, &opts) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
