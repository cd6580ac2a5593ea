/*  test_wire.c — the codec: round trips, rejection of bad frames with a
    reason, the allocation cap, random frames, and ROUTER/DEALER sending.
*/
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "cond.h"
#include "wire.h"

// ---------------------------------------------------------------- valid messages

#define S_SERVICE "3f2a9c4e-0b1d-4e5f-8a7b-6c5d4e3f2a1b"
#define S_DRIVER  "d-1"
#define S_ENGINE  "engine:7"

// Storage for one message of every kind; s_build fills a valid one.
typedef struct {
    keel_env_t env;
    Keel__Heartbeat heartbeat;
    uint64_t running[2];
    Keel__Relogin relogin;
    Keel__Notice notice;
    Keel__DriverHello driver_hello;
    char *services[2];
    Keel__DriverWelcome driver_welcome;
    char *unknown[1];
    Keel__SubmitService submit_service;
    Keel__SubmitTasks submit_tasks;
    Keel__TaskInput task[5];
    Keel__TaskInput *tasks[5];
    Keel__Accepted accepted;
    uint64_t ids[3];
    Keel__Refused refused;
    Keel__TaskResults task_results;
    Keel__TaskResult task_result[2];
    Keel__TaskResult *task_result_p[2];
    Keel__Timings timings;
    Keel__ResultAck result_ack;
    Keel__CloseService close_service;
    Keel__CancelService cancel_service;
    Keel__Detach detach;
    Keel__EngineLogin engine_login;
    char *types[2];
    Keel__HeldTask held[2];
    Keel__HeldTask *held_p[2];
    Keel__Result held_result;
    Keel__LoginReply login_reply;
    Keel__TaskVerdict verdict;
    Keel__TaskVerdict *verdict_p[1];
    Keel__Assign assign;
    Keel__Result result;
    Keel__Checkpoint checkpoint;
    Keel__Cancel cancel;
    Keel__Logoff logoff;
    Keel__AdminRequest admin_request;
    char *args[2];
    Keel__AdminReply admin_reply;
    Keel__AssignBatch assign_batch;
    Keel__Assign batch_assign[3];
    Keel__Assign *batch_assign_p[3];
    Keel__ResultBatch result_batch;
    Keel__Result batch_result[3];
    Keel__Result *batch_result_p[3];
} s_msg_t;

static const struct {
    Keel__Envelope__BodyCase body;
    Keel__SenderKind sender;
    const char *name;
} s_kinds[] = {
    { KEEL__ENVELOPE__BODY_HEARTBEAT, KEEL__SENDER_KIND__SENDER_ENGINE, "heartbeat" },
    { KEEL__ENVELOPE__BODY_RELOGIN, KEEL__SENDER_KIND__SENDER_BROKER, "relogin" },
    { KEEL__ENVELOPE__BODY_NOTICE, KEEL__SENDER_KIND__SENDER_BROKER, "notice" },
    { KEEL__ENVELOPE__BODY_DRIVER_HELLO, KEEL__SENDER_KIND__SENDER_DRIVER, "driver_hello" },
    { KEEL__ENVELOPE__BODY_DRIVER_WELCOME, KEEL__SENDER_KIND__SENDER_BROKER, "driver_welcome" },
    { KEEL__ENVELOPE__BODY_SUBMIT_SERVICE, KEEL__SENDER_KIND__SENDER_DRIVER, "submit_service" },
    { KEEL__ENVELOPE__BODY_SUBMIT_TASKS, KEEL__SENDER_KIND__SENDER_DRIVER, "submit_tasks" },
    { KEEL__ENVELOPE__BODY_ACCEPTED, KEEL__SENDER_KIND__SENDER_BROKER, "accepted" },
    { KEEL__ENVELOPE__BODY_REFUSED, KEEL__SENDER_KIND__SENDER_BROKER, "refused" },
    { KEEL__ENVELOPE__BODY_TASK_RESULTS, KEEL__SENDER_KIND__SENDER_BROKER, "task_results" },
    { KEEL__ENVELOPE__BODY_RESULT_ACK, KEEL__SENDER_KIND__SENDER_DRIVER, "result_ack" },
    { KEEL__ENVELOPE__BODY_RESULT_ACK, KEEL__SENDER_KIND__SENDER_BROKER, "result_ack" },
    { KEEL__ENVELOPE__BODY_CLOSE_SERVICE, KEEL__SENDER_KIND__SENDER_DRIVER, "close_service" },
    { KEEL__ENVELOPE__BODY_CANCEL_SERVICE, KEEL__SENDER_KIND__SENDER_DRIVER, "cancel_service" },
    { KEEL__ENVELOPE__BODY_DETACH, KEEL__SENDER_KIND__SENDER_DRIVER, "detach" },
    { KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE, "engine_login" },
    { KEEL__ENVELOPE__BODY_LOGIN_REPLY, KEEL__SENDER_KIND__SENDER_BROKER, "login_reply" },
    { KEEL__ENVELOPE__BODY_ASSIGN, KEEL__SENDER_KIND__SENDER_BROKER, "assign" },
    { KEEL__ENVELOPE__BODY_RESULT, KEEL__SENDER_KIND__SENDER_ENGINE, "result" },
    { KEEL__ENVELOPE__BODY_CHECKPOINT, KEEL__SENDER_KIND__SENDER_ENGINE, "checkpoint" },
    { KEEL__ENVELOPE__BODY_CANCEL, KEEL__SENDER_KIND__SENDER_BROKER, "cancel" },
    { KEEL__ENVELOPE__BODY_LOGOFF, KEEL__SENDER_KIND__SENDER_ENGINE, "logoff" },
    { KEEL__ENVELOPE__BODY_ADMIN_REQUEST, KEEL__SENDER_KIND__SENDER_ADMIN, "admin_request" },
    { KEEL__ENVELOPE__BODY_ADMIN_REPLY, KEEL__SENDER_KIND__SENDER_BROKER, "admin_reply" },
    { KEEL__ENVELOPE__BODY_ASSIGN_BATCH, KEEL__SENDER_KIND__SENDER_BROKER, "assign_batch" },
    { KEEL__ENVELOPE__BODY_RESULT_BATCH, KEEL__SENDER_KIND__SENDER_ENGINE, "result_batch" },
};
#define S_KINDS (sizeof s_kinds / sizeof s_kinds[0])

static void
s_build_result (Keel__Result *r, uint64_t task_id, uint64_t execution_id)
{
    keel__result__init (r);
    r->service_id = S_SERVICE;
    r->has_task_id = true;
    r->task_id = task_id;
    r->has_execution_id = true;
    r->execution_id = execution_id;
    r->has_status = true;
    r->status = KEEL__TASK_STATUS__STATUS_OK;
    r->has_output = true;
    r->output.data = (uint8_t *) "42";
    r->output.len = 2;
    r->has_run_ms = true;
    r->run_ms = 17;
}

static void
s_build_assign (Keel__Assign *a, uint64_t task_id, uint64_t execution_id)
{
    keel__assign__init (a);
    a->service_id = S_SERVICE;
    a->type = "double";
    a->has_task_id = true, a->task_id = task_id;
    a->has_execution_id = true, a->execution_id = execution_id;
    a->has_input = true;
    a->input.data = (uint8_t *) "21", a->input.len = 2;
    a->has_attempt = true, a->attempt = 1;
}

