//! [`Local`]: ranks as threads of one process, meeting at a mutex-guarded rendezvous.
//!
//! Each collective is one *generation*: every rank deposits its contribution; the last to arrive
//! computes the result (the sum in rank order, or the root's bytes), publishes it, clears the
//! deposits and starts the next generation; the others wake and copy the result. A rank whose
//! handle is dropped (its thread returned an error or panicked) is marked gone, and every rank
//! waiting, or calling later, fails with [`Error::PeerGone`] instead of waiting forever.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Collective, DEFAULT_TIMEOUT, Error, Result, sum_in_rank_order};

/// One rank of a group of threads (see the module docs). Made by [`Local::group`]; move each
/// handle to its thread.
///
/// ```
/// use cht_dist::{Collective, Local};
///
/// let ranks = Local::group(3).unwrap();
/// let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
///     let handles: Vec<_> = ranks
///         .iter()
///         .map(|c| {
///             s.spawn(move || {
///                 let mut x = vec![c.rank() as f32, 1.0];
///                 c.all_reduce_sum(&mut x).unwrap();
///                 x
///             })
///         })
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert!(sums.iter().all(|x| x == &[3.0, 3.0]));
/// ```
#[derive(Debug)]
pub struct Local {
    rank: usize,
    size: usize,
    timeout: Duration,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug)]
struct State {
    generation: u64,
    deposits: Vec<Option<Payload>>,
    arrived: usize,
    /// The result of the last completed generation (or why it failed).
    result: Option<std::result::Result<Arc<Payload>, String>>,
    /// The first rank that stopped (the cause; later ones stop because of it).
    first_gone: Option<usize>,
}

#[derive(Debug, Clone)]
enum Payload {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes { root: usize, data: Option<Vec<u8>> },
    Barrier,
}

impl Payload {
    fn describe(&self) -> String {
        match self {
            Payload::F32(v) => format!("all_reduce_sum of {} f32", v.len()),
            Payload::F64(v) => format!("all_reduce_sum_f64 of {} f64", v.len()),
            Payload::Bytes { root, .. } => format!("broadcast from rank {root}"),
            Payload::Barrier => "barrier".into(),
        }
    }

    /// Whether two ranks' calls are the same collective (same kind, length, root).
    fn same_call(&self, other: &Payload) -> bool {
        match (self, other) {
            (Payload::F32(a), Payload::F32(b)) => a.len() == b.len(),
            (Payload::F64(a), Payload::F64(b)) => a.len() == b.len(),
            (Payload::Bytes { root: a, .. }, Payload::Bytes { root: b, .. }) => a == b,
            (Payload::Barrier, Payload::Barrier) => true,
            _ => false,
        }
    }
}

impl Local {
    /// `size` ranks (rank `i` at index `i`) with the [`DEFAULT_TIMEOUT`].
    pub fn group(size: usize) -> Result<Vec<Local>> {
        Local::group_with_timeout(size, DEFAULT_TIMEOUT)
    }

