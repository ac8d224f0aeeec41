/* Fake Kingdee Cloud Xingchen gateway for tests, the demo and benchmarks.
 *
 * Serves the real paths (see docs/API.md): gateway signature check, the two-step login with a
 * rotating appSecret and expiring app-tokens, V1 and V2 gain bill saves kept in memory, the
 * material/store lookups over the shared test catalogue, the gain bill list, a sliding 60 s
 * rate limit, and fault injection. Admin endpoints under /admin/ need no signature.
 *
 * Error codes chosen here (the real ones are not all known):
 *   HTTP 519 errcode 519         gateway or signature error (with description_cn)
 *   1030002006                   app-token invalid or expired
 *   1030002007                   X-GW-Router-Addr missing or not the domain handed out
 *   1030002008                   login refused (unknown outerInstanceId, bad app_signature)
 *   HTTP 429 errcode 1030002009  rate limited (Retry-After in seconds)
 *   2000002000                   system error (injected 5xx)
 *   2000002001                   V2 validation error; V1 answers success=false, errorCode 1
 *   2000002003                   unknown material or store number
 *
 * Admin: GET /admin/stats, GET /admin/bills, GET|POST /admin/faults (knobs named like the
 * flags with '_' for '-'), POST /admin/reset-stats, POST /admin/expire-tokens.
 *
 * Threads: MHD runs one thread per connection; all state sits behind one mutex. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"

#define WINDOW_MS 60000
#define TS_SKEW_MS 300000
#define SECRET_GRACE_MS 2000
#define MAX_BODY (4u << 20)
#define MAX_PAGE_SIZE 100
#define DEFAULT_PAGE_SIZE 10

#define ERR_SIGN 519
#define ERR_TOKEN 1030002006LL
#define ERR_ROUTER 1030002007LL
#define ERR_LOGIN 1030002008LL
#define ERR_RATE 1030002009LL
#define ERR_SYSTEM 2000002000LL
#define ERR_INVALID 2000002001LL
#define ERR_NOT_FOUND 2000002003LL

#define PATH_AUTHORIZE "/jdyconnector/app_management/push_app_authorize"
#define PATH_AUTH_TOKEN "/jdyconnector/app_management/kingdee_auth_token"
#define PATH_SAVE_V1 "/jdy/inv/inv_check_gain_bill_save"
#define PATH_BILL_V2 "/jdy/v2/scm/inv_check_gail_bill"
#define PATH_MATERIAL_DETAIL "/jdy/v2/bd/material_detail"
#define PATH_STORE_DETAIL "/jdy/v2/bd/store_detail"
#define PATH_MATERIAL_LIST "/jdy/v2/bd/material"

enum ep {
	EP_AUTHORIZE,
	EP_AUTH_TOKEN,
	EP_SAVE_V1,
	EP_SAVE_V2,
	EP_LIST_BILLS,
	EP_MATERIAL_DETAIL,
	EP_STORE_DETAIL,
	EP_MATERIAL_LIST,
	EP_ADMIN,
	EP_UNKNOWN,
	EP_COUNT
};

static const char *const ep_names[EP_COUNT] = {
	"push_app_authorize", "kingdee_auth_token", "save_v1", "save_v2", "list_bills",
	"material_detail", "store_detail", "material_list", "admin", "unknown",
};

/* Timestamps (monotonic ms) of events inside the last 60 s, oldest first. */
typedef struct win {
	uint64_t *t;
	size_t head, n, cap;
} win_t;

typedef struct knobs {
	double fail_5xx, fail_429, drop_after_save, slow_after_save; /* percent */
	int64_t slow_after_save_ms, latency_ms;
	double max_saves_per_sec; /* 0 = unlimited */
	int64_t token_ttl;        /* seconds */
	int64_t secret_rotate;    /* seconds */
	bool expires_duration;
	int64_t rate_limit; /* per minute over business calls, 0 = off */
	int64_t token_rate; /* per minute over token requests, 0 = off */
	int search_mode;    /* what the bill list's search matches: SEARCH_* */
	bool create_time_text; /* rows carry create_time as "YYYY-MM-DD HH:MM:SS" (+08:00) */
} knobs_t;

enum { SEARCH_NUMBER, SEARCH_REMARK, SEARCH_NONE };
static const char *const search_modes[] = {"number", "remark", "none"};

typedef struct bill {
	uint64_t id;
	int64_t created_ms; /* wall clock */
	char no[40];
	char date[11];
	char *remark;
	json_t *body;
} bill_t;

typedef struct token {
	char s[33];
	int64_t exp_ms; /* wall clock */
} token_t;

typedef struct stats {
	uint64_t calls[EP_COUNT];
	uint64_t logins, tokens, saves_ok, saves_rejected, rate_limited, sig_errors, auth_errors;
	uint64_t faults_5xx, faults_429, dropped, slowed, max_calls_60s;
} stats_t;

static struct {
	pthread_mutex_t lock;
	const char *client_id, *client_secret, *app_key, *outer_id;
	long materials;
	bool verbose;
	char domain[64];
	knobs_t k;
	uint64_t rng;
	int64_t rot_base;      /* secret counter when rot_start_ms was taken */
	uint64_t rot_start_ms; /* monotonic */
	token_t *tokens;
	size_t ntokens, ctokens;
	bill_t *bills;
	size_t nbills, cbills;
	uint64_t next_bill_id;
	win_t admitted, arrived, token_calls;
	uint64_t save_slot_ms; /* monotonic time before which no further save is processed */
	stats_t st;
	atomic_bool stopping;
} g = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

/* Per-connection request state. */
typedef struct req {
	wj_buf_t body;
	bool too_big;
	uint64_t t0;
} req_t;

typedef struct reply {
	unsigned status;
	json_t *json;    /* owned */
	int retry_after; /* seconds, 0 = no header */
	bool drop;       /* close the connection without answering */
} reply_t;

/* ---- small helpers ---- */

