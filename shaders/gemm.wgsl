// Dense GEMM: C[M×N] = op(A)[M×K] · op(B)[K×N], then an optional epilogue.
//
// Used for dense layers (the MLP's last layer, the language model), as the dense baseline of the
// benchmarks, and in its masked form for sparse layers stored densely at high density:
//   MASK_A: op(A) is multiplied elementwise by `mask` (same layout as A) — forward / input gradient
//           of a masked-dense layer, W ⊙ M;
//   MASK_C: the result is multiplied by `mask` (layout of C) — the weight gradient (dYᵀX) ⊙ M.
//
// Entry points (all compute the same products: every entry of C is summed over k in increasing
// order from 0 with one accumulator, exactly like the CPU twin, so products with 0/1 operands are
// bit-identical across kernels and backends):
//   gemm          — 16×16 invocations, 4×4 outputs each (a 64×64 tile), no workgroup memory: on CPU
//                   drivers (lavapipe, SwiftShader) barriers cost more than the reuse gains, and
//                   register blocking alone gives 4× operand reuse;
//   gemm_tiled    — the same layout, with 64×16 / 16×64 operand slices staged in workgroup memory
//                   (8.3 KiB);
//   gemm_large    — the kernel for hardware GPUs: 16×16 invocations, 8×4 outputs each (a 128×64
//                   tile), 128×16 / 16×64 operand slices in workgroup memory (12.5 KiB) loaded one
//                   slice ahead into registers, vec4 reads of workgroup memory in the inner loop;
//   gemm_large_v4 — gemm_large with vec4 bindings (a4, b4, mask4, c4) for vec4 global loads and
//                   stores; selected when every contiguous dimension is a multiple of 4.
//
// Storage: row-major. TRANS_A means A is stored K×M (so op(A) = Aᵀ); TRANS_B means B is stored N×K.
// Epilogue flags: bit 0 adds bias[m] per row of C, bit 1 applies ReLU, bit 2 accumulates into C.
// Order per entry: sum, + bias, ReLU, × mask (MASK_C), + old C.
//
// Every index is in bounds by construction (rows, columns and k are clamped or checked against
// p.m, p.n, p.k, and the launcher checks each tensor's shape against them): the launcher creates
// this module without runtime bounds checks on native adapters (see `gpu.rs`).

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

// ---- gemm_large / gemm_large_v4 ------------------------------------------------------------------
//
// Workgroup: 16×16 invocations; invocation (x, y) computes rows y·8 .. y·8+7 and columns
// x·4 .. x·4+3 of a 128×64 tile of C, i.e. 8 vec4 accumulators (acc0..acc7, one per row).
//
// Per k-slice of 16 the workgroup stages op(A)[128 rows × 16] and op(B)[16 × 64 columns] in
// workgroup memory, both k-major (`la[kk][row]`, `lb[kk][col]`) so that the inner loop reads
// two vec4 of A (the invocation's 8 rows) and one vec4 of B (its 4 columns) per k: 3 reads of
// workgroup memory per 32 multiply-adds. The slices are read from global memory in quads along
// each operand's contiguous dimension (4 consecutive floats: one vec4 load in gemm_large_v4),
// one slice ahead into registers, so the loads of slice s+1 are in flight while slice s is
// multiplied. A quad along k (A not transposed, or B transposed) is scattered over 4 k-rows.
// Row pitches are padded by one vec4 to spread those scattered stores over the memory banks.
//
// Interior tiles and full k-slices use loads and stores without any bounds check; tiles that
// cross the edge of C and the last partial k-slice use checked loads (zero outside) and checked
// stores. The inner loop has no checks at all.
//
// Workgroup memory: la 16 × 33 vec4 (8448 B) + lb 16 × 17 vec4 (4352 B) = 12800 B.

const LTM: u32 = 128u; // tile rows
const LTN: u32 = 64u;  // tile columns
const LTK: u32 = 16u;  // k-slice
const LA_PITCH: u32 = 33u; // vec4 per k-row of la: 32 (128 rows) + 1 pad
const LB_PITCH: u32 = 17u; // vec4 per k-row of lb: 16 (64 columns) + 1 pad

