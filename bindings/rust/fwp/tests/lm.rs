//! Tests of the language model, tokenizers, token files and token data against the freshly built libfwp.

use std::path::{Path, PathBuf};

use fwp::{
    read_token_file, token_file_info, AnyModel, Context, ContextConfig, DataKind, EvalMode, FeatureMap, LanguageModel,
    LmConfig, Model, ModelKind, Optimizer, OptimizerConfig, PositionEncoding, SamplingConfig, Status, TokenData,
    TokenDataConfig, Tokenizer, TokenizerKind, UpdateRule, WordTokenizerConfig,
};

fn ctx() -> Context {
    Context::new(&ContextConfig::default().num_threads(1).seed(11)).expect("context")
}

/// A scratch file in the system temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!("fwp-rust-lm-{}-{name}", std::process::id())))
    }

    fn with_text(name: &str, text: &str) -> TempFile {
        let file = TempFile::new(name);
        std::fs::write(&file.0, text).expect("write a scratch text file");
        file
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A small corpus with a learnable structure: lines drawn from a few fixed
/// sentences by a linear congruential generator (the same text every run).
fn corpus(lines: usize) -> String {
    const SENTENCES: [&str; 4] =
        ["the cat sat on the mat", "a dog ran in the park", "the bird sang a song", "my cat and my dog play"];
    let mut state = 12345u64;
    let mut text = String::new();
    for _ in 0..lines {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        text.push_str(SENTENCES[(state >> 33) as usize % SENTENCES.len()]);
        text.push('\n');
    }
    text
}

fn tiny_config(vocab_size: usize) -> LmConfig {
    LmConfig::default()
        .vocab_size(vocab_size as i64)
        .num_layers(2)
        .d_ff(64)
        .dropout(0.0)
        .map_attention(|a| a.d_model(32).num_heads(2).d_head(16))
}

#[test]
fn config_defaults_presets_and_readback() {
    let c = LmConfig::default();
    assert_eq!(c.get_vocab_size(), 0);
    assert_eq!(c.get_num_layers(), 16);
    assert_eq!(c.get_attention().get_feature_map(), FeatureMap::Elu);
    assert_eq!(c.get_attention().get_update_rule(), UpdateRule::Delta);
    assert_eq!(c.get_position(), PositionEncoding::Sinusoidal);
    assert!(c.get_cutoffs().is_empty());
    assert_eq!(c.get_div_val(), 1);
    let preset = LmConfig::preset("cpu-small").unwrap();
    assert_eq!(preset.get_num_layers(), 4);
    let err = LmConfig::preset("gigantic").unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("cpu-small"), "the message lists the presets: {err}");

    let config = tiny_config(12).tie_embeddings(true).pre_norm(true).seed(3);
    let model = LanguageModel::new(&ctx(), &config).unwrap();
    assert_eq!(model.kind(), ModelKind::Language);
    assert_eq!(model.vocab_size(), 12);
    let back = model.config().unwrap();
    assert_eq!(back.get_num_layers(), 2);
    assert_eq!(back.get_attention().get_d_model(), 32);
    assert!(back.get_tie_embeddings() && back.get_pre_norm());
    assert!(model.num_params() > 0);
}

