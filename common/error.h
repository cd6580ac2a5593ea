/*  error.h — Keel's error codes and the error text carried to the person.

    Every fallible call returns a keel_err (0 = KEEL_OK) and passes results
    through out-parameters. Where a person needs detail, the failing call
    fills a keel_error_t with one line naming the problem (file:line, key,
    what was expected, what was found); the caller that handles the error
    logs or prints it once. A NULL keel_error_t * is allowed everywhere and
    means "no detail wanted".
*/
#ifndef KEEL_ERROR_H
#define KEEL_ERROR_H

#include <stdarg.h>

typedef enum {
    KEEL_OK = 0,
    KEEL_ERR_INVALID,    // bad argument, bad input, failed validation
    KEEL_ERR_CONFIG,     // configuration error (unknown key, bad value)
    KEEL_ERR_IO,         // file or socket I/O failed
    KEEL_ERR_NOMEM,      // allocation failed or a memory cap was hit
    KEEL_ERR_NOTFOUND,   // no such key / service / task / engine
    KEEL_ERR_TIMEOUT,    // a deadline passed
    KEEL_ERR_STORE,      // the store failed (corrupt, foreign, newer schema)
    KEEL_ERR_FULL,       // the store or a queue is full
    KEEL_ERR_STATE,      // not allowed in the current state
    KEEL_ERR_PROTOCOL,   // a peer broke the protocol
    KEEL_ERR_INTERRUPTED // a signal asked us to stop
} keel_err;

// Exit codes shared by every program (DESIGN §10).
#define KEEL_EXIT_OK       0 // the work succeeded
#define KEEL_EXIT_FAILED   1 // the work failed
#define KEEL_EXIT_USAGE    2 // usage or configuration error
#define KEEL_EXIT_NOBROKER 3 // no broker reachable in time (engine: Engine Timeout, exit action)

typedef struct {
    char text[256];
} keel_error_t;

// Returns a static, constant description of an error code.
const char *keel_strerror (keel_err code);

// Formats the message into err (if not NULL) and returns code, so failure
// points read:  return keel_error_set (err, KEEL_ERR_CONFIG, "%s:%d: ...", ...);
keel_err keel_error_set (keel_error_t *err, keel_err code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

// Prepends "prefix: " to the text already in err (for adding context upward).
void keel_error_prefix (keel_error_t *err, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

#endif
