#include "lib/wdt.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "lib/json.h"

/* ---- signatures ---- */

static int cmp_param(const void *a, const void *b, void *ctx)
{
	const wj_kv_t *p = ctx;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int c = strcmp(p[i].key, p[j].key);
	if (c)
		return c;
	return i < j ? -1 : i > j;
}

/* Java's Character.isWhitespace: HT..CR, FS..US, space, and the Unicode space, line and
 * paragraph separators except the no-break ones (U+00A0, U+2007, U+202F). */
static bool java_space(uint32_t cp)
{
	if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F))
		return true;
	return cp == 0x1680 || (cp >= 0x2000 && cp <= 0x2006) || (cp >= 0x2008 && cp <= 0x200A) ||
	       cp == 0x2028 || cp == 0x2029 || cp == 0x205F || cp == 0x3000;
}

bool wj_wdt_qimen_blank(const char *value)
{
	const unsigned char *c = (const unsigned char *)value;
	size_t left = value ? strlen(value) : 0;
	while (left) {
		size_t n = wj_utf8_seq(c, left);
		if (!n)
			return false;
		uint32_t cp = n == 1 ? c[0] : c[0] & (0x7F >> n);
		for (size_t i = 1; i < n; i++)
			cp = (cp << 6) | (c[i] & 0x3F);
		if (!java_space(cp))
			return false;
		c += n;
		left -= n;
	}
	return true;
}

/* A parameter left out of the request and its signature. */
static bool skipped_value(const char *value, bool qimen)
{
	return qimen ? wj_wdt_qimen_blank(value) : !value || !value[0];
}

static bool signed_param(const wj_kv_t *kv, bool qimen)
{
	return kv->key && !skipped_value(kv->value, qimen) && strcmp(kv->key, "sign") != 0;
}

/* Indices of the parameters taking part in a signature, sorted by key bytewise (strcmp compares
 * as unsigned char). Caller frees; NULL on ENOMEM. */
static size_t *sign_order(const wj_kv_t *p, size_t n, bool qimen, size_t *count)
{
	size_t *idx = malloc((n ? n : 1) * sizeof(*idx));
	if (!idx)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (signed_param(&p[i], qimen))
			idx[k++] = i;
	qsort_r(idx, k, sizeof(*idx), cmp_param, (void *)p);
	*count = k;
	return idx;
}

static void md5_hex(const char *s, size_t len, bool upper, char out[33])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	if (EVP_Digest(s, len, md, &mdlen, EVP_md5(), NULL) != 1 || mdlen != 16) {
		out[0] = '\0';
		return;
	}
	wj_hex(md, 16, out, upper);
}

void wj_wdt_sign_qimen(const wj_kv_t *p, size_t n, const char *secret, char out[33])
{
	wj_buf_t b = {0};
	size_t k = 0;
	size_t *idx = sign_order(p, n, true, &k);
	out[0] = '\0';
	if (!idx)
		return;
	if (!secret)
		secret = "";
	int ret = wj_buf_append(&b, secret, strlen(secret));
	for (size_t i = 0; i < k && !ret; i++) {
		const wj_kv_t *kv = &p[idx[i]];
		ret = wj_buf_printf(&b, "%s%s", kv->key, kv->value);
	}
	if (!ret)
		ret = wj_buf_append(&b, secret, strlen(secret));
	if (!ret)
		md5_hex(b.data, b.len, true, out);
	free(idx);
	wj_buf_free(&b);
}

/* Length in Unicode code points of a UTF-8 string (continuation bytes not counted). */
static size_t utf8_len(const char *s)
{
	size_t n = 0;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		n += (*c & 0xC0) != 0x80;
	return n;
}

int wj_wdt_openapi2_pack(const wj_kv_t *p, size_t n, wj_buf_t *out)
{
	size_t k = 0;
	size_t *idx = sign_order(p, n, false, &k);
	if (!idx)
		return -ENOMEM;
	int ret = 0;
	for (size_t i = 0; i < k && !ret; i++) {
		const wj_kv_t *kv = &p[idx[i]];
		ret = wj_buf_printf(out, "%s%02zu-%s:%04zu-%s", i ? ";" : "", utf8_len(kv->key),
				    kv->key, utf8_len(kv->value), kv->value);
	}
	free(idx);
	return ret;
}

