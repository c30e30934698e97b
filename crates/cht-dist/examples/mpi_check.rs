//! Checks of the MPI backend, run under a launcher (scripts/test-mpi.sh):
//!
//! ```text
//! mpirun -n 4 --oversubscribe target/release/examples/mpi_check        # the checks
//! mpirun -n 2 --oversubscribe target/release/examples/mpi_check die    # rank 1 aborts
//! mpirun -n 2 --oversubscribe target/release/examples/mpi_check hang   # rank 1 hangs
//! mpirun -n 2 --oversubscribe target/release/examples/mpi_check bench [LEN [CHUNK]]  # timing
//! ```
//!
//! The checks: all-reduce sums (`f32`, `f64`) of order-sensitive values against the rank-order sum
//! every rank computes locally (the contributions are a function of the rank), for several lengths
//! and chunk lengths; identical bits on every rank; disagreements between ranks reported as errors
//! on every rank; broadcasts; a barrier. Rank 0 prints `mpi_check: ok (N ranks)`; any failure
//! exits non-zero. In `die` mode rank 1 aborts while the others enter an all-reduce, and in `hang`
//! mode it sleeps: the job must end non-zero (the launcher, or the 5 s watchdog).

use std::process::ExitCode;
use std::time::Duration;

use cht_dist::{Collective, Error, Mpi, sum_in_rank_order};
use mpi::collective::SystemOperation;
use mpi::traits::CommunicatorCollectives;

/// Values whose sum depends on the order of the additions (`1e8 + 1 == 1e8` in `f32`).
const BASE_F32: [f32; 4] = [1e8, 1.0, -1e8, 3.0];
const BASE_F64: [f64; 4] = [1e17, 1.0, -1e17, 3.0];

fn contribution_f32(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| BASE_F32[(rank + i) % 4] * (1 + i % 5) as f32)
        .collect()
}

fn contribution_f64(rank: usize, len: usize) -> Vec<f64> {
    (0..len)
        .map(|i| BASE_F64[(rank + i) % 4] * (1 + i % 5) as f64)
        .collect()
}

/// The expected all-reduce: every rank's contribution summed in rank order.
fn expected<T: Copy + Default + std::ops::Add<Output = T>>(
    size: usize,
    len: usize,
    contribution: fn(usize, usize) -> Vec<T>,
) -> Vec<T> {
    let all: Vec<Vec<T>> = (0..size).map(|r| contribution(r, len)).collect();
    let parts: Vec<&[T]> = all.iter().map(Vec::as_slice).collect();
    let mut out = vec![T::default(); len];
    sum_in_rank_order(&mut out, &parts);
    out
}

struct Checker<'a> {
    mpi: &'a Mpi,
    failures: Vec<String>,
}

