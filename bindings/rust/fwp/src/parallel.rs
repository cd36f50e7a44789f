//! Parallel text for translation: pair files (two line-aligned text files
//! encoded with one tokenizer) and the pair data source, whose batches are
//! formed by a token budget (`fwp/parallel.h`).

use std::fmt;
use std::path::Path;
use std::ptr::{self, NonNull};

use fwp_sys as sys;

use crate::data::{DataKind, DataSource};
use crate::error::{check, product, to_i64, to_usize, Result};
use crate::layer::{config_field, config_flag, rust_enum};
use crate::model::path_cstring;
use crate::text::Tokenizer;

rust_enum! {
    /// What the encoder does with a pair it cannot keep.
    PairPolicy: fwp_pair_policy {
        /// Leave the pair out and count it ([`PairInfo`]).
        Skip = FWP_PAIR_SKIP,
        /// Fail with [`Status::InvalidArgument`](crate::Status::InvalidArgument) naming the line.
        Error = FWP_PAIR_ERROR,
    }
}

/// Settings of [`encode_pair_file`] (`fwp_pair_encode_config_init`: no length
/// limits, pairs with an empty or over-long side skipped).
///
/// ```
/// use fwp::{PairEncodeConfig, PairPolicy};
/// let config = PairEncodeConfig::default().max_source_tokens(250).too_long(PairPolicy::Error);
/// assert_eq!(config.get_too_long(), PairPolicy::Error);
/// ```
#[derive(Clone, Copy)]
pub struct PairEncodeConfig {
    raw: sys::fwp_pair_encode_config,
}

impl Default for PairEncodeConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_pair_encode_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_pair_encode_config_init(raw.as_mut_ptr()) };
        PairEncodeConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl PairEncodeConfig {
    config_field!(
        /// Longest source sentence in tokens (without eos); 0 (default) = no limit.
        max_source_tokens, get_max_source_tokens: i64);
    config_field!(
        /// Longest target sentence in tokens (without bos/eos); 0 (default) = no limit.
        max_target_tokens, get_max_target_tokens: i64);

    /// What to do with a pair that has a side over its limit (default [`PairPolicy::Skip`]).
    pub fn too_long(mut self, policy: PairPolicy) -> Self {
        self.raw.too_long = policy.raw();
        self
    }
    /// The value of `too_long`.
    pub fn get_too_long(&self) -> PairPolicy {
        PairPolicy::from_raw(self.raw.too_long)
    }
    /// What to do with a pair that has a side without tokens (default [`PairPolicy::Skip`]).
    pub fn empty_lines(mut self, policy: PairPolicy) -> Self {
        self.raw.empty_lines = policy.raw();
        self
    }
    /// The value of `empty_lines`.
    pub fn get_empty_lines(&self) -> PairPolicy {
        PairPolicy::from_raw(self.raw.empty_lines)
    }

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_pair_encode_config {
        &self.raw
    }
}

impl fmt::Debug for PairEncodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairEncodeConfig")
            .field("max_source_tokens", &self.raw.max_source_tokens)
            .field("max_target_tokens", &self.raw.max_target_tokens)
            .field("too_long", &self.get_too_long())
            .field("empty_lines", &self.get_empty_lines())
            .finish()
    }
}

/// What a pair file holds (`fwp_pair_info`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PairInfo {
    /// The model's vocabulary: every id and special id is below it.
    pub vocab_size: usize,
    /// The tokenizer's vocabulary (`vocab_size` minus the special ids added).
    pub tokenizer_vocab_size: usize,
    /// The special ids of the file.
    pub special: SpecialIds,
    /// Pairs in the file.
    pub num_pairs: usize,
    /// Source ids in the file (without eos).
    pub source_tokens: usize,
    /// Target ids in the file (without bos/eos).
    pub target_tokens: usize,
    /// Lines read from each text file.
    pub lines: usize,
    /// Pairs left out for an empty side.
    pub skipped_empty: usize,
    /// Pairs left out for a side over its limit.
    pub skipped_too_long: usize,
    /// The encoder's source limit (0: none).
    pub max_source_tokens: usize,
    /// The encoder's target limit (0: none).
    pub max_target_tokens: usize,
    /// Longest source sentence in ids.
    pub longest_source: usize,
    /// Longest target sentence in ids.
    pub longest_target: usize,
}

/// The special ids of translation data: the tokenizer's `<eos>` and `<unk>`,
/// and its `<pad>` and `<bos>` where it has them (else ids after its vocabulary).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SpecialIds {
    /// `<pad>`: padding of batches; in target outputs it means "no loss here".
    pub pad: i32,
    /// `<bos>`: the first target input.
    pub bos: i32,
    /// `<eos>`: ends every source and target output.
    pub eos: i32,
    /// `<unk>`.
    pub unk: i32,
}

