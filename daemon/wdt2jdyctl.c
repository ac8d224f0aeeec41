/* wdt2jdyctl: the operator's tool. Reads and edits the daemon's state (LMDB is multi-process
 * safe, so it works while the daemon runs) and computes API signatures for debugging. */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "lib/alert.h"
#include "lib/config.h"
#include "lib/dispatch.h"
#include "lib/engine.h"
#include "lib/http.h"
#include "lib/jdy.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/mapping.h"
#include "lib/probe.h"
#include "lib/report.h"
#include "lib/store.h"
#include "lib/util.h"
#include "lib/wdt.h"
#include "wj_build.h"

enum { EXIT_CONFIG = 78, EXIT_CANTCREAT = 73 };
#define PRIO_REPLAY 0
#define WJ_DOC_KEY_MAX_CTL 256

static const char *config_path = WJ_DEFAULT_CONFIG;
static bool config_given;          /* -c FILE on the command line */
static const char *state_dir_opt;  /* --state-dir DIR */
static int shown_tz = 8 * 3600;        /* the configured offset: every time printed is in it */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: wdt2jdyctl [-c FILE | --state-dir DIR] COMMAND [ARGS]\n"
		"  -c, --config FILE               configuration (default %s)\n"
		"  --state-dir DIR                 read-only commands: read this state, no configuration\n"
		"read-only (no secrets needed; --json prints JSON):\n"
		"  status [--json]                 flows, queue, counts, API calls, what fails now\n"
		"  dlq list [--json]               dead letters: stockin_no, reason, since when\n"
		"  dlq show ORDER [--json]         one dead letter in full (ORDER: stockin_no or id)\n"
		"  review list [--json]            orders changed after their bill was posted\n"
		"  review show ORDER [--json]      what its bill would hold now, old -> new\n"
		"  cursor show [FLOW] [--json]     where each flow's polling stands\n"
		"  report --html FILE [--days N] [--lang zh|en]\n"
		"                                  one HTML page: health, bills and dead letters\n"
		"                                  per hour, quota use, dead letters, review list\n"
		"operator actions (written to the daemon's log as an audit trail):\n"
		"  dlq retry ORDER... | --all      queue again, above live work\n"
		"  dlq drop ORDER... | --all --yes forget (no bill will be made)\n"
		"  review done ORDER\n"
		"  cursor set FLOW \"YYYY-MM-DD HH:MM:SS\"\n"
		"  backfill FLOW --from T --to T [--no-wait]\n"
		"                                  re-read a past period below live priority\n"
		"  backfill FLOW --cancel          drop the backfill under way\n"
		"  mark-posted FLOW FILE           stock-in numbers another integrator posted:\n"
		"                                  never post them (FILE: one a line, optionally\n"
		"                                  a tab or comma and the Kingdee bill number)\n"
		"  repost FLOW STOCKIN_NO [--from T]\n"
		"                                  post again an order whose bill was deleted in\n"
		"                                  Kingdee (refused while a bill of it is there)\n"
		"other:\n"
		"  check-config                    validate the configuration\n"
		"  alert test                      send a test message to every configured alert\n"
		"  check --online [--material N] [--store N]\n"
		"                                  test the connection to WDT and Kingdee (writes "
		"nothing)\n"
		"  preview FLOW --from T --to T [--out FILE.jsonl]\n"
		"                                  what would be posted for a period (posts nothing)\n"
		"  sign qimen|openapi2 --secret S KEY=VALUE...\n"
		"  sign kingdee --secret S --method M --path P --nonce N --timestamp T\n"
		"               [--encoding rfc3986|form] [KEY=VALUE...]\n"
		"  sign kingdee-app --app-key K --app-secret S\n",
		WJ_DEFAULT_CONFIG);
}

/* ---- arguments ------------------------------------------------------------------------------ */

enum { OPT_JSON = 1, OPT_YES = 2, OPT_ALL = 4 };

typedef struct cmd_args {
	bool json, yes, all;
	int argc;    /* the other arguments, in order */
	char **argv;
} cmd_args_t;

/* Parse the options of a command. argv[0] names it ("dlq list"), the options allowed are
 * OPT_* bits; between min and max other arguments must remain (max -1: any number). An unknown
 * option or a wrong count is an error that names it: returns -EINVAL after saying so. */
static int cmd_opts(int argc, char **argv, unsigned allowed, int min, int max, cmd_args_t *a)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"yes", no_argument, NULL, 'y'},
		{"all", no_argument, NULL, 'a'},
		{"state-dir", required_argument, NULL, 's'},
		{NULL, 0, NULL, 0},
	};
	*a = (cmd_args_t){0};
	optind = 0;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		unsigned bit = c == 'j' ? OPT_JSON : c == 'y' ? OPT_YES : c == 'a' ? OPT_ALL : 0;
		if (c == 's') {
			state_dir_opt = optarg;
			continue;
		}
		if (c == '?' || !(allowed & bit)) {
			fprintf(stderr, "wdt2jdyctl %s: unknown option %s\n", argv[0], argv[optind - 1]);
			return -EINVAL;
		}
		a->json |= c == 'j';
		a->yes |= c == 'y';
		a->all |= c == 'a';
	}
	a->argc = argc - optind;
	a->argv = argv + optind;
	if (a->argc < min || (max >= 0 && a->argc > max)) {
		fprintf(stderr, "wdt2jdyctl %s: %s\n", argv[0],
			a->argc < min ? "missing argument" : "too many arguments");
		return -EINVAL;
	}
	return 0;
}

/* ---- configuration and state ---------------------------------------------------------------- */

static wj_config_t *load_config(void)
{
	if (state_dir_opt) {
		fprintf(stderr, "wdt2jdyctl: --state-dir is for the read-only commands (status, dlq "
				"list/show, review list/show, cursor show, report)\n");
		exit(1);
	}
	wj_errors_t errs = {0};
	wj_config_t *cfg = wj_config_load(config_path, &errs);
	if (!cfg) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		wj_errors_free(&errs);
		exit(EXIT_CONFIG);
	}
	wj_errors_free(&errs);
	shown_tz = cfg->tz_offset;
	return cfg;
}

/* The timezone the daemon wrote in its status file, for --state-dir without a configuration. */
static void tz_from_status(wj_config_t *cfg)
{
	json_t *st = json_load_file(cfg->status_file, 0, NULL);
	const char *z = json_string_value(json_object_get(st, "timezone"));
	int off;
	if (z && wj_tz_parse(z, &off) == 0) {
		cfg->tz_offset = off;
		free(cfg->timezone);
		cfg->timezone = strdup(z);
	}
	json_decref(st);
}

/* What a read-only command needs: the state directory, the status file and the timezone.
 * The configuration is read leniently and without its secrets (a broken file still names its
 * paths; stderr says so); --state-dir DIR alone needs none. Exits 78 when there is nothing to go
 * on. */
static wj_config_t *load_paths(void)
{
	wj_errors_t errs = {0};
	wj_config_t *cfg = NULL;
	if (!state_dir_opt || config_given) {
		cfg = wj_config_load_paths(config_path, &errs);
		if (!cfg && !state_dir_opt) {
			for (size_t i = 0; i < errs.n; i++)
				fprintf(stderr, "%s\n", errs.msg[i]);
			wj_errors_free(&errs);
			exit(EXIT_CONFIG);
		}
		if (!cfg)
			fprintf(stderr, "wdt2jdyctl: %s; going on with --state-dir alone\n",
				errs.n ? errs.msg[0] : config_path);
		else if (errs.n)
			fprintf(stderr, "wdt2jdyctl: %s does not validate (%zu problem%s, the first: "
					"%s); read-only, going on with what it says%s\n",
				config_path, errs.n, errs.n == 1 ? "" : "s", errs.msg[0],
				state_dir_opt ? "" : " of state_dir, status.file and timezone");
	}
	wj_errors_free(&errs);
	if (!cfg)
		cfg = wj_config_parse_paths("{}", "--state-dir", NULL);
	if (!cfg) {
		fprintf(stderr, "wdt2jdyctl: out of memory\n");
		exit(1);
	}
	if (state_dir_opt) {
		json_t *named = json_object_get(json_object_get(cfg->doc, "status"), "file");
		free(cfg->state_dir);
		cfg->state_dir = strdup(state_dir_opt);
		if (!named) {
			free(cfg->status_file);
			if (asprintf(&cfg->status_file, "%s/status.json", state_dir_opt) < 0)
				cfg->status_file = NULL;
		}
		if (!cfg->state_dir || !cfg->status_file) {
			fprintf(stderr, "wdt2jdyctl: out of memory\n");
			exit(1);
		}
		if (!config_given)
			tz_from_status(cfg);
	}
	shown_tz = cfg->tz_offset;
	return cfg;
}

/* The flow named name in cfg, or NULL with a message. */
static const wj_flow_cfg_t *flow_named(const wj_config_t *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_flows; i++)
		if (!strcmp(cfg->flows[i].name, name))
			return &cfg->flows[i];
	fprintf(stderr, "wdt2jdyctl: no flow named \"%s\" in %s\n", name, cfg->path);
	return NULL;
}

/* ---- what is printed ------------------------------------------------------------------------ */

/* Everything printed that came from a remote service or from the state goes through shown():
 * no control characters or terminal escapes, and no secret - the configured ones and the
 * stored Kingdee token are masked again here, should an older record hold one. */
static void load_secrets(const wj_config_t *cfg, wj_store_t *s)
{
	wj_txn_t t;
	wj_log_set_secrets(wj_config_secrets(cfg));
	if (wj_txn_begin(s, &t, false) < 0)
		return;
	json_t *tok = wj_txn_get_json(&t, WJ_DB_META, "jdy_token", 9);
	wj_log_add_secret(json_string_value(json_object_get(tok, "app_token")));
	json_decref(tok);
	wj_txn_abort(&t);
}

/* The n bytes at s fit to print. Caller frees. */
static char *shown(const char *s, size_t n)
{
	char *p = wj_text_printable(s, n);
	if (!p) {
		fprintf(stderr, "wdt2jdyctl: out of memory\n");
		exit(1);
	}
	return wj_log_mask(p);
}

/* A copy of v with every key and string fit to print (NULL stays NULL). Caller owns it. */
static json_t *shown_json(json_t *v)
{
	const char *k;
	json_t *x, *r;
	size_t i;
	char *s;
	if (json_is_string(v)) {
		s = shown(json_string_value(v), json_string_length(v));
		r = json_string(s);
	} else if (json_is_object(v)) {
		r = json_object();
		json_object_foreach(v, k, x) {
			s = shown(k, strlen(k));
			json_object_set_new(r, s, shown_json(x));
			free(s);
		}
		return r;
	} else if (json_is_array(v)) {
		r = json_array();
		json_array_foreach(v, i, x)
			json_array_append_new(r, shown_json(x));
		return r;
	} else {
		return json_incref(v);
	}
	free(s);
	return r;
}

/* Parse a stored JSON record and make it fit to print. Caller owns it (NULL if not JSON). */
static json_t *shown_record(const void *data, size_t len)
{
	json_t *raw = json_loadb(data, len, 0, NULL);
	json_t *o = shown_json(raw);
	json_decref(raw);
	return o;
}

/* Open the state. create false (the read-only commands): a state that does not exist is an
 * error, and nothing is created. Exits 73 when it cannot be opened. */
static wj_store_t *open_state(const wj_config_t *cfg, bool create)
{
	wj_store_t *s;
	char *data = NULL;
	struct stat st;
	if (!create && (asprintf(&data, "%s/data.mdb", cfg->state_dir) < 0 || stat(data, &st) < 0)) {
		fprintf(stderr, "wdt2jdyctl: no state in %s (%s): the daemon has not run with this "
				"state_dir yet, or -c/--state-dir names another instance\n",
			cfg->state_dir, data ? strerror(errno) : "out of memory");
		exit(EXIT_CANTCREAT);
	}
	free(data);
	if (wj_store_open(cfg->state_dir, cfg->map_size, cfg->map_max, &s) < 0) {
		fprintf(stderr, "wdt2jdyctl: cannot open state in %s: %s\n", cfg->state_dir,
			wj_store_strerror());
		exit(EXIT_CANTCREAT);
	}
	load_secrets(cfg, s);
	return s;
}

static wj_store_t *open_store(const wj_config_t *cfg)
{
	return open_state(cfg, true);
}

/* ---- audit trail ---------------------------------------------------------------------------- */

/* Write one operator action to the daemon's log (log.file; without one, the daemon logs to the
 * journal, and so does this, through syslog): who (user, uid, and sudo's user) ran which
 * command, and what it did. Masked like every log line. When the line cannot be written,
 * stderr says so; the action stands. */
__attribute__((format(printf, 3, 4)))
static void ctl_audit(const wj_config_t *cfg, const char *cmd, const char *fmt, ...)
{
	char what[2048], uid[24], f[1024] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	uid_t u = getuid();
	struct passwd *pw = getpwuid(u);
	snprintf(uid, sizeof(uid), "%lu", (unsigned long)u);
	wj_logfmt_kv(f, sizeof(f), "user", pw ? pw->pw_name : uid);
	wj_logfmt_kv(f, sizeof(f), "uid", uid);
	const char *sudo = getenv("SUDO_USER");
	if (sudo && *sudo)
		wj_logfmt_kv(f, sizeof(f), "sudo_user", sudo);
	wj_logfmt_kv(f, sizeof(f), "cmd", cmd);
	const char *log = cfg->log_file && cfg->log_file[0] ? cfg->log_file : NULL;
	int r = log ? wj_log_attach(log, WJ_LOG_INFO, cfg->tz_offset) : -ENOENT;
	if (r == 0) {
		wj_info("ctl", f, "operator: %s", what);
		wj_log_open(NULL, WJ_LOG_INFO, cfg->tz_offset); /* closes the file */
		return;
	}
	if (log)
		fprintf(stderr, "wdt2jdyctl: cannot write the audit line to %s: %s; sent to syslog "
				"instead\n", log, strerror(-r));
	char line[3200], msg[2100];
	snprintf(msg, sizeof(msg), "operator: %s", what);
	snprintf(line, sizeof(line), "mod=ctl%s", f);
	wj_logfmt_kv(line, sizeof(line), "msg", msg);
	openlog("wdt2jdyctl", LOG_PID, LOG_USER);
	syslog(LOG_NOTICE, "%s", wj_log_mask(line));
	closelog();
}

