/* Asynchronous HTTP client: curl multi driven by a libuv loop.
 *
 * One wj_http_t per remote API. Requests beyond max_inflight wait in FIFO order.
 * Connections are reused; TLS peer verification is always on (optional CA file, read again
 * for every new connection, so a renewed file applies without a restart);
 * curl's standard proxy environment variables are honoured. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct wj_http wj_http_t;

typedef struct wj_http_opts {
	unsigned max_inflight; /* 0 → 1 */
	const char *ca_file;   /* NULL → system default; copied */
	const char *user_agent;/* NULL → "wdt2jdy/VERSION"; copied */
	uint64_t max_body;     /* largest answer body accepted, bytes; 0 → WJ_HTTP_MAX_BODY */
	uint64_t max_retry_after_ms; /* Retry-After values are cut to this; 0 → 1 h */
} wj_http_opts_t;

/* Default cap on an answer's body (http.max_body). */
#define WJ_HTTP_MAX_BODY (32ULL << 20)
/* Default cap on a Retry-After pause (http.max_retry_after). */
#define WJ_HTTP_MAX_RETRY_AFTER_MS (3600ULL * 1000)

typedef struct wj_http_req {
	const char *method;       /* "GET" or "POST" */
	const char *url;          /* copied */
	const char *const *headers; /* NULL-terminated "Name: value" list, copied; may be NULL */
	const char *body;         /* copied; may be NULL */
	size_t body_len;
	uint64_t timeout_ms;      /* whole transfer; 0 → 30 s */
} wj_http_req_t;

typedef struct wj_http_resp {
	long status;          /* HTTP status, 0 when no response was received */
	const char *body;     /* NUL-terminated, valid only during the callback */
	size_t body_len;
	int64_t retry_after_ms; /* from Retry-After (seconds or HTTP date), -1 when absent;
				 * never above the client's max_retry_after_ms */
	int64_t date_ms;      /* the server's clock from its Date header (epoch ms, whole
			       * seconds), -1 when absent or unreadable */
	int curl_code;        /* CURLcode, 0 (CURLE_OK) on a completed exchange */
	const char *error;    /* human-readable curl error, "" when none */
	bool maybe_sent;      /* false only when no byte of the request can have reached the server */
	uint64_t elapsed_ms;  /* from start of transfer (not queueing) to completion */
	bool too_big;         /* the answer exceeded max_body: cut off, status 0, error says so */
	void *priv;           /* the request (for wj_http_take_body) */
} wj_http_resp_t;

/* Called exactly once per request, from the loop (never from inside wj_http_request).
 * When the client is freed with requests pending, they complete with curl_code
 * CURLE_ABORTED_BY_CALLBACK and maybe_sent set according to their progress. */
typedef void (*wj_http_cb)(const wj_http_resp_t *resp, void *arg);

/* Returns NULL on allocation/initialisation failure. */
wj_http_t *wj_http_new(uv_loop_t *loop, const wj_http_opts_t *opts);
/* The loop the client runs on. */
uv_loop_t *wj_http_loop(const wj_http_t *h);
/* Use another CA file (NULL: the system's) for requests queued from now on; copied. Reused
 * connections made with the old file are not shared with the new requests. 0 or -ENOMEM (the
 * old file stays in use). */
int wj_http_set_ca_file(wj_http_t *h, const char *ca_file);
/* Change the cap on requests in flight (applies to requests started from now on). */
void wj_http_set_max_inflight(wj_http_t *h, unsigned max_inflight);
/* Queue a request. 0 or -ENOMEM/-EINVAL; -ECANCELED once wj_http_free has been called. */
int wj_http_request(wj_http_t *h, const wj_http_req_t *req, wj_http_cb cb, void *arg);
/* Requests started and not completed / queued and not started. */
unsigned wj_http_inflight(const wj_http_t *h);
unsigned wj_http_queued(const wj_http_t *h);
/* Abort everything (callbacks run with CURLE_ABORTED_BY_CALLBACK), close uv handles.
 * The loop must be run afterwards for the handles to be closed; memory is freed then. */
void wj_http_free(wj_http_t *h);

/* Take the answer's body out of resp during the callback, to keep it without a copy: the
 * buffer (NUL-terminated, body_len bytes before the NUL) becomes the caller's, who frees it.
 * resp->body must not be used afterwards. NULL when there is none. */
char *wj_http_take_body(const wj_http_resp_t *resp);

/* Process-wide curl init/cleanup (call once at start/end of main). */
int wj_http_global_init(void);
void wj_http_global_cleanup(void);

/* URL-encode (RFC 3986 unreserved kept, uppercase hex). Caller frees. */
char *wj_urlencode(const char *s);
