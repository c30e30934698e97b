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

// attn_forward bindings
@group(0) @binding(1) var<storage, read> fq: array<f32>;
@group(0) @binding(2) var<storage, read> fk: array<f32>;
@group(0) @binding(3) var<storage, read> fv: array<f32>;
@group(0) @binding(4) var<storage, read_write> fo: array<f32>;
@group(0) @binding(5) var<storage, read_write> flse: array<f32>;

// attn_backward_dq bindings
@group(0) @binding(1) var<storage, read> qq: array<f32>;
@group(0) @binding(2) var<storage, read> qk: array<f32>;
@group(0) @binding(3) var<storage, read> qv: array<f32>;
@group(0) @binding(4) var<storage, read> qo: array<f32>;
@group(0) @binding(5) var<storage, read> qlse: array<f32>;
@group(0) @binding(6) var<storage, read> qdo: array<f32>;
@group(0) @binding(7) var<storage, read_write> qdq: array<f32>;
@group(0) @binding(8) var<storage, read_write> qd: array<f32>;

// attn_backward_dkv bindings
@group(0) @binding(1) var<storage, read> kq: array<f32>;
@group(0) @binding(2) var<storage, read> kk: array<f32>;
@group(0) @binding(3) var<storage, read> kv: array<f32>;
@group(0) @binding(4) var<storage, read> klse: array<f32>;
@group(0) @binding(5) var<storage, read> kdo: array<f32>;
@group(0) @binding(6) var<storage, read> kd: array<f32>;
@group(0) @binding(7) var<storage, read_write> kdk: array<f32>;
@group(0) @binding(8) var<storage, read_write> kdv: array<f32>;

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
        let tj = b * p.seq + j;
        var dot = 0.0;
        for (var c = 0u; c < p.head_dim; c++) {
            dot += fq[at(h, c, ti)] * fk[at(h, c, tj)];
        }
        m = max(m, dot * p.scale);
    }
    var acc: array<f32, MAX_HD>;
    for (var c = 0u; c < p.head_dim; c++) {
        acc[c] = 0.0;
    }
    var l = 0.0;
    for (var j = 0u; j <= i; j++) {
        let tj = b * p.seq + j;
        var dot = 0.0;
        for (var c = 0u; c < p.head_dim; c++) {
            dot += fq[at(h, c, ti)] * fk[at(h, c, tj)];
        }
        let e = exp(dot * p.scale - m);
        l += e;
        for (var c = 0u; c < p.head_dim; c++) {
            acc[c] += e * fv[at(h, c, tj)];
        }
    }
    for (var c = 0u; c < p.head_dim; c++) {
        fo[at(h, c, ti)] = acc[c] / l;
    }
    flse[n] = m + log(l);
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
        d += qdo[at(h, c, ti)] * qo[at(h, c, ti)];
    }
    qd[n] = d;
    var acc: array<f32, MAX_HD>;
    for (var c = 0u; c < p.head_dim; c++) {
        acc[c] = 0.0;
    }
    for (var j = 0u; j <= i; j++) {
        let tj = b * p.seq + j;
        var dot = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < p.head_dim; c++) {
            dot += qq[at(h, c, ti)] * qk[at(h, c, tj)];
            dp += qdo[at(h, c, ti)] * qv[at(h, c, tj)];
        }
        let ds = exp(dot * p.scale - qlse[n]) * (dp - d) * p.scale;
        for (var c = 0u; c < p.head_dim; c++) {
            acc[c] += ds * qk[at(h, c, tj)];
        }
    }
    for (var c = 0u; c < p.head_dim; c++) {
        qdq[at(h, c, ti)] = acc[c];
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
        var dot = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < p.head_dim; c++) {
            dot += kq[at(h, c, ti)] * kk[at(h, c, tj)];
            dp += kdo[at(h, c, ti)] * kv[at(h, c, tj)];
        }
        let pij = exp(dot * p.scale - klse[row + i]);
        let ds = pij * (dp - kd[row + i]) * p.scale;
        for (var c = 0u; c < p.head_dim; c++) {
            av[c] += pij * kdo[at(h, c, ti)];
            ak[c] += ds * kq[at(h, c, ti)];
        }
    }
    for (var c = 0u; c < p.head_dim; c++) {
        kdk[at(h, c, tj)] = ak[c];
        kdv[at(h, c, tj)] = av[c];
    }
}
