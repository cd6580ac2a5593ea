/*  core.h — the broker's core: the model of services, tasks, executions,
    engines and drivers, and every transition of it. No sockets, no store,
    no clock reads: the loop (broker.c) feeds it events and carries out the
    effects it returns. docs/architecture.md draws the whole path.

    Events in (each with the time the loop read, keel_core_clock):
      keel_core_message      a decoded, validated message and its peer's routing id
      keel_core_malformed    a message that did not decode (counted, logged)
      keel_core_timers       a tick: heartbeats, losses, requeues, HOLD expiry, purge
      keel_core_dispatch     assign queued tasks to free engine slots
      keel_core_committed    the turn's journal is in the store (or:
      keel_core_commit_failed  it is not: the turn's submissions are undone)
      keel_core_synced       commits up to seq are durable (StoreSync=full)
      admin commands         keel_core_cancel_service, _drain, _settings_changed, _purge

    Effects out:
      messages    keel_core_out_next: routing id + encoded envelope + the commit
                  that must be durable before it leaves (0: none). The loop
                  holds a message until then (a LoginReply that lets an engine
                  forget a result, an Accepted, a ResultAck).
      changes     keel_core_changes: the turn's journal of durable changes
                  (changes.h); the loop applies it in the turn's transaction,
                  after keel_core_prepare_commit has added the rows of the
                  tasks and executions that changed.
      log lines   written directly (KEEL_INFO, rate-limited per peer), and the
                  chaos journal (KEEL_JOURNAL): observations, not state.

    The turn, as the loop runs it:
      clock → turn_begin (pause detection) → messages → clock → timers →
      send_results → dispatch → flush → [commit if keel_core_commit_due:
      prepare_commit, apply + commit the journal, committed/commit_failed] →
      flush → admin requests.
    With keel_core_sync_now (a login's DROP verdict), the commit comes before
    dispatch and nothing of the turn leaves before that commit is durable.

    The lifecycles (states and transitions) are written down in core_int.h,
    next to the functions that make them.
*/
#ifndef KEEL_CORE_H
#define KEEL_CORE_H

#include <stdbool.h>
#include <stdint.h>
#include <czmq.h>

#include "admin.h"
#include "changes.h"
#include "counters.h"
#include "error.h"
#include "metrics.h"
#include "model.h"
#include "settings.h"
#include "store.h"
#include "wire.h"

typedef struct _keel_core_t keel_core_t;

// A message the core sends: the loop owns it once taken.
typedef struct {
    zframe_t *route;
    zframe_t *payload;
    uint64_t seq; // > 0: leaves once commit seq is durable
} keel_core_out_t;

void keel_core_out_destroy (keel_core_out_t **out_p);

// ---------------------------------------------------------------- lifecycle

// A core for the broker named by settings' Name, with the settings it reads
// (kept; keel_core_settings_changed re-reads them). now/wall: the loop's
// clocks at start.
keel_core_t *keel_core_new (keel_settings_t *settings, int64_t now, int64_t wall);
void keel_core_destroy (keel_core_t **self_p);

// Recovery from the store (DESIGN §5): begin with the counters the store
// kept, feed every row through the loader (its arg is the core), end (the
// core appends the new epoch and execution-id reservation to the journal:
// commit them before serving), then done once committed.
void keel_core_recover_begin (keel_core_t *self, uint64_t stored_epoch, uint64_t stored_exec_seq);
const keel_store_loader_t *keel_core_loader (void);
void keel_core_recover_end (keel_core_t *self);
void keel_core_recover_done (keel_core_t *self);

// ---------------------------------------------------------------- events

// The loop's clocks (monotonic and wall, ms), read before each event.
void keel_core_clock (keel_core_t *self, int64_t now, int64_t wall);
// Once at the start of a turn, after keel_core_clock: notices a pause of
// the loop (SIGSTOP, a stalled disk) and forgives peers the silence.
void keel_core_turn_begin (keel_core_t *self);

