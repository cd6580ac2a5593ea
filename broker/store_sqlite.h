/*  store_sqlite.h — the SQLite backend of the broker's store (internal).

    Only store.c includes this header; the broker uses store.h. Each
    function here is the "sqlite:" half of the store.h function with the
    same name minus the "_sqlite" part, and has the same contract. The
    backend object owns the database connection and its prepared
    statements; keel_store_sqlite_destroy closes both.
*/
#ifndef KEEL_STORE_SQLITE_H
#define KEEL_STORE_SQLITE_H

#include "store.h"

typedef struct _keel_store_sqlite_t keel_store_sqlite_t;

// Opens or creates the store file at path (see store.h "Opening is loud").
keel_store_sqlite_t *keel_store_sqlite_open (const char *path, keel_store_sync_t sync,
                                             keel_error_t *err);
void keel_store_sqlite_destroy (keel_store_sqlite_t **self_p);

keel_err keel_store_sqlite_commit (keel_store_sqlite_t *self, keel_error_t *err);
int keel_store_sqlite_sync_fd (const keel_store_sqlite_t *self);
keel_err keel_store_sqlite_sync (keel_store_sqlite_t *self, keel_error_t *err);
// StoreSync=full: the WAL holds KEEL_STORE_SQLITE_WAL_CHECKPOINT pages or
// more, to be checkpointed off the loop (store_sqlite.c, s_wal_hook).
#define KEEL_STORE_SQLITE_WAL_CHECKPOINT 1000 // SQLite's wal_autocheckpoint
#define KEEL_STORE_SQLITE_WAL_FORCE      8000 // past this the commit checkpoints itself
bool keel_store_sqlite_checkpoint_due (const keel_store_sqlite_t *self);
void keel_store_sqlite_checkpoints_elsewhere (keel_store_sqlite_t *self, bool elsewhere);
const char *keel_store_sqlite_path (const keel_store_sqlite_t *self);
void keel_store_sqlite_rollback (keel_store_sqlite_t *self);
const char *keel_store_sqlite_last_error (const keel_store_sqlite_t *self);

keel_err keel_store_sqlite_service_put (keel_store_sqlite_t *self, const keel_store_service_t *svc);
keel_err keel_store_sqlite_service_state (keel_store_sqlite_t *self, const char *service_id,
                                          keel_service_state_t state, int64_t wall_ms);
keel_err keel_store_sqlite_service_delete (keel_store_sqlite_t *self, const char *service_id);
keel_err keel_store_sqlite_task_put (keel_store_sqlite_t *self, const keel_store_task_t *task);
keel_err keel_store_sqlite_task_state (keel_store_sqlite_t *self, const char *service_id,
                                       uint64_t task_id, keel_task_state_t state,
                                       uint32_t attempts);
keel_err keel_store_sqlite_task_result (keel_store_sqlite_t *self, const keel_store_task_t *task);
keel_err keel_store_sqlite_task_acked (keel_store_sqlite_t *self, const char *service_id,
                                       uint64_t task_id);
// A turn's journal in fewer statements (keel_store_apply_all):
// put_many writes the *n_p TASK_PUT records of puts (whole task rows) and
// sets *n_p to 0: with one multi-row INSERT OR REPLACE when they are
// KEEL_STORE_SQLITE_PUT_BATCH rows it can take (no big blob, none in a row
// it replaces), else one by one (keel_store_sqlite_task_put). acked_later
// keeps an acknowledgement for acked_flush, which marks the kept ones with
// one range update per run of consecutive task ids (an acknowledgement
// only ever sets a flag, so it may come after the journal's other writes
// of its row; before a service is deleted, as its number may be given again).
#define KEEL_STORE_SQLITE_PUT_BATCH     32
// Whole rows up to this blob size go through put_many
// (keel_store_whole_row_max): KEEL_STORE_INLINE_MAX, the largest blob kept
// inside a row.
#define KEEL_STORE_SQLITE_WHOLE_ROW_MAX 256
// The records of a journal (keel_store_apply, keel_store_apply_all).
keel_err keel_store_sqlite_apply (keel_store_sqlite_t *self, const keel_change_t *c);
keel_err keel_store_sqlite_apply_all (keel_store_sqlite_t *self, const keel_changes_t *changes);
keel_err keel_store_sqlite_put_many (keel_store_sqlite_t *self, const keel_change_t **puts,
                                     size_t *n_p);
keel_err keel_store_sqlite_acked_later (keel_store_sqlite_t *self, const char *service_id,
                                        uint64_t task_id);
keel_err keel_store_sqlite_acked_flush (keel_store_sqlite_t *self);
keel_err keel_store_sqlite_task_checkpoint (keel_store_sqlite_t *self, const char *service_id,
                                            uint64_t task_id, const uint8_t *data, size_t len,
                                            int64_t wall_ms);
keel_err keel_store_sqlite_execution_put (keel_store_sqlite_t *self,
                                          const keel_store_execution_t *exec);
keel_err keel_store_sqlite_execution_delete (keel_store_sqlite_t *self, uint64_t execution_id);
keel_err keel_store_sqlite_pending_put (keel_store_sqlite_t *self,
                                        const keel_store_pending_t *pending);
keel_err keel_store_sqlite_pending_delete (keel_store_sqlite_t *self, const char *service_id,
                                           uint64_t task_id, uint64_t execution_id);
keel_err keel_store_sqlite_config_set (keel_store_sqlite_t *self, const char *key,
                                       const char *value);
bool keel_store_sqlite_in_transaction (const keel_store_sqlite_t *self);
keel_err keel_store_sqlite_engine_put (keel_store_sqlite_t *self,
                                       const keel_store_engine_t *engine);
keel_err keel_store_sqlite_event (keel_store_sqlite_t *self, int64_t wall_ms, const char *kind,
                                  const char *text);
keel_err keel_store_sqlite_meta_set (keel_store_sqlite_t *self, const char *name, uint64_t value);
keel_err keel_store_sqlite_meta_get (keel_store_sqlite_t *self, const char *name,
                                     uint64_t *value_p);

keel_err keel_store_sqlite_load (keel_store_sqlite_t *self, const keel_store_loader_t *loader,
                                 void *arg, keel_error_t *err);
keel_err keel_store_sqlite_events (keel_store_sqlite_t *self, int limit, keel_store_event_fn *fn,
                                   void *arg);
keel_err keel_store_sqlite_maintenance (keel_store_sqlite_t *self, int64_t now_wall_ms,
                                        int64_t retention_ms, keel_store_maintenance_t *report,
                                        keel_error_t *err);
uint64_t keel_store_sqlite_size (keel_store_sqlite_t *self);

// store_sqlite_snapshot.c
keel_err keel_store_sqlite_snapshot (keel_store_sqlite_t *self, const char *path,
                                     keel_error_t *err);
keel_err keel_store_sqlite_check_file (const char *path, keel_error_t *err);
keel_err keel_store_sqlite_replace (keel_store_sqlite_t *self, const char *path, keel_error_t *err);

#endif
