/*  fuzz_cond.c — libFuzzer target for the condition language (common/cond.h):
    a service's `--require` text, parsed by keel-driver before it connects
    and again by the broker from SubmitService.condition (any client).

    The input is the condition text (a NUL ends it, as on the wire).
    Invariants:
      - a refused text gets an error naming a column ("column N: ..."),
        N in 1..length + 1;
      - an accepted text is at most KEEL_COND_MAX_LEN bytes, keeps its text,
        parses again, and evaluates (the same way twice) against fixed
        property sets, also one with no property at all; a false result
        explains itself with a terminated, non-empty "why".
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cond.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const char *s_sets[][13] = {
    { "host", "node-1", "os", "linux", "cores", "16", "memory_mb", "8192", "gpu", "a100", "a",
      "-1.5e3", NULL },
    { "a", "", "b", "x", "c", "10", "memory_mb", "nan", "gpu", "\"", NULL },
    { NULL },
};

static const char *
s_lookup (const char *name, void *arg)
{
    const char **props = arg;
    if (!name || strlen (name) > KEEL_COND_NAME_MAX)
        abort ();
    for (size_t i = 0; props[i]; i += 2)
        if (strcmp (props[i], name) == 0)
            return props[i + 1];
    return NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char *text = malloc (size + 1);
    if (!text)
        return 0;
    memcpy (text, data, size);
    text[size] = 0;
    size_t len = strlen (text);
    keel_error_t err = { "" };
    keel_cond_t *c = keel_cond_parse (text, &err);
    if (!c) {
        unsigned long col = 0;
        if (sscanf (err.text, "column %lu: ", &col) != 1 || col < 1 || col > len + 1)
            abort ();
        free (text);
        return 0;
    }
    if (len > KEEL_COND_MAX_LEN || strcmp (keel_cond_text (c), text) != 0)
        abort ();
    keel_cond_t *again = keel_cond_parse (keel_cond_text (c), &err);
    if (!again)
        abort ();
    for (size_t i = 0; i < sizeof s_sets / sizeof s_sets[0]; i++) {
        char why[300];
        memset (why, 'x', sizeof why);
        bool v = keel_cond_eval (c, s_lookup, (void *) s_sets[i], why, sizeof why);
        if (v != keel_cond_eval (again, s_lookup, (void *) s_sets[i], NULL, 0))
            abort ();
        if (!v && (strnlen (why, sizeof why) == sizeof why || why[0] == 0))
            abort ();
    }
    keel_cond_destroy (&again);
    keel_cond_destroy (&c);
    free (text);
    return 0;
}
