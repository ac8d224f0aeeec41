/* The engine: wires the WDT pollers and the Kingdee dispatcher to one loop and one store. */
#include "lib/engine_int.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"

#define WJ_MMAP_THRESHOLD (128 * 1024)

static const char *MOD = "engine";

#define READER_CHECK_TICKS 10 /* seconds between checks of the store's reader table */

static const char *ep_names[EP_COUNT] = {"wdt.query", "kingdee.save", "kingdee.material",
					 "kingdee.store", "kingdee.list"};
static const char *oc_names[OC_COUNT] = {"ok",	      "rate_limited", "auth",
					 "transient", "permanent",    "unknown"};

void wj_engine_set_error(wj_engine_t *e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->last_error, sizeof(e->last_error), fmt, ap);
	va_end(ap);
	wj_log_mask(e->last_error); /* shown in status.json and by wdt2jdyctl */
	wj_time_format(wj_now(), e->cfg->tz_offset, e->last_error_at);
}

static const char *const svc_name[2] = {"wdt", "kingdee"};

/* An answer from the service: its outage (if any) ends. */
static void service_up(wj_engine_t *e, int svc)
{
	if (e->down_since[svc]) {
		e->recoveries++;
		char f[64] = "";
		wj_logfmt_kv(f, sizeof(f), "api", svc_name[svc]);
		wj_info(MOD, f, "answers again after %u failed calls in %lld s", e->down_calls[svc],
			(long long)(wj_now() - e->down_wall[svc]));
	}
	e->down_since[svc] = 0;
	e->down_alerted[svc] = false;
	e->down_calls[svc] = 0;
	e->down_error[svc][0] = '\0';
}

int wj_wdt_outcome(wj_wdt_class_t c)
{
	switch (c) {
	case WJ_WDT_OK: return OC_OK;
	case WJ_WDT_RATE_LIMITED: return OC_RATE_LIMITED;
	case WJ_WDT_AUTH: return OC_AUTH;
	case WJ_WDT_TRANSIENT: return OC_TRANSIENT;
	default: return OC_PERMANENT;
	}
}

int wj_jdy_outcome(wj_jdy_class_t c)
{
	switch (c) {
	case WJ_JDY_OK: return OC_OK;
	case WJ_JDY_RATE_LIMITED: return OC_RATE_LIMITED;
	case WJ_JDY_AUTH: return OC_AUTH;
	case WJ_JDY_TRANSIENT: return OC_TRANSIENT;
	case WJ_JDY_PERMANENT: return OC_PERMANENT;
	default: return OC_UNKNOWN;
	}
}

void wj_engine_count(wj_engine_t *e, int endpoint, int outcome)
{
	if (endpoint < 0 || endpoint >= EP_COUNT || outcome < 0 || outcome >= OC_COUNT)
		return;
	e->calls[endpoint][outcome]++;
	/* A service is down while its calls fail without an answer about them; any success, or
	 * an answer that refuses the request itself, shows it up. */
	int svc = endpoint == EP_WDT_QUERY ? 0 : 1;
	if (outcome == OC_OK || outcome == OC_PERMANENT || outcome == OC_RATE_LIMITED) {
		service_up(e, svc);
		return;
	}
	int64_t now = wj_now();
	if (!e->down_since[svc]) {
		e->down_since[svc] = wj_mono_ms();
		e->down_wall[svc] = now;
	}
	e->down_calls[svc]++;
	e->down_last[svc] = now;
}

void wj_engine_down_error(wj_engine_t *e, int svc, const char *why)
{
	snprintf(e->down_error[svc], sizeof(e->down_error[svc]), "%s", why && *why ? why : "no answer");
	wj_log_mask(e->down_error[svc]);
}

void wj_engine_alert(wj_engine_t *e, wj_alert_event_t ev, const char *fmt, ...)
{
	if (!e->alerts)
		return;
	char detail[600] = "";
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(detail, sizeof(detail), fmt, ap);
		va_end(ap);
	}
	wj_alerts_event(e->alerts, ev, detail);
}

void wj_engine_set_alerts(wj_engine_t *e, struct wj_alerts *a)
{
	e->alerts = a;
}

void wj_engine_set_degraded(wj_engine_t *e, const char *why)
{
	if (!why) {
		/* passed: its failure is no longer an error of the moment */
		if (e->degraded && !strncmp(e->last_error, "start-up check failed: ", 23))
			e->last_error[0] = '\0';
		e->degraded = false;
		e->degraded_count = 0;
		return;
	}
	wj_engine_set_error(e, "start-up check failed: %s", why);
	snprintf(e->degraded_why, sizeof(e->degraded_why), "%s", why);
	wj_log_mask(e->degraded_why);
	e->degraded_last = wj_now();
	if (!e->degraded) {
		e->degraded_since = e->degraded_last;
		wj_engine_alert(e, WJ_EV_DEGRADED, "%s", e->last_error);
	}
	e->degraded_count++;
	e->degraded = true;
}

bool wj_engine_degraded(const wj_engine_t *e)
{
	return e->degraded;
}

unsigned wj_engine_recoveries(const wj_engine_t *e)
{
	return e->recoveries;
}

