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

    sleep and count sleep in slices and stop early, failing the task with
    "cancelled", when the task's cancel flag is raised.

    These run inside a runner worker process (see worker.h), never in the
    engine's own process. keel_builtin_run is a plain function so tests can
    call it directly.
*/
#ifndef KEEL_ENGINE_BUILTIN_H
#define KEEL_ENGINE_BUILTIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keel/service.h"

#define KEEL_BUILTIN_SLEEP_MAX_MS  (7LL * 24 * 3600 * 1000)
#define KEEL_BUILTIN_COUNT_MAX     1000000000LL

typedef struct {
    bool ok;            // true: data is the output; false: data is the error text
    uint8_t *data;      // malloc'd, owned by the caller (free it); NUL-terminated
    size_t size;        // bytes in data, not counting the terminating NUL
} keel_builtin_result_t;

// True when type names a built-in service.
bool keel_builtin_known (const char *type);

// The name of built-in number index (0, 1, ...), or NULL past the last one.
const char *keel_builtin_name (int index);

// Runs built-in type on input and fills result. An unknown type fails.
// Returns false only when memory ran out (result then holds nothing).
// count runs without memory; its checkpoints go nowhere.
bool keel_builtin_run (const char *type, const uint8_t *input, size_t size,
                       keel_builtin_result_t *result);

// Same for a task context (service.h): input, memory, checkpoints and the
// cancel flag come from task.
bool keel_builtin_run_task (const char *type, keel_svc_task_t *task,
                            keel_builtin_result_t *result);

// Parses a decimal int64 with optional surrounding white space and sign.
// Returns true and *value on success; false on anything else (empty, junk,
// out of range).
bool keel_builtin_parse_int (const uint8_t *input, size_t size, int64_t *value);

#endif
