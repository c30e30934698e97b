//! Every WGSL kernel against its CPU twin on a real driver (lavapipe in CI), and every twin against
//! a naive dense reference: odd sizes, empty rows and columns, nnz = 0, densities 0.5 %…100 %,
//! several seeds. Outputs start as NaN so a kernel that writes nothing fails.

mod common;

use cht_train::gpu::ops::gemm::{CpuMask, GemmShape, gemm_cpu};
use cht_train::gpu::{
    Activation, AdamWStep, AttentionShape, DType, Device, Gemm, GemmKernel, LabelSmoothing,
    METRICS_LEN, MaskOn, RopeDirection, RopeTables, SgdStep, TokenIndex, Transpose,
};
use cht_train::sparse::{CsrPattern, Mask};
use common::{assert_close, cpu, gpu, key, poison, randn};

/// f32 sums over up to a few hundred terms, possibly contracted to FMA on the GPU.
const TOL: f32 = 1e-4;
const SIZES: [usize; 4] = [1, 7, 67, 131];
const DENSITIES: [f64; 6] = [0.0, 0.005, 0.02, 0.1, 0.5, 1.0];

/// Runs `f` on the CPU backend and, when there is one, on the GPU; asserts both agree and returns
/// the CPU result.
fn both(what: &str, f: impl Fn(&Device) -> Vec<f32>) -> Vec<f32> {
    let want = f(&cpu());
    if let Some(g) = gpu() {
        assert_close(&format!("{what} [GPU vs CPU twin]"), &f(g), &want, TOL);
    }
    want
}

/// Patterns covering the edge cases: random at several densities, plus one with an empty row and
/// an empty column.
fn patterns(rows: usize, cols: usize, seed: u32) -> Vec<CsrPattern> {
    let mut out: Vec<CsrPattern> = DENSITIES
        .iter()
        .map(|&d| CsrPattern::random(rows, cols, d, key(seed)).unwrap())
        .collect();
    if rows > 2 && cols > 2 {
        let mut m = CsrPattern::random(rows, cols, 0.6, key(seed + 100))
            .unwrap()
            .to_mask();
        for c in 0..cols {
            m.set(1, c, false);
        }
        for r in 0..rows {
            m.set(r, 2, false);
        }
        out.push(CsrPattern::from_mask(&m));
    }
    out
}

fn dense_product(rows: usize, cols: usize, batch: usize, w: &[f32], x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; rows * batch];
    for r in 0..rows {
        for c in 0..cols {
            for b in 0..batch {
                y[r * batch + b] += w[r * cols + c] * x[c * batch + b];
            }
        }
    }
    y
}

