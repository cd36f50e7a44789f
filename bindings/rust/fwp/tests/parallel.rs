//! Tests of pair files and the pair data source against the freshly built libfwp.

use std::path::{Path, PathBuf};

use fwp::{
    encode_pair_file, pair_file_info, pair_special_ids, Context, DataKind, Model, PairData, PairDataConfig,
    PairEncodeConfig, PairPolicy, RetrievalConfig, RetrievalModel, Status, Tokenizer, WordTokenizerConfig,
};

/// A scratch file in the system temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!("fwp-rust-pairs-{}-{name}", std::process::id())))
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

/// 40 line-aligned sentences of 1..7 and 1..9 words; line 5 has an empty target.
fn corpus(tag: &str) -> (TempFile, TempFile) {
    let en = ["the", "cat", "sat", "on", "a", "mat", "dog"];
    let es = ["el", "gato", "se", "sento", "en", "una", "alfombra", "perro"];
    let (mut source, mut target) = (String::new(), String::new());
    for i in 0..40usize {
        let s: Vec<&str> = (0..=i % 7).map(|w| en[(i + w) % 7]).collect();
        let t: Vec<&str> = if i == 4 { vec![] } else { (0..=(i * 3) % 9).map(|w| es[(i * 2 + w) % 8]).collect() };
        source += &(s.join(" ") + "\n");
        target += &(t.join(" ") + "\n");
    }
    (TempFile::with_text(&format!("{tag}.en"), &source), TempFile::with_text(&format!("{tag}.es"), &target))
}

#[test]
fn encode_read_back_and_batches() {
    let (en, es) = corpus("roundtrip");
    let tokenizer = Tokenizer::train_word(&[en.path(), es.path()], &WordTokenizerConfig::default()).unwrap();
    let pairs = TempFile::new("roundtrip.pairs");
    let info = encode_pair_file(&tokenizer, en.path(), es.path(), pairs.path(), &PairEncodeConfig::default()).unwrap();
    assert_eq!(info.num_pairs, 39);
    assert_eq!(info.skipped_empty, 1);
    assert_eq!(info.lines, 40);
    assert_eq!(pair_file_info(pairs.path()).unwrap(), info);
    let (vocab, special) = pair_special_ids(&tokenizer).unwrap();
    assert_eq!(vocab, info.vocab_size);
    assert_eq!(special, info.special);
    assert_eq!(special.pad as usize, tokenizer.vocab_size());

    let mut data = PairData::new(pairs.path(), &PairDataConfig::default().max_tokens(24).seed(5)).unwrap();
    assert_eq!(data.kind(), DataKind::ParallelText);
    assert_eq!(data.config().unwrap().get_max_tokens(), 24);
    let batches = data.batches_per_epoch().unwrap();
    let text_en = std::fs::read_to_string(en.path()).unwrap();
    let lines_en: Vec<&str> = text_en.lines().collect();
    let mut seen = vec![0; 39];
    for _ in 0..batches {
        let b = data.next_batch().unwrap();
        let (bs, s, t) = (b.shape.batch_size, b.shape.source_length, b.shape.target_length);
        assert!(bs * s.max(t) <= 24);
        for r in 0..bs {
            let p = b.pair_indices[r] as usize;
            seen[p] += 1;
            let (src, tgt) = data.pair(p).unwrap();
            // Round trip: the file holds the tokenizer's encoding of the line (without its eos).
            let line = if p < 4 { p } else { p + 1 }; // line 5 (index 4) was skipped
            let mut want = tokenizer.encode(lines_en[line], false).unwrap();
            assert_eq!(src, want);
            want.push(special.eos);
            assert_eq!(&b.source[r * s..r * s + src.len() + 1], &want[..]);
            assert!(b.source[r * s + src.len() + 1..(r + 1) * s].iter().all(|&x| x == special.pad));
            assert_eq!(b.target_input[r * t], special.bos);
            assert_eq!(&b.target_output[r * t..r * t + tgt.len()], &tgt[..]);
            assert_eq!(b.target_output[r * t + tgt.len()], special.eos);
            assert_eq!(b.target_lengths[r] as usize, tgt.len() + 1);
        }
    }
    assert!(seen.iter().all(|&c| c == 1));
    assert_eq!(data.epoch().unwrap(), 1);
    data.reset(0).unwrap();
    assert_eq!((data.epoch().unwrap(), data.position().unwrap()), (0, 0));
}

