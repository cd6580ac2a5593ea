/*  core_serve.c — which engines may serve a service: the engines that
    offer its type and meet its condition (cond.h; evaluated once per engine
    and service, keel_engine_matches), less those blacklisted for it (an engine whose
    executions of the service failed BlacklistAfter times in a row gets none
    of its tasks for BlacklistFor, while another engine may take them), and
    what happens to a service no online
    engine may serve (none offers its type, or none of those meets its
    condition: its driver is told every minute; after DSNoEngineTimeout,
    when set, its queued tasks fail).

    The blacklist lives in memory only, on the engine's record
    (keel_engine_t.blacklist): docs/operations.md, "Blacklisted engines",
    says why losing it with a restart or a takeover is acceptable.
*/

#include "core_int.h"
#include "config.h"

#include <stdlib.h>
#include <string.h>

// How often the driver of a service no engine offers is told again.
#define KEEL_NO_ENGINE_NOTICE_MS (60 * 1000)

// ---------------------------------------------------------------- who may serve

bool
keel_core_type_offered (keel_core_t *self, const char *type)
{
    zlistx_t *engines = keel_model_engines (self->model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines))
        if (e->state == KEEL_ENGINE_ONLINE && !e->draining && keel_engine_offers (e, type))
            return true;
    return false;
}

bool
keel_core_blacklisted (const keel_core_t *self, keel_engine_t *engine,
                       const keel_service_rec_t *svc)
{
    if (zhashx_size (engine->blacklist) == 0)
        return false;
    const keel_blacklist_t *b = keel_engine_blacklist (engine, svc->id, false);
    return b && b->blacklisted && b->until_mono > self->now;
}

bool
keel_core_can_serve (keel_core_t *self, const keel_engine_t *except, const keel_service_rec_t *svc)
{
    zlistx_t *engines = keel_model_engines (self->model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines))
        if (e != except && e->state == KEEL_ENGINE_ONLINE && !e->draining
            && keel_engine_offers (e, svc->type) && keel_engine_matches (e, svc)
            && !keel_core_blacklisted (self, e, svc))
            return true;
    return false;
}

// ---------------------------------------------------------------- blacklist

void
keel_core_blacklist_note (keel_core_t *self, keel_engine_t *engine, keel_service_rec_t *svc,
                          bool failed)
{
    if (!failed) {
        keel_blacklist_t *b = keel_engine_blacklist (engine, svc->id, false);
        if (b)
            b->failures = 0;
        return;
    }
    if (self->blacklist_after == 0)
        return;
    keel_blacklist_t *b = keel_engine_blacklist (engine, svc->id, true);
    if (!b)
        return;
    if (b->failures < UINT32_MAX)
        b->failures++;
    // An execution dispatched before the blacklisting may still fail: it
    // counts, but the blacklisting stands as it was.
    if (b->failures < self->blacklist_after || keel_core_blacklisted (self, engine, svc))
        return;
    b->blacklisted = b->failures;
    b->failures = 0;
    b->until_mono = self->now + self->blacklist_for_ms;
    b->until_wall_ms = self->wall + self->blacklist_for_ms;
    self->counters.engines_blacklisted++;
    const char *duration = keel_settings_str (self->settings, "BlacklistFor");
    bool others = keel_core_can_serve (self, NULL, svc);
    keel_core_event (self, "engine-blacklisted",
                     "engine=%s host=%s service=%s type=%s failures=%u for=%s others=%s",
                     engine->id, engine->host, svc->id, svc->type, b->blacklisted, duration,
                     others ? "yes" : "no");
    keel_driver_rec_t *drv = keel_model_driver (self->model, svc->driver_id);
    if (drv && drv->connected) {
        char text[800];
        snprintf (text, sizeof text,
                  "engine %s (%s) blacklisted for this service: %u executions failed there in a "
                  "row; no more of its tasks there for %s (BlacklistFor)%s",
                  engine->id, engine->host, b->blacklisted, duration,
                  others ? ""
                         : "; no other online engine may take them: it still gets them "
                           "until one may");
        keel_core_notice (self, drv, svc->id, text);
    }
}

// Ends the blacklistings whose time has passed (an event for each).
void
keel_core_blacklist_expire (keel_core_t *self)
{
    zlistx_t *engines = keel_model_engines (self->model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        if (zhashx_size (e->blacklist) == 0)
            continue;
        for (keel_blacklist_t *b = zhashx_first (e->blacklist); b; b = zhashx_next (e->blacklist)) {
            if (!b->blacklisted || b->until_mono > self->now)
                continue;
            const char *service_id = zhashx_cursor (e->blacklist);
            b->blacklisted = 0;
            b->until_mono = b->until_wall_ms = 0;
            keel_core_event (self, "engine-unblacklisted",
                             "engine=%s service=%s why=BlacklistFor passed", e->id, service_id);
            self->dispatch_ready = true;
        }
    }
}

// Clears one record; returns whether it was blacklisted.
static bool
s_clear (keel_core_t *self, keel_engine_t *engine, const char *service_id, keel_blacklist_t *b)
{
    bool was = b->blacklisted && b->until_mono > self->now;
    b->failures = 0;
    b->blacklisted = 0;
    b->until_mono = b->until_wall_ms = 0;
    if (was)
        keel_core_event (self, "engine-unblacklisted", "engine=%s service=%s why=keel-admin",
                         engine->id, service_id);
    return was;
}

