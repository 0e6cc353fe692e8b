//! The streaming attention backward (`kernels::attention_backward`): its rules against finite differences
//! of the forward twins and its kernels against their twins on the GPU, for tiled and row-wise (causal)
//! attention, cross-attention shapes, a tensor used twice, and mid-size SD shapes; plus the promise that no
//! backward node ever holds an Nq×Nk tensor.

use wgsd::graph::autodiff::BackwardOpts;
use wgsd::kernels::attention::AttentionOpts;
use wgsd::kernels::attention_rowwise::RowwiseAttention;
use wgsd::testing::{assert_close, assert_grads, check_graph, grad_check, test_gpu, GradInput, Rng};
use wgsd::{Graph, TensorDesc};

/// Finite differences of an f32 forward: step 1e-2 keeps rounding noise (~1e-7 / 1e-2 of the loss) and
/// truncation (~h²) both near 1e-5 relative.
const FD_H: f64 = 1e-2;
const FD_TOL: f64 = 1e-3;
const GPU_TOL: f64 = 1e-4;

fn opts(heads: usize, scale: Option<f32>) -> AttentionOpts {
    AttentionOpts { heads, scale, ..Default::default() }
}

#[test]
fn attention_gradients_match_finite_differences() {
    let gpu = test_gpu();
    let mut rng = Rng::new(21);
    // (B, Nq, Nk, H, D, scale): the brief's small shapes, and a non-default scale.
    for (b, nq, nk, h, d, scale) in [(2, 13, 11, 2, 5, None), (2, 13, 11, 2, 8, None), (1, 9, 17, 3, 4, Some(0.9))] {
        let w = h * d;
        let inputs = [
            GradInput::random(&mut rng, &[b, nq, w], 1.5),
            GradInput::random(&mut rng, &[b, nk, w], 1.5),
            GradInput::random(&mut rng, &[b, nk, w], 1.0),
        ];
        let reps = grad_check(Some(&gpu), &inputs, FD_H, 48, &|g, x| g.attention("attn", x[0], x[1], x[2], opts(h, scale))).unwrap();
        assert_grads(&format!("attention b{b} nq{nq} nk{nk} h{h} d{d}"), &reps, FD_TOL, GPU_TOL);
    }
}

/// Cross-attention on a frozen text context: only dq is asked for, so only q's kernel runs (checked in
/// `frozen_context_records_only_dq`); 70 query rows cross a 64-row workgroup, 77 keys a partial block.
#[test]
fn cross_attention_query_gradient() {
    let gpu = test_gpu();
    let mut rng = Rng::new(22);
    let (b, nq, nk, h, d) = (1, 70, 77, 2, 6);
    let ctx_k = rng.vec(b * nk * h * d, 1.0);
    let ctx_v = rng.vec(b * nk * h * d, 1.0);
    let inputs = [
        GradInput::random(&mut rng, &[b, nq, h * d], 1.5),
        GradInput::fixed(&[b, nk, h * d], ctx_k),
        GradInput::fixed(&[b, nk, h * d], ctx_v),
    ];
    let reps = grad_check(Some(&gpu), &inputs, FD_H, 48, &|g, x| g.attention("cross", x[0], x[1], x[2], opts(h, None))).unwrap();
    assert_grads("cross-attention dq", &reps, FD_TOL, GPU_TOL);
}

#[test]
fn causal_rowwise_gradients() {
    let gpu = test_gpu();
    let mut rng = Rng::new(23);
    // (B, Nq, Nk, H, D): the brief's causal N = 9, more queries than keys (rows past Nk see every key),
    // and 70 rows so the key-side kernels' causal start crosses a workgroup.
    for (b, nq, nk, h, d) in [(2, 9, 9, 2, 5), (2, 9, 9, 2, 8), (1, 13, 11, 2, 3), (1, 70, 70, 1, 4)] {
        let w = h * d;
        let inputs = [
            GradInput::random(&mut rng, &[b, nq, w], 1.5),
            GradInput::random(&mut rng, &[b, nk, w], 1.5),
            GradInput::random(&mut rng, &[b, nk, w], 1.0),
        ];
        let reps = grad_check(Some(&gpu), &inputs, FD_H, 48, &|g, x| {
            g.op("causal", RowwiseAttention { heads: h, scale: None, causal: true }, &[x[0], x[1], x[2]])
        })
        .unwrap();
        assert_grads(&format!("causal b{b} nq{nq} nk{nk} h{h} d{d}"), &reps, FD_TOL, GPU_TOL);
    }
}

