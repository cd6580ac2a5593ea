/*  wire_build.h — typed message builders: one function per message a
    program sends, so no caller fills protobuf structs by hand.

    A keel_msg_t holds an envelope and room for its body. Each keel_msg_X
    initialises the whole of *msg (version, the sender kind the validation
    table allows for X, the body) and returns &msg->env, ready for
    keel_wire_encode or a send (wire_link.h):

        keel_msg_t msg;
        keel_link_send (dealer, keel_msg_logoff (&msg, "stopping"), &seq);

    Messages that carry lists of submessages (TaskResults, SubmitTasks,
    EngineLogin, LoginReply, DriverHello, Assign and Result batches) take
    arrays of pointers to items the caller fills with the keel_item_X
    functions, in storage it owns (the senders batch into reusable arrays).

    Nothing is copied: a message borrows every string, byte array, list and
    item it is given, and is valid while they are (encode it before they
    change). Nothing needs freeing. A keel_msg_t must not be copied or
    moved once built (the envelope points into it).

    Presence: a builder sets exactly the fields today's senders set, so the
    bytes on the wire do not depend on which code built the message. Where
    a field is optional the parameter says when it is sent ("NULL: absent").
    Values are not checked here: keel_wire_validate (wire_check.h) is the
    one judge, and tests validate what every builder makes.

    Also here: keel_env_init (an empty envelope, for code that still builds
    by hand) and keel_uuid_new (the ids drivers and engines make).
*/
#ifndef KEEL_WIRE_BUILD_H
#define KEEL_WIRE_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "wire_check.h"

typedef struct {
    keel_env_t env;
    union {
        Keel__Heartbeat heartbeat;
        Keel__Relogin relogin;
        Keel__Notice notice;
        Keel__DriverHello driver_hello;
        Keel__DriverWelcome driver_welcome;
        Keel__ServiceQuery service_query;
        Keel__ServiceStatus service_status;
        Keel__SubmitService submit_service;
        Keel__SubmitTasks submit_tasks;
        Keel__Accepted accepted;
        Keel__Refused refused;
        Keel__TaskResults task_results;
        Keel__ResultAck result_ack;
        Keel__CloseService close_service;
        Keel__CancelService cancel_service;
        Keel__Detach detach;
        Keel__EngineLogin engine_login;
        Keel__LoginReply login_reply;
        Keel__Checkpoint checkpoint;
        Keel__Cancel cancel;
        Keel__Logoff logoff;
        Keel__AssignBatch assign_batch;
        Keel__ResultBatch result_batch;
        Keel__AdminRequest admin_request;
        Keel__AdminReply admin_reply;
        Keel__Passive passive;
        Keel__PairHeartbeat pair_heartbeat;
        Keel__PairUpdate pair_update;
        Keel__PairAck pair_ack;
        Keel__PairSyncRequest pair_sync_request;
        Keel__PairSnapshot pair_snapshot;
        Keel__PairHandover pair_handover;
    } body;
} keel_msg_t;

// Initialises an empty envelope for sending with the given sender kind
// (version and sender set, no body).
void keel_env_init (keel_env_t *env, Keel__SenderKind sender);

// A new random UUID in canonical text form (36 chars + NUL) into buf.
void keel_uuid_new (char buf[37]);

// ---------------------------------------------------------------- any side

// Heartbeat from sender (driver, engine or broker). Engines list the
// executions they hold unfinished in running (n may be 0).
keel_env_t *keel_msg_heartbeat (keel_msg_t *msg, Keel__SenderKind sender, const uint64_t *running,
                                size_t n);

// ---------------------------------------------------------------- broker -> driver / engine

// Relogin: "log in / hello again". reason NULL: absent.
keel_env_t *keel_msg_relogin (keel_msg_t *msg, const char *reason);

// Notice for a person at the driver; service_id NULL: not about one service.
keel_env_t *keel_msg_notice (keel_msg_t *msg, Keel__NoticeLevel level, const char *service_id,
                             const char *text);

