//! # cht-dist: the collectives of data-parallel sparse training
//!
//! wgpu has no collectives and NCCL cannot read wgpu buffers, so cht's data-parallel training
//! exchanges gradients on the host through this small interface, [`Collective`]:
//!
//! * [`Collective::all_reduce_sum`] — element-wise sum over the ranks **in rank order**
//!   (`((x₀ + x₁) + x₂) + …`), so every rank gets the same bits whatever the transport, and a run
//!   repeats bit for bit;
//! * [`Collective::broadcast`] — bytes from one rank to all (a checkpoint, a fingerprint);
//! * [`Collective::barrier`].
//!
//! Implementations: [`Single`] (one rank; every call is free), [`Local`] (ranks as threads of one
//! process: tests, several adapters in one process) and, with the `mpi` feature, `Mpi`
//! (processes started by `mpirun`/`srun`). A rank that dies or hangs never hangs the others:
//! they fail with [`Error::PeerGone`] or [`Error::Timeout`] (MPI: the job is aborted).

use std::fmt::Debug;
use std::time::Duration;

mod local;
#[cfg(all(feature = "mpi", not(target_arch = "wasm32")))]
mod mpi_impl;

pub use local::Local;
#[cfg(all(feature = "mpi", not(target_arch = "wasm32")))]
pub use mpi_impl::Mpi;

/// The collectives data-parallel training needs. Every rank calls the same methods in the same
/// order with buffers of the same length; a call returns when every rank has made it.
pub trait Collective: Send + Sync + Debug {
    /// This process's (or thread's) rank, `0 .. size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Replaces `data` on every rank by the element-wise sum over all ranks, added in rank order
    /// (`((x₀ + x₁) + x₂) + …`): the same bits on every rank and in every run.
    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()>;
    /// [`Collective::all_reduce_sum`] of `f64` (metrics: loss sums, counts).
    fn all_reduce_sum_f64(&self, data: &mut [f64]) -> Result<()>;
    /// Replaces `data` on every rank but `root` by `root`'s bytes (resized as needed).
    fn broadcast(&self, data: &mut Vec<u8>, root: usize) -> Result<()>;
    /// Returns when every rank has called it.
    fn barrier(&self) -> Result<()>;
    /// What carries the messages, for logs (e.g. `MPI (Open MPI v4.1.4)`).
    fn transport(&self) -> String;
}

/// Errors of the collectives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another rank ended (its thread or process stopped) before the collective completed.
    #[error("rank {rank} stopped before {op} completed on rank {me}")]
    PeerGone {
        /// The rank that stopped.
        rank: usize,
        /// This rank.
        me: usize,
        /// The collective.
        op: &'static str,
    },
    /// The collective did not complete within the timeout (another rank died, hangs, or runs
    /// another collective).
    #[error(
        "{op} did not complete on rank {me} within {:.0} s: another rank died, hangs or \
         called another collective",
        timeout.as_secs_f64()
    )]
    Timeout {
        /// The collective.
        op: &'static str,
        /// This rank.
        me: usize,
        /// The limit.
        timeout: Duration,
    },
    /// Ranks called the same collective with different lengths or roots.
    #[error("{op}: the ranks disagree: {detail}")]
    Mismatch {
        /// The collective.
        op: &'static str,
        /// What differs.
        detail: String,
    },
    /// An invalid argument (a root outside the ranks, a rank count of 0).
    #[error("{0}")]
    Invalid(String),
    /// The MPI library reported an error or could not start.
    #[error("MPI: {0}")]
    Mpi(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a collective may wait for the other ranks before failing (the default of
/// [`Local::group`] and `Mpi::init`): generous enough for a validation pass or a checkpoint on
/// another rank, short enough that a dead job ends.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// One rank: every collective returns at once with `data` unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, _data: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn all_reduce_sum_f64(&self, _data: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn broadcast(&self, _data: &mut Vec<u8>, root: usize) -> Result<()> {
        if root != 0 {
            return Err(Error::Invalid(format!(
                "broadcast from rank {root} in a world of 1 rank"
            )));
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }

    fn transport(&self) -> String {
        "single process".into()
    }
}

/// The rank and size the launcher (`mpirun` of Open MPI or MPICH, `srun`) put in the environment,
/// if this process was started by one; `None` otherwise. Lets a program built without MPI refuse
/// to run as N independent copies.
pub fn launcher_world() -> Option<(usize, usize)> {
    let var = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    let pairs = [
        ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("PMI_RANK", "PMI_SIZE"),
        ("PMIX_RANK", "PMIX_SIZE"),
        ("SLURM_PROCID", "SLURM_NTASKS"),
    ];
    pairs
        .iter()
        .find_map(|(r, s)| Some((var(r)?, var(s)?)))
        .filter(|&(rank, size)| rank < size)
}

/// This process's rank among the ranks on its machine, from the launcher's environment (Open
/// MPI, MPICH, Slurm), if a launcher set one: ranks of one machine use it to take one GPU each.
pub fn launcher_local_rank() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
        "PMIX_LOCAL_RANK",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.trim().parse().ok())
}

/// The sum in rank order of `parts[0] + parts[1] + …` into `out` (every part as long as `out`):
/// the one summation every implementation uses, so all agree bit for bit.
pub fn sum_in_rank_order<T: Copy + std::ops::Add<Output = T>>(out: &mut [T], parts: &[&[T]]) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    out.copy_from_slice(first);
    for part in rest {
        for (o, &x) in out.iter_mut().zip(part.iter()) {
            *o = *o + x;
        }
    }
}
