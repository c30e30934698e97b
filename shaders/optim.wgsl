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
