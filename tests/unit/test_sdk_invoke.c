/*  test_sdk_invoke.c — the driver's msgpack invocation helpers (keel/driver.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "keel/driver.h"

Test (sdk_invoke, an_invocation_built_by_a_driver_parses_back)
{
    msgpack_sbuffer buf;
    msgpack_packer pk;
    cr_assert_eq (keel_invocation_begin (&buf, &pk, "scale_by", 2, NULL), KEEL_OK);
    msgpack_pack_double (&pk, 1.5);
    msgpack_pack_array (&pk, 1);
    msgpack_pack_str_with_body (&pk, "deep", 4);
    msgpack_unpacked u;
    char method[KEEL_INVOCATION_METHOD_MAX + 1];
    msgpack_object args;
    keel_error_t err = { "" };
    cr_assert_eq (
        keel_invocation_parse (buf.data, buf.size, &u, method, sizeof method, &args, &err), KEEL_OK,
        "%s", err.text);
    cr_assert_str_eq (method, "scale_by");
    cr_assert_eq (args.via.array.size, 2);
    cr_assert_eq (args.via.array.ptr[0].via.f64, 1.5);
    cr_assert_eq (args.via.array.ptr[1].via.array.ptr[0].via.str.size, 4);
    msgpack_unpacked_destroy (&u);
    msgpack_sbuffer_destroy (&buf);
}

Test (sdk_invoke, a_bad_method_name_is_refused)
{
    const char *bad[] = { "", "has space", "dash-ed", NULL };
    for (int i = 0; i < 4; i++) {
        msgpack_sbuffer buf;
        msgpack_packer pk;
        keel_error_t err = { "" };
        cr_assert_eq (keel_invocation_begin (&buf, &pk, bad[i], 0, &err), KEEL_ERR_INVALID);
        cr_assert (strstr (err.text, "is not 1-64 characters"), "%s", err.text);
        msgpack_sbuffer_destroy (&buf);
    }
    char long_name[80];
    memset (long_name, 'a', 65);
    long_name[65] = 0;
    msgpack_sbuffer buf;
    msgpack_packer pk;
    cr_assert_eq (keel_invocation_begin (&buf, &pk, long_name, 0, NULL), KEEL_ERR_INVALID);
    msgpack_sbuffer_destroy (&buf);
}

Test (sdk_invoke, a_result_is_unpacked_only_when_it_is_one_ok_msgpack_value)
{
    keel_result_t r = { .status = KEEL_TASK_OK,
                        .output = (const uint8_t *) "\x92\x01\xc3",
                        .output_size = 3,
                        .error = "" };
    msgpack_unpacked u;
    keel_error_t err = { "" };
    cr_assert_eq (keel_result_unpack (&r, &u, &err), KEEL_OK, "%s", err.text);
    cr_assert_eq (u.data.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq (u.data.via.array.ptr[1].via.boolean, true);
    msgpack_unpacked_destroy (&u);

    r.output_size = 2; // truncated
    cr_assert_eq (keel_result_unpack (&r, &u, &err), KEEL_ERR_INVALID);
    cr_assert (strstr (err.text, "truncated"), "%s", err.text);
    msgpack_unpacked_destroy (&u);

    r.output = (const uint8_t *) "\x01\x02";
    r.output_size = 2; // two values
    cr_assert_eq (keel_result_unpack (&r, &u, &err), KEEL_ERR_INVALID);
    cr_assert (strstr (err.text, "trailing bytes"), "%s", err.text);
    msgpack_unpacked_destroy (&u);

    r.status = KEEL_TASK_FAILED;
    r.error = "boom";
    cr_assert_eq (keel_result_unpack (&r, &u, &err), KEEL_ERR_STATE);
    cr_assert (strstr (err.text, "failed: boom"), "%s", err.text);
    msgpack_unpacked_destroy (&u);
}