#[test]
fn policies_and_errors() {
    let (en, es) = corpus("policies");
    let tokenizer = Tokenizer::train_word(&[en.path(), es.path()], &WordTokenizerConfig::default()).unwrap();
    let pairs = TempFile::new("policies.pairs");
    let err = encode_pair_file(
        &tokenizer,
        en.path(),
        es.path(),
        pairs.path(),
        &PairEncodeConfig::default().empty_lines(PairPolicy::Error),
    )
    .unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert!(err.message().contains("line 5"), "{}", err.message());
    let info = encode_pair_file(
        &tokenizer,
        en.path(),
        es.path(),
        pairs.path(),
        &PairEncodeConfig::default().max_source_tokens(3),
    )
    .unwrap();
    assert!(info.skipped_too_long > 0 && info.longest_source <= 3);
    let short = TempFile::with_text("short.es", "el\n");
    let err =
        encode_pair_file(&tokenizer, en.path(), short.path(), pairs.path(), &PairEncodeConfig::default()).unwrap_err();
    assert!(err.message().contains("has 40 lines") && err.message().contains("has 1"), "{}", err.message());
    // A damaged file is a format error.
    let mut bytes = std::fs::read(pairs.path()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let damaged = TempFile::new("damaged.pairs");
    std::fs::write(damaged.path(), &bytes).unwrap();
    assert_eq!(pair_file_info(damaged.path()).unwrap_err().status(), Status::Format);
    assert_eq!(PairData::new(damaged.path(), &PairDataConfig::default()).unwrap_err().status(), Status::Format);
    assert_eq!(
        PairData::new(pairs.path(), &PairDataConfig::default().max_tokens(2)).unwrap_err().status(),
        Status::InvalidArgument
    );
}

#[test]
fn checkpoint_resumes_the_same_batches() {
    let (en, es) = corpus("resume");
    let tokenizer = Tokenizer::train_word(&[en.path(), es.path()], &WordTokenizerConfig::default()).unwrap();
    let pairs = TempFile::new("resume.pairs");
    encode_pair_file(&tokenizer, en.path(), es.path(), pairs.path(), &PairEncodeConfig::default()).unwrap();
    let config = PairDataConfig::default().max_tokens(30).max_sentences(4).seed(77);
    let mut data = PairData::new(pairs.path(), &config).unwrap();
    for _ in 0..3 {
        data.next_batch().unwrap();
    }
    let ctx = Context::cpu().unwrap();
    let mut model = RetrievalModel::new(&ctx, &RetrievalConfig::default().num_keys(4).d_head(8)).unwrap();
    let checkpoint = TempFile::new("resume.safetensors");
    model.save_checkpoint(checkpoint.path(), Some(&data), None).unwrap();
    let mut resumed = PairData::new(pairs.path(), &config).unwrap();
    model.load_checkpoint(checkpoint.path(), Some(&mut resumed)).unwrap();
    assert_eq!(resumed.position().unwrap(), 3);
    for _ in 0..data.batches_per_epoch().unwrap() + 2 {
        assert_eq!(data.next_batch().unwrap(), resumed.next_batch().unwrap());
    }
}

#[test]
fn pair_shards_split_every_batch() {
    use fwp::DataSource;
    let (en, es) = corpus("shards");
    let tokenizer = Tokenizer::train_word(&[en.path(), es.path()], &WordTokenizerConfig::default()).unwrap();
    let pairs = TempFile::new("shards.pairs");
    encode_pair_file(&tokenizer, en.path(), es.path(), pairs.path(), &PairEncodeConfig::default()).unwrap();
    let config = PairDataConfig::default().max_tokens(24).seed(3);
    let mut whole = PairData::new(pairs.path(), &config).unwrap();
    let mut parts: Vec<PairData> = (0..4).map(|_| PairData::new(pairs.path(), &config).unwrap()).collect();
    for (i, part) in parts.iter_mut().enumerate() {
        part.set_shard(i, 4).unwrap();
    }
    let mut empty_parts = 0;
    for _ in 0..whole.batches_per_epoch().unwrap() {
        let batch = whole.next_batch().unwrap();
        let mut rows = Vec::new();
        for part in parts.iter_mut() {
            let shape = part.peek().unwrap();
            let b = part.next_batch().unwrap();
            assert_eq!(b.shape, shape);
            empty_parts += (shape.batch_size == 0) as usize;
            rows.extend_from_slice(&b.pair_indices);
        }
        // The parts are contiguous pieces of the global batch, in order.
        assert_eq!(rows, batch.pair_indices);
    }
    assert!(empty_parts > 0, "batches of fewer than 4 pairs give empty parts");
    assert_eq!(parts[2].epoch().unwrap(), 1);
}
