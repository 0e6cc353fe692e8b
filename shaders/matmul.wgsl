// Batched matmul with a fused epilogue: out[z] = act(alpha * op(A[z]) · op(B[z]) + bias).
// Entry points: matmul_tiled (the kernel for GPUs), matmul_naive (one invocation per output, the baseline).
// The kernel for CPU drivers such as lavapipe needs subgroup operations and lives in matmul_subgroup.wgsl.
//
// B (the weight of a Linear layer) is read only through b_at, so the same text serves f32 and packed-f16
// weights (src/kernels/weight_storage.rs).
//
// Transposes, batch broadcast and batches folded into M are all expressed as element strides (a_sm, a_sk,
// b_sk, b_sn, a_bs, b_bs), so every layout runs through the same entry points. Output is [batch, M, N].
// Grid: x over column tiles, y over row tiles (from row m0), z over batches (from batch z0).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,      // bit 0: bias bound
    a_bs: u32,       // A strides (elements): batch, row, column
    a_sm: u32,
    a_sk: u32,
    b_bs: u32,       // B strides: batch, row (k), column (n)
    b_sk: u32,
    b_sn: u32,
    act: u32,        // ACT_* code
    alpha: f32,
    m0: u32,         // first row / batch of this dispatch
    z0: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
fn b_at(i: u32) -> f32 { return b[i]; }
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn store(z: u32, row: u32, col: u32, acc: f32) {
    if (row < p.m && col < p.n) {
        var v = p.alpha * acc;
        if ((p.flags & 1u) != 0u) {
            v += bias[col];
        }
        out[(z * p.m + row) * p.n + col] = activate(v, p.act);
    }
}

// Naive: one invocation per output, every operand straight from global memory.
@compute @workgroup_size(8, 8)
fn matmul_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    let row = p.m0 + gid.y;
    let z = p.z0 + gid.z;
    if (row >= p.m || col >= p.n) {
        return;
    }
    let ab = z * p.a_bs + row * p.a_sm;
    let bb = z * p.b_bs + col * p.b_sn;
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        acc += a[ab + kk * p.a_sk] * b_at(bb + kk * p.b_sk);
    }
    store(z, row, col, acc);
}

// Tiled: a 64×64 output tile per workgroup of 16×16 invocations, 4×4 outputs per invocation, K in steps of
// 16 staged through workgroup memory. Tiles are stored as vec4 rows along M (for A) and N (for B), so each
// invocation reads its 4 rows and 4 columns with two vec4 loads per k. Staging loads are ordered along the
// contiguous dimension of each operand (coalesced for either transpose); elements past an edge are zero.
const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> ta: array<vec4<f32>, 256>;   // [TK][TM / 4]
var<workgroup> tb: array<vec4<f32>, 256>;   // [TK][TN / 4]

@compute @workgroup_size(16, 16)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * TM;
    let col0 = wg.x * TN;
    let a0 = z * p.a_bs;
    let b0 = z * p.b_bs;
    let a_k_fastest = p.a_sk == 1u;
    let b_n_fastest = p.b_sn == 1u;
    // acc{i}: output row row0 + 4 * lid.y + i, columns col0 + 4 * lid.x .. + 3.
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        for (var r = 0u; r < 4u; r++) {
            let e = li + r * 256u;
            var mm = e / TK;
            var ka = e % TK;
            if (!a_k_fastest) {
                mm = e % TM;
                ka = e / TM;
            }
            var av = 0.0;
            if (row0 + mm < p.m && k0 + ka < p.k) {
                av = a[a0 + (row0 + mm) * p.a_sm + (k0 + ka) * p.a_sk];
            }
            ta[ka * (TM / 4u) + mm / 4u][mm % 4u] = av;
            var nn = e % TN;
            var kb = e / TN;
            if (!b_n_fastest) {
                nn = e / TK;
                kb = e % TK;
            }
            var bv = 0.0;
            if (col0 + nn < p.n && k0 + kb < p.k) {
                bv = b_at(b0 + (k0 + kb) * p.b_sk + (col0 + nn) * p.b_sn);
            }
            tb[kb * (TN / 4u) + nn / 4u][nn % 4u] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let av = ta[kk * (TM / 4u) + lid.y];
            let bv = tb[kk * (TN / 4u) + lid.x];
            acc0 = fma(vec4(av.x), bv, acc0);
            acc1 = fma(vec4(av.y), bv, acc1);
            acc2 = fma(vec4(av.z), bv, acc2);
            acc3 = fma(vec4(av.w), bv, acc3);
        }
        workgroupBarrier();
    }
    let row = row0 + 4u * lid.y;
    let col = col0 + 4u * lid.x;
    for (var j = 0u; j < 4u; j++) {
        store(z, row, col + j, acc0[j]);
        store(z, row + 1u, col + j, acc1[j]);
        store(z, row + 2u, col + j, acc2[j]);
        store(z, row + 3u, col + j, acc3[j]);
    }
}
