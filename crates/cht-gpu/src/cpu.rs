//! Helpers for the CPU twins: data-parallel loops over output rows or column blocks (rayon
//! natively, serial in wasm), the AVX2 + FMA dispatch of hot loops, and a vectorisable `exp`.

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

/// `f(i, item)` for every item, collected in order, computed in parallel where possible. Each item
/// goes to exactly one call, so results do not depend on scheduling.
pub(crate) fn map_items<I: Send, R: Send>(
    items: Vec<I>,
    f: impl Fn(usize, I) -> R + Send + Sync,
) -> Vec<R> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        items
            .into_par_iter()
            .enumerate()
            .map(|(i, x)| f(i, x))
            .collect()
    }
    #[cfg(target_arch = "wasm32")]
    {
        items
            .into_iter()
            .enumerate()
            .map(|(i, x)| f(i, x))
            .collect()
    }
}

/// Splits the row-major `[rows, cols]` matrix `m` into blocks of `width` columns (the last may be
/// narrower): block `b` holds each row's columns `b·width ..`, rows in order. With [`map_items`],
/// one task owns a block of tokens across every feature row of a feature-major activation.
pub(crate) fn column_blocks<T>(m: &mut [T], cols: usize, width: usize) -> Vec<Vec<&mut [T]>> {
    if cols == 0 || width == 0 {
        return Vec::new();
    }
    let mut blocks: Vec<Vec<&mut [T]>> = (0..cols.div_ceil(width))
        .map(|_| Vec::with_capacity(m.len() / cols))
        .collect();
    for row in m.chunks_exact_mut(cols) {
        for (block, part) in blocks.iter_mut().zip(row.chunks_mut(width)) {
            block.push(part);
        }
    }
    blocks
}

/// `dst.copy_from_slice(src)` in parallel chunks.
pub(crate) fn copy<T: Copy + Send + Sync>(src: &[T], dst: &mut [T]) {
    const CHUNK: usize = 1 << 15;
    assert_eq!(src.len(), dst.len(), "copy: lengths differ");
    for_each_chunk(dst, CHUNK, |i, d| {
        d.copy_from_slice(&src[i * CHUNK..][..d.len()]);
    });
}

/// Calls `f(item)` for every item, in parallel where possible.
pub(crate) fn for_each_item<I: Send>(items: Vec<I>, f: impl Fn(I) + Send + Sync) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        items.into_par_iter().for_each(f);
    }
    #[cfg(target_arch = "wasm32")]
    {
        items.into_iter().for_each(f);
    }
}

/// Runs `f` on this thread's scratch buffer, grown to `len` floats and kept for the next call (for
/// the thread's lifetime), so the twins' per-task buffers (attention) and packed operands (GEMM)
/// are allocated once per thread, not per call. The contents are whatever the last user left. A
/// nested call gets its own buffer; one over [`SCRATCH_KEEP_LIMIT`] floats is not kept.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut buf = SCRATCH.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    if buf.len() <= SCRATCH_KEEP_LIMIT {
        SCRATCH.set(buf);
    }
    out
}

/// Floats of scratch a thread keeps between calls (64 MiB).
pub(crate) const SCRATCH_KEEP_LIMIT: usize = 16 << 20;

/// Splits `buf` into consecutive slices of the given lengths (the rest is dropped).
pub(crate) fn carve<const N: usize>(buf: &mut [f32], lens: [usize; N]) -> [&mut [f32]; N] {
    let mut rest = buf;
    lens.map(|n| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        head
    })
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

/// Whether this CPU has AVX2 and FMA (std caches the detection). CPU twins use it to pick a
/// copy of their hot loop compiled with those features — the pattern, for a kernel `k`:
///
/// ```text
/// fn k(args) {                       // what callers use
///     #[cfg(target_arch = "x86_64")]
///     if crate::cpu::avx2_fma() {
///         // SAFETY: the CPU has the features `k_avx2` is compiled for.
///         return unsafe { k_avx2(args) };
///     }
///     k_body(args)
/// }
/// #[cfg(target_arch = "x86_64")]
/// #[target_feature(enable = "avx2,fma")]
/// fn k_avx2(args) { k_body(args) }    // the body inlined, vectorised 8 lanes wide
/// #[inline(always)]
/// fn k_body(args) { … }               // plain Rust, no intrinsics
/// ```
///
/// [`avx2_dispatch!`] writes `k` and `k_avx2` for a `k_body`. Put the dispatch inside the
/// closure a parallel loop runs (closures handed to rayon are not inlined into a
/// `target_feature` function). Without explicit `mul_add`, the vectorised body gives the same
/// bits as the plain one (LLVM neither fuses nor reorders float arithmetic), so a twin's results
/// do not depend on the CPU.
#[inline]
pub(crate) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The widest vector instructions this CPU offers the twins' hot loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Simd {
    /// AVX-512F (with AVX2 and FMA): 16 lanes.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
    /// AVX2 and FMA: 8 lanes.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    /// Whatever the target has by default (SSE2 on x86-64, SIMD128 where wasm enables it).
    Plain,
}

