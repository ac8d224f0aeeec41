/* Unit tests for lib/jdy: gateway and app signatures (published vectors), string-to-sign,
 * envelope classification, token expiry readings, and the asynchronous client against a small
 * in-process Kingdee responder (single-flight login, re-login after 1030002006, restore). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/jdy.h"

#ifndef WJ_JDY_NO_ASYNC_TEST
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#endif

#define VEC_SECRET "f2adcfef73369bfc4e1384677d38a0ff"
#define VEC_PATH "/jdyconnector/app_management/kingdee_auth_token"
#define VEC_APPSIG "MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0NzZhN2YxZDJmOTlkZA=="

static void test_sign_vector(void **state)
{
	(void)state;
	wj_kv_t q[2] = {{(char *)"app_signature", (char *)VEC_APPSIG}, {(char *)"app_key", (char *)"bVZgAZOv1"}};
	wj_buf_t s = {0};
	assert_int_equal(wj_jdy_sign_string("GET", VEC_PATH, q, 2, "4427456950", "1670305063559", WJ_JDY_ENC_RFC3986, &s), 0);
	assert_string_equal(s.data,
		"GET\n%2Fjdyconnector%2Fapp_management%2Fkingdee_auth_token\n"
		"app_key=bVZgAZOv1&app_signature=MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0NzZhN2YxZDJmOTlkZA%253D%253D\n"
		"x-api-nonce:4427456950\nx-api-timestamp:1670305063559\n");
	wj_buf_free(&s);
	char sig[89];
	assert_int_equal(wj_jdy_sign(VEC_SECRET, "GET", VEC_PATH, q, 2, "4427456950", "1670305063559",
				     WJ_JDY_ENC_RFC3986, sig, sizeof(sig)), 0);
	assert_string_equal(sig, "OTFiZTliNDFiMjNkYTI3YzVhNzg4MDI4ZGU3MWY1ZTA5ZTk1NjVlNGM1YTI1ZjIxY2Y5YTA3ZGY2OGI1MGQ1MQ==");
	/* one byte short of room, an empty secret */
	assert_int_equal(wj_jdy_sign(VEC_SECRET, "GET", VEC_PATH, q, 2, "4427456950", "1670305063559",
				     WJ_JDY_ENC_RFC3986, sig, 88), -ENOSPC);
	assert_int_equal(wj_jdy_sign("", "GET", VEC_PATH, q, 2, "1", "2", WJ_JDY_ENC_RFC3986, sig, sizeof(sig)), -EINVAL);
	/* a changed nonce changes the signature */
	char sig2[89];
	assert_int_equal(wj_jdy_sign(VEC_SECRET, "GET", VEC_PATH, q, 2, "4427456951", "1670305063559",
				     WJ_JDY_ENC_RFC3986, sig2, sizeof(sig2)), 0);
	assert_string_not_equal(sig, sig2);
}

static void test_app_signature(void **state)
{
	(void)state;
	char sig[100];
	assert_int_equal(wj_jdy_app_signature("abc", "abc123", sig, sizeof(sig)), 0);
	assert_string_equal(sig, "ZDljMTI3NGIyNTE1MTRkYzlkNjc1MDNhYjUzMzgzNWMyY2M4YTdjMzdmNmM3YTVlNDkxMTkzNjdiOTFjNzUyZQ==");
	assert_int_equal(wj_jdy_app_signature("abc", "abc124", sig, sizeof(sig)), 0);
	assert_string_not_equal(sig, "ZDljMTI3NGIyNTE1MTRkYzlkNjc1MDNhYjUzMzgzNWMyY2M4YTdjMzdmNmM3YTVlNDkxMTkzNjdiOTFjNzUyZQ==");
}

static void test_sign_string_post_no_query(void **state)
{
	(void)state;
	wj_buf_t s = {0};
	assert_int_equal(wj_jdy_sign_string("POST", "/jdy/v2/scm/inv_check_gail_bill", NULL, 0, "123",
					     "456", WJ_JDY_ENC_RFC3986, &s), 0);
	assert_string_equal(s.data, "POST\n%2Fjdy%2Fv2%2Fscm%2Finv_check_gail_bill\n\n"
				    "x-api-nonce:123\nx-api-timestamp:456\n");
	wj_buf_free(&s);
}

static void test_sign_string_sorted_chinese(void **state)
{
	(void)state;
	wj_kv_t q[4] = {
		{(char *)"search", (char *)"WDT:盘盈 1"},
		{(char *)"page_size", (char *)"100"},
		{(char *)"page", (char *)"1"},
		{(char *)"a", (char *)"x=y&z~._-"},
	};
	wj_buf_t s = {0};
	assert_int_equal(wj_jdy_sign_string("GET", "/jdy/v2/scm/inv_check_gail_bill", q, 4, "9", "8", WJ_JDY_ENC_RFC3986, &s), 0);
	assert_string_equal(s.data,
		"GET\n%2Fjdy%2Fv2%2Fscm%2Finv_check_gail_bill\n"
		"a=x%253Dy%2526z~._-&page=1&page_size=100&"
		"search=WDT%253A%25E7%259B%2598%25E7%259B%2588%25201\n"
		"x-api-nonce:9\nx-api-timestamp:8\n");
	/* the order of the given parameters does not matter */
	wj_kv_t r[4] = {q[2], q[0], q[3], q[1]};
	char a[89], b[89];
	assert_int_equal(wj_jdy_sign("k1", "GET", "/p", q, 4, "9", "8", WJ_JDY_ENC_RFC3986, a, sizeof(a)), 0);
	assert_int_equal(wj_jdy_sign("k1", "GET", "/p", r, 4, "9", "8", WJ_JDY_ENC_RFC3986, b, sizeof(b)), 0);
	assert_string_equal(a, b);
	wj_buf_free(&s);
}

/* Both official SDKs encode query keys twice like values and a space in the path as '+'; for
 * a space, '*' and '~' in values they differ: RFC 3986 (PHP, what is sent) or form (Java). */
static void test_sign_encodings(void **state)
{
	(void)state;
	wj_kv_t q[3] = {{(char *)"number", (char *)"A 01*~"}, {(char *)"k y", (char *)"v"},
			{(char *)"a-b", (char *)"1"}};
	wj_buf_t s = {0};
	assert_int_equal(wj_jdy_sign_string("GET", "/p q", q, 3, "1", "2", WJ_JDY_ENC_RFC3986, &s), 0);
	assert_string_equal(s.data, "GET\n%2Fp+q\na-b=1&k%2520y=v&number=A%252001%252A~\n"
				    "x-api-nonce:1\nx-api-timestamp:2\n");
	wj_buf_reset(&s);
	/* form: space → '+' → %2B, '*' kept, '~' → %7E → %257E; whole "k=v" strings sorted
	 * ("a-b=" before "k%2B..." before "number=") */
	assert_int_equal(wj_jdy_sign_string("GET", "/p q", q, 3, "1", "2", WJ_JDY_ENC_FORM, &s), 0);
	assert_string_equal(s.data, "GET\n%2Fp+q\na-b=1&k%2By=v&number=A%2B01*%257E\n"
				    "x-api-nonce:1\nx-api-timestamp:2\n");
	wj_buf_free(&s);
	/* the sort differs where a key continues with a byte below '=' */
	wj_kv_t r[2] = {{(char *)"a", (char *)"1"}, {(char *)"a-", (char *)"2"}};
	assert_int_equal(wj_jdy_sign_string("GET", "/p", r, 2, "1", "2", WJ_JDY_ENC_RFC3986, &s), 0);
	assert_non_null(strstr(s.data, "\na=1&a-=2\n"));
	wj_buf_reset(&s);
	assert_int_equal(wj_jdy_sign_string("GET", "/p", r, 2, "1", "2", WJ_JDY_ENC_FORM, &s), 0);
	assert_non_null(strstr(s.data, "\na-=2&a=1\n"));
	wj_buf_free(&s);
	/* without such characters the two readings sign alike */
	char a[89], b[89];
	wj_kv_t plain[2] = {{(char *)"number", (char *)"SP00001"}, {(char *)"page", (char *)"1"}};
	assert_int_equal(wj_jdy_sign("k", "GET", "/x", plain, 2, "1", "2", WJ_JDY_ENC_RFC3986, a,
				     sizeof(a)), 0);
	assert_int_equal(wj_jdy_sign("k", "GET", "/x", plain, 2, "1", "2", WJ_JDY_ENC_FORM, b,
				     sizeof(b)), 0);
	assert_string_equal(a, b);
	assert_int_equal(wj_jdy_sign_string("GET", "/x", plain, 2, "1", "2", (wj_jdy_enc_t)7, &s),
			 -EINVAL);
}

static json_t *normalised_lookup(const char *text, int (*fn)(json_t *), int want)
{
	json_t *o = json_loads(text, 0, NULL);
	assert_non_null(o);
	assert_int_equal(fn(o), want);
	return o;
}

