/* Engine internals shared by engine.c (glue, gates, status), poller.c and dispatch.c. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "lib/alert.h"
#include "lib/config.h"
#include "lib/dispatch.h"
#include "lib/history.h"
#include "lib/engine.h"
#include "lib/http.h"
#include "lib/jdy.h"
#include "lib/mapping.h"
#include "lib/ratelimit.h"
#include "lib/store.h"
#include "lib/wdt.h"

#define WJ_DOC_KEY_MAX 200   /* flow name (≤ 64) + NUL + stockin_id */
#define WJ_PRIO_REPLAY 0     /* operator replays go first */

/* Calls to one remote API pass through a gate: a token bucket plus a FIFO of waiting calls. */
typedef void (*gate_fn)(void *arg);
typedef struct gate_wait {
	gate_fn fn;
	void *arg;
	struct gate_wait *next;
} gate_wait_t;

typedef struct gate {
	const char *name;
	wj_engine_t *e;
	wj_tbucket_t bucket;
	uv_timer_t timer;
	gate_wait_t *head, *tail;
	unsigned waiting;
	int64_t paused_until_ms; /* wall clock, for status */
	/* Outage: calls found no one answering (no connection, no answer, a gateway's 5xx, a failed
	 * login). Each failed probe doubles the pause of the whole endpoint. */
	unsigned outage;         /* pauses in a row (0: the endpoint answers) */
	uint64_t outage_mono;    /* when the last of them began (monotonic ms) */
	uint64_t outage_until;   /* when it ends (monotonic ms) */
	uint64_t ok_mono;        /* when a call last got an answer about itself (monotonic ms) */
} gate_t;

/* API call counters by endpoint and outcome. */
enum { EP_WDT_QUERY, EP_JDY_SAVE, EP_JDY_MATERIAL, EP_JDY_STORE, EP_JDY_LIST, EP_COUNT };
enum { OC_OK, OC_RATE_LIMITED, OC_AUTH, OC_TRANSIENT, OC_PERMANENT, OC_UNKNOWN, OC_COUNT };

typedef struct poller poller_t;
typedef struct dispatcher dispatcher_t;

struct wj_engine {
	uv_loop_t *loop;
	const wj_config_t *cfg;
	wj_store_t *store;
	wj_http_t *wdt_http, *jdy_http;
	wj_wdt_t *wdt;
	wj_wdt_clock_t wdt_clock; /* WDT's clock, from its answers (poller.c) */
	bool wdt_clock_warned;    /* its offset above 30 s was logged */
	wj_jdy_t *jdy;
	gate_t wdt_gate, jdy_gate;
	wj_mapping_t **mappings; /* one per flow, in the order of cfg->flows */
	size_t n_mappings;
	poller_t **pollers;
	size_t n_pollers;
	dispatcher_t *disp;
	/* Data flows one way, poller → store → dispatcher: a poller that stored new orders calls
	 * this, which the engine points at the dispatcher (dispatcher_wake). */
	void (*stored)(void *arg);
	void *stored_arg;
	uv_timer_t tick;       /* 1 s housekeeping: due retries, ctl replays, backpressure */
	uint64_t ticks;        /* housekeeping rounds so far */
	bool stopping;
	bool closing;
	int store_error;       /* last -ENOSPC etc. from a commit (0 when healthy) */
	uint64_t store_error_logged;
	uint64_t store_error_at;  /* monotonic ms of the last failed commit */
	uint64_t calls[EP_COUNT][OC_COUNT];
	wj_hist_sampler_t hist;    /* per-minute history (history.c) */
	wj_alerts_t *alerts;       /* borrowed from the daemon; NULL: no alerts */
	/* per service (0 WDT, 1 Kingdee): monotonic ms since calls fail without any success
	 * (0: answering), and whether that was alerted */
	uint64_t down_since[2];
	unsigned recoveries;          /* outages ended (a service answered again) */
	bool down_alerted[2];
	/* the same outage for status: failed calls in a row, wall clock s of the first and the
	 * latest of them, and why (masked; wj_engine_down_error) */
	unsigned down_calls[2];
	int64_t down_wall[2], down_last[2];
	char down_error[2][300];
#define WJ_ALERT_FLOWS 64
	bool lag_alerted[WJ_ALERT_FLOWS]; /* per flow, in the order of e->pollers */
	uint64_t alerts_checked;          /* monotonic ms of the last check_alerts */
	bool degraded;                    /* the last start-up check failed */
	char degraded_why[512];       /* the start-up check's failure while degraded (masked) */
	int64_t degraded_since, degraded_last; /* wall clock: its first and latest failure */
	unsigned degraded_count;      /* failed checks in a row */
	char last_error[512];
	char last_error_at[WJ_TIME_LEN];
	int64_t token_expiry_ms;
	void (*stop_done)(void *);
	void *stop_arg;
	uv_timer_t drain_timer;
	unsigned open_handles; /* uv handles being closed; e is freed when none is left */
};

