/* Unit tests for lib/json: scalars as text, strict numbers from strings, content hash. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

static void expect_decimal(json_t *v, const char *want, const char *why)
{
	char buf[64] = "untouched";
	const char *got_why = "unset";
	assert_non_null(v);
	int r = wj_json_decimal(v, buf, sizeof(buf), &got_why);
	json_decref(v);
	if (want) {
		assert_int_equal(r, 0);
		assert_string_equal(buf, want);
		assert_null(got_why);
	} else {
		assert_int_equal(r, -EINVAL);
		assert_string_equal(got_why, why);
	}
}

static void test_decimal(void **state)
{
	(void)state;
	/* WDT's decimal text, to its shortest exact form */
	expect_decimal(json_string("3.3000"), "3.3", NULL);
	expect_decimal(json_string("10.0000"), "10", NULL);
	expect_decimal(json_string("0.1000"), "0.1", NULL);
	expect_decimal(json_string("0.0000"), "0", NULL);
	expect_decimal(json_string("-0.0000"), "0", NULL);
	expect_decimal(json_string("-2.50"), "-2.5", NULL);
	expect_decimal(json_string("+7"), "7", NULL);
	expect_decimal(json_string("007.0100"), "7.01", NULL);
	expect_decimal(json_string("100"), "100", NULL);
	expect_decimal(json_string("0.05"), "0.05", NULL);
	expect_decimal(json_string("123456789012345"), "123456789012345", NULL);
	expect_decimal(json_string("12345678.1234567000"), "12345678.1234567", NULL);
	expect_decimal(json_string("0.000000000000001"), "0.000000000000001", NULL);
	expect_decimal(json_string("0000000000000000000000003.3"), "3.3", NULL);
	/* integers and reals as they arrive in JSON: the shortest text that reads back */
	expect_decimal(json_integer(2), "2", NULL);
	expect_decimal(json_integer(-40), "-40", NULL);
	expect_decimal(json_real(3.3), "3.3", NULL);
	expect_decimal(json_real(0.1), "0.1", NULL);
	expect_decimal(json_real(10.0), "10", NULL);
	expect_decimal(json_real(1e-7), "0.0000001", NULL);
	expect_decimal(json_real(1e14), "100000000000000", NULL);
	expect_decimal(json_real(-0.0), "0", NULL);
	/* refused, with the reason */
	expect_decimal(json_string("1e400"), NULL, "expected a number without an exponent");
	expect_decimal(json_string("3.3E+2"), NULL, "expected a number without an exponent");
	expect_decimal(json_string("99999999999999999999"), NULL, "more than 15 digits");
	expect_decimal(json_string("1234567890123456"), NULL, "more than 15 digits");
	expect_decimal(json_string("0.0000000000000001"), NULL, "more than 15 digits");
	expect_decimal(json_string("12345678.12345678"), NULL, "more than 15 digits");
	expect_decimal(json_integer(1234567890123456), NULL, "more than 15 digits");
	expect_decimal(json_real(1e20), NULL, "more than 15 digits");
	expect_decimal(json_real(0.1 + 0.2), NULL, "more than 15 digits"); /* 0.30000000000000004 */
	expect_decimal(json_real(1e-300), NULL, "more than 15 digits");
	static const char *const bad[] = {"", " 3", "3 ", "abc", "NaN", "nan", "inf", "-Infinity",
					  "0x10", "1e", "1.", ".5", "3,5", "--1", "1e+", "3abc",
					  "1.5.2", "-", "+"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_decimal(json_string(bad[i]), NULL, "expected a number");
	expect_decimal(json_stringn("1\0002", 3), NULL, "expected a number");
	expect_decimal(json_true(), NULL, "expected a number");
	expect_decimal(json_null(), NULL, "expected a number");
	expect_decimal(json_object(), NULL, "expected a number");
	/* the text must fit */
	char small[3];
	const char *why;
	json_t *v = json_string("3.3000");
	assert_int_equal(wj_json_decimal(v, small, sizeof(small), &why), -ENOSPC);
	json_decref(v);
}

