/*  test_hostile_peers.c — keel-engine and keel-driver against a hostile broker.

    The broker here is a fake inside the test: a ROUTER on a free loopback
    port, driven by the test thread. It takes the program's login or hello,
    sends it thousands of frames no broker should send (random bytes,
    truncated envelopes, multi-frame messages, valid envelopes from the wrong
    sender or with the wrong body, absurd values, ids nobody knows), then
    behaves like a broker. The program must drop what is wrong without
    crashing, hanging or dropping its connection, and still do its job
    correctly afterwards.

    Every message the fake wants ignored carries a marker the test can see
    if it leaks through: execution ids the engine must never answer, outputs
    ("WRONG...") the driver must never print.
*/
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <czmq.h>

#include "fake_broker.h"
#include "harness.h"
#include "wire.h"

#define S_RANDOM_FRAMES    3000
#define S_TRUNCATED_FRAMES 3000
#define S_KEEPALIVE_EVERY  500 // a Heartbeat every this many garbage frames
#define S_BIG_INPUT        (4 * 1024 * 1024)
#define S_ECHO_INPUT       (1024 * 1024)

// ---------------------------------------------------------------- the fake broker

static fake_broker_t *s_running; // the fake of the running test
static uint32_t s_rng;           // xorshift state, seeded per test process

static uint32_t
s_rand (fake_broker_t *f)
{
    (void) f;
    uint32_t x = s_rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return s_rng = x;
}

// The fake of the running test, destroyed at teardown even when an
// assertion ended the test early (each test runs in its own process).
static void
s_teardown (void)
{
    fake_broker_destroy (&s_running);
    harness_teardown ();
}

// A fake broker on a free loopback port, with nobody connected yet and no
// keep-alive until the test asks for it.
static fake_broker_t *
s_fake_new (void)
{
    fake_broker_t *f = fake_broker_new ();
    cr_assert_not_null (f, "no fake broker (no free port?)");
    s_running = f;
    f->keepalive_ms = 0;
    s_rng = (uint32_t) getpid () * 2654435761u | 1u;
    cr_log_info ("hostile peers seed %u", s_rng);
    return f;
}

// ---------------------------------------------------------------- garbage

// Random frames, some starting like an envelope (version 1) to get past
// the first bytes of the decoder; a Heartbeat every S_KEEPALIVE_EVERY.
static void
s_send_random (fake_broker_t *f, int count)
{
    uint8_t frame[300];
    for (int i = 0; i < count; i++) {
        size_t len = s_rand (f) % sizeof frame;
        for (size_t k = 0; k < len; k++)
            frame[k] = (uint8_t) s_rand (f);
        if (len >= 2 && i % 3 == 0) {
            frame[0] = 0x08;
            frame[1] = 0x01;
        }
        fake_broker_send_raw (f, frame, len);
        if (i % S_KEEPALIVE_EVERY == S_KEEPALIVE_EVERY - 1)
            fake_broker_send_heartbeat (f);
    }
}

// Strict prefixes of a valid envelope. The body is its last field, so no
// prefix is a valid message: a program that acts on one has a bug the
// marker in the body shows.
static void
s_send_truncated (fake_broker_t *f, keel_env_t *env, int count)
{
    zframe_t *frame = fake_broker_encode (f, env);
    size_t size = zframe_size (frame);
    for (int i = 0; i < count; i++) {
        fake_broker_send_raw (f, zframe_data (frame), s_rand (f) % size);
        if (i % S_KEEPALIVE_EVERY == S_KEEPALIVE_EVERY - 1)
            fake_broker_send_heartbeat (f);
    }
    zframe_destroy (&frame);
}

// Multi-frame messages whose every frame (or last frame) is a valid
// message: the whole message is malformed and must be dropped.
static void
s_send_multi (fake_broker_t *f, keel_env_t *env, int count)
{
    zframe_t *frame = fake_broker_encode (f, env);
    uint8_t junk[16];
    for (size_t k = 0; k < sizeof junk; k++)
        junk[k] = (uint8_t) s_rand (f);
    for (int i = 0; i < count; i++) {
        const void *d[3] = { zframe_data (frame), zframe_data (frame), zframe_data (frame) };
        size_t s[3] = { zframe_size (frame), zframe_size (frame), zframe_size (frame) };
        fake_broker_send_frames (f, 2, d, s); // valid + valid
        d[0] = junk;
        s[0] = sizeof junk;
        fake_broker_send_frames (f, 2, d, s); // garbage + valid
        s[0] = 0;
        fake_broker_send_frames (f, 3, d, s); // empty + valid + valid
        d[0] = zframe_data (frame);
        s[0] = zframe_size (frame);
        d[1] = junk;
        s[1] = 0;
        fake_broker_send_frames (f, 2, d, s); // valid + empty
    }
    zframe_destroy (&frame);
}

// The same envelope from every sender that is not a broker.
static void
s_send_wrong_senders (fake_broker_t *f, keel_env_t *env)
{
    const int senders[] = { KEEL__SENDER_KIND__SENDER_UNKNOWN, KEEL__SENDER_KIND__SENDER_DRIVER,
                            KEEL__SENDER_KIND__SENDER_ENGINE, KEEL__SENDER_KIND__SENDER_ADMIN, 99 };
    Keel__SenderKind saved = env->sender;
    for (size_t i = 0; i < sizeof senders / sizeof senders[0]; i++) {
        env->has_sender = true;
        env->sender = (Keel__SenderKind) senders[i];
        fake_broker_send (f, env);
    }
    env->sender = saved;
}

static char *
s_text (size_t len, char c)
{
    char *text = malloc (len + 1);
    cr_assert_not_null (text);
    memset (text, c, len);
    text[len] = 0;
    return text;
}

