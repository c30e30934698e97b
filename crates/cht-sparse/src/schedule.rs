//! Step-indexed schedules of dynamic sparse training: when the topology is updated, how much is
//! removed, how sparse each layer should be, and how sharp soft removal is.
//!
//! Every schedule here is a pure function of the optimizer step `t` (the number of optimizer steps so
//! far, including the current one, as in spec §2.1) and of its configuration, so the CPU, the GPU
//! driver and a resumed run all agree. Parameters are validated when a value is asked for; invalid
//! ones come back as [`ScheduleError`], never as a panic.
//!
//! | what | spec | type |
//! |---|---|---|
//! | update steps | §7.1, §9.27 | [`UpdateSchedule`], [`UpdateBoundary`] |
//! | removal fraction ζ_t | §2.1 | [`ZetaSchedule`] |
//! | sparsity decay s(t) | §5.2 | [`DensityDecay`], [`DensitySchedule`] |
//! | soft-removal temperature T(t) | §2.3, §9.3 | [`TemperatureSchedule`] |
//! | EM_S densities and regrowth | §5.4 | [`ems_initial_density`], [`ems_regrow_fraction`] |

use serde::{Deserialize, Serialize};

/// Invalid schedule parameters.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// A fraction (ζ, a sparsity, a density, δ) is not a finite number in its allowed range.
    #[error("{name} = {value} is outside {range}")]
    OutOfRange {
        /// Which parameter.
        name: &'static str,
        /// The rejected value.
        value: f64,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// The topology update interval ΔT is zero.
    #[error("the topology update interval ΔT must be at least 1 step")]
    ZeroInterval,
}

/// Whether the last update may fall exactly on `T_end` (spec §7.1, §9.27).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateBoundary {
    /// Updates while `t < T_end`, as in \[OLD\] (MLP, Transformer). The default.
    #[default]
    BeforeEnd,
    /// Updates while `t ≤ T_end`, as in \[NEW\] (LLaMA). With adaptive ζ the last update then has
    /// ζ = 0 and only prunes or refills.
    ThroughEnd,
}

/// How `T_end` follows from the length of training (spec §7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TEndRule {
    /// `T_end = floor(0.75 · total_steps)`: MLP and Transformer with adaptive ζ or EM_S, and always for
    /// LLaMA. The default.
    #[default]
    ThreeQuarters,
    /// `T_end = total_steps`: MLP and Transformer with a fixed ζ.
    Full,
}

impl TEndRule {
    /// `T_end` for a run of `total_steps` optimizer steps (spec §7.1).
    pub fn t_end(self, total_steps: u64) -> u64 {
        match self {
            // Integer arithmetic: floor(0.75·n) without float rounding.
            TEndRule::ThreeQuarters => total_steps / 4 * 3 + total_steps % 4 * 3 / 4,
            TEndRule::Full => total_steps,
        }
    }
}

/// Which optimizer steps are topology updates (spec §7.1): every `interval` (ΔT) steps up to `t_end`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateSchedule {
    /// ΔT, the topology update interval in optimizer steps.
    pub interval: u64,
    /// `T_end`, the last step at which updates may happen.
    pub t_end: u64,
    /// Whether `t_end` itself may be an update.
    pub boundary: UpdateBoundary,
}

impl UpdateSchedule {
    /// A validated schedule; ΔT must be at least 1.
    pub fn new(
        interval: u64,
        t_end: u64,
        boundary: UpdateBoundary,
    ) -> Result<UpdateSchedule, ScheduleError> {
        if interval == 0 {
            return Err(ScheduleError::ZeroInterval);
        }
        Ok(UpdateSchedule {
            interval,
            t_end,
            boundary,
        })
    }

    /// Whether step `t` (counted after its increment, so the first optimizer step is `t = 1`) is a
    /// topology update: `t mod ΔT = 0` and `t < T_end` (or `≤`, see [`UpdateBoundary`]).
    ///
    /// Step 0 is never an update (no optimizer step has happened), and a zero interval, which
    /// [`UpdateSchedule::new`] rejects but a hand-edited config could contain, yields no updates.
    pub fn is_update_step(&self, t: u64) -> bool {
        let on_grid = t > 0 && t.checked_rem(self.interval) == Some(0);
        let in_window = match self.boundary {
            UpdateBoundary::BeforeEnd => t < self.t_end,
            UpdateBoundary::ThroughEnd => t <= self.t_end,
        };
        on_grid && in_window
    }

