/*  test_ft.h — helpers shared by the fault-tolerance tests (test_ft_*.c,
    DESIGN §4): brokers started on planned ports and restarted on the same
    store, engines and drivers with failover lists, broker counters and
    execution ids read with keel-admin, the driver's JSON lines checked for
    exactly-once delivery, and task processes found under /proc.

    Header-only (static functions) so that each test file stays one
    executable; every wait polls with a deadline (harness_poll_until).
*/
#ifndef KEEL_TEST_FT_H
#define KEEL_TEST_FT_H

#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define FT_MAX_TASKS 64

// ------------------------------------------------------------ brokers

// Chooses the ports and the store of a broker that starts later.
static inline bool
ft_broker_plan (harness_broker_t *b, const char *name)
{
    memset (b, 0, sizeof *b);
    snprintf (b->name, sizeof b->name, "%s", name);
    b->port = harness_free_port ();
    b->admin_port = harness_free_port ();
    if (!b->port || !b->admin_port)
        return false;
    snprintf (b->endpoint, sizeof b->endpoint, "tcp://127.0.0.1:%d", b->port);
    snprintf (b->admin_endpoint, sizeof b->admin_endpoint, "tcp://127.0.0.1:%d", b->admin_port);
    snprintf (b->store, sizeof b->store, "sqlite:%s/%s.db", harness_dir (), name);
    return true;
}

static inline bool
s_ft_status_answers (void *arg)
{
    long long epoch = 0;
    return harness_status_int (arg, "epoch", &epoch);
}

