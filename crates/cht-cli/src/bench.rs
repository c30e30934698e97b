//! `cht bench kernels`: forward, input-gradient and weight-gradient times of sparse (CSR),
//! masked-dense and dense kernels on the selected adapter and on the CPU backend, in one run, with
//! the sparse/dense ratio and the measured crossover density.
//!
//! GPU times come from timestamp queries when the adapter has them, else from wall time around a
//! full sync; each figure is the median of `--runs` runs after one warm-up.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use cht_gpu::{Activation, DType, Device, DeviceOptions, Gemm, MaskOn, Tensor, Transpose};
use cht_sparse::CsrPattern;
use cht_sparse::rng::{RngKey, Stream};

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Sparse vs masked-dense vs dense kernel times (784→1568 and 1568→1568, batch 32 and 256).
    Kernels(KernelArgs),
    /// Link-prediction times on random masks, with the ratio to the official code's figures.
    Scores(ScoreBenchArgs),
    /// Language-model training throughput: tokens/s of FC vs 90 %-sparse training steps.
    Lm(LmBenchArgs),
    /// Dense GEMM: on a GPU the GFLOP/s and share of peak of each kernel (register-blocked, tiled,
    /// large, tensor cores) on the LLaMA-60M and MLP products; with `--backend cpu` the CPU GEMM on
    /// the MLP's three products (forward, dW, dX), a square one and the small language model's.
    Gemm(GemmBenchArgs),
    /// Data-parallel scaling: tokens/s of sparse language-model training steps on 1, 2, 4, …
    /// ranks (threads of this process; under mpirun, the MPI ranks), with the values all-reduced
    /// per step and the time spent in the all-reduce.
    Scaling(ScalingArgs),
}

#[derive(clap::Args, Debug)]
pub struct ScalingArgs {
    /// Rank counts to measure, each as threads of this process with a device of its own (the CPU
    /// backend, or with `--backend gpu` the rank's own hardware adapter); under mpirun: ignored,
    /// the launcher's ranks are measured.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    ranks: Vec<usize>,
    /// Timed training steps per figure (after two warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Density of the sparse projections (CHTs-n; no topology update in the timed steps).
    #[arg(long, default_value_t = 0.3)]
    density: f64,
    /// Global batch of sequences (split evenly over the ranks; a multiple of every rank count).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct GemmBenchArgs {
    /// Timed runs per figure (median reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Peak f32 TFLOP/s of the adapter, for the share of peak (default: the built-in table of
    /// common adapters, matched by name).
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// Peak dense f16 tensor TFLOP/s (f32 accumulation), for the tensor-core share of peak.
    #[arg(long)]
    peak_f16_tflops: Option<f64>,
}

#[derive(clap::Args, Debug)]
pub struct LmBenchArgs {
    /// Timed training steps per figure (after two warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Densities of the sparse runs' projections (comma-separated; 30 % is the paper's LLM
    /// density).
    #[arg(long, alias = "density", value_delimiter = ',', default_values_t = [0.3, 0.1])]
    densities: Vec<f64>,
    /// Density above which projections run masked-dense: `auto` (the calibrated crossover, as
    /// `cht lm train` uses), `never`, or a number.
    #[arg(long, default_value = "auto")]
    masked_dense_above: crate::execution::MaskedDenseAbove,
    /// Also the LLaMA-60M shape (d 512, FFN 1376, 8 heads, 8 layers, context 256, vocabulary
    /// 32000, batch 8) — on a GPU adapter only, it is hours on a CPU.
    #[arg(long)]
    llama60m: bool,
    /// Skip the CPU backend.
    #[arg(long)]
    no_cpu: bool,
    /// On the CPU backend, also print where each step's time goes: wall time per op (ms/step,
    /// calls/step, share of the step)
    #[arg(long)]
    profile: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ScoreBenchArgs {
    /// Timed runs per figure (median reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Skip the GPU (by default the selected adapter is measured beside the CPU backend).
    #[arg(long)]
    no_gpu: bool,
}

#[derive(clap::Args, Debug)]
pub struct KernelArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Timed runs per figure (median reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Only batch 32 and densities 1, 10, 100 % (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Skip the CPU backend (by default both the selected adapter and the CPU are measured).
    #[arg(long)]
    no_cpu: bool,
}

/// Runs one `cht bench` subcommand on the device `options` selects (and, where the subcommand
/// says so, on the CPU backend too) and prints a table or JSON lines.
pub fn run(options: &DeviceOptions, world: &crate::world::World, cmd: &BenchCommand) -> Result<()> {
    if !matches!(cmd, BenchCommand::Scaling(_)) {
        world.require_single("bench")?;
    }
    match cmd {
        BenchCommand::Scaling(a) => scaling(options, world, a),
        BenchCommand::Kernels(a) => kernels(options, a),
        BenchCommand::Scores(a) => scores(options, a),
        BenchCommand::Lm(a) => lm(options, a),
        BenchCommand::Gemm(a) => gemm_kernels(options, a),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Forward,
    InputGrad,
    WeightGrad,
}

impl Op {
    const ALL: [Op; 3] = [Op::Forward, Op::InputGrad, Op::WeightGrad];
    fn name(self) -> &'static str {
        match self {
            Op::Forward => "forward",
            Op::InputGrad => "dX",
            Op::WeightGrad => "dW",
        }
    }
}

/// Buffers of one (shape, batch, density) case on one device.
struct Case {
    pattern: cht_gpu::SparsePattern,
    values: Tensor,
    dense_w: Tensor,
    mask: Tensor,
    x: Tensor,
    y: Tensor,
    dy: Tensor,
    dx: Tensor,
    dw_sparse: Tensor,
    dw_dense: Tensor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sparse,
    Masked,
    Dense,
}

fn record(d: &Device, c: &Case, op: Op, kind: Kind) -> cht_gpu::Result<()> {
    let nn = Gemm::new(Transpose::No, Transpose::No);
    match (op, kind) {
        (Op::Forward, Kind::Sparse) => {
            d.spmm_forward(&c.pattern, &c.values, &c.x, None, Activation::None, &c.y)
        }
        (Op::InputGrad, Kind::Sparse) => d.spmm_backward_input(&c.pattern, &c.values, &c.dy, &c.dx),
        (Op::WeightGrad, Kind::Sparse) => {
            d.sddmm_weight_grad(&c.pattern, &c.dy, &c.x, &c.dw_sparse)
        }
        (Op::Forward, k) => {
            let mask = if k == Kind::Masked {
                MaskOn::A(&c.mask)
            } else {
                MaskOn::None
            };
            d.gemm(&Gemm { mask, ..nn }, &c.dense_w, &c.x, &c.y)
        }
        (Op::InputGrad, k) => {
            let mask = if k == Kind::Masked {
                MaskOn::A(&c.mask)
            } else {
                MaskOn::None
            };
            d.gemm(
                &Gemm {
                    mask,
                    ..Gemm::new(Transpose::Yes, Transpose::No)
                },
                &c.dense_w,
                &c.dy,
                &c.dx,
            )
        }
        (Op::WeightGrad, k) => {
            let mask = if k == Kind::Masked {
                MaskOn::C(&c.mask)
            } else {
                MaskOn::None
            };
            d.gemm(
                &Gemm {
                    mask,
                    ..Gemm::new(Transpose::No, Transpose::Yes)
                },
                &c.dy,
                &c.x,
                &c.dw_dense,
            )
        }
    }
}

fn median_ms(
    d: &Device,
    runs: usize,
    mut f: impl FnMut(&Device) -> cht_gpu::Result<()>,
) -> Result<(f64, &'static str)> {
    d.time_ms(&mut f)?; // warm-up: pipeline creation, caches
    let mut times = Vec::with_capacity(runs);
    let mut how = "wall";
    for _ in 0..runs.max(1) {
        let (ms, h) = d.time_ms(&mut f)?;
        times.push(ms);
        how = h;
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], how))
}

