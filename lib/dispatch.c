/* Dispatcher: takes ready orders from the queue, maps them (with cached lookups) and saves them
 * as Kingdee gain bills, at most kingdee.concurrency at a time, within kingdee.rate_limit.
 *
 * Life of a job:   queue ──take──> in flight ──> lookups ──(reconcile?)──> save ──> outcome
 * Taking moves the entry to the "inflight" database in a committed transaction before any
 * request is sent, so a crash leaves it there; the next start marks it for reconciliation.
 * Group commit: outcomes are committed together with the next take, in one transaction, and
 * only then logged: when GROUP_MAX outcomes wait, GROUP_DELAY_MS after the first of them, when
 * the taken jobs ran out while more wait in the queue, or at once while stopping. Until then an
 * outcome exists only in memory and its order stays in "inflight", so a crash before the commit
 * leaves it to reconciliation, never to a blind resend. A job is sent only after the commit of
 * its take; a slot freed by an outcome is refilled at once from the jobs taken ahead.
 *
 * Exactly one bill: a save that may have reached Kingdee without a definite answer (no answer,
 * a gateway's 5xx, an answer without the bill, an error answer, a crash while in flight) marks
 * the order "unknown" in its doc, with the bounds of when such saves were sent:
 *   sent_from   earliest send not yet proven to have made no bill (epoch ms, our clock)
 *   unknown_at  latest instant such a send can have left; a crash records the restart time,
 *               which is never earlier than a send of the dead process
 *   marker      the remark those saves carried
 * Before anything is posted again (a retry, a replay from the dead letters, a restart), the job
 * waits until twice the request timeout has passed since unknown_at, then asks Kingdee: first
 * by the header bill number when the mapping sets one, then by listing every page of the bills
 * created from sent_from to unknown_at (plus the timeout and a margin for the two clocks) and
 * matching the marker as a whole token of the remark. A bill found is recorded as the order's;
 * none found clears the mark and the save goes. How Kingdee's list "search" matches plays no
 * part in it.
 *
 * skip_existing "search" (a cutover aid): before a flow's order is posted, the bills dated
 * within WJ_BILL_DATE_DAYS of its bill date are listed, every page, and one that carries the
 * stock-in number as a whole token of its remark, or as its bill number, is recorded as the
 * order's ("adopted") instead of posting. The list does not return lines, so a number written
 * only in a line is not seen (wdt2jdyctl mark-posted covers that).
 *
 * Outages: a call that finds no one answering (no connection, no answer, a gateway's 5xx, a
 * failed login, 429) pauses the whole endpoint (gate_outage) and puts the job back without
 * using up one of its attempts. Only answers about the order itself (refusals, answers that
 * cannot be read, and failures while other calls get answers) count as attempts. */
#include "lib/engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/log.h"
#include "lib/util.h"

static const char *MOD = "dispatch";

/* How far Kingdee's clock may be off ours, both ways, when listing bills by creation time. */
#define CLOCK_MARGIN_MS (15 * 60 * 1000LL)
/* Pages of one listing read at most before reconciliation gives up (and parks the order). */
#define RECONCILE_MAX_PAGES 1000

typedef enum { O_NONE, O_SAVED, O_RETRY, O_DELAY, O_DEAD } outcome_t;
/* Listing bills: not running; reconciliation by header bill number, by creation time; a bill
 * made by someone else, by bill date (skip_existing). */
typedef enum { R_NONE, R_BILLNO, R_TIME, R_SKIP } rphase_t;

typedef struct job job_t;
struct job {
	dispatcher_t *d;
	job_t *next;      /* all jobs taken and not yet released */
	job_t *rnext;     /* taken, not started yet (FIFO) */
	bool running;     /* started, outcome not final yet: holds a concurrency slot */
	char key[WJ_DOC_KEY_MAX];
	size_t klen;
	char flow[72];
	char id[128];
	char stockin_no[128];
	char marker[256];
	char old_marker[256]; /* the marker of earlier unsettled saves, if recorded */
	json_t *doc;      /* the doc record as taken */
	json_t *order;    /* the order being posted (from the orders database) */
	bool slim;        /* order is the projection for the mapping (wj_mapping_project) */
	char slim_id[17]; /* ... made for the mapping with this id */
	json_t *resolved; /* "m:NUMBER"/"s:NUMBER" → Kingdee object */
	json_t *missing;  /* lookups the last mapping attempt needed */
	json_t *body;
	unsigned waiting_lookups;
	bool calling;     /* a Kingdee call of this job is in flight */
	bool orphan;      /* dispatcher gone: free on completion */
	bool reconciled;  /* Kingdee said in this attempt that no bill of the order exists */
	bool reviewed;    /* its outcome put it on the review list (changed while posting) */
	bool parking;     /* parked once the reconciliation has answered (reason is set) */
	bool asked;       /* a reconciliation was started in this attempt */
	bool skip_done;   /* skip_existing found no bill of the order in this attempt */
	char adopted[16]; /* a bill made by someone else was found: how ("search") */
	rphase_t rphase;
	unsigned rpage;
	int64_t r_from, r_to; /* the creation-time range listed */
	uint64_t started;
	uint64_t call_mono; /* when the current call was handed to the client (monotonic) */
	int64_t sent_at;  /* wall ms when the save was sent (0: not sent in this attempt) */
	/* an unsettled earlier save (see the top of the file) */
	bool unknown;
	int64_t sent_from, unknown_at;
	/* outcome */
	outcome_t out;
	int64_t delay_ms; /* O_DELAY */
	char bill_id[128], bill_no[128];
	char reason[600];
};

typedef struct lookup {
	struct lookup *next;
	dispatcher_t *d;
	char key[300]; /* "m:NUMBER" or "s:NUMBER" (Kingdee number) */
	job_t **waiters;
	size_t n_waiters;
	bool calling; /* the request is in flight (not just waiting for the gate) */
	uint64_t call_mono; /* when it was handed to the client (monotonic) */
} lookup_t;

struct dispatcher {
	wj_engine_t *e;
	job_t *jobs;       /* taken and not yet committed as finished */
	unsigned n_jobs;
	/* Jobs are taken ahead (in flight in the store, not started) so that a freed slot is
	 * refilled without waiting for a commit; outcomes and the next take share a commit. */
	job_t *ready_head, *ready_tail;
	unsigned n_ready, n_running;
	lookup_t *lookups; /* in flight, one per distinct number */
	json_t *lk_mem;    /* parsed lookup cache entries: key → {"data", "expires_ms"} */
	uv_timer_t flush_timer; /* group commit and refilling freed slots (on_timer) */
	uint64_t flush_due;     /* loop time (ms) the group commit is due; 0: none pending */
	uint64_t hold_until;    /* loop time (ms) before which no commit is tried (after one failed) */
	unsigned pending;       /* outcomes since the last group commit */
	bool queue_more;        /* the last take filled its want: the queue may hold more */
	bool stopped, closing;
	uint64_t saved, retried, dead, reconciled_found, reconciled_missing, reconcile_pages;
	uint64_t adopted;  /* bills found by skip_existing */
	uint64_t lookups_done;
	uint64_t save_ms_total, save_count;
};

static void start_job(job_t *j);
static void finish(job_t *j, outcome_t out);
static void park(job_t *j);

/* ---- jobs -------------------------------------------------------------------------------- */

static void job_free(job_t *j)
{
	json_decref(j->doc);
	json_decref(j->order);
	json_decref(j->resolved);
	json_decref(j->missing);
	json_decref(j->body);
	free(j);
}

static void job_fields(const job_t *j, char *buf, size_t size)
{
	buf[0] = '\0';
	wj_logfmt_kv(buf, size, "flow", j->flow);
	wj_logfmt_kv(buf, size, "stockin_no", j->stockin_no);
}

/* The order to map with m: the projection taken with the job if it was made for m, else the
 * whole order (the mapping changed since: a reload). 0 or -errno. */
static int job_order_for(job_t *j, const wj_mapping_t *m)
{
	if (!j->slim || !strcmp(j->slim_id, wj_mapping_id(m)))
		return 0;
	wj_txn_t t;
	int r = wj_txn_begin(j->d->e->store, &t, false);
	if (r < 0)
		return r;
	json_t *order = wj_txn_get_json(&t, WJ_DB_ORDERS, j->key, j->klen);
	wj_txn_abort(&t);
	if (!order)
		return -ENOENT;
	json_decref(j->order);
	j->order = order;
	j->slim = false;
	return 0;
}

/* The flow's mapping, with the job's order made fit for it; NULL when the job is finished
 * (the flow left the configuration, or the order cannot be read). */
static const wj_mapping_t *job_mapping(job_t *j)
{
	const wj_mapping_t *m = wj_engine_mapping(j->d->e, j->flow);
	if (!m) {
		snprintf(j->reason, sizeof(j->reason),
			 "flow removed: \"%s\" is not in the configuration (replay the order with "
			 "dlq retry once the flow is back)", j->flow);
		finish(j, O_DEAD);
		return NULL;
	}
	int r = job_order_for(j, m);
	if (r < 0) {
		snprintf(j->reason, sizeof(j->reason), "cannot read the order: %s", strerror(-r));
		finish(j, O_RETRY);
		return NULL;
	}
	return m;
}