static uint64_t rng_next(void)
{
	/* splitmix64; caller holds the lock */
	uint64_t z = (g.rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* True with probability pct percent; caller holds the lock. */
static bool chance(double pct)
{
	if (pct <= 0)
		return false;
	if (pct >= 100)
		return true;
	return (double)(rng_next() % 1000000) < pct * 10000.0;
}

/* Sleep ms in short slices, returning early on shutdown. */
static void nap(uint64_t ms)
{
	uint64_t end = wj_mono_ms() + ms;
	while (!atomic_load(&g.stopping)) {
		uint64_t now = wj_mono_ms();
		if (now >= end)
			break;
		uint64_t left = end - now;
		if (left > 50)
			left = 50;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static void win_prune(win_t *w, uint64_t now)
{
	while (w->n && w->t[w->head] + WINDOW_MS <= now) {
		w->head = (w->head + 1) % w->cap;
		w->n--;
	}
}

static int win_push(win_t *w, uint64_t now)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 256;
		uint64_t *t = malloc(cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		for (size_t i = 0; i < w->n; i++)
			t[i] = w->t[(w->head + i) % w->cap];
		free(w->t);
		w->t = t;
		w->cap = cap;
		w->head = 0;
	}
	w->t[(w->head + w->n) % w->cap] = now;
	w->n++;
	return 0;
}

/* Seconds until the oldest event leaves the window (at least 1). */
static int win_retry_after(const win_t *w, uint64_t now)
{
	if (!w->n)
		return 1;
	uint64_t out = w->t[w->head] + WINDOW_MS;
	int s = out > now ? (int)((out - now + 999) / 1000) : 1;
	return s < 1 ? 1 : s;
}

/* Sliding-window admission: true and recorded when under limit per minute. */
static bool win_admit(win_t *w, int64_t limit, uint64_t now)
{
	win_prune(w, now);
	if (limit > 0 && w->n >= (size_t)limit)
		return false;
	(void)win_push(w, now); /* out of memory only makes the limit laxer */
	return true;
}

/* RFC 3986 encoding: unreserved characters kept, others as uppercase %XX. */
static int url_encode(const char *s, wj_buf_t *out)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char e[3];
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			if (wj_buf_append(out, p, 1))
				return -ENOMEM;
			continue;
		}
		e[0] = '%';
		e[1] = hex[*p >> 4];
		e[2] = hex[*p & 15];
		if (wj_buf_append(out, e, 3))
			return -ENOMEM;
	}
	if (!out->data && wj_buf_append(out, "", 0))
		return -ENOMEM;
	return 0;
}

/* base64(lowercase hex(HMAC-SHA256(key, msg))) into out (at least 89 bytes). */
static int sign_b64(const char *key, const char *msg, size_t len, char out[89])
{
	unsigned char mac[32];
	size_t mlen = 0;
	char hex[65];
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, strlen(key),
		       (const unsigned char *)msg, len, mac, sizeof(mac), &mlen) ||
	    mlen != sizeof(mac))
		return -EINVAL;
	wj_hex(mac, sizeof(mac), hex, false);
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)hex, 64);
	return 0;
}

static bool str_eq_ct(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

static const char *header(struct MHD_Connection *con, const char *name)
{
	return MHD_lookup_connection_value(con, MHD_HEADER_KIND, name);
}

static const char *arg(struct MHD_Connection *con, const char *name)
{
	return MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, name);
}

static long arg_long(struct MHD_Connection *con, const char *name, long dflt)
{
	const char *v = arg(con, name);
	char *end;
	if (!v || !*v)
		return dflt;
	errno = 0;
	long r = strtol(v, &end, 10);
	if (errno || *end)
		return dflt;
	return r;
}

static void reply_set(reply_t *r, unsigned status, json_t *j)
{
	json_decref(r->json);
	r->status = status;
	r->json = j;
}

static void reply_v2(reply_t *r, long long code, const char *desc, json_t *data)
{
	json_t *j = json_pack("{s:I, s:s}", "errcode", (json_int_t)code, "description", desc);
	if (!j) /* desc echoed bytes that are not UTF-8 */
		j = json_pack("{s:I, s:s}", "errcode", (json_int_t)code, "description",
			      "invalid text");
	if (data)
		json_object_set_new(j, "data", data);
	reply_set(r, 200, j);
}

/* ---- catalogue ---- */

static bool digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Index 1..materials from a prefix + decimal string, 0 when none. */
static long cat_index(const char *s, const char *prefix, size_t min_digits)
{
	size_t pl = strlen(prefix);
	if (strncmp(s, prefix, pl) || !digits(s + pl) || strlen(s + pl) < min_digits ||
	    strlen(s + pl) > 9)
		return 0;
	long i = strtol(s + pl, NULL, 10);
	if (min_digits > 1 && strlen(s + pl) != min_digits && s[pl] == '0')
		return 0;
	return i >= 1 && i <= g.materials ? i : 0;
}

static long material_by_number(const char *num)
{
	long i = cat_index(num, "SP", 5);
	char want[32];
	if (!i)
		return 0;
	snprintf(want, sizeof(want), "SP%05ld", i);
	return strcmp(want, num) ? 0 : i;
}

static long material_by_id(const char *id)
{
	long i = cat_index(id, "M", 1);
	char want[32];
	if (!i)
		return 0;
	snprintf(want, sizeof(want), "M%ld", i);
	return strcmp(want, id) ? 0 : i;
}

static json_t *material_json(long i)
{
	char id[24], num[24], name[48], unit[8];
	snprintf(id, sizeof(id), "M%ld", i);
	snprintf(num, sizeof(num), "SP%05ld", i);
	snprintf(name, sizeof(name), "测试物料%ld", i);
	snprintf(unit, sizeof(unit), "U%ld", i % 3 + 1);
	return json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "number", num, "name", name,
			 "base_unit_id", unit, "store_unit_id", unit);
}

static const struct {
	const char *number, *id, *name;
} stores[] = {
	{"WH01", "S01", "仓库WH01"}, {"WH02", "S02", "仓库WH02"}, {"WH03", "S03", "仓库WH03"},
	{"WH04", "S04", "仓库WH04"}, {"WH05", "S05", "仓库WH05"}, {"CK001", "S99", "仓库CK001"},
};
#define NSTORES (sizeof(stores) / sizeof(stores[0]))

static int store_find(const char *key, bool by_id)
{
	for (size_t i = 0; i < NSTORES; i++)
		if (!strcmp(by_id ? stores[i].id : stores[i].number, key))
			return (int)i;
	return -1;
}

/* ---- secret and tokens (caller holds the lock) ---- */

static int64_t secret_counter(uint64_t now, bool *prev_valid)
{
	uint64_t period = (uint64_t)(g.k.secret_rotate > 0 ? g.k.secret_rotate : 1) * 1000;
	uint64_t el = now - g.rot_start_ms;
	if (prev_valid)
		*prev_valid = el >= period && el % period < SECRET_GRACE_MS;
	return g.rot_base + (int64_t)(el / period);
}

static void secret_name(int64_t n, char *out, size_t size)
{
	snprintf(out, size, "appsecret-%" PRId64, n);
}

static bool token_valid(const char *tok, int64_t now_ms)
{
	for (size_t i = 0; i < g.ntokens; i++)
		if (!strcmp(g.tokens[i].s, tok))
			return now_ms < g.tokens[i].exp_ms;
	return false;
}

static int token_add(const char *tok, int64_t exp_ms, int64_t now_ms)
{
	size_t j = 0;
	for (size_t i = 0; i < g.ntokens; i++)
		if (g.tokens[i].exp_ms > now_ms)
			g.tokens[j++] = g.tokens[i];
	g.ntokens = j;
	if (g.ntokens == g.ctokens) {
		size_t cap = g.ctokens ? g.ctokens * 2 : 16;
		token_t *t = realloc(g.tokens, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		g.tokens = t;
		g.ctokens = cap;
	}
	snprintf(g.tokens[g.ntokens].s, sizeof(g.tokens[0].s), "%s", tok);
	g.tokens[g.ntokens].exp_ms = exp_ms;
	g.ntokens++;
	return 0;
}

/* ---- gateway signature ---- */

typedef struct qarg {
	const char *k, *v;
} qarg_t;

typedef struct qargs {
	qarg_t a[64];
	size_t n;
	bool overflow;
} qargs_t;

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	qargs_t *q = cls;
	(void)kind;
	if (q->n == sizeof(q->a) / sizeof(q->a[0])) {
		q->overflow = true;
		return MHD_NO;
	}
	q->a[q->n].k = key;
	q->a[q->n].v = value ? value : "";
	q->n++;
	return MHD_YES;
}

