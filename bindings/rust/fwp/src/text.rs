//! Text for language modelling: tokenizers (word level with the WikiText
//! conventions, SentencePiece) and binary token files.

use std::ffi::{c_char, CString};
use std::fmt;
use std::path::Path;
use std::ptr::{self, NonNull};

use fwp_sys as sys;

use crate::error::{check, to_i64, to_usize, Result};
use crate::layer::{config_enum, config_field, config_flag, rust_enum};
use crate::model::path_cstring;

rust_enum! {
    /// The kind of a [`Tokenizer`].
    TokenizerKind: fwp_tokenizer_kind {
        /// Word level, WikiText conventions (`<eos>` = 0 ends every line).
        Word = FWP_TOKENIZER_WORD,
        /// SentencePiece subwords (BPE or unigram).
        SentencePiece = FWP_TOKENIZER_SENTENCEPIECE,
    }
}

rust_enum! {
    /// The model type of SentencePiece training.
    SentencePieceModel: fwp_sentencepiece_model {
        /// Unigram language model (SentencePiece's default).
        Unigram = FWP_SENTENCEPIECE_UNIGRAM,
        /// Byte-pair encoding.
        Bpe = FWP_SENTENCEPIECE_BPE,
    }
}

/// Settings of word-level vocabulary building (`fwp_word_tokenizer_config_init`:
/// every word kept).
///
/// ```
/// let config = fwp::WordTokenizerConfig::default().min_count(2).max_size(10_000);
/// assert_eq!(config.get_min_count(), 2);
/// ```
#[derive(Clone, Copy)]
pub struct WordTokenizerConfig {
    raw: sys::fwp_word_tokenizer_config,
}

impl Default for WordTokenizerConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_word_tokenizer_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_word_tokenizer_config_init(raw.as_mut_ptr()) };
        WordTokenizerConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl WordTokenizerConfig {
    config_field!(
        /// Words seen fewer times become `<unk>`; >= 1 (default 1).
        min_count, get_min_count: i64);
    config_field!(
        /// Largest vocabulary, `<eos>` and `<unk>` included (the most frequent
        /// words are kept); 0 (default) = no limit, else >= 2.
        max_size, get_max_size: i64);

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_word_tokenizer_config {
        &self.raw
    }
}

impl fmt::Debug for WordTokenizerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WordTokenizerConfig")
            .field("min_count", &self.raw.min_count)
            .field("max_size", &self.raw.max_size)
            .finish()
    }
}

/// Settings of SentencePiece training (`fwp_sentencepiece_config_init`:
/// unigram, 8000 pieces, full character coverage, one thread).
///
/// ```
/// use fwp::{SentencePieceConfig, SentencePieceModel};
/// let config = SentencePieceConfig::default().model_type(SentencePieceModel::Bpe).vocab_size(500);
/// assert_eq!(config.get_model_type(), SentencePieceModel::Bpe);
/// ```
#[derive(Clone, Copy)]
pub struct SentencePieceConfig {
    raw: sys::fwp_sentencepiece_config,
}

impl Default for SentencePieceConfig {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_sentencepiece_config>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_sentencepiece_config_init(raw.as_mut_ptr()) };
        SentencePieceConfig { raw: unsafe { raw.assume_init() } }
    }
}

impl SentencePieceConfig {
    config_enum!(
        /// Unigram (default) or BPE.
        model_type, get_model_type: SentencePieceModel);
    config_field!(
        /// Vocabulary size, `<eos>` and `<unk>` included, in [3, 2^24] (default 8000).
        vocab_size, get_vocab_size: i64);
    config_field!(
        /// Share of the text's characters covered, in [0.98, 1] (default 1).
        character_coverage, get_character_coverage: f32);
    config_flag!(
        /// Characters outside the vocabulary become byte pieces instead of `<unk>` (default false).
        byte_fallback, get_byte_fallback);
    config_field!(
        /// Training threads, in [1, 128] (default 1); the model depends on it.
        num_threads, get_num_threads: i32);
    config_field!(
        /// Lines longer than this many bytes are left out of training (default 16384).
        max_sentence_length, get_max_sentence_length: i64);
    config_flag!(
        /// Print SentencePiece's training log to stderr (default false).
        verbose, get_verbose);
    config_flag!(
        /// The vocabulary also holds `<pad>` (id 2) and `<bos>` (id 3), for translation
        /// ([`encode_pair_file`](crate::encode_pair_file)); vocab_size must then be >= 5 (default false).
        pad_bos, get_pad_bos);

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_sentencepiece_config {
        &self.raw
    }
}

