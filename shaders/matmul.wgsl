// Batched matmul with a fused epilogue: out[z] = act(alpha * op(A[z]) · op(B[z]) + bias).
// Entry points: matmul (tuned), matmul_naive (one thread per output, the benchmark baseline),
// mm_rows_16x2, mm_rows_8x4, mm_rows_32x1, mm_tiled64 (tuning candidates).
//
// Transposes, batch broadcast and folded batches are all expressed as element strides (a_sm, a_sk, b_sk,
// b_sn, a_bs, b_bs), so every layout runs through the same entry point. Output is [batch, M, N] contiguous.
// Workgroup grid: x over column tiles, y over row tiles (from row m0), z over batches (from z0).

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
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// The same A and B seen as vec4 rows, for the entry points that require 4-aligned rows.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;

fn epilogue(acc: f32, col: u32) -> f32 {
    var v = p.alpha * acc;
    if ((p.flags & 1u) != 0u) {
        v += bias[col];
    }
    return activate(v, p.act);
}

// ---------------------------------------------------------------------------------------------------------
// Naive: one invocation per output, straight from global memory.
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
        acc += a[ab + kk * p.a_sk] * b[bb + kk * p.b_sk];
    }
    out[(z * p.m + row) * p.n + col] = epilogue(acc, col);
}

// ---------------------------------------------------------------------------------------------------------
// Row-broadcast register tiling. A workgroup of 64 invocations owns RM rows × 64·TN columns; every
// invocation keeps RM × TN accumulators. The A operands depend only on the workgroup and k, so they are
// uniform loads (one scalar load broadcast to all lanes on SIMD CPUs like lavapipe, a broadcast read on
// GPUs); each invocation loads its own TN values of B per k. No workgroup memory, no barriers. Rows and
// columns past the edge are clamped to valid ones for loading and skipped when storing, so the k loop has
// no bounds checks.

const RWG: u32 = 64u;

fn a_row(z: u32, row: u32) -> u32 {
    return z * p.a_bs + min(row, p.m - 1u) * p.a_sm;
}

fn b_col(z: u32, col: u32) -> u32 {
    return z * p.b_bs + min(col, p.n - 1u) * p.b_sn;
}

fn store(z: u32, row: u32, col: u32, acc: f32) {
    if (row < p.m && col < p.n) {
        out[(z * p.m + row) * p.n + col] = epilogue(acc, col);
    }
}

const R16_M: u32 = 16u;
const R16_N: u32 = 2u;

@compute @workgroup_size(64)
fn mm_rows_16x2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * R16_M;
    let col0 = wg.x * (RWG * R16_N) + lid.x;
    var ar: array<u32, R16_M>;
    for (var i = 0u; i < R16_M; i++) {
        ar[i] = a_row(z, row0 + i);
    }
    var bc: array<u32, R16_N>;
    for (var j = 0u; j < R16_N; j++) {
        bc[j] = b_col(z, col0 + j * RWG);
    }
    var acc: array<array<f32, R16_N>, R16_M>;
    for (var kk = 0u; kk < p.k; kk++) {
        var bv: array<f32, R16_N>;
        for (var j = 0u; j < R16_N; j++) {
            bv[j] = b[bc[j] + kk * p.b_sk];
        }
        for (var i = 0u; i < R16_M; i++) {
            let av = a[ar[i] + kk * p.a_sk];
            for (var j = 0u; j < R16_N; j++) {
                acc[i][j] = fma(av, bv[j], acc[i][j]);
            }
        }
    }
    for (var i = 0u; i < R16_M; i++) {
        for (var j = 0u; j < R16_N; j++) {
            store(z, row0 + i, col0 + j * RWG, acc[i][j]);
        }
    }
}

const R8_M: u32 = 8u;
const R8_N: u32 = 4u;

@compute @workgroup_size(64)
fn mm_rows_8x4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * R8_M;
    let col0 = wg.x * (RWG * R8_N) + lid.x;
    var ar: array<u32, R8_M>;
    for (var i = 0u; i < R8_M; i++) {
        ar[i] = a_row(z, row0 + i);
    }
    var bc: array<u32, R8_N>;
    for (var j = 0u; j < R8_N; j++) {
        bc[j] = b_col(z, col0 + j * RWG);
    }
    var acc: array<array<f32, R8_N>, R8_M>;
    for (var kk = 0u; kk < p.k; kk++) {
        var bv: array<f32, R8_N>;
        for (var j = 0u; j < R8_N; j++) {
            bv[j] = b[bc[j] + kk * p.b_sk];
        }
        for (var i = 0u; i < R8_M; i++) {
            let av = a[ar[i] + kk * p.a_sk];
            for (var j = 0u; j < R8_N; j++) {
                acc[i][j] = fma(av, bv[j], acc[i][j]);
            }
        }
    }
    for (var i = 0u; i < R8_M; i++) {
        for (var j = 0u; j < R8_N; j++) {
            store(z, row0 + i, col0 + j * RWG, acc[i][j]);
        }
    }
}

