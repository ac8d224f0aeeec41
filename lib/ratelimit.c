#include "lib/ratelimit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- parameters ------------------------------------------------------------------------ */

static unsigned default_burst(unsigned count)
{
	unsigned b = count / 20;
	return b ? b : 1;
}

/* Takes allowed per window: one of the quota is left unused, except for a quota of one. */
static unsigned log_limit(unsigned count)
{
	return count > 1 ? count - 1 : 1;
}

/* W: the period plus a margin for delivery delay and timer jitter. */
static uint64_t window_of(uint64_t period_ms)
{
	uint64_t margin = period_ms / 100;
	if (margin < 100)
		margin = 100;
	return period_ms > UINT64_MAX - margin ? UINT64_MAX : period_ms + margin;
}

static bool valid(wj_rate_t rate)
{
	return rate.count != 0 && rate.period_ms != 0;
}

/* Everything but the log and the tokens held. */
static void set_params(wj_tbucket_t *b, wj_rate_t rate, unsigned burst)
{
	if (burst == 0)
		burst = default_burst(rate.count);
	if (burst > rate.count)
		burst = rate.count;
	b->rate = rate;
	b->burst = burst;
	b->window_ms = window_of(rate.period_ms);
}

/* Allocates or resizes the log: n entries. Weak, so that a test can make it fail. */
__attribute__((weak)) void *wj_ratelimit_realloc(void *p, size_t n)
{
	return reallocarray(p, n, sizeof(uint64_t));
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ---- token bucket ---------------------------------------------------------------------- */

/* Tokens are counted in 1/period_ms of a token and refill at count per ms: the full rate. */
static uint64_t capacity(const wj_tbucket_t *b)
{
	uint64_t p = b->rate.period_ms;
	return p && b->burst > UINT64_MAX / p ? UINT64_MAX : (uint64_t)b->burst * p;
}

/* Tokens (scaled) the bucket holds at now_ms. */
static uint64_t tokens_at(const wj_tbucket_t *b, uint64_t now_ms)
{
	uint64_t cap = capacity(b);
	if (!b->started)
		return cap;
	uint64_t from = b->last_ms > b->pause_until_ms ? b->last_ms : b->pause_until_ms;
	if (now_ms <= from)
		return b->tokens;
	uint64_t elapsed = now_ms - from, refill = b->rate.count;
	if (b->tokens >= cap)
		return cap;
	if (elapsed > (cap - b->tokens) / refill)
		return cap;
	uint64_t t = b->tokens + elapsed * refill;
	return t < cap ? t : cap;
}

/* The ms until the bucket (and the pause) allow a take. */
static uint64_t bucket_wait(const wj_tbucket_t *b, uint64_t tokens, uint64_t now_ms)
{
	if (now_ms < b->pause_until_ms)
		return b->pause_until_ms - now_ms;
	uint64_t one = b->rate.period_ms, refill = b->rate.count;
	if (tokens >= one)
		return 0;
	return (one - tokens + refill - 1) / refill;
}

/* ---- sliding log ----------------------------------------------------------------------- */

/* The ms until the log allows a take: fewer than L takes in (now - W, now]. The log holds
 * the last L take times, oldest at log_head; while it is not full it holds every take. */
static uint64_t log_wait(const wj_tbucket_t *b, uint64_t now_ms)
{
	uint64_t at;
	if (!b->log) {
		if (!b->log_cap)
			return 0; /* never initialised */
		at = b->sched_ms;
	} else {
		if (b->log_len < b->log_cap)
			return 0;
		at = add_sat(b->log[b->log_head], b->window_ms);
	}
	return at > now_ms ? at - now_ms : 0;
}

/* Spacing mode, a virtual schedule s (in 1/L ms): a take at t (whole ms) is allowed when
 * s < t + 1, and moves s to max(s, t) + W / L. For takes t1 <= ... <= tk that gives
 * t1 + (k - 1) W / L <= s < tk + 1, so a window of W (tk - t1 <= W - 1) holds k <= L: the
 * log's guarantee, at the same sustained rate, with several takes per ms when W / L < 1. */
static void sched_advance(wj_tbucket_t *b, uint64_t t)
{
	unsigned limit = b->log_cap;
	if (!limit)
		return;
	if (t > b->sched_ms || (t == b->sched_ms && b->sched_rem == 0)) {
		b->sched_ms = t;
		b->sched_rem = 0;
	}
	b->sched_ms = add_sat(b->sched_ms, b->window_ms / limit);
	b->sched_rem += b->window_ms % limit;
	if (b->sched_rem >= limit) {
		b->sched_rem -= limit;
		b->sched_ms = add_sat(b->sched_ms, 1);
	}
}

static void log_record(wj_tbucket_t *b, uint64_t now_ms)
{
	/* a clock that went backwards: log the latest time seen, never an earlier one */
	uint64_t t = b->taken && b->last_take_ms > now_ms ? b->last_take_ms : now_ms;
	b->last_take_ms = t;
	b->taken = true;
	if (!b->log) {
		sched_advance(b, t);
		return;
	}
	if (b->log_len < b->log_cap) {
		b->log[b->log_len++] = t; /* log_head is 0 until the log is full */
		return;
	}
	b->log[b->log_head] = t;
	if (++b->log_head == b->log_cap)
		b->log_head = 0;
}

static void reverse(uint64_t *a, unsigned n)
{
	for (unsigned i = 0, j = n; i + 1 < j; i++, j--) {
		uint64_t x = a[i];
		a[i] = a[j - 1];
		a[j - 1] = x;
	}
}

/* Oldest entry first, at index 0. */
static void log_linearize(wj_tbucket_t *b)
{
	if (b->log_head == 0)
		return;
	/* full (log_head is 0 otherwise): rotate left by log_head */
	reverse(b->log, b->log_head);
	reverse(b->log + b->log_head, b->log_cap - b->log_head);
	reverse(b->log, b->log_cap);
	b->log_head = 0;
}

/* History lost (spacing mode at a new rate): no take until a whole new window after the last
 * one. The schedule is rounded up to whole ms, as its unit (1/L ms) may change. */
static void log_hold(wj_tbucket_t *b, uint64_t window_ms)
{
	uint64_t at = add_sat(b->sched_ms, b->sched_rem != 0);
	if (b->taken && add_sat(b->last_take_ms, window_ms) > at)
		at = add_sat(b->last_take_ms, window_ms);
	b->sched_ms = at;
	b->sched_rem = 0;
}

/* Resize the log to cap entries for a window of window_ms, keeping the recent history. */
static int log_resize(wj_tbucket_t *b, unsigned cap, uint64_t window_ms)
{
	if (!b->log) {
		/* spacing mode: stay in it while the rate does not change */
		if (cap == b->log_cap && window_ms == b->window_ms)
			return 0;
		b->log_cap = cap;
		uint64_t *p = wj_ratelimit_realloc(NULL, cap);
		if (!p) {
			log_hold(b, window_ms);
			return -ENOMEM;
		}
		/* The spacing-mode history is only the last take: count a full window there. */
		b->log = p;
		b->log_head = 0;
		b->log_len = b->taken ? cap : 0;
		for (unsigned i = 0; i < b->log_len; i++)
			p[i] = b->last_take_ms;
		return 0;
	}
	if (cap == b->log_cap)
		return 0;
	log_linearize(b);
	if (cap < b->log_cap) {
		/* keep the newest entries, in place: this cannot fail */
		unsigned keep = b->log_len < cap ? b->log_len : cap;
		memmove(b->log, b->log + (b->log_len - keep), keep * sizeof(*b->log));
		uint64_t *p = wj_ratelimit_realloc(b->log, cap);
		if (p)
			b->log = p; /* else the larger block stays in use */
		b->log_cap = cap;
		b->log_len = keep;
		return 0;
	}
	uint64_t *p = wj_ratelimit_realloc(b->log, cap);
	if (!p) {
		free(b->log);
		b->log = NULL;
		b->log_cap = cap;
		b->log_len = 0;
		log_hold(b, window_ms);
		return -ENOMEM;
	}
	if (b->log_len == b->log_cap) {
		/* Full: older takes were not kept. Assume they happened at the oldest time kept,
		 * the latest they can have happened. */
		unsigned pad = cap - b->log_len;
		memmove(p + pad, p, b->log_len * sizeof(*p));
		for (unsigned i = 0; i < pad; i++)
			p[i] = p[pad];
		b->log_len = cap;
	}
	b->log = p;
	b->log_cap = cap;
	return 0;
}

/* ---- API ------------------------------------------------------------------------------- */

int wj_tbucket_init(wj_tbucket_t *b, wj_rate_t rate, unsigned burst)
{
	*b = (wj_tbucket_t){0};
	if (!valid(rate))
		return -EINVAL;
	set_params(b, rate, burst);
	b->log_cap = log_limit(rate.count);
	b->log = wj_ratelimit_realloc(NULL, b->log_cap);
	return b->log ? 0 : -ENOMEM;
}

void wj_tbucket_free(wj_tbucket_t *b)
{
	free(b->log);
	b->log = NULL;
	b->log_len = b->log_head = 0;
	log_hold(b, b->window_ms);
}

static uint64_t wait_all(const wj_tbucket_t *b, uint64_t tokens, uint64_t now_ms)
{
	uint64_t w1 = bucket_wait(b, tokens, now_ms), w2 = log_wait(b, now_ms);
	return w1 > w2 ? w1 : w2;
}

uint64_t wj_tbucket_take(wj_tbucket_t *b, uint64_t now_ms)
{
	uint64_t tokens = tokens_at(b, now_ms);
	uint64_t wait = wait_all(b, tokens, now_ms);
	if (wait)
		return wait;
	if (!b->started || now_ms > b->last_ms) {
		b->last_ms = now_ms;
		b->started = true;
	}
	b->tokens = tokens - b->rate.period_ms;
	log_record(b, now_ms);
	return 0;
}

uint64_t wj_tbucket_wait(const wj_tbucket_t *b, uint64_t now_ms)
{
	return wait_all(b, tokens_at(b, now_ms), now_ms);
}

int wj_tbucket_set_rate(wj_tbucket_t *b, wj_rate_t rate, unsigned burst)
{
	if (!valid(rate))
		return -EINVAL;
	uint64_t old_period = b->rate.period_ms;
	/* whole and fractional tokens held, in the new unit */
	unsigned __int128 t = (unsigned __int128)b->tokens * rate.period_ms;
	uint64_t window = window_of(rate.period_ms);
	unsigned limit = log_limit(rate.count);
	int ret = log_resize(b, limit, window);
	set_params(b, rate, burst);
	if (old_period)
		t /= old_period;
	uint64_t cap = capacity(b);
	b->tokens = t < cap ? (uint64_t)t : cap;
	return ret;
}

void wj_tbucket_pause_until(wj_tbucket_t *b, uint64_t until_ms)
{
	if (until_ms <= b->pause_until_ms)
		return;
	uint64_t one = b->rate.period_ms;
	if (!b->started) {
		b->started = true;
		b->tokens = capacity(b);
	}
	if (b->tokens > one)
		b->tokens = one;
	b->pause_until_ms = until_ms;
}

uint64_t wj_backoff_ms(unsigned attempt, uint64_t initial_ms, uint64_t max_ms, uint64_t rand64)
{
	uint64_t cap = initial_ms;
	for (unsigned i = 0; i < attempt && cap < max_ms; i++)
		cap = cap > max_ms / 2 ? max_ms : cap * 2;
	if (cap > max_ms)
		cap = max_ms;
	if (cap == UINT64_MAX)
		return rand64;
	return rand64 % (cap + 1);
}

uint64_t wj_rand64(void)
{
	static uint64_t state;
	uint64_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	if (state == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		state = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
			((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15u;
		if (state == 0)
			state = 1;
	}
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}
