//! Hooks for the end-to-end tests, inert unless their environment variable is set.

/// If `CHT_ABORT_AFTER_STEPS=N` is set, aborts the process (no unwinding, no cleanup — like a
/// kill) right after global training step `N`, so tests can interrupt a run mid-epoch at a known
/// point and check that `--resume` continues bit for bit.
pub fn maybe_abort(step: u64) {
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let limit = LIMIT.get_or_init(|| {
        std::env::var("CHT_ABORT_AFTER_STEPS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if *limit == Some(step) {
        errln!("CHT_ABORT_AFTER_STEPS={step}: aborting");
        std::process::abort();
    }
}
