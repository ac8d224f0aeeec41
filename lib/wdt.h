/* WDT (旺店通企业版) client: stock-in order queries over the Qimen router or native openapi2.
 *
 * Pure parts (signatures, request building, response parsing and classification) are separate
 * from the asynchronous call, so they can be tested and reused by wdt2jdyctl. Rate limiting and
 * retries are the caller's job; a call is one HTTP exchange. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/config.h"
#include "lib/http.h"
#include "lib/util.h"

/* WDT error code: calls too frequent (系统调用频繁). */
#define WJ_WDT_ERR_RATE 1012
/* Minimum pause after a rate-limit answer. */
#define WJ_WDT_RATE_BACKOFF_MS 30000

typedef struct wj_wdt_opts {
	wj_wdt_api_t api;
	const char *url;            /* qimen: router URL; openapi2: base URL ending in /openapi2/ */
	const char *sid, *app_key, *app_secret;
	const char *target_app_key; /* qimen only; NULL or "" → not sent */
	uint64_t timeout_ms;        /* per request; 0 → 30 s */
	int tz_offset;              /* seconds east of UTC for Qimen timestamps */
} wj_wdt_opts_t;

typedef enum {
	WJ_WDT_OK,
	WJ_WDT_RATE_LIMITED, /* wait retry_after_ms, pause the endpoint */
	WJ_WDT_AUTH,         /* signature, app key or sid refused */
	WJ_WDT_TRANSIENT,    /* network, 5xx, malformed answer: retry later */
	WJ_WDT_PERMANENT,    /* refused for good (bad parameters) */
} wj_wdt_class_t;

typedef struct wj_wdt_result {
	wj_wdt_class_t cls;
	long http_status;       /* 0 when no response was received */
	int64_t total_count;    /* records in the whole window (all pages) as the answer says;
				 * -1 when absent, null or not a count (WDT gives it with page_no
				 * 0 only) */
	json_t *orders;         /* array of objects, owned by the result; NULL unless cls == OK */
	int64_t date_ms;        /* the answer's Date header (epoch ms, whole seconds), -1 none */
	int64_t recv_ms;        /* this host's wall clock when the answer arrived (epoch ms) */
	uint64_t elapsed_ms;    /* how long the exchange took */
	int64_t retry_after_ms; /* -1 none; for RATE_LIMITED at least WJ_WDT_RATE_BACKOFF_MS */
	char code[32];          /* the non-zero errorcode/code as text, "" when none */
	char error[512];        /* "wdt: ..." reason, "" on success; never contains the secret */
	void *prep;             /* what the query's prep function made of it (see wj_wdt_query) */
} wj_wdt_result_t;

/* ---- signatures (pure) ----
 * Parameters with the key "sign" or an empty value are skipped; keys sorted bytewise. */

/* Qimen: MD5(secret + k1 v1 k2 v2 ... + secret), uppercase hex. Values made only of whitespace
 * (as Java's Character.isWhitespace counts it: ASCII and Unicode spaces, not no-break spaces)
 * are skipped too: the TOP SDKs disagree on them, so they are never sent either. */
void wj_wdt_sign_qimen(const wj_kv_t *p, size_t n, const char *secret, char out[33]);
/* openapi2: MD5(pack + secret), lowercase hex (see wj_wdt_openapi2_pack). */
void wj_wdt_sign_openapi2(const wj_kv_t *p, size_t n, const char *secret, char out[33]);
/* The openapi2 string before the secret is appended: pairs "LL-key:VVVV-value" joined by ';',
 * LL/VVVV the lengths in Unicode code points (2 and 4 digits). Appended to out.
 * 0 or -ENOMEM. Exposed for tests and wdt2jdyctl. */
int wj_wdt_openapi2_pack(const wj_kv_t *p, size_t n, wj_buf_t *out);

/* True when a Qimen value is left out of the request and its signature: NULL, empty or only
 * whitespace (see wj_wdt_sign_qimen). */
bool wj_wdt_qimen_blank(const char *value);

/* ---- request building (pure) ----
 * Resets url and body, then fills them: the POST URL and the form-urlencoded body, system
 * parameters and sign included; now is the current epoch in seconds (WDT's clock). Parameters
 * with an empty value (Qimen: blank, see wj_wdt_qimen_blank) are neither sent nor signed.
 * Business parameters must not repeat a system parameter. 0, -EINVAL (bad method or options)
 * or -ENOMEM. */
int wj_wdt_build(const wj_wdt_opts_t *o, const char *method, const wj_kv_t *params, size_t n,
		 int64_t now, wj_buf_t *url, wj_buf_t *body);

/* ---- response parsing (pure) ----
 * Parses and classifies one answer: {"response": {...}} or {"error_response": {...}} (Qimen) or
 * top level (openapi2). An error is a non-zero errorcode/code (number or string) or
 * flag "failure". Classes: HTTP 429 or code 1012 → RATE_LIMITED; signature, app key or sid
 * errors (openapi2 1004..1007) → AUTH; HTTP 5xx/408, malformed or inconsistent answers,
 * isp.* and internal errors → TRANSIENT; other errors → PERMANENT. total_count is optional
 * (-1 when absent, null or unusable); a missing or null stockin_list is an empty page unless
 * total_count says there are records. The body is first passed through wj_wdt_repair, so one
 * order with a broken name or an out-of-range number does not make the page unreadable.
 * out is always filled, and must be cleared with wj_wdt_result_clear. retry_after_ms: from the
 * Retry-After header, -1 when absent. Returns 0 when out->cls == WJ_WDT_OK, else -EIO. */
