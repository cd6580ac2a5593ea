/*  test_pg_private.c — the private PostgreSQL instance the cluster's tests
    stand on (pg.h): it starts on a free port of 127.0.0.1, takes SQL, two
    run side by side, and stop ends the very process it started and
    removes its directory. */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "pg.h"

static PGconn *
s_connect (const pg_instance_t *pg)
{
    PGconn *conn = PQconnectdb (pg->conninfo);
    HARNESS_ASSERT (PQstatus (conn) == CONNECTION_OK, "connect %s: %s", pg->conninfo,
                    PQerrorMessage (conn));
    return conn;
}

static char *
s_value (PGconn *conn, const char *sql)
{
    PGresult *res = PQexec (conn, sql);
    HARNESS_ASSERT (PQresultStatus (res) == PGRES_TUPLES_OK, "%s: %s", sql,
                    PQresultErrorMessage (res));
    char *value = strdup (PQgetvalue (res, 0, 0));
    PQclear (res);
    return value;
}

static void
s_exec (PGconn *conn, const char *sql)
{
    PGresult *res = PQexec (conn, sql);
    HARNESS_ASSERT (PQresultStatus (res) == PGRES_COMMAND_OK, "%s: %s", sql,
                    PQresultErrorMessage (res));
    PQclear (res);
}

Test (pg_private, starts_answers_sql_and_stops_by_its_pid, .init = harness_setup,
      .fini = harness_teardown, .timeout = 180)
{
    pg_instance_t pg;
    char why[1024];
    HARNESS_ASSERT (pg_start (&pg, why, sizeof why), "%s", why);
    HARNESS_ASSERT (pg.pid > 0 && pg.port > 0, "no pid or port");
    HARNESS_ASSERT (strncmp (pg.uri, "postgresql://postgres@127.0.0.1:", 32) == 0, "%s", pg.uri);

    PGconn *conn = s_connect (&pg);
    char *version = s_value (conn, "SELECT current_setting('server_version_num')::int >= 150000");
    HARNESS_ASSERT (strcmp (version, "t") == 0, "PostgreSQL older than 15");
    free (version);
    char *port = s_value (conn, "SELECT current_setting('port')");
    HARNESS_ASSERT (atoi (port) == pg.port, "answered from port %s, started on %d", port, pg.port);
    free (port);
    char *listen = s_value (conn, "SELECT current_setting('listen_addresses')");
    HARNESS_ASSERT (strcmp (listen, "127.0.0.1") == 0, "listens on %s", listen);
    free (listen);
    s_exec (conn, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    s_exec (conn, "INSERT INTO t VALUES (1, 'kept')");
    PQfinish (conn);

    char dir[256];
    snprintf (dir, sizeof dir, "%s", pg.dir);
    pid_t pid = pg.pid;
    HARNESS_ASSERT (pg_stop (&pg, 30000), "postgres did not stop");
    HARNESS_ASSERT (kill (pid, 0) != 0, "process %d still there after pg_stop", (int) pid);
    struct stat st;
    HARNESS_ASSERT (stat (dir, &st) != 0, "%s still there after pg_stop", dir);
    HARNESS_ASSERT (pg.pid == 0 && pg.dir[0] == '\0', "pg_stop did not reset the instance");
    HARNESS_ASSERT (pg_stop (&pg, 1000), "a second pg_stop must be harmless");
}

Test (pg_private, two_instances_run_side_by_side, .init = harness_setup, .fini = harness_teardown,
      .timeout = 180)
{
    pg_instance_t a, b;
    char why[1024];
    HARNESS_ASSERT (pg_start (&a, why, sizeof why), "a: %s", why);
    HARNESS_ASSERT (pg_start (&b, why, sizeof why), "b: %s", why);
    HARNESS_ASSERT (a.port != b.port && a.pid != b.pid && strcmp (a.dir, b.dir) != 0,
                    "the two instances share a port, pid or directory");
    PGconn *ca = s_connect (&a);
    PGconn *cb = s_connect (&b);
    s_exec (ca, "CREATE TABLE only_in_a (id int)");
    char *seen = s_value (cb, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'");
    HARNESS_ASSERT (strcmp (seen, "0") == 0, "b sees a's table");
    free (seen);
    PQfinish (ca);
    PQfinish (cb);
    HARNESS_ASSERT (pg_stop (&a, 30000) && pg_stop (&b, 30000), "an instance did not stop");
}
