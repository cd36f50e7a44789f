//! Data-parallel training of the associative-retrieval model over N ranks:
//! every rank holds a replica, draws its shard of each global batch
//! (`DataSource::set_shard`), and the ranks average their gradients through
//! fwp's callback engine before every SGD step, so that all replicas take the
//! same step one process would take on the whole batch. Rank 0 prints the
//! global loss of every step; the example exits non-zero if the replicas end
//! different or the loss does not fall.
//!
//!     cargo run --release --example distributed -- [--ranks 2] [--steps 300]
//!         [--batch 32] [--num-keys 6] [--seed 1]
//!
//! The ranks here are threads of one process, and the all-reduce is an
//! in-process stand-in (`fwp::distributed::ThreadGroup`, a mutex and a
//! condition variable): no MPI crate is available offline in this project's
//! build. In a real job each rank is a process started by `mpirun -n N`, and
//! the same closure calls the `mpi` crate instead; since the buffer must be
//! summed in place and `all_reduce_into` takes separate send and receive
//! buffers, it copies the send side first:
//!
//! ```text
//! let universe = mpi::initialize().unwrap();
//! let world = universe.world();
//! let (rank, size) = (world.rank(), world.size());
//! let config = DistConfig::callback(rank, size, move |buffer| {
//!     match buffer {
//!         AllReduceBuffer::F32(b) => { let send = b.to_vec(); world.all_reduce_into(&send[..], b, SystemOperation::sum()) }
//!         AllReduceBuffer::F64(b) => { let send = b.to_vec(); world.all_reduce_into(&send[..], b, SystemOperation::sum()) }
//!     }
//!     Ok(())
//! });
//! ```
//!
//! (a libfwp built with MPI needs no closure at all: `DistConfig::default()`
//! is its MPI engine). Everything else below stays as it is.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use fwp::distributed::{engine_available, AllReduceBuffer, Dist, DistConfig, Engine, ThreadGroup};
use fwp::{
    Context, ContextConfig, DataSource, Model, Optimizer, OptimizerConfig, OptimizerKind, RetrievalConfig,
    RetrievalData, RetrievalModel,
};

struct Args {
    ranks: usize,
    steps: usize,
    batch: usize,
    num_keys: usize,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { ranks: 2, steps: 300, batch: 32, num_keys: 6, seed: 1 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--ranks" => args.ranks = value()?.parse().map_err(|e| format!("--ranks: {e}"))?,
            "--steps" => args.steps = value()?.parse().map_err(|e| format!("--steps: {e}"))?,
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--num-keys" => args.num_keys = value()?.parse().map_err(|e| format!("--num-keys: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: distributed [--ranks N] [--steps N] [--batch B] [--num-keys S] [--seed N]".into())
            }
            other => return Err(format!("unknown argument '{other}' (try --help)")),
        }
    }
    if args.ranks == 0 || args.steps < 20 || args.batch == 0 || args.batch % args.ranks != 0 {
        return Err(format!(
            "need --ranks >= 1, --steps >= 20 and a --batch that is a multiple of --ranks (got {}, {}, {})",
            args.ranks, args.steps, args.batch
        ));
    }
    Ok(args)
}

/// What a rank ends with.
struct Outcome {
    losses: Vec<f64>,
    params: Vec<Vec<f32>>,
}

/// One rank's training loop; it sums through `group`, the in-process all-reduce.
fn train_rank(rank: usize, args: &Args, group: Arc<ThreadGroup>) -> fwp::Result<Outcome> {
    // Each rank has its own context (on a GPU machine: its own device).
    let ctx = Context::new(&ContextConfig::default().num_threads(1).seed(args.seed))?;
    let config = DistConfig::callback(rank as i32, args.ranks as i32, move |buffer: AllReduceBuffer<'_>| {
        group.all_reduce(rank, buffer)
    });
    let mut dist = Dist::new(&ctx, config)?;
    let mut model = RetrievalModel::new(&ctx, &RetrievalConfig::default().num_keys(args.num_keys as i64))?;
    // Rank 0's parameters everywhere, whatever each rank initialised.
    dist.sync_model(&mut model)?;
    // The same generator on every rank; each keeps its rows of every global batch.
    let mut data = RetrievalData::new(1, args.num_keys, args.seed)?;
    data.set_shard(rank, args.ranks)?;

    let mut opt = Optimizer::new(&mut model, &OptimizerConfig::default().kind(OptimizerKind::Sgd).learning_rate(1.0))?;
    let mut losses = Vec::with_capacity(args.steps);
    for step in 1..=args.steps {
        let batch = data.sample(args.batch, 1)?;
        opt.zero_grad()?;
        let loss = opt.target_mut().forward(&batch)?;
        opt.target_mut().backward()?;
        // Equal shards: weight 1 on every rank, the plain mean.
        dist.average_gradients(opt.target_mut(), 1.0)?;
        opt.step()?;
        let mut global = [loss as f64];
        dist.sum(&mut global)?;
        let mean = global[0] / args.ranks as f64;
        losses.push(mean);
        if rank == 0 && (step <= 5 || step % 25 == 0 || step == args.steps) {
            println!("step {step:5}  loss {mean:.6}");
        }
    }
    drop(opt);
    let params = (0..model.num_params()).map(|i| model.param(i)).collect::<fwp::Result<_>>()?;
    dist.barrier()?;
    Ok(Outcome { losses, params })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    assert!(engine_available(Engine::Callback));
    println!(
        "distributed: {} ranks (threads), global batch {} ({} per rank), S = {}, in-process all-reduce",
        args.ranks,
        args.batch,
        args.batch / args.ranks,
        args.num_keys
    );
    let group = Arc::new(ThreadGroup::new(args.ranks).with_timeout(Duration::from_secs(300)));
    let outcomes: Vec<fwp::Result<Outcome>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.ranks)
            .map(|rank| {
                let (group, args) = (Arc::clone(&group), &args);
                s.spawn(move || {
                    let outcome = train_rank(rank, args, Arc::clone(&group));
                    // A rank that fails releases the others from their wait.
                    if let Err(e) = &outcome {
                        group.abort(&format!("rank {rank} failed: {e}"));
                    }
                    outcome
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a rank panicked")).collect()
    });
    let mut ok = Vec::new();
    for (rank, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(o) => ok.push(o),
            Err(e) => {
                eprintln!("rank {rank}: error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let differing: Vec<usize> = (1..ok.len()).filter(|&r| ok[r].params != ok[0].params).collect();
    if !differing.is_empty() {
        eprintln!("FAILED: the replicas of ranks {differing:?} differ from rank 0's");
        return ExitCode::FAILURE;
    }
    let window = 10;
    let losses = &ok[0].losses;
    let first = losses[..window].iter().sum::<f64>() / window as f64;
    let last = losses[losses.len() - window..].iter().sum::<f64>() / window as f64;
    println!(
        "replicas equal on all {} ranks; mean loss of the first {window} steps {first:.6}, of the last {last:.6}",
        args.ranks
    );
    if last >= 0.9 * first {
        eprintln!("FAILED: the loss did not fall");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
