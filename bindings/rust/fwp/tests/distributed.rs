//! Tests of data-parallel training (`fwp::distributed`) against the freshly
//! built libfwp: argument errors, a one-rank group, failing and panicking
//! all-reduce closures, and two ranks on two threads summing through an
//! in-process all-reduce ([`ThreadGroup`]) that must follow one process
//! training on the whole batch.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fwp::distributed::{engine_available, AllReduceBuffer, Dist, DistConfig, Engine, ThreadGroup};
use fwp::{
    Context, ContextConfig, DataSource, LanguageModel, LmConfig, Model, Optimizer, OptimizerConfig, OptimizerKind,
    RetrievalConfig, RetrievalData, RetrievalModel, Status,
};

fn ctx(seed: u64) -> Context {
    Context::new(&ContextConfig::default().num_threads(1).seed(seed)).expect("context")
}

fn retrieval_model(ctx: &Context) -> RetrievalModel {
    RetrievalModel::new(ctx, &RetrievalConfig::default().num_keys(8).d_head(16)).expect("retrieval model")
}

/// Every trainable gradient of a model, concatenated.
fn grads(model: &impl Model) -> Vec<f32> {
    (0..model.num_params())
        .filter(|&i| model.param_info(i).unwrap().trainable)
        .flat_map(|i| model.grad(i).unwrap())
        .collect()
}

/// Every parameter of a model, concatenated.
fn params(model: &impl Model) -> Vec<f32> {
    (0..model.num_params()).flat_map(|i| model.param(i).unwrap()).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Breaks the group if its rank's thread panics, so the other ranks stop
/// waiting instead of hanging the test.
struct AbortOnPanic(Arc<ThreadGroup>);

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort("another rank panicked");
        }
    }
}

