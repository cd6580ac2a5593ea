/*  test_wire_build.c — the typed message builders.

    Each builder is checked twice: its frame is byte for byte the frame the
    senders built by hand before the builders existed (the reference below
    repeats that code), so the wire does not change with the code that
    builds a message; and the frame goes round the codec (encode, decode,
    validate) with every field it was given.
*/
#include <criterion/criterion.h>
#include <string.h>
#include "wire.h"

#define S_SERVICE "3f2a9c4e-0b1d-4e5f-8a7b-6c5d4e3f2a1b"
#define S_DRIVER  "d-1"
#define S_ENGINE  "engine:7"
#define S_BROKER  "broker-a"

static const uint8_t s_input[] = { 'i', 'n', 0, 1 };
static const uint8_t s_memory[] = { 'm', 'e', 'm' };
static const uint8_t s_init[] = { 'i', 'n', 'i', 't' };
static const uint8_t s_output[] = { 'o', 'u', 't', 0 };

// Encodes built and by_hand, asserts the frames are identical, and returns
// built decoded (validated by the decoder, and once more here). Free it
// with keel_wire_free.
static keel_env_t *
s_round_trip (keel_env_t *built, keel_env_t *by_hand)
{
    zframe_t *a = keel_wire_encode (built);
    zframe_t *b = keel_wire_encode (by_hand);
    cr_assert_not_null (a);
    cr_assert_not_null (b);
    cr_assert_eq (zframe_size (a), zframe_size (b), "%s: %zu bytes, by hand %zu",
                  keel_wire_body_name (built), zframe_size (a), zframe_size (b));
    cr_assert_eq (memcmp (zframe_data (a), zframe_data (b), zframe_size (a)), 0,
                  "%s: other bytes than by hand", keel_wire_body_name (built));
    keel_error_t err = { "" };
    keel_env_t *decoded = keel_wire_decode (zframe_data (a), zframe_size (a), &err);
    cr_assert_not_null (decoded, "%s: %s", keel_wire_body_name (built), err.text);
    cr_assert_eq (keel_wire_validate (decoded, &err), KEEL_OK, "%s", err.text);
    cr_assert_eq (decoded->body_case, built->body_case);
    cr_assert_eq (decoded->sender, built->sender);
    cr_assert_eq (decoded->version, KEEL_PROTOCOL_VERSION);
    zframe_destroy (&a);
    zframe_destroy (&b);
    return decoded;
}

static void
s_bytes_eq (ProtobufCBinaryData got, const uint8_t *want, size_t size)
{
    cr_assert_eq (got.len, size);
    cr_assert (size == 0 || memcmp (got.data, want, size) == 0);
}

// ---------------------------------------------------------------- any side

Test (wire_build, heartbeat_from_each_side_round_trips)
{
    uint64_t running[] = { 11, 12, 13 };
    Keel__SenderKind senders[] = { KEEL__SENDER_KIND__SENDER_DRIVER,
                                   KEEL__SENDER_KIND__SENDER_ENGINE,
                                   KEEL__SENDER_KIND__SENDER_BROKER };
    for (size_t s = 0; s < 3; s++) {
        size_t n = senders[s] == KEEL__SENDER_KIND__SENDER_ENGINE ? 3 : 0;
        keel_msg_t msg;
        keel_env_t *built = keel_msg_heartbeat (&msg, senders[s], running, n);

        Keel__Heartbeat hb = KEEL__HEARTBEAT__INIT;
        hb.n_running = n;
        hb.running = running;
        keel_env_t env;
        keel_env_init (&env, senders[s]);
        env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;

        keel_env_t *got = s_round_trip (built, &env);
        cr_assert_eq (got->heartbeat->n_running, n);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq (got->heartbeat->running[i], running[i]);
        keel_wire_free (&got);
    }
}

// ---------------------------------------------------------------- broker

Test (wire_build, relogin_round_trips)
{
    keel_msg_t msg;
    keel_env_t *built = keel_msg_relogin (&msg, "unknown peer");
    Keel__Envelope env;
    Keel__Relogin relogin = KEEL__RELOGIN__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    relogin.reason = "unknown peer";
    env.body_case = KEEL__ENVELOPE__BODY_RELOGIN;
    env.relogin = &relogin;
    keel_env_t *got = s_round_trip (built, &env);
    cr_assert_str_eq (got->relogin->reason, "unknown peer");
    keel_wire_free (&got);
}

Test (wire_build, notice_with_and_without_a_service_round_trips)
{
    const char *services[] = { S_SERVICE, NULL };
    for (int i = 0; i < 2; i++) {
        keel_msg_t msg;
        keel_env_t *built =
            keel_msg_notice (&msg, KEEL__NOTICE_LEVEL__NOTICE_WARNING, services[i], "engine lost");
        Keel__Envelope env;
        Keel__Notice notice = KEEL__NOTICE__INIT;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
        notice.has_level = true;
        notice.level = KEEL__NOTICE_LEVEL__NOTICE_WARNING;
        notice.text = "engine lost";
        notice.service_id = (char *) services[i];
        env.body_case = KEEL__ENVELOPE__BODY_NOTICE;
        env.notice = &notice;
        keel_env_t *got = s_round_trip (built, &env);
        cr_assert_eq (got->notice->level, KEEL__NOTICE_LEVEL__NOTICE_WARNING);
        cr_assert_str_eq (got->notice->text, "engine lost");
        if (services[i])
            cr_assert_str_eq (got->notice->service_id, S_SERVICE);
        else
            cr_assert_null (got->notice->service_id);
        keel_wire_free (&got);
    }
}

Test (wire_build, driver_welcome_round_trips)
{
    char *unknown[] = { S_SERVICE, "s-2" };
    keel_msg_t msg;
    keel_env_t *built = keel_msg_driver_welcome (&msg, S_BROKER, 7, 1500, unknown, 2);
    Keel__Envelope env;
    Keel__DriverWelcome welcome = KEEL__DRIVER_WELCOME__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    welcome.broker_name = S_BROKER;
    welcome.has_epoch = true;
    welcome.epoch = 7;
    welcome.has_heartbeat_ms = true;
    welcome.heartbeat_ms = 1500;
    welcome.n_unknown_services = 2;
    welcome.unknown_services = unknown;
    env.body_case = KEEL__ENVELOPE__BODY_DRIVER_WELCOME;
    env.driver_welcome = &welcome;
    keel_env_t *got = s_round_trip (built, &env);
    const Keel__DriverWelcome *w = got->driver_welcome;
    cr_assert_str_eq (w->broker_name, S_BROKER);
    cr_assert_eq (w->epoch, 7);
    cr_assert_eq (w->heartbeat_ms, 1500);
    cr_assert_eq (w->n_unknown_services, 2);
    cr_assert_str_eq (w->unknown_services[0], S_SERVICE);
    cr_assert_str_eq (w->unknown_services[1], "s-2");
    keel_wire_free (&got);
}

