/*  actor_int.h — state shared by the driver actor's loop (actor.c), its
    broker side (actor_broker.c, actor_inbox.c) and its acknowledgements
    held for the application (actor_acks.c). Private to the driver library:
    nothing outside those files includes it. The interface to the application
    thread is actor.h; the public API is include/keel/driver.h.
*/
#ifndef KEEL_DRIVER_ACTOR_INT_H
#define KEEL_DRIVER_ACTOR_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <czmq.h>

#include "actor.h"
#include "actor_lend.h"
#include "fifo.h"
#include "log.h"
#include "outstanding.h"
#include "session.h"

#define KEEL_ACTOR_CLOSE_LINGER_MS 2000 // time a Detach gets to leave a closed socket

// One service the application opened; owned by keel_actor_t.services.
typedef struct {
    keel_actor_open_t *open;
    keel_outstanding_t *tasks;
    bool submitted;  // SubmitService sent on the current session socket
    bool closing;    // the application closed it
    bool close_sent; // CloseService sent on the current session socket
    bool cancelled;  // cancelled or refused: nothing more is sent
    bool cancel_sent;
    bool finished;          // closed, every result delivered, CloseService sent: nothing left to do
    int64_t resubmitted_at; // last full resubmission after UNKNOWN_SERVICE
    bool detaching;         // keel_service_detach: results ignored; close once all Accepted
    bool detached;          // ... done: CloseService sent, nothing more here
    bool attach_known;      // ATTACH*: a broker described it (its task ids are in tasks)
    bool attach_failed;     // ATTACH*: the first broker to answer did not know it
    int64_t expect;         // ATTACH*: results waited for in all (ids added - skipped)
    int64_t queried_at;     // WATCH: last ServiceQuery sent
    uint64_t *acks;         // task ids handed to the application, not yet acknowledged
    size_t nacks, acks_cap;
} keel_actor_service_t;

// A result or status event waiting for room in the pipe.
typedef struct {
    keel_actor_to_app_kind_t kind;
    void *item;                    // keel_result_t * or keel_actor_status_t *
    keel_actor_service_t *service; // RESULT: acknowledge to it once handed over
    uint64_t task_id;
} keel_actor_to_app_t;

// A result handed to the application, not acknowledged before the
// application says it kept it (keel_driver_hold_acks).
typedef struct {
    keel_actor_service_t *service; // NULL: nothing to acknowledge
    uint64_t task_id;
    uint64_t seq; // handed-over results before it (the application counts the same)
} keel_actor_kept_t;

// The actor's state. Made by the application thread (keel_actor_new),
// freed by the actor thread. Two groups of fields:
// - the actor thread's own (never lent): pipe, held, kicked, stopping,
//   terminated;
// - everything else, touched only by the holder of `lend` (actor_lend.h):
//   the actor thread in a turn, or the application thread in a lend.
struct _keel_actor_t {
    keel_lend_t *lend;   // the token itself (internally synchronised)
    zsock_t *pipe;       // the actor's end of the pipe (actor thread only)
    zmsg_t *held;        // a command read while parked, applied next turn (actor thread only)
    bool kicked;         // a "WAKE" came while parked (actor thread only)
    uint64_t gen;        // bumped whenever main or probe is replaced or closed
    uint64_t polled_gen; // gen when the actor last polled the sockets' fds (set in its turn)
    keel_actor_config_t *config;
    keel_session_t *session;
    zsock_t *main;                    // the session socket
    zsock_t *old;                     // the failover broker's socket during failback
    zsock_t *probe;                   // DEALER probing the primary
    zlistx_t *services;               // keel_actor_service_t *, in open order; owns them
    zhashx_t *by_id;                  // service_id -> keel_actor_service_t * (not owned)
    keel_actor_service_t *last_found; // by_id's last answer (actor_inbox.c s_lookup)
    keel_fifo_t to_app;               // keel_actor_to_app_t not yet in the pipe
    keel_env_t *welcome;              // the DriverWelcome being applied (RESYNC)
    uint64_t seq;
    int64_t hold_until; // STORE_FULL: send no tasks before this
    bool send_blocked;  // a send hit the high-water mark this turn
    bool stopping;      // STOP received: only $TERM is left (actor thread only)
    bool terminated;    // $TERM received (actor thread only)
    keel_ratelimit_t rl_malformed;
    keel_ratelimit_t rl_unknown;
    keel_ratelimit_t rl_peer;  // other lines a broker's message causes (welcome, refusal, notice)
    keel_ratelimit_t rl_stale; // messages dropped for a stale pair epoch
    Keel__TaskInput *inputs;   // scratch for SubmitTasks, batch_size entries
    Keel__TaskInput **input_ptrs;
    keel_outstanding_ref_t *refs;
    bool hold_acks;          // HOLDACKS: results are acknowledged on ACKTAKEN only
    uint64_t handed;         // ... results handed over since
    keel_actor_kept_t *kept; // ... those not acknowledged yet, in hand-over order
    size_t nkept, kept_cap;
};

