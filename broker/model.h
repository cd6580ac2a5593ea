/*  model.h — the broker's in-memory state: services, tasks, executions,
    engines and drivers.

    The event loop (broker.c) owns one keel_model_t and is its only user, so
    nothing here locks. The model is the truth while the broker runs; the
    store is where each loop turn makes that truth durable before anything is
    acknowledged. Functions here change memory only; broker.c mirrors every
    change into the store.

    Tasks live in per-service pages of KEEL_TASK_PAGE tasks, indexed by
    task_id (drivers number tasks 0,1,2… so the pages are dense); a page is
    allocated when its first task arrives, so memory follows the tasks
    present, not the ids a service might use, and a task never moves. Small
    inputs are copied into the service's input blocks (one allocation per
    64 KiB, not one per task): a million queued tiny tasks cost ~64 bytes of
    task, a few bytes of input and 8 bytes of FIFO each (docs/benchmarks.md,
    W4). Each service keeps a FIFO of its queued task ids. Executions are found by id in one hash table and are
    linked both to their task and to their engine, so an engine loss, a
    winning result or a cancel finds the others in O(executions).
*/
#ifndef KEEL_MODEL_H
#define KEEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <czmq.h>
#include "cond.h"
#include "heartbeat.h"
#include "store.h"
#include "wire.h"

typedef struct _keel_exec_t keel_exec_t;
typedef struct _keel_engine_t keel_engine_t;
typedef struct _keel_service_rec_t keel_service_rec_t;

// A task's terminal result: one allocation (keel_task_result_new), its
// output, error and engine id stored behind the record. The model keeps a
// finished task's result until its service is deleted (an attach with
// `all` gets every result again), so W1 holds hundreds of thousands: the
// record was 128 bytes and three allocations when its engine id was an
// array and its output and error blocks of their own.
typedef struct {
    uint64_t execution_id;
    uint64_t run_ms;
    uint64_t queued_ms;
    const uint8_t *output; // NULL when none
    size_t output_len;
    const char *error;     // NULL when none
    const char *engine_id; // "" when none (at most KEEL_ID_MAX bytes)
    int status;            // KEEL__TASK_STATUS__STATUS_*
    bool permanent;        // FAILED, and the engine says no retry can succeed
} keel_task_result_t;

// What changed in a task since the last successful commit.
#define KEEL_DIRTY_NEW    1  // whole row (new task)
#define KEEL_DIRTY_STATE  2  // state and attempts
#define KEEL_DIRTY_RESULT 4  // terminal result
#define KEEL_DIRTY_ACK    8  // driver acknowledged the result
#define KEEL_DIRTY_CKPT   16 // checkpoint

// One task: 64 bytes (held by the _Static_assert below; W4 counts them by
// the million). The flags are bit-fields, the engine to avoid is a number.
typedef struct {
    uint16_t present : 1;      // 0 = no such task id (hole in the page)
    uint16_t state : 3;        // keel_task_state_t
    uint16_t queued : 1;       // in the service's FIFO
    uint16_t acked : 1;        // the driver has the result
    uint16_t durable : 1;      // committed to the store (may be dispatched)
    uint16_t input_shared : 1; // input is in the service's input blocks (not freed alone)
    uint16_t dirty : 5;        // KEEL_DIRTY_* bits: what the next commit must write
    uint16_t young : 1;        // an engine's result not yet past a commit (core_commit.c)
    uint16_t carried : 1;      // its row waits for the next commit (core_commit.c)
    uint16_t attempts;         // executions that ended in a task failure
    uint32_t input_len;
    uint8_t *input;
    keel_exec_t *execs;         // live executions (linked by next_of_task)
    keel_task_result_t *result; // terminal result, NULL before
    uint8_t *checkpoint;
    uint32_t checkpoint_len;
    uint32_t avoid; // number of the engine whose execution last failed or was lost
                    // (retry elsewhere); 0 = none (keel_engine_t.number)
    int64_t checkpoint_wall_ms;
    int64_t accepted_mono; // for queued_ms
} keel_task_t;

