/*  model.c — the broker's in-memory state. See model.h. */

#include "model.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct _keel_model_t {
    zhashx_t *services;      // id → keel_service_rec_t * (owned)
    zhashx_t *execs;         // uint64 id (as key pointer) → keel_exec_t * (owned)
    zhashx_t *engines;       // id → keel_engine_t * (owned)
    zhashx_t *engine_routes; // route key → keel_engine_t *
    zlistx_t *engine_list;   // keel_engine_t *, stable order
    zhashx_t *drivers;       // id → keel_driver_rec_t * (owned)
    zhashx_t *driver_routes; // route key → keel_driver_rec_t *
    zlistx_t *driver_list;
    uint32_t engine_seq; // last keel_engine_t.number given
};

// A block of small task inputs (KEEL_INPUT_SHARED_MAX bytes or fewer),
// filled front to back and freed with its service: a tiny input costs its
// bytes, not a malloc chunk of 32 and a header. Inputs never change, and a
// task's input lives as long as the task, so nothing is freed alone.
#define KEEL_INPUT_BLOCK (64 * 1024 - 64) // leaves room for malloc's header

typedef struct _s_input_block_t {
    struct _s_input_block_t *next;
    size_t used;
    uint8_t data[];
} s_input_block_t;

// ---------------------------------------------------------------- uint64 keys

static size_t
s_u64_hash (const void *key)
{
    uint64_t x = (uint64_t) (uintptr_t) key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t) x;
}

static int
s_u64_cmp (const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) a, y = (uintptr_t) b;
    return x < y ? -1 : x > y ? 1 : 0;
}

// ---------------------------------------------------------------- destructors

void
keel_task_result_destroy (keel_task_result_t **result_p)
{
    if (!result_p || !*result_p)
        return;
    free (*result_p);
    *result_p = NULL;
}

keel_task_result_t *
keel_task_result_new (int status, const void *output, size_t output_len, const char *error,
                      const char *engine_id)
{
    if (!output)
        output_len = 0;
    size_t error_len = error ? strlen (error) + 1 : 0;
    size_t engine_len = engine_id ? strnlen (engine_id, KEEL_ID_MAX) : 0;
    keel_task_result_t *r = malloc (sizeof *r + output_len + error_len + engine_len + 1);
    if (!r)
        return NULL;
    memset (r, 0, sizeof *r);
    char *p = (char *) (r + 1);
    if (output_len) {
        memcpy (p, output, output_len);
        r->output = (const uint8_t *) p;
        r->output_len = output_len;
        p += output_len;
    }
    if (error) {
        memcpy (p, error, error_len);
        r->error = p;
        p += error_len;
    }
    if (engine_len)
        memcpy (p, engine_id, engine_len);
    p[engine_len] = '\0';
    r->engine_id = p;
    r->status = status;
    return r;
}

static void
s_task_free (keel_task_t *t)
{
    if (!t->input_shared)
        free (t->input);
    free (t->checkpoint);
    keel_task_result_destroy (&t->result);
    memset (t, 0, sizeof *t);
}

static void
s_service_free (keel_service_rec_t *svc)
{
    for (uint64_t i = keel_service_task_next (svc, 0); i < svc->ntasks;
         i = keel_service_task_next (svc, i + 1)) {
        keel_task_t *t = keel_service_task (svc, i);
        if (t)
            s_task_free (t);
    }
    for (uint64_t p = 0; p < svc->npages; p++)
        free (svc->pages[p]);
    free (svc->pages);
    for (s_input_block_t *b = svc->inputs, *next; b; b = next) {
        next = b->next;
        free (b);
    }
    free (svc->queue);
    free (svc->init_data);
    keel_cond_destroy (&svc->cond);
    free (svc);
}

