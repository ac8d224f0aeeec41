/* logfmt logging. Each line is built in memory, masked, then written with one write(2) to an
 * O_APPEND descriptor, so lines from several processes never interleave. */
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"

#include <jansson.h>

#define MSG_MAX (64 * 1024)   /* longer messages are cut */
#define SECRET_MIN 4
#define RUNTIME_SECRETS_MAX 64

typedef struct pattern {
	char *s;
	size_t len;
} pattern_t;

static struct {
	int fd;                   /* STDERR_FILENO when no file is open */
	char *path;               /* NULL for stderr */
	bool journal;             /* stderr is the journal: lines start with "<PRIORITY>" */
	int level;
	int tz_offset;
	int64_t (*now_ms)(void);
	char **cfg;               /* configured secrets */
	size_t n_cfg;
	char **rt;                /* runtime secrets, oldest first */
	size_t n_rt;
	pattern_t *pat;           /* every masked form, longest first */
	size_t n_pat;
	uint8_t first[32];        /* bitmap of the patterns' first bytes */
	bool mask_failed;         /* patterns could not be rebuilt: redact whole lines */
} L = {
	.fd = STDERR_FILENO,
	.level = WJ_LOG_INFO,
	.tz_offset = 8 * 3600,
	.now_ms = wj_now_ms,
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};
/* syslog priorities (debug 7, info 6, warning 4, err 3), as the journal reads a line prefix */
static const char *const level_prio[] = {"<7>", "<6>", "<4>", "<3>"};

/* Output that either grows a wj_buf_t or fills a fixed buffer (always NUL-terminated). In
 * fixed mode `reserve` bytes are kept free; a unit that does not fit sets err. */
typedef struct sink {
	wj_buf_t *buf;
	char *p;
	size_t len, cap, reserve;
	bool err;
} sink_t;

static void put(sink_t *s, const void *d, size_t n)
{
	if (s->err)
		return;
	if (s->buf) {
		if (wj_buf_append(s->buf, d, n) < 0)
			s->err = true;
		return;
	}
	if (s->len + n + s->reserve >= s->cap) {
		s->err = true;
		return;
	}
	memcpy(s->p + s->len, d, n);
	s->len += n;
	s->p[s->len] = '\0';
}

static void puts_(sink_t *s, const char *str)
{
	put(s, str, strlen(str));
}

static bool needs_quote(const char *v, size_t n)
{
	if (n == 0)
		return true;
	const unsigned char *u = (const unsigned char *)v;
	for (size_t i = 0; i < n;) {
		uint32_t c;
		size_t l = wj_utf8_decode(u + i, n - i, &c);
		if (l == 0 || wj_cp_unprintable(c) || c == ' ' || c == '=' || c == '"' || c == '\\')
			return true;
		i += l;
	}
	return false;
}

static void put_hex(sink_t *s, const unsigned char *b, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	char e[16];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		e[k++] = '\\';
		e[k++] = 'x';
		e[k++] = hx[b[i] >> 4];
		e[k++] = hx[b[i] & 15];
	}
	put(s, e, k);
}

/* Emit v escaped for the inside of a logfmt quoted value, one unit (character or escape) at a
 * time, stopping at the first unit that does not fit. */
static void put_escaped(sink_t *s, const char *v, size_t n)
{
	const unsigned char *u = (const unsigned char *)v;
	for (size_t i = 0; i < n && !s->err;) {
		uint32_t c;
		size_t l = wj_utf8_decode(u + i, n - i, &c);
		if (l == 0) {
			put_hex(s, u + i, 1);
			i++;
			continue;
		}
		if (c == '"')
			put(s, "\\\"", 2);
		else if (c == '\\')
			put(s, "\\\\", 2);
		else if (c == '\n')
			put(s, "\\n", 2);
		else if (c == '\r')
			put(s, "\\r", 2);
		else if (c == '\t')
			put(s, "\\t", 2);
		else if (wj_cp_unprintable(c))
			put_hex(s, u + i, l);
		else
			put(s, u + i, l);
		i += l;
	}
}

