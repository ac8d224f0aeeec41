/* Unit tests for lib/json: scalars as text, strict numbers from strings, content hash. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/json.h"

static void test_str(void **state)
{
	(void)state;
	json_t *o = json_pack("{s:s, s:i, s:n}", "a", "x", "b", 3, "c");
	assert_non_null(o);
	assert_string_equal(wj_json_str(o, "a"), "x");
	assert_null(wj_json_str(o, "b"));
	assert_null(wj_json_str(o, "c"));
	assert_null(wj_json_str(o, "missing"));
	assert_null(wj_json_str(NULL, "a"));
	json_t *arr = json_array();
	assert_null(wj_json_str(arr, "a"));
	json_decref(arr);
	json_decref(o);
}

static void expect_text(json_t *v, const char *want)
{
	char buf[64];
	assert_non_null(v);
	assert_int_equal(wj_json_text(v, buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
	json_decref(v);
}

static void test_text(void **state)
{
	(void)state;
	char buf[8];
	expect_text(json_string("盘盈"), "盘盈");
	expect_text(json_string(""), "");
	expect_text(json_integer(42), "42");
	expect_text(json_integer(-9223372036854775807LL - 1), "-9223372036854775808");
	expect_text(json_real(3.0), "3");
	expect_text(json_real(-0.5), "-0.5");
	expect_text(json_real(0.1), "0.1");
	expect_text(json_real(1e20), "1e+20");
	expect_text(json_real(1.0 / 3.0), "0.33333333333333331");

	json_t *v = json_true();
	assert_int_equal(wj_json_text(v, buf, sizeof(buf)), -EINVAL);
	v = json_null();
	assert_int_equal(wj_json_text(v, buf, sizeof(buf)), -EINVAL);
	v = json_object();
	assert_int_equal(wj_json_text(v, buf, sizeof(buf)), -EINVAL);
	json_decref(v);
	assert_int_equal(wj_json_text(NULL, buf, sizeof(buf)), -EINVAL);

	/* exactly fitting and one byte too long */
	v = json_string("1234567");
	assert_int_equal(wj_json_text(v, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "1234567");
	json_decref(v);
	v = json_string("12345678");
	assert_int_equal(wj_json_text(v, buf, sizeof(buf)), -ENOSPC);
	json_decref(v);
	v = json_integer(123456789);
	assert_int_equal(wj_json_text(v, buf, sizeof(buf)), -ENOSPC);
	json_decref(v);
}

static int num_of(json_t *v, double *out)
{
	int ret = wj_json_number(v, out);
	json_decref(v);
	return ret;
}

static void test_number(void **state)
{
	(void)state;
	double d;
	assert_int_equal(num_of(json_string("3.0000"), &d), 0);
	assert_true(d == 3.0);
	assert_int_equal(num_of(json_string("-2.5"), &d), 0);
	assert_true(d == -2.5);
	assert_int_equal(num_of(json_string("+7"), &d), 0);
	assert_true(d == 7.0);
	assert_int_equal(num_of(json_string("1e3"), &d), 0);
	assert_true(d == 1000.0);
	assert_int_equal(num_of(json_string("2.5E-1"), &d), 0);
	assert_true(d == 0.25);
	assert_int_equal(num_of(json_integer(12), &d), 0);
	assert_true(d == 12.0);
	assert_int_equal(num_of(json_real(0.125), &d), 0);
	assert_true(d == 0.125);

	static const char *const bad[] = {"", " 3", "3 ", " 3 ", "abc", "NaN", "nan", "inf",
					  "-Infinity", "0x10", "1e", "1.", ".5", "3,5", "--1",
					  "1e+", "3abc"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = -99;
		assert_int_equal(num_of(json_string(bad[i]), &d), -EINVAL);
		assert_true(d == -99);
	}
	assert_int_equal(num_of(json_string("1e999"), &d), -ERANGE);
	assert_int_equal(num_of(json_true(), &d), -EINVAL);
	assert_int_equal(num_of(json_null(), &d), -EINVAL);
	assert_int_equal(num_of(json_array(), &d), -EINVAL);
	assert_int_equal(wj_json_number(NULL, &d), -EINVAL);
	/* an embedded NUL makes the string invalid, not "1" */
	assert_int_equal(num_of(json_stringn("1\0002", 3), &d), -EINVAL);
}

static int int_of(json_t *v, int64_t *out)
{
	int ret = wj_json_int(v, out);
	json_decref(v);
	return ret;
}