fn setup(d: &Device, inp: usize, out: usize, batch: usize, density: f64) -> Result<Case> {
    let p = CsrPattern::random(out, inp, density, RngKey::new(1, Stream::Synthetic, 0, 0))?;
    let fill = |label: &str, rows: usize, cols: usize| -> Result<Tensor> {
        let t = d.zeros(label, rows, cols, DType::F32);
        d.fill_uniform(RngKey::new(2, Stream::Synthetic, 0, 0), 0, -1.0, 1.0, &t)?;
        Ok(t)
    };
    let values = fill("bench.values", p.nnz(), 1)?;
    Ok(Case {
        pattern: d.upload_pattern("bench.w", &p, p.nnz())?,
        dense_w: fill("bench.dense_w", out, inp)?,
        mask: d.tensor_u32("bench.mask", out, inp, &p.to_mask().to_u32())?,
        values,
        x: fill("bench.x", inp, batch)?,
        y: d.zeros("bench.y", out, batch, DType::F32),
        dy: fill("bench.dy", out, batch)?,
        dx: d.zeros("bench.dx", inp, batch, DType::F32),
        dw_sparse: d.zeros("bench.dw_sparse", p.nnz(), 1, DType::F32),
        dw_dense: d.zeros("bench.dw_dense", out, inp, DType::F32),
    })
}

/// One measured row.
struct Row {
    inp: usize,
    out: usize,
    batch: usize,
    density: f64,
    sparse_ms: f64,
    masked_ms: f64,
    dense_ms: f64,
}

