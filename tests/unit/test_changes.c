/*  test_changes.c — the journal of durable changes (broker/changes.h):
    records own their bytes, the byte form round-trips every kind, and
    bytes from outside are validated before anything is appended.
*/
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "changes.h"

static const uint8_t s_blob[] = { 1, 0, 2, 0xff };

// One record of every kind, with every field its kind uses set.
static void
s_fill (keel_changes_t *j)
{
    keel_change_t all[] = {
        { .kind = KEEL_CHANGE_SERVICE_PUT,
          .service = { "svc-1", "double", "drv-1", -3, 5, 2500, s_blob, sizeof s_blob,
                       KEEL_SERVICE_OPEN, 1700000000000, 0, "gpu == \"a100\"" } },
        { .kind = KEEL_CHANGE_SERVICE_STATE,
          .service = { .service_id = "svc-1",
                       .state = KEEL_SERVICE_CLOSED,
                       .closed_wall_ms = 1700000000500 } },
        { .kind = KEEL_CHANGE_SERVICE_DELETE, .service = { .service_id = "svc-0" } },
        { .kind = KEEL_CHANGE_TASK_PUT,
          .task = { .service_id = "svc-1",
                    .task_id = 7,
                    .state = KEEL_TASK_STATE_QUEUED,
                    .input = s_blob,
                    .input_len = sizeof s_blob } },
        { .kind = KEEL_CHANGE_TASK_STATE,
          .task = { .service_id = "svc-1",
                    .task_id = 7,
                    .state = KEEL_TASK_STATE_RUNNING,
                    .attempts = 2 } },
        { .kind = KEEL_CHANGE_TASK_RESULT,
          .task = { .service_id = "svc-1",
                    .task_id = 7,
                    .state = KEEL_TASK_STATE_DONE,
                    .attempts = 2,
                    .status = 1,
                    .output = s_blob,
                    .output_len = 3,
                    .error = NULL,
                    .engine_id = "eng-1",
                    .execution_id = 99,
                    .run_ms = 12,
                    .queued_ms = 3,
                    .result_acked = true } },
        { .kind = KEEL_CHANGE_TASK_ACKED, .task = { .service_id = "svc-1", .task_id = 7 } },
        { .kind = KEEL_CHANGE_TASK_CHECKPOINT,
          .task = { .service_id = "svc-1",
                    .task_id = 8,
                    .checkpoint = s_blob,
                    .checkpoint_len = 2,
                    .checkpoint_wall_ms = 42 } },
        { .kind = KEEL_CHANGE_EXEC_PUT, .exec = { 99, "svc-1", 7, "eng-1", 2, 1700000000100 } },
        { .kind = KEEL_CHANGE_EXEC_DELETE, .exec = { .execution_id = 98 } },
        { .kind = KEEL_CHANGE_PENDING_PUT,
          .pending = { "svc-2", 1, 77, "eng-2", true, 2, NULL, 0, "exit 3", 40, 1700000900000 } },
        { .kind = KEEL_CHANGE_PENDING_DELETE,
          .pending = { .service_id = "svc-2", .task_id = 1, .execution_id = 76 } },
        { .kind = KEEL_CHANGE_ENGINE_PUT,
          .engine = { "eng-1", "host-a", "sess-1", 4, 1700000000000, 1700000000900, true } },
        { .kind = KEEL_CHANGE_CONFIG_SET, .config = { "MaxAttempts", "5" } },
        { .kind = KEEL_CHANGE_EVENT, .event = { 1700000000001, "engine-lost", "engine=eng-1" } },
        { .kind = KEEL_CHANGE_META_SET, .meta = { "execution_seq", 123456789012ull } },
    };
    cr_assert_eq (sizeof all / sizeof all[0], KEEL_CHANGE_KIND_MAX, "one record per kind");
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cr_assert_eq (keel_changes_add (j, &all[i]), KEEL_OK);
}

