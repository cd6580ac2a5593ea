/*  keel/driver.h — libkeeldriver: submit work to a Keel grid and get every
    result exactly once, whatever happens to the brokers in between.

    A driver (keel_driver_t) is one client of the grid with its own identity
    (a UUID made at keel_driver_new). It opens services — sessions of tasks of
    one service type ("double", "echo", a configured command service) — and
    submits tasks to them. Task ids are 0, 1, 2 ... in submit order within
    each service and are returned by keel_service_submit at once.

    Threads. keel_driver_new starts one background thread (a CZMQ actor)
    that owns the connection to the broker: hello, heartbeats, batching,
    retrying a lost broker, failing over to the next one, probing the
    primary and moving back to it (DESIGN §4); while the application thread
    waits in keel_driver_poll, keel_driver_next_result or
    keel_driver_wait_all, that thread runs the connection itself (no thread
    hand-off on a round trip; driver/actor_lend.h). DSBrokerTimeout also bounds
    the first connection: with no broker answering, the driver reports
    KEEL_STATUS_CONNECTING events meanwhile and the wait calls fail with
    "no broker reachable" after a whole pass over the list. It keeps each task's input
    until the task's result arrives, so nothing submitted is lost when a
    broker is. Every function below is called from ONE application thread;
    keel_driver_t is not thread-safe. Callbacks (status and results) run in
    that application thread, inside keel_driver_poll, keel_driver_next_result
    and keel_driver_wait_all — never on the background thread and never
    inside keel_service_submit. A callback may submit tasks and open, close
    or cancel services; it must not destroy the driver.

    Exactly once. The broker may send a result again (it keeps results until
    acknowledged, and re-sends them after a reconnect); the library delivers
    each task's result to the application once, then acknowledges it (or,
    after keel_driver_hold_acks, once the application says it kept it).
    Results arrive in completion order, not submit order.

    Flow control. Submitting never blocks: tasks are queued in the library
    and sent in batches of DSBatchSize, with at most DSMaxUnaccepted tasks
    sent but not yet Accepted (stored) by the broker; the rest wait in the
    library. An application that streams large jobs keeps its own window:
    keel_driver_outstanding tells how many tasks wait for their result.

    Configuration keys (keel_driver_settings lists them with their units,
    bounds and descriptions): DSPrimaryBroker (tcp://127.0.0.1:7070),
    DSFailoverBrokers (""), DSBrokerTimeout (300 s), DSPrimaryRetryInterval
    (60 s), DSHeartbeatInterval (1 s), DSBatchSize (256), DSMaxUnaccepted
    (100000), LogLevel (warn; applied by programs such as keel-driver through
    keel_log_init — the library does not change process-wide logging).

    Errors: fallible calls return a keel_err (KEEL_OK = 0) and fill a
    keel_error_t (may be NULL) with one line for a person.
*/
#ifndef KEEL_DRIVER_H
#define KEEL_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "error.h"
#include "settings.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _keel_driver_t keel_driver_t;
typedef struct _keel_service_t keel_service_t;

// ---------------------------------------------------------------- results

typedef enum {
    KEEL_TASK_OK = 1,       // the task ran and produced output
    KEEL_TASK_FAILED = 2,   // the task failed (after MaxAttempts), or the broker refused it
    KEEL_TASK_CANCELLED = 3 // the service was cancelled before the task finished
} keel_task_status_t;

// One task's result. Owned by the library while a result callback runs;
// owned by the caller (free with keel_result_destroy) when returned by
// keel_driver_next_result.
typedef struct {
    keel_service_t *service; // the service handle it belongs to
    const char *service_id;  // the service's UUID
    uint64_t task_id;
    keel_task_status_t status;
    const uint8_t *output; // KEEL_TASK_OK: the output (output_size bytes, may be 0)
    size_t output_size;
    const char *error;     // otherwise: why; "" when none was given
    const char *engine_id; // engine that produced it; "" when failed locally
    uint64_t execution_id; // 0 when failed locally
    uint32_t attempts;     // executions that failed plus the final one
    uint64_t queued_ms;    // from acceptance to first dispatch
    uint64_t run_ms;       // wall time of the winning execution
} keel_result_t;

void keel_result_destroy (keel_result_t **result_p);

