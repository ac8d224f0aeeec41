/* Unit tests for lib/ratelimit: the limiter never lets more than count - 1 calls into any
 * window of the period plus its margin, also as the server sees them (send time plus a delivery
 * delay below the margin), and stays close to the quota when saturated; pauses; rate changes
 * mid-stream; running without memory for the log; backoff bounds and spread.
 *
 * Achieved rates are printed as "achieved" lines. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/ratelimit.h"

#define MAX_TAKES 200000

/* Allocation failures on demand: replaces the library's weak allocator of the log. */
static bool fail_alloc;

void *wj_ratelimit_realloc(void *p, size_t n)
{
	if (fail_alloc)
		return NULL;
	return reallocarray(p, n, sizeof(uint64_t));
}

/* ---- helpers --------------------------------------------------------------------------- */

static uint64_t rng(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* The margin and the window W, computed here from the specification, not from the code. */
static uint64_t margin_of(uint64_t period)
{
	return period / 100 > 100 ? period / 100 : 100;
}

static unsigned limit_of(unsigned count)
{
	return count > 1 ? count - 1 : 1;
}

/* The most of the sorted times t[0..n) in one half-open window [t[i], t[i] + w): every window
 * starting at a take time (the fullest windows start at one). */
static size_t max_in_window(const uint64_t *t, size_t n, uint64_t w)
{
	size_t best = 0;
	for (size_t i = 0, j = 0; i < n; i++) {
		if (j < i)
			j = i;
		while (j < n && t[j] - t[i] < w)
			j++;
		if (j - i > best)
			best = j - i;
	}
	return best;
}

/* The most takes in one window (t[j] - w, t[j]] whose latest take t[j] is at or after from. */
static size_t max_in_window_ending_after(const uint64_t *t, size_t n, uint64_t w, uint64_t from)
{
	size_t best = 0;
	for (size_t j = 0, i = 0; j < n; j++) {
		while (t[j] - t[i] >= w)
			i++;
		if (t[j] >= from && j - i + 1 > best)
			best = j - i + 1;
	}
	return best;
}

static size_t count_in(const uint64_t *t, size_t n, uint64_t from, uint64_t to)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += t[i] >= from && t[i] < to;
	return k;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The server's view: each call arrives a random delay in [0, margin) after it was sent. No
 * window of the period may hold more than limit arrivals. */
static void assert_server_view(const uint64_t *t, size_t n, unsigned limit, uint64_t period,
			       uint64_t seed)
{
	uint64_t *a = malloc((n ? n : 1) * sizeof(*a));
	assert_non_null(a);
	uint64_t x = seed | 1, margin = margin_of(period);
	for (size_t i = 0; i < n; i++)
		a[i] = t[i] + rng(&x) % margin;
	qsort(a, n, sizeof(*a), cmp_u64);
	size_t m = max_in_window(a, n, period);
	if (m > limit)
		fail_msg("server saw %zu calls in %llu ms (limit %u)", m, (unsigned long long)period,
			 limit);
	/* the worst case for the server: the earliest calls of a window delayed the most */
	free(a);
}

/* All the window checks for a run at one rate: in every window of W (the guarantee) and of the
 * period (the quota), and at the server with delivery jitter below the margin. */
static void assert_windows(const uint64_t *t, size_t n, unsigned count, uint64_t period)
{
	unsigned limit = limit_of(count);
	size_t mw = max_in_window(t, n, period + margin_of(period));
	if (mw > limit)
		fail_msg("%zu takes in a window of %llu ms (limit %u)", mw,
			 (unsigned long long)(period + margin_of(period)), limit);
	size_t mp = max_in_window(t, n, period);
	if (mp > limit)
		fail_msg("%zu takes in a window of %llu ms (limit %u)", mp,
			 (unsigned long long)period, limit);
	for (uint64_t seed = 1; seed <= 3; seed++)
		assert_server_view(t, n, limit, period, seed * 0x9e3779b97f4a7c15ull);
	for (size_t i = 1; i < n; i++)
		assert_true(t[i] >= t[i - 1]);
}

/* Ask whenever allowed from start to end; returns the number of takes, times appended to t. */
static size_t saturate(wj_tbucket_t *b, uint64_t start, uint64_t end, uint64_t *t, size_t n)
{
	uint64_t now = start;
	for (unsigned guard = 0; now < end; guard++) {
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

typedef struct rate_case {
	unsigned count;
	uint64_t period;
	const char *name;
	double min_per_period; /* asserted: achieved per period over periods 2..10 */
} rate_case_t;

/* The brief's ≥ 95 % of count is asserted where the design allows it. With at most count - 1
 * calls per period + margin, small per-second quotas cannot reach it: the ceiling is
 * (count - 1) * period / (period + margin), 3.64/s (73 %) for 5/s and, count 1 using its one
 * call, 0.91/s for 1/s. There the floor is 95 % of that ceiling. */
static const rate_case_t rates[] = {
	{500, 60000, "500/min", 475},	{60, 60000, "60/min", 57},
	{100, 3600000, "100/h", 95},	{5, 1000, "5/s", 3.64 * 0.95},
	{1, 1000, "1/s", 0.909 * 0.95}, {2, 60000, "2/min", 0.99 * 0.95},
	{10, 1000, "10/s", 8.18 * 0.95}, {5000, 1000, "5000/s", 4544 * 0.95},
	{20000, 60000, "20000/min", 19000},
};

static double achieved(const uint64_t *t, size_t n, uint64_t start, uint64_t period)
{
	return (double)count_in(t, n, start + period, start + 10 * period) / 9.0;
}

static void report(const char *what, const rate_case_t *rc, double per_period)
{
	print_message("achieved %-9s %-10s %9.2f per period = %5.1f %% of quota (floor %.2f)\n",
		      what, rc->name, per_period, 100.0 * per_period / rc->count,
		      rc->min_per_period);
}

/* ---- saturated ------------------------------------------------------------------------- */

static void test_saturated_rates(void **state)
{
	(void)state;
	uint64_t *t = calloc(MAX_TAKES, sizeof(*t));
	assert_non_null(t);
	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		const rate_case_t *rc = &rates[r];
		wj_tbucket_t b;
		assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){rc->count, rc->period}, 0), 0);
		uint64_t start = 1000;
		size_t n = saturate(&b, start, start + 10 * rc->period, t, 0);
		assert_windows(t, n, rc->count, rc->period);
		double a = achieved(t, n, start, rc->period);
		report("saturated", rc, a);
		assert_true(a >= rc->min_per_period);
		/* never more than the quota in any calendar period either */
		for (unsigned m = 0; m < 10; m++)
			assert_true(count_in(t, n, start + m * rc->period,
					     start + (m + 1) * rc->period) <= limit_of(rc->count));
		/* the token bucket spreads a period's calls: no more than the burst at one time */
		assert_true(max_in_window(t, n, 1) <= b.burst);
		wj_tbucket_free(&b);
	}
	free(t);
}