keel_err
keel_core_unblacklist (keel_core_t *self, const char *engine_id, const char *service_id,
                       size_t *cleared, keel_error_t *err)
{
    *cleared = 0;
    keel_engine_t *engine = keel_model_engine (self->model, engine_id);
    if (!engine)
        return keel_error_set (err, KEEL_ERR_NOTFOUND, "no engine '%s'", engine_id);
    if (service_id) {
        if (!keel_model_service (self->model, service_id))
            return keel_error_set (err, KEEL_ERR_NOTFOUND, "no service '%s'", service_id);
        keel_blacklist_t *b = keel_engine_blacklist (engine, service_id, false);
        if (b && s_clear (self, engine, service_id, b))
            (*cleared)++;
    }
    else {
        for (keel_blacklist_t *b = zhashx_first (engine->blacklist); b;
             b = zhashx_next (engine->blacklist))
            if (s_clear (self, engine, zhashx_cursor (engine->blacklist), b))
                (*cleared)++;
    }
    if (*cleared)
        self->dispatch_ready = true;
    return KEEL_OK;
}

size_t
keel_core_blacklist_count (const keel_core_t *self)
{
    size_t n = 0;
    zlistx_t *engines = keel_model_engines (self->model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines))
        for (keel_blacklist_t *b = zhashx_first (e->blacklist); b; b = zhashx_next (e->blacklist))
            n += b->blacklisted && b->until_mono > self->now;
    return n;
}

// ---------------------------------------------------------------- no engine

// Fails every queued task of svc: no engine offered its type for
// DSNoEngineTimeout.
static void
s_fail_queued (keel_core_t *self, keel_service_rec_t *svc, const char *why)
{
    char error[KEEL_UNSERVED_TEXT + 64];
    if (keel_core_type_offered (self, svc->type)) // offered, but no engine meets its condition
        snprintf (error, sizeof error, "%s (DSNoEngineTimeout=%s)", why,
                  keel_settings_str (self->settings, "DSNoEngineTimeout"));
    else
        snprintf (error, sizeof error, "no engine offers service type '%s' (DSNoEngineTimeout=%s)",
                  svc->type, keel_settings_str (self->settings, "DSNoEngineTimeout"));
    uint64_t failed = 0;
    for (uint64_t id = keel_service_task_next (svc, 0); id < svc->ntasks;
         id = keel_service_task_next (svc, id + 1)) {
        keel_task_t *t = keel_service_task (svc, id);
        if (!t || t->state != KEEL_TASK_STATE_QUEUED)
            continue;
        keel_task_result_t *r =
            keel_task_result_new (KEEL__TASK_STATUS__STATUS_FAILED, NULL, 0, error, NULL);
        if (!r)
            continue; // no memory now: the next check tries again
        keel_core_task_finished (self, svc, id, r, KEEL_TASK_STATE_FAILED);
        failed++;
    }
    self->counters.tasks_failed_no_engine += failed;
    keel_core_event (self, "no-engine-timeout", "service=%s type=%s tasks_failed=%llu timeout=%s",
                     svc->id, svc->type, (unsigned long long) failed,
                     keel_settings_str (self->settings, "DSNoEngineTimeout"));
}

void
keel_core_no_engine_check (keel_core_t *self)
{
    // While a login window runs, engines are still coming back: nothing
    // counts as unserved yet.
    if (self->window_start || self->recovered_release_at)
        return;
    for (keel_service_rec_t *s = keel_model_service_first (self->model); s;
         s = keel_model_service_next (self->model)) {
        bool waiting = (s->state == KEEL_SERVICE_OPEN || s->state == KEEL_SERVICE_CLOSED)
                       && s->count[KEEL_TASK_STATE_QUEUED] > 0;
        if (!waiting) {
            s->no_engine_since = 0; // its notice stands: tasks may come soon
            continue;
        }
        char why[KEEL_UNSERVED_TEXT];
        if (keel_model_service_served (self->model, s, why, sizeof why)) {
            s->no_engine_since = s->no_engine_notice_at = 0;
            continue;
        }
        if (s->no_engine_since == 0)
            s->no_engine_since = self->now;
        if (self->no_engine_timeout_ms > 0
            && self->now - s->no_engine_since >= self->no_engine_timeout_ms) {
            s_fail_queued (self, s, why); // changes s only, not the list of services
            s->no_engine_since = s->no_engine_notice_at = 0;
            continue;
        }
        if (s->no_engine_notice_at && self->now - s->no_engine_notice_at < KEEL_NO_ENGINE_NOTICE_MS)
            continue;
        s->no_engine_notice_at = self->now;
        keel_driver_rec_t *drv = keel_model_driver (self->model, s->driver_id);
        if (!drv || !drv->connected)
            continue;
        char text[KEEL_UNSERVED_TEXT + 100];
        if (self->no_engine_timeout_ms > 0)
            snprintf (
                text, sizeof text,
                "%s; %llu tasks wait, and fail in "
                "%lld s (DSNoEngineTimeout=%s)",
                why, (unsigned long long) s->count[KEEL_TASK_STATE_QUEUED],
                (long long) ((s->no_engine_since + self->no_engine_timeout_ms - self->now + 999)
                             / 1000),
                keel_settings_str (self->settings, "DSNoEngineTimeout"));
        else
            snprintf (text, sizeof text, "%s; %llu tasks wait (DSNoEngineTimeout=0: for ever)", why,
                      (unsigned long long) s->count[KEEL_TASK_STATE_QUEUED]);
        keel_core_notice (self, drv, s->id, text);
    }
}