/* I2: the flags and ids a mapping needs, read under the V2 or V1 names. */
static void test_lookup_normalise(void **state)
{
	(void)state;
	json_t *m = normalised_lookup("{\"id\":\"M9\",\"number\":\"SP9\",\"base_unit_id\":\"U1\","
				      "\"is_batch\":true,\"is_kf_period\":true,\"name\":\"x\"}",
				      wj_jdy_material_normalise, 0);
	assert_true(json_is_true(json_object_get(m, "batch_managed")));
	assert_true(json_is_true(json_object_get(m, "shelf_life_managed")));
	assert_string_equal(json_string_value(json_object_get(m, "base_unit_id")), "U1");
	assert_string_equal(json_string_value(json_object_get(m, "name")), "x");
	/* again: idempotent */
	assert_int_equal(wj_jdy_material_normalise(m), 0);
	assert_true(json_is_true(json_object_get(m, "batch_managed")));
	json_decref(m);
	m = normalised_lookup("{\"id\":123,\"number\":\"SP1\",\"baseunitid\":{\"id\":456},"
			      "\"isbatch\":\"1\",\"iskfperiod\":0}", wj_jdy_material_normalise, 0);
	assert_string_equal(json_string_value(json_object_get(m, "id")), "123");
	assert_string_equal(json_string_value(json_object_get(m, "base_unit_id")), "456");
	assert_true(json_is_true(json_object_get(m, "batch_managed")));
	assert_true(json_is_false(json_object_get(m, "shelf_life_managed")));
	json_decref(m);
	/* flags absent: not managed; no id: not a material */
	m = normalised_lookup("{\"id\":\"M1\"}", wj_jdy_material_normalise, 0);
	assert_true(json_is_false(json_object_get(m, "batch_managed")));
	assert_string_equal(json_string_value(json_object_get(m, "number")), "");
	assert_string_equal(json_string_value(json_object_get(m, "base_unit_id")), "");
	json_decref(m);
	json_decref(normalised_lookup("{\"number\":\"x\"}", wj_jdy_material_normalise, -EINVAL));

	json_t *st = normalised_lookup("{\"id\":\"S5\",\"number\":\"WH05\",\"is_open_sp\":true,"
				       "\"sp_entity\":[{\"id\":\"SP501\",\"number\":\"A-01\"},"
				       "{\"sp_id\":502,\"sp_number\":\"A-02\"},{\"id\":\"x\"}]}",
				       wj_jdy_store_normalise, 0);
	assert_true(json_is_true(json_object_get(st, "location_managed")));
	char *t = json_dumps(json_object_get(st, "locations"), JSON_SORT_KEYS);
	assert_string_equal(t, "{\"A-01\": \"SP501\", \"A-02\": \"502\"}");
	free(t);
	assert_int_equal(wj_jdy_store_normalise(st), 0);
	t = json_dumps(json_object_get(st, "locations"), JSON_SORT_KEYS);
	assert_string_equal(t, "{\"A-01\": \"SP501\", \"A-02\": \"502\"}");
	free(t);
	json_decref(st);
	st = normalised_lookup("{\"id\":\"S1\",\"number\":\"WH01\"}", wj_jdy_store_normalise, 0);
	assert_true(json_is_false(json_object_get(st, "location_managed")));
	assert_int_equal(json_object_size(json_object_get(st, "locations")), 0);
	json_decref(st);
	/* a flag says no though locations are listed; locations without a flag say yes */
	st = normalised_lookup("{\"id\":1,\"isopensp\":false,\"spentity\":[{\"id\":1,\"number\":\"a\"}]}",
			       wj_jdy_store_normalise, 0);
	assert_true(json_is_false(json_object_get(st, "location_managed")));
	json_decref(st);
	st = normalised_lookup("{\"id\":1,\"spentity\":[{\"id\":1,\"number\":\"a\"}]}",
			       wj_jdy_store_normalise, 0);
	assert_true(json_is_true(json_object_get(st, "location_managed")));
	json_decref(st);
}

static wj_jdy_class_t parse_cls(long status, const char *body, int64_t ra, bool maybe_sent,
				wj_jdy_result_t *r)
{
	json_t *root = NULL;
	assert_int_equal(wj_jdy_parse(status, body, body ? strlen(body) : 0, ra, maybe_sent, r, &root), 0);
	json_decref(root);
	return r->cls;
}

static void test_parse_envelopes(void **state)
{
	(void)state;
	wj_jdy_result_t r;
	json_t *root = NULL;
	/* V2 success: data borrowed from root */
	const char *v2 = "{\"errcode\":0,\"description\":\"ok\",\"data\":{\"ids\":[\"77\"],"
			 "\"id_number_map\":{\"77\":\"PYD-0001\"}}}";
	assert_int_equal(wj_jdy_parse(200, v2, strlen(v2), -1, true, &r, &root), 0);
	assert_int_equal(r.cls, WJ_JDY_OK);
	assert_non_null(root);
	assert_ptr_equal(r.data, json_object_get(root, "data"));
	char id[32], no[32];
	assert_int_equal(wj_jdy_saved_bill(r.data, id, sizeof(id), no, sizeof(no)), 0);
	assert_string_equal(id, "77");
	assert_string_equal(no, "PYD-0001");
	assert_int_equal(wj_jdy_saved_bill(r.data, id, 2, no, sizeof(no)), -ENOSPC);
	json_decref(root);

	/* V1 success, numeric id, no number */
	const char *v1 = "{\"errorCode\":0,\"message\":\"\",\"success\":true,"
			 "\"data\":{\"successPkIds\":[1234567],\"errorInfo\":[]}}";
	assert_int_equal(wj_jdy_parse(200, v1, strlen(v1), -1, true, &r, &root), 0);
	assert_int_equal(r.cls, WJ_JDY_OK);
	assert_int_equal(wj_jdy_saved_bill(r.data, id, sizeof(id), no, sizeof(no)), 0);
	assert_string_equal(id, "1234567");
	assert_string_equal(no, "");
	json_decref(root);

	/* V1 validation errors, joined */
	assert_int_equal(parse_cls(200, "{\"errorCode\":1,\"message\":\"保存失败\",\"success\":false,"
				   "\"data\":{\"successPkIds\":[],\"errorInfo\":[{\"id\":\"\",\"msg\":"
				   "\"第1行：数量必须大于0\"},{\"id\":\"\",\"msg\":\"第2行：物料不存在\"}]}}",
				   -1, true, &r), WJ_JDY_PERMANENT);
	assert_non_null(strstr(r.error, "第1行：数量必须大于0; 第2行：物料不存在"));
	assert_string_equal(r.code, "1");
	/* V1 errorCode 0 but success false / errorInfo present */
	assert_int_equal(parse_cls(200, "{\"errorCode\":0,\"message\":\"单据日期不能为空\",\"success\":false}",
				   -1, true, &r), WJ_JDY_PERMANENT);
	assert_string_equal(r.error, "单据日期不能为空");
	assert_int_equal(parse_cls(200, "{\"errorCode\":0,\"success\":true,\"data\":{\"successPkIds\":[],"
				   "\"errorInfo\":[{\"id\":\"1\",\"msg\":\"第1行：数量必须大于0\"}]}}",
				   -1, true, &r), WJ_JDY_PERMANENT);
	assert_string_equal(r.error, "第1行：数量必须大于0");
	/* V2 business error; V1-style key on a V2 answer and a string code */
	assert_int_equal(parse_cls(200, "{\"errcode\":2000002003,\"description\":\"物料不存在: M1\"}",
				   -1, false, &r), WJ_JDY_PERMANENT);
	assert_string_equal(r.code, "2000002003");
	assert_non_null(strstr(r.error, "物料不存在: M1"));
	assert_int_equal(parse_cls(200, "{\"errorCode\":\"0\",\"data\":{}}", -1, false, &r), WJ_JDY_OK);
	assert_int_equal(parse_cls(200, "{\"errcode\":\"1030002006\",\"description\":\"x\"}", -1, false, &r),
			 WJ_JDY_AUTH);

	/* token expired */
	assert_int_equal(parse_cls(200, "{\"errcode\":1030002006,\"description\":\"授权密钥无效或已过期\"}",
				   -1, true, &r), WJ_JDY_AUTH);
	assert_string_equal(r.code, "1030002006");
	assert_null(r.data);
	/* system error: retry when not maybe sent; unknown outcome otherwise */
	assert_int_equal(parse_cls(200, "{\"errcode\":2000002000,\"description\":\"系统异常\"}", -1, false, &r),
			 WJ_JDY_TRANSIENT);
	assert_int_equal(parse_cls(200, "{\"errcode\":2000002000,\"description\":\"系统异常\"}", -1, true, &r),
			 WJ_JDY_UNKNOWN);
	/* rate limiting */
	assert_int_equal(parse_cls(429, "{\"errcode\":429}", 7000, true, &r), WJ_JDY_RATE_LIMITED);
	assert_int_equal(r.retry_after_ms, 7000);
	assert_int_equal(parse_cls(429, "", -1, true, &r), WJ_JDY_RATE_LIMITED);
	assert_int_equal(r.retry_after_ms, 1000);
	assert_int_equal(parse_cls(200, "{\"errcode\":1012,\"description\":\"调用过于频繁\"}", -1, true, &r),
			 WJ_JDY_RATE_LIMITED);
	assert_int_equal(r.retry_after_ms, 1000);
	/* gateway signature error */
	assert_int_equal(parse_cls(519, "{\"errcode\":519,\"description\":\"signature check failed\","
				   "\"description_cn\":\"签名校验失败\"}", -1, true, &r), WJ_JDY_AUTH);
	assert_int_equal(r.http_status, 519);
	assert_non_null(strstr(r.error, "签名校验失败"));
	assert_non_null(strstr(r.error, "signature check failed"));
	assert_int_equal(parse_cls(401, "nope", -1, true, &r), WJ_JDY_AUTH);
	/* 5xx: unknown whenever the body may have been sent (a proxy answers 502/503/504 after
	 * the service behind it may have stored the bill), retryable otherwise */
	static const long fives[] = {500, 502, 503, 504, 599};
	for (size_t i = 0; i < sizeof(fives) / sizeof(fives[0]); i++) {
		assert_int_equal(parse_cls(fives[i], "<html>", -1, true, &r), WJ_JDY_UNKNOWN);
		assert_int_equal(parse_cls(fives[i], "", -1, false, &r), WJ_JDY_TRANSIENT);
	}
	assert_int_equal(parse_cls(503, "{\"errcode\":2000002000,\"description\":\"busy\"}", 5000, true,
				   &r), WJ_JDY_UNKNOWN);
	assert_non_null(strstr(r.error, "HTTP 503"));
	/* no response */
	assert_int_equal(parse_cls(0, NULL, -1, false, &r), WJ_JDY_TRANSIENT);
	assert_int_equal(parse_cls(0, NULL, -1, true, &r), WJ_JDY_UNKNOWN);
	/* malformed or envelope-less 200 */
	assert_int_equal(parse_cls(200, "{\"errcode\":0,", -1, false, &r), WJ_JDY_TRANSIENT);
	assert_int_equal(parse_cls(200, "{\"errcode\":0,", -1, true, &r), WJ_JDY_UNKNOWN);
	assert_int_equal(parse_cls(200, "[1,2]", -1, true, &r), WJ_JDY_UNKNOWN);
	assert_int_equal(parse_cls(200, "{\"data\":{}}", -1, false, &r), WJ_JDY_TRANSIENT);
	/* other 4xx */
	assert_int_equal(parse_cls(404, "not found", -1, true, &r), WJ_JDY_PERMANENT);
	assert_int_equal(r.http_status, 404);

	/* V1: data.success false is an error, with description_cn */
	assert_int_equal(parse_cls(200, "{\"success\":true,\"data\":{\"success\":false,\"successPkIds\":[]},"
				   "\"description_cn\":\"单据保存失败\"}", -1, true, &r), WJ_JDY_PERMANENT);
	assert_string_equal(r.error, "单据保存失败");
	assert_false(r.token_refused);
	/* the refused token: the gateway's code, an HTTP 401, or a V1 text saying so */
	assert_int_equal(parse_cls(200, "{\"errcode\":1030002006}", -1, true, &r), WJ_JDY_AUTH);
	assert_true(r.token_refused);
	assert_int_equal(parse_cls(401, "{\"code\":\"x\",\"message\":\"nope\"}", -1, true, &r), WJ_JDY_AUTH);
	assert_true(r.token_refused);
	assert_string_equal(r.code, "x");
	assert_int_equal(parse_cls(200, "{\"success\":false,\"message\":\"access_token无效或已过期\"}", -1,
				   true, &r), WJ_JDY_AUTH);
	assert_true(r.token_refused);
	assert_int_equal(parse_cls(200, "{\"errcode\":10002,\"description\":\"Invalid access token\"}", -1,
				   true, &r), WJ_JDY_AUTH);
	assert_true(r.token_refused);
	/* other authorisation errors: no new login would help */
	assert_int_equal(parse_cls(519, "{\"errcode\":519}", -1, true, &r), WJ_JDY_AUTH);
	assert_false(r.token_refused);
	assert_int_equal(parse_cls(200, "{\"errcode\":1030002011,\"description\":\"use access_token\"}", -1,
				   true, &r), WJ_JDY_AUTH);
	assert_false(r.token_refused);
	/* a message that merely quotes a token is no refusal of it */
	assert_int_equal(parse_cls(200, "{\"errcode\":2000002003,\"description\":\"物料不存在 "
				   "(received: app-token=abc)\"}", -1, true, &r), WJ_JDY_PERMANENT);
	assert_false(r.token_refused);
	/* "code" of a gateway error, but never on a success */
	assert_int_equal(parse_cls(200, "{\"code\":\"E1\",\"message\":\"bad\"}", -1, false, &r),
			 WJ_JDY_PERMANENT);
	assert_int_equal(parse_cls(200, "{\"code\":200,\"success\":true,\"data\":{}}", -1, false, &r),
			 WJ_JDY_OK);
}

