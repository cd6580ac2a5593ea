/*  jsonl.c — base64 and the keel-driver result line (JSON via common/json). */
#include "jsonl.h"

#include "json.h"

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
    else if (len - i == 2) {
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
keel_jsonl_text_ok (const uint8_t *data, size_t len)
{
    return keel_utf8_valid ((const char *) data, len);
}

// Text we did not make (an error from a task) may be anything: the writer
// escapes bytes that are not UTF-8, so the line stays valid JSON.
static void
s_kv_bytes (keel_json_t *j, const char *key, const void *data, size_t len)
{
    keel_json_key (j, key);
    keel_json_strn (j, data, len);
}

void
keel_jsonl_format_result (keel_jsonl_buf_t *buf, const keel_result_t *result,
                          const char *output_path)
{
    //  Written straight into buf's storage, kept from line to line.
    keel_json_t j;
    keel_json_init_buf (&j, buf->data, buf->cap);
    keel_json_object (&j);
    keel_json_kv_str (&j, "service", result->service_id ? result->service_id : "");
    keel_json_kv_uint (&j, "task", result->task_id);
    //  DESIGN §10 knows "ok" and "failed"; a cancelled task failed (its error says so).
    keel_json_kv_str (&j, "status", result->status == KEEL_TASK_OK ? "ok" : "failed");
    if (result->status == KEEL_TASK_OK) {
        if (output_path)
            keel_json_kv_str (&j, "output_file", output_path);
        else if (keel_jsonl_text_ok (result->output, result->output_size))
            s_kv_bytes (&j, "output", result->output, result->output_size);
        else {
            keel_jsonl_buf_t b64 = { 0 };
            keel_jsonl_append_base64 (&b64, result->output, result->output_size);
            keel_json_kv_str (&j, "output_b64", b64.len ? b64.data : "");
            j.failed |= b64.failed;
            keel_jsonl_buf_free (&b64);
        }
    }
    else {
        const char *error = result->error ? result->error : "";
        s_kv_bytes (&j, "error", error, strlen (error));
    }
    keel_json_kv_str (&j, "engine", result->engine_id ? result->engine_id : "");
    keel_json_kv_uint (&j, "execution", result->execution_id);
    keel_json_kv_uint (&j, "attempts", result->attempts);
    keel_json_end_object (&j);
    keel_json_raw (&j, "\n", 1);
    buf->data = j.buf;
    buf->cap = j.cap;
    buf->len = j.failed ? 0 : j.len;
    buf->failed = j.failed;
    if (buf->data)
        buf->data[buf->len] = 0;
}
