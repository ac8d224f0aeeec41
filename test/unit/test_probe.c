/* Unit tests for lib/probe: which login step a Kingdee login error names, the preview's 30-day
 * windows, the summary of a result, the eligibility filter it shares with the poller, and the
 * life of a run (reported once, or cancelled without a report; the loop closes clean either
 * way) against a port where nothing listens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/http.h"
#include "lib/probe.h"
#include "lib/wdt.h"

static void test_login_step(void **state)
{
	(void)state;
	const wj_jdy_auth_t gw = WJ_JDY_AUTH_GATEWAY, pw = WJ_JDY_AUTH_PASSWORD;
	assert_int_equal(wj_check_login_step(gw, "authorize: HTTP 519: signature"), WJ_CHECK_LOGIN);
	assert_int_equal(wj_check_login_step(gw, "token: errcode 1030002008"), WJ_CHECK_TOKEN);
	assert_int_equal(wj_check_login_step(gw, "out of memory"), WJ_CHECK_LOGIN);
	assert_int_equal(wj_check_login_step(pw, "login: errcode 1030002008: x"), WJ_CHECK_LOGIN);
	assert_int_equal(wj_check_login_step(pw, "account sets: HTTP 500"), WJ_CHECK_ACCOUNT);
	assert_int_equal(wj_check_login_step(pw, "account set 42 is not among"), WJ_CHECK_ACCOUNT);
	assert_int_equal(wj_check_login_step(pw, "no kingdee.account_id configured; this login "
					     "sees: 1 (g)"), WJ_CHECK_ACCOUNT);
	assert_int_equal(wj_check_login_step(pw, "token: x"), WJ_CHECK_LOGIN);
	assert_int_equal(wj_check_login_step(pw, NULL), WJ_CHECK_LOGIN);
}

static void test_windows(void **state)
{
	(void)state;
	const int64_t d = 86400, from = 1700000000;
	int64_t s, e;
	assert_int_equal(wj_preview_window(from, from, 0, &s, &e), 0);
	assert_true(s == from && e == from);
	assert_int_equal(wj_preview_window(from, from, 1, &s, &e), -ENOENT);
	assert_int_equal(wj_preview_window(from, from - 1, 0, &s, &e), -ENOENT);
	/* exactly 30 days and one second: two windows, the second of one second */
	assert_int_equal(wj_preview_window(from, from + 30 * d, 0, &s, &e), 0);
	assert_true(s == from && e == from + 30 * d - 1);
	assert_int_equal(wj_preview_window(from, from + 30 * d, 1, &s, &e), 0);
	assert_true(s == from + 30 * d && e == from + 30 * d);
	assert_int_equal(wj_preview_window(from, from + 30 * d, 2, &s, &e), -ENOENT);
	/* 72 days: 30 + 30 + 12, each end inclusive, no second left out */
	int64_t next = from;
	size_t n = 0;
	while (wj_preview_window(from, from + 72 * d, n, &s, &e) == 0) {
		assert_true(s == next && e >= s && e - s <= 30 * d - 1);
		next = e + 1;
		n++;
	}
	assert_int_equal(n, 3);
	assert_true(next == from + 72 * d + 1);
}

static void test_result(void **state)
{
	(void)state;
	wj_check_result_t r;
	memset(&r, 0, sizeof(r));
	char buf[800];
	r.outcome[WJ_CHECK_ACCOUNT] = WJ_STEP_SKIPPED;
	assert_true(wj_check_passed(&r));
	wj_check_failure(&r, buf, sizeof(buf));
	assert_string_equal(buf, "");
	r.outcome[WJ_CHECK_MATERIAL] = WJ_STEP_NOT_RUN;
	assert_false(wj_check_passed(&r));
	r.outcome[WJ_CHECK_LOGIN] = WJ_STEP_FAILED;
	snprintf(r.detail[WJ_CHECK_LOGIN], sizeof(r.detail[0]), "authorize: HTTP 519: bad");
	wj_check_failure(&r, buf, sizeof(buf));
	assert_string_equal(buf, "kingdee login: authorize: HTTP 519: bad");
	assert_string_equal(wj_check_step_name(WJ_CHECK_ACCOUNT), "kingdee account set");
}