fn transpose(rows: usize, cols: usize, a: &[f32]) -> Vec<f32> {
    let mut t = vec![0.0; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

#[test]
fn sparse_forward_input_grad_and_weight_grad_match_twins_and_dense() {
    let mut cases = 0;
    for seed in [1, 2] {
        for &(rows, cols, batch) in &[
            (1, 1, 1),
            (7, 67, 5),
            (67, 7, 32),
            (131, 67, 7),
            (67, 131, 1),
        ] {
            for p in patterns(rows, cols, seed) {
                let what = format!("{rows}x{cols} batch {batch} nnz {} seed {seed}", p.nnz());
                let values = randn(p.nnz(), seed + 10);
                let x = randn(cols * batch, seed + 20);
                let dy = randn(rows * batch, seed + 30);
                let bias = randn(rows, seed + 40);
                let w_dense = p.scatter_dense(&values);
                // Extra capacity: slots past nnz must be ignored by every kernel.
                let capacity = p.nnz() + 3;
                let mut padded = values.clone();
                padded.resize(capacity, 0.0);

                let y = both(&format!("spmm_forward {what}"), |d| {
                    let w = d.upload_pattern("w", &p, capacity).unwrap();
                    let v = d.tensor_f32("values", capacity, 1, &padded).unwrap();
                    let xt = d.tensor_f32("x", cols, batch, &x).unwrap();
                    let bt = d.tensor_f32("bias", rows, 1, &bias).unwrap();
                    let yt = d
                        .tensor_f32("y", rows, batch, &poison(rows * batch))
                        .unwrap();
                    d.spmm_forward(&w, &v, &xt, Some(&bt), Activation::Relu, &yt)
                        .unwrap();
                    d.read_f32(&yt).unwrap()
                });
                let mut want = dense_product(rows, cols, batch, &w_dense, &x);
                for r in 0..rows {
                    for b in 0..batch {
                        let v = &mut want[r * batch + b];
                        *v = (*v + bias[r]).max(0.0);
                    }
                }
                assert_close(
                    &format!("spmm_forward {what} [twin vs dense]"),
                    &y,
                    &want,
                    TOL,
                );

                let dx = both(&format!("spmm_backward_input {what}"), |d| {
                    let w = d.upload_pattern("w", &p, capacity).unwrap();
                    let v = d.tensor_f32("values", capacity, 1, &padded).unwrap();
                    let dyt = d.tensor_f32("dy", rows, batch, &dy).unwrap();
                    let dxt = d
                        .tensor_f32("dx", cols, batch, &poison(cols * batch))
                        .unwrap();
                    d.spmm_backward_input(&w, &v, &dyt, &dxt).unwrap();
                    d.read_f32(&dxt).unwrap()
                });
                let want = dense_product(cols, rows, batch, &transpose(rows, cols, &w_dense), &dy);
                assert_close(
                    &format!("spmm_backward_input {what} [twin vs dense]"),
                    &dx,
                    &want,
                    TOL,
                );

                let dw = both(&format!("sddmm_weight_grad {what}"), |d| {
                    let w = d.upload_pattern("w", &p, capacity).unwrap();
                    let dyt = d.tensor_f32("dy", rows, batch, &dy).unwrap();
                    let xt = d.tensor_f32("x", cols, batch, &x).unwrap();
                    let dwt = d.tensor_f32("dw", capacity, 1, &poison(capacity)).unwrap();
                    d.sddmm_weight_grad(&w, &dyt, &xt, &dwt).unwrap();
                    let mut out = d.read_f32(&dwt).unwrap();
                    // Spare slots must stay untouched.
                    assert!(
                        out[p.nnz()..].iter().all(|v| v.is_nan()),
                        "{what}: wrote past nnz"
                    );
                    out.truncate(p.nnz());
                    out
                });
                let full = dense_product(rows, batch, cols, &dy, &transpose(cols, batch, &x));
                let want = p.gather_dense(&full).unwrap();
                assert_close(&format!("sddmm {what} [twin vs dense]"), &dw, &want, TOL);
                cases += 1;
            }
        }
    }
    assert!(cases >= 60, "only {cases} cases ran");
}

#[test]
fn dense_and_masked_gemm_match_twin_for_every_transpose() {
    for (seed, &(m, n, k)) in [
        (1, 1, 1),
        (7, 67, 131),
        (131, 7, 67),
        (67, 131, 7),
        (64, 64, 64),
        (130, 65, 33),
    ]
    .iter()
    .enumerate()
    {
        let seed = seed as u32;
        let mask_c = Mask::from_bools(
            m,
            n,
            randn(m * n, seed + 50).iter().map(|v| *v > 0.0).collect(),
        )
        .unwrap();
        let bias = randn(m, seed + 60);
        for ta in [Transpose::No, Transpose::Yes] {
            for tb in [Transpose::No, Transpose::Yes] {
                let (ar, ac) = if ta == Transpose::No { (m, k) } else { (k, m) };
                let (br, bc) = if tb == Transpose::No { (k, n) } else { (n, k) };
                let a = randn(ar * ac, seed + 1);
                let b = randn(br * bc, seed + 2);
                let mask_a: Vec<u32> = randn(ar * ac, seed + 3)
                    .iter()
                    .map(|v| u32::from(*v > 0.5))
                    .collect();
                let c0 = randn(m * n, seed + 4);
                for (variant, kernel) in
                    (0..4).flat_map(|v| [(v, GemmKernel::Registers), (v, GemmKernel::Tiled)])
                {
                    let what =
                        format!("gemm {m}x{n}x{k} {ta:?}/{tb:?} variant {variant} {kernel:?}");
                    let got = both(&what, |d| {
                        let at = d.tensor_f32("a", ar, ac, &a).unwrap();
                        let bt = d.tensor_f32("b", br, bc, &b).unwrap();
                        let init = if variant == 3 {
                            c0.clone()
                        } else {
                            poison(m * n)
                        };
                        let ct = d.tensor_f32("c", m, n, &init).unwrap();
                        let mat = d.tensor_u32("mask_a", ar, ac, &mask_a).unwrap();
                        let mct = d.tensor_u32("mask_c", m, n, &mask_c.to_u32()).unwrap();
                        let bi = d.tensor_f32("bias", m, 1, &bias).unwrap();
                        let mut cfg = Gemm::new(ta, tb);
                        cfg.kernel = kernel;
                        match variant {
                            1 => {
                                cfg.bias = Some(&bi);
                                cfg.act = Activation::Relu;
                            }
                            2 => cfg.mask = MaskOn::A(&mat),
                            3 => {
                                cfg.mask = MaskOn::C(&mct);
                                cfg.accumulate = true;
                            }
                            _ => {}
                        }
                        d.gemm(&cfg, &at, &bt, &ct).unwrap();
                        d.read_f32(&ct).unwrap()
                    });
                    // Independent reference: explicit op(A), op(B) and a naive triple loop.
                    let op_a = |i: usize, l: usize| {
                        let idx = if ta == Transpose::No {
                            i * k + l
                        } else {
                            l * m + i
                        };
                        if variant == 2 && mask_a[idx] == 0 {
                            0.0
                        } else {
                            a[idx]
                        }
                    };
                    let op_b = |l: usize, j: usize| {
                        if tb == Transpose::No {
                            b[l * n + j]
                        } else {
                            b[j * k + l]
                        }
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let mut v: f32 = (0..k).map(|l| op_a(i, l) * op_b(l, j)).sum();
                            if variant == 1 {
                                v = (v + bias[i]).max(0.0);
                            }
                            if variant == 3 {
                                v = if mask_c.get(i, j) { v } else { 0.0 } + c0[i * n + j];
                            }
                            let g = got[i * n + j];
                            assert!(
                                (g - v).abs() <= TOL * (1.0 + v.abs()) * 10.0,
                                "{what} ({i},{j}): {g} vs {v}"
                            );
                        }
                    }
                }
            }
        }
    }
    // The twin with an empty inner dimension writes the epilogue only.
    let mut c = [f32::NAN; 2];
    let s = GemmShape {
        m: 2,
        n: 1,
        k: 0,
        trans_a: Transpose::No,
        trans_b: Transpose::No,
    };
    gemm_cpu(
        s,
        &[],
        &[],
        Some(&[1.0, -1.0]),
        Activation::Relu,
        CpuMask::None,
        false,
        &mut c,
    );
    assert_eq!(c, [1.0, 0.0]);
}

#[test]
fn relu_backward_bias_grad_sgd_and_rng_match_twins() {
    for &(rows, batch) in &[(1, 1), (7, 67), (131, 7), (67, 131)] {
        let y: Vec<f32> = randn(rows * batch, 1).iter().map(|v| v.max(0.0)).collect();
        let dy = randn(rows * batch, 2);
        let what = format!("{rows}x{batch}");
        let got = both(&format!("relu_backward {what}"), |d| {
            let yt = d.tensor_f32("y", rows, batch, &y).unwrap();
            let dyt = d.tensor_f32("dy", rows, batch, &dy).unwrap();
            d.relu_backward(&yt, &dyt).unwrap();
            d.read_f32(&dyt).unwrap()
        });
        let want: Vec<f32> = y
            .iter()
            .zip(&dy)
            .map(|(&a, &g)| if a > 0.0 { g } else { 0.0 })
            .collect();
        assert_close(&format!("relu_backward {what}"), &got, &want, 0.0);

        let got = both(&format!("bias_grad {what}"), |d| {
            let dyt = d.tensor_f32("dy", rows, batch, &dy).unwrap();
            let db = d.tensor_f32("db", rows, 1, &poison(rows)).unwrap();
            d.bias_grad(&dyt, &db).unwrap();
            d.read_f32(&db).unwrap()
        });
        let want: Vec<f32> = (0..rows)
            .map(|r| dy[r * batch..(r + 1) * batch].iter().sum())
            .collect();
        assert_close(&format!("bias_grad {what}"), &got, &want, TOL);

        let n = rows * batch;
        let (g0, w0, v0) = (randn(n, 3), randn(n, 4), randn(n, 5));
        let got = both(&format!("sgd_momentum {what}"), |d| {
            let (g, w, v) = (
                d.tensor_f32("g", n, 1, &g0).unwrap(),
                d.tensor_f32("w", n, 1, &w0).unwrap(),
                d.tensor_f32("v", n, 1, &v0).unwrap(),
            );
            for step in 0..3 {
                d.sgd_momentum(SgdStep::new(0.1 / (step + 1) as f32, 0.9, 5e-4), &g, &w, &v)
                    .unwrap();
            }
            let mut out = d.read_f32(&w).unwrap();
            out.extend(d.read_f32(&v).unwrap());
            out
        });
        assert!(got.iter().all(|v| v.is_finite()));
        assert_ne!(got[..n], w0[..], "{what}: SGD did not change the weights");
    }
    // The RNG must be bit-identical across backends (masks depend on it).
    let k = cht_train::sparse::rng::RngKey::new(7, cht_train::sparse::rng::Stream::Regrowth, 3, 2);
    let got = both("fill_uniform", |d| {
        let t = d.tensor_f32("u", 1000, 1, &poison(1000)).unwrap();
        d.fill_uniform(k, 5, -1.0, 1.0, &t).unwrap();
        d.read_f32(&t).unwrap()
    });
    if let Some(g) = gpu() {
        let t = g.zeros("u", 1000, 1, DType::F32);
        g.fill_uniform(k, 5, -1.0, 1.0, &t).unwrap();
        assert_eq!(
            g.read_f32(&t).unwrap(),
            got,
            "GPU and CPU random numbers differ in some bit"
        );
    }
    assert_eq!(got[0], -1.0 + 2.0 * k.uniform(5));
}

#[test]
fn softmax_xent_and_metrics_match_twins() {
    for &(classes, batch) in &[(1, 1), (10, 7), (10, 67), (47, 131), (3, 256)] {
        let mut z = randn(classes * batch, 9);
        z[0] = 80.0; // large logits must stay finite
        let labels: Vec<u32> = (0..batch as u32)
            .map(|b| (b * 7 + 3) % classes as u32)
            .collect();
        let what = format!("softmax_xent {classes}x{batch}");
        let got = both(&what, |d| {
            let zt = d.tensor_f32("z", classes, batch, &z).unwrap();
            let lt = d.tensor_u32("labels", batch, 1, &labels).unwrap();
            let dz = d
                .tensor_f32("dz", classes, batch, &poison(classes * batch))
                .unwrap();
            let s = d
                .tensor_f32("sample", 2, batch, &poison(2 * batch))
                .unwrap();
            let m = d
                .tensor_f32("metrics", METRICS_LEN, 1, &[1.0, 2.0, 3.0, 0.0])
                .unwrap();
            d.softmax_xent(&zt, &lt, &dz, &s, &m).unwrap();
            d.softmax_xent(&zt, &lt, &dz, &s, &m).unwrap();
            let mut out = d.read_f32(&dz).unwrap();
            out.extend(d.read_f32(&m).unwrap());
            out
        });
        let (dz, metrics) = got.split_at(classes * batch);
        let mut loss = 0.0f64;
        let mut correct = 0.0;
        for b in 0..batch {
            let col: Vec<f64> = (0..classes).map(|c| f64::from(z[c * batch + b])).collect();
            let max = col.iter().cloned().fold(f64::MIN, f64::max);
            let lse = max + col.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            let y = labels[b] as usize;
            loss += lse - col[y];
            let arg = (0..classes).fold(0, |a, c| if col[c] > col[a] { c } else { a });
            correct += if arg == y { 1.0 } else { 0.0 };
            for c in 0..classes {
                let want = ((col[c] - lse).exp() - if c == y { 1.0 } else { 0.0 }) / batch as f64;
                assert!(
                    (f64::from(dz[c * batch + b]) - want).abs() < 1e-5,
                    "{what} dz"
                );
            }
        }
        let want = [
            1.0 + 2.0 * loss as f32,
            2.0 + 2.0 * correct as f32,
            3.0 + 2.0 * batch as f32,
            0.0,
        ];
        assert_close(&format!("{what} metrics"), metrics, &want, TOL);
    }
}

/// The label-smoothed loss with a padding class (translation): GPU against the twin, and the
/// twin against the f64 formula: `dz = (softmax − target) / tokens`, padded samples untouched by
/// gradient and metrics (`metrics[2]` counts the tokens), ε ∈ {0, 0.1}, with and without padding.
#[test]
fn smoothed_xent_and_metrics_match_twins() {
    for &(classes, batch) in &[(2, 1), (10, 7), (47, 131), (300, 67)] {
        for (smoothing, pad) in [(0.1f32, Some(1u32)), (0.0, Some(0)), (0.1, None)] {
            let mut z = randn(classes * batch, 11);
            z[0] = 80.0; // large logits must stay finite
            let labels: Vec<u32> = (0..batch as u32)
                .map(|b| (b * 5 + 1) % classes as u32)
                .collect();
            let tokens = labels.iter().filter(|&&y| Some(y) != pad).count();
            let ls = LabelSmoothing {
                smoothing,
                pad,
                tokens,
            };
            let what = format!("smoothed_xent {classes}x{batch} ε {smoothing} pad {pad:?}");
            let got = both(&what, |d| {
                let zt = d.tensor_f32("z", classes, batch, &z).unwrap();
                let lt = d.tensor_u32("labels", batch, 1, &labels).unwrap();
                let dz = d
                    .tensor_f32("dz", classes, batch, &poison(classes * batch))
                    .unwrap();
                let s = d
                    .tensor_f32("sample", 2, batch, &poison(2 * batch))
                    .unwrap();
                let m = d
                    .tensor_f32("metrics", METRICS_LEN, 1, &[1.0, 2.0, 3.0, 0.0])
                    .unwrap();
                d.smoothed_xent(&zt, &lt, &dz, &s, &m, &ls).unwrap();
                let mut out = d.read_f32(&dz).unwrap();
                out.extend(d.read_f32(&s).unwrap());
                out.extend(d.read_f32(&m).unwrap());
                out
            });
            let (dz, rest) = got.split_at(classes * batch);
            let (sample, metrics) = rest.split_at(2 * batch);
            let pad_c = pad.map_or(usize::MAX, |p| p as usize);
            let others = classes - 1 - usize::from(pad_c < classes);
            let (mut loss, mut correct) = (0.0f64, 0.0f64);
            for b in 0..batch {
                let y = labels[b] as usize;
                if y == pad_c {
                    assert!(
                        (0..classes).all(|c| dz[c * batch + b] == 0.0),
                        "{what} pad dz"
                    );
                    assert_eq!((sample[b], sample[batch + b]), (0.0, 0.0), "{what}");
                    continue;
                }
                let col: Vec<f64> = (0..classes).map(|c| f64::from(z[c * batch + b])).collect();
                let max = col.iter().cloned().fold(f64::MIN, f64::max);
                let lse = max + col.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                loss += lse - col[y];
                let arg = (0..classes).fold(0, |a, c| if col[c] > col[a] { c } else { a });
                correct += if arg == y { 1.0 } else { 0.0 };
                for c in 0..classes {
                    let want = if others == 0 {
                        if c == y { 1.0 } else { 0.0 }
                    } else if c == y {
                        1.0 - f64::from(smoothing)
                    } else if c == pad_c {
                        0.0
                    } else {
                        f64::from(smoothing) / others as f64
                    };
                    let grad = ((col[c] - lse).exp() - want) / tokens as f64;
                    assert!(
                        (f64::from(dz[c * batch + b]) - grad).abs() < 1e-5,
                        "{what} dz[{c},{b}]: {} vs {grad}",
                        dz[c * batch + b]
                    );
                }
            }
            let want = [
                1.0 + loss as f32,
                2.0 + correct as f32,
                3.0 + tokens as f32,
                0.0,
            ];
            assert_close(&format!("{what} metrics"), metrics, &want, TOL);
        }
    }
    // Bad arguments are errors, not garbage.
    let d = cpu();
    let z = d.tensor_f32("z", 3, 2, &[0.0; 6]).unwrap();
    let y = d.tensor_u32("y", 2, 1, &[0, 1]).unwrap();
    let s = d.tensor_f32("s", 2, 2, &[0.0; 4]).unwrap();
    let m = d.tensor_f32("m", METRICS_LEN, 1, &[0.0; 4]).unwrap();
    for bad in [
        LabelSmoothing {
            smoothing: 1.0,
            pad: None,
            tokens: 2,
        },
        LabelSmoothing {
            smoothing: f32::NAN,
            pad: None,
            tokens: 2,
        },
        LabelSmoothing {
            smoothing: 0.1,
            pad: Some(3),
            tokens: 2,
        },
        LabelSmoothing {
            smoothing: 0.1,
            pad: None,
            tokens: 3,
        },
    ] {
        assert!(
            d.smoothed_xent(&z, &y, &z, &s, &m, &bad).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn csr_build_gather_scatter_match_twin_and_host_pattern() {
    for seed in [1, 2, 3] {
        for &rows in &SIZES {
            for &cols in &[1, 7, 131] {
                for p in patterns(rows, cols, seed) {
                    let what = format!("build {rows}x{cols} nnz {} seed {seed}", p.nnz());
                    let mask = p.to_mask().to_u32();
                    let capacity = p.nnz() + 2;
                    let dense = randn(rows * cols, seed);
                    let run = |d: &Device| {
                        let b = d.csr_builder("b", rows, cols);
                        let m = d.tensor_u32("mask", rows, cols, &mask).unwrap();
                        let out = d.sparse_pattern("p", rows, cols, capacity);
                        d.build_pattern(&b, &m, &out).unwrap();
                        let dt = d.tensor_f32("dense", rows, cols, &dense).unwrap();
                        let vals = d
                            .tensor_f32("vals", capacity, 1, &poison(capacity))
                            .unwrap();
                        d.csr_gather(&out, &dt, &vals).unwrap();
                        let back = d
                            .tensor_f32("back", rows, cols, &poison(rows * cols))
                            .unwrap();
                        d.csr_scatter(&out, &vals, &back).unwrap();
                        // Overlay writes the links onto a poisoned matrix and keeps the rest.
                        let over = d
                            .tensor_f32("over", rows, cols, &poison(rows * cols))
                            .unwrap();
                        d.csr_overlay(&out, &vals, &over).unwrap();
                        let words = [
                            &out.row_ptr,
                            &out.col_idx,
                            &out.row_of,
                            &out.col_ptr,
                            &out.row_idx,
                            &out.perm,
                            &b.status,
                        ]
                        .iter()
                        .map(|t| d.read_u32(t).unwrap())
                        .collect::<Vec<_>>();
                        (
                            words,
                            d.read_f32(&vals).unwrap(),
                            d.read_f32(&back).unwrap(),
                            d.read_f32(&over).unwrap(),
                        )
                    };
                    let (words, vals, back, over) = run(&cpu());
                    let nnz = p.nnz();
                    let csc = p.csc();
                    assert_eq!(words[0], p.row_ptr(), "{what} row_ptr");
                    assert_eq!(&words[1][..nnz], p.col_idx(), "{what} col_idx");
                    assert_eq!(&words[2][..nnz], &p.row_of_links()[..], "{what} row_of");
                    assert_eq!(words[3], csc.col_ptr, "{what} col_ptr");
                    assert_eq!(&words[4][..nnz], &csc.row_idx[..], "{what} row_idx");
                    assert_eq!(&words[5][..nnz], &csc.perm[..], "{what} perm");
                    assert_eq!(words[6], [nnz as u32; 2], "{what} status");
                    assert_eq!(
                        &vals[..nnz],
                        &p.gather_dense(&dense).unwrap()[..],
                        "{what} gather"
                    );
                    let masked: Vec<f32> = dense
                        .iter()
                        .zip(&mask)
                        .map(|(&v, &m)| if m != 0 { v } else { 0.0 })
                        .collect();
                    assert_eq!(back, masked, "{what} scatter");
                    let overlaid: Vec<f32> = dense
                        .iter()
                        .zip(&mask)
                        .zip(poison(rows * cols))
                        .map(|((&v, &m), old)| if m != 0 { v } else { old })
                        .collect();
                    assert_eq!(bits(&over), bits(&overlaid), "{what} overlay");
                    if let Some(g) = gpu() {
                        let (gw, gv, gb, go) = run(g);
                        for (i, (a, b)) in gw.iter().zip(&words).enumerate() {
                            // Words past nnz are unspecified scratch, except in the pointer arrays.
                            let n = if i == 0 || i == 3 || i == 6 {
                                a.len()
                            } else {
                                nnz
                            };
                            assert_eq!(a[..n], b[..n], "{what}: GPU array {i} differs");
                        }
                        assert_eq!(gv[..nnz], vals[..nnz], "{what}: GPU gather");
                        assert_eq!(gb, back, "{what}: GPU scatter");
                        assert_eq!(bits(&go), bits(&over), "{what}: GPU overlay");
                    }
                }
            }
        }
    }
}

#[test]
fn csr_build_overflow_is_clamped_and_reported() {
    let p = CsrPattern::random(67, 131, 0.2, key(9)).unwrap();
    let mask = p.to_mask().to_u32();
    let mut devices = vec![cpu()];
    let check = |d: &Device| {
        let b = d.csr_builder("b", 67, 131);
        let m = d.tensor_u32("mask", 67, 131, &mask).unwrap();
        let out = d.sparse_pattern("p", 67, 131, 100);
        d.build_pattern(&b, &m, &out).unwrap();
        let status = d.read_u32(&b.status).unwrap();
        assert_eq!(status, [p.nnz() as u32; 2]);
        // Clamped, but still a valid pattern with exactly `capacity` links.
        assert_eq!(d.download_pattern(&out).unwrap().nnz(), 100);
    };
    check(&devices.remove(0));
    if let Some(g) = gpu() {
        check(g);
    }
}

#[test]
fn shape_dtype_and_alias_errors_are_results_not_panics() {
    let d = cpu();
    let p = CsrPattern::random(5, 4, 0.5, key(1)).unwrap();
    let w = d.upload_pattern("w", &p, 0).unwrap();
    let v = d.zeros("v", p.nnz(), 1, DType::F32);
    let x = d.zeros("x", 4, 3, DType::F32);
    let wrong = d.zeros("wrong", 3, 3, DType::F32);
    let y = d.zeros("y", 5, 3, DType::F32);
    assert!(matches!(
        d.spmm_forward(&w, &v, &wrong, None, Activation::None, &y),
        Err(cht_train::gpu::Error::Shape { .. })
    ));
    let labels = d.zeros("labels", 3, 1, DType::F32);
    let m = d.zeros("m", METRICS_LEN, 1, DType::F32);
    let s = d.zeros("s", 2, 3, DType::F32);
    assert!(matches!(
        d.softmax_xent(&y, &labels, &y, &s, &m),
        Err(cht_train::gpu::Error::DType { .. })
    ));
    let sq = d.zeros("sq", 4, 4, DType::F32);
    assert!(matches!(
        d.relu_backward(&sq, &sq),
        Err(cht_train::gpu::Error::Aliased(..))
    ));
    assert!(d.write_f32(&x, &[1.0]).is_err());
    assert!(matches!(
        d.gemm(&Gemm::new(Transpose::No, Transpose::No), &x, &x, &y),
        Err(cht_train::gpu::Error::Shape { .. })
    ));
    if let Some(g) = gpu() {
        let cpu_tensor = d.zeros("cpu", 1, 1, DType::F32);
        assert!(matches!(
            g.relu_backward(&cpu_tensor, &cpu_tensor),
            Err(cht_train::gpu::Error::WrongBackend { .. })
        ));
    }
}

/// Transformer kernels (RMSNorm, AdamW): GPU vs twin at odd sizes, outputs starting as NaN; the
/// twins' gradients are checked against finite differences in `cht-gpu`'s unit tests.
#[test]
fn rmsnorm_and_adamw_match_twins() {
    for &(d, tokens) in &[(1, 1), (7, 5), (67, 131), (131, 3)] {
        let x = randn(d * tokens, 11);
        let gain: Vec<f32> = randn(d, 12).iter().map(|v| 1.0 + 0.1 * v).collect();
        let dy = randn(d * tokens, 13);
        let what = format!("rmsnorm {d}x{tokens}");
        let run = |dev: &Device| {
            let xt = dev.tensor_f32("x", d, tokens, &x).unwrap();
            let gt = dev.tensor_f32("gain", d, 1, &gain).unwrap();
            let yt = dev.tensor_f32("y", d, tokens, &poison(d * tokens)).unwrap();
            let rt = dev.tensor_f32("rstd", tokens, 1, &poison(tokens)).unwrap();
            let dyt = dev.tensor_f32("dy", d, tokens, &dy).unwrap();
            let dxt = dev
                .tensor_f32("dx", d, tokens, &poison(d * tokens))
                .unwrap();
            let dgt = dev.tensor_f32("dgain", d, 1, &poison(d)).unwrap();
            dev.rmsnorm_forward(&xt, &gt, 1e-5, &yt, &rt).unwrap();
            dev.rmsnorm_backward(&xt, &gt, &rt, &dyt, &dxt, &dgt)
                .unwrap();
            [&yt, &rt, &dxt, &dgt]
                .iter()
                .flat_map(|t| dev.read_f32(t).unwrap())
                .collect::<Vec<f32>>()
        };
        let out = both(&what, run);
        assert!(
            out.iter().all(|v| v.is_finite()),
            "{what}: a value was not written"
        );
        // Each column of the output has unit RMS when the gain is 1: check one via the twin's y.
        let (y, r) = (&out[..d * tokens], &out[d * tokens..d * tokens + tokens]);
        let rms = |t: usize| {
            ((0..d).map(|i| (x[i * tokens + t]).powi(2)).sum::<f32>() / d as f32 + 1e-5).sqrt()
        };
        assert!(
            (r[0] - 1.0 / rms(0)).abs() < 1e-4 * r[0].abs().max(1.0),
            "{what}: rstd"
        );
        assert!(
            (y[0] - gain[0] * x[0] / rms(0)).abs() < 1e-4 * (1.0 + y[0].abs()),
            "{what}: y"
        );
    }
    let n = 1031;
    let grad = randn(n, 21);
    let w0 = randn(n, 22);
    let out = both("adamw", |dev| {
        let g = dev.tensor_f32("grad", n, 1, &grad).unwrap();
        let w = dev.tensor_f32("w", n, 1, &w0).unwrap();
        let m = dev.zeros("m", n, 1, DType::F32);
        let v = dev.zeros("v", n, 1, DType::F32);
        for t in 1..=3 {
            let step = AdamWStep {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.1,
                t,
            };
            dev.adamw(step, &g, &w, &m, &v).unwrap();
        }
        [&w, &m, &v]
            .iter()
            .flat_map(|t| dev.read_f32(t).unwrap())
            .collect::<Vec<f32>>()
    });
    // Three identical gradients: bias-corrected moments equal g and g², so each step moves w by
    // lr·sign(g) (for |g| ≫ eps) after the decay.
    let mut w = w0[0];
    for _ in 0..3 {
        w = w * (1.0 - 1e-3) - 1e-2 * grad[0].signum();
    }
    assert!((out[0] - w).abs() < 1e-4, "adamw: {} vs {w}", out[0]);
}

/// Rotary embeddings, SwiGLU and the token embedding: GPU vs twin at odd sizes (outputs start as
/// NaN), plus properties that do not depend on the twin: backward rotation inverts forward, and
/// the embedding gradient is the gather's transpose.
#[test]
fn rope_swiglu_and_embedding_match_twins() {
    // rope: 3 heads of 6 dims, 7 tokens over positions 0..5 (wrapping), forward then backward.
    let (heads, hd, tokens, seq) = (3, 6, 7, 5);
    let rows = heads * hd;
    let tables = RopeTables::new(hd, seq, 10_000.0).unwrap();
    let x = randn(rows * tokens, 31);
    let out = both("rope", |dev| {
        let xt = dev.tensor_f32("x", rows, tokens, &x).unwrap();
        let c = dev.tensor_f32("cos", seq, hd / 2, &tables.cos).unwrap();
        let s = dev.tensor_f32("sin", seq, hd / 2, &tables.sin).unwrap();
        let y = dev
            .tensor_f32("y", rows, tokens, &poison(rows * tokens))
            .unwrap();
        let back = dev
            .tensor_f32("back", rows, tokens, &poison(rows * tokens))
            .unwrap();
        dev.rope(&xt, &c, &s, hd, RopeDirection::Forward, &y)
            .unwrap();
        dev.rope(&y, &c, &s, hd, RopeDirection::Backward, &back)
            .unwrap();
        [dev.read_f32(&y).unwrap(), dev.read_f32(&back).unwrap()].concat()
    });
    assert!(
        out.iter().all(|v| v.is_finite()),
        "rope: a value was not written"
    );
    assert_close("rope backward ∘ forward", &out[rows * tokens..], &x, 1e-5);

    // swiglu on an odd length.
    let n = 1027;
    let (a, b, dh) = (randn(n, 41), randn(n, 42), randn(n, 43));
    let out = both("swiglu", |dev| {
        let at = dev.tensor_f32("gate", n, 1, &a).unwrap();
        let bt = dev.tensor_f32("up", n, 1, &b).unwrap();
        let dht = dev.tensor_f32("dh", n, 1, &dh).unwrap();
        let h = dev.tensor_f32("h", n, 1, &poison(n)).unwrap();
        let da = dev.tensor_f32("dgate", n, 1, &poison(n)).unwrap();
        let db = dev.tensor_f32("dup", n, 1, &poison(n)).unwrap();
        dev.swiglu_forward(&at, &bt, &h).unwrap();
        dev.swiglu_backward(&at, &bt, &dht, &da, &db).unwrap();
        [&h, &da, &db]
            .iter()
            .flat_map(|t| dev.read_f32(t).unwrap())
            .collect::<Vec<f32>>()
    });
    assert!(
        out.iter().all(|v| v.is_finite()),
        "swiglu: a value was not written"
    );

    // embedding: vocabulary 67 with unused ids, 131 positions, d = 7.
    let (vocab, d, tokens) = (67, 7, 131);
    let ids: Vec<u32> = (0..tokens as u32).map(|t| (t * 37 + 5) % 61).collect();
    let ix = TokenIndex::new(&ids, vocab).unwrap();
    let table = randn(vocab * d, 51);
    let dx = randn(d * tokens, 52);
    let out = both("embedding", |dev| {
        let tt = dev.tensor_f32("table", vocab, d, &table).unwrap();
        let it = dev.tensor_u32("ids", tokens, 1, &ix.ids).unwrap();
        let ot = dev
            .tensor_u32("offsets", vocab + 1, 1, &ix.offsets)
            .unwrap();
        let pt = dev
            .tensor_u32("positions", tokens, 1, &ix.positions)
            .unwrap();
        let xt = dev.tensor_f32("x", d, tokens, &poison(d * tokens)).unwrap();
        let dxt = dev.tensor_f32("dx", d, tokens, &dx).unwrap();
        let dtt = dev
            .tensor_f32("dtable", vocab, d, &poison(vocab * d))
            .unwrap();
        dev.embedding_gather(&tt, &it, &xt).unwrap();
        dev.embedding_grad(&dxt, &ot, &pt, &dtt).unwrap();
        [dev.read_f32(&xt).unwrap(), dev.read_f32(&dtt).unwrap()].concat()
    });
    let (x, dt) = out.split_at(d * tokens);
    assert!(
        out.iter().all(|v| v.is_finite()),
        "embedding: a value was not written"
    );
    assert_eq!(x[3 * tokens + 10], table[ids[10] as usize * d + 3]);
    let lhs: f64 = x.iter().zip(&dx).map(|(a, b)| f64::from(a * b)).sum();
    let rhs: f64 = table.iter().zip(dt).map(|(a, b)| f64::from(a * b)).sum();
    assert!(
        (lhs - rhs).abs() < 1e-3,
        "embedding: <gather, dx> {lhs} vs <table, grad> {rhs}"
    );
    let cpu = Device::cpu();
    let bad = cpu.tensor_u32("ids", 2, 1, &[0, vocab as u32]).unwrap();
    let tt = cpu.tensor_f32("table", vocab, d, &table).unwrap();
    let xt = cpu.zeros("x", d, 2, DType::F32);
    assert!(
        cpu.embedding_gather(&tt, &bad, &xt).is_err(),
        "out-of-vocabulary id must be an error"
    );
}

/// Causal attention forward and backward: GPU vs twin (odd head sizes, one-token sequences,
/// several sequences per batch); the twin is checked against finite differences in `cht-gpu`.
#[test]
fn attention_matches_twin() {
    for &(head_dim, heads, seq, batch) in
        &[(1, 1, 1, 1), (5, 3, 7, 2), (64, 2, 33, 1), (7, 1, 67, 3)]
    {
        let shape = AttentionShape {
            head_dim,
            heads,
            seq,
            batch,
        };
        let (rows, tokens, nq) = (head_dim * heads, seq * batch, shape.queries());
        let n = rows * tokens;
        let (q, k, v, dout) = (randn(n, 61), randn(n, 62), randn(n, 63), randn(n, 64));
        let what = format!("attention hd {head_dim} heads {heads} seq {seq} batch {batch}");
        let out = both(&what, |dev| {
            let t = |label: &str, data: &[f32]| dev.tensor_f32(label, rows, tokens, data).unwrap();
            let (qt, kt, vt, dot) = (t("q", &q), t("k", &k), t("v", &v), t("dout", &dout));
            let (o, dq, dk, dv) = (
                t("o", &poison(n)),
                t("dq", &poison(n)),
                t("dk", &poison(n)),
                t("dv", &poison(n)),
            );
            let lse = dev.tensor_f32("lse", nq, 1, &poison(nq)).unwrap();
            let d = dev.tensor_f32("d", nq, 1, &poison(nq)).unwrap();
            dev.attention_forward(shape, &qt, &kt, &vt, &o, &lse)
                .unwrap();
            dev.attention_backward(shape, (&qt, &kt, &vt), (&o, &lse, &dot), &d, &dq, &dk, &dv)
                .unwrap();
            [&o, &lse, &dq, &dk, &dv]
                .iter()
                .flat_map(|t| dev.read_f32(t).unwrap())
                .collect::<Vec<f32>>()
        });
        assert!(
            out.iter().all(|x| x.is_finite()),
            "{what}: a value was not written"
        );
        // The first query of every sequence and head attends only to itself.
        for h in 0..heads {
            for c in 0..head_dim {
                let idx = (h * head_dim + c) * tokens;
                assert!((out[idx] - v[idx]).abs() < 1e-5, "{what}: o at position 0");
            }
        }
    }
    let cpu = Device::cpu();
    let too_wide = AttentionShape {
        head_dim: 129,
        heads: 1,
        seq: 1,
        batch: 1,
    };
    let x = cpu.zeros("x", 129, 1, DType::F32);
    let lse = cpu.zeros("lse", 1, 1, DType::F32);
    let o = cpu.zeros("o", 129, 1, DType::F32);
    assert!(
        cpu.attention_forward(too_wide, &x, &x, &x, &o, &lse)
            .is_err()
    );
}

/// Global-norm clipping (sum of squares per tensor, factor, scaling — all on the device) and the
/// residual add: GPU vs twin, with the norm checked against an f64 reference.
#[test]
fn clip_grad_norm_and_add_assign_match_twins() {
    let sizes = [1usize, 257, 1031];
    let data: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| randn(n, 70 + i as u32))
        .collect();
    let norm: f64 = data
        .iter()
        .flatten()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        .sqrt();
    for max_norm in [1.0f32, 1e3] {
        let out = both(&format!("clip_grad_norm max {max_norm}"), |dev| {
            let ts: Vec<_> = data
                .iter()
                .map(|v| dev.tensor_f32("grad", v.len(), 1, v).unwrap())
                .collect();
            let refs: Vec<&_> = ts.iter().collect();
            let slots = dev.tensor_f32("slots", 3, 1, &poison(3)).unwrap();
            let factor = dev.tensor_f32("factor", 2, 1, &poison(2)).unwrap();
            dev.clip_grad_norm(&refs, max_norm, &slots, &factor)
                .unwrap();
            let mut out = dev.read_f32(&factor).unwrap();
            for t in &ts {
                out.extend(dev.read_f32(t).unwrap());
            }
            out
        });
        assert!(
            (f64::from(out[1]) - norm).abs() < 1e-4 * norm,
            "norm {} vs {norm}",
            out[1]
        );
        let want = (f64::from(max_norm) / norm).min(1.0);
        assert!(
            (f64::from(out[0]) - want).abs() < 1e-5,
            "factor {} vs {want}",
            out[0]
        );
        let clipped: f64 = out[2..]
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(
            clipped <= f64::from(max_norm) * 1.0001 || max_norm > 1.0,
            "clipped norm {clipped}"
        );
    }
    let (x, y) = (randn(1031, 80), randn(1031, 81));
    let out = both("add_assign", |dev| {
        let xt = dev.tensor_f32("x", 1031, 1, &x).unwrap();
        let yt = dev.tensor_f32("y", 1031, 1, &y).unwrap();
        dev.add_assign(&xt, &yt).unwrap();
        dev.read_f32(&yt).unwrap()
    });
    assert_eq!(out[5], x[5] + y[5]);
}

/// Bit patterns, so that NaN poison compares equal to itself.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Views: parts of one storage written, read and used by kernels on their own and as one tensor.
#[test]
fn stacked_views_read_write_and_bind_like_tensors() {
    let out = both("views", |dev| {
        let (whole, parts) = dev
            .zeros_stacked(
                "stack",
                &[("a", 3, 5), ("b", 64, 1), ("c", 2, 3)],
                DType::F32,
            )
            .unwrap();
        // a: 15 elements padded to 64; b: 64; c: 6 → 192 in all.
        assert_eq!(whole.len(), 192);
        dev.write_f32(&parts[0], &randn(15, 1)).unwrap();
        dev.write_f32(&parts[1], &randn(64, 2)).unwrap();
        dev.write_f32(&parts[2], &randn(6, 3)).unwrap();
        // A kernel on a view: c += a copy of a's first 6 elements. (Reading one view and writing
        // another of the same storage in one op is refused: wgpu tracks usage per buffer.)
        let a6 = whole.view("a6", 0, 6, 1).unwrap();
        let c6 = whole.view("c6", 128, 6, 1).unwrap();
        let copy = dev.zeros("copy", 6, 1, DType::F32);
        dev.copy(&a6, &copy).unwrap();
        dev.add_assign(&copy, &c6).unwrap();
        dev.clear(&parts[1]).unwrap();
        let mut out = dev.read_f32(&whole).unwrap();
        out.extend(dev.read_f32(&parts[2]).unwrap());
        out
    });
    let (a, c) = (randn(15, 1), randn(6, 3));
    assert_eq!(&out[..15], &a[..]);
    assert!(
        out[15..128].iter().all(|&v| v == 0.0),
        "padding and the cleared part are zero"
    );
    for i in 0..6 {
        assert_eq!(out[128 + i], c[i] + a[i]);
        assert_eq!(out[192 + i], out[128 + i]);
    }
    let d = cpu();
    let t = d.zeros("t", 256, 1, DType::F32);
    let (a, b) = (
        t.view("a", 0, 6, 1).unwrap(),
        t.view("b", 64, 6, 1).unwrap(),
    );
    assert!(
        d.add_assign(&a, &b).is_err(),
        "one storage read and written by one op"
    );
    assert!(t.view("bad", 3, 4, 1).is_err(), "unaligned view");
    assert!(t.view("bad", 192, 65, 1).is_err(), "view past the end");
    let (_, p) = d
        .zeros_stacked("s", &[("x", 4, 16), ("y", 2, 16), ("z", 1, 3)], DType::F32)
        .unwrap();
    let xy = d.stacked_rows("xy", &[&p[0], &p[1]]).expect("contiguous");
    assert_eq!((xy.rows(), xy.cols()), (6, 16));
    assert!(
        d.stacked_rows("yz", &[&p[1], &p[2]]).is_none(),
        "columns differ"
    );
    assert!(
        d.stacked_rows("xz", &[&p[0], &p[2]]).is_none(),
        "not back to back"
    );
}

/// The fused optimizer over a parameter arena (one and several chunks) against its twin, and
/// against the per-tensor AdamW after per-tensor clipping.
#[test]
fn param_arena_adamw_and_sgd_match_twins_and_per_tensor_steps() {
    let shapes = [
        ("w0", 7, 13),
        ("b0", 7, 1),
        ("w1", 131, 67),
        ("g", 1, 1),
        ("e", 0, 5),
    ];
    let step = |t| AdamWStep {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        t,
    };
    for chunk in [None, Some(8832), Some(9000)] {
        for clip in [None, Some(0.5f32), Some(1e4)] {
            let what = format!("adamw_arena chunk {chunk:?} clip {clip:?}");
            let fused = both(&what, |dev| {
                let (arena, slots) = dev.param_arena_limited("m", &shapes, 2, chunk).unwrap();
                let chunks = match chunk {
                    None => 1,
                    Some(8832) => 3, // [w0 b0] [w1] [g e]
                    _ => 2,          // [w0 b0] [w1 g e]
                };
                assert_eq!(arena.chunks().len(), chunks);
                let mut out = Vec::new();
                for t in 1..=3u32 {
                    for (i, s) in slots.iter().enumerate() {
                        let n = s.value.len();
                        if t == 1 {
                            dev.write_f32(&s.value, &randn(n, 10 + i as u32)).unwrap();
                        }
                        dev.write_f32(&s.grad, &randn(n, 20 * t + i as u32))
                            .unwrap();
                    }
                    dev.adamw_arena(&arena, step(t), clip).unwrap();
                    dev.submit().unwrap();
                }
                for s in &slots {
                    out.extend(dev.read_f32(&s.value).unwrap());
                    out.extend(dev.read_f32(&s.state[0]).unwrap());
                    out.extend(dev.read_f32(&s.state[1]).unwrap());
                }
                if clip.is_some() {
                    out.extend(dev.read_f32(&arena.clip).unwrap());
                }
                out
            });
            // The same steps tensor by tensor (clip_grad_norm sums in another order: close, not
            // bit-equal).
            let d = cpu();
            let ts: Vec<_> = shapes
                .iter()
                .enumerate()
                .map(|(i, &(_, r, c))| {
                    let v = d
                        .tensor_f32("v", r, c, &randn(r * c, 10 + i as u32))
                        .unwrap();
                    let z = || d.zeros("z", r, c, DType::F32);
                    (v, z(), z(), z())
                })
                .collect();
            for t in 1..=3u32 {
                for (i, (v, g, _, _)) in ts.iter().enumerate() {
                    d.write_f32(g, &randn(v.len(), 20 * t + i as u32)).unwrap();
                }
                if let Some(max_norm) = clip {
                    let grads: Vec<_> = ts.iter().map(|x| &x.1).collect();
                    let slots = d.zeros("slots", grads.len(), 1, DType::F32);
                    let f = d.zeros("f", 2, 1, DType::F32);
                    d.clip_grad_norm(&grads, max_norm, &slots, &f).unwrap();
                }
                for (v, g, m, s) in &ts {
                    d.adamw(step(t), g, v, m, s).unwrap();
                }
            }
            let mut want = Vec::new();
            for (v, _, m, s) in &ts {
                for x in [v, m, s] {
                    want.extend(d.read_f32(x).unwrap());
                }
            }
            assert_close(&what, &fused[..want.len()], &want, 1e-5);
        }
    }
    let sgd = both("sgd_arena", |dev| {
        let (arena, slots) = dev
            .param_arena_limited("m", &shapes, 1, Some(8832))
            .unwrap();
        for (i, s) in slots.iter().enumerate() {
            dev.write_f32(&s.value, &randn(s.value.len(), 30 + i as u32))
                .unwrap();
            dev.write_f32(&s.grad, &randn(s.value.len(), 40 + i as u32))
                .unwrap();
        }
        dev.sgd_arena(&arena, SgdStep::new(0.1, 0.9, 5e-4)).unwrap();
        dev.sgd_arena(&arena, SgdStep::new(0.1, 0.9, 5e-4)).unwrap();
        slots
            .iter()
            .flat_map(|s| dev.read_f32(&s.value).unwrap())
            .collect()
    });
    assert_eq!(sgd.len(), 7 * 13 + 7 + 131 * 67 + 1);
    let d = cpu();
    let (arena, _) = d.param_arena("m", &shapes, 1).unwrap();
    assert!(d.adamw_arena(&arena, step(1), None).is_err(), "SGD arena");
}

/// The fused sparse backward pass (weight gradient and input gradient in one dispatch, the input
/// gradient optionally accumulated), the accumulating sparse forward, the accumulating RMSNorm
/// backward and the pattern mask: GPU vs twin and vs dense references, odd sizes, empty rows and
/// columns, nnz = 0, spare capacity.
#[test]
fn fused_sparse_backward_and_accumulating_epilogues_match_twins() {
    for seed in [3, 4] {
        for &(rows, cols, batch) in &[(1, 1, 1), (7, 67, 5), (67, 7, 32), (131, 67, 7)] {
            for p in patterns(rows, cols, seed) {
                let what = format!("{rows}x{cols} batch {batch} nnz {} seed {seed}", p.nnz());
                let capacity = p.nnz() + 5;
                let mut values = randn(p.nnz(), seed + 1);
                let w_dense = p.scatter_dense(&values);
                values.resize(capacity, 0.0);
                let (x, dy) = (randn(cols * batch, seed + 2), randn(rows * batch, seed + 3));
                let (old_dx, old_y) =
                    (randn(cols * batch, seed + 4), randn(rows * batch, seed + 5));
                let out = both(
                    &format!("sparse_backward + spmm_forward_with {what}"),
                    |d| {
                        let w = d.upload_pattern("w", &p, capacity).unwrap();
                        let v = d.tensor_f32("values", capacity, 1, &values).unwrap();
                        let xt = d.tensor_f32("x", cols, batch, &x).unwrap();
                        let dyt = d.tensor_f32("dy", rows, batch, &dy).unwrap();
                        let dw = d.tensor_f32("dw", capacity, 1, &poison(capacity)).unwrap();
                        let dx = d.tensor_f32("dx", cols, batch, &old_dx).unwrap();
                        d.sparse_backward(&w, &v, &dyt, Some(&dw), Some(&xt), Some((&dx, true)))
                            .unwrap();
                        let y = d.tensor_f32("y", rows, batch, &old_y).unwrap();
                        let epilogue = cht_train::gpu::Epilogue {
                            accumulate: true,
                            ..Default::default()
                        };
                        d.spmm_forward_with(&w, &v, &xt, &epilogue, &y).unwrap();
                        let mask = d.zeros("mask", rows, cols, DType::U32);
                        d.write_u32(&mask, &vec![7; rows * cols]).unwrap();
                        d.pattern_mask(&w, &mask).unwrap();
                        let mut out = d.read_f32(&dw).unwrap()[..p.nnz()].to_vec();
                        out.extend(d.read_f32(&dx).unwrap());
                        out.extend(d.read_f32(&y).unwrap());
                        out.extend(d.read_u32(&mask).unwrap().iter().map(|&m| m as f32));
                        out
                    },
                );
                // References: dW on the links, dx = old + Wᵀ·dy, y = old + W·x, the 0/1 mask.
                let dense_dw = dense_product(rows, batch, cols, &dy, &transpose(cols, batch, &x));
                let want_dw = p.gather_dense(&dense_dw).unwrap();
                let mut want_dx =
                    dense_product(cols, rows, batch, &transpose(rows, cols, &w_dense), &dy);
                want_dx.iter_mut().zip(&old_dx).for_each(|(a, b)| *a += b);
                let mut want_y = dense_product(rows, cols, batch, &w_dense, &x);
                want_y.iter_mut().zip(&old_y).for_each(|(a, b)| *a += b);
                let want_mask: Vec<f32> = p.to_mask().to_u32().iter().map(|&m| m as f32).collect();
                let (n, cb, rb) = (p.nnz(), cols * batch, rows * batch);
                assert_close(&format!("dW {what}"), &out[..n], &want_dw, TOL);
                assert_close(&format!("dx {what}"), &out[n..n + cb], &want_dx, TOL);
                assert_close(
                    &format!("y {what}"),
                    &out[n + cb..n + cb + rb],
                    &want_y,
                    TOL,
                );
                assert_eq!(&out[n + cb + rb..], &want_mask[..], "mask {what}");
            }
        }
    }
    for &(d, tokens) in &[(1, 1), (7, 5), (67, 131)] {
        let (x, dy, old) = (
            randn(d * tokens, 31),
            randn(d * tokens, 32),
            randn(d * tokens, 33),
        );
        let gain = randn(d, 34);
        let run = |dev: &Device, accumulate: bool| {
            let xt = dev.tensor_f32("x", d, tokens, &x).unwrap();
            let gt = dev.tensor_f32("gain", d, 1, &gain).unwrap();
            let (yt, rt) = (
                dev.zeros("y", d, tokens, DType::F32),
                dev.zeros("r", tokens, 1, DType::F32),
            );
            let dyt = dev.tensor_f32("dy", d, tokens, &dy).unwrap();
            let dxt = dev.tensor_f32("dx", d, tokens, &old).unwrap();
            let dgt = dev.tensor_f32("dgain", d, 1, &poison(d)).unwrap();
            dev.rmsnorm_forward(&xt, &gt, 1e-5, &yt, &rt).unwrap();
            if accumulate {
                dev.rmsnorm_backward_accumulate(&xt, &gt, &rt, &dyt, &dxt, &dgt)
            } else {
                dev.rmsnorm_backward(&xt, &gt, &rt, &dyt, &dxt, &dgt)
            }
            .unwrap();
            let mut out = dev.read_f32(&dxt).unwrap();
            out.extend(dev.read_f32(&dgt).unwrap());
            out
        };
        let what = format!("rmsnorm_backward_accumulate {d}x{tokens}");
        let acc = both(&what, |dev| run(dev, true));
        let plain = run(&cpu(), false);
        let mut want = plain.clone();
        want[..d * tokens]
            .iter_mut()
            .zip(&old)
            .for_each(|(a, b)| *a += b);
        assert_close(&what, &acc, &want, TOL);
    }
}

/// A tensor larger than the adapter's largest buffer is an error naming it (at the next submit),
/// not a wgpu panic or a silent allocation failure; binding it is refused by name as well.
#[test]
fn tensors_beyond_the_adapter_limits_are_named_errors() {
    let Some(g) = gpu() else { return };
    let cht_train::gpu::DeviceInfo::Gpu(a) = g.info() else {
        unreachable!("a GPU device")
    };
    let d = Device::open_blocking(
        &cht_train::gpu::DeviceOptions::from_env()
            .unwrap()
            .with_backend(cht_train::gpu::BackendChoice::Gpu),
    )
    .unwrap();
    let words = (a.limits.max_buffer_size / 4 + 1) as usize;
    let huge = d.zeros("model.too_big", words, 1, DType::F32);
    let err = d.submit().unwrap_err().to_string();
    assert!(
        err.contains("model.too_big") && err.contains("largest buffer"),
        "{err}"
    );
    let small = d.zeros("small", 4, 1, DType::F32);
    let err = d.add_assign(&huge, &small).unwrap_err().to_string();
    assert!(err.contains("model.too_big"), "{err}");
    d.submit().unwrap();
}