/* ---- sign ----------------------------------------------------------------------------------- */

static int parse_kv(int argc, char **argv, wj_kv_t **out, size_t *n)
{
	*out = calloc((size_t)argc + 1, sizeof(wj_kv_t));
	*n = 0;
	for (int i = 0; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq) {
			fprintf(stderr, "wdt2jdyctl: expected KEY=VALUE, got \"%s\"\n", argv[i]);
			return -EINVAL;
		}
		*eq = '\0';
		(*out)[(*n)++] = (wj_kv_t){argv[i], eq + 1};
	}
	return 0;
}

static int cmd_sign(int argc, char **argv)
{
	if (argc < 1) {
		usage(stderr);
		return 1;
	}
	const char *kind = argv[0];
	const char *secret = NULL, *method = NULL, *path = NULL, *nonce = NULL, *ts = NULL,
		   *app_key = NULL, *app_secret = NULL, *encoding = "rfc3986";
	static const struct option opts[] = {
		{"secret", required_argument, NULL, 's'},    {"method", required_argument, NULL, 'm'},
		{"path", required_argument, NULL, 'p'},      {"nonce", required_argument, NULL, 'n'},
		{"timestamp", required_argument, NULL, 't'}, {"app-key", required_argument, NULL, 'k'},
		{"app-secret", required_argument, NULL, 'a'}, {"encoding", required_argument, NULL, 'e'},
		{NULL, 0, NULL, 0},
	};
	optind = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 's': secret = optarg; break;
		case 'm': method = optarg; break;
		case 'p': path = optarg; break;
		case 'n': nonce = optarg; break;
		case 't': ts = optarg; break;
		case 'k': app_key = optarg; break;
		case 'a': app_secret = optarg; break;
		case 'e': encoding = optarg; break;
		default: usage(stderr); return 1;
		}
	}
	wj_kv_t *kv = NULL;
	size_t n = 0;
	int rc = 1;
	if (parse_kv(argc - optind, argv + optind, &kv, &n) < 0)
		goto out;
	if (!strcmp(kind, "qimen") || !strcmp(kind, "openapi2")) {
		if (!secret) {
			fprintf(stderr, "wdt2jdyctl: sign %s needs --secret\n", kind);
			goto out;
		}
		char sig[33];
		if (!strcmp(kind, "qimen"))
			wj_wdt_sign_qimen(kv, n, secret, sig);
		else
			wj_wdt_sign_openapi2(kv, n, secret, sig);
		printf("%s\n", sig);
		rc = 0;
	} else if (!strcmp(kind, "kingdee")) {
		if (!secret || !method || !path || !nonce || !ts) {
			fprintf(stderr, "wdt2jdyctl: sign kingdee needs --secret --method --path "
					"--nonce --timestamp\n");
			goto out;
		}
		/* rfc3986: what the daemon sends (the PHP SDK's reading); form: the Java SDK's */
		wj_jdy_enc_t enc;
		if (!strcmp(encoding, "rfc3986")) {
			enc = WJ_JDY_ENC_RFC3986;
		} else if (!strcmp(encoding, "form")) {
			enc = WJ_JDY_ENC_FORM;
		} else {
			fprintf(stderr, "wdt2jdyctl: sign kingdee: --encoding is rfc3986 or form\n");
			goto out;
		}
		char sig[128];
		wj_buf_t s = {0};
		if (wj_jdy_sign_string(method, path, kv, n, nonce, ts, enc, &s) < 0 ||
		    wj_jdy_sign(secret, method, path, kv, n, nonce, ts, enc, sig, sizeof(sig)) < 0) {
			fprintf(stderr, "wdt2jdyctl: cannot sign\n");
			wj_buf_free(&s);
			goto out;
		}
		fprintf(stderr, "string to sign:\n%s", s.data);
		printf("%s\n", sig);
		wj_buf_free(&s);
		rc = 0;
	} else if (!strcmp(kind, "kingdee-app")) {
		if (!app_key || !app_secret) {
			fprintf(stderr, "wdt2jdyctl: sign kingdee-app needs --app-key --app-secret\n");
			goto out;
		}
		char sig[128];
		if (wj_jdy_app_signature(app_key, app_secret, sig, sizeof(sig)) < 0)
			goto out;
		printf("%s\n", sig);
		rc = 0;
	} else {
		fprintf(stderr, "wdt2jdyctl: sign: unknown kind \"%s\" (qimen, openapi2, kingdee, "
				"kingdee-app)\n", kind);
	}
out:
	free(kv);
	return rc;
}

/* ---- status --------------------------------------------------------------------------------- */

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

static long long num(json_t *o, const char *k)
{
	return (long long)json_integer_value(json_object_get(o, k));
}

/* The flows to show: the configured ones, then any other the state knows (a flow removed from
 * the configuration, or every flow with --state-dir alone). Caller frees. */
static json_t *flow_list(const wj_config_t *cfg, wj_txn_t *t)
{
	json_t *names = json_array();
	for (size_t i = 0; i < cfg->n_flows; i++)
		json_array_append_new(names, json_string(cfg->flows[i].name));
	wj_iter_t it;
	if (wj_iter_open(t, WJ_DB_CURSORS, &it) < 0)
		return names;
	for (int r = wj_iter_seek(&it, NULL, 0); r == 0; r = wj_iter_next(&it)) {
		wj_val_t k = wj_iter_key(&it);
		if (memchr(k.data, '\0', k.len)) /* "flow\0backfill" */
			continue;
		char *name = shown(k.data, k.len);
		bool known = false;
		size_t i;
		json_t *n;
		json_array_foreach(names, i, n)
			known |= !strcmp(json_string_value(n), name);
		if (!known)
			json_array_append_new(names, json_string(name));
		free(name);
	}
	wj_iter_close(&it);
	return names;
}

static const wj_flow_cfg_t *flow_cfg(const wj_config_t *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_flows; i++)
		if (!strcmp(cfg->flows[i].name, name))
			return &cfg->flows[i];
	return NULL;
}

/* epoch seconds → "YYYY-MM-DD HH:MM:SS" in the configured offset */
static const char *when(int64_t epoch, char buf[WJ_TIME_LEN])
{
	wj_time_format(epoch, shown_tz, buf);
	return buf;
}

static void fmt_span(int64_t s, char *buf, size_t size)
{
	if (s >= 86400)
		snprintf(buf, size, "%lldd%lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
	else if (s >= 3600)
		snprintf(buf, size, "%lldh%lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
	else
		snprintf(buf, size, "%llds", (long long)s);
}

/* The daemon line: running, stopped, or gone without stopping (its status is stale). */
static void print_daemon(const wj_config_t *cfg, json_t *st)
{
	if (!st) {
		printf("daemon      no status file (%s)\n", cfg->status_file ? cfg->status_file : "-");
		return;
	}
	long long pid = num(st, "pid");
	bool alive = pid > 0 && kill((pid_t)pid, 0) == 0;
	const char *state = str(st, "state");
	if (!strcmp(state, "stopped"))
		printf("daemon      stopped (pid %lld, started %s, stopped at %s)\n", pid,
		       str(st, "started"), str(st, "now"));
	else if (alive)
		printf("daemon      %s (pid %lld, started %s, status at %s)\n", state, pid,
		       str(st, "started"), str(st, "now"));
	else
		printf("daemon      not running: pid %lld is gone without stopping; its status, "
		       "written at %s, is stale\n", pid, str(st, "now"));
}

/* Each service: up, or down since when, how many failures in a row, why. */
static void print_endpoints(json_t *st)
{
	const char *ep;
	json_t *o;
	json_object_foreach(json_object_get(st, "endpoints"), ep, o) {
		if (json_is_false(json_object_get(o, "up")))
			printf("%-11s DOWN since %s, %lld failures in a row: %s\n", ep,
			       str(o, "failing_since"), num(o, "failures"), str(o, "error"));
		else if (json_is_true(json_object_get(o, "up")))
			printf("%-11s up\n", ep);
		if (json_is_string(json_object_get(o, "paused_until")))
			printf("%-11s paused until %s (rate limited)\n", ep, str(o, "paused_until"));
	}
}

static void print_errors(json_t *st)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(st, "errors"), i, e)
		if (strcmp(str(e, "source"), "wdt") && strcmp(str(e, "source"), "kingdee"))
			printf("%-11s failing since %s, %lld failures in a row: %s\n", str(e, "source"),
			       str(e, "since"), num(e, "count"), str(e, "error"));
	if (!json_is_string(json_object_get(st, "last_error")))
		return;
	if (json_is_string(json_object_get(st, "last_error_since")))
		printf("last error  %s (since %s, %lld in a row, last at %s)\n", str(st, "last_error"),
		       str(st, "last_error_since"), num(st, "last_error_count"),
		       str(st, "last_error_at"));
	else
		printf("last error  %s at %s\n", str(st, "last_error"), str(st, "last_error_at"));
}

static int cmd_status(int argc, char **argv)
{
	cmd_args_t a;
	if (cmd_opts(argc, argv, OPT_JSON, 0, 0, &a) < 0)
		return 1;
	wj_config_t *cfg = load_paths();
	wj_store_t *s = open_state(cfg, false);
	json_t *raw = cfg->status_file ? json_load_file(cfg->status_file, 0, NULL) : NULL;
	json_t *st = shown_json(raw); /* written by the daemon, but it quotes remote errors */
	json_decref(raw);
	wj_txn_t t;
	size_t ready = 0, delayed = 0, inflight = 0, dead = 0, review = 0, docs = 0;
	json_t *cursors = json_object(), *flows = NULL;
	if (wj_txn_begin(s, &t, false) == 0) {
		wj_txn_count(&t, WJ_DB_QUEUE, &ready);
		wj_txn_count(&t, WJ_DB_DELAYED, &delayed);
		wj_txn_count(&t, WJ_DB_INFLIGHT, &inflight);
		wj_txn_count(&t, WJ_DB_DEAD, &dead);
		wj_txn_count(&t, WJ_DB_REVIEW, &review);
		wj_txn_count(&t, WJ_DB_DOCS, &docs);
		flows = flow_list(cfg, &t);
		size_t i;
		json_t *n;
		json_array_foreach(flows, i, n) {
			const char *name = json_string_value(n);
			wj_val_t v;
			if (wj_txn_get(&t, WJ_DB_CURSORS, name, strlen(name), &v) == 0)
				json_object_set_new(cursors, name, shown_record(v.data, v.len));
		}
		wj_txn_abort(&t);
	}
	if (a.json) {
		json_t *o = json_pack("{s:O?, s:{s:I, s:I, s:I}, s:I, s:I, s:I, s:O, s:s, s:s}",
				      "daemon", st, "queue", "ready", (json_int_t)ready, "delayed",
				      (json_int_t)delayed, "in_flight", (json_int_t)inflight, "dead",
				      (json_int_t)dead, "review", (json_int_t)review, "orders",
				      (json_int_t)docs, "cursors", cursors, "state_dir", cfg->state_dir,
				      "timezone", cfg->timezone);
		char *text = json_dumps(o, JSON_INDENT(2));
		printf("%s\n", text);
		free(text);
		json_decref(o);
		goto out;
	}
	print_daemon(cfg, st);
	printf("state       %s (times in %s)\n\n", cfg->state_dir, cfg->timezone);
	printf("%-16s %-20s %10s %9s %8s  %s\n", "FLOW", "CURSOR", "LAG", "PROGRESS", "PAUSED",
	       "LAST WINDOW");
	size_t i;
	json_t *n;
	json_array_foreach(flows, i, n) {
		const char *name = json_string_value(n);
		const wj_flow_cfg_t *fc = flow_cfg(cfg, name);
		int64_t start = fc ? fc->cursor_start : 0;
		json_t *c = json_object_get(cursors, name), *live = NULL;
		size_t k;
		json_t *f;
		json_array_foreach(json_object_get(st, "flows"), k, f)
			if (!strcmp(str(f, "name"), name))
				live = f;
		char cur[WJ_TIME_LEN] = "(not started)";
		int64_t cv = c ? json_integer_value(json_object_get(c, "cursor")) : start;
		if (c)
			when(cv, cur);
		int64_t origin = c && json_object_get(c, "origin")
					 ? json_integer_value(json_object_get(c, "origin"))
					 : start;
		double prog = wj_now() > origin ? (double)(cv - origin) / (double)(wj_now() - origin)
						: 1.0;
		char lagbuf[32] = "-";
		if (c || fc)
			fmt_span(wj_now() - cv, lagbuf, sizeof(lagbuf));
		printf("%-16s %-20s %10s %8.1f%% %8s  %s\n", name, cur, lagbuf,
		       100 * (prog > 1 ? 1 : prog < 0 ? 0 : prog),
		       live ? (json_is_true(json_object_get(live, "paused")) ? "yes" : "no") : "-",
		       live ? str(live, "last_window") : "-");
		json_t *bf = json_object_get(live, "backfill");
		if (json_is_object(bf))
			printf("%-16s backfill %s .. %s at %s (%.1f%%)\n", "", str(bf, "from"),
			       str(bf, "to"), str(bf, "cursor"),
			       100 * json_number_value(json_object_get(bf, "progress")));
	}
	json_t *dq = json_object_get(st, "queue");
	printf("\nqueue       ready %zu, delayed %zu, in flight %zu (capacity %u)\n", ready, delayed,
	       inflight, cfg->queue.capacity);
	printf("orders      %zu known, %lld posted, %zu dead letters, %zu to review\n", docs,
	       st ? num(st, "posted") : 0, dead, review);
	if (dq)
		printf("this run    %lld saved, %lld retried, %lld reconciled (found %lld)\n",
		       num(dq, "saved_since_start"), num(dq, "retried_since_start"),
		       num(dq, "reconciled_found") + num(dq, "reconciled_missing"),
		       num(dq, "reconciled_found"));
	const char *ep;
	json_t *o;
	json_t *api = json_object_get(st, "api_calls");
	if (api) {
		printf("\n%-18s %8s %8s %6s %9s %9s %8s\n", "API CALLS", "ok", "limited", "auth",
		       "transient", "permanent", "unknown");
		json_object_foreach(api, ep, o)
			printf("%-18s %8lld %8lld %6lld %9lld %9lld %8lld\n", ep, num(o, "ok"),
			       num(o, "rate_limited"), num(o, "auth"), num(o, "transient"),
			       num(o, "permanent"), num(o, "unknown"));
	}
	if (st)
		printf("\n");
	print_endpoints(st);
	json_t *kd = json_object_get(st, "kingdee");
	if (kd)
		printf("kingdee     token %s, expires %s\n",
		       json_is_true(json_object_get(kd, "logged_in")) ? "held" : "none",
		       str(kd, "token_expires"));
	print_errors(st);
out:
	json_decref(flows);
	json_decref(cursors);
	json_decref(st);
	wj_store_close(s);
	wj_config_free(cfg);
	return 0;
}

