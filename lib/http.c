/* Asynchronous HTTP client: curl multi interface driven by a libuv loop.
 *
 * One multi handle per client. curl tells us which sockets to watch (one uv_poll_t per
 * socket, attached with curl_multi_assign) and when to wake up (one uv_timer_t). Every
 * curl_multi_socket_action is followed by draining curl_multi_info_read. Requests beyond
 * the in-flight cap wait in a FIFO and start as others complete. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "lib/http.h"
#include "lib/util.h"
#include "wj_build.h"

#define DEFAULT_TIMEOUT_MS 30000
#define MAX_CONNECT_TIMEOUT_MS 10000
#define SPARE_CONNS 4

struct http_req {
	struct http_req *prev, *next; /* in h->queue or h->active */
	wj_http_t *h;
	CURL *easy;
	struct curl_slist *headers;
	char *url;
	char *body;
	size_t body_len;
	size_t body_pos;   /* read position of the body (POST) */
	wj_buf_t resp;
	uint64_t sent;     /* request bytes handed to the connection (headers + body) */
	uint64_t start_ms; /* monotonic, when added to the multi */
	wj_http_cb cb;
	void *arg;
	bool too_big;      /* the answer went past max_body: the transfer was cut off */
	char errbuf[CURL_ERROR_SIZE];
};

struct req_list {
	struct http_req *head, *tail;
	unsigned n;
};

struct sock_ctx {
	uv_poll_t poll; /* first: the handle pointer is the context pointer */
	struct sock_ctx *prev, *next;
	wj_http_t *h;
	curl_socket_t fd;
};

struct wj_http {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct req_list queue;  /* waiting for a slot, FIFO */
	struct req_list active; /* added to the multi */
	struct sock_ctx *socks;
	unsigned max_inflight;
	unsigned open_handles; /* uv handles not yet closed */
	bool closing;
	char *ca_file;
	char *user_agent;
	uint64_t max_body;
	int64_t max_retry_after_ms;
};

static void list_push(struct req_list *l, struct http_req *r)
{
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
}

static void list_remove(struct req_list *l, struct http_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
	l->n--;
}

static void req_free(struct http_req *r)
{
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	free(r->url);
	free(r->body);
	wj_buf_free(&r->resp);
	free(r);
}

static void handle_closed(uv_handle_t *handle)
{
	wj_http_t *h = handle->data;
	if (handle->type == UV_POLL)
		free(handle); /* the struct sock_ctx */
	if (--h->open_handles == 0) {
		free(h->ca_file);
		free(h->user_agent);
		free(h);
	}
}

/* The value of the last header called name, or NULL. */
static const char *header(CURL *easy, const char *name)
{
	struct curl_header *hdr = NULL;
	if (curl_easy_header(easy, name, 0, CURLH_HEADER, -1, &hdr) != CURLHE_OK || !hdr)
		return NULL;
	return hdr->value;
}

/* Retry-After as delta seconds or an HTTP date; milliseconds from now, at most cap_ms, -1 when
 * absent or unreadable. Any number of digits is read without overflow. */
static int64_t retry_after_ms(CURL *easy, int64_t cap_ms)
{
	const char *v = header(easy, "Retry-After");
	if (!v)
		return -1;
	while (*v == ' ' || *v == '\t')
		v++;
	int64_t ms;
	if (*v >= '0' && *v <= '9') {
		int64_t secs = 0;
		for (; *v >= '0' && *v <= '9'; v++)
			if (secs <= cap_ms / 1000)
				secs = secs * 10 + (*v - '0');
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v)
			return -1;
		ms = secs > cap_ms / 1000 ? cap_ms : secs * 1000;
	} else {
		time_t t = curl_getdate(v, NULL);
		if (t == (time_t)-1)
			return -1;
		ms = (int64_t)t * 1000 - wj_now_ms();
	}
	return ms < 0 ? 0 : ms > cap_ms ? cap_ms : ms;
}

/* The server's clock from its Date header (epoch ms), -1 when absent or unreadable. */
static int64_t date_ms(CURL *easy)
{
	const char *v = header(easy, "Date");
	time_t t = v ? curl_getdate(v, NULL) : (time_t)-1;
	return t == (time_t)-1 || t < 0 ? -1 : (int64_t)t * 1000;
}

/* False only when no request byte can have reached the server. */
static bool req_maybe_sent(struct http_req *r, CURLcode code, long status)
{
	if (status > 0 || r->sent > 0)
		return true;
	long reqsize = 0;
	if (curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &reqsize) == CURLE_OK && reqsize > 0)
		return true;
	switch (code) {
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
		return false;
	default:
		break;
	}
	/* The request is written only after the pre-transfer phase. */
	curl_off_t pre = 0;
	if (curl_easy_getinfo(r->easy, CURLINFO_PRETRANSFER_TIME_T, &pre) != CURLE_OK)
		return true;
	return pre > 0;
}

