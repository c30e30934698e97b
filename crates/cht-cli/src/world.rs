//! The ranks of a run: one process, or several started by `mpirun`/`srun` training one model
//! data-parallel (docs/SCALING.md). Rank 0 alone reads and writes the run directory and
//! reports; every rank trains on its share of each global batch.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use cht_dist::{Collective, Single};
use cht_nn::Metrics;

/// The ranks of this run (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct World {
    comm: Arc<dyn Collective>,
}

/// How long a rank waits in a collective for the others, unless `CHT_COLLECTIVE_TIMEOUT`
/// (seconds) says otherwise: long enough for rank 0's checkpoint or a validation pass.
const TIMEOUT: Duration = cht_dist::DEFAULT_TIMEOUT;

impl World {
    /// One process.
    pub(crate) fn single() -> World {
        World {
            comm: Arc::new(Single),
        }
    }

    /// The world this process was started into: MPI when a launcher started several ranks (and
    /// the `mpi` feature is built in), else one process. Started by a launcher with several
    /// ranks but built without MPI: an error (N independent copies would train N identical
    /// models into one directory).
    pub(crate) fn from_launcher() -> Result<World> {
        let Some((_, size)) = cht_dist::launcher_world() else {
            return Ok(World::single());
        };
        if size <= 1 {
            return Ok(World::single());
        }
        #[cfg(feature = "mpi")]
        {
            let timeout = match std::env::var("CHT_COLLECTIVE_TIMEOUT") {
                Ok(v) => match v.trim().parse::<f64>() {
                    Ok(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
                    _ => {
                        bail!("CHT_COLLECTIVE_TIMEOUT={v:?}: expected a positive number of seconds")
                    }
                },
                Err(_) => TIMEOUT,
            };
            let mpi = cht_dist::Mpi::init(timeout)?;
            Ok(World {
                comm: Arc::new(mpi),
            })
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = TIMEOUT;
            bail!(
                "started by an MPI launcher as one of {size} ranks, but this cht was built without \
                 the `mpi` feature; rebuild with `cargo build --release -p cht-cli --features mpi` \
                 (docs/SCALING.md)"
            )
        }
    }

    /// The collective (for the model's gradient exchange).
    pub(crate) fn comm(&self) -> &Arc<dyn Collective> {
        &self.comm
    }

    /// This rank.
    pub(crate) fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// Number of ranks.
    pub(crate) fn size(&self) -> usize {
        self.comm.size()
    }

    /// Whether this rank reads and writes the run directory and reports (rank 0).
    pub(crate) fn is_root(&self) -> bool {
        self.comm.rank() == 0
    }

    /// This rank's share of a global batch of `batch` (`key` names the setting in errors):
    /// `(per rank, first index)`.
    pub(crate) fn shard(&self, batch: usize, key: &str) -> Result<(usize, usize)> {
        let n = self.size();
        if !batch.is_multiple_of(n) {
            bail!(
                "{key} = {batch} does not split evenly over {n} ranks: choose a multiple of {n} \
                 (each rank trains on {key} / {n} of every global batch)"
            );
        }
        let per = batch / n;
        Ok((per, self.rank() * per))
    }

    /// This rank's contiguous share `start .. end` of `n` items (evaluation sets).
    pub(crate) fn share(&self, n: usize) -> (usize, usize) {
        let (r, size) = (self.rank(), self.size());
        (r * n / size, (r + 1) * n / size)
    }

    /// Sums metrics over the ranks (each rank's are means over its own samples).
    pub(crate) fn sum_metrics(&self, m: Metrics) -> Result<Metrics> {
        if self.size() == 1 {
            return Ok(m);
        }
        let n = m.samples as f64;
        let mut sums = [m.loss * n, m.accuracy * n, n];
        self.comm.all_reduce_sum_f64(&mut sums)?;
        let n = sums[2].max(1.0);
        Ok(Metrics {
            loss: sums[0] / n,
            accuracy: sums[1] / n,
            samples: sums[2] as u64,
        })
    }

    /// Rank 0's `bytes` on every rank.
    pub(crate) fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<()> {
        self.comm.broadcast(bytes, 0)?;
        Ok(())
    }

    /// Refuses a command that trains nothing data-parallel (`eval`, `sample`, …) on several ranks.
    pub(crate) fn require_single(&self, command: &str) -> Result<()> {
        if self.size() > 1 {
            bail!(
                "`cht {command}` runs in one process; start it without mpirun/srun (only `cht train` \
                 and `cht lm train` run data-parallel)"
            );
        }
        Ok(())
    }
}