// Bodies a broker never sends (or sends only to the other kind of peer),
// each as a broker would frame it. Some are malformed from a broker (the
// validator refuses them), others are valid but unexpected here.
static void
s_send_wrong_bodies (fake_broker_t *f, const char *service_id)
{
    keel_env_t env;
    uint64_t ids[3] = { 1, 2, UINT64_MAX };

    Keel__TaskInput input = KEEL__TASK_INPUT__INIT;
    input.has_task_id = input.has_input = true;
    input.input.data = (uint8_t *) "7";
    input.input.len = 1;
    Keel__TaskInput *inputs[1] = { &input };
    Keel__SubmitTasks submit = KEEL__SUBMIT_TASKS__INIT;
    submit.service_id = (char *) service_id;
    submit.n_tasks = 1;
    submit.tasks = inputs;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_TASKS;
    env.submit_tasks = &submit;
    fake_broker_send (f, &env);

    Keel__SubmitService service = KEEL__SUBMIT_SERVICE__INIT;
    service.service_id = (char *) service_id;
    service.type = "double";
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_SERVICE;
    env.submit_service = &service;
    fake_broker_send (f, &env);

    Keel__DriverHello hello = KEEL__DRIVER_HELLO__INIT;
    hello.driver_id = "broker-pretending";
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_HELLO;
    env.driver_hello = &hello;
    fake_broker_send (f, &env);

    char *types[1] = { "double" };
    Keel__EngineLogin login = KEEL__ENGINE_LOGIN__INIT;
    login.engine_id = "broker-pretending";
    login.session = "s";
    login.has_slots = true;
    login.slots = 1;
    login.n_service_types = 1;
    login.service_types = types;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_ENGINE_LOGIN;
    env.engine_login = &login;
    fake_broker_send (f, &env);

    Keel__Result result = KEEL__RESULT__INIT;
    result.service_id = (char *) service_id;
    result.has_task_id = result.has_execution_id = result.has_status = result.has_output = true;
    result.execution_id = 620;
    result.status = KEEL__TASK_STATUS__STATUS_OK;
    result.output.data = (uint8_t *) "WRONG-RESULT";
    result.output.len = 12;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_RESULT;
    env.result = &result;
    fake_broker_send (f, &env);

    Keel__Checkpoint cp = KEEL__CHECKPOINT__INIT;
    cp.service_id = (char *) service_id;
    cp.has_task_id = cp.has_execution_id = true;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_CHECKPOINT;
    env.checkpoint = &cp;
    fake_broker_send (f, &env);

    char *detach_ids[1] = { (char *) service_id };
    Keel__Detach detach = KEEL__DETACH__INIT;
    detach.n_service_ids = 1;
    detach.service_ids = detach_ids;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_DETACH;
    env.detach = &detach;
    fake_broker_send (f, &env);

    Keel__Logoff logoff = KEEL__LOGOFF__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_LOGOFF;
    env.logoff = &logoff;
    fake_broker_send (f, &env);

    Keel__AdminRequest request = KEEL__ADMIN_REQUEST__INIT;
    request.command = "status";
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_ADMIN_REQUEST;
    env.admin_request = &request;
    fake_broker_send (f, &env);

    Keel__AdminReply reply = KEEL__ADMIN_REPLY__INIT;
    reply.has_ok = true;
    reply.ok = true;
    reply.json = "{}";
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_ADMIN_REPLY;
    env.admin_reply = &reply;
    fake_broker_send (f, &env);

    // A broker's ResultAck carries execution ids only; with task ids it is malformed.
    Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
    ack.service_id = (char *) service_id;
    ack.n_task_ids = 3;
    ack.task_ids = ids;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_RESULT_ACK;
    env.result_ack = &ack;
    fake_broker_send (f, &env);

    // Notices: one at the text limit (valid), one past it, one without text.
    char *text = s_text (KEEL_TEXT_MAX + 1, 'n');
    Keel__Notice notice = KEEL__NOTICE__INIT;
    notice.has_level = true;
    notice.level = KEEL__NOTICE_LEVEL__NOTICE_ERROR;
    notice.text = text;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_NOTICE;
    env.notice = &notice;
    fake_broker_send (f, &env);
    notice.text = NULL;
    fake_broker_send (f, &env);
    memcpy (text, "hostile-notice:", 15);
    text[KEEL_TEXT_MAX] = 0;
    notice.text = text;
    fake_broker_send (f, &env);
    free (text);

    // An envelope of another protocol version, and one with no body.
    Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.version = 2;
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    fake_broker_send (f, &env);
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    fake_broker_send (f, &env);
}

// ---------------------------------------------------------------- engine

static void
s_assign_init (Keel__Assign *assign, const char *service_id, const char *type,
               uint64_t execution_id, const void *input, size_t size)
{
    keel__assign__init (assign);
    assign->service_id = (char *) service_id;
    assign->type = (char *) type;
    assign->has_task_id = assign->has_execution_id = true;
    assign->task_id = execution_id % 1000;
    assign->execution_id = execution_id;
    assign->has_input = input != NULL;
    assign->input.data = (uint8_t *) input;
    assign->input.len = size;
    assign->has_attempt = true;
    assign->attempt = 1;
}

static bool
s_send_assign (fake_broker_t *f, const Keel__Assign *assign, Keel__SenderKind sender)
{
    keel_env_t env;
    keel_env_init (&env, sender);
    env.body_case = KEEL__ENVELOPE__BODY_ASSIGN;
    env.assign = (Keel__Assign *) assign;
    return fake_broker_send (f, &env);
}