static bool
s_str_eq (const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp (a, b) == 0);
}

static bool
s_bin_eq (const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return (!a && !b) || (a && b && alen == blen && memcmp (a, b, alen) == 0);
}

static void
s_assert_same (const keel_change_t *a, const keel_change_t *b)
{
    cr_assert_eq (a->kind, b->kind);
    const char *k = keel_change_kind_name (a->kind);
    switch (a->kind) {
        case KEEL_CHANGE_SERVICE_PUT:
        case KEEL_CHANGE_SERVICE_STATE:
        case KEEL_CHANGE_SERVICE_DELETE:
            cr_assert (s_str_eq (a->service.service_id, b->service.service_id), "%s", k);
            cr_assert (s_str_eq (a->service.type, b->service.type), "%s", k);
            cr_assert (s_str_eq (a->service.driver_id, b->service.driver_id), "%s", k);
            cr_assert (s_bin_eq (a->service.init_data, a->service.init_len, b->service.init_data,
                                 b->service.init_len),
                       "%s", k);
            if (a->kind != KEEL_CHANGE_SERVICE_DELETE) {
                cr_assert_eq (a->service.state, b->service.state, "%s", k);
                cr_assert_eq (a->service.closed_wall_ms, b->service.closed_wall_ms, "%s", k);
            }
            if (a->kind == KEEL_CHANGE_SERVICE_PUT) {
                cr_assert_eq (a->service.priority, b->service.priority);
                cr_assert_eq (a->service.max_attempts, b->service.max_attempts);
                cr_assert_eq (a->service.reschedule_delay_ms, b->service.reschedule_delay_ms);
                cr_assert_eq (a->service.created_wall_ms, b->service.created_wall_ms);
                cr_assert (s_str_eq (a->service.condition, b->service.condition));
            }
            break;
        case KEEL_CHANGE_TASK_PUT:
        case KEEL_CHANGE_TASK_STATE:
        case KEEL_CHANGE_TASK_RESULT:
        case KEEL_CHANGE_TASK_ACKED:
        case KEEL_CHANGE_TASK_CHECKPOINT:
            cr_assert (s_str_eq (a->task.service_id, b->task.service_id), "%s", k);
            cr_assert_eq (a->task.task_id, b->task.task_id, "%s", k);
            cr_assert_eq (a->task.state, b->task.state, "%s", k);
            cr_assert_eq (a->task.attempts, b->task.attempts, "%s", k);
            cr_assert (
                s_bin_eq (a->task.input, a->task.input_len, b->task.input, b->task.input_len), "%s",
                k);
            cr_assert (
                s_bin_eq (a->task.output, a->task.output_len, b->task.output, b->task.output_len),
                "%s", k);
            cr_assert (s_bin_eq (a->task.checkpoint, a->task.checkpoint_len, b->task.checkpoint,
                                 b->task.checkpoint_len),
                       "%s", k);
            cr_assert (s_str_eq (a->task.error, b->task.error), "%s", k);
            cr_assert (s_str_eq (a->task.engine_id, b->task.engine_id), "%s", k);
            cr_assert_eq (a->task.status, b->task.status, "%s", k);
            cr_assert_eq (a->task.execution_id, b->task.execution_id, "%s", k);
            cr_assert_eq (a->task.run_ms, b->task.run_ms, "%s", k);
            cr_assert_eq (a->task.queued_ms, b->task.queued_ms, "%s", k);
            cr_assert_eq (a->task.result_acked, b->task.result_acked, "%s", k);
            cr_assert_eq (a->task.checkpoint_wall_ms, b->task.checkpoint_wall_ms, "%s", k);
            break;
        case KEEL_CHANGE_EXEC_PUT:
        case KEEL_CHANGE_EXEC_DELETE:
            cr_assert_eq (a->exec.execution_id, b->exec.execution_id, "%s", k);
            cr_assert (s_str_eq (a->exec.service_id, b->exec.service_id), "%s", k);
            cr_assert (s_str_eq (a->exec.engine_id, b->exec.engine_id), "%s", k);
            cr_assert_eq (a->exec.task_id, b->exec.task_id, "%s", k);
            cr_assert_eq (a->exec.attempt, b->exec.attempt, "%s", k);
            cr_assert_eq (a->exec.started_wall_ms, b->exec.started_wall_ms, "%s", k);
            break;
        case KEEL_CHANGE_PENDING_PUT:
        case KEEL_CHANGE_PENDING_DELETE:
            cr_assert (s_str_eq (a->pending.service_id, b->pending.service_id), "%s", k);
            cr_assert (s_str_eq (a->pending.engine_id, b->pending.engine_id), "%s", k);
            cr_assert (s_str_eq (a->pending.error, b->pending.error), "%s", k);
            cr_assert_eq (a->pending.task_id, b->pending.task_id, "%s", k);
            cr_assert_eq (a->pending.execution_id, b->pending.execution_id, "%s", k);
            cr_assert_eq (a->pending.has_result, b->pending.has_result, "%s", k);
            cr_assert_eq (a->pending.status, b->pending.status, "%s", k);
            cr_assert_eq (a->pending.run_ms, b->pending.run_ms, "%s", k);
            cr_assert_eq (a->pending.expires_wall_ms, b->pending.expires_wall_ms, "%s", k);
            break;
        case KEEL_CHANGE_ENGINE_PUT:
            cr_assert (s_str_eq (a->engine.engine_id, b->engine.engine_id));
            cr_assert (s_str_eq (a->engine.host, b->engine.host));
            cr_assert (s_str_eq (a->engine.session, b->engine.session));
            cr_assert_eq (a->engine.slots, b->engine.slots);
            cr_assert_eq (a->engine.login_wall_ms, b->engine.login_wall_ms);
            cr_assert_eq (a->engine.seen_wall_ms, b->engine.seen_wall_ms);
            cr_assert_eq (a->engine.online, b->engine.online);
            break;
        case KEEL_CHANGE_CONFIG_SET:
            cr_assert_str_eq (a->config.key, b->config.key);
            cr_assert_str_eq (a->config.value, b->config.value);
            break;
        case KEEL_CHANGE_EVENT:
            cr_assert_eq (a->event.wall_ms, b->event.wall_ms);
            cr_assert_str_eq (a->event.kind, b->event.kind);
            cr_assert_str_eq (a->event.text, b->event.text);
            break;
        case KEEL_CHANGE_META_SET:
            cr_assert_str_eq (a->meta.name, b->meta.name);
            cr_assert_eq (a->meta.value, b->meta.value);
            break;
    }
}

