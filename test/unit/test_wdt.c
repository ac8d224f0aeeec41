/* Unit tests for lib/wdt: signature vectors, request building, response classification, order
 * helpers, and one query round trip against a loopback server. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "lib/http.h"
#include "lib/json.h"
#include "lib/wdt.h"

#define KV(k, v) {(char *)(k), (char *)(v)}
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode one form component (strict: only %XX escapes, which the encoder must use). */
static char *form_decode(const char *s, size_t len)
{
	char *out = malloc(len + 1), *o = out;
	assert_non_null(out);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%') {
			assert_true(i + 2 < len);
			int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
			assert_true(h >= 0 && l >= 0);
			*o++ = (char)(h * 16 + l);
			i += 2;
		} else {
			/* everything else must be an unreserved byte */
			assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					       "0123456789-._~", s[i]));
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

typedef struct form {
	wj_kv_t kv[32];
	size_t n;
} form_t;

static void form_parse(const char *body, form_t *f)
{
	f->n = 0;
	const char *p = body;
	while (*p) {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		assert_non_null(eq);
		assert_true(f->n < N(f->kv));
		f->kv[f->n].key = form_decode(p, (size_t)(eq - p));
		f->kv[f->n].value = form_decode(eq + 1, len - (size_t)(eq - p) - 1);
		f->n++;
		p += len + (amp ? 1 : 0);
	}
}

static void form_free(form_t *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->kv[i].key);
		free(f->kv[i].value);
	}
	f->n = 0;
}

static const char *form_get(const form_t *f, const char *key)
{
	const char *found = NULL;
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->kv[i].key, key)) {
			assert_null(found); /* no key twice */
			found = f->kv[i].value;
		}
	return found;
}

/* The form holds exactly the expected pairs (any order). */
static void form_expect(const form_t *f, const wj_kv_t *want, size_t n)
{
	assert_int_equal(f->n, n);
	for (size_t i = 0; i < n; i++) {
		const char *v = form_get(f, want[i].key);
		if (!v)
			fail_msg("missing field %s", want[i].key);
		assert_string_equal(v, want[i].value);
	}
}

static void md5_hex_of(const char *s, char out[33])
{
	unsigned char md[16];
	unsigned len = 0;
	static const char digs[] = "0123456789abcdef";
	assert_int_equal(EVP_Digest(s, strlen(s), md, &len, EVP_md5(), NULL), 1);
	assert_int_equal(len, 16);
	for (int i = 0; i < 16; i++) {
		out[2 * i] = digs[md[i] >> 4];
		out[2 * i + 1] = digs[md[i] & 15];
	}
	out[32] = '\0';
}

/* ---- signatures ---- */

static const wj_kv_t qimen_vec[] = {
	KV("app_key", "12345678"),
	KV("end_time", "2024-01-01 12:00:00"),
	KV("format", "json"),
	KV("method", "wdt.stockin.order.query"),
	KV("order_type", "4"),
	KV("page_no", "0"),
	KV("page_size", "40"),
	KV("sid", "test2"),
	KV("sign_method", "md5"),
	KV("start_time", "2024-01-01 00:00:00"),
	KV("target_app_key", "21363512"),
	KV("timestamp", "2024-01-01 12:00:00"),
	KV("v", "2.0"),
};

static const wj_kv_t openapi2_vec[] = {
	KV("appkey", "test2-xx"),
	KV("end_time", "2016-08-01 13:00:00"),
	KV("page_no", "0"),
	KV("page_size", "40"),
	KV("sid", "test2"),
	KV("start_time", "2016-08-01 12:00:00"),
	KV("timestamp", "1470042310"),
};

