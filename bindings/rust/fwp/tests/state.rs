//! Tests of the run state (`State`) against the freshly built libfwp.

use fwp::{Context, ContextConfig, FeatureMap, Layer, LayerConfig, RetrievalConfig, RetrievalModel, State, Status, UpdateRule};

fn ctx() -> Context {
    Context::new(&ContextConfig::default().num_threads(1).seed(9)).expect("context")
}

fn small() -> LayerConfig {
    LayerConfig::default().d_model(12).num_heads(2).d_head(4).attn_normalize(true)
}

/// Deterministic pseudo-random numbers in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn steps_with_a_state_equal_steps_with_the_layers_own() {
    let ctx = ctx();
    let mut layer = Layer::new(&ctx, &small()).unwrap();
    layer.set_training(false).unwrap();
    let mut state = State::for_layer(&layer, 2).unwrap();
    assert_eq!(state.batch().unwrap(), 2);
    assert_eq!(state.num_layers().unwrap(), 1);
    assert_eq!(state.size(0).unwrap(), layer.state_size(2).unwrap());
    for t in 0..4 {
        let x = noise(2 * 12, t);
        assert_eq!(layer.step_with_state(&mut state, &x, 2).unwrap(), layer.step(&x, 2).unwrap());
    }
    let own = layer.state().unwrap();
    let ext = state.get(0).unwrap();
    assert_eq!(own, ext);
    // A forward with the state moves it and leaves the layer's own alone.
    let y = layer.forward_with_state(&mut state, &noise(2 * 3 * 12, 50), 2, 3).unwrap();
    assert_eq!(y.len(), 2 * 3 * 12);
    assert_ne!(state.get(0).unwrap().w, own.w);
    assert_eq!(layer.state().unwrap(), own);
    // Wrong batch.
    let err = layer.step_with_state(&mut state, &noise(12, 1), 1).unwrap_err();
    assert_eq!(err.status(), Status::ShapeMismatch, "{err}");
}

#[test]
fn reorder_copy_reset_set() {
    let ctx = ctx();
    let layer = Layer::new(&ctx, &small()).unwrap();
    let mut state = State::for_layer(&layer, 3).unwrap();
    let (w_count, z_count) = state.size(0).unwrap();
    let (rw, rz) = (w_count / 3, z_count / 3);
    let w = noise(w_count, 1);
    let z: Vec<f32> = noise(z_count, 2).iter().map(|v| v.abs() + 0.5).collect();
    state.set(0, Some(&w), Some(&z)).unwrap();
    assert_eq!(state.set(0, Some(&w[1..]), None).unwrap_err().status(), Status::ShapeMismatch);

    let mut copy = State::for_layer(&layer, 3).unwrap();
    copy.copy_from(&state).unwrap();
    assert_eq!(copy.get(0).unwrap().w, w);

    state.reorder(&[2, 0, 2, 2]).unwrap();
    assert_eq!(state.batch().unwrap(), 4);
    let got = state.get(0).unwrap();
    for (r, &from) in [2usize, 0, 2, 2].iter().enumerate() {
        assert_eq!(got.w[r * rw..(r + 1) * rw], w[from * rw..(from + 1) * rw]);
        assert_eq!(got.z[r * rz..(r + 1) * rz], z[from * rz..(from + 1) * rz]);
    }
    assert_eq!(state.reorder(&[4]).unwrap_err().status(), Status::OutOfRange);
    assert_eq!(state.reorder(&[]).unwrap_err().status(), Status::InvalidArgument);
    // Copies need the same batch.
    assert_eq!(copy.copy_from(&state).unwrap_err().status(), Status::ShapeMismatch);

    state.reset().unwrap();
    assert_eq!(state.batch().unwrap(), 4);
    assert!(state.get(0).unwrap().w.iter().all(|&v| v == 0.0));
    assert_eq!(state.size(1).unwrap_err().status(), Status::OutOfRange);
}

#[test]
fn softmax_state_is_a_cache() {
    let ctx = ctx();
    let config = small().attn_normalize(false).feature_map(FeatureMap::Softmax).update_rule(UpdateRule::Sum).sum_normalize(false);
    let mut layer = Layer::new(&ctx, &config).unwrap();
    let mut state = State::for_layer(&layer, 2).unwrap();
    assert_eq!(state.cache_len(0).unwrap(), 0);
    assert_eq!(state.size(0).unwrap_err().status(), Status::Unsupported);
    layer.forward_with_state(&mut state, &noise(2 * 5 * 12, 3), 2, 5).unwrap();
    assert_eq!(state.cache_len(0).unwrap(), 5);
    layer.step_with_state(&mut state, &noise(2 * 12, 4), 2).unwrap();
    assert_eq!(state.cache_len(0).unwrap(), 6);
    let err = layer.forward_with_state(&mut state, &noise(2 * 5 * 12, 3), 2, 5).unwrap_err();
    assert_eq!(err.status(), Status::Unsupported, "{err}");
}

#[test]
fn retrieval_model_has_no_state_and_states_outlive_their_layer() {
    let ctx = ctx();
    let model = RetrievalModel::new(&ctx, &RetrievalConfig::default().num_keys(5).d_head(16)).unwrap();
    let err = State::for_model(&model, 2).unwrap_err();
    assert_eq!(err.status(), Status::Unsupported);
    assert!(err.message().contains("retrieval"), "{err}");

    let layer = Layer::new(&ctx, &small()).unwrap();
    let mut state = State::for_layer(&layer, 2).unwrap();
    drop(layer);
    drop(ctx);
    state.reset().unwrap();
    assert_eq!(state.get(0).unwrap().batch, 2);
}
