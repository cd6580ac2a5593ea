/*  engine/starter.h driven without workers: fake ops stand for the runner
    (idle workers, starts, pids) and record what ended or was refused. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "starter.h"

#define S_MAX 64

typedef struct {
    uint64_t id;
    int kind;
    char type[32];
    char target[32];
    char input[32];
    char memory[32];
    bool has_memory;
    char init[32];
    int64_t timeout_ms;
} s_started_t;

typedef struct {
    int free_slots;
    keel_err start_rc;
    s_started_t started[S_MAX];
    int nstarted;
    uint64_t ended_id[S_MAX];
    bool ended_ok[S_MAX];
    bool ended_permanent[S_MAX];
    char ended_data[S_MAX][64];
    int nended;
    uint64_t refused_id[S_MAX];
    char refused_error[S_MAX][200];
    int nrefused;
} s_fake_t;

static s_fake_t s_fake;
static keel_engine_config_t s_cfg;
static keel_held_t *s_held;
static keel_initdata_t *s_init;
static keel_starter_t *s_starter;
static keel_ratelimit_t s_task_log = KEEL_RATELIMIT_NAMED (10000, 20, "task");
static keel_ratelimit_t s_peer_log = KEEL_RATELIMIT_NAMED (10000, 20, "broker-triggered");

static void
s_copy (char *dst, size_t size, const void *src, size_t len)
{
    if (len >= size)
        len = size - 1;
    if (len)
        memcpy (dst, src, len);
    dst[len] = 0;
}

static int
f_free_slots (void *a)
{
    return ((s_fake_t *) a)->free_slots;
}

static keel_err
f_start (void *a, const keel_worker_request_t *req, int64_t timeout_ms)
{
    s_fake_t *f = a;
    if (f->free_slots == 0)
        return KEEL_ERR_FULL;
    if (f->start_rc != KEEL_OK)
        return f->start_rc;
    s_started_t *s = &f->started[f->nstarted++];
    s->id = req->execution_id;
    s->kind = req->kind;
    s_copy (s->type, sizeof s->type, req->type, strlen (req->type));
    const char *target = req->target ? req->target : "";
    s_copy (s->target, sizeof s->target, target, strlen (target));
    s_copy (s->input, sizeof s->input, req->input, req->input_size);
    s_copy (s->memory, sizeof s->memory, req->memory, req->has_memory ? req->memory_size : 0);
    s->has_memory = req->has_memory;
    s_copy (s->init, sizeof s->init, req->init_data, req->init_size);
    s->timeout_ms = timeout_ms;
    f->free_slots--;
    return KEEL_OK;
}

static pid_t
f_pid_of (void *a, uint64_t id)
{
    s_fake_t *f = a;
    for (int i = 0; i < f->nstarted; i++)
        if (f->started[i].id == id)
            return 4242;
    return 0;
}

static void
f_ended (const keel_runner_result_t *r, void *a)
{
    s_fake_t *f = a;
    f->ended_id[f->nended] = r->execution_id;
    f->ended_ok[f->nended] = r->ok;
    f->ended_permanent[f->nended] = r->permanent;
    s_copy (f->ended_data[f->nended], sizeof f->ended_data[0], r->data, r->size);
    f->nended++;
}

static void
f_refused (void *a, uint64_t id, const char *error)
{
    s_fake_t *f = a;
    f->refused_id[f->nrefused] = id;
    s_copy (f->refused_error[f->nrefused], sizeof f->refused_error[0], error, strlen (error));
    f->nrefused++;
}

static const keel_starter_ops_t s_ops = { f_free_slots, f_start, f_pid_of, f_ended, f_refused };

static void
setup (void)
{
    memset (&s_fake, 0, sizeof s_fake);
    s_fake.free_slots = 2;
    memset (&s_cfg, 0, sizeof s_cfg);
    s_cfg.slots = 2;
    s_cfg.max_output_bytes = 1000;
    static char *names[] = { "echo", "double", "fail", "sleep", "render", "lib" };
    for (int i = 0; i < 6; i++)
        s_cfg.services[i].name = names[i];
    s_cfg.services[4].command = "cat";
    s_cfg.services[4].timeout_ms = 5000;
    s_cfg.services[5].library = "/opt/lib.so";
    s_cfg.n_services = 6;
    s_held = keel_held_new ();
    s_init = keel_initdata_new ();
    s_starter = keel_starter_new (&s_cfg, s_held, s_init, "engine-1", &s_task_log, &s_peer_log,
                                  &s_ops, &s_fake);
    cr_assert_not_null (s_starter);
}

static void
teardown (void)
{
    keel_starter_destroy (&s_starter);
    cr_assert_null (s_starter);
    keel_starter_destroy (&s_starter); // idempotent
    keel_initdata_destroy (&s_init);
    keel_held_destroy (&s_held);
}

TestSuite (engine_starter, .init = setup, .fini = teardown);

static void
s_assign (uint64_t id, const char *type, const char *input, const char *memory)
{
    Keel__Assign a = KEEL__ASSIGN__INIT;
    a.service_id = "svc";
    a.type = (char *) type;
    a.has_task_id = a.has_execution_id = a.has_input = true;
    a.task_id = id + 100;
    a.execution_id = id;
    a.input.data = (uint8_t *) input;
    a.input.len = strlen (input);
    if (memory) {
        a.has_memory = true;
        a.memory.data = (uint8_t *) memory;
        a.memory.len = strlen (memory);
    }
    keel_starter_assign (s_starter, &a, 0);
}

Test (engine_starter, inline_builtins_run_at_once_and_take_no_slot)
{
    s_fake.free_slots = 0;
    s_assign (1, "echo", "hello", NULL);
    s_assign (2, "double", "21", NULL);
    s_assign (3, "fail", "why", NULL);
    s_assign (4, "double", "abc", NULL);
    cr_assert_eq (s_fake.nstarted, 0);
    cr_assert_eq (keel_starter_queued (s_starter), 0);
    cr_assert_eq (s_fake.nended, 4);
    cr_assert (s_fake.ended_ok[0]);
    cr_assert_str_eq (s_fake.ended_data[0], "hello");
    cr_assert_str_eq (s_fake.ended_data[1], "42");
    cr_assert_not (s_fake.ended_ok[2]);
    cr_assert_not (s_fake.ended_permanent[2], "fail's failure is an ordinary one");
    cr_assert_not (s_fake.ended_ok[3]);
    cr_assert (s_fake.ended_permanent[3], "bad input fails permanently");
    //  Held RUNNING until the outbox records the result (ops->ended).
    cr_assert_eq (keel_held_running (s_held), 4);
}

Test (engine_starter, the_output_cap_applies_to_inline_builtins)
{
    char big[1100];
    memset (big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    s_assign (1, "echo", big, NULL);
    cr_assert_eq (s_fake.nended, 1);
    cr_assert_not (s_fake.ended_ok[0]);
    cr_assert (strstr (s_fake.ended_data[0], "output too large"), "%s", s_fake.ended_data[0]);
}

Test (engine_starter, other_tasks_start_on_a_worker_with_their_service_and_init_data)
{
    Keel__Assign a = KEEL__ASSIGN__INIT;
    a.service_id = "svc";
    a.type = "render";
    a.has_task_id = a.has_execution_id = a.has_input = a.has_init_data = true;
    a.execution_id = 9;
    a.input.data = (uint8_t *) "in";
    a.input.len = 2;
    a.init_data.data = (uint8_t *) "INIT";
    a.init_data.len = 4;
    keel_starter_assign (s_starter, &a, 0);
    s_assign (10, "lib", "x", "m");
    s_fake.free_slots = 1;
    s_assign (11, "sleep", "5", NULL);
    cr_assert_eq (s_fake.nstarted, 3);
    s_started_t *s = &s_fake.started[0];
    cr_assert_eq (s->id, 9);
    cr_assert_eq (s->kind, KEEL_WORKER_COMMAND);
    cr_assert_str_eq (s->target, "cat");
    cr_assert_str_eq (s->input, "in");
    cr_assert_str_eq (s->init, "INIT");
    cr_assert_eq (s->timeout_ms, 5000);
    size_t size = 0;
    cr_assert_not_null (keel_initdata_get (s_init, "svc", &size));
    cr_assert_eq (size, 4);
    cr_assert_eq (s_fake.started[1].kind, KEEL_WORKER_LIBRARY);
    cr_assert_str_eq (s_fake.started[1].target, "/opt/lib.so");
    cr_assert (s_fake.started[1].has_memory);
    cr_assert_str_eq (s_fake.started[1].memory, "m");
    cr_assert_str_eq (s_fake.started[1].init, "INIT", "the service's init data, kept");
    cr_assert_eq (s_fake.started[2].kind, KEEL_WORKER_BUILTIN);
    cr_assert_eq (s_fake.nended + s_fake.nrefused, 0);
}

Test (engine_starter, a_busy_engine_queues_tasks_and_starts_them_in_order_when_workers_free_up)
{
    s_fake.free_slots = 0;
    s_assign (1, "render", "one", NULL);
    s_assign (2, "sleep", "two", "mem");
    s_assign (3, "render", "three", NULL);
    cr_assert_eq (keel_starter_queued (s_starter), 3);
    cr_assert_eq (s_fake.nstarted, 0);
    keel_starter_start_queued (s_starter, 0);
    cr_assert_eq (s_fake.nstarted, 0, "no idle worker yet");
    s_fake.free_slots = 2;
    keel_starter_start_queued (s_starter, 0);
    cr_assert_eq (s_fake.nstarted, 2);
    cr_assert_eq (s_fake.started[0].id, 1);
    cr_assert_str_eq (s_fake.started[0].input, "one");
    cr_assert_not (s_fake.started[0].has_memory);
    cr_assert_eq (s_fake.started[1].id, 2);
    cr_assert_str_eq (s_fake.started[1].input, "two");
    cr_assert (s_fake.started[1].has_memory);
    cr_assert_str_eq (s_fake.started[1].memory, "mem");
    cr_assert_eq (keel_starter_queued (s_starter), 1);
    s_fake.free_slots = 1;
    keel_starter_start_queued (s_starter, 0);
    cr_assert_eq (s_fake.started[2].id, 3);
    cr_assert_eq (keel_starter_queued (s_starter), 0);
}

Test (engine_starter, a_queued_task_cancelled_or_done_meanwhile_is_skipped)
{
    s_fake.free_slots = 0;
    s_assign (1, "render", "a", NULL);
    s_assign (2, "render", "b", NULL);
    s_assign (3, "render", "c", NULL);
    keel_held_remove (s_held, 1);                                                      // cancelled
    keel_held_finish (keel_held_find (s_held, 2), false, (const uint8_t *) "x", 1, 0); // ended
    s_fake.free_slots = 2;
    keel_starter_start_queued (s_starter, 0);
    cr_assert_eq (s_fake.nstarted, 1);
    cr_assert_eq (s_fake.started[0].id, 3);
    cr_assert_eq (keel_starter_queued (s_starter), 0);
}

Test (engine_starter, a_duplicate_assign_is_ignored)
{
    s_assign (1, "render", "a", NULL);
    s_assign (1, "render", "again", NULL);
    s_assign (2, "echo", "x", NULL);
    s_assign (2, "echo", "y", NULL);
    cr_assert_eq (s_fake.nstarted, 1);
    cr_assert_eq (s_fake.nended, 1);
    cr_assert_eq (keel_held_size (s_held), 2);
}

Test (engine_starter, tasks_it_cannot_start_are_refused_with_the_reason)
{
    s_assign (1, "nope", "a", NULL);
    cr_assert_eq (s_fake.nrefused, 1);
    cr_assert_eq (s_fake.refused_id[0], 1);
    cr_assert_str_eq (s_fake.refused_error[0], "service type 'nope' is not offered by this engine");
    s_fake.start_rc = KEEL_ERR_IO;
    s_assign (2, "render", "a", NULL);
    cr_assert_eq (s_fake.nrefused, 2);
    cr_assert (strncmp (s_fake.refused_error[1], "cannot start task: ", 19) == 0, "%s",
               s_fake.refused_error[1]);
    cr_assert_eq (s_fake.nstarted, 0);
}

Test (engine_starter, the_prefetch_queue_is_bounded_by_slots_plus_ten_thousand)
{
    s_fake.free_slots = 0;
    //  Held RUNNING (the new one included) may reach Slots + 10000.
    uint64_t id = 1;
    for (; id <= 2 + 10000; id++)
        s_assign (id, "render", "", NULL);
    cr_assert_eq (keel_starter_queued (s_starter), 10002);
    cr_assert_eq (s_fake.nrefused, 0);
    s_assign (id, "render", "", NULL);
    cr_assert_eq (s_fake.nrefused, 1);
    cr_assert_eq (s_fake.refused_id[0], id);
    cr_assert_str_eq (s_fake.refused_error[0], "engine has no free slot and its queue is full");
    cr_assert_eq (keel_starter_queued (s_starter), 10002);
}