/* ---- bursty arrivals ------------------------------------------------------------------- */

/* Requests arrive in bursts at random times, load times the quota on average; a gate (like the
 * engine's) takes for the oldest waiting request whenever allowed and otherwise sleeps for the
 * wait plus a little timer jitter. Runs for `periods` periods from 0, then until the queue is
 * empty if drain. Returns the takes; *left: requests still waiting at the end; *idle_after:
 * whether the queue was ever empty after the first period (before the end). */
static size_t run_bursty(wj_tbucket_t *b, const rate_case_t *rc, double load, uint64_t seed,
			 unsigned periods, bool drain, uint64_t *t, size_t *left, bool *idle_after)
{
	uint64_t x = seed | 1, end = periods * rc->period;
	double mean_size = rc->count / 8.0 < 2 ? 2 : rc->count / 8.0;
	/* mean gap between bursts for the wanted load */
	double mean_gap = mean_size * (double)rc->period / (rc->count * load);
	size_t n = 0, waiting = 0;
	uint64_t now = 0, wake = 0, next = 0, arrived = 0;
	*idle_after = false;
	for (unsigned guard = 0;; guard++) {
		assert_true(guard < 8 * MAX_TAKES);
		while (next <= now) {
			/* sizes 1 .. 2 * mean_size - 1, gaps 0 .. 2 * mean_gap: bursts and idle gaps */
			size_t size = 1 + rng(&x) % (uint64_t)(2 * mean_size - 1 > 1 ? 2 * mean_size - 1 : 1);
			if (next < end) {
				waiting += size;
				arrived += size;
			}
			next += rng(&x) % (uint64_t)(2 * mean_gap + 1);
			if (next >= end && !(drain && waiting))
				next = end;
			if (next >= end)
				break;
		}
		if (now >= end && (!drain || waiting == 0))
			break;
		if (waiting == 0 && now >= rc->period && now < end)
			*idle_after = true;
		if (waiting && now >= wake) {
			uint64_t w = wj_tbucket_take(b, now);
			if (w == 0) {
				assert_true(n < MAX_TAKES);
				t[n++] = now;
				waiting--;
				continue;
			}
			wake = now + w + rng(&x) % 4; /* a timer fires a little late */
		}
		uint64_t to = waiting ? wake : next;
		if (next > now && next < to && next < end)
			to = next;
		if (to <= now)
			to = now + 1;
		if (now < end && to > end)
			to = end;
		now = to;
	}
	assert_int_equal(n + waiting, arrived);
	*left = waiting;
	return n;
}