static void test_parse_long_message(void **state)
{
	(void)state;
	wj_buf_t b = {0};
	wj_buf_printf(&b, "{\"errcode\":5,\"description\":\"");
	for (int i = 0; i < 400; i++)
		wj_buf_printf(&b, "数量");
	wj_buf_printf(&b, "\"}");
	wj_jdy_result_t r;
	assert_int_equal(parse_cls(200, b.data, -1, false, &r), WJ_JDY_PERMANENT);
	size_t len = strlen(r.error);
	assert_true(len > 400 && len < sizeof(r.error));
	/* ends on a whole character: the tail is complete 3-byte sequences after the prefix */
	const char *p = strstr(r.error, "数量");
	assert_non_null(p);
	assert_int_equal(strlen(p) % 3, 0);
	wj_buf_free(&b);
}

static void test_saved_bill_absent(void **state)
{
	(void)state;
	char id[32], no[32];
	json_t *d = json_loads("{\"successPkIds\":[],\"ids\":[]}", 0, NULL);
	assert_int_equal(wj_jdy_saved_bill(d, id, sizeof(id), no, sizeof(no)), -ENOENT);
	json_decref(d);
	assert_int_equal(wj_jdy_saved_bill(NULL, id, sizeof(id), no, sizeof(no)), -ENOENT);
	d = json_loads("{\"ids\":[\"5\"],\"id_number_map\":{\"6\":\"X\"}}", 0, NULL);
	assert_int_equal(wj_jdy_saved_bill(d, id, sizeof(id), no, sizeof(no)), 0);
	assert_string_equal(id, "5");
	assert_string_equal(no, "");
	json_decref(d);
}

static void test_expiry_readings(void **state)
{
	(void)state;
	const int64_t now = 1700000000000LL, day = 86400000LL;
	/* each reading, when it is the plausible one */
	assert_int_equal(wj_jdy_expiry_ms(now + day, now), now + day);                 /* at, ms */
	assert_int_equal(wj_jdy_expiry_ms((now + day) / 1000, now), now + day);        /* at, s */
	assert_int_equal(wj_jdy_expiry_ms(86400, now), now + day);                     /* life, s */
	assert_int_equal(wj_jdy_expiry_ms(day, now), now + day);                       /* life, ms */
	assert_int_equal(wj_jdy_expiry_ms(7200, now), now + 7200000LL);
	assert_int_equal(wj_jdy_expiry_ms(3 * day, now), now + 3 * day);
	assert_int_equal(wj_jdy_expiry_ms(now + 20 * day, now), now + 20 * day);
	/* both lifetimes fit: the one nearer a day wins (7200 s, not 7.2 s) */
	assert_int_equal(wj_jdy_expiry_ms(7200000, now), now + 7200000LL);
	/* nothing plausible: in the past, more than 30 days away, zero or negative */
	assert_int_equal(wj_jdy_expiry_ms(now - 1000, now), -1);
	assert_int_equal(wj_jdy_expiry_ms((now - 1000) / 1000, now), -1);
	assert_int_equal(wj_jdy_expiry_ms(now + 40 * day, now), -1);
	assert_int_equal(wj_jdy_expiry_ms(0, now), -1);
	assert_int_equal(wj_jdy_expiry_ms(-5, now), -1);
	assert_int_equal(wj_jdy_expiry_ms(INT64_MAX, now), -1);
	/* refresh: 90 % of 24 h comes first */
	assert_int_equal(wj_jdy_refresh_at(now, now + 86400000LL), now + 77760000LL);
	/* 1 h: 54 min (90 %) before 55 min */
	assert_int_equal(wj_jdy_refresh_at(now, now + 3600000LL), now + 3240000LL);
	/* 2 h: 5 min before expiry (115 min) comes after 90 % (108 min) */
	assert_int_equal(wj_jdy_refresh_at(now, now + 7200000LL), now + 6480000LL);
	/* 20 min: 5 min before expiry (15 min) comes before 90 % (18 min) */
	assert_int_equal(wj_jdy_refresh_at(now, now + 1200000LL), now + 900000LL);
	/* short lifetimes: never before half of it */
	assert_int_equal(wj_jdy_refresh_at(now, now + 2000), now + 1000);
	assert_int_equal(wj_jdy_refresh_at(now, now + 400000LL), now + 200000LL);
}

static char *normalised(const char *data_json, unsigned page)
{
	json_t *d = json_loads(data_json, 0, NULL);
	assert_non_null(d);
	json_t *n = wj_jdy_bills_normalise(d, page);
	char *t = n ? json_dumps(n, JSON_PRESERVE_ORDER) : NULL;
	json_decref(n);
	json_decref(d);
	return t;
}