    /// The number of topology updates in steps `1..=total_steps`.
    pub fn update_count(&self, total_steps: u64) -> u64 {
        if self.interval == 0 {
            return 0;
        }
        let last = match self.boundary {
            UpdateBoundary::BeforeEnd => self.t_end.saturating_sub(1),
            UpdateBoundary::ThroughEnd => self.t_end,
        };
        last.min(total_steps) / self.interval
    }
}

/// The removal fraction ζ_t of spec §2.1: the share of a layer's links removed at an update.
///
/// ```rust
/// use cht_sparse::schedule::ZetaSchedule;
///
/// let cosine = ZetaSchedule::Cosine { zeta: 0.3, t_end: 100 };
/// assert_eq!(cosine.zeta(0, 0.9)?, 0.3);
/// assert!((cosine.zeta(50, 0.9)? - 0.15).abs() < 1e-12);
/// assert_eq!(cosine.zeta(500, 0.9)?, 0.0); // held at T_end
/// // EM_S removes a layer at density 0.2 down to the target 0.1: half of its links.
/// let ems = ZetaSchedule::EmS { target_density: 0.1 };
/// assert!((ems.zeta(10, 0.8)? - 0.5).abs() < 1e-12);
/// // Out-of-range parameters are errors, not panics.
/// assert!(ZetaSchedule::Fixed { zeta: 1.5 }.zeta(0, 0.9).is_err());
/// # Ok::<(), cht_sparse::schedule::ScheduleError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ZetaSchedule {
    /// `ζ_t = ζ` (`--zeta`), as in SET.
    Fixed {
        /// ζ in `[0, 1]`.
        zeta: f64,
    },
    /// RigL-style cosine annealing (`--adaptive_zeta`): `ζ_t = (ζ/2)(1 + cos(π t / max(1, T_end)))`.
    ///
    /// ζ_t reaches 0 at `T_end`. Steps after `T_end` are held at `T_end` (ζ_t = 0): no code release
    /// updates there, and the raw cosine would rise again.
    Cosine {
        /// ζ at step 0, in `[0, 1]`.
        zeta: f64,
        /// `T_end`; 0 is treated as 1, as \[NEW\] does.
        t_end: u64,
    },
    /// MEST's EM_S: remove down to the target density, `ζ_t = (1 − S_l − d)/(1 − S_l)` (§2.1, §5.4).
    EmS {
        /// The target density `d`, in `(0, 1]`.
        target_density: f64,
    },
}

impl ZetaSchedule {
    /// ζ_t at step `t` for a layer whose current scheduled sparsity is `layer_sparsity` (`S_l`).
    ///
    /// Only [`ZetaSchedule::EmS`] reads `layer_sparsity`; the others only check it. For EM_S a layer
    /// already at or below the target density (or an empty layer) gets ζ_t = 0: there is nothing to
    /// remove.
    pub fn zeta(&self, t: u64, layer_sparsity: f64) -> Result<f64, ScheduleError> {
        check_unit("layer sparsity S_l", layer_sparsity)?;
        match *self {
            ZetaSchedule::Fixed { zeta } => check_unit("zeta", zeta),
            ZetaSchedule::Cosine { zeta, t_end } => {
                check_unit("zeta", zeta)?;
                let t_end = t_end.max(1);
                let progress = t.min(t_end) as f64 / t_end as f64;
                Ok(0.5 * zeta * (1.0 + (std::f64::consts::PI * progress).cos()))
            }
            ZetaSchedule::EmS { target_density } => {
                check_open_unit("EM_S target density", target_density)?;
                let density = 1.0 - layer_sparsity;
                if density <= target_density {
                    return Ok(0.0);
                }
                Ok((density - target_density) / density)
            }
        }
    }
}

