/*  engine_session_fake.h — fake ops for the engine session's unit tests
    (test_engine_session*.c): every action is recorded in s_fake, the
    config is s_cfg, and the tests pass the time in. Header-only: each test
    file is one executable.
*/
#ifndef KEEL_TEST_ENGINE_SESSION_FAKE_H
#define KEEL_TEST_ENGINE_SESSION_FAKE_H

#include <criterion/criterion.h>
#include <string.h>

#include "engine_config.h"
#include "engine_session.h"

typedef struct {
    int connects, disconnects, logins, heartbeats, logged_in, works;
    int probes_opened, probes_closed, timeouts, new_sessions;
    int last_connect;
    char last_logoff[32];
    int logoffs;
    bool connect_ok, login_ok, probe_ok;
    unsigned listening; // bit i: broker i takes connections (the login can leave)
} s_fake_t;

static bool
f_connect (void *a, int i)
{
    s_fake_t *f = a;
    f->connects++;
    f->last_connect = i;
    return f->connect_ok;
}
static void
f_disconnect (void *a)
{
    ((s_fake_t *) a)->disconnects++;
}
static bool
f_login (void *a)
{
    s_fake_t *f = a;
    f->logins++;
    return f->login_ok && (f->listening & (1u << f->last_connect));
}
static bool
f_heartbeat (void *a)
{
    ((s_fake_t *) a)->heartbeats++;
    return true;
}
static void
f_logoff (void *a, const char *r)
{
    s_fake_t *f = a;
    f->logoffs++;
    snprintf (f->last_logoff, sizeof f->last_logoff, "%s", r);
}
static void
f_logged_in (void *a, const Keel__LoginReply *r)
{
    (void) r;
    ((s_fake_t *) a)->logged_in++;
}
static void
f_work (void *a, const keel_env_t *e)
{
    (void) e;
    ((s_fake_t *) a)->works++;
}
static bool
f_probe_open (void *a)
{
    s_fake_t *f = a;
    f->probes_opened++;
    return f->probe_ok;
}
static void
f_probe_close (void *a)
{
    ((s_fake_t *) a)->probes_closed++;
}
static void
f_timeout (void *a)
{
    ((s_fake_t *) a)->timeouts++;
}
static void
f_new_session (void *a)
{
    ((s_fake_t *) a)->new_sessions++;
}

static const keel_engine_session_ops_t s_ops = { f_connect,   f_disconnect, f_login,
                                                 f_heartbeat, f_logoff,     f_logged_in,
                                                 f_work,      f_probe_open, f_probe_close,
                                                 f_timeout,   f_new_session };

static keel_engine_config_t s_cfg;
static s_fake_t s_fake;
static keel_engine_session_t *s_session;

#endif
