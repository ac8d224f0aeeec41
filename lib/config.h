/* Configuration: JSON with // and # whole-line comments, strictly validated.
 *
 * Every error names the file and line:column (syntax) or the JSON path (values), e.g.
 *   /etc/wdt2jdy/wdt2jdy.json: flows[0].cursor.window: expected a duration like "30s"
 * Unknown keys are errors. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* A rate "N/s" or "N/min": count events per period_ms. */
typedef struct wj_rate {
	unsigned count;
	uint64_t period_ms;
} wj_rate_t;

typedef enum { WJ_WDT_QIMEN = 0, WJ_WDT_OPENAPI2 = 1 } wj_wdt_api_t;
typedef enum { WJ_JDY_V1 = 1, WJ_JDY_V2 = 2 } wj_jdy_api_t;
/* How the Kingdee client logs in: through the API gateway (app authorisation, app-token) or
 * with the classic account login of the V1 API (username and password, access_token). */
typedef enum { WJ_JDY_AUTH_GATEWAY = 0, WJ_JDY_AUTH_PASSWORD = 1 } wj_jdy_auth_t;

typedef struct wj_kv {
	char *key;
	char *value;
} wj_kv_t;

typedef struct wj_flow_cfg {
	char *name;
	int priority;           /* default 1; lower runs first */
	int backfill_priority;  /* default priority + 10 */
	char *method;           /* source.method, default "wdt.stockin.order.query" */
	wj_kv_t *params;        /* source.params (strings), default order_type=4, status=80 */
	size_t n_params;
	int64_t cursor_start;   /* epoch seconds, parsed in the configured timezone */
	uint64_t window_ms;     /* default 1h, at most 30d */
	uint64_t lag_ms;        /* default 1m */
	uint64_t overlap_ms;    /* default 5m */
	uint64_t interval_ms;   /* default 30s */
	unsigned page_size;     /* cursor.page_size, default 100, 1..100 */
	unsigned split_threshold; /* cursor.split_threshold, default 1000 records per window */
	json_t *mapping;        /* NULL for "default", else the mapping object (owned) */
	char *remark_template;  /* default "WDT:{stockin_no}" */
	bool skip_existing;     /* skip_existing "search": before posting, adopt a bill already in
				 * Kingdee that carries the stock-in number; default "off" */
} wj_flow_cfg_t;

/* Alert events (alerts[].events); bit i of wj_alert_cfg_t.events is event i. */
typedef enum {
	WJ_EV_DEAD_LETTER = 0, /* orders parked in the dead-letter list */
	WJ_EV_REVIEW,          /* orders changed after their bill was saved */
	WJ_EV_AUTH_FAILURE,    /* a service refused the credentials */
	WJ_EV_UNREACHABLE,     /* a service failing for longer than alerts_after */
	WJ_EV_LAG,             /* a flow's cursor behind now by more than alerts_lag */
	WJ_EV_START,
	WJ_EV_STOP,
	WJ_EV_DEGRADED,        /* the start-up check of a service failed */
	WJ_EV_COUNT
} wj_alert_event_t;

typedef enum { WJ_ALERT_DINGTALK, WJ_ALERT_WECOM, WJ_ALERT_FEISHU, WJ_ALERT_WEBHOOK } wj_alert_kind_t;

typedef struct wj_alert_cfg {
	wj_alert_kind_t kind;
	char *url;       /* the robot's webhook URL (it carries the robot's token: a secret) */
	char *secret;    /* signing secret; NULL when the robot does not sign */
	unsigned events; /* bit mask over wj_alert_event_t; default every event */
} wj_alert_cfg_t;

