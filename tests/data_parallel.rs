//! Data-parallel training (issue #17) on the CPU backend with in-process ranks: N ranks × batch
//! B/N train the same model as 1 rank × batch B — masks bit-identical through topology updates,
//! weights and losses within float-summation tolerance — and every rank holds identical bits.
//! The same over MPI processes is checked by `scripts/test-mpi.sh` (CLI runs under `mpirun`).

use std::sync::Arc;

use cht_train::dist::{Collective, Local};
use cht_train::dst::{ChainRemoval, DstConfig, Method, Updates};
use cht_train::gpu::{AdamWStep, Device, SgdStep};
use cht_train::nn::{
    DstModel, ExecutionPolicy, LinearInit, LmConfig, LmOptimizer, Metrics, Network, SparseLm,
    SparseMlp, SparseMlpConfig,
};
use cht_train::sparse::Mask;

/// What one rank ends with: per-step losses (global, all-reduced), masks, every parameter value,
/// and the values communicated per step.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    losses: Vec<f64>,
    masks: Vec<Mask>,
    weights: Vec<f32>,
    comm_values: Vec<u64>,
}

impl Outcome {
    /// Records a step: the global loss (this rank's sums all-reduced) and the values exchanged.
    fn record<N: Network>(&mut self, model: &DstModel<N>, m: Metrics) {
        let mut sums = [m.loss * m.samples as f64, m.samples as f64];
        if let Some(p) = model.data_parallel() {
            p.collective().all_reduce_sum_f64(&mut sums).unwrap();
            self.comm_values.push(p.last_step().values);
        }
        self.losses.push(sums[0] / sums[1]);
    }
}

fn values<N: Network>(device: &Device, model: &DstModel<N>) -> Vec<f32> {
    model.network().sync_to_csr(device).unwrap();
    model
        .network()
        .arena()
        .chunks()
        .iter()
        .flat_map(|c| device.read_f32(&c.values).unwrap())
        .collect()
}

