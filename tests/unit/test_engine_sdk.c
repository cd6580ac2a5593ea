/*  test_engine_sdk.c — the engine side of the service SDK: count and its
    memory, checkpoints from workers, library services run by a worker,
    the cancel flag at a timeout, invocation parsing, the init data table.
*/
#include <criterion/criterion.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "builtin.h"
#include "initdata.h"
#include "library.h"
#include "runner.h"

static int64_t
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    int results;
    bool ok;
    bool permanent;
    char text[1024];
    size_t size;
    int checkpoints;
    char last_checkpoint[64];
    size_t last_size;
} s_seen_t;

static void
s_on_done (const keel_runner_result_t *r, void *arg)
{
    s_seen_t *seen = arg;
    seen->results++;
    seen->ok = r->ok;
    seen->permanent = r->permanent;
    seen->size = r->size < sizeof seen->text - 1 ? r->size : sizeof seen->text - 1;
    memcpy (seen->text, r->data, seen->size);
    seen->text[seen->size] = 0;
}

static void
s_on_checkpoint (uint64_t id, const uint8_t *data, size_t size, void *arg)
{
    (void) id;
    s_seen_t *seen = arg;
    seen->checkpoints++;
    seen->last_size =
        size < sizeof seen->last_checkpoint - 1 ? size : sizeof seen->last_checkpoint - 1;
    memcpy (seen->last_checkpoint, data, seen->last_size);
    seen->last_checkpoint[seen->last_size] = 0;
}

//  Runs req to completion (deadline 10 s) and returns what was seen.
static s_seen_t
s_run (keel_runner_t *runner, const keel_worker_request_t *req, int64_t timeout_ms)
{
    s_seen_t seen = { 0 };
    cr_assert_eq (keel_runner_start (runner, req, timeout_ms, s_now ()), KEEL_OK);
    keel_runner_handlers_t h = { s_on_done, s_on_checkpoint, &seen };
    int64_t until = s_now () + 10000;
    while (seen.results == 0 && s_now () < until) {
        int fds[8];
        int n = keel_runner_fds (runner, fds, 8);
        struct pollfd pfd[8];
        for (int i = 0; i < n; i++)
            pfd[i] = (struct pollfd) { fds[i], POLLIN, 0 };
        poll (pfd, (nfds_t) n, 20);
        keel_runner_process (runner, s_now (), &h);
    }
    cr_assert_eq (seen.results, 1, "no result within 10 s");
    return seen;
}

static keel_worker_request_t
s_count (const char *input, const char *memory)
{
    return (keel_worker_request_t) { .execution_id = 1,
                                     .task_id = 1,
                                     .kind = KEEL_WORKER_BUILTIN,
                                     .type = "count",
                                     .service_id = "svc",
                                     .input = (const uint8_t *) input,
                                     .input_size = strlen (input),
                                     .memory = (const uint8_t *) memory,
                                     .memory_size = memory ? strlen (memory) : 0,
                                     .has_memory = memory != NULL };
}

Test (engine_sdk, count_checkpoints_every_step_and_reports_the_range_it_ran)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    keel_worker_request_t req = s_count ("5 1", NULL);
    s_seen_t seen = s_run (runner, &req, 0);
    cr_assert (seen.ok, "%s", seen.text);
    cr_assert_str_eq (seen.text, "0-4");
    cr_assert_eq (seen.checkpoints, 5);
    cr_assert_str_eq (seen.last_checkpoint, "4");
    keel_runner_destroy (&runner);
}

Test (engine_sdk, count_continues_after_the_step_in_its_memory)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    keel_worker_request_t req = s_count ("5 0", "2");
    s_seen_t seen = s_run (runner, &req, 0);
    cr_assert_str_eq (seen.text, "3-4");
    cr_assert_eq (seen.checkpoints, 2);
    //  Every step done: an empty range, nothing run.
    req = s_count ("5 0", "4");
    seen = s_run (runner, &req, 0);
    cr_assert (seen.ok);
    cr_assert_eq (seen.size, 0);
    cr_assert_eq (seen.checkpoints, 0);
    req = s_count ("5 0", "two");
    seen = s_run (runner, &req, 0);
    cr_assert (!seen.ok);
    cr_assert (strstr (seen.text, "count: memory 'two' is not a step number"), "%s", seen.text);
    keel_runner_destroy (&runner);
}

Test (engine_sdk, count_refuses_bad_input)
{
    const char *bad[] = { "", "5", "5 x", "-1 0", "5 -3", "1 2 3" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        keel_builtin_result_t r;
        cr_assert (keel_builtin_run ("count", (const uint8_t *) bad[i], strlen (bad[i]), &r));
        cr_assert (!r.ok, "'%s' accepted", bad[i]);
        free (r.data);
    }
}

