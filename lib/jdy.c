#include "lib/jdy.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"

#define PATH_AUTHORIZE "/jdyconnector/app_management/push_app_authorize"
#define PATH_TOKEN "/jdyconnector/app_management/kingdee_auth_token"
#define PATH_SAVE_V1 "/jdy/inv/inv_check_gain_bill_save"
#define PATH_SAVE_V2 "/jdy/v2/scm/inv_check_gail_bill"
#define PATH_MATERIAL "/jdy/v2/bd/material_detail"
#define PATH_STORE "/jdy/v2/bd/store_detail"
#define PATH_BILLS "/jdy/v2/scm/inv_check_gail_bill"
#define PATH_V1_LOGIN "/auth/user/access_token"
#define PATH_V1_ACCOUNTS "/jdy/sys/accountGroup"
#define PATH_V1_BILLS "/jdy/inv/inv_check_gain_bill_list"
#define PATH_V1_MATERIALS "/jdy/basedata/material_list"
#define PATH_V1_STORES "/jdy/basedata/store_list"

/* Lifetime assumed when the token answer carries no usable "expires". */
#define DEFAULT_TOKEN_LIFE_MS (2 * 3600 * 1000LL)
#define RATE_LIMIT_DEFAULT_MS 1000

/* ---- encoding and signing ---- */

/* Percent-encode s (uppercase hex). RFC 3986 keeps A-Z a-z 0-9 - _ . ~; the form reading (Java's
 * URLEncoder) keeps A-Z a-z 0-9 - _ . * and writes a space as '+'. space_plus: a space is '+'
 * in the RFC 3986 reading too (both SDKs do this for the path). */
static int buf_encode(wj_buf_t *b, const char *s, wj_jdy_enc_t enc, bool space_plus)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			    c == '-' || c == '_' || c == '.' ||
			    (enc == WJ_JDY_ENC_FORM ? c == '*' : c == '~');
		int r;
		if (keep) {
			r = wj_buf_append(b, p, 1);
		} else if (c == ' ' && (space_plus || enc == WJ_JDY_ENC_FORM)) {
			r = wj_buf_append(b, "+", 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			r = wj_buf_append(b, e, 3);
		}
		if (r < 0)
			return -ENOMEM;
	}
	return 0;
}

static int buf_urlencode(wj_buf_t *b, const char *s)
{
	return buf_encode(b, s, WJ_JDY_ENC_RFC3986, false);
}

/* s encoded twice, appended to out */
static int buf_encode2(wj_buf_t *out, const char *s, wj_jdy_enc_t enc)
{
	wj_buf_t once = {0};
	int ret = buf_encode(&once, s, enc, false);
	if (ret == 0 && once.data)
		ret = buf_encode(out, once.data, enc, false);
	wj_buf_free(&once);
	return ret;
}

struct sign_pair {
	const wj_kv_t *kv;
	char *text; /* "k=v", both encoded twice */
};

static int pair_cmp_kv(const void *a, const void *b)
{
	const struct sign_pair *x = a, *y = b;
	int r = strcmp(x->kv->key, y->kv->key);
	return r ? r : strcmp(x->kv->value, y->kv->value);
}

static int pair_cmp_text(const void *a, const void *b)
{
	return strcmp(((const struct sign_pair *)a)->text, ((const struct sign_pair *)b)->text);
}

/* Q of the string to sign: each pair "k=v" with key and value encoded twice, sorted by key
 * and value (RFC 3986 reading) or as whole strings (form reading), joined with '&'. */
static int sign_query(const wj_kv_t *query, size_t nq, wj_jdy_enc_t enc, wj_buf_t *out)
{
	int ret = -ENOMEM;
	struct sign_pair *pairs = nq ? calloc(nq, sizeof(*pairs)) : NULL;
	if (nq && !pairs)
		return -ENOMEM;
	for (size_t i = 0; i < nq; i++) {
		wj_buf_t t = {0};
		pairs[i].kv = &query[i];
		if (buf_encode2(&t, query[i].key, enc) < 0 || wj_buf_append(&t, "=", 1) < 0 ||
		    buf_encode2(&t, query[i].value, enc) < 0) {
			wj_buf_free(&t);
			goto fail;
		}
		pairs[i].text = t.data;
	}
	if (nq)
		qsort(pairs, nq, sizeof(*pairs), enc == WJ_JDY_ENC_FORM ? pair_cmp_text : pair_cmp_kv);
	for (size_t i = 0; i < nq; i++)
		if (wj_buf_printf(out, "%s%s", i ? "&" : "", pairs[i].text) < 0)
			goto fail;
	ret = 0;
fail:
	for (size_t i = 0; i < nq; i++)
		free(pairs[i].text);
	free(pairs);
	return ret;
}

int wj_jdy_sign_string(const char *method, const char *path, const wj_kv_t *query, size_t nq,
		       const char *nonce, const char *timestamp, wj_jdy_enc_t enc, wj_buf_t *out)
{
	if (!method || !path || !nonce || !timestamp || !out || (nq && !query) ||
	    (enc != WJ_JDY_ENC_RFC3986 && enc != WJ_JDY_ENC_FORM))
		return -EINVAL;
	for (size_t i = 0; i < nq; i++)
		if (!query[i].key || !query[i].value)
			return -EINVAL;
	if (wj_buf_printf(out, "%s\n", method) < 0 || buf_encode(out, path, enc, true) < 0 ||
	    wj_buf_append(out, "\n", 1) < 0 || sign_query(query, nq, enc, out) < 0 ||
	    wj_buf_printf(out, "\nx-api-nonce:%s\nx-api-timestamp:%s\n", nonce, timestamp) < 0)
		return -ENOMEM;
	return 0;
}

/* base64(lowercase hex(HMAC-SHA256(key, msg))) */
static int hmac_hex_b64(const char *key, const void *msg, size_t len, char *out, size_t size)
{
	unsigned char mac[32];
	size_t mac_len = 0;
	char hex[65];
	if (!key || !*key || !out)
		return -EINVAL;
	if (size < 89)
		return -ENOSPC;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, strlen(key),
		       (const unsigned char *)msg, len, mac, sizeof(mac), &mac_len) ||
	    mac_len != sizeof(mac))
		return -EINVAL;
	wj_hex(mac, sizeof(mac), hex, false);
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)hex, 64);
	return 0;
}

int wj_jdy_sign(const char *secret, const char *method, const char *path, const wj_kv_t *query,
		size_t nq, const char *nonce, const char *timestamp, wj_jdy_enc_t enc, char *out,
		size_t size)
{
	wj_buf_t s = {0};
	int ret = wj_jdy_sign_string(method, path, query, nq, nonce, timestamp, enc, &s);
	if (ret == 0)
		ret = hmac_hex_b64(secret, s.data, s.len, out, size);
	wj_buf_free(&s);
	return ret;
}

int wj_jdy_app_signature(const char *app_key, const char *app_secret, char *out, size_t size)
{
	if (!app_key)
		return -EINVAL;
	return hmac_hex_b64(app_secret, app_key, strlen(app_key), out, size);
}

/* Expiry readings of a token answer's "expires": an absolute time in ms or s, a lifetime in s
 * or ms. */
#define TOKEN_DAY_MS (86400 * 1000LL)
#define TOKEN_MAX_MS (30 * TOKEN_DAY_MS)

/* How far from a day a lifetime is, as a ratio either way. */
static double day_distance(int64_t life)
{
	double ratio = (double)life / (double)TOKEN_DAY_MS;
	return ratio >= 1 ? ratio : 1 / ratio;
}

int64_t wj_jdy_expiry_ms(int64_t expires, int64_t now_ms)
{
	/* beyond these the readings overflow; no plausible token time is that large */
	if (expires <= 0 || expires > 4000000000000000LL)
		return -1;
	/* a value within 30 days of now, read as an absolute time, is one: in the future it is
	 * the expiry, in the past the token is already expired */
	const int64_t absolute[] = {expires, expires * 1000};
	for (size_t i = 0; i < 2; i++)
		if (llabs(absolute[i] - now_ms) <= TOKEN_MAX_MS)
			return absolute[i] > now_ms ? absolute[i] : -1;
	/* else a lifetime, in s or ms: the plausible one nearest a day */
	int64_t best = -1;
	const int64_t life[] = {expires * 1000, expires};
	for (size_t i = 0; i < 2; i++)
		if (life[i] <= TOKEN_MAX_MS &&
		    (best < 0 || day_distance(life[i]) < day_distance(best - now_ms)))
			best = now_ms + life[i];
	return best;
}

int64_t wj_jdy_refresh_at(int64_t obtained_ms, int64_t expiry_ms)
{
	int64_t life = expiry_ms - obtained_ms;
	if (life <= 0)
		return obtained_ms;
	int64_t at = obtained_ms + life / 10 * 9;
	if (expiry_ms - 300000 < at)
		at = expiry_ms - 300000;
	if (at < obtained_ms + life / 2)
		at = obtained_ms + life / 2;
	return at;
}

/* ---- envelope parsing ---- */

/* Cut a truncated string back to a whole UTF-8 character. */
static void utf8_trim(char *s, size_t size)
{
	size_t len = strlen(s);
	if (len + 1 < size || len == 0)
		return;
	size_t i = len;
	while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
		i--;
	if (i == 0)
		return;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
	if (len - (i - 1) < need)
		s[i - 1] = '\0';
}

