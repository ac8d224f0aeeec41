/* The sync engine: pollers (WDT → queue) and the dispatcher (queue → Kingdee), on one loop.
 *
 * The daemon owns the loop, the configuration and the store; the engine borrows them. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "lib/config.h"
#include "lib/http.h"
#include "lib/jdy.h"
#include "lib/store.h"
#include "lib/wdt.h"

typedef struct wj_engine wj_engine_t;

/* Create and start. cfg and store must outlive the engine (see wj_engine_reload for cfg).
 * 0 or -errno with a message in err. */
int wj_engine_new(uv_loop_t *loop, const wj_config_t *cfg, wj_store_t *store, wj_engine_t **out,
		  char *err, size_t errsize);

/* Apply a new configuration (already validated). The engine switches to cfg; the caller frees
 * the old one after this returns. */
void wj_engine_reload(wj_engine_t *e, const wj_config_t *cfg);

/* Stop taking work; let requests in flight finish for at most drain_ms; commit; then call done.
 * done is called from the loop. */
void wj_engine_stop(wj_engine_t *e, uint64_t drain_ms, void (*done)(void *arg), void *arg);

/* Status object for status.json (caller owns the reference). */
json_t *wj_engine_status(wj_engine_t *e);

/* Record the last error (shown in status.json with its time; secrets masked). */
void wj_engine_set_error(wj_engine_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The outcome of a start-up check (lib/probe.h): why it failed, or NULL when it passed. A
 * failure becomes the last error; the first one after a pass raises the degraded alert. */
void wj_engine_set_degraded(wj_engine_t *e, const char *why);
/* Whether the last start-up check failed. */
bool wj_engine_degraded(const wj_engine_t *e);
/* How many outages of either service have ended (calls failed, then it answered again): a
 * degraded daemon checks again when this moves rather than wait for its next attempt. */
unsigned wj_engine_recoveries(const wj_engine_t *e);

/* One-line summary for the periodic log status line and sd_notify STATUS=. */
void wj_engine_summary(wj_engine_t *e, char *buf, size_t size);

/* The options of the HTTP client of WDT (kingdee false) or Kingdee, and of the two API clients,
 * as the configuration sets them (strings borrowed from cfg). */
void wj_engine_http_opts(const wj_config_t *cfg, bool kingdee, wj_http_opts_t *o);
void wj_engine_wdt_opts(const wj_config_t *cfg, wj_wdt_opts_t *o);
void wj_engine_jdy_opts(const wj_config_t *cfg, wj_jdy_opts_t *o);

/* Send alert events through a (borrowed; NULL: none) from now on. */
struct wj_alerts;
void wj_engine_set_alerts(wj_engine_t *e, struct wj_alerts *a);

/* Free after stop completed; closes uv handles (run the loop once more afterwards). */
void wj_engine_free(wj_engine_t *e);
