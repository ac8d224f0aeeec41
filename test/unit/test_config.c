/* Unit tests for lib/config: the documented example, the production template, defaults,
 * secrets, and exact messages for broken configurations. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/config.h"
#include "lib/log.h"
#include "lib/util.h"

/* The example of DESIGN.md "Configuration contract", verbatim (comments included). */
static const char design_example[] =
	"{\n"
	"  \"state_dir\": \"/var/lib/wdt2jdy\",\n"
	"  \"log\":    { \"file\": \"/var/log/wdt2jdy/wdt2jdy.log\", \"level\": \"info\" },\n"
	"  \"status\": { \"file\": \"/var/lib/wdt2jdy/status.json\", \"metrics_file\": \"\", \"interval\": \"10s\" },\n"
	"  \"timezone\": \"+08:00\",\n"
	"  \"wdt\": {\n"
	"    \"api\": \"qimen\",                       // or \"openapi2\"\n"
	"    // qimen: the router URL itself; openapi2: the base URL ending in /openapi2/, to which the\n"
	"    // script named by the flow's method is appended (wdt.stockin.order.query -> stockin_order_query.php)\n"
	"    \"url\": \"http://hu3cgwt0tc.api.taobao.com/router/qm\",\n"
	"    \"sid\": \"…\", \"app_key\": \"…\", \"app_secret\": \"…\",\n"
	"    \"target_app_key\": \"21363512\",         // qimen only\n"
	"    \"rate_limit\": \"60/min\", \"concurrency\": 2, \"timeout\": \"30s\"\n"
	"  },\n"
	"  \"kingdee\": {\n"
	"    \"api\": \"v1\",                          // or \"v2\"\n"
	"    \"url\": \"https://api.kingdee.com\",     // base URL; API paths are appended\n"
	"    \"client_id\": \"…\", \"client_secret\": \"…\", \"outer_instance_id\": \"…\",\n"
	"    \"rate_limit\": \"500/min\", \"concurrency\": 8, \"timeout\": \"30s\"\n"
	"  },\n"
	"  \"queue\": { \"capacity\": 10000, \"max_attempts\": 12, \"backoff\": { \"initial\": \"1s\", \"max\": \"10m\" } },\n"
	"  \"flows\": [ {\n"
	"    \"name\": \"pd-gain\", \"priority\": 1,\n"
	"    \"source\": { \"method\": \"wdt.stockin.order.query\", \"params\": { \"order_type\": \"4\", \"status\": \"80\" } },\n"
	"    \"cursor\": { \"start\": \"2026-11-01 00:00:00\", \"window\": \"1h\", \"lag\": \"1m\", \"overlap\": \"5m\", \"interval\": \"30s\" },\n"
	"    \"mapping\": \"default\"\n"
	"  } ]\n"
	"}\n";

/* Building blocks of small valid configurations; W/K/F take extra members. */
#define WDT_WITH(extra) \
	"\"wdt\": {\"url\": \"https://127.0.0.1:1/router/qm\", \"sid\": \"sid1\", " \
	"\"app_key\": \"key1\", \"app_secret\": \"wdt-s3cret-value\"" extra "}"
#define JDY_WITH(extra) \
	"\"kingdee\": {\"url\": \"https://127.0.0.1:2\", \"client_id\": \"cid1\", " \
	"\"client_secret\": \"jdy-s3cret-value\", \"outer_instance_id\": \"oid1\"" extra "}"
#define FLOW_WITH(extra) "\"flows\": [{\"name\": \"f1\"" extra "}]"
#define WDT WDT_WITH("")
#define JDY JDY_WITH("")
#define FLOW FLOW_WITH("")
/* a whole config: wdt, kingdee, flows sections plus extra top-level members */
#define CFG(w, k, f, extra) "{" w ", " k ", " f extra "}"
#define OK_WITH(extra) CFG(WDT, JDY, FLOW, extra)

static void dump_errors(const char *text, const wj_errors_t *e)
{
	print_error("config: %s\n", text);
	for (size_t i = 0; i < e->n; i++)
		print_error("  error: %s\n", e->msg[i]);
}

static wj_config_t *parse_ok(const char *text)
{
	wj_errors_t e = {0};
	wj_config_t *cfg = wj_config_parse(text, "cfg.json", &e);
	if (!cfg || e.n)
		dump_errors(text, &e);
	assert_non_null(cfg);
	assert_int_equal(e.n, 0);
	wj_errors_free(&e);
	return cfg;
}

/* The config must be refused with exactly the messages in want (in order). */
static void expect_errors(const char *text, const char *const *want, size_t n)
{
	wj_errors_t e = {0};
	wj_config_t *cfg = wj_config_parse(text, "cfg.json", &e);
	if (cfg || e.n != n) {
		dump_errors(text, &e);
		for (size_t i = 0; i < n; i++)
			print_error("  want: %s\n", want[i]);
	}
	assert_null(cfg);
	assert_int_equal(e.n, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(e.msg[i], want[i]);
	wj_errors_free(&e);
}

static void expect_error(const char *text, const char *want)
{
	expect_errors(text, &want, 1);
}

static const char *kv_get(const wj_kv_t *kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(kv[i].key, key))
			return kv[i].value;
	return NULL;
}

/* ---- temporary files ------------------------------------------------------------------- */

static char tmpdir[64];

static int setup_tmp(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/wj-config-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	unsetenv("CREDENTIALS_DIRECTORY");
	return 0;
}

static int teardown_tmp(void **state)
{
	(void)state;
	static const char *const names[] = {"s600", "s644", "s640", "empty", "cfg.json",
					    "wdt-app-secret", "kingdee-client-secret", "cred"};
	char p[128];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", tmpdir, names[i]);
		unlink(p);
	}
	rmdir(tmpdir);
	unsetenv("CREDENTIALS_DIRECTORY");
	return 0;
}

