//! Translation metrics: corpus BLEU and chrF as the sacrebleu package computes
//! them (`fwp/metrics.h`).

use std::ffi::{c_char, CString};
use std::fmt;

use fwp_sys as sys;

use crate::error::{check, to_i64, Error, Result};
use crate::layer::{config_enum, config_field, config_flag, rust_enum};

rust_enum! {
    /// The BLEU tokenizer (sacrebleu's `tokenize`).
    BleuTokenizer: fwp_bleu_tokenizer {
        /// mteval-v13a, sacrebleu's default ("13a").
        Mteval13a = FWP_BLEU_TOKENIZE_13A,
        /// Whitespace only ("none"), for pre-tokenized text.
        None = FWP_BLEU_TOKENIZE_NONE,
    }
}

rust_enum! {
    /// BLEU smoothing of n-gram orders without matches (sacrebleu's `smooth_method`).
    BleuSmoothing: fwp_bleu_smoothing {
        /// "exp" (default): the k-th order without a match gets 1 / (2^k * total).
        Exp = FWP_BLEU_SMOOTH_EXP,
        /// "none": an order without a match makes BLEU 0.
        None = FWP_BLEU_SMOOTH_NONE,
        /// "floor": an order without a match gets smooth_value / total.
        Floor = FWP_BLEU_SMOOTH_FLOOR,
        /// "add-k": smooth_value is added to the matches and totals of orders >= 2.
        AddK = FWP_BLEU_SMOOTH_ADD_K,
    }
}

/// BLEU settings (`fwp_bleu_options_init`: sacrebleu's defaults).
///
/// ```
/// let options = fwp::BleuOptions::default().smooth_method(fwp::BleuSmoothing::Floor);
/// assert_eq!(options.get_max_ngram_order(), 4);
/// ```
#[derive(Clone, Copy)]
pub struct BleuOptions {
    raw: sys::fwp_bleu_options,
}

impl Default for BleuOptions {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_bleu_options>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_bleu_options_init(raw.as_mut_ptr()) };
        BleuOptions { raw: unsafe { raw.assume_init() } }
    }
}

impl BleuOptions {
    config_enum!(
        /// The tokenizer (default 13a).
        tokenize, get_tokenize: BleuTokenizer);
    config_enum!(
        /// The smoothing method (default exp).
        smooth_method, get_smooth_method: BleuSmoothing);
    config_field!(
        /// The value of floor and add-k; negative (default) for their defaults 0.1 and 1.
        smooth_value, get_smooth_value: f64);
    config_field!(
        /// The highest n-gram order, in 1..=4 (default 4).
        max_ngram_order, get_max_ngram_order: i32);
    config_flag!(
        /// Average only the orders up to the last one with n-grams (for single sentences; default off).
        effective_order, get_effective_order);

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_bleu_options {
        &self.raw
    }
}

impl fmt::Debug for BleuOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BleuOptions")
            .field("tokenize", &self.get_tokenize())
            .field("smooth_method", &self.get_smooth_method())
            .field("smooth_value", &self.raw.smooth_value)
            .field("max_ngram_order", &self.raw.max_ngram_order)
            .field("effective_order", &self.get_effective_order())
            .finish()
    }
}

/// chrF settings (`fwp_chrf_options_init`: sacrebleu's chrF).
///
/// ```
/// let chrf_plus_plus = fwp::ChrfOptions::default().word_order(2);
/// assert_eq!(chrf_plus_plus.get_char_order(), 6);
/// ```
#[derive(Clone, Copy)]
pub struct ChrfOptions {
    raw: sys::fwp_chrf_options,
}

impl Default for ChrfOptions {
    fn default() -> Self {
        let mut raw = std::mem::MaybeUninit::<sys::fwp_chrf_options>::zeroed();
        // SAFETY: init fills every field.
        unsafe { sys::fwp_chrf_options_init(raw.as_mut_ptr()) };
        ChrfOptions { raw: unsafe { raw.assume_init() } }
    }
}

impl ChrfOptions {
    config_field!(
        /// Character n-gram orders 1..=char_order, in 0..=32 (default 6).
        char_order, get_char_order: i32);
    config_field!(
        /// Word n-gram orders 1..=word_order, in 0..=32 (default 0; 2 is chrF++).
        word_order, get_word_order: i32);
    config_field!(
        /// Weight of recall against precision, finite and >= 0 (default 2).
        beta, get_beta: f64);
    config_flag!(
        /// Keep whitespace inside character n-grams (default off: removed).
        whitespace, get_whitespace);
    config_flag!(
        /// Average the orders' F-scores with epsilon smoothing (chrF++.py's way; default off).
        eps_smoothing, get_eps_smoothing);

    /// The raw C struct, for use with `fwp-sys`.
    pub fn as_raw(&self) -> &sys::fwp_chrf_options {
        &self.raw
    }
}

impl fmt::Debug for ChrfOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChrfOptions")
            .field("char_order", &self.raw.char_order)
            .field("word_order", &self.raw.word_order)
            .field("beta", &self.raw.beta)
            .field("whitespace", &self.get_whitespace())
            .field("eps_smoothing", &self.get_eps_smoothing())
            .finish()
    }
}

