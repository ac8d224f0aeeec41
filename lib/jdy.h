/* Kingdee Cloud Xingchen client: login, token lifecycle, calls, and the readings of the answers.
 *
 * Two logins (opts.auth):
 * - gateway: every call carries the API-gateway signature (X-Api-ClientID, X-Api-Signature, ...)
 *   and, once logged in, app-token and X-GW-Router-Addr. The token comes from
 *   push_app_authorize then kingdee_auth_token.
 * - password (V1 API only): the classic account login (GET /auth/user/access_token with client
 *   id and secret, username and password), the account set from POST /jdy/sys/accountGroup;
 *   calls carry ?access_token=T and the headers groupName and accountId.
 * Either way the token is obtained on demand, refreshed before it expires and once after a
 * call says it is invalid, with a single login in flight however many calls wait for it.
 * Error texts handed out never contain a token, secret, password or signature.
 * Rate limiting is the caller's job. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lib/config.h"
#include "lib/http.h"
#include "lib/util.h"

/* errcode: authorisation key invalid or expired. */
#define WJ_JDY_ERR_TOKEN 1030002006LL
/* errcode: system error, worth retrying. */
#define WJ_JDY_ERR_SYSTEM 2000002000LL
/* Pause before the next login attempt after a failed one: doubles with each consecutive
 * failure, from 5 s up to 1 min. */
#define WJ_JDY_LOGIN_BACKOFF_MS 5000
#define WJ_JDY_LOGIN_BACKOFF_MAX_MS 60000

typedef struct wj_jdy wj_jdy_t;

typedef struct wj_jdy_opts {
	wj_jdy_api_t api;
	wj_jdy_auth_t auth;            /* WJ_JDY_AUTH_PASSWORD needs api V1 */
	const char *url;               /* base URL, e.g. "https://api.kingdee.com" */
	const char *client_id, *client_secret;
	const char *outer_instance_id; /* gateway */
	const char *username, *password, *account_id; /* password */
	uint64_t timeout_ms;           /* per request; 0 → 30 s */
} wj_jdy_opts_t;

typedef enum {
	WJ_JDY_OK,
	WJ_JDY_RATE_LIMITED, /* retry after retry_after_ms */
	WJ_JDY_AUTH,         /* credentials or token refused */
	WJ_JDY_TRANSIENT,    /* not processed; safe to retry */
	WJ_JDY_PERMANENT,    /* refused for good (validation, unknown number, ...) */
	WJ_JDY_UNKNOWN,      /* the request may have been processed; outcome unknown */
} wj_jdy_class_t;

typedef struct wj_jdy_result {
	wj_jdy_class_t cls;
	long http_status;      /* 0 when no response was received */
	json_t *data;          /* envelope "data"; borrowed, valid only during the callback; may be NULL */
	int64_t retry_after_ms;/* for RATE_LIMITED (and failed logins): wait at least this long */
	bool token_refused;    /* AUTH because the token was refused: a new login may help */
	char code[32];         /* errcode/errorCode/code as text, "" when none */
	char error[512];       /* human-readable reason, "" on success */
} wj_jdy_result_t;

/* Called exactly once per call, from the loop (never from inside the call function). */
typedef void (*wj_jdy_cb)(const wj_jdy_result_t *res, void *arg);

/* ---- pure helpers ---- */

/* How the gateway signature encodes the query: the PHP SDK's RFC 3986 reading (space → %20,
 * '~' kept, '*' encoded; pairs sorted by key, then value) or the Java SDK's form reading
 * (space → '+', '*' kept, '~' encoded; whole "k=v" strings sorted). */
typedef enum { WJ_JDY_ENC_RFC3986 = 0, WJ_JDY_ENC_FORM = 1 } wj_jdy_enc_t;

/* Append the gateway string-to-sign S for a request to out:
 *   METHOD \n encode(path) \n Q \n x-api-nonce:N \n x-api-timestamp:T \n
 * The path is encoded once ('/' → %2F, a space → '+'); in Q keys and values are encoded twice
 * (uppercase hex), joined "k=v&k=v" (empty when none). 0 or -ENOMEM/-EINVAL. */
