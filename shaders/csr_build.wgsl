// CSR and CSC construction from a dense 0/1 mask, entirely on the device (integer-only, so exact
// and deterministic), plus moving values between CSR order and dense layout.
//
//   count_rows     counts[r] = links in row r                    (one invocation per row)
//   count_cols     counts[c] = links in column c                 (one invocation per column)
//   exclusive_scan ptr[0] = 0, ptr[i+1] = min(Σ_{j≤i} counts[j], capacity); status[slot] = true total
//                  (one workgroup: each invocation scans a contiguous chunk, then the chunk sums are
//                  scanned in workgroup memory)
//   fill_rows      col_idx, row_of, and pos[r·cols + c] = CSR index of link (r, c)
//   fill_cols      row_idx and perm (from pos), column by column, rows ascending
//   csr_gather     values[k] = dense[row_of[k]·cols + col_idx[k]]
//   csr_scatter    dense[row_of[k]·cols + col_idx[k]] = values[k]  (dense cleared beforehand)
//   csr_mask       mask[row_of[k]·cols + col_idx[k]] = 1             (mask cleared beforehand)
//
// Capacity: the index buffers are allocated for `capacity` links. If a mask has more, pointers are
// clamped (the extra links are dropped) and status[0] reports the true count, so the host can
// detect it whenever it next reads status.

struct Params {
    rows: u32,
    cols: u32,
    n: u32,          // length to scan (exclusive_scan)
    capacity: u32,
    slot: u32,       // status word the scan writes its true total to (0: rows, 1: columns)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;
const SCAN_WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;

// count_rows / count_cols
@group(0) @binding(1) var<storage, read> mask: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;

// exclusive_scan
@group(0) @binding(1) var<storage, read> scan_in: array<u32>;
@group(0) @binding(2) var<storage, read_write> scan_out: array<u32>;
@group(0) @binding(3) var<storage, read_write> status: array<u32>;

// fill_rows
@group(0) @binding(1) var<storage, read> fr_mask: array<u32>;
@group(0) @binding(2) var<storage, read> fr_row_ptr: array<u32>;
@group(0) @binding(3) var<storage, read_write> fr_col_idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> fr_row_of: array<u32>;
@group(0) @binding(5) var<storage, read_write> fr_pos: array<u32>;

// fill_cols
@group(0) @binding(1) var<storage, read> fc_mask: array<u32>;
@group(0) @binding(2) var<storage, read> fc_col_ptr: array<u32>;
@group(0) @binding(3) var<storage, read> fc_pos: array<u32>;
@group(0) @binding(4) var<storage, read_write> fc_row_idx: array<u32>;
@group(0) @binding(5) var<storage, read_write> fc_perm: array<u32>;

// csr_gather / csr_scatter
@group(0) @binding(1) var<storage, read> g_row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> g_row_of: array<u32>;
@group(0) @binding(3) var<storage, read> g_col_idx: array<u32>;
@group(0) @binding(4) var<storage, read> g_src: array<f32>;
@group(0) @binding(5) var<storage, read_write> g_dst: array<f32>;

// csr_mask
@group(0) @binding(1) var<storage, read> m_row_ptr: array<u32>;
@group(0) @binding(2) var<storage, read> m_row_of: array<u32>;
@group(0) @binding(3) var<storage, read> m_col_idx: array<u32>;
@group(0) @binding(4) var<storage, read_write> m_mask: array<u32>;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn count_rows(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_id(gid, nwg);
    if (r >= p.rows) {
        return;
    }
    var n = 0u;
    for (var c = 0u; c < p.cols; c++) {
        n += select(0u, 1u, mask[r * p.cols + c] != 0u);
    }
    counts[r] = n;
}

@compute @workgroup_size(WG)
fn count_cols(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = linear_id(gid, nwg);
    if (c >= p.cols) {
        return;
    }
    var n = 0u;
    for (var r = 0u; r < p.rows; r++) {
        n += select(0u, 1u, mask[r * p.cols + c] != 0u);
    }
    counts[c] = n;
}

var<workgroup> chunk_sums: array<u32, SCAN_WG>;

@compute @workgroup_size(SCAN_WG)
fn exclusive_scan(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let per = (p.n + SCAN_WG - 1u) / SCAN_WG;
    let begin = min(t * per, p.n);
    let end = min(begin + per, p.n);
    var local_sum = 0u;
    for (var i = begin; i < end; i++) {
        local_sum += scan_in[i];
    }
    chunk_sums[t] = local_sum;
    workgroupBarrier();
    // Hillis–Steele inclusive scan of the chunk sums.
    for (var stride = 1u; stride < SCAN_WG; stride *= 2u) {
        var add = 0u;
        if (t >= stride) {
            add = chunk_sums[t - stride];
        }
        workgroupBarrier();
        chunk_sums[t] += add;
        workgroupBarrier();
    }
    var running = chunk_sums[t] - local_sum;
    if (t == 0u) {
        scan_out[0] = 0u;
    }
    for (var i = begin; i < end; i++) {
        running += scan_in[i];
        scan_out[i + 1u] = min(running, p.capacity);
    }
    if (t == SCAN_WG - 1u) {
        status[p.slot] = chunk_sums[SCAN_WG - 1u];
    }
}

@compute @workgroup_size(WG)
fn fill_rows(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_id(gid, nwg);
    if (r >= p.rows) {
        return;
    }
    var k = fr_row_ptr[r];
    let end = fr_row_ptr[r + 1u];
    for (var c = 0u; c < p.cols; c++) {
        let at = r * p.cols + c;
        if (fr_mask[at] != 0u && k < end) {
            fr_col_idx[k] = c;
            fr_row_of[k] = r;
            fr_pos[at] = k;
            k++;
        }
    }
}

@compute @workgroup_size(WG)
fn fill_cols(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = linear_id(gid, nwg);
    if (c >= p.cols) {
        return;
    }
    var k = fc_col_ptr[c];
    let end = fc_col_ptr[c + 1u];
    for (var r = 0u; r < p.rows; r++) {
        let at = r * p.cols + c;
        if (fc_mask[at] != 0u && k < end) {
            fc_row_idx[k] = r;
            fc_perm[k] = fc_pos[at];
            k++;
        }
    }
}

@compute @workgroup_size(WG)
fn csr_gather(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= min(g_row_ptr[p.rows], arrayLength(&g_dst))) {
        return;
    }
    g_dst[k] = g_src[g_row_of[k] * p.cols + g_col_idx[k]];
}

@compute @workgroup_size(WG)
fn csr_scatter(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= min(g_row_ptr[p.rows], arrayLength(&g_src))) {
        return;
    }
    g_dst[g_row_of[k] * p.cols + g_col_idx[k]] = g_src[k];
}

@compute @workgroup_size(WG)
fn csr_mask(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= min(m_row_ptr[p.rows], p.capacity)) {
        return;
    }
    m_mask[m_row_of[k] * p.cols + m_col_idx[k]] = 1u;
}
