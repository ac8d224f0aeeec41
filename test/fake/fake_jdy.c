/* Fake Kingdee Cloud Xingchen gateway for tests, the demo and benchmarks.
 *
 * Serves the real paths (see docs/API.md): gateway signature check, the two-step login with a
 * rotating appSecret and expiring app-tokens, the V1 account login (access_token, account
 * sets), V1 and V2 gain bill saves kept in memory, the material/store lookups over the shared
 * test catalogue (V2 details, V1 lists), the gain bill lists, a sliding 60 s rate limit, fault
 * injection and a switch per open reading of the API (see test/fake/README.md). Admin
 * endpoints under /admin/ need no signature.
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
 *   1030002011                   V1 path called with the gateway signature (--v1-gateway no)
 *   1030002012                   V1 call with another account set's groupName/accountId
 *   HTTP 401 code "401"          V1 access_token invalid or expired
 *   HTTP 405                     V1 login by a method --v1-login does not take
 *
 * Admin: GET /admin/stats, GET /admin/bills, GET /admin/tokens, GET|POST /admin/faults (knobs
 * named like the flags with '_' for '-'), POST /admin/reset-stats, POST /admin/expire-tokens,
 * POST /admin/bills (bills made by someone else: stored as given, no validation),
 * POST /admin/delete-bills (bills deleted in Kingdee).
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
#define ERR_V1_GATEWAY 1030002011LL
#define ERR_ACCOUNT 1030002012LL

#define PATH_AUTHORIZE "/jdyconnector/app_management/push_app_authorize"
#define PATH_AUTH_TOKEN "/jdyconnector/app_management/kingdee_auth_token"
#define PATH_SAVE_V1 "/jdy/inv/inv_check_gain_bill_save"
#define PATH_BILL_V2 "/jdy/v2/scm/inv_check_gail_bill"
#define PATH_MATERIAL_DETAIL "/jdy/v2/bd/material_detail"
#define PATH_STORE_DETAIL "/jdy/v2/bd/store_detail"
#define PATH_MATERIAL_LIST "/jdy/v2/bd/material"
#define PATH_V1_LOGIN "/auth/user/access_token"
#define PATH_V1_ACCOUNTS "/jdy/sys/accountGroup"
#define PATH_V1_LIST_BILLS "/jdy/inv/inv_check_gain_bill_list"
#define PATH_V1_MATERIALS "/jdy/basedata/material_list"
#define PATH_V1_STORES "/jdy/basedata/store_list"

enum ep {
	EP_AUTHORIZE,
	EP_AUTH_TOKEN,
	EP_SAVE_V1,
	EP_SAVE_V2,
	EP_LIST_BILLS,
	EP_MATERIAL_DETAIL,
	EP_STORE_DETAIL,
	EP_MATERIAL_LIST,
	EP_V1_LOGIN,
	EP_V1_ACCOUNTS,
	EP_V1_LIST_BILLS,
	EP_V1_MATERIALS,
	EP_V1_STORES,
	EP_ADMIN,
	EP_UNKNOWN,
	EP_COUNT
};

static const char *const ep_names[EP_COUNT] = {
	"push_app_authorize", "kingdee_auth_token", "save_v1", "save_v2", "list_bills",
	"material_detail", "store_detail", "material_list", "v1_login", "v1_account_groups",
	"v1_list_bills", "v1_material_list", "v1_store_list", "admin", "unknown",
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
	int expires_mode;         /* EXPIRES_*: how token answers write "expires" */
	int sign_encoding;        /* SIGN_*: which reading of the signature is accepted */
	int v1_gateway;           /* 1: V1 paths accept the gateway signature and app-token */
	int v1_login;             /* V1LOGIN_*: methods the account login accepts */
	int managed;              /* 1: catalogue with batch, shelf-life and location management */
	int echo_token;           /* 1: error answers echo the credentials received */
	int64_t rate_limit; /* per minute over business calls, 0 = off */
	int64_t token_rate; /* per minute over token requests, 0 = off */
	int search_mode;    /* what the bill list's search matches: SEARCH_* */
	int create_time_text; /* rows carry create_time as "YYYY-MM-DD HH:MM:SS" (+08:00) */
} knobs_t;

enum { SEARCH_NUMBER, SEARCH_REMARK, SEARCH_NONE };
enum { EXPIRES_ABSOLUTE, EXPIRES_ABSOLUTE_S, EXPIRES_DURATION, EXPIRES_DURATION_MS };
enum { SIGN_RFC3986, SIGN_FORM, SIGN_EITHER };
enum { V1LOGIN_GET, V1LOGIN_POST, V1LOGIN_BOTH };
static const char *const v1_logins[] = {"get", "post", "both"};
static const char *const create_time_formats[] = {"ms", "datetime"};
static const char *const yes_no[] = {"no", "yes"};
static const char *const sign_encodings[] = {"rfc3986", "form", "either"};
static const char *const expires_modes[] = {"absolute", "absolute-s", "duration", "duration-ms"};
static const char *const search_modes[] = {"number", "remark", "none"};

typedef struct bill {
	uint64_t id;
	int64_t created_ms; /* wall clock */
	char no[40];
	char date[11];
	char *remark;
	json_t *body;
} bill_t;

/* What a token is good for: the gateway's app-token, the other token of its answer (never
 * accepted), the V1 account login's access_token. */
enum tok_kind { TOK_APP, TOK_GW_ACCESS, TOK_V1 };

typedef struct token {
	char s[33];
	int64_t exp_ms; /* wall clock */
	enum tok_kind kind;
} token_t;