typedef void (keel_result_fn) (const keel_result_t *result, void *arg);

// ---------------------------------------------------------------- status

typedef enum {
    KEEL_STATUS_CONNECTED = 0, // first broker answered
    KEEL_STATUS_LOST,          // the broker went silent; retried up to DSBrokerTimeout after
                               // its last message (the text says how long more)
    KEEL_STATUS_RECONNECTED,   // the same broker answered again; unaccepted tasks resent
    KEEL_STATUS_FAILOVER,      // now on a failover broker; outstanding tasks resubmitted
    KEEL_STATUS_FAILBACK,      // back on the primary; the failover broker was told to Detach
    KEEL_STATUS_TRYING,        // a broker did not answer in DSBrokerTimeout; trying the next
    KEEL_STATUS_NOTICE,        // a Notice from the broker (level and text are the broker's)
    KEEL_STATUS_STORE_FULL,    // the broker's store refused tasks; they are retried later
    KEEL_STATUS_NO_BROKER,     // no broker answered in a whole pass over the list
    //  Added after the first release (new kinds only ever go at the end, so
    //  the values above never change; a handler should ignore kinds it
    //  does not know).
    KEEL_STATUS_CONNECTING,  // not connected yet: what the driver is trying and for how long.
                             // Once at start (level INFO: "connecting to tcp://b1:7070,
                             // retrying for 5 min (DSBrokerTimeout)"), then every
                             // DSBrokerTimeout/3 (at least 1 s, at most 30 s) while no broker
                             // answers (level WARNING: "still connecting to ... after 30 s;
                             // retrying for 4 min 30 s more ..."). LOST and TRYING texts
                             // also say for how long the broker will be retried.
    KEEL_STATUS_ATTACHED,    // keel_session_attach: a broker answered for the service
                             // (service_id). INFO: attached, the text says how many results
                             // come; ERROR: the broker does not know it (never submitted
                             // there, or purged): the attach failed, nothing will come
                             // (keel_service_info says known = false); WARNING: a broker the
                             // driver moved to does not know it (the driver keeps waiting)
    KEEL_STATUS_DETACHED,    // keel_service_detach finished: every task is stored, the service
                             // is closed to new tasks and its results stay at the broker
    KEEL_STATUS_SERVICE_INFO // keel_session_watch: fresh news of the service
                             // (keel_service_info); about once a second
} keel_status_kind_t;

typedef enum {
    KEEL_LEVEL_INFO = 0,
    KEEL_LEVEL_WARNING = 1,
    KEEL_LEVEL_ERROR = 2
} keel_status_level_t;

// What the "status bar" should show. Valid only during the callback.
typedef struct {
    keel_status_kind_t kind;
    keel_status_level_t level;
    const char *text;       // one line for a person: "failover: now on tcp://b2:7070"
    const char *broker;     // endpoint concerned, "" when none
    const char *service_id; // service concerned (notices), "" when none
} keel_status_t;

typedef void (keel_status_fn) (const keel_status_t *status, void *arg);

// Short name of a status kind ("failover").
const char *keel_status_kind_name (keel_status_kind_t kind);

// ---------------------------------------------------------------- driver

// The settings table of the driver (DS* keys and LogLevel), for
// keel_cli_load, --help and docs/configuration.md.
const keel_setting_def_t *keel_driver_settings (void);

// Creates a driver from defaults, then the properties file config_path (if
// not NULL), then KEEL_<KEY> environment variables, then overrides[0..n)
// ("KEY=VALUE"), and starts its background thread, which connects to
// DSPrimaryBroker at once. Returns NULL and fills err on a configuration
// error (the message names the key and file:line) or a failure to start.
keel_driver_t *keel_driver_new (const char *config_path, char **overrides, int noverrides,
                                keel_error_t *err);

// Same from settings built with keel_driver_settings() (e.g. by
// keel_cli_load); the settings are read, not kept.
keel_driver_t *keel_driver_new_from_settings (const keel_settings_t *settings, keel_error_t *err);

// Stops the background thread and frees the driver, its services and any
// result not yet taken. Services are not closed at the broker: their tasks
// stay there until RetentionHours (close or cancel them first when that
// matters). Nulls *self_p; idempotent.
void keel_driver_destroy (keel_driver_t **self_p);

