//! Tests of the safe layer API against the freshly built libfwp.

use fwp::{
    Context, ContextConfig, FeatureMap, Layer, LayerConfig, Optimizer, OptimizerConfig, OptimizerKind, Status,
    UpdateRule,
};

fn ctx() -> Context {
    Context::new(&ContextConfig::default().num_threads(1).seed(3)).expect("context")
}

fn small() -> LayerConfig {
    LayerConfig::default().d_model(12).num_heads(2).d_head(4)
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

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

#[test]
fn version_matches_header() {
    let (major, minor, patch) = fwp::version();
    assert_eq!(major, fwp::sys::FWP_VERSION_MAJOR);
    assert_eq!(fwp::version_string(), format!("{major}.{minor}.{patch}"));
    assert!(!fwp::cuda_is_built() || fwp::cuda_device_count().is_ok());
}

#[test]
fn config_defaults_come_from_the_library() {
    let c = LayerConfig::default();
    assert_eq!(c.get_d_model(), 128);
    assert_eq!(c.get_num_heads(), 8);
    assert_eq!(c.get_d_head(), 16);
    assert_eq!(c.get_feature_map(), FeatureMap::Dpfp);
    assert_eq!(c.get_update_rule(), UpdateRule::Delta);
    assert!(c.get_sum_normalize());
    assert!(!c.get_carry_state());
    let ctx = ctx();
    let layer = Layer::new(&ctx, &small().feature_map(FeatureMap::Elu).update_rule(UpdateRule::Sum)).unwrap();
    let back = layer.config().unwrap();
    assert_eq!(back.get_d_model(), 12);
    assert_eq!(back.get_feature_map(), FeatureMap::Elu);
    assert_eq!(back.get_update_rule(), UpdateRule::Sum);
    assert_eq!(layer.feature_dim(), 4, "elu+1 keeps d_dot = d_head");
}

#[test]
fn forward_backward_shapes() {
    let ctx = ctx();
    let mut layer = Layer::new(&ctx, &small()).unwrap();
    let (b, t, d) = (2, 5, 12);
    let x = noise(b * t * d, 1);
    let y = layer.forward(&x, b, t).unwrap();
    assert_eq!(y.len(), b * t * d);
    assert!(y.iter().all(|v| v.is_finite()));
    assert!(y.iter().any(|&v| v != 0.0));
    let dx = layer.backward(&noise(b * t * d, 2), b, t).unwrap();
    assert_eq!(dx.len(), b * t * d);
    assert!(dx.iter().any(|&v| v != 0.0));
    // dx is optional.
    layer.forward(&x, b, t).unwrap();
    layer.backward_into(&y, b, t, None).unwrap();
}

#[test]
fn wrong_lengths_are_caught_before_c() {
    let ctx = ctx();
    let mut layer = Layer::new(&ctx, &small()).unwrap();
    let err = layer.forward(&[0.0; 11], 1, 1).unwrap_err();
    assert_eq!(err.status(), Status::ShapeMismatch);
    assert!(err.message().contains("x has 11 elements"), "{err}");
    let mut y = vec![0.0; 5];
    let err = layer.forward_into(&[0.0; 12], 1, 1, &mut y).unwrap_err();
    assert_eq!(err.status(), Status::ShapeMismatch);
    assert!(err.message().starts_with("y "), "{err}");
}

#[test]
fn library_errors_carry_status_and_message() {
    let ctx = ctx();
    let err = Layer::new(&ctx, &small().d_head(0)).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("d_head"), "message should name the field: {err}");
    assert!(err.to_string().starts_with(&Status::InvalidArgument.description()));
    assert_eq!(err.status().code(), fwp::sys::FWP_ERR_INVALID_ARGUMENT.0);
    // The library's own message is also reachable directly.
    assert_eq!(fwp::last_error_message(), err.message());
    fwp::clear_error();
    assert_eq!(fwp::last_error_message(), "");

    let mut layer = Layer::new(&ctx, &small()).unwrap();
    let err = layer.backward(&[0.0; 12], 1, 1).unwrap_err();
    assert_eq!(err.status(), Status::BadState, "backward before forward: {err}");
    let err = layer.param_info(1000).unwrap_err();
    assert_eq!(err.status(), Status::OutOfRange, "{err}");
    let err = layer.param_index("no.such.param").unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument, "{err}");
    assert!(err.message().contains("no.such.param"), "{err}");
}

