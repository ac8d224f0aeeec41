/* Read-only runs against both services: the connection check and the preview (see probe.h).
 *
 * A run owns a pair of HTTP clients and the two API clients on the caller's loop. Its answers
 * come from the loop; `pending` counts those still to come. A run reports from a timer (never
 * from inside an HTTP callback, so that it may close its clients), then stops: the clients are
 * freed, the answers they still owe arrive and are only counted, and the memory goes once the
 * last one has come and the timers are closed. */
#include "lib/probe.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/engine_int.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"

/* A refused WDT query is sent once more with WDT's clock when the answer shows it this far
 * from this host's: the timestamp was likely what WDT refused (a signature error on
 * openapi2, a business error on Qimen). */
#define CLOCK_RETRY_MS 60000
#define MAX_SPAN_S (30 * 86400 - 1) /* a WDT query covers at most 30 days */
#define MAX_READ 200000             /* orders read in one window: a period to narrow */
#define WDT_RETRIES 3               /* a page that failed for a reason that may pass */
#define LOOKUP_RETRIES 3
#define RATE_PAUSE_MS 30000         /* at least, after WDT's rate-limit answer */

/* ---- a run: clients, timers, answers owed ---------------------------------------------- */

typedef struct run run_t;
struct run {
	uv_loop_t *loop;
	wj_http_t *wdt_http, *jdy_http;
	wj_wdt_t *wdt;
	wj_jdy_t *jdy;
	uv_timer_t timer[2];
	unsigned pending;  /* answers still to come */
	unsigned open;     /* timers not yet closed */
	bool stopped;      /* reported or cancelled: answers are only counted */
	bool released;
	void (*destroy)(run_t *r);
};

static void run_timer_closed(uv_handle_t *h)
{
	run_t *r = h->data;
	if (--r->open == 0)
		r->destroy(r);
}

/* Free the run once nothing refers to it any more. */
static void run_release(run_t *r)
{
	if (!r->stopped || r->pending || r->released)
		return;
	r->released = true;
	for (int i = 0; i < 2; i++) {
		uv_timer_stop(&r->timer[i]);
		uv_close((uv_handle_t *)&r->timer[i], run_timer_closed);
	}
}

/* Abort what is in flight (those answers come now or from the loop, and are only counted). */
static void run_stop(run_t *r)
{
	if (r->stopped)
		return;
	r->stopped = true;
	for (int i = 0; i < 2; i++)
		uv_timer_stop(&r->timer[i]);
	if (r->jdy)
		wj_jdy_set_token_hook(r->jdy, NULL, NULL);
	if (r->wdt_http)
		wj_http_free(r->wdt_http);
	if (r->jdy_http)
		wj_http_free(r->jdy_http);
	wj_wdt_free(r->wdt);
	if (r->jdy)
		wj_jdy_free(r->jdy);
	r->wdt_http = r->jdy_http = NULL;
	r->wdt = NULL;
	r->jdy = NULL;
	run_release(r);
}

/* An answer came. true when the run is stopped: the caller only releases what it holds. */
static bool run_answer(run_t *r)
{
	r->pending--;
	if (!r->stopped)
		return false;
	run_release(r);
	return true;
}

/* Clients as the configuration sets them, and the timers. 0 or -ENOMEM (r is then unused:
 * the caller frees it). */
static int run_open(run_t *r, uv_loop_t *loop, const wj_config_t *cfg, void (*destroy)(run_t *))
{
	wj_http_opts_t ho;
	wj_wdt_opts_t wo;
	wj_jdy_opts_t jo;
	r->loop = loop;
	r->destroy = destroy;
	wj_engine_http_opts(cfg, false, &ho);
	r->wdt_http = wj_http_new(loop, &ho);
	wj_engine_http_opts(cfg, true, &ho);
	r->jdy_http = wj_http_new(loop, &ho);
	wj_engine_wdt_opts(cfg, &wo);
	wj_engine_jdy_opts(cfg, &jo);
	if (r->wdt_http)
		r->wdt = wj_wdt_new(r->wdt_http, &wo);
	if (r->jdy_http)
		r->jdy = wj_jdy_new(loop, r->jdy_http, &jo);
	if (!r->wdt || !r->jdy) {
		/* nothing was sent: freeing answers nothing */
		if (r->jdy)
			wj_jdy_free(r->jdy);
		wj_wdt_free(r->wdt);
		if (r->wdt_http)
			wj_http_free(r->wdt_http);
		if (r->jdy_http)
			wj_http_free(r->jdy_http);
		return -ENOMEM;
	}
	for (int i = 0; i < 2; i++) {
		uv_timer_init(loop, &r->timer[i]);
		r->timer[i].data = r;
	}
	r->open = 2;
	return 0;
}

/* One query of flow's method for [start, end], with its params unless bare. 0 (cb will be
 * called, counted in pending) or -errno. */
static int run_wdt_query(run_t *r, const wj_flow_cfg_t *f, int tz, int64_t start, int64_t end,
			 unsigned page_no, unsigned page_size, wj_wdt_cb cb, void *arg)
{
	char st[WJ_TIME_LEN], et[WJ_TIME_LEN], page[16], size[16];
	wj_time_format(start, tz, st);
	wj_time_format(end, tz, et);
	snprintf(page, sizeof(page), "%u", page_no);
	snprintf(size, sizeof(size), "%u", page_size);
	wj_kv_t *kv = calloc(f->n_params + 4, sizeof(*kv));
	if (!kv)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < f->n_params; i++)
		kv[k++] = f->params[i];
	kv[k++] = (wj_kv_t){"start_time", st};
	kv[k++] = (wj_kv_t){"end_time", et};
	kv[k++] = (wj_kv_t){"page_no", page};
	kv[k++] = (wj_kv_t){"page_size", size};
	int ret = wj_wdt_query(r->wdt, f->method, kv, k, NULL, cb, arg);
	free(kv);
	if (ret == 0)
		r->pending++;
	return ret;
}

