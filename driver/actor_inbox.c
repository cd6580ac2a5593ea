/*  actor_inbox.c — the driver actor's handling of each broker message:
    results (handed to the application once, duplicates acknowledged),
    Accepted, Refused and the resubmission it may call for, notices and the
    status of watched services. actor_broker.c sends and runs the session's
    actions; actor.c runs the loop; actor_int.h is what they share.
*/
#include "actor_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define S_COMPONENT           "driver"
#define S_STORE_FULL_DELAY_MS 1000

// ---------------------------------------------------------------- broker messages

static keel_actor_service_t *
s_lookup (keel_actor_t *self, const char *service_id, const char *what)
{
    //  A batch's results are mostly of one service: the last one found is
    //  compared first (services stay in by_id as long as the actor).
    keel_actor_service_t *svc = self->last_found;
    if (service_id && svc && strcmp (svc->open->service_id, service_id) == 0)
        return svc;
    svc = service_id ? zhashx_lookup (self->by_id, service_id) : NULL;
    if (!svc)
        keel_actor_log_limited (&self->rl_unknown, what, "unknown service id, ignored");
    else
        self->last_found = svc;
    return svc;
}

static void
s_on_results (keel_actor_t *self, const Keel__TaskResults *results)
{
    for (size_t i = 0; i < results->n_results; i++) {
        const Keel__TaskResult *r = results->results[i];
        keel_actor_service_t *svc = s_lookup (self, r->service_id, "task result");
        if (!svc || svc->detaching || svc->detached || svc->open->mode == KEEL_ACTOR_WATCH)
            continue; // left unacknowledged at the broker, for an attach
        switch (keel_outstanding_complete (svc->tasks, r->task_id)) {
            case KEEL_OUTSTANDING_NEW: {
                keel_task_status_t status = KEEL_TASK_FAILED;
                const char *error = r->error;
                if (r->status == KEEL__TASK_STATUS__STATUS_OK)
                    status = KEEL_TASK_OK;
                else if (r->status == KEEL__TASK_STATUS__STATUS_CANCELLED)
                    status = KEEL_TASK_CANCELLED;
                else if (r->status != KEEL__TASK_STATUS__STATUS_FAILED && !error)
                    error = "result without a status";
                keel_result_t *result =
                    keel_actor_result_new (svc->open->service_id, r->task_id, status,
                                           r->has_output ? r->output.data : NULL,
                                           r->has_output ? r->output.len : 0, error, r->engine_id);
                if (result) {
                    result->execution_id = r->execution_id;
                    result->attempts = r->attempts;
                    if (r->timings) {
                        result->queued_ms = r->timings->queued_ms;
                        result->run_ms = r->timings->run_ms;
                    }
                }
                keel_actor_deliver (self, svc, result);
                break;
            }
            case KEEL_OUTSTANDING_DUPLICATE:
                keel_actor_ack_duplicate (self, svc, r->task_id);
                break;
            default:
                keel_actor_log_limited (&self->rl_unknown, "task result",
                                        "unknown task id, ignored");
                break;
        }
    }
}

static void
s_on_accepted (keel_actor_t *self, const Keel__Accepted *accepted)
{
    keel_actor_service_t *svc = s_lookup (self, accepted->service_id, "accepted");
    if (!svc)
        return;
    for (size_t i = 0; i < accepted->n_task_ids; i++)
        keel_outstanding_accept (svc->tasks, accepted->task_ids[i],
                                 accepted->has_alone && accepted->alone);
}

