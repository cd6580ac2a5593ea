/*  wire_build.c — typed message builders. See wire_build.h.

    Every builder starts from the protobuf-c INIT of its body (all fields
    absent) and sets what its senders have always set, no more: the bytes
    must not change with the code that builds them.
*/
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <czmq.h>
#include "wire_build.h"

// protobuf-c's structs are not const-correct: a message only reads what it
// points to (encoding), so the builders' const inputs are cast once here.
#define S_STR(s)      ((char *) (s))
#define S_U64S(v)     ((uint64_t *) (v))
#define S_BYTES(d, n) ((ProtobufCBinaryData) { (n), (uint8_t *) (d) })

void
keel_env_init (keel_env_t *env, Keel__SenderKind sender)
{
    keel__envelope__init (env);
    env->has_version = true;
    env->version = KEEL_PROTOCOL_VERSION;
    env->has_sender = true;
    env->sender = sender;
}

// Starts msg as an envelope from sender with the given body case.
static keel_env_t *
s_env (keel_msg_t *msg, Keel__SenderKind sender, Keel__Envelope__BodyCase body)
{
    keel_env_init (&msg->env, sender);
    msg->env.body_case = body;
    return &msg->env;
}

#define S_BROKER KEEL__SENDER_KIND__SENDER_BROKER
#define S_DRIVER KEEL__SENDER_KIND__SENDER_DRIVER
#define S_ENGINE KEEL__SENDER_KIND__SENDER_ENGINE
#define S_ADMIN  KEEL__SENDER_KIND__SENDER_ADMIN

// ---------------------------------------------------------------- any side

keel_env_t *
keel_msg_heartbeat (keel_msg_t *msg, Keel__SenderKind sender, const uint64_t *running, size_t n)
{
    Keel__Heartbeat *m = &msg->body.heartbeat;
    keel__heartbeat__init (m);
    m->n_running = n;
    m->running = S_U64S (running);
    keel_env_t *env = s_env (msg, sender, KEEL__ENVELOPE__BODY_HEARTBEAT);
    env->heartbeat = m;
    return env;
}

// ---------------------------------------------------------------- broker -> driver / engine

keel_env_t *
keel_msg_relogin (keel_msg_t *msg, const char *reason)
{
    Keel__Relogin *m = &msg->body.relogin;
    keel__relogin__init (m);
    m->reason = S_STR (reason);
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_RELOGIN);
    env->relogin = m;
    return env;
}

keel_env_t *
keel_msg_notice (keel_msg_t *msg, Keel__NoticeLevel level, const char *service_id, const char *text)
{
    Keel__Notice *m = &msg->body.notice;
    keel__notice__init (m);
    m->has_level = true;
    m->level = level;
    m->text = S_STR (text);
    m->service_id = S_STR (service_id);
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_NOTICE);
    env->notice = m;
    return env;
}

keel_env_t *
keel_msg_passive (keel_msg_t *msg, const char *active, const char *reason)
{
    Keel__Passive *m = &msg->body.passive;
    keel__passive__init (m);
    m->active = S_STR (active);
    m->reason = S_STR (reason);
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_PASSIVE);
    env->passive = m;
    return env;
}

void
keel_msg_set_accepted_alone (keel_msg_t *msg)
{
    if (msg->env.body_case == KEEL__ENVELOPE__BODY_ACCEPTED) {
        msg->body.accepted.has_alone = true;
        msg->body.accepted.alone = true;
    }
}

void
keel_msg_set_pair_peer (keel_msg_t *msg, const char *peer)
{
    if (msg->env.body_case == KEEL__ENVELOPE__BODY_DRIVER_WELCOME)
        msg->body.driver_welcome.pair_peer = S_STR (peer);
    else if (msg->env.body_case == KEEL__ENVELOPE__BODY_LOGIN_REPLY)
        msg->body.login_reply.pair_peer = S_STR (peer);
}