/* Whether a refused WDT query may have been refused for its timestamp, WDT's clock being
 * off_ms from this host's. */
static bool refused_for_time(const wj_wdt_result_t *res, int64_t off_ms)
{
	return (res->cls == WJ_WDT_AUTH || res->cls == WJ_WDT_PERMANENT) &&
	       (off_ms > CLOCK_RETRY_MS || off_ms < -CLOCK_RETRY_MS);
}

/* A Kingdee call failed because the login did (the client's text for its waiting calls). */
static bool login_refused(const wj_jdy_result_t *res)
{
	return res->cls != WJ_JDY_OK && !strncmp(res->error, "login failed: ", 14);
}

/* ---- the connection check ---------------------------------------------------------------- */

struct wj_check {
	run_t run; /* first: the run's destroy frees the check */
	const wj_config_t *cfg;
	wj_check_cb cb;
	void *arg;
	wj_check_result_t res;
	wj_wdt_clock_t clock;
	int64_t from, to;
	bool wdt_retried;
	bool login_failed; /* a call failed for the login's sake */
	bool token_seen;   /* the login succeeded (the token hook ran) */
	bool token_stored; /* the run started from the daemon's stored token */
	struct wj_engine *engine;
	int64_t token_life_ms;
	char group[128];
	char token_error[600]; /* the token was refused where it is used */
	/* WDT number and the Kingdee number looked up */
	const char *material, *material_kd, *store, *store_kd;
};

static const char *const step_names[WJ_CHECK_STEPS] = {
	"wdt query", "kingdee login", "kingdee token", "kingdee account set", "kingdee material",
	"kingdee store",
};

const char *wj_check_step_name(wj_check_step_t s)
{
	return s < WJ_CHECK_STEPS ? step_names[s] : "?";
}

bool wj_check_passed(const wj_check_result_t *res)
{
	for (int i = 0; i < WJ_CHECK_STEPS; i++)
		if (res->outcome[i] == WJ_STEP_FAILED || res->outcome[i] == WJ_STEP_NOT_RUN)
			return false;
	return true;
}

void wj_check_failure(const wj_check_result_t *res, char *buf, size_t size)
{
	buf[0] = '\0';
	for (int i = 0; i < WJ_CHECK_STEPS; i++)
		if (res->outcome[i] == WJ_STEP_FAILED) {
			snprintf(buf, size, "%s: %s", step_names[i], res->detail[i]);
			return;
		}
}

wj_check_step_t wj_check_login_step(wj_jdy_auth_t auth, const char *e)
{
	if (!e)
		return WJ_CHECK_LOGIN;
	if (auth == WJ_JDY_AUTH_PASSWORD)
		return !strncmp(e, "account set", 11) || !strncmp(e, "no kingdee.account_id", 21)
			       ? WJ_CHECK_ACCOUNT : WJ_CHECK_LOGIN;
	return !strncmp(e, "token:", 6) ? WJ_CHECK_TOKEN : WJ_CHECK_LOGIN;
}

static void set_step(wj_check_t *c, wj_check_step_t s, wj_step_outcome_t out, const char *fmt,
		     ...) __attribute__((format(printf, 4, 5)));
static void set_step(wj_check_t *c, wj_check_step_t s, wj_step_outcome_t out, const char *fmt,
		     ...)
{
	va_list ap;
	va_start(ap, fmt);
	c->res.outcome[s] = out;
	vsnprintf(c->res.detail[s], sizeof(c->res.detail[s]), fmt, ap);
	va_end(ap);
	wj_log_mask(c->res.detail[s]); /* the clients mask already; the configured secrets too */
}

/* "24 h", "90 min", "45 s" */
static void duration_text(int64_t ms, char *buf, size_t size)
{
	long long s = ms > 0 ? (long long)(ms / 1000) : 0;
	if (s >= 7200)
		snprintf(buf, size, "%lld h", s / 3600);
	else if (s >= 120)
		snprintf(buf, size, "%lld min", s / 60);
	else
		snprintf(buf, size, "%lld s", s);
}

/* The login steps, from what the calls saw. */
static void check_login_steps(wj_check_t *c)
{
	const wj_config_t *cfg = c->cfg;
	bool password = cfg->kingdee.auth == WJ_JDY_AUTH_PASSWORD;
	char who[300];
	if (password)
		snprintf(who, sizeof(who), "user %s (client %s)", cfg->kingdee.username,
			 cfg->kingdee.client_id);
	else
		snprintf(who, sizeof(who), "client %s, instance %s", cfg->kingdee.client_id,
			 cfg->kingdee.outer_instance_id);
	if (c->login_failed || (!c->token_seen && !c->token_stored)) {
		const char *e = c->run.jdy ? wj_jdy_login_error(c->run.jdy) : "";
		wj_check_step_t failed = wj_check_login_step(cfg->kingdee.auth, e);
		for (int s = WJ_CHECK_LOGIN; s <= WJ_CHECK_ACCOUNT; s++) {
			if (s == WJ_CHECK_ACCOUNT && !password)
				set_step(c, s, WJ_STEP_SKIPPED, "gateway login: the instance %s is "
					 "the account set", cfg->kingdee.outer_instance_id);
			else if (s < (int)failed)
				set_step(c, s, WJ_STEP_OK, "%s",
					 s == WJ_CHECK_LOGIN ? who : "obtained");
			else if (s == (int)failed)
				set_step(c, s, WJ_STEP_FAILED, "%s", *e ? e : "no login was made");
			else
				set_step(c, s, WJ_STEP_NOT_RUN, "not checked: the login failed");
		}
		return;
	}
	char life[32];
	const char *kept = c->token_seen ? "" : " (the one kept in the state)";
	duration_text(c->token_life_ms, life, sizeof(life));
	if (password) {
		set_step(c, WJ_CHECK_LOGIN, WJ_STEP_OK, "%s", who);
		set_step(c, WJ_CHECK_TOKEN, WJ_STEP_OK, "access_token valid for %s%s", life, kept);
		set_step(c, WJ_CHECK_ACCOUNT, WJ_STEP_OK, "%s (group %s)", cfg->kingdee.account_id,
			 c->group);
	} else {
		set_step(c, WJ_CHECK_LOGIN, WJ_STEP_OK, "%s", who);
		set_step(c, WJ_CHECK_TOKEN, WJ_STEP_OK, "app-token valid for %s%s", life, kept);
		set_step(c, WJ_CHECK_ACCOUNT, WJ_STEP_SKIPPED, "gateway login: the instance %s is "
			 "the account set", cfg->kingdee.outer_instance_id);
	}
	if (c->token_error[0])
		set_step(c, WJ_CHECK_TOKEN, WJ_STEP_FAILED, "%s", c->token_error);
}