const R32_M: u32 = 32u;

@compute @workgroup_size(64)
fn mm_rows_32x1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * R32_M;
    let col = wg.x * RWG + lid.x;
    var ar: array<u32, R32_M>;
    for (var i = 0u; i < R32_M; i++) {
        ar[i] = a_row(z, row0 + i);
    }
    let bc = b_col(z, col);
    var acc: array<f32, R32_M>;
    for (var kk = 0u; kk < p.k; kk++) {
        let bv = b[bc + kk * p.b_sk];
        for (var i = 0u; i < R32_M; i++) {
            acc[i] = fma(a[ar[i] + kk * p.a_sk], bv, acc[i]);
        }
    }
    for (var i = 0u; i < R32_M; i++) {
        store(z, row0 + i, col, acc[i]);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Classic shared-memory tiling (the GPU textbook kernel): 64×64 workgroup tile, 256 invocations with 4×4
// outputs each, BK = 16, padded workgroup tiles.

const T_BM: u32 = 64u;
const T_BN: u32 = 64u;
const T_BK: u32 = 16u;
const T_PAD: u32 = 4u;

var<workgroup> ta: array<f32, T_BK * (T_BM + T_PAD)>;
var<workgroup> tb: array<f32, T_BK * (T_BN + T_PAD)>;

@compute @workgroup_size(16, 16)
fn mm_tiled64(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * T_BM;
    let col0 = wg.x * T_BN;
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += T_BK) {
        // Each invocation stages 4 elements of each tile; out-of-range elements are zero.
        for (var r = 0u; r < 4u; r++) {
            let e = li + r * 256u;
            let kk = e % T_BK;
            let mm = e / T_BK;
            let gk = k0 + kk;
            var av = 0.0;
            if (row0 + mm < p.m && gk < p.k) {
                av = a[z * p.a_bs + (row0 + mm) * p.a_sm + gk * p.a_sk];
            }
            ta[kk * (T_BM + T_PAD) + mm] = av;
            let nn = e % T_BN;
            let kb = e / T_BN;
            let gkb = k0 + kb;
            var bv = 0.0;
            if (col0 + nn < p.n && gkb < p.k) {
                bv = b[z * p.b_bs + gkb * p.b_sk + (col0 + nn) * p.b_sn];
            }
            tb[kb * (T_BN + T_PAD) + nn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < T_BK; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = ta[kk * (T_BM + T_PAD) + lid.y * 4u + i];
                bv[i] = tb[kk * (T_BN + T_PAD) + lid.x * 4u + i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            store(z, row0 + lid.y * 4u + i, col0 + lid.x * 4u + j, acc[i][j]);
        }
    }
}

// The tuned entry point: the fastest candidate measured on lavapipe (see src/kernels/matmul.rs).
@compute @workgroup_size(64)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    mm_rows_body(wg, lid);
}

fn mm_rows_body(wg: vec3<u32>, lid: vec3<u32>) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * R16_M;
    let col0 = wg.x * (RWG * R16_N) + lid.x;
    var ar: array<u32, R16_M>;
    for (var i = 0u; i < R16_M; i++) {
        ar[i] = a_row(z, row0 + i);
    }
    var bc: array<u32, R16_N>;
    for (var j = 0u; j < R16_N; j++) {
        bc[j] = b_col(z, col0 + j * RWG);
    }
    var acc: array<array<f32, R16_N>, R16_M>;
    for (var kk = 0u; kk < p.k; kk++) {
        var bv: array<f32, R16_N>;
        for (var j = 0u; j < R16_N; j++) {
            bv[j] = b[bc[j] + kk * p.b_sk];
        }
        for (var i = 0u; i < R16_M; i++) {
            let av = a[ar[i] + kk * p.a_sk];
            for (var j = 0u; j < R16_N; j++) {
                acc[i][j] = fma(av, bv[j], acc[i][j]);
            }
        }
    }
    for (var i = 0u; i < R16_M; i++) {
        for (var j = 0u; j < R16_N; j++) {
            store(z, row0 + i, col0 + j * RWG, acc[i][j]);
        }
    }
}


