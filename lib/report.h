/* The HTML status report: one self-contained page (inline CSS and SVG, no script, no link to
 * anything outside it), readable offline and as an e-mail attachment.
 *
 * Its charts carry their numbers for a checker: each hour of a chart is an SVG <g> with
 * data-hour="YYYY-MM-DD HH:00" (configured timezone) and the counts it draws (data-saved and
 * data-dead for bills, data-peak for quota use); each bar is a <rect> with data-count, and its
 * height (viewBox units) is data-count × the chart's data-scale (the <svg> element's attribute),
 * printed with three decimals. The quota charts' limit line has data-limit (calls a minute). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/config.h"
#include "lib/history.h"
#include "lib/store.h"
#include "lib/util.h"

#define WJ_REPORT_DAYS_DEFAULT 7

typedef struct wj_report_opts {
	bool en;         /* English; else Chinese */
	unsigned days;   /* 1..WJ_HISTORY_DAYS */
	int64_t now;     /* epoch seconds: the report's end */
} wj_report_opts_t;

/* Append the page to out. status: the daemon's status (status.json), or NULL when there is
 * none (the daemon is shown stopped). Every text taken from the state or the status is made
 * printable, masked of the configured secrets and escaped. 0 or -errno (-ENOMEM; a store
 * failure: wj_store_strerror() says why). */
int wj_report_html(wj_store_t *s, const wj_config_t *cfg, json_t *status,
		   const wj_report_opts_t *o, wj_buf_t *out);

/* Render the page and write it to path atomically (wj_write_file_atomic), mode 0640: it holds
 * error texts, like status.json. 0 or -errno. */
int wj_report_write(const char *path, wj_store_t *s, const wj_config_t *cfg, json_t *status,
		    const wj_report_opts_t *o);