// The driver's UUID (also its DriverHello.driver_id).
const char *keel_driver_id (const keel_driver_t *self);

// Sets (or with NULL clears) the callback for status events. Without one,
// status events are only logged.
void keel_driver_set_status_handler (keel_driver_t *self, keel_status_fn *fn, void *arg);

// Sets (or with NULL clears) the callback for results. With one, results go
// to it from keel_driver_poll / keel_driver_wait_all / keel_driver_next_result;
// without one they are kept for keel_driver_next_result.
void keel_driver_set_result_handler (keel_driver_t *self, keel_result_fn *fn, void *arg);

// Waits up to timeout_ms (0: do not wait; -1: forever) for events and
// handles every event that is ready: status events go to the status
// callback, results to the result callback (or are kept for
// keel_driver_next_result). Returns KEEL_OK, or KEEL_ERR_TIMEOUT with "no
// broker reachable ..." in err when no broker answered for a whole pass
// over the broker list (DSBrokerTimeout each). The driver keeps trying
// after that: the caller decides whether to give up.
keel_err keel_driver_poll (keel_driver_t *self, int timeout_ms, keel_error_t *err);

// Waits up to timeout_ms (-1: forever) for the next result and returns it
// in *result_p (caller frees with keel_result_destroy); status callbacks run
// meanwhile. Returns KEEL_OK with *result_p = NULL when the time passed
// without a result, KEEL_ERR_TIMEOUT with "no broker reachable" as for
// keel_driver_poll (only once every result already received has been
// returned), or KEEL_ERR_STATE when a result handler is set.
keel_err keel_driver_next_result (keel_driver_t *self, int timeout_ms, keel_result_t **result_p,
                                  keel_error_t *err);

// Runs keel_driver_poll until every submitted task's result has been
// delivered (to the result callback, or kept for keel_driver_next_result),
// or timeout_ms passed (-1: forever; then returns KEEL_ERR_TIMEOUT with
// "N tasks still outstanding"), or no broker is reachable (KEEL_ERR_TIMEOUT).
keel_err keel_driver_wait_all (keel_driver_t *self, int timeout_ms, keel_error_t *err);

// Tasks submitted (over all services) whose result has not reached the
// application yet.
uint64_t keel_driver_outstanding (const keel_driver_t *self);

// Acknowledging only what the application kept. By default a result is
// acknowledged to the broker once it is handed to the application, so an
// application killed between taking a result and keeping it (writing it
// out) loses that result. After keel_driver_hold_acks, a result is
// acknowledged only when the application says it has kept it, with
// keel_driver_ack_taken: one killed before that leaves the result at the
// broker, for keel_session_attach (killed just after keeping it and before
// the acknowledgement leaves, it may get it again there). Call
// keel_driver_hold_acks before opening or attaching any service; returns
// KEEL_ERR_STATE afterwards. keel-driver holds acknowledgements until its
// lines are written.
keel_err keel_driver_hold_acks (keel_driver_t *self, keel_error_t *err);

// With keel_driver_hold_acks: acknowledges every result handed to the
// application so far (returned by keel_driver_next_result or given to the
// result callback); the application has kept them. Returns KEEL_ERR_IO when
// the driver thread cannot be reached.
keel_err keel_driver_ack_taken (keel_driver_t *self, keel_error_t *err);

// ---------------------------------------------------------------- services

typedef struct {
    const char *type;            // service type name, 1-64 of [A-Za-z0-9_.-]
    int32_t priority;            // higher runs first; default 0
    uint32_t max_attempts;       // task failures before giving up; 0 = broker's MaxAttempts
    int64_t reschedule_delay_ms; // after engine loss; -1 = broker's RescheduleDelay
    const void *init_data;       // given to each engine once per service; may be NULL
    size_t init_data_size;
    // A condition on engines (NULL or "": any engine offering the type):
    // the service's tasks run only on engines whose properties meet it,
    // e.g. "memory_mb >= 4096 && gpu == \"a100\"". Properties: the
    // engine's built-in host, os, cores, memory_mb, slots and its
    // property.<name> keys. Language (docs/services.md, "Conditions on
    // engines"): comparisons == != < <= > >= between property names,
    // "strings" and numbers (numerically when both sides are numbers), &&,
    // ||, !, parentheses; a comparison naming a property the engine lacks
    // is false. At most 1024 bytes. keel_driver_open_service refuses a
    // malformed one (KEEL_ERR_INVALID, "condition: column N: ..."); the
    // text is copied. While no online engine meets it, tasks wait and the
    // status callback gets a notice every minute (KEEL_STATUS_NOTICE).
    const char *condition;
} keel_service_options_t;