static void test_bursty_saturating(void **state)
{
	(void)state;
	uint64_t *t = calloc(MAX_TAKES, sizeof(*t));
	assert_non_null(t);
	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		const rate_case_t *rc = &rates[r];
		for (uint64_t seed = 1; seed <= 3; seed++) {
			wj_tbucket_t b;
			assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){rc->count, rc->period}, 0), 0);
			size_t left;
			bool idle;
			/* three times the quota on average: a backlog that only grows */
			size_t n = run_bursty(&b, rc, 3.0, seed * 7919, 10, false, t, &left, &idle);
			assert_windows(t, n, rc->count, rc->period);
			assert_false(idle);
			double a = achieved(t, n, 0, rc->period);
			if (seed == 1)
				report("bursty", rc, a);
			assert_true(a >= rc->min_per_period);
			wj_tbucket_free(&b);
		}
	}
	free(t);
}

/* Less demand than the quota, in bursts with idle gaps: the quota holds, everything is served. */
static void test_bursty_sparse(void **state)
{
	(void)state;
	uint64_t *t = calloc(MAX_TAKES, sizeof(*t));
	assert_non_null(t);
	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		const rate_case_t *rc = &rates[r];
		for (uint64_t seed = 1; seed <= 3; seed++) {
			wj_tbucket_t b;
			assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){rc->count, rc->period}, 0), 0);
			size_t left;
			bool idle;
			size_t n = run_bursty(&b, rc, 0.6, seed * 104729, 10, true, t, &left, &idle);
			assert_windows(t, n, rc->count, rc->period);
			assert_int_equal(left, 0);
			assert_true(n > 0);
			wj_tbucket_free(&b);
		}
	}
	free(t);
}

/* ---- behaviour in detail --------------------------------------------------------------- */