Test (changes, records_own_their_bytes)
{
    keel_changes_t *j = keel_changes_new ();
    char id[16] = "svc-9";
    uint8_t input[3] = { 5, 6, 7 };
    keel_change_t c = {
        .kind = KEEL_CHANGE_TASK_PUT,
        .task = { .service_id = id, .task_id = 1, .input = input, .input_len = sizeof input }
    };
    cr_assert_eq (keel_changes_add (j, &c), KEEL_OK);
    strcpy (id, "changed");
    input[0] = 0;
    const keel_change_t *r = keel_changes_at (j, 0);
    cr_assert_str_eq (r->task.service_id, "svc-9");
    cr_assert_eq (r->task.input[0], 5);
    keel_changes_destroy (&j);
    cr_assert_null (j);
}

Test (changes, a_state_change_carries_no_blob)
{
    keel_changes_t *j = keel_changes_new ();
    keel_change_t c = { .kind = KEEL_CHANGE_TASK_STATE,
                        .task = { .service_id = "s",
                                  .task_id = 1,
                                  .state = KEEL_TASK_STATE_RUNNING,
                                  .input = s_blob,
                                  .input_len = 4,
                                  .checkpoint = s_blob,
                                  .checkpoint_len = 4,
                                  .output = s_blob,
                                  .output_len = 4 } };
    cr_assert_eq (keel_changes_add (j, &c), KEEL_OK);
    const keel_change_t *r = keel_changes_at (j, 0);
    cr_assert_null (r->task.input);
    cr_assert_null (r->task.checkpoint);
    cr_assert_null (r->task.output);
    keel_changes_destroy (&j);
}

