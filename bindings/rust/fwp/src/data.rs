//! Data sources (one C handle, `fwp_data`, for every kind): retrieval batches
//! and their seeded generator, and token files for language modelling.

use std::fmt;
use std::ptr::{self, NonNull};

use fwp_sys as sys;

use crate::error::{check, check_len, product, to_i64, to_usize, Error, Result};
use crate::layer::{config_field, rust_enum};
use crate::model::path_cstring;
use std::path::Path;

rust_enum! {
    /// The kind of a data source.
    DataKind: fwp_data_kind {
        /// The seeded generator of retrieval sequences ([`RetrievalData`]).
        Retrieval = FWP_DATA_RETRIEVAL,
        /// Token files for language modelling ([`TokenData`]).
        TokenFile = FWP_DATA_TOKEN_FILE,
        /// Pair files of parallel text for translation ([`PairData`](crate::PairData)).
        ParallelText = FWP_DATA_PARALLEL_TEXT,
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::RetrievalData {}
    impl Sealed for super::TokenData {}
    impl Sealed for crate::parallel::PairData {}
}

/// A data source of any kind ([`RetrievalData`], [`TokenData`], [`PairData`](crate::PairData)) whose position a
/// checkpoint can store and restore, so that a resumed run reads the data an
/// uninterrupted run would have read. Taken as `&dyn DataSource` by
/// [`Model::save_checkpoint`](crate::Model::save_checkpoint) and the other
/// checkpoint functions.
pub trait DataSource: sealed::Sealed {
    /// The raw handle, an `fwp_data` of any kind, for use with `fwp-sys`. It
    /// stays owned by this object.
    fn as_raw_data(&self) -> *mut sys::fwp_data;

    /// Makes the source give shard `index` of `count` of every batch, for
    /// data-parallel training ([`distributed`](crate::distributed)): `count`
    /// ranks together take the step one process takes on the whole batch.
    ///
    /// * [`TokenData`]: the config's batch_size B (the global number of
    ///   streams, a multiple of `count`) is cut into `count` blocks of B / count
    ///   streams; [`TokenData::next_batch`] then gives the shard's rows.
    /// * [`RetrievalData`]: [`RetrievalData::sample`] takes the global batch
    ///   size (a multiple of `count`), draws the whole batch as one process
    ///   would and returns the shard's rows.
    /// * [`PairData`](crate::PairData): each token-budget batch is split into
    ///   `count` contiguous parts (a part may be empty).
    ///
    /// Every shard walks through the same global batches; a checkpoint stores
    /// the position, not the shard. `(0, 1)`, the default, gives whole
    /// batches. A bad pair fails with [`Status::InvalidArgument`](crate::Status::InvalidArgument)
    /// and changes nothing.
    fn set_shard(&mut self, index: usize, count: usize) -> Result<()> {
        // SAFETY: a valid handle of any kind.
        check(unsafe { sys::fwp_data_set_shard(self.as_raw_data(), to_i64(index, "index")?, to_i64(count, "count")?) })
    }

    /// The shard `(index, count)` the source gives (`(0, 1)`: whole batches).
    fn shard(&self) -> Result<(usize, usize)> {
        let (mut index, mut count) = (0i64, 0i64);
        // SAFETY: valid handle and output pointers.
        check(unsafe { sys::fwp_data_get_shard(self.as_raw_data(), &mut index, &mut count) })?;
        Ok((to_usize(index, "shard index")?, to_usize(count, "shard count")?))
    }
}

/// The rows of a shard of `global` rows, or why `global` cannot be cut into
/// `count` equal shards.
fn shard_rows(global: usize, count: usize, what: &str) -> Result<usize> {
    if count == 0 || global % count != 0 {
        return Err(Error::invalid(format!(
            "{what} ({global}) must be a multiple of the number of shards ({count}) (DataSource::set_shard)"
        )));
    }
    Ok(global / count)
}

impl DataSource for RetrievalData {
    fn as_raw_data(&self) -> *mut sys::fwp_data {
        self.raw.as_ptr()
    }
}

impl DataSource for TokenData {
    fn as_raw_data(&self) -> *mut sys::fwp_data {
        self.raw.as_ptr()
    }
}

/// A batch of associative-retrieval sequences (paper section 6.1).
///
/// Sequence `b` holds `seq_len` (key, value) pairs `keys[b][i]`, `values[b][i]`
/// (ids in `0..S`), then `num_queries` query keys `queries[b][j]` with their
/// target values `targets[b][j]`. A query of -1 is padding and is ignored
/// together with its target.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RetrievalBatch {
    batch_size: usize,
    seq_len: usize,
    num_queries: usize,
    keys: Vec<i32>,
    values: Vec<i32>,
    queries: Vec<i32>,
    targets: Vec<i32>,
}

