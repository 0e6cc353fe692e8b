//! AdamW and gradient-norm clipping on the GPU against their CPU twins (PyTorch's semantics).

use wgsd::graph::plan::Plan;
use wgsd::graph::{Graph, Param};
use wgsd::tensor::TensorDesc;
use wgsd::testing::{rel_l2, test_gpu, Rng};
use wgsd::train::optimizer::{adamw_cpu, AdamW, AdamWConfig};

#[test]
fn adamw_with_clipping_matches_the_twin_over_steps() {
    let gpu = test_gpu();
    let mut rng = Rng::new(7);
    let sizes = [1000usize, 77, 70_001];
    let params: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec(n, 0.5)).collect();
    let mut g = Graph::new();
    let ps: Vec<_> = params
        .iter()
        .enumerate()
        .map(|(i, p)| Param::upload(&gpu, &format!("p{i}"), TensorDesc::f32(&[p.len()]), p, false).unwrap())
        .collect();
    let grads: Vec<_> = sizes.iter().enumerate().map(|(i, &n)| g.input(&format!("g{i}"), TensorDesc::f32(&[n]))).collect();
    for t in &grads {
        g.output(*t);
    }
    let clip = g.clip_coefficient("clip", &grads, 1.0).unwrap();
    g.output(clip);
    let plan = Plan::new(gpu.clone(), g).unwrap();
    let bufs: Vec<wgpu::Buffer> = ps.iter().map(|p| p.buffer().unwrap()).collect();
    let pairs: Vec<_> = bufs.iter().zip(&grads).zip(&sizes).map(|((b, gt), &n)| (b, plan.buffer_of(*gt).unwrap(), n)).collect();
    let cfg = AdamWConfig { weight_decay: 0.05, ..Default::default() };
    let mut opt = AdamW::new(gpu.clone(), cfg, &pairs, plan.buffer_of(clip).unwrap()).unwrap();

    let mut cp: Vec<Vec<f64>> = params.iter().map(|p| p.iter().map(|v| *v as f64).collect()).collect();
    let mut cm: Vec<Vec<f64>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
    let mut cv = cm.clone();
    // Step 1: small gradients (no clipping); steps 2 and 3: large ones (clipped).
    for (step, scale) in [(1u64, 1e-3f32), (2, 0.5), (3, 2.0)] {
        let gv: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec(n, scale)).collect();
        for (t, v) in grads.iter().zip(&gv) {
            plan.write(*t, v).unwrap();
        }
        let lr = 1e-3 * step as f64;
        opt.prepare(lr, &plan);
        let read = plan.run_with(&|pass| opt.encode(pass), &|_| {}, &[clip]).unwrap();
        let norm: f64 = gv.iter().flatten().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let coef = (1.0 / (norm + 1e-6)).min(1.0);
        let got_clip = &read[0];
        assert!((got_clip[0] as f64 - norm).abs() <= 1e-5 * norm, "norm {} vs {norm}", got_clip[0]);
        assert!((got_clip[1] as f64 - coef).abs() <= 1e-5 * coef, "coef {} vs {coef}", got_clip[1]);
        assert_eq!(coef < 1.0, step > 1, "step {step} must {}clip", if step > 1 { "" } else { "not " });
        for i in 0..sizes.len() {
            let g64: Vec<f64> = gv[i].iter().map(|v| *v as f64).collect();
            adamw_cpu(&cfg, lr, step, coef, &mut cp[i], &g64, &mut cm[i], &mut cv[i]);
            let got = gpu.read_bytes(&ps[i].buffer().unwrap(), 0, sizes[i] as u64 * 4).unwrap();
            let got: Vec<f32> = bytemuck::pod_collect_to_vec(&got);
            let want: Vec<f32> = cp[i].iter().map(|v| *v as f32).collect();
            let start: Vec<f32> = params[i].clone();
            let du: Vec<f32> = got.iter().zip(&start).map(|(a, b)| a - b).collect();
            let dw: Vec<f32> = want.iter().zip(&start).map(|(a, b)| a - b).collect();
            let e = rel_l2(&du, &dw);
            println!("step {step} tensor {i}: update rel_l2 {e:.3e}");
            assert!(e < 1e-4, "step {step} tensor {i}: update rel_l2 {e:.3e}");
            let (m, v) = opt.moments(i).unwrap();
            let mw: Vec<f32> = cm[i].iter().map(|v| *v as f32).collect();
            let vw: Vec<f32> = cv[i].iter().map(|v| *v as f32).collect();
            let (em, ev) = (rel_l2(&m, &mw), rel_l2(&v, &vw));
            assert!(em < 1e-5 && ev < 1e-5, "moments: m {em:.3e} v {ev:.3e}");
        }
    }
}