static void check_destroy(run_t *r)
{
	free((wj_check_t *)r);
}

static void on_check_report(uv_timer_t *t)
{
	wj_check_t *c = t->data;
	check_login_steps(c);
	c->cb(&c->res, c->arg);
	run_stop(&c->run);
}

/* Every answer has come: report from a fresh turn of the loop. */
static void check_answered(wj_check_t *c)
{
	if (!c->run.pending)
		uv_timer_start(&c->run.timer[0], on_check_report, 0, 0);
}

/* What the step lines say of a token: its life from since_ms, its account group. */
static void token_info(wj_check_t *c, const char *token_json, int64_t since_ms)
{
	json_t *o = json_loads(token_json, 0, NULL);
	int64_t obtained = json_integer_value(json_object_get(o, "obtained_ms"));
	c->token_life_ms = json_integer_value(json_object_get(o, "expires_ms")) -
			   (since_ms ? since_ms : obtained);
	snprintf(c->group, sizeof(c->group), "%s", wj_json_str(o, "group_name") ?: "");
	json_decref(o);
}

static void on_token_hook(const char *token_json, void *arg)
{
	wj_check_t *c = arg;
	c->token_seen = true;
	token_info(c, token_json, 0);
	if (c->engine)
		wj_engine_adopt_token(c->engine, token_json);
}

/* Start from the daemon's stored token, when it holds a usable one. */
static void check_reuse_token(wj_check_t *c)
{
	char *tok = wj_engine_stored_token(c->engine);
	if (tok && wj_jdy_restore_token(c->run.jdy, tok) == 0) {
		c->token_stored = true;
		token_info(c, tok, wj_now_ms());
	}
	free(tok);
}

static int check_wdt_send(wj_check_t *c);

static void on_check_wdt(wj_wdt_result_t *res, void *arg)
{
	wj_check_t *c = arg;
	if (run_answer(&c->run))
		return;
	if (c->engine)
		wj_engine_count(c->engine, EP_WDT_QUERY, wj_wdt_outcome(res->cls));
	const wj_config_t *cfg = c->cfg;
	wj_wdt_clock_add(&c->clock, res->date_ms, res->recv_ms, res->elapsed_ms);
	if (res->date_ms >= 0) {
		/* the Date was stamped within the exchange, in whole seconds: the middle */
		c->res.clock_known = true;
		c->res.clock_offset_ms = res->date_ms - res->recv_ms + 500 +
					 (int64_t)(res->elapsed_ms / 2);
		c->res.clock_margin_ms = 500 + (int64_t)(res->elapsed_ms / 2);
	}
	int64_t off = c->clock.offset_ms;
	if (refused_for_time(res, off) && !c->wdt_retried) {
		/* the query carried this host's time: ask again in WDT's */
		c->wdt_retried = true;
		wj_wdt_set_clock_offset(c->run.wdt, off);
		if (check_wdt_send(c) == 0)
			return;
	}
	const char *e = res->error;
	if (!strncmp(e, "wdt: ", 5))
		e += 5;
	char a[WJ_TIME_LEN], b[WJ_TIME_LEN];
	wj_time_format(c->from, cfg->tz_offset, a);
	wj_time_format(c->to, cfg->tz_offset, b);
	if (res->cls != WJ_WDT_OK)
		set_step(c, WJ_CHECK_WDT, WJ_STEP_FAILED, "%s", e);
	else if (res->total_count >= 0)
		set_step(c, WJ_CHECK_WDT, WJ_STEP_OK, "%s %s .. %s: %" PRId64 " orders",
			 cfg->flows[0].method, a, b, res->total_count);
	else
		set_step(c, WJ_CHECK_WDT, WJ_STEP_OK, "%s %s .. %s: answered (%zu orders on the "
			 "first page, no count)", cfg->flows[0].method, a, b,
			 json_array_size(res->orders));
	check_answered(c);
}

static int check_wdt_send(wj_check_t *c)
{
	int64_t now = wj_wdt_clock_now(&c->clock, wj_now_ms());
	c->from = now - 3600;
	c->to = now;
	return run_wdt_query(&c->run, &c->cfg->flows[0], c->cfg->tz_offset, c->from, c->to, 0, 1,
			     on_check_wdt, c);
}

