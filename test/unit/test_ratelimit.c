/* Unit tests for lib/ratelimit: the token bucket never exceeds its quota in any window and
 * stays close to it when saturated; pauses; rate changes; backoff bounds and spread. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/ratelimit.h"

#define MAX_TAKES 200000

/* No window [t, t + period) holds more than count of the sorted take times. */
static void assert_window(const uint64_t *t, size_t n, unsigned count, uint64_t period)
{
	for (size_t i = 0; i + count < n; i++)
		if (t[i + count] - t[i] < period)
			fail_msg("%u takes within %llu ms at t=%llu", count + 1,
				 (unsigned long long)(t[i + count] - t[i]), (unsigned long long)t[i]);
}

/* Ask whenever allowed for `duration` ms; returns the number of takes, times in t. */
static size_t saturate(wj_tbucket_t *b, uint64_t start, uint64_t duration, uint64_t *t)
{
	size_t n = 0;
	uint64_t now = start;
	for (unsigned guard = 0; now < start + duration; guard++) {
		assert_true(guard < 4 * MAX_TAKES);
		uint64_t w = wj_tbucket_take(b, now);
		if (w == 0) {
			assert_true(n < MAX_TAKES);
			t[n++] = now;
			continue;
		}
		/* the wait is exact: one ms earlier is still too early */
		if (w > 1)
			assert_true(wj_tbucket_wait(b, now + w - 1) > 0);
		assert_int_equal(wj_tbucket_wait(b, now + w), 0);
		now += w;
	}
	return n;
}

static void check_saturated(unsigned count, uint64_t period, unsigned min_per_period)
{
	uint64_t *t = calloc(MAX_TAKES, sizeof(*t));
	assert_non_null(t);
	wj_tbucket_t b;
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){count, period}, 0), 0);
	uint64_t duration = 10 * period;
	size_t n = saturate(&b, 1000, duration, t);
	assert_window(t, n, count, period);
	assert_true(n >= (size_t)min_per_period * 10);
	assert_true(n <= (size_t)count * 10);
	/* every minute on its own, too */
	for (unsigned m = 0; m < 10; m++) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			k += t[i] >= 1000 + m * period && t[i] < 1000 + (m + 1) * period;
		assert_true(k <= count);
		assert_true(k >= min_per_period - 1);
	}
	free(t);
}

static void test_saturated_60(void **state)
{
	(void)state;
	check_saturated(60, 60000, 57);
}

static void test_saturated_500(void **state)
{
	(void)state;
	check_saturated(500, 60000, 475);
}

static void test_saturated_other(void **state)
{
	(void)state;
	check_saturated(1, 60000, 1);
	check_saturated(2, 60000, 1);
	check_saturated(10, 1000, 9);
	check_saturated(5000, 1000, 4750); /* more than one token per ms */
}

/* Requests at irregular times, with idle gaps that refill the bucket. */
static void test_irregular(void **state)
{
	(void)state;
	uint64_t *t = calloc(MAX_TAKES, sizeof(*t));
	assert_non_null(t);
	unsigned counts[] = {60, 500, 7};
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		wj_tbucket_t b;
		assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){counts[c], 60000}, 0), 0);
		uint64_t now = 0, x = 88172645463325252ull;
		size_t n = 0;
		while (now < 3600000) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			if (wj_tbucket_take(&b, now) == 0) {
				assert_true(n < MAX_TAKES);
				t[n++] = now;
			}
			/* mostly short steps, sometimes a long idle gap */
			now += x % 16 == 0 ? x % 90000 : x % 700;
		}
		assert_true(n > counts[c]);
		assert_window(t, n, counts[c], 60000);
	}
	free(t);
}

static void test_burst(void **state)
{
	(void)state;
	wj_tbucket_t b;
	/* default burst for 60/min is 3: three at once, then spaced */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 0), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(wj_tbucket_take(&b, 5000), 0);
	uint64_t w = wj_tbucket_take(&b, 5000);
	assert_true(w > 900 && w < 1100);
	/* explicit burst, capped to count */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 10), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(wj_tbucket_take(&b, 0), 0);
	assert_true(wj_tbucket_take(&b, 0) > 0);
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){5, 1000}, 100), 0);
	assert_int_equal(b.burst, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(wj_tbucket_take(&b, 0), 0);
	assert_int_equal(wj_tbucket_take(&b, 0), 1000); /* refill of 1 per period */
	/* invalid rates */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){0, 60000}, 0), -EINVAL);
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 0}, 0), -EINVAL);
	/* a clock that goes backwards never adds tokens */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 1), 0);
	assert_int_equal(wj_tbucket_take(&b, 100000), 0);
	assert_true(wj_tbucket_take(&b, 50000) > 0);
	assert_true(wj_tbucket_take(&b, 100999) > 0);
	assert_int_equal(wj_tbucket_take(&b, 101000), 0);
}

