// Small per-element and per-row kernels of the backward pass.
//
//   relu_backward:  dy[i] = dy[i] · (y[i] > 0)          (in place; y is the ReLU output)
//   bias_grad:      db[o] = Σ_b dy[o, b]                (one invocation per row, fixed order)

struct Params {
    len: u32,    // elements (relu_backward) or rows (bias_grad)
    batch: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// relu_backward bindings
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> dy_inout: array<f32>;

// bias_grad bindings
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.len) {
        return;
    }
    if (y[i] <= 0.0) {
        dy_inout[i] = 0.0;
    }
}

@compute @workgroup_size(WG)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * WG;
    if (row >= p.len) {
        return;
    }
    var acc = 0.0;
    let base = row * p.batch;
    for (var j = 0u; j < p.batch; j++) {
        acc += dy[base + j];
    }
    db[row] = acc;
}