void
keel_msg_set_cluster_members (keel_msg_t *msg, char **members, size_t n)
{
    if (msg->env.body_case == KEEL__ENVELOPE__BODY_DRIVER_WELCOME) {
        msg->body.driver_welcome.cluster_members = members;
        msg->body.driver_welcome.n_cluster_members = n;
    }
    else if (msg->env.body_case == KEEL__ENVELOPE__BODY_LOGIN_REPLY) {
        msg->body.login_reply.cluster_members = members;
        msg->body.login_reply.n_cluster_members = n;
    }
}

void
keel_msg_set_welcome_held (keel_msg_t *msg, Keel__DeliveredTasks **held, size_t n, bool alone)
{
    if (msg->env.body_case != KEEL__ENVELOPE__BODY_DRIVER_WELCOME)
        return;
    msg->body.driver_welcome.n_held = n;
    msg->body.driver_welcome.held = held;
    msg->body.driver_welcome.has_held_alone = n > 0 && alone;
    msg->body.driver_welcome.held_alone = n > 0 && alone;
}

void
keel_msg_set_welcome_attached (keel_msg_t *msg, Keel__ServiceInfo **infos, size_t n)
{
    if (msg->env.body_case != KEEL__ENVELOPE__BODY_DRIVER_WELCOME)
        return;
    msg->body.driver_welcome.n_attached = n;
    msg->body.driver_welcome.attached = infos;
}

keel_env_t *
keel_msg_service_status (keel_msg_t *msg, Keel__ServiceInfo **infos, size_t n)
{
    Keel__ServiceStatus *m = &msg->body.service_status;
    keel__service_status__init (m);
    m->n_services = n;
    m->services = infos;
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_SERVICE_STATUS);
    env->service_status = m;
    return env;
}

keel_env_t *
keel_msg_driver_welcome (keel_msg_t *msg, const char *broker_name, uint64_t epoch,
                         uint64_t heartbeat_ms, char *const *unknown_services, size_t n_unknown)
{
    Keel__DriverWelcome *m = &msg->body.driver_welcome;
    keel__driver_welcome__init (m);
    m->broker_name = S_STR (broker_name);
    m->has_epoch = true;
    m->epoch = epoch;
    m->has_heartbeat_ms = true;
    m->heartbeat_ms = heartbeat_ms;
    m->n_unknown_services = n_unknown;
    m->unknown_services = (char **) unknown_services;
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_DRIVER_WELCOME);
    env->driver_welcome = m;
    return env;
}

keel_env_t *
keel_msg_accepted (keel_msg_t *msg, const char *service_id, const uint64_t *task_ids, size_t n)
{
    Keel__Accepted *m = &msg->body.accepted;
    keel__accepted__init (m);
    m->service_id = S_STR (service_id);
    m->n_task_ids = n;
    m->task_ids = S_U64S (task_ids);
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_ACCEPTED);
    env->accepted = m;
    return env;
}

keel_env_t *
keel_msg_refused (keel_msg_t *msg, const char *service_id, const uint64_t *task_ids, size_t n,
                  Keel__RefuseCode code, const char *error)
{
    Keel__Refused *m = &msg->body.refused;
    keel__refused__init (m);
    m->service_id = S_STR (service_id);
    m->n_task_ids = n;
    m->task_ids = S_U64S (task_ids);
    m->has_code = true;
    m->code = code;
    m->error = S_STR (error);
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_REFUSED);
    env->refused = m;
    return env;
}

keel_env_t *
keel_msg_task_results (keel_msg_t *msg, Keel__TaskResult *const *results, size_t n)
{
    Keel__TaskResults *m = &msg->body.task_results;
    keel__task_results__init (m);
    m->n_results = n;
    m->results = (Keel__TaskResult **) results;
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_TASK_RESULTS);
    env->task_results = m;
    return env;
}

keel_env_t *
keel_msg_execution_ack (keel_msg_t *msg, const uint64_t *execution_ids, size_t n)
{
    Keel__ResultAck *m = &msg->body.result_ack;
    keel__result_ack__init (m);
    m->n_execution_ids = n;
    m->execution_ids = S_U64S (execution_ids);
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_RESULT_ACK);
    env->result_ack = m;
    return env;
}

