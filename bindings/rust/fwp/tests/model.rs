//! Tests of the retrieval model, data, optimizer and checkpoints against the freshly built libfwp.

use std::path::PathBuf;

use fwp::{
    AnyModel, Context, ContextConfig, DataKind, FeatureMap, Model, ModelKind, Optimizer, OptimizerConfig,
    RetrievalBatch, RetrievalConfig, RetrievalData, RetrievalModel, Status, UpdateRule,
};

fn ctx() -> Context {
    Context::new(&ContextConfig::default().num_threads(1).seed(5)).expect("context")
}

fn config(num_keys: i64) -> RetrievalConfig {
    RetrievalConfig::default().num_keys(num_keys).d_head(16)
}

/// A scratch file in the system temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let dir = std::env::temp_dir();
        TempFile(dir.join(format!("fwp-rust-{}-{name}", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn config_defaults_and_readback() {
    let c = RetrievalConfig::default();
    assert_eq!(c.get_setting(), 1);
    assert_eq!(c.get_num_keys(), 20);
    assert_eq!(c.get_d_head(), 64);
    assert_eq!(c.get_feature_map(), FeatureMap::Dpfp);
    assert_eq!(c.get_update_rule(), UpdateRule::Delta);
    let model = RetrievalModel::new(&ctx(), &config(6)).unwrap();
    assert_eq!(model.kind(), ModelKind::Retrieval);
    assert_eq!(model.num_keys(), 6);
    let back = model.config();
    assert_eq!(back.get_num_keys(), 6);
    assert_eq!(back.get_d_head(), 16);
    assert!(model.num_params() > 0);
    let err = RetrievalModel::new(&ctx(), &config(6).setting(3)).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("setting"), "{err}");
}

#[test]
fn data_generator_is_seeded_and_checked() {
    let mut a = RetrievalData::new(1, 8, 17).unwrap();
    let mut b = RetrievalData::new(1, 8, 17).unwrap();
    assert_eq!(a.seq_len(), 8);
    assert_eq!(a.kind(), DataKind::Retrieval);
    assert_eq!(RetrievalData::new(2, 8, 17).unwrap().seq_len(), 16);
    let ba = a.sample(3, 1).unwrap();
    assert_eq!(ba, b.sample(3, 1).unwrap());
    // Setting 1: the keys of a sequence are distinct and the query is one of them.
    for row in 0..3 {
        let keys = &ba.keys()[row * 8..][..8];
        let mut sorted = keys.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 8);
        let q = ba.queries()[row];
        let pos = keys.iter().position(|&k| k == q).expect("query is a key of its sequence");
        assert_eq!(ba.targets()[row], ba.values()[row * 8 + pos]);
    }
    // Evaluation batches query every distinct key.
    let eval = a.sample(2, 8).unwrap();
    assert_eq!(eval.num_real_queries(), 16);
    assert_eq!(RetrievalData::new(1, 1, 0).unwrap_err().status(), Status::InvalidArgument);
    assert_eq!(RetrievalData::new(5, 8, 0).unwrap_err().status(), Status::InvalidArgument);
    // The evaluation length: setting 2 takes any L (the paper evaluates on S), setting 1 only S.
    let mut short = RetrievalData::with_length(2, 8, 8, 17).unwrap();
    assert_eq!(short.seq_len(), 8);
    assert_eq!(short.sample(2, 8).unwrap().keys().len(), 2 * 8);
    assert_eq!(RetrievalData::with_length(2, 8, 0, 17).unwrap().seq_len(), 16);
    let err = RetrievalData::with_length(1, 8, 16, 17).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("num_pairs"), "{err}");
    assert_eq!(
        RetrievalBatch::new(1, 2, 1, vec![0, 1], vec![0], vec![0], vec![0]).unwrap_err().status(),
        Status::ShapeMismatch
    );
}