/* ---- dead letters and review ---------------------------------------------------------------- */

/* Find the key of an entry of db by stockin_no, stockin_id or "flow:stockin_id". */
static int find_key(wj_txn_t *t, wj_db_t db, const char *want, char *key, size_t *kl)
{
	wj_iter_t it;
	if (wj_iter_open(t, db, &it) < 0)
		return -EIO;
	int found = -ENOENT;
	for (int r = wj_iter_seek(&it, NULL, 0); r == 0; r = wj_iter_next(&it)) {
		wj_val_t k = wj_iter_key(&it), v = wj_iter_val(&it);
		const char *flow = k.data;
		size_t fl = strnlen(flow, k.len);
		const char *id = flow + fl + 1;
		size_t il = k.len > fl + 1 ? k.len - fl - 1 : 0;
		char fid[300];
		snprintf(fid, sizeof(fid), "%.*s:%.*s", (int)fl, flow, (int)il, id);
		bool match = !strcmp(fid, want) || (strlen(want) == il && !memcmp(id, want, il));
		if (!match) {
			json_t *o = json_loadb(v.data, v.len, 0, NULL);
			match = o && !strcmp(str(o, "stockin_no"), want);
			json_decref(o);
		}
		if (match && k.len <= WJ_DOC_KEY_MAX_CTL) {
			memcpy(key, k.data, k.len);
			*kl = k.len;
			found = 0;
			break;
		}
	}
	wj_iter_close(&it);
	return found;
}

/* The bill of a review record or doc: its number, or its id when Kingdee answered none (V1). */
static void review_bill(json_t *o, char *buf, size_t size)
{
	const char *no = json_string_value(json_object_get(o, "bill_no"));
	if (no && *no)
		snprintf(buf, size, "%s", no);
	else
		snprintf(buf, size, "id %s", str(o, "bill_id"));
}

/* One side of a change: the value, or "(none)" where the field is not on that side. */
static const char *side(json_t *change, const char *k)
{
	return json_is_string(json_object_get(change, k)) ? str(change, k) : "(none)";
}

/* What changed, in a line: the first field changed (and how many more), or why no bill can be
 * made of the order now, or the record's note. */
static void review_summary(json_t *o, char *buf, size_t size)
{
	json_t *ch = json_object_get(o, "changes"), *c0 = json_array_get(ch, 0);
	size_t n = json_array_size(ch);
	if (c0) {
		int k = snprintf(buf, size, "%s: %s -> %s", str(c0, "field"), side(c0, "old"),
				 side(c0, "new"));
		if (n > 1 && k > 0 && (size_t)k < size)
			snprintf(buf + k, size - (size_t)k, " (+%zu more)", n - 1);
	} else if (json_is_string(json_object_get(o, "cannot_map")))
		snprintf(buf, size, "no bill can be made of it now: %s", str(o, "cannot_map"));
	else if (json_is_string(json_object_get(o, "note")))
		snprintf(buf, size, "%s", str(o, "note"));
	else
		snprintf(buf, size, "content changed after posting");
}

/* Top-level times of a stored record, as "YYYY-MM-DD HH:MM:SS" in the configured offset for
 * people (the order, the bill body and other nested data are left as they are). */
static void humanize(json_t *rec)
{
	static const char *const secs[] = {"ts", "seen", "first_seen", "saved_at", "updated",
					   "started", "cursor", "origin", "read_at", "from", "to"};
	static const char *const msecs[] = {"unknown_at", "sent_from"};
	char buf[WJ_TIME_LEN];
	for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
		json_t *v = json_object_get(rec, secs[i]);
		if (json_is_integer(v) && json_integer_value(v) > 0)
			json_object_set_new(rec, secs[i], json_string(when(json_integer_value(v), buf)));
	}
	for (size_t i = 0; i < sizeof(msecs) / sizeof(msecs[0]); i++) {
		json_t *v = json_object_get(rec, msecs[i]);
		if (json_is_integer(v) && json_integer_value(v) > 0)
			json_object_set_new(rec, msecs[i],
					    json_string(when(json_integer_value(v) / 1000, buf)));
	}
}

static void print_json(json_t *o)
{
	char *text = wj_json_dumps_pretty(o); /* stored bodies show 3.3, as sent */
	printf("%s\n", text ? text : "null");
	free(text);
}

/* Every entry of the dead-letter list (dead) or the review list: a table, or with as_json an
 * array of the records (a dead letter without its order and body: dlq show has them), each
 * with its "flow" and "stockin_id". */
static void print_list(wj_store_t *s, wj_db_t db, bool dead, bool as_json)
{
	wj_txn_t t;
	if (wj_txn_begin(s, &t, false) < 0)
		return;
	wj_iter_t it;
	size_t n = 0;
	json_t *all = json_array();
	if (!as_json && dead)
		printf("%-12s %-24s %-12s %-19s %8s  %s\n", "FLOW", "STOCKIN_NO", "STOCKIN_ID",
		       "SINCE", "ATTEMPTS", "REASON");
	else if (!as_json)
		printf("%-12s %-24s %-20s %-20s  %s\n", "FLOW", "STOCKIN_NO", "BILL", "SEEN", "CHANGE");
	if (wj_iter_open(&t, db, &it) == 0) {
		for (int r = wj_iter_seek(&it, NULL, 0); r == 0; r = wj_iter_next(&it)) {
			wj_val_t k = wj_iter_key(&it), v = wj_iter_val(&it);
			json_t *o = shown_record(v.data, v.len);
			if (!json_is_object(o)) {
				json_decref(o);
				o = json_object();
			}
			size_t fl = strnlen(k.data, k.len);
			char *flow = shown(k.data, fl);
			char *id = shown((const char *)k.data + fl + 1, k.len > fl ? k.len - fl - 1 : 0);
			char at[WJ_TIME_LEN];
			if (as_json) {
				json_object_set_new(o, "flow", json_string(flow));
				json_object_set_new(o, "stockin_id", json_string(id));
				if (dead) {
					json_object_del(o, "order");
					json_object_del(o, "body");
				}
				json_array_append(all, o);
			} else if (dead) {
				printf("%-12s %-24s %-12s %-19s %8lld  %s\n", flow, str(o, "stockin_no"),
				       id, num(o, "ts") ? when(num(o, "ts"), at) : "-",
				       num(o, "attempts"), str(o, "reason"));
			} else {
				char bill[160], what[400];
				review_bill(o, bill, sizeof(bill));
				review_summary(o, what, sizeof(what));
				printf("%-12s %-24s %-20s %-20s  %s\n", flow, str(o, "stockin_no"), bill,
				       num(o, "seen") ? when(num(o, "seen"), at) : "-", what);
			}
			free(flow);
			free(id);
			json_decref(o);
			n++;
		}
		wj_iter_close(&it);
	}
	wj_txn_abort(&t);
	if (as_json)
		print_json(all);
	else
		printf("%zu %s\n", n, dead ? "dead letters" : "orders to review");
	json_decref(all);
}

/* One entry in full: as stored with as_json, else with its times in the configured offset. */
static int show_entry(wj_store_t *s, wj_db_t db, const char *want, bool as_json)
{
	wj_txn_t t;
	char key[WJ_DOC_KEY_MAX_CTL];
	size_t kl;
	if (wj_txn_begin(s, &t, false) < 0)
		return 1;
	int rc = 1;
	if (find_key(&t, db, want, key, &kl) < 0) {
		fprintf(stderr, "wdt2jdyctl: %s: no such entry in %s\n", want, wj_db_name(db));
	} else {
		wj_val_t v = {0};
		wj_txn_get(&t, db, key, kl, &v);
		json_t *o = shown_record(v.data, v.len);
		if (!as_json)
			humanize(o);
		print_json(o);
		json_decref(o);
		rc = 0;
	}
	wj_txn_abort(&t);
	return rc;
}

typedef struct dlq_op {
	char **wants;
	int n;
	bool all, retry;
	int done, missing;
	wj_buf_t names; /* the stock-in numbers done, for the audit line */
} dlq_op_t;

/* Note the stock-in number of the dead letter at key for the audit line. */
static void dlq_note(wj_txn_t *t, dlq_op_t *op, const char *key, size_t kl)
{
	json_t *dl = wj_txn_get_json(t, WJ_DB_DEAD, key, kl);
	const char *no = json_string_value(json_object_get(dl, "stockin_no"));
	size_t fl = strnlen(key, kl);
	if (op->names.len < 4000)
		wj_buf_printf(&op->names, "%s%s", op->names.len ? " " : "", no ? no : key + fl + 1);
	else if (op->names.data && op->names.data[op->names.len - 1] != '.')
		wj_buf_printf(&op->names, " ...");
	json_decref(dl);
}

/* Put the order under key in the ready queue, above live work. 0 or -errno. */
static int queue_first(wj_txn_t *t, const char *key, size_t kl)
{
	uint64_t seq;
	if (wj_txn_seq_next(t, &seq) < 0)
		return t->err;
	uint8_t qk[9];
	qk[0] = PRIO_REPLAY;
	wj_key_u64be(qk + 1, seq);
	wj_txn_put(t, WJ_DB_QUEUE, qk, sizeof(qk), key, kl);
	return t->err;
}

static int requeue(wj_txn_t *t, const char *key, size_t kl)
{
	json_t *doc = wj_txn_get_json(t, WJ_DB_DOCS, key, kl);
	if (!doc)
		return -ENOENT;
	json_object_set_new(doc, "state", json_string("queued"));
	json_object_set_new(doc, "attempts", json_integer(0));
	json_object_set_new(doc, "prio", json_integer(PRIO_REPLAY));
	json_object_del(doc, "first_error");
	json_object_del(doc, "last_error");
	json_t *dl = wj_txn_get_json(t, WJ_DB_DEAD, key, kl);
	/* A body means a save was sent (or about to be): Kingdee may hold its bill even though
	 * the answer was an error. The daemon asks before posting again. Records of this
	 * version say so themselves ("unknown", with when the saves were sent); for older ones
	 * the last save left shortly before the order was parked. */
	if (json_is_object(json_object_get(dl, "body")) &&
	    !json_is_true(json_object_get(doc, "unknown"))) {
		json_object_set_new(doc, "unknown", json_true());
		json_object_set_new(doc, "unknown_at",
				    json_integer(1000 * json_integer_value(json_object_get(dl, "ts"))));
	}
	wj_val_t ov;
	if (wj_txn_get(t, WJ_DB_ORDERS, key, kl, &ov) < 0) {
		/* the order text was released: post the one the dead letter keeps */
		size_t len;
		char *text = wj_json_canon(json_object_get(dl, "order"), &len);
		if (text)
			wj_txn_put(t, WJ_DB_ORDERS, key, kl, text, len);
		free(text);
	}
	json_decref(dl);
	wj_txn_put_json(t, WJ_DB_DOCS, key, kl, doc);
	json_decref(doc);
	return queue_first(t, key, kl);
}

/* Keep a tombstone (with the content hash) so the same content is not queued again by the
 * poller; the order text goes. */
static void drop_doc(wj_txn_t *t, const char *key, size_t kl)
{
	json_t *doc = wj_txn_get_json(t, WJ_DB_DOCS, key, kl);
	if (!doc)
		doc = json_object();
	json_object_set_new(doc, "state", json_string("dropped"));
	wj_txn_put_json(t, WJ_DB_DOCS, key, kl, doc);
	json_decref(doc);
	wj_txn_del(t, WJ_DB_ORDERS, key, kl);
	wj_txn_del(t, WJ_DB_SLIM, key, kl);
}