keel_env_t *
keel_msg_login_reply (keel_msg_t *msg, const keel_login_reply_args_t *args)
{
    Keel__LoginReply *m = &msg->body.login_reply;
    keel__login_reply__init (m);
    m->has_ok = true;
    m->ok = true;
    m->broker_name = S_STR (args->broker_name);
    m->has_epoch = true;
    m->epoch = args->epoch;
    m->has_engine_timeout_ms = true;
    m->engine_timeout_ms = args->engine_timeout_ms;
    m->has_heartbeat_ms = true;
    m->heartbeat_ms = args->heartbeat_ms;
    m->n_verdicts = args->n_verdicts;
    m->verdicts = (Keel__TaskVerdict **) args->verdicts;
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_LOGIN_REPLY);
    env->login_reply = m;
    return env;
}

keel_env_t *
keel_msg_assign (keel_msg_t *msg, const Keel__Assign *assign)
{
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_ASSIGN);
    env->assign = (Keel__Assign *) assign;
    return env;
}

keel_env_t *
keel_msg_assigns (keel_msg_t *msg, Keel__Assign *const *assigns, size_t n)
{
    if (n == 1)
        return keel_msg_assign (msg, assigns[0]);
    Keel__AssignBatch *m = &msg->body.assign_batch;
    keel__assign_batch__init (m);
    m->n_assigns = n;
    m->assigns = (Keel__Assign **) assigns;
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_ASSIGN_BATCH);
    env->assign_batch = m;
    return env;
}

keel_env_t *
keel_msg_cancel (keel_msg_t *msg, const uint64_t *execution_ids, size_t n, const char *reason)
{
    Keel__Cancel *m = &msg->body.cancel;
    keel__cancel__init (m);
    m->n_execution_ids = n;
    m->execution_ids = S_U64S (execution_ids);
    m->reason = S_STR (reason);
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_CANCEL);
    env->cancel = m;
    return env;
}

keel_env_t *
keel_msg_admin_reply (keel_msg_t *msg, bool ok, const char *error, const char *json,
                      const char *text)
{
    Keel__AdminReply *m = &msg->body.admin_reply;
    keel__admin_reply__init (m);
    m->has_ok = true;
    m->ok = ok;
    m->error = S_STR (error);
    m->json = S_STR (json);
    m->text = S_STR (text);
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_ADMIN_REPLY);
    env->admin_reply = m;
    return env;
}

// ---------------------------------------------------------------- driver -> broker

keel_env_t *
keel_msg_driver_hello (keel_msg_t *msg, const keel_driver_hello_args_t *args)
{
    Keel__DriverHello *m = &msg->body.driver_hello;
    keel__driver_hello__init (m);
    m->driver_id = S_STR (args->driver_id);
    m->n_services = args->n_services;
    m->services = (char **) args->services;
    m->n_delivered = args->n_delivered;
    m->delivered = (Keel__DeliveredTasks **) args->delivered;
    m->has_broker_timeout_ms = true;
    m->broker_timeout_ms = args->broker_timeout_ms;
    m->has_heartbeat_ms = true;
    m->heartbeat_ms = args->heartbeat_ms;
    m->has_primary = true;
    m->primary = args->primary;
    m->n_attach = args->n_attach;
    m->attach = (Keel__AttachService **) args->attach;
    keel_env_t *env = s_env (msg, S_DRIVER, KEEL__ENVELOPE__BODY_DRIVER_HELLO);
    env->driver_hello = m;
    return env;
}

keel_env_t *
keel_msg_service_query (keel_msg_t *msg, char *const *service_ids, size_t n)
{
    Keel__ServiceQuery *m = &msg->body.service_query;
    keel__service_query__init (m);
    m->n_service_ids = n;
    m->service_ids = (char **) service_ids;
    keel_env_t *env = s_env (msg, S_DRIVER, KEEL__ENVELOPE__BODY_SERVICE_QUERY);
    env->service_query = m;
    return env;
}