impl fmt::Debug for SentencePieceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentencePieceConfig")
            .field("model_type", &self.get_model_type())
            .field("vocab_size", &self.raw.vocab_size)
            .field("character_coverage", &self.raw.character_coverage)
            .field("byte_fallback", &self.get_byte_fallback())
            .field("num_threads", &self.raw.num_threads)
            .field("max_sentence_length", &self.raw.max_sentence_length)
            .field("verbose", &self.get_verbose())
            .field("pad_bos", &self.get_pad_bos())
            .finish()
    }
}

/// A tokenizer: maps text to `i32` token ids and back. Word level (built from
/// text files, the WikiText conventions of the authors' toolkit) or
/// SentencePiece (trained with the SentencePiece library when the build has
/// it, see [`Tokenizer::sentencepiece_available`]). Every line end is `<eos>`
/// (id 0).
///
/// ```no_run
/// use fwp::{Tokenizer, WordTokenizerConfig};
/// let tokenizer = Tokenizer::train_word(&["train.txt"], &WordTokenizerConfig::default())?;
/// let ids = tokenizer.encode("the cat sat\n", true)?;
/// assert_eq!(tokenizer.decode(&ids)?, "the cat sat\n");
/// tokenizer.save("vocab.fwptok")?;
/// # Ok::<(), fwp::Error>(())
/// ```
pub struct Tokenizer {
    raw: NonNull<sys::fwp_tokenizer>,
}

// SAFETY: distinct handles may be used from distinct threads; a tokenizer is
// not shared between threads (no `Sync`).
unsafe impl Send for Tokenizer {}

/// The paths as the NUL-terminated strings the C API takes.
fn path_list<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<CString>> {
    paths.iter().map(|p| path_cstring(p.as_ref())).collect()
}

impl Tokenizer {
    fn from_out(out: *mut sys::fwp_tokenizer) -> Tokenizer {
        Tokenizer { raw: NonNull::new(out).expect("libfwp returned FWP_OK and a NULL tokenizer") }
    }

    /// Whether this build of libfwp has SentencePiece (else training or loading
    /// a SentencePiece tokenizer fails with [`Status::Unsupported`](crate::Status::Unsupported)).
    pub fn sentencepiece_available() -> bool {
        // SAFETY: no arguments.
        unsafe { sys::fwp_tokenizer_sentencepiece_available() != 0 }
    }

    /// Builds a word-level vocabulary from text files, read line by line in order.
    pub fn train_word<P: AsRef<Path>>(paths: &[P], config: &WordTokenizerConfig) -> Result<Tokenizer> {
        let names = path_list(paths)?;
        let pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut out = ptr::null_mut();
        // SAFETY: pointers holds names.len() NUL-terminated strings kept alive by names.
        check(unsafe {
            sys::fwp_tokenizer_train_word(
                pointers.as_ptr(),
                to_i64(pointers.len(), "paths.len()")?,
                &config.raw,
                &mut out,
            )
        })?;
        Ok(Tokenizer::from_out(out))
    }

    /// Trains a SentencePiece model on text files, one sentence per line
    /// (deterministic; nothing is written to disk).
    pub fn train_sentencepiece<P: AsRef<Path>>(paths: &[P], config: &SentencePieceConfig) -> Result<Tokenizer> {
        let names = path_list(paths)?;
        let pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut out = ptr::null_mut();
        // SAFETY: pointers holds names.len() NUL-terminated strings kept alive by names.
        check(unsafe {
            sys::fwp_tokenizer_train_sentencepiece(
                pointers.as_ptr(),
                to_i64(pointers.len(), "paths.len()")?,
                &config.raw,
                &mut out,
            )
        })?;
        Ok(Tokenizer::from_out(out))
    }

    /// Loads a tokenizer saved by [`Tokenizer::save`] (verified whole: a
    /// damaged file fails with [`Status::Format`](crate::Status::Format)).
    pub fn load(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path_cstring(path.as_ref())?;
        let mut out = ptr::null_mut();
        // SAFETY: NUL-terminated path; out receives an owned handle.
        check(unsafe { sys::fwp_tokenizer_load(path.as_ptr(), &mut out) })?;
        Ok(Tokenizer::from_out(out))
    }

