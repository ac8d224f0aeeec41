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
		*p++ = WJ_HF_COUNT;
		for (int k = 0; k < WJ_HF_COUNT; k++, p += 4)
			put32(p, m->flows[i].n[k]);
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
		if (end - p < 1 || end - p < 1 + p[0] + 4 + 1 || p[0] > WJ_HISTORY_NAME_MAX)
			return -EINVAL;
		size_t l = *p++;
		const uint8_t *name = p, *counts = p + l + 5;
		unsigned k = p[l + 4];
		if ((size_t)(end - counts) < 4u * k)
			return -EINVAL;
		if (i < WJ_HISTORY_FLOWS) {
			wj_hist_flow_t *f = &out->flows[i];
			memcpy(f->name, name, l);
			f->name[l] = '\0';
			f->lag = get32(name + l);
			for (unsigned c = 0; c < k && c < WJ_HF_COUNT; c++)
				f->n[c] = get32(counts + 4 * c);
			out->n_flows = i + 1;
		}
		p = counts + 4 * k;
	}
	return 0;
}

static uint32_t sat_add(uint32_t a, uint32_t b)
{
	return b > UINT32_MAX - a ? UINT32_MAX : a + b;
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
		cur.n[i] = sat_add(cur.n[i], m->n[i]);
	for (unsigned i = 0; i < m->n_flows && i < WJ_HISTORY_FLOWS; i++) {
		const wj_hist_flow_t *f = &m->flows[i];
		wj_hist_flow_t *c = (wj_hist_flow_t *)wj_history_flow(&cur, f->name);
		if (!c) {
			if (cur.n_flows >= WJ_HISTORY_FLOWS)
				continue;
			c = &cur.flows[cur.n_flows++];
			memset(c, 0, sizeof(*c));
			snprintf(c->name, sizeof(c->name), "%s", f->name);
		}
		c->lag = f->lag;
		for (int k = 0; k < WJ_HF_COUNT; k++)
			c->n[k] = sat_add(c->n[k], f->n[k]);
	}
	uint8_t key[4], val[WJ_HISTORY_VAL_MAX];
	put32(key, wj_history_slot(m->minute));
	wj_txn_put(t, WJ_DB_HISTORY, key, sizeof(key), val, wj_history_encode(&cur, val));
	return t->err;
}

const wj_hist_flow_t *wj_history_flow(const wj_hist_minute_t *m, const char *flow)
{
	for (unsigned i = 0; i < m->n_flows; i++)
		if (!strncmp(m->flows[i].name, flow, WJ_HISTORY_NAME_MAX))
			return &m->flows[i];
	return NULL;
}

uint32_t wj_history_lag(const wj_hist_minute_t *m, const char *flow)
{
	const wj_hist_flow_t *f = wj_history_flow(m, flow);
	return f ? f->lag : WJ_HISTORY_LAG_UNKNOWN;
}

uint64_t wj_stat_get(wj_txn_t *t, const char *key)
{
	wj_val_t v;
	if (wj_txn_get(t, WJ_DB_META, key, strlen(key), &v) < 0 || v.len != 8)
		return 0;
	return wj_u64be_get(v.data);
}

void wj_stat_add(wj_txn_t *t, const char *key, uint64_t n)
{
	uint8_t b[8];
	wj_key_u64be(b, wj_stat_get(t, key) + n);
	wj_txn_put(t, WJ_DB_META, key, strlen(key), b, 8);
}

/* meta key of a lifetime counter: "stat:NAME", or "stat:NAME/FLOW" */
static void stat_key(char *buf, size_t size, wj_hist_count_t what, const char *flow)
{
	snprintf(buf, size, "stat:%s%s%.*s", count_names[what], flow ? "/" : "",
		 WJ_HISTORY_NAME_MAX, flow ? flow : "");
}

void wj_history_note(wj_txn_t *t, wj_hist_count_t what, const char *flow)
{
	char key[100];
	stat_key(key, sizeof(key), what, NULL);
	wj_stat_add(t, key, 1);
	if (flow) {
		stat_key(key, sizeof(key), what, flow);
		wj_stat_add(t, key, 1);
	}
}

