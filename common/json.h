/*  json.h — a small JSON writer into a growing buffer.

    Enough for keel-admin replies and keel-driver's result lines: objects,
    arrays, strings (escaped per RFC 8259; bytes that are not valid UTF-8 are
    written as \u00XX of each byte so the output is always valid JSON),
    integers, doubles and booleans. Commas are inserted automatically.
    Nesting depth is bounded (KEEL_JSON_DEPTH); deeper opens are ignored
    and mark the writer failed. Allocation failure also marks it failed;
    keel_json_take then returns NULL.
*/
#ifndef KEEL_JSON_H
#define KEEL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEEL_JSON_DEPTH 32

typedef struct {
    char *buf;
    size_t len, cap;
    int depth;
    bool first[KEEL_JSON_DEPTH]; // no element written yet at this level
    bool after_key;              // a key was just written: no comma next
    bool failed;
} keel_json_t;

void keel_json_init (keel_json_t *j);
// Starts a writer on a buffer the caller keeps between texts (buf of cap
// bytes, or NULL and 0): the writer grows it with realloc; j->buf, j->len
// and j->cap are the text and the buffer after. keel-driver writes every
// result line into one buffer this way.
void keel_json_init_buf (keel_json_t *j, char *buf, size_t cap);
// Appends text as it is (no separator, no escaping): a line's "\n", say.
void keel_json_raw (keel_json_t *j, const char *text, size_t len);
// Frees the buffer (when not taken).
void keel_json_reset (keel_json_t *j);

void keel_json_object (keel_json_t *j);     // {
void keel_json_end_object (keel_json_t *j); // }
void keel_json_array (keel_json_t *j);      // [
void keel_json_end_array (keel_json_t *j);  // ]
void keel_json_key (keel_json_t *j, const char *key);
void keel_json_str (keel_json_t *j, const char *s);            // NULL → null
void keel_json_strn (keel_json_t *j, const char *s, size_t n); // may contain NUL bytes
void keel_json_int (keel_json_t *j, int64_t v);
// v in decimal written backwards so that it ends just before end (at
// most 20 bytes, no NUL); returns its first character.
char *keel_json_int_text (int64_t v, char *end);
void keel_json_uint (keel_json_t *j, uint64_t v);
void keel_json_double (keel_json_t *j, double v);
void keel_json_bool (keel_json_t *j, bool v);
void keel_json_null (keel_json_t *j);

// Convenience: key + value.
void keel_json_kv_str (keel_json_t *j, const char *key, const char *s);
void keel_json_kv_int (keel_json_t *j, const char *key, int64_t v);
void keel_json_kv_uint (keel_json_t *j, const char *key, uint64_t v);
void keel_json_kv_bool (keel_json_t *j, const char *key, bool v);

// Returns the NUL-terminated text (caller frees) and resets the writer, or
// NULL if anything failed.
char *keel_json_take (keel_json_t *j);

// True when bytes [s, s+n) are valid UTF-8 with no NUL.
bool keel_utf8_valid (const char *s, size_t n);

#endif
