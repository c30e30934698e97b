// Softmax cross-entropy over feature-major logits z[class, sample], and on-device metric sums.
//
//   softmax_xent:  per sample b (one invocation each), numerically stable:
//                    m = max_c z[c,b];  lse = m + log Σ_c exp(z[c,b] − m)
//                    loss_b = lse − z[y_b, b]
//                    dz[c,b] = (softmax[c,b] − [c = y_b]) / batch      (gradient of the batch mean)
//                  and per-sample (loss_b, correct_b) into `sample` for the reduction below.
//   smoothed_xent: the same with label smoothing ε and a padding class (translation, spec §7.3):
//                  the target distribution puts 1 − ε on y_b, 0 on the padding class and
//                  ε / (classes − 2) on every other class (ε / (classes − 1) without padding);
//                    dz[c,b] = (softmax[c,b] − target[c,b]) · inv_norm   (inv_norm = 1 / tokens)
//                  and a sample whose label is the padding class has dz = 0, loss 0, correct 0.
//                  loss_b stays the token's negative log-likelihood lse − z[y_b, b] (perplexity);
//                  the gradient is that of the smoothed cross-entropy.
//   accumulate_metrics: one workgroup sums the per-sample values in a fixed tree order and adds
//                  them to metrics = [Σ loss, Σ correct, Σ counted, 0] (counted: the batch, or
//                  the non-padding tokens). The host reads `metrics` every N steps instead of
//                  after every step.

struct Params {
    classes: u32,
    batch: u32,
    counted: u32,
    _pad1: u32,
}

struct SmoothParams {
    classes: u32,
    batch: u32,
    pad: u32,        // the padding class; 0xffffffff when there is none
    _pad0: u32,
    smoothing: f32,
    inv_norm: f32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(0) var<uniform> q: SmoothParams;   // smoothed_xent only

// softmax_xent bindings
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> sample: array<f32>;   // [loss_0..loss_B, correct_0..correct_B]

// accumulate_metrics bindings
@group(0) @binding(1) var<storage, read> sample_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> metrics: array<f32>;

@compute @workgroup_size(WG)
fn softmax_xent(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    if (b >= p.batch) {
        return;
    }
    let n = p.batch;
    var best = logits[b];
    var arg = 0u;
    for (var c = 1u; c < p.classes; c++) {
        let z = logits[c * n + b];
        if (z > best) {
            best = z;
            arg = c;
        }
    }
    var sum = 0.0;
    for (var c = 0u; c < p.classes; c++) {
        sum += exp(logits[c * n + b] - best);
    }
    let label = min(labels[b], p.classes - 1u);
    let lse = best + log(sum);
    let inv_batch = 1.0 / f32(n);
    for (var c = 0u; c < p.classes; c++) {
        let prob = exp(logits[c * n + b] - lse);
        dlogits[c * n + b] = (prob - select(0.0, 1.0, c == label)) * inv_batch;
    }
    sample[b] = lse - logits[label * n + b];
    sample[n + b] = select(0.0, 1.0, arg == label);
}

@compute @workgroup_size(WG)
fn smoothed_xent(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    if (b >= q.batch) {
        return;
    }
    let n = q.batch;
    let label = min(labels[b], q.classes - 1u);
    if (label == q.pad) {
        for (var c = 0u; c < q.classes; c++) {
            dlogits[c * n + b] = 0.0;
        }
        sample[b] = 0.0;
        sample[n + b] = 0.0;
        return;
    }
    var best = logits[b];
    var arg = 0u;
    for (var c = 1u; c < q.classes; c++) {
        let z = logits[c * n + b];
        if (z > best) {
            best = z;
            arg = c;
        }
    }
    var sum = 0.0;
    for (var c = 0u; c < q.classes; c++) {
        sum += exp(logits[c * n + b] - best);
    }
    let lse = best + log(sum);
    // Classes that share ε: all but the label and the padding class.
    let others = q.classes - 1u - select(0u, 1u, q.pad < q.classes);
    let off = select(0.0, q.smoothing / f32(others), others > 0u);
    let on = select(1.0, 1.0 - q.smoothing, others > 0u);
    for (var c = 0u; c < q.classes; c++) {
        let prob = exp(logits[c * n + b] - lse);
        let want = select(select(off, 0.0, c == q.pad), on, c == label);
        dlogits[c * n + b] = (prob - want) * q.inv_norm;
    }
    sample[b] = lse - logits[label * n + b];
    sample[n + b] = select(0.0, 1.0, arg == label);
}

var<workgroup> partial_loss: array<f32, WG>;
var<workgroup> partial_correct: array<f32, WG>;

@compute @workgroup_size(WG)
fn accumulate_metrics(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    var loss = 0.0;
    var correct = 0.0;
    for (var b = t; b < p.batch; b += WG) {
        loss += sample_in[b];
        correct += sample_in[p.batch + b];
    }
    partial_loss[t] = loss;
    partial_correct[t] = correct;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (t < stride) {
            partial_loss[t] += partial_loss[t + stride];
            partial_correct[t] += partial_correct[t + stride];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        metrics[0] += partial_loss[0];
        metrics[1] += partial_correct[0];
        metrics[2] += f32(p.counted);
    }
}
