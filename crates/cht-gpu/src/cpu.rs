//! Helpers for the CPU twins: data-parallel loops over output rows (rayon natively, serial in wasm).

/// Number of worker threads the CPU twins use.
pub fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::current_num_threads()
    }
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
}

/// Calls `f(i, chunk)` for each `chunk_len`-sized chunk of `out`, in parallel where possible.
/// Every chunk is written by exactly one call, so results do not depend on scheduling.
pub(crate) fn for_each_chunk<T: Send>(
    out: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Send + Sync,
) {
    if chunk_len == 0 {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
    #[cfg(target_arch = "wasm32")]
    {
        out.chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
}

/// Like [`for_each_chunk`] over two equally long slices at once (`f(i, chunk_a, chunk_b)`).
pub(crate) fn for_each_chunk_pair<T: Send, U: Send>(
    a: &mut [T],
    b: &mut [U],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T], &mut [U]) + Send + Sync,
) {
    assert_eq!(a.len(), b.len(), "for_each_chunk_pair: lengths differ");
    if chunk_len == 0 {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        a.par_chunks_mut(chunk_len)
            .zip(b.par_chunks_mut(chunk_len))
            .enumerate()
            .for_each(|(i, (x, y))| f(i, x, y));
    }
    #[cfg(target_arch = "wasm32")]
    {
        a.chunks_mut(chunk_len)
            .zip(b.chunks_mut(chunk_len))
            .enumerate()
            .for_each(|(i, (x, y))| f(i, x, y));
    }
}

/// Like [`for_each_chunk`] over three equally long slices at once.
pub(crate) fn for_each_chunk_triple<T: Send, U: Send, V: Send>(
    a: &mut [T],
    b: &mut [U],
    c: &mut [V],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T], &mut [U], &mut [V]) + Send + Sync,
) {
    assert!(
        a.len() == b.len() && a.len() == c.len(),
        "for_each_chunk_triple: lengths differ"
    );
    if chunk_len == 0 {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        a.par_chunks_mut(chunk_len)
            .zip(b.par_chunks_mut(chunk_len))
            .zip(c.par_chunks_mut(chunk_len))
            .enumerate()
            .for_each(|(i, ((x, y), z))| f(i, x, y, z));
    }
    #[cfg(target_arch = "wasm32")]
    {
        a.chunks_mut(chunk_len)
            .zip(b.chunks_mut(chunk_len))
            .zip(c.chunks_mut(chunk_len))
            .enumerate()
            .for_each(|(i, ((x, y), z))| f(i, x, y, z));
    }
}

/// `(0..n).map(f)` collected in order, computed in parallel where possible.
pub(crate) fn map_range<R: Send>(n: usize, f: impl Fn(usize) -> R + Send + Sync) -> Vec<R> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        (0..n).map(f).collect()
    }
}
