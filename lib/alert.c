/* Alerts to chat robots and webhooks: batching per event kind, signing, best-effort delivery. */
#include "lib/alert.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/http.h"
#include "lib/log.h"

static const char *MOD = "alert";

#define DETAILS_MAX 5      /* detail lines kept per batch */
#define SEND_TRIES 3       /* attempts per message and robot */
#define RETRY_MS 5000      /* first retry delay, doubled per attempt */
#define SEND_TIMEOUT_MS 15000

/* ---- signing --------------------------------------------------------------------------- */

static int hmac_sha256(const void *key, size_t kl, const void *msg, size_t ml,
		       unsigned char mac[32])
{
	size_t len = 0;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, kl, msg, ml, mac, 32, &len) ||
	    len != 32)
		return -EINVAL;
	return 0;
}

static int b64(const unsigned char *in, size_t n, char *out, size_t size)
{
	if (size < 4 * ((n + 2) / 3) + 1)
		return -ENOSPC;
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return 0;
}

int wj_alert_dingtalk_sign(const char *secret, int64_t ts_ms, char *out, size_t size)
{
	if (!secret || !*secret)
		return -EINVAL;
	char msg[512], sig[64];
	unsigned char mac[32];
	int n = snprintf(msg, sizeof(msg), "%" PRId64 "\n%s", ts_ms, secret);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return -EINVAL;
	int r = hmac_sha256(secret, strlen(secret), msg, (size_t)n, mac);
	if (r == 0)
		r = b64(mac, sizeof(mac), sig, sizeof(sig));
	if (r < 0)
		return r;
	char *enc = wj_urlencode(sig);
	if (!enc)
		return -ENOMEM;
	r = snprintf(out, size, "%s", enc) >= (int)size ? -ENOSPC : 0;
	free(enc);
	return r;
}

int wj_alert_feishu_sign(const char *secret, int64_t ts_s, char *out, size_t size)
{
	if (!secret || !*secret)
		return -EINVAL;
	char key[512];
	unsigned char mac[32];
	int n = snprintf(key, sizeof(key), "%" PRId64 "\n%s", ts_s, secret);
	if (n < 0 || (size_t)n >= sizeof(key))
		return -EINVAL;
	int r = hmac_sha256(key, (size_t)n, "", 0, mac);
	return r < 0 ? r : b64(mac, sizeof(mac), out, size);
}

int wj_alert_webhook_sign(const char *secret, int64_t ts_s, const char *body, char *out,
			  size_t size)
{
	if (!secret || !*secret || !body)
		return -EINVAL;
	if (size < 65)
		return -ENOSPC;
	wj_buf_t msg = {0};
	unsigned char mac[32];
	int r = wj_buf_printf(&msg, "%" PRId64 "\n%s", ts_s, body);
	if (r == 0)
		r = hmac_sha256(secret, strlen(secret), msg.data, msg.len, mac);
	wj_buf_free(&msg);
	if (r == 0)
		wj_hex(mac, sizeof(mac), out, false);
	return r;
}

/* ---- messages -------------------------------------------------------------------------- */

static const char *const titles_zh[WJ_EV_COUNT + 1] = {
	"新增死信：盘盈入库单未能生成盘盈单，需要处理（wdt2jdyctl dlq list）",
	"已生成盘盈单的入库单在旺店通又被修改，需要复核（wdt2jdyctl review list）",
	"凭据被拒绝，请检查配置中的账号与密钥",
	"服务持续无法访问",
	"流程落后于当前时间",
	"已启动",
	"已停止",
	"启动检查未通过，降级运行（仍在重试）",
	"测试消息：告警通道工作正常",
};
static const char *const titles_en[WJ_EV_COUNT + 1] = {
	"new dead letters: stock-ins that could not become gain bills (wdt2jdyctl dlq list)",
	"stock-ins changed in WDT after their gain bill was saved (wdt2jdyctl review list)",
	"credentials refused: check the accounts and secrets in the configuration",
	"service unreachable",
	"flow falling behind",
	"started",
	"stopped",
	"start-up check failed: running degraded (still retrying)",
	"test message: the alert channel works",
};

