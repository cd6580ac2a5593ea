/*  jsonl.h — the JSON lines keel-driver writes.

    keel_jsonl_buf_t is a growable text buffer (owned by the caller; free
    with keel_jsonl_buf_free). The JSON itself is written by common/json.h;
    task output that is not text (not UTF-8, or containing NUL) goes out as
    base64 (RFC 4648, padded) in "output_b64".
*/
#ifndef KEEL_DRIVER_JSONL_H
#define KEEL_DRIVER_JSONL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "keel/driver.h"

typedef struct {
    char *data; // NUL-terminated when len > 0
    size_t len;
    size_t cap;
    bool failed; // an allocation failed: the content is incomplete
} keel_jsonl_buf_t;

void keel_jsonl_buf_reset (keel_jsonl_buf_t *buf);
void keel_jsonl_buf_free (keel_jsonl_buf_t *buf);
void keel_jsonl_append_raw (keel_jsonl_buf_t *buf, const char *text, size_t len);
// Appends the base64 encoding of data, unquoted.
void keel_jsonl_append_base64 (keel_jsonl_buf_t *buf, const uint8_t *data, size_t len);

// True when data can go out as a JSON string: valid UTF-8 without NUL.
bool keel_jsonl_text_ok (const uint8_t *data, size_t len);

// Formats one result as a JSON line (with '\n') into buf (reset first):
//   {"service":"…","task":N,"status":"ok","output":"…","engine":"…","execution":N,"attempts":N}
// "failed" (also for cancelled tasks) carries "error" instead of "output"; output that is not
// text goes as "output_b64"; when output_path is not NULL the output is in
// that file and the line says "output_file" instead.
void keel_jsonl_format_result (keel_jsonl_buf_t *buf, const keel_result_t *result,
                               const char *output_path);

#endif