Test (wire_build, accepted_with_tasks_and_for_the_service_alone_round_trips)
{
    uint64_t ids[] = { 0, 5, 9 };
    for (size_t n = 0; n <= 3; n += 3) {
        keel_msg_t msg;
        keel_env_t *built = keel_msg_accepted (&msg, S_SERVICE, ids, n);
        Keel__Envelope env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
        Keel__Accepted accepted = KEEL__ACCEPTED__INIT;
        accepted.service_id = S_SERVICE;
        accepted.n_task_ids = n;
        accepted.task_ids = ids;
        env.body_case = KEEL__ENVELOPE__BODY_ACCEPTED;
        env.accepted = &accepted;
        keel_env_t *got = s_round_trip (built, &env);
        cr_assert_str_eq (got->accepted->service_id, S_SERVICE);
        cr_assert_eq (got->accepted->n_task_ids, n);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq (got->accepted->task_ids[i], ids[i]);
        keel_wire_free (&got);
    }
}

Test (wire_build, refused_with_and_without_tasks_or_error_round_trips)
{
    uint64_t ids[] = { 3, 4 };
    struct {
        size_t n;
        Keel__RefuseCode code;
        const char *error;
    } cases[] = {
        { 2, KEEL__REFUSE_CODE__REFUSE_STORE_FULL, "disk full" },
        { 0, KEEL__REFUSE_CODE__REFUSE_SERVICE_CLOSED, "service cancelled by an administrator" },
        { 1, KEEL__REFUSE_CODE__REFUSE_UNKNOWN_SERVICE, NULL },
    };
    for (size_t c = 0; c < 3; c++) {
        keel_msg_t msg;
        keel_env_t *built =
            keel_msg_refused (&msg, S_SERVICE, ids, cases[c].n, cases[c].code, cases[c].error);
        Keel__Envelope env;
        Keel__Refused refused = KEEL__REFUSED__INIT;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
        refused.service_id = S_SERVICE;
        refused.n_task_ids = cases[c].n;
        refused.task_ids = ids;
        refused.has_code = true;
        refused.code = cases[c].code;
        refused.error = (char *) cases[c].error;
        env.body_case = KEEL__ENVELOPE__BODY_REFUSED;
        env.refused = &refused;
        keel_env_t *got = s_round_trip (built, &env);
        const Keel__Refused *r = got->refused;
        cr_assert_str_eq (r->service_id, S_SERVICE);
        cr_assert_eq (r->n_task_ids, cases[c].n);
        cr_assert_eq (r->code, cases[c].code);
        if (cases[c].error)
            cr_assert_str_eq (r->error, cases[c].error);
        else
            cr_assert_null (r->error);
        keel_wire_free (&got);
    }
}

// The broker's TaskResult as s_encode_results filled it.
static void
s_task_result_by_hand (Keel__TaskResult *tr, Keel__Timings *timings,
                       const keel_task_result_args_t *a)
{
    keel__task_result__init (tr);
    keel__timings__init (timings);
    tr->service_id = (char *) a->service_id;
    tr->has_task_id = true;
    tr->task_id = a->task_id;
    tr->has_status = true;
    tr->status = a->status;
    if (a->output) {
        tr->has_output = true;
        tr->output.data = (uint8_t *) a->output;
        tr->output.len = a->output_size;
    }
    tr->error = (char *) a->error;
    tr->engine_id = a->engine_id[0] ? (char *) a->engine_id : NULL;
    tr->has_execution_id = true;
    tr->execution_id = a->execution_id;
    tr->has_attempts = true;
    tr->attempts = a->attempts;
    timings->has_queued_ms = true;
    timings->queued_ms = a->queued_ms;
    timings->has_run_ms = true;
    timings->run_ms = a->run_ms;
    tr->timings = timings;
}

Test (wire_build, task_results_round_trip_every_field)
{
    keel_task_result_args_t args[3] = {
        { .service_id = S_SERVICE,
          .task_id = 4,
          .status = KEEL__TASK_STATUS__STATUS_OK,
          .output = s_output,
          .output_size = sizeof s_output,
          .engine_id = S_ENGINE,
          .execution_id = 77,
          .attempts = 1,
          .queued_ms = 12,
          .run_ms = 340 },
        { .service_id = S_SERVICE,
          .task_id = 5,
          .status = KEEL__TASK_STATUS__STATUS_FAILED,
          .error = "exit code 3",
          .engine_id = "",
          .execution_id = 78,
          .attempts = 3,
          .queued_ms = 0,
          .run_ms = 9 },
        { .service_id = "s-2",
          .task_id = 0,
          .status = KEEL__TASK_STATUS__STATUS_CANCELLED,
          .engine_id = "",
          .execution_id = 0,
          .attempts = 0 },
    };
    Keel__TaskResult items[3], hand[3];
    Keel__Timings timings[3], hand_timings[3];
    Keel__TaskResult *ptrs[3], *hand_ptrs[3];
    for (int i = 0; i < 3; i++) {
        keel_item_task_result (&items[i], &timings[i], &args[i]);
        s_task_result_by_hand (&hand[i], &hand_timings[i], &args[i]);
        ptrs[i] = &items[i];
        hand_ptrs[i] = &hand[i];
    }
    keel_msg_t msg;
    keel_env_t *built = keel_msg_task_results (&msg, ptrs, 3);
    Keel__Envelope env;
    Keel__TaskResults results = KEEL__TASK_RESULTS__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    results.n_results = 3;
    results.results = hand_ptrs;
    env.body_case = KEEL__ENVELOPE__BODY_TASK_RESULTS;
    env.task_results = &results;

    keel_env_t *got = s_round_trip (built, &env);
    cr_assert_eq (got->task_results->n_results, 3);
    for (int i = 0; i < 3; i++) {
        const Keel__TaskResult *r = got->task_results->results[i];
        cr_assert_str_eq (r->service_id, args[i].service_id);
        cr_assert_eq (r->task_id, args[i].task_id);
        cr_assert_eq (r->status, args[i].status);
        cr_assert_eq (r->has_output, args[i].output != NULL);
        if (args[i].output)
            s_bytes_eq (r->output, args[i].output, args[i].output_size);
        if (args[i].error)
            cr_assert_str_eq (r->error, args[i].error);
        else
            cr_assert_null (r->error);
        if (args[i].engine_id[0])
            cr_assert_str_eq (r->engine_id, args[i].engine_id);
        else
            cr_assert_null (r->engine_id, "an empty engine id is not sent");
        cr_assert_eq (r->execution_id, args[i].execution_id);
        cr_assert_eq (r->attempts, args[i].attempts);
        cr_assert_not_null (r->timings);
        cr_assert_eq (r->timings->queued_ms, args[i].queued_ms);
        cr_assert_eq (r->timings->run_ms, args[i].run_ms);
    }
    keel_wire_free (&got);
}

