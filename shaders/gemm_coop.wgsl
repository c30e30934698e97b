// Dense GEMM on tensor cores (cooperative matrices): C[M×N] = op(A)[M×K] · op(B)[K×N], then the
// epilogue of `gemm.wgsl` — same bindings, Params, override constants (TRANS_A, TRANS_B, MASK_A,
// MASK_C), flags (bias, ReLU, accumulate) and storage conventions, so the launcher can swap it in.
//
// Native only, behind `Precision::F16TensorCores`: it needs the adapter features SHADER_F16,
// SUBGROUP and EXPERIMENTAL_COOPERATIVE_MATRIX and is selected away on DX12 (naga 30's HLSL writer
// cannot emit cooperative stores). The operands are converted from f32 to f16 while they are staged
// in workgroup memory (values beyond ±65504 become ±inf, and every operand is rounded to 11
// significant bits): results differ from the f32 kernels by about 1e-3 relative per product.
//
// Entry points, one per cooperative-matrix configuration the adapter may offer (S = 16 or 8):
//   gemm_coop16   — 16×16×16, f16 × f16 → f32: the accumulators are f32 cooperative matrices;
//   gemm_coop16_h — 16×16×16, f16 × f16 → f16 only: each 16-wide k-slice is multiplied in f16 from
//                   zero, and the slice products are summed into f32 accumulators in registers;
//   gemm_coop8, gemm_coop8_h — the same with 8×8×8 matrices (Apple GPUs through Metal).
//
// Layout (S = 16; S = 8 halves every size): a workgroup computes a 4S × 4S tile of C (64×64). It
// has WG = 4 × (the adapter's largest subgroup size) invocations, so at least four subgroups; each
// of the first four owns a 2S × 2S quadrant (32×32: 2×2 cooperative tiles). Should a workgroup have
// more than four subgroups (a driver running smaller subgroups than its largest), the others repeat
// a quadrant's products (cooperative operations must stay in uniform control flow) and store
// nothing; should it have fewer than four (which the launcher's choice of WG rules out), it writes
// NaN rather than a silently wrong result.
//
// Per k-slice the whole workgroup stages op(A)[4S × KS] and op(B)[KS × 4S] as f16, row-major, in
// workgroup memory (zero outside M, N, K: edge tiles and the last partial slice need nothing else),
// with rows padded by 8 halves (every cooperative load starts 16-byte aligned, with a 16-byte
// multiple stride). The mixed kernels use KS = 2S and keep four f32 cooperative accumulators per
// subgroup; at the end, full tiles without an epilogue are stored straight into C, other tiles go
// through a 4 × S×S f32 staging area and the scalar epilogue, one cooperative tile per round. The
// f16-only kernels use KS = S and store the four f16 products of every slice into workgroup
// memory, from where every invocation adds its (4S)² / WG elements into f32 registers.
//
// Workgroup memory (S = 16): mixed 5120 + 4608 + 4096 = 13824 B; f16-only 3072 + 2304 + 8192 +
// 512 = 14080 B. The launcher creates this module without runtime bounds checks (see `gpu.rs`):
// every cooperative load and store addresses whole tiles inside the fixed-size workgroup arrays or,
// for the direct store, a full tile inside C.

enable f16;
enable wgpu_cooperative_matrix;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override MASK_A: bool = false;
override MASK_C: bool = false;
// Invocations per workgroup: 4 × the adapter's largest subgroup size, 128 or 256.
override WG: u32 = 128u;

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

// op(A)[row, kk] as f16, zero outside M × K.
fn op_a(row: u32, kk: u32) -> f16 {
    if (row >= p.m || kk >= p.k) {
        return f16(0.0);
    }
    var idx: u32;
    if (TRANS_A) { idx = kk * p.m + row; } else { idx = row * p.k + kk; }
    var v = a[idx];
    if (MASK_A) {
        v = select(0.0, v, mask[idx] != 0u);
    }
    return f16(v);
}

// op(B)[kk, col] as f16, zero outside K × N.
fn op_b(kk: u32, col: u32) -> f16 {
    if (kk >= p.k || col >= p.n) {
        return f16(0.0);
    }
    if (TRANS_B) {
        return f16(b[col * p.k + kk]);
    }
    return f16(b[kk * p.n + col]);
}

