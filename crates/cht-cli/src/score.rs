//! `cht score`: Cannistraci-Hebb link-prediction scores for a researcher's own mask.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use cht_sparse::io::write_atomic;
use cht_sparse::mask_io::{MaskFileError, format_npy, format_text};
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
        Some(path) if is_npy(path) => write_atomic(path, "scores", &format_npy(rows, cols, &s)),
        Some(path) => write_atomic(path, "scores", format_text(rows, cols, &s).as_bytes()),
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

/// Reads a mask file (`.npy` or text, told apart by the `.npy` magic; a regular file of at most
/// [`cht_sparse::mask_io::MAX_MASK_FILE_BYTES`]), with the file name in every error.
pub fn read_mask(path: &Path) -> Result<Mask> {
    // Formatted once: the library's messages already name the file and the cause.
    match cht_sparse::mask_io::read_mask(path) {
        Ok(mask) => Ok(mask),
        Err(e @ MaskFileError::File(_)) => Err(anyhow!("{e}")).context("reading mask"),
        Err(e) => Err(anyhow!("{e}")),
    }
}
