//! `cht config`: what a run configuration can say — the DST methods, the preset files, and every
//! key of `cht train`'s and `cht lm train`'s configurations with its default (the TOML a run
//! resolves to, so `--set section.key=value` names are right there).

use anyhow::Result;

use crate::lm::config::LmRunConfig;
use crate::train::config::RunConfig;

/// Which runner's keys.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Which {
    /// `cht train` (the MLP).
    Mlp,
    /// `cht lm train` (the language model).
    Lm,
}

/// Arguments of `cht config`.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// Whose configuration keys to list.
    #[arg(default_value = "mlp")]
    which: Which,
}

/// The DST methods as configs name them, with one line each.
const METHODS: [(&str, &str); 10] = [
    ("fc", "fully connected (dense), no topology updates"),
    ("set", "SET: magnitude removal, random regrowth"),
    (
        "rigl",
        "RigL: magnitude removal, gradient regrowth, cosine ζ",
    ),
    (
        "mest",
        "MEST (EM&S): |W| + λ|G| removal, random regrowth, elastic density",
    ),
    ("gmp", "GMP: gradual magnitude pruning (cubic), no regrowth"),
    (
        "granet",
        "GraNet: cubic pruning, magnitude removal, gradient regrowth",
    ),
    (
        "cht",
        "CHT (ICLR'24): hard removal, CH3-L3p top-k regrowth, chain removal",
    ),
    (
        "chts-p",
        "CHTs with the exact path-based CH3-L3p predictor, soft sampling",
    ),
    (
        "chts-n (chts)",
        "CHTs with the node-based CH2-L3n predictor (the paper's default)",
    ),
    (
        "chtss-n (chtss)",
        "CHTss: CHTs-n plus sigmoid density decay",
    ),
];

/// `cht config [mlp|lm]`.
pub fn run(args: &ConfigArgs) -> Result<()> {
    outln!("DST methods (dst.method):");
    for (name, what) in METHODS {
        outln!("  {name:<16} {what}");
    }
    outln!();
    outln!(
        "Presets: configs/{{mnist,fashion}}-<method>.toml (the paper's Table 7), \
         configs/lm-<method>.toml and configs/lm-llama{{20m,60m,130m}}.toml (language models)."
    );
    outln!();
    let text = match args.which {
        Which::Mlp => {
            outln!("Keys of `cht train` (the built-in default configuration, resolved):");
            let c = RunConfig::parse(
                crate::train::DEFAULT_CONFIG,
                "the default configuration",
                &[],
            )?;
            outln!(
                "(dst knobs not shown come from the method's preset unless set: zeta, \
                 zeta_schedule, removal, removal_score, chain_removal, temperature, topology_init, \
                 weight_init, distribution, regrown_weights — see README.md)"
            );
            crate::logs::clean_toml(&c)?
        }
        Which::Lm => {
            outln!("Keys of `cht lm train` (defaults; data.corpus is required):");
            let c = LmRunConfig::parse(
                "[data]\ncorpus = \"path/to/corpus.txt\"\n[dst]\nmethod = \"chtss\"\ndensity = 0.1\n",
                "the default configuration",
                &[],
            )?;
            crate::logs::clean_toml(&c)?
        }
    };
    outln!();
    out!("{text}");
    outln!();
    outln!("Change any key with --set section.key=value (TOML values; bare words are strings).");
    Ok(())
}