// Element e of a rows × cols slice of op(A) as (row, k), in the order of A's storage so that
// neighbouring invocations read neighbouring addresses.
fn slice_a_pos(e: u32, rows: u32, cols: u32) -> vec2<u32> {
    if (TRANS_A) {
        return vec2<u32>(e % rows, e / rows);
    }
    return vec2<u32>(e / cols, e % cols);
}

// Element e of a rows × cols slice of op(B) as (k, column), in B's storage order.
fn slice_b_pos(e: u32, rows: u32, cols: u32) -> vec2<u32> {
    if (TRANS_B) {
        return vec2<u32>(e % rows, e / rows);
    }
    return vec2<u32>(e / cols, e % cols);
}

// Position in the 4S × 4S tile of element w (row-major) of cooperative tile t (2×2, row-major) of
// quadrant q (2×2, row-major).
fn tile_pos(q: u32, t: u32, w: u32, s: u32) -> vec2<u32> {
    return vec2<u32>(
        (q / 2u) * 2u * s + (t / 2u) * s + w / s,
        (q % 2u) * 2u * s + (t % 2u) * s + w % s,
    );
}

// A quiet NaN (computed, so that no constant expression holds a NaN).
fn nan_f32() -> f32 {
    return bitcast<f32>(0x7fc00000u | (p.flags & 0u));
}

// Epilogue of one element (bounds-checked): + bias, ReLU, × mask, + old C.
fn finish(row: u32, col: u32, acc: f32, broken: bool) {
    if (row >= p.m || col >= p.n) {
        return;
    }
    let idx = row * p.n + col;
    var v = acc;
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
    if (broken) {
        v = nan_f32();
    }
    c[idx] = v;
}

// ---- S = 16 ----------------------------------------------------------------------------------------

// Mixed kernel: tile 4S, k-slice 2S; row pitches 2S + 8 (A) and 4S + 8 (B).
var<workgroup> ma16: array<f16, 2560>; // [4S][2S + 8]: op(A) slice
var<workgroup> mb16: array<f16, 2304>; // [2S][4S + 8]: op(B) slice
var<workgroup> mc16: array<f32, 1024>; // [4][S·S]: zeros, then one cooperative tile per quadrant

@compute @workgroup_size(WG)
fn gemm_coop16(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sid: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    let s = 16u;
    let tile = 4u * s;
    let ks = 2u * s;
    let pa = ks + 8u;
    let pb = tile + 8u;
    let row0 = wg.y * tile;
    let col0 = wg.x * tile;
    // This subgroup's quadrant (subgroups past the fourth repeat one; see the header).
    let q = sid % 4u;
    let qr = (q / 2u) * 2u * s;
    let qc = (q % 2u) * 2u * s;
    for (var e = lid; e < 4u * s * s; e += WG) {
        mc16[e] = 0.0;
    }
    workgroupBarrier();
    var acc00 = coopLoadT<coop_mat16x16<f32, C>>(&mc16[0], s);
    var acc01 = acc00;
    var acc10 = acc00;
    var acc11 = acc00;
    // mc is overwritten by the epilogue (right away when k = 0): every subgroup has its zeros first.
    workgroupBarrier();
    for (var k0 = 0u; k0 < p.k; k0 += ks) {
        for (var e = lid; e < tile * ks; e += WG) {
            let ea = slice_a_pos(e, tile, ks);
            ma16[ea.x * pa + ea.y] = op_a(row0 + ea.x, k0 + ea.y);
            let eb = slice_b_pos(e, ks, tile);
            mb16[eb.x * pb + eb.y] = op_b(k0 + eb.x, col0 + eb.y);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < ks; kk += s) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&ma16[qr * pa + kk], pa);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&ma16[(qr + s) * pa + kk], pa);
            let b0 = coopLoadT<coop_mat16x16<f16, B>>(&mb16[kk * pb + qc], pb);
            let b1 = coopLoadT<coop_mat16x16<f16, B>>(&mb16[kk * pb + qc + s], pb);
            acc00 = coopMultiplyAdd(a0, b0, acc00);
            acc01 = coopMultiplyAdd(a0, b1, acc01);
            acc10 = coopMultiplyAdd(a1, b0, acc10);
            acc11 = coopMultiplyAdd(a1, b1, acc11);
        }
        workgroupBarrier();
    }
    let owner = sid < 4u;
    let broken = nsg < 4u;
    let direct = !broken && p.flags == 0u && !MASK_C && row0 + tile <= p.m && col0 + tile <= p.n
        && (p.n % 4u) == 0u;
    if (direct) {
        // A full tile without epilogue: straight into C (16-byte aligned rows: N % 4 == 0).
        // (Every argument of coopStoreT is bound with `let` first: naga 30 does not emit the
        // expressions of a coopStoreT call itself.)
        if (owner) {
            let stride = p.n;
            let base = (row0 + qr) * stride + col0 + qc;
            let t00 = acc00;
            let t01 = acc01;
            let t10 = acc10;
            let t11 = acc11;
            let d00 = &c[base];
            let d01 = &c[base + s];
            let d10 = &c[base + s * stride];
            let d11 = &c[base + s * stride + s];
            coopStoreT(t00, d00, stride);
            coopStoreT(t01, d01, stride);
            coopStoreT(t10, d10, stride);
            coopStoreT(t11, d11, stride);
        }
    } else {
        // Four rounds: each owner puts cooperative tile t of its quadrant into its slot of mc,
        // then all invocations finish the 4 · S·S elements.
        for (var t = 0u; t < 4u; t++) {
            if (owner) {
                var m = acc00;
                if (t == 1u) { m = acc01; }
                if (t == 2u) { m = acc10; }
                if (t == 3u) { m = acc11; }
                let value = m;
                let dst = &mc16[sid * s * s];
                coopStoreT(value, dst, s);
            }
            workgroupBarrier();
            for (var e = lid; e < 4u * s * s; e += WG) {
                let pos = tile_pos(e / (s * s), t, e % (s * s), s);
                finish(row0 + pos.x, col0 + pos.y, mc16[e], broken);
            }
            workgroupBarrier();
        }
    }
}

