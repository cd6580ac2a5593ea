/*  builtin.h — the built-in services every engine offers (DESIGN §10).

    echo   output = input
    double input a decimal integer (surrounding white space allowed),
           output twice it in decimal; bad input or overflow fails the task
    sleep  input milliseconds; sleeps, output = input (cancelled by killing
           the worker that runs it)
    fail   always fails; the error text is the input
    count  input "N MS": runs steps from its memory (the step after the last
           checkpoint, else 0) to N-1, sleeping MS milliseconds each and
           checkpointing after each step (memory = the last finished step in
           decimal, e.g. "37"); output = the steps this execution ran as
           "first-last" ("37-99"), or "" (empty) when the memory says every
           step is done. Bad input or memory fails the task.

    Bad input (double, sleep, count) and bad memory (count) fail the task
    as permanent (result.permanent): the same input fails the same way on
    every retry, so the broker fails the task at once instead of spending
    MaxAttempts. fail's failure is an ordinary one (it is retried).

    sleep and count sleep in slices and stop early, failing the task with
    "cancelled", when the task's cancel flag is raised.

    Where they run. echo, double and fail are inline built-ins
    (keel_builtin_is_inline): Keel's own code that returns at once, in time
    bounded by the input's size, so the engine runs them in its own process
    (starter.h) — a worker process would isolate nothing and cost two
    socketpair crossings per task. sleep and count block and checkpoint over
    time and must be cancellable and time out, so they run in a runner
    worker process (worker.h), like every command and library service.
    keel_builtin_run is a plain function so tests can call it directly.
*/
#ifndef KEEL_ENGINE_BUILTIN_H
#define KEEL_ENGINE_BUILTIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keel/service.h"

#define KEEL_BUILTIN_SLEEP_MAX_MS (7LL * 24 * 3600 * 1000)
#define KEEL_BUILTIN_COUNT_MAX    1000000000LL

typedef struct {
    bool ok;        // true: data is the output; false: data is the error text
    uint8_t *data;  // malloc'd, owned by the caller (free it); NUL-terminated
    size_t size;    // bytes in data, not counting the terminating NUL
    bool permanent; // failed on bad input (or memory): a retry would fail the same way
} keel_builtin_result_t;

// True when type names a built-in service.
bool keel_builtin_known (const char *type);

// True when type names a built-in the engine runs inline, in its own
// process: echo, double and fail (see above).
bool keel_builtin_is_inline (const char *type);

// The name of built-in number index (0, 1, ...), or NULL past the last one.
const char *keel_builtin_name (int index);

// Runs built-in type on input and fills result. An unknown type fails.
// Returns false only when memory ran out (result then holds nothing).
// count runs without memory; its checkpoints go nowhere.
bool keel_builtin_run (const char *type, const uint8_t *input, size_t size,
                       keel_builtin_result_t *result);

// Same for a task context (service.h): input, memory, checkpoints and the
// cancel flag come from task.
bool keel_builtin_run_task (const char *type, keel_svc_task_t *task, keel_builtin_result_t *result);

// Applies the output cap every service has: a successful result with more
// than max_output bytes becomes the failure "output too large (more than
// N bytes)". Returns false only when memory ran out (result then holds
// nothing).
bool keel_builtin_cap_output (keel_builtin_result_t *result, size_t max_output);

// Parses a decimal int64 with optional surrounding white space and sign.
// Returns true and *value on success; false on anything else (empty, junk,
// out of range).
bool keel_builtin_parse_int (const uint8_t *input, size_t size, int64_t *value);

#endif
