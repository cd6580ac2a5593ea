/*  test_sdk_library.c — library services through a real broker and engine:
    msgpack invocations with nested arguments, malformed input, a crashing
    service, and session init data (once per engine per service, seen by
    every task). The driver side is libkeeldriver in this test process.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "keel/driver.h"

#define S_TOOLBOX KEEL_BIN_DIR "/../lib/libkeel_toolbox.so"

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  A broker and `engines` engines offering the toolbox library.
static void
s_grid (harness_broker_t *broker, int engines, int slots, pid_t *pids)
{
    //  No prefetch: the init-data test needs both engines to run tasks of
    //  each service, and with prefetch sized from run times one engine can
    //  take a whole service of tiny tasks (seen 1 in 25 runs under load).
    const char *broker_sets[] = { "HeartbeatInterval=200ms", "EnginePrefetch=0", NULL };
    HARNESS_ASSERT (harness_broker_start (broker, "broker", broker_sets),
                    "keel-broker did not start");
    const char *sets[] = { "service.toolbox.library=" S_TOOLBOX, NULL };
    for (int i = 0; i < engines; i++) {
        char name[32];
        snprintf (name, sizeof name, "engine%d", i + 1);
        pids[i] = harness_engine_start (broker, name, slots, sets);
        HARNESS_ASSERT (pids[i] > 0, "%s did not start", name);
    }
    HARNESS_ASSERT (harness_wait_engines (broker, engines, 15000), "engines not online in 15 s");
}

static keel_driver_t *
s_driver (const harness_broker_t *broker)
{
    char set[128];
    snprintf (set, sizeof set, "DSPrimaryBroker=%s", broker->endpoint);
    char *overrides[] = { set, "DSHeartbeatInterval=200ms" };
    keel_error_t err = { "" };
    keel_driver_t *driver = keel_driver_new (NULL, overrides, 2, &err);
    cr_assert (driver, "driver: %s", err.text);
    return driver;
}

static keel_service_t *
s_open (keel_driver_t *driver, uint32_t max_attempts, const void *init, size_t init_size)
{
    keel_service_options_t options;
    keel_service_options_init (&options, "toolbox");
    options.max_attempts = max_attempts;
    options.init_data = init;
    options.init_data_size = init_size;
    keel_error_t err = { "" };
    keel_service_t *service = keel_driver_open_service (driver, &options, &err);
    cr_assert (service, "open: %s", err.text);
    return service;
}

//  A copy of one result (the library owns its own during the callback).
typedef struct {
    bool have;
    keel_task_status_t status;
    char error[1024];
    char engine_id[64];
    uint32_t attempts;
    uint8_t *output;
    size_t output_size;
} s_result_t;

#define S_MAX_RESULTS 64

typedef struct {
    keel_service_t *services[2];
    s_result_t results[2][S_MAX_RESULTS];
    int count;
} s_results_t;

static void
s_on_result (const keel_result_t *r, void *arg)
{
    s_results_t *all = arg;
    int s = r->service == all->services[0] ? 0 : 1;
    cr_assert (r->service == all->services[s], "result of an unknown service");
    cr_assert (r->task_id < S_MAX_RESULTS && !all->results[s][r->task_id].have,
               "unexpected result %llu", (unsigned long long) r->task_id);
    s_result_t *c = &all->results[s][r->task_id];
    c->have = true;
    c->status = r->status;
    snprintf (c->error, sizeof c->error, "%s", r->error ? r->error : "");
    snprintf (c->engine_id, sizeof c->engine_id, "%s", r->engine_id ? r->engine_id : "");
    c->attempts = r->attempts;
    c->output = malloc (r->output_size ? r->output_size : 1);
    cr_assert (c->output);
    if (r->output_size)
        memcpy (c->output, r->output, r->output_size);
    c->output_size = r->output_size;
    all->count++;
}

//  Polls the driver until `n` results in all arrived or timeout_ms passed.
static void
s_collect (keel_driver_t *driver, s_results_t *all, int n, int timeout_ms)
{
    int64_t until = s_now_ms () + timeout_ms;
    while (all->count < n && s_now_ms () < until)
        keel_driver_poll (driver, 100, NULL);
    HARNESS_ASSERT (all->count >= n, "%d of %d results within %d ms", all->count, n, timeout_ms);
}

//  Decodes a copied result's output as one msgpack value.
static keel_err
s_unpack (const s_result_t *c, msgpack_unpacked *value, keel_error_t *err)
{
    keel_result_t r = {
        .status = c->status, .output = c->output, .output_size = c->output_size, .error = c->error
    };
    return keel_result_unpack (&r, value, err);
}

static void
s_results_free (s_results_t *all)
{
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < S_MAX_RESULTS; i++)
            free (all->results[s][i].output);
    free (all);
}

static s_results_t *
s_results_new (keel_driver_t *driver)
{
    s_results_t *all = calloc (1, sizeof *all);
    cr_assert (all);
    keel_driver_set_result_handler (driver, s_on_result, all);
    return all;
}

static void
s_submit_raw (keel_service_t *service, const void *data, size_t size)
{
    keel_error_t err = { "" };
    cr_assert_eq (keel_service_submit (service, data, size, NULL, &err), KEEL_OK, "%s", err.text);
}

//  Submits method() with no arguments.
static void
s_call0 (keel_service_t *service, const char *method)
{
    keel_error_t err = { "" };
    cr_assert_eq (keel_service_invoke (service, method, NULL, NULL, &err), KEEL_OK, "%s", err.text);
}

Test (sdk_library, a_msgpack_invocation_round_trips_nested_arguments, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    pid_t engine;
    s_grid (&broker, 1, 2, &engine);
    keel_driver_t *driver = s_driver (&broker);
    s_results_t *all = s_results_new (driver);
    keel_service_t *service = all->services[0] = s_open (driver, 1, NULL, 0);

    //  echo(1, -2, 3.5, "héllo", nil, true, [1, [2, [3]]], {"k": {"x": bin}}, 2^64-1)
    msgpack_sbuffer buf;
    msgpack_packer pk;
    cr_assert_eq (keel_invocation_begin (&buf, &pk, "echo", 9, NULL), KEEL_OK);
    msgpack_pack_int (&pk, 1);
    msgpack_pack_int (&pk, -2);
    msgpack_pack_double (&pk, 3.5);
    msgpack_pack_str_with_body (&pk, "h\xc3\xa9llo", 6);
    msgpack_pack_nil (&pk);
    msgpack_pack_true (&pk);
    msgpack_pack_array (&pk, 2);
    msgpack_pack_int (&pk, 1);
    msgpack_pack_array (&pk, 2);
    msgpack_pack_int (&pk, 2);
    msgpack_pack_array (&pk, 1);
    msgpack_pack_int (&pk, 3);
    msgpack_pack_map (&pk, 1);
    msgpack_pack_str_with_body (&pk, "k", 1);
    msgpack_pack_map (&pk, 1);
    msgpack_pack_str_with_body (&pk, "x", 1);
    msgpack_pack_bin_with_body (&pk, "\x00\x01\xff", 3);
    msgpack_pack_uint64 (&pk, UINT64_MAX);
    s_submit_raw (service, buf.data, buf.size);

    //  The same arguments again through keel_service_invoke (submit(method, args)).
    msgpack_unpacked sent;
    char method[KEEL_INVOCATION_METHOD_MAX + 1];
    msgpack_object args;
    keel_error_t err = { "" };
    cr_assert_eq (
        keel_invocation_parse (buf.data, buf.size, &sent, method, sizeof method, &args, &err),
        KEEL_OK, "%s", err.text);
    cr_assert_str_eq (method, "echo");
    cr_assert_eq (keel_service_invoke (service, "echo", &args, NULL, &err), KEEL_OK, "%s",
                  err.text);

    s_collect (driver, all, 2, 20000);
    for (int i = 0; i < 2; i++) {
        s_result_t *r = &all->results[0][i];
        HARNESS_ASSERT (r->status == KEEL_TASK_OK, "task %d: %s", i, r->error);
        msgpack_unpacked got;
        cr_assert_eq (s_unpack (r, &got, &err), KEEL_OK, "%s", err.text);
        cr_assert (msgpack_object_equal (got.data, args), "task %d: the answer differs", i);
        msgpack_unpacked_destroy (&got);
    }
    s_results_free (all);
    msgpack_unpacked_destroy (&sent);
    msgpack_sbuffer_destroy (&buf);
    keel_driver_destroy (&driver);
}

Test (sdk_library, malformed_msgpack_input_fails_the_task_not_the_engine, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    pid_t engine;
    s_grid (&broker, 1, 1, &engine);
    keel_driver_t *driver = s_driver (&broker);
    s_results_t *all = s_results_new (driver);
    keel_service_t *service = all->services[0] = s_open (driver, 1, NULL, 0);
    s_submit_raw (service, "\xc1 never msgpack", 16); // 0xc1 is never used
    s_submit_raw (service,
                  "\x92\xa4"
                  "ech",
                  5);                  // truncated
    s_submit_raw (service, "\x05", 1); // msgpack, not an invocation
    s_submit_raw (service,
                  "\x92\xa4"
                  "echo\x90\x90",
                  8); // trailing bytes
    s_call0 (service, "no_such_method");
    s_call0 (service, "echo");
    s_collect (driver, all, 6, 20000);
    s_result_t *results = all->results[0];
    const char *expect[5] = { "input is not a msgpack invocation: not msgpack",
                              "input is not a msgpack invocation: truncated msgpack",
                              "input is not a msgpack invocation: expected an array",
                              "input is not a msgpack invocation: trailing bytes",
                              "no method 'no_such_method' in service library" };
    for (int i = 0; i < 5; i++) {
        HARNESS_ASSERT (results[i].status == KEEL_TASK_FAILED, "task %d did not fail", i);
        HARNESS_ASSERT (strstr (results[i].error, expect[i]), "task %d: error '%s', want '%s'", i,
                        results[i].error, expect[i]);
    }
    HARNESS_ASSERT (results[5].status == KEEL_TASK_OK, "echo after bad input: %s",
                    results[5].error);
    HARNESS_ASSERT (harness_alive (engine), "the engine died");
    s_results_free (all);
    keel_driver_destroy (&driver);
}

Test (sdk_library, keel_task_permanent_fails_after_one_attempt_and_an_ordinary_failure_after_all,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    pid_t engine;
    s_grid (&broker, 1, 1, &engine);
    keel_driver_t *driver = s_driver (&broker);
    s_results_t *all = s_results_new (driver);
    keel_service_t *service = all->services[0] = s_open (driver, 3, NULL, 0);
    s_call0 (service, "refuse");         // returns KEEL_TASK_PERMANENT
    s_call0 (service, "no_such_method"); // cannot be dispatched: permanent too
    s_call0 (service, "fail");           // returns 1: retried
    s_collect (driver, all, 3, 20000);
    s_result_t *results = all->results[0];
    const unsigned want[3] = { 1, 1, 3 };
    for (int i = 0; i < 3; i++) {
        HARNESS_ASSERT (results[i].status == KEEL_TASK_FAILED, "task %d did not fail", i);
        HARNESS_ASSERT (results[i].attempts == want[i], "task %d: attempts %u, want %u (%s)", i,
                        results[i].attempts, want[i], results[i].error);
    }
    HARNESS_ASSERT (strstr (results[0].error, "refuse(text): this input can never succeed"),
                    "error '%s'", results[0].error);
    s_results_free (all);
    keel_driver_destroy (&driver);
}

//  Lines of file holding every needle (NULL-terminated).
static int
s_count_lines_with (const char *path, const char *const needles[])
{
    char *text = harness_read_file (path);
    if (!text)
        return 0;
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        bool all = true;
        for (int i = 0; needles[i] && all; i++)
            all = strstr (line, needles[i]) != NULL;
        n += all;
    }
    free (text);
    return n;
}

typedef struct {
    char path[512];
    const char *needles[4];
    int want;
} s_lines_t;

static bool
s_has_lines (void *arg)
{
    s_lines_t *l = arg;
    return s_count_lines_with (l->path, l->needles) >= l->want;
}

Test (sdk_library, a_crashing_library_fails_only_its_task_and_the_engine_keeps_serving,
      .init = harness_setup, .fini = harness_teardown, .timeout = 60)
{
    harness_broker_t broker;
    pid_t engine;
    s_grid (&broker, 1, 1, &engine);
    keel_driver_t *driver = s_driver (&broker);
    s_results_t *all = s_results_new (driver);
    keel_service_t *service = all->services[0] = s_open (driver, 2, NULL, 0);
    s_call0 (service, "crash");
    s_collect (driver, all, 1, 20000);
    s_result_t *results = all->results[0];
    HARNESS_ASSERT (results[0].status == KEEL_TASK_FAILED, "crash() did not fail");
    HARNESS_ASSERT (strstr (results[0].error, "task process crashed: signal 11"), "error '%s'",
                    results[0].error);
    HARNESS_ASSERT (results[0].attempts == 2, "attempts %u, want MaxAttempts 2",
                    results[0].attempts);
    HARNESS_ASSERT (harness_alive (engine), "the engine died with its task");
    //  The engine logs "task finished" after it sent the result, so the line
    //  may trail the result by a moment: wait for it (bounded).
    s_lines_t crashed = { "", { "task finished", "signal 11", NULL }, 2 };
    harness_path (crashed.path, sizeof crashed.path, "engine1.err");
    HARNESS_ASSERT (harness_poll_until (s_has_lines, &crashed, 5000)
                        && s_count_lines_with (crashed.path, crashed.needles) == 2,
                    "the engine did not run it twice");

    //  The same engine (a fresh worker) serves the next task.
    s_call0 (service, "echo");
    s_collect (driver, all, 2, 20000);
    HARNESS_ASSERT (results[1].status == KEEL_TASK_OK, "echo after crash: %s", results[1].error);
    HARNESS_ASSERT (strcmp (results[1].engine_id, results[0].engine_id) == 0,
                    "echo ran on another engine");
    s_results_free (all);
    keel_driver_destroy (&driver);
}

//  The engine id an engine logged at start ("started engine=ID ").
static void
s_engine_id (const char *name, char *id, size_t size)
{
    char path[512], file[64];
    snprintf (file, sizeof file, "%s.err", name);
    char *text = harness_read_file (harness_path (path, sizeof path, file));
    cr_assert (text, "no log %s", file);
    char *at = strstr (text, "started engine=");
    cr_assert (at, "no 'started engine=' in %s", file);
    at += strlen ("started engine=");
    size_t n = strcspn (at, " \n");
    cr_assert (n < size);
    memcpy (id, at, n);
    id[n] = 0;
    free (text);
}

#define S_TASKS 40

Test (sdk_library, init_data_reaches_each_engine_once_per_service_and_every_task_sees_it,
      .init = harness_setup, .fini = harness_teardown, .timeout = 90)
{
    harness_broker_t broker;
    pid_t engines[2];
    s_grid (&broker, 2, 2, engines);
    keel_driver_t *driver = s_driver (&broker);
    s_results_t *all = s_results_new (driver);
    const char init_a[] = "alpha init data";
    const uint8_t init_b[] = { 0, 1, 2, 0xfe, 0xff, 0 };
    keel_service_t *services[2] = { s_open (driver, 1, init_a, sizeof init_a - 1),
                                    s_open (driver, 1, init_b, sizeof init_b) };
    all->services[0] = services[0];
    all->services[1] = services[1];
    const void *inits[2] = { init_a, init_b };
    size_t init_sizes[2] = { sizeof init_a - 1, sizeof init_b };
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < S_TASKS; i++)
            s_call0 (services[s], "session");
    s_collect (driver, all, 2 * S_TASKS, 30000);

    char ids[2][64];
    s_engine_id ("engine1", ids[0], sizeof ids[0]);
    s_engine_id ("engine2", ids[1], sizeof ids[1]);
    int used[2][2] = { { 0 } }; // [service][engine]
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < S_TASKS; i++) {
            s_result_t *r = &all->results[s][i];
            HARNESS_ASSERT (r->status == KEEL_TASK_OK, "service %d task %d: %s", s, i, r->error);
            msgpack_unpacked got;
            keel_error_t err = { "" };
            cr_assert_eq (s_unpack (r, &got, &err), KEEL_OK, "%s", err.text);
            const msgpack_object *o = &got.data;
            cr_assert (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3);
            const msgpack_object *data = &o->via.array.ptr[0];
            //  Every task sees its service's init data, also in the init hook.
            HARNESS_ASSERT (data->type == MSGPACK_OBJECT_BIN && data->via.bin.size == init_sizes[s]
                                && memcmp (data->via.bin.ptr, inits[s], init_sizes[s]) == 0,
                            "service %d task %d did not see its init data", s, i);
            //  The hook ran at most once per service in each worker.
            cr_assert (o->via.array.ptr[1].via.i64 >= 1 && o->via.array.ptr[1].via.i64 <= 2);
            msgpack_unpacked_destroy (&got);
            int e = strcmp (r->engine_id, ids[0]) == 0 ? 0 : 1;
            cr_assert (strcmp (r->engine_id, ids[e]) == 0, "unknown engine %s", r->engine_id);
            used[s][e]++;
        }
    for (int e = 0; e < 2; e++) {
        char path[512], file[32];
        snprintf (file, sizeof file, "engine%d.err", e + 1);
        harness_path (path, sizeof path, file);
        for (int s = 0; s < 2; s++) {
            const char *needles[] = { "service init data received", keel_service_id (services[s]),
                                      NULL };
            int received = s_count_lines_with (path, needles);
            cr_log_info ("engine%d service %d: %d tasks, init data received %d times", e + 1, s,
                         used[s][e], received);
            HARNESS_ASSERT (used[s][e] > 0, "engine%d ran no task of service %d", e + 1, s);
            HARNESS_ASSERT (received == 1, "engine%d got service %d's init data %d times", e + 1, s,
                            received);
        }
    }
    s_results_free (all);
    keel_driver_destroy (&driver);
}