#[test]
fn errors_map_to_status_and_message() {
    let ctx = ctx();
    let err = LanguageModel::new(&ctx, &tiny_config(0)).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("vocab_size"), "{err}");
    let err = LanguageModel::new(&ctx, &tiny_config(10).map_attention(|a| a.carry_state(true))).unwrap_err();
    assert!(err.message().contains("carry_state"), "{err}");

    let mut model = LanguageModel::new(&ctx, &tiny_config(10)).unwrap();
    // Slices of the wrong length are caught before C.
    let err = model.forward(&[1, 2, 3], &[2, 3], 1, 3).unwrap_err();
    assert_eq!(err.status(), Status::ShapeMismatch);
    assert!(err.message().contains("targets"), "{err}");
    // An id outside the vocabulary is the library's error, with its message.
    let err = model.forward(&[1, 2, 10], &[2, 3, 4], 1, 3).unwrap_err();
    assert_eq!(err.status(), Status::OutOfRange);
    assert!(err.message().contains("10"), "{err}");
    // Step takes one token per row of the state.
    let mut state = model.new_state(2).unwrap();
    assert_eq!(model.step(&mut state, &[1]).unwrap_err().status(), Status::ShapeMismatch);
    assert_eq!(model.feed(&mut state, &[1, 2, 3]).unwrap_err().status(), Status::ShapeMismatch);
    // Generation needs a batch-1 state and a prompt.
    let err = model.generate(&mut state, &[1], 3, &SamplingConfig::greedy(), &[]).unwrap_err();
    assert_eq!(err.status(), Status::ShapeMismatch, "{err}");
    let mut one = model.new_state(1).unwrap();
    assert!(model.generate(&mut one, &[], 3, &SamplingConfig::greedy(), &[]).is_err());
    assert!(model.evaluate(&[1], EvalMode::Segments, 4).is_err());
    // Backward needs a forward first.
    assert_eq!(model.backward().unwrap_err().status(), Status::BadState);
    // Sampling rejects NaN.
    let mut rng = 1u64;
    assert_eq!(
        SamplingConfig::default().sample(&[0.0, f32::NAN], &mut rng).unwrap_err().status(),
        Status::InvalidArgument
    );
}

#[test]
fn tokenizer_round_trip_save_load_and_token_files() {
    let text = TempFile::with_text("round-trip.txt", "the cat  sat\n\nthe dog sat\nrare\n");
    let tokenizer = Tokenizer::train_word(&[text.path()], &WordTokenizerConfig::default()).unwrap();
    assert_eq!(tokenizer.kind(), TokenizerKind::Word);
    assert_eq!(tokenizer.eos_id(), 0);
    // <eos>, the, sat, cat, dog, rare and <unk>.
    assert_eq!(tokenizer.vocab_size(), 7);
    let the = tokenizer.token_to_id("the").expect("'the' is in the vocabulary");
    assert_eq!(tokenizer.id_to_token(the).unwrap(), "the");
    assert_eq!(tokenizer.token_to_id("zebra"), None);
    let ids = tokenizer.encode("the cat  sat\n\nthe dog sat\nrare\n", false).unwrap();
    assert_eq!(ids.len(), 11); // 3 words + <eos>, <eos>, 3 words + <eos>, 1 word + <eos>
                               // Decoding normalises whitespace: runs of spaces become one.
    assert_eq!(tokenizer.decode(&ids).unwrap(), "the cat sat\n\nthe dog sat\nrare\n");
    assert_eq!(tokenizer.encode("the zebra", false).unwrap(), vec![the, tokenizer.unk_id()]);
    assert_eq!(tokenizer.encode("the zebra", true).unwrap().last(), Some(&0));
    assert_eq!(tokenizer.decode(&[99]).unwrap_err().status(), Status::OutOfRange);
    assert_eq!(tokenizer.id_to_token(-1).unwrap_err().status(), Status::OutOfRange);

    // min_count and max_size cut the vocabulary.
    let cut = Tokenizer::train_word(&[text.path()], &WordTokenizerConfig::default().min_count(2)).unwrap();
    assert_eq!(cut.vocab_size(), 4); // <eos>, the, sat, <unk>
    assert_eq!(cut.encode("cat", false).unwrap(), vec![cut.unk_id()]);
    let small = Tokenizer::train_word(&[text.path()], &WordTokenizerConfig::default().max_size(3)).unwrap();
    assert_eq!(small.vocab_size(), 3);
    let err = Tokenizer::train_word(&[text.path()], &WordTokenizerConfig::default().min_count(0)).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("min_count"), "{err}");
    let missing = Tokenizer::train_word(&["/nonexistent/fwp.txt"], &WordTokenizerConfig::default()).unwrap_err();
    assert_eq!(missing.status(), Status::Io);

    let saved = TempFile::new("vocab.fwptok");
    tokenizer.save(saved.path()).unwrap();
    let loaded = Tokenizer::load(saved.path()).unwrap();
    assert_eq!(loaded.vocab_size(), tokenizer.vocab_size());
    assert_eq!(loaded.encode("the dog sat\n", false).unwrap(), tokenizer.encode("the dog sat\n", false).unwrap());
    assert_eq!(Tokenizer::load(text.path()).unwrap_err().status(), Status::Format);

    let tokens = TempFile::new("tokens.bin");
    let n = tokenizer.encode_file(text.path(), tokens.path()).unwrap();
    assert_eq!(n, ids.len());
    let info = token_file_info(tokens.path()).unwrap();
    assert_eq!((info.vocab_size, info.num_tokens), (7, n));
    assert_eq!(read_token_file(tokens.path(), 0, n).unwrap(), ids);
    assert_eq!(read_token_file(tokens.path(), 2, 3).unwrap(), &ids[2..5]);
    assert_eq!(read_token_file(tokens.path(), n - 1, 2).unwrap_err().status(), Status::OutOfRange);
    assert_eq!(token_file_info(text.path()).unwrap_err().status(), Status::Format);
}

