/*  What a queued task costs the broker (W4 in docs/benchmarks.md): a task
    is 64 bytes, the task table grows a page at a time where tasks are,
    tasks never move, small inputs share blocks, and the FIFO keeps its
    order when it grows around its wrap. */

#include <criterion/criterion.h>
#include <string.h>

#include "model.h"

static keel_model_t *model;
static keel_service_rec_t *svc;

static void
setup (void)
{
    model = keel_model_new ();
    cr_assert_not_null (model);
    svc = keel_model_service_add (model, "svc-1", "double", "driver-1");
    cr_assert_not_null (svc);
}

static void
teardown (void)
{
    keel_model_destroy (&model);
}

static keel_task_t *
s_add (uint64_t id)
{
    char input[24];
    snprintf (input, sizeof input, "%llu", (unsigned long long) id);
    keel_task_t *t = keel_service_task_add (svc, id, (const uint8_t *) input, strlen (input));
    cr_assert_not_null (t, "task %llu", (unsigned long long) id);
    return t;
}

static uint64_t
s_pages_allocated (void)
{
    uint64_t n = 0;
    for (uint64_t p = 0; p < svc->npages; p++)
        n += svc->pages[p] != NULL;
    return n;
}

TestSuite (model_memory, .init = setup, .fini = teardown);

Test (model_memory, a_task_is_64_bytes)
{
    cr_assert_eq (sizeof (keel_task_t), 64);
}

Test (model_memory, flags_hold_every_state_and_dirty_bit)
{
    keel_task_t *t = s_add (0);
    for (int s = 0; s < KEEL_TASK_NSTATES; s++) {
        keel_service_task_set_state (svc, t, (keel_task_state_t) s);
        cr_assert_eq (t->state, s);
    }
    t->dirty = 0;
    t->dirty |=
        KEEL_DIRTY_NEW | KEEL_DIRTY_STATE | KEEL_DIRTY_RESULT | KEEL_DIRTY_ACK | KEEL_DIRTY_CKPT;
    cr_assert_eq (t->dirty, 31);
    cr_assert (t->present);
    t->attempts = 65535;
    cr_assert_eq (keel_task_attempts (t), 65535);
}

Test (model_memory, the_task_table_grows_only_where_tasks_are)
{
    s_add (0);
    cr_assert_eq (s_pages_allocated (), 1);
    uint64_t far = 5 * KEEL_TASK_PAGE + 3;
    s_add (far);
    cr_assert_eq (s_pages_allocated (), 2); // not the four pages between
    cr_assert_eq (svc->ntasks, far + 1);
    cr_assert_null (keel_service_task (svc, 1));
    cr_assert_null (keel_service_task (svc, 2 * KEEL_TASK_PAGE));
    cr_assert_null (keel_service_task (svc, far + 1));
    cr_assert_not_null (keel_service_task (svc, far));
    for (uint64_t id = 1; id < 3 * KEEL_TASK_PAGE; id++)
        s_add (id);
    cr_assert_eq (s_pages_allocated (), 4);
    cr_assert_eq (svc->total, 3 * KEEL_TASK_PAGE + 1);
}

Test (model_memory, tasks_never_move_as_the_table_grows)
{
    keel_task_t *first = s_add (0);
    keel_task_t *mid = s_add (KEEL_TASK_PAGE + 1);
    for (uint64_t id = 1; id < 100 * KEEL_TASK_PAGE; id++)
        if (id != KEEL_TASK_PAGE + 1)
            s_add (id);
    cr_assert_eq (keel_service_task (svc, 0), first);
    cr_assert_eq (keel_service_task (svc, KEEL_TASK_PAGE + 1), mid);
    cr_assert_eq (memcmp (first->input, "0", 1), 0);
}

Test (model_memory, small_inputs_share_blocks_and_large_ones_do_not)
{
    keel_task_t *a = s_add (10);
    keel_task_t *b = s_add (11);
    cr_assert (a->input_shared && b->input_shared);
    cr_assert_eq (b->input, a->input + a->input_len); // back to back, no malloc chunk each
    cr_assert_eq (memcmp (a->input, "10", 2), 0);
    cr_assert_eq (memcmp (b->input, "11", 2), 0);

    uint8_t big[KEEL_INPUT_SHARED_MAX + 1];
    memset (big, 'x', sizeof big);
    keel_task_t *c = keel_service_task_add (svc, 12, big, sizeof big);
    cr_assert_not_null (c);
    cr_assert_not (c->input_shared);
    cr_assert_eq (c->input_len, sizeof big);
    cr_assert_eq (memcmp (c->input, big, sizeof big), 0);

    keel_task_t *none = keel_service_task_add (svc, 13, NULL, 0);
    cr_assert_not_null (none);
    cr_assert_null (none->input);
    cr_assert_eq (none->input_len, 0);

    // Many blocks' worth: every input still reads back.
    for (uint64_t id = 100; id < 100000; id++)
        s_add (id);
    for (uint64_t id = 100; id < 100000; id += 997) {
        char want[24];
        int n = snprintf (want, sizeof want, "%llu", (unsigned long long) id);
        keel_task_t *t = keel_service_task (svc, id);
        cr_assert_eq (t->input_len, (uint32_t) n);
        cr_assert_eq (memcmp (t->input, want, (size_t) n), 0);
    }
}

Test (model_memory, a_dropped_task_leaves_a_hole_and_the_end_shrinks)
{
    for (uint64_t id = 0; id < 4; id++)
        s_add (id);
    keel_service_task_drop (svc, 1);
    cr_assert_null (keel_service_task (svc, 1));
    cr_assert_eq (svc->ntasks, 4);
    keel_service_task_drop (svc, 3);
    keel_service_task_drop (svc, 2);
    cr_assert_eq (svc->ntasks, 1);
    cr_assert_eq (svc->total, 1);
    cr_assert_not_null (s_add (2)); // the slot can be used again
    cr_assert_eq (svc->ntasks, 3);
}

Test (model_memory, the_fifo_keeps_its_order_when_it_grows_around_its_wrap)
{
    for (uint64_t id = 0; id < 1000; id++)
        s_add (id);
    uint64_t next_in = 0, next_out = 0, got;
    for (; next_in < 64; next_in++)
        cr_assert (keel_service_queue_push (svc, next_in));
    for (; next_out < 40; next_out++) { // the head moves along the ring
        cr_assert_not_null (keel_service_queue_pop (svc, NULL, NULL, 1, &got));
        cr_assert_eq (got, next_out);
    }
    for (; next_in < 1000; next_in++) // wraps, then grows twice or more
        cr_assert (keel_service_queue_push (svc, next_in));
    cr_assert_gt (svc->qcap, 64);
    for (; next_out < 1000; next_out++) {
        cr_assert_not_null (keel_service_queue_pop (svc, NULL, NULL, 1, &got));
        cr_assert_eq (got, next_out);
    }
    cr_assert_null (keel_service_queue_pop (svc, NULL, NULL, 1, &got));
}

Test (model_memory, engine_numbers_are_unique_and_never_zero)
{
    keel_engine_t *a = keel_model_engine_add (model, "engine-a");
    cr_assert_not_null (a);
    uint32_t first = a->number;
    cr_assert_neq (first, 0);
    keel_model_engine_remove (model, a);
    keel_engine_t *b = keel_model_engine_add (model, "engine-a"); // same id, new record
    cr_assert_not_null (b);
    cr_assert_neq (b->number, 0);
    cr_assert_neq (b->number, first); // a task that avoided the old record does not avoid it
}
