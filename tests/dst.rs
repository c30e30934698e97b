//! The whole topology update — removal, chain removal, regrowth, CSR/CSC rebuild, re-gathered
//! weights and momentum — on the GPU (lavapipe in CI) and on the CPU backend: the same seed must give
//! identical masks, weights and optimizer state after 10 consecutive updates of a 3-layer MLP.

mod common;

use cht_train::dst::{DstConfig, DstScheduler, LayerRef, Method, Topology, Updates};
use cht_train::gpu::{DType, Device, SparsePattern, Tensor};
use cht_train::sparse::CsrPattern;
use cht_train::sparse::rng::{Counter, RngKey, Stream};
use common::{cpu, gpu};

/// Sparse layers of a 24 → 40 → 40 → 10 MLP, in (out, in) order.
const SHAPES: [(usize, usize); 3] = [(40, 24), (40, 40), (10, 40)];

struct Net {
    patterns: Vec<SparsePattern>,
    values: Vec<Tensor>,
    momentum: Vec<Tensor>,
    grads: Vec<Tensor>,
    dense_grads: Vec<Tensor>,
}

fn build(d: &Device, sched: &DstScheduler) -> Net {
    let masks = sched.initial_masks(None).unwrap();
    let mut net = Net {
        patterns: vec![],
        values: vec![],
        momentum: vec![],
        grads: vec![],
        dense_grads: vec![],
    };
    for (l, mask) in masks.iter().enumerate() {
        let p = CsrPattern::from_mask(mask);
        let cap = sched_capacity(sched, l).max(p.nnz());
        let mut w = sched.initial_weights(l, mask).unwrap();
        w.resize(cap, 0.0);
        let m: Vec<f32> = w.iter().map(|v| 0.1 * v).collect();
        net.patterns
            .push(d.upload_pattern(&format!("l{l}"), &p, cap).unwrap());
        net.values.push(d.tensor_f32("w", cap, 1, &w).unwrap());
        net.momentum.push(d.tensor_f32("m", cap, 1, &m).unwrap());
        net.grads.push(d.zeros("g", cap, 1, DType::F32));
        net.dense_grads
            .push(d.zeros("dg", mask.rows(), mask.cols(), DType::F32));
    }
    net
}

fn sched_capacity(sched: &DstScheduler, l: usize) -> usize {
    let masks = sched.initial_masks(None).unwrap();
    masks[l].nnz()
}

/// One topology update of `net` (momentum as the optimizer state; gradients when `with_grads`).
fn update(d: &Device, sched: &mut DstScheduler, topo: &Topology, net: &Net, with_grads: bool) {
    let states: Vec<[&Tensor; 1]> = net.momentum.iter().map(|m| [m]).collect();
    let layers: Vec<LayerRef> = (0..3)
        .map(|l| LayerRef {
            pattern: &net.patterns[l],
            values: &net.values[l],
            state: &states[l],
            grad: with_grads.then(|| &net.grads[l]),
            dense_grad: with_grads.then(|| &net.dense_grads[l]),
        })
        .collect();
    sched.update(d, topo, &layers).unwrap();
}

/// Host-side "training": identical new weights, gradients and dense gradients on both devices.
fn perturb(d: &Device, net: &Net, round: u32) {
    for (l, (v, g)) in net.values.iter().zip(&net.grads).enumerate() {
        let mut rng = Counter::new(RngKey::new(99, Stream::Synthetic, round, l as u32));
        let w: Vec<f32> = d
            .read_f32(v)
            .unwrap()
            .iter()
            .map(|x| x * 0.9 + 0.05 * rng.normal())
            .collect();
        d.write_f32(v, &w).unwrap();
        let gr: Vec<f32> = (0..g.len()).map(|_| rng.normal()).collect();
        d.write_f32(g, &gr).unwrap();
        let dg = &net.dense_grads[l];
        let dense: Vec<f32> = (0..dg.len()).map(|_| rng.normal()).collect();
        d.write_f32(dg, &dense).unwrap();
    }
}

/// Per layer: the pattern and the bits of its weights and momentum.
type Snapshot = Vec<(CsrPattern, Vec<u32>, Vec<u32>)>;

fn snapshot(d: &Device, net: &Net) -> Snapshot {
    net.patterns
        .iter()
        .zip(&net.values)
        .zip(&net.momentum)
        .map(|((p, v), m)| {
            let pat = d.download_pattern(p).unwrap();
            let nnz = pat.nnz();
            let bits = |t: &Tensor| {
                d.read_f32(t).unwrap()[..nnz]
                    .iter()
                    .map(|x| x.to_bits())
                    .collect()
            };
            (pat, bits(v), bits(m))
        })
        .collect()
}

