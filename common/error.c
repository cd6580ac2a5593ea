/*  error.c — error codes to text, and the one-line error detail.

    See error.h. keel_error_t is a fixed buffer so failure points never
    allocate; over-long messages are truncated.
*/
#include "error.h"

#include <stdio.h>
#include <string.h>

const char *
keel_strerror (keel_err code)
{
    switch (code) {
        case KEEL_OK:
            return "success";
        case KEEL_ERR_INVALID:
            return "invalid argument";
        case KEEL_ERR_CONFIG:
            return "configuration error";
        case KEEL_ERR_IO:
            return "input/output error";
        case KEEL_ERR_NOMEM:
            return "out of memory";
        case KEEL_ERR_NOTFOUND:
            return "not found";
        case KEEL_ERR_TIMEOUT:
            return "timed out";
        case KEEL_ERR_STORE:
            return "store error";
        case KEEL_ERR_FULL:
            return "full";
        case KEEL_ERR_STATE:
            return "not allowed in the current state";
        case KEEL_ERR_PROTOCOL:
            return "protocol error";
        case KEEL_ERR_INTERRUPTED:
            return "interrupted";
    }
    return "unknown error";
}

keel_err
keel_error_set (keel_error_t *err, keel_err code, const char *fmt, ...)
{
    if (err) {
        va_list args;
        va_start (args, fmt);
        vsnprintf (err->text, sizeof err->text, fmt, args);
        va_end (args);
    }
    return code;
}

void
keel_error_prefix (keel_error_t *err, const char *fmt, ...)
{
    if (!err)
        return;
    char old[sizeof err->text];
    memcpy (old, err->text, sizeof old);
    old[sizeof old - 1] = '\0';

    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (err->text, sizeof err->text, fmt, args);
    va_end (args);
    if (n < 0)
        n = 0;
    size_t used = (size_t) n < sizeof err->text ? (size_t) n : sizeof err->text - 1;
    size_t room = sizeof err->text - 1 - used;
    size_t old_len = strlen (old);
    if (room >= 2) {
        memcpy (err->text + used, ": ", 2);
        used += 2;
        room -= 2;
        if (old_len > room)
            old_len = room;
        memcpy (err->text + used, old, old_len);
        used += old_len;
    }
    err->text[used] = '\0';
}
