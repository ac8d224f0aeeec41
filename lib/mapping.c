/* Declarative mapping from a WDT stock-in order to a Kingdee gain-bill body. */
#include "lib/mapping.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/util.h"

typedef enum { SRC_PATH, SRC_CONST, SRC_TEMPLATE, SRC_LOOKUP } src_t;
typedef enum { CONV_STRING, CONV_NUMBER, CONV_DATE } conv_t;
typedef enum { LK_MATERIAL_ID, LK_MATERIAL_UNIT, LK_STORE_ID } lookup_t;

#define MAX_FALLBACK 4

typedef struct field {
	char *name;
	src_t src;
	conv_t conv;
	bool positive;                 /* number must be > 0 */
	char *paths[1 + MAX_FALLBACK]; /* path, then fallbacks */
	size_t n_paths;
	json_t *value;                 /* const */
	char *tpl;                     /* template */
	lookup_t lookup;
} field_t;

struct wj_mapping {
	field_t *bill;
	size_t n_bill;
	field_t *lines;
	size_t n_lines;
	char *lines_from; /* array field of the order holding the lines */
	char *marker_field; /* bill field that carries the marker */
	json_t *order_keys, *line_keys; /* fields read (sets: key → true), for wj_mapping_project */
	char id[17];      /* fingerprint of those sets */
};

static void set_err(char *err, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n < size || size == 0)
		return;
	/* cut short: drop a multi-byte character left incomplete at the end */
	size_t len = strlen(err), k = len;
	while (k > 0 && ((unsigned char)err[k - 1] & 0xC0) == 0x80)
		k--;
	if (k > 0 && ((unsigned char)err[k - 1] & 0x80)) {
		unsigned char lead = (unsigned char)err[k - 1];
		size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
		if (len - (k - 1) < need)
			err[k - 1] = '\0';
	}
}

/* ---- built-in default (DESIGN.md "Default mapping") ---------------------------------- */

static const char *default_spec_v1 =
	"{\"bill\": {"
	"  \"billdate\": {\"path\": \"stockin_time\", \"fallback\": [\"check_time\", \"modified\"],"
	"                 \"convert\": \"date\"},"
	"  \"remark\": {\"template\": \"@REMARK@\"}},"
	" \"lines\": {"
	"  \"materialid_id\": {\"lookup\": \"material.id\", \"path\": \"spec_no\"},"
	"  \"stockid_id\": {\"lookup\": \"store.id\", \"path\": \"order.warehouse_no\"},"
	"  \"qty\": {\"path\": \"goods_count\", \"convert\": \"number\", \"positive\": true},"
	"  \"unit_id\": {\"lookup\": \"material.base_unit_id\", \"path\": \"spec_no\"},"
	"  \"billno\": {\"path\": \"order.src_order_no\"}}}";

static const char *default_spec_v2 =
	"{\"bill\": {"
	"  \"bill_date\": {\"path\": \"stockin_time\", \"fallback\": [\"check_time\", \"modified\"],"
	"                  \"convert\": \"date\"},"
	"  \"remark\": {\"template\": \"@REMARK@\"}},"
	" \"lines\": {"
	"  \"material_id\": {\"lookup\": \"material.id\", \"path\": \"spec_no\"},"
	"  \"stock_id\": {\"lookup\": \"store.id\", \"path\": \"order.warehouse_no\"},"
	"  \"qty\": {\"path\": \"goods_count\", \"convert\": \"number\", \"positive\": true},"
	"  \"unit_id\": {\"lookup\": \"material.base_unit_id\", \"path\": \"spec_no\"}}}";

/* ---- compile ------------------------------------------------------------------------- */

