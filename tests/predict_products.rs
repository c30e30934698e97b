//! Node-based link prediction (CH3-L3n, CH2-L3n, CH3.1-L3n) through dense products against the
//! sparse walk: the two paths must give the same bits on the CPU, and the GPU's product path and
//! walk the CPU's bits (on lavapipe in CI), so the path choice can never change a mask.

mod common;

use cht_train::dst::{
    DstConfig, DstScheduler, LayerRef, Method, RegrowScores, Regrowth, Selection, Updates,
};
use cht_train::gpu::ops::predict::LinkScratch;
use cht_train::gpu::{DType, Device};
use cht_train::sparse::predict::products::{self, BitRows, Layout, Side};
use cht_train::sparse::predict::{L3nPath, Predictor, scores, scores_via};
use cht_train::sparse::{CsrPattern, Mask};
use common::{cpu, gpu, key, poison};

const L3N: [Predictor; 3] = [Predictor::Ch3L3n, Predictor::Ch2L3n, Predictor::Ch31L3n];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A random pattern with every `gap`-th row and column emptied (when `gap > 0`).
fn pattern(rows: usize, cols: usize, density: f64, seed: u32, gap: usize) -> CsrPattern {
    let p = CsrPattern::random(rows, cols, density, key(seed)).unwrap();
    if gap == 0 {
        return p;
    }
    let m = p.to_mask();
    let kept = (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            m.get(r, c) && r % gap != 1 && c % gap != 2
        })
        .collect();
    CsrPattern::from_mask(&Mask::from_bools(rows, cols, kept).unwrap())
}

