//! Topology-evolution kernels on a real driver against their CPU twins: sampling keys and top-k
//! selection must be bit-identical (the same seed gives the same links everywhere).

mod common;

use cht_train::gpu::Device;
use cht_train::gpu::ops::sample::{Eligible, KeyMode, select_top_k_cpu};
use cht_train::sparse::rng::{RngKey, Stream};
use common::{cpu, gpu, randn};

fn run_select(
    d: &Device,
    w: &[f32],
    mask: &[u32],
    eligible: Eligible,
    mode: KeyMode,
    k: u32,
    seed: u32,
) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let n = w.len();
    let wt = d.tensor_f32("w", n, 1, w).unwrap();
    let mt = d.tensor_u32("mask", n, 1, mask).unwrap();
    let keys = d.tensor_u32("keys", n, 1, &vec![0xdead_beef; n]).unwrap();
    let sel = d.selector("sel", n);
    let out = d.tensor_u32("selected", n, 1, &vec![7; n]).unwrap();
    let rng = RngKey::new(seed, Stream::Regrowth, 3, 1);
    d.sample_keys(&wt, Some(&mt), eligible, mode, rng, &keys)
        .unwrap();
    d.set_select_count(&sel, k).unwrap();
    d.select_top_k(&sel, &keys, &out).unwrap();
    (
        d.read_u32(&keys).unwrap(),
        d.read_u32(&out).unwrap(),
        d.read_u32(&sel.state).unwrap(),
    )
}

#[test]
fn sampling_keys_and_selection_are_bit_identical_on_gpu_and_cpu() {
    let mut cases = 0;
    for &n in &[1usize, 7, 255, 256, 257, 1000, 70_001] {
        for seed in [1u32, 2] {
            let mut w: Vec<f32> = randn(n, seed).iter().map(|v| v.abs()).collect();
            // Zero scores (lower tier) and exact ties (hard mode breaks them by index).
            for i in (0..n).step_by(5) {
                w[i] = 0.0;
            }
            for i in (1..n).step_by(7) {
                w[i] = 0.5;
            }
            let mask: Vec<u32> = randn(n, seed + 9)
                .iter()
                .map(|v| u32::from(*v > 0.0))
                .collect();
            for eligible in [Eligible::All, Eligible::MaskSet, Eligible::MaskClear] {
                for mode in [
                    KeyMode::Soft { temperature: 1.0 },
                    KeyMode::Soft { temperature: 3.5 },
                    KeyMode::Hard,
                ] {
                    for k in [0u32, 1, (n / 3) as u32, n as u32 + 5] {
                        let what = format!("n {n} seed {seed} {eligible:?} {mode:?} k {k}");
                        let (keys, selected, state) =
                            run_select(&cpu(), &w, &mask, eligible, mode, k, seed);
                        // Twin against an independent sort.
                        let want = select_top_k_cpu(&keys, k as usize);
                        let got: Vec<u32> = (0..n as u32)
                            .filter(|&i| selected[i as usize] == 1)
                            .collect();
                        assert_eq!(got, want, "{what}");
                        let eligible_count = keys.iter().filter(|&&v| v > 0).count();
                        assert_eq!(got.len(), (k as usize).min(eligible_count), "{what}");
                        // Positive scores always outrank zero scores.
                        if got.len() < eligible_count {
                            let min_chosen = got
                                .iter()
                                .map(|&i| w[i as usize])
                                .fold(f32::INFINITY, f32::min);
                            let has_positive_left =
                                (0..n).any(|i| keys[i] >= 0x8000_0000 && selected[i] == 0);
                            assert!(
                                !(min_chosen == 0.0 && has_positive_left),
                                "{what}: a zero score beat a positive one"
                            );
                        }
                        if let Some(g) = gpu() {
                            let (gk, gs, gstate) =
                                run_select(g, &w, &mask, eligible, mode, k, seed);
                            assert_eq!(gk, keys, "{what}: GPU keys differ from the CPU twin");
                            assert_eq!(gs, selected, "{what}: GPU selection differs");
                            assert_eq!(gstate[3], state[3], "{what}: eligible count");
                        }
                        cases += 1;
                    }
                }
            }
        }
    }
    assert!(cases > 400);
}

#[test]
fn hard_mode_picks_the_largest_scores() {
    let w = [0.1f32, 0.9, 0.0, 0.5, 0.9, 0.3];
    let mask = [0u32; 6];
    let (_, selected, _) = run_select(&cpu(), &w, &mask, Eligible::All, KeyMode::Hard, 3, 0);
    assert_eq!(selected, [0, 1, 0, 1, 1, 0]);
    if let Some(g) = gpu() {
        let (_, selected, _) = run_select(g, &w, &mask, Eligible::All, KeyMode::Hard, 3, 0);
        assert_eq!(selected, [0, 1, 0, 1, 1, 0]);
    }
}

