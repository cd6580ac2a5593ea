/*  worker.c — the runner's worker process: reads requests, runs tasks. */
#include "worker.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "builtin.h"
#include "library.h"

#define S_SOCK_FD 3

uint32_t
keel_worker_get32 (const uint8_t *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3];
}

uint64_t
keel_worker_get64 (const uint8_t *p)
{
    return ((uint64_t) keel_worker_get32 (p) << 32) | keel_worker_get32 (p + 4);
}

static void
s_put32 (uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) (v >> 24);
    p[1] = (uint8_t) (v >> 16);
    p[2] = (uint8_t) (v >> 8);
    p[3] = (uint8_t) v;
}

static void
s_put64 (uint8_t *p, uint64_t v)
{
    s_put32 (p, (uint32_t) (v >> 32));
    s_put32 (p + 4, (uint32_t) v);
}

bool
keel_worker_write_all (int fd, const uint8_t *buf, size_t size)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = write (fd, buf + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        done += (size_t) n;
    }
    return true;
}

static bool
s_read_all (int fd, uint8_t *buf, size_t size)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = read (fd, buf + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        done += (size_t) n;
    }
    return true;
}

uint8_t *
keel_worker_request_encode (const keel_worker_request_t *req, size_t *frame_size)
{
    size_t lens[6] = { strlen (req->type),
                       req->target ? strlen (req->target) : 0,
                       req->service_id ? strlen (req->service_id) : 0,
                       req->input_size,
                       req->has_memory ? req->memory_size : 0,
                       req->init_data ? req->init_size : 0 };
    const void *parts[6] = { req->type,  req->target, req->service_id,
                             req->input, req->memory, req->init_data };
    size_t payload = KEEL_WORKER_HEADER;
    for (int i = 0; i < 6; i++) {
        if (lens[i] > UINT32_MAX - 1 || payload + lens[i] > KEEL_WORKER_FRAME_MAX)
            return NULL;
        payload += lens[i];
    }
    uint8_t *buf = malloc (4 + payload);
    if (!buf)
        return NULL;
    s_put32 (buf, (uint32_t) payload);
    s_put64 (buf + 4, req->execution_id);
    s_put64 (buf + 12, req->task_id);
    buf[20] = (uint8_t) req->kind;
    buf[21] = req->has_memory ? 1 : 0;
    buf[22] = buf[23] = 0;
    uint8_t *p = buf + 24;
    for (int i = 0; i < 6; i++, p += 4)
        s_put32 (p, (uint32_t) lens[i]);
    for (int i = 0; i < 6; i++) {
        if (lens[i])
            memcpy (p, parts[i], lens[i]);
        p += lens[i];
    }
    *frame_size = 4 + payload;
    return buf;
}