static void set_error(wj_jdy_result_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(wj_jdy_result_t *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	utf8_trim(r->error, sizeof(r->error));
}

/* errcode / errorCode / code as integer (number or numeric string). */
static bool env_code(const json_t *doc, long long *code, char *text, size_t size)
{
	/* "code" (gateway errors seen by public clients) only on an answer that is no success */
	static const char *const names[] = {"errcode", "errorCode", "error_code", "code"};
	bool success = json_is_true(json_object_get(doc, "success"));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) - success; i++) {
		const json_t *v = json_object_get(doc, names[i]);
		if (json_is_integer(v)) {
			*code = (long long)json_integer_value(v);
			snprintf(text, size, "%lld", *code);
			return true;
		}
		if (json_is_real(v)) {
			/* beyond long long it is no code we know: an error all the same */
			double d = json_real_value(v);
			bool fits = d >= -9223372036854775808.0 && d < 9223372036854775808.0;
			*code = fits ? (long long)d : -1;
			if (fits)
				snprintf(text, size, "%lld", *code);
			else
				snprintf(text, size, "%g", d);
			return true;
		}
		if (json_is_string(v)) {
			const char *s = json_string_value(v);
			char *end;
			errno = 0;
			long long c = strtoll(s, &end, 10);
			*code = (*s && !*end && !errno) ? c : (*s ? -1 : 0);
			snprintf(text, size, "%s", s);
			utf8_trim(text, size);
			return true;
		}
	}
	return false;
}

static const char *str_field(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	return json_is_string(v) && *json_string_value(v) ? json_string_value(v) : NULL;
}

/* Human message of an envelope: description/message, description_cn, errorInfo msgs. */
static void env_message(const json_t *doc, wj_buf_t *m)
{
	const json_t *data = json_object_get(doc, "data");
	const json_t *info = json_is_object(data) ? json_object_get(data, "errorInfo") : NULL;
	if (!info)
		info = json_object_get(doc, "errorInfo");
	size_t i;
	const json_t *e;
	json_array_foreach(info, i, e) {
		const char *msg = json_is_string(e) ? json_string_value(e) : NULL;
		if (!msg)
			msg = str_field(e, "msg");
		if (!msg)
			msg = str_field(e, "message");
		if (msg && *msg)
			wj_buf_printf(m, "%s%s", m->len ? "; " : "", msg);
	}
	if (m->len)
		return;
	const char *d = str_field(doc, "description");
	if (!d)
		d = str_field(doc, "message");
	if (!d)
		d = str_field(doc, "msg");
	const char *cn = str_field(doc, "description_cn");
	if (d)
		wj_buf_printf(m, "%s", d);
	if (cn && (!d || strcmp(cn, d) != 0))
		wj_buf_printf(m, d ? " (%s)" : "%s", cn);
}

static bool error_info_nonempty(const json_t *doc)
{
	const json_t *data = json_object_get(doc, "data");
	const json_t *info = json_is_object(data) ? json_object_get(data, "errorInfo") : NULL;
	return json_is_array(info) && json_array_size(info) > 0;
}

static bool is_rate_code(long long code, const char *msg)
{
	if (code == 429)
		return true;
	return msg && (strstr(msg, "频繁") || strstr(msg, "限流") || strcasestr(msg, "rate limit") ||
		       strcasestr(msg, "too many requests"));
}

static bool is_auth_code(long long code)
{
	/* the gateway's authorisation family 1030002xxx, 1030002006 being the expired token */
	return code == WJ_JDY_ERR_TOKEN || (code >= 1030002000LL && code <= 1030002999LL);
}

/* Whether one of words starts within span bytes after (or, for before, ends within span
 * bytes before) an occurrence of anchor in msg. */
static bool near_word(const char *msg, const char *anchor, const char *const *words, size_t span,
		      bool before)
{
	for (const char *a = strcasestr(msg, anchor); a; a = strcasestr(a + 1, anchor)) {
		const char *lo = before ? (a - msg > (ptrdiff_t)span ? a - span : msg) : a + strlen(anchor);
		size_t len = before ? (size_t)(a - lo) : strnlen(lo, span);
		for (const char *const *w = words; *w; w++) {
			size_t wl = strlen(*w);
			for (size_t i = 0; i + wl <= len; i++)
				if (!strncasecmp(lo + i, *w, wl))
					return true;
		}
	}
	return false;
}

/* A message that says the token is invalid or expired. How the V1 API words it is not known:
 * "access_token无效或已过期", "token已失效", "invalid access token", "token expired" all count;
 * a message that merely quotes a token elsewhere does not. */
static bool is_token_text(const char *msg)
{
	static const char *const after[] = {"无效", "过期", "失效", "错误", "invalid", "expired",
					    "is invalid", NULL};
	static const char *const before[] = {"invalid", "expired", "无效", NULL};
	if (!msg)
		return false;
	return near_word(msg, "token", after, 16, false) || near_word(msg, "令牌", after, 16, false) ||
	       near_word(msg, "token", before, 16, true);
}

/* V1: "success": false at the top or inside "data", or errors listed in data.errorInfo. */
static bool v1_refused(const json_t *doc)
{
	const json_t *data = json_object_get(doc, "data");
	return json_is_false(json_object_get(doc, "success")) ||
	       (json_is_object(data) && json_is_false(json_object_get(data, "success"))) ||
	       error_info_nonempty(doc);
}

int wj_jdy_parse(long http_status, const char *body, size_t len, int64_t retry_after_ms,
		 bool maybe_sent, wj_jdy_result_t *out, json_t **root)
{
	memset(out, 0, sizeof(*out));
	out->http_status = http_status;
	*root = NULL;
	const wj_jdy_class_t unsure = maybe_sent ? WJ_JDY_UNKNOWN : WJ_JDY_TRANSIENT;
	if (http_status == 0) {
		out->cls = unsure;
		set_error(out, "no response");
		return 0;
	}
	json_t *doc = NULL;
	if (body && len) {
		json_error_t jerr;
		doc = json_loadb(body, len, 0, &jerr);
		if (doc && !json_is_object(doc)) {
			json_decref(doc);
			doc = NULL;
		}
	}
	*root = doc;
	long long code = 0;
	bool has_code = doc && env_code(doc, &code, out->code, sizeof(out->code));
	wj_buf_t msg = {0};
	if (doc)
		env_message(doc, &msg);
	const char *m = msg.data ? msg.data : "";
	if (doc) {
		json_t *data = json_object_get(doc, "data");
		out->data = json_is_null(data) ? NULL : data;
	}

	if (http_status == 429 || (has_code && code != 0 && is_rate_code(code, m))) {
		out->cls = WJ_JDY_RATE_LIMITED;
		out->retry_after_ms = retry_after_ms >= 0 ? retry_after_ms : RATE_LIMIT_DEFAULT_MS;
		set_error(out, "rate limited%s%s", *m ? ": " : "", m);
	} else if (http_status == 401 || http_status == 403 || http_status == 519) {
		out->cls = WJ_JDY_AUTH;
		out->token_refused = http_status == 401 || (has_code && code == WJ_JDY_ERR_TOKEN) ||
				     is_token_text(m);
		set_error(out, "HTTP %ld%s%s", http_status, *m ? ": " : "", m);
	} else if (http_status >= 500) {
		/* Any 5xx, 502 and 503 included, can come from a proxy or gateway after the service
		 * behind it stored the bill: only a request that never left is definitely not
		 * processed. */
		out->cls = unsure;
		set_error(out, "HTTP %ld%s%s", http_status, *m ? ": " : "", m);
	} else if (has_code && code != 0) {
		if (is_auth_code(code) || is_token_text(m)) {
			out->cls = WJ_JDY_AUTH;
			out->token_refused = code == WJ_JDY_ERR_TOKEN || is_token_text(m);
		} else if (code == WJ_JDY_ERR_SYSTEM)
			out->cls = unsure;
		else
			out->cls = WJ_JDY_PERMANENT;
		set_error(out, "errcode %s%s%s", out->code, *m ? ": " : "", m);
	} else if (http_status < 200 || http_status >= 300) {
		out->cls = WJ_JDY_PERMANENT;
		set_error(out, "HTTP %ld%s%s", http_status, *m ? ": " : "", m);
	} else if (!doc) {
		out->cls = unsure;
		set_error(out, "malformed response");
	} else {
		const json_t *success = json_object_get(doc, "success");
		if (v1_refused(doc) && is_token_text(m)) {
			out->cls = WJ_JDY_AUTH;
			out->token_refused = true;
			set_error(out, "%s", m);
		} else if (v1_refused(doc)) {
			out->cls = WJ_JDY_PERMANENT;
			set_error(out, "%s", *m ? m : "refused");
		} else if (!has_code && !json_is_true(success)) {
			out->cls = unsure;
			set_error(out, "malformed response: no envelope");
		} else {
			out->cls = WJ_JDY_OK;
		}
	}
	if (out->cls != WJ_JDY_OK)
		out->data = out->cls == WJ_JDY_PERMANENT ? out->data : NULL;
	wj_buf_free(&msg);
	return 0;
}

static int copy_id(const json_t *v, char *out, size_t size)
{
	int n;
	if (json_is_string(v) && *json_string_value(v))
		n = snprintf(out, size, "%s", json_string_value(v));
	else if (json_is_integer(v))
		n = snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else
		return -ENOENT;
	return n < 0 || (size_t)n >= size ? -ENOSPC : 0;
}

int wj_jdy_saved_bill(const json_t *data, char *id, size_t id_size, char *no, size_t no_size)
{
	if (!id || !id_size || !no || !no_size)
		return -EINVAL;
	id[0] = no[0] = '\0';
	const json_t *ids = json_object_get(data, "successPkIds");
	if (!json_array_size(ids))
		ids = json_object_get(data, "ids");
	int ret = copy_id(json_array_get(ids, 0), id, id_size);
	if (ret < 0) {
		id[0] = '\0';
		return ret;
	}
	const json_t *map = json_object_get(data, "id_number_map");
	const json_t *num = json_object_get(map, id);
	if (json_is_string(num) && snprintf(no, no_size, "%s", json_string_value(num)) >= (int)no_size) {
		no[0] = '\0';
		return -ENOSPC;
	}
	return 0;
}

