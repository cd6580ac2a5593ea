/*  metrics.c — histograms and the Prometheus text exposition (metrics.h).
*/

#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

// Upper bounds, in seconds, of the histograms' buckets (+Inf is implied).
static const double s_task_bounds[] = { 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,  1,
                                        5,     10,    30,   60,   300, 1800, 3600 };
static const double s_commit_bounds[] = { 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                          0.05,   0.1,    0.25,  0.5,    1,     2.5 };
#define S_TASK_BUCKETS   (sizeof s_task_bounds / sizeof s_task_bounds[0])
#define S_COMMIT_BUCKETS (sizeof s_commit_bounds / sizeof s_commit_bounds[0])
#define S_MAX_BUCKETS    S_TASK_BUCKETS

typedef struct {
    uint64_t count[S_MAX_BUCKETS + 1]; // per bucket (not cumulative); the last is +Inf
    uint64_t n;
    double sum;
} s_histo_t;

// One service type's series; slot KEEL_METRICS_TYPES is type="other".
typedef struct {
    char name[KEEL_TYPE_MAX + 1];
    s_histo_t run, wait;
    uint64_t queued, running; // gauges, filled while rendering
} s_type_t;

struct _keel_metrics_t {
    s_type_t types[KEEL_METRICS_TYPES + 1];
    size_t ntypes; // named slots in use
    s_histo_t commit;
};

static const char *s_task_state[KEEL_TASK_NSTATES] = {
    "queued", "running", "done", "failed", "cancelled", "delivered_elsewhere"
};
static const char *s_service_state[] = { "open", "closed", "cancelled", "detached" };

keel_metrics_t *
keel_metrics_new (void)
{
    keel_metrics_t *self = calloc (1, sizeof *self);
    if (self)
        snprintf (self->types[KEEL_METRICS_TYPES].name, sizeof self->types[0].name, "other");
    return self;
}

void
keel_metrics_destroy (keel_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free (*self_p);
    *self_p = NULL;
}

static void
s_observe (s_histo_t *h, const double *bounds, size_t nbounds, double value)
{
    size_t i = 0;
    while (i < nbounds && value > bounds[i])
        i++;
    h->count[i]++;
    h->n++;
    h->sum += value;
}

// The type's slot: its own while there is room, else "other".
static s_type_t *
s_type (keel_metrics_t *self, const char *type)
{
    for (size_t i = 0; i < self->ntypes; i++)
        if (strcmp (self->types[i].name, type) == 0)
            return &self->types[i];
    if (self->ntypes == KEEL_METRICS_TYPES)
        return &self->types[KEEL_METRICS_TYPES];
    s_type_t *t = &self->types[self->ntypes++];
    snprintf (t->name, sizeof t->name, "%s", type);
    return t;
}

void
keel_metrics_task_run (keel_metrics_t *self, const char *type, uint64_t run_us)
{
    s_observe (&s_type (self, type)->run, s_task_bounds, S_TASK_BUCKETS, (double) run_us / 1e6);
}

void
keel_metrics_queue_wait (keel_metrics_t *self, const char *type, uint64_t wait_ms)
{
    s_observe (&s_type (self, type)->wait, s_task_bounds, S_TASK_BUCKETS, (double) wait_ms / 1e3);
}

void
keel_metrics_store_commit (keel_metrics_t *self, uint64_t commit_us)
{
    s_observe (&self->commit, s_commit_bounds, S_COMMIT_BUCKETS, (double) commit_us / 1e6);
}

// ---------------------------------------------------------------- rendering

// A label value as the text format wants it: \ " and newline escaped.
static void
s_label (FILE *f, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            fputc ('\\', f);
        if (*p == '\n')
            fputs ("\\n", f);
        else
            fputc (*p, f);
    }
}

static void
s_family (FILE *f, const char *name, const char *type, const char *help)
{
    fprintf (f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
s_gauge (FILE *f, const char *name, const char *help, double value)
{
    s_family (f, name, "gauge", help);
    fprintf (f, "%s %.15g\n", name, value);
}

// One histogram's series; label is `type="..."` or NULL.
static void
s_histo (FILE *f, const char *name, const s_histo_t *h, const double *bounds, size_t nbounds,
         const char *type)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= nbounds; i++) {
        cum += h->count[i];
        fprintf (f, "%s_bucket{", name);
        if (type) {
            fputs ("type=\"", f);
            s_label (f, type);
            fputs ("\",", f);
        }
        if (i < nbounds)
            fprintf (f, "le=\"%g\"} %llu\n", bounds[i], (unsigned long long) cum);
        else
            fprintf (f, "le=\"+Inf\"} %llu\n", (unsigned long long) cum);
    }
    const char *suffix[] = { "_sum", "_count" };
    for (int k = 0; k < 2; k++) {
        fprintf (f, "%s%s", name, suffix[k]);
        if (type) {
            fputs ("{type=\"", f);
            s_label (f, type);
            fputs ("\"}", f);
        }
        if (k == 0)
            fprintf (f, " %.15g\n", h->sum);
        else
            fprintf (f, " %llu\n", (unsigned long long) h->n);
    }
}