Test (changes, keep_order_and_survive_growth_and_clear)
{
    keel_changes_t *j = keel_changes_new ();
    static uint8_t big[300000];
    memset (big, 0xab, sizeof big);
    for (int round = 0; round < 3; round++) {
        for (uint64_t i = 0; i < 5000; i++) {
            keel_change_t c = { .kind = KEEL_CHANGE_TASK_PUT,
                                .task = { .service_id = "svc",
                                          .task_id = i,
                                          .input = i % 1000 == 0 ? big : s_blob,
                                          .input_len = i % 1000 == 0 ? sizeof big : 4 } };
            cr_assert_eq (keel_changes_add (j, &c), KEEL_OK);
        }
        cr_assert_eq (keel_changes_size (j), 5000);
        for (uint64_t i = 0; i < 5000; i++) {
            const keel_change_t *r = keel_changes_at (j, i);
            cr_assert_eq (r->task.task_id, i);
            cr_assert_str_eq (r->task.service_id, "svc");
            size_t len = i % 1000 == 0 ? sizeof big : 4;
            cr_assert_eq (r->task.input_len, len);
            cr_assert (memcmp (r->task.input, i % 1000 == 0 ? big : s_blob, len) == 0);
        }
        cr_assert_null (keel_changes_at (j, 5000));
        // Each way of clearing leaves a journal that takes records again:
        // keeping its room, giving a too big room back, or giving it all back.
        if (round == 0)
            keel_changes_clear (j);
        else
            keel_changes_clear_to (j, round == 1 ? 100000 : 16);
        cr_assert_eq (keel_changes_size (j), 0);
    }
    keel_changes_destroy (&j);
}

Test (changes, a_swap_moves_the_records_and_leaves_the_other_journal_as_it_was)
{
    keel_changes_t *a = keel_changes_new (), *b = keel_changes_new ();
    for (uint64_t i = 0; i < 300; i++) {
        keel_change_t c = { .kind = KEEL_CHANGE_TASK_PUT,
                            .task = { .service_id = "svc-a", .task_id = i } };
        cr_assert_eq (keel_changes_add (a, &c), KEEL_OK);
    }
    keel_changes_swap (a, b);
    cr_assert_eq (keel_changes_size (a), 0);
    cr_assert_eq (keel_changes_size (b), 300);
    cr_assert_str_eq (keel_changes_at (b, 299)->task.service_id, "svc-a");
    cr_assert_eq (keel_changes_at (b, 299)->task.task_id, 299);
    keel_change_t c = { .kind = KEEL_CHANGE_TASK_PUT, .task = { .service_id = "svc-b" } };
    cr_assert_eq (keel_changes_add (a, &c), KEEL_OK); // a, empty, still takes records
    cr_assert_eq (keel_changes_size (a), 1);
    cr_assert_str_eq (keel_changes_at (b, 0)->task.service_id, "svc-a", "b's bytes moved with it");
    keel_changes_destroy (&a);
    keel_changes_destroy (&b);
}