static int dlq_fn(wj_txn_t *t, void *arg)
{
	dlq_op_t *op = arg;
	op->done = op->missing = 0;
	wj_buf_reset(&op->names); /* the transaction may run again */
	char key[WJ_DOC_KEY_MAX_CTL];
	size_t kl;
	if (op->all) {
		for (;;) {
			wj_iter_t it;
			if (wj_iter_open(t, WJ_DB_DEAD, &it) < 0)
				return t->err;
			int r = wj_iter_seek(&it, NULL, 0);
			if (r == 0) {
				wj_val_t k = wj_iter_key(&it);
				kl = k.len < sizeof(key) ? k.len : sizeof(key);
				memcpy(key, k.data, kl);
			}
			wj_iter_close(&it);
			if (r < 0)
				break;
			dlq_note(t, op, key, kl);
			if (op->retry)
				requeue(t, key, kl);
			else
				drop_doc(t, key, kl);
			wj_txn_del(t, WJ_DB_DEAD, key, kl);
			op->done++;
			if (t->err)
				return t->err;
		}
		return t->err;
	}
	for (int i = 0; i < op->n; i++) {
		if (find_key(t, WJ_DB_DEAD, op->wants[i], key, &kl) < 0) {
			fprintf(stderr, "wdt2jdyctl: %s: not in the dead-letter list\n", op->wants[i]);
			op->missing++;
			continue;
		}
		dlq_note(t, op, key, kl);
		if (op->retry) {
			requeue(t, key, kl);
		} else {
			drop_doc(t, key, kl);
		}
		wj_txn_del(t, WJ_DB_DEAD, key, kl);
		op->done++;
	}
	return t->err;
}

static int show_review(wj_store_t *s, const char *want);

/* dlq|review list [--json], dlq|review show ORDER [--json]: read-only, paths only. */
static int list_or_show(int argc, char **argv, wj_db_t db, bool list)
{
	cmd_args_t a;
	if (cmd_opts(argc, argv, OPT_JSON, !list, !list, &a) < 0)
		return 1;
	wj_config_t *cfg = load_paths();
	wj_store_t *s = open_state(cfg, false);
	int rc = 0;
	if (list)
		print_list(s, db, db == WJ_DB_DEAD, a.json);
	else if (db == WJ_DB_REVIEW && !a.json)
		rc = show_review(s, a.argv[0]);
	else
		rc = show_entry(s, db, a.argv[0], a.json);
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
}

static int cmd_dlq(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	cmd_args_t a;
	char name[32];
	snprintf(name, sizeof(name), "dlq %s", sub);
	argv[1] = name;
	if (!strcmp(sub, "list") || !strcmp(sub, "show"))
		return list_or_show(argc - 1, argv + 1, WJ_DB_DEAD, !strcmp(sub, "list"));
	if (strcmp(sub, "retry") && strcmp(sub, "drop")) {
		fprintf(stderr, "wdt2jdyctl dlq: expected list, show, retry or drop\n");
		return 1;
	}
	bool retry = !strcmp(sub, "retry");
	if (cmd_opts(argc - 1, argv + 1, OPT_ALL | (retry ? 0 : OPT_YES), 0, -1, &a) < 0)
		return 1;
	if (a.all == (a.argc > 0)) {
		fprintf(stderr, "wdt2jdyctl %s: give ORDER... or --all\n", name);
		return 1;
	}
	if (a.all && !retry && !a.yes) {
		fprintf(stderr, "wdt2jdyctl dlq drop --all forgets every dead letter for good: no "
				"bill will be made for any of them. Add --yes to do it.\n");
		return 1;
	}
	wj_config_t *cfg = load_config();
	wj_store_t *s = open_store(cfg);
	int rc = 0;
	dlq_op_t op = {.wants = a.argv, .n = a.argc, .retry = retry, .all = a.all};
	int r = wj_store_write(s, dlq_fn, &op);
	if (r < 0) {
		fprintf(stderr, "wdt2jdyctl: cannot update the state: %s\n", wj_store_strerror());
		rc = 1;
	} else {
		printf("%d %s%s\n", op.done, op.retry ? "queued again" : "dropped",
		       op.retry ? " (the daemon picks them up within a second)" : "");
		rc = op.missing ? 1 : 0;
		if (op.done)
			ctl_audit(cfg, name, "%d %s%s: %s", op.done,
				  op.retry ? "dead letters queued again" : "dead letters dropped",
				  op.all ? " (--all)" : "", op.names.data ? op.names.data : "");
	}
	wj_buf_free(&op.names);
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
}

/* A review record for the operator: the bill, then what its bill would hold now, field by
 * field (old -> new), then the whole record with the order as WDT has it now. */
static int show_review(wj_store_t *s, const char *want)
{
	wj_txn_t t;
	char key[WJ_DOC_KEY_MAX_CTL];
	size_t kl;
	if (wj_txn_begin(s, &t, false) < 0)
		return 1;
	if (find_key(&t, WJ_DB_REVIEW, want, key, &kl) < 0) {
		wj_txn_abort(&t);
		fprintf(stderr, "wdt2jdyctl: %s: no such entry in review\n", want);
		return 1;
	}
	wj_val_t v = {0};
	wj_txn_get(&t, WJ_DB_REVIEW, key, kl, &v);
	json_t *o = shown_record(v.data, v.len);
	wj_txn_abort(&t);
	char bill[160], seen[WJ_TIME_LEN];
	review_bill(o, bill, sizeof(bill));
	printf("flow        %s\nstockin_no  %s\nbill        %s\nseen        %s\n", str(o, "flow"),
	       str(o, "stockin_no"), bill, num(o, "seen") ? when(num(o, "seen"), seen) : "-");
	if (json_is_string(json_object_get(o, "note")))
		printf("note        %s\n", str(o, "note"));
	json_t *ch = json_object_get(o, "changes"), *c;
	size_t i;
	if (json_array_size(ch)) {
		printf("what its bill would hold now (old -> new):\n");
		json_array_foreach(ch, i, c)
			printf("  %s: %s -> %s\n", str(c, "field"), side(c, "old"), side(c, "new"));
	} else if (json_is_string(json_object_get(o, "cannot_map"))) {
		printf("no bill can be made of it now: %s\n", str(o, "cannot_map"));
	} else if (json_is_string(json_object_get(o, "changes_unknown"))) {
		printf("%s\n", str(o, "changes_unknown"));
	}
	humanize(o);
	printf("record:\n");
	print_json(o);
	json_decref(o);
	return 0;
}

static int review_done_fn(wj_txn_t *t, void *arg)
{
	const char *want = arg;
	char key[WJ_DOC_KEY_MAX_CTL];
	size_t kl;
	if (find_key(t, WJ_DB_REVIEW, want, key, &kl) < 0)
		return -ENOENT;
	wj_txn_del(t, WJ_DB_REVIEW, key, kl);
	return t->err;
}

static int cmd_review(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	cmd_args_t a;
	char name[32];
	snprintf(name, sizeof(name), "review %s", sub);
	argv[1] = name;
	if (!strcmp(sub, "list") || !strcmp(sub, "show"))
		return list_or_show(argc - 1, argv + 1, WJ_DB_REVIEW, !strcmp(sub, "list"));
	if (strcmp(sub, "done")) {
		fprintf(stderr, "wdt2jdyctl review: expected list, show or done\n");
		return 1;
	}
	if (cmd_opts(argc - 1, argv + 1, 0, 1, 1, &a) < 0)
		return 1;
	wj_config_t *cfg = load_config();
	wj_store_t *s = open_store(cfg);
	int rc = 0;
	int r = wj_store_write(s, review_done_fn, a.argv[0]);
	if (r < 0) {
		fprintf(stderr, "wdt2jdyctl: %s: %s\n", a.argv[0],
			r == -ENOENT ? "not in the review list" : wj_store_strerror());
		rc = 1;
	} else {
		printf("review of %s done\n", a.argv[0]);
		ctl_audit(cfg, name, "review of %s done", a.argv[0]);
	}
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
}

/* ---- cursors --------------------------------------------------------------------------------- */

/* at is no later than now - the flow's lag: a cursor or backfill end past it would move past
 * orders that WDT does not show yet (what the lag waits for). 0, or -1 with a message naming
 * the limit. */
static int check_not_ahead(const wj_config_t *cfg, const wj_flow_cfg_t *f, int64_t at,
			   const char *what)
{
	int64_t lag = (int64_t)(f->lag_ms / 1000), limit = wj_now() - lag;
	if (at <= limit)
		return 0;
	char a[WJ_TIME_LEN], b[WJ_TIME_LEN];
	wj_time_format(at, cfg->tz_offset, a);
	wj_time_format(limit, cfg->tz_offset, b);
	fprintf(stderr, "wdt2jdyctl: %s %s is later than now - lag (flow %s, cursor.lag %llds): "
		"at most %s, since orders stamped later may not be visible in WDT yet\n", what, a,
		f->name, (long long)lag, b);
	return -1;
}

typedef struct cursor_set {
	const char *flow;
	int64_t at, origin;
} cursor_set_t;

/* "op" counts the operator's changes: a window being read when it changes does not record its
 * end over the operator's cursor. */
static int cursor_set_fn(wj_txn_t *t, void *arg)
{
	cursor_set_t *c = arg;
	json_t *old = wj_txn_get_json(t, WJ_DB_CURSORS, c->flow, strlen(c->flow));
	json_int_t op = json_integer_value(json_object_get(old, "op")) + 1;
	json_decref(old);
	json_t *cur = json_pack("{s:I, s:I, s:I, s:b, s:I}", "cursor", (json_int_t)c->at, "origin",
				(json_int_t)c->origin, "updated", (json_int_t)wj_now(), "set_by_ctl",
				1, "op", op);
	wj_txn_put_json(t, WJ_DB_CURSORS, c->flow, strlen(c->flow), cur);
	json_decref(cur);
	return t->err;
}

static bool bf_unfinished(const json_t *job);
static void bf_describe(const json_t *job, int tz, char *buf, size_t size);

/* cursor show [FLOW]: each flow's cursor (or cursor.start when it has not started), and a
 * backfill under way. */
static int cursor_show(int argc, char **argv)
{
	cmd_args_t a;
	if (cmd_opts(argc, argv, OPT_JSON, 0, 1, &a) < 0)
		return 1;
	wj_config_t *cfg = load_paths();
	wj_store_t *s = open_state(cfg, false);
	wj_txn_t t;
	int rc = 0;
	if (wj_txn_begin(s, &t, false) < 0) {
		fprintf(stderr, "wdt2jdyctl: %s\n", wj_store_strerror());
		rc = 1;
		goto out;
	}
	json_t *flows = flow_list(cfg, &t), *out = json_array(), *n;
	size_t i;
	bool found = false;
	json_array_foreach(flows, i, n) {
		const char *name = json_string_value(n);
		if (a.argc && strcmp(a.argv[0], name))
			continue;
		found = true;
		const wj_flow_cfg_t *fc = flow_cfg(cfg, name);
		json_t *c = wj_txn_get_json(&t, WJ_DB_CURSORS, name, strlen(name));
		char key[WJ_DOC_KEY_MAX_CTL];
		size_t fl = strlen(name);
		memcpy(key, name, fl + 1);
		memcpy(key + fl + 1, "backfill", 8);
		json_t *bf = wj_txn_get_json(&t, WJ_DB_CURSORS, key, fl + 9);
		char buf[WJ_TIME_LEN], job[128] = "";
		int64_t at = c ? json_integer_value(json_object_get(c, "cursor"))
			       : fc ? fc->cursor_start : 0;
		if (bf_unfinished(bf))
			bf_describe(bf, shown_tz, job, sizeof(job));
		json_array_append_new(out, json_pack("{s:s, s:s?, s:I, s:b, s:s?}", "flow", name,
						     "cursor", c || fc ? when(at, buf) : NULL,
						     "cursor_epoch", (json_int_t)at, "started", c != NULL,
						     "backfill", job[0] ? job : NULL));
		if (a.json)
			; /* printed below, all at once */
		else if (c)
			printf("%s %s\n", name, buf);
		else if (fc)
			printf("%s %s (not started; cursor.start)\n", name, buf);
		else
			printf("%s (not started)\n", name);
		if (!a.json && job[0])
			printf("%s backfill %s\n", name, job);
		json_decref(c);
		json_decref(bf);
	}
	wj_txn_abort(&t);
	if (a.json)
		print_json(out);
	if (a.argc && !found) {
		fprintf(stderr, "wdt2jdyctl: no flow named \"%s\" in %s\n", a.argv[0], cfg->path);
		rc = 1;
	}
	json_decref(out);
	json_decref(flows);
out:
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
}

static int cmd_cursor(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "show")) {
		char name[] = "cursor show";
		argv[1] = name;
		return cursor_show(argc - 1, argv + 1);
	}
	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	wj_config_t *cfg = load_config();
	wj_store_t *s = open_store(cfg);
	int rc = 0;
	if (!strcmp(argv[1], "set") && argc == 4) {
		const wj_flow_cfg_t *f = NULL;
		for (size_t i = 0; i < cfg->n_flows; i++)
			if (!strcmp(cfg->flows[i].name, argv[2]))
				f = &cfg->flows[i];
		cursor_set_t c = {.flow = argv[2]};
		if (!f) {
			fprintf(stderr, "wdt2jdyctl: no flow named \"%s\" in %s\n", argv[2], cfg->path);
			rc = 1;
		} else if (wj_time_parse(argv[3], cfg->tz_offset, &c.at) < 0) {
			fprintf(stderr, "wdt2jdyctl: expected a time like \"2026-11-01 00:00:00\", "
					"got \"%s\"\n", argv[3]);
			rc = 1;
		} else if (check_not_ahead(cfg, f, c.at, "cursor") < 0) {
			rc = 1;
		} else {
			c.origin = c.at < f->cursor_start ? c.at : f->cursor_start;
			if (wj_store_write(s, cursor_set_fn, &c) < 0) {
				fprintf(stderr, "wdt2jdyctl: %s\n", wj_store_strerror());
				rc = 1;
			} else {
				printf("%s cursor set to %s (taken up at the flow's next window; a "
				       "window being read now ends without moving it)\n", argv[2],
				       argv[3]);
				ctl_audit(cfg, "cursor set", "cursor of %s set to %s", argv[2], argv[3]);
			}
		}
	} else {
		usage(stderr);
		rc = 1;
	}
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
}

