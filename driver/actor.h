/*  actor.h — the driver's background thread (a CZMQ actor) and the messages
    it exchanges with the application thread over the actor pipe.

    The actor owns the DEALER socket(s) to the brokers, the session state
    machine (session.c), heartbeats, and one keel_outstanding_t per service
    (outstanding.c). The application thread (driver.c) touches them only
    while it holds the actor's lend token (actor_lend.h: while it waits for
    results it runs the actor's turns itself, keel_actor_lent_*); otherwise
    it sends commands and receives events, each one pipe message whose
    first frame names it and whose second frame is a pointer to a heap
    struct (both threads are in one process; ownership passes with the
    message and the receiver frees it).

    Application → actor:
      "OPEN"   p keel_actor_open_t *     open (or reopen) a service
      "TASKS"  p keel_actor_tasks_t *    tasks to submit, in id order per service
      "CLOSE"  s service_id              the application closed the service
      "CANCEL" s service_id              the application cancelled the service
      "DETACH" s service_id              the application detached the service
      "WAKE"                             look at the sockets now (after a lend)
      "STOP"                             stop talking to brokers; answers "STOPPED"
      "$TERM"                            stop (zactor_destroy)

    Actor → application:
      "EVENTS" keel_actor_event_t[n]     results to deliver (exactly once) and
                                         status events, in order, n ≤
                                         KEEL_ACTOR_EVENTS_MAX: one message
                                         for many results, not two frames and
                                         a wakeup each (the pipe was a third
                                         of keel-driver's CPU in W1: a poll
                                         and libzmq's getpid check per result)
      "STOPPED"                          answer to "STOP": nothing follows
*/
#ifndef KEEL_DRIVER_ACTOR_H
#define KEEL_DRIVER_ACTOR_H

#include <czmq.h>
#include <stdint.h>
#include <stdbool.h>
#include "actor_lend.h"
#include "keel/driver.h"
#include "security.h"
#include "wire.h"

// What an "EVENTS" entry carries, and what a lender takes
// (keel_actor_lent_wait); the receiver owns item.
typedef enum { KEEL_ACTOR_TO_APP_RESULT, KEEL_ACTOR_TO_APP_STATUS } keel_actor_to_app_kind_t;

#define KEEL_ACTOR_EVENTS_MAX 256 // entries in one "EVENTS" message (or one lend)

typedef struct {
    keel_actor_to_app_kind_t kind;
    void *item; // keel_result_t * or keel_actor_status_t *
} keel_actor_event_t;

typedef struct {
    char driver_id[37];
    int nbrokers;
    char **brokers; // [0] primary, then failovers; owned
    int64_t broker_timeout_ms;
    int64_t primary_retry_ms;
    int64_t heartbeat_ms;
    int64_t batch_size;
    int64_t max_unaccepted;
    keel_security_t security; // DSSecurity, DSCurveKey, DSBrokerKey (security.h)
} keel_actor_config_t;

// How a service came to the driver.
typedef enum {
    KEEL_ACTOR_SUBMIT = 0, // opened here: submitted by this driver
    KEEL_ACTOR_ATTACH,     // keel_session_attach: results not yet acknowledged
    KEEL_ACTOR_ATTACH_ALL, // keel_session_attach with all: every stored result
    KEEL_ACTOR_WATCH       // keel_session_watch: how it stands, no results
} keel_actor_mode_t;

typedef struct {
    char service_id[KEEL_ID_MAX + 1];
    keel_actor_mode_t mode;
    char type[KEEL_TYPE_MAX + 1];
    int32_t priority;
    uint32_t max_attempts;
    int64_t reschedule_delay_ms;
    uint8_t *init_data; // owned; NULL when none
    size_t init_data_size;
    char *condition; // owned; NULL when none (SubmitService.condition)
} keel_actor_open_t;

typedef struct {
    char service_id[KEEL_ID_MAX + 1];
    uint64_t task_id;
    uint8_t *input; // owned; NULL when size is 0
    size_t size;
} keel_actor_task_t;

typedef struct {
    size_t count;
    size_t cap;
    keel_actor_task_t *tasks;
} keel_actor_tasks_t;

typedef struct {
    keel_status_kind_t kind;
    keel_status_level_t level;
    char text[KEEL_TEXT_MAX + 1];
    char broker[256];
    char service_id[KEEL_ID_MAX + 1];
    bool has_info; // ATTACHED, SERVICE_INFO: info is the broker's answer
    keel_service_info_t info;
    int64_t expect; // ATTACHED: results the driver now waits for in all
} keel_actor_status_t;

// The actor's state (actor_int.h): made by the application thread, run
// and freed by the actor thread, lent to the application thread while it
// waits (actor_lend.h).
typedef struct _keel_actor_t keel_actor_t;

// Makes the actor's state; takes config over (frees it on failure too).
// Returns NULL when out of memory. Pass it to zactor_new (keel_actor_run,
// actor): from then on the actor thread owns it and frees it when it ends.
keel_actor_t *keel_actor_new (keel_actor_config_t *config);
// The actor body for zactor_new; args is a keel_actor_t * from
// keel_actor_new, freed by this thread when it ends ($TERM).
void keel_actor_run (zsock_t *pipe, void *args);
// The token that lends the actor's state and sockets to the application
// thread; valid until the actor ends (zactor_destroy).
keel_lend_t *keel_actor_lend (keel_actor_t *self);

// ---- while the application thread holds the token (keel_lend_borrow)

// Takes the batch over and queues its tasks, as the TASKS command does.
void keel_actor_lent_tasks (keel_actor_t *self, keel_actor_tasks_t *batch);
// Runs actor turns on this thread (sends what is due, polls the broker
// sockets, steps the session, acknowledges what it hands over) until at
// least one event is ready or until (monotonic ms) passes. Moves at most
// max events into events[] and returns how many; *interrupted_p is set
// when a signal interrupted the wait.
size_t keel_actor_lent_wait (keel_actor_t *self, int64_t until, keel_actor_event_t *events,
                             size_t max, bool *interrupted_p);
// When the actor's state next needs a turn (a timer), and in *wake_p
// whether the actor thread must look at its sockets now: input left
// unread, or a socket it polls was replaced. For keel_lend_give_back.
int64_t keel_actor_lent_next_due (keel_actor_t *self, bool *wake_p);

void keel_actor_config_destroy (keel_actor_config_t **config_p);
void keel_actor_open_destroy (keel_actor_open_t **open_p);
void keel_actor_tasks_destroy (keel_actor_tasks_t **tasks_p);

// Allocates a result with copies of output (size bytes) and the strings
// (NULL = ""). Returns NULL when out of memory.
keel_result_t *keel_actor_result_new (const char *service_id, uint64_t task_id,
                                      keel_task_status_t status, const void *output, size_t size,
                                      const char *error, const char *engine_id);

#endif