// f16-only kernel: tile 4S, k-slice S; row pitches S + 8 (A) and 4S + 8 (B).
var<workgroup> ha16: array<f16, 1536>; // [4S][S + 8]: op(A) slice
var<workgroup> hb16: array<f16, 1152>; // [S][4S + 8]: op(B) slice
var<workgroup> hp16: array<f16, 4096>; // [4 quadrants][4 tiles][S·S]: the slice's f16 products
var<workgroup> hz16: array<f16, 256>; // S·S zeros

@compute @workgroup_size(WG)
fn gemm_coop16_h(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sid: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    let s = 16u;
    let tile = 4u * s;
    let pa = s + 8u;
    let pb = tile + 8u;
    let row0 = wg.y * tile;
    let col0 = wg.x * tile;
    let q = sid % 4u;
    let qr = (q / 2u) * 2u * s;
    let qc = (q % 2u) * 2u * s;
    // This invocation's elements of the tile: e = lid + j·WG for j < (4S)² / WG (WG ≥ 128).
    let per = tile * tile / WG;
    var acc: array<f32, 32>;
    for (var e = lid; e < s * s; e += WG) {
        hz16[e] = f16(0.0);
    }
    workgroupBarrier();
    let zero = coopLoadT<coop_mat16x16<f16, C>>(&hz16[0], s);
    let slot = sid * 4u * s * s;
    for (var k0 = 0u; k0 < p.k; k0 += s) {
        for (var e = lid; e < tile * s; e += WG) {
            let ea = slice_a_pos(e, tile, s);
            ha16[ea.x * pa + ea.y] = op_a(row0 + ea.x, k0 + ea.y);
            let eb = slice_b_pos(e, s, tile);
            hb16[eb.x * pb + eb.y] = op_b(k0 + eb.x, col0 + eb.y);
        }
        workgroupBarrier();
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&ha16[qr * pa], pa);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&ha16[(qr + s) * pa], pa);
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&hb16[qc], pb);
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&hb16[qc + s], pb);
        let p00 = coopMultiplyAdd(a0, b0, zero);
        let p01 = coopMultiplyAdd(a0, b1, zero);
        let p10 = coopMultiplyAdd(a1, b0, zero);
        let p11 = coopMultiplyAdd(a1, b1, zero);
        if (sid < 4u) {
            let d00 = &hp16[slot];
            let d01 = &hp16[slot + s * s];
            let d10 = &hp16[slot + 2u * s * s];
            let d11 = &hp16[slot + 3u * s * s];
            coopStoreT(p00, d00, s);
            coopStoreT(p01, d01, s);
            coopStoreT(p10, d10, s);
            coopStoreT(p11, d11, s);
        }
        workgroupBarrier();
        // Slices in increasing k, each one added to one f32 accumulator per element.
        for (var j = 0u; j < per; j++) {
            acc[j] += f32(hp16[lid + j * WG]);
        }
    }
    let broken = nsg < 4u;
    for (var j = 0u; j < per; j++) {
        let e = lid + j * WG;
        let pos = tile_pos(e / (4u * s * s), (e / (s * s)) % 4u, e % (s * s), s);
        finish(row0 + pos.x, col0 + pos.y, acc[j], broken);
    }
}