int wj_jdy_sign_string(const char *method, const char *path, const wj_kv_t *query, size_t nq,
		       const char *nonce, const char *timestamp, wj_jdy_enc_t enc, wj_buf_t *out);
/* X-Api-Signature = base64(lowercase hex(HMAC-SHA256(secret, S))) into out (NUL-terminated).
 * 0, -ENOSPC when out is too small (89 bytes suffice), -ENOMEM, -EINVAL. */
int wj_jdy_sign(const char *secret, const char *method, const char *path, const wj_kv_t *query,
		size_t nq, const char *nonce, const char *timestamp, wj_jdy_enc_t enc, char *out,
		size_t size);
/* app_signature = base64(lowercase hex(HMAC-SHA256(app_secret, app_key))). Same returns. */
int wj_jdy_app_signature(const char *app_key, const char *app_secret, char *out, size_t size);

/* Absolute expiry (epoch ms) from a token answer's "expires" (or "expires_in"), which may be an
 * absolute time in ms or s, or a lifetime in s or ms. A value that read as an absolute time
 * lies within 30 days of now is one (-1 when that is in the past); otherwise it is a lifetime
 * of at most 30 days, in whichever unit gives the lifetime nearest a day (what a token lives).
 * -1 when no reading fits. */
int64_t wj_jdy_expiry_ms(int64_t expires, int64_t now_ms);
/* When to refresh a token obtained at obtained_ms expiring at expiry_ms: at 90 % of its lifetime
 * or 5 min before expiry, whichever is first, but not before half of the lifetime. */
int64_t wj_jdy_refresh_at(int64_t obtained_ms, int64_t expiry_ms);

/* Parse and classify a response (either envelope, V1 or V2). maybe_sent: the request may have
 * been processed (a non-idempotent call whose body may have reached the server); then any 5xx,
 * a system error, a malformed answer or no answer is WJ_JDY_UNKNOWN, otherwise
 * WJ_JDY_TRANSIENT. Fills *out (data borrowed from *root). *root: the parsed document or NULL;
 * caller json_decref()s it. Returns 0. */
int wj_jdy_parse(long http_status, const char *body, size_t len, int64_t retry_after_ms,
		 bool maybe_sent, wj_jdy_result_t *out, json_t **root);

/* From a save's data: bill id (successPkIds[0] or ids[0]) and bill number (id_number_map[id];
 * "" when absent, as for V1). 0, -ENOENT when there is no id, -ENOSPC when a buffer is short. */
int wj_jdy_saved_bill(const json_t *data, char *id, size_t id_size, char *no, size_t no_size);

/* ---- client ---- */

/* Strings in o are copied. http stays owned by the caller and must outlive the client's
 * requests. NULL on bad options or allocation failure. */
wj_jdy_t *wj_jdy_new(uv_loop_t *loop, wj_http_t *http, const wj_jdy_opts_t *o);
/* Reload the options; a change of URL or credentials drops the token. 0, -EINVAL, -ENOMEM. */
int wj_jdy_set_opts(wj_jdy_t *j, const wj_jdy_opts_t *o);
/* Calls waiting for a login complete with WJ_JDY_TRANSIENT "client closed" (from the loop);
 * calls in flight complete when the HTTP client finishes or aborts them. Memory is released
 * after the last of them, and after the loop has run once. */
void wj_jdy_free(wj_jdy_t *j);

/* Called after each successful login with the token as JSON text (valid during the call), so
 * that it can be persisted: {"auth":"gateway","app_token","domain","app_key",...} or
 * {"auth":"password","access_token","group_name","account_id",...}, both with "expires_ms" and
 * "obtained_ms", and "login": wj_jdy_login_digest() of the login that made it. */
void wj_jdy_set_token_hook(wj_jdy_t *j, void (*hook)(const char *token_json, void *arg), void *arg);
/* Adopt a persisted token. 0, -EINVAL (malformed), -ESTALE (expired or about to, or of another
 * login or account set, or made with other credentials, or without a "login" digest: ignored). */
int wj_jdy_restore_token(wj_jdy_t *j, const char *token_json);
/* The digest that names j's login in a persisted token: SHA-256 (hex, into out of 65 bytes) of
 * every field the login sends, secrets included; "" when it cannot be made. */
