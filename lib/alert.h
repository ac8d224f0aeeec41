/* Alerts: tell people in a chat group (DingTalk, WeCom, Feishu robots) or any HTTP endpoint
 * that something needs them — dead letters, orders to review, refused credentials, a service
 * down for long, a flow falling behind, start and stop.
 *
 * Events are batched per kind: the first one of a kind goes out at once, later ones of the same
 * kind within alerts_interval are counted and sent as one message when the interval ends. Text
 * is Chinese by default (alerts_lang). Sending is best effort: a robot that fails is retried a
 * few times and then logged; it never holds up the daemon's work. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lib/config.h"
#include "lib/util.h"

typedef struct wj_alerts wj_alerts_t;

/* ---- pure helpers (tests, wdt2jdyctl) ---- */

/* DingTalk: sign = urlencode(base64(HMAC-SHA256(key = secret, msg = ts_ms "\n" secret))),
 * sent as &timestamp=TS&sign=SIGN. out gets the URL-encoded value. 0 or -errno. */
int wj_alert_dingtalk_sign(const char *secret, int64_t ts_ms, char *out, size_t size);
/* Feishu: sign = base64(HMAC-SHA256(key = ts_s "\n" secret, msg = "")), sent in the body with
 * "timestamp". 0 or -errno. */
int wj_alert_feishu_sign(const char *secret, int64_t ts_s, char *out, size_t size);
/* Generic webhook: hex(HMAC-SHA256(key = secret, msg = ts_s "\n" body)), sent as the header
 * X-Wdt2jdy-Signature with X-Wdt2jdy-Timestamp. 0 or -errno. */
int wj_alert_webhook_sign(const char *secret, int64_t ts_s, const char *body, char *out,
			  size_t size);

/* The request for one message to one robot: URL (with DingTalk's signature appended), JSON body
 * and extra headers ("Name: value", at most 2). now_ms: the signing time. Caller frees url and
 * body with wj_buf_free. 0 or -errno. */
typedef struct wj_alert_msg {
	wj_alert_event_t ev;
	const char *instance; /* who speaks: host and state directory */
	const char *text;     /* the message, already in the configured language */
	unsigned count;       /* events this message stands for */
} wj_alert_msg_t;
int wj_alert_request(const wj_alert_cfg_t *a, const wj_alert_msg_t *m, int64_t now_ms,
		     wj_buf_t *url, wj_buf_t *body, char headers[2][160]);
/* Whether a robot's answer means "delivered": HTTP 2xx and, for the chat robots, their JSON
 * code 0 (errcode for DingTalk and WeCom, code or StatusCode for Feishu). why gets the reason
 * otherwise. */
bool wj_alert_delivered(wj_alert_kind_t kind, long status, const char *body, char *why,
			size_t size);
/* The message text of an event: title line, count and up to a few details (newline-separated,
 * NULL for none), in Chinese or English. Appended to out. */
int wj_alert_text(wj_alert_event_t ev, bool en, unsigned count, const char *details,
		  wj_buf_t *out);

/* How messages name this daemon: "HOST:STATE_DIR" into buf. */
void wj_alert_instance(const wj_config_t *cfg, char *buf, size_t size);

/* ---- the running service ---- */

/* instance: how messages name this daemon (copied). NULL on ENOMEM. */
wj_alerts_t *wj_alerts_new(uv_loop_t *loop, const wj_config_t *cfg, const char *instance);
/* Reload: targets, events, language and intervals from cfg (which must outlive the next reload).
 * Pending batches are kept. */
void wj_alerts_set_config(wj_alerts_t *a, const wj_config_t *cfg);
/* One event; detail is a short line (order, flow, reason; copied), NULL for none. */
void wj_alerts_event(wj_alerts_t *a, wj_alert_event_t ev, const char *detail);
/* Send every pending batch now; done(arg) runs (from the loop) once nothing is in flight, or
 * after timeout_ms. */
void wj_alerts_flush(wj_alerts_t *a, uint64_t timeout_ms, void (*done)(void *), void *arg);
/* Send a test message to every configured robot, whatever its events, once (no retry);
 * report(index in cfg->alerts, delivered, why) runs once per robot, from the loop.
 * 0, or -ENOENT when no robot is configured. */
typedef void (*wj_alert_report_fn)(size_t index, bool ok, const char *why, void *arg);
int wj_alerts_test(wj_alerts_t *a, wj_alert_report_fn report, void *arg);
/* Messages sent, and failed for good, since start. */
void wj_alerts_counts(const wj_alerts_t *a, uint64_t *sent, uint64_t *failed);
/* Abort what is in flight; memory goes once the loop has run. NULL is ignored. */
void wj_alerts_free(wj_alerts_t *a);