static int qarg_cmp(const void *a, const void *b)
{
	const qarg_t *x = a, *y = b;
	int c = strcmp(x->k, y->k);
	return c ? c : strcmp(x->v, y->v);
}

/* The string to sign for this request; 0 or -errno. */
static int build_sign_string(struct MHD_Connection *con, const char *method, const char *path,
			     const char *nonce, const char *ts, wj_buf_t *s)
{
	qargs_t q = {.n = 0};
	wj_buf_t once = {0};
	int rc = -ENOMEM;
	MHD_get_connection_values(con, MHD_GET_ARGUMENT_KIND, collect_arg, &q);
	if (q.overflow)
		return -E2BIG;
	qsort(q.a, q.n, sizeof(q.a[0]), qarg_cmp);
	if (wj_buf_printf(s, "%s\n", method) || url_encode(path, s) || wj_buf_append(s, "\n", 1))
		goto fail;
	for (size_t i = 0; i < q.n; i++) {
		wj_buf_reset(&once);
		if ((i && wj_buf_append(s, "&", 1)) || wj_buf_printf(s, "%s=", q.a[i].k) ||
		    url_encode(q.a[i].v, &once) || url_encode(once.data, s))
			goto fail;
	}
	if (wj_buf_printf(s, "\nx-api-nonce:%s\nx-api-timestamp:%s\n", nonce, ts))
		goto fail;
	rc = 0;
fail:
	wj_buf_free(&once);
	return rc;
}

static void reply_519(reply_t *r, const char *desc)
{
	reply_set(r, 519,
		  json_pack("{s:i, s:s, s:s}", "errcode", ERR_SIGN, "description", desc,
			    "description_cn", "签名校验失败"));
}

/* Checks the gateway headers; on failure fills r with the 519 answer and returns false. */
static bool check_gateway(struct MHD_Connection *con, const char *method, const char *path,
			  reply_t *r)
{
	const char *cid = header(con, "X-Api-ClientID");
	const char *ver = header(con, "X-Api-Auth-Version");
	const char *ts = header(con, "X-Api-TimeStamp");
	const char *nonce = header(con, "X-Api-Nonce");
	const char *sh = header(con, "X-Api-SignHeaders");
	const char *sig = header(con, "X-Api-Signature");
	const char *why = NULL;
	wj_buf_t s = {0};
	char want[89];

	if (!cid || strcmp(cid, g.client_id))
		why = "unknown client id";
	else if (!ver || strcmp(ver, "2.0"))
		why = "unsupported auth version";
	else if (!sh || strcasecmp(sh, "X-Api-TimeStamp,X-Api-Nonce"))
		why = "bad sign headers";
	else if (!nonce || !*nonce)
		why = "missing nonce";
	else if (!ts || !digits(ts) || strlen(ts) > 15)
		why = "bad timestamp";
	else if (llabs((long long)(wj_now_ms() - strtoll(ts, NULL, 10))) > TS_SKEW_MS)
		why = "timestamp expired";
	else if (!sig)
		why = "missing signature";
	else if (build_sign_string(con, method, path, nonce, ts, &s) ||
		 sign_b64(g.client_secret, s.data, s.len, want))
		why = "cannot build signature";
	else if (!str_eq_ct(sig, want))
		why = "signature check failed";
	wj_buf_free(&s);
	if (!why)
		return true;
	pthread_mutex_lock(&g.lock);
	g.st.sig_errors++;
	pthread_mutex_unlock(&g.lock);
	reply_519(r, why);
	return false;
}

/* ---- login ---- */

static void do_authorize(struct MHD_Connection *con, reply_t *r)
{
	const char *id = arg(con, "outerInstanceId");
	char secret[48];
	if (!id || strcmp(id, g.outer_id)) {
		pthread_mutex_lock(&g.lock);
		g.st.auth_errors++;
		pthread_mutex_unlock(&g.lock);
		reply_v2(r, ERR_LOGIN, "outerInstanceId not authorised", NULL);
		return;
	}
	pthread_mutex_lock(&g.lock);
	secret_name(secret_counter(wj_mono_ms(), NULL), secret, sizeof(secret));
	pthread_mutex_unlock(&g.lock);
	json_t *data = json_pack("[{s:s, s:s, s:s, s:s, s:s, s:s}]", "appKey", g.app_key,
				 "appSecret", secret, "domain", g.domain, "groupName", "g1",
				 "accountId", "a1", "status", "1");
	reply_v2(r, 0, "success", data);
}

static void do_auth_token(struct MHD_Connection *con, reply_t *r)
{
	const char *key = arg(con, "app_key");
	const char *sig = arg(con, "app_signature");
	uint64_t now = wj_mono_ms();
	int64_t now_ms = wj_now_ms();
	bool prev_ok = false, ok = false;
	char secret[48], want[89], tok[33];

	pthread_mutex_lock(&g.lock);
	g.st.logins++;
	if (!win_admit(&g.token_calls, g.k.token_rate, now)) {
		r->retry_after = win_retry_after(&g.token_calls, now);
		g.st.rate_limited++;
		pthread_mutex_unlock(&g.lock);
		reply_set(r, 429,
			  json_pack("{s:I, s:s, s:s}", "errcode", (json_int_t)ERR_RATE,
				    "description", "too many token requests", "description_cn",
				    "请求过于频繁"));
		return;
	}
	int64_t n = secret_counter(now, &prev_ok);
	if (key && sig && !strcmp(key, g.app_key)) {
		secret_name(n, secret, sizeof(secret));
		ok = sign_b64(secret, key, strlen(key), want) == 0 && str_eq_ct(sig, want);
		if (!ok && prev_ok) {
			secret_name(n - 1, secret, sizeof(secret));
			ok = sign_b64(secret, key, strlen(key), want) == 0 && str_eq_ct(sig, want);
		}
	}
	if (!ok) {
		g.st.auth_errors++;
		pthread_mutex_unlock(&g.lock);
		reply_v2(r, ERR_LOGIN, "app_signature check failed", NULL);
		return;
	}
	unsigned char raw[16];
	for (size_t i = 0; i < sizeof(raw); i += 8) {
		uint64_t x = rng_next();
		memcpy(raw + i, &x, 8);
	}
	wj_hex(raw, sizeof(raw), tok, false);
	int64_t ttl = g.k.token_ttl;
	int64_t exp_ms = now_ms + ttl * 1000;
	bool dur = g.k.expires_duration;
	int rc = token_add(tok, exp_ms, now_ms);
	if (!rc)
		g.st.tokens++;
	pthread_mutex_unlock(&g.lock);
	if (rc) {
		reply_v2(r, ERR_SYSTEM, "out of memory", NULL);
		return;
	}
	json_t *data = json_pack("{s:s, s:s, s:I}", "app-token", tok, "access_token", tok,
				 "expires", (json_int_t)(dur ? ttl : exp_ms));
	reply_v2(r, 0, "success", data);
}

