/*  Scheduler and model: priority first, FIFO within a service, round-robin
    across services of equal priority, engines get only types they offer,
    filters leave tasks queued in order. */

#include <criterion/criterion.h>
#include <string.h>

#include "model.h"
#include "scheduler.h"

static keel_model_t *model;
static keel_sched_t *sched;

static void
setup (void)
{
    model = keel_model_new ();
    sched = keel_sched_new ();
    cr_assert_not_null (model);
    cr_assert_not_null (sched);
}

static void
teardown (void)
{
    keel_sched_destroy (&sched);
    keel_model_destroy (&model);
}

static keel_service_rec_t *
add_service (const char *id, const char *type, int priority, int ntasks)
{
    keel_service_rec_t *svc = keel_model_service_add (model, id, type, "driver-1");
    cr_assert_not_null (svc);
    svc->priority = priority;
    for (int i = 0; i < ntasks; i++) {
        char input[16];
        snprintf (input, sizeof input, "%d", i);
        cr_assert_not_null (
            keel_service_task_add (svc, (uint64_t) i, (uint8_t *) input, strlen (input)));
        cr_assert (keel_service_queue_push (svc, (uint64_t) i));
    }
    keel_sched_activate (sched, svc);
    return svc;
}

static keel_engine_t *
add_engine (const char *id, const char *types_csv)
{
    keel_engine_t *e = keel_model_engine_add (model, id);
    cr_assert_not_null (e);
    char **types = calloc (8, sizeof *types);
    size_t n = 0;
    char buf[128];
    snprintf (buf, sizeof buf, "%s", types_csv);
    for (char *tok = strtok (buf, ","); tok && n < 8; tok = strtok (NULL, ","))
        types[n++] = strdup (tok);
    keel_engine_set_types (e, types, n);
    e->state = KEEL_ENGINE_ONLINE;
    e->slots = 100;
    return e;
}

// "service:task" of a pick: a service id, ':' and a 64-bit decimal.
#define S_PICK_MAX (KEEL_ID_MAX + 24)

// Returns "service:task" of the next pick, or "" when none (buf holds S_PICK_MAX).
static const char *
next (keel_engine_t *e, char *buf)
{
    keel_service_rec_t *svc;
    uint64_t id;
    keel_task_t *t = keel_sched_next (sched, e, NULL, NULL, &svc, &id);
    if (!t)
        return strcpy (buf, "");
    snprintf (buf, S_PICK_MAX, "%s:%llu", svc->id, (unsigned long long) id);
    return buf;
}

TestSuite (scheduler, .init = setup, .fini = teardown);
TestSuite (model, .init = setup, .fini = teardown);

Test (scheduler, takes_tasks_of_one_service_in_fifo_order)
{
    add_service ("a", "double", 0, 3);
    keel_engine_t *e = add_engine ("e1", "double");
    char b[S_PICK_MAX];
    cr_assert_str_eq (next (e, b), "a:0");
    cr_assert_str_eq (next (e, b), "a:1");
    cr_assert_str_eq (next (e, b), "a:2");
    cr_assert_str_eq (next (e, b), "");
}

Test (scheduler, serves_higher_priority_services_first)
{
    add_service ("low", "double", 0, 2);
    add_service ("high", "double", 5, 2);
    keel_engine_t *e = add_engine ("e1", "double");
    char b[S_PICK_MAX];
    cr_assert_str_eq (next (e, b), "high:0");
    cr_assert_str_eq (next (e, b), "high:1");
    cr_assert_str_eq (next (e, b), "low:0");
    cr_assert_str_eq (next (e, b), "low:1");
}

Test (scheduler, alternates_round_robin_between_services_of_equal_priority)
{
    add_service ("a", "double", 1, 3);
    add_service ("b", "double", 1, 3);
    add_service ("c", "double", 1, 1);
    keel_engine_t *e = add_engine ("e1", "double");
    char b[S_PICK_MAX];
    const char *want[] = { "a:0", "b:0", "c:0", "a:1", "b:1", "a:2", "b:2", "" };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_str_eq (next (e, b), want[i], "pick %zu", i);
}

Test (scheduler, gives_an_engine_only_service_types_it_offers)
{
    add_service ("s", "sleep", 9, 2);
    add_service ("d", "double", 0, 1);
    keel_engine_t *only_double = add_engine ("e1", "double");
    keel_engine_t *both = add_engine ("e2", "sleep,double");
    char b[S_PICK_MAX];
    cr_assert_str_eq (next (only_double, b), "d:0");
    cr_assert_str_eq (next (only_double, b), "");
    cr_assert_str_eq (next (both, b), "s:0");
    cr_assert_str_eq (next (both, b), "s:1");
    cr_assert_str_eq (next (both, b), "");
}

