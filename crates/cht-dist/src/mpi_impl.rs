//! [`Mpi`]: the collectives over MPI (rsmpi), one process per rank.
//!
//! # Launching
//!
//! The launcher (`mpirun -n N …` of Open MPI or MPICH, or `srun` under Slurm) must start **one
//! process per rank**; each process calls [`Mpi::init`] once and learns its rank and the world
//! size from MPI (`MPI_COMM_WORLD`).
//!
//! # A deterministic all-reduce
//!
//! `MPI_Allreduce` with `MPI_SUM` may add the ranks' contributions in any order (a tree, a ring,
//! a different algorithm per message size), so its bits can differ from run to run, from one
//! world size to another, even from one rank to another. [`Mpi`] instead builds the all-reduce
//! from two data-movement collectives that do no arithmetic, and adds on the host in rank order:
//!
//! 1. **reduce-scatter**: the buffer is split into `size` contiguous pieces (as equal as
//!    possible; piece `r` is owned by rank `r`), and an all-to-all-v (`MPI_Alltoallv`) sends
//!    piece `r` of every rank to rank `r`;
//! 2. rank `r` sums the `size` copies of its piece with [`crate::sum_in_rank_order`]
//!    (`((x₀ + x₁) + x₂) + …`), exactly like [`crate::Local`] and [`crate::Single`];
//! 3. **all-gather**: an all-gather-v (`MPI_Allgatherv`) gives every rank every summed piece.
//!
//! Every element is therefore summed once, in rank order, by one rank, and copied to the others:
//! the same bits on every rank, in every run, whatever MPI library or network. Each rank sends
//! and receives `(N−1)/N` of the buffer in each step, `2·(N−1)/N` in all — the bandwidth of a
//! ring all-reduce, the optimum for large buffers. Buffers longer than an internal chunk length
//! ([`Mpi::DEFAULT_CHUNK_LEN`] elements, see [`Mpi::set_chunk_len`]) are reduced chunk after chunk, which
//! bounds the scratch memory and keeps every MPI count below `i32::MAX`.
//!
//! Before moving any data, every collective exchanges a small header (an `MPI_Allgather` of the
//! operation, length and root): when the ranks disagree, every rank learns it at the same time
//! and returns [`Error::Mismatch`] (or [`Error::Invalid`] for a root outside the world) instead
//! of running mismatched MPI calls, which would hang or corrupt memory.
//!
//! # Failures and the watchdog
//!
//! MPI collectives cannot be cancelled or given a deadline. Every collective of [`Mpi`] therefore
//! registers itself ("entered `all_reduce_sum` at time t") with a watchdog thread; if one stays
//! pending longer than the timeout given to [`Mpi::init`], the watchdog prints
//! `cht: rank R: <op> did not complete within N s: another rank died or hangs; aborting the job`
//! to stderr and aborts the whole job with `MPI_Abort(MPI_COMM_WORLD, 2)`; the launcher then
//! kills every rank and exits non-zero. `MPI_Abort` is called from the watchdog thread while the
//! main thread is blocked inside MPI, which the MPI standard allows only at the
//! `MPI_THREAD_MULTIPLE` level, so [`Mpi::init`] asks for it (Open MPI 4.1 and MPICH provide
//! it). If the library provides less, the watchdog ends the process with
//! `std::process::exit(2)` instead, without calling MPI, and the launcher ends the job when it
//! sees a rank exit without `MPI_Finalize`.
//!
//! The watchdog covers a rank that hangs (or computes for longer than the timeout between two
//! collectives). A rank that dies is usually noticed sooner by the launcher itself: Open MPI's
//! `mpirun` terminates the whole job as soon as one process exits abnormally.
//!
//! # Errors
//!
//! rsmpi exposes no safe way to change the error handler and ignores the return codes of the
//! MPI calls, so errors cannot be returned: [`Mpi`] keeps MPI's default handler on
//! `MPI_COMM_WORLD`, `MPI_ERRORS_ARE_FATAL`. An MPI error (a broken connection, a failed
//! `MPI_Init_thread`) aborts the job with a message from the MPI library and a non-zero exit of
//! the launcher. [`Error::Mpi`] is returned only for what is checked outside MPI (MPI already
//! initialised, the watchdog thread could not start).

