/* Configuration: comment stripping, a small schema walker over the JSON document, secrets.
 *
 * Each object is described by a table of fields (key, kind, offset into the struct being
 * filled, limits). walk() reports unknown keys and missing required keys, then converts every
 * present value; cross-field checks run afterwards. Every problem is collected, none stops
 * the walk, so one load reports them all. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/mapping.h"
#include "lib/log.h"
#include "lib/util.h"

#define CONFIG_MAX (16u << 20) /* largest configuration file accepted */
#define SECRET_MAX (64u << 10) /* largest secret file accepted */
#define PATH_LEN 512

#define SEC 1000ULL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

typedef struct ctx {
	const char *name;   /* file name used in messages */
	wj_errors_t *errs;
	int tz_offset;      /* for cursor.start */
	int64_t now;
	bool oom;
	bool paths_only;    /* wj_config_load_paths(): no secret read, problems do not fail */
} ctx_t;

/* ---- errors ---------------------------------------------------------------------------- */

void wj_errors_free(wj_errors_t *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->n; i++)
		free(e->msg[i]);
	free(e->msg);
	e->msg = NULL;
	e->n = 0;
}

int wj_errors_addf(wj_errors_t *e, const char *fmt, ...)
{
	char *m = NULL;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&m, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	char **nm = realloc(e->msg, (e->n + 1) * sizeof(*nm));
	if (!nm) {
		free(m);
		return -ENOMEM;
	}
	e->msg = nm;
	e->msg[e->n++] = m;
	return 0;
}

/* "FILE: PATH: problem" */
__attribute__((format(printf, 3, 4)))
static void err(ctx_t *c, const char *path, const char *fmt, ...)
{
	char *problem = NULL;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&problem, fmt, ap);
	va_end(ap);
	if (r < 0 || wj_errors_addf(c->errs, "%s: %s: %s", c->name, path, problem) < 0)
		c->oom = true;
	free(problem);
}

static char *xstrdup(ctx_t *c, const char *s)
{
	char *d = strdup(s);
	if (!d)
		c->oom = true;
	return d;
}

static void set_str(ctx_t *c, char **dst, const char *s)
{
	free(*dst);
	*dst = s ? xstrdup(c, s) : NULL;
}

/* out (PATH_LEN bytes) = path.key; a path too long is cut short and ends in "..." */
static const char *join(char *out, const char *path, const char *key)
{
	int r = snprintf(out, PATH_LEN, "%s%s%s", path, *path ? "." : "", key);
	if (r < 0 || r >= PATH_LEN) {
		/* cut before a whole character, not inside a multi-byte one */
		size_t k = PATH_LEN - 4;
		while (k > 0 && ((unsigned char)out[k] & 0xC0) == 0x80)
			k--;
		memcpy(out + k, "...", 4);
	}
	return out;
}

static const char *fmt_dur(uint64_t ms, char *buf, size_t size)
{
	static const struct {
		uint64_t ms;
		const char *unit;
	} units[] = {{DAY, "d"}, {HOUR, "h"}, {MIN, "m"}, {SEC, "s"}, {1, "ms"}};
	if (ms == 0) {
		snprintf(buf, size, "0s");
		return buf;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms % units[i].ms == 0) {
			snprintf(buf, size, "%" PRIu64 "%s", ms / units[i].ms, units[i].unit);
			break;
		}
	}
	return buf;
}

/* ---- rates ----------------------------------------------------------------------------- */

int wj_rate_parse(const char *s, wj_rate_t *rate)
{
	if (!s || *s < '1' || *s > '9')
		return -EINVAL;
	unsigned long n = 0;
	const char *p = s;
	while (*p >= '0' && *p <= '9') {
		n = n * 10 + (unsigned long)(*p++ - '0');
		if (n > 1000000)
			return -EINVAL;
	}
	uint64_t period;
	if (!strcmp(p, "/s"))
		period = SEC;
	else if (!strcmp(p, "/min"))
		period = MIN;
	else
		return -EINVAL;
	rate->count = (unsigned)n;
	rate->period_ms = period;
	return 0;
}

/* ---- schema ---------------------------------------------------------------------------- */

enum kind {
	K_STR,    /* char *; "" kept */
	K_OPTSTR, /* char *; "" → NULL */
	K_URL,    /* char *; http:// or https:// */
	K_SECRET, /* char *; from KEY, KEY_file or KEY_credential */
	K_INT,    /* int in [min, max] */
	K_UINT,   /* unsigned in [min, max] */
	K_DUR,    /* uint64_t ms in [min, max] */
	K_SIZE,   /* uint64_t bytes, at least min */
	K_RATE,   /* wj_rate_t */
	K_BOOL,   /* bool */
	K_MAP,    /* object of strings → wj_kv_t * at off, count at off2 */
	K_PARAMS, /* like K_MAP, integers allowed and stored in decimal */
	K_OBJ,    /* nested object described by sub, filling the same struct */
	K_CUSTOM, /* fn converts the value */
};

enum { F_REQUIRED = 1, F_NONEMPTY = 2 };

typedef void (*custom_fn)(ctx_t *c, const char *path, json_t *v, void *base);

struct field {
	const char *key;
	enum kind kind;
	size_t off, off2;
	int64_t min, max;
	unsigned flags;
	const struct field *sub;
	custom_fn fn;
};

#define AT(base, off, type) ((type *)((char *)(base) + (off)))

static bool key_allowed(const struct field *t, const char *key)
{
	size_t kl = strlen(key);
	for (; t->key; t++) {
		if (!strcmp(t->key, key))
			return true;
		size_t l = strlen(t->key);
		if (t->kind == K_SECRET && kl > l && !strncmp(key, t->key, l) &&
		    (!strcmp(key + l, "_file") || !strcmp(key + l, "_credential")))
			return true;
	}
	return false;
}

