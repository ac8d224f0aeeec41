/* Rate limiting and retry backoff. Pure: the caller passes the clock (monotonic ms, e.g.
 * wj_mono_ms()) and the random value, so everything is deterministic under test.
 *
 * The limiter for a quota of `count` calls per `period_ms` (sliding) is two checks; a take
 * succeeds only when both allow it, and the wait returned is the longer of the two:
 *
 * 1. A sliding log of the send times of the last L takes, L = max(1, count - 1). A take at
 *    `now` is allowed only if fewer than L takes happened in (now - W, now], where
 *    W = period_ms + margin and margin = max(100 ms, period_ms / 100). Guarantee: every
 *    half-open window of length W holds at most L takes. So the server sees at most L ≤ count
 *    calls in any window of length period_ms as long as the delivery delay of the calls varies
 *    by less than the margin, and one call of the quota is left unused as further headroom
 *    (not possible for count 1, where L = 1: one call per W).
 * 2. A token bucket in front, for smoothness: it holds up to `burst` tokens (default count/20,
 *    at least 1) and refills at the full rate, count per period, so a backlog is spread over
 *    the period instead of firing L calls at once and then waiting.
 *
 * Saturated, the sustained rate is min(count / period, L / W): 494 per minute (98.8 %) for
 * 500/min, 58.4 (97.4 %) for 60/min; for small per-second quotas the margin and the unused call
 * cost more (3.6 per second, 73 %, for 5/s).
 *
 * The log takes 8 bytes per allowed call (L entries), allocated by init and set_rate. If it
 * cannot be allocated they return -ENOMEM but leave a working limiter with the same
 * guarantee and sustained rate, in spacing mode: takes are spaced evenly, W / L ms apart on
 * average (a virtual schedule in 1/L ms, so more than one per ms is possible), never closer
 * than that on average over any run of takes, so no bursts.
 * Clocks that go backwards never let more through: a take is logged at the latest time seen. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/config.h"

typedef struct wj_tbucket {
	wj_rate_t rate;
	unsigned burst;
	uint64_t tokens;          /* in 1/period_ms of a token; refill: count per ms */
	uint64_t last_ms;         /* time tokens were last brought up to date */
	uint64_t pause_until_ms;  /* no takes before this time */
	bool started;             /* false until the first take: the bucket starts full */
	/* sliding log */
	uint64_t window_ms;       /* W = period_ms + margin */
	uint64_t *log;            /* ring of the last log_cap take times; NULL: spacing mode */
	unsigned log_cap;         /* L = max(1, count - 1) */
	unsigned log_len;         /* entries held; < log_cap only if every take is in the log */
	unsigned log_head;        /* index of the oldest entry (0 while log_len < log_cap) */
	uint64_t sched_ms;        /* spacing mode (no memory for the log): the next take is */
	uint64_t sched_rem;       /* allowed from sched_ms + sched_rem / log_cap ms on */
	uint64_t last_take_ms;    /* latest take time logged (the clock's maximum) */
	bool taken;               /* a take was logged */
} wj_tbucket_t;

/* Set up b (zeroed or freed before). burst 0 → default; burst is capped to count.
 * 0; -EINVAL (count or period_ms 0; b is unusable); -ENOMEM (no memory for the log: b works
 * in spacing mode, see above; release it with wj_tbucket_free all the same). */
int wj_tbucket_init(wj_tbucket_t *b, wj_rate_t rate, unsigned burst);
/* Release the log. b may then be initialised again. Safe on a zeroed bucket; a take after it
 * finds the limiter in spacing mode. */
void wj_tbucket_free(wj_tbucket_t *b);
/* Take a token: 0 when taken, else the ms to wait before asking again (≥ 1). */
uint64_t wj_tbucket_take(wj_tbucket_t *b, uint64_t now_ms);
/* The ms until a take would succeed (0: now), without taking. */
uint64_t wj_tbucket_wait(const wj_tbucket_t *b, uint64_t now_ms);
/* New rate (config reload). Tokens held are kept, up to the new burst. The log keeps the most
 * recent takes, so the guarantee holds at once for every window of the new length W that ends
 * after the change: such a window holds at most the new L takes, counting the calls made
 * before the change. When L grows and the log was full, the older takes it did not keep are
 * assumed to have happened at its oldest time (the latest they can have happened).
 * 0; -EINVAL (bucket unchanged); -ENOMEM (the new rate applies, in spacing mode, and the first
 * take waits until W after the last one: the history is lost). */
int wj_tbucket_set_rate(wj_tbucket_t *b, wj_rate_t rate, unsigned burst);
/* Pause the endpoint (HTTP 429, Retry-After, WDT code 1012) until until_ms; a later pause
 * extends, an earlier one does not shorten. Tokens do not accrue during the pause and at most
 * one is left, so traffic resumes with a single probe, then at the normal rate. The sliding
 * log still applies after the pause. */
void wj_tbucket_pause_until(wj_tbucket_t *b, uint64_t until_ms);
/* For tests only: the allocator of the log (reallocarray of n uint64_t), a weak symbol that a
 * test program may replace to make allocations fail. */
void *wj_ratelimit_realloc(void *p, size_t n);

/* Exponential backoff with full jitter: uniform in [0, min(max_ms, initial_ms * 2^attempt)],
 * drawn from rand64 (e.g. wj_rand64()). attempt 0 is the first retry. */
uint64_t wj_backoff_ms(unsigned attempt, uint64_t initial_ms, uint64_t max_ms, uint64_t rand64);
/* 64 random bits (getrandom; a xorshift generator seeded from the clock if that fails). */
uint64_t wj_rand64(void);
