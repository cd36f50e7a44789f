# Tests of FastWeights.jl against a built libfwp. Run from bindings/julia with
#   FWP_LIBRARY=/path/to/build/libfwp.so JULIA_NUM_THREADS=2 julia --project -e 'using Pkg; Pkg.test()'
# (two threads: the data-parallel test runs two ranks on them; with one thread that part is skipped).
using FastWeights
using FastWeights: LibFwp
using Test

const L = LibFwp

# Deterministic inputs in [-1, 1).
noise(dims...; seed = 1) = reshape(Float32[sin(0.37f0 * i + seed) for i in 1:prod(dims)], dims...)

small_layer(ctx; kw...) = Layer(ctx; d_model = 12, num_heads = 2, d_head = 4, kw...)

# An in-process all-reduce for ranks that are Julia threads (tests of the
# callback engine without MPI): the last rank to arrive adds the buffers in
# rank order, so every rank receives bitwise the same sums.
mutable struct ThreadSum
    world_size::Int
    cond::Threads.Condition
    generation::Int
    slots::Vector{Any}
    result::Any
end

ThreadSum(world_size) = ThreadSum(world_size, Threads.Condition(), 0, Any[nothing for _ in 1:world_size], nothing)

function thread_allreduce!(group::ThreadSum, rank::Integer, buffer::Vector)
    lock(group.cond) do
        group.slots[rank+1] = copy(buffer)
        generation = group.generation
        if all(!isnothing, group.slots)
            total = copy(group.slots[1])
            for r in 2:group.world_size
                total .+= group.slots[r]
            end
            group.result = total
            fill!(group.slots, nothing)
            group.generation += 1
            notify(group.cond)
        else
            while group.generation == generation
                wait(group.cond)
            end
        end
        buffer .= group.result
    end
    return nothing
end

# Losses and final parameters of a retrieval model trained with SGD for 4
# steps of global batch 8: by one process (group === nothing) or by rank
# `rank` of two on its shard, averaging gradients through `group`.
function train_retrieval_ranks(rank, group)
    ctx = Context(num_threads = 1, seed = 7)
    model = RetrievalModel(ctx; num_keys = 8, d_head = 16)
    data = RetrievalData(1, 8, 11)
    dist = nothing
    if group !== nothing
        dist = Dist(ctx; engine = :callback, rank = rank, world_size = 2,
            allreduce = buffer -> thread_allreduce!(group, rank, buffer))
        set_shard!(data, rank, 2)
        sync_model!(dist, model)
    end
    opt = Optimizer(model; kind = :sgd, learning_rate = 0.5)
    losses = Float64[]
    for _ in 1:4
        zero_grad!(opt)
        loss = [Float64(forward!(model, sample!(data, 8)))]
        backward!(model)
        if dist !== nothing
            average_gradients!(dist, model) == 2.0 || error("the weights of two ranks sum to 2")
            dist_sum!(dist, loss)
            loss ./= 2
        end
        push!(losses, loss[1])
        step!(opt)
    end
    return losses, reduce(vcat, [vec(getparam(model, i)) for i in 1:num_params(model)])
end

trainable_grads(model) = [getgrad(model, i) for i in 1:num_params(model) if param_info(model, i).trainable]

function error_of(f)
    try
        f()
        return nothing
    catch e
        return e
    end
end