static void test_sign_qimen(void **state)
{
	(void)state;
	char sig[33];
	wj_wdt_sign_qimen(qimen_vec, N(qimen_vec), "testsecret", sig);
	assert_string_equal(sig, "EAE9CFE97298369077F4B47732AEF272");

	/* input order, a "sign" parameter and empty values do not matter */
	wj_kv_t shuffled[N(qimen_vec) + 3];
	for (size_t i = 0; i < N(qimen_vec); i++)
		shuffled[i] = qimen_vec[N(qimen_vec) - 1 - i];
	shuffled[N(qimen_vec)] = (wj_kv_t)KV("sign", "0000");
	shuffled[N(qimen_vec) + 1] = (wj_kv_t)KV("warehouse_no", "");
	shuffled[N(qimen_vec) + 2] = (wj_kv_t)KV("aaa", NULL);
	wj_wdt_sign_qimen(shuffled, N(shuffled), "testsecret", sig);
	assert_string_equal(sig, "EAE9CFE97298369077F4B47732AEF272");

	/* any change of a value or the secret changes the signature */
	shuffled[0] = (wj_kv_t)KV("v", "2.1");
	wj_wdt_sign_qimen(shuffled, N(shuffled), "testsecret", sig);
	assert_string_not_equal(sig, "EAE9CFE97298369077F4B47732AEF272");
	wj_wdt_sign_qimen(qimen_vec, N(qimen_vec), "testsecreT", sig);
	assert_string_not_equal(sig, "EAE9CFE97298369077F4B47732AEF272");

	/* definition check on a tiny input: MD5("s" "a1" "b2" "s"), uppercase */
	const wj_kv_t two[] = {KV("b", "2"), KV("a", "1")};
	char want[33];
	md5_hex_of("sa1b2s", want);
	for (char *c = want; *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c = (char)(*c - 'a' + 'A');
	wj_wdt_sign_qimen(two, 2, "s", sig);
	assert_string_equal(sig, want);
	/* bytewise order: "Z" (0x5a) sorts before "a", "a" before "a_" */
	const wj_kv_t case_keys[] = {KV("a_", "3"), KV("a", "2"), KV("Z", "1")};
	md5_hex_of("sZ1a2a_3s", want);
	for (char *c = want; *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c = (char)(*c - 'a' + 'A');
	wj_wdt_sign_qimen(case_keys, 3, "s", sig);
	assert_string_equal(sig, want);
}

static void test_sign_openapi2(void **state)
{
	(void)state;
	char sig[33];
	wj_buf_t b = {0};
	assert_int_equal(wj_wdt_openapi2_pack(openapi2_vec, N(openapi2_vec), &b), 0);
	assert_string_equal(b.data,
			    "06-appkey:0008-test2-xx;08-end_time:0019-2016-08-01 13:00:00;"
			    "07-page_no:0001-0;09-page_size:0002-40;03-sid:0005-test2;"
			    "10-start_time:0019-2016-08-01 12:00:00;09-timestamp:0010-1470042310");
	wj_buf_free(&b);
	wj_wdt_sign_openapi2(openapi2_vec, N(openapi2_vec), "12345", sig);
	assert_string_equal(sig, "ad4e6fe037ea6e3ba4768317be9d1309");
}

static void test_sign_openapi2_code_points(void **state)
{
	(void)state;
	/* lengths count code points: 测试仓 is 3 (9 bytes), 笔🖊 A is 4 (10 bytes) */
	const wj_kv_t p[] = {
		KV("warehouse_no", "测试仓"), KV("timestamp", "1470042310"), KV("sid", "test2"),
		KV("goods_name", "笔🖊 A"),   KV("appkey", "test2-xx"),       KV("remark", ""),
		KV("sign", "ignored"),
	};
	static const char packed[] = "06-appkey:0008-test2-xx;10-goods_name:0004-笔🖊 A;"
				     "03-sid:0005-test2;09-timestamp:0010-1470042310;"
				     "12-warehouse_no:0003-测试仓";
	wj_buf_t b = {0};
	assert_int_equal(wj_wdt_openapi2_pack(p, N(p), &b), 0);
	assert_string_equal(b.data, packed);
	wj_buf_free(&b);

	char want[33], sig[33];
	char with_secret[256];
	snprintf(with_secret, sizeof(with_secret), "%s12345", packed);
	md5_hex_of(with_secret, want);
	assert_string_equal(want, "cb6112c0fb1aea089323f33f0009d101");
	wj_wdt_sign_openapi2(p, N(p), "12345", sig);
	assert_string_equal(sig, want);

	/* empty input packs to nothing: the signature is MD5(secret) */
	assert_int_equal(wj_wdt_openapi2_pack(p, 0, &b), 0);
	assert_true(!b.data || !b.data[0]);
	wj_buf_free(&b);
	md5_hex_of("12345", want);
	wj_wdt_sign_openapi2(NULL, 0, "12345", sig);
	assert_string_equal(sig, want);
}

/* ---- request building ---- */

static const wj_wdt_opts_t qimen_opts = {
	.api = WJ_WDT_QIMEN,
	.url = "http://127.0.0.1:9/router/qm",
	.sid = "test2",
	.app_key = "12345678",
	.app_secret = "testsecret",
	.target_app_key = "21363512",
	.tz_offset = 8 * 3600,
};

static const wj_wdt_opts_t openapi2_opts = {
	.api = WJ_WDT_OPENAPI2,
	.url = "http://127.0.0.1:9/openapi2/",
	.sid = "test2",
	.app_key = "test2-xx",
	.app_secret = "12345",
	.tz_offset = 8 * 3600,
};

#define T_2024 1704081600 /* 2024-01-01 12:00:00 +08:00 */

static void test_build_qimen(void **state)
{
	(void)state;
	const wj_kv_t biz[] = {
		KV("start_time", "2024-01-01 00:00:00"), KV("end_time", "2024-01-01 12:00:00"),
		KV("order_type", "4"),                   KV("page_no", "0"),
		KV("page_size", "40"),                   KV("status", ""),
		KV("warehouse_no", NULL),
	};
	wj_buf_t url = {0}, body = {0};
	form_t f;
	assert_int_equal(wj_wdt_build(&qimen_opts, "wdt.stockin.order.query", biz, N(biz), T_2024,
				      &url, &body),
			 0);
	assert_string_equal(url.data, "http://127.0.0.1:9/router/qm");
	/* spaces and colons are percent-encoded */
	assert_non_null(strstr(body.data, "timestamp=2024-01-01%2012%3A00%3A00"));
	form_parse(body.data, &f);
	wj_kv_t want[N(qimen_vec) + 1];
	memcpy(want, qimen_vec, sizeof(qimen_vec));
	want[N(qimen_vec)] = (wj_kv_t)KV("sign", "EAE9CFE97298369077F4B47732AEF272");
	form_expect(&f, want, N(want)); /* status and warehouse_no (empty) not sent */
	form_free(&f);

	/* no target_app_key: not sent, and not signed */
	wj_wdt_opts_t o = qimen_opts;
	o.target_app_key = "";
	assert_int_equal(wj_wdt_build(&o, "wdt.stockin.order.query", biz, N(biz), T_2024, &url,
				      &body),
			 0);
	form_parse(body.data, &f);
	assert_int_equal(f.n, N(qimen_vec));
	assert_null(form_get(&f, "target_app_key"));
	char sig[33];
	wj_wdt_sign_qimen(f.kv, f.n, "testsecret", sig);
	assert_string_equal(form_get(&f, "sign"), sig);
	assert_string_not_equal(sig, "EAE9CFE97298369077F4B47732AEF272");
	form_free(&f);

	/* UTF-8 values are percent-encoded byte by byte */
	const wj_kv_t cn[] = {KV("warehouse_no", "仓 1&=")};
	assert_int_equal(wj_wdt_build(&qimen_opts, "wdt.stockin.order.query", cn, 1, T_2024, &url,
				      &body),
			 0);
	assert_non_null(strstr(body.data, "warehouse_no=%E4%BB%93%201%26%3D"));
	form_parse(body.data, &f);
	assert_string_equal(form_get(&f, "warehouse_no"), "仓 1&=");
	form_free(&f);

	wj_buf_free(&url);
	wj_buf_free(&body);
}

static void test_build_qimen_tz(void **state)
{
	(void)state;
	static const char *const zones[] = {"UTC", "America/New_York", "Asia/Tokyo"};
	wj_buf_t url = {0}, body = {0};
	form_t f;
	for (size_t i = 0; i < N(zones); i++) {
		setenv("TZ", zones[i], 1);
		tzset();
		assert_int_equal(wj_wdt_build(&qimen_opts, "wdt.stockin.order.query", NULL, 0,
					      T_2024, &url, &body),
				 0);
		form_parse(body.data, &f);
		assert_string_equal(form_get(&f, "timestamp"), "2024-01-01 12:00:00");
		form_free(&f);
	}
	/* it follows tz_offset instead */
	wj_wdt_opts_t o = qimen_opts;
	o.tz_offset = -5 * 3600;
	assert_int_equal(
		wj_wdt_build(&o, "wdt.stockin.order.query", NULL, 0, T_2024, &url, &body), 0);
	form_parse(body.data, &f);
	assert_string_equal(form_get(&f, "timestamp"), "2023-12-31 23:00:00");
	form_free(&f);
	unsetenv("TZ");
	tzset();
	wj_buf_free(&url);
	wj_buf_free(&body);
}

static void test_build_openapi2(void **state)
{
	(void)state;
	const wj_kv_t biz[] = {
		KV("start_time", "2016-08-01 12:00:00"),
		KV("end_time", "2016-08-01 13:00:00"),
		KV("page_no", "0"),
		KV("page_size", "40"),
		KV("order_type", ""),
	};
	wj_buf_t url = {0}, body = {0};
	form_t f;
	assert_int_equal(wj_wdt_build(&openapi2_opts, "wdt.stockin.order.query", biz, N(biz),
				      1470042310, &url, &body),
			 0);
	assert_string_equal(url.data, "http://127.0.0.1:9/openapi2/stockin_order_query.php");
	form_parse(body.data, &f);
	wj_kv_t want[N(openapi2_vec) + 1];
	memcpy(want, openapi2_vec, sizeof(openapi2_vec));
	want[N(openapi2_vec)] = (wj_kv_t)KV("sign", "ad4e6fe037ea6e3ba4768317be9d1309");
	form_expect(&f, want, N(want));
	form_free(&f);

	/* a '/' is added when missing; other methods map to their script */
	wj_wdt_opts_t o = openapi2_opts;
	o.url = "https://sandbox.example/openapi2";
	assert_int_equal(wj_wdt_build(&o, "wdt.stockout.order.query.trade", NULL, 0, 1, &url,
				      &body),
			 0);
	assert_string_equal(url.data,
			    "https://sandbox.example/openapi2/stockout_order_query_trade.php");
	assert_int_equal(wj_wdt_build(&o, "vip_stock_query", NULL, 0, 1, &url, &body), 0);
	assert_string_equal(url.data, "https://sandbox.example/openapi2/vip_stock_query.php");
	form_parse(body.data, &f);
	assert_int_equal(f.n, 4);
	assert_string_equal(form_get(&f, "timestamp"), "1");
	form_free(&f);

	/* methods that cannot name a script are refused, and leave the buffers empty */
	static const char *const bad[] = {"wdt.", "", "wdt.../x", "wdt.a b", "wdt.a?x=1"};
	for (size_t i = 0; i < N(bad); i++) {
		assert_int_equal(wj_wdt_build(&o, bad[i], NULL, 0, 1, &url, &body), -EINVAL);
		assert_true(!url.data || !url.len);
		assert_true(!body.data || !body.len);
	}
	wj_buf_free(&url);
	wj_buf_free(&body);
}

static void test_build_invalid(void **state)
{
	(void)state;
	wj_buf_t url = {0}, body = {0};
	const wj_kv_t dup_sys[] = {KV("sid", "other")};
	const wj_kv_t dup_sign[] = {KV("sign", "x")};
	const wj_kv_t no_key[] = {KV("", "x")};
	assert_int_equal(wj_wdt_build(&qimen_opts, "m", dup_sys, 1, 1, &url, &body), -EINVAL);
	assert_int_equal(wj_wdt_build(&openapi2_opts, "m", dup_sys, 1, 1, &url, &body), -EINVAL);
	assert_int_equal(wj_wdt_build(&qimen_opts, "m", dup_sign, 1, 1, &url, &body), -EINVAL);
	assert_int_equal(wj_wdt_build(&qimen_opts, "m", no_key, 1, 1, &url, &body), -EINVAL);
	wj_wdt_opts_t o = qimen_opts;
	o.sid = "";
	assert_int_equal(wj_wdt_build(&o, "m", NULL, 0, 1, &url, &body), -EINVAL);
	o = qimen_opts;
	o.url = NULL;
	assert_int_equal(wj_wdt_build(&o, "m", NULL, 0, 1, &url, &body), -EINVAL);
	o = qimen_opts;
	o.api = (wj_wdt_api_t)7;
	assert_int_equal(wj_wdt_build(&o, "m", NULL, 0, 1, &url, &body), -EINVAL);
	assert_int_equal(wj_wdt_build(&qimen_opts, "", NULL, 0, 1, &url, &body), -EINVAL);
	/* "sid" is a system parameter of qimen too, "appkey" only of openapi2 */
	const wj_kv_t appkey[] = {KV("appkey", "x")};
	assert_int_equal(wj_wdt_build(&qimen_opts, "m", appkey, 1, 1, &url, &body), 0);
	assert_int_equal(wj_wdt_build(&openapi2_opts, "m", appkey, 1, 1, &url, &body), -EINVAL);
	wj_buf_free(&url);
	wj_buf_free(&body);
}

/* ---- parsing ---- */

static int parse_str(long status, const char *body, int64_t retry_after, wj_wdt_result_t *r)
{
	return wj_wdt_parse(status, body, body ? strlen(body) : 0, retry_after, r);
}

static void test_parse_ok(void **state)
{
	(void)state;
	wj_wdt_result_t r;
	/* Qimen envelope, numbers as strings */
	assert_int_equal(parse_str(200,
				   "{\"response\":{\"errorcode\":\"0\",\"message\":\"\",\"flag\":"
				   "\"success\",\"total_count\":\"2\",\"stockin_list\":["
				   "{\"stockin_id\":\"11\",\"status\":\"80\"},"
				   "{\"stockin_id\":12,\"status\":80}]}}",
				   -1, &r),
			 0);
	assert_int_equal(r.cls, WJ_WDT_OK);
	assert_int_equal(r.http_status, 200);
	assert_int_equal(r.total_count, 2);
	assert_int_equal(json_array_size(r.orders), 2);
	assert_int_equal(r.retry_after_ms, -1);
	assert_string_equal(r.code, "");
	assert_string_equal(r.error, "");
	char id[32];
	assert_int_equal(wj_wdt_order_key(json_array_get(r.orders, 1), id, sizeof(id)), 0);
	assert_string_equal(id, "12");
	/* the caller may take the orders */
	json_t *orders = r.orders;
	r.orders = NULL;
	wj_wdt_result_clear(&r);
	assert_int_equal(json_array_size(orders), 2);
	json_decref(orders);

	/* openapi2 envelope */
	assert_int_equal(parse_str(200,
				   "{\"code\":0,\"message\":\"\",\"total_count\":1,"
				   "\"stockin_list\":[{\"stockin_id\":5}]}",
				   -1, &r),
			 0);
	assert_int_equal(r.cls, WJ_WDT_OK);
	assert_int_equal(r.total_count, 1);
	assert_int_equal(json_array_size(r.orders), 1);
	wj_wdt_result_clear(&r);
	assert_null(r.orders);

	/* nothing found: list absent or null → empty array */
	static const char *const empty_bodies[] = {
		"{\"code\":0,\"total_count\":0}",
		"{\"code\":\"0\",\"total_count\":\"0\",\"stockin_list\":null}",
		"{\"response\":{\"errorcode\":0,\"total_count\":0,\"stockin_list\":[]}}",
	};
	for (size_t i = 0; i < N(empty_bodies); i++) {
		assert_int_equal(parse_str(200, empty_bodies[i], -1, &r), 0);
		assert_int_equal(r.cls, WJ_WDT_OK);
		assert_int_equal(r.total_count, 0);
		assert_true(json_is_array(r.orders));
		assert_int_equal(json_array_size(r.orders), 0);
		wj_wdt_result_clear(&r);
	}
	/* a later page may be empty although total_count counts the whole window */
	assert_int_equal(parse_str(200, "{\"code\":0,\"total_count\":150,\"stockin_list\":[]}", -1,
				   &r),
			 0);
	assert_int_equal(r.total_count, 150);
	wj_wdt_result_clear(&r);
}

static void expect_class(long status, const char *body, int64_t retry_after,
			 wj_wdt_class_t cls, const char *error)
{
	wj_wdt_result_t r;
	assert_int_equal(parse_str(status, body, retry_after, &r), -EIO);
	if (r.cls != cls)
		fail_msg("class %d, want %d for %s (%s)", r.cls, cls, body ? body : "(null)",
			 r.error);
	assert_null(r.orders);
	assert_int_equal(r.http_status, status);
	if (error)
		assert_string_equal(r.error, error);
	else
		assert_true(!strncmp(r.error, "wdt: ", 5));
	if (cls != WJ_WDT_RATE_LIMITED)
		assert_int_equal(r.retry_after_ms, -1);
	wj_wdt_result_clear(&r);
}

static void test_parse_rate_limited(void **state)
{
	(void)state;
	wj_wdt_result_t r;
	assert_int_equal(parse_str(200, "{\"code\":1012,\"message\":\"系统调用频繁\"}", -1, &r),
			 -EIO);
	assert_int_equal(r.cls, WJ_WDT_RATE_LIMITED);
	assert_int_equal(r.retry_after_ms, 30000);
	assert_string_equal(r.code, "1012");
	assert_string_equal(r.error, "wdt: code 1012: 系统调用频繁");
	wj_wdt_result_clear(&r);

	/* a longer Retry-After wins, a shorter one is raised to 30 s */
	assert_int_equal(parse_str(200, "{\"code\":\"1012\",\"message\":\"x\"}", 90000, &r), -EIO);
	assert_int_equal(r.cls, WJ_WDT_RATE_LIMITED);
	assert_int_equal(r.retry_after_ms, 90000);
	wj_wdt_result_clear(&r);
	assert_int_equal(parse_str(200, "{\"response\":{\"errorcode\":\"1012\"}}", 5000, &r), -EIO);
	assert_int_equal(r.cls, WJ_WDT_RATE_LIMITED);
	assert_int_equal(r.retry_after_ms, 30000);
	wj_wdt_result_clear(&r);

	/* HTTP 429, whatever the body */
	assert_int_equal(parse_str(429, "<html>slow down</html>", 45000, &r), -EIO);
	assert_int_equal(r.cls, WJ_WDT_RATE_LIMITED);
	assert_int_equal(r.retry_after_ms, 45000);
	assert_string_equal(r.error, "wdt: HTTP 429");
	wj_wdt_result_clear(&r);
	assert_int_equal(parse_str(429, NULL, -1, &r), -EIO);
	assert_int_equal(r.retry_after_ms, 30000);
	wj_wdt_result_clear(&r);

	/* gateway flow control */
	expect_class(200,
		     "{\"response\":{\"flag\":\"failure\",\"code\":\"7\",\"message\":\"App Call "
		     "Limited\",\"sub_code\":\"accesscontrol.limited-by-app-access-count\"}}",
		     -1, WJ_WDT_RATE_LIMITED, NULL);
}

static void test_parse_auth(void **state)
{
	(void)state;
	expect_class(200,
		     "{\"response\":{\"flag\":\"failure\",\"code\":\"sign-check-failure\","
		     "\"message\":\"Illegal request\"}}",
		     -1, WJ_WDT_AUTH, "wdt: code sign-check-failure: Illegal request");
	expect_class(200,
		     "{\"response\":{\"flag\":\"failure\",\"code\":\"25\",\"message\":\"Invalid "
		     "signature\",\"sub_code\":\"isv.invalid-signature\",\"sub_message\":\"bad\"}}",
		     -1, WJ_WDT_AUTH, "wdt: code 25 (isv.invalid-signature): bad");
	expect_class(200,
		     "{\"response\":{\"flag\":\"failure\",\"code\":\"invalid-app-key\","
		     "\"message\":\"\"}}",
		     -1, WJ_WDT_AUTH, "wdt: code invalid-app-key: (no message)");
	/* flag failure without any code */
	expect_class(200, "{\"response\":{\"flag\":\"failure\",\"sub_code\":\"invalid-app-key\"}}",
		     -1, WJ_WDT_AUTH, "wdt: code failure (invalid-app-key): (no message)");
	for (int c = 1004; c <= 1007; c++) {
		char body[64];
		snprintf(body, sizeof(body), "{\"code\":%d,\"message\":\"x\"}", c);
		expect_class(200, body, -1, WJ_WDT_AUTH, NULL);
	}
	expect_class(200, "{\"code\":99,\"message\":\"签名错误\"}", -1, WJ_WDT_AUTH,
		     "wdt: code 99: 签名错误");
	expect_class(200, "{\"code\":98,\"message\":\"AppKey不存在\"}", -1, WJ_WDT_AUTH, NULL);
	expect_class(200, "{\"code\":97,\"message\":\"卖家sid不存在\"}", -1, WJ_WDT_AUTH, NULL);
	expect_class(403, "forbidden", -1, WJ_WDT_AUTH, "wdt: HTTP 403");
	expect_class(200, "{\"code\":1002,\"message\":\"卖家账号不存在\"}", -1, WJ_WDT_AUTH, NULL);
	expect_class(200,
		     "{\"response\":{\"flag\":\"failure\",\"code\":\"isv.invalid-sid\","
		     "\"message\":\"x\"}}",
		     -1, WJ_WDT_AUTH, NULL);
	/* the router's own error envelope */
	expect_class(200,
		     "{\"error_response\":{\"code\":25,\"msg\":\"Invalid signature\","
		     "\"sub_code\":\"isv.invalid-signature\",\"sub_msg\":\"签名无效\"}}",
		     -1, WJ_WDT_AUTH, "wdt: code 25 (isv.invalid-signature): 签名无效");
	expect_class(200, "{\"error_response\":{\"msg\":\"Invalid app Key\"}}", -1,
		     WJ_WDT_AUTH, "wdt: code failure: Invalid app Key");
}

static void test_parse_permanent(void **state)
{
	(void)state;
	wj_wdt_result_t r;
	assert_int_equal(parse_str(200, "{\"code\":100,\"message\":\"参数start_time错误\"}", -1,
				   &r),
			 -EIO);
	assert_int_equal(r.cls, WJ_WDT_PERMANENT);
	assert_string_equal(r.code, "100");
	assert_string_equal(r.error, "wdt: code 100: 参数start_time错误");
	wj_wdt_result_clear(&r);
	/* "sid" inside a word is no hint of an auth problem */
	expect_class(200, "{\"code\":100,\"message\":\"value outside range\"}", -1,
		     WJ_WDT_PERMANENT, NULL);
	expect_class(200, "{\"response\":{\"errorcode\":\"2\",\"message\":\"bad\"}}", -1,
		     WJ_WDT_PERMANENT, "wdt: code 2: bad");
	/* errorcode wins over a zero code */
	expect_class(200, "{\"response\":{\"errorcode\":3,\"code\":0,\"message\":\"m\"}}", -1,
		     WJ_WDT_PERMANENT, "wdt: code 3: m");
	expect_class(404, "<html>not found</html>", -1, WJ_WDT_PERMANENT, "wdt: HTTP 404");
	expect_class(400, "{\"code\":0,\"total_count\":0}", -1, WJ_WDT_PERMANENT, "wdt: HTTP 400");
}

static void test_parse_transient(void **state)
{
	(void)state;
	expect_class(502, "<html>Bad Gateway</html>", -1, WJ_WDT_TRANSIENT, "wdt: HTTP 502");
	expect_class(503, NULL, -1, WJ_WDT_TRANSIENT, "wdt: HTTP 503");
	/* an API error with a 5xx status is not taken as permanent */
	expect_class(500, "{\"code\":100,\"message\":\"x\"}", -1, WJ_WDT_TRANSIENT, NULL);
	expect_class(0, NULL, -1, WJ_WDT_TRANSIENT, "wdt: no response");
	expect_class(200, "{\"code\":500,\"message\":\"内部错误\"}", -1, WJ_WDT_TRANSIENT,
		     "wdt: code 500: 内部错误");
	expect_class(200, "{\"response\":{\"errorcode\":9,\"message\":\"系统繁忙\"}}", -1,
		     WJ_WDT_TRANSIENT, NULL);
	expect_class(200,
		     "{\"response\":{\"flag\":\"failure\",\"code\":\"15\",\"sub_code\":"
		     "\"isp.remote-service-timeout\",\"message\":\"Remote service error\"}}",
		     -1, WJ_WDT_TRANSIENT, NULL);

	wj_wdt_result_t r;
	assert_int_equal(parse_str(200, "{\"code\":0,\"total_count\":", -1, &r), -EIO);
	assert_int_equal(r.cls, WJ_WDT_TRANSIENT);
	assert_true(!strncmp(r.error, "wdt: response: malformed JSON: ", 31));
	wj_wdt_result_clear(&r);
	expect_class(200, "", -1, WJ_WDT_TRANSIENT, NULL);
	expect_class(200, NULL, -1, WJ_WDT_TRANSIENT, "wdt: response: malformed JSON: empty body");
	expect_class(200, "[1,2]", -1, WJ_WDT_TRANSIENT, "wdt: response: not an object");
	expect_class(200, "{\"code\":0,\"total_count\":3}", -1, WJ_WDT_TRANSIENT,
		     "wdt: response: stockin_list: missing with total_count 3");
	expect_class(200, "{\"code\":0,\"total_count\":1,\"stockin_list\":{\"a\":1}}", -1,
		     WJ_WDT_TRANSIENT, "wdt: response: stockin_list: not an array");
	expect_class(200,
		     "{\"code\":0,\"total_count\":5,\"stockin_list\":[{},{},{},\"x\",{}]}", -1,
		     WJ_WDT_TRANSIENT, "wdt: response: stockin_list[3]: not an object");
}

/* WDT gives total_count with page_no 0 only: a page without a usable one is still a page. */
static void test_parse_total_count(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		int64_t count;
		size_t orders;
	} cases[] = {
		{"{\"code\":0,\"stockin_list\":[{\"stockin_id\":1}]}", -1, 1},
		{"{\"code\":0,\"total_count\":null,\"stockin_list\":[{},{}]}", -1, 2},
		{"{\"code\":0,\"total_count\":0,\"stockin_list\":[{}]}", 0, 1},
		{"{\"code\":0,\"total_count\":\"many\",\"stockin_list\":[]}", -1, 0},
		{"{\"code\":0,\"total_count\":-1,\"stockin_list\":[]}", -1, 0},
		{"{\"code\":0,\"total_count\":\"12\",\"stockin_list\":[]}", 12, 0},
		{"{\"response\":{\"errorcode\":0,\"message\":\"\"}}", -1, 0},
		{"{\"code\":0,\"stockin_list\":null}", -1, 0},
	};
	for (size_t i = 0; i < N(cases); i++) {
		wj_wdt_result_t r;
		assert_int_equal(parse_str(200, cases[i].body, -1, &r), 0);
		assert_int_equal(r.cls, WJ_WDT_OK);
		assert_int_equal(r.total_count, cases[i].count);
		assert_int_equal(json_array_size(r.orders), cases[i].orders);
		assert_int_equal(r.date_ms, -1);
		wj_wdt_result_clear(&r);
	}
}

/* Out-of-range numbers become strings with their exact text; nothing else changes. */
static void test_repair(void **state)
{
	(void)state;
	wj_buf_t b = {0};
	/* representable numbers, keywords, escapes and numbers inside strings: untouched */
	static const char *const same[] = {
		"{\"a\":[0,-0,1,-1,9223372036854775807,-9223372036854775808,1.5,1e308,-1E+2,"
		"1e-400,0.1,true,false,null,\"1e400\",\"\\\"99999999999999999999\"]}",
		"{\"x\":\"\\\\\",\"y\":123}", "", "[01]", "-", "{\"k\":1e}",
	};
	for (size_t i = 0; i < N(same); i++)
		assert_int_equal(wj_wdt_repair(same[i], strlen(same[i]), &b), 0);
	static const struct {
		const char *in, *out;
	} fixed[] = {
		{"{\"n\":1e400}", "{\"n\":\"1e400\"}"},
		{"[99999999999999999999,-1E+999,9223372036854775808,-9223372036854775809,2]",
		 "[\"99999999999999999999\",\"-1E+999\",\"9223372036854775808\","
		 "\"-9223372036854775809\",2]"},
		{"{\"s\":\"\xff\",\"n\":1e999}", "{\"s\":\"\xEF\xBF\xBD\",\"n\":\"1e999\"}"},
		{"[1e400", "[\"1e400\""},
	};
	for (size_t i = 0; i < N(fixed); i++) {
		assert_int_equal(wj_wdt_repair(fixed[i].in, strlen(fixed[i].in), &b), 1);
		assert_string_equal(b.data, fixed[i].out);
	}
	/* a long token */
	wj_buf_t big = {0};
	assert_int_equal(wj_buf_append(&big, "[", 1), 0);
	for (int i = 0; i < 500; i++)
		assert_int_equal(wj_buf_append(&big, "9", 1), 0);
	assert_int_equal(wj_buf_append(&big, "]", 1), 0);
	assert_int_equal(wj_wdt_repair(big.data, big.len, &b), 1);
	assert_int_equal(b.len, big.len + 2);
	wj_buf_free(&big);
	wj_buf_free(&b);

	/* A page with one bad number: the other orders parse exactly as without it (same
	 * canonical text, so the same content hash), the bad one keeps its number as text. */
	static const char with_bad[] =
		"{\"code\":0,\"total_count\":2,\"stockin_list\":[{\"stockin_id\":1,\"x\":1.10,"
		"\"y\":12345678901234567,\"z\":\"3.3000\"},{\"stockin_id\":2,\"goods_count\":1e400}]}";
	static const char without[] =
		"{\"code\":0,\"total_count\":1,\"stockin_list\":[{\"stockin_id\":1,\"x\":1.10,"
		"\"y\":12345678901234567,\"z\":\"3.3000\"}]}";
	wj_wdt_result_t r1, r2;
	assert_int_equal(parse_str(200, with_bad, -1, &r1), 0);
	assert_int_equal(parse_str(200, without, -1, &r2), 0);
	size_t l1, l2;
	char *c1 = wj_json_canon(json_array_get(r1.orders, 0), &l1);
	char *c2 = wj_json_canon(json_array_get(r2.orders, 0), &l2);
	assert_string_equal(c1, c2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(r1.orders, 1),
							      "goods_count")),
			    "1e400");
	free(c1);
	free(c2);
	wj_wdt_result_clear(&r1);
	wj_wdt_result_clear(&r2);
}

