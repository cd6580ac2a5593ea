/*  starter.c — the engine's task starter (see starter.h). */
#include "starter.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builtin.h"
#include "journal.h"
#include "wire_build.h"

#define S_QUEUE_MAX 10000 // queued tasks beyond the slots (EnginePrefetch's limit)

//  A task waiting for a free worker: what starting it needs beyond its held
//  entry (which has its service id, task id and type).
typedef struct s_queued_t {
    struct s_queued_t *next;
    uint64_t execution_id;
    size_t input_size;
    size_t memory_size;
    bool has_memory;
    uint8_t data[]; // input, then memory
} s_queued_t;

struct _keel_starter_t {
    const keel_engine_config_t *cfg;
    keel_held_t *held;
    keel_initdata_t *init;
    const char *engine_id;
    keel_ratelimit_t *task_log;
    keel_ratelimit_t *peer_log;
    const keel_starter_ops_t *ops;
    void *arg;
    s_queued_t *head, *tail; // the prefetch queue, oldest first
    size_t nqueued;
};

keel_starter_t *
keel_starter_new (const keel_engine_config_t *cfg, keel_held_t *held, keel_initdata_t *init,
                  const char *engine_id, keel_ratelimit_t *task_log, keel_ratelimit_t *peer_log,
                  const keel_starter_ops_t *ops, void *arg)
{
    keel_starter_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->held = held;
    self->init = init;
    self->engine_id = engine_id;
    self->task_log = task_log;
    self->peer_log = peer_log;
    self->ops = ops;
    self->arg = arg;
    return self;
}

void
keel_starter_destroy (keel_starter_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_starter_t *self = *self_p;
    while (self->head) {
        s_queued_t *next = self->head->next;
        free (self->head);
        self->head = next;
    }
    free (self);
    *self_p = NULL;
}

size_t
keel_starter_queued (const keel_starter_t *self)
{
    return self->nqueued;
}

static s_queued_t *
s_pop (keel_starter_t *self)
{
    s_queued_t *queued = self->head;
    if (queued) {
        self->head = queued->next;
        if (!self->head)
            self->tail = NULL;
        self->nqueued--;
    }
    return queued;
}

//  Keeps a copy of assign for later. False when out of memory.
static bool
s_push (keel_starter_t *self, const Keel__Assign *assign)
{
    size_t memory_size = assign->has_memory ? assign->memory.len : 0;
    s_queued_t *queued = malloc (sizeof *queued + assign->input.len + memory_size);
    if (!queued)
        return false;
    queued->next = NULL;
    queued->execution_id = assign->execution_id;
    queued->input_size = assign->input.len;
    queued->memory_size = memory_size;
    queued->has_memory = assign->has_memory;
    if (assign->input.len)
        memcpy (queued->data, assign->input.data, assign->input.len);
    if (memory_size)
        memcpy (queued->data + assign->input.len, assign->memory.data, memory_size);
    if (self->tail)
        self->tail->next = queued;
    else
        self->head = queued;
    self->tail = queued;
    self->nqueued++;
    return true;
}

//  pid < 0: the task runs in this process (an inline built-in). getpid is
//  asked only when the line is written: it is a system call per task.
static void
s_log_started (keel_starter_t *self, const Keel__Assign *assign, int pid)
{
    KEEL_INFO ("engine",
               "task started exec=%" PRIu64 " service=%s task=%" PRIu64 " type=%s "
               "memory_bytes=%zu pid=%d",
               assign->execution_id, assign->service_id, assign->task_id, assign->type,
               assign->has_memory ? assign->memory.len : 0, pid < 0 ? (int) getpid () : pid);
    KEEL_JOURNAL ("exec_start", .service = assign->service_id, .task = assign->task_id,
                  .execution = assign->execution_id, .engine = self->engine_id);
}

//  Runs an inline built-in (builtin.h: echo, double, fail) here, in the
//  engine process, and ends it through ops->ended like a worker's result.
static void
s_run_inline (keel_starter_t *self, const Keel__Assign *assign)
{
    s_log_started (self, assign, -1);
    int64_t started = keel_runner_usecs ();
    keel_builtin_result_t out;
    bool ran = keel_builtin_run (assign->type, assign->input.data, assign->input.len, &out)
               && keel_builtin_cap_output (&out, (size_t) self->cfg->max_output_bytes);
    static const char nomem[] = "out of memory";
    keel_runner_result_t r = {
        .execution_id = assign->execution_id,
        .ok = ran && out.ok,
        .data = ran ? out.data : (const uint8_t *) nomem,
        .size = ran ? out.size : sizeof nomem - 1,
        .run_us = keel_runner_usecs () - started,
        .permanent = ran && !out.ok && out.permanent,
    };
    self->ops->ended (&r, self->arg);
    if (ran)
        free (out.data);
}

