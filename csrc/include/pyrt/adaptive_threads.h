// A thread count that follows the load: with the default thread count (no PYRT_NUM_THREADS, no
// set_num_threads(n > 0)), a model's parallel step uses fewer threads while other processes keep
// the cores busy, and all of them again once the cores are free (docs/environment.md). A step's
// barriers wait for every thread of the team, so a team larger than the cores left free waits at
// each barrier for a partner queued behind another process: SmolLM2 decode kept 25 % of its
// speed on 2 threads with another process spinning on one of 2 cores, 100 % on 1 thread.
//
// The signal: the count of runnable tasks on the machine (/proc/loadavg), sampled by the master
// thread when a team starts (all of its threads are running then, so the team subtracts exactly
// itself, and the idle workers of earlier larger teams that are still running), at most every few
// milliseconds. A change of the count takes several samples in a row
// agreeing (hysteresis): one stray task never shrinks the team. The decision is made per step,
// never per barrier, and the logits do not depend on it (the summation order is the same on any
// number of threads).
#pragma once

namespace pyrt {

// Threads the next parallel step of a model should use: num_threads() when it was set explicitly
// or adaptation is off; otherwise num_threads() or fewer while the cores are taken.
int team_threads();

// Called by the master thread of every team as the team starts (ThreadTeam::current()), with the
// team's size and the OS thread ids of the master's idle OpenMP workers (those of earlier, larger
// teams: libgomp may still spin them, and they are this process's, not other load); samples the
// load when a sample is due. Never throws, never allocates.
void note_team_start(int size, const int* idle_worker_tids, int idle_workers);

// Threads the last team started with (0 before the first).
int last_team_threads();

// Adaptation: PYRT_ADAPTIVE_THREADS (default on; "0" turns it off), or set at run time.
bool adaptive_threads_enabled();
void set_adaptive_threads_enabled(bool enabled);  // also starts again from num_threads()

// For tests: others >= 0 replaces the measured count of runnable tasks outside the team, online > 0
// the machine's (and this process's) CPU count, and every team start takes a sample; others < 0
// measures again. The adapted count is kept (set_adaptive_threads_enabled resets it).
void set_fake_load(int others, int online);

// Whether the thread count was set explicitly (PYRT_NUM_THREADS or set_num_threads(n > 0)): then it
// is used exactly, never adapted. Defined in runtime.cc.
bool num_threads_explicit();

}  // namespace pyrt
