#!/usr/bin/env python3
"""Writes shaders/matmul_subgroup.wgsl, the matmul kernels for CPU Vulkan drivers (lavapipe/llvmpipe):

- matmul_bcast: any strides (transposes, batches);
- matmul_bcast_k4: A and B both contiguous along K (A untransposed, B a PyTorch Linear weight [N, K]) and
  K a multiple of 4, which is every Linear layer of SD; it reads 4 k at once and is ~1.7x faster there.
  It reads A and B through array<vec4<f32>> views (a4, b4) of the same bindings: WGSL lets entry points
  that do not share variables bind one slot twice.
- matmul_bcast_k4_geglu: matmul_bcast_k4 with diffusers' GEGLU as its epilogue, for the feed-forward's
  first projection: B is [2F, K], the output [M, F] = hidden * gelu(gate) (columns j and F + j of the
  product). Each lane owns 4 hidden and the 4 matching gate columns, so the product's second half is
  never written and the separate GEGLU pass (a read of 2F, a write of F per row) is gone.

The kernels keep a block of accumulators per lane in named variables (WGSL has no macros, and dynamically
indexed function arrays are slow under both wgpu's bounds checks and llvmpipe), so their text is
generated. Usage: python3 tools/gen_matmul_subgroup.py [PATH] (rewrites the file, or writes PATH). The tiles must match
src/kernels/matmul.rs (BCAST_TILE_*, BCAST_K4_TILE_*).

What costs what on llvmpipe (Mesa 22.3, read from its JIT code with perf and gdb): a storage load whose
address differs between lanes is a loop over the 8 lanes, each a bounds check and a masked insert (~40
multiply-adds' worth; a vec4 load costs little more than a scalar one); subgroupBroadcast is one
shuffle; fma() becomes a multiply and an add; and a block of hundreds of accumulators lives on the stack,
so every update that does not follow another to the same accumulator is a load and a store.

matmul_bcast, measured at 1024^3 (GFLOP per CPU-second, compile time with an empty shader cache): 32x8:
2.6 (~5 s), 64x8: 3.5 (~24 s), 64x16: 4.1 (~160 s), 128x8: 4.2 (~160 s); 64x8 is used. (Figures from
an older, slower machine state; the ratios hold.)

matmul_bcast_k4 on lavapipe, 2 cores, GPU timestamps (GFLOP/s at 1024^3 / 8192x320x1280 / 8192x1280x320,
B transposed), against matmul_bcast's 22.7 / 23.0 / 27.8 in the same session:
  k by 4 through vec4 loads, one k per update (a dynamic loop over the 4): 64x8 28.4 / 25.7 / 27.3
  the same loop unrolled:                                                    64x8 24.2 / 21.8 / 24.5
  the 4 updates of one accumulator in a row (this kernel):                   64x8 43.5 / 39.4 / 48.1 (12 s
    compile), 32x8 43.3 / 37.5 / 45.3 (3 s), 32x16 42.8 / 36.5 / 37.6, 16x16 31.8, 16x8 34.2; 8 k per
    chunk (two vec4 loads per operand) 32x8 42.9 / 37.8 / 46.0.
32x8 is used: as fast as 64x8 on SD's shapes, a quarter of the compile time. Re-measured 2026-12-01:
64x8 (the A rows' locals are named av*, so that 8 of them do not shadow the a4 view) ran the f32 bench
6-8 % faster (8192x320x1280 B^T 17.6-18.3 -> 19.0-19.7 GFLOP/CPU-s) but the f16-weight UNet not
(bench models --unet-only --precision f16: 29.41 / 29.14 -> 29.68 / 30.11 s) and its first compile
costs ~12 s more. Reading A rows with uniform loads instead of one lane load and subgroupBroadcast
ran 2x slower (18.9 vs 35.8 GFLOP/s): llvmpipe 22.3 loops over the lanes for uniform addresses too.
perf on the JIT code (1280^2 x 8192, B^T): ~43 % of the time is in the lane loops of the vec4 loads
(per lane: an active-mask test, then per component a bounds check and a masked broadcast into the
result), so what a tile costs is roughly its loaded components per multiply-add. Also tried: for f16 weights,
8 k per step with B read as one vec4<u32> (8 halves, a third fewer loads): SD 1.5 UNet matmul time
unchanged (14.3 / 13.6 s vs 13.9 s), so not kept.
"""
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