fn empty_info() -> sys::fwp_pair_info {
    let mut raw = unsafe { std::mem::MaybeUninit::<sys::fwp_pair_info>::zeroed().assume_init() };
    raw.struct_size = std::mem::size_of::<sys::fwp_pair_info>() as u32;
    raw
}

fn info_from_raw(raw: &sys::fwp_pair_info) -> Result<PairInfo> {
    Ok(PairInfo {
        vocab_size: to_usize(raw.vocab_size, "vocab_size")?,
        tokenizer_vocab_size: to_usize(raw.tokenizer_vocab_size, "tokenizer_vocab_size")?,
        special: SpecialIds { pad: raw.pad_id, bos: raw.bos_id, eos: raw.eos_id, unk: raw.unk_id },
        num_pairs: to_usize(raw.num_pairs, "num_pairs")?,
        source_tokens: to_usize(raw.source_tokens, "source_tokens")?,
        target_tokens: to_usize(raw.target_tokens, "target_tokens")?,
        lines: to_usize(raw.lines, "lines")?,
        skipped_empty: to_usize(raw.skipped_empty, "skipped_empty")?,
        skipped_too_long: to_usize(raw.skipped_too_long, "skipped_too_long")?,
        max_source_tokens: to_usize(raw.max_source_tokens, "max_source_tokens")?,
        max_target_tokens: to_usize(raw.max_target_tokens, "max_target_tokens")?,
        longest_source: to_usize(raw.longest_source, "longest_source")?,
        longest_target: to_usize(raw.longest_target, "longest_target")?,
    })
}

/// The model's vocabulary size and the special ids of the pair files a tokenizer writes.
pub fn pair_special_ids(tokenizer: &Tokenizer) -> Result<(usize, SpecialIds)> {
    let mut vocab = 0i64;
    let mut s = SpecialIds { pad: -1, bos: -1, eos: -1, unk: -1 };
    // SAFETY: valid handle and output pointers.
    check(unsafe {
        sys::fwp_pair_special_ids(tokenizer.as_raw(), &mut vocab, &mut s.pad, &mut s.bos, &mut s.eos, &mut s.unk)
    })?;
    Ok((to_usize(vocab, "vocab_size")?, s))
}

/// Encodes two line-aligned text files (source and target, the WMT convention)
/// with one tokenizer into a pair file, written to a temporary file and renamed
/// into place. Files of different line counts fail with
/// [`Status::InvalidArgument`](crate::Status::InvalidArgument) naming both counts.
pub fn encode_pair_file(
    tokenizer: &Tokenizer,
    source_path: impl AsRef<Path>,
    target_path: impl AsRef<Path>,
    pair_path: impl AsRef<Path>,
    config: &PairEncodeConfig,
) -> Result<PairInfo> {
    let source = path_cstring(source_path.as_ref())?;
    let target = path_cstring(target_path.as_ref())?;
    let pairs = path_cstring(pair_path.as_ref())?;
    let mut info = empty_info();
    // SAFETY: valid handle, NUL-terminated paths, a config filled by init, info with struct_size set.
    check(unsafe {
        sys::fwp_pair_file_encode(
            tokenizer.as_raw(),
            source.as_ptr(),
            target.as_ptr(),
            pairs.as_ptr(),
            &config.raw,
            &mut info,
        )
    })?;
    info_from_raw(&info)
}

/// Verifies a whole pair file and reports what it holds; a damaged file fails
/// with [`Status::Format`](crate::Status::Format).
pub fn pair_file_info(path: impl AsRef<Path>) -> Result<PairInfo> {
    let path = path_cstring(path.as_ref())?;
    let mut info = empty_info();
    // SAFETY: NUL-terminated path; info with struct_size set.
    check(unsafe { sys::fwp_pair_file_info(path.as_ptr(), &mut info) })?;
    info_from_raw(&info)
}

/// Settings of a [`PairData`] source (`fwp_pair_data_config_init`: 4096
/// tokens a batch, no sentence limit, shuffled, seed 1).
///
/// ```
/// let config = fwp::PairDataConfig::default().max_tokens(2000).shuffle(false);
/// assert_eq!(config.get_max_tokens(), 2000);
/// ```
#[derive(Clone, Copy)]
pub struct PairDataConfig {
    raw: sys::fwp_pair_data_config,
}