/* ---- validation ---- */

static bool valid_date(const char *s)
{
	int y, m, d;
	char tail;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return false;
	if (y < 1900 || m < 1 || m > 12 || d < 1)
		return false;
	int max = mdays[m - 1];
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		max = 29;
	return d <= max;
}

/* A non-empty string field, or NULL. */
static const char *str_field(const json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));
	return s && *s ? s : NULL;
}

/* qty: a number or a numeric string; -1 when missing, -2 when not numeric. */
static int qty_field(const json_t *o, const char *name, double *out)
{
	const json_t *q = json_object_get(o, name);
	if (!q || json_is_null(q))
		return -1;
	if (json_is_number(q)) {
		*out = json_number_value(q);
	} else if (json_is_string(q)) {
		const char *s = json_string_value(q);
		char *end;
		if (!*s)
			return -1;
		errno = 0;
		*out = strtod(s, &end);
		if (errno || *end || end == s)
			return -2;
	} else {
		return -2;
	}
	return isfinite(*out) ? 0 : -2;
}

/* Field names of one save dialect. */
typedef struct dialect {
	const char *date, *material, *store;
	bool v1;
} dialect_t;

static const dialect_t dialect_v1 = {"billdate", "materialid_id", "stockid_id", true};
static const dialect_t dialect_v2 = {"bill_date", "material_id", "stock_id", false};

/* Validate a save body; on failure writes a message to msg and returns false. */
static bool validate_bill(const json_t *body, const dialect_t *d, char *msg, size_t size)
{
	if (!json_is_object(body)) {
		snprintf(msg, size, "请求体必须是JSON对象");
		return false;
	}
	const char *date = str_field(body, d->date);
	if (!date) {
		snprintf(msg, size, "%s 不能为空", d->date);
		return false;
	}
	if (!valid_date(date)) {
		snprintf(msg, size, "%s 日期无效: %s", d->date, date);
		return false;
	}
	const json_t *rem = json_object_get(body, "remark");
	if (rem && !json_is_string(rem) && !json_is_null(rem)) {
		snprintf(msg, size, "remark 必须是字符串");
		return false;
	}
	const json_t *ents = json_object_get(body, "material_entity");
	if (!json_is_array(ents) || json_array_size(ents) == 0) {
		snprintf(msg, size, "material_entity 不能为空");
		return false;
	}
	size_t i;
	const json_t *e;
	json_array_foreach(ents, i, e) {
		size_t line = i + 1;
		const char *mid = str_field(e, d->material);
		const char *sid = str_field(e, d->store);
		const char *uid = str_field(e, "unit_id");
		double qty = 0;
		int qrc = json_is_object(e) ? qty_field(e, "qty", &qty) : -1;
		if (!json_is_object(e)) {
			snprintf(msg, size, "第%zu行：分录必须是JSON对象", line);
			return false;
		}
		if (!mid) {
			snprintf(msg, size, "第%zu行：%s 不能为空", line, d->material);
			return false;
		}
		long mi = material_by_id(mid);
		if (!mi) {
			snprintf(msg, size, "第%zu行：%s 物料不存在: %s", line, d->material, mid);
			return false;
		}
		if (!sid) {
			snprintf(msg, size, "第%zu行：%s 不能为空", line, d->store);
			return false;
		}
		if (store_find(sid, true) < 0) {
			snprintf(msg, size, "第%zu行：%s 仓库不存在: %s", line, d->store, sid);
			return false;
		}
		if (!uid) {
			snprintf(msg, size, "第%zu行：unit_id 不能为空", line);
			return false;
		}
		char unit[8];
		snprintf(unit, sizeof(unit), "U%ld", mi % 3 + 1);
		if (strcmp(uid, unit)) {
			snprintf(msg, size, "第%zu行：unit_id 不是物料的基本或库存单位: %s", line,
				 uid);
			return false;
		}
		if (qrc == -1) {
			snprintf(msg, size, "第%zu行：qty 不能为空", line);
			return false;
		}
		if (qrc == -2) {
			snprintf(msg, size, "第%zu行：qty 必须是数字", line);
			return false;
		}
		if (!(qty > 0)) {
			snprintf(msg, size, "第%zu行：qty 数量必须大于0", line);
			return false;
		}
		const json_t *bn = json_object_get(e, "billno");
		if (d->v1 && bn && !json_is_string(bn) && !json_is_null(bn)) {
			snprintf(msg, size, "第%zu行：billno 必须是字符串", line);
			return false;
		}
	}
	return true;
}

/* ---- saves ---- */

/* Wait for this save's slot under --max-saves-per-sec. */
static void save_throttle(void)
{
	pthread_mutex_lock(&g.lock);
	double rate = g.k.max_saves_per_sec;
	uint64_t wait = 0;
	if (rate > 0) {
		uint64_t now = wj_mono_ms();
		uint64_t slot = g.save_slot_ms > now ? g.save_slot_ms : now;
		uint64_t step = (uint64_t)(1000.0 / rate);
		g.save_slot_ms = slot + (step ? step : 1);
		wait = slot - now;
	}
	pthread_mutex_unlock(&g.lock);
	if (wait)
		nap(wait);
}