// One valid message from the client endpoint; route is the peer's routing id.
void keel_core_message (keel_core_t *self, zframe_t *route, keel_env_t *env);
// A message that could not be decoded (counted, logged at a rate limit).
void keel_core_malformed (keel_core_t *self, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
// A refusal by Security=curve (counted as role_refused when role, else
// auth_refused; logged at a rate limit).
void keel_core_refused (keel_core_t *self, bool role, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
// The authenticated principal of the message keel_core_message handles
// next ("" with Security=none): its connection's role and key, so that a
// driver keeps to its own driver id and services.
void keel_core_principal (keel_core_t *self, const char *principal);
// A send the loop made failed with errno err: counted as a send to a
// departed peer (EHOSTUNREACH: its connection has closed) or a send
// failure (the peer's queue is full).
void keel_core_send_failed (keel_core_t *self, int err);

void keel_core_timers (keel_core_t *self);
// Queues the turn's results to their drivers (before the commit: the
// engine keeps its copy until the commit acknowledges it).
void keel_core_send_results (keel_core_t *self);
void keel_core_dispatch (keel_core_t *self);

// ---------------------------------------------------------------- commits

// True when the turn must commit now (a driver waits for Accepted, dispatch
// ran out of durable execution ids, or changes are CommitDelay old).
bool keel_core_commit_due (keel_core_t *self);
// True when anything waits for a commit (a clean stop commits it).
bool keel_core_uncommitted (const keel_core_t *self);
// True when this turn's messages must wait until its commit is durable.
bool keel_core_sync_now (const keel_core_t *self);
// How long the loop may sleep (ms) before the core has something to do.
int64_t keel_core_wait_ms (const keel_core_t *self);

// The turn's journal (changes.h). The loop applies it and clears it.
keel_changes_t *keel_core_changes (keel_core_t *self);
// Adds the rows of the tasks and executions that changed to the journal.
// True when the commit writes something (only such a commit proves a failed
// store writable again). Returns KEEL_ERR_NOMEM on failure.
keel_err keel_core_prepare_commit (keel_core_t *self, bool *writes_p);
// The journal is committed (in the WAL). Returns the commit's number:
// messages that need it durable carry it. wrote: from prepare_commit.
uint64_t keel_core_committed (keel_core_t *self, bool wrote);
// The commit failed (error: why): the turn's submissions are undone and
// refused, the rest waits for the next commit.
void keel_core_commit_failed (keel_core_t *self, const char *error);
// Every commit up to seq is durable.
void keel_core_synced (keel_core_t *self, uint64_t seq);
uint64_t keel_core_synced_seq (const keel_core_t *self);
// The loop asked the store for a sync (counted: store_syncs).
void keel_core_count_sync (keel_core_t *self);
// The store could not sync: counted (the loop stops).
void keel_core_sync_failed (keel_core_t *self);

// ---------------------------------------------------------------- effects

// The next message to send, in order, or NULL. The caller owns it.
keel_core_out_t *keel_core_out_next (keel_core_t *self);

// ---------------------------------------------------------------- admin

// Fills what keel-admin commands read (admin.h); the loop adds the store.
void keel_core_admin_view (keel_core_t *self, keel_admin_view_t *view);
// Who makes the admin request being handled ("admin=<id> from=<address>",
// "" when none): named in the events it causes.
void keel_core_admin_who (keel_core_t *self, const char *who);
keel_err keel_core_cancel_service_by_id (keel_core_t *self, const char *service_id,
                                         keel_error_t *err);
keel_err keel_core_drain (keel_core_t *self, const char *engine_id, keel_error_t *err);
// keel-admin unblacklist: engine_id gets tasks of service_id (NULL: of
// every service) again, and its failures in a row there are forgotten.
// *cleared: how many blacklistings ended. KEEL_ERR_NOTFOUND (err says
// which) for an unknown engine or service.
keel_err keel_core_unblacklist (keel_core_t *self, const char *engine_id, const char *service_id,
                                size_t *cleared, keel_error_t *err);
// Engine-service pairs blacklisted now (a gauge for /metrics).
size_t keel_core_blacklist_count (const keel_core_t *self);
// A runtime setting changed (keel-admin config set, once committed).
void keel_core_settings_changed (keel_core_t *self, const char *key, const char *value,
                                 const char *was);
// Purges services past retention now; returns how many.
uint64_t keel_core_purge_now (keel_core_t *self, int64_t retention_ms);
// Records an event (kind, text) in the journal and the log.
void keel_core_note (keel_core_t *self, const char *kind, const char *text);

// ---------------------------------------------------------------- reads

keel_model_t *keel_core_model (keel_core_t *self);
const keel_counters_t *keel_core_counters (const keel_core_t *self);
uint64_t keel_core_epoch (const keel_core_t *self);
const char *keel_core_name (const keel_core_t *self);

// A resilient pair: the peer's AdvertisedEndpoint, named in every
// DriverWelcome and LoginReply (pair_peer). The string is the caller's and
// may change in place; NULL or "": not in a pair.
void keel_core_set_pair_peer (keel_core_t *self, const char *peer);
// A member of a shared store: execution ids carry a prefix from its member
// id instead of its name, so members serving side by side (often with one
// name) hand out different ids. Before the store is loaded.
void keel_core_set_member (keel_core_t *self, uint64_t member_id);
// A member of a shared store: the live members' endpoints, named in every
// DriverWelcome and LoginReply (cluster_members). The array is the
// caller's (it may change in place; *n is read at each welcome); NULL: none.
void keel_core_set_cluster_members (keel_core_t *self, char **members, const size_t *n);
// The store's keel_store_whole_row_max: a result of a task whose blobs are
// all at most max bytes is written as its whole row (TASK_PUT), not as an
// update (TASK_RESULT). 0 (the default): updates.
void keel_core_set_whole_rows (keel_core_t *self, size_t max);
// Where the core reports task run times and queue waits (metrics.h; the
// caller's, it outlives the core). NULL: nowhere (the default).
void keel_core_set_metrics (keel_core_t *self, keel_metrics_t *metrics);
// A pair's active without an attached peer: its acceptances are marked
// Accepted.alone (durable here only) from now on, until set false.
void keel_core_set_pair_alone (keel_core_t *self, bool alone);
// A pair's takeover: a Notice (WARNING) with text to every driver, once:
// those connected now, the others after their next welcome.
void keel_core_pair_notice (keel_core_t *self, const char *text);
// Notice (WARNING) to every connected driver.
void keel_core_notice_all (keel_core_t *self, const char *text);

#endif
