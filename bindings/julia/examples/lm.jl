# Trains a small word-level language model (paper section 6.3: linear attention
# with the delta rule) on a text file, saves a checkpoint and the tokenizer,
# loads both back and generates a continuation of a prompt. Without a text file
# a small generated corpus is written to the output directory and used. Fails
# if training does not lower the perplexity or the reloaded model scores
# differently from the saved one.
#
#   FWP_LIBRARY=/path/to/build/libfwp.so julia --project=bindings/julia bindings/julia/examples/lm.jl [TEXT_FILE]
using FastWeights

const BATCH = 8
const SEGMENT = 32

# Sentences drawn by a fixed linear congruential generator: enough structure
# for a small model to learn in a few hundred steps.
function write_demo_corpus(path)
    subjects = ["the cat", "a dog", "the bird", "my friend"]
    verbs = ["sat on", "looked at", "ran to"]
    objects = ["the mat", "a tree", "the house", "the river"]
    state = UInt64(2021)
    pick(n) = (state = state * 0x5851f42d4c957f2d + 0x14057b7ef767814f; Int((state >> 33) % n) + 1)
    open(path, "w") do io
        for _ in 1:2000
            s, v, o = pick(4), pick(3), pick(4)
            println(io, subjects[s], " ", verbs[v], " ", objects[o], " .")
        end
    end
    return path
end

function main(text_path = nothing; steps::Int = 200, out_dir = tempdir(), prompt = "the cat", seed::Int = 1)
    text_path = text_path === nothing ? write_demo_corpus(joinpath(out_dir, "fwp-lm-example.txt")) : text_path
    tokens_path = joinpath(out_dir, "fwp-lm-example.tokens")
    tokenizer_path = joinpath(out_dir, "fwp-lm-example.fwptok")
    checkpoint_path = joinpath(out_dir, "fwp-lm-example.safetensors")

    # Vocabulary and token file.
    tok = train_word_tokenizer(text_path; max_size = 10_000)
    n = encode_file(tok, text_path, tokens_path)
    println("$text_path: $n tokens, vocabulary $(vocab_size(tok))")

    # A small model: 2 blocks of linear attention (elu + 1) with the delta rule.
    ctx = Context(seed = seed)
    model = LanguageModel(ctx; vocab_size = vocab_size(tok), num_layers = 2, d_ff = 128, dropout = 0,
        attention = (d_model = 64, num_heads = 4, d_head = 16))
    data = TokenData(tokens_path; batch_size = BATCH, segment_length = SEGMENT)
    stream = read_token_file(tokens_path, 1:min(n, 1000))
    before = FastWeights.evaluate(model, stream; mode = :carry, length = SEGMENT)

    opt = Optimizer(model; learning_rate = 3f-3, clip_grad_norm = 1f0)
    window, started = 0.0, time()
    for step in 1:steps
        batch = next_batch!(data)
        zero_grad!(opt)
        window += forward!(model, batch.inputs, batch.targets)
        backward!(model)
        step!(opt)
        if step % 50 == 0 || step == steps
            count = step % 50 == 0 ? 50 : step % 50
            println("step $(lpad(step, 5))  train loss $(round(window / count; digits = 3))  ",
                "($(round(time() - started; digits = 1))s)")
            window = 0.0
        end
    end
    after = FastWeights.evaluate(model, stream; mode = :carry, length = SEGMENT)
    println("perplexity on the first $(length(stream)) tokens: $(round(before.perplexity; digits = 2)) -> ",
        "$(round(after.perplexity; digits = 2))")
    after.perplexity < before.perplexity || error("training did not lower the perplexity")

    # Save, then load into new objects as another program would.
    save_checkpoint(checkpoint_path, model; optimizer = opt, data = data, metadata = "examples/lm.jl")
    save_tokenizer(tokenizer_path, tok)
    tok = load_tokenizer(tokenizer_path)
    loaded = load_model(LanguageModel, ctx, checkpoint_path)
    FastWeights.evaluate(loaded, stream; mode = :carry, length = SEGMENT) == after ||
        error("the reloaded model scores differently")

    ids = FastWeights.encode(tok, prompt)
    isempty(ids) && error("the prompt has no words")
    state = State(loaded, 1)
    show_text(ids) = replace(FastWeights.decode(tok, ids), "\n" => " / ")
    greedy = generate!(loaded, state, ids; max_new_tokens = 12, temperature = 0)
    println("greedy:  $prompt | $(show_text(greedy))")
    reset_state!(state)
    sampled = generate!(loaded, state, ids; max_new_tokens = 12, temperature = 0.8, top_k = 10, seed = seed)
    println("sampled: $prompt | $(show_text(sampled))")
    println("saved $checkpoint_path and $tokenizer_path")
end

main(isempty(ARGS) ? nothing : ARGS[1])