static void test_bills_normalise(void **state)
{
	(void)state;
	/* V2 names, create time in ms as text, a date with a time part */
	char *t = normalised("{\"count\":\"250\",\"page\":3,\"total_page\":3,\"rows\":[{\"id\":\"9\","
			     "\"bill_no\":\"PYD-9\",\"bill_date\":\"2026-11-28 00:00:00\",\"remark\":\"WDT:RK1\","
			     "\"create_time\":\"1700000000123\",\"bill_status\":\"C\"}]}", 3);
	assert_string_equal(t, "{\"rows\": [{\"id\": \"9\", \"bill_no\": \"PYD-9\", \"bill_date\": "
			       "\"2026-11-28\", \"remark\": \"WDT:RK1\", \"create_time_ms\": 1700000000123}], "
			       "\"page\": 3, \"total_page\": 3, \"count\": 250}");
	free(t);
	/* V1 names, numeric id, Beijing wall-clock create time, pages from the count */
	t = normalised("{\"count\":101,\"rows\":[{\"id\":42,\"billno\":\"PY-1\",\"billdate\":\"2026-01-02\","
		       "\"createtime\":\"2023-11-15 06:13:20\"},7,{\"id\":43}]}", 2);
	assert_string_equal(t, "{\"rows\": [{\"id\": \"42\", \"bill_no\": \"PY-1\", \"bill_date\": "
			       "\"2026-01-02\", \"remark\": \"\", \"create_time_ms\": 1700000000000}, {\"id\": "
			       "\"43\", \"bill_no\": \"\", \"bill_date\": \"\", \"remark\": \"\", "
			       "\"create_time_ms\": null}], \"page\": 2, \"total_page\": 2, \"count\": 101}");
	free(t);
	/* data as a bare array of rows */
	t = normalised("[{\"id\":\"1\",\"remark\":\"r\"}]", 1);
	assert_non_null(strstr(t, "\"total_page\": 1, \"count\": 1"));
	free(t);
	/* no rows: not a page at all */
	assert_null(normalised("{\"count\":0}", 1));
	assert_null(normalised("{\"rows\":{}}", 1));
	/* creation times */
	json_t *v = json_string("1700000000");
	assert_int_equal(wj_jdy_time_ms(v), 1700000000000LL);
	json_decref(v);
	v = json_integer(1700000000123LL);
	assert_int_equal(wj_jdy_time_ms(v), 1700000000123LL);
	json_decref(v);
	v = json_string("2023-11-15T06:13:20.5");
	assert_int_equal(wj_jdy_time_ms(v), 1700000000000LL);
	json_decref(v);
	v = json_string("yesterday");
	assert_int_equal(wj_jdy_time_ms(v), -1);
	json_decref(v);
	assert_int_equal(wj_jdy_time_ms(NULL), -1);
}

#ifndef WJ_JDY_NO_ASYNC_TEST

/* ---- in-process Kingdee responder ---- */

#define CLIENT_ID "cid-1"
#define CLIENT_SECRET "client-secret-xyz"
#define OUTER_ID "inst-1"
#define APP_KEY "appkey-1"

struct srv {
	struct MHD_Daemon *d;
	unsigned port;
	char domain[64];
	pthread_mutex_t mu;
	int n_authorize, n_token, n_business, sig_errors, hdr_errors;
	int secret_no;          /* appSecret is "appsecret-<secret_no>" */
	int token_no;
	char valid_token[64];   /* the token business calls accept */
	bool refuse_all;        /* business calls always answer 1030002006 */
	bool authorize_fails;   /* authorize answers a non-zero errcode */
	bool expires_absolute;  /* "expires" as an absolute ms timestamp */
	unsigned fail_status;   /* business calls answer this HTTP status (0: off) */
	bool omit_app_token;    /* the token answer has access_token only */
	bool echo;              /* error answers quote the token they received */
	/* the V1 account login */
	bool login_get_refused; /* GET login answers 405 */
	int n_v1_login, n_v1_accounts, n_v1_calls, n_v1_posts;
	char v1_token[64];      /* the access_token V1 calls accept */
	char last_group[64], last_account[64]; /* headers of the last V1 call */
	char last_body[512];    /* body of the last save */
	char last_search[128];  /* search of the last bill listing, decoded */
	char last_from[24], last_to[24]; /* its creation-time bounds, "" when absent */
	char last_date_from[24], last_date_to[24]; /* its bill-date bounds, "" when absent */
};

static struct srv S;

/* request body of one connection's current request */
struct upload {
	wj_buf_t body;
};

static void request_done(void *cls, struct MHD_Connection *con, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)con;
	(void)toe;
	struct upload *u = *con_cls;
	if (u) {
		wj_buf_free(&u->body);
		free(u);
		*con_cls = NULL;
	}
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	(void)kind;
	wj_kv_t *q = cls;
	for (int i = 0; i < 8; i++) {
		if (!q[i].key) {
			q[i].key = (char *)key;
			q[i].value = (char *)(value ? value : "");
			return MHD_YES;
		}
	}
	return MHD_NO;
}