fn run(d: &Device, method: Method) -> Vec<Snapshot> {
    let config = DstConfig::preset(method, 0.2, Updates::every(1).until(1000), 5);
    let mut sched = DstScheduler::new(config, &SHAPES).unwrap();
    let net = build(d, &sched);
    let topo = sched.topology(d, 1);
    let mut history = vec![snapshot(d, &net)];
    for round in 0..10 {
        perturb(d, &net, round);
        assert!(sched.step(), "interval 1: every step updates");
        update(d, &mut sched, &topo, &net, true);
        history.push(snapshot(d, &net));
    }
    eprintln!("{}", sched.summary());
    history
}

#[test]
fn ten_updates_give_identical_masks_weights_and_state_on_gpu_and_cpu() {
    for method in [
        Method::ChtsN,
        Method::Set,
        Method::RigL,
        Method::Mest,
        Method::Chtss,
        Method::GraNet,
        Method::Gmp,
    ] {
        let c = run(&cpu(), method);
        // The topology really evolves, and stays a valid chain of the planned size.
        let first = &c[0];
        let last = &c[10];
        let changed = first.iter().zip(last).any(|(a, b)| a.0 != b.0);
        assert!(changed, "{method:?}: no link ever moved");
        if matches!(method, Method::Set | Method::ChtsN | Method::RigL) {
            for (l, (a, b)) in first.iter().zip(last).enumerate() {
                assert_eq!(
                    a.0.nnz(),
                    b.0.nnz(),
                    "{method:?} layer {l}: density must stay constant"
                );
            }
        }
        if let Some(g) = gpu() {
            let gh = run(g, method);
            for (round, (cs, gs)) in c.iter().zip(&gh).enumerate() {
                for (l, (cl, gl)) in cs.iter().zip(gs).enumerate() {
                    assert_eq!(
                        cl.0, gl.0,
                        "{method:?} update {round} layer {l}: masks differ between CPU and GPU"
                    );
                    assert_eq!(
                        cl.1, gl.1,
                        "{method:?} update {round} layer {l}: weights differ"
                    );
                    assert_eq!(
                        cl.2, gl.2,
                        "{method:?} update {round} layer {l}: momentum differs"
                    );
                }
            }
        }
    }
}

#[test]
fn kept_links_keep_their_weights_and_new_links_start_at_zero() {
    let d = cpu();
    let config = DstConfig::preset(Method::Set, 0.3, Updates::every(1).until(1000), 1);
    let mut sched = DstScheduler::new(config, &SHAPES).unwrap();
    let net = build(&d, &sched);
    let topo = sched.topology(&d, 1);
    let before = snapshot(&d, &net);
    sched.step();
    update(&d, &mut sched, &topo, &net, false);
    let after = snapshot(&d, &net);
    for (l, (b, a)) in before.iter().zip(&after).enumerate() {
        let old =
            b.0.scatter_dense(&b.1.iter().map(|x| f32::from_bits(*x)).collect::<Vec<_>>());
        let new_mask = a.0.to_mask();
        let old_mask = b.0.to_mask();
        let new_dense =
            a.0.scatter_dense(&a.1.iter().map(|x| f32::from_bits(*x)).collect::<Vec<_>>());
        let (rows, cols) = SHAPES[l];
        let mut kept = 0;
        for r in 0..rows {
            for c in 0..cols {
                if new_mask.get(r, c) {
                    if old_mask.get(r, c) {
                        assert_eq!(new_dense[r * cols + c], old[r * cols + c]);
                        kept += 1;
                    } else {
                        assert_eq!(new_dense[r * cols + c], 0.0, "new link must start at 0");
                    }
                }
            }
        }
        // SET removes ζ = 30 % and regrows as many.
        let n = b.0.nnz();
        assert_eq!(a.0.nnz(), n);
        assert!(
            kept >= n - (0.3 * n as f64).floor() as usize - 1 && kept < n,
            "layer {l}: kept {kept} of {n}"
        );
    }
}