Test (wire_build, task_result_without_timings_sends_none)
{
    keel_task_result_args_t args = { .service_id = S_SERVICE,
                                     .task_id = 1,
                                     .status = KEEL__TASK_STATUS__STATUS_OK };
    Keel__TaskResult item;
    keel_item_task_result (&item, NULL, &args);
    cr_assert_null (item.timings);
    cr_assert_not (item.has_output);
    cr_assert_null (item.engine_id);
}

Test (wire_build, execution_ack_round_trips)
{
    uint64_t ids[] = { 1ull << 40, 2, 3 };
    keel_msg_t msg;
    keel_env_t *built = keel_msg_execution_ack (&msg, ids, 3);
    Keel__Envelope env;
    Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    ack.n_execution_ids = 3;
    ack.execution_ids = ids;
    env.body_case = KEEL__ENVELOPE__BODY_RESULT_ACK;
    env.result_ack = &ack;
    keel_env_t *got = s_round_trip (built, &env);
    cr_assert_eq (got->result_ack->n_execution_ids, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq (got->result_ack->execution_ids[i], ids[i]);
    cr_assert_null (got->result_ack->service_id);
    keel_wire_free (&got);
}

Test (wire_build, login_reply_with_verdicts_round_trips)
{
    Keel__TaskVerdict v[3], hand[3];
    Keel__TaskVerdict *vp[3], *hand_p[3];
    Keel__Verdict verdicts[] = { KEEL__VERDICT__VERDICT_KEEP, KEEL__VERDICT__VERDICT_DROP,
                                 KEEL__VERDICT__VERDICT_HOLD };
    for (int i = 0; i < 3; i++) {
        keel_item_verdict (&v[i], S_SERVICE, (uint64_t) i, 100 + (uint64_t) i, verdicts[i]);
        vp[i] = &v[i];
        keel__task_verdict__init (&hand[i]);
        hand[i].service_id = S_SERVICE;
        hand[i].has_task_id = true;
        hand[i].task_id = (uint64_t) i;
        hand[i].has_execution_id = true;
        hand[i].execution_id = 100 + (uint64_t) i;
        hand[i].has_verdict = true;
        hand[i].verdict = verdicts[i];
        hand_p[i] = &hand[i];
    }
    keel_msg_t msg;
    keel_login_reply_args_t args = { .broker_name = S_BROKER,
                                     .epoch = 9,
                                     .engine_timeout_ms = 600000,
                                     .heartbeat_ms = 1000,
                                     .verdicts = vp,
                                     .n_verdicts = 3 };
    keel_env_t *built = keel_msg_login_reply (&msg, &args);

    Keel__Envelope env;
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    reply.has_ok = true;
    reply.ok = true;
    reply.broker_name = S_BROKER;
    reply.has_epoch = true;
    reply.epoch = 9;
    reply.has_engine_timeout_ms = true;
    reply.engine_timeout_ms = 600000;
    reply.has_heartbeat_ms = true;
    reply.heartbeat_ms = 1000;
    reply.n_verdicts = 3;
    reply.verdicts = hand_p;
    env.body_case = KEEL__ENVELOPE__BODY_LOGIN_REPLY;
    env.login_reply = &reply;

    keel_env_t *got = s_round_trip (built, &env);
    const Keel__LoginReply *r = got->login_reply;
    cr_assert (r->has_ok && r->ok);
    cr_assert_str_eq (r->broker_name, S_BROKER);
    cr_assert_eq (r->epoch, 9);
    cr_assert_eq (r->engine_timeout_ms, 600000);
    cr_assert_eq (r->heartbeat_ms, 1000);
    cr_assert_eq (r->n_verdicts, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq (r->verdicts[i]->service_id, S_SERVICE);
        cr_assert_eq (r->verdicts[i]->task_id, (uint64_t) i);
        cr_assert_eq (r->verdicts[i]->execution_id, 100 + (uint64_t) i);
        cr_assert_eq (r->verdicts[i]->verdict, verdicts[i]);
    }
    keel_wire_free (&got);
}

// The broker's Assign as s_assign filled it.
static void
s_assign_by_hand (Keel__Assign *assign, const keel_assign_args_t *a)
{
    keel__assign__init (assign);
    assign->service_id = (char *) a->service_id;
    assign->type = (char *) a->type;
    assign->has_task_id = true;
    assign->task_id = a->task_id;
    assign->has_execution_id = true;
    assign->execution_id = a->execution_id;
    assign->has_input = true;
    assign->input.data = (uint8_t *) a->input;
    assign->input.len = a->input_size;
    if (a->memory) {
        assign->has_memory = true;
        assign->memory.data = (uint8_t *) a->memory;
        assign->memory.len = a->memory_size;
    }
    assign->has_attempt = true;
    assign->attempt = a->attempt;
    if (a->init_data) {
        assign->has_init_data = true;
        assign->init_data.data = (uint8_t *) a->init_data;
        assign->init_data.len = a->init_size;
    }
}

static const keel_assign_args_t s_assigns[3] = {
    { .service_id = S_SERVICE,
      .type = "double",
      .task_id = 1,
      .execution_id = 501,
      .input = s_input,
      .input_size = sizeof s_input,
      .attempt = 1,
      .init_data = s_init,
      .init_size = sizeof s_init },
    { .service_id = S_SERVICE,
      .type = "double",
      .task_id = 2,
      .execution_id = 502,
      .input = s_input,
      .input_size = 0,
      .memory = s_memory,
      .memory_size = sizeof s_memory,
      .attempt = 2 },
    { .service_id = "s-2",
      .type = "sleep.v2",
      .task_id = 3,
      .execution_id = 503,
      .input = NULL,
      .input_size = 0,
      .attempt = 1 },
};

static void
s_assert_assign (const Keel__Assign *got, const keel_assign_args_t *a)
{
    cr_assert_str_eq (got->service_id, a->service_id);
    cr_assert_str_eq (got->type, a->type);
    cr_assert_eq (got->task_id, a->task_id);
    cr_assert_eq (got->execution_id, a->execution_id);
    cr_assert (got->has_input);
    s_bytes_eq (got->input, a->input, a->input_size);
    cr_assert_eq (got->has_memory, a->memory != NULL);
    if (a->memory)
        s_bytes_eq (got->memory, a->memory, a->memory_size);
    cr_assert_eq (got->attempt, a->attempt);
    cr_assert_eq (got->has_init_data, a->init_data != NULL);
    if (a->init_data)
        s_bytes_eq (got->init_data, a->init_data, a->init_size);
}

Test (wire_build, assign_alone_round_trips_each_optional_field)
{
    for (int i = 0; i < 3; i++) {
        Keel__Assign item, hand;
        keel_item_assign (&item, &s_assigns[i]);
        s_assign_by_hand (&hand, &s_assigns[i]);
        keel_msg_t msg;
        keel_env_t *built = keel_msg_assign (&msg, &item);
        Keel__Envelope env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
        env.body_case = KEEL__ENVELOPE__BODY_ASSIGN;
        env.assign = &hand;
        keel_env_t *got = s_round_trip (built, &env);
        s_assert_assign (got->assign, &s_assigns[i]);
        keel_wire_free (&got);
    }
}

Test (wire_build, assigns_go_alone_as_one_assign_and_together_as_a_batch)
{
    Keel__Assign items[3], hand[3];
    Keel__Assign *ptrs[3], *hand_p[3];
    for (int i = 0; i < 3; i++) {
        keel_item_assign (&items[i], &s_assigns[i]);
        s_assign_by_hand (&hand[i], &s_assigns[i]);
        ptrs[i] = &items[i];
        hand_p[i] = &hand[i];
    }
    for (size_t n = 1; n <= 3; n++) {
        // s_batch_flush: one alone as an Assign, more as an AssignBatch.
        keel_msg_t msg;
        keel_env_t *built = keel_msg_assigns (&msg, ptrs, n);
        Keel__Envelope env;
        Keel__AssignBatch batch = KEEL__ASSIGN_BATCH__INIT;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
        if (n == 1) {
            env.body_case = KEEL__ENVELOPE__BODY_ASSIGN;
            env.assign = hand_p[0];
        }
        else {
            batch.n_assigns = n;
            batch.assigns = hand_p;
            env.body_case = KEEL__ENVELOPE__BODY_ASSIGN_BATCH;
            env.assign_batch = &batch;
        }
        keel_env_t *got = s_round_trip (built, &env);
        if (n == 1)
            s_assert_assign (got->assign, &s_assigns[0]);
        else {
            cr_assert_eq (got->assign_batch->n_assigns, n);
            for (size_t i = 0; i < n; i++)
                s_assert_assign (got->assign_batch->assigns[i], &s_assigns[i]);
        }
        keel_wire_free (&got);
    }
}

Test (wire_build, cancel_round_trips)
{
    uint64_t id = 42;
    keel_msg_t msg;
    keel_env_t *built = keel_msg_cancel (&msg, &id, 1, "service cancelled");
    Keel__Envelope env;
    Keel__Cancel cancel = KEEL__CANCEL__INIT;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    cancel.n_execution_ids = 1;
    cancel.execution_ids = &id;
    cancel.reason = "service cancelled";
    env.body_case = KEEL__ENVELOPE__BODY_CANCEL;
    env.cancel = &cancel;
    keel_env_t *got = s_round_trip (built, &env);
    cr_assert_eq (got->cancel->n_execution_ids, 1);
    cr_assert_eq (got->cancel->execution_ids[0], 42);
    cr_assert_str_eq (got->cancel->reason, "service cancelled");
    keel_wire_free (&got);
}

Test (wire_build, admin_reply_round_trips_with_and_without_texts)
{
    for (int ok = 0; ok < 2; ok++) {
        const char *error = ok ? NULL : "no such command";
        const char *json = ok ? "{\"a\":1}" : NULL;
        const char *text = ok ? "a:1\n" : NULL;
        keel_msg_t msg;
        keel_env_t *built = keel_msg_admin_reply (&msg, ok, error, json, text);
        Keel__Envelope env;
        Keel__AdminReply ar = KEEL__ADMIN_REPLY__INIT;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
        ar.has_ok = true;
        ar.ok = ok;
        ar.error = (char *) error;
        ar.json = (char *) json;
        ar.text = (char *) text;
        env.body_case = KEEL__ENVELOPE__BODY_ADMIN_REPLY;
        env.admin_reply = &ar;
        keel_env_t *got = s_round_trip (built, &env);
        cr_assert_eq (got->admin_reply->ok, (bool) ok);
        if (ok) {
            cr_assert_null (got->admin_reply->error);
            cr_assert_str_eq (got->admin_reply->json, json);
            cr_assert_str_eq (got->admin_reply->text, text);
        }
        else
            cr_assert_str_eq (got->admin_reply->error, error);
        keel_wire_free (&got);
    }
}

// ---------------------------------------------------------------- driver

Test (wire_build, driver_hello_with_services_and_delivered_ranges_round_trips)
{
    char *services[] = { S_SERVICE, "s-2" };
    uint64_t ranges0[] = { 0, 5, 2, 1 }; // [0,5) and [7,8)
    uint64_t ranges1[] = { 3, 1 };
    Keel__DeliveredTasks d[2], hand[2];
    Keel__DeliveredTasks *dp[2], *hand_p[2];
    keel_item_delivered (&d[0], S_SERVICE, ranges0, 4);
    keel_item_delivered (&d[1], "s-2", ranges1, 2);
    for (int i = 0; i < 2; i++) {
        keel__delivered_tasks__init (&hand[i]);
        hand[i].service_id = services[i];
        hand[i].n_ranges = i ? 2 : 4;
        hand[i].ranges = i ? ranges1 : ranges0;
        dp[i] = &d[i];
        hand_p[i] = &hand[i];
    }
    for (int primary = 0; primary < 2; primary++) {
        keel_msg_t msg;
        keel_driver_hello_args_t args = { .driver_id = S_DRIVER,
                                          .services = services,
                                          .n_services = 2,
                                          .delivered = dp,
                                          .n_delivered = 2,
                                          .broker_timeout_ms = 30000,
                                          .heartbeat_ms = 1000,
                                          .primary = primary };
        keel_env_t *built = keel_msg_driver_hello (&msg, &args);

        Keel__DriverHello hello = KEEL__DRIVER_HELLO__INIT;
        hello.driver_id = S_DRIVER;
        hello.services = services;
        hello.n_services = 2;
        hello.n_delivered = 2;
        hello.delivered = hand_p;
        hello.has_broker_timeout_ms = true;
        hello.broker_timeout_ms = 30000;
        hello.has_heartbeat_ms = true;
        hello.heartbeat_ms = 1000;
        hello.has_primary = true;
        hello.primary = primary;
        keel_env_t env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
        env.body_case = KEEL__ENVELOPE__BODY_DRIVER_HELLO;
        env.driver_hello = &hello;

        keel_env_t *got = s_round_trip (built, &env);
        const Keel__DriverHello *h = got->driver_hello;
        cr_assert_str_eq (h->driver_id, S_DRIVER);
        cr_assert_eq (h->n_services, 2);
        cr_assert_str_eq (h->services[1], "s-2");
        cr_assert_eq (h->broker_timeout_ms, 30000);
        cr_assert_eq (h->heartbeat_ms, 1000);
        cr_assert (h->has_primary);
        cr_assert_eq (h->primary, (bool) primary);
        cr_assert_eq (h->n_delivered, 2);
        cr_assert_str_eq (h->delivered[0]->service_id, S_SERVICE);
        cr_assert_eq (h->delivered[0]->n_ranges, 4);
        for (int i = 0; i < 4; i++)
            cr_assert_eq (h->delivered[0]->ranges[i], ranges0[i]);
        cr_assert_eq (h->delivered[1]->n_ranges, 2);
        keel_wire_free (&got);
    }
}

Test (wire_build, submit_service_with_and_without_init_data_round_trips)
{
    for (int with_init = 0; with_init < 2; with_init++) {
        keel_submit_service_args_t args = { .service_id = S_SERVICE,
                                            .type = "double",
                                            .priority = -3,
                                            .max_attempts = 4,
                                            .reschedule_delay_ms = -1,
                                            .init_data = with_init ? s_init : NULL,
                                            .init_size = with_init ? sizeof s_init : 0 };
        keel_msg_t msg;
        keel_env_t *built = keel_msg_submit_service (&msg, &args);

        Keel__SubmitService submit = KEEL__SUBMIT_SERVICE__INIT;
        submit.service_id = S_SERVICE;
        submit.type = "double";
        submit.has_priority = true;
        submit.priority = -3;
        submit.has_max_attempts = true;
        submit.max_attempts = 4;
        submit.has_reschedule_delay_ms = true;
        submit.reschedule_delay_ms = -1;
        if (with_init) {
            submit.has_init_data = true;
            submit.init_data.data = (uint8_t *) s_init;
            submit.init_data.len = sizeof s_init;
        }
        keel_env_t env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
        env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_SERVICE;
        env.submit_service = &submit;

        keel_env_t *got = s_round_trip (built, &env);
        const Keel__SubmitService *s = got->submit_service;
        cr_assert_str_eq (s->service_id, S_SERVICE);
        cr_assert_str_eq (s->type, "double");
        cr_assert_eq (s->priority, -3);
        cr_assert_eq (s->max_attempts, 4);
        cr_assert_eq (s->reschedule_delay_ms, -1);
        cr_assert_eq (s->has_init_data, (bool) with_init);
        if (with_init)
            s_bytes_eq (s->init_data, s_init, sizeof s_init);
        keel_wire_free (&got);
    }
}

Test (wire_build, submit_tasks_round_trips_inputs_including_an_empty_one)
{
    Keel__TaskInput items[3], hand[3];
    Keel__TaskInput *ptrs[3], *hand_p[3];
    size_t sizes[] = { sizeof s_input, 0, 1 };
    for (int i = 0; i < 3; i++) {
        keel_item_task_input (&items[i], 10 + (uint64_t) i, s_input, sizes[i]);
        ptrs[i] = &items[i];
        keel__task_input__init (&hand[i]);
        hand[i].has_task_id = true;
        hand[i].task_id = 10 + (uint64_t) i;
        hand[i].has_input = true;
        hand[i].input.data = (uint8_t *) s_input;
        hand[i].input.len = sizes[i];
        hand_p[i] = &hand[i];
    }
    keel_msg_t msg;
    keel_env_t *built = keel_msg_submit_tasks (&msg, S_SERVICE, ptrs, 3);
    Keel__SubmitTasks submit = KEEL__SUBMIT_TASKS__INIT;
    submit.service_id = S_SERVICE;
    submit.n_tasks = 3;
    submit.tasks = hand_p;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    env.body_case = KEEL__ENVELOPE__BODY_SUBMIT_TASKS;
    env.submit_tasks = &submit;
    keel_env_t *got = s_round_trip (built, &env);
    cr_assert_str_eq (got->submit_tasks->service_id, S_SERVICE);
    cr_assert_eq (got->submit_tasks->n_tasks, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq (got->submit_tasks->tasks[i]->task_id, 10 + (uint64_t) i);
        cr_assert (got->submit_tasks->tasks[i]->has_input);
        s_bytes_eq (got->submit_tasks->tasks[i]->input, s_input, sizes[i]);
    }
    keel_wire_free (&got);
}

Test (wire_build, result_ack_of_task_ids_and_of_delivered_ranges_round_trips)
{
    uint64_t ids[] = { 1, 2, 5 };
    uint64_t ranges[] = { 0, 10 };
    for (int form = 0; form < 2; form++) {
        keel_msg_t msg;
        keel_env_t *built = form == 0 ? keel_msg_result_ack (&msg, S_SERVICE, ids, 3, NULL, 0)
                                      : keel_msg_result_ack (&msg, S_SERVICE, NULL, 0, ranges, 2);
        Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
        ack.service_id = S_SERVICE;
        if (form == 0) {
            ack.n_task_ids = 3;
            ack.task_ids = ids;
        }
        else {
            ack.n_delivered = 2;
            ack.delivered = ranges;
        }
        keel_env_t env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
        env.body_case = KEEL__ENVELOPE__BODY_RESULT_ACK;
        env.result_ack = &ack;
        keel_env_t *got = s_round_trip (built, &env);
        const Keel__ResultAck *a = got->result_ack;
        cr_assert_str_eq (a->service_id, S_SERVICE);
        cr_assert_eq (a->n_task_ids, form == 0 ? 3 : 0);
        cr_assert_eq (a->n_delivered, form == 0 ? 0 : 2);
        cr_assert_eq (a->n_execution_ids, 0);
        if (form == 0)
            cr_assert_eq (a->task_ids[2], 5);
        else
            cr_assert_eq (a->delivered[1], 10);
        keel_wire_free (&got);
    }
}

Test (wire_build, close_and_cancel_service_round_trip)
{
    for (int cancel = 0; cancel < 2; cancel++) {
        keel_msg_t msg;
        keel_env_t *built = cancel ? keel_msg_cancel_service (&msg, S_SERVICE)
                                   : keel_msg_close_service (&msg, S_SERVICE);
        keel_env_t env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
        Keel__CloseService close = KEEL__CLOSE_SERVICE__INIT;
        Keel__CancelService cancel_msg = KEEL__CANCEL_SERVICE__INIT;
        if (cancel) {
            cancel_msg.service_id = S_SERVICE;
            env.body_case = KEEL__ENVELOPE__BODY_CANCEL_SERVICE;
            env.cancel_service = &cancel_msg;
        }
        else {
            close.service_id = S_SERVICE;
            env.body_case = KEEL__ENVELOPE__BODY_CLOSE_SERVICE;
            env.close_service = &close;
        }
        keel_env_t *got = s_round_trip (built, &env);
        cr_assert_str_eq (cancel ? got->cancel_service->service_id : got->close_service->service_id,
                          S_SERVICE);
        keel_wire_free (&got);
    }
}

Test (wire_build, detach_round_trips)
{
    char *ids[] = { S_SERVICE, "s-2", "s-3" };
    keel_msg_t msg;
    keel_env_t *built = keel_msg_detach (&msg, ids, 3);
    Keel__Detach detach = KEEL__DETACH__INIT;
    detach.service_ids = ids;
    detach.n_service_ids = 3;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_DRIVER);
    env.body_case = KEEL__ENVELOPE__BODY_DETACH;
    env.detach = &detach;
    keel_env_t *got = s_round_trip (built, &env);
    cr_assert_eq (got->detach->n_service_ids, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_str_eq (got->detach->service_ids[i], ids[i]);
    keel_wire_free (&got);
}

// ---------------------------------------------------------------- engine

// The engine's Result as keel_held_result_view filled it.
static void
s_result_by_hand (Keel__Result *result, const keel_result_args_t *a)
{
    keel__result__init (result);
    result->service_id = (char *) a->service_id;
    result->has_task_id = true;
    result->task_id = a->task_id;
    result->has_execution_id = true;
    result->execution_id = a->execution_id;
    result->has_status = true;
    result->status = a->status;
    if (a->status == KEEL__TASK_STATUS__STATUS_OK) {
        result->has_output = true;
        result->output.data = (uint8_t *) a->output;
        result->output.len = a->output_size;
    }
    else {
        result->error = (char *) a->error;
        result->has_permanent = a->permanent;
        result->permanent = a->permanent;
    }
    result->has_run_ms = true;
    result->run_ms = a->run_us / 1000;
    result->has_run_us = true;
    result->run_us = a->run_us;
}

static const keel_result_args_t s_results[4] = {
    { .service_id = S_SERVICE,
      .task_id = 1,
      .execution_id = 501,
      .status = KEEL__TASK_STATUS__STATUS_OK,
      .output = s_output,
      .output_size = sizeof s_output,
      .run_us = 12345 },
    { .service_id = S_SERVICE,
      .task_id = 2,
      .execution_id = 502,
      .status = KEEL__TASK_STATUS__STATUS_OK,
      .output = NULL,
      .output_size = 0,
      .run_us = 0 },
    { .service_id = S_SERVICE,
      .task_id = 3,
      .execution_id = 503,
      .status = KEEL__TASK_STATUS__STATUS_FAILED,
      .error = "exit code 1",
      .run_us = 7000 },
    { .service_id = "s-2",
      .task_id = 4,
      .execution_id = 504,
      .status = KEEL__TASK_STATUS__STATUS_FAILED,
      .error = "exit code 127",
      .permanent = true,
      .run_us = 1 },
};

static void
s_assert_result (const Keel__Result *got, const keel_result_args_t *a)
{
    cr_assert_str_eq (got->service_id, a->service_id);
    cr_assert_eq (got->task_id, a->task_id);
    cr_assert_eq (got->execution_id, a->execution_id);
    cr_assert_eq (got->status, a->status);
    bool ok = a->status == KEEL__TASK_STATUS__STATUS_OK;
    cr_assert_eq (got->has_output, ok, "output is sent with an OK result, and only then");
    if (ok) {
        s_bytes_eq (got->output, a->output, a->output_size);
        cr_assert_null (got->error);
    }
    else
        cr_assert_str_eq (got->error, a->error);
    cr_assert_eq (got->has_permanent, a->permanent);
    cr_assert_eq (got->permanent, a->permanent);
    cr_assert (got->has_run_ms);
    cr_assert_eq (got->run_ms, a->run_us / 1000);
    cr_assert (got->has_run_us);
    cr_assert_eq (got->run_us, a->run_us);
}

Test (wire_build, result_alone_round_trips_ok_failed_and_permanent)
{
    for (int i = 0; i < 4; i++) {
        Keel__Result item, hand;
        keel_item_result (&item, &s_results[i]);
        s_result_by_hand (&hand, &s_results[i]);
        keel_msg_t msg;
        keel_env_t *built = keel_msg_result (&msg, &item);
        keel_env_t env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
        env.body_case = KEEL__ENVELOPE__BODY_RESULT;
        env.result = &hand;
        keel_env_t *got = s_round_trip (built, &env);
        s_assert_result (got->result, &s_results[i]);
        keel_wire_free (&got);
    }
}

Test (wire_build, results_go_alone_as_one_result_and_together_as_a_batch)
{
    Keel__Result items[4], hand[4];
    Keel__Result *ptrs[4], *hand_p[4];
    for (int i = 0; i < 4; i++) {
        keel_item_result (&items[i], &s_results[i]);
        s_result_by_hand (&hand[i], &s_results[i]);
        ptrs[i] = &items[i];
        hand_p[i] = &hand[i];
    }
    for (size_t n = 1; n <= 4; n++) {
        keel_msg_t msg;
        keel_env_t *built = keel_msg_results (&msg, ptrs, n);
        keel_env_t env;
        Keel__ResultBatch batch = KEEL__RESULT_BATCH__INIT;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
        if (n == 1) {
            env.body_case = KEEL__ENVELOPE__BODY_RESULT;
            env.result = hand_p[0];
        }
        else {
            batch.n_results = n;
            batch.results = hand_p;
            env.body_case = KEEL__ENVELOPE__BODY_RESULT_BATCH;
            env.result_batch = &batch;
        }
        keel_env_t *got = s_round_trip (built, &env);
        if (n == 1)
            s_assert_result (got->result, &s_results[0]);
        else {
            cr_assert_eq (got->result_batch->n_results, n);
            for (size_t i = 0; i < n; i++)
                s_assert_result (got->result_batch->results[i], &s_results[i]);
        }
        keel_wire_free (&got);
    }
}

Test (wire_build, engine_login_with_running_and_done_tasks_round_trips)
{
    char *types[] = { "double", "sleep" };
    Keel__Result result, hand_result;
    keel_item_result (&result, &s_results[0]);
    s_result_by_hand (&hand_result, &s_results[0]);
    Keel__HeldTask held[2], hand[2];
    Keel__HeldTask *held_p[2], *hand_p[2];
    keel_item_held_task (&held[0], S_SERVICE, 1, 501, &result); // done, result rides along
    keel_item_held_task (&held[1], S_SERVICE, 7, 507, NULL);    // running
    for (int i = 0; i < 2; i++) {
        keel__held_task__init (&hand[i]);
        hand[i].service_id = S_SERVICE;
        hand[i].has_task_id = hand[i].has_execution_id = hand[i].has_state = true;
        hand[i].task_id = i ? 7 : 1;
        hand[i].execution_id = i ? 507 : 501;
        hand[i].state = i ? KEEL__HELD_STATE__HELD_RUNNING : KEEL__HELD_STATE__HELD_DONE;
        hand[i].result = i ? NULL : &hand_result;
        held_p[i] = &held[i];
        hand_p[i] = &hand[i];
    }
    keel_engine_login_args_t args = { .engine_id = S_ENGINE,
                                      .session = "sess-1",
                                      .host = "host-a",
                                      .slots = 8,
                                      .pid = 4242,
                                      .service_types = types,
                                      .n_service_types = 2,
                                      .held = held_p,
                                      .n_held = 2 };
    keel_msg_t msg;
    keel_env_t *built = keel_msg_engine_login (&msg, &args);

    Keel__EngineLogin login = KEEL__ENGINE_LOGIN__INIT;
    login.engine_id = S_ENGINE;
    login.session = "sess-1";
    login.host = "host-a";
    login.has_slots = login.has_pid = true;
    login.slots = 8;
    login.pid = 4242;
    login.n_service_types = 2;
    login.service_types = types;
    login.n_held = 2;
    login.held = hand_p;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    env.body_case = KEEL__ENVELOPE__BODY_ENGINE_LOGIN;
    env.engine_login = &login;

    keel_env_t *got = s_round_trip (built, &env);
    const Keel__EngineLogin *l = got->engine_login;
    cr_assert_str_eq (l->engine_id, S_ENGINE);
    cr_assert_str_eq (l->session, "sess-1");
    cr_assert_str_eq (l->host, "host-a");
    cr_assert_eq (l->slots, 8);
    cr_assert_eq (l->pid, 4242);
    cr_assert_eq (l->n_service_types, 2);
    cr_assert_str_eq (l->service_types[1], "sleep");
    cr_assert_eq (l->n_held, 2);
    cr_assert_eq (l->held[0]->state, KEEL__HELD_STATE__HELD_DONE);
    cr_assert_eq (l->held[0]->execution_id, 501);
    s_assert_result (l->held[0]->result, &s_results[0]);
    cr_assert_eq (l->held[1]->state, KEEL__HELD_STATE__HELD_RUNNING);
    cr_assert_eq (l->held[1]->task_id, 7);
    cr_assert_null (l->held[1]->result);
    keel_wire_free (&got);
}

Test (wire_build, checkpoint_round_trips_including_empty_data)
{
    for (size_t size = 0; size <= sizeof s_memory; size += sizeof s_memory) {
        keel_msg_t msg;
        keel_env_t *built = keel_msg_checkpoint (&msg, S_SERVICE, 3, 503, s_memory, size);
        Keel__Checkpoint cp = KEEL__CHECKPOINT__INIT;
        cp.service_id = S_SERVICE;
        cp.has_task_id = cp.has_execution_id = cp.has_data = true;
        cp.task_id = 3;
        cp.execution_id = 503;
        cp.data.data = (uint8_t *) s_memory;
        cp.data.len = size;
        keel_env_t env;
        keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
        env.body_case = KEEL__ENVELOPE__BODY_CHECKPOINT;
        env.checkpoint = &cp;
        keel_env_t *got = s_round_trip (built, &env);
        cr_assert_str_eq (got->checkpoint->service_id, S_SERVICE);
        cr_assert_eq (got->checkpoint->task_id, 3);
        cr_assert_eq (got->checkpoint->execution_id, 503);
        cr_assert (got->checkpoint->has_data);
        s_bytes_eq (got->checkpoint->data, s_memory, size);
        keel_wire_free (&got);
    }
}

Test (wire_build, logoff_round_trips)
{
    keel_msg_t msg;
    keel_env_t *built = keel_msg_logoff (&msg, "stopping");
    Keel__Logoff logoff = KEEL__LOGOFF__INIT;
    logoff.reason = "stopping";
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ENGINE);
    env.body_case = KEEL__ENVELOPE__BODY_LOGOFF;
    env.logoff = &logoff;
    keel_env_t *got = s_round_trip (built, &env);
    cr_assert_str_eq (got->logoff->reason, "stopping");
    keel_wire_free (&got);
}