static uint64_t stat_get(wj_txn_t *t, wj_hist_count_t what, const char *flow)
{
	char key[100];
	stat_key(key, sizeof(key), what, flow);
	return wj_stat_get(t, key);
}

/* ---- the engine's sampler ---------------------------------------------------------------- */

/* The engine's lifetime counts now: calls by endpoint and outcome from this process, bills
 * saved, parked and put up for review from the state's counters (all flows, and per flow of
 * e->pollers into f). */
static void sample(wj_engine_t *e, uint64_t c[WJ_H_COUNT], uint64_t f[][WJ_HF_COUNT])
{
	static const int jdy_ep[4] = {EP_JDY_SAVE, EP_JDY_MATERIAL, EP_JDY_STORE, EP_JDY_LIST};
	static const int err_oc[4] = {OC_AUTH, OC_TRANSIENT, OC_PERMANENT, OC_UNKNOWN};
	static const wj_hist_count_t orders[WJ_HF_COUNT] = {
		[WJ_HF_SAVED] = WJ_H_SAVED, [WJ_HF_PARKED] = WJ_H_PARKED, [WJ_HF_REVIEW] = WJ_H_REVIEW};
	memset(c, 0, WJ_H_COUNT * sizeof(c[0]));
	memset(f, 0, WJ_HISTORY_FLOWS * sizeof(f[0]));
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
	if (wj_txn_begin(e->store, &t, false) < 0)
		return;
	for (int k = 0; k < WJ_HF_COUNT; k++) {
		c[orders[k]] = stat_get(&t, orders[k], NULL);
		for (size_t i = 0; i < e->n_pollers && i < WJ_HISTORY_FLOWS; i++)
			f[i][k] = stat_get(&t, orders[k], poller_name(e->pollers[i]));
	}
	wj_txn_abort(&t);
}

static uint32_t delta(uint64_t now, uint64_t base)
{
	uint64_t d = now > base ? now - base : 0;
	return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
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
	uint64_t c[WJ_H_COUNT], f[WJ_HISTORY_FLOWS][WJ_HF_COUNT];
	sample(e, c, f);
	size_t nf = e->n_pollers < WJ_HISTORY_FLOWS ? e->n_pollers : WJ_HISTORY_FLOWS;
	wj_hist_minute_t m = {.minute = s->minute};
	for (int i = 0; i < WJ_H_COUNT; i++)
		m.n[i] = delta(c[i], s->base[i]);
	for (size_t i = 0; i < nf; i++) {
		wj_hist_flow_t *hf = &m.flows[m.n_flows++];
		snprintf(hf->name, sizeof(hf->name), "%s", poller_name(e->pollers[i]));
		/* a flow new since the last minute (start, reload) has no baseline yet: 0 */
		for (size_t j = 0; j < WJ_HISTORY_FLOWS; j++)
			if (!strcmp(s->fname[j], hf->name))
				for (int k = 0; k < WJ_HF_COUNT; k++)
					hf->n[k] = delta(f[i][k], s->fbase[j][k]);
		int64_t lag = poller_lag(e->pollers[i]);
		hf->lag = lag < 0 ? WJ_HISTORY_LAG_UNKNOWN
			: lag >= (int64_t)WJ_HISTORY_LAG_UNKNOWN ? WJ_HISTORY_LAG_UNKNOWN - 1
								 : (uint32_t)lag;
	}
	/* The first call only takes the baseline: what happened before this process is not
	 * news. A failed write loses one minute of history, nothing else. */
	if (s->started && wj_engine_write(e, add_fn, &m) < 0)
		wj_debug(MOD, NULL, "minute not recorded");
	s->started = true;
	s->minute = minute;
	memcpy(s->base, c, sizeof(c));
	memset(s->fname, 0, sizeof(s->fname));
	for (size_t i = 0; i < nf; i++) {
		memcpy(s->fname[i], m.flows[i].name, sizeof(s->fname[i]));
		memcpy(s->fbase[i], f[i], sizeof(f[i]));
	}
}