static int compile_field(field_t *f, const char *where, const char *name, json_t *spec,
			 char *err, size_t errsize)
{
	f->name = strdup(name);
	if (!json_is_object(spec)) {
		set_err(err, errsize, "%s.%s: expected an object like {\"path\": \"...\"}", where,
			name);
		return -EINVAL;
	}
	json_t *path = json_object_get(spec, "path"), *cnst = json_object_get(spec, "const"),
	       *tpl = json_object_get(spec, "template"), *lookup = json_object_get(spec, "lookup"),
	       *fallback = json_object_get(spec, "fallback"), *conv = json_object_get(spec, "convert"),
	       *positive = json_object_get(spec, "positive");
	const char *k;
	json_t *v;
	json_object_foreach(spec, k, v) {
		static const char *known[] = {"path", "const", "template", "lookup",
					      "fallback", "convert", "positive"};
		bool ok = false;
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			ok |= !strcmp(k, known[i]);
		if (!ok) {
			set_err(err, errsize, "%s.%s.%s: unknown key", where, name, k);
			return -EINVAL;
		}
	}
	int kinds = !!cnst + !!tpl + !!lookup + (path && !lookup);
	if (kinds != 1) {
		set_err(err, errsize,
			"%s.%s: give exactly one of \"path\", \"const\", \"template\", \"lookup\"",
			where, name);
		return -EINVAL;
	}
	if (path && !json_is_string(path)) {
		set_err(err, errsize, "%s.%s.path: expected a string", where, name);
		return -EINVAL;
	}
	if (path)
		f->paths[f->n_paths++] = strdup(json_string_value(path));
	if (fallback) {
		if (!path || !json_is_array(fallback) || json_array_size(fallback) > MAX_FALLBACK) {
			set_err(err, errsize, "%s.%s.fallback: expected a list of up to %d paths",
				where, name, MAX_FALLBACK);
			return -EINVAL;
		}
		size_t i;
		json_array_foreach(fallback, i, v) {
			if (!json_is_string(v)) {
				set_err(err, errsize, "%s.%s.fallback[%zu]: expected a string", where,
					name, i);
				return -EINVAL;
			}
			f->paths[f->n_paths++] = strdup(json_string_value(v));
		}
	}
	if (conv) {
		const char *c = json_string_value(conv);
		if (c && !strcmp(c, "string"))
			f->conv = CONV_STRING;
		else if (c && !strcmp(c, "number"))
			f->conv = CONV_NUMBER;
		else if (c && !strcmp(c, "date"))
			f->conv = CONV_DATE;
		else {
			set_err(err, errsize, "%s.%s.convert: expected \"string\", \"number\" or \"date\"",
				where, name);
			return -EINVAL;
		}
	}
	if (positive) {
		if (!json_is_boolean(positive)) {
			set_err(err, errsize, "%s.%s.positive: expected true or false", where, name);
			return -EINVAL;
		}
		f->positive = json_is_true(positive);
	}
	if (cnst) {
		f->src = SRC_CONST;
		f->value = json_incref(cnst);
	} else if (tpl) {
		if (!json_is_string(tpl)) {
			set_err(err, errsize, "%s.%s.template: expected a string", where, name);
			return -EINVAL;
		}
		f->src = SRC_TEMPLATE;
		f->tpl = strdup(json_string_value(tpl));
	} else if (lookup) {
		const char *l = json_string_value(lookup);
		f->src = SRC_LOOKUP;
		if (l && !strcmp(l, "material.id"))
			f->lookup = LK_MATERIAL_ID;
		else if (l && !strcmp(l, "material.base_unit_id"))
			f->lookup = LK_MATERIAL_UNIT;
		else if (l && !strcmp(l, "store.id"))
			f->lookup = LK_STORE_ID;
		else {
			set_err(err, errsize,
				"%s.%s.lookup: expected \"material.id\", \"material.base_unit_id\" or "
				"\"store.id\"",
				where, name);
			return -EINVAL;
		}
		if (!path) {
			set_err(err, errsize, "%s.%s: a lookup needs \"path\" (the number to look up)",
				where, name);
			return -EINVAL;
		}
	} else {
		f->src = SRC_PATH;
	}
	return 0;
}

