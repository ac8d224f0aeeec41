/* Unit tests for lib/mapping: the built-in default (v1, v2), a declarative mapping with every
 * kind of field, and refusals that name the order, the line and the field. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/json.h"
#include "lib/mapping.h"

static const char *ORDER =
	"{\"stockin_id\": 7, \"stockin_no\": \"RK001\", \"warehouse_no\": \"WH01\","
	" \"src_order_no\": \"PD9\", \"stockin_time\": \"2026-11-02 10:11:12\","
	" \"modified\": \"2026-11-03 00:00:00\", \"details_list\": ["
	"  {\"spec_no\": \"SP00001\", \"goods_count\": \"3.0000\"},"
	"  {\"spec_no\": \"SP00002\", \"goods_count\": 2}]}";

static json_t *material(const char *id, const char *unit)
{
	return json_pack("{s:s, s:s}", "id", id, "base_unit_id", unit);
}

typedef struct catalogue {
	json_t *m1, *m2, *s1;
	int calls;
	bool empty;
} catalogue_t;

/* SP00001 → M1 (unit U2), SP00002 → M2 (U3), WH01 → S01. */
static catalogue_t plain_catalogue(void)
{
	catalogue_t c = {material("M1", "U2"), material("M2", "U3"),
			 json_pack("{s:s}", "id", "S01"), 0, false};
	return c;
}

/* spec (NULL: the default) compiled for api; fails the test when it does not compile. */
static wj_mapping_t *compiled(const json_t *spec, wj_jdy_api_t api)
{
	wj_mapping_t *m = NULL;
	char err[512] = "";
	if (wj_mapping_compile(spec, api, NULL, &m, err, sizeof(err)) < 0)
		fail_msg("does not compile: %s", err);
	return m;
}

static void catalogue_free(catalogue_t *c)
{
	json_decref(c->m1);
	json_decref(c->m2);
	json_decref(c->s1);
}

static const json_t *lookup(void *arg, char kind, const char *number)
{
	catalogue_t *c = arg;
	c->calls++;
	if (c->empty)
		return NULL;
	if (kind == 'm' && !strcmp(number, "SP00001"))
		return c->m1;
	if (kind == 'm' && !strcmp(number, "SP00002"))
		return c->m2;
	if (kind == 's' && !strcmp(number, "WH01"))
		return c->s1;
	return NULL;
}

static json_t *apply(const wj_mapping_t *m, const char *order_text, catalogue_t *c, int *rc,
		     char *err)
{
	json_t *order = json_loads(order_text, 0, NULL);
	assert_non_null(order);
	json_t *body = wj_mapping_apply(m, order, lookup, c, rc, err, 512);
	json_decref(order);
	return body;
}

static void test_default_v1_v2(void **state)
{
	(void)state;
	catalogue_t c = plain_catalogue();
	wj_mapping_t *m = compiled(NULL, WJ_JDY_V1);
	char err[512] = "";
	int rc;
	json_t *body = apply(m, ORDER, &c, &rc, err);
	assert_int_equal(rc, 0);
	json_t *want = json_loads(
		"{\"billdate\": \"2026-11-02\", \"remark\": \"WDT:RK001\", \"material_entity\": ["
		" {\"materialid_id\": \"M1\", \"stockid_id\": \"S01\", \"qty\": 3.0,"
		"  \"unit_id\": \"U2\", \"billno\": \"PD9\"},"
		" {\"materialid_id\": \"M2\", \"stockid_id\": \"S01\", \"qty\": 2.0,"
		"  \"unit_id\": \"U3\", \"billno\": \"PD9\"}]}", 0, NULL);
	assert_true(json_equal(body, want));
	char marker[64];
	json_t *order = json_loads(ORDER, 0, NULL);
	assert_int_equal(wj_mapping_marker(m, order, marker, sizeof(marker)), 0);
	assert_string_equal(marker, "WDT:RK001");
	json_decref(order);
	json_decref(body);
	json_decref(want);
	wj_mapping_free(m);

	assert_int_equal(wj_mapping_compile(NULL, WJ_JDY_V2, "JDY-{stockin_no}-{src_order_no}", &m,
					    err, sizeof(err)), 0);
	body = apply(m, ORDER, &c, &rc, err);
	assert_int_equal(rc, 0);
	want = json_loads(
		"{\"bill_date\": \"2026-11-02\", \"remark\": \"JDY-RK001-PD9\", \"material_entity\": ["
		" {\"material_id\": \"M1\", \"stock_id\": \"S01\", \"qty\": 3.0, \"unit_id\": \"U2\"},"
		" {\"material_id\": \"M2\", \"stock_id\": \"S01\", \"qty\": 2.0, \"unit_id\": \"U3\"}]}",
		0, NULL);
	assert_true(json_equal(body, want));
	json_decref(body);
	json_decref(want);

	/* lookups not yet known: -EAGAIN, and the callback heard of each number */
	c.empty = true;
	c.calls = 0;
	assert_null(apply(m, ORDER, &c, &rc, err));
	assert_int_equal(rc, -EAGAIN);
	assert_true(c.calls >= 3);
	wj_mapping_free(m);
	catalogue_free(&c);
}

