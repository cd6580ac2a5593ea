/*  The engine ↔ broker session state machine, driven without sockets: the
    actions are recorded by fake ops and time is passed in by the test. */
#include <criterion/criterion.h>
#include <string.h>

#include "engine_config.h"
#include "engine_session.h"

#include "engine_session_fake.h"

static void
s_setup_with (keel_timeout_action_t action)
{
    memset (&s_cfg, 0, sizeof s_cfg);
    s_cfg.brokers[0] = "tcp://primary:1";
    s_cfg.brokers[1] = "tcp://failover:2";
    s_cfg.n_brokers = 2;
    s_cfg.slots = 2;
    s_cfg.timeout_action = action;
    s_cfg.primary_retry_ms = 10000;
    s_cfg.heartbeat_ms = 1000;
    s_cfg.default_engine_timeout_ms = 900000;
    memset (&s_fake, 0, sizeof s_fake);
    s_fake.connect_ok = s_fake.login_ok = s_fake.probe_ok = true;
    s_fake.listening = ~0u;
    s_session = keel_engine_session_new (&s_cfg, &s_ops, &s_fake, 0);
    cr_assert (s_session);
}

static void
setup (void)
{
    s_setup_with (KEEL_TIMEOUT_ACTION_RESTART);
}
static void
setup_exit (void)
{
    s_setup_with (KEEL_TIMEOUT_ACTION_EXIT);
}
static void
teardown (void)
{
    keel_engine_session_destroy (&s_session);
}

//  Feeds a LoginReply{ok} with the given heartbeat and Engine Timeout.
static void
s_login_reply (bool ok, uint64_t heartbeat_ms, uint64_t timeout_ms, int64_t now)
{
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    reply.has_ok = true;
    reply.ok = ok;
    reply.has_heartbeat_ms = reply.has_engine_timeout_ms = true;
    reply.heartbeat_ms = heartbeat_ms;
    reply.engine_timeout_ms = timeout_ms;
    reply.broker_name = "b";
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_LOGIN_REPLY;
    env.login_reply = &reply;
    cr_assert (keel_engine_session_on_message (s_session, &env, now));
}

static bool
s_message (Keel__Envelope__BodyCase body, int64_t now)
{
    Keel__Relogin relogin = KEEL__RELOGIN__INIT;
    Keel__Heartbeat heartbeat = KEEL__HEARTBEAT__INIT;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = body;
    if (body == KEEL__ENVELOPE__BODY_RELOGIN)
        env.relogin = &relogin;
    else
        env.heartbeat = &heartbeat;
    return keel_engine_session_on_message (s_session, &env, now);
}

//  Logs in to the broker the session is trying, at time now.
static void
s_online_at (int64_t now)
{
    keel_engine_session_tick (s_session, now);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    s_login_reply (true, 500, 60000, now);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_ONLINE);
}

TestSuite (engine_session, .init = setup, .fini = teardown);

Test (engine_session, starts_offline_and_logs_in_to_the_primary_at_once)
{
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    keel_engine_session_tick (s_session, 0);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert_eq (s_fake.last_connect, 0);
    cr_assert_eq (s_fake.logins, 1);
}

Test (engine_session, retries_the_login_until_the_socket_takes_it)
{
    s_fake.login_ok = false;
    keel_engine_session_tick (s_session, 0);
    cr_assert (keel_engine_session_wants_writable (s_session));
    s_fake.login_ok = true;
    keel_engine_session_tick (s_session, 100);
    cr_assert_eq (s_fake.logins, 2);
    cr_assert (!keel_engine_session_wants_writable (s_session));
}

Test (engine_session, a_login_timeout_moves_to_the_next_broker_then_backs_off)
{
    keel_engine_session_tick (s_session, 0);
    keel_engine_session_tick (s_session, 3000); // 3 heartbeats without LoginReply
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
    keel_engine_session_tick (s_session, 3000); // next broker of the sweep: at once
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert_eq (s_fake.last_connect, 1);
    keel_engine_session_tick (s_session, 6000); // sweep over: back to the primary, later
    cr_assert_eq (keel_engine_session_broker (s_session), 0);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    keel_engine_session_tick (s_session, 6000);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    cr_assert_gt (keel_engine_session_next_deadline (s_session), 6000);
}

Test (engine_session, login_reply_goes_online_and_adopts_heartbeat_and_engine_timeout)
{
    s_online_at (0);
    cr_assert_eq (s_fake.logged_in, 1);
    cr_assert_eq (keel_engine_session_heartbeat_ms (s_session), 500);
    cr_assert_eq (keel_engine_session_engine_timeout_ms (s_session), 60000);
    keel_engine_session_tick (s_session, 500);
    cr_assert_eq (s_fake.heartbeats, 1);
}