static void test_burst(void **state)
{
	(void)state;
	wj_tbucket_t b;
	/* default burst for 60/min is 3: three at once, then spaced at the full rate, 1000 ms (the
	 * old bucket refilled at count - burst + 1 per period, 1034 ms) */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 0), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(wj_tbucket_take(&b, 5000), 0);
	assert_int_equal(wj_tbucket_take(&b, 5000), 1000);
	wj_tbucket_free(&b);
	/* explicit burst, capped to count */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 10), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(wj_tbucket_take(&b, 0), 0);
	assert_true(wj_tbucket_take(&b, 0) > 0);
	wj_tbucket_free(&b);
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){5, 1000}, 100), 0);
	assert_int_equal(b.burst, 5);
	/* Changed: a burst of the whole quota is cut to count - 1 = 4 by the log (the old bucket
	 * let 5 through), and the 5th waits for the first to leave the window of 1000 + 100 ms. */
	for (int i = 0; i < 4; i++)
		assert_int_equal(wj_tbucket_take(&b, 0), 0);
	assert_int_equal(wj_tbucket_take(&b, 0), 1100);
	assert_int_equal(wj_tbucket_take(&b, 1099), 1);
	assert_int_equal(wj_tbucket_take(&b, 1100), 0);
	wj_tbucket_free(&b);
	/* invalid rates */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){0, 60000}, 0), -EINVAL);
	wj_tbucket_free(&b);
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 0}, 0), -EINVAL);
	wj_tbucket_free(&b);
	/* a clock that goes backwards never adds tokens */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 1), 0);
	assert_int_equal(wj_tbucket_take(&b, 100000), 0);
	assert_true(wj_tbucket_take(&b, 50000) > 0);
	assert_true(wj_tbucket_take(&b, 100999) > 0);
	assert_int_equal(wj_tbucket_take(&b, 101000), 0);
	wj_tbucket_free(&b);
	/* ... nor lets the log forget: takes are logged at the latest time seen */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){3, 1000}, 3), 0);
	assert_int_equal(wj_tbucket_take(&b, 10000), 0);
	assert_int_equal(wj_tbucket_take(&b, 9000), 0); /* logged at 10000 */
	assert_int_equal(wj_tbucket_take(&b, 9500), 1600);
	assert_int_equal(wj_tbucket_take(&b, 11099), 1);
	assert_int_equal(wj_tbucket_take(&b, 11100), 0);
	wj_tbucket_free(&b);
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){3, 1000}, 3), 0);
	assert_int_equal(wj_tbucket_take(&b, 10000), 0);
	assert_int_equal(wj_tbucket_take(&b, 9000), 0);
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){2, 1000}, 0), 0); /* keeps the newest */
	assert_int_equal(wj_tbucket_wait(&b, 9500), 1600);
	wj_tbucket_free(&b);
	/* count 1: one call per period + margin (no call can be left unused) */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){1, 1000}, 0), 0);
	assert_int_equal(wj_tbucket_take(&b, 0), 0);
	assert_int_equal(wj_tbucket_take(&b, 0), 1100);
	assert_int_equal(wj_tbucket_take(&b, 1100), 0);
	wj_tbucket_free(&b);
	/* the margin is a hundredth of the period, at least 100 ms: 36 s for 1/h */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){1, 3600000}, 0), 0);
	assert_int_equal(wj_tbucket_take(&b, 0), 0);
	assert_int_equal(wj_tbucket_take(&b, 0), 3636000);
	wj_tbucket_free(&b);
	wj_tbucket_free(&b); /* twice is harmless */
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
	/* one probe at the end of the pause, then the normal pace (no refill during the pause).
	 * Changed: the pace is now exactly the full rate, 1000 ms, where the old bucket's reduced
	 * refill gave 1034 ms; the quota is kept by the log instead. */
	assert_int_equal(wj_tbucket_take(&b, 40000), 0);
	assert_int_equal(wj_tbucket_take(&b, 40000), 1000);
	/* a longer pause extends */
	wj_tbucket_pause_until(&b, 50000);
	wj_tbucket_pause_until(&b, 70000);
	assert_int_equal(wj_tbucket_take(&b, 45000), 25000);
	wj_tbucket_free(&b);

	/* pause before the first take */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){500, 60000}, 0), 0);
	wj_tbucket_pause_until(&b, 5000);
	assert_int_equal(wj_tbucket_take(&b, 0), 5000);
	assert_int_equal(wj_tbucket_take(&b, 5000), 0);
	assert_true(wj_tbucket_take(&b, 5000) > 0);
	wj_tbucket_free(&b);

	/* a pause does not reset the log: after a pause the window still counts the calls made
	 * before it */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){5, 1000}, 5), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(wj_tbucket_take(&b, 0), 0);
	wj_tbucket_pause_until(&b, 500);
	assert_int_equal(wj_tbucket_take(&b, 500), 600);
	wj_tbucket_free(&b);

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
	assert_windows(t, n, 60, 60000);
	wj_tbucket_free(&b);
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
	/* changed: exactly the full rate (was 1000 < w < 1100 with the reduced refill) */
	assert_int_equal(wj_tbucket_take(&b, 0), 1000);
	/* raising the rate shortens the waits */
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){6000, 60000}, 0), 0);
	uint64_t w = wj_tbucket_take(&b, 0);
	assert_true(w > 0 && w <= 11);
	wj_tbucket_free(&b);
	/* the same rate per second, tokens rescaled to the new period */
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 10), 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(wj_tbucket_take(&b, 0), 0);
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){1, 1000}, 10), 0);
	assert_int_equal(b.burst, 1);
	/* Changed: the old bucket allowed a 7th call at once. The log remembers the 6 calls just
	 * made, and a quota of 1/s allows none of them in the window: wait 1000 + 100 ms. */
	assert_int_equal(wj_tbucket_take(&b, 0), 1100);
	assert_int_equal(wj_tbucket_take(&b, 1100), 0);
	assert_int_equal(wj_tbucket_wait(&b, 1100), 1100); /* the log (the bucket: 1000) */
	assert_int_equal(wj_tbucket_take(&b, 2100), 100);
	/* invalid: refused, bucket unchanged */
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){0, 1000}, 0), -EINVAL);
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){5, 0}, 0), -EINVAL);
	assert_int_equal(b.rate.count, 1);
	assert_int_equal(b.rate.period_ms, 1000);
	assert_int_equal(wj_tbucket_take(&b, 2100), 100);
	wj_tbucket_free(&b);

	/* a reload with the same rate changes nothing: the history is kept, no new burst */
	uint64_t *t = calloc(MAX_TAKES, sizeof(*t));
	assert_non_null(t);
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){60, 60000}, 0), 0);
	size_t n = saturate(&b, 0, 200000, t, 0);
	uint64_t before = wj_tbucket_wait(&b, 200000);
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){60, 60000}, 0), 0);
	assert_int_equal(wj_tbucket_wait(&b, 200000), before);
	n = saturate(&b, 200000, 600000, t, n);
	assert_windows(t, n, 60, 60000);
	wj_tbucket_free(&b);
	free(t);
}