#[test]
fn scheduler_round_trips_through_json_and_fc_never_updates() {
    let config = DstConfig::preset(Method::Chtss, 0.1, Updates::every(10).until(100), 3);
    let mut sched = DstScheduler::new(config, &SHAPES).unwrap();
    for _ in 0..25 {
        sched.step();
    }
    let json = serde_json::to_string(&sched).unwrap();
    let back: DstScheduler = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sched);
    let mut fc = DstScheduler::new(
        DstConfig::preset(Method::Fc, 0.1, Updates::every(1).until(100), 0),
        &SHAPES,
    )
    .unwrap();
    assert!((0..50).all(|_| !fc.step()));
    let mut no_interval = DstConfig::preset(Method::Set, 0.1, Updates::every(1).until(9), 0);
    no_interval.interval = 0;
    assert!(DstScheduler::new(no_interval, &SHAPES).is_err());
}

#[test]
fn device_chain_removal_reproduces_the_spec_vector() {
    use cht_train::sparse::Mask;
    let mask = |rows: usize, cols: usize, v: &[u8]| {
        Mask::from_bools(rows, cols, v.iter().map(|&b| b == 1).collect()).unwrap()
    };
    let m1 = mask(3, 4, &[1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1]);
    let m2 = mask(3, 3, &[1, 1, 0, 0, 1, 0, 0, 0, 0]);
    let m3 = mask(2, 3, &[1, 1, 1, 0, 0, 1]);
    let want = [
        vec![1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![1, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![1, 0, 0, 0, 0, 0],
    ];
    let mut devices = vec![cpu()];
    if gpu().is_some() {
        devices.push(
            Device::open_blocking(
                &cht_train::gpu::DeviceOptions::from_env()
                    .unwrap()
                    .with_backend(cht_train::gpu::BackendChoice::Gpu),
            )
            .unwrap(),
        );
    }
    for d in &devices {
        let t: Vec<Tensor> = [&m1, &m2, &m3]
            .iter()
            .map(|m| d.tensor_u32("m", m.rows(), m.cols(), &m.to_u32()).unwrap())
            .collect();
        let refs: Vec<&Tensor> = t.iter().collect();
        cht_train::dst::chain_removal(d, &refs).unwrap();
        for (l, (m, w)) in t.iter().zip(&want).enumerate() {
            assert_eq!(&d.read_u32(m).unwrap(), w, "{}: layer {l}", d.name());
        }
        let bad = [&t[0], &t[0]];
        assert!(
            cht_train::dst::chain_removal(d, &bad).is_err(),
            "3 outputs cannot feed 4 inputs"
        );
    }
}

/// Pairwise chain removal (spec §4.2) on the device matches the host twins `qk_chain` / `chain`
/// applied in the same order, on LLaMA-shaped masks of two blocks (odd widths, some rows and
/// columns emptied on purpose, sparse enough that the pairs cut links), on CPU and GPU.
#[test]
fn device_pair_chain_removal_matches_the_host_twins() {
    use cht_train::dst::PairChains;
    use cht_train::sparse::Mask;
    use cht_train::sparse::chain::{chain, qk_chain};
    let (d_model, ffn, blocks) = (13usize, 22usize, 2usize);
    let shapes: Vec<(usize, usize)> = (0..blocks)
        .flat_map(|_| {
            let sq = (d_model, d_model);
            [
                sq,
                sq,
                sq,
                sq,
                (ffn, d_model),
                (ffn, d_model),
                (d_model, ffn),
            ]
        })
        .collect();
    let pairs = PairChains::llama(blocks);
    for (seed, density) in [(1u32, 0.08), (2, 0.15), (3, 0.3)] {
        let mut rng = Counter::new(RngKey::new(seed, Stream::Synthetic, 0, 0));
        let masks: Vec<Mask> = shapes
            .iter()
            .enumerate()
            .map(|(l, &(r, c))| {
                let bits = (0..r * c)
                    .map(|i| {
                        // Layer-specific empty row and column so the pairs have work to do.
                        let (row, col) = (i / c, i % c);
                        row != l % r
                            && col != (2 * l) % c
                            && f64::from(rng.next_uniform()) < density
                    })
                    .collect();
                Mask::from_bools(r, c, bits).unwrap()
            })
            .collect();
        let mut want = masks.clone();
        let mut removed = 0;
        for &(a, b) in &pairs.qk {
            let (x, y) = two(&mut want, a, b);
            removed += qk_chain(x, y).unwrap();
        }
        for &(p, c) in &pairs.chain {
            let (x, y) = two(&mut want, p, c);
            removed += chain(x, y).unwrap();
        }
        assert!(removed > 0, "seed {seed}: the pairs must cut links");
        let host = cpu();
        let mut devices = vec![&host];
        devices.extend(gpu());
        for d in devices {
            let t: Vec<Tensor> = masks
                .iter()
                .map(|m| d.tensor_u32("m", m.rows(), m.cols(), &m.to_u32()).unwrap())
                .collect();
            let refs: Vec<&Tensor> = t.iter().collect();
            cht_train::dst::pair_chain_removal(d, &refs, &pairs).unwrap();
            for (l, (m, w)) in t.iter().zip(&want).enumerate() {
                assert_eq!(
                    d.read_u32(m).unwrap(),
                    w.to_u32(),
                    "{}: seed {seed}, layer {l}",
                    d.name()
                );
            }
            let bad = PairChains {
                qk: vec![(0, 4)],
                chain: vec![],
            };
            assert!(
                cht_train::dst::pair_chain_removal(d, &refs, &bad).is_err(),
                "13 vs 22 rows"
            );
            let out_of_range = PairChains {
                qk: vec![],
                chain: vec![(2, 99)],
            };
            assert!(cht_train::dst::pair_chain_removal(d, &refs, &out_of_range).is_err());
        }
    }
}

fn two<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}

#[test]
fn device_removal_scores_reproduce_the_spec_vector() {
    use cht_train::gpu::ops::topology::LinkScore;
    // Spec §2.3: W = [[0.5, −0.25, 0], [0.1, 0.4, −0.2]]; the 0 is not a link.
    let p = CsrPattern::new(2, 3, vec![0, 2, 5], vec![0, 1, 0, 1, 2]).unwrap();
    let w = [0.5f32, -0.25, 0.1, 0.4, -0.2];
    let ri = [1.499_977f32, 0.717_938, 0.309_519, 1.186_796, 1.285_66];
    let mut devices = vec![cpu()];
    if gpu().is_some() {
        devices.push(
            Device::open_blocking(
                &cht_train::gpu::DeviceOptions::from_env()
                    .unwrap()
                    .with_backend(cht_train::gpu::BackendChoice::Gpu),
            )
            .unwrap(),
        );
    }
    for d in &devices {
        let dp = d.upload_pattern("w", &p, 5).unwrap();
        let v = d.tensor_f32("v", 5, 1, &w).unwrap();
        let (rs, cs) = (
            d.zeros("rs", 2, 1, DType::F32),
            d.zeros("cs", 3, 1, DType::F32),
        );
        let out = d.tensor_f32("out", 5, 1, &common::poison(5)).unwrap();
        d.removal_scores(
            &dp,
            &v,
            LinkScore::RelativeImportance { epsilon: 1e-5 },
            &rs,
            &cs,
            &out,
        )
        .unwrap();
        common::assert_close(
            &format!("{} RI", d.name()),
            &d.read_f32(&out).unwrap(),
            &ri,
            1e-6,
        );
        d.removal_scores(&dp, &v, LinkScore::WeightMagnitude, &rs, &cs, &out)
            .unwrap();
        common::assert_close(
            &format!("{} WM", d.name()),
            &d.read_f32(&out).unwrap(),
            &[0.5, 0.25, 0.1, 0.4, 0.2],
            0.0,
        );
        let g = d
            .tensor_f32("g", 5, 1, &[1.0, -2.0, 0.0, 0.0, 10.0])
            .unwrap();
        d.removal_scores(
            &dp,
            &v,
            LinkScore::Mest {
                factor: 0.01,
                grad: &g,
            },
            &rs,
            &cs,
            &out,
        )
        .unwrap();
        common::assert_close(
            &format!("{} MEST", d.name()),
            &d.read_f32(&out).unwrap(),
            &[0.51, 0.27, 0.1, 0.4, 0.3],
            1e-6,
        );
    }
}

#[test]
fn zero_option_starts_every_regrown_link_at_zero_and_reports_anp_itop() {
    let d = cpu();
    // The same update with both options: identical masks; "Zero" differs exactly on the links
    // that were removed and regrown in the same update.
    let one_update = |regrown_weights| {
        let mut config = DstConfig::preset(Method::Set, 0.5, Updates::every(1).until(1000), 4);
        config.regrown_weights = regrown_weights;
        let mut sched = DstScheduler::new(config, &SHAPES).unwrap();
        sched.observe(&sched.initial_masks(None).unwrap()).unwrap();
        let net = build(&d, &sched);
        let topo = sched.topology(&d, 1);
        let before = snapshot(&d, &net);
        sched.step();
        update(&d, &mut sched, &topo, &net, false);
        let itop0 = sched.itop();
        sched.observe(&topo.read_masks(&d).unwrap()).unwrap();
        assert!(sched.itop() > itop0, "ITOP must grow when new links appear");
        let anp = sched.anp().unwrap();
        assert!(anp > 0.5 && anp <= 1.0, "ANP {anp}");
        assert!(sched.summary().contains("ANP"));
        (before, snapshot(&d, &net))
    };
    let (before, keep) = one_update(cht_train::dst::RegrownWeights::KeepIfRemoved);
    let (_, zero) = one_update(cht_train::dst::RegrownWeights::Zero);
    let mut regrown_removed = 0;
    for ((b, k), z) in before.iter().zip(&keep).zip(&zero) {
        assert_eq!(k.0, z.0, "the option must not change the masks");
        let old: std::collections::HashSet<(u32, u32)> = coords(&b.0).into_iter().collect();
        for ((rc, kv), zv) in coords(&k.0).into_iter().zip(&k.1).zip(&z.1) {
            if kv != zv {
                assert_eq!(*zv, 0, "Zero may only differ by zeroing");
                assert!(
                    old.contains(&rc),
                    "only links that existed before can carry an old value"
                );
                regrown_removed += 1;
            }
        }
    }
    assert!(
        regrown_removed > 0,
        "no removed-and-regrown link in this update"
    );
}

fn coords(p: &CsrPattern) -> Vec<(u32, u32)> {
    p.row_of_links()
        .into_iter()
        .zip(p.col_idx().iter().copied())
        .collect()
}

#[test]
fn erk_distribution_spreads_the_same_link_budget_unevenly() {
    let shapes = [(1568, 784), (1568, 1568), (10, 1568)];
    let mut config = DstConfig::preset(Method::Set, 0.05, Updates::every(10).until(100), 0);
    config.distribution = cht_train::dst::DensityDistribution::Erk;
    let sched = DstScheduler::new(config, &shapes).unwrap();
    let masks = sched.initial_masks(None).unwrap();
    let links: usize = masks.iter().map(|m| m.nnz()).sum();
    let total: usize = shapes.iter().map(|&(r, c)| r * c).sum();
    let global = links as f64 / total as f64;
    assert!((global - 0.05).abs() < 0.001, "global density {global}");
    // The small classifier layer is much denser than the big hidden layer.
    assert!(
        masks[2].density() > 4.0 * masks[1].density(),
        "{} vs {}",
        masks[2].density(),
        masks[1].density()
    );
}

#[test]
fn history_option_regrows_links_at_their_last_live_value_on_gpu_and_cpu() {
    // Host model of historical weights: every position remembers its last live value; after an
    // update, a link live before keeps its value, a link live at some earlier time gets that
    // value back, a never-live link starts at 0.
    let run = |d: &Device| {
        let mut config = DstConfig::preset(Method::Set, 0.3, Updates::every(1).until(1000), 4);
        config.regrown_weights = cht_train::dst::RegrownWeights::History;
        let mut sched = DstScheduler::new(config, &SHAPES).unwrap();
        let net = build(d, &sched);
        let topo = sched.topology(d, 1);
        assert_eq!(topo.history().len(), 3, "one memory per layer");
        let mut memory: Vec<std::collections::HashMap<(u32, u32), u32>> =
            vec![Default::default(); 3];
        let mut revived = 0;
        let mut snaps = vec![];
        for round in 0..8 {
            perturb(d, &net, round);
            let before = snapshot(d, &net);
            for (l, (p, w, _)) in before.iter().enumerate() {
                for (rc, &v) in coords(p).into_iter().zip(w) {
                    memory[l].insert(rc, v);
                }
            }
            assert!(sched.step());
            update(d, &mut sched, &topo, &net, true);
            let after = snapshot(d, &net);
            for (l, ((pb, _, _), (pa, wa, _))) in before.iter().zip(&after).enumerate() {
                let live: std::collections::HashSet<_> = coords(pb).into_iter().collect();
                for (rc, &v) in coords(pa).into_iter().zip(wa) {
                    let want = memory[l].get(&rc).copied().unwrap_or(0);
                    assert_eq!(v, want, "update {round} layer {l} link {rc:?}");
                    if !live.contains(&rc) && want != 0 {
                        revived += 1;
                    }
                }
            }
            snaps.push(after);
        }
        assert!(revived > 0, "no link came back with a historical weight");
        snaps
    };
    let c = run(&cpu());
    if let Some(g) = gpu() {
        let gh = run(g);
        for (round, (cs, gs)) in c.iter().zip(&gh).enumerate() {
            assert_eq!(cs, gs, "update {round}: GPU and CPU differ");
        }
    }
}
