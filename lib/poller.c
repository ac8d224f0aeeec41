/* Poller: one per flow. Reads WDT in time windows on the orders' modified time, stores every
 * eligible order of a page in the queue as the page arrives (keyed by id and content hash, so
 * reading it again stores nothing twice), and moves the flow's cursor only once the whole
 * window has been read consistently. Pages are parsed, hashed and serialised on the loop's
 * thread pool.
 *
 * Window: [cursor - overlap, min(cursor + window, now - lag)], both ends inclusive, at most 30
 * days. Page 0 gives total_count; a window holding more records than the split threshold (or than
 * the room left in the queue) is halved before anything is read past page 0. If the count or the
 * set of ids changes while paging, the window is read again. */
#include "lib/engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"

#define MAX_SPAN_S (30 * 86400 - 1)
#define MAX_REREADS 3

/* One record of a window, reduced on arrival to what storing it needs: holding a window as
 * parsed JSON costs several times its text. */
typedef enum { REC_OK, REC_NO_ID, REC_FILTERED } rec_kind_t;
typedef struct prec {
	rec_kind_t kind;
	char key[WJ_DOC_KEY_MAX];
	size_t kl;
	char no[128];
	char hex[65];
	char *text; /* canonical JSON of the order (REC_OK) */
	size_t tlen;
	char *slim; /* mapping id + the projection for the flow's mapping (REC_OK; may be NULL) */
	size_t slen;
} prec_t;

struct poller {
	wj_engine_t *e;
	const wj_flow_cfg_t *flow;
	char name[72];
	char fields[128]; /* "flow=NAME" for log lines */
	uv_timer_t timer;
	int64_t origin;   /* where the flow started (for backfill progress) */
	int64_t cursor;   /* end of the last window fully stored */
	/* backfill job (from `wdt2jdyctl backfill`), run when the live cursor has caught up */
	bool bf_active, bf_mode;
	int64_t bf_from, bf_to, bf_cursor;
	/* window in progress */
	bool busy, querying, orphan, stopped, paused, timer_closed;
	bool store_paused; /* the store refused a window for lack of space */
	int64_t w_start, w_end;
	unsigned page, rereads, failures;
	int64_t total;
	prec_t *recs;     /* records of the window read so far (text freed once stored) */
	size_t n_recs, cap_recs, n_stored;
	uint64_t w_new, w_unchanged, w_changed; /* this window, for its log line */
	int64_t span;     /* live window length past the cursor that fitted last time (s; 0: window) */
	int64_t read_at;  /* wall time the current read of the window began (its page 0) */
	int64_t cursor_read_at; /* read_at of the window that ended at the cursor (0: unknown) */
	bool w_split;     /* this window was split while reading it */
	int64_t w_from;   /* the cursor when the window started */
	uint64_t window_started;
	/* counters */
	uint64_t windows, splits, rereads_total, stored, unchanged, changed, ignored;
	char last_error[300];
	char last_window[64];
};

static void schedule(poller_t *p, uint64_t ms);
static void fetch_page(void *arg);
static void poller_release(poller_t *p);

const char *poller_name(const poller_t *p)
{
	return p->name;
}

bool poller_busy(const poller_t *p)
{
	return p->querying;
}

/* ---- cursor persistence ---------------------------------------------------------------- */

static int load_cursor(poller_t *p)
{
	wj_txn_t t;
	wj_val_t v;
	p->cursor = p->flow->cursor_start;
	p->origin = p->flow->cursor_start;
	if (wj_txn_begin(p->e->store, &t, false) < 0)
		return -EIO;
	if (wj_txn_get(&t, WJ_DB_CURSORS, p->name, strlen(p->name), &v) == 0) {
		json_t *j = json_loadb(v.data, v.len, 0, NULL);
		json_t *c = json_object_get(j, "cursor"), *o = json_object_get(j, "origin");
		p->cursor_read_at = json_integer_value(json_object_get(j, "read_at"));
		if (json_is_integer(c))
			p->cursor = json_integer_value(c);
		if (json_is_integer(o))
			p->origin = json_integer_value(o);
		json_decref(j);
	}
	wj_txn_abort(&t);
	return 0;
}

/* The backfill job of a flow lives in the cursors database under "FLOW\0backfill". */
static size_t backfill_key(const poller_t *p, char *buf)
{
	return wj_doc_key(buf, p->name, "backfill");
}

