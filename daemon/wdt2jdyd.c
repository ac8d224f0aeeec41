/* wdt2jdyd: keeps Kingdee gain bills in step with WDT stock-take surplus stock-ins.
 *
 * Runs in the foreground (systemd style). One thread, one libuv loop.
 *   SIGHUP           reopen the log, reload the configuration (a bad one is refused)
 *   SIGTERM, SIGINT  stop polling, drain requests in flight, commit, exit 0 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "lib/alert.h"
#include "lib/config.h"
#include "lib/engine.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/notify.h"
#include "lib/probe.h"
#include "lib/report.h"
#include "lib/store.h"
#include "lib/util.h"
#include "wj_build.h"

enum { EXIT_CONFIG = 78, EXIT_CANTCREAT = 73 };

/* The start-up check is retried after a failure: from 30 s, doubling, up to 10 min. */
#define CHECK_RETRY_MS 30000
#define CHECK_RETRY_MAX_MS 600000

/* status.json and the metrics file: the daemon's user and group only (they hold error texts). */
#define STATUS_MODE 0640

static const char *MOD = "daemon";

static struct {
	uv_loop_t loop;
	wj_config_t *cfg;
	wj_store_t *store;
	wj_engine_t *engine;
	wj_alerts_t *alerts;
	uv_signal_t sig_hup, sig_term, sig_int;
	uv_timer_t status_timer, watchdog_timer;
	int64_t started;
	uint64_t last_status_line;
	bool stopping;
	bool stopped;          /* the final status is written: no more updates */
	bool html_failed;      /* writing status.html_file failed (said once) */
	char start_error[512]; /* why the start failed, for the final status */
	unsigned reloads, reload_failures;
	char last_reload_error[512];
	/* the start-up check (run again after each reload) */
	wj_check_t *check;        /* the run under way, or NULL */
	uv_timer_t check_timer;   /* the next attempt after a failure */
	uint64_t check_retry_ms;  /* the pause before it */
	unsigned check_recoveries; /* the engine's outages ended, when the check last failed */
	unsigned check_failures;  /* failed attempts in a row */
	bool check_passed;
	char check_error[700];    /* why ("kingdee login: ...") */
	char check_next[WJ_TIME_LEN];
} d;

static void usage(FILE *f)
{
	fprintf(f, "usage: wdt2jdyd [-c FILE] [--check] [--version]\n"
		   "  -c, --config FILE  configuration (default %s)\n"
		   "  -n, --check        validate the configuration, print \"configuration OK\"\n"
		   "  -V, --version      print the version\n",
		WJ_DEFAULT_CONFIG);
}

static void print_errors(const wj_errors_t *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		fprintf(stderr, "%s\n", errs->msg[i]);
}

/* ---- status ---------------------------------------------------------------------------- */

/* Prometheus text exposition for node_exporter's textfile collector. Every series carries
 * state_dir="…", which tells the daemons of one host apart (two instances in one textfile
 * directory would otherwise export the same series, which the collector refuses). */
typedef struct prom {
	wj_buf_t b;
	char labels[600]; /* state_dir="…", escaped */
} prom_t;

static void prom_labels(prom_t *m, const char *state_dir)
{
	size_t k = (size_t)snprintf(m->labels, sizeof(m->labels), "state_dir=\"");
	for (const char *c = state_dir; *c && k + 4 < sizeof(m->labels); c++) {
		if (*c == '\\' || *c == '"' || *c == '\n') {
			m->labels[k++] = '\\';
			m->labels[k++] = *c == '\n' ? 'n' : *c;
		} else {
			m->labels[k++] = *c;
		}
	}
	m->labels[k++] = '"';
	m->labels[k] = '\0';
}

static void metric(prom_t *m, const char *name, const char *type, const char *help)
{
	wj_buf_printf(&m->b, "# HELP wdt2jdy_%s %s\n# TYPE wdt2jdy_%s %s\n", name, help, name, type);
}

/* One sample: extra is "" or more labels, e.g. "flow=\"pd-gain\"". */
static void sample(prom_t *m, const char *name, const char *extra, long long v)
{
	wj_buf_printf(&m->b, "wdt2jdy_%s{%s%s%s} %lld\n", name, m->labels, *extra ? "," : "", extra,
		      v);
}