/* ---- backfill ------------------------------------------------------------------------------ */

typedef struct bf_set {
	char key[WJ_DOC_KEY_MAX_CTL];
	size_t kl;
	int64_t from, to;
	bool cancel;
	int64_t id;   /* of the job queued */
	json_t *found; /* the job there was (unfinished: the new one is refused) */
} bf_set_t;

static bool bf_unfinished(const json_t *job)
{
	return job && json_integer_value(json_object_get(job, "cursor")) <
			      json_integer_value(json_object_get(job, "to"));
}

/* Queue a job (refused with -EBUSY while another one is unfinished) or cancel it. Each job has
 * its own id, so that the daemon never records progress into another job's record. */
static int bf_set_fn(wj_txn_t *t, void *arg)
{
	bf_set_t *b = arg;
	json_decref(b->found);
	b->found = wj_txn_get_json(t, WJ_DB_CURSORS, b->key, b->kl);
	if (b->cancel) {
		if (b->found)
			wj_txn_del(t, WJ_DB_CURSORS, b->key, b->kl);
		return t->err;
	}
	if (bf_unfinished(b->found))
		return -EBUSY;
	int64_t last = json_integer_value(json_object_get(b->found, "id"));
	b->id = wj_now_ms() > last ? wj_now_ms() : last + 1;
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I}", "from", (json_int_t)b->from, "to",
			      (json_int_t)b->to, "cursor", (json_int_t)b->from, "started",
			      (json_int_t)wj_now(), "id", (json_int_t)b->id);
	wj_txn_put_json(t, WJ_DB_CURSORS, b->key, b->kl, o);
	json_decref(o);
	return t->err;
}

/* "FROM .. TO, at CURSOR" of a job, in the configured offset. */
static void bf_describe(const json_t *job, int tz, char *buf, size_t size)
{
	char a[WJ_TIME_LEN], b[WJ_TIME_LEN], c[WJ_TIME_LEN];
	wj_time_format(json_integer_value(json_object_get(job, "from")), tz, a);
	wj_time_format(json_integer_value(json_object_get(job, "to")), tz, b);
	wj_time_format(json_integer_value(json_object_get(job, "cursor")), tz, c);
	snprintf(buf, size, "%s .. %s, at %s", a, b, c);
}

static bool daemon_running(const wj_config_t *cfg)
{
	json_t *st = cfg->status_file ? json_load_file(cfg->status_file, 0, NULL) : NULL;
	long long pid = st ? num(st, "pid") : 0;
	json_decref(st);
	return pid > 0 && kill((pid_t)pid, 0) == 0;
}

/* The job's record as the daemon keeps it (NULL when gone or another job's). */
static json_t *bf_record(wj_store_t *s, const bf_set_t *b)
{
	wj_txn_t t;
	json_t *o = NULL;
	if (wj_txn_begin(s, &t, false) == 0) {
		o = wj_txn_get_json(&t, WJ_DB_CURSORS, b->key, b->kl);
		wj_txn_abort(&t);
	}
	if (o && json_integer_value(json_object_get(o, "id")) != b->id) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

/* The orders a backfill found new that have their outcome. */
static long long bf_settled(json_t *job)
{
	return num(job, "new_saved") + num(job, "new_adopted") + num(job, "new_dead");
}

/* Its period is read: say what was found, wait while the daemon posts the new orders, then
 * say how that ended. 0, or 1 when the job went or the daemon stopped first. */
static int bf_wait_new(wj_store_t *s, const wj_config_t *cfg, const bf_set_t *b,
		       const char *flow)
{
	json_t *job = bf_record(s, b);
	if (!job) {
		printf("the backfill of %s was cancelled or replaced\n", flow);
		return 1;
	}
	printf("backfill of %s read %lld orders: %lld new, %lld already posted, %lld parked, "
	       "%lld already queued\n", flow, num(job, "read"), num(job, "new"), num(job, "posted"),
	       num(job, "parked"), num(job, "queued"));
	fflush(stdout);
	int64_t last_line = wj_now();
	while (bf_settled(job) < num(job, "new")) {
		if (!daemon_running(cfg)) {
			printf("the daemon stopped: %lld of the %lld new orders have their outcome\n",
			       bf_settled(job), num(job, "new"));
			json_decref(job);
			return 1;
		}
		if (wj_now() - last_line >= 10) {
			printf("posting the new orders: %lld of %lld done\n", bf_settled(job),
			       num(job, "new"));
			fflush(stdout);
			last_line = wj_now();
		}
		sleep(1);
		json_decref(job);
		if (!(job = bf_record(s, b))) {
			printf("the backfill of %s was cancelled or replaced\n", flow);
			return 1;
		}
	}
	printf("backfill of %s done: read %lld, new %lld (%lld saved, %lld adopted, %lld parked), "
	       "already posted %lld, parked %lld\n", flow, num(job, "read"), num(job, "new"),
	       num(job, "new_saved"), num(job, "new_adopted"), num(job, "new_dead"),
	       num(job, "posted"), num(job, "parked"));
	json_decref(job);
	return 0;
}

static int cmd_backfill(int argc, char **argv)
{
	const char *from = NULL, *to = NULL;
	bool wait = true, cancel = false;
	static const struct option opts[] = {
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 't'},
		{"no-wait", no_argument, NULL, 'n'},
		{"cancel", no_argument, NULL, 'x'},
		{NULL, 0, NULL, 0},
	};
	optind = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'f': from = optarg; break;
		case 't': to = optarg; break;
		case 'n': wait = false; break;
		case 'x': cancel = true; break;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc - 1 || (cancel ? from || to : !from || !to)) {
		fprintf(stderr, "wdt2jdyctl: usage: backfill FLOW --from T --to T [--no-wait] | "
				"backfill FLOW --cancel\n");
		return 1;
	}
	const char *flow = argv[optind];
	wj_config_t *cfg = load_config();
	bf_set_t b = {.cancel = cancel};
	int rc = 1;
	const wj_flow_cfg_t *f = flow_named(cfg, flow);
	if (!f) {
		wj_config_free(cfg);
		return 1;
	}
	if (!cancel && (wj_time_parse(from, cfg->tz_offset, &b.from) < 0 ||
			wj_time_parse(to, cfg->tz_offset, &b.to) < 0 || b.to <= b.from)) {
		fprintf(stderr, "wdt2jdyctl: expected --from and --to like \"2026-11-01 00:00:00\", "
				"from before to\n");
		wj_config_free(cfg);
		return 1;
	}
	if (!cancel && check_not_ahead(cfg, f, b.to, "backfill --to") < 0) {
		wj_config_free(cfg);
		return 1;
	}
	size_t fl = strlen(flow);
	memcpy(b.key, flow, fl);
	b.key[fl] = '\0';
	memcpy(b.key + fl + 1, "backfill", 8);
	b.kl = fl + 9;
	wj_store_t *s = open_store(cfg);
	char job[128] = "";
	int wr = wj_store_write(s, bf_set_fn, &b);
	if (b.found)
		bf_describe(b.found, cfg->tz_offset, job, sizeof(job));
	if (wr == -EBUSY) {
		fprintf(stderr, "wdt2jdyctl: a backfill of %s is already under way (%s): wait for it "
				"to finish (`wdt2jdyctl status` shows its progress) or cancel it with "
				"`wdt2jdyctl backfill %s --cancel`\n", flow, job, flow);
		goto out;
	}
	if (wr < 0) {
		fprintf(stderr, "wdt2jdyctl: %s\n", wj_store_strerror());
		goto out;
	}
	rc = 0;
	if (cancel) {
		if (!bf_unfinished(b.found))
			printf("no backfill of %s under way\n", flow);
		else
			printf("backfill of %s (%s) cancelled; the orders it read are kept\n", flow,
			       job);
		if (bf_unfinished(b.found))
			ctl_audit(cfg, "backfill", "backfill of %s (%s) cancelled", flow, job);
		goto out;
	}
	printf("backfill of %s from %s to %s queued\n", flow, from, to);
	ctl_audit(cfg, "backfill", "backfill of %s from %s to %s queued", flow, from, to);
	if (!wait)
		goto out;
	if (!daemon_running(cfg)) {
		printf("the daemon is not running: it starts the backfill when it runs\n");
		goto out;
	}
	bool tty = isatty(STDOUT_FILENO);
	int64_t last_line = 0;
	for (;;) {
		wj_txn_t t;
		int64_t cur = b.from;
		bool ours = true;
		if (wj_txn_begin(s, &t, false) == 0) {
			json_t *o = wj_txn_get_json(&t, WJ_DB_CURSORS, b.key, b.kl);
			cur = json_integer_value(json_object_get(o, "cursor"));
			ours = json_integer_value(json_object_get(o, "id")) == b.id;
			json_decref(o);
			wj_txn_abort(&t);
		}
		if (!ours) {
			printf("%sthe backfill of %s was cancelled or replaced\n", tty ? "\n" : "",
			       flow);
			rc = 1;
			goto out;
		}
		double frac = (double)(cur - b.from) / (double)(b.to - b.from);
		if (frac > 1)
			frac = 1;
		char at[WJ_TIME_LEN];
		wj_time_format(cur, cfg->tz_offset, at);
		if (tty) {
			int w = (int)(frac * 40);
			printf("\r[%.*s%*s] %5.1f%%  %s", w, "########################################",
			       40 - w, "", 100 * frac, at);
			fflush(stdout);
		} else if (wj_now() - last_line >= 10 || frac >= 1) {
			printf("backfill %s: %.1f%% (at %s)\n", flow, 100 * frac, at);
			fflush(stdout);
			last_line = wj_now();
		}
		if (cur >= b.to)
			break;
		if (!daemon_running(cfg)) {
			printf("%sthe daemon stopped; the backfill resumes when it runs again\n",
			       tty ? "\n" : "");
			goto out;
		}
		sleep(1);
	}
	if (tty)
		printf("\n");
	rc = bf_wait_new(s, cfg, &b, flow);
out:
	json_decref(b.found);
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
}

/* ---- cutover: mark-posted ------------------------------------------------------------------ */

/* The flow's compiled mapping (caller frees), or NULL with a message. */
static wj_mapping_t *flow_mapping(const wj_config_t *cfg, const wj_flow_cfg_t *f)
{
	wj_mapping_t *m = NULL;
	char err[512];
	if (wj_mapping_compile(f->mapping, cfg->kingdee.api, f->remark_template, &m, err,
			       sizeof(err)) < 0)
		fprintf(stderr, "wdt2jdyctl: flow %s: mapping: %s\n", f->name, err);
	return m;
}

/* A document number of a mark-posted file: not empty, at most 127 bytes of UTF-8 without
 * spaces or control characters. NULL when it is one, else what is wrong. */
static const char *number_problem(const char *s)
{
	size_t n = strlen(s);
	if (!n)
		return "empty";
	if (n > 127)
		return "longer than 127 bytes";
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = wj_utf8_decode((const unsigned char *)s + i, n - i, &cp);
		if (!l)
			return "not UTF-8";
		if (cp == ' ' || wj_cp_unprintable(cp))
			return "contains a space or a control character";
		i += l;
	}
	return NULL;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

/* Read a mark-posted file into marks: stock-in number → {"bill_no", "line"}. One number a
 * line, optionally a bill number after a tab or a comma; blank lines and '#' comments are
 * skipped. 0, or -EINVAL after printing the first bad line (file and line). */
static int read_marks(const char *path, json_t *marks)
{
	FILE *fp = fopen(path, "r");
	if (!fp) {
		fprintf(stderr, "wdt2jdyctl: cannot read %s: %s\n", path, strerror(errno));
		return -EINVAL;
	}
	char *line = NULL;
	size_t cap = 0;
	unsigned ln = 0;
	int ret = 0;
	while (ret == 0 && getline(&line, &cap, fp) >= 0) {
		ln++;
		char *s = trim(line);
		if (!*s || *s == '#')
			continue;
		char *whole = strdup(s), *sep = strpbrk(s, "\t,"), *bill = "";
		if (!whole) {
			fprintf(stderr, "wdt2jdyctl: out of memory\n");
			ret = -ENOMEM;
			break;
		}
		if (sep) {
			*sep = '\0';
			bill = trim(sep + 1);
			s = trim(s);
		}
		const char *why = number_problem(s), *what = "stock-in number", *bad = s;
		if (!why && *bill && strpbrk(bill, "\t,"))
			why = "expected STOCKIN_NO, or STOCKIN_NO and a bill number after a tab or "
			      "a comma", what = "line", bad = whole;
		else if (!why && *bill && (why = number_problem(bill)))
			what = "bill number", bad = bill;
		json_t *old = json_object_get(marks, s);
		if (!why && old && strcmp(json_string_value(json_object_get(old, "bill_no")), bill)) {
			fprintf(stderr, "wdt2jdyctl: %s:%u: %s given with bill number \"%s\" on line "
				"%lld and \"%s\" here\n", path, ln, s,
				json_string_value(json_object_get(old, "bill_no")),
				(long long)json_integer_value(json_object_get(old, "line")), bill);
			ret = -EINVAL;
		} else if (why) {
			char *shown_s = shown(bad, strlen(bad));
			fprintf(stderr, "wdt2jdyctl: %s:%u: %s \"%s\": %s\n", path, ln, what, shown_s,
				why);
			free(shown_s);
			ret = -EINVAL;
		} else if (!old) {
			json_object_set_new(marks, s, json_pack("{s:s, s:I}", "bill_no", bill, "line",
								(json_int_t)ln));
		}
		free(whole);
	}
	if (ret == 0 && ferror(fp)) {
		fprintf(stderr, "wdt2jdyctl: cannot read %s: %s\n", path, strerror(errno));
		ret = -EINVAL;
	}
	free(line);
	fclose(fp);
	return ret;
}