static void test_declarative(void **state)
{
	(void)state;
	json_t *spec = json_loads(
		"{\"bill\": {\"date\": {\"path\": \"check_time\", \"fallback\": [\"modified\"],"
		"                       \"convert\": \"date\"},"
		"            \"remark\": {\"template\": \"X:{stockin_no}\"},"
		"            \"source\": {\"const\": \"WDT\"}},"
		" \"lines\": {\"m\": {\"lookup\": \"material.id\", \"path\": \"spec_no\"},"
		"             \"n\": {\"path\": \"goods_count\", \"convert\": \"number\"},"
		"             \"w\": {\"path\": \"order.warehouse_no\"}}}", 0, NULL);
	catalogue_t c = {material("M1", "U2"), material("M2", "U3"), NULL, 0, false};
	wj_mapping_t *m;
	char err[512] = "";
	int rc;
	assert_int_equal(wj_mapping_compile(spec, WJ_JDY_V1, NULL, &m, err, sizeof(err)), 0);
	json_t *body = apply(m, ORDER, &c, &rc, err);
	assert_int_equal(rc, 0);
	json_t *want = json_loads(
		"{\"date\": \"2026-11-03\", \"remark\": \"X:RK001\", \"source\": \"WDT\","
		" \"material_entity\": [{\"m\": \"M1\", \"n\": 3.0, \"w\": \"WH01\"},"
		"                       {\"m\": \"M2\", \"n\": 2.0, \"w\": \"WH01\"}]}", 0, NULL);
	assert_true(json_equal(body, want));
	json_decref(body);
	json_decref(want);
	wj_mapping_free(m);
	json_decref(spec);
	json_decref(c.m1);
	json_decref(c.m2);
}

static void test_compile_errors(void **state)
{
	(void)state;
	static const struct {
		const char *spec, *msg;
	} cases[] = {
		{"[]", "mapping: expected \"default\" or an object"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}}, \"lines\": {}, \"x\": 1}",
		 "mapping.x: unknown key"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}}, \"lines\": {}}",
		 "mapping.lines: expected a non-empty object of fields"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"path\": \"a\", \"const\": 1}}}",
		 "mapping.lines.q: give exactly one of \"path\", \"const\", \"template\", \"lookup\""},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"path\": \"a\", \"convert\": \"int\"}}}",
		 "mapping.lines.q.convert: expected \"string\", \"number\", \"integer\" or "
		 "\"date\""},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"lookup\": \"material.name\", \"path\": \"spec_no\"}}}",
		 "mapping.lines.q.lookup: expected \"material.id\", \"material.base_unit_id\", "
		 "\"store.id\" or \"store.location\""},
		{"{\"bill\": {\"d\": {\"path\": \"x\"}}, \"lines\": {\"q\": {\"path\": \"a\"}}}",
		 "mapping.bill.remark: required (it carries the marker used to detect duplicates)"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}, \"s\": {\"lookup\": \"store.id\","
		 " \"path\": \"warehouse_no\"}}, \"lines\": {\"q\": {\"path\": \"a\"}}}",
		 "mapping.bill.s: lookups are only allowed in lines"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\", \"colour\": 1}},"
		 " \"lines\": {\"q\": {\"path\": \"a\"}}}",
		 "mapping.bill.remark.colour: unknown key"},
		/* extending the default */
		{"{\"extends\": \"v1\"}", "mapping.extends: expected \"default\""},
		{"{\"extends\": true}", "mapping.extends: expected \"default\""},
		{"{\"extends\": \"default\", \"bill\": []}",
		 "mapping.bill: expected an object of fields"},
		{"{\"extends\": \"default\", \"lines\": {\"colour\": null}}",
		 "mapping.lines.colour: null removes a field of the default, which has none of that "
		 "name"},
		{"{\"extends\": \"default\", \"bill\": {\"remark\": null}}",
		 "mapping.bill.remark: required (it carries the marker used to detect duplicates)"},
		{"{\"extends\": \"default\", \"bill\": {\"billno\": {\"templat\": \"PY\"}}}",
		 "mapping.bill.billno.templat: unknown key"},
		{"{\"extends\": \"default\", \"line\": {}}", "mapping.line: unknown key"},
		{"{\"extends\": \"default\","
		 " \"lines\": {\"materialid_id\": null, \"unit_id\": null}}",
		 "mapping.lines.batchno: needs a line field with \"lookup\": \"material.id\" (it "
		 "names the material)"},
		/* conditional fields */
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"path\": \"a\", \"when\": \"material.colour\"}}}",
		 "mapping.lines.q.when: expected \"material.batch_managed\", "
		 "\"material.shelf_life_managed\" or \"store.location_managed\""},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"path\": \"a\", \"when\": \"store.location_managed\"}}}",
		 "mapping.lines.q: needs a line field with \"lookup\": \"store.id\" (it names the "
		 "store)"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"lookup\": \"store.location\", \"path\": \"p\"}}}",
		 "mapping.lines.q: needs a line field with \"lookup\": \"store.id\" (it names the "
		 "store)"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"},"
		 " \"d\": {\"path\": \"x\", \"when\": \"material.batch_managed\"}},"
		 " \"lines\": {\"q\": {\"path\": \"a\"}}}",
		 "mapping.bill.d: \"when\" is only allowed in lines"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"path\": \"a\", \"optional\": \"yes\"}}}",
		 "mapping.lines.q.optional: expected true or false"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"const\": 1, \"with\": \"r\"}}}",
		 "mapping.lines.q.with: expected the name of another field of mapping.lines (one "
		 "without \"with\")"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"const\": 1, \"with\": \"q\"}}}",
		 "mapping.lines.q.with: expected the name of another field of mapping.lines (one "
		 "without \"with\")"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"const\": 1, \"with\": 3}}}",
		 "mapping.lines.q.with: expected the name of another field"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"path\": \"a\", \"or\": \"r\"}}}",
		 "mapping.lines.q.or: expected the name of another field of mapping.lines"},
		{"{\"bill\": {\"remark\": {\"template\": \"x\"}},"
		 " \"lines\": {\"q\": {\"path\": \"a\", \"or\": [\"r\"]}}}",
		 "mapping.lines.q.or: expected the name of another field"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *spec = json_loads(cases[i].spec, 0, NULL);
		assert_non_null(spec);
		wj_mapping_t *m = NULL;
		char err[512] = "";
		assert_int_equal(wj_mapping_compile(spec, WJ_JDY_V1, NULL, &m, err, sizeof(err)),
				 -EINVAL);
		assert_null(m);
		assert_string_equal(err, cases[i].msg);
		json_decref(spec);
	}
}