/* engine.c */
void wj_engine_set_error(wj_engine_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Count a call's outcome. Any other outcome than an answer (ok, rate limited, refused) marks
 * the service down (down_since), until the next answer. */
void wj_engine_count(wj_engine_t *e, int endpoint, int outcome);
/* Why calls to the service (0 WDT, 1 Kingdee) fail: shown (masked) in status while it is
 * down, and in the alert. */
void wj_engine_down_error(wj_engine_t *e, int svc, const char *why);
/* The OC_ outcome of an answer's class. */
int wj_wdt_outcome(wj_wdt_class_t c);
int wj_jdy_outcome(wj_jdy_class_t c);
/* The Kingdee token kept in the state (JSON), NULL when none. Caller frees. */
char *wj_engine_stored_token(wj_engine_t *e);
/* A token obtained by another client of the same login (the start-up check): kept in the
 * state and used by the engine's client unless it holds one already. */
void wj_engine_adopt_token(wj_engine_t *e, const char *token_json);
/* One alert event (see lib/alert.h); detail is a short line or NULL. */
void wj_engine_alert(wj_engine_t *e, wj_alert_event_t ev, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Queue depth: ready + delayed + in flight, from the store. */
size_t wj_engine_depth(wj_engine_t *e);
/* Commit fn via wj_store_write; on failure log once per minute and remember it. */
int wj_engine_write(wj_engine_t *e, int (*fn)(wj_txn_t *, void *), void *arg);
/* The store refused a commit for lack of space recently: polling waits. */
bool wj_engine_store_full(const wj_engine_t *e);
void gate_init(gate_t *g, wj_engine_t *e, const char *name, wj_rate_t rate);
void gate_enter(gate_t *g, gate_fn fn, void *arg);
void gate_pause(gate_t *g, int64_t ms);
/* A call sent at sent_mono (monotonic ms) got an answer: the endpoint is up. */
void gate_ok(gate_t *g, uint64_t sent_mono);
/* Whether a call got an answer after mono: then a failure of a call sent at mono says
 * something about that call, not about the endpoint. */
bool gate_up_since(const gate_t *g, uint64_t mono);
/* A call sent at sent_mono found no one answering: pause every call of the gate. The first
 * failure, and each failure of a call sent after the last pause began (a probe), doubles the
 * pause from queue.backoff.initial up to queue.backoff.max; hint_ms (a pause the failure asked
 * for, e.g. a login's backoff) is a floor. Returns the ms left of the pause. */
int64_t gate_outage(gate_t *g, uint64_t sent_mono, int64_t hint_ms);
void gate_close(gate_t *g);
/* The compiled mapping of a flow (by name); NULL when the flow is not in the configuration. */
const wj_mapping_t *wj_engine_mapping(const wj_engine_t *e, const char *flow);
/* Doc key "flow\0id" into buf; returns its length. */
size_t wj_doc_key(char *buf, const char *flow, const char *id);
/* What a WDT number stands for in Kingdee: its entry in kingdee.store_map (kind 's') or
 * kingdee.material_map (kind 'm'), else itself (borrowed from cfg or number). */
const char *wj_kingdee_number(const wj_config_t *cfg, char kind, const char *number);

/* poller.c */
poller_t *poller_new(wj_engine_t *e, const wj_flow_cfg_t *flow);
void poller_reload(poller_t *p, const wj_flow_cfg_t *flow);
void poller_stop(poller_t *p);
bool poller_busy(const poller_t *p);
/* Seconds the flow's cursor is behind now (live windows only). */
int64_t poller_lag(const poller_t *p);
void poller_free(poller_t *p);
const char *poller_name(const poller_t *p);
/* The flow's status; "failures" (windows failed in a row) with "failing_since" and
 * "last_error" say whether its polling fails now. */
json_t *poller_status(poller_t *p);
/* Called by the housekeeping tick: resume when the queue drained below the low watermark. */
void poller_kick(poller_t *p);

/* dispatch.c */
dispatcher_t *dispatcher_new(wj_engine_t *e);
/* Move entries abandoned in flight by a previous run back to the queue, marked for
 * reconciliation. 0 or -errno. */
int dispatcher_recover(dispatcher_t *d);
void dispatcher_pump(dispatcher_t *d);
/* New orders are in the queue (the engine's stored callback; arg is the dispatcher): they are
 * taken with the next group commit, at once when slots would idle. Returns at once. */
void dispatcher_wake(void *arg);
void dispatcher_stop(dispatcher_t *d);
unsigned dispatcher_active(const dispatcher_t *d);
void dispatcher_free(dispatcher_t *d);
json_t *dispatcher_status(dispatcher_t *d);