// Fills m with a valid message with the given body from the given sender.
static keel_env_t *
s_build (s_msg_t *m, Keel__Envelope__BodyCase body, Keel__SenderKind sender)
{
    memset (m, 0, sizeof *m);
    keel_env_t *env = &m->env;
    keel_env_init (env, sender);
    env->has_seq = true;
    env->seq = 9;
    env->body_case = body;
    switch (body) {
        case KEEL__ENVELOPE__BODY_HEARTBEAT:
            keel__heartbeat__init (&m->heartbeat);
            m->running[0] = 5, m->running[1] = 1ull << 40;
            m->heartbeat.n_running = 2, m->heartbeat.running = m->running;
            env->heartbeat = &m->heartbeat;
            break;
        case KEEL__ENVELOPE__BODY_RELOGIN:
            keel__relogin__init (&m->relogin);
            m->relogin.reason = "unknown engine";
            env->relogin = &m->relogin;
            break;
        case KEEL__ENVELOPE__BODY_NOTICE:
            keel__notice__init (&m->notice);
            m->notice.has_level = true, m->notice.level = KEEL__NOTICE_LEVEL__NOTICE_WARNING;
            m->notice.text = "no engine offers service type double";
            m->notice.service_id = S_SERVICE;
            env->notice = &m->notice;
            break;
        case KEEL__ENVELOPE__BODY_DRIVER_HELLO:
            keel__driver_hello__init (&m->driver_hello);
            m->driver_hello.driver_id = S_DRIVER;
            m->services[0] = S_SERVICE, m->services[1] = "svc.2";
            m->driver_hello.n_services = 2, m->driver_hello.services = m->services;
            m->driver_hello.has_broker_timeout_ms = true, m->driver_hello.broker_timeout_ms = 30000;
            m->driver_hello.has_heartbeat_ms = true, m->driver_hello.heartbeat_ms = 1000;
            m->driver_hello.has_primary = true, m->driver_hello.primary = true;
            env->driver_hello = &m->driver_hello;
            break;
        case KEEL__ENVELOPE__BODY_DRIVER_WELCOME:
            keel__driver_welcome__init (&m->driver_welcome);
            m->driver_welcome.broker_name = "primary";
            m->driver_welcome.has_epoch = true, m->driver_welcome.epoch = 3;
            m->driver_welcome.has_heartbeat_ms = true, m->driver_welcome.heartbeat_ms = 1000;
            m->unknown[0] = "svc.2";
            m->driver_welcome.n_unknown_services = 1;
            m->driver_welcome.unknown_services = m->unknown;
            env->driver_welcome = &m->driver_welcome;
            break;
        case KEEL__ENVELOPE__BODY_SUBMIT_SERVICE:
            keel__submit_service__init (&m->submit_service);
            m->submit_service.service_id = S_SERVICE;
            m->submit_service.type = "double";
            m->submit_service.has_priority = true, m->submit_service.priority = -2;
            m->submit_service.has_reschedule_delay_ms = true;
            m->submit_service.reschedule_delay_ms = -1;
            m->submit_service.has_init_data = true;
            m->submit_service.init_data.data = (uint8_t *) "\0init",
            m->submit_service.init_data.len = 5;
            env->submit_service = &m->submit_service;
            break;
        case KEEL__ENVELOPE__BODY_SUBMIT_TASKS:
            keel__submit_tasks__init (&m->submit_tasks);
            m->submit_tasks.service_id = S_SERVICE;
            for (int i = 0; i < 5; i++) {
                keel__task_input__init (&m->task[i]);
                m->task[i].has_task_id = true, m->task[i].task_id = (uint64_t) i;
                m->task[i].has_input = true;
                m->task[i].input.data = (uint8_t *) "in\0put", m->task[i].input.len = 6;
                m->tasks[i] = &m->task[i];
            }
            m->submit_tasks.n_tasks = 5, m->submit_tasks.tasks = m->tasks;
            env->submit_tasks = &m->submit_tasks;
            break;
        case KEEL__ENVELOPE__BODY_ACCEPTED:
            keel__accepted__init (&m->accepted);
            m->accepted.service_id = S_SERVICE;
            m->ids[0] = 0, m->ids[1] = 1, m->ids[2] = UINT64_MAX;
            m->accepted.n_task_ids = 3, m->accepted.task_ids = m->ids;
            env->accepted = &m->accepted;
            break;
        case KEEL__ENVELOPE__BODY_REFUSED:
            keel__refused__init (&m->refused);
            m->refused.service_id = S_SERVICE;
            m->ids[0] = 4;
            m->refused.n_task_ids = 1, m->refused.task_ids = m->ids;
            m->refused.has_code = true, m->refused.code = KEEL__REFUSE_CODE__REFUSE_STORE_FULL;
            m->refused.error = "store full";
            env->refused = &m->refused;
            break;
        case KEEL__ENVELOPE__BODY_TASK_RESULTS:
            keel__task_results__init (&m->task_results);
            keel__timings__init (&m->timings);
            m->timings.has_queued_ms = true, m->timings.queued_ms = 3;
            m->timings.has_run_ms = true, m->timings.run_ms = 4;
            for (int i = 0; i < 2; i++) {
                Keel__TaskResult *r = &m->task_result[i];
                keel__task_result__init (r);
                r->service_id = S_SERVICE;
                r->has_task_id = true, r->task_id = (uint64_t) i;
                r->has_status = true;
                r->status = i ? KEEL__TASK_STATUS__STATUS_FAILED : KEEL__TASK_STATUS__STATUS_OK;
                r->error = i ? "exit code 3" : NULL;
                r->engine_id = S_ENGINE;
                r->has_execution_id = true, r->execution_id = 100 + (uint64_t) i;
                r->has_attempts = true, r->attempts = 1;
                r->timings = &m->timings;
                m->task_result_p[i] = r;
            }
            m->task_results.n_results = 2, m->task_results.results = m->task_result_p;
            env->task_results = &m->task_results;
            break;
        case KEEL__ENVELOPE__BODY_RESULT_ACK:
            keel__result_ack__init (&m->result_ack);
            m->ids[0] = 7, m->ids[1] = 8;
            if (sender == KEEL__SENDER_KIND__SENDER_DRIVER) {
                m->result_ack.service_id = S_SERVICE;
                m->result_ack.n_task_ids = 2, m->result_ack.task_ids = m->ids;
            }
            else {
                m->result_ack.n_execution_ids = 2, m->result_ack.execution_ids = m->ids;
            }
            env->result_ack = &m->result_ack;
            break;
        case KEEL__ENVELOPE__BODY_CLOSE_SERVICE:
            keel__close_service__init (&m->close_service);
            m->close_service.service_id = S_SERVICE;
            env->close_service = &m->close_service;
            break;
        case KEEL__ENVELOPE__BODY_CANCEL_SERVICE:
            keel__cancel_service__init (&m->cancel_service);
            m->cancel_service.service_id = S_SERVICE;
            env->cancel_service = &m->cancel_service;
            break;
        case KEEL__ENVELOPE__BODY_DETACH:
            keel__detach__init (&m->detach);
            m->services[0] = S_SERVICE;
            m->detach.n_service_ids = 1, m->detach.service_ids = m->services;
            env->detach = &m->detach;
            break;
        case KEEL__ENVELOPE__BODY_ENGINE_LOGIN:
            keel__engine_login__init (&m->engine_login);
            m->engine_login.engine_id = S_ENGINE;
            m->engine_login.session = "b7c1e2d3-0000-4000-8000-000000000001";
            m->engine_login.host = "node-12.example.org";
            m->engine_login.has_slots = true, m->engine_login.slots = 4;
            m->types[0] = "double", m->types[1] = "render.v2";
            m->engine_login.n_service_types = 2, m->engine_login.service_types = m->types;
            for (int i = 0; i < 2; i++) {
                Keel__HeldTask *h = &m->held[i];
                keel__held_task__init (h);
                h->service_id = S_SERVICE;
                h->has_task_id = true, h->task_id = 10 + (uint64_t) i;
                h->has_execution_id = true, h->execution_id = 20 + (uint64_t) i;
                h->broker_name = "primary";
                m->held_p[i] = h;
            }
            m->held[1].has_state = true, m->held[1].state = KEEL__HELD_STATE__HELD_DONE;
            s_build_result (&m->held_result, 11, 21);
            m->held[1].result = &m->held_result;
            m->engine_login.n_held = 2, m->engine_login.held = m->held_p;
            m->engine_login.has_pid = true, m->engine_login.pid = 4242;
            env->engine_login = &m->engine_login;
            break;
        case KEEL__ENVELOPE__BODY_LOGIN_REPLY:
            keel__login_reply__init (&m->login_reply);
            m->login_reply.has_ok = true, m->login_reply.ok = true;
            m->login_reply.broker_name = "primary";
            m->login_reply.has_epoch = true, m->login_reply.epoch = 3;
            m->login_reply.has_engine_timeout_ms = true, m->login_reply.engine_timeout_ms = 600000;
            m->login_reply.has_heartbeat_ms = true, m->login_reply.heartbeat_ms = 1000;
            keel__task_verdict__init (&m->verdict);
            m->verdict.service_id = S_SERVICE;
            m->verdict.has_task_id = true, m->verdict.task_id = 10;
            m->verdict.has_execution_id = true, m->verdict.execution_id = 20;
            m->verdict.has_verdict = true, m->verdict.verdict = KEEL__VERDICT__VERDICT_HOLD;
            m->verdict_p[0] = &m->verdict;
            m->login_reply.n_verdicts = 1, m->login_reply.verdicts = m->verdict_p;
            env->login_reply = &m->login_reply;
            break;
        case KEEL__ENVELOPE__BODY_ASSIGN:
            s_build_assign (&m->assign, 1, 77);
            env->assign = &m->assign;
            break;
        case KEEL__ENVELOPE__BODY_ASSIGN_BATCH:
            keel__assign_batch__init (&m->assign_batch);
            for (int i = 0; i < 3; i++) {
                s_build_assign (&m->batch_assign[i], 1 + (uint64_t) i, 77 + (uint64_t) i);
                m->batch_assign_p[i] = &m->batch_assign[i];
            }
            m->batch_assign[0].has_init_data = true; // the first of its service
            m->batch_assign[0].init_data.data = (uint8_t *) "\0init";
            m->batch_assign[0].init_data.len = 5;
            m->batch_assign[2].has_memory = true;
            m->batch_assign[2].memory.data = (uint8_t *) "memory",
            m->batch_assign[2].memory.len = 6;
            m->assign_batch.n_assigns = 3, m->assign_batch.assigns = m->batch_assign_p;
            env->assign_batch = &m->assign_batch;
            break;
        case KEEL__ENVELOPE__BODY_RESULT_BATCH:
            keel__result_batch__init (&m->result_batch);
            for (int i = 0; i < 3; i++) {
                s_build_result (&m->batch_result[i], 1 + (uint64_t) i, 77 + (uint64_t) i);
                m->batch_result_p[i] = &m->batch_result[i];
            }
            m->batch_result[1].status = KEEL__TASK_STATUS__STATUS_FAILED;
            m->batch_result[1].has_output = false;
            m->batch_result[1].error = "exit code 3";
            m->result_batch.n_results = 3, m->result_batch.results = m->batch_result_p;
            env->result_batch = &m->result_batch;
            break;
        case KEEL__ENVELOPE__BODY_RESULT:
            s_build_result (&m->result, 1, 77);
            env->result = &m->result;
            break;
        case KEEL__ENVELOPE__BODY_CHECKPOINT:
            keel__checkpoint__init (&m->checkpoint);
            m->checkpoint.service_id = S_SERVICE;
            m->checkpoint.has_task_id = true, m->checkpoint.task_id = 1;
            m->checkpoint.has_execution_id = true, m->checkpoint.execution_id = 77;
            m->checkpoint.has_data = true;
            m->checkpoint.data.data = (uint8_t *) "memory", m->checkpoint.data.len = 6;
            env->checkpoint = &m->checkpoint;
            break;
        case KEEL__ENVELOPE__BODY_CANCEL:
            keel__cancel__init (&m->cancel);
            m->ids[0] = 77;
            m->cancel.n_execution_ids = 1, m->cancel.execution_ids = m->ids;
            m->cancel.reason = "redundant execution lost";
            env->cancel = &m->cancel;
            break;
        case KEEL__ENVELOPE__BODY_LOGOFF:
            keel__logoff__init (&m->logoff);
            m->logoff.reason = "moving";
            env->logoff = &m->logoff;
            break;
        case KEEL__ENVELOPE__BODY_ADMIN_REQUEST:
            keel__admin_request__init (&m->admin_request);
            m->admin_request.command = "config";
            m->args[0] = "get", m->args[1] = "HeartbeatInterval";
            m->admin_request.n_args = 2, m->admin_request.args = m->args;
            env->admin_request = &m->admin_request;
            break;
        case KEEL__ENVELOPE__BODY_ADMIN_REPLY:
            keel__admin_reply__init (&m->admin_reply);
            m->admin_reply.has_ok = true, m->admin_reply.ok = true;
            m->admin_reply.json = "{\"engines\":2}";
            m->admin_reply.text = "engines:2\n";
            env->admin_reply = &m->admin_reply;
            break;
        default:
            cr_assert_fail ("no builder for body %d", (int) body);
    }
    return env;
}

