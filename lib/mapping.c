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
typedef enum { CONV_STRING, CONV_NUMBER, CONV_INTEGER, CONV_DATE } conv_t;
typedef enum { LK_MATERIAL_ID, LK_MATERIAL_UNIT, LK_STORE_ID, LK_STORE_LOCATION } lookup_t;

/* Lookup flags (interface of the lookup objects) a field can depend on with "when". */
typedef struct flag {
	const char *name; /* as written in "when" */
	char kind;        /* 'm' material, 's' store */
	const char *key;  /* boolean key of the Kingdee object */
	const char *says; /* "material is batch-managed" */
} flag_t;

static const flag_t FLAGS[] = {
	{"material.batch_managed", 'm', "batch_managed", "material is batch-managed"},
	{"material.shelf_life_managed", 'm', "shelf_life_managed",
	 "material is managed by shelf life"},
	{"store.location_managed", 's', "location_managed", "store is location-managed"},
};

#define MAX_FALLBACK 4

typedef struct field {
	char *name;
	src_t src;
	conv_t conv;
	bool positive;                 /* number must be > 0 */
	bool optional;                 /* a missing value (or a zero number) leaves the field out */
	char *paths[1 + MAX_FALLBACK]; /* path, then fallbacks */
	size_t n_paths;
	json_t *value;                 /* const */
	char *tpl;                     /* template */
	lookup_t lookup;
	const flag_t *when;            /* sent only when this flag of the line's subject holds */
	char *with;                    /* sent only when this other field of the line is */
	char *or;                      /* may be missing only when this other field is sent */
} field_t;