// ---- actor_broker.c and actor_acks.c, called from the loop in actor.c

// Logs a warning about what the broker sent, at most as often as rl allows.
void keel_actor_log_limited (keel_ratelimit_t *rl, const char *what, const char *detail);
// actor_broker.c, for actor_inbox.c: a status event for the application
// (broker: an endpoint or ""; service_id NULL when about none); a result
// handed to the application (acknowledged once it is); a ServiceInfo in
// its public form.
keel_actor_status_t *keel_actor_status (keel_actor_t *self, keel_status_kind_t kind,
                                        keel_status_level_t level, const char *broker,
                                        const char *service_id, const char *text);
void keel_actor_deliver (keel_actor_t *self, keel_actor_service_t *svc, keel_result_t *result);
void keel_actor_info_copy (const Keel__ServiceInfo *in, keel_service_info_t *out);
// Hands the application a result with the given status (and error) for one
// task of svc.
void keel_actor_fail_task (keel_actor_t *self, keel_actor_service_t *svc, uint64_t task_id,
                           keel_task_status_t status, const char *error);
// Fails every task still waiting in svc and stops sending for it.
void keel_actor_fail_service (keel_actor_t *self, keel_actor_service_t *svc,
                              keel_task_status_t status, const char *error);
// Sends what is due: services, task batches within DSMaxUnaccepted, closes.
void keel_actor_flush (keel_actor_t *self, int64_t now);
// Acknowledges every result handed to the application.
void keel_actor_flush_acks (keel_actor_t *self);
// Notes that the result of task_id was handed to the application; the next
// keel_actor_flush_acks acknowledges it to the broker.
void keel_actor_ack_later (keel_actor_service_t *svc, uint64_t task_id);
// A result was handed to the application: acknowledged next (ack_later), or
// with hold_acks kept until the application's ACKTAKEN counts it.
void keel_actor_handed (keel_actor_t *self, keel_actor_service_t *svc, uint64_t task_id);
// ACKTAKEN: the application kept the first upto results handed over since
// HOLDACKS; acknowledges them now.
void keel_actor_ack_taken (keel_actor_t *self, uint64_t upto);
// A result the broker sent again for a task already handed over:
// acknowledged, unless held (the application's ACKTAKEN acknowledges it).
void keel_actor_ack_duplicate (keel_actor_t *self, keel_actor_service_t *svc, uint64_t task_id);
// With hold_acks: the ids of svc's results handed over or waiting to be,
// not kept yet, sorted, in *ids_p (caller frees; NULL when none) — what a
// hello must not count as delivered. False when out of memory (then say
// nothing of svc).
bool keel_actor_not_kept (keel_actor_t *self, keel_actor_service_t *svc, uint64_t **ids_p,
                          size_t *n_p);
// Sends DriverHello again on the session socket (a service was attached:
// the broker answers for it in the welcome).
void keel_actor_hello_again (keel_actor_t *self);
// Steps the session with event and carries out the actions it returns.
void keel_actor_step (keel_actor_t *self, keel_session_event_t event, uint64_t heartbeat_ms);
// The same for an event with what its message carries (pair peer, Passive).
void keel_actor_apply (keel_actor_t *self, const keel_session_input_t *in);
// The pair epoch rule (keel_session_admit) for env from broker number
// `broker`: false when it must be dropped (counted and logged here).
bool keel_actor_admit (keel_actor_t *self, const keel_env_t *env, int broker, int64_t now);
// Applies one message from the session socket (env stays the caller's).
void keel_actor_on_message (keel_actor_t *self, keel_env_t *env, int64_t now);

#endif
