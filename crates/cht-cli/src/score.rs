//! `cht score`: Cannistraci-Hebb link-prediction scores for a researcher's own mask.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cht_sparse::mask_io::{format_npy, format_text, parse_npy, parse_text};
use cht_sparse::predict::{Predictor, scores};
use cht_sparse::{CsrPattern, Mask};

#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    /// Predictor: ch3-l3p, ch2-l3p, ra-l3, ch3-l3n, ch2-l3n or ch3.1-l3n.
    #[arg(long)]
    method: Predictor,
    /// The mask: a whitespace-separated 0/1 text matrix (rows = output neurons, columns = input
    /// neurons) or a 2-D `.npy` array.
    #[arg(long)]
    mask: PathBuf,
    /// Where to write the masked score matrix (same orientation). Format from the extension:
    /// `.npy` or text. Without it, text goes to standard output.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Reads the mask, scores every pair with the chosen predictor and writes the `[rows, cols]` score
/// matrix (existing links 0) as `.npy` or text, or to standard output. Errors name the file.
pub fn run(a: &ScoreArgs) -> Result<()> {
    let mask = read_mask(&a.mask)?;
    let pattern = CsrPattern::from_mask(&mask);
    let s = scores(&pattern, a.method);
    let (rows, cols) = (mask.rows(), mask.cols());
    match &a.output {
        Some(path) if is_npy(path) => std::fs::write(path, format_npy(rows, cols, &s)),
        Some(path) => std::fs::write(path, format_text(rows, cols, &s)),
        None => {
            out!("{}", format_text(rows, cols, &s));
            Ok(())
        }
    }
    .with_context(|| {
        format!(
            "writing {}",
            a.output.as_deref().unwrap_or(Path::new("-")).display()
        )
    })?;
    if let Some(path) = &a.output {
        errln!(
            "{}: {rows}x{cols} mask, {} links, {} candidates scored > 0 → {}",
            a.method.name(),
            mask.nnz(),
            s.iter().filter(|&&v| v > 0.0).count(),
            path.display()
        );
    }
    Ok(())
}

fn is_npy(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// Reads a mask file, with the file name in every error.
pub fn read_mask(path: &Path) -> Result<Mask> {
    let bytes = std::fs::read(path).with_context(|| format!("reading mask {}", path.display()))?;
    let parsed = if is_npy(path) || bytes.starts_with(b"\x93NUMPY") {
        parse_npy(&bytes)
    } else {
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("{}: not a text or .npy mask", path.display()))?;
        parse_text(text)
    };
    match parsed {
        Ok(m) => Ok(m),
        Err(e) => bail!("{}: {e}", path.display()),
    }
}
