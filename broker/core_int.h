/*  core_int.h — the core's state, shared by the files of the core only:
    core.c (the turn's effects and commit bookkeeping), core_driver.c and
    core_engine.c (message handlers), core_sched.c (timers, dispatch, HOLD
    claims), core_recover.c (state from the store's rows) and core_admin.c
    (admin commands). The loop (broker.c) sees the core through core.h.
*/
#ifndef KEEL_CORE_INT_H
#define KEEL_CORE_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <czmq.h>

#include "core.h"
#include "changes.h"
#include "counters.h"
#include "log.h"
#include "model.h"
#include "scheduler.h"
#include "store.h"
#include "wire.h"

typedef struct {
    keel_service_rec_t *svc;
    uint64_t task_id;
} keel_ref_t;

// Log lines a peer's message causes go through one of these rate limiters
// (KEEL_CORE_LOG), so no peer can flood the log; malformed messages have
// their own (malformed_rl, keel_core_malformed).
typedef enum {
    KEEL_CORE_RL_EVENTS,  // event lines (keel_core_event); the events table keeps every one
    KEEL_CORE_RL_DRIVERS, // drivers connecting and leaving
    KEEL_CORE_RL_VALUES,  // questionable values a peer sent (a hello's DSBrokerTimeout)
    KEEL_CORE_RL_TASKS,   // lines about one task or execution a peer named
    KEEL_CORE_RL_COUNT
} keel_core_rl_t;

// While the store fails (a full disk, a database gone), how often a commit
// is tried again.
#define KEEL_CORE_STORE_RETRY_MS 1000

#define KEEL_CORE_LOG(self, which, level, ...)                                                     \
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
    keel_task_result_t *result; // NULL while the engine still runs it
    int64_t expires_mono;
} keel_pending_t;

// What recovery loaded (core_recover.c), for its log line and event.
typedef struct {
    uint64_t services, tasks, execs, pending;
} keel_core_load_t;

struct _keel_core_t {
    keel_settings_t *settings;
    char name[128];
    const char *pair_peer;          // a pair's peer (keel_core_set_pair_peer), NULL: none
    char **cluster_members;         // a shared store's live members (keel_core_set_cluster_members)
    const size_t *ncluster_members; // ... how many, NULL: none
    char pair_notice[300];          // told once to every driver after a takeover ("": none)
    bool pair_alone;                // a pair's active with no peer attached (Accepted.alone)
    // Settings read once per change (keel_core_apply_settings).
    int64_t heartbeat_ms;
    int64_t engine_timeout_ms;
    int64_t reschedule_delay_ms;
    int64_t login_window_ms;
    int64_t commit_delay_ms;
    uint32_t max_attempts;
    uint32_t engine_prefetch;    // EnginePrefetch: most tasks an engine holds beyond its slots
    uint64_t prefetch_window_us; // PrefetchWindow per slot (0: no estimate, EnginePrefetch always)
    uint64_t prefetch_room;      // dispatch: weight the engine at hand may still take (s_accept)
    bool cancel_redundant;
    uint64_t max_tasks;
    uint32_t blacklist_after;     // BlacklistAfter (0: no blacklisting)
    int64_t blacklist_for_ms;     // BlacklistFor
    int64_t no_engine_timeout_ms; // DSNoEngineTimeout (0: wait for ever)

    keel_changes_t *changes; // the turn's journal of durable changes (changes.h)
    bool store_failed;
    size_t whole_row_max; // keel_core_set_whole_rows
    // Commits are numbered; messages that promise durability carry the
    // number of the commit that must be durable before they leave (the
    // loop holds them until keel_core_synced says so).
    uint64_t commit_seq; // commits that wrote something
    uint64_t synced_seq; // every commit up to here is durable
    uint64_t hold_seq;   // != 0: keel_core_send tags messages with this commit
    bool sync_now;       // this turn's messages need its commit durable first
    keel_model_t *model;
    keel_sched_t *sched;
    zhashx_t *pending; // "service_id/task_id" → zlistx_t of keel_pending_t *
    size_t npending;

