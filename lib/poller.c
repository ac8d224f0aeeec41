/* Poller: one per flow. Reads WDT in time windows on the orders' modified time, stores every
 * eligible order of a page in the queue as the page arrives (keyed by id and content hash, so
 * reading it again stores nothing twice), and moves the flow's cursor only once the whole
 * window has been read consistently. Pages are parsed, hashed and serialised on the loop's
 * thread pool.
 *
 * Window: [cursor - overlap, min(cursor + window, WDT's now - lag)], both ends inclusive, at
 * most 30 days, in WDT's clock (estimated from the Date of its answers, never ahead of it).
 * Pages are read from page 0 until one is shorter than page_size. Page 0's total_count, when
 * WDT gives a usable one, is a cross-check and the early split signal: a window holding more
 * records than the split threshold (or than the room left in the queue) is halved before
 * anything is read past page 0 (without a count, once that many were read).
 *
 * Orders move while a window is paged: one that is modified leaves its place (its modified
 * time becomes WDT's now), and the orders after it move up one place, so the first one of the
 * next page would land on a page already read. Orders that enter only push others to later
 * pages, which are still to be read. So after the last page of a window of several pages, one
 * query lists the orders modified while it was read (from the Date of page 0's answer to that
 * of the last one, a margin either side, same filters, one page): if one of them was read in
 * the window, or that page is full, the window is read again. So is a window whose distinct
 * orders disagree with page 0's count, unless the count is lower and two reads in a row gave
 * the same orders. After MAX_REREADS the window is split instead. */
#include "lib/engine_int.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"

#define MAX_SPAN_S (30 * 86400 - 1)
#define MAX_REREADS 3
#define MAX_READ_RECS 200000 /* a read deeper than this is not a window WDT pages sanely */
#define PROBE_MARGIN_S 1     /* around the Dates of the answers, for the change query */
#define PROBE_PAGE_SIZE 100  /* the change query asks for the largest page */
#define PROBE_MARGIN_UNDATED_S 10 /* when an answer had no Date header */
#define CLOCK_WARN_MS 30000

/* One record of a window, reduced on arrival to what storing it needs: holding a window as
 * parsed JSON costs several times its text. Every record has a key, so that the set of orders
 * read can be compared with WDT's count: its stockin_id, or for an order without a usable one,
 * "sha256:" and its content hash (it is parked, see park_order). */
typedef enum { REC_OK, REC_BAD_ID, REC_FILTERED } rec_kind_t;
typedef struct prec {
	rec_kind_t kind;
	char key[WJ_DOC_KEY_MAX];
	size_t kl;
	char no[128];
	char hex[65];
	char *text; /* canonical JSON of the order (REC_OK, REC_BAD_ID) */
	size_t tlen;
	char *slim; /* mapping id + the projection for the flow's mapping (REC_OK; may be NULL) */
	size_t slen;
	int64_t modified; /* the order's modified time (epoch s; 0 unreadable) */
	char *why;  /* what is wrong with its stockin_id (REC_BAD_ID) */
} prec_t;

struct poller {
	wj_engine_t *e;
	const wj_flow_cfg_t *flow;
	char name[72];
	char fields[128]; /* "flow=NAME" for log lines */
	uv_timer_t timer;
	int64_t origin;   /* where the flow started (for backfill progress) */
	int64_t cursor;   /* end of the last window fully stored */
	uint64_t cursor_op; /* operator changes of the cursor record when it was loaded */
	/* backfill job (from `wdt2jdyctl backfill`), run when the live cursor has caught up */
	bool bf_active, bf_mode;
	int64_t bf_from, bf_to, bf_cursor;
	uint64_t bf_id;   /* the job's id: the record is ours only while it holds this id */
	/* what the current read of a backfill window found, by what the daemon knew of each
	 * order: new (also when this job found it new before), posted, parked, queued */
	uint64_t r_new, r_posted, r_parked, r_queued;
	bool op_won;      /* the operator changed the cursor or the job while a window was read */
	/* window in progress */
	bool busy, querying, orphan, stopped, paused, timer_closed;
	bool store_paused; /* the store refused a window for lack of space */
	int64_t w_start, w_end;
	unsigned page, rereads, failures;
	int64_t count;    /* page 0's total_count of this read; -1 none or unusable */
	int64_t ans_first, ans_last; /* WDT's time of the first and the last answer of this read */
	bool ans_undated; /* one of them had no Date header */
	bool clock_moved; /* the last answer moved the estimate of WDT's clock by over a minute */
	uint8_t prev_set[32]; /* digest of the keys of the previous read of this window */
	bool prev_set_valid;
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
	uint64_t windows, splits, rereads_total, stored, unchanged, changed, ignored, parked;
	uint64_t checks; /* change queries after windows of several pages */
	char last_error[300];
	int64_t fail_since, fail_last; /* wall clock of the first and latest of the failures */
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
	p->cursor_op = 0;
	if (wj_txn_begin(p->e->store, &t, false) < 0)
		return -EIO;
	if (wj_txn_get(&t, WJ_DB_CURSORS, p->name, strlen(p->name), &v) == 0) {
		json_t *j = json_loadb(v.data, v.len, 0, NULL);
		json_t *c = json_object_get(j, "cursor"), *o = json_object_get(j, "origin");
		p->cursor_read_at = json_integer_value(json_object_get(j, "read_at"));
		p->cursor_op = (uint64_t)json_integer_value(json_object_get(j, "op"));
		if (json_is_integer(c))
			p->cursor = json_integer_value(c);
		if (json_is_integer(o))
			p->origin = json_integer_value(o);
		json_decref(j);
	}
	wj_txn_abort(&t);
	return 0;
}

