//! Trains the paper's associative-retrieval model (section 6.1) until the
//! stopping rule: Adam (lr 1e-3), batch 32, evaluation every 100 steps on 20
//! fresh sequences queried with every distinct key; stop when the evaluation
//! loss is <= 0.001, after 11 evaluations without improvement, or at the step
//! limit.
//!
//!     cargo run --release --example retrieval -- [--num-keys 10] [--setting 1]
//!         [--feature-map dpfp|elu|favor|softmax] [--update delta|sum]
//!         [--seed 1] [--max-steps 100000] [--checkpoint FILE]

use std::process::ExitCode;
use std::time::Instant;

use fwp::{
    Context, ContextConfig, FeatureMap, Model, Optimizer, OptimizerConfig, RetrievalConfig, RetrievalData,
    RetrievalModel, UpdateRule,
};

const BATCH: usize = 32;
const EVAL_EVERY: u64 = 100;
const EVAL_SEQUENCES: usize = 20;
const MAX_QUERIES: usize = 200;
const TARGET_LOSS: f32 = 1e-3;
const PATIENCE: u32 = 11;

struct Args {
    num_keys: usize,
    setting: i32,
    feature_map: FeatureMap,
    update_rule: UpdateRule,
    seed: u64,
    max_steps: u64,
    checkpoint: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        num_keys: 10,
        setting: 1,
        feature_map: FeatureMap::Dpfp,
        update_rule: UpdateRule::Delta,
        seed: 1,
        max_steps: 100_000,
        checkpoint: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--num-keys" => args.num_keys = value()?.parse().map_err(|e| format!("--num-keys: {e}"))?,
            "--setting" => args.setting = value()?.parse().map_err(|e| format!("--setting: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--max-steps" => args.max_steps = value()?.parse().map_err(|e| format!("--max-steps: {e}"))?,
            "--checkpoint" => args.checkpoint = Some(value()?),
            "--feature-map" => {
                args.feature_map = match value()?.as_str() {
                    "dpfp" => FeatureMap::Dpfp,
                    "elu" => FeatureMap::Elu,
                    "favor" => FeatureMap::Favor,
                    "softmax" => FeatureMap::Softmax,
                    other => return Err(format!("unknown feature map '{other}'")),
                }
            }
            "--update" => {
                args.update_rule = match value()?.as_str() {
                    "delta" => UpdateRule::Delta,
                    "sum" => UpdateRule::Sum,
                    other => return Err(format!("unknown update rule '{other}'")),
                }
            }
            "-h" | "--help" => {
                return Err("usage: retrieval [--num-keys N] [--setting 1|2] [--feature-map dpfp|elu|favor|softmax] \
                            [--update delta|sum] [--seed N] [--max-steps N] [--checkpoint FILE]"
                    .to_string())
            }
            other => return Err(format!("unknown argument '{other}' (try --help)")),
        }
    }
    Ok(args)
}

fn run(args: &Args) -> fwp::Result<f32> {
    let ctx = Context::new(&ContextConfig::default().seed(args.seed))?;
    let mut config = RetrievalConfig::default()
        .setting(args.setting)
        .num_keys(args.num_keys as i64)
        .feature_map(args.feature_map)
        .update_rule(args.update_rule);
    // The paper's sum-rule setup normalises the attention instead of the features.
    if args.update_rule == UpdateRule::Sum || args.feature_map == FeatureMap::Softmax {
        config = config.sum_normalize(false).attn_normalize(args.feature_map != FeatureMap::Softmax);
    }
    let mut model = RetrievalModel::new(&ctx, &config)?;
    let mut train_data = RetrievalData::new(args.setting, args.num_keys, args.seed)?;
    // Evaluation uses fresh sequences from a generator of its own.
    let mut eval_data = RetrievalData::new(args.setting, args.num_keys, args.seed.wrapping_add(1_000_003))?;
    let queries = args.num_keys.min(MAX_QUERIES);
    let params: usize = model.params()?.iter().filter(|p| p.trainable).map(|p| p.numel).sum();
    println!(
        "retrieval: setting {}, S = {}, L = {}, {:?} + {:?}, {} trainable parameters",
        args.setting,
        args.num_keys,
        train_data.seq_len(),
        args.feature_map,
        args.update_rule,
        params
    );

    let mut opt = Optimizer::new(&mut model, &OptimizerConfig::default().learning_rate(1e-3))?;
    let start = Instant::now();
    let mut best = f32::INFINITY;
    let mut since_best = 0u32;
    let mut train_loss_sum = 0f64;
    let mut last_eval = f32::INFINITY;
    while opt.steps() < args.max_steps {
        let batch = train_data.sample(BATCH, 1)?;
        opt.zero_grad()?;
        train_loss_sum += opt.target_mut().forward(&batch)? as f64;
        opt.target_mut().backward()?;
        opt.step()?;

        let step = opt.steps();
        if step % EVAL_EVERY != 0 {
            continue;
        }
        let eval = eval_data.sample(EVAL_SEQUENCES, queries)?;
        let model = opt.target_mut();
        model.set_training(false)?;
        last_eval = model.forward(&eval)?;
        model.set_training(true)?;
        if last_eval < best {
            best = last_eval;
            since_best = 0;
        } else {
            since_best += 1;
        }
        println!(
            "step {step:6}  train {:.5}  eval {last_eval:.5}  best {best:.5}  ({:.1}s)",
            train_loss_sum / EVAL_EVERY as f64,
            start.elapsed().as_secs_f64()
        );
        train_loss_sum = 0.0;
        if last_eval <= TARGET_LOSS {
            println!("stopped: eval loss {last_eval:.5} <= {TARGET_LOSS}");
            break;
        }
        if since_best >= PATIENCE {
            println!("stopped: {PATIENCE} evaluations without improvement");
            break;
        }
    }
    if opt.steps() >= args.max_steps {
        println!("stopped: step limit {}", args.max_steps);
    }
    if let Some(path) = &args.checkpoint {
        opt.save_checkpoint(path, Some(&train_data), Some("{\"example\": \"rust retrieval\"}"))?;
        println!("checkpoint: {path}");
    }
    println!("final eval loss {last_eval:.5} (best {best:.5}) after {} steps", opt.steps());
    Ok(last_eval)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