static void test_parse_long_message(void **state)
{
	(void)state;
	/* a message longer than the error buffer is cut on a character boundary */
	char body[2048];
	int n = snprintf(body, sizeof(body), "{\"code\":100,\"message\":\"");
	for (int i = 0; i < 300; i++)
		n += snprintf(body + n, sizeof(body) - (size_t)n, "错");
	snprintf(body + n, sizeof(body) - (size_t)n, "\"}");
	wj_wdt_result_t r;
	assert_int_equal(parse_str(200, body, -1, &r), -EIO);
	size_t len = strlen(r.error);
	assert_true(len < sizeof(r.error));
	assert_true(len > 400);
	/* "wdt: code 100: " is 15 bytes, then whole 3-byte characters */
	assert_int_equal((len - 15) % 3, 0);
	wj_wdt_result_clear(&r);
}

/* Qimen: whitespace-only values are neither sent nor signed (the TOP SDKs disagree on them). */
static void test_qimen_blank(void **state)
{
	(void)state;
	static const char *const blank[] = {"", " ", "\t\r\n\v\f", "\x1c\x1f", "\u3000",
					    " \u2028\u205f\u1680\u2000\u200a"};
	static const char *const not_blank[] = {"a", " a ", "\u00a0", "\u2007", "\u202f", "0",
						"\xff"};
	for (size_t i = 0; i < N(blank); i++)
		assert_true(wj_wdt_qimen_blank(blank[i]));
	for (size_t i = 0; i < N(not_blank); i++)
		assert_false(wj_wdt_qimen_blank(not_blank[i]));
	assert_true(wj_wdt_qimen_blank(NULL));

	/* the vector signs the same with blank parameters added, and they are not sent */
	wj_kv_t with[N(qimen_vec) + 3];
	memcpy(with, qimen_vec, sizeof(qimen_vec));
	with[N(qimen_vec)] = (wj_kv_t)KV("warehouse_no", " ");
	with[N(qimen_vec) + 1] = (wj_kv_t)KV("remark", "\u3000\t");
	with[N(qimen_vec) + 2] = (wj_kv_t)KV("src_order_no", "");
	char sig[33];
	wj_wdt_sign_qimen(with, N(with), "testsecret", sig);
	assert_string_equal(sig, "EAE9CFE97298369077F4B47732AEF272");
	wj_wdt_opts_t o = {.api = WJ_WDT_QIMEN, .url = "http://h/router/qm", .sid = "s",
			   .app_key = "k", .app_secret = "x", .tz_offset = 8 * 3600};
	wj_buf_t url = {0}, body = {0};
	wj_kv_t biz[] = {KV("warehouse_no", " "), KV("remark", "\u3000"), KV("page_no", "0")};
	assert_int_equal(wj_wdt_build(&o, "wdt.stockin.order.query", biz, N(biz), 1, &url, &body),
			 0);
	assert_null(strstr(body.data, "warehouse_no"));
	assert_null(strstr(body.data, "remark"));
	assert_non_null(strstr(body.data, "page_no=0"));
	/* openapi2 keeps non-empty values as they are (its SDK signs them) */
	o.api = WJ_WDT_OPENAPI2;
	o.url = "http://h/openapi2/";
	assert_int_equal(wj_wdt_build(&o, "wdt.stockin.order.query", biz, N(biz), 1, &url, &body),
			 0);
	assert_non_null(strstr(body.data, "warehouse_no=%20"));
	wj_buf_free(&url);
	wj_buf_free(&body);
}