static const char *tmp_file(const char *name, const char *content, mode_t mode)
{
	static char path[8][128];
	static unsigned next;
	char *p = path[next++ % 8];
	snprintf(p, 128, "%s/%s", tmpdir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return p;
}

/* ---- loading valid configurations ------------------------------------------------------ */

static void test_design_example(void **state)
{
	(void)state;
	wj_errors_t e = {0};
	/* Its Qimen URL is plain http://: refused unless allowed for a test server. */
	wj_config_t *cfg = wj_config_parse(design_example, "design.json", &e);
	assert_null(cfg);
	assert_int_equal(e.n, 1);
	assert_string_equal(e.msg[0], "design.json: wdt.url: plain http:// sends credentials and "
			    "bills unencrypted: use https:// (or set allow_insecure_http: true for a "
			    "test server)");
	wj_errors_free(&e);
	char *allowed = NULL;
	assert_true(asprintf(&allowed, "{\"allow_insecure_http\": true,%s",
			     strchr(design_example, '{') + 1) > 0);
	cfg = wj_config_parse(allowed, "design.json", &e);
	free(allowed);
	if (!cfg)
		dump_errors(design_example, &e);
	assert_true(cfg->allow_insecure_http);
	assert_non_null(cfg);
	assert_int_equal(e.n, 0);

	assert_string_equal(cfg->path, "design.json");
	assert_non_null(cfg->doc);
	assert_true(json_is_object(json_object_get(cfg->doc, "wdt")));
	assert_string_equal(cfg->state_dir, "/var/lib/wdt2jdy");
	assert_int_equal(cfg->map_size, 64ULL << 20);
	assert_int_equal(cfg->map_max, 4ULL << 30);
	assert_string_equal(cfg->log_file, "/var/log/wdt2jdy/wdt2jdy.log");
	assert_int_equal(cfg->log_level, WJ_LOG_INFO);
	assert_string_equal(cfg->status_file, "/var/lib/wdt2jdy/status.json");
	assert_null(cfg->metrics_file);
	assert_null(cfg->html_file);
	assert_int_equal(cfg->status_interval_ms, 10000);
	assert_int_equal(cfg->tz_offset, 8 * 3600);
	assert_string_equal(cfg->timezone, "+08:00");
	assert_int_equal(cfg->drain_timeout_ms, 10000);

	assert_int_equal(cfg->wdt.api, WJ_WDT_QIMEN);
	assert_string_equal(cfg->wdt.url, "http://hu3cgwt0tc.api.taobao.com/router/qm");
	assert_string_equal(cfg->wdt.sid, "…");
	assert_string_equal(cfg->wdt.app_key, "…");
	assert_string_equal(cfg->wdt.app_secret, "…");
	assert_string_equal(cfg->wdt.target_app_key, "21363512");
	assert_null(cfg->wdt.ca_file);
	assert_int_equal(cfg->wdt.rate_limit.count, 60);
	assert_int_equal(cfg->wdt.rate_limit.period_ms, 60000);
	assert_int_equal(cfg->wdt.concurrency, 2);
	assert_int_equal(cfg->wdt.timeout_ms, 30000);

	assert_int_equal(cfg->kingdee.api, WJ_JDY_V1);
	assert_string_equal(cfg->kingdee.url, "https://api.kingdee.com");
	assert_string_equal(cfg->kingdee.client_id, "…");
	assert_string_equal(cfg->kingdee.client_secret, "…");
	assert_string_equal(cfg->kingdee.outer_instance_id, "…");
	assert_null(cfg->kingdee.ca_file);
	assert_int_equal(cfg->kingdee.rate_limit.count, 500);
	assert_int_equal(cfg->kingdee.rate_limit.period_ms, 60000);
	assert_int_equal(cfg->kingdee.concurrency, 8);
	assert_int_equal(cfg->kingdee.timeout_ms, 30000);
	assert_int_equal(cfg->kingdee.lookup_ttl_ms, 86400000);
	assert_int_equal(cfg->kingdee.n_store_map, 0);
	assert_int_equal(cfg->kingdee.n_material_map, 0);

	assert_int_equal(cfg->queue.capacity, 10000);
	assert_int_equal(cfg->queue.max_attempts, 12);
	assert_int_equal(cfg->queue.backoff_initial_ms, 1000);
	assert_int_equal(cfg->queue.backoff_max_ms, 600000);

	assert_int_equal(cfg->n_flows, 1);
	const wj_flow_cfg_t *f = &cfg->flows[0];
	assert_string_equal(f->name, "pd-gain");
	assert_int_equal(f->priority, 1);
	assert_int_equal(f->backfill_priority, 11);
	assert_string_equal(f->method, "wdt.stockin.order.query");
	assert_int_equal(f->n_params, 2);
	assert_string_equal(kv_get(f->params, f->n_params, "order_type"), "4");
	assert_string_equal(kv_get(f->params, f->n_params, "status"), "80");
	assert_int_equal(f->cursor_start, 1793462400); /* 2026-11-01 00:00:00 +08:00 */
	assert_int_equal(f->window_ms, 3600000);
	assert_int_equal(f->lag_ms, 60000);
	assert_int_equal(f->overlap_ms, 300000);
	assert_int_equal(f->interval_ms, 30000);
	assert_int_equal(f->page_size, 100);
	assert_int_equal(f->split_threshold, 1000);
	assert_null(f->mapping);
	assert_string_equal(f->remark_template, "WDT:{stockin_no}");

	const char *const *s = wj_config_secrets(cfg);
	assert_string_equal(s[0], "…");
	assert_string_equal(s[1], "…");
	assert_null(s[2]);
	wj_config_free(cfg);
	wj_errors_free(&e);
}

static void test_defaults(void **state)
{
	(void)state;
	int64_t now = wj_now();
	wj_config_t *cfg = parse_ok(OK_WITH(""));
	assert_string_equal(cfg->path, "cfg.json");
	assert_string_equal(cfg->state_dir, "/var/lib/wdt2jdy");
	assert_string_equal(cfg->status_file, "/var/lib/wdt2jdy/status.json");
	assert_null(cfg->log_file);
	assert_null(cfg->metrics_file);
	assert_int_equal(cfg->log_level, WJ_LOG_INFO);
	assert_int_equal(cfg->status_interval_ms, 10000);
	assert_int_equal(cfg->tz_offset, 28800);
	assert_string_equal(cfg->timezone, "+08:00");
	assert_int_equal(cfg->drain_timeout_ms, 10000);
	assert_int_equal(cfg->map_size, 64ULL << 20);
	assert_int_equal(cfg->map_max, 4ULL << 30);
	assert_int_equal(cfg->wdt.api, WJ_WDT_QIMEN);
	assert_string_equal(cfg->wdt.target_app_key, "21363512");
	assert_int_equal(cfg->wdt.rate_limit.count, 60);
	assert_int_equal(cfg->wdt.rate_limit.period_ms, 60000);
	assert_int_equal(cfg->wdt.concurrency, 2);
	assert_int_equal(cfg->wdt.timeout_ms, 30000);
	assert_int_equal(cfg->kingdee.api, WJ_JDY_V1);
	assert_int_equal(cfg->kingdee.rate_limit.count, 500);
	assert_int_equal(cfg->kingdee.concurrency, 8);
	assert_int_equal(cfg->kingdee.lookup_ttl_ms, 86400000);
	assert_int_equal(cfg->queue.capacity, 10000);
	assert_int_equal(cfg->queue.max_attempts, 12);
	assert_int_equal(cfg->queue.backoff_initial_ms, 1000);
	assert_int_equal(cfg->queue.backoff_max_ms, 600000);
	assert_int_equal(cfg->http.max_body, 32ULL << 20);
	assert_int_equal(cfg->http.max_retry_after_ms, 3600000);
	assert_false(cfg->allow_insecure_http);
	const wj_flow_cfg_t *f = &cfg->flows[0];
	assert_string_equal(f->name, "f1");
	assert_int_equal(f->priority, 1);
	assert_int_equal(f->backfill_priority, 11);
	assert_string_equal(f->method, "wdt.stockin.order.query");
	assert_int_equal(f->n_params, 2);
	assert_string_equal(kv_get(f->params, f->n_params, "order_type"), "4");
	assert_string_equal(kv_get(f->params, f->n_params, "status"), "80");
	/* now minus one day */
	assert_true(f->cursor_start >= now - 86400 && f->cursor_start <= wj_now() - 86400);
	assert_int_equal(f->window_ms, 3600000);
	assert_int_equal(f->lag_ms, 60000);
	assert_int_equal(f->overlap_ms, 300000);
	assert_int_equal(f->interval_ms, 30000);
	assert_int_equal(f->page_size, 100);
	assert_int_equal(f->split_threshold, 1000);
	assert_null(f->mapping);
	assert_string_equal(f->remark_template, "WDT:{stockin_no}");
	const char *const *s = wj_config_secrets(cfg);
	assert_string_equal(s[0], "wdt-s3cret-value");
	assert_string_equal(s[1], "jdy-s3cret-value");
	assert_null(s[2]);
	wj_config_free(cfg);
}

static void test_values(void **state)
{
	(void)state;
	static const char text[] =
		"{\n"
		"  # every optional key given\n"
		"  \"state_dir\": \"/srv/wj\",\n"
		"  \"log\": {\"file\": \"\", \"level\": \"debug\"},\n"
		"  \"status\": {\"file\": \"\", \"metrics_file\": \"/srv/wj/m.prom\", \"interval\": \"1s\",\n"
		"              \"html_file\": \"/srv/wj/report.html\"},\n"
		"  \"timezone\": \"-05:30\",\n"
		"  \"drain_timeout\": \"0s\",\n"
		"  \"store\": {\"map_size\": \"1MiB\", \"map_max\": 1048576},\n"
		"  \"wdt\": {\"api\": \"openapi2\", \"url\": \"https://sandbox.wangdian.cn/openapi2/\",\n"
		"          \"sid\": \"s\", \"app_key\": \"k\", \"app_secret\": \"wsec\",\n"
		"          \"ca_file\": \"/etc/ssl/ca.pem\", \"rate_limit\": \"2/s\", \"concurrency\": 16,\n"
		"          \"timeout\": \"1m\"},\n"
		"  \"kingdee\": {\"api\": \"v2\", \"url\": \"https://127.0.0.1:8080\", \"client_id\": \"c\",\n"
		"              \"client_secret\": \"ksec\", \"outer_instance_id\": \"o\",\n"
		"              \"rate_limit\": \"1000000/min\", \"concurrency\": 64, \"timeout\": \"5s\",\n"
		"              \"lookup_ttl\": \"0s\", \"store_map\": {\"WH01\": \"CK001\", \"WH02\": \"CK002\"},\n"
		"              \"material_map\": {\"SP-1\": \"M1\"}},\n"
		"  \"queue\": {\"capacity\": 10, \"max_attempts\": 100,\n"
		"            \"backoff\": {\"initial\": \"250ms\", \"max\": \"250ms\"}},\n"
		"  \"flows\": [\n"
		"    {\"name\": \"A_b.c-9\", \"priority\": 95,\n"
		"     \"source\": {\"method\": \"wdt.other\", \"params\": {\"warehouse_no\": \"WH01\", \"order_type\": 4}},\n"
		"     \"cursor\": {\"start\": \"2026-11-01\", \"window\": \"30d\", \"lag\": \"0s\", \"overlap\": \"0s\",\n"
		"                \"interval\": \"1s\", \"page_size\": 1, \"split_threshold\": 100000},\n"
		"     \"mapping\": {\"bill\": {\"remark\": {\"template\": \"x\"}},"
		" \"lines\": {\"q\": {\"path\": \"goods_count\"}}},\n"
		"     \"remark_template\": \"sync {stockin_no}\"},\n"
		"    {\"name\": \"second\", \"priority\": 0, \"backfill_priority\": 0, \"mapping\": \"default\"}\n"
		"  ]\n"
		"}\n";
	wj_config_t *cfg = parse_ok(text);
	assert_string_equal(cfg->state_dir, "/srv/wj");
	assert_null(cfg->log_file);
	assert_int_equal(cfg->log_level, WJ_LOG_DEBUG);
	assert_string_equal(cfg->status_file, ""); /* given empty: disabled */
	assert_string_equal(cfg->metrics_file, "/srv/wj/m.prom");
	assert_string_equal(cfg->html_file, "/srv/wj/report.html");
	assert_int_equal(cfg->status_interval_ms, 1000);
	assert_int_equal(cfg->tz_offset, -19800);
	assert_string_equal(cfg->timezone, "-05:30");
	assert_int_equal(cfg->drain_timeout_ms, 0);
	assert_int_equal(cfg->map_size, 1 << 20);
	assert_int_equal(cfg->map_max, 1 << 20);
	assert_int_equal(cfg->wdt.api, WJ_WDT_OPENAPI2);
	assert_null(cfg->wdt.target_app_key);
	assert_string_equal(cfg->wdt.ca_file, "/etc/ssl/ca.pem");
	assert_int_equal(cfg->wdt.rate_limit.count, 2);
	assert_int_equal(cfg->wdt.rate_limit.period_ms, 1000);
	assert_int_equal(cfg->wdt.concurrency, 16);
	assert_int_equal(cfg->wdt.timeout_ms, 60000);
	assert_int_equal(cfg->kingdee.api, WJ_JDY_V2);
	assert_int_equal(cfg->kingdee.rate_limit.count, 1000000);
	assert_int_equal(cfg->kingdee.concurrency, 64);
	assert_int_equal(cfg->kingdee.timeout_ms, 5000);
	assert_int_equal(cfg->kingdee.lookup_ttl_ms, 0);
	assert_int_equal(cfg->kingdee.n_store_map, 2);
	assert_string_equal(kv_get(cfg->kingdee.store_map, 2, "WH02"), "CK002");
	assert_int_equal(cfg->kingdee.n_material_map, 1);
	assert_string_equal(cfg->kingdee.material_map[0].key, "SP-1");
	assert_string_equal(cfg->kingdee.material_map[0].value, "M1");
	assert_int_equal(cfg->queue.capacity, 10);
	assert_int_equal(cfg->queue.max_attempts, 100);
	assert_int_equal(cfg->queue.backoff_initial_ms, 250);
	assert_int_equal(cfg->queue.backoff_max_ms, 250);
	assert_int_equal(cfg->n_flows, 2);
	const wj_flow_cfg_t *f = &cfg->flows[0];
	assert_string_equal(f->name, "A_b.c-9");
	assert_int_equal(f->priority, 95);
	assert_int_equal(f->backfill_priority, 99); /* 95 + 10 capped */
	assert_string_equal(f->method, "wdt.other");
	assert_int_equal(f->n_params, 3);
	assert_string_equal(kv_get(f->params, 3, "warehouse_no"), "WH01");
	assert_string_equal(kv_get(f->params, 3, "order_type"), "4"); /* integer → "4" */
	assert_string_equal(kv_get(f->params, 3, "status"), "80");   /* default added */
	assert_int_equal(f->cursor_start, 1793511000); /* 2026-11-01 00:00:00 -05:30 */
	assert_int_equal(f->window_ms, 30ULL * 86400000);
	assert_int_equal(f->lag_ms, 0);
	assert_int_equal(f->overlap_ms, 0);
	assert_int_equal(f->interval_ms, 1000);
	assert_int_equal(f->page_size, 1);
	assert_int_equal(f->split_threshold, 100000);
	assert_non_null(f->mapping);
	json_t *remark = json_object_get(json_object_get(f->mapping, "bill"), "remark");
	assert_string_equal(json_string_value(json_object_get(remark, "template")), "x");
	assert_ptr_equal(f->mapping, json_object_get(json_array_get(json_object_get(cfg->doc, "flows"),
								    0), "mapping"));
	assert_int_equal(f->mapping->refcount, 2); /* document + flow */
	assert_string_equal(f->remark_template, "sync {stockin_no}");
	f = &cfg->flows[1];
	assert_int_equal(f->priority, 0);
	assert_int_equal(f->backfill_priority, 0);
	assert_null(f->mapping);
	wj_config_free(cfg);

	/* status.file follows state_dir; a default state_dir with another timezone */
	cfg = parse_ok(OK_WITH(", \"state_dir\": \"/tmp/x\", \"timezone\": \"Z\"") );
	assert_string_equal(cfg->status_file, "/tmp/x/status.json");
	assert_int_equal(cfg->tz_offset, 0);
	wj_config_free(cfg);
	cfg = parse_ok(CFG(WDT, JDY, FLOW_WITH(", \"cursor\": {\"start\": \"2026-11-01 00:00:00\"}"),
			   ", \"timezone\": \"UTC\""));
	assert_int_equal(cfg->flows[0].cursor_start, 1793491200);
	assert_false(cfg->flows[0].skip_existing); /* "off" unless asked */
	wj_config_free(cfg);
	cfg = parse_ok(CFG(WDT, JDY, FLOW_WITH(", \"skip_existing\": \"search\""), ""));
	assert_true(cfg->flows[0].skip_existing);
	wj_config_free(cfg);
	cfg = parse_ok(CFG(WDT, JDY, FLOW_WITH(", \"skip_existing\": \"off\""), ""));
	assert_false(cfg->flows[0].skip_existing);
	wj_config_free(cfg);
}

static void test_rate_parse(void **state)
{
	(void)state;
	wj_rate_t r;
	assert_int_equal(wj_rate_parse("60/min", &r), 0);
	assert_int_equal(r.count, 60);
	assert_int_equal(r.period_ms, 60000);
	assert_int_equal(wj_rate_parse("2/s", &r), 0);
	assert_int_equal(r.count, 2);
	assert_int_equal(r.period_ms, 1000);
	assert_int_equal(wj_rate_parse("1000000/s", &r), 0);
	assert_int_equal(r.count, 1000000);
	assert_int_equal(wj_rate_parse("1000001/s", &r), -EINVAL);
	assert_int_equal(wj_rate_parse("0/s", &r), -EINVAL);
	assert_int_equal(wj_rate_parse("05/s", &r), -EINVAL);
	assert_int_equal(wj_rate_parse("60/m", &r), -EINVAL);
	assert_int_equal(wj_rate_parse("60/hour", &r), -EINVAL);
	assert_int_equal(wj_rate_parse("60", &r), -EINVAL);
	assert_int_equal(wj_rate_parse("/s", &r), -EINVAL);
	assert_int_equal(wj_rate_parse("-1/s", &r), -EINVAL);
	assert_int_equal(wj_rate_parse("99999999999999999999/s", &r), -EINVAL);
	assert_int_equal(wj_rate_parse(NULL, &r), -EINVAL);
}

static void test_production_template(void **state)
{
	(void)state;
	const char *root = getenv("WJ_SOURCE_ROOT");
	if (!root)
		skip();
	char path[512];
	snprintf(path, sizeof(path), "%s/etc/wdt2jdy.json", root);
	wj_errors_t e = {0};
	/* without the credentials directory it names both credentials */
	wj_config_t *cfg = wj_config_load(path, &e);
	assert_null(cfg);
	assert_int_equal(e.n, 2);
	assert_non_null(strstr(e.msg[0], "wdt.app_secret_credential: wdt-app-secret: "
					 "$CREDENTIALS_DIRECTORY is not set"));
	assert_non_null(strstr(e.msg[1], "kingdee.client_secret_credential: kingdee-client-secret: "
					 "$CREDENTIALS_DIRECTORY is not set"));
	wj_errors_free(&e);

	tmp_file("wdt-app-secret", "wdt-from-credential\n", 0400);
	tmp_file("kingdee-client-secret", "jdy-from-credential", 0400);
	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", tmpdir, 1), 0);
	cfg = wj_config_load(path, &e);
	if (!cfg)
		dump_errors(path, &e);
	assert_non_null(cfg);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->wdt.app_secret, "wdt-from-credential");
	assert_string_equal(cfg->kingdee.client_secret, "jdy-from-credential");
	assert_string_equal(cfg->wdt.target_app_key, "21363512");
	assert_int_equal(cfg->n_flows, 1);
	assert_string_equal(cfg->flows[0].name, "pd-gain");
	assert_null(cfg->flows[0].mapping);
	assert_string_equal(cfg->status_file, "/var/lib/wdt2jdy/status.json");
	const char *const *s = wj_config_secrets(cfg);
	assert_string_equal(s[0], "wdt-from-credential");
	assert_string_equal(s[1], "jdy-from-credential");
	assert_null(s[2]);
	wj_config_free(cfg);
	wj_errors_free(&e);
}