/* Decide what a failed call (sent at sent_mono) means for the job, and finish it. */
static void fail_call(job_t *j, const wj_jdy_result_t *res, const char *what, uint64_t sent_mono)
{
	wj_engine_t *e = j->d->e;
	snprintf(j->reason, sizeof(j->reason), "%s: %s", what, res->error[0] ? res->error : "error");
	switch (res->cls) {
	case WJ_JDY_RATE_LIMITED: {
		int64_t ms = res->retry_after_ms > 0 ? res->retry_after_ms : 1000;
		gate_pause(&e->jdy_gate, ms);
		j->delay_ms = ms;
		finish(j, O_DELAY);
		return;
	}
	case WJ_JDY_AUTH:
		/* Credentials refused even after a fresh login: do not burn attempts on it. */
		wj_engine_down_error(e, 1, j->reason);
		wj_engine_alert(e, WJ_EV_AUTH_FAILURE, "Kingdee: %s", j->reason);
		j->delay_ms = 60000;
		finish(j, O_DELAY);
		return;
	case WJ_JDY_PERMANENT:
		park(j);
		return;
	default:
		break;
	}
	/* No answer, or a gateway's: Kingdee or the way to it is down, unless other calls got
	 * answers meanwhile (then it is about this call: an attempt). A request that never left
	 * (no connection, a failed login) is never about the order. */
	bool down = res->http_status == 0 || res->http_status >= 500;
	bool never_sent = res->cls == WJ_JDY_TRANSIENT && res->http_status == 0;
	if (down && (never_sent || !gate_up_since(&e->jdy_gate, sent_mono))) {
		j->delay_ms = gate_outage(&e->jdy_gate, sent_mono, res->retry_after_ms);
		if (j->delay_ms < 100)
			j->delay_ms = 100; /* the pause is over: back after this turn's commit */
		wj_engine_down_error(e, 1, j->reason);
		finish(j, O_DELAY);
		return;
	}
	finish(j, O_RETRY);
}

/* ---- save ---------------------------------------------------------------------------------- */

/* Whether a save that failed this way may have made a bill: anything but a refusal by the
 * gateway before the service (429, 401/403) or a request that never left. A refusal of the
 * service itself may come with a bill stored anyway. */
static bool save_maybe_made(const wj_jdy_result_t *res)
{
	switch (res->cls) {
	case WJ_JDY_RATE_LIMITED:
	case WJ_JDY_AUTH:
		return false;
	case WJ_JDY_TRANSIENT:
		return res->http_status != 0; /* an answer came, so the body went */
	default:
		return true;
	}
}

/* A save sent at j->sent_at may have made a bill: reconcile before any other. */
static void mark_unknown(job_t *j)
{
	j->unknown = true;
	if (!j->sent_from || j->sent_at < j->sent_from)
		j->sent_from = j->sent_at;
	if (j->sent_at > j->unknown_at)
		j->unknown_at = j->sent_at;
	snprintf(j->old_marker, sizeof(j->old_marker), "%s", j->marker);
}

static void on_save(const wj_jdy_result_t *res, void *arg)
{
	job_t *j = arg;
	j->calling = false;
	if (j->orphan) {
		job_free(j);
		return;
	}
	wj_engine_t *e = j->d->e;
	wj_engine_count(e, EP_JDY_SAVE, wj_jdy_outcome(res->cls));
	if (res->cls != WJ_JDY_OK) {
		if (save_maybe_made(res))
			mark_unknown(j);
		fail_call(j, res, "save", j->call_mono);
		return;
	}
	gate_ok(&e->jdy_gate, j->call_mono);
	if (wj_jdy_saved_bill(res->data, j->bill_id, sizeof(j->bill_id), j->bill_no,
			      sizeof(j->bill_no)) < 0) {
		/* Accepted, but the answer does not say which bill: settle it by the marker. */
		snprintf(j->reason, sizeof(j->reason), "save: answer without a bill id");
		mark_unknown(j);
		finish(j, O_RETRY);
		return;
	}
	finish(j, O_SAVED);
}

/* The order was recorded as posted since the job was taken (wdt2jdyctl mark-posted while it
 * waited, say, for an outage to end). */
static bool marked_meanwhile(const job_t *j)
{
	wj_txn_t t;
	if (wj_txn_begin(j->d->e->store, &t, false) < 0)
		return false;
	json_t *doc = wj_txn_get_json(&t, WJ_DB_DOCS, j->key, j->klen);
	wj_txn_abort(&t);
	bool saved = !strcmp(json_string_value(json_object_get(doc, "state")) ?: "", "saved");
	json_decref(doc);
	return saved;
}

static void do_save(void *arg)
{
	job_t *j = arg;
	if (j->d->stopped || marked_meanwhile(j)) {
		/* marked: the outcome's commit finds it so and drops the job */
		j->delay_ms = 0;
		snprintf(j->reason, sizeof(j->reason), "%s", j->d->stopped
			 ? "shutting down before sending" : "recorded as posted meanwhile");
		finish(j, O_DELAY);
		return;
	}
	char *text = wj_json_dumps_body(j->body);
	j->calling = true;
	j->sent_at = wj_now_ms();
	j->call_mono = wj_mono_ms();
	if (!text || wj_jdy_save(j->d->e->jdy, text, on_save, j) < 0) {
		j->calling = false;
		j->sent_at = 0;
		snprintf(j->reason, sizeof(j->reason), "save: cannot start the request");
		finish(j, O_RETRY);
	}
	free(text);
}

/* ---- mapping and lookups ------------------------------------------------------------------- */

typedef struct lk_ctx {
	job_t *j;
	wj_txn_t txn;
	bool txn_ok;
} lk_ctx_t;

#define LK_MEM_MAX 20000 /* parsed entries kept; the store holds them all */

static void lk_mem_put(dispatcher_t *d, const char *key, json_t *entry)
{
	if (json_object_size(d->lk_mem) >= LK_MEM_MAX)
		json_object_clear(d->lk_mem);
	json_object_set(d->lk_mem, key, entry);
}

static const json_t *lookup_cb(void *arg, char kind, const char *number)
{
	lk_ctx_t *c = arg;
	job_t *j = c->j;
	const wj_config_t *cfg = j->d->e->cfg;
	char key[300];
	snprintf(key, sizeof(key), "%c:%s", kind, wj_kingdee_number(cfg, kind, number));
	const json_t *o = json_object_get(j->resolved, key);
	if (o)
		return o;
	/* The parsed entry from memory, else from the store (then kept in memory). */
	json_t *entry = json_incref(json_object_get(j->d->lk_mem, key));
	wj_val_t v;
	if (!entry && c->txn_ok && wj_txn_get(&c->txn, WJ_DB_LOOKUP, key, strlen(key), &v) == 0) {
		entry = json_loadb(v.data, v.len, 0, NULL);
		if (entry)
			lk_mem_put(j->d, key, entry);
	}
	json_t *obj = json_object_get(entry, "data");
	int64_t exp = json_integer_value(json_object_get(entry, "expires_ms"));
	if (obj && exp > wj_now_ms()) {
		json_object_set(j->resolved, key, obj);
		json_decref(entry);
		return json_object_get(j->resolved, key);
	}
	json_decref(entry);
	/* Remember which WDT-side number asked for it, for error messages. */
	json_object_set_new(j->missing, key, json_string(number));
	return NULL;
}

static void lookup_request(job_t *j, const char *key);
static void proceed(job_t *j);

static void map_job(job_t *j)
{
	const wj_mapping_t *m = job_mapping(j); /* again: a reload may have come meanwhile */
	if (!m)
		return;
	lk_ctx_t c = {.j = j};
	c.txn_ok = wj_txn_begin(j->d->e->store, &c.txn, false) == 0;
	json_object_clear(j->missing);
	int rc;
	char err[600];
	json_t *body = wj_mapping_apply(m, j->order, lookup_cb, &c, &rc, err, sizeof(err));
	if (c.txn_ok)
		wj_txn_abort(&c.txn);
	if (rc == 0) {
		json_decref(j->body);
		j->body = body;
		/* the marker of this body (the mapping may have changed since the start) */
		char marker[sizeof(j->marker)];
		if (wj_mapping_marker(m, j->order, marker, sizeof(marker)) == 0)
			memcpy(j->marker, marker, sizeof(marker));
		proceed(j);
		return;
	}
	if (rc == -EAGAIN) {
		const char *key;
		json_t *v;
		j->waiting_lookups = (unsigned)json_object_size(j->missing);
		json_t *missing = json_incref(j->missing);
		json_object_foreach(missing, key, v)
			lookup_request(j, key);
		json_decref(missing);
		return;
	}
	snprintf(j->reason, sizeof(j->reason), "%s", err);
	park(j);
}

typedef struct cache_put {
	const char *key;
	const char *val;
} cache_put_t;

static int cache_put_fn(wj_txn_t *t, void *arg)
{
	cache_put_t *c = arg;
	wj_txn_put(t, WJ_DB_LOOKUP, c->key, strlen(c->key), c->val, strlen(c->val));
	return t->err;
}

