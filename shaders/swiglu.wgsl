// SwiGLU gating of the LLaMA feed-forward block, elementwise on equal-shaped gate and up
// projections (feature-major, any layout):
//
//   forward:   h = silu(a) · b,              silu(a) = a · σ(a)
//   backward:  da = dh · b · σ(a) · (1 + a·(1 − σ(a))),   db = dh · silu(a)

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// swiglu_forward bindings
@group(0) @binding(1) var<storage, read> fa: array<f32>;
@group(0) @binding(2) var<storage, read> fb: array<f32>;
@group(0) @binding(3) var<storage, read_write> fh: array<f32>;

// swiglu_backward bindings
@group(0) @binding(1) var<storage, read> ba: array<f32>;
@group(0) @binding(2) var<storage, read> bb: array<f32>;
@group(0) @binding(3) var<storage, read> bdh: array<f32>;
@group(0) @binding(4) var<storage, read_write> bda: array<f32>;
@group(0) @binding(5) var<storage, read_write> bdb: array<f32>;

fn sigmoid(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-z));
}

@compute @workgroup_size(WG)
fn swiglu_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    if (k >= p.len) {
        return;
    }
    let a = fa[k];
    fh[k] = a * sigmoid(a) * fb[k];
}

@compute @workgroup_size(WG)
fn swiglu_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    if (k >= p.len) {
        return;
    }
    let a = ba[k];
    let s = sigmoid(a);
    let dh = bdh[k];
    bda[k] = dh * bb[k] * s * (1.0 + a * (1.0 - s));
    bdb[k] = dh * a * s;
}
