/*  library.h — library services inside a task worker (see keel/service.h).

    A worker keeps one keel_library_t for its whole life: the shared objects
    it has loaded (dlopen, by path, never unloaded) and the sessions it has
    initialised (one per service id: the init hook's result). The first task
    of a service in this worker runs the library's keel_service_init with the
    service's init data; every later task of the service gets the same
    session. At most KEEL_LIBRARY_MAX_SESSIONS sessions are kept; beyond
    that the oldest is forgotten (its init hook runs again if its service
    comes back). Sessions end with the worker process.

    keel_library_parse_invocation is the engine's reader of the msgpack invocation
    convention ["method", [args...]] (driver.h builds it).

    Everything here runs in the worker process only; it is not thread-safe.
*/
#ifndef KEEL_ENGINE_LIBRARY_H
#define KEEL_ENGINE_LIBRARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "keel/service.h"

#define KEEL_LIBRARY_MAX_LIBS      64
#define KEEL_LIBRARY_MAX_SESSIONS  64
#define KEEL_INVOCATION_METHOD_MAX 64

typedef struct _keel_library_t keel_library_t;

keel_library_t *keel_library_new (void);
// Forgets every session (no hook runs) and frees the table; loaded
// libraries stay mapped. Nulls *self_p; idempotent.
void keel_library_destroy (keel_library_t **self_p);

// Runs task with the library at path: loads it, initialises the session of
// task->service_id if needed, picks the entry point (service.h) and calls
// it. Fills task->method/args when the input is an invocation. Returns 0
// when the entry point returned 0; otherwise non-zero, with error filled
// when the failure was the engine's (library not loadable, no entry point,
// bad invocation, init failed) and left empty when the service failed (its
// keel_task_error text, if any, is the task's error then). Returns
// KEEL_TASK_PERMANENT when the entry point did, or when the input cannot be
// dispatched (not an invocation, no such method): no retry can succeed.
int keel_library_run (keel_library_t *self, const char *path, keel_svc_task_t *task, char *error,
                      size_t error_size);

// Parses data[0..size) as exactly one msgpack value ["method", [args...]]
// with method 1..KEEL_INVOCATION_METHOD_MAX of [A-Za-z0-9_]. On success
// returns true, copies the method (NUL-terminated) into method and sets
// *args to the argument array, valid while *unpacked lives (the caller
// calls msgpack_unpacked_destroy in every case). On failure returns false
// and puts the reason in why ("not msgpack", "trailing bytes after ...").
bool keel_library_parse_invocation (const uint8_t *data, size_t size, msgpack_unpacked *unpacked,
                                    char *method, msgpack_object *args, char *why, size_t why_size);

#endif
