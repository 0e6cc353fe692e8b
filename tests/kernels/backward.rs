//! Reverse mode: the graph walker (accumulation, views, pruning, checkpointing) and the backward rules of
//! the broadcast ops and reductions, each checked against finite differences and on the GPU.

use wgsd::graph::autodiff::BackwardOpts;
use wgsd::graph::Graph;
use wgsd::tensor::TensorDesc;
use wgsd::testing::{assert_grads, grad_check, test_gpu, GradInput, Rng};

#[test]
fn broadcast_add_and_mul_gradients() {
    let gpu = test_gpu();
    let mut rng = Rng::new(1);
    for (a, b) in [(vec![3, 5, 7], vec![7]), (vec![2, 3, 4, 5], vec![2, 3, 1, 1]), (vec![4, 6], vec![4, 6]), (vec![5, 3], vec![1])] {
        let inputs = [GradInput::random(&mut rng, &a, 1.0), GradInput::random(&mut rng, &b, 1.0)];
        let reps = grad_check(Some(&gpu), &inputs, 1e-2, 64, &|g, x| {
            let s = g.add("s", x[0], x[1])?;
            g.mul("m", s, x[1])
        })
        .unwrap();
        assert_grads(&format!("add/mul {a:?} {b:?}"), &reps, 1e-3, 1e-5);
    }
}

#[test]
fn reused_tensors_and_views_accumulate() {
    let gpu = test_gpu();
    let mut rng = Rng::new(2);
    let inputs = [GradInput::random(&mut rng, &[4, 6], 1.0)];
    let reps = grad_check(Some(&gpu), &inputs, 1e-2, 64, &|g, x| {
        let v = g.reshape(x[0], &[2, 12])?;
        let sq = g.mul("sq", v, v)?;
        let back = g.reshape(sq, &[4, 6])?;
        g.add("y", back, x[0])
    })
    .unwrap();
    assert_grads("x*x + x through views", &reps, 1e-3, 1e-5);
}

#[test]
fn sum_to_on_the_gpu_matches_the_twin_at_many_sizes() {
    let gpu = test_gpu();
    let mut rng = Rng::new(3);
    for (shape, to) in [
        (vec![1000, 37], vec![37]),
        (vec![2, 320, 64, 64], vec![320, 1, 1]),
        (vec![3, 77, 5], vec![1]),
        (vec![300_001], vec![1]),
    ] {
        let mut g = Graph::new();
        let x = g.input("x", TensorDesc::f32(&shape));
        let y = g.sum_to("y", x, &to).unwrap();
        let q = g.sum_squares("q", x).unwrap();
        g.output(y);
        g.output(q);
        let xv = rng.vec(shape.iter().product(), 1.0);
        let cmp = wgsd::testing::check_graph(&gpu, g, &[(x, xv)]).unwrap();
        wgsd::testing::assert_close(&cmp, 1e-5);
    }
}

#[test]
fn gradients_only_where_needed() {
    let mut g = Graph::new();
    let frozen = g.input("frozen", TensorDesc::f32(&[4]));
    let w = g.input("w", TensorDesc::f32(&[4]));
    let a = g.mul("a", frozen, frozen).unwrap(); // before the trainable tensor: no gradient recorded
    let y = g.mul("y", a, w).unwrap();
    let before = g.nodes().len();
    let grads = g.backward(y, &[w]).unwrap();
    assert!(grads.get(&g, frozen).is_none());
    assert!(grads.get(&g, a).is_none());
    let gw = grads.get(&g, w).expect("w has a gradient");
    // dy/dw = a: one mul node (dy · a), nothing for the frozen branch.
    assert_eq!(g.nodes().len() - before, 1, "{:?}", g.nodes()[before..].iter().map(|n| &n.name).collect::<Vec<_>>());
    let fv = [1.0f32, 2.0, 3.0, -1.0];
    let out = g.eval_cpu(&[(frozen, &fv), (w, &[0.5; 4])]).unwrap();
    assert_eq!(out[gw.index()].as_ref().unwrap(), &vec![1.0, 4.0, 9.0, 1.0]);
}

#[test]
fn checkpointed_segments_give_the_same_gradients() {
    let mut rng = Rng::new(4);
    let xv = rng.vec(24, 1.0);
    let wv = rng.vec(6, 1.0);
    let run = |recompute: bool| {
        let mut g = Graph::new();
        let x = g.input("x", TensorDesc::f32(&[4, 6]));
        let w = g.input("w", TensorDesc::f32(&[6]));
        let mut h = x;
        for i in 0..3 {
            let m = g.segment_begin();
            let a = g.mul(&format!("b{i}.a"), h, w).unwrap();
            let v = g.reshape(a, &[24]).unwrap();
            let v = g.reshape(v, &[4, 6]).unwrap();
            let s = g.mul(&format!("b{i}.s"), v, v).unwrap();
            h = g.add(&format!("b{i}.res"), s, h).unwrap();
            g.segment_end(m);
        }
        let grads = g.backward_with(h, &[w], BackwardOpts { recompute }).unwrap();
        let gw = grads.get(&g, w).unwrap();
        let recomputed = g.nodes().iter().filter(|n| n.name.ends_with(".recomputed")).count();
        let out = g.eval_cpu(&[(x, &xv), (w, &wv)]).unwrap();
        (out[gw.index()].clone().unwrap(), recomputed)
    };
    let (plain, n0) = run(false);
    let (ckpt, n1) = run(true);
    assert_eq!(n0, 0);
    assert_eq!(n1, 9, "every node of the three segments is recomputed once");
    assert_eq!(plain, ckpt);
}
