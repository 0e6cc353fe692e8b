use wgsd::graph::op::DeviceLimits;
use wgsd::testing::{rel_l2, test_gpu, Rng};
use wgsd::{Graph, Param, Plan, TensorDesc};

/// A chain of elementwise ops: intermediates must share buffers, results must match the CPU, and the
/// same plan must re-run with new inputs.
#[test]
fn liveness_reuses_buffers_and_plan_reruns() {
    let gpu = test_gpu();
    let n = 1000;
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[n]));
    let w = Param::upload(&gpu, "w", TensorDesc::f32(&[n]), &Rng::new(1).vec(n, 1.0), true).unwrap();
    let w = g.param(&w);
    let mut h = x;
    for i in 0..10 {
        h = g.silu(&format!("act{i}"), h).unwrap();
        h = g.add(&format!("add{i}"), h, w).unwrap();
    }
    g.output(h);
    let plan = Plan::new(gpu.clone(), g).unwrap();
    let mem = plan.memory().clone();
    println!("{mem}");
    assert!(mem.pool_buffers <= 2, "a chain needs two ping-pong buffers, got {}", mem.pool_buffers);
    assert!(mem.intermediates < mem.intermediates_unshared / 4);
    for seed in [10, 11] {
        let data = Rng::new(seed).vec(n, 2.0);
        let want = plan.graph().eval_cpu(&[(x, &data)]).unwrap()[h.index()].clone().unwrap();
        plan.write(x, &data).unwrap();
        plan.run().unwrap();
        let got = plan.read(h).unwrap();
        assert!(rel_l2(&got, &want) < 1e-5);
    }
    // Debug mode reads back every node, by name.
    let dumps = plan.run_debug().unwrap();
    assert_eq!(dumps.len(), 20);
    assert_eq!(dumps[3].name, "add1");
    let times = plan.profile().unwrap();
    assert_eq!(times.len(), 20);
    assert!(times.iter().all(|t| t.is_finite() && *t >= 0.0));
}

/// Writes wait for the plan's next command encoder (a run or a read) and land in the order given; a run
/// can read its outputs back in the same encoder; `write_buffer` reaches a buffer outside the graph.
#[test]
fn writes_land_in_order_before_the_next_run_or_read() {
    let gpu = test_gpu();
    let n = 37;
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[n]));
    let w = Param::upload(&gpu, "w", TensorDesc::f32(&[n]), &vec![0.0; n], true).unwrap();
    let wt = g.param(&w);
    let a = g.silu("a", x).unwrap();
    let y = g.add("y", a, wt).unwrap();
    g.output(y);
    let plan = Plan::new(gpu.clone(), g).unwrap();
    let data: Vec<Vec<f32>> = (0..4).map(|s| Rng::new(20 + s).vec(n, 2.0)).collect();
    let want = |x_data: &[f32], w_data: &[f32]| -> Vec<f32> { x_data.iter().zip(w_data).map(|(x, w)| x / (1.0 + (-x).exp()) + w).collect() };

    plan.write(x, &data[0]).unwrap();
    plan.write(x, &data[1]).unwrap();
    assert_eq!(plan.read(x).unwrap(), data[1], "a read sees the pending writes, the last one last");

    plan.write(x, &data[2]).unwrap();
    let out = plan.run_and_read(&[y, x]).unwrap();
    assert_eq!(out[1], data[2]);
    assert!(rel_l2(&out[0], &want(&data[2], &vec![0.0; n])) < 1e-5);

    let w_new = Rng::new(30).vec(n, 1.0);
    plan.write_buffer(&w.buffer().unwrap(), 0, bytemuck::cast_slice(&w_new));
    plan.write(x, &data[3]).unwrap();
    plan.run().unwrap();
    assert!(rel_l2(&plan.read(y).unwrap(), &want(&data[3], &w_new)) < 1e-5, "the run saw the new weight");
    assert!(plan.run_and_read(&[a]).unwrap_err().to_string().contains("intermediate"));
}

#[test]
fn intermediates_cannot_be_read_and_inputs_are_checked() {
    let gpu = test_gpu();
    let mut g = Graph::new();
    let x = g.input("x", TensorDesc::f32(&[8]));
    let a = g.silu("a", x).unwrap();
    let b = g.silu("b", a).unwrap();
    g.output(b);
    let plan = Plan::new(gpu, g).unwrap();
    assert!(plan.write(x, &[0.0; 7]).unwrap_err().to_string().contains("7 values"));
    assert!(plan.read(a).unwrap_err().to_string().contains("intermediate"));
}

/// An op whose binding exceeds the device limit and cannot be split is refused when planning, naming the
/// op and the shapes.
#[test]
fn unsplittable_binding_over_limit_is_an_error() {
    let gpu = test_gpu();
    let limit = gpu.limits.max_storage_buffer_binding_size;
    // concat does not split: two halves each just over half the limit make an output over it.
    let half = (limit / 4 / 2 + 1024) as usize;
    if (2 * half * 4) as u64 > gpu.limits.max_buffer_size {
        // A tensor over the binding limit cannot even be allocated on this adapter: nothing to refuse.
        eprintln!("SKIPPED: max_buffer_size equals the binding limit on {}", gpu.info.name);
        return;
    }
    let mut g = Graph::new();
    let a = g.input("a", TensorDesc::f32(&[1, half]));
    let b = g.input("b", TensorDesc::f32(&[1, half]));
    let c = g.concat("cat", a, b, 1).unwrap();
    g.output(c);
    let err = Plan::new(gpu, g).err().expect("over-limit binding must be refused").to_string();
    assert!(err.contains("concat 'cat'") && err.contains("max_storage_buffer_binding_size"), "{err}");
}