PARAMS = """struct Params {
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
    ldc: u32,        // output row stride: N, or more for a window of the columns
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
"""

STORE = """
// Columns col..col+3 of one output row, through the epilogue; `bias4` holds their biases (zeros without
// one). Called from a loop, not unrolled per accumulator: unrolled calls measured slower on lavapipe.
fn store_row(z: u32, row: u32, col: u32, v: vec4<f32>, bias4: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let c = col + j;
        if (c < p.n) {
            out[(z * p.m + row) * p.ldc + c] = activate(p.alpha * v[j] + bias4[j], p.act);
        }
    }
}

// matmul_bcast_k4's form of store_row: N and the row stride are multiples of 4 (lower() checks), so the
// 4 columns are all inside or all past N and go out as one vec4. llvmpipe 22.3 stores a vec4 in one loop
// over the lanes where 4 scalar stores take 4 such loops, which is most of what an output costs it.
fn store_row4(z: u32, row: u32, col: u32, v: vec4<f32>, bias4: vec4<f32>) {
    if (row >= p.m || col >= p.n) {
        return;
    }
    let y = p.alpha * v + bias4;
    out4[((z * p.m + row) * p.ldc + col) / 4u] =
        vec4<f32>(activate(y.x, p.act), activate(y.y, p.act), activate(y.z, p.act), activate(y.w, p.act));
}

// matmul_bcast_k4_geglu's store: output columns col..col+3 of one row (N = F, a multiple of 4) from the
// hidden (`h`) and gate (`g`) products with their biases: the same arithmetic as store_row4 and then the
// geglu4 kernel, so the result is bit-identical to the two passes.
fn store_geglu4(z: u32, row: u32, col: u32, h: vec4<f32>, g: vec4<f32>, bias_h: vec4<f32>, bias_g: vec4<f32>) {
    if (row >= p.m || col >= p.n) {
        return;
    }
    let y = p.alpha * h + bias_h;
    let yg = p.alpha * g + bias_g;
    out4[((z * p.m + row) * p.ldc + col) / 4u] = y * vec4<f32>(gelu(yg.x), gelu(yg.y), gelu(yg.z), gelu(yg.w));
}

// The gate biases of output columns col..col+3 (bias entries N + col.., as bias_at4).
fn bias_gate_at4(col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let c = col + j;
        v[j] = select(0.0, bias[p.n + min(c, p.n - 1u)], (p.flags & 1u) != 0u && c < p.n);
    }
    return v;
}

// The biases of columns col..col+3 (0 past N or without a bias), loaded once per workgroup rather than per
// output: each lane-varying load is costly on lavapipe, and without a bias the slot holds A, so the
// index is clamped and the value discarded.
fn bias_at4(col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let c = col + j;
        v[j] = select(0.0, bias[min(c, p.n - 1u)], (p.flags & 1u) != 0u && c < p.n);
    }
    return v;
}
"""