/* Store a validated bill; returns its index or -ENOMEM. Caller holds the lock. */
static int bill_store(const json_t *body, const dialect_t *d)
{
	if (g.nbills == g.cbills) {
		size_t cap = g.cbills ? g.cbills * 2 : 64;
		bill_t *b = realloc(g.bills, cap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		g.bills = b;
		g.cbills = cap;
	}
	const char *date = json_string_value(json_object_get(body, d->date));
	const char *rem = json_string_value(json_object_get(body, "remark"));
	bill_t *b = &g.bills[g.nbills];
	memset(b, 0, sizeof(*b));
	b->remark = strdup(rem ? rem : "");
	b->body = json_deep_copy(body);
	if (!b->remark || !b->body) {
		free(b->remark);
		json_decref(b->body);
		return -ENOMEM;
	}
	b->id = ++g.next_bill_id;
	b->created_ms = wj_now_ms();
	snprintf(b->date, sizeof(b->date), "%s", date);
	snprintf(b->no, sizeof(b->no), "PYD-%.4s%.2s%.2s-%06" PRIu64, date, date + 5, date + 8,
		 b->id);
	return (int)g.nbills++;
}

static void do_save(struct MHD_Connection *con, const req_t *rq, const dialect_t *d, reply_t *r)
{
	json_error_t jerr;
	char msg[256];
	json_t *body = NULL;
	(void)con;

	save_throttle();
	if (rq->too_big)
		snprintf(msg, sizeof(msg), "请求体过大");
	else if (!(body = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, 0, &jerr)))
		snprintf(msg, sizeof(msg), "请求体不是有效的JSON");
	if (!body || !validate_bill(body, d, msg, sizeof(msg))) {
		pthread_mutex_lock(&g.lock);
		g.st.saves_rejected++;
		pthread_mutex_unlock(&g.lock);
		json_decref(body);
		if (d->v1)
			reply_set(r, 200,
				  json_pack("{s:b, s:i, s:s, s:{s:[], s:[{s:s, s:s}]}}", "success",
					    0, "errorCode", 1, "message", msg, "data",
					    "successPkIds", "errorInfo", "id", "", "msg", msg));
		else
			reply_v2(r, ERR_INVALID, msg, NULL);
		return;
	}

	pthread_mutex_lock(&g.lock);
	int idx = bill_store(body, d);
	char id[24] = "", no[40] = "";
	bool drop = false, slow = false;
	int64_t slow_ms = 0;
	if (idx >= 0) {
		snprintf(id, sizeof(id), "%" PRIu64, g.bills[idx].id);
		snprintf(no, sizeof(no), "%s", g.bills[idx].no);
		g.st.saves_ok++;
		drop = chance(g.k.drop_after_save);
		if (!drop && g.k.slow_after_save_ms > 0)
			slow = chance(g.k.slow_after_save);
		slow_ms = g.k.slow_after_save_ms;
		if (drop)
			g.st.dropped++;
		if (slow)
			g.st.slowed++;
	}
	pthread_mutex_unlock(&g.lock);
	json_decref(body);
	if (idx < 0) {
		reply_set(r, 500, json_pack("{s:I, s:s}", "errcode", (json_int_t)ERR_SYSTEM,
					    "description", "out of memory"));
		return;
	}
	if (drop) {
		r->drop = true;
		return;
	}
	if (slow)
		nap((uint64_t)slow_ms);
	if (d->v1)
		reply_set(r, 200,
			  json_pack("{s:i, s:s, s:b, s:{s:[s], s:[]}}", "errorCode", 0, "message",
				    "", "success", 1, "data", "successPkIds", id, "errorInfo"));
	else
		reply_v2(r, 0, "",
			 json_pack("{s:[s], s:{s:s}}", "ids", id, "id_number_map", id, no));
}

/* ---- lookups and lists ---- */

static void page_args(struct MHD_Connection *con, long *page, long *size)
{
	*page = arg_long(con, "page", 1);
	*size = arg_long(con, "page_size", DEFAULT_PAGE_SIZE);
	if (*page < 1)
		*page = 1;
	if (*size < 1)
		*size = DEFAULT_PAGE_SIZE;
	if (*size > MAX_PAGE_SIZE)
		*size = MAX_PAGE_SIZE;
}

static json_t *page_json(long count, long page, long size, json_t *rows)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:o}", "count", (json_int_t)count, "page",
			 (json_int_t)page, "page_size", (json_int_t)size, "total_page",
			 (json_int_t)((count + size - 1) / size), "rows", rows);
}

static void do_material_detail(struct MHD_Connection *con, reply_t *r)
{
	const char *num = arg(con, "number");
	long i = num ? material_by_number(num) : 0;
	char msg[160];
	if (!i) {
		snprintf(msg, sizeof(msg), "物料不存在: %.100s", num ? num : "");
		reply_v2(r, ERR_NOT_FOUND, msg, NULL);
		return;
	}
	reply_v2(r, 0, "", material_json(i));
}

static void do_store_detail(struct MHD_Connection *con, reply_t *r)
{
	const char *num = arg(con, "number");
	int i = num ? store_find(num, false) : -1;
	char msg[160];
	if (i < 0) {
		snprintf(msg, sizeof(msg), "仓库不存在: %.100s", num ? num : "");
		reply_v2(r, ERR_NOT_FOUND, msg, NULL);
		return;
	}
	reply_v2(r, 0, "",
		 json_pack("{s:s, s:s, s:s}", "id", stores[i].id, "number", stores[i].number,
			   "name", stores[i].name));
}

static void do_material_list(struct MHD_Connection *con, reply_t *r)
{
	const char *s = arg(con, "search");
	long page, size, count = 0;
	page_args(con, &page, &size);
	json_t *rows = json_array();
	for (long i = 1; i <= g.materials; i++) {
		json_t *m = material_json(i);
		if (s && *s && !strstr(json_string_value(json_object_get(m, "number")), s) &&
		    !strstr(json_string_value(json_object_get(m, "name")), s)) {
			json_decref(m);
			continue;
		}
		count++;
		if (count > (page - 1) * size && count <= page * size)
			json_array_append_new(rows, m);
		else
			json_decref(m);
	}
	reply_v2(r, 0, "", page_json(count, page, size, rows));
}

/* A creation-time bound of the bill list: epoch ms digits. 0 when absent, -1 when bad. */
static int time_arg(struct MHD_Connection *con, const char *name, int64_t *out)
{
	const char *v = arg(con, name);
	*out = 0;
	if (!v || !*v)
		return 0;
	if (!digits(v) || strlen(v) > 15)
		return -1;
	*out = strtoll(v, NULL, 10);
	return 1;
}

static bool search_matches(const bill_t *b, const char *s)
{
	switch (g.k.search_mode) {
	case SEARCH_REMARK:
		return strstr(b->remark, s) || strstr(b->no, s);
	case SEARCH_NONE:
		return true;
	default:
		return strstr(b->no, s) != NULL;
	}
}

static json_t *bill_create_time(const bill_t *b)
{
	char t[WJ_TIME_LEN + 8];
	if (!g.k.create_time_text) {
		snprintf(t, sizeof(t), "%" PRId64, b->created_ms);
		return json_string(t);
	}
	wj_time_format(b->created_ms / 1000, 8 * 3600, t);
	return json_string(t);
}

static void do_list_bills(struct MHD_Connection *con, reply_t *r)
{
	const char *s = arg(con, "search");
	long page, size, count = 0;
	int64_t from, to;
	int hf = time_arg(con, "create_start_time", &from), ht = time_arg(con, "create_end_time", &to);
	if (hf < 0 || ht < 0) {
		reply_v2(r, ERR_INVALID, hf < 0 ? "create_start_time 格式错误，应为毫秒时间戳"
						: "create_end_time 格式错误，应为毫秒时间戳", NULL);
		return;
	}
	page_args(con, &page, &size);
	json_t *rows = json_array();
	pthread_mutex_lock(&g.lock);
	for (size_t i = 0; i < g.nbills; i++) {
		const bill_t *b = &g.bills[i];
		if (s && *s && !search_matches(b, s))
			continue;
		if ((hf && b->created_ms < from) || (ht && b->created_ms > to))
			continue;
		count++;
		if (count <= (page - 1) * size || count > page * size)
			continue;
		char id[24];
		snprintf(id, sizeof(id), "%" PRIu64, b->id);
		json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:s, s:o, s:s}", "id", id,
						      "bill_no", b->no, "bill_date", b->date,
						      "remark", b->remark, "create_time",
						      bill_create_time(b), "bill_status", "C"));
	}
	pthread_mutex_unlock(&g.lock);
	reply_v2(r, 0, "", page_json(count, page, size, rows));
}