impl Checker<'_> {
    fn fail(&mut self, what: String) {
        eprintln!("mpi_check: rank {}: FAILED: {what}", self.mpi.rank());
        self.failures.push(what);
    }

    /// Whether rank 0's bytes equal this rank's (`bytes` broadcast from rank 0).
    fn same_on_all_ranks(&mut self, what: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let mut from_0 = bytes.clone();
        self.mpi.broadcast(&mut from_0, 0)?;
        if from_0 != bytes {
            self.fail(format!("{what}: the bits differ from rank 0's"));
        }
        Ok(())
    }

    fn all_reduce(&mut self, len: usize, chunk: Option<usize>) -> Result<(), Error> {
        let (rank, size) = (self.mpi.rank(), self.mpi.size());
        let what = format!("all_reduce_sum of {len} (chunk {chunk:?})");
        let mut x = contribution_f32(rank, len);
        self.mpi.all_reduce_sum(&mut x)?;
        let want = expected(size, len, contribution_f32);
        if x.iter()
            .map(|v| v.to_bits())
            .ne(want.iter().map(|v| v.to_bits()))
        {
            self.fail(format!("{what}: not the rank-order sum"));
        }
        self.same_on_all_ranks(&what, x.iter().flat_map(|v| v.to_le_bytes()).collect())?;

        let what = format!("all_reduce_sum_f64 of {len} (chunk {chunk:?})");
        let mut y = contribution_f64(rank, len);
        self.mpi.all_reduce_sum_f64(&mut y)?;
        let want = expected(size, len, contribution_f64);
        if y.iter()
            .map(|v| v.to_bits())
            .ne(want.iter().map(|v| v.to_bits()))
        {
            self.fail(format!("{what}: not the rank-order sum"));
        }
        self.same_on_all_ranks(&what, y.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    /// A call that must fail with `Error::Mismatch` (or `Error::Invalid`) on every rank.
    fn expect_err(&mut self, what: &str, invalid: bool, result: Result<(), Error>) {
        match result {
            Err(Error::Mismatch { .. }) if !invalid => {}
            Err(Error::Invalid(_)) if invalid => {}
            other => self.fail(format!("{what}: expected an error, got {other:?}")),
        }
    }
}

fn checks(mpi: &mut Mpi) -> Result<usize, Error> {
    let (rank, size) = (mpi.rank(), mpi.size());
    if rank == 0 {
        println!(
            "mpi_check: {size} ranks over {}, threading {:?}",
            mpi.transport(),
            mpi.threading()
        );
        let a = expected(4, 4, contribution_f32);
        let rev: Vec<f32> = (0..4)
            .map(|i| (0..4).rev().map(|r| contribution_f32(r, 4)[i]).sum())
            .collect();
        println!("mpi_check: 4 ranks' values summed in rank order {a:?}, in reverse {rev:?}");
    }
    let mut failures = Vec::new();
    let lengths = [0, 1, 7, size * 1000 + 3];
    for chunk in [None, Some(1000), Some(3)] {
        mpi.set_chunk_len(chunk.unwrap_or(Mpi::DEFAULT_CHUNK_LEN));
        let mut c = Checker { mpi, failures };
        for len in lengths {
            c.all_reduce(len, chunk)?;
        }
        failures = c.failures;
    }
    mpi.set_chunk_len(Mpi::DEFAULT_CHUNK_LEN);

    let mut c = Checker { mpi, failures };
    // Disagreements: every rank gets the error, and the collectives go on afterwards.
    if size > 1 {
        let mut x = vec![1.0f32; if rank == 0 { 3 } else { 4 }];
        c.expect_err("lengths differ", false, mpi.all_reduce_sum(&mut x));
        let r = if rank == 0 {
            mpi.all_reduce_sum_f64(&mut [1.0; 3])
        } else {
            mpi.all_reduce_sum(&mut [1.0; 3])
        };
        c.expect_err("f64 on rank 0, f32 elsewhere", false, r);
        let r = if rank == 0 {
            mpi.barrier()
        } else {
            mpi.broadcast(&mut vec![1], 0)
        };
        c.expect_err("barrier on rank 0, broadcast elsewhere", false, r);
        c.expect_err(
            "broadcast roots differ",
            false,
            mpi.broadcast(&mut vec![1, 2], rank % 2),
        );
    }
    c.expect_err(
        "broadcast root out of range",
        true,
        mpi.broadcast(&mut vec![1, 2], size),
    );
    c.all_reduce(size * 1000 + 3, None)?;
    // Several rounds of the default chunk length.
    c.all_reduce(2 * Mpi::DEFAULT_CHUNK_LEN + 5, None)?;

    // Broadcasts from the last rank (non-zero when size > 1), of bytes and of nothing.
    let root = size - 1;
    let payload: Vec<u8> = (0..100_003usize).map(|i| (i * 7 + root) as u8).collect();
    let mut data = if rank == root {
        payload.clone()
    } else {
        vec![0xAA; 5]
    };
    mpi.broadcast(&mut data, root)?;
    if data != payload {
        c.fail(format!("broadcast from rank {root}: wrong bytes"));
    }
    let mut empty = if rank == 0 { Vec::new() } else { vec![1, 2, 3] };
    mpi.broadcast(&mut empty, 0)?;
    if !empty.is_empty() {
        c.fail("empty broadcast: bytes left".into());
    }
    mpi.barrier()?;

    // Every rank learns the total number of failures.
    let mut total = [c.failures.len() as f64];
    mpi.all_reduce_sum_f64(&mut total)?;
    Ok(total[0] as usize)
}

/// `die`/`hang`: rank 1 aborts or sleeps while the others enter an all-reduce.
fn failure_mode(mpi: &Mpi, mode: &str) -> ExitCode {
    if mpi.size() < 2 {
        eprintln!("mpi_check {mode}: needs at least 2 ranks");
        return ExitCode::from(3);
    }
    if let Err(e) = mpi.barrier() {
        eprintln!("mpi_check {mode}: barrier: {e}");
        return ExitCode::from(3);
    }
    if mpi.rank() == 1 {
        eprintln!(
            "mpi_check {mode}: rank 1 {}",
            if mode == "die" { "aborts" } else { "hangs" }
        );
        if mode == "die" {
            std::process::abort();
        }
        std::thread::sleep(Duration::from_secs(300));
    }
    let mut x = vec![1.0f32; 1000];
    let r = mpi.all_reduce_sum(&mut x);
    eprintln!(
        "mpi_check {mode}: rank {}: the all-reduce returned ({r:?}) although rank 1 {}",
        mpi.rank(),
        if mode == "die" { "died" } else { "hung" }
    );
    ExitCode::from(3)
}

/// `bench [LEN [CHUNK]]`: the time of an all-reduce of LEN `f32` (default 2²⁴) in chunks of
/// CHUNK, best of 5, and of `MPI_Allreduce` for comparison.
fn bench(mpi: &mut Mpi, len: Option<String>, chunk: Option<String>) -> ExitCode {
    let len = len.and_then(|l| l.parse().ok()).unwrap_or(1usize << 24);
    if let Some(chunk) = chunk.and_then(|c| c.parse().ok()) {
        mpi.set_chunk_len(chunk);
    }
    let mut x = contribution_f32(mpi.rank(), len);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        if let Err(e) = mpi.barrier().and_then(|()| mpi.all_reduce_sum(&mut x)) {
            eprintln!("mpi_check bench: {e}");
            return ExitCode::FAILURE;
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    // For comparison: MPI_Allreduce (MPI_SUM, the library's order of additions).
    let world = mpi::topology::SimpleCommunicator::world();
    let mut native = f64::INFINITY;
    let mut y = vec![0f32; len];
    for _ in 0..5 {
        let start = std::time::Instant::now();
        world.barrier();
        world.all_reduce_into(&x[..], &mut y[..], SystemOperation::sum());
        native = native.min(start.elapsed().as_secs_f64());
    }
    if mpi.rank() == 0 {
        println!(
            "mpi_check bench: MPI_Allreduce of {len} f32 over {} ranks: {:.1} ms",
            mpi.size(),
            native * 1e3
        );
        println!(
            "mpi_check bench: all_reduce_sum of {len} f32 over {} ranks: {:.1} ms ({:.2} GB/s of \
             buffer)",
            mpi.size(),
            best * 1e3,
            (len * 4) as f64 / best / 1e9
        );
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let timeout = match mode.as_str() {
        "die" | "hang" => 5,
        _ => 120,
    };
    let mut mpi = match Mpi::init(Duration::from_secs(timeout)) {
        Ok(mpi) => mpi,
        Err(e) => {
            eprintln!("mpi_check: {e}");
            return ExitCode::from(2);
        }
    };
    match mode.as_str() {
        "" => {}
        "die" | "hang" => return failure_mode(&mpi, &mode),
        "bench" => return bench(&mut mpi, std::env::args().nth(2), std::env::args().nth(3)),
        other => {
            eprintln!(
                "mpi_check: unknown mode {other:?} (expected nothing, `die`, `hang` or `bench`)"
            );
            return ExitCode::from(2);
        }
    }
    if let Err(e) = Mpi::init(Duration::from_secs(1)) {
        // A second init must be refused, not crash.
        if !matches!(e, Error::Mpi(_)) {
            eprintln!("mpi_check: second init: unexpected error {e:?}");
            return ExitCode::FAILURE;
        }
    } else {
        eprintln!("mpi_check: a second Mpi::init succeeded");
        return ExitCode::FAILURE;
    }
    let (rank, size) = (mpi.rank(), mpi.size());
    let code = match checks(&mut mpi) {
        Ok(0) => {
            if rank == 0 {
                println!("mpi_check: ok ({size} ranks)");
            }
            ExitCode::SUCCESS
        }
        Ok(n) => {
            if rank == 0 {
                eprintln!("mpi_check: {n} failures over {size} ranks");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mpi_check: rank {rank}: unexpected error: {e}");
            ExitCode::FAILURE
        }
    };
    drop(mpi); // MPI_Finalize before exiting
    code
}