/// The shape of the sparsity decay `s(c)` over pruning iterations `c` (spec §5.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DensitySchedule {
    /// No decay: the layer stays at the final sparsity `s_f` from the start (CHT, CHTs).
    Constant,
    /// CHTss's normalised logistic (`s_shape`):
    /// `u(c) = (σ(k(2c/n − 1)) − σ(−k)) / (σ(k) − σ(−k))`.
    Sigmoid {
        /// Steepness `k` (> 0); the paper uses 6 everywhere.
        k: f64,
        /// Over how many pruning iterations the sigmoid runs.
        span: SigmoidSpan,
    },
    /// GMP/GraNet's cubic (`granet`): `u(c) = 1 − (1 − c/n)³`.
    Cubic,
    /// `u(c) = c/n`.
    Linear,
}

impl DensitySchedule {
    /// The paper's CHTss schedule: sigmoid with `k = 6` and the half-step strategy.
    pub fn chtss() -> DensitySchedule {
        DensitySchedule::Sigmoid {
            k: 6.0,
            span: SigmoidSpan::HalfStep,
        }
    }
}

/// How many pruning iterations the sigmoid decay of [`DensitySchedule::Sigmoid`] spans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigmoidSpan {
    /// The paper's "half-step strategy" (§5.2, \[PAPER §4.4, App. I\]), the default.
    ///
    /// Interpretation (the paper gives no formula): the sigmoid runs over `max(1, floor(n/2))`
    /// pruning iterations instead of `n`, so it reaches `s_f` in half the pruning iterations and
    /// stays there. The sigmoid prunes slowly at first; finishing twice as fast keeps the training
    /// FLOPs comparable to the front-loaded cubic decay, which is the paper's stated aim.
    #[default]
    HalfStep,
    /// All `n` pruning iterations, as the released \[NEW-LLM\] code does.
    Full,
}

/// Gradual sparsity decay from `s_i` to `s_f` (spec §5.1, §5.2).
///
/// With `c = floor(t/ΔT) − ini_iter` the pruning iteration, `ini_iter = floor(init_step/ΔT)` and
/// `n = max(1, floor(pruning_T_end/ΔT) − ini_iter)` the number of pruning iterations, the sparsity is
/// `s(c) = s_i + (s_f − s_i)·u(c)` with `u` from [`DensitySchedule`], `c` held in `[0, n]`.
///
/// \[NEW\] subtracts `ini_iter` (iterations) from the step count, and a second time inside the cubic
/// (§9.11). This type keeps units consistent instead; both agree at the default `init_step = 0`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DensityDecay {
    /// The curve.
    pub schedule: DensitySchedule,
    /// `s_i` (`--granet_init_sparsity`), in `[0, 1]`.
    pub initial_sparsity: f64,
    /// `s_f` (`--sparsity`), in `[0, 1]`.
    pub final_sparsity: f64,
    /// ΔT, the update interval in steps.
    pub interval: u64,
    /// `pruning_T_end`, the step at which the decay is meant to end.
    pub pruning_t_end: u64,
    /// `granet_init_step`, the step at which the decay starts (0 by default).
    pub init_step: u64,
}