static void load_backfill(poller_t *p)
{
	wj_txn_t t;
	wj_val_t v;
	char key[WJ_DOC_KEY_MAX];
	size_t kl = backfill_key(p, key);
	p->bf_active = false;
	if (wj_txn_begin(p->e->store, &t, false) < 0)
		return;
	if (wj_txn_get(&t, WJ_DB_CURSORS, key, kl, &v) == 0) {
		json_t *j = json_loadb(v.data, v.len, 0, NULL);
		p->bf_from = json_integer_value(json_object_get(j, "from"));
		p->bf_to = json_integer_value(json_object_get(j, "to"));
		p->bf_cursor = json_integer_value(json_object_get(j, "cursor"));
		p->bf_active = j && p->bf_cursor < p->bf_to;
		json_decref(j);
	}
	wj_txn_abort(&t);
}

/* ---- storing a window ------------------------------------------------------------------ */

typedef struct store_ctx {
	poller_t *p;
	int prio;
	uint64_t n_new, n_unchanged, n_changed, n_ignored;
} store_ctx_t;

static bool param_matches(const wj_flow_cfg_t *f, const char *key, const json_t *order)
{
	for (size_t i = 0; i < f->n_params; i++) {
		if (strcmp(f->params[i].key, key))
			continue;
		char v[64];
		if (wj_json_text(json_object_get(order, key), v, sizeof(v)) < 0)
			return false;
		return !strcmp(v, f->params[i].value);
	}
	return true;
}

/* Free the texts of records v[0..n) (they stay as keys for the consistency check). */
static void recs_release(prec_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].text);
		free(v[i].slim);
		v[i].text = v[i].slim = NULL;
	}
}

static void recs_clear(poller_t *p)
{
	recs_release(p->recs, p->n_recs);
	free(p->recs);
	p->recs = NULL;
	p->n_recs = p->cap_recs = p->n_stored = 0;
}

/* The "slim" record of an order: the flow's mapping id, then the order reduced to the fields
 * that mapping reads, so that taking it for posting parses a fraction of the text. NULL when
 * it cannot be made (the dispatcher then reads the whole order). */