/* Once a minute (or every alerts_after when shorter): a service failing for longer than
 * alerts_after, a flow behind by more than alerts_lag (edge-triggered: once per crossing). */
static void check_alerts(wj_engine_t *e)
{
	uint64_t now = wj_mono_ms(), every = e->cfg->alerts_after_ms < 60000 ? e->cfg->alerts_after_ms
									      : 60000;
	if (e->alerts_checked && now - e->alerts_checked < every)
		return;
	e->alerts_checked = now;
	const wj_config_t *cfg = e->cfg;
	for (int svc = 0; svc < 2; svc++) {
		if (!e->down_since[svc] || e->down_alerted[svc] ||
		    now - e->down_since[svc] < cfg->alerts_after_ms)
			continue;
		e->down_alerted[svc] = true;
		wj_warn(MOD, NULL, "%s failing for %llu min", svc ? "Kingdee" : "WDT",
			(unsigned long long)((now - e->down_since[svc]) / 60000));
		wj_engine_alert(e, WJ_EV_UNREACHABLE, "%s: no answer for %llu min; last error: %s",
				svc ? "Kingdee" : "WDT",
				(unsigned long long)((now - e->down_since[svc]) / 60000),
				e->down_error[svc][0] ? e->down_error[svc]
				: e->last_error[0] ? e->last_error : "-");
	}
	for (size_t i = 0; i < e->n_pollers; i++) {
		poller_t *p = e->pollers[i];
		int64_t lag = poller_lag(p);
		bool *alerted = &e->lag_alerted[i < WJ_ALERT_FLOWS ? i : WJ_ALERT_FLOWS - 1];
		if (lag * 1000 > (int64_t)cfg->alerts_lag_ms && !*alerted) {
			*alerted = true;
			wj_engine_alert(e, WJ_EV_LAG, "flow %s: %lld h %lld min behind now",
					poller_name(p), (long long)(lag / 3600),
					(long long)(lag % 3600 / 60));
		} else if (lag * 2000 < (int64_t)cfg->alerts_lag_ms) {
			*alerted = false;
		}
	}
}

const char *wj_kingdee_number(const wj_config_t *cfg, char kind, const char *number)
{
	const wj_kv_t *map = kind == 's' ? cfg->kingdee.store_map : cfg->kingdee.material_map;
	size_t n = kind == 's' ? cfg->kingdee.n_store_map : cfg->kingdee.n_material_map;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(map[i].key, number))
			return map[i].value;
	return number;
}

size_t wj_doc_key(char *buf, const char *flow, const char *id)
{
	size_t fl = strlen(flow), il = strlen(id);
	if (fl + 1 + il > WJ_DOC_KEY_MAX)
		il = WJ_DOC_KEY_MAX - fl - 1;
	memcpy(buf, flow, fl);
	buf[fl] = '\0';
	memcpy(buf + fl + 1, id, il);
	return fl + 1 + il;
}

size_t wj_engine_depth(wj_engine_t *e)
{
	wj_txn_t t;
	size_t q = 0, dl = 0, in = 0;
	if (wj_txn_begin(e->store, &t, false) < 0)
		return 0;
	wj_txn_count(&t, WJ_DB_QUEUE, &q);
	wj_txn_count(&t, WJ_DB_DELAYED, &dl);
	wj_txn_count(&t, WJ_DB_INFLIGHT, &in);
	wj_txn_abort(&t);
	return q + dl + in;
}

int wj_engine_write(wj_engine_t *e, int (*fn)(wj_txn_t *, void *), void *arg)
{
	int r = wj_store_write(e->store, fn, arg);
	uint64_t now = wj_mono_ms();
	if (r == 0) {
		/* Say so once the trouble is over (a minute without errors), not per commit. */
		if (e->store_error && now - e->store_error_at > 60000) {
			wj_info(MOD, NULL, "state store writable again");
			e->store_error = 0;
		}
		return 0;
	}
	e->store_error = r;
	e->store_error_at = now;
	if (!e->store_error_logged || now - e->store_error_logged > 60000) {
		/* One clear line a minute, however many commits fail. */
		if (r == -ENOSPC)
			wj_error(MOD, NULL,
				 "state store full (store.map_max %llu bytes reached or disk full): "
				 "polling paused, dispatching continues",
				 (unsigned long long)e->cfg->map_max);
		else
			wj_error(MOD, NULL, "state store write failed: %s", wj_store_strerror());
		e->store_error_logged = now;
	}
	wj_engine_set_error(e, "state store write failed: %s", strerror(-r));
	return r;
}

bool wj_engine_store_full(const wj_engine_t *e)
{
	/* Polling stays paused for 10 s after the last failed commit. */
	return e->store_error == -ENOSPC && wj_mono_ms() - e->store_error_at < 10000;
}

/* ---- gates ---------------------------------------------------------------------------- */

static void gate_drain(gate_t *g);

static void gate_timer_cb(uv_timer_t *t)
{
	wj_engine_t *e = t->data;
	gate_drain(t == &e->wdt_gate.timer ? &e->wdt_gate : &e->jdy_gate);
}