fn store_row(z: u32, row: u32, col: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        store(z, row, col + j, v[j]);
    }
}

// Columns of `t` are output rows row..row+3, each a vec4 over columns col..col+3.
fn store_tile(z: u32, row: u32, col: u32, t: mat4x4<f32>) {
    for (var i = 0u; i < 4u; i++) {
        store_row(z, row + i, col, t[i]);
    }
}

@compute @workgroup_size(8, 8)
fn mm_a4x4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * 32u + lid.y * 4u;
    let col0 = wg.x * 32u + lid.x * 4u;
    let nq = p.n / 4u;
    let ar0 = a_row(z, row0 + 0u) / 4u;
    let ar1 = a_row(z, row0 + 1u) / 4u;
    let ar2 = a_row(z, row0 + 2u) / 4u;
    let ar3 = a_row(z, row0 + 3u) / 4u;
    let bc0 = (z * p.b_bs + min(col0 + 0u, p.n - 4u)) / 4u;
    var acc0_0: mat4x4<f32>;
    for (var k = 0u; k < p.k; k += 4u) {
        let kq = k / 4u;
        let bm0 = mat4x4<f32>(b4[bc0 + k * nq], b4[bc0 + (k + 1u) * nq], b4[bc0 + (k + 2u) * nq], b4[bc0 + (k + 3u) * nq]);
        let am0 = mat4x4<f32>(a4[ar0 + kq], a4[ar1 + kq], a4[ar2 + kq], a4[ar3 + kq]);
        acc0_0 += bm0 * am0;
    }
    store_tile(z, row0 + 0u, col0 + 0u, acc0_0);
}

@compute @workgroup_size(8, 8)
fn mm_a8x8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * 64u + lid.y * 8u;
    let col0 = wg.x * 64u + lid.x * 8u;
    let nq = p.n / 4u;
    let ar0 = a_row(z, row0 + 0u) / 4u;
    let ar1 = a_row(z, row0 + 1u) / 4u;
    let ar2 = a_row(z, row0 + 2u) / 4u;
    let ar3 = a_row(z, row0 + 3u) / 4u;
    let ar4 = a_row(z, row0 + 4u) / 4u;
    let ar5 = a_row(z, row0 + 5u) / 4u;
    let ar6 = a_row(z, row0 + 6u) / 4u;
    let ar7 = a_row(z, row0 + 7u) / 4u;
    let bc0 = (z * p.b_bs + min(col0 + 0u, p.n - 4u)) / 4u;
    let bc1 = (z * p.b_bs + min(col0 + 4u, p.n - 4u)) / 4u;
    var acc0_0: mat4x4<f32>;
    var acc0_1: mat4x4<f32>;
    var acc1_0: mat4x4<f32>;
    var acc1_1: mat4x4<f32>;
    for (var k = 0u; k < p.k; k += 4u) {
        let kq = k / 4u;
        let bm0 = mat4x4<f32>(b4[bc0 + k * nq], b4[bc0 + (k + 1u) * nq], b4[bc0 + (k + 2u) * nq], b4[bc0 + (k + 3u) * nq]);
        let bm1 = mat4x4<f32>(b4[bc1 + k * nq], b4[bc1 + (k + 1u) * nq], b4[bc1 + (k + 2u) * nq], b4[bc1 + (k + 3u) * nq]);
        let am0 = mat4x4<f32>(a4[ar0 + kq], a4[ar1 + kq], a4[ar2 + kq], a4[ar3 + kq]);
        acc0_0 += bm0 * am0;
        acc0_1 += bm1 * am0;
        let am1 = mat4x4<f32>(a4[ar4 + kq], a4[ar5 + kq], a4[ar6 + kq], a4[ar7 + kq]);
        acc1_0 += bm0 * am1;
        acc1_1 += bm1 * am1;
    }
    store_tile(z, row0 + 0u, col0 + 0u, acc0_0);
    store_tile(z, row0 + 0u, col0 + 4u, acc0_1);
    store_tile(z, row0 + 4u, col0 + 0u, acc1_0);
    store_tile(z, row0 + 4u, col0 + 4u, acc1_1);
}