void wj_jdy_login_digest(const wj_jdy_t *j, char out[65]);
/* Whether a usable token is held. */
bool wj_jdy_has_token(const wj_jdy_t *j);
/* The reason of the last failed login ("" after a successful one); valid until the next call
 * into the client. Never contains a secret. */
const char *wj_jdy_login_error(const wj_jdy_t *j);

/* Generic call: path like "/jdy/v2/bd/material_detail", query values unencoded, body JSON or
 * NULL. Logs in first when needed; retries once when the token is refused.
 * 0, -ENOMEM, or -EINVAL (bad arguments, client closing). */
int wj_jdy_call(wj_jdy_t *j, const char *method, const char *path, const wj_kv_t *query,
		size_t nq, const char *body, wj_jdy_cb cb, void *arg);

/* Save a gain bill (V1 or V2 path per opts.api); on OK res->data is the save's data
 * (see wj_jdy_saved_bill). */
int wj_jdy_save(wj_jdy_t *j, const char *body_json, wj_jdy_cb cb, void *arg);
/* Material / store by number (V2 detail in gateway auth; V1 material_list / store_list and an
 * exact match on "number" in password auth). On OK res->data (borrowed) is the object as
 * Kingdee returned it with these keys added or overwritten (interface I2):
 *   material: "id" (string), "number", "base_unit_id" (string), "batch_managed",
 *             "shelf_life_managed" (bools)
 *   store:    "id" (string), "number", "location_managed" (bool), "locations": object
 *             location number → location id (string), {} when none known
 * An unknown number is WJ_JDY_PERMANENT with a message naming it. */
int wj_jdy_material(wj_jdy_t *j, const char *number, wj_jdy_cb cb, void *arg);
int wj_jdy_store(wj_jdy_t *j, const char *number, wj_jdy_cb cb, void *arg);
/* The I2 readings above, applied in place to a material / store object of either API.
 * -EINVAL when o has no usable "id", -ENOMEM. */
int wj_jdy_material_normalise(json_t *o);
int wj_jdy_store_normalise(json_t *o);

/* ---- gain-bill list ---- */

typedef struct wj_jdy_bill_query {
	const char *search;       /* NULL or "" → not sent */
	int64_t created_from_ms;  /* bills created in [from, to] (epoch ms, Kingdee's clock); */
	int64_t created_to_ms;    /* both 0 → no time filter */
	const char *bill_date_from; /* bills dated in [from, to], "YYYY-MM-DD" (start_bill_date, */
	const char *bill_date_to;   /* end_bill_date); NULL or "" → not sent */
	unsigned page;            /* from 1 (0 is read as 1) */
} wj_jdy_bill_query_t;

/* List gain bills, 100 per page (the V2 list in gateway auth, V1 inv_check_gain_bill_list in
 * password auth). Whatever the API answered, on
 * WJ_JDY_OK res->data is normalised:
 *   {"rows": [{"id": "…", "bill_no": "…", "bill_date": "YYYY-MM-DD", "remark": "…",
 *              "create_time_ms": <int or null>}],
 *    "page": n, "total_page": n, "count": n}
 * (borrowed, valid during the callback). An answer without a list of rows is
 * WJ_JDY_TRANSIENT ("malformed list answer"), never an empty page. The time filter narrows
 * what the server returns; rows are not filtered again here. */
int wj_jdy_list_bills(wj_jdy_t *j, const wj_jdy_bill_query_t *q, wj_jdy_cb cb, void *arg);
/* The list call above without a time filter (kept for callers that search by marker). */
int wj_jdy_find_bills(wj_jdy_t *j, const char *search, unsigned page, wj_jdy_cb cb, void *arg);
/* Normalise the data of a list answer (V1 or V2 field names) as described above; page is the
 * page asked for, used when the answer does not say. New reference (caller decrefs), NULL when
 * data holds no list of rows. */
json_t *wj_jdy_bills_normalise(const json_t *data, unsigned page);
/* A bill's creation time as Kingdee writes it (epoch ms or s as number or digits, or
 * "YYYY-MM-DD HH:MM:SS" in Beijing time) → epoch ms; -1 when absent or unreadable. */
int64_t wj_jdy_time_ms(const json_t *v);

const char *wj_jdy_class_name(wj_jdy_class_t cls);