// Starts (or restarts, same ports and store) the planned broker b with the
// extra settings, and waits until keel-admin status answers.
static inline bool
ft_broker_spawn (harness_broker_t *b, const char *const sets[])
{
    char endpoint[96], admin[96], store[600], bname[64];
    snprintf (endpoint, sizeof endpoint, "Endpoint=%s", b->endpoint);
    snprintf (admin, sizeof admin, "AdminEndpoint=%s", b->admin_endpoint);
    snprintf (store, sizeof store, "Store=%s", b->store);
    snprintf (bname, sizeof bname, "Name=%s", b->name);
    const char *argv[64];
    int n = 0;
    const char *fixed[] = { endpoint, admin, store, bname };
    for (int i = 0; i < 4; i++) {
        argv[n++] = "--set";
        argv[n++] = fixed[i];
    }
    for (int i = 0; sets && sets[i] && n < 62; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    argv[n] = NULL;
    b->pid = harness_spawn (b->name, "keel-broker", argv);
    if (b->pid <= 0)
        return false;
    return harness_poll_until (s_ft_status_answers, b, 15000);
}

// One counter (or any integer) of `keel-admin --json status`; -1 when the
// broker did not answer.
static inline long long
ft_status (const harness_broker_t *b, const char *path)
{
    long long v = -1;
    if (!harness_status_int (b, path, &v))
        return -1;
    return v;
}

typedef struct {
    const harness_broker_t *b;
    const char *path;
    long long min;
} ft_counter_wait_t;

static inline bool
s_ft_counter_at_least (void *arg)
{
    ft_counter_wait_t *w = arg;
    return ft_status (w->b, w->path) >= w->min;
}

// Waits until the status field at path is at least min.
static inline bool
ft_wait_status (const harness_broker_t *b, const char *path, long long min, int timeout_ms)
{
    ft_counter_wait_t w = { b, path, min };
    return harness_poll_until (s_ft_counter_at_least, &w, timeout_ms);
}

// Runs keel-admin --json ARGS on b and returns its stdout (caller frees),
// or NULL when it failed.
static inline char *
ft_admin_json (const harness_broker_t *b, const char *a1, const char *a2)
{
    harness_result_t res;
    int code =
        a2 ? harness_admin (b, &res, true, a1, a2, NULL) : harness_admin (b, &res, true, a1, NULL);
    char *out = code == 0 ? strdup (res.out) : NULL;
    harness_result_free (&res);
    return out;
}

// The id of the first service b knows (into id, size >= 64). False if none.
static inline bool
ft_first_service (const harness_broker_t *b, char *id, size_t size)
{
    char *json = ft_admin_json (b, "services", NULL);
    bool ok = false;
    const char *p = json ? strstr (json, "\"id\":\"") : NULL;
    if (p) {
        p += 6;
        const char *end = strchr (p, '"');
        if (end && (size_t) (end - p) < size) {
            memcpy (id, p, (size_t) (end - p));
            id[end - p] = 0;
            ok = true;
        }
    }
    free (json);
    return ok;
}

// Finds `"key":"` inside [from, to) and copies the string value.
static inline bool
s_ft_str_in (const char *from, const char *to, const char *key, char *out, size_t size)
{
    char pat[64];
    snprintf (pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr (from, pat);
    if (!p || (to && p >= to))
        return false;
    p += strlen (pat);
    const char *end = strchr (p, '"');
    if (!end || (size_t) (end - p) >= size)
        return false;
    memcpy (out, p, (size_t) (end - p));
    out[end - p] = 0;
    return true;
}

// The state of task `task` of the service on b and the id and engine of
// its first execution, from `keel-admin --json tasks`. Any out pointer
// may be NULL. Returns false when the broker does not list the task;
// *exec is 0 when it has no execution.
static inline bool
ft_task_info (const harness_broker_t *b, const char *service, long long task, char *state,
              size_t state_size, unsigned long long *exec, char *engine, size_t engine_size)
{
    char *json = ft_admin_json (b, "tasks", service);
    if (!json)
        return false;
    char pat[48];
    snprintf (pat, sizeof pat, "{\"task\":%lld,", task);
    const char *p = strstr (json, pat);
    bool ok = p != NULL;
    if (ok) {
        const char *next = strstr (p + 1, "{\"task\":");
        if (state)
            ok = s_ft_str_in (p, next, "state", state, state_size);
        if (exec)
            *exec = 0;
        const char *x = strstr (p, "\"executions\":[{\"id\":");
        if (x && (!next || x < next)) {
            if (exec)
                *exec = strtoull (x + strlen ("\"executions\":[{\"id\":"), NULL, 10);
            if (engine)
                s_ft_str_in (x, next, "engine", engine, engine_size);
        }
    }
    free (json);
    return ok;
}

typedef struct {
    const harness_broker_t *b;
    const char *service;
    long long task;
    const char *state;
} ft_task_wait_t;

static inline bool
s_ft_task_in_state (void *arg)
{
    ft_task_wait_t *w = arg;
    char state[32] = "";
    unsigned long long exec = 0;
    char engine[80] = "";
    if (!ft_task_info (w->b, w->service, w->task, state, sizeof state, &exec, engine,
                       sizeof engine))
        return false;
    if (strcmp (state, w->state) != 0)
        return false;
    // "running" means: on an engine that is online.
    return strcmp (w->state, "running") != 0 || (exec != 0 && *engine);
}

// Waits until the task is in state ("queued", "running", "done").
static inline bool
ft_wait_task (const harness_broker_t *b, const char *service, long long task, const char *state,
              int timeout_ms)
{
    ft_task_wait_t w = { b, service, task, state };
    return harness_poll_until (s_ft_task_in_state, &w, timeout_ms);
}

typedef struct {
    const harness_broker_t *b;
    char *id;
    size_t size;
} ft_service_wait_t;

static inline bool
s_ft_has_service (void *arg)
{
    ft_service_wait_t *w = arg;
    return ft_first_service (w->b, w->id, w->size);
}

// Waits until b knows a service; copies its id.
static inline bool
ft_wait_service (const harness_broker_t *b, char *id, size_t size, int timeout_ms)
{
    ft_service_wait_t w = { b, id, size };
    return harness_poll_until (s_ft_has_service, &w, timeout_ms);
}

// ------------------------------------------------------------ engines, drivers

// Starts keel-engine `name` with the broker list primary[,failover] and
// the extra settings (NULL-terminated, may be NULL).
static inline pid_t
ft_engine_start (const harness_broker_t *primary, const harness_broker_t *failover,
                 const char *name, int slots, const char *const extra[])
{
    char brokers[200];
    snprintf (brokers, sizeof brokers, "Brokers=%s%s%s", primary->endpoint, failover ? "," : "",
              failover ? failover->endpoint : "");
    const char *sets[40];
    int n = 0;
    sets[n++] = brokers;
    for (int i = 0; extra && extra[i] && n < 39; i++)
        sets[n++] = extra[i];
    sets[n] = NULL;
    return harness_engine_start (primary, name, slots, sets);
}

// Starts keel-driver `name` (stdout <dir>/<name>.out): --broker primary
// [--failover failover], the extra --set KEY=VALUE settings, then the
// submit arguments (NULL-terminated).
static inline pid_t
ft_driver_start (const char *name, const harness_broker_t *primary,
                 const harness_broker_t *failover, const char *const sets[],
                 const char *const submit[])
{
    const char *argv[64];
    int n = 0;
    argv[n++] = "--broker";
    argv[n++] = primary->endpoint;
    if (failover) {
        argv[n++] = "--failover";
        argv[n++] = failover->endpoint;
    }
    for (int i = 0; sets && sets[i] && n < 40; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    argv[n++] = "submit";
    for (int i = 0; submit && submit[i] && n < 62; i++)
        argv[n++] = submit[i];
    argv[n] = NULL;
    return harness_spawn (name, "keel-driver", argv);
}

// ------------------------------------------------------------ files

// True when <dir>/<name> contains needle.
static inline bool
ft_log_has (const char *name, const char *needle)
{
    char path[600];
    harness_path (path, sizeof path, name);
    char *text = harness_read_file (path);
    bool found = text && strstr (text, needle);
    free (text);
    return found;
}

// How many times needle occurs in <dir>/<name>.
static inline int
ft_log_count (const char *name, const char *needle)
{
    char path[600];
    harness_path (path, sizeof path, name);
    char *text = harness_read_file (path);
    int n = 0;
    for (const char *p = text; p && (p = strstr (p, needle)); p += strlen (needle))
        n++;
    free (text);
    return n;
}

typedef struct {
    const char *name;
    const char *needle;
} ft_log_wait_t;

static inline bool
s_ft_log_has (void *arg)
{
    ft_log_wait_t *w = arg;
    return ft_log_has (w->name, w->needle);
}

// Waits until <dir>/<name> contains needle.
static inline bool
ft_wait_log (const char *name, const char *needle, int timeout_ms)
{
    ft_log_wait_t w = { name, needle };
    return harness_poll_until (s_ft_log_has, &w, timeout_ms);
}

// Number of files in <dir>/<engine>.state/spool: the results the engine
// keeps because no broker acknowledged them yet (-1 if it cannot be read).
static inline int
ft_spooled (const char *engine)
{
    char rel[128], path[600];
    snprintf (rel, sizeof rel, "%s.state/spool", engine);
    harness_path (path, sizeof path, rel);
    DIR *dir = opendir (path);
    if (!dir)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir (dir)))
        if (e->d_name[0] != '.')
            n++;
    closedir (dir);
    return n;
}

static inline bool
s_ft_spool_empty (void *arg)
{
    return ft_spooled (arg) == 0;
}

// Waits until the engine's spool is empty: every result acknowledged.
static inline bool
ft_wait_spool_empty (const char *engine, int timeout_ms)
{
    return harness_poll_until (s_ft_spool_empty, (void *) engine, timeout_ms);
}

// True when the engine's spool holds a complete result (a file renamed into
// place, not a ".tmp" being written).
static inline bool
s_ft_spool_holds_one (void *arg)
{
    char rel[128], path[600];
    snprintf (rel, sizeof rel, "%s.state/spool", (const char *) arg);
    harness_path (path, sizeof path, rel);
    DIR *dir = opendir (path);
    if (!dir)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir (dir))) {
        size_t len = strlen (e->d_name);
        found = e->d_name[0] != '.' && !(len > 4 && strcmp (e->d_name + len - 4, ".tmp") == 0);
    }
    closedir (dir);
    return found;
}