static void
s_on_refused (keel_actor_t *self, const Keel__Refused *refused, int64_t now)
{
    keel_actor_service_t *svc = s_lookup (self, refused->service_id, "refused");
    if (!svc || svc->cancelled)
        return;
    const char *error = refused->error ? refused->error : "";
    KEEL_LOG_LIMITED (&self->rl_peer, now, KEEL_LOG_INFO, S_COMPONENT,
                      "refused service=%s code=%d tasks=%zu: %s", svc->open->service_id,
                      (int) refused->code, refused->n_task_ids, error);
    int64_t guard = 3 * keel_session_heartbeat_ms (self->session);
    switch (refused->code) {
        case KEEL__REFUSE_CODE__REFUSE_UNKNOWN_SERVICE:
            if (refused->n_task_ids == 0 || now - svc->resubmitted_at > guard) {
                //  The broker lost the service: everything again, once per 3·H.
                svc->resubmitted_at = now;
                svc->submitted = false;
                svc->close_sent = false;
                keel_outstanding_forget_accepted (svc->tasks);
            }
            else
                for (size_t i = 0; i < refused->n_task_ids; i++)
                    keel_outstanding_unsend (svc->tasks, refused->task_ids[i]);
            break;
        case KEEL__REFUSE_CODE__REFUSE_STORE_FULL: {
            for (size_t i = 0; i < refused->n_task_ids; i++)
                keel_outstanding_unsend (svc->tasks, refused->task_ids[i]);
            if (now >= self->hold_until) {
                char text[KEEL_TEXT_MAX];
                if (refused->n_task_ids)
                    snprintf (text, sizeof text,
                              "the broker cannot store new work (%s); retrying %zu task(s) in "
                              "%.1f s",
                              error, refused->n_task_ids, S_STORE_FULL_DELAY_MS / 1000.0);
                else
                    snprintf (text, sizeof text,
                              "the broker cannot store new work (%s); retrying the service in "
                              "%.1f s",
                              error, S_STORE_FULL_DELAY_MS / 1000.0);
                keel_actor_status (self, KEEL_STATUS_STORE_FULL, KEEL_LEVEL_WARNING, "",
                                   svc->open->service_id, text);
            }
            self->hold_until = now + S_STORE_FULL_DELAY_MS;
            break;
        }
        default: {
            //  INVALID, SERVICE_CLOSED or an unnamed reason: do not retry.
            char text[KEEL_TEXT_MAX];
            snprintf (text, sizeof text, "refused by broker: %s",
                      error[0] ? error : "no reason given");
            if (refused->n_task_ids == 0)
                keel_actor_fail_service (self, svc, KEEL_TASK_FAILED, text);
            else
                for (size_t i = 0; i < refused->n_task_ids; i++)
                    if (keel_outstanding_complete (svc->tasks, refused->task_ids[i])
                        == KEEL_OUTSTANDING_NEW)
                        keel_actor_fail_task (self, svc, refused->task_ids[i], KEEL_TASK_FAILED,
                                              text);
            break;
        }
    }
}

static void
s_on_notice (keel_actor_t *self, const Keel__Notice *notice)
{
    keel_status_level_t level = KEEL_LEVEL_INFO;
    if (notice->level == KEEL__NOTICE_LEVEL__NOTICE_WARNING)
        level = KEEL_LEVEL_WARNING;
    else if (notice->level == KEEL__NOTICE_LEVEL__NOTICE_ERROR)
        level = KEEL_LEVEL_ERROR;
    keel_actor_status (self, KEEL_STATUS_NOTICE, level,
                       keel_session_endpoint (self->session, keel_session_broker (self->session)),
                       notice->service_id, notice->text ? notice->text : "");
}

static void
s_on_service_status (keel_actor_t *self, const Keel__ServiceStatus *st)
{
    const char *broker = keel_session_endpoint (self->session, keel_session_broker (self->session));
    for (size_t i = 0; i < st->n_services; i++) {
        const Keel__ServiceInfo *info = st->services[i];
        keel_actor_service_t *svc = zhashx_lookup (self->by_id, info->service_id);
        if (!svc || svc->open->mode != KEEL_ACTOR_WATCH)
            continue;
        char text[KEEL_TEXT_MAX];
        if (info->known)
            snprintf (text, sizeof text,
                      "service %s at %s: %s, %" PRIu64 " of %" PRIu64 " tasks done (%" PRIu64
                      " failed)%s",
                      info->service_id, broker, info->state ? info->state : "?", info->done,
                      info->tasks, info->failed, info->complete ? ", complete" : "");
        else
            snprintf (text, sizeof text,
                      "no such service %s at %s: never submitted there, or purged after "
                      "RetentionHours",
                      info->service_id, broker);
        keel_actor_status_t *status = keel_actor_status (
            self, KEEL_STATUS_SERVICE_INFO, info->known ? KEEL_LEVEL_INFO : KEEL_LEVEL_ERROR,
            broker, info->service_id, text);
        if (status) {
            status->has_info = true;
            keel_actor_info_copy (info, &status->info);
        }
    }
}