struct wj_mapping {
	field_t *bill;
	size_t n_bill;
	field_t *lines;
	size_t n_lines;
	char *lines_from; /* array field of the order holding the lines */
	char *marker_field; /* bill field that carries the marker */
	const field_t *material, *store; /* line fields naming the line's material and store */
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

/* Batch, shelf-life and location fields are sent only where the Kingdee material or store is
 * managed that way (and are then required, except the optional ones); kf_type 1 = days. */
static const char *default_spec_v1 =
	"{\"bill\": {"
	"  \"billdate\": {\"path\": \"stockin_time\", \"fallback\": [\"check_time\", \"modified\"],"
	"                 \"convert\": \"date\"},"
	"  \"remark\": {\"template\": \"@REMARK@\"}},"
	" \"lines\": {"
	"  \"materialid_id\": {\"lookup\": \"material.id\", \"path\": \"spec_no\"},"
	"  \"stockid_id\": {\"lookup\": \"store.id\", \"path\": \"order.warehouse_no\"},"
	"  \"spid_id\": {\"lookup\": \"store.location\", \"path\": \"position_no\","
	"                \"when\": \"store.location_managed\"},"
	"  \"qty\": {\"path\": \"goods_count\", \"convert\": \"number\", \"positive\": true},"
	"  \"unit_id\": {\"lookup\": \"material.base_unit_id\", \"path\": \"spec_no\"},"
	"  \"billno\": {\"path\": \"order.src_order_no\"},"
	"  \"batchno\": {\"path\": \"batch_no\", \"when\": \"material.batch_managed\"},"
	"  \"kfdate\": {\"path\": \"production_date\", \"convert\": \"date\","
	"               \"when\": \"material.shelf_life_managed\"},"
	"  \"kfperiod\": {\"path\": \"validity_days\", \"convert\": \"integer\", \"or\": \"validdate\","
	"                 \"when\": \"material.shelf_life_managed\"},"
	"  \"kftype\": {\"const\": \"1\", \"with\": \"kfperiod\"},"
	"  \"validdate\": {\"path\": \"expire_date\", \"convert\": \"date\", \"optional\": true,"
	"                  \"when\": \"material.shelf_life_managed\"}}}";

static const char *default_spec_v2 =
	"{\"bill\": {"
	"  \"bill_date\": {\"path\": \"stockin_time\", \"fallback\": [\"check_time\", \"modified\"],"
	"                  \"convert\": \"date\"},"
	"  \"remark\": {\"template\": \"@REMARK@\"}},"
	" \"lines\": {"
	"  \"material_id\": {\"lookup\": \"material.id\", \"path\": \"spec_no\"},"
	"  \"stock_id\": {\"lookup\": \"store.id\", \"path\": \"order.warehouse_no\"},"
	"  \"sp_id\": {\"lookup\": \"store.location\", \"path\": \"position_no\","
	"              \"when\": \"store.location_managed\"},"
	"  \"qty\": {\"path\": \"goods_count\", \"convert\": \"number\", \"positive\": true},"
	"  \"unit_id\": {\"lookup\": \"material.base_unit_id\", \"path\": \"spec_no\"},"
	"  \"batch_no\": {\"path\": \"batch_no\", \"when\": \"material.batch_managed\"},"
	"  \"kf_date\": {\"path\": \"production_date\", \"convert\": \"date\","
	"                \"when\": \"material.shelf_life_managed\"},"
	"  \"kf_period\": {\"path\": \"validity_days\", \"convert\": \"integer\","
	"                  \"or\": \"valid_date\", \"when\": \"material.shelf_life_managed\"},"
	"  \"kf_type\": {\"const\": \"1\", \"with\": \"kf_period\"},"
	"  \"valid_date\": {\"path\": \"expire_date\", \"convert\": \"date\", \"optional\": true,"
	"                   \"when\": \"material.shelf_life_managed\"}}}";

/* ---- compile ------------------------------------------------------------------------- */

static const char *const KNOWN_KEYS[] = {"path", "const", "template", "lookup", "fallback",
					 "convert", "positive", "optional", "when", "with", "or"};

/* Names in "convert" and "lookup", in the order of their enums. */
static const char *const CONVERTS[] = {"string", "number", "integer", "date"};
static const char *const LOOKUPS[] = {"material.id", "material.base_unit_id", "store.id",
				      "store.location"};

/* The index of v's text among names[0..n), or -1. */
static int pick(const json_t *v, const char *const *names, size_t n)
{
	const char *s = json_string_value(v);
	for (size_t i = 0; s && i < n; i++)
		if (!strcmp(s, names[i]))
			return (int)i;
	return -1;
}

static int compile_convert(field_t *f, const char *where, const json_t *conv, char *err,
			   size_t errsize)
{
	int i = pick(conv, CONVERTS, sizeof(CONVERTS) / sizeof(CONVERTS[0]));
	if (i < 0) {
		set_err(err, errsize,
			"%s.%s.convert: expected \"string\", \"number\", \"integer\" or \"date\"",
			where, f->name);
		return -EINVAL;
	}
	f->conv = (conv_t)i;
	return 0;
}

static int compile_lookup(field_t *f, const char *where, const json_t *lookup, char *err,
			  size_t errsize)
{
	int i = pick(lookup, LOOKUPS, sizeof(LOOKUPS) / sizeof(LOOKUPS[0]));
	if (i < 0) {
		set_err(err, errsize,
			"%s.%s.lookup: expected \"material.id\", \"material.base_unit_id\", "
			"\"store.id\" or \"store.location\"",
			where, f->name);
		return -EINVAL;
	}
	f->src = SRC_LOOKUP;
	f->lookup = (lookup_t)i;
	return 0;
}

static int compile_when(field_t *f, const char *where, const json_t *when, char *err,
			size_t errsize)
{
	const char *w = json_string_value(when);
	for (size_t i = 0; w && i < sizeof(FLAGS) / sizeof(FLAGS[0]); i++) {
		if (!strcmp(w, FLAGS[i].name)) {
			f->when = &FLAGS[i];
			return 0;
		}
	}
	set_err(err, errsize,
		"%s.%s.when: expected \"material.batch_managed\", \"material.shelf_life_managed\" "
		"or \"store.location_managed\"",
		where, f->name);
	return -EINVAL;
}

static int compile_bool(bool *out, const char *where, const char *name, const char *key,
			const json_t *v, char *err, size_t errsize)
{
	if (!v)
		return 0;
	if (!json_is_boolean(v)) {
		set_err(err, errsize, "%s.%s.%s: expected true or false", where, name, key);
		return -EINVAL;
	}
	*out = json_is_true(v);
	return 0;
}

/* The name of another field ("with", "or"). */
static int compile_name(char **out, const char *where, const char *name, const char *key,
			const json_t *v, char *err, size_t errsize)
{
	if (!v)
		return 0;
	if (!json_is_string(v)) {
		set_err(err, errsize, "%s.%s.%s: expected the name of another field", where, name,
			key);
		return -EINVAL;
	}
	*out = strdup(json_string_value(v));
	return 0;
}

static int compile_paths(field_t *f, const char *where, const json_t *path,
			 const json_t *fallback, char *err, size_t errsize)
{
	if (path && !json_is_string(path)) {
		set_err(err, errsize, "%s.%s.path: expected a string", where, f->name);
		return -EINVAL;
	}
	if (path)
		f->paths[f->n_paths++] = strdup(json_string_value(path));
	if (!fallback)
		return 0;
	if (!path || !json_is_array(fallback) || json_array_size(fallback) > MAX_FALLBACK) {
		set_err(err, errsize, "%s.%s.fallback: expected a list of up to %d paths", where,
			f->name, MAX_FALLBACK);
		return -EINVAL;
	}
	size_t i;
	json_t *v;
	json_array_foreach(fallback, i, v) {
		if (!json_is_string(v)) {
			set_err(err, errsize, "%s.%s.fallback[%zu]: expected a string", where,
				f->name, i);
			return -EINVAL;
		}
		f->paths[f->n_paths++] = strdup(json_string_value(v));
	}
	return 0;
}

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
	       *conv = json_object_get(spec, "convert"), *when = json_object_get(spec, "when"),
	       *with = json_object_get(spec, "with");
	const char *k;
	json_t *v;
	json_object_foreach(spec, k, v) {
		bool ok = false;
		for (size_t i = 0; i < sizeof(KNOWN_KEYS) / sizeof(KNOWN_KEYS[0]); i++)
			ok |= !strcmp(k, KNOWN_KEYS[i]);
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
	int r;
	if ((r = compile_paths(f, where, path, json_object_get(spec, "fallback"), err,
			       errsize)) < 0 ||
	    (conv && (r = compile_convert(f, where, conv, err, errsize)) < 0) ||
	    (r = compile_bool(&f->positive, where, name, "positive",
			      json_object_get(spec, "positive"), err, errsize)) < 0 ||
	    (r = compile_bool(&f->optional, where, name, "optional",
			      json_object_get(spec, "optional"), err, errsize)) < 0 ||
	    (when && (r = compile_when(f, where, when, err, errsize)) < 0))
		return r;
	if ((r = compile_name(&f->with, where, name, "with", with, err, errsize)) < 0 ||
	    (r = compile_name(&f->or, where, name, "or", json_object_get(spec, "or"), err,
			      errsize)) < 0)
		return r;
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
		if ((r = compile_lookup(f, where, lookup, err, errsize)) < 0)
			return r;
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

/* The built-in default for api with its remark template. New reference or NULL. */
static json_t *default_spec(wj_jdy_api_t api, const char *remark_template)
{
	json_error_t je;
	json_t *def = json_loads(api == WJ_JDY_V2 ? default_spec_v2 : default_spec_v1, 0, &je);
	json_t *remark = json_object_get(json_object_get(def, "bill"), "remark");
	if (remark)
		json_object_set_new(remark, "template",
				    json_string(remark_template ? remark_template
								: "WDT:{stockin_no}"));
	return def;
}

/* Apply the fields of ext ("bill" or "lines" of an extending mapping) to base: each field is
 * added or replaced, or removed when null. */
static int extend_list(json_t *base, const char *list, const json_t *ext, char *err,
		       size_t errsize)
{
	if (!ext)
		return 0;
	if (!json_is_object(ext)) {
		set_err(err, errsize, "mapping.%s: expected an object of fields", list);
		return -EINVAL;
	}
	json_t *fields = json_object_get(base, list);
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)ext, k, v) {
		if (!json_is_null(v)) {
			json_object_set(fields, k, v);
		} else if (json_object_del(fields, k) < 0) {
			set_err(err, errsize,
				"mapping.%s.%s: null removes a field of the default, which has none "
				"of that name",
				list, k);
			return -EINVAL;
		}
	}
	return 0;
}