// DriverWelcome: the broker's answer to a DriverHello, listing the
// services it does not know.
keel_env_t *keel_msg_driver_welcome (keel_msg_t *msg, const char *broker_name, uint64_t epoch,
                                     uint64_t heartbeat_ms, char *const *unknown_services,
                                     size_t n_unknown);

// Passive: "go to the active broker of my pair". active, reason NULL: absent.
keel_env_t *keel_msg_passive (keel_msg_t *msg, const char *active, const char *reason);
// DriverWelcome / LoginReply: the live members of a shared store (borrowed:
// they must outlive the send).
void keel_msg_set_cluster_members (keel_msg_t *msg, char **members, size_t n);

// Sets pair_peer on the DriverWelcome or LoginReply just built in msg
// (peer NULL: absent, as built).
void keel_msg_set_pair_peer (keel_msg_t *msg, const char *peer);
// DriverWelcome.held (the caller keeps the list until the message is
// encoded) and held_alone.
void keel_msg_set_welcome_held (keel_msg_t *msg, Keel__DeliveredTasks **held, size_t n, bool alone);
// DriverWelcome.attached: one ServiceInfo per DriverHello.attach entry
// (the list stays the caller's).
void keel_msg_set_welcome_attached (keel_msg_t *msg, Keel__ServiceInfo **infos, size_t n);
// ServiceStatus: the answer to a ServiceQuery (the list stays the caller's).
keel_env_t *keel_msg_service_status (keel_msg_t *msg, Keel__ServiceInfo **infos, size_t n);

// Marks the Accepted just built in msg as acknowledged by a pair's active
// on its own store alone (Accepted.alone).
void keel_msg_set_accepted_alone (keel_msg_t *msg);

// Accepted: these tasks (none: the SubmitService itself) are durable.
keel_env_t *keel_msg_accepted (keel_msg_t *msg, const char *service_id, const uint64_t *task_ids,
                               size_t n);

// Refused with a code; task_ids may be empty (n 0), error NULL: absent.
keel_env_t *keel_msg_refused (keel_msg_t *msg, const char *service_id, const uint64_t *task_ids,
                              size_t n, Keel__RefuseCode code, const char *error);

// TaskResults: items made with keel_item_task_result.
keel_env_t *keel_msg_task_results (keel_msg_t *msg, Keel__TaskResult *const *results, size_t n);

// ResultAck from a broker to an engine: these executions' results are stored.
keel_env_t *keel_msg_execution_ack (keel_msg_t *msg, const uint64_t *execution_ids, size_t n);

typedef struct {
    const char *broker_name;
    uint64_t epoch;
    uint64_t engine_timeout_ms;
    uint64_t heartbeat_ms;
    Keel__TaskVerdict *const *verdicts; // items made with keel_item_verdict
    size_t n_verdicts;
} keel_login_reply_args_t;

// LoginReply accepting an engine's login (ok = true), with a verdict per
// task it claimed.
keel_env_t *keel_msg_login_reply (keel_msg_t *msg, const keel_login_reply_args_t *args);

// Assign alone; the item is made with keel_item_assign.
keel_env_t *keel_msg_assign (keel_msg_t *msg, const Keel__Assign *assign);

// n (1..KEEL_BATCH_MAX) Assigns for one engine: one alone as an Assign,
// more as one AssignBatch (what a receiver handles the same way).
keel_env_t *keel_msg_assigns (keel_msg_t *msg, Keel__Assign *const *assigns, size_t n);

// Cancel: stop these executions, report nothing. reason NULL: absent.
keel_env_t *keel_msg_cancel (keel_msg_t *msg, const uint64_t *execution_ids, size_t n,
                             const char *reason);

// AdminReply (ok always sent); error, json, text NULL: absent.
keel_env_t *keel_msg_admin_reply (keel_msg_t *msg, bool ok, const char *error, const char *json,
                                  const char *text);

// ---------------------------------------------------------------- broker <-> broker (pair)