typedef struct stats {
	uint64_t calls[EP_COUNT];
	uint64_t logins, tokens, saves_ok, saves_rejected, rate_limited, sig_errors, auth_errors;
	uint64_t faults_5xx, faults_429, dropped, slowed, max_calls_60s;
} stats_t;

static struct {
	pthread_mutex_t lock;
	const char *client_id, *client_secret, *app_key, *outer_id;
	const char *username, *password, *account_id; /* the V1 account login */
	long materials;
	bool verbose;
	char domain[64];
	knobs_t k;
	uint64_t rng;
	int64_t rot_base;      /* secret counter when rot_start_ms was taken */
	uint64_t rot_start_ms; /* monotonic */
	token_t *tokens;
	size_t ntokens, ctokens;
	json_t *issued;        /* every token ever issued (GET /admin/tokens) */
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
	char echo[600];  /* credentials received, echoed in errors with --echo-token-in-errors */
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

/* Percent-encoding, uppercase hex: RFC 3986 keeps A-Z a-z 0-9 - _ . ~ (space_plus: a space
 * becomes '+'); the form reading keeps A-Z a-z 0-9 - _ . * and always writes a space as '+'. */
static int url_encode_as(const char *s, bool form, bool space_plus, wj_buf_t *out)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char e[3];
		bool keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
			    (form ? *p == '*' : *p == '~');
		if (keep || (*p == ' ' && (form || space_plus))) {
			if (wj_buf_append(out, keep ? (const char *)p : "+", 1))
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

/* "SP<5 digits>", or "SP <5 digits>": the same material under a number with a space (a
 * number whose signature depends on how a space is encoded). */
static long material_by_number(const char *num)
{
	char plain[32];
	bool spaced = !strncmp(num, "SP ", 3);
	snprintf(plain, sizeof(plain), "SP%s", spaced ? num + 3 : num + (strlen(num) >= 2 ? 2 : 0));
	long i = cat_index(plain, "SP", 5);
	char want[32];
	if (!i || (!spaced && strncmp(num, "SP", 2)))
		return 0;
	snprintf(want, sizeof(want), spaced ? "SP %05ld" : "SP%05ld", i);
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

/* With --managed: materials batch-managed (index ending in 3 or 9) and shelf-life managed
 * (ending in 7 or 9). */
static bool material_batch(long i)
{
	return g.k.managed && (i % 10 == 3 || i % 10 == 9);
}

static bool material_kf(long i)
{
	return g.k.managed && (i % 10 == 7 || i % 10 == 9);
}

/* The V2 material object (material_detail); number as asked for (an alias keeps its form). */
static json_t *material_json(long i, const char *number)
{
	char id[24], num[24], name[48], unit[8];
	snprintf(id, sizeof(id), "M%ld", i);
	snprintf(num, sizeof(num), "SP%05ld", i);
	snprintf(name, sizeof(name), "测试物料%ld", i);
	snprintf(unit, sizeof(unit), "U%ld", i % 3 + 1);
	json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "number", number ? number : num,
			      "name", name, "base_unit_id", unit, "store_unit_id", unit);
	if (g.k.managed)
		json_object_update_new(m, json_pack("{s:b, s:b, s:s, s:s}", "is_batch",
						    material_batch(i), "is_kf_period", material_kf(i),
						    "kf_period_type", "1", "kf_period",
						    material_kf(i) ? "365" : "0"));
	return m;
}

/* The same material as a row of the V1 material_list. */
static json_t *material_v1_json(long i)
{
	char id[24], num[24], name[48], unit[8];
	snprintf(id, sizeof(id), "M%ld", i);
	snprintf(num, sizeof(num), "SP%05ld", i);
	snprintf(name, sizeof(name), "测试物料%ld", i);
	snprintf(unit, sizeof(unit), "U%ld", i % 3 + 1);
	json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "number", num, "name", name,
			      "baseunitid_id", unit, "baseunitid_name", "个");
	if (g.k.managed)
		json_object_update_new(m, json_pack("{s:b, s:b}", "isbatch", material_batch(i),
						    "iskfperiod", material_kf(i)));
	return m;
}

static const struct {
	const char *number, *id, *name;
} stores[] = {
	{"WH01", "S01", "仓库WH01"}, {"WH02", "S02", "仓库WH02"}, {"WH03", "S03", "仓库WH03"},
	{"WH04", "S04", "仓库WH04"}, {"WH05", "S05", "仓库WH05"}, {"CK001", "S99", "仓库CK001"},
};
#define NSTORES (sizeof(stores) / sizeof(stores[0]))

/* With --managed, WH05 (S05) is location-managed with locations A-01..A-03 (SP501..SP503). */
#define LOC_STORE 4
#define NLOCS 3

static bool store_managed(int i)
{
	return g.k.managed && i == LOC_STORE;
}

static bool location_valid(int store, const char *sp_id)
{
	for (int k = 1; k <= NLOCS; k++) {
		char id[16];
		snprintf(id, sizeof(id), "SP5%02d", k);
		if (sp_id && !strcmp(sp_id, id))
			return store_managed(store);
	}
	return false;
}

/* The store object, V2 (is_open_sp, sp_entity) or V1 (isopensp, spentity) names. */
static json_t *store_json(int i, bool v1)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "id", stores[i].id, "number", stores[i].number,
			      "name", stores[i].name);
	if (!g.k.managed)
		return o;
	json_t *locs = json_array();
	for (int k = 1; store_managed(i) && k <= NLOCS; k++) {
		char id[16], no[16], name[32];
		snprintf(id, sizeof(id), "SP5%02d", k);
		snprintf(no, sizeof(no), "A-%02d", k);
		snprintf(name, sizeof(name), "货架%d", k);
		json_array_append_new(locs, json_pack("{s:s, s:s, s:s}", "id", id, "number", no,
						      "name", name));
	}
	json_object_set_new(o, v1 ? "isopensp" : "is_open_sp", json_boolean(store_managed(i)));
	json_object_set_new(o, v1 ? "spentity" : "sp_entity", locs);
	return o;
}

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

