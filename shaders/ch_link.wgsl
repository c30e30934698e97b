// Cannistraci-Hebb link prediction from the CSR + CSC pattern of a layer, written as a dense
// `rows × cols` score matrix (existing links 0). Node-based CH3-L3n, CH2-L3n, CH3.1-L3n (spec §1.2)
// and exact path-based CH3-L3p, CH2-L3p, RA-L3 (spec §1.1).
//
// Node-based:
//
//   S[a, j] = Σ_{b asc: b ≠ a, CN(a,b) > 0, M[b,j]}  w(CN(a,b), deg b)       (output-side LC nodes)
//           + Σ_{k asc: k ≠ j, CN(j,k) > 0, M[a,k]}  w(CN(j,k), deg k)       (input-side LC nodes)
//
// Rows are processed in chunks of `chunk` seeds with scratch of `chunk × rows` (then columns with
// `chunk × cols`), so memory stays bounded for any layer:
//   l3n_count   one invocation per link of the chunk's seeds: CN counts by integer atomics
//   l3n_weights one invocation per (seed, node): the node weight w, or 0 outside the community
//   l3n_rows    one invocation per (a, j): gather down column j (CSC rows ascending) → S[a, j]
//   l3n_cols    one invocation per (j, a): gather along row a (CSR columns ascending), add to
//               S[a, j], and zero S[a, j] when (a, j) is a link.
// Every sum runs in the same order as the CPU twin (`cht_sparse::predict`), and the node weights
// (l3n_weights, lp_weights) are the twin's bits on any adapter: they divide with `div_rn`, an
// integer long division that is correctly rounded (WGSL only promises 2.5 ULP for `/`), and CH3.1
// reads its `pow` from a table made on the host (`cht_sparse::predict::ch31_denominators`). So
// node-based scores agree to the bit.
//
// Node-based through dense products (spec §1.2 steps 1–6; `L3nPath::Products`), the float
// products done by the GEMM (`Device::gemm`) between these kernels:
//   lp_pack     one invocation per link: the pattern's rows and columns as bit lists (atomicOr
//               into cleared words, 32 bits per word)
//   lp_count    one invocation per pair (x, y) of one side: CN(x, y) = Σ popcount(x & y), as an
//               f32 (an exact integer: counts stay below 2^24)
//   lp_weights  one invocation per pair, in place: the node weight w(CN, deg node), 0 on the
//               diagonal and where CN = 0; the node is x (node-major W[node][seed]) or y
//               (seed-major Q[seed][node])
//   lp_dense    one invocation per (a, j): D[a, j] = M[a, j] as 0.0 / 1.0
//   GEMM        S_out = Q_DT · D (into the scores), S_in = D · W_in (scratch)
//   lp_combine  one invocation per (a, j): S = S_out + S_in, existing links 0.
// Each GEMM sums over k in increasing order with one accumulator from 0 and the 0/1 factor makes
// every product exact, so S_out and S_in are the walk's two sums term for term and S its bits.
//
// Path-based: with f(x; seed) the per-interior-node factor (e.g. 1/√(1+e) for CH3),
//   S[a, j] = Σ_{b asc ∈ N(j), b ≠ a}  f(b; a) · Σ_{k asc ∈ N(a) ∩ N(b)} f(k; j)
// i.e. every L3 path a – k – b – j once. Chunks of seed columns j get f(k; j) from l3n_count and
// l3n_weights; `l3p_cols` (one invocation per (j, a)) merges the sorted rows a and b, which yields
// CN(a, b) and the inner sum at once. Products make the order differ from the CPU's loop, so
// path-based scores agree to rounding (not to the bit).