static void test_refusals(void **state)
{
	(void)state;
	catalogue_t c = plain_catalogue();
	wj_mapping_t *m = compiled(NULL, WJ_JDY_V1);
	char err[512] = "";
	int rc;
	static const struct {
		const char *order, *msg;
	} cases[] = {
		{"{\"stockin_no\": \"RK1\", \"warehouse_no\": \"WH01\", \"src_order_no\": \"P\","
		 " \"stockin_time\": \"2026-11-02 10:11:12\", \"details_list\": []}",
		 "order RK1: details_list: no lines"},
		{"{\"stockin_no\": \"RK2\", \"warehouse_no\": \"WH01\", \"src_order_no\": \"P\","
		 " \"stockin_time\": \"2026-11-02 10:11:12\", \"details_list\": ["
		 " {\"spec_no\": \"SP00001\", \"goods_count\": \"1\"},"
		 " {\"spec_no\": \"SP00002\", \"goods_count\": \"0.0000\"}]}",
		 "order RK2: details_list[1].goods_count: must be > 0, got \"0.0000\""},
		{"{\"stockin_no\": \"RK3\", \"warehouse_no\": \"WH01\", \"src_order_no\": \"P\","
		 " \"stockin_time\": \"2026-11-02 10:11:12\", \"details_list\": ["
		 " {\"goods_count\": \"1\"}]}",
		 "order RK3: details_list[0].spec_no: missing"},
		{"{\"stockin_no\": \"RK4\", \"warehouse_no\": \"WH01\", \"src_order_no\": \"P\","
		 " \"details_list\": [{\"spec_no\": \"SP00001\", \"goods_count\": \"1\"}]}",
		 "order RK4: stockin_time: missing"},
		{"{\"stockin_no\": \"RK5\", \"warehouse_no\": \"WH01\", \"src_order_no\": \"P\","
		 " \"stockin_time\": \"2026-11-02 10:11:12\", \"details_list\": ["
		 " {\"spec_no\": \"SP00001\", \"goods_count\": \"-2\"}]}",
		 "order RK5: details_list[0].goods_count: must be > 0, got \"-2\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_null(apply(m, cases[i].order, &c, &rc, err));
		assert_int_equal(rc, -EINVAL);
		assert_string_equal(err, cases[i].msg);
	}
	wj_mapping_free(m);
	catalogue_free(&c);
}

/* One order of the default mapping with the given line (a JSON object text). */
static json_t *one_line(const wj_mapping_t *m, const char *no, const char *line, catalogue_t *c,
			int *rc, char *err)
{
	char text[2048];
	snprintf(text, sizeof(text),
		 "{\"stockin_no\": \"%s\", \"warehouse_no\": \"WH01\", \"src_order_no\": \"PD9\","
		 " \"stockin_time\": \"2026-11-02 10:11:12\", \"details_list\": [%s]}", no, line);
	return apply(m, text, c, rc, err);
}

/* The text of the body as sent, and of its first line. */
static void expect_sent(json_t *body, const char *want_line)
{
	assert_non_null(body);
	char *text = wj_json_dumps_body(body);
	assert_non_null(text);
	const char *entity = strstr(text, "\"material_entity\":[");
	assert_non_null(entity);
	entity += strlen("\"material_entity\":[");
	assert_memory_equal(entity, want_line, strlen(want_line));
	free(text);
	json_decref(body);
}

static void test_exact_quantities(void **state)
{
	(void)state;
	catalogue_t c = plain_catalogue();
	wj_mapping_t *m = compiled(NULL, WJ_JDY_V2);
	char err[512] = "";
	int rc;
	static const struct {
		const char *count, *sent;
	} ok[] = {
		{"\"3.3000\"", "3.3"}, {"\"0.1000\"", "0.1"}, {"\"10.0000\"", "10"},
		{"\"123456789012345\"", "123456789012345"}, {"\"0.000001\"", "0.000001"},
		{"3.3", "3.3"}, {"7", "7"}, {"2.5e1", "25"}, {"\"0012.50\"", "12.5"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char line[256], want[256];
		snprintf(line, sizeof(line), "{\"spec_no\": \"SP00001\", \"goods_count\": %s}",
			 ok[i].count);
		snprintf(want, sizeof(want),
			 "{\"material_id\":\"M1\",\"stock_id\":\"S01\",\"qty\":%s,\"unit_id\":\"U2\"}",
			 ok[i].sent);
		expect_sent(one_line(m, "RK1", line, &c, &rc, err), want);
		assert_int_equal(rc, 0);
	}
	static const struct {
		const char *count, *msg;
	} bad[] = {
		{"\"99999999999999999999\"",
		 "order RK1: details_list[0].goods_count: \"99999999999999999999\" is not a usable "
		 "quantity: more than 15 digits"},
		{"\"1234567890.1234567\"",
		 "order RK1: details_list[0].goods_count: \"1234567890.1234567\" is not a usable "
		 "quantity: more than 15 digits"},
		{"\"3.3e2\"",
		 "order RK1: details_list[0].goods_count: \"3.3e2\" is not a usable quantity: "
		 "expected a number without an exponent"},
		{"\"inf\"",
		 "order RK1: details_list[0].goods_count: \"inf\" is not a usable quantity: "
		 "expected a number"},
		{"\"NaN\"",
		 "order RK1: details_list[0].goods_count: \"NaN\" is not a usable quantity: "
		 "expected a number"},
		{"\"3,5\"",
		 "order RK1: details_list[0].goods_count: \"3,5\" is not a usable quantity: "
		 "expected a number"},
		{"true",
		 "order RK1: details_list[0].goods_count: \"true\" is not a usable quantity: "
		 "expected a number"},
		{"1e20",
		 "order RK1: details_list[0].goods_count: \"1e+20\" is not a usable quantity: more "
		 "than 15 digits"},
		{"12345678901234567",
		 "order RK1: details_list[0].goods_count: \"12345678901234567\" is not a usable "
		 "quantity: more than 15 digits"},
		{"\"\"", "order RK1: details_list[0].goods_count: missing"},
		{"null", "order RK1: details_list[0].goods_count: missing"},
		{"\"-0.0000\"", "order RK1: details_list[0].goods_count: must be > 0, got \"-0.0000\""},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char line[256];
		snprintf(line, sizeof(line), "{\"spec_no\": \"SP00001\", \"goods_count\": %s}",
			 bad[i].count);
		err[0] = '\0';
		assert_null(one_line(m, "RK1", line, &c, &rc, err));
		assert_int_equal(rc, -EINVAL);
		assert_string_equal(err, bad[i].msg);
	}
	wj_mapping_free(m);
	catalogue_free(&c);
}

/* A number jansson could not hold reaches the mapping as a string with its exact text: the
 * order is refused (and so parked) with the order, the field path and the text. */
static void test_out_of_range_numbers(void **state)
{
	(void)state;
	catalogue_t c = plain_catalogue();
	wj_mapping_t *m = compiled(NULL, WJ_JDY_V1);
	char err[512] = "";
	int rc;
	assert_null(apply(m,
			  "{\"stockin_no\": \"RK001\", \"warehouse_no\": \"WH01\", \"src_order_no\": "
			  "\"PD9\", \"stockin_time\": \"2026-11-02 10:11:12\", \"details_list\": ["
			  " {\"spec_no\": \"SP00001\", \"goods_count\": \"1e400\"}]}",
			  &c, &rc, err));
	assert_int_equal(rc, -EINVAL);
	assert_string_equal(err, "order RK001: details_list[0].goods_count: \"1e400\" is not a "
				 "usable quantity: expected a number without an exponent");
	assert_null(apply(m,
			  "{\"stockin_no\": \"RK002\", \"warehouse_no\": \"WH01\", \"src_order_no\": "
			  "\"PD9\", \"stockin_time\": \"2026-11-02 10:11:12\", \"details_list\": ["
			  " {\"spec_no\": \"SP00001\", \"goods_count\": \"2\"},"
			  " {\"spec_no\": \"SP00002\", \"goods_count\": \"99999999999999999999\"}]}",
			  &c, &rc, err));
	assert_int_equal(rc, -EINVAL);
	assert_string_equal(err, "order RK002: details_list[1].goods_count: "
				 "\"99999999999999999999\" is not a usable quantity: more than 15 "
				 "digits");
	wj_mapping_free(m);
	catalogue_free(&c);
}

static void test_extends(void **state)
{
	(void)state;
	catalogue_t c = plain_catalogue();
	char err[512] = "";
	int rc;
	/* a header bill number, the line billno of the seed kept, a unit cost added */
	json_t *spec = json_loads(
		"{\"extends\": \"default\","
		" \"bill\": {\"billno\": {\"template\": \"PY-{stockin_no}\"}},"
		" \"lines\": {\"unit_cost\": {\"path\": \"cost_price\", \"convert\": \"number\","
		"                             \"optional\": true}}}", 0, NULL);
	wj_mapping_t *m;
	assert_int_equal(wj_mapping_compile(spec, WJ_JDY_V1, NULL, &m, err, sizeof(err)), 0);
	json_t *body = apply(m,
			     "{\"stockin_no\": \"RK001\", \"warehouse_no\": \"WH01\", \"src_order_no\": "
			     "\"PD9\", \"stockin_time\": \"2026-11-02 10:11:12\", \"details_list\": ["
			     " {\"spec_no\": \"SP00001\", \"goods_count\": \"3.3000\","
			     "  \"cost_price\": \"44.5000\"},"
			     " {\"spec_no\": \"SP00002\", \"goods_count\": \"1\","
			     "  \"cost_price\": \"0.0000\"}]}", &c, &rc, err);
	assert_int_equal(rc, 0);
	char *text = wj_json_dumps_body(body);
	assert_string_equal(text,
			    "{\"billdate\":\"2026-11-02\",\"remark\":\"WDT:RK001\",\"billno\":\"PY-RK001\","
			    "\"material_entity\":["
			    "{\"materialid_id\":\"M1\",\"stockid_id\":\"S01\",\"qty\":3.3,"
			    "\"unit_id\":\"U2\",\"billno\":\"PD9\",\"unit_cost\":44.5},"
			    "{\"materialid_id\":\"M2\",\"stockid_id\":\"S01\",\"qty\":1,"
			    "\"unit_id\":\"U3\",\"billno\":\"PD9\"}]}");
	free(text);
	json_decref(body);
	/* the fingerprint follows what the extension reads */
	wj_mapping_t *def;
	assert_int_equal(wj_mapping_compile(NULL, WJ_JDY_V1, NULL, &def, err, sizeof(err)), 0);
	assert_string_not_equal(wj_mapping_id(m), wj_mapping_id(def));
	wj_mapping_free(m);
	json_decref(spec);
	/* {"extends": "default"} alone is the default, with the flow's remark template */
	spec = json_loads("{\"extends\": \"default\"}", 0, NULL);
	assert_int_equal(wj_mapping_compile(spec, WJ_JDY_V1, "X-{stockin_no}", &m, err,
					    sizeof(err)), 0);
	assert_string_equal(wj_mapping_id(m), wj_mapping_id(def));
	json_t *order = json_loads(ORDER, 0, NULL);
	char marker[64];
	assert_int_equal(wj_mapping_marker(m, order, marker, sizeof(marker)), 0);
	assert_string_equal(marker, "X-RK001");
	json_decref(order);
	wj_mapping_free(m);
	wj_mapping_free(def);
	json_decref(spec);
	/* v2: fields replaced and removed; lines_from changed */
	spec = json_loads("{\"extends\": \"default\", \"lines_from\": \"items\","
			  " \"bill\": {\"bill_date\": {\"path\": \"check_time\", \"convert\": \"date\"}},"
			  " \"lines\": {\"unit_id\": null, \"qty\": {\"const\": 1}}}", 0, NULL);
	assert_int_equal(wj_mapping_compile(spec, WJ_JDY_V2, NULL, &m, err, sizeof(err)), 0);
	body = apply(m,
		     "{\"stockin_no\": \"RK3\", \"warehouse_no\": \"WH01\", \"check_time\": "
		     "\"2026-11-04 01:02:03\", \"items\": [{\"spec_no\": \"SP00002\"}]}", &c, &rc,
		     err);
	assert_int_equal(rc, 0);
	text = wj_json_dumps_body(body);
	assert_string_equal(text, "{\"bill_date\":\"2026-11-04\",\"remark\":\"WDT:RK3\","
				  "\"material_entity\":[{\"material_id\":\"M2\",\"stock_id\":\"S01\","
				  "\"qty\":1}]}");
	free(text);
	json_decref(body);
	wj_mapping_free(m);
	json_decref(spec);
	catalogue_free(&c);
}

/* Lookup objects as the Kingdee client hands them over (interface I2). */
static json_t *managed_material(const char *id, const char *unit, bool batch, bool shelf)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:b}", "id", id, "number", id, "base_unit_id", unit,
			 "batch_managed", batch, "shelf_life_managed", shelf);
}