static void gate_drain(gate_t *g)
{
	while (g->head) {
		uint64_t wait = wj_tbucket_take(&g->bucket, wj_mono_ms());
		if (wait) {
			uv_timer_start(&g->timer, gate_timer_cb, wait, 0);
			return;
		}
		gate_wait_t *w = g->head;
		g->head = w->next;
		if (!g->head)
			g->tail = NULL;
		g->waiting--;
		gate_fn fn = w->fn;
		void *arg = w->arg;
		free(w);
		fn(arg);
	}
}

void gate_init(gate_t *g, wj_engine_t *e, const char *name, wj_rate_t rate)
{
	memset(g, 0, sizeof(*g));
	g->name = name;
	g->e = e;
	if (wj_tbucket_init(&g->bucket, rate, 0) == -ENOMEM) {
		/* The limiter still holds the quota, spacing the calls evenly. */
		char f[128] = "";
		wj_logfmt_kv(f, sizeof(f), "api", g->name);
		wj_error(MOD, f, "out of memory for the rate limiter's log (quota %u calls): "
			 "calls are spaced evenly instead, no bursts", rate.count);
	}
	uv_timer_init(e->loop, &g->timer);
	g->timer.data = e;
}

void gate_enter(gate_t *g, gate_fn fn, void *arg)
{
	gate_wait_t *w = calloc(1, sizeof(*w));
	if (!w) {
		fn(arg); /* out of memory: do not lose the call */
		return;
	}
	w->fn = fn;
	w->arg = arg;
	if (g->tail)
		g->tail->next = w;
	else
		g->head = w;
	g->tail = w;
	g->waiting++;
	if (g->waiting == 1)
		gate_drain(g);
}

void gate_pause(gate_t *g, int64_t ms)
{
	if (ms <= 0)
		return;
	if ((uint64_t)ms > g->e->cfg->http.max_retry_after_ms)
		ms = (int64_t)g->e->cfg->http.max_retry_after_ms; /* never a pause without end */
	wj_tbucket_pause_until(&g->bucket, wj_mono_ms() + (uint64_t)ms);
	int64_t until = wj_now_ms() + ms;
	if (until > g->paused_until_ms)
		g->paused_until_ms = until;
	char f[128] = "";
	wj_logfmt_kv(f, sizeof(f), "api", g->name);
	wj_warn(MOD, f, "rate limited: pausing all calls for %lld ms", (long long)ms);
}

void gate_ok(gate_t *g, uint64_t sent_mono)
{
	g->ok_mono = wj_mono_ms();
	if (!g->outage || sent_mono < g->outage_mono)
		return; /* sent before the last pause: says nothing about now */
	char f[128] = "";
	wj_logfmt_kv(f, sizeof(f), "api", g->name);
	wj_info(MOD, f, "answering again after %u pauses", g->outage);
	g->outage = 0;
}

bool gate_up_since(const gate_t *g, uint64_t mono)
{
	return g->ok_mono > mono;
}

int64_t gate_outage(gate_t *g, uint64_t sent_mono, int64_t hint_ms)
{
	const wj_config_t *cfg = g->e->cfg;
	uint64_t now = wj_mono_ms();
	if (!g->outage || sent_mono >= g->outage_mono) {
		unsigned shift = g->outage < 30 ? g->outage : 30;
		uint64_t ms = cfg->queue.backoff_initial_ms << shift;
		if (ms > cfg->queue.backoff_max_ms || ms >> shift != cfg->queue.backoff_initial_ms)
			ms = cfg->queue.backoff_max_ms;
		if (hint_ms > 0 && (uint64_t)hint_ms > ms)
			ms = (uint64_t)hint_ms;
		if (ms > cfg->http.max_retry_after_ms)
			ms = cfg->http.max_retry_after_ms; /* never a pause without end */
		g->outage++;
		g->outage_mono = now;
		g->outage_until = now + ms;
		wj_tbucket_pause_until(&g->bucket, now + ms);
		int64_t until = wj_now_ms() + (int64_t)ms;
		if (until > g->paused_until_ms)
			g->paused_until_ms = until;
		char f[128] = "";
		wj_logfmt_kv(f, sizeof(f), "api", g->name);
		wj_warn(MOD, f, "no answer: pausing all calls for %llu ms (pause %u)",
			(unsigned long long)ms, g->outage);
	}
	return g->outage_until > now ? (int64_t)(g->outage_until - now) : 0;
}

static void engine_handle_closed(uv_handle_t *h);

void gate_close(gate_t *g)
{
	while (g->head) {
		gate_wait_t *w = g->head;
		g->head = w->next;
		free(w);
	}
	g->tail = NULL;
	g->waiting = 0;
	wj_tbucket_free(&g->bucket); /* a late take or pause stays safe: it finds no log */
	uv_timer_stop(&g->timer);
	g->e->open_handles++;
	uv_close((uv_handle_t *)&g->timer, engine_handle_closed);
}

/* ---- token persistence ---------------------------------------------------------------- */

typedef struct token_put {
	const char *json;
} token_put_t;

