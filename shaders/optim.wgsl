// SGD with momentum and weight decay (PyTorch semantics: no dampening, not Nesterov), applied to
// any parameter array — dense weights, biases, or a sparse layer's CSR values, whose momentum lives
// beside them in the same CSR order.
//
//   g = grad[i] + weight_decay · w[i];   v[i] = momentum · v[i] + g;   w[i] -= lr · v[i]

struct Params {
    len: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> velocity: array<f32>;

@compute @workgroup_size(WG)
fn sgd_momentum(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.len) {
        return;
    }
    let g = grad[i] + p.weight_decay * w[i];
    let v = p.momentum * velocity[i] + g;
    velocity[i] = v;
    w[i] = w[i] - p.lr * v;
}

// AdamW (PyTorch semantics: decoupled weight decay, bias-corrected moments), for the Transformer.
// c1 = 1/(1 − β1ᵗ) and c2 = 1/(1 − β2ᵗ) are computed on the host for step t.
//
//   m[i] = β1·m[i] + (1−β1)·g;   v[i] = β2·v[i] + (1−β2)·g²
//   w[i] = w[i]·(1 − lr·wd) − lr · c1·m[i] / (sqrt(c2·v[i]) + eps)

struct AdamParams {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    c1: f32,
    c2: f32,
}

@group(0) @binding(0) var<uniform> pa: AdamParams;
@group(0) @binding(1) var<storage, read> agrad: array<f32>;
@group(0) @binding(2) var<storage, read_write> aw: array<f32>;
@group(0) @binding(3) var<storage, read_write> am: array<f32>;
@group(0) @binding(4) var<storage, read_write> av: array<f32>;

@compute @workgroup_size(WG)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= pa.len) {
        return;
    }
    let g = agrad[i];
    let m = pa.beta1 * am[i] + (1.0 - pa.beta1) * g;
    let v = pa.beta2 * av[i] + (1.0 - pa.beta2) * g * g;
    am[i] = m;
    av[i] = v;
    aw[i] = aw[i] * (1.0 - pa.lr * pa.weight_decay) - pa.lr * (pa.c1 * m) / (sqrt(pa.c2 * v) + pa.eps);
}