fn kernels(options: &DeviceOptions, a: &KernelArgs) -> Result<()> {
    let mut devices = vec![crate::open(options)?];
    if !a.no_cpu && devices[0].is_gpu() {
        devices.push(Device::cpu());
    }
    let shapes = [(784, 1568), (1568, 1568)];
    let batches: &[usize] = if a.quick { &[32] } else { &[32, 256] };
    let densities: &[f64] = if a.quick {
        &[0.01, 0.1, 1.0]
    } else {
        &[0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
    };
    for d in &devices {
        let backend = if d.is_gpu() { "gpu" } else { "cpu" };
        let adapter = d.name();
        if !a.json {
            outln!(
                "\n== {backend}: {adapter} (median of {} runs, ms) ==",
                a.runs
            );
            outln!(
                "{:<8} {:>5} {:>5} {:>5} {:>7} {:>10} {:>10} {:>10} {:>8}",
                "op",
                "in",
                "out",
                "batch",
                "density",
                "sparse",
                "masked",
                "dense",
                "dense/sp"
            );
        }
        let mut rows = Vec::new();
        for &(inp, out) in &shapes {
            for &batch in batches {
                // Dense times do not depend on density: measure once per shape and batch.
                let base = setup(d, inp, out, batch, 1.0)?;
                let mut dense = BTreeMap::new();
                for op in Op::ALL {
                    dense.insert(
                        op,
                        median_ms(d, a.runs, |dev| record(dev, &base, op, Kind::Dense))?,
                    );
                }
                drop(base);
                for &density in densities {
                    let case = setup(d, inp, out, batch, density)?;
                    for op in Op::ALL {
                        let (sparse_ms, how) =
                            median_ms(d, a.runs, |dev| record(dev, &case, op, Kind::Sparse))?;
                        let (masked_ms, _) =
                            median_ms(d, a.runs, |dev| record(dev, &case, op, Kind::Masked))?;
                        let dense_ms = dense[&op].0;
                        let row = Row {
                            inp,
                            out,
                            batch,
                            density,
                            sparse_ms,
                            masked_ms,
                            dense_ms,
                        };
                        if a.json {
                            outln!(
                                "{}",
                                serde_json::json!({
                                    "op": op.name(), "in": inp, "out": out, "batch": batch,
                                    "density": density, "backend": backend, "adapter": adapter,
                                    "sparse_ms": sparse_ms, "masked_ms": masked_ms, "dense_ms": dense_ms,
                                    "timing": how,
                                })
                            );
                        } else {
                            outln!(
                                "{:<8} {:>5} {:>5} {:>5} {:>6.1}% {:>10.3} {:>10.3} {:>10.3} {:>7.1}x",
                                op.name(),
                                inp,
                                out,
                                batch,
                                density * 100.0,
                                sparse_ms,
                                masked_ms,
                                dense_ms,
                                dense_ms / sparse_ms
                            );
                        }
                        rows.push(row);
                    }
                }
            }
        }
        summary(&rows, backend, &adapter, a.json);
    }
    Ok(())
}

/// forward + dX + dW per (shape, batch, density): the ratio to dense and the crossover density.
fn summary(rows: &[Row], backend: &str, adapter: &str, json: bool) {
    // (in, out, batch) → [(density, sparse, masked, dense)] summed over the three ops.
    type Totals = Vec<(f64, f64, f64, f64)>;
    let mut totals: BTreeMap<(usize, usize, usize), Totals> = BTreeMap::new();
    for r in rows {
        let entry = totals.entry((r.inp, r.out, r.batch)).or_default();
        match entry.iter_mut().find(|t| t.0 == r.density) {
            Some(t) => {
                t.1 += r.sparse_ms;
                t.2 += r.masked_ms;
                t.3 += r.dense_ms;
            }
            None => entry.push((r.density, r.sparse_ms, r.masked_ms, r.dense_ms)),
        }
    }
    for ((inp, out, batch), mut t) in totals {
        t.sort_by(|a, b| a.0.total_cmp(&b.0));
        // The crossover: the highest measured density below which sparse always beats dense.
        let crossover = t.iter().take_while(|x| x.1 < x.3).last().map(|x| x.0);
        if json {
            for &(density, s, m, dn) in &t {
                outln!(
                    "{}",
                    serde_json::json!({"op": "fwd+dX+dW", "in": inp, "out": out, "batch": batch,
                        "density": density, "backend": backend, "adapter": adapter,
                        "sparse_ms": s, "masked_ms": m, "dense_ms": dn})
                );
            }
            outln!(
                "{}",
                serde_json::json!({"crossover_density": crossover, "in": inp, "out": out, "batch": batch, "backend": backend, "adapter": adapter})
            );
        } else {
            let ratios: Vec<String> = t
                .iter()
                .map(|x| format!("{:.0}%: {:.1}x", x.0 * 100.0, x.3 / x.1))
                .collect();
            outln!(
                "{inp}->{out} batch {batch}: fwd+dX+dW dense/sparse = {}",
                ratios.join(", ")
            );
            match crossover {
                Some(c) => outln!(
                    "  sparse/dense crossover: sparse is faster up to {:.0}% density (measured points)",
                    c * 100.0
                ),
                None => {
                    outln!("  sparse/dense crossover: dense is faster at every measured density")
                }
            }
        }
    }
}

/// One link-prediction figure: a random `rows × cols` mask at `density`, and the official code's
/// time for it when known.
struct ScoreCase {
    predictor: cht_sparse::predict::Predictor,
    rows: usize,
    cols: usize,
    density: f64,
    peer: Option<(f64, &'static str)>,
}

const CPP: &str = "official C++ (OpenMP)";
const TORCH: &str = "official PyTorch, CPU";

const fn score_case(
    predictor: cht_sparse::predict::Predictor,
    (rows, cols): (usize, usize),
    density: f64,
    peer: Option<(f64, &'static str)>,
) -> ScoreCase {
    ScoreCase {
        predictor,
        rows,
        cols,
        density,
        peer,
    }
}

/// Peer figures measured on the 2-core development machine with the official code (issues #14 and
/// #22): exact CH3-L3p by the C++/OpenMP extension, CH2-L3n by the PyTorch dense implementation on
/// CPU (whose time does not depend on the density). The CH2-L3n rows sweep the density so that the
/// crossover between the sparse walk and the dense products shows.
const SCORE_CASES: [ScoreCase; 12] = {
    use cht_sparse::predict::Predictor::{Ch2L3n, Ch3L3p};
    [
        score_case(Ch3L3p, (1024, 1024), 0.05, Some((9.6, CPP))),
        score_case(Ch3L3p, (1568, 1568), 0.01, Some((2.3, CPP))),
        score_case(Ch2L3n, (1568, 1568), 0.01, Some((0.20, TORCH))),
        score_case(Ch2L3n, (1568, 1568), 0.02, None),
        score_case(Ch2L3n, (1568, 1568), 0.05, None),
        score_case(Ch2L3n, (2048, 5461), 0.01, Some((2.9, TORCH))),
        score_case(Ch2L3n, (2048, 5461), 0.02, Some((2.9, TORCH))),
        score_case(Ch2L3n, (2048, 5461), 0.05, Some((2.9, TORCH))),
        score_case(Ch2L3n, (2048, 5461), 0.10, Some((2.9, TORCH))),
        score_case(Ch2L3n, (2048, 5461), 0.30, Some((2.9, TORCH))),
        score_case(Ch2L3n, (4096, 4096), 0.05, Some((3.9, TORCH))),
        score_case(Ch2L3n, (4096, 4096), 0.10, Some((3.9, TORCH))),
    ]
};

/// Median of `runs` wall times of `f` (a single run once one takes more than 5 s).
fn median_s(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let start = std::time::Instant::now();
        f();
        times.push(start.elapsed().as_secs_f64());
        if times[0] > 5.0 {
            break;
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn scores(options: &DeviceOptions, a: &ScoreBenchArgs) -> Result<()> {
    use cht_sparse::predict::{L3N_DENSE_ABOVE, L3nPath, scores_via};
    let threads = cht_gpu::cpu_threads();
    let gpu = Device::open_blocking(options)
        .ok()
        .filter(|d| d.is_gpu() && !a.no_gpu);
    let gpu_name = gpu.as_ref().map(Device::name);
    // Software adapters (lavapipe) run the walk 10–20× slower than the CPU code and the dense
    // products at a few GFLOP/s: there, the walk is measured where its CPU time is below 3 s and
    // the products up to 1568×1568 (8·10⁹ multiply-adds).
    let software = matches!(gpu.as_ref().map(Device::info),
        Some(cht_gpu::DeviceInfo::Gpu(s)) if s.device_type == "Cpu");
    if !a.json {
        outln!("link prediction on random masks, median of {} runs", a.runs);
        outln!(
            "CPU backend: Rust, {threads} threads; GPU: {}; node-based scores take the products \
             above {}% density (both paths give the same bits)",
            gpu_name.as_deref().unwrap_or("none"),
            L3N_DENSE_ABOVE * 100.0
        );
        outln!(
            "{:<9} {:>9} {:>7} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8} {:>7}  peer",
            "predictor",
            "size",
            "density",
            "walk (s)",
            "prod (s)",
            "picks",
            "gpu walk",
            "gpu prod",
            "peer (s)",
            "gain"
        );
    }
    for case in &SCORE_CASES {
        let (predictor, rows, cols, density) = (case.predictor, case.rows, case.cols, case.density);
        let p = CsrPattern::random(rows, cols, density, RngKey::new(1, Stream::Synthetic, 0, 0))?;
        let node = !predictor.is_path_based();
        let cpu = |path| {
            median_s(a.runs, || {
                drop(std::hint::black_box(scores_via(&p, predictor, path)))
            })
        };
        let walk = cpu(L3nPath::Walk);
        let products = node.then(|| cpu(L3nPath::Products));
        let picks = L3nPath::choose(rows, cols, p.nnz(), L3N_DENSE_ABOVE);
        let ours = match (picks, products) {
            (L3nPath::Products, Some(t)) if node => t,
            _ => walk,
        };
        let on_gpu = |path: L3nPath, cpu_s: f64| -> Result<Option<f64>> {
            let Some(g) = &gpu else { return Ok(None) };
            let too_slow = match path {
                L3nPath::Walk => cpu_s > 3.0,
                L3nPath::Products => (rows * cols * (rows + cols)) as f64 > 8e9,
            };
            if software && too_slow {
                return Ok(None);
            }
            let dp = g.upload_pattern("bench.scores", &p, p.nnz())?;
            let mut scratch = g.link_scratch("bench.scores", rows, cols);
            if path == L3nPath::Products {
                let Some(ps) = g.l3n_product_scratch("bench.scores", rows, cols) else {
                    return Ok(None);
                };
                scratch = scratch.with_products(ps)?;
            }
            let out = g.zeros("bench.scores.out", rows, cols, DType::F32);
            let (ms, _) = median_ms(g, 1, |dev| {
                dev.link_scores_via(&dp, predictor, path, &scratch, &out)
            })?;
            Ok(Some(ms / 1e3))
        };
        let gpu_walk = on_gpu(L3nPath::Walk, walk)?;
        let gpu_products = match products {
            Some(t) => on_gpu(L3nPath::Products, t)?,
            None => None,
        };
        let (peer_s, peer) = case.peer.unzip();
        let picked = if node { Some(picks) } else { None };
        if a.json {
            outln!(
                "{}",
                serde_json::json!({"predictor": predictor.name(), "rows": rows, "cols": cols,
                    "density": density, "cpu_walk_s": walk, "cpu_products_s": products,
                    "picks": picked.map(|p| format!("{p:?}").to_lowercase()), "cpu_s": ours,
                    "cpu_threads": threads, "gpu_walk_s": gpu_walk, "gpu_products_s": gpu_products,
                    "gpu_adapter": gpu_name, "peer_s": peer_s, "peer": peer,
                    "cpu_speedup": peer_s.map(|s| s / ours)})
            );
        } else {
            let f = |t: Option<f64>| t.map_or("-".to_owned(), |s| format!("{s:.3}"));
            outln!(
                "{:<9} {:>9} {:>6}% {:>9.3} {:>9} {:>8} {:>9} {:>9} {:>8} {:>7}  {}",
                predictor.name(),
                format!("{rows}x{cols}"),
                density * 100.0,
                walk,
                f(products),
                picked.map_or("-".to_owned(), |p| format!("{p:?}").to_lowercase()),
                f(gpu_walk),
                f(gpu_products),
                peer_s.map_or("-".to_owned(), |s| format!("{s:.2}")),
                peer_s.map_or("-".to_owned(), |s| format!("{:.1}x", s / ours)),
                peer.unwrap_or("")
            );
        }
    }
    topology_update(gpu.as_ref(), a)
}

/// One full CHTs-n topology update (soft removal, CH2-L3n scoring, soft regrowth, CSR/CSC rebuild,
/// re-gather of weights and momentum) of a 1568×1568 layer at 1 % density.
fn topology_update(gpu: Option<&Device>, a: &ScoreBenchArgs) -> Result<()> {
    use cht_dst::{DstConfig, DstScheduler, LayerRef, Method, Updates};
    let cpu = Device::cpu();
    let mut devices = vec![&cpu];
    if let Some(g) = gpu.filter(|_| !a.no_gpu) {
        devices.push(g);
    }
    for d in devices {
        let config = DstConfig::preset(Method::ChtsN, 0.01, Updates::every(1).until(1_000_000), 1);
        let mut sched = DstScheduler::new(config, &[(1568, 1568)])?;
        let mask = sched.initial_masks(None)?.remove(0);
        let p = CsrPattern::from_mask(&mask);
        let weights = sched.initial_weights(0, &mask)?;
        let pattern = d.upload_pattern("bench.update", &p, p.nnz())?;
        let values = d.tensor_f32("bench.update.values", p.nnz(), 1, &weights)?;
        let momentum = d.zeros("bench.update.momentum", p.nnz(), 1, DType::F32);
        let topo = sched.topology(d, 1);
        let state = [&momentum];
        let layer = LayerRef::new(&pattern, &values, &state);
        let (ms, how) = median_ms(d, a.runs, |dev| {
            sched.step();
            sched
                .update(dev, &topo, &[layer])
                .map(|_| ())
                .map_err(|e| match e {
                    cht_dst::Error::Device(e) => e,
                    other => cht_gpu::Error::Unsupported(other.to_string()),
                })
        })?;
        if a.json {
            outln!(
                "{}",
                serde_json::json!({"op": "topology_update", "method": "CHTs-n", "rows": 1568, "cols": 1568,
                    "density": 0.01, "backend": if d.is_gpu() { "gpu" } else { "cpu" }, "adapter": d.name(),
                    "ms": ms, "timing": how})
            );
        } else {
            outln!(
                "full CHTs-n topology update, 1568x1568 @ 1% on {}: {ms:.1} ms ({how})",
                d.name()
            );
        }
    }
    Ok(())
}

/// The small language model of `configs/lm-*.toml` (character vocabulary of tiny-shakespeare):
/// width 128, 4 heads, SwiGLU 352, 4 blocks, 16 × 128 tokens, dense, seed 1, no biases.
fn lm_small() -> cht_nn::LmConfig {
    let mut c = cht_nn::LmConfig::default();
    (c.vocab, c.d_model, c.heads, c.ffn, c.layers) = (65, 128, 4, 352, 4);
    (c.seq, c.batch, c.density, c.seed, c.bias) = (128, 16, 1.0, 1, false);
    c
}

/// LLaMA-60M (spec §7.4) at a per-device batch of 8 sequences: vocabulary 32000, width 512,
/// 8 heads, SwiGLU 1376, 8 blocks, 8 × 256 tokens, dense, seed 1, no biases.
fn lm_60m() -> cht_nn::LmConfig {
    let mut c = cht_nn::LmConfig::default();
    (c.vocab, c.d_model, c.heads, c.ffn, c.layers) = (32000, 512, 8, 1376, 8);
    (c.seq, c.batch, c.density, c.seed, c.bias) = (256, 8, 1.0, 1, false);
    c
}

/// `cht bench lm`: wall time of whole training steps (forward, loss, backward, clipping, AdamW;
/// one submit each) of the FC model and of sparse models at each density on each device, as
/// tokens/s, the ratio to FC, how the projections executed and the dispatches per step.
fn lm(options: &DeviceOptions, a: &LmBenchArgs) -> Result<()> {
    let gpu = Device::open_blocking(options).ok().filter(Device::is_gpu);
    let cpu = Device::cpu();
    let mut cases: Vec<(&Device, &str, cht_nn::LmConfig)> = Vec::new();
    if let Some(g) = &gpu {
        cases.push((g, "small", lm_small()));
        if a.llama60m {
            cases.push((g, "llama-60m", lm_60m()));
        }
    }
    if !a.no_cpu {
        cases.push((&cpu, "small", lm_small()));
    }
    if let Some(&d) = a.densities.iter().find(|d| !(**d > 0.0 && **d <= 1.0)) {
        anyhow::bail!("--densities: {d} is not in (0, 1]");
    }
    let setting = a.masked_dense_above;
    if !a.json {
        outln!(
            "language-model training steps (forward, loss, backward, clip, AdamW), {} timed steps each",
            a.steps
        );
        outln!(
            "{:<10} {:<44} {:>8} {:>12} {:>8} {:>13} {:>15}",
            "model",
            "device",
            "density",
            "tokens/s",
            "vs FC",
            "projections",
            "dispatches/step"
        );
    }
    for (d, name, base) in cases {
        let tokens = base.batch * base.seq;
        let largest = (base.ffn, base.d_model);
        let policy = { setting }.resolve(d, largest, tokens)?;
        let mut fc_rate = None;
        for density in std::iter::once(1.0).chain(a.densities.iter().copied()) {
            let mut config = base.clone();
            config.density = density;
            let r = lm_tokens_per_s(d, &config, a.steps, policy, a.profile)?;
            let fc = *fc_rate.get_or_insert(r.tokens_per_s);
            let ratio = r.tokens_per_s / fc;
            let dispatches = if d.is_gpu() {
                r.dispatches.to_string()
            } else {
                "-".into()
            };
            if a.json {
                outln!(
                    "{}",
                    serde_json::json!({"bench": "lm", "model": name, "device": d.name(),
                        "backend": if d.is_gpu() { "gpu" } else { "cpu" }, "d_model": base.d_model,
                        "layers": base.layers, "seq": base.seq, "batch": base.batch,
                        "vocab": base.vocab, "density": density, "tokens_per_s": r.tokens_per_s,
                        "over_fc": ratio, "execution": r.execution,
                        "masked_dense_above": policy.crossover,
                        "dispatches_per_step": d.is_gpu().then_some(r.dispatches)})
                );
            } else {
                outln!(
                    "{:<10} {:<44} {:>7.0}% {:>12.0} {:>7.2}x {:>13} {:>15}",
                    name,
                    d.name(),
                    density * 100.0,
                    r.tokens_per_s,
                    ratio,
                    r.execution,
                    dispatches
                );
            }
        }
        if !a.json {
            outln!(
                "{:<10} masked-dense above {:.1} % density on this device",
                "",
                policy.crossover * 100.0
            );
        }
    }
    Ok(())
}

/// Where a step's wall time went, op by op (CPU backend, `--profile`).
fn print_op_profile(ops: &[cht_gpu::OpTime], steps: usize, elapsed: f64) {
    let per_step = |x: f64| x / steps.max(1) as f64;
    let step_ms = per_step(elapsed) * 1e3;
    outln!(
        "  {:<22} {:>10} {:>10} {:>7}",
        "op",
        "ms/step",
        "calls/step",
        "share"
    );
    for t in ops {
        outln!(
            "  {:<22} {:>10.2} {:>10.1} {:>6.1}%",
            t.op,
            per_step(t.seconds) * 1e3,
            per_step(t.calls as f64),
            100.0 * t.seconds / elapsed
        );
    }
    let ops_s: f64 = ops.iter().map(|t| t.seconds).sum();
    outln!(
        "  {:<22} {:>10.2} {:>10} {:>6.1}%",
        "(between ops)",
        per_step(elapsed - ops_s) * 1e3,
        "",
        100.0 * (elapsed - ops_s) / elapsed
    );
    outln!("  {:<22} {:>10.2}", "step", step_ms);
}

/// One `cht bench lm` figure.
struct LmRate {
    tokens_per_s: f64,
    dispatches: u64,
    execution: &'static str,
}

fn lm_tokens_per_s(
    d: &Device,
    config: &cht_nn::LmConfig,
    steps: usize,
    policy: cht_nn::ExecutionPolicy,
    profile: bool,
) -> Result<LmRate> {
    let mut lm = cht_nn::Lm::new(d, config)?;
    let sparse = lm.sparse_projections().len();
    lm.set_execution(d, policy, &vec![config.density; sparse])?;
    let execution = match (sparse, policy.for_density(config.density)) {
        (0, _) => "dense",
        (_, cht_nn::Execution::Csr) => "CSR",
        (_, cht_nn::Execution::MaskedDense) => "masked-dense",
    };
    let ws = lm.workspace(d);
    let tokens = config.batch * config.seq;
    let (ids, targets) = random_tokens(config, 0);
    lm.load(d, &ws, &ids, &targets)?;
    let adam = |t: u32| cht_gpu::AdamWStep {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        t,
    };
    for t in 1..=2 {
        lm.train_step(d, &ws, Some(adam(t)), Some(1.0))?;
    }
    lm.take_metrics(d, &ws)?; // waits for the warm-up
    let before = d.dispatch_count();
    d.profile_ops(profile);
    let start = std::time::Instant::now();
    for t in 0..steps {
        lm.train_step(d, &ws, Some(adam(3 + t as u32)), Some(1.0))?;
    }
    lm.take_metrics(d, &ws)?; // waits for the last step
    let elapsed = start.elapsed().as_secs_f64();
    d.profile_ops(false);
    let ops = d.take_op_profile();
    if !ops.is_empty() {
        print_op_profile(&ops, steps, elapsed);
    }
    // take_metrics' clear is a command, not a dispatch: the difference is the steps' dispatches.
    Ok(LmRate {
        tokens_per_s: (steps * tokens) as f64 / elapsed,
        dispatches: (d.dispatch_count() - before) / steps.max(1) as u64,
        execution,
    })
}

/// A batch of random token ids and targets for `config` (stream `index`: a rank's own data).
fn random_tokens(config: &cht_nn::LmConfig, index: u32) -> (Vec<u32>, Vec<u32>) {
    let tokens = config.batch * config.seq;
    let mut rng = cht_sparse::rng::Counter::new(RngKey::new(3, Stream::Synthetic, index, 0));
    let ids = (0..tokens)
        .map(|_| rng.below(config.vocab as u32))
        .collect();
    let targets = (0..tokens)
        .map(|_| rng.below(config.vocab as u32))
        .collect();
    (ids, targets)
}

/// Peak dense throughput of an adapter: f32, and f16 on tensor cores with f32 accumulation.
#[derive(Clone, Copy, Debug)]
struct Peak {
    /// f32 TFLOP/s (the f32 kernels' ceiling).
    f32_tflops: Option<f64>,
    /// Dense f16 tensor TFLOP/s with f32 accumulation (the tensor-core kernel's ceiling).
    f16_tflops: Option<f64>,
}

/// Vendor peak figures (dense, no sparsity) of common adapters, matched in order as a
/// case-insensitive substring of the adapter name (so more specific names come first). Entries
/// without figures keep a larger sibling from matching a smaller one's entry.
const PEAKS: &[(&str, Option<f64>, Option<f64>)] = &[
    // NVIDIA H200 datasheet (SXM): FP32 67 TFLOPS; FP16 Tensor Core 1,979 TFLOPS with sparsity,
    // i.e. 989.5 dense. (H200 NVL: 60 / 1,671 with sparsity.)
    ("H200 NVL", Some(60.0), Some(835.5)),
    ("H200", Some(67.0), Some(989.5)),
    // NVIDIA H100 datasheet: PCIe FP32 51 TFLOPS, FP16 Tensor Core 1,513 with sparsity (756.5
    // dense); SXM FP32 67, FP16 Tensor Core 1,979 with sparsity (989.5 dense).
    ("H100 PCIe", Some(51.0), Some(756.5)),
    ("H100", Some(67.0), Some(989.5)),
    // NVIDIA A100 datasheet: FP32 19.5 TFLOPS; FP16 Tensor Core 312 TFLOPS (624 with sparsity).
    ("A100", Some(19.5), Some(312.0)),
    // NVIDIA Ada Lovelace architecture whitepaper, GeForce RTX 4090: FP32 82.6 TFLOPS; peak FP16
    // Tensor TFLOPS with FP32 accumulate 165.2 (330.4 with sparsity).
    ("RTX 4090", Some(82.6), Some(165.2)),
    // NVIDIA Ampere GA102 whitepaper, GeForce RTX 3090: FP32 35.6 TFLOPS; peak FP16 Tensor TFLOPS
    // with FP32 accumulate 71 (142 with sparsity).
    ("RTX 3090", Some(35.6), Some(71.0)),
    // AMD Instinct MI300X data sheet: peak FP32 vector 163.4 TFLOPS; peak FP16 1,307.4 TFLOPS
    // (2,614.9 with sparsity).
    ("MI300X", Some(163.4), Some(1307.4)),
    // Apple publishes no figure for the Pro / Max / Ultra parts' GPUs here: pass --peak-tflops.
    ("M2 Pro", None, None),
    ("M2 Max", None, None),
    ("M2 Ultra", None, None),
    ("M3 Pro", None, None),
    ("M3 Max", None, None),
    ("M3 Ultra", None, None),
    // Apple M2 press release (June 2022): 10-core GPU, "3.6 teraflops". Apple GPUs run f16 at the
    // f32 rate (no separate tensor units), so simdgroup matrices share the same ceiling.
    ("Apple M2", Some(3.6), Some(3.6)),
    // Apple M3: Apple gives no TFLOPS figure; 10 GPU cores × 128 f32 lanes × 2 FLOP × ≈1.4 GHz
    // ≈ 3.6 TFLOP/s (an estimate, like M2's), f16 at the same rate.
    ("Apple M3", Some(3.6), Some(3.6)),
];

/// The peak of the adapter called `name` (case-insensitive substring match), or unknown.
fn peak_of(name: &str) -> Peak {
    let lower = name.to_lowercase();
    PEAKS
        .iter()
        .find(|(pattern, _, _)| lower.contains(&pattern.to_lowercase()))
        .map_or(
            Peak {
                f32_tflops: None,
                f16_tflops: None,
            },
            |&(_, f32_tflops, f16_tflops)| Peak {
                f32_tflops,
                f16_tflops,
            },
        )
}

/// The products `cht bench gemm` measures: (what, m, n, k, op(A), op(B)).
fn gemm_bench_shapes() -> Vec<(&'static str, usize, usize, usize, Transpose, Transpose)> {
    let (no, yes) = (Transpose::No, Transpose::Yes);
    // LLaMA-60M at batch 8 × context 256, feature-major (activations [features, tokens], weights
    // [out, in]): forward C[out×tokens] = W[out×in]·X[in×tokens]; the FFN's up projection's weight
    // gradient dW = dY·Xᵀ and input gradient dX = Wᵀ·dY.
    let (tokens, d, ffn, vocab) = (8 * 256, 512, 1376, 32000);
    vec![
        ("60M attn d->d", d, tokens, d, no, no),
        ("60M ffn d->ffn", ffn, tokens, d, no, no),
        ("60M ffn ffn->d", d, tokens, ffn, no, no),
        ("60M head d->vocab", vocab, tokens, d, no, no),
        ("60M d->ffn dW", ffn, d, tokens, no, yes),
        ("60M d->ffn dX", d, tokens, ffn, yes, no),
        // The MLP's 784→1568 and 1568→1568 layers at batch 32, and a square product.
        ("mlp 1568x32x784", 1568, 32, 784, no, no),
        ("mlp 1568x32x1568", 1568, 32, 1568, no, no),
        ("mlp 1568x1568x32", 1568, 1568, 32, no, no),
        ("square 1024", 1024, 1024, 1024, no, no),
    ]
}

/// `cht bench gemm`: GFLOP/s of each GPU GEMM kernel (register-blocked, tiled, large and, where
/// the adapter has them, tensor cores) and their share of the adapter's peak, on the LLaMA-60M
/// products and the MLP's. With `--backend cpu`, the CPU GEMM instead.
fn gemm_kernels(options: &DeviceOptions, a: &GemmBenchArgs) -> Result<()> {
    use cht_gpu::{GemmKernel, Precision};
    if options.backend == cht_gpu::BackendChoice::Cpu {
        return gemm_cpu(options, a);
    }
    let d = Device::open_blocking(&options.clone().with_backend(cht_gpu::BackendChoice::Gpu))?;
    // Tensor cores: this device if it was opened for them, else a second device on the same
    // adapter opened with precision f16-tc, if the adapter allows.
    let (tc_owned, tc_note) = if d.tensor_core_kernel().is_some() {
        (None, String::new())
    } else {
        match Device::open_blocking(
            &options
                .clone()
                .with_backend(cht_gpu::BackendChoice::Gpu)
                .with_precision(Precision::F16TensorCores),
        ) {
            Ok(t) => (Some(t), String::new()),
            Err(e) => (None, e.to_string()),
        }
    };
    let tc = if d.tensor_core_kernel().is_some() {
        Some(&d)
    } else {
        tc_owned.as_ref()
    };
    let table = peak_of(&d.name());
    let peak = Peak {
        f32_tflops: a.peak_tflops.or(table.f32_tflops),
        f16_tflops: a.peak_f16_tflops.or(table.f16_tflops),
    };
    let kernels = [
        ("registers", GemmKernel::Registers),
        ("tiled", GemmKernel::Tiled),
        ("large", GemmKernel::Large),
        ("tensor cores", GemmKernel::TensorCores),
    ];
    if !a.json {
        let tflops = |t: Option<f64>| t.map_or("unknown".to_owned(), |t| format!("{t} TFLOP/s"));
        outln!("dense GEMM on {}, median of {} runs", d.name(), a.runs);
        outln!(
            "peak: f32 {}, f16 tensor {} (--peak-tflops / --peak-f16-tflops override)",
            tflops(peak.f32_tflops),
            tflops(peak.f16_tflops)
        );
        match tc.and_then(Device::tensor_core_kernel) {
            Some(k) => outln!("tensor cores: {k}"),
            None => outln!("tensor cores: not measured ({tc_note})"),
        }
        outln!(
            "GF/s (% of peak; f32 kernels against the f32 peak, tensor cores against the f16 one)"
        );
        out!("{:<18} {:>6} {:>6} {:>6}", "product", "m", "n", "k");
        for (name, _) in kernels {
            out!(" {name:>17}");
        }
        outln!();
    }
    for (what, m, n, k, ta, tb) in gemm_bench_shapes() {
        let (ar, ac) = if ta == Transpose::No { (m, k) } else { (k, m) };
        let (br, bc) = if tb == Transpose::No { (k, n) } else { (n, k) };
        let mut gflops: Vec<Option<f64>> = Vec::new();
        let mut skipped = None;
        for (_, kernel) in kernels {
            let dev = if kernel == GemmKernel::TensorCores {
                tc
            } else {
                Some(&d)
            };
            let Some(dev) = dev else {
                gflops.push(None);
                continue;
            };
            // Operands live on their device (the tensor-core device may be a second one).
            let measured = (|| -> Result<f64> {
                let x = gemm_operand(dev, "bench.gemm.a", ar, ac)?;
                let y = gemm_operand(dev, "bench.gemm.b", br, bc)?;
                let c = dev.zeros("bench.gemm.c", m, n, DType::F32);
                let cfg = Gemm {
                    kernel,
                    ..Gemm::new(ta, tb)
                };
                let (ms, _) = median_ms(dev, a.runs, |dv| dv.gemm(&cfg, &x, &y, &c))?;
                Ok(2.0 * (m * n * k) as f64 / (ms * 1e6))
            })();
            match measured {
                Ok(g) => gflops.push(Some(g)),
                Err(e) => {
                    skipped.get_or_insert(format!("{e:#}"));
                    gflops.push(None);
                }
            }
        }
        let share = |g: Option<f64>, i: usize| {
            let p = if i == 3 {
                peak.f16_tflops
            } else {
                peak.f32_tflops
            };
            Some(100.0 * g? / (p? * 1e3))
        };
        if a.json {
            let t = |t: Transpose| t == Transpose::Yes;
            outln!(
                "{}",
                serde_json::json!({"bench": "gemm", "adapter": d.name(), "product": what,
                    "m": m, "n": n, "k": k, "trans_a": t(ta), "trans_b": t(tb),
                    "registers_gflops": gflops[0], "tiled_gflops": gflops[1],
                    "large_gflops": gflops[2], "tensor_core_gflops": gflops[3],
                    "registers_peak_pct": share(gflops[0], 0), "tiled_peak_pct": share(gflops[1], 1),
                    "large_peak_pct": share(gflops[2], 2),
                    "tensor_core_peak_pct": share(gflops[3], 3),
                    "tensor_core_kernel": tc.and_then(Device::tensor_core_kernel).map(|k| k.to_string()),
                    "peak_f32_tflops": peak.f32_tflops, "peak_f16_tflops": peak.f16_tflops,
                    "skipped": skipped})
            );
        } else {
            out!("{what:<18} {m:>6} {n:>6} {k:>6}");
            for (i, g) in gflops.iter().enumerate() {
                let cell = match (g, share(*g, i)) {
                    (Some(g), Some(s)) => format!("{g:.1} ({s:.1}%)"),
                    (Some(g), None) => format!("{g:.1}"),
                    (None, _) => "-".to_owned(),
                };
                out!(" {cell:>17}");
            }
            outln!();
            if let Some(why) = skipped {
                outln!("  (not measured: {why})");
            }
        }
    }
    Ok(())
}

/// A GEMM operand of uniform values in [-1, 1).
fn gemm_operand(d: &Device, label: &str, rows: usize, cols: usize) -> Result<Tensor> {
    let t = d.zeros(label, rows, cols, DType::F32);
    d.fill_uniform(RngKey::new(4, Stream::Synthetic, 0, 0), 0, -1.0, 1.0, &t)?;
    Ok(t)
}

/// The CPU GEMM on the products a dense 1568-wide MLP layer runs at batch 32 (activations are
/// stored feature-major, `[features, batch]`), a square one, and the small language model's.
fn gemm_cpu(options: &DeviceOptions, a: &GemmBenchArgs) -> Result<()> {
    let d = Device::open_blocking(options)?;
    if !a.json {
        outln!("dense GEMM on {}, median of {} runs", d.name(), a.runs);
        outln!(
            "{:>8} {:>6} {:>6} {:>6} {:>10} {:>8}",
            "product",
            "m",
            "n",
            "k",
            "ms",
            "GF/s"
        );
    }
    let (no, yes) = (Transpose::No, Transpose::Yes);
    for (what, m, n, k, ta, tb) in [
        ("forward", 1568, 32, 1568, no, no),
        ("dW", 1568, 1568, 32, no, yes),
        ("dX", 1568, 32, 1568, yes, no),
        ("square", 1024, 1024, 1024, no, no),
        // The small language model's q/k/v (stacked) and down projections over 16 × 128 tokens.
        ("lm qkv", 384, 2048, 128, no, no),
        ("qkv dW", 384, 128, 2048, no, yes),
        ("qkv dX", 128, 2048, 384, yes, no),
        ("lm down", 128, 2048, 352, no, no),
        ("down dW", 128, 352, 2048, no, yes),
        ("down dX", 352, 2048, 128, yes, no),
    ] {
        let (ar, ac) = if ta == no { (m, k) } else { (k, m) };
        let (br, bc) = if tb == no { (k, n) } else { (n, k) };
        let (x, y) = (
            gemm_operand(&d, "bench.gemm.a", ar, ac)?,
            gemm_operand(&d, "bench.gemm.b", br, bc)?,
        );
        let c = d.zeros("bench.gemm.c", m, n, DType::F32);
        let cfg = Gemm::new(ta, tb);
        let (ms, _) = median_ms(&d, a.runs, |dev| dev.gemm(&cfg, &x, &y, &c))?;
        let gflops = 2.0 * (m * n * k) as f64 / (ms * 1e6);
        if a.json {
            outln!(
                "{}",
                serde_json::json!({"bench": "gemm", "adapter": d.name(), "product": what,
                    "m": m, "n": n, "k": k, "ms": ms, "gflops": gflops})
            );
        } else {
            outln!("{what:>8} {m:>6} {n:>6} {k:>6} {ms:>10.3} {gflops:>8.1}");
        }
    }
    Ok(())
}

/// One rank count's figures of `cht bench scaling`.
#[derive(Clone, Copy, Debug, Default)]
struct ScalingRow {
    ranks: usize,
    tokens_per_s: f64,
    step_ms: f64,
    values: u64,
    all_reduce_ms: f64,
    transfer_ms: f64,
}

/// `cht bench scaling`: the small language model (`lm_small`'s shape) under CHTs-n at
/// `a.density`, a global batch of `a.batch` sequences split over the ranks; per rank count, the
/// global tokens/s, speed-up and efficiency against one rank, and per step the values
/// all-reduced (= every live value: the projections' links plus the dense parts) and the time in
/// the all-reduce and in moving gradients to and from the host.
fn scaling(options: &DeviceOptions, world: &crate::world::World, a: &ScalingArgs) -> Result<()> {
    let mut rows = Vec::new();
    let on_mpi = world.size() > 1;
    let transport;
    if on_mpi {
        let device = Device::open_blocking(options)?;
        transport = world.comm().transport();
        rows.push(scaling_rank(&device, world.comm().clone(), a)?);
    } else {
        // `--backend gpu`: rank r takes the r-th hardware adapter (several GPUs of one machine
        // in one process); otherwise every rank gets a CPU device.
        let on_gpus = options.backend == cht_gpu::BackendChoice::Gpu;
        transport = match on_gpus {
            true => "in-process threads, a GPU adapter each (rank r: adapter r mod count)",
            false => "in-process threads, a CPU device each",
        }
        .to_owned();
        for &n in &a.ranks {
            if n == 0 || !a.batch.is_multiple_of(n) {
                bail!("--batch {} does not split over {n} ranks", a.batch);
            }
            let group = cht_dist::Local::group(n)?;
            let results: Vec<Result<ScalingRow>> = std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .into_iter()
                    .map(|c| {
                        s.spawn(move || {
                            let device = match on_gpus {
                                true => Device::open_blocking(
                                    &options
                                        .clone()
                                        .with_adapter_index(cht_dist::Collective::rank(&c)),
                                )?,
                                false => Device::cpu(),
                            };
                            scaling_rank(&device, std::sync::Arc::new(c), a)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("a rank's thread panicked")))
                    })
                    .collect()
            });
            let mut results = results.into_iter();
            let first = results.next().context("at least one rank")??;
            for r in results {
                r?;
            }
            rows.push(first);
        }
    }
    if !world.is_root() {
        return Ok(());
    }
    let base = rows.iter().find(|r| r.ranks == 1).map(|r| r.tokens_per_s);
    if !a.json {
        outln!(
            "data-parallel scaling: small LM (d 128, 4 blocks, 128-token context) at {:.0} % \
             density (CHTs-n), global batch {} × 128 tokens, {} timed steps; {transport}; {} cores \
             available to rank 0",
            a.density * 100.0,
            a.batch,
            a.steps,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        outln!(
            "{:>5}  {:>10}  {:>8}  {:>10}  {:>9}  {:>14}  {:>8}  {:>12}  {:>11}",
            "ranks",
            "tokens/s",
            "speed-up",
            "efficiency",
            "step ms",
            "values/step",
            "MB/step",
            "all-red. ms",
            "transfer ms"
        );
    }
    for r in &rows {
        let speedup = base.map(|b| r.tokens_per_s / b);
        if a.json {
            outln!(
                "{}",
                serde_json::json!({
                    "bench": "scaling", "ranks": r.ranks, "tokens_per_s": r.tokens_per_s,
                    "speedup": speedup, "step_ms": r.step_ms, "values_per_step": r.values,
                    "bytes_per_step": r.values * 4, "all_reduce_ms": r.all_reduce_ms,
                    "transfer_ms": r.transfer_ms, "density": a.density, "batch": a.batch,
                    "transport": transport,
                })
            );
        } else {
            let fmt =
                |x: Option<f64>, unit: &str| x.map_or("-".into(), |v| format!("{v:.2}{unit}"));
            outln!(
                "{:>5}  {:>10.0}  {:>8}  {:>10}  {:>9.1}  {:>14}  {:>8.2}  {:>12.2}  {:>11.2}",
                r.ranks,
                r.tokens_per_s,
                fmt(speedup, "×"),
                fmt(speedup.map(|s| s / r.ranks as f64 * 100.0), " %"),
                r.step_ms,
                r.values,
                r.values as f64 * 4.0 / 1e6,
                r.all_reduce_ms,
                r.transfer_ms
            );
        }
    }
    Ok(())
}

/// One rank of a scaling measurement: builds the model, trains two warm-up steps and
/// `a.steps` timed ones on its share of a fixed random batch.
fn scaling_rank(
    device: &Device,
    comm: std::sync::Arc<dyn cht_dist::Collective>,
    a: &ScalingArgs,
) -> Result<ScalingRow> {
    let n = comm.size();
    if !a.batch.is_multiple_of(n) {
        bail!("--batch {} does not split over {n} ranks", a.batch);
    }
    let mut config = lm_small();
    config.batch = a.batch / n;
    config.density = a.density;
    let updates = cht_dst::Updates {
        every: 1_000_000,
        until: 0,
    };
    let dst = cht_dst::DstConfig::preset(cht_dst::Method::ChtsN, a.density, updates, 1);
    let mut model = cht_nn::SparseLm::new(device, &config, &dst, cht_nn::LinearInit::default())?;
    model.set_collective(device, comm.clone())?;
    let ws = model.network().workspace(device);
    let (ids, targets) = random_tokens(&config, comm.rank() as u32);
    model.network().load(device, &ws, &ids, &targets)?;
    let step = |t: u32| cht_nn::LmOptimizer {
        adam: cht_gpu::AdamWStep {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            t,
        },
        clip: Some(1.0),
    };
    for t in 1..=2 {
        model.train_step(device, &ws, step(t))?;
    }
    model.network().take_metrics(device, &ws)?;
    comm.barrier()?;
    let (mut reduce, mut transfer, mut values) = (0.0, 0.0, 0);
    let start = std::time::Instant::now();
    for t in 0..a.steps {
        model.train_step(device, &ws, step(3 + t as u32))?;
        if let Some(c) = model.comm_stats() {
            reduce += c.all_reduce_s;
            transfer += c.transfer_s;
            values = c.values;
        }
    }
    model.network().take_metrics(device, &ws)?;
    comm.barrier()?;
    let elapsed = start.elapsed().as_secs_f64();
    let steps = a.steps.max(1) as f64;
    Ok(ScalingRow {
        ranks: n,
        tokens_per_s: (a.steps * a.batch * config.seq) as f64 / elapsed,
        step_ms: elapsed / steps * 1e3,
        values,
        all_reduce_ms: reduce / steps * 1e3,
        transfer_ms: transfer / steps * 1e3,
    })
}
