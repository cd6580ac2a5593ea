/*  fuzz_store_load.c — libFuzzer target for recovery from the store's rows
    without the store: fuzzed records go straight to keel_core_loader's
    callbacks (broker/core_recover.c), then the broker does what broker.c
    s_recover does after a load, and a turn, as fuzz_store_rows does.

    fuzz_store_rows writes every input into a real SQLite store and reads it
    back (about 1,000 inputs a second, fewer as they grow); this target
    reaches the same callbacks with the values a store's reader can hand
    them (any integer, any text or NULL, any blob or NULL, tables in
    keel_store_load's order, rows of a table in any order and repeated: a
    column's SQLite type decides its place in an ORDER BY and its
    uniqueness, not the text the reader sees), without a store's writes and
    reads per input, so it runs several times as fast. fuzz_store_rows
    stays the end-to-end check of the SQLite reader itself.

    Per input: fresh settings when the previous input loaded config rows
    (EngineLoginWindow=0: the window ends at the first turn; LogLevel=error),
    a new core, recover_begin with the input's meta counters, the records
    table by table (services, tasks, executions, pending, config,
    engines; keel_store_load's order), each in input order, recover_end, a
    commit of the journal to a memory: store, recover_done; then a turn
    past the login window (timers, send_results, dispatch, a commit) and
    keel-admin status/services/engines. A callback that stops the load ends
    the input there, as it stops a broker's start. Each record's strings
    and blobs are allocated to their exact size and freed as its callback
    returns (a record is valid only during the call, store.h): a core that
    kept a pointer into one is a use after free.

    Input: records, each
        KIND     one byte, modulo 7: 0 service, 1 task, 2 execution,
                 3 pending, 4 config, 5 engine, 6 meta
        FIELD... the fields of its record in changes.h's order
                 (keel_store_service_t, ...; config: key, value; meta:
                 which (even: epoch, odd: execution_seq), value), each
            integer  one byte B: 0xFF: 8 bytes follow, 0xFE: 4 (an int32),
                     0xFD: 2 (an int16), little-endian, sign-extended;
                     else (int8_t) B. Cast to the field's type as the
                     SQLite reader casts a column (int: the low 32 bits;
                     bool: != 0)
            text, blob  one byte L: 0 NULL; 255: two bytes (little-endian)
                     give the length; else L - 1 bytes follow (a text ends
                     at its first NUL, as a C reader of SQLite's sees it)
    A record cut short by the end of the input is dropped.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_broker.h"
#include "admin.h"
#include "config.h"
#include "core.h"
#include "log.h"
#include "store.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

enum { K_SERVICE, K_TASK, K_EXECUTION, K_PENDING, K_CONFIG, K_ENGINE, K_META, K_COUNT };

static keel_store_t *s_store;
static keel_settings_t *s_settings;

static keel_settings_t *
s_settings_new (void)
{
    keel_error_t err;
    keel_settings_t *settings = keel_settings_new (keel_broker_settings, &err);
    // The login window ends at the first turn (no waiting on the clock);
    // LogLevel error: each core sets the process's level from its settings
    // (the default, info, would write lines for every input).
    if (!settings || keel_settings_set (settings, "EngineLoginWindow", "0", "fuzz", &err) != KEEL_OK
        || keel_settings_set (settings, "LogLevel", "error", "fuzz", &err) != KEEL_OK) {
        fprintf (stderr, "fuzz_store_load: %s\n", err.text);
        abort ();
    }
    return settings;
}

static void
s_cleanup (void)
{
    keel_store_destroy (&s_store);
    keel_settings_destroy (&s_settings);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    keel_log_init (KEEL_LOG_ERROR);
    keel_error_t err;
    s_store = keel_store_open ("memory:", KEEL_STORE_SYNC_NORMAL, &err);
    if (!s_store) {
        fprintf (stderr, "fuzz_store_load: %s\n", err.text);
        abort ();
    }
    s_settings = s_settings_new ();
    atexit (s_cleanup);
    return 0;
}

// ---------------------------------------------------------------- reading records

typedef struct {
    const uint8_t *p, *end;
    bool keep;    // allocate the strings and blobs of this record
    bool short_;  // the input ended inside the record
    void *own[8]; // what keep allocated, freed after the callback
    int nown;
} s_reader_t;

static const uint8_t *
s_take (s_reader_t *r, size_t n)
{
    if (r->short_ || (size_t) (r->end - r->p) < n) {
        r->short_ = true;
        return NULL;
    }
    const uint8_t *b = r->p;
    r->p += n;
    return b;
}

static int64_t
s_int (s_reader_t *r)
{
    const uint8_t *b = s_take (r, 1);
    if (!b)
        return 0;
    size_t n = b[0] == 0xFF ? 8 : b[0] == 0xFE ? 4 : b[0] == 0xFD ? 2 : 0;
    if (n == 0)
        return (int8_t) b[0];
    if (!(b = s_take (r, n)))
        return 0;
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | b[i];
    if (n < 8 && (v >> (8 * n - 1)) & 1)
        v |= ~(uint64_t) 0 << (8 * n); // sign-extend
    return (int64_t) v;
}

//  A text (NUL-terminated) or blob field; NULL for a NULL, or when the
//  record is not kept. *len_p gets the blob's length.
static const uint8_t *
s_bytes (s_reader_t *r, bool text, size_t *len_p)
{
    *len_p = 0;
    const uint8_t *b = s_take (r, 1);
    if (!b || b[0] == 0)
        return NULL;
    size_t len = (size_t) b[0] - 1;
    if (b[0] == 255) {
        if (!(b = s_take (r, 2)))
            return NULL;
        len = (size_t) b[0] | (size_t) b[1] << 8;
    }
    if (!(b = s_take (r, len)) || !r->keep)
        return NULL;
    // Exactly the bytes the field has (a text: up to its first NUL, and
    // the NUL): ASan sees a read past them.
    size_t n = text ? strnlen ((const char *) b, len) + 1 : len;
    uint8_t *copy = malloc (n ? n : 1);
    if (!copy)
        abort ();
    memcpy (copy, b, text ? n - 1 : n);
    if (text)
        copy[n - 1] = 0;
    r->own[r->nown++] = copy;
    *len_p = len;
    return copy;
}

static const char *
s_text (s_reader_t *r)
{
    size_t len;
    return (const char *) s_bytes (r, true, &len);
}

static const uint8_t *
s_blob (s_reader_t *r, size_t *len_p)
{
    return s_bytes (r, false, len_p);
}

static void
s_release (s_reader_t *r)
{
    for (int i = 0; i < r->nown; i++)
        free (r->own[i]);
    r->nown = 0;
}

typedef struct {
    keel_core_t *core;
    uint64_t meta[2]; // epoch, execution_seq
    bool config;      // a config row was loaded (it changed the settings)
} s_load_t;

//  Reads one record of kind (already read) and, when r->keep, hands it to
//  its callback. Returns the callback's answer (0 when not called).
static int
s_record (s_reader_t *r, int kind, s_load_t *ld)
{
    const keel_store_loader_t *loader = keel_core_loader ();
    void *arg = ld->core;
    int rc = 0;
    switch (kind) {
        case K_SERVICE: {
            keel_store_service_t row = { 0 };
            row.service_id = s_text (r);
            row.type = s_text (r);
            row.driver_id = s_text (r);
            row.priority = (int32_t) s_int (r);
            row.max_attempts = (uint32_t) s_int (r);
            row.reschedule_delay_ms = s_int (r);
            row.init_data = s_blob (r, &row.init_len);
            row.state = (keel_service_state_t) (int) s_int (r);
            row.created_wall_ms = s_int (r);
            row.closed_wall_ms = s_int (r);
            row.condition = s_text (r);
            if (r->keep && !r->short_)
                rc = loader->service (&row, arg);
            break;
        }
        case K_TASK: {
            keel_store_task_t row = { 0 };
            row.service_id = s_text (r);
            row.task_id = (uint64_t) s_int (r);
            row.state = (keel_task_state_t) (int) s_int (r);
            row.attempts = (uint32_t) s_int (r);
            row.input = s_blob (r, &row.input_len);
            row.status = (int) s_int (r);
            row.output = s_blob (r, &row.output_len);
            row.error = s_text (r);
            row.engine_id = s_text (r);
            row.execution_id = (uint64_t) s_int (r);
            row.run_ms = (uint64_t) s_int (r);
            row.queued_ms = (uint64_t) s_int (r);
            row.result_acked = s_int (r) != 0;
            row.checkpoint = s_blob (r, &row.checkpoint_len);
            row.checkpoint_wall_ms = s_int (r);
            if (r->keep && !r->short_)
                rc = loader->task (&row, arg);
            break;
        }
        case K_EXECUTION: {
            keel_store_execution_t row = { 0 };
            row.execution_id = (uint64_t) s_int (r);
            row.service_id = s_text (r);
            row.task_id = (uint64_t) s_int (r);
            row.engine_id = s_text (r);
            row.attempt = (uint32_t) s_int (r);
            row.started_wall_ms = s_int (r);
            if (r->keep && !r->short_)
                rc = loader->execution (&row, arg);
            break;
        }
        case K_PENDING: {
            keel_store_pending_t row = { 0 };
            row.service_id = s_text (r);
            row.task_id = (uint64_t) s_int (r);
            row.execution_id = (uint64_t) s_int (r);
            row.engine_id = s_text (r);
            row.has_result = s_int (r) != 0;
            row.status = (int) s_int (r);
            row.output = s_blob (r, &row.output_len);
            row.error = s_text (r);
            row.run_ms = (uint64_t) s_int (r);
            row.expires_wall_ms = s_int (r);
            if (r->keep && !r->short_)
                rc = loader->pending (&row, arg);
            break;
        }
        case K_CONFIG: {
            const char *key = s_text (r);
            const char *value = s_text (r);
            if (r->keep && !r->short_) {
                ld->config = true;
                rc = loader->config (key, value, arg);
            }
            break;
        }
        case K_ENGINE: {
            keel_store_engine_t row = { 0 };
            row.engine_id = s_text (r);
            row.host = s_text (r);
            row.session = s_text (r);
            row.slots = (uint32_t) s_int (r);
            row.login_wall_ms = s_int (r);
            row.seen_wall_ms = s_int (r);
            row.online = s_int (r) != 0;
            if (r->keep && !r->short_)
                rc = loader->engine (&row, arg);
            break;
        }
        default: {
            int64_t which = s_int (r);
            int64_t value = s_int (r);
            if (r->keep && !r->short_)
                ld->meta[which & 1] = (uint64_t) value;
        }
    }
    s_release (r);
    return rc;
}

//  Where each record starts (after its KIND byte), and its kind.
typedef struct {
    size_t at;
    int kind;
} s_start_t;

//  Lists the records of the input into starts (room for size entries: each
//  record takes at least one byte) without keeping anything; returns how
//  many, a record cut short left out.
static size_t
s_index (const uint8_t *data, size_t size, s_start_t *starts, s_load_t *ld)
{
    s_reader_t r = { .p = data, .end = data + size };
    size_t n = 0;
    const uint8_t *b;
    while ((b = s_take (&r, 1))) {
        s_start_t start = { (size_t) (r.p - data), b[0] % K_COUNT };
        s_record (&r, start.kind, ld);
        if (r.short_)
            break;
        starts[n++] = start;
    }
    return n;
}

//  Hands every whole record of kind to its callback, in input order.
//  Returns non-zero when a callback stopped the load.
static int
s_load_kind (const uint8_t *data, size_t size, const s_start_t *starts, size_t n, int kind,
             s_load_t *ld)
{
    for (size_t i = 0; i < n; i++) {
        if (starts[i].kind != kind)
            continue;
        s_reader_t r = { .p = data + starts[i].at, .end = data + size, .keep = true };
        int rc = s_record (&r, kind, ld);
        if (rc)
            return rc;
    }
    return 0;
}

// ---------------------------------------------------------------- the broker's start

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    int64_t now = 1000000, wall = 1700000000000;
    s_load_t ld = { 0 };
    ld.core = keel_core_new (s_settings, now, wall);
    if (!ld.core)
        abort ();
    keel_core_t *core = ld.core;
    s_start_t *starts = malloc ((size ? size : 1) * sizeof *starts);
    if (!starts)
        abort ();
    size_t n = s_index (data, size, starts, &ld);
    // The meta counters first (the broker reads them before loading).
    (void) s_load_kind (data, size, starts, n, K_META, &ld);
    keel_core_recover_begin (core, ld.meta[0], ld.meta[1]);
    int stopped = 0;
    for (int kind = K_SERVICE; kind <= K_ENGINE && !stopped; kind++)
        stopped = s_load_kind (data, size, starts, n, kind, &ld);
    free (starts);
    if (!stopped)
        fuzz_broker_start (core, s_store, s_settings, now, wall);
    keel_changes_clear (keel_core_changes (core));
    fuzz_broker_drain (core);
    keel_core_destroy (&core);
    // Stored config rows changed the settings: the next input starts from
    // the defaults again.
    if (ld.config) {
        keel_settings_destroy (&s_settings);
        s_settings = s_settings_new ();
    }
    return 0;
}