Test (changes, every_kind_round_trips_through_bytes)
{
    keel_changes_t *j = keel_changes_new ();
    s_fill (j);
    size_t size = 0;
    uint8_t *bytes = keel_changes_encode (j, 4242, &size);
    cr_assert_not_null (bytes);
    keel_changes_t *back = keel_changes_new ();
    keel_error_t err = { "" };
    uint64_t seq = 0;
    cr_assert_eq (keel_changes_decode (back, bytes, size, &seq, &err), KEEL_OK, "%s", err.text);
    cr_assert_eq (seq, 4242);
    cr_assert_eq (keel_changes_size (back), keel_changes_size (j));
    for (size_t i = 0; i < keel_changes_size (j); i++)
        s_assert_same (keel_changes_at (j, i), keel_changes_at (back, i));
    free (bytes);
    keel_changes_destroy (&back);
    keel_changes_destroy (&j);
}

Test (changes, unknown_kinds_are_refused)
{
    keel_changes_t *j = keel_changes_new ();
    cr_assert_eq (keel_changes_add (j, &(keel_change_t) { .kind = 0 }), KEEL_ERR_INVALID);
    cr_assert_eq (keel_changes_add (j, &(keel_change_t) { .kind = KEEL_CHANGE_KIND_MAX + 1 }),
                  KEEL_ERR_INVALID);
    cr_assert_eq (keel_changes_size (j), 0);
    cr_assert_str_eq (keel_change_kind_name (KEEL_CHANGE_KIND_MAX + 1), "?");
    cr_assert_str_eq (keel_change_kind_name (KEEL_CHANGE_TASK_RESULT), "task-result");
    keel_changes_destroy (&j);
}

// Decoding bytes that are not what they should be appends nothing and says why.
static void
s_refused (const uint8_t *bytes, size_t size, const char *why)
{
    keel_changes_t *j = keel_changes_new ();
    keel_changes_add (j, &(keel_change_t) { .kind = KEEL_CHANGE_EXEC_DELETE, .exec = { 1 } });
    keel_error_t err = { "" };
    cr_assert_eq (keel_changes_decode (j, bytes, size, NULL, &err), KEEL_ERR_INVALID);
    cr_assert (strstr (err.text, why), "'%s' does not say '%s'", err.text, why);
    cr_assert_eq (keel_changes_size (j), 1, "nothing appended");
    keel_changes_destroy (&j);
}

static uint8_t *
s_encode_one (keel_change_t c, size_t *size)
{
    keel_changes_t *j = keel_changes_new ();
    cr_assert_eq (keel_changes_add (j, &c), KEEL_OK);
    uint8_t *bytes = keel_changes_encode (j, 1, size);
    keel_changes_destroy (&j);
    return bytes;
}

Test (changes, bad_bytes_are_refused_with_a_reason)
{
    const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
    s_refused (junk, sizeof junk, "not a change batch");

    // A record missing a field its kind needs: a TASK_STATE without a
    // service id (what a record from a buggy or hostile peer may look like).
    size_t size;
    uint8_t *bytes = s_encode_one (
        (keel_change_t) { .kind = KEEL_CHANGE_TASK_STATE, .task = { .task_id = 3 } }, &size);
    s_refused (bytes, size, "no service_id");
    free (bytes);
    bytes = s_encode_one (
        (keel_change_t) { .kind = KEEL_CHANGE_EVENT, .event = { 1, "kind", NULL } }, &size);
    s_refused (bytes, size, "no event_kind, text or wall_ms");
    free (bytes);

    // A batch written by a newer broker: version 2 (field 1, varint 2).
    const uint8_t newer[] = { 0x08, 0x02, 0x10, 0x01 };
    s_refused (newer, sizeof newer, "version 2");
    // An unknown kind (Change.kind = 99) inside an otherwise good batch.
    const uint8_t unknown[] = { 0x08, 0x01, 0x1a, 0x02, 0x08, 0x63 };
    s_refused (unknown, sizeof unknown, "unknown kind 99");
    // A task state out of range.
    bytes = s_encode_one (
        (keel_change_t) {
            .kind = KEEL_CHANGE_TASK_STATE,
            .task = { .service_id = "s", .task_id = 1, .state = (keel_task_state_t) 9 } },
        &size);
    s_refused (bytes, size, "task_state 9");
    free (bytes);
}