struct Params {
    rows: u32,       // seeds' side size for this phase (rows of S, or cols of S for the column
                     // phase); lp_*: rows of the pattern
    others: u32,     // the other side's size; lp_*: columns of the pattern
    start: u32,      // first seed of the chunk
    chunk: u32,      // seeds in the chunk
    variant: u32,    // node-based 0 CH3, 1 CH2, 2 CH3.1; path-based factors 3 CH3, 4 CH2, 5 RA
    words_r: u32,    // lp_*: words per row bit list, ceil(cols / 32)
    words_c: u32,    // lp_*: words per column bit list, ceil(rows / 32)
    n: u32,          // lp_count, lp_weights: lists of the side
    words: u32,      // lp_count: words per list of the side
    seed_major: u32, // lp_weights: 1 when the node is the column index
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// l3n_count: the seeds' compressed lists (ptr, idx), the other side's (optr, oidx), counts
@group(0) @binding(1) var<storage, read> c_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> c_idx: array<u32>;
@group(0) @binding(3) var<storage, read> c_optr: array<u32>;
@group(0) @binding(4) var<storage, read> c_oidx: array<u32>;
@group(0) @binding(5) var<storage, read_write> c_counts: array<atomic<u32>>;

// l3n_weights: seeds' ptr (degrees of the same side), counts, weights, CH3.1 denominators
@group(0) @binding(1) var<storage, read> w_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> w_counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> w_out: array<f32>;
@group(0) @binding(4) var<storage, read> w_ch31: array<f32>;

// l3n_rows / l3n_cols: the gather side's ptr/idx, weights, scores
@group(0) @binding(1) var<storage, read> g_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> g_idx: array<u32>;
@group(0) @binding(3) var<storage, read> g_weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// External degree deg − i − 1, clamped at 0.
fn ext_degree(i: u32, deg: u32) -> u32 {
    return select(0u, deg - i - 1u, deg > i + 1u);
}

// a / b rounded to nearest even, for positive normal a and b whose quotient is normal: the
// mantissas divided as integers (24 quotient bits, then the remainder decides the rounding).
fn div_rn(a: f32, b: f32) -> f32 {
    let ba = bitcast<u32>(a);
    let bb = bitcast<u32>(b);
    let ma = (ba & 0x7fffffu) | 0x800000u;
    let mb = (bb & 0x7fffffu) | 0x800000u;
    var e = i32(ba >> 23u) - i32(bb >> 23u) + 127;
    var q = 0u;
    var r = ma;
    var bits = 23u;
    if (ma >= mb) {
        q = 1u;
        r = ma - mb;
    } else {
        bits = 24u;
        e = e - 1;
    }
    for (var k = 0u; k < bits; k++) {
        r = r << 1u;
        q = q << 1u;
        if (r >= mb) {
            r = r - mb;
            q = q | 1u;
        }
    }
    let twice = r << 1u;
    if (twice > mb || (twice == mb && (q & 1u) == 1u)) {
        q = q + 1u;
        if (q == 0x1000000u) {
            q = 0x800000u;
            e = e + 1;
        }
    }
    return bitcast<f32>((u32(e) << 23u) | (q & 0x7fffffu));
}

// Node-based weight (variants 0–2) for i ≥ 1 internal links and external degree e: CH3 1/(1+e),
// CH2 (1+i)/(1+e), CH3.1 (1+i)/ch31 with ch31 = (1+e)^(1+e/(1+e)) from the host's table.
fn l3n_weight(i: u32, e: u32, ch31: f32) -> f32 {
    if (p.variant == 0u) {
        return div_rn(1.0, 1.0 + f32(e));
    }
    if (p.variant == 1u) {
        return div_rn(1.0 + f32(i), 1.0 + f32(e));
    }
    return div_rn(1.0 + f32(i), ch31);
}

// Path-based factor (variants 3–5) for internal degree i, degree deg.
fn node_weight(i: u32, deg: u32) -> f32 {
    let e = f32(ext_degree(i, deg));
    let fi = f32(i);
    if (p.variant == 3u) {
        return 1.0 / sqrt(1.0 + e);
    }
    if (p.variant == 4u) {
        return sqrt((1.0 + fi) / (1.0 + e));
    }
    return 1.0 / sqrt(f32(deg));
}

@compute @workgroup_size(WG)
fn l3n_count(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    // One invocation per link (seed a, neighbour k) of the chunk's seeds.
    let first = c_ptr[p.start];
    let last = c_ptr[p.start + p.chunk];
    let link = first + linear_id(gid, nwg);
    if (link >= last) {
        return;
    }
    // The seed owning this link: the last seed of the chunk whose list starts at or before it.
    var lo = p.start;
    var hi = p.start + p.chunk;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (c_ptr[mid] <= link) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let a = lo;
    let k = c_idx[link];
    let base = (a - p.start) * p.rows;
    for (var t = c_optr[k]; t < c_optr[k + 1u]; t++) {
        let b = c_oidx[t];
        if (b != a) {
            atomicAdd(&c_counts[base + b], 1u);
        }
    }
}

@compute @workgroup_size(WG)
fn l3n_weights(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    if (t >= p.chunk * p.rows) {
        return;
    }
    let b = t % p.rows;
    let i = w_counts[t];
    var w = 0.0;
    if (i > 0u) {
        let deg = w_ptr[b + 1u] - w_ptr[b];
        if (p.variant <= 2u) {
            let e = ext_degree(i, deg);
            var ch31 = 1.0;
            if (p.variant == 2u) {
                ch31 = w_ch31[e];
            }
            w = l3n_weight(i, e, ch31);
        } else {
            w = node_weight(i, deg);
        }
    }
    w_out[t] = w;
}

@compute @workgroup_size(WG)
fn l3n_rows(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    // (a, j) for a in the chunk: S[a, j] = Σ_{b in column j} q_a[b].
    let t = linear_id(gid, nwg);
    if (t >= p.chunk * p.others) {
        return;
    }
    let a_local = t / p.others;
    let j = t % p.others;
    let q = a_local * p.rows;
    var acc = 0.0;
    for (var s = g_ptr[j]; s < g_ptr[j + 1u]; s++) {
        acc += g_weights[q + g_idx[s]];
    }
    scores[(p.start + a_local) * p.others + j] = acc;
}

@compute @workgroup_size(WG)
fn l3n_cols(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    // (j, a) for j in the chunk of columns: S[a, j] += Σ_{k in row a} q_j[k]; links → 0.
    let t = linear_id(gid, nwg);
    if (t >= p.chunk * p.others) {
        return;
    }
    let j_local = t / p.others;
    let a = t % p.others;
    let j = p.start + j_local;
    let q = j_local * p.rows;
    var acc = 0.0;
    var is_link = false;
    for (var s = g_ptr[a]; s < g_ptr[a + 1u]; s++) {
        let k = g_idx[s];
        acc += g_weights[q + k];
        is_link = is_link || k == j;
    }
    let at = a * p.rows + j;
    if (is_link) {
        scores[at] = 0.0;
    } else {
        scores[at] = scores[at] + acc;
    }
}

// l3p_cols: row_ptr, col_idx (CSR), col_ptr, row_idx (CSC), f(k; j) of the chunk, scores
@group(0) @binding(1) var<storage, read> p_row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> p_col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> p_col_ptr: array<u32>;
@group(0) @binding(4) var<storage, read> p_row_idx: array<u32>;
@group(0) @binding(5) var<storage, read> p_in_factor: array<f32>;
@group(0) @binding(6) var<storage, read_write> p_scores: array<f32>;

@compute @workgroup_size(WG)
fn l3p_cols(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    // Params as in the column phase: rows = cols of S, others = rows of S.
    let t = linear_id(gid, nwg);
    if (t >= p.chunk * p.others) {
        return;
    }
    let j_local = t / p.others;
    let a = t % p.others;
    let j = p.start + j_local;
    let f = j_local * p.rows;
    let a_start = p_row_ptr[a];
    let a_end = p_row_ptr[a + 1u];
    var is_link = false;
    for (var s = a_start; s < a_end; s++) {
        is_link = is_link || p_col_idx[s] == j;
    }
    var acc = 0.0;
    if (!is_link) {
        for (var s = p_col_ptr[j]; s < p_col_ptr[j + 1u]; s++) {
            let b = p_row_idx[s];
            if (b == a) {
                continue;
            }
            // Merge the sorted input lists of a and b: common inputs k are the paths' first hops.
            var x = a_start;
            var y = p_row_ptr[b];
            let y_end = p_row_ptr[b + 1u];
            var cn = 0u;
            var inner = 0.0;
            while (x < a_end && y < y_end) {
                let ka = p_col_idx[x];
                let kb = p_col_idx[y];
                if (ka == kb) {
                    cn += 1u;
                    inner += p_in_factor[f + ka];
                    x++;
                    y++;
                } else if (ka < kb) {
                    x++;
                } else {
                    y++;
                }
            }
            if (cn > 0u) {
                acc += node_weight(cn, y_end - p_row_ptr[b]) * inner;
            }
        }
    }
    p_scores[a * p.rows + j] = acc;
}

// lp_pack: row pointers (live count at [rows]), row of each link, column of each link, bits
@group(0) @binding(1) var<storage, read> k_row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> k_row_of: array<u32>;
@group(0) @binding(3) var<storage, read> k_col_idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> k_bits_r: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> k_bits_c: array<atomic<u32>>;

// lp_count: bit lists of the side, counts
@group(0) @binding(1) var<storage, read> c_bits: array<u32>;
@group(0) @binding(2) var<storage, read_write> c_out: array<f32>;

// lp_weights: the side's pointers (degrees), CH3.1 denominators, counts in / weights out
@group(0) @binding(1) var<storage, read> q_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> q_ch31: array<f32>;
@group(0) @binding(3) var<storage, read_write> q_io: array<f32>;

// lp_dense: row bits, D
@group(0) @binding(1) var<storage, read> d_bits: array<u32>;
@group(0) @binding(2) var<storage, read_write> d_out: array<f32>;

// lp_combine: row bits, S_in, S (holding S_out)
@group(0) @binding(1) var<storage, read> s_bits: array<u32>;
@group(0) @binding(2) var<storage, read> s_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> s_out: array<f32>;

@compute @workgroup_size(WG)
fn lp_pack(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    if (t >= k_row_ptr[p.rows]) {
        return;
    }
    let r = k_row_of[t];
    let c = k_col_idx[t];
    atomicOr(&k_bits_r[r * p.words_r + c / 32u], 1u << (c % 32u));
    atomicOr(&k_bits_c[c * p.words_c + r / 32u], 1u << (r % 32u));
}

@compute @workgroup_size(WG)
fn lp_count(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    if (t >= p.n * p.n) {
        return;
    }
    let x = (t / p.n) * p.words;
    let y = (t % p.n) * p.words;
    var c = 0u;
    for (var w = 0u; w < p.words; w++) {
        c += countOneBits(c_bits[x + w] & c_bits[y + w]);
    }
    c_out[t] = f32(c);
}

@compute @workgroup_size(WG)
fn lp_weights(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    if (t >= p.n * p.n) {
        return;
    }
    let x = t / p.n;
    let y = t % p.n;
    let i = u32(q_io[t]);
    let node = select(x, y, p.seed_major == 1u);
    var w = 0.0;
    if (i > 0u && x != y) {
        let e = ext_degree(i, q_ptr[node + 1u] - q_ptr[node]);
        var ch31 = 1.0;
        if (p.variant == 2u) {
            ch31 = q_ch31[e];
        }
        w = l3n_weight(i, e, ch31);
    }
    q_io[t] = w;
}

@compute @workgroup_size(WG)
fn lp_dense(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    if (t >= p.rows * p.others) {
        return;
    }
    let a = t / p.others;
    let j = t % p.others;
    d_out[t] = f32((d_bits[a * p.words_r + j / 32u] >> (j % 32u)) & 1u);
}

@compute @workgroup_size(WG)
fn lp_combine(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    if (t >= p.rows * p.others) {
        return;
    }
    let a = t / p.others;
    let j = t % p.others;
    if (((s_bits[a * p.words_r + j / 32u] >> (j % 32u)) & 1u) == 1u) {
        s_out[t] = 0.0;
    } else {
        s_out[t] = s_out[t] + s_in[t];
    }
}