static bool
s_send_login_reply (fake_broker_t *f, bool ok, uint64_t heartbeat_ms, uint64_t engine_timeout_ms,
                    const char *error, Keel__SenderKind sender)
{
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    reply.has_ok = true;
    reply.ok = ok;
    reply.error = (char *) error;
    reply.broker_name = "fake-broker";
    reply.has_epoch = true;
    reply.epoch = 1;
    reply.has_heartbeat_ms = true;
    reply.heartbeat_ms = heartbeat_ms;
    reply.has_engine_timeout_ms = true;
    reply.engine_timeout_ms = engine_timeout_ms;
    keel_env_t env;
    keel_env_init (&env, sender);
    env.body_case = KEEL__ENVELOPE__BODY_LOGIN_REPLY;
    env.login_reply = &reply;
    return fake_broker_send (f, &env);
}

// Login replies no engine may take for a login: malformed (no heartbeat,
// heartbeat 0, timeout 0), from the wrong sender, or with values no broker
// can be configured to (heartbeat of centuries, timeout past INT64_MAX).
static void
s_send_bogus_login_replies (fake_broker_t *f)
{
    const Keel__SenderKind broker = KEEL__SENDER_KIND__SENDER_BROKER;
    s_send_login_reply (f, true, 0, 60000, NULL, broker);
    s_send_login_reply (f, true, 1000, 0, NULL, broker);
    s_send_login_reply (f, true, 1000, 60000, NULL, KEEL__SENDER_KIND__SENDER_DRIVER);
    s_send_login_reply (f, true, 1000, 60000, NULL, KEEL__SENDER_KIND__SENDER_ENGINE);
    s_send_login_reply (f, true, UINT64_MAX, 60000, NULL, broker);
    s_send_login_reply (f, true, 1000, UINT64_MAX, NULL, broker);
    s_send_login_reply (f, true, UINT64_MAX, UINT64_MAX, NULL, broker);
    s_send_login_reply (f, true, (uint64_t) 1 << 62, (uint64_t) 1 << 62, NULL, broker);
    s_send_login_reply (f, true, (uint64_t) 1 << 63, 60000, NULL, broker);
    //  Missing heartbeat_ms altogether.
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    reply.has_ok = reply.ok = true;
    keel_env_t env;
    keel_env_init (&env, broker);
    env.body_case = KEEL__ENVELOPE__BODY_LOGIN_REPLY;
    env.login_reply = &reply;
    fake_broker_send (f, &env);
}

// Unknown ids in every list a broker sends an engine, up to the list cap.
static void
s_send_unknown_ids (fake_broker_t *f)
{
    size_t n = KEEL_LIST_MAX;
    uint64_t *ids = calloc (n, sizeof *ids);
    cr_assert_not_null (ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = i % 2 ? UINT64_MAX - i : 900000 + i;
    keel_env_t env;

    Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_RESULT_ACK;
    env.result_ack = &ack;
    for (size_t count = 1; count <= n; count *= 100) {
        ack.n_execution_ids = count;
        ack.execution_ids = ids + (n - count);
        fake_broker_send (f, &env);
    }

    Keel__Cancel cancel = KEEL__CANCEL__INIT;
    cancel.reason = "hostile";
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_CANCEL;
    env.cancel = &cancel;
    for (size_t count = 1; count <= n; count *= 100) {
        cancel.n_execution_ids = count;
        cancel.execution_ids = ids + (n - count);
        fake_broker_send (f, &env);
    }
    cancel.n_execution_ids = 0; // malformed: nothing to cancel
    fake_broker_send (f, &env);

    Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
    hb.n_running = n;
    hb.running = ids;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    fake_broker_send (f, &env);
    free (ids);

    // Verdicts for tasks the engine never had, on a reply it does not expect.
    Keel__TaskVerdict verdict = KEEL__TASK_VERDICT__INIT;
    verdict.service_id = "no-such-service";
    verdict.has_task_id = verdict.has_execution_id = verdict.has_verdict = true;
    verdict.execution_id = UINT64_MAX;
    verdict.verdict = KEEL__VERDICT__VERDICT_DROP;
    Keel__TaskVerdict *verdicts[1] = { &verdict };
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    reply.has_ok = reply.ok = true;
    reply.has_heartbeat_ms = reply.has_engine_timeout_ms = true;
    reply.heartbeat_ms = 10;
    reply.engine_timeout_ms = 1;
    reply.n_verdicts = 1;
    reply.verdicts = verdicts;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_LOGIN_REPLY;
    env.login_reply = &reply;
    fake_broker_send (f, &env);
}

// Assigns the validator must refuse: bad type names, bad or missing ids.
static void
s_send_malformed_assigns (fake_broker_t *f)
{
    char *long_id = s_text (KEEL_ID_MAX + 1, 'a');
    char *long_type = s_text (KEEL_TYPE_MAX + 1, 'd');
    Keel__Assign assign;
    s_assign_init (&assign, "svc-bad", "../../bin/sh", 630, "1", 1);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, "svc-bad", "", 631, "1", 1);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, "svc-bad", long_type, 632, "1", 1);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, long_id, "double", 633, "1", 1);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, "svc bad/..", "double", 634, "1", 1);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, "svc-bad", "double", 635, "1", 1);
    assign.has_execution_id = false;
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, "svc-bad", "double", 636, "1", 1);
    assign.has_task_id = false;
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, NULL, "double", 637, "1", 1);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    free (long_id);
    free (long_type);
}

// What the engine must answer: execution id → expected status and output.
typedef struct {
    uint64_t execution_id;
    bool ok;
    const char *output; // OK: exact output (NULL: checked elsewhere)
    int results;        // Results received for it
} s_expected_t;

static s_expected_t *
s_find_expected (s_expected_t *table, size_t n, uint64_t execution_id)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].execution_id == execution_id)
            return &table[i];
    return NULL;
}