/* Collect the result of a request; r->easy must still be valid. */
static void req_result(struct http_req *r, CURLcode code, wj_http_resp_t *resp)
{
	memset(resp, 0, sizeof(*resp));
	long status = 0;
	if (r->easy)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	resp->status = status;
	resp->body = r->resp.data ? r->resp.data : "";
	resp->body_len = r->resp.len;
	resp->retry_after_ms = r->easy && status > 0 ? retry_after_ms(r->easy, r->h->max_retry_after_ms)
						     : -1;
	resp->date_ms = r->easy && status > 0 ? date_ms(r->easy) : -1;
	resp->curl_code = (int)code;
	resp->priv = r;
	if (code == CURLE_FILESIZE_EXCEEDED)
		r->too_big = true; /* announced by Content-Length */
	if (r->too_big) {
		/* Cut off: whatever arrived is not an answer. */
		snprintf(r->errbuf, sizeof(r->errbuf),
			 "answer larger than http.max_body (%llu bytes): cut off",
			 (unsigned long long)r->h->max_body);
		resp->status = 0;
		resp->body = "";
		resp->body_len = 0;
		resp->too_big = true;
		resp->error = r->errbuf;
	} else if (code == CURLE_OK)
		resp->error = "";
	else if (r->errbuf[0])
		resp->error = r->errbuf;
	else
		resp->error = curl_easy_strerror(code);
	resp->maybe_sent = r->start_ms ? r->too_big || req_maybe_sent(r, code, status) : false;
	resp->elapsed_ms = r->start_ms ? wj_mono_ms() - r->start_ms : 0;
}

static void start_queued(wj_http_t *h);

/* Detach a finished transfer, run its callback, free it. */
static void req_finish(struct http_req *r, CURLcode code)
{
	wj_http_t *h = r->h;
	wj_http_resp_t resp;
	req_result(r, code, &resp);
	if (r->start_ms) {
		list_remove(&h->active, r);
		curl_multi_remove_handle(h->multi, r->easy);
	} else {
		list_remove(&h->queue, r);
	}
	r->cb(&resp, r->arg);
	req_free(r);
}

static void check_multi_info(wj_http_t *h)
{
	CURLMsg *msg;
	int left;
	while (!h->closing && (msg = curl_multi_info_read(h->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct http_req *r = NULL;
		CURLcode code = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (!r)
			continue;
		req_finish(r, code);
		if (!h->closing)
			start_queued(h);
	}
}

static void on_timer(uv_timer_t *timer)
{
	wj_http_t *h = timer->data;
	int running;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi_info(h);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	wj_http_t *h = userp;
	if (h->closing)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&h->timer);
	else
		uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
	struct sock_ctx *s = (struct sock_ctx *)poll;
	wj_http_t *h = s->h;
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	curl_multi_socket_action(h->multi, s->fd, flags, &running);
	check_multi_info(h);
}

static void sock_close(wj_http_t *h, struct sock_ctx *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		h->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, handle_closed);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
	(void)easy;
	wj_http_t *h = userp;
	struct sock_ctx *s = socketp;
	if (action == CURL_POLL_REMOVE) {
		if (s) {
			sock_close(h, s);
			if (!h->closing)
				curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	if (h->closing)
		return 0;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		if (uv_poll_init_socket(h->loop, &s->poll, fd) < 0) {
			free(s);
			return -1;
		}
		s->h = h;
		s->fd = fd;
		s->poll.data = h;
		s->next = h->socks;
		if (h->socks)
			h->socks->prev = s;
		h->socks = s;
		h->open_handles++;
		curl_multi_assign(h->multi, fd, s);
	}
	int events = 0;
	if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	if (uv_poll_start(&s->poll, events, on_poll) < 0)
		return -1;
	return 0;
}

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *userdata)
{
	struct http_req *r = userdata;
	size_t n = size * nmemb, left = r->body_len - r->body_pos;
	if (n > left)
		n = left;
	if (n)
		memcpy(buf, r->body + r->body_pos, n);
	r->body_pos += n;
	return n;
}

static int seek_cb(void *userdata, curl_off_t offset, int origin)
{
	struct http_req *r = userdata;
	/* Rewinding is harmless only while nothing of the body has been handed out. */
	if (origin != SEEK_SET || offset != 0 || r->body_pos != 0)
		return CURL_SEEKFUNC_FAIL;
	return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct http_req *r = userdata;
	size_t n = size * nmemb;
	if (n > r->h->max_body || r->resp.len > r->h->max_body - n) {
		r->too_big = true; /* curl ends the transfer with CURLE_WRITE_ERROR */
		return 0;
	}
	if (wj_buf_append(&r->resp, ptr, n) < 0)
		return 0;
	return n;
}

