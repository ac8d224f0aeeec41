/* The history ring (see history.h) and the engine's per-minute sampler. */
#include "lib/history.h"

#include <errno.h>
#include <string.h>

#include "lib/engine_int.h"
#include "lib/log.h"
#include "lib/util.h"

#define FORMAT 1

static const char *MOD = "history";

static const char *const count_names[WJ_H_COUNT] = {
	[WJ_H_SAVED] = "saved",
	[WJ_H_PARKED] = "parked",
	[WJ_H_REVIEW] = "review",
	[WJ_H_WDT] = "wdt.query",
	[WJ_H_JDY_SAVE] = "kingdee.save",
	[WJ_H_JDY_MATERIAL] = "kingdee.material",
	[WJ_H_JDY_STORE] = "kingdee.store",
	[WJ_H_JDY_LIST] = "kingdee.list",
	[WJ_H_RATE_LIMITED] = "rate_limited",
	[WJ_H_ERR_AUTH] = "auth",
	[WJ_H_ERR_TRANSIENT] = "transient",
	[WJ_H_ERR_PERMANENT] = "permanent",
	[WJ_H_ERR_UNKNOWN] = "unknown",
};

const char *wj_history_count_name(wj_hist_count_t c)
{
	return c < WJ_H_COUNT ? count_names[c] : "?";
}

uint32_t wj_history_slot(int64_t minute)
{
	int64_t s = minute % WJ_HISTORY_SLOTS;
	return (uint32_t)(s < 0 ? s + WJ_HISTORY_SLOTS : s);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t wj_history_encode(const wj_hist_minute_t *m, uint8_t *buf)
{
	uint8_t *p = buf;
	wj_key_u64be(p, (uint64_t)m->minute);
	p[8] = FORMAT;
	p[9] = WJ_H_COUNT;
	p += 10;
	for (int i = 0; i < WJ_H_COUNT; i++, p += 4)
		put32(p, m->n[i]);
	unsigned nf = m->n_flows < WJ_HISTORY_FLOWS ? m->n_flows : WJ_HISTORY_FLOWS;
	*p++ = (uint8_t)nf;
	for (unsigned i = 0; i < nf; i++) {
		size_t l = strnlen(m->flows[i].name, WJ_HISTORY_NAME_MAX);
		*p++ = (uint8_t)l;
		memcpy(p, m->flows[i].name, l);
		p += l;
		put32(p, m->flows[i].lag);
		p += 4;
	}
	return (size_t)(p - buf);
}

int wj_history_decode(const void *data, size_t len, wj_hist_minute_t *out)
{
	const uint8_t *p = data, *end = p + len;
	memset(out, 0, sizeof(*out));
	if (len < 10 || p[8] != FORMAT)
		return -EINVAL;
	out->minute = (int64_t)wj_u64be_get(p);
	unsigned n = p[9];
	p += 10;
	if ((size_t)(end - p) < 4u * n + 1)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++, p += 4)
		if (i < WJ_H_COUNT)
			out->n[i] = get32(p);
	unsigned nf = *p++;
	for (unsigned i = 0; i < nf; i++) {
		if (end - p < 1 || end - p < 1 + p[0] + 4 || p[0] > WJ_HISTORY_NAME_MAX)
			return -EINVAL;
		size_t l = *p++;
		if (i < WJ_HISTORY_FLOWS) {
			memcpy(out->flows[i].name, p, l);
			out->flows[i].name[l] = '\0';
			out->flows[i].lag = get32(p + l);
			out->n_flows = i + 1;
		}
		p += l + 4;
	}
	return 0;
}

static int slot_get(wj_txn_t *t, int64_t minute, wj_hist_minute_t *out)
{
	uint8_t key[4];
	wj_val_t v;
	put32(key, wj_history_slot(minute));
	int r = wj_txn_get(t, WJ_DB_HISTORY, key, sizeof(key), &v);
	if (r == 0 && (wj_history_decode(v.data, v.len, out) < 0 || out->minute != minute))
		r = -ENOENT; /* damaged, or an earlier lap's minute: empty */
	if (r < 0) {
		memset(out, 0, sizeof(*out));
		out->minute = minute;
	}
	return r;
}

int wj_history_get(wj_txn_t *t, int64_t minute, wj_hist_minute_t *out)
{
	return slot_get(t, minute, out);
}