const char *wj_jdy_class_name(wj_jdy_class_t cls)
{
	switch (cls) {
	case WJ_JDY_OK: return "ok";
	case WJ_JDY_RATE_LIMITED: return "rate-limited";
	case WJ_JDY_AUTH: return "auth";
	case WJ_JDY_TRANSIENT: return "transient";
	case WJ_JDY_PERMANENT: return "permanent";
	case WJ_JDY_UNKNOWN: return "unknown";
	}
	return "?";
}

/* ---- small JSON readers ---- */

static int64_t json_number(const json_t *v, bool *ok)
{
	*ok = true;
	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	if (json_is_real(v) && json_real_value(v) >= -9223372036854775808.0 &&
	    json_real_value(v) < 9223372036854775808.0)
		return (int64_t)json_real_value(v);
	if (json_is_string(v)) {
		char *end;
		errno = 0;
		long long n = strtoll(json_string_value(v), &end, 10);
		if (end != json_string_value(v) && !*end && !errno)
			return n;
	}
	*ok = false;
	return 0;
}

/* The first of several names that holds a non-empty string or an integer, as text. */
static bool field_text(const json_t *o, const char *const *names, char *out, size_t size)
{
	for (; *names; names++)
		if (copy_id(json_object_get(o, *names), out, size) == 0)
			return true;
	out[0] = '\0';
	return false;
}

/* The first of several names that holds a non-negative whole number (number or digits). */
static bool field_count(const json_t *o, const char *const *names, int64_t *out)
{
	for (; *names; names++) {
		bool ok;
		int64_t n = json_number(json_object_get(o, *names), &ok);
		if (ok && n >= 0) {
			*out = n;
			return true;
		}
	}
	return false;
}

/* The first of several names that holds a truth value: true/false, 1/0 as number or text,
 * "true"/"false". */
static bool field_bool(const json_t *o, const char *const *names, bool *out)
{
	for (; *names; names++) {
		const json_t *v = json_object_get(o, *names);
		const char *s = json_string_value(v);
		if (json_is_boolean(v)) {
			*out = json_is_true(v);
			return true;
		}
		if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1)) {
			*out = json_integer_value(v) == 1;
			return true;
		}
		if (s && (!strcmp(s, "1") || !strcasecmp(s, "true"))) {
			*out = true;
			return true;
		}
		if (s && (!strcmp(s, "0") || !strcasecmp(s, "false"))) {
			*out = false;
			return true;
		}
	}
	return false;
}

/* ---- secrets out of error texts ---- */

#define MASK_RING 16   /* runtime secrets remembered: tokens, app secrets, signatures */
#define MASK_MIN 4     /* shorter secrets withhold the whole text instead */

/* Replace each occurrence of pat in s by "***"; s only shrinks. false when pat is too short to
 * be masked and occurs. */
static bool mask_pattern(char *s, const char *pat)
{
	size_t pl = strlen(pat);
	char *from = s, *p;
	while (pl && (p = strstr(from, pat))) {
		if (pl < MASK_MIN)
			return false;
		memcpy(p, "***", 3);
		memmove(p + 3, p + pl, strlen(p + pl) + 1);
		from = p + 3;
	}
	return true;
}

/* Mask secret and its URL-encoded form in s (size bytes). */
static void mask_secret(char *s, size_t size, const char *secret)
{
	if (!secret || !*secret)
		return;
	wj_buf_t enc = {0};
	bool ok = mask_pattern(s, secret);
	if (ok && buf_urlencode(&enc, secret) == 0 && enc.data && strcmp(enc.data, secret))
		ok = mask_pattern(s, enc.data);
	wj_buf_free(&enc);
	if (!ok)
		snprintf(s, size, "error text withheld: it contained a credential");
}

/* ---- client ---- */

struct call {
	struct call *next;
	wj_jdy_t *j;
	char *method, *path, *body;
	wj_kv_t *query;
	size_t nq;
	wj_jdy_cb cb;
	void *arg;
	uint64_t gen;          /* token generation the call was sent with */
	bool retried;          /* already retried after a refused token */
	bool idempotent;       /* a read sent as POST (V1 lists): never an unknown outcome */
	char sig[96];          /* signature of the last send, kept out of error texts */
	/* a failure to deliver from the loop */
	wj_jdy_class_t fail_cls;
	int64_t fail_retry_ms;
	char *fail_msg;
};

struct call_list {
	struct call *head, **tail;
};

struct wj_jdy {
	uv_loop_t *loop;
	wj_http_t *http;
	wj_jdy_api_t api;
	wj_jdy_auth_t auth;
	char *url, *client_id, *client_secret, *outer_instance_id;
	char *username, *password, *account_id;
	uint64_t timeout_ms;
	uint64_t opts_gen;     /* bumped when credentials change */

	char *token;           /* app-token (gateway) or access_token (password) */
	char *domain, *app_key;/* gateway: X-GW-Router-Addr and the app key of the token */
	char *group_name;      /* password: groupName of the account set */
	int64_t expiry_ms, obtained_ms, refresh_ms;
	uint64_t gen;          /* bumped for each token */

	bool login_running;
	uint64_t login_opts_gen;
	bool login_post;       /* password: the login answered GET with 404/405, use POST */
	char *new_app_key, *new_domain; /* gateway: from authorize, adopted with the token */
	char *new_token;       /* password: from the login, adopted with the account set */
	int64_t new_expiry_ms;
	uint64_t login_retry_mono;  /* no new login attempt before this */
	unsigned login_failures;    /* consecutive failed logins */
	wj_jdy_class_t login_cls;
	char login_error[512];

	char *mask[MASK_RING];      /* runtime secrets, overwritten round robin */
	unsigned mask_next;

	struct call_list waiters;   /* calls waiting for a token */
	struct call_list failq;     /* failures delivered from the timer */
	uv_timer_t timer;
	bool timer_closed;
	unsigned refs;              /* HTTP requests in flight */
	bool closing;

	void (*hook)(const char *, void *);
	void *hook_arg;
};

/* Remember a runtime secret: masked in error texts here and in every log line. */
static void mask_add(wj_jdy_t *j, const char *secret)
{
	if (!secret || !*secret)
		return;
	wj_log_add_secret(secret);
	for (unsigned i = 0; i < MASK_RING; i++)
		if (j->mask[i] && !strcmp(j->mask[i], secret))
			return;
	char *copy = strdup(secret);
	if (!copy)
		return; /* the log still masks it */
	free(j->mask[j->mask_next]);
	j->mask[j->mask_next] = copy;
	j->mask_next = (j->mask_next + 1) % MASK_RING;
}

/* Keep every credential the client knows out of s (size bytes). */
static void mask_text(const wj_jdy_t *j, char *s, size_t size, const char *extra)
{
	if (!*s)
		return;
	const char *fixed[] = {j->client_secret, j->password, j->token, j->new_token, extra};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		mask_secret(s, size, fixed[i]);
	for (unsigned i = 0; i < MASK_RING; i++)
		mask_secret(s, size, j->mask[i]);
}

static void list_init(struct call_list *l)
{
	l->head = NULL;
	l->tail = &l->head;
}

static void list_push(struct call_list *l, struct call *c)
{
	c->next = NULL;
	*l->tail = c;
	l->tail = &c->next;
}

static struct call *list_take(struct call_list *l)
{
	struct call *all = l->head;
	list_init(l);
	return all;
}

static void call_free(struct call *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nq; i++) {
		free(c->query[i].key);
		free(c->query[i].value);
	}
	free(c->query);
	free(c->method);
	free(c->path);
	free(c->body);
	free(c->fail_msg);
	free(c);
}

static void free_login_state(wj_jdy_t *j)
{
	free(j->new_app_key);
	free(j->new_domain);
	free(j->new_token);
	j->new_app_key = j->new_domain = j->new_token = NULL;
}

static void jdy_destroy(wj_jdy_t *j)
{
	free(j->url);
	free(j->client_id);
	free(j->client_secret);
	free(j->outer_instance_id);
	free(j->username);
	free(j->password);
	free(j->account_id);
	free(j->token);
	free(j->domain);
	free(j->app_key);
	free(j->group_name);
	free_login_state(j);
	for (unsigned i = 0; i < MASK_RING; i++)
		free(j->mask[i]);
	free(j);
}

static void on_timer_close(uv_handle_t *h)
{
	wj_jdy_t *j = h->data;
	j->timer_closed = true;
	if (j->refs == 0)
		jdy_destroy(j);
}

/* Release the client once it is closing and nothing refers to it any more. */
static void maybe_close(wj_jdy_t *j)
{
	if (!j->closing || j->refs || j->failq.head || uv_is_closing((uv_handle_t *)&j->timer))
		return;
	uv_close((uv_handle_t *)&j->timer, on_timer_close);
}

/* Hand a result to a call's callback, with every credential masked out of its texts. */
static void deliver(wj_jdy_t *j, struct call *c, wj_jdy_result_t *r)
{
	mask_text(j, r->error, sizeof(r->error), c->sig);
	mask_text(j, r->code, sizeof(r->code), c->sig);
	c->cb(r, c->arg);
}

static void on_timer(uv_timer_t *t)
{
	wj_jdy_t *j = t->data;
	struct call *c = list_take(&j->failq);
	while (c) {
		struct call *next = c->next;
		wj_jdy_result_t r;
		memset(&r, 0, sizeof(r));
		r.cls = c->fail_cls;
		r.retry_after_ms = c->fail_retry_ms;
		set_error(&r, "%s", c->fail_msg ? c->fail_msg : "failed");
		deliver(j, c, &r);
		call_free(c);
		c = next;
	}
	maybe_close(j);
}

