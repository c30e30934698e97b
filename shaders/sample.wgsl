// Sampling and exact top-k selection on the device, bit-identical to `cht_sparse::sample` and the
// CPU twins in `crates/cht-gpu/src/ops/sample.rs`.
//
//   sample_keys:   one u32 key per candidate; larger is preferred, 0 means "never".
//                  SOFT (Gumbel-top-k, p ∝ w^T): integer-exact fixed-point keys (see sample.rs)
//                  HARD: the score's float bits (monotone for w > 0)
//                  Candidates with score 0 form a lower tier, in random order, so they are only
//                  chosen once every positive-score candidate is taken (the ε fallback of §3.4).
//   select_*:      the k largest keys by a 4-pass 8-bit radix select (integer atomics only, so the
//                  result does not depend on scheduling), ties at the threshold broken by index.

struct Params {
    n: u32,
    mode: u32,        // sample_keys: bit 0 HARD, bits 1-2 eligibility (0 all, 1 mask≠0, 2 mask=0)
    t_fixed: u32,     // temperature · 64
    key: u32,         // folded RNG key
    shift: u32,       // radix pass: digit shift (24, 16, 8, 0)
    first: u32,       // radix pass: 1 on the first pass
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;
const FRAC_BITS: u32 = 16u;
const T_SCALE: i32 = 64;
const LOG_CLAMP: i32 = 2097152;   // 32 << 16
const MODE_HARD: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;

// sample_keys
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read> elig_mask: array<u32>;
@group(0) @binding(3) var<storage, read_write> keys_out: array<u32>;

// select_histogram / select_mark
@group(0) @binding(1) var<storage, read> keys: array<u32>;
@group(0) @binding(2) var<storage, read_write> hist: array<atomic<u32>, 256>;
@group(0) @binding(3) var<storage, read_write> state: array<u32>;   // [k, prefix, remaining, eligible]

// select_choose: hist and state as plain arrays
@group(0) @binding(1) var<storage, read_write> hist_plain: array<u32, 256>;
@group(0) @binding(2) var<storage, read_write> state_rw: array<u32>;

// select_tie_counts: keys (1), state (2, read), block_counts (3)
@group(0) @binding(1) var<storage, read> tc_keys: array<u32>;
@group(0) @binding(2) var<storage, read> tc_state: array<u32>;
@group(0) @binding(3) var<storage, read_write> block_counts: array<u32>;

// select_mark: keys (1), state (2, read), block_prefix (3), selected (4)
@group(0) @binding(1) var<storage, read> mk_keys: array<u32>;
@group(0) @binding(2) var<storage, read> mk_state: array<u32>;
@group(0) @binding(3) var<storage, read> block_prefix: array<u32>;
@group(0) @binding(4) var<storage, read_write> selected: array<u32>;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// ---- integer-exact logarithms (mirror of cht_sparse::sample) ----

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

// 32×32 → 64-bit product as (high, low).
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (p00 & 0xffffu) | (mid << 16u);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, lo);
}

fn log2_mantissa(mantissa: u32) -> i32 {
    var m = (1u << 30u) | (mantissa << 7u);
    var frac = 0i;
    for (var i = 0u; i < FRAC_BITS; i++) {
        let w = mul_wide(m, m);
        let sq = (w.x << 2u) | (w.y >> 30u);
        frac = frac << 1u;
        if (sq >= 0x80000000u) {
            frac = frac | 1i;
            m = sq >> 1u;
        } else {
            m = sq;
        }
    }
    return frac;
}

fn log2_fixed(x: f32) -> i32 {
    let bits = bitcast<u32>(x) & 0x7fffffffu;
    let exp = i32(bits >> 23u);
    var mantissa = bits & 0x007fffffu;
    var e = exp - 127;
    if (exp == 0) {
        let shift = countLeadingZeros(mantissa) - 8u;
        mantissa = (mantissa << shift) & 0x007fffffu;
        e = -126 - i32(shift);
    }
    return (e << FRAC_BITS) + log2_mantissa(mantissa);
}

fn log2_fixed_u32(n: u32) -> i32 {
    let top = 31u - countLeadingZeros(n);
    let rest = n ^ (1u << top);
    var mantissa: u32;
    if (top >= 23u) {
        mantissa = rest >> (top - 23u);
    } else {
        mantissa = rest << (23u - top);
    }
    return (i32(top) << FRAC_BITS) + log2_mantissa(mantissa);
}

