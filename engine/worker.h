/*  worker.h — the child side of the task runner, and the frames both sides speak.

    A worker is a process forked by the runner (runner.h), one per slot, in
    its own process group. It never touches ZeroMQ: right after fork it keeps
    only its socketpair end (moved to fd 3) and stdin/stdout/stderr, resets
    signal handlers and asks to be killed when the engine dies. It then reads
    one request at a time, runs it, writes one response, and exits when the
    socket closes.

    Built-ins run inside the worker. A command service runs as
    /bin/sh -c COMMAND in a child of the worker (same process group): the
    input goes to its stdin, its stdout is the output (capped), the last
    ~2 KiB of its stderr become the error text when it fails (exit status
    non-zero or killed by a signal).

    Frames on the socketpair: a 4-byte big-endian length, then the payload.
      request : u64 execution_id, u64 reserved, u32 type_len, u32 cmd_len
                (0xffffffff = built-in), u32 input_len, type, command, input
      response: u64 execution_id, u8 ok (1 = output, 0 = error text), data
    All integers big-endian. Frames larger than KEEL_WORKER_FRAME_MAX are refused.
*/
#ifndef KEEL_ENGINE_WORKER_H
#define KEEL_ENGINE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEEL_WORKER_FRAME_MAX      ((size_t) 1 << 31)
#define KEEL_WORKER_NO_COMMAND     0xffffffffu
#define KEEL_WORKER_STDERR_TAIL    2048

// Runs the worker loop on socket fd; never returns (calls _exit).
// Call only in a freshly forked child. max_output caps the output of a task.
void keel_worker_main (int fd, size_t max_output) __attribute__ ((noreturn));

// Builds a request frame (length prefix included) into a malloc'd buffer.
// command NULL = built-in. Returns NULL when out of memory or too large.
uint8_t *keel_worker_request_encode (uint64_t execution_id, const char *type,
                                     const char *command, const uint8_t *input,
                                     size_t input_size, size_t *frame_size);

// Writes all of buf to fd (blocking fd; retries on EINTR). Returns false on error.
bool keel_worker_write_all (int fd, const uint8_t *buf, size_t size);

// Reads a big-endian u32 / u64 from p.
uint32_t keel_worker_get32 (const uint8_t *p);
uint64_t keel_worker_get64 (const uint8_t *p);

#endif