/* The offset to WDT's clock never puts WDT's now later than it is. */
static void test_clock(void **state)
{
	(void)state;
	wj_wdt_clock_t c = {0};
	assert_false(wj_wdt_clock_known(&c));
	assert_int_equal(wj_wdt_clock_now(&c, 1700000000500), 1700000000);
	assert_false(wj_wdt_clock_add(&c, -1, 1000, 10)); /* no Date header */
	assert_false(wj_wdt_clock_known(&c));
	/* WDT 480 s behind: stamped 1000.000 s when the host read 1480.300 s */
	int64_t host = 1480300;
	assert_true(wj_wdt_clock_add(&c, 1000000, host, 20));
	assert_true(wj_wdt_clock_known(&c));
	assert_int_equal(c.offset_ms, -480300);
	/* a later answer stamped in a later second tightens the bound */
	assert_true(wj_wdt_clock_add(&c, 1001000, host + 800, 20));
	assert_int_equal(c.offset_ms, -480100);
	/* one that says less changes nothing */
	assert_false(wj_wdt_clock_add(&c, 1001000, host + 1500, 20));
	assert_int_equal(c.offset_ms, -480100);
	assert_int_equal(wj_wdt_clock_now(&c, 1500000), 1019); /* 1019.9 s → floor */
	/* the true offset (-480.0xx s) is within every answer's bounds: never exceeded */
	assert_true(c.offset_ms <= -480000);
	/* WDT's clock goes back by a minute: an answer's upper bound is below the estimate */
	assert_true(wj_wdt_clock_add(&c, 941000, host + 1600, 20));
	assert_int_equal(c.offset_ms, 941000 - (host + 1600));
	/* old bounds age out after WJ_WDT_CLOCK_SAMPLES answers */
	wj_wdt_clock_t d = {0};
	wj_wdt_clock_add(&d, 5000, 0, 0);
	for (int i = 0; i < WJ_WDT_CLOCK_SAMPLES - 1; i++)
		wj_wdt_clock_add(&d, 4000, 0, 2000); /* upper bound 7000 ≥ 5000: no reset */
	assert_int_equal(d.offset_ms, 5000);
	wj_wdt_clock_add(&d, 4000, 0, 2000);
	assert_int_equal(d.offset_ms, 4000);
	/* negative epochs floor down */
	wj_wdt_clock_t e = {.n = 1, .offset_ms = -1500};
	assert_int_equal(wj_wdt_clock_now(&e, 1000), -1);
}