#[test]
fn link_prediction_matches_the_cpu_twin() {
    use cht_train::sparse::CsrPattern;
    use cht_train::sparse::predict::{Predictor, scores};
    let Some(g) = gpu() else { return };
    let mut cases = 0;
    for &(rows, cols) in &[(1, 1), (3, 4), (7, 67), (67, 7), (131, 67), (64, 64)] {
        for &density in &[0.0, 0.02, 0.1, 0.5, 1.0] {
            let p = CsrPattern::random(rows, cols, density, common::key(rows as u32 + 7)).unwrap();
            for predictor in Predictor::ALL {
                let what = format!("{rows}x{cols} d={density} {predictor:?}");
                let dp = g.upload_pattern("p", &p, p.nnz() + 5).unwrap();
                let scratch = g.link_scratch("s", rows, cols);
                let out = g
                    .tensor_f32("scores", rows, cols, &common::poison(rows * cols))
                    .unwrap();
                g.link_scores(&dp, predictor, &scratch, &out).unwrap();
                let got = g.read_f32(&out).unwrap();
                let want = scores(&p, predictor);
                if predictor.is_path_based() {
                    // Path sums run in another order on the GPU.
                    common::assert_close(&what, &got, &want, 1e-5);
                    for (x, y) in got.iter().zip(&want) {
                        assert_eq!(*x == 0.0, *y == 0.0, "{what}: zero pattern differs");
                    }
                } else {
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{what}");
                }
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 180);
}

#[test]
fn link_prediction_handles_chunked_scratch_on_large_layers() {
    use cht_train::sparse::CsrPattern;
    use cht_train::sparse::predict::{Predictor, scores};
    // 2100 rows: the 4 Mi-word scratch holds 1997 seeds, so the row phase runs in two chunks.
    let p = CsrPattern::random(2100, 9, 0.3, common::key(3)).unwrap();
    let want = scores(&p, Predictor::Ch2L3n);
    if let Some(g) = gpu() {
        let dp = g.upload_pattern("p", &p, p.nnz()).unwrap();
        let scratch = g.link_scratch("s", 2100, 9);
        let out = g.zeros("scores", 2100, 9, cht_train::gpu::DType::F32);
        g.link_scores(&dp, Predictor::Ch2L3n, &scratch, &out)
            .unwrap();
        assert_eq!(g.read_f32(&out).unwrap(), want);
    }
    let c = cpu();
    let dp = c.upload_pattern("p", &p, p.nnz()).unwrap();
    let scratch = c.link_scratch("s", 2100, 9);
    let out = c.zeros("scores", 2100, 9, cht_train::gpu::DType::F32);
    c.link_scores(&dp, Predictor::Ch2L3n, &scratch, &out)
        .unwrap();
    assert_eq!(c.read_f32(&out).unwrap(), want);
}

#[test]
#[allow(clippy::approx_constant)] // the spec's test vector, to six decimals
fn link_prediction_reproduces_the_spec_vectors_on_every_backend() {
    use cht_train::sparse::predict::Predictor;
    use cht_train::sparse::{CsrPattern, Mask};
    // Spec §1.4, mask B.
    let bits = [1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1]
        .iter()
        .map(|&b| b == 1)
        .collect();
    let p = CsrPattern::from_mask(&Mask::from_bools(3, 4, bits).unwrap());
    let (x, y) = (1.707_107, 0.707_107);
    let vectors: [(Predictor, [f32; 12]); 4] = [
        (
            Predictor::Ch3L3p,
            [0., 0., x, y, 0., x, 0., y, 2., 0., 0., 0.],
        ),
        (
            Predictor::Ch2L3p,
            [
                0.,
                0.,
                2. * x,
                2. * y,
                0.,
                2. * x,
                0.,
                2. * y,
                4.,
                0.,
                0.,
                0.,
            ],
        ),
        (
            Predictor::Ch3L3n,
            [0., 0., 3.5, 1.5, 0., 3.5, 0., 1.5, 4., 0., 0., 0.],
        ),
        (
            Predictor::Ch2L3n,
            [0., 0., 7., 3., 0., 7., 0., 3., 8., 0., 0., 0.],
        ),
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
        for (predictor, want) in &vectors {
            let dp = d.upload_pattern("b", &p, p.nnz()).unwrap();
            let scratch = d.link_scratch("s", 3, 4);
            let out = d.tensor_f32("scores", 3, 4, &common::poison(12)).unwrap();
            d.link_scores(&dp, *predictor, &scratch, &out).unwrap();
            common::assert_close(
                &format!("{} {predictor:?}", d.name()),
                &d.read_f32(&out).unwrap(),
                want,
                1e-5,
            );
        }
    }
}