int wj_wdt_parse(long http_status, const char *body, size_t len, int64_t retry_after_ms,
		 wj_wdt_result_t *out);
void wj_wdt_result_clear(wj_wdt_result_t *res);

/* Make a WDT answer parseable without changing what parses already: every invalid UTF-8
 * sequence becomes U+FFFD (anywhere), and every number token that jansson cannot hold (an
 * integer beyond 64 bits, a real whose magnitude overflows a double: 1e400,
 * 99999999999999999999) becomes a JSON string with the token's exact text. Other numbers,
 * strings and structure are copied byte for byte, so an order's canonical text and content hash
 * do not change. Returns 0 when in needs no change (out untouched), 1 when the repaired text is
 * in out, or -ENOMEM. */
int wj_wdt_repair(const char *in, size_t len, wj_buf_t *out);

/* ---- order helpers ---- */

/* stockin_id as text (falls back to details_list[0].stockin_id), usable as the order's key.
 * 0, or why it is not: -ENOENT missing, -EINVAL empty or not a scalar, -EILSEQ a control
 * character or a space, -ENOSPC size bytes or longer, -ERANGE a number that is not an integer
 * within 64 bits ("99999999999999999999", "1e400", "12.5"). id is "" on failure. */
int wj_wdt_order_key(const json_t *order, char *id, size_t size);
/* What an error of wj_wdt_order_key says about the stockin_id ("missing", "empty", ...). */
const char *wj_wdt_key_problem(int err);
/* Whether the order has the order_type and status that the query's params ask for (a param
 * absent from params matches anything): what makes an order of a flow eligible. */
bool wj_wdt_order_matches(const json_t *order, const wj_kv_t *params, size_t n);
/* "modified" read in tz_offset (falls back to the latest details_list[].modified).
 * 0, -ENOENT (missing) or -EINVAL (not a "YYYY-MM-DD HH:MM:SS" time). */
int wj_wdt_order_modified(const json_t *order, int tz_offset, int64_t *epoch);

/* ---- WDT's clock ----
 * The offset of WDT's clock from this host's, from the Date header of WDT's answers (whole
 * seconds). An answer stamped with date D, that arrived at this host's time R after an exchange
 * of E ms, bounds the offset: at least D − R (the Date was stamped before the answer arrived),
 * less than D + 1 s + E − R. The estimate is the largest lower bound of the last
 * WJ_WDT_CLOCK_SAMPLES answers, so it never puts WDT's now later than it is; an answer whose
 * upper bound is below the estimate (WDT's clock went back) drops the older answers. */
#define WJ_WDT_CLOCK_SAMPLES 64

typedef struct wj_wdt_clock {
	int64_t low[WJ_WDT_CLOCK_SAMPLES]; /* lower bounds of the offset (ms), a ring */
	unsigned n, next;
	int64_t offset_ms; /* the estimate; 0 while no answer had a Date */
} wj_wdt_clock_t;

/* Add one answer (date_ms -1: no Date header, ignored). true when the estimate changed. */
bool wj_wdt_clock_add(wj_wdt_clock_t *c, int64_t date_ms, int64_t recv_ms, uint64_t elapsed_ms);
/* true once an answer had a Date header. */
bool wj_wdt_clock_known(const wj_wdt_clock_t *c);
/* WDT's now in epoch seconds, never later than it is (the host's clock while unknown). */
int64_t wj_wdt_clock_now(const wj_wdt_clock_t *c, int64_t host_now_ms);

/* ---- asynchronous client ---- */

typedef struct wj_wdt wj_wdt_t;

/* Called exactly once per query, from the loop. The callback may take res->orders (set it to
 * NULL); everything else in res is released after it returns. */
typedef void (*wj_wdt_cb)(wj_wdt_result_t *res, void *arg);
/* Runs on a worker thread after a page parsed (cls OK), before the callback: work on the
 * orders that needs nothing of the loop's (hashing, serialising), its output in res->prep,
 * which the callback then owns. It must touch only res and data no other thread changes. */
typedef void (*wj_wdt_prep_fn)(wj_wdt_result_t *res, void *arg);

/* http is borrowed and must outlive the client; o's strings are copied. NULL on ENOMEM. */
wj_wdt_t *wj_wdt_new(wj_http_t *http, const wj_wdt_opts_t *o);
/* Replace the options (reload); queries already sent are unaffected. On allocation failure
 * the old options stay. */
void wj_wdt_set_opts(wj_wdt_t *w, const wj_wdt_opts_t *o);
/* WDT's clock minus this host's, in ms: the timestamps of later queries are in WDT's clock (the
 * server refuses stale ones). 0 until set. */
void wj_wdt_set_clock_offset(wj_wdt_t *w, int64_t offset_ms);
/* Build, sign and POST one query. 0 (cb will be called) or -EINVAL/-ENOMEM (it will not).
 * The answer is parsed on the loop's thread pool (with prep, if not NULL), then cb runs on the
 * loop. */
int wj_wdt_query(wj_wdt_t *w, const char *method, const wj_kv_t *params, size_t n,
		 wj_wdt_prep_fn prep, wj_wdt_cb cb, void *arg);
/* Free the client. Queries in flight still complete through the http client and their callbacks
 * run; they do not touch the freed client. */
void wj_wdt_free(wj_wdt_t *w);
