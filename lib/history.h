/* The history ring: per-minute counts of the last 14 days in the store (database "history").
 *
 * One slot per minute, WJ_HISTORY_SLOTS of them; minute M (epoch seconds / 60) lives in slot
 * M mod WJ_HISTORY_SLOTS. Key: the slot index, u32 big-endian (4 bytes). Value (big-endian):
 *   u64 minute | u8 format (1) | u8 n | n × u32 counts (enum wj_hist_count order) |
 *   u8 flows | per flow: u8 name length, name bytes, u32 lag seconds (0xffffffff: unknown),
 *   u8 k, k × u32 counts of the flow (enum wj_hist_flow_count order)
 * A slot whose minute is not the one asked for is from an earlier lap: it counts as empty and
 * is replaced when its minute comes. So the ring never holds more than WJ_HISTORY_SLOTS
 * entries of at most WJ_HISTORY_VAL_MAX bytes, however long the daemon runs. A reader
 * ignores counts past the ones it knows (a later format may add some at the end). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/store.h"

#define WJ_HISTORY_DAYS 14
#define WJ_HISTORY_SLOTS (WJ_HISTORY_DAYS * 24 * 60)
#define WJ_HISTORY_FLOWS 16      /* flows kept per minute; more are left out */
#define WJ_HISTORY_NAME_MAX 64   /* a flow name's bytes kept */
#define WJ_HISTORY_LAG_UNKNOWN UINT32_MAX

/* What is counted per minute. */
typedef enum wj_hist_count {
	WJ_H_SAVED,        /* bills saved */
	WJ_H_PARKED,       /* orders parked as dead letters */
	WJ_H_REVIEW,       /* orders put up for review */
	WJ_H_WDT,          /* WDT calls */
	WJ_H_JDY_SAVE,     /* Kingdee calls by endpoint: save, material, store, list */
	WJ_H_JDY_MATERIAL,
	WJ_H_JDY_STORE,
	WJ_H_JDY_LIST,
	WJ_H_RATE_LIMITED, /* answers that said "too many calls", both services */
	WJ_H_ERR_AUTH,     /* failed calls by kind, both services */
	WJ_H_ERR_TRANSIENT,
	WJ_H_ERR_PERMANENT,
	WJ_H_ERR_UNKNOWN,
	WJ_H_COUNT
} wj_hist_count_t;

/* What is counted per minute and flow: the first three counts, of that flow's orders. */
typedef enum wj_hist_flow_count { WJ_HF_SAVED, WJ_HF_PARKED, WJ_HF_REVIEW, WJ_HF_COUNT } wj_hist_flow_count_t;

#define WJ_HISTORY_VAL_MAX \
	(10 + 4 * WJ_H_COUNT + 1 + WJ_HISTORY_FLOWS * (1 + WJ_HISTORY_NAME_MAX + 4 + 1 + 4 * WJ_HF_COUNT))

typedef struct wj_hist_flow {
	char name[WJ_HISTORY_NAME_MAX + 1];
	uint32_t lag; /* seconds behind now at the end of the minute, or WJ_HISTORY_LAG_UNKNOWN */
	uint32_t n[WJ_HF_COUNT];
} wj_hist_flow_t;

typedef struct wj_hist_minute {
	int64_t minute; /* epoch seconds / 60 */
	uint32_t n[WJ_H_COUNT];
	unsigned n_flows;
	wj_hist_flow_t flows[WJ_HISTORY_FLOWS];
} wj_hist_minute_t;

/* Short names of the counts ("saved", "parked", ...), for output. */
const char *wj_history_count_name(wj_hist_count_t c);

/* The slot of a minute. */
uint32_t wj_history_slot(int64_t minute);

/* Value of m into buf (WJ_HISTORY_VAL_MAX bytes); returns its length. */
size_t wj_history_encode(const wj_hist_minute_t *m, uint8_t *buf);
/* Parse a value. 0 or -EINVAL (too short, unknown format). */
int wj_history_decode(const void *data, size_t len, wj_hist_minute_t *out);

/* Add m to the ring in a write transaction: when its slot holds the same minute the counts
 * are added (a flow's by its name) and the lags replaced (a restart within a minute), else
 * the slot is replaced.
 * 0 or -errno (kept in t->err). */
int wj_history_add(wj_txn_t *t, const wj_hist_minute_t *m);
/* The counts of minute, zeroed with 0 flows when its slot is empty or from another lap. 0 when
 * found, -ENOENT when empty, other errors -errno. */
int wj_history_get(wj_txn_t *t, int64_t minute, wj_hist_minute_t *out);
/* The flow's entry in m, NULL when m has none. */
const wj_hist_flow_t *wj_history_flow(const wj_hist_minute_t *m, const char *flow);
/* Lag of the flow in m, or WJ_HISTORY_LAG_UNKNOWN. */
uint32_t wj_history_lag(const wj_hist_minute_t *m, const char *flow);

/* Count one order's event (WJ_H_SAVED, WJ_H_PARKED or WJ_H_REVIEW) in the state's lifetime
 * counters, in the transaction that records it: meta "stat:NAME" and "stat:NAME/FLOW"
 * (NAME: wj_history_count_name). The sampler's minutes are differences of these. */
void wj_history_note(wj_txn_t *t, wj_hist_count_t what, const char *flow);
/* Add n to the u64 BE counter under meta key (0 when absent). */
void wj_stat_add(wj_txn_t *t, const char *key, uint64_t n);
/* The u64 BE counter under meta key, 0 when absent or unreadable. */
uint64_t wj_stat_get(wj_txn_t *t, const char *key);

/* ---- the engine's sampler ---- */

/* Lifetime counts the engine has now; deltas of these make a minute. */
typedef struct wj_hist_sampler {
	bool started;
	int64_t minute;             /* the minute being counted */
	uint64_t base[WJ_H_COUNT];  /* the counts when it began */
	/* the same per flow, by name (a reload may change the flows) */
	char fname[WJ_HISTORY_FLOWS][WJ_HISTORY_NAME_MAX + 1];
	uint64_t fbase[WJ_HISTORY_FLOWS][WJ_HF_COUNT];
} wj_hist_sampler_t;

struct wj_engine;
/* Called from the housekeeping tick: when a minute has ended, write its counts (one small
 * transaction). The first call only takes the counts as a baseline, so a restart shows no
 * spike. final: the engine stops, write the minute so far. */
void wj_history_tick(struct wj_engine *e, bool final);
