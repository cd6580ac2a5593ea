/*  broker_int.h — state shared by the broker's loop (broker.c), its
    message handlers (broker_driver.c, broker_engine.c) and its timers,
    dispatch and recovery (broker_sched.c). Private to keel-broker; the
    public interface is broker.h.
*/
#ifndef KEEL_BROKER_INT_H
#define KEEL_BROKER_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <czmq.h>

#include "broker.h"
#include "changes.h"
#include "counters.h"
#include "log.h"
#include "model.h"
#include "scheduler.h"
#include "store.h"
#include "syncer.h"
#include "wire.h"

typedef struct {
    keel_service_rec_t *svc;
    uint64_t task_id;
} keel_ref_t;

// Log lines a peer's message causes go through one of these rate limiters
// (KEEL_BROKER_LOG), so no peer can flood the log; malformed messages have
// their own (malformed_rl, keel_broker_malformed).
typedef enum {
    KEEL_BROKER_RL_EVENTS,      // event lines (keel_broker_event); the events table keeps every one
    KEEL_BROKER_RL_DRIVERS,     // drivers connecting and leaving
    KEEL_BROKER_RL_VALUES,      // questionable values a peer sent (a hello's DSBrokerTimeout)
    KEEL_BROKER_RL_TASKS,       // lines about one task or execution a peer named
    KEEL_BROKER_RL_COUNT
} keel_broker_rl_t;

#define KEEL_BROKER_LOG(self, which, level, ...) \
    KEEL_LOG_LIMITED (&(self)->rl[which], (self)->now, (level), "broker", __VA_ARGS__)

typedef struct {
    keel_engine_t *engine;
    uint64_t exec_id;
} keel_ack_t;

// A submission answered after the commit (Accepted) or after a failed one
// (Refused STORE_FULL).
typedef struct {
    zframe_t *route;
    char service_id[KEEL_ID_MAX + 1];
    uint64_t *task_ids;
    size_t n;
} keel_accept_t;

// A HOLD claim: an engine runs (or ran) a task of a service this broker
// does not know yet.
typedef struct {
    char service_id[KEEL_ID_MAX + 1];
    uint64_t task_id;
    uint64_t execution_id;
    char engine_id[KEEL_ID_MAX + 1];
    keel_task_result_t *result;          // NULL while the engine still runs it
    int64_t expires_mono;
} keel_pending_t;

struct _keel_broker_t {
    keel_settings_t *settings;
    char name[128];
    // Settings read once per change (keel_broker_apply_settings).
    int64_t heartbeat_ms;
    int64_t engine_timeout_ms;
    int64_t reschedule_delay_ms;
    int64_t login_window_ms;
    int64_t commit_delay_ms;
    uint32_t max_attempts;
    uint32_t engine_prefetch;
    bool cancel_redundant;
    uint64_t max_tasks;

    zsock_t *router;
    zsock_t *admin;
    keel_store_t *store;
    keel_changes_t *changes;        // the turn's journal of durable changes (changes.h)
    bool store_failed;
    // Group commit off the loop (StoreSync=full, syncer.h): commits are
    // numbered; messages that promise durability wait in `held` until the
    // syncer reports their commit durable. NULL syncer: every commit is as
    // durable as StoreSync asks when it returns.
    keel_syncer_t *syncer;
    uint64_t commit_seq;            // commits that wrote something
    uint64_t synced_seq;            // every commit up to here is durable
    uint64_t hold_seq;              // != 0: keel_broker_send holds until this commit is durable
    zlistx_t *held;                 // s_out_t *, in commit order
    bool sync_now;                  // this turn's messages need its commit durable first
    bool fatal;                     // the store failed to sync: stop, acknowledge nothing
    keel_model_t *model;
    keel_sched_t *sched;
    zhashx_t *pending;              // "service_id/task_id" → zlistx_t of keel_pending_t *
    size_t npending;

    uint64_t epoch;
    uint64_t exec_prefix;
    uint64_t exec_seq;
    uint64_t exec_seq_limit;        // reservation requested (maybe not committed yet)
    uint64_t exec_seq_committed;    // reservation in the last commit (maybe not synced yet)
    uint64_t exec_committed_seq;    // the commit that wrote exec_seq_committed
    uint64_t exec_seq_durable;      // reservation durable: ids up to here are safe
    int64_t requeue_check_at;       // earliest exec requeue deadline, 0 = none
    int64_t recovered_release_at;   // queued tasks loaded at start wait for claims until then, 0 = none
    int64_t last_wake;              // when the loop last woke up (pause detection)
    int64_t pause_window_end;       // after a pause: engines lost before then keep their work until then, 0 = none
    int64_t last_slow_timer;        // HOLD expiry check
    int64_t last_purge;             // retention purge