static char *slim_text(poller_t *p, const json_t *order, size_t *len)
{
	const wj_mapping_t *m = wj_engine_mapping(p->e, p->name);
	*len = 0;
	if (!m)
		return NULL;
	json_t *slim = wj_mapping_project(m, order);
	char *t = json_dumps(slim, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(slim);
	if (!t)
		return NULL;
	size_t tl = strlen(t), il = strlen(wj_mapping_id(m));
	char *out = malloc(il + tl);
	if (out) {
		memcpy(out, wj_mapping_id(m), il);
		memcpy(out + il, t, tl);
		*len = il + tl;
	}
	free(t);
	return out;
}

static void put_order(wj_txn_t *t, const prec_t *rec)
{
	wj_txn_put(t, WJ_DB_ORDERS, rec->key, rec->kl, rec->text, rec->tlen);
	if (rec->slim)
		wj_txn_put(t, WJ_DB_SLIM, rec->key, rec->kl, rec->slim, rec->slen);
	else
		wj_txn_del(t, WJ_DB_SLIM, rec->key, rec->kl);
}

/* Worker thread (wj_wdt_prep_fn): reduce each order of a page to a record. Reads only the
 * page and p->name, which never changes. res->prep: a page_recs_t, or NULL on ENOMEM. */
typedef struct page_recs {
	prec_t *v;
	size_t n;
} page_recs_t;

static void page_recs_free(page_recs_t *pr)
{
	if (!pr)
		return;
	recs_release(pr->v, pr->n);
	free(pr->v);
	free(pr);
}

static void prep_page(wj_wdt_result_t *res, void *arg)
{
	const poller_t *p = arg;
	size_t n = json_array_size(res->orders);
	page_recs_t *pr = calloc(1, sizeof(*pr));
	if (!pr || !(pr->v = calloc(n ? n : 1, sizeof(*pr->v)))) {
		free(pr);
		return;
	}
	for (size_t i = 0; i < n; i++, pr->n++) {
		const json_t *order = json_array_get(res->orders, i);
		prec_t *r = &pr->v[i];
		*r = (prec_t){.no = "?"};
		wj_json_text(json_object_get(order, "stockin_no"), r->no, sizeof(r->no));
		char id[128];
		if (!json_is_object(order) || wj_wdt_order_key(order, id, sizeof(id)) < 0) {
			r->kind = REC_NO_ID;
			continue;
		}
		uint8_t hash[32];
		r->kind = REC_OK;
		r->kl = wj_doc_key(r->key, p->name, id);
		r->text = wj_json_canon(order, &r->tlen);
		if (!r->text || wj_sha256(r->text, r->tlen, hash) < 0) {
			page_recs_free(pr);
			return;
		}
		wj_hex(hash, sizeof(hash), r->hex, false);
	}
	res->prep = pr;
}

/* Loop thread: add the records of a page to the window, with what depends on the
 * configuration (filter, mapping). Takes pr; -ENOMEM or 0. */
static int recs_add_page(poller_t *p, const json_t *orders, page_recs_t *pr)
{
	if (!pr || pr->n != json_array_size(orders)) {
		page_recs_free(pr);
		return -ENOMEM;
	}
	if (p->n_recs + pr->n > p->cap_recs) {
		size_t cap = p->cap_recs ? p->cap_recs : 128;
		while (cap < p->n_recs + pr->n)
			cap *= 2;
		prec_t *v = realloc(p->recs, cap * sizeof(*v));
		if (!v) {
			page_recs_free(pr);
			return -ENOMEM;
		}
		p->recs = v;
		p->cap_recs = cap;
	}
	for (size_t i = 0; i < pr->n; i++) {
		prec_t *r = &pr->v[i];
		const json_t *order = json_array_get(orders, i);
		if (r->kind == REC_OK && (!param_matches(p->flow, "order_type", order) ||
					  !param_matches(p->flow, "status", order))) {
			r->kind = REC_FILTERED;
			free(r->text);
			r->text = NULL;
		}
		if (r->kind == REC_OK)
			r->slim = slim_text(p, order, &r->slen);
		p->recs[p->n_recs++] = *r;
	}
	free(pr->v);
	free(pr);
	return 0;
}

/* The order of a record as JSON, for the rare paths that embed it in another record. */
static json_t *rec_order(const prec_t *r)
{
	return json_loadb(r->text, r->tlen, 0, NULL) ?: json_null();
}

static int store_order(wj_txn_t *t, store_ctx_t *c, const prec_t *rec)
{
	poller_t *p = c->p;
	if (rec->kind == REC_NO_ID) {
		char f[300] = "";
		wj_logfmt_kv(f, sizeof(f), "flow", p->name);
		wj_logfmt_kv(f, sizeof(f), "stockin_no", rec->no);
		wj_warn("poller", f, "order with no stockin_id: cannot be tracked, ignored");
		c->n_ignored++;
		return 0;
	}
	if (rec->kind == REC_FILTERED) {
		c->n_ignored++;
		return 0;
	}
	const char *key = rec->key, *no = rec->no, *hex = rec->hex;
	size_t kl = rec->kl;

	wj_val_t v;
	int r = wj_txn_get(t, WJ_DB_DOCS, key, kl, &v);
	if (r == -ENOENT) {
		uint64_t seq;
		if (wj_txn_seq_next(t, &seq) < 0)
			return t->err;
		json_t *doc = json_pack("{s:s, s:s, s:s, s:i, s:i, s:I}", "state", "queued",
					"hash", hex, "stockin_no", no, "attempts", 0, "prio",
					c->prio, "first_seen", (json_int_t)wj_now());
		wj_txn_put_json(t, WJ_DB_DOCS, key, kl, doc);
		json_decref(doc);
		put_order(t, rec);
		uint8_t qk[9];
		qk[0] = (uint8_t)c->prio;
		wj_key_u64be(qk + 1, seq);
		wj_txn_put(t, WJ_DB_QUEUE, qk, sizeof(qk), key, kl);
		c->n_new++;
		return 0;
	}
	if (r < 0)
		return r;
	json_t *doc = json_loadb(v.data, v.len, 0, NULL);
	if (!doc)
		return -EIO;
	if (!strcmp(json_string_value(json_object_get(doc, "hash")) ?: "", hex)) {
		c->n_unchanged++;
		json_decref(doc);
		return 0;
	}
	c->n_changed++;
	const char *state = json_string_value(json_object_get(doc, "state")) ?: "";
	json_object_set_new(doc, "hash", json_string(hex));
	if (!strcmp(state, "saved")) {
		/* Posted already: never a second bill; the operator reviews the change. */
		json_t *rv = json_pack("{s:s, s:s, s:O, s:O, s:I, s:o}", "flow", p->name,
				       "stockin_no", no, "bill_no",
				       json_object_get(doc, "bill_no") ?: json_null(), "bill_id",
				       json_object_get(doc, "bill_id") ?: json_null(), "seen",
				       (json_int_t)wj_now(), "order", rec_order(rec));
		wj_txn_put_json(t, WJ_DB_REVIEW, key, kl, rv);
		json_decref(rv);
		json_object_set_new(doc, "review", json_true());
		char f[256] = "";
		wj_logfmt_kv(f, sizeof(f), "flow", p->name);
		wj_logfmt_kv(f, sizeof(f), "stockin_no", no);
		wj_warn("poller", f, "order changed after its bill was posted: recorded for review");
	} else if (!strcmp(state, "inflight")) {
		/* Being posted now: keep the new content; the outcome handler sends it to review. */
		json_object_set_new(doc, "changed_order", rec_order(rec));
	} else {
		/* queued, delayed or dead: the new content is what will be posted. */
		put_order(t, rec);
		json_object_set_new(doc, "stockin_no", json_string(no));
		if (!strcmp(state, "dead")) {
			wj_val_t dv;
			if (wj_txn_get(t, WJ_DB_DEAD, key, kl, &dv) == 0) {
				json_t *dl = json_loadb(dv.data, dv.len, 0, NULL);
				if (dl) {
					json_object_set_new(dl, "order", rec_order(rec));
					json_object_set_new(dl, "changed_since", json_true());
					wj_txn_put_json(t, WJ_DB_DEAD, key, kl, dl);
					json_decref(dl);
				}
			}
		}
	}
	wj_txn_put_json(t, WJ_DB_DOCS, key, kl, doc);
	json_decref(doc);
	return t->err;
}

/* The records of the pages read since the last call: stored (queued when new or changed)
 * as each page arrives, so memory holds a page, not a window. Storing an order early is
 * harmless: it is keyed by id and content hash, so a window read again stores nothing twice.
 * Only the cursor waits for the whole window to have been read consistently. */
static int store_page_fn(wj_txn_t *t, void *arg)
{
	store_ctx_t *c = arg;
	poller_t *p = c->p;
	c->n_new = c->n_unchanged = c->n_changed = c->n_ignored = 0;
	for (size_t i = p->n_stored; i < p->n_recs; i++) {
		int r = store_order(t, c, &p->recs[i]);
		if (r < 0)
			return r;
	}
	return t->err;
}

static int store_cursor_fn(wj_txn_t *t, void *arg)
{
	poller_t *p = arg;
	if (p->bf_mode) {
		char key[WJ_DOC_KEY_MAX];
		size_t kl = backfill_key(p, key);
		json_t *bf = json_pack("{s:I, s:I, s:I, s:I}", "from", (json_int_t)p->bf_from, "to",
				       (json_int_t)p->bf_to, "cursor", (json_int_t)p->w_end,
				       "updated", (json_int_t)wj_now());
		wj_txn_put_json(t, WJ_DB_CURSORS, key, kl, bf);
		json_decref(bf);
		return t->err;
	}
	json_t *cur = json_pack("{s:I, s:I, s:I, s:I}", "cursor", (json_int_t)p->w_end, "origin",
				(json_int_t)p->origin, "updated", (json_int_t)wj_now(), "read_at",
				(json_int_t)p->read_at);
	wj_txn_put_json(t, WJ_DB_CURSORS, p->name, strlen(p->name), cur);
	json_decref(cur);
	return t->err;
}

static bool is_live(const poller_t *p)
{
	/* A window ending within one window length of "now - lag" is live; older ones are backfill. */
	int64_t limit = wj_now() - (int64_t)(p->flow->lag_ms / 1000);
	return p->w_end + (int64_t)(p->flow->window_ms / 1000) >= limit;
}

static int store_page(poller_t *p)
{
	store_ctx_t c = {.p = p, .prio = is_live(p) && !p->bf_mode ? p->flow->priority
								  : p->flow->backfill_priority};
	int r = wj_engine_write(p->e, store_page_fn, &c);
	if (r < 0)
		return r;
	recs_release(p->recs + p->n_stored, p->n_recs - p->n_stored);
	p->n_stored = p->n_recs;
	p->w_new += c.n_new;
	p->w_unchanged += c.n_unchanged;
	p->w_changed += c.n_changed;
	p->stored += c.n_new;
	p->unchanged += c.n_unchanged;
	p->changed += c.n_changed;
	p->ignored += c.n_ignored;
	if (c.n_new)
		dispatcher_pump(p->e->disp);
	return 0;
}

static unsigned split_threshold(poller_t *p);

static void window_done(poller_t *p)
{
	int r = wj_engine_write(p->e, store_cursor_fn, p);
	recs_clear(p);
	p->busy = false;
	if (r < 0) {
		/* The cursor did not move: the window is read again later. */
		snprintf(p->last_error, sizeof(p->last_error), "cannot store window: %s", strerror(-r));
		schedule(p, 5000);
		return;
	}
	if (p->store_paused) {
		wj_info("poller", p->fields, "state store writable again: polling resumed");
		p->store_paused = false;
	}
	if (p->bf_mode) {
		p->bf_cursor = p->w_end;
		if (p->bf_cursor >= p->bf_to) {
			p->bf_active = false;
			wj_info("poller", p->fields, "backfill finished");
		}
	} else {
		/* Next span: what fitted after a split; doubled again while windows come back
		 * less than half full, up to the configured window. */
		int64_t used = p->w_end - p->w_from, full = (int64_t)(p->flow->window_ms / 1000);
		if (p->w_split && used > 0)
			p->span = used;
		else if (p->span > 0 && p->total * 2 < (int64_t)split_threshold(p))
			p->span = 2 * p->span < full ? 2 * p->span : 0;
		p->cursor = p->w_end;
	}
	p->windows++;
	p->failures = 0;
	char a[WJ_TIME_LEN], b[WJ_TIME_LEN];
	wj_time_format(p->w_start, p->e->cfg->tz_offset, a);
	wj_time_format(p->w_end, p->e->cfg->tz_offset, b);
	snprintf(p->last_window, sizeof(p->last_window), "%s..%s", a, b);
	char f[512];
	snprintf(f, sizeof(f), "%s window_start=\"%s\" window_end=\"%s\" total=%lld new=%llu "
		 "unchanged=%llu changed=%llu ms=%llu",
		 p->fields, a, b, (long long)p->total, (unsigned long long)p->w_new,
		 (unsigned long long)p->w_unchanged, (unsigned long long)p->w_changed,
		 (unsigned long long)(wj_mono_ms() - p->window_started));
	if (p->w_new || p->w_changed)
		wj_info("poller", f, "window stored");
	else
		wj_debug("poller", f, "window stored");
	schedule(p, 0);
}

/* ---- paging ------------------------------------------------------------------------------ */

static unsigned split_threshold(poller_t *p)
{
	size_t cap = p->e->cfg->queue.capacity, depth = wj_engine_depth(p->e);
	size_t room = depth < cap ? cap - depth : 0;
	size_t th = p->flow->split_threshold;
	return (unsigned)(room < th ? (room ? room : 1) : th);
}

static int key_cmp(const void *a, const void *b)
{
	const prec_t *x = *(prec_t *const *)a, *y = *(prec_t *const *)b;
	size_t n = x->kl < y->kl ? x->kl : y->kl;
	int c = memcmp(x->key, y->key, n);
	return c ? c : (x->kl > y->kl) - (x->kl < y->kl);
}

/* Distinct stockin ids among the records read (records without one are not counted). */
static size_t distinct_ids(poller_t *p)
{
	prec_t **v = malloc((p->n_recs ? p->n_recs : 1) * sizeof(*v));
	if (!v)
		return 0; /* read again: never store on a count we could not check */
	size_t n = 0, d = 0;
	for (size_t i = 0; i < p->n_recs; i++)
		if (p->recs[i].kind != REC_NO_ID)
			v[n++] = &p->recs[i];
	qsort(v, n, sizeof(*v), key_cmp);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || key_cmp(&v[i - 1], &v[i]))
			d++;
	free(v);
	return d;
}