static int token_put_fn(wj_txn_t *t, void *arg)
{
	token_put_t *tp = arg;
	wj_txn_put(t, WJ_DB_META, "jdy_token", 9, tp->json, strlen(tp->json));
	return 0;
}

static void on_token(const char *token_json, void *arg)
{
	wj_engine_t *e = arg;
	token_put_t tp = {token_json};
	wj_engine_write(e, token_put_fn, &tp);
	json_t *j = json_loads(token_json, 0, NULL);
	e->token_expiry_ms = json_integer_value(json_object_get(j, "expires_ms"));
	json_decref(j);
	wj_info(MOD, NULL, "kingdee: logged in");
}

char *wj_engine_stored_token(wj_engine_t *e)
{
	wj_txn_t t;
	wj_val_t v;
	char *s = NULL;
	if (wj_txn_begin(e->store, &t, false) < 0)
		return NULL;
	if (wj_txn_get(&t, WJ_DB_META, "jdy_token", 9, &v) == 0)
		s = strndup(v.data, v.len);
	wj_txn_abort(&t);
	return s;
}

static void restore_token(wj_engine_t *e)
{
	char *s = wj_engine_stored_token(e);
	if (s && wj_jdy_restore_token(e->jdy, s) == 0) {
		json_t *j = json_loads(s, 0, NULL);
		e->token_expiry_ms = json_integer_value(json_object_get(j, "expires_ms"));
		json_decref(j);
		wj_info(MOD, NULL, "kingdee: reusing the stored token");
	}
	free(s);
}

void wj_engine_adopt_token(wj_engine_t *e, const char *token_json)
{
	if (wj_jdy_has_token(e->jdy))
		return;
	on_token(token_json, e);
	wj_jdy_restore_token(e->jdy, token_json);
}

/* ---- options from the configuration ---------------------------------------------------- */

void wj_engine_http_opts(const wj_config_t *c, bool kingdee, wj_http_opts_t *o)
{
	*o = (wj_http_opts_t){.max_inflight = kingdee ? c->kingdee.concurrency : c->wdt.concurrency,
			      .ca_file = kingdee ? c->kingdee.ca_file : c->wdt.ca_file,
			      .max_body = c->http.max_body,
			      .max_retry_after_ms = c->http.max_retry_after_ms};
}

void wj_engine_wdt_opts(const wj_config_t *c, wj_wdt_opts_t *o)
{
	*o = (wj_wdt_opts_t){.api = c->wdt.api,
			     .url = c->wdt.url,
			     .sid = c->wdt.sid,
			     .app_key = c->wdt.app_key,
			     .app_secret = c->wdt.app_secret,
			     .target_app_key = c->wdt.target_app_key,
			     .timeout_ms = c->wdt.timeout_ms,
			     .tz_offset = c->tz_offset};
}

void wj_engine_jdy_opts(const wj_config_t *c, wj_jdy_opts_t *o)
{
	*o = (wj_jdy_opts_t){.api = c->kingdee.api,
			     .auth = c->kingdee.auth,
			     .url = c->kingdee.url,
			     .client_id = c->kingdee.client_id,
			     .client_secret = c->kingdee.client_secret,
			     .outer_instance_id = c->kingdee.outer_instance_id,
			     .username = c->kingdee.username,
			     .password = c->kingdee.password,
			     .account_id = c->kingdee.account_id,
			     .timeout_ms = c->kingdee.timeout_ms};
}

/* One compiled mapping per flow, in the order of cfg->flows. */
static void free_mappings(wj_mapping_t **m, size_t n)
{
	for (size_t i = 0; m && i < n; i++)
		wj_mapping_free(m[i]);
	free(m);
}

static int compile_mappings(const wj_config_t *cfg, wj_mapping_t ***out, char *err, size_t size)
{
	wj_mapping_t **m = calloc(cfg->n_flows, sizeof(*m));
	if (!m) {
		snprintf(err, size, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_flows; i++) {
		const wj_flow_cfg_t *f = &cfg->flows[i];
		char sub[400];
		int r = wj_mapping_compile(f->mapping, cfg->kingdee.api, f->remark_template, &m[i],
					   sub, sizeof(sub));
		if (r < 0) {
			snprintf(err, size, "flows[%zu].%s", i, sub);
			free_mappings(m, cfg->n_flows);
			return r;
		}
	}
	*out = m;
	return 0;
}

const wj_mapping_t *wj_engine_mapping(const wj_engine_t *e, const char *flow)
{
	size_t n = e->n_mappings < e->cfg->n_flows ? e->n_mappings : e->cfg->n_flows;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(e->cfg->flows[i].name, flow))
			return e->mappings[i];
	return NULL; /* a flow removed from the configuration: its orders are parked */
}

/* ---- housekeeping ---------------------------------------------------------------------- */

/* A process killed inside a read transaction (wdt2jdyctl, a backup) leaves its reader slot
 * behind, and the pages that reader could see are never reused: the store grows until map_max.
 * LMDB clears such slots only when asked. */