static void put_value(sink_t *s, const char *v, size_t n)
{
	if (!needs_quote(v, n)) {
		put(s, v, n);
		return;
	}
	put(s, "\"", 1);
	put_escaped(s, v, n);
	put(s, "\"", 1);
}

/* Keys are written as given, except bytes that would break the pair. */
static void put_key(sink_t *s, const char *key)
{
	for (const unsigned char *k = (const unsigned char *)key; *k; k++) {
		char c = (char)*k;
		if (*k <= ' ' || *k == '=' || *k == '"' || *k == '\\' || *k >= 0x7f)
			c = '_';
		put(s, &c, 1);
	}
}

char *wj_logfmt_kv(char *buf, size_t size, const char *key, const char *value)
{
	if (!buf || size == 0)
		return buf;
	size_t start = strnlen(buf, size);
	if (start >= size) /* not NUL-terminated: leave it */
		return buf;
	if (!value)
		value = "";
	size_t vlen = strlen(value);
	sink_t s = {.p = buf, .len = start, .cap = size};
	put(&s, " ", 1);
	put_key(&s, key ? key : "");
	put(&s, "=", 1);
	size_t vstart = s.len;
	if (s.err)
		goto fail;
	put_value(&s, value, vlen);
	if (!s.err)
		return buf;
	/* Cut: as many whole units as fit, then `..."`. */
	s.err = false;
	s.len = vstart;
	s.reserve = 4;
	put(&s, "\"", 1);
	put_escaped(&s, value, vlen);
	s.err = false;
	s.reserve = 0;
	put(&s, "...\"", 4);
	if (!s.err)
		return buf;
fail:
	buf[start] = '\0';
	return buf;
}

/* ---- secrets ---- */

static int add_pattern(pattern_t *pat, size_t *n, char *s)
{
	size_t len = strlen(s);
	for (size_t i = 0; i < *n; i++) {
		if (pat[i].len == len && memcmp(pat[i].s, s, len) == 0) {
			free(s);
			return 0;
		}
	}
	pat[*n].s = s;
	pat[*n].len = len;
	(*n)++;
	return 0;
}

/* Percent-encoding of everything but RFC 3986 unreserved characters. Caller frees. */
static char *url_encode(const char *in, bool upper)
{
	const char *hx = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	size_t n = strlen(in);
	char *out = malloc(3 * n + 1), *p = out;
	if (!out)
		return NULL;
	for (const unsigned char *u = (const unsigned char *)in; *u; u++) {
		if ((*u >= 'A' && *u <= 'Z') || (*u >= 'a' && *u <= 'z') || (*u >= '0' && *u <= '9') ||
		    *u == '-' || *u == '.' || *u == '_' || *u == '~') {
			*p++ = (char)*u;
		} else {
			*p++ = '%';
			*p++ = hx[*u >> 4];
			*p++ = hx[*u & 15];
		}
	}
	*p = '\0';
	return out;
}

/* The form a secret takes inside a quoted value. Caller frees. */
static char *logfmt_escape(const char *in)
{
	wj_buf_t b = {0};
	sink_t s = {.buf = &b};
	put_escaped(&s, in, strlen(in));
	if (s.err || !b.data) {
		wj_buf_free(&b);
		return NULL;
	}
	return b.data;
}