/* Complete a call with a failure from the loop. */
static void fail_later(wj_jdy_t *j, struct call *c, wj_jdy_class_t cls, int64_t retry_ms,
		       const char *msg)
{
	c->fail_cls = cls;
	c->fail_retry_ms = retry_ms;
	free(c->fail_msg);
	c->fail_msg = strdup(msg);
	list_push(&j->failq, c);
	if (!uv_is_closing((uv_handle_t *)&j->timer))
		uv_timer_start(&j->timer, on_timer, 0, 0);
}

static bool token_usable(const wj_jdy_t *j, int64_t now)
{
	if (!j->token)
		return false;
	int64_t margin = (j->expiry_ms - j->obtained_ms) / 4;
	if (margin > 2000)
		margin = 2000;
	return now + margin < j->expiry_ms;
}

bool wj_jdy_has_token(const wj_jdy_t *j)
{
	return token_usable(j, wj_now_ms());
}

const char *wj_jdy_login_error(const wj_jdy_t *j)
{
	return j->login_error;
}

static void drop_token(wj_jdy_t *j)
{
	free(j->token);
	j->token = NULL;
	j->expiry_ms = j->obtained_ms = j->refresh_ms = 0;
}

/* ---- requests ---- */

enum req_auth {
	REQ_PLAIN,        /* nothing added (the password login) */
	REQ_SIGNED,       /* gateway signature (the gateway login steps) */
	REQ_GATEWAY_CALL, /* signature, app-token and X-GW-Router-Addr */
	REQ_TOKEN_QUERY,  /* ?access_token=T (the account sets) */
	REQ_ACCOUNT_CALL, /* ?access_token=T, groupName and accountId */
};

struct req {
	const char *method, *path;
	const wj_kv_t *q;
	size_t nq;
	const char *body;
	const char *content_type; /* NULL → application/json */
	enum req_auth auth;
	const char *token;        /* REQ_TOKEN_QUERY, REQ_ACCOUNT_CALL */
	char *sig;                /* signed requests: their signature is written here (96 bytes) */
};

static char *hdr(const char *name, const char *value)
{
	char *s = NULL;
	if (asprintf(&s, "%s: %s", name, value ? value : "") < 0)
		return NULL;
	return s;
}

/* base URL + path + query (values encoded once) + access_token when the request carries it */
static int build_url(const wj_jdy_t *j, const struct req *r, wj_buf_t *url)
{
	size_t ulen = strlen(j->url);
	while (ulen && j->url[ulen - 1] == '/')
		ulen--;
	if (wj_buf_append(url, j->url, ulen) < 0 || wj_buf_printf(url, "%s", r->path) < 0)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < r->nq; i++, n++)
		if (wj_buf_append(url, n ? "&" : "?", 1) < 0 || buf_urlencode(url, r->q[i].key) < 0 ||
		    wj_buf_append(url, "=", 1) < 0 || buf_urlencode(url, r->q[i].value) < 0)
			return -ENOMEM;
	if (r->auth == REQ_TOKEN_QUERY || r->auth == REQ_ACCOUNT_CALL)
		if (wj_buf_printf(url, "%saccess_token=", n ? "&" : "?") < 0 ||
		    buf_urlencode(url, r->token ? r->token : "") < 0)
			return -ENOMEM;
	return 0;
}

/* The gateway headers of a signed request into headers[*n...]. */
static int gateway_headers(wj_jdy_t *j, const struct req *r, char **headers, size_t *n)
{
	char nonce[16], ts[24], sig[96];
	uint64_t rnd = 0;
	if (RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) != 1)
		rnd = wj_mono_ms() * 2654435761u ^ (uint64_t)wj_now_ms();
	snprintf(nonce, sizeof(nonce), "%010" PRIu64, rnd % (uint64_t)10000000000ULL);
	snprintf(ts, sizeof(ts), "%" PRId64, wj_now_ms());
	int ret = wj_jdy_sign(j->client_secret, r->method, r->path, r->q, r->nq, nonce, ts,
			      WJ_JDY_ENC_RFC3986, sig, sizeof(sig));
	if (ret < 0)
		return ret;
	if (r->sig)
		snprintf(r->sig, 96, "%s", sig);
	headers[(*n)++] = hdr("X-Api-ClientID", j->client_id);
	headers[(*n)++] = hdr("X-Api-Auth-Version", "2.0");
	headers[(*n)++] = hdr("X-Api-TimeStamp", ts);
	headers[(*n)++] = hdr("X-Api-Nonce", nonce);
	headers[(*n)++] = hdr("X-Api-SignHeaders", "X-Api-TimeStamp,X-Api-Nonce");
	headers[(*n)++] = hdr("X-Api-Signature", sig);
	return 0;
}

static int send_req(wj_jdy_t *j, const struct req *r, wj_http_cb cb, void *arg)
{
	char *headers[16] = {0};
	size_t n = 0;
	wj_buf_t url = {0};
	int ret = build_url(j, r, &url);
	if (ret < 0)
		goto fail;
	bool gateway = r->auth == REQ_SIGNED || r->auth == REQ_GATEWAY_CALL;
	if (gateway && (ret = gateway_headers(j, r, headers, &n)) < 0)
		goto fail;
	headers[n++] = hdr("Content-Type", r->content_type ? r->content_type : "application/json");
	if (r->auth == REQ_GATEWAY_CALL) {
		headers[n++] = hdr("app-token", j->token);
		headers[n++] = hdr("X-GW-Router-Addr", j->domain);
	} else if (r->auth == REQ_ACCOUNT_CALL) {
		headers[n++] = hdr("groupName", j->group_name);
		headers[n++] = hdr("accountId", j->account_id);
	}
	ret = -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (!headers[i])
			goto fail;
	wj_http_req_t req = {
		.method = r->method,
		.url = url.data,
		.headers = (const char *const *)headers,
		.body = r->body,
		.body_len = r->body ? strlen(r->body) : 0,
		.timeout_ms = j->timeout_ms,
	};
	ret = wj_http_request(j->http, &req, cb, arg);
	if (ret == 0)
		j->refs++;
fail:
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
		free(headers[i]);
	wj_buf_free(&url);
	return ret;
}

static void on_call_done(const wj_http_resp_t *resp, void *arg);
static void start_login(wj_jdy_t *j);

static int send_call(wj_jdy_t *j, struct call *c)
{
	c->gen = j->gen;
	bool password = j->auth == WJ_JDY_AUTH_PASSWORD;
	struct req r = {.method = c->method, .path = c->path, .q = c->query, .nq = c->nq,
			.body = c->body, .auth = password ? REQ_ACCOUNT_CALL : REQ_GATEWAY_CALL,
			.token = j->token, .sig = c->sig};
	return send_req(j, &r, on_call_done, c);
}

/* Fail every waiting call with the last login error (from the loop). */
static void fail_waiters(wj_jdy_t *j, wj_jdy_class_t cls, int64_t retry_ms, const char *msg)
{
	struct call *c = list_take(&j->waiters);
	while (c) {
		struct call *next = c->next;
		fail_later(j, c, cls, retry_ms, msg);
		c = next;
	}
}

static void fail_waiters_login(wj_jdy_t *j, int64_t retry_ms)
{
	char msg[600];
	snprintf(msg, sizeof(msg), "login failed: %s", j->login_error);
	fail_waiters(j, j->login_cls, retry_ms, msg);
}

/* Start a login unless one runs or the backoff after a failure forbids it. */
static void need_login(wj_jdy_t *j)
{
	if (j->login_running || j->closing)
		return;
	uint64_t mono = wj_mono_ms();
	if (mono < j->login_retry_mono) {
		fail_waiters_login(j, (int64_t)(j->login_retry_mono - mono));
		return;
	}
	start_login(j);
}

static int dispatch(wj_jdy_t *j, struct call *c)
{
	int64_t now = wj_now_ms();
	if (token_usable(j, now)) {
		int ret = send_call(j, c);
		if (now >= j->refresh_ms)
			need_login(j);
		return ret;
	}
	list_push(&j->waiters, c);
	need_login(j);
	return 0;
}

/* ---- login, both kinds ---- */

/* A failed login blocks the next attempt for 5 s, doubling with each consecutive failure up
 * to a minute, or longer when the server asked for it (retry_hint_ms). */
static void login_failed(wj_jdy_t *j, wj_jdy_class_t cls, int64_t retry_hint_ms,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void login_failed(wj_jdy_t *j, wj_jdy_class_t cls, int64_t retry_hint_ms,
			 const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->login_error, sizeof(j->login_error), fmt, ap);
	va_end(ap);
	utf8_trim(j->login_error, sizeof(j->login_error));
	mask_text(j, j->login_error, sizeof(j->login_error), NULL);
	free_login_state(j);
	unsigned shift = j->login_failures < 4 ? j->login_failures : 4;
	int64_t backoff = (int64_t)WJ_JDY_LOGIN_BACKOFF_MS << shift;
	if (backoff > WJ_JDY_LOGIN_BACKOFF_MAX_MS)
		backoff = WJ_JDY_LOGIN_BACKOFF_MAX_MS;
	if (retry_hint_ms > backoff)
		backoff = retry_hint_ms;
	j->login_failures++;
	j->login_running = false;
	j->login_cls = cls;
	j->login_retry_mono = wj_mono_ms() + (uint64_t)backoff;
	wj_warn("jdy", NULL, "login failed: %s", j->login_error);
	fail_waiters_login(j, backoff);
}

static wj_jdy_class_t login_class(wj_jdy_class_t cls)
{
	switch (cls) {
	case WJ_JDY_TRANSIENT:
	case WJ_JDY_UNKNOWN:
	case WJ_JDY_RATE_LIMITED:
		return WJ_JDY_TRANSIENT;
	default:
		return WJ_JDY_AUTH;
	}
}

/* A login answer is stale when the client closed or its credentials changed meanwhile. */
static bool login_stale(wj_jdy_t *j)
{
	j->refs--;
	if (j->closing) {
		j->login_running = false;
		free_login_state(j);
		maybe_close(j);
		return true;
	}
	if (j->login_opts_gen != j->opts_gen) {
		j->login_running = false;
		free_login_state(j);
		if (j->waiters.head)
			need_login(j);
		return true;
	}
	return false;
}