static json_t *managed_store(const char *id, bool located)
{
	return json_pack("{s:s, s:s, s:b, s:{s:s, s:s}}", "id", id, "number", id,
			 "location_managed", located, "locations", "A-01", "L1", "B-02", "L2");
}

static void expect_lines(const wj_mapping_t *m, const char *lines, catalogue_t *c,
			 const char *want)
{
	char err[512] = "";
	int rc;
	json_t *body = one_line(m, "RK1", lines, c, &rc, err);
	if (!body)
		fail_msg("refused: %s", err);
	char *text = wj_json_dumps_body(body);
	const char *entity = strstr(text, "\"material_entity\":");
	assert_non_null(entity);
	assert_string_equal(entity + strlen("\"material_entity\":"), want);
	free(text);
	json_decref(body);
}

static void expect_refused(const wj_mapping_t *m, const char *lines, catalogue_t *c,
			   const char *want)
{
	char err[512] = "";
	int rc;
	assert_null(one_line(m, "RK1", lines, c, &rc, err));
	assert_int_equal(rc, -EINVAL);
	assert_string_equal(err, want);
}

static void test_managed(void **state)
{
	(void)state;
	/* SP00001: batches and shelf life; SP00002: neither; WH01 location-managed */
	catalogue_t c = {managed_material("M1", "U2", true, true),
			 managed_material("M2", "U3", false, false), managed_store("S01", true), 0,
			 false};
	wj_mapping_t *m1 = compiled(NULL, WJ_JDY_V1), *m2 = compiled(NULL, WJ_JDY_V2);
	char err[512] = "";
	const char *full = "{\"spec_no\": \"SP00001\", \"goods_count\": \"2.0000\","
			   " \"position_no\": \"B-02\", \"batch_no\": \"B20261101\","
			   " \"production_date\": \"2026-11-01 00:00:00\", \"validity_days\": \"365\","
			   " \"expire_date\": \"2027-11-01\"}";
	expect_lines(m1, full, &c,
		     "[{\"materialid_id\":\"M1\",\"stockid_id\":\"S01\",\"spid_id\":\"L2\","
		     "\"qty\":2,\"unit_id\":\"U2\",\"billno\":\"PD9\",\"batchno\":\"B20261101\","
		     "\"kfdate\":\"2026-11-01\",\"kfperiod\":365,\"validdate\":\"2027-11-01\","
		     "\"kftype\":\"1\"}]}");
	expect_lines(m2, full, &c,
		     "[{\"material_id\":\"M1\",\"stock_id\":\"S01\",\"sp_id\":\"L2\",\"qty\":2,"
		     "\"unit_id\":\"U2\",\"batch_no\":\"B20261101\",\"kf_date\":\"2026-11-01\","
		     "\"kf_period\":365,\"valid_date\":\"2027-11-01\",\"kf_type\":\"1\"}]}");
	/* shelf life: the period or the expiry date may be missing, not both; WDT's zeros
	 * count as unset */
	expect_lines(m2,
		     "{\"spec_no\": \"SP00001\", \"goods_count\": 1, \"position_no\": \"A-01\","
		     " \"batch_no\": \"B1\", \"production_date\": \"2026-11-01\","
		     " \"validity_days\": \"0\", \"expire_date\": \"2027-05-01 00:00:00\"}", &c,
		     "[{\"material_id\":\"M1\",\"stock_id\":\"S01\",\"sp_id\":\"L1\",\"qty\":1,"
		     "\"unit_id\":\"U2\",\"batch_no\":\"B1\",\"kf_date\":\"2026-11-01\","
		     "\"valid_date\":\"2027-05-01\"}]}");
	expect_lines(m1,
		     "{\"spec_no\": \"SP00001\", \"goods_count\": 1, \"position_no\": \"A-01\","
		     " \"batch_no\": \"B1\", \"production_date\": \"2026-11-01\","
		     " \"validity_days\": 180}", &c,
		     "[{\"materialid_id\":\"M1\",\"stockid_id\":\"S01\",\"spid_id\":\"L1\","
		     "\"qty\":1,\"unit_id\":\"U2\",\"billno\":\"PD9\",\"batchno\":\"B1\","
		     "\"kfdate\":\"2026-11-01\",\"kfperiod\":180,\"kftype\":\"1\"}]}");
	expect_refused(m2,
		       "{\"spec_no\": \"SP00001\", \"goods_count\": 1, \"position_no\": \"A-01\","
		       " \"batch_no\": \"B1\", \"production_date\": \"2026-11-01\","
		       " \"validity_days\": \"0\", \"expire_date\": \"0000-00-00 00:00:00\"}", &c,
		       "order RK1: details_list[0] (SP00001): material is managed by shelf life but "
		       "the line has no validity_days or expire_date");
	/* a material managed neither way: no batch or shelf-life fields, even when WDT has them */
	expect_lines(m2,
		     "{\"spec_no\": \"SP00002\", \"goods_count\": 1, \"position_no\": \"A-01\","
		     " \"batch_no\": \"B1\", \"production_date\": \"2026-11-01\","
		     " \"validity_days\": \"30\"}", &c,
		     "[{\"material_id\":\"M2\",\"stock_id\":\"S01\",\"sp_id\":\"L1\",\"qty\":1,"
		     "\"unit_id\":\"U3\"}]}");
	/* what the material or the store requires and the line lacks: refused before any post */
	expect_refused(m1,
		       "{\"spec_no\": \"SP00002\", \"goods_count\": 1, \"position_no\": \"A-01\"},"
		       "{\"spec_no\": \"SP00001\", \"goods_count\": 1, \"position_no\": \"A-01\","
		       " \"production_date\": \"2026-11-01\"}", &c,
		       "order RK1: details_list[1] (SP00001): material is batch-managed but the line "
		       "has no batch_no");
	expect_refused(m2,
		       "{\"spec_no\": \"SP00001\", \"goods_count\": 1, \"position_no\": \"A-01\","
		       " \"batch_no\": \"B1\", \"production_date\": \"0000-00-00 00:00:00\"}", &c,
		       "order RK1: details_list[0] (SP00001): material is managed by shelf life but "
		       "the line has no production_date");
	expect_refused(m2, "{\"spec_no\": \"SP00002\", \"goods_count\": 1, \"position_no\": \"\"}",
		       &c,
		       "order RK1: details_list[0] (WH01): store is location-managed but the line "
		       "has no position_no");
	expect_refused(m1, "{\"spec_no\": \"SP00002\", \"goods_count\": 1, \"position_no\": \"Z-9\"}",
		       &c, "order RK1: details_list[0].position_no: Kingdee store WH01 has no "
			   "location Z-9");
	expect_refused(m2,
		       "{\"spec_no\": \"SP00001\", \"goods_count\": 1, \"position_no\": \"A-01\","
		       " \"batch_no\": \"B1\", \"production_date\": \"2026-11-01\","
		       " \"validity_days\": \"36.5\"}", &c,
		       "order RK1: details_list[0].validity_days: \"36.5\" is not a usable number: "
		       "expected a whole number");
	/* a store that is not location-managed: no location, none needed */
	json_decref(c.s1);
	c.s1 = managed_store("S01", false);
	expect_lines(m1, "{\"spec_no\": \"SP00002\", \"goods_count\": 1, \"position_no\": \"Z-9\"}",
		     &c,
		     "[{\"materialid_id\":\"M2\",\"stockid_id\":\"S01\",\"qty\":1,"
		     "\"unit_id\":\"U3\",\"billno\":\"PD9\"}]}");
	/* "or" without "when": one of the two, always */
	json_t *spec = json_loads("{\"bill\": {\"remark\": {\"template\": \"X\"}},"
				  " \"lines\": {\"m\": {\"lookup\": \"material.id\", \"path\": \"spec_no\"},"
				  " \"a\": {\"path\": \"x\", \"or\": \"b\"},"
				  " \"b\": {\"path\": \"y\", \"optional\": true}}}", 0, NULL);
	wj_mapping_t *mo = compiled(spec, WJ_JDY_V2);
	expect_lines(mo, "{\"spec_no\": \"SP00002\", \"y\": \"Y\"}", &c,
		     "[{\"m\":\"M2\",\"b\":\"Y\"}]}");
	expect_refused(mo, "{\"spec_no\": \"SP00002\", \"x\": \"\"}", &c,
		       "order RK1: details_list[0]: the line has no x or y");
	wj_mapping_free(mo);
	json_decref(spec);
	/* flags not known yet: -EAGAIN, never a refusal */
	c.empty = true;
	int rc;
	assert_null(one_line(m1, "RK1", full, &c, &rc, err));
	assert_int_equal(rc, -EAGAIN);
	wj_mapping_free(m1);
	wj_mapping_free(m2);
	catalogue_free(&c);
}

