/*  pg.c — a private PostgreSQL instance for tests. See pg.h. */
#include "pg.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define S_DEADLINE_MS 60000

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
s_fail (char *why, size_t size, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    vsnprintf (why, size, fmt, args);
    va_end (args);
    return false;
}

// The bin directory of the newest /usr/lib/postgresql/<version>.
static bool
s_bindir (char *out, size_t size)
{
    glob_t g;
    if (glob ("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0)
        return false;
    long best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long version = strtol (g.gl_pathv[i] + strlen ("/usr/lib/postgresql/"), NULL, 10);
        if (version > best) {
            best = version;
            snprintf (out, size, "%.*s", (int) (strlen (g.gl_pathv[i]) - strlen ("/initdb")),
                      g.gl_pathv[i]);
        }
    }
    globfree (&g);
    return best >= 0;
}

// Forks and runs argv[0] as `postgres` when this is root, its output
// appended to log. Returns the child's pid or -1.
static pid_t
s_run (const char *const argv[], const char *log, const struct passwd *pw)
{
    pid_t parent = getpid ();
    fflush (stdout);
    fflush (stderr);
    pid_t pid = fork ();
    if (pid != 0)
        return pid;
    int fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = open ("/dev/null", O_RDONLY);
    if (fd < 0 || in < 0)
        _exit (127);
    dup2 (in, 0);
    dup2 (fd, 1);
    dup2 (fd, 2);
    setpgid (0, 0);
    if (pw && (setgroups (0, NULL) != 0 || setgid (pw->pw_gid) != 0 || setuid (pw->pw_uid) != 0)) {
        dprintf (2, "pg: cannot become %s: %s\n", pw->pw_name, strerror (errno));
        _exit (127);
    }
    // After the change of user, which clears it: the server dies with the test.
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (getppid () != parent)
        _exit (127);
    execv (argv[0], (char *const *) argv);
    dprintf (2, "pg: cannot run %s: %s\n", argv[0], strerror (errno));
    _exit (127);
}

static int
s_rm_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove (path);
}

