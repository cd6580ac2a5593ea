/*  engine/outbox.h driven without sockets: fake ops record what would be
    sent and answer whether the session is ONLINE; the spool is a real one
    in a temporary directory. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outbox.h"

#define S_MAX_SENT 64
#define S_MAX_IDS  1024

//  What one message sent on the fake connection named.
typedef struct {
    Keel__Envelope__BodyCase body;
    size_t n; // execution ids named (Results, held, checkpoint)
    uint64_t ids[S_MAX_IDS];
    int held_state[S_MAX_IDS];  // EngineLogin: the state of each held entry
    bool has_result[S_MAX_IDS]; // EngineLogin: whether it carries the Result
} s_sent_t;

typedef struct {
    bool online;
    bool send_ok;
    s_sent_t sent[S_MAX_SENT];
    int nsent;
    uint64_t stopped[16];
    int nstopped;
} s_fake_t;

static char s_dir[64];
static s_fake_t s_fake;
static keel_held_t *s_held;
static keel_spool_t *s_spool;
static keel_outbox_t *s_outbox;
static keel_ratelimit_t s_task_log = KEEL_RATELIMIT_NAMED (10000, 20, "task");

static bool
f_online (void *a)
{
    return ((s_fake_t *) a)->online;
}

static keel_err
f_send (void *a, keel_env_t *env)
{
    s_fake_t *f = a;
    if (!f->send_ok)
        return KEEL_ERR_IO;
    cr_assert_lt (f->nsent, S_MAX_SENT);
    s_sent_t *s = &f->sent[f->nsent++];
    memset (s, 0, sizeof *s);
    s->body = env->body_case;
    switch (env->body_case) {
        case KEEL__ENVELOPE__BODY_RESULT:
            s->ids[s->n++] = env->result->execution_id;
            break;
        case KEEL__ENVELOPE__BODY_RESULT_BATCH:
            for (size_t i = 0; i < env->result_batch->n_results && s->n < S_MAX_IDS; i++)
                s->ids[s->n++] = env->result_batch->results[i]->execution_id;
            break;
        case KEEL__ENVELOPE__BODY_CHECKPOINT:
            s->ids[s->n++] = env->checkpoint->execution_id;
            break;
        case KEEL__ENVELOPE__BODY_ENGINE_LOGIN:
            for (size_t i = 0; i < env->engine_login->n_held && s->n < S_MAX_IDS; i++) {
                const Keel__HeldTask *h = env->engine_login->held[i];
                s->held_state[s->n] = h->state;
                s->has_result[s->n] = h->result != NULL;
                s->ids[s->n++] = h->execution_id;
            }
            break;
        default:
            break;
    }
    return KEEL_OK;
}

static void
f_stop (void *a, uint64_t id)
{
    s_fake_t *f = a;
    f->stopped[f->nstopped++] = id;
}

static const keel_outbox_ops_t s_ops = { f_online, f_send, f_stop };

static int
s_remove (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove (path);
}

static void
setup (void)
{
    memset (&s_fake, 0, sizeof s_fake);
    s_fake.online = true;
    s_fake.send_ok = true;
    snprintf (s_dir, sizeof s_dir, "/tmp/keel-outbox-XXXXXX");
    cr_assert_not_null (mkdtemp (s_dir));
    keel_error_t err;
    s_spool = keel_spool_new (s_dir, &err);
    cr_assert_not_null (s_spool);
    s_held = keel_held_new ();
    s_outbox = keel_outbox_new (s_held, s_spool, "engine-1", &s_task_log, &s_ops, &s_fake);
    cr_assert_not_null (s_outbox);
}

static void
teardown (void)
{
    keel_outbox_destroy (&s_outbox);
    cr_assert_null (s_outbox);
    keel_outbox_destroy (&s_outbox); // idempotent
    keel_held_destroy (&s_held);
    keel_spool_destroy (&s_spool);
    nftw (s_dir, s_remove, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite (engine_outbox, .init = setup, .fini = teardown);

static keel_held_task_t *
s_running (uint64_t id)
{
    keel_held_task_t *t = keel_held_add (s_held, id, "svc", id + 100, "render");
    cr_assert_not_null (t);
    return t;
}

//  A worker's result for id: ok with output, or failed with text.
static void
s_end (uint64_t id, bool ok, const char *text)
{
    keel_runner_result_t r = { .execution_id = id,
                               .ok = ok,
                               .data = (const uint8_t *) text,
                               .size = strlen (text),
                               .run_us = 5 };
    keel_outbox_finish (s_outbox, &r);
}

static bool
s_spooled_on_disk (uint64_t id)
{
    char path[128];
    snprintf (path, sizeof path, "%s/spool/%llu", s_dir, (unsigned long long) id);
    return access (path, F_OK) == 0;
}

static keel_held_state_t
s_state (uint64_t id)
{
    keel_held_task_t *t = keel_held_find (s_held, id);
    cr_assert_not_null (t, "exec %llu not held", (unsigned long long) id);
    return t->state;
}

Test (engine_outbox, results_that_end_in_one_turn_leave_together_at_its_end)
{
    for (uint64_t id = 1; id <= 3; id++)
        s_running (id);
    s_end (1, true, "a");
    s_end (2, false, "boom");
    s_end (3, true, "c");
    cr_assert_eq (s_fake.nsent, 0, "nothing leaves before the end of the turn");
    cr_assert_eq (s_state (2), KEEL_HELD_DONE);
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_fake.nsent, 1);
    cr_assert_eq (s_fake.sent[0].body, KEEL__ENVELOPE__BODY_RESULT_BATCH);
    cr_assert_eq (s_fake.sent[0].n, 3);
    cr_assert_eq (s_fake.sent[0].ids[0], 1);
    cr_assert_eq (s_fake.sent[0].ids[2], 3);
    for (uint64_t id = 1; id <= 3; id++) {
        cr_assert_eq (s_state (id), KEEL_HELD_SENT);
        cr_assert_not (s_spooled_on_disk (id), "online results are not spooled");
    }
    //  A second end of turn has nothing to send.
    keel_outbox_end_turn (s_outbox);
    keel_outbox_flush (s_outbox);
    cr_assert_eq (s_fake.nsent, 1);
}

Test (engine_outbox, one_result_leaves_alone_as_a_plain_result)
{
    s_running (7);
    s_end (7, true, "x");
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_fake.nsent, 1);
    cr_assert_eq (s_fake.sent[0].body, KEEL__ENVELOPE__BODY_RESULT);
    cr_assert_eq (s_fake.sent[0].ids[0], 7);
}

Test (engine_outbox, batches_are_cut_at_512_results_and_at_1_mib_of_output)
{
    for (uint64_t id = 1; id <= 600; id++) {
        s_running (id);
        s_end (id, true, "r");
    }
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_fake.nsent, 2);
    cr_assert_eq (s_fake.sent[0].n, 512);
    cr_assert_eq (s_fake.sent[1].n, 88);
    //  Two results of 600 KiB: the second would take the first message past 1 MiB.
    size_t big = 600 * 1024;
    char *text = malloc (big + 1);
    memset (text, 'o', big);
    text[big] = 0;
    s_running (1001);
    s_running (1002);
    s_end (1001, true, text);
    s_end (1002, true, text);
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_fake.nsent, 4);
    cr_assert_eq (s_fake.sent[2].body, KEEL__ENVELOPE__BODY_RESULT);
    cr_assert_eq (s_fake.sent[3].body, KEEL__ENVELOPE__BODY_RESULT);
    free (text);
}

Test (engine_outbox, a_result_the_connection_refused_is_offered_again_next_turn)
{
    s_running (1);
    s_running (2);
    s_end (1, true, "a");
    s_end (2, true, "b");
    s_fake.send_ok = false;
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_state (1), KEEL_HELD_DONE);
    cr_assert_eq (s_state (2), KEEL_HELD_DONE);
    s_fake.send_ok = true;
    keel_outbox_flush (s_outbox);
    cr_assert_eq (s_fake.nsent, 1);
    cr_assert_eq (s_fake.sent[0].n, 2);
    cr_assert_eq (s_state (1), KEEL_HELD_SENT);
}

Test (engine_outbox, offline_a_result_is_spooled_at_once_and_sent_after_login)
{
    s_fake.online = false;
    s_running (5);
    s_end (5, true, "out");
    cr_assert_eq (s_fake.nsent, 0);
    cr_assert (s_spooled_on_disk (5), "a result finished offline is spooled at once");
    keel_held_task_t *t = keel_held_find (s_held, 5);
    cr_assert (t->spooled);
    cr_assert_eq (t->state, KEEL_HELD_DONE);
    keel_outbox_flush (s_outbox);
    cr_assert_eq (s_fake.nsent, 0, "nothing leaves while offline");
    //  Online again (no verdict for it): offered again on the new connection.
    s_fake.online = true;
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    keel_outbox_logged_in (s_outbox, &reply, 0);
    cr_assert_eq (s_fake.nsent, 1);
    cr_assert_eq (s_state (5), KEEL_HELD_SENT);
    //  ResultAck removes the entry and its file.
    uint64_t ids[] = { 5 };
    Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
    ack.n_execution_ids = 1;
    ack.execution_ids = ids;
    keel_outbox_acked (s_outbox, &ack);
    cr_assert_null (keel_held_find (s_held, 5));
    cr_assert_not (s_spooled_on_disk (5));
}

Test (engine_outbox, a_dropped_connection_marks_results_unsent_and_spool_all_keeps_them)
{
    s_running (1);
    s_running (2);
    s_end (1, true, "a");
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_state (1), KEEL_HELD_SENT);
    keel_outbox_disconnected (s_outbox);
    cr_assert_eq (s_state (1), KEEL_HELD_DONE, "nothing sent on a lost connection counts");
    // Spooling is the daemon's, a moment later if still offline (outbox.h).
    cr_assert_not (s_spooled_on_disk (1));
    keel_outbox_spool_all (s_outbox);
    cr_assert (s_spooled_on_disk (1));
    cr_assert_eq (s_state (2), KEEL_HELD_RUNNING);
    cr_assert_not (s_spooled_on_disk (2));
}

Test (engine_outbox, the_session_leaving_online_mid_turn_spools_what_ended_in_it)
{
    s_running (1);
    s_end (1, true, "a");
    s_fake.online = false;
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_fake.nsent, 0);
    cr_assert (s_spooled_on_disk (1));
    cr_assert_eq (s_state (1), KEEL_HELD_DONE);
}

Test (engine_outbox, a_task_forgotten_before_the_end_of_its_turn_is_not_sent)
{
    s_running (1);
    s_running (2);
    s_end (1, true, "a");
    s_end (2, true, "b");
    keel_outbox_forget (s_outbox, 1);
    cr_assert_eq (s_fake.nstopped, 1);
    cr_assert_eq (s_fake.stopped[0], 1);
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_fake.nsent, 1);
    cr_assert_eq (s_fake.sent[0].body, KEEL__ENVELOPE__BODY_RESULT);
    cr_assert_eq (s_fake.sent[0].ids[0], 2);
    //  A late result for a forgotten task, or a second one, is ignored.
    s_end (1, true, "late");
    s_end (2, false, "again");
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_fake.nsent, 1);
    cr_assert (keel_held_find (s_held, 2)->ok);
}

Test (engine_outbox, the_login_carries_results_within_its_budget_and_lists_the_rest_as_running)
{
    s_fake.online = false;
    s_running (1); // stays running
    s_running (2);
    s_end (2, true, "small");
    s_running (3);
    size_t big = 9 * 1024 * 1024; // past the 8 MiB budget
    char *text = malloc (big + 1);
    memset (text, 'b', big);
    text[big] = 0;
    s_end (3, true, text);
    free (text);
    keel_engine_login_args_t login = { .engine_id = "engine-1" };
    cr_assert (keel_outbox_send_login (s_outbox, &login));
    cr_assert_eq (login.n_held, 0, "the held list is the outbox's, gone after the send");
    cr_assert_eq (s_fake.nsent, 1);
    s_sent_t *s = &s_fake.sent[0];
    cr_assert_eq (s->body, KEEL__ENVELOPE__BODY_ENGINE_LOGIN);
    cr_assert_eq (s->n, 3);
    for (size_t i = 0; i < s->n; i++) {
        bool carried = s->ids[i] == 2;
        cr_assert_eq (s->has_result[i], carried);
        cr_assert_eq (s->held_state[i],
                      carried ? KEEL__HELD_STATE__HELD_DONE : KEEL__HELD_STATE__HELD_RUNNING);
    }
    cr_assert_eq (s_state (2), KEEL_HELD_IN_LOGIN);
    cr_assert_eq (s_state (3), KEEL_HELD_DONE);
    cr_assert_eq (s_state (1), KEEL_HELD_RUNNING);
    s_fake.send_ok = false;
    cr_assert_not (keel_outbox_send_login (s_outbox, &login));
}

Test (engine_outbox, verdicts_drop_hold_or_resend_what_the_login_carried)
{
    s_fake.online = false;
    for (uint64_t id = 1; id <= 4; id++) {
        s_running (id);
        s_end (id, true, "r"); // spooled: finished offline
    }
    s_running (5);
    s_running (6);
    keel_engine_login_args_t login = { .engine_id = "engine-1" };
    cr_assert (keel_outbox_send_login (s_outbox, &login));
    s_end (4, true, "ignored"); // already done: nothing changes
    s_end (5, true, "r");       // finished after the login was built
    Keel__TaskVerdict v[4] = { KEEL__TASK_VERDICT__INIT, KEEL__TASK_VERDICT__INIT,
                               KEEL__TASK_VERDICT__INIT, KEEL__TASK_VERDICT__INIT };
    Keel__TaskVerdict *vp[4] = { &v[0], &v[1], &v[2], &v[3] };
    v[0].execution_id = 1;
    v[0].verdict = KEEL__VERDICT__VERDICT_HOLD;
    v[1].execution_id = 2;
    v[1].verdict = KEEL__VERDICT__VERDICT_DROP;
    v[2].execution_id = 5;
    v[2].verdict = KEEL__VERDICT__VERDICT_HOLD;
    v[3].execution_id = 6;
    v[3].verdict = KEEL__VERDICT__VERDICT_DROP;
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    reply.n_verdicts = 4;
    reply.verdicts = vp;
    s_fake.online = true;
    s_fake.nsent = 0;
    keel_outbox_logged_in (s_outbox, &reply, 0);
    //  DROP: stopped, gone, its file too.
    cr_assert_eq (s_fake.nstopped, 2);
    cr_assert_null (keel_held_find (s_held, 2));
    cr_assert_null (keel_held_find (s_held, 6));
    cr_assert_not (s_spooled_on_disk (2));
    //  HOLD of a carried result: the broker has it.
    cr_assert_eq (s_state (1), KEEL_HELD_SENT);
    //  Everything else leaves now: 3, 4 (no verdict) and 5 (finished since).
    cr_assert_eq (s_fake.nsent, 1);
    cr_assert_eq (s_fake.sent[0].body, KEEL__ENVELOPE__BODY_RESULT_BATCH);
    cr_assert_eq (s_fake.sent[0].n, 3);
    for (size_t i = 0; i < 3; i++)
        cr_assert_neq (s_fake.sent[0].ids[i], 1);
    for (uint64_t id = 3; id <= 5; id++)
        cr_assert_eq (s_state (id), KEEL_HELD_SENT);
}

Test (engine_outbox, an_ack_removes_done_results_only)
{
    s_running (1);
    s_running (2);
    s_end (2, true, "b"); // DONE, not sent yet: an ack still counts
    uint64_t ids[] = { 1, 2, 99 };
    Keel__ResultAck ack = KEEL__RESULT_ACK__INIT;
    ack.n_execution_ids = 3;
    ack.execution_ids = ids;
    keel_outbox_acked (s_outbox, &ack);
    cr_assert_eq (s_state (1), KEEL_HELD_RUNNING, "a running task is not acknowledged");
    cr_assert_null (keel_held_find (s_held, 2));
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_fake.nsent, 0, "an acknowledged result is not sent");
}

Test (engine_outbox, checkpoints_leave_online_and_the_latest_after_login)
{
    s_running (1);
    keel_outbox_checkpoint (s_outbox, 1, (const uint8_t *) "3", 1);
    cr_assert_eq (s_fake.nsent, 1);
    cr_assert_eq (s_fake.sent[0].body, KEEL__ENVELOPE__BODY_CHECKPOINT);
    cr_assert_not (keel_held_find (s_held, 1)->checkpoint_pending);
    s_fake.online = false;
    keel_outbox_checkpoint (s_outbox, 1, (const uint8_t *) "4", 1);
    keel_outbox_checkpoint (s_outbox, 1, (const uint8_t *) "5", 1);
    cr_assert_eq (s_fake.nsent, 1);
    cr_assert (keel_held_find (s_held, 1)->checkpoint_pending);
    s_fake.online = true;
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    keel_outbox_logged_in (s_outbox, &reply, 0);
    cr_assert_eq (s_fake.nsent, 2, "only the latest checkpoint");
    cr_assert_eq (s_fake.sent[1].body, KEEL__ENVELOPE__BODY_CHECKPOINT);
    cr_assert_eq (keel_held_find (s_held, 1)->checkpoint[0], '5');
    //  Not for a done task or one not held.
    s_end (1, true, "done");
    keel_outbox_checkpoint (s_outbox, 1, (const uint8_t *) "6", 1);
    keel_outbox_checkpoint (s_outbox, 42, (const uint8_t *) "6", 1);
    cr_assert_eq (s_fake.nsent, 2);
    cr_assert_eq (keel_held_find (s_held, 1)->checkpoint[0], '5');
}

Test (engine_outbox, a_task_that_could_not_start_fails_with_its_reason)
{
    s_running (1);
    keel_outbox_refuse (s_outbox, 1, "service type 'x' is not offered by this engine");
    keel_held_task_t *t = keel_held_find (s_held, 1);
    cr_assert_eq (t->state, KEEL_HELD_DONE);
    cr_assert_not (t->ok);
    cr_assert_not (t->permanent);
    cr_assert_str_eq (t->error, "service type 'x' is not offered by this engine");
    keel_outbox_end_turn (s_outbox);
    cr_assert_eq (s_fake.nsent, 1);
}

Test (engine_outbox, spooled_results_are_loaded_back_as_done_and_spooled)
{
    s_fake.online = false;
    s_running (1);
    keel_runner_result_t r = { .execution_id = 1,
                               .ok = false,
                               .data = (const uint8_t *) "127",
                               .size = 3,
                               .run_us = 9,
                               .permanent = true };
    keel_outbox_finish (s_outbox, &r);
    s_running (2);
    s_end (2, true, "ok");
    keel_outbox_spool_all (s_outbox);
    //  A new process: an empty table loads both.
    keel_outbox_destroy (&s_outbox);
    keel_held_destroy (&s_held);
    s_held = keel_held_new ();
    s_outbox = keel_outbox_new (s_held, s_spool, "engine-1", &s_task_log, &s_ops, &s_fake);
    cr_assert_eq (keel_outbox_load (s_outbox, 1 << 20), 2);
    keel_held_task_t *t = keel_held_find (s_held, 1);
    cr_assert_not_null (t);
    cr_assert_eq (t->state, KEEL_HELD_DONE);
    cr_assert (t->spooled);
    cr_assert (t->permanent);
    cr_assert_str_eq (t->error, "127");
    cr_assert_eq (t->run_us, 9);
    cr_assert_null (t->type);
}