/* ---- business calls ---- */

static void do_business(struct MHD_Connection *con, enum ep ep, const req_t *rq, reply_t *r)
{
	uint64_t now = wj_mono_ms();
	const char *tok = header(con, "app-token");
	const char *router = header(con, "X-GW-Router-Addr");

	pthread_mutex_lock(&g.lock);
	win_prune(&g.arrived, now);
	if (win_push(&g.arrived, now) == 0 && g.arrived.n > g.st.max_calls_60s)
		g.st.max_calls_60s = g.arrived.n;
	bool limited = !win_admit(&g.admitted, g.k.rate_limit, now);
	int retry = limited ? win_retry_after(&g.admitted, now) : 0;
	bool f5xx = !limited && chance(g.k.fail_5xx);
	bool f429 = !limited && !f5xx && chance(g.k.fail_429);
	unsigned code5xx = 500 + (unsigned)(rng_next() % 3);
	if (limited || f429)
		g.st.rate_limited++;
	if (f429)
		g.st.faults_429++;
	if (f5xx)
		g.st.faults_5xx++;
	bool tok_ok = tok && token_valid(tok, wj_now_ms());
	bool router_ok = router && !strcmp(router, g.domain);
	if (!limited && !f5xx && !f429 && (!tok_ok || !router_ok))
		g.st.auth_errors++;
	pthread_mutex_unlock(&g.lock);

	if (limited || f429) {
		r->retry_after = limited ? retry : 1;
		reply_set(r, 429,
			  json_pack("{s:I, s:s, s:s}", "errcode", (json_int_t)ERR_RATE,
				    "description", "rate limited", "description_cn", "请求过于频繁"));
		return;
	}
	if (f5xx) {
		if (code5xx == 501)
			code5xx = 502;
		reply_set(r, code5xx, json_pack("{s:I, s:s}", "errcode", (json_int_t)ERR_SYSTEM,
						"description", "系统异常"));
		return;
	}
	if (!tok_ok) {
		reply_v2(r, ERR_TOKEN, "授权密钥无效或已过期", NULL);
		return;
	}
	if (!router_ok) {
		reply_v2(r, ERR_ROUTER, "X-GW-Router-Addr 无效", NULL);
		return;
	}
	switch (ep) {
	case EP_SAVE_V1:
		do_save(con, rq, &dialect_v1, r);
		break;
	case EP_SAVE_V2:
		do_save(con, rq, &dialect_v2, r);
		break;
	case EP_LIST_BILLS:
		do_list_bills(con, r);
		break;
	case EP_MATERIAL_DETAIL:
		do_material_detail(con, r);
		break;
	case EP_STORE_DETAIL:
		do_store_detail(con, r);
		break;
	case EP_MATERIAL_LIST:
		do_material_list(con, r);
		break;
	default:
		reply_v2(r, 404, "not found", NULL);
	}
}

/* ---- admin ---- */

static json_t *knobs_json(void)
{
	const knobs_t *k = &g.k;
	json_t *o = json_pack("{s:f, s:f, s:f, s:f, s:I, s:I, s:f, s:I, s:I, s:s, s:I, s:I}",
			 "fail_5xx", k->fail_5xx, "fail_429", k->fail_429, "drop_after_save",
			 k->drop_after_save, "slow_after_save", k->slow_after_save,
			 "slow_after_save_ms", (json_int_t)k->slow_after_save_ms, "latency_ms",
			 (json_int_t)k->latency_ms, "max_saves_per_sec", k->max_saves_per_sec,
			 "token_ttl", (json_int_t)k->token_ttl, "secret_rotate",
			 (json_int_t)k->secret_rotate, "expires_mode",
			 k->expires_duration ? "duration" : "absolute", "rate_limit",
			 (json_int_t)k->rate_limit, "token_rate", (json_int_t)k->token_rate);
	json_object_set_new(o, "search_mode", json_string(search_modes[k->search_mode]));
	json_object_set_new(o, "create_time_format",
			    json_string(k->create_time_text ? "datetime" : "ms"));
	return o;
}

/* Index of name in a NULL-terminated or n-long list of words, -1 when absent. */
static int word_index(const char *name, const char *const *words, size_t n)
{
	for (size_t i = 0; name && i < n; i++)
		if (!strcmp(name, words[i]))
			return (int)i;
	return -1;
}

static int remark_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Caller holds the lock. */
static json_t *stats_json(void)
{
	json_t *calls = json_object();
	for (int i = 0; i < EP_COUNT; i++)
		json_object_set_new(calls, ep_names[i], json_integer((json_int_t)g.st.calls[i]));
	json_int_t dups = 0;
	char **rem = g.nbills ? malloc(g.nbills * sizeof(*rem)) : NULL;
	if (rem) {
		for (size_t i = 0; i < g.nbills; i++)
			rem[i] = g.bills[i].remark;
		qsort(rem, g.nbills, sizeof(*rem), remark_cmp);
		for (size_t i = 1; i < g.nbills; i++)
			if (!strcmp(rem[i], rem[i - 1]) && (i < 2 || strcmp(rem[i - 1], rem[i - 2])))
				dups++;
		free(rem);
	}
	const stats_t *s = &g.st;
	return json_pack("{s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			 "s:I}",
			 "calls", calls, "logins", (json_int_t)s->logins, "tokens",
			 (json_int_t)s->tokens, "saves_ok", (json_int_t)s->saves_ok,
			 "saves_rejected", (json_int_t)s->saves_rejected, "rate_limited",
			 (json_int_t)s->rate_limited, "sig_errors", (json_int_t)s->sig_errors,
			 "auth_errors", (json_int_t)s->auth_errors, "max_calls_in_any_60s",
			 (json_int_t)s->max_calls_60s, "duplicate_remarks", dups, "bills",
			 (json_int_t)g.nbills, "faults_5xx", (json_int_t)s->faults_5xx,
			 "faults_429", (json_int_t)s->faults_429, "dropped",
			 (json_int_t)s->dropped, "slowed", (json_int_t)s->slowed);
}

static json_t *bills_json(void)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < g.nbills; i++) {
		const bill_t *b = &g.bills[i];
		char id[24];
		snprintf(id, sizeof(id), "%" PRIu64, b->id);
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:O, s:I}", "id", id,
						     "bill_no", b->no, "remark", b->remark,
						     "bill_date", b->date, "body", b->body,
						     "create_time_ms", (json_int_t)b->created_ms));
	}
	return json_pack("{s:o}", "bills", arr);
}

