/*  props.h — Java .properties file parser.

    Semantics of java.util.Properties.load: lines are key/value pairs; the
    key ends at the first unescaped '=', ':' or white space (white space
    around the separator is skipped); '#' or '!' as the first non-blank
    character starts a comment line; a line ending in an odd number of
    backslashes continues on the next line (leading white space of the
    continuation is dropped); escapes \t \n \r \f \\ \= \: \# \! \<space>
    and \uXXXX (encoded as UTF-8; a malformed \u is an error naming the
    line); any other \c is c. The last value of a repeated key wins (the
    list keeps every occurrence in order; consumers apply them in order).

    keel_props_t owns the strings it returns.
*/
#ifndef KEEL_PROPS_H
#define KEEL_PROPS_H

#include <stddef.h>
#include "error.h"

typedef struct _keel_props_t keel_props_t;

typedef struct {
    const char *key;
    const char *value;
    int line; // line where the entry starts (1-based)
} keel_prop_t;

// Parses a file. Returns NULL and fills err ("FILE: cannot open: No such
// file or directory", "FILE:LINE: malformed \uXXXX escape") on failure.
keel_props_t *keel_props_load_file (const char *path, keel_error_t *err);

// Parses text in memory; name is used in error messages instead of a path.
keel_props_t *keel_props_parse (const char *text, size_t len, const char *name, keel_error_t *err);

void keel_props_destroy (keel_props_t **self_p);

// Entries in file order (repeated keys appear more than once).
size_t keel_props_size (const keel_props_t *self);
const keel_prop_t *keel_props_at (const keel_props_t *self, size_t index);

// Name given at load (the path), for error messages.
const char *keel_props_name (const keel_props_t *self);

// The last value for key, or NULL.
const char *keel_props_get (const keel_props_t *self, const char *key);

#endif