var<workgroup> la: array<vec4<f32>, 528>; // [LTK][LA_PITCH]: la[kk * 33 + r / 4][r % 4] = op(A)[row0 + r, k0 + kk]
var<workgroup> lb: array<vec4<f32>, 272>; // [LTK][LB_PITCH]: lb[kk * 17 + c / 4][c % 4] = op(B)[k0 + kk, col0 + c]

// The vec4 view of the operands (gemm_large_v4 only; same bindings, element type vec4).
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> mask4: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> c4: array<vec4<f32>>;

// Quad `e` (0..512) of op(A)'s slice at k0, as (row offset in the tile, k offset in the slice) of
// its first element: 4 rows per k when A is stored K×M, else 4 k per row.
fn la_quad_pos(e: u32) -> vec2<u32> {
    if (TRANS_A) {
        return vec2<u32>((e % 32u) * 4u, e / 32u);
    }
    return vec2<u32>(e / 4u, (e % 4u) * 4u);
}

// Quad `e` (0..256) of op(B)'s slice, as (k offset, column offset) of its first element.
fn lb_quad_pos(e: u32) -> vec2<u32> {
    if (TRANS_B) {
        return vec2<u32>((e % 4u) * 4u, e / 4u);
    }
    return vec2<u32>(e / 16u, (e % 16u) * 4u);
}

// Storage index of op(A)[row, kk] and op(B)[kk, col].
fn a_index(row: u32, kk: u32) -> u32 {
    if (TRANS_A) {
        return kk * p.m + row;
    }
    return row * p.k + kk;
}

fn b_index(kk: u32, col: u32) -> u32 {
    if (TRANS_B) {
        return col * p.k + kk;
    }
    return kk * p.n + col;
}

fn a_at(idx: u32) -> f32 {
    var v = a[idx];
    if (MASK_A) {
        v = select(0.0, v, mask[idx] != 0u);
    }
    return v;
}

// Quad `e` of op(A)'s slice at k0 from the scalar binding. `checked`: zero outside M × K.
fn la_load(e: u32, row0: u32, k0: u32, checked: bool) -> vec4<f32> {
    let pos = la_quad_pos(e);
    let row = row0 + pos.x;
    let kk = k0 + pos.y;
    let base = a_index(row, kk);
    var v = vec4<f32>(0.0);
    if (!checked) {
        // The quad's 4 elements are consecutive in storage.
        v = vec4<f32>(a_at(base), a_at(base + 1u), a_at(base + 2u), a_at(base + 3u));
    } else {
        for (var q = 0u; q < 4u; q++) {
            var ok: bool;
            if (TRANS_A) { ok = kk < p.k && row + q < p.m; } else { ok = row < p.m && kk + q < p.k; }
            if (ok) {
                v[q] = a_at(base + q);
            }
        }
    }
    return v;
}

// Quad `e` of op(B)'s slice at k0 from the scalar binding. `checked`: zero outside K × N.
fn lb_load(e: u32, col0: u32, k0: u32, checked: bool) -> vec4<f32> {
    let pos = lb_quad_pos(e);
    let kk = k0 + pos.x;
    let col = col0 + pos.y;
    let base = b_index(kk, col);
    var v = vec4<f32>(0.0);
    if (!checked) {
        v = vec4<f32>(b[base], b[base + 1u], b[base + 2u], b[base + 3u]);
    } else {
        for (var q = 0u; q < 4u; q++) {
            var ok: bool;
            if (TRANS_B) { ok = col < p.n && kk + q < p.k; } else { ok = kk < p.k && col + q < p.n; }
            if (ok) {
                v[q] = b[base + q];
            }
        }
    }
    return v;
}