typedef struct marks_op {
	const wj_config_t *cfg;
	const char *flow;
	wj_mapping_t *m;
	json_t *marks;    /* stock-in number → {"bill_no"} */
	json_t *keys;     /* doc keys (without the flow) of the flow's orders that are marked */
	size_t imported, known, posted;
	json_t *differ;   /* posted by the daemon under another bill: [[no, ours, marked]] */
} marks_op_t;

/* "flow\0name" (a doc key, a marks key) into buf of WJ_DOC_KEY_MAX_CTL bytes: its length, 0
 * when it does not fit. */
static size_t flow_key(const char *flow, const char *name, char *buf)
{
	size_t fl = strlen(flow), nl = strlen(name);
	if (fl + 1 + nl > WJ_DOC_KEY_MAX_CTL)
		return 0;
	memcpy(buf, flow, fl + 1);
	memcpy(buf + fl + 1, name, nl);
	return fl + 1 + nl;
}

/* The order of a doc as stored (its text, else its dead letter's copy). Caller owns it. */
static json_t *stored_order(wj_txn_t *t, const char *key, size_t kl)
{
	json_t *order = wj_txn_get_json(t, WJ_DB_ORDERS, key, kl);
	if (!order) {
		json_t *dl = wj_txn_get_json(t, WJ_DB_DEAD, key, kl);
		order = json_incref(json_object_get(dl, "order"));
		json_decref(dl);
	}
	return order;
}

/* Record the known order under key as posted with the marked bill (see wj_doc_saved). */
static void mark_known(wj_txn_t *t, marks_op_t *op, const char *key, size_t kl, json_t *doc,
		       const char *bill)
{
	const char *state = str(doc, "state");
	if (!strcmp(state, "saved")) {
		op->posted++;
		char ours[160];
		review_bill(doc, ours, sizeof(ours));
		if (*bill && !json_object_get(doc, "adopted") && strcmp(str(doc, "bill_no"), bill))
			json_array_append_new(op->differ, json_pack("[s, s, s]", str(doc, "stockin_no"),
								    ours, bill));
		return;
	}
	json_t *order = stored_order(t, key, kl), *view = NULL;
	char err[512];
	if (order && op->m)
		view = wj_bill_view(op->m, op->cfg, t, order, err, sizeof(err));
	wj_doc_saved(t, key, kl, doc, "", bill, "mark-posted", view);
	wj_txn_put_json(t, WJ_DB_DOCS, key, kl, doc);
	json_decref(view);
	json_decref(order);
	op->known++;
}

static int marks_fn(wj_txn_t *t, void *arg)
{
	marks_op_t *op = arg;
	op->imported = op->known = op->posted = 0;
	json_array_clear(op->differ);
	json_array_clear(op->keys);
	const char *no;
	json_t *v;
	char key[WJ_DOC_KEY_MAX_CTL];
	size_t fl = strlen(op->flow);
	json_object_foreach(op->marks, no, v) {
		size_t kl = flow_key(op->flow, no, key);
		json_t *mark = json_pack("{s:O, s:I}", "bill_no", json_object_get(v, "bill_no"),
					 "imported", (json_int_t)wj_now());
		wj_txn_put_json(t, WJ_DB_MARKS, key, kl, mark);
		json_decref(mark);
		op->imported++;
	}
	/* the flow's orders known already (docs are keyed by stockin_id: read their numbers) */
	wj_iter_t it;
	if (wj_iter_open(t, WJ_DB_DOCS, &it) < 0)
		return t->err;
	for (int r = wj_iter_seek(&it, op->flow, fl + 1); r == 0; r = wj_iter_next(&it)) {
		wj_val_t k = wj_iter_key(&it), dv = wj_iter_val(&it);
		if (k.len <= fl + 1 || memcmp(k.data, op->flow, fl + 1))
			break;
		json_t *doc = json_loadb(dv.data, dv.len, 0, NULL);
		if (json_object_get(op->marks, str(doc, "stockin_no")))
			json_array_append_new(op->keys, json_stringn((const char *)k.data + fl + 1,
								     k.len - fl - 1));
		json_decref(doc);
	}
	wj_iter_close(&it);
	size_t i;
	json_array_foreach(op->keys, i, v) {
		size_t kl = flow_key(op->flow, json_string_value(v), key);
		json_t *doc = wj_txn_get_json(t, WJ_DB_DOCS, key, kl);
		json_t *mark = json_object_get(op->marks, str(doc, "stockin_no"));
		if (doc && mark)
			mark_known(t, op, key, kl, doc, json_string_value(json_object_get(mark,
											  "bill_no")));
		json_decref(doc);
	}
	return t->err;
}

static int cmd_mark_posted(int argc, char **argv)
{
	cmd_args_t a;
	if (cmd_opts(argc, argv, 0, 2, 2, &a) < 0)
		return 1;
	const char *flow = a.argv[0], *file = a.argv[1];
	wj_config_t *cfg = load_config();
	const wj_flow_cfg_t *f = flow_named(cfg, flow);
	marks_op_t op = {.cfg = cfg, .flow = flow, .marks = json_object(),
			 .keys = json_array(), .differ = json_array()};
	int rc = 1;
	wj_store_t *s = NULL;
	if (!f || !(op.m = flow_mapping(cfg, f)) || read_marks(file, op.marks) < 0)
		goto out;
	s = open_store(cfg);
	if (wj_store_write(s, marks_fn, &op) < 0) {
		fprintf(stderr, "wdt2jdyctl: cannot update the state: %s\n", wj_store_strerror());
		goto out;
	}
	printf("%zu stock-in numbers of %s imported from %s as posted by another integrator\n"
	       "  %zu already read by the daemon, now recorded as posted (not posted again)\n"
	       "  %zu already posted by the daemon (left as they are)\n"
	       "  %zu not read yet (recorded as posted when read)\n",
	       op.imported, f->name, file, op.known, op.posted,
	       op.imported - op.known - op.posted);
	size_t i;
	json_t *d;
	json_array_foreach(op.differ, i, d)
		printf("warning: %s was posted by the daemon as bill %s, but %s names bill %s: "
		       "Kingdee may hold both\n", json_string_value(json_array_get(d, 0)),
		       json_string_value(json_array_get(d, 1)), file,
		       json_string_value(json_array_get(d, 2)));
	ctl_audit(cfg, "mark-posted", "%zu stock-in numbers of %s marked as posted from %s",
		  op.imported, f->name, file);
	rc = 0;
out:
	json_decref(op.marks);
	json_decref(op.keys);
	json_decref(op.differ);
	wj_mapping_free(op.m);
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
}

/* ---- cutover: repost ------------------------------------------------------------------------ */

/* The two API clients on a loop of their own, for the commands that ask the services. */
typedef struct net {
	uv_loop_t loop;
	bool loop_ok;
	wj_http_t *wdt_http, *jdy_http;
	wj_wdt_t *wdt;
	wj_jdy_t *jdy;
} net_t;

static void net_close(net_t *n)
{
	if (n->wdt)
		wj_wdt_free(n->wdt);
	if (n->jdy)
		wj_jdy_free(n->jdy);
	if (n->wdt_http)
		wj_http_free(n->wdt_http);
	if (n->jdy_http)
		wj_http_free(n->jdy_http);
	if (n->loop_ok) {
		uv_run(&n->loop, UV_RUN_DEFAULT);
		uv_loop_close(&n->loop);
		wj_http_global_cleanup();
	}
}

/* Clients for cfg; the Kingdee one starts with the daemon's token when it is still good, so
 * that no login is spent on a few calls. 0 or -1 with a message. */
static int net_open(net_t *n, const wj_config_t *cfg, wj_store_t *s)
{
	memset(n, 0, sizeof(*n));
	if (uv_loop_init(&n->loop) != 0 || wj_http_global_init() < 0) {
		fprintf(stderr, "wdt2jdyctl: cannot initialise the event loop\n");
		return -1;
	}
	n->loop_ok = true;
	wj_wdt_opts_t wo;
	wj_jdy_opts_t jo;
	wj_engine_wdt_opts(cfg, &wo);
	wj_engine_jdy_opts(cfg, &jo);
	wj_http_opts_t wh, jh;
	wj_engine_http_opts(cfg, false, &wh);
	wj_engine_http_opts(cfg, true, &jh);
	wh.max_inflight = jh.max_inflight = 1; /* one call at a time is all a command needs */
	n->wdt_http = wj_http_new(&n->loop, &wh);
	n->jdy_http = wj_http_new(&n->loop, &jh);
	if (n->wdt_http)
		n->wdt = wj_wdt_new(n->wdt_http, &wo);
	if (n->jdy_http)
		n->jdy = wj_jdy_new(&n->loop, n->jdy_http, &jo);
	if (!n->wdt || !n->jdy) {
		fprintf(stderr, "wdt2jdyctl: cannot initialise the API clients\n");
		return -1;
	}
	wj_txn_t t;
	if (wj_txn_begin(s, &t, false) == 0) {
		wj_val_t v;
		if (wj_txn_get(&t, WJ_DB_META, "jdy_token", 9, &v) == 0) {
			char *tok = strndup(v.data, v.len);
			if (tok)
				wj_jdy_restore_token(n->jdy, tok);
			free(tok);
		}
		wj_txn_abort(&t);
	}
	return 0;
}

typedef struct sync_call {
	bool done;
	int cls;          /* wj_jdy_class_t or wj_wdt_class_t */
	json_t *data;     /* Kingdee: res->data; WDT: the orders */
	char error[512];
} sync_call_t;

static void run_until(net_t *n, const bool *done)
{
	while (!*done && uv_run(&n->loop, UV_RUN_ONCE))
		;
}

static void on_jdy_sync(const wj_jdy_result_t *res, void *arg)
{
	sync_call_t *c = arg;
	c->cls = res->cls;
	c->data = json_incref(res->data);
	snprintf(c->error, sizeof(c->error), "%s", res->error);
	c->done = true;
}

static void on_wdt_sync(wj_wdt_result_t *res, void *arg)
{
	sync_call_t *c = arg;
	c->cls = res->cls;
	c->data = res->orders;
	res->orders = NULL;
	snprintf(c->error, sizeof(c->error), "%s", res->error);
	c->done = true;
}

/* The order stockin_no of flow f as WDT has it now, read by its number over [from, to] in
 * windows of at most 30 days, from the start. New reference, NULL with a message. */
static json_t *wdt_order(net_t *n, const wj_config_t *cfg, const wj_flow_cfg_t *f,
			 const char *no, int64_t from, int64_t to)
{
	char st[WJ_TIME_LEN], et[WJ_TIME_LEN], a[WJ_TIME_LEN], b[WJ_TIME_LEN];
	wj_kv_t *kv = calloc(f->n_params + 5, sizeof(*kv));
	if (!kv)
		return NULL;
	for (int64_t s = from; s <= to; s += 30 * 86400) {
		int64_t e = s + 30 * 86400 - 1 < to ? s + 30 * 86400 - 1 : to;
		wj_time_format(s, cfg->tz_offset, st);
		wj_time_format(e, cfg->tz_offset, et);
		size_t k = 0;
		for (size_t i = 0; i < f->n_params; i++)
			kv[k++] = f->params[i];
		kv[k++] = (wj_kv_t){"stockin_no", (char *)no};
		kv[k++] = (wj_kv_t){"start_time", st};
		kv[k++] = (wj_kv_t){"end_time", et};
		kv[k++] = (wj_kv_t){"page_no", "0"};
		kv[k++] = (wj_kv_t){"page_size", "100"};
		sync_call_t c = {0};
		if (wj_wdt_query(n->wdt, f->method, kv, k, NULL, on_wdt_sync, &c) < 0) {
			fprintf(stderr, "wdt2jdyctl: cannot send the WDT query\n");
			break;
		}
		run_until(n, &c.done);
		if (c.cls != WJ_WDT_OK) {
			fprintf(stderr, "wdt2jdyctl: WDT query for %s (%s .. %s) failed: %s\n", no, st,
				et, c.error[0] ? c.error : "no answer");
			json_decref(c.data);
			break;
		}
		size_t i;
		json_t *o;
		json_array_foreach(c.data, i, o) {
			if (!strcmp(str(o, "stockin_no"), no)) {
				json_incref(o);
				json_decref(c.data);
				free(kv);
				return o;
			}
		}
		json_decref(c.data);
		if (e >= to) {
			wj_time_format(from, cfg->tz_offset, a);
			wj_time_format(to, cfg->tz_offset, b);
			fprintf(stderr, "wdt2jdyctl: WDT has no order %s of flow %s (%s) modified "
				"between %s and %s; give --from to look earlier\n", no, f->name,
				f->method, a, b);
		}
	}
	free(kv);
	return NULL;
}

/* The first bill q lists (every page) that m matches: a new reference to its row, NULL when
 * none; *failed when Kingdee could not be asked (a message is printed). */