void wj_wdt_sign_openapi2(const wj_kv_t *p, size_t n, const char *secret, char out[33])
{
	wj_buf_t b = {0};
	int ret = wj_wdt_openapi2_pack(p, n, &b);
	out[0] = '\0';
	if (!ret)
		ret = wj_buf_append(&b, secret ? secret : "", secret ? strlen(secret) : 0);
	if (!ret)
		md5_hex(b.data, b.len, false, out);
	wj_buf_free(&b);
}

/* ---- request building ---- */

/* application/x-www-form-urlencoded: RFC 3986 unreserved bytes kept, the rest %XX. */
static int form_append(wj_buf_t *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		bool keep = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
			    (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' ||
			    *c == '~';
		char enc[3] = {'%', hex[*c >> 4], hex[*c & 15]};
		int ret = keep ? wj_buf_append(b, c, 1) : wj_buf_append(b, enc, 3);
		if (ret)
			return ret;
	}
	return 0;
}

/* Append "key=value", preceded by '&' unless first. */
static int form_pair(wj_buf_t *b, const wj_kv_t *kv)
{
	int ret = b->len ? wj_buf_append(b, "&", 1) : 0;
	if (!ret)
		ret = form_append(b, kv->key);
	if (!ret)
		ret = wj_buf_append(b, "=", 1);
	if (!ret)
		ret = form_append(b, kv->value);
	return ret;
}

/* "wdt.stockin.order.query" → "stockin_order_query.php" appended to b. */
static int script_name(wj_buf_t *b, const char *method)
{
	if (!strncmp(method, "wdt.", 4))
		method += 4;
	if (!*method)
		return -EINVAL;
	for (const char *c = method; *c; c++) {
		bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			  (*c >= '0' && *c <= '9') || *c == '_' || *c == '.';
		if (!ok)
			return -EINVAL;
		char ch = *c == '.' ? '_' : *c;
		int ret = wj_buf_append(b, &ch, 1);
		if (ret)
			return ret;
	}
	return wj_buf_append(b, ".php", 4);
}

static bool empty(const char *s)
{
	return !s || !*s;
}

int wj_wdt_build(const wj_wdt_opts_t *o, const char *method, const wj_kv_t *params, size_t n,
		 int64_t now, wj_buf_t *url, wj_buf_t *body)
{
	enum { N_SYS = 9 }; /* system parameters at most, sign included */
	char ts[32]; /* a WDT time or epoch seconds */
	char sign[33];
	wj_kv_t *all = NULL;
	size_t m = 0;
	int ret = -EINVAL;

	wj_buf_reset(url);
	wj_buf_reset(body);
	if (!o || empty(o->url) || empty(method) || empty(o->sid) || empty(o->app_key) ||
	    (n && !params))
		goto fail;
	ret = -ENOMEM;
	all = calloc(n + N_SYS, sizeof(*all));
	if (!all)
		goto fail;
#define SYS(k, v) (all[m++] = (wj_kv_t){(char *)(k), (char *)(v)})
	if (o->api == WJ_WDT_QIMEN) {
		wj_time_format(now, o->tz_offset, ts);
		SYS("method", method);
		SYS("app_key", o->app_key);
		SYS("target_app_key", o->target_app_key);
		SYS("sid", o->sid);
		SYS("timestamp", ts);
		SYS("format", "json");
		SYS("v", "2.0");
		SYS("sign_method", "md5");
		ret = wj_buf_append(url, o->url, strlen(o->url));
	} else if (o->api == WJ_WDT_OPENAPI2) {
		snprintf(ts, sizeof(ts), "%lld", (long long)now);
		SYS("sid", o->sid);
		SYS("appkey", o->app_key);
		SYS("timestamp", ts);
		size_t ul = strlen(o->url);
		ret = wj_buf_append(url, o->url, ul);
		if (!ret && o->url[ul - 1] != '/')
			ret = wj_buf_append(url, "/", 1);
		if (!ret)
			ret = script_name(url, method);
	} else {
		ret = -EINVAL;
	}
	if (ret)
		goto fail;
	size_t n_sys = m;
	bool qimen = o->api == WJ_WDT_QIMEN;
	ret = -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (empty(params[i].key))
			goto fail;
		if (!strcmp(params[i].key, "sign"))
			goto fail;
		for (size_t j = 0; j < n_sys; j++)
			if (!strcmp(params[i].key, all[j].key))
				goto fail;
		if (!skipped_value(params[i].value, qimen))
			all[m++] = params[i];
	}
	if (o->api == WJ_WDT_QIMEN)
		wj_wdt_sign_qimen(all, m, o->app_secret, sign);
	else
		wj_wdt_sign_openapi2(all, m, o->app_secret, sign);
	ret = -ENOMEM;
	if (!sign[0])
		goto fail;
	SYS("sign", sign);
