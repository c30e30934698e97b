// Token embedding: gather rows of the table into feature-major activations, and its gradient
// without float atomics — the host groups the batch's positions by token id (counting sort), so
// each table entry is summed by exactly one invocation in a fixed order.
//
//   gather:  x[i, t] = table[tok[t], i]                                   (one invocation per (i, t))
//   grad:    dtable[v, i] = Σ_{k in offsets[v]..offsets[v+1]} dx[i, positions[k]]
//                                                                          (one per (v, i))

struct Params {
    d: u32,
    tokens: u32,
    vocab: u32,
    _pad: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// embedding_gather bindings
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> tok: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

// embedding_grad bindings
@group(0) @binding(1) var<storage, read> dx: array<f32>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;
@group(0) @binding(3) var<storage, read> positions: array<u32>;
@group(0) @binding(4) var<storage, read_write> dtable: array<f32>;

@compute @workgroup_size(WG)
fn embedding_gather(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    if (k >= p.d * p.tokens) {
        return;
    }
    let i = k / p.tokens;
    let t = k % p.tokens;
    x[k] = table[tok[t] * p.d + i];
}

@compute @workgroup_size(WG)
fn embedding_grad(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = gid.x + gid.y * nwg.x * WG;
    if (k >= p.vocab * p.d) {
        return;
    }
    let v = k / p.d;
    let i = k % p.d;
    var acc = 0.0;
    for (var j = offsets[v]; j < offsets[v + 1u]; j++) {
        acc += dx[i * p.tokens + positions[j]];
    }
    dtable[k] = acc;
}
