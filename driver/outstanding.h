/*  outstanding.h — one service's tasks between submit and result.

    The driver actor keeps one keel_outstanding_t per open service. It holds
    each task's input until the task's result arrives (a lost broker means
    resubmitting it), whether the task has been sent to the current broker,
    and whether that broker has Accepted it (committed it to its store).

    Task ids are 0, 1, 2 ... in submit order, so "delivered" needs no set of
    its own: an id below next_id that is no longer held has had its result
    delivered (or was failed locally). That is how each result reaches the
    application exactly once while the broker may send it again.

    Memory is one pointer per id between the lowest held id and next_id plus
    the held inputs: tasks that complete leave nothing behind.

    The same fact tells a broker the driver returns to which tasks it needs
    no more (keel_outstanding_delivered): every id below next_id not held,
    as ranges (ranges.h), so that broker neither runs them again nor sends
    their results again.
*/
#ifndef KEEL_DRIVER_OUTSTANDING_H
#define KEEL_DRIVER_OUTSTANDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "error.h"
#include "ranges.h"

typedef struct _keel_outstanding_t keel_outstanding_t;

// What a result for a task id means.
typedef enum {
    KEEL_OUTSTANDING_NEW = 0, // first result for a held task: deliver it (the task is forgotten)
    KEEL_OUTSTANDING_DUPLICATE, // the task's result was delivered before: acknowledge again, deliver nothing
    KEEL_OUTSTANDING_UNKNOWN // never submitted: ignore
} keel_outstanding_verdict_t;

// A task to send; input points into the held copy, valid until the task completes.
typedef struct {
    uint64_t task_id;
    const uint8_t *input;
    size_t size;
} keel_outstanding_ref_t;

keel_outstanding_t *keel_outstanding_new (void);
// Frees every held input.
void keel_outstanding_destroy (keel_outstanding_t **self_p);

// Holds task task_id, which must be keel_outstanding_next_id (else
// KEEL_ERR_INVALID). Takes ownership of input (malloc'ed; NULL when size is
// 0) in every case. KEEL_ERR_NOMEM when the table cannot grow.
keel_err keel_outstanding_add (keel_outstanding_t *self, uint64_t task_id, uint8_t *input,
                               size_t size);

// The id the next task must have: the number of tasks ever added.
uint64_t keel_outstanding_next_id (const keel_outstanding_t *self);
// Tasks held (no result yet).
size_t keel_outstanding_count (const keel_outstanding_t *self);
// Tasks sent to the current broker and not yet Accepted.
size_t keel_outstanding_unaccepted (const keel_outstanding_t *self);
// True when no held task waits to be sent or Accepted.
bool keel_outstanding_all_accepted (const keel_outstanding_t *self);
// True when some held task waits to be sent.
bool keel_outstanding_has_unsent (const keel_outstanding_t *self);

// A result arrived for task_id. NEW forgets the task (its input is freed).
keel_outstanding_verdict_t keel_outstanding_complete (keel_outstanding_t *self, uint64_t task_id);

// The broker Accepted task_id; alone: a pair's active accepted it on its
// own store only (Accepted.alone). Returns true when a held task became
// accepted.
bool keel_outstanding_accept (keel_outstanding_t *self, uint64_t task_id, bool alone);

// The broker refused task_id: send it again (not accepted).
void keel_outstanding_unsend (keel_outstanding_t *self, uint64_t task_id);

// Reconnected to the same broker: tasks sent but not Accepted are sent again.
void keel_outstanding_resend_unaccepted (keel_outstanding_t *self);

// Moving to another broker (or it lost the service): every held task is sent again.
void keel_outstanding_forget_accepted (keel_outstanding_t *self);
// Tasks Accepted `alone` count as not sent (a welcome: the broker, or the
// pair peer the driver moved to, may not have them).
void keel_outstanding_forget_alone (keel_outstanding_t *self);

// Marks up to max unsent tasks as sent, in id order, and describes them in
// refs[0..n). Returns n.
size_t keel_outstanding_take (keel_outstanding_t *self, size_t max, keel_outstanding_ref_t *refs);

// Describes the ids in [*from_p, next_id) that are not held — their
// results were delivered (or the tasks failed locally) — as ranges into w,
// until w is full, leaving out the nexcept ids in except (sorted, may be
// NULL: results the application took but has not kept yet). Sets *from_p
// to the first id not described: next_id when all were, else where to
// continue with a fresh writer. O(ids looked at + nexcept).
void keel_outstanding_delivered (const keel_outstanding_t *self, uint64_t *from_p,
                                 keel_ranges_writer_t *w, const uint64_t *except, size_t nexcept);

// Forgets the held task with the lowest id and returns true with its id,
// or false when none is held. For failing a service's tasks locally.
bool keel_outstanding_pop (keel_outstanding_t *self, uint64_t *task_id_p);

#endif