static void restart_window(poller_t *p)
{
	p->read_at = wj_now();
	recs_clear(p);
	p->page = 0;
	p->total = -1;
	gate_enter(&p->e->wdt_gate, fetch_page, p);
}

static void retry_later(poller_t *p, uint64_t ms, const char *why)
{
	p->failures++;
	char f[512];
	snprintf(f, sizeof(f), "%s page=%u attempt=%u retry_ms=%llu", p->fields, p->page,
		 p->failures, (unsigned long long)ms);
	wj_warn("poller", f, "%s", why);
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	wj_engine_set_error(p->e, "flow %s: %s", p->name, why);
	recs_clear(p);
	p->busy = false;
	schedule(p, ms);
}

static void on_page(wj_wdt_result_t *res, void *arg)
{
	poller_t *p = arg;
	page_recs_t *pr = res->prep; /* ours from here on */
	res->prep = NULL;
	p->querying = false;
	if (p->orphan) {
		page_recs_free(pr);
		poller_release(p);
		return;
	}
	if (res->cls != WJ_WDT_OK || p->stopped) {
		page_recs_free(pr);
		pr = NULL;
	}
	int oc = res->cls == WJ_WDT_OK ? OC_OK : res->cls == WJ_WDT_RATE_LIMITED ? OC_RATE_LIMITED
		 : res->cls == WJ_WDT_AUTH ? OC_AUTH : res->cls == WJ_WDT_TRANSIENT ? OC_TRANSIENT
		 : OC_PERMANENT;
	wj_engine_count(p->e, EP_WDT_QUERY, oc);
	if (p->stopped) {
		recs_clear(p);
		p->busy = false;
		return;
	}
	const wj_config_t *cfg = p->e->cfg;
	switch (res->cls) {
	case WJ_WDT_OK:
		break;
	case WJ_WDT_RATE_LIMITED: {
		int64_t ms = res->retry_after_ms > 30000 ? res->retry_after_ms : 30000;
		gate_pause(&p->e->wdt_gate, ms);
		retry_later(p, (uint64_t)ms, res->error);
		return;
	}
	case WJ_WDT_AUTH:
		retry_later(p, 60000 * (p->failures < 10 ? p->failures + 1 : 10), res->error);
		return;
	case WJ_WDT_PERMANENT:
		retry_later(p, 300000, res->error);
		return;
	case WJ_WDT_TRANSIENT:
	default:
		retry_later(p, wj_backoff_ms(p->failures, cfg->queue.backoff_initial_ms,
					     cfg->queue.backoff_max_ms, wj_rand64()) + 100,
			    res->error);
		return;
	}
	if (p->page == 0) {
		p->total = res->total_count;
		unsigned th = split_threshold(p);
		int64_t base = p->bf_mode ? p->bf_cursor : p->cursor;
		if (p->total > (int64_t)th && p->w_end > p->w_start) {
			/* Split only while the window still ends past the cursor; the overlap behind
			 * it is never dropped (a dense overlap is paged through instead). */
			int64_t mid = p->w_start + (p->w_end - p->w_start) / 2;
			if (mid > base) {
				p->w_end = mid;
				p->splits++;
				p->w_split = true;
				page_recs_free(pr);
				restart_window(p);
				return;
			}
		}
	} else if (res->total_count != p->total) {
		page_recs_free(pr);
		goto reread;
	}
	if (recs_add_page(p, res->orders, pr) < 0) {
		retry_later(p, 1000, "out of memory");
		return;
	}
	int sr = store_page(p);
	if (sr < 0) {
		/* The engine logs a failed commit (once a minute); the cursor stays: read the
		 * window again later. */
		snprintf(p->last_error, sizeof(p->last_error), "cannot store a page: %s",
			 strerror(-sr));
		recs_clear(p);
		p->busy = false;
		schedule(p, 5000);
		return;
	}
	unsigned ps = p->flow->page_size;
	if ((int64_t)(p->page + 1) * ps < p->total && json_array_size(res->orders) > 0) {
		p->page++;
		gate_enter(&p->e->wdt_gate, fetch_page, p);
		return;
	}
	/* Consistency: the distinct ids read must be exactly total_count. */
	{
		size_t distinct = distinct_ids(p);
		if ((int64_t)distinct == p->total)
			goto done;
	}
reread:
	p->rereads_total++;
	if (++p->rereads <= MAX_REREADS) {
		char a[WJ_TIME_LEN], b[WJ_TIME_LEN];
		wj_time_format(p->w_start, p->e->cfg->tz_offset, a);
		wj_time_format(p->w_end, p->e->cfg->tz_offset, b);
		wj_info("poller", p->fields,
			"window %s..%s changed while paging (total %lld, read %zu on %u pages): "
			"reading it again", a, b, (long long)p->total, p->n_recs,
			p->page + 1);
		restart_window(p);
		return;
	}
	/* Still moving. Moving the cursor now could miss a record that slid onto a page already
	 * read, so never do that: read a smaller window (fewer pages, less time to change). */
	{
		int64_t base = p->bf_mode ? p->bf_cursor : p->cursor;
		int64_t mid = p->w_start + (p->w_end - p->w_start) / 2;
		p->rereads = 0;
		if (mid > base) {
			wj_info("poller", p->fields, "window kept changing while paging: splitting it");
			p->w_end = mid;
			p->splits++;
			p->w_split = true;
			restart_window(p);
		} else {
			retry_later(p, 2000, "window kept changing while paging; reading it again later");
		}
		return;
	}
done:
	window_done(p);
}

