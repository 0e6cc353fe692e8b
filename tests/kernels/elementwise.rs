use wgsd::kernels::unary::Activation;
use wgsd::testing::{assert_close, check_graph, test_gpu, Rng};
use wgsd::{Graph, TensorDesc};

const TOL: f64 = 1e-5;

#[test]
fn activations_at_awkward_sizes() {
    let gpu = test_gpu();
    for (k, act) in [Activation::None, Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::QuickGelu, Activation::Relu, Activation::Tanh]
        .into_iter()
        .enumerate()
    {
        for n in [1usize, 7, 257, 4099] {
            let mut g = Graph::new();
            let x = g.input("x", TensorDesc::f32(&[n]));
            let y = g.activation(act.name(), x, act).unwrap();
            g.output(y);
            let data = Rng::new(k as u64 * 100 + n as u64).vec(n, 6.0);
            assert_close(&check_graph(&gpu, g, &[(x, data)]).unwrap(), TOL);
        }
    }
}

#[test]
fn scale_geglu_upsample() {
    // Both read paths: textures where the adapter wants them (lavapipe), storage buffers (GPUs).
    for gpu in [test_gpu(), wgsd::testing::test_gpu_buffer_reads()] {
        scale_geglu_upsample_on(gpu);
    }
}

fn scale_geglu_upsample_on(gpu: std::sync::Arc<wgsd::Gpu>) {
    use wgsd::graph::op::{DeviceLimits, Lowering};
    let limits = DeviceLimits { max_binding: 1 << 27, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let mut rng = Rng::new(3);
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[3, 17, 2 * 41]));
    let img = g.input("img", TensorDesc::f32(&[2, 5, 7, 9]));
    let s = g.scale("scale", x, 0.18215, -0.5).unwrap();
    let gg = g.geglu("geglu", x).unwrap();
    // F a multiple of 4: geglu4, 4 outputs per invocation.
    let x4 = g.input("x4", TensorDesc::f32(&[5, 3, 2 * 36]));
    let gg4 = g.geglu("geglu4", x4).unwrap();
    let up = g.upsample_nearest2x("up", img).unwrap();
    let tr = g.transpose("transpose", x).unwrap();
    // Both sides multiples of 4: transpose4, 4×4 blocks per invocation.
    let xt = g.input("xt", TensorDesc::f32(&[3, 12, 20]));
    let tr4 = g.transpose("transpose4", xt).unwrap();
    // Odd target sizes, as diffusers' UNet upsamples to when a latent side is not a multiple of 8.
    let up_odd = g.upsample_nearest("up_odd", img, 13, 19).unwrap();
    let img_tokens = g.reshape(img, &[2, 5, 63]).unwrap();
    let tr_img = g.transpose("to_tokens", img_tokens).unwrap();
    for t in [s, gg, gg4, up, up_odd, tr, tr4, tr_img] {
        g.output(t);
    }
    let inputs = vec![
        (x, rng.vec(3 * 17 * 82, 3.0)),
        (img, rng.vec(2 * 5 * 7 * 9, 1.0)),
        (x4, rng.vec(5 * 3 * 72, 3.0)),
        (xt, rng.vec(3 * 12 * 20, 1.0)),
    ];
    // The 4-wide entry points are taken exactly where the rows are multiples of 4.
    let entries: Vec<&str> = ["geglu", "geglu4", "transpose", "transpose4"]
        .iter()
        .map(|name| {
            let node = g.nodes().iter().find(|n| n.name == *name).unwrap();
            let ins: Vec<TensorDesc> = node.inputs.iter().map(|&t| g.desc(t).clone()).collect();
            let out = g.desc(node.output).clone();
            node.op.lower(&Lowering { inputs: &ins, output: &out, limits: &limits }).unwrap()[0].entry
        })
        .collect();
    assert_eq!(entries, ["geglu", "geglu4", "transpose", "transpose4"]);
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
}