// Encodes env and decodes the frame; returns what decode returned.
static keel_env_t *
s_reencode (keel_env_t *env, keel_error_t *err)
{
    zframe_t *frame = keel_wire_encode (env);
    cr_assert_not_null (frame);
    keel_env_t *decoded = keel_wire_decode (zframe_data (frame), zframe_size (frame), err);
    zframe_destroy (&frame);
    return decoded;
}

// Asserts that env, encoded and decoded, is rejected with a reason containing
// the given text.
static void
s_expect_rejected (keel_env_t *env, const char *reason)
{
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (env, &err);
    cr_assert_null (decoded, "accepted a message that should fail with '%s'", reason);
    cr_assert (strstr (err.text, reason), "reason '%s' does not contain '%s'", err.text, reason);
}

static void
s_expect_bytes_rejected (const uint8_t *data, size_t size, const char *reason)
{
    keel_error_t err = { "" };
    keel_env_t *decoded = keel_wire_decode (data, size, &err);
    cr_assert_null (decoded, "accepted %zu bytes that should fail with '%s'", size, reason);
    cr_assert (strstr (err.text, reason), "reason '%s' does not contain '%s'", err.text, reason);
}

// ---------------------------------------------------------------- round trips

Test (wire, round_trips_every_message_type_byte_for_byte)
{
    for (size_t i = 0; i < S_KINDS; i++) {
        s_msg_t m;
        keel_env_t *env = s_build (&m, s_kinds[i].body, s_kinds[i].sender);
        cr_assert_eq (keel_wire_validate (env, NULL), KEEL_OK, "%s", s_kinds[i].name);
        zframe_t *frame = keel_wire_encode (env);
        keel_error_t err = { "" };
        keel_env_t *decoded = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
        cr_assert_not_null (decoded, "%s: %s", s_kinds[i].name, err.text);
        cr_assert_eq (decoded->body_case, s_kinds[i].body);
        cr_assert_eq (decoded->sender, s_kinds[i].sender);
        cr_assert_eq (decoded->seq, 9);
        cr_assert_str_eq (keel_wire_body_name (decoded), s_kinds[i].name);
        zframe_t *again = keel_wire_encode (decoded);
        cr_assert (zframe_eq (frame, again), "%s does not re-encode to the same bytes",
                   s_kinds[i].name);
        zframe_destroy (&again);
        zframe_destroy (&frame);
        keel_wire_free (&decoded);
        cr_assert_null (decoded);
    }
}

Test (wire, round_trip_keeps_the_fields_of_a_login_with_held_tasks)
{
    s_msg_t m;
    keel_error_t err = { "" };
    keel_env_t *env = s_reencode (
        s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE), &err);
    cr_assert_not_null (env, "%s", err.text);
    Keel__EngineLogin *login = env->engine_login;
    cr_assert_str_eq (login->engine_id, S_ENGINE);
    cr_assert_eq (login->slots, 4);
    cr_assert_eq (login->n_service_types, 2);
    cr_assert_str_eq (login->service_types[1], "render.v2");
    cr_assert_eq (login->n_held, 2);
    cr_assert_eq (login->held[1]->state, KEEL__HELD_STATE__HELD_DONE);
    cr_assert_eq (login->held[1]->result->execution_id, 21);
    cr_assert_eq (login->held[1]->result->output.len, 2);
    keel_wire_free (&env);
}

Test (wire, encode_fills_in_version_and_sender_presence)
{
    Keel__Logoff logoff = KEEL__LOGOFF__INIT;
    keel_env_t env = KEEL__ENVELOPE__INIT;
    env.sender = KEEL__SENDER_KIND__SENDER_ENGINE;
    env.body_case = KEEL__ENVELOPE__BODY_LOGOFF;
    env.logoff = &logoff;
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (&env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    cr_assert_eq (decoded->version, KEEL_PROTOCOL_VERSION);
    keel_wire_free (&decoded);
    keel_wire_free (&decoded);
}

Test (wire, names_bodies_and_says_none_without_one)
{
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    cr_assert_str_eq (keel_wire_body_name (&env), "none");
    cr_assert_str_eq (keel_wire_body_name (NULL), "none");
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_TASKS;
    cr_assert_str_eq (keel_wire_body_name (&env), "submit_tasks");
}

// ---------------------------------------------------------------- rejections

Test (wire, rejects_garbage_bytes)
{
    const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34 };
    s_expect_bytes_rejected (garbage, sizeof garbage, "not a valid protobuf message");
    s_expect_bytes_rejected ((const uint8_t *) "", 0, "envelope: missing version");
    s_expect_bytes_rejected (NULL, 0, "envelope: missing version");
}

Test (wire, rejects_every_truncation_of_real_messages)
{
    const Keel__Envelope__BodyCase bodies[] = { KEEL__ENVELOPE__BODY_SUBMIT_TASKS,
                                                KEEL__ENVELOPE__BODY_ENGINE_LOGIN,
                                                KEEL__ENVELOPE__BODY_TASK_RESULTS,
                                                KEEL__ENVELOPE__BODY_LOGIN_REPLY };
    const Keel__SenderKind senders[] = { KEEL__SENDER_KIND__SENDER_DRIVER,
                                         KEEL__SENDER_KIND__SENDER_ENGINE,
                                         KEEL__SENDER_KIND__SENDER_BROKER,
                                         KEEL__SENDER_KIND__SENDER_BROKER };
    for (size_t b = 0; b < 4; b++) {
        s_msg_t m;
        zframe_t *frame = keel_wire_encode (s_build (&m, bodies[b], senders[b]));
        for (size_t size = 0; size < zframe_size (frame); size++) {
            keel_error_t err = { "" };
            keel_env_t *env = keel_wire_decode (zframe_data (frame), size, &err);
            cr_assert_null (env, "a %zu-byte prefix of %zu was accepted", size,
                            zframe_size (frame));
            cr_assert (err.text[0], "no reason for a %zu-byte prefix", size);
        }
        zframe_destroy (&frame);
    }
}