impl RetrievalBatch {
    /// Creates a batch after checking the array lengths
    /// (`keys`, `values`: `batch_size * seq_len`; `queries`, `targets`:
    /// `batch_size * num_queries`). The ids are checked by the model.
    pub fn new(
        batch_size: usize,
        seq_len: usize,
        num_queries: usize,
        keys: Vec<i32>,
        values: Vec<i32>,
        queries: Vec<i32>,
        targets: Vec<i32>,
    ) -> Result<RetrievalBatch> {
        if batch_size == 0 || seq_len == 0 || num_queries == 0 {
            return Err(Error::invalid(format!(
                "batch_size ({batch_size}), seq_len ({seq_len}) and num_queries ({num_queries}) must be >= 1"
            )));
        }
        let pairs = product(&[batch_size, seq_len], "batch_size * seq_len")?;
        let asked = product(&[batch_size, num_queries], "batch_size * num_queries")?;
        check_len(keys.len(), pairs, "keys", "batch_size * seq_len")?;
        check_len(values.len(), pairs, "values", "batch_size * seq_len")?;
        check_len(queries.len(), asked, "queries", "batch_size * num_queries")?;
        check_len(targets.len(), asked, "targets", "batch_size * num_queries")?;
        Ok(RetrievalBatch { batch_size, seq_len, num_queries, keys, values, queries, targets })
    }

    /// B, the number of sequences.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    /// L, the number of (key, value) pairs per sequence.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }
    /// Q, the number of queries per sequence.
    pub fn num_queries(&self) -> usize {
        self.num_queries
    }
    /// The keys, `[B][L]`.
    pub fn keys(&self) -> &[i32] {
        &self.keys
    }
    /// The values, `[B][L]`.
    pub fn values(&self) -> &[i32] {
        &self.values
    }
    /// The query keys, `[B][Q]` (-1 = padding).
    pub fn queries(&self) -> &[i32] {
        &self.queries
    }
    /// The target values, `[B][Q]`.
    pub fn targets(&self) -> &[i32] {
        &self.targets
    }
    /// The number of queries that are not padding.
    pub fn num_real_queries(&self) -> usize {
        self.queries.iter().filter(|&&q| q >= 0).count()
    }

    /// The C view of the batch; valid while `self` is borrowed.
    pub(crate) fn as_raw(&self) -> sys::fwp_retrieval_batch {
        sys::fwp_retrieval_batch {
            batch_size: self.batch_size as i64,
            seq_len: self.seq_len as i64,
            num_queries: self.num_queries as i64,
            keys: self.keys.as_ptr(),
            values: self.values.as_ptr(),
            queries: self.queries.as_ptr(),
            targets: self.targets.as_ptr(),
        }
    }
}

/// A seeded generator of retrieval sequences for setting 1 (capacity: L = S
/// distinct keys) or setting 2 (update: L = 2 S pairs with replacement).
///
/// ```
/// let mut data = fwp::RetrievalData::new(1, 10, 7)?;
/// assert_eq!(data.seq_len(), 10);
/// let batch = data.sample(4, 1)?;
/// assert_eq!(batch.keys().len(), 4 * 10);
/// assert!(batch.keys().iter().all(|&k| (0..10).contains(&k)));
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct RetrievalData {
    pub(crate) raw: NonNull<sys::fwp_retrieval_data>,
    seq_len: usize,
}

// SAFETY: distinct handles may be used from distinct threads.
unsafe impl Send for RetrievalData {}

impl RetrievalData {
    /// Creates a generator; the same seed gives the same sequences.
    pub fn new(setting: i32, num_keys: usize, seed: u64) -> Result<RetrievalData> {
        let mut out = ptr::null_mut();
        // SAFETY: out receives an owned handle.
        check(unsafe { sys::fwp_retrieval_data_create(setting, to_i64(num_keys, "num_keys")?, seed, &mut out) })?;
        let raw = NonNull::new(out).expect("fwp_retrieval_data_create returned FWP_OK and NULL");
        Self::from_raw(raw)
    }

    /// Creates a generator of sequences of `num_pairs` pairs: 0 for the
    /// training length (S, or 2 S in setting 2), S in setting 1, any
    /// 1..=2^17 in setting 2. The paper evaluates setting 2 on S pairs.
    ///
    /// ```
    /// let data = fwp::RetrievalData::with_length(2, 10, 10, 7)?;
    /// assert_eq!(data.seq_len(), 10);
    /// assert!(fwp::RetrievalData::with_length(1, 10, 5, 7).is_err());
    /// # Ok::<(), fwp::Error>(())
    /// ```
    pub fn with_length(setting: i32, num_keys: usize, num_pairs: usize, seed: u64) -> Result<RetrievalData> {
        let mut out = ptr::null_mut();
        // SAFETY: out receives an owned handle.
        check(unsafe {
            sys::fwp_retrieval_data_create_with_length(
                setting,
                to_i64(num_keys, "num_keys")?,
                to_i64(num_pairs, "num_pairs")?,
                seed,
                &mut out,
            )
        })?;
        let raw = NonNull::new(out).expect("fwp_retrieval_data_create_with_length returned FWP_OK and NULL");
        Self::from_raw(raw)
    }