static void
s_blacklist_free (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_engine_free (keel_engine_t *engine)
{
    zframe_destroy (&engine->route);
    for (size_t i = 0; i < engine->ntypes; i++)
        free (engine->types[i]);
    free (engine->types);
    zlistx_destroy (&engine->execs);
    zhashx_destroy (&engine->init_sent);
    zhashx_destroy (&engine->blacklist);
    keel_engine_set_props (engine, NULL, 0);
    zhashx_destroy (&engine->matches);
    free (engine);
}

static void
s_driver_free (keel_driver_rec_t *drv)
{
    zframe_destroy (&drv->route);
    free (drv);
}

keel_model_t *
keel_model_new (void)
{
    keel_model_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->services = zhashx_new ();
    self->execs = zhashx_new ();
    self->engines = zhashx_new ();
    self->engine_routes = zhashx_new ();
    self->engine_list = zlistx_new ();
    self->drivers = zhashx_new ();
    self->driver_routes = zhashx_new ();
    self->driver_list = zlistx_new ();
    if (!self->services || !self->execs || !self->engines || !self->engine_routes
        || !self->engine_list || !self->drivers || !self->driver_routes || !self->driver_list) {
        keel_model_destroy (&self);
        return NULL;
    }
    zhashx_set_key_hasher (self->execs, s_u64_hash);
    zhashx_set_key_comparator (self->execs, s_u64_cmp);
    zhashx_set_key_duplicator (self->execs, NULL);
    zhashx_set_key_destructor (self->execs, NULL);
    return self;
}

void
keel_model_destroy (keel_model_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_model_t *self = *self_p;
    if (self->execs) {
        for (keel_exec_t *e = zhashx_first (self->execs); e; e = zhashx_next (self->execs))
            free (e);
        zhashx_destroy (&self->execs);
    }
    if (self->services) {
        for (keel_service_rec_t *s = zhashx_first (self->services); s;
             s = zhashx_next (self->services))
            s_service_free (s);
        zhashx_destroy (&self->services);
    }
    if (self->engines) {
        for (keel_engine_t *e = zhashx_first (self->engines); e; e = zhashx_next (self->engines))
            s_engine_free (e);
        zhashx_destroy (&self->engines);
    }
    if (self->drivers) {
        for (keel_driver_rec_t *d = zhashx_first (self->drivers); d;
             d = zhashx_next (self->drivers))
            s_driver_free (d);
        zhashx_destroy (&self->drivers);
    }
    zhashx_destroy (&self->engine_routes);
    zhashx_destroy (&self->driver_routes);
    zlistx_destroy (&self->engine_list);
    zlistx_destroy (&self->driver_list);
    free (self);
    *self_p = NULL;
}

void
keel_route_key (zframe_t *route, char out[64])
{
    static const char hex[] = "0123456789abcdef";
    size_t n = zframe_size (route);
    const uint8_t *d = zframe_data (route);
    if (n > 31)
        n = 31;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = 0;
}

// ---------------------------------------------------------------- services

keel_service_rec_t *
keel_model_service (keel_model_t *self, const char *id)
{
    return zhashx_lookup (self->services, id);
}

keel_service_rec_t *
keel_model_service_add (keel_model_t *self, const char *id, const char *type, const char *driver_id)
{
    keel_service_rec_t *svc = calloc (1, sizeof *svc);
    if (!svc)
        return NULL;
    snprintf (svc->id, sizeof svc->id, "%s", id);
    snprintf (svc->type, sizeof svc->type, "%s", type);
    snprintf (svc->driver_id, sizeof svc->driver_id, "%s", driver_id ? driver_id : "");
    svc->reschedule_delay_ms = -1;
    if (zhashx_insert (self->services, svc->id, svc) != 0) {
        free (svc);
        return NULL;
    }
    return svc;
}

void
keel_model_service_remove (keel_model_t *self, keel_service_rec_t *svc)
{
    for (uint64_t i = keel_service_task_next (svc, 0); i < svc->ntasks;
         i = keel_service_task_next (svc, i + 1)) {
        keel_task_t *t = keel_service_task (svc, i);
        while (t && t->execs)
            keel_model_exec_remove (self, t->execs);
    }
    for (keel_engine_t *e = zhashx_first (self->engines); e; e = zhashx_next (self->engines)) {
        zhashx_delete (e->init_sent, svc->id);
        zhashx_delete (e->blacklist, svc->id);
        zhashx_delete (e->matches, svc->id);
    }
    zhashx_delete (self->services, svc->id);
    s_service_free (svc);
}

keel_service_rec_t *
keel_model_service_first (keel_model_t *self)
{
    return zhashx_first (self->services);
}

keel_service_rec_t *
keel_model_service_next (keel_model_t *self)
{
    return zhashx_next (self->services);
}

size_t
keel_model_service_count (keel_model_t *self)
{
    return zhashx_size (self->services);
}

// ---------------------------------------------------------------- tasks

uint64_t
keel_service_cost (const keel_service_rec_t *svc)
{
    return svc->run_samples ? svc->run_us_est : KEEL_COST_UNKNOWN;
}

void
keel_service_note_run (keel_service_rec_t *svc, uint64_t run_us)
{
    if (run_us > KEEL_COST_UNKNOWN)
        run_us = KEEL_COST_UNKNOWN;
    if (svc->run_samples == 0)
        svc->run_us_est = run_us;
    else if (run_us >= svc->run_us_est)
        svc->run_us_est += (run_us - svc->run_us_est + 7) / 8; // rounds up: a tiny mean can grow
    else
        svc->run_us_est -= (svc->run_us_est - run_us) / 8;
    if (svc->run_samples < UINT32_MAX)
        svc->run_samples++;
}

keel_task_t *
keel_service_task (const keel_service_rec_t *svc, uint64_t task_id)
{
    if (task_id >= svc->ntasks) // ntasks <= npages * KEEL_TASK_PAGE
        return NULL;
    keel_task_t *page = svc->pages[task_id / KEEL_TASK_PAGE];
    keel_task_t *t = page ? &page[task_id % KEEL_TASK_PAGE] : NULL;
    return t && t->present ? t : NULL;
}

uint64_t
keel_service_task_next (const keel_service_rec_t *svc, uint64_t task_id)
{
    while (task_id < svc->ntasks) {
        const keel_task_t *page = svc->pages[task_id / KEEL_TASK_PAGE];
        uint64_t page_end = (task_id / KEEL_TASK_PAGE + 1) * KEEL_TASK_PAGE;
        if (page_end > svc->ntasks)
            page_end = svc->ntasks;
        if (page) {
            for (; task_id < page_end; task_id++)
                if (page[task_id % KEEL_TASK_PAGE].present)
                    return task_id;
        }
        task_id = page_end;
    }
    return svc->ntasks;
}

// The slot of task_id, its page allocated if needed; NULL on OOM.
static keel_task_t *
s_task_slot (keel_service_rec_t *svc, uint64_t task_id)
{
    uint64_t p = task_id / KEEL_TASK_PAGE;
    if (p >= svc->npages) {
        uint64_t n = svc->npages ? svc->npages : 16;
        while (n <= p)
            n *= 2;
        keel_task_t **pages = realloc (svc->pages, n * sizeof *pages);
        if (!pages)
            return NULL;
        memset (pages + svc->npages, 0, (n - svc->npages) * sizeof *pages);
        svc->pages = pages;
        svc->npages = n;
    }
    if (!svc->pages[p]) {
        svc->pages[p] = calloc (KEEL_TASK_PAGE, sizeof (keel_task_t));
        if (!svc->pages[p])
            return NULL;
    }
    return &svc->pages[p][task_id % KEEL_TASK_PAGE];
}

// A copy of a small input in svc's input blocks; NULL on OOM.
static uint8_t *
s_input_shared (keel_service_rec_t *svc, const uint8_t *input, size_t len)
{
    s_input_block_t *b = svc->inputs;
    if (!b || KEEL_INPUT_BLOCK - b->used < len) {
        b = malloc (sizeof *b + KEEL_INPUT_BLOCK);
        if (!b)
            return NULL;
        b->next = svc->inputs;
        b->used = 0;
        svc->inputs = b;
    }
    uint8_t *copy = b->data + b->used;
    memcpy (copy, input, len);
    b->used += len;
    return copy;
}

keel_task_t *
keel_service_task_add (keel_service_rec_t *svc, uint64_t task_id, const uint8_t *input, size_t len)
{
    if (task_id == UINT64_MAX || len > UINT32_MAX)
        return NULL;
    keel_task_t *t = s_task_slot (svc, task_id);
    if (!t || t->present)
        return NULL;
    memset (t, 0, sizeof *t);
    if (len && len <= KEEL_INPUT_SHARED_MAX) {
        t->input = s_input_shared (svc, input, len);
        t->input_shared = 1;
    }
    else if (len) {
        t->input = malloc (len);
        if (t->input)
            memcpy (t->input, input, len);
    }
    if (len && !t->input)
        return NULL;
    t->input_len = (uint32_t) len;
    t->present = 1;
    t->state = KEEL_TASK_STATE_QUEUED;
    svc->count[KEEL_TASK_STATE_QUEUED]++;
    svc->total++;
    if (task_id + 1 > svc->ntasks)
        svc->ntasks = task_id + 1;
    return t;
}

void
keel_service_task_drop (keel_service_rec_t *svc, uint64_t task_id)
{
    keel_task_t *t = keel_service_task (svc, task_id);
    if (!t)
        return;
    assert (!t->execs && !t->queued);
    svc->count[t->state]--;
    svc->total--;
    s_task_free (t); // a shared input's bytes stay in their block until the service goes
    // ntasks: past the last task left, a page with none at a time.
    while (svc->ntasks > 0 && !keel_service_task (svc, svc->ntasks - 1)) {
        uint64_t page_start = (svc->ntasks - 1) / KEEL_TASK_PAGE * KEEL_TASK_PAGE;
        svc->ntasks = svc->pages[page_start / KEEL_TASK_PAGE] ? svc->ntasks - 1 : page_start;
    }
}

void
keel_service_task_set_state (keel_service_rec_t *svc, keel_task_t *task, keel_task_state_t state)
{
    svc->count[task->state]--;
    task->state = (uint8_t) state;
    svc->count[state]++;
}

bool
keel_service_queue_push (keel_service_rec_t *svc, uint64_t task_id)
{
    keel_task_t *t = keel_service_task (svc, task_id);
    if (!t || t->queued)
        return true;
    if (svc->qlen == svc->qcap) {
        // realloc, not a new ring and a copy: a large block grows in place
        // (mremap), so the peak is the new ring alone. The entries that
        // wrapped to the front move to just after the old end.
        uint64_t cap = svc->qcap ? svc->qcap * 2 : 64;
        uint64_t *q = realloc (svc->queue, cap * sizeof *q);
        if (!q)
            return false;
        uint64_t wrapped =
            svc->qhead + svc->qlen > svc->qcap ? svc->qhead + svc->qlen - svc->qcap : 0;
        memcpy (q + svc->qcap, q, wrapped * sizeof *q);
        svc->queue = q;
        svc->qcap = cap;
    }
    svc->queue[(svc->qhead + svc->qlen) % svc->qcap] = task_id;
    svc->qlen++;
    t->queued = 1;
    svc->nready++;
    return true;
}

keel_task_t *
keel_service_queue_pop (keel_service_rec_t *svc, bool (*accept) (keel_task_t *, void *), void *arg,
                        int scan, uint64_t *task_id_p)
{
    // Entries whose task is gone or no longer queued are skipped lazily.
    int looked = 0;
    for (uint64_t i = 0; i < svc->qlen && looked < scan; i++) {
        uint64_t pos = (svc->qhead + i) % svc->qcap;
        uint64_t id = svc->queue[pos];
        keel_task_t *t = keel_service_task (svc, id);
        if (!t || !t->queued) {
            if (i == 0) { // drop dead entries at the head for free
                svc->qhead = (svc->qhead + 1) % svc->qcap;
                svc->qlen--;
                i--;
            }
            continue;
        }
        looked++;
        if (accept && !accept (t, arg))
            continue;
        // Remove entry i, shifting the entries before it one step back so
        // the skipped ones keep their order.
        for (uint64_t j = i; j > 0; j--)
            svc->queue[(svc->qhead + j) % svc->qcap] = svc->queue[(svc->qhead + j - 1) % svc->qcap];
        svc->qhead = (svc->qhead + 1) % svc->qcap;
        svc->qlen--;
        t->queued = 0;
        svc->nready--;
        *task_id_p = id;
        return t;
    }
    return NULL;
}

void
keel_service_queue_remove (keel_service_rec_t *svc, uint64_t task_id)
{
    // Lazy: the FIFO entry stays and is skipped when reached.
    keel_task_t *t = keel_service_task (svc, task_id);
    if (t && t->queued) {
        t->queued = 0;
        svc->nready--;
    }
}

void
keel_task_set_result (keel_task_t *task, keel_task_result_t *result)
{
    keel_task_result_destroy (&task->result);
    task->result = result;
}

uint32_t
keel_task_attempts (const keel_task_t *task)
{
    bool succeeded = task->result && task->result->status == KEEL__TASK_STATUS__STATUS_OK;
    return (uint32_t) task->attempts + (succeeded ? 1u : 0u);
}

// ---------------------------------------------------------------- executions

keel_exec_t *
keel_model_exec (keel_model_t *self, uint64_t exec_id)
{
    // Id 0 is no execution's (ids are a prefix and a sequence from 1), and
    // as a key it is a NULL pointer, which zhashx asserts against: an id
    // from a store row or a message is looked up without that check.
    if (exec_id == 0)
        return NULL;
    return zhashx_lookup (self->execs, (void *) (uintptr_t) exec_id);
}

keel_exec_t *
keel_model_exec_add (keel_model_t *self, uint64_t exec_id, keel_service_rec_t *svc,
                     uint64_t task_id, keel_engine_t *engine, uint32_t attempt, int64_t now)
{
    keel_task_t *t = keel_service_task (svc, task_id);
    if (!t || exec_id == 0 || keel_model_exec (self, exec_id))
        return NULL;
    keel_exec_t *e = calloc (1, sizeof *e);
    if (!e)
        return NULL;
    e->id = exec_id;
    e->service = svc;
    e->task_id = task_id;
    e->attempt = attempt;
    e->cost_us = keel_service_cost (svc); // what it weighs on its engine, from now on
    e->started_mono = now;
    if (zhashx_insert (self->execs, (void *) (uintptr_t) exec_id, e) != 0) {
        free (e);
        return NULL;
    }
    e->next_of_task = t->execs;
    t->execs = e;
    keel_model_exec_move (e, engine);
    return e;
}

void
keel_model_exec_move (keel_exec_t *exec, keel_engine_t *engine)
{
    if (exec->engine == engine && (exec->engine_handle || !engine))
        return;
    if (exec->engine && exec->engine_handle) {
        zlistx_delete (exec->engine->execs, exec->engine_handle);
        exec->engine->backlog_us -= exec->cost_us;
    }
    exec->engine = engine;
    exec->engine_handle = engine ? zlistx_add_end (engine->execs, exec) : NULL;
    if (exec->engine_handle)
        engine->backlog_us += exec->cost_us;
    else
        exec->engine = NULL; // no memory for the list entry: on no engine
}

void
keel_model_exec_set_cost (keel_exec_t *exec, uint64_t cost_us)
{
    if (exec->engine && exec->engine_handle)
        exec->engine->backlog_us = exec->engine->backlog_us - exec->cost_us + cost_us;
    exec->cost_us = cost_us;
}

void
keel_model_exec_remove (keel_model_t *self, keel_exec_t *exec)
{
    keel_task_t *t = keel_service_task (exec->service, exec->task_id);
    if (t) {
        for (keel_exec_t **pp = &t->execs; *pp; pp = &(*pp)->next_of_task)
            if (*pp == exec) {
                *pp = exec->next_of_task;
                break;
            }
    }
    keel_model_exec_move (exec, NULL);
    zhashx_delete (self->execs, (void *) (uintptr_t) exec->id);
    free (exec);
}

size_t
keel_model_exec_count (keel_model_t *self)
{
    return zhashx_size (self->execs);
}

keel_exec_t *
keel_model_exec_first (keel_model_t *self)
{
    return zhashx_first (self->execs);
}

keel_exec_t *
keel_model_exec_next (keel_model_t *self)
{
    return zhashx_next (self->execs);
}

// ---------------------------------------------------------------- engines

keel_engine_t *
keel_model_engine (keel_model_t *self, const char *engine_id)
{
    return zhashx_lookup (self->engines, engine_id);
}

keel_engine_t *
keel_model_engine_add (keel_model_t *self, const char *engine_id)
{
    keel_engine_t *e = calloc (1, sizeof *e);
    if (!e)
        return NULL;
    snprintf (e->id, sizeof e->id, "%s", engine_id);
    if (++self->engine_seq == 0)
        self->engine_seq = 1; // 2^32 engine records later; 0 means none
    e->number = self->engine_seq;
    e->execs = zlistx_new ();
    e->init_sent = zhashx_new ();
    e->blacklist = zhashx_new ();
    if (e->blacklist)
        zhashx_set_destructor (e->blacklist, s_blacklist_free);
    e->matches = zhashx_new ();
    e->state = KEEL_ENGINE_OFFLINE;
    if (!e->execs || !e->init_sent || !e->blacklist || !e->matches
        || zhashx_insert (self->engines, e->id, e) != 0) {
        s_engine_free (e);
        return NULL;
    }
    zlistx_add_end (self->engine_list, e);
    return e;
}

void
keel_model_engine_remove (keel_model_t *self, keel_engine_t *engine)
{
    keel_model_engine_route (self, engine, NULL);
    while (zlistx_size (engine->execs))
        keel_model_exec_move (zlistx_first (engine->execs), NULL);
    void *handle = zlistx_find (self->engine_list, engine);
    if (handle)
        zlistx_delete (self->engine_list, handle);
    zhashx_delete (self->engines, engine->id);
    s_engine_free (engine);
}

void
keel_model_engine_route (keel_model_t *self, keel_engine_t *engine, zframe_t *route)
{
    if (engine->route) {
        if (zhashx_lookup (self->engine_routes, engine->route_key) == engine)
            zhashx_delete (self->engine_routes, engine->route_key);
        zframe_destroy (&engine->route);
        engine->route_key[0] = 0;
    }
    if (route) {
        engine->route = zframe_dup (route);
        keel_route_key (route, engine->route_key);
        zhashx_update (self->engine_routes, engine->route_key, engine);
    }
}

keel_engine_t *
keel_model_engine_by_route (keel_model_t *self, zframe_t *route)
{
    char key[64];
    keel_route_key (route, key);
    return zhashx_lookup (self->engine_routes, key);
}

keel_blacklist_t *
keel_engine_blacklist (keel_engine_t *engine, const char *service_id, bool create)
{
    keel_blacklist_t *b = zhashx_lookup (engine->blacklist, service_id);
    if (b || !create)
        return b;
    b = calloc (1, sizeof *b);
    if (b && zhashx_insert (engine->blacklist, service_id, b) != 0) {
        free (b);
        b = NULL;
    }
    return b;
}

bool
keel_engine_offers (const keel_engine_t *engine, const char *type)
{
    for (size_t i = 0; i < engine->ntypes; i++)
        if (strcmp (engine->types[i], type) == 0)
            return true;
    return false;
}

void
keel_engine_set_types (keel_engine_t *engine, char **types, size_t ntypes)
{
    for (size_t i = 0; i < engine->ntypes; i++)
        free (engine->types[i]);
    free (engine->types);
    engine->types = types;
    engine->ntypes = ntypes;
}

void
keel_engine_set_props (keel_engine_t *engine, char **props, size_t npairs)
{
    for (size_t i = 0; i < 2 * engine->nprops; i++)
        free (engine->props[i]);
    free (engine->props);
    engine->props = props;
    engine->nprops = npairs;
    if (engine->matches)
        zhashx_purge (engine->matches);
}

const char *
keel_engine_prop (const keel_engine_t *engine, const char *name)
{
    for (size_t i = 0; i < engine->nprops; i++)
        if (strcmp (engine->props[2 * i], name) == 0)
            return engine->props[2 * i + 1];
    return NULL;
}

static const char *
s_prop_lookup (const char *name, void *arg)
{
    return keel_engine_prop (arg, name);
}

bool
keel_engine_matches (keel_engine_t *engine, const keel_service_rec_t *svc)
{
    if (!svc->cond)
        return true;
    void *known = zhashx_lookup (engine->matches, svc->id);
    if (known)
        return known == KEEL_MATCH_YES;
    bool yes = keel_cond_eval (svc->cond, s_prop_lookup, engine, NULL, 0);
    zhashx_insert (engine->matches, svc->id, yes ? KEEL_MATCH_YES : KEEL_MATCH_NO);
    return yes;
}

void
keel_engine_mismatch (const keel_engine_t *engine, const keel_service_rec_t *svc, char *why,
                      size_t size)
{
    if (size)
        why[0] = 0;
    if (svc->cond)
        keel_cond_eval (svc->cond, s_prop_lookup, (void *) engine, why, size);
}

bool
keel_model_service_served (keel_model_t *self, const keel_service_rec_t *svc, char *why,
                           size_t size)
{
    bool offered = false;
    for (keel_engine_t *e = zlistx_first (self->engine_list); e;
         e = zlistx_next (self->engine_list)) {
        if (e->state != KEEL_ENGINE_ONLINE || e->draining || !keel_engine_offers (e, svc->type))
            continue;
        offered = true;
        if (keel_engine_matches (e, svc))
            return true;
    }
    if (why && !offered)
        snprintf (why, size, "no engine online offers service type '%s'", svc->type);
    else if (why)
        snprintf (why, size,
                  "no engine online offering service type '%s' meets its condition '%.300s'",
                  svc->type, keel_cond_text (svc->cond));
    return false;
}

zlistx_t *
keel_model_engines (keel_model_t *self)
{
    return self->engine_list;
}

// ---------------------------------------------------------------- drivers

keel_driver_rec_t *
keel_model_driver (keel_model_t *self, const char *driver_id)
{
    return zhashx_lookup (self->drivers, driver_id);
}

keel_driver_rec_t *
keel_model_driver_add (keel_model_t *self, const char *driver_id)
{
    keel_driver_rec_t *d = calloc (1, sizeof *d);
    if (!d)
        return NULL;
    snprintf (d->id, sizeof d->id, "%s", driver_id);
    if (zhashx_insert (self->drivers, d->id, d) != 0) {
        free (d);
        return NULL;
    }
    zlistx_add_end (self->driver_list, d);
    return d;
}

void
keel_model_driver_route (keel_model_t *self, keel_driver_rec_t *drv, zframe_t *route)
{
    if (drv->route) {
        if (zhashx_lookup (self->driver_routes, drv->route_key) == drv)
            zhashx_delete (self->driver_routes, drv->route_key);
        zframe_destroy (&drv->route);
        drv->route_key[0] = 0;
    }
    if (route) {
        drv->route = zframe_dup (route);
        keel_route_key (route, drv->route_key);
        zhashx_update (self->driver_routes, drv->route_key, drv);
    }
}

keel_driver_rec_t *
keel_model_driver_by_route (keel_model_t *self, zframe_t *route)
{
    char key[64];
    keel_route_key (route, key);
    return zhashx_lookup (self->driver_routes, key);
}

zlistx_t *
keel_model_drivers (keel_model_t *self)
{
    return self->driver_list;
}
