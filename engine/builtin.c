/*  builtin.c — echo, double, sleep, fail and count. */
#include "builtin.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *s_names[] = { "echo", "double", "sleep", "fail", "count", NULL };
//  The ones that return at once (builtin.h: where they run).
static const char *s_inline[] = { "echo", "double", "fail", NULL };

bool
keel_builtin_known (const char *type)
{
    for (int i = 0; s_names[i]; i++)
        if (strcmp (s_names[i], type) == 0)
            return true;
    return false;
}

bool
keel_builtin_is_inline (const char *type)
{
    for (int i = 0; s_inline[i]; i++)
        if (strcmp (s_inline[i], type) == 0)
            return true;
    return false;
}

const char *
keel_builtin_name (int index)
{
    if (index < 0 || index >= (int) (sizeof s_names / sizeof s_names[0]))
        return NULL;
    return s_names[index];
}

bool
keel_builtin_parse_int (const uint8_t *input, size_t size, int64_t *value)
{
    size_t i = 0;
    while (i < size && isspace (input[i]))
        i++;
    while (size > i && isspace (input[size - 1]))
        size--;
    if (i == size || size - i > 24)
        return false;
    char buf[32];
    memcpy (buf, input + i, size - i);
    buf[size - i] = 0;
    const char *p = buf;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p)
        return false;
    for (const char *q = p; *q; q++)
        if (!isdigit ((unsigned char) *q))
            return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll (buf, &end, 10);
    if (errno == ERANGE || !end || *end)
        return false;
    *value = (int64_t) v;
    return true;
}

static bool
s_set (keel_builtin_result_t *r, bool ok, const uint8_t *data, size_t size)
{
    r->ok = ok;
    r->size = size;
    r->data = malloc (size + 1);
    if (!r->data)
        return false;
    if (size)
        memcpy (r->data, data, size);
    r->data[size] = 0;
    return true;
}

static bool
s_setf (keel_builtin_result_t *r, bool ok, const char *fmt, ...)
{
    char text[512];
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    if (n < 0)
        n = 0;
    if ((size_t) n >= sizeof text)
        n = sizeof text - 1;
    return s_set (r, ok, (const uint8_t *) text, (size_t) n);
}

//  Marks r (just filled by s_setf) as a permanent failure: bad input.
static bool
s_permanent (keel_builtin_result_t *r, bool filled)
{
    r->permanent = true;
    return filled;
}

//  A short printable excerpt of input for error messages.
static void
s_excerpt (const uint8_t *input, size_t size, char *buf, size_t bufsize)
{
    size_t n = 0;
    for (size_t i = 0; i < size && n + 5 < bufsize; i++)
        buf[n++] = isprint (input[i]) ? (char) input[i] : '?';
    if (size > n && n + 4 < bufsize) {
        memcpy (buf + n, "...", 3);
        n += 3;
    }
    buf[n] = 0;
}

bool
keel_builtin_cap_output (keel_builtin_result_t *result, size_t max_output)
{
    if (!result->ok || result->size <= max_output)
        return true;
    free (result->data);
    return s_setf (result, false, "output too large (more than %zu bytes)", max_output);
}

static bool
s_double (const uint8_t *input, size_t size, keel_builtin_result_t *r)
{
    char shown[48];
    s_excerpt (input, size, shown, sizeof shown);
    int64_t v = 0;
    if (!keel_builtin_parse_int (input, size, &v)) {
        size_t i = 0;
        while (i < size && isspace (input[i]))
            i++;
        if (i == size)
            return s_permanent (r, s_setf (r, false,
                                           "double: input is empty (expected a decimal "
                                           "integer)"));
        return s_permanent (r, s_setf (r, false,
                                       "double: '%s' is not a decimal integer (or out "
                                       "of range)",
                                       shown));
    }
    if (v > INT64_MAX / 2 || v < INT64_MIN / 2)
        return s_permanent (
            r, s_setf (r, false, "double: 2 x %lld overflows a 64-bit integer", (long long) v));
    return s_setf (r, true, "%lld", (long long) (2 * v));
}

