//! `cht bench kernels`: forward, input-gradient and weight-gradient times of sparse (CSR),
//! masked-dense and dense kernels on the selected adapter and on the CPU backend, in one run, with
//! the sparse/dense ratio and the measured crossover density.
//!
//! GPU times come from timestamp queries when the adapter has them, else from wall time around a
//! full sync; each figure is the median of `--runs` runs after one warm-up.

use std::collections::BTreeMap;

use anyhow::Result;
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
    /// Dense GEMM: on a GPU the register-blocked kernel vs the workgroup-tiled one; with
    /// `--backend cpu` the CPU GEMM on the MLP's three products (forward, dW, dX) and a square one.
    Gemm(GemmBenchArgs),
}

#[derive(clap::Args, Debug)]
pub struct GemmBenchArgs {
    /// Timed runs per figure (median reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct LmBenchArgs {
    /// Timed training steps per figure (after two warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Density of the sparse run's projections.
    #[arg(long, default_value_t = 0.1)]
    density: f64,
    /// Also the LLaMA-60M shape (d 512, FFN 1376, 8 heads, 8 layers, context 256, vocabulary
    /// 32000, batch 8) — on a GPU adapter only, it is hours on a CPU.
    #[arg(long)]
    llama60m: bool,
    /// Skip the CPU backend.
    #[arg(long)]
    no_cpu: bool,
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

pub fn run(options: &DeviceOptions, cmd: &BenchCommand) -> Result<()> {
    match cmd {
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
            println!(
                "\n== {backend}: {adapter} (median of {} runs, ms) ==",
                a.runs
            );
            println!(
                "{:<8} {:>5} {:>5} {:>5} {:>7} {:>10} {:>10} {:>10} {:>8}",
                "op", "in", "out", "batch", "density", "sparse", "masked", "dense", "dense/sp"
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
                            println!(
                                "{}",
                                serde_json::json!({
                                    "op": op.name(), "in": inp, "out": out, "batch": batch,
                                    "density": density, "backend": backend, "adapter": adapter,
                                    "sparse_ms": sparse_ms, "masked_ms": masked_ms, "dense_ms": dense_ms,
                                    "timing": how,
                                })
                            );
                        } else {
                            println!(
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
                println!(
                    "{}",
                    serde_json::json!({"op": "fwd+dX+dW", "in": inp, "out": out, "batch": batch,
                        "density": density, "backend": backend, "adapter": adapter,
                        "sparse_ms": s, "masked_ms": m, "dense_ms": dn})
                );
            }
            println!(
                "{}",
                serde_json::json!({"crossover_density": crossover, "in": inp, "out": out, "batch": batch, "backend": backend, "adapter": adapter})
            );
        } else {
            let ratios: Vec<String> = t
                .iter()
                .map(|x| format!("{:.0}%: {:.1}x", x.0 * 100.0, x.3 / x.1))
                .collect();
            println!(
                "{inp}->{out} batch {batch}: fwd+dX+dW dense/sparse = {}",
                ratios.join(", ")
            );
            match crossover {
                Some(c) => println!(
                    "  sparse/dense crossover: sparse is faster up to {:.0}% density (measured points)",
                    c * 100.0
                ),
                None => {
                    println!("  sparse/dense crossover: dense is faster at every measured density")
                }
            }
        }
    }
}

/// Peer figures measured on the 2-core development machine with the official code (issue text):
/// exact CH3-L3p by the C++/OpenMP extension, CH2-L3n by the PyTorch dense implementation on CPU.
const SCORE_CASES: [(cht_sparse::predict::Predictor, usize, f64, f64, &str); 4] = [
    (
        cht_sparse::predict::Predictor::Ch3L3p,
        1024,
        0.05,
        9.6,
        "official C++ (OpenMP)",
    ),
    (
        cht_sparse::predict::Predictor::Ch3L3p,
        1568,
        0.01,
        2.3,
        "official C++ (OpenMP)",
    ),
    (
        cht_sparse::predict::Predictor::Ch2L3n,
        1568,
        0.01,
        0.20,
        "official PyTorch, CPU",
    ),
    (
        cht_sparse::predict::Predictor::Ch2L3n,
        4096,
        0.05,
        3.9,
        "official PyTorch, CPU",
    ),
];

fn scores(options: &DeviceOptions, a: &ScoreBenchArgs) -> Result<()> {
    let threads = cht_gpu::cpu_threads();
    let gpu = Device::open_blocking(options).ok().filter(Device::is_gpu);
    let gpu_name = gpu.as_ref().map(Device::name);
    if !a.json {
        println!("link prediction on random masks, median of {} runs", a.runs);
        println!(
            "CPU backend: Rust, {threads} threads; GPU: {}",
            gpu_name.as_deref().unwrap_or("none")
        );
        println!(
            "{:<10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>9}  peer",
            "predictor", "size", "density", "cpu (s)", "gpu (s)", "peer (s)", "cpu gain"
        );
    }
    for (predictor, n, density, peer_s, peer) in SCORE_CASES {
        let p = CsrPattern::random(n, n, density, RngKey::new(1, Stream::Synthetic, 0, 0))?;
        let mut times = Vec::new();
        for _ in 0..a.runs.max(1) {
            let start = std::time::Instant::now();
            let s = cht_sparse::predict::scores(&p, predictor);
            times.push(start.elapsed().as_secs_f64());
            std::hint::black_box(s);
        }
        times.sort_by(f64::total_cmp);
        let ours = times[times.len() / 2];
        let gpu_s = match &gpu {
            Some(g) if !a.no_gpu => {
                let dp = g.upload_pattern("bench.scores", &p, p.nnz())?;
                let scratch = g.link_scratch("bench.scores", n, n);
                let out = g.zeros("bench.scores.out", n, n, DType::F32);
                let (ms, _) =
                    median_ms(g, 1, |dev| dev.link_scores(&dp, predictor, &scratch, &out))?;
                Some(ms / 1e3)
            }
            _ => None,
        };
        if a.json {
            println!(
                "{}",
                serde_json::json!({"predictor": predictor.name(), "rows": n, "cols": n, "density": density,
                    "cpu_s": ours, "cpu_threads": threads, "gpu_s": gpu_s, "gpu_adapter": gpu_name,
                    "peer_s": peer_s, "peer": peer, "cpu_speedup": peer_s / ours})
            );
        } else {
            let g = gpu_s.map_or("-".to_owned(), |s| format!("{s:.4}"));
            println!(
                "{:<10} {:>10} {:>7.0}% {:>10.4} {:>10} {:>10.2} {:>8.1}x  {peer}",
                predictor.name(),
                format!("{n}x{n}"),
                density * 100.0,
                ours,
                g,
                peer_s,
                peer_s / ours
            );
        }
    }
    topology_update(gpu.as_ref(), a)
}

/// One full CHTs-n topology update (soft removal, CH2-L3n scoring, soft regrowth, CSR/CSC rebuild,
/// re-gather of weights and momentum) of a 1568×1568 layer at 1 % density.
fn topology_update(gpu: Option<&Device>, a: &ScoreBenchArgs) -> Result<()> {
    use cht_dst::{DstConfig, DstScheduler, LayerRef, Method};
    let cpu = Device::cpu();
    let mut devices = vec![&cpu];
    if let Some(g) = gpu.filter(|_| !a.no_gpu) {
        devices.push(g);
    }
    for d in devices {
        let config = DstConfig::preset(Method::ChtsN, 0.01, 1, 1_000_000, 1);
        let mut sched = DstScheduler::new(config, &[(1568, 1568)])?;
        let mask = sched.initial_masks(None)?.remove(0);
        let p = CsrPattern::from_mask(&mask);
        let weights = sched.initial_weights(0, &mask)?;
        let pattern = d.upload_pattern("bench.update", &p, p.nnz())?;
        let values = d.tensor_f32("bench.update.values", p.nnz(), 1, &weights)?;
        let momentum = d.zeros("bench.update.momentum", p.nnz(), 1, DType::F32);
        let topo = sched.topology(d, 1);
        let state = [&momentum];
        let layer = LayerRef {
            pattern: &pattern,
            values: &values,
            state: &state,
            grad: None,
            dense_grad: None,
        };
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
            println!(
                "{}",
                serde_json::json!({"op": "topology_update", "method": "CHTs-n", "rows": 1568, "cols": 1568,
                    "density": 0.01, "backend": if d.is_gpu() { "gpu" } else { "cpu" }, "adapter": d.name(),
                    "ms": ms, "timing": how})
            );
        } else {
            println!(
                "full CHTs-n topology update, 1568x1568 @ 1% on {}: {ms:.1} ms ({how})",
                d.name()
            );
        }
    }
    Ok(())
}