use std::fmt;
use std::ops::Add;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mpi::Count;
use mpi::datatype::{Equivalence, Partition, PartitionMut};
use mpi::environment::{Threading, Universe};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};

use crate::{Collective, Error, Result, sum_in_rank_order};

/// Largest number of bytes moved by one `MPI_Bcast` (counts are `i32`).
const BROADCAST_CHUNK: usize = 1 << 30;

/// The collectives over MPI: one process per rank, all started by the launcher (`mpirun -n N`,
/// `srun`); each calls [`Mpi::init`] once.
///
/// * **Deterministic all-reduce.** Not `MPI_Allreduce` (whose order of additions is the
///   library's choice) but a reduce-scatter — an `MPI_Alltoallv` sends piece `r` of the buffer
///   of every rank to rank `r`, which adds the copies in rank order with
///   [`crate::sum_in_rank_order`] — then an `MPI_Allgatherv` of the summed pieces: the same bits
///   on every rank and in every run, like [`crate::Local`]. Each rank sends and receives
///   `2·(N−1)/N` of the buffer, like a ring all-reduce. Long buffers go chunk by chunk
///   ([`Mpi::set_chunk_len`]).
/// * **Disagreements.** Every collective first all-gathers a small header (operation, length,
///   root), so ranks that call different collectives, lengths or roots all get
///   [`Error::Mismatch`] instead of hanging.
/// * **Watchdog.** MPI calls cannot be cancelled: a collective still pending after the timeout
///   of [`Mpi::init`] makes a watchdog thread print
///   `cht: rank R: <op> did not complete within N s: …; aborting the job` and call `MPI_Abort`
///   (the process exits with status 2 if MPI did not provide `MPI_THREAD_MULTIPLE`); the
///   launcher then ends every rank with a non-zero status. A rank that dies is noticed sooner:
///   Open MPI's `mpirun` ends the job at once.
/// * **Errors inside MPI** are fatal (`MPI_ERRORS_ARE_FATAL`, MPI's default, kept because rsmpi
///   ignores MPI's return codes): the job ends with a message from the MPI library.
///
/// Holds MPI's `Universe`: MPI is finalised when the [`Mpi`] is dropped (drop it on the thread
/// that created it, before the process exits), and cannot be initialised again in that process.
///
/// ```no_run
/// use cht_dist::{Collective, DEFAULT_TIMEOUT, Mpi};
///
/// let mpi = Mpi::init(DEFAULT_TIMEOUT)?;
/// let mut grad = vec![mpi.rank() as f32; 10];
/// mpi.all_reduce_sum(&mut grad)?; // the same bits on every rank
/// # Ok::<(), cht_dist::Error>(())
/// ```
pub struct Mpi {
    rank: usize,
    size: usize,
    timeout: Duration,
    chunk_len: usize,
    threading: Threading,
    transport: String,
    /// Serialises the collectives of this process (the trait is `Sync`; MPI collectives on one
    /// communicator must be called in the same order on every rank).
    ops: Mutex<()>,
    watch: Arc<Watch>,
    watchdog: Option<JoinHandle<()>>,
    /// Dropped last (after the watchdog stopped): `MPI_Finalize`.
    universe: Option<Universe>,
}

/// What the watchdog watches: the collective in progress, if any.
#[derive(Debug, Default)]
struct Watch {
    state: Mutex<WatchState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct WatchState {
    pending: Option<(&'static str, Instant)>,
    stop: bool,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Marks a collective pending for the watchdog while it lives.
struct Pending<'a> {
    watch: &'a Watch,
    _serial: MutexGuard<'a, ()>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.watch.lock().pending = None;
    }
}

/// The operation codes of the header every collective starts with.
const OP_F32: u64 = 1;
const OP_F64: u64 = 2;
const OP_BROADCAST: u64 = 3;
const OP_BARRIER: u64 = 4;
/// Words per rank in the header: `[op, a, b]` (see [`Mpi::agree`]).
const HEADER: usize = 3;

fn op_name(op: u64) -> &'static str {
    match op {
        OP_F32 => "all_reduce_sum",
        OP_F64 => "all_reduce_sum_f64",
        OP_BROADCAST => "broadcast",
        OP_BARRIER => "barrier",
        _ => "an unknown collective",
    }
}