/* ---- broken configurations ------------------------------------------------------------- */

static const struct bad {
	const char *text;
	const char *msg;
} bad_configs[] = {
	/* syntax: line:column of the offending token; comments keep positions */
	{"{\n  \"state_dir\": \"/x\"\n  \"timezone\": \"+08:00\"\n}\n",
	 "cfg.json:3:12: '}' expected"},
	{"// header\n# another\n{\n  \"state_dir\": tru,\n}\n", "cfg.json:4:18: invalid token"},
	{"{\n  \"flows\": [\n    {\"name\": \"a\"},\n  ]\n}\n", "cfg.json:4:3: unexpected token"},
	{"{\n  \"state_dir\": \"/x\", // trailing\n  \"timezone\": \"+08:00\" # hash\n  x\n}\n",
	 "cfg.json:4:3: '}' expected"},
	{"{\n  \"state_dir\": \"/x//y#z\"\n", "cfg.json:3:0: '}' expected near end of file"},
	{"", "cfg.json:1:0: '[' or '{' expected near end of file"},
	/* duplicate keys */
	{"{\n  \"wdt\": {\n    \"sid\": \"a\",\n    \"sid\": \"b\"\n  }\n}\n",
	 "cfg.json:4:9: duplicate object key near '\"sid\"'"},
	{"[1, 2]", "cfg.json: expected a JSON object at the top level"},
	/* unknown keys at every level */
	{OK_WITH(", \"bogus\": 1"), "cfg.json: bogus: unknown key"},
	{CFG(WDT_WITH(", \"foo\": \"x\""), JDY, FLOW, ""), "cfg.json: wdt.foo: unknown key"},
	{CFG(WDT, JDY_WITH(", \"foo\": {}"), FLOW, ""), "cfg.json: kingdee.foo: unknown key"},
	{CFG(WDT, JDY, "\"flows\": [{\"name\": \"a\"}, {\"name\": \"b\", "
	     "\"source\": {\"params\": {\"status\": \"90\"}}, \"cursor\": {\"windw\": \"1h\"}}]",
	     ""), "cfg.json: flows[1].cursor.windw: unknown key"},
	{OK_WITH(", \"log\": {\"lvl\": \"info\"}"), "cfg.json: log.lvl: unknown key"},
	{OK_WITH(", \"queue\": {\"backoff\": {\"min\": \"1s\"}}"),
	 "cfg.json: queue.backoff.min: unknown key"},
	/* missing required keys */
	{CFG("\"wdt\": {\"url\": \"https://w\", \"app_key\": \"k\", \"app_secret\": \"x\"}", JDY, FLOW, ""),
	 "cfg.json: wdt.sid: required"},
	{"{" WDT ", " JDY "}", "cfg.json: flows: required"},
	{CFG(WDT, "\"kingdee\": {\"url\": \"https://k\", \"client_id\": \"c\", \"client_secret\": \"s\"}",
	     FLOW, ""), "cfg.json: kingdee.outer_instance_id: required"},
	{CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": \"s\", \"app_key\": \"k\"}", JDY, FLOW, ""),
	 "cfg.json: wdt.app_secret: required"},
	{CFG(WDT, JDY, "\"flows\": [{\"priority\": 2}]", ""), "cfg.json: flows[0].name: required"},
	{CFG(WDT, JDY, "\"flows\": []", ""), "cfg.json: flows: at least one flow is required"},
	/* wrong types */
	{CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": 123, \"app_key\": \"k\", \"app_secret\": \"x\"}",
	     JDY, FLOW, ""), "cfg.json: wdt.sid: expected a string"},
	{CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": \"\", \"app_key\": \"k\", \"app_secret\": \"x\"}",
	     JDY, FLOW, ""), "cfg.json: wdt.sid: must not be empty"},
	{CFG("\"wdt\": [1]", JDY, FLOW, ""), "cfg.json: wdt: expected an object"},
	{CFG(WDT, JDY, "\"flows\": {\"name\": \"a\"}", ""), "cfg.json: flows: expected an array"},
	{CFG(WDT, JDY, "\"flows\": [\"a\"]", ""), "cfg.json: flows[0]: expected an object"},
	{OK_WITH(", \"queue\": {\"capacity\": \"100\"}"),
	 "cfg.json: queue.capacity: expected an integer from 10 to 10000000"},
	{OK_WITH(", \"queue\": {\"capacity\": 9}"),
	 "cfg.json: queue.capacity: expected an integer from 10 to 10000000"},
	{OK_WITH(", \"queue\": {\"max_attempts\": 0}"),
	 "cfg.json: queue.max_attempts: expected an integer from 1 to 100"},
	{CFG(WDT, JDY, FLOW_WITH(", \"priority\": 1.5"), ""),
	 "cfg.json: flows[0].priority: expected an integer from 0 to 99"},
	{CFG(WDT, JDY, FLOW_WITH(", \"priority\": 100"), ""),
	 "cfg.json: flows[0].priority: expected an integer from 0 to 99"},
	{CFG(WDT_WITH(", \"concurrency\": 17"), JDY, FLOW, ""),
	 "cfg.json: wdt.concurrency: expected an integer from 1 to 16"},
	{CFG(WDT, JDY_WITH(", \"concurrency\": 0"), FLOW, ""),
	 "cfg.json: kingdee.concurrency: expected an integer from 1 to 64"},
	{CFG(WDT, JDY, FLOW_WITH(", \"cursor\": {\"page_size\": 101}"), ""),
	 "cfg.json: flows[0].cursor.page_size: expected an integer from 1 to 100"},
	{CFG(WDT, JDY, FLOW_WITH(", \"cursor\": {\"split_threshold\": 99}"), ""),
	 "cfg.json: flows[0].cursor.split_threshold: expected an integer from 100 to 100000"},
	/* durations */
	{CFG(WDT, JDY, FLOW_WITH(", \"cursor\": {\"window\": \"30 seconds\"}"), ""),
	 "cfg.json: flows[0].cursor.window: expected a duration like \"30s\""},
	{CFG(WDT_WITH(", \"timeout\": 30"), JDY, FLOW, ""),
	 "cfg.json: wdt.timeout: expected a duration like \"30s\""},
	{CFG(WDT, JDY, FLOW_WITH(", \"cursor\": {\"window\": \"31d\"}"), ""),
	 "cfg.json: flows[0].cursor.window: must be from 1s to 30d"},
	{CFG(WDT, JDY, FLOW_WITH(", \"cursor\": {\"window\": \"999ms\"}"), ""),
	 "cfg.json: flows[0].cursor.window: must be from 1s to 30d"},
	{OK_WITH(", \"status\": {\"interval\": \"0s\"}"),
	 "cfg.json: status.interval: must be from 1s to 1d"},
	{OK_WITH(", \"drain_timeout\": \"2h\""), "cfg.json: drain_timeout: must be from 0s to 1h"},
	{OK_WITH(", \"queue\": {\"backoff\": {\"initial\": \"1m\", \"max\": \"30s\"}}"),
	 "cfg.json: queue.backoff.max: must be at least queue.backoff.initial"},
	/* rates */
	{CFG(WDT_WITH(", \"rate_limit\": \"60/hour\""), JDY, FLOW, ""),
	 "cfg.json: wdt.rate_limit: expected a rate like \"60/min\" or \"2/s\""},
	{CFG(WDT, JDY_WITH(", \"rate_limit\": \"0/s\""), FLOW, ""),
	 "cfg.json: kingdee.rate_limit: expected a rate like \"60/min\" or \"2/s\""},
	{CFG(WDT, JDY_WITH(", \"rate_limit\": 500"), FLOW, ""),
	 "cfg.json: kingdee.rate_limit: expected a rate like \"60/min\" or \"2/s\""},
	/* sizes */
	{OK_WITH(", \"store\": {\"map_size\": \"64MB\"}"),
	 "cfg.json: store.map_size: expected a size like \"64MiB\""},
	{OK_WITH(", \"store\": {\"map_size\": \"1GiB\", \"map_max\": \"512MiB\"}"),
	 "cfg.json: store.map_max: must be at least store.map_size"},
	{OK_WITH(", \"store\": {\"map_size\": \"4KiB\"}"), "cfg.json: store.map_size: must be at least 1MiB"},
	{OK_WITH(", \"http\": {\"max_body\": \"100KiB\"}"), "cfg.json: http.max_body: must be at least 1MiB"},
	{CFG(WDT, "\"kingdee\": {\"url\": \"http://api.kingdee.com\", \"client_id\": \"c\", "
	     "\"client_secret\": \"s\", \"outer_instance_id\": \"o\"}", FLOW, ""),
	 "cfg.json: kingdee.url: plain http:// sends credentials and bills unencrypted: use https:// "
	 "(or set allow_insecure_http: true for a test server)"},
	{OK_WITH(", \"allow_insecure_http\": \"yes\""), "cfg.json: allow_insecure_http: expected true or false"},
	{OK_WITH(", \"http\": {\"max_retry_after\": \"2d\"}"),
	 "cfg.json: http.max_retry_after: must be from 1s to 1d"},
	/* enumerations, URLs, time zone */
	{CFG(WDT_WITH(", \"api\": \"rest\""), JDY, FLOW, ""),
	 "cfg.json: wdt.api: expected \"qimen\" or \"openapi2\""},
	{CFG(WDT, JDY_WITH(", \"api\": \"v3\""), FLOW, ""), "cfg.json: kingdee.api: expected \"v1\" or \"v2\""},
	{CFG(WDT_WITH(", \"api\": \"openapi2\", \"target_app_key\": \"21363512\""), JDY, FLOW, ""),
	 "cfg.json: wdt.target_app_key: only for api \"qimen\""},
	{CFG("\"wdt\": {\"url\": \"ftp://w\", \"sid\": \"s\", \"app_key\": \"k\", \"app_secret\": \"x\"}", JDY,
	     FLOW, ""), "cfg.json: wdt.url: expected an http:// or https:// URL"},
	{CFG(WDT, "\"kingdee\": {\"url\": \"https://\", \"client_id\": \"c\", \"client_secret\": \"s\", "
	     "\"outer_instance_id\": \"o\"}", FLOW, ""),
	 "cfg.json: kingdee.url: expected an http:// or https:// URL"},
	{OK_WITH(", \"timezone\": \"Asia/Shanghai\""),
	 "cfg.json: timezone: IANA time zone names are not supported; use a fixed UTC offset like \"+08:00\""},
	{OK_WITH(", \"timezone\": \"+8\""), "cfg.json: timezone: expected a UTC offset like \"+08:00\""},
	{OK_WITH(", \"log\": {\"level\": \"verbose\"}"),
	 "cfg.json: log.level: expected \"debug\", \"info\", \"warn\" or \"error\""},
	/* flows */
	{CFG(WDT, JDY, "\"flows\": [{\"name\": \"f1\"}, "
	     "{\"name\": \"f2\", \"source\": {\"params\": {\"status\": \"90\"}}}, "
	     "{\"name\": \"f1\"}]", ""),
	 "cfg.json: flows[2].name: duplicate flow name \"f1\""},
	{CFG(WDT, JDY, "\"flows\": [{\"name\": \"bad name!\"}]", ""),
	 "cfg.json: flows[0].name: expected 1 to 64 characters from A-Z a-z 0-9 _ . -"},
	{CFG(WDT, JDY, "\"flows\": [{\"name\": \"a123456789b123456789c123456789d123456789e123456789f123456789g1234\"}]", ""),
	 "cfg.json: flows[0].name: expected 1 to 64 characters from A-Z a-z 0-9 _ . -"},
	{CFG(WDT, JDY, FLOW_WITH(", \"cursor\": {\"start\": \"2026-13-01\"}"), ""),
	 "cfg.json: flows[0].cursor.start: expected a time like \"2026-11-01 00:00:00\" or \"2026-11-01\""},
	{CFG(WDT, JDY, FLOW_WITH(", \"mapping\": 5"), ""),
	 "cfg.json: flows[0].mapping: expected \"default\" or an object"},
	{CFG(WDT, JDY, FLOW_WITH(", \"mapping\": \"custom\""), ""),
	 "cfg.json: flows[0].mapping: expected \"default\" or an object"},
	{CFG(WDT, JDY, FLOW_WITH(", \"mapping\": {\"bill\": {\"remark\": {\"template\": \"x\"}},"
				 " \"lines\": {\"q\": {\"path\": \"a\", \"convert\": \"int\"}}}"), ""),
	 "cfg.json: flows[0].mapping.lines.q.convert: expected \"string\", \"number\", "
	 "\"integer\" or \"date\""},
	{CFG(WDT, JDY, FLOW_WITH(", \"mapping\": {\"bill\": {}, \"lines\": {\"q\": {\"path\": \"a\"}}}"), ""),
	 "cfg.json: flows[0].mapping.bill: expected a non-empty object of fields"},
	{CFG(WDT, JDY, FLOW_WITH(", \"remark_template\": \"WDT:{stockin_id}\""), ""),
	 "cfg.json: flows[0].remark_template: must contain {stockin_no}"},
	{CFG(WDT, JDY, FLOW_WITH(", \"skip_existing\": true"), ""),
	 "cfg.json: flows[0].skip_existing: expected \"off\" or \"search\""},
	{CFG(WDT, JDY, FLOW_WITH(", \"skip_existing\": \"remark\""), ""),
	 "cfg.json: flows[0].skip_existing: expected \"off\" or \"search\""},
	{CFG(WDT, JDY, FLOW_WITH(", \"source\": {\"params\": {\"order_type\": true}}"), ""),
	 "cfg.json: flows[0].source.params.order_type: expected a string or an integer"},
	{CFG(WDT, JDY, FLOW_WITH(", \"source\": {\"method\": \"\"}"), ""),
	 "cfg.json: flows[0].source.method: must not be empty"},
	{CFG(WDT, JDY_WITH(", \"store_map\": {\"WH01\": 1}"), FLOW, ""),
	 "cfg.json: kingdee.store_map.WH01: expected a string"},
	{CFG(WDT, JDY_WITH(", \"material_map\": [\"a\"]"), FLOW, ""),
	 "cfg.json: kingdee.material_map: expected an object"},
	/* secrets, inline */
	{CFG(WDT_WITH(", \"app_secret_credential\": \"wdt\""), JDY, FLOW, ""),
	 "cfg.json: wdt.app_secret: give only one of app_secret, app_secret_file, app_secret_credential"},
	{CFG(WDT, "\"kingdee\": {\"url\": \"https://k\", \"client_id\": \"c\", \"client_secret\": \"\", "
	     "\"outer_instance_id\": \"o\"}", FLOW, ""), "cfg.json: kingdee.client_secret: must not be empty"},
	{CFG(WDT_WITH(", \"app_secret_path\": \"/x\""), JDY, FLOW, ""),
	 "cfg.json: wdt.app_secret_path: unknown key"},
};