/* Counts request bytes as curl hands them to the connection (needs CURLOPT_VERBOSE). */
static int debug_cb(CURL *easy, curl_infotype type, char *data, size_t size, void *userptr)
{
	(void)easy;
	(void)data;
	struct http_req *r = userptr;
	if (type == CURLINFO_HEADER_OUT || type == CURLINFO_DATA_OUT)
		r->sent += size;
	return 0;
}

static unsigned maxconnects(unsigned max_inflight)
{
	return max_inflight + SPARE_CONNS;
}

/* Start queued requests while there is room. A request that curl refuses completes
 * at once with an error. */
static void start_queued(wj_http_t *h)
{
	while (!h->closing && h->queue.head && h->active.n < h->max_inflight) {
		struct http_req *r = h->queue.head;
		list_remove(&h->queue, r);
		list_push(&h->active, r);
		r->start_ms = wj_mono_ms();
		if (!r->start_ms)
			r->start_ms = 1;
		CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
		if (mc != CURLM_OK) {
			list_remove(&h->active, r);
			wj_http_resp_t resp;
			snprintf(r->errbuf, sizeof(r->errbuf), "%s", curl_multi_strerror(mc));
			req_result(r, CURLE_OUT_OF_MEMORY, &resp);
			resp.maybe_sent = false;
			r->cb(&resp, r->arg);
			req_free(r);
		}
	}
}

uv_loop_t *wj_http_loop(const wj_http_t *h)
{
	return h->loop;
}

wj_http_t *wj_http_new(uv_loop_t *loop, const wj_http_opts_t *opts)
{
	wj_http_t *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->loop = loop;
	h->max_inflight = opts && opts->max_inflight ? opts->max_inflight : 1;
	if (opts && opts->ca_file && !(h->ca_file = strdup(opts->ca_file)))
		goto fail;
	h->user_agent = strdup(opts && opts->user_agent ? opts->user_agent : "wdt2jdy/" WJ_VERSION);
	h->max_body = opts && opts->max_body ? opts->max_body : WJ_HTTP_MAX_BODY;
	h->max_retry_after_ms = opts && opts->max_retry_after_ms && opts->max_retry_after_ms <= INT64_MAX / 2
					? (int64_t)opts->max_retry_after_ms
					: (int64_t)WJ_HTTP_MAX_RETRY_AFTER_MS;
	if (!h->user_agent)
		goto fail;
	h->multi = curl_multi_init();
	if (!h->multi)
		goto fail;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)maxconnects(h->max_inflight));
	if (uv_timer_init(loop, &h->timer) < 0)
		goto fail;
	h->timer.data = h;
	h->open_handles = 1;
	return h;
fail:
	if (h->multi)
		curl_multi_cleanup(h->multi);
	free(h->ca_file);
	free(h->user_agent);
	free(h);
	return NULL;
}

int wj_http_set_ca_file(wj_http_t *h, const char *ca_file)
{
	char *copy = NULL;
	if (!h || h->closing)
		return 0;
	if (ca_file && !(copy = strdup(ca_file)))
		return -ENOMEM;
	free(h->ca_file);
	h->ca_file = copy;
	return 0;
}

void wj_http_set_max_inflight(wj_http_t *h, unsigned max_inflight)
{
	if (!h || h->closing)
		return;
	h->max_inflight = max_inflight ? max_inflight : 1;
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)maxconnects(h->max_inflight));
	start_queued(h);
}

