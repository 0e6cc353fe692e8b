//! Training: the host maths of a DreamBooth step, LoRA layers (against finite differences and merged
//! weights), and every `train.*` case of the training fixtures (`WGSD_TRAIN_FIXTURES`, default
//! `../shared/fixtures/train`) through the same code as `wgsd verify`. Without that folder the fixture
//! test prints SKIPPED and why.


use wgsd::graph::Graph;
use wgsd::kernels::conv2d::Conv2dOpts;
use wgsd::kernels::unary::Activation;
use wgsd::schedulers::ddpm::training_schedule;
use wgsd::tensor::TensorDesc;
use wgsd::testing::{assert_close, assert_grads, check_graph, grad_check, test_gpu, GradInput, Rng};
use wgsd::train::batch::{loss_weights, noisy_and_target, snr, Prediction};
use wgsd::verify::TrainCheck;

fn schedule() -> wgsd::schedulers::schedule::TrainSchedule {
    let cfg = serde_json::json!({"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000});
    training_schedule(&cfg, "test").unwrap().0
}

#[test]
fn v_target_and_noisy_latents_recover_the_clean_latents() {
    let s = schedule();
    let mut rng = Rng::new(1);
    let (x0, noise) = (rng.vec(2 * 16, 1.0), rng.vec(2 * 16, 1.0));
    let t = [10i64, 900];
    let (noisy, v) = noisy_and_target(&s, &x0, &noise, &t, Prediction::VPrediction);
    let (_, eps) = noisy_and_target(&s, &x0, &noise, &t, Prediction::Epsilon);
    assert_eq!(eps, noise);
    for (b, &tb) in t.iter().enumerate() {
        let a = s.alpha_cumprod(tb) as f64;
        for i in b * 16..(b + 1) * 16 {
            // x0 = √ᾱ·x_t − √(1−ᾱ)·v
            let rec = a.sqrt() * noisy[i] as f64 - (1.0 - a).sqrt() * v[i] as f64;
            assert!((rec - x0[i] as f64).abs() < 1e-5, "{rec} vs {}", x0[i]);
        }
    }
}

#[test]
fn loss_weights_split_instance_and_prior_and_apply_min_snr() {
    let s = schedule();
    // Prior preservation: the instance half averages to 1, the class half to the prior weight.
    let w = loss_weights(&s, &[5, 500, 20, 999], 2, 0.5, None, Prediction::Epsilon);
    assert_eq!(w, vec![0.5, 0.5, 0.25, 0.25]);
    // Min-SNR: min(snr, γ)/snr (epsilon), /(snr + 1) (v-prediction), averaged over the batch.
    let t = [1i64, 999];
    let we = loss_weights(&s, &t, 0, 1.0, Some(5.0), Prediction::Epsilon);
    let wv = loss_weights(&s, &t, 0, 1.0, Some(5.0), Prediction::VPrediction);
    for (i, &ti) in t.iter().enumerate() {
        let r = snr(&s, ti);
        assert!(((we[i] as f64) - r.min(5.0) / r / 2.0).abs() < 1e-7);
        assert!(((wv[i] as f64) - r.min(5.0) / (r + 1.0) / 2.0).abs() < 1e-7);
    }
    assert!(snr(&s, 1) > 5.0 && snr(&s, 999) < 5.0, "the two timesteps sit on either side of γ");
}

#[test]
fn lora_linear_gradients_and_merged_equivalence() {
    let gpu = test_gpu();
    let mut rng = Rng::new(2);
    let (n, din, dout, r) = (7, 6, 5, 3);
    for act in [Activation::None, Activation::Silu] {
        let inputs = [
            GradInput::random(&mut rng, &[2, n, din], 1.0),
            GradInput::random(&mut rng, &[dout, din], 0.5),
            GradInput::random(&mut rng, &[dout], 0.5),
            GradInput::random(&mut rng, &[r, din], 0.5),
            GradInput::random(&mut rng, &[dout, r], 0.5),
        ];
        let reps = grad_check(Some(&gpu), &inputs, 1e-2, 48, &|g, x| g.lora_linear("l", x[0], x[1], Some(x[2]), x[3], x[4], 0.75, act)).unwrap();
        assert_grads(&format!("lora_linear {act:?}"), &reps, 1e-3, 1e-4);
    }
    // Unmerged LoRA = the layer with W + scale·B·A.
    let (x, w, a, b) = (rng.vec(2 * n * din, 1.0), rng.vec(dout * din, 1.0), rng.vec(r * din, 1.0), rng.vec(dout * r, 1.0));
    let merged: Vec<f32> = (0..dout * din).map(|i| w[i] + 0.75 * (0..r).map(|k| b[(i / din) * r + k] * a[k * din + i % din]).sum::<f32>()).collect();
    let mut g = Graph::new();
    let ti = [("x", vec![2, n, din]), ("w", vec![dout, din]), ("a", vec![r, din]), ("b", vec![dout, r]), ("m", vec![dout, din])].map(|(nm, s)| g.input(nm, TensorDesc::f32(&s)));
    let y = g.lora_linear("l", ti[0], ti[1], None, ti[2], ti[3], 0.75, Activation::None).unwrap();
    let z = g.linear("merged", ti[0], ti[4], None).unwrap();
    g.output(y);
    g.output(z);
    let vals = [x, w, a, b, merged];
    let feed: Vec<_> = ti.iter().zip(vals).map(|(t, v)| (*t, v)).collect();
    let cpu = g.eval_cpu(&feed.iter().map(|(t, v)| (*t, v.as_slice())).collect::<Vec<_>>()).unwrap();
    let e = wgsd::testing::rel_l2(cpu[y.index()].as_ref().unwrap(), cpu[z.index()].as_ref().unwrap());
    assert!(e < 1e-6, "unmerged vs merged LoRA: {e:.3e}");
    assert_close(&check_graph(&gpu, g, &feed).unwrap(), 1e-5);
}

#[test]
fn lora_conv2d_gradients() {
    let gpu = test_gpu();
    let mut rng = Rng::new(3);
    let (cin, cout, r) = (3, 4, 2);
    for (k, opts) in [(3, Conv2dOpts::new(1, 1)), (3, Conv2dOpts::new(2, 1)), (1, Conv2dOpts::new(1, 0))] {
        let inputs = [
            GradInput::random(&mut rng, &[2, cin, 7, 6], 1.0),
            GradInput::random(&mut rng, &[cout, cin, k, k], 0.5),
            GradInput::random(&mut rng, &[cout], 0.5),
            GradInput::random(&mut rng, &[r, cin, k, k], 0.5),
            GradInput::random(&mut rng, &[cout, r, 1, 1], 0.5),
        ];
        let reps = grad_check(Some(&gpu), &inputs, 1e-2, 48, &|g, x| g.lora_conv2d("c", x[0], x[1], Some(x[2]), x[3], x[4], 0.5, opts, None)).unwrap();
        assert_grads(&format!("lora_conv2d k{k} {opts:?}"), &reps, 1e-3, 1e-4);
    }
}


/// Every `train.*` case: teacher-forced gradients of every stored step within 1e-4 of float64 PyTorch,
/// every step's loss and gradient norm, and the parameter updates of the uninterrupted AdamW run.
#[test]
fn every_training_case_matches_diffusers() {
    run_training_cases(false, TrainCheck::Everything);
}

/// With gradient checkpointing the recomputed segments must give the same gradients: every stored step's
/// teacher-forced gradients of every case (the losses, updates and files come from the gradients, and the
/// test above checks them; `wgsd verify --checkpointing` checks everything).
#[test]
fn every_training_case_matches_diffusers_with_checkpointing() {
    run_training_cases(true, TrainCheck::Gradients);
}

fn run_training_cases(checkpointing: bool, check: TrainCheck) {
    let Some(dir) = wgsd::testing::train_fixtures() else { return };
    let gpu = test_gpu();
    let fx = wgsd::fixtures::Fixtures::open(&dir, "cases").unwrap();
    let results = wgsd::verify::train_cases(&gpu, &fx, checkpointing, check).unwrap();
    for r in &results {
        println!("{}", r.line());
    }
    assert!(!results.is_empty(), "the training fixture set holds no train.* cases");
    let failed: Vec<String> = results.iter().filter(|r| !r.passed).map(|r| r.line()).collect();
    assert!(failed.is_empty(), "failed cases:\n{}", failed.join("\n"));
}