static void fetch_page(void *arg)
{
	poller_t *p = arg;
	if (p->stopped) {
		p->busy = false;
		return;
	}
	const wj_flow_cfg_t *f = p->flow;
	char start[WJ_TIME_LEN], end[WJ_TIME_LEN], page[16], size[16];
	wj_time_format(p->w_start, p->e->cfg->tz_offset, start);
	wj_time_format(p->w_end, p->e->cfg->tz_offset, end);
	snprintf(page, sizeof(page), "%u", p->page);
	snprintf(size, sizeof(size), "%u", f->page_size);
	size_t n = f->n_params + 4;
	wj_kv_t *kv = calloc(n, sizeof(*kv));
	if (!kv) {
		retry_later(p, 1000, "out of memory");
		return;
	}
	size_t k = 0;
	for (size_t i = 0; i < f->n_params; i++)
		kv[k++] = f->params[i];
	kv[k++] = (wj_kv_t){"start_time", start};
	kv[k++] = (wj_kv_t){"end_time", end};
	kv[k++] = (wj_kv_t){"page_no", page};
	kv[k++] = (wj_kv_t){"page_size", size};
	p->querying = true;
	int r = wj_wdt_query(p->e->wdt, f->method, kv, k, prep_page, on_page, p);
	free(kv);
	if (r < 0) {
		p->querying = false;
		retry_later(p, 1000, "cannot start the WDT query");
	}
}