static int compile_list(json_t *obj, const char *where, field_t **out, size_t *n, char *err,
			size_t errsize)
{
	if (!json_is_object(obj) || json_object_size(obj) == 0) {
		set_err(err, errsize, "%s: expected a non-empty object of fields", where);
		return -EINVAL;
	}
	*out = calloc(json_object_size(obj), sizeof(field_t));
	if (!*out)
		return -ENOMEM;
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v) {
		int r = compile_field(&(*out)[*n], where, k, v, err, errsize);
		(*n)++;
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- projection: the fields a mapping reads ------------------------------------------ */

static void add_key(json_t *set, const char *k)
{
	json_object_set_new(set, k, json_true());
}

/* A path read in bill (line false) or in a line: "order.x" and bill paths name order fields. */
static void add_path(wj_mapping_t *m, const char *path, bool line)
{
	if (!strncmp(path, "order.", 6))
		add_key(m->order_keys, path + 6);
	else
		add_key(line ? m->line_keys : m->order_keys, path);
}

/* Template fields "{name}" are order fields (parsed as wj_template_expand does). */
static void add_template(wj_mapping_t *m, const char *tpl)
{
	for (const char *p = tpl; (p = strchr(p, '{'));) {
		const char *e = strchr(p, '}');
		if (!e)
			return;
		char name[128];
		size_t n = (size_t)(e - p - 1);
		if (n > 0 && n < sizeof(name)) {
			memcpy(name, p + 1, n);
			name[n] = '\0';
			add_key(m->order_keys, name);
		}
		p = e + 1;
	}
}

static void add_fields(wj_mapping_t *m, const field_t *f, size_t n, bool line)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < f[i].n_paths; j++)
			add_path(m, f[i].paths[j], line);
		if (f[i].tpl)
			add_template(m, f[i].tpl);
	}
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void append_keys(wj_buf_t *b, const json_t *set)
{
	const char **keys = malloc((json_object_size(set) + 1) * sizeof(*keys));
	size_t n = 0;
	const char *k;
	json_t *v;
	if (!keys)
		return;
	json_object_foreach((json_t *)set, k, v)
		keys[n++] = k;
	qsort(keys, n, sizeof(*keys), str_cmp); /* the id must not depend on spec order */
	for (size_t i = 0; i < n; i++) {
		wj_buf_append(b, keys[i], strlen(keys[i]));
		wj_buf_append(b, "", 1);
	}
	free(keys);
}

static int collect_keys(wj_mapping_t *m)
{
	m->order_keys = json_object();
	m->line_keys = json_object();
	if (!m->order_keys || !m->line_keys)
		return -ENOMEM;
	add_key(m->order_keys, "stockin_no"); /* named in every message */
	add_key(m->order_keys, m->lines_from);
	add_fields(m, m->bill, m->n_bill, false);
	add_fields(m, m->lines, m->n_lines, true);
	wj_buf_t b = {0};
	append_keys(&b, m->order_keys);
	wj_buf_append(&b, "|", 1);
	wj_buf_append(&b, m->lines_from, strlen(m->lines_from));
	wj_buf_append(&b, "|", 1);
	append_keys(&b, m->line_keys);
	uint8_t h[32];
	int r = b.data ? wj_sha256(b.data, b.len, h) : -ENOMEM;
	wj_buf_free(&b);
	if (r < 0)
		return r;
	wj_hex(h, 8, m->id, false);
	return 0;
}

const char *wj_mapping_id(const wj_mapping_t *m)
{
	return m->id;
}

static json_t *project_object(const json_t *obj, const json_t *keys)
{
	json_t *out = json_object();
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)keys, k, v) {
		json_t *x = json_object_get(obj, k);
		if (x)
			json_object_set(out, k, x);
	}
	return out;
}

json_t *wj_mapping_project(const wj_mapping_t *m, const json_t *order)
{
	if (!json_is_object(order))
		return json_incref((json_t *)order);
	json_t *out = project_object(order, m->order_keys);
	json_t *src = json_object_get(order, m->lines_from);
	if (json_is_array(src)) {
		json_t *lines = json_array();
		size_t i;
		json_t *line;
		json_array_foreach(src, i, line)
			json_array_append_new(lines, json_is_object(line)
							     ? project_object(line, m->line_keys)
							     : json_incref(line));
		json_object_set_new(out, m->lines_from, lines);
	}
	return out;
}

