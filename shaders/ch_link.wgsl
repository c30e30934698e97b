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
// Every sum runs in the same order as the CPU twin (`cht_sparse::predict`), so the scores agree
// to the bit wherever f32 division is correctly rounded.
//
// Path-based: with f(x; seed) the per-interior-node factor (e.g. 1/√(1+e) for CH3),
//   S[a, j] = Σ_{b asc ∈ N(j), b ≠ a}  f(b; a) · Σ_{k asc ∈ N(a) ∩ N(b)} f(k; j)
// i.e. every L3 path a – k – b – j once. Chunks of seed columns j get f(k; j) from l3n_count and
// l3n_weights; `l3p_cols` (one invocation per (j, a)) merges the sorted rows a and b, which yields
// CN(a, b) and the inner sum at once. Products make the order differ from the CPU's loop, so
// path-based scores agree to rounding (not to the bit).

struct Params {
    rows: u32,       // seeds' side size for this phase (rows of S, or cols of S for the column phase)
    others: u32,     // the other side's size
    start: u32,      // first seed of the chunk
    chunk: u32,      // seeds in the chunk
    variant: u32,    // node-based 0 CH3, 1 CH2, 2 CH3.1; path-based factors 3 CH3, 4 CH2, 5 RA
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// l3n_count: the seeds' compressed lists (ptr, idx), the other side's (optr, oidx), counts
@group(0) @binding(1) var<storage, read> c_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> c_idx: array<u32>;
@group(0) @binding(3) var<storage, read> c_optr: array<u32>;
@group(0) @binding(4) var<storage, read> c_oidx: array<u32>;
@group(0) @binding(5) var<storage, read_write> c_counts: array<atomic<u32>>;

// l3n_weights: seeds' ptr (degrees of the same side), counts, weights
@group(0) @binding(1) var<storage, read> w_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> w_counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> w_out: array<f32>;

// l3n_rows / l3n_cols: the gather side's ptr/idx, weights, scores
@group(0) @binding(1) var<storage, read> g_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> g_idx: array<u32>;
@group(0) @binding(3) var<storage, read> g_weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Node weight for internal degree i, degree deg (e = deg − i − 1, clamped at 0).
fn node_weight(i: u32, deg: u32) -> f32 {
    let e = f32(select(0u, deg - i - 1u, deg > i + 1u));
    let fi = f32(i);
    if (p.variant == 0u) {
        return 1.0 / (1.0 + e);
    }
    if (p.variant == 1u) {
        return (1.0 + fi) / (1.0 + e);
    }
    if (p.variant == 2u) {
        return (1.0 + fi) / pow(1.0 + e, 1.0 + e / (1.0 + e));
    }
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
        w = node_weight(i, w_ptr[b + 1u] - w_ptr[b]);
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
