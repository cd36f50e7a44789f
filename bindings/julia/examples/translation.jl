# Trains a tiny translation model (paper section 6.2: an encoder-decoder
# Transformer with linear attention) on a dozen English -> Spanish sentence
# pairs, then translates the English sentences back out of text. The parallel
# text is written to a temporary folder, one word-level tokenizer is built over
# both sides, and the pair file feeds the training loop (Adam with the inverse
# square-root schedule). Fails unless greedy decoding and a beam of 4 both
# translate every training sentence exactly.
#
#   FWP_LIBRARY=/path/to/build/libfwp.so julia --project=bindings/julia bindings/julia/examples/translation.jl
using FastWeights

const PAIRS = [
    "the cat sleeps" => "el gato duerme",
    "the dog eats" => "el perro come",
    "the cat eats fish" => "el gato come pescado",
    "the dog drinks water" => "el perro bebe agua",
    "i see the house" => "yo veo la casa",
    "you see the dog" => "tu ves el perro",
    "we eat bread" => "nosotros comemos pan",
    "the house is big" => "la casa es grande",
    "the water is cold" => "el agua esta fria",
    "i drink cold water" => "yo bebo agua fria",
    "the big dog sleeps" => "el perro grande duerme",
    "you eat the bread" => "tu comes el pan",
]

function main(; steps::Int = 300, out_dir = mktempdir(), seed::Int = 1)
    # The parallel text: two line-aligned files.
    english_path = joinpath(out_dir, "fwp-translation-example.en")
    spanish_path = joinpath(out_dir, "fwp-translation-example.es")
    pair_path = joinpath(out_dir, "fwp-translation-example.pairs")
    write(english_path, join(first.(PAIRS), "\n") * "\n")
    write(spanish_path, join(last.(PAIRS), "\n") * "\n")

    # One word-level vocabulary over both languages; pad and bos are added after it.
    tok = train_word_tokenizer([english_path, spanish_path])
    special = pair_special_ids(tok)
    info = encode_pair_file(tok, english_path, spanish_path, pair_path)
    println("$(info.num_pairs) sentence pairs, vocabulary $(special.vocab_size) ",
        "(pad $(special.pad), bos $(special.bos), eos $(special.eos))")
    data = PairData(pair_path; max_tokens = 64, seed = seed)

    # A tiny model: 1 + 1 layers, d_model 32, linear attention (elu + 1, sum rule) everywhere.
    # init_std is larger than the paper's 0.02 (made for d_model 1024): small embeddings would
    # start far below the position encodings.
    ctx = Context(seed = seed)
    model = Seq2SeqModel(ctx; preset = "cpu-small", vocab_size = special.vocab_size, pad_id = special.pad,
        bos_id = special.bos, eos_id = special.eos, encoder_layers = 1, decoder_layers = 1, d_ff = 64,
        dropout = 0, label_smoothing = 0, init_std = 0.1,
        attention = (d_model = 32, num_heads = 4, d_head = 8, init_std = 0.1))

    opt = Optimizer(model; learning_rate = 1f-2, clip_grad_norm = 1f0, lr_schedule = :inverse_sqrt,
        warmup_steps = 30)
    nll, tokens, started = 0.0, 0, time()
    for step in 1:steps
        zero_grad!(opt)
        loss = forward!(model, next_batch!(data))
        backward!(model)
        step!(opt)
        nll += loss.nll_sum
        tokens += loss.tokens
        if step % 50 == 0 || step == steps
            println("step $(lpad(step, 5))  nll per token $(round(nll / tokens; digits = 3))  ",
                "($(round(time() - started; digits = 1))s)")
            nll, tokens = 0.0, 0
        end
    end
    close(opt)

    # Translate every English sentence from its text; decode the output back to text.
    sources = [FastWeights.encode(tok, english) for english in first.(PAIRS)]
    wrong = 0
    for (name, beam) in (("greedy", 1), ("beam 4", 4))
        out = translate(model, sources; beam_size = beam)
        println("$name:")
        for ((english, spanish), ids) in zip(PAIRS, out.tokens)
            # The tokenizer refuses the ids added for the model: keep them from it.
            words = filter(id -> !(id in (special.pad, special.bos, special.eos)), ids)
            text = FastWeights.decode(tok, words)
            if ids == FastWeights.encode(tok, spanish)
                println("  $(rpad(english, 22)) -> $text")
            else
                wrong += 1
                println("  $(rpad(english, 22)) -> $text   (expected: $spanish)")
            end
        end
    end
    close(data)
    foreach(rm, (english_path, spanish_path, pair_path))
    wrong == 0 || error("$wrong of $(2 * length(PAIRS)) translations are wrong after $steps steps")
    println("all $(length(PAIRS)) training sentences translated correctly (greedy and beam 4)")
end

main()