    uint64_t epoch;
    uint64_t exec_prefix;
    uint64_t exec_seq;
    uint64_t exec_seq_limit;     // reservation requested (maybe not committed yet)
    uint64_t limit_in_txn;       // exec_seq_limit when the commit being made began
    uint64_t exec_seq_committed; // reservation in the last commit (maybe not synced yet)
    uint64_t exec_committed_seq; // the commit that wrote exec_seq_committed
    uint64_t exec_seq_durable;   // reservation durable: ids up to here are safe
    int64_t requeue_check_at;    // earliest exec requeue deadline, 0 = none
    int64_t
        recovered_release_at; // queued tasks loaded at start wait for claims until then, 0 = none
    int64_t last_wake;        // when the loop last woke up (pause detection)
    int64_t
        pause_window_end; // after a pause: engines lost before then keep their work until then, 0 = none
    // The login window after a restart or a noticed pause waits for the
    // engines that were online then (keel_engine_t.awaited) and ends early
    // once the last of them has logged in again (core_sched.c).
    int64_t window_start;    // when it opened, 0 = no window waits for engines
    int64_t window_end;      // when it ends if some engine never comes back
    size_t window_awaited;   // engines not back yet
    size_t window_engines;   // engines it waited for in all
    bool window_whole;       // another broker ran work of this store: no early end
    int64_t last_slow_timer; // HOLD expiry check
    int64_t last_purge;      // retention purge

    keel_core_load_t load;
    keel_counters_t counters;
    keel_metrics_t *metrics; // the loop's, NULL = none (keel_core_set_metrics)
    keel_ratelimit_t malformed_rl;
    keel_ratelimit_t refused_rl; // keel_core_refused
    // The authenticated principal of the message being handled
    // (keel_core_principal): "driver:KEY" with Security=curve, else "".
    char principal[64];
    keel_ratelimit_t rl[KEEL_CORE_RL_COUNT];
    // Events (keel_core_event) made by an admin request name it: "admin=<routing id>
    // from=<address>" while one is handled, "" otherwise.
    char admin_who[128];
    // The store's outage, recorded as events once it is writable again.
    int64_t store_failed_wall;
    uint64_t store_failed_commits;
    char store_failed_text[256];
    int64_t started_mono;
    int64_t now;               // monotonic ms, updated through the turn
    int64_t wall;              // wall-clock ms (zclock_time), read with now
    bool dispatch_ready;       // a commit made tasks dispatchable
    bool force_commit;         // commit this turn whatever else is pending
    int64_t uncommitted_since; // first change not yet committed, 0 = none
    int64_t commit_retry_at;   // while store_failed: the next commit attempt (monotonic ms)

    // The turn's effects, sent after the commit.
    zlistx_t *outbox;
    zlistx_t *accepts;
    keel_ref_t *dirty;
    size_t ndirty, dirty_cap;
    keel_ref_t *fresh; // tasks added this turn (undone if the commit fails)
    size_t nfresh, fresh_cap;
    zlistx_t *fresh_services;
    keel_ref_t *results; // results to send to drivers
    size_t nresults, results_cap;
    // Dispatch's AssignBatch scratch (core_sched.c), KEEL_ASSIGNS_PER_MSG
    // each, made at the first dispatch and kept: 512 Assigns are ~80 KiB,
    // and a malloc and free of that per turn cost a heap consolidation.
    Keel__Assign *assign_items;
    Keel__Assign **assign_ptrs;
    keel_ack_t *acks; // result acks to send to engines
    size_t nacks, acks_cap;
    // Executions whose result row the commit being made leaves for the
    // next one (core_commit.c s_write_dirty): their engines' acks wait too.
    uint64_t *carried_execs;
    size_t ncarried, carried_cap;
    // Execution rows are written at the commit, not when an execution
    // starts or ends: one that starts and ends between two commits (most
    // tiny tasks) never costs a store write. Ids, looked up at the commit.
    uint64_t *exec_puts; // started: write its row if still alive
    size_t nexec_puts, exec_puts_cap;
    uint64_t *exec_dels; // ended with a stored row: delete it
    size_t nexec_dels, exec_dels_cap;
};