static void lookup_done(lookup_t *l, const wj_jdy_result_t *res)
{
	dispatcher_t *d = l->d;
	/* unlink */
	for (lookup_t **pp = &d->lookups; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	if (res->cls == WJ_JDY_OK)
		gate_ok(&d->e->jdy_gate, l->call_mono);
	if (res->cls == WJ_JDY_OK && res->data) {
		json_t *entry = json_pack("{s:O, s:I}", "data", res->data, "expires_ms",
					  (json_int_t)(wj_now_ms() + (int64_t)d->e->cfg->kingdee.lookup_ttl_ms));
		char *text = json_dumps(entry, JSON_COMPACT);
		if (text) {
			cache_put_t cp = {l->key, text};
			if (wj_engine_write(d->e, cache_put_fn, &cp) == 0)
				lk_mem_put(d, l->key, entry);
			free(text);
		}
		json_decref(entry);
		d->lookups_done++;
	}
	for (size_t i = 0; i < l->n_waiters; i++) {
		job_t *j = l->waiters[i];
		if (j->orphan) {
			if (--j->waiting_lookups == 0)
				job_free(j);
			continue;
		}
		if (res->cls == WJ_JDY_OK && res->data) {
			json_object_set(j->resolved, l->key, res->data);
		} else if (j->out == O_NONE) {
			const char *num = json_string_value(json_object_get(j->missing, l->key)) ?: "";
			const char *what = l->key[0] == 's' ? "store (warehouse_no)" : "material (spec_no)";
			wj_jdy_result_t r2 = *res;
			if (res->cls == WJ_JDY_OK) { /* OK without data: treat as not found */
				r2.cls = WJ_JDY_PERMANENT;
				snprintf(r2.error, sizeof(r2.error), "empty answer");
			}
			char what2[400];
			snprintf(what2, sizeof(what2), "Kingdee %s %s (WDT %s)", what, l->key + 2, num);
			/* Keep the job until its other lookups have answered. */
			j->waiting_lookups++;
			fail_call(j, &r2, what2, l->call_mono);
			j->waiting_lookups--;
		}
		if (--j->waiting_lookups == 0) {
			if (j->out == O_NONE)
				map_job(j);
			else if (j->out == O_DEAD)
				park(j); /* deferred failure, now complete */
			else
				finish(j, j->out);
		}
	}
	free(l->waiters);
	free(l);
}

static void on_lookup(const wj_jdy_result_t *res, void *arg)
{
	lookup_t *l = arg;
	if (!l->d) { /* the dispatcher is gone: release orphaned waiters */
		for (size_t i = 0; i < l->n_waiters; i++) {
			job_t *j = l->waiters[i];
			if (--j->waiting_lookups == 0 && !j->calling)
				job_free(j);
		}
		free(l->waiters);
		free(l);
		return;
	}
	wj_engine_count(l->d->e, l->key[0] == 's' ? EP_JDY_STORE : EP_JDY_MATERIAL,
			wj_jdy_outcome(res->cls));
	lookup_done(l, res);
}

static void do_lookup(void *arg)
{
	lookup_t *l = arg;
	wj_engine_t *e = l->d->e;
	l->calling = true;
	l->call_mono = wj_mono_ms();
	int r = l->key[0] == 's' ? wj_jdy_store(e->jdy, l->key + 2, on_lookup, l)
				 : wj_jdy_material(e->jdy, l->key + 2, on_lookup, l);
	if (r < 0) {
		wj_jdy_result_t res = {.cls = WJ_JDY_TRANSIENT, .retry_after_ms = -1};
		snprintf(res.error, sizeof(res.error), "cannot start the lookup");
		on_lookup(&res, l);
	}
}

static void lookup_request(job_t *j, const char *key)
{
	dispatcher_t *d = j->d;
	lookup_t *l = d->lookups;
	while (l && strcmp(l->key, key))
		l = l->next;
	bool fresh = !l;
	if (fresh) {
		l = calloc(1, sizeof(*l));
		if (!l)
			goto oom;
		l->d = d;
		snprintf(l->key, sizeof(l->key), "%s", key);
	}
	job_t **w = realloc(l->waiters, (l->n_waiters + 1) * sizeof(*w));
	if (!w) {
		if (fresh)
			free(l);
		goto oom;
	}
	l->waiters = w;
	l->waiters[l->n_waiters++] = j;
	if (fresh) {
		l->next = d->lookups;
		d->lookups = l;
		gate_enter(&d->e->jdy_gate, do_lookup, l);
	}
	return;
oom:
	snprintf(j->reason, sizeof(j->reason), "out of memory");
	j->out = O_RETRY;
	if (--j->waiting_lookups == 0)
		finish(j, O_RETRY);
}

/* ---- reconciliation ------------------------------------------------------------------------ */

/* Characters that continue a document number: a marker next to one of them is part of a
 * longer token ("WDT:RK1" in "WDT:RK10" or "WDT:RK1-2"). Anything else delimits it (spaces,
 * other punctuation, Chinese text). */
static bool token_char(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       c == '-' || c == '_' || c == '.' || c == '/';
}

bool wj_marker_in(const char *text, const char *marker)
{
	size_t ml = strlen(marker);
	if (!text || !ml)
		return false;
	bool open_start = token_char((unsigned char)marker[0]);
	bool open_end = token_char((unsigned char)marker[ml - 1]);
	for (const char *p = strstr(text, marker); p; p = strstr(p + 1, marker)) {
		if (open_start && p > text && token_char((unsigned char)p[-1]))
			continue;
		if (open_end && token_char((unsigned char)p[ml]))
			continue;
		return true;
	}
	return false;
}

/* A criterion of wj_bill_match_t is given. */
static bool set(const char *s)
{
	return s && *s;
}

bool wj_bill_row_matches(const json_t *row, const wj_bill_match_t *m)
{
	const char *remark = json_string_value(json_object_get(row, "remark"));
	const char *no = json_string_value(json_object_get(row, "bill_no")) ?: "";
	const char *id = json_string_value(json_object_get(row, "id")) ?: "";
	return (set(m->marker) && wj_marker_in(remark, m->marker)) ||
	       (set(m->old_marker) && wj_marker_in(remark, m->old_marker)) ||
	       (set(m->stockin_no) && (wj_marker_in(remark, m->stockin_no) ||
				       !strcmp(no, m->stockin_no))) ||
	       (set(m->bill_no) && !strcmp(no, m->bill_no)) ||
	       (set(m->bill_id) && !strcmp(id, m->bill_id));
}

int wj_bill_date_range(const json_t *body, int days, char from[11], char to[11])
{
	const char *d = json_string_value(json_object_get(body, "billdate"));
	if (!d)
		d = json_string_value(json_object_get(body, "bill_date"));
	int64_t t;
	char buf[WJ_TIME_LEN];
	if (!d || strlen(d) != 10 || wj_time_parse(d, 0, &t) < 0)
		return -ENOENT;
	wj_time_format(t - days * 86400LL, 0, buf);
	snprintf(from, 11, "%.10s", buf);
	wj_time_format(t + days * 86400LL, 0, buf);
	snprintf(to, 11, "%.10s", buf);
	return 0;
}

static void on_find(const wj_jdy_result_t *res, void *arg);
static void do_find(void *arg);

/* List from the first page, by bill number, by creation time or by bill date. */
static void list_from(job_t *j, rphase_t phase)
{
	j->rphase = phase;
	j->rpage = 1;
	gate_enter(&j->d->e->jdy_gate, do_find, j);
}

static void do_find(void *arg)
{
	job_t *j = arg;
	if (j->d->stopped) {
		snprintf(j->reason, sizeof(j->reason), "shutting down before reconciling");
		j->delay_ms = 0;
		finish(j, O_DELAY);
		return;
	}
	wj_jdy_bill_query_t q = {.page = j->rpage};
	char from[11], to[11];
	if (j->rphase == R_BILLNO) {
		q.search = json_string_value(json_object_get(j->body, "billno"));
	} else if (j->rphase == R_SKIP) {
		if (wj_bill_date_range(j->body, WJ_BILL_DATE_DAYS, from, to) == 0) {
			q.bill_date_from = from;
			q.bill_date_to = to;
		}
	} else {
		q.created_from_ms = j->r_from;
		q.created_to_ms = j->r_to;
	}
	j->calling = true;
	j->call_mono = wj_mono_ms();
	if (wj_jdy_list_bills(j->d->e->jdy, &q, on_find, j) < 0) {
		j->calling = false;
		snprintf(j->reason, sizeof(j->reason), "%s: cannot start the request",
			 j->rphase == R_SKIP ? "skip_existing" : "reconcile");
		finish(j, O_RETRY);
	}
}

/* Ask Kingdee whether an earlier save of the job made a bill: by the header bill number when
 * the body has one, then by listing the bills created while such a save can have been
 * processed, every page, whatever the list's search matches. */
static void reconcile(job_t *j)
{
	const char *billno = json_string_value(json_object_get(j->body, "billno"));
	j->asked = true;
	j->r_from = j->r_to = 0; /* no lower bound known (an old record): every bill */
	if (j->sent_from > 0) {
		/* Processed at the latest when twice the timeout has passed after the last send
		 * (the settle wait); bounded by now, and by each clock's error both ways. */
		int64_t settled = (j->unknown_at > j->sent_from ? j->unknown_at : j->sent_from) +
				  2 * (int64_t)j->d->e->cfg->kingdee.timeout_ms;
		int64_t now = wj_now_ms();
		j->r_from = j->sent_from > CLOCK_MARGIN_MS ? j->sent_from - CLOCK_MARGIN_MS : 1;
		j->r_to = (settled < now ? settled : now) + CLOCK_MARGIN_MS;
	}
	list_from(j, billno && *billno ? R_BILLNO : R_TIME);
}

static bool flow_skips(const job_t *j)
{
	const wj_config_t *cfg = j->d->e->cfg;
	for (size_t i = 0; i < cfg->n_flows; i++)
		if (!strcmp(cfg->flows[i].name, j->flow))
			return cfg->flows[i].skip_existing;
	return false;
}

/* The body is made: settle an earlier save, look for a bill made by someone else when the flow
 * asks for it, then save. */
static void proceed(job_t *j)
{
	if (j->unknown && !j->reconciled)
		reconcile(j); /* an earlier save may have made the bill */
	else if (!j->skip_done && flow_skips(j))
		list_from(j, R_SKIP);
	else
		gate_enter(&j->d->e->jdy_gate, do_save, j);
}

static bool row_is_ours(const job_t *j, const json_t *row)
{
	wj_bill_match_t m = {0};
	if (j->rphase == R_BILLNO) {
		m.bill_no = json_string_value(json_object_get(j->body, "billno"));
	} else if (j->rphase == R_SKIP) {
		m.stockin_no = j->stockin_no;
		m.marker = j->marker;
	} else {
		m.marker = j->marker;
		m.old_marker = j->old_marker;
	}
	return wj_bill_row_matches(row, &m);
}

/* A listed bill is the order's: record it. */
static void found(job_t *j, const json_t *row)
{
	wj_json_text(json_object_get(row, "id"), j->bill_id, sizeof(j->bill_id));
	wj_json_text(json_object_get(row, "bill_no"), j->bill_no, sizeof(j->bill_no));
	char f[512];
	job_fields(j, f, sizeof(f));
	wj_logfmt_kv(f, sizeof(f), "bill_no", j->bill_no);
	if (j->rphase == R_SKIP) {
		j->d->adopted++;
		snprintf(j->adopted, sizeof(j->adopted), "search");
		wj_info(MOD, f, "bill made by someone else found in Kingdee (skip_existing): "
			"recorded as the order's, not posted");
	} else {
		j->d->reconciled_found++;
		wj_info(MOD, f, "bill already in Kingdee (earlier attempt succeeded): recorded");
	}
	j->rphase = R_NONE;
	finish(j, O_SAVED);
}

static void on_find(const wj_jdy_result_t *res, void *arg)
{
	job_t *j = arg;
	j->calling = false;
	if (j->orphan) {
		job_free(j);
		return;
	}
	wj_engine_t *e = j->d->e;
	wj_engine_count(e, EP_JDY_LIST, wj_jdy_outcome(res->cls));
	if (res->cls == WJ_JDY_PERMANENT && j->rphase == R_BILLNO) {
		list_from(j, R_TIME); /* a search refused: the listing by time still tells */
		return;
	}
	if (res->cls != WJ_JDY_OK) {
		bool skip = j->rphase == R_SKIP;
		j->rphase = R_NONE; /* still unsettled; asked again next time */
		fail_call(j, res, skip ? "skip_existing: list bills" : "reconcile", j->call_mono);
		return;
	}
	gate_ok(&e->jdy_gate, j->call_mono);
	j->d->reconcile_pages++;
	const json_t *rows = json_object_get(res->data, "rows");
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		if (row_is_ours(j, row)) {
			found(j, row);
			return;
		}
	}
	int64_t total = json_integer_value(json_object_get(res->data, "total_page"));
	if (json_array_size(rows) && (int64_t)j->rpage < total) {
		if (j->rpage >= RECONCILE_MAX_PAGES) {
			snprintf(j->reason, sizeof(j->reason),
				 "%s: more than %u pages of bills to read; check Kingdee for a bill "
				 "with remark %s by hand", j->rphase == R_SKIP ? "skip_existing"
				 : "reconcile", RECONCILE_MAX_PAGES, j->marker);
			j->rphase = R_NONE;
			finish(j, O_DEAD);
			return;
		}
		j->rpage++;
		gate_enter(&e->jdy_gate, do_find, j);
		return;
	}
	if (j->rphase == R_BILLNO) { /* not under its number: by creation time */
		list_from(j, R_TIME);
		return;
	}
	if (j->rphase == R_SKIP) {
		j->rphase = R_NONE;
		j->skip_done = true;
		proceed(j);
		return;
	}
	j->rphase = R_NONE;
	j->d->reconciled_missing++;
	j->reconciled = true;
	j->unknown = false;
	j->sent_from = j->unknown_at = 0;
	if (j->parking)
		finish(j, O_DEAD);
	else
		proceed(j);
}

