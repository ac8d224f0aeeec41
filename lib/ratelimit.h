/* Rate limiting and retry backoff. Pure: the caller passes the clock (monotonic ms, e.g.
 * wj_mono_ms()) and the random value, so everything is deterministic under test.
 *
 * Token bucket: at most `count` takes in any period of `period_ms`, whatever the pattern of
 * requests. It holds up to `burst` tokens and refills at (count - burst + 1) per period, so a
 * full burst plus the refill inside one period never exceeds the quota. The default burst,
 * count/20 (at least 1), keeps the sustained rate at ≥ 95 % of the quota while still spreading
 * a period's requests over the period. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/config.h"

typedef struct wj_tbucket {
	wj_rate_t rate;
	unsigned burst;
	uint64_t refill;          /* tokens per period */
	uint64_t tokens;          /* in 1/period_ms of a token */
	uint64_t last_ms;         /* time tokens were last brought up to date */
	uint64_t pause_until_ms;  /* no takes before this time */
	bool started;             /* false until the first take: the bucket starts full */
} wj_tbucket_t;

/* burst 0 → default. burst is capped to count. 0 or -EINVAL (count or period_ms 0). */
int wj_tbucket_init(wj_tbucket_t *b, wj_rate_t rate, unsigned burst);
/* Take a token: 0 when taken, else the ms to wait before asking again (≥ 1). */
uint64_t wj_tbucket_take(wj_tbucket_t *b, uint64_t now_ms);
/* The ms until a take would succeed (0: now), without taking. */
uint64_t wj_tbucket_wait(const wj_tbucket_t *b, uint64_t now_ms);
/* New rate (config reload); tokens held are kept, up to the new burst. 0 or -EINVAL. */
int wj_tbucket_set_rate(wj_tbucket_t *b, wj_rate_t rate, unsigned burst);
/* Pause the endpoint (HTTP 429, Retry-After, WDT code 1012) until until_ms; a later pause
 * extends, an earlier one does not shorten. Tokens do not accrue during the pause and at most
 * one is left, so traffic resumes with a single probe, then at the normal rate. */
void wj_tbucket_pause_until(wj_tbucket_t *b, uint64_t until_ms);

/* Exponential backoff with full jitter: uniform in [0, min(max_ms, initial_ms * 2^attempt)],
 * drawn from rand64 (e.g. wj_rand64()). attempt 0 is the first retry. */
uint64_t wj_backoff_ms(unsigned attempt, uint64_t initial_ms, uint64_t max_ms, uint64_t rand64);
/* 64 random bits (getrandom; a xorshift generator seeded from the clock if that fails). */
uint64_t wj_rand64(void);
