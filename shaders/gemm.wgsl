// Dense GEMM, register-blocked: C[M×N] = op(A)[M×K] · op(B)[K×N], then an optional epilogue.
//
// Used for dense layers (the MLP's last layer), as the dense baseline of the benchmarks, and in its
// masked form for sparse layers stored densely at high density:
//   MASK_A: op(A) is multiplied elementwise by `mask` (same layout as A) — forward / input gradient
//           of a masked-dense layer, W ⊙ M;
//   MASK_C: the result is multiplied by `mask` (layout of C) — the weight gradient (dYᵀX) ⊙ M.
//
// Each invocation computes a 4×4 block of C; a 16×16 workgroup covers a 64×64 tile. Two entry
// points share that layout:
//   gemm       — no workgroup memory: on CPU drivers (lavapipe, SwiftShader) barriers cost more
//                than the reuse gains, and register blocking alone gives 4× operand reuse;
//   gemm_tiled — the workgroup stages 64×16 slices of op(A) and 16×64 slices of op(B) in workgroup
//                memory (8.3 KiB), so each operand element is read from global memory once per
//                tile instead of 16 times: the kernel for hardware GPUs.
//
// Storage: row-major. TRANS_A means A is stored K×M (so op(A) = Aᵀ); TRANS_B means B is stored N×K.
// Epilogue flags: bit 0 adds bias[m] per row of C, bit 1 applies ReLU, bit 2 accumulates into C.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override MASK_A: bool = false;
override MASK_C: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
}

const FLAG_BIAS: u32 = 1u;
const FLAG_RELU: u32 = 2u;
const FLAG_ACCUMULATE: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<u32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

// op(A)[row, kk]; rows past M are clamped (their results are never stored).
fn load_a(row: u32, kk: u32) -> f32 {
    let r = min(row, p.m - 1u);
    var idx: u32;
    if (TRANS_A) { idx = kk * p.m + r; } else { idx = r * p.k + kk; }
    var v = a[idx];
    if (MASK_A) {
        v = select(0.0, v, mask[idx] != 0u);
    }
    return v;
}

// op(B)[kk, col0 .. col0+4], columns past N clamped.
fn load_b4(kk: u32, col0: u32) -> vec4<f32> {
    let last = p.n - 1u;
    let c0 = min(col0, last);
    let c1 = min(col0 + 1u, last);
    let c2 = min(col0 + 2u, last);
    let c3 = min(col0 + 3u, last);
    if (TRANS_B) {
        return vec4<f32>(b[c0 * p.k + kk], b[c1 * p.k + kk], b[c2 * p.k + kk], b[c3 * p.k + kk]);
    }
    let base = kk * p.n;
    return vec4<f32>(b[base + c0], b[base + c1], b[base + c2], b[base + c3]);
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 4u;
    let col0 = gid.x * 4u;
    if (row0 >= p.m || col0 >= p.n) {
        return;
    }
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let bv = load_b4(kk, col0);
        acc0 += load_a(row0, kk) * bv;
        acc1 += load_a(row0 + 1u, kk) * bv;
        acc2 += load_a(row0 + 2u, kk) * bv;
        acc3 += load_a(row0 + 3u, kk) * bv;
    }
    store_row(row0, col0, acc0);
    store_row(row0 + 1u, col0, acc1);
    store_row(row0 + 2u, col0, acc2);
    store_row(row0 + 3u, col0, acc3);
}

fn store_row(row: u32, col0: u32, acc: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + j;
        if (col >= p.n) {
            return;
        }
        let idx = row * p.n + col;
        var v = acc[j];
        if ((p.flags & FLAG_BIAS) != 0u) {
            v += bias[row];
        }
        if ((p.flags & FLAG_RELU) != 0u) {
            v = max(v, 0.0);
        }
        if (MASK_C) {
            v = select(0.0, v, mask[idx] != 0u);
        }
        if ((p.flags & FLAG_ACCUMULATE) != 0u) {
            v += c[idx];
        }
        c[idx] = v;
    }
}

// ---- gemm_tiled ---------------------------------------------------------------------------------

const TILE: u32 = 64u;
const KT: u32 = 16u;
// Row stride 65 (not 64) in a_tile: the loads below write consecutive k of one row from
// consecutive invocations, which would otherwise all hit one memory bank.
const A_STRIDE: u32 = 65u;

var<workgroup> a_tile: array<f32, 1040>; // [KT][A_STRIDE]: a_tile[kk * 65 + r] = op(A)[row0 + r, k0 + kk]
var<workgroup> b_tile: array<f32, 1024>; // [KT][TILE]:     b_tile[kk * 64 + c] = op(B)[k0 + kk, col0 + c]

// op(B)[kk, col] for one element (callers check bounds).
fn load_b(kk: u32, col: u32) -> f32 {
    if (TRANS_B) {
        return b[col * p.k + kk];
    }
    return b[kk * p.n + col];
}

@compute @workgroup_size(16, 16)
fn gemm_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let tile_row = wg.y * TILE;
    let tile_col = wg.x * TILE;
    let t = lid.y * 16u + lid.x;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += KT) {
        // 256 invocations stage 1024 elements of each operand, 4 each; the element order follows
        // the storage order so that neighbouring invocations read neighbouring addresses.
        for (var i = 0u; i < 4u; i++) {
            let e = t + i * 256u;
            var r: u32;
            var ka: u32;
            if (TRANS_A) { r = e % TILE; ka = e / TILE; } else { ka = e % KT; r = e / KT; }
            var va = 0.0;
            if (tile_row + r < p.m && k0 + ka < p.k) {
                va = load_a(tile_row + r, k0 + ka);
            }
            a_tile[ka * A_STRIDE + r] = va;
            var c: u32;
            var kb: u32;
            if (TRANS_B) { kb = e % KT; c = e / KT; } else { c = e % TILE; kb = e / TILE; }
            var vb = 0.0;
            if (tile_col + c < p.n && k0 + kb < p.k) {
                vb = load_b(k0 + kb, tile_col + c);
            }
            b_tile[kb * TILE + c] = vb;
        }
        workgroupBarrier();
        let ra = lid.y * 4u;
        let cb = lid.x * 4u;
        for (var kk = 0u; kk < KT; kk++) {
            let bo = kk * TILE + cb;
            let bv = vec4<f32>(b_tile[bo], b_tile[bo + 1u], b_tile[bo + 2u], b_tile[bo + 3u]);
            let ao = kk * A_STRIDE + ra;
            acc0 += a_tile[ao] * bv;
            acc1 += a_tile[ao + 1u] * bv;
            acc2 += a_tile[ao + 2u] * bv;
            acc3 += a_tile[ao + 3u] * bv;
        }
        workgroupBarrier();
    }
    let row0 = tile_row + lid.y * 4u;
    let col0 = tile_col + lid.x * 4u;
    if (col0 >= p.n) {
        return;
    }
    store_row(row0, col0, acc0);
    store_row(row0 + 1u, col0, acc1);
    store_row(row0 + 2u, col0, acc2);
    store_row(row0 + 3u, col0, acc3);
}