/* A Kingdee answer counts in the daemon's status like its own calls. */
static void check_count(wj_check_t *c, int endpoint, const wj_jdy_result_t *res)
{
	if (c->engine)
		wj_engine_count(c->engine, endpoint, wj_jdy_outcome(res->cls));
}

/* The answer of a Kingdee call for step s (material, store, or the token's list call). */
static void check_jdy_answer(wj_check_t *c, wj_check_step_t s, const wj_jdy_result_t *res)
{
	check_count(c, s == WJ_CHECK_MATERIAL ? EP_JDY_MATERIAL : EP_JDY_STORE, res);
	if (login_refused(res)) {
		c->login_failed = true;
		set_step(c, s, WJ_STEP_NOT_RUN, "not looked up: the login failed");
		return;
	}
	if (res->cls == WJ_JDY_OK) {
		const char *id = wj_json_str(res->data, "id") ?: "?";
		if (s == WJ_CHECK_MATERIAL)
			set_step(c, s, WJ_STEP_OK, "%s%s%s: id %s, base unit %s", c->material,
				 strcmp(c->material, c->material_kd) ? " → " : "",
				 strcmp(c->material, c->material_kd) ? c->material_kd : "", id,
				 wj_json_str(res->data, "base_unit_id") ?: "?");
		else if (s == WJ_CHECK_STORE)
			set_step(c, s, WJ_STEP_OK, "%s%s%s: id %s", c->store,
				 strcmp(c->store, c->store_kd) ? " → " : "",
				 strcmp(c->store, c->store_kd) ? c->store_kd : "", id);
		return;
	}
	set_step(c, s, WJ_STEP_FAILED, "%s", res->error[0] ? res->error : wj_jdy_class_name(res->cls));
}

static void on_check_material(const wj_jdy_result_t *res, void *arg)
{
	wj_check_t *c = arg;
	if (run_answer(&c->run))
		return;
	check_jdy_answer(c, WJ_CHECK_MATERIAL, res);
	check_answered(c);
}

static void on_check_store(const wj_jdy_result_t *res, void *arg)
{
	wj_check_t *c = arg;
	if (run_answer(&c->run))
		return;
	check_jdy_answer(c, WJ_CHECK_STORE, res);
	check_answered(c);
}

/* Nothing to look up: one list call makes the login and shows the token works. */
static void on_check_list(const wj_jdy_result_t *res, void *arg)
{
	wj_check_t *c = arg;
	if (run_answer(&c->run))
		return;
	check_count(c, EP_JDY_LIST, res);
	if (login_refused(res))
		c->login_failed = true;
	else if (res->cls != WJ_JDY_OK)
		snprintf(c->token_error, sizeof(c->token_error), "a gain-bill list with the token: "
			 "%s", res->error);
	check_answered(c);
}

/* The numbers to look up: given, else the first entry of the map; NULL: skipped. */
static const char *check_number(const char *given, const wj_kv_t *map, size_t n)
{
	if (given && *given)
		return given;
	return n ? map[0].key : NULL;
}

int wj_check_start(uv_loop_t *loop, const wj_config_t *cfg, const wj_check_opts_t *o,
		   wj_check_cb cb, void *arg, wj_check_t **out)
{
	*out = NULL;
	if (!cfg->n_flows || !cb)
		return -EINVAL;
	wj_check_t *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (run_open(&c->run, loop, cfg, check_destroy) < 0) {
		free(c);
		return -ENOMEM;
	}
	c->cfg = cfg;
	c->cb = cb;
	c->arg = arg;
	const wj_kv_t *mm = cfg->kingdee.material_map, *sm = cfg->kingdee.store_map;
	c->material = check_number(o ? o->material : NULL, mm, cfg->kingdee.n_material_map);
	c->store = check_number(o ? o->store : NULL, sm, cfg->kingdee.n_store_map);
	c->engine = o ? o->engine : NULL;
	if (c->engine)
		check_reuse_token(c);
	wj_jdy_set_token_hook(c->run.jdy, on_token_hook, c);
	int r = check_wdt_send(c);
	if (r == 0 && c->material) {
		c->material_kd = wj_kingdee_number(cfg, 'm', c->material);
		if ((r = wj_jdy_material(c->run.jdy, c->material_kd, on_check_material, c)) == 0)
			c->run.pending++;
	} else if (r == 0) {
		set_step(c, WJ_CHECK_MATERIAL, WJ_STEP_SKIPPED, "no number to look up: give "
			 "--material NUMBER or list one in kingdee.material_map");
	}
	if (r == 0 && c->store) {
		c->store_kd = wj_kingdee_number(cfg, 's', c->store);
		if ((r = wj_jdy_store(c->run.jdy, c->store_kd, on_check_store, c)) == 0)
			c->run.pending++;
	} else if (r == 0) {
		set_step(c, WJ_CHECK_STORE, WJ_STEP_SKIPPED, "no number to look up: give --store "
			 "NUMBER or list one in kingdee.store_map");
	}
	if (r == 0 && !c->material && !c->store) {
		int64_t now = wj_now_ms();
		wj_jdy_bill_query_t q = {.created_from_ms = now - 60000, .created_to_ms = now,
					 .page = 1};
		if ((r = wj_jdy_list_bills(c->run.jdy, &q, on_check_list, c)) == 0)
			c->run.pending++;
	}
	if (r < 0) {
		run_stop(&c->run); /* what was sent is aborted; the run frees itself */
		return r;
	}
	*out = c;
	return 0;
}

void wj_check_cancel(wj_check_t *c)
{
	if (c)
		run_stop(&c->run);
}

/* ---- the preview -------------------------------------------------------------------------- */

