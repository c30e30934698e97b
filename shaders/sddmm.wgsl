// Sampled dense-dense product: the weight gradient of a sparse layer, only on its links.
//
//   dw[k] = Σ_b dy[row_of[k], b] · x[col_idx[k], b]      for every link k < nnz
//
// One invocation per link; both operands are contiguous batch vectors (feature-major layout).
// nnz is read from row_ptr[rows] on the device, so the pattern can change without a readback;
// invocations past it (the buffer's spare capacity) do nothing.

struct Params {
    rows: u32,
    batch: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> row_of: array<u32>;
@group(0) @binding(3) var<storage, read> col_idx: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> dw: array<f32>;

@compute @workgroup_size(WG)
fn sddmm_weight_grad(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    let nnz = min(row_ptr[p.rows], arrayLength(&dw));
    if (k >= nnz) {
        return;
    }
    let a = row_of[k] * p.batch;
    let b = col_idx[k] * p.batch;
    // Four partial sums shorten the dependency chain; the CPU twin sums in the same order.
    var acc = vec4<f32>(0.0);
    let full = p.batch & ~3u;
    for (var j = 0u; j < full; j += 4u) {
        acc += vec4<f32>(dy[a + j], dy[a + j + 1u], dy[a + j + 2u], dy[a + j + 3u])
             * vec4<f32>(x[b + j], x[b + j + 1u], x[b + j + 2u], x[b + j + 3u]);
    }
    for (var j = full; j < p.batch; j++) {
        acc[j - full] += dy[a + j] * x[b + j];
    }
    dw[k] = (acc.x + acc.y) + (acc.z + acc.w);
}
