/* Unit tests for lib/alert: robot signatures (vectors computed with Python's hmac), the request
 * of each robot kind, the reading of their answers, message texts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "lib/alert.h"

#define SEC "SEC0123456789abcdef"

static void test_signatures(void **state)
{
	(void)state;
	char out[160];
	assert_int_equal(wj_alert_dingtalk_sign(SEC, 1700000000000LL, out, sizeof(out)), 0);
	assert_string_equal(out, "TSZbRFUuvaSQaRKUpF970OPCb2%2FLcQAP3wOvwZIzBZk%3D");
	assert_int_equal(wj_alert_feishu_sign(SEC, 1700000000, out, sizeof(out)), 0);
	assert_string_equal(out, "PiO7POLlSx/DM2qf8Dy/XCWeJK3exVnevp5G99LEN2M=");
	assert_int_equal(wj_alert_webhook_sign(SEC, 1700000000, "{\"a\":1}", out, sizeof(out)), 0);
	assert_string_equal(out, "9d19b43df38d41d94883a5e1f986a9e01597ce50fca3f77defef4134f85fb43a");
	assert_int_equal(wj_alert_dingtalk_sign("", 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(wj_alert_feishu_sign(SEC, 1, out, 10), -ENOSPC);
}

static json_t *request(wj_alert_kind_t kind, const char *url, const char *secret, wj_buf_t *u,
		       char headers[2][160])
{
	wj_alert_cfg_t a = {.kind = kind, .url = (char *)url, .secret = (char *)secret};
	wj_alert_msg_t m = {.ev = WJ_EV_DEAD_LETTER, .instance = "host:/var/lib/wdt2jdy",
			    .text = "新增死信", .count = 2};
	wj_buf_t body = {0};
	assert_int_equal(wj_alert_request(&a, &m, 1700000000000LL, u, &body, headers), 0);
	json_t *o = json_loads(body.data, 0, NULL);
	assert_non_null(o);
	wj_buf_free(&body);
	return o;
}

static void test_requests(void **state)
{
	(void)state;
	wj_buf_t u = {0};
	char h[2][160];

	json_t *o = request(WJ_ALERT_DINGTALK, "https://oapi.dingtalk.com/robot/send?access_token=T",
			    SEC, &u, h);
	assert_string_equal(u.data, "https://oapi.dingtalk.com/robot/send?access_token=T"
				    "&timestamp=1700000000000"
				    "&sign=TSZbRFUuvaSQaRKUpF970OPCb2%2FLcQAP3wOvwZIzBZk%3D");
	assert_string_equal(json_string_value(json_object_get(o, "msgtype")), "text");
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "text"), "content")),
			    "【wdt2jdy】host:/var/lib/wdt2jdy\n新增死信");
	assert_string_equal(h[0], "");
	json_decref(o);

	o = request(WJ_ALERT_WECOM, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K", NULL,
		    &u, h);
	assert_string_equal(u.data, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K");
	assert_string_equal(json_string_value(json_object_get(o, "msgtype")), "text");
	json_decref(o);

	o = request(WJ_ALERT_FEISHU, "https://open.feishu.cn/open-apis/bot/v2/hook/X", SEC, &u, h);
	assert_string_equal(json_string_value(json_object_get(o, "msg_type")), "text");
	assert_string_equal(json_string_value(json_object_get(o, "timestamp")), "1700000000");
	assert_string_equal(json_string_value(json_object_get(o, "sign")),
			    "PiO7POLlSx/DM2qf8Dy/XCWeJK3exVnevp5G99LEN2M=");
	assert_non_null(json_object_get(json_object_get(o, "content"), "text"));
	json_decref(o);

	o = request(WJ_ALERT_FEISHU, "https://open.feishu.cn/open-apis/bot/v2/hook/X", NULL, &u, h);
	assert_null(json_object_get(o, "sign")); /* no secret, no signature */
	json_decref(o);

	o = request(WJ_ALERT_WEBHOOK, "https://ops.example/hook", SEC, &u, h);
	assert_string_equal(json_string_value(json_object_get(o, "event")), "dead_letter");
	assert_int_equal(json_integer_value(json_object_get(o, "count")), 2);
	assert_int_equal(json_integer_value(json_object_get(o, "ts")), 1700000000);
	assert_string_equal(h[0], "X-Wdt2jdy-Timestamp: 1700000000");
	assert_int_equal(strncmp(h[1], "X-Wdt2jdy-Signature: ", 21), 0);
	assert_int_equal(strlen(h[1] + 21), 64);
	json_decref(o);
	wj_buf_free(&u);
}

static void test_delivered(void **state)
{
	(void)state;
	char why[200];
	assert_true(wj_alert_delivered(WJ_ALERT_DINGTALK, 200, "{\"errcode\":0,\"errmsg\":\"ok\"}",
				       why, sizeof(why)));
	assert_false(wj_alert_delivered(WJ_ALERT_DINGTALK, 200,
					"{\"errcode\":310000,\"errmsg\":\"sign not match\"}", why,
					sizeof(why)));
	assert_string_equal(why, "code 310000: sign not match");
	assert_true(wj_alert_delivered(WJ_ALERT_FEISHU, 200, "{\"StatusCode\":0}", why, sizeof(why)));
	assert_true(wj_alert_delivered(WJ_ALERT_FEISHU, 200, "{\"code\":0,\"msg\":\"success\"}", why,
				       sizeof(why)));
	assert_false(wj_alert_delivered(WJ_ALERT_FEISHU, 200,
					"{\"code\":19021,\"msg\":\"sign match fail\"}", why,
					sizeof(why)));
	assert_false(wj_alert_delivered(WJ_ALERT_WECOM, 200, "not json", why, sizeof(why)));
	assert_string_equal(why, "code -1: answer without a success code");
	assert_false(wj_alert_delivered(WJ_ALERT_WEBHOOK, 500, "", why, sizeof(why)));
	assert_string_equal(why, "HTTP 500");
	assert_true(wj_alert_delivered(WJ_ALERT_WEBHOOK, 204, "", why, sizeof(why)));
}

static void test_text(void **state)
{
	(void)state;
	wj_buf_t b = {0};
	assert_int_equal(wj_alert_text(WJ_EV_DEAD_LETTER, false, 3, "RK1: x\nRK2: y", &b), 0);
	assert_non_null(strstr(b.data, "新增死信"));
	assert_non_null(strstr(b.data, "（3 次）"));
	assert_non_null(strstr(b.data, "\nRK1: x\nRK2: y"));
	wj_buf_reset(&b);
	assert_int_equal(wj_alert_text(WJ_EV_STOP, true, 1, NULL, &b), 0);
	assert_string_equal(b.data, "stopped");
	wj_buf_reset(&b);
	assert_int_equal(wj_alert_text(WJ_EV_COUNT, true, 1, NULL, &b), 0);
	assert_string_equal(b.data, "test message: the alert channel works");
	wj_buf_free(&b);
	assert_string_equal(wj_alert_event_name(WJ_EV_UNREACHABLE), "unreachable");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signatures),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_delivered),
		cmocka_unit_test(test_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