/* An eligible order, reduced to what the table and the mapping need. */
typedef struct pv_order {
	char *id;        /* stockin_id as a key; NULL when unusable (then bad says why) */
	char *bad;
	char no[128];
	char wh[128];
	char date[WJ_TIME_LEN];
	char hex[65];    /* content hash, as the state keeps it */
	size_t lines;
	json_t *slim;    /* what the mapping reads of it */
} pv_order_t;

struct wj_preview {
	run_t run; /* first: the run's destroy frees the preview */
	const wj_config_t *cfg;
	const wj_flow_cfg_t *flow;
	wj_store_t *store;
	wj_mapping_t *mapping;
	wj_preview_item_fn item;
	wj_preview_done_fn done;
	void *arg;
	wj_preview_stats_t st;
	int64_t from, to;
	wj_wdt_clock_t clock;
	wj_tbucket_t wdt_bucket, jdy_bucket;
	size_t win;
	unsigned page, tries;
	size_t win_read;
	pv_order_t *orders;
	size_t n, cap;
	json_t *seen;     /* stockin_id → index in orders */
	/* lookups: key "m:NUMBER" / "s:NUMBER" (Kingdee numbers) */
	json_t *resolved; /* key → the Kingdee object */
	json_t *failed;   /* key → {"error", "permanent"} */
	json_t *asked;    /* key → the WDT number that asked for it */
	json_t *queue;    /* keys to ask, in order */
	json_t *retries;  /* key → answers that may pass (rate limit, transient) so far */
	size_t next;      /* first key of queue not sent */
	unsigned inflight;
	bool finishing;
	int err;
	char why[640];
};

int wj_preview_window(int64_t from, int64_t to, size_t i, int64_t *start, int64_t *end)
{
	int64_t span = (int64_t)MAX_SPAN_S + 1;
	if (to < from || (int64_t)i > (to - from) / span)
		return -ENOENT;
	*start = from + (int64_t)i * span;
	*end = *start + span - 1 < to ? *start + span - 1 : to;
	return 0;
}

static void pv_destroy(run_t *r)
{
	wj_preview_t *p = (wj_preview_t *)r;
	for (size_t i = 0; i < p->n; i++) {
		free(p->orders[i].id);
		free(p->orders[i].bad);
		json_decref(p->orders[i].slim);
	}
	free(p->orders);
	json_decref(p->seen);
	json_decref(p->resolved);
	json_decref(p->failed);
	json_decref(p->asked);
	json_decref(p->queue);
	json_decref(p->retries);
	wj_mapping_free(p->mapping);
	wj_tbucket_free(&p->wdt_bucket);
	wj_tbucket_free(&p->jdy_bucket);
	free(p);
}

static void pv_emit(wj_preview_t *p);

static void on_pv_report(uv_timer_t *t)
{
	wj_preview_t *p = t->data;
	if (!p->err)
		pv_emit(p);
	p->done(p->err, p->why, &p->st, p->arg);
	run_stop(&p->run);
}

/* End the run (err 0: emit the items first) from a fresh turn of the loop. */
static void pv_finish(wj_preview_t *p, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void pv_finish(wj_preview_t *p, int err, const char *fmt, ...)
{
	if (p->finishing)
		return; /* the first end is the one reported */
	p->finishing = true;
	p->err = err;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->why, sizeof(p->why), fmt, ap);
		va_end(ap);
		wj_log_mask(p->why);
	}
	uv_timer_stop(&p->run.timer[1]);
	uv_timer_start(&p->run.timer[0], on_pv_report, 0, 0);
}

/* The bill's date of an order as the default mapping takes it, for the table. */
static void order_date(const json_t *order, char *buf)
{
	static const char *const keys[] = {"stockin_time", "check_time", "modified"};
	buf[0] = '\0';
	for (size_t i = 0; i < 3 && !buf[0]; i++) {
		const char *s = wj_json_str(order, keys[i]);
		if (s && *s && strcmp(s, "0000-00-00 00:00:00"))
			snprintf(buf, WJ_TIME_LEN, "%s", s);
	}
}

/* Add an eligible order (a later copy of the same stock-in replaces the earlier). */
static int pv_add(wj_preview_t *p, const json_t *order)
{
	char id[128];
	int kerr = wj_wdt_order_key(order, id, sizeof(id));
	json_t *at = kerr ? NULL : json_object_get(p->seen, id);
	pv_order_t *o;
	if (at) {
		o = &p->orders[json_integer_value(at)];
		json_decref(o->slim);
	} else {
		if (p->n == p->cap) {
			size_t cap = p->cap ? 2 * p->cap : 64;
			pv_order_t *v = realloc(p->orders, cap * sizeof(*v));
			if (!v)
				return -ENOMEM;
			p->orders = v;
			p->cap = cap;
		}
		o = &p->orders[p->n];
		memset(o, 0, sizeof(*o));
		if (kerr) {
			if (asprintf(&o->bad, "stockin_id: %s: the order cannot be tracked by it",
				     wj_wdt_key_problem(kerr)) < 0)
				return -ENOMEM;
		} else if (!(o->id = strdup(id)) ||
			   json_object_set_new(p->seen, id, json_integer((json_int_t)p->n)) < 0) {
			free(o->id);
			return -ENOMEM;
		}
		p->n++;
		p->st.eligible++;
	}
	snprintf(o->no, sizeof(o->no), "?");
	wj_json_text(json_object_get(order, "stockin_no"), o->no, sizeof(o->no));
	wj_json_text(json_object_get(order, "warehouse_no"), o->wh, sizeof(o->wh));
	order_date(order, o->date);
	o->lines = json_array_size(json_object_get(order, "details_list"));
	uint8_t hash[32];
	if (wj_json_hash(order, hash) == 0)
		wj_hex(hash, sizeof(hash), o->hex, false);
	o->slim = wj_mapping_project(p->mapping, order);
	return o->slim ? 0 : -ENOMEM;
}

