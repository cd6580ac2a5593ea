/*  worker.c — the runner's worker process: reads requests, runs tasks. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "builtin.h"

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
keel_worker_request_encode (uint64_t execution_id, const char *type, const char *command,
                            const uint8_t *input, size_t input_size, size_t *frame_size)
{
    size_t type_len = strlen (type);
    size_t cmd_len = command ? strlen (command) : 0;
    size_t payload = 28 + type_len + cmd_len + input_size;
    if (payload > KEEL_WORKER_FRAME_MAX || input_size > UINT32_MAX - 1)
        return NULL;
    uint8_t *buf = malloc (4 + payload);
    if (!buf)
        return NULL;
    s_put32 (buf, (uint32_t) payload);
    s_put64 (buf + 4, execution_id);
    s_put64 (buf + 12, 0);
    s_put32 (buf + 20, (uint32_t) type_len);
    s_put32 (buf + 24, command ? (uint32_t) cmd_len : KEEL_WORKER_NO_COMMAND);
    s_put32 (buf + 28, (uint32_t) input_size);
    uint8_t *p = buf + 32;
    memcpy (p, type, type_len);
    p += type_len;
    if (cmd_len)
        memcpy (p, command, cmd_len);
    p += cmd_len;
    if (input_size)
        memcpy (p, input, input_size);
    *frame_size = 4 + payload;
    return buf;
}

//  Sends the response frame; exits the worker if the engine is gone.
static void
s_respond (int fd, uint64_t execution_id, bool ok, const uint8_t *data, size_t size)
{
    uint8_t head[13];
    s_put32 (head, (uint32_t) (9 + size));
    s_put64 (head + 4, execution_id);
    head[12] = ok ? 1 : 0;
    if (!keel_worker_write_all (fd, head, sizeof head) || !keel_worker_write_all (fd, data, size))
        _exit (0);
}

static void
s_respond_text (int fd, uint64_t execution_id, bool ok, const char *text)
{
    s_respond (fd, execution_id, ok, (const uint8_t *) text, strlen (text));
}

//  The command's child: stdin/stdout/stderr on the pipes, nothing else open.
static void __attribute__ ((noreturn))
s_exec_child (const char *command, int in_fd, int out_fd, int err_fd)
{
    prctl (PR_SET_PDEATHSIG, SIGKILL);
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
    char tail[KEEL_WORKER_STDERR_TAIL];   // ring of the last stderr bytes
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

static void
s_run_command (int sock, uint64_t execution_id, const char *command, const uint8_t *input,
               size_t input_size, size_t max_output)
{
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
        s_exec_child (command, in[0], out[1], err[1]);
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
    //  Ends when both output pipes reach EOF; each turn makes progress or waits.
    while (fds[0] >= 0 || fds[1] >= 0) {
        struct pollfd pfd[3] = { { fds[0], POLLIN, 0 }, { fds[1], POLLIN, 0 },
                                 { in_fd, POLLOUT, 0 } };
        if (poll (pfd, 3, -1) < 0 && errno != EINTR)
            break;
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
        s_respond_text (sock, execution_id, false, text);
    }
    free (cap.out);
}

static void
s_run_builtin (int sock, uint64_t execution_id, const char *type, const uint8_t *input,
               size_t input_size, size_t max_output)
{
    keel_builtin_result_t result;
    if (!keel_builtin_run (type, input, input_size, &result)) {
        s_respond_text (sock, execution_id, false, "out of memory");
        return;
    }
    if (result.ok && result.size > max_output) {
        char text[128];
        snprintf (text, sizeof text, "output too large (more than %zu bytes)", max_output);
        s_respond_text (sock, execution_id, false, text);
    }
    else
        s_respond (sock, execution_id, result.ok, result.data, result.size);
    free (result.data);
}

void
keel_worker_main (int fd, size_t max_output)
{
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    setpgid (0, 0);
    int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2,
                   SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal (sigs[i], SIG_DFL);
    signal (SIGPIPE, SIG_IGN);
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

    //  Serves requests until the engine closes the socket (read fails).
    for (;;) {
        uint8_t head[4];
        if (!s_read_all (S_SOCK_FD, head, 4))
            _exit (0);
        uint32_t size = keel_worker_get32 (head);
        if (size < 28)
            _exit (1);
        uint8_t *req = malloc (size);
        if (!req || !s_read_all (S_SOCK_FD, req, size))
            _exit (1);
        uint64_t execution_id = keel_worker_get64 (req);
        uint32_t type_len = keel_worker_get32 (req + 16);
        uint32_t cmd_len = keel_worker_get32 (req + 20);
        uint32_t input_len = keel_worker_get32 (req + 24);
        bool builtin = cmd_len == KEEL_WORKER_NO_COMMAND;
        size_t need = 28 + (size_t) type_len + (builtin ? 0 : cmd_len) + input_len;
        if (need != size || type_len == 0 || type_len > 256)
            _exit (1);
        char type[257];
        memcpy (type, req + 28, type_len);
        type[type_len] = 0;
        const uint8_t *p = req + 28 + type_len;
        if (builtin)
            s_run_builtin (S_SOCK_FD, execution_id, type, p, input_len, max_output);
        else {
            char *command = strndup ((const char *) p, cmd_len);
            if (!command)
                _exit (1);
            s_run_command (S_SOCK_FD, execution_id, command, p + cmd_len, input_len, max_output);
            free (command);
        }
        free (req);
    }
}