void
keel_worker_scratch_dir (pid_t pid, char *buf, size_t size)
{
    const char *tmp = getenv ("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf (buf, size, "%s/keel-worker-%ld", tmp, (long) pid);
}

//  Removes the files in dir (bounded), keeping dir.
static void
s_scratch_clean (const char *dir)
{
    DIR *d = opendir (dir);
    if (!d)
        return;
    struct dirent *ent;
    //  A command may leave files behind; at most this many are removed.
    for (int i = 0; i < 4096 && (ent = readdir (d)); i++)
        if (strcmp (ent->d_name, ".") != 0 && strcmp (ent->d_name, "..") != 0)
            unlinkat (dirfd (d), ent->d_name, 0);
    closedir (d);
}

void
keel_worker_scratch_remove (pid_t pid)
{
    char dir[512];
    keel_worker_scratch_dir (pid, dir, sizeof dir);
    s_scratch_clean (dir);
    rmdir (dir);
}

//  The running task's cancel flag, raised by SIGUSR1 (see keel_worker_main).
static volatile sig_atomic_t s_cancel_flag;

static void
s_on_sigusr1 (int sig)
{
    (void) sig;
    s_cancel_flag = 1;
}

//  Writes one response frame. Returns false when the engine is gone.
static bool
s_send_frame (int fd, uint64_t execution_id, int what, const uint8_t *data, size_t size)
{
    uint8_t head[13];
    s_put32 (head, (uint32_t) (9 + size));
    s_put64 (head + 4, execution_id);
    head[12] = (uint8_t) what;
    return keel_worker_write_all (fd, head, sizeof head)
           && (size == 0 || keel_worker_write_all (fd, data, size));
}

//  Sends the result frame (a failure marked permanent when permanent);
//  exits the worker if the engine is gone.
static void
s_respond_as (int fd, uint64_t execution_id, bool ok, bool permanent, const uint8_t *data,
              size_t size)
{
    int what = ok          ? KEEL_WORKER_OUTPUT
               : permanent ? KEEL_WORKER_ERROR_PERMANENT
                           : KEEL_WORKER_ERROR;
    if (!s_send_frame (fd, execution_id, what, data, size))
        _exit (0);
}

static void
s_respond (int fd, uint64_t execution_id, bool ok, const uint8_t *data, size_t size)
{
    s_respond_as (fd, execution_id, ok, false, data, size);
}

static void
s_respond_text (int fd, uint64_t execution_id, bool ok, const char *text)
{
    s_respond (fd, execution_id, ok, (const uint8_t *) text, strlen (text));
}

// ------------------------------------------------------------ task context

//  The engine side of keel_svc_task_t inside a worker.
typedef struct {
    keel_svc_task_t pub;
    int sock;
    size_t max_output;
    uint8_t *out;
    size_t out_size;
    bool packing; // the output is in sbuf
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    char error[1024];
} s_ctx_t;

static int
s_api_checkpoint (keel_svc_task_t *task, const void *data, size_t size)
{
    s_ctx_t *ctx = task->engine;
    if (size > ctx->max_output || (size && !data))
        return -1;
    if (!s_send_frame (ctx->sock, task->execution_id, KEEL_WORKER_CHECKPOINT, data, size))
        _exit (0);
    return 0;
}

static int
s_api_output (keel_svc_task_t *task, const void *data, size_t size)
{
    s_ctx_t *ctx = task->engine;
    uint8_t *copy = malloc (size ? size : 1);
    if (!copy || (size && !data)) {
        free (copy);
        return -1;
    }
    if (size)
        memcpy (copy, data, size);
    free (ctx->out);
    ctx->out = copy;
    ctx->out_size = size;
    ctx->packing = false;
    return 0;
}

static void
s_api_error (keel_svc_task_t *task, const char *text)
{
    s_ctx_t *ctx = task->engine;
    snprintf (ctx->error, sizeof ctx->error, "%s", text ? text : "");
}

static msgpack_packer *
s_api_packer (keel_svc_task_t *task)
{
    s_ctx_t *ctx = task->engine;
    if (!ctx->packing) {
        msgpack_sbuffer_clear (&ctx->sbuf);
        ctx->packing = true;
    }
    return &ctx->pk;
}

static const keel_svc_api_t s_api = { s_api_checkpoint, s_api_output, s_api_error, s_api_packer };

static void
s_ctx_init (s_ctx_t *ctx, int sock, size_t max_output, const keel_worker_request_t *req)
{
    memset (ctx, 0, sizeof *ctx);
    ctx->sock = sock;
    ctx->max_output = max_output;
    msgpack_sbuffer_init (&ctx->sbuf);
    msgpack_packer_init (&ctx->pk, &ctx->sbuf, msgpack_sbuffer_write);
    keel_svc_task_t *t = &ctx->pub;
    t->abi = KEEL_SERVICE_ABI;
    t->service_type = req->type;
    t->service_id = req->service_id;
    t->task_id = req->task_id;
    t->execution_id = req->execution_id;
    t->input = req->input;
    t->input_size = req->input_size;
    t->args.type = MSGPACK_OBJECT_NIL;
    t->init_data = req->init_size ? req->init_data : NULL;
    t->init_data_size = req->init_size;
    t->memory = req->has_memory ? req->memory : NULL;
    t->memory_size = req->has_memory ? req->memory_size : 0;
    t->has_memory = req->has_memory ? 1 : 0;
    t->cancel_flag = &s_cancel_flag;
    t->api = &s_api;
    t->engine = ctx;
}

static void
s_ctx_fini (s_ctx_t *ctx)
{
    free (ctx->out);
    msgpack_sbuffer_destroy (&ctx->sbuf);
}

//  The command's child: stdin/stdout/stderr on the pipes, nothing else open.
static void __attribute__ ((noreturn))
s_exec_child (const char *command, const char *checkpoint, int in_fd, int out_fd, int err_fd)
{
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (checkpoint)
        setenv ("KEEL_CHECKPOINT", checkpoint, 1);
    else
        unsetenv ("KEEL_CHECKPOINT");
    if (dup2 (in_fd, 0) < 0 || dup2 (out_fd, 1) < 0 || dup2 (err_fd, 2) < 0)
        _exit (127);
    close_range (3, ~0U, 0);
    execl ("/bin/sh", "sh", "-c", command, (char *) NULL);
    _exit (127);
}

typedef struct {
    uint8_t *out;
    size_t out_size, out_cap, max_output;
    bool too_large;
    char tail[KEEL_WORKER_STDERR_TAIL]; // ring of the last stderr bytes
    size_t tail_total;
} s_capture_t;

static void
s_capture_stdout (s_capture_t *c, const uint8_t *data, size_t n)
{
    if (c->too_large)
        return;
    if (c->out_size + n > c->max_output) {
        c->too_large = true;
        return;
    }
    if (c->out_size + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_size + n)
            cap *= 2;
        uint8_t *grown = realloc (c->out, cap);
        if (!grown) {
            c->too_large = true;
            return;
        }
        c->out = grown;
        c->out_cap = cap;
    }
    memcpy (c->out + c->out_size, data, n);
    c->out_size += n;
}