impl DensityDecay {
    /// Checks every parameter.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        check_unit("initial sparsity s_i", self.initial_sparsity)?;
        check_unit("final sparsity s_f", self.final_sparsity)?;
        if self.interval == 0 {
            return Err(ScheduleError::ZeroInterval);
        }
        if let DensitySchedule::Sigmoid { k, .. } = self.schedule
            && !(k.is_finite() && k > 0.0)
        {
            return Err(ScheduleError::OutOfRange {
                name: "sigmoid steepness k",
                value: k,
                range: "(0, ∞)",
            });
        }
        Ok(())
    }

    /// `ini_iter = floor(init_step/ΔT)`, the first pruning iteration (0 for a zero ΔT).
    pub fn ini_iter(&self) -> u64 {
        self.init_step.checked_div(self.interval).unwrap_or(0)
    }

    /// `n = max(1, floor(pruning_T_end/ΔT) − ini_iter)`, the number of pruning iterations.
    pub fn iterations(&self) -> u64 {
        let end = self.pruning_t_end.checked_div(self.interval).unwrap_or(0);
        end.saturating_sub(self.ini_iter()).max(1)
    }

    /// The pruning iteration `c` of step `t` (0 before the decay starts; not capped at `n`).
    pub fn iteration(&self, t: u64) -> u64 {
        let done = t.checked_div(self.interval).unwrap_or(0);
        done.saturating_sub(self.ini_iter())
    }

    /// The scheduled sparsity after pruning iteration `c`.
    pub fn sparsity_at_iteration(&self, c: u64) -> Result<f64, ScheduleError> {
        self.validate()?;
        let (s_i, s_f) = (self.initial_sparsity, self.final_sparsity);
        let u = match self.schedule {
            DensitySchedule::Constant => return Ok(s_f),
            DensitySchedule::Sigmoid { k, span } => {
                let n = match span {
                    SigmoidSpan::Full => self.iterations(),
                    SigmoidSpan::HalfStep => (self.iterations() / 2).max(1),
                };
                sigmoid_progress(k, c.min(n) as f64 / n as f64)
            }
            DensitySchedule::Cubic => {
                let remaining = 1.0 - self.progress(c);
                1.0 - remaining * remaining * remaining
            }
            DensitySchedule::Linear => self.progress(c),
        };
        // Exact endpoints: the lerp alone can miss s_f by one ulp.
        Ok(match u {
            u if u <= 0.0 => s_i,
            u if u >= 1.0 => s_f,
            u => s_i + (s_f - s_i) * u,
        })
    }

    /// The scheduled sparsity `s(t)` at step `t`.
    pub fn sparsity(&self, t: u64) -> Result<f64, ScheduleError> {
        self.sparsity_at_iteration(self.iteration(t))
    }

    /// The scheduled density `1 − s(t)` at step `t`.
    pub fn density(&self, t: u64) -> Result<f64, ScheduleError> {
        Ok(1.0 - self.sparsity(t)?)
    }

    /// `c/n`, held in `[0, 1]`.
    fn progress(&self, c: u64) -> f64 {
        let n = self.iterations();
        c.min(n) as f64 / n as f64
    }
}

/// The temperature `T(t)` of soft removal, `p ∝ score^T` (spec §2.3, §9.3).
///
/// Every preset interpolates over `progress = min(t, T_end)/max(1, T_end)`.
///
/// ```rust
/// use cht_sparse::schedule::TemperatureSchedule;
///
/// // The paper's preset goes from T = 2 at step 0 to T = 10 at T_end.
/// let paper = TemperatureSchedule::Paper;
/// assert!((paper.temperature(0, 1000)? - 2.0).abs() < 1e-9);
/// assert!((paper.temperature(1000, 1000)? - 10.0).abs() < 1e-9);
/// let linear = TemperatureSchedule::NewLinear { start_t: 1.0, end_t: 9.0 };
/// assert_eq!(linear.temperature(250, 1000)?, 3.0);
/// assert!(TemperatureSchedule::Constant(0.0).temperature(0, 1).is_err());
/// # Ok::<(), cht_sparse::schedule::ScheduleError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum TemperatureSchedule {
    /// The paper (App. H): δ rises linearly 0.5 → 0.9 and `T = 1/(1 − δ)`, so T goes 2 → 10
    /// (hyperbolically in t). The default.
    #[default]
    Paper,
    /// δ rises linearly from `start_delta` to `end_delta`, `T = 1/(1 − δ)`. The paper's §3.1 variant
    /// is 0.5 → 0.75 (T 2 → 4).
    DeltaLinear {
        /// δ at step 0, in `[0, 1)`.
        start_delta: f64,
        /// δ at `T_end`, in `[0, 1)`.
        end_delta: f64,
    },
    /// \[OLD\] MLP, CNN and Transformer: `T = 1 + 2t/T_end` (1 → 3).
    OldLinear,
    /// \[NEW\] LLaMA: `T = start_t + (end_t − start_t)·t/T_end`; the README uses 1 → 9.
    NewLinear {
        /// T at step 0 (> 0).
        start_t: f64,
        /// T at `T_end` (> 0).
        end_t: f64,
    },
    /// A constant temperature (\[NEW\]'s CLI default is 1).
    Constant(f64),
}

