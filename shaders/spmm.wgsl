// Sparse × dense products over a CSR pattern, for the forward pass and the input gradient.
//
// Layout: activations are feature-major, x[feature * batch + sample], so every link reads one
// neuron's whole batch contiguously. Each invocation owns one output row and 4 consecutive samples:
// invocations next to each other share the row, so they load the same index and value.
//
//   spmm_forward:  y[o, b]  = act( Σ_{k in row o}  values[k]       · x[col_idx[k], b]  + bias[o] )
//   spmm_backward_input (CSC walk, no float atomics):
//                  dx[i, b] =      Σ_{k in col i}  values[perm[k]] · dy[row_idx[k], b]

struct Params {
    out_rows: u32,  // rows of the output (out for forward, in for the input gradient)
    batch: u32,
    flags: u32,     // bit 0: add bias, bit 1: ReLU
    _pad: u32,
}

const WG: u32 = 64u;
const FLAG_BIAS: u32 = 1u;
const FLAG_RELU: u32 = 2u;

@group(0) @binding(0) var<uniform> p: Params;

// spmm_forward bindings
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> values: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// spmm_backward_input bindings
@group(0) @binding(1) var<storage, read> col_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> row_idx: array<u32>;
@group(0) @binding(3) var<storage, read> perm: array<u32>;
@group(0) @binding(4) var<storage, read> w_values: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

// Linear invocation index over a 2-D grid (the grid is 2-D only when one dimension would exceed
// the 65535-workgroup limit).
fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn spmm_forward(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunks = (p.batch + 3u) / 4u;
    let t = linear_id(gid, nwg);
    if (t >= p.out_rows * chunks) {
        return;
    }
    let row = t / chunks;
    let b0 = (t % chunks) * 4u;
    let start = row_ptr[row];
    let end = row_ptr[row + 1u];
    var acc = vec4<f32>(0.0);
    if (b0 + 4u <= p.batch) {
        for (var k = start; k < end; k++) {
            let base = col_idx[k] * p.batch + b0;
            acc += values[k] * vec4<f32>(x[base], x[base + 1u], x[base + 2u], x[base + 3u]);
        }
    } else {
        // Ragged last chunk: only samples below `batch` exist.
        let n = p.batch - b0;
        for (var k = start; k < end; k++) {
            let base = col_idx[k] * p.batch + b0;
            let v = values[k];
            for (var j = 0u; j < n; j++) {
                acc[j] += v * x[base + j];
            }
        }
    }
    if ((p.flags & FLAG_BIAS) != 0u) {
        acc += vec4<f32>(bias[row]);
    }
    if ((p.flags & FLAG_RELU) != 0u) {
        acc = max(acc, vec4<f32>(0.0));
    }
    let out = row * p.batch + b0;
    for (var j = 0u; j < min(4u, p.batch - b0); j++) {
        y[out + j] = acc[j];
    }
}

@compute @workgroup_size(WG)
fn spmm_backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunks = (p.batch + 3u) / 4u;
    let t = linear_id(gid, nwg);
    if (t >= p.out_rows * chunks) {
        return;
    }
    let col = t / chunks;
    let b0 = (t % chunks) * 4u;
    let start = col_ptr[col];
    let end = col_ptr[col + 1u];
    var acc = vec4<f32>(0.0);
    if (b0 + 4u <= p.batch) {
        for (var k = start; k < end; k++) {
            let base = row_idx[k] * p.batch + b0;
            acc += w_values[perm[k]] * vec4<f32>(dy[base], dy[base + 1u], dy[base + 2u], dy[base + 3u]);
        }
    } else {
        let n = p.batch - b0;
        for (var k = start; k < end; k++) {
            let base = row_idx[k] * p.batch + b0;
            let v = w_values[perm[k]];
            for (var j = 0u; j < n; j++) {
                acc[j] += v * dy[base + j];
            }
        }
    }
    let out = col * p.batch + b0;
    for (var j = 0u; j < min(4u, p.batch - b0); j++) {
        dx[out + j] = acc[j];
    }
}