@compute @workgroup_size(8, 8)
fn mm_a8x4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * 64u + lid.y * 8u;
    let col0 = wg.x * 32u + lid.x * 4u;
    let nq = p.n / 4u;
    let ar0 = a_row(z, row0 + 0u) / 4u;
    let ar1 = a_row(z, row0 + 1u) / 4u;
    let ar2 = a_row(z, row0 + 2u) / 4u;
    let ar3 = a_row(z, row0 + 3u) / 4u;
    let ar4 = a_row(z, row0 + 4u) / 4u;
    let ar5 = a_row(z, row0 + 5u) / 4u;
    let ar6 = a_row(z, row0 + 6u) / 4u;
    let ar7 = a_row(z, row0 + 7u) / 4u;
    let bc0 = (z * p.b_bs + min(col0 + 0u, p.n - 4u)) / 4u;
    var acc0_0: mat4x4<f32>;
    var acc1_0: mat4x4<f32>;
    for (var k = 0u; k < p.k; k += 4u) {
        let kq = k / 4u;
        let bm0 = mat4x4<f32>(b4[bc0 + k * nq], b4[bc0 + (k + 1u) * nq], b4[bc0 + (k + 2u) * nq], b4[bc0 + (k + 3u) * nq]);
        let am0 = mat4x4<f32>(a4[ar0 + kq], a4[ar1 + kq], a4[ar2 + kq], a4[ar3 + kq]);
        acc0_0 += bm0 * am0;
        let am1 = mat4x4<f32>(a4[ar4 + kq], a4[ar5 + kq], a4[ar6 + kq], a4[ar7 + kq]);
        acc1_0 += bm0 * am1;
    }
    store_tile(z, row0 + 0u, col0 + 0u, acc0_0);
    store_tile(z, row0 + 4u, col0 + 0u, acc1_0);
}

@compute @workgroup_size(8, 8)
fn mm_a16x4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * 128u + lid.y * 16u;
    let col0 = wg.x * 32u + lid.x * 4u;
    let nq = p.n / 4u;
    let ar0 = a_row(z, row0 + 0u) / 4u;
    let ar1 = a_row(z, row0 + 1u) / 4u;
    let ar2 = a_row(z, row0 + 2u) / 4u;
    let ar3 = a_row(z, row0 + 3u) / 4u;
    let ar4 = a_row(z, row0 + 4u) / 4u;
    let ar5 = a_row(z, row0 + 5u) / 4u;
    let ar6 = a_row(z, row0 + 6u) / 4u;
    let ar7 = a_row(z, row0 + 7u) / 4u;
    let ar8 = a_row(z, row0 + 8u) / 4u;
    let ar9 = a_row(z, row0 + 9u) / 4u;
    let ar10 = a_row(z, row0 + 10u) / 4u;
    let ar11 = a_row(z, row0 + 11u) / 4u;
    let ar12 = a_row(z, row0 + 12u) / 4u;
    let ar13 = a_row(z, row0 + 13u) / 4u;
    let ar14 = a_row(z, row0 + 14u) / 4u;
    let ar15 = a_row(z, row0 + 15u) / 4u;
    let bc0 = (z * p.b_bs + min(col0 + 0u, p.n - 4u)) / 4u;
    var acc0_0: mat4x4<f32>;
    var acc1_0: mat4x4<f32>;
    var acc2_0: mat4x4<f32>;
    var acc3_0: mat4x4<f32>;
    for (var k = 0u; k < p.k; k += 4u) {
        let kq = k / 4u;
        let bm0 = mat4x4<f32>(b4[bc0 + k * nq], b4[bc0 + (k + 1u) * nq], b4[bc0 + (k + 2u) * nq], b4[bc0 + (k + 3u) * nq]);
        let am0 = mat4x4<f32>(a4[ar0 + kq], a4[ar1 + kq], a4[ar2 + kq], a4[ar3 + kq]);
        acc0_0 += bm0 * am0;
        let am1 = mat4x4<f32>(a4[ar4 + kq], a4[ar5 + kq], a4[ar6 + kq], a4[ar7 + kq]);
        acc1_0 += bm0 * am1;
        let am2 = mat4x4<f32>(a4[ar8 + kq], a4[ar9 + kq], a4[ar10 + kq], a4[ar11 + kq]);
        acc2_0 += bm0 * am2;
        let am3 = mat4x4<f32>(a4[ar12 + kq], a4[ar13 + kq], a4[ar14 + kq], a4[ar15 + kq]);
        acc3_0 += bm0 * am3;
    }
    store_tile(z, row0 + 0u, col0 + 0u, acc0_0);
    store_tile(z, row0 + 4u, col0 + 0u, acc1_0);
    store_tile(z, row0 + 8u, col0 + 0u, acc2_0);
    store_tile(z, row0 + 12u, col0 + 0u, acc3_0);
}

