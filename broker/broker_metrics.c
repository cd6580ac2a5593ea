/*  broker_metrics.c — the loop's side of MetricsEndpoint: every second
    (KEEL_METRICS_INTERVAL_MS), the loop renders the Prometheus text
    (metrics.h) and the status page's JSON from the same view keel-admin
    reads, and publishes both to the HTTP thread (httpd.h), which only
    ever serves the latest copies. The HTTP thread never touches the core,
    the model or the store; the loop never waits for a request.

    Served paths:
      /metrics      text/plain; version=0.0.4 (the Prometheus text format)
      /status.json  {"status":…,"engines":…,"services":…,"events":…,
                     "published_ms":…}: the objects of `keel-admin --json
                     status`, `engines`, `services` and `events`, as they were
      /             the status page (status_page.html, built in), polling
                    /status.json every second
*/

#include "broker_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

#define KEEL_METRICS_INTERVAL_MS 1000

// status_page.html, embedded at build time (broker/CMakeLists.txt).
extern const char keel_status_page[];
extern const size_t keel_status_page_len;

// Runs one admin command against the view and writes `"key":<its JSON>`
// (the reply is one JSON object already: written as it is).
static void
s_section (FILE *f, const keel_admin_view_t *view, const char *key, const char *command)
{
    keel_admin_reply_t reply;
    keel_admin_handle (view, command, NULL, 0, &reply);
    fprintf (f, "\"%s\":%s,", key, reply.ok && reply.json ? reply.json : "null");
    keel_admin_reply_clear (&reply);
}

static void
s_publish (keel_broker_t *self)
{
    keel_admin_view_t view;
    keel_admin_pair_t pair;
    keel_admin_cluster_t cluster;
    keel_broker_admin_view (self, &view, &pair, &cluster);
    char *text = keel_metrics_render (self->metrics, &view);
    if (text) {
        keel_httpd_publish (self->httpd, "/metrics", "text/plain; version=0.0.4; charset=utf-8",
                            text, strlen (text));
        free (text);
    }
    char *json = NULL;
    size_t len = 0;
    FILE *f = open_memstream (&json, &len);
    if (!f)
        return;
    fputc ('{', f);
    s_section (f, &view, "status", "status");
    s_section (f, &view, "engines", "engines");
    s_section (f, &view, "services", "services");
    s_section (f, &view, "events", "events");
    fprintf (f, "\"published_ms\":%lld}", (long long) zclock_time ());
    if (fclose (f) == 0)
        keel_httpd_publish (self->httpd, "/status.json", "application/json", json, len);
    free (json);
}

keel_err
keel_broker_metrics_start (keel_broker_t *self, keel_error_t *err)
{
    const char *endpoint = keel_broker_cfg_MetricsEndpoint (self->settings);
    if (!*endpoint)
        return KEEL_OK;
    // Nothing listens in the clear with Security=curve unless the operator
    // says so (DESIGN §9).
    if (self->security.curve && !keel_broker_cfg_MetricsInsecure (self->settings)) {
        KEEL_WARN ("broker",
                   "MetricsEndpoint %s not served: Security=curve and MetricsInsecure=false "
                   "(set MetricsInsecure=true to serve it in the clear)",
                   endpoint);
        return KEEL_OK;
    }
    self->metrics = keel_metrics_new ();
    if (!self->metrics)
        return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
    self->httpd = keel_httpd_new (endpoint, err);
    if (!self->httpd) {
        keel_error_prefix (err, "MetricsEndpoint");
        keel_broker_metrics_stop (self);
        return KEEL_ERR_CONFIG;
    }
    keel_httpd_publish (self->httpd, "/", "text/html; charset=utf-8", keel_status_page,
                        keel_status_page_len);
    if (self->core)
        keel_core_set_metrics (self->core, self->metrics);
    s_publish (self);
    self->metrics_due = zclock_mono () + KEEL_METRICS_INTERVAL_MS;
    KEEL_INFO ("broker", "metrics and status page on http://%s/", endpoint);
    return KEEL_OK;
}

void
keel_broker_metrics_turn (keel_broker_t *self)
{
    if (!self->httpd)
        return;
    int64_t now = zclock_mono ();
    if (now < self->metrics_due)
        return;
    s_publish (self);
    self->metrics_due = now + KEEL_METRICS_INTERVAL_MS;
}

int64_t
keel_broker_metrics_wait_ms (keel_broker_t *self)
{
    if (!self->httpd)
        return -1;
    int64_t wait = self->metrics_due - zclock_mono ();
    return wait < 0 ? 0 : wait;
}

void
keel_broker_metrics_stop (keel_broker_t *self)
{
    keel_httpd_destroy (&self->httpd); // first: its thread may be serving
    if (self->core)
        keel_core_set_metrics (self->core, NULL);
    keel_metrics_destroy (&self->metrics);
}