/* The backfill job of a flow lives in the cursors database under "FLOW\0backfill": from, to,
 * cursor, started, id (written by wdt2jdyctl backfill), and what its windows found (added
 * here as each window ends: read, new, posted, parked, queued; and by the dispatcher as each
 * new order gets its outcome: new_saved, new_adopted, new_dead). */
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
		p->bf_id = (uint64_t)json_integer_value(json_object_get(j, "id"));
		p->bf_active = j && p->bf_cursor < p->bf_to;
		json_decref(j);
	}
	wj_txn_abort(&t);
}

/* ---- storing a window ------------------------------------------------------------------ */

typedef struct store_ctx {
	poller_t *p;
	int prio;
	uint64_t n_new, n_unchanged, n_changed, n_ignored, n_parked, n_review;
	char review_no[128]; /* stockin_no of the first order sent to review */
	/* orders known before, by state (n_again: found new by this backfill before) */
	uint64_t n_again, n_posted, n_dead, n_queued;
} store_ctx_t;

/* Free the texts of records v[0..n) (they stay as keys for the consistency check). */
static void recs_release(prec_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].text);
		free(v[i].slim);
		free(v[i].why);
		v[i].text = v[i].slim = v[i].why = NULL;
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

/* The dead-letter reason of an order whose stockin_id cannot key it. Caller frees. */
static char *bad_id_reason(const json_t *order, int err)
{
	char text[48] = "", *out = NULL;
	if (err == -ERANGE) {
		const json_t *v = json_object_get(order, "stockin_id");
		if (!v || json_is_null(v))
			v = json_object_get(json_array_get(json_object_get(order, "details_list"), 0),
					    "stockin_id");
		if (wj_json_text(v, text + 1, sizeof(text) - 2) == 0) {
			text[0] = ' ';
		} else {
			/* longer than shown: its start, cut */
			const char *sv = json_string_value(v);
			snprintf(text, sizeof(text), " %.40s…", sv ? sv : "");
		}
	}
	if (asprintf(&out, "stockin_id%s: %s: the order cannot be tracked by it, so it is parked "
		     "under its content hash", text, err == -ENOSPC ? "longer than 127 bytes"
		     : wj_wdt_key_problem(err)) < 0)
		return NULL;
	return out;
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
		uint8_t hash[32];
		int kerr = wj_wdt_order_key(order, id, sizeof(id));
		r->text = wj_json_canon(order, &r->tlen);
		if (!r->text || wj_sha256(r->text, r->tlen, hash) < 0 ||
		    (kerr && !(r->why = bad_id_reason(order, kerr)))) {
			page_recs_free(pr);
			return;
		}
		wj_hex(hash, sizeof(hash), r->hex, false);
		if (kerr)
			snprintf(id, sizeof(id), "sha256:%s", r->hex);
		r->kind = kerr ? REC_BAD_ID : REC_OK;
		r->kl = wj_doc_key(r->key, p->name, id);
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
		if (!wj_wdt_order_matches(order, p->flow->params, p->flow->n_params)) {
			r->kind = REC_FILTERED;
			free(r->text);
			free(r->why);
			r->text = r->why = NULL;
		}
		if (r->kind == REC_OK)
			r->slim = slim_text(p, order, &r->slen);
		if (wj_wdt_order_modified(order, p->e->cfg->tz_offset, &r->modified) < 0)
			r->modified = 0;
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

/* An eligible order without a usable stockin_id: parked in the dead-letter list under its
 * content hash, once per content. The operator sees it in `dlq list`; a retry posts it. */
static int park_order(wj_txn_t *t, store_ctx_t *c, const prec_t *rec)
{
	poller_t *p = c->p;
	wj_val_t v;
	int r = wj_txn_get(t, WJ_DB_DOCS, rec->key, rec->kl, &v);
	if (r == 0) {
		c->n_unchanged++; /* this content is parked (or was dropped) already */
		c->n_dead++;
		return 0;
	}
	if (r != -ENOENT)
		return r;
	json_t *order = rec_order(rec);
	json_int_t now = (json_int_t)wj_now();
	json_t *doc = json_pack("{s:s, s:s, s:s, s:i, s:i, s:I}", "state", "dead", "hash",
				rec->hex, "stockin_no", rec->no, "attempts", 0, "prio", c->prio,
				"first_seen", now);
	json_t *id = json_object_get(order, "stockin_id");
	json_t *dl = json_pack("{s:s, s:O, s:s, s:s, s:s, s:s, s:i, s:I, s:O, s:n}", "flow",
			       p->name, "stockin_id", id ? id : json_null(), "stockin_no", rec->no,
			       "reason", rec->why, "first_error", rec->why, "last_error", rec->why,
			       "attempts", 0, "ts", now, "order", order, "body");
	json_decref(order);
	if (!doc || !dl) {
		json_decref(doc);
		json_decref(dl);
		return -ENOMEM;
	}
	wj_txn_put_json(t, WJ_DB_DOCS, rec->key, rec->kl, doc);
	wj_txn_put_json(t, WJ_DB_DEAD, rec->key, rec->kl, dl);
	wj_history_note(t, WJ_H_PARKED, p->name);
	json_decref(doc);
	json_decref(dl);
	c->n_parked++;
	char f[1024] = "";
	wj_logfmt_kv(f, sizeof(f), "flow", p->name);
	wj_logfmt_kv(f, sizeof(f), "stockin_no", rec->no);
	wj_logfmt_kv(f, sizeof(f), "reason", rec->why);
	wj_error("poller", f, "order parked in the dead-letter list");
	wj_engine_set_error(p->e, "order %s: %s", rec->no, rec->why);
	return t->err;
}

/* A new order whose stock-in number was marked as posted by another integrator (wdt2jdyctl
 * mark-posted): recorded with that bill, never queued. 1 when so, 0 when it is not marked. */
static int adopt_marked(wj_txn_t *t, store_ctx_t *c, const prec_t *rec, json_t *doc)
{
	poller_t *p = c->p;
	char mk[WJ_DOC_KEY_MAX];
	size_t ml = wj_doc_key(mk, p->name, rec->no);
	json_t *mark = wj_txn_get_json(t, WJ_DB_MARKS, mk, ml);
	if (!mark)
		return 0;
	json_t *order = rec_order(rec), *view = NULL;
	const wj_mapping_t *m = wj_engine_mapping(p->e, p->name);
	char err[600];
	if (m)
		view = wj_bill_view(m, p->e->cfg, t, order, err, sizeof(err));
	const char *bill_no = json_string_value(json_object_get(mark, "bill_no")) ?: "";
	wj_doc_saved(t, rec->key, rec->kl, doc, "", bill_no, "mark-posted", view);
	c->n_posted++;
	char f[512] = "";
	wj_logfmt_kv(f, sizeof(f), "flow", p->name);
	wj_logfmt_kv(f, sizeof(f), "stockin_no", rec->no);
	wj_logfmt_kv(f, sizeof(f), "bill_no", bill_no);
	wj_info("poller", f, "order marked as posted by wdt2jdyctl mark-posted: recorded, not "
		"posted");
	json_decref(view);
	json_decref(order);
	json_decref(mark); /* bill_no is its */
	return 1;
}

/* An order known before: counted by what the daemon knows of it. */
static void count_known(store_ctx_t *c, const json_t *doc)
{
	const char *state = json_string_value(json_object_get(doc, "state")) ?: "";
	json_int_t bf = json_integer_value(json_object_get(doc, "bf"));
	if (c->p->bf_mode && bf && (uint64_t)bf == c->p->bf_id)
		c->n_again++;
	else if (!strcmp(state, "saved"))
		c->n_posted++;
	else if (!strcmp(state, "dead") || !strcmp(state, "dropped"))
		c->n_dead++;
	else
		c->n_queued++;
}

/* A new order: queued for posting, unless it was marked as posted. */
static int store_new(wj_txn_t *t, store_ctx_t *c, const prec_t *rec)
{
	poller_t *p = c->p;
	json_t *doc = json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:I}", "state", "queued", "hash",
				rec->hex, "stockin_no", rec->no, "attempts", 0, "prio", c->prio,
				"first_seen", (json_int_t)wj_now(), "modified",
				(json_int_t)rec->modified);
	if (!doc)
		return -ENOMEM;
	int r = adopt_marked(t, c, rec, doc);
	if (r == 0) {
		uint64_t seq;
		if (wj_txn_seq_next(t, &seq) < 0) {
			json_decref(doc);
			return t->err;
		}
		if (p->bf_mode) /* its outcome is counted in the backfill's record */
			json_object_set_new(doc, "bf", json_integer((json_int_t)p->bf_id));
		put_order(t, rec);
		uint8_t qk[9];
		qk[0] = (uint8_t)c->prio;
		wj_key_u64be(qk + 1, seq);
		wj_txn_put(t, WJ_DB_QUEUE, qk, sizeof(qk), rec->key, rec->kl);
		c->n_new++;
	}
	wj_txn_put_json(t, WJ_DB_DOCS, rec->key, rec->kl, doc);
	json_decref(doc);
	return t->err;
}

