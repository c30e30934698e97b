// Rotary position embedding (LLaMA's "rotate half" form) on feature-major activations
// x[r, t] at r·tokens + t, where r = head·head_dim + i and token t sits at position t mod seq.
// The angles come from host tables cos/sin[pos·half + i] (half = head_dim/2), so every backend
// rotates by bit-identical angles. One invocation per (head, pair i, token):
//
//   forward  (sign = +1):  y[i] = x[i]·cos − x[i+half]·sin;   y[i+half] = x[i+half]·cos + x[i]·sin
//   backward (sign = −1):  the same with sin negated — the transposed rotation, so dx from dy.

struct Params {
    rows: u32,      // heads · head_dim
    head_dim: u32,
    tokens: u32,
    seq: u32,
    sign: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    let half = p.head_dim / 2u;
    let pairs = p.rows / 2u;
    if (k >= pairs * p.tokens) {
        return;
    }
    let t = k % p.tokens;
    let pair = k / p.tokens;          // head · half + i
    let head = pair / half;
    let i = pair % half;
    let r0 = head * p.head_dim + i;
    let r1 = r0 + half;
    let a = (t % p.seq) * half + i;
    let c = cos_t[a];
    let s = p.sign * sin_t[a];
    let x0 = x[r0 * p.tokens + t];
    let x1 = x[r1 * p.tokens + t];
    y[r0 * p.tokens + t] = x0 * c - x1 * s;
    y[r1 * p.tokens + t] = x1 * c + x0 * s;
}
