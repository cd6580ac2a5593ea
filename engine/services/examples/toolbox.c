/*  toolbox.c — example library service with one entry point per method,
    used by the SDK's tests and useful as a template.

    echo(args...)   -> the argument array, unchanged (nested values too)
    session()       -> [init_data (bin, or nil), inits, pid]: the service's
                       init data as this task saw it, how many times the
                       init hook ran in this worker process for this
                       service, and the worker's pid
    crash()         -> never returns: dereferences NULL (SIGSEGV)
    fail(text)      -> fails the task with text (retried up to MaxAttempts)
    refuse(text)    -> fails the task with text as a permanent failure
                       (KEEL_TASK_PERMANENT: failed at once, not retried)
    steps(n, ms)    -> like the built-in count, with msgpack memory: runs
                       steps memory+1 .. n-1 (ms each, checkpointing after
                       each) and returns [first, last] of this execution
    Every input must be an invocation: the library has no keel_service_run,
    so anything else fails with "input is not a msgpack invocation: ...".

    Engine configuration:  service.toolbox.library=/path/to/libkeel_toolbox.so
*/
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <keel/service.h>

#define S_EXPORT __attribute__ ((visibility ("default")))

KEEL_SERVICE_DECLARE;

typedef struct {
    uint8_t *init_data; // copy of the init data, NULL when none
    size_t init_size;
    int has_init;
} s_session_t;

//  Init hook calls in this worker process, over all services.
static int s_inits;

S_EXPORT int
keel_service_init (keel_svc_session_t *session)
{
    s_session_t *s = calloc (1, sizeof *s);
    if (!s)
        return -1;
    if (session->init_data) {
        s->init_data = malloc (session->init_data_size ? session->init_data_size : 1);
        if (!s->init_data) {
            free (s);
            return -1;
        }
        memcpy (s->init_data, session->init_data, session->init_data_size);
        s->init_size = session->init_data_size;
        s->has_init = 1;
    }
    s_inits++;
    session->user = s;
    return 0;
}

S_EXPORT int
keel_method_echo (keel_svc_task_t *task)
{
    msgpack_pack_object (keel_task_packer (task), task->args);
    return 0;
}

S_EXPORT int
keel_method_session (keel_svc_task_t *task)
{
    const s_session_t *s = task->session;
    msgpack_packer *pk = keel_task_packer (task);
    msgpack_pack_array (pk, 3);
    //  What the task sees directly must match what the hook saw.
    if (task->init_data && s && s->has_init && s->init_size == task->init_data_size
        && memcmp (s->init_data, task->init_data, s->init_size) == 0) {
        msgpack_pack_bin (pk, task->init_data_size);
        msgpack_pack_bin_body (pk, task->init_data, task->init_data_size);
    }
    else
        msgpack_pack_nil (pk);
    msgpack_pack_int (pk, s_inits);
    msgpack_pack_int64 (pk, (int64_t) getpid ());
    return 0;
}

S_EXPORT int
keel_method_crash (keel_svc_task_t *task)
{
    (void) task;
    // A segmentation fault, as a buggy service would have; raised rather
    // than provoked so sanitizer builds crash the same way.
    raise (SIGSEGV);
    return 0;
}

S_EXPORT int
keel_method_fail (keel_svc_task_t *task)
{
    const msgpack_object_array *args = &task->args.via.array;
    if (args->size == 1 && args->ptr[0].type == MSGPACK_OBJECT_STR)
        keel_task_error (task, "%.*s", (int) args->ptr[0].via.str.size, args->ptr[0].via.str.ptr);
    else
        keel_task_error (task, "fail(text): asked to fail");
    return 1;
}

S_EXPORT int
keel_method_refuse (keel_svc_task_t *task)
{
    const msgpack_object_array *args = &task->args.via.array;
    if (args->size == 1 && args->ptr[0].type == MSGPACK_OBJECT_STR)
        keel_task_error (task, "%.*s", (int) args->ptr[0].via.str.size, args->ptr[0].via.str.ptr);
    else
        keel_task_error (task, "refuse(text): this input can never succeed");
    return KEEL_TASK_PERMANENT;
}

S_EXPORT int
keel_method_steps (keel_svc_task_t *task)
{
    const msgpack_object_array *args = &task->args.via.array;
    if (args->size != 2 || args->ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER
        || args->ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || args->ptr[0].via.u64 > 1000000
        || args->ptr[1].via.u64 > 60000) {
        keel_task_error (task, "steps(n, ms): expected n <= 1000000 and ms <= 60000");
        return 1;
    }
    int64_t n = (int64_t) args->ptr[0].via.u64;
    int64_t ms = (int64_t) args->ptr[1].via.u64;
    int64_t first = 0;
    if (task->has_memory) {
        msgpack_unpacked value;
        msgpack_unpacked_init (&value);
        size_t off = 0;
        if (msgpack_unpack_next (&value, (const char *) task->memory, task->memory_size, &off)
                != MSGPACK_UNPACK_SUCCESS
            || value.data.type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
            msgpack_unpacked_destroy (&value);
            keel_task_error (task, "steps: memory is not a step number");
            return 1;
        }
        first = (int64_t) value.data.via.u64 + 1;
        msgpack_unpacked_destroy (&value);
    }
    for (int64_t step = first; step < n; step++) {
        struct timespec pause = { (time_t) (ms / 1000), (long) (ms % 1000) * 1000000L };
        nanosleep (&pause, NULL);
        if (keel_task_cancelled (task)) {
            keel_task_error (task, "steps: cancelled at step %lld", (long long) step);
            return 1;
        }
        msgpack_sbuffer sb;
        msgpack_sbuffer_init (&sb);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_uint64 (&pk, (uint64_t) step);
        keel_task_checkpoint (task, sb.data, sb.size);
        msgpack_sbuffer_destroy (&sb);
    }
    msgpack_packer *pk = keel_task_packer (task);
    msgpack_pack_array (pk, 2);
    msgpack_pack_int64 (pk, first);
    msgpack_pack_int64 (pk, n - 1);
    return 0;
}
