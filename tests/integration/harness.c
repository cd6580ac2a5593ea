/*  harness.c — processes, ports, temp dirs, polling and JSON for integration tests.
    See harness.h.
*/
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef KEEL_BIN_DIR
#error "KEEL_BIN_DIR must name the directory holding the Keel programs"
#endif

#define LOG_TAIL_LINES 40
#define POLL_STEP_MS   20

typedef struct {
    pid_t pid;
    char name[64];
    bool reaped;
    int code;
} s_proc_t;

// The test's world: one test per process under Criterion.
static char s_dir[256];
static s_proc_t s_procs[HARNESS_MAX_PROCS];
static int s_nprocs;
static int s_ports[256];
static int s_nports;
static int s_runs;
static bool s_atexit_set;

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_pause_ms (int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    while (nanosleep (&ts, &ts) != 0 && errno == EINTR) {
    }
}

static s_proc_t *
s_find (pid_t pid)
{
    for (int i = 0; i < s_nprocs; i++)
        if (s_procs[i].pid == pid)
            return &s_procs[i];
    return NULL;
}

static int
s_decode_status (int status)
{
    if (WIFEXITED (status))
        return WEXITSTATUS (status);
    if (WIFSIGNALED (status))
        return 128 + WTERMSIG (status);
    return -1;
}

// Reaps pid if it has exited. Returns true when it is gone.
static bool
s_try_reap (pid_t pid)
{
    s_proc_t *p = s_find (pid);
    if (p && p->reaped)
        return true;
    int status = 0;
    pid_t r = waitpid (pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
        if (p) {
            p->reaped = true;
            p->code = r == pid ? s_decode_status (status) : -1;
        }
        return true;
    }
    return false;
}

// ------------------------------------------------------------ lifecycle

static int
s_rm_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    remove (path);
    return 0;
}

static void
s_kill_all (void)
{
    for (int i = 0; i < s_nprocs; i++)
        if (!s_procs[i].reaped && s_procs[i].pid > 0)
            harness_stop (s_procs[i].pid, 3000);
}