#[test]
fn sentencepiece_availability_is_reported() {
    let text = TempFile::with_text("sp.txt", &corpus(200));
    let config = fwp::SentencePieceConfig::default().vocab_size(30);
    match Tokenizer::train_sentencepiece(&[text.path()], &config) {
        Ok(tokenizer) => {
            assert!(Tokenizer::sentencepiece_available());
            assert_eq!(tokenizer.kind(), TokenizerKind::SentencePiece);
            assert_eq!(tokenizer.vocab_size(), 30);
            let ids = tokenizer.encode("the cat sat on the mat\n", false).unwrap();
            assert_eq!(tokenizer.decode(&ids).unwrap(), "the cat sat on the mat\n");
        }
        Err(err) => {
            assert!(!Tokenizer::sentencepiece_available(), "training failed with SentencePiece built in: {err}");
            assert_eq!(err.status(), Status::Unsupported);
        }
    }
}

#[test]
fn training_reduces_the_loss_and_checkpoints_round_trip() {
    let ctx = ctx();
    let text = TempFile::with_text("train.txt", &corpus(300));
    let tokenizer = Tokenizer::train_word(&[text.path()], &WordTokenizerConfig::default()).unwrap();
    let tokens = TempFile::new("train.bin");
    tokenizer.encode_file(text.path(), tokens.path()).unwrap();
    let mut data = TokenData::new(tokens.path(), &TokenDataConfig::default().batch_size(4).segment_length(16)).unwrap();
    assert_eq!(data.kind(), DataKind::TokenFile);
    assert_eq!(data.vocab_size().unwrap(), tokenizer.vocab_size());
    assert!(data.segments_per_epoch().unwrap() >= 10);
    let stream = read_token_file(tokens.path(), 0, 200).unwrap();

    let mut model = LanguageModel::new(&ctx, &tiny_config(tokenizer.vocab_size()).seed(5)).unwrap();
    let initial = model.evaluate(&stream, EvalMode::Segments, 16).unwrap();
    assert_eq!(initial.scored, 199);
    let mut opt = Optimizer::new(&mut model, &OptimizerConfig::default().learning_rate(1e-2)).unwrap();
    let mut first = 0.0;
    let mut last = 0.0;
    for step in 0..40 {
        let batch = data.next_batch().unwrap();
        // Within a stream each target is the next input.
        for row in 0..batch.batch {
            let (inputs, targets) = (&batch.inputs[row * 16..][..16], &batch.targets[row * 16..][..16]);
            assert_eq!(inputs[1..], targets[..15]);
        }
        opt.zero_grad().unwrap();
        let loss = opt.target_mut().forward(&batch.inputs, &batch.targets, batch.batch, batch.length).unwrap();
        assert!(loss.is_finite());
        opt.target_mut().backward().unwrap();
        opt.step().unwrap();
        if step == 0 {
            first = loss;
        }
        last = loss;
    }
    assert!(last < 0.6 * first, "training loss {first} -> {last}");
    // Checkpoint with the optimizer and the data position (a model-only load skips the optimizer).
    let checkpoint = TempFile::new("lm.safetensors");
    opt.save_checkpoint(checkpoint.path(), Some(&data), Some("rust test")).unwrap();
    drop(opt);
    let trained = model.evaluate(&stream, EvalMode::Segments, 16).unwrap();
    assert!(trained.mean_nll() < 0.6 * initial.mean_nll(), "eval {initial:?} -> {trained:?}");
    // The three modes score every token but the first.
    for mode in [EvalMode::Sliding, EvalMode::Carry] {
        let eval = model.evaluate(&stream[..60], mode, 16).unwrap();
        assert_eq!(eval.scored, 59);
        assert!(eval.perplexity().is_finite());
    }

    // Reload and compare.
    let mut loaded = LanguageModel::load(&ctx, checkpoint.path()).unwrap();
    assert_eq!(loaded.vocab_size(), model.vocab_size());
    assert_eq!(loaded.evaluate(&stream, EvalMode::Segments, 16).unwrap(), trained);
    let mut resumed =
        TokenData::new(tokens.path(), &TokenDataConfig::default().batch_size(4).segment_length(16)).unwrap();
    loaded.load_checkpoint(checkpoint.path(), Some(&mut resumed)).unwrap();
    assert_eq!(resumed.position().unwrap(), data.position().unwrap());
    assert_eq!(resumed.next_batch().unwrap(), data.next_batch().unwrap());
    match AnyModel::load(&ctx, checkpoint.path()).unwrap() {
        AnyModel::Language(m) => assert_eq!(m.vocab_size(), tokenizer.vocab_size()),
        other => panic!("a language checkpoint loaded as {other:?}"),
    }
    assert_eq!(fwp::RetrievalModel::load(&ctx, checkpoint.path()).unwrap_err().status(), Status::Format);

    // Greedy generation continues the learnt sentences and is reproducible.
    let prompt = tokenizer.encode("the cat", false).unwrap();
    let mut state = loaded.new_state(1).unwrap();
    let greedy = loaded.generate(&mut state, &prompt, 6, &SamplingConfig::greedy(), &[]).unwrap();
    assert_eq!(greedy.len(), 6);
    state.reset().unwrap();
    assert_eq!(loaded.generate(&mut state, &prompt, 6, &SamplingConfig::greedy(), &[]).unwrap(), greedy);
    assert_eq!(tokenizer.decode(&greedy[..3]).unwrap(), "sat on the");
    // A stop token ends generation before it.
    state.reset().unwrap();
    let eos = tokenizer.eos_id();
    let stopped = loaded.generate(&mut state, &prompt, 20, &SamplingConfig::greedy(), &[eos]).unwrap();
    assert!(!stopped.contains(&eos) && stopped.len() < 20, "{stopped:?}");
    // Sampling with a seed is reproducible.
    let sampler = SamplingConfig::default().temperature(0.8).top_k(5).seed(9);
    state.reset().unwrap();
    let a = loaded.generate(&mut state, &prompt, 8, &sampler, &[]).unwrap();
    state.reset().unwrap();
    assert_eq!(loaded.generate(&mut state, &prompt, 8, &sampler, &[]).unwrap(), a);
}

