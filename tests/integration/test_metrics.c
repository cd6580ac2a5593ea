/*  test_metrics.c — MetricsEndpoint: /metrics parses with Prometheus' own
    parser (prom_scrape.py, python3-prometheus-client) and agrees with
    keel-admin status; the endpoint is read-only and outlives 10,000 bad
    requests (http_flood.py); a bad MetricsEndpoint stops the broker at
    start; an engine's own /metrics follows its slots, running tasks and
    time without a broker. The status page in a browser is
    test_metrics_page.c.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "harness.h"

#define S_SCRIPT(name) KEEL_SOURCE_DIR "/tests/integration/" name

typedef struct {
    harness_broker_t broker;
    int port; // MetricsEndpoint's
    char url[64];
} s_grid_t;

static void
s_broker_start (s_grid_t *g)
{
    g->port = harness_free_port ();
    cr_assert (g->port > 0, "no free port");
    char set[64];
    snprintf (set, sizeof set, "MetricsEndpoint=127.0.0.1:%d", g->port);
    snprintf (g->url, sizeof g->url, "http://127.0.0.1:%d/metrics", g->port);
    const char *sets[] = { set, NULL };
    HARNESS_ASSERT (harness_broker_start (&g->broker, "broker", sets), "keel-broker did not start");
}

// Scrapes /metrics through the Prometheus parser. Returns its output (one
// sample a line, "name{k=v} value"; caller frees), or NULL when the scrape
// or the parse failed (the reason printed).
static char *
s_scrape (const s_grid_t *g)
{
    const char *argv[] = { g->url, NULL };
    harness_result_t res;
    harness_run (&res, 15000, S_SCRIPT ("prom_scrape.py"), argv);
    if (res.code != 0) {
        fprintf (stderr, "prom_scrape.py exited %d: %s\n", res.code, res.err);
        harness_result_free (&res);
        return NULL;
    }
    char *out = strdup (res.out);
    harness_result_free (&res);
    return out;
}

// The value of the sample named exactly `sample` ("keel_tasks{state=done}");
// false and -1 when there is none.
static bool
s_sample (const char *scrape, const char *sample, double *value)
{
    size_t n = strlen (sample);
    for (const char *line = scrape; line && *line; line = strchr (line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp (line, sample, n) == 0 && line[n] == ' ') {
            *value = strtod (line + n + 1, NULL);
            return true;
        }
    }
    *value = -1;
    return false;
}

typedef struct {
    s_grid_t *g;
    char why[512]; // the last mismatch
} s_agree_t;

// keel-admin status and /metrics agree on every counter and on the
// gauges of a quiet grid, and the histograms counted the ten tasks.
static bool
s_agree (void *arg)
{
    s_agree_t *a = arg;
    char *scrape = s_scrape (a->g);
    harness_result_t res;
    if (!scrape || harness_admin (&a->g->broker, &res, true, "status", NULL) != 0) {
        snprintf (a->why, sizeof a->why, "no scrape or no status");
        free (scrape);
        return false;
    }
    static const char *pairs[][2] = {
#define S_COUNTER_PAIR(name) { "keel_" #name "_total", "counters." #name },
        KEEL_COUNTERS (S_COUNTER_PAIR)
#undef S_COUNTER_PAIR
            { "keel_engines{state=online}", "engines.online" },
        { "keel_engines{state=offline}", "engines.offline" },
        { "keel_engine_slots", "engines.slots" },
        { "keel_engine_slots_busy", "engines.busy" },
        { "keel_services{state=open}", "services.open" },
        { "keel_tasks{state=queued}", "tasks.queued" },
        { "keel_tasks{state=running}", "tasks.running" },
        { "keel_tasks{state=done}", "tasks.done" },
        { "keel_tasks{state=failed}", "tasks.failed" },
        { "keel_broker_epoch", "epoch" },
        { "keel_pending_claims", "pending_claims" },
    };
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof pairs / sizeof pairs[0]; i++) {
        double metric = -1;
        long long status = -2;
        if (!s_sample (scrape, pairs[i][0], &metric)
            || !harness_json_int (res.out, pairs[i][1], &status) || metric != (double) status) {
            snprintf (a->why, sizeof a->why, "%s = %g, status %s = %lld", pairs[i][0], metric,
                      pairs[i][1], status);
            ok = false;
        }
    }
    double v = -1; // -1: no such sample
    if (ok && !(s_sample (scrape, "keel_tasks{state=done}", &v) && v == 10)) {
        snprintf (a->why, sizeof a->why, "keel_tasks{state=done} = %g, not 10", v);
        ok = false;
    }
    static const char *histos[] = { "keel_task_run_seconds_count{type=double}",
                                    "keel_task_queue_wait_seconds_count{type=double}" };
    for (int i = 0; ok && i < 2; i++)
        if (!(s_sample (scrape, histos[i], &v) && v == 10)) {
            snprintf (a->why, sizeof a->why, "%s = %g, not 10", histos[i], v);
            ok = false;
        }
    if (ok && !(s_sample (scrape, "keel_store_commit_seconds_count", &v) && v >= 1)) {
        snprintf (a->why, sizeof a->why, "keel_store_commit_seconds_count = %g", v);
        ok = false;
    }
    if (ok
        && !(s_sample (scrape, "keel_broker_info{name=broker,role=standalone,version=0.1.0}", &v)
             && v == 1)) {
        snprintf (a->why, sizeof a->why, "no keel_broker_info for broker/standalone");
        ok = false;
    }
    harness_result_free (&res);
    free (scrape);
    return ok;
}

Test (metrics, agree_with_keel_admin_status_after_tasks, .init = harness_setup,
      .fini = harness_teardown, .timeout = 90)
{
    s_grid_t g;
    s_broker_start (&g);
    HARNESS_ASSERT (harness_engine_start (&g.broker, "engine1", 2, NULL) > 0,
                    "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&g.broker, 1, 15000), "engine not online within 15 s");
    const char *argv[] = { "--broker", g.broker.endpoint, "submit", "--service",
                           "double",   "--range",         "0:10",   NULL };
    harness_result_t res;
    harness_run (&res, 30000, "keel-driver", argv);
    HARNESS_ASSERT (res.code == 0, "keel-driver exited %d; stderr:\n%s", res.code, res.err);
    harness_result_free (&res);
    // The snapshot is up to a second old: poll until it has caught up.
    s_agree_t a = { .g = &g };
    HARNESS_ASSERT (harness_poll_until (s_agree, &a, 15000),
                    "/metrics and keel-admin status disagree: %s", a.why);
}

// Runs curl-free HTTP through python: the status line of METHOD /path.
static int
s_status_of (const s_grid_t *g, const char *method, const char *path)
{
    char code[512];
    snprintf (code, sizeof code,
              "import http.client, sys\n"
              "c = http.client.HTTPConnection('127.0.0.1', %d, timeout=5)\n"
              "c.request('%s', '%s', body=b'x=1' if '%s' in ('POST', 'PUT') else None)\n"
              "print(c.getresponse().status)\n",
              g->port, method, path, method);
    const char *argv[] = { "-c", code, NULL };
    harness_result_t res;
    harness_run (&res, 10000, "/usr/bin/python3", argv);
    int status = res.code == 0 ? atoi (res.out) : -1;
    harness_result_free (&res);
    return status;
}

Test (metrics, endpoint_is_read_only, .init = harness_setup, .fini = harness_teardown,
      .timeout = 60)
{
    s_grid_t g;
    s_broker_start (&g);
    cr_assert_eq (s_status_of (&g, "GET", "/metrics"), 200);
    cr_assert_eq (s_status_of (&g, "HEAD", "/metrics"), 200);
    cr_assert_eq (s_status_of (&g, "GET", "/status.json"), 200);
    cr_assert_eq (s_status_of (&g, "GET", "/"), 200);
    cr_assert_eq (s_status_of (&g, "GET", "/nothing-here"), 404);
    const char *refused[] = { "POST", "PUT", "DELETE", "PATCH", "OPTIONS", NULL };
    for (int i = 0; refused[i]; i++)
        cr_assert_eq (s_status_of (&g, refused[i], "/metrics"), 405, "%s was not refused",
                      refused[i]);
}

Test (metrics, endpoint_survives_ten_thousand_bad_requests, .init = harness_setup,
      .fini = harness_teardown, .timeout = 240)
{
    s_grid_t g;
    s_broker_start (&g);
    char port[16];
    snprintf (port, sizeof port, "%d", g.port);
    const char *argv[] = { "127.0.0.1", port, "10000", NULL };
    harness_result_t res;
    harness_run (&res, 180000, S_SCRIPT ("http_flood.py"), argv);
    HARNESS_ASSERT (res.code == 0, "http_flood.py exited %d after %lld ms:\n%s%s", res.code,
                    (long long) res.elapsed_ms, res.out, res.err);
    cr_log_info ("http_flood.py: %lld ms, %s", (long long) res.elapsed_ms, res.out);
    harness_result_free (&res);
    HARNESS_ASSERT (harness_alive (g.broker.pid), "keel-broker died under the flood");
    long long epoch = 0;
    HARNESS_ASSERT (harness_status_int (&g.broker, "epoch", &epoch) && epoch >= 1,
                    "keel-admin status does not answer after the flood");
    char *scrape = s_scrape (&g);
    HARNESS_ASSERT (scrape != NULL, "/metrics does not parse after the flood");
    free (scrape);
}

typedef struct {
    const char *url;
    const char *sample;
    double min;
} s_engine_wait_t;

// The engine's /metrics parses and shows sample >= min.
static bool
s_engine_shows (void *arg)
{
    s_engine_wait_t *w = arg;
    s_grid_t g = { .port = 0 };
    snprintf (g.url, sizeof g.url, "%s", w->url);
    char *scrape = s_scrape (&g);
    double v = -1;
    bool ok = scrape && s_sample (scrape, w->sample, &v) && v >= w->min;
    free (scrape);
    return ok;
}

Test (metrics, engine_serves_slots_running_and_offline_seconds, .init = harness_setup,
      .fini = harness_teardown, .timeout = 90)
{
    harness_broker_t b;
    HARNESS_ASSERT (harness_broker_start (&b, "broker", NULL), "keel-broker did not start");
    int port = harness_free_port ();
    char set[64], url[64];
    snprintf (set, sizeof set, "MetricsEndpoint=127.0.0.1:%d", port);
    snprintf (url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    const char *sets[] = { set, NULL };
    HARNESS_ASSERT (harness_engine_start (&b, "engine1", 3, sets) > 0, "engine did not start");
    HARNESS_ASSERT (harness_wait_engines (&b, 1, 15000), "engine not online within 15 s");
    s_engine_wait_t w = { url, "keel_engine_state{state=online}", 1 };
    HARNESS_ASSERT (harness_poll_until (s_engine_shows, &w, 10000), "engine metrics: not online");
    w = (s_engine_wait_t) { url, "keel_engine_slots", 3 };
    HARNESS_ASSERT (s_engine_shows (&w), "engine metrics: keel_engine_slots is not 3");
    // Two tasks of 20 s on its slots: both run.
    const char *argv[] = { "--broker", b.endpoint, "submit",  "--service", "sleep",
                           "--input",  "20000",    "--count", "2",         NULL };
    HARNESS_ASSERT (harness_spawn ("driver", "keel-driver", argv) > 0, "keel-driver did not start");
    w = (s_engine_wait_t) { url, "keel_engine_running", 2 };
    HARNESS_ASSERT (harness_poll_until (s_engine_shows, &w, 10000),
                    "engine metrics: keel_engine_running did not reach 2");
    // Without its broker, the engine counts the seconds.
    harness_stop (b.pid, 10000);
    w = (s_engine_wait_t) { url, "keel_engine_offline_seconds", 1 };
    HARNESS_ASSERT (harness_poll_until (s_engine_shows, &w, 15000),
                    "engine metrics: keel_engine_offline_seconds did not reach 1 without a broker");
    w = (s_engine_wait_t) { url, "keel_engine_state{state=online}", 1 };
    HARNESS_ASSERT (!s_engine_shows (&w), "engine metrics: still online without a broker");
}

Test (metrics, bad_endpoint_stops_the_broker_at_start, .init = harness_setup,
      .fini = harness_teardown, .timeout = 60)
{
    const char *bad[] = { "MetricsEndpoint=nonsense", "MetricsEndpoint=127.0.0.1:99999",
                          "MetricsEndpoint=example.com:9464", NULL };
    for (int i = 0; bad[i]; i++) {
        char store[512];
        harness_path (store, sizeof store, "b.db");
        char store_set[600];
        snprintf (store_set, sizeof store_set, "Store=sqlite:%s", store);
        char ep[64], admin[64];
        snprintf (ep, sizeof ep, "Endpoint=tcp://127.0.0.1:%d", harness_free_port ());
        snprintf (admin, sizeof admin, "AdminEndpoint=tcp://127.0.0.1:%d", harness_free_port ());
        const char *argv[] = { "--set", store_set, "--set", ep,  "--set",
                               admin,   "--set",   bad[i],  NULL };
        harness_result_t res;
        harness_run (&res, 10000, "keel-broker", argv);
        cr_assert_eq (res.code, 2, "%s: keel-broker exited %d, not 2; stderr:\n%s", bad[i],
                      res.code, res.err);
        cr_assert (strstr (res.err, "MetricsEndpoint") != NULL, "%s: no MetricsEndpoint in:\n%s",
                   bad[i], res.err);
        harness_result_free (&res);
    }
}