/* How far behind the cursor to read again. The overlap is there for orders that become
 * visible in WDT later than their modified time says, by up to lag + overlap. An order with
 * modified time m that the last read (begun at cursor_read_at) could not see has
 * m > cursor_read_at - lag - overlap; older ones were visible then and were read. So a window
 * read long after its end (a backlog) needs no overlap at all, and a live one the full one. */
static int64_t overlap_needed(const poller_t *p)
{
	int64_t overlap = (int64_t)(p->flow->overlap_ms / 1000), lag = (int64_t)(p->flow->lag_ms / 1000);
	if (p->cursor_read_at <= 0)
		return overlap; /* unknown (older cursor record): the full overlap */
	int64_t from = p->cursor_read_at - lag - overlap; /* earliest order possibly unseen */
	int64_t need = p->cursor - from;
	return need <= 0 ? 0 : need < overlap ? need : overlap;
}

/* Read [start, end] from its first page, with fresh per-window state. */
static void begin_window(poller_t *p, int64_t start, int64_t end)
{
	p->w_start = start;
	p->w_end = end;
	p->w_from = p->cursor;
	p->w_split = false;
	p->w_new = p->w_unchanged = p->w_changed = 0;
	p->rereads = 0;
	p->busy = true;
	p->window_started = wj_mono_ms();
	restart_window(p);
}