// The same quads from the vec4 bindings. The launcher selects gemm_large_v4 only when the
// contiguous dimension of every operand is a multiple of 4, so a quad is either wholly inside the
// matrix or wholly outside, and `base` is a multiple of 4.
fn la_load4(e: u32, row0: u32, k0: u32, checked: bool) -> vec4<f32> {
    let pos = la_quad_pos(e);
    let row = row0 + pos.x;
    let kk = k0 + pos.y;
    if (checked && (row >= p.m || kk >= p.k)) {
        return vec4<f32>(0.0);
    }
    let q = a_index(row, kk) / 4u;
    var v = a4[q];
    if (MASK_A) {
        v = select(vec4<f32>(0.0), v, mask4[q] != vec4<u32>(0u));
    }
    return v;
}

fn lb_load4(e: u32, col0: u32, k0: u32, checked: bool) -> vec4<f32> {
    let pos = lb_quad_pos(e);
    let kk = k0 + pos.x;
    let col = col0 + pos.y;
    if (checked && (kk >= p.k || col >= p.n)) {
        return vec4<f32>(0.0);
    }
    return b4[b_index(kk, col) / 4u];
}

// Stores quad `e` of op(A)'s slice into la (scattered over 4 k-rows when the quad runs along k).
fn la_store(e: u32, v: vec4<f32>) {
    let pos = la_quad_pos(e);
    if (TRANS_A) {
        la[pos.y * LA_PITCH + pos.x / 4u] = v;
    } else {
        for (var q = 0u; q < 4u; q++) {
            la[(pos.y + q) * LA_PITCH + pos.x / 4u][pos.x % 4u] = v[q];
        }
    }
}

fn lb_store(e: u32, v: vec4<f32>) {
    let pos = lb_quad_pos(e);
    if (TRANS_B) {
        for (var q = 0u; q < 4u; q++) {
            lb[(pos.x + q) * LB_PITCH + pos.y / 4u][pos.y % 4u] = v[q];
        }
    } else {
        lb[pos.x * LB_PITCH + pos.y / 4u] = v;
    }
}