int wj_alert_text(wj_alert_event_t ev, bool en, unsigned count, const char *details,
		  wj_buf_t *out)
{
	unsigned i = ev < WJ_EV_COUNT ? ev : WJ_EV_COUNT;
	int r = wj_buf_printf(out, "%s", en ? titles_en[i] : titles_zh[i]);
	if (r == 0 && count > 1)
		r = en ? wj_buf_printf(out, " (%u)", count) : wj_buf_printf(out, "（%u 次）", count);
	if (r == 0 && details && *details)
		r = wj_buf_printf(out, "\n%s", details);
	return r;
}

static json_t *text_obj(const char *key, const char *text)
{
	return json_pack("{s:s}", key, text);
}

int wj_alert_request(const wj_alert_cfg_t *a, const wj_alert_msg_t *m, int64_t now_ms,
		     wj_buf_t *url, wj_buf_t *body, char headers[2][160])
{
	int64_t ts_s = now_ms / 1000;
	char sig[160];
	wj_buf_t text = {0};
	json_t *o = NULL;
	int r = -ENOMEM;
	headers[0][0] = headers[1][0] = '\0';
	wj_buf_reset(url);
	wj_buf_reset(body);
	if (wj_buf_printf(&text, "【wdt2jdy】%s\n%s", m->instance, m->text) < 0 ||
	    wj_buf_printf(url, "%s", a->url) < 0)
		goto fail;
	switch (a->kind) {
	case WJ_ALERT_DINGTALK:
		if (a->secret) {
			if ((r = wj_alert_dingtalk_sign(a->secret, now_ms, sig, sizeof(sig))) < 0)
				goto fail;
			r = -ENOMEM;
			if (wj_buf_printf(url, "%stimestamp=%" PRId64 "&sign=%s",
					  strchr(a->url, '?') ? "&" : "?", now_ms, sig) < 0)
				goto fail;
		}
		__attribute__((fallthrough)); /* the same body as WeCom */
	case WJ_ALERT_WECOM:
		o = json_pack("{s:s, s:o}", "msgtype", "text", "text", text_obj("content", text.data));
		break;
	case WJ_ALERT_FEISHU:
		o = json_pack("{s:s, s:o}", "msg_type", "text", "content", text_obj("text", text.data));
		if (o && a->secret) {
			char ts[24];
			snprintf(ts, sizeof(ts), "%" PRId64, ts_s);
			if ((r = wj_alert_feishu_sign(a->secret, ts_s, sig, sizeof(sig))) < 0)
				goto fail;
			r = -ENOMEM;
			json_object_set_new(o, "timestamp", json_string(ts));
			json_object_set_new(o, "sign", json_string(sig));
		}
		break;
	case WJ_ALERT_WEBHOOK:
		o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:I}", "source", "wdt2jdy", "instance",
			      m->instance, "event",
			      m->ev < WJ_EV_COUNT ? wj_alert_event_name(m->ev) : "test", "count",
			      (int)m->count, "text", m->text, "ts", (json_int_t)ts_s);
		break;
	}
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (!s || wj_buf_printf(body, "%s", s) < 0) {
		free(s);
		goto fail;
	}
	free(s);
	if (a->kind == WJ_ALERT_WEBHOOK && a->secret) {
		char hex[65];
		if ((r = wj_alert_webhook_sign(a->secret, ts_s, body->data, hex, sizeof(hex))) < 0)
			goto fail;
		snprintf(headers[0], 160, "X-Wdt2jdy-Timestamp: %" PRId64, ts_s);
		snprintf(headers[1], 160, "X-Wdt2jdy-Signature: %s", hex);
	}
	r = 0;
fail:
	json_decref(o);
	wj_buf_free(&text);
	return r;
}