typedef struct {
    Keel__PairState state;
    const char *role;       // "primary" or "backup"
    const char *endpoints;  // the sender's PairEndpoint as configured
    uint32_t link;          // the link this is sent on
    const char *advertised; // NULL: absent
    uint64_t applied_seq;
    uint64_t applied_epoch;
    bool synced;
    const char *name;      // NULL: absent
    const char *pair_name; // NULL: absent
    const char *admin;     // NULL: absent
    uint64_t incarnation;  // 0: absent
    uint64_t beat;
} keel_pair_heartbeat_args_t;

keel_env_t *keel_msg_pair_heartbeat (keel_msg_t *msg, const keel_pair_heartbeat_args_t *args);
keel_env_t *keel_msg_pair_update (keel_msg_t *msg, uint64_t seq, uint64_t epoch, const void *batch,
                                  size_t len);
keel_env_t *keel_msg_pair_ack (keel_msg_t *msg, uint64_t seq);
keel_env_t *keel_msg_pair_sync_request (keel_msg_t *msg, uint64_t applied_seq,
                                        uint64_t applied_epoch, bool full);
keel_env_t *keel_msg_pair_snapshot (keel_msg_t *msg, uint64_t snapshot_id, uint64_t seq,
                                    uint64_t epoch, uint64_t offset, uint64_t total,
                                    const void *data, size_t len);
keel_env_t *keel_msg_pair_handover (keel_msg_t *msg, uint64_t seq);

// ---------------------------------------------------------------- driver -> broker

typedef struct {
    const char *driver_id;
    char *const *services; // open service ids
    size_t n_services;
    Keel__DeliveredTasks *const *delivered; // items made with keel_item_delivered
    size_t n_delivered;
    uint64_t broker_timeout_ms;
    uint64_t heartbeat_ms;
    bool primary;
    Keel__AttachService *const *attach; // services taken over (keel_item_attach)
    size_t n_attach;
} keel_driver_hello_args_t;

// DriverHello (broker_timeout_ms, heartbeat_ms, primary always sent).
keel_env_t *keel_msg_driver_hello (keel_msg_t *msg, const keel_driver_hello_args_t *args);

// ServiceQuery: how do these services stand (answered with ServiceStatus).
keel_env_t *keel_msg_service_query (keel_msg_t *msg, char *const *service_ids, size_t n);

typedef struct {
    const char *service_id;
    const char *type;
    int32_t priority;
    uint32_t max_attempts;       // 0: the broker's MaxAttempts
    int64_t reschedule_delay_ms; // -1: the broker's RescheduleDelay
    const uint8_t *init_data;    // NULL: absent
    size_t init_size;
    const char *condition; // NULL or "": absent (no condition)
} keel_submit_service_args_t;

// SubmitService (priority, max_attempts, reschedule_delay_ms always sent).
keel_env_t *keel_msg_submit_service (keel_msg_t *msg, const keel_submit_service_args_t *args);

// SubmitTasks: items made with keel_item_task_input.
keel_env_t *keel_msg_submit_tasks (keel_msg_t *msg, const char *service_id,
                                   Keel__TaskInput *const *tasks, size_t n);

// ResultAck from a driver: it holds the results of these task ids and of
// the ranges in delivered (ranges.h coding); either list may be empty.
keel_env_t *keel_msg_result_ack (keel_msg_t *msg, const char *service_id, const uint64_t *task_ids,
                                 size_t n_task_ids, const uint64_t *delivered, size_t n_delivered);

keel_env_t *keel_msg_close_service (keel_msg_t *msg, const char *service_id);
keel_env_t *keel_msg_cancel_service (keel_msg_t *msg, const char *service_id);

// Detach: the driver has moved these services back to its primary.
keel_env_t *keel_msg_detach (keel_msg_t *msg, char *const *service_ids, size_t n);

// ---------------------------------------------------------------- engine -> broker

typedef struct {
    const char *engine_id;
    const char *session;
    const char *host; // NULL: absent
    uint32_t slots;
    uint32_t pid;
    char *const *service_types;
    size_t n_service_types;
    Keel__HeldTask *const *held; // items made with keel_item_held_task
    size_t n_held;
    const char *moved_from;                  // NULL or "": absent (EngineLogin.moved_from)
    Keel__EngineProperty *const *properties; // name and value each (EngineLogin.properties)
    size_t n_properties;
} keel_engine_login_args_t;