#[test]
fn forward_outputs_and_errors() {
    let mut model = RetrievalModel::new(&ctx(), &config(6)).unwrap();
    let mut data = RetrievalData::new(1, 6, 1).unwrap();
    let batch = data.sample(2, 6).unwrap();
    let (loss, outputs) = model.forward_with_outputs(&batch).unwrap();
    assert_eq!(outputs.len(), 2 * 6 * 6);
    assert!(loss.is_finite() && loss > 0.0);
    assert_eq!(model.forward(&batch).unwrap(), loss);
    // Ids out of range are rejected with a message naming them.
    let bad = RetrievalBatch::new(1, 6, 1, vec![0, 1, 2, 3, 4, 9], vec![0; 6], vec![0], vec![0]).unwrap();
    let err = model.forward(&bad).unwrap_err();
    assert!(matches!(err.status(), Status::InvalidArgument | Status::OutOfRange), "{err}");
    assert!(err.message().contains('9') || err.message().contains("key"), "{err}");
    model.forward(&batch).unwrap();
    model.backward().unwrap();
    assert_eq!(model.backward().unwrap_err().status(), Status::BadState);
}

#[test]
fn retrieval_training_reduces_the_loss() {
    let ctx = ctx();
    let mut model = RetrievalModel::new(&ctx, &config(5)).unwrap();
    let mut data = RetrievalData::new(1, 5, 2).unwrap();
    let mut eval_data = RetrievalData::new(1, 5, 3).unwrap();
    let eval = eval_data.sample(20, 5).unwrap();
    let initial = model.forward(&eval).unwrap();
    let mut opt = Optimizer::new(&mut model, &OptimizerConfig::default().learning_rate(3e-3)).unwrap();
    for _ in 0..300 {
        let batch = data.sample(32, 1).unwrap();
        opt.zero_grad().unwrap();
        let loss = opt.target_mut().forward(&batch).unwrap();
        assert!(loss.is_finite());
        opt.target_mut().backward().unwrap();
        opt.step().unwrap();
    }
    assert_eq!(opt.steps(), 300);
    let model = opt.target_mut();
    model.set_training(false).unwrap();
    let trained = model.forward(&eval).unwrap();
    assert!(trained < 0.7 * initial, "eval loss {initial} -> {trained}");
}

fn train_steps(opt: &mut Optimizer<'_, RetrievalModel>, data: &mut RetrievalData, steps: usize) {
    for _ in 0..steps {
        let batch = data.sample(8, 1).unwrap();
        opt.zero_grad().unwrap();
        opt.target_mut().forward(&batch).unwrap();
        opt.target_mut().backward().unwrap();
        opt.step().unwrap();
    }
}

fn all_params(model: &impl Model) -> Vec<Vec<f32>> {
    (0..model.num_params()).map(|i| model.param(i).unwrap()).collect()
}

#[test]
fn checkpoint_round_trip_resumes_exactly() {
    let file = TempFile::new("resume.safetensors");
    let ctx = ctx();
    let opt_config = OptimizerConfig::default().learning_rate(1e-2);

    let mut model = RetrievalModel::new(&ctx, &config(6)).unwrap();
    let mut data = RetrievalData::new(1, 6, 8).unwrap();
    let mut opt = Optimizer::new(&mut model, &opt_config).unwrap();
    train_steps(&mut opt, &mut data, 5);
    opt.save_checkpoint(&file.0, Some(&data), Some("{\"note\": \"rust test\"}")).unwrap();
    train_steps(&mut opt, &mut data, 3);
    let continued = all_params(opt.target());
    drop(opt);

    // A fresh model, optimizer and generator restored from the file continue identically.
    let mut model2 =
        RetrievalModel::new(&Context::new(&ContextConfig::default().seed(1234)).unwrap(), &config(6)).unwrap();
    let mut data2 = RetrievalData::new(1, 6, 999).unwrap();
    let mut opt2 = Optimizer::new(&mut model2, &opt_config).unwrap();
    opt2.load_checkpoint(&file.0, Some(&mut data2)).unwrap();
    assert_eq!(opt2.steps(), 5);
    train_steps(&mut opt2, &mut data2, 3);
    assert_eq!(all_params(opt2.target()), continued, "resumed training must match exactly");
    drop(opt2);

    // RetrievalModel::load rebuilds the model from the file alone; AnyModel::load
    // finds the kind in the file.
    let loaded = RetrievalModel::load(&ctx, &file.0).unwrap();
    assert_eq!(loaded.config().get_num_keys(), 6);
    let any = AnyModel::load(&ctx, &file.0).unwrap();
    assert_eq!(any.kind(), ModelKind::Retrieval);
    assert_eq!(all_params(&any), all_params(&loaded));
    let AnyModel::Retrieval(typed) = any else { panic!("a retrieval checkpoint loaded as another kind") };
    assert_eq!(typed.num_keys(), 6);
    let mut plain = RetrievalModel::new(&ctx, &config(6)).unwrap();
    plain.load_checkpoint(&file.0, None).unwrap();
    assert_eq!(all_params(&loaded), all_params(&plain));

    // A mismatching model is refused and left unchanged.
    let mut other = RetrievalModel::new(&ctx, &config(7)).unwrap();
    let before = all_params(&other);
    assert_eq!(other.load_checkpoint(&file.0, None).unwrap_err().status(), Status::Format);
    assert_eq!(all_params(&other), before);
}