fn describe_call(h: &[u64]) -> String {
    match h[0] {
        OP_F32 | OP_F64 => format!("{} of {} values (chunks of {})", op_name(h[0]), h[1], h[2]),
        OP_BROADCAST => format!("broadcast from rank {}", h[1]),
        op => op_name(op).to_string(),
    }
}

/// An MPI count (`i32`) from a length bounded by the chunking.
fn count(n: usize) -> Result<Count> {
    Count::try_from(n).map_err(|_| Error::Invalid(format!("{n} elements exceed an MPI count")))
}

/// The start of piece `r` of `len` elements split into `size` contiguous, near-equal pieces.
fn piece_start(len: usize, size: usize, r: usize) -> usize {
    // len < 2^31 and size < 2^31, so the product fits u64 without overflow.
    (len as u64 * r as u64 / size as u64) as usize
}

impl Mpi {
    /// The default number of elements reduced per round of the all-reduce, 2²⁰ (4 MiB of `f32`):
    /// bounds the scratch memory (about one chunk) and keeps every MPI count far below
    /// `i32::MAX`. Measured with Open MPI 4.1 over shared memory, rounds of 2¹⁸–2²² elements
    /// beat `MPI_Allreduce` on 16 Mi `f32`; rounds of 2²⁴ were 2–3× slower (page faults of the
    /// larger scratch).
    pub const DEFAULT_CHUNK_LEN: usize = 1 << 20;

    /// Initialises MPI (`MPI_Init_thread`, asking for `MPI_THREAD_MULTIPLE`) and starts the
    /// watchdog: a collective still pending after `timeout` aborts the whole job (see
    /// [`Mpi`]). Fails with [`Error::Mpi`] if MPI was already initialised in this process
    /// (by another [`Mpi`], even one dropped since, or by other code); a failure of
    /// `MPI_Init_thread` itself ends the process (`MPI_ERRORS_ARE_FATAL`). A zero timeout is
    /// [`Error::Invalid`].
    pub fn init(timeout: Duration) -> Result<Mpi> {
        if timeout.is_zero() {
            return Err(Error::Invalid(
                "the MPI collective timeout must be positive".into(),
            ));
        }
        let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
            .ok_or_else(|| {
                Error::Mpi(
                    "MPI was already initialised in this process (one Mpi per process, and \
                     MPI cannot be initialised again after it was finalised)"
                        .into(),
                )
            })?;
        let world = universe.world();
        let (rank, size) = (world.rank(), world.size());
        let (rank, size) = match (usize::try_from(rank), usize::try_from(size)) {
            (Ok(r), Ok(s)) if r < s => (r, s),
            _ => return Err(Error::Mpi(format!("MPI reported rank {rank} of {size}"))),
        };
        let library = mpi::environment::library_version().unwrap_or_default();
        let transport = format!("MPI ({})", short_version(&library));
        let watch = Arc::new(Watch::default());
        let watchdog = {
            let watch = watch.clone();
            std::thread::Builder::new()
                .name("cht-mpi-watchdog".into())
                .spawn(move || watchdog(&watch, rank, timeout, threading))
                .map_err(|e| Error::Mpi(format!("cannot start the watchdog thread: {e}")))?
        };
        Ok(Mpi {
            rank,
            size,
            timeout,
            chunk_len: Mpi::DEFAULT_CHUNK_LEN,
            threading,
            transport,
            ops: Mutex::new(()),
            watch,
            watchdog: Some(watchdog),
            universe: Some(universe),
        })
    }

    /// The thread support level MPI provided (`Multiple` with Open MPI 4.1 and MPICH): with
    /// less, the watchdog ends a hung process with `exit(2)` instead of `MPI_Abort`.
    pub fn threading(&self) -> Threading {
        self.threading
    }

    /// The watchdog's limit on one collective (given to [`Mpi::init`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets how many elements one round of the all-reduce moves
    /// ([`Mpi::DEFAULT_CHUNK_LEN`] by default, clamped to
    /// `1 ..= 2³⁰ − 1` so that every MPI count fits an `i32`). Smaller chunks use less scratch memory; tests use tiny ones to
    /// exercise the chunking. Must be the same on every rank: a difference makes the next
    /// all-reduce fail with [`Error::Mismatch`].
    pub fn set_chunk_len(&mut self, elements: usize) {
        self.chunk_len = elements.clamp(1, i32::MAX as usize / 2);
    }