void
keel_actor_on_message (keel_actor_t *self, keel_env_t *env, int64_t now)
{
    //  Passive only sends the driver elsewhere: obeyed whatever its epoch.
    if (env->body_case != KEEL__ENVELOPE__BODY_PASSIVE
        && !keel_actor_admit (self, env, keel_session_broker (self->session), now))
        return; // not even a sign of life
    keel_session_received (self->session, now);
    switch (env->body_case) {
        case KEEL__ENVELOPE__BODY_DRIVER_WELCOME: {
            const Keel__DriverWelcome *w = env->driver_welcome;
            KEEL_LOG_LIMITED (&self->rl_peer, now, KEEL_LOG_INFO, S_COMPONENT,
                              "welcome broker=%s epoch=%" PRIu64
                              " unknown_services=%zu pair_peer=%s",
                              w->broker_name ? w->broker_name : "", w->epoch, w->n_unknown_services,
                              w->pair_peer ? w->pair_peer : "-");
            self->welcome = env;
            keel_session_input_t in = { .event = KEEL_SESSION_EV_WELCOME,
                                        .heartbeat_ms = w->heartbeat_ms,
                                        .pair_peer = w->pair_peer };
            keel_actor_apply (self, &in);
            self->welcome = NULL;
            break;
        }
        case KEEL__ENVELOPE__BODY_PASSIVE: {
            KEEL_LOG_LIMITED (
                &self->rl_peer, now, KEEL_LOG_INFO, S_COMPONENT,
                "passive broker=%s active=%s reason=\"%s\"",
                keel_session_endpoint (self->session, keel_session_broker (self->session)),
                env->passive->active ? env->passive->active : "?",
                env->passive->reason ? env->passive->reason : "");
            // The broker it names (a member of the cluster that owns this
            // driver's service, a pair's active) may be one this driver
            // was not configured with: it becomes one it may turn to.
            int before = keel_session_nbrokers (self->session);
            int at = keel_session_learn (self->session, env->passive->active);
            if (at >= before)
                KEEL_INFO (S_COMPONENT, "broker %s named by a passive broker: added as broker %d",
                           env->passive->active, at);
            keel_session_input_t in = { .event = KEEL_SESSION_EV_PASSIVE,
                                        .active = env->passive->active,
                                        .reason = env->passive->reason };
            keel_actor_apply (self, &in);
            break;
        }
        case KEEL__ENVELOPE__BODY_RELOGIN:
            keel_actor_step (self, KEEL_SESSION_EV_RELOGIN, 0);
            break;
        case KEEL__ENVELOPE__BODY_HEARTBEAT:
            break;
        case KEEL__ENVELOPE__BODY_NOTICE:
            s_on_notice (self, env->notice);
            break;
        case KEEL__ENVELOPE__BODY_ACCEPTED:
            s_on_accepted (self, env->accepted);
            break;
        case KEEL__ENVELOPE__BODY_REFUSED:
            s_on_refused (self, env->refused, now);
            break;
        case KEEL__ENVELOPE__BODY_TASK_RESULTS:
            s_on_results (self, env->task_results);
            break;
        case KEEL__ENVELOPE__BODY_SERVICE_STATUS:
            s_on_service_status (self, env->service_status);
            break;
        default:
            keel_actor_log_limited (&self->rl_malformed, "unexpected message from broker",
                                    keel_wire_body_name (env));
            break;
    }
}