Test (hostile_peers, engine_drops_a_hostile_brokers_garbage_and_still_computes,
      .init = harness_setup, .fini = s_teardown, .timeout = 30)
{
    fake_broker_t *f = s_fake_new ();
    char state[512], state_set[600], brokers[96];
    harness_path (state, sizeof state, "engine.state");
    mkdir (state, 0755);
    snprintf (state_set, sizeof state_set, "StateDir=%s", state);
    snprintf (brokers, sizeof brokers, "Brokers=%s", f->b.endpoint);
    const char *argv[] = { "--set", brokers,   "--set", state_set,
                           "--set", "Slots=1", "--set", "HeartbeatInterval=200ms",
                           NULL };
    pid_t pid = harness_spawn ("engine", "keel-engine", argv);
    HARNESS_ASSERT (pid > 0, "keel-engine did not start");

    // 1. The engine logs in.
    keel_env_t *env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, 8000);
    HARNESS_ASSERT (env != NULL, "no EngineLogin within 8 s");
    char engine_id[KEEL_ID_MAX + 1], session[KEEL_ID_MAX + 1];
    snprintf (engine_id, sizeof engine_id, "%s", env->engine_login->engine_id);
    snprintf (session, sizeof session, "%s", env->engine_login->session);
    bool has_double = false, has_echo = false;
    for (size_t i = 0; i < env->engine_login->n_service_types; i++) {
        has_double = has_double || streq (env->engine_login->service_types[i], "double");
        has_echo = has_echo || streq (env->engine_login->service_types[i], "echo");
    }
    cr_assert_eq (env->engine_login->slots, 1);
    cr_assert (has_double && has_echo, "the engine does not offer the built-in double and echo");
    keel_wire_free (&env);

    // 2. While it waits for its LoginReply: noise, login replies it must
    //    not take, work it must not do (not logged in), then a refusal. A
    //    refused engine logs in again; until then it sends nothing an
    //    online engine sends.
    s_send_random (f, 500);
    s_send_bogus_login_replies (f);
    Keel__Assign assign;
    s_assign_init (&assign, "svc-early", "double", 500, "1", 1);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    char *long_error = s_text (KEEL_TEXT_MAX, 'e');
    s_send_login_reply (f, false, 0, 0, long_error, KEEL__SENDER_KIND__SENDER_BROKER);
    free (long_error);
    int online_msgs = 0;
    int64_t deadline = zclock_mono () + 6000;
    int logins_before = f->logins;
    while (f->logins == logins_before && zclock_mono () < deadline) {
        env = fake_broker_recv (f, (int) (deadline - zclock_mono ()));
        if (env && env->body_case != KEEL__ENVELOPE__BODY_ENGINE_LOGIN) {
            cr_log_warn ("engine sent %s before it was logged in", keel_wire_body_name (env));
            online_msgs++;
        }
        if (env && env->body_case == KEEL__ENVELOPE__BODY_ENGINE_LOGIN) {
            HARNESS_ASSERT (streq (env->engine_login->engine_id, engine_id)
                                && streq (env->engine_login->session, session),
                            "the engine changed its id or session after a refused login");
            HARNESS_ASSERT (env->engine_login->n_held == 0,
                            "the engine holds a task it was assigned before logging in");
        }
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (f->logins > logins_before, "the engine did not log in again after a refusal");
    HARNESS_ASSERT (online_msgs == 0,
                    "the engine acted as logged in (%d messages) before a valid "
                    "LoginReply: it took a bogus one",
                    online_msgs);
    HARNESS_ASSERT (harness_alive (pid), "keel-engine died during the login");

    // 3. A valid login, then the flood, all on one connection.
    HARNESS_ASSERT (
        s_send_login_reply (f, true, 1000, 60000, NULL, KEEL__SENDER_KIND__SENDER_BROKER),
        "cannot send the LoginReply");
    f->keepalive_ms = 300;
    int logins_online = f->logins;
    long failures_before = f->send_failures;

    s_send_random (f, S_RANDOM_FRAMES);
    keel_env_t marked;
    s_assign_init (&assign, "svc-bad", "double", 600, "5", 1);
    keel_env_init (&marked, KEEL__SENDER_KIND__SENDER_BROKER);
    marked.body_case = KEEL__ENVELOPE__BODY_ASSIGN;
    marked.assign = &assign;
    s_send_truncated (f, &marked, S_TRUNCATED_FRAMES);
    s_assign_init (&assign, "svc-bad", "double", 601, "5", 1);
    s_send_multi (f, &marked, 20);
    s_assign_init (&assign, "svc-bad", "double", 610, "5", 1);
    s_send_wrong_senders (f, &marked);
    s_send_wrong_bodies (f, "svc-bad");
    s_send_bogus_login_replies (f);
    s_send_login_reply (f, false, 0, 0, "go away", KEEL__SENDER_KIND__SENDER_BROKER);
    s_send_unknown_ids (f);
    s_send_malformed_assigns (f);
    fake_broker_send_heartbeat (f);

    // Assigns it must run or refuse with a FAILED result, each exactly once.
    uint8_t *big = malloc (S_BIG_INPUT);
    uint8_t *echo = malloc (S_ECHO_INPUT);
    cr_assert (big && echo);
    memset (big, '9', S_BIG_INPUT);
    for (size_t i = 0; i < S_ECHO_INPUT; i++)
        echo[i] = (uint8_t) s_rand (f);
    s_expected_t expected[] = {
        { 700, false, NULL, 0 },        // unknown service type
        { 701, false, NULL, 0 },        // empty input
        { 702, false, NULL, 0 },        // 4 MiB of digits: not a 64-bit integer
        { 703, true, NULL, 0 },         // echo of 1 MiB of random bytes
        { 704, true, "2", 0 },          // with 1 MiB of init data and a checkpoint
        { 705, false, NULL, 0 },        // 2 x INT64_MAX overflows
        { UINT64_MAX, true, "42", 0 },  // the largest execution id
        { 1000, true, "246913578", 0 }, // the final, ordinary task
    };
    size_t n_expected = sizeof expected / sizeof expected[0];
    s_assign_init (&assign, "svc-odd", "no-such-type", 700, "1", 1);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, "svc-odd", "double", 701, NULL, 0);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER); // a duplicate
    s_assign_init (&assign, "svc-odd", "double", 702, big, S_BIG_INPUT);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, "svc-echo", "echo", 703, echo, S_ECHO_INPUT);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, "svc-init", "double", 704, "1", 1);
    assign.has_init_data = assign.has_memory = true;
    assign.init_data.data = big;
    assign.init_data.len = S_ECHO_INPUT;
    assign.memory.data = echo;
    assign.memory.len = 1024;
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, "svc-odd", "double", 705, "9223372036854775807", 19);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_assign_init (&assign, "svc-odd", "double", UINT64_MAX, "21", 2);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    s_send_random (f, 200);
    s_assign_init (&assign, "svc-final", "double", 1000, "123456789", 9);
    HARNESS_ASSERT (s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER),
                    "cannot send the final Assign");
    HARNESS_ASSERT (f->send_failures == failures_before,
                    "%ld sends failed: the engine dropped its connection under the flood",
                    f->send_failures - failures_before);

    // 4. Every answer, once, correct; nothing for what it had to drop.
    size_t answered = 0;
    int heartbeats = 0;
    deadline = zclock_mono () + 10000;
    int64_t online_at = zclock_mono ();
    while (answered < n_expected && zclock_mono () < deadline) {
        env = fake_broker_recv (f, (int) (deadline - zclock_mono ()));
        if (!env)
            break;
        if (env->body_case == KEEL__ENVELOPE__BODY_HEARTBEAT)
            heartbeats++;
        if (env->body_case == KEEL__ENVELOPE__BODY_RESULT) {
            const Keel__Result *r = env->result;
            s_expected_t *e = s_find_expected (expected, n_expected, r->execution_id);
            HARNESS_ASSERT (e != NULL,
                            "Result for execution %" PRIu64 ", which the engine had to "
                            "drop",
                            r->execution_id);
            HARNESS_ASSERT (++e->results == 1, "a second Result for execution %" PRIu64,
                            r->execution_id);
            answered++;
            bool ok = r->status == KEEL__TASK_STATUS__STATUS_OK;
            HARNESS_ASSERT (ok == e->ok, "execution %" PRIu64 ": status %d (error \"%s\")",
                            r->execution_id, (int) r->status, r->error ? r->error : "");
            if (!ok)
                HARNESS_ASSERT (r->error && *r->error, "execution %" PRIu64 " failed with no error",
                                r->execution_id);
            if (e->output)
                HARNESS_ASSERT (r->output.len == strlen (e->output)
                                    && memcmp (r->output.data, e->output, r->output.len) == 0,
                                "execution %" PRIu64 ": output '%.*s', expected '%s'",
                                r->execution_id, (int) r->output.len, (const char *) r->output.data,
                                e->output);
            if (r->execution_id == 703)
                HARNESS_ASSERT (r->output.len == S_ECHO_INPUT
                                    && memcmp (r->output.data, echo, S_ECHO_INPUT) == 0,
                                "echo returned %zu bytes that differ from its input",
                                r->output.len);
            Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
            uint64_t id = r->execution_id;
            ack.n_execution_ids = 1;
            ack.execution_ids = &id;
            keel_env_t reply;
            keel_env_init (&reply, KEEL__SENDER_KIND__SENDER_BROKER);
            reply.body_case = KEEL__ENVELOPE__BODY_RESULT_ACK;
            reply.result_ack = &ack;
            fake_broker_send (f, &reply);
        }
        keel_wire_free (&env);
    }
    for (size_t i = 0; i < n_expected; i++)
        HARNESS_ASSERT (expected[i].results == 1, "no Result for execution %" PRIu64 " within 10 s",
                        expected[i].execution_id);
    free (big);
    free (echo);

    // A little longer on the same connection: no late Result for anything
    // dropped, no second login, heartbeats at the adopted interval.
    deadline = zclock_mono () + 1500;
    while (zclock_mono () < deadline) {
        env = fake_broker_recv (f, (int) (deadline - zclock_mono ()));
        if (env && env->body_case == KEEL__ENVELOPE__BODY_HEARTBEAT)
            heartbeats++;
        HARNESS_ASSERT (!env || env->body_case != KEEL__ENVELOPE__BODY_RESULT,
                        "a late Result for execution %" PRIu64, env->result->execution_id);
        keel_wire_free (&env);
    }
    int64_t online_ms = zclock_mono () - online_at;
    HARNESS_ASSERT (f->logins == logins_online, "the engine logged in again: it dropped the "
                                                "connection under the flood");
    HARNESS_ASSERT (heartbeats <= online_ms / 1000 + 3,
                    "%d heartbeats in %lld ms at a 1 s interval", heartbeats,
                    (long long) online_ms);
    HARNESS_ASSERT (f->unreadable == 0, "the engine sent %ld unreadable messages", f->unreadable);
    char path[512];
    long log_lines = harness_count_lines (harness_path (path, sizeof path, "engine.err"));
    HARNESS_ASSERT (log_lines < 500,
                    "the engine logged %ld lines: dropped messages are not "
                    "rate-limited",
                    log_lines);
    HARNESS_ASSERT (harness_alive (pid), "keel-engine died under the hostile broker");

    // 5. It still stops cleanly, logging off.
    int code = harness_stop (pid, 5000);
    HARNESS_ASSERT (code == 0, "keel-engine exited %d on SIGTERM", code);
    env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_LOGOFF, 2000);
    HARNESS_ASSERT (env != NULL, "no Logoff from the stopping engine");
    keel_wire_free (&env);
    fake_broker_destroy (&s_running);
}

