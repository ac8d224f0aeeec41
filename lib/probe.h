/* Read-only runs against both services, before going live and at every start:
 *
 * - the connection check (`wdt2jdyctl check --online`, and the daemon's start-up check): one
 *   WDT query, the Kingdee login (token, account set), one material and one store lookup;
 * - the preview (`wdt2jdyctl preview`): what the daemon would do with the orders of a period,
 *   and the exact bodies it would send.
 *
 * Neither writes anything anywhere: no state, no file, no token kept. Each run has its own HTTP
 * and API clients on the caller's loop, so the Kingdee login is a fresh one whatever token the
 * daemon holds, and a run never waits for nor delays the daemon's own calls. Error texts are
 * the services' own, with every credential masked by the API clients. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lib/config.h"
#include "lib/mapping.h"
#include "lib/store.h"

/* ---- the connection check ---- */

typedef enum {
	WJ_CHECK_WDT,      /* the first flow's method over the last hour, page_size 1 */
	WJ_CHECK_LOGIN,    /* gateway: push_app_authorize; password: the account login */
	WJ_CHECK_TOKEN,    /* gateway: kingdee_auth_token; password: the access_token */
	WJ_CHECK_ACCOUNT,  /* password: the account set (gateway: skipped, the instance is it) */
	WJ_CHECK_MATERIAL, /* one material lookup */
	WJ_CHECK_STORE,    /* one store (warehouse) lookup */
	WJ_CHECK_STEPS
} wj_check_step_t;

typedef enum {
	WJ_STEP_OK,
	WJ_STEP_FAILED,  /* detail: the service's error, verbatim but for masked credentials */
	WJ_STEP_SKIPPED, /* not applicable or nothing to look up; not a failure */
	WJ_STEP_NOT_RUN, /* an earlier step failed; counts as failed */
} wj_step_outcome_t;

typedef struct wj_check_result {
	wj_step_outcome_t outcome[WJ_CHECK_STEPS];
	char detail[WJ_CHECK_STEPS][640];
	bool clock_known;        /* WDT's answer had a Date header */
	int64_t clock_offset_ms; /* WDT's clock minus this host's: the middle of what the Date
				  * (whole seconds, stamped during the exchange) allows, so within
				  * half a second plus half the exchange's time */
	int64_t clock_margin_ms; /* how far the true offset may be from it */
} wj_check_result_t;

typedef struct wj_check_opts {
	const char *material; /* WDT spec_no to look up (through kingdee.material_map); NULL: the
			       * first entry of kingdee.material_map, else the step is skipped */
	const char *store;    /* WDT warehouse_no, the same with kingdee.store_map */
	struct wj_engine *engine; /* the daemon's (borrowed, must outlive the run): the run starts
				   * from the token in its state and hands it a new one, so a
				   * start adds no login, and its calls count in its status.
				   * NULL: a fresh login, nothing counted */
} wj_check_opts_t;

typedef struct wj_check wj_check_t;

/* Called once, from the loop, when every step has an outcome (never after wj_check_cancel). */
typedef void (*wj_check_cb)(const wj_check_result_t *res, void *arg);

/* Start the check on loop. cfg and o's strings must outlive the run (or its cancel).
 * 0 and *out set (the run frees itself after cb), or -ENOMEM / -EINVAL (cb is not called). */
int wj_check_start(uv_loop_t *loop, const wj_config_t *cfg, const wj_check_opts_t *o,
		   wj_check_cb cb, void *arg, wj_check_t **out);
/* Stop a run: cb is not called; requests in flight are aborted and the memory released once
 * the loop has run. NULL is ignored. */
void wj_check_cancel(wj_check_t *c);

/* "wdt query", "kingdee login", ... */
const char *wj_check_step_name(wj_check_step_t s);
/* true when no step failed (skipped steps pass). */
bool wj_check_passed(const wj_check_result_t *res);
/* The first failure as "kingdee login: <detail>" into buf; "" when the check passed. */
void wj_check_failure(const wj_check_result_t *res, char *buf, size_t size);

/* Which login step failed, from the Kingdee client's login error (wj_jdy_login_error):
 * gateway "authorize: ..." → WJ_CHECK_LOGIN, "token: ..." → WJ_CHECK_TOKEN; password
 * "login: ..." → WJ_CHECK_LOGIN, the account sets → WJ_CHECK_ACCOUNT; anything else (no
 * connection before any step, out of memory) → WJ_CHECK_LOGIN. */
wj_check_step_t wj_check_login_step(wj_jdy_auth_t auth, const char *login_error);

/* ---- the preview ---- */

typedef enum {
	WJ_PREVIEW_POST,   /* the daemon would save this body */
	WJ_PREVIEW_PARK,   /* it would park the order in the dead letters: reason */
	WJ_PREVIEW_POSTED, /* its bill exists already (the state says so): reason names it */
	WJ_PREVIEW_ERROR,  /* cannot tell: a lookup failed for a reason that may pass */
} wj_preview_action_t;

typedef struct wj_preview_item {
	const char *stockin_no;
	const char *date;      /* the bill's date as mapped, else the order's modified time */
	size_t lines;          /* details_list entries */
	const char *warehouse; /* the order's warehouse_no ("" when none) */
	const char *store;     /* the Kingdee store number it maps to ("" when none) */
	wj_preview_action_t action;
	const char *reason;    /* PARK, POSTED, ERROR: why; "" for POST (or a note: "queued") */
	const char *body;      /* POST: the exact text the daemon would send, else NULL */
} wj_preview_item_t;

typedef struct wj_preview_stats {
	size_t read;     /* orders WDT listed in the period */
	size_t eligible; /* of them, eligible for the flow (distinct stock-ins) */
	size_t post, park, posted, error;
	unsigned wdt_calls, lookup_calls;
} wj_preview_stats_t;

typedef struct wj_preview_opts {
	const wj_flow_cfg_t *flow; /* one of cfg's flows */
	int64_t from, to;          /* epoch seconds, both inclusive, on the orders' modified time */
	wj_store_t *store;         /* the daemon's state, read only; NULL when there is none */
} wj_preview_opts_t;

typedef struct wj_preview wj_preview_t;

/* Called for each eligible order, in the order WDT listed them, once all are known. */
typedef void (*wj_preview_item_fn)(const wj_preview_item_t *it, void *arg);
/* Called once at the end: err 0, or -EIO with why (WDT refused, could not be read...). */
typedef void (*wj_preview_done_fn)(int err, const char *why, const wj_preview_stats_t *st,
				   void *arg);

/* Start a preview on loop: reads WDT for [from, to] in windows of at most 30 days, every page,
 * with the flow's params, within the configured rates; maps each eligible order with the
 * flow's mapping, the lookups read from the store's cache when it holds them (unexpired) and
 * else asked of Kingdee. cfg and o->store must outlive the run. 0 and *out, or -errno (no
 * callback), with why. */
int wj_preview_start(uv_loop_t *loop, const wj_config_t *cfg, const wj_preview_opts_t *o,
		     wj_preview_item_fn item, wj_preview_done_fn done, void *arg,
		     wj_preview_t **out, char *why, size_t why_size);
/* Stop a run: no callback after this; memory released once the loop has run. NULL ignored. */
void wj_preview_cancel(wj_preview_t *p);

/* Window i of those of at most 30 days (WDT's limit, both ends inclusive) that cover
 * [from, to]: [from + i * 30 days, min(that + 30 days - 1 s, to)]. 0, or -ENOENT when i is
 * past the last one. */
int wj_preview_window(int64_t from, int64_t to, size_t i, int64_t *start, int64_t *end);
