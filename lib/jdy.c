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

/* Lifetime assumed when the token answer carries no usable "expires". */
#define DEFAULT_TOKEN_LIFE_MS (2 * 3600 * 1000LL)
#define RATE_LIMIT_DEFAULT_MS 1000

/* ---- encoding and signing ---- */

static int buf_urlencode(wj_buf_t *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			if (wj_buf_append(b, p, 1) < 0)
				return -ENOMEM;
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			if (wj_buf_append(b, e, 3) < 0)
				return -ENOMEM;
		}
	}
	return 0;
}

static int kv_cmp(const void *a, const void *b)
{
	const wj_kv_t *x = *(const wj_kv_t *const *)a, *y = *(const wj_kv_t *const *)b;
	int r = strcmp(x->key, y->key);
	return r ? r : strcmp(x->value, y->value);
}

int wj_jdy_sign_string(const char *method, const char *path, const wj_kv_t *query, size_t nq,
		       const char *nonce, const char *timestamp, wj_buf_t *out)
{
	if (!method || !path || !nonce || !timestamp || !out || (nq && !query))
		return -EINVAL;
	for (size_t i = 0; i < nq; i++)
		if (!query[i].key || !query[i].value)
			return -EINVAL;
	int ret = -ENOMEM;
	const wj_kv_t **sorted = NULL;
	wj_buf_t once = {0};
	if (nq) {
		sorted = calloc(nq, sizeof(*sorted));
		if (!sorted)
			goto fail;
		for (size_t i = 0; i < nq; i++)
			sorted[i] = &query[i];
		qsort(sorted, nq, sizeof(*sorted), kv_cmp);
	}
	if (wj_buf_printf(out, "%s\n", method) < 0 || buf_urlencode(out, path) < 0 ||
	    wj_buf_append(out, "\n", 1) < 0)
		goto fail;
	for (size_t i = 0; i < nq; i++) {
		wj_buf_reset(&once);
		if (buf_urlencode(&once, sorted[i]->value) < 0)
			goto fail;
		if (wj_buf_printf(out, "%s%s=", i ? "&" : "", sorted[i]->key) < 0 ||
		    (once.data && buf_urlencode(out, once.data) < 0))
			goto fail;
	}
	if (wj_buf_printf(out, "\nx-api-nonce:%s\nx-api-timestamp:%s\n", nonce, timestamp) < 0)
		goto fail;
	ret = 0;
fail:
	wj_buf_free(&once);
	free(sorted);
	return ret;
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
		size_t nq, const char *nonce, const char *timestamp, char *out, size_t size)
{
	wj_buf_t s = {0};
	int ret = wj_jdy_sign_string(method, path, query, nq, nonce, timestamp, &s);
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

int64_t wj_jdy_expiry_ms(int64_t expires, int64_t now_ms)
{
	if (expires > 100000000000LL)
		return expires;
	if (expires > 1000000000LL)
		return expires * 1000;
	if (expires <= 0)
		return now_ms;
	return now_ms + expires * 1000;
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

/* errcode / errorCode as integer (number or numeric string). */
static bool env_code(const json_t *doc, long long *code, char *text, size_t size)
{
	static const char *const names[] = {"errcode", "errorCode", "error_code"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
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
		set_error(out, "HTTP %ld%s%s", http_status, *m ? ": " : "", m);
	} else if (http_status >= 500) {
		/* Any 5xx, 502 and 503 included, can come from a proxy or gateway after the service
		 * behind it stored the bill: only a request that never left is definitely not
		 * processed. */
		out->cls = unsure;
		set_error(out, "HTTP %ld%s%s", http_status, *m ? ": " : "", m);
	} else if (has_code && code != 0) {
		if (is_auth_code(code))
			out->cls = WJ_JDY_AUTH;
		else if (code == WJ_JDY_ERR_SYSTEM)
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
		if (json_is_false(success) || error_info_nonempty(doc)) {
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
	bool retried;          /* already retried after 1030002006 */
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
	char *url, *client_id, *client_secret, *outer_instance_id;
	uint64_t timeout_ms;
	uint64_t opts_gen;     /* bumped when credentials change */

	char *token, *domain, *app_key;
	int64_t expiry_ms, obtained_ms, refresh_ms;
	uint64_t gen;          /* bumped for each token */

	bool login_running;
	uint64_t login_opts_gen;
	char *new_app_key, *new_domain;
	uint64_t login_retry_mono;  /* no new login attempt before this */
	unsigned login_failures;    /* consecutive failed logins */
	wj_jdy_class_t login_cls;
	char login_error[256];

	struct call_list waiters;   /* calls waiting for a token */
	struct call_list failq;     /* failures delivered from the timer */
	uv_timer_t timer;
	bool timer_closed;
	unsigned refs;              /* HTTP requests in flight */
	bool closing;

	void (*hook)(const char *, void *);
	void *hook_arg;
};

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

static void jdy_destroy(wj_jdy_t *j)
{
	free(j->url);
	free(j->client_id);
	free(j->client_secret);
	free(j->outer_instance_id);
	free(j->token);
	free(j->domain);
	free(j->app_key);
	free(j->new_app_key);
	free(j->new_domain);
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
		c->cb(&r, c->arg);
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

static void drop_token(wj_jdy_t *j)
{
	free(j->token);
	j->token = NULL;
	j->expiry_ms = j->obtained_ms = j->refresh_ms = 0;
}

static char *hdr(const char *name, const char *value)
{
	char *s = NULL;
	if (asprintf(&s, "%s: %s", name, value) < 0)
		return NULL;
	return s;
}

/* Send one gateway-signed request. with_token adds app-token and X-GW-Router-Addr. */
static int send_req(wj_jdy_t *j, const char *method, const char *path, const wj_kv_t *q,
		    size_t nq, const char *body, bool with_token, wj_http_cb cb, void *arg)
{
	int ret = -ENOMEM;
	char nonce[16], ts[24], sig[96];
	char *headers[12] = {0};
	wj_buf_t url = {0};
	uint64_t r = 0;
	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		r = wj_mono_ms() * 2654435761u ^ (uint64_t)wj_now_ms();
	snprintf(nonce, sizeof(nonce), "%010" PRIu64, r % (uint64_t)10000000000ULL);
	snprintf(ts, sizeof(ts), "%" PRId64, wj_now_ms());
	ret = wj_jdy_sign(j->client_secret, method, path, q, nq, nonce, ts, sig, sizeof(sig));
	if (ret < 0)
		goto fail;
	ret = -ENOMEM;
	size_t ulen = strlen(j->url);
	while (ulen && j->url[ulen - 1] == '/')
		ulen--;
	if (wj_buf_append(&url, j->url, ulen) < 0 || wj_buf_printf(&url, "%s", path) < 0)
		goto fail;
	for (size_t i = 0; i < nq; i++) {
		if (wj_buf_append(&url, i ? "&" : "?", 1) < 0 || buf_urlencode(&url, q[i].key) < 0 ||
		    wj_buf_append(&url, "=", 1) < 0 || buf_urlencode(&url, q[i].value) < 0)
			goto fail;
	}
	size_t n = 0;
	headers[n++] = hdr("X-Api-ClientID", j->client_id);
	headers[n++] = hdr("X-Api-Auth-Version", "2.0");
	headers[n++] = hdr("X-Api-TimeStamp", ts);
	headers[n++] = hdr("X-Api-Nonce", nonce);
	headers[n++] = hdr("X-Api-SignHeaders", "X-Api-TimeStamp,X-Api-Nonce");
	headers[n++] = hdr("X-Api-Signature", sig);
	headers[n++] = hdr("Content-Type", "application/json");
	if (with_token) {
		headers[n++] = hdr("app-token", j->token);
		headers[n++] = hdr("X-GW-Router-Addr", j->domain);
	}
	for (size_t i = 0; i < n; i++)
		if (!headers[i])
			goto fail;
	wj_http_req_t req = {
		.method = method,
		.url = url.data,
		.headers = (const char *const *)headers,
		.body = body,
		.body_len = body ? strlen(body) : 0,
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
	return send_req(j, c->method, c->path, c->query, c->nq, c->body, true, on_call_done, c);
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

/* Start a login unless one runs or the backoff after a failure forbids it. */
static void need_login(wj_jdy_t *j)
{
	if (j->login_running || j->closing)
		return;
	uint64_t mono = wj_mono_ms();
	if (mono < j->login_retry_mono) {
		char msg[300];
		snprintf(msg, sizeof(msg), "login failed: %s", j->login_error);
		fail_waiters(j, j->login_cls, (int64_t)(j->login_retry_mono - mono), msg);
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
	char msg[300];
	snprintf(msg, sizeof(msg), "login failed: %s", j->login_error);
	fail_waiters(j, cls, backoff, msg);
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
		maybe_close(j);
		return true;
	}
	if (j->login_opts_gen != j->opts_gen) {
		j->login_running = false;
		if (j->waiters.head)
			need_login(j);
		return true;
	}
	return false;
}

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
		long long n = strtoll(json_string_value(v), &end, 10);
		if (end != json_string_value(v) && !*end)
			return n;
	}
	*ok = false;
	return 0;
}

static void call_hook(wj_jdy_t *j)
{
	if (!j->hook)
		return;
	json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:s}", "app_token", j->token, "domain", j->domain,
			      "expires_ms", (json_int_t)j->expiry_ms, "obtained_ms",
			      (json_int_t)j->obtained_ms, "app_key", j->app_key ? j->app_key : "");
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

static void on_token(const wj_http_resp_t *resp, void *arg)
{
	wj_jdy_t *j = arg;
	if (login_stale(j))
		return;
	wj_jdy_result_t r;
	json_t *root = NULL;
	if (!login_answer(j, resp, "token", &r, &root))
		goto out;
	const char *token = str_field(r.data, "app-token");
	if (!token)
		token = str_field(r.data, "access_token");
	if (!token) {
		login_failed(j, WJ_JDY_AUTH, 0, "token: no app-token in the answer");
		goto out;
	}
	bool ok;
	int64_t now = wj_now_ms();
	int64_t expires = json_number(json_object_get(r.data, "expires"), &ok);
	if (!ok)
		expires = json_number(json_object_get(r.data, "expires_in"), &ok);
	int64_t expiry = ok ? wj_jdy_expiry_ms(expires, now) : now + DEFAULT_TOKEN_LIFE_MS;
	if (expiry <= now) {
		login_failed(j, WJ_JDY_AUTH, 0, "token: already expired");
		goto out;
	}
	char *t = strdup(token);
	if (!t) {
		login_failed(j, WJ_JDY_TRANSIENT, 0, "out of memory");
		goto out;
	}
	wj_log_add_secret(t);
	drop_token(j);
	j->token = t;
	free(j->domain);
	j->domain = j->new_domain;
	free(j->app_key);
	j->app_key = j->new_app_key;
	j->new_domain = j->new_app_key = NULL;
	j->obtained_ms = now;
	j->expiry_ms = expiry;
	j->refresh_ms = wj_jdy_refresh_at(now, expiry);
	j->gen++;
	j->login_running = false;
	j->login_retry_mono = 0;
	j->login_failures = 0;
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
	wj_log_add_secret(secret);
	char sig[96];
	sig[0] = '\0';
	free(j->new_app_key);
	free(j->new_domain);
	j->new_app_key = strdup(key);
	j->new_domain = strdup(domain);
	if (!j->new_app_key || !j->new_domain ||
	    wj_jdy_app_signature(key, secret, sig, sizeof(sig)) < 0) {
		login_failed(j, WJ_JDY_TRANSIENT, 0, "authorize: cannot sign");
		goto out;
	}
	wj_log_add_secret(sig);
	wj_kv_t q[2] = {{(char *)"app_key", (char *)key}, {(char *)"app_signature", sig}};
	if (send_req(j, "GET", PATH_TOKEN, q, 2, NULL, false, on_token, j) < 0)
		login_failed(j, WJ_JDY_TRANSIENT, 0, "token: cannot send request");
out:
	json_decref(root);
}

static void start_login(wj_jdy_t *j)
{
	j->login_running = true;
	j->login_opts_gen = j->opts_gen;
	wj_kv_t q = {(char *)"outerInstanceId", j->outer_instance_id};
	if (send_req(j, "POST", PATH_AUTHORIZE, &q, 1, "{}", false, on_authorize, j) < 0)
		login_failed(j, WJ_JDY_TRANSIENT, 0, "authorize: cannot send request");
}

static void on_call_done(const wj_http_resp_t *resp, void *arg)
{
	struct call *c = arg;
	wj_jdy_t *j = c->j;
	j->refs--;
	/* only a non-idempotent call can leave an uncertain outcome behind */
	bool maybe_sent = resp->maybe_sent && strcmp(c->method, "GET") != 0;
	wj_jdy_result_t r;
	json_t *root = NULL;
	wj_jdy_parse(resp->status, resp->body, resp->body_len, resp->retry_after_ms, maybe_sent, &r,
		     &root);
	if (resp->status == 0)
		set_error(&r, "%s", resp->error && *resp->error ? resp->error : "no response");
	if (r.cls == WJ_JDY_AUTH && strcmp(r.code, "1030002006") == 0 && !j->closing) {
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
	c->cb(&r, c->arg);
	json_decref(root);
	call_free(c);
	maybe_close(j);
}

static char *dup_opt(const char *s)
{
	return strdup(s ? s : "");
}

static int apply_opts(wj_jdy_t *j, const wj_jdy_opts_t *o)
{
	if (!o || !o->url || !*o->url || !o->client_id || !o->client_secret || !*o->client_secret)
		return -EINVAL;
	if (o->api != WJ_JDY_V1 && o->api != WJ_JDY_V2)
		return -EINVAL;
	char *url = dup_opt(o->url), *id = dup_opt(o->client_id), *secret = dup_opt(o->client_secret);
	char *outer = dup_opt(o->outer_instance_id);
	if (!url || !id || !secret || !outer) {
		free(url);
		free(id);
		free(secret);
		free(outer);
		return -ENOMEM;
	}
	bool changed = !j->url || strcmp(url, j->url) || strcmp(id, j->client_id) ||
		       strcmp(secret, j->client_secret) || strcmp(outer, j->outer_instance_id);
	free(j->url);
	free(j->client_id);
	free(j->client_secret);
	free(j->outer_instance_id);
	j->url = url;
	j->client_id = id;
	j->client_secret = secret;
	j->outer_instance_id = outer;
	j->api = o->api;
	j->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
	if (changed) {
		drop_token(j);
		j->opts_gen++;
		j->login_retry_mono = 0;
		j->login_failures = 0;
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

int wj_jdy_restore_token(wj_jdy_t *j, const char *token_json)
{
	if (!token_json)
		return -EINVAL;
	json_t *o = json_loads(token_json, 0, NULL);
	int ret = -EINVAL;
	const char *token = str_field(o, "app_token"), *domain = str_field(o, "domain");
	const char *key = str_field(o, "app_key");
	bool ok, ok2;
	int64_t expiry = json_number(json_object_get(o, "expires_ms"), &ok);
	int64_t obtained = json_number(json_object_get(o, "obtained_ms"), &ok2);
	if (!token || !domain || !ok)
		goto fail;
	int64_t now = wj_now_ms();
	if (!ok2 || obtained <= 0 || obtained >= expiry || obtained > now)
		obtained = now < expiry ? now : expiry;
	char *t = strdup(token), *d = strdup(domain), *k = key ? strdup(key) : NULL;
	if (!t || !d || (key && !k)) {
		free(t);
		free(d);
		free(k);
		ret = -ENOMEM;
		goto fail;
	}
	wj_jdy_t probe = {.token = t, .expiry_ms = expiry, .obtained_ms = obtained};
	if (!token_usable(&probe, now)) {
		free(t);
		free(d);
		free(k);
		ret = -ESTALE;
		goto fail;
	}
	wj_log_add_secret(t);
	drop_token(j);
	free(j->domain);
	free(j->app_key);
	j->token = t;
	j->domain = d;
	j->app_key = k;
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

int wj_jdy_call(wj_jdy_t *j, const char *method, const char *path, const wj_kv_t *query,
		size_t nq, const char *body, wj_jdy_cb cb, void *arg)
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

int wj_jdy_save(wj_jdy_t *j, const char *body_json, wj_jdy_cb cb, void *arg)
{
	if (!j || !body_json)
		return -EINVAL;
	return wj_jdy_call(j, "POST", j->api == WJ_JDY_V1 ? PATH_SAVE_V1 : PATH_SAVE_V2, NULL, 0,
			   body_json, cb, arg);
}

struct lookup {
	const char *what;
	char *number;
	wj_jdy_cb cb;
	void *arg;
};

static void on_lookup(const wj_jdy_result_t *res, void *arg)
{
	struct lookup *l = arg;
	wj_jdy_result_t r = *res;
	if (r.cls == WJ_JDY_PERMANENT) {
		set_error(&r, "%s %s: %s", l->what, l->number, res->error);
	} else if (r.cls == WJ_JDY_OK && !json_is_object(r.data)) {
		r.cls = WJ_JDY_PERMANENT;
		r.data = NULL;
		set_error(&r, "%s %s not found", l->what, l->number);
	} else if (r.cls == WJ_JDY_OK && !json_object_get(r.data, "id")) {
		r.cls = WJ_JDY_PERMANENT;
		set_error(&r, "%s %s not found", l->what, l->number);
	}
	l->cb(&r, l->arg);
	free(l->number);
	free(l);
}

static int lookup(wj_jdy_t *j, const char *what, const char *path, const char *number,
		  wj_jdy_cb cb, void *arg)
{
	if (!j || !number || !*number || !cb)
		return -EINVAL;
	struct lookup *l = calloc(1, sizeof(*l));
	if (!l || !(l->number = strdup(number))) {
		free(l);
		return -ENOMEM;
	}
	l->what = what;
	l->cb = cb;
	l->arg = arg;
	wj_kv_t q = {(char *)"number", (char *)number};
	int ret = wj_jdy_call(j, "GET", path, &q, 1, NULL, on_lookup, l);
	if (ret < 0) {
		free(l->number);
		free(l);
	}
	return ret;
}

int wj_jdy_material(wj_jdy_t *j, const char *number, wj_jdy_cb cb, void *arg)
{
	return lookup(j, "material", PATH_MATERIAL, number, cb, arg);
}

int wj_jdy_store(wj_jdy_t *j, const char *number, wj_jdy_cb cb, void *arg)
{
	return lookup(j, "store", PATH_STORE, number, cb, arg);
}

/* ---- gain-bill list ---- */

#define BEIJING_OFFSET (8 * 3600)
#define LIST_PAGE_SIZE 100

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

int wj_jdy_list_bills(wj_jdy_t *j, const wj_jdy_bill_query_t *q, wj_jdy_cb cb, void *arg)
{
	if (!j || !q || !cb || q->created_from_ms < 0 || q->created_to_ms < q->created_from_ms)
		return -EINVAL;
	struct list_call *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->page = q->page ? q->page : 1;
	l->cb = cb;
	l->arg = arg;
	char page[16], from[24], to[24];
	snprintf(page, sizeof(page), "%u", l->page);
	snprintf(from, sizeof(from), "%" PRId64, q->created_from_ms);
	snprintf(to, sizeof(to), "%" PRId64, q->created_to_ms);
	wj_kv_t kv[5];
	size_t n = 0;
	if (q->search && *q->search)
		kv[n++] = (wj_kv_t){(char *)"search", (char *)q->search};
	if (q->created_from_ms || q->created_to_ms) {
		kv[n++] = (wj_kv_t){(char *)"create_start_time", from};
		kv[n++] = (wj_kv_t){(char *)"create_end_time", to};
	}
	kv[n++] = (wj_kv_t){(char *)"page", page};
	kv[n++] = (wj_kv_t){(char *)"page_size", (char *)"100"};
	int ret = wj_jdy_call(j, "GET", PATH_BILLS, kv, n, NULL, on_list, l);
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