/// More rows than one workgroup's 256 on both sides, so the causal kernels skip whole blocks (dq stops
/// early, dk / dv start late); the forward is CLIP's own causal_attention. A few coordinates of finite
/// differences, every coordinate GPU against the twins.
#[test]
fn causal_across_workgroups() {
    let gpu = test_gpu();
    let mut rng = Rng::new(25);
    let (b, n, h, d) = (1, 530, 2, 3);
    let inputs: Vec<GradInput> = (0..3).map(|_| GradInput::random(&mut rng, &[b, n, h * d], 1.5)).collect();
    let reps = grad_check(Some(&gpu), &inputs, FD_H, 8, &|g, x| g.causal_attention("clip", x[0], x[1], x[2], h)).unwrap();
    assert_grads("causal 530 rows", &reps, FD_TOL, GPU_TOL);
}

/// attention(x, x, x): the walker adds the three per-input gradients.
#[test]
fn one_tensor_as_q_k_and_v() {
    let gpu = test_gpu();
    let mut rng = Rng::new(24);
    let inputs = [GradInput::random(&mut rng, &[2, 10, 10], 1.5)];
    let reps = grad_check(Some(&gpu), &inputs, FD_H, 64, &|g, x| g.attention("self", x[0], x[0], x[0], opts(2, None))).unwrap();
    assert_grads("attention(x, x, x)", &reps, FD_TOL, GPU_TOL);
    let reps = grad_check(Some(&gpu), &inputs, FD_H, 64, &|g, x| g.causal_attention("clip", x[0], x[0], x[0], 2)).unwrap();
    assert_grads("causal(x, x, x)", &reps, FD_TOL, GPU_TOL);
}

/// Records attention and its backward from a seed dO; returns the graph, its inputs and the gradients.
fn backward_graph(b: usize, nq: usize, nk: usize, h: usize, d: usize, need_kv: bool) -> (Graph, [wgsd::graph::TensorId; 4]) {
    let w = h * d;
    let mut g = Graph::new();
    let q = g.input("q", TensorDesc::f32(&[b, nq, w]));
    let k = g.input("k", TensorDesc::f32(&[b, nk, w]));
    let v = g.input("v", TensorDesc::f32(&[b, nk, w]));
    let dy = g.input("dy", TensorDesc::f32(&[b, nq, w]));
    let y = g.attention("attn", q, k, v, opts(h, None)).unwrap();
    let wrt = if need_kv { vec![q, k, v] } else { vec![q] };
    g.backward_from(&[(y, dy)], &wrt, BackwardOpts::default()).unwrap();
    (g, [q, k, v, dy])
}

/// Mid-size SD shapes, GPU against the twins (every gradient is a graph output): self-attention at SD 1.5's
/// head dim 40, cross-attention on 77 context tokens with an odd head dim, head dims 80 and 160, and more
/// than one 256-row workgroup block on both sides.
#[test]
fn mid_size_gpu_matches_twins() {
    let gpu = test_gpu();
    for (n, (b, nq, nk, h, d)) in [(1, 256, 256, 8, 40), (1, 200, 77, 3, 33), (2, 65, 77, 2, 80), (1, 67, 67, 1, 160), (1, 300, 517, 2, 7)].into_iter().enumerate() {
        let (g, [q, k, v, dy]) = backward_graph(b, nq, nk, h, d, true);
        let mut rng = Rng::new(30 + n as u64);
        let w = h * d;
        let feed = vec![
            (q, rng.vec(b * nq * w, 1.0)),
            (k, rng.vec(b * nk * w, 1.0)),
            (v, rng.vec(b * nk * w, 1.0)),
            (dy, rng.vec(b * nq * w, 1.0)),
        ];
        println!("b{b} nq{nq} nk{nk} h{h} d{d}");
        assert_close(&check_graph(&gpu, g, &feed).unwrap(), 1e-5);
    }
}

/// No backward node's output is O(Nq·Nk): at SD 1.5's 4096-token self-attention (Nq·Nk = 16.8M per head)
/// every recorded tensor holds at most B·N·H·D (2.6M) values. Recording only, nothing runs.
#[test]
fn no_backward_node_is_quadratic() {
    let (b, n, h, d) = (2, 4096, 8, 40);
    let (g, _) = backward_graph(b, n, n, h, d, true);
    let mut kinds = Vec::new();
    for node in g.nodes().iter().skip(1) {
        let numel = g.desc(node.output).numel();
        assert!(numel <= b * n * h * d, "{} ({}) holds {numel} values", node.name, node.op.kind());
        assert!(numel < n * n, "{} is quadratic", node.name);
        kinds.push(node.op.kind());
    }
    assert_eq!(kinds, ["attention_lse", "attention_delta", "attention_grad_q", "attention_grad_k", "attention_grad_v"]);
}

/// k and v from a frozen encoder: the rule records L, Δ and dq only.
#[test]
fn frozen_context_records_only_dq() {
    let (g, _) = backward_graph(2, 4096, 77, 8, 40, false);
    let kinds: Vec<&str> = g.nodes().iter().skip(1).map(|n| n.op.kind()).collect();
    assert_eq!(kinds, ["attention_lse", "attention_delta", "attention_grad_q"]);
}