impl TemperatureSchedule {
    /// The temperature at step `t` of a run whose updates end at `t_end`.
    pub fn temperature(&self, t: u64, t_end: u64) -> Result<f64, ScheduleError> {
        let t_end = t_end.max(1);
        let progress = t.min(t_end) as f64 / t_end as f64;
        match *self {
            TemperatureSchedule::Paper => delta_temperature(0.5, 0.9, progress),
            TemperatureSchedule::DeltaLinear {
                start_delta,
                end_delta,
            } => delta_temperature(start_delta, end_delta, progress),
            TemperatureSchedule::OldLinear => Ok(1.0 + 2.0 * progress),
            TemperatureSchedule::NewLinear { start_t, end_t } => {
                check_temperature(start_t)?;
                check_temperature(end_t)?;
                Ok(start_t + (end_t - start_t) * progress)
            }
            TemperatureSchedule::Constant(temperature) => check_temperature(temperature),
        }
    }
}

/// The starting density of EM_S, `d + 0.05` (spec §5.4), capped at 1.
pub fn ems_initial_density(target_density: f64) -> Result<f64, ScheduleError> {
    check_open_unit("EM_S target density", target_density)?;
    Ok((target_density + 0.05).min(1.0))
}

/// The share of all `N` entries that EM_S regrows at update step `t` (spec §5.4).
///
/// `0.05` while `t ≤ 0.6·T_end`, `0.025` while `t < T_end − ΔT`, then 0, so the last update ends at
/// the target density.
pub fn ems_regrow_fraction(t: u64, t_end: u64, interval: u64) -> f64 {
    // 10t ≤ 6·T_end is t ≤ 0.6·T_end without float rounding.
    if u128::from(t) * 10 <= u128::from(t_end) * 6 {
        0.05
    } else if u128::from(t) + u128::from(interval) < u128::from(t_end) {
        0.025
    } else {
        0.0
    }
}

/// `u(x)` of the normalised logistic at `x = c/n ∈ [0, 1]`; `u(0) = 0`, `u(1) = 1`.
fn sigmoid_progress(k: f64, x: f64) -> f64 {
    let low = sigmoid(-k);
    let high = sigmoid(k);
    (sigmoid(k * (2.0 * x - 1.0)) - low) / (high - low)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `T = 1/(1 − δ)` with δ interpolated linearly.
fn delta_temperature(start: f64, end: f64, progress: f64) -> Result<f64, ScheduleError> {
    for delta in [start, end] {
        if !(delta.is_finite() && (0.0..1.0).contains(&delta)) {
            return Err(ScheduleError::OutOfRange {
                name: "delta",
                value: delta,
                range: "[0, 1)",
            });
        }
    }
    Ok(1.0 / (1.0 - (start + (end - start) * progress)))
}

fn check_temperature(temperature: f64) -> Result<f64, ScheduleError> {
    if temperature.is_finite() && temperature > 0.0 {
        Ok(temperature)
    } else {
        Err(ScheduleError::OutOfRange {
            name: "temperature T",
            value: temperature,
            range: "(0, ∞)",
        })
    }
}

/// Accepts a finite value in `[0, 1]`.
pub(crate) fn check_unit(name: &'static str, value: f64) -> Result<f64, ScheduleError> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(ScheduleError::OutOfRange {
            name,
            value,
            range: "[0, 1]",
        })
    }
}

