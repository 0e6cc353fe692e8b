// EXPERIMENT: subgroup-broadcast matmul (A and B untransposed, K and N multiples of 4).
// Entry points: mm_sg, mm_sg4.

struct Params {
    m: u32, n: u32, k: u32, flags: u32,
    a_bs: u32, a_sm: u32, a_sk: u32, b_bs: u32,
    b_sk: u32, b_sn: u32, act: u32, alpha: f32,
    m0: u32, z0: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

fn epilogue(acc: f32, col: u32) -> f32 {
    var v = p.alpha * acc;
    if ((p.flags & 1u) != 0u) {
        v += bias[col];
    }
    return activate(v, p.act);
}

fn store(z: u32, row: u32, col: u32, acc: f32) {
    if (row < p.m && col < p.n) {
        out[(z * p.m + row) * p.n + col] = epilogue(acc, col);
    }
}

fn store_row(z: u32, row: u32, col: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        store(z, row, col + j, v[j]);
    }
}

@compute @workgroup_size(8)
fn mm_k1_r32c8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
         @builtin(subgroup_invocation_id) sl: u32) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * 32u;
    let col0 = wg.x * 64u + lid.x * 8u;
    let ar0 = z * p.a_bs + min(row0 + 0u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar1 = z * p.a_bs + min(row0 + 8u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar2 = z * p.a_bs + min(row0 + 16u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar3 = z * p.a_bs + min(row0 + 24u + sl % 8u, p.m - 1u) * p.a_sm;
    let bc0 = z * p.b_bs + min(col0 + 0u, p.n - 1u) * p.b_sn;
    let bc1 = z * p.b_bs + min(col0 + 1u, p.n - 1u) * p.b_sn;
    let bc2 = z * p.b_bs + min(col0 + 2u, p.n - 1u) * p.b_sn;
    let bc3 = z * p.b_bs + min(col0 + 3u, p.n - 1u) * p.b_sn;
    let bc4 = z * p.b_bs + min(col0 + 4u, p.n - 1u) * p.b_sn;
    let bc5 = z * p.b_bs + min(col0 + 5u, p.n - 1u) * p.b_sn;
    let bc6 = z * p.b_bs + min(col0 + 6u, p.n - 1u) * p.b_sn;
    let bc7 = z * p.b_bs + min(col0 + 7u, p.n - 1u) * p.b_sn;
    var acc0_0: vec4<f32>;
    var acc0_1: vec4<f32>;
    var acc1_0: vec4<f32>;
    var acc1_1: vec4<f32>;
    var acc2_0: vec4<f32>;
    var acc2_1: vec4<f32>;
    var acc3_0: vec4<f32>;
    var acc3_1: vec4<f32>;
    var acc4_0: vec4<f32>;
    var acc4_1: vec4<f32>;
    var acc5_0: vec4<f32>;
    var acc5_1: vec4<f32>;
    var acc6_0: vec4<f32>;
    var acc6_1: vec4<f32>;
    var acc7_0: vec4<f32>;
    var acc7_1: vec4<f32>;
    var acc8_0: vec4<f32>;
    var acc8_1: vec4<f32>;
    var acc9_0: vec4<f32>;
    var acc9_1: vec4<f32>;
    var acc10_0: vec4<f32>;
    var acc10_1: vec4<f32>;
    var acc11_0: vec4<f32>;
    var acc11_1: vec4<f32>;
    var acc12_0: vec4<f32>;
    var acc12_1: vec4<f32>;
    var acc13_0: vec4<f32>;
    var acc13_1: vec4<f32>;
    var acc14_0: vec4<f32>;
    var acc14_1: vec4<f32>;
    var acc15_0: vec4<f32>;
    var acc15_1: vec4<f32>;
    var acc16_0: vec4<f32>;
    var acc16_1: vec4<f32>;
    var acc17_0: vec4<f32>;
    var acc17_1: vec4<f32>;
    var acc18_0: vec4<f32>;
    var acc18_1: vec4<f32>;
    var acc19_0: vec4<f32>;
    var acc19_1: vec4<f32>;
    var acc20_0: vec4<f32>;
    var acc20_1: vec4<f32>;
    var acc21_0: vec4<f32>;
    var acc21_1: vec4<f32>;
    var acc22_0: vec4<f32>;
    var acc22_1: vec4<f32>;
    var acc23_0: vec4<f32>;
    var acc23_1: vec4<f32>;
    var acc24_0: vec4<f32>;
    var acc24_1: vec4<f32>;
    var acc25_0: vec4<f32>;
    var acc25_1: vec4<f32>;
    var acc26_0: vec4<f32>;
    var acc26_1: vec4<f32>;
    var acc27_0: vec4<f32>;
    var acc27_1: vec4<f32>;
    var acc28_0: vec4<f32>;
    var acc28_1: vec4<f32>;
    var acc29_0: vec4<f32>;
    var acc29_1: vec4<f32>;
    var acc30_0: vec4<f32>;
    var acc30_1: vec4<f32>;
    var acc31_0: vec4<f32>;
    var acc31_1: vec4<f32>;
    var ka = 0u;
    var kb = 0u;
    for (var k = 0u; k < p.k; k++) {
        let bv0 = vec4<f32>(b[bc0 + kb], b[bc1 + kb], b[bc2 + kb], b[bc3 + kb]);
        let bv1 = vec4<f32>(b[bc4 + kb], b[bc5 + kb], b[bc6 + kb], b[bc7 + kb]);
        let av0 = a[ar0 + ka];
        { let v = subgroupBroadcast(av0, 0u); acc0_0 = fma(bv0, vec4(v), acc0_0); acc0_1 = fma(bv1, vec4(v), acc0_1); }
        { let v = subgroupBroadcast(av0, 1u); acc1_0 = fma(bv0, vec4(v), acc1_0); acc1_1 = fma(bv1, vec4(v), acc1_1); }
        { let v = subgroupBroadcast(av0, 2u); acc2_0 = fma(bv0, vec4(v), acc2_0); acc2_1 = fma(bv1, vec4(v), acc2_1); }
        { let v = subgroupBroadcast(av0, 3u); acc3_0 = fma(bv0, vec4(v), acc3_0); acc3_1 = fma(bv1, vec4(v), acc3_1); }
        { let v = subgroupBroadcast(av0, 4u); acc4_0 = fma(bv0, vec4(v), acc4_0); acc4_1 = fma(bv1, vec4(v), acc4_1); }
        { let v = subgroupBroadcast(av0, 5u); acc5_0 = fma(bv0, vec4(v), acc5_0); acc5_1 = fma(bv1, vec4(v), acc5_1); }
        { let v = subgroupBroadcast(av0, 6u); acc6_0 = fma(bv0, vec4(v), acc6_0); acc6_1 = fma(bv1, vec4(v), acc6_1); }
        { let v = subgroupBroadcast(av0, 7u); acc7_0 = fma(bv0, vec4(v), acc7_0); acc7_1 = fma(bv1, vec4(v), acc7_1); }
        let av1 = a[ar1 + ka];
        { let v = subgroupBroadcast(av1, 0u); acc8_0 = fma(bv0, vec4(v), acc8_0); acc8_1 = fma(bv1, vec4(v), acc8_1); }
        { let v = subgroupBroadcast(av1, 1u); acc9_0 = fma(bv0, vec4(v), acc9_0); acc9_1 = fma(bv1, vec4(v), acc9_1); }
        { let v = subgroupBroadcast(av1, 2u); acc10_0 = fma(bv0, vec4(v), acc10_0); acc10_1 = fma(bv1, vec4(v), acc10_1); }
        { let v = subgroupBroadcast(av1, 3u); acc11_0 = fma(bv0, vec4(v), acc11_0); acc11_1 = fma(bv1, vec4(v), acc11_1); }
        { let v = subgroupBroadcast(av1, 4u); acc12_0 = fma(bv0, vec4(v), acc12_0); acc12_1 = fma(bv1, vec4(v), acc12_1); }
        { let v = subgroupBroadcast(av1, 5u); acc13_0 = fma(bv0, vec4(v), acc13_0); acc13_1 = fma(bv1, vec4(v), acc13_1); }
        { let v = subgroupBroadcast(av1, 6u); acc14_0 = fma(bv0, vec4(v), acc14_0); acc14_1 = fma(bv1, vec4(v), acc14_1); }
        { let v = subgroupBroadcast(av1, 7u); acc15_0 = fma(bv0, vec4(v), acc15_0); acc15_1 = fma(bv1, vec4(v), acc15_1); }
        let av2 = a[ar2 + ka];
        { let v = subgroupBroadcast(av2, 0u); acc16_0 = fma(bv0, vec4(v), acc16_0); acc16_1 = fma(bv1, vec4(v), acc16_1); }
        { let v = subgroupBroadcast(av2, 1u); acc17_0 = fma(bv0, vec4(v), acc17_0); acc17_1 = fma(bv1, vec4(v), acc17_1); }
        { let v = subgroupBroadcast(av2, 2u); acc18_0 = fma(bv0, vec4(v), acc18_0); acc18_1 = fma(bv1, vec4(v), acc18_1); }
        { let v = subgroupBroadcast(av2, 3u); acc19_0 = fma(bv0, vec4(v), acc19_0); acc19_1 = fma(bv1, vec4(v), acc19_1); }
        { let v = subgroupBroadcast(av2, 4u); acc20_0 = fma(bv0, vec4(v), acc20_0); acc20_1 = fma(bv1, vec4(v), acc20_1); }
        { let v = subgroupBroadcast(av2, 5u); acc21_0 = fma(bv0, vec4(v), acc21_0); acc21_1 = fma(bv1, vec4(v), acc21_1); }
        { let v = subgroupBroadcast(av2, 6u); acc22_0 = fma(bv0, vec4(v), acc22_0); acc22_1 = fma(bv1, vec4(v), acc22_1); }
        { let v = subgroupBroadcast(av2, 7u); acc23_0 = fma(bv0, vec4(v), acc23_0); acc23_1 = fma(bv1, vec4(v), acc23_1); }
        let av3 = a[ar3 + ka];
        { let v = subgroupBroadcast(av3, 0u); acc24_0 = fma(bv0, vec4(v), acc24_0); acc24_1 = fma(bv1, vec4(v), acc24_1); }
        { let v = subgroupBroadcast(av3, 1u); acc25_0 = fma(bv0, vec4(v), acc25_0); acc25_1 = fma(bv1, vec4(v), acc25_1); }
        { let v = subgroupBroadcast(av3, 2u); acc26_0 = fma(bv0, vec4(v), acc26_0); acc26_1 = fma(bv1, vec4(v), acc26_1); }
        { let v = subgroupBroadcast(av3, 3u); acc27_0 = fma(bv0, vec4(v), acc27_0); acc27_1 = fma(bv1, vec4(v), acc27_1); }
        { let v = subgroupBroadcast(av3, 4u); acc28_0 = fma(bv0, vec4(v), acc28_0); acc28_1 = fma(bv1, vec4(v), acc28_1); }
        { let v = subgroupBroadcast(av3, 5u); acc29_0 = fma(bv0, vec4(v), acc29_0); acc29_1 = fma(bv1, vec4(v), acc29_1); }
        { let v = subgroupBroadcast(av3, 6u); acc30_0 = fma(bv0, vec4(v), acc30_0); acc30_1 = fma(bv1, vec4(v), acc30_1); }
        { let v = subgroupBroadcast(av3, 7u); acc31_0 = fma(bv0, vec4(v), acc31_0); acc31_1 = fma(bv1, vec4(v), acc31_1); }
        ka += p.a_sk;
        kb += p.b_sk;
    }
    store_row(z, row0 + 0u, col0 + 0u, acc0_0);
    store_row(z, row0 + 0u, col0 + 4u, acc0_1);
    store_row(z, row0 + 1u, col0 + 0u, acc1_0);
    store_row(z, row0 + 1u, col0 + 4u, acc1_1);
    store_row(z, row0 + 2u, col0 + 0u, acc2_0);
    store_row(z, row0 + 2u, col0 + 4u, acc2_1);
    store_row(z, row0 + 3u, col0 + 0u, acc3_0);
    store_row(z, row0 + 3u, col0 + 4u, acc3_1);
    store_row(z, row0 + 4u, col0 + 0u, acc4_0);
    store_row(z, row0 + 4u, col0 + 4u, acc4_1);
    store_row(z, row0 + 5u, col0 + 0u, acc5_0);
    store_row(z, row0 + 5u, col0 + 4u, acc5_1);
    store_row(z, row0 + 6u, col0 + 0u, acc6_0);
    store_row(z, row0 + 6u, col0 + 4u, acc6_1);
    store_row(z, row0 + 7u, col0 + 0u, acc7_0);
    store_row(z, row0 + 7u, col0 + 4u, acc7_1);
    store_row(z, row0 + 8u, col0 + 0u, acc8_0);
    store_row(z, row0 + 8u, col0 + 4u, acc8_1);
    store_row(z, row0 + 9u, col0 + 0u, acc9_0);
    store_row(z, row0 + 9u, col0 + 4u, acc9_1);
    store_row(z, row0 + 10u, col0 + 0u, acc10_0);
    store_row(z, row0 + 10u, col0 + 4u, acc10_1);
    store_row(z, row0 + 11u, col0 + 0u, acc11_0);
    store_row(z, row0 + 11u, col0 + 4u, acc11_1);
    store_row(z, row0 + 12u, col0 + 0u, acc12_0);
    store_row(z, row0 + 12u, col0 + 4u, acc12_1);
    store_row(z, row0 + 13u, col0 + 0u, acc13_0);
    store_row(z, row0 + 13u, col0 + 4u, acc13_1);
    store_row(z, row0 + 14u, col0 + 0u, acc14_0);
    store_row(z, row0 + 14u, col0 + 4u, acc14_1);
    store_row(z, row0 + 15u, col0 + 0u, acc15_0);
    store_row(z, row0 + 15u, col0 + 4u, acc15_1);
    store_row(z, row0 + 16u, col0 + 0u, acc16_0);
    store_row(z, row0 + 16u, col0 + 4u, acc16_1);
    store_row(z, row0 + 17u, col0 + 0u, acc17_0);
    store_row(z, row0 + 17u, col0 + 4u, acc17_1);
    store_row(z, row0 + 18u, col0 + 0u, acc18_0);
    store_row(z, row0 + 18u, col0 + 4u, acc18_1);
    store_row(z, row0 + 19u, col0 + 0u, acc19_0);
    store_row(z, row0 + 19u, col0 + 4u, acc19_1);
    store_row(z, row0 + 20u, col0 + 0u, acc20_0);
    store_row(z, row0 + 20u, col0 + 4u, acc20_1);
    store_row(z, row0 + 21u, col0 + 0u, acc21_0);
    store_row(z, row0 + 21u, col0 + 4u, acc21_1);
    store_row(z, row0 + 22u, col0 + 0u, acc22_0);
    store_row(z, row0 + 22u, col0 + 4u, acc22_1);
    store_row(z, row0 + 23u, col0 + 0u, acc23_0);
    store_row(z, row0 + 23u, col0 + 4u, acc23_1);
    store_row(z, row0 + 24u, col0 + 0u, acc24_0);
    store_row(z, row0 + 24u, col0 + 4u, acc24_1);
    store_row(z, row0 + 25u, col0 + 0u, acc25_0);
    store_row(z, row0 + 25u, col0 + 4u, acc25_1);
    store_row(z, row0 + 26u, col0 + 0u, acc26_0);
    store_row(z, row0 + 26u, col0 + 4u, acc26_1);
    store_row(z, row0 + 27u, col0 + 0u, acc27_0);
    store_row(z, row0 + 27u, col0 + 4u, acc27_1);
    store_row(z, row0 + 28u, col0 + 0u, acc28_0);
    store_row(z, row0 + 28u, col0 + 4u, acc28_1);
    store_row(z, row0 + 29u, col0 + 0u, acc29_0);
    store_row(z, row0 + 29u, col0 + 4u, acc29_1);
    store_row(z, row0 + 30u, col0 + 0u, acc30_0);
    store_row(z, row0 + 30u, col0 + 4u, acc30_1);
    store_row(z, row0 + 31u, col0 + 0u, acc31_0);
    store_row(z, row0 + 31u, col0 + 4u, acc31_1);
}

@compute @workgroup_size(8)
fn mm_k1_r64c8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
         @builtin(subgroup_invocation_id) sl: u32) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * 64u;
    let col0 = wg.x * 64u + lid.x * 8u;
    let ar0 = z * p.a_bs + min(row0 + 0u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar1 = z * p.a_bs + min(row0 + 8u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar2 = z * p.a_bs + min(row0 + 16u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar3 = z * p.a_bs + min(row0 + 24u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar4 = z * p.a_bs + min(row0 + 32u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar5 = z * p.a_bs + min(row0 + 40u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar6 = z * p.a_bs + min(row0 + 48u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar7 = z * p.a_bs + min(row0 + 56u + sl % 8u, p.m - 1u) * p.a_sm;
    let bc0 = z * p.b_bs + min(col0 + 0u, p.n - 1u) * p.b_sn;
    let bc1 = z * p.b_bs + min(col0 + 1u, p.n - 1u) * p.b_sn;
    let bc2 = z * p.b_bs + min(col0 + 2u, p.n - 1u) * p.b_sn;
    let bc3 = z * p.b_bs + min(col0 + 3u, p.n - 1u) * p.b_sn;
    let bc4 = z * p.b_bs + min(col0 + 4u, p.n - 1u) * p.b_sn;
    let bc5 = z * p.b_bs + min(col0 + 5u, p.n - 1u) * p.b_sn;
    let bc6 = z * p.b_bs + min(col0 + 6u, p.n - 1u) * p.b_sn;
    let bc7 = z * p.b_bs + min(col0 + 7u, p.n - 1u) * p.b_sn;
    var acc0_0: vec4<f32>;
    var acc0_1: vec4<f32>;
    var acc1_0: vec4<f32>;
    var acc1_1: vec4<f32>;
    var acc2_0: vec4<f32>;
    var acc2_1: vec4<f32>;
    var acc3_0: vec4<f32>;
    var acc3_1: vec4<f32>;
    var acc4_0: vec4<f32>;
    var acc4_1: vec4<f32>;
    var acc5_0: vec4<f32>;
    var acc5_1: vec4<f32>;
    var acc6_0: vec4<f32>;
    var acc6_1: vec4<f32>;
    var acc7_0: vec4<f32>;
    var acc7_1: vec4<f32>;
    var acc8_0: vec4<f32>;
    var acc8_1: vec4<f32>;
    var acc9_0: vec4<f32>;
    var acc9_1: vec4<f32>;
    var acc10_0: vec4<f32>;
    var acc10_1: vec4<f32>;
    var acc11_0: vec4<f32>;
    var acc11_1: vec4<f32>;
    var acc12_0: vec4<f32>;
    var acc12_1: vec4<f32>;
    var acc13_0: vec4<f32>;
    var acc13_1: vec4<f32>;
    var acc14_0: vec4<f32>;
    var acc14_1: vec4<f32>;
    var acc15_0: vec4<f32>;
    var acc15_1: vec4<f32>;
    var acc16_0: vec4<f32>;
    var acc16_1: vec4<f32>;
    var acc17_0: vec4<f32>;
    var acc17_1: vec4<f32>;
    var acc18_0: vec4<f32>;
    var acc18_1: vec4<f32>;
    var acc19_0: vec4<f32>;
    var acc19_1: vec4<f32>;
    var acc20_0: vec4<f32>;
    var acc20_1: vec4<f32>;
    var acc21_0: vec4<f32>;
    var acc21_1: vec4<f32>;
    var acc22_0: vec4<f32>;
    var acc22_1: vec4<f32>;
    var acc23_0: vec4<f32>;
    var acc23_1: vec4<f32>;
    var acc24_0: vec4<f32>;
    var acc24_1: vec4<f32>;
    var acc25_0: vec4<f32>;
    var acc25_1: vec4<f32>;
    var acc26_0: vec4<f32>;
    var acc26_1: vec4<f32>;
    var acc27_0: vec4<f32>;
    var acc27_1: vec4<f32>;
    var acc28_0: vec4<f32>;
    var acc28_1: vec4<f32>;
    var acc29_0: vec4<f32>;
    var acc29_1: vec4<f32>;
    var acc30_0: vec4<f32>;
    var acc30_1: vec4<f32>;
    var acc31_0: vec4<f32>;
    var acc31_1: vec4<f32>;
    var acc32_0: vec4<f32>;
    var acc32_1: vec4<f32>;
    var acc33_0: vec4<f32>;
    var acc33_1: vec4<f32>;
    var acc34_0: vec4<f32>;
    var acc34_1: vec4<f32>;
    var acc35_0: vec4<f32>;
    var acc35_1: vec4<f32>;
    var acc36_0: vec4<f32>;
    var acc36_1: vec4<f32>;
    var acc37_0: vec4<f32>;
    var acc37_1: vec4<f32>;
    var acc38_0: vec4<f32>;
    var acc38_1: vec4<f32>;
    var acc39_0: vec4<f32>;
    var acc39_1: vec4<f32>;
    var acc40_0: vec4<f32>;
    var acc40_1: vec4<f32>;
    var acc41_0: vec4<f32>;
    var acc41_1: vec4<f32>;
    var acc42_0: vec4<f32>;
    var acc42_1: vec4<f32>;
    var acc43_0: vec4<f32>;
    var acc43_1: vec4<f32>;
    var acc44_0: vec4<f32>;
    var acc44_1: vec4<f32>;
    var acc45_0: vec4<f32>;
    var acc45_1: vec4<f32>;
    var acc46_0: vec4<f32>;
    var acc46_1: vec4<f32>;
    var acc47_0: vec4<f32>;
    var acc47_1: vec4<f32>;
    var acc48_0: vec4<f32>;
    var acc48_1: vec4<f32>;
    var acc49_0: vec4<f32>;
    var acc49_1: vec4<f32>;
    var acc50_0: vec4<f32>;
    var acc50_1: vec4<f32>;
    var acc51_0: vec4<f32>;
    var acc51_1: vec4<f32>;
    var acc52_0: vec4<f32>;
    var acc52_1: vec4<f32>;
    var acc53_0: vec4<f32>;
    var acc53_1: vec4<f32>;
    var acc54_0: vec4<f32>;
    var acc54_1: vec4<f32>;
    var acc55_0: vec4<f32>;
    var acc55_1: vec4<f32>;
    var acc56_0: vec4<f32>;
    var acc56_1: vec4<f32>;
    var acc57_0: vec4<f32>;
    var acc57_1: vec4<f32>;
    var acc58_0: vec4<f32>;
    var acc58_1: vec4<f32>;
    var acc59_0: vec4<f32>;
    var acc59_1: vec4<f32>;
    var acc60_0: vec4<f32>;
    var acc60_1: vec4<f32>;
    var acc61_0: vec4<f32>;
    var acc61_1: vec4<f32>;
    var acc62_0: vec4<f32>;
    var acc62_1: vec4<f32>;
    var acc63_0: vec4<f32>;
    var acc63_1: vec4<f32>;
    var ka = 0u;
    var kb = 0u;
    for (var k = 0u; k < p.k; k++) {
        let bv0 = vec4<f32>(b[bc0 + kb], b[bc1 + kb], b[bc2 + kb], b[bc3 + kb]);
        let bv1 = vec4<f32>(b[bc4 + kb], b[bc5 + kb], b[bc6 + kb], b[bc7 + kb]);
        let av0 = a[ar0 + ka];
        { let v = subgroupBroadcast(av0, 0u); acc0_0 = fma(bv0, vec4(v), acc0_0); acc0_1 = fma(bv1, vec4(v), acc0_1); }
        { let v = subgroupBroadcast(av0, 1u); acc1_0 = fma(bv0, vec4(v), acc1_0); acc1_1 = fma(bv1, vec4(v), acc1_1); }
        { let v = subgroupBroadcast(av0, 2u); acc2_0 = fma(bv0, vec4(v), acc2_0); acc2_1 = fma(bv1, vec4(v), acc2_1); }
        { let v = subgroupBroadcast(av0, 3u); acc3_0 = fma(bv0, vec4(v), acc3_0); acc3_1 = fma(bv1, vec4(v), acc3_1); }
        { let v = subgroupBroadcast(av0, 4u); acc4_0 = fma(bv0, vec4(v), acc4_0); acc4_1 = fma(bv1, vec4(v), acc4_1); }
        { let v = subgroupBroadcast(av0, 5u); acc5_0 = fma(bv0, vec4(v), acc5_0); acc5_1 = fma(bv1, vec4(v), acc5_1); }
        { let v = subgroupBroadcast(av0, 6u); acc6_0 = fma(bv0, vec4(v), acc6_0); acc6_1 = fma(bv1, vec4(v), acc6_1); }
        { let v = subgroupBroadcast(av0, 7u); acc7_0 = fma(bv0, vec4(v), acc7_0); acc7_1 = fma(bv1, vec4(v), acc7_1); }
        let av1 = a[ar1 + ka];
        { let v = subgroupBroadcast(av1, 0u); acc8_0 = fma(bv0, vec4(v), acc8_0); acc8_1 = fma(bv1, vec4(v), acc8_1); }
        { let v = subgroupBroadcast(av1, 1u); acc9_0 = fma(bv0, vec4(v), acc9_0); acc9_1 = fma(bv1, vec4(v), acc9_1); }
        { let v = subgroupBroadcast(av1, 2u); acc10_0 = fma(bv0, vec4(v), acc10_0); acc10_1 = fma(bv1, vec4(v), acc10_1); }
        { let v = subgroupBroadcast(av1, 3u); acc11_0 = fma(bv0, vec4(v), acc11_0); acc11_1 = fma(bv1, vec4(v), acc11_1); }
        { let v = subgroupBroadcast(av1, 4u); acc12_0 = fma(bv0, vec4(v), acc12_0); acc12_1 = fma(bv1, vec4(v), acc12_1); }
        { let v = subgroupBroadcast(av1, 5u); acc13_0 = fma(bv0, vec4(v), acc13_0); acc13_1 = fma(bv1, vec4(v), acc13_1); }
        { let v = subgroupBroadcast(av1, 6u); acc14_0 = fma(bv0, vec4(v), acc14_0); acc14_1 = fma(bv1, vec4(v), acc14_1); }
        { let v = subgroupBroadcast(av1, 7u); acc15_0 = fma(bv0, vec4(v), acc15_0); acc15_1 = fma(bv1, vec4(v), acc15_1); }
        let av2 = a[ar2 + ka];
        { let v = subgroupBroadcast(av2, 0u); acc16_0 = fma(bv0, vec4(v), acc16_0); acc16_1 = fma(bv1, vec4(v), acc16_1); }
        { let v = subgroupBroadcast(av2, 1u); acc17_0 = fma(bv0, vec4(v), acc17_0); acc17_1 = fma(bv1, vec4(v), acc17_1); }
        { let v = subgroupBroadcast(av2, 2u); acc18_0 = fma(bv0, vec4(v), acc18_0); acc18_1 = fma(bv1, vec4(v), acc18_1); }
        { let v = subgroupBroadcast(av2, 3u); acc19_0 = fma(bv0, vec4(v), acc19_0); acc19_1 = fma(bv1, vec4(v), acc19_1); }
        { let v = subgroupBroadcast(av2, 4u); acc20_0 = fma(bv0, vec4(v), acc20_0); acc20_1 = fma(bv1, vec4(v), acc20_1); }
        { let v = subgroupBroadcast(av2, 5u); acc21_0 = fma(bv0, vec4(v), acc21_0); acc21_1 = fma(bv1, vec4(v), acc21_1); }
        { let v = subgroupBroadcast(av2, 6u); acc22_0 = fma(bv0, vec4(v), acc22_0); acc22_1 = fma(bv1, vec4(v), acc22_1); }
        { let v = subgroupBroadcast(av2, 7u); acc23_0 = fma(bv0, vec4(v), acc23_0); acc23_1 = fma(bv1, vec4(v), acc23_1); }
        let av3 = a[ar3 + ka];
        { let v = subgroupBroadcast(av3, 0u); acc24_0 = fma(bv0, vec4(v), acc24_0); acc24_1 = fma(bv1, vec4(v), acc24_1); }
        { let v = subgroupBroadcast(av3, 1u); acc25_0 = fma(bv0, vec4(v), acc25_0); acc25_1 = fma(bv1, vec4(v), acc25_1); }
        { let v = subgroupBroadcast(av3, 2u); acc26_0 = fma(bv0, vec4(v), acc26_0); acc26_1 = fma(bv1, vec4(v), acc26_1); }
        { let v = subgroupBroadcast(av3, 3u); acc27_0 = fma(bv0, vec4(v), acc27_0); acc27_1 = fma(bv1, vec4(v), acc27_1); }
        { let v = subgroupBroadcast(av3, 4u); acc28_0 = fma(bv0, vec4(v), acc28_0); acc28_1 = fma(bv1, vec4(v), acc28_1); }
        { let v = subgroupBroadcast(av3, 5u); acc29_0 = fma(bv0, vec4(v), acc29_0); acc29_1 = fma(bv1, vec4(v), acc29_1); }
        { let v = subgroupBroadcast(av3, 6u); acc30_0 = fma(bv0, vec4(v), acc30_0); acc30_1 = fma(bv1, vec4(v), acc30_1); }
        { let v = subgroupBroadcast(av3, 7u); acc31_0 = fma(bv0, vec4(v), acc31_0); acc31_1 = fma(bv1, vec4(v), acc31_1); }
        let av4 = a[ar4 + ka];
        { let v = subgroupBroadcast(av4, 0u); acc32_0 = fma(bv0, vec4(v), acc32_0); acc32_1 = fma(bv1, vec4(v), acc32_1); }
        { let v = subgroupBroadcast(av4, 1u); acc33_0 = fma(bv0, vec4(v), acc33_0); acc33_1 = fma(bv1, vec4(v), acc33_1); }
        { let v = subgroupBroadcast(av4, 2u); acc34_0 = fma(bv0, vec4(v), acc34_0); acc34_1 = fma(bv1, vec4(v), acc34_1); }
        { let v = subgroupBroadcast(av4, 3u); acc35_0 = fma(bv0, vec4(v), acc35_0); acc35_1 = fma(bv1, vec4(v), acc35_1); }
        { let v = subgroupBroadcast(av4, 4u); acc36_0 = fma(bv0, vec4(v), acc36_0); acc36_1 = fma(bv1, vec4(v), acc36_1); }
        { let v = subgroupBroadcast(av4, 5u); acc37_0 = fma(bv0, vec4(v), acc37_0); acc37_1 = fma(bv1, vec4(v), acc37_1); }
        { let v = subgroupBroadcast(av4, 6u); acc38_0 = fma(bv0, vec4(v), acc38_0); acc38_1 = fma(bv1, vec4(v), acc38_1); }
        { let v = subgroupBroadcast(av4, 7u); acc39_0 = fma(bv0, vec4(v), acc39_0); acc39_1 = fma(bv1, vec4(v), acc39_1); }
        let av5 = a[ar5 + ka];
        { let v = subgroupBroadcast(av5, 0u); acc40_0 = fma(bv0, vec4(v), acc40_0); acc40_1 = fma(bv1, vec4(v), acc40_1); }
        { let v = subgroupBroadcast(av5, 1u); acc41_0 = fma(bv0, vec4(v), acc41_0); acc41_1 = fma(bv1, vec4(v), acc41_1); }
        { let v = subgroupBroadcast(av5, 2u); acc42_0 = fma(bv0, vec4(v), acc42_0); acc42_1 = fma(bv1, vec4(v), acc42_1); }
        { let v = subgroupBroadcast(av5, 3u); acc43_0 = fma(bv0, vec4(v), acc43_0); acc43_1 = fma(bv1, vec4(v), acc43_1); }
        { let v = subgroupBroadcast(av5, 4u); acc44_0 = fma(bv0, vec4(v), acc44_0); acc44_1 = fma(bv1, vec4(v), acc44_1); }
        { let v = subgroupBroadcast(av5, 5u); acc45_0 = fma(bv0, vec4(v), acc45_0); acc45_1 = fma(bv1, vec4(v), acc45_1); }
        { let v = subgroupBroadcast(av5, 6u); acc46_0 = fma(bv0, vec4(v), acc46_0); acc46_1 = fma(bv1, vec4(v), acc46_1); }
        { let v = subgroupBroadcast(av5, 7u); acc47_0 = fma(bv0, vec4(v), acc47_0); acc47_1 = fma(bv1, vec4(v), acc47_1); }
        let av6 = a[ar6 + ka];
        { let v = subgroupBroadcast(av6, 0u); acc48_0 = fma(bv0, vec4(v), acc48_0); acc48_1 = fma(bv1, vec4(v), acc48_1); }
        { let v = subgroupBroadcast(av6, 1u); acc49_0 = fma(bv0, vec4(v), acc49_0); acc49_1 = fma(bv1, vec4(v), acc49_1); }
        { let v = subgroupBroadcast(av6, 2u); acc50_0 = fma(bv0, vec4(v), acc50_0); acc50_1 = fma(bv1, vec4(v), acc50_1); }
        { let v = subgroupBroadcast(av6, 3u); acc51_0 = fma(bv0, vec4(v), acc51_0); acc51_1 = fma(bv1, vec4(v), acc51_1); }
        { let v = subgroupBroadcast(av6, 4u); acc52_0 = fma(bv0, vec4(v), acc52_0); acc52_1 = fma(bv1, vec4(v), acc52_1); }
        { let v = subgroupBroadcast(av6, 5u); acc53_0 = fma(bv0, vec4(v), acc53_0); acc53_1 = fma(bv1, vec4(v), acc53_1); }
        { let v = subgroupBroadcast(av6, 6u); acc54_0 = fma(bv0, vec4(v), acc54_0); acc54_1 = fma(bv1, vec4(v), acc54_1); }
        { let v = subgroupBroadcast(av6, 7u); acc55_0 = fma(bv0, vec4(v), acc55_0); acc55_1 = fma(bv1, vec4(v), acc55_1); }
        let av7 = a[ar7 + ka];
        { let v = subgroupBroadcast(av7, 0u); acc56_0 = fma(bv0, vec4(v), acc56_0); acc56_1 = fma(bv1, vec4(v), acc56_1); }
        { let v = subgroupBroadcast(av7, 1u); acc57_0 = fma(bv0, vec4(v), acc57_0); acc57_1 = fma(bv1, vec4(v), acc57_1); }
        { let v = subgroupBroadcast(av7, 2u); acc58_0 = fma(bv0, vec4(v), acc58_0); acc58_1 = fma(bv1, vec4(v), acc58_1); }
        { let v = subgroupBroadcast(av7, 3u); acc59_0 = fma(bv0, vec4(v), acc59_0); acc59_1 = fma(bv1, vec4(v), acc59_1); }
        { let v = subgroupBroadcast(av7, 4u); acc60_0 = fma(bv0, vec4(v), acc60_0); acc60_1 = fma(bv1, vec4(v), acc60_1); }
        { let v = subgroupBroadcast(av7, 5u); acc61_0 = fma(bv0, vec4(v), acc61_0); acc61_1 = fma(bv1, vec4(v), acc61_1); }
        { let v = subgroupBroadcast(av7, 6u); acc62_0 = fma(bv0, vec4(v), acc62_0); acc62_1 = fma(bv1, vec4(v), acc62_1); }
        { let v = subgroupBroadcast(av7, 7u); acc63_0 = fma(bv0, vec4(v), acc63_0); acc63_1 = fma(bv1, vec4(v), acc63_1); }
        ka += p.a_sk;
        kb += p.b_sk;
    }
    store_row(z, row0 + 0u, col0 + 0u, acc0_0);
    store_row(z, row0 + 0u, col0 + 4u, acc0_1);
    store_row(z, row0 + 1u, col0 + 0u, acc1_0);
    store_row(z, row0 + 1u, col0 + 4u, acc1_1);
    store_row(z, row0 + 2u, col0 + 0u, acc2_0);
    store_row(z, row0 + 2u, col0 + 4u, acc2_1);
    store_row(z, row0 + 3u, col0 + 0u, acc3_0);
    store_row(z, row0 + 3u, col0 + 4u, acc3_1);
    store_row(z, row0 + 4u, col0 + 0u, acc4_0);
    store_row(z, row0 + 4u, col0 + 4u, acc4_1);
    store_row(z, row0 + 5u, col0 + 0u, acc5_0);
    store_row(z, row0 + 5u, col0 + 4u, acc5_1);
    store_row(z, row0 + 6u, col0 + 0u, acc6_0);
    store_row(z, row0 + 6u, col0 + 4u, acc6_1);
    store_row(z, row0 + 7u, col0 + 0u, acc7_0);
    store_row(z, row0 + 7u, col0 + 4u, acc7_1);
    store_row(z, row0 + 8u, col0 + 0u, acc8_0);
    store_row(z, row0 + 8u, col0 + 4u, acc8_1);
    store_row(z, row0 + 9u, col0 + 0u, acc9_0);
    store_row(z, row0 + 9u, col0 + 4u, acc9_1);
    store_row(z, row0 + 10u, col0 + 0u, acc10_0);
    store_row(z, row0 + 10u, col0 + 4u, acc10_1);
    store_row(z, row0 + 11u, col0 + 0u, acc11_0);
    store_row(z, row0 + 11u, col0 + 4u, acc11_1);
    store_row(z, row0 + 12u, col0 + 0u, acc12_0);
    store_row(z, row0 + 12u, col0 + 4u, acc12_1);
    store_row(z, row0 + 13u, col0 + 0u, acc13_0);
    store_row(z, row0 + 13u, col0 + 4u, acc13_1);
    store_row(z, row0 + 14u, col0 + 0u, acc14_0);
    store_row(z, row0 + 14u, col0 + 4u, acc14_1);
    store_row(z, row0 + 15u, col0 + 0u, acc15_0);
    store_row(z, row0 + 15u, col0 + 4u, acc15_1);
    store_row(z, row0 + 16u, col0 + 0u, acc16_0);
    store_row(z, row0 + 16u, col0 + 4u, acc16_1);
    store_row(z, row0 + 17u, col0 + 0u, acc17_0);
    store_row(z, row0 + 17u, col0 + 4u, acc17_1);
    store_row(z, row0 + 18u, col0 + 0u, acc18_0);
    store_row(z, row0 + 18u, col0 + 4u, acc18_1);
    store_row(z, row0 + 19u, col0 + 0u, acc19_0);
    store_row(z, row0 + 19u, col0 + 4u, acc19_1);
    store_row(z, row0 + 20u, col0 + 0u, acc20_0);
    store_row(z, row0 + 20u, col0 + 4u, acc20_1);
    store_row(z, row0 + 21u, col0 + 0u, acc21_0);
    store_row(z, row0 + 21u, col0 + 4u, acc21_1);
    store_row(z, row0 + 22u, col0 + 0u, acc22_0);
    store_row(z, row0 + 22u, col0 + 4u, acc22_1);
    store_row(z, row0 + 23u, col0 + 0u, acc23_0);
    store_row(z, row0 + 23u, col0 + 4u, acc23_1);
    store_row(z, row0 + 24u, col0 + 0u, acc24_0);
    store_row(z, row0 + 24u, col0 + 4u, acc24_1);
    store_row(z, row0 + 25u, col0 + 0u, acc25_0);
    store_row(z, row0 + 25u, col0 + 4u, acc25_1);
    store_row(z, row0 + 26u, col0 + 0u, acc26_0);
    store_row(z, row0 + 26u, col0 + 4u, acc26_1);
    store_row(z, row0 + 27u, col0 + 0u, acc27_0);
    store_row(z, row0 + 27u, col0 + 4u, acc27_1);
    store_row(z, row0 + 28u, col0 + 0u, acc28_0);
    store_row(z, row0 + 28u, col0 + 4u, acc28_1);
    store_row(z, row0 + 29u, col0 + 0u, acc29_0);
    store_row(z, row0 + 29u, col0 + 4u, acc29_1);
    store_row(z, row0 + 30u, col0 + 0u, acc30_0);
    store_row(z, row0 + 30u, col0 + 4u, acc30_1);
    store_row(z, row0 + 31u, col0 + 0u, acc31_0);
    store_row(z, row0 + 31u, col0 + 4u, acc31_1);
    store_row(z, row0 + 32u, col0 + 0u, acc32_0);
    store_row(z, row0 + 32u, col0 + 4u, acc32_1);
    store_row(z, row0 + 33u, col0 + 0u, acc33_0);
    store_row(z, row0 + 33u, col0 + 4u, acc33_1);
    store_row(z, row0 + 34u, col0 + 0u, acc34_0);
    store_row(z, row0 + 34u, col0 + 4u, acc34_1);
    store_row(z, row0 + 35u, col0 + 0u, acc35_0);
    store_row(z, row0 + 35u, col0 + 4u, acc35_1);
    store_row(z, row0 + 36u, col0 + 0u, acc36_0);
    store_row(z, row0 + 36u, col0 + 4u, acc36_1);
    store_row(z, row0 + 37u, col0 + 0u, acc37_0);
    store_row(z, row0 + 37u, col0 + 4u, acc37_1);
    store_row(z, row0 + 38u, col0 + 0u, acc38_0);
    store_row(z, row0 + 38u, col0 + 4u, acc38_1);
    store_row(z, row0 + 39u, col0 + 0u, acc39_0);
    store_row(z, row0 + 39u, col0 + 4u, acc39_1);
    store_row(z, row0 + 40u, col0 + 0u, acc40_0);
    store_row(z, row0 + 40u, col0 + 4u, acc40_1);
    store_row(z, row0 + 41u, col0 + 0u, acc41_0);
    store_row(z, row0 + 41u, col0 + 4u, acc41_1);
    store_row(z, row0 + 42u, col0 + 0u, acc42_0);
    store_row(z, row0 + 42u, col0 + 4u, acc42_1);
    store_row(z, row0 + 43u, col0 + 0u, acc43_0);
    store_row(z, row0 + 43u, col0 + 4u, acc43_1);
    store_row(z, row0 + 44u, col0 + 0u, acc44_0);
    store_row(z, row0 + 44u, col0 + 4u, acc44_1);
    store_row(z, row0 + 45u, col0 + 0u, acc45_0);
    store_row(z, row0 + 45u, col0 + 4u, acc45_1);
    store_row(z, row0 + 46u, col0 + 0u, acc46_0);
    store_row(z, row0 + 46u, col0 + 4u, acc46_1);
    store_row(z, row0 + 47u, col0 + 0u, acc47_0);
    store_row(z, row0 + 47u, col0 + 4u, acc47_1);
    store_row(z, row0 + 48u, col0 + 0u, acc48_0);
    store_row(z, row0 + 48u, col0 + 4u, acc48_1);
    store_row(z, row0 + 49u, col0 + 0u, acc49_0);
    store_row(z, row0 + 49u, col0 + 4u, acc49_1);
    store_row(z, row0 + 50u, col0 + 0u, acc50_0);
    store_row(z, row0 + 50u, col0 + 4u, acc50_1);
    store_row(z, row0 + 51u, col0 + 0u, acc51_0);
    store_row(z, row0 + 51u, col0 + 4u, acc51_1);
    store_row(z, row0 + 52u, col0 + 0u, acc52_0);
    store_row(z, row0 + 52u, col0 + 4u, acc52_1);
    store_row(z, row0 + 53u, col0 + 0u, acc53_0);
    store_row(z, row0 + 53u, col0 + 4u, acc53_1);
    store_row(z, row0 + 54u, col0 + 0u, acc54_0);
    store_row(z, row0 + 54u, col0 + 4u, acc54_1);
    store_row(z, row0 + 55u, col0 + 0u, acc55_0);
    store_row(z, row0 + 55u, col0 + 4u, acc55_1);
    store_row(z, row0 + 56u, col0 + 0u, acc56_0);
    store_row(z, row0 + 56u, col0 + 4u, acc56_1);
    store_row(z, row0 + 57u, col0 + 0u, acc57_0);
    store_row(z, row0 + 57u, col0 + 4u, acc57_1);
    store_row(z, row0 + 58u, col0 + 0u, acc58_0);
    store_row(z, row0 + 58u, col0 + 4u, acc58_1);
    store_row(z, row0 + 59u, col0 + 0u, acc59_0);
    store_row(z, row0 + 59u, col0 + 4u, acc59_1);
    store_row(z, row0 + 60u, col0 + 0u, acc60_0);
    store_row(z, row0 + 60u, col0 + 4u, acc60_1);
    store_row(z, row0 + 61u, col0 + 0u, acc61_0);
    store_row(z, row0 + 61u, col0 + 4u, acc61_1);
    store_row(z, row0 + 62u, col0 + 0u, acc62_0);
    store_row(z, row0 + 62u, col0 + 4u, acc62_1);
    store_row(z, row0 + 63u, col0 + 0u, acc63_0);
    store_row(z, row0 + 63u, col0 + 4u, acc63_1);
}

@compute @workgroup_size(8)
fn mm_k1_r64c16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
         @builtin(subgroup_invocation_id) sl: u32) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * 64u;
    let col0 = wg.x * 128u + lid.x * 16u;
    let ar0 = z * p.a_bs + min(row0 + 0u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar1 = z * p.a_bs + min(row0 + 8u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar2 = z * p.a_bs + min(row0 + 16u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar3 = z * p.a_bs + min(row0 + 24u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar4 = z * p.a_bs + min(row0 + 32u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar5 = z * p.a_bs + min(row0 + 40u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar6 = z * p.a_bs + min(row0 + 48u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar7 = z * p.a_bs + min(row0 + 56u + sl % 8u, p.m - 1u) * p.a_sm;
    let bc0 = z * p.b_bs + min(col0 + 0u, p.n - 1u) * p.b_sn;
    let bc1 = z * p.b_bs + min(col0 + 1u, p.n - 1u) * p.b_sn;
    let bc2 = z * p.b_bs + min(col0 + 2u, p.n - 1u) * p.b_sn;
    let bc3 = z * p.b_bs + min(col0 + 3u, p.n - 1u) * p.b_sn;
    let bc4 = z * p.b_bs + min(col0 + 4u, p.n - 1u) * p.b_sn;
    let bc5 = z * p.b_bs + min(col0 + 5u, p.n - 1u) * p.b_sn;
    let bc6 = z * p.b_bs + min(col0 + 6u, p.n - 1u) * p.b_sn;
    let bc7 = z * p.b_bs + min(col0 + 7u, p.n - 1u) * p.b_sn;
    let bc8 = z * p.b_bs + min(col0 + 8u, p.n - 1u) * p.b_sn;
    let bc9 = z * p.b_bs + min(col0 + 9u, p.n - 1u) * p.b_sn;
    let bc10 = z * p.b_bs + min(col0 + 10u, p.n - 1u) * p.b_sn;
    let bc11 = z * p.b_bs + min(col0 + 11u, p.n - 1u) * p.b_sn;
    let bc12 = z * p.b_bs + min(col0 + 12u, p.n - 1u) * p.b_sn;
    let bc13 = z * p.b_bs + min(col0 + 13u, p.n - 1u) * p.b_sn;
    let bc14 = z * p.b_bs + min(col0 + 14u, p.n - 1u) * p.b_sn;
    let bc15 = z * p.b_bs + min(col0 + 15u, p.n - 1u) * p.b_sn;
    var acc0_0: vec4<f32>;
    var acc0_1: vec4<f32>;
    var acc0_2: vec4<f32>;
    var acc0_3: vec4<f32>;
    var acc1_0: vec4<f32>;
    var acc1_1: vec4<f32>;
    var acc1_2: vec4<f32>;
    var acc1_3: vec4<f32>;
    var acc2_0: vec4<f32>;
    var acc2_1: vec4<f32>;
    var acc2_2: vec4<f32>;
    var acc2_3: vec4<f32>;
    var acc3_0: vec4<f32>;
    var acc3_1: vec4<f32>;
    var acc3_2: vec4<f32>;
    var acc3_3: vec4<f32>;
    var acc4_0: vec4<f32>;
    var acc4_1: vec4<f32>;
    var acc4_2: vec4<f32>;
    var acc4_3: vec4<f32>;
    var acc5_0: vec4<f32>;
    var acc5_1: vec4<f32>;
    var acc5_2: vec4<f32>;
    var acc5_3: vec4<f32>;
    var acc6_0: vec4<f32>;
    var acc6_1: vec4<f32>;
    var acc6_2: vec4<f32>;
    var acc6_3: vec4<f32>;
    var acc7_0: vec4<f32>;
    var acc7_1: vec4<f32>;
    var acc7_2: vec4<f32>;
    var acc7_3: vec4<f32>;
    var acc8_0: vec4<f32>;
    var acc8_1: vec4<f32>;
    var acc8_2: vec4<f32>;
    var acc8_3: vec4<f32>;
    var acc9_0: vec4<f32>;
    var acc9_1: vec4<f32>;
    var acc9_2: vec4<f32>;
    var acc9_3: vec4<f32>;
    var acc10_0: vec4<f32>;
    var acc10_1: vec4<f32>;
    var acc10_2: vec4<f32>;
    var acc10_3: vec4<f32>;
    var acc11_0: vec4<f32>;
    var acc11_1: vec4<f32>;
    var acc11_2: vec4<f32>;
    var acc11_3: vec4<f32>;
    var acc12_0: vec4<f32>;
    var acc12_1: vec4<f32>;
    var acc12_2: vec4<f32>;
    var acc12_3: vec4<f32>;
    var acc13_0: vec4<f32>;
    var acc13_1: vec4<f32>;
    var acc13_2: vec4<f32>;
    var acc13_3: vec4<f32>;
    var acc14_0: vec4<f32>;
    var acc14_1: vec4<f32>;
    var acc14_2: vec4<f32>;
    var acc14_3: vec4<f32>;
    var acc15_0: vec4<f32>;
    var acc15_1: vec4<f32>;
    var acc15_2: vec4<f32>;
    var acc15_3: vec4<f32>;
    var acc16_0: vec4<f32>;
    var acc16_1: vec4<f32>;
    var acc16_2: vec4<f32>;
    var acc16_3: vec4<f32>;
    var acc17_0: vec4<f32>;
    var acc17_1: vec4<f32>;
    var acc17_2: vec4<f32>;
    var acc17_3: vec4<f32>;
    var acc18_0: vec4<f32>;
    var acc18_1: vec4<f32>;
    var acc18_2: vec4<f32>;
    var acc18_3: vec4<f32>;
    var acc19_0: vec4<f32>;
    var acc19_1: vec4<f32>;
    var acc19_2: vec4<f32>;
    var acc19_3: vec4<f32>;
    var acc20_0: vec4<f32>;
    var acc20_1: vec4<f32>;
    var acc20_2: vec4<f32>;
    var acc20_3: vec4<f32>;
    var acc21_0: vec4<f32>;
    var acc21_1: vec4<f32>;
    var acc21_2: vec4<f32>;
    var acc21_3: vec4<f32>;
    var acc22_0: vec4<f32>;
    var acc22_1: vec4<f32>;
    var acc22_2: vec4<f32>;
    var acc22_3: vec4<f32>;
    var acc23_0: vec4<f32>;
    var acc23_1: vec4<f32>;
    var acc23_2: vec4<f32>;
    var acc23_3: vec4<f32>;
    var acc24_0: vec4<f32>;
    var acc24_1: vec4<f32>;
    var acc24_2: vec4<f32>;
    var acc24_3: vec4<f32>;
    var acc25_0: vec4<f32>;
    var acc25_1: vec4<f32>;
    var acc25_2: vec4<f32>;
    var acc25_3: vec4<f32>;
    var acc26_0: vec4<f32>;
    var acc26_1: vec4<f32>;
    var acc26_2: vec4<f32>;
    var acc26_3: vec4<f32>;
    var acc27_0: vec4<f32>;
    var acc27_1: vec4<f32>;
    var acc27_2: vec4<f32>;
    var acc27_3: vec4<f32>;
    var acc28_0: vec4<f32>;
    var acc28_1: vec4<f32>;
    var acc28_2: vec4<f32>;
    var acc28_3: vec4<f32>;
    var acc29_0: vec4<f32>;
    var acc29_1: vec4<f32>;
    var acc29_2: vec4<f32>;
    var acc29_3: vec4<f32>;
    var acc30_0: vec4<f32>;
    var acc30_1: vec4<f32>;
    var acc30_2: vec4<f32>;
    var acc30_3: vec4<f32>;
    var acc31_0: vec4<f32>;
    var acc31_1: vec4<f32>;
    var acc31_2: vec4<f32>;
    var acc31_3: vec4<f32>;
    var acc32_0: vec4<f32>;
    var acc32_1: vec4<f32>;
    var acc32_2: vec4<f32>;
    var acc32_3: vec4<f32>;
    var acc33_0: vec4<f32>;
    var acc33_1: vec4<f32>;
    var acc33_2: vec4<f32>;
    var acc33_3: vec4<f32>;
    var acc34_0: vec4<f32>;
    var acc34_1: vec4<f32>;
    var acc34_2: vec4<f32>;
    var acc34_3: vec4<f32>;
    var acc35_0: vec4<f32>;
    var acc35_1: vec4<f32>;
    var acc35_2: vec4<f32>;
    var acc35_3: vec4<f32>;
    var acc36_0: vec4<f32>;
    var acc36_1: vec4<f32>;
    var acc36_2: vec4<f32>;
    var acc36_3: vec4<f32>;
    var acc37_0: vec4<f32>;
    var acc37_1: vec4<f32>;
    var acc37_2: vec4<f32>;
    var acc37_3: vec4<f32>;
    var acc38_0: vec4<f32>;
    var acc38_1: vec4<f32>;
    var acc38_2: vec4<f32>;
    var acc38_3: vec4<f32>;
    var acc39_0: vec4<f32>;
    var acc39_1: vec4<f32>;
    var acc39_2: vec4<f32>;
    var acc39_3: vec4<f32>;
    var acc40_0: vec4<f32>;
    var acc40_1: vec4<f32>;
    var acc40_2: vec4<f32>;
    var acc40_3: vec4<f32>;
    var acc41_0: vec4<f32>;
    var acc41_1: vec4<f32>;
    var acc41_2: vec4<f32>;
    var acc41_3: vec4<f32>;
    var acc42_0: vec4<f32>;
    var acc42_1: vec4<f32>;
    var acc42_2: vec4<f32>;
    var acc42_3: vec4<f32>;
    var acc43_0: vec4<f32>;
    var acc43_1: vec4<f32>;
    var acc43_2: vec4<f32>;
    var acc43_3: vec4<f32>;
    var acc44_0: vec4<f32>;
    var acc44_1: vec4<f32>;
    var acc44_2: vec4<f32>;
    var acc44_3: vec4<f32>;
    var acc45_0: vec4<f32>;
    var acc45_1: vec4<f32>;
    var acc45_2: vec4<f32>;
    var acc45_3: vec4<f32>;
    var acc46_0: vec4<f32>;
    var acc46_1: vec4<f32>;
    var acc46_2: vec4<f32>;
    var acc46_3: vec4<f32>;
    var acc47_0: vec4<f32>;
    var acc47_1: vec4<f32>;
    var acc47_2: vec4<f32>;
    var acc47_3: vec4<f32>;
    var acc48_0: vec4<f32>;
    var acc48_1: vec4<f32>;
    var acc48_2: vec4<f32>;
    var acc48_3: vec4<f32>;
    var acc49_0: vec4<f32>;
    var acc49_1: vec4<f32>;
    var acc49_2: vec4<f32>;
    var acc49_3: vec4<f32>;
    var acc50_0: vec4<f32>;
    var acc50_1: vec4<f32>;
    var acc50_2: vec4<f32>;
    var acc50_3: vec4<f32>;
    var acc51_0: vec4<f32>;
    var acc51_1: vec4<f32>;
    var acc51_2: vec4<f32>;
    var acc51_3: vec4<f32>;
    var acc52_0: vec4<f32>;
    var acc52_1: vec4<f32>;
    var acc52_2: vec4<f32>;
    var acc52_3: vec4<f32>;
    var acc53_0: vec4<f32>;
    var acc53_1: vec4<f32>;
    var acc53_2: vec4<f32>;
    var acc53_3: vec4<f32>;
    var acc54_0: vec4<f32>;
    var acc54_1: vec4<f32>;
    var acc54_2: vec4<f32>;
    var acc54_3: vec4<f32>;
    var acc55_0: vec4<f32>;
    var acc55_1: vec4<f32>;
    var acc55_2: vec4<f32>;
    var acc55_3: vec4<f32>;
    var acc56_0: vec4<f32>;
    var acc56_1: vec4<f32>;
    var acc56_2: vec4<f32>;
    var acc56_3: vec4<f32>;
    var acc57_0: vec4<f32>;
    var acc57_1: vec4<f32>;
    var acc57_2: vec4<f32>;
    var acc57_3: vec4<f32>;
    var acc58_0: vec4<f32>;
    var acc58_1: vec4<f32>;
    var acc58_2: vec4<f32>;
    var acc58_3: vec4<f32>;
    var acc59_0: vec4<f32>;
    var acc59_1: vec4<f32>;
    var acc59_2: vec4<f32>;
    var acc59_3: vec4<f32>;
    var acc60_0: vec4<f32>;
    var acc60_1: vec4<f32>;
    var acc60_2: vec4<f32>;
    var acc60_3: vec4<f32>;
    var acc61_0: vec4<f32>;
    var acc61_1: vec4<f32>;
    var acc61_2: vec4<f32>;
    var acc61_3: vec4<f32>;
    var acc62_0: vec4<f32>;
    var acc62_1: vec4<f32>;
    var acc62_2: vec4<f32>;
    var acc62_3: vec4<f32>;
    var acc63_0: vec4<f32>;
    var acc63_1: vec4<f32>;
    var acc63_2: vec4<f32>;
    var acc63_3: vec4<f32>;
    var ka = 0u;
    var kb = 0u;
    for (var k = 0u; k < p.k; k++) {
        let bv0 = vec4<f32>(b[bc0 + kb], b[bc1 + kb], b[bc2 + kb], b[bc3 + kb]);
        let bv1 = vec4<f32>(b[bc4 + kb], b[bc5 + kb], b[bc6 + kb], b[bc7 + kb]);
        let bv2 = vec4<f32>(b[bc8 + kb], b[bc9 + kb], b[bc10 + kb], b[bc11 + kb]);
        let bv3 = vec4<f32>(b[bc12 + kb], b[bc13 + kb], b[bc14 + kb], b[bc15 + kb]);
        let av0 = a[ar0 + ka];
        { let v = subgroupBroadcast(av0, 0u); acc0_0 = fma(bv0, vec4(v), acc0_0); acc0_1 = fma(bv1, vec4(v), acc0_1); acc0_2 = fma(bv2, vec4(v), acc0_2); acc0_3 = fma(bv3, vec4(v), acc0_3); }
        { let v = subgroupBroadcast(av0, 1u); acc1_0 = fma(bv0, vec4(v), acc1_0); acc1_1 = fma(bv1, vec4(v), acc1_1); acc1_2 = fma(bv2, vec4(v), acc1_2); acc1_3 = fma(bv3, vec4(v), acc1_3); }
        { let v = subgroupBroadcast(av0, 2u); acc2_0 = fma(bv0, vec4(v), acc2_0); acc2_1 = fma(bv1, vec4(v), acc2_1); acc2_2 = fma(bv2, vec4(v), acc2_2); acc2_3 = fma(bv3, vec4(v), acc2_3); }
        { let v = subgroupBroadcast(av0, 3u); acc3_0 = fma(bv0, vec4(v), acc3_0); acc3_1 = fma(bv1, vec4(v), acc3_1); acc3_2 = fma(bv2, vec4(v), acc3_2); acc3_3 = fma(bv3, vec4(v), acc3_3); }
        { let v = subgroupBroadcast(av0, 4u); acc4_0 = fma(bv0, vec4(v), acc4_0); acc4_1 = fma(bv1, vec4(v), acc4_1); acc4_2 = fma(bv2, vec4(v), acc4_2); acc4_3 = fma(bv3, vec4(v), acc4_3); }
        { let v = subgroupBroadcast(av0, 5u); acc5_0 = fma(bv0, vec4(v), acc5_0); acc5_1 = fma(bv1, vec4(v), acc5_1); acc5_2 = fma(bv2, vec4(v), acc5_2); acc5_3 = fma(bv3, vec4(v), acc5_3); }
        { let v = subgroupBroadcast(av0, 6u); acc6_0 = fma(bv0, vec4(v), acc6_0); acc6_1 = fma(bv1, vec4(v), acc6_1); acc6_2 = fma(bv2, vec4(v), acc6_2); acc6_3 = fma(bv3, vec4(v), acc6_3); }
        { let v = subgroupBroadcast(av0, 7u); acc7_0 = fma(bv0, vec4(v), acc7_0); acc7_1 = fma(bv1, vec4(v), acc7_1); acc7_2 = fma(bv2, vec4(v), acc7_2); acc7_3 = fma(bv3, vec4(v), acc7_3); }
        let av1 = a[ar1 + ka];
        { let v = subgroupBroadcast(av1, 0u); acc8_0 = fma(bv0, vec4(v), acc8_0); acc8_1 = fma(bv1, vec4(v), acc8_1); acc8_2 = fma(bv2, vec4(v), acc8_2); acc8_3 = fma(bv3, vec4(v), acc8_3); }
        { let v = subgroupBroadcast(av1, 1u); acc9_0 = fma(bv0, vec4(v), acc9_0); acc9_1 = fma(bv1, vec4(v), acc9_1); acc9_2 = fma(bv2, vec4(v), acc9_2); acc9_3 = fma(bv3, vec4(v), acc9_3); }
        { let v = subgroupBroadcast(av1, 2u); acc10_0 = fma(bv0, vec4(v), acc10_0); acc10_1 = fma(bv1, vec4(v), acc10_1); acc10_2 = fma(bv2, vec4(v), acc10_2); acc10_3 = fma(bv3, vec4(v), acc10_3); }
        { let v = subgroupBroadcast(av1, 3u); acc11_0 = fma(bv0, vec4(v), acc11_0); acc11_1 = fma(bv1, vec4(v), acc11_1); acc11_2 = fma(bv2, vec4(v), acc11_2); acc11_3 = fma(bv3, vec4(v), acc11_3); }
        { let v = subgroupBroadcast(av1, 4u); acc12_0 = fma(bv0, vec4(v), acc12_0); acc12_1 = fma(bv1, vec4(v), acc12_1); acc12_2 = fma(bv2, vec4(v), acc12_2); acc12_3 = fma(bv3, vec4(v), acc12_3); }
        { let v = subgroupBroadcast(av1, 5u); acc13_0 = fma(bv0, vec4(v), acc13_0); acc13_1 = fma(bv1, vec4(v), acc13_1); acc13_2 = fma(bv2, vec4(v), acc13_2); acc13_3 = fma(bv3, vec4(v), acc13_3); }
        { let v = subgroupBroadcast(av1, 6u); acc14_0 = fma(bv0, vec4(v), acc14_0); acc14_1 = fma(bv1, vec4(v), acc14_1); acc14_2 = fma(bv2, vec4(v), acc14_2); acc14_3 = fma(bv3, vec4(v), acc14_3); }
        { let v = subgroupBroadcast(av1, 7u); acc15_0 = fma(bv0, vec4(v), acc15_0); acc15_1 = fma(bv1, vec4(v), acc15_1); acc15_2 = fma(bv2, vec4(v), acc15_2); acc15_3 = fma(bv3, vec4(v), acc15_3); }
        let av2 = a[ar2 + ka];
        { let v = subgroupBroadcast(av2, 0u); acc16_0 = fma(bv0, vec4(v), acc16_0); acc16_1 = fma(bv1, vec4(v), acc16_1); acc16_2 = fma(bv2, vec4(v), acc16_2); acc16_3 = fma(bv3, vec4(v), acc16_3); }
        { let v = subgroupBroadcast(av2, 1u); acc17_0 = fma(bv0, vec4(v), acc17_0); acc17_1 = fma(bv1, vec4(v), acc17_1); acc17_2 = fma(bv2, vec4(v), acc17_2); acc17_3 = fma(bv3, vec4(v), acc17_3); }
        { let v = subgroupBroadcast(av2, 2u); acc18_0 = fma(bv0, vec4(v), acc18_0); acc18_1 = fma(bv1, vec4(v), acc18_1); acc18_2 = fma(bv2, vec4(v), acc18_2); acc18_3 = fma(bv3, vec4(v), acc18_3); }
        { let v = subgroupBroadcast(av2, 3u); acc19_0 = fma(bv0, vec4(v), acc19_0); acc19_1 = fma(bv1, vec4(v), acc19_1); acc19_2 = fma(bv2, vec4(v), acc19_2); acc19_3 = fma(bv3, vec4(v), acc19_3); }
        { let v = subgroupBroadcast(av2, 4u); acc20_0 = fma(bv0, vec4(v), acc20_0); acc20_1 = fma(bv1, vec4(v), acc20_1); acc20_2 = fma(bv2, vec4(v), acc20_2); acc20_3 = fma(bv3, vec4(v), acc20_3); }
        { let v = subgroupBroadcast(av2, 5u); acc21_0 = fma(bv0, vec4(v), acc21_0); acc21_1 = fma(bv1, vec4(v), acc21_1); acc21_2 = fma(bv2, vec4(v), acc21_2); acc21_3 = fma(bv3, vec4(v), acc21_3); }
        { let v = subgroupBroadcast(av2, 6u); acc22_0 = fma(bv0, vec4(v), acc22_0); acc22_1 = fma(bv1, vec4(v), acc22_1); acc22_2 = fma(bv2, vec4(v), acc22_2); acc22_3 = fma(bv3, vec4(v), acc22_3); }
        { let v = subgroupBroadcast(av2, 7u); acc23_0 = fma(bv0, vec4(v), acc23_0); acc23_1 = fma(bv1, vec4(v), acc23_1); acc23_2 = fma(bv2, vec4(v), acc23_2); acc23_3 = fma(bv3, vec4(v), acc23_3); }
        let av3 = a[ar3 + ka];
        { let v = subgroupBroadcast(av3, 0u); acc24_0 = fma(bv0, vec4(v), acc24_0); acc24_1 = fma(bv1, vec4(v), acc24_1); acc24_2 = fma(bv2, vec4(v), acc24_2); acc24_3 = fma(bv3, vec4(v), acc24_3); }
        { let v = subgroupBroadcast(av3, 1u); acc25_0 = fma(bv0, vec4(v), acc25_0); acc25_1 = fma(bv1, vec4(v), acc25_1); acc25_2 = fma(bv2, vec4(v), acc25_2); acc25_3 = fma(bv3, vec4(v), acc25_3); }
        { let v = subgroupBroadcast(av3, 2u); acc26_0 = fma(bv0, vec4(v), acc26_0); acc26_1 = fma(bv1, vec4(v), acc26_1); acc26_2 = fma(bv2, vec4(v), acc26_2); acc26_3 = fma(bv3, vec4(v), acc26_3); }
        { let v = subgroupBroadcast(av3, 3u); acc27_0 = fma(bv0, vec4(v), acc27_0); acc27_1 = fma(bv1, vec4(v), acc27_1); acc27_2 = fma(bv2, vec4(v), acc27_2); acc27_3 = fma(bv3, vec4(v), acc27_3); }
        { let v = subgroupBroadcast(av3, 4u); acc28_0 = fma(bv0, vec4(v), acc28_0); acc28_1 = fma(bv1, vec4(v), acc28_1); acc28_2 = fma(bv2, vec4(v), acc28_2); acc28_3 = fma(bv3, vec4(v), acc28_3); }
        { let v = subgroupBroadcast(av3, 5u); acc29_0 = fma(bv0, vec4(v), acc29_0); acc29_1 = fma(bv1, vec4(v), acc29_1); acc29_2 = fma(bv2, vec4(v), acc29_2); acc29_3 = fma(bv3, vec4(v), acc29_3); }
        { let v = subgroupBroadcast(av3, 6u); acc30_0 = fma(bv0, vec4(v), acc30_0); acc30_1 = fma(bv1, vec4(v), acc30_1); acc30_2 = fma(bv2, vec4(v), acc30_2); acc30_3 = fma(bv3, vec4(v), acc30_3); }
        { let v = subgroupBroadcast(av3, 7u); acc31_0 = fma(bv0, vec4(v), acc31_0); acc31_1 = fma(bv1, vec4(v), acc31_1); acc31_2 = fma(bv2, vec4(v), acc31_2); acc31_3 = fma(bv3, vec4(v), acc31_3); }
        let av4 = a[ar4 + ka];
        { let v = subgroupBroadcast(av4, 0u); acc32_0 = fma(bv0, vec4(v), acc32_0); acc32_1 = fma(bv1, vec4(v), acc32_1); acc32_2 = fma(bv2, vec4(v), acc32_2); acc32_3 = fma(bv3, vec4(v), acc32_3); }
        { let v = subgroupBroadcast(av4, 1u); acc33_0 = fma(bv0, vec4(v), acc33_0); acc33_1 = fma(bv1, vec4(v), acc33_1); acc33_2 = fma(bv2, vec4(v), acc33_2); acc33_3 = fma(bv3, vec4(v), acc33_3); }
        { let v = subgroupBroadcast(av4, 2u); acc34_0 = fma(bv0, vec4(v), acc34_0); acc34_1 = fma(bv1, vec4(v), acc34_1); acc34_2 = fma(bv2, vec4(v), acc34_2); acc34_3 = fma(bv3, vec4(v), acc34_3); }
        { let v = subgroupBroadcast(av4, 3u); acc35_0 = fma(bv0, vec4(v), acc35_0); acc35_1 = fma(bv1, vec4(v), acc35_1); acc35_2 = fma(bv2, vec4(v), acc35_2); acc35_3 = fma(bv3, vec4(v), acc35_3); }
        { let v = subgroupBroadcast(av4, 4u); acc36_0 = fma(bv0, vec4(v), acc36_0); acc36_1 = fma(bv1, vec4(v), acc36_1); acc36_2 = fma(bv2, vec4(v), acc36_2); acc36_3 = fma(bv3, vec4(v), acc36_3); }
        { let v = subgroupBroadcast(av4, 5u); acc37_0 = fma(bv0, vec4(v), acc37_0); acc37_1 = fma(bv1, vec4(v), acc37_1); acc37_2 = fma(bv2, vec4(v), acc37_2); acc37_3 = fma(bv3, vec4(v), acc37_3); }
        { let v = subgroupBroadcast(av4, 6u); acc38_0 = fma(bv0, vec4(v), acc38_0); acc38_1 = fma(bv1, vec4(v), acc38_1); acc38_2 = fma(bv2, vec4(v), acc38_2); acc38_3 = fma(bv3, vec4(v), acc38_3); }
        { let v = subgroupBroadcast(av4, 7u); acc39_0 = fma(bv0, vec4(v), acc39_0); acc39_1 = fma(bv1, vec4(v), acc39_1); acc39_2 = fma(bv2, vec4(v), acc39_2); acc39_3 = fma(bv3, vec4(v), acc39_3); }
        let av5 = a[ar5 + ka];
        { let v = subgroupBroadcast(av5, 0u); acc40_0 = fma(bv0, vec4(v), acc40_0); acc40_1 = fma(bv1, vec4(v), acc40_1); acc40_2 = fma(bv2, vec4(v), acc40_2); acc40_3 = fma(bv3, vec4(v), acc40_3); }
        { let v = subgroupBroadcast(av5, 1u); acc41_0 = fma(bv0, vec4(v), acc41_0); acc41_1 = fma(bv1, vec4(v), acc41_1); acc41_2 = fma(bv2, vec4(v), acc41_2); acc41_3 = fma(bv3, vec4(v), acc41_3); }
        { let v = subgroupBroadcast(av5, 2u); acc42_0 = fma(bv0, vec4(v), acc42_0); acc42_1 = fma(bv1, vec4(v), acc42_1); acc42_2 = fma(bv2, vec4(v), acc42_2); acc42_3 = fma(bv3, vec4(v), acc42_3); }
        { let v = subgroupBroadcast(av5, 3u); acc43_0 = fma(bv0, vec4(v), acc43_0); acc43_1 = fma(bv1, vec4(v), acc43_1); acc43_2 = fma(bv2, vec4(v), acc43_2); acc43_3 = fma(bv3, vec4(v), acc43_3); }
        { let v = subgroupBroadcast(av5, 4u); acc44_0 = fma(bv0, vec4(v), acc44_0); acc44_1 = fma(bv1, vec4(v), acc44_1); acc44_2 = fma(bv2, vec4(v), acc44_2); acc44_3 = fma(bv3, vec4(v), acc44_3); }
        { let v = subgroupBroadcast(av5, 5u); acc45_0 = fma(bv0, vec4(v), acc45_0); acc45_1 = fma(bv1, vec4(v), acc45_1); acc45_2 = fma(bv2, vec4(v), acc45_2); acc45_3 = fma(bv3, vec4(v), acc45_3); }
        { let v = subgroupBroadcast(av5, 6u); acc46_0 = fma(bv0, vec4(v), acc46_0); acc46_1 = fma(bv1, vec4(v), acc46_1); acc46_2 = fma(bv2, vec4(v), acc46_2); acc46_3 = fma(bv3, vec4(v), acc46_3); }
        { let v = subgroupBroadcast(av5, 7u); acc47_0 = fma(bv0, vec4(v), acc47_0); acc47_1 = fma(bv1, vec4(v), acc47_1); acc47_2 = fma(bv2, vec4(v), acc47_2); acc47_3 = fma(bv3, vec4(v), acc47_3); }
        let av6 = a[ar6 + ka];
        { let v = subgroupBroadcast(av6, 0u); acc48_0 = fma(bv0, vec4(v), acc48_0); acc48_1 = fma(bv1, vec4(v), acc48_1); acc48_2 = fma(bv2, vec4(v), acc48_2); acc48_3 = fma(bv3, vec4(v), acc48_3); }
        { let v = subgroupBroadcast(av6, 1u); acc49_0 = fma(bv0, vec4(v), acc49_0); acc49_1 = fma(bv1, vec4(v), acc49_1); acc49_2 = fma(bv2, vec4(v), acc49_2); acc49_3 = fma(bv3, vec4(v), acc49_3); }
        { let v = subgroupBroadcast(av6, 2u); acc50_0 = fma(bv0, vec4(v), acc50_0); acc50_1 = fma(bv1, vec4(v), acc50_1); acc50_2 = fma(bv2, vec4(v), acc50_2); acc50_3 = fma(bv3, vec4(v), acc50_3); }
        { let v = subgroupBroadcast(av6, 3u); acc51_0 = fma(bv0, vec4(v), acc51_0); acc51_1 = fma(bv1, vec4(v), acc51_1); acc51_2 = fma(bv2, vec4(v), acc51_2); acc51_3 = fma(bv3, vec4(v), acc51_3); }
        { let v = subgroupBroadcast(av6, 4u); acc52_0 = fma(bv0, vec4(v), acc52_0); acc52_1 = fma(bv1, vec4(v), acc52_1); acc52_2 = fma(bv2, vec4(v), acc52_2); acc52_3 = fma(bv3, vec4(v), acc52_3); }
        { let v = subgroupBroadcast(av6, 5u); acc53_0 = fma(bv0, vec4(v), acc53_0); acc53_1 = fma(bv1, vec4(v), acc53_1); acc53_2 = fma(bv2, vec4(v), acc53_2); acc53_3 = fma(bv3, vec4(v), acc53_3); }
        { let v = subgroupBroadcast(av6, 6u); acc54_0 = fma(bv0, vec4(v), acc54_0); acc54_1 = fma(bv1, vec4(v), acc54_1); acc54_2 = fma(bv2, vec4(v), acc54_2); acc54_3 = fma(bv3, vec4(v), acc54_3); }
        { let v = subgroupBroadcast(av6, 7u); acc55_0 = fma(bv0, vec4(v), acc55_0); acc55_1 = fma(bv1, vec4(v), acc55_1); acc55_2 = fma(bv2, vec4(v), acc55_2); acc55_3 = fma(bv3, vec4(v), acc55_3); }
        let av7 = a[ar7 + ka];
        { let v = subgroupBroadcast(av7, 0u); acc56_0 = fma(bv0, vec4(v), acc56_0); acc56_1 = fma(bv1, vec4(v), acc56_1); acc56_2 = fma(bv2, vec4(v), acc56_2); acc56_3 = fma(bv3, vec4(v), acc56_3); }
        { let v = subgroupBroadcast(av7, 1u); acc57_0 = fma(bv0, vec4(v), acc57_0); acc57_1 = fma(bv1, vec4(v), acc57_1); acc57_2 = fma(bv2, vec4(v), acc57_2); acc57_3 = fma(bv3, vec4(v), acc57_3); }
        { let v = subgroupBroadcast(av7, 2u); acc58_0 = fma(bv0, vec4(v), acc58_0); acc58_1 = fma(bv1, vec4(v), acc58_1); acc58_2 = fma(bv2, vec4(v), acc58_2); acc58_3 = fma(bv3, vec4(v), acc58_3); }
        { let v = subgroupBroadcast(av7, 3u); acc59_0 = fma(bv0, vec4(v), acc59_0); acc59_1 = fma(bv1, vec4(v), acc59_1); acc59_2 = fma(bv2, vec4(v), acc59_2); acc59_3 = fma(bv3, vec4(v), acc59_3); }
        { let v = subgroupBroadcast(av7, 4u); acc60_0 = fma(bv0, vec4(v), acc60_0); acc60_1 = fma(bv1, vec4(v), acc60_1); acc60_2 = fma(bv2, vec4(v), acc60_2); acc60_3 = fma(bv3, vec4(v), acc60_3); }
        { let v = subgroupBroadcast(av7, 5u); acc61_0 = fma(bv0, vec4(v), acc61_0); acc61_1 = fma(bv1, vec4(v), acc61_1); acc61_2 = fma(bv2, vec4(v), acc61_2); acc61_3 = fma(bv3, vec4(v), acc61_3); }
        { let v = subgroupBroadcast(av7, 6u); acc62_0 = fma(bv0, vec4(v), acc62_0); acc62_1 = fma(bv1, vec4(v), acc62_1); acc62_2 = fma(bv2, vec4(v), acc62_2); acc62_3 = fma(bv3, vec4(v), acc62_3); }
        { let v = subgroupBroadcast(av7, 7u); acc63_0 = fma(bv0, vec4(v), acc63_0); acc63_1 = fma(bv1, vec4(v), acc63_1); acc63_2 = fma(bv2, vec4(v), acc63_2); acc63_3 = fma(bv3, vec4(v), acc63_3); }
        ka += p.a_sk;
        kb += p.b_sk;
    }
    store_row(z, row0 + 0u, col0 + 0u, acc0_0);
    store_row(z, row0 + 0u, col0 + 4u, acc0_1);
    store_row(z, row0 + 0u, col0 + 8u, acc0_2);
    store_row(z, row0 + 0u, col0 + 12u, acc0_3);
    store_row(z, row0 + 1u, col0 + 0u, acc1_0);
    store_row(z, row0 + 1u, col0 + 4u, acc1_1);
    store_row(z, row0 + 1u, col0 + 8u, acc1_2);
    store_row(z, row0 + 1u, col0 + 12u, acc1_3);
    store_row(z, row0 + 2u, col0 + 0u, acc2_0);
    store_row(z, row0 + 2u, col0 + 4u, acc2_1);
    store_row(z, row0 + 2u, col0 + 8u, acc2_2);
    store_row(z, row0 + 2u, col0 + 12u, acc2_3);
    store_row(z, row0 + 3u, col0 + 0u, acc3_0);
    store_row(z, row0 + 3u, col0 + 4u, acc3_1);
    store_row(z, row0 + 3u, col0 + 8u, acc3_2);
    store_row(z, row0 + 3u, col0 + 12u, acc3_3);
    store_row(z, row0 + 4u, col0 + 0u, acc4_0);
    store_row(z, row0 + 4u, col0 + 4u, acc4_1);
    store_row(z, row0 + 4u, col0 + 8u, acc4_2);
    store_row(z, row0 + 4u, col0 + 12u, acc4_3);
    store_row(z, row0 + 5u, col0 + 0u, acc5_0);
    store_row(z, row0 + 5u, col0 + 4u, acc5_1);
    store_row(z, row0 + 5u, col0 + 8u, acc5_2);
    store_row(z, row0 + 5u, col0 + 12u, acc5_3);
    store_row(z, row0 + 6u, col0 + 0u, acc6_0);
    store_row(z, row0 + 6u, col0 + 4u, acc6_1);
    store_row(z, row0 + 6u, col0 + 8u, acc6_2);
    store_row(z, row0 + 6u, col0 + 12u, acc6_3);
    store_row(z, row0 + 7u, col0 + 0u, acc7_0);
    store_row(z, row0 + 7u, col0 + 4u, acc7_1);
    store_row(z, row0 + 7u, col0 + 8u, acc7_2);
    store_row(z, row0 + 7u, col0 + 12u, acc7_3);
    store_row(z, row0 + 8u, col0 + 0u, acc8_0);
    store_row(z, row0 + 8u, col0 + 4u, acc8_1);
    store_row(z, row0 + 8u, col0 + 8u, acc8_2);
    store_row(z, row0 + 8u, col0 + 12u, acc8_3);
    store_row(z, row0 + 9u, col0 + 0u, acc9_0);
    store_row(z, row0 + 9u, col0 + 4u, acc9_1);
    store_row(z, row0 + 9u, col0 + 8u, acc9_2);
    store_row(z, row0 + 9u, col0 + 12u, acc9_3);
    store_row(z, row0 + 10u, col0 + 0u, acc10_0);
    store_row(z, row0 + 10u, col0 + 4u, acc10_1);
    store_row(z, row0 + 10u, col0 + 8u, acc10_2);
    store_row(z, row0 + 10u, col0 + 12u, acc10_3);
    store_row(z, row0 + 11u, col0 + 0u, acc11_0);
    store_row(z, row0 + 11u, col0 + 4u, acc11_1);
    store_row(z, row0 + 11u, col0 + 8u, acc11_2);
    store_row(z, row0 + 11u, col0 + 12u, acc11_3);
    store_row(z, row0 + 12u, col0 + 0u, acc12_0);
    store_row(z, row0 + 12u, col0 + 4u, acc12_1);
    store_row(z, row0 + 12u, col0 + 8u, acc12_2);
    store_row(z, row0 + 12u, col0 + 12u, acc12_3);
    store_row(z, row0 + 13u, col0 + 0u, acc13_0);
    store_row(z, row0 + 13u, col0 + 4u, acc13_1);
    store_row(z, row0 + 13u, col0 + 8u, acc13_2);
    store_row(z, row0 + 13u, col0 + 12u, acc13_3);
    store_row(z, row0 + 14u, col0 + 0u, acc14_0);
    store_row(z, row0 + 14u, col0 + 4u, acc14_1);
    store_row(z, row0 + 14u, col0 + 8u, acc14_2);
    store_row(z, row0 + 14u, col0 + 12u, acc14_3);
    store_row(z, row0 + 15u, col0 + 0u, acc15_0);
    store_row(z, row0 + 15u, col0 + 4u, acc15_1);
    store_row(z, row0 + 15u, col0 + 8u, acc15_2);
    store_row(z, row0 + 15u, col0 + 12u, acc15_3);
    store_row(z, row0 + 16u, col0 + 0u, acc16_0);
    store_row(z, row0 + 16u, col0 + 4u, acc16_1);
    store_row(z, row0 + 16u, col0 + 8u, acc16_2);
    store_row(z, row0 + 16u, col0 + 12u, acc16_3);
    store_row(z, row0 + 17u, col0 + 0u, acc17_0);
    store_row(z, row0 + 17u, col0 + 4u, acc17_1);
    store_row(z, row0 + 17u, col0 + 8u, acc17_2);
    store_row(z, row0 + 17u, col0 + 12u, acc17_3);
    store_row(z, row0 + 18u, col0 + 0u, acc18_0);
    store_row(z, row0 + 18u, col0 + 4u, acc18_1);
    store_row(z, row0 + 18u, col0 + 8u, acc18_2);
    store_row(z, row0 + 18u, col0 + 12u, acc18_3);
    store_row(z, row0 + 19u, col0 + 0u, acc19_0);
    store_row(z, row0 + 19u, col0 + 4u, acc19_1);
    store_row(z, row0 + 19u, col0 + 8u, acc19_2);
    store_row(z, row0 + 19u, col0 + 12u, acc19_3);
    store_row(z, row0 + 20u, col0 + 0u, acc20_0);
    store_row(z, row0 + 20u, col0 + 4u, acc20_1);
    store_row(z, row0 + 20u, col0 + 8u, acc20_2);
    store_row(z, row0 + 20u, col0 + 12u, acc20_3);
    store_row(z, row0 + 21u, col0 + 0u, acc21_0);
    store_row(z, row0 + 21u, col0 + 4u, acc21_1);
    store_row(z, row0 + 21u, col0 + 8u, acc21_2);
    store_row(z, row0 + 21u, col0 + 12u, acc21_3);
    store_row(z, row0 + 22u, col0 + 0u, acc22_0);
    store_row(z, row0 + 22u, col0 + 4u, acc22_1);
    store_row(z, row0 + 22u, col0 + 8u, acc22_2);
    store_row(z, row0 + 22u, col0 + 12u, acc22_3);
    store_row(z, row0 + 23u, col0 + 0u, acc23_0);
    store_row(z, row0 + 23u, col0 + 4u, acc23_1);
    store_row(z, row0 + 23u, col0 + 8u, acc23_2);
    store_row(z, row0 + 23u, col0 + 12u, acc23_3);
    store_row(z, row0 + 24u, col0 + 0u, acc24_0);
    store_row(z, row0 + 24u, col0 + 4u, acc24_1);
    store_row(z, row0 + 24u, col0 + 8u, acc24_2);
    store_row(z, row0 + 24u, col0 + 12u, acc24_3);
    store_row(z, row0 + 25u, col0 + 0u, acc25_0);
    store_row(z, row0 + 25u, col0 + 4u, acc25_1);
    store_row(z, row0 + 25u, col0 + 8u, acc25_2);
    store_row(z, row0 + 25u, col0 + 12u, acc25_3);
    store_row(z, row0 + 26u, col0 + 0u, acc26_0);
    store_row(z, row0 + 26u, col0 + 4u, acc26_1);
    store_row(z, row0 + 26u, col0 + 8u, acc26_2);
    store_row(z, row0 + 26u, col0 + 12u, acc26_3);
    store_row(z, row0 + 27u, col0 + 0u, acc27_0);
    store_row(z, row0 + 27u, col0 + 4u, acc27_1);
    store_row(z, row0 + 27u, col0 + 8u, acc27_2);
    store_row(z, row0 + 27u, col0 + 12u, acc27_3);
    store_row(z, row0 + 28u, col0 + 0u, acc28_0);
    store_row(z, row0 + 28u, col0 + 4u, acc28_1);
    store_row(z, row0 + 28u, col0 + 8u, acc28_2);
    store_row(z, row0 + 28u, col0 + 12u, acc28_3);
    store_row(z, row0 + 29u, col0 + 0u, acc29_0);
    store_row(z, row0 + 29u, col0 + 4u, acc29_1);
    store_row(z, row0 + 29u, col0 + 8u, acc29_2);
    store_row(z, row0 + 29u, col0 + 12u, acc29_3);
    store_row(z, row0 + 30u, col0 + 0u, acc30_0);
    store_row(z, row0 + 30u, col0 + 4u, acc30_1);
    store_row(z, row0 + 30u, col0 + 8u, acc30_2);
    store_row(z, row0 + 30u, col0 + 12u, acc30_3);
    store_row(z, row0 + 31u, col0 + 0u, acc31_0);
    store_row(z, row0 + 31u, col0 + 4u, acc31_1);
    store_row(z, row0 + 31u, col0 + 8u, acc31_2);
    store_row(z, row0 + 31u, col0 + 12u, acc31_3);
    store_row(z, row0 + 32u, col0 + 0u, acc32_0);
    store_row(z, row0 + 32u, col0 + 4u, acc32_1);
    store_row(z, row0 + 32u, col0 + 8u, acc32_2);
    store_row(z, row0 + 32u, col0 + 12u, acc32_3);
    store_row(z, row0 + 33u, col0 + 0u, acc33_0);
    store_row(z, row0 + 33u, col0 + 4u, acc33_1);
    store_row(z, row0 + 33u, col0 + 8u, acc33_2);
    store_row(z, row0 + 33u, col0 + 12u, acc33_3);
    store_row(z, row0 + 34u, col0 + 0u, acc34_0);
    store_row(z, row0 + 34u, col0 + 4u, acc34_1);
    store_row(z, row0 + 34u, col0 + 8u, acc34_2);
    store_row(z, row0 + 34u, col0 + 12u, acc34_3);
    store_row(z, row0 + 35u, col0 + 0u, acc35_0);
    store_row(z, row0 + 35u, col0 + 4u, acc35_1);
    store_row(z, row0 + 35u, col0 + 8u, acc35_2);
    store_row(z, row0 + 35u, col0 + 12u, acc35_3);
    store_row(z, row0 + 36u, col0 + 0u, acc36_0);
    store_row(z, row0 + 36u, col0 + 4u, acc36_1);
    store_row(z, row0 + 36u, col0 + 8u, acc36_2);
    store_row(z, row0 + 36u, col0 + 12u, acc36_3);
    store_row(z, row0 + 37u, col0 + 0u, acc37_0);
    store_row(z, row0 + 37u, col0 + 4u, acc37_1);
    store_row(z, row0 + 37u, col0 + 8u, acc37_2);
    store_row(z, row0 + 37u, col0 + 12u, acc37_3);
    store_row(z, row0 + 38u, col0 + 0u, acc38_0);
    store_row(z, row0 + 38u, col0 + 4u, acc38_1);
    store_row(z, row0 + 38u, col0 + 8u, acc38_2);
    store_row(z, row0 + 38u, col0 + 12u, acc38_3);
    store_row(z, row0 + 39u, col0 + 0u, acc39_0);
    store_row(z, row0 + 39u, col0 + 4u, acc39_1);
    store_row(z, row0 + 39u, col0 + 8u, acc39_2);
    store_row(z, row0 + 39u, col0 + 12u, acc39_3);
    store_row(z, row0 + 40u, col0 + 0u, acc40_0);
    store_row(z, row0 + 40u, col0 + 4u, acc40_1);
    store_row(z, row0 + 40u, col0 + 8u, acc40_2);
    store_row(z, row0 + 40u, col0 + 12u, acc40_3);
    store_row(z, row0 + 41u, col0 + 0u, acc41_0);
    store_row(z, row0 + 41u, col0 + 4u, acc41_1);
    store_row(z, row0 + 41u, col0 + 8u, acc41_2);
    store_row(z, row0 + 41u, col0 + 12u, acc41_3);
    store_row(z, row0 + 42u, col0 + 0u, acc42_0);
    store_row(z, row0 + 42u, col0 + 4u, acc42_1);
    store_row(z, row0 + 42u, col0 + 8u, acc42_2);
    store_row(z, row0 + 42u, col0 + 12u, acc42_3);
    store_row(z, row0 + 43u, col0 + 0u, acc43_0);
    store_row(z, row0 + 43u, col0 + 4u, acc43_1);
    store_row(z, row0 + 43u, col0 + 8u, acc43_2);
    store_row(z, row0 + 43u, col0 + 12u, acc43_3);
    store_row(z, row0 + 44u, col0 + 0u, acc44_0);
    store_row(z, row0 + 44u, col0 + 4u, acc44_1);
    store_row(z, row0 + 44u, col0 + 8u, acc44_2);
    store_row(z, row0 + 44u, col0 + 12u, acc44_3);
    store_row(z, row0 + 45u, col0 + 0u, acc45_0);
    store_row(z, row0 + 45u, col0 + 4u, acc45_1);
    store_row(z, row0 + 45u, col0 + 8u, acc45_2);
    store_row(z, row0 + 45u, col0 + 12u, acc45_3);
    store_row(z, row0 + 46u, col0 + 0u, acc46_0);
    store_row(z, row0 + 46u, col0 + 4u, acc46_1);
    store_row(z, row0 + 46u, col0 + 8u, acc46_2);
    store_row(z, row0 + 46u, col0 + 12u, acc46_3);
    store_row(z, row0 + 47u, col0 + 0u, acc47_0);
    store_row(z, row0 + 47u, col0 + 4u, acc47_1);
    store_row(z, row0 + 47u, col0 + 8u, acc47_2);
    store_row(z, row0 + 47u, col0 + 12u, acc47_3);
    store_row(z, row0 + 48u, col0 + 0u, acc48_0);
    store_row(z, row0 + 48u, col0 + 4u, acc48_1);
    store_row(z, row0 + 48u, col0 + 8u, acc48_2);
    store_row(z, row0 + 48u, col0 + 12u, acc48_3);
    store_row(z, row0 + 49u, col0 + 0u, acc49_0);
    store_row(z, row0 + 49u, col0 + 4u, acc49_1);
    store_row(z, row0 + 49u, col0 + 8u, acc49_2);
    store_row(z, row0 + 49u, col0 + 12u, acc49_3);
    store_row(z, row0 + 50u, col0 + 0u, acc50_0);
    store_row(z, row0 + 50u, col0 + 4u, acc50_1);
    store_row(z, row0 + 50u, col0 + 8u, acc50_2);
    store_row(z, row0 + 50u, col0 + 12u, acc50_3);
    store_row(z, row0 + 51u, col0 + 0u, acc51_0);
    store_row(z, row0 + 51u, col0 + 4u, acc51_1);
    store_row(z, row0 + 51u, col0 + 8u, acc51_2);
    store_row(z, row0 + 51u, col0 + 12u, acc51_3);
    store_row(z, row0 + 52u, col0 + 0u, acc52_0);
    store_row(z, row0 + 52u, col0 + 4u, acc52_1);
    store_row(z, row0 + 52u, col0 + 8u, acc52_2);
    store_row(z, row0 + 52u, col0 + 12u, acc52_3);
    store_row(z, row0 + 53u, col0 + 0u, acc53_0);
    store_row(z, row0 + 53u, col0 + 4u, acc53_1);
    store_row(z, row0 + 53u, col0 + 8u, acc53_2);
    store_row(z, row0 + 53u, col0 + 12u, acc53_3);
    store_row(z, row0 + 54u, col0 + 0u, acc54_0);
    store_row(z, row0 + 54u, col0 + 4u, acc54_1);
    store_row(z, row0 + 54u, col0 + 8u, acc54_2);
    store_row(z, row0 + 54u, col0 + 12u, acc54_3);
    store_row(z, row0 + 55u, col0 + 0u, acc55_0);
    store_row(z, row0 + 55u, col0 + 4u, acc55_1);
    store_row(z, row0 + 55u, col0 + 8u, acc55_2);
    store_row(z, row0 + 55u, col0 + 12u, acc55_3);
    store_row(z, row0 + 56u, col0 + 0u, acc56_0);
    store_row(z, row0 + 56u, col0 + 4u, acc56_1);
    store_row(z, row0 + 56u, col0 + 8u, acc56_2);
    store_row(z, row0 + 56u, col0 + 12u, acc56_3);
    store_row(z, row0 + 57u, col0 + 0u, acc57_0);
    store_row(z, row0 + 57u, col0 + 4u, acc57_1);
    store_row(z, row0 + 57u, col0 + 8u, acc57_2);
    store_row(z, row0 + 57u, col0 + 12u, acc57_3);
    store_row(z, row0 + 58u, col0 + 0u, acc58_0);
    store_row(z, row0 + 58u, col0 + 4u, acc58_1);
    store_row(z, row0 + 58u, col0 + 8u, acc58_2);
    store_row(z, row0 + 58u, col0 + 12u, acc58_3);
    store_row(z, row0 + 59u, col0 + 0u, acc59_0);
    store_row(z, row0 + 59u, col0 + 4u, acc59_1);
    store_row(z, row0 + 59u, col0 + 8u, acc59_2);
    store_row(z, row0 + 59u, col0 + 12u, acc59_3);
    store_row(z, row0 + 60u, col0 + 0u, acc60_0);
    store_row(z, row0 + 60u, col0 + 4u, acc60_1);
    store_row(z, row0 + 60u, col0 + 8u, acc60_2);
    store_row(z, row0 + 60u, col0 + 12u, acc60_3);
    store_row(z, row0 + 61u, col0 + 0u, acc61_0);
    store_row(z, row0 + 61u, col0 + 4u, acc61_1);
    store_row(z, row0 + 61u, col0 + 8u, acc61_2);
    store_row(z, row0 + 61u, col0 + 12u, acc61_3);
    store_row(z, row0 + 62u, col0 + 0u, acc62_0);
    store_row(z, row0 + 62u, col0 + 4u, acc62_1);
    store_row(z, row0 + 62u, col0 + 8u, acc62_2);
    store_row(z, row0 + 62u, col0 + 12u, acc62_3);
    store_row(z, row0 + 63u, col0 + 0u, acc63_0);
    store_row(z, row0 + 63u, col0 + 4u, acc63_1);
    store_row(z, row0 + 63u, col0 + 8u, acc63_2);
    store_row(z, row0 + 63u, col0 + 12u, acc63_3);
}

@compute @workgroup_size(8)
fn mm_k1_r32c16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
         @builtin(subgroup_invocation_id) sl: u32) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * 32u;
    let col0 = wg.x * 128u + lid.x * 16u;
    let ar0 = z * p.a_bs + min(row0 + 0u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar1 = z * p.a_bs + min(row0 + 8u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar2 = z * p.a_bs + min(row0 + 16u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar3 = z * p.a_bs + min(row0 + 24u + sl % 8u, p.m - 1u) * p.a_sm;
    let bc0 = z * p.b_bs + min(col0 + 0u, p.n - 1u) * p.b_sn;
    let bc1 = z * p.b_bs + min(col0 + 1u, p.n - 1u) * p.b_sn;
    let bc2 = z * p.b_bs + min(col0 + 2u, p.n - 1u) * p.b_sn;
    let bc3 = z * p.b_bs + min(col0 + 3u, p.n - 1u) * p.b_sn;
    let bc4 = z * p.b_bs + min(col0 + 4u, p.n - 1u) * p.b_sn;
    let bc5 = z * p.b_bs + min(col0 + 5u, p.n - 1u) * p.b_sn;
    let bc6 = z * p.b_bs + min(col0 + 6u, p.n - 1u) * p.b_sn;
    let bc7 = z * p.b_bs + min(col0 + 7u, p.n - 1u) * p.b_sn;
    let bc8 = z * p.b_bs + min(col0 + 8u, p.n - 1u) * p.b_sn;
    let bc9 = z * p.b_bs + min(col0 + 9u, p.n - 1u) * p.b_sn;
    let bc10 = z * p.b_bs + min(col0 + 10u, p.n - 1u) * p.b_sn;
    let bc11 = z * p.b_bs + min(col0 + 11u, p.n - 1u) * p.b_sn;
    let bc12 = z * p.b_bs + min(col0 + 12u, p.n - 1u) * p.b_sn;
    let bc13 = z * p.b_bs + min(col0 + 13u, p.n - 1u) * p.b_sn;
    let bc14 = z * p.b_bs + min(col0 + 14u, p.n - 1u) * p.b_sn;
    let bc15 = z * p.b_bs + min(col0 + 15u, p.n - 1u) * p.b_sn;
    var acc0_0: vec4<f32>;
    var acc0_1: vec4<f32>;
    var acc0_2: vec4<f32>;
    var acc0_3: vec4<f32>;
    var acc1_0: vec4<f32>;
    var acc1_1: vec4<f32>;
    var acc1_2: vec4<f32>;
    var acc1_3: vec4<f32>;
    var acc2_0: vec4<f32>;
    var acc2_1: vec4<f32>;
    var acc2_2: vec4<f32>;
    var acc2_3: vec4<f32>;
    var acc3_0: vec4<f32>;
    var acc3_1: vec4<f32>;
    var acc3_2: vec4<f32>;
    var acc3_3: vec4<f32>;
    var acc4_0: vec4<f32>;
    var acc4_1: vec4<f32>;
    var acc4_2: vec4<f32>;
    var acc4_3: vec4<f32>;
    var acc5_0: vec4<f32>;
    var acc5_1: vec4<f32>;
    var acc5_2: vec4<f32>;
    var acc5_3: vec4<f32>;
    var acc6_0: vec4<f32>;
    var acc6_1: vec4<f32>;
    var acc6_2: vec4<f32>;
    var acc6_3: vec4<f32>;
    var acc7_0: vec4<f32>;
    var acc7_1: vec4<f32>;
    var acc7_2: vec4<f32>;
    var acc7_3: vec4<f32>;
    var acc8_0: vec4<f32>;
    var acc8_1: vec4<f32>;
    var acc8_2: vec4<f32>;
    var acc8_3: vec4<f32>;
    var acc9_0: vec4<f32>;
    var acc9_1: vec4<f32>;
    var acc9_2: vec4<f32>;
    var acc9_3: vec4<f32>;
    var acc10_0: vec4<f32>;
    var acc10_1: vec4<f32>;
    var acc10_2: vec4<f32>;
    var acc10_3: vec4<f32>;
    var acc11_0: vec4<f32>;
    var acc11_1: vec4<f32>;
    var acc11_2: vec4<f32>;
    var acc11_3: vec4<f32>;
    var acc12_0: vec4<f32>;
    var acc12_1: vec4<f32>;
    var acc12_2: vec4<f32>;
    var acc12_3: vec4<f32>;
    var acc13_0: vec4<f32>;
    var acc13_1: vec4<f32>;
    var acc13_2: vec4<f32>;
    var acc13_3: vec4<f32>;
    var acc14_0: vec4<f32>;
    var acc14_1: vec4<f32>;
    var acc14_2: vec4<f32>;
    var acc14_3: vec4<f32>;
    var acc15_0: vec4<f32>;
    var acc15_1: vec4<f32>;
    var acc15_2: vec4<f32>;
    var acc15_3: vec4<f32>;
    var acc16_0: vec4<f32>;
    var acc16_1: vec4<f32>;
    var acc16_2: vec4<f32>;
    var acc16_3: vec4<f32>;
    var acc17_0: vec4<f32>;
    var acc17_1: vec4<f32>;
    var acc17_2: vec4<f32>;
    var acc17_3: vec4<f32>;
    var acc18_0: vec4<f32>;
    var acc18_1: vec4<f32>;
    var acc18_2: vec4<f32>;
    var acc18_3: vec4<f32>;
    var acc19_0: vec4<f32>;
    var acc19_1: vec4<f32>;
    var acc19_2: vec4<f32>;
    var acc19_3: vec4<f32>;
    var acc20_0: vec4<f32>;
    var acc20_1: vec4<f32>;
    var acc20_2: vec4<f32>;
    var acc20_3: vec4<f32>;
    var acc21_0: vec4<f32>;
    var acc21_1: vec4<f32>;
    var acc21_2: vec4<f32>;
    var acc21_3: vec4<f32>;
    var acc22_0: vec4<f32>;
    var acc22_1: vec4<f32>;
    var acc22_2: vec4<f32>;
    var acc22_3: vec4<f32>;
    var acc23_0: vec4<f32>;
    var acc23_1: vec4<f32>;
    var acc23_2: vec4<f32>;
    var acc23_3: vec4<f32>;
    var acc24_0: vec4<f32>;
    var acc24_1: vec4<f32>;
    var acc24_2: vec4<f32>;
    var acc24_3: vec4<f32>;
    var acc25_0: vec4<f32>;
    var acc25_1: vec4<f32>;
    var acc25_2: vec4<f32>;
    var acc25_3: vec4<f32>;
    var acc26_0: vec4<f32>;
    var acc26_1: vec4<f32>;
    var acc26_2: vec4<f32>;
    var acc26_3: vec4<f32>;
    var acc27_0: vec4<f32>;
    var acc27_1: vec4<f32>;
    var acc27_2: vec4<f32>;
    var acc27_3: vec4<f32>;
    var acc28_0: vec4<f32>;
    var acc28_1: vec4<f32>;
    var acc28_2: vec4<f32>;
    var acc28_3: vec4<f32>;
    var acc29_0: vec4<f32>;
    var acc29_1: vec4<f32>;
    var acc29_2: vec4<f32>;
    var acc29_3: vec4<f32>;
    var acc30_0: vec4<f32>;
    var acc30_1: vec4<f32>;
    var acc30_2: vec4<f32>;
    var acc30_3: vec4<f32>;
    var acc31_0: vec4<f32>;
    var acc31_1: vec4<f32>;
    var acc31_2: vec4<f32>;
    var acc31_3: vec4<f32>;
    var ka = 0u;
    var kb = 0u;
    for (var k = 0u; k < p.k; k++) {
        let bv0 = vec4<f32>(b[bc0 + kb], b[bc1 + kb], b[bc2 + kb], b[bc3 + kb]);
        let bv1 = vec4<f32>(b[bc4 + kb], b[bc5 + kb], b[bc6 + kb], b[bc7 + kb]);
        let bv2 = vec4<f32>(b[bc8 + kb], b[bc9 + kb], b[bc10 + kb], b[bc11 + kb]);
        let bv3 = vec4<f32>(b[bc12 + kb], b[bc13 + kb], b[bc14 + kb], b[bc15 + kb]);
        let av0 = a[ar0 + ka];
        { let v = subgroupBroadcast(av0, 0u); acc0_0 = fma(bv0, vec4(v), acc0_0); acc0_1 = fma(bv1, vec4(v), acc0_1); acc0_2 = fma(bv2, vec4(v), acc0_2); acc0_3 = fma(bv3, vec4(v), acc0_3); }
        { let v = subgroupBroadcast(av0, 1u); acc1_0 = fma(bv0, vec4(v), acc1_0); acc1_1 = fma(bv1, vec4(v), acc1_1); acc1_2 = fma(bv2, vec4(v), acc1_2); acc1_3 = fma(bv3, vec4(v), acc1_3); }
        { let v = subgroupBroadcast(av0, 2u); acc2_0 = fma(bv0, vec4(v), acc2_0); acc2_1 = fma(bv1, vec4(v), acc2_1); acc2_2 = fma(bv2, vec4(v), acc2_2); acc2_3 = fma(bv3, vec4(v), acc2_3); }
        { let v = subgroupBroadcast(av0, 3u); acc3_0 = fma(bv0, vec4(v), acc3_0); acc3_1 = fma(bv1, vec4(v), acc3_1); acc3_2 = fma(bv2, vec4(v), acc3_2); acc3_3 = fma(bv3, vec4(v), acc3_3); }
        { let v = subgroupBroadcast(av0, 4u); acc4_0 = fma(bv0, vec4(v), acc4_0); acc4_1 = fma(bv1, vec4(v), acc4_1); acc4_2 = fma(bv2, vec4(v), acc4_2); acc4_3 = fma(bv3, vec4(v), acc4_3); }
        { let v = subgroupBroadcast(av0, 5u); acc5_0 = fma(bv0, vec4(v), acc5_0); acc5_1 = fma(bv1, vec4(v), acc5_1); acc5_2 = fma(bv2, vec4(v), acc5_2); acc5_3 = fma(bv3, vec4(v), acc5_3); }
        { let v = subgroupBroadcast(av0, 6u); acc6_0 = fma(bv0, vec4(v), acc6_0); acc6_1 = fma(bv1, vec4(v), acc6_1); acc6_2 = fma(bv2, vec4(v), acc6_2); acc6_3 = fma(bv3, vec4(v), acc6_3); }
        { let v = subgroupBroadcast(av0, 7u); acc7_0 = fma(bv0, vec4(v), acc7_0); acc7_1 = fma(bv1, vec4(v), acc7_1); acc7_2 = fma(bv2, vec4(v), acc7_2); acc7_3 = fma(bv3, vec4(v), acc7_3); }
        let av1 = a[ar1 + ka];
        { let v = subgroupBroadcast(av1, 0u); acc8_0 = fma(bv0, vec4(v), acc8_0); acc8_1 = fma(bv1, vec4(v), acc8_1); acc8_2 = fma(bv2, vec4(v), acc8_2); acc8_3 = fma(bv3, vec4(v), acc8_3); }
        { let v = subgroupBroadcast(av1, 1u); acc9_0 = fma(bv0, vec4(v), acc9_0); acc9_1 = fma(bv1, vec4(v), acc9_1); acc9_2 = fma(bv2, vec4(v), acc9_2); acc9_3 = fma(bv3, vec4(v), acc9_3); }
        { let v = subgroupBroadcast(av1, 2u); acc10_0 = fma(bv0, vec4(v), acc10_0); acc10_1 = fma(bv1, vec4(v), acc10_1); acc10_2 = fma(bv2, vec4(v), acc10_2); acc10_3 = fma(bv3, vec4(v), acc10_3); }
        { let v = subgroupBroadcast(av1, 3u); acc11_0 = fma(bv0, vec4(v), acc11_0); acc11_1 = fma(bv1, vec4(v), acc11_1); acc11_2 = fma(bv2, vec4(v), acc11_2); acc11_3 = fma(bv3, vec4(v), acc11_3); }
        { let v = subgroupBroadcast(av1, 4u); acc12_0 = fma(bv0, vec4(v), acc12_0); acc12_1 = fma(bv1, vec4(v), acc12_1); acc12_2 = fma(bv2, vec4(v), acc12_2); acc12_3 = fma(bv3, vec4(v), acc12_3); }
        { let v = subgroupBroadcast(av1, 5u); acc13_0 = fma(bv0, vec4(v), acc13_0); acc13_1 = fma(bv1, vec4(v), acc13_1); acc13_2 = fma(bv2, vec4(v), acc13_2); acc13_3 = fma(bv3, vec4(v), acc13_3); }
        { let v = subgroupBroadcast(av1, 6u); acc14_0 = fma(bv0, vec4(v), acc14_0); acc14_1 = fma(bv1, vec4(v), acc14_1); acc14_2 = fma(bv2, vec4(v), acc14_2); acc14_3 = fma(bv3, vec4(v), acc14_3); }
        { let v = subgroupBroadcast(av1, 7u); acc15_0 = fma(bv0, vec4(v), acc15_0); acc15_1 = fma(bv1, vec4(v), acc15_1); acc15_2 = fma(bv2, vec4(v), acc15_2); acc15_3 = fma(bv3, vec4(v), acc15_3); }
        let av2 = a[ar2 + ka];
        { let v = subgroupBroadcast(av2, 0u); acc16_0 = fma(bv0, vec4(v), acc16_0); acc16_1 = fma(bv1, vec4(v), acc16_1); acc16_2 = fma(bv2, vec4(v), acc16_2); acc16_3 = fma(bv3, vec4(v), acc16_3); }
        { let v = subgroupBroadcast(av2, 1u); acc17_0 = fma(bv0, vec4(v), acc17_0); acc17_1 = fma(bv1, vec4(v), acc17_1); acc17_2 = fma(bv2, vec4(v), acc17_2); acc17_3 = fma(bv3, vec4(v), acc17_3); }
        { let v = subgroupBroadcast(av2, 2u); acc18_0 = fma(bv0, vec4(v), acc18_0); acc18_1 = fma(bv1, vec4(v), acc18_1); acc18_2 = fma(bv2, vec4(v), acc18_2); acc18_3 = fma(bv3, vec4(v), acc18_3); }
        { let v = subgroupBroadcast(av2, 3u); acc19_0 = fma(bv0, vec4(v), acc19_0); acc19_1 = fma(bv1, vec4(v), acc19_1); acc19_2 = fma(bv2, vec4(v), acc19_2); acc19_3 = fma(bv3, vec4(v), acc19_3); }
        { let v = subgroupBroadcast(av2, 4u); acc20_0 = fma(bv0, vec4(v), acc20_0); acc20_1 = fma(bv1, vec4(v), acc20_1); acc20_2 = fma(bv2, vec4(v), acc20_2); acc20_3 = fma(bv3, vec4(v), acc20_3); }
        { let v = subgroupBroadcast(av2, 5u); acc21_0 = fma(bv0, vec4(v), acc21_0); acc21_1 = fma(bv1, vec4(v), acc21_1); acc21_2 = fma(bv2, vec4(v), acc21_2); acc21_3 = fma(bv3, vec4(v), acc21_3); }
        { let v = subgroupBroadcast(av2, 6u); acc22_0 = fma(bv0, vec4(v), acc22_0); acc22_1 = fma(bv1, vec4(v), acc22_1); acc22_2 = fma(bv2, vec4(v), acc22_2); acc22_3 = fma(bv3, vec4(v), acc22_3); }
        { let v = subgroupBroadcast(av2, 7u); acc23_0 = fma(bv0, vec4(v), acc23_0); acc23_1 = fma(bv1, vec4(v), acc23_1); acc23_2 = fma(bv2, vec4(v), acc23_2); acc23_3 = fma(bv3, vec4(v), acc23_3); }
        let av3 = a[ar3 + ka];
        { let v = subgroupBroadcast(av3, 0u); acc24_0 = fma(bv0, vec4(v), acc24_0); acc24_1 = fma(bv1, vec4(v), acc24_1); acc24_2 = fma(bv2, vec4(v), acc24_2); acc24_3 = fma(bv3, vec4(v), acc24_3); }
        { let v = subgroupBroadcast(av3, 1u); acc25_0 = fma(bv0, vec4(v), acc25_0); acc25_1 = fma(bv1, vec4(v), acc25_1); acc25_2 = fma(bv2, vec4(v), acc25_2); acc25_3 = fma(bv3, vec4(v), acc25_3); }
        { let v = subgroupBroadcast(av3, 2u); acc26_0 = fma(bv0, vec4(v), acc26_0); acc26_1 = fma(bv1, vec4(v), acc26_1); acc26_2 = fma(bv2, vec4(v), acc26_2); acc26_3 = fma(bv3, vec4(v), acc26_3); }
        { let v = subgroupBroadcast(av3, 3u); acc27_0 = fma(bv0, vec4(v), acc27_0); acc27_1 = fma(bv1, vec4(v), acc27_1); acc27_2 = fma(bv2, vec4(v), acc27_2); acc27_3 = fma(bv3, vec4(v), acc27_3); }
        { let v = subgroupBroadcast(av3, 4u); acc28_0 = fma(bv0, vec4(v), acc28_0); acc28_1 = fma(bv1, vec4(v), acc28_1); acc28_2 = fma(bv2, vec4(v), acc28_2); acc28_3 = fma(bv3, vec4(v), acc28_3); }
        { let v = subgroupBroadcast(av3, 5u); acc29_0 = fma(bv0, vec4(v), acc29_0); acc29_1 = fma(bv1, vec4(v), acc29_1); acc29_2 = fma(bv2, vec4(v), acc29_2); acc29_3 = fma(bv3, vec4(v), acc29_3); }
        { let v = subgroupBroadcast(av3, 6u); acc30_0 = fma(bv0, vec4(v), acc30_0); acc30_1 = fma(bv1, vec4(v), acc30_1); acc30_2 = fma(bv2, vec4(v), acc30_2); acc30_3 = fma(bv3, vec4(v), acc30_3); }
        { let v = subgroupBroadcast(av3, 7u); acc31_0 = fma(bv0, vec4(v), acc31_0); acc31_1 = fma(bv1, vec4(v), acc31_1); acc31_2 = fma(bv2, vec4(v), acc31_2); acc31_3 = fma(bv3, vec4(v), acc31_3); }
        ka += p.a_sk;
        kb += p.b_sk;
    }
    store_row(z, row0 + 0u, col0 + 0u, acc0_0);
    store_row(z, row0 + 0u, col0 + 4u, acc0_1);
    store_row(z, row0 + 0u, col0 + 8u, acc0_2);
    store_row(z, row0 + 0u, col0 + 12u, acc0_3);
    store_row(z, row0 + 1u, col0 + 0u, acc1_0);
    store_row(z, row0 + 1u, col0 + 4u, acc1_1);
    store_row(z, row0 + 1u, col0 + 8u, acc1_2);
    store_row(z, row0 + 1u, col0 + 12u, acc1_3);
    store_row(z, row0 + 2u, col0 + 0u, acc2_0);
    store_row(z, row0 + 2u, col0 + 4u, acc2_1);
    store_row(z, row0 + 2u, col0 + 8u, acc2_2);
    store_row(z, row0 + 2u, col0 + 12u, acc2_3);
    store_row(z, row0 + 3u, col0 + 0u, acc3_0);
    store_row(z, row0 + 3u, col0 + 4u, acc3_1);
    store_row(z, row0 + 3u, col0 + 8u, acc3_2);
    store_row(z, row0 + 3u, col0 + 12u, acc3_3);
    store_row(z, row0 + 4u, col0 + 0u, acc4_0);
    store_row(z, row0 + 4u, col0 + 4u, acc4_1);
    store_row(z, row0 + 4u, col0 + 8u, acc4_2);
    store_row(z, row0 + 4u, col0 + 12u, acc4_3);
    store_row(z, row0 + 5u, col0 + 0u, acc5_0);
    store_row(z, row0 + 5u, col0 + 4u, acc5_1);
    store_row(z, row0 + 5u, col0 + 8u, acc5_2);
    store_row(z, row0 + 5u, col0 + 12u, acc5_3);
    store_row(z, row0 + 6u, col0 + 0u, acc6_0);
    store_row(z, row0 + 6u, col0 + 4u, acc6_1);
    store_row(z, row0 + 6u, col0 + 8u, acc6_2);
    store_row(z, row0 + 6u, col0 + 12u, acc6_3);
    store_row(z, row0 + 7u, col0 + 0u, acc7_0);
    store_row(z, row0 + 7u, col0 + 4u, acc7_1);
    store_row(z, row0 + 7u, col0 + 8u, acc7_2);
    store_row(z, row0 + 7u, col0 + 12u, acc7_3);
    store_row(z, row0 + 8u, col0 + 0u, acc8_0);
    store_row(z, row0 + 8u, col0 + 4u, acc8_1);
    store_row(z, row0 + 8u, col0 + 8u, acc8_2);
    store_row(z, row0 + 8u, col0 + 12u, acc8_3);
    store_row(z, row0 + 9u, col0 + 0u, acc9_0);
    store_row(z, row0 + 9u, col0 + 4u, acc9_1);
    store_row(z, row0 + 9u, col0 + 8u, acc9_2);
    store_row(z, row0 + 9u, col0 + 12u, acc9_3);
    store_row(z, row0 + 10u, col0 + 0u, acc10_0);
    store_row(z, row0 + 10u, col0 + 4u, acc10_1);
    store_row(z, row0 + 10u, col0 + 8u, acc10_2);
    store_row(z, row0 + 10u, col0 + 12u, acc10_3);
    store_row(z, row0 + 11u, col0 + 0u, acc11_0);
    store_row(z, row0 + 11u, col0 + 4u, acc11_1);
    store_row(z, row0 + 11u, col0 + 8u, acc11_2);
    store_row(z, row0 + 11u, col0 + 12u, acc11_3);
    store_row(z, row0 + 12u, col0 + 0u, acc12_0);
    store_row(z, row0 + 12u, col0 + 4u, acc12_1);
    store_row(z, row0 + 12u, col0 + 8u, acc12_2);
    store_row(z, row0 + 12u, col0 + 12u, acc12_3);
    store_row(z, row0 + 13u, col0 + 0u, acc13_0);
    store_row(z, row0 + 13u, col0 + 4u, acc13_1);
    store_row(z, row0 + 13u, col0 + 8u, acc13_2);
    store_row(z, row0 + 13u, col0 + 12u, acc13_3);
    store_row(z, row0 + 14u, col0 + 0u, acc14_0);
    store_row(z, row0 + 14u, col0 + 4u, acc14_1);
    store_row(z, row0 + 14u, col0 + 8u, acc14_2);
    store_row(z, row0 + 14u, col0 + 12u, acc14_3);
    store_row(z, row0 + 15u, col0 + 0u, acc15_0);
    store_row(z, row0 + 15u, col0 + 4u, acc15_1);
    store_row(z, row0 + 15u, col0 + 8u, acc15_2);
    store_row(z, row0 + 15u, col0 + 12u, acc15_3);
    store_row(z, row0 + 16u, col0 + 0u, acc16_0);
    store_row(z, row0 + 16u, col0 + 4u, acc16_1);
    store_row(z, row0 + 16u, col0 + 8u, acc16_2);
    store_row(z, row0 + 16u, col0 + 12u, acc16_3);
    store_row(z, row0 + 17u, col0 + 0u, acc17_0);
    store_row(z, row0 + 17u, col0 + 4u, acc17_1);
    store_row(z, row0 + 17u, col0 + 8u, acc17_2);
    store_row(z, row0 + 17u, col0 + 12u, acc17_3);
    store_row(z, row0 + 18u, col0 + 0u, acc18_0);
    store_row(z, row0 + 18u, col0 + 4u, acc18_1);
    store_row(z, row0 + 18u, col0 + 8u, acc18_2);
    store_row(z, row0 + 18u, col0 + 12u, acc18_3);
    store_row(z, row0 + 19u, col0 + 0u, acc19_0);
    store_row(z, row0 + 19u, col0 + 4u, acc19_1);
    store_row(z, row0 + 19u, col0 + 8u, acc19_2);
    store_row(z, row0 + 19u, col0 + 12u, acc19_3);
    store_row(z, row0 + 20u, col0 + 0u, acc20_0);
    store_row(z, row0 + 20u, col0 + 4u, acc20_1);
    store_row(z, row0 + 20u, col0 + 8u, acc20_2);
    store_row(z, row0 + 20u, col0 + 12u, acc20_3);
    store_row(z, row0 + 21u, col0 + 0u, acc21_0);
    store_row(z, row0 + 21u, col0 + 4u, acc21_1);
    store_row(z, row0 + 21u, col0 + 8u, acc21_2);
    store_row(z, row0 + 21u, col0 + 12u, acc21_3);
    store_row(z, row0 + 22u, col0 + 0u, acc22_0);
    store_row(z, row0 + 22u, col0 + 4u, acc22_1);
    store_row(z, row0 + 22u, col0 + 8u, acc22_2);
    store_row(z, row0 + 22u, col0 + 12u, acc22_3);
    store_row(z, row0 + 23u, col0 + 0u, acc23_0);
    store_row(z, row0 + 23u, col0 + 4u, acc23_1);
    store_row(z, row0 + 23u, col0 + 8u, acc23_2);
    store_row(z, row0 + 23u, col0 + 12u, acc23_3);
    store_row(z, row0 + 24u, col0 + 0u, acc24_0);
    store_row(z, row0 + 24u, col0 + 4u, acc24_1);
    store_row(z, row0 + 24u, col0 + 8u, acc24_2);
    store_row(z, row0 + 24u, col0 + 12u, acc24_3);
    store_row(z, row0 + 25u, col0 + 0u, acc25_0);
    store_row(z, row0 + 25u, col0 + 4u, acc25_1);
    store_row(z, row0 + 25u, col0 + 8u, acc25_2);
    store_row(z, row0 + 25u, col0 + 12u, acc25_3);
    store_row(z, row0 + 26u, col0 + 0u, acc26_0);
    store_row(z, row0 + 26u, col0 + 4u, acc26_1);
    store_row(z, row0 + 26u, col0 + 8u, acc26_2);
    store_row(z, row0 + 26u, col0 + 12u, acc26_3);
    store_row(z, row0 + 27u, col0 + 0u, acc27_0);
    store_row(z, row0 + 27u, col0 + 4u, acc27_1);
    store_row(z, row0 + 27u, col0 + 8u, acc27_2);
    store_row(z, row0 + 27u, col0 + 12u, acc27_3);
    store_row(z, row0 + 28u, col0 + 0u, acc28_0);
    store_row(z, row0 + 28u, col0 + 4u, acc28_1);
    store_row(z, row0 + 28u, col0 + 8u, acc28_2);
    store_row(z, row0 + 28u, col0 + 12u, acc28_3);
    store_row(z, row0 + 29u, col0 + 0u, acc29_0);
    store_row(z, row0 + 29u, col0 + 4u, acc29_1);
    store_row(z, row0 + 29u, col0 + 8u, acc29_2);
    store_row(z, row0 + 29u, col0 + 12u, acc29_3);
    store_row(z, row0 + 30u, col0 + 0u, acc30_0);
    store_row(z, row0 + 30u, col0 + 4u, acc30_1);
    store_row(z, row0 + 30u, col0 + 8u, acc30_2);
    store_row(z, row0 + 30u, col0 + 12u, acc30_3);
    store_row(z, row0 + 31u, col0 + 0u, acc31_0);
    store_row(z, row0 + 31u, col0 + 4u, acc31_1);
    store_row(z, row0 + 31u, col0 + 8u, acc31_2);
    store_row(z, row0 + 31u, col0 + 12u, acc31_3);
}

@compute @workgroup_size(8)
fn mm_k1_r128c8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
         @builtin(subgroup_invocation_id) sl: u32) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * 128u;
    let col0 = wg.x * 64u + lid.x * 8u;
    let ar0 = z * p.a_bs + min(row0 + 0u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar1 = z * p.a_bs + min(row0 + 8u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar2 = z * p.a_bs + min(row0 + 16u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar3 = z * p.a_bs + min(row0 + 24u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar4 = z * p.a_bs + min(row0 + 32u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar5 = z * p.a_bs + min(row0 + 40u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar6 = z * p.a_bs + min(row0 + 48u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar7 = z * p.a_bs + min(row0 + 56u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar8 = z * p.a_bs + min(row0 + 64u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar9 = z * p.a_bs + min(row0 + 72u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar10 = z * p.a_bs + min(row0 + 80u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar11 = z * p.a_bs + min(row0 + 88u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar12 = z * p.a_bs + min(row0 + 96u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar13 = z * p.a_bs + min(row0 + 104u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar14 = z * p.a_bs + min(row0 + 112u + sl % 8u, p.m - 1u) * p.a_sm;
    let ar15 = z * p.a_bs + min(row0 + 120u + sl % 8u, p.m - 1u) * p.a_sm;
    let bc0 = z * p.b_bs + min(col0 + 0u, p.n - 1u) * p.b_sn;
    let bc1 = z * p.b_bs + min(col0 + 1u, p.n - 1u) * p.b_sn;
    let bc2 = z * p.b_bs + min(col0 + 2u, p.n - 1u) * p.b_sn;
    let bc3 = z * p.b_bs + min(col0 + 3u, p.n - 1u) * p.b_sn;
    let bc4 = z * p.b_bs + min(col0 + 4u, p.n - 1u) * p.b_sn;
    let bc5 = z * p.b_bs + min(col0 + 5u, p.n - 1u) * p.b_sn;
    let bc6 = z * p.b_bs + min(col0 + 6u, p.n - 1u) * p.b_sn;
    let bc7 = z * p.b_bs + min(col0 + 7u, p.n - 1u) * p.b_sn;
    var acc0_0: vec4<f32>;
    var acc0_1: vec4<f32>;
    var acc1_0: vec4<f32>;
    var acc1_1: vec4<f32>;
    var acc2_0: vec4<f32>;
    var acc2_1: vec4<f32>;
    var acc3_0: vec4<f32>;
    var acc3_1: vec4<f32>;
    var acc4_0: vec4<f32>;
    var acc4_1: vec4<f32>;
    var acc5_0: vec4<f32>;
    var acc5_1: vec4<f32>;
    var acc6_0: vec4<f32>;
    var acc6_1: vec4<f32>;
    var acc7_0: vec4<f32>;
    var acc7_1: vec4<f32>;
    var acc8_0: vec4<f32>;
    var acc8_1: vec4<f32>;
    var acc9_0: vec4<f32>;
    var acc9_1: vec4<f32>;
    var acc10_0: vec4<f32>;
    var acc10_1: vec4<f32>;
    var acc11_0: vec4<f32>;
    var acc11_1: vec4<f32>;
    var acc12_0: vec4<f32>;
    var acc12_1: vec4<f32>;
    var acc13_0: vec4<f32>;
    var acc13_1: vec4<f32>;
    var acc14_0: vec4<f32>;
    var acc14_1: vec4<f32>;
    var acc15_0: vec4<f32>;
    var acc15_1: vec4<f32>;
    var acc16_0: vec4<f32>;
    var acc16_1: vec4<f32>;
    var acc17_0: vec4<f32>;
    var acc17_1: vec4<f32>;
    var acc18_0: vec4<f32>;
    var acc18_1: vec4<f32>;
    var acc19_0: vec4<f32>;
    var acc19_1: vec4<f32>;
    var acc20_0: vec4<f32>;
    var acc20_1: vec4<f32>;
    var acc21_0: vec4<f32>;
    var acc21_1: vec4<f32>;
    var acc22_0: vec4<f32>;
    var acc22_1: vec4<f32>;
    var acc23_0: vec4<f32>;
    var acc23_1: vec4<f32>;
    var acc24_0: vec4<f32>;
    var acc24_1: vec4<f32>;
    var acc25_0: vec4<f32>;
    var acc25_1: vec4<f32>;
    var acc26_0: vec4<f32>;
    var acc26_1: vec4<f32>;
    var acc27_0: vec4<f32>;
    var acc27_1: vec4<f32>;
    var acc28_0: vec4<f32>;
    var acc28_1: vec4<f32>;
    var acc29_0: vec4<f32>;
    var acc29_1: vec4<f32>;
    var acc30_0: vec4<f32>;
    var acc30_1: vec4<f32>;
    var acc31_0: vec4<f32>;
    var acc31_1: vec4<f32>;
    var acc32_0: vec4<f32>;
    var acc32_1: vec4<f32>;
    var acc33_0: vec4<f32>;
    var acc33_1: vec4<f32>;
    var acc34_0: vec4<f32>;
    var acc34_1: vec4<f32>;
    var acc35_0: vec4<f32>;
    var acc35_1: vec4<f32>;
    var acc36_0: vec4<f32>;
    var acc36_1: vec4<f32>;
    var acc37_0: vec4<f32>;
    var acc37_1: vec4<f32>;
    var acc38_0: vec4<f32>;
    var acc38_1: vec4<f32>;
    var acc39_0: vec4<f32>;
    var acc39_1: vec4<f32>;
    var acc40_0: vec4<f32>;
    var acc40_1: vec4<f32>;
    var acc41_0: vec4<f32>;
    var acc41_1: vec4<f32>;
    var acc42_0: vec4<f32>;
    var acc42_1: vec4<f32>;
    var acc43_0: vec4<f32>;
    var acc43_1: vec4<f32>;
    var acc44_0: vec4<f32>;
    var acc44_1: vec4<f32>;
    var acc45_0: vec4<f32>;
    var acc45_1: vec4<f32>;
    var acc46_0: vec4<f32>;
    var acc46_1: vec4<f32>;
    var acc47_0: vec4<f32>;
    var acc47_1: vec4<f32>;
    var acc48_0: vec4<f32>;
    var acc48_1: vec4<f32>;
    var acc49_0: vec4<f32>;
    var acc49_1: vec4<f32>;
    var acc50_0: vec4<f32>;
    var acc50_1: vec4<f32>;
    var acc51_0: vec4<f32>;
    var acc51_1: vec4<f32>;
    var acc52_0: vec4<f32>;
    var acc52_1: vec4<f32>;
    var acc53_0: vec4<f32>;
    var acc53_1: vec4<f32>;
    var acc54_0: vec4<f32>;
    var acc54_1: vec4<f32>;
    var acc55_0: vec4<f32>;
    var acc55_1: vec4<f32>;
    var acc56_0: vec4<f32>;
    var acc56_1: vec4<f32>;
    var acc57_0: vec4<f32>;
    var acc57_1: vec4<f32>;
    var acc58_0: vec4<f32>;
    var acc58_1: vec4<f32>;
    var acc59_0: vec4<f32>;
    var acc59_1: vec4<f32>;
    var acc60_0: vec4<f32>;
    var acc60_1: vec4<f32>;
    var acc61_0: vec4<f32>;
    var acc61_1: vec4<f32>;
    var acc62_0: vec4<f32>;
    var acc62_1: vec4<f32>;
    var acc63_0: vec4<f32>;
    var acc63_1: vec4<f32>;
    var acc64_0: vec4<f32>;
    var acc64_1: vec4<f32>;
    var acc65_0: vec4<f32>;
    var acc65_1: vec4<f32>;
    var acc66_0: vec4<f32>;
    var acc66_1: vec4<f32>;
    var acc67_0: vec4<f32>;
    var acc67_1: vec4<f32>;
    var acc68_0: vec4<f32>;
    var acc68_1: vec4<f32>;
    var acc69_0: vec4<f32>;
    var acc69_1: vec4<f32>;
    var acc70_0: vec4<f32>;
    var acc70_1: vec4<f32>;
    var acc71_0: vec4<f32>;
    var acc71_1: vec4<f32>;
    var acc72_0: vec4<f32>;
    var acc72_1: vec4<f32>;
    var acc73_0: vec4<f32>;
    var acc73_1: vec4<f32>;
    var acc74_0: vec4<f32>;
    var acc74_1: vec4<f32>;
    var acc75_0: vec4<f32>;
    var acc75_1: vec4<f32>;
    var acc76_0: vec4<f32>;
    var acc76_1: vec4<f32>;
    var acc77_0: vec4<f32>;
    var acc77_1: vec4<f32>;
    var acc78_0: vec4<f32>;
    var acc78_1: vec4<f32>;
    var acc79_0: vec4<f32>;
    var acc79_1: vec4<f32>;
    var acc80_0: vec4<f32>;
    var acc80_1: vec4<f32>;
    var acc81_0: vec4<f32>;
    var acc81_1: vec4<f32>;
    var acc82_0: vec4<f32>;
    var acc82_1: vec4<f32>;
    var acc83_0: vec4<f32>;
    var acc83_1: vec4<f32>;
    var acc84_0: vec4<f32>;
    var acc84_1: vec4<f32>;
    var acc85_0: vec4<f32>;
    var acc85_1: vec4<f32>;
    var acc86_0: vec4<f32>;
    var acc86_1: vec4<f32>;
    var acc87_0: vec4<f32>;
    var acc87_1: vec4<f32>;
    var acc88_0: vec4<f32>;
    var acc88_1: vec4<f32>;
    var acc89_0: vec4<f32>;
    var acc89_1: vec4<f32>;
    var acc90_0: vec4<f32>;
    var acc90_1: vec4<f32>;
    var acc91_0: vec4<f32>;
    var acc91_1: vec4<f32>;
    var acc92_0: vec4<f32>;
    var acc92_1: vec4<f32>;
    var acc93_0: vec4<f32>;
    var acc93_1: vec4<f32>;
    var acc94_0: vec4<f32>;
    var acc94_1: vec4<f32>;
    var acc95_0: vec4<f32>;
    var acc95_1: vec4<f32>;
    var acc96_0: vec4<f32>;
    var acc96_1: vec4<f32>;
    var acc97_0: vec4<f32>;
    var acc97_1: vec4<f32>;
    var acc98_0: vec4<f32>;
    var acc98_1: vec4<f32>;
    var acc99_0: vec4<f32>;
    var acc99_1: vec4<f32>;
    var acc100_0: vec4<f32>;
    var acc100_1: vec4<f32>;
    var acc101_0: vec4<f32>;
    var acc101_1: vec4<f32>;
    var acc102_0: vec4<f32>;
    var acc102_1: vec4<f32>;
    var acc103_0: vec4<f32>;
    var acc103_1: vec4<f32>;
    var acc104_0: vec4<f32>;
    var acc104_1: vec4<f32>;
    var acc105_0: vec4<f32>;
    var acc105_1: vec4<f32>;
    var acc106_0: vec4<f32>;
    var acc106_1: vec4<f32>;
    var acc107_0: vec4<f32>;
    var acc107_1: vec4<f32>;
    var acc108_0: vec4<f32>;
    var acc108_1: vec4<f32>;
    var acc109_0: vec4<f32>;
    var acc109_1: vec4<f32>;
    var acc110_0: vec4<f32>;
    var acc110_1: vec4<f32>;
    var acc111_0: vec4<f32>;
    var acc111_1: vec4<f32>;
    var acc112_0: vec4<f32>;
    var acc112_1: vec4<f32>;
    var acc113_0: vec4<f32>;
    var acc113_1: vec4<f32>;
    var acc114_0: vec4<f32>;
    var acc114_1: vec4<f32>;
    var acc115_0: vec4<f32>;
    var acc115_1: vec4<f32>;
    var acc116_0: vec4<f32>;
    var acc116_1: vec4<f32>;
    var acc117_0: vec4<f32>;
    var acc117_1: vec4<f32>;
    var acc118_0: vec4<f32>;
    var acc118_1: vec4<f32>;
    var acc119_0: vec4<f32>;
    var acc119_1: vec4<f32>;
    var acc120_0: vec4<f32>;
    var acc120_1: vec4<f32>;
    var acc121_0: vec4<f32>;
    var acc121_1: vec4<f32>;
    var acc122_0: vec4<f32>;
    var acc122_1: vec4<f32>;
    var acc123_0: vec4<f32>;
    var acc123_1: vec4<f32>;
    var acc124_0: vec4<f32>;
    var acc124_1: vec4<f32>;
    var acc125_0: vec4<f32>;
    var acc125_1: vec4<f32>;
    var acc126_0: vec4<f32>;
    var acc126_1: vec4<f32>;
    var acc127_0: vec4<f32>;
    var acc127_1: vec4<f32>;
    var ka = 0u;
    var kb = 0u;
    for (var k = 0u; k < p.k; k++) {
        let bv0 = vec4<f32>(b[bc0 + kb], b[bc1 + kb], b[bc2 + kb], b[bc3 + kb]);
        let bv1 = vec4<f32>(b[bc4 + kb], b[bc5 + kb], b[bc6 + kb], b[bc7 + kb]);
        let av0 = a[ar0 + ka];
        { let v = subgroupBroadcast(av0, 0u); acc0_0 = fma(bv0, vec4(v), acc0_0); acc0_1 = fma(bv1, vec4(v), acc0_1); }
        { let v = subgroupBroadcast(av0, 1u); acc1_0 = fma(bv0, vec4(v), acc1_0); acc1_1 = fma(bv1, vec4(v), acc1_1); }
        { let v = subgroupBroadcast(av0, 2u); acc2_0 = fma(bv0, vec4(v), acc2_0); acc2_1 = fma(bv1, vec4(v), acc2_1); }
        { let v = subgroupBroadcast(av0, 3u); acc3_0 = fma(bv0, vec4(v), acc3_0); acc3_1 = fma(bv1, vec4(v), acc3_1); }
        { let v = subgroupBroadcast(av0, 4u); acc4_0 = fma(bv0, vec4(v), acc4_0); acc4_1 = fma(bv1, vec4(v), acc4_1); }
        { let v = subgroupBroadcast(av0, 5u); acc5_0 = fma(bv0, vec4(v), acc5_0); acc5_1 = fma(bv1, vec4(v), acc5_1); }
        { let v = subgroupBroadcast(av0, 6u); acc6_0 = fma(bv0, vec4(v), acc6_0); acc6_1 = fma(bv1, vec4(v), acc6_1); }
        { let v = subgroupBroadcast(av0, 7u); acc7_0 = fma(bv0, vec4(v), acc7_0); acc7_1 = fma(bv1, vec4(v), acc7_1); }
        let av1 = a[ar1 + ka];
        { let v = subgroupBroadcast(av1, 0u); acc8_0 = fma(bv0, vec4(v), acc8_0); acc8_1 = fma(bv1, vec4(v), acc8_1); }
        { let v = subgroupBroadcast(av1, 1u); acc9_0 = fma(bv0, vec4(v), acc9_0); acc9_1 = fma(bv1, vec4(v), acc9_1); }
        { let v = subgroupBroadcast(av1, 2u); acc10_0 = fma(bv0, vec4(v), acc10_0); acc10_1 = fma(bv1, vec4(v), acc10_1); }
        { let v = subgroupBroadcast(av1, 3u); acc11_0 = fma(bv0, vec4(v), acc11_0); acc11_1 = fma(bv1, vec4(v), acc11_1); }
        { let v = subgroupBroadcast(av1, 4u); acc12_0 = fma(bv0, vec4(v), acc12_0); acc12_1 = fma(bv1, vec4(v), acc12_1); }
        { let v = subgroupBroadcast(av1, 5u); acc13_0 = fma(bv0, vec4(v), acc13_0); acc13_1 = fma(bv1, vec4(v), acc13_1); }
        { let v = subgroupBroadcast(av1, 6u); acc14_0 = fma(bv0, vec4(v), acc14_0); acc14_1 = fma(bv1, vec4(v), acc14_1); }
        { let v = subgroupBroadcast(av1, 7u); acc15_0 = fma(bv0, vec4(v), acc15_0); acc15_1 = fma(bv1, vec4(v), acc15_1); }
        let av2 = a[ar2 + ka];
        { let v = subgroupBroadcast(av2, 0u); acc16_0 = fma(bv0, vec4(v), acc16_0); acc16_1 = fma(bv1, vec4(v), acc16_1); }
        { let v = subgroupBroadcast(av2, 1u); acc17_0 = fma(bv0, vec4(v), acc17_0); acc17_1 = fma(bv1, vec4(v), acc17_1); }
        { let v = subgroupBroadcast(av2, 2u); acc18_0 = fma(bv0, vec4(v), acc18_0); acc18_1 = fma(bv1, vec4(v), acc18_1); }
        { let v = subgroupBroadcast(av2, 3u); acc19_0 = fma(bv0, vec4(v), acc19_0); acc19_1 = fma(bv1, vec4(v), acc19_1); }
        { let v = subgroupBroadcast(av2, 4u); acc20_0 = fma(bv0, vec4(v), acc20_0); acc20_1 = fma(bv1, vec4(v), acc20_1); }
        { let v = subgroupBroadcast(av2, 5u); acc21_0 = fma(bv0, vec4(v), acc21_0); acc21_1 = fma(bv1, vec4(v), acc21_1); }
        { let v = subgroupBroadcast(av2, 6u); acc22_0 = fma(bv0, vec4(v), acc22_0); acc22_1 = fma(bv1, vec4(v), acc22_1); }
        { let v = subgroupBroadcast(av2, 7u); acc23_0 = fma(bv0, vec4(v), acc23_0); acc23_1 = fma(bv1, vec4(v), acc23_1); }
        let av3 = a[ar3 + ka];
        { let v = subgroupBroadcast(av3, 0u); acc24_0 = fma(bv0, vec4(v), acc24_0); acc24_1 = fma(bv1, vec4(v), acc24_1); }
        { let v = subgroupBroadcast(av3, 1u); acc25_0 = fma(bv0, vec4(v), acc25_0); acc25_1 = fma(bv1, vec4(v), acc25_1); }
        { let v = subgroupBroadcast(av3, 2u); acc26_0 = fma(bv0, vec4(v), acc26_0); acc26_1 = fma(bv1, vec4(v), acc26_1); }
        { let v = subgroupBroadcast(av3, 3u); acc27_0 = fma(bv0, vec4(v), acc27_0); acc27_1 = fma(bv1, vec4(v), acc27_1); }
        { let v = subgroupBroadcast(av3, 4u); acc28_0 = fma(bv0, vec4(v), acc28_0); acc28_1 = fma(bv1, vec4(v), acc28_1); }
        { let v = subgroupBroadcast(av3, 5u); acc29_0 = fma(bv0, vec4(v), acc29_0); acc29_1 = fma(bv1, vec4(v), acc29_1); }
        { let v = subgroupBroadcast(av3, 6u); acc30_0 = fma(bv0, vec4(v), acc30_0); acc30_1 = fma(bv1, vec4(v), acc30_1); }
        { let v = subgroupBroadcast(av3, 7u); acc31_0 = fma(bv0, vec4(v), acc31_0); acc31_1 = fma(bv1, vec4(v), acc31_1); }
        let av4 = a[ar4 + ka];
        { let v = subgroupBroadcast(av4, 0u); acc32_0 = fma(bv0, vec4(v), acc32_0); acc32_1 = fma(bv1, vec4(v), acc32_1); }
        { let v = subgroupBroadcast(av4, 1u); acc33_0 = fma(bv0, vec4(v), acc33_0); acc33_1 = fma(bv1, vec4(v), acc33_1); }
        { let v = subgroupBroadcast(av4, 2u); acc34_0 = fma(bv0, vec4(v), acc34_0); acc34_1 = fma(bv1, vec4(v), acc34_1); }
        { let v = subgroupBroadcast(av4, 3u); acc35_0 = fma(bv0, vec4(v), acc35_0); acc35_1 = fma(bv1, vec4(v), acc35_1); }
        { let v = subgroupBroadcast(av4, 4u); acc36_0 = fma(bv0, vec4(v), acc36_0); acc36_1 = fma(bv1, vec4(v), acc36_1); }
        { let v = subgroupBroadcast(av4, 5u); acc37_0 = fma(bv0, vec4(v), acc37_0); acc37_1 = fma(bv1, vec4(v), acc37_1); }
        { let v = subgroupBroadcast(av4, 6u); acc38_0 = fma(bv0, vec4(v), acc38_0); acc38_1 = fma(bv1, vec4(v), acc38_1); }
        { let v = subgroupBroadcast(av4, 7u); acc39_0 = fma(bv0, vec4(v), acc39_0); acc39_1 = fma(bv1, vec4(v), acc39_1); }
        let av5 = a[ar5 + ka];
        { let v = subgroupBroadcast(av5, 0u); acc40_0 = fma(bv0, vec4(v), acc40_0); acc40_1 = fma(bv1, vec4(v), acc40_1); }
        { let v = subgroupBroadcast(av5, 1u); acc41_0 = fma(bv0, vec4(v), acc41_0); acc41_1 = fma(bv1, vec4(v), acc41_1); }
        { let v = subgroupBroadcast(av5, 2u); acc42_0 = fma(bv0, vec4(v), acc42_0); acc42_1 = fma(bv1, vec4(v), acc42_1); }
        { let v = subgroupBroadcast(av5, 3u); acc43_0 = fma(bv0, vec4(v), acc43_0); acc43_1 = fma(bv1, vec4(v), acc43_1); }
        { let v = subgroupBroadcast(av5, 4u); acc44_0 = fma(bv0, vec4(v), acc44_0); acc44_1 = fma(bv1, vec4(v), acc44_1); }
        { let v = subgroupBroadcast(av5, 5u); acc45_0 = fma(bv0, vec4(v), acc45_0); acc45_1 = fma(bv1, vec4(v), acc45_1); }
        { let v = subgroupBroadcast(av5, 6u); acc46_0 = fma(bv0, vec4(v), acc46_0); acc46_1 = fma(bv1, vec4(v), acc46_1); }
        { let v = subgroupBroadcast(av5, 7u); acc47_0 = fma(bv0, vec4(v), acc47_0); acc47_1 = fma(bv1, vec4(v), acc47_1); }
        let av6 = a[ar6 + ka];
        { let v = subgroupBroadcast(av6, 0u); acc48_0 = fma(bv0, vec4(v), acc48_0); acc48_1 = fma(bv1, vec4(v), acc48_1); }
        { let v = subgroupBroadcast(av6, 1u); acc49_0 = fma(bv0, vec4(v), acc49_0); acc49_1 = fma(bv1, vec4(v), acc49_1); }
        { let v = subgroupBroadcast(av6, 2u); acc50_0 = fma(bv0, vec4(v), acc50_0); acc50_1 = fma(bv1, vec4(v), acc50_1); }
        { let v = subgroupBroadcast(av6, 3u); acc51_0 = fma(bv0, vec4(v), acc51_0); acc51_1 = fma(bv1, vec4(v), acc51_1); }
        { let v = subgroupBroadcast(av6, 4u); acc52_0 = fma(bv0, vec4(v), acc52_0); acc52_1 = fma(bv1, vec4(v), acc52_1); }
        { let v = subgroupBroadcast(av6, 5u); acc53_0 = fma(bv0, vec4(v), acc53_0); acc53_1 = fma(bv1, vec4(v), acc53_1); }
        { let v = subgroupBroadcast(av6, 6u); acc54_0 = fma(bv0, vec4(v), acc54_0); acc54_1 = fma(bv1, vec4(v), acc54_1); }
        { let v = subgroupBroadcast(av6, 7u); acc55_0 = fma(bv0, vec4(v), acc55_0); acc55_1 = fma(bv1, vec4(v), acc55_1); }
        let av7 = a[ar7 + ka];
        { let v = subgroupBroadcast(av7, 0u); acc56_0 = fma(bv0, vec4(v), acc56_0); acc56_1 = fma(bv1, vec4(v), acc56_1); }
        { let v = subgroupBroadcast(av7, 1u); acc57_0 = fma(bv0, vec4(v), acc57_0); acc57_1 = fma(bv1, vec4(v), acc57_1); }
        { let v = subgroupBroadcast(av7, 2u); acc58_0 = fma(bv0, vec4(v), acc58_0); acc58_1 = fma(bv1, vec4(v), acc58_1); }
        { let v = subgroupBroadcast(av7, 3u); acc59_0 = fma(bv0, vec4(v), acc59_0); acc59_1 = fma(bv1, vec4(v), acc59_1); }
        { let v = subgroupBroadcast(av7, 4u); acc60_0 = fma(bv0, vec4(v), acc60_0); acc60_1 = fma(bv1, vec4(v), acc60_1); }
        { let v = subgroupBroadcast(av7, 5u); acc61_0 = fma(bv0, vec4(v), acc61_0); acc61_1 = fma(bv1, vec4(v), acc61_1); }
        { let v = subgroupBroadcast(av7, 6u); acc62_0 = fma(bv0, vec4(v), acc62_0); acc62_1 = fma(bv1, vec4(v), acc62_1); }
        { let v = subgroupBroadcast(av7, 7u); acc63_0 = fma(bv0, vec4(v), acc63_0); acc63_1 = fma(bv1, vec4(v), acc63_1); }
        let av8 = a[ar8 + ka];
        { let v = subgroupBroadcast(av8, 0u); acc64_0 = fma(bv0, vec4(v), acc64_0); acc64_1 = fma(bv1, vec4(v), acc64_1); }
        { let v = subgroupBroadcast(av8, 1u); acc65_0 = fma(bv0, vec4(v), acc65_0); acc65_1 = fma(bv1, vec4(v), acc65_1); }
        { let v = subgroupBroadcast(av8, 2u); acc66_0 = fma(bv0, vec4(v), acc66_0); acc66_1 = fma(bv1, vec4(v), acc66_1); }
        { let v = subgroupBroadcast(av8, 3u); acc67_0 = fma(bv0, vec4(v), acc67_0); acc67_1 = fma(bv1, vec4(v), acc67_1); }
        { let v = subgroupBroadcast(av8, 4u); acc68_0 = fma(bv0, vec4(v), acc68_0); acc68_1 = fma(bv1, vec4(v), acc68_1); }
        { let v = subgroupBroadcast(av8, 5u); acc69_0 = fma(bv0, vec4(v), acc69_0); acc69_1 = fma(bv1, vec4(v), acc69_1); }
        { let v = subgroupBroadcast(av8, 6u); acc70_0 = fma(bv0, vec4(v), acc70_0); acc70_1 = fma(bv1, vec4(v), acc70_1); }
        { let v = subgroupBroadcast(av8, 7u); acc71_0 = fma(bv0, vec4(v), acc71_0); acc71_1 = fma(bv1, vec4(v), acc71_1); }
        let av9 = a[ar9 + ka];
        { let v = subgroupBroadcast(av9, 0u); acc72_0 = fma(bv0, vec4(v), acc72_0); acc72_1 = fma(bv1, vec4(v), acc72_1); }
        { let v = subgroupBroadcast(av9, 1u); acc73_0 = fma(bv0, vec4(v), acc73_0); acc73_1 = fma(bv1, vec4(v), acc73_1); }
        { let v = subgroupBroadcast(av9, 2u); acc74_0 = fma(bv0, vec4(v), acc74_0); acc74_1 = fma(bv1, vec4(v), acc74_1); }
        { let v = subgroupBroadcast(av9, 3u); acc75_0 = fma(bv0, vec4(v), acc75_0); acc75_1 = fma(bv1, vec4(v), acc75_1); }
        { let v = subgroupBroadcast(av9, 4u); acc76_0 = fma(bv0, vec4(v), acc76_0); acc76_1 = fma(bv1, vec4(v), acc76_1); }
        { let v = subgroupBroadcast(av9, 5u); acc77_0 = fma(bv0, vec4(v), acc77_0); acc77_1 = fma(bv1, vec4(v), acc77_1); }
        { let v = subgroupBroadcast(av9, 6u); acc78_0 = fma(bv0, vec4(v), acc78_0); acc78_1 = fma(bv1, vec4(v), acc78_1); }
        { let v = subgroupBroadcast(av9, 7u); acc79_0 = fma(bv0, vec4(v), acc79_0); acc79_1 = fma(bv1, vec4(v), acc79_1); }
        let av10 = a[ar10 + ka];
        { let v = subgroupBroadcast(av10, 0u); acc80_0 = fma(bv0, vec4(v), acc80_0); acc80_1 = fma(bv1, vec4(v), acc80_1); }
        { let v = subgroupBroadcast(av10, 1u); acc81_0 = fma(bv0, vec4(v), acc81_0); acc81_1 = fma(bv1, vec4(v), acc81_1); }
        { let v = subgroupBroadcast(av10, 2u); acc82_0 = fma(bv0, vec4(v), acc82_0); acc82_1 = fma(bv1, vec4(v), acc82_1); }
        { let v = subgroupBroadcast(av10, 3u); acc83_0 = fma(bv0, vec4(v), acc83_0); acc83_1 = fma(bv1, vec4(v), acc83_1); }
        { let v = subgroupBroadcast(av10, 4u); acc84_0 = fma(bv0, vec4(v), acc84_0); acc84_1 = fma(bv1, vec4(v), acc84_1); }
        { let v = subgroupBroadcast(av10, 5u); acc85_0 = fma(bv0, vec4(v), acc85_0); acc85_1 = fma(bv1, vec4(v), acc85_1); }
        { let v = subgroupBroadcast(av10, 6u); acc86_0 = fma(bv0, vec4(v), acc86_0); acc86_1 = fma(bv1, vec4(v), acc86_1); }
        { let v = subgroupBroadcast(av10, 7u); acc87_0 = fma(bv0, vec4(v), acc87_0); acc87_1 = fma(bv1, vec4(v), acc87_1); }
        let av11 = a[ar11 + ka];
        { let v = subgroupBroadcast(av11, 0u); acc88_0 = fma(bv0, vec4(v), acc88_0); acc88_1 = fma(bv1, vec4(v), acc88_1); }
        { let v = subgroupBroadcast(av11, 1u); acc89_0 = fma(bv0, vec4(v), acc89_0); acc89_1 = fma(bv1, vec4(v), acc89_1); }
        { let v = subgroupBroadcast(av11, 2u); acc90_0 = fma(bv0, vec4(v), acc90_0); acc90_1 = fma(bv1, vec4(v), acc90_1); }
        { let v = subgroupBroadcast(av11, 3u); acc91_0 = fma(bv0, vec4(v), acc91_0); acc91_1 = fma(bv1, vec4(v), acc91_1); }
        { let v = subgroupBroadcast(av11, 4u); acc92_0 = fma(bv0, vec4(v), acc92_0); acc92_1 = fma(bv1, vec4(v), acc92_1); }
        { let v = subgroupBroadcast(av11, 5u); acc93_0 = fma(bv0, vec4(v), acc93_0); acc93_1 = fma(bv1, vec4(v), acc93_1); }
        { let v = subgroupBroadcast(av11, 6u); acc94_0 = fma(bv0, vec4(v), acc94_0); acc94_1 = fma(bv1, vec4(v), acc94_1); }
        { let v = subgroupBroadcast(av11, 7u); acc95_0 = fma(bv0, vec4(v), acc95_0); acc95_1 = fma(bv1, vec4(v), acc95_1); }
        let av12 = a[ar12 + ka];
        { let v = subgroupBroadcast(av12, 0u); acc96_0 = fma(bv0, vec4(v), acc96_0); acc96_1 = fma(bv1, vec4(v), acc96_1); }
        { let v = subgroupBroadcast(av12, 1u); acc97_0 = fma(bv0, vec4(v), acc97_0); acc97_1 = fma(bv1, vec4(v), acc97_1); }
        { let v = subgroupBroadcast(av12, 2u); acc98_0 = fma(bv0, vec4(v), acc98_0); acc98_1 = fma(bv1, vec4(v), acc98_1); }
        { let v = subgroupBroadcast(av12, 3u); acc99_0 = fma(bv0, vec4(v), acc99_0); acc99_1 = fma(bv1, vec4(v), acc99_1); }
        { let v = subgroupBroadcast(av12, 4u); acc100_0 = fma(bv0, vec4(v), acc100_0); acc100_1 = fma(bv1, vec4(v), acc100_1); }
        { let v = subgroupBroadcast(av12, 5u); acc101_0 = fma(bv0, vec4(v), acc101_0); acc101_1 = fma(bv1, vec4(v), acc101_1); }
        { let v = subgroupBroadcast(av12, 6u); acc102_0 = fma(bv0, vec4(v), acc102_0); acc102_1 = fma(bv1, vec4(v), acc102_1); }
        { let v = subgroupBroadcast(av12, 7u); acc103_0 = fma(bv0, vec4(v), acc103_0); acc103_1 = fma(bv1, vec4(v), acc103_1); }
        let av13 = a[ar13 + ka];
        { let v = subgroupBroadcast(av13, 0u); acc104_0 = fma(bv0, vec4(v), acc104_0); acc104_1 = fma(bv1, vec4(v), acc104_1); }
        { let v = subgroupBroadcast(av13, 1u); acc105_0 = fma(bv0, vec4(v), acc105_0); acc105_1 = fma(bv1, vec4(v), acc105_1); }
        { let v = subgroupBroadcast(av13, 2u); acc106_0 = fma(bv0, vec4(v), acc106_0); acc106_1 = fma(bv1, vec4(v), acc106_1); }
        { let v = subgroupBroadcast(av13, 3u); acc107_0 = fma(bv0, vec4(v), acc107_0); acc107_1 = fma(bv1, vec4(v), acc107_1); }
        { let v = subgroupBroadcast(av13, 4u); acc108_0 = fma(bv0, vec4(v), acc108_0); acc108_1 = fma(bv1, vec4(v), acc108_1); }
        { let v = subgroupBroadcast(av13, 5u); acc109_0 = fma(bv0, vec4(v), acc109_0); acc109_1 = fma(bv1, vec4(v), acc109_1); }
        { let v = subgroupBroadcast(av13, 6u); acc110_0 = fma(bv0, vec4(v), acc110_0); acc110_1 = fma(bv1, vec4(v), acc110_1); }
        { let v = subgroupBroadcast(av13, 7u); acc111_0 = fma(bv0, vec4(v), acc111_0); acc111_1 = fma(bv1, vec4(v), acc111_1); }
        let av14 = a[ar14 + ka];
        { let v = subgroupBroadcast(av14, 0u); acc112_0 = fma(bv0, vec4(v), acc112_0); acc112_1 = fma(bv1, vec4(v), acc112_1); }
        { let v = subgroupBroadcast(av14, 1u); acc113_0 = fma(bv0, vec4(v), acc113_0); acc113_1 = fma(bv1, vec4(v), acc113_1); }
        { let v = subgroupBroadcast(av14, 2u); acc114_0 = fma(bv0, vec4(v), acc114_0); acc114_1 = fma(bv1, vec4(v), acc114_1); }
        { let v = subgroupBroadcast(av14, 3u); acc115_0 = fma(bv0, vec4(v), acc115_0); acc115_1 = fma(bv1, vec4(v), acc115_1); }
        { let v = subgroupBroadcast(av14, 4u); acc116_0 = fma(bv0, vec4(v), acc116_0); acc116_1 = fma(bv1, vec4(v), acc116_1); }
        { let v = subgroupBroadcast(av14, 5u); acc117_0 = fma(bv0, vec4(v), acc117_0); acc117_1 = fma(bv1, vec4(v), acc117_1); }
        { let v = subgroupBroadcast(av14, 6u); acc118_0 = fma(bv0, vec4(v), acc118_0); acc118_1 = fma(bv1, vec4(v), acc118_1); }
        { let v = subgroupBroadcast(av14, 7u); acc119_0 = fma(bv0, vec4(v), acc119_0); acc119_1 = fma(bv1, vec4(v), acc119_1); }
        let av15 = a[ar15 + ka];
        { let v = subgroupBroadcast(av15, 0u); acc120_0 = fma(bv0, vec4(v), acc120_0); acc120_1 = fma(bv1, vec4(v), acc120_1); }
        { let v = subgroupBroadcast(av15, 1u); acc121_0 = fma(bv0, vec4(v), acc121_0); acc121_1 = fma(bv1, vec4(v), acc121_1); }
        { let v = subgroupBroadcast(av15, 2u); acc122_0 = fma(bv0, vec4(v), acc122_0); acc122_1 = fma(bv1, vec4(v), acc122_1); }
        { let v = subgroupBroadcast(av15, 3u); acc123_0 = fma(bv0, vec4(v), acc123_0); acc123_1 = fma(bv1, vec4(v), acc123_1); }
        { let v = subgroupBroadcast(av15, 4u); acc124_0 = fma(bv0, vec4(v), acc124_0); acc124_1 = fma(bv1, vec4(v), acc124_1); }
        { let v = subgroupBroadcast(av15, 5u); acc125_0 = fma(bv0, vec4(v), acc125_0); acc125_1 = fma(bv1, vec4(v), acc125_1); }
        { let v = subgroupBroadcast(av15, 6u); acc126_0 = fma(bv0, vec4(v), acc126_0); acc126_1 = fma(bv1, vec4(v), acc126_1); }
        { let v = subgroupBroadcast(av15, 7u); acc127_0 = fma(bv0, vec4(v), acc127_0); acc127_1 = fma(bv1, vec4(v), acc127_1); }
        ka += p.a_sk;
        kb += p.b_sk;
    }
    store_row(z, row0 + 0u, col0 + 0u, acc0_0);
    store_row(z, row0 + 0u, col0 + 4u, acc0_1);
    store_row(z, row0 + 1u, col0 + 0u, acc1_0);
    store_row(z, row0 + 1u, col0 + 4u, acc1_1);
    store_row(z, row0 + 2u, col0 + 0u, acc2_0);
    store_row(z, row0 + 2u, col0 + 4u, acc2_1);
    store_row(z, row0 + 3u, col0 + 0u, acc3_0);
    store_row(z, row0 + 3u, col0 + 4u, acc3_1);
    store_row(z, row0 + 4u, col0 + 0u, acc4_0);
    store_row(z, row0 + 4u, col0 + 4u, acc4_1);
    store_row(z, row0 + 5u, col0 + 0u, acc5_0);
    store_row(z, row0 + 5u, col0 + 4u, acc5_1);
    store_row(z, row0 + 6u, col0 + 0u, acc6_0);
    store_row(z, row0 + 6u, col0 + 4u, acc6_1);
    store_row(z, row0 + 7u, col0 + 0u, acc7_0);
    store_row(z, row0 + 7u, col0 + 4u, acc7_1);
    store_row(z, row0 + 8u, col0 + 0u, acc8_0);
    store_row(z, row0 + 8u, col0 + 4u, acc8_1);
    store_row(z, row0 + 9u, col0 + 0u, acc9_0);
    store_row(z, row0 + 9u, col0 + 4u, acc9_1);
    store_row(z, row0 + 10u, col0 + 0u, acc10_0);
    store_row(z, row0 + 10u, col0 + 4u, acc10_1);
    store_row(z, row0 + 11u, col0 + 0u, acc11_0);
    store_row(z, row0 + 11u, col0 + 4u, acc11_1);
    store_row(z, row0 + 12u, col0 + 0u, acc12_0);
    store_row(z, row0 + 12u, col0 + 4u, acc12_1);
    store_row(z, row0 + 13u, col0 + 0u, acc13_0);
    store_row(z, row0 + 13u, col0 + 4u, acc13_1);
    store_row(z, row0 + 14u, col0 + 0u, acc14_0);
    store_row(z, row0 + 14u, col0 + 4u, acc14_1);
    store_row(z, row0 + 15u, col0 + 0u, acc15_0);
    store_row(z, row0 + 15u, col0 + 4u, acc15_1);
    store_row(z, row0 + 16u, col0 + 0u, acc16_0);
    store_row(z, row0 + 16u, col0 + 4u, acc16_1);
    store_row(z, row0 + 17u, col0 + 0u, acc17_0);
    store_row(z, row0 + 17u, col0 + 4u, acc17_1);
    store_row(z, row0 + 18u, col0 + 0u, acc18_0);
    store_row(z, row0 + 18u, col0 + 4u, acc18_1);
    store_row(z, row0 + 19u, col0 + 0u, acc19_0);
    store_row(z, row0 + 19u, col0 + 4u, acc19_1);
    store_row(z, row0 + 20u, col0 + 0u, acc20_0);
    store_row(z, row0 + 20u, col0 + 4u, acc20_1);
    store_row(z, row0 + 21u, col0 + 0u, acc21_0);
    store_row(z, row0 + 21u, col0 + 4u, acc21_1);
    store_row(z, row0 + 22u, col0 + 0u, acc22_0);
    store_row(z, row0 + 22u, col0 + 4u, acc22_1);
    store_row(z, row0 + 23u, col0 + 0u, acc23_0);
    store_row(z, row0 + 23u, col0 + 4u, acc23_1);
    store_row(z, row0 + 24u, col0 + 0u, acc24_0);
    store_row(z, row0 + 24u, col0 + 4u, acc24_1);
    store_row(z, row0 + 25u, col0 + 0u, acc25_0);
    store_row(z, row0 + 25u, col0 + 4u, acc25_1);
    store_row(z, row0 + 26u, col0 + 0u, acc26_0);
    store_row(z, row0 + 26u, col0 + 4u, acc26_1);
    store_row(z, row0 + 27u, col0 + 0u, acc27_0);
    store_row(z, row0 + 27u, col0 + 4u, acc27_1);
    store_row(z, row0 + 28u, col0 + 0u, acc28_0);
    store_row(z, row0 + 28u, col0 + 4u, acc28_1);
    store_row(z, row0 + 29u, col0 + 0u, acc29_0);
    store_row(z, row0 + 29u, col0 + 4u, acc29_1);
    store_row(z, row0 + 30u, col0 + 0u, acc30_0);
    store_row(z, row0 + 30u, col0 + 4u, acc30_1);
    store_row(z, row0 + 31u, col0 + 0u, acc31_0);
    store_row(z, row0 + 31u, col0 + 4u, acc31_1);
    store_row(z, row0 + 32u, col0 + 0u, acc32_0);
    store_row(z, row0 + 32u, col0 + 4u, acc32_1);
    store_row(z, row0 + 33u, col0 + 0u, acc33_0);
    store_row(z, row0 + 33u, col0 + 4u, acc33_1);
    store_row(z, row0 + 34u, col0 + 0u, acc34_0);
    store_row(z, row0 + 34u, col0 + 4u, acc34_1);
    store_row(z, row0 + 35u, col0 + 0u, acc35_0);
    store_row(z, row0 + 35u, col0 + 4u, acc35_1);
    store_row(z, row0 + 36u, col0 + 0u, acc36_0);
    store_row(z, row0 + 36u, col0 + 4u, acc36_1);
    store_row(z, row0 + 37u, col0 + 0u, acc37_0);
    store_row(z, row0 + 37u, col0 + 4u, acc37_1);
    store_row(z, row0 + 38u, col0 + 0u, acc38_0);
    store_row(z, row0 + 38u, col0 + 4u, acc38_1);
    store_row(z, row0 + 39u, col0 + 0u, acc39_0);
    store_row(z, row0 + 39u, col0 + 4u, acc39_1);
    store_row(z, row0 + 40u, col0 + 0u, acc40_0);
    store_row(z, row0 + 40u, col0 + 4u, acc40_1);
    store_row(z, row0 + 41u, col0 + 0u, acc41_0);
    store_row(z, row0 + 41u, col0 + 4u, acc41_1);
    store_row(z, row0 + 42u, col0 + 0u, acc42_0);
    store_row(z, row0 + 42u, col0 + 4u, acc42_1);
    store_row(z, row0 + 43u, col0 + 0u, acc43_0);
    store_row(z, row0 + 43u, col0 + 4u, acc43_1);
    store_row(z, row0 + 44u, col0 + 0u, acc44_0);
    store_row(z, row0 + 44u, col0 + 4u, acc44_1);
    store_row(z, row0 + 45u, col0 + 0u, acc45_0);
    store_row(z, row0 + 45u, col0 + 4u, acc45_1);
    store_row(z, row0 + 46u, col0 + 0u, acc46_0);
    store_row(z, row0 + 46u, col0 + 4u, acc46_1);
    store_row(z, row0 + 47u, col0 + 0u, acc47_0);
    store_row(z, row0 + 47u, col0 + 4u, acc47_1);
    store_row(z, row0 + 48u, col0 + 0u, acc48_0);
    store_row(z, row0 + 48u, col0 + 4u, acc48_1);
    store_row(z, row0 + 49u, col0 + 0u, acc49_0);
    store_row(z, row0 + 49u, col0 + 4u, acc49_1);
    store_row(z, row0 + 50u, col0 + 0u, acc50_0);
    store_row(z, row0 + 50u, col0 + 4u, acc50_1);
    store_row(z, row0 + 51u, col0 + 0u, acc51_0);
    store_row(z, row0 + 51u, col0 + 4u, acc51_1);
    store_row(z, row0 + 52u, col0 + 0u, acc52_0);
    store_row(z, row0 + 52u, col0 + 4u, acc52_1);
    store_row(z, row0 + 53u, col0 + 0u, acc53_0);
    store_row(z, row0 + 53u, col0 + 4u, acc53_1);
    store_row(z, row0 + 54u, col0 + 0u, acc54_0);
    store_row(z, row0 + 54u, col0 + 4u, acc54_1);
    store_row(z, row0 + 55u, col0 + 0u, acc55_0);
    store_row(z, row0 + 55u, col0 + 4u, acc55_1);
    store_row(z, row0 + 56u, col0 + 0u, acc56_0);
    store_row(z, row0 + 56u, col0 + 4u, acc56_1);
    store_row(z, row0 + 57u, col0 + 0u, acc57_0);
    store_row(z, row0 + 57u, col0 + 4u, acc57_1);
    store_row(z, row0 + 58u, col0 + 0u, acc58_0);
    store_row(z, row0 + 58u, col0 + 4u, acc58_1);
    store_row(z, row0 + 59u, col0 + 0u, acc59_0);
    store_row(z, row0 + 59u, col0 + 4u, acc59_1);
    store_row(z, row0 + 60u, col0 + 0u, acc60_0);
    store_row(z, row0 + 60u, col0 + 4u, acc60_1);
    store_row(z, row0 + 61u, col0 + 0u, acc61_0);
    store_row(z, row0 + 61u, col0 + 4u, acc61_1);
    store_row(z, row0 + 62u, col0 + 0u, acc62_0);
    store_row(z, row0 + 62u, col0 + 4u, acc62_1);
    store_row(z, row0 + 63u, col0 + 0u, acc63_0);
    store_row(z, row0 + 63u, col0 + 4u, acc63_1);
    store_row(z, row0 + 64u, col0 + 0u, acc64_0);
    store_row(z, row0 + 64u, col0 + 4u, acc64_1);
    store_row(z, row0 + 65u, col0 + 0u, acc65_0);
    store_row(z, row0 + 65u, col0 + 4u, acc65_1);
    store_row(z, row0 + 66u, col0 + 0u, acc66_0);
    store_row(z, row0 + 66u, col0 + 4u, acc66_1);
    store_row(z, row0 + 67u, col0 + 0u, acc67_0);
    store_row(z, row0 + 67u, col0 + 4u, acc67_1);
    store_row(z, row0 + 68u, col0 + 0u, acc68_0);
    store_row(z, row0 + 68u, col0 + 4u, acc68_1);
    store_row(z, row0 + 69u, col0 + 0u, acc69_0);
    store_row(z, row0 + 69u, col0 + 4u, acc69_1);
    store_row(z, row0 + 70u, col0 + 0u, acc70_0);
    store_row(z, row0 + 70u, col0 + 4u, acc70_1);
    store_row(z, row0 + 71u, col0 + 0u, acc71_0);
    store_row(z, row0 + 71u, col0 + 4u, acc71_1);
    store_row(z, row0 + 72u, col0 + 0u, acc72_0);
    store_row(z, row0 + 72u, col0 + 4u, acc72_1);
    store_row(z, row0 + 73u, col0 + 0u, acc73_0);
    store_row(z, row0 + 73u, col0 + 4u, acc73_1);
    store_row(z, row0 + 74u, col0 + 0u, acc74_0);
    store_row(z, row0 + 74u, col0 + 4u, acc74_1);
    store_row(z, row0 + 75u, col0 + 0u, acc75_0);
    store_row(z, row0 + 75u, col0 + 4u, acc75_1);
    store_row(z, row0 + 76u, col0 + 0u, acc76_0);
    store_row(z, row0 + 76u, col0 + 4u, acc76_1);
    store_row(z, row0 + 77u, col0 + 0u, acc77_0);
    store_row(z, row0 + 77u, col0 + 4u, acc77_1);
    store_row(z, row0 + 78u, col0 + 0u, acc78_0);
    store_row(z, row0 + 78u, col0 + 4u, acc78_1);
    store_row(z, row0 + 79u, col0 + 0u, acc79_0);
    store_row(z, row0 + 79u, col0 + 4u, acc79_1);
    store_row(z, row0 + 80u, col0 + 0u, acc80_0);
    store_row(z, row0 + 80u, col0 + 4u, acc80_1);
    store_row(z, row0 + 81u, col0 + 0u, acc81_0);
    store_row(z, row0 + 81u, col0 + 4u, acc81_1);
    store_row(z, row0 + 82u, col0 + 0u, acc82_0);
    store_row(z, row0 + 82u, col0 + 4u, acc82_1);
    store_row(z, row0 + 83u, col0 + 0u, acc83_0);
    store_row(z, row0 + 83u, col0 + 4u, acc83_1);
    store_row(z, row0 + 84u, col0 + 0u, acc84_0);
    store_row(z, row0 + 84u, col0 + 4u, acc84_1);
    store_row(z, row0 + 85u, col0 + 0u, acc85_0);
    store_row(z, row0 + 85u, col0 + 4u, acc85_1);
    store_row(z, row0 + 86u, col0 + 0u, acc86_0);
    store_row(z, row0 + 86u, col0 + 4u, acc86_1);
    store_row(z, row0 + 87u, col0 + 0u, acc87_0);
    store_row(z, row0 + 87u, col0 + 4u, acc87_1);
    store_row(z, row0 + 88u, col0 + 0u, acc88_0);
    store_row(z, row0 + 88u, col0 + 4u, acc88_1);
    store_row(z, row0 + 89u, col0 + 0u, acc89_0);
    store_row(z, row0 + 89u, col0 + 4u, acc89_1);
    store_row(z, row0 + 90u, col0 + 0u, acc90_0);
    store_row(z, row0 + 90u, col0 + 4u, acc90_1);
    store_row(z, row0 + 91u, col0 + 0u, acc91_0);
    store_row(z, row0 + 91u, col0 + 4u, acc91_1);
    store_row(z, row0 + 92u, col0 + 0u, acc92_0);
    store_row(z, row0 + 92u, col0 + 4u, acc92_1);
    store_row(z, row0 + 93u, col0 + 0u, acc93_0);
    store_row(z, row0 + 93u, col0 + 4u, acc93_1);
    store_row(z, row0 + 94u, col0 + 0u, acc94_0);
    store_row(z, row0 + 94u, col0 + 4u, acc94_1);
    store_row(z, row0 + 95u, col0 + 0u, acc95_0);
    store_row(z, row0 + 95u, col0 + 4u, acc95_1);
    store_row(z, row0 + 96u, col0 + 0u, acc96_0);
    store_row(z, row0 + 96u, col0 + 4u, acc96_1);
    store_row(z, row0 + 97u, col0 + 0u, acc97_0);
    store_row(z, row0 + 97u, col0 + 4u, acc97_1);
    store_row(z, row0 + 98u, col0 + 0u, acc98_0);
    store_row(z, row0 + 98u, col0 + 4u, acc98_1);
    store_row(z, row0 + 99u, col0 + 0u, acc99_0);
    store_row(z, row0 + 99u, col0 + 4u, acc99_1);
    store_row(z, row0 + 100u, col0 + 0u, acc100_0);
    store_row(z, row0 + 100u, col0 + 4u, acc100_1);
    store_row(z, row0 + 101u, col0 + 0u, acc101_0);
    store_row(z, row0 + 101u, col0 + 4u, acc101_1);
    store_row(z, row0 + 102u, col0 + 0u, acc102_0);
    store_row(z, row0 + 102u, col0 + 4u, acc102_1);
    store_row(z, row0 + 103u, col0 + 0u, acc103_0);
    store_row(z, row0 + 103u, col0 + 4u, acc103_1);
    store_row(z, row0 + 104u, col0 + 0u, acc104_0);
    store_row(z, row0 + 104u, col0 + 4u, acc104_1);
    store_row(z, row0 + 105u, col0 + 0u, acc105_0);
    store_row(z, row0 + 105u, col0 + 4u, acc105_1);
    store_row(z, row0 + 106u, col0 + 0u, acc106_0);
    store_row(z, row0 + 106u, col0 + 4u, acc106_1);
    store_row(z, row0 + 107u, col0 + 0u, acc107_0);
    store_row(z, row0 + 107u, col0 + 4u, acc107_1);
    store_row(z, row0 + 108u, col0 + 0u, acc108_0);
    store_row(z, row0 + 108u, col0 + 4u, acc108_1);
    store_row(z, row0 + 109u, col0 + 0u, acc109_0);
    store_row(z, row0 + 109u, col0 + 4u, acc109_1);
    store_row(z, row0 + 110u, col0 + 0u, acc110_0);
    store_row(z, row0 + 110u, col0 + 4u, acc110_1);
    store_row(z, row0 + 111u, col0 + 0u, acc111_0);
    store_row(z, row0 + 111u, col0 + 4u, acc111_1);
    store_row(z, row0 + 112u, col0 + 0u, acc112_0);
    store_row(z, row0 + 112u, col0 + 4u, acc112_1);
    store_row(z, row0 + 113u, col0 + 0u, acc113_0);
    store_row(z, row0 + 113u, col0 + 4u, acc113_1);
    store_row(z, row0 + 114u, col0 + 0u, acc114_0);
    store_row(z, row0 + 114u, col0 + 4u, acc114_1);
    store_row(z, row0 + 115u, col0 + 0u, acc115_0);
    store_row(z, row0 + 115u, col0 + 4u, acc115_1);
    store_row(z, row0 + 116u, col0 + 0u, acc116_0);
    store_row(z, row0 + 116u, col0 + 4u, acc116_1);
    store_row(z, row0 + 117u, col0 + 0u, acc117_0);
    store_row(z, row0 + 117u, col0 + 4u, acc117_1);
    store_row(z, row0 + 118u, col0 + 0u, acc118_0);
    store_row(z, row0 + 118u, col0 + 4u, acc118_1);
    store_row(z, row0 + 119u, col0 + 0u, acc119_0);
    store_row(z, row0 + 119u, col0 + 4u, acc119_1);
    store_row(z, row0 + 120u, col0 + 0u, acc120_0);
    store_row(z, row0 + 120u, col0 + 4u, acc120_1);
    store_row(z, row0 + 121u, col0 + 0u, acc121_0);
    store_row(z, row0 + 121u, col0 + 4u, acc121_1);
    store_row(z, row0 + 122u, col0 + 0u, acc122_0);
    store_row(z, row0 + 122u, col0 + 4u, acc122_1);
    store_row(z, row0 + 123u, col0 + 0u, acc123_0);
    store_row(z, row0 + 123u, col0 + 4u, acc123_1);
    store_row(z, row0 + 124u, col0 + 0u, acc124_0);
    store_row(z, row0 + 124u, col0 + 4u, acc124_1);
    store_row(z, row0 + 125u, col0 + 0u, acc125_0);
    store_row(z, row0 + 125u, col0 + 4u, acc125_1);
    store_row(z, row0 + 126u, col0 + 0u, acc126_0);
    store_row(z, row0 + 126u, col0 + 4u, acc126_1);
    store_row(z, row0 + 127u, col0 + 0u, acc127_0);
    store_row(z, row0 + 127u, col0 + 4u, acc127_1);
}