static void pv_fetch(wj_preview_t *p);
static void pv_map(wj_preview_t *p);

static void on_pv_fetch_due(uv_timer_t *t)
{
	pv_fetch(t->data);
}

static void pv_retry(wj_preview_t *p, uint64_t ms)
{
	uv_timer_start(&p->run.timer[0], on_pv_fetch_due, ms, 0);
}

/* Whether a failed page is worth asking again; schedules it when so. */
static bool pv_page_again(wj_preview_t *p, const wj_wdt_result_t *res)
{
	if (refused_for_time(res, p->clock.offset_ms) && !p->tries++) {
		pv_retry(p, 0); /* asked again in WDT's time */
		return true;
	}
	switch (res->cls) {
	case WJ_WDT_RATE_LIMITED: {
		int64_t ms = res->retry_after_ms > RATE_PAUSE_MS ? res->retry_after_ms : RATE_PAUSE_MS;
		if (p->tries++ >= WDT_RETRIES)
			return false;
		wj_tbucket_pause_until(&p->wdt_bucket, wj_mono_ms() + (uint64_t)ms);
		pv_retry(p, 0);
		return true;
	}
	case WJ_WDT_TRANSIENT:
		if (p->tries++ >= WDT_RETRIES)
			return false;
		pv_retry(p, 1000u << p->tries);
		return true;
	default:
		return false;
	}
}

static void on_pv_page(wj_wdt_result_t *res, void *arg)
{
	wj_preview_t *p = arg;
	if (run_answer(&p->run))
		return;
	p->st.wdt_calls++;
	if (wj_wdt_clock_add(&p->clock, res->date_ms, res->recv_ms, res->elapsed_ms))
		wj_wdt_set_clock_offset(p->run.wdt, p->clock.offset_ms);
	if (res->cls != WJ_WDT_OK) {
		if (!pv_page_again(p, res))
			pv_finish(p, -EIO, "%s", res->error);
		return;
	}
	p->tries = 0;
	size_t i, n = json_array_size(res->orders);
	const json_t *order;
	json_array_foreach(res->orders, i, order) {
		p->st.read++;
		if (!wj_wdt_order_matches(order, p->flow->params, p->flow->n_params))
			continue;
		if (pv_add(p, order) < 0) {
			pv_finish(p, -ENOMEM, "out of memory");
			return;
		}
	}
	p->win_read += n;
	if (n >= p->flow->page_size) {
		if (p->win_read > MAX_READ) {
			pv_finish(p, -E2BIG, "more than %d orders in 30 days: choose a shorter period",
				  MAX_READ);
			return;
		}
		p->page++;
	} else {
		p->win++;
		p->page = 0;
		p->win_read = 0;
	}
	pv_fetch(p);
}

/* Ask WDT for the next page (within the rate), or go on to the mapping. */
static void pv_fetch(wj_preview_t *p)
{
	int64_t start, end;
	if (wj_preview_window(p->from, p->to, p->win, &start, &end) < 0) {
		pv_map(p);
		return;
	}
	uint64_t wait = wj_tbucket_take(&p->wdt_bucket, wj_mono_ms());
	if (wait) {
		pv_retry(p, wait);
		return;
	}
	if (run_wdt_query(&p->run, p->flow, p->cfg->tz_offset, start, end, p->page,
			  p->flow->page_size, on_pv_page, p) < 0)
		pv_finish(p, -ENOMEM, "cannot start the WDT query");
}

/* ---- preview: lookups ---- */

typedef struct pv_ctx {
	wj_preview_t *p;
	wj_txn_t txn;
	bool txn_ok;
	const char *failed_key; /* the first lookup of this order that failed */
	const char *failed_number;
} pv_ctx_t;

/* The lookup callback of the mapping: known objects, else the store's cache, else asked of
 * Kingdee (queued once per number). */
static const json_t *pv_lookup(void *arg, char kind, const char *number)
{
	pv_ctx_t *x = arg;
	wj_preview_t *p = x->p;
	const wj_config_t *cfg = p->cfg;
	char key[300];
	snprintf(key, sizeof(key), "%c:%s", kind, wj_kingdee_number(cfg, kind, number));
	const json_t *o = json_object_get(p->resolved, key);
	if (o)
		return o;
	if (json_object_get(p->failed, key)) {
		if (!x->failed_key) {
			x->failed_key = json_object_iter_key(json_object_iter_at(p->failed, key));
			x->failed_number = number;
		}
		return NULL;
	}
	wj_val_t v;
	if (x->txn_ok && wj_txn_get(&x->txn, WJ_DB_LOOKUP, key, strlen(key), &v) == 0) {
		json_t *entry = json_loadb(v.data, v.len, 0, NULL);
		json_t *data = json_object_get(entry, "data");
		bool fresh = json_integer_value(json_object_get(entry, "expires_ms")) > wj_now_ms();
		if (data && fresh)
			json_object_set(p->resolved, key, data);
		json_decref(entry);
		if ((o = json_object_get(p->resolved, key)))
			return o;
	}
	if (!json_object_get(p->asked, key)) {
		json_object_set_new(p->asked, key, json_string(number));
		json_array_append_new(p->queue, json_string(key));
	}
	return NULL;
}

static void pv_ctx_begin(wj_preview_t *p, pv_ctx_t *x)
{
	*x = (pv_ctx_t){.p = p};
	x->txn_ok = p->store && wj_txn_begin(p->store, &x->txn, false) == 0;
}

static void pv_ctx_end(pv_ctx_t *x)
{
	if (x->txn_ok)
		wj_txn_abort(&x->txn);
}

