/*  pg.h — a private PostgreSQL instance for tests (issue 14, the active
    cluster on PostgreSQL: docs/operations.md §4). Real parts, never a mock:
    initdb in a fresh directory, postgres on a free port of 127.0.0.1 with
    its socket in that directory, stopped by the PID it was started with.

    Under root the server runs as the `postgres` user (initdb refuses root):
    the directory is made in /tmp (the harness's directory is private to
    root) and handed to that user. The binaries are Debian's
    (/usr/lib/postgresql/<version>/bin, package postgresql, installed by
    scripts/install-deps.sh); the newest version found is used.

    Every user is trusted except PG_PASSWORD_USER, who must give its
    password (scram-sha-256; a test creates the role it needs): the
    refusal of a wrong password is real.

    Every wait is bounded; a failure says why in `why`. pg_stop (or the
    test process dying: the server gets SIGKILL then, as with the harness's
    daemons) ends the server; pg_stop also removes the directory.
*/
#ifndef KEEL_TEST_PG_H
#define KEEL_TEST_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define PG_PASSWORD_USER "keel_pw"

typedef struct {
    pid_t pid;          // the postmaster (0: not running)
    int port;           // on 127.0.0.1
    char dir[256];      // data directory, also the socket directory
    char conninfo[512]; // libpq connection string (user postgres, database postgres)
    char uri[512];      // the same as a postgresql:// URI (TCP on 127.0.0.1)
} pg_instance_t;

// Makes a cluster with initdb and starts postgres on a free port. Returns
// false, with the reason (and the tail of the server's log when it got
// that far) in why, when a step fails or does not finish within 60 s.
bool pg_start (pg_instance_t *pg, char *why, size_t why_size);

// A database outage: stops the postmaster (immediate: SIGQUIT, like
// `pg_ctl stop -m immediate`, no checkpoint; else a fast shutdown, SIGINT)
// and waits up to timeout_ms for it to exit; the directory and port stay
// for pg_resume. True when it exited.
bool pg_halt (pg_instance_t *pg, bool immediate, int timeout_ms);

// Starts the server again on the same directory and port after pg_halt
// (crash recovery after an immediate stop). False, with why, when it does
// not answer within 60 s.
bool pg_resume (pg_instance_t *pg, char *why, size_t why_size);

// Fast shutdown (SIGINT) of the postmaster, SIGKILL after timeout_ms, then
// removes the directory. True when the process ended. Safe on an instance
// that never started.
bool pg_stop (pg_instance_t *pg, int timeout_ms);

#endif
