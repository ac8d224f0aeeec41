/* Fuzz target: a configuration text through wj_config_parse; a valid one also has each flow's
 * mapping compiled and applied to a sample order. Secrets given as credentials are read from a
 * private directory made at start. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/mapping.h"
#include "test/fuzz/fuzz_common.h"

#define NAME "fuzz.json"

static char cred_dir[64];
static json_t *sample;
static const char *const cred_names[] = {"wdt-app-secret", "kingdee-client-secret", "s"};

static void cleanup(void)
{
	char path[128];
	for (size_t i = 0; i < sizeof(cred_names) / sizeof(cred_names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", cred_dir, cred_names[i]);
		unlink(path);
	}
	rmdir(cred_dir);
	json_decref(sample);
}

static void init(void)
{
	char path[128];
	if (sample)
		return;
	snprintf(cred_dir, sizeof(cred_dir), "/tmp/wj-fuzz-XXXXXX");
	FUZZ_CHECK(mkdtemp(cred_dir));
	for (size_t i = 0; i < sizeof(cred_names) / sizeof(cred_names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", cred_dir, cred_names[i]);
		FILE *f = fopen(path, "w");
		FUZZ_CHECK(f);
		fputs("credential-secret\n", f);
		fclose(f);
	}
	setenv("CREDENTIALS_DIRECTORY", cred_dir, 1);
	json_error_t je;
	sample = json_loads(
		"{\"stockin_id\": 7, \"stockin_no\": \"RK2026110100007\", \"warehouse_no\": \"WH01\","
		" \"src_order_no\": \"PD01\", \"stockin_time\": \"2026-11-01 10:00:00\","
		" \"modified\": \"2026-11-01 10:05:00\", \"order_type\": \"4\", \"status\": \"80\","
		" \"details_list\": [{\"spec_no\": \"SP1\", \"goods_count\": \"3.0000\", \"rec_id\": 1},"
		"  {\"spec_no\": 42, \"goods_count\": 2, \"rec_id\": \"2\"}]}",
		0, &je);
	FUZZ_CHECK(sample);
	atexit(cleanup);
}

static const json_t *lookup(void *arg, char kind, const char *number)
{
	(void)kind;
	(void)number;
	return arg;
}

static void check_flow(const wj_config_t *cfg, const wj_flow_cfg_t *f, const json_t *known)
{
	char err[512];
	wj_mapping_t *m = NULL;
	FUZZ_CHECK(f->name && f->name[0]);
	FUZZ_CHECK(f->page_size >= 1 && f->page_size <= 100);
	FUZZ_CHECK(f->priority >= 0 && f->priority <= 99);
	FUZZ_CHECK(f->backfill_priority >= 0 && f->backfill_priority <= 99);
	FUZZ_CHECK(f->remark_template && strstr(f->remark_template, "{stockin_no}"));
	err[0] = '\0';
	int r = wj_mapping_compile(f->mapping, cfg->kingdee.api, f->remark_template, &m, err,
				   sizeof(err));
	FUZZ_CHECK(r == 0 || r == -EINVAL);
	if (r < 0) {
		FUZZ_CHECK(f->mapping != NULL); /* the default always compiles */
		FUZZ_CHECK(!strncmp(err, "mapping", 7));
		FUZZ_CHECK(fuzz_utf8_valid(err, strlen(err)));
		return;
	}
	int rc = 1;
	json_t *body = wj_mapping_apply(m, sample, lookup, (void *)known, &rc, err, sizeof(err));
	FUZZ_CHECK((body != NULL) == (rc == 0));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc < 0)
		FUZZ_CHECK(fuzz_utf8_valid(err, strlen(err)));
	if (!f->mapping && !strcmp(f->remark_template, "WDT:{stockin_no}"))
		FUZZ_CHECK(rc == 0); /* the default maps the sample order */
	json_decref(body);
	body = wj_mapping_apply(m, sample, NULL, NULL, &rc, err, sizeof(err));
	FUZZ_CHECK((body != NULL) == (rc == 0));
	json_decref(body);
	char marker[256];
	(void)wj_mapping_marker(m, sample, marker, sizeof(marker));
	wj_mapping_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init();
	char *text = malloc(size + 1);
	FUZZ_CHECK(text);
	memcpy(text, data, size);
	text[size] = '\0';
	bool utf8 = fuzz_utf8_valid(text, strlen(text));
	wj_errors_t errs = {0};
	wj_config_t *cfg = wj_config_parse(text, NAME, &errs);
	free(text);
	FUZZ_CHECK((cfg == NULL) == (errs.n > 0));
	for (size_t i = 0; i < errs.n; i++) {
		FUZZ_CHECK(errs.msg[i]);
		FUZZ_CHECK(!strncmp(errs.msg[i], NAME, strlen(NAME)));
		/* messages go to logs and terminals whole: no cut characters */
		if (utf8)
			FUZZ_CHECK(fuzz_utf8_valid(errs.msg[i], strlen(errs.msg[i])));
	}
	wj_errors_free(&errs);
	if (!cfg)
		return 0;
	FUZZ_CHECK(cfg->n_flows > 0);
	FUZZ_CHECK(cfg->map_max >= cfg->map_size);
	FUZZ_CHECK(cfg->queue.backoff_max_ms >= cfg->queue.backoff_initial_ms);
	FUZZ_CHECK(cfg->wdt.url && cfg->kingdee.url && cfg->wdt.app_secret &&
		   cfg->kingdee.client_secret);
	const char *const *secrets = wj_config_secrets(cfg);
	FUZZ_CHECK(secrets && secrets[0] && secrets[1] && !secrets[2]);
	json_t *known = json_pack("{s:s, s:s}", "id", "M1", "base_unit_id", "U1");
	FUZZ_CHECK(known);
	for (size_t i = 0; i < cfg->n_flows; i++)
		check_flow(cfg, &cfg->flows[i], known);
	json_decref(known);
	wj_config_free(cfg);
	return 0;
}