/* Secrets are in the digest so that a changed password or client secret retires a stored
 * token at the next start. */
void wj_jdy_login_digest(const wj_jdy_t *j, char out[65])
{
	const char *f[] = {j->auth == WJ_JDY_AUTH_PASSWORD ? "password" : "gateway", j->url,
			   j->client_id, j->client_secret, j->outer_instance_id, j->username,
			   j->password, j->account_id};
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char h[32];
	unsigned n = 0;
	bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	for (size_t i = 0; ok && i < sizeof(f) / sizeof(f[0]); i++) {
		const char *v = f[i] ? f[i] : "";
		ok = EVP_DigestUpdate(md, v, strlen(v) + 1) == 1; /* with its NUL: unambiguous */
	}
	ok = ok && EVP_DigestFinal_ex(md, h, &n) == 1 && n == sizeof(h);
	EVP_MD_CTX_free(md);
	out[0] = '\0';
	if (ok)
		wj_hex(h, sizeof(h), out, false);
}

static void call_hook(wj_jdy_t *j)
{
	if (!j->hook)
		return;
	json_t *o;
	char login[65];
	wj_jdy_login_digest(j, login);
	if (j->auth == WJ_JDY_AUTH_PASSWORD)
		o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "auth", "password", "access_token",
			      j->token, "group_name", j->group_name, "account_id", j->account_id,
			      "expires_ms", (json_int_t)j->expiry_ms, "obtained_ms",
			      (json_int_t)j->obtained_ms);
	else
		o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "auth", "gateway", "app_token",
			      j->token, "domain", j->domain, "app_key", j->app_key ? j->app_key : "",
			      "expires_ms", (json_int_t)j->expiry_ms, "obtained_ms",
			      (json_int_t)j->obtained_ms);
	if (o)
		json_object_set_new(o, "login", json_string(login));
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (s)
		j->hook(s, j->hook_arg);
	free(s);
	json_decref(o);
}

/* Parse the answer of one login step; on failure record it (with the step's name) and return
 * false. *root must be released by the caller either way. */
static bool login_answer(wj_jdy_t *j, const wj_http_resp_t *resp, const char *step,
			 wj_jdy_result_t *r, json_t **root)
{
	wj_jdy_parse(resp->status, resp->body, resp->body_len, resp->retry_after_ms, false, r, root);
	if (r->cls == WJ_JDY_OK)
		return true;
	if (resp->status == 0)
		login_failed(j, WJ_JDY_TRANSIENT, 0, "%s: %s", step, resp->error);
	else
		login_failed(j, login_class(r->cls), r->retry_after_ms, "%s: %s", step, r->error);
	return false;
}

/* Expiry of a token answer: "expires" or "expires_in" in the plausible reading; a default
 * lifetime when both are absent. -1 (and the login failed) when present but implausible. */
static int64_t answer_expiry(wj_jdy_t *j, const json_t *data, const char *step, int64_t now)
{
	static const char *const names[] = {"expires", "expires_in"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const json_t *v = json_object_get(data, names[i]);
		bool ok;
		int64_t n = json_number(v, &ok);
		if (!v || json_is_null(v))
			continue;
		int64_t at = ok ? wj_jdy_expiry_ms(n, now) : -1;
		if (at < 0)
			login_failed(j, WJ_JDY_AUTH, 0, "%s: \"%s\" is no future time within 30 days "
				     "and no lifetime of at most 30 days: token unusable", step, names[i]);
		return at;
	}
	return now + DEFAULT_TOKEN_LIFE_MS;
}

/* Adopt a new token (owned) and send the calls that waited for it. */
static void login_ok(wj_jdy_t *j, char *token, int64_t now, int64_t expiry)
{
	drop_token(j);
	j->token = token;
	j->obtained_ms = now;
	j->expiry_ms = expiry;
	j->refresh_ms = wj_jdy_refresh_at(now, expiry);
	j->gen++;
	j->login_running = false;
	j->login_retry_mono = 0;
	j->login_failures = 0;
	j->login_error[0] = '\0';
	wj_info("jdy", NULL, "login ok, token valid for %" PRId64 "s", (expiry - now) / 1000);
	call_hook(j);
	/* the waiting calls go out with the new token, even if it is short-lived */
	struct call *c = list_take(&j->waiters);
	while (c) {
		struct call *next = c->next;
		if (send_call(j, c) < 0)
			fail_later(j, c, WJ_JDY_TRANSIENT, 0, "cannot send request");
		c = next;
	}
}

/* ---- gateway login: push_app_authorize, then kingdee_auth_token ---- */

static void on_token(const wj_http_resp_t *resp, void *arg)
{
	wj_jdy_t *j = arg;
	if (login_stale(j))
		return;
	wj_jdy_result_t r;
	json_t *root = NULL;
	if (!login_answer(j, resp, "token", &r, &root))
		goto out;
	/* "access_token" is another token: only app-token goes in the header */
	const char *token = str_field(r.data, "app-token");
	mask_add(j, str_field(r.data, "access_token"));
	if (!token) {
		login_failed(j, WJ_JDY_AUTH, 0, "token: no app-token in the answer");
		goto out;
	}
	mask_add(j, token);
	int64_t now = wj_now_ms();
	int64_t expiry = answer_expiry(j, r.data, "token", now);
	if (expiry < 0)
		goto out;
	char *t = strdup(token);
	if (!t) {
		login_failed(j, WJ_JDY_TRANSIENT, 0, "out of memory");
		goto out;
	}
	free(j->domain);
	free(j->app_key);
	j->domain = j->new_domain;
	j->app_key = j->new_app_key;
	j->new_domain = j->new_app_key = NULL;
	login_ok(j, t, now, expiry);
out:
	json_decref(root);
}

static void on_authorize(const wj_http_resp_t *resp, void *arg)
{
	wj_jdy_t *j = arg;
	if (login_stale(j))
		return;
	wj_jdy_result_t r;
	json_t *root = NULL;
	if (!login_answer(j, resp, "authorize", &r, &root))
		goto out;
	const json_t *a = json_is_array(r.data) ? json_array_get(r.data, 0) : r.data;
	const char *key = str_field(a, "appKey"), *secret = str_field(a, "appSecret");
	const char *domain = str_field(a, "domain");
	if (!key || !secret || !domain) {
		login_failed(j, WJ_JDY_AUTH, 0, "authorize: no appKey, appSecret or domain in the answer");
		goto out;
	}
	mask_add(j, secret);
	char sig[96];
	sig[0] = '\0';
	free_login_state(j);
	j->new_app_key = strdup(key);
	j->new_domain = strdup(domain);
	if (!j->new_app_key || !j->new_domain ||
	    wj_jdy_app_signature(key, secret, sig, sizeof(sig)) < 0) {
		login_failed(j, WJ_JDY_TRANSIENT, 0, "authorize: cannot sign");
		goto out;
	}
	mask_add(j, sig);
	char req_sig[96] = "";
	wj_kv_t q[2] = {{(char *)"app_key", (char *)key}, {(char *)"app_signature", sig}};
	struct req t = {.method = "GET", .path = PATH_TOKEN, .q = q, .nq = 2, .auth = REQ_SIGNED,
			.sig = req_sig};
	int ret = send_req(j, &t, on_token, j);
	mask_add(j, req_sig);
	if (ret < 0)
		login_failed(j, WJ_JDY_TRANSIENT, 0, "token: cannot send request");
out:
	json_decref(root);
}

static void start_gateway_login(wj_jdy_t *j)
{
	char sig[96] = "";
	wj_kv_t q = {(char *)"outerInstanceId", j->outer_instance_id};
	struct req a = {.method = "POST", .path = PATH_AUTHORIZE, .q = &q, .nq = 1, .body = "{}",
			.auth = REQ_SIGNED, .sig = sig};
	int ret = send_req(j, &a, on_authorize, j);
	mask_add(j, sig);
	if (ret < 0)
		login_failed(j, WJ_JDY_TRANSIENT, 0, "authorize: cannot send request");
}

/* ---- password login: access_token, then the account sets ---- */

/* "accountId (groupName, accountName)" of one account set, appended to b */
static void describe_account(wj_buf_t *b, const json_t *g)
{
	static const char *const id_names[] = {"accountId", "accountid", "account_id", NULL};
	static const char *const group_names[] = {"groupName", "groupname", "group_name", NULL};
	static const char *const name_names[] = {"accountName", "accountname", "name", NULL};
	char id[64], group[128], name[128];
	field_text(g, id_names, id, sizeof(id));
	field_text(g, group_names, group, sizeof(group));
	field_text(g, name_names, name, sizeof(name));
	wj_buf_printf(b, "%s%s (%s%s%s)", b->len ? ", " : "", *id ? id : "?", group,
		      *name ? ", " : "", name);
}

/* Find the configured account set in the accountGroup answer (a list of services each with
 * "accountGroups", or one such object). NULL when absent; *seen lists every one visible. */
static const json_t *find_account(const json_t *data, const char *account_id, wj_buf_t *seen)
{
	static const char *const id_names[] = {"accountId", "accountid", "account_id", NULL};
	const json_t *found = NULL;
	size_t n = json_is_array(data) ? json_array_size(data) : 1;
	for (size_t i = 0; i < n; i++) {
		const json_t *svc = json_is_array(data) ? json_array_get(data, i) : data;
		const json_t *groups = json_object_get(svc, "accountGroups");
		size_t k;
		const json_t *g;
		json_array_foreach(groups, k, g) {
			char id[64];
			field_text(g, id_names, id, sizeof(id));
			if (!found && *id && account_id && !strcmp(id, account_id))
				found = g;
			describe_account(seen, g);
		}
	}
	return found;
}