#undef SYS
	for (size_t i = 0; i < m; i++) {
		if (skipped_value(all[i].value, qimen))
			continue;
		ret = form_pair(body, &all[i]);
		if (ret)
			goto fail;
	}
	free(all);
	return 0;
fail:
	free(all);
	wj_buf_reset(url);
	wj_buf_reset(body);
	return ret;
}

/* ---- response parsing ---- */

static void set_error(wj_wdt_result_t *r, wj_wdt_class_t cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(wj_wdt_result_t *r, wj_wdt_class_t cls, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	/* a truncated message must not end inside a UTF-8 sequence */
	if (n >= (int)sizeof(r->error)) {
		size_t len = strlen(r->error), k = len;
		while (k > 0 && ((unsigned char)r->error[k - 1] & 0xC0) == 0x80)
			k--;
		if (k > 0 && ((unsigned char)r->error[k - 1] & 0x80)) {
			unsigned char lead = (unsigned char)r->error[k - 1];
			size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
			if (len - (k - 1) < need)
				r->error[k - 1] = '\0';
		}
	}
	r->cls = cls;
}

static void set_rate_limited(wj_wdt_result_t *r, int64_t retry_after_ms)
{
	r->cls = WJ_WDT_RATE_LIMITED;
	r->retry_after_ms = retry_after_ms > WJ_WDT_RATE_BACKOFF_MS ? retry_after_ms :
								      WJ_WDT_RATE_BACKOFF_MS;
}

/* The class of an HTTP status without a usable API error. */
static wj_wdt_class_t http_class(long status)
{
	if (status >= 500 || status == 408 || status == 0)
		return WJ_WDT_TRANSIENT;
	if (status == 401 || status == 403)
		return WJ_WDT_AUTH;
	return WJ_WDT_PERMANENT;
}

static bool http_ok(long status)
{
	return status >= 200 && status < 300;
}

/* A code field that reports an error: non-zero number, or a string other than "" / numeric 0. */
static bool code_set(const json_t *v)
{
	double d;
	if (!v || json_is_null(v))
		return false;
	if (json_is_number(v))
		return json_number_value(v) != 0;
	if (json_is_string(v)) {
		if (!json_string_length(v))
			return false;
		return wj_json_number(v, &d) < 0 || d != 0;
	}
	return json_is_true(v);
}

static bool contains_ci(const char *hay, const char *needle)
{
	return hay && strcasestr(hay, needle) != NULL;
}

static bool is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/* needle as a whole ASCII word (case-insensitive); non-ASCII neighbours count as boundaries. */
static bool contains_word_ci(const char *hay, const char *needle)
{
	size_t nl = strlen(needle);
	for (const char *p = hay; p && (p = strcasestr(p, needle)); p++) {
		bool before = p == hay || !is_word_char(p[-1]);
		bool after = !is_word_char(p[nl]);
		if (before && after)
			return true;
	}
	return false;
}

static wj_wdt_class_t api_error_class(const char *code, const char *sub_code, const char *msg)
{
	int64_t num = 0;
	bool numeric = false;
	if (code && *code) {
		json_t *s = json_string(code);
		numeric = s && wj_json_int(s, &num) == 0;
		json_decref(s);
	}
	if ((numeric && num == WJ_WDT_ERR_RATE) || contains_ci(code, "limit") ||
	    contains_ci(sub_code, "limit") || contains_ci(msg, "调用频繁"))
		return WJ_WDT_RATE_LIMITED;
	if ((numeric && num >= 1004 && num <= 1007) || contains_ci(code, "sign") ||
	    contains_ci(sub_code, "sign") || contains_ci(code, "app-key") ||
	    contains_ci(sub_code, "app-key") || contains_ci(msg, "签名") ||
	    contains_ci(msg, "signature") || contains_ci(msg, "appkey") ||
	    contains_ci(msg, "app_key") || contains_ci(msg, "app key") ||
	    contains_word_ci(code, "sid") || contains_word_ci(sub_code, "sid") ||
	    contains_word_ci(msg, "sid") || contains_ci(msg, "卖家账号"))
		return WJ_WDT_AUTH;
	/* service-side failures: the gateway's isp.* codes, internal errors, timeouts */
	if ((code && !strncasecmp(code, "isp", 3)) ||
	    (sub_code && !strncasecmp(sub_code, "isp.", 4)) || contains_ci(msg, "内部错误") ||
	    contains_ci(msg, "系统错误") || contains_ci(msg, "系统繁忙") || contains_ci(msg, "超时") ||
	    contains_ci(msg, "timeout"))
		return WJ_WDT_TRANSIENT;
	return WJ_WDT_PERMANENT;
}

/* Fills r and returns true when the envelope reports an error. */
static bool api_error(const json_t *env, bool failure, long status, int64_t retry_after_ms,
		      wj_wdt_result_t *r)
{
	const json_t *ec = json_object_get(env, "errorcode");
	const json_t *c = json_object_get(env, "code");
	const char *flag = wj_json_str(env, "flag");
	failure = failure || (flag && !strcmp(flag, "failure"));
	const json_t *set = code_set(ec) ? ec : code_set(c) ? c : NULL;
	if (!set && !failure)
		return false;
	if (set && wj_json_text(set, r->code, sizeof(r->code)) < 0)
		snprintf(r->code, sizeof(r->code), "?");
	const char *sub_code = wj_json_str(env, "sub_code");
	static const char *const msg_keys[] = {"sub_message", "sub_msg", "message", "msg"};
	const char *msg = NULL;
	for (size_t i = 0; i < sizeof(msg_keys) / sizeof(msg_keys[0]) && empty(msg); i++)
		msg = wj_json_str(env, msg_keys[i]);
	if (empty(msg))
		msg = "(no message)";
	wj_wdt_class_t cls = api_error_class(r->code, sub_code, msg);
	if (cls == WJ_WDT_PERMANENT && (status >= 500 || status == 408))
		cls = WJ_WDT_TRANSIENT;
	if (!empty(sub_code))
		set_error(r, cls, "wdt: code %s (%s): %s", r->code[0] ? r->code : "failure",
			  sub_code, msg);
	else
		set_error(r, cls, "wdt: code %s: %s", r->code[0] ? r->code : "failure", msg);
	if (cls == WJ_WDT_RATE_LIMITED)
		set_rate_limited(r, retry_after_ms);
	return true;
}

/* ---- repairing an answer ---- */

static bool digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Length of the JSON number (RFC 8259 grammar) at s[0..left), 0 when none starts there. */
static size_t number_len(const char *s, size_t left)
{
	size_t i = s[0] == '-';
	if (i >= left || !digit(s[i]))
		return 0;
	if (s[i++] != '0')
		while (i < left && digit(s[i]))
			i++;
	if (i < left && s[i] == '.') {
		size_t d = ++i;
		while (i < left && digit(s[i]))
			i++;
		if (i == d)
			return 0;
	}
	if (i < left && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < left && (s[i] == '+' || s[i] == '-'))
			i++;
		size_t d = i;
		while (i < left && digit(s[i]))
			i++;
		if (i == d)
			return 0;
	}
	return i;
}