/// The small language model of `configs/lm-*.toml` (character vocabulary of tiny-shakespeare).
const LM_SMALL: cht_nn::LmConfig = cht_nn::LmConfig {
    vocab: 65,
    d_model: 128,
    heads: 4,
    ffn: 352,
    layers: 4,
    seq: 128,
    batch: 16,
    density: 1.0,
    seed: 1,
};

/// LLaMA-60M (spec §7.4) at a per-device batch of 8 sequences.
const LM_60M: cht_nn::LmConfig = cht_nn::LmConfig {
    vocab: 32000,
    d_model: 512,
    heads: 8,
    ffn: 1376,
    layers: 8,
    seq: 256,
    batch: 8,
    density: 1.0,
    seed: 1,
};

/// `cht bench lm`: wall time of whole training steps (forward, loss, backward, clipping, AdamW;
/// one submit each) of the FC and the sparse model on each device, as tokens/s and their ratio.
fn lm(options: &DeviceOptions, a: &LmBenchArgs) -> Result<()> {
    let gpu = Device::open_blocking(options).ok().filter(Device::is_gpu);
    let cpu = Device::cpu();
    let mut cases: Vec<(&Device, &str, cht_nn::LmConfig)> = Vec::new();
    if let Some(g) = &gpu {
        cases.push((g, "small", LM_SMALL));
        if a.llama60m {
            cases.push((g, "llama-60m", LM_60M));
        }
    }
    if !a.no_cpu {
        cases.push((&cpu, "small", LM_SMALL));
    }
    if !a.json {
        println!(
            "language-model training steps (forward, loss, backward, clip, AdamW), {} timed steps each",
            a.steps
        );
        println!(
            "{:<10} {:<48} {:>12} {:>12} {:>8}",
            "model", "device", "FC tok/s", "sparse tok/s", "ratio"
        );
    }
    for (d, name, base) in cases {
        let mut rates = Vec::new();
        for density in [1.0, a.density] {
            let config = cht_nn::LmConfig {
                density,
                ..base.clone()
            };
            rates.push(lm_tokens_per_s(d, &config, a.steps)?);
        }
        let ratio = rates[1] / rates[0];
        if a.json {
            println!(
                "{}",
                serde_json::json!({"bench": "lm", "model": name, "device": d.name(),
                    "backend": if d.is_gpu() { "gpu" } else { "cpu" }, "d_model": base.d_model,
                    "layers": base.layers, "seq": base.seq, "batch": base.batch, "vocab": base.vocab,
                    "density": a.density, "fc_tokens_per_s": rates[0],
                    "sparse_tokens_per_s": rates[1], "sparse_over_fc": ratio})
            );
        } else {
            println!(
                "{:<10} {:<48} {:>12.0} {:>12.0} {:>7.2}x",
                name,
                d.name(),
                rates[0],
                rates[1],
                ratio
            );
        }
    }
    Ok(())
}

