/*  runner.c — the task runner's process pool (parent side). */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "worker.h"

#define S_RESPAWN_DELAY_MS 1000
#define S_KILL_WAIT_MS     2000
#define S_REAP_PER_TURN    256
#define S_FRAME_OVERHEAD   64
#define S_FRAMES_PER_READ  64 // frames (checkpoints) taken from one worker per turn

typedef struct {
    pid_t pid;   // 0 = no worker (respawn at respawn_at)
    int fd;      // our end of the socketpair, non-blocking
    bool reaped; // waitpid already collected status
    int status;
    int64_t respawn_at;
    bool busy;
    uint64_t execution_id;
    int64_t started;
    int64_t started_us; // zclock_usecs at the start: the result's run_us
    int64_t timeout_ms;
    bool timed_out; // past its timeout: cancel flag raised, killed at kill_at
    int64_t kill_at;
    uint8_t prefix[4]; // length prefix of the response being read
    uint8_t *buf;      // response payload being read
    size_t have, need; // need = 0 until the length prefix is in
} s_worker_t;

struct _keel_runner_t {
    int slots;
    size_t max_output;
    s_worker_t *workers;
    int64_t reap_at; // keel_runner_process_polled: the next waitpid(-1) when no fd is readable
};

static int64_t
s_mono_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
keel_runner_usecs (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static bool
s_spawn (keel_runner_t *self, s_worker_t *w)
{
    int sv[2];
    if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return false;
    pid_t pid = fork ();
    if (pid < 0) {
        close (sv[0]);
        close (sv[1]);
        return false;
    }
    if (pid == 0) {
        close (sv[0]);
        keel_worker_main (sv[1], self->max_output);
    }
    close (sv[1]);
    setpgid (pid, pid); // also done by the child; whichever runs first wins
    fcntl (sv[0], F_SETFL, O_NONBLOCK);
    w->pid = pid;
    w->fd = sv[0];
    w->reaped = false;
    w->busy = false;
    w->have = w->need = 0;
    return true;
}

//  Kills the worker's process group, reaps the worker, closes its socket.
//  Leaves status in w->status.
static void
s_kill (s_worker_t *w)
{
    if (w->pid <= 0)
        return;
    kill (-w->pid, SIGKILL);
    if (!w->reaped) {
        kill (w->pid, SIGKILL);
        while (waitpid (w->pid, &w->status, 0) < 0 && errno == EINTR)
            ;
        w->reaped = true;
    }
    keel_worker_scratch_remove (w->pid);
    close (w->fd);
    w->fd = -1;
    free (w->buf);
    w->buf = NULL;
    w->have = w->need = 0;
}

//  Replaces a killed worker now, or later if fork fails.
static void
s_replace (keel_runner_t *self, s_worker_t *w, int64_t now)
{
    w->pid = 0;
    w->busy = false;
    if (!s_spawn (self, w)) {
        w->respawn_at = now + S_RESPAWN_DELAY_MS;
        KEEL_WARN ("engine", "cannot start a task worker, retrying in %d ms", S_RESPAWN_DELAY_MS);
    }
}

keel_runner_t *
keel_runner_new (int slots, size_t max_output, keel_error_t *err)
{
    if (slots <= 0) {
        keel_error_set (err, KEEL_ERR_INVALID, "runner needs at least one slot");
        return NULL;
    }
    keel_runner_t *self = calloc (1, sizeof *self);
    if (!self || !(self->workers = calloc ((size_t) slots, sizeof (s_worker_t)))) {
        free (self);
        keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    self->slots = slots;
    self->max_output = max_output;
    prctl (PR_SET_CHILD_SUBREAPER, 1);
    int started = 0;
    int64_t now = s_mono_ms ();
    for (int i = 0; i < slots; i++) {
        self->workers[i].fd = -1;
        if (s_spawn (self, &self->workers[i]))
            started++;
        else
            self->workers[i].respawn_at = now + S_RESPAWN_DELAY_MS;
    }
    if (started == 0) {
        keel_error_set (err, KEEL_ERR_IO, "cannot start task workers: %s", strerror (errno));
        keel_runner_destroy (&self);
        return NULL;
    }
    return self;
}

void
keel_runner_destroy (keel_runner_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keel_runner_t *self = *self_p;
    for (int i = 0; i < self->slots; i++)
        s_kill (&self->workers[i]);
    //  Collect orphans of killed commands (we are their subreaper).
    for (int i = 0; i < S_REAP_PER_TURN && waitpid (-1, NULL, WNOHANG) > 0; i++)
        ;
    free (self->workers);
    free (self);
    *self_p = NULL;
}

int
keel_runner_slots (const keel_runner_t *self)
{
    return self->slots;
}

int
keel_runner_free_slots (const keel_runner_t *self)
{
    int n = 0;
    for (int i = 0; i < self->slots; i++)
        if (self->workers[i].pid > 0 && !self->workers[i].busy)
            n++;
    return n;
}

static s_worker_t *
s_find (const keel_runner_t *self, uint64_t execution_id)
{
    for (int i = 0; i < self->slots; i++)
        if (self->workers[i].pid > 0 && self->workers[i].busy
            && self->workers[i].execution_id == execution_id)
            return &self->workers[i];
    return NULL;
}

keel_err
keel_runner_start (keel_runner_t *self, const keel_worker_request_t *req, int64_t timeout_ms,
                   int64_t now)
{
    if (s_find (self, req->execution_id))
        return KEEL_ERR_STATE;
    s_worker_t *w = NULL;
    for (int i = 0; i < self->slots && !w; i++)
        if (self->workers[i].pid > 0 && !self->workers[i].busy)
            w = &self->workers[i];
    if (!w)
        return KEEL_ERR_FULL;
    size_t frame_size = 0;
    uint8_t *frame = keel_worker_request_encode (req, &frame_size);
    if (!frame)
        return KEEL_ERR_NOMEM;
    //  The idle worker is blocked reading; write the whole request.
    fcntl (w->fd, F_SETFL, 0);
    bool ok = keel_worker_write_all (w->fd, frame, frame_size);
    fcntl (w->fd, F_SETFL, O_NONBLOCK);
    free (frame);
    if (!ok) {
        s_kill (w);
        s_replace (self, w, now);
        return KEEL_ERR_IO;
    }
    w->busy = true;
    w->execution_id = req->execution_id;
    w->started = now;
    w->started_us = keel_runner_usecs ();
    w->timeout_ms = timeout_ms;
    w->timed_out = false;
    return KEEL_OK;
}

keel_err
keel_runner_cancel (keel_runner_t *self, uint64_t execution_id)
{
    s_worker_t *w = s_find (self, execution_id);
    if (!w)
        return KEEL_ERR_NOTFOUND;
    s_kill (w);
    s_replace (self, w, s_mono_ms ());
    return KEEL_OK;
}

int
keel_runner_kill_all (keel_runner_t *self, bool *all_gone_p)
{
    pid_t groups[self->slots];
    int killed = 0;
    int64_t now = s_mono_ms ();
    for (int i = 0; i < self->slots; i++) {
        s_worker_t *w = &self->workers[i];
        if (w->pid > 0 && w->busy) {
            groups[killed++] = w->pid;
            s_kill (w);
            s_replace (self, w, now);
        }
    }
    //  Wait (bounded) until no member of a killed group is left, reaping
    //  orphans handed to us as subreaper on the way.
    bool all_gone = false;
    int64_t until = now + S_KILL_WAIT_MS;
    while (!all_gone) {
        for (int i = 0; i < S_REAP_PER_TURN && waitpid (-1, NULL, WNOHANG) > 0; i++)
            ;
        all_gone = true;
        for (int i = 0; i < killed; i++)
            if (kill (-groups[i], 0) == 0 || errno != ESRCH) {
                kill (-groups[i], SIGKILL);
                all_gone = false;
            }
        if (all_gone || s_mono_ms () >= until)
            break;
        struct timespec pause = { 0, 5 * 1000000L };
        nanosleep (&pause, NULL);
    }
    if (all_gone_p)
        *all_gone_p = all_gone;
    return killed;
}

bool
keel_runner_is_running (const keel_runner_t *self, uint64_t execution_id)
{
    return s_find (self, execution_id) != NULL;
}

pid_t
keel_runner_pid_of (const keel_runner_t *self, uint64_t execution_id)
{
    s_worker_t *w = s_find (self, execution_id);
    return w ? w->pid : 0;
}

int
keel_runner_fds (const keel_runner_t *self, int *fds, int max)
{
    int n = 0;
    for (int i = 0; i < self->slots && n < max; i++)
        if (self->workers[i].pid > 0)
            fds[n++] = self->workers[i].fd;
    return n;
}

int64_t
keel_runner_next_deadline (const keel_runner_t *self)
{
    int64_t next = INT64_MAX;
    for (int i = 0; i < self->slots; i++) {
        const s_worker_t *w = &self->workers[i];
        int64_t at = INT64_MAX;
        if (w->pid == 0)
            at = w->respawn_at;
        else if (w->busy && w->timed_out)
            at = w->kill_at;
        else if (w->busy && w->timeout_ms > 0)
            at = w->started + w->timeout_ms;
        if (at < next)
            next = at;
    }
    return next;
}

static void
s_report (s_worker_t *w, int64_t now, bool ok, bool permanent, const uint8_t *data, size_t size,
          keel_runner_done_fn *done, void *arg)
{
    (void) now;
    keel_runner_result_t result = {
        w->execution_id, ok, data, size, keel_runner_usecs () - w->started_us, !ok && permanent
    };
    w->busy = false;
    if (done)
        done (&result, arg);
}

static void
s_report_text (s_worker_t *w, int64_t now, const char *text, keel_runner_done_fn *done, void *arg)
{
    s_report (w, now, false, false, (const uint8_t *) text, strlen (text), done, arg);
}

static void
s_report_timeout (s_worker_t *w, int64_t now, keel_runner_done_fn *done, void *arg)
{
    char text[96];
    snprintf (text, sizeof text, "timed out after %lld ms", (long long) w->timeout_ms);
    s_report_text (w, now, text, done, arg);
}

//  Reads what the worker sent: checkpoints go to checkpoint, a result ends
//  the task. Returns 1 when a task result was reported, 0 when nothing
//  complete arrived, -1 when the worker is gone or broken.
static int
s_read (keel_runner_t *self, s_worker_t *w, int64_t now, const keel_runner_handlers_t *h)
{
    //  Bounded: each pass reads at least one byte or returns, a frame is at
    //  most max_output + overhead bytes, and at most S_FRAMES_PER_READ
    //  frames are taken per call.
    int frames = 0;
    while (frames < S_FRAMES_PER_READ) {
        uint8_t *into = w->need ? w->buf + w->have : w->prefix + w->have;
        size_t want = w->need ? w->need - w->have : 4 - w->have;
        ssize_t n = read (w->fd, into, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0)
            return -1;
        w->have += (size_t) n;
        if (!w->need) {
            if (w->have < 4)
                continue;
            uint32_t size = keel_worker_get32 (w->prefix);
            if (size < 9 || size > self->max_output + S_FRAME_OVERHEAD + 4096)
                return -1;
            if (!(w->buf = malloc (size)))
                return -1;
            w->need = size;
            w->have = 0;
            continue;
        }
        if (w->have < w->need)
            continue;
        frames++;
        uint64_t execution_id = keel_worker_get64 (w->buf);
        uint8_t what = w->buf[8];
        bool mine = w->busy && execution_id == w->execution_id;
        int reported = -2;
        if (what == KEEL_WORKER_CHECKPOINT) {
            if (mine && !w->timed_out && h->checkpoint)
                h->checkpoint (execution_id, w->buf + 9, w->need - 9, h->arg);
        }
        else if (mine && w->timed_out) {
            s_report_timeout (w, now, h->done, h->arg);
            reported = 1;
        }
        else if (mine) {
            s_report (w, now, what == KEEL_WORKER_OUTPUT, what == KEEL_WORKER_ERROR_PERMANENT,
                      w->buf + 9, w->need - 9, h->done, h->arg);
            reported = 1;
        }
        else
            reported = 0;
        free (w->buf);
        w->buf = NULL;
        w->have = w->need = 0;
        if (reported != -2)
            return reported;
    }
    return 0;
}

static bool
s_listed (const int *fds, int n, int fd)
{
    for (int i = 0; i < n; i++)
        if (fds[i] == fd)
            return true;
    return false;
}

int
keel_runner_process (keel_runner_t *self, int64_t now, const keel_runner_handlers_t *handlers)
{
    return keel_runner_process_polled (self, now, handlers, NULL, -1);
}

int
keel_runner_process_polled (keel_runner_t *self, int64_t now,
                            const keel_runner_handlers_t *handlers, const int *readable,
                            int nreadable)
{
    keel_runner_done_fn *done = handlers->done;
    void *arg = handlers->arg;
    int reported = 0;
    //  A worker that ends closes its socket (readable), so a turn with none
    //  readable only reaps a command's orphans: every KEEL_RUNNER_REAP_MS.
    bool reap = nreadable != 0 || now >= self->reap_at;
    if (reap)
        self->reap_at = now + KEEL_RUNNER_REAP_MS;
    for (int i = 0; reap && i < S_REAP_PER_TURN; i++) {
        int status = 0;
        pid_t pid = waitpid (-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        for (int j = 0; j < self->slots; j++)
            if (self->workers[j].pid == pid && !self->workers[j].reaped) {
                self->workers[j].reaped = true;
                self->workers[j].status = status;
            }
    }
    for (int i = 0; i < self->slots; i++) {
        s_worker_t *w = &self->workers[i];
        if (w->pid == 0) {
            if (now >= w->respawn_at)
                s_replace (self, w, now);
            continue;
        }
        //  Only what the poll found readable: a read that would block is a
        //  system call per worker per turn, in every turn of the engine.
        int rc = nreadable < 0 || s_listed (readable, nreadable, w->fd)
                     ? s_read (self, w, now, handlers)
                     : 0;
        if (rc > 0)
            reported++;
        else if (rc < 0) {
            bool busy = w->busy;
            s_kill (w);
            if (busy) {
                char text[96];
                if (WIFSIGNALED (w->status))
                    snprintf (text, sizeof text, "task process crashed: signal %d",
                              WTERMSIG (w->status));
                else
                    snprintf (text, sizeof text, "task process exited unexpectedly: status %d",
                              WEXITSTATUS (w->status));
                s_report_text (w, now, text, done, arg);
                reported++;
            }
            s_replace (self, w, now);
        }
        else if (w->busy && w->timed_out && now >= w->kill_at) {
            s_kill (w);
            s_report_timeout (w, now, done, arg);
            reported++;
            s_replace (self, w, now);
        }
        else if (w->busy && !w->timed_out && w->timeout_ms > 0
                 && now >= w->started + w->timeout_ms) {
            //  Ask the task to stop (its cancel flag); kill it after a grace.
            kill (w->pid, SIGUSR1);
            w->timed_out = true;
            w->kill_at = now + KEEL_RUNNER_STOP_GRACE_MS;
        }
    }
    return reported;
}