/* True when jansson refuses the number token tok[0..len) as out of range: an integer (no
 * fraction, no exponent) beyond json_int_t, or a real whose magnitude overflows a double (an
 * underflow reads as 0 and is kept). The same tests as jansson's lexer. -ENOMEM on failure. */
static int number_overflows(const char *tok, size_t len)
{
	char small[64], *buf = len < sizeof(small) ? small : malloc(len + 1);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, tok, len);
	buf[len] = '\0';
	bool integer = !strpbrk(buf, ".eE"), over;
	errno = 0;
	if (integer) {
		(void)strtoll(buf, NULL, 10);
		over = errno == ERANGE;
	} else {
		double d = strtod(buf, NULL);
		over = errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL);
	}
	if (buf != small)
		free(buf);
	return over;
}

/* Copy in[from..to) and then add (an n-byte replacement) to out; the first change starts out. */
static int repair_put(wj_buf_t *out, int *changed, const char *in, size_t from, size_t to,
		      const char *add, size_t n)
{
	if (!*changed)
		wj_buf_reset(out);
	*changed = 1;
	if (wj_buf_append(out, in + from, to - from) < 0 || wj_buf_append(out, add, n) < 0)
		return -ENOMEM;
	return 0;
}

int wj_wdt_repair(const char *in, size_t len, wj_buf_t *out)
{
	const unsigned char *u = (const unsigned char *)in;
	size_t i = 0, copied = 0; /* in[copied..i) is still to be copied to out */
	bool in_string = false, escaped = false;
	int changed = 0;
	while (i < len) {
		if (u[i] >= 0x80) {
			size_t n = wj_utf8_seq(u + i, len - i);
			escaped = false;
			if (n) {
				i += n;
				continue;
			}
			if (repair_put(out, &changed, in, copied, i, "\xEF\xBF\xBD", 3) < 0)
				return -ENOMEM;
			copied = ++i;
			continue;
		}
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (in[i] == '\\')
				escaped = true;
			else if (in[i] == '"')
				in_string = false;
			i++;
			continue;
		}
		if (in[i] == '"') {
			in_string = true;
			i++;
			continue;
		}
		size_t n = (in[i] == '-' || digit(in[i])) ? number_len(in + i, len - i) : 0;
		if (!n) {
			i++;
			continue;
		}
		int over = number_overflows(in + i, n);
		if (over < 0)
			return -ENOMEM;
		if (over) {
			/* the token's text becomes a string; it holds no byte that needs escaping */
			if (repair_put(out, &changed, in, copied, i, "\"", 1) < 0 ||
			    repair_put(out, &changed, in, i, i + n, "\"", 1) < 0)
				return -ENOMEM;
			copied = i + n;
		}
		i += n;
	}
	if (changed && wj_buf_append(out, in + copied, len - copied) < 0)
		return -ENOMEM;
	return changed;
}

