/*  test_engine_review.c — keel-engine against a scripted fake broker: the
    login verdicts, the prefetch queue, the inline built-ins and batched
    Assigns and Results.

    The broker is a ROUTER inside the test, driven step by step, so that the
    engine can be caught in the windows the real broker makes hard to hit:
    a task that finishes between the EngineLogin and the LoginReply, a flood
    of Assigns far beyond any EnginePrefetch.
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <czmq.h>

#include "fake_broker.h"
#include "harness.h"
#include "wire.h"

static fake_broker_t *s_running;

static void
s_teardown (void)
{
    fake_broker_destroy (&s_running);
    harness_teardown ();
}

static fake_broker_t *
s_fake_new (void)
{
    fake_broker_t *f = fake_broker_new ();
    cr_assert_not_null (f, "no fake broker (no free port?)");
    s_running = f;
    return f;
}

static void
s_login_reply (fake_broker_t *f, size_t n, Keel__TaskVerdict **verdicts)
{
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    reply.has_ok = reply.ok = true;
    reply.broker_name = "fake";
    reply.has_epoch = true;
    reply.epoch = 1;
    reply.has_heartbeat_ms = reply.has_engine_timeout_ms = true;
    reply.heartbeat_ms = 1000;
    reply.engine_timeout_ms = 600000;
    reply.n_verdicts = n;
    reply.verdicts = verdicts;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_LOGIN_REPLY;
    env.login_reply = &reply;
    cr_assert (fake_broker_send (f, &env));
}

static void
s_assign (fake_broker_t *f, uint64_t execution_id, const char *type, const char *input)
{
    Keel__Assign a = KEEL__ASSIGN__INIT;
    a.service_id = "svc";
    a.type = (char *) type;
    a.has_task_id = a.has_execution_id = a.has_input = true;
    a.task_id = execution_id;
    a.execution_id = execution_id;
    a.input.data = (uint8_t *) input;
    a.input.len = strlen (input);
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_ASSIGN;
    env.assign = &a;
    cr_assert (fake_broker_send (f, &env));
}

//  A task running when the engine logs in, which finishes before the
//  LoginReply arrives with HOLD (the broker does not know the service yet):
//  the login carried no result for it, so the engine must still send its
//  Result; otherwise the broker's pending claim waits forever for a result
//  the engine keeps to itself, and the task never completes.
Test (engine_review, hold_for_task_finished_during_login_sends_result, .init = harness_setup,
      .fini = s_teardown, .timeout = 60)
{
    fake_broker_t *f = s_fake_new ();
    pid_t pid = harness_engine_start (&f->b, "engine", 1, NULL);
    HARNESS_ASSERT (pid > 0, "keel-engine did not start");
    keel_env_t *env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 15000);
    HARNESS_ASSERT (env, "no EngineLogin");
    keel_wire_free (&env);
    s_login_reply (f, 0, NULL);
    s_assign (f, 7, "sleep", "400");

    //  Log in again (the engine carries exec 7, running).
    Keel__Relogin relogin = KEEL__RELOGIN__INIT;
    relogin.reason = "unknown engine: log in";
    keel_env_t rel;
    keel_env_init (&rel, KEEL__SENDER_KIND__SENDER_BROKER);
    rel.body_case = KEEL__ENVELOPE__BODY_RELOGIN;
    rel.relogin = &relogin;
    cr_assert (fake_broker_send (f, &rel));
    f->keepalive_ms = 0; // no traffic to the new connection until the reply
    env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 5000);
    HARNESS_ASSERT (env, "no second EngineLogin");
    HARNESS_ASSERT (env->engine_login->n_held == 1 && env->engine_login->held[0]->execution_id == 7
                        && env->engine_login->held[0]->state == KEEL__HELD_STATE__HELD_RUNNING,
                    "the second login does not carry exec 7 running");
    keel_wire_free (&env);

    //  The task finishes while the engine waits for the LoginReply.
    HARNESS_ASSERT (harness_wait_log ("engine.err", "task finished exec=7 ", 1, 2500),
                    "exec 7 did not finish during the login");
    Keel__TaskVerdict v = KEEL__TASK_VERDICT__INIT;
    v.service_id = "svc";
    v.has_task_id = v.has_execution_id = v.has_verdict = true;
    v.task_id = 7;
    v.execution_id = 7;
    v.verdict = KEEL__VERDICT__VERDICT_HOLD;
    Keel__TaskVerdict *vs[1] = { &v };
    s_login_reply (f, 1, vs);
    f->keepalive_ms = 300;

    env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_RESULT, 5000);
    HARNESS_ASSERT (env, "the engine never sent the result of exec 7 (HOLD)");
    HARNESS_ASSERT (env->result->execution_id == 7, "result of another execution");
    HARNESS_ASSERT (env->result->status == KEEL__TASK_STATUS__STATUS_OK, "exec 7 failed");
    keel_wire_free (&env);
}

#define S_FLOOD_EXTRA 5

//  A broker flooding Assigns far beyond Slots + EnginePrefetch (at most
//  10000): the engine queues up to Slots + 10000 and answers every one
//  beyond with a failed Result, instead of growing without bound.
Test (engine_review, prefetch_queue_is_capped, .init = harness_setup, .fini = s_teardown,
      .timeout = 120)
{
    fake_broker_t *f = s_fake_new ();
    pid_t pid = harness_engine_start (&f->b, "engine", 1, NULL);
    HARNESS_ASSERT (pid > 0, "keel-engine did not start");
    keel_env_t *env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 15000);
    HARNESS_ASSERT (env, "no EngineLogin");
    keel_wire_free (&env);
    s_login_reply (f, 0, NULL);
    uint64_t total = 1 + 10000 + S_FLOOD_EXTRA;
    for (uint64_t id = 1; id <= total; id++)
        s_assign (f, id, "sleep", "600000");

    int failed = 0;
    bool beyond_only = true;
    int64_t deadline = zclock_mono () + 30000;
    while (zclock_mono () < deadline && failed <= S_FLOOD_EXTRA) {
        env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_RESULT,
                                  failed == S_FLOOD_EXTRA ? 3000 : 20000);
        if (!env)
            break;
        failed++;
        if (env->result->status != KEEL__TASK_STATUS__STATUS_FAILED
            || env->result->execution_id <= total - S_FLOOD_EXTRA)
            beyond_only = false;
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (failed == S_FLOOD_EXTRA, "%d failed results, expected %d", failed,
                    S_FLOOD_EXTRA);
    HARNESS_ASSERT (beyond_only, "a task within the cap was refused");
    HARNESS_ASSERT (harness_alive (pid), "keel-engine died under the flood");
}

//  The pid= of exec's "task started" line in engine.err, or -1.
static long
s_started_pid (uint64_t exec)
{
    char path[600], key[64];
    char *text = harness_read_file (harness_path (path, sizeof path, "engine.err"));
    snprintf (key, sizeof key, "task started exec=%" PRIu64 " ", exec);
    char *line = text ? strstr (text, key) : NULL;
    char *end = line ? strchr (line, '\n') : NULL;
    if (end)
        *end = 0;
    char *at = line ? strstr (line, " pid=") : NULL;
    long pid = at ? atol (at + strlen (" pid=")) : -1;
    free (text);
    return pid;
}

typedef struct {
    uint64_t exec;
    long pid;
} s_started_t;

static bool
s_has_started (void *arg)
{
    s_started_t *s = arg;
    s->pid = s_started_pid (s->exec);
    return s->pid >= 0;
}

//  The next Result, which must be exec's.
static keel_env_t *
s_expect_result (fake_broker_t *f, uint64_t exec)
{
    keel_env_t *env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_RESULT, 10000);
    HARNESS_ASSERT (env, "no Result for exec %" PRIu64, exec);
    HARNESS_ASSERT (env->result->execution_id == exec,
                    "Result of exec %" PRIu64 ", expected %" PRIu64, env->result->execution_id,
                    exec);
    return env;
}

//  echo, double and fail run inline in the engine process (daemon.h): with
//  the only worker busy and a task waiting in the prefetch queue they are
//  answered at once, in order, with the same outputs, errors and output cap
//  as in a worker; a duplicate Assign of one is still ignored; the queued
//  task still starts when the worker frees up, in a worker.
Test (engine_review, inline_built_ins_run_in_the_engine_while_its_worker_is_busy,
      .init = harness_setup, .fini = s_teardown, .timeout = 60)
{
    fake_broker_t *f = s_fake_new ();
    const char *sets[] = { "MaxOutputBytes=8", NULL };
    pid_t pid = harness_engine_start (&f->b, "engine", 1, sets);
    HARNESS_ASSERT (pid > 0, "keel-engine did not start");
    keel_env_t *env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 15000);
    HARNESS_ASSERT (env, "no EngineLogin");
    keel_wire_free (&env);
    s_login_reply (f, 0, NULL);

    s_assign (f, 1, "sleep", "600000"); // takes the only worker
    s_assign (f, 2, "sleep", "1");      // queued behind it
    s_assign (f, 3, "double", "21");
    s_assign (f, 4, "echo", "hi");
    s_assign (f, 5, "fail", "a long error text");
    s_assign (f, 3, "double", "21"); // duplicate: ignored
    s_assign (f, 6, "double", "x");
    s_assign (f, 7, "echo", "0123456789"); // more than MaxOutputBytes

    env = s_expect_result (f, 3);
    HARNESS_ASSERT (env->result->status == KEEL__TASK_STATUS__STATUS_OK
                        && env->result->output.len == 2
                        && memcmp (env->result->output.data, "42", 2) == 0,
                    "double 21 is not 42");
    keel_wire_free (&env);
    env = s_expect_result (f, 4);
    HARNESS_ASSERT (env->result->status == KEEL__TASK_STATUS__STATUS_OK
                        && env->result->output.len == 2
                        && memcmp (env->result->output.data, "hi", 2) == 0,
                    "echo hi is not hi");
    keel_wire_free (&env);
    env = s_expect_result (f, 5);
    HARNESS_ASSERT (env->result->status == KEEL__TASK_STATUS__STATUS_FAILED
                        && strcmp (env->result->error, "a long error text") == 0,
                    "fail: error '%s'", env->result->error ? env->result->error : "");
    keel_wire_free (&env);
    env = s_expect_result (f, 6); // not a second Result of exec 3
    HARNESS_ASSERT (
        env->result->status == KEEL__TASK_STATUS__STATUS_FAILED
            && strcmp (env->result->error, "double: 'x' is not a decimal integer (or out of range)")
                   == 0,
        "double x: error '%s'", env->result->error ? env->result->error : "");
    keel_wire_free (&env);
    env = s_expect_result (f, 7);
    HARNESS_ASSERT (env->result->status == KEEL__TASK_STATUS__STATUS_FAILED
                        && strcmp (env->result->error, "output too large (more than 8 bytes)") == 0,
                    "echo beyond the cap: error '%s'",
                    env->result->error ? env->result->error : "");
    keel_wire_free (&env);

    //  Inline: the engine itself ran them. The sleep runs in a worker.
    s_started_t started = { 3, -1 };
    HARNESS_ASSERT (harness_poll_until (s_has_started, &started, 5000), "no 'task started exec=3'");
    HARNESS_ASSERT (started.pid == (long) pid, "double ran in pid %ld, the engine is %d",
                    started.pid, (int) pid);
    HARNESS_ASSERT (s_started_pid (7) == (long) pid, "echo did not run in the engine");
    long worker = s_started_pid (1);
    HARNESS_ASSERT (worker > 0 && worker != (long) pid, "sleep ran in pid %ld, the engine is %d",
                    worker, (int) pid);
    HARNESS_ASSERT (s_started_pid (2) == -1, "exec 2 started while the worker was busy");

    //  Free the worker: the queued sleep starts in a (new) worker and ends.
    uint64_t cancel_ids[] = { 1 };
    Keel__Cancel cancel = KEEL__CANCEL__INIT;
    cancel.reason = "test";
    cancel.n_execution_ids = 1;
    cancel.execution_ids = cancel_ids;
    keel_env_t out;
    keel_env_init (&out, KEEL__SENDER_KIND__SENDER_BROKER);
    out.body_case = KEEL__ENVELOPE__BODY_CANCEL;
    out.cancel = &cancel;
    cr_assert (fake_broker_send (f, &out));
    env = s_expect_result (f, 2);
    HARNESS_ASSERT (env->result->status == KEEL__TASK_STATUS__STATUS_OK
                        && env->result->output.len == 1 && env->result->output.data[0] == '1',
                    "the queued sleep did not succeed");
    keel_wire_free (&env);
    long second = s_started_pid (2);
    HARNESS_ASSERT (second > 0 && second != (long) pid, "sleep ran in pid %ld, the engine is %d",
                    second, (int) pid);
    HARNESS_ASSERT (harness_alive (pid), "keel-engine died");
}

#define S_BATCH_INLINE 20
#define S_BATCH_SLEEPS 3

//  Batching both ways. One AssignBatch holding sleeps (one runs in the only
//  worker, the others wait in the prefetch queue) and inline doubles: the
//  engine runs every task once; the doubles, which all end in the turn that
//  read the batch, come back as one ResultBatch carrying each of them
//  exactly once, in order; the sleeps follow as they end.
Test (engine_review, assign_batch_runs_every_task_and_results_come_back_batched,
      .init = harness_setup, .fini = s_teardown, .timeout = 60)
{
    fake_broker_t *f = s_fake_new ();
    f->keep_batches = true;
    pid_t pid = harness_engine_start (&f->b, "engine", 1, NULL);
    HARNESS_ASSERT (pid > 0, "keel-engine did not start");
    keel_env_t *env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 15000);
    HARNESS_ASSERT (env, "no EngineLogin");
    keel_wire_free (&env);
    s_login_reply (f, 0, NULL);

    //  Execs 1..3 sleep 50 ms; execs 11..30 double their exec id.
    enum { N = S_BATCH_SLEEPS + S_BATCH_INLINE };
    Keel__Assign items[N];
    Keel__Assign *ptrs[N];
    char inputs[N][24];
    uint64_t execs[N];
    for (int i = 0; i < N; i++) {
        bool sleep = i < S_BATCH_SLEEPS;
        execs[i] = sleep ? (uint64_t) i + 1 : (uint64_t) (i - S_BATCH_SLEEPS) + 11;
        snprintf (inputs[i], sizeof inputs[i], "%" PRIu64, sleep ? (uint64_t) 50 : execs[i]);
        Keel__Assign *a = &items[i];
        keel__assign__init (a);
        a->service_id = "svc";
        a->type = sleep ? "sleep" : "double";
        a->has_task_id = a->has_execution_id = a->has_input = true;
        a->task_id = a->execution_id = execs[i];
        a->input.data = (uint8_t *) inputs[i];
        a->input.len = strlen (inputs[i]);
        ptrs[i] = a;
    }
    Keel__AssignBatch batch = KEEL__ASSIGN_BATCH__INIT;
    batch.n_assigns = N;
    batch.assigns = ptrs;
    keel_env_t out;
    keel_env_init (&out, KEEL__SENDER_KIND__SENDER_BROKER);
    out.body_case = KEEL__ENVELOPE__BODY_ASSIGN_BATCH;
    out.assign_batch = &batch;
    cr_assert (fake_broker_send (f, &out));

    int seen[N] = { 0 };
    int results = 0, first_batch = 0;
    int64_t deadline = zclock_mono () + 10000;
    while (results < N && zclock_mono () < deadline) {
        env = fake_broker_recv (f, (int) (deadline - zclock_mono ()));
        if (!env)
            break;
        Keel__Result *one[1] = { env->result };
        Keel__Result **got = NULL;
        size_t n = 0;
        bool first = false;
        if (env->body_case == KEEL__ENVELOPE__BODY_RESULT_BATCH) {
            got = env->result_batch->results;
            n = env->result_batch->n_results;
            first = first_batch == 0;
            if (first)
                first_batch = (int) n;
        }
        else if (env->body_case == KEEL__ENVELOPE__BODY_RESULT) {
            got = one;
            n = 1;
        }
        for (size_t j = 0; j < n; j++) {
            const Keel__Result *r = got[j];
            int at = -1;
            for (int i = 0; i < N; i++)
                if (execs[i] == r->execution_id)
                    at = i;
            HARNESS_ASSERT (at >= 0, "a Result for exec %" PRIu64 ", never assigned",
                            r->execution_id);
            HARNESS_ASSERT (++seen[at] == 1, "a second Result for exec %" PRIu64, r->execution_id);
            HARNESS_ASSERT (r->status == KEEL__TASK_STATUS__STATUS_OK,
                            "exec %" PRIu64 " failed: %s", r->execution_id,
                            r->error ? r->error : "");
            char want[24];
            snprintf (want, sizeof want, "%" PRIu64,
                      at < S_BATCH_SLEEPS ? (uint64_t) 50 : 2 * r->execution_id);
            HARNESS_ASSERT (r->output.len == strlen (want)
                                && memcmp (r->output.data, want, r->output.len) == 0,
                            "exec %" PRIu64 ": output '%.*s', expected '%s'", r->execution_id,
                            (int) r->output.len, (const char *) r->output.data, want);
            if (first)
                HARNESS_ASSERT (r->execution_id == 11 + j,
                                "the batch's Result %zu is exec %" PRIu64 ", expected %zu (order)",
                                j, r->execution_id, 11 + j);
            results++;
        }
        keel_wire_free (&env);
    }
    for (int i = 0; i < N; i++)
        HARNESS_ASSERT (seen[i] == 1, "no Result for exec %" PRIu64 " within 10 s", execs[i]);
    HARNESS_ASSERT (first_batch == S_BATCH_INLINE,
                    "the inline tasks' Results came in a first batch of %d, expected one "
                    "ResultBatch of %d",
                    first_batch, S_BATCH_INLINE);

    //  Nothing more: no Result is sent twice on this connection.
    deadline = zclock_mono () + 1000;
    while (zclock_mono () < deadline) {
        env = fake_broker_recv (f, (int) (deadline - zclock_mono ()));
        HARNESS_ASSERT (!env
                            || (env->body_case != KEEL__ENVELOPE__BODY_RESULT
                                && env->body_case != KEEL__ENVELOPE__BODY_RESULT_BATCH),
                        "a late %s", keel_wire_body_name (env));
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (harness_alive (pid), "keel-engine died");
}