// ---- core_life.c: the lifecycles. Each state is written by one function
// that checks the move against its table; a move the table lacks is a bug,
// logged and not made. Recovery restores states from the store's rows
// (core_recover.c): that is not a move.
//
// Service (keel_service_state_t; stored by SERVICE_STATE records):
//   from        to          on                                   where
//   (none)      OPEN        SubmitService                        core_driver.c s_submit_service
//   OPEN        CLOSED      CloseService                         core_driver.c
//   OPEN        DETACHED    Detach (the driver went home)        core_driver.c s_detach
//   DETACHED    OPEN        SubmitService again (it came back)   core_driver.c s_submit_service
//   OPEN,       CANCELLED   CancelService, keel-admin cancel     core_driver.c keel_core_cancel_service
//   CLOSED,
//   DETACHED
//   CLOSED,     (purged)    retention passed, every result       core_sched.c keel_core_purge
//   CANCELLED,              acknowledged (DETACHED: no
//   DETACHED                execution left)
// Leaving OPEN sets closed_wall_ms (retention counts from it); CANCELLED and
// DETACHED leave the scheduler. CANCELLED is final.
//
// Task (keel_task_state_t; stored by TASK_* records):
//   from             to          on
//   (none)           QUEUED      SubmitTasks
//   QUEUED           RUNNING     dispatch (Assign), a claim at login, a HOLD claim attached
//   RUNNING          RUNNING     another execution (a claim of a running task)
//   RUNNING          QUEUED      its execution failed (retry) or was lost (requeue)
//   QUEUED, RUNNING  DONE        first OK result (a held result may finish a queued task)
//   QUEUED, RUNNING  FAILED      a failure past MaxAttempts, or a permanent one
//   QUEUED, RUNNING  CANCELLED   its service cancelled
//   QUEUED, RUNNING  ELSEWHERE   the driver came back holding its result
// DONE, FAILED, CANCELLED and ELSEWHERE are final.
//
// Engine (keel_engine_state_t; stored by ENGINE_PUT records):
//   from             to          on
//   (none), OFFLINE, ONLINE      EngineLogin (a new connection or process
//   ONLINE                       replaces the old one; a new process ends a drain)
//   ONLINE           OFFLINE     heartbeat timeout, or Logoff (reason "moving": it goes
//                                to its primary carrying its tasks); its executions
//                                wait EngineTimeout for it to come back
// `draining` (keel-admin drain) is a flag on ONLINE: no new work, until a
// new engine process logs in.
//
// Execution (keel_exec_state_t, rows by EXEC_* records): the table is in
// model.h. Started by keel_core_exec_started, ended by keel_core_exec_drop
// (core.c); in between keel_core_exec_await and keel_core_exec_claimed.
bool keel_core_service_to (keel_core_t *self, keel_service_rec_t *svc, keel_service_state_t to);
bool keel_core_task_to (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id,
                        keel_task_state_t to);
// route: the engine's routing id (ONLINE), NULL (OFFLINE).
void keel_core_engine_to (keel_core_t *self, keel_engine_t *engine, keel_engine_state_t to,
                          zframe_t *route);
// Appends the engine's row as it is now (ENGINE_PUT; online when ONLINE).
void keel_core_engine_store (keel_core_t *self, const keel_engine_t *engine);
// RUNNING (or new) → AWAITING_CLAIM until `until`; then its task is queued again.
void keel_core_exec_await (keel_core_t *self, keel_exec_t *x, int64_t until);
// → RUNNING on engine (a claim at login).
void keel_core_exec_claimed (keel_core_t *self, keel_exec_t *x, keel_engine_t *engine);

