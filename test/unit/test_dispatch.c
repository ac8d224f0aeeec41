/* Unit tests for the dispatcher's pure parts: finding an order's marker in a bill's remark,
 * which listed bill is an order's, what an order's bill holds and how two of them differ. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "lib/dispatch.h"
#include "lib/util.h"

static void test_marker_exact(void **state)
{
	(void)state;
	assert_true(wj_marker_in("WDT:RK1", "WDT:RK1"));
	assert_true(wj_marker_in("盘盈 WDT:RK1", "WDT:RK1"));
	assert_true(wj_marker_in("WDT:RK1 盘点单 PD1", "WDT:RK1"));
	assert_true(wj_marker_in("盘盈WDT:RK1，已审核", "WDT:RK1"));
	assert_true(wj_marker_in("(WDT:RK1)", "WDT:RK1"));
	assert_true(wj_marker_in("备注:WDT:RK1", "WDT:RK1"));
	assert_true(wj_marker_in("WDT:RK10; WDT:RK1", "WDT:RK1")); /* the second occurrence */
}

static void test_marker_longer_token(void **state)
{
	(void)state;
	assert_false(wj_marker_in("WDT:RK10", "WDT:RK1"));
	assert_false(wj_marker_in("WDT:RK1000", "WDT:RK1"));
	assert_false(wj_marker_in("WDT:RK1-2", "WDT:RK1"));
	assert_false(wj_marker_in("WDT:RK1_2", "WDT:RK1"));
	assert_false(wj_marker_in("WDT:RK1.2", "WDT:RK1"));
	assert_false(wj_marker_in("XWDT:RK1", "WDT:RK1"));
	assert_false(wj_marker_in("WDT:RK1x", "WDT:RK1"));
	assert_false(wj_marker_in("", "WDT:RK1"));
	assert_false(wj_marker_in(NULL, "WDT:RK1"));
	assert_false(wj_marker_in("WDT:RK1", ""));
}

static void test_marker_closed_edges(void **state)
{
	(void)state;
	/* a marker that ends in a delimiter of its own needs no delimiter after it */
	assert_true(wj_marker_in("[WDT:RK1]x", "[WDT:RK1]"));
	assert_true(wj_marker_in("a[WDT:RK1]", "[WDT:RK1]"));
	assert_false(wj_marker_in("[WDT:RK10]", "[WDT:RK1]"));
}

static json_t *row(const char *id, const char *no, const char *remark)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:n}", "id", id, "bill_no", no, "bill_date",
			 "2026-08-01", "remark", remark, "create_time_ms");
}

static void test_row_matches(void **state)
{
	(void)state;
	json_t *other = row("7", "PY-7", "轻易云同步 入库单号:RK1，盘盈");
	json_t *ours = row("8", "PYD-8", "WDT:RK2");
	json_t *by_no = row("9", "RK3", "");
	json_t *longer = row("10", "PY-10", "入库单号 RK10");
	/* the stock-in number as a whole token of the remark, or as the bill number */
	assert_true(wj_bill_row_matches(other, &(wj_bill_match_t){.stockin_no = "RK1"}));
	assert_true(wj_bill_row_matches(ours, &(wj_bill_match_t){.stockin_no = "RK2"}));
	assert_true(wj_bill_row_matches(by_no, &(wj_bill_match_t){.stockin_no = "RK3"}));
	assert_false(wj_bill_row_matches(longer, &(wj_bill_match_t){.stockin_no = "RK1"}));
	assert_false(wj_bill_row_matches(other, &(wj_bill_match_t){.stockin_no = "RK"}));
	/* markers, bill numbers and ids exactly; criteria not given are not used */
	assert_true(wj_bill_row_matches(ours, &(wj_bill_match_t){.marker = "WDT:RK2"}));
	assert_true(wj_bill_row_matches(ours, &(wj_bill_match_t){.marker = "X",
								    .old_marker = "WDT:RK2"}));
	assert_false(wj_bill_row_matches(ours, &(wj_bill_match_t){.marker = "WDT:RK"}));
	assert_true(wj_bill_row_matches(ours, &(wj_bill_match_t){.bill_no = "PYD-8"}));
	assert_false(wj_bill_row_matches(ours, &(wj_bill_match_t){.bill_no = "PYD-"}));
	assert_true(wj_bill_row_matches(ours, &(wj_bill_match_t){.bill_id = "8"}));
	assert_false(wj_bill_row_matches(ours, &(wj_bill_match_t){.bill_id = "80"}));
	assert_false(wj_bill_row_matches(ours, &(wj_bill_match_t){.marker = "", .bill_no = ""}));
	assert_false(wj_bill_row_matches(ours, &(wj_bill_match_t){0}));
	json_decref(other);
	json_decref(ours);
	json_decref(by_no);
	json_decref(longer);
}

