/* Fuzz target: a WDT answer (the HTTP body) through wj_wdt_parse, then every order through the
 * order helpers, the content hash and three mappings (default V1, default V2 and a custom one
 * that uses every kind of field). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/mapping.h"
#include "lib/wdt.h"
#include "test/fuzz/fuzz_common.h"

/* Short names so that a large order stays a small seed. */
static const char custom_spec[] =
	"{\"lines_from\": \"l\","
	" \"bill\": {"
	"  \"remark\": {\"template\": \"R:{no}/{stockin_id}\"},"
	"  \"date\": {\"path\": \"t\", \"fallback\": [\"t2\", \"order.t3\"], \"convert\": \"date\"},"
	"  \"k\": {\"const\": [1, {\"a\": null}]},"
	"  \"n\": {\"path\": \"nn\", \"convert\": \"number\"}},"
	" \"lines\": {"
	"  \"m\": {\"lookup\": \"material.id\", \"path\": \"s\"},"
	"  \"u\": {\"lookup\": \"material.base_unit_id\", \"path\": \"s\"},"
	"  \"w\": {\"lookup\": \"store.id\", \"path\": \"order.w\"},"
	"  \"q\": {\"path\": \"n\", \"convert\": \"number\", \"positive\": true},"
	"  \"x\": {\"path\": \"x\", \"fallback\": [\"order.x\"]}}}";

static wj_mapping_t *maps[3];
static const char *const map_lines[3] = {"details_list", "details_list", "l"};

static void init(void)
{
	char err[256];
	json_error_t je;
	if (maps[0])
		return;
	json_t *spec = json_loads(custom_spec, 0, &je);
	FUZZ_CHECK(spec);
	FUZZ_CHECK(wj_mapping_compile(NULL, WJ_JDY_V1, NULL, &maps[0], err, sizeof(err)) == 0);
	FUZZ_CHECK(wj_mapping_compile(NULL, WJ_JDY_V2, "WDT:{stockin_no}:{warehouse_no}", &maps[1],
				      err, sizeof(err)) == 0);
	FUZZ_CHECK(wj_mapping_compile(spec, WJ_JDY_V1, NULL, &maps[2], err, sizeof(err)) == 0);
	json_decref(spec);
}

typedef struct lookups {
	json_t *full, *no_unit;
	unsigned calls, unknown;
} lookups_t;

/* Numbers ending in '9' are not known yet, numbers ending in '8' name a material without a base
 * unit; every other number is known. */
static const json_t *lookup(void *arg, char kind, const char *number)
{
	lookups_t *l = arg;
	FUZZ_CHECK(kind == 'm' || kind == 's');
	FUZZ_CHECK(number);
	size_t n = strlen(number);
	l->calls++;
	if (n && number[n - 1] == '9') {
		l->unknown++;
		return NULL;
	}
	if (n && number[n - 1] == '8')
		return l->no_unit;
	return l->full;
}

static void check_mapping(size_t k, const json_t *order, lookups_t *l)
{
	char err[512], marker[256];
	int rc = 1;
	unsigned unknown0 = l->unknown;
	err[0] = '\0';
	json_t *body = wj_mapping_apply(maps[k], order, lookup, l, &rc, err, sizeof(err));
	FUZZ_CHECK((body != NULL) == (rc == 0));
	FUZZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -EINVAL);
	FUZZ_CHECK_TERMINATED(err);
	if (rc == -EINVAL)
		FUZZ_CHECK(err[0] != '\0');
	if (rc == -EAGAIN)
		FUZZ_CHECK(l->unknown > unknown0);
	if (!body)
		return;
	FUZZ_CHECK(l->unknown == unknown0);
	const json_t *lines = json_object_get(body, "material_entity");
	FUZZ_CHECK(json_array_size(lines) == json_array_size(json_object_get(order, map_lines[k])));
	FUZZ_CHECK(json_array_size(lines) > 0);
	/* the remark carries the marker used for reconciliation */
	if (wj_mapping_marker(maps[k], order, marker, sizeof(marker)) == 0)
		FUZZ_CHECK(!strcmp(json_string_value(json_object_get(body, "remark")), marker));
	char *text = json_dumps(body, JSON_COMPACT);
	FUZZ_CHECK(text);
	free(text);
	json_decref(body);
}

/* The number helpers agree with each other and with the text they print. */
static void check_value(const json_t *v)
{
	double d = 0;
	int64_t i = 0;
	char text[64];
	int rn = wj_json_number(v, &d), ri = wj_json_int(v, &i), rt = wj_json_text(v, text, sizeof(text));
	FUZZ_CHECK(rn == 0 || rn == -EINVAL || rn == -ERANGE);
	FUZZ_CHECK(ri == 0 || ri == -EINVAL || ri == -ERANGE);
	FUZZ_CHECK(rt == 0 || rt == -EINVAL || rt == -ENOSPC);
	FUZZ_CHECK(ri != 0 || rn == 0);
	if (ri == 0 && i > -(1LL << 53) && i < (1LL << 53))
		FUZZ_CHECK(d == (double)i);
	if (rn == 0)
		FUZZ_CHECK(isfinite(d));
	if (rt == 0 && json_is_integer(v))
		FUZZ_CHECK(strtoll(text, NULL, 10) == json_integer_value(v));
	if (rt == 0 && json_is_real(v))
		FUZZ_CHECK(strtod(text, NULL) == json_real_value(v));
	if (json_is_number(v) || json_is_string(v))
		FUZZ_CHECK(rt == 0 || rt == -ENOSPC);
}