// Gumbel key of a positive weight (mirror of cht_sparse::sample::key).
fn gumbel_key(w: f32, t_fixed: u32, folded: u32, index: u32) -> u32 {
    let lw = clamp(log2_fixed(w), -LOG_CLAMP, LOG_CLAMP - 1);
    let b = rng_u32(folded, index) >> 8u;
    let e = (25 << FRAC_BITS) - log2_fixed_u32(2u * b + 1u);
    let le = log2_fixed_u32(u32(e)) - (i32(FRAC_BITS) << FRAC_BITS);
    let tw = (i32(t_fixed) * lw) / T_SCALE;
    let k = tw - le;
    return max(bitcast<u32>(k) ^ 0x80000000u, 1u);
}

@compute @workgroup_size(WG)
fn sample_keys(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) {
        return;
    }
    let eligibility = (p.mode >> 1u) & 3u;
    var eligible = true;
    if (eligibility == 1u) {
        eligible = elig_mask[i] != 0u;
    } else if (eligibility == 2u) {
        eligible = elig_mask[i] == 0u;
    }
    // Scores are magnitudes: |w| lets gradients be used directly (RigL).
    let w = abs(weights[i]);
    var key = 0u;
    if (eligible && w > 0.0) {
        // Upper tier: positive scores.
        var k: u32;
        if ((p.mode & MODE_HARD) != 0u) {
            k = bitcast<u32>(w);
        } else {
            k = gumbel_key(w, p.t_fixed, p.key, i) >> 1u;
        }
        key = 0x80000000u | k;
    } else if (eligible && w == 0.0) {
        // Lower tier: zero scores, uniformly random order.
        key = 1u + (rng_u32(p.key, i) >> 1u);
    }
    keys_out[i] = key;
}

var<workgroup> local_hist: array<atomic<u32>, 256>;

@compute @workgroup_size(WG)
fn select_histogram(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    atomicStore(&local_hist[lid.x], 0u);
    workgroupBarrier();
    let i = linear_id(gid, nwg);
    if (i < p.n) {
        let key = keys[i];
        // Digits above this pass must equal the prefix chosen so far.
        let above = p.shift + 8u;
        var match_prefix = key != 0u;
        if (p.first == 0u && above < 32u) {
            match_prefix = match_prefix && (key >> above) == (state[1] >> above);
        }
        if (match_prefix) {
            atomicAdd(&local_hist[(key >> p.shift) & 255u], 1u);
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&local_hist[lid.x]);
    if (c != 0u) {
        atomicAdd(&hist[lid.x], c);
    }
}

@compute @workgroup_size(1)
fn select_choose() {
    if (p.first != 0u) {
        // First pass: the histogram holds every eligible key; never take more than exist.
        var total = 0u;
        for (var d = 0u; d < 256u; d++) {
            total += hist_plain[d];
        }
        state_rw[3] = total;
        state_rw[2] = min(state_rw[0], total);
        state_rw[1] = 0u;
        if (state_rw[2] == 0u) {
            // Nothing to select: a prefix no key can exceed or equal.
            state_rw[1] = 0xffffffffu;
        }
    }
    let remaining = state_rw[2];
    if (remaining == 0u) {
        return;
    }
    var cum = 0u;
    for (var d = 255i; d >= 0; d--) {
        let c = hist_plain[u32(d)];
        if (cum + c >= remaining) {
            state_rw[1] = state_rw[1] | (u32(d) << p.shift);
            state_rw[2] = remaining - cum;
            return;
        }
        cum += c;
    }
}

var<workgroup> tie_flags: array<u32, 256>;

@compute @workgroup_size(WG)
fn select_tie_counts(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>,
                     @builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    var tie = 0u;
    if (i < p.n && tc_state[2] != 0u && tc_keys[i] == tc_state[1]) {
        tie = 1u;
    }
    tie_flags[lid.x] = tie;
    workgroupBarrier();
    if (lid.x == 0u) {
        var count = 0u;
        for (var t = 0u; t < WG; t++) {
            count += tie_flags[t];
        }
        block_counts[wid.x + wid.y * nwg.x] = count;
    }
}

@compute @workgroup_size(WG)
fn select_mark(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    let threshold = mk_state[1];
    let remaining = mk_state[2];
    var key = 0u;
    if (i < p.n) {
        key = mk_keys[i];
    }
    let tie = select(0u, 1u, i < p.n && remaining != 0u && key == threshold);
    tie_flags[lid.x] = tie;
    workgroupBarrier();
    // Rank of this tie among the block's ties (sequential: 256 adds, no float).
    var rank = block_prefix[wid.x + wid.y * nwg.x];
    for (var t = 0u; t < lid.x; t++) {
        rank += tie_flags[t];
    }
    if (i < p.n) {
        let above = key > threshold && remaining != 0u;
        selected[i] = select(0u, 1u, above || (tie == 1u && rank < remaining));
    }
}