int wj_wdt_parse(long http_status, const char *body, size_t len, int64_t retry_after_ms,
		 wj_wdt_result_t *out)
{
	json_t *root = NULL;
	json_error_t jerr;

	memset(out, 0, sizeof(*out));
	out->http_status = http_status;
	out->retry_after_ms = -1;
	out->total_count = -1;
	out->date_ms = -1;
	if (http_status == 429) {
		set_error(out, WJ_WDT_RATE_LIMITED, "wdt: HTTP 429");
		set_rate_limited(out, retry_after_ms);
		goto fail;
	}
	if (http_status == 0) {
		set_error(out, WJ_WDT_TRANSIENT, "wdt: no response");
		goto fail;
	}
	/* One order with a broken name or number must not make the whole page unreadable. */
	wj_buf_t fixed = {0};
	int rep = body ? wj_wdt_repair(body, len, &fixed) : 0;
	if (rep < 0) {
		wj_buf_free(&fixed);
		set_error(out, WJ_WDT_TRANSIENT, "wdt: out of memory");
		goto fail;
	}
	if (rep == 1) {
		body = fixed.data;
		len = fixed.len;
	}
	root = body ? json_loadb(body, len, 0, &jerr) : NULL;
	wj_buf_free(&fixed);
	if (!json_is_object(root)) {
		if (!http_ok(http_status))
			set_error(out, http_class(http_status), "wdt: HTTP %ld", http_status);
		else if (!root) {
			/* jansson's " near 'TOKEN'" may end inside a multi-byte character */
			char *near = body ? strstr(jerr.text, " near '") : NULL;
			if (near)
				*near = '\0';
			set_error(out, WJ_WDT_TRANSIENT, "wdt: response: malformed JSON: %s",
				  body ? jerr.text : "empty body");
		} else {
			set_error(out, WJ_WDT_TRANSIENT, "wdt: response: not an object");
		}
		goto fail;
	}
	/* Qimen wraps answers in "response", gateway errors in "error_response"; openapi2 answers
	 * at the top level */
	const json_t *env = json_object_get(root, "error_response");
	bool gateway_error = json_is_object(env);
	if (!gateway_error)
		env = json_object_get(root, "response");
	if (!json_is_object(env))
		env = root;
	if (api_error(env, gateway_error, http_status, retry_after_ms, out))
		goto fail;
	if (!http_ok(http_status)) {
		set_error(out, http_class(http_status), "wdt: HTTP %ld", http_status);
		goto fail;
	}

	/* Only a cross-check for the caller: WDT sends it with page_no 0 only. */
	int64_t count;
	if (wj_json_int(json_object_get(env, "total_count"), &count) == 0 && count >= 0)
		out->total_count = count;
	json_t *list = json_object_get(env, "stockin_list");
	if (!list || json_is_null(list)) {
		if (out->total_count > 0) {
			set_error(out, WJ_WDT_TRANSIENT,
				  "wdt: response: stockin_list: missing with total_count %lld",
				  (long long)out->total_count);
			goto fail;
		}
		out->orders = json_array();
	} else if (!json_is_array(list)) {
		set_error(out, WJ_WDT_TRANSIENT, "wdt: response: stockin_list: not an array");
		goto fail;
	} else {
		size_t i;
		json_t *o;
		json_array_foreach(list, i, o) {
			if (!json_is_object(o)) {
				set_error(out, WJ_WDT_TRANSIENT,
					  "wdt: response: stockin_list[%zu]: not an object", i);
				goto fail;
			}
		}
		out->orders = json_incref(list);
	}
	if (!out->orders) {
		set_error(out, WJ_WDT_TRANSIENT, "wdt: out of memory");
		goto fail;
	}
	json_decref(root);
	out->cls = WJ_WDT_OK;
	return 0;
fail:
	json_decref(root);
	if (out->cls == WJ_WDT_OK) /* every failure path sets a class; keep it an error */
		out->cls = WJ_WDT_TRANSIENT;
	return -EIO;
}