/* The mapping spec to compile: the default (spec NULL), spec itself, or the default extended
 * by spec ({"extends": "default", ...}). New reference in *out. */
static int resolve_spec(const json_t *spec, wj_jdy_api_t api, const char *remark_template,
			json_t **out, char *err, size_t errsize)
{
	const json_t *ext = json_object_get(spec, "extends");
	*out = NULL;
	if (spec && !ext) {
		*out = json_incref((json_t *)spec);
		return 0;
	}
	if (ext && (!json_is_string(ext) || strcmp(json_string_value(ext), "default"))) {
		set_err(err, errsize, "mapping.extends: expected \"default\"");
		return -EINVAL;
	}
	json_t *def = default_spec(api, remark_template);
	if (!def)
		return -ENOMEM;
	const char *k;
	json_t *v;
	int r = 0;
	json_object_foreach((json_t *)spec, k, v) {
		if (!strcmp(k, "bill") || !strcmp(k, "lines"))
			r = extend_list(def, k, v, err, errsize);
		else if (!strcmp(k, "lines_from"))
			json_object_set(def, k, v);
		else if (strcmp(k, "extends")) {
			set_err(err, errsize, "mapping.%s: unknown key", k);
			r = -EINVAL;
		}
		if (r < 0) {
			json_decref(def);
			return r;
		}
	}
	*out = def;
	return 0;
}

