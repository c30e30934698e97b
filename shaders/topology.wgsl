// Mask and count bookkeeping of a topology update (spec §2–§4), all integer or same-order float
// work, so every backend produces the same masks.
//
//   removal_scores   per live link: WM |w|, RI |w|/(Σcol|w|+ε) + |w|/(Σrow|w|+ε), MEST |w| + f·|g|
//   abs_row_sums     per row: Σ |w| over its links (CSR order)
//   abs_col_sums     per column: Σ |w| over its links (CSC order, rows ascending)
//   mask_set_links   mask[r, c] = 1 for every live link whose flag is set
//   mask_or          a |= b
//   row_any/col_any  flags[i] = 1 if row / column i of the mask has a link
//   zero_rows/cols   clear rows / columns whose flag is 0
//   count_deficit    state[0] = target − min(target, have[0])   (links to regrow, on the device)
//   live_links       flags[k] = 1 for CSR slots below the live count

struct Params {
    rows: u32,
    cols: u32,
    kind: u32,        // removal_scores: 0 WM, 1 RI, 2 MEST
    wanted: u32,      // count_deficit
    epsilon: f32,     // RI ε
    factor: f32,      // MEST factor
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;

// removal_scores: row_ptr, row_of, col_idx, values, aux0, aux1, out
//   RI: aux0 = row sums of |w|, aux1 = column sums; MEST: aux0 = the links' gradient
@group(0) @binding(1) var<storage, read> rs_row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> rs_row_of: array<u32>;
@group(0) @binding(3) var<storage, read> rs_col_idx: array<u32>;
@group(0) @binding(4) var<storage, read> rs_values: array<f32>;
@group(0) @binding(5) var<storage, read> rs_aux0: array<f32>;
@group(0) @binding(6) var<storage, read> rs_aux1: array<f32>;
@group(0) @binding(7) var<storage, read_write> rs_out: array<f32>;

// abs_row_sums / abs_col_sums: ptr, perm (col sums only; identity otherwise), values, out
@group(0) @binding(1) var<storage, read> as_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> as_perm: array<u32>;
@group(0) @binding(3) var<storage, read> as_values: array<f32>;
@group(0) @binding(4) var<storage, read_write> as_out: array<f32>;

// mask_set_links: row_ptr, row_of, col_idx, flags, mask
@group(0) @binding(1) var<storage, read> ml_row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> ml_row_of: array<u32>;
@group(0) @binding(3) var<storage, read> ml_col_idx: array<u32>;
@group(0) @binding(4) var<storage, read> ml_flags: array<u32>;
@group(0) @binding(5) var<storage, read_write> ml_mask: array<u32>;

// mask_or: b, a
@group(0) @binding(1) var<storage, read> or_b: array<u32>;
@group(0) @binding(2) var<storage, read_write> or_a: array<u32>;

// row_any / col_any: mask, flags
@group(0) @binding(1) var<storage, read> any_mask: array<u32>;
@group(0) @binding(2) var<storage, read_write> any_flags: array<u32>;

// zero_rows / zero_cols: flags, mask
@group(0) @binding(1) var<storage, read> z_flags: array<u32>;
@group(0) @binding(2) var<storage, read_write> z_mask: array<u32>;

// count_deficit: have, state
@group(0) @binding(1) var<storage, read> cd_have: array<u32>;
@group(0) @binding(2) var<storage, read_write> cd_state: array<u32>;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn removal_scores(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= min(rs_row_ptr[p.rows], arrayLength(&rs_out))) {
        return;
    }
    let w = abs(rs_values[k]);
    var s = w;
    if (p.kind == 1u) {
        s = w / (rs_aux1[rs_col_idx[k]] + p.epsilon) + w / (rs_aux0[rs_row_of[k]] + p.epsilon);
    } else if (p.kind == 2u) {
        // A driver may fuse this into one FMA, so MEST scores can differ from the CPU twin in the
        // last bit (MEST is a baseline; the CH methods never multiply here).
        s = w + p.factor * abs(rs_aux0[k]);
    }
    rs_out[k] = s;
}

@compute @workgroup_size(WG)
fn abs_row_sums(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_id(gid, nwg);
    if (r >= p.rows) {
        return;
    }
    var acc = 0.0;
    for (var k = as_ptr[r]; k < as_ptr[r + 1u]; k++) {
        acc += abs(as_values[k]);
    }
    as_out[r] = acc;
}

@compute @workgroup_size(WG)
fn abs_col_sums(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = linear_id(gid, nwg);
    if (c >= p.cols) {
        return;
    }
    var acc = 0.0;
    for (var k = as_ptr[c]; k < as_ptr[c + 1u]; k++) {
        acc += abs(as_values[as_perm[k]]);
    }
    as_out[c] = acc;
}

@compute @workgroup_size(WG)
fn mask_set_links(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= min(ml_row_ptr[p.rows], arrayLength(&ml_flags))) {
        return;
    }
    if (ml_flags[k] != 0u) {
        ml_mask[ml_row_of[k] * p.cols + ml_col_idx[k]] = 1u;
    }
}

@compute @workgroup_size(WG)
fn mask_or(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.rows * p.cols) {
        return;
    }
    if (or_b[i] != 0u) {
        or_a[i] = 1u;
    }
}

@compute @workgroup_size(WG)
fn row_any(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_id(gid, nwg);
    if (r >= p.rows) {
        return;
    }
    var any = 0u;
    for (var c = 0u; c < p.cols; c++) {
        any = any | any_mask[r * p.cols + c];
    }
    any_flags[r] = select(0u, 1u, any != 0u);
}

@compute @workgroup_size(WG)
fn col_any(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = linear_id(gid, nwg);
    if (c >= p.cols) {
        return;
    }
    var any = 0u;
    for (var r = 0u; r < p.rows; r++) {
        any = any | any_mask[r * p.cols + c];
    }
    any_flags[c] = select(0u, 1u, any != 0u);
}

@compute @workgroup_size(WG)
fn zero_rows(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.rows * p.cols) {
        return;
    }
    if (z_flags[i / p.cols] == 0u) {
        z_mask[i] = 0u;
    }
}

@compute @workgroup_size(WG)
fn zero_cols(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.rows * p.cols) {
        return;
    }
    if (z_flags[i % p.cols] == 0u) {
        z_mask[i] = 0u;
    }
}

@compute @workgroup_size(1)
fn count_deficit() {
    cd_state[0] = p.wanted - min(p.wanted, cd_have[0]);
}

// live_links: flags[k] = 1 for the CSR slots holding a link (k < row_ptr[rows]), 0 for spare
// capacity — so the host never needs to know the live count.
@group(0) @binding(1) var<storage, read> ll_row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read_write> ll_flags: array<u32>;

@compute @workgroup_size(WG)
fn live_links(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= arrayLength(&ll_flags)) {
        return;
    }
    ll_flags[k] = select(0u, 1u, k < ll_row_ptr[p.rows]);
}