static void on_accounts(const wj_http_resp_t *resp, void *arg)
{
	static const char *const group_names[] = {"groupName", "groupname", "group_name", NULL};
	wj_jdy_t *j = arg;
	if (login_stale(j))
		return;
	wj_jdy_result_t r;
	json_t *root = NULL;
	wj_buf_t seen = {0};
	if (!login_answer(j, resp, "account sets", &r, &root))
		goto out;
	const json_t *g = find_account(r.data, j->account_id, &seen);
	char group[128];
	if (!g || !field_text(g, group_names, group, sizeof(group))) {
		const char *what = g ? "has no groupName" : "is not among the account sets of this login";
		if (!*j->account_id)
			login_failed(j, WJ_JDY_AUTH, 0, "no kingdee.account_id configured; this login "
				     "sees: %s", seen.len ? seen.data : "no account set");
		else
			login_failed(j, WJ_JDY_AUTH, 0, "account set %s %s; this login sees: %s",
				     j->account_id, what, seen.len ? seen.data : "no account set");
		goto out;
	}
	char *gn = strdup(group);
	if (!gn) {
		login_failed(j, WJ_JDY_TRANSIENT, 0, "out of memory");
		goto out;
	}
	free(j->group_name);
	j->group_name = gn;
	char *t = j->new_token;
	j->new_token = NULL;
	login_ok(j, t, wj_now_ms(), j->new_expiry_ms);
out:
	wj_buf_free(&seen);
	json_decref(root);
}

static void start_password_login(wj_jdy_t *j);

static void on_password_login(const wj_http_resp_t *resp, void *arg)
{
	wj_jdy_t *j = arg;
	if (login_stale(j))
		return;
	/* the GET form is what public clients use; a server that wants the POST form says so */
	if (!j->login_post && (resp->status == 404 || resp->status == 405)) {
		j->login_post = true;
		wj_info("jdy", NULL, "login: GET refused (HTTP %ld), using POST", resp->status);
		start_password_login(j);
		return;
	}
	wj_jdy_result_t r;
	json_t *root = NULL;
	if (!login_answer(j, resp, "login", &r, &root))
		goto out;
	const char *token = str_field(r.data, "access_token");
	if (!token) {
		login_failed(j, WJ_JDY_AUTH, 0, "login: no access_token in the answer");
		goto out;
	}
	mask_add(j, token);
	mask_add(j, str_field(r.data, "refresh_token"));
	int64_t now = wj_now_ms();
	int64_t expiry = answer_expiry(j, r.data, "login", now);
	if (expiry < 0)
		goto out;
	free_login_state(j);
	if (!(j->new_token = strdup(token))) {
		login_failed(j, WJ_JDY_TRANSIENT, 0, "out of memory");
		goto out;
	}
	j->new_expiry_ms = expiry;
	struct req a = {.method = "POST", .path = PATH_V1_ACCOUNTS, .auth = REQ_TOKEN_QUERY,
			.token = token};
	if (send_req(j, &a, on_accounts, j) < 0)
		login_failed(j, WJ_JDY_TRANSIENT, 0, "account sets: cannot send request");
out:
	json_decref(root);
}

static void start_password_login(wj_jdy_t *j)
{
	wj_kv_t q[4] = {{(char *)"client_id", j->client_id},
			{(char *)"client_secret", j->client_secret},
			{(char *)"username", j->username},
			{(char *)"password", j->password}};
	struct req l = {.method = "GET", .path = PATH_V1_LOGIN, .q = q, .nq = 4, .auth = REQ_PLAIN};
	wj_buf_t form = {0};
	if (j->login_post) {
		for (size_t i = 0; i < 4; i++)
			if (wj_buf_printf(&form, "%s%s=", i ? "&" : "", q[i].key) < 0 ||
			    buf_urlencode(&form, q[i].value) < 0)
				goto oom;
		l = (struct req){.method = "POST", .path = PATH_V1_LOGIN, .body = form.data,
				 .content_type = "application/x-www-form-urlencoded",
				 .auth = REQ_PLAIN};
	}
	if (send_req(j, &l, on_password_login, j) < 0)
		login_failed(j, WJ_JDY_TRANSIENT, 0, "login: cannot send request");
	wj_buf_free(&form);
	return;
oom:
	wj_buf_free(&form);
	login_failed(j, WJ_JDY_TRANSIENT, 0, "out of memory");
}

static void start_login(wj_jdy_t *j)
{
	j->login_running = true;
	j->login_opts_gen = j->opts_gen;
	if (j->auth == WJ_JDY_AUTH_PASSWORD)
		start_password_login(j);
	else
		start_gateway_login(j);
}

/* ---- calls ---- */

static void on_call_done(const wj_http_resp_t *resp, void *arg)
{
	struct call *c = arg;
	wj_jdy_t *j = c->j;
	j->refs--;
	/* only a non-idempotent call can leave an uncertain outcome behind */
	bool maybe_sent = resp->maybe_sent && strcmp(c->method, "GET") != 0 && !c->idempotent;
	wj_jdy_result_t r;
	json_t *root = NULL;
	wj_jdy_parse(resp->status, resp->body, resp->body_len, resp->retry_after_ms, maybe_sent, &r,
		     &root);
	if (resp->status == 0)
		set_error(&r, "%s", resp->error && *resp->error ? resp->error : "no response");
	if (r.token_refused && !j->closing) {
		if (c->gen == j->gen && j->token) {
			wj_info("jdy", NULL, "token refused, logging in again");
			drop_token(j);
		}
		if (!c->retried) {
			c->retried = true;
			json_decref(root);
			if (dispatch(j, c) < 0)
				fail_later(j, c, WJ_JDY_TRANSIENT, 0, "cannot send request");
			return;
		}
	}
	deliver(j, c, &r);
	json_decref(root);
	call_free(c);
	maybe_close(j);
}

static char *dup_opt(const char *s)
{
	return strdup(s ? s : "");
}

static bool differs(const char *a, const char *b)
{
	return !a || !b || strcmp(a, b) != 0;
}

static int apply_opts(wj_jdy_t *j, const wj_jdy_opts_t *o)
{
	if (!o || !o->url || !*o->url || !o->client_id || !o->client_secret || !*o->client_secret)
		return -EINVAL;
	if (o->api != WJ_JDY_V1 && o->api != WJ_JDY_V2)
		return -EINVAL;
	if (o->auth == WJ_JDY_AUTH_PASSWORD &&
	    (o->api != WJ_JDY_V1 || !o->username || !*o->username || !o->password || !*o->password))
		return -EINVAL;
	if (o->auth != WJ_JDY_AUTH_PASSWORD && o->auth != WJ_JDY_AUTH_GATEWAY)
		return -EINVAL;
	char *v[7] = {dup_opt(o->url), dup_opt(o->client_id), dup_opt(o->client_secret),
		      dup_opt(o->outer_instance_id), dup_opt(o->username), dup_opt(o->password),
		      dup_opt(o->account_id)};
	char **dst[7] = {&j->url, &j->client_id, &j->client_secret, &j->outer_instance_id,
			 &j->username, &j->password, &j->account_id};
	bool changed = j->auth != o->auth;
	for (size_t i = 0; i < 7; i++) {
		if (!v[i]) {
			for (size_t k = 0; k < 7; k++)
				free(v[k]);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < 7; i++) {
		changed = changed || differs(v[i], *dst[i]);
		free(*dst[i]);
		*dst[i] = v[i];
	}
	j->api = o->api;
	j->auth = o->auth;
	j->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
	if (changed) {
		drop_token(j);
		j->opts_gen++;
		j->login_retry_mono = 0;
		j->login_failures = 0;
		j->login_post = false;
	}
	return 0;
}

wj_jdy_t *wj_jdy_new(uv_loop_t *loop, wj_http_t *http, const wj_jdy_opts_t *o)
{
	if (!loop || !http)
		return NULL;
	wj_jdy_t *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->loop = loop;
	j->http = http;
	list_init(&j->waiters);
	list_init(&j->failq);
	if (apply_opts(j, o) < 0 || uv_timer_init(loop, &j->timer) < 0) {
		jdy_destroy(j);
		return NULL;
	}
	j->timer.data = j;
	return j;
}

int wj_jdy_set_opts(wj_jdy_t *j, const wj_jdy_opts_t *o)
{
	return apply_opts(j, o);
}

void wj_jdy_free(wj_jdy_t *j)
{
	if (!j)
		return;
	j->closing = true;
	fail_waiters(j, WJ_JDY_TRANSIENT, 0, "client closed");
	maybe_close(j);
}

void wj_jdy_set_token_hook(wj_jdy_t *j, void (*hook)(const char *token_json, void *arg), void *arg)
{
	j->hook = hook;
	j->hook_arg = arg;
}

/* The persisted token's credentials for this client's login: token, and the router domain
 * (gateway) or group name (password). NULL token when it belongs to another login. */
static void persisted_fields(const wj_jdy_t *j, const json_t *o, const char **token,
			     const char **where)
{
	const char *auth = str_field(o, "auth");
	bool password = auth && !strcmp(auth, "password");
	*token = *where = NULL;
	if (password != (j->auth == WJ_JDY_AUTH_PASSWORD))
		return;
	if (password && differs(str_field(o, "account_id"), j->account_id))
		return;
	/* made by another login (credentials changed since), or by a version that did not say */
	char login[65];
	wj_jdy_login_digest(j, login);
	if (!*login || differs(str_field(o, "login"), login))
		return;
	*token = str_field(o, password ? "access_token" : "app_token");
	*where = str_field(o, password ? "group_name" : "domain");
}

int wj_jdy_restore_token(wj_jdy_t *j, const char *token_json)
{
	if (!token_json)
		return -EINVAL;
	json_t *o = json_loads(token_json, 0, NULL);
	int ret = -EINVAL;
	const char *token, *where, *key = str_field(o, "app_key");
	bool ok, ok2;
	int64_t expiry = json_number(json_object_get(o, "expires_ms"), &ok);
	int64_t obtained = json_number(json_object_get(o, "obtained_ms"), &ok2);
	if (!json_is_object(o) || !ok)
		goto fail;
	persisted_fields(j, o, &token, &where);
	ret = -ESTALE;
	if (!token || !where)
		goto fail;
	int64_t now = wj_now_ms();
	if (!ok2 || obtained <= 0 || obtained >= expiry || obtained > now)
		obtained = now < expiry ? now : expiry;
	wj_jdy_t probe = {.token = (char *)token, .expiry_ms = expiry, .obtained_ms = obtained};
	if (!token_usable(&probe, now))
		goto fail;
	ret = -ENOMEM;
	char *t = strdup(token), *w = strdup(where), *k = key ? strdup(key) : NULL;
	if (!t || !w || (key && !k)) {
		free(t);
		free(w);
		free(k);
		goto fail;
	}
	mask_add(j, t);
	drop_token(j);
	char **dst = j->auth == WJ_JDY_AUTH_PASSWORD ? &j->group_name : &j->domain;
	free(*dst);
	*dst = w;
	free(j->app_key);
	j->app_key = k;
	j->token = t;
	j->expiry_ms = expiry;
	j->obtained_ms = obtained;
	j->refresh_ms = wj_jdy_refresh_at(obtained, expiry);
	j->gen++;
	ret = 0;
fail:
	json_decref(o);
	return ret;
}

static int kv_dup(wj_kv_t *dst, const wj_kv_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		dst[i].key = strdup(src[i].key);
		dst[i].value = strdup(src[i].value);
		if (!dst[i].key || !dst[i].value)
			return -ENOMEM;
	}
	return 0;
}