Test (wire, rejects_a_wrong_or_missing_version)
{
    s_msg_t m;
    keel_env_t *env = s_build (&m, KEEL__ENVELOPE__BODY_LOGOFF, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->version = 2;
    s_expect_rejected (env, "envelope: version 2, expected 1");
    // A locally built envelope without the has_ flag is refused too.
    env->version = 1;
    env->has_version = false;
    keel_error_t err = { "" };
    cr_assert_eq (keel_wire_validate (env, &err), KEEL_ERR_INVALID);
    cr_assert_str_eq (err.text, "envelope: missing version");
}

Test (wire, rejects_a_message_without_a_body)
{
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    s_expect_rejected (&env, "envelope: no body");
}

Test (wire, rejects_a_body_from_the_wrong_sender_kind)
{
    s_msg_t m;
    s_expect_rejected (
        s_build (&m, KEEL__ENVELOPE__BODY_SUBMIT_TASKS, KEEL__SENDER_KIND__SENDER_ENGINE),
        "submit_tasks: not allowed from an engine");
    s_expect_rejected (s_build (&m, KEEL__ENVELOPE__BODY_RESULT, KEEL__SENDER_KIND__SENDER_DRIVER),
                       "result: not allowed from a driver");
    s_expect_rejected (s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN, KEEL__SENDER_KIND__SENDER_ENGINE),
                       "assign: not allowed from an engine");
    s_expect_rejected (
        s_build (&m, KEEL__ENVELOPE__BODY_HEARTBEAT, KEEL__SENDER_KIND__SENDER_ADMIN),
        "heartbeat: not allowed from an admin");
    s_expect_rejected (
        s_build (&m, KEEL__ENVELOPE__BODY_ADMIN_REQUEST, KEEL__SENDER_KIND__SENDER_BROKER),
        "admin_request: not allowed from a broker");
    s_expect_rejected (
        s_build (&m, KEEL__ENVELOPE__BODY_RESULT_ACK, KEEL__SENDER_KIND__SENDER_ENGINE),
        "result_ack: not allowed from an engine");
}

Test (wire, rejects_a_result_ack_with_the_other_sides_ids)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_RESULT_ACK, KEEL__SENDER_KIND__SENDER_DRIVER);
    env->sender = KEEL__SENDER_KIND__SENDER_BROKER;
    s_expect_rejected (env, "result_ack: service_id, task_ids: not allowed from a broker");
    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT_ACK, KEEL__SENDER_KIND__SENDER_BROKER);
    env->sender = KEEL__SENDER_KIND__SENDER_DRIVER;
    s_expect_rejected (env, "result_ack: execution_ids: not allowed from a driver");
    env->result_ack->n_execution_ids = 0;
    s_expect_rejected (env, "result_ack: missing service_id");
}

Test (wire, rejects_bad_ids)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_DRIVER_HELLO, KEEL__SENDER_KIND__SENDER_DRIVER);
    env->driver_hello->driver_id = "";
    s_expect_rejected (env, "driver_hello: driver_id: bad id (empty)");
    char longest[KEEL_ID_MAX + 2];
    memset (longest, 'a', sizeof longest);
    longest[KEEL_ID_MAX] = 0;
    env->driver_hello->driver_id = longest;
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "a %d-character id was refused: %s", KEEL_ID_MAX, err.text);
    keel_wire_free (&decoded);
    longest[KEEL_ID_MAX] = 'a';
    longest[KEEL_ID_MAX + 1] = 0;
    s_expect_rejected (env, "driver_hello: driver_id: bad id (too long)");
    env->driver_hello->driver_id = "driver 1";
    s_expect_rejected (env, "driver_hello: driver_id: bad id (bad character)");
    env->driver_hello->driver_id = "d/1";
    s_expect_rejected (env, "driver_hello: driver_id: bad id (bad character)");
    env->driver_hello->driver_id = NULL;
    s_expect_rejected (env, "driver_hello: missing driver_id");
    env->driver_hello->driver_id = S_DRIVER;
    env->driver_hello->services[1] = "caf\xc3\xa9";
    s_expect_rejected (env, "driver_hello: services[1]: bad id (bad character)");

    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->engine_login->held[1]->result->service_id = "x y";
    s_expect_rejected (env, "engine_login: held[1]: result: service_id: bad id (bad character)");
    env = s_build (&m, KEEL__ENVELOPE__BODY_LOGIN_REPLY, KEEL__SENDER_KIND__SENDER_BROKER);
    env->login_reply->verdicts[0]->service_id = "";
    s_expect_rejected (env, "login_reply: verdicts[0]: service_id: bad id (empty)");
    env = s_build (&m, KEEL__ENVELOPE__BODY_NOTICE, KEEL__SENDER_KIND__SENDER_BROKER);
    env->notice->service_id = "a;b";
    s_expect_rejected (env, "notice: service_id: bad id (bad character)");
}

Test (wire, rejects_an_id_with_an_embedded_nul)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_DRIVER_HELLO, KEEL__SENDER_KIND__SENDER_DRIVER);
    env->driver_hello->driver_id = "abcXdef";
    zframe_t *frame = keel_wire_encode (env);
    uint8_t *x = memmem (zframe_data (frame), zframe_size (frame), "abcXdef", 7);
    cr_assert_not_null (x);
    x[3] = 0;
    s_expect_bytes_rejected (zframe_data (frame), zframe_size (frame),
                             "DriverHello.driver_id: embedded NUL");
    zframe_destroy (&frame);
}

Test (wire, checks_ids_and_type_names_by_their_own_rules)
{
    cr_assert (keel_id_valid ("engine:7_a.b-c"));
    cr_assert_not (keel_id_valid (NULL));
    cr_assert_not (keel_id_valid (""));
    cr_assert_not (keel_type_name_valid ("engine:7"));
    cr_assert (keel_type_name_valid ("render.v2_x-y"));
    cr_assert_not (keel_type_name_valid (NULL));
    cr_assert_not (keel_type_name_valid ("a b"));
    char name[KEEL_TYPE_MAX + 2];
    memset (name, 'x', sizeof name);
    name[KEEL_TYPE_MAX] = 0;
    cr_assert (keel_type_name_valid (name));
    name[KEEL_TYPE_MAX] = 'x', name[KEEL_TYPE_MAX + 1] = 0;
    cr_assert_not (keel_type_name_valid (name));
}

Test (wire, checks_every_byte_of_a_name_against_its_character_set)
{
    // Ids take [A-Za-z0-9_.-] and ':', type names the same without ':';
    // every byte value in every position of a name, the first and the last
    // included (the length rules: rejects_bad_ids and the test above).
    char name[8];
    for (int c = 1; c < 256; c++) {
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                     || c == '_' || c == '.' || c == '-';
        for (size_t at = 0; at + 1 < sizeof name; at++) {
            memset (name, 'k', sizeof name - 1);
            name[sizeof name - 1] = 0;
            name[at] = (char) c;
            cr_assert_eq (keel_id_valid (name), plain || c == ':', "id byte 0x%02x at %zu", c, at);
            cr_assert_eq (keel_type_name_valid (name), plain, "type byte 0x%02x at %zu", c, at);
        }
    }
}

Test (wire, rejects_bad_service_type_names)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_SUBMIT_SERVICE, KEEL__SENDER_KIND__SENDER_DRIVER);
    env->submit_service->type = "my:type";
    s_expect_rejected (env, "submit_service: type: bad service type (bad character)");
    env->submit_service->type = "";
    s_expect_rejected (env, "submit_service: type: bad service type (empty)");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->engine_login->service_types[1] = "render v2";
    s_expect_rejected (env, "engine_login: service_types[1]: bad service type (bad character)");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN, KEEL__SENDER_KIND__SENDER_BROKER);
    env->assign->type = NULL;
    s_expect_rejected (env, "assign: missing type");
}

Test (wire, rejects_oversized_text_and_accepts_the_largest_allowed)
{
    static char text[KEEL_TEXT_MAX + 2];
    memset (text, 't', KEEL_TEXT_MAX);
    text[KEEL_TEXT_MAX] = 0;
    s_msg_t m;
    keel_env_t *env = s_build (&m, KEEL__ENVELOPE__BODY_NOTICE, KEEL__SENDER_KIND__SENDER_BROKER);
    env->notice->text = text;
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    keel_wire_free (&decoded);
    text[KEEL_TEXT_MAX] = 't';
    s_expect_rejected (env, "notice: text: longer than 4096 bytes");
    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->result->error = text;
    s_expect_rejected (env, "result: error: longer than 4096 bytes");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ADMIN_REQUEST, KEEL__SENDER_KIND__SENDER_ADMIN);
    env->admin_request->args[1] = text;
    s_expect_rejected (env, "admin_request: args[1]: longer than 4096 bytes");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->engine_login->host = text;
    s_expect_rejected (env, "engine_login: host: longer than 4096 bytes");
}

Test (wire, rejects_too_many_list_entries)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_ADMIN_REQUEST, KEEL__SENDER_KIND__SENDER_ADMIN);
    char *args[17];
    for (int i = 0; i < 17; i++)
        args[i] = "x";
    env->admin_request->args = args;
    env->admin_request->n_args = 17;
    s_expect_rejected (env, "admin_request: args: more than 16 entries");

    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    char *types[257];
    for (int i = 0; i < 257; i++)
        types[i] = "double";
    env->engine_login->service_types = types;
    env->engine_login->n_service_types = 257;
    s_expect_rejected (env, "engine_login: service_types: more than 256 entries");
    env->engine_login->n_service_types = 0;
    s_expect_rejected (env, "engine_login: service_types: needs at least 1 entries");

    env = s_build (&m, KEEL__ENVELOPE__BODY_ACCEPTED, KEEL__SENDER_KIND__SENDER_BROKER);
    uint64_t *ids = calloc (KEEL_LIST_MAX + 1, sizeof *ids);
    env->accepted->task_ids = ids;
    env->accepted->n_task_ids = KEEL_LIST_MAX;
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    keel_wire_free (&decoded);
    env->accepted->n_task_ids = KEEL_LIST_MAX + 1;
    s_expect_rejected (env, "accepted: task_ids: more than 100000 entries");
    free (ids);
}