Test (engine_sdk, a_timeout_raises_the_cancel_flag_and_keeps_a_worker_that_stops)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    keel_worker_request_t req = s_count ("1000 20", NULL);
    pid_t before = 0;
    s_seen_t seen = { 0 };
    cr_assert_eq (keel_runner_start (runner, &req, 150, s_now ()), KEEL_OK);
    before = keel_runner_pid_of (runner, 1);
    keel_runner_handlers_t h = { s_on_done, s_on_checkpoint, &seen };
    int64_t until = s_now () + 10000;
    while (seen.results == 0 && s_now () < until) {
        poll (NULL, 0, 10);
        keel_runner_process (runner, s_now (), &h);
    }
    cr_assert_str_eq (seen.text, "timed out after 150 ms");
    cr_assert_lt (seen.checkpoints, 50);
    //  count saw the flag and returned: the same worker takes the next task.
    req.execution_id = 2;
    cr_assert_eq (keel_runner_start (runner, &req, 0, s_now ()), KEEL_OK);
    cr_assert_eq (keel_runner_pid_of (runner, 2), before);
    keel_runner_destroy (&runner);
}

//  The toolbox example library next to the test binaries (<build>/lib).
static void
s_toolbox (char *path, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert_gt (n, 0);
    exe[n] = 0;
    char *slash = strrchr (exe, '/');
    cr_assert (slash);
    *slash = 0;
    snprintf (path, size, "%s/../lib/libkeel_toolbox.so", exe);
    cr_assert_eq (access (path, R_OK), 0, "%s not built", path);
}

Test (engine_sdk, a_library_task_gets_its_memory_and_its_checkpoints_reach_the_engine)
{
    char lib[PATH_MAX + 32];
    s_toolbox (lib, sizeof lib);
    //  steps(4, 0) with memory 1 (msgpack): runs 2 and 3.
    const uint8_t input[] = { 0x92, 0xa5, 's', 't', 'e', 'p', 's', 0x92, 0x04, 0x00 };
    const uint8_t memory[] = { 0x01 };
    keel_worker_request_t req = { .execution_id = 3,
                                  .task_id = 3,
                                  .kind = KEEL_WORKER_LIBRARY,
                                  .type = "toolbox",
                                  .target = lib,
                                  .service_id = "svc",
                                  .input = input,
                                  .input_size = sizeof input,
                                  .memory = memory,
                                  .memory_size = 1,
                                  .has_memory = true };
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    s_seen_t seen = s_run (runner, &req, 0);
    cr_assert (seen.ok, "%s", seen.text);
    const uint8_t want[] = { 0x92, 0x02, 0x03 };
    cr_assert_eq (seen.size, sizeof want);
    cr_assert_eq (memcmp (seen.text, want, sizeof want), 0);
    cr_assert_eq (seen.checkpoints, 2);
    cr_assert_eq (seen.last_size, 1);
    cr_assert_eq ((uint8_t) seen.last_checkpoint[0], 0x03);
    //  A library that cannot be loaded fails the task, not the worker.
    req.target = "/nonexistent/lib.so";
    seen = s_run (runner, &req, 0);
    cr_assert (!seen.ok);
    cr_assert (strstr (seen.text, "cannot load service library"), "%s", seen.text);
    keel_runner_destroy (&runner);
}

Test (engine_sdk, keel_task_permanent_and_an_undispatchable_input_fail_permanently)
{
    char lib[PATH_MAX + 32];
    s_toolbox (lib, sizeof lib);
    //  refuse("no such account") returns KEEL_TASK_PERMANENT.
    const uint8_t refuse[] = { 0x92, 0xa6, 'r', 'e', 'f', 'u', 's', 'e', 0x91, 0xa2, 'n', 'o' };
    keel_worker_request_t req = { .execution_id = 4,
                                  .task_id = 4,
                                  .kind = KEEL_WORKER_LIBRARY,
                                  .type = "toolbox",
                                  .target = lib,
                                  .service_id = "svc",
                                  .input = refuse,
                                  .input_size = sizeof refuse };
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    s_seen_t seen = s_run (runner, &req, 0);
    cr_assert (!seen.ok && seen.permanent, "%s", seen.text);
    cr_assert_str_eq (seen.text, "no");
    //  fail("x") returns 1: an ordinary failure, retried.
    const uint8_t fail[] = { 0x92, 0xa4, 'f', 'a', 'i', 'l', 0x91, 0xa1, 'x' };
    req.input = fail;
    req.input_size = sizeof fail;
    seen = s_run (runner, &req, 0);
    cr_assert (!seen.ok && !seen.permanent, "%s", seen.text);
    //  No such method, and raw bytes to an invocation-only library: the
    //  same input fails the same way on any engine.
    const uint8_t nosuch[] = { 0x92, 0xa4, 'n', 'o', 'p', 'e', 0x90 };
    req.input = nosuch;
    req.input_size = sizeof nosuch;
    seen = s_run (runner, &req, 0);
    cr_assert (!seen.ok && seen.permanent, "%s", seen.text);
    cr_assert (strstr (seen.text, "no method 'nope'"), "%s", seen.text);
    req.input = (const uint8_t *) "raw";
    req.input_size = 3;
    seen = s_run (runner, &req, 0);
    cr_assert (!seen.ok && seen.permanent, "%s", seen.text);
    cr_assert (strstr (seen.text, "not a msgpack invocation"), "%s", seen.text);
    keel_runner_destroy (&runner);
}