static void test_pause(void **state)
{
	(void)state;
	wj_tbucket_t b;
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 0), 0);
	assert_int_equal(wj_tbucket_take(&b, 10000), 0);
	wj_tbucket_pause_until(&b, 40000);
	assert_int_equal(wj_tbucket_take(&b, 10000), 30000);
	assert_int_equal(wj_tbucket_wait(&b, 25000), 15000);
	assert_int_equal(wj_tbucket_take(&b, 39999), 1);
	/* an earlier pause does not shorten it */
	wj_tbucket_pause_until(&b, 20000);
	assert_int_equal(wj_tbucket_take(&b, 39999), 1);
	/* one probe at the end of the pause, then the normal pace (no refill during the pause) */
	assert_int_equal(wj_tbucket_take(&b, 40000), 0);
	uint64_t w = wj_tbucket_take(&b, 40000);
	assert_true(w > 1000 && w < 1100);
	/* a longer pause extends */
	wj_tbucket_pause_until(&b, 50000);
	wj_tbucket_pause_until(&b, 70000);
	assert_int_equal(wj_tbucket_take(&b, 45000), 25000);

	/* pause before the first take */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){500, 60000}, 0), 0);
	wj_tbucket_pause_until(&b, 5000);
	assert_int_equal(wj_tbucket_take(&b, 0), 5000);
	assert_int_equal(wj_tbucket_take(&b, 5000), 0);
	assert_true(wj_tbucket_take(&b, 5000) > 0);

	/* saturated with repeated pauses: the quota still holds */
	uint64_t *t = calloc(MAX_TAKES, sizeof(*t));
	assert_non_null(t);
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 0), 0);
	size_t n = 0;
	uint64_t now = 0;
	for (unsigned guard = 0; now < 600000; guard++) {
		assert_true(guard < MAX_TAKES);
		if (now % 97 == 0)
			wj_tbucket_pause_until(&b, now + 3000);
		uint64_t wt = wj_tbucket_take(&b, now);
		if (wt == 0)
			t[n++] = now;
		else
			now += wt;
	}
	assert_window(t, n, 60, 60000);
	for (size_t i = 1; i < n; i++)
		assert_true(t[i] >= t[i - 1]);
	free(t);
}

static void test_set_rate(void **state)
{
	(void)state;
	wj_tbucket_t b;
	/* 600/min → burst 30; lowering to 60/min keeps at most the new burst (3) */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){600, 60000}, 0), 0);
	assert_int_equal(wj_tbucket_take(&b, 0), 0);
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){60, 60000}, 0), 0);
	assert_int_equal(b.burst, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(wj_tbucket_take(&b, 0), 0);
	uint64_t w = wj_tbucket_take(&b, 0);
	assert_true(w > 1000 && w < 1100);
	/* raising the rate shortens the waits */
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){6000, 60000}, 0), 0);
	w = wj_tbucket_take(&b, 0);
	assert_true(w > 0 && w <= 11);
	/* the same rate per second, tokens rescaled to the new period */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 10), 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(wj_tbucket_take(&b, 0), 0);
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){1, 1000}, 10), 0);
	assert_int_equal(b.burst, 1);
	assert_int_equal(wj_tbucket_take(&b, 0), 0);
	assert_int_equal(wj_tbucket_take(&b, 0), 1000);
	/* invalid: refused, bucket unchanged */
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){0, 1000}, 0), -EINVAL);
	assert_int_equal(b.rate.count, 1);
	assert_int_equal(b.rate.period_ms, 1000);
}

static void test_backoff(void **state)
{
	(void)state;
	const uint64_t init = 1000, max = 600000;
	/* bounds: rand 0 → 0, the largest rand → at most the cap, cap itself reachable */
	for (unsigned a = 0; a < 70; a++) {
		uint64_t cap = a < 10 ? init << a : max;
		assert_int_equal(wj_backoff_ms(a, init, max, 0), 0);
		assert_true(wj_backoff_ms(a, init, max, UINT64_MAX) <= cap);
		assert_int_equal(wj_backoff_ms(a, init, max, cap), cap);
		assert_int_equal(wj_backoff_ms(a, init, max, cap + 1), 0);
	}
	assert_int_equal(wj_backoff_ms(1000, UINT64_MAX / 3, UINT64_MAX, 12345), 12345);
	assert_int_equal(wj_backoff_ms(5, 0, max, 777), 0);
	assert_int_equal(wj_backoff_ms(5, init, 0, 777), 0);
	assert_int_equal(wj_backoff_ms(0, 5000, 2000, 1999), 1999);

	/* values spread over the whole range */
	for (unsigned a = 0; a < 12; a++) {
		uint64_t cap = a < 10 ? init << a : max, lo = UINT64_MAX, hi = 0;
		double sum = 0;
		unsigned equal_first = 0, first = 0;
		const unsigned n = 2000;
		for (unsigned i = 0; i < n; i++) {
			uint64_t v = wj_backoff_ms(a, init, max, wj_rand64());
			assert_true(v <= cap);
			lo = v < lo ? v : lo;
			hi = v > hi ? v : hi;
			sum += (double)v;
			if (i == 0)
				first = (unsigned)v;
			equal_first += v == first;
		}
		assert_true(equal_first < n / 10);
		assert_true(lo < cap / 10);
		assert_true(hi > cap - cap / 10);
		double mean = sum / n;
		assert_true(mean > (double)cap * 0.4 && mean < (double)cap * 0.6);
	}
}

static void test_rand64(void **state)
{
	(void)state;
	uint64_t v[64];
	unsigned ones = 0;
	for (int i = 0; i < 64; i++) {
		v[i] = wj_rand64();
		for (int j = 0; j < i; j++)
			assert_true(v[i] != v[j]);
		ones += (unsigned)__builtin_popcountll(v[i]);
	}
	/* 4096 bits: about half set */
	assert_true(ones > 1800 && ones < 2300);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_saturated_60),
		cmocka_unit_test(test_saturated_500),
		cmocka_unit_test(test_saturated_other),
		cmocka_unit_test(test_irregular),
		cmocka_unit_test(test_burst),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_set_rate),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_rand64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