def prologue(w, rows, cols, entry, geglu=False):
    # With geglu, a lane's cols B columns are 4 hidden ones and the 4 gate ones F further, for 4 outputs.
    out_cols = cols // 2 if geglu else cols
    w(f"""@compute @workgroup_size(8)
fn {entry}(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {{
    let z = p.z0 + wg.z;
    let row0 = p.m0 + wg.y * {rows}u;
    let col0 = wg.x * {8 * out_cols}u + lid.x * {out_cols}u;
    // Element offsets (at k = 0) of the A rows this lane loads and of the B columns it owns.""")
    for q in range(rows // 8):
        w(f"    let ar{q} = z * p.a_bs + min(row0 + {8 * q}u + lane % 8u, p.m - 1u) * p.a_sm;")
    for j in range(cols):
        if geglu and j >= out_cols:
            w(f"    let bc{j} = z * p.b_bs + (p.n + min(col0 + {j - out_cols}u, p.n - 1u)) * p.b_sn;")
        else:
            w(f"    let bc{j} = z * p.b_bs + min(col0 + {j}u, p.n - 1u) * p.b_sn;")
    w("    // acc{r}_{g}: row row0 + r, columns col0 + 4g .. col0 + 4g + 3.")
    for r in range(rows):
        w("    " + " ".join(f"var acc{r}_{g}: vec4<f32>;" for g in range(cols // 4)))


def epilogue(w, rows, cols, store="store_row"):
    g_n = cols // 4
    n = rows * g_n
    w(f"    var res: array<vec4<f32>, {n}>;")
    for r in range(rows):
        w("    " + " ".join(f"res[{r * g_n + g}] = acc{r}_{g};" for g in range(g_n)))
    w(f"    var bias4: array<vec4<f32>, {g_n}>;")
    for g in range(g_n):
        w(f"    bias4[{g}] = bias_at4(col0 + {4 * g}u);")
    w(f"""    for (var i = 0u; i < {n}u; i++) {{
        {store}(z, row0 + i / {g_n}u, col0 + (i % {g_n}u) * 4u, res[i], bias4[i % {g_n}u]);
    }}
}}""")


def geglu_epilogue(w, rows):
    """acc{r}_0 holds hidden columns col0.., acc{r}_1 the matching gate columns: one vec4 store per row."""
    w(f"    var res: array<vec4<f32>, {2 * rows}>;")
    for r in range(rows):
        w(f"    res[{2 * r}] = acc{r}_0; res[{2 * r + 1}] = acc{r}_1;")
    w(f"""    let bias_h = bias_at4(col0);
    let bias_g = bias_gate_at4(col0);
    for (var i = 0u; i < {rows}u; i++) {{
        store_geglu4(z, row0 + i, col0, res[2u * i], res[2u * i + 1u], bias_h, bias_g);
    }}
}}""")


def source(rows=64, cols=8, k4_rows=32, k4_cols=8):
    """The whole file: both entry points over one Params, one set of bindings and one epilogue."""
    out = []
    w = out.append
    w(f"""// Matmul for CPU Vulkan drivers (lavapipe/llvmpipe), same contract as matmul.wgsl:
// out[z] = act(alpha * op(A[z]) · op(B[z]) + bias), transposes and batch broadcast as element strides.
// Entry points: matmul_bcast (any strides; {rows} rows × {cols} columns per lane), matmul_bcast_k4 (A and
// B contiguous along K; K, N and the output's row stride multiples of 4; {k4_rows} rows × {k4_cols} columns
// per lane) and matmul_bcast_k4_geglu (the same with a GEGLU epilogue: hidden * gelu(gate) from columns j
// and F + j, {k4_rows} rows × 4 outputs per lane). All need subgroup operations with subgroups of at least
// 8 invocations.
// GENERATED by tools/gen_matmul_subgroup.py: edit the generator.
//
// Why this shape: llvmpipe runs 8 invocations as one SIMD vector and builds every lane-varying load lane by
// lane (tens of cycles per value), while multiply-adds on whole vectors are cheap. So the kernels minimise
// loads per multiply-add. A workgroup is one 8-lane subgroup; every lane loads some rows of A (rows lane,
// lane + 8, ...) and shares them with subgroupBroadcast, and loads its own columns of B. Rows and columns
// past the edge are clamped for loading and skipped when storing, so the k loops have no bounds checks. A
// and B are read only through their accessors (a_at, a4_at4, b_at, b4_at4), so the same text serves f32
// and packed-f16 weights and texture reads (src/kernels/weight_storage.rs).
""")
    w(PARAMS + """@group(0) @binding(1) var<storage, read> a: array<f32>;
fn a_at(i: u32) -> f32 { return a[i]; }
@group(0) @binding(2) var<storage, read> b: array<f32>;
fn b_at(i: u32) -> f32 { return b[i]; }
// A and B 4 values at a time, for matmul_bcast_k4 only (it uses no other view of them; WGSL lets entry
// points that do not share variables bind one slot to both).
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
fn a4_at4(i: u32) -> vec4<f32> { return a4[i]; }
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
fn b4_at4(i: u32) -> vec4<f32> { return b4[i]; }
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// The output 4 values at a time, for matmul_bcast_k4 only (as with a4 and b4).
@group(0) @binding(4) var<storage, read_write> out4: array<vec4<f32>>;""")
    w(STORE)
    generic(w, rows, cols)
    w("")
    contiguous_k(w, k4_rows, k4_cols)
    w("")
    contiguous_k(w, k4_rows, k4_cols, geglu=True)
    return "\n".join(out) + "\n"


def generic(w, rows, cols):
    """matmul_bcast: one k per step, any strides. Per k, every lane loads rows // 8 values of A and its own
    cols values of B: rows * cols multiply-adds per lane for rows // 8 + cols loads."""
    assert rows % 8 == 0 and cols % 4 == 0
    prologue(w, rows, cols, "matmul_bcast")
    w("""    var ka = 0u;
    var kb = 0u;
    for (var k = 0u; k < p.k; k++) {""")
    for g in range(cols // 4):
        w(f"        let b{g} = vec4<f32>(" + ", ".join(f"b_at(bc{4 * g + i} + kb)" for i in range(4)) + ");")
    for q in range(rows // 8):
        w(f"        let a{q} = a_at(ar{q} + ka);")
        for r in range(8):
            row = 8 * q + r
            w(f"        {{ let v = vec4(subgroupBroadcast(a{q}, {r}u)); "
              + " ".join(f"acc{row}_{g} = fma(v, b{g}, acc{row}_{g});" for g in range(cols // 4)) + " }")
    w("""        ka += p.a_sk;
        kb += p.b_sk;
    }""")
    epilogue(w, rows, cols)


def contiguous_k(w, rows, cols, geglu=False):
    """matmul_bcast_k4: A rows and B columns contiguous along K (a_sk = b_sk = 1), K a multiple of 4, so
    every element offset is a multiple of 4. Like matmul_bcast, with two changes that matter on llvmpipe:
    A and B come 4 k at a time as vec4 loads, and each accumulator takes its 4 updates in a row, so it is
    loaded from and stored to the stack once per 4 k instead of once per k."""
    assert rows % 8 == 0 and cols % 4 == 0 and (not geglu or cols == 8)
    if geglu:
        w("""// matmul_bcast_k4 with the GEGLU epilogue: B is [2F, K] and the output [M, F] (p.n = F); a lane multiplies
// its 4 hidden columns and the 4 gate columns F further, and writes hidden * gelu(gate).""")
    else:
        w("""// A and B contiguous along K (x · Wᵀ) and K a multiple of 4: 4 k per step through the vec4 views, the 4
// updates of each accumulator in a row (it lives on the stack: one load and store per 4 k, not per k).""")
    prologue(w, rows, cols, "matmul_bcast_k4_geglu" if geglu else "matmul_bcast_k4", geglu)
    w("""    // Offsets in vec4s: every offset above is a multiple of K, so of 4.
    for (var k4 = 0u; k4 < p.k / 4u; k4++) {""")
    for j in range(cols):
        w(f"        let b{j} = b4_at4(bc{j} / 4u + k4);")
    for q in range(rows // 8):
        w(f"        let av{q} = a4_at4(ar{q} / 4u + k4);")
    w("        // B columns col0 + 4g .. col0 + 4g + 3 at k = 4·k4 + i.")
    for g in range(cols // 4):
        for i in range(4):
            w(f"        let b{g}_{i} = vec4<f32>(" + ", ".join(f"b{4 * g + c}[{i}]" for c in range(4)) + ");")
    for q in range(rows // 8):
        for r in range(8):
            row = 8 * q + r
            w(f"        {{ let v = subgroupBroadcast(av{q}, {r}u);")
            for g in range(cols // 4):
                e = f"acc{row}_{g}"
                for i in range(4):
                    e = f"fma(vec4(v[{i}]), b{g}_{i}, {e})"
                w(f"          acc{row}_{g} = {e};")
            w("        }")
    w("    }")
    if geglu:
        geglu_epilogue(w, rows)
    else:
        epilogue(w, rows, cols, "store_row4")


if __name__ == "__main__":
    # An optional path writes the source there instead (tests/shaders.rs compares it with the committed file).
    import sys
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "shaders", "matmul_subgroup.wgsl")
    with open(path, "w") as f:
        f.write(source())