static bool token_valid(const char *tok, enum tok_kind kind, int64_t now_ms)
{
	for (size_t i = 0; tok && i < g.ntokens; i++)
		if (!strcmp(g.tokens[i].s, tok))
			return g.tokens[i].kind == kind && now_ms < g.tokens[i].exp_ms;
	return false;
}

static int token_add(const char *tok, enum tok_kind kind, int64_t exp_ms, int64_t now_ms)
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
	g.tokens[g.ntokens].kind = kind;
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

static int text_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* s encoded twice in the given reading, appended to out */
static int encode2(const char *s, bool form, wj_buf_t *out)
{
	wj_buf_t once = {0};
	int rc = url_encode_as(s, form, false, &once) || url_encode_as(once.data, form, false, out);
	wj_buf_free(&once);
	return rc ? -ENOMEM : 0;
}

/* The string to sign for this request in one reading (form: the Java SDK's, else the PHP
 * SDK's); 0 or -errno. */
static int build_sign_string(struct MHD_Connection *con, const char *method, const char *path,
			     const char *nonce, const char *ts, bool form, wj_buf_t *s)
{
	qargs_t q = {.n = 0};
	char *pairs[64] = {0};
	int rc = -ENOMEM;
	MHD_get_connection_values(con, MHD_GET_ARGUMENT_KIND, collect_arg, &q);
	if (q.overflow)
		return -E2BIG;
	qsort(q.a, q.n, sizeof(q.a[0]), qarg_cmp);
	for (size_t i = 0; i < q.n; i++) {
		wj_buf_t p = {0};
		if (encode2(q.a[i].k, form, &p) || wj_buf_append(&p, "=", 1) ||
		    encode2(q.a[i].v, form, &p)) {
			wj_buf_free(&p);
			goto fail;
		}
		pairs[i] = p.data;
	}
	if (form)
		qsort(pairs, q.n, sizeof(pairs[0]), text_cmp);
	if (wj_buf_printf(s, "%s\n", method) || url_encode_as(path, form, true, s) ||
	    wj_buf_append(s, "\n", 1))
		goto fail;
	for (size_t i = 0; i < q.n; i++)
		if (wj_buf_printf(s, "%s%s", i ? "&" : "", pairs[i]))
			goto fail;
	if (wj_buf_printf(s, "\nx-api-nonce:%s\nx-api-timestamp:%s\n", nonce, ts))
		goto fail;
	rc = 0;
fail:
	for (size_t i = 0; i < q.n; i++)
		free(pairs[i]);
	return rc;
}