/* Apply knobs from a JSON object; unknown keys or bad values refuse the whole update. */
static int knobs_apply(const json_t *o, char *msg, size_t size)
{
	knobs_t k = g.k;
	const char *key;
	json_t *v;
	if (!json_is_object(o)) {
		snprintf(msg, size, "body must be a JSON object");
		return -EINVAL;
	}
	json_object_foreach((json_t *)o, key, v) {
		if (!strcmp(key, "expires_mode")) {
			const char *m = json_string_value(v);
			if (!m || (strcmp(m, "absolute") && strcmp(m, "duration"))) {
				snprintf(msg, size, "expires_mode: absolute or duration");
				return -EINVAL;
			}
			k.expires_duration = !strcmp(m, "duration");
			continue;
		}
		if (!strcmp(key, "search_mode")) {
			int m = word_index(json_string_value(v), search_modes, 3);
			if (m < 0) {
				snprintf(msg, size, "search_mode: number, remark or none");
				return -EINVAL;
			}
			k.search_mode = m;
			continue;
		}
		if (!strcmp(key, "create_time_format")) {
			static const char *const fmts[] = {"ms", "datetime"};
			int m = word_index(json_string_value(v), fmts, 2);
			if (m < 0) {
				snprintf(msg, size, "create_time_format: ms or datetime");
				return -EINVAL;
			}
			k.create_time_text = m == 1;
			continue;
		}
		if (!json_is_number(v) || json_number_value(v) < 0) {
			snprintf(msg, size, "%s: expected a number >= 0", key);
			return -EINVAL;
		}
		double d = json_number_value(v);
		if (!strcmp(key, "fail_5xx"))
			k.fail_5xx = d;
		else if (!strcmp(key, "fail_429"))
			k.fail_429 = d;
		else if (!strcmp(key, "drop_after_save"))
			k.drop_after_save = d;
		else if (!strcmp(key, "slow_after_save"))
			k.slow_after_save = d;
		else if (!strcmp(key, "slow_after_save_ms"))
			k.slow_after_save_ms = (int64_t)d;
		else if (!strcmp(key, "latency_ms"))
			k.latency_ms = (int64_t)d;
		else if (!strcmp(key, "max_saves_per_sec"))
			k.max_saves_per_sec = d;
		else if (!strcmp(key, "token_ttl") && d >= 1)
			k.token_ttl = (int64_t)d;
		else if (!strcmp(key, "secret_rotate") && d >= 1)
			k.secret_rotate = (int64_t)d;
		else if (!strcmp(key, "rate_limit"))
			k.rate_limit = (int64_t)d;
		else if (!strcmp(key, "token_rate"))
			k.token_rate = (int64_t)d;
		else {
			snprintf(msg, size, "unknown or invalid knob: %s", key);
			return -EINVAL;
		}
	}
	if (k.secret_rotate != g.k.secret_rotate) {
		uint64_t now = wj_mono_ms();
		g.rot_base = secret_counter(now, NULL);
		g.rot_start_ms = now;
	}
	g.k = k;
	return 0;
}

static void do_admin(const char *method, const char *url, const req_t *rq, reply_t *r)
{
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	char msg[160];
	pthread_mutex_lock(&g.lock);
	if (get && !strcmp(url, "/admin/stats")) {
		reply_set(r, 200, stats_json());
	} else if (get && !strcmp(url, "/admin/bills")) {
		reply_set(r, 200, bills_json());
	} else if (get && !strcmp(url, "/admin/faults")) {
		reply_set(r, 200, knobs_json());
	} else if (post && !strcmp(url, "/admin/faults")) {
		json_error_t jerr;
		json_t *o = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, 0, &jerr);
		if (!o || knobs_apply(o, msg, sizeof(msg)))
			reply_set(r, 400, json_pack("{s:s}", "error", o ? msg : "invalid JSON"));
		else
			reply_set(r, 200, knobs_json());
		json_decref(o);
	} else if (post && !strcmp(url, "/admin/reset-stats")) {
		memset(&g.st, 0, sizeof(g.st));
		reply_set(r, 200, json_pack("{s:b}", "ok", 1));
	} else if (post && !strcmp(url, "/admin/expire-tokens")) {
		g.ntokens = 0;
		reply_set(r, 200, json_pack("{s:b}", "ok", 1));
	} else {
		reply_set(r, 404, json_pack("{s:s}", "error", "not found"));
	}
	pthread_mutex_unlock(&g.lock);
}

/* ---- dispatch ---- */

static enum ep route(const char *method, const char *url)
{
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	if (!strncmp(url, "/admin/", 7))
		return EP_ADMIN;
	if (post && !strcmp(url, PATH_AUTHORIZE))
		return EP_AUTHORIZE;
	if (get && !strcmp(url, PATH_AUTH_TOKEN))
		return EP_AUTH_TOKEN;
	if (post && !strcmp(url, PATH_SAVE_V1))
		return EP_SAVE_V1;
	if (post && !strcmp(url, PATH_BILL_V2))
		return EP_SAVE_V2;
	if (get && !strcmp(url, PATH_BILL_V2))
		return EP_LIST_BILLS;
	if (get && !strcmp(url, PATH_MATERIAL_DETAIL))
		return EP_MATERIAL_DETAIL;
	if (get && !strcmp(url, PATH_STORE_DETAIL))
		return EP_STORE_DETAIL;
	if (get && !strcmp(url, PATH_MATERIAL_LIST))
		return EP_MATERIAL_LIST;
	return EP_UNKNOWN;
}