_Static_assert(sizeof (keel_task_t) == 64, "keel_task_t is 64 bytes: W4 holds millions of them");
_Static_assert(KEEL_TASK_NSTATES <= 8, "keel_task_t.state is 3 bits");
_Static_assert(KEEL_DIRTY_CKPT < 32, "keel_task_t.dirty is 5 bits");

// Tasks per page of a service's task table (64 KiB of tasks).
#define KEEL_TASK_PAGE        1024
// Inputs up to this size go into the service's input blocks.
#define KEEL_INPUT_SHARED_MAX 256

struct _keel_service_rec_t {
    char id[KEEL_ID_MAX + 1];
    char type[KEEL_TYPE_MAX + 1];
    char driver_id[KEEL_ID_MAX + 1];
    int32_t priority;
    uint32_t max_attempts;
    int64_t reschedule_delay_ms; // -1 = broker default
    uint8_t *init_data;
    size_t init_len;
    keel_service_state_t state;
    int64_t created_wall_ms;
    int64_t closed_wall_ms;
    int64_t last_result_wall_ms; // last task to end (in memory: a restart counts as one)

    keel_task_t **pages; // pages[id / KEEL_TASK_PAGE]: NULL until a task there exists
    uint64_t npages;     // length of pages
    uint64_t ntasks;     // highest task_id + 1
    void *inputs;        // input blocks of small inputs (model.c), freed with the service

    uint64_t *queue; // ring buffer of queued task ids
    uint64_t qhead, qlen, qcap;

    uint64_t nready;                   // tasks in the FIFO (dispatchable)
    uint64_t count[KEEL_TASK_NSTATES]; // tasks per keel_task_state_t
    uint64_t total;                    // tasks present
    uint64_t unacked;                  // terminal results the driver has not acknowledged
    uint64_t serve_seq;                // scheduler round-robin stamp
    void *sched_handle;                // position in the scheduler's list, NULL if absent
    uint64_t run_us_est;               // estimated task run time, µs (keel_service_note_run)
    uint32_t run_samples;              // results it is made of (0: not known yet)
    // While it has queued tasks and no online engine offers its type
    // (core_sched.c, DSNoEngineTimeout): since when (0: an engine offers
    // it), and when its driver was last told.
    int64_t no_engine_since;
    int64_t no_engine_notice_at;
    // Its condition on engines (SubmitService.condition, stored with the
    // service): NULL = any engine offering the type. Which engines match is
    // cached on each engine (keel_engine_matches).
    keel_cond_t *cond;
};

// What a task of svc is expected to weigh on an engine: the mean run time
// of its recent results, or KEEL_COST_UNKNOWN before the first one.
// Dispatch (core_sched.c) sends tasks beyond an engine's slots only while
// the weights there fit PrefetchWindow per slot.
#define KEEL_COST_UNKNOWN (UINT64_C (3600) * 1000 * 1000) // one hour: above any window
uint64_t keel_service_cost (const keel_service_rec_t *svc);
// Folds one execution's run time into svc's estimate (an exponentially
// weighted mean: each new result weighs 1/8, the first one all).
void keel_service_note_run (keel_service_rec_t *svc, uint64_t run_us);

// An execution's lifecycle (the broker's view; written by core_life.c):
//   from            to              on
//   (none)          RUNNING         dispatch (Assign), a claim at login, a HOLD claim attached
//   (none)          AWAITING_CLAIM  recovery: a row from the store, or a running task
//                                   without one (its engine gets EngineLoginWindow)
//   RUNNING         AWAITING_CLAIM  its engine went offline (waits RescheduleDelay, or
//                                   EngineTimeout when the engine went to its primary)
//   AWAITING_CLAIM  RUNNING         its engine (or another one) claims it at login
//   RUNNING         RUNNING         another engine claims it (moves there)
//   either          (ended)         a result, a Cancel, a DROP, the deadline passed
//                                   (then its task is queued again): keel_core_exec_drop
typedef enum {
    KEEL_EXEC_RUNNING = 0,       // on `engine`, as far as the broker knows
    KEEL_EXEC_AWAITING_CLAIM = 1 // no live engine runs it; requeued at requeue_at
} keel_exec_state_t;