Test (engine_session, a_refused_login_tries_the_next_broker)
{
    keel_engine_session_tick (s_session, 0);
    s_login_reply (false, 500, 60000, 10);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
}

Test (engine_session, work_is_refused_before_login_and_accepted_online)
{
    keel_engine_session_tick (s_session, 0);
    cr_assert (!s_message (KEEL__ENVELOPE__BODY_ASSIGN, 10));
    cr_assert_eq (s_fake.works, 0);
    s_login_reply (true, 500, 60000, 20);
    cr_assert (s_message (KEEL__ENVELOPE__BODY_ASSIGN, 30));
    cr_assert_eq (s_fake.works, 1);
}

Test (engine_session,
      keeps_running_tasks_while_the_broker_is_silent_and_retries_the_primary_at_once)
{
    s_online_at (0);
    s_message (KEEL__ENVELOPE__BODY_HEARTBEAT, 1000);
    keel_engine_session_tick (s_session, 2400);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_ONLINE);
    keel_engine_session_tick (s_session, 2500); // 3 x 500 ms of silence
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    cr_assert_eq (s_fake.timeouts, 0, "tasks are not killed on broker loss");
    cr_assert_eq (keel_engine_session_broker (s_session), 0);
    cr_assert_eq (keel_engine_session_next_deadline (s_session), 2500,
                  "the first round starts at once");
}

//  Runs the session from time `from`, jumping from one of its deadlines to
//  the next, until it tries broker `index` (a connect) or time passes
//  `until`. Returns the time of that connect, -1 if none.
static int64_t
s_next_try_of (int index, int64_t from, int64_t until)
{
    int connects = s_fake.connects;
    int64_t t = from;
    for (int steps = 0; t <= until && steps < 1000; steps++) {
        keel_engine_session_tick (s_session, t);
        if (s_fake.connects > connects) {
            if (s_fake.last_connect == index)
                return t;
            connects = s_fake.connects;
        }
        int64_t next = keel_engine_session_next_deadline (s_session);
        t = next > t ? next : t;
    }
    return -1;
}

Test (engine_session, a_round_tries_every_broker_then_backs_off_before_the_next_round)
{
    s_fake.login_ok = false; // nothing listens: no connection, no login
    keel_engine_session_tick (s_session, 0);
    cr_assert_eq (s_fake.last_connect, 0);
    keel_engine_session_tick (s_session, 490);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    keel_engine_session_tick (s_session, 500); // not connected in 0.5 s: skipped
    keel_engine_session_tick (s_session, 500); // the failover, at once
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert_eq (s_fake.last_connect, 1);
    keel_engine_session_tick (s_session, 1000); // round over
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    cr_assert_eq (keel_engine_session_broker (s_session), 0);
    int64_t next = keel_engine_session_next_deadline (s_session);
    cr_assert (next >= 1000 + 800 && next <= 1000 + 1200, "next round after about 1 s, got %lld",
               (long long) next);
    cr_assert_eq (s_next_try_of (0, 1000, next), next, "the next round starts at the primary");
}

Test (engine_session, losing_the_primary_tries_the_failover_within_half_a_second)
{
    s_online_at (0);                            // H = 500 ms from the LoginReply
    keel_engine_session_tick (s_session, 1500); // A silent for 3·H: lost
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    s_fake.listening = 1u << 1; // A is gone: its login cannot leave; B listens
    int connects = s_fake.connects;
    keel_engine_session_tick (s_session, 1500); // round 1: A again, at once
    cr_assert_eq (s_fake.connects, connects + 1);
    cr_assert_eq (s_fake.last_connect, 0);
    // B's login leaves at once and B answers. A driver that noticed the
    // loss at 1500 too moves to B only after its DSBrokerTimeout (at
    // least 2 s): the engine is there first.
    cr_assert_eq (s_next_try_of (1, 1500, 1500 + 2000), 2000);
    s_login_reply (true, 500, 60000, 2000);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_ONLINE);
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
}

Test (engine_session, a_connected_broker_gets_3_heartbeats_to_answer_the_login)
{
    keel_engine_session_tick (s_session, 0); // connected, login sent (H = 1 s)
    keel_engine_session_tick (s_session, 2990);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert_eq (s_fake.last_connect, 0);
    keel_engine_session_tick (s_session, 3000);
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
}