fn lm_tokens_per_s(d: &Device, config: &cht_nn::LmConfig, steps: usize) -> Result<f64> {
    let lm = cht_nn::Lm::new(d, config)?;
    let ws = lm.workspace(d);
    let tokens = config.batch * config.seq;
    let mut rng = cht_sparse::rng::Counter::new(RngKey::new(3, Stream::Synthetic, 0, 0));
    let ids: Vec<u32> = (0..tokens)
        .map(|_| rng.below(config.vocab as u32))
        .collect();
    let targets: Vec<u32> = (0..tokens)
        .map(|_| rng.below(config.vocab as u32))
        .collect();
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
    let start = std::time::Instant::now();
    for t in 0..steps {
        lm.train_step(d, &ws, Some(adam(3 + t as u32)), Some(1.0))?;
    }
    lm.take_metrics(d, &ws)?; // waits for the last step
    Ok((steps * tokens) as f64 / start.elapsed().as_secs_f64())
}

/// `cht bench gemm`: `C[m×n] = A[m×k]·B[k×n]` with each GPU GEMM kernel, in GFLOP/s, on the shapes
/// of the MLP (forward and weight gradient at batch 32) and a square one.
fn gemm_kernels(options: &DeviceOptions, a: &GemmBenchArgs) -> Result<()> {
    use cht_gpu::GemmKernel;
    if options.backend == cht_gpu::BackendChoice::Cpu {
        return gemm_cpu(options, a);
    }
    let d = Device::open_blocking(&DeviceOptions {
        backend: cht_gpu::BackendChoice::Gpu,
        ..options.clone()
    })?;
    if !a.json {
        println!("dense GEMM on {}, median of {} runs", d.name(), a.runs);
        println!(
            "{:>6} {:>6} {:>6} {:>16} {:>16} {:>8}",
            "m", "n", "k", "registers GF/s", "tiled GF/s", "ratio"
        );
    }
    for (m, n, k) in [
        (1568, 32, 784),
        (1568, 32, 1568),
        (1568, 1568, 32),
        (1024, 1024, 1024),
    ] {
        let (x, y) = (
            gemm_operand(&d, "bench.gemm.a", m, k)?,
            gemm_operand(&d, "bench.gemm.b", k, n)?,
        );
        let c = d.zeros("bench.gemm.c", m, n, DType::F32);
        let mut gflops = Vec::new();
        for kernel in [GemmKernel::Registers, GemmKernel::Tiled] {
            let cfg = Gemm {
                kernel,
                ..Gemm::new(Transpose::No, Transpose::No)
            };
            let (ms, _) = median_ms(&d, a.runs, |dev| dev.gemm(&cfg, &x, &y, &c))?;
            gflops.push(2.0 * (m * n * k) as f64 / (ms * 1e6));
        }
        if a.json {
            println!(
                "{}",
                serde_json::json!({"bench": "gemm", "adapter": d.name(), "m": m, "n": n, "k": k,
                    "registers_gflops": gflops[0], "tiled_gflops": gflops[1]})
            );
        } else {
            println!(
                "{m:>6} {n:>6} {k:>6} {:>16.1} {:>16.1} {:>7.2}x",
                gflops[0],
                gflops[1],
                gflops[1] / gflops[0]
            );
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
/// stored feature-major, `[features, batch]`), plus a square one.
fn gemm_cpu(options: &DeviceOptions, a: &GemmBenchArgs) -> Result<()> {
    let d = Device::open_blocking(options)?;
    if !a.json {
        println!("dense GEMM on {}, median of {} runs", d.name(), a.runs);
        println!(
            "{:>8} {:>6} {:>6} {:>6} {:>10} {:>8}",
            "product", "m", "n", "k", "ms", "GF/s"
        );
    }
    let (no, yes) = (Transpose::No, Transpose::Yes);
    for (what, m, n, k, ta, tb) in [
        ("forward", 1568, 32, 1568, no, no),
        ("dW", 1568, 1568, 32, no, yes),
        ("dX", 1568, 32, 1568, yes, no),
        ("square", 1024, 1024, 1024, no, no),
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
            println!(
                "{}",
                serde_json::json!({"bench": "gemm", "adapter": d.name(), "product": what,
                    "m": m, "n": n, "k": k, "ms": ms, "gflops": gflops})
            );
        } else {
            println!("{what:>8} {m:>6} {n:>6} {k:>6} {ms:>10.3} {gflops:>8.1}");
        }
    }
    Ok(())
}
