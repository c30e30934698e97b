// Causal multi-head attention, forward and backward, on feature-major activations: q, k, v and the
// output o are [heads·head_dim, tokens], tokens = batch·seq, so head h, channel c, sequence b and
// position i sit at (h·head_dim + c)·tokens + b·seq + i. Scores s_ij = q_i·k_j / sqrt(head_dim) for
// j ≤ i, softmax over j (max-subtracted, so it never overflows).
//
//   attn_forward:      one invocation per (b, h, i): o_i = Σ_j p_ij v_j; lse_i = m_i + ln Σ_j e^(s_ij − m_i)
//   attn_backward_dq:  one per (b, h, i): D_i = dO_i·o_i; dq_i = Σ_j p_ij (dO_i·v_j − D_i) k_j / sqrt(hd)
//   attn_backward_dkv: one per (b, h, j): dv_j = Σ_{i≥j} p_ij dO_i;
//                                         dk_j = Σ_{i≥j} p_ij (dO_i·v_j − D_i) q_i / sqrt(hd)
//
// p_ij is recomputed from the stored lse (no T×T matrix is kept), every output is written by
// exactly one invocation and every sum runs in a fixed order: deterministic, no atomics.

struct Params {
    head_dim: u32,
    heads: u32,
    seq: u32,
    batch: u32,
    scale: f32,      // 1 / sqrt(head_dim)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;
// Largest head_dim the per-invocation accumulators hold (LLaMA-20M…1B use 64).
const MAX_HD: u32 = 128u;

@group(0) @binding(0) var<uniform> p: Params;

// Bindings 1–3 are the same in every entry point; the others are per entry point.
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;

// attn_forward
@group(0) @binding(4) var<storage, read_write> o_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse_out: array<f32>;

// attn_backward_dq and attn_backward_dkv
@group(0) @binding(4) var<storage, read> o: array<f32>;          // dq only
@group(0) @binding(4) var<storage, read> d_in: array<f32>;       // dkv only: D from the dq pass
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> dout: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;   // dq pass
@group(0) @binding(8) var<storage, read_write> d_out: array<f32>; // dq pass: D_i = dO_i·o_i
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;   // dkv pass
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;   // dkv pass

fn tokens() -> u32 {
    return p.batch * p.seq;
}

// Index of channel c of head h at token t.
fn at(h: u32, c: u32, t: u32) -> u32 {
    return (h * p.head_dim + c) * tokens() + t;
}

// (b, h, i) of invocation n = (b·heads + h)·seq + i.
fn split(n: u32) -> vec3<u32> {
    let i = n % p.seq;
    let bh = n / p.seq;
    return vec3<u32>(bh / p.heads, bh % p.heads, i);
}

// The scaled score s_ij of query token ti and key token tj in head h.
fn score(h: u32, ti: u32, tj: u32) -> f32 {
    var dot = 0.0;
    for (var c = 0u; c < p.head_dim; c++) {
        dot += q[at(h, c, ti)] * k[at(h, c, tj)];
    }
    return dot * p.scale;
}

// dO_i · v_j in head h.
fn dout_dot_v(h: u32, ti: u32, tj: u32) -> f32 {
    var dot = 0.0;
    for (var c = 0u; c < p.head_dim; c++) {
        dot += dout[at(h, c, ti)] * v[at(h, c, tj)];
    }
    return dot;
}

@compute @workgroup_size(WG)
fn attn_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = gid.x + gid.y * nwg.x * WG;
    if (n >= p.batch * p.heads * p.seq) {
        return;
    }
    let s = split(n);
    let b = s.x;
    let h = s.y;
    let i = s.z;
    let ti = b * p.seq + i;
    var m = -3.4e38;
    for (var j = 0u; j <= i; j++) {
        m = max(m, score(h, ti, b * p.seq + j));
    }
    var acc: array<f32, MAX_HD>;
    for (var c = 0u; c < p.head_dim; c++) {
        acc[c] = 0.0;
    }
    var l = 0.0;
    for (var j = 0u; j <= i; j++) {
        let tj = b * p.seq + j;
        let e = exp(score(h, ti, tj) - m);
        l += e;
        for (var c = 0u; c < p.head_dim; c++) {
            acc[c] += e * v[at(h, c, tj)];
        }
    }
    for (var c = 0u; c < p.head_dim; c++) {
        o_out[at(h, c, ti)] = acc[c] / l;
    }
    lse_out[n] = m + log(l);
}

@compute @workgroup_size(WG)
fn attn_backward_dq(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = gid.x + gid.y * nwg.x * WG;
    if (n >= p.batch * p.heads * p.seq) {
        return;
    }
    let s = split(n);
    let b = s.x;
    let h = s.y;
    let i = s.z;
    let ti = b * p.seq + i;
    var d = 0.0;
    for (var c = 0u; c < p.head_dim; c++) {
        d += dout[at(h, c, ti)] * o[at(h, c, ti)];
    }
    d_out[n] = d;
    var acc: array<f32, MAX_HD>;
    for (var c = 0u; c < p.head_dim; c++) {
        acc[c] = 0.0;
    }
    for (var j = 0u; j <= i; j++) {
        let tj = b * p.seq + j;
        let ds = exp(score(h, ti, tj) - lse[n]) * (dout_dot_v(h, ti, tj) - d) * p.scale;
        for (var c = 0u; c < p.head_dim; c++) {
            acc[c] += ds * k[at(h, c, tj)];
        }
    }
    for (var c = 0u; c < p.head_dim; c++) {
        dq[at(h, c, ti)] = acc[c];
    }
}

@compute @workgroup_size(WG)
fn attn_backward_dkv(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = gid.x + gid.y * nwg.x * WG;
    if (n >= p.batch * p.heads * p.seq) {
        return;
    }
    let s = split(n);
    let b = s.x;
    let h = s.y;
    let j = s.z;
    let tj = b * p.seq + j;
    var ak: array<f32, MAX_HD>;
    var av: array<f32, MAX_HD>;
    for (var c = 0u; c < p.head_dim; c++) {
        ak[c] = 0.0;
        av[c] = 0.0;
    }
    let row = n - j;   // invocation index of (b, h, 0)
    for (var i = j; i < p.seq; i++) {
        let ti = b * p.seq + i;
        let pij = exp(score(h, ti, tj) - lse[row + i]);
        let ds = pij * (dout_dot_v(h, ti, tj) - d_in[row + i]) * p.scale;
        for (var c = 0u; c < p.head_dim; c++) {
            av[c] += pij * dout[at(h, c, ti)];
            ak[c] += ds * q[at(h, c, ti)];
        }
    }
    for (var c = 0u; c < p.head_dim; c++) {
        dk[at(h, c, tj)] = ak[c];
        dv[at(h, c, tj)] = av[c];
    }
}