impl Default for PairDataConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_pair_data_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_pair_data_config_init(raw.as_mut_ptr()) };
        PairDataConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl PairDataConfig {
    config_field!(
        /// Token budget of a batch: B * max(S, T) <= max_tokens (default 4096).
        max_tokens, get_max_tokens: i64);
    config_field!(
        /// Most pairs in a batch; 0 (default) = no limit.
        max_sentences, get_max_sentences: i64);
    config_flag!(
        /// True (default, training): pairs grouped by length, batch order shuffled every epoch;
        /// false (evaluation): file order.
        shuffle, get_shuffle);
    config_field!(
        /// Seed of the batch order (default 1).
        seed, get_seed: u64);

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_pair_data_config {
        &self.raw
    }
}

impl fmt::Debug for PairDataConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairDataConfig")
            .field("max_tokens", &self.raw.max_tokens)
            .field("max_sentences", &self.raw.max_sentences)
            .field("shuffle", &self.get_shuffle())
            .field("seed", &self.raw.seed)
            .finish()
    }
}

/// The shape of a batch: B pairs, sources of S positions, targets of T.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PairShape {
    /// B, the pairs of the batch.
    pub batch_size: usize,
    /// S, the longest source with its eos.
    pub source_length: usize,
    /// T, the longest target with its bos (or eos).
    pub target_length: usize,
}

/// One batch of a [`PairData`] source, every row right-padded with the pad id.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PairBatch {
    /// The shape.
    pub shape: PairShape,
    /// `[B][S]`: x_1 .. x_n eos, then pad.
    pub source: Vec<i32>,
    /// `[B]`: n + 1 of each row.
    pub source_lengths: Vec<i32>,
    /// `[B][T]`: bos y_1 .. y_m, then pad.
    pub target_input: Vec<i32>,
    /// `[B][T]`: y_1 .. y_m eos, then pad (pad: no loss).
    pub target_output: Vec<i32>,
    /// `[B]`: m + 1 of each row.
    pub target_lengths: Vec<i32>,
    /// `[B]`: each row's pair index in the file.
    pub pair_indices: Vec<i64>,
}

/// A pair file (see [`encode_pair_file`]) cut into batches by a token budget,
/// as fairseq's `--max-tokens`. A checkpoint stores its position
/// ([`DataSource`]), so a resumed run gets the same batches.
///
/// The file is memory-mapped and must not change while the source uses it.
pub struct PairData {
    raw: NonNull<sys::fwp_data>,
}

// SAFETY: distinct handles may be used from distinct threads; mutation needs `&mut`.
unsafe impl Send for PairData {}

impl DataSource for PairData {
    fn as_raw_data(&self) -> *mut sys::fwp_data {
        self.raw.as_ptr()
    }
}

type ShapeFn = unsafe extern "C" fn(*const sys::fwp_data, *mut i64, *mut i64, *mut i64) -> sys::fwp_status;

impl PairData {
    /// Opens a pair file (verified whole first). A pair longer than the budget
    /// alone fails with [`Status::InvalidArgument`](crate::Status::InvalidArgument).
    pub fn new(pair_path: impl AsRef<Path>, config: &PairDataConfig) -> Result<PairData> {
        let path = path_cstring(pair_path.as_ref())?;
        let mut out = ptr::null_mut();
        // SAFETY: NUL-terminated path and a valid config; out receives an owned handle.
        check(unsafe { sys::fwp_pair_data_create(path.as_ptr(), &config.raw, &mut out) })?;
        Ok(PairData { raw: NonNull::new(out).expect("fwp_pair_data_create returned FWP_OK and NULL") })
    }

    /// The settings the source was created with.
    pub fn config(&self) -> Result<PairDataConfig> {
        let mut config = PairDataConfig::default();
        // SAFETY: struct_size was set by init; valid handle.
        check(unsafe { sys::fwp_pair_data_get_config(self.raw.as_ptr(), &mut config.raw) })?;
        Ok(config)
    }

    /// What the source's pair file holds.
    pub fn info(&self) -> Result<PairInfo> {
        let mut info = empty_info();
        // SAFETY: valid handle; info with struct_size set.
        check(unsafe { sys::fwp_pair_data_info(self.raw.as_ptr(), &mut info) })?;
        info_from_raw(&info)
    }

    fn shape(&self, f: ShapeFn) -> Result<PairShape> {
        let (mut b, mut s, mut t) = (0i64, 0i64, 0i64);
        // SAFETY: valid handle and output pointers.
        check(unsafe { f(self.raw.as_ptr(), &mut b, &mut s, &mut t) })?;
        Ok(PairShape {
            batch_size: to_usize(b, "batch_size")?,
            source_length: to_usize(s, "source_length")?,
            target_length: to_usize(t, "target_length")?,
        })
    }