Test (wire, rejects_missing_required_fields_naming_the_field)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_SUBMIT_TASKS, KEEL__SENDER_KIND__SENDER_DRIVER);
    env->submit_tasks->tasks[3]->has_task_id = false;
    s_expect_rejected (env, "submit_tasks: tasks[3]: missing task_id");
    env->submit_tasks->n_tasks = 0;
    s_expect_rejected (env, "submit_tasks: tasks: needs at least 1 entries");
    env->submit_tasks->service_id = NULL;
    s_expect_rejected (env, "submit_tasks: missing service_id");

    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->result->has_execution_id = false;
    s_expect_rejected (env, "result: missing execution_id");
    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->result->has_status = false;
    s_expect_rejected (env, "result: missing status");
    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->result->status = KEEL__TASK_STATUS__STATUS_CANCELLED;
    s_expect_rejected (env, "result: status: value 3 out of range");

    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->engine_login->slots = 0;
    s_expect_rejected (env, "engine_login: slots: 0 not in 1..4096");
    env->engine_login->slots = 4097;
    s_expect_rejected (env, "engine_login: slots: 4097 not in 1..4096");
    env->engine_login->has_slots = false;
    s_expect_rejected (env, "engine_login: missing slots");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->engine_login->session = NULL;
    s_expect_rejected (env, "engine_login: missing session");

    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->engine_login->held[0]->has_execution_id = false;
    s_expect_rejected (env, "engine_login: held[0]: missing execution_id");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->engine_login->held[1]->result = NULL;
    s_expect_rejected (env, "engine_login: held[1]: missing result (state DONE)");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->engine_login->held[1]->result->execution_id = 99;
    s_expect_rejected (env, "engine_login: held[1]: result: ids differ from the held task's");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->engine_login->held[0]->result = env->engine_login->held[1]->result;
    s_expect_rejected (env, "engine_login: held[0]: result: not allowed on a running task");

    env = s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN, KEEL__SENDER_KIND__SENDER_BROKER);
    env->assign->has_task_id = false;
    s_expect_rejected (env, "assign: missing task_id");
    env = s_build (&m, KEEL__ENVELOPE__BODY_CHECKPOINT, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->checkpoint->has_execution_id = false;
    s_expect_rejected (env, "checkpoint: missing execution_id");

    env = s_build (&m, KEEL__ENVELOPE__BODY_LOGIN_REPLY, KEEL__SENDER_KIND__SENDER_BROKER);
    env->login_reply->heartbeat_ms = 5;
    s_expect_rejected (env, "login_reply: heartbeat_ms: below 10");
    env->login_reply->heartbeat_ms = 10;
    env->login_reply->engine_timeout_ms = 0;
    s_expect_rejected (env, "login_reply: engine_timeout_ms: zero");
    env->login_reply->has_engine_timeout_ms = false;
    s_expect_rejected (env, "login_reply: missing engine_timeout_ms");
    env->login_reply->ok = false;
    env->login_reply->error = "engine id taken";
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "a refusing login reply was rejected: %s", err.text);
    keel_wire_free (&decoded);

    env = s_build (&m, KEEL__ENVELOPE__BODY_DRIVER_WELCOME, KEEL__SENDER_KIND__SENDER_BROKER);
    env->driver_welcome->has_heartbeat_ms = false;
    s_expect_rejected (env, "driver_welcome: missing heartbeat_ms");
    env = s_build (&m, KEEL__ENVELOPE__BODY_TASK_RESULTS, KEEL__SENDER_KIND__SENDER_BROKER);
    env->task_results->results[1]->has_task_id = false;
    s_expect_rejected (env, "task_results: results[1]: missing task_id");
    env = s_build (&m, KEEL__ENVELOPE__BODY_REFUSED, KEEL__SENDER_KIND__SENDER_BROKER);
    env->refused->has_code = false;
    s_expect_rejected (env, "refused: missing code");
    env = s_build (&m, KEEL__ENVELOPE__BODY_CANCEL, KEEL__SENDER_KIND__SENDER_BROKER);
    env->cancel->n_execution_ids = 0;
    s_expect_rejected (env, "cancel: execution_ids: needs at least 1 entries");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ADMIN_REQUEST, KEEL__SENDER_KIND__SENDER_ADMIN);
    env->admin_request->command = "";
    s_expect_rejected (env, "admin_request: command: empty");
    env = s_build (&m, KEEL__ENVELOPE__BODY_DETACH, KEEL__SENDER_KIND__SENDER_DRIVER);
    env->detach->n_service_ids = 0;
    s_expect_rejected (env, "detach: service_ids: needs at least 1 entries");
}

Test (wire, rejects_enum_values_outside_the_enum)
{
    s_msg_t m;
    keel_env_t *env = s_build (&m, KEEL__ENVELOPE__BODY_LOGOFF, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->sender = (Keel__SenderKind) 9;
    s_expect_rejected (env, "envelope: sender: value 9 out of range");
    env->sender = (Keel__SenderKind) -1;
    s_expect_rejected (env, "envelope: sender: value -1 out of range");
    env->sender = KEEL__SENDER_KIND__SENDER_UNKNOWN;
    env->has_sender = true;
    s_expect_rejected (env, "envelope: sender: value 0 out of range");

    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->result->status = (Keel__TaskStatus) 7;
    s_expect_rejected (env, "result: status: value 7 out of range");
    env = s_build (&m, KEEL__ENVELOPE__BODY_REFUSED, KEEL__SENDER_KIND__SENDER_BROKER);
    env->refused->code = (Keel__RefuseCode) 5;
    s_expect_rejected (env, "refused: code: value 5 out of range");
    env->refused->code = KEEL__REFUSE_CODE__REFUSE_UNKNOWN;
    s_expect_rejected (env, "refused: code: value 0 out of range");
    env = s_build (&m, KEEL__ENVELOPE__BODY_LOGIN_REPLY, KEEL__SENDER_KIND__SENDER_BROKER);
    env->login_reply->verdicts[0]->verdict = (Keel__Verdict) 3;
    s_expect_rejected (env, "login_reply: verdicts[0]: verdict: value 3 out of range");
    env = s_build (&m, KEEL__ENVELOPE__BODY_NOTICE, KEEL__SENDER_KIND__SENDER_BROKER);
    env->notice->level = (Keel__NoticeLevel) -5;
    s_expect_rejected (env, "notice: level: value -5 out of range");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->engine_login->held[0]->has_state = true;
    env->engine_login->held[0]->state = (Keel__HeldState) 2;
    s_expect_rejected (env, "engine_login: held[0]: state: value 2 out of range");
    env = s_build (&m, KEEL__ENVELOPE__BODY_TASK_RESULTS, KEEL__SENDER_KIND__SENDER_BROKER);
    env->task_results->results[0]->status = KEEL__TASK_STATUS__STATUS_UNKNOWN;
    s_expect_rejected (env, "task_results: results[0]: status: value 0 out of range");
}

Test (wire, accepts_permanent_only_on_a_failed_result)
{
    s_msg_t m;
    keel_env_t *env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->result->has_permanent = true;
    env->result->permanent = true;
    s_expect_rejected (env, "result: permanent: only on a FAILED result");
    env->result->permanent = false; // false on an OK result says nothing: accepted
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    keel_wire_free (&decoded);

    env->result->status = KEEL__TASK_STATUS__STATUS_FAILED;
    env->result->has_output = false;
    env->result->error = "exit status 127: sh: 1: nosuch: not found";
    env->result->permanent = true;
    decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    cr_assert (decoded->result->has_permanent && decoded->result->permanent);
    keel_wire_free (&decoded);

    //  Inside a held task too (the same check).
    env = s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    m.held_result.has_permanent = true;
    m.held_result.permanent = true;
    s_expect_rejected (env, "permanent: only on a FAILED result");
}

// ---------------------------------------------------------------- batches

Test (wire, round_trips_batches_keeping_every_element_in_order)
{
    s_msg_t m;
    keel_error_t err = { "" };
    keel_env_t *env = s_reencode (
        s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN_BATCH, KEEL__SENDER_KIND__SENDER_BROKER), &err);
    cr_assert_not_null (env, "%s", err.text);
    Keel__AssignBatch *ab = env->assign_batch;
    cr_assert_eq (ab->n_assigns, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_str_eq (ab->assigns[i]->service_id, S_SERVICE);
        cr_assert_eq (ab->assigns[i]->task_id, 1 + i);
        cr_assert_eq (ab->assigns[i]->execution_id, 77 + i);
        cr_assert_eq (ab->assigns[i]->input.len, 2);
    }
    cr_assert (ab->assigns[0]->has_init_data && ab->assigns[0]->init_data.len == 5);
    cr_assert (!ab->assigns[1]->has_init_data);
    cr_assert (ab->assigns[2]->has_memory && ab->assigns[2]->memory.len == 6);
    keel_wire_free (&env);

    env = s_reencode (
        s_build (&m, KEEL__ENVELOPE__BODY_RESULT_BATCH, KEEL__SENDER_KIND__SENDER_ENGINE), &err);
    cr_assert_not_null (env, "%s", err.text);
    Keel__ResultBatch *rb = env->result_batch;
    cr_assert_eq (rb->n_results, 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq (rb->results[i]->execution_id, 77 + i);
    cr_assert_eq (rb->results[0]->status, KEEL__TASK_STATUS__STATUS_OK);
    cr_assert_eq (rb->results[1]->status, KEEL__TASK_STATUS__STATUS_FAILED);
    cr_assert_str_eq (rb->results[1]->error, "exit code 3");
    cr_assert_eq (rb->results[2]->output.len, 2);
    keel_wire_free (&env);
}

Test (wire, rejects_an_empty_batch)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN_BATCH, KEEL__SENDER_KIND__SENDER_BROKER);
    env->assign_batch->n_assigns = 0;
    s_expect_rejected (env, "assign_batch: assigns: empty batch");
    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT_BATCH, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->result_batch->n_results = 0;
    s_expect_rejected (env, "result_batch: results: empty batch");
}