Test (engine_session, a_login_that_leaves_late_gets_3_heartbeats_from_then)
{
    s_fake.login_ok = false;
    keel_engine_session_tick (s_session, 0);
    s_fake.login_ok = true;
    keel_engine_session_tick (s_session, 400); // connected now: the login leaves
    cr_assert_eq (s_fake.logins, 2);
    keel_engine_session_tick (s_session, 3390);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    keel_engine_session_tick (s_session, 3400);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
}

Test (engine_session, later_rounds_wait_longer_for_a_connection_up_to_3_heartbeats)
{
    s_fake.login_ok = false;
    // Connect time per try in rounds 1..5: 0.5, 1, 2, then 3·H (3 s).
    static const int64_t expect[] = { 500, 1000, 2000, 3000, 3000 };
    int64_t t = 0;
    for (int round = 0; round < 5; round++) {
        int64_t start = s_next_try_of (0, t, t + 10000);
        cr_assert_geq (start, 0, "round %d did not start", round + 1);
        int64_t failover = s_next_try_of (1, start, start + 10000);
        cr_assert_eq (failover - start, expect[round], "round %d: primary tried for %lld ms",
                      round + 1, (long long) (failover - start));
        t = failover + 1;
    }
}

Test (engine_session, the_backoff_between_rounds_doubles_to_3_seconds)
{
    s_fake.login_ok = false;
    s_cfg.n_brokers = 1;
    int64_t t = s_next_try_of (0, 0, 0), prev_end = -1;
    for (int round = 0; round < 8; round++) {
        int64_t connect_ms = round == 0 ? 500 : round == 1 ? 1000 : round == 2 ? 2000 : 3000;
        int64_t end = t + connect_ms;
        int64_t next = s_next_try_of (0, t + 1, t + 20000);
        int64_t gap = next - end;
        int64_t base = round == 0 ? 1000 : round == 1 ? 2000 : 3000;
        cr_assert (gap >= base * 8 / 10 && gap <= base * 12 / 10,
                   "round %d: %lld ms between rounds, expected about %lld", round + 1,
                   (long long) gap, (long long) base);
        prev_end = end;
        t = next;
    }
    cr_assert_gt (prev_end, 0);
}

Test (engine_session, a_round_after_losing_a_failover_starts_at_the_primary)
{
    s_fake.login_ok = false;
    keel_engine_session_tick (s_session, 0);
    keel_engine_session_tick (s_session, 500); // primary skipped
    s_fake.login_ok = true;
    s_online_at (500); // on the failover
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
    keel_engine_session_tick (s_session, 2000); // failover silent for 3·H
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    keel_engine_session_tick (s_session, 2000);
    cr_assert_eq (s_fake.last_connect, 0, "the primary first, at once");
}

Test (engine_session, a_move_to_the_primary_that_fails_returns_to_the_failover_at_once)
{
    keel_engine_session_tick (s_session, 0);
    keel_engine_session_tick (s_session, 3000); // primary did not answer
    s_online_at (3000);
    s_fake.login_ok = false; // the primary takes no connection
    cr_assert (s_message (KEEL__ENVELOPE__BODY_RELOGIN, 3100));
    cr_assert_eq (s_fake.last_connect, 0);
    keel_engine_session_tick (s_session, 3600);
    keel_engine_session_tick (s_session, 3600);
    cr_assert_eq (s_fake.last_connect, 1);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
}

Test (engine_session, engine_timeout_with_restart_starts_a_fresh_session, .init = setup,
      .fini = teardown)
{
    s_online_at (0);
    keel_engine_session_tick (s_session, 1500); // lost at 1500 (3 x 500)
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    keel_engine_session_tick (s_session, 1500 + 59999);
    cr_assert_eq (s_fake.timeouts, 0);
    keel_engine_session_tick (s_session, 1500 + 60000);
    cr_assert_eq (s_fake.timeouts, 1);
    cr_assert_eq (s_fake.new_sessions, 1);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_OFFLINE);
    keel_engine_session_tick (s_session, 1500 + 60000);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert_eq (s_fake.last_connect, 0);
}

Test (engine_session, engine_timeout_with_exit_stops_with_code_3, .init = setup_exit,
      .fini = teardown)
{
    keel_engine_session_tick (s_session, 0);
    keel_engine_session_tick (s_session, 900000); // default Engine Timeout: 15 minutes
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_STOPPED);
    cr_assert_eq (keel_engine_session_exit_code (s_session), 3);
    cr_assert_eq (s_fake.timeouts, 1);
    cr_assert_eq (s_fake.new_sessions, 0);
}