static void check_readers(wj_engine_t *e)
{
	if (++e->ticks % READER_CHECK_TICKS != 0)
		return;
	int dead = 0;
	if (wj_store_reader_check(e->store, &dead) < 0)
		wj_warn(MOD, NULL, "cannot check the store's reader table: %s", wj_store_strerror());
	else if (dead > 0)
		wj_info(MOD, NULL, "cleared %d stale reader slot%s left by a process that died in "
			"a read transaction", dead, dead == 1 ? "" : "s");
}

static void on_tick(uv_timer_t *t)
{
	wj_engine_t *e = t->data;
	if (e->stopping)
		return;
	check_readers(e);
	check_alerts(e);
	wj_history_tick(e, false);
	for (size_t i = 0; i < e->n_pollers; i++)
		poller_kick(e->pollers[i]);
	dispatcher_pump(e->disp);
}

int wj_engine_new(uv_loop_t *loop, const wj_config_t *cfg, wj_store_t *store, wj_engine_t **out,
		  char *err, size_t errsize)
{
	wj_engine_t *e = calloc(1, sizeof(*e));
	if (!e) {
		snprintf(err, errsize, "out of memory");
		return -ENOMEM;
	}
	/* A fixed threshold: the large buffers of a WDT page (its answer, the parsed orders' big
	 * strings) are mapped and given back when freed, not kept in the heap that glibc's
	 * adaptive threshold would move them to after the first page. */
	mallopt(M_MMAP_THRESHOLD, WJ_MMAP_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, 2 * WJ_MMAP_THRESHOLD);
	e->loop = loop;
	e->cfg = cfg;
	e->store = store;
	int r = compile_mappings(cfg, &e->mappings, err, errsize);
	if (r < 0)
		goto fail;
	e->n_mappings = cfg->n_flows;
	r = -ENOMEM;
	wj_http_opts_t ho;
	wj_engine_http_opts(cfg, false, &ho);
	e->wdt_http = wj_http_new(loop, &ho);
	wj_engine_http_opts(cfg, true, &ho);
	e->jdy_http = wj_http_new(loop, &ho);
	if (!e->wdt_http || !e->jdy_http) {
		snprintf(err, errsize, "cannot initialise HTTP clients");
		goto fail;
	}
	wj_wdt_opts_t wo;
	wj_jdy_opts_t jo;
	wj_engine_wdt_opts(cfg, &wo);
	wj_engine_jdy_opts(cfg, &jo);
	e->wdt = wj_wdt_new(e->wdt_http, &wo);
	e->jdy = wj_jdy_new(loop, e->jdy_http, &jo);
	if (!e->wdt || !e->jdy) {
		snprintf(err, errsize, "cannot initialise API clients");
		goto fail;
	}
	wj_jdy_set_token_hook(e->jdy, on_token, e);
	restore_token(e);
	gate_init(&e->wdt_gate, e, "wdt", cfg->wdt.rate_limit);
	gate_init(&e->jdy_gate, e, "kingdee", cfg->kingdee.rate_limit);
	e->disp = dispatcher_new(e);
	e->stored = dispatcher_wake;
	e->stored_arg = e->disp;
	e->pollers = calloc(cfg->n_flows, sizeof(*e->pollers));
	if (!e->disp || !e->pollers) {
		snprintf(err, errsize, "out of memory");
		goto fail;
	}
	r = dispatcher_recover(e->disp);
	if (r < 0) {
		snprintf(err, errsize, "cannot recover requests left in flight: %s", strerror(-r));
		goto fail;
	}
	for (size_t i = 0; i < cfg->n_flows; i++) {
		e->pollers[i] = poller_new(e, &cfg->flows[i]);
		if (!e->pollers[i]) {
			snprintf(err, errsize, "flows[%zu]: cannot start the poller", i);
			r = -ENOMEM;
			goto fail;
		}
		e->n_pollers++;
	}
	uv_timer_init(loop, &e->tick);
	e->tick.data = e;
	uv_timer_start(&e->tick, on_tick, 0, 1000);
	uv_timer_init(loop, &e->drain_timer);
	e->drain_timer.data = e;
	*out = e;
	return 0;
fail:
	/* The caller runs the loop once more: closed handles release their memory then. */
	e->stopping = true;
	e->closing = true;
	*out = NULL;
	for (size_t i = 0; i < e->n_pollers; i++)
		poller_free(e->pollers[i]);
	free(e->pollers);
	if (e->disp)
		dispatcher_free(e->disp);
	if (e->wdt_gate.e)
		gate_close(&e->wdt_gate);
	if (e->jdy_gate.e)
		gate_close(&e->jdy_gate);
	if (e->wdt)
		wj_wdt_free(e->wdt);
	if (e->jdy)
		wj_jdy_free(e->jdy);
	if (e->wdt_http)
		wj_http_free(e->wdt_http);
	if (e->jdy_http)
		wj_http_free(e->jdy_http);
	free_mappings(e->mappings, e->n_mappings);
	if (!e->open_handles)
		free(e);
	return r;
}