// ---- core.c, core_commit.c: the turn's effects and commit bookkeeping
// Appends one record to the turn's journal of changes: the only way a
// handler or timer changes durable state. Returns KEEL_ERR_NOMEM (logged).
keel_err keel_core_change (keel_core_t *self, keel_change_t change);
void keel_core_send (keel_core_t *self, zframe_t *route, keel_env_t *env);
void keel_core_send_engine (keel_core_t *self, keel_engine_t *engine, keel_env_t *env);
void keel_core_send_driver (keel_core_t *self, keel_driver_rec_t *drv, keel_env_t *env);
void keel_core_relogin (keel_core_t *self, zframe_t *route, const char *reason);
void keel_core_touch (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id, uint8_t what);
void keel_core_deliver (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id);
// The same for a result the driver acknowledged already (an attach with
// `all`): sent even so. In the turn's results list the task id carries
// KEEL_REF_AGAIN (task ids stay below MaxTasksPerService, far below it).
#define KEEL_REF_AGAIN (UINT64_C (1) << 63)
void keel_core_deliver_again (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id);
void keel_core_ack_engine (keel_core_t *self, keel_engine_t *engine, uint64_t exec_id);
void keel_core_accept (keel_core_t *self, zframe_t *route, const char *service_id,
                       const uint64_t *task_ids, size_t n);
void keel_core_fresh_task (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id);
// Sends Accepted (committed) or Refused{STORE_FULL} (the commit failed,
// error says why) for every submission of the turn.
void keel_core_answer_submissions (keel_core_t *self, bool committed, const char *error);
// Sends the turn's engine acknowledgements, one ResultAck per engine.
void keel_core_send_acks (keel_core_t *self);
// Drops every reference the current turn holds to svc (changed tasks, new
// tasks, results to send, scheduler entry). Call it before freeing svc.
void keel_core_forget_service (keel_core_t *self, keel_service_rec_t *svc);
uint64_t keel_core_next_exec_id (keel_core_t *self);
// An execution started (its row is written at the next commit) / ended
// (removed from the model; its row, if stored, deleted at the next commit).
void keel_core_exec_started (keel_core_t *self, keel_exec_t *x);
void keel_core_exec_drop (keel_core_t *self, keel_exec_t *x);
void keel_core_store_task (const keel_service_rec_t *svc, uint64_t task_id, const keel_task_t *task,
                           keel_store_task_t *row);

// ---- core_serve.c: which engines may serve a service
// True when an online engine that is not draining offers type.
bool keel_core_type_offered (keel_core_t *self, const char *type);
// True while engine is blacklisted for svc (dispatch skips it for svc
// while keel_core_can_serve finds another engine).
bool keel_core_blacklisted (const keel_core_t *self, keel_engine_t *engine,
                            const keel_service_rec_t *svc);
// True when an online engine other than except (NULL: any), not draining,
// offers svc's type, meets its condition and is not blacklisted for svc.
bool keel_core_can_serve (keel_core_t *self, const keel_engine_t *except,
                          const keel_service_rec_t *svc);
// An execution of svc on engine reported its outcome: a success clears
// the engine's failures in a row for svc; a failure counts, and
// BlacklistAfter of them blacklist the engine for svc for BlacklistFor
// (counted, an event, a Notice to the service's driver).
void keel_core_blacklist_note (keel_core_t *self, keel_engine_t *engine, keel_service_rec_t *svc,
                               bool failed);
// Timers (once a second): blacklistings whose BlacklistFor has passed end;
// services no engine offers are told so every minute, and their queued
// tasks fail after DSNoEngineTimeout (when set).
void keel_core_blacklist_expire (keel_core_t *self);

void keel_core_no_engine_check (keel_core_t *self);

// ---- core_driver.c / core_engine.c: message handlers
void keel_core_driver_msg (keel_core_t *self, keel_driver_rec_t *drv, keel_env_t *env);
void keel_core_driver_hello (keel_core_t *self, zframe_t *route, Keel__DriverHello *hello);
// Sends drv a warning Notice about service_id (recorded as an event).
void keel_core_notice (keel_core_t *self, keel_driver_rec_t *drv, const char *service_id,
                       const char *text);
