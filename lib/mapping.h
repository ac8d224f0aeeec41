/* Declarative mapping: WDT stock-in order → Kingdee gain-bill body.
 *
 * A mapping has two field lists: "bill" (one value per bill, read from the order) and
 * "lines" (one entry per element of the order's details_list). Each field is one of
 *   {"path": "goods_count", "convert": "number"}         a field of the line (or of the order
 *                                                       in "bill"); "order.x" reads the order
 *   {"path": "stockin_time", "fallback": ["check_time"], "convert": "date"}
 *   {"const": <any JSON value>}
 *   {"template": "WDT:{stockin_no}"}                     {name} = order field as text
 *   {"lookup": "material.id", "path": "spec_no"}         material.id | material.base_unit_id |
 *                                                       store.id | store.location (the
 *                                                       store's "locations" map); the number
 *                                                       is read from path
 * "convert" is "string" (default for paths), "number" (an exact decimal of at most
 * WJ_DECIMAL_DIGITS digits, written as a real that wj_json_dumps_body sends in its shortest
 * exact form; must be > 0 when "positive": true), "integer" (the same, whole) or "date"
 * (YYYY-MM-DD from a WDT time). In lines, "when": "material.batch_managed" |
 * "material.shelf_life_managed" | "store.location_managed" sends a field only when that flag
 * of the line's material (named by the material lookup's path) or store is true, and then
 * requires it. "optional": true leaves a field out when its value is missing (or a zero
 * number); "with": "other" sends it only together with field "other"; "or": "other" lets it be
 * missing only when field "other" is sent.
 * {"extends": "default", "bill": {...}, "lines": {...}} is the default with fields added,
 * replaced, or removed (null).
 * The built-in default is DESIGN.md's table, for api v1 or v2, plus the batch, shelf-life and
 * location fields. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/config.h"

typedef struct wj_mapping wj_mapping_t;

/* Compile spec (NULL → built-in default for api). Errors are "mapping.lines.qty: ..." into err.
 * 0 or -EINVAL. */
int wj_mapping_compile(const json_t *spec, wj_jdy_api_t api, const char *remark_template,
		       wj_mapping_t **out, char *err, size_t errsize);
void wj_mapping_free(wj_mapping_t *m);

/* Lookup callback: kind 'm' (material) or 's' (store) and the WDT-side number; returns the
 * Kingdee object (borrowed; material: "id", "base_unit_id", "batch_managed",
 * "shelf_life_managed"; store: "id", "location_managed", "locations") or NULL when not (yet)
 * known. */
typedef const json_t *(*wj_lookup_fn)(void *arg, char kind, const char *number);

/* Build the body for order. Returns the body (caller owns; send it with wj_json_dumps_body)
 * or NULL with:
 *   -EAGAIN  some lookups returned NULL (fn was called for each; resolve them, call again)
 *   -EINVAL  the order cannot be mapped; err names the order and the line, e.g.
 *            "order RK2026...: details_list[2].goods_count: must be > 0, got \"0.0000\"",
 *            "order RK1: details_list[0].goods_count: \"1e400\" is not a usable quantity: ...",
 *            "order RK1: details_list[2] (SP00007): material is batch-managed but the line has
 *            no batch_no" */
json_t *wj_mapping_apply(const wj_mapping_t *m, const json_t *order, wj_lookup_fn fn, void *arg,
			 int *rc, char *err, size_t errsize);

/* The order reduced to the fields m reads (bill paths, "order.x" and template fields,
 * stockin_no, and per line of lines_from the line paths): applying m to it gives exactly what
 * applying m to the whole order gives (body, error text and marker), in a fraction of the
 * text. New reference. */
json_t *wj_mapping_project(const wj_mapping_t *m, const json_t *order);
/* A fingerprint (16 hex digits) of the fields m reads: a projection made for a mapping with
 * the same id is valid for m. */
const char *wj_mapping_id(const wj_mapping_t *m);

/* The reconciliation marker of an order (its remark), written into buf. 0 or -EINVAL. */
int wj_mapping_marker(const wj_mapping_t *m, const json_t *order, char *buf, size_t size);

/* Expand a "{field}" template against an order. 0, -EINVAL (unknown field) or -ENOSPC. */
int wj_template_expand(const char *tpl, const json_t *order, char *buf, size_t size);