// One bad element refuses the whole batch, and the reason names it.
Test (wire, rejects_a_batch_with_one_bad_element_naming_its_index)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN_BATCH, KEEL__SENDER_KIND__SENDER_BROKER);
    env->assign_batch->assigns[1]->has_task_id = false;
    s_expect_rejected (env, "assign_batch: assigns[1]: missing task_id");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN_BATCH, KEEL__SENDER_KIND__SENDER_BROKER);
    env->assign_batch->assigns[2]->type = "no spaces";
    s_expect_rejected (env, "assign_batch: assigns[2]: type: bad service type (bad character)");
    env = s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN_BATCH, KEEL__SENDER_KIND__SENDER_BROKER);
    env->assign_batch->assigns[0]->service_id = "";
    s_expect_rejected (env, "assign_batch: assigns[0]: service_id: bad id (empty)");

    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT_BATCH, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->result_batch->results[2]->status = KEEL__TASK_STATUS__STATUS_CANCELLED;
    s_expect_rejected (env, "result_batch: results[2]: status: value 3 out of range");
    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT_BATCH, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->result_batch->results[1]->has_execution_id = false;
    s_expect_rejected (env, "result_batch: results[1]: missing execution_id");

    // A locally built batch with a hole is refused, not followed.
    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT_BATCH, KEEL__SENDER_KIND__SENDER_ENGINE);
    env->result_batch->results[1] = NULL;
    keel_error_t err = { "" };
    cr_assert_eq (keel_wire_validate (env, &err), KEEL_ERR_INVALID);
    cr_assert_str_eq (err.text, "result_batch: results[1]: missing");
}

Test (wire, rejects_a_batch_from_the_wrong_sender)
{
    s_msg_t m;
    s_expect_rejected (
        s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN_BATCH, KEEL__SENDER_KIND__SENDER_ENGINE),
        "assign_batch: not allowed from an engine");
    s_expect_rejected (
        s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN_BATCH, KEEL__SENDER_KIND__SENDER_DRIVER),
        "assign_batch: not allowed from a driver");
    s_expect_rejected (
        s_build (&m, KEEL__ENVELOPE__BODY_RESULT_BATCH, KEEL__SENDER_KIND__SENDER_BROKER),
        "result_batch: not allowed from a broker");
    s_expect_rejected (
        s_build (&m, KEEL__ENVELOPE__BODY_RESULT_BATCH, KEEL__SENDER_KIND__SENDER_DRIVER),
        "result_batch: not allowed from a driver");
}

// The largest batch decodes under the allocation cap; one more is refused
// with the count in the reason.
Test (wire, accepts_the_largest_batch_and_refuses_one_more)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_ASSIGN_BATCH, KEEL__SENDER_KIND__SENDER_BROKER);
    Keel__Assign *items = calloc (KEEL_BATCH_MAX + 1, sizeof *items);
    Keel__Assign **ptrs = calloc (KEEL_BATCH_MAX + 1, sizeof *ptrs);
    cr_assert (items && ptrs);
    for (size_t i = 0; i <= KEEL_BATCH_MAX; i++) {
        s_build_assign (&items[i], i, 1000 + i);
        ptrs[i] = &items[i];
    }
    env->assign_batch->assigns = ptrs;
    env->assign_batch->n_assigns = KEEL_BATCH_MAX;
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    cr_assert_eq (decoded->assign_batch->n_assigns, KEEL_BATCH_MAX);
    cr_assert_eq (decoded->assign_batch->assigns[KEEL_BATCH_MAX - 1]->execution_id,
                  1000 + KEEL_BATCH_MAX - 1);
    keel_wire_free (&decoded);
    env->assign_batch->n_assigns = KEEL_BATCH_MAX + 1;
    s_expect_rejected (env, "assign_batch: assigns: 4097 entries, more than 4096 in one batch");

    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT_BATCH, KEEL__SENDER_KIND__SENDER_ENGINE);
    Keel__Result *results = calloc (KEEL_BATCH_MAX + 1, sizeof *results);
    Keel__Result **rptrs = calloc (KEEL_BATCH_MAX + 1, sizeof *rptrs);
    cr_assert (results && rptrs);
    for (size_t i = 0; i <= KEEL_BATCH_MAX; i++) {
        s_build_result (&results[i], i, 1000 + i);
        rptrs[i] = &results[i];
    }
    env->result_batch->results = rptrs;
    env->result_batch->n_results = KEEL_BATCH_MAX;
    decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    keel_wire_free (&decoded);
    env->result_batch->n_results = KEEL_BATCH_MAX + 1;
    s_expect_rejected (env, "result_batch: results: 4097 entries, more than 4096 in one batch");
    free (items);
    free (ptrs);
    free (results);
    free (rptrs);
}

Test (wire, validates_locally_built_envelopes_without_crashing)
{
    keel_error_t err = { "" };
    cr_assert_eq (keel_wire_validate (NULL, &err), KEEL_ERR_INVALID);
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_TASKS;
    cr_assert_eq (keel_wire_validate (&env, &err), KEEL_ERR_INVALID);
    cr_assert_str_eq (err.text, "envelope: bad body 23");
    env.body_case = (Keel__Envelope__BodyCase) 99;
    cr_assert_eq (keel_wire_validate (&env, NULL), KEEL_ERR_INVALID);
}

// ---------------------------------------------------------------- hostile frames

static size_t
s_put_varint (uint8_t *out, uint64_t value)
{
    size_t n = 0;
    while (value >= 0x80) {
        out[n++] = (uint8_t) (value | 0x80);
        value >>= 7;
    }
    out[n++] = (uint8_t) value;
    return n;
}

Test (wire, refuses_a_memory_amplification_frame_at_the_allocation_cap)
{
    // Envelope{version 1, sender broker, task_results{results: N empty}}:
    // 2 bytes per result on the wire, well over 100 bytes each unpacked.
    const size_t count = 90000;
    size_t body = 2 * count;
    uint8_t *frame = malloc (body + 32);
    size_t size = 0;
    frame[size++] = 0x08, frame[size++] = 1;            // version
    frame[size++] = 0x10, frame[size++] = 4;            // sender
    size += s_put_varint (frame + size, (26 << 3) | 2); // task_results
    size += s_put_varint (frame + size, body);
    for (size_t i = 0; i < count; i++)
        frame[size++] = 0x0a, frame[size++] = 0;
    struct rusage before, after;
    getrusage (RUSAGE_SELF, &before);
    s_expect_bytes_rejected (frame, size, "message too large to decode");
    getrusage (RUSAGE_SELF, &after);
    free (frame);
    // Unpacked whole it would take over 12 MiB; the cap stops it near 3 MiB.
    // (AddressSanitizer's redzones and quarantine make RSS meaningless.)
    long grown_kib = after.ru_maxrss - before.ru_maxrss;
    cr_log_info ("peak RSS grew by %ld KiB decoding a %zu-byte frame", grown_kib, size);
#ifndef __SANITIZE_ADDRESS__
    cr_assert_lt (grown_kib, 8 * 1024);
#endif
}

Test (wire, decodes_a_full_batch_of_small_tasks_under_the_allocation_cap)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_SUBMIT_TASKS, KEEL__SENDER_KIND__SENDER_DRIVER);
    Keel__TaskInput *tasks = calloc (KEEL_LIST_MAX, sizeof *tasks);
    Keel__TaskInput **task_p = calloc (KEEL_LIST_MAX, sizeof *task_p);
    for (size_t i = 0; i < KEEL_LIST_MAX; i++) {
        keel__task_input__init (&tasks[i]);
        tasks[i].has_task_id = true, tasks[i].task_id = i;
        tasks[i].has_input = true; // empty input
        task_p[i] = &tasks[i];
    }
    env->submit_tasks->tasks = task_p;
    env->submit_tasks->n_tasks = KEEL_LIST_MAX;
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    cr_assert_eq (decoded->submit_tasks->n_tasks, KEEL_LIST_MAX);
    keel_wire_free (&decoded);
    free (task_p);
    free (tasks);
}