// ---------------------------------------------------------------- driver

static void
s_result_init (Keel__TaskResult *r, const char *service_id, uint64_t task_id, const char *output)
{
    keel__task_result__init (r);
    r->service_id = (char *) service_id;
    r->has_task_id = r->has_status = r->has_output = r->has_execution_id = r->has_attempts = true;
    r->task_id = task_id;
    r->status = KEEL__TASK_STATUS__STATUS_OK;
    r->output.data = (uint8_t *) output;
    r->output.len = strlen (output);
    r->engine_id = "fake-engine";
    r->execution_id = 100 + task_id;
    r->attempts = 1;
}

static bool
s_send_results (fake_broker_t *f, Keel__TaskResult **results, size_t n, Keel__SenderKind sender)
{
    Keel__TaskResults msg = KEEL__TASK_RESULTS__INIT;
    msg.n_results = n;
    msg.results = results;
    keel_env_t env;
    keel_env_init (&env, sender);
    env.body_case = KEEL__ENVELOPE__BODY_TASK_RESULTS;
    env.task_results = &msg;
    return fake_broker_send (f, &env);
}

static bool
s_send_accepted (fake_broker_t *f, const char *service_id, uint64_t *ids, size_t n)
{
    Keel__Accepted accepted = KEEL__ACCEPTED__INIT;
    accepted.service_id = (char *) service_id;
    accepted.n_task_ids = n;
    accepted.task_ids = ids;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_ACCEPTED;
    env.accepted = &accepted;
    return fake_broker_send (f, &env);
}

