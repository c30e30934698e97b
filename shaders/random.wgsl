// Counter-based random numbers, bit-identical to `cht_sparse::rng` on the CPU.
//
//   draw = mix(key ^ mix(index + 0x632be5ab)),  mix = lowbias32 (xor-shift / multiply)
//   uniform = ((draw >> 8) + 0.5) · 2^-24        (exact in f32, never 0 or 1)
//
// `key` is `RngKey::folded()` = hash of (seed, stream, step, layer), computed on the host.
//
//   fill_uniform: out[i] = lo + (hi − lo) · uniform(key, offset + i)

struct Params {
    len: u32,
    key: u32,
    offset: u32,
    _pad: u32,
    lo: f32,
    hi: f32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

fn rng_mix(x: u32) -> u32 {
    var h = x;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

fn rng_u32(key: u32, index: u32) -> u32 {
    return rng_mix(key ^ rng_mix(index + 0x632be5abu));
}

fn rng_unit(bits: u32) -> f32 {
    return (f32(bits >> 8u) + 0.5) * (1.0 / 16777216.0);
}

@compute @workgroup_size(WG)
fn fill_uniform(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.len) {
        return;
    }
    out[i] = p.lo + (p.hi - p.lo) * rng_unit(rng_u32(p.key, p.offset + i));
}