// xorshift64*: the same frames on every run.
static uint64_t
s_random (uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1Dull;
}

// Checks every id-bearing string in a decoded message by name, walking the
// descriptors, independently of the validator's tables.
static bool
s_is_id_field (const char *name)
{
    size_t len = strlen (name);
    return (len > 3 && strcmp (name + len - 3, "_id") == 0) || strcmp (name, "session") == 0
           || strcmp (name, "services") == 0 || strcmp (name, "service_ids") == 0
           || strcmp (name, "unknown_services") == 0;
}

static void
s_assert_ids_valid (const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        const char *base = (const char *) msg;
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF
            && *(const uint32_t *) (base + f->quantifier_offset) != f->id)
            continue;
        size_t n = 1;
        const void *const *values = (const void *const *) (base + f->offset);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *) (base + f->quantifier_offset);
            values = *(const void *const *const *) (base + f->offset);
        }
        for (size_t j = 0; j < n; j++) {
            if (!values[j])
                continue;
            if (f->type == PROTOBUF_C_TYPE_STRING && s_is_id_field (f->name))
                cr_assert (keel_id_valid (values[j]), "%s.%s accepted with a bad id",
                           desc->short_name, f->name);
            if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                s_assert_ids_valid (values[j]);
        }
    }
}

Test (wire, survives_100000_random_and_mutated_frames)
{
    uint64_t state = 0x6b65656c77697265ull;
    uint8_t buf[512];
    zframe_t *seeds[S_KINDS];
    for (size_t i = 0; i < S_KINDS; i++) {
        s_msg_t m;
        seeds[i] = keel_wire_encode (s_build (&m, s_kinds[i].body, s_kinds[i].sender));
    }
    size_t accepted = 0;
    for (int round = 0; round < 100000; round++) {
        size_t size;
        if (round % 2) {
            // Pure noise, sometimes led by a plausible envelope header.
            size = s_random (&state) % sizeof buf;
            for (size_t i = 0; i < size; i++)
                buf[i] = (uint8_t) s_random (&state);
            if (size > 4 && round % 3 == 0)
                buf[0] = 0x08, buf[1] = 1, buf[2] = 0x10, buf[3] = (uint8_t) (round % 6);
        }
        else {
            // A real message with a few bytes changed, cut or repeated.
            zframe_t *seed = seeds[s_random (&state) % S_KINDS];
            size = zframe_size (seed);
            memcpy (buf, zframe_data (seed), size);
            int edits = 1 + (int) (s_random (&state) % 4);
            for (int e = 0; e < edits; e++) {
                size_t at = s_random (&state) % size;
                uint64_t r = s_random (&state);
                if (r % 5 == 0)
                    size = at + 1;
                else if (r % 5 == 1 && size < sizeof buf)
                    buf[size++] = buf[at];
                else
                    buf[at] = (uint8_t) (r >> 8);
            }
        }
        keel_error_t err = { "" };
        keel_env_t *env = keel_wire_decode (buf, size, &err);
        if (env) {
            accepted++;
            cr_assert_eq (keel_wire_validate (env, NULL), KEEL_OK);
            s_assert_ids_valid (&env->base);
            keel_wire_free (&env);
        }
        else
            cr_assert (err.text[0], "a refused frame came without a reason");
    }
    for (size_t i = 0; i < S_KINDS; i++)
        zframe_destroy (&seeds[i]);
    cr_log_info ("%zu of 100000 random frames were valid messages", accepted);
}

// ---------------------------------------------------------------- sockets

static void
s_endpoint (char *buf, size_t size, const char *name)
{
    snprintf (buf, size, "inproc://test-wire-%s-%d", name, (int) getpid ());
}

Test (wire, sends_between_a_dealer_and_a_router_and_decodes_both_ways)
{
    char endpoint[80];
    s_endpoint (endpoint, sizeof endpoint, "loop");
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_router_mandatory (router, 1);
    zsock_set_rcvtimeo (router, 2000);
    cr_assert_eq (zsock_bind (router, "%s", endpoint), 0);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_identity (dealer, "engine-1");
    zsock_set_rcvtimeo (dealer, 2000);
    cr_assert_eq (zsock_connect (dealer, "%s", endpoint), 0);

    s_msg_t m;
    cr_assert_eq (keel_wire_send (dealer, s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN,
                                                   KEEL__SENDER_KIND__SENDER_ENGINE)),
                  KEEL_OK);
    zmsg_t *msg = zmsg_recv (router);
    cr_assert_not_null (msg);
    cr_assert_eq (zmsg_size (msg), 2);
    zframe_t *identity = zmsg_pop (msg);
    zframe_t *payload = zmsg_pop (msg);
    keel_error_t err = { "" };
    keel_env_t *login = keel_wire_decode (zframe_data (payload), zframe_size (payload), &err);
    cr_assert_not_null (login, "%s", err.text);
    cr_assert_str_eq (login->engine_login->engine_id, S_ENGINE);
    keel_wire_free (&login);
    zframe_destroy (&payload);
    zmsg_destroy (&msg);

    // Unknown identity: refused at once, and nothing is left half sent.
    zframe_t *nobody = zframe_new ("nobody", 6);
    keel_env_t *reply =
        s_build (&m, KEEL__ENVELOPE__BODY_LOGIN_REPLY, KEEL__SENDER_KIND__SENDER_BROKER);
    int64_t start = zclock_mono ();
    errno = 0;
    cr_assert_eq (keel_wire_send_to (router, nobody, reply), KEEL_ERR_IO);
    cr_assert_eq (errno, EHOSTUNREACH);
    cr_assert_lt (zclock_mono () - start, 1000);
    zframe_destroy (&nobody);

    cr_assert_eq (keel_wire_send_to (router, identity, reply), KEEL_OK);
    zframe_t *frame = zframe_recv (dealer);
    cr_assert_not_null (frame);
    cr_assert_not (zframe_more (frame), "the reply came in more than one frame");
    keel_env_t *got = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
    cr_assert_not_null (got, "%s", err.text);
    cr_assert_eq (got->body_case, KEEL__ENVELOPE__BODY_LOGIN_REPLY);
    cr_assert_eq (got->login_reply->heartbeat_ms, 1000);
    keel_wire_free (&got);
    zframe_destroy (&frame);

    // send_frames consumes neither frame: the same payload goes out twice.
    zframe_t *encoded = keel_wire_encode (reply);
    cr_assert_eq (keel_wire_send_frames (router, identity, encoded), KEEL_OK);
    cr_assert_eq (keel_wire_send_frames (router, identity, encoded), KEEL_OK);
    for (int i = 0; i < 2; i++) {
        frame = zframe_recv (dealer);
        cr_assert_not_null (frame);
        cr_assert (zframe_eq (frame, encoded));
        zframe_destroy (&frame);
    }
    zframe_destroy (&encoded);
    zframe_destroy (&identity);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
}

Test (wire, send_to_an_unknown_identity_fails_without_blocking_over_tcp)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_router_mandatory (router, 1);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    cr_assert_gt (port, 0);
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_HEARTBEAT, KEEL__SENDER_KIND__SENDER_BROKER);
    zframe_t *ghost = zframe_new ("ghost", 5);
    for (int i = 0; i < 1000; i++) {
        errno = 0;
        cr_assert_eq (keel_wire_send_to (router, ghost, env), KEEL_ERR_IO);
        cr_assert_eq (errno, EHOSTUNREACH);
    }
    zframe_destroy (&ghost);

    // The router is still usable afterwards: a real peer gets one clean frame.
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_identity (dealer, "driver-1");
    zsock_set_rcvtimeo (dealer, 2000);
    zsock_set_rcvtimeo (router, 2000);
    cr_assert_eq (zsock_connect (dealer, "tcp://127.0.0.1:%d", port), 0);
    keel_env_t *hello =
        s_build (&m, KEEL__ENVELOPE__BODY_DRIVER_HELLO, KEEL__SENDER_KIND__SENDER_DRIVER);
    cr_assert_eq (keel_wire_send (dealer, hello), KEEL_OK);
    zmsg_t *msg = zmsg_recv (router);
    cr_assert_not_null (msg);
    zframe_t *identity = zmsg_pop (msg);
    zmsg_destroy (&msg);
    env = s_build (&m, KEEL__ENVELOPE__BODY_HEARTBEAT, KEEL__SENDER_KIND__SENDER_BROKER);
    cr_assert_eq (keel_wire_send_to (router, identity, env), KEEL_OK);
    zframe_t *frame = zframe_recv (dealer);
    cr_assert_not_null (frame);
    cr_assert_not (zframe_more (frame));
    keel_error_t err = { "" };
    keel_env_t *got = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
    cr_assert_not_null (got, "%s", err.text);
    keel_wire_free (&got);
    zframe_destroy (&frame);
    zframe_destroy (&identity);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
}

// ---------------------------------------------------------------- uuids