static void test_bad_configs(void **state)
{
	(void)state;
	size_t n = sizeof(bad_configs) / sizeof(bad_configs[0]);
	assert_true(n >= 35);
	for (size_t i = 0; i < n; i++) {
		print_message("bad config %zu: %s\n", i, bad_configs[i].msg);
		expect_error(bad_configs[i].text, bad_configs[i].msg);
	}
}

/* Two flows given as their source members ({"method": ..., "params": {...}} without braces). */
#define TWO_FLOWS(a, b) \
	CFG(WDT, JDY, "\"flows\": [{\"name\": \"pd-a\", \"source\": {" a "}}, " \
		      "{\"name\": \"pd-b\", \"source\": {" b "}}]", "")
#define OVERLAP_MSG(i, name, j, other) \
	"cfg.json: flows[" i "].source: flow \"" name "\" can read the same stock-ins as " \
	"flows[" j "] \"" other "\" (both wdt.stockin.order.query, and no order_type, status or " \
	"warehouse_no value tells them apart): each would post its own bill for them. Give the " \
	"two flows different values of one of these source.params, or merge them"

/* Two flows that can read one stock-in would each post a bill for it: refused, naming both. */
static void test_flow_overlap(void **state)
{
	(void)state;
	const char *overlap = OVERLAP_MSG("1", "pd-b", "0", "pd-a");
	/* the defaults (order_type 4, status 80) twice */
	expect_error(TWO_FLOWS("", ""), overlap);
	/* a filter on one side only: the other flow reads those orders too */
	expect_error(TWO_FLOWS("", "\"params\": {\"warehouse_no\": \"WH01\"}"), overlap);
	/* lists that share a value; numbers written two ways */
	expect_error(TWO_FLOWS("\"params\": {\"warehouse_no\": \"WH01, WH02\"}",
			       "\"params\": {\"warehouse_no\": \"WH03,WH02\"}"), overlap);
	expect_error(TWO_FLOWS("\"params\": {\"order_type\": \"04\"}",
			       "\"params\": {\"order_type\": 4}"), overlap);
	/* a parameter whose meaning the daemon does not know tells nothing apart */
	expect_error(TWO_FLOWS("\"params\": {\"shop_no\": \"S1\"}",
			       "\"params\": {\"shop_no\": \"S2\"}"), overlap);

	/* disjoint: a different value of a known filter, on both sides */
	static const char *const apart[] = {
		TWO_FLOWS("\"params\": {\"order_type\": \"4\"}", "\"params\": {\"order_type\": \"6\"}"),
		TWO_FLOWS("", "\"params\": {\"status\": \"90\"}"),
		TWO_FLOWS("\"params\": {\"warehouse_no\": \"WH01\"}",
			  "\"params\": {\"warehouse_no\": \"WH02\"}"),
		TWO_FLOWS("\"params\": {\"warehouse_no\": \"WH01,WH02\"}",
			  "\"params\": {\"warehouse_no\": \"WH03\", \"shop_no\": \"S1\"}"),
		TWO_FLOWS("\"params\": {\"order_type\": \"04\"}", "\"params\": {\"order_type\": 40}"),
		TWO_FLOWS("", "\"method\": \"wdt.other.query\""),
	};
	for (size_t i = 0; i < sizeof(apart) / sizeof(apart[0]); i++)
		wj_config_free(parse_ok(apart[i]));

	/* three flows: only the pair that overlaps is named, once */
	expect_error(CFG(WDT, JDY, "\"flows\": ["
			 "{\"name\": \"live\"}, "
			 "{\"name\": \"wh9\", \"source\": {\"params\": {\"status\": \"90\"}}}, "
			 "{\"name\": \"again\", \"source\": {\"params\": {\"status\": \"90\", "
			 "\"warehouse_no\": \"WH9\"}}}]", ""),
		     OVERLAP_MSG("2", "again", "1", "wh9"));
	/* also when the configuration has other errors: one load reports them all */
	static const char *const both[] = {
		"cfg.json: queue.capacity: expected an integer from 10 to 10000000",
		OVERLAP_MSG("1", "pd-b", "0", "pd-a"),
	};
	expect_errors(CFG(WDT, JDY, "\"flows\": [{\"name\": \"pd-a\"}, {\"name\": \"pd-b\"}]",
			  ", \"queue\": {\"capacity\": 1}"), both, 2);
}