static enum MHD_Result reply(struct MHD_Connection *con, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static enum MHD_Result reply(struct MHD_Connection *con, unsigned status, const char *fmt, ...)
{
	char body[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(r, "Content-Type", "application/json");
	enum MHD_Result ret = MHD_queue_response(con, status, r);
	MHD_destroy_response(r);
	return ret;
}

#define V1_USER "user-1"
#define V1_PASSWORD "pw-secret-1"
#define V1_ACCOUNT "1584"

/* The V1 account login and the V1 calls that carry ?access_token=T. */
static enum MHD_Result v1_handler(struct MHD_Connection *con, const char *url, const char *method,
				  struct upload *u)
{
	const char *tok = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "access_token");
	enum MHD_Result ret;
	pthread_mutex_lock(&S.mu);
	if (!strcmp(url, "/auth/user/access_token")) {
		bool post = !strcmp(method, "POST");
		char want[256];
		snprintf(want, sizeof(want), "client_id=%s&client_secret=%s&username=%s&password=%s",
			 CLIENT_ID, CLIENT_SECRET, V1_USER, V1_PASSWORD);
		const char *pw = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "password");
		S.n_v1_login++;
		S.n_v1_posts += post;
		if (!post && S.login_get_refused)
			ret = reply(con, 405, "{\"errcode\":405}");
		else if (post ? !u->body.data || strcmp(u->body.data, want) : !pw || strcmp(pw, V1_PASSWORD))
			ret = reply(con, 200, "{\"errcode\":1030001002,\"description\":\"bad password %s\"}",
				    S.echo && pw ? pw : "");
		else {
			snprintf(S.v1_token, sizeof(S.v1_token), "v1tok-%d", S.n_v1_login);
			ret = reply(con, 200, "{\"errcode\":0,\"data\":{\"access_token\":\"%s\","
				    "\"expires_in\":7200}}", S.v1_token);
		}
	} else if (!tok || strcmp(tok, S.v1_token)) {
		ret = reply(con, 401, "{\"success\":false,\"code\":\"401\",\"message\":"
			    "\"access_token无效或已过期%s%s\"}", S.echo ? " got " : "", S.echo ? tok : "");
	} else if (!strcmp(url, "/jdy/sys/accountGroup")) {
		S.n_v1_accounts++;
		ret = reply(con, 200, "{\"success\":true,\"data\":[{\"serviceId\":\"s1\",\"accountGroups\":"
			    "[{\"accountId\":\"77\",\"groupName\":\"g-other\",\"accountName\":\"其他\"},"
			    "{\"accountId\":%s,\"groupName\":\"g-main\"}]}]}", V1_ACCOUNT);
	} else {
		const char *g = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "groupName");
		const char *a = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "accountId");
		snprintf(S.last_group, sizeof(S.last_group), "%s", g ? g : "");
		snprintf(S.last_account, sizeof(S.last_account), "%s", a ? a : "");
		S.n_v1_calls++;
		json_t *b = json_loads(u->body.data ? u->body.data : "{}", 0, NULL);
		const char *search = json_string_value(json_object_get(b, "search"));
		int page = (int)json_integer_value(json_object_get(b, "page"));
		snprintf(S.last_search, sizeof(S.last_search), "%s", search ? search : "");
		if (!strcmp(url, "/jdy/basedata/material_list")) {
			/* "M7" is on page 2 of a fuzzy search that also finds M70..M79 */
			if (page == 1)
				ret = reply(con, 200, "{\"success\":true,\"data\":{\"count\":101,\"rows\":["
					    "{\"id\":70,\"number\":\"M70\"}]}}");
			else
				ret = reply(con, 200, "{\"success\":true,\"data\":{\"count\":101,\"rows\":["
					    "{\"id\":7,\"number\":\"%s\",\"baseunitid_id\":\"u7\","
					    "\"isbatch\":true,\"iskfperiod\":\"0\"}]}}", search ? search : "");
		} else if (!strcmp(url, "/jdy/basedata/store_list")) {
			ret = reply(con, 200, "{\"success\":true,\"data\":{\"rows\":[{\"id\":\"5\","
				    "\"number\":\"%s\",\"isopensp\":true,\"spentity\":[{\"id\":\"SP1\","
				    "\"number\":\"A-01\"}]}]}}", search ? search : "");
		} else if (!strcmp(url, "/jdy/inv/inv_check_gain_bill_list")) {
			ret = reply(con, 200, "{\"success\":true,\"data\":{\"count\":1,\"rows\":[{\"id\":9,"
				    "\"billno\":\"PY-9\",\"billdate\":\"2026-01-02\",\"remark\":\"r\","
				    "\"createtime\":\"2023-11-15 06:13:20\"}]}}");
		} else if (!strcmp(url, "/jdy/inv/inv_check_gain_bill_save")) {
			ret = reply(con, 200, "{\"success\":true,\"data\":{\"success\":false,"
				    "\"successPkIds\":[],\"errorInfo\":[]},\"description_cn\":\"保存失败\"}");
		} else {
			ret = reply(con, 404, "{\"errcode\":404}");
		}
		json_decref(b);
	}
	pthread_mutex_unlock(&S.mu);
	return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *con, const char *url,
			       const char *method, const char *version, const char *upload_data,
			       size_t *upload_data_size, void **con_cls)
{
	(void)cls;
	(void)version;
	struct upload *u = *con_cls;
	if (!u) {
		*con_cls = calloc(1, sizeof(struct upload));
		return *con_cls ? MHD_YES : MHD_NO;
	}
	if (*upload_data_size) {
		wj_buf_append(&u->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!strncmp(url, "/auth/", 6) || MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND,
								     "access_token"))
		return v1_handler(con, url, method, u);
	/* gateway headers and signature */
	wj_kv_t q[8];
	memset(q, 0, sizeof(q));
	MHD_get_connection_values(con, MHD_GET_ARGUMENT_KIND, collect_arg, q);
	size_t nq = 0;
	while (nq < 8 && q[nq].key)
		nq++;
	const char *cid = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Api-ClientID");
	const char *ver = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Api-Auth-Version");
	const char *ts = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Api-TimeStamp");
	const char *nonce = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Api-Nonce");
	const char *sh = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Api-SignHeaders");
	const char *sig = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Api-Signature");
	char want[100];
	pthread_mutex_lock(&S.mu);
	if (!cid || strcmp(cid, CLIENT_ID) || !ver || strcmp(ver, "2.0") || !sh ||
	    strcmp(sh, "X-Api-TimeStamp,X-Api-Nonce") || !ts || !nonce || !sig ||
	    llabs(atoll(ts) - wj_now_ms()) > 300000 ||
	    wj_jdy_sign(CLIENT_SECRET, method, url, q, nq, nonce, ts, WJ_JDY_ENC_RFC3986, want, sizeof(want)) < 0 ||
	    strcmp(want, sig) != 0) {
		S.sig_errors++;
		pthread_mutex_unlock(&S.mu);
		return reply(con, 519, "{\"errcode\":519,\"description\":\"signature check failed\","
				       "\"description_cn\":\"签名校验失败\"}");
	}
	const char *arg0 = nq ? q[0].value : "";
	enum MHD_Result ret;
	if (!strcmp(url, "/jdyconnector/app_management/push_app_authorize") && !strcmp(method, "POST")) {
		S.n_authorize++;
		if (S.authorize_fails || strcmp(arg0, OUTER_ID) != 0) {
			ret = reply(con, 200, "{\"errcode\":1030001001,\"description\":\"instance unknown\"}");
		} else {
			S.secret_no++;
			ret = reply(con, 200, "{\"errcode\":0,\"description\":\"success\",\"data\":[{\"appKey\":"
				    "\"%s\",\"appSecret\":\"appsecret-%d\",\"domain\":\"%s\",\"groupName\":\"g\","
				    "\"accountId\":\"a\",\"status\":\"1\"}]}", APP_KEY, S.secret_no, S.domain);
		}
	} else if (!strcmp(url, "/jdyconnector/app_management/kingdee_auth_token")) {
		S.n_token++;
		const char *key = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "app_key");
		const char *asig = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "app_signature");
		char secret[32], exp[32];
		snprintf(secret, sizeof(secret), "appsecret-%d", S.secret_no);
		if (!key || !asig || strcmp(key, APP_KEY) ||
		    wj_jdy_app_signature(key, secret, want, sizeof(want)) < 0 || strcmp(want, asig)) {
			S.hdr_errors++;
			ret = reply(con, 200, "{\"errcode\":1030002001,\"description\":\"bad app_signature\"}");
		} else {
			S.token_no++;
			snprintf(S.valid_token, sizeof(S.valid_token), "tok-%d", S.token_no);
			if (S.expires_absolute)
				snprintf(exp, sizeof(exp), "%lld", (long long)wj_now_ms() + 3600000LL);
			else
				snprintf(exp, sizeof(exp), "86400");
			if (S.omit_app_token)
				ret = reply(con, 200, "{\"errcode\":0,\"data\":{\"access_token\":\"other-%s\","
					    "\"expires\":%s}}", S.valid_token, exp);
			else
				ret = reply(con, 200, "{\"errcode\":0,\"data\":{\"app-token\":\"%s\","
					    "\"access_token\":\"other-%s\",\"expires\":%s}}", S.valid_token,
					    S.valid_token, exp);
		}
	} else if (S.fail_status && !strncmp(url, "/jdy/", 5)) {
		S.n_business++;
		ret = reply(con, S.fail_status, "<html>bad gateway</html>");
	} else if (!strcmp(url, "/jdy/inv/inv_check_gain_bill_save") && !strcmp(method, "POST")) {
		S.n_business++;
		snprintf(S.last_body, sizeof(S.last_body), "%s", u->body.data ? u->body.data : "");
		ret = reply(con, 200, "{\"errorCode\":0,\"message\":\"\",\"success\":true,\"data\":"
			    "{\"successPkIds\":[\"880001\"],\"errorInfo\":[]}}");
	} else if (!strcmp(url, "/jdy/v2/scm/inv_check_gail_bill") && !strcmp(method, "GET")) {
		S.n_business++;
		const char *search = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "search");
		const char *from = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "create_start_time");
		const char *to = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "create_end_time");
		snprintf(S.last_search, sizeof(S.last_search), "%s", search ? search : "");
		snprintf(S.last_from, sizeof(S.last_from), "%s", from ? from : "");
		snprintf(S.last_to, sizeof(S.last_to), "%s", to ? to : "");
		const char *df = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "start_bill_date");
		const char *dt = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "end_bill_date");
		snprintf(S.last_date_from, sizeof(S.last_date_from), "%s", df ? df : "");
		snprintf(S.last_date_to, sizeof(S.last_date_to), "%s", dt ? dt : "");
		ret = reply(con, 200, "{\"errcode\":0,\"data\":{\"count\":1,\"page\":1,\"page_size\":100,"
			    "\"total_page\":1,\"rows\":[{\"id\":\"880001\",\"bill_no\":\"PYD-1\","
			    "\"remark\":\"%s\",\"create_time\":\"1700000000123\"}]}}", S.last_search);
	} else if (!strcmp(url, "/jdy/v2/bd/material_detail")) {
		S.n_business++;
		const char *tok = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "app-token");
		const char *gw = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-GW-Router-Addr");
		if (gw && strcmp(gw, S.domain))
			S.hdr_errors++;
		if (S.refuse_all || !tok || !gw || strcmp(tok, S.valid_token))
			ret = reply(con, 200, "{\"errcode\":1030002006,\"description\":\"授权密钥无效或已过期\"}");
		else if (!strcmp(arg0, "M404"))
			ret = reply(con, 200, "{\"errcode\":2000002003,\"description\":\"物料不存在%s%s%s%s\"}",
				    S.echo ? " token " : "", S.echo ? tok : "", S.echo ? " sig " : "",
				    S.echo ? sig : "");
		else
			ret = reply(con, 200, "{\"errcode\":0,\"description\":\"\",\"data\":{\"id\":\"id-%s\","
				    "\"number\":\"%s\",\"base_unit_id\":\"u1\"}}", arg0, arg0);
	} else {
		ret = reply(con, 404, "{\"errcode\":404}");
	}
	pthread_mutex_unlock(&S.mu);
	return ret;
}

static int srv_start(void)
{
	memset(&S, 0, sizeof(S));
	pthread_mutex_init(&S.mu, NULL);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	S.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			       MHD_USE_ERROR_LOG, 0, NULL, NULL, handler, NULL,
			       MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
			       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
			       MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL, MHD_OPTION_END);
	if (!S.d)
		return -1;
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(S.d, MHD_DAEMON_INFO_BIND_PORT);
	S.port = di ? di->port : 0;
	snprintf(S.domain, sizeof(S.domain), "http://127.0.0.1:%u", S.port);
	return S.port ? 0 : -1;
}

static void srv_stop(void)
{
	MHD_stop_daemon(S.d);
	pthread_mutex_destroy(&S.mu);
}

static int srv_get(int *field)
{
	pthread_mutex_lock(&S.mu);
	int v = *field;
	pthread_mutex_unlock(&S.mu);
	return v;
}

static void srv_set(bool *flag, bool value)
{
	pthread_mutex_lock(&S.mu);
	*flag = value;
	pthread_mutex_unlock(&S.mu);
}

/* ---- client side ---- */

struct env {
	uv_loop_t loop;
	wj_http_t *http;
	wj_jdy_t *j;
	char url[64];
	int hooks;
	char hook_json[512];
};

struct outcome {
	int done;
	wj_jdy_class_t cls;
	int ok, auth, perm, other;
	int64_t retry_after;
	char error[512];
	char code[32];
	char id[64];
};

static void on_result(const wj_jdy_result_t *r, void *arg)
{
	struct outcome *o = arg;
	o->done++;
	o->cls = r->cls;
	switch (r->cls) {
	case WJ_JDY_OK:
		o->ok++;
		if (json_is_string(json_object_get(r->data, "id")))
			snprintf(o->id, sizeof(o->id), "%s", json_string_value(json_object_get(r->data, "id")));
		break;
	case WJ_JDY_AUTH: o->auth++; break;
	case WJ_JDY_PERMANENT: o->perm++; break;
	default: o->other++; break;
	}
	o->retry_after = r->retry_after_ms;
	snprintf(o->error, sizeof(o->error), "%s", r->error);
	snprintf(o->code, sizeof(o->code), "%s", r->code);
}

struct list_seen {
	int done;
	wj_jdy_class_t cls;
	char text[1024];
};

static void on_list_seen(const wj_jdy_result_t *r, void *arg)
{
	struct list_seen *l = arg;
	l->done++;
	l->cls = r->cls;
	char *t = r->data ? json_dumps(r->data, JSON_PRESERVE_ORDER) : NULL;
	snprintf(l->text, sizeof(l->text), "%s", t ? t : "");
	free(t);
}

static void on_hook(const char *json, void *arg)
{
	struct env *e = arg;
	e->hooks++;
	snprintf(e->hook_json, sizeof(e->hook_json), "%s", json);
}