/* The order cannot be posted (j->reason says why): park it in the dead letters. If an earlier
 * save may have made its bill and none was sent in this attempt, ask Kingdee first: a bill
 * found is recorded instead. While lookups of the job are pending, this waits for them (the
 * last one to answer parks it). */
static void park(job_t *j)
{
	if (!j->waiting_lookups && j->unknown && !j->asked && !j->sent_at && j->marker[0]) {
		j->parking = true;
		j->out = O_NONE; /* a failure deferred behind lookups is decided after this */
		reconcile(j);
		return;
	}
	finish(j, O_DEAD);
}

static void start_job(job_t *j)
{
	const wj_mapping_t *m = job_mapping(j);
	if (!m)
		return;
	if (wj_mapping_marker(m, j->order, j->marker, sizeof(j->marker)) < 0) {
		snprintf(j->reason, sizeof(j->reason), "order %s: cannot build the marker (remark)",
			 j->stockin_no);
		finish(j, O_DEAD);
		return;
	}
	if (j->unknown) {
		/* A save of an earlier attempt may still be on its way through Kingdee: ask only
		 * when it must have finished (twice the request timeout after it can have left). */
		int64_t settle = j->unknown_at + 2 * (int64_t)j->d->e->cfg->kingdee.timeout_ms -
				 wj_now_ms();
		if (settle > 0) {
			j->delay_ms = settle;
			snprintf(j->reason, sizeof(j->reason),
				 "waiting for an earlier attempt to settle");
			finish(j, O_DELAY);
			return;
		}
	}
	map_job(j);
}

/* ---- what a bill holds ---------------------------------------------------------------------- */

typedef struct view_ctx {
	const wj_config_t *cfg;
	wj_txn_t *t;
	json_t *made; /* "m:NUMBER" → the object handed to the mapping (kept until it is done) */
	json_t *mem;  /* parsed cache entries by Kingdee key (the dispatcher's), or NULL */
} view_ctx_t;

/* The Kingdee object of a material or store as cached, named by its WDT-side number; a bare
 * one when it is not cached. */
static const json_t *view_lookup(void *arg, char kind, const char *number)
{
	view_ctx_t *c = arg;
	char key[300], ck[300];
	snprintf(key, sizeof(key), "%c:%s", kind, number);
	json_t *o = json_object_get(c->made, key);
	if (o)
		return o;
	snprintf(ck, sizeof(ck), "%c:%s", kind, wj_kingdee_number(c->cfg, kind, number));
	wj_val_t v;
	json_t *entry = json_incref(json_object_get(c->mem, ck));
	if (!entry && c->t && wj_txn_get(c->t, WJ_DB_LOOKUP, ck, strlen(ck), &v) == 0) {
		entry = json_loadb(v.data, v.len, 0, NULL);
		if (entry && c->mem) {
			if (json_object_size(c->mem) >= LK_MEM_MAX)
				json_object_clear(c->mem);
			json_object_set(c->mem, ck, entry);
		}
	}
	json_t *data = json_object_get(entry, "data");
	o = json_is_object(data) ? json_deep_copy(data) : json_object();
	json_decref(entry);
	if (!o)
		return NULL;
	json_object_set_new(o, "id", json_string(number));
	if (kind == 'm' && !json_string_length(json_object_get(o, "base_unit_id")))
		json_object_set_new(o, "base_unit_id", json_string(number));
	json_object_set_new(c->made, key, o);
	return o;
}

/* wj_bill_view, with the cache entries parsed already in mem (and those read kept there). */
static json_t *bill_view(const wj_mapping_t *m, const wj_config_t *cfg, wj_txn_t *t, json_t *mem,
			 const json_t *order, char *err, size_t errsize)
{
	view_ctx_t c = {.cfg = cfg, .t = t, .made = json_object(), .mem = mem};
	int rc;
	json_t *view = NULL;
	if (c.made)
		view = wj_mapping_apply(m, order, view_lookup, &c, &rc, err, errsize);
	else
		snprintf(err, errsize, "out of memory");
	json_decref(c.made);
	return view;
}

json_t *wj_bill_view(const wj_mapping_t *m, const wj_config_t *cfg, wj_txn_t *t,
		     const json_t *order, char *err, size_t errsize)
{
	return bill_view(m, cfg, t, NULL, order, err, errsize);
}

