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

// AdamW (PyTorch semantics: decoupled weight decay, bias-corrected moments) over one tensor or a
// whole parameter arena chunk, with global-norm clipping folded in. c1 = 1/(1 − β1ᵗ) and
// c2 = 1/(1 − β2ᵗ) are computed on the host for step t.
//
//   g = grad[i]·factor;   m[i] = β1·m[i] + (1−β1)·g;   v[i] = β2·v[i] + (1−β2)·g²
//   w[i] = w[i]·(1 − lr·wd) − lr · c1·m[i] / (sqrt(c2·v[i]) + eps)
//
// Every workgroup first turns the squared-norm partials of every chunk (reduce.wgsl, sum_squares_partials) into
// the clip factor — each the same fixed-order sum, so all agree bit for bit — then updates
// ZITEMS·ZWG consecutive elements with g = grad·factor. `parts` = 0 means no clipping (factor 1).
// The dispatch with `report` = 1 also writes [factor, norm] to `zclip` for the logs.

struct ArenaParams {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    c1: f32,
    c2: f32,
    max_norm: f32,
    parts: u32,
    report: u32,
    _pad: u32,
}

const ZWG: u32 = 256u;
const ZITEMS: u32 = 8u;

@group(0) @binding(0) var<uniform> pz: ArenaParams;
@group(0) @binding(1) var<storage, read> zpartials: array<f32>;
@group(0) @binding(2) var<storage, read> zgrad: array<f32>;
@group(0) @binding(3) var<storage, read_write> zw: array<f32>;
@group(0) @binding(4) var<storage, read_write> zm: array<f32>;
@group(0) @binding(5) var<storage, read_write> zv: array<f32>;
@group(0) @binding(6) var<storage, read_write> zclip: array<f32>;

var<workgroup> zsum: array<f32, ZWG>;

// (factor, norm) from the partials: lane t sums partials t, t + 256, … in order, then the tree.
fn clip_factor_of_partials(lid: u32) -> vec2<f32> {
    var acc = 0.0;
    for (var s = lid; s < pz.parts; s += ZWG) {
        acc += zpartials[s];
    }
    zsum[lid] = acc;
    workgroupBarrier();
    for (var width = ZWG / 2u; width > 0u; width /= 2u) {
        if (lid < width) {
            zsum[lid] += zsum[lid + width];
        }
        workgroupBarrier();
    }
    let norm = sqrt(zsum[0]);
    return vec2<f32>(min(1.0, pz.max_norm / (norm + 1e-6)), norm);
}

@compute @workgroup_size(ZWG)
fn adamw_arena(@builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wg: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    var clip = vec2<f32>(1.0, 0.0);
    if (pz.parts > 0u) {
        clip = clip_factor_of_partials(lid);
    }
    let group = wg.x + wg.y * nwg.x;
    if (group == 0u && lid == 0u && pz.report != 0u) {
        zclip[0] = clip.x;
        zclip[1] = clip.y;
    }
    let base = group * ZWG * ZITEMS;
    for (var j = 0u; j < ZITEMS; j++) {
        let i = base + j * ZWG + lid;
        if (i < pz.len) {
            let g = zgrad[i] * clip.x;
            let m = pz.beta1 * zm[i] + (1.0 - pz.beta1) * g;
            let v = pz.beta2 * zv[i] + (1.0 - pz.beta2) * g * g;
            zm[i] = m;
            zv[i] = v;
            zw[i] = zw[i] * (1.0 - pz.lr * pz.weight_decay) - pz.lr * (pz.c1 * m) / (sqrt(pz.c2 * v) + pz.eps);
        }
    }
}