/* ---- order helpers ---- */

static void test_order_helpers(void **state)
{
	(void)state;
	char id[32];
	int64_t t;
	json_t *o = json_loads("{\"stockin_id\":\"123\",\"modified\":\"2024-01-01 12:00:00\","
			       "\"details_list\":[{\"stockin_id\":\"999\"}]}",
			       0, NULL);
	assert_non_null(o);
	assert_int_equal(wj_wdt_order_key(o, id, sizeof(id)), 0);
	assert_string_equal(id, "123");
	assert_int_equal(wj_wdt_order_modified(o, 8 * 3600, &t), 0);
	assert_int_equal(t, T_2024);
	assert_int_equal(wj_wdt_order_key(o, id, 3), -ENOSPC);
	json_decref(o);

	/* fallbacks to the details: the first stockin_id, the latest modified */
	o = json_loads("{\"details_list\":[{\"stockin_id\":77,\"modified\":\"2024-01-01 "
		       "11:00:00\"},{\"stockin_id\":77,\"modified\":\"2024-01-01 12:00:00\"},"
		       "{\"stockin_id\":77}]}",
		       0, NULL);
	assert_non_null(o);
	assert_int_equal(wj_wdt_order_key(o, id, sizeof(id)), 0);
	assert_string_equal(id, "77");
	assert_int_equal(wj_wdt_order_modified(o, 8 * 3600, &t), 0);
	assert_int_equal(t, T_2024);
	json_decref(o);

	static const char *const no_key[] = {"{}", "{\"stockin_id\":null}",
					     "{\"details_list\":[]}"};
	for (size_t i = 0; i < N(no_key); i++) {
		o = json_loads(no_key[i], 0, NULL);
		assert_non_null(o);
		assert_int_equal(wj_wdt_order_key(o, id, sizeof(id)), -ENOENT);
		assert_int_equal(wj_wdt_order_modified(o, 0, &t), -ENOENT);
		json_decref(o);
	}
	static const struct {
		const char *order;
		int err;
	} bad_key[] = {
		{"{\"stockin_id\":\"\"}", -EINVAL},
		{"{\"stockin_id\":true}", -EINVAL},
		{"{\"stockin_id\":[1]}", -EINVAL},
		{"{\"stockin_id\":\"1 2\"}", -EILSEQ},
		{"{\"stockin_id\":\"12\\n\"}", -EILSEQ},
		{"{\"stockin_id\":\"\\u007f\"}", -EILSEQ},
		{"{\"stockin_id\":\"0123456789abcdef0123456789abcdef\"}", -ENOSPC},
		{"{\"stockin_id\":\"99999999999999999999\"}", -ERANGE},
		{"{\"stockin_id\":\"1e400\"}", -ERANGE},
		{"{\"stockin_id\":12.5}", -ERANGE},
		{"{\"stockin_id\":\"-9223372036854775809\"}", -ERANGE},
	};
	for (size_t i = 0; i < N(bad_key); i++) {
		o = json_loads(bad_key[i].order, 0, NULL);
		assert_non_null(o);
		strcpy(id, "x");
		assert_int_equal(wj_wdt_order_key(o, id, sizeof(id)), bad_key[i].err);
		assert_string_equal(id, "");
		assert_true(strlen(wj_wdt_key_problem(bad_key[i].err)) > 3);
		json_decref(o);
	}
	/* ids that are not numbers, and numbers within 64 bits, are keys */
	static const char *const good_key[] = {"{\"stockin_id\":\"RK-1\"}",
					       "{\"stockin_id\":9223372036854775807}",
					       "{\"stockin_id\":\"1.000\"}", "{\"stockin_id\":\"中\"}"};
	for (size_t i = 0; i < N(good_key); i++) {
		o = json_loads(good_key[i], 0, NULL);
		assert_non_null(o);
		assert_int_equal(wj_wdt_order_key(o, id, sizeof(id)), 0);
		json_decref(o);
	}
	static const char *const bad_time[] = {
		"{\"modified\":\"2024-01-01T12:00:00\"}", "{\"modified\":1704081600}",
		"{\"details_list\":[{\"modified\":\"yesterday\"}]}"};
	for (size_t i = 0; i < N(bad_time); i++) {
		o = json_loads(bad_time[i], 0, NULL);
		assert_non_null(o);
		assert_int_equal(wj_wdt_order_modified(o, 0, &t), -EINVAL);
		json_decref(o);
	}
}