keel_env_t *
keel_msg_submit_service (keel_msg_t *msg, const keel_submit_service_args_t *args)
{
    Keel__SubmitService *m = &msg->body.submit_service;
    keel__submit_service__init (m);
    m->service_id = S_STR (args->service_id);
    m->type = S_STR (args->type);
    m->has_priority = true;
    m->priority = args->priority;
    m->has_max_attempts = true;
    m->max_attempts = args->max_attempts;
    m->has_reschedule_delay_ms = true;
    m->reschedule_delay_ms = args->reschedule_delay_ms;
    if (args->init_data) {
        m->has_init_data = true;
        m->init_data = S_BYTES (args->init_data, args->init_size);
    }
    m->condition = args->condition && args->condition[0] ? S_STR (args->condition) : NULL;
    keel_env_t *env = s_env (msg, S_DRIVER, KEEL__ENVELOPE__BODY_SUBMIT_SERVICE);
    env->submit_service = m;
    return env;
}

keel_env_t *
keel_msg_submit_tasks (keel_msg_t *msg, const char *service_id, Keel__TaskInput *const *tasks,
                       size_t n)
{
    Keel__SubmitTasks *m = &msg->body.submit_tasks;
    keel__submit_tasks__init (m);
    m->service_id = S_STR (service_id);
    m->n_tasks = n;
    m->tasks = (Keel__TaskInput **) tasks;
    keel_env_t *env = s_env (msg, S_DRIVER, KEEL__ENVELOPE__BODY_SUBMIT_TASKS);
    env->submit_tasks = m;
    return env;
}

keel_env_t *
keel_msg_result_ack (keel_msg_t *msg, const char *service_id, const uint64_t *task_ids,
                     size_t n_task_ids, const uint64_t *delivered, size_t n_delivered)
{
    Keel__ResultAck *m = &msg->body.result_ack;
    keel__result_ack__init (m);
    m->service_id = S_STR (service_id);
    m->n_task_ids = n_task_ids;
    m->task_ids = S_U64S (task_ids);
    m->n_delivered = n_delivered;
    m->delivered = S_U64S (delivered);
    keel_env_t *env = s_env (msg, S_DRIVER, KEEL__ENVELOPE__BODY_RESULT_ACK);
    env->result_ack = m;
    return env;
}

keel_env_t *
keel_msg_close_service (keel_msg_t *msg, const char *service_id)
{
    Keel__CloseService *m = &msg->body.close_service;
    keel__close_service__init (m);
    m->service_id = S_STR (service_id);
    keel_env_t *env = s_env (msg, S_DRIVER, KEEL__ENVELOPE__BODY_CLOSE_SERVICE);
    env->close_service = m;
    return env;
}

keel_env_t *
keel_msg_cancel_service (keel_msg_t *msg, const char *service_id)
{
    Keel__CancelService *m = &msg->body.cancel_service;
    keel__cancel_service__init (m);
    m->service_id = S_STR (service_id);
    keel_env_t *env = s_env (msg, S_DRIVER, KEEL__ENVELOPE__BODY_CANCEL_SERVICE);
    env->cancel_service = m;
    return env;
}

keel_env_t *
keel_msg_detach (keel_msg_t *msg, char *const *service_ids, size_t n)
{
    Keel__Detach *m = &msg->body.detach;
    keel__detach__init (m);
    m->n_service_ids = n;
    m->service_ids = (char **) service_ids;
    keel_env_t *env = s_env (msg, S_DRIVER, KEEL__ENVELOPE__BODY_DETACH);
    env->detach = m;
    return env;
}

// ---------------------------------------------------------------- engine -> broker