static void handle(struct MHD_Connection *con, const char *url, const char *method,
		   const req_t *rq, reply_t *r)
{
	enum ep ep = route(method, url);
	pthread_mutex_lock(&g.lock);
	g.st.calls[ep]++;
	int64_t latency = g.k.latency_ms;
	pthread_mutex_unlock(&g.lock);

	if (ep == EP_ADMIN) {
		do_admin(method, url, rq, r);
		return;
	}
	if (latency > 0)
		nap((uint64_t)latency);
	if (ep == EP_UNKNOWN) {
		reply_set(r, 404, json_pack("{s:i, s:s}", "errcode", 404, "description",
					    "not found"));
		return;
	}
	if (!check_gateway(con, method, url, r))
		return;
	if (ep == EP_AUTHORIZE)
		do_authorize(con, r);
	else if (ep == EP_AUTH_TOKEN)
		do_auth_token(con, r);
	else
		do_business(con, ep, rq, r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_size, void **con_cls)
{
	req_t *rq = *con_cls;
	reply_t r = {.status = 500};
	(void)cls;
	(void)version;

	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		rq->t0 = wj_mono_ms();
		*con_cls = rq;
		return MHD_YES;
	}
	if (*upload_size) {
		if (rq->body.len + *upload_size > MAX_BODY)
			rq->too_big = true;
		else if (wj_buf_append(&rq->body, upload_data, *upload_size))
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}

	handle(con, url, method, rq, &r);
	if (g.verbose)
		fprintf(stderr, "fake_jdy: %s %s -> %s%u %" PRIu64 "ms\n", method, url,
			r.drop ? "dropped " : "", r.drop ? 0 : r.status, wj_mono_ms() - rq->t0);
	if (r.drop) {
		json_decref(r.json);
		return MHD_NO;
	}
	char *text = r.json ? json_dumps(r.json, JSON_COMPACT) : strdup("{}");
	json_decref(r.json);
	if (!text)
		return MHD_NO;
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json;charset=utf-8");
	if (r.retry_after > 0) {
		char ra[16];
		snprintf(ra, sizeof(ra), "%d", r.retry_after);
		MHD_add_response_header(resp, "Retry-After", ra);
	}
	enum MHD_Result ret = MHD_queue_response(con, r.status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	req_t *rq = *con_cls;
	(void)cls;
	(void)con;
	(void)toe;
	if (rq) {
		wj_buf_free(&rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fake_jdy [--port N] [--port-file PATH] [--seed N] [--verbose]\n"
		"  [--client-id S] [--client-secret S] [--app-key S] [--outer-instance-id S]\n"
		"  [--materials N] [--token-ttl S] [--secret-rotate S] [--expires-mode absolute|duration]\n"
		"  [--token-rate N] [--rate-limit N] [--fail-5xx PCT] [--fail-429 PCT]\n"
		"  [--drop-after-save PCT] [--slow-after-save PCT] [--slow-after-save-ms N]\n"
		"  [--latency-ms N] [--max-saves-per-sec R] [--search-mode number|remark|none]\n"
		"  [--create-time-format ms|datetime]\n");
}

static int parse_num(const char *s, double min, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(s, &end);
	if (errno || *end || end == s || !isfinite(d) || d < min)
		return -EINVAL;
	*out = d;
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		O_PORT = 256, O_PORT_FILE, O_SEED, O_VERBOSE, O_CLIENT_ID, O_CLIENT_SECRET,
		O_APP_KEY, O_OUTER_ID, O_MATERIALS, O_KNOB,
	};
	static const struct option opts[] = {
		{"port", required_argument, NULL, O_PORT},
		{"port-file", required_argument, NULL, O_PORT_FILE},
		{"seed", required_argument, NULL, O_SEED},
		{"verbose", no_argument, NULL, O_VERBOSE},
		{"client-id", required_argument, NULL, O_CLIENT_ID},
		{"client-secret", required_argument, NULL, O_CLIENT_SECRET},
		{"app-key", required_argument, NULL, O_APP_KEY},
		{"outer-instance-id", required_argument, NULL, O_OUTER_ID},
		{"materials", required_argument, NULL, O_MATERIALS},
		{"token-ttl", required_argument, NULL, O_KNOB},
		{"secret-rotate", required_argument, NULL, O_KNOB},
		{"expires-mode", required_argument, NULL, O_KNOB},
		{"search-mode", required_argument, NULL, O_KNOB},
		{"create-time-format", required_argument, NULL, O_KNOB},
		{"token-rate", required_argument, NULL, O_KNOB},
		{"rate-limit", required_argument, NULL, O_KNOB},
		{"fail-5xx", required_argument, NULL, O_KNOB},
		{"fail-429", required_argument, NULL, O_KNOB},
		{"drop-after-save", required_argument, NULL, O_KNOB},
		{"slow-after-save", required_argument, NULL, O_KNOB},
		{"slow-after-save-ms", required_argument, NULL, O_KNOB},
		{"latency-ms", required_argument, NULL, O_KNOB},
		{"max-saves-per-sec", required_argument, NULL, O_KNOB},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	double port = 0, seed = 1, mats = 500;
	const char *port_file = NULL;
	json_t *knobs = json_object();
	char msg[160];
	int c, idx;

	g.client_id = "test-client";
	g.client_secret = "test-client-secret";
	g.app_key = "test-app-key";
	g.outer_id = "test-instance";
	g.k = (knobs_t){
		.token_ttl = 86400, .secret_rotate = 86400, .rate_limit = 500, .token_rate = 10,
	};
	while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
		switch (c) {
		case O_PORT:
			if (parse_num(optarg, 0, &port) || port > 65535)
				goto bad;
			break;
		case O_PORT_FILE:
			port_file = optarg;
			break;
		case O_SEED:
			if (parse_num(optarg, 0, &seed))
				goto bad;
			break;
		case O_VERBOSE:
			g.verbose = true;
			break;
		case O_CLIENT_ID:
			g.client_id = optarg;
			break;
		case O_CLIENT_SECRET:
			g.client_secret = optarg;
			break;
		case O_APP_KEY:
			g.app_key = optarg;
			break;
		case O_OUTER_ID:
			g.outer_id = optarg;
			break;
		case O_MATERIALS:
			if (parse_num(optarg, 1, &mats) || mats > 1e8)
				goto bad;
			break;
		case O_KNOB: {
			char key[32];
			double d;
			snprintf(key, sizeof(key), "%s", opts[idx].name);
			for (char *p = key; *p; p++)
				if (*p == '-')
					*p = '_';
			if (!strcmp(key, "expires_mode") || !strcmp(key, "search_mode") ||
			    !strcmp(key, "create_time_format"))
				json_object_set_new(knobs, key, json_string(optarg));
			else if (parse_num(optarg, 0, &d))
				goto bad;
			else
				json_object_set_new(knobs, key, json_real(d));
			break;
		}
		case 'h':
			usage(stdout);
			json_decref(knobs);
			return 0;
		default:
			goto bad;
		}
	}
	if (optind != argc)
		goto bad;
	g.materials = (long)mats;
	g.rng = (uint64_t)seed;
	g.rot_start_ms = wj_mono_ms();
	if (knobs_apply(knobs, msg, sizeof(msg))) {
		fprintf(stderr, "fake_jdy: %s\n", msg);
		json_decref(knobs);
		return 2;
	}
	json_decref(knobs);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
		0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)120, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "fake_jdy: cannot listen on 127.0.0.1:%d\n", (int)port);
		return 1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	unsigned bound = info ? info->port : 0;
	pthread_mutex_lock(&g.lock);
	snprintf(g.domain, sizeof(g.domain), "http://127.0.0.1:%u", bound);
	pthread_mutex_unlock(&g.lock);
	if (port_file) {
		char line[16];
		int n = snprintf(line, sizeof(line), "%u\n", bound);
		if (wj_write_file_atomic(port_file, line, (size_t)n, 0644)) {
			fprintf(stderr, "fake_jdy: cannot write port file\n");
			MHD_stop_daemon(d);
			return 1;
		}
	}
	if (g.verbose)
		fprintf(stderr, "fake_jdy: listening on 127.0.0.1:%u\n", bound);

	int sig = 0;
	while (sigwait(&set, &sig) != 0)
		;
	atomic_store(&g.stopping, true);
	MHD_stop_daemon(d);
	for (size_t i = 0; i < g.nbills; i++) {
		free(g.bills[i].remark);
		json_decref(g.bills[i].body);
	}
	free(g.bills);
	free(g.tokens);
	free(g.admitted.t);
	free(g.arrived.t);
	free(g.token_calls.t);
	return 0;
bad:
	usage(stderr);
	json_decref(knobs);
	return 2;
}