static void
s_send_refused (fake_broker_t *f, const char *service_id, int code, uint64_t *ids, size_t n)
{
    Keel__Refused refused = KEEL__REFUSED__INIT;
    refused.service_id = (char *) service_id;
    refused.has_code = true;
    refused.code = (Keel__RefuseCode) code;
    refused.error = "WRONG-REFUSAL";
    refused.n_task_ids = n;
    refused.task_ids = ids;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_REFUSED;
    env.refused = &refused;
    fake_broker_send (f, &env);
}

static bool
s_send_welcome (fake_broker_t *f, uint64_t heartbeat_ms, Keel__SenderKind sender)
{
    Keel__DriverWelcome welcome = KEEL__DRIVER_WELCOME__INIT;
    welcome.broker_name = "fake-broker";
    welcome.has_epoch = welcome.has_heartbeat_ms = true;
    welcome.epoch = 1;
    welcome.heartbeat_ms = heartbeat_ms;
    keel_env_t env;
    keel_env_init (&env, sender);
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_WELCOME;
    env.driver_welcome = &welcome;
    return fake_broker_send (f, &env);
}

// Valid messages about services and tasks the driver does not have, and
// refusals it must not take (malformed codes, or services it does not have).
static void
s_send_nonsense (fake_broker_t *f, const char *service_id)
{
    Keel__TaskResult r[4];
    Keel__TaskResult *rp[4] = { &r[0], &r[1], &r[2], &r[3] };
    s_result_init (&r[0], "no-such-service", 0, "WRONG-SERVICE");
    s_result_init (&r[1], service_id, 99, "WRONG-TASK");
    s_result_init (&r[2], service_id, UINT64_MAX, "WRONG-TASK");
    s_result_init (&r[3], "no-such-service", UINT64_MAX, "WRONG-SERVICE");
    r[3].status = KEEL__TASK_STATUS__STATUS_CANCELLED;
    s_send_results (f, rp, 4, KEEL__SENDER_KIND__SENDER_BROKER);
    s_send_results (f, rp, 4, KEEL__SENDER_KIND__SENDER_BROKER);
    // A result with an out-of-range status, and one with no status.
    s_result_init (&r[0], service_id, 0, "WRONG-STATUS");
    r[0].status = (Keel__TaskStatus) 7;
    s_send_results (f, rp, 1, KEEL__SENDER_KIND__SENDER_BROKER);
    r[0].has_status = false;
    s_send_results (f, rp, 1, KEEL__SENDER_KIND__SENDER_BROKER);
    s_send_results (f, rp, 0, KEEL__SENDER_KIND__SENDER_BROKER); // no results: malformed

    // Thousands of results in one message, none for a task it has.
    size_t n = 5000;
    Keel__TaskResult *many = calloc (n, sizeof *many);
    Keel__TaskResult **many_p = calloc (n, sizeof *many_p);
    cr_assert (many && many_p);
    for (size_t i = 0; i < n; i++) {
        s_result_init (&many[i], i % 2 ? service_id : "no-such-service", 1000 + i, "WRONG-MANY");
        many_p[i] = &many[i];
    }
    s_send_results (f, many_p, n, KEEL__SENDER_KIND__SENDER_BROKER);
    free (many);
    free (many_p);

    uint64_t unknown[3] = { 99, 100000, UINT64_MAX };
    s_send_accepted (f, "no-such-service", unknown, 3);
    s_send_accepted (f, "no-such-service", NULL, 0);
    s_send_accepted (f, service_id, unknown, 3);
    for (int code = 0; code <= 8; code++)
        s_send_refused (f, "no-such-service", code, unknown, code % 2 ? 3 : 0);
    // Codes outside the enum are malformed: the driver's own service must survive them.
    s_send_refused (f, service_id, 0, NULL, 0);
    s_send_refused (f, service_id, 5, NULL, 0);
    s_send_refused (f, service_id, -1, NULL, 0);
    s_send_refused (f, service_id, 1000, unknown, 3);
    // Valid refusals, but only of tasks it does not have.
    s_send_refused (f, service_id, KEEL__REFUSE_CODE__REFUSE_INVALID, unknown, 3);
    s_send_refused (f, service_id, KEEL__REFUSE_CODE__REFUSE_SERVICE_CLOSED, unknown, 3);

    // A driver has no use for engine messages.
    Keel__Assign assign;
    s_assign_init (&assign, service_id, "double", 1, "1", 1);
    s_send_assign (f, &assign, KEEL__SENDER_KIND__SENDER_BROKER);
    uint64_t exec = 101;
    Keel__Cancel cancel = KEEL__CANCEL__INIT;
    cancel.n_execution_ids = 1;
    cancel.execution_ids = &exec;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_CANCEL;
    env.cancel = &cancel;
    fake_broker_send (f, &env);
    Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
    ack.n_execution_ids = 1;
    ack.execution_ids = &exec;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_RESULT_ACK;
    env.result_ack = &ack;
    fake_broker_send (f, &env);
    s_send_login_reply (f, true, 1000, 60000, NULL, KEEL__SENDER_KIND__SENDER_BROKER);
}