#[test]
fn broadcast_add_mul_concat_gather() {
    let gpu = test_gpu();
    let mut rng = Rng::new(5);
    let mut g = Graph::new();
    let a = g.input("a", TensorDesc::f32(&[2, 13, 5, 7]));
    let same = g.input("same", TensorDesc::f32(&[2, 13, 5, 7]));
    let chan = g.input("chan", TensorDesc::f32(&[2, 13, 1, 1]));
    let bias = g.input("bias", TensorDesc::f32(&[7]));
    let other = g.input("other", TensorDesc::f32(&[2, 3, 5, 7]));
    let table = g.input("table", TensorDesc::f32(&[101, 19]));
    let ids = g.input("ids", TensorDesc::f32(&[2, 9]));
    let outs = [
        g.add("add_same", a, same).unwrap(),
        g.add("add_chan", a, chan).unwrap(),
        g.mul("mul_bias", a, bias).unwrap(),
        g.concat("concat", a, other, 1).unwrap(),
        g.gather("gather", table, ids).unwrap(),
        // Ids 40.. read a second table's rows 0..; the others give zeros.
        g.gather_from("gather_from", table, ids, 40).unwrap(),
    ];
    for t in outs {
        g.output(t);
    }
    let id_vals: Vec<f32> = (0..18).map(|i| ((i * 37) % 101) as f32).chain([]).collect();
    let inputs = vec![
        (a, rng.vec(2 * 13 * 35, 1.0)),
        (same, rng.vec(2 * 13 * 35, 1.0)),
        (chan, rng.vec(26, 1.0)),
        (bias, rng.vec(7, 1.0)),
        (other, rng.vec(2 * 3 * 35, 1.0)),
        (table, rng.vec(101 * 19, 1.0)),
        (ids, id_vals),
    ];
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
}

/// Broadcast add and mul on whole vec4s (add4/mul4): a same-shape b, a per-channel b (inner 32), a bias
/// repeated along the leading dims (inner 1), and a per-channel b whose count is not a multiple of 4
/// (scalar kernels); the lowering picks the 4-wide entry points exactly where everything is aligned.
#[test]
fn broadcast_add_mul_on_whole_vec4s() {
    // Both read paths: textures where the adapter wants them (lavapipe), storage buffers (GPUs).
    for gpu in [test_gpu(), wgsd::testing::test_gpu_buffer_reads()] {
        broadcast_add_mul_on_whole_vec4s_on(gpu);
    }
}