    /// Starts a collective: serialises it with the others of this process and registers it with
    /// the watchdog until the returned guard drops.
    fn enter(&self, op: &'static str) -> Pending<'_> {
        let serial = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        self.watch.lock().pending = Some((op, Instant::now()));
        self.watch.wake.notify_all();
        Pending {
            watch: &self.watch,
            _serial: serial,
        }
    }

    /// Exchanges every rank's header `[op, a, b]` (one `MPI_Allgather`) and returns them in rank
    /// order, or [`Error::Mismatch`] on every rank when the ranks called different collectives,
    /// or the same with different `a` (length, root), or different `b` when `compare_b`.
    fn agree(
        &self,
        world: &SimpleCommunicator,
        mine: [u64; HEADER],
        compare_b: bool,
    ) -> Result<Vec<u64>> {
        let mut all = vec![0u64; HEADER * self.size];
        world.all_gather_into(&mine[..], &mut all[..]);
        let first = &all[..HEADER];
        let differs =
            |h: &[u64]| h[0] != first[0] || h[1] != first[1] || (compare_b && h[2] != first[2]);
        if let Some((r, h)) = all
            .chunks_exact(HEADER)
            .enumerate()
            .find(|(_, h)| differs(h))
        {
            return Err(Error::Mismatch {
                op: op_name(mine[0]),
                detail: format!(
                    "rank 0 called {}, rank {r} called {}",
                    describe_call(first),
                    describe_call(h)
                ),
            });
        }
        Ok(all)
    }

    /// The deterministic all-reduce (module docs) of `data`, of element type `T`.
    fn reduce<T>(&self, op: u64, data: &mut [T]) -> Result<()>
    where
        T: Equivalence + Copy + Default + Add<Output = T>,
    {
        let _pending = self.enter(op_name(op));
        let world = SimpleCommunicator::world();
        self.agree(&world, [op, data.len() as u64, self.chunk_len as u64], true)?;
        if self.size == 1 || data.is_empty() {
            return Ok(());
        }
        let size = self.size;
        let chunk_len = self.chunk_len.min(data.len());
        // Scratch: the copies of this rank's piece from every rank, and their sum.
        let mut received = vec![T::default(); size * chunk_len.div_ceil(size)];
        let mut summed = vec![T::default(); chunk_len.div_ceil(size)];
        for chunk in data.chunks_mut(chunk_len) {
            let len = chunk.len();
            let starts: Vec<usize> = (0..=size).map(|r| piece_start(len, size, r)).collect();
            let counts = (0..size)
                .map(|r| count(starts[r + 1] - starts[r]))
                .collect::<Result<Vec<Count>>>()?;
            let displs = starts[..size]
                .iter()
                .map(|&s| count(s))
                .collect::<Result<Vec<Count>>>()?;
            let mine = starts[self.rank + 1] - starts[self.rank];
            let received = &mut received[..size * mine];
            let summed = &mut summed[..mine];
            // 1. Reduce-scatter, part one: piece r of every rank to rank r.
            {
                let send = Partition::new(&*chunk, &counts[..], &displs[..]);
                let recv_counts = vec![count(mine)?; size];
                let recv_displs = (0..size)
                    .map(|r| count(r * mine))
                    .collect::<Result<Vec<Count>>>()?;
                let mut recv = PartitionMut::new(&mut *received, recv_counts, recv_displs);
                world.all_to_all_varcount_into(&send, &mut recv);
            }
            // 2. The sum of this rank's piece, in rank order.
            if mine > 0 {
                let parts: Vec<&[T]> = received.chunks_exact(mine).collect();
                sum_in_rank_order(summed, &parts);
            }
            // 3. All-gather of the summed pieces.
            let mut recv = PartitionMut::new(&mut *chunk, &counts[..], &displs[..]);
            world.all_gather_varcount_into(&*summed, &mut recv);
        }
        Ok(())
    }
}

/// The first line of the MPI library's version string, cut after its second comma-separated
/// field: `Open MPI v4.1.4, package: Debian OpenMPI`, `MPICH Version: 4.0`.
fn short_version(library: &str) -> String {
    let line = library.lines().next().unwrap_or("");
    let line = line.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let short: Vec<&str> = line.split(',').take(2).map(str::trim).collect();
    let short = short.join(", ");
    if short.is_empty() {
        "unknown library".into()
    } else {
        short
    }
}

/// The watchdog thread: aborts the job when a collective stays pending longer than `timeout`.
fn watchdog(watch: &Watch, rank: usize, timeout: Duration, threading: Threading) {
    let mut st = watch.lock();
    loop {
        if st.stop {
            return;
        }
        st = match st.pending {
            None => watch.wake.wait(st).unwrap_or_else(PoisonError::into_inner),
            Some((op, since)) => {
                let waited = since.elapsed();
                if waited >= timeout {
                    eprintln!(
                        "cht: rank {rank}: {op} did not complete within {} s: another rank died \
                         or hangs; aborting the job",
                        timeout.as_secs_f64()
                    );
                    if threading == Threading::Multiple {
                        // Legal at MPI_THREAD_MULTIPLE while the main thread is inside MPI.
                        SimpleCommunicator::world().abort(2);
                    }
                    // Without MPI_THREAD_MULTIPLE no MPI call is safe here: end this process;
                    // the launcher ends the others.
                    std::process::exit(2);
                }
                watch
                    .wake
                    .wait_timeout(st, timeout - waited)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        self.watch.lock().stop = true;
        self.watch.wake.notify_all();
        if let Some(handle) = self.watchdog.take() {
            let _ = handle.join();
        }
        // MPI_Finalize, once nothing can call MPI any more.
        drop(self.universe.take());
    }
}

impl fmt::Debug for Mpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("timeout", &self.timeout)
            .field("chunk_len", &self.chunk_len)
            .field("threading", &self.threading)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()> {
        self.reduce(OP_F32, data)
    }

    fn all_reduce_sum_f64(&self, data: &mut [f64]) -> Result<()> {
        self.reduce(OP_F64, data)
    }

    fn broadcast(&self, data: &mut Vec<u8>, root: usize) -> Result<()> {
        let _pending = self.enter("broadcast");
        let world = SimpleCommunicator::world();
        // The header carries the root's length: no separate length broadcast.
        let headers = self.agree(
            &world,
            [OP_BROADCAST, root as u64, data.len() as u64],
            false,
        )?;
        if root >= self.size {
            return Err(Error::Invalid(format!(
                "broadcast from rank {root} in a world of {} ranks",
                self.size
            )));
        }
        let len = usize::try_from(headers[HEADER * root + 2]).map_err(|_| {
            Error::Invalid("the broadcast is longer than this rank's address space".into())
        })?;
        if self.rank != root {
            data.clear();
            data.resize(len, 0);
        }
        if self.size == 1 {
            return Ok(());
        }
        let root_process = world.process_at_rank(count(root)?);
        for chunk in data.chunks_mut(BROADCAST_CHUNK) {
            root_process.broadcast_into(chunk);
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        let _pending = self.enter("barrier");
        let world = SimpleCommunicator::world();
        // The header exchange catches a rank in another collective; MPI_Barrier then is the
        // barrier proper.
        self.agree(&world, [OP_BARRIER, 0, 0], false)?;
        world.barrier();
        Ok(())
    }

    fn transport(&self) -> String {
        self.transport.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_buffer() {
        for len in [0usize, 1, 2, 7, 1003] {
            for size in 1..6 {
                let starts: Vec<usize> = (0..=size).map(|r| piece_start(len, size, r)).collect();
                assert_eq!(starts[0], 0);
                assert_eq!(starts[size], len);
                assert!(starts.windows(2).all(|w| w[0] <= w[1]));
                let max = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
                assert!(max <= len.div_ceil(size), "len {len} size {size}");
            }
        }
    }

    #[test]
    fn version_is_shortened() {
        assert_eq!(
            short_version(
                "Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May \
                 26, 2022\0"
            ),
            "Open MPI v4.1.4, package: Debian OpenMPI"
        );
        assert_eq!(
            short_version("MPICH Version:\t4.0\nMPICH Release date: x"),
            "MPICH Version:\t4.0"
        );
        assert_eq!(short_version(""), "unknown library");
    }
}