static const field_t *field_named(const field_t *f, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(f[i].name, name))
			return &f[i];
	return NULL;
}

static const field_t *first_lookup(const wj_mapping_t *m, lookup_t lk)
{
	for (size_t i = 0; i < m->n_lines; i++)
		if (m->lines[i].src == SRC_LOOKUP && m->lines[i].lookup == lk)
			return &m->lines[i];
	return NULL;
}

/* "with" names another field of the same list that has no "with" itself; "or" another
 * field of the same list. */
static int check_names(const field_t *f, size_t n, const char *where, char *err,
		       size_t errsize)
{
	for (size_t i = 0; i < n; i++) {
		const field_t *w = f[i].with ? field_named(f, n, f[i].with) : NULL;
		const field_t *o = f[i].or ? field_named(f, n, f[i].or) : NULL;
		if (f[i].with && (!w || w == &f[i] || w->with)) {
			set_err(err, errsize, "%s.%s.with: expected the name of another field of %s "
				"(one without \"with\")", where, f[i].name, where);
			return -EINVAL;
		}
		if (f[i].or && (!o || o == &f[i])) {
			set_err(err, errsize, "%s.%s.or: expected the name of another field of %s",
				where, f[i].name, where);
			return -EINVAL;
		}
	}
	return 0;
}

/* Fields that depend on a line's material or store need a lookup field that names it. */
static int check_subjects(wj_mapping_t *m, char *err, size_t errsize)
{
	m->material = first_lookup(m, LK_MATERIAL_ID);
	if (!m->material)
		m->material = first_lookup(m, LK_MATERIAL_UNIT);
	m->store = first_lookup(m, LK_STORE_ID);
	for (size_t i = 0; i < m->n_lines; i++) {
		const field_t *f = &m->lines[i];
		bool store = (f->src == SRC_LOOKUP && f->lookup == LK_STORE_LOCATION) ||
			     (f->when && f->when->kind == 's');
		if (store && !m->store) {
			set_err(err, errsize, "mapping.lines.%s: needs a line field with \"lookup\": "
				"\"store.id\" (it names the store)", f->name);
			return -EINVAL;
		}
		if (f->when && f->when->kind == 'm' && !m->material) {
			set_err(err, errsize, "mapping.lines.%s: needs a line field with \"lookup\": "
				"\"material.id\" (it names the material)", f->name);
			return -EINVAL;
		}
	}
	return 0;
}

static int check_bill(wj_mapping_t *m, char *err, size_t errsize)
{
	for (size_t i = 0; i < m->n_bill; i++) {
		const field_t *f = &m->bill[i];
		if (f->src == SRC_LOOKUP || f->when) {
			set_err(err, errsize, "mapping.bill.%s: %s only allowed in lines", f->name,
				f->when ? "\"when\" is" : "lookups are");
			return -EINVAL;
		}
		if (!strcmp(f->name, "remark"))
			m->marker_field = f->name;
	}
	if (!m->marker_field) {
		set_err(err, errsize,
			"mapping.bill.remark: required (it carries the marker used to detect duplicates)");
		return -EINVAL;
	}
	return 0;
}