    /// Takes ownership of a fresh handle and reads its sequence length.
    fn from_raw(raw: NonNull<sys::fwp_retrieval_data>) -> Result<RetrievalData> {
        let mut seq_len = 0i64;
        // SAFETY: valid handle and output pointer.
        let status = unsafe { sys::fwp_retrieval_data_seq_len(raw.as_ptr(), &mut seq_len) };
        let mut data = RetrievalData { raw, seq_len: 0 };
        check(status)?;
        data.seq_len = to_usize(seq_len, "seq_len")?;
        Ok(data)
    }

    /// L, the number of pairs per sequence (S for setting 1, 2 S for setting 2,
    /// or the `num_pairs` of [`RetrievalData::with_length`]).
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The kind of data source as the library reports it ([`DataKind::Retrieval`]).
    pub fn kind(&self) -> DataKind {
        let mut kind = sys::FWP_DATA_RETRIEVAL;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_data_get_kind(self.raw.as_ptr(), &mut kind) }).expect("fwp_data_get_kind");
        DataKind::from_raw(kind)
    }

    /// Draws `batch_size` sequences. With `queries_per_seq` = 1 each is queried
    /// with one of its keys (training); with Q > 1 with its distinct keys in
    /// order of first appearance, at most Q of them, padded with -1 (evaluation).
    ///
    /// With a shard ([`DataSource::set_shard`]), `batch_size` is the global
    /// batch (a multiple of the shard count): the whole batch is drawn and the
    /// shard's `batch_size / count` sequences are returned.
    pub fn sample(&mut self, batch_size: usize, queries_per_seq: usize) -> Result<RetrievalBatch> {
        let (_, count) = self.shard()?;
        let rows = if count == 1 { batch_size } else { shard_rows(batch_size, count, "batch_size")? };
        let pairs = product(&[rows, self.seq_len], "batch_size * seq_len")?;
        let asked = product(&[rows, queries_per_seq], "batch_size * queries_per_seq")?;
        let mut keys = vec![0i32; pairs];
        let mut values = vec![0i32; pairs];
        let mut queries = vec![0i32; asked];
        let mut targets = vec![0i32; asked];
        // SAFETY: the buffers hold B*L and B*Q ids as the C API requires.
        check(unsafe {
            sys::fwp_retrieval_data_sample(
                self.raw.as_ptr(),
                to_i64(batch_size, "batch_size")?,
                to_i64(queries_per_seq, "queries_per_seq")?,
                keys.as_mut_ptr(),
                values.as_mut_ptr(),
                queries.as_mut_ptr(),
                targets.as_mut_ptr(),
            )
        })?;
        RetrievalBatch::new(rows, self.seq_len, queries_per_seq, keys, values, queries, targets)
    }

    /// The raw handle, for use with `fwp-sys` (an `fwp_data` of kind
    /// `FWP_DATA_RETRIEVAL`). It stays owned by this object.
    pub fn as_raw(&self) -> *mut sys::fwp_retrieval_data {
        self.raw.as_ptr()
    }
}

impl Drop for RetrievalData {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once.
        unsafe { sys::fwp_retrieval_data_destroy(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for RetrievalData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetrievalData").field("seq_len", &self.seq_len).finish()
    }
}

/// Settings of a [`TokenData`] source (`fwp_token_data_config_init`: 8
/// streams, segments of 256 tokens).
///
/// ```
/// let config = fwp::TokenDataConfig::default().batch_size(4).segment_length(64);
/// assert_eq!(config.get_segment_length(), 64);
/// ```
#[derive(Clone, Copy)]
pub struct TokenDataConfig {
    raw: sys::fwp_token_data_config,
}

impl Default for TokenDataConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_token_data_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_token_data_config_init(raw.as_mut_ptr()) };
        TokenDataConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl TokenDataConfig {
    config_field!(
        /// B, the number of parallel streams, >= 1 (default 8).
        batch_size, get_batch_size: i64);
    config_field!(
        /// T, the tokens of one stream per batch, >= 1 (default 256).
        segment_length, get_segment_length: i64);

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_token_data_config {
        &self.raw
    }
}

impl fmt::Debug for TokenDataConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenDataConfig")
            .field("batch_size", &self.raw.batch_size)
            .field("segment_length", &self.raw.segment_length)
            .finish()
    }
}