static int call_start(wj_jdy_t *j, const char *method, const char *path, const wj_kv_t *query,
		      size_t nq, const char *body, bool idempotent, wj_jdy_cb cb, void *arg)
{
	if (!j || !method || !path || !cb || (nq && !query) || j->closing)
		return -EINVAL;
	for (size_t i = 0; i < nq; i++)
		if (!query[i].key || !query[i].value)
			return -EINVAL;
	struct call *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->j = j;
	c->cb = cb;
	c->arg = arg;
	c->idempotent = idempotent;
	c->method = strdup(method);
	c->path = strdup(path);
	c->body = body ? strdup(body) : NULL;
	c->query = nq ? calloc(nq, sizeof(*c->query)) : NULL;
	c->nq = nq;
	if (!c->method || !c->path || (body && !c->body) || (nq && !c->query) ||
	    kv_dup(c->query, query, nq) < 0)
		goto fail;
	if (dispatch(j, c) < 0)
		goto fail;
	return 0;
fail:
	call_free(c);
	return -ENOMEM;
}

int wj_jdy_call(wj_jdy_t *j, const char *method, const char *path, const wj_kv_t *query,
		size_t nq, const char *body, wj_jdy_cb cb, void *arg)
{
	return call_start(j, method, path, query, nq, body, false, cb, arg);
}

int wj_jdy_save(wj_jdy_t *j, const char *body_json, wj_jdy_cb cb, void *arg)
{
	if (!j || !body_json)
		return -EINVAL;
	return wj_jdy_call(j, "POST", j->api == WJ_JDY_V1 ? PATH_SAVE_V1 : PATH_SAVE_V2, NULL, 0,
			   body_json, cb, arg);
}

/* ---- gain-bill list ---- */

#define BEIJING_OFFSET (8 * 3600)
#define LIST_PAGE_SIZE 100

int64_t wj_jdy_time_ms(const json_t *v)
{
	bool ok;
	int64_t n = json_number(v, &ok);
	if (!ok && json_is_string(v)) {
		/* "YYYY-MM-DD HH:MM:SS", also with a 'T' or a fraction after the seconds */
		const char *s = json_string_value(v);
		char head[20];
		int64_t epoch;
		size_t len = strlen(s);
		if (len < 19 || (len > 19 && s[19] != '.'))
			return -1;
		memcpy(head, s, 19);
		head[19] = '\0';
		if (head[10] == 'T')
			head[10] = ' ';
		return wj_time_parse(head, BEIJING_OFFSET, &epoch) == 0 ? epoch * 1000 : -1;
	}
	if (!ok || n <= 0)
		return -1;
	/* seconds until the year 5138, then milliseconds */
	return n < 100000000000LL ? n * 1000 : n;
}

static json_t *bill_row(const json_t *r)
{
	static const char *const id_names[] = {"id", "billid", "bill_id", NULL};
	static const char *const no_names[] = {"bill_no", "billno", "number", "billNo", NULL};
	static const char *const date_names[] = {"bill_date", "billdate", "date", "billDate", NULL};
	static const char *const ct_names[] = {"create_time", "createtime", "create_date",
					       "createdate", "createTime", NULL};
	char id[128], no[128], date[64];
	field_text(r, id_names, id, sizeof(id));
	field_text(r, no_names, no, sizeof(no));
	field_text(r, date_names, date, sizeof(date));
	if (strlen(date) > 10 && date[4] == '-' && date[7] == '-')
		date[10] = '\0';
	const json_t *rem = json_object_get(r, "remark");
	int64_t ct = -1;
	for (const char *const *n = ct_names; *n && ct < 0; n++)
		ct = wj_jdy_time_ms(json_object_get(r, *n));
	return json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", id, "bill_no", no, "bill_date", date,
			 "remark", json_is_string(rem) ? json_string_value(rem) : "",
			 "create_time_ms", ct >= 0 ? json_integer(ct) : json_null());
}

json_t *wj_jdy_bills_normalise(const json_t *data, unsigned page)
{
	static const char *const page_names[] = {"page", "curpage", "current_page", "pageindex", NULL};
	static const char *const total_names[] = {"total_page", "totalpage", "total_pages",
						  "pagecount", "totalPage", NULL};
	static const char *const count_names[] = {"count", "total", "totalcount", "total_count",
						  "totalCount", NULL};
	const json_t *rows = json_is_array(data) ? data : json_object_get(data, "rows");
	if (!json_is_array(rows))
		return NULL;
	json_t *out = json_array();
	size_t i;
	const json_t *r;
	json_array_foreach(rows, i, r) {
		json_t *row = json_is_object(r) ? bill_row(r) : NULL;
		if (row)
			json_array_append_new(out, row);
	}
	int64_t pg = page ? page : 1, count = (int64_t)json_array_size(rows), total;
	field_count(data, page_names, &pg);
	field_count(data, count_names, &count);
	if (!field_count(data, total_names, &total))
		total = (count + LIST_PAGE_SIZE - 1) / LIST_PAGE_SIZE;
	return json_pack("{s:o, s:I, s:I, s:I}", "rows", out, "page", (json_int_t)pg,
			 "total_page", (json_int_t)total, "count", (json_int_t)count);
}

/* ---- lookups (interface I2) ---- */

/* Set o[key] to the text of v (string or integer); -EINVAL when it has none. */
static int set_text(json_t *o, const char *key, const char *const *names)
{
	char text[256];
	if (!field_text(o, names, text, sizeof(text)))
		return -EINVAL;
	return json_object_set_new(o, key, json_string(text)) < 0 ? -ENOMEM : 0;
}

static const char *const id_names[] = {"id", NULL};
static const char *const number_names[] = {"number", NULL};

int wj_jdy_material_normalise(json_t *o)
{
	static const char *const unit_names[] = {"base_unit_id", "baseunitid_id", "baseunitid",
						 "unit_id", "unitid", NULL};
	static const char *const unit_obj_names[] = {"base_unit", "baseunit", "baseunitid", NULL};
	static const char *const batch_names[] = {"batch_managed", "is_batch", "isbatch",
						  "isbatchmanage", "batchmanager", NULL};
	static const char *const kf_names[] = {"shelf_life_managed", "is_kf_period", "iskfperiod",
					       "iskf_period", "is_kfperiod", NULL};
	if (!json_is_object(o) || set_text(o, "id", id_names) < 0)
		return -EINVAL;
	char unit[256] = "";
	if (!field_text(o, unit_names, unit, sizeof(unit)))
		for (const char *const *n = unit_obj_names; *n && !*unit; n++)
			field_text(json_object_get(o, *n), id_names, unit, sizeof(unit));
	bool batch = false, kf = false;
	field_bool(o, batch_names, &batch);
	field_bool(o, kf_names, &kf);
	if (set_text(o, "number", number_names) < 0 &&
	    json_object_set_new(o, "number", json_string("")) < 0)
		return -ENOMEM;
	if (json_object_set_new(o, "base_unit_id", json_string(unit)) < 0 ||
	    json_object_set_new(o, "batch_managed", json_boolean(batch)) < 0 ||
	    json_object_set_new(o, "shelf_life_managed", json_boolean(kf)) < 0)
		return -ENOMEM;
	return 0;
}

