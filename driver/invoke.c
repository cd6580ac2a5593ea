/*  invoke.c — msgpack invocations for drivers: build ["method", [args...]]
    inputs and read msgpack outputs (declared in keel/driver.h).
*/
#include "keel/driver.h"
#include "msgpack_bound.h"

#include <string.h>

static bool
s_method_valid (const char *method)
{
    size_t len = method ? strlen (method) : 0;
    if (len == 0 || len > KEEL_INVOCATION_METHOD_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = method[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '_'))
            return false;
    }
    return true;
}

keel_err
keel_invocation_begin (msgpack_sbuffer *buf, msgpack_packer *pk, const char *method, uint32_t nargs,
                       keel_error_t *err)
{
    msgpack_sbuffer_init (buf);
    msgpack_packer_init (pk, buf, msgpack_sbuffer_write);
    if (!s_method_valid (method))
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "method '%s' is not 1-%d characters of [A-Za-z0-9_]",
                               method ? method : "(null)", KEEL_INVOCATION_METHOD_MAX);
    size_t len = strlen (method);
    if (msgpack_pack_array (pk, 2) || msgpack_pack_str (pk, len)
        || msgpack_pack_str_body (pk, method, len) || msgpack_pack_array (pk, nargs))
        return keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
    return KEEL_OK;
}

keel_err
keel_service_invoke (keel_service_t *service, const char *method, const msgpack_object *args,
                     uint64_t *task_id_p, keel_error_t *err)
{
    if (args && args->type != MSGPACK_OBJECT_ARRAY)
        return keel_error_set (err, KEEL_ERR_INVALID, "invocation arguments must be an array");
    msgpack_sbuffer buf;
    msgpack_packer pk;
    uint32_t n = args ? args->via.array.size : 0;
    keel_err rc = keel_invocation_begin (&buf, &pk, method, n, err);
    for (uint32_t i = 0; rc == KEEL_OK && i < n; i++)
        if (msgpack_pack_object (&pk, args->via.array.ptr[i]))
            rc = keel_error_set (err, KEEL_ERR_NOMEM, "out of memory");
    if (rc == KEEL_OK)
        rc = keel_service_submit (service, buf.data, buf.size, task_id_p, err);
    msgpack_sbuffer_destroy (&buf);
    return rc;
}

//  Unpacks exactly one value from data[0..size).
static keel_err
s_unpack_one (const void *data, size_t size, msgpack_unpacked *unpacked, keel_error_t *err)
{
    msgpack_unpacked_init (unpacked);
    // Before msgpack-c, which would allocate what a header claims.
    keel_msgpack_bound_t bound = keel_msgpack_bounded (data, size, NULL);
    if (bound == KEEL_MSGPACK_TRUNCATED)
        return keel_error_set (err, KEEL_ERR_INVALID, "truncated msgpack (%zu bytes)", size);
    if (bound != KEEL_MSGPACK_BOUNDED)
        return keel_error_set (err, KEEL_ERR_INVALID, "not msgpack (parse error)");
    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack_next (unpacked, data, size, &off);
    if (rc == MSGPACK_UNPACK_CONTINUE || (rc != MSGPACK_UNPACK_SUCCESS && size == 0))
        return keel_error_set (err, KEEL_ERR_INVALID, "truncated msgpack (%zu bytes)", size);
    if (rc != MSGPACK_UNPACK_SUCCESS)
        return keel_error_set (err, KEEL_ERR_INVALID, "not msgpack (%s)",
                               rc == MSGPACK_UNPACK_NOMEM_ERROR ? "too large to decode"
                                                                : "parse error");
    if (off != size)
        return keel_error_set (err, KEEL_ERR_INVALID,
                               "trailing bytes after the msgpack value (%zu of %zu used)", off,
                               size);
    return KEEL_OK;
}

keel_err
keel_result_unpack (const keel_result_t *result, msgpack_unpacked *unpacked, keel_error_t *err)
{
    if (result->status != KEEL_TASK_OK) {
        msgpack_unpacked_init (unpacked);
        return keel_error_set (err, KEEL_ERR_STATE, "task %llu %s: %s",
                               (unsigned long long) result->task_id,
                               result->status == KEEL_TASK_CANCELLED ? "was cancelled" : "failed",
                               result->error ? result->error : "");
    }
    return s_unpack_one (result->output, result->output_size, unpacked, err);
}

keel_err
keel_invocation_parse (const void *data, size_t size, msgpack_unpacked *unpacked, char *method,
                       size_t method_size, msgpack_object *args, keel_error_t *err)
{
    keel_err rc = s_unpack_one (data, size, unpacked, err);
    if (rc != KEEL_OK)
        return rc;
    const msgpack_object *root = &unpacked->data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 2)
        return keel_error_set (err, KEEL_ERR_INVALID, "expected an array [method, [args...]]");
    const msgpack_object *m = &root->via.array.ptr[0];
    if (m->type != MSGPACK_OBJECT_STR || m->via.str.size == 0
        || m->via.str.size > KEEL_INVOCATION_METHOD_MAX || m->via.str.size >= method_size)
        return keel_error_set (err, KEEL_ERR_INVALID, "method must be a string of 1-%d characters",
                               KEEL_INVOCATION_METHOD_MAX);
    memcpy (method, m->via.str.ptr, m->via.str.size);
    method[m->via.str.size] = 0;
    // A NUL inside the name would cut it short ("run\0x" read as "run"):
    // the engine refuses such a name, so must the driver.
    if (memchr (m->via.str.ptr, 0, m->via.str.size) || !s_method_valid (method))
        return keel_error_set (err, KEEL_ERR_INVALID, "method name may hold only [A-Za-z0-9_]");
    if (root->via.array.ptr[1].type != MSGPACK_OBJECT_ARRAY)
        return keel_error_set (err, KEEL_ERR_INVALID, "arguments must be an array");
    *args = root->via.array.ptr[1];
    return KEEL_OK;
}