/// Accepts a finite value in `(0, 1]`.
fn check_open_unit(name: &'static str, value: f64) -> Result<f64, ScheduleError> {
    if value.is_finite() && value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(ScheduleError::OutOfRange {
            name,
            value,
            range: "(0, 1]",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The §5.2 recipe: s_i = 0.5, s_f = 0.9, ΔT = 100, pruning_T_end = 8000 (n = 80).
    fn readme_decay(schedule: DensitySchedule) -> DensityDecay {
        DensityDecay {
            schedule,
            initial_sparsity: 0.5,
            final_sparsity: 0.9,
            interval: 100,
            pruning_t_end: 8000,
            init_step: 0,
        }
    }

    /// Spec §5.2 table: (step, c, sigmoid s, cubic s).
    const TABLE: [(u64, u64, f64, f64); 11] = [
        (0, 0, 0.500000, 0.500000),
        (100, 1, 0.500160, 0.514813),
        (1000, 10, 0.503423, 0.632031),
        (2000, 20, 0.518071, 0.731250),
        (3000, 30, 0.572339, 0.802344),
        (4000, 40, 0.700000, 0.850000),
        (5000, 50, 0.827661, 0.878906),
        (6000, 60, 0.881929, 0.893750),
        (7000, 70, 0.896577, 0.899219),
        (7500, 75, 0.898896, 0.899902),
        (8000, 80, 0.900000, 0.900000),
    ];

    fn round6(x: f64) -> f64 {
        (x * 1e6).round() / 1e6
    }

    #[test]
    fn density_decay_reproduces_spec_table() {
        let sigmoid = readme_decay(DensitySchedule::Sigmoid {
            k: 6.0,
            span: SigmoidSpan::Full,
        });
        let cubic = readme_decay(DensitySchedule::Cubic);
        assert_eq!(sigmoid.iterations(), 80);
        for (step, c, want_sigmoid, want_cubic) in TABLE {
            assert_eq!(sigmoid.iteration(step), c);
            assert_eq!(
                round6(sigmoid.sparsity(step).unwrap()),
                want_sigmoid,
                "sigmoid {step}"
            );
            assert_eq!(
                round6(cubic.sparsity(step).unwrap()),
                want_cubic,
                "cubic {step}"
            );
        }
    }

    #[test]
    fn half_step_sigmoid_finishes_at_half_the_iterations() {
        let full = readme_decay(DensitySchedule::Sigmoid {
            k: 6.0,
            span: SigmoidSpan::Full,
        });
        let half = readme_decay(DensitySchedule::chtss());
        // Half-step at iteration c equals the full schedule at 2c.
        for c in 0..=40 {
            let a = half.sparsity_at_iteration(c).unwrap();
            let b = full.sparsity_at_iteration(2 * c).unwrap();
            assert!((a - b).abs() < 1e-12, "c={c}: {a} vs {b}");
        }
        assert_eq!(half.sparsity(2000).unwrap(), full.sparsity(4000).unwrap());
        assert_eq!(half.sparsity(4000).unwrap(), 0.9);
        assert_eq!(half.sparsity(6000).unwrap(), 0.9);
        assert!(half.sparsity(3900).unwrap() < 0.9);
    }

    #[test]
    fn decays_are_monotone_and_hit_both_ends() {
        let schedules = [
            DensitySchedule::Sigmoid {
                k: 6.0,
                span: SigmoidSpan::Full,
            },
            DensitySchedule::Sigmoid {
                k: 2.5,
                span: SigmoidSpan::Full,
            },
            DensitySchedule::chtss(),
            DensitySchedule::Cubic,
            DensitySchedule::Linear,
        ];
        for schedule in schedules {
            for (s_i, s_f, end) in [(0.5, 0.9, 8000), (0.0, 0.99, 700), (0.3, 0.31, 100)] {
                let decay = DensityDecay {
                    initial_sparsity: s_i,
                    final_sparsity: s_f,
                    pruning_t_end: end,
                    ..readme_decay(schedule.clone())
                };
                let n = decay.iterations();
                assert_eq!(decay.sparsity_at_iteration(0).unwrap(), s_i);
                assert_eq!(decay.sparsity_at_iteration(n).unwrap(), s_f);
                assert_eq!(decay.sparsity_at_iteration(n + 7).unwrap(), s_f);
                let mut previous = s_i;
                for c in 1..=n {
                    let s = decay.sparsity_at_iteration(c).unwrap();
                    assert!(s >= previous, "{schedule:?} not monotone at c={c}");
                    assert!((s_i..=s_f).contains(&s));
                    previous = s;
                }
            }
        }
    }

    #[test]
    fn linear_and_constant_values() {
        let linear = readme_decay(DensitySchedule::Linear);
        assert!((linear.sparsity(2000).unwrap() - 0.6).abs() < 1e-12);
        assert!((linear.density(4000).unwrap() - 0.3).abs() < 1e-12);
        let constant = readme_decay(DensitySchedule::Constant);
        assert_eq!(constant.sparsity(0).unwrap(), 0.9);
        assert_eq!(constant.sparsity(4000).unwrap(), 0.9);
    }

    #[test]
    fn init_step_shifts_the_decay() {
        let shifted = DensityDecay {
            init_step: 1000,
            ..readme_decay(DensitySchedule::Linear)
        };
        assert_eq!(shifted.ini_iter(), 10);
        assert_eq!(shifted.iterations(), 70);
        assert_eq!(shifted.sparsity(500).unwrap(), 0.5);
        assert_eq!(shifted.sparsity(1000).unwrap(), 0.5);
        assert!((shifted.sparsity(4500).unwrap() - (0.5 + 0.4 * 35.0 / 70.0)).abs() < 1e-12);
        assert_eq!(shifted.sparsity(8000).unwrap(), 0.9);
    }

    #[test]
    fn decay_rejects_bad_parameters() {
        let bad_k = readme_decay(DensitySchedule::Sigmoid {
            k: 0.0,
            span: SigmoidSpan::Full,
        });
        assert!(bad_k.sparsity(100).is_err());
        let bad_s = DensityDecay {
            final_sparsity: 1.5,
            ..readme_decay(DensitySchedule::Cubic)
        };
        assert!(bad_s.sparsity(100).is_err());
        let zero_interval = DensityDecay {
            interval: 0,
            ..readme_decay(DensitySchedule::Cubic)
        };
        assert_eq!(
            zero_interval.sparsity(100),
            Err(ScheduleError::ZeroInterval)
        );
        let nan = DensityDecay {
            initial_sparsity: f64::NAN,
            ..readme_decay(DensitySchedule::Linear)
        };
        assert!(nan.sparsity(0).is_err());
    }

    #[test]
    fn fixed_and_cosine_zeta() {
        let fixed = ZetaSchedule::Fixed { zeta: 0.3 };
        assert_eq!(fixed.zeta(12345, 0.9).unwrap(), 0.3);
        let cosine = ZetaSchedule::Cosine {
            zeta: 0.3,
            t_end: 1000,
        };
        assert!((cosine.zeta(0, 0.9).unwrap() - 0.3).abs() < 1e-15);
        assert!((cosine.zeta(500, 0.9).unwrap() - 0.15).abs() < 1e-15);
        assert!((cosine.zeta(250, 0.9).unwrap() - 0.15 * (1.0 + 0.5f64.sqrt())).abs() < 1e-15);
        assert!(cosine.zeta(1000, 0.9).unwrap().abs() < 1e-15);
        assert!(cosine.zeta(1500, 0.9).unwrap().abs() < 1e-15);
        let guarded = ZetaSchedule::Cosine {
            zeta: 0.3,
            t_end: 0,
        };
        assert!(guarded.zeta(0, 0.9).unwrap().is_finite());
        assert!(ZetaSchedule::Fixed { zeta: -0.1 }.zeta(0, 0.9).is_err());
        assert!(fixed.zeta(0, 1.1).is_err());
    }

    #[test]
    fn ems_zeta_removes_down_to_target() {
        let ems = ZetaSchedule::EmS {
            target_density: 0.05,
        };
        // Density 0.10 → 0.05 removes half the links.
        assert!((ems.zeta(100, 0.9).unwrap() - 0.5).abs() < 1e-12);
        // Density 0.075 → 0.05 removes one third.
        assert!((ems.zeta(100, 0.925).unwrap() - 1.0 / 3.0).abs() < 1e-12);
        // 1 − 0.95 is 0.05 plus one rounding error: nothing (measurable) to remove.
        assert!(ems.zeta(100, 0.95).unwrap() < 1e-12);
        assert_eq!(ems.zeta(100, 0.97).unwrap(), 0.0);
        assert_eq!(ems.zeta(100, 1.0).unwrap(), 0.0);
        let bad = ZetaSchedule::EmS {
            target_density: 0.0,
        };
        assert!(bad.zeta(100, 0.9).is_err());
    }

    #[test]
    fn ems_regrowth_phases() {
        let (t_end, interval) = (1000, 100);
        assert_eq!(ems_regrow_fraction(100, t_end, interval), 0.05);
        assert_eq!(ems_regrow_fraction(600, t_end, interval), 0.05);
        assert_eq!(ems_regrow_fraction(601, t_end, interval), 0.025);
        assert_eq!(ems_regrow_fraction(899, t_end, interval), 0.025);
        assert_eq!(ems_regrow_fraction(900, t_end, interval), 0.0);
        assert!((ems_initial_density(0.01).unwrap() - 0.06).abs() < 1e-15);
        assert_eq!(ems_initial_density(0.98).unwrap(), 1.0);
        assert!(ems_initial_density(1.5).is_err());
    }

    #[test]
    fn temperature_presets() {
        let at = |s: &TemperatureSchedule, t| s.temperature(t, 1000).unwrap();
        let paper = TemperatureSchedule::default();
        assert_eq!(paper, TemperatureSchedule::Paper);
        assert!((at(&paper, 0) - 2.0).abs() < 1e-12);
        assert!((at(&paper, 500) - 1.0 / 0.3).abs() < 1e-12);
        assert!((at(&paper, 1000) - 10.0).abs() < 1e-9);
        assert!((at(&paper, 2000) - 10.0).abs() < 1e-9);
        let old = TemperatureSchedule::OldLinear;
        assert_eq!(at(&old, 0), 1.0);
        assert_eq!(at(&old, 500), 2.0);
        assert_eq!(at(&old, 1000), 3.0);
        let new = TemperatureSchedule::NewLinear {
            start_t: 1.0,
            end_t: 9.0,
        };
        assert_eq!(at(&new, 250), 3.0);
        assert_eq!(at(&new, 1000), 9.0);
        let section31 = TemperatureSchedule::DeltaLinear {
            start_delta: 0.5,
            end_delta: 0.75,
        };
        assert!((at(&section31, 1000) - 4.0).abs() < 1e-12);
        assert_eq!(at(&TemperatureSchedule::Constant(1.5), 700), 1.5);
        assert!(
            TemperatureSchedule::Constant(0.0)
                .temperature(0, 10)
                .is_err()
        );
        let bad_delta = TemperatureSchedule::DeltaLinear {
            start_delta: 0.5,
            end_delta: 1.0,
        };
        assert!(bad_delta.temperature(0, 10).is_err());
    }

    #[test]
    fn update_steps_respect_the_boundary() {
        let old = UpdateSchedule::new(100, 1000, UpdateBoundary::default()).unwrap();
        let new = UpdateSchedule::new(100, 1000, UpdateBoundary::ThroughEnd).unwrap();
        assert!(!old.is_update_step(0));
        assert!(!old.is_update_step(99));
        assert!(old.is_update_step(100));
        assert!(old.is_update_step(900));
        assert!(!old.is_update_step(1000));
        assert!(new.is_update_step(1000));
        assert!(!new.is_update_step(1100));
        assert_eq!(old.update_count(10_000), 9);
        assert_eq!(new.update_count(10_000), 10);
        assert_eq!(new.update_count(450), 4);
        let brute = (0..=10_000).filter(|&t| new.is_update_step(t)).count() as u64;
        assert_eq!(brute, new.update_count(10_000));
        assert_eq!(
            UpdateSchedule::new(0, 10, UpdateBoundary::BeforeEnd),
            Err(ScheduleError::ZeroInterval)
        );
        let hand_edited = UpdateSchedule { interval: 0, ..old };
        assert!(!hand_edited.is_update_step(100));
        assert_eq!(hand_edited.update_count(100), 0);
    }

    #[test]
    fn t_end_rules() {
        assert_eq!(TEndRule::ThreeQuarters.t_end(10_000), 7500);
        assert_eq!(TEndRule::ThreeQuarters.t_end(7), 5);
        assert_eq!(
            TEndRule::ThreeQuarters.t_end(u64::MAX),
            u64::MAX / 4 * 3 + 2
        );
        assert_eq!(TEndRule::Full.t_end(7), 7);
    }
}