int wj_mapping_compile(const json_t *spec, wj_jdy_api_t api, const char *remark_template,
		       wj_mapping_t **out, char *err, size_t errsize)
{
	json_t *def = NULL;
	int r = -ENOMEM;
	wj_mapping_t *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (!spec) {
		json_error_t je;
		def = json_loads(api == WJ_JDY_V2 ? default_spec_v2 : default_spec_v1, 0, &je);
		if (!def)
			goto fail;
		json_t *remark = json_object_get(json_object_get(def, "bill"), "remark");
		json_object_set_new(remark, "template",
				    json_string(remark_template ? remark_template
								: "WDT:{stockin_no}"));
		spec = def;
	}
	r = -EINVAL;
	if (!json_is_object(spec)) {
		set_err(err, errsize, "mapping: expected \"default\" or an object");
		goto fail;
	}
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)spec, k, v) {
		if (strcmp(k, "bill") && strcmp(k, "lines") && strcmp(k, "lines_from")) {
			set_err(err, errsize, "mapping.%s: unknown key", k);
			goto fail;
		}
	}
	json_t *from = json_object_get(spec, "lines_from");
	if (from && !json_is_string(from)) {
		set_err(err, errsize, "mapping.lines_from: expected a string");
		goto fail;
	}
	m->lines_from = strdup(from ? json_string_value(from) : "details_list");
	if ((r = compile_list(json_object_get(spec, "bill"), "mapping.bill", &m->bill, &m->n_bill,
			      err, errsize)) < 0 ||
	    (r = compile_list(json_object_get(spec, "lines"), "mapping.lines", &m->lines,
			      &m->n_lines, err, errsize)) < 0)
		goto fail;
	for (size_t i = 0; i < m->n_bill; i++) {
		if (m->bill[i].src == SRC_LOOKUP) {
			set_err(err, errsize, "mapping.bill.%s: lookups are only allowed in lines",
				m->bill[i].name);
			r = -EINVAL;
			goto fail;
		}
		if (!strcmp(m->bill[i].name, "remark"))
			m->marker_field = m->bill[i].name;
	}
	if (!m->marker_field) {
		set_err(err, errsize,
			"mapping.bill.remark: required (it carries the marker used to detect duplicates)");
		r = -EINVAL;
		goto fail;
	}
	if ((r = collect_keys(m)) < 0)
		goto fail;
	json_decref(def);
	*out = m;
	return 0;
fail:
	json_decref(def);
	wj_mapping_free(m);
	return r;
}

static void free_fields(field_t *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(f[i].name);
		for (size_t j = 0; j < f[i].n_paths; j++)
			free(f[i].paths[j]);
		json_decref(f[i].value);
		free(f[i].tpl);
	}
	free(f);
}

void wj_mapping_free(wj_mapping_t *m)
{
	if (!m)
		return;
	free_fields(m->bill, m->n_bill);
	free_fields(m->lines, m->n_lines);
	free(m->lines_from);
	json_decref(m->order_keys);
	json_decref(m->line_keys);
	free(m);
}

/* ---- apply --------------------------------------------------------------------------- */

int wj_template_expand(const char *tpl, const json_t *order, char *buf, size_t size)
{
	size_t o = 0;
	for (const char *p = tpl; *p;) {
		if (*p == '{') {
			const char *e = strchr(p, '}');
			if (!e)
				return -EINVAL;
			char name[128];
			size_t n = (size_t)(e - p - 1);
			if (n == 0 || n >= sizeof(name))
				return -EINVAL;
			memcpy(name, p + 1, n);
			name[n] = '\0';
			char val[512];
			if (wj_json_text(json_object_get(order, name), val, sizeof(val)) < 0)
				return -EINVAL;
			size_t vl = strlen(val);
			if (o + vl >= size)
				return -ENOSPC;
			memcpy(buf + o, val, vl);
			o += vl;
			p = e + 1;
		} else {
			if (o + 1 >= size)
				return -ENOSPC;
			buf[o++] = *p++;
		}
	}
	buf[o] = '\0';
	return 0;
}

typedef struct ctx {
	const json_t *order;
	const char *stockin_no;
	wj_lookup_fn fn;
	void *arg;
	bool missing;
	char *err;
	size_t errsize;
} ctx_t;