static void test_all_errors_reported(void **state)
{
	(void)state;
	static const char text[] =
		"{\n"
		"  \"bogus\": true,\n"
		"  \"timezone\": \"Europe/Prague\",\n"
		"  \"wdt\": {\"url\": \"https://w\", \"app_key\": \"k\", \"app_secret\": \"wdt-s3cret-value\",\n"
		"          \"rate_limit\": \"fast\"},\n"
		"  \"queue\": {\"capacity\": 1},\n"
		"  \"flows\": [\n"
		"    {\"name\": \"a\", \"cursor\": {\"window\": \"40d\", \"lag\": \"soon\"}},\n"
		"    {\"name\": \"a\", \"cursor\": {\"x\": 1}}\n"
		"  ]\n"
		"}\n";
	static const char *const want[] = {
		"cfg.json: bogus: unknown key",
		"cfg.json: timezone: IANA time zone names are not supported; use a fixed UTC offset like \"+08:00\"",
		"cfg.json: wdt.sid: required",
		"cfg.json: wdt.rate_limit: expected a rate like \"60/min\" or \"2/s\"",
		"cfg.json: kingdee.url: required",
		"cfg.json: kingdee.client_id: required",
		"cfg.json: kingdee.client_secret: required",
		"cfg.json: queue.capacity: expected an integer from 10 to 10000000",
		"cfg.json: flows[0].cursor.window: must be from 1s to 30d",
		"cfg.json: flows[0].cursor.lag: expected a duration like \"30s\"",
		"cfg.json: flows[1].cursor.x: unknown key",
		"cfg.json: flows[1].name: duplicate flow name \"a\"",
		/* which keys Kingdee needs depends on kingdee.auth: checked after the walk */
		"cfg.json: kingdee.outer_instance_id: required",
	};
	expect_errors(text, want, sizeof(want) / sizeof(want[0]));
}

