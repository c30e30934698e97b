// Gradient clipping by global norm, with no readback and no float atomics:
//
//   sum_squares:  one workgroup of 256 sums x² of one tensor (stride-256 partial sums, then a
//                 fixed-order tree in workgroup memory) into slots[slot]
//   clip_factor:  one invocation: total = Σ slots; factor[0] = min(1, max_norm / (sqrt(total) + 1e-6)),
//                 factor[1] = sqrt(total) (the norm, for logs)
//   scale_by:     x[i] *= factor[0]
//   add_assign:   y[i] += x[i]   (residual connections)
//
// For a whole parameter arena (one dispatch instead of one per tensor):
//   sum_squares_partials: PARTS (256) workgroups; workgroup w sums x² over its contiguous segment
//                 [w·seg, (w+1)·seg) (stride-256 lanes, then the fixed tree) into
//                 partials[slot + w]. The fused AdamW (optim.wgsl) turns the partials into the clip
//                 factor in every workgroup, so clipping costs one extra dispatch per arena chunk.

struct Params {
    len: u32,
    slot: u32,
    max_norm: f32,
    seg: u32,
}

const RWG: u32 = 256u;
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// sum_squares bindings
@group(0) @binding(1) var<storage, read> sx: array<f32>;
@group(0) @binding(2) var<storage, read_write> sslots: array<f32>;

// clip_factor bindings (len = number of slots)
@group(0) @binding(1) var<storage, read> cslots: array<f32>;
@group(0) @binding(2) var<storage, read_write> cfactor: array<f32>;

// scale_by bindings
@group(0) @binding(1) var<storage, read> bfactor: array<f32>;
@group(0) @binding(2) var<storage, read_write> bx: array<f32>;

// add_assign bindings
@group(0) @binding(1) var<storage, read> ax: array<f32>;
@group(0) @binding(2) var<storage, read_write> ay: array<f32>;

// sum_squares_partials bindings
@group(0) @binding(1) var<storage, read> qx: array<f32>;
@group(0) @binding(2) var<storage, read_write> qpartials: array<f32>;

var<workgroup> partial: array<f32, RWG>;

// The workgroup's sum of every lane's `acc`, by a fixed tree (the CPU twins sum alike).
fn tree_sum(lid: u32, acc: f32) -> f32 {
    partial[lid] = acc;
    workgroupBarrier();
    for (var width = RWG / 2u; width > 0u; width /= 2u) {
        if (lid < width) {
            partial[lid] += partial[lid + width];
        }
        workgroupBarrier();
    }
    return partial[0];
}

@compute @workgroup_size(RWG)
fn sum_squares(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.len; i += RWG) {
        let v = sx[i];
        acc += v * v;
    }
    let total = tree_sum(lid, acc);
    if (lid == 0u) {
        sslots[p.slot] = total;
    }
}

@compute @workgroup_size(RWG)
fn sum_squares_partials(@builtin(local_invocation_index) lid: u32,
                        @builtin(workgroup_id) wg: vec3<u32>) {
    let start = wg.x * p.seg;
    let end = min(start + p.seg, p.len);
    var acc = 0.0;
    for (var i = start + lid; i < end; i += RWG) {
        let v = qx[i];
        acc += v * v;
    }
    let total = tree_sum(lid, acc);
    if (lid == 0u) {
        qpartials[p.slot + wg.x] = total;
    }
}

@compute @workgroup_size(1)
fn clip_factor() {
    var total = 0.0;
    for (var s = 0u; s < p.len; s++) {
        total += cslots[s];
    }
    let norm = sqrt(total);
    cfactor[0] = min(1.0, p.max_norm / (norm + 1e-6));
    cfactor[1] = norm;
}

@compute @workgroup_size(WG)
fn scale_by(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.len) {
        return;
    }
    bx[i] = bx[i] * bfactor[0];
}

@compute @workgroup_size(WG)
fn add_assign(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.len) {
        return;
    }
    ay[i] = ay[i] + ax[i];
}
