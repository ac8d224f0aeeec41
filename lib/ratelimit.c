#include "lib/ratelimit.h"

#include <errno.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static unsigned default_burst(unsigned count)
{
	unsigned b = count / 20;
	return b ? b : 1;
}

static int configure(wj_tbucket_t *b, wj_rate_t rate, unsigned burst)
{
	if (rate.count == 0 || rate.period_ms == 0)
		return -EINVAL;
	if (burst == 0)
		burst = default_burst(rate.count);
	if (burst > rate.count)
		burst = rate.count;
	b->rate = rate;
	b->burst = burst;
	b->refill = (uint64_t)rate.count - burst + 1;
	return 0;
}

int wj_tbucket_init(wj_tbucket_t *b, wj_rate_t rate, unsigned burst)
{
	*b = (wj_tbucket_t){0};
	return configure(b, rate, burst);
}

static uint64_t capacity(const wj_tbucket_t *b)
{
	return (uint64_t)b->burst * b->rate.period_ms;
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
	uint64_t elapsed = now_ms - from;
	if (b->tokens >= cap)
		return cap;
	if (elapsed > (cap - b->tokens) / b->refill)
		return cap;
	uint64_t t = b->tokens + elapsed * b->refill;
	return t < cap ? t : cap;
}

static uint64_t wait_for(const wj_tbucket_t *b, uint64_t tokens, uint64_t now_ms)
{
	if (now_ms < b->pause_until_ms)
		return b->pause_until_ms - now_ms;
	uint64_t one = b->rate.period_ms;
	if (tokens >= one)
		return 0;
	return (one - tokens + b->refill - 1) / b->refill;
}

uint64_t wj_tbucket_take(wj_tbucket_t *b, uint64_t now_ms)
{
	uint64_t tokens = tokens_at(b, now_ms);
	uint64_t wait = wait_for(b, tokens, now_ms);
	if (wait)
		return wait;
	if (!b->started || now_ms > b->last_ms) {
		b->last_ms = now_ms;
		b->started = true;
	}
	b->tokens = tokens - b->rate.period_ms;
	return 0;
}

uint64_t wj_tbucket_wait(const wj_tbucket_t *b, uint64_t now_ms)
{
	return wait_for(b, tokens_at(b, now_ms), now_ms);
}

int wj_tbucket_set_rate(wj_tbucket_t *b, wj_rate_t rate, unsigned burst)
{
	uint64_t old_period = b->rate.period_ms;
	/* whole and fractional tokens held, in the new unit */
	unsigned __int128 t = (unsigned __int128)b->tokens * rate.period_ms;
	int ret = configure(b, rate, burst);
	if (ret < 0)
		return ret;
	if (old_period)
		t /= old_period;
	uint64_t cap = capacity(b);
	b->tokens = t < cap ? (uint64_t)t : cap;
	return 0;
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