// ---------------------------------------------------------------- admin

Test (wire_build, admin_request_round_trips)
{
    char *args[] = { "set", "LogLevel", "debug" };
    keel_msg_t msg;
    keel_env_t *built = keel_msg_admin_request (&msg, "config", args, 3);
    Keel__AdminRequest request = KEEL__ADMIN_REQUEST__INIT;
    request.command = "config";
    request.n_args = 3;
    request.args = args;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_ADMIN);
    env.body_case = KEEL__ENVELOPE__BODY_ADMIN_REQUEST;
    env.admin_request = &request;
    keel_env_t *got = s_round_trip (built, &env);
    cr_assert_str_eq (got->admin_request->command, "config");
    cr_assert_eq (got->admin_request->n_args, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_str_eq (got->admin_request->args[i], args[i]);
    keel_wire_free (&got);
}

// ---------------------------------------------------------------- the set

// Every body the validation table knows has a builder that makes it from
// the sender the table allows (a body added without a builder fails here).
Test (wire_build, every_body_has_a_builder_from_an_allowed_sender)
{
    Keel__Assign assign;
    keel_item_assign (&assign, &s_assigns[0]);
    Keel__Assign *assigns[2] = { &assign, &assign };
    Keel__Result result;
    keel_item_result (&result, &s_results[0]);
    Keel__Result *results[2] = { &result, &result };
    keel_task_result_args_t tra = { .service_id = S_SERVICE,
                                    .task_id = 1,
                                    .status = KEEL__TASK_STATUS__STATUS_OK };
    Keel__TaskResult tr;
    keel_item_task_result (&tr, NULL, &tra);
    Keel__TaskResult *trs[1] = { &tr };
    Keel__TaskInput input;
    keel_item_task_input (&input, 0, s_input, sizeof s_input);
    Keel__TaskInput *inputs[1] = { &input };
    char *types[1] = { "double" };
    char *ids[1] = { S_SERVICE };
    uint64_t one = 1;
    keel_driver_hello_args_t hello = { .driver_id = S_DRIVER, .heartbeat_ms = 1000 };
    keel_submit_service_args_t service = { .service_id = S_SERVICE, .type = "double" };
    keel_engine_login_args_t login = { .engine_id = S_ENGINE,
                                       .session = "s",
                                       .slots = 1,
                                       .service_types = types,
                                       .n_service_types = 1 };
    keel_login_reply_args_t reply = { .broker_name = S_BROKER,
                                      .engine_timeout_ms = 1,
                                      .heartbeat_ms = 1000 };
    keel_pair_heartbeat_args_t beat = { .state = KEEL__PAIR_STATE__PAIR_STATE_ACTIVE,
                                        .role = "primary",
                                        .endpoints = "tcp://127.0.0.1:1" };
    Keel__ServiceInfo info;
    keel__service_info__init (&info);
    info.service_id = (char *) S_SERVICE;
    Keel__ServiceInfo *infos[] = { &info };
    bool seen[128] = { false };
    size_t count = 35;
    for (size_t i = 0; i < count; i++) {
        keel_msg_t m;
        keel_env_t *env = NULL;
        switch (i) { // one case per builder
            case 0:
                env = keel_msg_heartbeat (&m, KEEL__SENDER_KIND__SENDER_BROKER, NULL, 0);
                break;
            case 1:
                env = keel_msg_relogin (&m, NULL);
                break;
            case 2:
                env = keel_msg_notice (&m, KEEL__NOTICE_LEVEL__NOTICE_INFO, NULL, "hi");
                break;
            case 3:
                env = keel_msg_driver_hello (&m, &hello);
                break;
            case 4:
                env = keel_msg_driver_welcome (&m, S_BROKER, 1, 1000, NULL, 0);
                break;
            case 5:
                env = keel_msg_submit_service (&m, &service);
                break;
            case 6:
                env = keel_msg_submit_tasks (&m, S_SERVICE, inputs, 1);
                break;
            case 7:
                env = keel_msg_accepted (&m, S_SERVICE, NULL, 0);
                break;
            case 8:
                env = keel_msg_refused (&m, S_SERVICE, NULL, 0, KEEL__REFUSE_CODE__REFUSE_INVALID,
                                        NULL);
                break;
            case 9:
                env = keel_msg_task_results (&m, trs, 1);
                break;
            case 10:
                env = keel_msg_result_ack (&m, S_SERVICE, &one, 1, NULL, 0);
                break;
            case 11:
                env = keel_msg_execution_ack (&m, &one, 1);
                break;
            case 12:
                env = keel_msg_close_service (&m, S_SERVICE);
                break;
            case 13:
                env = keel_msg_cancel_service (&m, S_SERVICE);
                break;
            case 14:
                env = keel_msg_detach (&m, ids, 1);
                break;
            case 15:
                env = keel_msg_engine_login (&m, &login);
                break;
            case 16:
                env = keel_msg_login_reply (&m, &reply);
                break;
            case 17:
                env = keel_msg_assign (&m, &assign);
                break;
            case 18:
                env = keel_msg_assigns (&m, assigns, 2);
                break;
            case 19:
                env = keel_msg_result (&m, &result);
                break;
            case 20:
                env = keel_msg_results (&m, results, 2);
                break;
            case 21:
                env = keel_msg_checkpoint (&m, S_SERVICE, 1, 1, NULL, 0);
                break;
            case 22:
                env = keel_msg_cancel (&m, &one, 1, NULL);
                break;
            case 23:
                env = keel_msg_logoff (&m, NULL);
                break;
            case 24:
                env = keel_msg_admin_request (&m, "status", NULL, 0);
                break;
            case 25:
                env = keel_msg_admin_reply (&m, true, NULL, "{}", "");
                break;
            case 26:
                env = keel_msg_passive (&m, "tcp://127.0.0.1:2", NULL);
                break;
            case 27:
                env = keel_msg_pair_heartbeat (&m, &beat);
                break;
            case 28:
                env = keel_msg_pair_update (&m, 1, 1, "x", 1);
                break;
            case 29:
                env = keel_msg_pair_ack (&m, 1);
                break;
            case 30:
                env = keel_msg_pair_sync_request (&m, 0, 0, true);
                break;
            case 31:
                env = keel_msg_pair_snapshot (&m, 1, 1, 1, 0, 1, "x", 1);
                break;
            case 32:
                env = keel_msg_pair_handover (&m, 1);
                break;
            case 33:
                env = keel_msg_service_query (&m, ids, 1);
                break;
            case 34:
                env = keel_msg_service_status (&m, infos, 1);
                break;
        }
        cr_assert_not_null (env);
        keel_error_t err = { "" };
        cr_assert_eq (keel_wire_validate (env, &err), KEEL_OK, "builder %zu: %s", i, err.text);
        zframe_t *frame = keel_wire_encode (env);
        keel_env_t *got = keel_wire_decode (zframe_data (frame), zframe_size (frame), &err);
        cr_assert_not_null (got, "builder %zu: %s", i, err.text);
        cr_assert_lt ((int) got->body_case, 128);
        seen[got->body_case] = true;
        keel_wire_free (&got);
        zframe_destroy (&frame);
    }
    const ProtobufCMessageDescriptor *d = &keel__envelope__descriptor;
    for (unsigned i = 0; i < d->n_fields; i++)
        if (d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            cr_assert (seen[d->fields[i].id], "no builder makes %s", d->fields[i].name);
}