/* Apply m to order and to its projection: same rc, same body, same error, same marker. */
static void same_both_ways(const wj_mapping_t *m, json_t *order, catalogue_t *c, size_t *smaller)
{
	json_t *slim = wj_mapping_project(m, order);
	assert_non_null(slim);
	char e1[512] = "", e2[512] = "", k1[256] = "", k2[256] = "";
	int r1 = 99, r2 = 98;
	json_t *b1 = wj_mapping_apply(m, order, lookup, c, &r1, e1, sizeof(e1));
	json_t *b2 = wj_mapping_apply(m, slim, lookup, c, &r2, e2, sizeof(e2));
	assert_int_equal(r1, r2);
	assert_string_equal(e1, e2);
	assert_true((b1 == NULL) == (b2 == NULL));
	if (b1)
		assert_true(json_equal(b1, b2));
	int m1 = wj_mapping_marker(m, order, k1, sizeof(k1));
	int m2 = wj_mapping_marker(m, slim, k2, sizeof(k2));
	assert_int_equal(m1, m2);
	assert_string_equal(k1, k2);
	char *t1 = json_dumps(order, JSON_COMPACT | JSON_ENCODE_ANY);
	char *t2 = json_dumps(slim, JSON_COMPACT | JSON_ENCODE_ANY);
	if (strlen(t2) < strlen(t1))
		(*smaller)++;
	free(t1);
	free(t2);
	json_decref(b1);
	json_decref(b2);
	json_decref(slim);
}