void
harness_setup (void)
{
    const char *base = getenv ("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf (s_dir, sizeof s_dir, "%s/keel-it-XXXXXX", base);
    cr_assert_not_null (mkdtemp (s_dir), "cannot create a temp dir under %s", base);
    s_nprocs = 0;
    s_nports = 0;
    s_runs = 0;
    harness_curve_setup (s_dir);
    if (!s_atexit_set) {
        atexit (s_kill_all);
        s_atexit_set = true;
    }
}

// True when a daemon's stderr holds a sanitizer report; prints the log.
static bool
s_sanitizer_reported (void)
{
    static const char *markers[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                     "runtime error:", NULL };
    bool found = false;
    for (int i = 0; i < s_nprocs; i++) {
        char path[512], file[128];
        snprintf (file, sizeof file, "%s.err", s_procs[i].name);
        char *text = harness_read_file (harness_path (path, sizeof path, file));
        for (int m = 0; text && markers[m]; m++) {
            if (strstr (text, markers[m])) {
                fprintf (stderr, "----- sanitizer report in %s -----\n%s\n", path, text);
                found = true;
                break;
            }
        }
        free (text);
    }
    return found;
}

void
harness_teardown (void)
{
    s_kill_all ();
    // Criterion ignores assertions in .fini; a crash there fails the run.
    bool sanitizer = s_sanitizer_reported ();
    s_nprocs = 0;
    if (s_dir[0] && !getenv ("KEEL_TEST_KEEP"))
        nftw (s_dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else if (s_dir[0])
        fprintf (stderr, "harness: kept %s\n", s_dir);
    s_dir[0] = '\0';
    if (sanitizer)
        abort ();
}

const char *
harness_dir (void)
{
    return s_dir;
}

char *
harness_path (char *buf, size_t size, const char *name)
{
    snprintf (buf, size, "%s/%s", s_dir, name);
    return buf;
}

int
harness_free_port (void)
{
    // Ports below the kernel's ephemeral range (32768 and up here), so an
    // outgoing connection of any process cannot take the port between this
    // check and the broker's bind; spread by pid so the test executables
    // ctest runs in parallel do not walk the same candidates. Bounded.
    static unsigned next;
    if (next == 0)
        next = (unsigned) getpid () * 7919u + (unsigned) time (NULL);
    for (int attempt = 0; attempt < 200; attempt++) {
        int port = 20000 + (int) (next++ * 131u % 12000u);
        bool used = false;
        for (int i = 0; i < s_nports; i++)
            used = used || s_ports[i] == port;
        if (used)
            continue;
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return 0;
        struct sockaddr_in addr;
        memset (&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        addr.sin_port = htons ((uint16_t) port);
        bool free_now = bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0;
        close (fd);
        if (!free_now)
            continue;
        if (s_nports < (int) (sizeof s_ports / sizeof s_ports[0]))
            s_ports[s_nports++] = port;
        return port;
    }
    return 0;
}

// ------------------------------------------------------------ processes

static pid_t
s_spawn (const char *program, const char *const argv[], const char *out_path, const char *err_path)
{
    char path[1024];
    if (strchr (program, '/'))
        snprintf (path, sizeof path, "%s", program);
    else
        snprintf (path, sizeof path, "%s/%s", KEEL_BIN_DIR, program);

    const char *args[128];
    int n = 0;
    args[n++] = path;
    for (int i = 0; argv && argv[i] && n < 127; i++)
        args[n++] = argv[i];
    args[n] = NULL;

    fflush (stdout);
    fflush (stderr);
    char **envp = harness_curve_env (path); // built before the fork
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (getppid () != parent)
            _exit (127);
        int out = open (out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int err = open (err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int in = open ("/dev/null", O_RDONLY);
        if (out < 0 || err < 0 || in < 0)
            _exit (127);
        dup2 (in, 0);
        dup2 (out, 1);
        dup2 (err, 2);
        close (in);
        close (out);
        close (err);
        // Daemons start in their own process group so a terminal ^C reaches
        // only the test, which then stops them by pid.
        setpgid (0, 0);
        execve (path, (char *const *) args, envp);
        dprintf (2, "harness: cannot run %s: %s\n", path, strerror (errno));
        _exit (127);
    }
    return pid;
}

pid_t
harness_spawn (const char *name, const char *program, const char *const argv[])
{
    if (s_nprocs >= HARNESS_MAX_PROCS)
        return -1;
    char out_path[512], err_path[512], file[128];
    snprintf (file, sizeof file, "%s.out", name);
    harness_path (out_path, sizeof out_path, file);
    snprintf (file, sizeof file, "%s.err", name);
    harness_path (err_path, sizeof err_path, file);
    pid_t pid = s_spawn (program, argv, out_path, err_path);
    if (pid > 0) {
        s_proc_t *p = &s_procs[s_nprocs++];
        memset (p, 0, sizeof *p);
        p->pid = pid;
        snprintf (p->name, sizeof p->name, "%s", name);
    }
    return pid;
}

void
harness_signal (pid_t pid, int sig)
{
    if (pid > 0 && s_find (pid) && !s_try_reap (pid))
        kill (pid, sig);
}

bool
harness_wait_exit (pid_t pid, int timeout_ms, int *code)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    while (true) {
        if (s_try_reap (pid)) {
            s_proc_t *p = s_find (pid);
            if (code)
                *code = p ? p->code : -1;
            return true;
        }
        if (s_now_ms () >= deadline)
            return false;
        s_pause_ms (5);
    }
}

bool
harness_alive (pid_t pid)
{
    return !s_try_reap (pid);
}

bool
harness_kill9 (pid_t pid)
{
    harness_signal (pid, SIGKILL);
    return harness_wait_exit (pid, 5000, NULL);
}

int
harness_stop (pid_t pid, int timeout_ms)
{
    int code = -1;
    if (s_try_reap (pid)) {
        s_proc_t *p = s_find (pid);
        return p ? p->code : -1;
    }
    kill (pid, SIGTERM);
    kill (pid, SIGCONT); // a stopped process cannot act on SIGTERM
    if (harness_wait_exit (pid, timeout_ms, &code))
        return code;
    kill (pid, SIGKILL);
    if (harness_wait_exit (pid, 5000, &code))
        return code;
    return -1;
}

int
harness_run (harness_result_t *res, int timeout_ms, const char *program, const char *const argv[])
{
    memset (res, 0, sizeof *res);
    char out_path[512], err_path[512], file[128];
    int run = s_runs++;
    snprintf (file, sizeof file, "run-%03d.out", run);
    harness_path (out_path, sizeof out_path, file);
    snprintf (file, sizeof file, "run-%03d.err", run);
    harness_path (err_path, sizeof err_path, file);

    int64_t start = s_now_ms ();
    pid_t pid = s_spawn (program, argv, out_path, err_path);
    res->code = -1;
    if (pid > 0) {
        int64_t deadline = start + timeout_ms;
        int status = 0;
        bool done = false;
        while (!done) {
            pid_t r = waitpid (pid, &status, WNOHANG);
            if (r == pid) {
                res->code = s_decode_status (status);
                done = true;
            }
            else if (r < 0) {
                done = true;
            }
            else if (s_now_ms () >= deadline) {
                kill (pid, SIGKILL);
                waitpid (pid, &status, 0);
                res->code = -1;
                done = true;
            }
            else
                s_pause_ms (5);
        }
    }
    res->elapsed_ms = s_now_ms () - start;
    res->out = harness_read_file (out_path);
    res->err = harness_read_file (err_path);
    if (!res->out)
        res->out = strdup ("");
    if (!res->err)
        res->err = strdup ("");
    remove (out_path);
    remove (err_path);
    return res->code;
}

void
harness_result_free (harness_result_t *res)
{
    free (res->out);
    free (res->err);
    res->out = res->err = NULL;
}

// ------------------------------------------------------------ files, polling

char *
harness_read_file (const char *path)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc (cap);
    while (buf) {
        size_t n = fread (buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (len + 1 >= cap) {
            char *bigger = realloc (buf, cap * 2);
            if (!bigger) {
                free (buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose (f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

char *
harness_write_file (char *buf, size_t size, const char *name, const char *text)
{
    harness_path (buf, size, name);
    FILE *f = fopen (buf, "w");
    cr_assert_not_null (f, "cannot write %s", buf);
    fputs (text, f);
    fclose (f);
    return buf;
}

long
harness_count_lines (const char *path)
{
    FILE *f = fopen (path, "rb");
    if (!f)
        return 0;
    long lines = 0;
    char chunk[65536];
    size_t n;
    while ((n = fread (chunk, 1, sizeof chunk, f)) > 0)
        for (size_t i = 0; i < n; i++)
            lines += chunk[i] == '\n';
    fclose (f);
    return lines;
}

bool
harness_poll_until (harness_cond_fn *fn, void *arg, int timeout_ms)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    while (true) {
        if (fn (arg))
            return true;
        if (s_now_ms () >= deadline)
            return false;
        s_pause_ms (POLL_STEP_MS);
    }
}

static void
s_print_tail (const char *path)
{
    char *text = harness_read_file (path);
    if (!text || !*text) {
        free (text);
        return;
    }
    size_t len = strlen (text);
    const char *start = text + len;
    int lines = 0;
    while (start > text && lines <= LOG_TAIL_LINES) {
        start--;
        if (*start == '\n')
            lines++;
    }
    if (*start == '\n')
        start++;
    fprintf (stderr, "----- %s (last %d lines) -----\n%s%s", path, LOG_TAIL_LINES, start,
             text[len - 1] == '\n' ? "" : "\n");
    free (text);
}

void
harness_dump_logs (void)
{
    for (int i = 0; i < s_nprocs; i++) {
        char path[512], file[128];
        snprintf (file, sizeof file, "%s.err", s_procs[i].name);
        s_print_tail (harness_path (path, sizeof path, file));
        snprintf (file, sizeof file, "%s.out", s_procs[i].name);
        s_print_tail (harness_path (path, sizeof path, file));
    }
}

// ------------------------------------------------------------ Keel helpers

static bool
s_status_answers (void *arg)
{
    harness_result_t res;
    int code = harness_admin ((const harness_broker_t *) arg, &res, true, "status", NULL);
    harness_result_free (&res);
    return code == 0;
}

bool
harness_broker_start (harness_broker_t *b, const char *name, const char *const sets[])
{
    memset (b, 0, sizeof *b);
    snprintf (b->name, sizeof b->name, "%s", name);
    b->port = harness_free_port ();
    b->admin_port = harness_free_port ();
    if (!b->port || !b->admin_port)
        return false;
    snprintf (b->endpoint, sizeof b->endpoint, "tcp://127.0.0.1:%d", b->port);
    snprintf (b->admin_endpoint, sizeof b->admin_endpoint, "tcp://127.0.0.1:%d", b->admin_port);
    snprintf (b->store, sizeof b->store, "sqlite:%s/%s.db", s_dir, name);

    char endpoint[96], admin[96], store[600], bname[64];
    snprintf (endpoint, sizeof endpoint, "Endpoint=%s", b->endpoint);
    snprintf (admin, sizeof admin, "AdminEndpoint=%s", b->admin_endpoint);
    snprintf (store, sizeof store, "Store=%s", b->store);
    snprintf (bname, sizeof bname, "Name=%s", name);
    const char *argv[64];
    int n = 0;
    argv[n++] = "--set";
    argv[n++] = endpoint;
    argv[n++] = "--set";
    argv[n++] = admin;
    argv[n++] = "--set";
    argv[n++] = store;
    argv[n++] = "--set";
    argv[n++] = bname;
    for (int i = 0; sets && sets[i] && n < 62; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
        if (strncmp (sets[i], "Store=", 6) == 0) // the last --set wins, here as in keel-broker
            snprintf (b->store, sizeof b->store, "%s", sets[i] + 6);
    }
    argv[n] = NULL;
    b->pid = harness_spawn (name, "keel-broker", argv);
    if (b->pid <= 0)
        return false;
    // Bounded: each status attempt waits at most 3 s; the whole wait 15 s.
    int64_t deadline = s_now_ms () + 15000;
    while (s_now_ms () < deadline) {
        if (!harness_alive (b->pid))
            return false;
        if (s_status_answers (b))
            return true;
        s_pause_ms (50);
    }
    return false;
}

typedef struct {
    char path[512];
    const char *text;
    int times;
} s_log_wait_t;

static bool
s_log_has (void *arg)
{
    s_log_wait_t *w = arg;
    char *text = harness_read_file (w->path);
    int n = 0;
    for (const char *p = text ? strstr (text, w->text) : NULL; p; p = strstr (p + 1, w->text))
        n++;
    free (text);
    return n >= (w->times > 0 ? w->times : 1);
}

bool
harness_wait_log (const char *name, const char *text, int times, int timeout_ms)
{
    s_log_wait_t w = { "", text, times };
    harness_path (w.path, sizeof w.path, name);
    return harness_poll_until (s_log_has, &w, timeout_ms);
}

bool
harness_broker_restart (harness_broker_t *b, const char *const sets[])
{
    char endpoint[96], admin[96], store[600], name[64];
    snprintf (endpoint, sizeof endpoint, "Endpoint=%s", b->endpoint);
    snprintf (admin, sizeof admin, "AdminEndpoint=%s", b->admin_endpoint);
    snprintf (store, sizeof store, "Store=%s", b->store);
    snprintf (name, sizeof name, "Name=%s", b->name);
    const char *argv[64] = { "--set", endpoint, "--set", admin, "--set", store, "--set", name };
    int n = 8;
    for (int i = 0; sets && sets[i] && n < 62; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    argv[n] = NULL;
    b->pid = harness_spawn (b->name, "keel-broker", argv);
    if (b->pid <= 0)
        return false;
    for (int i = 0; i < 300; i++) { // 300 x (status answer or 50 ms) >= 15 s
        if (!harness_alive (b->pid))
            return false;
        harness_result_t res;
        int code = harness_admin (b, &res, true, "status", NULL);
        harness_result_free (&res);
        if (code == 0)
            return true;
        s_pause_ms (50);
    }
    return false;
}

pid_t
harness_engine_start (const harness_broker_t *b, const char *name, int slots,
                      const char *const sets[])
{
    char state[512], state_dir[600], brokers[96], slots_set[32], file[128];
    snprintf (file, sizeof file, "%s.state", name);
    harness_path (state, sizeof state, file);
    mkdir (state, 0755);
    snprintf (state_dir, sizeof state_dir, "StateDir=%s", state);
    snprintf (brokers, sizeof brokers, "Brokers=%s", b->endpoint);
    snprintf (slots_set, sizeof slots_set, "Slots=%d", slots);
    const char *argv[64];
    int n = 0;
    argv[n++] = "--set";
    argv[n++] = brokers;
    argv[n++] = "--set";
    argv[n++] = slots_set;
    argv[n++] = "--set";
    argv[n++] = state_dir;
    for (int i = 0; sets && sets[i] && n < 62; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    argv[n] = NULL;
    return harness_spawn (name, "keel-engine", argv);
}

int
harness_admin (const harness_broker_t *b, harness_result_t *res, bool json, ...)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = "-e";
    argv[n++] = b->admin_endpoint;
    argv[n++] = "--timeout";
    argv[n++] = "3s";
    if (json)
        argv[n++] = "--json";
    va_list ap;
    va_start (ap, json);
    const char *arg;
    while ((arg = va_arg (ap, const char *)) != NULL && n < 31)
        argv[n++] = arg;
    va_end (ap);
    argv[n] = NULL;
    return harness_run (res, 10000, "keel-admin", argv);
}

bool
harness_status_int (const harness_broker_t *b, const char *path, long long *value)
{
    harness_result_t res;
    bool ok = harness_admin (b, &res, true, "status", NULL) == 0
              && harness_json_int (res.out, path, value);
    harness_result_free (&res);
    return ok;
}

typedef struct {
    const harness_broker_t *b;
    const char *path;
    long long n;
} s_status_wait_t;

static bool
s_status_at_least (void *arg)
{
    s_status_wait_t *w = arg;
    long long value = 0;
    return harness_status_int (w->b, w->path, &value) && value >= w->n;
}

bool
harness_wait_status (const harness_broker_t *b, const char *path, long long n, int timeout_ms)
{
    s_status_wait_t w = { b, path, n };
    return harness_poll_until (s_status_at_least, &w, timeout_ms);
}

bool
harness_wait_engines (const harness_broker_t *b, long long n, int timeout_ms)
{
    return harness_wait_status (b, "engines.online", n, timeout_ms);
}

// ------------------------------------------------------------ JSON

static const char *
s_skip_ws (const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

// Returns the character after the string starting at p (which is '"'), or NULL.
static const char *
s_skip_string (const char *p)
{
    p++;
    while (*p && *p != '"') {
        if (*p == '\\' && p[1])
            p++;
        p++;
    }
    return *p == '"' ? p + 1 : NULL;
}

// Returns the character after the value starting at p, or NULL.
static const char *
s_skip_value (const char *p, int depth)
{
    if (depth > 64)
        return NULL;
    p = s_skip_ws (p);
    if (*p == '"')
        return s_skip_string (p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = s_skip_ws (p + 1);
        if (*p == close)
            return p + 1;
        while (*p) {
            if (close == '}') {
                if (*p != '"')
                    return NULL;
                p = s_skip_string (p);
                if (!p)
                    return NULL;
                p = s_skip_ws (p);
                if (*p != ':')
                    return NULL;
                p++;
            }
            p = s_skip_value (p, depth + 1);
            if (!p)
                return NULL;
            p = s_skip_ws (p);
            if (*p == ',')
                p = s_skip_ws (p + 1);
            else if (*p == close)
                return p + 1;
            else
                return NULL;
        }
        return NULL;
    }
    const char *start = p;
    while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\r'
           && *p != '\t')
        p++;
    return p > start ? p : NULL;
}

// Finds key (length klen) in the object at p; returns the start of its value.
static const char *
s_find_key (const char *p, const char *key, size_t klen)
{
    p = s_skip_ws (p);
    if (*p != '{')
        return NULL;
    p = s_skip_ws (p + 1);
    while (*p == '"') {
        const char *kstart = p + 1;
        const char *kend = s_skip_string (p);
        if (!kend)
            return NULL;
        bool match = (size_t) (kend - 1 - kstart) == klen && memcmp (kstart, key, klen) == 0;
        p = s_skip_ws (kend);
        if (*p != ':')
            return NULL;
        p = s_skip_ws (p + 1);
        if (match)
            return p;
        p = s_skip_value (p, 0);
        if (!p)
            return NULL;
        p = s_skip_ws (p);
        if (*p != ',')
            return NULL;
        p = s_skip_ws (p + 1);
    }
    return NULL;
}

bool
harness_json_get (const char *json, const char *path, char *out, size_t size)
{
    if (!json || !path || size == 0)
        return false;
    const char *p = json;
    const char *seg = path;
    while (true) {
        const char *dot = strchr (seg, '.');
        size_t klen = dot ? (size_t) (dot - seg) : strlen (seg);
        p = s_find_key (p, seg, klen);
        if (!p)
            return false;
        if (!dot)
            break;
        seg = dot + 1;
    }
    const char *end = s_skip_value (p, 0);
    if (!end)
        return false;
    size_t n = 0;
    if (*p == '"') {
        for (const char *c = p + 1; c < end - 1 && n + 1 < size; c++) {
            char ch = *c;
            if (ch == '\\' && c + 1 < end - 1) {
                c++;
                switch (*c) {
                    case 'n':
                        ch = '\n';
                        break;
                    case 't':
                        ch = '\t';
                        break;
                    case 'r':
                        ch = '\r';
                        break;
                    case 'b':
                        ch = '\b';
                        break;
                    case 'f':
                        ch = '\f';
                        break;
                    default:
                        ch = *c;
                        break;
                }
            }
            out[n++] = ch;
        }
    }
    else {
        n = (size_t) (end - p);
        if (n >= size)
            n = size - 1;
        memcpy (out, p, n);
    }
    out[n] = '\0';
    return true;
}

bool
harness_json_int (const char *json, const char *path, long long *value)
{
    char buf[64];
    if (!harness_json_get (json, path, buf, sizeof buf))
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll (buf, &end, 10);
    if (errno || end == buf || *end != '\0')
        return false;
    *value = v;
    return true;
}

void
harness_assert_each_once (const char *name, long tasks, const char *output)
{
    char path[512];
    char *text = harness_read_file (harness_path (path, sizeof path, name));
    HARNESS_ASSERT (text, "no output in %s", name);
    unsigned char *seen = calloc ((size_t) tasks, 1);
    cr_assert_not_null (seen);
    bool doubled = output && strcmp (output, "2*id") == 0;
    long lines = 0;
    char *save = NULL;
    for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        lines++;
        long long task = -1;
        char status[32] = "", out[64] = "";
        HARNESS_ASSERT (harness_json_int (line, "task", &task) && task >= 0 && task < tasks,
                        "%s: bad task id: %s", name, line);
        HARNESS_ASSERT (!seen[task], "%s: task %lld delivered twice: %s", name, task, line);
        seen[task] = 1;
        HARNESS_ASSERT (harness_json_get (line, "status", status, sizeof status)
                            && strcmp (status, "ok") == 0,
                        "%s: task %lld not ok: %s", name, task, line);
        if (!output)
            continue;
        HARNESS_ASSERT (harness_json_get (line, "output", out, sizeof out), "%s: no output: %s",
                        name, line);
        if (doubled)
            HARNESS_ASSERT (strtoll (out, NULL, 10) == 2 * task,
                            "%s: task %lld: output is not %lld: %s", name, task, 2 * task, line);
        else
            HARNESS_ASSERT (strcmp (out, output) == 0, "%s: task %lld: output is not %s: %s", name,
                            task, output, line);
    }
    for (long i = 0; i < tasks; i++)
        HARNESS_ASSERT (seen[i], "%s: task %ld has no result", name, i);
    HARNESS_ASSERT (lines == tasks, "%s: %ld lines for %ld tasks", name, lines, tasks);
    free (seen);
    free (text);
}