/* ---- asynchronous query against a loopback server ---- */

typedef struct srv {
	int fd;
	int port;
	const char *response; /* full HTTP response */
	char req[16384];
	size_t req_len;
	int served;
	pthread_t th;
} srv_t;

/* Serve one request: read headers and Content-Length bytes, answer, close. Bounded by timeouts. */
static void *srv_main(void *arg)
{
	srv_t *s = arg;
	struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
	if (poll(&pfd, 1, 10000) != 1)
		return NULL;
	int c = accept(s->fd, NULL, NULL);
	if (c < 0)
		return NULL;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	size_t need = 0;
	for (int rounds = 0; rounds < 1000 && s->req_len < sizeof(s->req) - 1; rounds++) {
		ssize_t n = read(c, s->req + s->req_len, sizeof(s->req) - 1 - s->req_len);
		if (n <= 0)
			break;
		s->req_len += (size_t)n;
		s->req[s->req_len] = '\0';
		char *end = strstr(s->req, "\r\n\r\n");
		if (!end)
			continue;
		if (!need) {
			const char *cl = strcasestr(s->req, "\r\nContent-Length:");
			need = (size_t)(end + 4 - s->req) + (cl ? strtoul(cl + 17, NULL, 10) : 0);
		}
		if (s->req_len >= need)
			break;
	}
	ssize_t w = write(c, s->response, strlen(s->response));
	(void)w;
	close(c);
	s->served = 1;
	return NULL;
}