/* A deterministic variety of orders: the full field set of the API, with fields dropped,
 * retyped or broken in turn, so that both success and every refusal are compared. */
static json_t *variant(unsigned i)
{
	json_t *o = json_pack(
		"{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "stockin_id",
		(int)i, "stockin_no", "RK100", "order_type", "4", "status", "80", "warehouse_no",
		"WH01", "warehouse_name", "一号仓", "src_order_no", "PD9", "stockin_time",
		"2026-11-02 10:11:12", "check_time", "2026-11-02 11:00:00", "modified",
		"2026-11-03 00:00:00", "remark", "备注", "operator_name", "陈静", "goods_amount",
		"21530.5000");
	json_t *lines = json_array();
	for (unsigned k = 0; k < 3; k++)
		json_array_append_new(lines, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s,"
						       " s:s, s:s}", "spec_no",
						       k % 2 ? "SP00002" : "SP00001", "goods_no",
						       "G1", "goods_name", "蓝色真丝短裤", "goods_count",
						       "3.3000", "cost_price", "44.0000", "unit_id", "2",
						       "position_no", "A-01", "batch_no", "B1",
						       "production_date", "2026-11-01 00:00:00",
						       "validity_days", "365", "expire_date",
						       "2027-11-01"));
	json_object_set_new(o, "details_list", lines);
	static const char *top[] = {"stockin_no", "warehouse_no", "src_order_no", "stockin_time",
				    "check_time", "modified", "details_list", "remark"};
	static const char *line[] = {"spec_no", "goods_count", "goods_name", "batch_no",
				     "production_date", "position_no", "validity_days",
				     "expire_date", "cost_price"};
	json_t *l1 = json_array_get(lines, 1);
	switch (i % 8) {
	case 1: json_object_del(o, top[(i / 8) % 8]); break;
	case 2: json_object_set_new(o, top[(i / 8) % 8], json_integer(5)); break;
	case 3: json_object_set_new(o, top[(i / 8) % 8], json_array()); break;
	case 4: json_object_del(l1, line[(i / 8) % 9]); break;
	case 5: json_object_set_new(l1, line[(i / 8) % 9], json_string("0.0000")); break;
	case 6: json_array_append_new(lines, json_string("not a line")); break;
	case 7: json_object_set_new(o, "stockin_time", json_string("bad time")); break;
	default: break;
	}
	return o;
}