typedef struct {
    char service_id[KEEL_ID_MAX + 1];
    char inputs[3][32];
    bool got[3];
    bool acked[3];
    int submit_services;
} s_driver_view_t;

// Notes what the driver sent: its service, its tasks, its acknowledgements.
static void
s_driver_saw (s_driver_view_t *v, const keel_env_t *env)
{
    if (env->body_case == KEEL__ENVELOPE__BODY_SUBMIT_SERVICE) {
        v->submit_services++;
        cr_assert (streq (env->submit_service->type, "double"), "service type '%s'",
                   env->submit_service->type);
        snprintf (v->service_id, sizeof v->service_id, "%s", env->submit_service->service_id);
    }
    if (env->body_case == KEEL__ENVELOPE__BODY_SUBMIT_TASKS) {
        const Keel__SubmitTasks *st = env->submit_tasks;
        cr_assert (streq (st->service_id, v->service_id), "tasks for service '%s'", st->service_id);
        for (size_t i = 0; i < st->n_tasks; i++) {
            uint64_t id = st->tasks[i]->task_id;
            cr_assert_lt (id, 3, "task id %" PRIu64 " from a range of 3", id);
            size_t len = st->tasks[i]->input.len;
            cr_assert_lt (len, sizeof v->inputs[id]);
            memcpy (v->inputs[id], st->tasks[i]->input.data, len);
            v->inputs[id][len] = 0;
            v->got[id] = true;
        }
    }
    if (env->body_case == KEEL__ENVELOPE__BODY_RESULT_ACK
        && streq (env->result_ack->service_id ? env->result_ack->service_id : "", v->service_id))
        for (size_t i = 0; i < env->result_ack->n_task_ids; i++)
            if (env->result_ack->task_ids[i] < 3)
                v->acked[env->result_ack->task_ids[i]] = true;
}