static int req_setup(wj_http_t *h, struct http_req *r, const wj_http_req_t *req)
{
	CURL *e = r->easy;
	uint64_t timeout = req->timeout_ms ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
	uint64_t conn_timeout = timeout < MAX_CONNECT_TIMEOUT_MS ? timeout : MAX_CONNECT_TIMEOUT_MS;
	bool has_expect = false;

	if (req->headers) {
		for (const char *const *p = req->headers; *p; p++) {
			struct curl_slist *l = curl_slist_append(r->headers, *p);
			if (!l)
				return -ENOMEM;
			r->headers = l;
			if (!strncasecmp(*p, "Expect:", 7))
				has_expect = true;
		}
	}
	if (!has_expect) {
		/* no 100-continue round trip before the body */
		struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
		if (!l)
			return -ENOMEM;
		r->headers = l;
	}

	CURLcode c = CURLE_OK;
#define SET(opt, val) \
	do { if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val); } while (0)
	SET(CURLOPT_URL, r->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->ca_file) {
		/* The file instead of the system's CAs, as documented: no CA directory either. */
		SET(CURLOPT_CAINFO, h->ca_file);
		SET(CURLOPT_CAPATH, (char *)NULL);
#if LIBCURL_VERSION_NUM >= 0x075700
		/* curl keeps a parsed CA store for a day by default: a renewed file would not be
		 * read. New connections are few (they are reused), so read it each time. */
		SET(CURLOPT_CA_CACHE_TIMEOUT, 0L);
#endif
	}
	SET(CURLOPT_USERAGENT, h->user_agent);
	SET(CURLOPT_HTTPHEADER, r->headers);
	SET(CURLOPT_TIMEOUT_MS, (long)timeout);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)conn_timeout);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	/* A Content-Length above the cap ends the transfer before any of it is read. */
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->max_body);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, r);
	SET(CURLOPT_DEBUGFUNCTION, debug_cb);
	SET(CURLOPT_DEBUGDATA, r);
	SET(CURLOPT_VERBOSE, 1L);
	SET(CURLOPT_ERRORBUFFER, r->errbuf);
	SET(CURLOPT_PRIVATE, r);
	if (!strcmp(req->method, "POST")) {
		/* The body goes through a read callback whose seek refuses to rewind once any of
		 * it was read: curl silently re-sends a request whose reused connection died
		 * without an answer, and a POST (a save) must never be repeated behind our back.
		 * Such a transfer fails instead, with maybe_sent set, and the caller decides. */
		SET(CURLOPT_POST, 1L);
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
		SET(CURLOPT_READFUNCTION, read_cb);
		SET(CURLOPT_READDATA, r);
		SET(CURLOPT_SEEKFUNCTION, seek_cb);
		SET(CURLOPT_SEEKDATA, r);
	} else {
		SET(CURLOPT_HTTPGET, 1L);
	}
#undef SET
	if (c == CURLE_OUT_OF_MEMORY)
		return -ENOMEM;
	return c == CURLE_OK ? 0 : -EINVAL;
}

int wj_http_request(wj_http_t *h, const wj_http_req_t *req, wj_http_cb cb, void *arg)
{
	if (!h || !req || !req->url || !req->method || !cb)
		return -EINVAL;
	if (strcmp(req->method, "GET") && strcmp(req->method, "POST"))
		return -EINVAL;
	if (!strcmp(req->method, "GET") && req->body_len)
		return -EINVAL;
	if (h->closing)
		return -ECANCELED;

	int ret = -ENOMEM;
	struct http_req *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->h = h;
	r->cb = cb;
	r->arg = arg;
	if (!(r->url = strdup(req->url)))
		goto fail;
	if (req->body_len) {
		if (!req->body) {
			ret = -EINVAL;
			goto fail;
		}
		if (!(r->body = malloc(req->body_len)))
			goto fail;
		memcpy(r->body, req->body, req->body_len);
		r->body_len = req->body_len;
	}
	if (!(r->easy = curl_easy_init()))
		goto fail;
	if ((ret = req_setup(h, r, req)) < 0)
		goto fail;
	list_push(&h->queue, r);
	start_queued(h);
	return 0;
fail:
	req_free(r);
	return ret;
}

char *wj_http_take_body(const wj_http_resp_t *resp)
{
	struct http_req *r = resp ? resp->priv : NULL;
	if (!r || resp->too_big || !r->resp.data)
		return NULL;
	char *body = r->resp.data; /* wj_buf_t keeps its data NUL-terminated */
	r->resp = (wj_buf_t){0};
	return body;
}

unsigned wj_http_inflight(const wj_http_t *h)
{
	return h ? h->active.n : 0;
}

unsigned wj_http_queued(const wj_http_t *h)
{
	return h ? h->queue.n : 0;
}

void wj_http_free(wj_http_t *h)
{
	if (!h || h->closing)
		return;
	h->closing = true;
	uv_timer_stop(&h->timer);
	/* Queued first (they never started), then those in flight, oldest first. */
	while (h->queue.head)
		req_finish(h->queue.head, CURLE_ABORTED_BY_CALLBACK);
	while (h->active.head)
		req_finish(h->active.head, CURLE_ABORTED_BY_CALLBACK);
	curl_multi_cleanup(h->multi);
	h->multi = NULL;
	while (h->socks)
		sock_close(h, h->socks);
	uv_close((uv_handle_t *)&h->timer, handle_closed);
}

int wj_http_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void wj_http_global_cleanup(void)
{
	curl_global_cleanup();
}

char *wj_urlencode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	if (!s)
		return NULL;
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1);
	if (!out)
		return NULL;
	char *o = out;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char ch = *p;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	return out;
}