/* ---- kingdee.auth ---------------------------------------------------------------------- */

#define JDY_PASSWORD_WITH(extra) \
	"\"kingdee\": {\"auth\": \"password\", \"url\": \"https://127.0.0.1:2\", " \
	"\"client_id\": \"cid1\", \"client_secret\": \"jdy-s3cret-value\"" extra "}"

static void test_jdy_auth(void **state)
{
	(void)state;
	/* default: the gateway login */
	wj_config_t *cfg = parse_ok(OK_WITH(""));
	assert_int_equal(cfg->kingdee.auth, WJ_JDY_AUTH_GATEWAY);
	assert_null(cfg->kingdee.username);
	wj_config_free(cfg);
	/* the account login, password inline: a secret like the others */
	cfg = parse_ok(CFG(WDT, JDY_PASSWORD_WITH(", \"username\": \"13800000000\", \"password\": "
						  "\"pw-s3cret-value\", \"account_id\": \"1584\""),
			   FLOW, ""));
	assert_int_equal(cfg->kingdee.auth, WJ_JDY_AUTH_PASSWORD);
	assert_int_equal(cfg->kingdee.api, WJ_JDY_V1);
	assert_string_equal(cfg->kingdee.username, "13800000000");
	assert_string_equal(cfg->kingdee.password, "pw-s3cret-value");
	assert_string_equal(cfg->kingdee.account_id, "1584");
	assert_null(cfg->kingdee.outer_instance_id);
	const char *const *sec = wj_config_secrets(cfg);
	assert_string_equal(sec[1], "jdy-s3cret-value");
	assert_string_equal(sec[2], "pw-s3cret-value");
	assert_null(sec[3]);
	wj_config_free(cfg);

	static const char *const bad_auth[] = {"cfg.json: kingdee.auth: expected \"gateway\" or \"password\""};
	expect_errors(CFG(WDT, JDY_WITH(", \"auth\": \"oauth\""), FLOW, ""), bad_auth, 1);
	/* password: the V1 API only, each of its keys, none of the gateway's */
	static const char *const missing[] = {
		"cfg.json: kingdee.auth: \"password\" is the login of the V1 API: set api \"v1\"",
		"cfg.json: kingdee.username: required (auth \"password\")",
		"cfg.json: kingdee.password: required (auth \"password\"): give password, password_file "
		"or password_credential",
		"cfg.json: kingdee.account_id: required (auth \"password\"): the account set (账套) to "
		"post to; a login error lists the ones the login can see",
	};
	expect_errors(CFG(WDT, JDY_PASSWORD_WITH(", \"api\": \"v2\""), FLOW, ""), missing, 4);
	static const char *const foreign[] = {
		"cfg.json: kingdee.outer_instance_id: only for auth \"gateway\"",
	};
	expect_errors(CFG(WDT, JDY_PASSWORD_WITH(", \"username\": \"u\", \"password\": \"pw-s3cret\", "
						 "\"account_id\": \"1\", \"outer_instance_id\": \"o\""),
			  FLOW, ""), foreign, 1);
	static const char *const foreign2[] = {
		"cfg.json: kingdee.username: only for auth \"password\"",
		"cfg.json: kingdee.password: only for auth \"password\"",
		"cfg.json: kingdee.account_id: only for auth \"password\"",
	};
	expect_errors(CFG(WDT, JDY_WITH(", \"username\": \"u\", \"password\": \"pw-s3cret\", "
					"\"account_id\": \"1\""), FLOW, ""), foreign2, 3);
}