struct _keel_exec_t {
    uint64_t id;
    keel_exec_state_t state;
    keel_service_rec_t *service;
    uint64_t task_id;
    keel_engine_t *engine; // NULL once its engine is gone
    uint32_t attempt;
    int64_t started_mono;
    int64_t requeue_at; // AWAITING_CLAIM: requeue at this time unless claimed
    int64_t started_wall_ms;
    bool stored;        // its row is in the store (committed)
    bool before_commit; // dispatched before its task's first commit
    uint8_t missing;    // consecutive engine heartbeats that left it out
    keel_exec_t *next_of_task;
    void *engine_handle; // its place in engine->execs
    uint64_t cost_us;    // its part of engine->backlog_us (keel_model_exec_set_cost)
};

typedef enum { KEEL_ENGINE_ONLINE = 0, KEEL_ENGINE_OFFLINE = 1 } keel_engine_state_t;

// How an engine fares with one service (core_blacklist.c): its executions'
// failures in a row, and whether it is blacklisted for the service. In
// memory only (docs/operations.md, "Blacklisted engines").
typedef struct {
    uint32_t failures;     // executions that failed in a row since its last success
    uint32_t blacklisted;  // failures that blacklisted it (0: not blacklisted)
    int64_t until_mono;    // blacklisted until then
    int64_t until_wall_ms; // the same, for people
} keel_blacklist_t;

struct _keel_engine_t {
    char id[KEEL_ID_MAX + 1];
    char session[KEEL_ID_MAX + 1];
    // Security=curve: the authenticated key of the first login under this
    // engine id since the broker started ("" none); no other key may log in
    // as this engine (core_engine.c).
    char principal[64];
    char host[256];
    char route_key[64]; // hex of the routing id
    zframe_t *route;    // routing id frame, NULL when offline
    uint32_t number;    // unique in this model, never 0, never reused (keel_task_t.avoid)
    keel_engine_state_t state;
    bool draining;
    uint32_t slots;
    char **types;
    size_t ntypes;
    zlistx_t *execs;     // keel_exec_t * running here
    uint64_t backlog_us; // sum of their cost_us: the work they are expected to hold
    zhashx_t *init_sent; // service ids whose init data this engine has
    zhashx_t *blacklist; // service id → keel_blacklist_t (its failures there)
    char **props;        // its properties at its last login: name, value, name, value…
    size_t nprops;       // pairs in props
    zhashx_t *matches;   // service id → KEEL_MATCH_YES/NO: its condition evaluated here
    keel_peer_clock_t clock;
    int64_t offline_since_mono;
    int64_t login_wall_ms;
    int64_t seen_wall_ms; // OFFLINE: when it went offline (its store row says so)
    bool awaited;         // the login window waits for its login (core_sched.c)
    uint64_t tasks_done;
    uint64_t reply_held_seq; // its LoginReply waits for this commit: no Assign before it
};

typedef struct {
    char id[KEEL_ID_MAX + 1];
    char route_key[64];
    zframe_t *route; // NULL when disconnected
    keel_peer_clock_t clock;
    uint64_t broker_timeout_ms;
    bool connected;
    bool pair_noticed; // got the pair's takeover notice (keel_core_pair_notice)
    // Security=curve: the authenticated key that said hello first under
    // this driver id since the broker started ("" none); no other key may
    // speak for the driver or its services (core_driver.c).
    char principal[64];
} keel_driver_rec_t;

typedef struct _keel_model_t keel_model_t;

keel_model_t *keel_model_new (void);
void keel_model_destroy (keel_model_t **self_p);