static long long jint(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

static void write_metrics(json_t *st, bool up, int64_t now)
{
	const char *path = d.cfg->metrics_file;
	if (!path || !path[0])
		return;
	prom_t m = {0};
	char l[256];
	prom_labels(&m, d.cfg->state_dir);
	metric(&m, "up", "gauge", "1 while the daemon runs, 0 once it has stopped.");
	sample(&m, "up", "", up);
	metric(&m, "degraded", "gauge",
	       "1 while the start-up check fails (status.json: check, last_error), else 0.");
	sample(&m, "degraded", "", up && d.engine && wj_engine_degraded(d.engine));
	metric(&m, "status_updated_seconds", "gauge",
	       "When this file was written (Unix time): it stops moving when the daemon dies.");
	sample(&m, "status_updated_seconds", "", now);
	metric(&m, "endpoint_up", "gauge",
	       "0 while calls to the service get no usable answer (unreachable, credentials refused).");
	const char *ep;
	json_t *o, *v;
	json_object_foreach(json_object_get(st, "endpoints"), ep, o) {
		snprintf(l, sizeof(l), "endpoint=\"%s\"", ep);
		sample(&m, "endpoint_up", l, json_is_true(json_object_get(o, "up")));
	}
	metric(&m, "endpoint_failures", "gauge", "Calls to the service failed in a row.");
	json_object_foreach(json_object_get(st, "endpoints"), ep, o) {
		snprintf(l, sizeof(l), "endpoint=\"%s\"", ep);
		sample(&m, "endpoint_failures", l, jint(o, "failures"));
	}
	json_t *q = json_object_get(st, "queue");
	metric(&m, "bills_posted_total", "counter", "Gain bills saved in Kingdee.");
	sample(&m, "bills_posted_total", "", jint(st, "posted"));
	metric(&m, "attempts_failed_total", "counter", "Save attempts that failed and were retried.");
	sample(&m, "attempts_failed_total", "", jint(st, "failed"));
	metric(&m, "dead_letters", "gauge", "Orders parked in the dead-letter list.");
	sample(&m, "dead_letters", "", jint(st, "dead"));
	metric(&m, "review", "gauge", "Orders changed after their bill was posted.");
	sample(&m, "review", "", jint(st, "review"));
	metric(&m, "queue", "gauge", "Queue entries by state.");
	static const char *states[] = {"ready", "delayed", "in_flight"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(l, sizeof(l), "state=\"%s\"", states[i]);
		sample(&m, "queue", l, jint(q, states[i]));
	}
	metric(&m, "api_calls_total", "counter", "Remote API calls by endpoint and outcome.");
	const char *oc;
	json_object_foreach(json_object_get(st, "api_calls"), ep, o)
		json_object_foreach(o, oc, v) {
			snprintf(l, sizeof(l), "endpoint=\"%s\",outcome=\"%s\"", ep, oc);
			sample(&m, "api_calls_total", l, (long long)json_integer_value(v));
		}
	size_t i;
	json_t *flows = json_object_get(st, "flows");
	metric(&m, "flow_lag_seconds", "gauge", "How far each flow's cursor is behind now.");
	json_array_foreach(flows, i, o) {
		snprintf(l, sizeof(l), "flow=\"%s\"", json_string_value(json_object_get(o, "name")));
		sample(&m, "flow_lag_seconds", l, jint(o, "lag_s"));
	}
	metric(&m, "flow_failures", "gauge", "Windows of the flow failed in a row (0: polling works).");
	json_array_foreach(flows, i, o) {
		snprintf(l, sizeof(l), "flow=\"%s\"", json_string_value(json_object_get(o, "name")));
		sample(&m, "flow_failures", l, jint(o, "failures"));
	}
	metric(&m, "store_commits_total", "counter",
	       "LMDB write transactions committed by this run (each syncs the data file).");
	sample(&m, "store_commits_total", "", jint(json_object_get(st, "store"), "commits"));
	json_t *off = json_object_get(json_object_get(st, "wdt"), "clock_offset_s");
	if (json_is_integer(off)) {
		metric(&m, "wdt_clock_offset_seconds", "gauge",
		       "WDT's clock minus this host's, from the Date of WDT's answers.");
		sample(&m, "wdt_clock_offset_seconds", "", (long long)json_integer_value(off));
	}
	metric(&m, "flow_paused", "gauge", "1 while a flow's polling is paused by backpressure.");
	json_array_foreach(flows, i, o) {
		snprintf(l, sizeof(l), "flow=\"%s\"", json_string_value(json_object_get(o, "name")));
		sample(&m, "flow_paused", l, json_is_true(json_object_get(o, "paused")));
	}
	if (m.b.data) {
		int r = wj_write_file_atomic(path, m.b.data, m.b.len, STATUS_MODE);
		if (r < 0)
			wj_warn(MOD, NULL, "cannot write metrics file %s: %s", path, strerror(-r));
	}
	wj_buf_free(&m.b);
}

/* running, degraded (the start-up check fails), stopping (draining), stopped (written last,
 * before exit) */
static const char *daemon_state(void)
{
	if (d.stopped)
		return "stopped";
	if (d.stopping)
		return "stopping";
	return d.engine && wj_engine_degraded(d.engine) ? "degraded" : "running";
}

/* The start-up check for status.json: state (waiting, running, passed, failed), and while it
 * fails why, how often, and when it runs next. */
static json_t *check_status(bool degraded)
{
	const char *state = d.check ? "running" : degraded ? "failed"
			    : d.check_passed ? "passed" : "waiting";
	return json_pack("{s:s, s:s?, s:i, s:s?}", "state", state, "error",
			 degraded ? d.check_error : NULL, "failures", (int)d.check_failures,
			 "next_attempt", degraded && !d.check ? d.check_next : NULL);
}

/* status.html_file: the report of the last days, in the language of alerts_lang. A failure
 * is logged once until a write succeeds again; it never stops the daemon. */
static void write_html(json_t *st, int64_t now)
{
	const char *path = d.cfg->html_file;
	if (!path || !path[0] || !d.store)
		return;
	wj_report_opts_t o = {.en = d.cfg->alerts_en, .days = WJ_REPORT_DAYS_DEFAULT, .now = now};
	int r = wj_report_write(path, d.store, d.cfg, st, &o);
	if (r < 0 && !d.html_failed)
		wj_warn(MOD, NULL, "cannot write the HTML report %s: %s", path, strerror(-r));
	else if (r == 0 && d.html_failed)
		wj_info(MOD, NULL, "HTML report %s written again", path);
	d.html_failed = r < 0;
}

static void write_status(void)
{
	const wj_config_t *cfg = d.cfg;
	int64_t t = wj_now();
	char now[WJ_TIME_LEN], started[WJ_TIME_LEN];
	wj_time_format(t, cfg->tz_offset, now);
	wj_time_format(d.started, cfg->tz_offset, started);
	json_t *st = d.engine ? wj_engine_status(d.engine) : NULL;
	if (!st)
		st = json_object();
	json_object_set_new(st, "version", json_string(WJ_VERSION));
	json_object_set_new(st, "pid", json_integer(getpid()));
	bool degraded = d.engine && wj_engine_degraded(d.engine);
	json_object_set_new(st, "state", json_string(daemon_state()));
	json_object_set_new(st, "check", check_status(degraded));
	json_object_set_new(st, "now", json_string(now));
	json_object_set_new(st, "updated", json_integer(t));
	json_object_set_new(st, "started", json_string(started));
	json_object_set_new(st, "timezone", json_string(cfg->timezone));
	json_object_set_new(st, "config", json_string(cfg->path));
	json_object_set_new(st, "state_dir", json_string(cfg->state_dir));
	json_object_set_new(st, "reloads", json_integer(d.reloads));
	json_object_set_new(st, "reload_failures", json_integer(d.reload_failures));
	json_object_set_new(st, "last_reload_error",
			    d.last_reload_error[0] ? json_string(d.last_reload_error) : json_null());
	if (!d.engine && d.start_error[0]) {
		json_object_set_new(st, "last_error", json_string(d.start_error));
		json_object_set_new(st, "last_error_at", json_string(now));
	}
	if (wj_log_mask_json(st) < 0)
		wj_warn(MOD, NULL, "out of memory while masking secrets in the status");
	write_metrics(st, !d.stopped, t);
	if (cfg->status_file && cfg->status_file[0]) {
		char *text = json_dumps(st, JSON_INDENT(2) | JSON_SORT_KEYS);
		if (text) {
			size_t len = strlen(text);
			text[len] = '\n'; /* json_dumps leaves room for the NUL we overwrite */
			int r = wj_write_file_atomic(cfg->status_file, text, len + 1, STATUS_MODE);
			text[len] = '\0';
			if (r < 0)
				wj_warn(MOD, NULL, "cannot write status file %s: %s", cfg->status_file,
					strerror(-r));
			free(text);
		}
	}
	write_html(st, t);
	json_decref(st);
	if (!d.engine)
		return;

	char summary[512];
	wj_engine_summary(d.engine, summary, sizeof(summary));
	wj_notify_status("%s", summary);
	uint64_t mono = wj_mono_ms();
	if (!d.last_status_line || mono - d.last_status_line >= 60000) {
		d.last_status_line = mono;
		wj_info(MOD, summary, "status");
	}
}

/* A start that failed still leaves a truthful status: stopped, and why. */
static void start_failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void start_failed(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d.start_error, sizeof(d.start_error), fmt, ap);
	va_end(ap);
	wj_error(MOD, NULL, "%s", d.start_error);
	d.stopped = true;
	write_status();
}