#[test]
fn step_matches_forward_and_states_carry() {
    let ctx = ctx();
    let mut model = LanguageModel::new(&ctx, &tiny_config(9).seed(2)).unwrap();
    model.set_training(false).unwrap();
    let inputs = [1, 4, 2, 8, 5, 7];
    let targets = [4, 2, 8, 5, 7, 3];
    let (loss, token_losses) = model.forward_with_token_losses(None, &inputs, &targets, 1, 6).unwrap();
    assert_eq!(token_losses.len(), 6);
    // Stepping token by token gives the same per-position losses.
    let mut state = model.new_state(1).unwrap();
    assert_eq!(state.num_layers().unwrap(), 2);
    let mut total = 0.0;
    for (t, (&x, &y)) in inputs.iter().zip(&targets).enumerate() {
        let log_probs = model.step(&mut state, &[x]).unwrap();
        assert_eq!(log_probs.len(), 9);
        let nll = -log_probs[y as usize];
        assert!((nll - token_losses[t]).abs() < 1e-3, "position {t}: step {nll} vs forward {}", token_losses[t]);
        total += nll as f64;
    }
    assert!((total / 6.0 - loss).abs() < 1e-3);
    // Two halves carried through a state equal the whole segment.
    let mut carried = model.new_state(1).unwrap();
    let a = model.forward_with_state(&mut carried, &inputs[..3], &targets[..3], 1, 3).unwrap();
    let b = model.forward_with_state(&mut carried, &inputs[3..], &targets[3..], 1, 3).unwrap();
    assert!(((a + b) / 2.0 - loss).abs() < 1e-4, "{a} + {b} vs {loss}");
    // feed advances the state like step.
    let mut fed = model.new_state(1).unwrap();
    for &x in &inputs[..5] {
        model.feed(&mut fed, &[x]).unwrap();
    }
    let mut stepped = model.new_state(1).unwrap();
    for &x in &inputs[..5] {
        model.step(&mut stepped, &[x]).unwrap();
    }
    assert_eq!(model.step(&mut fed, &[7]).unwrap(), model.step(&mut stepped, &[7]).unwrap());
}