void wj_wdt_result_clear(wj_wdt_result_t *res)
{
	if (!res)
		return;
	json_decref(res->orders);
	res->orders = NULL;
}

/* ---- order helpers ---- */

int wj_wdt_order_key(const json_t *order, char *id, size_t size)
{
	const json_t *v = json_object_get(order, "stockin_id");
	if (!v || json_is_null(v)) {
		const json_t *first = json_array_get(json_object_get(order, "details_list"), 0);
		v = json_object_get(first, "stockin_id");
	}
	int ret = !v || json_is_null(v) ? -ENOENT : wj_json_text(v, id, size);
	if (!ret && !id[0])
		ret = -EINVAL;
	for (const unsigned char *c = (const unsigned char *)id; !ret && *c; c++)
		if (*c <= ' ' || *c == 0x7f)
			ret = -EILSEQ;
	if (!ret) {
		/* a number (a bare one out of range arrives as its text) must be a 64-bit integer */
		json_t *s = json_string_nocheck(id);
		double d;
		int64_t n;
		if (!s)
			ret = -ENOMEM;
		else if (wj_json_number(s, &d) != -EINVAL && wj_json_int(s, &n) < 0)
			ret = -ERANGE;
		json_decref(s);
	}
	if (ret && size)
		id[0] = '\0';
	return ret;
}

const char *wj_wdt_key_problem(int err)
{
	switch (err) {
	case -ENOENT: return "missing";
	case -EINVAL: return "empty or not a scalar";
	case -EILSEQ: return "contains a control character or a space";
	case -ENOSPC: return "too long";
	case -ERANGE: return "a number that is not an integer within 64 bits";
	case -ENOMEM: return "out of memory";
	default: return "unusable";
	}
}

bool wj_wdt_order_matches(const json_t *order, const wj_kv_t *params, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(params[i].key, "order_type") && strcmp(params[i].key, "status"))
			continue;
		char v[64];
		if (wj_json_text(json_object_get(order, params[i].key), v, sizeof(v)) < 0 ||
		    strcmp(v, params[i].value))
			return false;
	}
	return true;
}

int wj_wdt_order_modified(const json_t *order, int tz_offset, int64_t *epoch)
{
	const json_t *v = json_object_get(order, "modified");
	if (v && !json_is_null(v)) {
		const char *s = json_string_value(v);
		return s ? wj_time_parse(s, tz_offset, epoch) : -EINVAL;
	}
	bool found = false;
	int64_t latest = 0;
	size_t i;
	const json_t *d;
	json_array_foreach(json_object_get(order, "details_list"), i, d) {
		const json_t *m = json_object_get(d, "modified");
		if (!m || json_is_null(m))
			continue;
		int64_t t;
		if (!json_is_string(m) || wj_time_parse(json_string_value(m), tz_offset, &t) < 0)
			return -EINVAL;
		if (!found || t > latest)
			latest = t;
		found = true;
	}
	if (!found)
		return -ENOENT;
	*epoch = latest;
	return 0;
}

/* ---- WDT's clock ---- */

bool wj_wdt_clock_add(wj_wdt_clock_t *c, int64_t date_ms, int64_t recv_ms, uint64_t elapsed_ms)
{
	if (date_ms < 0)
		return false;
	int64_t low = date_ms - recv_ms, high = low + 1000 + (int64_t)elapsed_ms;
	int64_t before = c->offset_ms;
	bool known = c->n > 0;
	if (known && high < c->offset_ms)
		c->n = 0; /* the clock went back: the older answers no longer hold */
	c->low[c->next] = low;
	c->next = (c->next + 1) % WJ_WDT_CLOCK_SAMPLES;
	if (c->n < WJ_WDT_CLOCK_SAMPLES)
		c->n++;
	int64_t best = low;
	for (unsigned i = 1; i < c->n; i++) {
		int64_t v = c->low[(c->next + WJ_WDT_CLOCK_SAMPLES - 1 - i) % WJ_WDT_CLOCK_SAMPLES];
		if (v > best)
			best = v;
	}
	c->offset_ms = best;
	return !known || best != before;
}

