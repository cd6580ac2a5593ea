/*  runner.h — the task runner: a pool of worker processes, one per slot.

    The engine hands the runner every task except the inline built-ins
    (echo, double, fail), which it runs in its own process (starter.h).

    Each worker (worker.h) is a forked child in its own process group,
    talking to the engine over a socketpair. A task that crashes, hangs or
    floods cannot take the engine down:
      - a worker that dies mid-task fails that task ("task process crashed:
        signal 11") and is replaced;
      - a task past its timeout gets its cancel flag raised (SIGUSR1 to the
        worker); it fails with "timed out after N ms" when it returns, or
        after KEEL_RUNNER_STOP_GRACE_MS its worker's whole process group is
        killed (SIGKILL) and the worker replaced;
      - keel_runner_cancel kills the process group and reports nothing.
    Children are reaped with waitpid; the runner makes its process a child
    subreaper (prctl) so that a command's orphans are reaped here too, and it
    reaps any child of the process (waitpid(-1, WNOHANG)): the engine forks
    nothing else.

    The runner is driven by its owner's poll loop: poll the fds from
    keel_runner_fds, wake at keel_runner_next_deadline, then call
    keel_runner_process. All times are zclock_mono milliseconds.
*/
#ifndef KEEL_ENGINE_RUNNER_H
#define KEEL_ENGINE_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "error.h"
#include "worker.h"

#define KEEL_RUNNER_STOP_GRACE_MS 1000

typedef struct _keel_runner_t keel_runner_t;

typedef struct {
    uint64_t execution_id;
    bool ok;             // true: data is the output; false: data is the error text
    const uint8_t *data; // valid only during the callback
    size_t size;
    int64_t run_us; // wall time of the execution, microseconds
    bool permanent; // failed, and a retry would fail the same way (worker.h)
} keel_runner_result_t;

// The monotonic clock in microseconds (what run_us is measured with).
int64_t keel_runner_usecs (void);

typedef void (keel_runner_done_fn) (const keel_runner_result_t *result, void *arg);

// A running task saved its memory (data valid only during the call).
typedef void (keel_runner_checkpoint_fn) (uint64_t execution_id, const uint8_t *data, size_t size,
                                          void *arg);

typedef struct {
    keel_runner_done_fn *done;             // every task that ended (not cancelled ones)
    keel_runner_checkpoint_fn *checkpoint; // may be NULL
    void *arg;
} keel_runner_handlers_t;

// Starts `slots` workers. max_output caps a task's output. Returns NULL and
// fills err if no worker could be started.
keel_runner_t *keel_runner_new (int slots, size_t max_output, keel_error_t *err);

// Kills every worker's process group, reaps them, frees everything, nulls
// *self_p. Idempotent.
void keel_runner_destroy (keel_runner_t **self_p);

int keel_runner_slots (const keel_runner_t *self);
int keel_runner_free_slots (const keel_runner_t *self);

// Starts req (copied into the worker's request; see worker.h) on an idle
// worker. timeout_ms 0 = no timeout. Returns KEEL_ERR_FULL when no worker
// is idle, KEEL_ERR_STATE if the id is already running, KEEL_ERR_IO if the
// worker could not take it (it is then replaced).
keel_err keel_runner_start (keel_runner_t *self, const keel_worker_request_t *req,
                            int64_t timeout_ms, int64_t now);

// Kills execution_id (its worker's process group) and replaces the worker;
// no result is reported. Returns KEEL_ERR_NOTFOUND if it is not running.
keel_err keel_runner_cancel (keel_runner_t *self, uint64_t execution_id);

// Kills every running task, waits (bounded, ~2 s) until their process groups
// are gone, replaces the workers. Returns the number of tasks killed; sets
// *all_gone_p (if not NULL) to false if some process group outlived the wait.
int keel_runner_kill_all (keel_runner_t *self, bool *all_gone_p);

bool keel_runner_is_running (const keel_runner_t *self, uint64_t execution_id);

// The worker pid (= its process group) running execution_id, or 0.
pid_t keel_runner_pid_of (const keel_runner_t *self, uint64_t execution_id);

// Fills fds with the worker socket fds to poll for input; returns how many.
int keel_runner_fds (const keel_runner_t *self, int *fds, int max);

// The earliest task deadline or respawn time, or INT64_MAX.
int64_t keel_runner_next_deadline (const keel_runner_t *self);

// Reads checkpoints and finished results, fails crashed and timed-out
// tasks, reaps children and respawns workers. Calls handlers->done for every
// task that ended (not for cancelled ones) and handlers->checkpoint for
// every checkpoint of a running task. Returns the number of results reported.
int keel_runner_process (keel_runner_t *self, int64_t now, const keel_runner_handlers_t *handlers);

// The same after the owner's poll: reads only the workers whose fds are
// among the nreadable in readable (the others would block), and reaps
// children only when one was readable or KEEL_RUNNER_REAP_MS passed (a
// worker that ends makes its fd readable; a command's orphans wait that
// long). nreadable < 0: every worker, every time (keel_runner_process).
#define KEEL_RUNNER_REAP_MS 100
int keel_runner_process_polled (keel_runner_t *self, int64_t now,
                                const keel_runner_handlers_t *handlers, const int *readable,
                                int nreadable);

#endif