static void start_window(poller_t *p)
{
	const wj_flow_cfg_t *f = p->flow;
	load_cursor(p); /* picks up `wdt2jdyctl cursor set` */
	int64_t now = wj_now();
	int64_t limit = now - (int64_t)(f->lag_ms / 1000);
	p->bf_mode = false;
	if (p->cursor >= limit) {
		/* Live is up to date: use the wait for a backfill window, if one is pending. */
		load_backfill(p);
		if (!p->bf_active) {
			schedule(p, f->interval_ms);
			return;
		}
		int64_t end = p->bf_cursor + (int64_t)(f->window_ms / 1000);
		if (end > p->bf_to)
			end = p->bf_to;
		if (end - p->bf_cursor > MAX_SPAN_S)
			end = p->bf_cursor + MAX_SPAN_S;
		p->bf_mode = true;
		begin_window(p, p->bf_cursor, end > p->bf_cursor ? end : p->bf_cursor + 1);
		return;
	}
	int64_t start = p->cursor - overlap_needed(p);
	if (start < p->origin)
		start = p->origin;
	/* A dense backlog was split last time: start from the span that fitted instead of
	 * splitting the full window again (each split costs a query). */
	int64_t span = (int64_t)(f->window_ms / 1000);
	if (p->span > 0 && p->span < span)
		span = p->span;
	int64_t end = p->cursor + span;
	if (end > limit)
		end = limit;
	if (end - start > MAX_SPAN_S)
		end = start + MAX_SPAN_S;
	if (end <= p->cursor) /* overlap alone fills the span: move at least a second */
		end = p->cursor + 1;
	begin_window(p, start, end);
}

static void on_timer(uv_timer_t *t)
{
	poller_t *p = t->data;
	if (p->busy || p->stopped || p->e->stopping)
		return;
	/* A full store: wait (quietly: the engine logs the error once a minute). */
	if (wj_engine_store_full(p->e)) {
		if (!p->store_paused)
			wj_warn("poller", p->fields, "state store full: polling paused");
		p->store_paused = true;
		schedule(p, 1000);
		return;
	}
	/* Backpressure: pause at the high watermark, resume below the low one. */
	size_t depth = wj_engine_depth(p->e), cap = p->e->cfg->queue.capacity;
	size_t low = cap - cap / 4;
	if (depth >= cap || (p->paused && depth > low)) {
		if (!p->paused)
			wj_info("poller", p->fields, "queue at %zu of %zu: polling paused", depth, cap);
		p->paused = true;
		schedule(p, 1000);
		return;
	}
	if (p->paused) {
		wj_info("poller", p->fields, "queue at %zu of %zu: polling resumed", depth, cap);
		p->paused = false;
	}
	start_window(p);
}