    /// Saves the tokenizer (written to a temporary file and renamed into place).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path_cstring(path.as_ref())?;
        // SAFETY: valid handle and NUL-terminated path.
        check(unsafe { sys::fwp_tokenizer_save(self.raw.as_ptr(), path.as_ptr()) })
    }

    /// Word level or SentencePiece.
    pub fn kind(&self) -> TokenizerKind {
        let mut kind = sys::FWP_TOKENIZER_WORD;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_tokenizer_get_kind(self.raw.as_ptr(), &mut kind) }).expect("fwp_tokenizer_get_kind");
        TokenizerKind::from_raw(kind)
    }

    /// The number of token ids; every id is in `0..vocab_size`.
    pub fn vocab_size(&self) -> usize {
        let mut size = 0i64;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_tokenizer_vocab_size(self.raw.as_ptr(), &mut size) })
            .expect("fwp_tokenizer_vocab_size");
        usize::try_from(size).expect("libfwp reported a negative vocabulary size")
    }

    /// The id of `<eos>`, the token of every line end (0).
    pub fn eos_id(&self) -> i32 {
        let mut id = 0i32;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_tokenizer_eos_id(self.raw.as_ptr(), &mut id) }).expect("fwp_tokenizer_eos_id");
        id
    }

    /// The id of `<unk>`, the token of unknown words or characters.
    pub fn unk_id(&self) -> i32 {
        let mut id = 0i32;
        // SAFETY: valid handle and output pointer; the call cannot fail then.
        check(unsafe { sys::fwp_tokenizer_unk_id(self.raw.as_ptr(), &mut id) }).expect("fwp_tokenizer_unk_id");
        id
    }

    /// The id of one token of the vocabulary given by its exact bytes (a
    /// lookup, not an encoding), or `None` if the vocabulary lacks it.
    pub fn token_to_id(&self, token: impl AsRef<[u8]>) -> Option<i32> {
        let token = token.as_ref();
        let mut id = -1i32;
        // SAFETY: token holds len bytes; valid handle and output pointer.
        check(unsafe {
            sys::fwp_tokenizer_token_to_id(self.raw.as_ptr(), token.as_ptr().cast(), token.len(), &mut id)
        })
        .expect("fwp_tokenizer_token_to_id with valid pointers");
        (id >= 0).then_some(id)
    }

    /// The bytes of the token `id` (words are byte strings and may hold
    /// bytes that are not UTF-8). An id outside the vocabulary fails with
    /// [`Status::OutOfRange`](crate::Status::OutOfRange).
    pub fn id_to_token_bytes(&self, id: i32) -> Result<Vec<u8>> {
        let mut length = 0usize;
        // SAFETY: capacity 0 with a NULL buffer asks for the length only.
        check(unsafe { sys::fwp_tokenizer_id_to_token(self.raw.as_ptr(), id, ptr::null_mut(), 0, &mut length) })?;
        let mut buffer = vec![0u8; length + 1];
        // SAFETY: buffer holds length + 1 bytes (the token and its NUL).
        check(unsafe {
            sys::fwp_tokenizer_id_to_token(self.raw.as_ptr(), id, buffer.as_mut_ptr().cast(), buffer.len(), &mut length)
        })?;
        buffer.truncate(length);
        Ok(buffer)
    }

    /// The token `id` as text (bytes that are not UTF-8 become U+FFFD).
    pub fn id_to_token(&self, id: i32) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.id_to_token_bytes(id)?).into_owned())
    }

    /// Encodes text (any bytes) to ids: every line end is `<eos>`; with
    /// `add_eos` a last line without a terminator is ended too, as a text file
    /// is encoded.
    pub fn encode(&self, text: impl AsRef<[u8]>, add_eos: bool) -> Result<Vec<i32>> {
        let text = text.as_ref();
        let mut count = 0i64;
        // SAFETY: text holds len bytes; a NULL id buffer of capacity 0 asks for the count.
        check(unsafe {
            sys::fwp_tokenizer_encode(
                self.raw.as_ptr(),
                text.as_ptr().cast(),
                text.len(),
                add_eos as i32,
                ptr::null_mut(),
                0,
                &mut count,
            )
        })?;
        let mut ids = vec![0i32; to_usize(count, "count")?];
        // SAFETY: ids holds count ids, the capacity passed.
        check(unsafe {
            sys::fwp_tokenizer_encode(
                self.raw.as_ptr(),
                text.as_ptr().cast(),
                text.len(),
                add_eos as i32,
                ids.as_mut_ptr(),
                to_i64(ids.len(), "capacity")?,
                &mut count,
            )
        })?;
        Ok(ids)
    }

    /// Decodes ids to the exact bytes of the text (`<eos>` becomes `"\n"`; word
    /// level: the words of a line joined by single spaces). An id outside the
    /// vocabulary fails with [`Status::OutOfRange`](crate::Status::OutOfRange).
    pub fn decode_bytes(&self, ids: &[i32]) -> Result<Vec<u8>> {
        let mut length = 0usize;
        let num_ids = to_i64(ids.len(), "ids.len()")?;
        // SAFETY: ids holds num_ids ids; a NULL text of capacity 0 asks for the length.
        check(unsafe {
            sys::fwp_tokenizer_decode(self.raw.as_ptr(), ids.as_ptr(), num_ids, ptr::null_mut(), 0, &mut length)
        })?;
        let mut text = vec![0u8; length + 1];
        // SAFETY: text holds length + 1 bytes (the text and its NUL).
        check(unsafe {
            sys::fwp_tokenizer_decode(
                self.raw.as_ptr(),
                ids.as_ptr(),
                num_ids,
                text.as_mut_ptr().cast(),
                text.len(),
                &mut length,
            )
        })?;
        text.truncate(length);
        Ok(text)
    }

    /// Decodes ids to text (bytes that are not UTF-8 become U+FFFD; see
    /// [`Tokenizer::decode_bytes`] for the exact bytes).
    pub fn decode(&self, ids: &[i32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    /// Encodes a text file (read line by line, as [`Tokenizer::encode`] with
    /// `add_eos`) into a binary token file for [`TokenData`](crate::TokenData)
    /// and [`read_token_file`]; returns the number of tokens written.
    pub fn encode_file(&self, text_path: impl AsRef<Path>, token_path: impl AsRef<Path>) -> Result<usize> {
        let text_path = path_cstring(text_path.as_ref())?;
        let token_path = path_cstring(token_path.as_ref())?;
        let mut count = 0i64;
        // SAFETY: valid handle, NUL-terminated paths, valid output pointer.
        check(unsafe {
            sys::fwp_token_file_encode(self.raw.as_ptr(), text_path.as_ptr(), token_path.as_ptr(), &mut count)
        })?;
        to_usize(count, "num_tokens")
    }

    /// The raw handle, for use with `fwp-sys`. It stays owned by this object.
    pub fn as_raw(&self) -> *mut sys::fwp_tokenizer {
        self.raw.as_ptr()
    }
}

impl Drop for Tokenizer {
    fn drop(&mut self) {
        // SAFETY: the handle is owned and released once.
        unsafe { sys::fwp_tokenizer_destroy(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer").field("kind", &self.kind()).field("vocab_size", &self.vocab_size()).finish()
    }
}

/// The sizes of a token file, from [`token_file_info`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TokenFileInfo {
    /// The vocabulary size of the tokenizer that wrote it (every id is below it).
    pub vocab_size: usize,
    /// The number of tokens.
    pub num_tokens: usize,
}

/// Verifies a whole token file (header, size, checksum, every id below the
/// vocabulary size) and reports its sizes; a damaged file fails with
/// [`Status::Format`](crate::Status::Format).
pub fn token_file_info(path: impl AsRef<Path>) -> Result<TokenFileInfo> {
    let path = path_cstring(path.as_ref())?;
    let (mut vocab_size, mut num_tokens) = (0i64, 0i64);
    // SAFETY: NUL-terminated path; valid output pointers.
    check(unsafe { sys::fwp_token_file_info(path.as_ptr(), &mut vocab_size, &mut num_tokens) })?;
    Ok(TokenFileInfo {
        vocab_size: to_usize(vocab_size, "vocab_size")?,
        num_tokens: to_usize(num_tokens, "num_tokens")?,
    })
}

/// Reads `count` ids of a token file from token `offset` on (the range must lie
/// inside the file, else [`Status::OutOfRange`](crate::Status::OutOfRange)).
pub fn read_token_file(path: impl AsRef<Path>, offset: usize, count: usize) -> Result<Vec<i32>> {
    let path = path_cstring(path.as_ref())?;
    let mut ids = vec![0i32; count];
    // SAFETY: NUL-terminated path; ids holds count ids.
    check(unsafe {
        sys::fwp_token_file_read(path.as_ptr(), to_i64(offset, "offset")?, ids.as_mut_ptr(), to_i64(count, "count")?)
    })?;
    Ok(ids)
}
