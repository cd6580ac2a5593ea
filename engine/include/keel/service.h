/*  keel/service.h — the ABI of Keel library services.

    A library service is a shared object an engine loads with
        service.<name>.library=/path/libmyservice.so
    It runs inside the engine's task worker processes (one per slot), never
    in the engine itself: a crash (segfault, abort, exit) kills that worker,
    fails the one task it was running ("task process crashed: signal 11",
    retried per MaxAttempts like any failure) and the worker is replaced.

    Entry points (exported C symbols; define at least one way to run tasks):

      int keel_method_NAME (keel_svc_task_t *task);
          One per method. Used when the task's input is a msgpack invocation
          ["NAME", [args...]] (driver.h: keel_invocation_*). task->method and
          task->args hold the method name and its argument array.
      int keel_service_invoke (keel_svc_task_t *task);
          Dispatcher for invocations whose method has no keel_method_NAME.
      int keel_service_run (keel_svc_task_t *task);
          Raw bytes: called with task->input as sent, method NULL.
      int keel_service_init (keel_svc_session_t *session);
          Optional per-session init hook: runs once per worker process per
          service (session = service_id) before that worker's first task of
          the service, with the service's init data. Whatever it stores in
          session->user is given to every task of the service in that worker
          as task->session. A non-zero return fails every task of the service
          in that worker with session->error (or "init hook returned N").
      const uint32_t keel_service_abi = KEEL_SERVICE_ABI;
          Optional (KEEL_SERVICE_DECLARE does it); a different value is refused.

    Choice of entry: when the library exports keel_method_* or
    keel_service_invoke, an input that is a well-formed invocation goes
    there; when it exports only those, any other input fails the task with
    "input is not a msgpack invocation: ...". keel_service_run takes every
    input that is not an invocation (or every input when it is the only one).

    Return 0 for success: the output is what the task set with
    keel_task_output or packed with keel_task_packer (empty if neither).
    Return non-zero for failure: the error is the text set with keel_task_error
    (or "service returned N"). The broker retries a failed task on another
    engine, up to its MaxAttempts executions. By convention a method's
    output is one msgpack value.

    Permanent failure: return KEEL_TASK_PERMANENT when the task can never
    succeed (its input is wrong, say), so the broker fails it at once after
    this one attempt instead of retrying it MaxAttempts times; set the error
    text with keel_task_error as for any failure (without one it reads
    "service failed permanently (KEEL_TASK_PERMANENT)"). The engine does the
    same for an input it cannot dispatch: not a msgpack invocation when the
    library takes only invocations, or a method the library does not have.
    Any other non-zero return is an ordinary failure. (Since engines of
    ABI 1 that predate it treat it as an ordinary failure, no ABI change.)

    Task memory: keel_task_checkpoint saves bytes as the task's memory; the
    engine sends them to the broker, which stores the latest with the task.
    If the task runs again (its engine was lost, or it failed and is
    retried) the next execution finds them in task->memory and should
    continue from there. Checkpoint after each unit of work you do not want
    to repeat.

    Cancellation: task->cancel_flag becomes non-zero (keel_task_cancelled)
    when the engine asks the task to stop (the task's timeout is near, or
    the engine is stopping); a long task should test it between steps and
    return. A task that does not return is killed.

    Every pointer in keel_svc_task_t and keel_svc_session_t is owned by the
    engine and valid only during the call (session: until the worker exits;
    session->user belongs to the service). Nothing here needs linking against
    Keel: the helpers below call through task->api.
*/
#ifndef KEEL_SERVICE_H
#define KEEL_SERVICE_H

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <msgpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KEEL_SERVICE_ABI 1u

//  Return value of an entry point: the task failed and no retry can
//  succeed (see above). A distinctive value ("perm"), so that no library
//  returns it by accident.
#define KEEL_TASK_PERMANENT 0x7065726d

//  Exports the ABI version from a service library (optional, recommended).
#define KEEL_SERVICE_DECLARE                                                                       \
    __attribute__ ((visibility ("default"))) const uint32_t keel_service_abi = KEEL_SERVICE_ABI

typedef struct keel_svc_task keel_svc_task_t;

//  The engine's side of a task; use the keel_task_* helpers below.
typedef struct {
    int (*checkpoint) (keel_svc_task_t *task, const void *data, size_t size);
    int (*output) (keel_svc_task_t *task, const void *data, size_t size);
    void (*error) (keel_svc_task_t *task, const char *text);
    msgpack_packer *(*packer) (keel_svc_task_t *task);
} keel_svc_api_t;

//  What the per-session init hook gets.
typedef struct {
    uint32_t abi;             // KEEL_SERVICE_ABI of the engine
    const char *service_type; // the service's type name
    const char *service_id;   // the service (session) UUID
    const uint8_t *init_data; // the service's init data; NULL when it has none
    size_t init_data_size;
    void *user;      // set by the hook; becomes task->session
    char error[256]; // set by the hook when it fails
} keel_svc_session_t;

struct keel_svc_task {
    uint32_t abi; // KEEL_SERVICE_ABI of the engine
    const char *service_type;
    const char *service_id;
    uint64_t task_id;
    uint64_t execution_id;
    const uint8_t *input; // the task's input, as submitted
    size_t input_size;
    const char *method;       // invocation method; NULL for raw input
    msgpack_object args;      // invocation arguments (an ARRAY); NIL for raw input
    const uint8_t *init_data; // the service's init data; NULL when it has none
    size_t init_data_size;
    const uint8_t *memory; // the last checkpoint of an earlier execution
    size_t memory_size;
    int has_memory; // 1 when memory holds a checkpoint (the broker keeps
                    // no empty checkpoint: save at least one byte)
    void *session;  // session->user from the init hook; NULL without one
    const volatile sig_atomic_t *cancel_flag;
    const keel_svc_api_t *api;
    void *engine; // the engine's private state; do not touch
};

typedef int (keel_svc_fn) (keel_svc_task_t *task);
typedef int (keel_svc_init_fn) (keel_svc_session_t *session);

//  Saves data[0..size) as the task's memory (replacing the last checkpoint).
//  Returns 0, or -1 when the engine could not take it (too large, engine gone).
static inline int
keel_task_checkpoint (keel_svc_task_t *task, const void *data, size_t size)
{
    return task->api->checkpoint (task, data, size);
}

//  Sets the task's output to a copy of data[0..size). Returns 0 or -1.
static inline int
keel_task_output (keel_svc_task_t *task, const void *data, size_t size)
{
    return task->api->output (task, data, size);
}

//  A msgpack packer whose bytes become the task's output (replacing any
//  keel_task_output). Pack exactly one value for a method's result.
static inline msgpack_packer *
keel_task_packer (keel_svc_task_t *task)
{
    return task->api->packer (task);
}

//  Sets the error text reported when the entry point returns non-zero.
static inline void __attribute__ ((format (printf, 2, 3)))
keel_task_error (keel_svc_task_t *task, const char *format, ...)
{
    char text[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    task->api->error (task, text);
}

//  True once the engine has asked the task to stop.
static inline int
keel_task_cancelled (const keel_svc_task_t *task)
{
    return task->cancel_flag && *task->cancel_flag != 0;
}

#ifdef __cplusplus
}
#endif

#endif