// The per-type histograms: only the types that have observations.
static void
s_type_histos (FILE *f, const keel_metrics_t *self, const char *name, const char *help, bool run)
{
    s_family (f, name, "histogram", help);
    for (size_t i = 0; i <= KEEL_METRICS_TYPES; i++) {
        const s_type_t *t = &self->types[i];
        const s_histo_t *h = run ? &t->run : &t->wait;
        if (h->n)
            s_histo (f, name, h, s_task_bounds, S_TASK_BUCKETS, t->name);
    }
}

static void
s_render_model (FILE *f, keel_metrics_t *self, const keel_admin_view_t *v)
{
    uint64_t online = 0, offline = 0, draining = 0, slots = 0, busy = 0, blacklisted = 0;
    int64_t now = zclock_mono ();
    zlistx_t *engines = keel_model_engines (v->model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        for (keel_blacklist_t *b = zhashx_first (e->blacklist); b; b = zhashx_next (e->blacklist))
            blacklisted += b->blacklisted && b->until_mono > now;
        if (e->state == KEEL_ENGINE_ONLINE) {
            online++;
            draining += e->draining;
            slots += e->slots;
            busy += zlistx_size (e->execs);
        }
        else
            offline++;
    }
    uint64_t services[4] = { 0 }, tasks[KEEL_TASK_NSTATES] = { 0 };
    for (size_t i = 0; i <= KEEL_METRICS_TYPES; i++)
        self->types[i].queued = self->types[i].running = 0;
    for (keel_service_rec_t *s = keel_model_service_first (v->model); s;
         s = keel_model_service_next (v->model)) {
        if (s->state < 4)
            services[s->state]++;
        for (int i = 0; i < KEEL_TASK_NSTATES; i++)
            tasks[i] += s->count[i];
        s_type_t *t = s_type (self, s->type);
        t->queued += s->count[KEEL_TASK_STATE_QUEUED];
        t->running += s->count[KEEL_TASK_STATE_RUNNING];
    }
    s_family (f, "keel_engines", "gauge", "Engines known to the broker, by state");
    fprintf (f, "keel_engines{state=\"online\"} %llu\nkeel_engines{state=\"offline\"} %llu\n",
             (unsigned long long) online, (unsigned long long) offline);
    s_gauge (f, "keel_engines_draining", "Online engines draining (no new tasks)",
             (double) draining);
    s_gauge (f, "keel_engine_blacklistings",
             "Engines blacklisted for a service now (one per engine and service)",
             (double) blacklisted);
    s_gauge (f, "keel_engine_slots", "Task slots of the online engines", (double) slots);
    s_gauge (f, "keel_engine_slots_busy", "Executions running on the online engines",
             (double) busy);
    s_family (f, "keel_services", "gauge", "Services the broker holds, by state");
    for (int i = 0; i < 4; i++)
        fprintf (f, "keel_services{state=\"%s\"} %llu\n", s_service_state[i],
                 (unsigned long long) services[i]);
    s_family (f, "keel_tasks", "gauge", "Tasks the broker holds, by state");
    for (int i = 0; i < KEEL_TASK_NSTATES; i++)
        fprintf (f, "keel_tasks{state=\"%s\"} %llu\n", s_task_state[i],
                 (unsigned long long) tasks[i]);
    s_family (f, "keel_type_tasks", "gauge",
              "Queued and running tasks by service type (the first 20 types; the rest: other)");
    for (size_t i = 0; i <= KEEL_METRICS_TYPES; i++) {
        const s_type_t *t = &self->types[i];
        if (i == KEEL_METRICS_TYPES && !t->queued && !t->running)
            continue;
        if (i < KEEL_METRICS_TYPES && i >= self->ntypes)
            continue;
        for (int k = 0; k < 2; k++) {
            fputs ("keel_type_tasks{type=\"", f);
            s_label (f, t->name);
            fprintf (f, "\",state=\"%s\"} %llu\n", k ? "running" : "queued",
                     (unsigned long long) (k ? t->running : t->queued));
        }
    }
}

