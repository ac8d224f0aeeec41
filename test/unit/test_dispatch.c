/* Unit tests for the dispatcher's pure parts: finding an order's marker in a bill's remark. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include "lib/engine_int.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_marker_exact),
		cmocka_unit_test(test_marker_longer_token),
		cmocka_unit_test(test_marker_closed_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