static void pv_pump(wj_preview_t *p);

static void on_pv_pump_due(uv_timer_t *t)
{
	pv_pump(t->data);
}

typedef struct pv_lookup_call {
	wj_preview_t *p;
	char key[300];
} pv_lookup_call_t;

static void on_pv_lookup(const wj_jdy_result_t *res, void *arg)
{
	pv_lookup_call_t *l = arg;
	wj_preview_t *p = l->p;
	if (run_answer(&p->run)) {
		free(l);
		return;
	}
	p->inflight--;
	p->st.lookup_calls++;
	if (login_refused(res)) {
		pv_finish(p, -EACCES, "kingdee: %s", res->error);
		free(l);
		return;
	}
	json_int_t tries = json_integer_value(json_object_get(p->retries, l->key));
	bool again = (res->cls == WJ_JDY_RATE_LIMITED || res->cls == WJ_JDY_TRANSIENT ||
		      res->cls == WJ_JDY_UNKNOWN) && tries < LOOKUP_RETRIES;
	if (again) {
		/* every lookup waits: Kingdee asked for it, or is having trouble */
		int64_t ms = res->retry_after_ms > 0 ? res->retry_after_ms : 1000 << tries;
		wj_tbucket_pause_until(&p->jdy_bucket, wj_mono_ms() + (uint64_t)ms);
		json_object_set_new(p->retries, l->key, json_integer(tries + 1));
		json_array_append_new(p->queue, json_string(l->key)); /* asked again, last */
	} else if (res->cls == WJ_JDY_OK && res->data) {
		json_object_set(p->resolved, l->key, res->data);
	} else {
		const char *num = json_string_value(json_object_get(p->asked, l->key)) ?: "";
		const char *what = l->key[0] == 's' ? "store (warehouse_no)" : "material (spec_no)";
		char text[900];
		snprintf(text, sizeof(text), "Kingdee %s %s (WDT %s): %s", what, l->key + 2, num,
			 res->cls == WJ_JDY_OK ? "empty answer" : res->error);
		json_object_set_new(p->failed, l->key,
				    json_pack("{s:s, s:b}", "error", text, "permanent",
					      res->cls == WJ_JDY_PERMANENT || res->cls == WJ_JDY_OK));
	}
	free(l);
	pv_pump(p);
}

static int pv_lookup_send(pv_lookup_call_t *l)
{
	wj_preview_t *p = l->p;
	int r = l->key[0] == 's' ? wj_jdy_store(p->run.jdy, l->key + 2, on_pv_lookup, l)
				 : wj_jdy_material(p->run.jdy, l->key + 2, on_pv_lookup, l);
	if (r == 0) {
		p->run.pending++;
		p->inflight++;
	}
	return r;
}

/* Send the queued lookups, at most kingdee.concurrency at a time within kingdee.rate_limit;
 * once all have answered, map again. */
static void pv_pump(wj_preview_t *p)
{
	if (p->finishing)
		return;
	while (p->next < json_array_size(p->queue) && p->inflight < p->cfg->kingdee.concurrency) {
		uint64_t wait = wj_tbucket_take(&p->jdy_bucket, wj_mono_ms());
		if (wait) {
			uv_timer_start(&p->run.timer[1], on_pv_pump_due, wait, 0);
			return;
		}
		pv_lookup_call_t *l = calloc(1, sizeof(*l));
		const char *key = json_string_value(json_array_get(p->queue, p->next));
		if (!l) {
			pv_finish(p, -ENOMEM, "out of memory");
			return;
		}
		l->p = p;
		snprintf(l->key, sizeof(l->key), "%s", key);
		p->next++;
		if (pv_lookup_send(l) < 0) {
			free(l);
			pv_finish(p, -ENOMEM, "cannot start a Kingdee lookup");
			return;
		}
	}
	if (!p->inflight && p->next == json_array_size(p->queue))
		pv_map(p);
}

/* ---- preview: mapping and the items ---- */

/* The doc of an order in the state (NULL: none, or no state). Caller decrefs. */
static json_t *pv_doc(wj_preview_t *p, pv_ctx_t *x, const pv_order_t *o)
{
	if (!x->txn_ok || !o->id)
		return NULL;
	char key[WJ_DOC_KEY_MAX];
	size_t kl = wj_doc_key(key, p->flow->name, o->id);
	return wj_txn_get_json(&x->txn, WJ_DB_DOCS, key, kl);
}

/* Map every order that may be posted; new numbers to look up are queued. When none was
 * queued, every order has what it needs: report. */
static void pv_map(wj_preview_t *p)
{
	if (p->finishing)
		return;
	size_t queued = json_array_size(p->queue);
	pv_ctx_t x;
	pv_ctx_begin(p, &x);
	for (size_t i = 0; i < p->n; i++) {
		pv_order_t *o = &p->orders[i];
		json_t *doc = pv_doc(p, &x, o);
		const char *state = wj_json_str(doc, "state") ?: "";
		bool skip = o->bad || !strcmp(state, "saved") || !strcmp(state, "dead");
		json_decref(doc);
		if (skip)
			continue;
		int rc;
		char err[8];
		x.failed_key = NULL;
		json_decref(wj_mapping_apply(p->mapping, o->slim, pv_lookup, &x, &rc, err,
					     sizeof(err)));
	}
	pv_ctx_end(&x);
	if (json_array_size(p->queue) > queued)
		pv_pump(p);
	else
		pv_finish(p, 0, NULL);
}