// Fills options with the defaults for service type `type`.
void keel_service_options_init (keel_service_options_t *options, const char *type);

// Opens a service (a new UUID; sent to the broker in the background) and
// returns its handle, owned by the driver and valid until keel_driver_destroy.
// Returns NULL and fills err when the options are invalid.
keel_service_t *keel_driver_open_service (keel_driver_t *self,
                                          const keel_service_options_t *options, keel_error_t *err);

// The service's UUID.
const char *keel_service_id (const keel_service_t *service);

// Submits one task with input[0..size) (copied) and returns its id in
// *task_id_p (may be NULL). Never blocks. Returns KEEL_ERR_STATE when the
// service was closed or cancelled, KEEL_ERR_NOMEM when out of memory.
keel_err keel_service_submit (keel_service_t *service, const void *input, size_t size,
                              uint64_t *task_id_p, keel_error_t *err);

// Tasks submitted to the service so far (= the next task id).
uint64_t keel_service_submitted (const keel_service_t *service);

// No more tasks will be submitted. Results of tasks already submitted still
// arrive; the broker is told (CloseService) once every one of them has been
// delivered, so a failover until then still resubmits the open service.
keel_err keel_service_close (keel_service_t *service, keel_error_t *err);

// Cancels the service: the broker drops its queued tasks and stops running
// ones. Every task still waiting for its result is delivered as
// KEEL_TASK_CANCELLED (once; a result already in flight may win instead).
keel_err keel_service_cancel (keel_service_t *service, keel_error_t *err);

// ---------------------------------------------------------------- collecting later
//
// Submit now, collect later, from any process (docs/services.md). A
// service lives at its broker without a driver: its tasks run and its
// results wait there, unacknowledged, until a driver attaches and takes
// them, or until RetentionHours after its last result (then it is purged,
// results and all). keel-driver's submit --detach, attach and wait are
// these calls.

// What a broker last said of a service (keel_service_info).
typedef struct {
    bool answered;    // a broker has answered about it; the fields below are its answer
    bool known;       // the broker has it (false: never submitted there, or purged)
    char state[16];   // "open", "closed", "cancelled" or "detached" (a failover broker's)
    uint64_t tasks;   // tasks stored
    uint64_t done;    // tasks ended (ok, failed, cancelled)
    uint64_t failed;  // ... of which failed or cancelled
    uint64_t unacked; // results no driver has acknowledged
    bool complete;    // closed or cancelled, and no task queued or running
} keel_service_info_t;

// Gives the service up without cancelling it. Tasks may still be
// submitted until keel_service_close; once the service is closed, the
// library keeps (re)submitting until every task submitted is Accepted
// (stored) by the broker, then closes the service there (no more tasks)
// and forgets it: a KEEL_STATUS_DETACHED event, and keel_service_detached
// turns true. (Detach first and then submit, as keel-driver submit
// --detach does, to leave every result at the broker.) From the call on, the service's
// results are neither delivered nor acknowledged: they wait at the broker
// for keel_session_attach. Results delivered before the call stay
// delivered (acknowledged). keel_driver_outstanding stops counting the
// service's tasks once it is detached.
keel_err keel_service_detach (keel_service_t *service, keel_error_t *err);
// True once a keel_service_detach has finished.
bool keel_service_detached (const keel_service_t *service);