    keel_counters_t counters;
    keel_ratelimit_t malformed_rl;
    keel_ratelimit_t rl[KEEL_BROKER_RL_COUNT];
    // Events (keel_broker_event) made by an admin request name it: "admin=<routing id>
    // from=<address>" while one is handled, "" otherwise.
    char admin_who[128];
    // The store's outage, recorded as events once it is writable again.
    int64_t store_failed_wall;
    uint64_t store_failed_commits;
    char store_failed_text[256];
    int64_t started_mono;
    int64_t now;                    // monotonic ms, updated through the turn
    int64_t wall;                   // wall-clock ms (zclock_time), read with now
    bool stop;
    bool dispatch_ready;            // a commit made tasks dispatchable
    bool force_commit;              // commit this turn whatever else is pending
    int64_t uncommitted_since;      // first change not yet committed, 0 = none

    // The turn's effects, sent after the commit.
    zlistx_t *outbox;
    zlistx_t *accepts;
    keel_ref_t *dirty;
    size_t ndirty, dirty_cap;
    keel_ref_t *fresh;              // tasks added this turn (undone if the commit fails)
    size_t nfresh, fresh_cap;
    zlistx_t *fresh_services;
    keel_ref_t *results;            // results to send to drivers
    size_t nresults, results_cap;
    keel_ack_t *acks;               // result acks to send to engines
    size_t nacks, acks_cap;
    // Execution rows are written at the commit, not when an execution
    // starts or ends: one that starts and ends between two commits (most
    // tiny tasks) never costs a store write. Ids, looked up at the commit.
    uint64_t *exec_puts;            // started: write its row if still alive
    size_t nexec_puts, exec_puts_cap;
    uint64_t *exec_dels;            // ended with a stored row: delete it
    size_t nexec_dels, exec_dels_cap;
    zlistx_t *admin_queue;          // zmsg_t * admin requests, answered after the commit
};

// ---- broker.c: outbox and turn bookkeeping
// Appends one record to the turn's journal of changes: the only way a
// handler or timer changes durable state. Returns KEEL_ERR_NOMEM (logged).
keel_err keel_broker_change (keel_broker_t *self, keel_change_t change);
// Applies the journal's records so far and commits them at once (durable on
// return), outside the turn's group commit: for recovery and the admin
// commands that answer with the commit's outcome. Changed tasks and
// executions are not part of it (they are written by the turn's commit).
keel_err keel_broker_commit_now (keel_broker_t *self, keel_error_t *err);
void keel_broker_send (keel_broker_t *self, zframe_t *route, keel_env_t *env);
void keel_broker_send_engine (keel_broker_t *self, keel_engine_t *engine, keel_env_t *env);
void keel_broker_send_driver (keel_broker_t *self, keel_driver_rec_t *drv, keel_env_t *env);
void keel_broker_relogin (keel_broker_t *self, zframe_t *route, const char *reason);
void keel_broker_touch (keel_broker_t *self, keel_service_rec_t *svc, uint64_t task_id, uint8_t what);
void keel_broker_deliver (keel_broker_t *self, keel_service_rec_t *svc, uint64_t task_id);
void keel_broker_ack_engine (keel_broker_t *self, keel_engine_t *engine, uint64_t exec_id);
void keel_broker_accept (keel_broker_t *self, zframe_t *route, const char *service_id,
                         const uint64_t *task_ids, size_t n);