//  Starts a held RUNNING task: an inline built-in at once, anything else on
//  a worker, or queued when every worker is busy (see starter.h).
static void
s_start (keel_starter_t *self, const Keel__Assign *assign, int64_t now)
{
    const keel_service_def_t *def = keel_engine_config_service (self->cfg, assign->type);
    if (def && !def->command && !def->library && keel_builtin_is_inline (def->name)) {
        s_run_inline (self, assign);
        return;
    }
    if (self->ops->free_slots (self->arg) == 0) {
        //  Held running (this one included) = running + queued: a broker
        //  sending more than Slots + S_QUEUE_MAX gets the rest refused.
        bool room = keel_held_running (self->held) <= (size_t) self->cfg->slots + S_QUEUE_MAX;
        if (room && s_push (self, assign)) {
            KEEL_DEBUG ("engine", "task queued exec=%" PRIu64 " queued=%zu", assign->execution_id,
                        self->nqueued);
            return;
        }
        //  No room (or no memory to queue it): refused below, as the
        //  worker pool answers a start with no idle worker.
    }
    char error[200] = "";
    if (!def)
        snprintf (error, sizeof error, "service type '%s' is not offered by this engine",
                  assign->type);
    else {
        keel_worker_request_t req = {
            .execution_id = assign->execution_id,
            .task_id = assign->task_id,
            .kind = def->library   ? KEEL_WORKER_LIBRARY
                    : def->command ? KEEL_WORKER_COMMAND
                                   : KEEL_WORKER_BUILTIN,
            .type = assign->type,
            .target = def->library ? def->library : def->command,
            .service_id = assign->service_id,
            .input = assign->input.data,
            .input_size = assign->input.len,
            .memory = assign->memory.data,
            .memory_size = assign->memory.len,
            .has_memory = assign->has_memory,
        };
        req.init_data = keel_initdata_get (self->init, assign->service_id, &req.init_size);
        keel_err rc = self->ops->start (self->arg, &req, def->timeout_ms);
        if (rc == KEEL_ERR_FULL)
            snprintf (error, sizeof error, "engine has no free slot and its queue is full");
        else if (rc != KEEL_OK)
            snprintf (error, sizeof error, "cannot start task: %s", keel_strerror (rc));
    }
    if (*error) {
        KEEL_LOG_LIMITED (self->task_log, now, KEEL_LOG_WARN, "engine",
                          "task not started exec=%" PRIu64 " error=\"%s\"", assign->execution_id,
                          error);
        self->ops->refused (self->arg, assign->execution_id, error);
        return;
    }
    s_log_started (self, assign, (int) self->ops->pid_of (self->arg, assign->execution_id));
}

void
keel_starter_start_queued (keel_starter_t *self, int64_t now)
{
    while (self->head && self->ops->free_slots (self->arg) > 0) {
        s_queued_t *queued = s_pop (self);
        keel_held_task_t *task = keel_held_find (self->held, queued->execution_id);
        if (task && task->state == KEEL_HELD_RUNNING && task->type
            && !self->ops->pid_of (self->arg, queued->execution_id)) {
            //  The Assign again, as a view of the held entry and the queued bytes.
            Keel__Assign assign;
            keel_item_assign (
                &assign, &(keel_assign_args_t) { .service_id = task->service_id,
                                                 .type = task->type,
                                                 .task_id = task->task_id,
                                                 .execution_id = queued->execution_id,
                                                 .input = queued->data,
                                                 .input_size = queued->input_size,
                                                 .memory = queued->has_memory
                                                               ? queued->data + queued->input_size
                                                               : NULL,
                                                 .memory_size = queued->memory_size });
            s_start (self, &assign, now);
        }
        free (queued);
    }
}

//  Keeps the service's init data (it comes once per service per session).
static void
s_keep_init_data (keel_starter_t *self, const Keel__Assign *assign, int64_t now)
{
    bool evicted = false;
    if (!keel_initdata_put (self->init, assign->service_id, assign->init_data.data,
                            assign->init_data.len, &evicted))
        KEEL_ERROR ("engine", "service init data lost (out of memory) service=%s",
                    assign->service_id);
    else
        KEEL_LOG_LIMITED (self->peer_log, now, KEEL_LOG_INFO, "engine",
                          "service init data received service=%s type=%s bytes=%zu",
                          assign->service_id, assign->type, assign->init_data.len);
    if (evicted)
        KEEL_LOG_LIMITED (self->peer_log, now, KEEL_LOG_WARN, "engine",
                          "more than %d services with init data: the least recently "
                          "used one was forgotten",
                          KEEL_INITDATA_MAX);
}

void
keel_starter_assign (keel_starter_t *self, const Keel__Assign *assign, int64_t now)
{
    if (keel_held_find (self->held, assign->execution_id)) {
        KEEL_DEBUG ("engine", "duplicate assign ignored exec=%" PRIu64, assign->execution_id);
        return;
    }
    if (assign->has_init_data)
        s_keep_init_data (self, assign, now);
    if (!keel_held_add (self->held, assign->execution_id, assign->service_id, assign->task_id,
                        assign->type))
        return;
    s_start (self, assign, now);
}