/* The last persisted token's member key: its text (or number as text) equals want. */
static void assert_hook(struct env *e, const char *key, const char *want)
{
	json_t *h = json_loads(e->hook_json, 0, NULL);
	assert_non_null(h);
	const json_t *v = json_object_get(h, key);
	char text[64];
	if (json_is_integer(v))
		snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else
		snprintf(text, sizeof(text), "%s", json_string_value(v) ? json_string_value(v) : "?");
	json_decref(h);
	assert_string_equal(text, want);
}

/* The last persisted token expires about life_ms from now. */
static void assert_hook_life(struct env *e, int64_t life_ms)
{
	json_t *h = json_loads(e->hook_json, 0, NULL);
	assert_non_null(h);
	int64_t exp = json_integer_value(json_object_get(h, "expires_ms"));
	json_decref(h);
	assert_true(llabs(exp - (wj_now_ms() + life_ms)) < 60000);
}

static void tick(uv_timer_t *t)
{
	(void)t;
}

/* Run the loop until *done reaches target or ms pass. */
static bool run_until(struct env *e, const int *done, int target, uint64_t ms)
{
	uv_timer_t t;
	uv_timer_init(&e->loop, &t);
	uv_timer_start(&t, tick, 20, 20);
	uint64_t end = wj_mono_ms() + ms;
	while (*done < target && wj_mono_ms() < end)
		uv_run(&e->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&e->loop, UV_RUN_NOWAIT);
	return *done >= target;
}

static int env_setup(void **state)
{
	if (srv_start() < 0)
		return -1;
	struct env *e = calloc(1, sizeof(*e));
	if (!e)
		return -1;
	uv_loop_init(&e->loop);
	wj_http_opts_t ho = {.max_inflight = 16};
	e->http = wj_http_new(&e->loop, &ho);
	snprintf(e->url, sizeof(e->url), "http://127.0.0.1:%u/", S.port);
	wj_jdy_opts_t o = {.api = WJ_JDY_V2, .url = e->url, .client_id = CLIENT_ID,
			   .client_secret = CLIENT_SECRET, .outer_instance_id = OUTER_ID,
			   .timeout_ms = 10000};
	e->j = e->http ? wj_jdy_new(&e->loop, e->http, &o) : NULL;
	if (!e->j)
		return -1;
	wj_jdy_set_token_hook(e->j, on_hook, e);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;
	if (e->j)
		wj_jdy_free(e->j);
	if (e->http)
		wj_http_free(e->http);
	for (int i = 0; i < 200 && uv_loop_alive(&e->loop); i++)
		uv_run(&e->loop, UV_RUN_NOWAIT);
	int rc = uv_loop_close(&e->loop);
	free(e);
	srv_stop();
	return rc == 0 ? 0 : -1;
}

#define N_CALLS 200

static void test_single_flight_login(void **state)
{
	struct env *e = *state;
	static struct outcome o[N_CALLS];
	memset(o, 0, sizeof(o));
	int done = 0;
	char num[N_CALLS][16];
	for (int i = 0; i < N_CALLS; i++) {
		snprintf(num[i], sizeof(num[i]), "M%03d", i);
		assert_int_equal(wj_jdy_material(e->j, num[i], on_result, &o[i]), 0);
	}
	assert_false(wj_jdy_has_token(e->j));
	/* count completions */
	uint64_t end = wj_mono_ms() + 20000;
	while (done < N_CALLS && wj_mono_ms() < end) {
		run_until(e, &done, N_CALLS, 50);
		done = 0;
		for (int i = 0; i < N_CALLS; i++)
			done += o[i].done;
	}
	assert_int_equal(done, N_CALLS);
	for (int i = 0; i < N_CALLS; i++) {
		assert_int_equal(o[i].done, 1);
		assert_int_equal(o[i].ok, 1);
		char want[32];
		snprintf(want, sizeof(want), "id-M%03d", i);
		assert_string_equal(o[i].id, want);
	}
	assert_int_equal(srv_get(&S.n_authorize), 1);
	assert_int_equal(srv_get(&S.n_token), 1);
	assert_int_equal(srv_get(&S.n_business), N_CALLS);
	assert_int_equal(srv_get(&S.sig_errors), 0);
	assert_int_equal(srv_get(&S.hdr_errors), 0);
	assert_true(wj_jdy_has_token(e->j));
	/* the persistence hook got the token, its domain and a 24 h expiry */
	assert_int_equal(e->hooks, 1);
	assert_hook(e, "auth", "gateway");
	assert_hook(e, "app_token", "tok-1");
	assert_hook(e, "domain", S.domain);
	assert_hook(e, "app_key", APP_KEY);
	assert_hook_life(e, 86400000LL);

	/* unknown material: permanent, naming the number */
	struct outcome u = {0};
	assert_int_equal(wj_jdy_material(e->j, "M404", on_result, &u), 0);
	assert_true(run_until(e, &u.done, 1, 10000));
	assert_int_equal(u.perm, 1);
	assert_non_null(strstr(u.error, "M404"));
	assert_int_equal(srv_get(&S.n_authorize), 1);
}

static void test_relogin_after_expired_token(void **state)
{
	struct env *e = *state;
	srv_set(&S.expires_absolute, true);
	struct outcome a = {0};
	assert_int_equal(wj_jdy_material(e->j, "A1", on_result, &a), 0);
	assert_true(run_until(e, &a.done, 1, 10000));
	assert_int_equal(a.ok, 1);
	assert_int_equal(srv_get(&S.n_authorize), 1);
	assert_int_equal(srv_get(&S.n_token), 1);
	/* absolute reading of "expires" */
	assert_hook_life(e, 3600000LL);

	/* the server forgets the token: one refusal, one re-login, one retry */
	pthread_mutex_lock(&S.mu);
	snprintf(S.valid_token, sizeof(S.valid_token), "revoked");
	pthread_mutex_unlock(&S.mu);
	struct outcome b = {0};
	assert_int_equal(wj_jdy_material(e->j, "B1", on_result, &b), 0);
	assert_true(run_until(e, &b.done, 1, 10000));
	assert_int_equal(b.ok, 1);
	assert_string_equal(b.id, "id-B1");
	assert_int_equal(srv_get(&S.n_authorize), 2);
	assert_int_equal(srv_get(&S.n_token), 2);
	assert_int_equal(srv_get(&S.n_business), 3);
	assert_int_equal(e->hooks, 2);
	assert_non_null(strstr(e->hook_json, "\"tok-2\""));

	/* refused again after the re-login: AUTH, no second retry */
	srv_set(&S.refuse_all, true);
	struct outcome c = {0};
	assert_int_equal(wj_jdy_material(e->j, "C1", on_result, &c), 0);
	assert_true(run_until(e, &c.done, 1, 10000));
	assert_int_equal(c.auth, 1);
	assert_string_equal(c.code, "1030002006");
	assert_int_equal(srv_get(&S.n_authorize), 3);
	assert_int_equal(srv_get(&S.n_token), 3);
	assert_int_equal(srv_get(&S.n_business), 5);
	assert_int_equal(srv_get(&S.sig_errors), 0);
}

static void test_restore_token(void **state)
{
	struct env *e = *state;
	char json[512];
	/* expired: ignored */
	snprintf(json, sizeof(json), "{\"app_token\":\"tok-old\",\"domain\":\"%s\",\"expires_ms\":%lld,"
		 "\"app_key\":\"%s\"}", S.domain, (long long)wj_now_ms() - 1000, APP_KEY);
	assert_int_equal(wj_jdy_restore_token(e->j, json), -ESTALE);
	assert_false(wj_jdy_has_token(e->j));
	assert_int_equal(wj_jdy_restore_token(e->j, "{\"app_token\":1}"), -EINVAL);
	assert_int_equal(wj_jdy_restore_token(e->j, "not json"), -EINVAL);
	/* valid: used without any login */
	pthread_mutex_lock(&S.mu);
	snprintf(S.valid_token, sizeof(S.valid_token), "tok-saved");
	pthread_mutex_unlock(&S.mu);
	char login[65];
	wj_jdy_login_digest(e->j, login);
	assert_int_equal(strlen(login), 64);
	const char *fmt = "{\"app_token\":\"tok-saved\",\"domain\":\"%s\",\"expires_ms\":%lld,"
			  "\"app_key\":\"%s\"%s%s%s}";
	long long exp = (long long)wj_now_ms() + 20 * 3600 * 1000LL;
	/* made with other credentials, or saying nothing of them: a login is due */
	snprintf(json, sizeof(json), fmt, S.domain, exp, APP_KEY, ",\"login\":\"", "00ff", "\"");
	assert_int_equal(wj_jdy_restore_token(e->j, json), -ESTALE);
	snprintf(json, sizeof(json), fmt, S.domain, exp, APP_KEY, "", "", "");
	assert_int_equal(wj_jdy_restore_token(e->j, json), -ESTALE);
	assert_false(wj_jdy_has_token(e->j));
	snprintf(json, sizeof(json), fmt, S.domain, exp, APP_KEY, ",\"login\":\"", login, "\"");
	assert_int_equal(wj_jdy_restore_token(e->j, json), 0);
	assert_true(wj_jdy_has_token(e->j));
	struct outcome o[5];
	memset(o, 0, sizeof(o));
	int done = 0;
	for (int i = 0; i < 5; i++)
		assert_int_equal(wj_jdy_material(e->j, "R1", on_result, &o[i]), 0);
	uint64_t end = wj_mono_ms() + 10000;
	while (done < 5 && wj_mono_ms() < end) {
		run_until(e, &done, 5, 50);
		done = o[0].done + o[1].done + o[2].done + o[3].done + o[4].done;
	}
	for (int i = 0; i < 5; i++)
		assert_int_equal(o[i].ok, 1);
	assert_int_equal(srv_get(&S.n_authorize), 0);
	assert_int_equal(srv_get(&S.n_token), 0);
	assert_int_equal(srv_get(&S.n_business), 5);
	assert_int_equal(e->hooks, 0);
}