static void parse_kv(ctx_t *c, const char *path, json_t *v, const struct field *f, void *base)
{
	wj_kv_t **arr = AT(base, f->off, wj_kv_t *);
	size_t *n = AT(base, f->off2, size_t);
	bool ints = f->kind == K_PARAMS;
	if (!json_is_object(v)) {
		err(c, path, "expected an object");
		return;
	}
	size_t cap = json_object_size(v);
	wj_kv_t *kv = calloc(cap ? cap : 1, sizeof(*kv));
	if (!kv) {
		c->oom = true;
		return;
	}
	size_t cnt = 0;
	const char *key;
	json_t *val;
	json_object_foreach(v, key, val) {
		char p[PATH_LEN], num[32];
		const char *s = NULL;
		if (json_is_string(val)) {
			s = json_string_value(val);
		} else if (ints && json_is_integer(val)) {
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(val));
			s = num;
		} else {
			err(c, join(p, path, key), ints ? "expected a string or an integer" :
							  "expected a string");
			continue;
		}
		kv[cnt].key = xstrdup(c, key);
		kv[cnt].value = xstrdup(c, s);
		cnt++;
	}
	for (size_t i = 0; i < *n; i++) {
		free((*arr)[i].key);
		free((*arr)[i].value);
	}
	free(*arr);
	*arr = kv;
	*n = cnt;
}

