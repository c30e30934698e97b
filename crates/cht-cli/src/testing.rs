//! Hooks for the end-to-end tests, inert unless their environment variable is set.

static RANK: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// This process's rank in a data-parallel run (for `CHT_ABORT_RANK`).
pub fn set_rank(rank: usize) {
    let _ = RANK.set(rank);
}

/// If `CHT_ABORT_AFTER_STEPS=N` is set, aborts the process (no unwinding, no cleanup — like a
/// kill) right after global training step `N`, so tests can interrupt a run mid-epoch at a known
/// point and check that `--resume` continues bit for bit. With `CHT_ABORT_RANK=R` as well, only
/// rank `R` of a data-parallel run aborts (a rank dying mid-run).
pub fn maybe_abort(step: u64) {
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static ONLY: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let limit = LIMIT.get_or_init(|| {
        std::env::var("CHT_ABORT_AFTER_STEPS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    let only = ONLY.get_or_init(|| {
        std::env::var("CHT_ABORT_RANK")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    let rank = RANK.get().copied().unwrap_or(0);
    if *limit == Some(step) && only.is_none_or(|r| r == rank) {
        crate::output::write_error(format_args!(
            "CHT_ABORT_AFTER_STEPS={step}: aborting (rank {rank})\n"
        ));
        std::process::abort();
    }
}