static void test_order_matches(void **state)
{
	(void)state;
	wj_kv_t p[3] = {{"order_type", "4"}, {"status", "80"}, {"warehouse_no", "WH01"}};
	json_t *o = json_pack("{s:s, s:i, s:s}", "order_type", "4", "status", 80, "warehouse_no",
			      "WH09");
	assert_true(wj_wdt_order_matches(o, p, 3)); /* only order_type and status are compared */
	json_object_set_new(o, "status", json_string("30"));
	assert_false(wj_wdt_order_matches(o, p, 3));
	assert_true(wj_wdt_order_matches(o, p, 1));
	json_object_del(o, "order_type");
	assert_false(wj_wdt_order_matches(o, p, 1));
	assert_true(wj_wdt_order_matches(o, NULL, 0));
	json_decref(o);
}

/* ---- a run against a closed port ---- */

static const char *CONFIG =
	"{\"state_dir\": \"/nonexistent/wj-probe\", \"allow_insecure_http\": true,"
	" \"wdt\": {\"url\": \"http://127.0.0.1:9/router/qm\", \"sid\": \"s\", \"app_key\": \"k\","
	"  \"app_secret\": \"wdt-secret-1\", \"timeout\": \"2s\"},"
	" \"kingdee\": {\"url\": \"http://127.0.0.1:9\", \"client_id\": \"c\","
	"  \"client_secret\": \"jdy-secret-1\", \"outer_instance_id\": \"i\", \"timeout\": \"2s\"},"
	" \"flows\": [{\"name\": \"f\"}]}";

static void on_report(const wj_check_result_t *res, void *arg)
{
	wj_check_result_t *out = arg;
	*out = *res;
	out->clock_margin_ms = -1; /* reported */
}

static void run_check(bool cancel, wj_check_result_t *res)
{
	wj_errors_t errs = {0};
	wj_config_t *cfg = wj_config_parse(CONFIG, "probe.json", &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	assert_non_null(cfg);
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	wj_check_t *c;
	wj_check_opts_t o = {.material = "SP00001"};
	memset(res, 0, sizeof(*res));
	assert_int_equal(wj_check_start(&loop, cfg, &o, on_report, res, &c), 0);
	if (cancel)
		wj_check_cancel(c);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0); /* every handle closed */
	wj_config_free(cfg);
	wj_errors_free(&errs);
}

static void test_run(void **state)
{
	(void)state;
	wj_check_result_t res;
	assert_int_equal(wj_http_global_init(), 0);
	run_check(false, &res);
	assert_int_equal(res.clock_margin_ms, -1);
	assert_int_equal(res.outcome[WJ_CHECK_WDT], WJ_STEP_FAILED);
	assert_int_equal(res.outcome[WJ_CHECK_LOGIN], WJ_STEP_FAILED);
	assert_non_null(strstr(res.detail[WJ_CHECK_LOGIN], "authorize:"));
	assert_int_equal(res.outcome[WJ_CHECK_TOKEN], WJ_STEP_NOT_RUN);
	assert_int_equal(res.outcome[WJ_CHECK_ACCOUNT], WJ_STEP_SKIPPED);
	assert_int_equal(res.outcome[WJ_CHECK_MATERIAL], WJ_STEP_NOT_RUN);
	assert_int_equal(res.outcome[WJ_CHECK_STORE], WJ_STEP_SKIPPED);
	assert_false(res.clock_known);
	assert_false(wj_check_passed(&res));
	run_check(true, &res);
	assert_int_equal(res.clock_margin_ms, 0); /* cancelled: never reported */
	wj_http_global_cleanup();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_login_step),
		cmocka_unit_test(test_windows),
		cmocka_unit_test(test_result),
		cmocka_unit_test(test_order_matches),
		cmocka_unit_test(test_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