// The last lines of the server's log, for a failure message.
static void
s_log_tail (const pg_instance_t *pg, char *out, size_t size)
{
    char path[320];
    snprintf (path, sizeof path, "%s/server.log", pg->dir);
    FILE *f = fopen (path, "r");
    out[0] = '\0';
    if (!f)
        return;
    char buf[4096];
    size_t n = fread (buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose (f);
    const char *tail = n > 600 ? buf + n - 600 : buf;
    size_t len = strlen (tail) < size ? strlen (tail) : size - 1;
    memcpy (out, tail, len);
    out[len] = '\0';
}

// Starts the postmaster on pg->dir and pg->port and waits (60 s at most)
// until it answers: 1 when it does, 0 when it died at once (most likely the
// port was taken meanwhile), -1 when it is alive but silent.
static int
s_serve (pg_instance_t *pg)
{
    char bindir[200], data[320], log[320], postgres[256], port[16];
    if (!s_bindir (bindir, sizeof bindir))
        return 0;
    const struct passwd *pw = geteuid () == 0 ? getpwnam ("postgres") : NULL;
    snprintf (data, sizeof data, "%s/data", pg->dir);
    snprintf (log, sizeof log, "%s/server.log", pg->dir);
    snprintf (postgres, sizeof postgres, "%s/postgres", bindir);
    snprintf (port, sizeof port, "%d", pg->port);
    const char *argv[] = {
        postgres, "-D", data, "-k", pg->dir, "-p", port, "-c", "listen_addresses=127.0.0.1", NULL
    };
    pg->pid = s_run (argv, log, pw);
    int64_t deadline = s_now_ms () + S_DEADLINE_MS;
    while (pg->pid > 0 && s_now_ms () < deadline) {
        if (PQping (pg->conninfo) == PQPING_OK)
            return 1;
        if (waitpid (pg->pid, NULL, WNOHANG) == pg->pid) {
            pg->pid = 0;
            return 0;
        }
        usleep (20000);
    }
    return pg->pid > 0 ? -1 : 0;
}

bool
pg_start (pg_instance_t *pg, char *why, size_t why_size)
{
    memset (pg, 0, sizeof *pg);
    char bindir[200];
    if (!s_bindir (bindir, sizeof bindir))
        return s_fail (why, why_size,
                       "no PostgreSQL server in /usr/lib/postgresql (scripts/install-deps.sh "
                       "installs the package postgresql)");
    const struct passwd *pw = NULL;
    if (geteuid () == 0 && !(pw = getpwnam ("postgres")))
        return s_fail (why, why_size, "running as root and there is no user postgres");

    snprintf (pg->dir, sizeof pg->dir, "/tmp/keel-pg-XXXXXX");
    if (!mkdtemp (pg->dir))
        return s_fail (why, why_size, "mkdtemp: %s", strerror (errno));
    if (pw && chown (pg->dir, pw->pw_uid, pw->pw_gid) != 0) {
        pg_stop (pg, 0);
        return s_fail (why, why_size, "chown %s: %s", pg->dir, strerror (errno));
    }
    char data[320], log[320], initdb[256];
    snprintf (data, sizeof data, "%s/data", pg->dir);
    snprintf (log, sizeof log, "%s/server.log", pg->dir);
    snprintf (initdb, sizeof initdb, "%s/initdb", bindir);

    const char *init_argv[] = { initdb,  "-D", data,   "-U",         "postgres",  "-A",
                                "trust", "-E", "UTF8", "--locale=C", "--no-sync", NULL };
    pid_t pid = s_run (init_argv, log, pw);
    int status = 0;
    int64_t deadline = s_now_ms () + S_DEADLINE_MS;
    while (pid > 0 && waitpid (pid, &status, WNOHANG) == 0) {
        if (s_now_ms () >= deadline) {
            kill (pid, SIGKILL);
            waitpid (pid, &status, 0);
            status = -1;
            break;
        }
        usleep (20000);
    }
    if (pid <= 0 || status != 0) {
        char tail[700];
        s_log_tail (pg, tail, sizeof tail);
        pg_stop (pg, 0);
        return s_fail (why, why_size, "initdb failed (status %d): %s", status, tail);
    }

    // One user must give its password (PG_PASSWORD_USER), first in
    // pg_hba.conf (the first line that matches decides); every other user
    // is trusted.
    char hba[340];
    snprintf (hba, sizeof hba, "%s/pg_hba.conf", data);
    char *old = harness_read_file (hba);
    FILE *f = old ? fopen (hba, "w") : NULL;
    if (f) {
        fprintf (f, "host all " PG_PASSWORD_USER " 127.0.0.1/32 scram-sha-256\n%s", old);
        fclose (f);
    }
    free (old);
    if (!f) {
        pg_stop (pg, 0);
        return s_fail (why, why_size, "cannot rewrite %s", hba);
    }

    for (int attempt = 0; attempt < 5; attempt++) {
        pg->port = harness_free_port ();
        snprintf (pg->conninfo, sizeof pg->conninfo,
                  "host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=5",
                  pg->port);
        snprintf (pg->uri, sizeof pg->uri, "postgresql://postgres@127.0.0.1:%d/postgres", pg->port);
        int serve = s_serve (pg);
        if (serve == 1)
            return true;
        if (serve < 0)
            break; // alive but not answering for a minute: give up
    }
    char tail[700];
    s_log_tail (pg, tail, sizeof tail);
    pg_stop (pg, 0);
    return s_fail (why, why_size, "postgres did not answer on port %d: %s", pg->port, tail);
}

bool
pg_halt (pg_instance_t *pg, bool immediate, int timeout_ms)
{
    if (pg->pid <= 0)
        return true;
    kill (pg->pid, immediate ? SIGQUIT : SIGINT);
    int64_t deadline = s_now_ms () + timeout_ms;
    while (s_now_ms () < deadline) {
        if (waitpid (pg->pid, NULL, WNOHANG) == pg->pid) {
            pg->pid = 0;
            return true;
        }
        usleep (20000);
    }
    return false;
}

bool
pg_resume (pg_instance_t *pg, char *why, size_t why_size)
{
    if (pg->pid > 0)
        return true;
    if (s_serve (pg) == 1)
        return true;
    char tail[700];
    s_log_tail (pg, tail, sizeof tail);
    return s_fail (why, why_size, "postgres did not come back on port %d: %s", pg->port, tail);
}

bool
pg_stop (pg_instance_t *pg, int timeout_ms)
{
    bool ended = true;
    if (pg->pid > 0) {
        kill (pg->pid, SIGINT); // fast shutdown
        int64_t deadline = s_now_ms () + timeout_ms;
        ended = false;
        while (!ended && s_now_ms () < deadline) {
            ended = waitpid (pg->pid, NULL, WNOHANG) == pg->pid;
            if (!ended)
                usleep (20000);
        }
        if (!ended) {
            kill (pg->pid, SIGKILL);
            ended = waitpid (pg->pid, NULL, 0) == pg->pid;
        }
        pg->pid = 0;
    }
    if (pg->dir[0])
        nftw (pg->dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    pg->dir[0] = '\0';
    return ended;
}