static void expect_real(double d, const char *want)
{
	char buf[400];
	assert_int_equal(wj_real_text(d, buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
}

static void test_real_text(void **state)
{
	(void)state;
	expect_real(3.3, "3.3");
	expect_real(0.1, "0.1");
	expect_real(10.0, "10");
	expect_real(-2.5, "-2.5");
	expect_real(0.0, "0");
	expect_real(1e20, "100000000000000000000");
	expect_real(1e23, "100000000000000000000000"); /* not the binary value 9999...1611392 */
	expect_real(0.1 + 0.2, "0.30000000000000004");
	expect_real(1.0 / 3.0, "0.3333333333333333");
	expect_real(1e-5, "0.00001");
	expect_real(123456.789, "123456.789");
	char buf[400];
	assert_int_equal(wj_real_text(5e-324, buf, sizeof(buf)), 0);
	assert_int_equal(strlen(buf), 326);
	assert_int_equal(wj_real_text(-1.7976931348623157e308, buf, sizeof(buf)), 0);
	assert_int_equal(strlen(buf), 310);
	assert_int_equal(wj_real_text(1e20, buf, 21), -ENOSPC);
	assert_int_equal(wj_real_text(1e20, buf, 22), 0);
	/* every double reads back the same from its text, and no shorter text would */
	uint64_t x = 0x9E3779B97F4A7C15ULL;
	for (int i = 0; i < 20000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		double d;
		memcpy(&d, &x, sizeof(d));
		if (!isfinite(d))
			continue;
		assert_int_equal(wj_real_text(d, buf, sizeof(buf)), 0);
		assert_true(strtod(buf, NULL) == d);
		assert_null(strchr(buf, 'e'));
	}
	/* decimals of up to 15 digits come back exactly as written */
	for (int i = 0; i < 20000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		char text[40];
		int scale = (int)(x % 16);
		uint64_t mant = (x >> 8) % 1000000000000000ULL;
		snprintf(text, sizeof(text), "%" PRIu64, mant);
		char dec[48] = "";
		size_t len = strlen(text);
		if (scale && mant % 10) {
			if ((size_t)scale >= len)
				snprintf(dec, sizeof(dec), "0.%0*d%s", scale - (int)len, 0, text);
			else
				snprintf(dec, sizeof(dec), "%.*s.%s", (int)(len - (size_t)scale), text,
					 text + len - scale);
			if ((size_t)scale == len)
				snprintf(dec, sizeof(dec), "0.%s", text);
		} else {
			snprintf(dec, sizeof(dec), "%s", text);
		}
		assert_int_equal(wj_real_text(strtod(dec, NULL), buf, sizeof(buf)), 0);
		assert_string_equal(buf, dec);
	}
}

static void expect_body(const char *json, const char *want)
{
	json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
	assert_non_null(v);
	char *text = wj_json_dumps_body(v);
	assert_non_null(text);
	assert_string_equal(text, want);
	free(text);
	json_decref(v);
}

static void test_dumps_body(void **state)
{
	(void)state;
	/* reals in their shortest exact form; the rest as json_dumps(JSON_COMPACT) writes it */
	expect_body("{\"billdate\": \"2026-11-02\", \"material_entity\": [{\"qty\": 3.3,"
		    " \"n\": 0.1}, {\"qty\": 10.0, \"i\": 7, \"t\": true, \"f\": false, \"z\": null}]}",
		    "{\"billdate\":\"2026-11-02\",\"material_entity\":[{\"qty\":3.3,\"n\":0.1},"
		    "{\"qty\":10,\"i\":7,\"t\":true,\"f\":false,\"z\":null}]}");
	expect_body("[]", "[]");
	expect_body("{}", "{}");
	expect_body("1e20", "100000000000000000000");
	const char *plain = "{\"z\": \"盘盈 \\\"引号\\\" \\\\ / \\u0001 \\u001f \\b\\f\\n\\r\\t\","
			    " \"a\": [1, -2, {\"k\\n\": []}], \"x\": \"a\\u0000b\","
			    " \"m\": 9223372036854775807}";
	json_t *v = json_loads(plain, JSON_ALLOW_NUL, NULL);
	assert_non_null(v);
	char *mine = wj_json_dumps_body(v);
	char *theirs = json_dumps(v, JSON_COMPACT);
	assert_non_null(mine);
	assert_string_equal(mine, theirs);
	free(mine);
	free(theirs);
	json_decref(v);
	/* too deep for a body */
	json_t *deep = json_array();
	for (int i = 0; i < 100; i++) {
		json_t *outer = json_array();
		json_array_append_new(outer, deep);
		deep = outer;
	}
	assert_null(wj_json_dumps_body(deep));
	json_decref(deep);
	assert_null(wj_json_dumps_body(NULL));
}

static void test_dumps_pretty(void **state)
{
	(void)state;
	/* without reals: byte for byte what json_dumps(JSON_INDENT(2) | JSON_SORT_KEYS) writes */
	const char *plain = "{\"z\": {\"b\": [1, {}, [], \"x\\n\"], \"a\": null}, \"a\": true,"
			    " \"m\": {\"q\": [[2]], \"k\": \"盘盈\"}}";
	json_t *v = json_loads(plain, 0, NULL);
	assert_non_null(v);
	char *mine = wj_json_dumps_pretty(v);
	char *theirs = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS);
	assert_non_null(mine);
	assert_string_equal(mine, theirs);
	free(mine);
	free(theirs);
	json_decref(v);
	/* a stored body shows its quantities as they were sent */
	v = json_pack("{s:[{s:f, s:f}]}", "material_entity", "qty", 3.3, "n", 0.1);
	mine = wj_json_dumps_pretty(v);
	assert_string_equal(mine, "{\n  \"material_entity\": [\n    {\n      \"n\": 0.1,\n"
				  "      \"qty\": 3.3\n    }\n  ]\n}");
	free(mine);
	json_decref(v);
	assert_null(wj_json_dumps_pretty(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_str),    cmocka_unit_test(test_text),
		cmocka_unit_test(test_number), cmocka_unit_test(test_int),
		cmocka_unit_test(test_hash),   cmocka_unit_test(test_utf8_repair),
		cmocka_unit_test(test_decimal), cmocka_unit_test(test_real_text),
		cmocka_unit_test(test_dumps_body), cmocka_unit_test(test_dumps_pretty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