// ---- S = 8 ----------------------------------------------------------------------------------------

// Mixed kernel: tile 4S, k-slice 2S; row pitches 2S + 8 (A) and 4S + 8 (B).
var<workgroup> ma8: array<f16, 768>; // [4S][2S + 8]: op(A) slice
var<workgroup> mb8: array<f16, 640>; // [2S][4S + 8]: op(B) slice
var<workgroup> mc8: array<f32, 256>; // [4][S·S]: zeros, then one cooperative tile per quadrant

@compute @workgroup_size(WG)
fn gemm_coop8(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sid: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    let s = 8u;
    let tile = 4u * s;
    let ks = 2u * s;
    let pa = ks + 8u;
    let pb = tile + 8u;
    let row0 = wg.y * tile;
    let col0 = wg.x * tile;
    // This subgroup's quadrant (subgroups past the fourth repeat one; see the header).
    let q = sid % 4u;
    let qr = (q / 2u) * 2u * s;
    let qc = (q % 2u) * 2u * s;
    for (var e = lid; e < 4u * s * s; e += WG) {
        mc8[e] = 0.0;
    }
    workgroupBarrier();
    var acc00 = coopLoadT<coop_mat8x8<f32, C>>(&mc8[0], s);
    var acc01 = acc00;
    var acc10 = acc00;
    var acc11 = acc00;
    // mc is overwritten by the epilogue (right away when k = 0): every subgroup has its zeros first.
    workgroupBarrier();
    for (var k0 = 0u; k0 < p.k; k0 += ks) {
        for (var e = lid; e < tile * ks; e += WG) {
            let ea = slice_a_pos(e, tile, ks);
            ma8[ea.x * pa + ea.y] = op_a(row0 + ea.x, k0 + ea.y);
            let eb = slice_b_pos(e, ks, tile);
            mb8[eb.x * pb + eb.y] = op_b(k0 + eb.x, col0 + eb.y);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < ks; kk += s) {
            let a0 = coopLoadT<coop_mat8x8<f16, A>>(&ma8[qr * pa + kk], pa);
            let a1 = coopLoadT<coop_mat8x8<f16, A>>(&ma8[(qr + s) * pa + kk], pa);
            let b0 = coopLoadT<coop_mat8x8<f16, B>>(&mb8[kk * pb + qc], pb);
            let b1 = coopLoadT<coop_mat8x8<f16, B>>(&mb8[kk * pb + qc + s], pb);
            acc00 = coopMultiplyAdd(a0, b0, acc00);
            acc01 = coopMultiplyAdd(a0, b1, acc01);
            acc10 = coopMultiplyAdd(a1, b0, acc10);
            acc11 = coopMultiplyAdd(a1, b1, acc11);
        }
        workgroupBarrier();
    }
    let owner = sid < 4u;
    let broken = nsg < 4u;
    let direct = !broken && p.flags == 0u && !MASK_C && row0 + tile <= p.m && col0 + tile <= p.n
        && (p.n % 4u) == 0u;
    if (direct) {
        // A full tile without epilogue: straight into C (16-byte aligned rows: N % 4 == 0).
        // (Every argument of coopStoreT is bound with `let` first: naga 30 does not emit the
        // expressions of a coopStoreT call itself.)
        if (owner) {
            let stride = p.n;
            let base = (row0 + qr) * stride + col0 + qc;
            let t00 = acc00;
            let t01 = acc01;
            let t10 = acc10;
            let t11 = acc11;
            let d00 = &c[base];
            let d01 = &c[base + s];
            let d10 = &c[base + s * stride];
            let d11 = &c[base + s * stride + s];
            coopStoreT(t00, d00, stride);
            coopStoreT(t01, d01, stride);
            coopStoreT(t10, d10, stride);
            coopStoreT(t11, d11, stride);
        }
    } else {
        // Four rounds: each owner puts cooperative tile t of its quadrant into its slot of mc,
        // then all invocations finish the 4 · S·S elements.
        for (var t = 0u; t < 4u; t++) {
            if (owner) {
                var m = acc00;
                if (t == 1u) { m = acc01; }
                if (t == 2u) { m = acc10; }
                if (t == 3u) { m = acc11; }
                let value = m;
                let dst = &mc8[sid * s * s];
                coopStoreT(value, dst, s);
            }
            workgroupBarrier();
            for (var e = lid; e < 4u * s * s; e += WG) {
                let pos = tile_pos(e / (s * s), t, e % (s * s), s);
                finish(row0 + pos.x, col0 + pos.y, mc8[e], broken);
            }
            workgroupBarrier();
        }
    }
}