static void schedule(poller_t *p, uint64_t ms)
{
	if (p->stopped)
		return;
	uv_timer_start(&p->timer, on_timer, ms, 0);
}

void poller_kick(poller_t *p)
{
	if (p->paused && !p->busy)
		schedule(p, 0);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

poller_t *poller_new(wj_engine_t *e, const wj_flow_cfg_t *flow)
{
	poller_t *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->e = e;
	p->flow = flow;
	snprintf(p->name, sizeof(p->name), "%s", flow->name);
	p->fields[0] = '\0';
	wj_logfmt_kv(p->fields, sizeof(p->fields), "flow", p->name);
	if (load_cursor(p) < 0) {
		free(p);
		return NULL;
	}
	load_backfill(p);
	uv_timer_init(e->loop, &p->timer);
	p->timer.data = p;
	schedule(p, 0);
	return p;
}

void poller_reload(poller_t *p, const wj_flow_cfg_t *flow)
{
	if (!flow) {
		wj_warn("poller", p->fields, "flow removed from the configuration: restart to apply");
		return;
	}
	p->flow = flow;
}

void poller_stop(poller_t *p)
{
	p->stopped = true;
	uv_timer_stop(&p->timer);
}

static void poller_release(poller_t *p)
{
	if (!p->querying && p->timer_closed)
		free(p);
}

static void on_timer_closed(uv_handle_t *h)
{
	poller_t *p = h->data;
	p->timer_closed = true;
	poller_release(p);
}

void poller_free(poller_t *p)
{
	if (!p)
		return;
	uv_timer_stop(&p->timer);
	recs_clear(p);
	p->orphan = true; /* memory goes when the timer is closed and no query is pending */
	uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

json_t *poller_status(poller_t *p)
{
	char cur[WJ_TIME_LEN], origin[WJ_TIME_LEN];
	int tz = p->e->cfg->tz_offset;
	wj_time_format(p->cursor, tz, cur);
	wj_time_format(p->origin, tz, origin);
	int64_t now = wj_now();
	int64_t lag = now - p->cursor;
	double progress = now > p->origin ? (double)(p->cursor - p->origin) / (double)(now - p->origin)
					  : 1.0;
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:f, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			      "name", p->name, "cursor", cur, "origin", origin, "lag_s",
			      (json_int_t)lag, "progress", progress > 1 ? 1.0 : progress, "paused",
			      p->paused, "polling", p->busy, "windows", (json_int_t)p->windows,
			      "splits", (json_int_t)p->splits, "rereads", (json_int_t)p->rereads_total,
			      "stored", (json_int_t)p->stored, "unchanged", (json_int_t)p->unchanged,
			      "changed", (json_int_t)p->changed, "ignored", (json_int_t)p->ignored);
	if (p->busy) {
		char a[WJ_TIME_LEN], b[WJ_TIME_LEN];
		wj_time_format(p->w_start, tz, a);
		wj_time_format(p->w_end, tz, b);
		json_object_set_new(o, "window", json_pack("{s:s, s:s, s:i}", "start", a, "end", b,
							    "page", p->page));
	} else {
		json_object_set_new(o, "window", json_null());
	}
	json_object_set_new(o, "last_window", json_string(p->last_window));
	if (p->bf_active) {
		char a[WJ_TIME_LEN], b[WJ_TIME_LEN], c[WJ_TIME_LEN];
		wj_time_format(p->bf_from, tz, a);
		wj_time_format(p->bf_to, tz, b);
		wj_time_format(p->bf_cursor, tz, c);
		double bp = p->bf_to > p->bf_from ? (double)(p->bf_cursor - p->bf_from) /
							(double)(p->bf_to - p->bf_from)
						  : 1.0;
		json_object_set_new(o, "backfill", json_pack("{s:s, s:s, s:s, s:f}", "from", a, "to",
							       b, "cursor", c, "progress", bp));
	} else {
		json_object_set_new(o, "backfill", json_null());
	}
	json_object_set_new(o, "last_error", p->last_error[0] ? json_string(p->last_error)
							       : json_null());
	return o;
}