Test (wire, makes_canonical_lower_case_uuids_that_are_valid_ids)
{
    char a[37], b[37];
    keel_uuid_new (a);
    keel_uuid_new (b);
    cr_assert_eq (strlen (a), 36);
    cr_assert_str_neq (a, b);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            cr_assert_eq (a[i], '-');
        else
            cr_assert (strchr ("0123456789abcdef", a[i]), "'%c' in %s", a[i], a);
    }
    cr_assert_eq (a[14], '4');
    cr_assert (strchr ("89ab", a[19]));
    cr_assert (keel_id_valid (a));
}

// ---------------------------------------------------------------- results a driver holds (issue 10 item 11)

Test (wire, carries_the_results_a_driver_holds_in_its_hello_and_acks)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_DRIVER_HELLO, KEEL__SENDER_KIND__SENDER_DRIVER);
    uint64_t ranges[] = { 0, 1000000, 3, 7 }; // [0, 1000000) and [1000003, 1000010)
    Keel__DeliveredTasks d = KEEL__DELIVERED_TASKS__INIT;
    Keel__DeliveredTasks *dp[] = { &d };
    d.service_id = S_SERVICE;
    d.n_ranges = 4, d.ranges = ranges;
    env->driver_hello->n_delivered = 1, env->driver_hello->delivered = dp;
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    cr_assert_eq (decoded->driver_hello->n_delivered, 1);
    cr_assert_eq (decoded->driver_hello->delivered[0]->n_ranges, 4);
    cr_assert_eq (decoded->driver_hello->delivered[0]->ranges[1], 1000000);
    keel_wire_free (&decoded);

    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT_ACK, KEEL__SENDER_KIND__SENDER_DRIVER);
    env->result_ack->n_task_ids = 0;
    env->result_ack->n_delivered = 4, env->result_ack->delivered = ranges;
    decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "a ResultAck with ranges only: %s", err.text);
    keel_wire_free (&decoded);
    env->result_ack->n_delivered = 0;
    s_expect_rejected (env, "result_ack: task_ids, delivered: both empty");
}

Test (wire, rejects_hostile_ranges_of_results_held)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_DRIVER_HELLO, KEEL__SENDER_KIND__SENDER_DRIVER);
    Keel__DeliveredTasks d[2] = { KEEL__DELIVERED_TASKS__INIT, KEEL__DELIVERED_TASKS__INIT };
    Keel__DeliveredTasks *dp[] = { &d[0], &d[1] };
    d[0].service_id = S_SERVICE;
    d[1].service_id = "svc.2";
    env->driver_hello->n_delivered = 1, env->driver_hello->delivered = dp;

    uint64_t odd[] = { 0, 5, 9 };
    d[0].n_ranges = 3, d[0].ranges = odd;
    s_expect_rejected (env, "driver_hello: delivered[0].ranges[2]: odd number of entries");
    uint64_t empty[] = { 0, 5, 2, 0 };
    d[0].n_ranges = 4, d[0].ranges = empty;
    s_expect_rejected (env, "driver_hello: delivered[0].ranges[3]: empty range");
    uint64_t absurd[] = { 5, UINT64_MAX - 5, 1, 1 };
    d[0].n_ranges = 4, d[0].ranges = absurd;
    s_expect_rejected (
        env, "driver_hello: delivered[0].ranges[2]: range starts past the largest task id");
    uint64_t huge[] = { UINT64_MAX, 2 };
    d[0].n_ranges = 2, d[0].ranges = huge;
    s_expect_rejected (env,
                       "driver_hello: delivered[0].ranges[1]: range ends past the largest task id");

    size_t n = KEEL_LIST_MAX + 2;
    uint64_t *many = calloc (n, sizeof *many);
    cr_assert_not_null (many);
    for (size_t i = 0; i < n; i++)
        many[i] = 1;
    d[0].n_ranges = n, d[0].ranges = many;
    s_expect_rejected (env, "driver_hello: delivered[0].ranges: more than 100000 entries");
    free (many);

    uint64_t ok[] = { 0, 3 };
    d[0].n_ranges = 2, d[0].ranges = ok;
    d[1].n_ranges = 2, d[1].ranges = ok;
    d[1].service_id = S_SERVICE;
    env->driver_hello->n_delivered = 2;
    s_expect_rejected (env, "driver_hello: delivered: service " S_SERVICE " listed twice");
    d[1].service_id = "bad id!";
    s_expect_rejected (env, "driver_hello: delivered[1].service_id: bad id");
    d[1].service_id = NULL;
    s_expect_rejected (env, "driver_hello: missing delivered[1].service_id");

    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT_ACK, KEEL__SENDER_KIND__SENDER_DRIVER);
    env->result_ack->n_delivered = 4, env->result_ack->delivered = empty;
    s_expect_rejected (env, "result_ack: delivered[3]: empty range");
    env = s_build (&m, KEEL__ENVELOPE__BODY_RESULT_ACK, KEEL__SENDER_KIND__SENDER_BROKER);
    env->result_ack->n_delivered = 2, env->result_ack->delivered = ok;
    s_expect_rejected (env, "result_ack: delivered: not allowed from a broker");
}

// cluster_members (a shared store's members in DriverWelcome and
// LoginReply): at most KEEL_MEMBERS_MAX endpoints, none blank or over-long.
Test (wire, bounds_the_cluster_members_of_welcomes)
{
    s_msg_t m;
    char *members[KEEL_MEMBERS_MAX + 1];
    for (int i = 0; i <= KEEL_MEMBERS_MAX; i++)
        members[i] = "tcp://member:1";
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_DRIVER_WELCOME, KEEL__SENDER_KIND__SENDER_BROKER);
    env->driver_welcome->cluster_members = members;
    env->driver_welcome->n_cluster_members = KEEL_MEMBERS_MAX;
    cr_assert_eq (keel_wire_validate (env, NULL), KEEL_OK);
    env->driver_welcome->n_cluster_members = KEEL_MEMBERS_MAX + 1;
    s_expect_rejected (env, "cluster_members");
    env = s_build (&m, KEEL__ENVELOPE__BODY_LOGIN_REPLY, KEEL__SENDER_KIND__SENDER_BROKER);
    members[1] = "";
    env->login_reply->cluster_members = members;
    env->login_reply->n_cluster_members = 2;
    s_expect_rejected (env, "cluster_members[1]");
}

// An engine's properties and a service's condition: bounded here, the
// condition's grammar checked by the broker (a refusal names its column).
Test (wire, bounds_engine_properties_and_service_conditions)
{
    s_msg_t m;
    keel_env_t *env =
        s_build (&m, KEEL__ENVELOPE__BODY_ENGINE_LOGIN, KEEL__SENDER_KIND__SENDER_ENGINE);
    static Keel__EngineProperty props[KEEL_PROPERTIES_MAX + 1];
    static Keel__EngineProperty *ptrs[KEEL_PROPERTIES_MAX + 1];
    static char names[KEEL_PROPERTIES_MAX + 1][16];
    for (int i = 0; i <= KEEL_PROPERTIES_MAX; i++) {
        keel__engine_property__init (&props[i]);
        snprintf (names[i], sizeof names[i], "p%d", i);
        props[i].name = names[i];
        props[i].value = "v";
        ptrs[i] = &props[i];
    }
    env->engine_login->properties = ptrs;
    env->engine_login->n_properties = KEEL_PROPERTIES_MAX;
    keel_error_t err = { "" };
    keel_env_t *decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    cr_assert_eq (decoded->engine_login->n_properties, KEEL_PROPERTIES_MAX);
    cr_assert_str_eq (decoded->engine_login->properties[3]->name, "p3");
    keel_wire_free (&decoded);
    env->engine_login->n_properties = KEEL_PROPERTIES_MAX + 1;
    s_expect_rejected (env, "engine_login: properties: more than 64 entries");
    env->engine_login->n_properties = 2;
    props[1].name = "gpu-kind";
    s_expect_rejected (env, "engine_login: properties[1]: bad name");
    props[1].name = "p0";
    s_expect_rejected (env, "engine_login: properties[1]: 'p0' given twice");
    props[1].name = "p1";
    props[1].value = NULL;
    s_expect_rejected (env, "engine_login: properties[1]: missing value");
    static char value[KEEL_COND_VALUE_MAX + 2];
    memset (value, 'v', KEEL_COND_VALUE_MAX + 1);
    props[1].value = value;
    s_expect_rejected (env, "engine_login: properties[1] (p1): value longer than 256 bytes");

    env = s_build (&m, KEEL__ENVELOPE__BODY_SUBMIT_SERVICE, KEEL__SENDER_KIND__SENDER_DRIVER);
    static char cond[KEEL_COND_MAX_LEN + 2];
    memset (cond, '(', KEEL_COND_MAX_LEN);
    env->submit_service->condition = cond; // malformed, but within bounds: the broker refuses it
    decoded = s_reencode (env, &err);
    cr_assert_not_null (decoded, "%s", err.text);
    cr_assert_str_eq (decoded->submit_service->condition, cond);
    keel_wire_free (&decoded);
    cond[KEEL_COND_MAX_LEN] = '(';
    s_expect_rejected (env, "submit_service: condition: longer than 1024 bytes");
}