#[test]
fn walk_and_products_give_the_same_bits_on_the_cpu() {
    let shapes = [
        (1, 1),
        (1, 9),
        (9, 1),
        (3, 4),
        (13, 70),
        (70, 13),
        (64, 65),
        (129, 67),
        (97, 211),
    ];
    let densities = [0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0];
    let mut cases = 0;
    let mut nonzero = 0;
    for (s, &(rows, cols)) in shapes.iter().enumerate() {
        for (d, &density) in densities.iter().enumerate() {
            for seed in 0..3u32 {
                // Seed 2 empties every 5th row and column.
                let gap = if seed == 2 { 5 } else { 0 };
                let p = pattern(rows, cols, density, (s * 100 + d * 10) as u32 + seed, gap);
                for predictor in L3N {
                    let what = format!("{rows}x{cols} d={density} seed {seed} {predictor:?}");
                    let walk = scores_via(&p, predictor, L3nPath::Walk);
                    let products = scores_via(&p, predictor, L3nPath::Products);
                    assert_eq!(bits(&walk), bits(&products), "{what}");
                    assert_eq!(bits(&scores(&p, predictor)), bits(&walk), "{what}: auto");
                    nonzero += usize::from(walk.iter().any(|&v| v > 0.0));
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 9 * 11 * 3 * 3);
    assert!(nonzero > cases / 3, "too few cases with scores: {nonzero}");
}

#[test]
fn sums_that_round_are_added_in_the_walk_order() {
    // CH3.1 weights are irrational and CH3's are 1/(1+e) for many e: at these densities most
    // scores are sums of hundreds of inexact terms, so any other order shows in the last bits.
    for (rows, cols, density) in [(300, 517, 0.3), (517, 300, 0.12), (256, 256, 0.6)] {
        let p = pattern(rows, cols, density, 11, 0);
        for predictor in L3N {
            let walk = scores_via(&p, predictor, L3nPath::Walk);
            let products = scores_via(&p, predictor, L3nPath::Products);
            assert_eq!(bits(&walk), bits(&products), "{rows}x{cols} {predictor:?}");
            // Against f64 sums of the same f32 terms, many f32 results are inexact: the test
            // above would catch a change of order.
            let w_out = products::node_weights(&p, predictor, Side::Outputs, Layout::NodeMajor);
            let w_in = products::node_weights(&p, predictor, Side::Inputs, Layout::NodeMajor);
            let m = p.to_mask();
            let mut inexact = 0;
            for a in 0..rows {
                for j in (0..cols).filter(|&j| !m.get(a, j)) {
                    let out: f64 = (0..rows)
                        .filter(|&b| m.get(b, j))
                        .map(|b| f64::from(w_out[b * rows + a]))
                        .sum();
                    let inp: f64 = (0..cols)
                        .filter(|&k| m.get(a, k))
                        .map(|k| f64::from(w_in[k * cols + j]))
                        .sum();
                    inexact += usize::from(f64::from(walk[a * cols + j]) != out + inp);
                }
            }
            assert!(
                inexact > rows * cols / 10,
                "{rows}x{cols} {predictor:?}: only {inexact} rounded sums"
            );
        }
    }
}

#[test]
fn fully_empty_and_fully_dense_layers() {
    for (rows, cols) in [(1, 1), (5, 8), (8, 5)] {
        let empty = CsrPattern::new(rows, cols, vec![0; rows + 1], vec![]).unwrap();
        let full = CsrPattern::dense(rows, cols).unwrap();
        for predictor in L3N {
            let s = scores_via(&empty, predictor, L3nPath::Products);
            assert!(s.iter().all(|&v| v.to_bits() == 0), "nnz = 0 scores +0");
            let s = scores_via(&full, predictor, L3nPath::Products);
            assert!(s.iter().all(|&v| v.to_bits() == 0), "every link exists");
        }
    }
}

#[test]
fn choosing_the_path_follows_the_density() {
    assert_eq!(L3nPath::choose(100, 100, 500, 0.04), L3nPath::Products);
    assert_eq!(L3nPath::choose(100, 100, 400, 0.04), L3nPath::Walk);
    assert_eq!(L3nPath::choose(100, 100, 0, 0.0), L3nPath::Walk);
    assert_eq!(L3nPath::choose(0, 100, 0, 0.0), L3nPath::Walk);
    assert_eq!(L3nPath::choose(100, 100, 10_000, 1.0), L3nPath::Walk);
    // Too large for the dense weights: always the walk.
    assert_eq!(L3nPath::choose(1 << 20, 4, 1 << 21, 0.0), L3nPath::Walk);
}

/// Uploads `p` (with spare capacity) and scores it on `d` along `path`, into poisoned output.
fn device_scores(
    d: &Device,
    p: &CsrPattern,
    predictor: Predictor,
    path: L3nPath,
    scratch: &LinkScratch,
) -> Vec<f32> {
    let (rows, cols) = (p.rows(), p.cols());
    let dp = d.upload_pattern("p", p, p.nnz() + 5).unwrap();
    let out = d
        .tensor_f32("scores", rows, cols, &poison(rows * cols))
        .unwrap();
    d.link_scores_via(&dp, predictor, path, scratch, &out)
        .unwrap();
    d.read_f32(&out).unwrap()
}

fn product_scratch(d: &Device, rows: usize, cols: usize) -> LinkScratch {
    let products = d.l3n_product_scratch("lp", rows, cols).unwrap();
    d.link_scratch("s", rows, cols)
        .with_products(products)
        .unwrap()
}

#[test]
fn gpu_products_and_walk_match_the_cpu_bit_for_bit() {
    let Some(g) = gpu() else { return };
    let c = cpu();
    let mut cases = 0;
    for &(rows, cols) in &[(1, 1), (3, 4), (7, 67), (67, 7), (65, 64), (131, 67)] {
        let scratch = product_scratch(g, rows, cols);
        let cpu_scratch = product_scratch(&c, rows, cols);
        for &density in &[0.0, 0.01, 0.1, 0.5, 1.0] {
            for seed in [3u32, 4] {
                let gap = if seed == 4 { 3 } else { 0 };
                let p = pattern(rows, cols, density, rows as u32 * 7 + seed, gap);
                for predictor in L3N {
                    let what = format!("{rows}x{cols} d={density} seed {seed} {predictor:?}");
                    let want = bits(&scores_via(&p, predictor, L3nPath::Walk));
                    for path in [L3nPath::Products, L3nPath::Walk] {
                        let got = device_scores(g, &p, predictor, path, &scratch);
                        assert_eq!(bits(&got), want, "{what}: GPU {path:?}");
                        let got = device_scores(&c, &p, predictor, path, &cpu_scratch);
                        assert_eq!(bits(&got), want, "{what}: CPU backend {path:?}");
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 6 * 5 * 2 * 3);
}

#[test]
fn gpu_counts_and_node_weights_match_the_twin() {
    let Some(g) = gpu() else { return };
    for &(rows, cols) in &[(1, 1), (5, 33), (33, 5), (70, 129)] {
        let scratch = product_scratch(g, rows, cols);
        for &density in &[0.0, 0.05, 0.3, 1.0] {
            let p = pattern(rows, cols, density, (rows + cols) as u32, 4);
            let dp = g.upload_pattern("p", &p, p.nnz() + 3).unwrap();
            for side in [Side::Outputs, Side::Inputs] {
                let n = if side == Side::Outputs { rows } else { cols };
                let what = format!("{rows}x{cols} d={density} {side:?}");
                let out = g.tensor_f32("w", n, n, &poison(n * n)).unwrap();
                g.l3n_counts(&dp, side, &scratch, &out).unwrap();
                let lists = match side {
                    Side::Outputs => p.clone(),
                    Side::Inputs => {
                        let csc = p.csc();
                        CsrPattern::new(cols, rows, csc.col_ptr, csc.row_idx).unwrap()
                    }
                };
                let want: Vec<f32> = BitRows::from_csr(&lists)
                    .common_matrix()
                    .into_iter()
                    .map(|v| v as f32)
                    .collect();
                assert_eq!(
                    bits(&g.read_f32(&out).unwrap()),
                    bits(&want),
                    "{what}: counts"
                );
                for predictor in L3N {
                    for layout in [Layout::NodeMajor, Layout::SeedMajor] {
                        g.write_f32(&out, &poison(n * n)).unwrap();
                        g.l3n_node_weights(&dp, predictor, side, layout, &scratch, &out)
                            .unwrap();
                        let want = products::node_weights(&p, predictor, side, layout);
                        assert_eq!(
                            bits(&g.read_f32(&out).unwrap()),
                            bits(&want),
                            "{what} {predictor:?} {layout:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_gpu_product_path_needs_its_scratch() {
    let Some(g) = gpu() else { return };
    let p = pattern(9, 11, 0.3, 1, 0);
    let dp = g.upload_pattern("p", &p, p.nnz()).unwrap();
    let out = g.zeros("s", 9, 11, DType::F32);
    let walk_only = g.link_scratch("s", 9, 11);
    assert!(!walk_only.has_products());
    assert_eq!(walk_only.path_for(p.nnz(), 0.0), L3nPath::Walk);
    let err = g.link_scores_via(&dp, Predictor::Ch2L3n, L3nPath::Products, &walk_only, &out);
    assert!(err.is_err());
    // Scratch of another shape is refused.
    let other = g.l3n_product_scratch("lp", 11, 9).unwrap();
    assert!(g.link_scratch("s", 9, 11).with_products(other).is_err());
    // The CPU backend runs the products without device scratch.
    assert!(cpu().link_scratch("s", 9, 11).has_products());
}

/// One CHTs-n layer trained for no steps but rewired `updates` times on `d`, with the node-based
/// products taken above `dense_above`; the masks after each update.
fn chts_masks(d: &Device, dense_above: f64, updates: usize) -> Vec<Vec<u32>> {
    let (rows, cols) = (47, 83);
    let mut config = DstConfig::preset(Method::ChtsN, 0.2, Updates::every(1).until(1000), 7);
    let mut regrowth = Regrowth::new(
        RegrowScores::LinkPrediction(Predictor::Ch2L3n),
        Selection::Soft,
    );
    regrowth.l3n_dense_above = dense_above;
    config.regrowth = Some(regrowth);
    let mut sched = DstScheduler::new(config, &[(rows, cols)]).unwrap();
    let mask = sched.initial_masks(None).unwrap().remove(0);
    let p = CsrPattern::from_mask(&mask);
    let weights = sched.initial_weights(0, &mask).unwrap();
    let pattern = d.upload_pattern("w", &p, p.nnz()).unwrap();
    let values = d.tensor_f32("values", p.nnz(), 1, &weights).unwrap();
    let momentum = d.zeros("momentum", p.nnz(), 1, DType::F32);
    let topo = sched.topology(d, 1);
    let state = [&momentum];
    let layer = LayerRef {
        pattern: &pattern,
        values: &values,
        state: &state,
        grad: None,
        dense_grad: None,
    };
    let mut masks = Vec::new();
    for _ in 0..updates {
        assert!(sched.step());
        sched.update(d, &topo, &[layer]).unwrap();
        masks.push(d.download_pattern(&pattern).unwrap().to_mask().to_u32());
    }
    masks
}

#[test]
fn dst_masks_do_not_depend_on_the_path() {
    let walk = chts_masks(&cpu(), 1.0, 3);
    assert_eq!(chts_masks(&cpu(), 0.0, 3), walk, "CPU products");
    if let Some(g) = gpu() {
        assert_eq!(chts_masks(g, 1.0, 3), walk, "GPU walk");
        assert_eq!(chts_masks(g, 0.0, 3), walk, "GPU products");
    }
}

#[test]
fn configs_saved_without_the_crossover_still_load() {
    let mut config = DstConfig::preset(Method::ChtsN, 0.05, Updates::every(10).until(100), 0);
    let json = serde_json::to_value(&config).unwrap();
    let mut old = json.clone();
    old["regrowth"]
        .as_object_mut()
        .unwrap()
        .remove("l3n_dense_above");
    let back: DstConfig = serde_json::from_value(old).unwrap();
    assert_eq!(back, config);
    assert_eq!(
        back.regrowth.unwrap().l3n_dense_above,
        cht_train::sparse::predict::L3N_DENSE_ABOVE
    );
    config.regrowth.as_mut().unwrap().l3n_dense_above = -1.0;
    assert!(config.validate().is_err());
}
