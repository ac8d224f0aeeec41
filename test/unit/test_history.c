/* Unit tests for lib/history: the per-minute ring in the store (wrap-around, slots of an
 * earlier lap read as empty, a fixed number of entries however many minutes are written,
 * counts added within a minute, a flow's by its name, the value's format). */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "lib/history.h"
#include "lib/store.h"

#define MiB (1024ull * 1024ull)

typedef struct fixture {
	char base[256];
	wj_store_t *s;
} fixture_t;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	fixture_t *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	const char *tmp = getenv("TMPDIR");
	snprintf(f->base, sizeof(f->base), "%s/wj_history_XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->base) || wj_store_open(f->base, 4 * MiB, 256 * MiB, &f->s) < 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_t *f = *state;
	wj_store_close(f->s);
	nftw(f->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* One minute with saved = n, parked = n % 7 and a flow "f" lagging n s. */
static wj_hist_minute_t minute_of(int64_t minute, uint32_t n)
{
	wj_hist_minute_t m = {.minute = minute, .n_flows = 1};
	m.n[WJ_H_SAVED] = n;
	m.n[WJ_H_PARKED] = n % 7;
	snprintf(m.flows[0].name, sizeof(m.flows[0].name), "f");
	m.flows[0].lag = n;
	m.flows[0].n[WJ_HF_SAVED] = n;
	return m;
}

typedef struct batch {
	int64_t from, count;
} batch_t;

static int add_batch(wj_txn_t *t, void *arg)
{
	batch_t *b = arg;
	for (int64_t m = b->from; m < b->from + b->count; m++) {
		wj_hist_minute_t x = minute_of(m, (uint32_t)(m % 1000));
		wj_history_add(t, &x);
	}
	return t->err;
}

static void write_minutes(wj_store_t *s, int64_t from, int64_t count)
{
	batch_t b = {from, count};
	assert_int_equal(wj_store_write(s, add_batch, &b), 0);
}

static size_t entries(wj_store_t *s)
{
	wj_store_stat_t st;
	assert_int_equal(wj_store_stat(s, &st), 0);
	return st.entries[WJ_DB_HISTORY];
}

static void test_roundtrip(void **state)
{
	(void)state;
	wj_hist_minute_t m = {.minute = 29400000, .n_flows = 2}, back;
	for (int i = 0; i < WJ_H_COUNT; i++)
		m.n[i] = (uint32_t)(i * 1000 + 7);
	m.n[WJ_H_WDT] = UINT32_MAX;
	snprintf(m.flows[0].name, sizeof(m.flows[0].name), "pd-gain");
	m.flows[0].lag = 61;
	m.flows[0].n[WJ_HF_SAVED] = 12;
	m.flows[0].n[WJ_HF_PARKED] = 3;
	m.flows[0].n[WJ_HF_REVIEW] = UINT32_MAX;
	snprintf(m.flows[1].name, sizeof(m.flows[1].name), "盘盈");
	m.flows[1].lag = WJ_HISTORY_LAG_UNKNOWN;
	uint8_t buf[WJ_HISTORY_VAL_MAX];
	size_t len = wj_history_encode(&m, buf);
	assert_true(len <= WJ_HISTORY_VAL_MAX);
	assert_int_equal(wj_history_decode(buf, len, &back), 0);
	assert_memory_equal(&m, &back, sizeof(m));
	assert_int_equal(wj_history_lag(&back, "pd-gain"), 61);
	assert_int_equal(wj_history_lag(&back, "other"), WJ_HISTORY_LAG_UNKNOWN);
	/* short or of an unknown format: refused, never read past the end */
	for (size_t l = 0; l < len; l++)
		assert_int_equal(wj_history_decode(buf, l, &back), -EINVAL);
	buf[8] = 99;
	assert_int_equal(wj_history_decode(buf, len, &back), -EINVAL);
}

/* A later format's extra counts are skipped. */
static void test_more_counts(void **state)
{
	(void)state;
	uint8_t buf[128] = {0};
	buf[7] = 5; /* minute 5 */
	buf[8] = 1;
	buf[9] = WJ_H_COUNT + 2;
	buf[10 + 3] = 42; /* saved */
	size_t len = 10 + 4 * (WJ_H_COUNT + 2) + 1;
	wj_hist_minute_t m;
	assert_int_equal(wj_history_decode(buf, len, &m), 0);
	assert_int_equal(m.minute, 5);
	assert_int_equal(m.n[WJ_H_SAVED], 42);
	assert_int_equal(m.n_flows, 0);
}

static void test_slots(void **state)
{
	(void)state;
	assert_int_equal(WJ_HISTORY_SLOTS, 20160);
	assert_int_equal(wj_history_slot(0), 0);
	assert_int_equal(wj_history_slot(20159), 20159);
	assert_int_equal(wj_history_slot(20160), 0);
	assert_int_equal(wj_history_slot(29400000 + 5), (29400000 + 5) % 20160);
}

/* Minutes of a lap and a half: the ring holds exactly one lap, the newest; the minutes it
 * replaced read as empty, and an earlier lap's slot is never taken for the minute asked. */
static void test_wrap(void **state)
{
	fixture_t *f = *state;
	const int64_t start = 29400000; /* a minute in 2025 */
	write_minutes(f->s, start, WJ_HISTORY_SLOTS / 2);
	assert_int_equal(entries(f->s), WJ_HISTORY_SLOTS / 2);
	write_minutes(f->s, start + WJ_HISTORY_SLOTS / 2, WJ_HISTORY_SLOTS);
	assert_int_equal(entries(f->s), WJ_HISTORY_SLOTS);
	write_minutes(f->s, start + 3 * WJ_HISTORY_SLOTS / 2, 100);
	assert_int_equal(entries(f->s), WJ_HISTORY_SLOTS); /* bounded: no growth with time */

	wj_txn_t t;
	wj_hist_minute_t m;
	assert_int_equal(wj_txn_begin(f->s, &t, false), 0);
	const int64_t last = start + 3 * WJ_HISTORY_SLOTS / 2 + 99;
	/* the newest lap is there, with its own counts */
	for (int64_t x = last - WJ_HISTORY_SLOTS + 1; x <= last; x += 997) {
		assert_int_equal(wj_history_get(&t, x, &m), 0);
		assert_int_equal(m.minute, x);
		assert_int_equal(m.n[WJ_H_SAVED], x % 1000);
		assert_int_equal(m.n[WJ_H_PARKED], x % 1000 % 7);
		assert_int_equal(wj_history_lag(&m, "f"), x % 1000);
	}
	/* one lap earlier: the slot holds a newer minute, so the old one is empty */
	assert_int_equal(wj_history_get(&t, last - WJ_HISTORY_SLOTS, &m), -ENOENT);
	assert_int_equal(m.minute, last - WJ_HISTORY_SLOTS);
	assert_int_equal(m.n[WJ_H_SAVED], 0);
	assert_int_equal(m.n_flows, 0);
	/* one lap later (the future, or a daemon stopped for longer than 14 days): stale */
	assert_int_equal(wj_history_get(&t, last + 1, &m), -ENOENT);
	assert_int_equal(wj_history_get(&t, last - 100 + WJ_HISTORY_SLOTS, &m), -ENOENT);
	wj_txn_abort(&t);
}

/* A stale slot is replaced, not added to; the same minute written twice (a restart within
 * the minute) adds its counts and takes the newer lags. */
static int add_one(wj_txn_t *t, void *arg)
{
	return wj_history_add(t, arg);
}

static void test_stale_and_same_minute(void **state)
{
	fixture_t *f = *state;
	const int64_t old = 29400000, now = old + 3 * WJ_HISTORY_SLOTS; /* three laps later */
	wj_hist_minute_t a = minute_of(old, 500), b = minute_of(now, 3), c = minute_of(now, 4), m;
	assert_int_equal(wj_store_write(f->s, add_one, &a), 0);
	assert_int_equal(wj_store_write(f->s, add_one, &b), 0);
	wj_txn_t t;
	assert_int_equal(wj_txn_begin(f->s, &t, false), 0);
	assert_int_equal(wj_history_get(&t, now, &m), 0);
	assert_int_equal(m.n[WJ_H_SAVED], 3); /* not 503 */
	assert_int_equal(wj_history_get(&t, old, &m), -ENOENT);
	wj_txn_abort(&t);
	assert_int_equal(wj_store_write(f->s, add_one, &c), 0);
	assert_int_equal(wj_txn_begin(f->s, &t, false), 0);
	assert_int_equal(wj_history_get(&t, now, &m), 0);
	assert_int_equal(m.n[WJ_H_SAVED], 7);
	assert_int_equal(m.n[WJ_H_PARKED], 3 + 4);
	assert_int_equal(wj_history_lag(&m, "f"), 4);
	assert_int_equal(wj_history_flow(&m, "f")->n[WJ_HF_SAVED], 7);
	wj_txn_abort(&t);
	assert_int_equal(entries(f->s), 1);
}

/* The same minute written twice with other flows (a reload within the minute): a flow's
 * counts add up by its name, a flow of only one of them is kept. */
static void set_flow(wj_hist_minute_t *m, const char *name, uint32_t saved, uint32_t lag)
{
	wj_hist_flow_t *f = &m->flows[m->n_flows++];
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->n[WJ_HF_SAVED] = saved;
	f->n[WJ_HF_PARKED] = saved * 10;
	f->lag = lag;
}

static void test_flows_by_name(void **state)
{
	fixture_t *f = *state;
	const int64_t now = 29400000;
	wj_hist_minute_t a = {.minute = now}, b = {.minute = now}, m;
	set_flow(&a, "a", 2, 1);
	set_flow(&a, "b", 1, 1);
	set_flow(&b, "b", 5, 9);
	set_flow(&b, "c", 1, 9);
	assert_int_equal(wj_store_write(f->s, add_one, &a), 0);
	assert_int_equal(wj_store_write(f->s, add_one, &b), 0);
	wj_txn_t t;
	assert_int_equal(wj_txn_begin(f->s, &t, false), 0);
	assert_int_equal(wj_history_get(&t, now, &m), 0);
	wj_txn_abort(&t);
	assert_int_equal(m.n_flows, 3);
	const char *names[3] = {"a", "b", "c"};
	const uint32_t saved[3] = {2, 6, 1}, lag[3] = {1, 9, 9};
	for (int i = 0; i < 3; i++) {
		const wj_hist_flow_t *x = wj_history_flow(&m, names[i]);
		assert_non_null(x);
		assert_int_equal(x->n[WJ_HF_SAVED], saved[i]);
		assert_int_equal(x->n[WJ_HF_PARKED], saved[i] * 10);
		assert_int_equal(x->lag, lag[i]);
	}
	assert_null(wj_history_flow(&m, "d"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_more_counts),
		cmocka_unit_test(test_slots),
		cmocka_unit_test_setup_teardown(test_wrap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_and_same_minute, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flows_by_name, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