static void
s_capture_stderr (s_capture_t *c, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        c->tail[(c->tail_total + i) % KEEL_WORKER_STDERR_TAIL] = (char) data[i];
    c->tail_total += n;
}

//  The stderr tail in order, as text, trailing white space trimmed.
static void
s_stderr_tail (const s_capture_t *c, char *buf, size_t bufsize)
{
    size_t n = c->tail_total < KEEL_WORKER_STDERR_TAIL ? c->tail_total : KEEL_WORKER_STDERR_TAIL;
    if (n > bufsize - 1)
        n = bufsize - 1;
    size_t start = c->tail_total - n;
    for (size_t i = 0; i < n; i++) {
        char ch = c->tail[(start + i) % KEEL_WORKER_STDERR_TAIL];
        buf[i] = ch == 0 ? '?' : ch;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\r'))
        n--;
    buf[n] = 0;
}

// ------------------------------------------------------------ command checkpoints

//  The $KEEL_CHECKPOINT file of a running command and what was last seen of it.
typedef struct {
    char path[600];
    bool seen_any;
    struct stat seen;
    int64_t checked_at;
} s_watch_t;

static int64_t
s_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Makes an empty scratch dir holding the task's memory, if any, as the
//  checkpoint file. Returns false with error filled.
static bool
s_watch_prepare (s_watch_t *w, const keel_worker_request_t *req, char *error, size_t error_size)
{
    char dir[512];
    keel_worker_scratch_dir (getpid (), dir, sizeof dir);
    if (mkdir (dir, 0700) != 0) {
        struct stat st;
        if (errno != EEXIST || lstat (dir, &st) != 0 || !S_ISDIR (st.st_mode)
            || st.st_uid != getuid ()) {
            snprintf (error, error_size, "cannot create the checkpoint directory %s", dir);
            return false;
        }
    }
    s_scratch_clean (dir);
    snprintf (w->path, sizeof w->path, "%s/checkpoint", dir);
    w->seen_any = false;
    w->checked_at = s_mono_ms ();
    if (!req->has_memory)
        return true;
    int fd = open (w->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && keel_worker_write_all (fd, req->memory, req->memory_size);
    if (fd >= 0)
        close (fd);
    if (!ok || stat (w->path, &w->seen) != 0) {
        snprintf (error, error_size, "cannot write the task's memory to %s", w->path);
        return false;
    }
    w->seen_any = true;
    return true;
}

//  Sends the checkpoint file's content if it changed since last seen.
static void
s_watch_check (s_watch_t *w, int sock, uint64_t execution_id, size_t max_size)
{
    w->checked_at = s_mono_ms ();
    struct stat st;
    if (stat (w->path, &st) != 0 || !S_ISREG (st.st_mode))
        return;
    if (w->seen_any && st.st_ino == w->seen.st_ino && st.st_size == w->seen.st_size
        && st.st_mtim.tv_sec == w->seen.st_mtim.tv_sec
        && st.st_mtim.tv_nsec == w->seen.st_mtim.tv_nsec)
        return;
    w->seen = st;
    w->seen_any = true;
    if ((size_t) st.st_size > max_size)
        return; // too large to be memory: ignored
    int fd = open (w->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    uint8_t *data = malloc ((size_t) st.st_size + 1);
    size_t have = 0;
    //  Reads what the file holds now, at most the size seen plus one byte.
    while (data && have <= (size_t) st.st_size) {
        ssize_t n = read (fd, data + have, (size_t) st.st_size + 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t) n;
    }
    close (fd);
    if (data && have == (size_t) st.st_size
        && !s_send_frame (sock, execution_id, KEEL_WORKER_CHECKPOINT, data, have))
        _exit (0);
    free (data);
}

static void
s_run_command (int sock, const keel_worker_request_t *req, size_t max_output)
{
    uint64_t execution_id = req->execution_id;
    const uint8_t *input = req->input;
    size_t input_size = req->input_size;
    s_watch_t watch;
    char error[700];
    if (!s_watch_prepare (&watch, req, error, sizeof error)) {
        s_respond_text (sock, execution_id, false, error);
        return;
    }
    int in[2], out[2], err[2];
    if (pipe2 (in, O_CLOEXEC) || pipe2 (out, O_CLOEXEC) || pipe2 (err, O_CLOEXEC)) {
        s_respond_text (sock, execution_id, false, "cannot create pipes for the command");
        return;
    }
    pid_t pid = fork ();
    if (pid < 0) {
        s_respond_text (sock, execution_id, false, "cannot fork the command");
        return;
    }
    if (pid == 0)
        s_exec_child (req->target, watch.path, in[0], out[1], err[1]);
    close (in[0]);
    close (out[1]);
    close (err[1]);
    fcntl (in[1], F_SETFL, O_NONBLOCK);

    s_capture_t cap = { .max_output = max_output };
    size_t written = 0;
    int in_fd = input_size ? in[1] : -1;
    if (in_fd < 0)
        close (in[1]);
    int fds[2] = { out[0], err[0] };
    uint8_t chunk[65536];
    bool term_sent = false;
    //  Ends when both output pipes reach EOF; each turn makes progress or
    //  waits at most one checkpoint poll interval.
    while (fds[0] >= 0 || fds[1] >= 0) {
        if (s_cancel_flag && !term_sent) {
            kill (pid, SIGTERM); // the engine asked the task to stop
            term_sent = true;
        }
        struct pollfd pfd[3] = { { fds[0], POLLIN, 0 },
                                 { fds[1], POLLIN, 0 },
                                 { in_fd, POLLOUT, 0 } };
        if (poll (pfd, 3, KEEL_WORKER_CHECKPOINT_POLL_MS) < 0 && errno != EINTR)
            break;
        if (s_mono_ms () - watch.checked_at >= KEEL_WORKER_CHECKPOINT_POLL_MS)
            s_watch_check (&watch, sock, execution_id, max_output);
        for (int i = 0; i < 2; i++) {
            if (fds[i] < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read (fds[i], chunk, sizeof chunk);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                close (fds[i]);
                fds[i] = -1;
            }
            else if (i == 0)
                s_capture_stdout (&cap, chunk, (size_t) n);
            else
                s_capture_stderr (&cap, chunk, (size_t) n);
        }
        if (cap.too_large)
            kill (pid, SIGKILL);
        if (in_fd >= 0 && (pfd[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write (in_fd, input + written, input_size - written);
            if (n > 0)
                written += (size_t) n;
            if ((n < 0 && errno != EINTR && errno != EAGAIN) || written == input_size) {
                close (in_fd);
                in_fd = -1;
            }
        }
    }
    if (in_fd >= 0)
        close (in_fd);
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close (fds[i]);
    int status = 0;
    while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
    s_watch_check (&watch, sock, execution_id, max_output);
    char tail[KEEL_WORKER_STDERR_TAIL + 1];
    s_stderr_tail (&cap, tail, sizeof tail);
    char text[KEEL_WORKER_STDERR_TAIL + 128];
    if (cap.too_large) {
        snprintf (text, sizeof text, "output too large (more than %zu bytes)", max_output);
        s_respond_text (sock, execution_id, false, text);
    }
    else if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
        s_respond (sock, execution_id, true, cap.out, cap.out_size);
    else {
        if (WIFSIGNALED (status))
            snprintf (text, sizeof text, "killed by signal %d%s%s", WTERMSIG (status),
                      *tail ? ": " : "", tail);
        else
            snprintf (text, sizeof text, "exit status %d%s%s", WEXITSTATUS (status),
                      *tail ? ": " : "", tail);
        //  126/127: the shell could not run the program (not executable,
        //  not found, missing interpreter): a retry fails the same way.
        bool permanent =
            WIFEXITED (status) && (WEXITSTATUS (status) == 126 || WEXITSTATUS (status) == 127);
        s_respond_as (sock, execution_id, false, permanent, (const uint8_t *) text, strlen (text));
    }
    free (cap.out);
}

static void
s_run_builtin (int sock, const keel_worker_request_t *req, size_t max_output)
{
    s_ctx_t ctx;
    s_ctx_init (&ctx, sock, max_output, req);
    keel_builtin_result_t result;
    bool ran = keel_builtin_run_task (req->type, &ctx.pub, &result)
               && keel_builtin_cap_output (&result, max_output);
    s_ctx_fini (&ctx);
    if (!ran) {
        s_respond_text (sock, req->execution_id, false, "out of memory");
        return;
    }
    s_respond_as (sock, req->execution_id, result.ok, result.permanent, result.data, result.size);
    free (result.data);
}

static void
s_run_library (int sock, keel_library_t *libs, const keel_worker_request_t *req, size_t max_output)
{
    s_ctx_t ctx;
    s_ctx_init (&ctx, sock, max_output, req);
    char error[1024];
    int rc = keel_library_run (libs, req->target, &ctx.pub, error, sizeof error);
    const uint8_t *out = ctx.packing ? (const uint8_t *) ctx.sbuf.data : ctx.out;
    size_t out_size = ctx.packing ? ctx.sbuf.size : ctx.out_size;
    if (rc != 0) {
        char text[1100];
        if (*error)
            snprintf (text, sizeof text, "%s", error);
        else if (*ctx.error)
            snprintf (text, sizeof text, "%s", ctx.error);
        else if (rc == KEEL_TASK_PERMANENT)
            snprintf (text, sizeof text, "service failed permanently (KEEL_TASK_PERMANENT)");
        else
            snprintf (text, sizeof text, "service returned %d", rc);
        s_respond_as (sock, req->execution_id, false, rc == KEEL_TASK_PERMANENT,
                      (const uint8_t *) text, strlen (text));
    }
    else if (out_size > max_output) {
        char text[128];
        snprintf (text, sizeof text, "output too large (more than %zu bytes)", max_output);
        s_respond_text (sock, req->execution_id, false, text);
    }
    else
        s_respond (sock, req->execution_id, true, out ? out : (const uint8_t *) "", out_size);
    s_ctx_fini (&ctx);
}

//  Decodes a request payload into req (pointers into payload). False when
//  it does not add up.
static bool
s_decode (const uint8_t *p, size_t size, keel_worker_request_t *req, char *type, size_t type_size)
{
    if (size < KEEL_WORKER_HEADER)
        return false;
    memset (req, 0, sizeof *req);
    req->execution_id = keel_worker_get64 (p);
    req->task_id = keel_worker_get64 (p + 8);
    req->kind = p[16];
    req->has_memory = p[17] != 0;
    size_t lens[6];
    size_t need = KEEL_WORKER_HEADER;
    for (int i = 0; i < 6; i++) {
        lens[i] = keel_worker_get32 (p + 20 + 4 * i);
        need += lens[i];
    }
    if (need != size || lens[0] == 0 || lens[0] >= type_size || lens[2] >= 128
        || (req->kind != KEEL_WORKER_BUILTIN && lens[1] == 0) || req->kind > KEEL_WORKER_LIBRARY)
        return false;
    const uint8_t *q = p + KEEL_WORKER_HEADER;
    memcpy (type, q, lens[0]);
    type[lens[0]] = 0;
    req->type = type;
    q += lens[0];
    req->target = (const char *) q; // NUL-terminated by the caller's copy below
    q += lens[1];
    req->service_id = (const char *) q;
    q += lens[2];
    req->input = q;
    req->input_size = lens[3];
    q += lens[3];
    req->memory = q;
    req->memory_size = lens[4];
    q += lens[4];
    req->init_data = lens[5] ? q : NULL;
    req->init_size = lens[5];
    return true;
}

void
keel_worker_main (int fd, size_t max_output)
{
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    setpgid (0, 0);
    // Crash signals too: a task that crashes must die of its signal so the
    // engine reports it as such, whatever handler a runtime (a sanitizer,
    // a language VM) installed in the engine before the fork.
    int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR2,
                   SIGSEGV, SIGBUS, SIGFPE, SIGILL,  SIGABRT };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal (sigs[i], SIG_DFL);
    signal (SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_sigusr1;
    sigemptyset (&sa.sa_mask);
    sigaction (SIGUSR1, &sa, NULL); // no SA_RESTART: a sleep wakes up
    sigset_t none;
    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);
    if (fd != S_SOCK_FD) {
        if (dup2 (fd, S_SOCK_FD) < 0)
            _exit (1);
    }
    fcntl (S_SOCK_FD, F_SETFD, 0);
    fcntl (S_SOCK_FD, F_SETFL, 0);
    close_range (S_SOCK_FD + 1, ~0U, 0);
    keel_library_t *libs = keel_library_new ();
    if (!libs)
        _exit (1);

    //  Serves requests until the engine closes the socket (read fails).
    for (;;) {
        uint8_t head[4];
        if (!s_read_all (S_SOCK_FD, head, 4))
            _exit (0);
        uint32_t size = keel_worker_get32 (head);
        if (size < KEEL_WORKER_HEADER)
            _exit (1);
        uint8_t *payload = malloc (size);
        if (!payload || !s_read_all (S_SOCK_FD, payload, size))
            _exit (1);
        keel_worker_request_t req;
        char type[257];
        if (!s_decode (payload, size, &req, type, sizeof type))
            _exit (1);
        //  NUL-terminated copies of the two strings that follow the type.
        size_t target_len = (size_t) keel_worker_get32 (payload + 24);
        size_t sid_len = (size_t) keel_worker_get32 (payload + 28);
        char *target = strndup (req.target, target_len);
        char *service_id = strndup (req.service_id, sid_len);
        if (!target || !service_id)
            _exit (1);
        req.target = req.kind == KEEL_WORKER_BUILTIN ? NULL : target;
        req.service_id = service_id;
        s_cancel_flag = 0;
        if (req.kind == KEEL_WORKER_COMMAND)
            s_run_command (S_SOCK_FD, &req, max_output);
        else if (req.kind == KEEL_WORKER_LIBRARY)
            s_run_library (S_SOCK_FD, libs, &req, max_output);
        else
            s_run_builtin (S_SOCK_FD, &req, max_output);
        free (target);
        free (service_id);
        free (payload);
    }
}