// f16-only kernel: tile 4S, k-slice S; row pitches S + 8 (A) and 4S + 8 (B).
var<workgroup> ha8: array<f16, 512>; // [4S][S + 8]: op(A) slice
var<workgroup> hb8: array<f16, 320>; // [S][4S + 8]: op(B) slice
var<workgroup> hp8: array<f16, 1024>; // [4 quadrants][4 tiles][S·S]: the slice's f16 products
var<workgroup> hz8: array<f16, 64>; // S·S zeros

@compute @workgroup_size(WG)
fn gemm_coop8_h(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sid: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    let s = 8u;
    let tile = 4u * s;
    let pa = s + 8u;
    let pb = tile + 8u;
    let row0 = wg.y * tile;
    let col0 = wg.x * tile;
    let q = sid % 4u;
    let qr = (q / 2u) * 2u * s;
    let qc = (q % 2u) * 2u * s;
    // This invocation's elements of the tile: e = lid + j·WG for j < (4S)² / WG (WG ≥ 128).
    let per = tile * tile / WG;
    var acc: array<f32, 8>;
    for (var e = lid; e < s * s; e += WG) {
        hz8[e] = f16(0.0);
    }
    workgroupBarrier();
    let zero = coopLoadT<coop_mat8x8<f16, C>>(&hz8[0], s);
    let slot = sid * 4u * s * s;
    for (var k0 = 0u; k0 < p.k; k0 += s) {
        for (var e = lid; e < tile * s; e += WG) {
            let ea = slice_a_pos(e, tile, s);
            ha8[ea.x * pa + ea.y] = op_a(row0 + ea.x, k0 + ea.y);
            let eb = slice_b_pos(e, s, tile);
            hb8[eb.x * pb + eb.y] = op_b(k0 + eb.x, col0 + eb.y);
        }
        workgroupBarrier();
        let a0 = coopLoadT<coop_mat8x8<f16, A>>(&ha8[qr * pa], pa);
        let a1 = coopLoadT<coop_mat8x8<f16, A>>(&ha8[(qr + s) * pa], pa);
        let b0 = coopLoadT<coop_mat8x8<f16, B>>(&hb8[qc], pb);
        let b1 = coopLoadT<coop_mat8x8<f16, B>>(&hb8[qc + s], pb);
        let p00 = coopMultiplyAdd(a0, b0, zero);
        let p01 = coopMultiplyAdd(a0, b1, zero);
        let p10 = coopMultiplyAdd(a1, b0, zero);
        let p11 = coopMultiplyAdd(a1, b1, zero);
        if (sid < 4u) {
            let d00 = &hp8[slot];
            let d01 = &hp8[slot + s * s];
            let d10 = &hp8[slot + 2u * s * s];
            let d11 = &hp8[slot + 3u * s * s];
            coopStoreT(p00, d00, s);
            coopStoreT(p01, d01, s);
            coopStoreT(p10, d10, s);
            coopStoreT(p11, d11, s);
        }
        workgroupBarrier();
        // Slices in increasing k, each one added to one f32 accumulator per element.
        for (var j = 0u; j < per; j++) {
            acc[j] += f32(hp8[lid + j * WG]);
        }
    }
    let broken = nsg < 4u;
    for (var j = 0u; j < per; j++) {
        let e = lid + j * WG;
        let pos = tile_pos(e / (4u * s * s), (e / (s * s)) % 4u, e % (s * s), s);
        finish(row0 + pos.x, col0 + pos.y, acc[j], broken);
    }
}