/* What the daemon would do with order o; calls the item callback. */
static void pv_item(wj_preview_t *p, pv_ctx_t *x, const pv_order_t *o)
{
	const wj_config_t *cfg = p->cfg;
	wj_preview_item_t it = {.stockin_no = o->no, .date = o->date, .lines = o->lines,
				.warehouse = o->wh, .reason = ""};
	it.store = *o->wh ? wj_kingdee_number(cfg, 's', o->wh)
			  : "";
	char reason[1200] = "", date[WJ_TIME_LEN];
	char *body_text = NULL;
	json_t *body = NULL, *doc = pv_doc(p, x, o);
	const char *state = wj_json_str(doc, "state") ?: "";
	bool changed = doc && strcmp(wj_json_str(doc, "hash") ?: "", o->hex);
	if (o->bad) {
		it.action = WJ_PREVIEW_PARK;
		snprintf(reason, sizeof(reason), "%s", o->bad);
	} else if (!strcmp(state, "saved")) {
		const char *no = wj_json_str(doc, "bill_no"), *id = wj_json_str(doc, "bill_id");
		it.action = WJ_PREVIEW_POSTED;
		snprintf(reason, sizeof(reason), "bill %s%s%s", no && *no ? "" : "id ",
			 no && *no ? no : id && *id ? id : "?",
			 changed ? "; changed in WDT since: recorded for review" : "");
	} else if (!strcmp(state, "dead")) {
		it.action = WJ_PREVIEW_PARK;
		snprintf(reason, sizeof(reason), "already in the dead letters: %s",
			 wj_json_str(doc, "last_error") ?: wj_json_str(doc, "first_error") ?: "");
	} else {
		int rc;
		char err[900] = "";
		x->failed_key = NULL;
		body = wj_mapping_apply(p->mapping, o->slim, pv_lookup, x, &rc, err, sizeof(err));
		if (rc == 0 && !(body_text = wj_json_dumps_body(body))) {
			it.action = WJ_PREVIEW_ERROR;
			snprintf(reason, sizeof(reason), "out of memory");
		} else if (rc == 0) {
			it.action = WJ_PREVIEW_POST;
			it.body = body_text;
			const char *d = wj_json_str(body, "billdate") ?: wj_json_str(body, "bill_date");
			if (d) {
				snprintf(date, sizeof(date), "%s", d);
				it.date = date;
			}
			if (*state)
				snprintf(reason, sizeof(reason), "%s in the state", state);
		} else if (rc == -EAGAIN && x->failed_key) {
			json_t *f = json_object_get(p->failed, x->failed_key);
			it.action = json_is_true(json_object_get(f, "permanent")) ? WJ_PREVIEW_PARK
										  : WJ_PREVIEW_ERROR;
			snprintf(reason, sizeof(reason), "%s", wj_json_str(f, "error") ?: "");
		} else if (rc == -EAGAIN) {
			it.action = WJ_PREVIEW_ERROR;
			snprintf(reason, sizeof(reason), "a lookup is still unknown");
		} else {
			it.action = WJ_PREVIEW_PARK;
			snprintf(reason, sizeof(reason), "%s", err);
		}
	}
	wj_log_mask(reason);
	it.reason = reason;
	switch (it.action) {
	case WJ_PREVIEW_POST: p->st.post++; break;
	case WJ_PREVIEW_PARK: p->st.park++; break;
	case WJ_PREVIEW_POSTED: p->st.posted++; break;
	case WJ_PREVIEW_ERROR: p->st.error++; break;
	}
	p->item(&it, p->arg);
	free(body_text);
	json_decref(body);
	json_decref(doc);
}

static void pv_emit(wj_preview_t *p)
{
	pv_ctx_t x;
	pv_ctx_begin(p, &x);
	for (size_t i = 0; i < p->n; i++)
		pv_item(p, &x, &p->orders[i]);
	pv_ctx_end(&x);
}

int wj_preview_start(uv_loop_t *loop, const wj_config_t *cfg, const wj_preview_opts_t *o,
		     wj_preview_item_fn item, wj_preview_done_fn done, void *arg,
		     wj_preview_t **out, char *why, size_t why_size)
{
	*out = NULL;
	why[0] = '\0';
	if (!o->flow || o->to < o->from || !item || !done) {
		snprintf(why, why_size, "invalid arguments");
		return -EINVAL;
	}
	wj_preview_t *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(why, why_size, "out of memory");
		return -ENOMEM;
	}
	p->cfg = cfg;
	p->flow = o->flow;
	p->store = o->store;
	p->from = o->from;
	p->to = o->to;
	p->item = item;
	p->done = done;
	p->arg = arg;
	char err[400];
	int r = wj_mapping_compile(o->flow->mapping, cfg->kingdee.api, o->flow->remark_template,
				   &p->mapping, err, sizeof(err));
	if (r < 0) {
		snprintf(why, why_size, "flow %s: %s", o->flow->name, err);
		free(p);
		return r;
	}
	p->seen = json_object();
	p->resolved = json_object();
	p->failed = json_object();
	p->asked = json_object();
	p->queue = json_array();
	p->retries = json_object();
	/* -ENOMEM leaves a bucket in spacing mode: still within the rate */
	if (wj_tbucket_init(&p->wdt_bucket, cfg->wdt.rate_limit, 0) == -EINVAL ||
	    wj_tbucket_init(&p->jdy_bucket, cfg->kingdee.rate_limit, 0) == -EINVAL ||
	    !p->seen || !p->resolved || !p->failed || !p->asked || !p->queue || !p->retries ||
	    run_open(&p->run, loop, cfg, pv_destroy) < 0) {
		snprintf(why, why_size, "cannot initialise the clients");
		pv_destroy(&p->run);
		return -ENOMEM;
	}
	pv_fetch(p);
	*out = p;
	return 0;
}

void wj_preview_cancel(wj_preview_t *p)
{
	if (p)
		run_stop(&p->run);
}
