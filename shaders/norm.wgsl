// RMSNorm (LLaMA), feature-major activations: x[i, t] at i·tokens + t for d features and `tokens`
// columns. Every output element is written by exactly one invocation, sums run in a fixed order.
//
//   forward:           r[t] = 1 / sqrt(mean_i x[i,t]² + eps);   y[i,t] = g[i] · x[i,t] · r[t]
//   rmsnorm_backward, two independent roles in one dispatch (the first `input_groups` workgroups,
//   then the rest):
//     input:           dx[i,t] (+)= r[t] · (g[i]·dy[i,t] − x[i,t] · r[t]² · s[t] / d),
//                      s[t] = Σ_j g[j]·dy[j,t]·x[j,t]           (one invocation per token)
//     gain:            dg[i] = Σ_t dy[i,t] · x[i,t] · r[t]      (one invocation per feature)

struct Params {
    d: u32,            // features
    tokens: u32,       // columns
    eps: f32,
    flags: u32,        // backward: bit 0 adds into dx (the residual stream's gradient)
    input_groups: u32, // backward: workgroups of the input role
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const FLAG_ACCUMULATE: u32 = 1u;

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// rmsnorm_forward bindings
@group(0) @binding(1) var<storage, read> fx: array<f32>;
@group(0) @binding(2) var<storage, read> fg: array<f32>;
@group(0) @binding(3) var<storage, read_write> fy: array<f32>;
@group(0) @binding(4) var<storage, read_write> frstd: array<f32>;

// rmsnorm_backward bindings
@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> bg: array<f32>;
@group(0) @binding(3) var<storage, read> brstd: array<f32>;
@group(0) @binding(4) var<storage, read> bdy: array<f32>;
@group(0) @binding(5) var<storage, read_write> bdx: array<f32>;
@group(0) @binding(6) var<storage, read_write> bdg: array<f32>;

fn linear(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn rmsnorm_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear(gid, nwg);
    if (t >= p.tokens) {
        return;
    }
    var ss = 0.0;
    for (var i = 0u; i < p.d; i++) {
        let v = fx[i * p.tokens + t];
        ss += v * v;
    }
    let r = 1.0 / sqrt(ss / f32(p.d) + p.eps);
    frstd[t] = r;
    for (var i = 0u; i < p.d; i++) {
        let k = i * p.tokens + t;
        fy[k] = fg[i] * fx[k] * r;
    }
}

@compute @workgroup_size(WG)
fn rmsnorm_backward(@builtin(workgroup_id) wg: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let group = wg.x + wg.y * nwg.x;
    if (group < p.input_groups) {
        backward_input(group * WG + lid);
    } else {
        backward_gain((group - p.input_groups) * WG + lid);
    }
}

fn backward_input(t: u32) {
    if (t >= p.tokens) {
        return;
    }
    var s = 0.0;
    for (var j = 0u; j < p.d; j++) {
        let k = j * p.tokens + t;
        s += bg[j] * bdy[k] * bx[k];
    }
    let r = brstd[t];
    let c = r * r * s / f32(p.d);
    let add = (p.flags & FLAG_ACCUMULATE) != 0u;
    for (var i = 0u; i < p.d; i++) {
        let k = i * p.tokens + t;
        let v = r * (bg[i] * bdy[k] - bx[k] * c);
        if (add) {
            bdx[k] += v;
        } else {
            bdx[k] = v;
        }
    }
}

fn backward_gain(i: u32) {
    if (i >= p.d) {
        return;
    }
    var acc = 0.0;
    let base = i * p.tokens;
    for (var t = 0u; t < p.tokens; t++) {
        acc += bdy[base + t] * bx[base + t] * brstd[t];
    }
    bdg[i] = acc;
}