// EngineLogin (slots and pid always sent).
keel_env_t *keel_msg_engine_login (keel_msg_t *msg, const keel_engine_login_args_t *args);

// Result alone; the item is made with keel_item_result. Also the form a
// result takes in the engine's spool.
keel_env_t *keel_msg_result (keel_msg_t *msg, const Keel__Result *result);

// n (1..KEEL_BATCH_MAX) Results: one alone as a Result, more as one
// ResultBatch.
keel_env_t *keel_msg_results (keel_msg_t *msg, Keel__Result *const *results, size_t n);

// Checkpoint of a running execution (data always sent, empty if size 0).
keel_env_t *keel_msg_checkpoint (keel_msg_t *msg, const char *service_id, uint64_t task_id,
                                 uint64_t execution_id, const uint8_t *data, size_t size);

// Logoff; reason NULL: absent.
keel_env_t *keel_msg_logoff (keel_msg_t *msg, const char *reason);

// ---------------------------------------------------------------- admin -> broker

keel_env_t *keel_msg_admin_request (keel_msg_t *msg, const char *command, char *const *args,
                                    size_t n_args);

// ---------------------------------------------------------------- items of lists

// A task of a SubmitTasks (input always sent, empty if size 0).
void keel_item_task_input (Keel__TaskInput *item, uint64_t task_id, const uint8_t *input,
                           size_t size);

// One service a driver takes over, for DriverHello.attach.
void keel_item_attach (Keel__AttachService *item, const char *service_id, bool all);

// One service's results held by a driver, for DriverHello.delivered.
void keel_item_delivered (Keel__DeliveredTasks *item, const char *service_id,
                          const uint64_t *ranges, size_t n);

typedef struct {
    const char *service_id;
    uint64_t task_id;
    Keel__TaskStatus status;
    const uint8_t *output; // NULL: absent
    size_t output_size;
    const char *error;     // NULL: absent
    const char *engine_id; // NULL or "": absent
    uint64_t execution_id;
    uint32_t attempts;
    uint64_t queued_ms; // Timings, when the item has them
    uint64_t run_ms;
} keel_task_result_args_t;

// A result for a driver (task_id, status, execution_id, attempts always
// sent). With timings (storage the item points to) queued_ms and run_ms
// are sent as Timings; timings NULL: absent.
void keel_item_task_result (Keel__TaskResult *item, Keel__Timings *timings,
                            const keel_task_result_args_t *args);

// A verdict on one task an engine claimed at login.
void keel_item_verdict (Keel__TaskVerdict *item, const char *service_id, uint64_t task_id,
                        uint64_t execution_id, Keel__Verdict verdict);

typedef struct {
    const char *service_id;
    const char *type;
    uint64_t task_id;
    uint64_t execution_id;
    const uint8_t *input; // always sent, empty if input_size is 0
    size_t input_size;
    const uint8_t *memory; // the last checkpoint; NULL: absent
    size_t memory_size;
    uint32_t attempt;         // always sent
    const uint8_t *init_data; // first Assign of the service to the engine; NULL: absent
    size_t init_size;
} keel_assign_args_t;

void keel_item_assign (Keel__Assign *item, const keel_assign_args_t *args);

typedef struct {
    const char *service_id;
    uint64_t task_id;
    uint64_t execution_id;
    Keel__TaskStatus status;
    const uint8_t *output; // sent with an OK status (empty if NULL)
    size_t output_size;
    const char *error; // sent with any other status; NULL: absent
    bool permanent;    // sent (as true) only when true, not with OK
    uint64_t run_us;   // always sent, as run_us and (rounded down) run_ms
} keel_result_args_t;

void keel_item_result (Keel__Result *item, const keel_result_args_t *args);

// A task an engine holds at login: done when result is not NULL (its
// Result rides along, made with keel_item_result), running otherwise.
void keel_item_held_task (Keel__HeldTask *item, const char *service_id, uint64_t task_id,
                          uint64_t execution_id, const Keel__Result *result);

#endif
