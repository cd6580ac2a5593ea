/*  test_driver_json.c — keel-driver's JSON lines: layout, base64, binary output. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../driver/jsonl.h"

static char *
s_base64 (const char *data)
{
    static keel_jsonl_buf_t buf;
    keel_jsonl_buf_reset (&buf);
    keel_jsonl_append_base64 (&buf, (const uint8_t *) data, strlen (data));
    return buf.len ? buf.data : "";
}

Test (driver_json, encodes_base64_with_padding_per_rfc4648)
{
    cr_assert_str_eq (s_base64 (""), "");
    cr_assert_str_eq (s_base64 ("f"), "Zg==");
    cr_assert_str_eq (s_base64 ("fo"), "Zm8=");
    cr_assert_str_eq (s_base64 ("foo"), "Zm9v");
    cr_assert_str_eq (s_base64 ("foobar"), "Zm9vYmFy");
}

Test (driver_json, treats_only_utf8_without_nul_as_text)
{
    cr_assert (keel_jsonl_text_ok ((const uint8_t *) "plain", 5));
    cr_assert_not (keel_jsonl_text_ok ((const uint8_t *) "a\0b", 3));
    cr_assert_not (keel_jsonl_text_ok ((const uint8_t *) "\xff", 1));
    cr_assert (keel_jsonl_text_ok ((const uint8_t *) "", 0));
}

static keel_result_t
s_result (keel_task_status_t status, const char *output, size_t size, const char *error)
{
    keel_result_t r = { 0 };
    r.service_id = "svc-1";
    r.task_id = 7;
    r.status = status;
    r.output = (const uint8_t *) output;
    r.output_size = size;
    r.error = error;
    r.engine_id = "eng-1";
    r.execution_id = 42;
    r.attempts = 2;
    return r;
}

Test (driver_json, formats_a_successful_result_as_one_line)
{
    keel_jsonl_buf_t buf = { 0 };
    keel_result_t r = s_result (KEEL_TASK_OK, "14", 2, "");
    keel_jsonl_format_result (&buf, &r, NULL);
    cr_assert_str_eq (buf.data,
                      "{\"service\":\"svc-1\",\"task\":7,\"status\":\"ok\",\"output\":\"14\","
                      "\"engine\":\"eng-1\",\"execution\":42,\"attempts\":2}\n");
    keel_jsonl_buf_free (&buf);
}

Test (driver_json, formats_a_failure_with_error_instead_of_output)
{
    keel_jsonl_buf_t buf = { 0 };
    keel_result_t r = s_result (KEEL_TASK_FAILED, NULL, 0, "exit 3: \"bad\"");
    keel_jsonl_format_result (&buf, &r, NULL);
    cr_assert_str_eq (buf.data, "{\"service\":\"svc-1\",\"task\":7,\"status\":\"failed\","
                                "\"error\":\"exit 3: \\\"bad\\\"\",\"engine\":\"eng-1\","
                                "\"execution\":42,\"attempts\":2}\n");
    keel_jsonl_buf_free (&buf);
}

Test (driver_json, sends_binary_output_as_output_b64)
{
    keel_jsonl_buf_t buf = { 0 };
    keel_result_t r = s_result (KEEL_TASK_OK, "a\0\xff", 3, "");
    keel_jsonl_format_result (&buf, &r, NULL);
    cr_assert (strstr (buf.data, "\"output_b64\":\"YQD/\""));
    cr_assert_null (strstr (buf.data, "\"output\":"));
    keel_jsonl_buf_free (&buf);
}

Test (driver_json, names_the_output_file_when_outputs_go_to_a_directory)
{
    keel_jsonl_buf_t buf = { 0 };
    keel_result_t r = s_result (KEEL_TASK_OK, "14", 2, "");
    keel_jsonl_format_result (&buf, &r, "out/7.out");
    cr_assert (strstr (buf.data, "\"output_file\":\"out/7.out\""));
    cr_assert_null (strstr (buf.data, "\"output\":"));
    keel_jsonl_buf_free (&buf);
}