    /// The shape of the batch [`next_batch`](PairData::next_batch) gives next.
    pub fn peek(&self) -> Result<PairShape> {
        self.shape(sys::fwp_pair_data_peek)
    }

    /// The largest B, S and T of any batch (each on its own).
    pub fn max_shape(&self) -> Result<PairShape> {
        self.shape(sys::fwp_pair_data_max_shape)
    }

    /// The next batch; the source moves on by one batch (to the next epoch after the last).
    pub fn next_batch(&mut self) -> Result<PairBatch> {
        let shape = self.peek()?;
        let (b, s, t) = (shape.batch_size, shape.source_length, shape.target_length);
        let mut batch = PairBatch {
            shape,
            source: vec![0; product(&[b, s], "B * S")?],
            source_lengths: vec![0; b],
            target_input: vec![0; product(&[b, t], "B * T")?],
            target_output: vec![0; product(&[b, t], "B * T")?],
            target_lengths: vec![0; b],
            pair_indices: vec![0; b],
        };
        // SAFETY: every array has the size of the shape passed.
        check(unsafe {
            sys::fwp_pair_data_next(
                self.raw.as_ptr(),
                to_i64(b, "batch_size")?,
                to_i64(s, "source_length")?,
                to_i64(t, "target_length")?,
                batch.source.as_mut_ptr(),
                batch.source_lengths.as_mut_ptr(),
                batch.target_input.as_mut_ptr(),
                batch.target_output.as_mut_ptr(),
                batch.target_lengths.as_mut_ptr(),
                batch.pair_indices.as_mut_ptr(),
            )
        })?;
        Ok(batch)
    }

    /// Moves to the first batch of `epoch`.
    pub fn reset(&mut self, epoch: usize) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::fwp_pair_data_reset(self.raw.as_ptr(), to_i64(epoch, "epoch")?) })
    }

    fn read_count(
        &self,
        f: unsafe extern "C" fn(*const sys::fwp_data, *mut i64) -> sys::fwp_status,
        what: &str,
    ) -> Result<usize> {
        let mut value = 0i64;
        // SAFETY: valid handle and output pointer.
        check(unsafe { f(self.raw.as_ptr(), &mut value) })?;
        to_usize(value, what)
    }

    /// The number of completed epochs (0 during the first).
    pub fn epoch(&self) -> Result<usize> {
        self.read_count(sys::fwp_pair_data_epoch, "epoch")
    }

    /// How many batches of the current epoch were given.
    pub fn position(&self) -> Result<usize> {
        self.read_count(sys::fwp_pair_data_position, "batch")
    }

    /// The number of batches in one epoch.
    pub fn batches_per_epoch(&self) -> Result<usize> {
        self.read_count(sys::fwp_pair_data_batches_per_epoch, "batches")
    }

    /// Pair `index` of the file: its source and target ids, without bos/eos.
    pub fn pair(&self, index: usize) -> Result<(Vec<i32>, Vec<i32>)> {
        let (mut n, mut m) = (0i64, 0i64);
        let i = to_i64(index, "index")?;
        // SAFETY: a size query (no arrays), valid output pointers.
        check(unsafe {
            sys::fwp_pair_data_get_pair(self.raw.as_ptr(), i, ptr::null_mut(), 0, &mut n, ptr::null_mut(), 0, &mut m)
        })?;
        let mut source = vec![0i32; to_usize(n, "source_length")?];
        let mut target = vec![0i32; to_usize(m, "target_length")?];
        // SAFETY: the arrays hold n and m ids, the capacities passed.
        check(unsafe {
            sys::fwp_pair_data_get_pair(
                self.raw.as_ptr(),
                i,
                source.as_mut_ptr(),
                n,
                &mut n,
                target.as_mut_ptr(),
                m,
                &mut m,
            )
        })?;
        Ok((source, target))
    }

    /// The kind of data source as the library reports it ([`DataKind::ParallelText`]).
    pub fn kind(&self) -> DataKind {
        let mut kind = sys::FWP_DATA_PARALLEL_TEXT;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_data_get_kind(self.raw.as_ptr(), &mut kind) }).expect("fwp_data_get_kind");
        DataKind::from_raw(kind)
    }

    /// The raw handle, for use with `fwp-sys`. It stays owned by this object.
    pub fn as_raw(&self) -> *mut sys::fwp_data {
        self.raw.as_ptr()
    }
}

impl Drop for PairData {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once.
        unsafe { sys::fwp_data_destroy(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for PairData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairData").field("config", &self.config().ok()).finish()
    }
}