/* ---- secrets --------------------------------------------------------------------------- */

static void test_secret_file(void **state)
{
	(void)state;
	char text[2048], want[512];
	const char *s600 = tmp_file("s600", "wdt-file-secret\n", 0600);
	snprintf(text, sizeof(text),
		 CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": \"s\", \"app_key\": \"k\", "
		     "\"app_secret_file\": \"%s\"}", JDY, FLOW, ""), s600);
	wj_config_t *cfg = parse_ok(text);
	assert_string_equal(cfg->wdt.app_secret, "wdt-file-secret"); /* newline stripped */
	assert_string_equal(wj_config_secrets(cfg)[0], "wdt-file-secret");
	wj_config_free(cfg);

	/* 0400 is fine too; a CRLF ending is stripped */
	s600 = tmp_file("s600", "jdy-file-secret\r\n", 0400);
	snprintf(text, sizeof(text),
		 CFG(WDT, "\"kingdee\": {\"url\": \"https://k\", \"client_id\": \"c\", "
			  "\"client_secret_file\": \"%s\", \"outer_instance_id\": \"o\"}", FLOW, ""), s600);
	cfg = parse_ok(text);
	assert_string_equal(cfg->kingdee.client_secret, "jdy-file-secret");
	wj_config_free(cfg);

	const char *s644 = tmp_file("s644", "leaky-secret-644\n", 0644);
	snprintf(text, sizeof(text),
		 CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": \"s\", \"app_key\": \"k\", "
		     "\"app_secret_file\": \"%s\"}", JDY, FLOW, ""), s644);
	snprintf(want, sizeof(want),
		 "cfg.json: wdt.app_secret_file: %s: mode 0644 is group or world readable; chmod 600 it",
		 s644);
	expect_error(text, want);

	const char *s640 = tmp_file("s640", "leaky-secret-640\n", 0640);
	snprintf(text, sizeof(text),
		 CFG(WDT, "\"kingdee\": {\"url\": \"https://k\", \"client_id\": \"c\", "
			  "\"client_secret_file\": \"%s\", \"outer_instance_id\": \"o\"}", FLOW, ""), s640);
	snprintf(want, sizeof(want),
		 "cfg.json: kingdee.client_secret_file: %s: mode 0640 is group or world readable; "
		 "chmod 600 it", s640);
	expect_error(text, want);

	const char *empty = tmp_file("empty", "\n", 0600);
	snprintf(text, sizeof(text),
		 CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": \"s\", \"app_key\": \"k\", "
		     "\"app_secret_file\": \"%s\"}", JDY, FLOW, ""), empty);
	snprintf(want, sizeof(want), "cfg.json: wdt.app_secret_file: %s: empty", empty);
	expect_error(text, want);

	snprintf(text, sizeof(text),
		 CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": \"s\", \"app_key\": \"k\", "
		     "\"app_secret_file\": \"%s/missing\"}", JDY, FLOW, ""), tmpdir);
	snprintf(want, sizeof(want), "cfg.json: wdt.app_secret_file: %s/missing: No such file or directory",
		 tmpdir);
	expect_error(text, want);

	snprintf(text, sizeof(text),
		 CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": \"s\", \"app_key\": \"k\", "
		     "\"app_secret_file\": \"%s\", \"app_secret\": \"inline-too\"}", JDY, FLOW, ""), s600);
	expect_error(text, "cfg.json: wdt.app_secret: give only one of app_secret, app_secret_file, "
			   "app_secret_credential");

	snprintf(text, sizeof(text),
		 CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": \"s\", \"app_key\": \"k\", "
		     "\"app_secret_file\": 7}", JDY, FLOW, ""));
	expect_error(text, "cfg.json: wdt.app_secret_file: expected a file path");
}