static void test_projection(void **state)
{
	(void)state;
	/* SP00001 batch- and shelf-life-managed, SP00002 neither, WH01 location-managed: every
	 * conditional field of the default is read */
	catalogue_t c = {managed_material("M1", "U2", true, true),
			 managed_material("M2", "U3", false, false), managed_store("S01", true), 0,
			 false};
	json_t *custom = json_loads(
		"{\"lines_from\": \"details_list\","
		" \"bill\": {\"date\": {\"path\": \"order.check_time\", \"fallback\": [\"modified\"],"
		"                       \"convert\": \"date\"},"
		"            \"remark\": {\"template\": \"X:{stockin_no}/{src_order_no}\"},"
		"            \"who\": {\"template\": \"{operator_name}\"},"
		"            \"source\": {\"const\": \"WDT\"}},"
		" \"lines\": {\"m\": {\"lookup\": \"material.id\", \"path\": \"spec_no\"},"
		"             \"u\": {\"lookup\": \"material.base_unit_id\", \"path\": \"spec_no\"},"
		"             \"s\": {\"lookup\": \"store.id\", \"path\": \"order.warehouse_no\"},"
		"             \"n\": {\"path\": \"goods_count\", \"convert\": \"number\","
		"                     \"positive\": true},"
		"             \"note\": {\"template\": \"{remark}\"},"
		"             \"w\": {\"path\": \"order.warehouse_no\"}}}", 0, NULL);
	assert_non_null(custom);
	json_t *extended = json_loads(
		"{\"extends\": \"default\","
		" \"bill\": {\"billno\": {\"template\": \"PY-{stockin_no}-{operator_name}\"}},"
		" \"lines\": {\"unit_cost\": {\"path\": \"cost_price\", \"convert\": \"number\","
		"                             \"optional\": true}}}", 0, NULL);
	assert_non_null(extended);
	wj_mapping_t *ms[4];
	char err[512] = "";
	assert_int_equal(wj_mapping_compile(NULL, WJ_JDY_V1, NULL, &ms[0], err, sizeof(err)), 0);
	assert_int_equal(wj_mapping_compile(NULL, WJ_JDY_V2, "WDT:{stockin_no}:{warehouse_no}",
					    &ms[1], err, sizeof(err)), 0);
	assert_int_equal(wj_mapping_compile(custom, WJ_JDY_V1, NULL, &ms[2], err, sizeof(err)), 0);
	assert_int_equal(wj_mapping_compile(extended, WJ_JDY_V1, NULL, &ms[3], err, sizeof(err)),
			 0);
	/* the fingerprint follows the fields read, not the order of the spec */
	assert_int_equal(strlen(wj_mapping_id(ms[0])), 16);
	assert_string_not_equal(wj_mapping_id(ms[0]), wj_mapping_id(ms[2]));
	assert_string_not_equal(wj_mapping_id(ms[0]), wj_mapping_id(ms[1]));
	wj_mapping_t *again;
	assert_int_equal(wj_mapping_compile(NULL, WJ_JDY_V1, NULL, &again, err, sizeof(err)), 0);
	assert_string_equal(wj_mapping_id(ms[0]), wj_mapping_id(again));
	wj_mapping_free(again);
	size_t smaller = 0, n = 0;
	for (unsigned i = 0; i < 200; i++) {
		json_t *o = variant(i);
		for (int k = 0; k < 4; k++, n++) {
			c.empty = i % 13 == 0; /* lookups not known yet: -EAGAIN both ways */
			same_both_ways(ms[k], o, &c, &smaller);
		}
		json_decref(o);
	}
	assert_true(smaller == n); /* the projection always dropped something */
	/* the conditional fields were part of it: a whole order gives them all */
	json_t *o = variant(0);
	int rc;
	json_t *b = wj_mapping_apply(ms[3], o, lookup, &c, &rc, err, sizeof(err));
	assert_non_null(b);
	char *text = wj_json_dumps_body(b);
	assert_non_null(strstr(text, "\"billno\":\"PY-RK100-陈静\""));
	assert_non_null(strstr(text, "\"spid_id\":\"L1\",\"qty\":3.3,\"unit_id\":\"U2\","
				     "\"billno\":\"PD9\",\"batchno\":\"B1\",\"kfdate\":\"2026-11-01\","
				     "\"kfperiod\":365,\"validdate\":\"2027-11-01\",\"unit_cost\":44,"
				     "\"kftype\":\"1\""));
	free(text);
	json_decref(b);
	json_decref(o);
	json_t *notobj = json_string("x");
	same_both_ways(ms[0], notobj, &c, &smaller);
	json_decref(notobj);
	for (int k = 0; k < 4; k++)
		wj_mapping_free(ms[k]);
	json_decref(custom);
	json_decref(extended);
	catalogue_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_v1_v2),
		cmocka_unit_test(test_declarative),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_projection),
		cmocka_unit_test(test_exact_quantities),
		cmocka_unit_test(test_out_of_range_numbers),
		cmocka_unit_test(test_extends),
		cmocka_unit_test(test_managed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