// Waits until the engine has spooled a result to disk.
static inline bool
ft_wait_spooled (const char *engine, int timeout_ms)
{
    return harness_poll_until (s_ft_spool_holds_one, (void *) engine, timeout_ms);
}

// ------------------------------------------------------------ results

typedef struct {
    int lines;
    int count[FT_MAX_TASKS];
    char status[FT_MAX_TASKS][16];
    char output[FT_MAX_TASKS][64];
    char engine[FT_MAX_TASKS][80];
    unsigned long long exec[FT_MAX_TASKS];
    char bad[256]; // first line that did not parse
} ft_results_t;

// Parses the driver's JSON lines from <dir>/<name>. Returns false when the
// file is missing or a line does not parse (r->bad says which).
static inline bool
ft_results_read (const char *name, ft_results_t *r)
{
    memset (r, 0, sizeof *r);
    char path[600];
    harness_path (path, sizeof path, name);
    char *text = harness_read_file (path);
    if (!text)
        return false;
    bool ok = true;
    char *save = NULL;
    for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        r->lines++;
        long long task = -1;
        char exec[32] = "";
        if (!harness_json_int (line, "task", &task) || task < 0 || task >= FT_MAX_TASKS
            || !harness_json_get (line, "execution", exec, sizeof exec)) {
            snprintf (r->bad, sizeof r->bad, "%.200s", line);
            ok = false;
            continue;
        }
        r->count[task]++;
        harness_json_get (line, "status", r->status[task], sizeof r->status[task]);
        if (!harness_json_get (line, "output", r->output[task], sizeof r->output[task]))
            r->output[task][0] = 0;
        harness_json_get (line, "engine", r->engine[task], sizeof r->engine[task]);
        r->exec[task] = strtoull (exec, NULL, 10);
    }
    free (text);
    return ok;
}