static json_t *find_bill(net_t *n, wj_jdy_bill_query_t q, const wj_bill_match_t *m,
			 bool *failed)
{
	for (q.page = 1; q.page <= 1000; q.page++) {
		sync_call_t c = {0};
		if (wj_jdy_list_bills(n->jdy, &q, on_jdy_sync, &c) < 0) {
			fprintf(stderr, "wdt2jdyctl: cannot send the Kingdee list request\n");
			*failed = true;
			return NULL;
		}
		run_until(n, &c.done);
		if (c.cls != WJ_JDY_OK) {
			char *e = shown(c.error, strlen(c.error));
			fprintf(stderr, "wdt2jdyctl: Kingdee bill list failed: %s\n", e[0] ? e
				: "no answer");
			free(e);
			json_decref(c.data);
			*failed = true;
			return NULL;
		}
		json_t *rows = json_object_get(c.data, "rows"), *row;
		size_t i;
		json_array_foreach(rows, i, row) {
			if (wj_bill_row_matches(row, m)) {
				json_incref(row);
				json_decref(c.data);
				return row;
			}
		}
		bool last = !json_array_size(rows) ||
			    (int64_t)q.page >= json_integer_value(json_object_get(c.data, "total_page"));
		json_decref(c.data);
		if (last)
			return NULL;
	}
	fprintf(stderr, "wdt2jdyctl: more than 1000 pages of bills to read\n");
	*failed = true;
	return NULL;
}

typedef struct repost {
	const char *flow, *no;
	char key[WJ_DOC_KEY_MAX_CTL];
	size_t kl;
	json_t *doc;      /* as found */
	json_t *order;    /* as WDT has it now */
	int64_t saved_at;
} repost_t;

/* The doc of flow's order no: key and a copy of the doc. 0, -ENOENT. */
static int find_doc(wj_txn_t *t, const char *flow, const char *no, char *key, size_t *kl,
		    json_t **doc)
{
	size_t fl = strlen(flow);
	wj_iter_t it;
	int ret = -ENOENT;
	*doc = NULL;
	if (wj_iter_open(t, WJ_DB_DOCS, &it) < 0)
		return -EIO;
	for (int r = wj_iter_seek(&it, flow, fl + 1); r == 0 && ret; r = wj_iter_next(&it)) {
		wj_val_t k = wj_iter_key(&it), v = wj_iter_val(&it);
		if (k.len <= fl + 1 || memcmp(k.data, flow, fl + 1))
			break;
		json_t *d = json_loadb(v.data, v.len, 0, NULL);
		if (d && !strcmp(str(d, "stockin_no"), no) && k.len <= WJ_DOC_KEY_MAX_CTL) {
			memcpy(key, k.data, k.len);
			*kl = k.len;
			*doc = json_incref(d);
			ret = 0;
		}
		json_decref(d);
	}
	wj_iter_close(&it);
	return ret;
}

/* Queue the order again, as WDT has it now, unless its doc changed since it was read. */
static int repost_fn(wj_txn_t *t, void *arg)
{
	repost_t *r = arg;
	json_t *doc = wj_txn_get_json(t, WJ_DB_DOCS, r->key, r->kl);
	if (!doc || strcmp(str(doc, "state"), "saved") ||
	    json_integer_value(json_object_get(doc, "saved_at")) != r->saved_at) {
		json_decref(doc);
		return -ESTALE;
	}
	size_t len;
	uint8_t hash[32];
	char hex[65], *text = wj_json_canon(r->order, &len);
	if (!text || wj_sha256(text, len, hash) < 0) {
		free(text);
		json_decref(doc);
		return -ENOMEM;
	}
	wj_hex(hash, sizeof(hash), hex, false);
	wj_txn_put(t, WJ_DB_ORDERS, r->key, r->kl, text, len);
	free(text);
	wj_txn_del(t, WJ_DB_SLIM, r->key, r->kl);
	wj_txn_del(t, WJ_DB_POSTED, r->key, r->kl);
	wj_txn_del(t, WJ_DB_REVIEW, r->key, r->kl);
	char mk[WJ_DOC_KEY_MAX_CTL];
	size_t ml = flow_key(r->flow, r->no, mk);
	if (ml)
		wj_txn_del(t, WJ_DB_MARKS, mk, ml); /* a bill it named is gone too */
	json_t *was = json_pack("{s:O, s:O, s:I, s:I}", "bill_no",
				json_object_get(doc, "bill_no") ?: json_null(), "bill_id",
				json_object_get(doc, "bill_id") ?: json_null(), "saved_at",
				(json_int_t)r->saved_at, "reposted_at", (json_int_t)wj_now());
	static const char *const gone[] = {"bill_no", "bill_id", "saved_at", "adopted", "review",
					   "unknown", "unknown_at", "sent_from", "marker", "bf",
					   "bf_done", "first_error", "last_error", NULL};
	for (const char *const *g = gone; *g; g++)
		json_object_del(doc, *g);
	json_object_set_new(doc, "reposted", was);
	json_object_set_new(doc, "state", json_string("queued"));
	json_object_set_new(doc, "hash", json_string(hex));
	json_object_set_new(doc, "attempts", json_integer(0));
	json_object_set_new(doc, "prio", json_integer(PRIO_REPLAY));
	wj_txn_put_json(t, WJ_DB_DOCS, r->key, r->kl, doc);
	json_decref(doc);
	return queue_first(t, r->key, r->kl);
}

/* Whether Kingdee still holds a bill of the order: by the header bill number the mapping sets,
 * by the bills created since its bill was saved (by the marker, the stock-in number or the
 * bill recorded), and by the bills dated around its bill date. 1 (the bill is printed), 0, or
 * -1 when Kingdee could not be asked. */
static int bill_still_there(net_t *n, const repost_t *r, const json_t *view, const char *marker)
{
	bool failed = false;
	json_t *row = NULL;
	const char *billno = json_string_value(json_object_get(view, "billno"));
	if (billno && *billno) {
		wj_jdy_bill_query_t q = {.search = billno};
		row = find_bill(n, q, &(wj_bill_match_t){.bill_no = billno}, &failed);
	}
	wj_bill_match_t m = {.marker = marker, .stockin_no = r->no,
			     .bill_no = json_string_value(json_object_get(r->doc, "bill_no")),
			     .bill_id = json_string_value(json_object_get(r->doc, "bill_id"))};
	if (!row && !failed) {
		/* the clocks of both sides may be off by some minutes */
		wj_jdy_bill_query_t q = {.created_from_ms = r->saved_at * 1000 - 900000,
					 .created_to_ms = wj_now_ms() + 900000};
		row = find_bill(n, q, &m, &failed);
	}
	char from[11], to[11];
	if (!row && !failed && wj_bill_date_range(view, WJ_BILL_DATE_DAYS, from, to) == 0) {
		wj_jdy_bill_query_t q = {.bill_date_from = from, .bill_date_to = to};
		row = find_bill(n, q, &m, &failed);
	}
	if (failed)
		return -1;
	if (!row)
		return 0;
	json_t *o = shown_json(row);
	fprintf(stderr, "wdt2jdyctl: refused: Kingdee still holds bill %s (id %s, dated %s, "
		"remark \"%s\") of %s: delete it in Kingdee first, or leave the order as it is\n",
		str(o, "bill_no"), str(o, "id"), str(o, "bill_date"), str(o, "remark"), r->no);
	json_decref(o);
	json_decref(row);
	return 1;
}

/* Where to look for the order in WDT: from its modified time when recorded (it only moves
 * later), else from a month before the daemon first read it. */
static int64_t repost_from(const json_t *doc)
{
	int64_t mod = json_integer_value(json_object_get(doc, "modified"));
	if (mod > 0)
		return mod;
	return json_integer_value(json_object_get(doc, "first_seen")) - 30 * 86400;
}

static int cmd_repost(int argc, char **argv)
{
	const char *from_arg = NULL;
	static const struct option opts[] = {
		{"from", required_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	optind = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'f') {
			fprintf(stderr, "wdt2jdyctl: usage: repost FLOW STOCKIN_NO [--from T]\n");
			return 1;
		}
		from_arg = optarg;
	}
	if (optind != argc - 2) {
		fprintf(stderr, "wdt2jdyctl: usage: repost FLOW STOCKIN_NO [--from T]\n");
		return 1;
	}
	wj_config_t *cfg = load_config();
	const wj_flow_cfg_t *f = flow_named(cfg, argv[optind]);
	repost_t r = {.flow = argv[optind], .no = argv[optind + 1]};
	wj_mapping_t *m = NULL;
	wj_store_t *s = NULL;
	json_t *view = NULL;
	net_t n = {0};
	int rc = 1;
	int64_t from = 0;
	char marker[256], err[600];
	if (!f || !(m = flow_mapping(cfg, f)))
		goto out;
	if (from_arg && wj_time_parse(from_arg, cfg->tz_offset, &from) < 0) {
		fprintf(stderr, "wdt2jdyctl: expected --from like \"2026-11-01 00:00:00\"\n");
		goto out;
	}
	s = open_store(cfg);
	wj_txn_t t;
	if (wj_txn_begin(s, &t, false) < 0 ||
	    find_doc(&t, r.flow, r.no, r.key, &r.kl, &r.doc) < 0) {
		wj_txn_abort(&t);
		fprintf(stderr, "wdt2jdyctl: %s: no order of flow %s with this stock-in number in "
			"%s\n", r.no, r.flow, cfg->state_dir);
		goto out;
	}
	wj_txn_abort(&t);
	const char *state = str(r.doc, "state");
	if (strcmp(state, "saved")) {
		fprintf(stderr, "wdt2jdyctl: %s has no bill to post again: it is %s%s\n", r.no, state,
			!strcmp(state, "dead") ? " (`wdt2jdyctl dlq retry` queues it)"
					       : " (the daemon posts it)");
		goto out;
	}
	r.saved_at = json_integer_value(json_object_get(r.doc, "saved_at"));
	if (!from_arg)
		from = repost_from(r.doc);
	if (net_open(&n, cfg, s) < 0 || !(r.order = wdt_order(&n, cfg, f, r.no, from, wj_now())))
		goto out;
	if (wj_txn_begin(s, &t, false) == 0) {
		view = wj_bill_view(m, cfg, &t, r.order, err, sizeof(err));
		wj_txn_abort(&t);
	}
	if (!view || wj_mapping_marker(m, r.order, marker, sizeof(marker)) < 0) {
		char *e = shown(err, strlen(err));
		fprintf(stderr, "wdt2jdyctl: %s cannot be posted as WDT has it now: %s\n", r.no,
			view ? "no marker (remark)" : e);
		free(e);
		goto out;
	}
	int there = bill_still_there(&n, &r, view, marker);
	if (there != 0)
		goto out;
	int wr = wj_store_write(s, repost_fn, &r);
	if (wr == -ESTALE) {
		fprintf(stderr, "wdt2jdyctl: %s changed in the state meanwhile; run the command "
			"again\n", r.no);
		goto out;
	}
	if (wr < 0) {
		fprintf(stderr, "wdt2jdyctl: cannot update the state: %s\n", wj_store_strerror());
		goto out;
	}
	char had[160];
	review_bill(r.doc, had, sizeof(had));
	printf("%s queued again: Kingdee holds no bill of it (it had bill %s); the daemon posts it "
	       "within a second when it runs\n", r.no, had);
	ctl_audit(cfg, "repost", "%s of %s queued again (it had bill %s, not in Kingdee)", r.no,
		  r.flow, had);
	rc = 0;
out:
	json_decref(view);
	json_decref(r.doc);
	json_decref(r.order);
	net_close(&n);
	wj_mapping_free(m);
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
}

/* ---- check --online, preview ------------------------------------------------------------- */

/* The loop of a command that talks to the services. Nothing is written: no log file (lines
 * below error go nowhere, the command prints what matters), no state. */
static int online_begin(const wj_config_t *cfg, uv_loop_t *loop)
{
	wj_log_set_secrets(wj_config_secrets(cfg));
	wj_log_set_level(WJ_LOG_ERROR);
	if (uv_loop_init(loop) != 0)
		goto fail;
	if (wj_http_global_init() == 0)
		return 0;
	uv_loop_close(loop);
fail:
	fprintf(stderr, "wdt2jdyctl: cannot initialise the event loop\n");
	return -EIO;
}

/* Run until every handle is closed (the clients free themselves), then close the loop. */
static void online_end(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	wj_http_global_cleanup();
}

static void on_check_done(const wj_check_result_t *res, void *arg)
{
	*(wj_check_result_t *)arg = *res;
}

static const char *const step_outcomes[] = {"OK", "FAILED", "SKIPPED", "NOT RUN"};

/* The result, one line per step. Exit status: 0 when no step failed. */
static int check_print(const wj_check_result_t *res)
{
	unsigned failed = 0, skipped = 0;
	for (int i = 0; i < WJ_CHECK_STEPS; i++) {
		char *d = shown(res->detail[i], strlen(res->detail[i]));
		printf("%-20s %-8s %s\n", wj_check_step_name(i), step_outcomes[res->outcome[i]], d);
		free(d);
		failed += res->outcome[i] == WJ_STEP_FAILED || res->outcome[i] == WJ_STEP_NOT_RUN;
		skipped += res->outcome[i] == WJ_STEP_SKIPPED;
		if (i != WJ_CHECK_WDT)
			continue;
		if (!res->clock_known)
			printf("%-20s %-8s %s\n", "wdt clock", "-", "unknown: WDT's answer had no Date");
		else
			printf("%-20s %-8s WDT's clock minus this host's: %+.1f s (±%.1f s, from the "
			       "Date of its answer)\n", "wdt clock", "-",
			       (double)res->clock_offset_ms / 1000, (double)res->clock_margin_ms / 1000);
	}
	if (failed)
		printf("%u of %d steps failed\n", failed, WJ_CHECK_STEPS);
	else
		printf("all steps passed (%u skipped)\n", skipped);
	return failed ? 1 : 0;
}