//  Sleeps ms milliseconds in slices; returns false when the cancel flag
//  went up first. Bounded: each slice shortens what is left.
static bool
s_sleep_ms (int64_t ms, const volatile sig_atomic_t *cancel)
{
    while (ms > 0) {
        if (cancel && *cancel)
            return false;
        int64_t slice = ms < 50 ? ms : 50;
        struct timespec left = { 0, (long) slice * 1000000L };
        struct timespec start;
        clock_gettime (CLOCK_MONOTONIC, &start);
        nanosleep (&left, NULL); // a signal cuts it short; the flag is looked at next
        struct timespec end;
        clock_gettime (CLOCK_MONOTONIC, &end);
        int64_t took =
            (int64_t) (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
        ms -= took > 0 ? took : 1;
    }
    return !(cancel && *cancel);
}

static bool
s_sleep (keel_svc_task_t *task, keel_builtin_result_t *r)
{
    const uint8_t *input = task->input;
    size_t size = task->input_size;
    char shown[48];
    s_excerpt (input, size, shown, sizeof shown);
    int64_t ms = 0;
    if (!keel_builtin_parse_int (input, size, &ms) || ms < 0 || ms > KEEL_BUILTIN_SLEEP_MAX_MS)
        return s_permanent (r, s_setf (r, false,
                                       "sleep: '%s' is not a number of milliseconds "
                                       "(0..%lld)",
                                       shown, (long long) KEEL_BUILTIN_SLEEP_MAX_MS));
    if (!s_sleep_ms (ms, task->cancel_flag))
        return s_setf (r, false, "sleep: cancelled");
    return s_set (r, true, input, size);
}

//  Splits "N MS" into two integers.
static bool
s_count_args (const uint8_t *input, size_t size, int64_t *n, int64_t *ms)
{
    size_t i = 0;
    while (i < size && isspace (input[i]))
        i++;
    size_t a = i;
    while (i < size && !isspace (input[i]))
        i++;
    return i < size && keel_builtin_parse_int (input + a, i - a, n)
           && keel_builtin_parse_int (input + i, size - i, ms);
}

static bool
s_count (keel_svc_task_t *task, keel_builtin_result_t *r)
{
    char shown[48];
    s_excerpt (task->input, task->input_size, shown, sizeof shown);
    int64_t n = 0, ms = 0;
    if (!s_count_args (task->input, task->input_size, &n, &ms) || n < 0
        || n > KEEL_BUILTIN_COUNT_MAX || ms < 0 || ms > KEEL_BUILTIN_SLEEP_MAX_MS)
        return s_permanent (r, s_setf (r, false,
                                       "count: '%s' is not 'N MS' (N steps 0..%lld, "
                                       "MS milliseconds each 0..%lld)",
                                       shown, KEEL_BUILTIN_COUNT_MAX,
                                       (long long) KEEL_BUILTIN_SLEEP_MAX_MS));
    int64_t first = 0;
    if (task->has_memory) {
        int64_t last = -1;
        if (!keel_builtin_parse_int (task->memory, task->memory_size, &last) || last < 0) {
            s_excerpt (task->memory, task->memory_size, shown, sizeof shown);
            return s_permanent (
                r, s_setf (r, false, "count: memory '%s' is not a step number", shown));
        }
        first = last + 1;
    }
    if (first >= n)
        return s_set (r, true, (const uint8_t *) "", 0);
    for (int64_t step = first; step < n; step++) {
        if (!s_sleep_ms (ms, task->cancel_flag))
            return s_setf (r, false, "count: cancelled at step %lld", (long long) step);
        char text[24];
        int len = snprintf (text, sizeof text, "%lld", (long long) step);
        keel_task_checkpoint (task, text, (size_t) len);
    }
    return s_setf (r, true, "%lld-%lld", (long long) first, (long long) (n - 1));
}

bool
keel_builtin_run_task (const char *type, keel_svc_task_t *task, keel_builtin_result_t *result)
{
    memset (result, 0, sizeof *result);
    const uint8_t *input = task->input;
    size_t size = task->input_size;
    if (strcmp (type, "echo") == 0)
        return s_set (result, true, input, size);
    if (strcmp (type, "double") == 0)
        return s_double (input, size, result);
    if (strcmp (type, "sleep") == 0)
        return s_sleep (task, result);
    if (strcmp (type, "fail") == 0)
        return s_set (result, false, input, size);
    if (strcmp (type, "count") == 0)
        return s_count (task, result);
    return s_setf (result, false, "unknown built-in service '%s'", type);
}

static int
s_null_checkpoint (keel_svc_task_t *task, const void *data, size_t size)
{
    (void) task, (void) data, (void) size;
    return 0;
}

static int
s_null_output (keel_svc_task_t *task, const void *data, size_t size)
{
    (void) task, (void) data, (void) size;
    return -1;
}

static void
s_null_error (keel_svc_task_t *task, const char *text)
{
    (void) task, (void) text;
}

static msgpack_packer *
s_null_packer (keel_svc_task_t *task)
{
    (void) task;
    return NULL;
}

bool
keel_builtin_run (const char *type, const uint8_t *input, size_t size,
                  keel_builtin_result_t *result)
{
    static const keel_svc_api_t api = { s_null_checkpoint, s_null_output, s_null_error,
                                        s_null_packer };
    keel_svc_task_t task = { .abi = KEEL_SERVICE_ABI,
                             .service_type = type,
                             .service_id = "",
                             .input = input,
                             .input_size = size,
                             .api = &api };
    return keel_builtin_run_task (type, &task, result);
}