/* The store's locations (仓位) from whichever list it carries: number → id. */
static int store_locations(const json_t *o, json_t *out)
{
	static const char *const list_names[] = {"locations", "sp_entity", "spentity", "spaces",
						  "location_entity", "space_entity", NULL};
	static const char *const loc_id[] = {"id", "sp_id", "spid", "spid_id", "space_id", NULL};
	static const char *const loc_no[] = {"number", "sp_number", "spnumber", "spid_number",
					     "space_number", NULL};
	for (const char *const *n = list_names; *n; n++) {
		const json_t *list = json_object_get(o, *n);
		size_t i;
		const json_t *e;
		json_array_foreach(list, i, e) {
			char id[256], no[256];
			if (field_text(e, loc_id, id, sizeof(id)) && field_text(e, loc_no, no, sizeof(no)) &&
			    json_object_set_new(out, no, json_string(id)) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

int wj_jdy_store_normalise(json_t *o)
{
	static const char *const flag_names[] = {"location_managed", "is_open_sp", "isopensp",
						 "is_open_location", "isopenlocation", "enable_sp",
						 "is_sp", "isspace", NULL};
	if (!json_is_object(o) || set_text(o, "id", id_names) < 0)
		return -EINVAL;
	json_t *locs = json_object_get(o, "locations");
	locs = json_is_object(locs) ? json_deep_copy(locs) : json_object();
	if (!locs || store_locations(o, locs) < 0) {
		json_decref(locs);
		return -ENOMEM;
	}
	bool managed = json_object_size(locs) > 0;
	field_bool(o, flag_names, &managed);
	if (set_text(o, "number", number_names) < 0 &&
	    json_object_set_new(o, "number", json_string("")) < 0) {
		json_decref(locs);
		return -ENOMEM;
	}
	if (json_object_set_new(o, "locations", locs) < 0 ||
	    json_object_set_new(o, "location_managed", json_boolean(managed)) < 0)
		return -ENOMEM;
	return 0;
}

#define LOOKUP_MAX_PAGES 50

struct lookup {
	wj_jdy_t *j;
	const char *what;      /* "material" or "store" */
	int (*normalise)(json_t *o);
	char *number;
	unsigned page;         /* password auth: the V1 list page asked for */
	wj_jdy_cb cb;
	void *arg;
};

static int lookup_send(struct lookup *l);

static void lookup_free(struct lookup *l)
{
	free(l->number);
	free(l);
}

/* The row of a V1 list answer whose number is exactly the one looked up. */
static json_t *exact_row(const json_t *data, const char *number)
{
	const json_t *rows = json_is_array(data) ? data : json_object_get(data, "rows");
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		char no[256];
		if (field_text(row, number_names, no, sizeof(no)) && !strcmp(no, number))
			return row;
	}
	return NULL;
}

/* A V1 list page without the number: whether a later page may still hold it. */
static bool more_pages(const json_t *data, unsigned page)
{
	static const char *const total_names[] = {"total_page", "totalpage", "total_pages",
						  "pagecount", "totalPage", NULL};
	static const char *const count_names[] = {"count", "total", "totalcount", NULL};
	int64_t total = 0, count = 0;
	if (!field_count(data, total_names, &total) && field_count(data, count_names, &count))
		total = (count + LIST_PAGE_SIZE - 1) / LIST_PAGE_SIZE;
	return page < total && page < LOOKUP_MAX_PAGES;
}

static void on_lookup(const wj_jdy_result_t *res, void *arg)
{
	struct lookup *l = arg;
	wj_jdy_result_t r = *res;
	if (r.cls == WJ_JDY_OK && l->j->auth == WJ_JDY_AUTH_PASSWORD) {
		r.data = exact_row(res->data, l->number);
		if (!r.data && more_pages(res->data, l->page)) {
			l->page++;
			if (lookup_send(l) == 0)
				return;
			r.cls = WJ_JDY_TRANSIENT;
			set_error(&r, "%s %s: cannot send request", l->what, l->number);
		}
	}
	if (r.cls == WJ_JDY_PERMANENT) {
		set_error(&r, "%s %s: %s", l->what, l->number, res->error);
	} else if (r.cls == WJ_JDY_OK && (!json_is_object(r.data) || l->normalise(r.data) < 0)) {
		r.cls = WJ_JDY_PERMANENT;
		r.data = NULL;
		set_error(&r, "%s %s not found", l->what, l->number);
	}
	l->cb(&r, l->arg);
	lookup_free(l);
}

static int lookup_send(struct lookup *l)
{
	wj_jdy_t *j = l->j;
	bool material = l->normalise == wj_jdy_material_normalise;
	if (j->auth != WJ_JDY_AUTH_PASSWORD) {
		wj_kv_t q = {(char *)"number", l->number};
		return wj_jdy_call(j, "GET", material ? PATH_MATERIAL : PATH_STORE, &q, 1, NULL,
				   on_lookup, l);
	}
	/* V1: a fuzzy search, 100 a page; the exact number is picked from the rows */
	json_t *b = json_pack("{s:s, s:I, s:I}", "search", l->number, "page", (json_int_t)l->page,
			      "pagesize", (json_int_t)LIST_PAGE_SIZE);
	char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
	json_decref(b);
	int ret = body ? call_start(j, "POST", material ? PATH_V1_MATERIALS : PATH_V1_STORES, NULL,
				    0, body, true, on_lookup, l)
		       : -ENOMEM;
	free(body);
	return ret;
}

static int lookup(wj_jdy_t *j, const char *what, int (*normalise)(json_t *), const char *number,
		  wj_jdy_cb cb, void *arg)
{
	if (!j || !number || !*number || !cb)
		return -EINVAL;
	struct lookup *l = calloc(1, sizeof(*l));
	char *num = strdup(number);
	if (!l || !num) {
		free(l);
		free(num);
		return -ENOMEM;
	}
	*l = (struct lookup){.j = j, .what = what, .normalise = normalise, .number = num,
			     .page = 1, .cb = cb, .arg = arg};
	int ret = lookup_send(l);
	if (ret < 0)
		lookup_free(l);
	return ret;
}

int wj_jdy_material(wj_jdy_t *j, const char *number, wj_jdy_cb cb, void *arg)
{
	return lookup(j, "material", wj_jdy_material_normalise, number, cb, arg);
}

int wj_jdy_store(wj_jdy_t *j, const char *number, wj_jdy_cb cb, void *arg)
{
	return lookup(j, "store", wj_jdy_store_normalise, number, cb, arg);
}

struct list_call {
	unsigned page;
	wj_jdy_cb cb;
	void *arg;
};

static void on_list(const wj_jdy_result_t *res, void *arg)
{
	struct list_call *l = arg;
	wj_jdy_result_t r = *res;
	json_t *norm = NULL;
	if (r.cls == WJ_JDY_OK) {
		norm = wj_jdy_bills_normalise(r.data, l->page);
		r.data = norm;
		if (!norm) {
			r.cls = WJ_JDY_TRANSIENT;
			set_error(&r, "malformed list answer: no rows");
		}
	}
	l->cb(&r, l->arg);
	json_decref(norm);
	free(l);
}

/* V1 list: a POST whose JSON body carries the same filters (the creation-time and bill-date
 * bounds under their V2 names, which a server that does not know them ignores). */
static int list_v1(wj_jdy_t *j, const wj_jdy_bill_query_t *q, struct list_call *l)
{
	json_t *b = json_pack("{s:I, s:I}", "page", (json_int_t)l->page, "pagesize",
			      (json_int_t)LIST_PAGE_SIZE);
	if (b && q->search && *q->search)
		json_object_set_new(b, "search", json_string(q->search));
	if (b && (q->created_from_ms || q->created_to_ms)) {
		json_object_set_new(b, "create_start_time", json_integer(q->created_from_ms));
		json_object_set_new(b, "create_end_time", json_integer(q->created_to_ms));
	}
	if (b && q->bill_date_from && *q->bill_date_from)
		json_object_set_new(b, "start_bill_date", json_string(q->bill_date_from));
	if (b && q->bill_date_to && *q->bill_date_to)
		json_object_set_new(b, "end_bill_date", json_string(q->bill_date_to));
	char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
	json_decref(b);
	int ret = body ? call_start(j, "POST", PATH_V1_BILLS, NULL, 0, body, true, on_list, l)
		       : -ENOMEM;
	free(body);
	return ret;
}

static int list_v2(wj_jdy_t *j, const wj_jdy_bill_query_t *q, struct list_call *l)
{
	char page[16], from[24], to[24], size[16];
	snprintf(page, sizeof(page), "%u", l->page);
	snprintf(size, sizeof(size), "%d", LIST_PAGE_SIZE);
	snprintf(from, sizeof(from), "%" PRId64, q->created_from_ms);
	snprintf(to, sizeof(to), "%" PRId64, q->created_to_ms);
	wj_kv_t kv[7];
	size_t n = 0;
	if (q->search && *q->search)
		kv[n++] = (wj_kv_t){(char *)"search", (char *)q->search};
	if (q->created_from_ms || q->created_to_ms) {
		kv[n++] = (wj_kv_t){(char *)"create_start_time", from};
		kv[n++] = (wj_kv_t){(char *)"create_end_time", to};
	}
	if (q->bill_date_from && *q->bill_date_from)
		kv[n++] = (wj_kv_t){(char *)"start_bill_date", (char *)q->bill_date_from};
	if (q->bill_date_to && *q->bill_date_to)
		kv[n++] = (wj_kv_t){(char *)"end_bill_date", (char *)q->bill_date_to};
	kv[n++] = (wj_kv_t){(char *)"page", page};
	kv[n++] = (wj_kv_t){(char *)"page_size", size};
	return wj_jdy_call(j, "GET", PATH_BILLS, kv, n, NULL, on_list, l);
}

int wj_jdy_list_bills(wj_jdy_t *j, const wj_jdy_bill_query_t *q, wj_jdy_cb cb, void *arg)
{
	if (!j || !q || !cb || q->created_from_ms < 0 || q->created_to_ms < q->created_from_ms)
		return -EINVAL;
	struct list_call *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	*l = (struct list_call){.page = q->page ? q->page : 1, .cb = cb, .arg = arg};
	int ret = j->auth == WJ_JDY_AUTH_PASSWORD ? list_v1(j, q, l) : list_v2(j, q, l);
	if (ret < 0)
		free(l);
	return ret;
}

int wj_jdy_find_bills(wj_jdy_t *j, const char *search, unsigned page, wj_jdy_cb cb, void *arg)
{
	if (!search)
		return -EINVAL;
	wj_jdy_bill_query_t q = {.search = search, .page = page};
	return wj_jdy_list_bills(j, &q, cb, arg);
}
