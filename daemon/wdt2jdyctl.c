/* wdt2jdyctl: the operator's tool. Reads and edits the daemon's state (LMDB is multi-process
 * safe, so it works while the daemon runs) and computes API signatures for debugging. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/alert.h"
#include "lib/config.h"
#include "lib/http.h"
#include "lib/jdy.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/probe.h"
#include "lib/store.h"
#include "lib/util.h"
#include "lib/wdt.h"
#include "wj_build.h"

enum { EXIT_CONFIG = 78, EXIT_CANTCREAT = 73 };
#define PRIO_REPLAY 0
#define WJ_DOC_KEY_MAX_CTL 256

static const char *config_path = WJ_DEFAULT_CONFIG;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: wdt2jdyctl [-c FILE] COMMAND [ARGS]\n"
		"  status [--json]                 flows, queue, counts, API calls, last error\n"
		"  dlq list                        dead letters: stockin_no and reason\n"
		"  dlq show ORDER                  one dead letter in full (ORDER: stockin_no or id)\n"
		"  dlq retry ORDER... | --all      queue again, above live work\n"
		"  dlq drop ORDER...               forget (no bill will be made)\n"
		"  review list                     orders changed after their bill was posted\n"
		"  review show ORDER | review done ORDER\n"
		"  cursor show [FLOW]              where each flow's polling stands\n"
		"  cursor set FLOW \"YYYY-MM-DD HH:MM:SS\"\n"
		"  backfill FLOW --from T --to T [--no-wait]\n"
		"                                  re-read a past period below live priority\n"
		"  backfill FLOW --cancel          drop the backfill under way\n"
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
		"  sign kingdee-app --app-key K --app-secret S\n"
		"default config: %s\n",
		WJ_DEFAULT_CONFIG);
}

static wj_config_t *load_config(void)
{
	wj_errors_t errs = {0};
	wj_config_t *cfg = wj_config_load(config_path, &errs);
	if (!cfg) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		wj_errors_free(&errs);
		exit(EXIT_CONFIG);
	}
	wj_errors_free(&errs);
	return cfg;
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

static wj_store_t *open_store(const wj_config_t *cfg)
{
	wj_store_t *s;
	if (wj_store_open(cfg->state_dir, cfg->map_size, cfg->map_max, &s) < 0) {
		fprintf(stderr, "wdt2jdyctl: cannot open state in %s: %s\n", cfg->state_dir,
			wj_store_strerror());
		exit(EXIT_CANTCREAT);
	}
	load_secrets(cfg, s);
	return s;
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

static int cmd_status(int argc, char **argv)
{
	bool as_json = argc > 1 && !strcmp(argv[1], "--json");
	wj_config_t *cfg = load_config();
	wj_store_t *s = open_store(cfg);
	json_t *raw = cfg->status_file ? json_load_file(cfg->status_file, 0, NULL) : NULL;
	json_t *st = shown_json(raw); /* written by the daemon, but it quotes remote errors */
	json_decref(raw);
	wj_txn_t t;
	size_t ready = 0, delayed = 0, inflight = 0, dead = 0, review = 0, docs = 0;
	json_t *cursors = json_object();
	if (wj_txn_begin(s, &t, false) == 0) {
		wj_txn_count(&t, WJ_DB_QUEUE, &ready);
		wj_txn_count(&t, WJ_DB_DELAYED, &delayed);
		wj_txn_count(&t, WJ_DB_INFLIGHT, &inflight);
		wj_txn_count(&t, WJ_DB_DEAD, &dead);
		wj_txn_count(&t, WJ_DB_REVIEW, &review);
		wj_txn_count(&t, WJ_DB_DOCS, &docs);
		for (size_t i = 0; i < cfg->n_flows; i++) {
			wj_val_t v;
			if (wj_txn_get(&t, WJ_DB_CURSORS, cfg->flows[i].name,
				       strlen(cfg->flows[i].name), &v) == 0)
				json_object_set_new(cursors, cfg->flows[i].name,
						    shown_record(v.data, v.len));
		}
		wj_txn_abort(&t);
	}
	if (as_json) {
		json_t *o = json_pack("{s:O?, s:{s:I, s:I, s:I}, s:I, s:I, s:I, s:O}", "daemon", st,
				      "queue", "ready", (json_int_t)ready, "delayed",
				      (json_int_t)delayed, "in_flight", (json_int_t)inflight, "dead",
				      (json_int_t)dead, "review", (json_int_t)review, "orders",
				      (json_int_t)docs, "cursors", cursors);
		char *text = json_dumps(o, JSON_INDENT(2));
		printf("%s\n", text);
		free(text);
		json_decref(o);
		goto out;
	}
	bool running = false;
	if (st) {
		long long pid = num(st, "pid");
		running = pid > 0 && kill((pid_t)pid, 0) == 0;
		printf("daemon      %s (pid %lld, started %s, status at %s)\n",
		       running ? "running" : "not running", pid, str(st, "started"), str(st, "now"));
	} else {
		printf("daemon      no status file (%s)\n", cfg->status_file ? cfg->status_file : "-");
	}
	printf("state       %s\n\n", cfg->state_dir);
	printf("%-16s %-20s %10s %9s %8s  %s\n", "FLOW", "CURSOR", "LAG", "PROGRESS", "PAUSED",
	       "LAST WINDOW");
	for (size_t i = 0; i < cfg->n_flows; i++) {
		const char *name = cfg->flows[i].name;
		json_t *c = json_object_get(cursors, name), *live = NULL;
		size_t k;
		json_t *f;
		json_array_foreach(json_object_get(st, "flows"), k, f)
			if (!strcmp(str(f, "name"), name))
				live = f;
		char cur[WJ_TIME_LEN] = "(not started)";
		int64_t cv = c ? json_integer_value(json_object_get(c, "cursor"))
			       : cfg->flows[i].cursor_start;
		if (c)
			wj_time_format(cv, cfg->tz_offset, cur);
		int64_t lag = wj_now() - cv;
		int64_t origin = c && json_object_get(c, "origin")
					 ? json_integer_value(json_object_get(c, "origin"))
					 : cfg->flows[i].cursor_start;
		double prog = wj_now() > origin ? (double)(cv - origin) / (double)(wj_now() - origin)
						: 1.0;
		char lagbuf[32];
		if (lag >= 86400)
			snprintf(lagbuf, sizeof(lagbuf), "%lldd%lldh", (long long)(lag / 86400),
				 (long long)(lag % 86400 / 3600));
		else if (lag >= 3600)
			snprintf(lagbuf, sizeof(lagbuf), "%lldh%lldm", (long long)(lag / 3600),
				 (long long)(lag % 3600 / 60));
		else
			snprintf(lagbuf, sizeof(lagbuf), "%llds", (long long)lag);
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
	json_object_foreach(json_object_get(st, "endpoints"), ep, o)
		if (json_is_string(json_object_get(o, "paused_until")))
			printf("%-11s paused until %s (rate limited)\n", ep, str(o, "paused_until"));
	json_t *kd = json_object_get(st, "kingdee");
	if (kd)
		printf("\nkingdee     token %s, expires %s\n",
		       json_is_true(json_object_get(kd, "logged_in")) ? "held" : "none",
		       str(kd, "token_expires"));
	if (st)
		printf("last error  %s%s%s\n", str(st, "last_error"),
		       json_is_string(json_object_get(st, "last_error_at")) ? " at " : "",
		       json_is_string(json_object_get(st, "last_error_at"))
			       ? str(st, "last_error_at") : "");
out:
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

static void print_list(wj_store_t *s, wj_db_t db, bool dead)
{
	wj_txn_t t;
	if (wj_txn_begin(s, &t, false) < 0)
		return;
	wj_iter_t it;
	size_t n = 0;
	if (dead)
		printf("%-12s %-24s %-12s %8s  %s\n", "FLOW", "STOCKIN_NO", "STOCKIN_ID", "ATTEMPTS",
		       "REASON");
	else
		printf("%-12s %-24s %-20s %-20s  %s\n", "FLOW", "STOCKIN_NO", "BILL_NO", "SEEN", "NOTE");
	if (wj_iter_open(&t, db, &it) == 0) {
		for (int r = wj_iter_seek(&it, NULL, 0); r == 0; r = wj_iter_next(&it)) {
			wj_val_t k = wj_iter_key(&it), v = wj_iter_val(&it);
			json_t *o = shown_record(v.data, v.len);
			size_t fl = strnlen(k.data, k.len);
			char *flow = shown(k.data, fl);
			char *id = shown((const char *)k.data + fl + 1, k.len > fl ? k.len - fl - 1 : 0);
			if (dead) {
				printf("%-12s %-24s %-12s %8lld  %s\n", flow, str(o, "stockin_no"), id,
				       num(o, "attempts"), str(o, "reason"));
			} else {
				char seen[WJ_TIME_LEN];
				wj_time_format(num(o, "seen"), 8 * 3600, seen);
				printf("%-12s %-24s %-20s %-20s  %s\n", flow, str(o, "stockin_no"),
				       str(o, "bill_no"), seen,
				       json_is_string(json_object_get(o, "note")) ? str(o, "note")
					       : "content changed after posting");
			}
			free(flow);
			free(id);
			json_decref(o);
			n++;
		}
		wj_iter_close(&it);
	}
	wj_txn_abort(&t);
	printf("%zu %s\n", n, dead ? "dead letters" : "orders to review");
}

static int show_entry(wj_store_t *s, wj_db_t db, const char *want)
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
		char *text = wj_json_dumps_pretty(o);
		printf("%s\n", text ? text : "{}");
		free(text);
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
} dlq_op_t;

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
	uint64_t seq;
	if (wj_txn_seq_next(t, &seq) < 0)
		return t->err;
	uint8_t qk[9];
	qk[0] = PRIO_REPLAY;
	wj_key_u64be(qk + 1, seq);
	wj_txn_put(t, WJ_DB_QUEUE, qk, sizeof(qk), key, kl);
	return t->err;
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