/* A reload mid-stream, saturated before and after. Guarantee: every window of the new length
 * W' = period' + margin' whose latest take is after the change holds at most count' - 1 takes,
 * counting the takes made before the change; the old rate's windows hold before it. */
static void check_change(wj_rate_t from, wj_rate_t to, bool no_memory, const char *name)
{
	uint64_t *t = calloc(MAX_TAKES, sizeof(*t));
	assert_non_null(t);
	wj_tbucket_t b;
	assert_int_equal(wj_tbucket_init(&b, from, 0), 0);
	uint64_t change = 3 * from.period_ms + 1234;
	size_t n0 = saturate(&b, 0, change, t, 0);
	assert_windows(t, n0, from.count, from.period_ms);
	fail_alloc = no_memory;
	int r = wj_tbucket_set_rate(&b, to, 0);
	/* lowering never needs memory (the log shrinks in place) */
	bool grows = to.count > from.count;
	assert_int_equal(r, no_memory && grows ? -ENOMEM : 0);
	assert_int_equal(b.rate.count, to.count);
	uint64_t end = change + 10 * to.period_ms;
	size_t n = saturate(&b, change, end, t, n0);
	fail_alloc = false;
	unsigned limit = limit_of(to.count);
	uint64_t w2 = to.period_ms + margin_of(to.period_ms);
	size_t m = max_in_window_ending_after(t, n, w2, change);
	if (m > limit)
		fail_msg("%s: %zu takes in a window of %llu ms ending after the change (limit %u)",
			 name, m, (unsigned long long)w2, limit);
	/* the server's view from one new period after the change on */
	size_t k = 0;
	while (k < n && t[k] < change + to.period_ms)
		k++;
	assert_windows(t + k, n - k, to.count, to.period_ms);
	/* and the new rate is reached, once the transition is over */
	size_t got = count_in(t, n, change + 2 * to.period_ms, end);
	double per = (double)got / 8.0;
	print_message("achieved %-9s %-10s %9.2f per period = %5.1f %% of the new quota; first "
		      "take %llu ms after the change\n",
		      "reload", name, per, 100.0 * per / to.count,
		      (unsigned long long)(n > n0 ? t[n0] - change : 0));
	assert_true(per >= 0.95 * (double)limit * (double)to.period_ms / (double)w2);
	wj_tbucket_free(&b);
	free(t);
}