    /// `size` ranks whose collectives fail with [`Error::Timeout`] after waiting `timeout`.
    pub fn group_with_timeout(size: usize, timeout: Duration) -> Result<Vec<Local>> {
        if size == 0 {
            return Err(Error::Invalid("a group needs at least one rank".into()));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                deposits: vec![None; size],
                arrived: 0,
                result: None,
                first_gone: None,
            }),
            wake: Condvar::new(),
        });
        Ok((0..size)
            .map(|rank| Local {
                rank,
                size,
                timeout,
                shared: shared.clone(),
            })
            .collect())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A rank that panicked while holding the lock left the state consistent (every update
        // below is complete before anything can panic), so a poisoned lock is still usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Deposits this rank's contribution and returns the generation's result.
    fn meet(&self, op: &'static str, mine: Payload) -> Result<Arc<Payload>> {
        let mut st = self.lock();
        if let Some(rank) = st.first_gone {
            return Err(Error::PeerGone {
                rank,
                me: self.rank,
                op,
            });
        }
        let generation = st.generation;
        st.deposits[self.rank] = Some(mine);
        st.arrived += 1;
        if st.arrived == self.size {
            // The last to arrive computes the result for everyone.
            let deposits: Vec<Payload> = st.deposits.iter_mut().filter_map(Option::take).collect();
            st.result = Some(combine(&deposits).map(Arc::new));
            st.arrived = 0;
            st.generation += 1;
            self.shared.wake.notify_all();
        } else {
            let deadline = Instant::now() + self.timeout;
            while st.generation == generation {
                if let Some(rank) = st.first_gone {
                    return Err(Error::PeerGone {
                        rank,
                        me: self.rank,
                        op,
                    });
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Timeout {
                        op,
                        me: self.rank,
                        timeout: self.timeout,
                    });
                }
                st = self
                    .shared
                    .wake
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
        match st.result.clone() {
            Some(Ok(p)) => Ok(p),
            Some(Err(detail)) => Err(Error::Mismatch { op, detail }),
            None => Err(Error::Invalid(format!("{op}: no result was published"))),
        }
    }
}

/// The result of one generation from every rank's deposit (in rank order).
fn combine(deposits: &[Payload]) -> std::result::Result<Payload, String> {
    let first = &deposits[0];
    if let Some((r, d)) = deposits
        .iter()
        .enumerate()
        .find(|(_, d)| !d.same_call(first))
    {
        return Err(format!(
            "rank 0 called {}, rank {r} called {}",
            first.describe(),
            d.describe()
        ));
    }
    Ok(match first {
        Payload::F32(v) => {
            let parts: Vec<&[f32]> = deposits
                .iter()
                .map(|d| match d {
                    Payload::F32(x) => x.as_slice(),
                    _ => &[],
                })
                .collect();
            let mut out = vec![0.0; v.len()];
            sum_in_rank_order(&mut out, &parts);
            Payload::F32(out)
        }
        Payload::F64(v) => {
            let parts: Vec<&[f64]> = deposits
                .iter()
                .map(|d| match d {
                    Payload::F64(x) => x.as_slice(),
                    _ => &[],
                })
                .collect();
            let mut out = vec![0.0; v.len()];
            sum_in_rank_order(&mut out, &parts);
            Payload::F64(out)
        }
        Payload::Bytes { root, .. } => {
            let data = match &deposits[*root] {
                Payload::Bytes { data, .. } => data.clone(),
                _ => None,
            };
            Payload::Bytes { root: *root, data }
        }
        Payload::Barrier => Payload::Barrier,
    })
}

impl Collective for Local {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        if let Payload::F32(sum) = &*self.meet("all_reduce_sum", Payload::F32(data.to_vec()))? {
            data.copy_from_slice(sum);
        }
        Ok(())
    }

    fn all_reduce_sum_f64(&self, data: &mut [f64]) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        let sum = self.meet("all_reduce_sum_f64", Payload::F64(data.to_vec()))?;
        if let Payload::F64(sum) = &*sum {
            data.copy_from_slice(sum);
        }
        Ok(())
    }

    fn broadcast(&self, data: &mut Vec<u8>, root: usize) -> Result<()> {
        if root >= self.size {
            return Err(Error::Invalid(format!(
                "broadcast from rank {root} in a world of {} ranks",
                self.size
            )));
        }
        if self.size == 1 {
            return Ok(());
        }
        let mine = Payload::Bytes {
            root,
            data: (self.rank == root).then(|| data.clone()),
        };
        if let Payload::Bytes {
            data: Some(bytes), ..
        } = &*self.meet("broadcast", mine)?
            && self.rank != root
        {
            data.clear();
            data.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        self.meet("barrier", Payload::Barrier).map(|_| ())
    }

    fn transport(&self) -> String {
        format!("in-process ({} threads)", self.size)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let mut st = self.lock();
        st.first_gone.get_or_insert(self.rank);
        self.shared.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_threads<T: Send>(ranks: Vec<Local>, f: impl Fn(Local) -> T + Sync) -> Vec<T> {
        std::thread::scope(|s| {
            let handles: Vec<_> = ranks.into_iter().map(|c| s.spawn(|| f(c))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn sums_in_rank_order_with_identical_bits_everywhere() {
        // Values whose sum depends on the order: 1e8 + 1 − 1e8 is 0 in f32, not 1.
        let inputs = [1.0e8f32, 1.0, -1.0e8, 3.0];
        let out = on_threads(Local::group(4).unwrap(), |c| {
            let mut x = vec![inputs[c.rank()], c.rank() as f32];
            for _ in 0..50 {
                let mut y = x.clone();
                c.all_reduce_sum(&mut y).unwrap();
                assert_eq!(y, [((1.0e8f32 + 1.0) + -1.0e8) + 3.0, 6.0]);
            }
            c.all_reduce_sum(&mut x).unwrap();
            x
        });
        assert!(out.iter().all(|x| x == &out[0]));
        assert_eq!(out[0][0], 3.0);
    }

    #[test]
    fn broadcast_f64_and_barrier() {
        let out = on_threads(Local::group(3).unwrap(), |c| {
            let mut bytes = if c.rank() == 1 {
                b"from one".to_vec()
            } else {
                vec![9; 40]
            };
            c.broadcast(&mut bytes, 1).unwrap();
            c.barrier().unwrap();
            let mut m = vec![0.5f64 * c.rank() as f64];
            c.all_reduce_sum_f64(&mut m).unwrap();
            (bytes, m[0])
        });
        for (bytes, m) in out {
            assert_eq!(bytes, b"from one");
            assert_eq!(m, 1.5);
        }
    }

    #[test]
    fn a_rank_that_stops_fails_the_others_instead_of_hanging() {
        let start = Instant::now();
        let out = on_threads(Local::group(3).unwrap(), |c| {
            if c.rank() == 2 {
                return Ok(()); // dropped without calling: "died"
            }
            let mut x = vec![1.0f32; 8];
            c.all_reduce_sum(&mut x)
        });
        assert!(start.elapsed() < Duration::from_secs(60));
        for r in &out[..2] {
            assert!(
                matches!(r, Err(Error::PeerGone { rank: 2, .. })),
                "got {r:?}"
            );
        }
    }

    #[test]
    fn a_rank_that_hangs_times_the_others_out() {
        let ranks = Local::group_with_timeout(2, Duration::from_millis(200)).unwrap();
        let out = on_threads(ranks, |c| {
            if c.rank() == 1 {
                std::thread::sleep(Duration::from_millis(1500));
                return Ok(());
            }
            c.barrier()
        });
        assert!(
            matches!(out[0], Err(Error::Timeout { me: 0, .. })),
            "{out:?}"
        );
    }

    #[test]
    fn mismatched_calls_are_an_error_on_every_rank() {
        let out = on_threads(Local::group(2).unwrap(), |c| {
            let mut x = vec![0.0f32; 3 + c.rank()];
            c.all_reduce_sum(&mut x)
        });
        for r in out {
            assert!(matches!(r, Err(Error::Mismatch { .. })), "{r:?}");
        }
        assert!(Local::group(0).is_err());
        let single = Local::group(1).unwrap();
        let mut b = vec![1u8];
        assert!(single[0].broadcast(&mut b, 1).is_err());
    }
}