static void test_int(void **state)
{
	(void)state;
	int64_t i;
	assert_int_equal(int_of(json_string("80"), &i), 0);
	assert_int_equal(i, 80);
	assert_int_equal(int_of(json_string("-3"), &i), 0);
	assert_int_equal(i, -3);
	assert_int_equal(int_of(json_string("4.0000"), &i), 0);
	assert_int_equal(i, 4);
	assert_int_equal(int_of(json_string("007"), &i), 0);
	assert_int_equal(i, 7);
	assert_int_equal(int_of(json_string("9223372036854775807"), &i), 0);
	assert_true(i == INT64_MAX);
	assert_int_equal(int_of(json_string("-9223372036854775808"), &i), 0);
	assert_true(i == INT64_MIN);
	assert_int_equal(int_of(json_string("9223372036854775808"), &i), -ERANGE);
	assert_int_equal(int_of(json_string("-9223372036854775809"), &i), -ERANGE);
	assert_int_equal(int_of(json_string("99999999999999999999999"), &i), -ERANGE);
	assert_int_equal(int_of(json_integer(5), &i), 0);
	assert_int_equal(i, 5);
	assert_int_equal(int_of(json_real(6.0), &i), 0);
	assert_int_equal(i, 6);
	assert_int_equal(int_of(json_real(6.5), &i), -EINVAL);
	assert_int_equal(int_of(json_real(1e19), &i), -ERANGE);

	static const char *const bad[] = {"", " 1", "1 ", "4.5", "4.0001", "4.", "1e3", "abc",
					  "0x1", "+", "-", "1.0.0"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		i = -99;
		assert_int_equal(int_of(json_string(bad[k]), &i), -EINVAL);
		assert_int_equal(i, -99);
	}
	assert_int_equal(int_of(json_false(), &i), -EINVAL);
	assert_int_equal(int_of(json_object(), &i), -EINVAL);
	assert_int_equal(wj_json_int(NULL, &i), -EINVAL);
}

static void test_hash(void **state)
{
	(void)state;
	uint8_t h1[32], h2[32], h3[32], h4[32];
	json_t *a = json_loads("{\"b\":{\"y\":1,\"x\":\"盘\"},\"a\":[1,\"2\"]}", 0, NULL);
	json_t *b = json_loads("{ \"a\" : [1, \"2\"], \"b\" : {\"x\":\"盘\", \"y\":1} }", 0, NULL);
	json_t *c = json_loads("{\"a\":[\"2\",1],\"b\":{\"x\":\"盘\",\"y\":1}}", 0, NULL);
	json_t *d = json_loads("{\"a\":[1,\"2\"],\"b\":{\"x\":\"盘\",\"y\":\"1\"}}", 0, NULL);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_non_null(d);
	assert_int_equal(wj_json_hash(a, h1), 0);
	assert_int_equal(wj_json_hash(b, h2), 0);
	assert_int_equal(wj_json_hash(c, h3), 0);
	assert_int_equal(wj_json_hash(d, h4), 0);
	assert_memory_equal(h1, h2, 32);     /* key order and whitespace do not matter */
	assert_memory_not_equal(h1, h3, 32); /* array order does */
	assert_memory_not_equal(h1, h4, 32); /* 1 and "1" differ */

	/* known value: SHA-256 of the canonical text {"a":1,"b":"x"} */
	json_t *e = json_pack("{s:s, s:i}", "b", "x", "a", 1);
	assert_int_equal(wj_json_hash(e, h1), 0);
	static const uint8_t want[32] = {
		0xec, 0xf9, 0xe9, 0x8e, 0xc0, 0x64, 0x1e, 0x23, 0x11, 0x3f, 0xf3,
		0xce, 0x8b, 0xdc, 0x78, 0xd0, 0xdd, 0xd2, 0x49, 0x88, 0x65, 0x17,
		0xfd, 0x4a, 0x7f, 0x68, 0xcc, 0x83, 0xd4, 0xe6, 0x56, 0x67};
	assert_memory_equal(h1, want, 32);
	/* scalars hash too */
	json_t *s = json_string("x");
	assert_int_equal(wj_json_hash(s, h2), 0);
	assert_int_equal(wj_json_hash(NULL, h2), -EINVAL);
	json_decref(s);
	json_decref(e);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(d);
}

static void test_utf8_repair(void **state)
{
	(void)state;
	wj_buf_t b = {0};
	const char *ok = "{\"n\":\"蓝色棉T恤\"}";
	assert_int_equal(wj_utf8_repair(ok, strlen(ok), &b), 0);
	assert_null(b.data);
	/* a lone continuation byte, a cut 3-byte sequence, an overlong '/', a surrogate */
	const char bad[] = "{\"n\":\"a\x80" "b\xE8\x93" "c\xC0\xAF" "d\xED\xA0\x80\"}";
	assert_int_equal(wj_utf8_repair(bad, sizeof(bad) - 1, &b), 1);
	json_t *j = json_loadb(b.data, b.len, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "n")),
			    "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD"
			    "d\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
	json_decref(j);
	/* the repaired text is whole: reusing the buffer for a second input starts afresh */
	assert_int_equal(wj_utf8_repair("x\xFF" "y", 3, &b), 1);
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.data, "x\xEF\xBF\xBD" "y", 5);
	wj_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_str),    cmocka_unit_test(test_text),
		cmocka_unit_test(test_number), cmocka_unit_test(test_int),
		cmocka_unit_test(test_hash),   cmocka_unit_test(test_utf8_repair),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