static void test_set_rate_midstream(void **state)
{
	(void)state;
	check_change((wj_rate_t){500, 60000}, (wj_rate_t){100, 60000}, false, "500->100");
	check_change((wj_rate_t){100, 60000}, (wj_rate_t){500, 60000}, false, "100->500");
	check_change((wj_rate_t){500, 60000}, (wj_rate_t){5, 1000}, false, "500/m->5/s");
	check_change((wj_rate_t){50, 1000}, (wj_rate_t){60, 60000}, false, "50/s->60/m");
	check_change((wj_rate_t){60, 60000}, (wj_rate_t){1, 1000}, false, "60/m->1/s");
	/* without memory for a larger log */
	check_change((wj_rate_t){500, 60000}, (wj_rate_t){100, 60000}, true, "500->100 nm");
	check_change((wj_rate_t){100, 60000}, (wj_rate_t){500, 60000}, true, "100->500 nm");
	check_change((wj_rate_t){50, 1000}, (wj_rate_t){60, 60000}, true, "50/s->60/m nm");
}

/* No memory for the log at init: spacing mode, same guarantee, no bursts. */
static void test_no_memory(void **state)
{
	(void)state;
	uint64_t *t = calloc(MAX_TAKES, sizeof(*t));
	assert_non_null(t);
	for (size_t r = 0; r < sizeof(rates) / sizeof(rates[0]); r++) {
		const rate_case_t *rc = &rates[r];
		wj_tbucket_t b;
		fail_alloc = true;
		assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){rc->count, rc->period}, 0), -ENOMEM);
		fail_alloc = false;
		assert_null(b.log);
		size_t n = saturate(&b, 1000, 1000 + 10 * rc->period, t, 0);
		assert_windows(t, n, rc->count, rc->period);
		double a = achieved(t, n, 1000, rc->period);
		report("no-memory", rc, a);
		assert_true(a >= rc->min_per_period);
		/* a reload with the same rate stays in spacing mode, waits unchanged */
		uint64_t now = 1000 + 10 * rc->period, before = wj_tbucket_wait(&b, now);
		assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){rc->count, rc->period}, 0), 0);
		assert_null(b.log);
		assert_int_equal(wj_tbucket_wait(&b, now), before);
		wj_tbucket_free(&b);
	}
	/* evenly spaced: 60600 / 499 = 121.4 ms apart on average, even after idling */
	wj_tbucket_t b;
	fail_alloc = true;
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){500, 60000}, 0), -ENOMEM);
	fail_alloc = false;
	assert_int_equal(wj_tbucket_take(&b, 100000), 0);
	/* the schedule: 100121.4, 100242.9, 100364.3; a take is allowed in the schedule's ms */
	assert_int_equal(wj_tbucket_take(&b, 100000), 121);
	assert_int_equal(wj_tbucket_take(&b, 100121), 0);
	assert_int_equal(wj_tbucket_take(&b, 100121), 121);
	assert_int_equal(wj_tbucket_take(&b, 100242), 0);
	assert_int_equal(wj_tbucket_take(&b, 100242), 122);
	/* a reload to another rate that finds memory again: the log restarts as if the new quota
	 * had been used up at the last take (the history is lost), then runs normally */
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){60, 60000}, 0), 0);
	assert_non_null(b.log);
	assert_int_equal(wj_tbucket_take(&b, 100242), 60600);
	size_t n = saturate(&b, 100242, 800000, t, 0);
	assert_int_equal(t[0], 160842);
	assert_true(n > 59 * 10);
	assert_windows(t, n, 60, 60000);
	wj_tbucket_free(&b);
	/* a reload to another rate without memory: the first take waits W after the last one */
	fail_alloc = true;
	assert_int_equal(wj_tbucket_init(&b, (wj_rate_t){500, 60000}, 0), -ENOMEM);
	assert_int_equal(wj_tbucket_take(&b, 1000), 0);
	assert_int_equal(wj_tbucket_set_rate(&b, (wj_rate_t){100, 60000}, 0), -ENOMEM);
	assert_int_equal(wj_tbucket_take(&b, 1000), 60600);
	assert_int_equal(wj_tbucket_take(&b, 61600), 0);
	assert_int_equal(wj_tbucket_take(&b, 61600), 612); /* 60600 / 99 = 612.1 */
	fail_alloc = false;
	wj_tbucket_free(&b);
	free(t);
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
		cmocka_unit_test(test_saturated_rates),
		cmocka_unit_test(test_bursty_saturating),
		cmocka_unit_test(test_bursty_sparse),
		cmocka_unit_test(test_burst),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_set_rate),
		cmocka_unit_test(test_set_rate_midstream),
		cmocka_unit_test(test_no_memory),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_rand64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