/* The last status of this process: state stopped, metrics up 0. */
static void write_stopped(void)
{
	if (d.stopped)
		return;
	d.stopped = true;
	uv_timer_stop(&d.status_timer);
	write_status();
}

static void start_check(void);

static void on_status_timer(uv_timer_t *t)
{
	(void)t;
	/* degraded, and a service that failed answers again: check now, not at the next attempt */
	if (d.engine && wj_engine_degraded(d.engine) && !d.check && !d.stopping &&
	    wj_engine_recoveries(d.engine) != d.check_recoveries) {
		wj_info(MOD, NULL, "a service answers again: start-up check now");
		start_check();
	}
	write_status();
}

static void on_watchdog(uv_timer_t *t)
{
	(void)t;
	wj_notify_watchdog();
}

/* ---- start-up check ------------------------------------------------------------------- */

static void on_check_timer(uv_timer_t *t)
{
	(void)t;
	start_check();
}

static void on_check_done(const wj_check_result_t *res, void *arg)
{
	(void)arg;
	d.check = NULL;
	if (wj_check_passed(res)) {
		if (wj_engine_degraded(d.engine))
			wj_info(MOD, NULL, "start-up check passed after %u failed attempts: no longer "
				"degraded", d.check_failures);
		else
			wj_info(MOD, NULL, "start-up check passed");
		wj_engine_set_degraded(d.engine, NULL);
		d.check_passed = true;
		d.check_failures = 0;
		d.check_retry_ms = 0;
		write_status();
		return;
	}
	wj_check_failure(res, d.check_error, sizeof(d.check_error));
	wj_log_mask(d.check_error);
	d.check_retry_ms = !d.check_retry_ms ? CHECK_RETRY_MS
			   : d.check_retry_ms >= CHECK_RETRY_MAX_MS / 2 ? CHECK_RETRY_MAX_MS
			   : 2 * d.check_retry_ms;
	d.check_failures++;
	wj_time_format(wj_now() + (int64_t)(d.check_retry_ms / 1000), d.cfg->tz_offset,
		       d.check_next);
	wj_error(MOD, NULL, "start-up check failed: %s; running degraded, next attempt in %llu s",
		 d.check_error, (unsigned long long)(d.check_retry_ms / 1000));
	wj_engine_set_degraded(d.engine, d.check_error);
	d.check_recoveries = wj_engine_recoveries(d.engine);
	uv_timer_start(&d.check_timer, on_check_timer, d.check_retry_ms, 0);
	write_status();
}