static int cmp_len_desc(const void *a, const void *b)
{
	const pattern_t *x = a, *y = b;
	return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

static void free_patterns(pattern_t *pat, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(pat[i].s);
	free(pat);
}

static int add_forms(pattern_t *pat, size_t *n, const char *secret)
{
	char *forms[4] = {strdup(secret), url_encode(secret, true), url_encode(secret, false),
			  logfmt_escape(secret)};
	int ret = 0;
	for (int i = 0; i < 4; i++) {
		if (!forms[i]) {
			ret = -ENOMEM;
			continue;
		}
		add_pattern(pat, n, forms[i]);
	}
	return ret;
}

static void rebuild_patterns(void)
{
	size_t total = L.n_cfg + L.n_rt, n = 0;
	pattern_t *pat = calloc(4 * total + 1, sizeof(*pat));
	if (!pat)
		goto fail;
	for (size_t i = 0; i < L.n_cfg; i++)
		if (add_forms(pat, &n, L.cfg[i]) < 0)
			goto fail;
	for (size_t i = 0; i < L.n_rt; i++)
		if (add_forms(pat, &n, L.rt[i]) < 0)
			goto fail;
	qsort(pat, n, sizeof(*pat), cmp_len_desc);
	free_patterns(L.pat, L.n_pat);
	L.pat = pat;
	L.n_pat = n;
	memset(L.first, 0, sizeof(L.first));
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)pat[i].s[0];
		L.first[c >> 3] |= (uint8_t)(1u << (c & 7));
	}
	L.mask_failed = false;
	return;
fail:
	free_patterns(pat, n);
	L.mask_failed = true;
}

static void free_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

void wj_log_set_secrets(const char *const *secrets)
{
	size_t n = 0, k = 0;
	while (secrets && secrets[n])
		n++;
	char **list = calloc(n + 1, sizeof(*list));
	if (!list)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (strlen(secrets[i]) < SECRET_MIN)
			continue;
		if (!(list[k] = strdup(secrets[i])))
			goto fail;
		k++;
	}
	free_list(L.cfg, L.n_cfg);
	L.cfg = list;
	L.n_cfg = k;
	rebuild_patterns();
	return;
fail:
	free_list(list, k);
	L.mask_failed = true;
}

void wj_log_add_secret(const char *secret)
{
	if (!secret || strlen(secret) < SECRET_MIN)
		return;
	for (size_t i = 0; i < L.n_rt; i++)
		if (strcmp(L.rt[i], secret) == 0)
			return;
	for (size_t i = 0; i < L.n_cfg; i++)
		if (strcmp(L.cfg[i], secret) == 0)
			return;
	char *copy = strdup(secret);
	if (!copy) {
		L.mask_failed = true;
		return;
	}
	if (L.n_rt == RUNTIME_SECRETS_MAX) {
		free(L.rt[0]);
		memmove(L.rt, L.rt + 1, (L.n_rt - 1) * sizeof(*L.rt));
		L.n_rt--;
	} else {
		char **rt = realloc(L.rt, (L.n_rt + 1) * sizeof(*rt));
		if (!rt) {
			free(copy);
			L.mask_failed = true;
			return;
		}
		L.rt = rt;
	}
	L.rt[L.n_rt++] = copy;
	rebuild_patterns();
}

static size_t match_secret(const char *p, size_t n)
{
	unsigned char c = (unsigned char)p[0];
	if (!(L.first[c >> 3] & (1u << (c & 7))))
		return 0;
	for (size_t i = 0; i < L.n_pat; i++) {
		const pattern_t *s = &L.pat[i];
		if (s->len <= n && s->s[0] == p[0] && memcmp(s->s, p, s->len) == 0)
			return s->len;
	}
	return 0;
}

/* Copy line into out with every secret form replaced by "***". */
static int mask_line(const char *line, size_t n, wj_buf_t *out)
{
	size_t i = 0, from = 0;
	while (i < n) {
		size_t m = match_secret(line + i, n - i);
		if (m == 0) {
			i++;
			continue;
		}
		if (wj_buf_append(out, line + from, i - from) < 0 || wj_buf_append(out, "***", 3) < 0)
			return -ENOMEM;
		i += m;
		from = i;
	}
	return wj_buf_append(out, line + from, n - from);
}

char *wj_log_mask(char *s)
{
	if (!s)
		return s;
	if (L.mask_failed) {
		/* the patterns are incomplete: keep nothing that could hold a secret */
		snprintf(s, strlen(s) + 1, "%s", "***");
		return s;
	}
	if (L.n_pat == 0)
		return s;
	/* Every pattern is at least SECRET_MIN (> 3) bytes long: "***" never outgrows it. */
	size_t n = strlen(s), r = 0, w = 0;
	while (r < n) {
		size_t m = match_secret(s + r, n - r);
		if (m == 0) {
			s[w++] = s[r++];
			continue;
		}
		memcpy(s + w, "***", 3);
		w += 3;
		r += m;
	}
	s[w] = '\0';
	return s;
}

