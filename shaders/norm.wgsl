// RMSNorm (LLaMA), feature-major activations: x[i, t] at i·tokens + t for d features and `tokens`
// columns. Every output element is written by exactly one invocation, sums run in a fixed order.
//
//   forward:           r[t] = 1 / sqrt(mean_i x[i,t]² + eps);   y[i,t] = g[i] · x[i,t] · r[t]
//   backward_input:    dx[i,t] = r[t] · (g[i]·dy[i,t] − x[i,t] · r[t]² · s[t] / d),
//                      s[t] = Σ_j g[j]·dy[j,t]·x[j,t]           (one invocation per token)
//   backward_gain:     dg[i] = Σ_t dy[i,t] · x[i,t] · r[t]      (one invocation per feature)

struct Params {
    d: u32,        // features
    tokens: u32,   // columns
    eps: f32,
    _pad: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// rmsnorm_forward bindings
@group(0) @binding(1) var<storage, read> fx: array<f32>;
@group(0) @binding(2) var<storage, read> fg: array<f32>;
@group(0) @binding(3) var<storage, read_write> fy: array<f32>;
@group(0) @binding(4) var<storage, read_write> frstd: array<f32>;

// rmsnorm_backward_input bindings
@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> bg: array<f32>;
@group(0) @binding(3) var<storage, read> brstd: array<f32>;
@group(0) @binding(4) var<storage, read> bdy: array<f32>;
@group(0) @binding(5) var<storage, read_write> bdx: array<f32>;

// rmsnorm_backward_gain bindings
@group(0) @binding(1) var<storage, read> gx: array<f32>;
@group(0) @binding(2) var<storage, read> grstd: array<f32>;
@group(0) @binding(3) var<storage, read> gdy: array<f32>;
@group(0) @binding(4) var<storage, read_write> gdg: array<f32>;

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
fn rmsnorm_backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear(gid, nwg);
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
    for (var i = 0u; i < p.d; i++) {
        let k = i * p.tokens + t;
        bdx[k] = r * (bg[i] * bdy[k] - bx[k] * c);
    }
}

@compute @workgroup_size(WG)
fn rmsnorm_backward_gain(@builtin(global_invocation_id) gid: vec3<u32>,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear(gid, nwg);
    if (i >= p.d) {
        return;
    }
    var acc = 0.0;
    let base = i * p.tokens;
    for (var t = 0u; t < p.tokens; t++) {
        acc += gdy[base + t] * gx[base + t] * grstd[t];
    }
    gdg[i] = acc;
}
