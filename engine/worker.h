/*  worker.h — the child side of the task runner, and the frames both sides speak.

    A worker is a process forked by the runner (runner.h), one per slot, in
    its own process group. It never touches ZeroMQ: right after fork it keeps
    only its socketpair end (moved to fd 3) and stdin/stdout/stderr, resets
    signal handlers and asks to be killed when the engine dies. It then reads
    one request at a time, runs it, writes one response, and exits when the
    socket closes. SIGUSR1 raises the running task's cancel flag.

    Built-ins handed to it (sleep and count; the engine runs echo, double
    and fail itself, see starter.h) run inside the worker. A library service
    (library.h) runs inside the worker too, through the service.h ABI: a
    crash takes only the worker. A command service runs as /bin/sh -c
    COMMAND in a child of the worker (same process group): the input goes to
    its stdin, its stdout is the output (capped), the last ~2 KiB of its
    stderr become the error text when it fails (exit status non-zero or
    killed by a signal).

    Permanent failures. Some failures cannot succeed on a retry: a command
    that exits 126 (found but not executable) or 127 (not found: the
    shell's codes, also a script whose interpreter is missing), bad input
    to a built-in (builtin.h), a library service returning
    KEEL_TASK_PERMANENT (keel/service.h) or an input a library cannot
    dispatch. The worker reports them as KEEL_WORKER_ERROR_PERMANENT; the
    engine marks the Result permanent and the broker fails the task at
    once instead of spending MaxAttempts.

    Task memory. Built-ins and libraries checkpoint through
    keel_task_checkpoint. A command gets $KEEL_CHECKPOINT, a file path in
    the worker's scratch directory (keel_worker_scratch_dir): it holds the
    task's memory at start (absent when there is none); the worker looks at
    it every KEEL_WORKER_CHECKPOINT_POLL_MS and when the command ends, and
    sends its content whenever it changed (write a temp file, then rename,
    so the worker never reads half a checkpoint). The runner removes the
    scratch directory when it reaps the worker.

    Frames on the socketpair: a 4-byte big-endian length, then the payload.
      request : u64 execution_id, u64 task_id, u8 kind (KEEL_WORKER_*),
                u8 has_memory, u16 0, then u32 lengths of type, target
                (command line or library path), service_id, input, memory,
                init_data, then those bytes in that order
      response: u64 execution_id, u8 what (0 = error text, 1 = output,
                2 = checkpoint, 3 = error text of a permanent failure;
                all but 2 end the task), data
    All integers big-endian. Frames larger than KEEL_WORKER_FRAME_MAX are refused.
*/
#ifndef KEEL_ENGINE_WORKER_H
#define KEEL_ENGINE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KEEL_WORKER_FRAME_MAX          ((size_t) 1 << 31)
#define KEEL_WORKER_STDERR_TAIL        2048
#define KEEL_WORKER_HEADER             44
#define KEEL_WORKER_CHECKPOINT_POLL_MS 100

#define KEEL_WORKER_BUILTIN 0
#define KEEL_WORKER_COMMAND 1
#define KEEL_WORKER_LIBRARY 2

#define KEEL_WORKER_ERROR           0
#define KEEL_WORKER_OUTPUT          1
#define KEEL_WORKER_CHECKPOINT      2
#define KEEL_WORKER_ERROR_PERMANENT 3

//  One task as handed to a worker. Pointers are borrowed.
typedef struct {
    uint64_t execution_id;
    uint64_t task_id;
    int kind; // KEEL_WORKER_BUILTIN / COMMAND / LIBRARY
    const char *type;
    const char *target; // command line or library path; NULL for a built-in
    const char *service_id;
    const uint8_t *input;
    size_t input_size;
    const uint8_t *memory; // the last checkpoint, when has_memory
    size_t memory_size;
    bool has_memory;
    const uint8_t *init_data; // the service's init data; NULL/0 when none
    size_t init_size;
} keel_worker_request_t;

// Runs the worker loop on socket fd; never returns (calls _exit).
// Call only in a freshly forked child. max_output caps a task's output and
// a checkpoint's size.
void keel_worker_main (int fd, size_t max_output) __attribute__ ((noreturn));

// Builds a request frame (length prefix included) into a malloc'd buffer.
// Returns NULL when out of memory or too large.
uint8_t *keel_worker_request_encode (const keel_worker_request_t *req, size_t *frame_size);

// Writes the scratch directory of worker pid into buf:
// $TMPDIR (or /tmp) + "/keel-worker-<pid>".
void keel_worker_scratch_dir (pid_t pid, char *buf, size_t size);

// Removes the scratch directory of worker pid and the files in it (bounded).
void keel_worker_scratch_remove (pid_t pid);

// Writes all of buf to fd (blocking fd; retries on EINTR). Returns false on error.
bool keel_worker_write_all (int fd, const uint8_t *buf, size_t size);

// Reads a big-endian u32 / u64 from p.
uint32_t keel_worker_get32 (const uint8_t *p);
uint64_t keel_worker_get64 (const uint8_t *p);

#endif