#[test]
fn carried_state_is_saved_with_the_checkpoint() {
    let ctx = ctx();
    let mut model = LanguageModel::new(&ctx, &tiny_config(9).seed(4)).unwrap();
    let inputs = [1, 4, 2, 8, 5, 7];
    let targets = [4, 2, 8, 5, 7, 3];
    let mut carried = model.new_state(1).unwrap();
    let mut opt = Optimizer::new(&mut model, &OptimizerConfig::default().learning_rate(1e-2)).unwrap();
    opt.zero_grad().unwrap();
    opt.target_mut().forward_with_state(&mut carried, &inputs[..3], &targets[..3], 1, 3).unwrap();
    opt.target_mut().backward().unwrap();
    opt.step().unwrap();
    let checkpoint = TempFile::new("carried.safetensors");
    opt.save_checkpoint_with_state(checkpoint.path(), None, &carried, None).unwrap();
    let next = opt.target_mut().forward_with_state(&mut carried, &inputs[3..], &targets[3..], 1, 3).unwrap();

    // The memory and position come back: the next segment's loss is the same, bit for bit.
    let mut restored = opt.target().new_state(2).unwrap();
    opt.load_checkpoint_with_state(checkpoint.path(), None, &mut restored).unwrap();
    assert_eq!(restored.batch().unwrap(), 1);
    let again = opt.target_mut().forward_with_state(&mut restored, &inputs[3..], &targets[3..], 1, 3).unwrap();
    assert_eq!(next, again);
    // A checkpoint without a state cannot fill one.
    let plain = TempFile::new("plain.safetensors");
    opt.save_checkpoint(plain.path(), None, None).unwrap();
    let err = opt.load_checkpoint_with_state(plain.path(), None, &mut restored).unwrap_err();
    assert!(err.to_string().contains("no run state"), "{err}");
}

#[test]
fn token_shards_are_blocks_of_streams() {
    use fwp::DataSource;
    let text = TempFile::with_text("shards.txt", &corpus(200));
    let tokenizer = Tokenizer::train_word(&[text.path()], &WordTokenizerConfig::default()).unwrap();
    let tokens = TempFile::new("shards.bin");
    tokenizer.encode_file(text.path(), tokens.path()).unwrap();
    let config = TokenDataConfig::default().batch_size(6).segment_length(8);
    let mut whole = TokenData::new(tokens.path(), &config).unwrap();
    let mut shards: Vec<TokenData> = (0..3).map(|_| TokenData::new(tokens.path(), &config).unwrap()).collect();
    for (i, shard) in shards.iter_mut().enumerate() {
        shard.set_shard(i, 3).unwrap();
        assert_eq!(shard.shard().unwrap(), (i, 3));
    }
    // 6 streams do not split into 4 shards; nothing changes then.
    assert_eq!(whole.set_shard(0, 4).unwrap_err().status(), Status::InvalidArgument);
    assert_eq!(whole.shard().unwrap(), (0, 1));
    for _ in 0..3 {
        let batch = whole.next_batch().unwrap();
        for (i, shard) in shards.iter_mut().enumerate() {
            let part = shard.next_batch().unwrap();
            assert_eq!((part.batch, part.length), (2, 8));
            assert_eq!(part.inputs, batch.inputs[i * 16..(i + 1) * 16]);
            assert_eq!(part.targets, batch.targets[i * 16..(i + 1) * 16]);
            assert_eq!(shard.position().unwrap(), whole.position().unwrap());
        }
    }
}