static void test_login_failure_backoff(void **state)
{
	struct env *e = *state;
	srv_set(&S.authorize_fails, true);
	struct outcome a[3];
	memset(a, 0, sizeof(a));
	for (int i = 0; i < 3; i++)
		assert_int_equal(wj_jdy_material(e->j, "F1", on_result, &a[i]), 0);
	int done = 0;
	uint64_t end = wj_mono_ms() + 10000;
	while (done < 3 && wj_mono_ms() < end) {
		run_until(e, &done, 3, 50);
		done = a[0].done + a[1].done + a[2].done;
	}
	for (int i = 0; i < 3; i++) {
		assert_int_equal(a[i].auth, 1);
		assert_non_null(strstr(a[i].error, "login failed"));
		assert_true(a[i].retry_after > 0);
	}
	assert_int_equal(srv_get(&S.n_authorize), 1);
	/* within the backoff: fails from the loop without a new attempt */
	srv_set(&S.authorize_fails, false);
	struct outcome b = {0};
	assert_int_equal(wj_jdy_material(e->j, "F2", on_result, &b), 0);
	assert_int_equal(b.done, 0);
	assert_true(run_until(e, &b.done, 1, 5000));
	assert_int_equal(b.auth, 1);
	assert_true(b.retry_after > 0 && b.retry_after <= WJ_JDY_LOGIN_BACKOFF_MS);
	assert_int_equal(srv_get(&S.n_authorize), 1);
	assert_int_equal(srv_get(&S.n_business), 0);
	/* once the backoff has passed, the next call logs in and succeeds */
	int never = 0;
	run_until(e, &never, 1, (uint64_t)b.retry_after + 200);
	struct outcome c = {0};
	assert_int_equal(wj_jdy_material(e->j, "F3", on_result, &c), 0);
	assert_true(run_until(e, &c.done, 1, 10000));
	assert_int_equal(c.ok, 1);
	assert_int_equal(srv_get(&S.n_authorize), 2);
	assert_int_equal(srv_get(&S.n_token), 1);
}

static void test_save_v1_and_find_bills(void **state)
{
	struct env *e = *state;
	wj_jdy_opts_t o = {.api = WJ_JDY_V1, .url = e->url, .client_id = CLIENT_ID,
			   .client_secret = CLIENT_SECRET, .outer_instance_id = OUTER_ID,
			   .timeout_ms = 10000};
	assert_int_equal(wj_jdy_set_opts(e->j, &o), 0);
	const char *body = "{\"billdate\":\"2024-01-01\",\"remark\":\"WDT:RK001\",\"material_entity\":[]}";
	struct outcome a = {0};
	assert_int_equal(wj_jdy_save(e->j, body, on_result, &a), 0);
	assert_true(run_until(e, &a.done, 1, 10000));
	assert_int_equal(a.ok, 1);
	pthread_mutex_lock(&S.mu);
	assert_string_equal(S.last_body, body);
	pthread_mutex_unlock(&S.mu);
	/* a search with Chinese, spaces and reserved characters arrives intact and signed */
	struct outcome b = {0};
	assert_int_equal(wj_jdy_find_bills(e->j, "WDT:盘盈 1&x=y", 1, on_result, &b), 0);
	assert_true(run_until(e, &b.done, 1, 10000));
	assert_int_equal(b.ok, 1);
	pthread_mutex_lock(&S.mu);
	assert_string_equal(S.last_search, "WDT:盘盈 1&x=y");
	assert_string_equal(S.last_from, "");
	pthread_mutex_unlock(&S.mu);
	/* the list with creation-time bounds: sent as epoch ms, rows normalised */
	struct list_seen l = {0};
	wj_jdy_bill_query_t q = {.created_from_ms = 1700000000000LL,
				 .created_to_ms = 1700000600000LL, .page = 2};
	assert_int_equal(wj_jdy_list_bills(e->j, &q, on_list_seen, &l), 0);
	assert_true(run_until(e, &l.done, 1, 10000));
	assert_int_equal(l.cls, WJ_JDY_OK);
	assert_string_equal(l.text, "{\"rows\": [{\"id\": \"880001\", \"bill_no\": \"PYD-1\", "
				    "\"bill_date\": \"\", \"remark\": \"\", \"create_time_ms\": "
				    "1700000000123}], \"page\": 1, \"total_page\": 1, \"count\": 1}");
	pthread_mutex_lock(&S.mu);
	assert_string_equal(S.last_search, "");
	assert_string_equal(S.last_from, "1700000000000");
	assert_string_equal(S.last_to, "1700000600000");
	assert_string_equal(S.last_date_from, "");
	pthread_mutex_unlock(&S.mu);
	/* bills dated in a range: start_bill_date and end_bill_date, no creation bounds */
	struct list_seen ld = {0};
	wj_jdy_bill_query_t qd = {.bill_date_from = "2026-08-01", .bill_date_to = "2026-08-15"};
	assert_int_equal(wj_jdy_list_bills(e->j, &qd, on_list_seen, &ld), 0);
	assert_true(run_until(e, &ld.done, 1, 10000));
	assert_int_equal(ld.cls, WJ_JDY_OK);
	pthread_mutex_lock(&S.mu);
	assert_string_equal(S.last_date_from, "2026-08-01");
	assert_string_equal(S.last_date_to, "2026-08-15");
	assert_string_equal(S.last_from, "");
	pthread_mutex_unlock(&S.mu);
	/* a window that ends before it starts */
	q.created_to_ms = 1;
	assert_int_equal(wj_jdy_list_bills(e->j, &q, on_list_seen, &l), -EINVAL);
	assert_int_equal(srv_get(&S.sig_errors), 0);
	assert_int_equal(srv_get(&S.n_authorize), 1);
}

/* A 5xx after a save's body went out leaves its outcome unknown; the same answer to a lookup,
 * or a save that never reached the server, is simply worth retrying. */
static void test_5xx_unknown_after_send(void **state)
{
	struct env *e = *state;
	static const unsigned statuses[] = {502, 503, 504, 500};
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		pthread_mutex_lock(&S.mu);
		S.fail_status = statuses[i];
		pthread_mutex_unlock(&S.mu);
		struct outcome a = {0}, b = {0};
		assert_int_equal(wj_jdy_save(e->j, "{\"bill_date\":\"2024-01-01\"}", on_result, &a), 0);
		assert_int_equal(wj_jdy_material(e->j, "M1", on_result, &b), 0);
		assert_true(run_until(e, &a.done, 1, 10000));
		assert_true(run_until(e, &b.done, 1, 10000));
		assert_int_equal(a.cls, WJ_JDY_UNKNOWN);
		assert_int_equal(b.cls, WJ_JDY_TRANSIENT);
	}
	/* connection refused: the save never left */
	wj_jdy_opts_t o = {.api = WJ_JDY_V2, .url = "http://127.0.0.1:1", .client_id = CLIENT_ID,
			   .client_secret = CLIENT_SECRET, .outer_instance_id = OUTER_ID,
			   .timeout_ms = 5000};
	wj_jdy_t *dead = wj_jdy_new(&e->loop, e->http, &o);
	assert_non_null(dead);
	char json[512], login[65];
	wj_jdy_login_digest(dead, login);
	snprintf(json, sizeof(json), "{\"app_token\":\"tok-x\",\"domain\":\"d\",\"expires_ms\":%lld,"
		 "\"login\":\"%s\"}", (long long)wj_now_ms() + 3600000LL, login);
	assert_int_equal(wj_jdy_restore_token(dead, json), 0);
	struct outcome c = {0};
	assert_int_equal(wj_jdy_save(dead, "{}", on_result, &c), 0);
	assert_true(run_until(e, &c.done, 1, 10000));
	assert_int_equal(c.cls, WJ_JDY_TRANSIENT);
	wj_jdy_free(dead);
}

static void use_password(struct env *e, const char *password, const char *account)
{
	wj_jdy_opts_t o = {.api = WJ_JDY_V1, .auth = WJ_JDY_AUTH_PASSWORD, .url = e->url,
			   .client_id = CLIENT_ID, .client_secret = CLIENT_SECRET,
			   .username = V1_USER, .password = password, .account_id = account,
			   .timeout_ms = 10000};
	assert_int_equal(wj_jdy_set_opts(e->j, &o), 0);
}

