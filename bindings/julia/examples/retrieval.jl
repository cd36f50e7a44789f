# Trains the paper's associative-retrieval model (section 6.1) at S = 10 with
# DPFP and the delta rule until the stopping rule: Adam (lr 1e-3), batch 32,
# evaluation every 100 steps on 20 fresh sequences queried with every distinct
# key; stop at eval loss <= 0.001 or after 11 evaluations without improvement.
#
#   FWP_LIBRARY=/path/to/build/libfwp.so julia --project=bindings/julia bindings/julia/examples/retrieval.jl [S]
using FastWeights

function main(num_keys::Int = 10; seed::Int = 1, max_steps::Int = 100_000)
    ctx = Context(seed = seed)
    model = RetrievalModel(ctx; setting = 1, num_keys = num_keys, feature_map = :dpfp, update_rule = :delta)
    train_data = RetrievalData(1, num_keys, seed)
    eval_data = RetrievalData(1, num_keys, seed + 1_000_003)
    opt = Optimizer(model; kind = :adam, learning_rate = 1e-3)
    println("retrieval: setting 1, S = $num_keys, L = $(FastWeights.seq_len(train_data)), dpfp + delta")
    best, since_best, last_eval = Inf32, 0, Inf32
    train_loss = 0.0
    started = time()
    while FastWeights.steps(opt) < max_steps
        zero_grad!(opt)
        train_loss += forward!(model, sample!(train_data, 32))
        backward!(model)
        step!(opt)
        s = FastWeights.steps(opt)
        s % 100 == 0 || continue
        set_training!(model, false)
        last_eval = forward!(model, sample!(eval_data, 20, min(num_keys, 200)))
        set_training!(model, true)
        if last_eval < best
            best, since_best = last_eval, 0
        else
            since_best += 1
        end
        println("step $(lpad(s, 6))  train $(round(train_loss / 100; digits = 5))  eval $(round(last_eval; digits = 5))  ",
            "best $(round(best; digits = 5))  ($(round(time() - started; digits = 1))s)")
        train_loss = 0.0
        last_eval <= 1f-3 && (println("stopped: eval loss <= 0.001"); break)
        since_best >= 11 && (println("stopped: 11 evaluations without improvement"); break)
    end
    println("final eval loss $(round(last_eval; digits = 5)) after $(FastWeights.steps(opt)) steps")
    return last_eval
end

main(isempty(ARGS) ? 10 : parse(Int, ARGS[1]))