/* Check both services, read only, without holding up anything else (see lib/probe.h). */
static void start_check(void)
{
	uv_timer_stop(&d.check_timer);
	wj_check_cancel(d.check);
	d.check = NULL;
	wj_check_opts_t o = {.engine = d.engine};
	if (wj_check_start(&d.loop, d.cfg, &o, on_check_done, NULL, &d.check) < 0) {
		wj_error(MOD, NULL, "cannot start the start-up check: out of memory; next attempt "
			 "in %d s", CHECK_RETRY_MS / 1000);
		uv_timer_start(&d.check_timer, on_check_timer, CHECK_RETRY_MS, 0);
	}
}

/* ---- reload ---------------------------------------------------------------------------- */

static bool secret_path(const char *path)
{
	return strstr(path, "secret") != NULL;
}

/* Log every leaf that differs between two documents, as `path old → new`. */
static void diff_json(const char *path, json_t *a, json_t *b, unsigned *changes)
{
	char sub[512];
	if (json_is_object(a) && json_is_object(b)) {
		const char *k;
		json_t *v;
		json_object_foreach(a, k, v) {
			snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", k);
			diff_json(sub, v, json_object_get(b, k), changes);
		}
		json_object_foreach(b, k, v) {
			if (json_object_get(a, k))
				continue;
			snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", k);
			diff_json(sub, NULL, v, changes);
		}
		return;
	}
	if (json_is_array(a) && json_is_array(b) && json_array_size(a) == json_array_size(b)) {
		for (size_t i = 0; i < json_array_size(a); i++) {
			snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
			diff_json(sub, json_array_get(a, i), json_array_get(b, i), changes);
		}
		return;
	}
	if (a && b && json_equal(a, b))
		return;
	(*changes)++;
	char fields[1024] = "";
	wj_logfmt_kv(fields, sizeof(fields), "key", path);
	if (!secret_path(path)) {
		char *ov = a ? json_dumps(a, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
		char *nv = b ? json_dumps(b, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
		wj_logfmt_kv(fields, sizeof(fields), "old", ov ? ov : "(unset)");
		wj_logfmt_kv(fields, sizeof(fields), "new", nv ? nv : "(unset)");
		free(ov);
		free(nv);
	}
	wj_info(MOD, fields, "configuration changed");
}

static void reload(void)
{
	wj_notify_reloading();
	int r = wj_log_reopen();
	if (r < 0)
		wj_error(MOD, NULL, "cannot reopen log file: %s", strerror(-r));
	wj_info(MOD, NULL, "reloading configuration from %s", d.cfg->path);

	wj_errors_t errs = {0};
	wj_config_t *cfg = wj_config_load(d.cfg->path, &errs);
	if (!cfg) {
		d.reload_failures++;
		for (size_t i = 0; i < errs.n; i++)
			wj_error(MOD, NULL, "%s", errs.msg[i]);
		snprintf(d.last_reload_error, sizeof(d.last_reload_error), "%s",
			 errs.n ? errs.msg[0] : "invalid configuration");
		wj_error(MOD, NULL, "configuration refused (%zu errors); keeping the running one",
			 errs.n);
		wj_errors_free(&errs);
		wj_notify_ready();
		return;
	}
	wj_errors_free(&errs);

	if (strcmp(cfg->state_dir, d.cfg->state_dir) != 0) {
		wj_warn(MOD, NULL, "state_dir changes need a restart; keeping %s", d.cfg->state_dir);
		free(cfg->state_dir);
		cfg->state_dir = strdup(d.cfg->state_dir);
	}
	unsigned changes = 0;
	diff_json("", d.cfg->doc, cfg->doc, &changes);

	wj_log_set_secrets(wj_config_secrets(cfg));
	wj_log_set_level(cfg->log_level);
	if ((cfg->log_file ? cfg->log_file : "")[0] != (d.cfg->log_file ? d.cfg->log_file : "")[0] ||
	    (cfg->log_file && d.cfg->log_file && strcmp(cfg->log_file, d.cfg->log_file))) {
		r = wj_log_open(cfg->log_file, cfg->log_level, cfg->tz_offset);
		if (r < 0)
			wj_error(MOD, NULL, "cannot open log file %s: %s", cfg->log_file,
				 strerror(-r));
	}
	wj_engine_reload(d.engine, cfg);
	if (cfg->status_interval_ms != d.cfg->status_interval_ms)
		uv_timer_start(&d.status_timer, on_status_timer, cfg->status_interval_ms,
			       cfg->status_interval_ms);
	wj_check_cancel(d.check); /* it reads the old configuration */
	d.check = NULL;
	wj_config_free(d.cfg);
	d.cfg = cfg;
	wj_alerts_set_config(d.alerts, d.cfg);
	d.check_retry_ms = 0; /* the services may be set right now: check again at once */
	d.html_failed = false; /* a new html_file: say again if it cannot be written */
	start_check();
	d.reloads++;
	d.last_reload_error[0] = '\0';
	wj_info(MOD, NULL, "configuration reloaded (%u changes)", changes);
	write_status();
	wj_notify_ready();
}

/* ---- shutdown -------------------------------------------------------------------------- */

static void close_cb(uv_handle_t *h)
{
	(void)h;
}

/* Last step of a stop: alerts delivered (or given up), close everything. */
static void on_alerts_flushed(void *arg)
{
	(void)arg;
	if (d.engine)
		wj_engine_set_alerts(d.engine, NULL);
	wj_alerts_free(d.alerts);
	d.alerts = NULL;
	uv_timer_stop(&d.status_timer);
	uv_timer_stop(&d.watchdog_timer);
	uv_close((uv_handle_t *)&d.check_timer, close_cb);
	uv_close((uv_handle_t *)&d.status_timer, close_cb);
	uv_close((uv_handle_t *)&d.watchdog_timer, close_cb);
	uv_close((uv_handle_t *)&d.sig_hup, close_cb);
	uv_close((uv_handle_t *)&d.sig_term, close_cb);
	uv_close((uv_handle_t *)&d.sig_int, close_cb);
	wj_engine_free(d.engine);
	d.engine = NULL;
}

static void on_drained(void *arg)
{
	(void)arg;
	write_stopped();
	if (!d.alerts) {
		on_alerts_flushed(NULL);
		return;
	}
	wj_alerts_event(d.alerts, WJ_EV_STOP, NULL);
	wj_alerts_flush(d.alerts, 5000, on_alerts_flushed, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	(void)h;
	if (signum == SIGHUP) {
		if (!d.stopping)
			reload();
		return;
	}
	if (d.stopping) {
		wj_warn(MOD, NULL, "signal %d during shutdown; still draining", signum);
		return;
	}
	d.stopping = true;
	wj_notify_stopping();
	uv_timer_stop(&d.check_timer);
	wj_check_cancel(d.check);
	d.check = NULL;
	wj_info(MOD, NULL, "signal %s: stopping (drain timeout %llums)", strsignal(signum),
		(unsigned long long)d.cfg->drain_timeout_ms);
	wj_engine_stop(d.engine, d.cfg->drain_timeout_ms, on_drained, NULL);
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	const char *config = WJ_DEFAULT_CONFIG;
	bool check = false;
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'n'},
		{"version", no_argument, NULL, 'V'},      {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "c:nVh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'n': check = true; break;
		case 'V': printf("wdt2jdyd %s\n", WJ_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 1;
	}
	/* No core dumps and no ptrace by other processes of the same user: the memory holds the
	 * secrets and the Kingdee token. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		fprintf(stderr, "wdt2jdyd: cannot make the process non-dumpable: %s\n", strerror(errno));
	/* Pages are parsed on libuv's thread pool, one at a time per flow: two threads are plenty,
	 * and two malloc arenas keep the heap from growing one arena per thread. */
	setenv("UV_THREADPOOL_SIZE", "2", 0);
	mallopt(M_ARENA_MAX, 2);

	wj_errors_t errs = {0};
	d.cfg = wj_config_load(config, &errs);
	if (!d.cfg) {
		print_errors(&errs);
		wj_errors_free(&errs);
		return EXIT_CONFIG;
	}
	wj_errors_free(&errs);
	if (check) {
		printf("configuration OK\n");
		wj_config_free(d.cfg);
		return 0;
	}

	signal(SIGPIPE, SIG_IGN);
	/* Hold TERM/INT/HUP until the loop's handlers are in place: a stop requested during
	 * start-up is then a clean stop, not a kill. */
	sigset_t held;
	sigemptyset(&held);
	sigaddset(&held, SIGTERM);
	sigaddset(&held, SIGINT);
	sigaddset(&held, SIGHUP);
	sigprocmask(SIG_BLOCK, &held, NULL);
	wj_log_set_secrets(wj_config_secrets(d.cfg));
	int r = wj_log_open(d.cfg->log_file, d.cfg->log_level, d.cfg->tz_offset);
	if (r < 0) {
		fprintf(stderr, "wdt2jdyd: cannot open log file %s: %s\n", d.cfg->log_file,
			strerror(-r));
		wj_config_free(d.cfg);
		return EXIT_CANTCREAT;
	}
	d.started = wj_now();
	wj_info(MOD, NULL, "wdt2jdyd %s starting, config %s, state %s", WJ_VERSION, d.cfg->path,
		d.cfg->state_dir);

	char err[512] = "";
	r = wj_store_open(d.cfg->state_dir, d.cfg->map_size, d.cfg->map_max, &d.store);
	if (r < 0) {
		fprintf(stderr, "wdt2jdyd: cannot open state in %s: %s\n", d.cfg->state_dir,
			wj_store_strerror());
		start_failed("cannot open state in %s: %s", d.cfg->state_dir, wj_store_strerror());
		wj_config_free(d.cfg);
		return EXIT_CANTCREAT;
	}

	int rc = 1;
	if (uv_loop_init(&d.loop) != 0 || wj_http_global_init() < 0) {
		start_failed("cannot initialise the event loop");
		goto out;
	}
	r = wj_engine_new(&d.loop, d.cfg, d.store, &d.engine, err, sizeof(err));
	if (r < 0) {
		start_failed("cannot start: %s", err);
		goto out_loop;
	}

	uv_signal_init(&d.loop, &d.sig_hup);
	uv_signal_init(&d.loop, &d.sig_term);
	uv_signal_init(&d.loop, &d.sig_int);
	uv_signal_start(&d.sig_hup, on_signal, SIGHUP);
	uv_signal_start(&d.sig_term, on_signal, SIGTERM);
	uv_signal_start(&d.sig_int, on_signal, SIGINT);
	sigprocmask(SIG_UNBLOCK, &held, NULL);
	uv_timer_init(&d.loop, &d.status_timer);
	uv_timer_init(&d.loop, &d.watchdog_timer);
	uv_timer_init(&d.loop, &d.check_timer);
	uv_timer_start(&d.status_timer, on_status_timer, 0, d.cfg->status_interval_ms);
	uint64_t wd = wj_notify_watchdog_usec();
	if (wd)
		uv_timer_start(&d.watchdog_timer, on_watchdog, 0, wd / 2000 ? wd / 2000 : 1);

	char instance[600];
	wj_alert_instance(d.cfg, instance, sizeof(instance));
	d.alerts = wj_alerts_new(&d.loop, d.cfg, instance);
	if (!d.alerts)
		wj_error(MOD, NULL, "cannot start the alerts: out of memory");
	wj_engine_set_alerts(d.engine, d.alerts);
	wj_alerts_event(d.alerts, WJ_EV_START, WJ_VERSION);
	start_check();

	wj_notify_ready();
	wj_info(MOD, NULL, "ready");
	uv_run(&d.loop, UV_RUN_DEFAULT);
	rc = 0;
	if (!d.stopped) { /* the loop ended without a stop: say so all the same */
		d.stopped = true;
		write_status();
	}
	wj_info(MOD, NULL, "stopped");

out_loop:
	if (d.engine) { /* start failed after creation, or loop ended early */
		wj_engine_free(d.engine);
		d.engine = NULL;
	}
	uv_run(&d.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&d.loop) != 0)
		wj_warn(MOD, NULL, "event loop closed with handles still open");
	wj_http_global_cleanup();
out:
	wj_store_close(d.store);
	wj_config_free(d.cfg);
	wj_log_close();
	return rc;
}