int wj_mapping_compile(const json_t *spec, wj_jdy_api_t api, const char *remark_template,
		       wj_mapping_t **out, char *err, size_t errsize)
{
	json_t *full = NULL;
	wj_mapping_t *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	int r = -EINVAL;
	if (spec && !json_is_object(spec)) {
		set_err(err, errsize, "mapping: expected \"default\" or an object");
		goto fail;
	}
	if ((r = resolve_spec(spec, api, remark_template, &full, err, errsize)) < 0)
		goto fail;
	r = -EINVAL;
	const char *k;
	json_t *v;
	json_object_foreach(full, k, v) {
		if (strcmp(k, "bill") && strcmp(k, "lines") && strcmp(k, "lines_from")) {
			set_err(err, errsize, "mapping.%s: unknown key", k);
			goto fail;
		}
	}
	json_t *from = json_object_get(full, "lines_from");
	if (from && !json_is_string(from)) {
		set_err(err, errsize, "mapping.lines_from: expected a string");
		goto fail;
	}
	m->lines_from = strdup(from ? json_string_value(from) : "details_list");
	if ((r = compile_list(json_object_get(full, "bill"), "mapping.bill", &m->bill, &m->n_bill,
			      err, errsize)) < 0 ||
	    (r = compile_list(json_object_get(full, "lines"), "mapping.lines", &m->lines,
			      &m->n_lines, err, errsize)) < 0 ||
	    (r = check_bill(m, err, errsize)) < 0 ||
	    (r = check_names(m->bill, m->n_bill, "mapping.bill", err, errsize)) < 0 ||
	    (r = check_names(m->lines, m->n_lines, "mapping.lines", err, errsize)) < 0 ||
	    (r = check_subjects(m, err, errsize)) < 0 || (r = collect_keys(m)) < 0)
		goto fail;
	json_decref(full);
	*out = m;
	return 0;
fail:
	json_decref(full);
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
		free(f[i].with);
		free(f[i].or);
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
	const wj_mapping_t *m;
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

/* The value f reads: the first of its paths that is set (not absent, null, "" or, for dates,
 * WDT's zero time "0000-00-00 …"). NULL when none is; *used names the path to blame. */
static const json_t *source(const ctx_t *c, const field_t *f, const json_t *line,
			    const char **used)
{
	*used = f->n_paths ? f->paths[0] : f->name;
	for (size_t i = 0; i < f->n_paths; i++) {
		const json_t *v = resolve(c, line, f->paths[i]);
		bool zero_time = f->conv == CONV_DATE && json_is_string(v) &&
				 !strncmp(json_string_value(v), "0000-00-00", 10);
		if (v && !json_is_null(v) && !(json_is_string(v) && !json_string_length(v)) &&
		    !zero_time) {
			*used = f->paths[i];
			return v;
		}
	}
	return NULL;
}

/* The Kingdee object of the line's material or store ('m' or 's'), its WDT-side number in
 * num. NULL when the line names none (the naming field reports that) or when it is not
 * known yet (c->missing). */
static const json_t *subject(ctx_t *c, const json_t *line, char kind, char *num, size_t size)
{
	const char *used;
	const json_t *v = source(c, kind == 's' ? c->m->store : c->m->material, line, &used);
	if (!v || wj_json_text(v, num, size) < 0)
		return NULL;
	const json_t *obj = c->fn ? c->fn(c->arg, kind, num) : NULL;
	if (!obj)
		c->missing = true;
	return obj;
}

/* A number field: the shortest exact decimal of src as a real, which wj_json_dumps_body
 * writes back as that text. *out stays NULL for a zero in an optional field. */
static int number_value(ctx_t *c, const field_t *f, const json_t *src, const char *where,
			const char *used, json_t **out)
{
	char text[64], shown[512];
	const char *why = NULL;
	const char *noun = f->positive ? "quantity" : "number";
	int r = wj_json_decimal(src, text, sizeof(text), &why);
	if (r == 0 && f->conv == CONV_INTEGER && strchr(text, '.'))
		why = "expected a whole number", r = -EINVAL;
	if (r == 0 && f->positive && (text[0] == '-' || !strcmp(text, "0"))) {
		shown_text(src, shown, sizeof(shown));
		set_err(c->err, c->errsize, "order %s: %s%s: must be > 0, got \"%s\"",
			c->stockin_no, where, used, shown);
		return -EINVAL;
	}
	if (r < 0) {
		shown_text(src, shown, sizeof(shown));
		set_err(c->err, c->errsize, "order %s: %s%s: \"%s\" is not a usable %s: %s",
			c->stockin_no, where, used, shown, noun, why ? why : "too long");
		return -EINVAL;
	}
	if ((f->optional || f->or) && !strcmp(text, "0"))
		return 0; /* WDT writes an unset number as zero */
	*out = json_real(strtod(text, NULL));
	return 0;
}

static int lookup_value(ctx_t *c, const field_t *f, const json_t *line, const json_t *src,
			const char *where, const char *used, json_t **out)
{
	char text[512], idtext[256];
	const char *kind_name = f->lookup == LK_STORE_ID || f->lookup == LK_STORE_LOCATION
					? "store" : "material";
	if (wj_json_text(src, text, sizeof(text)) < 0) {
		set_err(c->err, c->errsize, "order %s: %s%s: expected a text value", c->stockin_no,
			where, used);
		return -EINVAL;
	}
	const json_t *obj, *v;
	const char *key;
	if (f->lookup == LK_STORE_LOCATION) {
		char store[512];
		if (!(obj = subject(c, line, 's', store, sizeof(store)))) {
			*out = json_null();
			return 0;
		}
		v = json_object_get(json_object_get(obj, "locations"), text);
		if (!v || wj_json_text(v, idtext, sizeof(idtext)) < 0 || !idtext[0]) {
			set_err(c->err, c->errsize, "order %s: %s%s: Kingdee store %s has no location %s",
				c->stockin_no, where, used, store, text);
			return -EINVAL;
		}
		*out = json_string(idtext);
		return 0;
	}
	obj = c->fn ? c->fn(c->arg, f->lookup == LK_STORE_ID ? 's' : 'm', text) : NULL;
	if (!obj) {
		c->missing = true;
		*out = json_null();
		return 0;
	}
	key = f->lookup == LK_MATERIAL_UNIT ? "base_unit_id" : "id";
	v = json_object_get(obj, key);
	if (!v || wj_json_text(v, idtext, sizeof(idtext)) < 0 || !idtext[0]) {
		set_err(c->err, c->errsize, "order %s: %s%s: Kingdee %s %s has no %s", c->stockin_no,
			where, used, kind_name, text, key);
		return -EINVAL;
	}
	*out = json_string(idtext);
	return 0;
}

/* A field whose "when" flag does not hold is left out (*skip); one whose flag holds must have
 * its value, unless optional. */
static int check_when(ctx_t *c, const field_t *f, const json_t *line, bool has,
		      const char *where, const char *used, bool *skip)
{
	char num[512];
	const json_t *obj = subject(c, line, f->when->kind, num, sizeof(num));
	*skip = !obj || !json_is_true(json_object_get(obj, f->when->key));
	if (*skip || has || f->optional || f->or)
		return 0;
	set_err(c->err, c->errsize, "order %s: %.*s (%s): %s but the line has no %s", c->stockin_no,
		(int)(strlen(where) ? strlen(where) - 1 : 0), where, num, f->when->says, used);
	return -EINVAL;
}

/* The value of f for line (NULL in "bill") into *out; *out stays NULL when the field is left
 * out. 0 or -EINVAL with the reason in c->err. */
static int field_value(ctx_t *c, const field_t *f, const json_t *line, const char *where,
		       json_t **out)
{
	char text[512];
	const char *used = f->name;
	bool reads = f->src == SRC_PATH || f->src == SRC_LOOKUP, skip = false;
	const json_t *src = reads ? source(c, f, line, &used) : NULL;
	*out = NULL;
	if (f->when && check_when(c, f, line, !reads || src, where, used, &skip) < 0)
		return -EINVAL;
	if (skip || (reads && !src && (f->optional || f->or)))
		return 0;
	if (f->src == SRC_CONST) {
		*out = json_incref(f->value);
		return 0;
	}
	if (f->src == SRC_TEMPLATE) {
		if (wj_template_expand(f->tpl, c->order, text, sizeof(text)) < 0) {
			set_err(c->err, c->errsize, "order %s: %s%s: template \"%s\" names a missing "
				"field", c->stockin_no, where, f->name, f->tpl);
			return -EINVAL;
		}
		*out = json_string(text);
		return 0;
	}
	if (!src) {
		set_err(c->err, c->errsize, "order %s: %s%s: missing", c->stockin_no, where, used);
		return -EINVAL;
	}
	if (f->src == SRC_LOOKUP)
		return lookup_value(c, f, line, src, where, used, out);
	switch (f->conv) {
	case CONV_NUMBER:
	case CONV_INTEGER:
		return number_value(c, f, src, where, used, out);
	case CONV_DATE:
		if (wj_json_text(src, text, sizeof(text)) < 0 || strlen(text) < 10 ||
		    !date_prefix(text)) {
			set_err(c->err, c->errsize, "order %s: %s%s: expected a time like "
				"\"2026-11-01 12:00:00\"", c->stockin_no, where, used);
			return -EINVAL;
		}
		text[10] = '\0';
		*out = json_string(text);
		return 0;
	case CONV_STRING:
	default:
		if (json_is_string(src)) {
			*out = json_incref((json_t *)src);
			return 0;
		}
		if (wj_json_text(src, text, sizeof(text)) < 0) {
			set_err(c->err, c->errsize, "order %s: %s%s: expected a text value",
				c->stockin_no, where, used);
			return -EINVAL;
		}
		*out = json_string(text);
		return 0;
	}
}

/* The path a field reads first, to name it in a message. */
static const char *first_path(const field_t *f)
{
	return f->n_paths ? f->paths[0] : f->name;
}

/* A field with "or" that was not sent needs its other field sent, where its "when" holds. */
static int check_or(ctx_t *c, const field_t *list, size_t n, const field_t *f,
		    const json_t *line, const char *where, const json_t *out)
{
	if (json_object_get(out, f->name) || json_object_get(out, f->or))
		return 0;
	char num[512];
	const json_t *obj = f->when ? subject(c, line, f->when->kind, num, sizeof(num)) : NULL;
	if (f->when && (!obj || !json_is_true(json_object_get(obj, f->when->key))))
		return 0;
	const char *a = first_path(f), *b = first_path(field_named(list, n, f->or));
	int len = (int)(where[0] ? strlen(where) - 1 : 0);
	if (f->when)
		set_err(c->err, c->errsize, "order %s: %.*s (%s): %s but the line has no %s or %s",
			c->stockin_no, len, where, num, f->when->says, a, b);
	else if (line)
		set_err(c->err, c->errsize, "order %s: %.*s: the line has no %s or %s",
			c->stockin_no, len, where, a, b);
	else
		set_err(c->err, c->errsize, "order %s: the order has no %s or %s", c->stockin_no, a,
			b);
	return -EINVAL;
}

/* The fields of one list into out: those without "with" first, then those whose "with" field
 * was sent. */
static int fill(ctx_t *c, const field_t *f, size_t n, const json_t *line, const char *where,
		json_t *out)
{
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			bool later = f[i].with != NULL;
			if (later != (pass == 1) || (later && !json_object_get(out, f[i].with)))
				continue;
			json_t *v;
			if (field_value(c, &f[i], line, where, &v) < 0)
				return -EINVAL;
			if (v)
				json_object_set_new(out, f[i].name, v);
		}
	}
	for (size_t i = 0; i < n; i++)
		if (f[i].or && check_or(c, f, n, &f[i], line, where, out) < 0)
			return -EINVAL;
	return 0;
}

json_t *wj_mapping_apply(const wj_mapping_t *m, const json_t *order, wj_lookup_fn fn, void *arg,
			 int *rc, char *err, size_t errsize)
{
	char no[128] = "?";
	wj_json_text(json_object_get(order, "stockin_no"), no, sizeof(no));
	ctx_t c = {.m = m, .order = order, .stockin_no = no, .fn = fn, .arg = arg, .err = err,
		   .errsize = errsize};
	json_t *body = json_object(), *lines = json_array();
	char where[160];
	*rc = -EINVAL;
	if (!json_is_object(order)) {
		set_err(err, errsize, "order: not an object");
		goto fail;
	}
	if (fill(&c, m->bill, m->n_bill, NULL, "", body) < 0)
		goto fail;
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
		if (fill(&c, m->lines, m->n_lines, line, where, out) < 0)
			goto fail;
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