keel_env_t *
keel_msg_engine_login (keel_msg_t *msg, const keel_engine_login_args_t *args)
{
    Keel__EngineLogin *m = &msg->body.engine_login;
    keel__engine_login__init (m);
    m->engine_id = S_STR (args->engine_id);
    m->session = S_STR (args->session);
    m->host = S_STR (args->host);
    m->has_slots = true;
    m->slots = args->slots;
    m->has_pid = true;
    m->pid = args->pid;
    m->n_service_types = args->n_service_types;
    m->service_types = (char **) args->service_types;
    m->n_held = args->n_held;
    m->held = (Keel__HeldTask **) args->held;
    m->moved_from = args->moved_from && args->moved_from[0] ? S_STR (args->moved_from) : NULL;
    m->n_properties = args->n_properties;
    m->properties = (Keel__EngineProperty **) args->properties;
    keel_env_t *env = s_env (msg, S_ENGINE, KEEL__ENVELOPE__BODY_ENGINE_LOGIN);
    env->engine_login = m;
    return env;
}

keel_env_t *
keel_msg_result (keel_msg_t *msg, const Keel__Result *result)
{
    keel_env_t *env = s_env (msg, S_ENGINE, KEEL__ENVELOPE__BODY_RESULT);
    env->result = (Keel__Result *) result;
    return env;
}

keel_env_t *
keel_msg_results (keel_msg_t *msg, Keel__Result *const *results, size_t n)
{
    if (n == 1)
        return keel_msg_result (msg, results[0]);
    Keel__ResultBatch *m = &msg->body.result_batch;
    keel__result_batch__init (m);
    m->n_results = n;
    m->results = (Keel__Result **) results;
    keel_env_t *env = s_env (msg, S_ENGINE, KEEL__ENVELOPE__BODY_RESULT_BATCH);
    env->result_batch = m;
    return env;
}

keel_env_t *
keel_msg_checkpoint (keel_msg_t *msg, const char *service_id, uint64_t task_id,
                     uint64_t execution_id, const uint8_t *data, size_t size)
{
    Keel__Checkpoint *m = &msg->body.checkpoint;
    keel__checkpoint__init (m);
    m->service_id = S_STR (service_id);
    m->has_task_id = m->has_execution_id = m->has_data = true;
    m->task_id = task_id;
    m->execution_id = execution_id;
    m->data = S_BYTES (data, size);
    keel_env_t *env = s_env (msg, S_ENGINE, KEEL__ENVELOPE__BODY_CHECKPOINT);
    env->checkpoint = m;
    return env;
}

keel_env_t *
keel_msg_logoff (keel_msg_t *msg, const char *reason)
{
    Keel__Logoff *m = &msg->body.logoff;
    keel__logoff__init (m);
    m->reason = S_STR (reason);
    keel_env_t *env = s_env (msg, S_ENGINE, KEEL__ENVELOPE__BODY_LOGOFF);
    env->logoff = m;
    return env;
}

// ---------------------------------------------------------------- admin -> broker

keel_env_t *
keel_msg_admin_request (keel_msg_t *msg, const char *command, char *const *args, size_t n_args)
{
    Keel__AdminRequest *m = &msg->body.admin_request;
    keel__admin_request__init (m);
    m->command = S_STR (command);
    m->n_args = n_args;
    m->args = (char **) args;
    keel_env_t *env = s_env (msg, S_ADMIN, KEEL__ENVELOPE__BODY_ADMIN_REQUEST);
    env->admin_request = m;
    return env;
}

// ---------------------------------------------------------------- items of lists

void
keel_item_task_input (Keel__TaskInput *item, uint64_t task_id, const uint8_t *input, size_t size)
{
    keel__task_input__init (item);
    item->has_task_id = true;
    item->task_id = task_id;
    item->has_input = true;
    item->input = S_BYTES (input, size);
}

void
keel_item_delivered (Keel__DeliveredTasks *item, const char *service_id, const uint64_t *ranges,
                     size_t n)
{
    keel__delivered_tasks__init (item);
    item->service_id = S_STR (service_id);
    item->n_ranges = n;
    item->ranges = S_U64S (ranges);
}

void
keel_item_attach (Keel__AttachService *item, const char *service_id, bool all)
{
    keel__attach_service__init (item);
    item->service_id = S_STR (service_id);
    item->has_all = all;
    item->all = all;
}