/// Splitting logic can be checked without a GPU: lower an op under tiny limits.
#[test]
fn elementwise_ops_split_under_small_limits() {
    use wgsd::graph::op::{Lowering, Op};
    let limits = DeviceLimits { max_binding: 4096, offset_align: 256, max_workgroups: 65535, subgroup_min_size: 0, cpu: false, texture_reads: false, max_texture_rows: 0, texture_window: 16 << 20, conv: Default::default() };
    let x = TensorDesc::f32(&[10_000]);
    let op = wgsd::kernels::unary::Map { act: wgsd::kernels::unary::Activation::Silu, alpha: 1.0, beta: 0.0 };
    let ds = op.lower(&Lowering { inputs: &[x.clone()], output: &x, limits: &limits }).unwrap();
    assert!(ds.len() >= 3);
    for d in &ds {
        for b in &d.bindings {
            assert!(b.size <= 4096 && b.offset % 256 == 0);
        }
    }
}

/// A node that writes a kept output (a gradient) still ends its inputs' lives: the next intermediate reuses
/// their buffer (a training graph's many gradient outputs leaked the pool before).
#[test]
fn nodes_writing_outputs_release_their_inputs() {
    let gpu = test_gpu();
    let mut g = Graph::new();
    let n = 1 << 16;
    let x = g.input("x", TensorDesc::f32(&[n]));
    let a = g.scale("a", x, 2.0, 0.0).unwrap();
    let o1 = g.scale("o1", a, 3.0, 0.0).unwrap(); // last reader of a, writes an output
    g.output(o1);
    let b = g.scale("b", x, 4.0, 0.0).unwrap(); // may take a's buffer
    let o2 = g.scale("o2", b, 5.0, 0.0).unwrap();
    g.output(o2);
    let plan = Plan::new(gpu, g).unwrap();
    assert_eq!(plan.memory().pool_buffers, 1, "{}", plan.memory());
    assert_eq!(plan.memory().intermediates, 4 * n as u64);
    plan.write(x, &vec![1.0; n]).unwrap();
    plan.run().unwrap();
    assert!(plan.read(o1).unwrap().iter().all(|v| *v == 6.0));
    assert!(plan.read(o2).unwrap().iter().all(|v| *v == 20.0));
}

/// With a shared arena (`Gpu::shared_arena`, the default on CPU adapters) every intermediate lies in one
/// buffer and nodes bind their inputs from it read-write, through shader variants that declare them so;
/// without it a node's inputs and output never share an arena. Both plans give the CPU twin's results for
/// ops of several shader families (elementwise with two pooled inputs, matmul, conv with a residual, group
/// norm), and the shared one needs no more memory. `Plan::prepare_pipelines` creates exactly the variants
/// the plan then uses.
#[test]
fn shared_arena_binds_inputs_read_write() {
    use wgsd::kernels::conv2d::Conv2dOpts;
    use wgsd::kernels::matmul::MatmulOpts;
    let record = |gpu: &std::sync::Arc<wgsd::Gpu>| {
        let mut rng = Rng::new(3);
        let mut g = Graph::new();
        let x = g.input("x", TensorDesc::f32(&[2, 8, 6, 6]));
        let w = g.param(&Param::upload(gpu, "w", TensorDesc::f32(&[8, 8, 3, 3]), &rng.vec(576, 0.2), true).unwrap());
        let m = g.param(&Param::upload(gpu, "m", TensorDesc::f32(&[36, 36]), &rng.vec(1296, 0.2), true).unwrap());
        let a = g.silu("a", x).unwrap();
        let b = g.scale("b", x, 0.5, 1.0).unwrap();
        let c = g.add("c", a, b).unwrap();
        let d = g.conv2d("d", c, w, None, Conv2dOpts::new(1, 1), Some(a)).unwrap();
        let e = g.group_norm("e", d, 4, 1e-5, None, None, true).unwrap();
        let f = g.reshape(e, &[16, 36]).unwrap();
        let y = g.matmul("y", f, m, MatmulOpts::default()).unwrap();
        g.output(y);
        (g, vec![(x, rng.vec(576, 1.0))])
    };
    let mut pools = Vec::new();
    for shared in [true, false] {
        let mut gpu = wgsd::Gpu::new(&wgsd::GpuOptions::from_env()).unwrap_or_else(|e| panic!("GPU tests need a GPU adapter: {e}"));
        gpu.shared_arena = shared;
        let gpu = std::sync::Arc::new(gpu);
        // The pipelines prepared ahead of planning (beside an upload, in generation) are the plan's own.
        let (g, _) = record(&gpu);
        Plan::prepare_pipelines(&gpu, g).unwrap();
        let prepared = gpu.pipeline_count();
        assert!(prepared >= 4, "{prepared} pipelines prepared");
        let (g, _) = record(&gpu);
        let mem = Plan::new(gpu.clone(), g).unwrap().memory().clone();
        assert_eq!(gpu.pipeline_count(), prepared, "planning created pipelines that were not prepared (shared arena: {shared})");
        let (g, inputs) = record(&gpu);
        wgsd::testing::assert_close(&wgsd::testing::check_graph(&gpu, g, &inputs).unwrap(), 1e-5);
        pools.push((mem.pool_buffers, mem.intermediates));
    }
    assert_eq!(pools[0].0, 1, "shared arena: {pools:?}");
    assert!(pools[1].0 >= 2, "separate arenas: {pools:?}");
    assert!(pools[0].1 <= pools[1].1, "{pools:?}");
}