/* A field's value as the operator reads it: text as it is, anything else as JSON; null when
 * the field is not there. */
static json_t *diff_value(const json_t *v)
{
	if (!v)
		return json_null();
	if (json_is_string(v))
		return json_incref((json_t *)v);
	char *text = wj_json_dumps_body(v);
	json_t *out = text ? json_string(text) : json_null();
	free(text);
	return out;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void diff_walk(json_t *out, wj_buf_t *path, const json_t *a, const json_t *b);

/* Cut path back to len bytes. */
static void path_cut(wj_buf_t *path, size_t len)
{
	path->len = len;
	if (path->data)
		path->data[len] = '\0';
}

static void diff_objects(json_t *out, wj_buf_t *path, const json_t *a, const json_t *b)
{
	size_t n = json_object_size(a) + json_object_size(b), k = 0, len = path->len;
	const char **keys = malloc((n ? n : 1) * sizeof(*keys));
	const char *key;
	json_t *v;
	if (!keys)
		return;
	json_object_foreach((json_t *)a, key, v)
		keys[k++] = key;
	json_object_foreach((json_t *)b, key, v)
		if (!json_object_get(a, key))
			keys[k++] = key;
	qsort(keys, k, sizeof(*keys), key_cmp);
	for (size_t i = 0; i < k; i++) {
		wj_buf_printf(path, "%s%s", len ? "." : "", keys[i]);
		diff_walk(out, path, json_object_get(a, keys[i]), json_object_get(b, keys[i]));
		path_cut(path, len);
	}
	free(keys);
}

static void diff_walk(json_t *out, wj_buf_t *path, const json_t *a, const json_t *b)
{
	if (a && b && json_equal(a, b))
		return;
	if (json_is_object(a) && json_is_object(b)) {
		diff_objects(out, path, a, b);
		return;
	}
	if (json_is_array(a) && json_is_array(b)) {
		size_t n = json_array_size(a) > json_array_size(b) ? json_array_size(a)
								    : json_array_size(b);
		size_t len = path->len;
		for (size_t i = 0; i < n; i++) {
			wj_buf_printf(path, "[%zu]", i);
			diff_walk(out, path, json_array_get(a, i), json_array_get(b, i));
			path_cut(path, len);
		}
		return;
	}
	json_array_append_new(out, json_pack("{s:s, s:o, s:o}", "field", path->data ? path->data
							  : "", "old", diff_value(a), "new",
					     diff_value(b)));
}

json_t *wj_bill_diff(const json_t *old, const json_t *cur)
{
	json_t *out = json_array();
	wj_buf_t path = {0};
	if (out)
		diff_walk(out, &path, old, cur);
	wj_buf_free(&path);
	return out;
}

void wj_doc_saved(wj_txn_t *t, const char *key, size_t kl, json_t *doc, const char *bill_id,
		  const char *bill_no, const char *how, const json_t *view)
{
	json_object_set_new(doc, "state", json_string("saved"));
	json_object_set_new(doc, "bill_id", json_string(bill_id ? bill_id : ""));
	json_object_set_new(doc, "bill_no", json_string(bill_no ? bill_no : ""));
	json_object_set_new(doc, "saved_at", json_integer(wj_now()));
	if (how)
		json_object_set_new(doc, "adopted", json_string(how));
	else
		json_object_del(doc, "adopted");
	wj_txn_del(t, WJ_DB_ORDERS, key, kl);
	wj_txn_del(t, WJ_DB_SLIM, key, kl);
	wj_txn_del(t, WJ_DB_DEAD, key, kl);
	if (view)
		wj_txn_put_json(t, WJ_DB_POSTED, key, kl, view);
	else
		wj_txn_del(t, WJ_DB_POSTED, key, kl);
}

int wj_review_change(wj_txn_t *t, const wj_mapping_t *m, const wj_config_t *cfg,
		     const char *flow, const char *key, size_t kl, json_t *doc,
		     const json_t *order, const char *note)
{
	char err[600] = "";
	json_t *posted = wj_txn_get_json(t, WJ_DB_POSTED, key, kl);
	json_t *view = m ? wj_bill_view(m, cfg, t, order, err, sizeof(err)) : NULL;
	int ret = 0;
	if (posted && view && json_equal(posted, view))
		goto out;
	json_t *rv = json_pack("{s:s, s:O, s:O, s:O, s:I, s:O}", "flow", flow, "stockin_no",
			       json_object_get(doc, "stockin_no") ?: json_null(), "bill_no",
			       json_object_get(doc, "bill_no") ?: json_null(), "bill_id",
			       json_object_get(doc, "bill_id") ?: json_null(), "seen",
			       (json_int_t)wj_now(), "order", order);
	if (!rv) {
		ret = t->err = t->err ? t->err : -ENOMEM;
		goto out;
	}
	if (posted && view)
		json_object_set_new(rv, "changes", wj_bill_diff(posted, view));
	else if (m && !view) /* its new content makes no bill: say why */
		json_object_set_new(rv, "cannot_map", json_string(err));
	else
		json_object_set_new(rv, "changes_unknown",
				    json_string("what its bill holds was not recorded: any change "
						"of the order is shown"));
	if (note)
		json_object_set_new(rv, "note", json_string(note));
	wj_txn_put_json(t, WJ_DB_REVIEW, key, kl, rv);
	wj_history_note(t, WJ_H_REVIEW, flow);
	json_decref(rv);
	json_object_set_new(doc, "review", json_true());
	ret = t->err ? t->err : 1;
out:
	json_decref(posted);
	json_decref(view);
	return ret;
}

/* ---- outcomes ------------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

#define GROUP_MAX 64        /* outcomes that make a group commit due at once */
#define GROUP_DELAY_MS 50   /* at most this long after the first outcome of a group */

/* The group commit is due after delay_ms at the latest; the timer runs at the next loop turn
 * (refilling freed slots) and then when it is due. */
static void flush_after(dispatcher_t *d, uint64_t delay_ms)
{
	if (d->closing)
		return;
	uint64_t due = uv_now(d->e->loop) + delay_ms;
	if (due < d->hold_until)
		due = d->hold_until;
	if (!d->flush_due || due < d->flush_due)
		d->flush_due = due;
	uv_timer_start(&d->flush_timer, on_timer, 0, 0);
}

static void finish(job_t *j, outcome_t out)
{
	if (j->waiting_lookups > 0) {
		j->out = out; /* completed when the last lookup answers */
		return;
	}
	j->out = out;
	dispatcher_t *d = j->d;
	if (j->running) {
		j->running = false;
		d->n_running--;
	}
	bool now = ++d->pending >= GROUP_MAX || d->stopped || d->e->stopping;
	flush_after(d, now ? 0 : GROUP_DELAY_MS);
}

static void delay_entry(wj_txn_t *t, const job_t *j, int prio, int64_t due_ms)
{
	uint64_t seq;
	if (wj_txn_seq_next(t, &seq) < 0)
		return;
	uint8_t k[16];
	wj_key_u64be(k, (uint64_t)due_ms);
	wj_key_u64be(k + 8, seq);
	uint8_t v[1 + WJ_DOC_KEY_MAX];
	v[0] = (uint8_t)prio;
	memcpy(v + 1, j->key, j->klen);
	wj_txn_put(t, WJ_DB_DELAYED, k, sizeof(k), v, 1 + j->klen);
}

/* Write what is known of unsettled saves into the doc (see the top of the file). */
static void doc_set_unknown(json_t *doc, const job_t *j)
{
	if (!j->unknown) {
		json_object_del(doc, "unknown");
		json_object_del(doc, "unknown_at");
		json_object_del(doc, "sent_from");
		json_object_del(doc, "marker");
		return;
	}
	json_object_set_new(doc, "unknown", json_true());
	if (j->sent_from)
		json_object_set_new(doc, "sent_from", json_integer(j->sent_from));
	if (j->unknown_at)
		json_object_set_new(doc, "unknown_at", json_integer(j->unknown_at));
	if (j->old_marker[0])
		json_object_set_new(doc, "marker", json_string(j->old_marker));
}

/* The earliest send of the order that may have made a bill not found yet, from its doc: 0
 * when none is known. A record written before "sent_from" existed has the time of the last
 * send (or take) in "unknown_at", and reconciled before each send. */
static int64_t doc_sent_from(const json_t *doc)
{
	int64_t v = json_integer_value(json_object_get(doc, "sent_from"));
	if (!v && json_is_true(json_object_get(doc, "unknown")))
		v = json_integer_value(json_object_get(doc, "unknown_at"));
	return v;
}

/* The order was recorded as posted while the job ran (wdt2jdyctl mark-posted): the job ends
 * there. A bill it saved meanwhile is a second one, put up for review. true when so. */
static bool adopted_meanwhile(wj_txn_t *t, const job_t *j, json_t *doc)
{
	if (strcmp(json_string_value(json_object_get(doc, "state")) ?: "", "saved"))
		return false;
	if (j->out != O_SAVED)
		return true;
	json_t *rv = json_pack("{s:s, s:s, s:s, s:s, s:I, s:O, s:s}", "flow", j->flow,
			       "stockin_no", j->stockin_no, "bill_no", j->bill_no, "bill_id",
			       j->bill_id, "seen", (json_int_t)wj_now(), "other_bill_no",
			       json_object_get(doc, "bill_no") ?: json_null(), "note",
			       "saved while it was being marked as posted: Kingdee holds this bill "
			       "and the one marked (other_bill_no); delete one of them");
	wj_txn_put_json(t, WJ_DB_REVIEW, j->key, j->klen, rv);
	wj_history_note(t, WJ_H_REVIEW, j->flow);
	json_decref(rv);
	json_object_set_new(doc, "review", json_true());
	wj_txn_put_json(t, WJ_DB_DOCS, j->key, j->klen, doc);
	return true;
}

/* An order a backfill found new got its bill or was parked: counted in the backfill's record
 * (new_saved, new_adopted, new_dead), once, while that backfill is the flow's. */
static void backfill_count(wj_txn_t *t, const job_t *j, json_t *doc, outcome_t out)
{
	json_int_t id = json_integer_value(json_object_get(doc, "bf"));
	if (!id || json_is_true(json_object_get(doc, "bf_done")))
		return;
	json_object_set_new(doc, "bf_done", json_true());
	char key[WJ_DOC_KEY_MAX];
	size_t kl = wj_doc_key(key, j->flow, "backfill");
	json_t *job = wj_txn_get_json(t, WJ_DB_CURSORS, key, kl);
	if (job && json_integer_value(json_object_get(job, "id")) == id) {
		const char *k = out == O_DEAD ? "new_dead" : j->adopted[0] ? "new_adopted"
					  : "new_saved";
		json_object_set_new(job, k, json_integer(json_integer_value(json_object_get(job, k))
							 + 1));
		wj_txn_put_json(t, WJ_DB_CURSORS, key, kl, job);
	}
	json_decref(job);
}

static void apply_outcome(wj_txn_t *t, job_t *j, outcome_t *final)
{
	const wj_config_t *cfg = j->d->e->cfg;
	wj_val_t v;
	json_t *doc = NULL;
	if (wj_txn_get(t, WJ_DB_DOCS, j->key, j->klen, &v) == 0)
		doc = json_loadb(v.data, v.len, 0, NULL);
	if (!doc)
		doc = json_deep_copy(j->doc);
	wj_txn_del(t, WJ_DB_INFLIGHT, j->key, j->klen);
	if (adopted_meanwhile(t, j, doc)) {
		json_decref(doc);
		*final = O_NONE;
		return;
	}
	int prio = (int)json_integer_value(json_object_get(doc, "prio"));
	int attempts = (int)json_integer_value(json_object_get(doc, "attempts"));
	json_t *changed = json_incref(json_object_get(doc, "changed_order"));
	json_object_del(doc, "changed_order");
	outcome_t out = j->out;
	char reason[700];
	wj_log_mask(j->reason); /* a remote error may echo a token: never stored */
	snprintf(reason, sizeof(reason), "%s", j->reason);

	if (out == O_RETRY) {
		attempts++;
		wj_stat_add(t, "stat:failed", 1);
		if (!json_object_get(doc, "first_error"))
			json_object_set_new(doc, "first_error", json_string(reason));
		json_object_set_new(doc, "last_error", json_string(reason));
		json_object_set_new(doc, "attempts", json_integer(attempts));
		if ((unsigned)attempts >= cfg->queue.max_attempts) {
			snprintf(reason, sizeof(reason), "gave up after %d attempts: %s", attempts,
				 j->reason);
			out = O_DEAD;
		}
	}
	doc_set_unknown(doc, j);

	switch (out) {
	case O_SAVED: {
		/* what the bill holds: a later change of the order is reviewed against it */
		const wj_mapping_t *m = wj_engine_mapping(j->d->e, j->flow);
		char err[600];
		json_t *view = m ? bill_view(m, cfg, t, j->d->lk_mem, j->order, err, sizeof(err))
				 : NULL;
		j->unknown = false;
		doc_set_unknown(doc, j);
		/* posted: the order is not needed */
		wj_doc_saved(t, j->key, j->klen, doc, j->bill_id, j->bill_no,
			     j->adopted[0] ? j->adopted : NULL, view);
		json_decref(view);
		if (!j->adopted[0])
			wj_history_note(t, WJ_H_SAVED, j->flow);
		j->reviewed = changed &&
			      wj_review_change(t, m, cfg, j->flow, j->key, j->klen, doc, changed,
					       "changed while its bill was being posted") > 0;
		break;
	}
	case O_RETRY: {
		uint64_t b = wj_backoff_ms((unsigned)attempts - 1, cfg->queue.backoff_initial_ms,
					   cfg->queue.backoff_max_ms, wj_rand64());
		if (b < cfg->queue.backoff_initial_ms / 2)
			b = cfg->queue.backoff_initial_ms / 2; /* never a zero-delay retry storm */
		json_object_set_new(doc, "state", json_string("queued"));
		delay_entry(t, j, prio, wj_now_ms() + (int64_t)b);
		break;
	}
	case O_DELAY:
		json_object_set_new(doc, "state", json_string("queued"));
		delay_entry(t, j, prio, wj_now_ms() + j->delay_ms);
		break;
	case O_DEAD:
	default: {
		json_object_set_new(doc, "state", json_string("dead"));
		json_t *order = json_incref(j->order);
		if (j->slim) { /* the dead letter shows the whole order */
			json_decref(order);
			order = wj_txn_get_json(t, WJ_DB_ORDERS, j->key, j->klen);
		}
		const char *first = json_string_value(json_object_get(doc, "first_error"));
		const char *last = json_string_value(json_object_get(doc, "last_error"));
		json_t *dl = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:O, s:O}", "flow",
				       j->flow, "stockin_id", j->id, "stockin_no", j->stockin_no,
				       "reason", reason, "first_error", first ? first : reason,
				       "last_error", last ? last : reason,
				       "attempts", attempts, "ts", (json_int_t)wj_now(), "order",
				       order ? order : json_null(), "body",
				       j->body ? j->body : json_null());
		wj_txn_put_json(t, WJ_DB_DEAD, j->key, j->klen, dl);
		wj_history_note(t, WJ_H_PARKED, j->flow);
		json_decref(dl);
		json_decref(order);
		break;
	}
	}
	if (changed && out != O_SAVED) {
		/* post the newer content next time */
		size_t len;
		char *text = wj_json_canon(changed, &len);
		wj_txn_del(t, WJ_DB_SLIM, j->key, j->klen); /* made from the old content */
		if (text)
			wj_txn_put(t, WJ_DB_ORDERS, j->key, j->klen, text, len);
		else
			t->err = t->err ? t->err : -ENOMEM;
		free(text);
	}
	json_decref(changed);
	if (out == O_SAVED || out == O_DEAD)
		backfill_count(t, j, doc, out);
	wj_txn_put_json(t, WJ_DB_DOCS, j->key, j->klen, doc);
	json_decref(doc);
	*final = out;
}