int wj_history_add(wj_txn_t *t, const wj_hist_minute_t *m)
{
	wj_hist_minute_t cur;
	int r = slot_get(t, m->minute, &cur);
	if (r < 0 && r != -ENOENT)
		return r;
	for (int i = 0; i < WJ_H_COUNT; i++)
		cur.n[i] = m->n[i] > UINT32_MAX - cur.n[i] ? UINT32_MAX : cur.n[i] + m->n[i];
	cur.n_flows = m->n_flows < WJ_HISTORY_FLOWS ? m->n_flows : WJ_HISTORY_FLOWS;
	memcpy(cur.flows, m->flows, cur.n_flows * sizeof(cur.flows[0]));
	uint8_t key[4], val[WJ_HISTORY_VAL_MAX];
	put32(key, wj_history_slot(m->minute));
	wj_txn_put(t, WJ_DB_HISTORY, key, sizeof(key), val, wj_history_encode(&cur, val));
	return t->err;
}

uint32_t wj_history_lag(const wj_hist_minute_t *m, const char *flow)
{
	for (unsigned i = 0; i < m->n_flows; i++)
		if (!strncmp(m->flows[i].name, flow, WJ_HISTORY_NAME_MAX))
			return m->flows[i].lag;
	return WJ_HISTORY_LAG_UNKNOWN;
}

/* ---- the engine's sampler ---------------------------------------------------------------- */

/* The engine's lifetime counts now: calls by endpoint and outcome from this process, bills
 * saved from the store's counter, the dead and review lists' sizes. */
static void sample(wj_engine_t *e, uint64_t c[WJ_H_COUNT])
{
	static const int jdy_ep[4] = {EP_JDY_SAVE, EP_JDY_MATERIAL, EP_JDY_STORE, EP_JDY_LIST};
	static const int err_oc[4] = {OC_AUTH, OC_TRANSIENT, OC_PERMANENT, OC_UNKNOWN};
	memset(c, 0, WJ_H_COUNT * sizeof(c[0]));
	for (int oc = 0; oc < OC_COUNT; oc++)
		c[WJ_H_WDT] += e->calls[EP_WDT_QUERY][oc];
	for (int i = 0; i < 4; i++)
		for (int oc = 0; oc < OC_COUNT; oc++)
			c[WJ_H_JDY_SAVE + i] += e->calls[jdy_ep[i]][oc];
	for (int ep = 0; ep < EP_COUNT; ep++) {
		c[WJ_H_RATE_LIMITED] += e->calls[ep][OC_RATE_LIMITED];
		for (int i = 0; i < 4; i++)
			c[WJ_H_ERR_AUTH + i] += e->calls[ep][err_oc[i]];
	}
	wj_txn_t t;
	wj_val_t v;
	if (wj_txn_begin(e->store, &t, false) < 0)
		return;
	if (wj_txn_get(&t, WJ_DB_META, "stat:saved", 10, &v) == 0 && v.len == 8)
		c[WJ_H_SAVED] = wj_u64be_get(v.data);
	size_t dead = 0, review = 0;
	wj_txn_count(&t, WJ_DB_DEAD, &dead);
	wj_txn_count(&t, WJ_DB_REVIEW, &review);
	c[WJ_H_PARKED] = dead;
	c[WJ_H_REVIEW] = review;
	wj_txn_abort(&t);
}

static int add_fn(wj_txn_t *t, void *arg)
{
	return wj_history_add(t, arg);
}

void wj_history_tick(wj_engine_t *e, bool final)
{
	wj_hist_sampler_t *s = &e->hist;
	int64_t minute = wj_now() / 60;
	if (s->started && minute == s->minute && !final)
		return;
	uint64_t c[WJ_H_COUNT];
	sample(e, c);
	if (!s->started) { /* the baseline: what happened before this process is not news */
		s->started = true;
		s->minute = minute;
		memcpy(s->base, c, sizeof(c));
		return;
	}
	wj_hist_minute_t m = {.minute = s->minute};
	for (int i = 0; i < WJ_H_COUNT; i++) {
		/* the lists shrink when the operator retries or drops: growth only */
		uint64_t d = c[i] > s->base[i] ? c[i] - s->base[i] : 0;
		m.n[i] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
	}
	for (size_t i = 0; i < e->n_pollers && m.n_flows < WJ_HISTORY_FLOWS; i++) {
		wj_hist_flow_t *f = &m.flows[m.n_flows++];
		snprintf(f->name, sizeof(f->name), "%s", poller_name(e->pollers[i]));
		int64_t lag = poller_lag(e->pollers[i]);
		f->lag = lag < 0 ? WJ_HISTORY_LAG_UNKNOWN
		       : lag >= (int64_t)WJ_HISTORY_LAG_UNKNOWN ? WJ_HISTORY_LAG_UNKNOWN - 1
							    : (uint32_t)lag;
	}
	/* A failed write loses one minute of history, nothing else: the next minute counts on. */
	if (wj_engine_write(e, add_fn, &m) < 0)
		wj_debug(MOD, NULL, "minute not recorded");
	memcpy(s->base, c, sizeof(c));
	s->minute = minute;
}