// ---------------------------------------------------------------- services
keel_service_rec_t *keel_model_service (keel_model_t *self, const char *id);
// Creates a service (caller checked it does not exist). Returns NULL on OOM.
keel_service_rec_t *keel_model_service_add (keel_model_t *self, const char *id, const char *type,
                                            const char *driver_id);
// Removes and frees a service, its tasks and executions (engines forget them).
void keel_model_service_remove (keel_model_t *self, keel_service_rec_t *svc);
// Iteration over all services.
keel_service_rec_t *keel_model_service_first (keel_model_t *self);
keel_service_rec_t *keel_model_service_next (keel_model_t *self);
size_t keel_model_service_count (keel_model_t *self);

// ---------------------------------------------------------------- tasks
// The task with this id, or NULL. The pointer stays valid until the task
// is dropped or its service removed (tasks never move).
keel_task_t *keel_service_task (const keel_service_rec_t *svc, uint64_t task_id);
// The smallest id >= task_id of a task svc has, or svc->ntasks when there
// is none. Every walk over a service's tasks goes through it: it skips a
// page with no task in one step, so a service whose ids are sparse (a
// store the broker did not write, ids up to MaxTasksPerService's limit)
// costs its pages, not its largest id.
uint64_t keel_service_task_next (const keel_service_rec_t *svc, uint64_t task_id);
// Adds a task in state QUEUED (not yet in the FIFO). Takes a copy of input
// (into the service's input blocks when it is small).
// Returns NULL on OOM or when the task exists.
keel_task_t *keel_service_task_add (keel_service_rec_t *svc, uint64_t task_id, const uint8_t *input,
                                    size_t len);
// Undoes keel_service_task_add (a failed commit): the task must have no
// executions and not be queued.
void keel_service_task_drop (keel_service_rec_t *svc, uint64_t task_id);
// Changes a task's state, keeping the per-state counts right.
void keel_service_task_set_state (keel_service_rec_t *svc, keel_task_t *task,
                                  keel_task_state_t state);
// FIFO of queued tasks: push to the tail, pop from the head.
bool keel_service_queue_push (keel_service_rec_t *svc, uint64_t task_id);
// Pops the first queued task that `accept` allows (NULL accepts any),
// looking at no more than `scan` entries; skipped entries keep their order.
keel_task_t *keel_service_queue_pop (keel_service_rec_t *svc,
                                     bool (*accept) (keel_task_t *, void *), void *arg, int scan,
                                     uint64_t *task_id_p);
// Removes a task id from the FIFO wherever it is (a claim took it).
void keel_service_queue_remove (keel_service_rec_t *svc, uint64_t task_id);
// Stores a terminal result (takes ownership of result).
void keel_task_set_result (keel_task_t *task, keel_task_result_t *result);
// A result with copies of output (output_len bytes; NULL or 0: none),
// error (NULL: none) and engine_id (NULL: "", cut to KEEL_ID_MAX bytes);
// the other fields are the caller's to set. NULL when out of memory.
keel_task_result_t *keel_task_result_new (int status, const void *output, size_t output_len,
                                          const char *error, const char *engine_id);
void keel_task_result_destroy (keel_task_result_t **result_p);
// Attempts as reported to people and drivers (TaskResult.attempts,
// keel-admin tasks): executions that ended in a task failure plus the one
// that succeeded. task->attempts (the store's column) counts the failures
// only, which is what MaxAttempts bounds. A running execution, or one lost
// with its engine, is not an attempt until it reports an outcome.
uint32_t keel_task_attempts (const keel_task_t *task);

// ---------------------------------------------------------------- executions
// The execution with id exec_id, or NULL (always for 0: no execution has
// it, and keel_model_exec_add refuses it).
keel_exec_t *keel_model_exec (keel_model_t *self, uint64_t exec_id);
// Adds an execution of svc/task_id on engine (may be NULL) and links it.
keel_exec_t *keel_model_exec_add (keel_model_t *self, uint64_t exec_id, keel_service_rec_t *svc,
                                  uint64_t task_id, keel_engine_t *engine, uint32_t attempt,
                                  int64_t now);