typedef struct flush_ctx {
	dispatcher_t *d;
	outcome_t finals[256];
	size_t n;
} flush_ctx_t;

/* The job has its outcome and nothing of it is still running: it can be committed. */
static bool settled(const job_t *j)
{
	return j->out != O_NONE && !j->waiting_lookups && !j->calling;
}

static int flush_fn(wj_txn_t *t, void *arg)
{
	flush_ctx_t *c = arg;
	c->n = 0;
	for (job_t *j = c->d->jobs; j && c->n < 256; j = j->next) {
		if (!settled(j))
			continue;
		apply_outcome(t, j, &c->finals[c->n++]);
	}
	return t->err;
}

static void log_outcome(job_t *j, outcome_t final)
{
	char f[1024];
	job_fields(j, f, sizeof(f));
	dispatcher_t *d = j->d;
	uint64_t ms = wj_mono_ms() - j->started;
	switch (final) {
	case O_NONE:
		if (j->out == O_SAVED) {
			wj_warn(MOD, f, "bill %s saved while the order was being marked as posted: "
				"two bills in Kingdee, recorded for review", j->bill_no);
			wj_engine_alert(d->e, WJ_EV_REVIEW, "%s %s: bill %s saved while the order "
					"was being marked as posted", j->flow, j->stockin_no,
					j->bill_no);
		} else
			wj_debug(MOD, f, "marked as posted meanwhile: not posted");
		break;
	case O_SAVED:
		if (!j->adopted[0]) { /* an adopted bill is logged when found */
			d->saved++;
			d->save_ms_total += ms;
			d->save_count++;
			wj_logfmt_kv(f, sizeof(f), "bill_no", j->bill_no);
			wj_logfmt_kv(f, sizeof(f), "bill_id", j->bill_id);
			snprintf(f + strlen(f), sizeof(f) - strlen(f), " ms=%llu",
				 (unsigned long long)ms);
			wj_info(MOD, f, "bill saved");
		}
		if (j->reviewed)
			wj_engine_alert(d->e, WJ_EV_REVIEW, "%s %s: changed while its bill was "
					"being saved", j->flow, j->stockin_no);
		break;
	case O_RETRY:
		d->retried++;
		wj_logfmt_kv(f, sizeof(f), "error", j->reason);
		wj_warn(MOD, f, "save failed: will retry%s", j->unknown ? " (outcome unknown: "
							"reconciling first)" : "");
		break;
	case O_DELAY:
		wj_debug(MOD, f, "postponed: %s", j->reason);
		break;
	case O_DEAD:
		d->dead++;
		wj_logfmt_kv(f, sizeof(f), "reason", j->reason);
		wj_error(MOD, f, "order parked in the dead-letter list");
		wj_engine_set_error(d->e, "order %s: %s", j->stockin_no, j->reason);
		wj_engine_alert(d->e, WJ_EV_DEAD_LETTER, "%s %s: %s", j->flow, j->stockin_no,
				j->reason);
		break;
	default:
		break;
	}
}