#[test]
fn broken_checkpoints_are_rejected() {
    let ctx = ctx();
    let missing = RetrievalModel::load(&ctx, "/nonexistent/dir/model.safetensors").unwrap_err();
    assert_eq!(missing.status(), Status::Io, "{missing}");
    let file = TempFile::new("truncated.safetensors");
    let model = RetrievalModel::new(&ctx, &config(6)).unwrap();
    model.save_checkpoint(&file.0, None, None).unwrap();
    let bytes = std::fs::read(&file.0).unwrap();
    std::fs::write(&file.0, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(RetrievalModel::load(&ctx, &file.0).unwrap_err().status(), Status::Format);
    assert_eq!(AnyModel::load(&ctx, &file.0).unwrap_err().status(), Status::Format);
    let err = model.save_checkpoint("/nonexistent/dir/x.safetensors", None, None).unwrap_err();
    assert_eq!(err.status(), Status::Io, "{err}");
}

#[test]
fn parameters_of_a_model() {
    let mut model = RetrievalModel::new(&ctx(), &config(6)).unwrap();
    let params = model.params().unwrap();
    assert!(params.iter().any(|p| p.trainable));
    let i = params.iter().position(|p| p.trainable).unwrap();
    let values = vec![0.25f32; params[i].numel];
    model.set_param(i, &values).unwrap();
    assert_eq!(model.param(i).unwrap(), values);
    assert_eq!(model.param_index(&params[i].name).unwrap(), i);
    assert_eq!(model.set_param(i, &values[1..]).unwrap_err().status(), Status::ShapeMismatch);
    assert_eq!(model.param(params.len()).unwrap_err().status(), Status::OutOfRange);
}

/// The generic operations work the same through the concrete type, the
/// `AnyModel` enum and a generic function over `Model`.
fn zero_all_grads<M: Model>(model: &mut M) -> usize {
    model.zero_grad().unwrap();
    model.params().unwrap().len()
}

#[test]
fn generic_operations_through_the_trait_and_any_model() {
    let ctx = ctx();
    let mut model = RetrievalModel::new(&ctx, &config(5)).unwrap();
    let mut data = RetrievalData::new(1, 5, 4).unwrap();
    model.forward(&data.sample(2, 1).unwrap()).unwrap();
    model.backward().unwrap();
    let i = model.params().unwrap().iter().position(|p| p.trainable).unwrap();
    assert!(model.grad(i).unwrap().iter().any(|&g| g != 0.0));
    let n = zero_all_grads(&mut model);
    assert_eq!(n, model.num_params());
    assert!(model.grad(i).unwrap().iter().all(|&g| g == 0.0));

    // An AnyModel wraps the typed model; an optimizer trains it like any model.
    let before = model.param(i).unwrap();
    let mut any = AnyModel::from(model);
    assert_eq!(any.kind(), ModelKind::Retrieval);
    let mut opt = Optimizer::new(&mut any, &OptimizerConfig::default().learning_rate(0.1)).unwrap();
    match opt.target_mut() {
        AnyModel::Retrieval(m) => {
            m.forward(&data.sample(4, 1).unwrap()).unwrap();
        }
        other => panic!("expected a retrieval model, got {other:?}"),
    }
    opt.target_mut().backward().unwrap();
    opt.step().unwrap();
    assert_ne!(opt.target().param(i).unwrap(), before, "the step must change the parameter");
    drop(opt);
    let model = any.into_retrieval().expect("still a retrieval model");
    assert_eq!(model.config().get_num_keys(), 5);
}
