//! The model-level API ([`DstModel`]): it keeps the network, its optimizer state and the
//! scheduler consistent, and every mismatch a user can make — optimizer state left out, shapes
//! swapped, layers built at another density, a checkpoint that does not fit — is an error in the
//! user's terms, never a silent skip or an internal tensor name.

mod common;

use cht_train::dst::{DstScheduler, LayerRef, Method, Updates};
use cht_train::gpu::DType;
use cht_train::nn::{Layer, Mlp, SparseLinear};
use cht_train::prelude::*;
use common::cpu;

fn set_config(density: f64) -> DstConfig {
    let updates = Updates {
        every: 2,
        until: 100,
    };
    DstConfig::preset(Method::Set, density, updates, 1)
}

/// An MLP over ready-made sparse layers of the given `(out, in)` shapes and densities, with a
/// dense classifier.
fn mlp_of(d: &Device, layers: &[((usize, usize), f64)]) -> Mlp {
    let mut out: Vec<Layer> = layers
        .iter()
        .enumerate()
        .map(|(l, &((rows, cols), density))| {
            let key = cht_train::sparse::rng::RngKey::new(
                3,
                cht_train::sparse::rng::Stream::TopologyInit,
                0,
                l as u32,
            );
            let p = CsrPattern::random(rows, cols, density, key).unwrap();
            Layer::Sparse(SparseLinear::new(d, &format!("layer{l}"), &p, 0, l as u32).unwrap())
        })
        .collect();
    let last = layers.last().unwrap().0.0;
    out.push(Layer::Dense(
        cht_train::nn::DenseLinear::new(d, "classifier", 3, last, 0, 9).unwrap(),
    ));
    Mlp::from_layers(d, out).unwrap()
}