/* Read a secret from a file: whole content, trailing newlines stripped. NULL on error. */
static char *read_secret(ctx_t *c, const char *path, const char *file, bool check_mode,
			 bool credential)
{
	char *buf = NULL;
	/* O_NONBLOCK: a FIFO or device named by mistake must not hang the load. */
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (credential && errno == ENOENT)
			err(c, path, "%s: no such credential", file);
		else
			err(c, path, "%s: %s", file, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		err(c, path, "%s: %s", file, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		err(c, path, "%s: not a regular file", file);
		goto fail;
	}
	if (check_mode && (st.st_mode & 077)) {
		err(c, path, "%s: mode %04o is group or world readable; chmod 600 it", file,
		    (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	if (st.st_size > (off_t)SECRET_MAX) {
		err(c, path, "%s: larger than %u bytes", file, SECRET_MAX);
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		c->oom = true;
		goto fail;
	}
	size_t len = 0;
	while (len < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err(c, path, "%s: %s", file, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	if (len == 0) {
		err(c, path, "%s: empty", file);
		goto fail;
	}
	if (strlen(buf) != len) {
		err(c, path, "%s: contains a NUL byte", file);
		goto fail;
	}
	close(fd);
	return buf;
fail:
	free(buf);
	close(fd);
	return NULL;
}

/* KEY (inline), KEY_file (mode 0600 or stricter) or KEY_credential (in $CREDENTIALS_DIRECTORY):
 * exactly one. */
static void parse_secret(ctx_t *c, const char *path, json_t *obj, const struct field *f,
			 void *base)
{
	char kfile[64], kcred[64], p[PATH_LEN];
	snprintf(kfile, sizeof(kfile), "%s_file", f->key);
	snprintf(kcred, sizeof(kcred), "%s_credential", f->key);
	json_t *vi = json_object_get(obj, f->key);
	json_t *vf = json_object_get(obj, kfile);
	json_t *vc = json_object_get(obj, kcred);
	int given = !!vi + !!vf + !!vc;
	if (given == 0) {
		if (f->flags & F_REQUIRED)
			err(c, join(p, path, f->key), "required");
		return;
	}
	if (given > 1) {
		err(c, join(p, path, f->key), "give only one of %s, %s, %s", f->key, kfile, kcred);
		return;
	}
	char *val = NULL;
	if (c->paths_only && !vi)
		return; /* never opened: the read-only commands need no secret */
	if (vi) {
		join(p, path, f->key);
		if (!json_is_string(vi))
			err(c, p, "expected a string");
		else if (!*json_string_value(vi))
			err(c, p, "must not be empty");
		else
			val = xstrdup(c, json_string_value(vi));
	} else if (vf) {
		join(p, path, kfile);
		if (!json_is_string(vf) || !*json_string_value(vf))
			err(c, p, "expected a file path");
		else
			val = read_secret(c, p, json_string_value(vf), true, false);
	} else {
		join(p, path, kcred);
		const char *name = json_is_string(vc) ? json_string_value(vc) : NULL;
		const char *dir = getenv("CREDENTIALS_DIRECTORY");
		if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") ||
		    !strcmp(name, "..")) {
			err(c, p, "expected a credential name");
		} else if (!dir || !*dir) {
			err(c, p, "%s: $CREDENTIALS_DIRECTORY is not set", name);
		} else {
			char *file = NULL;
			if (asprintf(&file, "%s/%s", dir, name) < 0) {
				c->oom = true;
			} else {
				val = read_secret(c, p, file, false, true);
				free(file);
			}
		}
	}
	char **dst = AT(base, f->off, char *);
	free(*dst);
	*dst = val;
}

static void walk(ctx_t *c, const char *path, json_t *obj, const struct field *t, void *base);

static void parse_value(ctx_t *c, const char *p, json_t *v, const struct field *f, void *base)
{
	char b1[32], b2[32];
	switch (f->kind) {
	case K_STR:
	case K_OPTSTR:
	case K_URL: {
		if (!json_is_string(v)) {
			err(c, p, "expected a string");
			return;
		}
		const char *s = json_string_value(v);
		if (!*s && (f->flags & F_NONEMPTY)) {
			err(c, p, "must not be empty");
			return;
		}
		if (f->kind == K_URL && !(strncmp(s, "http://", 7) == 0 && s[7]) &&
		    !(strncmp(s, "https://", 8) == 0 && s[8])) {
			err(c, p, "expected an http:// or https:// URL");
			return;
		}
		set_str(c, AT(base, f->off, char *), f->kind == K_OPTSTR && !*s ? NULL : s);
		return;
	}
	case K_INT:
	case K_UINT: {
		json_int_t i = json_is_integer(v) ? json_integer_value(v) : 0;
		if (!json_is_integer(v) || i < f->min || i > f->max) {
			err(c, p, "expected an integer from %" PRId64 " to %" PRId64, f->min, f->max);
			return;
		}
		if (f->kind == K_INT)
			*AT(base, f->off, int) = (int)i;
		else
			*AT(base, f->off, unsigned) = (unsigned)i;
		return;
	}
	case K_DUR: {
		uint64_t ms;
		if (!json_is_string(v) || wj_duration_parse(json_string_value(v), &ms) < 0) {
			err(c, p, "expected a duration like \"30s\"");
			return;
		}
		if (ms < (uint64_t)f->min || ms > (uint64_t)f->max) {
			err(c, p, "must be from %s to %s", fmt_dur((uint64_t)f->min, b1, sizeof(b1)),
			    fmt_dur((uint64_t)f->max, b2, sizeof(b2)));
			return;
		}
		*AT(base, f->off, uint64_t) = ms;
		return;
	}
	case K_SIZE: {
		uint64_t bytes;
		if (json_is_integer(v) && json_integer_value(v) >= 0)
			bytes = (uint64_t)json_integer_value(v);
		else if (!json_is_string(v) || wj_size_parse(json_string_value(v), &bytes) < 0) {
			err(c, p, "expected a size like \"64MiB\"");
			return;
		}
		if (bytes < (uint64_t)f->min) {
			err(c, p, "must be at least %" PRId64 "MiB", f->min >> 20);
			return;
		}
		*AT(base, f->off, uint64_t) = bytes;
		return;
	}
	case K_BOOL:
		if (!json_is_boolean(v))
			err(c, p, "expected true or false");
		else
			*AT(base, f->off, bool) = json_is_true(v);
		return;
	case K_RATE:
		if (!json_is_string(v) || wj_rate_parse(json_string_value(v),
							AT(base, f->off, wj_rate_t)) < 0)
			err(c, p, "expected a rate like \"60/min\" or \"2/s\"");
		return;
	case K_MAP:
	case K_PARAMS:
		parse_kv(c, p, v, f, base);
		return;
	case K_OBJ:
		if (!json_is_object(v))
			err(c, p, "expected an object");
		else
			walk(c, p, v, f->sub, base);
		return;
	case K_CUSTOM:
		f->fn(c, p, v, base);
		return;
	case K_SECRET:
		return; /* handled by walk() */
	}
}

static void walk(ctx_t *c, const char *path, json_t *obj, const struct field *t, void *base)
{
	char p[PATH_LEN];
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		if (!key_allowed(t, key))
			err(c, join(p, path, key), "unknown key");
	}
	for (const struct field *f = t; f->key; f++) {
		if (f->kind == K_SECRET) {
			parse_secret(c, path, obj, f, base);
			continue;
		}
		join(p, path, f->key);
		v = json_object_get(obj, f->key);
		if (v) {
			parse_value(c, p, v, f, base);
		} else if (f->flags & F_REQUIRED) {
			err(c, p, "required");
		} else if (f->kind == K_OBJ) {
			/* an absent section still has required keys */
			json_t *empty = json_object();
			if (!empty) {
				c->oom = true;
				continue;
			}
			walk(c, p, empty, f->sub, base);
			json_decref(empty);
		}
	}
}

/* ---- custom values --------------------------------------------------------------------- */

static const char *str_or_null(json_t *v)
{
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void parse_timezone(ctx_t *c, const char *path, json_t *v, void *base)
{
	wj_config_t *cfg = base;
	const char *s = str_or_null(v);
	int off;
	if (s && wj_tz_parse(s, &off) == 0) {
		cfg->tz_offset = c->tz_offset = off;
		set_str(c, &cfg->timezone, s);
		return;
	}
	bool named = false;
	for (const char *q = s; q && *q; q++)
		if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z'))
			named = true;
	if (named)
		err(c, path, "IANA time zone names are not supported; use a fixed UTC offset like \"+08:00\"");
	else
		err(c, path, "expected a UTC offset like \"+08:00\"");
}

static void parse_level(ctx_t *c, const char *path, json_t *v, void *base)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	static const int levels[] = {WJ_LOG_DEBUG, WJ_LOG_INFO, WJ_LOG_WARN, WJ_LOG_ERROR};
	const char *s = str_or_null(v);
	for (size_t i = 0; s && i < 4; i++) {
		if (!strcmp(s, names[i])) {
			((wj_config_t *)base)->log_level = levels[i];
			return;
		}
	}
	err(c, path, "expected \"debug\", \"info\", \"warn\" or \"error\"");
}

static void parse_wdt_api(ctx_t *c, const char *path, json_t *v, void *base)
{
	const char *s = str_or_null(v);
	if (s && !strcmp(s, "qimen"))
		((wj_config_t *)base)->wdt.api = WJ_WDT_QIMEN;
	else if (s && !strcmp(s, "openapi2"))
		((wj_config_t *)base)->wdt.api = WJ_WDT_OPENAPI2;
	else
		err(c, path, "expected \"qimen\" or \"openapi2\"");
}

static void parse_jdy_api(ctx_t *c, const char *path, json_t *v, void *base)
{
	const char *s = str_or_null(v);
	if (s && !strcmp(s, "v1"))
		((wj_config_t *)base)->kingdee.api = WJ_JDY_V1;
	else if (s && !strcmp(s, "v2"))
		((wj_config_t *)base)->kingdee.api = WJ_JDY_V2;
	else
		err(c, path, "expected \"v1\" or \"v2\"");
}

static void parse_jdy_auth(ctx_t *c, const char *path, json_t *v, void *base)
{
	const char *s = str_or_null(v);
	if (s && !strcmp(s, "gateway"))
		((wj_config_t *)base)->kingdee.auth = WJ_JDY_AUTH_GATEWAY;
	else if (s && !strcmp(s, "password"))
		((wj_config_t *)base)->kingdee.auth = WJ_JDY_AUTH_PASSWORD;
	else
		err(c, path, "expected \"gateway\" or \"password\"");
}

static void parse_flow_name(ctx_t *c, const char *path, json_t *v, void *base)
{
	const char *s = str_or_null(v);
	size_t n = s ? strlen(s) : 0;
	bool ok = n >= 1 && n <= 64;
	for (size_t i = 0; ok && i < n; i++) {
		char ch = s[i];
		ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		     ch == '_' || ch == '.' || ch == '-';
	}
	if (!ok) {
		err(c, path, "expected 1 to 64 characters from A-Z a-z 0-9 _ . -");
		return;
	}
	set_str(c, &((wj_flow_cfg_t *)base)->name, s);
}

static void parse_start(ctx_t *c, const char *path, json_t *v, void *base)
{
	const char *s = str_or_null(v);
	if (!s || wj_time_parse(s, c->tz_offset, &((wj_flow_cfg_t *)base)->cursor_start) < 0)
		err(c, path, "expected a time like \"2026-11-01 00:00:00\" or \"2026-11-01\"");
}

static void parse_mapping(ctx_t *c, const char *path, json_t *v, void *base)
{
	wj_flow_cfg_t *f = base;
	if (json_is_string(v) && !strcmp(json_string_value(v), "default")) {
		json_decref(f->mapping);
		f->mapping = NULL;
	} else if (json_is_object(v)) {
		json_decref(f->mapping);
		f->mapping = json_incref(v);
	} else {
		err(c, path, "expected \"default\" or an object");
	}
}

static void parse_remark(ctx_t *c, const char *path, json_t *v, void *base)
{
	const char *s = str_or_null(v);
	if (!s)
		err(c, path, "expected a string");
	else if (!strstr(s, "{stockin_no}"))
		err(c, path, "must contain {stockin_no}");
	else
		set_str(c, &((wj_flow_cfg_t *)base)->remark_template, s);
}

static void parse_skip_existing(ctx_t *c, const char *path, json_t *v, void *base)
{
	const char *s = str_or_null(v);
	if (s && !strcmp(s, "off"))
		((wj_flow_cfg_t *)base)->skip_existing = false;
	else if (s && !strcmp(s, "search"))
		((wj_flow_cfg_t *)base)->skip_existing = true;
	else
		err(c, path, "expected \"off\" or \"search\"");
}

/* ---- tables ---------------------------------------------------------------------------- */

#define C(k, kind_, member, ...) \
	{ .key = k, .kind = kind_, .off = offsetof(wj_config_t, member), __VA_ARGS__ }
#define FL(k, kind_, member, ...) \
	{ .key = k, .kind = kind_, .off = offsetof(wj_flow_cfg_t, member), __VA_ARGS__ }
#define FN(k, f) { .key = k, .kind = K_CUSTOM, .fn = f }
#define SUB(k, t) { .key = k, .kind = K_OBJ, .sub = t }
#define REQ (F_REQUIRED | F_NONEMPTY)

static const struct field log_fields[] = {
	C("file", K_OPTSTR, log_file),
	FN("level", parse_level),
	{0},
};

static const struct field status_fields[] = {
	C("file", K_STR, status_file),
	C("metrics_file", K_OPTSTR, metrics_file),
	C("html_file", K_OPTSTR, html_file),
	C("interval", K_DUR, status_interval_ms, .min = SEC, .max = DAY),
	{0},
};

static const struct field store_fields[] = {
	C("map_size", K_SIZE, map_size, .min = 1 << 20),
	C("map_max", K_SIZE, map_max, .min = 1 << 20),
	{0},
};

static const struct field wdt_fields[] = {
	FN("api", parse_wdt_api),
	C("url", K_URL, wdt.url, .flags = REQ),
	C("sid", K_STR, wdt.sid, .flags = REQ),
	C("app_key", K_STR, wdt.app_key, .flags = REQ),
	C("app_secret", K_SECRET, wdt.app_secret, .flags = REQ),
	C("target_app_key", K_STR, wdt.target_app_key, .flags = F_NONEMPTY),
	C("ca_file", K_OPTSTR, wdt.ca_file),
	C("rate_limit", K_RATE, wdt.rate_limit),
	C("concurrency", K_UINT, wdt.concurrency, .min = 1, .max = 16),
	C("timeout", K_DUR, wdt.timeout_ms, .min = SEC, .max = 10 * MIN),
	{0},
};

static const struct field kingdee_fields[] = {
	FN("api", parse_jdy_api),
	FN("auth", parse_jdy_auth),
	C("url", K_URL, kingdee.url, .flags = REQ),
	C("client_id", K_STR, kingdee.client_id, .flags = REQ),
	C("client_secret", K_SECRET, kingdee.client_secret, .flags = REQ),
	C("outer_instance_id", K_STR, kingdee.outer_instance_id, .flags = F_NONEMPTY),
	C("username", K_STR, kingdee.username, .flags = F_NONEMPTY),
	C("password", K_SECRET, kingdee.password),
	C("account_id", K_STR, kingdee.account_id, .flags = F_NONEMPTY),
	C("ca_file", K_OPTSTR, kingdee.ca_file),
	C("rate_limit", K_RATE, kingdee.rate_limit),
	C("concurrency", K_UINT, kingdee.concurrency, .min = 1, .max = 64),
	C("timeout", K_DUR, kingdee.timeout_ms, .min = SEC, .max = 10 * MIN),
	C("lookup_ttl", K_DUR, kingdee.lookup_ttl_ms, .min = 0, .max = 365 * DAY),
	C("store_map", K_MAP, kingdee.store_map, .off2 = offsetof(wj_config_t, kingdee.n_store_map)),
	C("material_map", K_MAP, kingdee.material_map,
	  .off2 = offsetof(wj_config_t, kingdee.n_material_map)),
	{0},
};

static const struct field http_fields[] = {
	C("max_body", K_SIZE, http.max_body, .min = 1 << 20),
	C("max_retry_after", K_DUR, http.max_retry_after_ms, .min = SEC, .max = DAY),
	{0},
};

static const struct field backoff_fields[] = {
	C("initial", K_DUR, queue.backoff_initial_ms, .min = 1, .max = DAY),
	C("max", K_DUR, queue.backoff_max_ms, .min = 1, .max = 7 * DAY),
	{0},
};

static const struct field queue_fields[] = {
	C("capacity", K_UINT, queue.capacity, .min = 10, .max = 10000000),
	C("max_attempts", K_UINT, queue.max_attempts, .min = 1, .max = 100),
	SUB("backoff", backoff_fields),
	{0},
};

static const struct field source_fields[] = {
	FL("method", K_STR, method, .flags = F_NONEMPTY),
	FL("params", K_PARAMS, params, .off2 = offsetof(wj_flow_cfg_t, n_params)),
	{0},
};

static const struct field cursor_fields[] = {
	FN("start", parse_start),
	FL("window", K_DUR, window_ms, .min = SEC, .max = 30 * DAY),
	FL("lag", K_DUR, lag_ms, .min = 0, .max = 30 * DAY),
	FL("overlap", K_DUR, overlap_ms, .min = 0, .max = 30 * DAY),
	FL("interval", K_DUR, interval_ms, .min = SEC, .max = DAY),
	FL("page_size", K_UINT, page_size, .min = 1, .max = 100),
	FL("split_threshold", K_UINT, split_threshold, .min = 100, .max = 100000),
	{0},
};

static const struct field flow_fields[] = {
	{.key = "name", .kind = K_CUSTOM, .fn = parse_flow_name, .flags = F_REQUIRED},
	FL("priority", K_INT, priority, .min = 0, .max = 99),
	FL("backfill_priority", K_INT, backfill_priority, .min = 0, .max = 99),
	SUB("source", source_fields),
	SUB("cursor", cursor_fields),
	FN("mapping", parse_mapping),
	FN("remark_template", parse_remark),
	FN("skip_existing", parse_skip_existing),
	{0},
};

static void parse_flows(ctx_t *c, const char *path, json_t *v, void *base);
static void parse_alerts(ctx_t *c, const char *path, json_t *v, void *base);
static void parse_alerts_lang(ctx_t *c, const char *path, json_t *v, void *base);

/* timezone comes before flows: cursor.start is read in it */
static const struct field top_fields[] = {
	C("state_dir", K_STR, state_dir, .flags = F_NONEMPTY),
	SUB("log", log_fields),
	SUB("status", status_fields),
	FN("timezone", parse_timezone),
	C("drain_timeout", K_DUR, drain_timeout_ms, .min = 0, .max = HOUR),
	SUB("store", store_fields),
	SUB("wdt", wdt_fields),
	SUB("kingdee", kingdee_fields),
	SUB("queue", queue_fields),
	SUB("http", http_fields),
	C("allow_insecure_http", K_BOOL, allow_insecure_http),
	{.key = "flows", .kind = K_CUSTOM, .fn = parse_flows, .flags = F_REQUIRED},
	FN("alerts", parse_alerts),
	C("alerts_after", K_DUR, alerts_after_ms, .min = SEC, .max = DAY),
	C("alerts_interval", K_DUR, alerts_interval_ms, .min = SEC, .max = DAY),
	C("alerts_lag", K_DUR, alerts_lag_ms, .min = MIN, .max = 30 * DAY),
	FN("alerts_lang", parse_alerts_lang),
	{0},
};

/* ---- alerts ---------------------------------------------------------------------------- */

static const char *const alert_kinds[] = {"dingtalk", "wecom", "feishu", "webhook"};
static const char *const alert_events[WJ_EV_COUNT] = {
	"dead_letter", "review", "auth_failure", "unreachable", "lag", "start", "stop", "degraded",
};

const char *wj_alert_event_name(wj_alert_event_t ev)
{
	return ev < WJ_EV_COUNT ? alert_events[ev] : "?";
}

#define A(k, kind_, member, ...) \
	{ .key = k, .kind = kind_, .off = offsetof(wj_alert_cfg_t, member), __VA_ARGS__ }

static void parse_alert_kind(ctx_t *c, const char *path, json_t *v, void *base)
{
	wj_alert_cfg_t *a = base;
	for (size_t i = 0; i < sizeof(alert_kinds) / sizeof(alert_kinds[0]); i++)
		if (json_is_string(v) && !strcmp(json_string_value(v), alert_kinds[i])) {
			a->kind = (wj_alert_kind_t)i;
			return;
		}
	err(c, path, "expected \"dingtalk\", \"wecom\", \"feishu\" or \"webhook\"");
}

static void parse_alert_events(ctx_t *c, const char *path, json_t *v, void *base)
{
	wj_alert_cfg_t *a = base;
	size_t i;
	json_t *e;
	if (!json_is_array(v) || !json_array_size(v)) {
		err(c, path, "expected a non-empty array of event names");
		return;
	}
	a->events = 0;
	json_array_foreach(v, i, e) {
		char p[PATH_LEN];
		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		unsigned ev = WJ_EV_COUNT;
		for (unsigned k = 0; k < WJ_EV_COUNT && json_is_string(e); k++)
			if (!strcmp(json_string_value(e), alert_events[k]))
				ev = k;
		if (ev == WJ_EV_COUNT)
			err(c, p, "expected one of dead_letter, review, auth_failure, unreachable, lag, "
			    "start, stop, degraded");
		else
			a->events |= 1u << ev;
	}
}

static const struct field alert_fields[] = {
	{.key = "kind", .kind = K_CUSTOM, .fn = parse_alert_kind, .flags = F_REQUIRED},
	A("url", K_SECRET, url, .flags = REQ),
	A("secret", K_SECRET, secret),
	FN("events", parse_alert_events),
	{0},
};

static void parse_alerts(ctx_t *c, const char *path, json_t *v, void *base)
{
	wj_config_t *cfg = base;
	if (!json_is_array(v)) {
		err(c, path, "expected an array");
		return;
	}
	size_t n = json_array_size(v);
	cfg->alerts = calloc(n ? n : 1, sizeof(*cfg->alerts));
	if (!cfg->alerts) {
		c->oom = true;
		return;
	}
	cfg->n_alerts = n;
	for (size_t i = 0; i < n; i++) {
		wj_alert_cfg_t *a = &cfg->alerts[i];
		json_t *e = json_array_get(v, i);
		char p[PATH_LEN], q[PATH_LEN];
		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		a->events = (1u << WJ_EV_COUNT) - 1;
		if (!json_is_object(e)) {
			err(c, p, "expected an object");
			continue;
		}
		walk(c, p, e, alert_fields, a);
		if (a->url && strncmp(a->url, "https://", 8) &&
		    !(cfg->allow_insecure_http && !strncmp(a->url, "http://", 7)))
			err(c, join(q, p, "url"), "expected an https:// URL");
		if (a->kind == WJ_ALERT_WECOM && a->secret)
			err(c, join(q, p, "secret"), "WeCom robots do not sign; leave it out");
	}
}

static void parse_alerts_lang(ctx_t *c, const char *path, json_t *v, void *base)
{
	wj_config_t *cfg = base;
	const char *s = json_is_string(v) ? json_string_value(v) : "";
	if (!strcmp(s, "zh") || !strcmp(s, "en"))
		cfg->alerts_en = !strcmp(s, "en");
	else
		err(c, path, "expected \"zh\" or \"en\"");
}

/* ---- flows ----------------------------------------------------------------------------- */

static bool kv_has(const wj_kv_t *kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(kv[i].key, key))
			return true;
	return false;
}

static void flow_defaults(ctx_t *c, wj_flow_cfg_t *f)
{
	f->priority = 1;
	f->backfill_priority = -1; /* derived from priority after the walk */
	f->method = xstrdup(c, "wdt.stockin.order.query");
	f->cursor_start = c->now - 86400;
	f->window_ms = HOUR;
	f->lag_ms = MIN;
	f->overlap_ms = 5 * MIN;
	f->interval_ms = 30 * SEC;
	f->page_size = 100;
	f->split_threshold = 1000;
	f->remark_template = xstrdup(c, "WDT:{stockin_no}");
}

/* Add order_type=4 and status=80 unless given. */
static void flow_default_params(ctx_t *c, wj_flow_cfg_t *f)
{
	static const wj_kv_t defaults[] = {{"order_type", "4"}, {"status", "80"}};
	for (size_t i = 0; i < 2; i++) {
		if (kv_has(f->params, f->n_params, defaults[i].key))
			continue;
		wj_kv_t *kv = realloc(f->params, (f->n_params + 1) * sizeof(*kv));
		if (!kv) {
			c->oom = true;
			return;
		}
		f->params = kv;
		kv[f->n_params].key = xstrdup(c, defaults[i].key);
		kv[f->n_params].value = xstrdup(c, defaults[i].value);
		f->n_params++;
	}
}

static void flow_free(wj_flow_cfg_t *f)
{
	free(f->name);
	free(f->method);
	for (size_t i = 0; i < f->n_params; i++) {
		free(f->params[i].key);
		free(f->params[i].value);
	}
	free(f->params);
	json_decref(f->mapping);
	free(f->remark_template);
}

static void parse_flows(ctx_t *c, const char *path, json_t *v, void *base)
{
	wj_config_t *cfg = base;
	if (!json_is_array(v)) {
		err(c, path, "expected an array");
		return;
	}
	size_t n = json_array_size(v);
	if (n == 0) {
		err(c, path, "at least one flow is required");
		return;
	}
	cfg->flows = calloc(n, sizeof(*cfg->flows));
	if (!cfg->flows) {
		c->oom = true;
		return;
	}
	cfg->n_flows = n;
	for (size_t i = 0; i < n; i++) {
		wj_flow_cfg_t *f = &cfg->flows[i];
		json_t *e = json_array_get(v, i);
		char p[PATH_LEN], q[PATH_LEN];
		flow_defaults(c, f);
		int r = snprintf(p, sizeof(p), "%s[%zu]", path, i);
		if (r < 0 || r >= PATH_LEN)
			p[0] = '\0'; /* cannot happen: path is "flows" */
		if (!json_is_object(e)) {
			err(c, p, "expected an object");
			continue;
		}
		walk(c, p, e, flow_fields, f);
		if (f->backfill_priority < 0)
			f->backfill_priority = f->priority + 10 > 99 ? 99 : f->priority + 10;
		flow_default_params(c, f);
		for (size_t j = 0; f->name && j < i; j++) {
			if (cfg->flows[j].name && !strcmp(cfg->flows[j].name, f->name)) {
				err(c, join(q, p, "name"), "duplicate flow name \"%s\"", f->name);
				break;
			}
		}
	}
}

/* ---- flows that read the same stock-ins ------------------------------------------------- */

/* Documents are keyed by (flow, stockin_id): two flows that can both read one stock-in would
 * each post a bill for it. Flows are told apart only by what is known to select orders: the
 * WDT method, and these source.params, which WDT applies as equality on the order's field (the
 * daemon checks order_type and status again itself). Another parameter's meaning is unknown to
 * the daemon, so it never tells two flows apart. A value may be a comma-separated list. */
static const char *const exact_filters[] = {"order_type", "status", "warehouse_no",
					    "src_order_no", "stockin_no"};

static const char *param(const wj_flow_cfg_t *f, const char *key)
{
	for (size_t i = 0; i < f->n_params; i++)
		if (!strcmp(f->params[i].key, key))
			return f->params[i].value;
	return NULL;
}

/* One item of a list: spaces around it dropped, leading zeros of a number dropped ("04" and
 * "4" may be the same order_type to WDT). */
static void list_item(const char *s, size_t n, const char **out, size_t *len)
{
	while (n && *s == ' ')
		s++, n--;
	while (n && s[n - 1] == ' ')
		n--;
	bool digits = n > 0;
	for (size_t i = 0; i < n && digits; i++)
		digits = s[i] >= '0' && s[i] <= '9';
	while (digits && n > 1 && *s == '0')
		s++, n--;
	*out = s;
	*len = n;
}

/* Whether the comma-separated lists a and b share an item. */
static bool lists_meet(const char *a, const char *b)
{
	for (const char *p = a;; p++) {
		size_t pn = strcspn(p, ",");
		const char *x;
		size_t xn;
		list_item(p, pn, &x, &xn);
		for (const char *q = b;; q++) {
			size_t qn = strcspn(q, ",");
			const char *y;
			size_t yn;
			list_item(q, qn, &y, &yn);
			if (xn == yn && !memcmp(x, y, xn))
				return true;
			q += qn;
			if (!*q)
				break;
		}
		p += pn;
		if (!*p)
			return false;
	}
}

static bool flows_overlap(const wj_flow_cfg_t *a, const wj_flow_cfg_t *b)
{
	if (!a->method || !b->method || strcmp(a->method, b->method))
		return false;
	for (size_t i = 0; i < sizeof(exact_filters) / sizeof(exact_filters[0]); i++) {
		const char *va = param(a, exact_filters[i]), *vb = param(b, exact_filters[i]);
		if (va && vb && !lists_meet(va, vb))
			return false; /* no order can match both */
	}
	return true;
}

static void check_overlaps(ctx_t *c, const wj_config_t *cfg)
{
	for (size_t i = 1; i < cfg->n_flows; i++) {
		for (size_t j = 0; j < i; j++) {
			const wj_flow_cfg_t *a = &cfg->flows[j], *b = &cfg->flows[i];
			if (!a->name || !b->name || !strcmp(a->name, b->name) || !flows_overlap(a, b))
				continue; /* a duplicate name is reported already */
			char path[PATH_LEN];
			snprintf(path, sizeof(path), "flows[%zu].source", i);
			err(c, path, "flow \"%s\" can read the same stock-ins as flows[%zu] \"%s\" "
			    "(both %s, and no order_type, status or warehouse_no value tells them "
			    "apart): each would post its own bill for them. Give the two flows "
			    "different values of one of these source.params, or merge them",
			    b->name, j, a->name, b->method);
			break;
		}
	}
}

/* ---- load ------------------------------------------------------------------------------ */

/* Blank out // and # comments outside strings, keeping every byte position. */
static void strip_comments(char *s, size_t len)
{
	bool in_str = false, esc = false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (ch == '\n') {
			in_str = false; /* a raw newline ends any (invalid) string */
			continue;
		}
		if (in_str) {
			if (esc)
				esc = false;
			else if (ch == '\\')
				esc = true;
			else if (ch == '"')
				in_str = false;
			continue;
		}
		if (ch == '"') {
			in_str = true;
		} else if (ch == '#' || (ch == '/' && i + 1 < len && s[i + 1] == '/')) {
			for (; i < len && s[i] != '\n'; i++)
				s[i] = ' ';
			i--;
		}
	}
}

static void config_defaults(ctx_t *c, wj_config_t *cfg)
{
	cfg->state_dir = xstrdup(c, "/var/lib/wdt2jdy");
	cfg->map_size = 64ULL << 20;
	cfg->map_max = 4ULL << 30;
	cfg->log_level = WJ_LOG_INFO;
	cfg->status_interval_ms = 10 * SEC;
	cfg->tz_offset = 8 * 3600;
	cfg->timezone = xstrdup(c, "+08:00");
	cfg->drain_timeout_ms = 10 * SEC;

	cfg->wdt.api = WJ_WDT_QIMEN;
	cfg->wdt.target_app_key = xstrdup(c, "21363512");
	cfg->wdt.rate_limit = (wj_rate_t){60, MIN};
	cfg->wdt.concurrency = 2;
	cfg->wdt.timeout_ms = 30 * SEC;

	cfg->kingdee.api = WJ_JDY_V1;
	cfg->kingdee.rate_limit = (wj_rate_t){500, MIN};
	cfg->kingdee.concurrency = 8;
	cfg->kingdee.timeout_ms = 30 * SEC;
	cfg->kingdee.lookup_ttl_ms = DAY;

	cfg->alerts_after_ms = 10 * MIN;
	cfg->alerts_interval_ms = 10 * MIN;
	cfg->alerts_lag_ms = 2 * HOUR;

	cfg->http.max_body = 32ULL << 20;
	cfg->http.max_retry_after_ms = HOUR;

	cfg->queue.capacity = 10000;
	cfg->queue.max_attempts = 12;
	cfg->queue.backoff_initial_ms = SEC;
	cfg->queue.backoff_max_ms = 10 * MIN;
}

/* Each login needs its own keys, and refuses the other's so that a half-switched config is
 * noticed. */
static void jdy_auth_checks(ctx_t *c, wj_config_t *cfg, json_t *kd)
{
	static const char *const gateway_keys[] = {"outer_instance_id", NULL};
	static const char *const password_keys[] = {"username", "password", "password_file",
						    "password_credential", "account_id", NULL};
	bool password = cfg->kingdee.auth == WJ_JDY_AUTH_PASSWORD;
	const char *const *foreign = password ? gateway_keys : password_keys;
	for (; *foreign; foreign++) {
		char p[PATH_LEN];
		if (json_object_get(kd, *foreign))
			err(c, join(p, "kingdee", *foreign), "only for auth \"%s\"",
			    password ? "gateway" : "password");
	}
	if (!password) {
		if (!json_object_get(kd, "outer_instance_id"))
			err(c, "kingdee.outer_instance_id", "required");
		return;
	}
	if (cfg->kingdee.api != WJ_JDY_V1)
		err(c, "kingdee.auth", "\"password\" is the login of the V1 API: set api \"v1\"");
	if (!json_object_get(kd, "username"))
		err(c, "kingdee.username", "required (auth \"password\")");
	if (!json_object_get(kd, "password") && !json_object_get(kd, "password_file") &&
	    !json_object_get(kd, "password_credential"))
		err(c, "kingdee.password", "required (auth \"password\"): give password, "
		    "password_file or password_credential");
	if (!json_object_get(kd, "account_id"))
		err(c, "kingdee.account_id", "required (auth \"password\"): the account set "
		    "(账套) to post to; a login error lists the ones the login can see");
}

static void cross_checks(ctx_t *c, wj_config_t *cfg, json_t *doc)
{
	/* Plain HTTP carries the secrets, tokens and bills readable by anyone on the path. */
	const struct {
		const char *path, *url;
	} urls[] = {{"wdt.url", cfg->wdt.url}, {"kingdee.url", cfg->kingdee.url}};
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]) && !cfg->allow_insecure_http; i++)
		if (urls[i].url && !strncmp(urls[i].url, "http://", 7))
			err(c, urls[i].path, "plain http:// sends credentials and bills unencrypted: use "
			    "https:// (or set allow_insecure_http: true for a test server)");
	if (cfg->map_max < cfg->map_size)
		err(c, "store.map_max", "must be at least store.map_size");
	if (cfg->queue.backoff_max_ms < cfg->queue.backoff_initial_ms)
		err(c, "queue.backoff.max", "must be at least queue.backoff.initial");
	if (cfg->wdt.api == WJ_WDT_OPENAPI2) {
		if (json_object_get(json_object_get(doc, "wdt"), "target_app_key"))
			err(c, "wdt.target_app_key", "only for api \"qimen\"");
		free(cfg->wdt.target_app_key);
		cfg->wdt.target_app_key = NULL;
	}
	jdy_auth_checks(c, cfg, json_object_get(doc, "kingdee"));
	if (!cfg->status_file && cfg->state_dir &&
	    asprintf(&cfg->status_file, "%s/status.json", cfg->state_dir) < 0) {
		cfg->status_file = NULL;
		c->oom = true;
	}
	check_overlaps(c, cfg);
	/* A mapping that does not compile is refused here, not when the daemon starts. */
	for (size_t i = 0; i < cfg->n_flows; i++) {
		const wj_flow_cfg_t *f = &cfg->flows[i];
		if (!f->mapping)
			continue;
		wj_mapping_t *m = NULL;
		char msg[512], path[600];
		if (wj_mapping_compile(f->mapping, cfg->kingdee.api, f->remark_template, &m, msg,
				       sizeof(msg)) == 0) {
			wj_mapping_free(m);
			continue;
		}
		char *sep = strstr(msg, ": ");
		if (sep)
			*sep = '\0';
		snprintf(path, sizeof(path), "flows[%zu].%s", i, msg);
		err(c, path, "%s", sep ? sep + 2 : "invalid mapping");
	}
}