Test (hostile_peers, driver_drops_a_hostile_brokers_garbage_and_prints_each_result_once,
      .init = harness_setup, .fini = s_teardown, .timeout = 30)
{
    fake_broker_t *f = s_fake_new ();
    const char *argv[] = { "--broker", f->b.endpoint, "--set",  "DSBrokerTimeout=20s",
                           "submit",   "--service",   "double", "--range",
                           "0:3",      NULL };
    pid_t pid = harness_spawn ("driver", "keel-driver", argv);
    HARNESS_ASSERT (pid > 0, "keel-driver did not start");

    // 1. Its hello; before the welcome, noise and welcomes it must not take.
    keel_env_t *env = fake_broker_expect (f, KEEL__ENVELOPE__BODY_DRIVER_HELLO, 8000);
    HARNESS_ASSERT (env != NULL, "no DriverHello within 8 s");
    keel_wire_free (&env);
    s_send_welcome (f, 5, KEEL__SENDER_KIND__SENDER_BROKER); // below 10 ms: malformed
    s_send_welcome (f, 0, KEEL__SENDER_KIND__SENDER_BROKER);
    s_send_welcome (f, 1000, KEEL__SENDER_KIND__SENDER_ENGINE);
    s_send_welcome (f, 1000, KEEL__SENDER_KIND__SENDER_DRIVER);
    s_send_random (f, 1500);
    s_send_wrong_bodies (f, "no-such-service");
    // A Relogin makes it hello again: everything before was read by then.
    // Had it taken a bogus welcome it would have submitted its service.
    Keel__Relogin relogin = KEEL__RELOGIN__INIT;
    relogin.reason = "sync";
    keel_env_t sync;
    keel_env_init (&sync, KEEL__SENDER_KIND__SENDER_BROKER);
    sync.body_case = KEEL__ENVELOPE__BODY_RELOGIN;
    sync.relogin = &relogin;
    fake_broker_send (f, &sync);
    s_driver_view_t view;
    memset (&view, 0, sizeof view);
    int logins = f->logins;
    int64_t deadline = zclock_mono () + 6000;
    while (f->logins == logins && zclock_mono () < deadline) {
        env = fake_broker_recv (f, (int) (deadline - zclock_mono ()));
        if (env)
            s_driver_saw (&view, env);
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (f->logins > logins, "no DriverHello after Relogin within 6 s");
    HARNESS_ASSERT (view.submit_services == 0, "the driver submitted its service before a valid "
                                               "DriverWelcome: it took a bogus one");

    // 2. A valid welcome: it submits its service and tasks.
    HARNESS_ASSERT (s_send_welcome (f, 1000, KEEL__SENDER_KIND__SENDER_BROKER),
                    "cannot send the DriverWelcome");
    f->keepalive_ms = 300;
    deadline = zclock_mono () + 6000;
    while (!(view.got[0] && view.got[1] && view.got[2]) && zclock_mono () < deadline) {
        env = fake_broker_recv (f, (int) (deadline - zclock_mono ()));
        if (env)
            s_driver_saw (&view, env);
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (view.got[0] && view.got[1] && view.got[2],
                    "the driver did not submit tasks 0..2 within 6 s");
    const char *sid = view.service_id;
    char outputs[3][32];
    for (int i = 0; i < 3; i++)
        snprintf (outputs[i], sizeof outputs[i], "%lld", 2 * strtoll (view.inputs[i], NULL, 10));

    // 3. The flood, with results marked WRONG it must never print.
    int logins_ready = f->logins;
    long failures_before = f->send_failures;
    s_send_random (f, S_RANDOM_FRAMES);
    Keel__TaskResult wrong;
    Keel__TaskResult *wrong_p[2] = { &wrong, &wrong };
    s_result_init (&wrong, sid, 0, "WRONG-TRUNCATED");
    Keel__TaskResults wrong_msg = KEEL__TASK_RESULTS__INIT;
    wrong_msg.n_results = 1;
    wrong_msg.results = wrong_p;
    keel_env_t marked;
    keel_env_init (&marked, KEEL__SENDER_KIND__SENDER_BROKER);
    marked.body_case = KEEL__ENVELOPE__BODY_TASK_RESULTS;
    marked.task_results = &wrong_msg;
    s_send_truncated (f, &marked, S_TRUNCATED_FRAMES);
    s_result_init (&wrong, sid, 0, "WRONG-MULTI-FRAME");
    s_send_multi (f, &marked, 20);
    s_result_init (&wrong, sid, 0, "WRONG-SENDER");
    s_send_wrong_senders (f, &marked);
    s_send_wrong_bodies (f, sid);
    s_send_nonsense (f, sid);
    fake_broker_send_heartbeat (f);

    // 4. Then a broker's answers: accepted, and every result twice.
    uint64_t ids[3] = { 0, 1, 2 };
    s_send_accepted (f, sid, NULL, 0);
    s_send_accepted (f, sid, ids, 3);
    Keel__TaskResult r[3];
    for (int i = 0; i < 3; i++)
        s_result_init (&r[i], sid, (uint64_t) i, outputs[i]);
    Keel__TaskResult *twice[2] = { &r[0], &r[0] };
    s_send_results (f, twice, 2, KEEL__SENDER_KIND__SENDER_BROKER);
    for (int i = 1; i < 3; i++) {
        Keel__TaskResult *one[1] = { &r[i] };
        s_send_results (f, one, 1, KEEL__SENDER_KIND__SENDER_BROKER);
        s_send_results (f, one, 1, KEEL__SENDER_KIND__SENDER_BROKER);
    }
    Keel__TaskResult *all[3] = { &r[0], &r[1], &r[2] };
    HARNESS_ASSERT (s_send_results (f, all, 3, KEEL__SENDER_KIND__SENDER_BROKER),
                    "cannot send the results");
    HARNESS_ASSERT (f->send_failures == failures_before,
                    "%ld sends failed: the driver dropped its connection under the flood",
                    f->send_failures - failures_before);

    // 5. It prints each result once, acknowledges them and exits 0.
    int code = -1;
    bool exited = false;
    deadline = zclock_mono () + 10000;
    while (!(exited = harness_wait_exit (pid, 0, &code)) && zclock_mono () < deadline) {
        env = fake_broker_recv (f, 50);
        if (env)
            s_driver_saw (&view, env);
        keel_wire_free (&env);
    }
    HARNESS_ASSERT (exited, "keel-driver did not exit within 10 s of its last result");
    HARNESS_ASSERT (code == 0, "keel-driver exited %d", code);
    HARNESS_ASSERT (f->logins == logins_ready, "the driver said hello again: it dropped the "
                                               "connection under the flood");
    HARNESS_ASSERT (view.submit_services == 1, "the service was submitted %d times",
                    view.submit_services);
    HARNESS_ASSERT (view.acked[0] && view.acked[1] && view.acked[2],
                    "results not acknowledged: %d %d %d", view.acked[0], view.acked[1],
                    view.acked[2]);
    HARNESS_ASSERT (f->unreadable == 0, "the driver sent %ld unreadable messages", f->unreadable);

    char path[512];
    char *out = harness_read_file (harness_path (path, sizeof path, "driver.out"));
    HARNESS_ASSERT (out != NULL, "no driver.out");
    cr_log_info ("keel-driver printed:\n%s", out);
    HARNESS_ASSERT (strstr (out, "WRONG") == NULL,
                    "the driver printed a result it had to drop:\n%s", out);
    int lines = 0;
    bool seen[3] = { false, false, false };
    for (char *line = strtok (out, "\n"); line; line = strtok (NULL, "\n")) {
        lines++;
        long long task = -1;
        char value[64];
        HARNESS_ASSERT (harness_json_int (line, "task", &task) && task >= 0 && task < 3,
                        "line without a task 0..2: %s", line);
        HARNESS_ASSERT (!seen[task], "task %lld printed twice", task);
        seen[task] = true;
        HARNESS_ASSERT (harness_json_get (line, "service", value, sizeof value)
                            && streq (value, sid),
                        "wrong service: %s", line);
        HARNESS_ASSERT (harness_json_get (line, "status", value, sizeof value)
                            && streq (value, "ok"),
                        "not ok: %s", line);
        HARNESS_ASSERT (harness_json_get (line, "output", value, sizeof value)
                            && streq (value, outputs[task]),
                        "task %lld: output '%s', expected '%s'", task, value, outputs[task]);
    }
    HARNESS_ASSERT (lines == 3, "%d result lines, expected 3", lines);
    free (out);

    long log_lines = harness_count_lines (harness_path (path, sizeof path, "driver.err"));
    HARNESS_ASSERT (log_lines < 500,
                    "the driver logged %ld lines: dropped messages are not "
                    "rate-limited",
                    log_lines);
    char *err = harness_read_file (harness_path (path, sizeof path, "driver.err"));
    HARNESS_ASSERT (err && strstr (err, "hostile-notice:"), "the 4096-byte notice was not shown");
    free (err);
    fake_broker_destroy (&s_running);
}