typedef struct wj_config {
	char *path;             /* file it was read from */
	json_t *doc;            /* the parsed document (comments stripped), for reload diffs */
	char *state_dir;        /* default /var/lib/wdt2jdy */
	uint64_t map_size;      /* store.map_size, default 64MiB: initial LMDB map */
	uint64_t map_max;       /* store.map_max, default 4GiB: growth limit */
	char *log_file;         /* NULL → stderr */
	int log_level;          /* WJ_LOG_* from lib/log.h, default info */
	char *status_file;      /* default <state_dir>/status.json; "" (kept as "") disables */
	char *metrics_file;     /* NULL when empty/absent */
	char *html_file;        /* status.html_file: the HTML report, rewritten every interval;
				 * NULL when empty/absent */
	uint64_t status_interval_ms; /* default 10s */
	int tz_offset;          /* timezone, seconds east of UTC, default +08:00 */
	char *timezone;         /* as written, e.g. "+08:00" */
	uint64_t drain_timeout_ms; /* default 10s */
	bool allow_insecure_http;  /* accept http:// service URLs (tests, demo); default false */

	struct {
		wj_wdt_api_t api;
		char *url, *sid, *app_key, *app_secret, *target_app_key;
		char *ca_file;
		wj_rate_t rate_limit;   /* default 60/min */
		unsigned concurrency;   /* default 2 */
		uint64_t timeout_ms;    /* default 30s */
	} wdt;

	struct {
		wj_jdy_api_t api;
		wj_jdy_auth_t auth;     /* default gateway */
		char *url, *client_id, *client_secret;
		char *outer_instance_id; /* gateway auth only */
		char *username, *password, *account_id; /* password auth only */
		char *ca_file;
		wj_rate_t rate_limit;   /* default 500/min */
		unsigned concurrency;   /* default 8 */
		uint64_t timeout_ms;    /* default 30s */
		uint64_t lookup_ttl_ms; /* default 1d */
		wj_kv_t *store_map;     /* WDT warehouse_no → Kingdee store number */
		size_t n_store_map;
		wj_kv_t *material_map;  /* WDT spec_no → Kingdee material number */
		size_t n_material_map;
	} kingdee;

	struct {
		uint64_t max_body;           /* http.max_body, default 32MiB: largest answer */
		uint64_t max_retry_after_ms; /* http.max_retry_after, default 1h: longest pause */
	} http;

	struct {
		unsigned capacity;      /* default 10000 */
		unsigned max_attempts;  /* default 12 */
		uint64_t backoff_initial_ms; /* default 1s */
		uint64_t backoff_max_ms;     /* default 10m */
	} queue;

	wj_flow_cfg_t *flows;
	size_t n_flows;

	wj_alert_cfg_t *alerts;      /* alerts[] */
	size_t n_alerts;
	uint64_t alerts_after_ms;    /* default 10m: how long a service may fail before an alert */
	uint64_t alerts_interval_ms; /* default 10m: at most one message per event kind per interval */
	uint64_t alerts_lag_ms;      /* default 2h: flow lag that raises an alert */
	bool alerts_en;              /* alerts_lang "en" (default "zh") */

	const char **secret_list;    /* backing store of wj_config_secrets() */
} wj_config_t;

/* Error list collected while loading; each entry is a complete message. */
typedef struct wj_errors {
	char **msg;
	size_t n;
} wj_errors_t;

void wj_errors_free(wj_errors_t *e);
/* Append one formatted message (copied). 0 or -ENOMEM. */
int wj_errors_addf(wj_errors_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Load and validate. Returns the config or NULL with every problem in *errs
 * (caller frees both). Secrets from *_file and *_credential are read here. */
wj_config_t *wj_config_load(const char *path, wj_errors_t *errs);
/* Parse from a string; `name` is used as the file name in messages. */
wj_config_t *wj_config_parse(const char *text, const char *name, wj_errors_t *errs);
/* For commands that only read the state (wdt2jdyctl status, dlq list, ...): no secret is read
 * (KEY_file and KEY_credential are left unopened; inline ones are kept, for masking), and a
 * file that does not validate still gives what it could say - every problem is listed in
 * *errs, a value in error keeps its default, a flow without a valid name is left out. NULL
 * only when the file cannot be read or is not a JSON object (*errs says why). Caller frees. */
wj_config_t *wj_config_load_paths(const char *path, wj_errors_t *errs);
wj_config_t *wj_config_parse_paths(const char *text, const char *name, wj_errors_t *errs);
void wj_config_free(wj_config_t *cfg);

/* The configured secret values (for log masking). NULL-terminated, valid while cfg lives. */
const char *const *wj_config_secrets(const wj_config_t *cfg);

/* Name of an alert event ("dead_letter", ...). */
const char *wj_alert_event_name(wj_alert_event_t ev);

/* Parse "N/s" or "N/min". 0 or -EINVAL. */
int wj_rate_parse(const char *s, wj_rate_t *rate);