impl Simd {
    /// Detects (std caches the CPU feature queries).
    #[inline]
    pub(crate) fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        if avx2_fma() {
            if std::is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            return Simd::Avx2;
        }
        Simd::Plain
    }
}

/// `avx2_dispatch!(fn k(a: A, …) -> R => k_body);` defines `k`, which runs `k_body(a, …)` (an
/// `#[inline(always)]` fn of plain Rust) compiled for AVX2 + FMA where the CPU has them, else as
/// is (see [`avx2_fma`]). Attributes and visibility before `fn` are kept.
macro_rules! avx2_dispatch {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        => $body:path) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if $crate::cpu::avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA, all that `avx2` is compiled for; its body
                    // is safe Rust.
                    #[allow(unsafe_code)]
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use avx2_dispatch;

/// `e^x` in f32 without a library call and without branches, so that loops over slices
/// vectorise: Cody–Waite reduction `x = n·ln 2 + r` and a degree-6 polynomial for `e^r` (the
/// Cephes `expf` coefficients), then `2^n` built from exponent bits in two halves (no overflow
/// before the true result does). Relative error ≤ 2 ulp for `x ∈ [−87.33, 88.72]`; below that
/// the result is 0 (exact results there are subnormal, < 1.2e-38), above it `+∞`; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n·LN2_HI is exact for |n| ≤ 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.336_55, 88.722_84);
    let t = xc * LOG2_E + ROUND;
    let n = t - ROUND;
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let er = p * (r * r) + r + 1.0;
    // 2^n = 2^h · 2^(n−h): both factors stay normal for n ∈ [−126, 128].
    let h = ni >> 1;
    let scale_a = f32::from_bits(((h + 127) as u32) << 23);
    let scale_b = f32::from_bits(((ni - h + 127) as u32) << 23);
    let v = er * scale_a * scale_b;
    // Beyond the clamp: 0 below, +∞ above (NaN compares false both ways and stays NaN).
    let v = if x < -87.336_55 { 0.0 } else { v };
    if x > 88.722_84 { f32::INFINITY } else { v }
}

#[cfg(test)]
mod tests {
    #[test]
    fn column_blocks_cover_every_element_once_and_copy_copies() {
        for (rows, cols, width) in [(1, 1, 4), (5, 7, 3), (3, 33, 8), (130, 9, 9), (0, 4, 2)] {
            let mut m: Vec<usize> = vec![usize::MAX; rows * cols];
            let blocks = super::column_blocks(&mut m, cols, width);
            assert_eq!(blocks.len(), cols.div_ceil(width));
            let touched = super::map_items(blocks, |b, block| {
                assert_eq!(block.len(), rows);
                let mut n = 0;
                for (i, row) in block.into_iter().enumerate() {
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = i * cols + b * width + j;
                        n += 1;
                    }
                }
                n
            });
            assert_eq!(touched.iter().sum::<usize>(), rows * cols);
            assert!(
                m.iter().enumerate().all(|(k, &v)| v == k),
                "{rows}x{cols} by {width}"
            );
            let mut copied = vec![usize::MAX; m.len()];
            super::copy(&m, &mut copied);
            assert_eq!(copied, m);
        }
        let big: Vec<u32> = (0..100_003).collect();
        let mut out = vec![0; big.len()];
        super::copy(&big, &mut out);
        assert_eq!(out, big);
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_handles_the_edges() {
        let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        let mut worst = 0;
        let mut x = -87.3f32;
        while x < 88.7 {
            let (got, want) = (super::exp(x), (f64::from(x)).exp() as f32);
            worst = worst.max(ulps(got, want));
            x += 0.000_731;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(super::exp(0.0), 1.0);
        assert_eq!(super::exp(-100.0), 0.0);
        assert_eq!(super::exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(super::exp(89.0), f32::INFINITY);
        assert_eq!(super::exp(f32::INFINITY), f32::INFINITY);
        assert!(super::exp(f32::NAN).is_nan());
        assert!(super::exp(88.72).is_finite());
    }
}