void wj_engine_reload(wj_engine_t *e, const wj_config_t *cfg)
{
	char err[512];
	wj_mapping_t **m = NULL;
	if (compile_mappings(cfg, &m, err, sizeof(err)) == 0) {
		free_mappings(e->mappings, e->n_mappings);
		e->mappings = m;
		e->n_mappings = cfg->n_flows;
	} else {
		/* Cannot happen for a validated configuration, except out of memory. */
		wj_error(MOD, NULL, "%s: keeping the previous mappings", err);
	}
	e->cfg = cfg;
	wj_store_set_max(e->store, cfg->map_max); /* room for a full store: raise map_max, reload */
	if (e->store_error == -ENOSPC)
		e->store_error_at = 0; /* try again now */
	wj_wdt_opts_t wo;
	wj_jdy_opts_t jo;
	wj_engine_wdt_opts(cfg, &wo);
	wj_engine_jdy_opts(cfg, &jo);
	wj_wdt_set_opts(e->wdt, &wo);
	wj_jdy_set_opts(e->jdy, &jo);
	if (wj_http_set_ca_file(e->wdt_http, cfg->wdt.ca_file) < 0 ||
	    wj_http_set_ca_file(e->jdy_http, cfg->kingdee.ca_file) < 0)
		wj_error(MOD, NULL, "out of memory: a changed ca_file is not applied");
	wj_http_set_max_inflight(e->wdt_http, cfg->wdt.concurrency);
	wj_http_set_max_inflight(e->jdy_http, cfg->kingdee.concurrency);
	wj_tbucket_set_rate(&e->wdt_gate.bucket, cfg->wdt.rate_limit, 0);
	wj_tbucket_set_rate(&e->jdy_gate.bucket, cfg->kingdee.rate_limit, 0);
	/* Flows are matched by name; flows added or removed need a restart. */
	for (size_t i = 0; i < e->n_pollers; i++) {
		const wj_flow_cfg_t *f = NULL;
		for (size_t j = 0; j < cfg->n_flows && !f; j++)
			if (!strcmp(cfg->flows[j].name, poller_name(e->pollers[i])))
				f = &cfg->flows[j];
		poller_reload(e->pollers[i], f);
	}
	if (cfg->n_flows != e->n_pollers)
		wj_warn(MOD, NULL, "flows added or removed: restart to apply");
	dispatcher_pump(e->disp);
}

static void finish_stop(wj_engine_t *e)
{
	if (!e->stop_done)
		return;
	uv_timer_stop(&e->drain_timer);
	void (*done)(void *) = e->stop_done;
	e->stop_done = NULL;
	done(e->stop_arg);
}

static void on_drain_timeout(uv_timer_t *t)
{
	wj_engine_t *e = t->data;
	unsigned n = dispatcher_active(e->disp);
	if (n)
		wj_warn(MOD, NULL,
			"drain timeout: %u saves still in flight; they are settled at the next start",
			n);
	finish_stop(e);
}

static void on_drain_check(uv_timer_t *t)
{
	wj_engine_t *e = t->data;
	bool busy = dispatcher_active(e->disp) > 0;
	for (size_t i = 0; i < e->n_pollers && !busy; i++)
		busy = poller_busy(e->pollers[i]);
	if (!busy)
		finish_stop(e);
}

void wj_engine_stop(wj_engine_t *e, uint64_t drain_ms, void (*done)(void *arg), void *arg)
{
	e->stopping = true;
	e->stop_done = done;
	e->stop_arg = arg;
	uv_timer_stop(&e->tick);
	wj_history_tick(e, true);
	for (size_t i = 0; i < e->n_pollers; i++)
		poller_stop(e->pollers[i]);
	dispatcher_stop(e->disp);
	uv_timer_start(&e->drain_timer, on_drain_timeout, drain_ms, 0);
	/* Reuse the tick handle to notice when everything has finished. */
	uv_timer_start(&e->tick, on_drain_check, 0, 50);
}

static void engine_handle_closed(uv_handle_t *h)
{
	wj_engine_t *e = h->data;
	if (--e->open_handles == 0)
		free(e);
}

void wj_engine_free(wj_engine_t *e)
{
	if (!e)
		return;
	e->stopping = true;
	e->closing = true;
	uv_timer_stop(&e->tick);
	uv_timer_stop(&e->drain_timer);
	e->open_handles += 2;
	uv_close((uv_handle_t *)&e->tick, engine_handle_closed);
	uv_close((uv_handle_t *)&e->drain_timer, engine_handle_closed);
	gate_close(&e->wdt_gate);
	gate_close(&e->jdy_gate);
	/* Abort HTTP first: their callbacks see e->closing and only release memory. */
	wj_http_free(e->wdt_http);
	wj_http_free(e->jdy_http);
	for (size_t i = 0; i < e->n_pollers; i++)
		poller_free(e->pollers[i]);
	free(e->pollers);
	dispatcher_free(e->disp);
	wj_wdt_free(e->wdt);
	wj_jdy_free(e->jdy);
	free_mappings(e->mappings, e->n_mappings);
	/* e itself goes when its last uv handle is closed (engine_handle_closed). */
}

/* ---- status ---------------------------------------------------------------------------- */