void keel_core_engine_msg (keel_core_t *self, keel_engine_t *engine, keel_env_t *env);
void keel_core_engine_login (keel_core_t *self, zframe_t *route, Keel__EngineLogin *login);
// A task reached a terminal state: store it, deliver it, cancel the rest.
void keel_core_task_finished (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id,
                              keel_task_result_t *result, keel_task_state_t state);
// Stops an execution: Cancel to its engine (if online, counted as
// executions_cancelled), then forgets it.
void keel_core_cancel_exec (keel_core_t *self, keel_exec_t *exec, const char *reason);
// Puts a task back in its service's FIFO (and the service in the scheduler).
void keel_core_requeue (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id);
keel_err keel_core_cancel_service (keel_core_t *self, keel_service_rec_t *svc);
// Records an event (keel-admin events; docs/operations.md lists the kinds)
// in the turn's transaction, so it is as durable as the turn, and logs it.
// An event an admin request caused ends with its "by=admin=... from=...".
void keel_core_event (keel_core_t *self, const char *kind, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

// ---- core_sched.c: timers, dispatch, HOLD claims
void keel_core_engine_lost (keel_core_t *self, keel_engine_t *engine, const char *why, bool moving);
void keel_core_exec_lost (keel_core_t *self, keel_exec_t *exec);
// Keeps a HOLD claim (and its result, if any; taken) for a service not
// submitted here yet, in memory and in the store.
keel_err keel_core_pending_add (keel_core_t *self, const char *service_id, uint64_t task_id,
                                uint64_t exec_id, const char *engine_id,
                                keel_task_result_t *result);
// The same for a claim read back from the store at recovery: memory only.
keel_err keel_core_pending_restore (keel_core_t *self, const char *service_id, uint64_t task_id,
                                    uint64_t exec_id, const char *engine_id,
                                    keel_task_result_t *result);
// Attaches HOLD claims to a task that was just submitted. Returns true when
// the task needs no dispatch (a claim runs it, or a held result finished it).
bool keel_core_pending_attach (keel_core_t *self, keel_service_rec_t *svc, uint64_t task_id);
void keel_core_pending_clear (keel_core_t *self);
// Drops the HOLD claims (without a result) of engine_id that its login did
// not list: that engine no longer runs those tasks.
void keel_core_pending_forget_engine (keel_core_t *self, const char *engine_id,
                                      Keel__HeldTask **held, size_t n_held);
// A driver stopped talking (why: "heartbeat timeout"): stops heartbeating
// it and logs whether anything waits for its return.
void keel_core_driver_gone (keel_core_t *self, keel_driver_rec_t *drv, const char *why);
// Opens (or widens) the login window for the engines marked awaited: after
// a restart those the store showed online, after a pause those online then.
// With EngineLoginWindow=0 or no engine awaited, nothing waits.
void keel_core_window_open (keel_core_t *self);
// The login of an engine (its claims included) has been handled. When it
// is the last awaited one, the window ends now: the recovered queued tasks
// are released, recovered executions no engine can claim any more are
// requeued, and engines lost from now on get their RescheduleDelay.
void keel_core_window_engine_back (keel_core_t *self, keel_engine_t *engine);
// An engine logs in moving home from broker `from` (EngineLogin.moved_from):
// that broker ran work of this store, maybe on engines this one never
// knew, so an open window runs its whole length.
void keel_core_window_moved_in (keel_core_t *self, const keel_engine_t *engine, const char *from);
// Marks that an execution wants requeuing at `at` (the timer looks then).
void keel_core_note_requeue_at (keel_core_t *self, int64_t at);
// Drops closed, fully acknowledged services past retention, and detached
// ones past retention with no execution left. Returns how many.
uint64_t keel_core_purge (keel_core_t *self, int64_t now_wall, int64_t retention_ms);

// ---- core_recover.c: state from the store's rows at start
void keel_core_apply_settings (keel_core_t *self);
int64_t keel_core_service_delay (keel_core_t *self, keel_service_rec_t *svc);

#endif