static int store_order(wj_txn_t *t, store_ctx_t *c, const prec_t *rec)
{
	poller_t *p = c->p;
	if (rec->kind == REC_BAD_ID)
		return park_order(t, c, rec);
	if (rec->kind == REC_FILTERED) {
		c->n_ignored++;
		return 0;
	}
	const char *key = rec->key, *no = rec->no, *hex = rec->hex;
	size_t kl = rec->kl;

	wj_val_t v;
	int r = wj_txn_get(t, WJ_DB_DOCS, key, kl, &v);
	if (r == -ENOENT)
		return store_new(t, c, rec);
	if (r < 0)
		return r;
	json_t *doc = json_loadb(v.data, v.len, 0, NULL);
	if (!doc)
		return -EIO;
	count_known(c, doc);
	if (!strcmp(json_string_value(json_object_get(doc, "hash")) ?: "", hex)) {
		c->n_unchanged++;
		json_decref(doc);
		return 0;
	}
	c->n_changed++;
	const char *state = json_string_value(json_object_get(doc, "state")) ?: "";
	json_object_set_new(doc, "hash", json_string(hex));
	if (rec->modified)
		json_object_set_new(doc, "modified", json_integer((json_int_t)rec->modified));
	if (!strcmp(state, "saved")) {
		/* Posted already: never a second bill; the operator reviews a change of what
		 * the bill would hold. */
		json_t *order = rec_order(rec);
		r = wj_review_change(t, wj_engine_mapping(p->e, p->name), p->e->cfg, p->name, key,
				     kl, doc, order, NULL);
		json_decref(order);
		if (r > 0 && !c->n_review++)
			snprintf(c->review_no, sizeof(c->review_no), "%s", no);
		char f[256] = "";
		wj_logfmt_kv(f, sizeof(f), "flow", p->name);
		wj_logfmt_kv(f, sizeof(f), "stockin_no", no);
		if (r > 0)
			wj_warn("poller", f, "order changed after its bill was posted: recorded "
				"for review");
		else if (r == 0)
			wj_debug("poller", f, "order changed after its bill was posted, but not "
				 "in what the bill holds");
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
	c->n_new = c->n_unchanged = c->n_changed = c->n_ignored = c->n_parked = c->n_review = 0;
	c->n_again = c->n_posted = c->n_dead = c->n_queued = 0;
	for (size_t i = p->n_stored; i < p->n_recs; i++) {
		int r = store_order(t, c, &p->recs[i]);
		if (r < 0)
			return r;
	}
	return t->err;
}

static void backfill_add(json_t *job, const char *key, uint64_t n)
{
	json_int_t v = json_integer_value(json_object_get(job, key));
	json_object_set_new(job, key, json_integer(v + (json_int_t)n));
}

/* Move the cursor (or the backfill job's) past the window, unless the operator changed it
 * while the window was read (`wdt2jdyctl cursor set` counts up the record's "op"; a backfill
 * cancelled or replaced has gone or holds another id): then the operator's value stands and
 * p->op_won says so. */
static int store_cursor_fn(wj_txn_t *t, void *arg)
{
	poller_t *p = arg;
	p->op_won = false;
	if (p->bf_mode) {
		char key[WJ_DOC_KEY_MAX];
		size_t kl = backfill_key(p, key);
		json_t *bf = wj_txn_get_json(t, WJ_DB_CURSORS, key, kl);
		if (!bf || (uint64_t)json_integer_value(json_object_get(bf, "id")) != p->bf_id) {
			p->op_won = true;
		} else {
			json_object_set_new(bf, "cursor", json_integer((json_int_t)p->w_end));
			json_object_set_new(bf, "updated", json_integer((json_int_t)wj_now()));
			backfill_add(bf, "read", p->r_new + p->r_posted + p->r_parked + p->r_queued);
			backfill_add(bf, "new", p->r_new);
			backfill_add(bf, "posted", p->r_posted);
			backfill_add(bf, "parked", p->r_parked);
			backfill_add(bf, "queued", p->r_queued);
			wj_txn_put_json(t, WJ_DB_CURSORS, key, kl, bf);
		}
		json_decref(bf);
		return t->err;
	}
	json_t *old = wj_txn_get_json(t, WJ_DB_CURSORS, p->name, strlen(p->name));
	p->op_won = (uint64_t)json_integer_value(json_object_get(old, "op")) != p->cursor_op;
	json_decref(old);
	if (p->op_won)
		return t->err;
	json_t *cur = json_pack("{s:I, s:I, s:I, s:I, s:I}", "cursor", (json_int_t)p->w_end,
				"origin", (json_int_t)p->origin, "updated", (json_int_t)wj_now(),
				"read_at", (json_int_t)p->read_at, "op", (json_int_t)p->cursor_op);
	wj_txn_put_json(t, WJ_DB_CURSORS, p->name, strlen(p->name), cur);
	json_decref(cur);
	return t->err;
}

/* Now for windows, in epoch seconds: WDT's now (never later than it is), or the host's if that
 * is earlier. A WDT clock ahead of the host's only delays windows (a Date header far ahead,
 * from a proxy say, must not make them end past what WDT stamps). */
static int64_t wdt_now(const poller_t *p)
{
	int64_t host_ms = wj_now_ms(), wdt = wj_wdt_clock_now(&p->e->wdt_clock, host_ms);
	return wdt < host_ms / 1000 ? wdt : host_ms / 1000;
}

static bool is_live(const poller_t *p)
{
	/* A window ending within one window length of "now - lag" is live; older ones are backfill. */
	int64_t limit = wdt_now(p) - (int64_t)(p->flow->lag_ms / 1000);
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
	p->parked += c.n_parked;
	p->r_new += c.n_new + c.n_again;
	p->r_posted += c.n_posted;
	p->r_parked += c.n_parked + c.n_dead;
	p->r_queued += c.n_queued;
	if (c.n_parked)
		wj_engine_alert(p->e, WJ_EV_DEAD_LETTER, "flow %s: %llu orders without a usable "
				"stockin_id parked", p->name, (unsigned long long)c.n_parked);
	if (c.n_review == 1)
		wj_engine_alert(p->e, WJ_EV_REVIEW, "%s %s: changed after its bill was saved",
				p->name, c.review_no);
	else if (c.n_review)
		wj_engine_alert(p->e, WJ_EV_REVIEW, "flow %s: %llu orders changed after their bill "
				"was saved (%s, ...)", p->name, (unsigned long long)c.n_review,
				c.review_no);
	if (c.n_new && p->e->stored)
		p->e->stored(p->e->stored_arg);
	return 0;
}

int64_t poller_lag(const poller_t *p)
{
	return wdt_now(p) - p->cursor;
}

static unsigned split_threshold(poller_t *p);

static void window_done(poller_t *p)
{
	size_t n_read = p->n_recs;
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
	if (p->op_won) {
		/* Its orders are stored; where to go on from is the operator's call. */
		wj_info("poller", p->fields, p->bf_mode ? "backfill cancelled or replaced by "
			"wdt2jdyctl while a window was read: the window's end is not recorded"
			: "cursor set by wdt2jdyctl while a window was read: the operator's cursor "
			"stands");
		p->bf_active = p->bf_active && !p->bf_mode;
		p->span = 0;
		schedule(p, 0);
		return;
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
		else if (p->span > 0 && n_read * 2 < split_threshold(p))
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
		 p->fields, a, b, (long long)n_read, (unsigned long long)p->w_new,
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

/* The records read, sorted by key (caller frees); NULL on ENOMEM. */
static prec_t **recs_sorted(poller_t *p)
{
	prec_t **v = malloc((p->n_recs ? p->n_recs : 1) * sizeof(*v));
	if (!v)
		return NULL;
	for (size_t i = 0; i < p->n_recs; i++)
		v[i] = &p->recs[i];
	qsort(v, p->n_recs, sizeof(*v), key_cmp);
	return v;
}

/* The distinct orders read (by key) and a digest of their keys. -ENOMEM or the count. */
static ssize_t read_set(poller_t *p, uint8_t digest[32])
{
	prec_t **v = recs_sorted(p);
	wj_buf_t b = {0};
	ssize_t d = 0;
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < p->n_recs && d >= 0; i++) {
		if (i && !key_cmp(&v[i - 1], &v[i]))
			continue;
		d++;
		if (wj_buf_printf(&b, "%zu:", v[i]->kl) < 0 ||
		    wj_buf_append(&b, v[i]->key, v[i]->kl) < 0)
			d = -ENOMEM;
	}
	if (d >= 0 && wj_sha256(b.data ? b.data : "", b.len, digest) < 0)
		d = -ENOMEM;
	wj_buf_free(&b);
	free(v);
	return d;
}

static void restart_window(poller_t *p)
{
	p->read_at = wdt_now(p);
	p->r_new = p->r_posted = p->r_parked = p->r_queued = 0;
	recs_clear(p);
	p->page = 0;
	p->count = -1;
	p->ans_undated = false;
	gate_enter(&p->e->wdt_gate, fetch_page, p);
}

static void retry_later(poller_t *p, uint64_t ms, const char *why)
{
	int64_t now = wj_now();
	if (!p->failures++)
		p->fail_since = now;
	p->fail_last = now;
	char f[512];
	snprintf(f, sizeof(f), "%s page=%u attempt=%u retry_ms=%llu", p->fields, p->page,
		 p->failures, (unsigned long long)ms);
	wj_warn("poller", f, "%s", why);
	snprintf(p->last_error, sizeof(p->last_error), "%s", why);
	wj_log_mask(p->last_error);
	recs_clear(p);
	p->busy = false;
	schedule(p, ms);
}

static uint64_t backoff_ms(poller_t *p)
{
	const wj_config_t *cfg = p->e->cfg;
	return wj_backoff_ms(p->failures, cfg->queue.backoff_initial_ms, cfg->queue.backoff_max_ms,
			     wj_rand64()) + 100;
}

/* Halve the window being read and read it from page 0, if that keeps it ending past the
 * cursor: the overlap behind the cursor is never dropped (a dense overlap is paged through
 * instead). false when it cannot be split. */
static bool try_split(poller_t *p)
{
	int64_t base = p->bf_mode ? p->bf_cursor : p->cursor;
	int64_t mid = p->w_start + (p->w_end - p->w_start) / 2;
	if (p->w_end <= p->w_start || mid <= base)
		return false;
	p->w_end = mid;
	p->splits++;
	p->w_split = true;
	p->rereads = 0;
	p->prev_set_valid = false;
	restart_window(p);
	return true;
}

/* Read the window again from page 0; after MAX_REREADS, split it (fewer pages, less time to
 * change) or, when it cannot be split, read it again later. Moving the cursor now could miss
 * an order that slid onto a page already read, so that is never done. */
static void reread(poller_t *p, const char *why)
{
	p->rereads_total++;
	char a[WJ_TIME_LEN], b[WJ_TIME_LEN];
	wj_time_format(p->w_start, p->e->cfg->tz_offset, a);
	wj_time_format(p->w_end, p->e->cfg->tz_offset, b);
	if (++p->rereads <= MAX_REREADS) {
		wj_info("poller", p->fields,
			"window %s..%s changed while paging (%s; read %zu on %u pages): reading it "
			"again", a, b, why, p->n_recs, p->page + 1);
		restart_window(p);
		return;
	}
	if (try_split(p)) {
		wj_info("poller", p->fields, "window %s..%s kept changing while paging (%s): "
			"splitting it", a, b, why);
		return;
	}
	p->rereads = 0;
	p->prev_set_valid = false;
	char msg[300];
	snprintf(msg, sizeof(msg), "window %s..%s kept changing while paging (%s); reading it again "
		 "later", a, b, why);
	retry_later(p, backoff_ms(p), msg);
}

/* Every answer refines WDT's clock: later queries carry timestamps in it, and a clock more
 * than 30 s off is logged once (until it comes back). The answer's time in WDT's clock marks
 * the span of the read for the change query. */
static void note_answer(poller_t *p, const wj_wdt_result_t *res)
{
	wj_engine_t *e = p->e;
	int64_t before = e->wdt_clock.offset_ms;
	p->clock_moved = false;
	if (wj_wdt_clock_add(&e->wdt_clock, res->date_ms, res->recv_ms, res->elapsed_ms)) {
		int64_t off = e->wdt_clock.offset_ms, abs_ms = off < 0 ? -off : off;
		p->clock_moved = off - before > 60000 || before - off > 60000;
		wj_wdt_set_clock_offset(e->wdt, off);
		if (abs_ms > CLOCK_WARN_MS && !e->wdt_clock_warned) {
			wj_warn("poller", NULL, "WDT's clock is %lld s %s this host's: windows end at "
				"WDT's now - lag", (long long)(abs_ms / 1000),
				off < 0 ? "behind" : "ahead of");
			e->wdt_clock_warned = true;
		} else if (abs_ms <= CLOCK_WARN_MS && e->wdt_clock_warned) {
			wj_info("poller", NULL, "WDT's clock is within %d s of this host's again",
				CLOCK_WARN_MS / 1000);
			e->wdt_clock_warned = false;
		}
	}
	int64_t t = res->date_ms >= 0 ? res->date_ms / 1000 : wdt_now(p);
	p->ans_undated = p->ans_undated || res->date_ms < 0;
	if (p->page == 0)
		p->ans_first = t;
	p->ans_last = t;
}

/* The start of every answer's callback. false when the callback must only release what it
 * holds (the poller is gone or stopping). */
static bool answer_begin(poller_t *p, wj_wdt_result_t *res)
{
	p->querying = false;
	if (p->orphan) {
		poller_release(p);
		return false;
	}
	wj_engine_count(p->e, EP_WDT_QUERY, wj_wdt_outcome(res->cls));
	if (p->stopped) {
		recs_clear(p);
		p->busy = false;
		return false;
	}
	note_answer(p, res);
	return true;
}

/* A failed query: the window is read again from page 0, after a pause fitting the failure. */
static void answer_failed(poller_t *p, const wj_wdt_result_t *res)
{
	switch (res->cls) {
	case WJ_WDT_RATE_LIMITED: {
		int64_t ms = res->retry_after_ms > 30000 ? res->retry_after_ms : 30000;
		gate_pause(&p->e->wdt_gate, ms);
		retry_later(p, (uint64_t)ms, res->error);
		return;
	}
	case WJ_WDT_AUTH:
		wj_engine_down_error(p->e, 0, res->error);
		if (!p->clock_moved)
			wj_engine_alert(p->e, WJ_EV_AUTH_FAILURE, "WDT: %s", res->error);
		/* a stale timestamp, likely, when WDT's clock was only now found far off: the next
		 * query carries WDT's time */
		retry_later(p, p->clock_moved ? 1000 : 60000 * (p->failures < 10 ? p->failures + 1 : 10),
			    res->error);
		return;
	case WJ_WDT_PERMANENT:
		retry_later(p, 300000, res->error);
		return;
	default:
		wj_engine_down_error(p->e, 0, res->error);
		retry_later(p, backoff_ms(p), res->error);
		return;
	}
}

/* A live window must not end past WDT's now - lag: an order stamped later would fall behind
 * the cursor. Windows are planned with the clock known so far; page 0's answer may show WDT
 * behind that (first answer, clock set back). true when the window was cut back (and is read
 * again) or dropped (nothing to read past the cursor yet). */
static bool window_past_wdt_now(poller_t *p)
{
	int64_t limit = wdt_now(p) - (int64_t)(p->flow->lag_ms / 1000);
	if (p->bf_mode || p->w_end <= limit)
		return false;
	char a[WJ_TIME_LEN], b[WJ_TIME_LEN];
	wj_time_format(p->w_end, p->e->cfg->tz_offset, a);
	wj_time_format(limit, p->e->cfg->tz_offset, b);
	wj_debug("poller", p->fields, "window end %s is past WDT's now - lag (%s): cut back", a, b);
	if (limit <= p->cursor) {
		recs_clear(p);
		p->busy = false;
		schedule(p, p->flow->interval_ms);
		return true;
	}
	p->w_end = limit;
	p->prev_set_valid = false;
	restart_window(p);
	return true;
}

/* The window has been read to a short page (over several pages: no order read in it moved
 * meanwhile). Page 0's count, when usable, cross-checks the distinct orders read. */
static void window_read(poller_t *p)
{
	uint8_t set[32];
	ssize_t distinct = read_set(p, set);
	if (distinct < 0) {
		retry_later(p, 1000, "out of memory");
		return;
	}
	bool stable = p->prev_set_valid && !memcmp(set, p->prev_set, sizeof(set));
	memcpy(p->prev_set, set, sizeof(set));
	p->prev_set_valid = true;
	if (p->count < 0 || distinct == p->count) {
		window_done(p);
		return;
	}
	char why[128];
	if (distinct > p->count && stable) {
		/* WDT's count is low, the orders are not: reading again would change nothing */
		snprintf(why, sizeof(why), "total_count %lld, but %zd distinct orders read twice: "
			 "the orders read are kept", (long long)p->count, distinct);
		wj_warn("poller", p->fields, "%s", why);
		window_done(p);
		return;
	}
	snprintf(why, sizeof(why), "total_count %lld, %zd distinct orders read", (long long)p->count,
		 distinct);
	reread(p, why);
}

static void fetch_probe(void *arg);

static int64_t probe_margin(const poller_t *p)
{
	return p->ans_undated ? PROBE_MARGIN_UNDATED_S : PROBE_MARGIN_S;
}

static void on_probe_due(uv_timer_t *t)
{
	poller_t *p = t->data;
	gate_enter(&p->e->wdt_gate, fetch_probe, p);
}

/* Whether WDT accepts an end_time past its now is not known: the change query waits until
 * WDT's clock, as estimated (never ahead of it), has reached its end. */
static void start_probe(poller_t *p)
{
	int64_t end_ms = (p->ans_last + probe_margin(p)) * 1000;
	int64_t wait = end_ms - (wj_now_ms() + p->e->wdt_clock.offset_ms);
	if (wait > 0)
		uv_timer_start(&p->timer, on_probe_due, (uint64_t)wait, 0);
	else
		gate_enter(&p->e->wdt_gate, fetch_probe, p);
}

static void on_page(wj_wdt_result_t *res, void *arg)
{
	poller_t *p = arg;
	page_recs_t *pr = res->prep; /* ours from here on */
	res->prep = NULL;
	if (!answer_begin(p, res)) {
		page_recs_free(pr);
		return;
	}
	if (res->cls != WJ_WDT_OK) {
		page_recs_free(pr);
		answer_failed(p, res);
		return;
	}
	size_t n = json_array_size(res->orders);
	unsigned ps = p->flow->page_size;
	if (p->page == 0) {
		if (window_past_wdt_now(p)) {
			page_recs_free(pr);
			return;
		}
		/* a count below the rows of its own page is no count */
		p->count = res->total_count >= (int64_t)n && (res->total_count || !n)
				   ? res->total_count : -1;
		if (p->count > (int64_t)split_threshold(p) && try_split(p)) {
			page_recs_free(pr);
			return;
		}
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
	if (n >= ps) {
		/* a full page: more may follow */
		if (p->count < 0 && p->n_recs > split_threshold(p) && try_split(p))
			return;
		if (p->n_recs >= MAX_READ_RECS) {
			reread(p, "more orders than any window should hold");
			return;
		}
		p->page++;
		gate_enter(&p->e->wdt_gate, fetch_page, p);
		return;
	}
	if (p->page > 0) {
		start_probe(p);
		return;
	}
	window_read(p); /* one answer: nothing could move between pages */
}

/* The first order of orders (a change query's answer) that was read in this window: its
 * stockin_no; NULL when none. */
static const char *moved_order(poller_t *p, const json_t *orders, prec_t **sorted)
{
	size_t i;
	const json_t *o;
	json_array_foreach(orders, i, o) {
		char id[128], no[128] = "";
		wj_json_text(json_object_get(o, "stockin_no"), no, sizeof(no));
		prec_t want = {0}, *w = &want, **hit = NULL;
		if (wj_wdt_order_key(o, id, sizeof(id)) == 0) {
			want.kl = wj_doc_key(want.key, p->name, id);
			hit = bsearch(&w, sorted, p->n_recs, sizeof(*sorted), key_cmp);
		} else {
			/* its content hash changed with it: known by its stockin_no */
			for (size_t k = 0; k < p->n_recs && !hit && no[0]; k++)
				if (!strcmp(sorted[k]->no, no))
					hit = &sorted[k];
		}
		if (hit)
			return (*hit)->no;
	}
	return NULL;
}

static void on_probe(wj_wdt_result_t *res, void *arg)
{
	poller_t *p = arg;
	if (!answer_begin(p, res))
		return;
	if (res->cls != WJ_WDT_OK) {
		answer_failed(p, res);
		return;
	}
	p->checks++;
	prec_t **sorted = recs_sorted(p);
	if (!sorted) {
		retry_later(p, 1000, "out of memory");
		return;
	}
	char why[200];
	const char *moved = moved_order(p, res->orders, sorted);
	if (moved)
		snprintf(why, sizeof(why), "order %.128s, read in it, was modified meanwhile", moved);
	else if (json_array_size(res->orders) >= PROBE_PAGE_SIZE)
		snprintf(why, sizeof(why), "too many orders modified meanwhile to check them");
	free(sorted);
	if (moved || json_array_size(res->orders) >= PROBE_PAGE_SIZE)
		reread(p, why);
	else
		window_read(p);
}

/* Send one query of the flow's method for [start, end] (with the flow's source.params unless
 * bare) through the gate's turn. */
static void query(poller_t *p, int64_t start, int64_t end, unsigned page_no, unsigned page_size,
		  bool bare, wj_wdt_prep_fn prep, wj_wdt_cb cb)
{
	const wj_flow_cfg_t *f = p->flow;
	char st[WJ_TIME_LEN], et[WJ_TIME_LEN], page[16], size[16];
	wj_time_format(start, p->e->cfg->tz_offset, st);
	wj_time_format(end, p->e->cfg->tz_offset, et);
	snprintf(page, sizeof(page), "%u", page_no);
	snprintf(size, sizeof(size), "%u", page_size);
	size_t n = f->n_params + 4;
	wj_kv_t *kv = calloc(n, sizeof(*kv));
	if (!kv) {
		retry_later(p, 1000, "out of memory");
		return;
	}
	size_t k = 0;
	for (size_t i = 0; i < f->n_params && !bare; i++)
		kv[k++] = f->params[i];
	kv[k++] = (wj_kv_t){"start_time", st};
	kv[k++] = (wj_kv_t){"end_time", et};
	kv[k++] = (wj_kv_t){"page_no", page};
	kv[k++] = (wj_kv_t){"page_size", size};
	/* The last page's orders are freed by now: give their pages back (they were parsed in a
	 * worker thread's arena, which keeps what it once held), so that the heap stays at about
	 * one page whatever the backlog. */
	malloc_trim(0);
	p->querying = true;
	int r = wj_wdt_query(p->e->wdt, f->method, kv, k, prep, cb, p);
	free(kv);
	if (r < 0) {
		p->querying = false;
		retry_later(p, 1000, "cannot start the WDT query");
	}
}

static void fetch_page(void *arg)
{
	poller_t *p = arg;
	if (p->stopped) {
		p->busy = false;
		return;
	}
	query(p, p->w_start, p->w_end, p->page, p->flow->page_size, false, prep_page, on_page);
}

/* The change query: the orders modified while the window was paged, by WDT's clock (the Dates
 * of the first and the last answer, a margin either side, wider when one had no Date). */
static void fetch_probe(void *arg)
{
	poller_t *p = arg;
	if (p->stopped) {
		p->busy = false;
		return;
	}
	int64_t m = probe_margin(p);
	int64_t from = p->ans_first - m, to = p->ans_last + m;
	if (to - from > MAX_SPAN_S) {
		reread(p, "it took too long to read to check it");
		return;
	}
	/* Without the flow's filters: an order that left the window by no longer matching them
	 * (cancelled, say) was modified as well. */
	query(p, from, to, 0, PROBE_PAGE_SIZE, true, NULL, on_probe);
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
	p->prev_set_valid = false;
	p->busy = true;
	p->window_started = wj_mono_ms();
	restart_window(p);
}

static void start_window(poller_t *p)
{
	const wj_flow_cfg_t *f = p->flow;
	load_cursor(p); /* picks up `wdt2jdyctl cursor set` */
	int64_t limit = wdt_now(p) - (int64_t)(f->lag_ms / 1000);
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
	int64_t now = wdt_now(p);
	int64_t lag = now - p->cursor;
	double progress = now > p->origin ? (double)(p->cursor - p->origin) / (double)(now - p->origin)
					  : 1.0;
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:f, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
			      " s:I, s:I}",
			      "name", p->name, "cursor", cur, "origin", origin, "lag_s",
			      (json_int_t)lag, "progress", progress > 1 ? 1.0 : progress, "paused",
			      p->paused, "polling", p->busy, "windows", (json_int_t)p->windows,
			      "splits", (json_int_t)p->splits, "rereads", (json_int_t)p->rereads_total,
			      "stored", (json_int_t)p->stored, "unchanged", (json_int_t)p->unchanged,
			      "changed", (json_int_t)p->changed, "ignored", (json_int_t)p->ignored,
			      "parked", (json_int_t)p->parked, "checks", (json_int_t)p->checks);
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
	json_object_set_new(o, "failures", json_integer(p->failures));
	char since[WJ_TIME_LEN], last[WJ_TIME_LEN];
	wj_time_format(p->fail_since, tz, since);
	wj_time_format(p->fail_last, tz, last);
	json_object_set_new(o, "failing_since", p->failures ? json_string(since) : json_null());
	json_object_set_new(o, "last_failure", p->failures ? json_string(last) : json_null());
	return o;
}