#[test]
fn parameters_get_set_and_gradients() {
    let ctx = ctx();
    let mut layer = Layer::new(&ctx, &small()).unwrap();
    let params = layer.params().unwrap();
    assert_eq!(params.len(), layer.num_params());
    assert!(!params.is_empty());
    for (i, p) in params.iter().enumerate() {
        assert_eq!(layer.param_index(&p.name).unwrap(), i);
        assert_eq!(p.numel, p.shape.iter().product::<usize>());
        assert_eq!(layer.param(i).unwrap().len(), p.numel);
    }
    let q = layer.param_index("q_proj.weight").expect("q_proj.weight exists");
    assert_eq!(params[q].shape, vec![2 * 4, 12], "nn.Linear layout [out, in]");

    let values = noise(params[q].numel, 9);
    layer.set_param(q, &values).unwrap();
    assert_eq!(layer.param(q).unwrap(), values);
    assert_eq!(layer.param_by_name("q_proj.weight").unwrap(), values);
    let mut bad = values.clone();
    bad[3] = f32::NAN;
    assert_eq!(layer.set_param(q, &bad).unwrap_err().status(), Status::InvalidArgument);
    assert_eq!(layer.param(q).unwrap(), values, "a failed call changes nothing");
    assert_eq!(layer.set_param(q, &values[1..]).unwrap_err().status(), Status::ShapeMismatch);

    let x = noise(2 * 3 * 12, 4);
    layer.forward(&x, 2, 3).unwrap();
    layer.backward(&noise(2 * 3 * 12, 5), 2, 3).unwrap();
    assert!(layer.grad(q).unwrap().iter().any(|&g| g != 0.0));
    layer.zero_grad().unwrap();
    assert!(layer.grad(q).unwrap().iter().all(|&g| g == 0.0));
}

/// dx from backward agrees with a central difference of L = <y, r> along a random direction.
#[test]
fn input_gradient_matches_finite_differences() {
    let ctx = ctx();
    let mut layer = Layer::new(&ctx, &small().feature_map(FeatureMap::Elu).update_rule(UpdateRule::Delta)).unwrap();
    let (b, t) = (1, 4);
    let x = noise(b * t * 12, 11);
    let r = noise(b * t * 12, 12);
    let v = noise(b * t * 12, 13);
    layer.forward(&x, b, t).unwrap();
    let dx = layer.backward(&r, b, t).unwrap();
    let analytic = dot(&dx, &v);
    let eps = 1e-2f32;
    let shifted = |sign: f32, layer: &mut Layer| {
        let xs: Vec<f32> = x.iter().zip(&v).map(|(a, d)| a + sign * eps * d).collect();
        dot(&layer.forward(&xs, b, t).unwrap(), &r)
    };
    let numeric = (shifted(1.0, &mut layer) - shifted(-1.0, &mut layer)) / (2.0 * eps as f64);
    let scale = analytic.abs().max(numeric.abs()).max(1e-3);
    assert!((analytic - numeric).abs() / scale < 2e-2, "analytic {analytic} vs numeric {numeric}");
}

#[test]
fn state_carry_set_get_and_step() {
    let ctx = ctx();
    let config = small().carry_state(true);
    let mut layer = Layer::new(&ctx, &config).unwrap();
    let (b, t, d) = (2, 6, 12);
    let x = noise(b * t * d, 21);
    let full = layer.forward(&x, b, t).unwrap();
    let final_state = layer.state().unwrap();
    assert_eq!(final_state.batch, b);
    let (w_count, z_count) = layer.state_size(b).unwrap();
    let d_dot = layer.feature_dim();
    assert_eq!(w_count, b * 2 * 4 * d_dot);
    assert_eq!(z_count, b * 2 * d_dot);
    assert_eq!((final_state.w.len(), final_state.z.len()), (w_count, z_count));
    assert!(final_state.w.iter().any(|&w| w != 0.0));

    // Two segments of 3 tokens with the state carried give the same outputs.
    let segment = |x: &[f32], from: usize| -> Vec<f32> {
        (0..b).flat_map(|row| x[(row * t + from) * d..(row * t + from + 3) * d].to_vec()).collect()
    };
    layer.reset_state().unwrap();
    let y1 = layer.forward(&segment(&x, 0), b, 3).unwrap();
    let y2 = layer.forward(&segment(&x, 3), b, 3).unwrap();
    for row in 0..b {
        for (i, tok) in (0..3).chain(3..6).enumerate() {
            let got = if i < 3 { &y1[(row * 3 + i) * d..][..d] } else { &y2[(row * 3 + i - 3) * d..][..d] };
            let want = &full[(row * t + tok) * d..][..d];
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-4, "segment outputs differ: {g} vs {w}");
            }
        }
    }

    // Setting the saved state back reproduces it.
    layer.set_state(b, Some(&final_state.w), Some(&final_state.z)).unwrap();
    assert_eq!(layer.state().unwrap(), final_state);
    assert_eq!(layer.set_state(b, Some(&final_state.w[1..]), None).unwrap_err().status(), Status::ShapeMismatch);

    // Recurrent steps reproduce the forward.
    layer.reset_state().unwrap();
    for tok in 0..t {
        let xt: Vec<f32> = (0..b).flat_map(|row| x[(row * t + tok) * d..][..d].to_vec()).collect();
        let yt = layer.step(&xt, b).unwrap();
        for row in 0..b {
            for (g, w) in yt[row * d..][..d].iter().zip(&full[(row * t + tok) * d..][..d]) {
                assert!((g - w).abs() < 1e-4, "step {tok}: {g} vs {w}");
            }
        }
    }
    assert_eq!(layer.step(&[0.0; 5], b).unwrap_err().status(), Status::ShapeMismatch);
}