bool wj_alert_delivered(wj_alert_kind_t kind, long status, const char *body, char *why,
			size_t size)
{
	if (status < 200 || status >= 300) {
		snprintf(why, size, status ? "HTTP %ld" : "no answer", status);
		return false;
	}
	if (kind == WJ_ALERT_WEBHOOK)
		return true;
	json_t *o = json_loads(body ? body : "", 0, NULL);
	const char *names[] = {"errcode", "code", "StatusCode"};
	json_t *code = NULL;
	for (size_t i = 0; i < 3 && !code; i++)
		code = json_object_get(o, names[i]);
	bool ok = json_is_integer(code) && json_integer_value(code) == 0;
	if (!ok) {
		const char *msg = json_string_value(json_object_get(o, "errmsg"))
					  ?: json_string_value(json_object_get(o, "msg"))
					  ?: json_string_value(json_object_get(o, "StatusMessage"));
		snprintf(why, size, "code %lld: %s", json_is_integer(code) ? (long long)json_integer_value(code) : -1LL,
			 msg ? msg : "answer without a success code");
	}
	json_decref(o);
	return ok;
}

void wj_alert_instance(const wj_config_t *cfg, char *buf, size_t size)
{
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
		snprintf(host, sizeof(host), "?");
	snprintf(buf, size, "%s:%s", host, cfg->state_dir);
}

/* ---- the service ----------------------------------------------------------------------- */

typedef struct batch {
	unsigned pending;      /* events waiting for the interval to end */
	unsigned kept;         /* detail lines in details */
	wj_buf_t details;
	uint64_t last_sent;    /* monotonic ms; 0: never */
} batch_t;

typedef struct send send_t;

struct wj_alerts {
	uv_loop_t *loop;
	const wj_config_t *cfg;
	char *instance;
	wj_http_t *http;
	uv_timer_t timer;      /* end of the earliest batch interval */
	batch_t b[WJ_EV_COUNT];
	send_t *sends;         /* messages being delivered or waiting to retry */
	unsigned in_flight;
	uint64_t sent, failed;
	void (*flush_done)(void *);
	void *flush_arg;
	wj_alert_report_fn report; /* wj_alerts_test */
	void *report_arg;
	uv_timer_t flush_timer;
	bool closing;
	unsigned open_handles;
};

struct send {
	send_t *next;
	wj_alerts_t *a;
	size_t target_index;          /* in a->cfg->alerts, read again at each try (reloads) */
	wj_alert_kind_t kind;         /* of the robot the last try went to */
	wj_alert_msg_t msg;
	char *text;
	unsigned tries;
	bool calling;
	bool test;                    /* one try, reported through a->report */
	uv_timer_t retry;
};

static void flush_check(wj_alerts_t *a);
static void send_start(send_t *s);

static void release(wj_alerts_t *a)
{
	if (--a->open_handles == 0) {
		for (int i = 0; i < WJ_EV_COUNT; i++)
			wj_buf_free(&a->b[i].details);
		free(a->instance);
		free(a);
	}
}

static void handle_closed(uv_handle_t *h)
{
	release(h->data);
}

static void send_closed(uv_handle_t *h)
{
	send_t *s = h->data;
	wj_alerts_t *a = s->a;
	free(s->text);
	free(s);
	release(a);
}

