/*  admin_why.c — keel-admin why. See admin_why.h. */

#include "admin_why.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static bool
s_blacklisted (const keel_engine_t *e, const keel_service_rec_t *svc, int64_t now)
{
    const keel_blacklist_t *b =
        zhashx_size (e->blacklist) ? zhashx_lookup (e->blacklist, svc->id) : NULL;
    return b && b->blacklisted && b->until_mono > now;
}

void
keel_admin_why (const keel_admin_view_t *v, keel_service_rec_t *svc, keel_admin_reply_t *reply)
{
    int64_t now = zclock_mono ();
    char waiting[KEEL_UNSERVED_TEXT] = "";
    bool served = keel_model_service_served (v->model, svc, waiting, sizeof waiting);
    uint64_t queued = svc->count[KEEL_TASK_STATE_QUEUED];
    const char *cond = svc->cond ? keel_cond_text (svc->cond) : NULL;

    char *text = NULL;
    size_t text_len = 0;
    FILE *t = open_memstream (&text, &text_len);
    keel_json_t j;
    keel_json_init (&j);
    keel_json_object (&j);
    keel_json_kv_str (&j, "service", svc->id);
    keel_json_kv_str (&j, "type", svc->type);
    keel_json_kv_str (&j, "condition", cond);
    keel_json_kv_bool (&j, "served", served);
    keel_json_kv_str (&j, "waiting", served ? NULL : waiting);
    keel_json_kv_uint (&j, "queued", queued);
    if (t) {
        fprintf (t, "service:%s\ntype:%s\ncondition:%s\nqueued:%llu\n", svc->id, svc->type,
                 cond ? cond : "(none)", (unsigned long long) queued);
        if (served)
            fprintf (t, "served: an online engine may take its tasks\n");
        else
            fprintf (t, "waiting: %s\n", waiting);
        fprintf (t, "\n%-36s  %-20s  %-8s  %-8s  %-11s  %s\n", "ENGINE", "HOST", "STATE", "MATCHES",
                 "BLACKLISTED", "WHY NOT");
    }
    keel_json_key (&j, "engines");
    keel_json_array (&j);
    size_t listed = 0;
    zlistx_t *engines = keel_model_engines (v->model);
    for (keel_engine_t *e = zlistx_first (engines); e; e = zlistx_next (engines)) {
        if (!keel_engine_offers (e, svc->type))
            continue;
        listed++;
        bool online = e->state == KEEL_ENGINE_ONLINE;
        bool matches = keel_engine_matches (e, svc);
        bool blacklisted = s_blacklisted (e, svc, now);
        char mismatch[300] = "";
        if (!matches)
            keel_engine_mismatch (e, svc, mismatch, sizeof mismatch);
        keel_json_object (&j);
        keel_json_kv_str (&j, "engine", e->id);
        keel_json_kv_str (&j, "host", e->host);
        keel_json_kv_str (&j, "state", online ? "online" : "offline");
        keel_json_kv_bool (&j, "draining", e->draining);
        keel_json_kv_bool (&j, "matches", matches);
        keel_json_kv_str (&j, "mismatch", matches ? NULL : mismatch);
        keel_json_kv_bool (&j, "blacklisted", blacklisted);
        keel_json_end_object (&j);
        if (t)
            fprintf (t, "%-36s  %-20.20s  %-8s  %-8s  %-11s  %s\n", e->id, e->host,
                     !online       ? "offline"
                     : e->draining ? "draining"
                                   : "online",
                     matches ? "yes" : "no", blacklisted ? "yes" : "no", matches ? "-" : mismatch);
    }
    keel_json_end_array (&j);
    keel_json_end_object (&j);
    if (t) {
        if (!listed)
            fprintf (t, "(no engine the broker knows offers type '%s')\n", svc->type);
        fclose (t);
    }
    reply->ok = true;
    reply->json = keel_json_take (&j);
    reply->text = text ? text : strdup ("");
    if (!reply->json) {
        reply->ok = false;
        reply->error = strdup ("out of memory building the reply");
    }
}
