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
	assert_int_equal(wj_jdy_sign_string("GET", VEC_PATH, q, 2, "4427456950", "1670305063559", &s), 0);
	assert_string_equal(s.data,
		"GET\n%2Fjdyconnector%2Fapp_management%2Fkingdee_auth_token\n"
		"app_key=bVZgAZOv1&app_signature=MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0NzZhN2YxZDJmOTlkZA%253D%253D\n"
		"x-api-nonce:4427456950\nx-api-timestamp:1670305063559\n");
	wj_buf_free(&s);
	char sig[89];
	assert_int_equal(wj_jdy_sign(VEC_SECRET, "GET", VEC_PATH, q, 2, "4427456950", "1670305063559",
				     sig, sizeof(sig)), 0);
	assert_string_equal(sig, "OTFiZTliNDFiMjNkYTI3YzVhNzg4MDI4ZGU3MWY1ZTA5ZTk1NjVlNGM1YTI1ZjIxY2Y5YTA3ZGY2OGI1MGQ1MQ==");
	/* one byte short of room, an empty secret */
	assert_int_equal(wj_jdy_sign(VEC_SECRET, "GET", VEC_PATH, q, 2, "4427456950", "1670305063559",
				     sig, 88), -ENOSPC);
	assert_int_equal(wj_jdy_sign("", "GET", VEC_PATH, q, 2, "1", "2", sig, sizeof(sig)), -EINVAL);
	/* a changed nonce changes the signature */
	char sig2[89];
	assert_int_equal(wj_jdy_sign(VEC_SECRET, "GET", VEC_PATH, q, 2, "4427456951", "1670305063559",
				     sig2, sizeof(sig2)), 0);
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
					     "456", &s), 0);
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
	assert_int_equal(wj_jdy_sign_string("GET", "/jdy/v2/scm/inv_check_gail_bill", q, 4, "9", "8", &s), 0);
	assert_string_equal(s.data,
		"GET\n%2Fjdy%2Fv2%2Fscm%2Finv_check_gail_bill\n"
		"a=x%253Dy%2526z~._-&page=1&page_size=100&"
		"search=WDT%253A%25E7%259B%2598%25E7%259B%2588%25201\n"
		"x-api-nonce:9\nx-api-timestamp:8\n");
	/* the order of the given parameters does not matter */
	wj_kv_t r[4] = {q[2], q[0], q[3], q[1]};
	char a[89], b[89];
	assert_int_equal(wj_jdy_sign("k1", "GET", "/p", q, 4, "9", "8", a, sizeof(a)), 0);
	assert_int_equal(wj_jdy_sign("k1", "GET", "/p", r, 4, "9", "8", b, sizeof(b)), 0);
	assert_string_equal(a, b);
	wj_buf_free(&s);
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
	const int64_t now = 1700000000000LL;
	/* absolute ms */
	assert_int_equal(wj_jdy_expiry_ms(1700086400000LL, now), 1700086400000LL);
	/* absolute seconds */
	assert_int_equal(wj_jdy_expiry_ms(1700086400LL, now), 1700086400000LL);
	/* a lifetime in seconds */
	assert_int_equal(wj_jdy_expiry_ms(86400, now), now + 86400000LL);
	assert_int_equal(wj_jdy_expiry_ms(7200, now), now + 7200000LL);
	assert_int_equal(wj_jdy_expiry_ms(0, now), now);
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
	char last_body[512];    /* body of the last save */
	char last_search[128];  /* search of the last bill listing, decoded */
	char last_from[24], last_to[24]; /* its creation-time bounds, "" when absent */
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
	    wj_jdy_sign(CLIENT_SECRET, method, url, q, nq, nonce, ts, want, sizeof(want)) < 0 ||
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
			ret = reply(con, 200, "{\"errcode\":0,\"data\":{\"app-token\":\"%s\",\"access_token\":"
				    "\"%s\",\"expires\":%s}}", S.valid_token, S.valid_token, exp);
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
			ret = reply(con, 200, "{\"errcode\":2000002003,\"description\":\"物料不存在\"}");
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
	json_t *h = json_loads(e->hook_json, 0, NULL);
	assert_non_null(h);
	assert_string_equal(json_string_value(json_object_get(h, "app_token")), "tok-1");
	assert_string_equal(json_string_value(json_object_get(h, "domain")), S.domain);
	assert_string_equal(json_string_value(json_object_get(h, "app_key")), APP_KEY);
	int64_t exp = json_integer_value(json_object_get(h, "expires_ms"));
	assert_true(llabs(exp - (wj_now_ms() + 86400000LL)) < 60000);
	json_decref(h);

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
	pthread_mutex_lock(&S.mu);
	S.expires_absolute = true;
	pthread_mutex_unlock(&S.mu);
	struct outcome a = {0};
	assert_int_equal(wj_jdy_material(e->j, "A1", on_result, &a), 0);
	assert_true(run_until(e, &a.done, 1, 10000));
	assert_int_equal(a.ok, 1);
	assert_int_equal(srv_get(&S.n_authorize), 1);
	assert_int_equal(srv_get(&S.n_token), 1);
	/* absolute reading of "expires" */
	json_t *h = json_loads(e->hook_json, 0, NULL);
	int64_t exp = json_integer_value(json_object_get(h, "expires_ms"));
	assert_true(llabs(exp - (wj_now_ms() + 3600000LL)) < 60000);
	json_decref(h);

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
	pthread_mutex_lock(&S.mu);
	S.refuse_all = true;
	pthread_mutex_unlock(&S.mu);
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
	snprintf(json, sizeof(json), "{\"app_token\":\"tok-saved\",\"domain\":\"%s\",\"expires_ms\":%lld,"
		 "\"app_key\":\"%s\"}", S.domain, (long long)wj_now_ms() + 20 * 3600 * 1000LL, APP_KEY);
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
	pthread_mutex_lock(&S.mu);
	S.authorize_fails = true;
	pthread_mutex_unlock(&S.mu);
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
	pthread_mutex_lock(&S.mu);
	S.authorize_fails = false;
	pthread_mutex_unlock(&S.mu);
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
	char json[512];
	snprintf(json, sizeof(json), "{\"app_token\":\"tok-x\",\"domain\":\"d\",\"expires_ms\":%lld}",
		 (long long)wj_now_ms() + 3600000LL);
	assert_int_equal(wj_jdy_restore_token(dead, json), 0);
	struct outcome c = {0};
	assert_int_equal(wj_jdy_save(dead, "{}", on_result, &c), 0);
	assert_true(run_until(e, &c.done, 1, 10000));
	assert_int_equal(c.cls, WJ_JDY_TRANSIENT);
	wj_jdy_free(dead);
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
#ifndef WJ_JDY_NO_ASYNC_TEST
		cmocka_unit_test_setup_teardown(test_single_flight_login, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_relogin_after_expired_token, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_restore_token, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_login_failure_backoff, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_free_with_waiting_calls, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_save_v1_and_find_bills, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_5xx_unknown_after_send, env_setup, env_teardown),
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
