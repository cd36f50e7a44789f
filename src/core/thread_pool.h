// The CPU threads every parallel op runs on: one process-wide pool of workers
// that sleep until a job arrives. Why not an OpenMP team per op: the ops are
// many and small, and an OpenMP region forks, then joins at a barrier that
// waits for every thread of the team; on a shared machine one descheduled
// thread stalls them all (measured: two threads 1.5x slower than one with one
// competing process). Here a job is cut into chunks that threads claim one at a
// time; the caller works too, and waits only for claimed chunks to finish, never
// for a worker that has not started, so a stalled worker's share moves to the
// others and a job never costs much more than running it alone.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace fwp {

// Runs body(chunk) for every chunk in [0, chunks) on up to `max_threads`
// threads (the calling thread included) and returns when all have finished.
// Chunks are claimed dynamically. The first exception thrown by a chunk is
// rethrown here after every claimed chunk has finished; chunks not yet started
// then are skipped. A call from inside a running chunk (nested parallelism) or
// while the pool serves another caller runs every chunk on the calling thread.
void run_in_pool(int max_threads, int64_t chunks, const std::function<void(int64_t)>& body);

// True on a pool worker, or on a caller while its job runs.
bool in_parallel_region();

// The default number of CPU threads: FWP_NUM_THREADS if set, else the first
// number of OMP_NUM_THREADS if set, else the CPUs this process may run on (its
// affinity mask), else std::thread::hardware_concurrency(), else 1. An unset or
// empty variable is skipped; a variable that is not an integer >= 1 is
// reported through `bad_variable` (its name and value) and skipped.
int default_num_threads(std::string* bad_variable = nullptr);

}  // namespace fwp