bool wj_wdt_clock_known(const wj_wdt_clock_t *c)
{
	return c->n > 0;
}

int64_t wj_wdt_clock_now(const wj_wdt_clock_t *c, int64_t host_now_ms)
{
	int64_t t = host_now_ms + c->offset_ms;
	return t >= 0 ? t / 1000 : -((999 - t) / 1000); /* floor */
}

/* ---- asynchronous client ---- */

struct wj_wdt {
	wj_http_t *http;
	wj_wdt_api_t api;
	char *url, *sid, *app_key, *app_secret, *target_app_key;
	uint64_t timeout_ms;
	int tz_offset;
	int64_t clock_offset_ms;
};

/* One query in flight; independent of the client so the client may be freed meanwhile. */
typedef struct wdt_call {
	wj_wdt_cb cb;
	wj_wdt_prep_fn prep;
	void *arg;
	char *secret; /* to keep it out of error texts */
	uv_loop_t *loop;
	uv_work_t work;
	/* the answer, handed to the worker thread */
	long status;
	char *body;
	size_t body_len;
	int64_t retry_after_ms;
	int64_t date_ms, recv_ms;
	uint64_t elapsed_ms;
	wj_wdt_result_t res;
} wdt_call_t;

static char *dup_or_null(const char *s, bool *fail)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*fail = true;
	return d;
}

static void free_strings(wj_wdt_t *w)
{
	free(w->url);
	free(w->sid);
	free(w->app_key);
	free(w->app_secret);
	free(w->target_app_key);
}

static int copy_opts(wj_wdt_t *w, const wj_wdt_opts_t *o)
{
	wj_wdt_t n = {.http = w->http, .api = o->api, .timeout_ms = o->timeout_ms,
		      .tz_offset = o->tz_offset, .clock_offset_ms = w->clock_offset_ms};
	bool fail = false;
	n.url = dup_or_null(o->url, &fail);
	n.sid = dup_or_null(o->sid, &fail);
	n.app_key = dup_or_null(o->app_key, &fail);
	n.app_secret = dup_or_null(o->app_secret, &fail);
	n.target_app_key = dup_or_null(o->target_app_key, &fail);
	if (fail) {
		free_strings(&n);
		return -ENOMEM;
	}
	free_strings(w);
	*w = n;
	return 0;
}

wj_wdt_t *wj_wdt_new(wj_http_t *http, const wj_wdt_opts_t *o)
{
	wj_wdt_t *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->http = http;
	if (copy_opts(w, o) < 0) {
		free(w);
		return NULL;
	}
	return w;
}

void wj_wdt_set_opts(wj_wdt_t *w, const wj_wdt_opts_t *o)
{
	(void)copy_opts(w, o);
}

void wj_wdt_set_clock_offset(wj_wdt_t *w, int64_t offset_ms)
{
	w->clock_offset_ms = offset_ms;
}

void wj_wdt_free(wj_wdt_t *w)
{
	if (!w)
		return;
	free_strings(w);
	free(w);
}

/* Replace every occurrence of secret in s by "***" (in place; the text only shrinks or stays
 * within size). */
static void mask_secret(char *s, size_t size, const char *secret)
{
	if (empty(secret))
		return;
	size_t sl = strlen(secret);
	char *from = s, *p;
	while ((p = strstr(from, secret))) {
		if (sl < 3) {
			/* too short to mask: drop the whole text */
			snprintf(s, size, "wdt: error text withheld");
			return;
		}
		memcpy(p, "***", 3);
		memmove(p + 3, p + sl, strlen(p + sl) + 1);
		from = p + 3;
	}
}

static void call_free(wdt_call_t *call)
{
	wj_wdt_result_clear(&call->res);
	free(call->secret);
	free(call->body);
	free(call);
}

/* Worker thread: a page's tree is freed where it was built, off the loop. */
static void free_work(uv_work_t *req)
{
	wdt_call_t *call = req->data;
	wj_wdt_result_clear(&call->res);
}

static void free_done(uv_work_t *req, int status)
{
	(void)status;
	call_free(req->data);
}

