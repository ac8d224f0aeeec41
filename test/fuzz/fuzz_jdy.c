/* Fuzz target: a Kingdee answer (the HTTP body) through wj_jdy_parse, as a call that may or may
 * not have been processed, then its data through wj_jdy_saved_bill and the token expiry helpers;
 * the same bytes as a persisted token through wj_jdy_restore_token (a client that never runs
 * its loop, so nothing is sent). */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lib/http.h"
#include "lib/jdy.h"
#include "lib/json.h"
#include "test/fuzz/fuzz_common.h"

static void check_saved_bill(const json_t *data)
{
	char id[64], no[64], sid[3], sno[3];
	int r = wj_jdy_saved_bill(data, id, sizeof(id), no, sizeof(no));
	FUZZ_CHECK(r == 0 || r == -ENOENT || r == -ENOSPC);
	FUZZ_CHECK_TERMINATED(id);
	FUZZ_CHECK_TERMINATED(no);
	if (r == 0)
		FUZZ_CHECK(id[0] != '\0');
	int r2 = wj_jdy_saved_bill(data, sid, sizeof(sid), sno, sizeof(sno));
	FUZZ_CHECK(r2 == 0 || r2 == -ENOENT || r2 == -ENOSPC);
	FUZZ_CHECK_TERMINATED(sid);
	FUZZ_CHECK_TERMINATED(sno);
	/* a short buffer never turns a missing id into a found one, nor the reverse */
	FUZZ_CHECK((r == -ENOENT) == (r2 == -ENOENT));
	if (r == 0 && r2 == 0) {
		FUZZ_CHECK(!strcmp(id, sid));
		FUZZ_CHECK(!strcmp(no, sno));
	}
}

static void check_expiry(const json_t *data)
{
	const json_t *e = json_object_get(data, "expires");
	if (!json_is_integer(e))
		return;
	const int64_t now = 1790000000000LL; /* 2026-09 in ms */
	int64_t expiry = wj_jdy_expiry_ms((int64_t)json_integer_value(e), now);
	/* a reading is an expiry in the future, at most 30 days away, or none */
	FUZZ_CHECK(expiry == -1 || (expiry > now && expiry <= now + 30 * 86400000LL));
	int64_t at = wj_jdy_refresh_at(now, expiry);
	if (expiry > now)
		FUZZ_CHECK(at >= now && at <= expiry);
	else
		FUZZ_CHECK(at == now);
}

/* The list and lookup readings: whatever the data, one shape or a refusal, never a crash. */
static void check_normalise(const json_t *data)
{
	json_t *n = wj_jdy_bills_normalise(data, 3);
	if (n) {
		size_t i;
		const json_t *row;
		FUZZ_CHECK(json_is_array(json_object_get(n, "rows")));
		FUZZ_CHECK(json_integer_value(json_object_get(n, "total_page")) >= 0);
		json_array_foreach(json_object_get(n, "rows"), i, row) {
			FUZZ_CHECK(json_is_string(json_object_get(row, "id")));
			FUZZ_CHECK(json_is_string(json_object_get(row, "remark")));
			const json_t *ct = json_object_get(row, "create_time_ms");
			FUZZ_CHECK(json_is_null(ct) || json_integer_value(ct) > 0);
		}
		json_decref(n);
	}
	json_t *m = json_deep_copy(data);
	if (m && wj_jdy_material_normalise(m) == 0) {
		FUZZ_CHECK(json_is_string(json_object_get(m, "id")));
		FUZZ_CHECK(json_is_string(json_object_get(m, "base_unit_id")));
		FUZZ_CHECK(json_is_boolean(json_object_get(m, "batch_managed")));
		FUZZ_CHECK(json_is_boolean(json_object_get(m, "shelf_life_managed")));
		FUZZ_CHECK(wj_jdy_material_normalise(m) == 0);
	}
	json_decref(m);
	json_t *st = json_deep_copy(data);
	if (st && wj_jdy_store_normalise(st) == 0) {
		FUZZ_CHECK(json_is_boolean(json_object_get(st, "location_managed")));
		FUZZ_CHECK(json_is_object(json_object_get(st, "locations")));
		const char *k;
		const json_t *v;
		json_object_foreach(json_object_get(st, "locations"), k, v)
			FUZZ_CHECK(json_is_string(v));
	}
	json_decref(st);
}

static void check(long status, const char *body, size_t len, bool maybe_sent, bool utf8)
{
	wj_jdy_result_t res;
	json_t *root = (json_t *)&res; /* must be overwritten */
	int64_t retry = (int64_t)(len % 3) * 1000 - 1;
	int r = wj_jdy_parse(status, body, len, retry, maybe_sent, &res, &root);
	FUZZ_CHECK(r == 0);
	FUZZ_CHECK(root == NULL || json_is_object(root));
	FUZZ_CHECK(res.http_status == status);
	FUZZ_CHECK(res.cls <= WJ_JDY_UNKNOWN);
	FUZZ_CHECK(wj_jdy_class_name(res.cls) != NULL);
	FUZZ_CHECK_TERMINATED(res.code);
	FUZZ_CHECK_TERMINATED(res.error);
	if (!maybe_sent)
		FUZZ_CHECK(res.cls != WJ_JDY_UNKNOWN);
	if (res.cls == WJ_JDY_OK) {
		FUZZ_CHECK(res.error[0] == '\0');
		FUZZ_CHECK(root != NULL);
	} else {
		FUZZ_CHECK(res.error[0] != '\0');
	}
	if (res.cls == WJ_JDY_RATE_LIMITED)
		FUZZ_CHECK(res.retry_after_ms >= 0);
	if (res.data) {
		/* borrowed from the document */
		FUZZ_CHECK(root != NULL);
		FUZZ_CHECK(json_object_get(root, "data") == res.data);
		uint8_t h[32];
		FUZZ_CHECK(wj_json_hash(res.data, h) == 0);
		check_saved_bill(res.data);
		check_expiry(res.data);
		check_normalise(res.data);
	}
	if (utf8)
		FUZZ_CHECK(fuzz_utf8_valid(res.error, strlen(res.error)));
	json_decref(root);
}

static uv_loop_t loop;
static wj_http_t *http;
static wj_jdy_t *client;

static void check_restore(const char *body, size_t len)
{
	if (!client) {
		const wj_jdy_opts_t o = {.api = WJ_JDY_V2, .url = "https://127.0.0.1:9",
					 .client_id = "cid", .client_secret = "csecret",
					 .outer_instance_id = "oid"};
		FUZZ_CHECK(uv_loop_init(&loop) == 0);
		FUZZ_CHECK(wj_http_global_init() == 0);
		FUZZ_CHECK((http = wj_http_new(&loop, NULL)));
		FUZZ_CHECK((client = wj_jdy_new(&loop, http, &o)));
	}
	char *text = malloc(len + 1);
	FUZZ_CHECK(text);
	memcpy(text, body, len);
	text[len] = '\0';
	int r = wj_jdy_restore_token(client, text);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ESTALE || r == -ENOMEM);
	if (r == 0)
		FUZZ_CHECK(wj_jdy_has_token(client));
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 0, 204, 400, 401, 403, 404, 429, 500, 502, 503, 504, 519};
	const char *body = (const char *)data;
	bool utf8 = fuzz_utf8_valid(body, size);
	long second = statuses[size % (sizeof(statuses) / sizeof(statuses[0]))];
	check(200, body, size, false, utf8);
	check(200, body, size, true, utf8);
	check(second, body, size, size & 1, utf8);
	check_restore(body, size);
	return 0;
}