static int cmd_check(int argc, char **argv)
{
	bool online = false;
	wj_check_opts_t o = {0};
	static const struct option opts[] = {
		{"online", no_argument, NULL, 'o'},
		{"material", required_argument, NULL, 'm'},
		{"store", required_argument, NULL, 's'},
		{NULL, 0, NULL, 0},
	};
	optind = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'o': online = true; break;
		case 'm': o.material = optarg; break;
		case 's': o.store = optarg; break;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc || (!online && (o.material || o.store))) {
		fprintf(stderr, "wdt2jdyctl: usage: check [--online [--material N] [--store N]]\n");
		return 1;
	}
	wj_config_t *cfg = load_config();
	if (!online) {
		printf("configuration OK\n");
		wj_config_free(cfg);
		return 0;
	}
	uv_loop_t loop;
	wj_check_result_t res;
	wj_check_t *chk;
	int rc = 1;
	if (online_begin(cfg, &loop) < 0)
		goto out;
	if (wj_check_start(&loop, cfg, &o, on_check_done, &res, &chk) < 0) {
		fprintf(stderr, "wdt2jdyctl: cannot start the check: out of memory\n");
	} else {
		uv_run(&loop, UV_RUN_DEFAULT);
		rc = check_print(&res);
	}
	online_end(&loop);
out:
	wj_config_free(cfg);
	return rc;
}

typedef struct preview_out {
	FILE *out;       /* --out, or NULL */
	const char *path;
	bool write_failed;
	int err;
	char why[700];
	wj_preview_stats_t st;
} preview_out_t;

static const char *const preview_actions[] = {"post", "park", "posted already", "unknown"};

static void on_preview_item(const wj_preview_item_t *it, void *arg)
{
	preview_out_t *po = arg;
	char *no = shown(it->stockin_no, strlen(it->stockin_no));
	char *wh = shown(it->warehouse, strlen(it->warehouse));
	char *store = shown(it->store, strlen(it->store));
	char *why = shown(it->reason, strlen(it->reason));
	char where[300];
	snprintf(where, sizeof(where), "%s → %s", *wh ? wh : "-", *store ? store : "-");
	printf("%-24s %-10.10s %5zu  %-22s %s%s%s\n", no, *it->date ? it->date : "-", it->lines,
	       where, preview_actions[it->action], *why ? ": " : "", why);
	free(no);
	free(wh);
	free(store);
	free(why);
	if (!po->out || it->action != WJ_PREVIEW_POST)
		return;
	json_t *s = json_string(it->stockin_no);
	char *q = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
	if (!q || fprintf(po->out, "{\"stockin_no\":%s,\"body\":%s}\n", q, it->body) < 0)
		po->write_failed = true;
	free(q);
	json_decref(s);
}

static void on_preview_done(int err, const char *why, const wj_preview_stats_t *st, void *arg)
{
	preview_out_t *po = arg;
	po->err = err;
	snprintf(po->why, sizeof(po->why), "%s", why ? why : "");
	po->st = *st;
}

/* The state, read only, when the daemon has made one; NULL otherwise (nothing is created). */
static wj_store_t *open_store_if_any(const wj_config_t *cfg)
{
	char path[4096];
	wj_store_t *s = NULL;
	snprintf(path, sizeof(path), "%s/data.mdb", cfg->state_dir);
	if (access(path, F_OK) != 0)
		return NULL;
	if (wj_store_open(cfg->state_dir, cfg->map_size, cfg->map_max, &s) < 0) {
		fprintf(stderr, "wdt2jdyctl: cannot read the state in %s (%s): orders already posted "
				"are not told apart\n", cfg->state_dir, wj_store_strerror());
		return NULL;
	}
	load_secrets(cfg, s);
	return s;
}

/* report --html FILE [--days N] [--lang zh|en]: read-only, paths only. */
static int cmd_report(int argc, char **argv)
{
	static const struct option opts[] = {
		{"html", required_argument, NULL, 'o'},
		{"days", required_argument, NULL, 'd'},
		{"lang", required_argument, NULL, 'l'},
		{"state-dir", required_argument, NULL, 's'},
		{NULL, 0, NULL, 0},
	};
	const char *file = NULL;
	wj_report_opts_t o = {.days = WJ_REPORT_DAYS_DEFAULT, .now = wj_now()};
	char *end;
	int c;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'o': file = optarg; break;
		case 's': state_dir_opt = optarg; break;
		case 'd': {
			long n = strtol(optarg, &end, 10);
			if (*end || end == optarg || n < 1 || n > WJ_HISTORY_DAYS) {
				fprintf(stderr, "wdt2jdyctl report: --days: expected a number of days "
						"from 1 to %d, not \"%s\"\n", WJ_HISTORY_DAYS, optarg);
				return 1;
			}
			o.days = (unsigned)n;
			break;
		}
		case 'l':
			if (strcmp(optarg, "zh") && strcmp(optarg, "en")) {
				fprintf(stderr, "wdt2jdyctl report: --lang: expected zh or en, not "
						"\"%s\"\n", optarg);
				return 1;
			}
			o.en = !strcmp(optarg, "en");
			break;
		default:
			fprintf(stderr, "wdt2jdyctl report: unknown option %s\n", argv[optind - 1]);
			return 1;
		}
	}
	if (!file || optind < argc) {
		fprintf(stderr, "wdt2jdyctl report: %s\n",
			!file ? "--html FILE is required" : "too many arguments");
		return 1;
	}
	wj_config_t *cfg = load_paths();
	wj_store_t *s = open_state(cfg, false);
	load_secrets(cfg, s);
	json_t *st = json_load_file(cfg->status_file, 0, NULL); /* none: the daemon is stopped */
	int r = wj_report_write(file, s, cfg, st, &o);
	if (r < 0)
		fprintf(stderr, "wdt2jdyctl report: cannot write %s: %s\n", file, strerror(-r));
	json_decref(st);
	wj_store_close(s);
	wj_config_free(cfg);
	return r < 0 ? 1 : 0;
}

static int cmd_preview(int argc, char **argv)
{
	const char *from = NULL, *to = NULL, *out = NULL;
	static const struct option opts[] = {
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 't'},
		{"out", required_argument, NULL, 'o'},
		{NULL, 0, NULL, 0},
	};
	optind = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'f': from = optarg; break;
		case 't': to = optarg; break;
		case 'o': out = optarg; break;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc - 1 || !from || !to) {
		fprintf(stderr, "wdt2jdyctl: usage: preview FLOW --from T --to T [--out FILE]\n");
		return 1;
	}
	const char *flow = argv[optind];
	wj_config_t *cfg = load_config();
	wj_preview_opts_t o = {0};
	preview_out_t po = {.path = out};
	wj_store_t *s = NULL;
	uv_loop_t loop;
	int rc = 1;
	for (size_t i = 0; i < cfg->n_flows; i++)
		if (!strcmp(cfg->flows[i].name, flow))
			o.flow = &cfg->flows[i];
	if (!o.flow) {
		fprintf(stderr, "wdt2jdyctl: no flow named \"%s\" in %s\n", flow, cfg->path);
		goto out;
	}
	if (wj_time_parse(from, cfg->tz_offset, &o.from) < 0 ||
	    wj_time_parse(to, cfg->tz_offset, &o.to) < 0 || o.to < o.from) {
		fprintf(stderr, "wdt2jdyctl: expected --from and --to like \"2026-11-01 00:00:00\" "
				"(timezone %s), from not after to\n", cfg->timezone);
		goto out;
	}
	if (out && !(po.out = fopen(out, "w"))) {
		fprintf(stderr, "wdt2jdyctl: cannot write %s: %s\n", out, strerror(errno));
		goto out;
	}
	s = open_store_if_any(cfg);
	o.store = s;
	if (online_begin(cfg, &loop) < 0)
		goto out;
	char a[WJ_TIME_LEN], b[WJ_TIME_LEN], why[400];
	wj_time_format(o.from, cfg->tz_offset, a);
	wj_time_format(o.to, cfg->tz_offset, b);
	wj_preview_t *p;
	if (wj_preview_start(&loop, cfg, &o, on_preview_item, on_preview_done, &po, &p, why,
			     sizeof(why)) < 0) {
		fprintf(stderr, "wdt2jdyctl: cannot start the preview: %s\n", why);
		online_end(&loop);
		goto out;
	}
	printf("preview of %s, orders modified %s .. %s (%s); nothing is posted\n", flow, a, b,
	       cfg->timezone);
	if (!s)
		printf("no state in %s yet: no order counts as posted\n", cfg->state_dir);
	printf("\n");
	printf("%-24s %-10s %5s  %-22s %s\n", "STOCK-IN", "DATE", "LINES", "WAREHOUSE → STORE",
	       "WOULD");
	uv_run(&loop, UV_RUN_DEFAULT);
	online_end(&loop);
	if (po.err) {
		char *w = shown(po.why, strlen(po.why));
		fprintf(stderr, "wdt2jdyctl: preview failed: %s\n", w);
		free(w);
		goto out;
	}
	printf("\n%zu orders read, %zu eligible: %zu to post, %zu to park, %zu posted already, "
	       "%zu unknown\n", po.st.read, po.st.eligible, po.st.post, po.st.park, po.st.posted,
	       po.st.error);
	if (po.out && (fflush(po.out) != 0 || po.write_failed)) {
		fprintf(stderr, "wdt2jdyctl: cannot write %s: %s\n", out, strerror(errno));
		goto out;
	}
	if (po.out)
		printf("bodies of the %zu orders to post in %s\n", po.st.post, out);
	rc = po.st.error ? 1 : 0;
out:
	if (po.out)
		fclose(po.out);
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
}

/* ---- alert test ---------------------------------------------------------------------------- */

typedef struct alert_test {
	const wj_config_t *cfg;
	size_t answered, failed;
	uv_loop_t *loop;
	char (*why)[300]; /* per robot: "" delivered, else the reason */
} alert_test_t;

static const char *const alert_kind_names[] = {"dingtalk", "wecom", "feishu", "webhook"};

static void on_alert_report(size_t i, bool ok, const char *why, void *arg)
{
	alert_test_t *t = arg;
	snprintf(t->why[i], sizeof(t->why[i]), "%s", ok ? "" : why && *why ? why : "failed");
	t->failed += !ok;
	if (++t->answered == t->cfg->n_alerts)
		uv_stop(t->loop);
}

static int cmd_alert(int argc, char **argv)
{
	if (argc != 2 || strcmp(argv[1], "test")) {
		usage(stderr);
		return 1;
	}
	wj_config_t *cfg = load_config();
	if (!cfg->n_alerts) {
		fprintf(stderr, "wdt2jdyctl: no alerts configured\n");
		wj_config_free(cfg);
		return 1;
	}
	uv_loop_t loop;
	char instance[600];
	wj_alert_instance(cfg, instance, sizeof(instance));
	alert_test_t t = {.cfg = cfg, .loop = &loop, .why = calloc(cfg->n_alerts, sizeof(*t.why))};
	int rc = 1;
	if (!t.why || uv_loop_init(&loop) != 0 || wj_http_global_init() < 0) {
		fprintf(stderr, "wdt2jdyctl: cannot initialise the event loop\n");
		free(t.why);
		wj_config_free(cfg);
		return 1;
	}
	wj_alerts_t *a = wj_alerts_new(&loop, cfg, instance);
	if (a && wj_alerts_test(a, on_alert_report, &t) == 0) {
		uv_run(&loop, UV_RUN_DEFAULT);
		rc = t.failed || t.answered < cfg->n_alerts ? 1 : 0;
		for (size_t i = 0; i < cfg->n_alerts; i++)
			printf("alerts[%zu] %-8s %s%s\n", i, alert_kind_names[cfg->alerts[i].kind],
			       t.why[i][0] ? "FAILED: " : "OK", t.why[i]);
	}
	free(t.why);
	wj_alerts_free(a);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	wj_http_global_cleanup();
	wj_config_free(cfg);
	return rc;
}

int main(int argc, char **argv)
{
	int c;
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"state-dir", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	while ((c = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config_path = optarg;
			config_given = true;
			break;
		case 's': state_dir_opt = optarg; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("wdt2jdyctl %s\n", WJ_VERSION); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 1;
	}
	const char *cmd = argv[optind];
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	if (!strcmp(cmd, "sign"))
		return cmd_sign(sub_argc - 1, sub_argv + 1);
	if (!strcmp(cmd, "check-config")) {
		cmd_args_t a;
		if (cmd_opts(sub_argc, sub_argv, 0, 0, 0, &a) < 0)
			return 1;
		wj_config_t *cfg = load_config();
		printf("configuration OK\n");
		wj_config_free(cfg);
		return 0;
	}
	if (!strcmp(cmd, "status"))
		return cmd_status(sub_argc, sub_argv);
	if (!strcmp(cmd, "dlq"))
		return cmd_dlq(sub_argc, sub_argv);
	if (!strcmp(cmd, "review"))
		return cmd_review(sub_argc, sub_argv);
	if (!strcmp(cmd, "cursor"))
		return cmd_cursor(sub_argc, sub_argv);
	if (!strcmp(cmd, "backfill"))
		return cmd_backfill(sub_argc, sub_argv);
	if (!strcmp(cmd, "alert"))
		return cmd_alert(sub_argc, sub_argv);
	if (!strcmp(cmd, "mark-posted"))
		return cmd_mark_posted(sub_argc, sub_argv);
	if (!strcmp(cmd, "repost"))
		return cmd_repost(sub_argc, sub_argv);
	if (!strcmp(cmd, "check"))
		return cmd_check(sub_argc, sub_argv);
	if (!strcmp(cmd, "preview"))
		return cmd_preview(sub_argc, sub_argv);
	if (!strcmp(cmd, "report"))
		return cmd_report(sub_argc, sub_argv);
	fprintf(stderr, "wdt2jdyctl: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 1;
}