static int cmd_dlq(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	wj_config_t *cfg = load_config();
	wj_store_t *s = open_store(cfg);
	int rc = 0;
	const char *sub = argv[1];
	if (!strcmp(sub, "list")) {
		print_list(s, WJ_DB_DEAD, true);
	} else if (!strcmp(sub, "show") && argc == 3) {
		rc = show_entry(s, WJ_DB_DEAD, argv[2]);
	} else if ((!strcmp(sub, "retry") || !strcmp(sub, "drop")) && argc >= 3) {
		dlq_op_t op = {.wants = argv + 2, .n = argc - 2, .retry = !strcmp(sub, "retry"),
			       .all = !strcmp(argv[2], "--all")};
		int r = wj_store_write(s, dlq_fn, &op);
		if (r < 0) {
			fprintf(stderr, "wdt2jdyctl: cannot update the state: %s\n",
				wj_store_strerror());
			rc = 1;
		} else {
			printf("%d %s%s\n", op.done, op.retry ? "queued again" : "dropped",
			       op.retry ? " (the daemon picks them up within a second)" : "");
			rc = op.missing ? 1 : 0;
		}
	} else {
		usage(stderr);
		rc = 1;
	}
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
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
	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	wj_config_t *cfg = load_config();
	wj_store_t *s = open_store(cfg);
	int rc = 0;
	if (!strcmp(argv[1], "list")) {
		print_list(s, WJ_DB_REVIEW, false);
	} else if (!strcmp(argv[1], "show") && argc == 3) {
		rc = show_entry(s, WJ_DB_REVIEW, argv[2]);
	} else if (!strcmp(argv[1], "done") && argc == 3) {
		int r = wj_store_write(s, review_done_fn, argv[2]);
		if (r < 0) {
			fprintf(stderr, "wdt2jdyctl: %s: %s\n", argv[2],
				r == -ENOENT ? "not in the review list" : wj_store_strerror());
			rc = 1;
		} else {
			printf("review of %s done\n", argv[2]);
		}
	} else {
		usage(stderr);
		rc = 1;
	}
	wj_store_close(s);
	wj_config_free(cfg);
	return rc;
}