Test (engine_sdk, invocations_are_parsed_strictly)
{
    struct {
        const char *bytes;
        size_t size;
        const char *why;
    } cases[] = {
        { "\x92\xa3"
          "add\x92\x01\x02",
          8, NULL },
        { "\xc1", 1, "not msgpack" },
        { "\x92\xa3"
          "ad",
          4, "truncated" },
        { "\x92\xa3"
          "add\x90\x00",
          7, "trailing bytes" },
        { "\x93\xa3"
          "add\x90\x90",
          7, "expected an array" },
        { "\x92\x01\x90", 3, "method must be a string" },
        { "\x92\xa3"
          "a-d\x90",
          6, "only [A-Za-z0-9_]" },
        { "\x92\xa3"
          "add\x01",
          6, "arguments must be an array" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_unpacked u;
        msgpack_unpacked_init (&u);
        char method[KEEL_INVOCATION_METHOD_MAX + 1];
        msgpack_object args;
        char why[160] = "";
        bool ok = keel_library_parse_invocation ((const uint8_t *) cases[i].bytes, cases[i].size,
                                                 &u, method, &args, why, sizeof why);
        if (!cases[i].why) {
            cr_assert (ok, "case %zu: %s", i, why);
            cr_assert_str_eq (method, "add");
            cr_assert_eq (args.type, MSGPACK_OBJECT_ARRAY);
            cr_assert_eq (args.via.array.size, 2);
        }
        else {
            cr_assert (!ok, "case %zu accepted", i);
            cr_assert (strstr (why, cases[i].why), "case %zu: '%s'", i, why);
        }
        msgpack_unpacked_destroy (&u);
    }
}

Test (engine_sdk, the_init_data_table_keeps_each_service_and_forgets_the_oldest_past_its_cap)
{
    keel_initdata_t *t = keel_initdata_new ();
    size_t size = 99;
    cr_assert_null (keel_initdata_get (t, "a", &size));
    cr_assert_eq (size, 0);
    cr_assert (keel_initdata_put (t, "a", (const uint8_t *) "one", 3, NULL));
    cr_assert (keel_initdata_put (t, "a", (const uint8_t *) "two!", 4, NULL));
    const uint8_t *got = keel_initdata_get (t, "a", &size);
    cr_assert_eq (size, 4);
    cr_assert_eq (memcmp (got, "two!", 4), 0);
    bool evicted = false;
    for (int i = 1; i < KEEL_INITDATA_MAX; i++) {
        char id[16];
        snprintf (id, sizeof id, "s%d", i);
        cr_assert (keel_initdata_put (t, id, (const uint8_t *) "x", 1, &evicted));
        cr_assert (!evicted);
    }
    keel_initdata_get (t, "a", &size); // "a" is now the most recently used
    cr_assert (keel_initdata_put (t, "new", (const uint8_t *) "y", 1, &evicted));
    cr_assert (evicted);
    cr_assert_eq (keel_initdata_size (t), KEEL_INITDATA_MAX);
    cr_assert_not_null (keel_initdata_get (t, "a", &size));
    cr_assert_null (keel_initdata_get (t, "s1", &size));
    keel_initdata_destroy (&t);
    cr_assert_null (t);
}

//  keel_runner_process_polled reads only the workers the owner's poll
//  found readable: a finished task's result waits on an unlisted worker
//  and is read once its fd is listed.
Test (engine_sdk, a_polled_turn_reads_only_the_workers_listed_readable)
{
    keel_runner_t *runner = keel_runner_new (1, 1 << 20, NULL);
    keel_worker_request_t req = s_count ("1 0", NULL);
    cr_assert_eq (keel_runner_start (runner, &req, 0, s_now ()), KEEL_OK);
    int fds[8];
    cr_assert_eq (keel_runner_fds (runner, fds, 8), 1);
    //  Wait until the worker has written something (a checkpoint first).
    struct pollfd pfd = { fds[0], POLLIN, 0 };
    int64_t until = s_now () + 10000;
    while (poll (&pfd, 1, 20) == 0 && s_now () < until)
        ;
    cr_assert (pfd.revents & POLLIN, "the worker wrote nothing within 10 s");
    s_seen_t seen = { 0 };
    keel_runner_handlers_t h = { s_on_done, s_on_checkpoint, &seen };
    keel_runner_process_polled (runner, s_now (), &h, NULL, 0);
    cr_assert (seen.results == 0 && seen.checkpoints == 0,
               "a worker no poll found readable was read");
    //  Its result may come after its checkpoint: read as the poll says.
    while (seen.results == 0 && s_now () < until) {
        keel_runner_process_polled (runner, s_now (), &h, fds, 1);
        poll (&pfd, 1, 20);
    }
    cr_assert_eq (seen.results, 1, "the listed worker's result was not read");
    cr_assert (seen.ok, "%s", seen.text);
    cr_assert_str_eq (seen.text, "0-0");
    keel_runner_destroy (&runner);
}