// Takes over the service service_id (a UUID another driver submitted, or
// this program in an earlier life) to collect its results: returns a
// handle at once (NULL and KEEL_ERR_INVALID for an id that is not 1-64 of
// [A-Za-z0-9_.:-]); the broker's answer comes as a KEEL_STATUS_ATTACHED
// event (keel_service_info: known or not). The broker binds the service to
// this driver, closes it to new tasks (what is stored is the whole
// service) and sends every result no driver has acknowledged yet — with
// all, every result it still stores. Each is delivered once, like any
// result, and acknowledged, so a later attach gets only the rest: across
// attaches, each result reaches one application once (as long as an
// application does not die between taking a result and keeping it:
// the library acknowledges a result once handed over, or with
// keel_driver_hold_acks once the application says so). Across broker
// failover and restart it behaves like a service this driver submitted.
// keel_driver_outstanding and keel_driver_wait_all count its results
// once the broker has answered; tasks still running are waited for.
keel_service_t *keel_session_attach (keel_driver_t *self, const char *service_id, bool all,
                                     keel_error_t *err);

// Follows the service service_id without taking it over (no results):
// about once a second the broker says how it stands, as a
// KEEL_STATUS_SERVICE_INFO event and in keel_service_info. For
// keel-driver wait.
keel_service_t *keel_session_watch (keel_driver_t *self, const char *service_id, keel_error_t *err);

// What a broker last said of an attached or watched service (answered is
// false before the first answer, and for a service opened here).
void keel_service_info (const keel_service_t *service, keel_service_info_t *info);

// ---------------------------------------------------------------- msgpack invocations
//
// The invocation convention of library services (keel/service.h): a task's
// input is one msgpack value ["method", [arg, ...]] and its output one
// msgpack value, so a C driver calls a grid service like a function:
//
//     msgpack_sbuffer buf;
//     msgpack_packer pk;
//     keel_invocation_begin (&buf, &pk, "estimate", 2, NULL);
//     msgpack_pack_uint64 (&pk, samples);          // exactly 2 arguments
//     msgpack_pack_uint64 (&pk, seed);
//     keel_service_submit (service, buf.data, buf.size, &task_id, NULL);
//     msgpack_sbuffer_destroy (&buf);
//     ...
//     msgpack_unpacked value;                      // in the result callback
//     if (keel_result_unpack (result, &value, &err) == KEEL_OK) { ... }
//     msgpack_unpacked_destroy (&value);
//
// Raw bytes stay available: keel_service_submit sends any input as is.
// Method names are 1-KEEL_INVOCATION_METHOD_MAX characters of [A-Za-z0-9_].

#define KEEL_INVOCATION_METHOD_MAX 64

// Initialises *buf (caller destroys it with msgpack_sbuffer_destroy, also
// after an error) and *pk writing into it, and packs the head of an
// invocation of method with nargs arguments; the caller then packs exactly
// nargs values with pk. Returns KEEL_ERR_INVALID for a bad method name.
keel_err keel_invocation_begin (msgpack_sbuffer *buf, msgpack_packer *pk, const char *method,
                                uint32_t nargs, keel_error_t *err);

// Submits an invocation of method with the arguments args (a msgpack ARRAY
// object, e.g. from msgpack_unpack; NULL = no arguments): GridServer's
// submit(method, args). The result comes to the result callback like any
// other (task id in *task_id_p). Returns KEEL_ERR_INVALID for a bad method
// name or args that is not an array; otherwise as keel_service_submit.
keel_err keel_service_invoke (keel_service_t *service, const char *method,
                              const msgpack_object *args, uint64_t *task_id_p, keel_error_t *err);

// Decodes a result's output as exactly one msgpack value into *unpacked
// (the caller initialises nothing and calls msgpack_unpacked_destroy in
// every case). Returns KEEL_OK; KEEL_ERR_STATE when the task did not succeed
// (err holds its error); KEEL_ERR_INVALID when the output is not one
// complete msgpack value.
keel_err keel_result_unpack (const keel_result_t *result, msgpack_unpacked *unpacked,
                             keel_error_t *err);

// Parses data[0..size) as an invocation, the way an engine does: on KEEL_OK
// method (method_size bytes, at least KEEL_INVOCATION_METHOD_MAX + 1) holds
// the name and *args the argument array, valid while *unpacked lives (the
// caller calls msgpack_unpacked_destroy in every case). KEEL_ERR_INVALID
// with the reason otherwise.
keel_err keel_invocation_parse (const void *data, size_t size, msgpack_unpacked *unpacked,
                                char *method, size_t method_size, msgpack_object *args,
                                keel_error_t *err);

#ifdef __cplusplus
}
#endif

#endif