void
keel_item_task_result (Keel__TaskResult *item, Keel__Timings *timings,
                       const keel_task_result_args_t *args)
{
    keel__task_result__init (item);
    item->service_id = S_STR (args->service_id);
    item->has_task_id = true;
    item->task_id = args->task_id;
    item->has_status = true;
    item->status = args->status;
    if (args->output) {
        item->has_output = true;
        item->output = S_BYTES (args->output, args->output_size);
    }
    item->error = S_STR (args->error);
    item->engine_id = args->engine_id && args->engine_id[0] ? S_STR (args->engine_id) : NULL;
    item->has_execution_id = true;
    item->execution_id = args->execution_id;
    item->has_attempts = true;
    item->attempts = args->attempts;
    if (timings) {
        keel__timings__init (timings);
        timings->has_queued_ms = true;
        timings->queued_ms = args->queued_ms;
        timings->has_run_ms = true;
        timings->run_ms = args->run_ms;
        item->timings = timings;
    }
}

void
keel_item_verdict (Keel__TaskVerdict *item, const char *service_id, uint64_t task_id,
                   uint64_t execution_id, Keel__Verdict verdict)
{
    keel__task_verdict__init (item);
    item->service_id = S_STR (service_id);
    item->has_task_id = true;
    item->task_id = task_id;
    item->has_execution_id = true;
    item->execution_id = execution_id;
    item->has_verdict = true;
    item->verdict = verdict;
}

void
keel_item_assign (Keel__Assign *item, const keel_assign_args_t *args)
{
    keel__assign__init (item);
    item->service_id = S_STR (args->service_id);
    item->type = S_STR (args->type);
    item->has_task_id = true;
    item->task_id = args->task_id;
    item->has_execution_id = true;
    item->execution_id = args->execution_id;
    item->has_input = true;
    item->input = S_BYTES (args->input, args->input_size);
    if (args->memory) {
        item->has_memory = true;
        item->memory = S_BYTES (args->memory, args->memory_size);
    }
    item->has_attempt = true;
    item->attempt = args->attempt;
    if (args->init_data) {
        item->has_init_data = true;
        item->init_data = S_BYTES (args->init_data, args->init_size);
    }
}

void
keel_item_result (Keel__Result *item, const keel_result_args_t *args)
{
    keel__result__init (item);
    item->service_id = S_STR (args->service_id);
    item->has_task_id = true;
    item->task_id = args->task_id;
    item->has_execution_id = true;
    item->execution_id = args->execution_id;
    item->has_status = true;
    item->status = args->status;
    if (args->status == KEEL__TASK_STATUS__STATUS_OK) {
        item->has_output = true;
        item->output = S_BYTES (args->output, args->output_size);
    }
    else {
        item->error = S_STR (args->error);
        item->has_permanent = args->permanent;
        item->permanent = args->permanent;
    }
    item->has_run_ms = true;
    item->run_ms = args->run_us / 1000;
    item->has_run_us = true;
    item->run_us = args->run_us;
}

void
keel_item_held_task (Keel__HeldTask *item, const char *service_id, uint64_t task_id,
                     uint64_t execution_id, const Keel__Result *result)
{
    keel__held_task__init (item);
    item->service_id = S_STR (service_id);
    item->has_task_id = item->has_execution_id = item->has_state = true;
    item->task_id = task_id;
    item->execution_id = execution_id;
    item->state = result ? KEEL__HELD_STATE__HELD_DONE : KEEL__HELD_STATE__HELD_RUNNING;
    item->result = (Keel__Result *) result;
}

// ---------------------------------------------------------------- ids