static json_t *time_or_null(int64_t epoch, int tz_offset)
{
	char buf[WJ_TIME_LEN];
	if (!epoch)
		return json_null();
	wj_time_format(epoch, tz_offset, buf);
	return json_string(buf);
}

/* An endpoint: up, or down (wj_engine_count) since when, how many calls in a row, why; a pause
 * (Retry-After, rate-limit answers) while it lasts: until when, wall clock. */
static json_t *gate_status(const wj_engine_t *e, int svc, const gate_t *g, int tz_offset)
{
	bool down = e->down_since[svc] != 0;
	json_t *o = json_pack("{s:b, s:I, s:o, s:o, s:o}", "up", !down, "failures",
			      (json_int_t)(down ? e->down_calls[svc] : 0), "failing_since",
			      time_or_null(down ? e->down_wall[svc] : 0, tz_offset), "last_failure",
			      time_or_null(down ? e->down_last[svc] : 0, tz_offset), "error",
			      !down ? json_null()
				    : json_string(e->down_error[svc][0] ? e->down_error[svc]
								       : "no usable answer"));
	int64_t until = g->paused_until_ms;
	if (until <= wj_now_ms()) {
		json_object_set_new(o, "paused_until", json_null());
		json_object_set_new(o, "paused_until_ms", json_null());
	} else {
		json_object_set_new(o, "paused_until", time_or_null((until + 999) / 1000, tz_offset));
		json_object_set_new(o, "paused_until_ms", json_integer(until));
	}
	return o;
}

/* One current failure for status: what fails, since when, how many times in a row (times are
 * formatted, steals since and last). */
static json_t *failure(const char *source, const char *error, json_t *since, json_t *last,
		       json_int_t count)
{
	return json_pack("{s:s, s:s, s:o?, s:o?, s:I}", "source", source, "error",
			 error ? error : "failed", "since", since, "last", last, "count", count);
}

/* "YYYY-MM-DD HH:MM:SS" in one offset sorts as text. */
static bool later(json_t *a, json_t *b)
{
	const char *x = json_string_value(json_object_get(a, "last"));
	const char *y = json_string_value(json_object_get(b, "last"));
	return strcmp(x ? x : "", y ? y : "") > 0;
}

/* Every failure going on now (endpoints down, flows whose windows fail), the latest first, and
 * last_error: the latest of them ("SOURCE: error", with since when and how many in a row), or
 * when nothing fails now, the last error event (a dead letter, a refused commit). */
static void status_errors(wj_engine_t *e, json_t *st)
{
	int tz = e->cfg->tz_offset;
	json_t *errs = json_array();
	for (int svc = 0; svc < 2; svc++)
		if (e->down_since[svc])
			json_array_append_new(
				errs, failure(svc_name[svc],
					      e->down_error[svc][0] ? e->down_error[svc]
								    : "no usable answer",
					      time_or_null(e->down_wall[svc], tz),
					      time_or_null(e->down_last[svc], tz), e->down_calls[svc]));
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(st, "flows"), i, f) {
		json_int_t n = json_integer_value(json_object_get(f, "failures"));
		if (n <= 0)
			continue;
		char src[96];
		snprintf(src, sizeof(src), "flow %s", json_string_value(json_object_get(f, "name")));
		json_array_append_new(
			errs, failure(src, json_string_value(json_object_get(f, "last_error")),
				      json_incref(json_object_get(f, "failing_since")),
				      json_incref(json_object_get(f, "last_failure")), n));
	}
	json_t *latest = NULL, *x;
	json_array_foreach(errs, i, x)
		if (!latest || later(x, latest))
			latest = x;
	if (e->degraded) { /* why the daemon is degraded comes first, whatever fails since */
		latest = failure("start-up check", e->degraded_why,
				 time_or_null(e->degraded_since, tz),
				 time_or_null(e->degraded_last, tz), e->degraded_count);
		json_array_insert_new(errs, 0, latest);
	}
	if (latest) {
		const char *src = json_string_value(json_object_get(latest, "source"));
		const char *why = json_string_value(json_object_get(latest, "error"));
		size_t sl = strlen(src);
		char text[sizeof(e->last_error) + 96];
		if (!strncmp(why, src, sl) && why[sl] == ':') /* "wdt: network: …" says it already */
			snprintf(text, sizeof(text), "%s", why);
		else
			snprintf(text, sizeof(text), "%s: %s", src, why);
		json_object_set_new(st, "last_error", json_string(text));
		json_object_set(st, "last_error_at", json_object_get(latest, "last"));
		json_object_set(st, "last_error_since", json_object_get(latest, "since"));
		json_object_set(st, "last_error_count", json_object_get(latest, "count"));
	} else {
		bool any = e->last_error[0] != '\0';
		json_object_set_new(st, "last_error", any ? json_string(e->last_error) : json_null());
		json_object_set_new(st, "last_error_at",
				    any ? json_string(e->last_error_at) : json_null());
		json_object_set_new(st, "last_error_since", json_null());
		json_object_set_new(st, "last_error_count", any ? json_integer(1) : json_null());
	}
	json_object_set_new(st, "errors", errs);
}

