//! Trains a tiny translation model (paper section 6.2: an encoder-decoder
//! Transformer with linear attention) on a dozen English -> Spanish sentence
//! pairs, then translates the English sentences back out of text.
//!
//!     cargo run --release --example translation -- [--steps 300] [--out-dir DIR] [--seed 1]
//!
//! The parallel text is written to the output directory (default: the system
//! temporary directory), one word-level tokenizer is built over both sides,
//! and the pair file feeds the training loop (Adam with the inverse
//! square-root schedule). The program fails unless greedy decoding and a beam
//! of 4 both translate every training sentence exactly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use fwp::{
    encode_pair_file, pair_special_ids, Context, ContextConfig, LrSchedule, Model, Optimizer, OptimizerConfig,
    PairData, PairDataConfig, PairEncodeConfig, SearchConfig, Seq2SeqConfig, Seq2SeqModel, Tokenizer,
    WordTokenizerConfig,
};

const PAIRS: [(&str, &str); 12] = [
    ("the cat sleeps", "el gato duerme"),
    ("the dog eats", "el perro come"),
    ("the cat eats fish", "el gato come pescado"),
    ("the dog drinks water", "el perro bebe agua"),
    ("i see the house", "yo veo la casa"),
    ("you see the dog", "tu ves el perro"),
    ("we eat bread", "nosotros comemos pan"),
    ("the house is big", "la casa es grande"),
    ("the water is cold", "el agua esta fria"),
    ("i drink cold water", "yo bebo agua fria"),
    ("the big dog sleeps", "el perro grande duerme"),
    ("you eat the bread", "tu comes el pan"),
];

struct Args {
    steps: u64,
    out_dir: PathBuf,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { steps: 300, out_dir: std::env::temp_dir(), seed: 1 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--steps" => args.steps = value()?.parse().map_err(|e| format!("--steps: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--out-dir" => args.out_dir = PathBuf::from(value()?),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    if args.steps == 0 {
        return Err("--steps must be >= 1".to_string());
    }
    Ok(args)
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> fwp::Error {
    fwp::Error::new(fwp::Status::Io, format!("writing {}: {e}", path.display()))
}

fn run(args: &Args) -> fwp::Result<()> {
    // The parallel text: two line-aligned files.
    let english_path = args.out_dir.join("fwp-translation-example.en");
    let spanish_path = args.out_dir.join("fwp-translation-example.es");
    let pair_path = args.out_dir.join("fwp-translation-example.pairs");
    let english: String = PAIRS.iter().map(|p| format!("{}\n", p.0)).collect();
    let spanish: String = PAIRS.iter().map(|p| format!("{}\n", p.1)).collect();
    std::fs::write(&english_path, english).map_err(|e| io_error(&english_path, e))?;
    std::fs::write(&spanish_path, spanish).map_err(|e| io_error(&spanish_path, e))?;

    // One word-level vocabulary over both languages; pad and bos are added after it.
    let tokenizer = Tokenizer::train_word(&[&english_path, &spanish_path], &WordTokenizerConfig::default())?;
    let (vocab_size, special) = pair_special_ids(&tokenizer)?;
    let info = encode_pair_file(&tokenizer, &english_path, &spanish_path, &pair_path, &PairEncodeConfig::default())?;
    println!("{} sentence pairs, vocabulary {vocab_size} ({special:?})", info.num_pairs);
    let mut data = PairData::new(&pair_path, &PairDataConfig::default().max_tokens(64).seed(args.seed))?;

    // A tiny model: 1 + 1 layers, d_model 32, linear attention (elu + 1, sum rule) everywhere.
    let ctx = Context::new(&ContextConfig::default().seed(args.seed))?;
    let config = Seq2SeqConfig::preset("cpu-small")?
        .vocab_size(vocab_size as i64)
        .special_ids(special)
        .encoder_layers(1)
        .decoder_layers(1)
        .d_ff(64)
        .dropout(0.0)
        .label_smoothing(0.0)
        // Larger than the paper's 0.02 (made for d_model 1024): small embeddings
        // would start far below the position encodings.
        .init_std(0.1)
        .map_attentions(|a| a.d_model(32).num_heads(4).d_head(8).init_std(0.1));
    let mut model = Seq2SeqModel::new(&ctx, &config)?;

    let started = Instant::now();
    let schedule = LrSchedule::InverseSqrt { warmup_steps: 30, min_learning_rate: 0.0 };
    let mut opt = Optimizer::new(
        &mut model,
        &OptimizerConfig::default().learning_rate(1e-2).clip_grad_norm(1.0).schedule(schedule),
    )?;
    let (mut nll, mut tokens) = (0.0, 0usize);
    for step in 1..=args.steps {
        let batch = data.next_batch()?;
        opt.zero_grad()?;
        let loss = opt.target_mut().forward(&batch)?;
        opt.target_mut().backward()?;
        opt.step()?;
        nll += loss.nll_sum;
        tokens += loss.tokens;
        if step % 50 == 0 || step == args.steps {
            println!(
                "step {step:5}  nll per token {:.3}  ({:.1}s)",
                nll / tokens as f64,
                started.elapsed().as_secs_f64()
            );
            (nll, tokens) = (0.0, 0);
        }
    }
    drop(opt);

    // Translate every English sentence from its text; decode the output back to text.
    let sources = PAIRS.iter().map(|p| tokenizer.encode(p.0, false)).collect::<fwp::Result<Vec<_>>>()?;
    let mut wrong = 0;
    for (name, search) in [("greedy", SearchConfig::greedy()), ("beam 4", SearchConfig::default().beam_size(4))] {
        let out = model.translate(&sources, &search)?;
        println!("{name}:");
        for ((english, spanish), ids) in PAIRS.iter().zip(&out.tokens) {
            // pad, bos and eos never come out of the search, but ids the tokenizer does not know must not reach it.
            let words: Vec<i32> =
                ids.iter().copied().filter(|&id| id != special.pad && id != special.bos && id != special.eos).collect();
            let text = tokenizer.decode(&words)?;
            if *ids == tokenizer.encode(spanish, false)? {
                println!("  {english:<22} -> {text}");
            } else {
                wrong += 1;
                println!("  {english:<22} -> {text}   (expected: {spanish})");
            }
        }
    }
    for path in [&english_path, &spanish_path, &pair_path] {
        let _ = std::fs::remove_file(path);
    }
    if wrong > 0 {
        return Err(fwp::Error::new(
            fwp::Status::Internal,
            format!("{wrong} of {} translations are wrong after {} steps", 2 * PAIRS.len(), args.steps),
        ));
    }
    println!("all {} training sentences translated correctly (greedy and beam 4)", PAIRS.len());
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("translation: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("translation: {err}");
            ExitCode::FAILURE
        }
    }
}