// Epilogue of one row segment C[row, col0 .. col0+4] without bounds checks (interior tiles).
fn large_store(row: u32, col0: u32, acc: vec4<f32>) {
    let base = row * p.n + col0;
    for (var j = 0u; j < 4u; j++) {
        let idx = base + j;
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

// The same through the vec4 binding (N is a multiple of 4, so is col0); `checked` skips segments
// outside C.
fn large_store4(row: u32, col0: u32, acc: vec4<f32>, checked: bool) {
    if (checked && (row >= p.m || col0 >= p.n)) {
        return;
    }
    let q = (row * p.n + col0) / 4u;
    var v = acc;
    if ((p.flags & FLAG_BIAS) != 0u) {
        v += vec4<f32>(bias[row]);
    }
    if ((p.flags & FLAG_RELU) != 0u) {
        v = max(v, vec4<f32>(0.0));
    }
    if (MASK_C) {
        v = select(vec4<f32>(0.0), v, mask4[q] != vec4<u32>(0u));
    }
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        v += c4[q];
    }
    c4[q] = v;
}

@compute @workgroup_size(16, 16)
fn gemm_large(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row0 = wg.y * LTM;
    let col0 = wg.x * LTN;
    let t = lid.y * 16u + lid.x;
    let interior = row0 + LTM <= p.m && col0 + LTN <= p.n;
    let slices = (p.k + LTK - 1u) / LTK;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    // Registers holding the next slice: two quads of op(A), one of op(B).
    var pa0 = vec4<f32>(0.0);
    var pa1 = vec4<f32>(0.0);
    var pb = vec4<f32>(0.0);
    if (slices > 0u) {
        let checked = !interior || LTK > p.k;
        pa0 = la_load(t, row0, 0u, checked);
        pa1 = la_load(t + 256u, row0, 0u, checked);
        pb = lb_load(t, col0, 0u, checked);
    }
    for (var s = 0u; s < slices; s++) {
        la_store(t, pa0);
        la_store(t + 256u, pa1);
        lb_store(t, pb);
        workgroupBarrier();
        if (s + 1u < slices) {
            let k0 = (s + 1u) * LTK;
            let checked = !interior || k0 + LTK > p.k;
            pa0 = la_load(t, row0, k0, checked);
            pa1 = la_load(t + 256u, row0, k0, checked);
            pb = lb_load(t, col0, k0, checked);
        }
        for (var kk = 0u; kk < LTK; kk++) {
            let lo = la[kk * LA_PITCH + lid.y * 2u];
            let hi = la[kk * LA_PITCH + lid.y * 2u + 1u];
            let bv = lb[kk * LB_PITCH + lid.x];
            acc0 += lo.x * bv;
            acc1 += lo.y * bv;
            acc2 += lo.z * bv;
            acc3 += lo.w * bv;
            acc4 += hi.x * bv;
            acc5 += hi.y * bv;
            acc6 += hi.z * bv;
            acc7 += hi.w * bv;
        }
        workgroupBarrier();
    }
    let r = row0 + lid.y * 8u;
    let cc = col0 + lid.x * 4u;
    if (interior) {
        large_store(r, cc, acc0);
        large_store(r + 1u, cc, acc1);
        large_store(r + 2u, cc, acc2);
        large_store(r + 3u, cc, acc3);
        large_store(r + 4u, cc, acc4);
        large_store(r + 5u, cc, acc5);
        large_store(r + 6u, cc, acc6);
        large_store(r + 7u, cc, acc7);
    } else if (cc < p.n) {
        store_row(r, cc, acc0);
        store_row(r + 1u, cc, acc1);
        store_row(r + 2u, cc, acc2);
        store_row(r + 3u, cc, acc3);
        store_row(r + 4u, cc, acc4);
        store_row(r + 5u, cc, acc5);
        store_row(r + 6u, cc, acc6);
        store_row(r + 7u, cc, acc7);
    }
}

@compute @workgroup_size(16, 16)
fn gemm_large_v4(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let row0 = wg.y * LTM;
    let col0 = wg.x * LTN;
    let t = lid.y * 16u + lid.x;
    let interior = row0 + LTM <= p.m && col0 + LTN <= p.n;
    let slices = (p.k + LTK - 1u) / LTK;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var pa0 = vec4<f32>(0.0);
    var pa1 = vec4<f32>(0.0);
    var pb = vec4<f32>(0.0);
    if (slices > 0u) {
        let checked = !interior || LTK > p.k;
        pa0 = la_load4(t, row0, 0u, checked);
        pa1 = la_load4(t + 256u, row0, 0u, checked);
        pb = lb_load4(t, col0, 0u, checked);
    }
    for (var s = 0u; s < slices; s++) {
        la_store(t, pa0);
        la_store(t + 256u, pa1);
        lb_store(t, pb);
        workgroupBarrier();
        if (s + 1u < slices) {
            let k0 = (s + 1u) * LTK;
            let checked = !interior || k0 + LTK > p.k;
            pa0 = la_load4(t, row0, k0, checked);
            pa1 = la_load4(t + 256u, row0, k0, checked);
            pb = lb_load4(t, col0, k0, checked);
        }
        for (var kk = 0u; kk < LTK; kk++) {
            let lo = la[kk * LA_PITCH + lid.y * 2u];
            let hi = la[kk * LA_PITCH + lid.y * 2u + 1u];
            let bv = lb[kk * LB_PITCH + lid.x];
            acc0 += lo.x * bv;
            acc1 += lo.y * bv;
            acc2 += lo.z * bv;
            acc3 += lo.w * bv;
            acc4 += hi.x * bv;
            acc5 += hi.y * bv;
            acc6 += hi.z * bv;
            acc7 += hi.w * bv;
        }
        workgroupBarrier();
    }
    let r = row0 + lid.y * 8u;
    let cc = col0 + lid.x * 4u;
    let checked = !interior;
    large_store4(r, cc, acc0, checked);
    large_store4(r + 1u, cc, acc1, checked);
    large_store4(r + 2u, cc, acc2, checked);
    large_store4(r + 3u, cc, acc3, checked);
    large_store4(r + 4u, cc, acc4, checked);
    large_store4(r + 5u, cc, acc5, checked);
    large_store4(r + 6u, cc, acc6, checked);
    large_store4(r + 7u, cc, acc7, checked);
}
