/*  jsonl.c — JSON escaping, base64 and the keel-driver result line. */
#include "jsonl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
s_reserve (keel_jsonl_buf_t *buf, size_t more)
{
    if (buf->failed)
        return false;
    if (buf->len + more + 1 <= buf->cap)
        return true;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < buf->len + more + 1)
        cap *= 2;
    char *data = realloc (buf->data, cap);
    if (!data) {
        buf->failed = true;
        return false;
    }
    buf->data = data;
    buf->cap = cap;
    return true;
}

void
keel_jsonl_buf_reset (keel_jsonl_buf_t *buf)
{
    buf->len = 0;
    buf->failed = false;
    if (buf->data)
        buf->data[0] = 0;
}

void
keel_jsonl_buf_free (keel_jsonl_buf_t *buf)
{
    free (buf->data);
    memset (buf, 0, sizeof *buf);
}

void
keel_jsonl_append_raw (keel_jsonl_buf_t *buf, const char *text, size_t len)
{
    if (!s_reserve (buf, len))
        return;
    memcpy (buf->data + buf->len, text, len);
    buf->len += len;
    buf->data[buf->len] = 0;
}

void
keel_jsonl_append_string (keel_jsonl_buf_t *buf, const char *text, size_t len)
{
    //  Worst case every byte becomes \u00XX (6 bytes), plus the quotes.
    if (!s_reserve (buf, len * 6 + 2))
        return;
    char *out = buf->data + buf->len;
    *out++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) text[i];
        switch (c) {
            case '"': *out++ = '\\'; *out++ = '"'; break;
            case '\\': *out++ = '\\'; *out++ = '\\'; break;
            case '\n': *out++ = '\\'; *out++ = 'n'; break;
            case '\r': *out++ = '\\'; *out++ = 'r'; break;
            case '\t': *out++ = '\\'; *out++ = 't'; break;
            case '\b': *out++ = '\\'; *out++ = 'b'; break;
            case '\f': *out++ = '\\'; *out++ = 'f'; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    snprintf (out, 7, "\\u%04x", c);
                    out += 6;
                }
                else
                    *out++ = (char) c;
        }
    }
    *out++ = '"';
    buf->len = (size_t) (out - buf->data);
    buf->data[buf->len] = 0;
}

void
keel_jsonl_append_base64 (keel_jsonl_buf_t *buf, const uint8_t *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (!s_reserve (buf, (len + 2) / 3 * 4))
        return;
    char *out = buf->data + buf->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t) data[i] << 16 | (uint32_t) data[i + 1] << 8 | data[i + 2];
        *out++ = alphabet[v >> 18 & 63];
        *out++ = alphabet[v >> 12 & 63];
        *out++ = alphabet[v >> 6 & 63];
        *out++ = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t) data[i] << 16;
        *out++ = alphabet[v >> 18 & 63];
        *out++ = alphabet[v >> 12 & 63];
        *out++ = '=';
        *out++ = '=';
    }
    else
    if (len - i == 2) {
        uint32_t v = (uint32_t) data[i] << 16 | (uint32_t) data[i + 1] << 8;
        *out++ = alphabet[v >> 18 & 63];
        *out++ = alphabet[v >> 12 & 63];
        *out++ = alphabet[v >> 6 & 63];
        *out++ = '=';
    }
    buf->len = (size_t) (out - buf->data);
    buf->data[buf->len] = 0;
}

bool
keel_jsonl_utf8_valid (const uint8_t *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = data[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) { n = 2; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { n = 3; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { n = 4; cp = c & 0x07; min = 0x10000; }
        else return false;
        if (i + n > len)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((data[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (data[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n;
    }
    return true;
}

bool
keel_jsonl_text_ok (const uint8_t *data, size_t len)
{
    return (len == 0 || !memchr (data, 0, len)) && keel_jsonl_utf8_valid (data, len);
}

static void
s_append_number (keel_jsonl_buf_t *buf, const char *key, uint64_t value)
{
    char text[64];
    int n = snprintf (text, sizeof text, ",\"%s\":%" PRIu64, key, value);
    keel_jsonl_append_raw (buf, text, (size_t) n);
}

static void
s_append_field (keel_jsonl_buf_t *buf, const char *key, const char *value, size_t len)
{
    keel_jsonl_append_raw (buf, ",\"", 2);
    keel_jsonl_append_raw (buf, key, strlen (key));
    keel_jsonl_append_raw (buf, "\":", 2);
    if (keel_jsonl_text_ok ((const uint8_t *) value, len))
        keel_jsonl_append_string (buf, value, len);
    else {
        //  A string we did not make (an error text): never emit invalid JSON.
        keel_jsonl_append_raw (buf, "\"", 1);
        keel_jsonl_append_base64 (buf, (const uint8_t *) value, len);
        keel_jsonl_append_raw (buf, "\"", 1);
    }
}

void
keel_jsonl_format_result (keel_jsonl_buf_t *buf, const keel_result_t *result, const char *output_path)
{
    keel_jsonl_buf_reset (buf);
    keel_jsonl_append_raw (buf, "{\"service\":", 11);
    const char *sid = result->service_id ? result->service_id : "";
    keel_jsonl_append_string (buf, sid, strlen (sid));
    s_append_number (buf, "task", result->task_id);
    //  DESIGN §10 knows "ok" and "failed"; a cancelled task failed (its error says so).
    const char *status = result->status == KEEL_TASK_OK ? "ok" : "failed";
    s_append_field (buf, "status", status, strlen (status));
    if (result->status == KEEL_TASK_OK) {
        if (output_path)
            s_append_field (buf, "output_file", output_path, strlen (output_path));
        else
        if (keel_jsonl_text_ok (result->output, result->output_size))
            s_append_field (buf, "output", (const char *) result->output, result->output_size);
        else {
            keel_jsonl_append_raw (buf, ",\"output_b64\":\"", 15);
            keel_jsonl_append_base64 (buf, result->output, result->output_size);
            keel_jsonl_append_raw (buf, "\"", 1);
        }
    }
    else {
        const char *error = result->error ? result->error : "";
        s_append_field (buf, "error", error, strlen (error));
    }
    const char *engine = result->engine_id ? result->engine_id : "";
    s_append_field (buf, "engine", engine, strlen (engine));
    s_append_number (buf, "execution", result->execution_id);
    s_append_number (buf, "attempts", result->attempts);
    keel_jsonl_append_raw (buf, "}\n", 2);
}