/// A corpus BLEU score and its statistics (sacrebleu's `BLEUScore`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BleuScore {
    /// BLEU in [0, 100].
    pub score: f64,
    /// Smoothed n-gram precisions in percent (orders above max_ngram_order are 0).
    pub precisions: [f64; 4],
    /// The brevity penalty, in [0, 1].
    pub brevity_penalty: f64,
    /// hyp_len / ref_len (0 if ref_len is 0).
    pub ratio: f64,
    /// Tokens of the hypotheses.
    pub hyp_len: i64,
    /// Tokens of the closest references.
    pub ref_len: i64,
    /// Clipped n-gram matches of each order.
    pub counts: [i64; 4],
    /// N-grams of each order in the hypotheses.
    pub totals: [i64; 4],
}

/// The texts as NUL-terminated strings and the pointer arrays of the C API.
struct CCorpus {
    _strings: Vec<CString>,
    hypotheses: Vec<*const c_char>,
    rows: Vec<Vec<*const c_char>>,
}

impl CCorpus {
    fn new<H, S, R>(hypotheses: &[H], references: &[S]) -> Result<CCorpus>
    where
        H: AsRef<str>,
        S: AsRef<[R]>,
        R: AsRef<str>,
    {
        let mut strings = Vec::new();
        let mut c_string = |text: &str, what: String| -> Result<*const c_char> {
            let s = CString::new(text).map_err(|_| Error::invalid(format!("{what} contains a NUL byte")))?;
            let p = s.as_ptr();
            strings.push(s); // moving a CString keeps its heap buffer where it is
            Ok(p)
        };
        let mut hyp_ptrs = Vec::with_capacity(hypotheses.len());
        for (i, h) in hypotheses.iter().enumerate() {
            hyp_ptrs.push(c_string(h.as_ref(), format!("hypotheses[{i}]"))?);
        }
        let mut rows = Vec::with_capacity(references.len());
        for (r, stream) in references.iter().enumerate() {
            let stream = stream.as_ref();
            if stream.len() != hypotheses.len() {
                return Err(Error::shape(format!(
                    "references[{r}] has {} lines but there are {} hypotheses",
                    stream.len(),
                    hypotheses.len()
                )));
            }
            let mut row = Vec::with_capacity(stream.len());
            for (i, line) in stream.iter().enumerate() {
                row.push(c_string(line.as_ref(), format!("references[{r}][{i}]"))?);
            }
            rows.push(row);
        }
        Ok(CCorpus { _strings: strings, hypotheses: hyp_ptrs, rows })
    }
}

/// Corpus BLEU of `hypotheses` against one or more reference streams
/// (`references[r][i]` is reference r of hypothesis i), as sacrebleu's
/// corpus_bleu computes it with the given options.
///
/// ```
/// let hyps = ["the cat sat on the mat"];
/// let refs = [["the cat sat on the mat"]];
/// let bleu = fwp::bleu(&hyps, &refs, &fwp::BleuOptions::default()).unwrap();
/// assert!((bleu.score - 100.0).abs() < 1e-9);
/// ```
pub fn bleu<H, S, R>(hypotheses: &[H], references: &[S], options: &BleuOptions) -> Result<BleuScore>
where
    H: AsRef<str>,
    S: AsRef<[R]>,
    R: AsRef<str>,
{
    let corpus = CCorpus::new(hypotheses, references)?;
    let streams: Vec<*const *const c_char> = corpus.rows.iter().map(|row| row.as_ptr()).collect();
    let mut raw = std::mem::MaybeUninit::<sys::fwp_bleu_result>::zeroed();
    // SAFETY: init fills every field.
    unsafe { sys::fwp_bleu_result_init(raw.as_mut_ptr()) };
    let mut result = unsafe { raw.assume_init() };
    // SAFETY: the pointer arrays hold as many valid strings as the counts say; they outlive the call.
    check(unsafe {
        sys::fwp_bleu(
            corpus.hypotheses.as_ptr(),
            to_i64(corpus.hypotheses.len(), "hypotheses.len()")?,
            streams.as_ptr(),
            to_i64(streams.len(), "references.len()")?,
            &options.raw,
            &mut result,
        )
    })?;
    Ok(BleuScore {
        score: result.score,
        precisions: result.precisions,
        brevity_penalty: result.brevity_penalty,
        ratio: result.ratio,
        hyp_len: result.hyp_len,
        ref_len: result.ref_len,
        counts: result.counts,
        totals: result.totals,
    })
}

/// Corpus chrF (0..100) of `hypotheses` against one or more reference
/// streams, as sacrebleu's CHRF computes it with the given options.
///
/// ```
/// let chrf = fwp::chrf(&["¿Dónde está?"], &[["¿Dónde está?"]], &fwp::ChrfOptions::default()).unwrap();
/// assert!((chrf - 100.0).abs() < 1e-9);
/// ```
pub fn chrf<H, S, R>(hypotheses: &[H], references: &[S], options: &ChrfOptions) -> Result<f64>
where
    H: AsRef<str>,
    S: AsRef<[R]>,
    R: AsRef<str>,
{
    let corpus = CCorpus::new(hypotheses, references)?;
    let streams: Vec<*const *const c_char> = corpus.rows.iter().map(|row| row.as_ptr()).collect();
    let mut raw = std::mem::MaybeUninit::<sys::fwp_chrf_result>::zeroed();
    // SAFETY: init fills every field.
    unsafe { sys::fwp_chrf_result_init(raw.as_mut_ptr()) };
    let mut result = unsafe { raw.assume_init() };
    // SAFETY: as in bleu().
    check(unsafe {
        sys::fwp_chrf(
            corpus.hypotheses.as_ptr(),
            to_i64(corpus.hypotheses.len(), "hypotheses.len()")?,
            streams.as_ptr(),
            to_i64(streams.len(), "references.len()")?,
            &options.raw,
            &mut result,
        )
    })?;
    Ok(result.score)
}