int wj_log_mask_json(json_t *v)
{
	const char *k;
	json_t *x;
	size_t i;
	int ret = 0;
	if (L.n_pat == 0 && !L.mask_failed)
		return 0; /* nothing to mask */
	if (json_is_object(v)) {
		json_object_foreach(v, k, x)
			if (wj_log_mask_json(x) < 0)
				ret = -ENOMEM;
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			if (wj_log_mask_json(x) < 0)
				ret = -ENOMEM;
	} else if (json_is_string(v)) {
		char *s = strdup(json_string_value(v));
		if (!s)
			return json_string_set(v, "***") < 0 ? -ENOMEM : 0;
		if (strcmp(wj_log_mask(s), json_string_value(v)) != 0 && json_string_set(v, s) < 0)
			ret = -ENOMEM;
		free(s);
	}
	return ret;
}

/* ---- destination ---- */

static int open_file(const char *path, bool create)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | (create ? O_CREAT : 0), 0640);
	return fd < 0 ? -errno : fd;
}

/* systemd names the stream it connects to the journal in $JOURNAL_STREAM ("DEVICE:INODE");
 * a stderr redirected elsewhere since no longer matches it. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	char end;
	struct stat st;
	if (!e || sscanf(e, "%llu:%llu%c", &dev, &ino, &end) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static int log_open(const char *path, int level, int tz_offset, bool create)
{
	if (level < WJ_LOG_DEBUG || level > WJ_LOG_ERROR)
		return -EINVAL;
	int fd = STDERR_FILENO;
	char *copy = NULL;
	if (path && *path) {
		if (!(copy = strdup(path)))
			return -ENOMEM;
		fd = open_file(path, create);
		if (fd < 0) {
			free(copy);
			return fd;
		}
	}
	if (L.fd != STDERR_FILENO)
		close(L.fd);
	free(L.path);
	L.fd = fd;
	L.path = copy;
	L.journal = !copy && stderr_is_journal();
	L.level = level;
	L.tz_offset = tz_offset;
	return 0;
}

int wj_log_open(const char *path, int level, int tz_offset)
{
	return log_open(path, level, tz_offset, true);
}

int wj_log_attach(const char *path, int level, int tz_offset)
{
	return log_open(path, level, tz_offset, false);
}

int wj_log_reopen(void)
{
	if (!L.path)
		return 0;
	int fd = open_file(L.path, true);
	if (fd < 0)
		return fd;
	if (L.fd != STDERR_FILENO)
		close(L.fd);
	L.fd = fd;
	return 0;
}

void wj_log_close(void)
{
	if (L.fd != STDERR_FILENO)
		close(L.fd);
	L.fd = STDERR_FILENO;
	L.journal = false;
	free(L.path);
	L.path = NULL;
	free_list(L.cfg, L.n_cfg);
	free_list(L.rt, L.n_rt);
	free_patterns(L.pat, L.n_pat);
	L.cfg = L.rt = NULL;
	L.pat = NULL;
	L.n_cfg = L.n_rt = L.n_pat = 0;
	memset(L.first, 0, sizeof(L.first));
	L.mask_failed = false;
}

void wj_log_set_level(int level)
{
	if (level >= WJ_LOG_DEBUG && level <= WJ_LOG_ERROR)
		L.level = level;
}

int wj_log_level(void)
{
	return L.level;
}

int wj_log_level_parse(const char *s)
{
	for (int i = 0; s && i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

void wj_log_set_clock(int64_t (*now_ms)(void))
{
	L.now_ms = now_ms ? now_ms : wj_now_ms;
}

/* ---- writing ---- */