/* Resolve a path against the line (NULL in "bill") or, with the "order." prefix, the order. */
static const json_t *resolve(const ctx_t *c, const json_t *line, const char *path)
{
	if (!strncmp(path, "order.", 6))
		return json_object_get(c->order, path + 6);
	return json_object_get(line ? line : c->order, path);
}

/* s (at least 10 bytes) starts with "YYYY-MM-DD": digits where digits belong, so that the cut
 * after it is a whole date and never inside a multi-byte character. */
static bool date_prefix(const char *s)
{
	for (int i = 0; i < 10; i++) {
		bool dash = i == 4 || i == 7;
		if (dash ? s[i] != '-' : !(s[i] >= '0' && s[i] <= '9'))
			return false;
	}
	return true;
}

/* A value as shown in an error message; never leaves buf unset. */
static void shown_text(const json_t *v, char *buf, size_t size)
{
	if (wj_json_text(v, buf, size) == 0)
		return;
	const char *what = json_is_string(v) ? "(a long text)" : json_is_object(v) ? "(an object)" :
			   json_is_array(v) ? "(an array)" : json_is_true(v) ? "true" : "false";
	snprintf(buf, size, "%s", what);
}

static json_t *field_value(ctx_t *c, const field_t *f, const json_t *line, const char *where)
{
	char text[512];
	const json_t *src = NULL;
	const char *used = f->n_paths ? f->paths[0] : f->name;
	switch (f->src) {
	case SRC_CONST:
		return json_incref(f->value);
	case SRC_TEMPLATE:
		if (wj_template_expand(f->tpl, c->order, text, sizeof(text)) < 0) {
			set_err(c->err, c->errsize, "order %s: %s: template \"%s\" names a missing field",
				c->stockin_no, where, f->tpl);
			return NULL;
		}
		return json_string(text);
	case SRC_PATH:
	case SRC_LOOKUP:
		for (size_t i = 0; i < f->n_paths && !src; i++) {
			const json_t *v = resolve(c, line, f->paths[i]);
			/* WDT writes unset times as "0000-00-00 00:00:00": fall through to the next. */
			bool zero_time = f->conv == CONV_DATE && json_is_string(v) &&
					 !strncmp(json_string_value(v), "0000-00-00", 10);
			if (v && !json_is_null(v) && !(json_is_string(v) && !json_string_length(v)) &&
			    !zero_time) {
				src = v;
				used = f->paths[i];
			}
		}
		break;
	}
	if (!src) {
		set_err(c->err, c->errsize, "order %s: %s%s: missing", c->stockin_no, where, used);
		return NULL;
	}
	if (f->src == SRC_LOOKUP) {
		if (wj_json_text(src, text, sizeof(text)) < 0) {
			set_err(c->err, c->errsize, "order %s: %s%s: expected a text value",
				c->stockin_no, where, used);
			return NULL;
		}
		const json_t *obj = c->fn ? c->fn(c->arg, f->lookup == LK_STORE_ID ? 's' : 'm', text)
					 : NULL;
		if (!obj) {
			c->missing = true;
			return json_null();
		}
		const char *key = f->lookup == LK_MATERIAL_UNIT ? "base_unit_id" : "id";
		const json_t *v = json_object_get(obj, key);
		char idtext[256];
		if (!v || wj_json_text(v, idtext, sizeof(idtext)) < 0 || !idtext[0]) {
			set_err(c->err, c->errsize, "order %s: %s%s: Kingdee %s %s has no %s",
				c->stockin_no, where, used, f->lookup == LK_STORE_ID ? "store" : "material",
				text, key);
			return NULL;
		}
		return json_string(idtext);
	}
	switch (f->conv) {
	case CONV_NUMBER: {
		/* the shortest exact decimal as a real, which wj_json_dumps_body writes back as
		 * that text */
		char dec[64];
		const char *why = NULL;
		const char *noun = f->positive ? "quantity" : "number";
		int r = wj_json_decimal(src, dec, sizeof(dec), &why);
		if (r == 0 && f->positive && (dec[0] == '-' || !strcmp(dec, "0"))) {
			shown_text(src, text, sizeof(text));
			set_err(c->err, c->errsize, "order %s: %s%s: must be > 0, got \"%s\"",
				c->stockin_no, where, used, text);
			return NULL;
		}
		if (r < 0) {
			shown_text(src, text, sizeof(text));
			set_err(c->err, c->errsize, "order %s: %s%s: \"%s\" is not a usable %s: %s",
				c->stockin_no, where, used, text, noun, why ? why : "too long");
			return NULL;
		}
		return json_real(strtod(dec, NULL));
	}
	case CONV_DATE:
		if (wj_json_text(src, text, sizeof(text)) < 0 || strlen(text) < 10 ||
		    !date_prefix(text)) {
			set_err(c->err, c->errsize, "order %s: %s%s: expected a time like "
				"\"2026-11-01 12:00:00\"", c->stockin_no, where, used);
			return NULL;
		}
		text[10] = '\0';
		return json_string(text);
	case CONV_STRING:
	default:
		if (json_is_string(src))
			return json_incref((json_t *)src);
		if (wj_json_text(src, text, sizeof(text)) < 0) {
			set_err(c->err, c->errsize, "order %s: %s%s: expected a text value",
				c->stockin_no, where, used);
			return NULL;
		}
		return json_string(text);
	}
}