/* jansson appends " near 'TOKEN'"; the token may be part of a secret, so it is dropped
 * except for duplicate keys, where it is the key. */
static void syntax_error(ctx_t *c, const json_error_t *je)
{
	char text[JSON_ERROR_TEXT_LENGTH];
	snprintf(text, sizeof(text), "%s", je->text);
	char *near = strstr(text, " near '");
	if (near && json_error_code(je) != json_error_duplicate_key)
		*near = '\0';
	if (wj_errors_addf(c->errs, "%s:%d:%d: %s", c->name, je->line, je->column, text) < 0)
		c->oom = true;
}

/* Every configured secret, for masking: wj_config_secrets(). 0 or -ENOMEM. */
static int collect_secrets(wj_config_t *cfg)
{
	const char *all[8 + 2 * cfg->n_alerts];
	size_t n = 0;
	all[n++] = cfg->wdt.app_secret;
	all[n++] = cfg->kingdee.client_secret;
	all[n++] = cfg->kingdee.password;
	for (size_t i = 0; i < cfg->n_alerts; i++) {
		all[n++] = cfg->alerts[i].url;
		all[n++] = cfg->alerts[i].secret;
	}
	cfg->secret_list = calloc(n + 1, sizeof(*cfg->secret_list));
	if (!cfg->secret_list)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (all[i] && *all[i])
			cfg->secret_list[k++] = all[i];
	return 0;
}

