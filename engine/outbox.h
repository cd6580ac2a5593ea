/*  outbox.h — the engine's result outbox: every Result and checkpoint on its
    way from the held table (held.h) to a broker.

    A task ends through keel_outbox_finish (it ran: a worker's result or an
    inline built-in's) or keel_outbox_refuse (it could not start); either
    records the result in the held table (FINISHED), then:
      - ONLINE, it waits for the end of the loop turn (keel_outbox_end_turn),
        where the Results of every task that ended in the turn leave
        together: a plain Result for one, else ResultBatch messages of at
        most 512 Results, a new one begun once a message holds 1 MiB of
        output and error text. Then the "task finished" lines are written:
        deliver first, log after, so whoever reads the line (an operator, a
        test about to kill the engine) may rely on the result being safe.
      - Not ONLINE, it is spooled at once, then logged.
    A Result the connection did not take stays DONE and is offered again at
    the top of the next turn (keel_outbox_flush, at most 256 per turn).

    Spooling (spool.h). A result is written to the spool only when it may
    have to outlive this process while no broker has it: finished while
    offline, unacknowledged when the engine has been offline for a moment
    (the daemon calls keel_outbox_spool_all S_SPOOL_AFTER_MS after the
    connection dropped, unless it is online again: an engine of a resilient
    pair is usually logged in to the pair peer before, carrying the results
    in its login, and thousands of spool files would only delay that), or
    at stop (keel_outbox_spool_all). Online,
    the broker commits a result within CommitDelay, and a result lost with a
    crashed engine only means the broker runs that task again. At start,
    keel_outbox_load puts every spooled result back in the table as DONE.

    Login. keel_outbox_send_login lists every held execution in the
    EngineLogin: done results ride in it up to 8 MiB of output and error
    text (far below the broker's MaxMessageSize: CARRIED), the others are
    listed as running (LEFT_OUT) and follow as Results once the verdicts
    are in. keel_outbox_logged_in applies the verdicts (DROP forgets the
    execution; HOLD: the broker holds what the login carried), then sends
    every result the broker does not hold and every pending checkpoint (the
    broker has seen only what reached it before the connection was lost).
    keel_outbox_acked removes what a ResultAck names, spool file included.

    Ownership: the outbox borrows the held table, the spool, the engine id
    and the rate limit of task lines (the caller owns them and keeps them
    alive). It owns no socket and reads no clock: it acts through
    keel_outbox_ops_t, which the engine implements (and unit tests fake).
*/
#ifndef KEEL_ENGINE_OUTBOX_H
#define KEEL_ENGINE_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "error.h"
#include "held.h"
#include "log.h"
#include "runner.h"
#include "spool.h"
#include "wire.h"

typedef struct {
    // True while the session is ONLINE: Results and checkpoints may leave.
    bool (*online) (void *arg);
    // Sends env on the current broker connection (the engine numbers it).
    // KEEL_OK when it left; anything else when the connection did not take it.
    keel_err (*send) (void *arg, keel_env_t *env);
    // Execution_id is being forgotten (Cancel, DROP verdict): stop it if it
    // runs. The outbox then removes it from the table.
    void (*stop) (void *arg, uint64_t execution_id);
} keel_outbox_ops_t;

typedef struct _keel_outbox_t keel_outbox_t;

// Creates the outbox of held, spooling to spool; engine_id names this
// engine in the journal; task_log limits the lines a broker's message causes
// about the tasks it names. All of them and ops/arg must outlive the
// outbox. Returns NULL when out of memory.
keel_outbox_t *keel_outbox_new (keel_held_t *held, keel_spool_t *spool, const char *engine_id,
                                keel_ratelimit_t *task_log, const keel_outbox_ops_t *ops,
                                void *arg);

// Frees the outbox (not what it borrows); nulls *self_p. Idempotent.
void keel_outbox_destroy (keel_outbox_t **self_p);

// Loads every valid spooled result (files up to max_bytes) into the held
// table as DONE and spooled. Returns how many were loaded.
int keel_outbox_load (keel_outbox_t *self, size_t max_bytes);

// A RUNNING task ended after it ran: records r (journal exec_end), delivers
// it (see above) and writes its "task finished" line. Nothing happens when
// the execution is no longer held (cancelled, dropped) or already done.
void keel_outbox_finish (keel_outbox_t *self, const keel_runner_result_t *r);

// A RUNNING task could not start: fails it with error (not permanent) and
// delivers it like any result, without a "task finished" line.
void keel_outbox_refuse (keel_outbox_t *self, uint64_t execution_id, const char *error);

// A RUNNING task saved its memory: keeps the latest copy and sends it now
// when ONLINE (else after the next login). Ignored for any other task.
void keel_outbox_checkpoint (keel_outbox_t *self, uint64_t execution_id, const uint8_t *data,
                             size_t size);

// Top of a loop turn, ONLINE: (re)sends up to 256 unsent results, batched.
void keel_outbox_flush (keel_outbox_t *self);

// End of a loop turn: sends the Results of the tasks that ended in it
// (spools them if the session left ONLINE meanwhile), then logs them.
void keel_outbox_end_turn (keel_outbox_t *self);

// Fills login's held list from the table (results within the byte budget
// ride along), sends the EngineLogin through ops->send, and empties the
// list again; login's other fields are the caller's. Returns true if it left.
bool keel_outbox_send_login (keel_outbox_t *self, keel_engine_login_args_t *login);

// The login was accepted: applies reply's verdicts, journals logged_in,
// then sends every unsent result and pending checkpoint. now is for the
// rate limit only.
void keel_outbox_logged_in (keel_outbox_t *self, const Keel__LoginReply *reply, int64_t now);

// ResultAck: removes each named done execution and its spool file.
void keel_outbox_acked (keel_outbox_t *self, const Keel__ResultAck *ack);

// Stops (ops->stop) and removes execution_id, spool file included. No-op
// if it is not held.
void keel_outbox_forget (keel_outbox_t *self, uint64_t execution_id);

// The broker connection is gone: marks every result unsent (spooling them
// is the caller's, keel_outbox_spool_all, once the engine stays offline).
void keel_outbox_disconnected (keel_outbox_t *self);

// Spools every unspooled result (at stop: they outlive this process).
void keel_outbox_spool_all (keel_outbox_t *self);

#endif