fn message(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[test]
fn swapped_shapes_are_named_as_such() {
    let d = cpu();
    // The network's layer is 6 × 8 (out × in); the scheduler was made for 8 × 6.
    let sched = DstScheduler::new(set_config(0.5), &[(8, 6)]).unwrap();
    let err = SparseMlp::from_parts(&d, mlp_of(&d, &[((6, 8), 0.5)]), sched).unwrap_err();
    let m = message(&err);
    assert!(m.contains("sparse layer 0") && m.contains("6 × 8"), "{m}");
    assert!(m.contains("swapped"), "{m}");
    // Another shape altogether: no swap hint, both shapes named.
    let sched = DstScheduler::new(set_config(0.5), &[(7, 8)]).unwrap();
    let m = message(SparseMlp::from_parts(&d, mlp_of(&d, &[((6, 8), 0.5)]), sched).unwrap_err());
    assert!(m.contains("7 × 8") && !m.contains("swapped"), "{m}");
    // A count mismatch.
    let sched = DstScheduler::new(set_config(0.5), &[(6, 8), (6, 6)]).unwrap();
    let m = message(SparseMlp::from_parts(&d, mlp_of(&d, &[((6, 8), 0.5)]), sched).unwrap_err());
    assert!(
        m.contains("1 sparse layers") && m.contains("manages 2"),
        "{m}"
    );
}

#[test]
fn layers_built_at_another_density_are_rejected() {
    let d = cpu();
    // Built at 50 % (24 links), the scheduler plans 25 % (12 links).
    let sched = DstScheduler::new(set_config(0.25), &[(6, 8)]).unwrap();
    let m = message(SparseMlp::from_parts(&d, mlp_of(&d, &[((6, 8), 0.5)]), sched).unwrap_err());
    assert!(m.contains("sparse layer 0"), "{m}");
    assert!(
        m.contains("density 0.5000") && m.contains("density 0.2500"),
        "{m}"
    );
    // Densities out of range, for the scheduler and for the execution choice.
    let m = message(DstScheduler::new(set_config(1.5), &[(6, 8)]).unwrap_err());
    assert!(m.contains("density must be in (0, 1]"), "{m}");
    let mut mlp = mlp_of(&d, &[((6, 8), 0.5)]);
    let m = message(
        mlp.set_execution(&d, ExecutionPolicy::default(), &[1.7])
            .unwrap_err(),
    );
    assert!(m.contains("sparse layer 0") && m.contains("1.7"), "{m}");
    let m = message(
        mlp.set_execution(&d, ExecutionPolicy::default(), &[0.5, 0.5])
            .unwrap_err(),
    );
    assert!(m.contains("2 densities given for 1 sparse layers"), "{m}");
}

#[test]
fn optimizer_state_left_out_is_an_error_and_changes_nothing() {
    let d = cpu();
    let mut sched = DstScheduler::new(set_config(0.5), &[(6, 8)]).unwrap();
    let mask = sched.initial_masks(None).unwrap().remove(0);
    let p = CsrPattern::from_mask(&mask);
    let cap = sched.capacity(0);
    let pattern = d.upload_pattern("p", &p, cap).unwrap();
    let values = d.zeros("w", cap, 1, DType::F32);
    let momentum = d.zeros("m", cap, 1, DType::F32);
    // The scratch moves one state tensor (momentum) with the links.
    let topology = sched.topology(&d, 1);
    sched.step();
    let before = sched.clone();
    let err = sched
        .update(&d, &topology, &[LayerRef::new(&pattern, &values, &[])])
        .unwrap_err();
    let m = message(&err);
    assert!(
        m.contains("sparse layer 0")
            && m.contains("0 optimizer-state tensors given")
            && m.contains("made for 1"),
        "{m}"
    );
    assert_eq!(
        sched, before,
        "a rejected update leaves the scheduler as it was"
    );
    // A state tensor of the wrong length.
    let short = d.zeros("m", cap - 1, 1, DType::F32);
    let state = [&short];
    let m = message(
        sched
            .update(&d, &topology, &[LayerRef::new(&pattern, &values, &state)])
            .unwrap_err(),
    );
    assert!(
        m.contains(&format!("{} values for {cap} link slots", cap - 1)),
        "{m}"
    );
    // The right one goes through.
    let state = [&momentum];
    sched
        .update(&d, &topology, &[LayerRef::new(&pattern, &values, &state)])
        .unwrap();
}

#[test]
fn checkpoint_patterns_that_do_not_fit_are_rejected() {
    let d = cpu();
    let dst = MlpRecipe::new(Method::Set, 0.25)
        .epochs(1)
        .steps_per_epoch(10)
        .build();
    let mut model = SparseMlp::new(&d, &SparseMlpConfig::new(vec![8, 6, 3], dst)).unwrap();
    let full = CsrPattern::from_mask(&Mask::from_bools(6, 8, vec![true; 48]).unwrap());
    let m = message(model.restore(&d, &[full], None).unwrap_err());
    assert!(
        m.contains("sparse layer 0") && m.contains("48 links"),
        "{m}"
    );
    let wrong = CsrPattern::from_mask(&Mask::from_bools(8, 6, vec![false; 48]).unwrap());
    let m = message(model.restore(&d, &[wrong], None).unwrap_err());
    assert!(m.contains("8 × 6") && m.contains("6 × 8"), "{m}");
    let m = message(model.restore(&d, &[], None).unwrap_err());
    assert!(m.contains("0 patterns given for 1 sparse layers"), "{m}");
}

#[test]
fn csti_without_the_input_correlation_says_what_to_set() {
    let d = cpu();
    let dst = MlpRecipe::new(Method::ChtsN, 0.25)
        .epochs(1)
        .steps_per_epoch(10)
        .build();
    let m = message(SparseMlp::new(&d, &SparseMlpConfig::new(vec![8, 6, 3], dst)).unwrap_err());
    assert!(m.contains("SparseMlpConfig::correlation"), "{m}");
}

/// The model observes the masks itself: after training through updates, ANP and ITOP are known
/// (ITOP grows past the density as links move) without the caller reading anything back; a dense
/// model has no scheduler and never updates.
#[test]
fn the_model_observes_its_own_topology() {
    let d = cpu();
    // SET's fixed ζ runs to the end: an update every epoch of 4 steps, at 4, 8, 12 and 16.
    let dst = MlpRecipe::new(Method::Set, 0.3)
        .epochs(5)
        .steps_per_epoch(4)
        .build();
    let mut model = SparseMlp::new(&d, &SparseMlpConfig::new(vec![8, 12, 12, 3], dst)).unwrap();
    let ws = model.network().workspace(&d, 4);
    let x: Vec<f32> = (0..32).map(|i| (i % 7) as f32 / 7.0).collect();
    let mut updates = 0;
    for _ in 0..20 {
        model
            .network()
            .load_batch(&d, &ws, &x, &[0, 1, 2, 0])
            .unwrap();
        let planned = model.next_step_is_update();
        let report = model
            .train_step(&d, &ws, SgdStep::new(0.05, 0.9, 0.0))
            .unwrap();
        assert_eq!(report.is_some(), planned);
        updates += usize::from(report.is_some());
    }
    assert_eq!(updates, 4);
    assert!(
        !model.has_unobserved_update(),
        "native steps observe every update"
    );
    let itop = model.itop().unwrap();
    assert!(itop > 0.3, "ITOP {itop} counts every link ever active");
    let anp = model.anp().unwrap();
    assert!(anp > 0.0 && anp <= 1.0);
    assert!(model.summary().contains("ANP 0."), "{}", model.summary());
    assert_eq!(model.densities().len(), 2);

    let fc = DstConfig::preset(
        Method::Fc,
        1.0,
        Updates {
            every: 1,
            until: 10,
        },
        0,
    );
    let mut dense = SparseMlp::new(&d, &SparseMlpConfig::new(vec![8, 12, 3], fc)).unwrap();
    let ws = dense.network().workspace(&d, 4);
    dense
        .network()
        .load_batch(&d, &ws, &x, &[0, 1, 2, 0])
        .unwrap();
    assert!(dense.scheduler().is_none());
    assert!(!dense.next_step_is_update());
    let report = dense
        .train_step(&d, &ws, SgdStep::new(0.05, 0.9, 0.0))
        .unwrap();
    assert!(report.is_none());
    assert_eq!((dense.itop(), dense.anp()), (None, None));
}