/* ---- cursors --------------------------------------------------------------------------------- */

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

static int cmd_cursor(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	wj_config_t *cfg = load_config();
	wj_store_t *s = open_store(cfg);
	int rc = 0;
	if (!strcmp(argv[1], "show")) {
		wj_txn_t t;
		if (wj_txn_begin(s, &t, false) == 0) {
			for (size_t i = 0; i < cfg->n_flows; i++) {
				const char *name = cfg->flows[i].name;
				if (argc > 2 && strcmp(argv[2], name))
					continue;
				json_t *c = wj_txn_get_json(&t, WJ_DB_CURSORS, name, strlen(name));
				char buf[WJ_TIME_LEN];
				if (c) {
					wj_time_format(json_integer_value(json_object_get(c, "cursor")),
						       cfg->tz_offset, buf);
					printf("%s %s\n", name, buf);
				} else {
					wj_time_format(cfg->flows[i].cursor_start, cfg->tz_offset, buf);
					printf("%s %s (not started; cursor.start)\n", name, buf);
				}
				json_decref(c);
			}
			wj_txn_abort(&t);
		}
	} else if (!strcmp(argv[1], "set") && argc == 4) {
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
		} else {
			c.origin = c.at < f->cursor_start ? c.at : f->cursor_start;
			if (wj_store_write(s, cursor_set_fn, &c) < 0) {
				fprintf(stderr, "wdt2jdyctl: %s\n", wj_store_strerror());
				rc = 1;
			} else {
				printf("%s cursor set to %s (taken up at the flow's next window; a "
				       "window being read now ends without moving it)\n", argv[2],
				       argv[3]);
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
	bool known = false;
	for (size_t i = 0; i < cfg->n_flows; i++)
		known |= !strcmp(cfg->flows[i].name, flow);
	if (!known) {
		fprintf(stderr, "wdt2jdyctl: no flow named \"%s\" in %s\n", flow, cfg->path);
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
		goto out;
	}
	printf("backfill of %s from %s to %s queued\n", flow, from, to);
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
	printf("%sbackfill of %s done\n", tty ? "\n" : "", flow);
out:
	json_decref(b.found);
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
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	while ((c = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config_path = optarg; break;
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
	if (!strcmp(cmd, "check"))
		return cmd_check(sub_argc, sub_argv);
	if (!strcmp(cmd, "preview"))
		return cmd_preview(sub_argc, sub_argv);
	fprintf(stderr, "wdt2jdyctl: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 1;
}