Test (engine_session, relogin_on_a_failover_logs_off_moving_and_logs_in_to_the_primary)
{
    keel_engine_session_tick (s_session, 0);
    keel_engine_session_tick (s_session, 3000); // primary did not answer
    s_online_at (3000);                         // logged in to the failover
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
    cr_assert (s_message (KEEL__ENVELOPE__BODY_RELOGIN, 3100));
    cr_assert_eq (s_fake.logoffs, 1);
    cr_assert_str_eq (s_fake.last_logoff, "moving");
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert_eq (s_fake.last_connect, 0);
    cr_assert_eq (s_fake.timeouts, 0, "no task is cancelled");
}

Test (engine_session, on_a_failover_the_primary_is_probed_and_rejoined_when_it_answers)
{
    keel_engine_session_tick (s_session, 0);
    keel_engine_session_tick (s_session, 3000);
    s_online_at (3000);
    for (int64_t t = 3000; t < 13000; t += 250) {
        s_message (KEEL__ENVELOPE__BODY_HEARTBEAT, t);
        keel_engine_session_tick (s_session, t);
    }
    cr_assert_eq (s_fake.probes_opened, 0);
    s_message (KEEL__ENVELOPE__BODY_HEARTBEAT, 13000);
    keel_engine_session_tick (s_session, 13000); // PrimaryRetryInterval after login
    cr_assert_eq (s_fake.probes_opened, 1);
    cr_assert (keel_engine_session_probing (s_session));
    keel_engine_session_on_probe_reply (s_session, 13100);
    cr_assert_str_eq (s_fake.last_logoff, "moving");
    cr_assert_eq (s_fake.probes_closed, 1);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_LOGGING_IN);
    cr_assert_eq (keel_engine_session_broker (s_session), 0);
}

Test (engine_session, an_unanswered_probe_is_closed_and_tried_again_later)
{
    keel_engine_session_tick (s_session, 0);
    keel_engine_session_tick (s_session, 3000);
    s_online_at (3000);
    for (int64_t t = 3000; t <= 14600; t += 200) {
        s_message (KEEL__ENVELOPE__BODY_HEARTBEAT, t);
        keel_engine_session_tick (s_session, t);
    }
    cr_assert_eq (s_fake.probes_opened, 1);
    cr_assert_eq (s_fake.probes_closed, 1); // 3 x 500 ms without answer
    cr_assert (!keel_engine_session_probing (s_session));
    cr_assert_eq (keel_engine_session_broker (s_session), 1);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_ONLINE);
}

Test (engine_session, stop_while_online_logs_off_stopping)
{
    s_online_at (0);
    keel_engine_session_stop (s_session, 100);
    cr_assert_eq (s_fake.logoffs, 1);
    cr_assert_str_eq (s_fake.last_logoff, "stopping");
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_STOPPED);
    cr_assert_eq (keel_engine_session_exit_code (s_session), 0);
    cr_assert_eq (s_fake.timeouts, 0);
}

Test (engine_session, stop_while_offline_stops_without_logoff)
{
    keel_engine_session_stop (s_session, 0);
    cr_assert_eq (s_fake.logoffs, 0);
    cr_assert_eq (keel_engine_session_state (s_session), KEEL_ENGINE_SESSION_STOPPED);
}

Test (engine_session, drops_a_login_reply_whose_timers_it_cannot_adopt)
{
    Keel__LoginReply reply = KEEL__LOGIN_REPLY__INIT;
    reply.has_ok = reply.ok = true;
    reply.heartbeat_ms = 1000;
    reply.engine_timeout_ms = 60000;
    keel_env_t env;
    keel_env_init (&env, KEEL__SENDER_KIND__SENDER_BROKER);
    env.body_case = KEEL__ENVELOPE__BODY_LOGIN_REPLY;
    env.login_reply = &reply;
    keel_error_t err = { "" };
    cr_assert (keel_engine_session_reply_usable (&env, &err));
    reply.heartbeat_ms = 3600LL * 1000 + 1;
    cr_assert_not (keel_engine_session_reply_usable (&env, &err));
    cr_assert (strstr (err.text, "heartbeat_ms"), "%s", err.text);
    reply.heartbeat_ms = 1000;
    reply.engine_timeout_ms = 100000LL * 60 * 1000 + 1;
    cr_assert_not (keel_engine_session_reply_usable (&env, &err));
    cr_assert (strstr (err.text, "engine_timeout_ms"), "%s", err.text);
    //  A refusal adopts nothing, and other messages are not its business.
    reply.ok = false;
    cr_assert (keel_engine_session_reply_usable (&env, &err));
    env.body_case = KEEL__ENVELOPE__BODY_HEARTBEAT;
    cr_assert (keel_engine_session_reply_usable (&env, &err));
}