static void test_password_login(void **state)
{
	struct env *e = *state;
	use_password(e, V1_PASSWORD, V1_ACCOUNT);
	/* a material found on page 2 of the V1 list: normalised (I2) */
	struct list_seen m = {0};
	assert_int_equal(wj_jdy_material(e->j, "M7", on_list_seen, &m), 0);
	assert_true(run_until(e, &m.done, 1, 10000));
	assert_int_equal(m.cls, WJ_JDY_OK);
	json_t *mo = json_loads(m.text, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(mo, "id")), "7");
	assert_string_equal(json_string_value(json_object_get(mo, "number")), "M7");
	assert_string_equal(json_string_value(json_object_get(mo, "base_unit_id")), "u7");
	assert_true(json_is_true(json_object_get(mo, "batch_managed")));
	assert_true(json_is_false(json_object_get(mo, "shelf_life_managed")));
	json_decref(mo);
	assert_int_equal(srv_get(&S.n_v1_login), 1);
	assert_int_equal(srv_get(&S.n_v1_accounts), 1);
	assert_int_equal(srv_get(&S.n_v1_calls), 2);
	assert_int_equal(srv_get(&S.n_authorize), 0);
	pthread_mutex_lock(&S.mu);
	assert_string_equal(S.last_group, "g-main");
	assert_string_equal(S.last_account, V1_ACCOUNT);
	assert_string_equal(S.last_search, "M7");
	pthread_mutex_unlock(&S.mu);
	/* the persisted token says which login and account set it belongs to */
	assert_hook(e, "auth", "password");
	assert_hook(e, "access_token", "v1tok-1");
	assert_hook(e, "group_name", "g-main");
	assert_hook(e, "account_id", V1_ACCOUNT);
	assert_hook_life(e, 7200000LL);
	/* a store with its locations */
	struct list_seen st = {0};
	assert_int_equal(wj_jdy_store(e->j, "WH05", on_list_seen, &st), 0);
	assert_true(run_until(e, &st.done, 1, 10000));
	assert_int_equal(st.cls, WJ_JDY_OK);
	assert_non_null(strstr(st.text, "\"location_managed\": true"));
	assert_non_null(strstr(st.text, "\"locations\": {\"A-01\": \"SP1\"}"));
	/* the V1 list, normalised */
	struct list_seen l = {0};
	wj_jdy_bill_query_t q = {.search = "r", .page = 1};
	assert_int_equal(wj_jdy_list_bills(e->j, &q, on_list_seen, &l), 0);
	assert_true(run_until(e, &l.done, 1, 10000));
	assert_int_equal(l.cls, WJ_JDY_OK);
	assert_string_equal(l.text, "{\"rows\": [{\"id\": \"9\", \"bill_no\": \"PY-9\", \"bill_date\": "
				    "\"2026-01-02\", \"remark\": \"r\", \"create_time_ms\": 1700000000000}], "
				    "\"page\": 1, \"total_page\": 1, \"count\": 1}");
	/* V1: data.success false is an error */
	struct outcome sv = {0};
	assert_int_equal(wj_jdy_save(e->j, "{}", on_result, &sv), 0);
	assert_true(run_until(e, &sv.done, 1, 10000));
	assert_int_equal(sv.cls, WJ_JDY_PERMANENT);
	assert_non_null(strstr(sv.error, "保存失败"));
	/* the token refused (HTTP 401 saying so): one new login, the call goes through */
	pthread_mutex_lock(&S.mu);
	snprintf(S.v1_token, sizeof(S.v1_token), "revoked");
	pthread_mutex_unlock(&S.mu);
	struct list_seen r = {0};
	assert_int_equal(wj_jdy_store(e->j, "WH01", on_list_seen, &r), 0);
	assert_true(run_until(e, &r.done, 1, 10000));
	assert_int_equal(r.cls, WJ_JDY_OK);
	assert_int_equal(srv_get(&S.n_v1_login), 2);
	assert_int_equal(srv_get(&S.n_v1_accounts), 2);
	assert_int_equal(srv_get(&S.n_v1_posts), 0);
	assert_int_equal(srv_get(&S.sig_errors), 0);
	assert_string_equal(wj_jdy_login_error(e->j), "");
}

static void test_password_post_and_accounts(void **state)
{
	struct env *e = *state;
	srv_set(&S.login_get_refused, true);
	use_password(e, V1_PASSWORD, V1_ACCOUNT);
	struct outcome a = {0};
	assert_int_equal(wj_jdy_store(e->j, "WH01", on_result, &a), 0);
	assert_true(run_until(e, &a.done, 1, 10000));
	assert_int_equal(a.ok, 1);
	assert_int_equal(srv_get(&S.n_v1_login), 2);
	assert_int_equal(srv_get(&S.n_v1_posts), 1);
	/* an account set the login does not see: the error lists those it does */
	use_password(e, V1_PASSWORD, "999");
	struct outcome b = {0};
	assert_int_equal(wj_jdy_store(e->j, "WH01", on_result, &b), 0);
	assert_true(run_until(e, &b.done, 1, 10000));
	assert_int_equal(b.auth, 1);
	const char *want = "account set 999 is not among the account sets of this login; this login "
			   "sees: 77 (g-other, 其他), 1584 (g-main)";
	assert_non_null(strstr(b.error, want));
	assert_non_null(strstr(wj_jdy_login_error(e->j), want));
	/* no account id at all */
	use_password(e, V1_PASSWORD, "");
	struct outcome c = {0};
	assert_int_equal(wj_jdy_store(e->j, "WH01", on_result, &c), 0);
	assert_true(run_until(e, &c.done, 1, 10000));
	assert_non_null(strstr(c.error, "no kingdee.account_id configured; this login sees: 77"));
	/* a persisted token of another login or account set is not adopted */
	char json[256];
	snprintf(json, sizeof(json), "{\"auth\":\"password\",\"access_token\":\"t\",\"group_name\":"
		 "\"g\",\"account_id\":\"1\",\"expires_ms\":%lld}", (long long)wj_now_ms() + 3600000LL);
	assert_int_equal(wj_jdy_restore_token(e->j, json), -ESTALE);
	snprintf(json, sizeof(json), "{\"app_token\":\"t\",\"domain\":\"d\",\"expires_ms\":%lld}",
		 (long long)wj_now_ms() + 3600000LL);
	assert_int_equal(wj_jdy_restore_token(e->j, json), -ESTALE);
}

/* app-token only: the answer's access_token is another token; without app-token no login. */
static void test_app_token_only(void **state)
{
	struct env *e = *state;
	struct outcome a = {0};
	assert_int_equal(wj_jdy_material(e->j, "A1", on_result, &a), 0);
	assert_true(run_until(e, &a.done, 1, 10000));
	assert_int_equal(a.ok, 1);
	assert_non_null(strstr(e->hook_json, "\"app_token\":\"tok-1\""));
	pthread_mutex_lock(&S.mu);
	S.omit_app_token = true;
	snprintf(S.valid_token, sizeof(S.valid_token), "revoked");
	pthread_mutex_unlock(&S.mu);
	struct outcome b = {0};
	assert_int_equal(wj_jdy_material(e->j, "B1", on_result, &b), 0);
	assert_true(run_until(e, &b.done, 1, 10000));
	assert_int_equal(b.auth, 1);
	assert_non_null(strstr(b.error, "login failed: token: no app-token in the answer"));
}

/* Error texts handed out never carry a token, password, secret or signature, even when the
 * server quotes them. */
static void test_errors_masked(void **state)
{
	struct env *e = *state;
	srv_set(&S.echo, true);
	struct outcome a = {0};
	assert_int_equal(wj_jdy_material(e->j, "M404", on_result, &a), 0);
	assert_true(run_until(e, &a.done, 1, 10000));
	assert_int_equal(a.perm, 1);
	assert_null(strstr(a.error, "tok-1"));
	assert_non_null(strstr(a.error, "物料不存在 token *** sig ***"));
	/* the password quoted by a refused login */
	use_password(e, "pw-secret-wrong", V1_ACCOUNT);
	struct outcome b = {0};
	assert_int_equal(wj_jdy_store(e->j, "WH01", on_result, &b), 0);
	assert_true(run_until(e, &b.done, 1, 10000));
	assert_int_equal(b.auth, 1);
	assert_null(strstr(b.error, "pw-secret-wrong"));
	assert_null(strstr(wj_jdy_login_error(e->j), "pw-secret-wrong"));
	assert_non_null(strstr(b.error, "bad password ***"));
}

static void test_free_with_waiting_calls(void **state)
{
	struct env *e = *state;
	struct outcome o[3];
	memset(o, 0, sizeof(o));
	for (int i = 0; i < 3; i++)
		assert_int_equal(wj_jdy_material(e->j, "W1", on_result, &o[i]), 0);
	/* the login is in flight, the calls wait for it; closing completes each exactly once */
	wj_jdy_free(e->j);
	e->j = NULL;
	wj_http_free(e->http);
	e->http = NULL;
	for (int i = 0; i < 200 && uv_loop_alive(&e->loop); i++)
		uv_run(&e->loop, UV_RUN_NOWAIT);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(o[i].done, 1);
		assert_int_equal(o[i].other, 1);
	}
}

#endif /* WJ_JDY_NO_ASYNC_TEST */

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_vector),
		cmocka_unit_test(test_app_signature),
		cmocka_unit_test(test_sign_string_post_no_query),
		cmocka_unit_test(test_sign_string_sorted_chinese),
		cmocka_unit_test(test_parse_envelopes),
		cmocka_unit_test(test_parse_long_message),
		cmocka_unit_test(test_saved_bill_absent),
		cmocka_unit_test(test_expiry_readings),
		cmocka_unit_test(test_bills_normalise),
		cmocka_unit_test(test_sign_encodings),
		cmocka_unit_test(test_lookup_normalise),
#ifndef WJ_JDY_NO_ASYNC_TEST
		cmocka_unit_test_setup_teardown(test_single_flight_login, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_relogin_after_expired_token, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_restore_token, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_login_failure_backoff, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_free_with_waiting_calls, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_save_v1_and_find_bills, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_5xx_unknown_after_send, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_password_login, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_password_post_and_accounts, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_app_token_only, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_errors_masked, env_setup, env_teardown),
#endif
	};
#ifndef WJ_JDY_NO_ASYNC_TEST
	if (wj_http_global_init() != 0)
		return 1;
#endif
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
#ifndef WJ_JDY_NO_ASYNC_TEST
	wj_http_global_cleanup();
#endif
	return rc;
}