// Checks that tasks 0..n-1 each appear exactly once with status ok and
// nothing else appears. Fails the test otherwise.
static inline void
ft_assert_each_once (const ft_results_t *r, int n)
{
    HARNESS_ASSERT (!r->bad[0], "driver printed a line that is not a result: %s", r->bad);
    for (int i = 0; i < n; i++) {
        HARNESS_ASSERT (r->count[i] == 1, "task %d delivered %d times (expected once)", i,
                        r->count[i]);
        HARNESS_ASSERT (strcmp (r->status[i], "ok") == 0, "task %d status is '%s'", i,
                        r->status[i]);
    }
    HARNESS_ASSERT (r->lines == n, "driver printed %d results for %d tasks", r->lines, n);
}

// ------------------------------------------------------------ processes

// Reads /proc/<pid>/stat: parent pid and state letter. False if gone.
static inline bool
ft_proc_stat (pid_t pid, pid_t *ppid, char *state)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    char *text = harness_read_file (path);
    if (!text)
        return false;
    // pid (comm) state ppid ...: comm may hold spaces, so start after ')'.
    const char *p = strrchr (text, ')');
    int parent = 0;
    char st = '?';
    bool ok = p && sscanf (p + 1, " %c %d", &st, &parent) == 2;
    free (text);
    if (ok) {
        *ppid = parent;
        *state = st;
    }
    return ok;
}

// True when pid exists, is not a zombie, and has ancestor among its parents.
static inline bool
ft_proc_descends (pid_t pid, pid_t ancestor)
{
    pid_t p = pid, parent = 0;
    char state = '?';
    if (!ft_proc_stat (pid, &parent, &state) || state == 'Z')
        return false;
    for (int depth = 0; depth < 16 && p > 1; depth++) {
        if (!ft_proc_stat (p, &parent, &state))
            return false;
        if (parent == ancestor)
            return true;
        p = parent;
    }
    return false;
}

// The /proc/<pid>/cmdline with NULs turned into spaces (caller frees).
static inline char *
ft_proc_cmdline (pid_t pid)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/cmdline", (int) pid);
    FILE *f = fopen (path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc (1, 4096);
    size_t n = buf ? fread (buf, 1, 4095, f) : 0;
    fclose (f);
    for (size_t i = 0; buf && n && i < n - 1; i++)
        if (buf[i] == 0)
            buf[i] = ' ';
    return buf;
}

// Collects the live (not zombie) processes whose command line is exactly
// cmdline and that descend from ancestor (0: any). Returns how many (at
// most max pids are stored).
static inline int
ft_find_procs (const char *cmdline, pid_t ancestor, pid_t *pids, int max)
{
    DIR *dir = opendir ("/proc");
    if (!dir)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir (dir))) {
        if (!isdigit ((unsigned char) e->d_name[0]))
            continue;
        pid_t pid = (pid_t) atoi (e->d_name);
        char *cmd = ft_proc_cmdline (pid);
        bool match = cmd && strcmp (cmd, cmdline) == 0;
        free (cmd);
        if (!match)
            continue;
        pid_t parent;
        char state;
        if (!ft_proc_stat (pid, &parent, &state) || state == 'Z')
            continue;
        if (ancestor && !ft_proc_descends (pid, ancestor))
            continue;
        if (n < max)
            pids[n] = pid;
        n++;
    }
    closedir (dir);
    return n;
}

// True while pid still runs cmdline (not a zombie, not reused).
static inline bool
ft_proc_runs (pid_t pid, const char *cmdline)
{
    pid_t parent;
    char state;
    if (!ft_proc_stat (pid, &parent, &state) || state == 'Z')
        return false;
    char *cmd = ft_proc_cmdline (pid);
    bool same = cmd && strcmp (cmd, cmdline) == 0;
    free (cmd);
    return same;
}

#endif