void
keel_uuid_new (char buf[37])
{
    uint8_t bytes[16];
    if (getrandom (bytes, sizeof bytes, 0) != (ssize_t) sizeof bytes) {
        // No kernel randomness: zuuid falls back on its own sources.
        zuuid_t *uuid = zuuid_new ();
        snprintf (buf, 37, "%s", zuuid_str_canonical (uuid));
        zuuid_destroy (&uuid);
        return;
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    static const char hex[] = "0123456789abcdef";
    char *out = buf;
    for (size_t i = 0; i < sizeof bytes; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *out++ = '-';
        *out++ = hex[bytes[i] >> 4];
        *out++ = hex[bytes[i] & 0x0f];
    }
    *out = 0;
}

// ---------------------------------------------------------------- broker <-> broker (pair)

keel_env_t *
keel_msg_pair_heartbeat (keel_msg_t *msg, const keel_pair_heartbeat_args_t *args)
{
    Keel__PairHeartbeat *m = &msg->body.pair_heartbeat;
    keel__pair_heartbeat__init (m);
    m->has_state = true;
    m->state = args->state;
    m->role = S_STR (args->role);
    m->endpoints = S_STR (args->endpoints);
    m->has_link = true;
    m->link = args->link;
    m->advertised = S_STR (args->advertised);
    m->has_applied_seq = true;
    m->applied_seq = args->applied_seq;
    m->has_applied_epoch = true;
    m->applied_epoch = args->applied_epoch;
    m->has_synced = true;
    m->synced = args->synced;
    m->name = S_STR (args->name);
    m->pair_name = S_STR (args->pair_name);
    m->admin = S_STR (args->admin);
    if (args->incarnation) {
        m->has_incarnation = true;
        m->incarnation = args->incarnation;
        m->has_beat = true;
        m->beat = args->beat;
    }
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_PAIR_HEARTBEAT);
    env->pair_heartbeat = m;
    return env;
}

keel_env_t *
keel_msg_pair_update (keel_msg_t *msg, uint64_t seq, uint64_t epoch, const void *batch, size_t len)
{
    Keel__PairUpdate *m = &msg->body.pair_update;
    keel__pair_update__init (m);
    m->has_seq = true;
    m->seq = seq;
    m->has_epoch = true;
    m->epoch = epoch;
    m->has_batch = true;
    m->batch = S_BYTES (batch, len);
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_PAIR_UPDATE);
    env->pair_update = m;
    return env;
}

keel_env_t *
keel_msg_pair_ack (keel_msg_t *msg, uint64_t seq)
{
    Keel__PairAck *m = &msg->body.pair_ack;
    keel__pair_ack__init (m);
    m->has_seq = true;
    m->seq = seq;
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_PAIR_ACK);
    env->pair_ack = m;
    return env;
}

keel_env_t *
keel_msg_pair_sync_request (keel_msg_t *msg, uint64_t applied_seq, uint64_t applied_epoch,
                            bool full)
{
    Keel__PairSyncRequest *m = &msg->body.pair_sync_request;
    keel__pair_sync_request__init (m);
    m->has_applied_seq = true;
    m->applied_seq = applied_seq;
    m->has_applied_epoch = true;
    m->applied_epoch = applied_epoch;
    m->has_full = true;
    m->full = full;
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_PAIR_SYNC_REQUEST);
    env->pair_sync_request = m;
    return env;
}

keel_env_t *
keel_msg_pair_snapshot (keel_msg_t *msg, uint64_t snapshot_id, uint64_t seq, uint64_t epoch,
                        uint64_t offset, uint64_t total, const void *data, size_t len)
{
    Keel__PairSnapshot *m = &msg->body.pair_snapshot;
    keel__pair_snapshot__init (m);
    m->has_snapshot_id = true;
    m->snapshot_id = snapshot_id;
    m->has_seq = true;
    m->seq = seq;
    m->has_epoch = true;
    m->epoch = epoch;
    m->has_offset = true;
    m->offset = offset;
    m->has_total = true;
    m->total = total;
    m->has_data = true;
    m->data = S_BYTES (data, len);
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_PAIR_SNAPSHOT);
    env->pair_snapshot = m;
    return env;
}

keel_env_t *
keel_msg_pair_handover (keel_msg_t *msg, uint64_t seq)
{
    Keel__PairHandover *m = &msg->body.pair_handover;
    keel__pair_handover__init (m);
    m->has_seq = true;
    m->seq = seq;
    keel_env_t *env = s_env (msg, S_BROKER, KEEL__ENVELOPE__BODY_PAIR_HANDOVER);
    env->pair_handover = m;
    return env;
}