static void deliver(wdt_call_t *call)
{
	call->res.date_ms = call->date_ms;
	call->res.recv_ms = call->recv_ms;
	call->res.elapsed_ms = call->elapsed_ms;
	mask_secret(call->res.error, sizeof(call->res.error), call->secret);
	mask_secret(call->res.code, sizeof(call->res.code), call->secret);
	call->cb(&call->res, call->arg);
	call->work.data = call;
	if (call->res.orders && call->loop &&
	    uv_queue_work(call->loop, &call->work, free_work, free_done) == 0)
		return;
	call_free(call);
}

/* Worker thread: parsing a page of ~100 orders is the daemon's biggest single cost. */
static void parse_answer(wdt_call_t *call, long status, const char *body, size_t len,
			 int64_t retry_after_ms)
{
	(void)wj_wdt_parse(status, body, len, retry_after_ms, &call->res);
	if (call->res.cls == WJ_WDT_OK && call->prep)
		call->prep(&call->res, call->arg);
}

static void parse_work(uv_work_t *req)
{
	wdt_call_t *call = req->data;
	parse_answer(call, call->status, call->body, call->body_len, call->retry_after_ms);
	free(call->body);
	call->body = NULL;
}

static void parse_done(uv_work_t *req, int status)
{
	(void)status; /* never cancelled */
	deliver(req->data);
}

static void on_http(const wj_http_resp_t *resp, void *arg)
{
	wdt_call_t *call = arg;
	call->date_ms = resp->date_ms;
	call->recv_ms = wj_now_ms();
	call->elapsed_ms = resp->elapsed_ms;
	if (resp->curl_code != CURLE_OK || resp->status == 0) {
		call->res.cls = WJ_WDT_TRANSIENT;
		call->res.http_status = resp->status;
		call->res.retry_after_ms = -1;
		snprintf(call->res.error, sizeof(call->res.error), "wdt: network: %s",
			 !empty(resp->error) ? resp->error : curl_easy_strerror(resp->curl_code));
		deliver(call);
		return;
	}
	call->status = resp->status;
	call->retry_after_ms = resp->retry_after_ms;
	call->body_len = resp->body_len;
	call->body = wj_http_take_body(resp); /* the worker parses it: no copy */
	if (call->body) {
		call->work.data = call;
		if (uv_queue_work(call->loop, &call->work, parse_work, parse_done) == 0)
			return;
	}
	/* no body or no worker: parse here */
	if (call->body) {
		parse_answer(call, resp->status, call->body, call->body_len, resp->retry_after_ms);
		free(call->body);
		call->body = NULL;
	} else {
		parse_answer(call, resp->status, "", 0, resp->retry_after_ms);
	}
	deliver(call);
}

int wj_wdt_query(wj_wdt_t *w, const char *method, const wj_kv_t *params, size_t n,
		 wj_wdt_prep_fn prep, wj_wdt_cb cb, void *arg)
{
	static const char *const headers[] = {
		"Content-Type: application/x-www-form-urlencoded;charset=utf-8",
		"Accept: application/json",
		NULL,
	};
	wj_buf_t url = {0}, body = {0};
	wdt_call_t *call = NULL;
	int ret = -EINVAL;
	if (!w || !cb)
		goto fail;
	wj_wdt_opts_t o = {
		.api = w->api, .url = w->url, .sid = w->sid, .app_key = w->app_key,
		.app_secret = w->app_secret, .target_app_key = w->target_app_key,
		.timeout_ms = w->timeout_ms, .tz_offset = w->tz_offset,
	};
	int64_t now = wj_wdt_clock_now(&(wj_wdt_clock_t){.offset_ms = w->clock_offset_ms},
					wj_now_ms());
	ret = wj_wdt_build(&o, method, params, n, now, &url, &body);
	if (ret)
		goto fail;
	ret = -ENOMEM;
	call = calloc(1, sizeof(*call));
	if (!call)
		goto fail;
	call->cb = cb;
	call->prep = prep;
	call->arg = arg;
	call->loop = wj_http_loop(w->http);
	if (w->app_secret && !(call->secret = strdup(w->app_secret)))
		goto fail;
	wj_http_req_t req = {
		.method = "POST",
		.url = url.data,
		.headers = headers,
		.body = body.data,
		.body_len = body.len,
		.timeout_ms = w->timeout_ms,
	};
	ret = wj_http_request(w->http, &req, on_http, call);
	if (ret)
		goto fail;
	wj_buf_free(&url);
	wj_buf_free(&body);
	return 0;
fail:
	if (call)
		free(call->secret);
	free(call);
	wj_buf_free(&url);
	wj_buf_free(&body);
	return ret;
}
