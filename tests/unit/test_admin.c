/*  test_admin.c — the broker's answer to `tasks SERVICE [state=S] [limit=N]
    [offset=N]` (admin.c) on a model built by hand: attempts as drivers are
    told, the engines that ran a task, the error of a failed one, filters,
    paging, and the arguments refused (issue 10, item 5).
*/
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "model.h"

static keel_model_t *model;
static keel_service_rec_t *svc;
static keel_engine_t *engine_a, *engine_b;

#define S_ENGINE_A "aaaaaaaa-0000-0000-0000-000000000001"
#define S_ENGINE_B "bbbbbbbb-0000-0000-0000-000000000002"

static void
s_result (keel_task_t *t, int status, const char *error, const char *engine_id)
{
    keel_task_result_t *r = keel_task_result_new (status, NULL, 0, error, engine_id);
    cr_assert_not_null (r);
    r->execution_id = 77;
    keel_task_set_result (t, r);
}

//  Tasks 0..9: 0-5 done (task 1 after one failure), 6 failed after 3
//  failures on engine B, 7 running on A with a lost copy, 8-9 queued.
static void
setup (void)
{
    model = keel_model_new ();
    cr_assert_not_null (model);
    engine_a = keel_model_engine_add (model, S_ENGINE_A);
    engine_b = keel_model_engine_add (model, S_ENGINE_B);
    svc = keel_model_service_add (model, "svc-1", "maybe", "driver-1");
    cr_assert (engine_a && engine_b && svc);
    for (uint64_t id = 0; id < 10; id++) {
        keel_task_t *t = keel_service_task_add (svc, id, (const uint8_t *) "x", 1);
        cr_assert_not_null (t);
        if (id <= 5) {
            s_result (t, KEEL__TASK_STATUS__STATUS_OK, NULL, S_ENGINE_A);
            keel_service_task_set_state (svc, t, KEEL_TASK_STATE_DONE);
        }
    }
    keel_service_task (svc, 1)->attempts = 1;
    keel_task_t *failed = keel_service_task (svc, 6);
    failed->attempts = 3;
    s_result (failed, KEEL__TASK_STATUS__STATUS_FAILED,
              "exit status 1: x\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9 first line\nsecond line that the table never shows",
              S_ENGINE_B);
    keel_service_task_set_state (svc, failed, KEEL_TASK_STATE_FAILED);
    keel_task_t *running = keel_service_task (svc, 7);
    keel_service_task_set_state (svc, running, KEEL_TASK_STATE_RUNNING);
    cr_assert_not_null (keel_model_exec_add (model, 101, svc, 7, engine_a, 1, 0));
    cr_assert_not_null (keel_model_exec_add (model, 102, svc, 7, NULL, 1, 0));
}

static void
teardown (void)
{
    keel_model_destroy (&model);
}

//  Runs `tasks svc-1 ARGS...` (NULL-terminated).
static void
s_tasks (keel_admin_reply_t *reply, ...)
{
    char *args[8] = { "svc-1" };
    size_t n = 1;
    va_list ap;
    va_start (ap, reply);
    for (char *a; n < 8 && (a = va_arg (ap, char *));)
        args[n++] = a;
    va_end (ap);
    keel_admin_view_t view = { .name = "b", .role = "standalone", .model = model };
    keel_admin_handle (&view, "tasks", args, n, reply);
}

//  The JSON object of task id in a reply ("{"task":id,...}" up to the next task).
static char *
s_task (const char *json, int id)
{
    char key[32];
    snprintf (key, sizeof key, "{\"task\":%d,", id);
    const char *p = strstr (json, key);
    if (!p)
        return NULL;
    const char *end = strstr (p + 1, "{\"task\":");
    return strndup (p, end ? (size_t) (end - p) : strlen (p));
}

//  The text row of task id.
static char *
s_row (const char *text, int id)
{
    char key[32];
    snprintf (key, sizeof key, "\n%8d  ", id);
    const char *p = strstr (text, key);
    if (!p)
        return NULL;
    p++;
    return strndup (p, strcspn (p, "\n"));
}

TestSuite (admin, .init = setup, .fini = teardown);

Test (admin, tasks_counts_attempts_as_drivers_are_told)
{
    keel_admin_reply_t reply;
    s_tasks (&reply, NULL);
    cr_assert (reply.ok, "%s", reply.error);
    struct {
        int task;
        const char *attempts, *failures;
    } want[] = {
        { 0, "\"attempts\":1,", "\"failures\":0," }, // done at once
        { 1, "\"attempts\":2,", "\"failures\":1," }, // done after one failure
        { 6, "\"attempts\":3,", "\"failures\":3," }, // failed: every execution failed
        { 7, "\"attempts\":0,", "\"failures\":0," }, // running: no outcome yet
        { 8, "\"attempts\":0,", "\"failures\":0," }, // queued
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *obj = s_task (reply.json, want[i].task);
        cr_assert_not_null (obj, "no task %d: %s", want[i].task, reply.json);
        cr_expect (strstr (obj, want[i].attempts) && strstr (obj, want[i].failures),
                   "task %d: want %s %s in %s", want[i].task, want[i].attempts, want[i].failures,
                   obj);
        free (obj);
    }
    char *row = s_row (reply.text, 1);
    cr_assert_not_null (row, "%s", reply.text);
    unsigned id = 0, attempts = 0;
    char state[16];
    cr_expect (sscanf (row, "%u %15s %u", &id, state, &attempts) == 3 && attempts == 2, "%s", row);
    free (row);
    keel_admin_reply_clear (&reply);
}