/// One batch of a [`TokenData`] source: `[batch][length]` inputs and the next
/// token of each as its target.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TokenBatch {
    /// B, the number of streams (the shard's, with a shard).
    pub batch: usize,
    /// T, the segment length.
    pub length: usize,
    /// The input ids, `[batch][length]`.
    pub inputs: Vec<i32>,
    /// The target ids (each input's next token), `[batch][length]`.
    pub targets: Vec<i32>,
}

/// A token file (see [`Tokenizer::encode_file`](crate::Tokenizer::encode_file))
/// read as the authors' ordered iterator reads a corpus: B contiguous streams,
/// each batch the next segment of T tokens of every stream. A checkpoint
/// stores its position ([`DataSource`]), so a resumed run reads what an
/// uninterrupted one would.
///
/// The file is memory-mapped and must not change while the source uses it.
pub struct TokenData {
    raw: NonNull<sys::fwp_data>,
    batch: usize,
    length: usize,
}

// SAFETY: distinct handles may be used from distinct threads; mutation needs `&mut`.
unsafe impl Send for TokenData {}

impl TokenData {
    /// Opens a token file (verified whole first: sizes, checksum, every id
    /// below its vocabulary size). It must hold at least B (T + 1) tokens.
    pub fn new(token_path: impl AsRef<Path>, config: &TokenDataConfig) -> Result<TokenData> {
        let path = path_cstring(token_path.as_ref())?;
        let mut out = ptr::null_mut();
        // SAFETY: NUL-terminated path and a valid config; out receives an owned handle.
        check(unsafe { sys::fwp_token_data_create(path.as_ptr(), &config.raw, &mut out) })?;
        let raw = NonNull::new(out).expect("fwp_token_data_create returned FWP_OK and NULL");
        let mut data = TokenData { raw, batch: 0, length: 0 };
        let config = data.config()?;
        data.batch = to_usize(config.get_batch_size(), "batch_size")?;
        data.length = to_usize(config.get_segment_length(), "segment_length")?;
        Ok(data)
    }

    /// The settings the source was created with.
    pub fn config(&self) -> Result<TokenDataConfig> {
        let mut config = TokenDataConfig::default();
        // SAFETY: struct_size was set by init; valid handle.
        check(unsafe { sys::fwp_token_data_get_config(self.raw.as_ptr(), &mut config.raw) })?;
        Ok(config)
    }

    /// The next batch; the source moves on by one segment (and starts a new
    /// epoch after the last full segment). With a shard
    /// ([`DataSource::set_shard`]) it holds the shard's batch_size / count streams.
    pub fn next_batch(&mut self) -> Result<TokenBatch> {
        let (_, count) = self.shard()?;
        let rows = shard_rows(self.batch, count, "batch_size")?;
        let n = product(&[rows, self.length], "batch_size * segment_length")?;
        let mut inputs = vec![0i32; n];
        let mut targets = vec![0i32; n];
        // SAFETY: both buffers hold B * T ids, the count passed.
        check(unsafe {
            sys::fwp_token_data_next(self.raw.as_ptr(), inputs.as_mut_ptr(), targets.as_mut_ptr(), to_i64(n, "count")?)
        })?;
        Ok(TokenBatch { batch: rows, length: self.length, inputs, targets })
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
        self.read_count(sys::fwp_token_data_epoch, "epoch")
    }

    /// The segment the next batch comes from, in `0..segments_per_epoch()`.
    pub fn position(&self) -> Result<usize> {
        self.read_count(sys::fwp_token_data_position, "segment")
    }

    /// The number of batches in one epoch.
    pub fn segments_per_epoch(&self) -> Result<usize> {
        self.read_count(sys::fwp_token_data_segments_per_epoch, "segments")
    }

    /// The vocabulary size recorded in the token file.
    pub fn vocab_size(&self) -> Result<usize> {
        self.read_count(sys::fwp_token_data_vocab_size, "vocab_size")
    }

    /// The number of tokens N in the token file.
    pub fn num_tokens(&self) -> Result<usize> {
        self.read_count(sys::fwp_token_data_num_tokens, "num_tokens")
    }

    /// The kind of data source as the library reports it ([`DataKind::TokenFile`]).
    pub fn kind(&self) -> DataKind {
        let mut kind = sys::FWP_DATA_TOKEN_FILE;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_data_get_kind(self.raw.as_ptr(), &mut kind) }).expect("fwp_data_get_kind");
        DataKind::from_raw(kind)
    }

    /// The raw handle, for use with `fwp-sys`. It stays owned by this object.
    pub fn as_raw(&self) -> *mut sys::fwp_data {
        self.raw.as_ptr()
    }
}

impl Drop for TokenData {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once.
        unsafe { sys::fwp_data_destroy(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for TokenData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenData").field("batch_size", &self.batch).field("segment_length", &self.length).finish()
    }
}