// Moves an execution to engine (NULL: none), out of its former engine's
// list and backlog.
void keel_model_exec_move (keel_exec_t *exec, keel_engine_t *engine);
// Sets what an execution weighs on its engine's backlog.
void keel_model_exec_set_cost (keel_exec_t *exec, uint64_t cost_us);
// Unlinks and frees an execution.
void keel_model_exec_remove (keel_model_t *self, keel_exec_t *exec);
size_t keel_model_exec_count (keel_model_t *self);
// Iteration over executions (for timers). Do not add/remove while iterating;
// collect first.
keel_exec_t *keel_model_exec_first (keel_model_t *self);
keel_exec_t *keel_model_exec_next (keel_model_t *self);

// ---------------------------------------------------------------- engines
keel_engine_t *keel_model_engine (keel_model_t *self, const char *engine_id);
keel_engine_t *keel_model_engine_add (keel_model_t *self, const char *engine_id);
void keel_model_engine_remove (keel_model_t *self, keel_engine_t *engine);
// Sets (or clears, with NULL) an engine's routing id; keeps the route index.
void keel_model_engine_route (keel_model_t *self, keel_engine_t *engine, zframe_t *route);
keel_engine_t *keel_model_engine_by_route (keel_model_t *self, zframe_t *route);
bool keel_engine_offers (const keel_engine_t *engine, const char *type);
// The engine's record for a service id: NULL when it has none and create
// is false (or on OOM). Records go with their service (removed with it).
keel_blacklist_t *keel_engine_blacklist (keel_engine_t *engine, const char *service_id,
                                         bool create);
void keel_engine_set_types (keel_engine_t *engine, char **types, size_t ntypes);
// Replaces the engine's properties (takes props: 2 * npairs strings, name
// then value, and the array) and forgets every condition evaluated on the
// old ones.
void keel_engine_set_props (keel_engine_t *engine, char **props, size_t npairs);
// The value of property name on engine, NULL when it has none.
const char *keel_engine_prop (const keel_engine_t *engine, const char *name);
// True when engine's properties meet svc's condition (always, with none).
// Evaluated once per engine and service, then read from engine->matches
// until the engine's properties change or the service goes.
#define KEEL_MATCH_YES ((void *) 1)
#define KEEL_MATCH_NO  ((void *) 2)
bool keel_engine_matches (keel_engine_t *engine, const keel_service_rec_t *svc);
// Why engine does not meet svc's condition (keel_cond_eval's why: the
// comparison that decided and the values it saw); "" when it does.
void keel_engine_mismatch (const keel_engine_t *engine, const keel_service_rec_t *svc, char *why,
                           size_t size);
// True when an online engine that is not draining offers svc's type and
// meets its condition (blacklistings aside: they never leave a service
// with no engine). Otherwise fills why (when not NULL) with the reason its
// tasks wait: "no engine online offers service type 'X'" or "no engine
// online offering service type 'X' meets its condition '...'".
#define KEEL_UNSERVED_TEXT 512
bool keel_model_service_served (keel_model_t *self, const keel_service_rec_t *svc, char *why,
                                size_t size);
// Engines in a stable order (round-robin dispatch).
zlistx_t *keel_model_engines (keel_model_t *self);

// ---------------------------------------------------------------- drivers
keel_driver_rec_t *keel_model_driver (keel_model_t *self, const char *driver_id);
keel_driver_rec_t *keel_model_driver_add (keel_model_t *self, const char *driver_id);
void keel_model_driver_route (keel_model_t *self, keel_driver_rec_t *drv, zframe_t *route);
keel_driver_rec_t *keel_model_driver_by_route (keel_model_t *self, zframe_t *route);
zlistx_t *keel_model_drivers (keel_model_t *self);

// Hex text of a routing id, for hash keys and logs.
void keel_route_key (zframe_t *route, char out[64]);

#endif
