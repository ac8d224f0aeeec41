/* What the dispatcher knows of an order's bill in Kingdee, shared with the poller and with
 * wdt2jdyctl: which listed bill is an order's, what an order's bill holds (to tell a change of
 * the order that matters to its bill from one that does not), and recording a bill as the
 * order's. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/config.h"
#include "lib/mapping.h"
#include "lib/store.h"

/* Days either side of an order's bill date within which skip_existing (and wdt2jdyctl repost)
 * look for a bill made by someone else. */
#define WJ_BILL_DATE_DAYS 7

/* Whether marker occurs in text as a whole token: not next to a character that would continue
 * it ("WDT:RK1" is in "盘盈 WDT:RK1", not in "WDT:RK10" nor "WDT:RK1-2"). */
bool wj_marker_in(const char *text, const char *marker);

/* What makes a listed bill (a row of wj_jdy_list_bills) an order's. Fields NULL or "" are not
 * used; any one that holds is enough. */
typedef struct wj_bill_match {
	const char *marker;     /* a whole token of the remark (wj_marker_in) */
	const char *old_marker; /* the same, for the marker of earlier saves */
	const char *stockin_no; /* a whole token of the remark, or the bill number itself */
	const char *bill_no;    /* the bill number, exactly */
	const char *bill_id;    /* the bill id, exactly */
} wj_bill_match_t;

bool wj_bill_row_matches(const json_t *row, const wj_bill_match_t *m);

/* The bill date of a save body ("billdate" or "bill_date") and the dates days before and after
 * it, "YYYY-MM-DD" (11 bytes each). 0, or -ENOENT when the body has no such date. */
int wj_bill_date_range(const json_t *body, int days, char from[11], char to[11]);

/* What the bill of order holds, as m maps it: the save body with each material and store named
 * by its WDT-side number instead of its Kingdee id (whether it is batch-, shelf-life- or
 * location-managed, its unit and locations come from the lookup cache read in t, when cached).
 * Two orders whose views are equal make the same bill. New reference; NULL when order cannot be
 * mapped, with the reason in err. */
json_t *wj_bill_view(const wj_mapping_t *m, const wj_config_t *cfg, wj_txn_t *t,
		     const json_t *order, char *err, size_t errsize);

/* The fields in which two views differ, field by field:
 *   [{"field": "material_entity[0].qty", "old": "3", "new": "4"}, ...]
 * ("old" or "new" null where a field or line is only on one side). New reference. */
json_t *wj_bill_diff(const json_t *old, const json_t *cur);

/* Record doc (the order stored under key) as saved with the given bill: state "saved",
 * bill_id, bill_no, saved_at, "adopted": how when the bill was made by someone else (NULL when
 * the daemon saved it). The order's text, projection and dead letter go; view (may be NULL) is
 * kept as what the bill holds. doc is changed in place; the caller writes it. Errors are kept
 * in t->err. */
void wj_doc_saved(wj_txn_t *t, const char *key, size_t kl, json_t *doc, const char *bill_id,
		  const char *bill_no, const char *how, const json_t *view);

/* An order whose bill is saved (doc) came back with other content (order): record it for review
 * when the bill it would make differs from the one it has (the "posted" view; a doc without one,
 * or m NULL, is reviewed on any change). The review record carries the changes field by field,
 * the new order and note (NULL: none). 1 when recorded, 0 when the change does not touch the
 * bill, -errno (kept in t->err). */
int wj_review_change(wj_txn_t *t, const wj_mapping_t *m, const wj_config_t *cfg,
		     const char *flow, const char *key, size_t kl, json_t *doc,
		     const json_t *order, const char *note);