json_t *wj_engine_status(wj_engine_t *e)
{
	json_t *st = json_object();
	json_t *flows = json_array();
	for (size_t i = 0; i < e->n_pollers; i++)
		json_array_append_new(flows, poller_status(e->pollers[i]));
	json_object_set_new(st, "flows", flows);

	wj_txn_t t;
	json_t *q = dispatcher_status(e->disp);
	if (wj_txn_begin(e->store, &t, false) == 0) {
		size_t ready = 0, delayed = 0, inflight = 0, dead = 0, review = 0;
		wj_txn_count(&t, WJ_DB_QUEUE, &ready);
		wj_txn_count(&t, WJ_DB_DELAYED, &delayed);
		wj_txn_count(&t, WJ_DB_INFLIGHT, &inflight);
		wj_txn_count(&t, WJ_DB_DEAD, &dead);
		wj_txn_count(&t, WJ_DB_REVIEW, &review);
		json_object_set_new(q, "ready", json_integer((json_int_t)ready));
		json_object_set_new(q, "delayed", json_integer((json_int_t)delayed));
		json_object_set_new(q, "in_flight", json_integer((json_int_t)inflight));
		json_object_set_new(q, "depth", json_integer((json_int_t)(ready + delayed + inflight)));
		json_object_set_new(q, "capacity", json_integer(e->cfg->queue.capacity));
		json_object_set_new(st, "posted", json_integer((json_int_t)wj_stat_get(&t, "stat:saved")));
		json_object_set_new(st, "failed", json_integer((json_int_t)wj_stat_get(&t, "stat:failed")));
		json_object_set_new(st, "dead", json_integer((json_int_t)dead));
		json_object_set_new(st, "review", json_integer((json_int_t)review));
		wj_txn_abort(&t);
	}
	json_object_set_new(st, "queue", q);

	json_t *api = json_object();
	for (int ep = 0; ep < EP_COUNT; ep++) {
		json_t *o = json_object();
		for (int oc = 0; oc < OC_COUNT; oc++)
			json_object_set_new(o, oc_names[oc], json_integer((json_int_t)e->calls[ep][oc]));
		json_object_set_new(api, ep_names[ep], o);
	}
	json_object_set_new(st, "api_calls", api);
	json_object_set_new(st, "endpoints",
			    json_pack("{s:o, s:o}", "wdt", gate_status(e, 0, &e->wdt_gate, e->cfg->tz_offset),
				      "kingdee", gate_status(e, 1, &e->jdy_gate, e->cfg->tz_offset)));

	json_t *kd = json_object();
	char buf[WJ_TIME_LEN];
	if (e->token_expiry_ms > 0) {
		wj_time_format(e->token_expiry_ms / 1000, e->cfg->tz_offset, buf);
		json_object_set_new(kd, "token_expires", json_string(buf));
	} else {
		json_object_set_new(kd, "token_expires", json_null());
	}
	json_object_set_new(kd, "logged_in", json_boolean(wj_jdy_has_token(e->jdy)));
	json_object_set_new(kd, "unreachable", json_boolean(e->jdy_gate.outage > 0));
	json_object_set_new(kd, "outage_pauses", json_integer(e->jdy_gate.outage));
	json_object_set_new(st, "kingdee", kd);
	/* WDT's clock minus this host's (conservative estimate), null until an answer had a Date */
	int64_t off = e->wdt_clock.offset_ms;
	json_object_set_new(st, "wdt", json_pack("{s:o}", "clock_offset_s",
						 wj_wdt_clock_known(&e->wdt_clock)
							 ? json_integer((off + (off < 0 ? -500 : 500)) / 1000)
							 : json_null()));

	wj_store_stat_t ss;
	if (wj_store_stat(e->store, &ss) == 0) {
		json_t *so = json_object();
		json_object_set_new(so, "map_size", json_integer((json_int_t)ss.map_size));
		json_object_set_new(so, "map_max", json_integer((json_int_t)ss.map_max));
		json_object_set_new(so, "used_bytes", json_integer((json_int_t)ss.used_bytes));
		json_object_set_new(so, "readers", json_integer((json_int_t)ss.readers));
		json_object_set_new(so, "commits", json_integer((json_int_t)wj_store_commits(e->store)));
		json_object_set_new(so, "error", e->store_error ? json_string(strerror(-e->store_error))
								: json_null());
		json_object_set_new(st, "store", so);
	}
	status_errors(e, st);
	return st;
}

void wj_engine_summary(wj_engine_t *e, char *buf, size_t size)
{
	json_t *st = wj_engine_status(e);
	json_t *q = json_object_get(st, "queue");
	snprintf(buf, size,
		 "posted=%lld dead=%lld review=%lld ready=%lld delayed=%lld in_flight=%lld",
		 (long long)json_integer_value(json_object_get(st, "posted")),
		 (long long)json_integer_value(json_object_get(st, "dead")),
		 (long long)json_integer_value(json_object_get(st, "review")),
		 (long long)json_integer_value(json_object_get(q, "ready")),
		 (long long)json_integer_value(json_object_get(q, "delayed")),
		 (long long)json_integer_value(json_object_get(q, "in_flight")));
	json_decref(st);
}