static void test_secret_credential(void **state)
{
	(void)state;
	char want[512];
	static const char text[] =
		CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": \"s\", \"app_key\": \"k\", "
		    "\"app_secret_credential\": \"cred\"}", JDY, FLOW, "");

	unsetenv("CREDENTIALS_DIRECTORY");
	expect_error(text, "cfg.json: wdt.app_secret_credential: cred: $CREDENTIALS_DIRECTORY is not set");

	assert_int_equal(setenv("CREDENTIALS_DIRECTORY", tmpdir, 1), 0);
	snprintf(want, sizeof(want), "cfg.json: wdt.app_secret_credential: %s/cred: no such credential",
		 tmpdir);
	expect_error(text, want);

	/* credentials are owned by systemd: no mode check */
	tmp_file("cred", "credential-secret\n", 0444);
	wj_config_t *cfg = parse_ok(text);
	assert_string_equal(cfg->wdt.app_secret, "credential-secret");
	wj_config_free(cfg);

	expect_error(CFG("\"wdt\": {\"url\": \"https://w\", \"sid\": \"s\", \"app_key\": \"k\", "
			 "\"app_secret_credential\": \"../cred\"}", JDY, FLOW, ""),
		     "cfg.json: wdt.app_secret_credential: expected a credential name");
	unsetenv("CREDENTIALS_DIRECTORY");
}

/* No message ever carries a secret value, whatever else is wrong. */
static void test_secret_never_in_messages(void **state)
{
	(void)state;
	char text[2048];
	const char *leaky = tmp_file("s644", "TOPSECRET-file-value\n", 0644);
	snprintf(text, sizeof(text),
		 "{\"wdt\": {\"url\": \"gopher://w\", \"sid\": 1, \"app_key\": \"k\", "
		 "\"app_secret\": \"TOPSECRET-inline\", \"app_secret_file\": \"%s\"},\n"
		 " \"kingdee\": {\"url\": \"https://k\", \"client_id\": \"c\", \"client_secret_file\": \"%s\", "
		 "\"outer_instance_id\": \"o\", \"extra\": 1},\n"
		 " \"flows\": [{\"name\": \"f\", \"cursor\": {\"window\": \"TOPSECRET\"}}]}\n",
		 leaky, leaky);
	const char *texts[] = {
		text,
		/* syntax errors right at a secret value */
		"{\"wdt\": {\"app_secret\" \"TOPSECRET-no-colon\"}}",
		"{\"wdt\": {\"app_secret\": \"TOPSECRET-ctl\x01\"}}",
		"{\"wdt\": {\"app_secret\": TOPSECRET}}",
		"{\"wdt\": {\"app_secret\": \"TOPSECRET\\q\"}}",
		"{\"wdt\": {\"app_secret\": \"TOPSECRET\", \"app_secret\": \"TOPSECRET2\"}}",
		"{\"wdt\": {\"app_secret\": \"TOPSECRET-unterminated\n}}",
	};
	for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
		wj_errors_t e = {0};
		wj_config_t *cfg = wj_config_parse(texts[t], "cfg.json", &e);
		assert_null(cfg);
		assert_true(e.n >= 1);
		for (size_t i = 0; i < e.n; i++) {
			if (strstr(e.msg[i], "TOPS"))
				fail_msg("secret in message: %s", e.msg[i]);
		}
		if (t == 0)
			assert_int_equal(e.n, 6);
		wj_errors_free(&e);
	}
}

/* ---- files ----------------------------------------------------------------------------- */

static void test_load_file(void **state)
{
	(void)state;
	char missing[128], want[256];
	wj_errors_t e = {0};
	snprintf(missing, sizeof(missing), "%s/none.json", tmpdir);
	assert_null(wj_config_load(missing, &e));
	assert_int_equal(e.n, 1);
	snprintf(want, sizeof(want), "%s: No such file or directory", missing);
	assert_string_equal(e.msg[0], want);
	wj_errors_free(&e);

	const char *p = tmp_file("cfg.json", "# comment\n{\n  \"state_dir\": 5,\n", 0644);
	assert_null(wj_config_load(p, &e));
	assert_int_equal(e.n, 1);
	snprintf(want, sizeof(want), "%s:4:0: string or '}' expected near end of file", p);
	assert_string_equal(e.msg[0], want);
	wj_errors_free(&e);

	p = tmp_file("cfg.json", "// c\n" OK_WITH(", \"state_dir\": 5") "\n", 0644);
	assert_null(wj_config_load(p, &e));
	assert_int_equal(e.n, 1);
	snprintf(want, sizeof(want), "%s: state_dir: expected a string", p);
	assert_string_equal(e.msg[0], want);
	wj_errors_free(&e);

	p = tmp_file("cfg.json", "// c\n" OK_WITH("") "\n", 0644);
	wj_config_t *cfg = wj_config_load(p, &e);
	assert_non_null(cfg);
	assert_int_equal(e.n, 0);
	assert_string_equal(cfg->path, p);
	wj_config_free(cfg);

	/* errors are appended to what the list already holds; a NULL list is allowed */
	assert_int_equal(wj_errors_addf(&e, "first %d", 1), 0);
	assert_null(wj_config_parse("{", "x.json", &e));
	assert_int_equal(e.n, 2);
	assert_string_equal(e.msg[0], "first 1");
	assert_string_equal(e.msg[1], "x.json:1:1: string or '}' expected near end of file");
	wj_errors_free(&e);
	assert_null(e.msg);
	assert_int_equal(e.n, 0);
	assert_null(wj_config_parse("{", "x.json", NULL));
	cfg = wj_config_parse(OK_WITH(""), "x.json", NULL);
	assert_non_null(cfg);
	wj_config_free(cfg);
	wj_config_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_design_example),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_rate_parse),
		cmocka_unit_test_setup_teardown(test_production_template, setup_tmp, teardown_tmp),
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_flow_overlap),
		cmocka_unit_test(test_all_errors_reported),
		cmocka_unit_test(test_jdy_auth),
		cmocka_unit_test_setup_teardown(test_secret_file, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_secret_credential, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_secret_never_in_messages, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_load_file, setup_tmp, teardown_tmp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