/* Flows left without a name by a lenient load are dropped. */
static void drop_nameless_flows(wj_config_t *cfg)
{
	size_t k = 0;
	for (size_t i = 0; i < cfg->n_flows; i++) {
		if (!cfg->flows[i].name) {
			flow_free(&cfg->flows[i]);
			continue;
		}
		cfg->flows[k++] = cfg->flows[i];
	}
	cfg->n_flows = k;
}

static wj_config_t *parse_buf(const char *text, size_t len, const char *name, wj_errors_t *errs,
			      bool paths_only)
{
	wj_errors_t local = {0};
	ctx_t c = {
		.name = name ? name : "config",
		.errs = errs ? errs : &local,
		.tz_offset = 8 * 3600,
		.now = wj_now(),
		.paths_only = paths_only,
	};
	size_t n0 = c.errs->n;
	wj_config_t *cfg = NULL;
	json_t *doc = NULL;
	char *copy = malloc(len + 1);
	if (!copy) {
		c.oom = true;
		goto fail;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	strip_comments(copy, len);
	json_error_t je;
	doc = json_loadb(copy, len, JSON_REJECT_DUPLICATES, &je);
	free(copy);
	if (!doc) {
		syntax_error(&c, &je);
		goto fail;
	}
	if (!json_is_object(doc)) {
		wj_errors_addf(c.errs, "%s: expected a JSON object at the top level", c.name);
		goto fail;
	}
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		c.oom = true;
		goto fail;
	}
	cfg->doc = doc;
	doc = NULL;
	cfg->path = xstrdup(&c, c.name);
	config_defaults(&c, cfg);
	walk(&c, "", cfg->doc, top_fields, cfg);
	cross_checks(&c, cfg, cfg->doc);
	if (c.oom || (c.errs->n > n0 && !paths_only))
		goto fail;
	if (paths_only)
		drop_nameless_flows(cfg);
	if (collect_secrets(cfg) < 0) {
		c.oom = true;
		goto fail;
	}
	wj_errors_free(&local);
	return cfg;
fail:
	if (c.oom)
		wj_errors_addf(c.errs, "%s: out of memory", c.name);
	json_decref(doc);
	wj_config_free(cfg);
	wj_errors_free(&local);
	return NULL;
}

