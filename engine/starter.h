/*  starter.h — the engine's task starter: where an assigned task runs.

    keel_starter_assign takes an Assign the session accepted. A duplicate
    (the execution is already held) is ignored. Init data comes once per
    service per engine session: it is kept first (initdata.h), whatever
    happens to the task. The task is then added to the held table (RUNNING)
    and started:
      - an inline built-in (echo, double, fail: keel_builtin_is_inline) runs
        at once, here in the engine process: Keel's own code, returning at
        once in time bounded by its input, so a worker's isolation buys
        nothing and the socketpair round trip would cost more than the task.
        It takes no slot and never queues. Its result leaves through
        ops->ended, like a worker's.
      - anything else (sleep, count, every command and library service) is
        started on an idle worker (ops->start), or, when every worker is
        busy, waits in the prefetch queue: the broker may send EnginePrefetch
        tasks beyond the free slots, so that the next task is here when a
        worker frees up. Held RUNNING tasks (running + queued) are bounded
        by Slots + 10000; a task beyond that, of a type this engine does not
        offer, or one a worker could not take fails at once through
        ops->refused ("task not started").
    keel_starter_start_queued, called once per loop turn, starts queued
    tasks while workers are free, in order; one cancelled, dropped or lost
    with its session meanwhile (no longer RUNNING in the held table) is
    skipped. A "task started" line (pid= the worker's, or the engine's own
    for an inline built-in) and an exec_start journal record mark each start.

    Ownership: the starter owns its queue (copies of each waiting task's
    input and memory). It borrows cfg, the held table, the init data, the
    engine id and the rate limits (the caller keeps them alive), and reaches
    the worker pool only through keel_starter_ops_t, which the engine
    implements with runner.h (and unit tests fake).
*/
#ifndef KEEL_ENGINE_STARTER_H
#define KEEL_ENGINE_STARTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "engine_config.h"
#include "error.h"
#include "held.h"
#include "initdata.h"
#include "log.h"
#include "runner.h"
#include "worker.h"

typedef struct {
    // Number of idle workers.
    int (*free_slots) (void *arg);
    // Starts req on an idle worker (runner.h: keel_runner_start).
    keel_err (*start) (void *arg, const keel_worker_request_t *req, int64_t timeout_ms);
    // The worker pid running execution_id, or 0.
    pid_t (*pid_of) (void *arg, uint64_t execution_id);
    // An inline built-in ended (r valid during the call only), as a
    // worker's result would (the same signature as runner.h's done).
    keel_runner_done_fn *ended;
    // Execution_id (held RUNNING) could not start: fail it with error.
    void (*refused) (void *arg, uint64_t execution_id, const char *error);
} keel_starter_ops_t;

typedef struct _keel_starter_t keel_starter_t;

// Creates a starter for the services of cfg. task_log limits the lines a
// broker's message causes about the tasks it names, peer_log the others
// (init data). Everything passed must outlive the starter. NULL when out
// of memory.
keel_starter_t *keel_starter_new (const keel_engine_config_t *cfg, keel_held_t *held,
                                  keel_initdata_t *init, const char *engine_id,
                                  keel_ratelimit_t *task_log, keel_ratelimit_t *peer_log,
                                  const keel_starter_ops_t *ops, void *arg);

// Frees the queue and the starter; nulls *self_p. Idempotent.
void keel_starter_destroy (keel_starter_t **self_p);

// Takes an accepted Assign (see above). now is for the rate limits.
void keel_starter_assign (keel_starter_t *self, const Keel__Assign *assign, int64_t now);

// Starts queued tasks while workers are free (see above).
void keel_starter_start_queued (keel_starter_t *self, int64_t now);

// Tasks waiting in the queue (skipped ones included until they are reached).
size_t keel_starter_queued (const keel_starter_t *self);

#endif
