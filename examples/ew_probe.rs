use std::sync::Arc;
use wgsd::*;
fn main() {
    let gpu = Arc::new(Gpu::new(&GpuOptions::from_env()).unwrap());
    for n in [1usize << 16, 1 << 20, 1 << 22] {
        for which in ["scale", "silu"] {
            let mut g = Graph::new();
            let x = g.input("x", TensorDesc::f32(&[n]));
            let y = if which == "scale" { g.scale("s", x, 2.0, 0.0).unwrap() } else { g.silu("s", x).unwrap() };
            g.output(y);
            let plan = Plan::new(gpu.clone(), g).unwrap();
            plan.write(x, &vec![0.5; n]).unwrap();
            plan.profile().unwrap();
            let t = plan.profile().unwrap()[0];
            let t0 = std::time::Instant::now();
            plan.run().unwrap(); gpu.wait().unwrap();
            let wall = t0.elapsed().as_secs_f64();
            println!("{which} n={n}: {:.3} ms gpu, {:.3} ms wall, {:.2} GB/s", t * 1e3, wall * 1e3, 8.0 * n as f64 / t / 1e9);
        }
    }
}