static void test_date_range(void **state)
{
	(void)state;
	char from[11], to[11];
	json_t *v1 = json_pack("{s:s}", "billdate", "2026-03-02");
	json_t *v2 = json_pack("{s:s}", "bill_date", "2026-12-28");
	json_t *none = json_pack("{s:s}", "date", "2026-12-28");
	assert_int_equal(wj_bill_date_range(v1, 7, from, to), 0);
	assert_string_equal(from, "2026-02-23");
	assert_string_equal(to, "2026-03-09");
	assert_int_equal(wj_bill_date_range(v2, 7, from, to), 0);
	assert_string_equal(from, "2026-12-21");
	assert_string_equal(to, "2027-01-04");
	assert_int_equal(wj_bill_date_range(none, 7, from, to), -ENOENT);
	json_decref(v1);
	json_decref(v2);
	json_decref(none);
}

static json_t *order(const char *flag, const char *time, const char *qty, const char *wh)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[{s:s, s:s}, {s:s, s:s}]}",
			 "stockin_no", "RK1", "src_order_no", "PD1", "warehouse_no", wh,
			 "stockin_time", time, "modified", time, "flag_id", flag, "note_count", "0",
			 "details_list", "spec_no", "SP00001", "goods_count", qty, "spec_no",
			 "SP00002", "goods_count", "2.0000");
}

/* What a bill holds: only what the mapping puts in it, materials and stores named by their
 * WDT numbers; the changes between two, field by field. */
static void test_view_and_diff(void **state)
{
	(void)state;
	wj_mapping_t *m = NULL;
	char err[256];
	assert_int_equal(wj_mapping_compile(NULL, WJ_JDY_V1, "WDT:{stockin_no}", &m, err,
					    sizeof(err)), 0);
	wj_config_t cfg = {0};
	json_t *a = order("0", "2026-08-01 10:00:00", "3.0000", "WH01");
	json_t *b = order("7", "2026-08-01 18:30:00", "3.0000", "WH01"); /* flag, time of day */
	json_t *c = order("0", "2026-08-02 10:00:00", "4.5000", "WH02");
	json_t *bad = order("0", "2026-08-01 10:00:00", "0.0000", "WH01");
	json_t *va = wj_bill_view(m, &cfg, NULL, a, err, sizeof(err));
	json_t *vb = wj_bill_view(m, &cfg, NULL, b, err, sizeof(err));
	json_t *vc = wj_bill_view(m, &cfg, NULL, c, err, sizeof(err));
	assert_non_null(va);
	assert_non_null(vb);
	assert_non_null(vc);
	assert_null(wj_bill_view(m, &cfg, NULL, bad, err, sizeof(err)));
	assert_non_null(strstr(err, "details_list[0].goods_count"));
	char *text = json_dumps(va, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text, "{\"billdate\":\"2026-08-01\",\"material_entity\":["
				  "{\"billno\":\"PD1\",\"materialid_id\":\"SP00001\",\"qty\":3.0,"
				  "\"stockid_id\":\"WH01\",\"unit_id\":\"SP00001\"},"
				  "{\"billno\":\"PD1\",\"materialid_id\":\"SP00002\",\"qty\":2.0,"
				  "\"stockid_id\":\"WH01\",\"unit_id\":\"SP00002\"}],"
				  "\"remark\":\"WDT:RK1\"}");
	free(text);
	assert_true(json_equal(va, vb));
	json_t *d = wj_bill_diff(va, vb);
	assert_int_equal(json_array_size(d), 0);
	json_decref(d);
	d = wj_bill_diff(va, vc);
	text = json_dumps(d, JSON_COMPACT);
	assert_string_equal(text, "[{\"field\":\"billdate\",\"old\":\"2026-08-01\",\"new\":\"2026-08-02\"},"
				  "{\"field\":\"material_entity[0].qty\",\"old\":\"3\",\"new\":\"4.5\"},"
				  "{\"field\":\"material_entity[0].stockid_id\",\"old\":\"WH01\",\"new\":\"WH02\"},"
				  "{\"field\":\"material_entity[1].stockid_id\",\"old\":\"WH01\",\"new\":\"WH02\"}]");
	free(text);
	json_decref(d);
	/* a line more or less: the whole line on one side */
	json_array_remove(json_object_get(vc, "material_entity"), 1);
	d = wj_bill_diff(va, vc);
	json_t *last = json_array_get(d, json_array_size(d) - 1);
	assert_string_equal(json_string_value(json_object_get(last, "field")),
			    "material_entity[1]");
	assert_true(json_is_null(json_object_get(last, "new")));
	assert_non_null(strstr(json_string_value(json_object_get(last, "old")), "SP00002"));
	json_decref(d);
	json_decref(va);
	json_decref(vb);
	json_decref(vc);
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(bad);
	wj_mapping_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_marker_exact),
		cmocka_unit_test(test_marker_longer_token),
		cmocka_unit_test(test_marker_closed_edges),
		cmocka_unit_test(test_row_matches),
		cmocka_unit_test(test_date_range),
		cmocka_unit_test(test_view_and_diff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