fn broadcast_add_mul_on_whole_vec4s_on(gpu: std::sync::Arc<wgsd::Gpu>) {
    use wgsd::graph::op::{DeviceLimits, Lowering};
    let mut rng = Rng::new(9);
    let mut g = Graph::new();
    let a = g.input("a", TensorDesc::f32(&[2, 12, 4, 8]));
    let same = g.input("same", TensorDesc::f32(&[2, 12, 4, 8]));
    let chan = g.input("chan", TensorDesc::f32(&[2, 12, 1, 1]));
    let bias = g.input("bias", TensorDesc::f32(&[8]));
    let odd = g.input("odd", TensorDesc::f32(&[2, 3, 4, 4]));
    let odd_chan = g.input("odd_chan", TensorDesc::f32(&[2, 3, 1, 1]));
    let outs = [
        g.add("add_same", a, same).unwrap(),
        g.add("add_chan", a, chan).unwrap(),
        g.mul("mul_bias", a, bias).unwrap(),
        g.mul("mul_chan", a, chan).unwrap(),
        g.add("add_odd_chan", odd, odd_chan).unwrap(),
    ];
    for t in outs {
        g.output(t);
    }
    let inputs = vec![
        (a, rng.vec(768, 1.0)),
        (same, rng.vec(768, 1.0)),
        (chan, rng.vec(24, 1.0)),
        (bias, rng.vec(8, 1.0)),
        (odd, rng.vec(96, 1.0)),
        (odd_chan, rng.vec(6, 1.0)),
    ];
    assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
    let limits = DeviceLimits { max_binding: 1 << 27, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let entry = |a: &[usize], b: &[usize]| {
        let mut g = Graph::new();
        let (x, y) = (g.input("x", TensorDesc::f32(a)), g.input("y", TensorDesc::f32(b)));
        let t = g.add("add", x, y).unwrap();
        let (xa, xb, out) = (TensorDesc::f32(a), TensorDesc::f32(b), g.desc(t).clone());
        let node = g.nodes().last().unwrap();
        let ins = [xa, xb];
        node.op.lower(&Lowering { inputs: &ins, output: &out, limits: &limits }).unwrap()[0].entry
    };
    assert_eq!(entry(&[2, 12, 4, 8], &[2, 12, 1, 1]), "add4");
    assert_eq!(entry(&[2, 12, 4, 8], &[2, 12, 4, 8]), "add4_full");
    // Split under a 1 KiB binding limit, a per-channel b ([2, 12, 1, 1], whose index runs over all of a)
    // is bound whole in every dispatch and indexed from the dispatch's first element (params.base).
    let small = DeviceLimits { max_binding: 1024, offset_align: 256, ..limits.clone() };
    let (xa, xb) = (TensorDesc::f32(&[2, 12, 4, 8]), TensorDesc::f32(&[2, 12, 1, 1]));
    let mut g = Graph::new();
    let (x, y) = (g.input("x", xa.clone()), g.input("y", xb.clone()));
    let t = g.add("add", x, y).unwrap();
    let ds = g.nodes().last().unwrap().op.lower(&Lowering { inputs: &[xa, xb], output: g.desc(t), limits: &small }).unwrap();
    assert!(ds.len() > 1);
    let mut start = 0;
    for d in &ds {
        assert_eq!((d.bindings[1].offset, d.bindings[1].size), (0, 96), "b bound whole");
        let word = |k: usize| u32::from_le_bytes(d.params[4 * k..4 * k + 4].try_into().unwrap());
        assert_eq!(word(4), start, "base of a dispatch");
        start += word(0);
    }
    assert_eq!(entry(&[2, 3, 4, 4], &[2, 3, 1, 1]), "add");
    assert_eq!(entry(&[2, 13, 5, 7], &[7]), "add");
}

/// Concatenation (the UNet's skip connections) moves vec4s where both inputs' rows along the dimension
/// are whole vec4s (concat4), else single values; both against the CPU twin, with the choice checked.
#[test]
fn concat_on_whole_vec4s() {
    // Both read paths: textures where the adapter wants them (lavapipe), storage buffers (GPUs).
    for gpu in [test_gpu(), wgsd::testing::test_gpu_buffer_reads()] {
        concat_on_whole_vec4s_on(gpu);
    }
}

fn concat_on_whole_vec4s_on(gpu: std::sync::Arc<wgsd::Gpu>) {
    use wgsd::graph::op::{DeviceLimits, Lowering};
    let mut rng = Rng::new(11);
    let limits = DeviceLimits { max_binding: 1 << 27, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    for (a, b, dim, want) in [
        (vec![2usize, 12, 4, 8], vec![2, 20, 4, 8], 1, "concat4"),
        (vec![3, 4, 8], vec![3, 4, 12], 2, "concat4"),
        (vec![2, 3, 5, 7], vec![2, 2, 5, 7], 1, "concat"),
        (vec![3, 4, 6], vec![3, 4, 2], 2, "concat"),
    ] {
        let mut g = Graph::new();
        let (x, y) = (g.input("x", TensorDesc::f32(&a)), g.input("y", TensorDesc::f32(&b)));
        let t = g.concat("cat", x, y, dim).unwrap();
        g.output(t);
        let node = g.nodes().last().unwrap();
        let (ins, out) = ([TensorDesc::f32(&a), TensorDesc::f32(&b)], g.desc(t).clone());
        assert_eq!(node.op.lower(&Lowering { inputs: &ins, output: &out, limits: &limits }).unwrap()[0].entry, want, "{a:?} + {b:?}");
        let inputs = vec![(x, rng.vec(a.iter().product(), 1.0)), (y, rng.vec(b.iter().product(), 1.0))];
        let cmp = check_graph(&gpu, g, &inputs).unwrap();
        assert!(cmp[0].max_abs == 0.0, "{a:?} + {b:?} along {dim}: {:e}", cmp[0].max_abs);
    }
}

/// An f16 embedding table (f16 weights, as CLIP's token table under --precision f16) gathers the same rows
/// as its f16-rounded f32 twin, with and without a first id.
#[test]
fn gather_from_an_f16_table() {
    let gpu = test_gpu();
    let mut rng = Rng::new(8);
    let mut g = Graph::new();
    let vals = rng.vec(97 * 24, 2.0);
    let table = g.param(&wgsd::Param::upload(&gpu, "table16", TensorDesc::new(&[97, 24], wgsd::DType::F16), &vals, true).unwrap());
    let ids = g.input("ids", TensorDesc::f32(&[3, 11]));
    let outs = [g.gather("gather16", table, ids).unwrap(), g.gather_from("gather16_from", table, ids, 50).unwrap()];
    for t in outs {
        g.output(t);
    }
    // In range, past the end, negative, and ids that land on odd rows (the second half of a word).
    let id_vals: Vec<f32> = (0..33).map(|i| ((i * 29) % 160) as f32 - 5.0).collect();
    assert_close(&check_graph(&gpu, g, &[(ids, id_vals)]).unwrap(), TOL);
}

#[test]
fn bad_shapes_are_errors_naming_op_and_shapes() {
    let mut g = Graph::new();
    let a = g.input("a", TensorDesc::f32(&[2, 3, 4]));
    let b = g.input("b", TensorDesc::f32(&[5]));
    let err = g.add("blocks.0.add", a, b).unwrap_err().to_string();
    assert!(err.contains("add") && err.contains("blocks.0.add") && err.contains("2×3×4") && err.contains("[5]"), "{err}");
    let odd = g.input("odd", TensorDesc::f32(&[4, 7]));
    let err = g.geglu("ff", odd).unwrap_err().to_string();
    assert!(err.contains("geglu") && err.contains("4×7"), "{err}");
    let h = g.input("h", TensorDesc::new(&[4], wgsd::DType::F16));
    let err = g.silu("act", h).unwrap_err().to_string();
    assert!(err.contains("dtype"), "{err}");
}

#[test]
fn timestep_embedding_matches_diffusers_formula() {
    use wgsd::kernels::embedding::TimestepEmbedding;
    let gpu = test_gpu();
    // SD's UNet: dim 320, flip, shift 0; also odd dims, shift 1 and a non-unit scale.
    for (dim, flip, shift, scale) in [(320, true, 0.0, 1.0), (33, false, 1.0, 1.0), (8, true, 1.0, 2.5), (1281, false, 0.0, 1.0)] {
        let mut g = Graph::new();
        let t = g.input("t", TensorDesc::f32(&[5]));
        let mut emb = TimestepEmbedding::new(dim, flip, shift);
        emb.scale = scale;
        let e = g.timestep_embedding("time_proj", t, emb).unwrap();
        g.output(e);
        let ts = vec![999.0, 981.0, 500.0, 1.0, 0.0];
        assert_close(&check_graph(&gpu, g, &[(t, ts)]).unwrap(), TOL);
    }
}

/// On both test GPUs: on CPU adapters the shared one reads q, k and v of the heads-of-64 kernel through
/// textures, the other from storage buffers.
#[test]
fn rowwise_attention_causal_and_full() {
    use wgsd::graph::op::{DeviceLimits, Lowering};
    use wgsd::kernels::attention_rowwise::RowwiseAttention;
    for gpu in [test_gpu(), wgsd::testing::test_gpu_buffer_reads()] {
        let limits = DeviceLimits::from_gpu(&gpu);
        let mut rng = Rng::new(9);
        // CLIP's shape (77 tokens, 12 heads of 64) cut to 2 heads, plus awkward sizes.
        // Heads of 64 take the vec4 kernel: more queries than keys, and a non-causal case whose key count is
        // not a multiple of its 8-key blocks.
        for (b, nq, nk, h, d, causal) in
            [(2, 77, 77, 2, 64, true), (1, 5, 5, 3, 7, true), (2, 9, 13, 2, 33, false), (1, 1, 1, 1, 1, true), (1, 19, 11, 3, 64, true), (2, 9, 21, 2, 64, false)]
        {
            let mut g = Graph::new();
            let (qd, kd) = (TensorDesc::f32(&[b, nq, h * d]), TensorDesc::f32(&[b, nk, h * d]));
            let q = g.input("q", qd.clone());
            let k = g.input("k", kd.clone());
            let v = g.input("v", kd.clone());
            let op = RowwiseAttention { heads: h, scale: None, causal };
            let lowered = wgsd::graph::op::Op::lower(&op, &Lowering { inputs: &[qd.clone(), kd.clone(), kd.clone()], output: &qd, limits: &limits }).unwrap();
            assert!(lowered.iter().all(|x| x.bindings[..3].iter().all(|bind| bind.texture == (limits.texture_reads && d == 64))));
            let o = g.op("attn", op, &[q, k, v]).unwrap();
            g.output(o);
            let inputs = vec![(q, rng.vec(b * nq * h * d, 2.0)), (k, rng.vec(b * nk * h * d, 2.0)), (v, rng.vec(b * nk * h * d, 1.0))];
            assert_close(&check_graph(&gpu, g, &inputs).unwrap(), TOL);
        }
    }
}

/// On CPU adapters that read through textures, the vec4 forms of add, concat, GEGLU and transpose read
/// their inputs from textures (never their outputs); the scalar forms and other adapters read buffers.
#[test]
fn vec4_forms_read_textures_on_cpu_adapters() {
    use wgsd::graph::op::{DeviceLimits, Lowering, Op};
    use wgsd::kernels::binary::{Binary, BinaryKind, Concat};
    use wgsd::kernels::unary::{Geglu, Transpose};
    let gpu_limits = DeviceLimits { max_binding: 1 << 27, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 8, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let tex = DeviceLimits { cpu: true, texture_reads: true, max_texture_rows: 16384, ..gpu_limits.clone() };
    let marks = |op: &dyn Op, ins: &[TensorDesc], limits: &DeviceLimits| -> Vec<(&'static str, Vec<bool>)> {
        let refs: Vec<&TensorDesc> = ins.iter().collect();
        let out = op.infer(&refs).unwrap();
        let ds = op.lower(&Lowering { inputs: ins, output: &out, limits }).unwrap();
        ds.iter().map(|d| (d.entry, d.bindings.iter().map(|b| b.texture).collect())).collect()
    };
    let x = TensorDesc::f32(&[2, 320, 8, 8]);
    // (op, inputs, the entry point expected, which bindings read textures)
    type Case = (Box<dyn Op>, Vec<TensorDesc>, &'static str, Vec<bool>);
    let cases: Vec<Case> = vec![
        (Box::new(Binary { kind: BinaryKind::Add }), vec![x.clone(), x.clone()], "add4_full", vec![true, true, false]),
        (Box::new(Binary { kind: BinaryKind::Add }), vec![x.clone(), TensorDesc::f32(&[320, 1, 1])], "add4", vec![true, true, false]),
        (Box::new(Binary { kind: BinaryKind::Add }), vec![TensorDesc::f32(&[3, 5]), TensorDesc::f32(&[3, 5])], "add", vec![false, false, false]),
        (Box::new(Concat { dim: 1 }), vec![x.clone(), x.clone()], "concat4", vec![true, true, false]),
        (Box::new(Geglu), vec![TensorDesc::f32(&[2, 64, 2560])], "geglu4", vec![true, false]),
        (Box::new(Transpose), vec![TensorDesc::f32(&[2, 320, 64])], "transpose4", vec![true, false]),
    ];
    for (op, ins, entry, want) in cases {
        for (e, m) in marks(op.as_ref(), &ins, &tex) {
            assert_eq!((e, &m), (entry, &want), "{} on a texture-reading CPU adapter", op.kind());
        }
        for (_, m) in marks(op.as_ref(), &ins, &gpu_limits) {
            assert!(m.iter().all(|t| !t), "{} on a GPU", op.kind());
        }
    }
    // The UNet's largest GEGLU input (84 MB) is read through textures in windows of at most 32 MiB, which
    // keeps the scratch texture no larger than the convs' and matmuls'; GPUs take it in one dispatch.
    let big = [TensorDesc::f32(&[2, 4096, 2560])];
    let out = Geglu.infer(&[&big[0]]).unwrap();
    let ds = Geglu.lower(&Lowering { inputs: &big, output: &out, limits: &tex }).unwrap();
    assert!(ds.len() >= 3 && ds.iter().all(|d| d.bindings[0].texture && d.bindings[0].size <= 32 << 20));
    assert!(ds.iter().map(|d| d.bindings[0].size).sum::<u64>() >= big[0].bytes());
    assert_eq!(Geglu.lower(&Lowering { inputs: &big, output: &out, limits: &gpu_limits }).unwrap().len(), 1);
}