static void srv_start(srv_t *s, const char *response)
{
	memset(s, 0, sizeof(*s));
	s->response = response;
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
	assert_int_equal(listen(s->fd, 4), 0);
	assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
}

/* A loopback port nobody listens on (bound, then released). */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

static void srv_stop(srv_t *s)
{
	pthread_join(s->th, NULL);
	close(s->fd);
}

typedef struct done {
	int calls;
	wj_wdt_class_t cls;
	int64_t total;
	json_t *orders;
	char error[512];
	pthread_t prep_thread, cb_thread;
	int preps;
	char *prep_out;
} done_t;

/* A prep function: runs on a worker thread, leaves its product in res->prep. */
static void prep_ids(wj_wdt_result_t *res, void *arg)
{
	done_t *d = arg;
	d->preps++;
	d->prep_thread = pthread_self();
	char id[64] = "";
	wj_wdt_order_key(json_array_get(res->orders, 0), id, sizeof(id));
	res->prep = strdup(id);
}

static void on_result(wj_wdt_result_t *res, void *arg)
{
	done_t *d = arg;
	d->calls++;
	d->cb_thread = pthread_self();
	d->prep_out = res->prep; /* ours now */
	res->prep = NULL;
	d->cls = res->cls;
	d->total = res->total_count;
	d->orders = res->orders; /* take them */
	res->orders = NULL;
	snprintf(d->error, sizeof(d->error), "%s", res->error);
}