Test (admin, tasks_names_the_engines_that_ran_a_task)
{
    keel_admin_reply_t reply;
    s_tasks (&reply, NULL);
    cr_assert (reply.ok, "%s", reply.error);
    char *obj = s_task (reply.json, 0);
    cr_expect (obj && strstr (obj, "\"engines\":[\"" S_ENGINE_A "\"]"), "%s", obj);
    free (obj);
    obj = s_task (reply.json, 6);
    cr_expect (obj && strstr (obj, "\"engines\":[\"" S_ENGINE_B "\"]"), "%s", obj);
    free (obj);
    obj = s_task (reply.json, 7);
    cr_expect (obj && strstr (obj, "\"engines\":[\"" S_ENGINE_A "\"]")
                   && strstr (obj, "{\"id\":101,\"engine\":\"" S_ENGINE_A "\"")
                   && strstr (obj, "{\"id\":102,\"engine\":null"),
               "%s", obj);
    free (obj);
    char *row = s_row (reply.text, 7);
    cr_expect (row && strstr (row, S_ENGINE_A ",(lost)"), "%s", row);
    free (row);
    row = s_row (reply.text, 8);
    cr_expect (row && strstr (row, "queued") && strstr (row, " - "), "%s", row);
    free (row);
    keel_admin_reply_clear (&reply);
}

Test (admin, tasks_shows_an_error_cut_on_one_line_and_whole_in_json)
{
    keel_admin_reply_t reply;
    s_tasks (&reply, NULL);
    cr_assert (reply.ok, "%s", reply.error);
    char *row = s_row (reply.text, 6);
    cr_assert_not_null (row, "%s", reply.text);
    const char *error = strstr (row, "exit status 1: ");
    cr_assert_not_null (error, "%s", row);
    cr_expect (strlen (error) <= 60, "the error cell is %zu bytes: %s", strlen (error), error);
    cr_expect (strcmp (error + strlen (error) - 3, "...") == 0, "no '...': %s", error);
    // Cut on a character: the byte before "..." ends a UTF-8 sequence.
    unsigned char last = (unsigned char) error[strlen (error) - 4];
    cr_expect (last < 0x80 || (last & 0xC0) == 0x80, "cut inside a character: %s", error);
    cr_expect (!strstr (row, "second line"), "%s", row);
    free (row);
    char *obj = s_task (reply.json, 6);
    cr_expect (obj && strstr (obj, "first line\\nsecond line that the table never shows"), "%s",
               obj);
    free (obj);
    keel_admin_reply_clear (&reply);
}

Test (admin, tasks_filters_by_state_and_pages)
{
    keel_admin_reply_t reply;
    s_tasks (&reply, "state=done", "offset=2", "limit=3", NULL);
    cr_assert (reply.ok, "%s", reply.error);
    for (int id = 0; id < 10; id++) {
        char *obj = s_task (reply.json, id);
        cr_expect ((obj != NULL) == (id >= 2 && id <= 4), "task %d: %s", id, reply.json);
        free (obj);
    }
    cr_expect (strstr (reply.json, "\"state\":\"done\","), "%s", reply.json);
    cr_expect (strstr (reply.json, "\"total\":6,\"limit\":3,\"offset\":2,\"returned\":3,"
                                   "\"has_more\":true,\"next_offset\":5,"),
               "%s", reply.json);
    cr_expect (strstr (reply.text, "(1 more rows: use --offset 5)\n"), "%s", reply.text);
    keel_admin_reply_clear (&reply);

    s_tasks (&reply, "state=queued", NULL);
    cr_assert (reply.ok, "%s", reply.error);
    cr_expect (strstr (reply.json, "\"total\":2,\"limit\":10000,\"offset\":0,\"returned\":2,"
                                   "\"has_more\":false,"),
               "%s", reply.json);
    cr_expect (!strstr (reply.text, "more rows"), "%s", reply.text);
    keel_admin_reply_clear (&reply);

    s_tasks (&reply, "state=cancelled", NULL);
    cr_assert (reply.ok, "%s", reply.error);
    cr_expect (strstr (reply.text, "(no tasks in state cancelled)"), "%s", reply.text);
    keel_admin_reply_clear (&reply);
}

Test (admin, tasks_refuses_bad_arguments_naming_them)
{
    struct {
        const char *arg, *error;
    } bad[] = {
        { "state=sleeping",
          "tasks: state: expected queued, running, done, failed, cancelled or delivered_elsewhere, "
          "got 'sleeping'" },
        { "limit=0", "tasks: limit: expected a number of rows from 1 to 100000, got '0'" },
        { "limit=100001",
          "tasks: limit: expected a number of rows from 1 to 100000, got '100001'" },
        { "limit=5x", "tasks: limit: expected a number of rows from 1 to 100000, got '5x'" },
        { "offset=-1", "tasks: offset: expected a number of rows (0 or more), got '-1'" },
        { "offset=99999999999999999999", "tasks: offset: expected a number of rows (0 or more), "
                                         "got '99999999999999999999'" },
        { "sort=id", "tasks: unknown option 'sort=id' (options: state=STATE, limit=N, offset=N)" },
        { "limit", "tasks: unknown option 'limit' (options: state=STATE, limit=N, offset=N)" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keel_admin_reply_t reply;
        s_tasks (&reply, bad[i].arg, NULL);
        cr_expect (!reply.ok, "%s accepted", bad[i].arg);
        cr_expect_str_eq (reply.error ? reply.error : "", bad[i].error);
        keel_admin_reply_clear (&reply);
    }
    keel_admin_reply_t reply;
    s_tasks (&reply, "limit=1", "limit=2", "limit=3", "limit=4", NULL);
    cr_expect (!reply.ok && strstr (reply.error, "usage: tasks SERVICE"), "%s", reply.error);
    keel_admin_reply_clear (&reply);
}