static void write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(L.fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* "2026-11-29T12:00:00.123+08:00" */
static void format_ts(int64_t ms, int tz, char out[40])
{
	int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
	int frac = (int)(ms - sec * 1000);
	char t[WJ_TIME_LEN];
	wj_time_format(sec, tz, t);
	t[10] = 'T';
	int a = tz < 0 ? -tz : tz;
	snprintf(out, 40, "%s.%03d%c%02d:%02d", t, frac, tz < 0 ? '-' : '+', a / 3600 % 100,
		 a / 60 % 60);
}

/* Fields are written as given; only control bytes are escaped so the line stays one line. */
static void put_fields(sink_t *s, const char *f)
{
	const unsigned char *u = (const unsigned char *)f;
	size_t from = 0, i = 0;
	for (; u[i]; i++) {
		if (u[i] >= 0x20 && u[i] != 0x7f)
			continue;
		put(s, f + from, i - from);
		put_hex(s, u + i, 1);
		from = i + 1;
	}
	put(s, f + from, i - from);
}

void wj_logv(int level, const char *mod, const char *fields, const char *fmt, va_list ap)
{
	if (level < WJ_LOG_DEBUG)
		level = WJ_LOG_DEBUG;
	if (level > WJ_LOG_ERROR)
		level = WJ_LOG_ERROR;
	if (level < L.level)
		return;
	int saved_errno = errno;
	char small[512], *big = NULL;
	const char *msg = small;
	va_list aq;
	va_copy(aq, ap);
	int n = vsnprintf(small, sizeof(small), fmt, aq);
	va_end(aq);
	if (n < 0) {
		msg = "(bad log format)";
		n = (int)strlen(msg);
	} else if ((size_t)n >= sizeof(small)) {
		size_t cap = (size_t)n < MSG_MAX ? (size_t)n + 1 : MSG_MAX;
		if ((big = malloc(cap))) {
			vsnprintf(big, cap, fmt, ap);
			msg = big;
			n = (int)strlen(big);
		} else {
			n = (int)sizeof(small) - 1;
		}
	}

	char ts[40];
	format_ts(L.now_ms(), L.tz_offset, ts);
	const char *prio = L.journal ? level_prio[level] : "";
	wj_buf_t line = {0}, masked = {0};
	sink_t s = {.buf = &line};
	puts_(&s, prio);
	puts_(&s, "ts=");
	puts_(&s, ts);
	puts_(&s, " level=");
	puts_(&s, level_names[level]);
	if (mod && *mod) {
		puts_(&s, " mod=");
		put_value(&s, mod, strlen(mod));
	}
	if (L.mask_failed) {
		puts_(&s, " msg=\"(redacted: secret masking unavailable)\"\n");
	} else {
		if (fields)
			fields += strspn(fields, " "); /* wj_logfmt_kv output starts with a space */
		if (fields && *fields) {
			puts_(&s, " ");
			put_fields(&s, fields);
		}
		puts_(&s, " msg=");
		put_value(&s, msg, (size_t)n);
		puts_(&s, "\n");
	}
	if (s.err) {
		char oom[96];
		int k = snprintf(oom, sizeof(oom),
				 "%sts=%s level=error mod=log msg=\"out of memory\"\n",
				 L.journal ? level_prio[WJ_LOG_ERROR] : "", ts);
		write_all(oom, (size_t)k);
		goto out;
	}
	if (L.n_pat > 0) {
		if (mask_line(line.data, line.len, &masked) < 0) {
			char oom[96];
			int k = snprintf(oom, sizeof(oom),
					 "%sts=%s level=error mod=log msg=\"out of memory\"\n",
					 L.journal ? level_prio[WJ_LOG_ERROR] : "", ts);
			write_all(oom, (size_t)k);
			goto out;
		}
		write_all(masked.data, masked.len);
	} else {
		write_all(line.data, line.len);
	}
out:
	wj_buf_free(&line);
	wj_buf_free(&masked);
	free(big);
	errno = saved_errno;
}

void wj_log(int level, const char *mod, const char *fields, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	wj_logv(level, mod, fields, fmt, ap);
	va_end(ap);
}
