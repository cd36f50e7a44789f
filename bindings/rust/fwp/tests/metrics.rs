//! Tests of BLEU and chrF (`fwp::bleu`, `fwp::chrf`) against the freshly built
//! libfwp: sacrebleu's scores for one case of tests/fixtures/mt_metrics.json,
//! options, and errors.

use fwp::{bleu, chrf, BleuOptions, BleuSmoothing, ChrfOptions, Status};

const HYPS: [&str; 3] = [
    "It is a guide to action which ensures that the military always obeys the commands of the party.",
    "he read the book because he was interested in world history",
    "the cat is on the mat",
];
const REFS_A: [&str; 3] = [
    "It is a guide to action that ensures that the military will forever heed Party commands.",
    "he was interested in world history because he read the book",
    "there is a cat on the mat",
];
const REFS_B: [&str; 3] = [
    "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
    "he read the book because he was interested in world history",
    "the cat sat on the mat",
];

#[test]
fn two_reference_streams_match_sacrebleu() {
    // sacrebleu 2.6.0 (fixture case "two_references").
    let score = bleu(&HYPS, &[REFS_A, REFS_B], &BleuOptions::default()).unwrap();
    assert!((score.score - 62.154895663454404).abs() < 0.01, "{score:?}");
    assert_eq!(score.counts, [34, 22, 16, 12]);
    assert_eq!(score.totals, [36, 33, 30, 27]);
    assert_eq!((score.hyp_len, score.ref_len), (36, 36));
    assert!((score.brevity_penalty - 1.0).abs() < 1e-12);
    let c = chrf(&HYPS, &[REFS_A, REFS_B], &ChrfOptions::default()).unwrap();
    assert!((c - 75.62160799215695).abs() < 0.01, "{c}");
    let c_plus_plus = chrf(&HYPS, &[REFS_A, REFS_B], &ChrfOptions::default().word_order(2)).unwrap();
    assert!((c_plus_plus - 75.25253466745232).abs() < 0.01, "{c_plus_plus}");
}

#[test]
fn owned_strings_and_options_work() {
    let hyps: Vec<String> = HYPS.iter().map(|s| s.to_string()).collect();
    let refs: Vec<Vec<String>> = vec![REFS_B.iter().map(|s| s.to_string()).collect()];
    let exp = bleu(&hyps, &refs, &BleuOptions::default()).unwrap();
    let none = bleu(&hyps, &refs, &BleuOptions::default().smooth_method(BleuSmoothing::None)).unwrap();
    assert!(exp.score > 0.0 && exp.score < 100.0);
    assert_eq!(exp.counts, none.counts);
    let unigram = bleu(&hyps, &refs, &BleuOptions::default().max_ngram_order(1)).unwrap();
    assert_eq!(unigram.precisions[1], 0.0);
}

#[test]
fn bad_inputs_are_errors() {
    let e = bleu(&HYPS, &[&REFS_A[..2]], &BleuOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::ShapeMismatch);
    let e = chrf(&["a\0b"], &[["a"]], &ChrfOptions::default()).unwrap_err();
    assert_eq!(e.status(), Status::InvalidArgument);
    assert!(e.message().contains("hypotheses[0]"), "{}", e.message());
    let empty: [&str; 0] = [];
    let e = bleu(&empty, &[empty], &BleuOptions::default()).unwrap_err();
    assert!(e.message().contains("num_sentences"), "{}", e.message());
    let no_refs: [[&str; 1]; 0] = [];
    assert!(bleu(&["a"], &no_refs, &BleuOptions::default()).is_err());
    let e = bleu(&["a"], &[["a"]], &BleuOptions::default().max_ngram_order(9)).unwrap_err();
    assert!(e.message().contains("max_ngram_order"), "{}", e.message());
    let e = chrf(&["a"], &[["a"]], &ChrfOptions::default().beta(-1.0)).unwrap_err();
    assert!(e.message().contains("beta"), "{}", e.message());
}