/// Runs `ranks` threads, each training through `train(rank, comm)`.
fn on_ranks(
    ranks: usize,
    train: impl Fn(Option<Arc<dyn Collective>>) -> Outcome + Sync,
) -> Vec<Outcome> {
    if ranks == 1 {
        return vec![train(None)];
    }
    let group = Local::group(ranks).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|c| {
                let train = &train;
                s.spawn(move || train(Some(Arc::new(c) as Arc<dyn Collective>)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + x.abs().max(y.abs())))
        .fold(0.0f32, f32::max);
    eprintln!("{what}: worst relative difference {worst:e}");
    assert!(
        worst <= tol,
        "{what}: worst relative difference {worst:e} > {tol:e}"
    );
}

/// The MLP under CHTs-n (CH2-L3n soft regrowth, topology updates every 4 steps): batch 12 on 1,
/// 2 and 3 ranks.
#[test]
fn mlp_chts_n_on_several_ranks_matches_one_rank() {
    mlp_chts_n_case(false);
}

/// The same with the sparse layers executing masked-dense: the exchange gathers the mask's
/// entries of their dense gradients (still only the links).
#[test]
fn mlp_chts_n_masked_dense_on_several_ranks_matches_one_rank() {
    mlp_chts_n_case(true);
}

fn mlp_chts_n_case(masked_dense: bool) {
    const BATCH: usize = 12;
    const STEPS: usize = 14;
    let sizes = vec![20, 32, 32, 5];
    let data: Vec<(Vec<f32>, Vec<u32>)> = (0..STEPS)
        .map(|s| {
            let x = (0..20 * BATCH)
                .map(|i| (((i * 7 + s * 13) % 29) as f32 / 29.0 - 0.4) * 2.0)
                .collect();
            let y = (0..BATCH).map(|b| ((b * 3 + s) % 5) as u32).collect();
            (x, y)
        })
        .collect();
    let train = |comm: Option<Arc<dyn Collective>>| -> Outcome {
        let device = Device::cpu();
        let (rank, n) = comm.as_ref().map_or((0, 1), |c| (c.rank(), c.size()));
        let updates = Updates {
            every: 4,
            until: 12,
        };
        let mut dst = DstConfig::preset(Method::ChtsN, 0.3, updates, 5);
        dst.chain_removal = ChainRemoval::Off;
        let mut model = SparseMlp::new(&device, &SparseMlpConfig::new(sizes.clone(), dst)).unwrap();
        let initial = model.masks(&device).unwrap();
        if masked_dense {
            model
                .set_execution(&device, ExecutionPolicy::with_crossover(0.0))
                .unwrap();
            let masked = (model.network().layers.iter())
                .filter(|l| l.as_sparse().is_some_and(|s| s.dense.is_some()))
                .count();
            assert_eq!(masked, 2, "both hidden layers run masked-dense");
        }
        if let Some(c) = comm {
            model.set_collective(&device, c).unwrap();
        }
        let b = BATCH / n;
        let ws = model.network().workspace(&device, b);
        let mut out = Outcome::default();
        for (x, y) in &data {
            // This rank's share: samples rank·b .. (rank+1)·b of the feature-major batch.
            let part: Vec<f32> = (0..20)
                .flat_map(|f| {
                    x[f * BATCH + rank * b..f * BATCH + (rank + 1) * b]
                        .iter()
                        .copied()
                })
                .collect();
            let net = model.network();
            net.load_batch(&device, &ws, &part, &y[rank * b..(rank + 1) * b])
                .unwrap();
            model
                .train_step(&device, &ws, SgdStep::new(0.1, 0.9, 5e-4))
                .unwrap();
            let m = model.network().take_metrics(&device, &ws).unwrap();
            out.record(&model, m);
        }
        out.masks = model.masks(&device).unwrap();
        assert!(
            out.masks.iter().zip(&initial).all(|(a, b)| a != b),
            "three topology updates moved every mask"
        );
        out.weights = values(&device, &model);
        out
    };
    let one = on_ranks(1, train).pop().unwrap();
    for ranks in [2, 3] {
        let many = on_ranks(ranks, train);
        for (r, o) in many.iter().enumerate() {
            assert_eq!(o.masks, one.masks, "{ranks} ranks: rank {r}'s masks");
            assert_eq!(o, &many[0], "{ranks} ranks: rank {r} differs from rank 0");
        }
        close("weights", &many[0].weights, &one.weights, 1e-5);
        let (a, b): (Vec<f32>, Vec<f32>) = many[0]
            .losses
            .iter()
            .zip(&one.losses)
            .map(|(&x, &y)| (x as f32, y as f32))
            .unzip();
        close("losses", &a, &b, 1e-5);
        // Communication: every live value once per step — the hidden layers' links (30 % of
        // 32 × 20 and 32 × 32), their biases, and the dense classifier with its bias.
        let links: u64 = one.masks.iter().map(|m| m.nnz() as u64).sum();
        let dense = 32 + 32 + 5 * 32 + 5;
        assert_eq!(many[0].comm_values[0], links + dense);
    }
}

/// The language model under CHTss (sigmoid density decay: the link count falls at every
/// update, so the communication shrinks with it) on 2 ranks against 1.
#[test]
fn lm_chtss_on_two_ranks_matches_one_rank() {
    const BATCH: usize = 4;
    const STEPS: usize = 12;
    let sentence = "sparse ranks agree on every mask. ";
    let mut chars: Vec<char> = sentence.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    let text: Vec<u32> = sentence
        .repeat(6)
        .chars()
        .map(|ch| chars.iter().position(|&c| c == ch).unwrap() as u32)
        .collect();
    let seq = 12;
    let train = |comm: Option<Arc<dyn Collective>>| -> Outcome {
        let device = Device::cpu();
        let (rank, n) = comm.as_ref().map_or((0, 1), |c| (c.rank(), c.size()));
        let mut config = LmConfig::default();
        (config.vocab, config.d_model, config.heads, config.ffn) = (chars.len(), 16, 2, 32);
        (config.layers, config.seq, config.batch) = (1, seq, BATCH / n);
        (config.density, config.seed, config.bias) = (0.5, 3, false);
        let updates = Updates {
            every: 3,
            until: 10,
        };
        let mut dst = DstConfig::preset(Method::Chtss, 0.3, updates, 3);
        dst.chain_removal = ChainRemoval::Off;
        let mut model = SparseLm::new(&device, &config, &dst, LinearInit::default()).unwrap();
        if let Some(c) = comm {
            model.set_collective(&device, c).unwrap();
        }
        let ws = model.network().workspace(&device);
        let mut out = Outcome::default();
        let mut t = 0;
        for step in 0..STEPS {
            let (mut ids, mut targets) = (Vec::new(), Vec::new());
            for s in rank * BATCH / n..(rank + 1) * BATCH / n {
                let start = (step * 5 + s * 11) % (text.len() - seq - 1);
                ids.extend_from_slice(&text[start..start + seq]);
                targets.extend_from_slice(&text[start + 1..start + seq + 1]);
            }
            model.network().load(&device, &ws, &ids, &targets).unwrap();
            if !model.next_step_is_update() {
                t += 1;
            }
            let adam = AdamWStep {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.1,
                t,
            };
            let optimizer = LmOptimizer {
                adam,
                clip: Some(1.0),
            };
            model.train_step(&device, &ws, optimizer).unwrap();
            let m = model.network().take_metrics(&device, &ws).unwrap();
            out.record(&model, m);
        }
        out.masks = model.masks(&device).unwrap();
        out.weights = values(&device, &model);
        out
    };
    let one = on_ranks(1, train).pop().unwrap();
    let two = on_ranks(2, train);
    assert_eq!(two[0], two[1], "both ranks hold identical bits");
    assert_eq!(two[0].masks, one.masks, "masks bit-identical to 1 rank");
    close("weights", &two[0].weights, &one.weights, 1e-4);
    let (a, b): (Vec<f32>, Vec<f32>) = two[0]
        .losses
        .iter()
        .zip(&one.losses)
        .map(|(&x, &y)| (x as f32, y as f32))
        .unzip();
    close("losses", &a, &b, 1e-5);
    let first = two[0].comm_values[0];
    let last = *two[0].comm_values.last().unwrap();
    assert!(
        last < first,
        "CHTss decays the links, so the traffic: {first} -> {last}"
    );
}