/* ---- taking work ---------------------------------------------------------------------------- */

#define TAKE_MAX 64 /* ≥ the highest kingdee.concurrency */

typedef struct taken {
	char key[WJ_DOC_KEY_MAX + 1];
	size_t klen;
	json_t *doc, *order;
	bool slim;
	char slim_id[17];
} taken_t;

typedef struct take_ctx {
	dispatcher_t *d;
	unsigned want;
	taken_t taken[TAKE_MAX];
	size_t n;
	size_t moved;
} take_ctx_t;

static void taken_clear(take_ctx_t *c)
{
	for (size_t i = 0; i < c->n; i++) {
		json_decref(c->taken[i].doc);
		json_decref(c->taken[i].order);
	}
	c->n = 0;
}

static int take_fn(wj_txn_t *t, void *arg)
{
	take_ctx_t *c = arg;
	taken_clear(c); /* a batch may be redone after the map grew */
	c->moved = 0;
	int64_t now = wj_now_ms();
	wj_iter_t it;
	/* Retries that are due go back to the ready queue (bounded per turn). */
	if (wj_iter_open(t, WJ_DB_DELAYED, &it) < 0)
		return t->err;
	for (int r = wj_iter_seek(&it, NULL, 0); r == 0 && c->moved < 1000; r = wj_iter_next(&it)) {
		wj_val_t k = wj_iter_key(&it), v = wj_iter_val(&it);
		if (k.len != 16 || v.len < 2)
			continue;
		if ((int64_t)wj_u64be_get(k.data) > now)
			break;
		uint8_t qk[9];
		qk[0] = ((const uint8_t *)v.data)[0];
		memcpy(qk + 1, (const uint8_t *)k.data + 8, 8);
		wj_txn_put(t, WJ_DB_QUEUE, qk, sizeof(qk), (const uint8_t *)v.data + 1, v.len - 1);
		wj_iter_del(&it);
		c->moved++;
	}
	wj_iter_close(&it);
	if (t->err)
		return t->err;
	if (wj_iter_open(t, WJ_DB_QUEUE, &it) < 0)
		return t->err;
	uint8_t inflight_v[8];
	wj_key_u64be(inflight_v, (uint64_t)now);
	for (int r = wj_iter_seek(&it, NULL, 0); r == 0 && c->n < c->want && c->n < TAKE_MAX;
	     r = wj_iter_next(&it)) {
		wj_val_t k = wj_iter_val(&it);
		taken_t *tk = &c->taken[c->n];
		tk->klen = k.len < WJ_DOC_KEY_MAX ? k.len : WJ_DOC_KEY_MAX;
		memcpy(tk->key, k.data, tk->klen);
		tk->key[tk->klen] = '\0';
		wj_iter_del(&it); /* cursor now on the next entry */
		wj_val_t dv, ov;
		json_t *doc = NULL, *order = NULL;
		if (wj_txn_get(t, WJ_DB_DOCS, tk->key, tk->klen, &dv) == 0)
			doc = json_loadb(dv.data, dv.len, 0, NULL);
		const char *state = json_string_value(json_object_get(doc, "state")) ?: "";
		tk->slim = false;
		if (doc && !strcmp(state, "queued")) {
			/* The projection made for this mapping if there is one, else the order;
			 * parsed before any put moves the data. */
			const wj_mapping_t *m = wj_engine_mapping(c->d->e, tk->key);
			const char *id = m ? wj_mapping_id(m) : NULL;
			size_t il = id ? strlen(id) : 0;
			if (id && wj_txn_get(t, WJ_DB_SLIM, tk->key, tk->klen, &ov) == 0 &&
			    ov.len > il && !memcmp(ov.data, id, il) &&
			    wj_txn_get(t, WJ_DB_ORDERS, tk->key, tk->klen, &dv) == 0) {
				order = json_loadb((const char *)ov.data + il, ov.len - il, 0, NULL);
				tk->slim = order != NULL;
				snprintf(tk->slim_id, sizeof(tk->slim_id), "%s", id);
			}
			if (!order && wj_txn_get(t, WJ_DB_ORDERS, tk->key, tk->klen, &ov) == 0)
				order = json_loadb(ov.data, ov.len, 0, NULL);
		}
		if (!order) {
			json_decref(doc); /* stale entry (saved, dead or gone): drop it */
			continue;
		}
		json_object_set_new(doc, "state", json_string("inflight"));
		wj_txn_put_json(t, WJ_DB_DOCS, tk->key, tk->klen, doc);
		wj_txn_put(t, WJ_DB_INFLIGHT, tk->key, tk->klen, inflight_v, sizeof(inflight_v));
		tk->doc = doc;
		tk->order = order;
		c->n++;
	}
	wj_iter_close(&it);
	return t->err;
}

/* How many more jobs to take: a slot's worth ahead of each running job, so that slots freed
 * between two group commits are refilled without waiting for one. */
static unsigned take_room(const dispatcher_t *d, unsigned releasing)
{
	const wj_engine_t *e = d->e;
	if (d->stopped || d->closing || e->stopping)
		return 0;
	unsigned want = 2 * e->cfg->kingdee.concurrency, kept = d->n_jobs - releasing;
	return kept < want ? want - kept : 0;
}

static void take_free(take_ctx_t *c)
{
	taken_clear(c);
	free(c);
}

static take_ctx_t *take_new(dispatcher_t *d, unsigned want)
{
	take_ctx_t *c = calloc(1, sizeof(*c));
	if (c) {
		c->d = d;
		c->want = want < TAKE_MAX ? want : TAKE_MAX;
	}
	return c;
}

/* After the commit of a take: the taken jobs join the ready list; c is freed. */
static void take_done(dispatcher_t *d, take_ctx_t *c)
{
	for (size_t i = 0; i < c->n; i++) {
		taken_t *tk = &c->taken[i];
		job_t *j = calloc(1, sizeof(*j));
		if (!j)
			break; /* stays in flight in the store; settled at the next start */
		j->d = d;
		j->klen = tk->klen;
		memcpy(j->key, tk->key, tk->klen);
		size_t fl = strnlen(tk->key, tk->klen);
		snprintf(j->flow, sizeof(j->flow), "%.*s", (int)fl, tk->key);
		snprintf(j->id, sizeof(j->id), "%.*s", (int)(fl < tk->klen ? tk->klen - fl - 1 : 0),
			 tk->key + (fl < tk->klen ? fl + 1 : fl));
		j->doc = tk->doc;
		j->order = tk->order;
		j->slim = tk->slim;
		memcpy(j->slim_id, tk->slim_id, sizeof(j->slim_id));
		tk->doc = tk->order = NULL;
		snprintf(j->stockin_no, sizeof(j->stockin_no), "%s",
			 json_string_value(json_object_get(j->doc, "stockin_no")) ?: "?");
		/* An earlier attempt may have reached Kingdee: keep saying so until settled. */
		j->unknown = json_is_true(json_object_get(j->doc, "unknown"));
		if (j->unknown) {
			j->unknown_at = json_integer_value(json_object_get(j->doc, "unknown_at"));
			j->sent_from = doc_sent_from(j->doc);
			if (!j->sent_from) /* replayed from an old record: since the order was seen */
				j->sent_from = 1000 * json_integer_value(
							      json_object_get(j->doc, "first_seen"));
			snprintf(j->old_marker, sizeof(j->old_marker), "%s",
				 json_string_value(json_object_get(j->doc, "marker")) ?: "");
		}
		j->resolved = json_object();
		j->missing = json_object();
		j->next = d->jobs;
		d->jobs = j;
		d->n_jobs++;
		if (d->ready_tail)
			d->ready_tail->rnext = j;
		else
			d->ready_head = j;
		d->ready_tail = j;
		d->n_ready++;
	}
	d->queue_more = c->n >= c->want;
	take_free(c);
}

/* The oldest taken job not started yet, off the ready list. */
static job_t *ready_pop(dispatcher_t *d)
{
	job_t *j = d->ready_head;
	d->ready_head = j->rnext;
	if (!d->ready_head)
		d->ready_tail = NULL;
	j->rnext = NULL;
	d->n_ready--;
	return j;
}

/* Start taken jobs while concurrency slots are free. */
static void start_ready(dispatcher_t *d)
{
	wj_engine_t *e = d->e;
	while (d->ready_head && d->n_running < e->cfg->kingdee.concurrency && !d->stopped &&
	       !d->closing && !e->stopping) {
		job_t *j = ready_pop(d);
		j->running = true;
		d->n_running++;
		j->started = wj_mono_ms();
		start_job(j);
	}
}

