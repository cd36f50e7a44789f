//! Tests of the optimizer's learning-rate schedules through the safe API.

use fwp::{Context, ContextConfig, Layer, LayerConfig, LrSchedule, Optimizer, OptimizerConfig, Status};

fn ctx() -> Context {
    Context::new(&ContextConfig::default().num_threads(1).seed(3)).expect("context")
}

fn small_layer(ctx: &Context) -> Layer {
    Layer::new(ctx, &LayerConfig::default().d_model(12).num_heads(2).d_head(4)).expect("layer")
}

#[test]
fn schedule_round_trips_through_the_config() {
    let schedules = [
        LrSchedule::Constant { warmup_steps: 0 },
        LrSchedule::Constant { warmup_steps: 10 },
        LrSchedule::WarmupCosine { warmup_steps: 5, total_steps: 50, min_learning_rate: 1e-4 },
        LrSchedule::InverseSqrt { warmup_steps: 4000, min_learning_rate: 0.0 },
    ];
    for s in schedules {
        assert_eq!(OptimizerConfig::default().schedule(s).get_schedule(), s);
    }
    // Switching schedules clears the fields the new one does not use.
    let c = OptimizerConfig::default()
        .schedule(LrSchedule::WarmupCosine { warmup_steps: 5, total_steps: 50, min_learning_rate: 1e-4 })
        .schedule(LrSchedule::Constant { warmup_steps: 0 });
    assert_eq!(c.as_raw().total_steps, 0);
    assert_eq!(c.as_raw().min_learning_rate, 0.0);
}

#[test]
fn warmup_cosine_learning_rates_follow_the_formula() {
    let ctx = ctx();
    let mut layer = small_layer(&ctx);
    let (base, floor) = (0.1f64, 0.01f64);
    let config = OptimizerConfig::default().learning_rate(base as f32).schedule(LrSchedule::WarmupCosine {
        warmup_steps: 2,
        total_steps: 6,
        min_learning_rate: floor as f32,
    });
    let mut opt = Optimizer::new(&mut layer, &config).unwrap();
    let cosine = |p: f64| floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
    let expected = [0.0, 0.05, 0.1, cosine(0.25), cosine(0.5), cosine(0.75), floor, floor, floor];
    for (n, want) in expected.iter().enumerate() {
        let got = opt.learning_rate() as f64;
        assert!((got - want).abs() <= 1e-7, "after {n} steps: lr {got}, want {want}");
        opt.step().unwrap(); // zero gradients: only the step count matters
    }
    // The base learning rate may not go below the floor.
    assert_eq!(opt.set_learning_rate(0.001).unwrap_err().status(), Status::InvalidArgument);
    opt.set_learning_rate(0.2).unwrap();
    assert!((opt.learning_rate() - 0.01).abs() < 1e-9, "after the decay the floor stays");
}

#[test]
fn inverse_sqrt_needs_a_warmup_and_decays_as_one_over_sqrt() {
    let ctx = ctx();
    let mut layer = small_layer(&ctx);
    let bad = OptimizerConfig::default().schedule(LrSchedule::InverseSqrt { warmup_steps: 0, min_learning_rate: 0.0 });
    let err = Optimizer::new(&mut layer, &bad).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("warmup_steps"), "{}", err.message());

    let config = OptimizerConfig::default()
        .learning_rate(0.2)
        .schedule(LrSchedule::InverseSqrt { warmup_steps: 4, min_learning_rate: 0.0 });
    let mut opt = Optimizer::new(&mut layer, &config).unwrap();
    for _ in 0..16 {
        opt.step().unwrap();
    }
    assert!((opt.learning_rate() as f64 - 0.2 * (4.0f64 / 16.0).sqrt()).abs() < 1e-7);
}