static void
s_render_cluster (FILE *f, const keel_admin_cluster_t *c)
{
    s_gauge (f, "keel_cluster_serving", "1 while this member serves the shared store",
             strcmp (c->state, "serving") == 0);
    s_gauge (f, "keel_cluster_members", "Live members of the shared store", c->nmembers);
    s_gauge (f, "keel_cluster_lease_epoch", "This member's id (a new one at every join)",
             c->lease_epoch);
    s_gauge (f, "keel_cluster_db_up", "1 while the database answers", strcmp (c->db, "up") == 0);
    s_family (f, "keel_cluster_takeovers_total", "counter", "keel-admin status cluster.takeovers");
    fprintf (f, "keel_cluster_takeovers_total %llu\n", (unsigned long long) c->takeovers);
    s_family (f, "keel_cluster_fenced_total", "counter", "keel-admin status cluster.fenced");
    fprintf (f, "keel_cluster_fenced_total %llu\n", (unsigned long long) c->fenced);
    s_family (f, "keel_cluster_fenced_writes_total", "counter",
              "keel-admin status cluster.fenced_writes");
    fprintf (f, "keel_cluster_fenced_writes_total %llu\n", (unsigned long long) c->fenced_writes);
    s_family (f, "keel_cluster_clients_redirected_total", "counter",
              "keel-admin status cluster.clients_redirected");
    fprintf (f, "keel_cluster_clients_redirected_total %llu\n",
             (unsigned long long) c->clients_redirected);
    s_family (f, "keel_cluster_engines_lent_total", "counter",
              "keel-admin status cluster.engines_lent");
    fprintf (f, "keel_cluster_engines_lent_total %llu\n", (unsigned long long) c->engines_lent);
}

static void
s_render_pair (FILE *f, const keel_admin_pair_t *p)
{
    s_gauge (f, "keel_pair_links_up", "Pair links up", p->links_up);
    s_gauge (f, "keel_pair_links", "Pair links configured", p->links);
    s_gauge (f, "keel_pair_mirror_lag", "Updates the passive has yet to store",
             (double) p->mirror_lag);
    s_gauge (f, "keel_pair_synced", "1 when the mirror holds everything acknowledged", p->synced);
    s_gauge (f, "keel_pair_peer_up", "1 while the pair's peer is heard",
             strcmp (p->peer_state, "up") == 0);
#define KEEL_PAIR_COUNTER_PROM(name)                                                               \
    s_family (f, "keel_pair_" #name "_total", "counter",                                           \
              "keel-admin status pair.counters." #name);                                           \
    fprintf (f, "keel_pair_" #name "_total %llu\n", (unsigned long long) p->counters->name);
    KEEL_PAIR_COUNTERS (KEEL_PAIR_COUNTER_PROM)
#undef KEEL_PAIR_COUNTER_PROM
}

char *
keel_metrics_render (keel_metrics_t *self, const keel_admin_view_t *v)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream (&buf, &len);
    if (!f)
        return NULL;
    s_family (f, "keel_broker_info", "gauge", "The broker's name and role (the value is 1)");
    fputs ("keel_broker_info{name=\"", f);
    s_label (f, v->name);
    fputs ("\",role=\"", f);
    s_label (f, v->role);
    fputs ("\",version=\"" KEEL_VERSION "\"} 1\n", f);
    s_gauge (f, "keel_broker_epoch", "The epoch the broker serves under", (double) v->epoch);
    s_gauge (f, "keel_broker_uptime_seconds", "Seconds since the broker started",
             (double) (zclock_mono () - v->started_mono) / 1e3);
    s_gauge (f, "keel_store_bytes", "Size of the store", (double) keel_store_size (v->store));
    s_gauge (f, "keel_store_uncommitted", "Changes in memory not yet committed",
             (double) v->store_uncommitted);
    s_gauge (f, "keel_store_unsynced", "Commits not yet durable (StoreSync=full)",
             (double) v->store_unsynced);
    s_gauge (f, "keel_pending_claims", "HOLD claims waiting for their service",
             (double) v->pending_claims);
    s_render_model (f, self, v);
    if (v->pair)
        s_render_pair (f, v->pair);
    if (v->cluster)
        s_render_cluster (f, v->cluster);
#define KEEL_COUNTER_PROM(name)                                                                    \
    s_family (f, "keel_" #name "_total", "counter", "keel-admin status counters." #name);          \
    fprintf (f, "keel_" #name "_total %llu\n", (unsigned long long) v->counters->name);
    KEEL_COUNTERS (KEEL_COUNTER_PROM)
#undef KEEL_COUNTER_PROM
    s_type_histos (f, self, "keel_task_run_seconds",
                   "Run time of executions that ended with a result, by service type", true);
    s_type_histos (f, self, "keel_task_queue_wait_seconds",
                   "Time from acceptance to dispatch, by service type", false);
    s_family (f, "keel_store_commit_seconds", "histogram", "Time a store commit takes");
    s_histo (f, "keel_store_commit_seconds", &self->commit, s_commit_bounds, S_COMMIT_BUCKETS,
             NULL);
    if (fclose (f) != 0) {
        free (buf);
        return NULL;
    }
    return buf;
}