wj_config_t *wj_config_parse(const char *text, const char *name, wj_errors_t *errs)
{
	return parse_buf(text ? text : "", text ? strlen(text) : 0, name, errs, false);
}

wj_config_t *wj_config_parse_paths(const char *text, const char *name, wj_errors_t *errs)
{
	return parse_buf(text ? text : "", text ? strlen(text) : 0, name, errs, true);
}

static wj_config_t *load(const char *path, wj_errors_t *errs, bool paths_only)
{
	wj_errors_t local = {0};
	wj_errors_t *e = errs ? errs : &local;
	wj_config_t *cfg = NULL;
	char *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		wj_errors_addf(e, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)CONFIG_MAX) {
		wj_errors_addf(e, "%s: not a regular file of at most %u bytes", path, CONFIG_MAX);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		wj_errors_addf(e, "%s: out of memory", path);
		goto out;
	}
	size_t len = 0;
	while (len < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			wj_errors_addf(e, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	cfg = parse_buf(buf, len, path, e, paths_only);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	wj_errors_free(&local);
	return cfg;
}

wj_config_t *wj_config_load(const char *path, wj_errors_t *errs)
{
	return load(path, errs, false);
}

wj_config_t *wj_config_load_paths(const char *path, wj_errors_t *errs)
{
	return load(path, errs, true);
}

void wj_config_free(wj_config_t *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	json_decref(cfg->doc);
	free(cfg->state_dir);
	free(cfg->log_file);
	free(cfg->status_file);
	free(cfg->metrics_file);
	free(cfg->html_file);
	free(cfg->timezone);
	free(cfg->wdt.url);
	free(cfg->wdt.sid);
	free(cfg->wdt.app_key);
	free(cfg->wdt.app_secret);
	free(cfg->wdt.target_app_key);
	free(cfg->wdt.ca_file);
	free(cfg->kingdee.url);
	free(cfg->kingdee.client_id);
	free(cfg->kingdee.client_secret);
	free(cfg->kingdee.outer_instance_id);
	free(cfg->kingdee.username);
	free(cfg->kingdee.password);
	free(cfg->kingdee.account_id);
	free(cfg->kingdee.ca_file);
	for (size_t i = 0; i < cfg->kingdee.n_store_map; i++) {
		free(cfg->kingdee.store_map[i].key);
		free(cfg->kingdee.store_map[i].value);
	}
	free(cfg->kingdee.store_map);
	for (size_t i = 0; i < cfg->kingdee.n_material_map; i++) {
		free(cfg->kingdee.material_map[i].key);
		free(cfg->kingdee.material_map[i].value);
	}
	free(cfg->kingdee.material_map);
	for (size_t i = 0; i < cfg->n_flows; i++)
		flow_free(&cfg->flows[i]);
	free(cfg->flows);
	for (size_t i = 0; i < cfg->n_alerts; i++) {
		free(cfg->alerts[i].url);
		free(cfg->alerts[i].secret);
	}
	free(cfg->alerts);
	free(cfg->secret_list);
	free(cfg);
}

const char *const *wj_config_secrets(const wj_config_t *cfg)
{
	return cfg->secret_list;
}
