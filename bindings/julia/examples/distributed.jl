# Data-parallel training of the associative-retrieval model with MPI.jl: every
# MPI rank holds a replica, draws its shard of each global batch (set_shard!),
# and the ranks average their gradients through fwp's callback engine, whose
# all-reduce is MPI.Allreduce!, before every SGD step; so all replicas take the
# step one process would take on the whole batch. Rank 0 prints the global
# loss; the job exits non-zero if the replicas end different or the loss does
# not fall.
#
#   FWP_LIBRARY=/path/to/build/libfwp.so mpiexecjl -n 2 --project=bindings/julia \
#       julia bindings/julia/examples/distributed.jl [steps] [global batch]
#
# (MPI.jl must be in the environment: `julia --project=bindings/julia -e 'using Pkg; Pkg.add("MPI")'`,
# and `mpiexecjl` comes from `MPI.install_mpiexecjl()`.) The callback engine
# needs no MPI inside libfwp; a libfwp built with MPI can instead do the
# communication itself with `Dist(ctx)` (engine = :mpi), as long as MPI.jl and
# libfwp use the same MPI library.
using MPI
using FastWeights

function main(steps::Int = 300, global_batch::Int = 32; num_keys::Int = 6, seed::Int = 1)
    MPI.Init()
    comm = MPI.COMM_WORLD
    rank, nranks = MPI.Comm_rank(comm), MPI.Comm_size(comm)
    global_batch % nranks == 0 || error("the global batch ($global_batch) must be a multiple of $nranks ranks")

    ctx = Context(num_threads = 1, seed = seed)
    # fwp hands the callback a Vector{Float32} (gradients) or Vector{Float64}
    # (weights, dist_sum!) to sum over the ranks in place.
    dist = Dist(ctx; engine = :callback, rank = rank, world_size = nranks,
        allreduce = buffer -> MPI.Allreduce!(buffer, +, comm))
    model = RetrievalModel(ctx; num_keys = num_keys)
    sync_model!(dist, model)                  # rank 0's parameters everywhere
    data = RetrievalData(1, num_keys, seed)   # the same generator on every rank ...
    set_shard!(data, rank, nranks)            # ... each keeping its rows of every batch
    opt = Optimizer(model; kind = :sgd, learning_rate = 1.0)
    rank == 0 && println("distributed: $nranks MPI ranks, global batch $global_batch ",
        "($(global_batch ÷ nranks) per rank), S = $num_keys")

    losses = Float64[]
    for step in 1:steps
        zero_grad!(opt)
        loss = [Float64(forward!(model, sample!(data, global_batch)))]
        backward!(model)
        average_gradients!(dist, model)       # equal shards: weight 1, the plain mean
        step!(opt)
        push!(losses, dist_sum!(dist, loss)[1] / nranks)
        if rank == 0 && (step <= 5 || step % 25 == 0 || step == steps)
            println("step $(lpad(step, 5))  loss $(round(losses[end]; digits = 6))")
        end
    end

    # Every replica must equal rank 0's bit for bit.
    mine = reduce(vcat, [vec(getparam(model, i)) for i in 1:num_params(model)])
    theirs = copy(mine)
    MPI.Bcast!(theirs, comm; root = 0)
    differing = MPI.Allreduce(mine == theirs ? 0 : 1, +, comm)
    window = min(10, steps ÷ 2)
    first_mean, last_mean = sum(losses[1:window]) / window, sum(losses[end-window+1:end]) / window
    ok = differing == 0 && last_mean < 0.9 * first_mean
    if rank == 0
        println("replicas differing from rank 0: $differing; mean loss of the first $window steps ",
            "$(round(first_mean; digits = 6)), of the last $(round(last_mean; digits = 6))")
        ok || println(stderr, differing > 0 ? "FAILED: the replicas differ" : "FAILED: the loss did not fall")
    end
    FastWeights.barrier(dist)
    close(dist)
    MPI.Finalize()
    return ok
end

exit(main((parse(Int, a) for a in ARGS)...) ? 0 : 1)