static bool
skip_task_zero (keel_service_rec_t *svc, keel_task_t *task, keel_engine_t *engine, void *arg)
{
    (void) svc;
    (void) engine;
    (void) arg;
    return task->input_len != 1 || task->input[0] != '0';
}

Test (scheduler, leaves_filtered_tasks_queued_in_their_order)
{
    keel_service_rec_t *svc = add_service ("a", "double", 0, 3);
    keel_engine_t *e = add_engine ("e1", "double");
    keel_service_rec_t *got;
    uint64_t id;
    cr_assert_not_null (keel_sched_next (sched, e, skip_task_zero, NULL, &got, &id));
    cr_assert_eq (id, 1);
    cr_assert_not_null (keel_sched_next (sched, e, skip_task_zero, NULL, &got, &id));
    cr_assert_eq (id, 2);
    cr_assert_null (keel_sched_next (sched, e, skip_task_zero, NULL, &got, &id));
    cr_assert_eq (svc->nready, 1);
    char b[S_PICK_MAX];
    cr_assert_str_eq (next (e, b), "a:0");
}

Test (scheduler, skips_tasks_a_claim_removed_from_the_queue)
{
    keel_service_rec_t *svc = add_service ("a", "double", 0, 3);
    keel_service_queue_remove (svc, 1);
    keel_engine_t *e = add_engine ("e1", "double");
    char b[S_PICK_MAX];
    cr_assert_str_eq (next (e, b), "a:0");
    cr_assert_str_eq (next (e, b), "a:2");
    cr_assert_str_eq (next (e, b), "");
}

Test (scheduler, serves_a_service_again_after_its_queue_refills)
{
    keel_service_rec_t *svc = add_service ("a", "double", 0, 1);
    keel_engine_t *e = add_engine ("e1", "double");
    char b[S_PICK_MAX];
    cr_assert_str_eq (next (e, b), "a:0");
    cr_assert_str_eq (next (e, b), "");
    cr_assert_eq (keel_sched_size (sched), 0);
    cr_assert (keel_service_queue_push (svc, 0)); // requeued after a lost engine
    keel_sched_activate (sched, svc);
    cr_assert_str_eq (next (e, b), "a:0");
}

Test (model, counts_tasks_per_state_and_undoes_a_fresh_task)
{
    keel_service_rec_t *svc = keel_model_service_add (model, "a", "double", "d");
    cr_assert_not_null (keel_service_task_add (svc, 0, (uint8_t *) "1", 1));
    cr_assert_not_null (keel_service_task_add (svc, 1, (uint8_t *) "2", 1));
    cr_assert_null (keel_service_task_add (svc, 1, (uint8_t *) "2", 1), "duplicate id refused");
    keel_task_t *t = keel_service_task (svc, 0);
    keel_service_task_set_state (svc, t, KEEL_TASK_STATE_RUNNING);
    cr_assert_eq (svc->count[KEEL_TASK_STATE_QUEUED], 1);
    cr_assert_eq (svc->count[KEEL_TASK_STATE_RUNNING], 1);
    keel_service_task_drop (svc, 1);
    cr_assert_eq (svc->total, 1);
    cr_assert_eq (svc->ntasks, 1);
    cr_assert_null (keel_service_task (svc, 1));
}

Test (model, links_executions_to_their_task_and_engine)
{
    keel_service_rec_t *svc = keel_model_service_add (model, "a", "double", "d");
    keel_service_task_add (svc, 0, NULL, 0);
    keel_engine_t *e1 = add_engine ("e1", "double");
    keel_engine_t *e2 = add_engine ("e2", "double");
    keel_exec_t *x1 = keel_model_exec_add (model, 10, svc, 0, e1, 1, 0);
    keel_exec_t *x2 = keel_model_exec_add (model, 11, svc, 0, e2, 1, 0);
    cr_assert_not_null (x1);
    cr_assert_not_null (x2);
    cr_assert_null (keel_model_exec_add (model, 10, svc, 0, e2, 1, 0), "duplicate exec id refused");
    cr_assert_eq (keel_model_exec (model, 11), x2);
    cr_assert_eq (zlistx_size (e1->execs), 1);
    keel_model_exec_remove (model, x1);
    cr_assert_eq (zlistx_size (e1->execs), 0);
    cr_assert_eq (keel_service_task (svc, 0)->execs, x2);
    keel_model_engine_remove (model, e2);
    cr_assert_null (x2->engine, "an execution outlives its removed engine");
    cr_assert_eq (keel_model_exec_count (model), 1);
}