/* Run the loop until the callback ran, at most ~10 s. */
static void run_until(uv_loop_t *loop, const done_t *d)
{
	uint64_t start = wj_mono_ms();
	while (!d->calls && wj_mono_ms() - start < 10000)
		uv_run(loop, UV_RUN_NOWAIT), usleep(1000);
}

static const char ok_response[] =
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
	"Content-Length: 75\r\n\r\n"
	"{\"code\":0,\"message\":\"\",\"total_count\":\"1\",\"stockin_list\":[{\"stockin_id\":7}]}";

static const char leak_response[] =
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
	"Content-Length: 49\r\n\r\n"
	"{\"code\":100,\"message\":\"bad secret s3cr3t-value!\"}";

static void test_query(void **state)
{
	(void)state;
	assert_int_equal(strlen(ok_response) - (size_t)(strstr(ok_response, "\r\n\r\n") + 4 -
							ok_response),
			 75);
	assert_int_equal(strlen(leak_response) - (size_t)(strstr(leak_response, "\r\n\r\n") + 4 -
							  leak_response),
			 49);
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(wj_http_global_init(), 0);
	wj_http_opts_t hopts = {.max_inflight = 1};
	wj_http_t *http = wj_http_new(&loop, &hopts);
	assert_non_null(http);

	srv_t s;
	srv_start(&s, ok_response);
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/openapi2", s.port);
	wj_wdt_opts_t o = openapi2_opts;
	o.url = url;
	o.app_secret = "s3cr3t-value";
	o.timeout_ms = 5000;
	wj_wdt_t *w = wj_wdt_new(http, &o);
	assert_non_null(w);
	url[0] = '\0'; /* the client keeps its own copy */

	const wj_kv_t biz[] = {KV("start_time", "2024-01-01 00:00:00"),
			       KV("end_time", "2024-01-01 01:00:00"), KV("page_no", "0"),
			       KV("page_size", "100"), KV("warehouse_no", "")};
	done_t d = {0};
	int64_t before = wj_now();
	assert_int_equal(wj_wdt_query(w, "wdt.stockin.order.query", biz, N(biz), NULL, on_result, &d), 0);
	assert_int_equal(d.calls, 0); /* never from inside the call */
	run_until(&loop, &d);
	srv_stop(&s);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.cls, WJ_WDT_OK);
	assert_int_equal(d.total, 1);
	assert_int_equal(json_array_size(d.orders), 1);
	assert_int_equal(d.preps, 0);
	assert_null(d.prep_out);
	json_decref(d.orders);

	/* with a prep function: it runs once, off the loop's thread, before the callback, which
	 * runs on the loop's thread and receives what prep made */
	srv_t s2;
	srv_start(&s2, ok_response);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/openapi2", s2.port);
	wj_wdt_set_opts(w, &o);
	done_t d2 = {0};
	assert_int_equal(wj_wdt_query(w, "wdt.stockin.order.query", biz, N(biz), prep_ids, on_result,
				      &d2), 0);
	run_until(&loop, &d2);
	srv_stop(&s2);
	assert_int_equal(d2.calls, 1);
	assert_int_equal(d2.preps, 1);
	assert_true(pthread_equal(d2.cb_thread, pthread_self()));
	assert_false(pthread_equal(d2.prep_thread, pthread_self()));
	assert_non_null(d2.prep_out);
	assert_true(strlen(d2.prep_out) > 0);
	free(d2.prep_out);
	json_decref(d2.orders);
	o.url = url;

	/* what the server received */
	assert_true(!strncmp(s.req, "POST /openapi2/stockin_order_query.php HTTP/1.1\r\n", 49));
	assert_non_null(strcasestr(s.req, "\r\nContent-Type: "
					  "application/x-www-form-urlencoded;charset=utf-8\r\n"));
	form_t f;
	form_parse(strstr(s.req, "\r\n\r\n") + 4, &f);
	assert_int_equal(f.n, 8);
	assert_string_equal(form_get(&f, "sid"), "test2");
	assert_string_equal(form_get(&f, "appkey"), "test2-xx");
	assert_string_equal(form_get(&f, "page_size"), "100");
	assert_null(form_get(&f, "warehouse_no"));
	int64_t ts = strtoll(form_get(&f, "timestamp"), NULL, 10);
	assert_true(ts >= before && ts <= wj_now());
	char sig[33];
	wj_wdt_sign_openapi2(f.kv, f.n, "s3cr3t-value", sig);
	assert_string_equal(form_get(&f, "sign"), sig);
	form_free(&f);

	/* an error text never carries the secret */
	srv_start(&s, leak_response);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/openapi2/", s.port);
	wj_wdt_set_opts(w, &o);
	memset(&d, 0, sizeof(d));
	assert_int_equal(wj_wdt_query(w, "wdt.stockin.order.query", biz, N(biz), NULL, on_result, &d), 0);
	run_until(&loop, &d);
	srv_stop(&s);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.cls, WJ_WDT_PERMANENT);
	assert_null(d.orders);
	assert_string_equal(d.error, "wdt: code 100: bad secret ***!");

	/* nobody listening: a network error, transient */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/openapi2/", free_port());
	wj_wdt_set_opts(w, &o);
	memset(&d, 0, sizeof(d));
	assert_int_equal(wj_wdt_query(w, "wdt.stockin.order.query", biz, N(biz), NULL, on_result, &d), 0);
	run_until(&loop, &d);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.cls, WJ_WDT_TRANSIENT);
	assert_true(!strncmp(d.error, "wdt: network: ", 14));

	/* a query that cannot be built is refused and never calls back */
	memset(&d, 0, sizeof(d));
	assert_int_equal(wj_wdt_query(w, "wdt.a b", NULL, 0, NULL, on_result, &d), -EINVAL);

	wj_wdt_free(w);
	wj_http_free(http);
	for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT); i++)
		usleep(1000);
	assert_int_equal(d.calls, 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	wj_http_global_cleanup();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_qimen),
		cmocka_unit_test(test_sign_openapi2),
		cmocka_unit_test(test_sign_openapi2_code_points),
		cmocka_unit_test(test_build_qimen),
		cmocka_unit_test(test_build_qimen_tz),
		cmocka_unit_test(test_build_openapi2),
		cmocka_unit_test(test_build_invalid),
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_rate_limited),
		cmocka_unit_test(test_parse_auth),
		cmocka_unit_test(test_parse_permanent),
		cmocka_unit_test(test_parse_transient),
		cmocka_unit_test(test_parse_long_message),
		cmocka_unit_test(test_parse_total_count),
		cmocka_unit_test(test_repair),
		cmocka_unit_test(test_qimen_blank),
		cmocka_unit_test(test_clock),
		cmocka_unit_test(test_order_helpers),
		cmocka_unit_test(test_query),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