void keel_broker_fresh_task (keel_broker_t *self, keel_service_rec_t *svc, uint64_t task_id);
// Drops every reference the current turn holds to svc (changed tasks, new
// tasks, results to send, scheduler entry). Call it before freeing svc.
void keel_broker_forget_service (keel_broker_t *self, keel_service_rec_t *svc);
uint64_t keel_broker_next_exec_id (keel_broker_t *self);
// An execution started (its row is written at the next commit) / ended
// (removed from the model; its row, if stored, deleted at the next commit).
void keel_broker_exec_started (keel_broker_t *self, keel_exec_t *x);
void keel_broker_exec_drop (keel_broker_t *self, keel_exec_t *x);
void keel_broker_malformed (keel_broker_t *self, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
void keel_broker_store_task (const keel_service_rec_t *svc, uint64_t task_id, const keel_task_t *task,
                             keel_store_task_t *row);

// ---- broker_driver.c / broker_engine.c: message handlers
// Handles one valid message from the main endpoint.
void keel_broker_handle (keel_broker_t *self, zframe_t *route, keel_env_t *env);
void keel_broker_driver_msg (keel_broker_t *self, keel_driver_rec_t *drv, keel_env_t *env);
void keel_broker_driver_hello (keel_broker_t *self, zframe_t *route, Keel__DriverHello *hello);
void keel_broker_engine_msg (keel_broker_t *self, keel_engine_t *engine, keel_env_t *env);
void keel_broker_engine_login (keel_broker_t *self, zframe_t *route, Keel__EngineLogin *login);
// A task reached a terminal state: store it, deliver it, cancel the rest.
void keel_broker_task_finished (keel_broker_t *self, keel_service_rec_t *svc, uint64_t task_id,
                                keel_task_result_t *result, keel_task_state_t state);
// Stops an execution: Cancel to its engine (if online, counted as
// executions_cancelled), then forgets it.
void keel_broker_cancel_exec (keel_broker_t *self, keel_exec_t *exec, const char *reason);
// Puts a task back in its service's FIFO (and the service in the scheduler).
void keel_broker_requeue (keel_broker_t *self, keel_service_rec_t *svc, uint64_t task_id);
keel_err keel_broker_cancel_service (keel_broker_t *self, keel_service_rec_t *svc);
// Records an event (keel-admin events; docs/operations.md lists the kinds)
// in the turn's transaction, so it is as durable as the turn, and logs it.
// An event an admin request caused ends with its "by=admin=... from=...".
void keel_broker_event (keel_broker_t *self, const char *kind, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

// ---- broker_sched.c: timers, dispatch, HOLD claims
void keel_broker_timers (keel_broker_t *self);
void keel_broker_dispatch (keel_broker_t *self);
void keel_broker_engine_lost (keel_broker_t *self, keel_engine_t *engine, const char *why,
                              bool moving);
void keel_broker_exec_lost (keel_broker_t *self, keel_exec_t *exec);
// Keeps a HOLD claim (and its result, if any; taken) for a service not
// submitted here yet, in memory and in the store.
keel_err keel_broker_pending_add (keel_broker_t *self, const char *service_id, uint64_t task_id,
                                  uint64_t exec_id, const char *engine_id, keel_task_result_t *result);
// The same for a claim read back from the store at recovery: memory only.
keel_err keel_broker_pending_restore (keel_broker_t *self, const char *service_id,
                                      uint64_t task_id, uint64_t exec_id, const char *engine_id,
                                      keel_task_result_t *result);
// Attaches HOLD claims to a task that was just submitted. Returns true when
// the task needs no dispatch (a claim runs it, or a held result finished it).
bool keel_broker_pending_attach (keel_broker_t *self, keel_service_rec_t *svc, uint64_t task_id);
void keel_broker_pending_clear (keel_broker_t *self);
// Drops the HOLD claims (without a result) of engine_id that its login did
// not list: that engine no longer runs those tasks.
void keel_broker_pending_forget_engine (keel_broker_t *self, const char *engine_id,
                                        Keel__HeldTask **held, size_t n_held);
// A send failed with err (errno): counted as a send to a departed peer
// (EHOSTUNREACH: its connection has closed) or a send failure (the peer's
// queue is full).
void keel_broker_send_failed (keel_broker_t *self, int err);
// A driver stopped talking (why: "heartbeat timeout"): stops heartbeating
// it and logs whether anything waits for its return.
void keel_broker_driver_gone (keel_broker_t *self, keel_driver_rec_t *drv, const char *why);
// Marks that an execution wants requeuing at `at` (the timer looks then).
void keel_broker_note_requeue_at (keel_broker_t *self, int64_t at);
// Drops closed, fully acknowledged services past retention, and detached
// ones past retention with no execution left. Returns how many.
uint64_t keel_broker_purge (keel_broker_t *self, int64_t now_wall, int64_t retention_ms);

// ---- broker_recover.c: state from the store at start
keel_err keel_broker_recover (keel_broker_t *self, keel_error_t *err);
void keel_broker_apply_settings (keel_broker_t *self);
// ---- broker_admin.c: one admin request, answered on the admin endpoint
void keel_broker_admin (keel_broker_t *self, zmsg_t *msg);
int64_t keel_broker_service_delay (keel_broker_t *self, keel_service_rec_t *svc);

#endif