/* Whether sig is the request's signature in a reading the fake accepts (--sign-encoding). */
static bool signature_ok(struct MHD_Connection *con, const char *method, const char *path,
			 const char *nonce, const char *ts, const char *sig)
{
	int mode = g.k.sign_encoding;
	for (int form = 0; form < 2; form++) {
		if ((form && mode == SIGN_RFC3986) || (!form && mode == SIGN_FORM))
			continue;
		wj_buf_t s = {0};
		char want[89];
		bool ok = build_sign_string(con, method, path, nonce, ts, form, &s) == 0 &&
			  sign_b64(g.client_secret, s.data, s.len, want) == 0 && str_eq_ct(sig, want);
		wj_buf_free(&s);
		if (ok)
			return true;
	}
	return false;
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
	else if (!signature_ok(con, method, path, nonce, ts, sig))
		why = "signature check failed";
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

/* A token request (either login) counted and held to --token-rate; false with the 429 answer
 * set. */
static bool token_admitted(uint64_t now, reply_t *r)
{
	pthread_mutex_lock(&g.lock);
	g.st.logins++;
	bool ok = win_admit(&g.token_calls, g.k.token_rate, now);
	if (!ok) {
		r->retry_after = win_retry_after(&g.token_calls, now);
		g.st.rate_limited++;
	}
	pthread_mutex_unlock(&g.lock);
	if (!ok)
		reply_set(r, 429, json_pack("{s:I, s:s, s:s}", "errcode", (json_int_t)ERR_RATE,
					    "description", "too many token requests",
					    "description_cn", "请求过于频繁"));
	return ok;
}

/* A new token of kind into tok; its expiry and the "expires" value of the answer in the
 * configured reading. Caller holds the lock. */
static int issue_token(enum tok_kind kind, char tok[33], int64_t *exp_ms, int64_t *expires,
		       int64_t now_ms)
{
	unsigned char raw[16];
	for (size_t i = 0; i < sizeof(raw); i += 8) {
		uint64_t x = rng_next();
		memcpy(raw + i, &x, 8);
	}
	wj_hex(raw, sizeof(raw), tok, false);
	int64_t ttl = g.k.token_ttl;
	*exp_ms = now_ms + ttl * 1000;
	switch (g.k.expires_mode) {
	case EXPIRES_ABSOLUTE_S: *expires = *exp_ms / 1000; break;
	case EXPIRES_DURATION: *expires = ttl; break;
	case EXPIRES_DURATION_MS: *expires = ttl * 1000; break;
	default: *expires = *exp_ms; break;
	}
	int rc = token_add(tok, kind, *exp_ms, now_ms);
	if (!rc && kind != TOK_GW_ACCESS)
		g.st.tokens++;
	if (!rc && g.issued)
		json_array_append_new(g.issued, json_string(tok));
	return rc;
}

static void do_auth_token(struct MHD_Connection *con, reply_t *r)
{
	const char *key = arg(con, "app_key");
	const char *sig = arg(con, "app_signature");
	uint64_t now = wj_mono_ms();
	int64_t now_ms = wj_now_ms();
	bool prev_ok = false, ok = false;
	char secret[48], want[89], tok[33];

	if (!token_admitted(now, r))
		return;
	pthread_mutex_lock(&g.lock);
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
	char other[33];
	int64_t exp_ms, expires;
	int rc = issue_token(TOK_APP, tok, &exp_ms, &expires, now_ms);
	/* the answer's access_token is another token, which business calls refuse */
	if (!rc)
		rc = issue_token(TOK_GW_ACCESS, other, &exp_ms, &expires, now_ms);
	pthread_mutex_unlock(&g.lock);
	if (rc) {
		reply_v2(r, ERR_SYSTEM, "out of memory", NULL);
		return;
	}
	json_t *data = json_pack("{s:s, s:s, s:I}", "app-token", tok, "access_token", other,
				 "expires", (json_int_t)expires);
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
	/* line fields a managed material or store requires (--managed) */
	const char *batch, *kf_date, *kf_period, *valid_date, *location;
} dialect_t;

static const dialect_t dialect_v1 = {"billdate", "materialid_id", "stockid_id", true,
				     "batchno", "kfdate", "kfperiod", "validdate", "spid_id"};
static const dialect_t dialect_v2 = {"bill_date", "material_id", "stock_id", false,
				     "batch_no", "kf_date", "kf_period", "valid_date", "sp_id"};

/* What a managed material or store requires of a line; false with msg when it is missing. */
static bool validate_managed(const json_t *e, const dialect_t *d, long mi, int si, size_t line,
			     char *msg, size_t size)
{
	const char *kf = str_field(e, d->kf_date), *valid = str_field(e, d->valid_date);
	double period = 0;
	if (material_batch(mi) && !str_field(e, d->batch)) {
		snprintf(msg, size, "第%zu行：物料启用了批次管理，%s 不能为空", line, d->batch);
		return false;
	}
	if (material_kf(mi) && (!kf || !valid_date(kf))) {
		snprintf(msg, size, "第%zu行：物料启用了保质期管理，%s 不能为空", line, d->kf_date);
		return false;
	}
	if (material_kf(mi) && !(valid && valid_date(valid)) &&
	    !(qty_field(e, d->kf_period, &period) == 0 && period > 0)) {
		snprintf(msg, size, "第%zu行：物料启用了保质期管理，%s 或 %s 不能为空", line,
			 d->kf_period, d->valid_date);
		return false;
	}
	if (store_managed(si) && !location_valid(si, str_field(e, d->location))) {
		snprintf(msg, size, "第%zu行：仓库启用了仓位管理，%s 无效或为空", line, d->location);
		return false;
	}
	return true;
}

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
		int si = store_find(sid, true);
		if (si < 0) {
			snprintf(msg, size, "第%zu行：%s 仓库不存在: %s", line, d->store, sid);
			return false;
		}
		if (!validate_managed(e, d, mi, si, line, msg, size))
			return false;
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

/* Store a bill dated date ("YYYY-MM-DD"), numbered no (NULL: the next number); returns its
 * index or -ENOMEM. Caller holds the lock. */
static int bill_add(const json_t *body, const char *date, const char *no)
{
	if (g.nbills == g.cbills) {
		size_t cap = g.cbills ? g.cbills * 2 : 64;
		bill_t *b = realloc(g.bills, cap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		g.bills = b;
		g.cbills = cap;
	}
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
	if (no)
		snprintf(b->no, sizeof(b->no), "%s", no);
	else
		snprintf(b->no, sizeof(b->no), "PYD-%.4s%.2s%.2s-%06" PRIu64, date, date + 5,
			 date + 8, b->id);
	return (int)g.nbills++;
}

/* Store a validated bill; returns its index or -ENOMEM. Caller holds the lock. */
static int bill_store(const json_t *body, const dialect_t *d)
{
	return bill_add(body, json_string_value(json_object_get(body, d->date)), NULL);
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
	reply_v2(r, 0, "", material_json(i, num));
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
	reply_v2(r, 0, "", store_json(i, false));
}

static void do_material_list(struct MHD_Connection *con, reply_t *r)
{
	const char *s = arg(con, "search");
	long page, size, count = 0;
	page_args(con, &page, &size);
	json_t *rows = json_array();
	for (long i = 1; i <= g.materials; i++) {
		json_t *m = material_json(i, NULL);
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

/* A bill-date bound of the bill list: "YYYY-MM-DD". NULL when absent or empty; *bad when it
 * is not a date. */
static const char *date_bound(const char *v, bool *bad)
{
	if (!v || !*v)
		return NULL;
	int64_t t;
	if (strlen(v) != 10 || wj_time_parse(v, 0, &t) < 0)
		*bad = true;
	return v;
}

/* Whether a bill falls outside [from, to] by its date (bounds NULL: open). */
static bool date_outside(const bill_t *b, const char *from, const char *to)
{
	return (from && strcmp(b->date, from) < 0) || (to && strcmp(b->date, to) > 0);
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
	bool bad = false;
	const char *dfrom = date_bound(arg(con, "start_bill_date"), &bad);
	const char *dto = date_bound(arg(con, "end_bill_date"), &bad);
	if (bad) {
		reply_v2(r, ERR_INVALID, "start_bill_date/end_bill_date 格式错误，应为 yyyy-MM-dd", NULL);
		return;
	}
	page_args(con, &page, &size);
	json_t *rows = json_array();
	pthread_mutex_lock(&g.lock);
	for (size_t i = 0; i < g.nbills; i++) {
		const bill_t *b = &g.bills[i];
		if (s && *s && !search_matches(b, s))
			continue;
		if ((hf && b->created_ms < from) || (ht && b->created_ms > to) ||
		    date_outside(b, dfrom, dto))
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

/* ---- V1: the account login and its lists ---- */

/* Percent-decode a form value in place ('+' is a space). */
static void form_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		unsigned hi, lo;
		if (*p == '+') {
			*o++ = ' ';
		} else if (*p == '%' && sscanf(p + 1, "%1x%1x", &hi, &lo) == 2) {
			*o++ = (char)(hi * 16 + lo);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

/* The value of key in an application/x-www-form-urlencoded body, decoded (caller frees). */
static char *form_value(const req_t *rq, const char *key)
{
	char *copy = rq->body.data ? strdup(rq->body.data) : NULL, *save = NULL, *v = NULL;
	for (char *t = copy ? strtok_r(copy, "&", &save) : NULL; t && !v; t = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(t, '=');
		if (!eq)
			continue;
		*eq = '\0';
		form_decode(t);
		if (!strcmp(t, key)) {
			form_decode(eq + 1);
			v = strdup(eq + 1);
		}
	}
	free(copy);
	return v;
}

static void echo_add(reply_t *r, const char *what, const char *value)
{
	size_t n = strlen(r->echo);
	if (value && *value && n + 1 < sizeof(r->echo))
		snprintf(r->echo + n, sizeof(r->echo) - n, "%s%s=%s", n ? " " : "", what, value);
}

static void reply_v1_error(reply_t *r, unsigned status, const char *code, const char *msg)
{
	reply_set(r, status, json_pack("{s:b, s:s, s:s, s:s}", "success", 0, "code", code,
				       "message", msg, "description_cn", msg));
}

static void do_v1_login(struct MHD_Connection *con, const char *method, const req_t *rq,
			reply_t *r)
{
	bool post = !strcmp(method, "POST");
	static const char *const keys[] = {"client_id", "client_secret", "username", "password"};
	char *v[4] = {0};
	if ((post && g.k.v1_login == V1LOGIN_GET) || (!post && g.k.v1_login == V1LOGIN_POST)) {
		reply_set(r, 405, json_pack("{s:i, s:s}", "errcode", 405, "description",
					    "method not allowed"));
		return;
	}
	for (int i = 0; i < 4; i++) {
		v[i] = post ? form_value(rq, keys[i]) : (arg(con, keys[i]) ? strdup(arg(con, keys[i])) : NULL);
		if (i == 1 || i == 3)
			echo_add(r, keys[i], v[i]);
	}
	int64_t now_ms = wj_now_ms();
	if (!token_admitted(wj_mono_ms(), r))
		goto out;
	pthread_mutex_lock(&g.lock);
	bool ok = v[0] && v[1] && v[2] && v[3] && !strcmp(v[0], g.client_id) &&
		  str_eq_ct(v[1], g.client_secret) && !strcmp(v[2], g.username) &&
		  str_eq_ct(v[3], g.password);
	char tok[33];
	int64_t exp_ms, expires;
	int rc = ok ? issue_token(TOK_V1, tok, &exp_ms, &expires, now_ms) : 0;
	if (!ok)
		g.st.auth_errors++;
	pthread_mutex_unlock(&g.lock);
	if (!ok)
		reply_v2(r, ERR_LOGIN, "用户名或密码错误，或 client_id/client_secret 无效", NULL);
	else if (rc)
		reply_v2(r, ERR_SYSTEM, "out of memory", NULL);
	else
		reply_v2(r, 0, "success", json_pack("{s:s, s:I, s:s, s:s}", "access_token", tok,
						    "expires_in", (json_int_t)expires,
						    "refresh_token", "not-used", "uid", "10001"));
out:
	for (int i = 0; i < 4; i++)
		free(v[i]);
}

/* The account sets the login sees: the configured one, group "g-test", and another. */
static json_t *account_groups(void)
{
	return json_pack("[{s:s, s:[{s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s}]}]", "serviceId",
			 "7944692913991", "accountGroups", "accountId", g.account_id, "groupId",
			 "101", "groupName", "g-test", "accountName", "测试账套", "accountId",
			 "9000000000000000002", "groupId", "102", "groupName", "g-other",
			 "accountName", "另一个账套");
}

/* access_token, groupName and accountId of a V1 call; false with the error answer set. */
static bool check_v1_token(struct MHD_Connection *con, bool need_account, reply_t *r)
{
	const char *tok = arg(con, "access_token");
	pthread_mutex_lock(&g.lock);
	bool ok = token_valid(tok, TOK_V1, wj_now_ms());
	if (!ok)
		g.st.auth_errors++;
	pthread_mutex_unlock(&g.lock);
	if (!ok) {
		/* how the real service words it is not known: an HTTP 401 that says so */
		reply_v1_error(r, 401, "401", "access_token无效或已过期");
		return false;
	}
	const char *group = header(con, "groupName"), *acct = header(con, "accountId");
	if (need_account && (!group || !acct || strcmp(group, "g-test") || strcmp(acct, g.account_id))) {
		reply_v2(r, ERR_ACCOUNT, "账套不存在或无权访问 (groupName/accountId)", NULL);
		return false;
	}
	return true;
}

static void do_v1_accounts(struct MHD_Connection *con, reply_t *r)
{
	if (!check_v1_token(con, false, r))
		return;
	reply_set(r, 200, json_pack("{s:b, s:o}", "success", 1, "data", account_groups()));
}

/* Page and size of a V1 list body ("page", "pagesize"). */
static void v1_page_args(const json_t *b, long *page, long *size)
{
	double p = 1, z = DEFAULT_PAGE_SIZE;
	qty_field(b, "page", &p);
	qty_field(b, "pagesize", &z);
	*page = p >= 1 ? (long)p : 1;
	*size = z >= 1 ? (long)z : DEFAULT_PAGE_SIZE;
	if (*size > MAX_PAGE_SIZE)
		*size = MAX_PAGE_SIZE;
}

static json_t *v1_page(long count, long page, long size, json_t *rows)
{
	return json_pack("{s:b, s:{s:I, s:I, s:I, s:o}}", "success", 1, "data", "count",
			 (json_int_t)count, "page", (json_int_t)page, "totalpage",
			 (json_int_t)((count + size - 1) / size), "rows", rows);
}

static json_t *v1_body(const req_t *rq)
{
	json_error_t jerr;
	json_t *b = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, 0, &jerr);
	if (!json_is_object(b)) {
		json_decref(b);
		b = json_object();
	}
	return b;
}

static void do_v1_list_bills(const req_t *rq, reply_t *r)
{
	json_t *b = v1_body(rq);
	const char *s = str_field(b, "search");
	double from = 0, to = 0;
	bool hf = qty_field(b, "create_start_time", &from) == 0;
	bool ht = qty_field(b, "create_end_time", &to) == 0;
	bool bad = false;
	const char *dfrom = date_bound(str_field(b, "start_bill_date"), &bad);
	const char *dto = date_bound(str_field(b, "end_bill_date"), &bad);
	long page, size, count = 0;
	v1_page_args(b, &page, &size);
	json_t *rows = json_array();
	pthread_mutex_lock(&g.lock);
	for (size_t i = 0; i < g.nbills; i++) {
		const bill_t *bl = &g.bills[i];
		if ((s && !search_matches(bl, s)) || (hf && bl->created_ms < (int64_t)from) ||
		    (ht && bl->created_ms > (int64_t)to) || (!bad && date_outside(bl, dfrom, dto)))
			continue;
		if (++count <= (page - 1) * size || count > page * size)
			continue;
		char t[WJ_TIME_LEN];
		wj_time_format(bl->created_ms / 1000, 8 * 3600, t);
		json_array_append_new(rows, json_pack("{s:I, s:s, s:s, s:s, s:s}", "id",
						      (json_int_t)bl->id, "billno", bl->no, "billdate",
						      bl->date, "remark", bl->remark, "createtime", t));
	}
	pthread_mutex_unlock(&g.lock);
	json_decref(b);
	reply_set(r, 200, v1_page(count, page, size, rows));
}

/* V1 material_list / store_list: "search" fuzzy over number and name. */
static void do_v1_basedata(const req_t *rq, bool materials, reply_t *r)
{
	json_t *b = v1_body(rq);
	const char *s = str_field(b, "search");
	long page, size, count = 0, n = materials ? g.materials : (long)NSTORES;
	v1_page_args(b, &page, &size);
	json_t *rows = json_array();
	for (long i = 0; i < n; i++) {
		json_t *o = materials ? material_v1_json(i + 1) : store_json((int)i, true);
		const char *no = json_string_value(json_object_get(o, "number"));
		const char *name = json_string_value(json_object_get(o, "name"));
		if ((s && !strstr(no, s) && !strstr(name, s)) || ++count <= (page - 1) * size ||
		    count > page * size)
			json_decref(o);
		else
			json_array_append_new(rows, o);
	}
	json_decref(b);
	reply_set(r, 200, v1_page(count, page, size, rows));
}

/* ---- business calls ---- */

static bool v1_path(enum ep ep)
{
	return ep == EP_SAVE_V1 || ep == EP_V1_ACCOUNTS || ep == EP_V1_LIST_BILLS ||
	       ep == EP_V1_MATERIALS || ep == EP_V1_STORES;
}

/* Rate limit and injected faults of a business call; false with the answer set. */
static bool business_gate(reply_t *r)
{
	uint64_t now = wj_mono_ms();
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
	pthread_mutex_unlock(&g.lock);

	if (limited || f429) {
		r->retry_after = limited ? retry : 1;
		reply_set(r, 429,
			  json_pack("{s:I, s:s, s:s}", "errcode", (json_int_t)ERR_RATE,
				    "description", "rate limited", "description_cn", "请求过于频繁"));
		return false;
	}
	if (f5xx) {
		if (code5xx == 501)
			code5xx = 502;
		reply_set(r, code5xx, json_pack("{s:I, s:s}", "errcode", (json_int_t)ERR_SYSTEM,
						"description", "系统异常"));
		return false;
	}
	return true;
}

/* app-token and X-GW-Router-Addr of a gateway call; false with the answer set. */
static bool check_app_token(struct MHD_Connection *con, reply_t *r)
{
	const char *tok = header(con, "app-token");
	const char *router = header(con, "X-GW-Router-Addr");
	pthread_mutex_lock(&g.lock);
	bool tok_ok = token_valid(tok, TOK_APP, wj_now_ms());
	bool router_ok = router && !strcmp(router, g.domain);
	if (!tok_ok || !router_ok)
		g.st.auth_errors++;
	pthread_mutex_unlock(&g.lock);
	if (!tok_ok)
		reply_v2(r, ERR_TOKEN, "授权密钥无效或已过期", NULL);
	else if (!router_ok)
		reply_v2(r, ERR_ROUTER, "X-GW-Router-Addr 无效", NULL);
	return tok_ok && router_ok;
}

/* A business call, authorised by the V1 access_token (v1) or the gateway's app-token. */
static void do_business(struct MHD_Connection *con, enum ep ep, const req_t *rq, bool v1,
			reply_t *r)
{
	if (!business_gate(r))
		return;
	if (v1 ? !check_v1_token(con, true, r) : !check_app_token(con, r))
		return;
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
	case EP_V1_LIST_BILLS:
		do_v1_list_bills(rq, r);
		break;
	case EP_V1_MATERIALS:
	case EP_V1_STORES:
		do_v1_basedata(rq, ep == EP_V1_MATERIALS, r);
		break;
	default:
		reply_v2(r, 404, "not found", NULL);
	}
}

/* ---- admin ---- */

/* Knobs whose value is one of a few words (flags and admin keys of the same names). */
static const struct word_knob {
	const char *key;
	const char *const *words;
	size_t n, off;
} word_knobs[] = {
	{"expires_mode", expires_modes, 4, offsetof(knobs_t, expires_mode)},
	{"search_mode", search_modes, 3, offsetof(knobs_t, search_mode)},
	{"create_time_format", create_time_formats, 2, offsetof(knobs_t, create_time_text)},
	{"sign_encoding", sign_encodings, 3, offsetof(knobs_t, sign_encoding)},
	{"v1_gateway", yes_no, 2, offsetof(knobs_t, v1_gateway)},
	{"v1_login", v1_logins, 3, offsetof(knobs_t, v1_login)},
};

static const struct word_knob *word_knob(const char *key)
{
	for (size_t i = 0; i < sizeof(word_knobs) / sizeof(word_knobs[0]); i++)
		if (!strcmp(word_knobs[i].key, key))
			return &word_knobs[i];
	return NULL;
}

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
			 expires_modes[k->expires_mode], "rate_limit",
			 (json_int_t)k->rate_limit, "token_rate", (json_int_t)k->token_rate);
	for (size_t i = 0; i < sizeof(word_knobs) / sizeof(word_knobs[0]); i++) {
		const struct word_knob *w = &word_knobs[i];
		int v = *(const int *)((const char *)k + w->off);
		json_object_set_new(o, w->key, json_string(w->words[v]));
	}
	json_object_set_new(o, "managed", json_integer(k->managed));
	json_object_set_new(o, "echo_token_in_errors", json_integer(k->echo_token));
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
		const struct word_knob *w = word_knob(key);
		if (w) {
			int m = word_index(json_string_value(v), w->words, w->n);
			if (m < 0) {
				int n = snprintf(msg, size, "%s:", key);
				for (size_t i = 0; i < w->n && n > 0 && (size_t)n < size; i++)
					n += snprintf(msg + n, size - (size_t)n, " %s", w->words[i]);
				return -EINVAL;
			}
			*(int *)((char *)&k + w->off) = m;
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
		else if (!strcmp(key, "managed") && d <= 1)
			k.managed = (int)d;
		else if (!strcmp(key, "echo_token_in_errors") && d <= 1)
			k.echo_token = (int)d;
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

/* POST /admin/bills: bills someone else made ({"bills": [...]}, a list or one bill), each
 * {"bill_date" or "billdate", "remark", "material_entity", "bill_no"?}, stored as given.
 * Answers {"bills": [{"id", "bill_no"}]}. Caller holds the lock. */
static void admin_add_bills(const json_t *o, reply_t *r)
{
	const json_t *list = json_is_array(o) ? o : json_object_get(o, "bills");
	json_t *one = NULL;
	if (!list && json_is_object(o))
		list = one = json_pack("[O]", o);
	json_t *out = json_array();
	size_t i;
	const json_t *b;
	json_array_foreach(list, i, b) {
		const char *date = str_field(b, "bill_date") ?: str_field(b, "billdate");
		bool bad = !date;
		date_bound(date, &bad);
		if (bad) {
			reply_set(r, 400, json_pack("{s:s, s:I}", "error", "bill_date: expected "
						    "YYYY-MM-DD", "index", (json_int_t)i));
			json_decref(out);
			json_decref(one);
			return;
		}
		int k = bill_add(b, date, str_field(b, "bill_no"));
		if (k < 0)
			break;
		char id[24];
		snprintf(id, sizeof(id), "%" PRIu64, g.bills[k].id);
		json_array_append_new(out, json_pack("{s:s, s:s}", "id", id, "bill_no",
						     g.bills[k].no));
	}
	json_decref(one);
	reply_set(r, 200, json_pack("{s:o}", "bills", out));
}

/* POST /admin/delete-bills {"ids": [...], "bill_nos": [...]}: the bills are gone, as when an
 * accountant deletes them. Answers {"deleted": n}. Caller holds the lock. */
static void admin_delete_bills(const json_t *o, reply_t *r)
{
	size_t kept = 0, deleted = 0;
	for (size_t i = 0; i < g.nbills; i++) {
		bill_t *b = &g.bills[i];
		char id[24];
		snprintf(id, sizeof(id), "%" PRIu64, b->id);
		bool gone = false;
		size_t k;
		const json_t *v;
		json_array_foreach(json_object_get(o, "ids"), k, v)
			gone |= json_is_string(v) && !strcmp(json_string_value(v), id);
		json_array_foreach(json_object_get(o, "bill_nos"), k, v)
			gone |= json_is_string(v) && !strcmp(json_string_value(v), b->no);
		if (gone) {
			free(b->remark);
			json_decref(b->body);
			deleted++;
			continue;
		}
		g.bills[kept++] = *b;
	}
	g.nbills = kept;
	reply_set(r, 200, json_pack("{s:I}", "deleted", (json_int_t)deleted));
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
	} else if (get && !strcmp(url, "/admin/tokens")) {
		reply_set(r, 200, json_pack("{s:O}", "tokens", g.issued));
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
	} else if (post && (!strcmp(url, "/admin/bills") || !strcmp(url, "/admin/delete-bills"))) {
		json_error_t jerr;
		json_t *o = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len, 0, &jerr);
		if (!o)
			reply_set(r, 400, json_pack("{s:s}", "error", "invalid JSON"));
		else if (!strcmp(url, "/admin/bills"))
			admin_add_bills(o, r);
		else
			admin_delete_bills(o, r);
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
	if ((get || post) && !strcmp(url, PATH_V1_LOGIN))
		return EP_V1_LOGIN;
	if (post && !strcmp(url, PATH_V1_ACCOUNTS))
		return EP_V1_ACCOUNTS;
	if (post && !strcmp(url, PATH_V1_LIST_BILLS))
		return EP_V1_LIST_BILLS;
	if (post && !strcmp(url, PATH_V1_MATERIALS))
		return EP_V1_MATERIALS;
	if (post && !strcmp(url, PATH_V1_STORES))
		return EP_V1_STORES;
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
	echo_add(r, "app-token", header(con, "app-token"));
	echo_add(r, "access_token", arg(con, "access_token"));
	echo_add(r, "app_signature", arg(con, "app_signature"));
	echo_add(r, "X-Api-Signature", header(con, "X-Api-Signature"));
	if (ep == EP_V1_LOGIN) {
		do_v1_login(con, method, rq, r);
		return;
	}
	/* the account login's calls: ?access_token=T, no gateway signature */
	if (v1_path(ep) && arg(con, "access_token")) {
		if (ep == EP_V1_ACCOUNTS)
			do_v1_accounts(con, r);
		else
			do_business(con, ep, rq, true, r);
		return;
	}
	if (!check_gateway(con, method, url, r))
		return;
	if (v1_path(ep) && !g.k.v1_gateway)
		reply_v2(r, ERR_V1_GATEWAY, "V1 接口不接受网关签名和 app-token，请使用账号登录 "
					    "(access_token)", NULL);
	else if (ep == EP_AUTHORIZE)
		do_authorize(con, r);
	else if (ep == EP_AUTH_TOKEN)
		do_auth_token(con, r);
	else
		do_business(con, ep, rq, false, r);
}

/* Append " (received: ...)" to a string member of o. */
static void echo_into(json_t *o, const char *key, const char *echo)
{
	const char *v = json_string_value(json_object_get(o, key));
	char *t = NULL;
	if (v && asprintf(&t, "%s (received: %s)", v, echo) >= 0)
		json_object_set_new(o, key, json_string(t));
	free(t);
}

/* --echo-token-in-errors: an error answer repeats the credentials the request carried, as a
 * careless server might. */
static void echo_credentials(reply_t *r)
{
	json_t *j = r->json;
	const json_t *code = json_object_get(j, "errcode");
	bool error = r->status >= 400 || json_is_false(json_object_get(j, "success")) ||
		     (json_is_integer(code) && json_integer_value(code) != 0);
	if (!g.k.echo_token || !r->echo[0] || !json_is_object(j) || !error)
		return;
	static const char *const keys[] = {"description", "message", "description_cn"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		echo_into(j, keys[i], r->echo);
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(json_object_get(j, "data"), "errorInfo"), i, e)
		echo_into(e, "msg", r->echo);
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
	echo_credentials(&r);
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
		"  [--materials N] [--token-ttl S] [--secret-rotate S]\n"
		"  [--expires-mode absolute|absolute-s|duration|duration-ms]\n"
		"  [--token-rate N] [--rate-limit N] [--fail-5xx PCT] [--fail-429 PCT]\n"
		"  [--drop-after-save PCT] [--slow-after-save PCT] [--slow-after-save-ms N]\n"
		"  [--latency-ms N] [--max-saves-per-sec R] [--search-mode number|remark|none]\n"
		"  [--create-time-format ms|datetime] [--sign-encoding rfc3986|form|either]\n"
		"  [--username S] [--password S] [--account-id S] [--v1-login get|post|both]\n"
		"  [--v1-gateway yes|no] [--managed] [--echo-token-in-errors]\n");
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
		O_APP_KEY, O_OUTER_ID, O_MATERIALS, O_KNOB, O_USERNAME, O_PASSWORD, O_ACCOUNT_ID,
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
		{"sign-encoding", required_argument, NULL, O_KNOB},
		{"v1-gateway", required_argument, NULL, O_KNOB},
		{"v1-login", required_argument, NULL, O_KNOB},
		{"managed", no_argument, NULL, O_KNOB},
		{"echo-token-in-errors", no_argument, NULL, O_KNOB},
		{"username", required_argument, NULL, O_USERNAME},
		{"password", required_argument, NULL, O_PASSWORD},
		{"account-id", required_argument, NULL, O_ACCOUNT_ID},
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
	g.username = "test-user";
	g.password = "test-password";
	g.account_id = "1584244570835057173";
	g.k = (knobs_t){
		.token_ttl = 86400, .secret_rotate = 86400, .rate_limit = 500, .token_rate = 10,
		.v1_gateway = 1, .v1_login = V1LOGIN_BOTH,
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
		case O_USERNAME:
			g.username = optarg;
			break;
		case O_PASSWORD:
			g.password = optarg;
			break;
		case O_ACCOUNT_ID:
			g.account_id = optarg;
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
			if (word_knob(key))
				json_object_set_new(knobs, key, json_string(optarg));
			else if (!optarg)
				json_object_set_new(knobs, key, json_real(1));
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
	g.issued = json_array();
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
	json_decref(g.issued);
	free(g.admitted.t);
	free(g.arrived.t);
	free(g.token_calls.t);
	return 0;
bad:
	usage(stderr);
	json_decref(knobs);
	return 2;
}
