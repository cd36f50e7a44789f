//! Trains a small word-level language model (paper section 6.3: linear
//! attention with the delta rule) on a text file, saves a checkpoint and the
//! tokenizer, loads both back and generates a continuation of a prompt.
//!
//!     cargo run --release --example lm -- [TEXT_FILE] [--steps 200] [--out-dir DIR]
//!         [--prompt "the cat"] [--seed 1]
//!
//! Without TEXT_FILE a small generated corpus is written to the output
//! directory (default: the system temporary directory) and used. The program
//! fails if training does not lower the perplexity or the reloaded model
//! scores differently from the saved one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use fwp::{
    Context, ContextConfig, EvalMode, LanguageModel, LmConfig, Model, Optimizer, OptimizerConfig, SamplingConfig,
    TokenData, TokenDataConfig, Tokenizer, WordTokenizerConfig,
};

const BATCH: usize = 8;
const SEGMENT: usize = 32;

struct Args {
    text: Option<PathBuf>,
    steps: u64,
    out_dir: PathBuf,
    prompt: String,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args =
        Args { text: None, steps: 200, out_dir: std::env::temp_dir(), prompt: "the cat".to_string(), seed: 1 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--steps" => args.steps = value()?.parse().map_err(|e| format!("--steps: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--out-dir" => args.out_dir = PathBuf::from(value()?),
            "--prompt" => args.prompt = value()?,
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}")),
            path if args.text.is_none() => args.text = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    if args.steps == 0 {
        return Err("--steps must be >= 1".to_string());
    }
    Ok(args)
}

/// Writes a corpus of simple sentences drawn by a fixed linear congruential
/// generator, so that a small model learns it in a few hundred steps.
fn write_demo_corpus(path: &Path) -> std::io::Result<()> {
    const SUBJECTS: [&str; 4] = ["the cat", "a dog", "the bird", "my friend"];
    const VERBS: [&str; 3] = ["sat on", "looked at", "ran to"];
    const OBJECTS: [&str; 4] = ["the mat", "a tree", "the house", "the river"];
    let mut state = 2021u64;
    let mut next = |n: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize % n
    };
    let mut text = String::new();
    for _ in 0..2000 {
        let (s, v, o) = (next(SUBJECTS.len()), next(VERBS.len()), next(OBJECTS.len()));
        text.push_str(&format!("{} {} {} .\n", SUBJECTS[s], VERBS[v], OBJECTS[o]));
    }
    std::fs::write(path, text)
}

fn run(args: Args) -> fwp::Result<()> {
    let text_path = match &args.text {
        Some(path) => path.clone(),
        None => {
            let path = args.out_dir.join("fwp-lm-example.txt");
            write_demo_corpus(&path)
                .map_err(|e| fwp::Error::new(fwp::Status::Io, format!("writing {}: {e}", path.display())))?;
            path
        }
    };
    let tokens_path = args.out_dir.join("fwp-lm-example.tokens");
    let tokenizer_path = args.out_dir.join("fwp-lm-example.fwptok");
    let checkpoint_path = args.out_dir.join("fwp-lm-example.safetensors");

    // Vocabulary and token file.
    let tokenizer = Tokenizer::train_word(&[&text_path], &WordTokenizerConfig::default().max_size(10_000))?;
    let num_tokens = tokenizer.encode_file(&text_path, &tokens_path)?;
    println!("{}: {num_tokens} tokens, vocabulary {}", text_path.display(), tokenizer.vocab_size());

    // A small model: 2 layers of linear attention with the delta rule.
    let ctx = Context::new(&ContextConfig::default().seed(args.seed))?;
    let config = LmConfig::default()
        .vocab_size(tokenizer.vocab_size() as i64)
        .num_layers(2)
        .d_ff(128)
        .dropout(0.0)
        .map_attention(|a| a.d_model(64).num_heads(4).d_head(16));
    let mut model = LanguageModel::new(&ctx, &config)?;
    let mut data = TokenData::new(
        &tokens_path,
        &TokenDataConfig::default().batch_size(BATCH as i64).segment_length(SEGMENT as i64),
    )?;
    let eval_stream = fwp::read_token_file(&tokens_path, 0, num_tokens.min(1000))?;
    let before = model.evaluate(&eval_stream, EvalMode::Carry, SEGMENT)?;

    let started = Instant::now();
    let mut opt = Optimizer::new(&mut model, &OptimizerConfig::default().learning_rate(3e-3).clip_grad_norm(1.0))?;
    let mut window = 0.0;
    for step in 1..=args.steps {
        let batch = data.next_batch()?;
        opt.zero_grad()?;
        window += opt.target_mut().forward(&batch.inputs, &batch.targets, batch.batch, batch.length)?;
        opt.target_mut().backward()?;
        opt.step()?;
        if step % 50 == 0 || step == args.steps {
            let n = if step % 50 == 0 { 50 } else { step % 50 };
            println!("step {step:5}  train loss {:.3}  ({:.1}s)", window / n as f64, started.elapsed().as_secs_f64());
            window = 0.0;
        }
    }
    drop(opt);
    let after = model.evaluate(&eval_stream, EvalMode::Carry, SEGMENT)?;
    println!(
        "perplexity on the first {} tokens: {:.2} -> {:.2}",
        eval_stream.len(),
        before.perplexity(),
        after.perplexity()
    );
    if after.perplexity() >= before.perplexity() {
        return Err(fwp::Error::new(fwp::Status::Internal, "training did not lower the perplexity"));
    }

    // Save, then load into a fresh model as another program would.
    model.save_checkpoint(&checkpoint_path, Some(&data), Some("examples/lm.rs"))?;
    tokenizer.save(&tokenizer_path)?;
    let tokenizer = Tokenizer::load(&tokenizer_path)?;
    let mut loaded = LanguageModel::load(&ctx, &checkpoint_path)?;
    let check = loaded.evaluate(&eval_stream, EvalMode::Carry, SEGMENT)?;
    if check != after {
        return Err(fwp::Error::new(fwp::Status::Internal, "the reloaded model scores differently"));
    }

    let prompt = tokenizer.encode(&args.prompt, false)?;
    if prompt.is_empty() {
        return Err(fwp::Error::new(fwp::Status::InvalidArgument, "the prompt has no words"));
    }
    let mut state = loaded.new_state(1)?;
    let greedy = loaded.generate(&mut state, &prompt, 12, &SamplingConfig::greedy(), &[])?;
    println!("greedy:  {} | {}", args.prompt, tokenizer.decode(&greedy)?.replace('\n', " / "));
    state.reset()?;
    let sampler = SamplingConfig::default().temperature(0.8).top_k(10).seed(args.seed);
    let sampled = loaded.generate(&mut state, &prompt, 12, &sampler, &[])?;
    println!("sampled: {} | {}", args.prompt, tokenizer.decode(&sampled)?.replace('\n', " / "));
    println!("saved {} and {}", checkpoint_path.display(), tokenizer_path.display());
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("lm: {message}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lm: {err}");
            ExitCode::FAILURE
        }
    }
}