json_t *wj_mapping_apply(const wj_mapping_t *m, const json_t *order, wj_lookup_fn fn, void *arg,
			 int *rc, char *err, size_t errsize)
{
	char no[128] = "?";
	wj_json_text(json_object_get(order, "stockin_no"), no, sizeof(no));
	ctx_t c = {.order = order, .stockin_no = no, .fn = fn, .arg = arg, .err = err,
		   .errsize = errsize};
	json_t *body = json_object(), *lines = json_array();
	char where[160];
	*rc = -EINVAL;
	if (!json_is_object(order)) {
		set_err(err, errsize, "order: not an object");
		goto fail;
	}
	for (size_t i = 0; i < m->n_bill; i++) {
		snprintf(where, sizeof(where), "%s", "");
		json_t *v = field_value(&c, &m->bill[i], NULL, where);
		if (!v)
			goto fail;
		json_object_set_new(body, m->bill[i].name, v);
	}
	const json_t *src = json_object_get(order, m->lines_from);
	if (!json_is_array(src) || json_array_size(src) == 0) {
		set_err(err, errsize, "order %s: %s: no lines", no, m->lines_from);
		goto fail;
	}
	size_t i;
	const json_t *line;
	json_array_foreach(src, i, line) {
		if (!json_is_object(line)) {
			set_err(err, errsize, "order %s: %s[%zu]: not an object", no, m->lines_from, i);
			goto fail;
		}
		json_t *out = json_object();
		json_array_append_new(lines, out);
		snprintf(where, sizeof(where), "%s[%zu].", m->lines_from, i);
		for (size_t j = 0; j < m->n_lines; j++) {
			json_t *v = field_value(&c, &m->lines[j], line, where);
			if (!v)
				goto fail;
			json_object_set_new(out, m->lines[j].name, v);
		}
	}
	if (c.missing) {
		*rc = -EAGAIN;
		goto fail;
	}
	json_object_set_new(body, "material_entity", lines);
	*rc = 0;
	return body;
fail:
	json_decref(lines);
	json_decref(body);
	return NULL;
}

int wj_mapping_marker(const wj_mapping_t *m, const json_t *order, char *buf, size_t size)
{
	for (size_t i = 0; i < m->n_bill; i++) {
		const field_t *f = &m->bill[i];
		if (f->name != m->marker_field)
			continue;
		if (f->src == SRC_TEMPLATE)
			return wj_template_expand(f->tpl, order, buf, size);
		if (f->src == SRC_CONST)
			return -EINVAL; /* a constant cannot tell bills apart */
		for (size_t j = 0; j < f->n_paths; j++)
			if (wj_json_text(json_object_get(order, f->paths[j]), buf, size) == 0 && buf[0])
				return 0;
		return -EINVAL;
	}
	return -EINVAL;
}