#[test]
fn state_gradient() {
    let ctx = ctx();
    let mut layer = Layer::new(&ctx, &small()).unwrap();
    assert_eq!(layer.state_grad(1).unwrap_err().status(), Status::BadState);
    let (b, t) = (1, 3);
    let (w_count, z_count) = layer.state_size(b).unwrap();
    layer
        .set_state(b, Some(&noise(w_count, 31)), Some(&noise(z_count, 32).iter().map(|v| v.abs()).collect::<Vec<_>>()))
        .unwrap();
    layer.forward(&noise(b * t * 12, 33), b, t).unwrap();
    layer.backward(&noise(b * t * 12, 34), b, t).unwrap();
    let grad = layer.state_grad(b).unwrap();
    assert_eq!((grad.w.len(), grad.z.len()), (w_count, z_count));
    assert!(grad.w.iter().any(|&g| g != 0.0));
}

#[test]
fn softmax_has_no_fast_weight_state() {
    let ctx = ctx();
    let config = small().feature_map(FeatureMap::Softmax).update_rule(UpdateRule::Sum).sum_normalize(false);
    let layer = Layer::new(&ctx, &config).unwrap();
    assert_eq!(layer.feature_dim(), 0);
    assert_eq!(layer.state_size(1).unwrap_err().status(), Status::Unsupported);
}

#[test]
fn optimizer_trains_a_layer() {
    let ctx = ctx();
    let mut layer = Layer::new(&ctx, &small().init_std(0.2)).unwrap();
    let (b, t) = (2, 4);
    let x = noise(b * t * 12, 41);
    let target = noise(b * t * 12, 42);
    let config = OptimizerConfig::default().kind(OptimizerKind::Adam).learning_rate(0.02);
    let mut opt = Optimizer::new(&mut layer, &config).unwrap();
    let mut losses = Vec::new();
    for _ in 0..60 {
        opt.zero_grad().unwrap();
        let y = opt.target_mut().forward(&x, b, t).unwrap();
        let diff: Vec<f32> = y.iter().zip(&target).map(|(a, b)| a - b).collect();
        losses.push(0.5 * dot(&diff, &diff));
        opt.target_mut().backward(&diff, b, t).unwrap();
        let norm = opt.step().unwrap();
        assert!(norm.is_finite() && norm > 0.0);
    }
    assert_eq!(opt.steps(), 60);
    assert!(losses[59] < 0.8 * losses[0], "loss {} -> {}", losses[0], losses[59]);
    opt.set_learning_rate(0.5).unwrap();
    assert_eq!(opt.learning_rate(), 0.5);
    assert_eq!(opt.set_learning_rate(f32::NAN).unwrap_err().status(), Status::InvalidArgument);
    drop(opt);
    // The layer is usable again once the optimizer is gone.
    assert!(layer.num_params() > 0);
}

#[test]
fn objects_outlive_their_context_and_move_between_threads() {
    let ctx = Context::new(&ContextConfig::default().num_threads(1).logger(|_, _| {}).log_level(fwp::LogLevel::Debug))
        .unwrap();
    let mut layer = Layer::new(&ctx, &small()).unwrap();
    drop(ctx);
    let x = noise(12 * 2, 51);
    let y_here = layer.forward(&x, 1, 2).unwrap();
    let handle = std::thread::spawn(move || {
        let y = layer.forward(&x, 1, 2).unwrap();
        (layer, y)
    });
    let (_layer, y_there) = handle.join().unwrap();
    assert_eq!(y_here, y_there);
}

#[test]
fn errors_are_thread_local() {
    let ctx = ctx();
    let err = Layer::new(&ctx, &small().num_heads(0)).unwrap_err();
    let other = std::thread::spawn(fwp::last_error_message).join().unwrap();
    assert_eq!(other, "", "another thread sees no error");
    assert_eq!(fwp::last_error_message(), err.message());
}

#[test]
fn same_seed_same_parameters() {
    let a = Layer::new(&ctx(), &small()).unwrap();
    let b = Layer::new(&ctx(), &small()).unwrap();
    let c = Layer::new(&Context::new(&ContextConfig::default().seed(99)).unwrap(), &small()).unwrap();
    assert_eq!(a.param(0).unwrap(), b.param(0).unwrap());
    assert_ne!(a.param(0).unwrap(), c.param(0).unwrap());
}