/* Free slots and nothing taken ahead to fill them. */
static bool starving(const dispatcher_t *d)
{
	return !d->ready_head && d->n_running < d->e->cfg->kingdee.concurrency;
}

static void wake(dispatcher_t *d)
{
	/* New work is taken with the next group commit, at once when slots would idle. */
	if (take_room(d, 0))
		flush_after(d, starving(d) ? 0 : GROUP_DELAY_MS);
}

void dispatcher_pump(dispatcher_t *d)
{
	start_ready(d);
	wake(d);
}

void dispatcher_wake(void *arg)
{
	wake(arg);
}

/* ---- group commit: outcomes and the next take in one transaction ----------------------------- */

typedef struct turn_ctx {
	flush_ctx_t f;
	take_ctx_t *take; /* NULL: nothing to take */
} turn_ctx_t;

static int turn_fn(wj_txn_t *t, void *arg)
{
	turn_ctx_t *c = arg;
	int r = flush_fn(t, &c->f);
	if (r == 0 && c->take)
		r = take_fn(t, c->take);
	return r;
}

static void group_commit(dispatcher_t *d)
{
	d->flush_due = 0;
	d->pending = 0;
	turn_ctx_t c = {.f = {.d = d}};
	unsigned releasing = 0;
	for (job_t *j = d->jobs; j && releasing < 256; j = j->next)
		if (settled(j))
			releasing++;
	unsigned room = take_room(d, releasing);
	if (room)
		c.take = take_new(d, room);
	if (wj_engine_write(d->e, turn_fn, &c) < 0) {
		/* Nothing recorded; the jobs stay in memory and in flight. Try again shortly. */
		if (c.take)
			take_free(c.take);
		d->queue_more = false; /* no early retry: wait the second */
		d->hold_until = uv_now(d->e->loop) + 1000;
		flush_after(d, 0);
		return;
	}
	/* Committed: now log and release, in the same order flush_fn visited them. */
	size_t k = 0;
	job_t **pp = &d->jobs;
	bool more = false;
	while (*pp) {
		job_t *j = *pp;
		if (!settled(j)) {
			pp = &j->next;
			continue;
		}
		if (k >= c.f.n) {
			more = true;
			pp = &j->next;
			continue;
		}
		log_outcome(j, c.f.finals[k++]);
		*pp = j->next;
		d->n_jobs--;
		job_free(j);
	}
	if (more)
		flush_after(d, 0);
	if (c.take)
		take_done(d, c.take);
	start_ready(d);
}

/* Refill freed slots; commit the group when it is due, or at once when slots would idle while
 * the queue holds more; else wait for it. */
static void on_timer(uv_timer_t *t)
{
	dispatcher_t *d = t->data;
	start_ready(d);
	if (!d->flush_due)
		return;
	uint64_t now = uv_now(d->e->loop);
	if (now >= d->flush_due || (d->queue_more && starving(d)))
		group_commit(d);
	else
		uv_timer_start(&d->flush_timer, on_timer, d->flush_due - now, 0);
}

/* ---- lifecycle -------------------------------------------------------------------------------- */

/* An order taken for posting when the daemon stopped was recorded as posted since (wdt2jdyctl
 * mark-posted): it stays so. Whether the save then under way reached Kingdee is not known. */
static void recovered_marked(const json_t *doc)
{
	char f[512] = "";
	wj_logfmt_kv(f, sizeof(f), "stockin_no",
		     json_string_value(json_object_get(doc, "stockin_no")) ?: "");
	wj_logfmt_kv(f, sizeof(f), "bill_no",
		     json_string_value(json_object_get(doc, "bill_no")) ?: "");
	wj_warn(MOD, f, "being posted when the daemon stopped, recorded as posted since: not "
		"posted again; if Kingdee holds a bill of it with the daemon's remark too, delete "
		"one");
}

static int recover_fn(wj_txn_t *t, void *arg)
{
	size_t *n = arg;
	*n = 0;
	wj_iter_t it;
	if (wj_iter_open(t, WJ_DB_INFLIGHT, &it) < 0)
		return t->err;
	for (int r = wj_iter_seek(&it, NULL, 0); r == 0; r = wj_iter_next(&it)) {
		wj_val_t k = wj_iter_key(&it), v = wj_iter_val(&it);
		char key[WJ_DOC_KEY_MAX];
		size_t kl = k.len < sizeof(key) ? k.len : sizeof(key);
		memcpy(key, k.data, kl);
		int64_t taken_at = v.len == 8 ? (int64_t)wj_u64be_get(v.data) : wj_now_ms();
		wj_iter_del(&it);
		int64_t now = wj_now_ms();
		wj_val_t dv;
		json_t *doc = NULL;
		if (wj_txn_get(t, WJ_DB_DOCS, key, kl, &dv) == 0)
			doc = json_loadb(dv.data, dv.len, 0, NULL);
		if (doc && !strcmp(json_string_value(json_object_get(doc, "state")) ?: "",
				   "saved")) {
			recovered_marked(doc);
			json_decref(doc);
		} else if (doc) {
			/* A save may have left at any time between the take and the death of the
			 * previous process, and may still be processed: sent no earlier than the
			 * take, and no later than now (the restart), which is what the settle wait
			 * counts from. The exact send time is not recorded: that would cost a
			 * synced commit per save. */
			int64_t from = doc_sent_from(doc);
			if (!from || taken_at < from)
				from = taken_at;
			json_object_set_new(doc, "state", json_string("queued"));
			json_object_set_new(doc, "unknown", json_true());
			json_object_set_new(doc, "sent_from", json_integer(from));
			json_object_set_new(doc, "unknown_at", json_integer(now));
			wj_txn_put_json(t, WJ_DB_DOCS, key, kl, doc);
			uint64_t seq;
			wj_txn_seq_next(t, &seq);
			uint8_t qk[9];
			qk[0] = (uint8_t)json_integer_value(json_object_get(doc, "prio"));
			wj_key_u64be(qk + 1, seq);
			wj_txn_put(t, WJ_DB_QUEUE, qk, sizeof(qk), key, kl);
			json_decref(doc);
			(*n)++;
		}
	}
	wj_iter_close(&it);
	return t->err;
}

int dispatcher_recover(dispatcher_t *d)
{
	size_t n = 0;
	int r = wj_engine_write(d->e, recover_fn, &n);
	if (r == 0 && n)
		wj_warn(MOD, NULL,
			"%zu saves were in flight when the daemon stopped: reconciling them with "
			"Kingdee before any resend", n);
	return r;
}

dispatcher_t *dispatcher_new(wj_engine_t *e)
{
	dispatcher_t *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->e = e;
	d->lk_mem = json_object();
	uv_timer_init(e->loop, &d->flush_timer);
	d->flush_timer.data = d;
	return d;
}

void dispatcher_stop(dispatcher_t *d)
{
	d->stopped = true;
	/* Taken but never started: back to the queue (an unsettled earlier attempt stays so). */
	while (d->ready_head) {
		job_t *j = ready_pop(d);
		j->delay_ms = 0;
		snprintf(j->reason, sizeof(j->reason), "shutting down before sending");
		finish(j, O_DELAY);
	}
}

unsigned dispatcher_active(const dispatcher_t *d)
{
	return d->n_jobs;
}

static void on_flush_timer_closed(uv_handle_t *h)
{
	dispatcher_t *d = h->data;
	json_decref(d->lk_mem);
	free(d);
}

void dispatcher_free(dispatcher_t *d)
{
	if (!d)
		return;
	d->closing = true;
	uv_timer_stop(&d->flush_timer);
	uv_close((uv_handle_t *)&d->flush_timer, on_flush_timer_closed);
	/* Jobs whose calls are still pending are freed by their callbacks. */
	for (job_t *j = d->jobs, *next; j; j = next) {
		next = j->next;
		if (j->calling || j->waiting_lookups)
			j->orphan = true;
		else
			job_free(j);
	}
	/* Lookups in flight keep their memory until their callbacks run (see on_lookup); those
	 * still waiting for the gate will never run. */
	for (lookup_t *l = d->lookups, *next; l; l = next) {
		next = l->next;
		l->d = NULL;
		if (!l->calling)
			on_lookup(NULL, l);
	}
	d->jobs = NULL;
	d->ready_head = d->ready_tail = NULL;
	d->lookups = NULL;
	/* d itself goes when its timer is closed. */
}

json_t *dispatcher_status(dispatcher_t *d)
{
	return json_pack("{s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "active",
			 d->n_running, "taken_ahead", d->n_ready, "adopted_since_start",
			 (json_int_t)d->adopted,
			 "saved_since_start", (json_int_t)d->saved, "retried_since_start",
			 (json_int_t)d->retried, "dead_since_start", (json_int_t)d->dead,
			 "reconciled_found", (json_int_t)d->reconciled_found, "reconciled_missing",
			 (json_int_t)d->reconciled_missing, "reconcile_pages",
			 (json_int_t)d->reconcile_pages, "lookups", (json_int_t)d->lookups_done,
			 "avg_save_ms",
			 d->save_count ? (double)d->save_ms_total / (double)d->save_count : 0.0);
}