static void check_order(const json_t *order, lookups_t *l)
{
	char id[64], small[4], buf[64];
	uint8_t h1[32], h2[32];
	int64_t e0 = 0, e8 = 0;

	int r = wj_wdt_order_key(order, id, sizeof(id));
	FUZZ_CHECK(r == 0 || r == -ENOENT || r == -EINVAL || r == -ENOSPC || r == -EILSEQ ||
		   r == -ERANGE);
	FUZZ_CHECK(r == 0 || id[0] == '\0');
	FUZZ_CHECK(strlen(wj_wdt_key_problem(r)) > 0);
	if (r == 0) {
		FUZZ_CHECK(id[0] != '\0');
		for (const unsigned char *c = (const unsigned char *)id; *c; c++)
			FUZZ_CHECK(*c > ' ' && *c != 0x7f);
		int r2 = wj_wdt_order_key(order, small, sizeof(small));
		FUZZ_CHECK(r2 == 0 || r2 == -ENOSPC || r2 == -ERANGE);
		if (r2 == 0)
			FUZZ_CHECK(!strcmp(small, id));
	}

	int m0 = wj_wdt_order_modified(order, 0, &e0);
	int m8 = wj_wdt_order_modified(order, 8 * 3600, &e8);
	FUZZ_CHECK(m0 == m8);
	FUZZ_CHECK(m0 == 0 || m0 == -ENOENT || m0 == -EINVAL);
	if (m0 == 0)
		FUZZ_CHECK(e0 - e8 == 8 * 3600);

	/* the content hash ignores key order and identity */
	FUZZ_CHECK(wj_json_hash(order, h1) == 0);
	json_t *copy = json_deep_copy(order);
	FUZZ_CHECK(copy);
	FUZZ_CHECK(wj_json_hash(copy, h2) == 0);
	FUZZ_CHECK(!memcmp(h1, h2, sizeof(h1)));
	json_decref(copy);

	r = wj_template_expand("{stockin_no}-{warehouse_no}", order, buf, sizeof(buf));
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOSPC);
	if (r == 0)
		FUZZ_CHECK(strlen(buf) < sizeof(buf));

	const char *key;
	const json_t *v, *line;
	size_t i;
	json_object_foreach((json_t *)order, key, v)
		check_value(v);
	json_array_foreach(json_object_get(order, "details_list"), i, line) {
		json_object_foreach((json_t *)line, key, v)
			check_value(v);
	}

	for (size_t k = 0; k < 3; k++)
		check_mapping(k, order, l);
}

static void check_result(const wj_wdt_result_t *res, int ret, bool utf8_input)
{
	FUZZ_CHECK_TERMINATED(res->error);
	FUZZ_CHECK_TERMINATED(res->code);
	FUZZ_CHECK((ret == 0) == (res->cls == WJ_WDT_OK));
	FUZZ_CHECK(ret == 0 || ret == -EIO);
	FUZZ_CHECK(res->cls <= WJ_WDT_PERMANENT);
	if (res->cls == WJ_WDT_OK) {
		FUZZ_CHECK(json_is_array(res->orders));
		FUZZ_CHECK(res->error[0] == '\0');
		FUZZ_CHECK(res->total_count >= -1);
	} else {
		FUZZ_CHECK(res->orders == NULL);
		FUZZ_CHECK(!strncmp(res->error, "wdt: ", 5));
	}
	if (res->cls == WJ_WDT_RATE_LIMITED)
		FUZZ_CHECK(res->retry_after_ms >= WJ_WDT_RATE_BACKOFF_MS);
	if (utf8_input)
		FUZZ_CHECK(fuzz_utf8_valid(res->error, strlen(res->error)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 0, 201, 400, 401, 403, 404, 408, 429, 500, 502, 503};
	const char *body = (const char *)data;
	bool utf8 = fuzz_utf8_valid(body, size);
	wj_wdt_result_t res;

	init();
	/* the repair changes nothing that parses as it is, and what it changes still has the
	 * same structure: only invalid UTF-8 and out-of-range numbers are replaced */
	wj_buf_t fixed = {0};
	int rep = wj_wdt_repair(body, size, &fixed);
	FUZZ_CHECK(rep == 0 || rep == 1);
	json_t *as_is = json_loadb(body, size, JSON_DECODE_ANY, NULL);
	if (as_is)
		FUZZ_CHECK(rep == 0);
	json_decref(as_is);
	if (rep == 1) {
		FUZZ_CHECK(fixed.len >= size);
		FUZZ_CHECK(fuzz_utf8_valid(fixed.data, fixed.len));
		wj_buf_t again = {0};
		FUZZ_CHECK(wj_wdt_repair(fixed.data, fixed.len, &again) == 0);
		wj_buf_free(&again);
	}
	wj_buf_free(&fixed);
	/* once as a 200 answer, once with a status picked by the input */
	long second = statuses[size % (sizeof(statuses) / sizeof(statuses[0]))];
	int ret = wj_wdt_parse(second, body, size, (int64_t)(size % 3) * 20000 - 1, &res);
	check_result(&res, ret, utf8);
	wj_wdt_result_clear(&res);
	FUZZ_CHECK(res.orders == NULL);

	ret = wj_wdt_parse(200, body, size, -1, &res);
	check_result(&res, ret, utf8);
	if (ret == 0) {
		lookups_t l = {
			.full = json_pack("{s:s, s:s}", "id", "M1", "base_unit_id", "U1"),
			.no_unit = json_pack("{s:s}", "id", "M2"),
		};
		FUZZ_CHECK(l.full && l.no_unit);
		size_t i;
		json_t *order;
		json_array_foreach(res.orders, i, order)
			check_order(order, &l);
		json_decref(l.full);
		json_decref(l.no_unit);
	}
	wj_wdt_result_clear(&res);
	return 0;
}