static void send_done(send_t *s, bool ok, const char *why)
{
	wj_alerts_t *a = s->a;
	if (s->test && a->report)
		a->report(s->target_index, ok, why, a->report_arg);
	for (send_t **pp = &a->sends; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	uv_close((uv_handle_t *)&s->retry, send_closed);
	flush_check(a);
}

static void on_retry(uv_timer_t *t)
{
	send_start(t->data);
}

static void on_sent(const wj_http_resp_t *resp, void *arg)
{
	send_t *s = arg;
	wj_alerts_t *a = s->a;
	s->calling = false;
	a->in_flight--;
	if (a->closing) {
		send_done(s, false, "stopped");
		return;
	}
	char why[300];
	if (wj_alert_delivered(s->kind, resp->status, resp->body, why, sizeof(why))) {
		a->sent++;
		send_done(s, true, "");
		return;
	}
	if (resp->status == 0)
		snprintf(why, sizeof(why), "%s", resp->error);
	char f[128] = "";
	snprintf(f, sizeof(f), "alert=%zu event=%s", s->target_index,
		 s->msg.ev < WJ_EV_COUNT ? wj_alert_event_name(s->msg.ev) : "test");
	if (s->tries >= SEND_TRIES || a->flush_done || s->test) { /* no retries while stopping */
		a->failed++;
		wj_warn(MOD, f, "alert not delivered after %u attempts: %s", s->tries, why);
		send_done(s, false, why);
		return;
	}
	wj_info(MOD, f, "alert not delivered (%s): trying again", why);
	uv_timer_start(&s->retry, on_retry, (uint64_t)RETRY_MS << (s->tries - 1), 0);
}

static void send_start(send_t *s)
{
	wj_alerts_t *a = s->a;
	wj_buf_t url = {0}, body = {0};
	char extra[2][160];
	s->tries++;
	if (s->target_index >= a->cfg->n_alerts) { /* removed by a reload */
		send_done(s, false, "removed from the configuration");
		return;
	}
	const wj_alert_cfg_t *target = &a->cfg->alerts[s->target_index];
	s->kind = target->kind;
	int r = wj_alert_request(target, &s->msg, wj_now_ms(), &url, &body, extra);
	const char *headers[4] = {"Content-Type: application/json; charset=utf-8", NULL, NULL, NULL};
	size_t n = 1;
	for (int i = 0; i < 2; i++)
		if (extra[i][0])
			headers[n++] = extra[i];
	wj_http_req_t req = {.method = "POST", .url = url.data, .headers = headers,
			     .body = body.data, .body_len = body.len, .timeout_ms = SEND_TIMEOUT_MS};
	if (r == 0)
		r = wj_http_request(a->http, &req, on_sent, s);
	wj_buf_free(&url);
	wj_buf_free(&body);
	if (r < 0) {
		a->failed++;
		wj_warn(MOD, NULL, "cannot send an alert: %s", strerror(-r));
		send_done(s, false, strerror(-r));
		return;
	}
	s->calling = true;
	a->in_flight++;
}

/* One message (text, count) of ev to every robot that takes ev (every robot for the test
 * message, ev == WJ_EV_COUNT). */
static void emit(wj_alerts_t *a, wj_alert_event_t ev, unsigned count, const char *details)
{
	wj_buf_t text = {0};
	if (wj_alert_text(ev, a->cfg->alerts_en, count, details, &text) < 0) {
		wj_buf_free(&text);
		return;
	}
	for (size_t i = 0; i < a->cfg->n_alerts; i++) {
		const wj_alert_cfg_t *t = &a->cfg->alerts[i];
		if (ev < WJ_EV_COUNT && !(t->events & (1u << ev)))
			continue;
		send_t *s = calloc(1, sizeof(*s));
		if (!s || !(s->text = strdup(text.data))) {
			free(s);
			break;
		}
		s->a = a;
		s->target_index = i;
		s->msg = (wj_alert_msg_t){.ev = ev, .instance = a->instance, .text = s->text,
					  .count = count};
		s->test = ev == WJ_EV_COUNT;
		uv_timer_init(a->loop, &s->retry);
		s->retry.data = s;
		a->open_handles++;
		s->next = a->sends;
		a->sends = s;
		send_start(s);
	}
	wj_buf_free(&text);
}

static void batch_send(wj_alerts_t *a, wj_alert_event_t ev)
{
	batch_t *b = &a->b[ev];
	if (!b->pending)
		return;
	if (b->pending > b->kept) {
		unsigned more = b->pending - b->kept;
		if (a->cfg->alerts_en)
			wj_buf_printf(&b->details, "\n… and %u more", more);
		else
			wj_buf_printf(&b->details, "\n……另有 %u 条", more);
	}
	emit(a, ev, b->pending, b->details.data);
	b->pending = b->kept = 0;
	wj_buf_reset(&b->details);
	b->last_sent = wj_mono_ms();
}

static void on_timer(uv_timer_t *t);

/* Arm the timer for the earliest batch whose interval ends. */
static void arm(wj_alerts_t *a)
{
	uint64_t now = wj_mono_ms(), next = UINT64_MAX;
	for (int i = 0; i < WJ_EV_COUNT; i++) {
		batch_t *b = &a->b[i];
		if (!b->pending)
			continue;
		uint64_t due = b->last_sent + a->cfg->alerts_interval_ms;
		if (due < next)
			next = due;
	}
	if (next == UINT64_MAX)
		uv_timer_stop(&a->timer);
	else
		uv_timer_start(&a->timer, on_timer, next > now ? next - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
	wj_alerts_t *a = t->data;
	uint64_t now = wj_mono_ms();
	for (int i = 0; i < WJ_EV_COUNT; i++)
		if (a->b[i].pending && a->b[i].last_sent + a->cfg->alerts_interval_ms <= now)
			batch_send(a, (wj_alert_event_t)i);
	arm(a);
}

void wj_alerts_event(wj_alerts_t *a, wj_alert_event_t ev, const char *detail)
{
	if (!a || a->closing || ev >= WJ_EV_COUNT || !a->cfg->n_alerts)
		return;
	batch_t *b = &a->b[ev];
	b->pending++;
	if (detail && *detail && b->kept < DETAILS_MAX) {
		wj_buf_printf(&b->details, "%s%s", b->kept ? "\n" : "", detail);
		b->kept++;
	}
	if (!b->last_sent || wj_mono_ms() - b->last_sent >= a->cfg->alerts_interval_ms)
		batch_send(a, ev);
	arm(a);
}

static void flush_finish(wj_alerts_t *a)
{
	void (*done)(void *) = a->flush_done;
	a->flush_done = NULL;
	uv_timer_stop(&a->flush_timer);
	if (done)
		done(a->flush_arg);
}

static void flush_check(wj_alerts_t *a)
{
	if (a->flush_done && !a->sends)
		flush_finish(a);
}

static void on_flush_timeout(uv_timer_t *t)
{
	wj_alerts_t *a = t->data;
	if (a->sends)
		wj_warn(MOD, NULL, "stopping with alerts still undelivered");
	flush_finish(a);
}

void wj_alerts_flush(wj_alerts_t *a, uint64_t timeout_ms, void (*done)(void *), void *arg)
{
	a->flush_done = done;
	a->flush_arg = arg;
	for (int i = 0; i < WJ_EV_COUNT; i++)
		batch_send(a, (wj_alert_event_t)i);
	arm(a);
	uv_timer_start(&a->flush_timer, on_flush_timeout, timeout_ms, 0);
	/* from the loop, never from inside this call */
	if (!a->sends)
		uv_timer_start(&a->flush_timer, on_flush_timeout, 0, 0);
}

int wj_alerts_test(wj_alerts_t *a, wj_alert_report_fn report, void *arg)
{
	if (!a->cfg->n_alerts)
		return -ENOENT;
	a->report = report;
	a->report_arg = arg;
	emit(a, WJ_EV_COUNT, 1, NULL);
	return 0;
}

void wj_alerts_counts(const wj_alerts_t *a, uint64_t *sent, uint64_t *failed)
{
	*sent = a ? a->sent : 0;
	*failed = a ? a->failed : 0;
}

wj_alerts_t *wj_alerts_new(uv_loop_t *loop, const wj_config_t *cfg, const char *instance)
{
	wj_alerts_t *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->loop = loop;
	a->cfg = cfg;
	a->instance = strdup(instance ? instance : "");
	a->http = wj_http_new(loop, &(wj_http_opts_t){.max_inflight = 4,
						      .max_body = 1 << 20});
	if (!a->instance || !a->http) {
		if (a->http)
			wj_http_free(a->http);
		free(a->instance);
		free(a);
		return NULL;
	}
	uv_timer_init(loop, &a->timer);
	uv_timer_init(loop, &a->flush_timer);
	a->timer.data = a->flush_timer.data = a;
	a->open_handles = 2;
	return a;
}

void wj_alerts_set_config(wj_alerts_t *a, const wj_config_t *cfg)
{
	if (!a)
		return;
	a->cfg = cfg;
	arm(a);
}

void wj_alerts_free(wj_alerts_t *a)
{
	if (!a)
		return;
	a->closing = true;
	a->flush_done = NULL;
	/* Aborting runs on_sent for what is in flight: those sends close themselves. */
	wj_http_free(a->http);
	for (send_t *s = a->sends, *next; s; s = next) {
		next = s->next;
		send_done(s, false, "stopped");
	}
	uv_close((uv_handle_t *)&a->timer, handle_closed);
	uv_close((uv_handle_t *)&a->flush_timer, handle_closed);
}