@testset "FastWeights" begin
    @testset "version and errors" begin
        v = FastWeights.version()
        @test v.major == L.FWP_VERSION_MAJOR
        @test FastWeights.version_string() == string(v)
        @test cuda_device_count() >= 0
        ctx = Context(num_threads = 1)
        err = try
            small_layer(ctx; d_head = 0)
            nothing
        catch e
            e
        end
        @test err isa FwpError
        @test err.kind == :invalid_argument
        @test err.status == L.FWP_ERR_INVALID_ARGUMENT
        @test occursin("d_head", err.message)
        @test last_error_message() == err.message
        clear_error()
        @test last_error_message() == ""
        @test_throws FwpError Layer(ctx; no_such_setting = 1)
        @test_throws FwpError Layer(ctx; feature_map = :no_such_map)
        close(ctx)
        @test !isopen(ctx)
        @test_throws FwpError Layer(ctx)
    end

    @testset "layer forward/backward" begin
        ctx = Context(num_threads = 1, seed = 3)
        layer = small_layer(ctx)
        @test FastWeights.config(layer).d_model == 12
        @test FastWeights.config(layer).feature_map == :dpfp
        @test FastWeights.config(layer).carry_state == false
        x = noise(12, 5, 2)
        y = forward!(layer, x)
        @test size(y) == (12, 5, 2)
        @test all(isfinite, y)
        @test any(!=(0), y)
        dx = backward!(layer, noise(12, 5, 2; seed = 2))
        @test size(dx) == size(x)
        @test any(!=(0), dx)
        err = try
            forward!(layer, noise(11, 5, 2))
        catch e
            e
        end
        @test err isa FwpError && err.kind == :shape_mismatch
        fresh = small_layer(ctx)
        err = try
            backward!(fresh, noise(12, 1, 1))
        catch e
            e
        end
        @test err isa FwpError && err.kind == :bad_state
    end

    @testset "input gradient matches finite differences" begin
        ctx = Context(num_threads = 1)
        layer = small_layer(ctx; feature_map = :elu)
        x, r, v = noise(12, 4, 1; seed = 11), noise(12, 4, 1; seed = 12), noise(12, 4, 1; seed = 13)
        forward!(layer, x)
        analytic = sum(Float64.(backward!(layer, r)) .* v)
        eps = 1f-2
        lossat(s) = sum(Float64.(forward!(layer, x .+ s * eps .* v)) .* r)
        numeric = (lossat(1) - lossat(-1)) / (2 * eps)
        @test abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-3) < 2e-2
    end

    @testset "parameters" begin
        ctx = Context(num_threads = 1)
        layer = small_layer(ctx)
        n = num_params(layer)
        @test n > 0
        for i in 1:n
            info = param_info(layer, i)
            @test param_index(layer, info.name) == i
            @test size(getparam(layer, i)) == reverse(info.shape)
        end
        q = param_index(layer, "q_proj.weight")
        @test param_info(layer, q).shape == (8, 12)
        values = noise(12, 8; seed = 9)
        setparam!(layer, q, values)
        @test getparam(layer, "q_proj.weight") == values
        bad = copy(values)
        bad[3] = NaN32
        @test_throws FwpError setparam!(layer, q, bad)
        @test getparam(layer, q) == values
        @test_throws FwpError setparam!(layer, q, values[1:end-1])
        @test_throws FwpError param_info(layer, n + 1)
        @test_throws FwpError param_index(layer, "no.such.param")
        forward!(layer, noise(12, 3, 2))
        backward!(layer, noise(12, 3, 2; seed = 4); dx = false)
        @test any(!=(0), getgrad(layer, q))
        zero_grad!(layer)
        @test all(==(0), getgrad(layer, q))
    end

    @testset "state carry, set/get, step" begin
        ctx = Context(num_threads = 1)
        layer = small_layer(ctx; carry_state = true)
        x = noise(12, 6, 2; seed = 21)
        full = forward!(layer, x)
        st = get_state(layer)
        wn, zn = state_size(layer, 2)
        @test st.batch == 2
        @test length(st.w) == wn == 2 * 2 * 4 * feature_dim(layer)
        @test length(st.z) == zn == 2 * 2 * feature_dim(layer)
        reset_state!(layer)
        y1 = forward!(layer, x[:, 1:3, :])
        y2 = forward!(layer, x[:, 4:6, :])
        @test isapprox(cat(y1, y2; dims = 2), full; atol = 1f-4)
        set_state!(layer, 2; w = st.w, z = st.z)
        @test get_state(layer) == st
        @test_throws FwpError set_state!(layer, 2; w = st.w[2:end])
        reset_state!(layer)
        for t in 1:6
            @test isapprox(step!(layer, x[:, t, :]), full[:, t, :]; atol = 1f-4)
        end
        plain = small_layer(ctx)
        @test_throws FwpError state_grad(plain, 1)
        set_state!(plain, 1; w = noise(state_size(plain, 1)[1]), z = abs.(noise(state_size(plain, 1)[2])))
        forward!(plain, noise(12, 3, 1))
        backward!(plain, noise(12, 3, 1; seed = 7))
        g = state_grad(plain, 1)
        @test length(g.w) == state_size(plain, 1)[1]
        @test any(!=(0), g.w)
        soft = small_layer(ctx; feature_map = :softmax, update_rule = :sum, sum_normalize = false)
        @test feature_dim(soft) == 0
        err = try
            state_size(soft, 1)
        catch e
            e
        end
        @test err isa FwpError && err.kind == :unsupported
    end

    @testset "run states: with_state, copy, reorder, reset" begin
        ctx = Context(num_threads = 1)
        layer = small_layer(ctx)
        set_training!(layer, false)
        st = State(layer, 2)
        @test state_batch(st) == 2
        @test num_state_layers(st) == 1
        wn, zn = state_size(st, 1)
        @test wn == state_size(layer, 2)[1] && zn == state_size(layer, 2)[2]
        @test all(==(0), get_state(st, 1).w)
        x = noise(12, 4, 2; seed = 31)
        # Steps with the external state equal steps with the layer's own.
        for t in 1:4
            @test step!(layer, st, x[:, t, :]) == step!(layer, x[:, t, :])
        end
        @test get_state(st, 1).w == get_state(layer).w
        # reorder (1-based rows) and copy
        before = get_state(st, 1)
        reorder!(st, [2, 2, 1])
        @test state_batch(st) == 3
        per_row = wn ÷ 2
        after = get_state(st, 1)
        @test after.w[1:per_row] == before.w[per_row+1:end]
        @test after.w[2*per_row+1:end] == before.w[1:per_row]
        other = State(layer, 3)
        copy!(other, st)
        @test get_state(other, 1).w == after.w
        @test_throws FwpError reorder!(st, [4])
        reset_state!(st)
        @test all(==(0), get_state(st, 1).w)
        set_state!(st, 1; w = ones(Float32, 3 * per_row))
        @test all(==(1), get_state(st, 1).w)
        y = forward!(layer, st, noise(12, 3, 3; seed = 32))
        @test size(y) == (12, 3, 3)
        # softmax layers keep a key/value cache
        soft = small_layer(ctx; feature_map = :softmax, update_rule = :sum, sum_normalize = false)
        sst = State(soft, 2)
        forward!(soft, sst, noise(12, 3, 2; seed = 33))
        @test cache_length(sst, 1) == 3
        step!(soft, sst, noise(12, 2; seed = 34))
        @test cache_length(sst, 1) == 4
        # the retrieval model carries no state
        model = RetrievalModel(ctx; num_keys = 5, d_head = 16)
        err = try
            State(model, 2)
        catch e
            e
        end
        @test err isa FwpError && err.kind == :unsupported
        # a state outlives the layer it was made for
        close(layer)
        @test state_batch(st) == 3
        close(st)
        @test !isopen(st)
        @test_throws FwpError state_batch(st)
    end

    @testset "optimizer on a layer" begin
        ctx = Context(num_threads = 1)
        layer = small_layer(ctx; init_std = 0.2)
        x, target = noise(12, 4, 2; seed = 41), noise(12, 4, 2; seed = 42)
        opt = Optimizer(layer; kind = :adam, learning_rate = 0.02)
        losses = Float64[]
        for _ in 1:60
            zero_grad!(opt)
            y = forward!(layer, x)
            push!(losses, 0.5 * sum(abs2, y .- target))
            backward!(layer, y .- target; dx = false)
            @test step!(opt) > 0
        end
        @test FastWeights.steps(opt) == 60
        @test losses[end] < 0.8 * losses[1]
        set_learning_rate!(opt, 0.5)
        @test FastWeights.learning_rate(opt) == 0.5f0
        @test_throws FwpError set_learning_rate!(opt, NaN)
        # Closing the layer first defers its destruction until the optimizer goes.
        close(layer)
        @test !isopen(layer)
        @test_throws FwpError forward!(layer, x)
        @test FastWeights.steps(opt) == 60
        close(opt)
        @test layer.ptr == C_NULL
    end

    @testset "learning-rate schedules" begin
        ctx = Context(num_threads = 1)
        layer = small_layer(ctx)
        # Warm-up over 2 steps, cosine down to 0.01 at step 6, the floor after.
        opt = Optimizer(layer; learning_rate = 0.1, lr_schedule = :warmup_cosine, warmup_steps = 2,
            total_steps = 6, min_learning_rate = 0.01)
        cosine(p) = 0.01 + 0.09 * 0.5 * (1 + cos(pi * p))
        expected = [0.0, 0.05, 0.1, cosine(0.25), cosine(0.5), cosine(0.75), 0.01, 0.01]
        for want in expected
            @test isapprox(learning_rate(opt), want; atol = 1e-7)
            step!(opt)  # zero gradients: only the step count matters here
        end
        @test steps(opt) == 8
        # set_learning_rate! sets the peak; it may not go below the floor.
        @test_throws FwpError set_learning_rate!(opt, 0.001)
        close(opt)
        @test_throws FwpError Optimizer(layer; lr_schedule = :inverse_sqrt)  # needs warmup_steps >= 1
        @test_throws FwpError Optimizer(layer; lr_schedule = :sometimes)
        inv = Optimizer(layer; learning_rate = 0.2, lr_schedule = :inverse_sqrt, warmup_steps = 4)
        for _ in 1:16
            step!(inv)
        end
        @test isapprox(learning_rate(inv), 0.2 * sqrt(4 / 16); atol = 1e-7)
        close(inv)
    end

    @testset "retrieval model, data and training" begin
        ctx = Context(num_threads = 1, seed = 5)
        model = RetrievalModel(ctx; num_keys = 5, d_head = 16)
        @test model_kind(model) == :retrieval
        @test FastWeights.config(model).num_keys == 5
        @test FastWeights.config(model).feature_map == :dpfp
        data = RetrievalData(1, 5, 2)
        @test FastWeights.seq_len(data) == 5
        @test FastWeights.seq_len(RetrievalData(2, 5, 2)) == 10
        @test FastWeights.seq_len(RetrievalData(2, 5, 2; num_pairs = 5)) == 5
        @test_throws FwpError RetrievalData(1, 5, 2; num_pairs = 4)
        @test data_kind(data) == :retrieval
        a, b = RetrievalData(1, 5, 17), RetrievalData(1, 5, 17)
        ba, bb = sample!(a, 3), sample!(b, 3)
        @test ba.keys == bb.keys && ba.queries == bb.queries
        for s in 1:3
            @test sort(ba.keys[:, s]) == collect(0:4)
            pos = findfirst(==(ba.queries[1, s]), ba.keys[:, s])
            @test ba.targets[1, s] == ba.values[pos, s]
        end
        eval_batch = sample!(RetrievalData(1, 5, 3), 20, 5)
        loss0, y = forward!(model, eval_batch; outputs = true)
        @test size(y) == (5, 5, 20)
        @test loss0 > 0
        opt = Optimizer(model; learning_rate = 3e-3)
        for _ in 1:300
            zero_grad!(opt)
            @test isfinite(forward!(model, sample!(data, 32)))
            backward!(model)
            step!(opt)
        end
        @test_throws FwpError backward!(model)
        set_training!(model, false)
        @test forward!(model, eval_batch) < 0.7 * loss0
        @test_throws FwpError RetrievalData(1, 1, 0)
        @test_throws FwpError RetrievalBatch(zeros(Int32, 2, 1), zeros(Int32, 3, 1), zeros(Int32, 1, 1),
            zeros(Int32, 1, 1))
    end

    @testset "checkpoint round trip" begin
        path = tempname() * ".safetensors"
        ctx = Context(num_threads = 1)
        params(m) = [getparam(m, i) for i in 1:num_params(m)]
        function train!(opt, model, data, n)
            for _ in 1:n
                zero_grad!(opt)
                forward!(model, sample!(data, 8))
                backward!(model)
                step!(opt)
            end
        end
        model = RetrievalModel(ctx; num_keys = 6, d_head = 16)
        data = RetrievalData(1, 6, 8)
        opt = Optimizer(model; learning_rate = 1e-2)
        train!(opt, model, data, 5)
        save_checkpoint(path, model; optimizer = opt, data = data, metadata = "{\"note\": \"julia test\"}")
        train!(opt, model, data, 3)
        continued = params(model)

        model2 = RetrievalModel(Context(seed = 1234); num_keys = 6, d_head = 16)
        data2 = RetrievalData(1, 6, 999)
        opt2 = Optimizer(model2; learning_rate = 1e-2)
        load_checkpoint!(path, model2; optimizer = opt2, data = data2)
        @test FastWeights.steps(opt2) == 5
        train!(opt2, model2, data2, 3)
        @test params(model2) == continued

        loaded = load_model(ctx, path)
        @test loaded isa RetrievalModel
        @test model_kind(loaded) == :retrieval
        @test FastWeights.config(loaded).num_keys == 6
        typed = load_model(RetrievalModel, ctx, path)
        @test params(typed) == params(loaded)
        @test_throws FwpError load_model(OtherModel, ctx, path)
        other = RetrievalModel(ctx; num_keys = 7, d_head = 16)
        before = params(other)
        err = try
            load_checkpoint!(path, other)
        catch e
            e
        end
        @test err isa FwpError && err.kind == :format
        @test params(other) == before
        err = try
            load_model(ctx, "/nonexistent/dir/model.safetensors")
        catch e
            e
        end
        @test err isa FwpError && err.kind == :io
        rm(path; force = true)
    end

    @testset "translation metrics (sacrebleu fixture case two_references)" begin
        hyps = ["It is a guide to action which ensures that the military always obeys the commands of the party.",
            "he read the book because he was interested in world history", "the cat is on the mat"]
        refs_a = ["It is a guide to action that ensures that the military will forever heed Party commands.",
            "he was interested in world history because he read the book", "there is a cat on the mat"]
        refs_b = ["It is the guiding principle which guarantees the military forces always being under the command of the Party.",
            "he read the book because he was interested in world history", "the cat sat on the mat"]
        b = bleu(hyps, refs_a, refs_b)
        @test abs(b.score - 62.154895663454404) < 0.01
        @test b.counts == [34, 22, 16, 12]
        @test b.totals == [36, 33, 30, 27]
        @test (b.hyp_len, b.ref_len) == (36, 36)
        @test abs(chrf(hyps, refs_a, refs_b) - 75.62160799215695) < 0.01
        @test abs(chrf(hyps, refs_a, refs_b; word_order = 2) - 75.25253466745232) < 0.01
        @test bleu(hyps, refs_b; smooth_method = :none).counts == bleu(hyps, refs_b).counts
        @test bleu(hyps, hyps; tokenize = :none).score ≈ 100.0
        @test_throws FwpError bleu(hyps, refs_a[1:2])
        @test_throws FwpError bleu(hyps)
        @test_throws FwpError bleu(hyps, refs_a; max_ngram_order = 9)
        @test_throws FwpError chrf(hyps, refs_a; beta = -1.0)
        @test_throws FwpError chrf(["a\0b"], ["a"])
    end

    @testset "tokenizer, token files and token data" begin
        dir = mktempdir()
        text = joinpath(dir, "small.txt")
        write(text, "the cat  sat\n\nthe dog sat\nrare\n")
        tok = train_word_tokenizer(text)
        @test tokenizer_kind(tok) == :word
        @test vocab_size(tok) == 7                    # <eos> the sat cat dog rare <unk>
        @test eos_id(tok) == 0
        the = token_to_id(tok, "the")
        @test the isa Int32 && id_to_token(tok, the) == "the"
        @test token_to_id(tok, "zebra") === nothing
        ids = FastWeights.encode(tok, "the cat  sat\n\nthe dog sat\nrare\n")
        @test length(ids) == 11
        @test FastWeights.decode(tok, ids) == "the cat sat\n\nthe dog sat\nrare\n"   # spaces normalised
        @test FastWeights.encode(tok, "the zebra") == Int32[the, unk_id(tok)]
        @test last(FastWeights.encode(tok, "the zebra"; add_eos = true)) == eos_id(tok)
        err = try
            FastWeights.decode(tok, [99])
        catch e
            e
        end
        @test err isa FwpError && err.kind == :out_of_range
        @test vocab_size(train_word_tokenizer([text]; min_count = 2)) == 4
        @test vocab_size(train_word_tokenizer(text; max_size = 3)) == 3
        err = try
            train_word_tokenizer(text; min_count = 0)
        catch e
            e
        end
        @test err isa FwpError && err.kind == :invalid_argument && occursin("min_count", err.message)
        @test_throws FwpError train_word_tokenizer(joinpath(dir, "missing.txt"))

        saved = joinpath(dir, "vocab.fwptok")
        save_tokenizer(saved, tok)
        loaded = load_tokenizer(saved)
        @test vocab_size(loaded) == 7
        @test FastWeights.encode(loaded, "the dog sat\n") == FastWeights.encode(tok, "the dog sat\n")
        err = try
            load_tokenizer(text)
        catch e
            e
        end
        @test err isa FwpError && err.kind == :format

        tokens = joinpath(dir, "small.tokens")
        @test encode_file(tok, text, tokens) == 11
        @test token_file_info(tokens) == (vocab_size = 7, num_tokens = 11)
        @test read_token_file(tokens, 1:11) == ids
        @test read_token_file(tokens, 3:5) == ids[3:5]
        @test_throws FwpError read_token_file(tokens, 10:12)

        close(tok)
        @test !isopen(tok)
        @test_throws FwpError vocab_size(tok)
    end

    @testset "parallel text: pair files and pair data" begin
        dir = mktempdir()
        en, es = joinpath(dir, "train.en"), joinpath(dir, "train.es")
        # 30 aligned lines of 1..6 and 1..8 words; line 4 has an empty target.
        words_en = ["the", "cat", "sat", "on", "a", "mat"]
        words_es = ["el", "gato", "se", "sento", "en", "una", "alfombra", "roja"]
        write(en, join([join(words_en[mod1.(i .+ (0:(i % 6)), 6)], " ") for i in 1:30], "\n") * "\n")
        write(es, join([i == 4 ? "" : join(words_es[mod1.(2i .+ (0:(3i % 8)), 8)], " ") for i in 1:30], "\n") * "\n")
        tok = train_word_tokenizer([en, es])
        pairs = joinpath(dir, "train.pairs")
        info = encode_pair_file(tok, en, es, pairs)
        @test info.num_pairs == 29 && info.skipped_empty == 1 && info.lines == 30
        @test pair_file_info(pairs) == info
        special = pair_special_ids(tok)
        @test special.vocab_size == vocab_size(tok) + 2 == info.vocab_size
        @test special.pad == info.pad_id && special.bos == info.bos_id && special.eos == eos_id(tok)
        err = try
            encode_pair_file(tok, en, es, pairs; empty_lines = :error)
        catch e
            e
        end
        @test err isa FwpError && err.kind == :invalid_argument && occursin("line 4", err.message)
        @test encode_pair_file(tok, en, es, joinpath(dir, "short.pairs"); max_source_tokens = 3).skipped_too_long > 0
        short = joinpath(dir, "short.es")
        write(short, "el\n")
        @test_throws FwpError encode_pair_file(tok, en, short, pairs)

        data = PairData(pairs; max_tokens = 20, seed = 3)
        @test data_kind(data) == :parallel_text
        @test FastWeights.config(data).max_tokens == 20 && FastWeights.config(data).shuffle == true
        seen = zeros(Int, 29)
        for _ in 1:batches_per_epoch(data)
            shape = peek_batch(data)
            b = next_batch!(data)
            @test size(b.source) == (shape.source_length, shape.batch_size)
            @test shape.batch_size * max(shape.source_length, shape.target_length) <= 20
            for r in 1:shape.batch_size
                p = get_pair(data, b.pair_indices[r])
                seen[b.pair_indices[r] + 1] += 1
                n, m = length(p.source), length(p.target)
                @test b.source[1:n, r] == p.source && b.source[n + 1, r] == special.eos
                @test all(==(special.pad), b.source[n + 2:end, r])
                @test b.target_input[1, r] == special.bos && b.target_input[2:m + 1, r] == p.target
                @test b.target_output[1:m, r] == p.target && b.target_output[m + 1, r] == special.eos
                @test b.source_lengths[r] == n + 1 && b.target_lengths[r] == m + 1
            end
        end
        @test all(==(1), seen)
        @test data_epoch(data) == 1
        reset_epoch!(data, 0)
        @test data_epoch(data) == 0 && data_position(data) == 0
        @test max_batch_shape(data).batch_size >= 1

        # A checkpoint stores the position; a fresh source resumes with the same batches.
        next_batch!(data)
        ctx = Context(num_threads = 1, seed = 1)
        model = RetrievalModel(ctx; num_keys = 4, d_head = 8)
        path = joinpath(dir, "pairs.safetensors")
        save_checkpoint(path, model; data = data)
        resumed = PairData(pairs; max_tokens = 20, seed = 3)
        load_checkpoint!(path, model; data = resumed)
        @test data_position(resumed) == 1
        @test next_batch!(resumed) == next_batch!(data)

        bytes = read(pairs)
        bytes[end] ⊻= 0x01
        damaged = joinpath(dir, "damaged.pairs")
        write(damaged, bytes)
        err = try
            pair_file_info(damaged)
        catch e
            e
        end
        @test err isa FwpError && err.kind == :format
        close(data)
        @test_throws FwpError batches_per_epoch(data)
    end

    @testset "language model: training, evaluation, checkpoints, generation" begin
        dir = mktempdir()
        # The corpus, model and training of the Rust test (fwp/tests/lm.rs): lines drawn from four
        # sentences by the same linear congruential generator (UInt64 arithmetic wraps as in Rust).
        sentences = ["the cat sat on the mat", "a dog ran in the park", "the bird sang a song", "my cat and my dog play"]
        lcg = UInt64(12345)
        lines = String[]
        for _ in 1:300
            lcg = lcg * 0x5851f42d4c957f2d + 0x14057b7ef767814f
            push!(lines, sentences[Int((lcg >> 33) % 4) + 1])
        end
        text = joinpath(dir, "corpus.txt")
        write(text, join(lines, "\n") * "\n")
        tok = train_word_tokenizer(text)
        if sentencepiece_available()
            sp = train_sentencepiece(text; vocab_size = 30)
            @test tokenizer_kind(sp) == :sentencepiece && vocab_size(sp) == 30
            @test FastWeights.decode(sp, FastWeights.encode(sp, "the cat sat on the mat\n")) == "the cat sat on the mat\n"
        else
            err = try
                train_sentencepiece(text; vocab_size = 30)
            catch e
                e
            end
            @test err isa FwpError && err.kind == :unsupported
        end
        tokens = joinpath(dir, "corpus.tokens")
        encode_file(tok, text, tokens)
        data = TokenData(tokens; batch_size = 4, segment_length = 16)
        @test data_kind(data) == :token_file
        @test FastWeights.config(data) == (batch_size = 4, segment_length = 16)
        @test vocab_size(data) == vocab_size(tok)
        @test segments_per_epoch(data) >= 10
        @test num_tokens(data) == token_file_info(tokens).num_tokens
        # Shards are blocks of streams (columns) of every batch.
        whole = TokenData(tokens; batch_size = 4, segment_length = 16)
        halves = [set_shard!(TokenData(tokens; batch_size = 4, segment_length = 16), i, 2) for i in 0:1]
        @test_throws FwpError set_shard!(whole, 0, 3)
        @test get_shard(whole) == (0, 1)
        for _ in 1:2
            w = next_batch!(whole)
            for i in 0:1
                h = next_batch!(halves[i+1])
                @test size(h.inputs) == (16, 2)
                @test h.inputs == w.inputs[:, (2i+1):(2i+2)] && h.targets == w.targets[:, (2i+1):(2i+2)]
            end
        end

        ctx = Context(num_threads = 1, seed = 11)
        kw = (vocab_size = vocab_size(tok), num_layers = 2, d_ff = 64, dropout = 0, seed = 5,
            attention = (d_model = 32, num_heads = 2, d_head = 16))
        model = LanguageModel(ctx; kw...)
        @test model_kind(model) == :language
        c = FastWeights.config(model)
        @test c.num_layers == 2 && c.attention.d_model == 32 && c.attention.feature_map == :elu
        @test c.position == :sinusoidal && c.pre_norm == false && c.cutoffs == Int[]
        @test lm_config(; preset = "cpu-small").num_layers == 4
        @test lm_config(; cutoffs = [10, 20], div_val = 2).num_cutoffs == 2
        @test_throws FwpError lm_config(; preset = "gigantic")
        @test_throws FwpError lm_config(; cutoffs = collect(1:9))
        err = try
            LanguageModel(ctx; kw..., vocab_size = 0)
        catch e
            e
        end
        @test err isa FwpError && err.kind == :invalid_argument && occursin("vocab_size", err.message)

        stream = read_token_file(tokens, 1:200)
        before = FastWeights.evaluate(model, stream; mode = :segments, length = 16)
        @test before.scored == 199
        opt = Optimizer(model; learning_rate = 1f-2)
        losses = Float64[]
        for _ in 1:40
            batch = next_batch!(data)
            @test size(batch.inputs) == (16, 4)
            @test batch.inputs[2:end, :] == batch.targets[1:end-1, :]
            zero_grad!(opt)
            push!(losses, forward!(model, batch.inputs, batch.targets))
            backward!(model)
            step!(opt)
        end
        @test last(losses) < 0.6 * first(losses)
        after = FastWeights.evaluate(model, stream; mode = :segments, length = 16)
        @test after.total_nll / after.scored < 0.6 * before.total_nll / before.scored
        for mode in (:sliding, :carry)
            @test FastWeights.evaluate(model, stream[1:60]; mode = mode, length = 16).scored == 59
        end
        @test_throws FwpError FastWeights.evaluate(model, stream; mode = :no_such_mode, length = 16)

        # Errors: ids outside the vocabulary, shapes.
        err = try
            forward!(model, Int32[1 2; 3 99], Int32[1 2; 3 4])
        catch e
            e
        end
        @test err isa FwpError && err.kind == :out_of_range
        @test_throws FwpError forward!(model, ones(Int32, 3, 2), ones(Int32, 2, 2))

        # Checkpoint with the data position; the loaded model scores the same.
        path = joinpath(dir, "lm.safetensors")
        save_checkpoint(path, model; optimizer = opt, data = data, metadata = "julia test")
        loaded = load_model(LanguageModel, ctx, path)
        @test vocab_size(loaded) == vocab_size(model)
        @test FastWeights.evaluate(loaded, stream; mode = :segments, length = 16) == after
        resumed = TokenData(tokens; batch_size = 4, segment_length = 16)
        load_checkpoint!(path, loaded; data = resumed)
        @test data_position(resumed) == data_position(data)
        @test next_batch!(resumed) == next_batch!(data)
        @test_throws FwpError load_model(RetrievalModel, ctx, path)

        # Step by step equals the forward pass; carried halves equal the whole.
        set_training!(loaded, false)
        x = Int32[1, 4, 2, 8, 5, 7]
        y = Int32[4, 2, 8, 5, 7, 3]
        loss, per_token = forward!(loaded, reshape(x, 6, 1), reshape(y, 6, 1); token_losses = true)
        state = State(loaded, 1)
        @test num_state_layers(state) == 2
        for t in 1:6
            lp = step!(loaded, state, [x[t]])
            @test size(lp) == (vocab_size(loaded), 1)
            @test isapprox(-lp[y[t] + 1, 1], per_token[t, 1]; atol = 1f-3)
        end
        carried = State(loaded, 1)
        a = forward!(loaded, reshape(x[1:3], 3, 1), reshape(y[1:3], 3, 1); state = carried)
        b = forward!(loaded, reshape(x[4:6], 3, 1), reshape(y[4:6], 3, 1); state = carried)
        @test isapprox((a + b) / 2, loss; atol = 1e-4)
        # The carried memory goes into a checkpoint and comes back bit for bit.
        with_state = joinpath(dir, "carried.safetensors")
        save_checkpoint(with_state, loaded; state = carried)
        next = forward!(loaded, reshape(x[1:3], 3, 1), reshape(y[1:3], 3, 1); state = carried)
        restored = State(loaded, 2)
        load_checkpoint!(with_state, loaded; state = restored)
        @test state_batch(restored) == 1
        @test forward!(loaded, reshape(x[1:3], 3, 1), reshape(y[1:3], 3, 1); state = restored) == next
        @test_throws FwpError load_checkpoint!(path, loaded; state = restored)  # saved without a state
        @test step!(loaded, State(loaded, 1), [x[1]]; log_probs = false) === nothing
        @test_throws FwpError step!(loaded, State(loaded, 2), [x[1]])

        # Generation: greedy continues the learnt sentences, seeded sampling repeats, stop tokens stop.
        prompt = FastWeights.encode(tok, "the cat")
        gen = State(loaded, 1)
        greedy = generate!(loaded, gen, prompt; max_new_tokens = 6, temperature = 0)
        @test length(greedy) == 6
        @test FastWeights.decode(tok, greedy[1:3]) == "sat on the"
        reset_state!(gen)
        @test generate!(loaded, gen, prompt; max_new_tokens = 6, temperature = 0) == greedy
        reset_state!(gen)
        stopped = generate!(loaded, gen, prompt; max_new_tokens = 20, temperature = 0, stop_tokens = [eos_id(tok)])
        @test !(eos_id(tok) in stopped) && length(stopped) < 20
        sampled = map(1:2) do _
            reset_state!(gen)
            generate!(loaded, gen, prompt; max_new_tokens = 8, temperature = 0.8, top_k = 5, seed = 9)
        end
        @test sampled[1] == sampled[2]
        rng = Ref{UInt64}(1)
        @test sample_token!(rng, [-3.0, -0.1, -2.0]; temperature = 0) == 1
        @test_throws FwpError sample_token!(rng, [0.0, NaN])
        close(opt)
    end

    @testset "translation model: config, errors, copy task, checkpoint" begin
        # The model and copy task of the Rust test (fwp/tests/seq2seq.rs): V = 12 (bos 0, pad 1,
        # eos 2, words 3..11), d_model 16, 1 + 1 layers, no dropout.
        bos, pad, eos, V = 0, 1, 2, 12
        kw = (vocab_size = V, pad_id = pad, bos_id = bos, eos_id = eos, encoder_layers = 1, decoder_layers = 1,
            d_ff = 64, dropout = 0, label_smoothing = 0, init_std = 0.1, seed = 3,
            attention = (d_model = 16, num_heads = 2, d_head = 8, init_std = 0.1))
        ctx = Context(num_threads = 1, seed = 5)
        model = Seq2SeqModel(ctx; kw...)
        @test model_kind(model) == :seq2seq
        @test vocab_size(model) == V
        c = FastWeights.config(model)
        @test c.encoder_layers == 1 && c.d_ff == 64 && c.tie_embeddings == true && c.position == :sinusoidal
        @test c.encoder_attention.d_model == 16 && c.cross_attention.num_heads == 2
        @test c.decoder_attention.feature_map == :elu && c.decoder_attention.update_rule == :sum
        @test seq2seq_config(; preset = "base").encoder_attention.d_model == 512
        @test seq2seq_config(; preset = "cpu-small", decoder_attention = (update_rule = :delta,)).decoder_attention.update_rule ==
              L.FWP_UPDATE_DELTA
        @test_throws FwpError seq2seq_config(; preset = "gigantic")
        err = try
            Seq2SeqModel(ctx; kw..., vocab_size = 2)
        catch e
            e
        end
        @test err isa FwpError && err.kind == :invalid_argument && occursin("vocab_size", err.message)

        # A padded batch as next_batch! gives it: S × B and T × B matrices.
        function copy_batch(sentences)
            B = length(sentences)
            S = maximum(length, sentences) + 1
            source, target_input, target_output = fill(Int32(pad), S, B), fill(Int32(pad), S, B), fill(Int32(pad), S, B)
            for (b, x) in enumerate(sentences)
                n = length(x)
                source[1:n, b] .= x
                source[n + 1, b] = eos
                target_input[1, b] = bos
                target_input[2:n + 1, b] .= x
                target_output[1:n, b] .= x
                target_output[n + 1, b] = eos
            end
            lengths = Int32[length(x) + 1 for x in sentences]
            return (source = source, source_lengths = lengths, target_input = target_input,
                target_output = target_output, target_lengths = lengths)
        end
        lcg = UInt64(2021)
        word() = (lcg = lcg * 0x5851f42d4c957f2d + 0x14057b7ef767814f; Int32(3 + (lcg >> 33) % (V - 3)))
        sentence(n) = Int32[word() for _ in 1:n]

        small = copy_batch([Int32[3, 4], Int32[5]])
        err = try
            forward!(model, merge(small, (source_lengths = Int32[3],)))
        catch e
            e
        end
        @test err isa FwpError && err.kind == :shape_mismatch
        err = try
            bad = copy(small.source)
            bad[1, 1] = V
            forward!(model, merge(small, (source = bad,)))
        catch e
            e
        end
        @test err isa FwpError && err.kind == :out_of_range
        @test forward!(model, small).tokens == 5
        @test_throws FwpError translate(model, Vector{Int32}[])
        @test_throws FwpError translate(model, [Int32[3], Int32[]])
        @test_throws FwpError translate(model, [Int32[3]]; beam_size = 0)
        @test_throws FwpError translate(model, [Int32[3]]; stop = :never)

        held_out = [sentence(n) for n in (2, 5, 3, 4, 1)]
        opt = Optimizer(model; learning_rate = 1f-2, lr_schedule = :inverse_sqrt, warmup_steps = 50)
        first_nll = 0.0
        copied = false
        for step in 1:2000
            zero_grad!(opt)
            loss = forward!(model, copy_batch([sentence(1 + Int((word() - 3) % 5)) for _ in 1:16]))
            step == 1 && (first_nll = loss.mean_nll)
            backward!(model)
            step!(opt)
            if step % 100 == 0 && translate(model, held_out; beam_size = 1).tokens == held_out &&
               translate(model, held_out; beam_size = 4).tokens == held_out
                copied = true
                break
            end
        end
        @test first_nll > 1.5
        @test copied
        out = translate(model, held_out; beam_size = 4)
        @test out.tokens == held_out
        @test all(s -> -1 < s <= 0, out.scores)
        @test FastWeights.evaluate(model, copy_batch(held_out)).mean_nll < 0.5

        path = joinpath(mktempdir(), "seq2seq.safetensors")
        save_checkpoint(path, model)
        loaded = load_model(Seq2SeqModel, ctx, path)
        @test translate(loaded, held_out; beam_size = 4) == out
        @test load_model(ctx, path) isa Seq2SeqModel
        @test_throws FwpError load_model(LanguageModel, ctx, path)
        close(opt)
    end

    @testset "data-parallel training (callback engine), shards" begin
        @test engine_available(:callback)
        @test_throws FwpError engine_available(:carrier_pigeon)
        ctx = Context(num_threads = 1, seed = 3)
        if !engine_available(:mpi)
            @test error_of(() -> Dist(ctx)).kind == :unsupported
        end
        keep = buffer -> nothing
        # The callback engine without a callback, a rank outside the group, no ranks, empty buckets:
        # (settings, the field the message names, the kinds fwp.h allows for it).
        for (kw, field, kinds) in (((engine = :callback, world_size = 1), "allreduce", (:null_pointer, :invalid_argument)),
                ((engine = :callback, rank = 2, world_size = 2, allreduce = keep), "rank", (:out_of_range, :invalid_argument)),
                ((engine = :callback, rank = 0, world_size = 0, allreduce = keep), "world_size", (:invalid_argument,)),
                ((engine = :callback, world_size = 1, bucket_elements = 0, allreduce = keep), "bucket_elements",
                    (:invalid_argument,)))
            err = error_of(() -> Dist(ctx; kw...))
            @test err isa FwpError && err.kind in kinds && occursin(field, err.message)
        end
        if engine_available(:mpi)
            # The callback engine's fields on the MPI engine, refused before MPI starts.
            @test occursin("allreduce", error_of(() -> Dist(ctx; allreduce = keep)).message)
            @test error_of(() -> Dist(ctx; rank = 1, world_size = 2)).kind == :invalid_argument
        end
        @test_throws FwpError DistConfig(no_such_setting = 1)
        @test_throws FwpError DistConfig(engine = :carrier_pigeon)
        @test_throws FwpError DistConfig(user_data = C_NULL)

        # One rank: its all-reduce has nothing to add, so averaging with weight 2 changes nothing.
        dist = Dist(ctx; engine = :callback, rank = 0, world_size = 1, allreduce = keep, bucket_elements = 100)
        @test (dist.rank, dist.world_size) == (0, 1)
        model = RetrievalModel(ctx; num_keys = 8, d_head = 16)
        before = getparam(model, 1)
        @test sync_model!(dist, model) === model
        @test getparam(model, 1) == before
        forward!(model, sample!(RetrievalData(1, 8, 5), 6))
        backward!(model)
        g = trainable_grads(model)
        @test any(x -> any(!=(0), x), g)
        @test average_gradients!(dist, model, 2.0) == 2.0
        @test trainable_grads(model) == g
        @test dist_sum!(dist, [0.25, -3.0]) == [0.25, -3.0]
        @test error_of(() -> dist_sum!(dist, Float64[])).kind == :invalid_argument
        for weight in (-1.0, NaN, 0.0)
            @test error_of(() -> average_gradients!(dist, model, weight)).kind == :invalid_argument
        end
        other = RetrievalModel(Context(num_threads = 1); num_keys = 8, d_head = 16)
        @test error_of(() -> sync_model!(dist, other)).kind == :context_mismatch
        # Gathering the memory of a group of one copies it.
        lm = LanguageModel(ctx; vocab_size = 9, num_layers = 1, d_ff = 16, dropout = 0,
            attention = (d_model = 8, num_heads = 2, d_head = 4))
        carried, gathered = State(lm, 2), State(lm, 2)
        forward!(lm, Int32[1 2; 3 4; 5 6], Int32[3 4; 5 6; 7 8]; state = carried)
        @test gather_state!(dist, carried, gathered) === gathered
        @test get_state(gathered, 1) == get_state(carried, 1)
        @test any(!=(0), get_state(carried, 1).w)
        @test error_of(() -> gather_state!(dist, carried, State(lm, 3))).kind == :shape_mismatch
        FastWeights.barrier(dist)
        close(dist)
        @test !isopen(dist)
        @test_throws FwpError FastWeights.barrier(dist)

        # Rank 0 of two whose partner holds the same numbers (the sums are the doubles); then a
        # callback that throws fails the collective, names why, and breaks the group.
        fail = Ref(false)
        dist = Dist(ctx; engine = :callback, rank = 0, world_size = 2,
            allreduce = buffer -> (fail[] && error("the link to rank 1 is down"); buffer .*= 2; nothing))
        @test dist_sum!(dist, [1.5]) == [3.0]
        forward!(model, sample!(RetrievalData(1, 8, 6), 4))
        backward!(model)
        g = trainable_grads(model)
        @test average_gradients!(dist, model) == 2.0
        @test all(map((a, b) -> maximum(abs.(a .- b)) <= 1f-6, trainable_grads(model), g))
        fail[] = true
        err = error_of(() -> average_gradients!(dist, model))
        @test err isa FwpError && err.kind == :distributed && err.status == L.FWP_ERR_DISTRIBUTED
        @test occursin("the link to rank 1 is down", err.message)
        fail[] = false
        @test error_of(() -> dist_sum!(dist, [1.0])).kind == :distributed
        dist = Dist(ctx; engine = :callback, rank = 0, world_size = 1, allreduce = keep)
        FastWeights.abort(dist, 3)
        @test error_of(() -> FastWeights.barrier(dist)).kind == :distributed

        # A shard is its rows (columns here) of the global batch.
        whole = RetrievalData(1, 8, 21)
        parts = [set_shard!(RetrievalData(1, 8, 21), i, 4) for i in 0:3]
        @test get_shard(whole) == (0, 1) && get_shard(parts[2]) == (1, 4)
        @test_throws FwpError set_shard!(whole, 4, 4)
        @test_throws FwpError set_shard!(whole, 0, 0)
        @test get_shard(whole) == (0, 1)
        @test_throws FwpError sample!(parts[1], 6)
        for _ in 1:2
            batch = sample!(whole, 8)
            for i in 0:3
                part, cols = sample!(parts[i+1], 8), (2i+1):(2i+2)
                @test part.keys == batch.keys[:, cols] && part.values == batch.values[:, cols]
                @test part.queries == batch.queries[:, cols] && part.targets == batch.targets[:, cols]
            end
        end

        # Two ranks on two threads follow one process on the whole batch (julia -t 2 or more).
        if Threads.nthreads() >= 2
            want_losses, want_params = train_retrieval_ranks(nothing, nothing)
            group = ThreadSum(2)
            results = fetch.([Threads.@spawn(train_retrieval_ranks(r, group)) for r in 0:1])
            @test results[1][2] == results[2][2]
            @test results[1][1] == results[2][1]
            @test maximum(abs.(results[1][2] .- want_params)) <= 1e-5
            @test maximum(abs.(results[1][1] .- want_losses)) <= 1e-5
            fresh = RetrievalModel(Context(num_threads = 1, seed = 7); num_keys = 8, d_head = 16)
            @test want_params != reduce(vcat, [vec(getparam(fresh, i)) for i in 1:num_params(fresh)])
        else
            @test_skip "two ranks on threads need julia -t 2"
        end
    end

    @testset "exports: mutating names end in !, no generic names" begin
        exported = names(FastWeights)
        for name in (:sample, :forward, :backward, :config, :device, :steps, :seq_len, :learning_rate,
                :version, :num_threads, :retrieval_forward, :retrieval_model, :evaluate, :encode, :decode,
                :barrier, :abort)
            @test !(name in exported)
        end
        for name in (:forward!, :backward!, :zero_grad!, :step!, :sample!, :set_state!, :reset_state!,
                :load_checkpoint!, :set_training!, :setparam!, :set_learning_rate!, :generate!, :next_batch!,
                :sample_token!, :sync_model!, :average_gradients!, :dist_sum!, :gather_state!, :set_shard!)
            @test name in exported
        end
        @test RetrievalModel <: Model && OtherModel <: Model
        @test RetrievalData <: DataSource && TokenData <: DataSource && PairData <: DataSource
        @test LanguageModel <: Model && Seq2SeqModel <: Model
        @test :translate in exported && :Seq2SeqModel in exported
    end

    @testset "logger and handle lifetimes" begin
        messages = Tuple{Symbol,String}[]
        ctx = Context(num_threads = 1, log_level = :debug, logger = (level, msg) -> push!(messages, (level, msg)))
        layer = small_layer(ctx)
        close(ctx)
        @test size(forward!(layer, noise(12, 2, 1))) == (12, 2, 1)
        @test all(m -> m[1] isa Symbol, messages)
        close(layer)
        close(layer)
        @test !isopen(layer)
    end
end