/// Runs `body(rank, config)` on one thread per rank of a [`ThreadGroup`] and
/// returns the results in rank order.
fn on_ranks<T: Send>(world_size: usize, body: impl Fn(usize, DistConfig) -> T + Sync) -> Vec<T> {
    let group = Arc::new(ThreadGroup::new(world_size).with_timeout(Duration::from_secs(120)));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..world_size)
            .map(|rank| {
                let (group, body) = (Arc::clone(&group), &body);
                s.spawn(move || {
                    let _guard = AbortOnPanic(Arc::clone(&group));
                    body(rank, group.config(rank))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a rank panicked")).collect()
    })
}

#[test]
fn argument_errors() {
    let ctx = ctx(1);
    assert!(engine_available(Engine::Callback));
    assert!(!engine_available(Engine::Other(99)));
    if !engine_available(Engine::Mpi) {
        assert_eq!(Dist::new(&ctx, DistConfig::default()).unwrap_err().status(), Status::Unsupported);
    }
    let identity = || |_: AllReduceBuffer<'_>| Ok(());
    let no_closure = DistConfig::default().engine(Engine::Callback).world_size(1);
    assert!(!no_closure.has_allreduce());
    // (config, the field the message names, the statuses fwp.h allows for it)
    let mut bad = vec![
        (no_closure, "allreduce", [Status::NullPointer, Status::InvalidArgument]),
        (DistConfig::callback(2, 2, identity()), "rank", [Status::OutOfRange, Status::InvalidArgument]),
        (DistConfig::callback(-1, 2, identity()), "rank", [Status::OutOfRange, Status::InvalidArgument]),
        (DistConfig::callback(0, 0, identity()), "world_size", [Status::InvalidArgument; 2]),
        (DistConfig::callback(0, 1, identity()).bucket_elements(0), "bucket_elements", [Status::InvalidArgument; 2]),
        (
            DistConfig::callback(0, 1, identity()).timeout_seconds(f64::NAN),
            "timeout_seconds",
            [Status::InvalidArgument; 2],
        ),
    ];
    if engine_available(Engine::Mpi) {
        // The callback engine's fields on the MPI engine, refused before MPI starts.
        bad.push((DistConfig::default().allreduce(identity()), "allreduce", [Status::InvalidArgument; 2]));
        bad.push((DistConfig::default().rank(1).world_size(2), "rank", [Status::InvalidArgument; 2]));
    }
    for (config, field, statuses) in bad {
        let shown = format!("{config:?}");
        let err = Dist::new(&ctx, config).unwrap_err();
        assert!(statuses.contains(&err.status()), "{shown}: {err}");
        assert!(err.message().contains(field), "{shown}: {err}");
    }

    let mut dist = Dist::new(&ctx, DistConfig::callback(0, 1, identity())).unwrap();
    assert_eq!(dist.sum(&mut []).unwrap_err().status(), Status::InvalidArgument);
    let mut model = retrieval_model(&ctx);
    for weight in [-1.0, f64::NAN, f64::INFINITY, 0.0] {
        // 0 on the only rank: the weights sum to 0.
        let err = dist.average_gradients(&mut model, weight).unwrap_err();
        assert_eq!(err.status(), Status::InvalidArgument, "weight {weight}: {err}");
    }
    let other_ctx = crate::ctx(2);
    let mut foreign = retrieval_model(&other_ctx);
    assert_eq!(dist.sync_model(&mut foreign).unwrap_err().status(), Status::ContextMismatch);
    assert_eq!(dist.average_gradients(&mut foreign, 1.0).unwrap_err().status(), Status::ContextMismatch);
    // Argument errors do not break the group.
    dist.barrier().unwrap();
}

#[test]
fn one_rank_averaging_is_the_identity() {
    let ctx = ctx(3);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let config = DistConfig::callback(0, 1, move |buffer| {
        assert!(!buffer.is_empty());
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
    .bucket_elements(100);
    let mut dist = Dist::new(&ctx, config).unwrap();
    assert_eq!((dist.rank(), dist.world_size()), (0, 1));

    let mut model = retrieval_model(&ctx);
    let before = params(&model);
    dist.sync_model(&mut model).unwrap();
    assert_eq!(params(&model), before);

    let mut data = RetrievalData::new(1, 8, 5).unwrap();
    let batch = data.sample(6, 1).unwrap();
    model.forward(&batch).unwrap();
    model.backward().unwrap();
    let g = grads(&model);
    assert!(g.iter().any(|&x| x != 0.0));
    let total = dist.average_gradients(&mut model, 2.0).unwrap();
    assert_eq!(total, 2.0);
    assert_eq!(grads(&model), g, "2 g / 2 is g");

    let mut values = [0.25, -3.0, 1e300];
    dist.sum(&mut values).unwrap();
    assert_eq!(values, [0.25, -3.0, 1e300]);
    dist.barrier().unwrap();
    let _ = calls.load(Ordering::SeqCst); // a group of one may skip its closure
}

#[test]
fn a_failing_or_panicking_closure_breaks_the_group() {
    for panics in [false, true] {
        let ctx = ctx(4);
        let fail = Arc::new(AtomicBool::new(false));
        let largest = Arc::new(AtomicUsize::new(0));
        let (flag, seen) = (Arc::clone(&fail), Arc::clone(&largest));
        // Rank 0 of two whose partner holds the same numbers: the sums are the doubles.
        let config = DistConfig::callback(0, 2, move |buffer| {
            if flag.load(Ordering::SeqCst) {
                if panics {
                    panic!("boom in the all-reduce");
                }
                return Err("the link to rank 1 is down".to_string());
            }
            seen.fetch_max(buffer.len(), Ordering::SeqCst);
            match buffer {
                AllReduceBuffer::F32(b) => b.iter_mut().for_each(|x| *x *= 2.0),
                AllReduceBuffer::F64(b) => b.iter_mut().for_each(|x| *x *= 2.0),
            }
            Ok(())
        })
        .bucket_elements(100);
        let mut dist = Dist::new(&ctx, config).unwrap();
        assert_eq!((dist.rank(), dist.world_size()), (0, 2));
        // (No sync_model: a broadcast is a sum to which the other ranks add zeros, which a
        // partner that only doubles does not imitate.)
        let mut model = retrieval_model(&ctx);
        let batch = RetrievalData::new(1, 8, 6).unwrap().sample(4, 1).unwrap();
        model.forward(&batch).unwrap();
        model.backward().unwrap();
        let g = grads(&model);
        largest.store(0, Ordering::SeqCst);
        assert_eq!(dist.average_gradients(&mut model, 1.0).unwrap(), 2.0);
        assert!(max_abs_diff(&grads(&model), &g) <= 1e-6, "the mean of two equal gradients");
        let largest = largest.load(Ordering::SeqCst);
        assert!((1..=100).contains(&largest), "an all-reduce of {largest} elements with buckets of 100");
        let mut values = [1.5];
        dist.sum(&mut values).unwrap();
        assert_eq!(values, [3.0]);

        fail.store(true, Ordering::SeqCst);
        let err = dist.average_gradients(&mut model, 1.0).unwrap_err();
        assert_eq!(err.status(), Status::Distributed, "{err}");
        let why = if panics { "panicked: boom in the all-reduce" } else { "the link to rank 1 is down" };
        assert!(err.message().contains(why), "{err}");

        // The group is broken now, even when the closure would work again.
        fail.store(false, Ordering::SeqCst);
        assert_eq!(dist.sum(&mut [1.0]).unwrap_err().status(), Status::Distributed);
        assert_eq!(dist.barrier().unwrap_err().status(), Status::Distributed);
        assert_eq!(dist.sync_model(&mut model).unwrap_err().status(), Status::Distributed);
    }

    // abort() of the callback engine marks the group broken and returns.
    let ctx = ctx(5);
    let mut dist = Dist::new(&ctx, DistConfig::callback(0, 1, |_| Ok(()))).unwrap();
    dist.abort(3);
    assert_eq!(dist.barrier().unwrap_err().status(), Status::Distributed);
}

const GLOBAL_BATCH: usize = 8;
const STEPS: usize = 4;

/// SGD keeps the comparison with one process tight: Adam's division by
/// sqrt(v) would magnify the rounding of tiny gradient entries.
fn sgd() -> OptimizerConfig {
    OptimizerConfig::default().kind(OptimizerKind::Sgd).learning_rate(0.5)
}

/// Per-step losses and the final parameters of a retrieval model trained on
/// the whole batch by one process, or on one shard of it by a rank.
fn train_retrieval(rank_of: Option<(usize, DistConfig)>) -> (Vec<f64>, Vec<f32>) {
    let ctx = ctx(7);
    let mut model = retrieval_model(&ctx);
    let mut data = RetrievalData::new(1, 8, 11).unwrap();
    let mut dist = rank_of.map(|(rank, config)| {
        let dist = Dist::new(&ctx, config).unwrap();
        assert_eq!(dist.rank(), rank);
        data.set_shard(rank, dist.world_size()).unwrap();
        assert_eq!(data.shard().unwrap(), (rank, dist.world_size()));
        dist
    });
    if let Some(dist) = dist.as_mut() {
        dist.sync_model(&mut model).unwrap();
    }
    let mut losses = Vec::new();
    let mut opt = Optimizer::new(&mut model, &sgd()).unwrap();
    for _ in 0..STEPS {
        let batch = data.sample(GLOBAL_BATCH, 1).unwrap();
        opt.zero_grad().unwrap();
        let loss = opt.target_mut().forward(&batch).unwrap() as f64;
        opt.target_mut().backward().unwrap();
        let mut global = [loss];
        if let Some(dist) = dist.as_mut() {
            assert_eq!(batch.batch_size(), GLOBAL_BATCH / dist.world_size());
            assert_eq!(dist.average_gradients(opt.target_mut(), 1.0).unwrap(), dist.world_size() as f64);
            dist.sum(&mut global).unwrap();
            global[0] /= dist.world_size() as f64;
        }
        losses.push(global[0]);
        opt.step().unwrap();
    }
    drop(opt);
    (losses, params(&model))
}

#[test]
fn two_ranks_follow_one_process_retrieval() {
    let (want_losses, want_params) = train_retrieval(None);
    let ranks = on_ranks(2, |rank, config| train_retrieval(Some((rank, config))));
    assert_eq!(ranks[0].1, ranks[1].1, "the replicas differ");
    assert_eq!(ranks[0].0, ranks[1].0, "dist.sum gives every rank the same numbers");
    let diff = max_abs_diff(&ranks[0].1, &want_params);
    assert!(diff <= 1e-5, "2 ranks end {diff} away from one process");
    for (got, want) in ranks[0].0.iter().zip(&want_losses) {
        assert!((got - want).abs() <= 1e-5, "loss {got} vs {want}");
    }
    assert!(want_params != params(&retrieval_model(&ctx(7))), "training changed the parameters");
}

#[test]
fn a_shard_is_its_rows_of_the_global_batch() {
    let mut whole = RetrievalData::new(1, 8, 21).unwrap();
    let mut shards: Vec<RetrievalData> = (0..4).map(|_| RetrievalData::new(1, 8, 21).unwrap()).collect();
    for (i, shard) in shards.iter_mut().enumerate() {
        shard.set_shard(i, 4).unwrap();
    }
    assert_eq!(whole.shard().unwrap(), (0, 1));
    assert_eq!(whole.set_shard(4, 4).unwrap_err().status(), Status::InvalidArgument);
    assert_eq!(whole.set_shard(0, 0).unwrap_err().status(), Status::InvalidArgument);
    assert_eq!(whole.shard().unwrap(), (0, 1), "a failed set_shard changes nothing");
    assert_eq!(shards[1].sample(6, 1).unwrap_err().status(), Status::InvalidArgument, "6 rows in 4 shards");
    for _ in 0..2 {
        let batch = whole.sample(8, 1).unwrap();
        for (i, shard) in shards.iter_mut().enumerate() {
            let part = shard.sample(8, 1).unwrap();
            assert_eq!(part.batch_size(), 2);
            let l = part.seq_len();
            assert_eq!(part.keys(), &batch.keys()[2 * i * l..2 * (i + 1) * l]);
            assert_eq!(part.values(), &batch.values()[2 * i * l..2 * (i + 1) * l]);
            assert_eq!(part.queries(), &batch.queries()[2 * i..2 * (i + 1)]);
            assert_eq!(part.targets(), &batch.targets()[2 * i..2 * (i + 1)]);
        }
    }
}

const VOCAB: usize = 11;
const LENGTH: usize = 6;

fn lm_config() -> LmConfig {
    LmConfig::default()
        .vocab_size(VOCAB as i64)
        .num_layers(2)
        .d_ff(32)
        .dropout(0.0)
        .seed(13)
        .map_attention(|a| a.d_model(16).num_heads(2).d_head(8))
}

/// Segment `step` of `GLOBAL_BATCH` streams (rows), the same every run.
fn tokens(step: usize) -> (Vec<i32>, Vec<i32>) {
    let id = |row: usize, t: usize| ((row * 7 + t * 3 + step * 5 + (row * t) % 4) % VOCAB) as i32;
    let inputs = (0..GLOBAL_BATCH).flat_map(|r| (0..LENGTH).map(move |t| id(r, t))).collect();
    let targets = (0..GLOBAL_BATCH).flat_map(|r| (0..LENGTH).map(move |t| id(r, t + 1))).collect();
    (inputs, targets)
}

/// Losses, final parameters and the gathered memory (the fast weights
/// carried across segments, all rows) of a language model trained with
/// carried state by one process or by a rank on its rows.
fn train_lm(rank_of: Option<(usize, DistConfig)>) -> (Vec<f64>, Vec<f32>, Vec<f32>) {
    let ctx = ctx(8);
    let mut model = LanguageModel::new(&ctx, &lm_config()).unwrap();
    let mut dist = rank_of.map(|(_, config)| Dist::new(&ctx, config).unwrap());
    let (rank, world) = dist.as_ref().map_or((0, 1), |d| (d.rank(), d.world_size()));
    let rows = GLOBAL_BATCH / world;
    let mut state = model.new_state(rows).unwrap();
    if let Some(dist) = dist.as_mut() {
        dist.sync_model(&mut model).unwrap();
    }
    let mut losses = Vec::new();
    let mut opt = Optimizer::new(&mut model, &sgd()).unwrap();
    for step in 0..STEPS {
        let (inputs, targets) = tokens(step);
        let mine = rank * rows * LENGTH..(rank + 1) * rows * LENGTH;
        opt.zero_grad().unwrap();
        let loss = opt
            .target_mut()
            .forward_with_state(&mut state, &inputs[mine.clone()], &targets[mine], rows, LENGTH)
            .unwrap();
        opt.target_mut().backward().unwrap();
        let mut global = [loss];
        if let Some(dist) = dist.as_mut() {
            dist.average_gradients(opt.target_mut(), 1.0).unwrap();
            dist.sum(&mut global).unwrap();
            global[0] /= world as f64;
        }
        losses.push(global[0]);
        opt.step().unwrap();
    }
    drop(opt);
    let memory = match dist.as_mut() {
        Some(dist) => {
            let mut all = model.new_state(GLOBAL_BATCH).unwrap();
            dist.gather_state(&state, &mut all).unwrap();
            all
        }
        None => state,
    };
    let fast: Vec<f32> = (0..memory.num_layers().unwrap()).flat_map(|l| memory.get(l).unwrap().w).collect();
    (losses, params(&model), fast)
}

#[test]
fn two_ranks_follow_one_process_language_model() {
    let (want_losses, want_params, want_memory) = train_lm(None);
    let ranks = on_ranks(2, |rank, config| train_lm(Some((rank, config))));
    assert_eq!(ranks[0].1, ranks[1].1, "the replicas differ");
    assert_eq!(ranks[0].2, ranks[1].2, "every rank receives the whole gathered state");
    assert!(max_abs_diff(&ranks[0].1, &want_params) <= 1e-5);
    assert!(max_abs_diff(&ranks[0].2, &want_memory) <= 1e-5, "the gathered memory is the whole batch's");
    for (got, want) in ranks[0].0.iter().zip(&want_losses) {
        assert!((got - want).abs() <= 1e-5, "loss {got} vs {want}");
    }
    let fresh = LanguageModel::new(&ctx(8), &lm_config()).unwrap();
    assert!(want_params != params(&fresh), "training changed the parameters");
}
