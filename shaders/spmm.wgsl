// Sparse × dense products over a CSR pattern for the forward pass, and the fused backward pass
// (weight gradient on the links and input gradient in one dispatch).
//
// Layout: activations are feature-major, x[feature * batch + sample], so every link reads one
// neuron's whole batch contiguously. In the products each invocation owns one output row and 4
// consecutive samples: invocations next to each other share the row, so they load the same index
// and value.
//
//   spmm_forward:   y[o, b]  (+)= act( Σ_{k in row o}  values[k] · x[col_idx[k], b]  + bias[o] )
//   sparse_backward, two roles by workgroup (they read the same dy and are independent):
//     weight gradient, one invocation per link k < nnz (nnz = col_ptr[cols]):
//                    dw[k] = Σ_b dy[row_of[k], b] · x[col_idx[k], b]
//                    (four strided partial sums, combined pairwise; the CPU twin sums alike)
//     input gradient, a CSC walk (no float atomics), one invocation per (input, 4 samples):
//                    dx[i, b] (+)= Σ_{k in col i}  values[perm[k]] · dy[row_idx[k], b]
//   The pattern's CSR link arrays (row_of, col_idx) share one storage and its CSC ones (row_idx,
//   perm) another, so the fused pass needs 8 bindings, the WebGPU default limit.

struct Params {
    out_rows: u32,  // forward: rows of the output; backward: columns of the pattern (inputs)
    batch: u32,
    flags: u32,     // bit 0: add bias, bit 1: ReLU, bit 2: accumulate into the output
    dw_len: u32,    // backward: slots of dw (0 = no weight gradient)
    dw_groups: u32, // backward: workgroups of the weight-gradient role (they come first)
    col_idx_at: u32,// backward: offset of col_idx in the CSR link storage (row_of is at 0)
    perm_at: u32,   // backward: offset of perm in the CSC link storage (row_idx is at 0)
    _pad: u32,
}

const WG: u32 = 64u;
const FLAG_BIAS: u32 = 1u;
const FLAG_RELU: u32 = 2u;
const FLAG_ACCUMULATE: u32 = 4u;

@group(0) @binding(0) var<uniform> p: Params;

// spmm_forward bindings
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> col_idx: array<u32>;
@group(0) @binding(3) var<storage, read> values: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// sparse_backward bindings
@group(0) @binding(1) var<storage, read> col_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> csr_links: array<u32>; // row_of | col_idx
@group(0) @binding(3) var<storage, read> csc_links: array<u32>; // row_idx | perm
@group(0) @binding(4) var<storage, read> w_values: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> bx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dw: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;

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
    let add = (p.flags & FLAG_ACCUMULATE) != 0u;
    for (var j = 0u; j < min(4u, p.batch - b0); j++) {
        if (add) {
            y[out + j] += acc[j];
        } else {
            y[out + j] = acc[j];
        }
    }
}

@compute @workgroup_size(WG)
fn sparse_backward(@builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let group = wg.x + wg.y * nwg.x;
    if (group < p.dw_groups) {
        weight_grad(group * WG + lid);
    } else {
        input_grad((group - p.dw_groups) * WG + lid);
    }
}

fn weight_grad(k: u32) {
    let nnz = min(col_ptr[p.out_rows], p.dw_len);
    if (k >= nnz) {
        return;
    }
    let a = csr_links[k] * p.batch;
    let b = csr_links[p.col_idx_at + k] * p.batch;
    // Four partial sums shorten the dependency chain; the CPU twin sums in the same order.
    var acc = vec4<f32>(0.0);
    let full = p.batch & ~3u;
    for (var j = 0u; j < full; j += 4u) {
        acc += vec4<f32>(dy[a + j], dy[a + j + 1u], dy[a + j + 2u], dy[a + j + 3u])
             * vec4<f32>(bx[b + j], bx[b + j + 1u], bx[b + j + 2u], bx[b + j + 3u]);
    }
    for (var j = full; j < p.batch; j++) {
        acc[j - full] += dy[a + j] * bx[b + j];
    }
    dw[k] = (acc.x + acc.y) + (acc.z + acc.w);
}

fn input_grad(t: u32) {
    let chunks = (p.batch + 3u) / 4u;
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
            let base = csc_links[k] * p.batch + b0;
            acc += w_values[csc_links[p.perm_at + k]]
                 * vec4<f32>(dy[base], dy[base + 1u], dy[base + 2u], dy[base + 3u]);
        }
    } else {
        let n = p.batch - b0;
        for (var k = start; k < end; k++) {
            let base = csc_links[k] * p.batch + b0;
            let v = w_values[csc_links[p.perm_at + k]];
            for (var j = 0u; j < n; j++) {
                acc[j] += v * dy[base + j];
            }
        }
    }
    let out = col * p.batch + b0;
    let add = (p.flags & FLAG_ACCUMULATE) != 0u;
    for (var j = 0u; j < min(4u, p.batch - b0); j++) {
        if (add) {
            dx[out + j] += acc[j];
        } else {
            dx[out + j] = acc[j];
        }
    }
}
