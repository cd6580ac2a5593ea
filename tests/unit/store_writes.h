/*  store_writes.h — for store tests: one function per journal record kind
    (broker/changes.h), each applying one record to the store the way the
    broker's commit does (keel_store_apply). Header-only; static inline.
*/
#ifndef KEEL_TEST_STORE_WRITES_H
#define KEEL_TEST_STORE_WRITES_H

#include "changes.h"
#include "store.h"

#define S_APPLY(store, ...) keel_store_apply ((store), &(keel_change_t) { __VA_ARGS__ })

static inline keel_err
test_store_service_put (keel_store_t *s, const keel_store_service_t *row)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_SERVICE_PUT, .service = *row);
}

static inline keel_err
test_store_service_state (keel_store_t *s, const char *id, keel_service_state_t state, int64_t wall)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_SERVICE_STATE,
                    .service = { .service_id = id, .state = state, .closed_wall_ms = wall });
}

static inline keel_err
test_store_service_delete (keel_store_t *s, const char *id)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_SERVICE_DELETE, .service = { .service_id = id });
}

static inline keel_err
test_store_task_put (keel_store_t *s, const keel_store_task_t *row)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_TASK_PUT, .task = *row);
}

static inline keel_err
test_store_task_state (keel_store_t *s, const char *id, uint64_t task_id, keel_task_state_t state,
                       uint32_t attempts)
{
    return S_APPLY (
        s, .kind = KEEL_CHANGE_TASK_STATE,
        .task = { .service_id = id, .task_id = task_id, .state = state, .attempts = attempts });
}

static inline keel_err
test_store_task_result (keel_store_t *s, const keel_store_task_t *row)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_TASK_RESULT, .task = *row);
}

static inline keel_err
test_store_task_acked (keel_store_t *s, const char *id, uint64_t task_id)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_TASK_ACKED,
                    .task = { .service_id = id, .task_id = task_id });
}

static inline keel_err
test_store_task_checkpoint (keel_store_t *s, const char *id, uint64_t task_id, const uint8_t *data,
                            size_t len, int64_t wall)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_TASK_CHECKPOINT,
                    .task = { .service_id = id,
                              .task_id = task_id,
                              .checkpoint = data,
                              .checkpoint_len = len,
                              .checkpoint_wall_ms = wall });
}

static inline keel_err
test_store_execution_put (keel_store_t *s, const keel_store_execution_t *row)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_EXEC_PUT, .exec = *row);
}

static inline keel_err
test_store_execution_delete (keel_store_t *s, uint64_t exec_id)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_EXEC_DELETE, .exec = { .execution_id = exec_id });
}

static inline keel_err
test_store_pending_put (keel_store_t *s, const keel_store_pending_t *row)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_PENDING_PUT, .pending = *row);
}

static inline keel_err
test_store_pending_delete (keel_store_t *s, const char *id, uint64_t task_id, uint64_t exec_id)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_PENDING_DELETE,
                    .pending = { .service_id = id, .task_id = task_id, .execution_id = exec_id });
}

static inline keel_err
test_store_engine_put (keel_store_t *s, const keel_store_engine_t *row)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_ENGINE_PUT, .engine = *row);
}

static inline keel_err
test_store_config_set (keel_store_t *s, const char *key, const char *value)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_CONFIG_SET, .config = { key, value });
}

static inline keel_err
test_store_event (keel_store_t *s, int64_t wall, const char *kind, const char *text)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_EVENT, .event = { wall, kind, text });
}

static inline keel_err
test_store_meta_set (keel_store_t *s, const char *name, uint64_t value)
{
    return S_APPLY (s, .kind = KEEL_CHANGE_META_SET, .meta = { name, value });
}

#endif
