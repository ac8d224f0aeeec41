/* Unit tests for lib/http against an in-process HTTP server on 127.0.0.1:
 * concurrency cap and connection reuse, timeouts, refused and cut connections,
 * large bodies, Retry-After, headers, runtime cap changes, abort on free. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <uv.h>

#include "lib/http.h"
#include "lib/util.h"

#define BIG_LEN (10u * 1024 * 1024)
#define CUT_AFTER 5000

/* ---- in-process server ---- */

static struct MHD_Daemon *g_mhd;
static unsigned g_port;
static char *g_big; /* BIG_LEN bytes of a fixed pattern */

static atomic_int g_active, g_max_active, g_conns, g_reqs;
static atomic_bool g_echo_expect; /* /echo saw an Expect header */

static pthread_mutex_t g_seen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char method[16];
	char x_test[64];
	char content_type[64];
	char user_agent[64];
	bool has_expect;
	char body[256];
	size_t body_len;
} g_seen;

struct conn_ctx {
	wj_buf_t body;
};

static void pattern_fill(char *p, size_t n, uint32_t seed)
{
	uint32_t x = seed;
	for (size_t i = 0; i < n; i++) {
		x = x * 1664525u + 1013904223u;
		p[i] = (char)(x >> 24);
	}
}

static uint64_t fnv1a(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ull;
	}
	return h;
}

static void server_reset(void)
{
	atomic_store(&g_active, 0);
	atomic_store(&g_max_active, 0);
	atomic_store(&g_conns, 0);
	atomic_store(&g_reqs, 0);
}

static unsigned query_uint(struct MHD_Connection *c, const char *key, unsigned dflt)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, key);
	return v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

static void copy_header(struct MHD_Connection *c, const char *name, char *out, size_t size)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
	snprintf(out, size, "%s", v ? v : "");
}

static ssize_t cut_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)cls;
	if (pos >= CUT_AFTER)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	size_t n = CUT_AFTER - (size_t)pos;
	if (n > max)
		n = max;
	memset(buf, 'x', n);
	return (ssize_t)n;
}

static ssize_t big_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)cls;
	if (pos >= BIG_LEN)
		return MHD_CONTENT_READER_END_OF_STREAM;
	size_t n = BIG_LEN - (size_t)pos;
	if (n > max)
		n = max;
	memset(buf, 'y', n);
	return (ssize_t)n;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, struct MHD_Response *r)
{
	if (!r)
		return MHD_NO;
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static struct MHD_Response *text(const char *s)
{
	return MHD_create_response_from_buffer(strlen(s), (void *)s, MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
	const char *method, const char *version, const char *upload_data,
	size_t *upload_data_size, void **con_cls)
{
	(void)cls;
	(void)version;
	struct conn_ctx *ctx = *con_cls;
	if (!ctx) {
		ctx = calloc(1, sizeof(*ctx));
		if (!ctx)
			return MHD_NO;
		*con_cls = ctx;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (wj_buf_append(&ctx->body, upload_data, *upload_data_size) < 0)
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	atomic_fetch_add(&g_reqs, 1);

	if (!strcmp(url, "/n")) {
		int now = atomic_fetch_add(&g_active, 1) + 1;
		int prev = atomic_load(&g_max_active);
		while (now > prev && !atomic_compare_exchange_weak(&g_max_active, &prev, now))
			;
		usleep(query_uint(c, "ms", 0) * 1000);
		atomic_fetch_sub(&g_active, 1);
		char buf[64];
		snprintf(buf, sizeof(buf), "resp-%u", query_uint(c, "i", 0));
		return reply(c, MHD_HTTP_OK, text(buf));
	}
	if (!strcmp(url, "/sleep")) {
		usleep(query_uint(c, "ms", 0) * 1000);
		return reply(c, MHD_HTTP_OK, text("slept"));
	}
	if (!strcmp(url, "/echo")) {
		struct MHD_Response *r;
		if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expect"))
			atomic_store(&g_echo_expect, true);
		if (ctx->body.len) {
			r = MHD_create_response_from_buffer(ctx->body.len, ctx->body.data,
				MHD_RESPMEM_MUST_FREE);
			if (r)
				ctx->body.data = NULL; /* now owned by the response */
			ctx->body.len = ctx->body.cap = 0;
		} else {
			r = text("");
		}
		return reply(c, MHD_HTTP_OK, r);
	}
	if (!strcmp(url, "/big"))
		return reply(c, MHD_HTTP_OK,
			MHD_create_response_from_buffer(BIG_LEN, g_big, MHD_RESPMEM_PERSISTENT));
	if (!strcmp(url, "/retry")) {
		struct MHD_Response *r = text("busy");
		const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "v");
		if (r && v)
			MHD_add_response_header(r, "Retry-After", v);
		return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, r);
	}
	if (!strcmp(url, "/hdr")) {
		pthread_mutex_lock(&g_seen_lock);
		snprintf(g_seen.method, sizeof(g_seen.method), "%s", method);
		copy_header(c, "X-Test", g_seen.x_test, sizeof(g_seen.x_test));
		copy_header(c, "Content-Type", g_seen.content_type, sizeof(g_seen.content_type));
		copy_header(c, "User-Agent", g_seen.user_agent, sizeof(g_seen.user_agent));
		g_seen.has_expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expect") != NULL;
		g_seen.body_len = ctx->body.len;
		if (ctx->body.len < sizeof(g_seen.body))
			memcpy(g_seen.body, ctx->body.data ? ctx->body.data : "", ctx->body.len);
		pthread_mutex_unlock(&g_seen_lock);
		return reply(c, MHD_HTTP_CREATED, text("got"));
	}
	if (!strcmp(url, "/bigchunked")) /* no Content-Length: the size shows only while reading */
		return reply(c, MHD_HTTP_OK,
			MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, big_reader,
							  NULL, NULL));
	if (!strcmp(url, "/cut"))
		return reply(c, MHD_HTTP_OK,
			MHD_create_response_from_callback(100000, 1024, cut_reader, NULL, NULL));
	return reply(c, MHD_HTTP_NOT_FOUND, text("not found"));
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
	enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct conn_ctx *ctx = *con_cls;
	if (ctx) {
		wj_buf_free(&ctx->body);
		free(ctx);
		*con_cls = NULL;
	}
}

static void conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
	enum MHD_ConnectionNotificationCode toe)
{
	(void)cls;
	(void)c;
	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		atomic_fetch_add(&g_conns, 1);
}

static int server_start(void)
{
	g_big = malloc(BIG_LEN);
	if (!g_big)
		return -1;
	pattern_fill(g_big, BIG_LEN, 42);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
		0, NULL, NULL, handler, NULL,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
		MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
		MHD_OPTION_NOTIFY_CONNECTION, conn_notify, NULL,
		MHD_OPTION_END);
	if (!g_mhd)
		return -1;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(g_mhd, MHD_DAEMON_INFO_BIND_PORT);
	if (!info || !info->port)
		return -1;
	g_port = info->port;
	return 0;
}

static void server_stop(void)
{
	if (g_mhd)
		MHD_stop_daemon(g_mhd);
	g_mhd = NULL;
	free(g_big);
	g_big = NULL;
}

/* A port with nothing listening: bind an ephemeral port, then close it. */
static unsigned dead_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/* A raw server that accepts one connection, reads the request head, closes. */
struct raw_server {
	int lfd;
	unsigned port;
	pthread_t thread;
	bool got_request;
};

static void *raw_server_main(void *arg)
{
	struct raw_server *rs = arg;
	struct pollfd pfd = { .fd = rs->lfd, .events = POLLIN };
	if (poll(&pfd, 1, 5000) != 1)
		return NULL;
	int fd = accept(rs->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	char buf[4096];
	size_t have = 0;
	uint64_t deadline = wj_mono_ms() + 5000;
	while (have < sizeof(buf) - 1 && wj_mono_ms() < deadline) {
		struct pollfd cp = { .fd = fd, .events = POLLIN };
		if (poll(&cp, 1, 100) != 1)
			continue;
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		if (strstr(buf, "\r\n\r\n")) {
			rs->got_request = true;
			break;
		}
	}
	close(fd);
	return NULL;
}

static void raw_server_start(struct raw_server *rs)
{
	memset(rs, 0, sizeof(*rs));
	rs->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(rs->lfd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	assert_int_equal(bind(rs->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(rs->lfd, 4), 0);
	assert_int_equal(getsockname(rs->lfd, (struct sockaddr *)&sa, &len), 0);
	rs->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&rs->thread, NULL, raw_server_main, rs), 0);
}

static void raw_server_stop(struct raw_server *rs)
{
	pthread_join(rs->thread, NULL);
	close(rs->lfd);
}

/* ---- client side helpers ---- */

static bool g_in_request; /* set around wj_http_request to catch synchronous callbacks */

struct result {
	unsigned calls;
	bool sync;
	long status;
	int curl_code;
	bool maybe_sent;
	int64_t retry_after_ms;
	int64_t date_ms;
	bool too_big;
	bool take;                /* keep the body with wj_http_take_body, not a copy */
	uint64_t elapsed_ms;
	char *body;
	size_t body_len;
	char error[CURL_ERROR_SIZE];
	unsigned *done;           /* incremented per callback */
	wj_http_t *h;             /* for in-callback checks */
	unsigned *max_inflight_seen;
	bool free_client;         /* call wj_http_free from this callback */
	int request_in_cb;        /* result of a wj_http_request made from the callback */
};

static void on_resp(const wj_http_resp_t *resp, void *arg)
{
	struct result *r = arg;
	r->calls++;
	if (g_in_request)
		r->sync = true;
	r->status = resp->status;
	r->curl_code = resp->curl_code;
	r->maybe_sent = resp->maybe_sent;
	r->retry_after_ms = resp->retry_after_ms;
	r->date_ms = resp->date_ms;
	r->too_big = resp->too_big;
	r->elapsed_ms = resp->elapsed_ms;
	snprintf(r->error, sizeof(r->error), "%s", resp->error);
	free(r->body);
	r->body_len = resp->body_len;
	if (r->take) {
		const char *seen = resp->body;
		r->body = wj_http_take_body(resp);
		assert_non_null(r->body);
		assert_ptr_equal(r->body, seen); /* the buffer itself, not a copy */
		assert_null(wj_http_take_body(resp)); /* taken once */
	} else {
		r->body = malloc(resp->body_len + 1);
		assert_non_null(r->body);
		memcpy(r->body, resp->body, resp->body_len + 1);
	}
	if (r->h && r->max_inflight_seen && wj_http_inflight(r->h) + 1 > *r->max_inflight_seen)
		*r->max_inflight_seen = wj_http_inflight(r->h) + 1; /* +1: this one just finished */
	if (r->h) {
		wj_http_req_t again = { .method = "GET", .url = "http://127.0.0.1:1/" };
		if (r->free_client)
			wj_http_free(r->h);
		if (r->curl_code == CURLE_ABORTED_BY_CALLBACK)
			r->request_in_cb = wj_http_request(r->h, &again, on_resp, NULL);
	}
	if (r->done)
		(*r->done)++;
}

static int submit(wj_http_t *h, const char *method, const char *url, const char *const *headers,
	const char *body, size_t body_len, uint64_t timeout_ms, struct result *r)
{
	wj_http_req_t req = {
		.method = method, .url = url, .headers = headers,
		.body = body, .body_len = body_len, .timeout_ms = timeout_ms,
	};
	g_in_request = true;
	int ret = wj_http_request(h, &req, on_resp, r);
	g_in_request = false;
	return ret;
}

struct run_ctx {
	const unsigned *done;
	unsigned want;
	bool expired;
	int closed;
};

static void on_expire(uv_timer_t *t)
{
	struct run_ctx *rc = t->data;
	rc->expired = true;
	uv_stop(t->loop);
}

/* Before the loop would block: stop once the wanted number of callbacks ran. */
static void on_prepare(uv_prepare_t *p)
{
	struct run_ctx *rc = p->data;
	if (*rc->done >= rc->want)
		uv_stop(p->loop);
}

static void on_run_handle_closed(uv_handle_t *handle)
{
	struct run_ctx *rc = handle->data;
	rc->closed++;
}

/* Run the loop until *done reaches want or timeout_ms passes. */
static bool run_until(uv_loop_t *loop, const unsigned *done, unsigned want, uint64_t timeout_ms)
{
	struct run_ctx rc = { .done = done, .want = want };
	uv_timer_t t;
	uv_prepare_t p;
	assert_int_equal(uv_timer_init(loop, &t), 0);
	assert_int_equal(uv_prepare_init(loop, &p), 0);
	t.data = p.data = &rc;
	assert_int_equal(uv_timer_start(&t, on_expire, timeout_ms, 0), 0);
	assert_int_equal(uv_prepare_start(&p, on_prepare), 0);
	while (*done < want && !rc.expired)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, on_run_handle_closed);
	uv_close((uv_handle_t *)&p, on_run_handle_closed);
	for (int i = 0; i < 100 && rc.closed < 2; i++)
		uv_run(loop, UV_RUN_NOWAIT);
	assert_int_equal(rc.closed, 2);
	return *done >= want;
}

/* Free the client and check every uv handle gets closed. */
static void client_free(uv_loop_t *loop, wj_http_t *h)
{
	if (h)
		wj_http_free(h);
	for (int i = 0; i < 1000 && uv_loop_alive(loop); i++)
		uv_run(loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(loop), 0);
}

static void result_clear(struct result *r)
{
	free(r->body);
	r->body = NULL;
}

static wj_http_t *client_new_opts(uv_loop_t *loop, const wj_http_opts_t *opts)
{
	assert_int_equal(uv_loop_init(loop), 0);
	wj_http_t *h = wj_http_new(loop, opts);
	assert_non_null(h);
	return h;
}

static wj_http_t *client_new(uv_loop_t *loop, unsigned max_inflight)
{
	wj_http_opts_t opts = { .max_inflight = max_inflight };
	wj_http_t *h = client_new_opts(loop, &opts);
	assert_non_null(h);
	return h;
}

static void url_of(char *buf, size_t size, const char *path)
{
	snprintf(buf, size, "http://127.0.0.1:%u%s", g_port, path);
}

/* ---- tests ---- */

static void test_many_capped(void **state)
{
	(void)state;
	enum { N = 1000, CAP = 16 };
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, CAP);
	struct result *res = calloc(N, sizeof(*res));
	assert_non_null(res);
	unsigned done = 0, seen = 0;
	server_reset();
	for (unsigned i = 0; i < N; i++) {
		char url[128], path[64];
		snprintf(path, sizeof(path), "/n?i=%u&ms=1", i);
		url_of(url, sizeof(url), path);
		res[i].done = &done;
		res[i].h = h;
		res[i].max_inflight_seen = &seen;
		assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 10000, &res[i]), 0);
	}
	assert_int_equal(wj_http_inflight(h), CAP);
	assert_int_equal(wj_http_queued(h), N - CAP);
	assert_true(run_until(&loop, &done, N, 30000));
	for (unsigned i = 0; i < N; i++) {
		char want[64];
		snprintf(want, sizeof(want), "resp-%u", i);
		assert_int_equal(res[i].calls, 1);
		assert_false(res[i].sync);
		assert_int_equal(res[i].curl_code, CURLE_OK);
		assert_int_equal(res[i].status, 200);
		assert_true(res[i].maybe_sent);
		assert_int_equal(res[i].retry_after_ms, -1);
		assert_string_equal(res[i].body, want);
		assert_string_equal(res[i].error, "");
		result_clear(&res[i]);
	}
	int max_active = atomic_load(&g_max_active);
	int conns = atomic_load(&g_conns);
	assert_int_equal(atomic_load(&g_reqs), N);
	assert_true(max_active <= CAP);
	assert_true(max_active >= 2);
	assert_true(seen <= CAP);
	/* connections are kept and reused: far fewer than requests */
	assert_true(conns >= 2);
	assert_true(conns <= 3 * CAP);
	assert_int_equal(wj_http_inflight(h), 0);
	assert_int_equal(wj_http_queued(h), 0);
	client_free(&loop, h);
	free(res);
}

static void test_timeout(void **state)
{
	(void)state;
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, 4);
	struct result r = { 0 };
	unsigned done = 0;
	char url[128];
	r.done = &done;
	url_of(url, sizeof(url), "/sleep?ms=1500");
	assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 200, &r), 0);
	assert_true(run_until(&loop, &done, 1, 5000));
	assert_int_equal(r.calls, 1);
	assert_false(r.sync);
	assert_int_equal(r.curl_code, CURLE_OPERATION_TIMEDOUT);
	assert_int_equal(r.status, 0);
	assert_true(r.maybe_sent);
	assert_true(r.elapsed_ms >= 150);
	assert_true(r.elapsed_ms < 1500);
	assert_true(strlen(r.error) > 0);
	result_clear(&r);
	client_free(&loop, h);
}

static void test_refused(void **state)
{
	(void)state;
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, 4);
	struct result r = { 0 };
	unsigned done = 0;
	char url[128];
	r.done = &done;
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", dead_port());
	assert_int_equal(submit(h, "POST", url, NULL, "{}", 2, 2000, &r), 0);
	assert_true(run_until(&loop, &done, 1, 5000));
	assert_int_equal(r.calls, 1);
	assert_false(r.sync);
	assert_int_equal(r.status, 0);
	assert_int_equal(r.curl_code, CURLE_COULDNT_CONNECT);
	assert_false(r.maybe_sent);
	assert_true(strlen(r.error) > 0);
	assert_int_equal(r.retry_after_ms, -1);
	result_clear(&r);
	client_free(&loop, h);
}

static void test_cut(void **state)
{
	(void)state;
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, 4);
	struct result r1 = { 0 }, r2 = { 0 };
	unsigned done = 0;
	char url[128];
	r1.done = r2.done = &done;

	/* the response stops after a few KB of a declared 100 KB */
	url_of(url, sizeof(url), "/cut");
	assert_int_equal(submit(h, "POST", url, NULL, "abc", 3, 5000, &r1), 0);

	/* the server reads the request and closes without answering */
	struct raw_server rs;
	raw_server_start(&rs);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", rs.port);
	assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 5000, &r2), 0);

	assert_true(run_until(&loop, &done, 2, 8000));
	raw_server_stop(&rs);
	assert_true(rs.got_request);

	assert_int_equal(r1.calls, 1);
	assert_int_not_equal(r1.curl_code, CURLE_OK);
	assert_true(r1.maybe_sent);
	assert_true(r1.body_len <= CUT_AFTER);

	assert_int_equal(r2.calls, 1);
	assert_int_equal(r2.curl_code, CURLE_GOT_NOTHING);
	assert_int_equal(r2.status, 0);
	assert_true(r2.maybe_sent);
	result_clear(&r1);
	result_clear(&r2);
	client_free(&loop, h);
}

static void test_big_bodies(void **state)
{
	(void)state;
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, 4);
	struct result r1 = { 0 }, r2 = { 0 };
	unsigned done = 0;
	char url[128];
	r1.done = r2.done = &done;
	char *up = malloc(BIG_LEN);
	assert_non_null(up);
	pattern_fill(up, BIG_LEN, 7);

	url_of(url, sizeof(url), "/echo");
	assert_int_equal(submit(h, "POST", url, NULL, up, BIG_LEN, 20000, &r1), 0);
	url_of(url, sizeof(url), "/big");
	assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 20000, &r2), 0);
	assert_true(run_until(&loop, &done, 2, 30000));

	assert_int_equal(r1.calls, 1);
	assert_int_equal(r1.curl_code, CURLE_OK);
	assert_int_equal(r1.status, 200);
	assert_int_equal(r1.body_len, BIG_LEN);
	assert_true(fnv1a(r1.body, r1.body_len) == fnv1a(up, BIG_LEN));
	assert_memory_equal(r1.body, up, BIG_LEN);
	assert_false(atomic_load(&g_echo_expect)); /* no 100-continue wait before the body */

	assert_int_equal(r2.calls, 1);
	assert_int_equal(r2.curl_code, CURLE_OK);
	assert_int_equal(r2.status, 200);
	assert_int_equal(r2.body_len, BIG_LEN);
	assert_true(fnv1a(r2.body, r2.body_len) == fnv1a(g_big, BIG_LEN));
	assert_int_equal(r2.body[BIG_LEN], '\0');
	result_clear(&r1);
	result_clear(&r2);
	free(up);
	client_free(&loop, h);
}

static void test_retry_after(void **state)
{
	(void)state;
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, 4);
	struct result r[3] = { { 0 } };
	unsigned done = 0;
	char url[256], date[64], path[192];
	for (int i = 0; i < 3; i++)
		r[i].done = &done;

	url_of(url, sizeof(url), "/retry?v=7");
	assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 5000, &r[0]), 0);

	time_t when = time(NULL) + 10;
	struct tm tm;
	gmtime_r(&when, &tm);
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	snprintf(date, sizeof(date), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
		tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	char *enc = wj_urlencode(date);
	assert_non_null(enc);
	snprintf(path, sizeof(path), "/retry?v=%s", enc);
	free(enc);
	url_of(url, sizeof(url), path);
	assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 5000, &r[1]), 0);

	url_of(url, sizeof(url), "/retry");
	assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 5000, &r[2]), 0);

	assert_true(run_until(&loop, &done, 3, 10000));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_int_equal(r[i].curl_code, CURLE_OK);
		assert_int_equal(r[i].status, 503);
		assert_string_equal(r[i].body, "busy");
	}
	assert_int_equal(r[0].retry_after_ms, 7000);
	assert_true(r[1].retry_after_ms >= 8000);
	assert_true(r[1].retry_after_ms <= 10500);
	assert_int_equal(r[2].retry_after_ms, -1);
	for (int i = 0; i < 3; i++)
		result_clear(&r[i]);
	client_free(&loop, h);
}

/* An answer above max_body is cut off with a clear error, whether its size is announced
 * (Content-Length) or shows only while reading (chunked); one below it is whole, and can be
 * kept without a copy. */
static void test_body_cap(void **state)
{
	(void)state;
	uv_loop_t loop;
	wj_http_opts_t o = { .max_inflight = 4, .max_body = 1u << 20 };
	wj_http_t *h = client_new_opts(&loop, &o);
	struct result r[3] = { { 0 } };
	unsigned done = 0;
	char url[128];
	for (int i = 0; i < 3; i++)
		r[i].done = &done;
	r[2].take = true;
	url_of(url, sizeof(url), "/big");
	assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 20000, &r[0]), 0);
	url_of(url, sizeof(url), "/bigchunked");
	assert_int_equal(submit(h, "POST", url, NULL, "{}", 2, 20000, &r[1]), 0);
	url_of(url, sizeof(url), "/n?i=5");
	assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 20000, &r[2]), 0);
	assert_true(run_until(&loop, &done, 3, 30000));
	for (int i = 0; i < 2; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_true(r[i].too_big);
		assert_int_equal(r[i].status, 0);
		assert_int_equal(r[i].body_len, 0);
		assert_true(r[i].maybe_sent); /* the server had the request */
		assert_non_null(strstr(r[i].error, "larger than http.max_body (1048576 bytes)"));
	}
	assert_false(r[2].too_big);
	assert_int_equal(r[2].status, 200);
	assert_string_equal(r[2].body, "resp-5");
	for (int i = 0; i < 3; i++)
		result_clear(&r[i]);
	client_free(&loop, h);
}

/* Retry-After is read without overflow and never above the cap (default 1 h); the Date
 * header gives the server's clock. */
static void test_retry_after_cap(void **state)
{
	(void)state;
	uv_loop_t loop[2];
	wj_http_opts_t o = { .max_inflight = 4, .max_retry_after_ms = 60000 };
	wj_http_t *h[2] = { client_new(&loop[0], 4), client_new_opts(&loop[1], &o) };
	static const char *const v[] = { "99999999999999999999", "3600000000", "5",
					 "Fri, 31 Dec 9999 23:59:59 GMT" };
	for (int c = 0; c < 2; c++) {
		struct result r[4] = { { 0 } };
		unsigned done = 0;
		char url[256], path[128];
		for (int i = 0; i < 4; i++) {
			r[i].done = &done;
			char *enc = wj_urlencode(v[i]);
			snprintf(path, sizeof(path), "/retry?v=%s", enc);
			free(enc);
			url_of(url, sizeof(url), path);
			assert_int_equal(submit(h[c], "GET", url, NULL, NULL, 0, 5000, &r[i]), 0);
		}
		assert_true(run_until(&loop[c], &done, 4, 10000));
		int64_t cap = c == 0 ? 3600000 : 60000;
		assert_int_equal(r[0].retry_after_ms, cap);
		assert_int_equal(r[1].retry_after_ms, cap);
		assert_int_equal(r[2].retry_after_ms, 5000);
		assert_int_equal(r[3].retry_after_ms, cap);
		for (int i = 0; i < 4; i++) {
			assert_true(r[i].date_ms > 0);
			assert_true(llabs(r[i].date_ms - wj_now_ms()) < 10000);
			result_clear(&r[i]);
		}
		client_free(&loop[c], h[c]);
	}
}

static void test_post_headers(void **state)
{
	(void)state;
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, 4);
	struct result r = { 0 };
	unsigned done = 0;
	char url[128];
	r.done = &done;
	const char *const headers[] = {
		"Content-Type: application/json",
		"X-Test: abc 123",
		NULL,
	};
	static const char body[] = "{\"a\":1,\"b\":\"x\"}";
	url_of(url, sizeof(url), "/hdr");
	pthread_mutex_lock(&g_seen_lock);
	memset(&g_seen, 0, sizeof(g_seen));
	pthread_mutex_unlock(&g_seen_lock);
	assert_int_equal(submit(h, "POST", url, headers, body, strlen(body), 5000, &r), 0);
	assert_true(run_until(&loop, &done, 1, 5000));
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.curl_code, CURLE_OK);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body, "got");
	assert_true(r.maybe_sent);
	pthread_mutex_lock(&g_seen_lock);
	assert_string_equal(g_seen.method, "POST");
	assert_string_equal(g_seen.x_test, "abc 123");
	assert_string_equal(g_seen.content_type, "application/json");
	assert_true(!strncmp(g_seen.user_agent, "wdt2jdy/", 8));
	assert_false(g_seen.has_expect);
	assert_int_equal(g_seen.body_len, strlen(body));
	assert_memory_equal(g_seen.body, body, strlen(body));
	pthread_mutex_unlock(&g_seen_lock);
	result_clear(&r);
	client_free(&loop, h);
}

static void submit_slow(wj_http_t *h, struct result *res, unsigned n, unsigned *done, unsigned ms)
{
	for (unsigned i = 0; i < n; i++) {
		char url[128], path[64];
		snprintf(path, sizeof(path), "/n?i=%u&ms=%u", i, ms);
		url_of(url, sizeof(url), path);
		memset(&res[i], 0, sizeof(res[i]));
		res[i].done = done;
		assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 10000, &res[i]), 0);
	}
}

static void check_all_ok(struct result *res, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char want[64];
		snprintf(want, sizeof(want), "resp-%u", i);
		assert_int_equal(res[i].calls, 1);
		assert_int_equal(res[i].curl_code, CURLE_OK);
		assert_string_equal(res[i].body, want);
		result_clear(&res[i]);
	}
}

static void test_set_max_inflight(void **state)
{
	(void)state;
	enum { N = 30 };
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, 2);
	struct result res[N];
	unsigned done = 0;

	/* cap 2 */
	server_reset();
	submit_slow(h, res, 12, &done, 20);
	assert_true(run_until(&loop, &done, 12, 10000));
	check_all_ok(res, 12);
	assert_int_equal(atomic_load(&g_max_active), 2);

	/* raised to 6 before submitting */
	server_reset();
	done = 0;
	wj_http_set_max_inflight(h, 6);
	submit_slow(h, res, N, &done, 20);
	assert_int_equal(wj_http_inflight(h), 6);
	assert_true(run_until(&loop, &done, N, 10000));
	check_all_ok(res, N);
	assert_true(atomic_load(&g_max_active) > 2);
	assert_true(atomic_load(&g_max_active) <= 6);

	/* lowered to 1 and raised to 5 while requests are queued */
	server_reset();
	done = 0;
	submit_slow(h, res, 12, &done, 30);
	wj_http_set_max_inflight(h, 1);
	assert_int_equal(wj_http_inflight(h), 6); /* already started ones keep running */
	assert_true(run_until(&loop, &done, 6, 10000));
	assert_int_equal(wj_http_inflight(h), 1);
	assert_int_equal(wj_http_queued(h), 12 - done - 1);
	wj_http_set_max_inflight(h, 5);
	assert_int_equal(wj_http_inflight(h), 5);
	assert_true(run_until(&loop, &done, 12, 10000));
	check_all_ok(res, 12);
	assert_true(atomic_load(&g_max_active) <= 6);
	client_free(&loop, h);
}

static void on_free_timer(uv_timer_t *t)
{
	wj_http_free(t->data);
	uv_close((uv_handle_t *)t, NULL);
}

static void test_free_pending(void **state)
{
	(void)state;
	enum { N = 8 };
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, 2);
	struct result res[N];
	unsigned done = 0;
	for (unsigned i = 0; i < N; i++) {
		char url[128];
		url_of(url, sizeof(url), "/sleep?ms=400");
		memset(&res[i], 0, sizeof(res[i]));
		res[i].done = &done;
		res[i].h = h;
		assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 5000, &res[i]), 0);
	}
	uv_timer_t t;
	assert_int_equal(uv_timer_init(&loop, &t), 0);
	t.data = h;
	assert_int_equal(uv_timer_start(&t, on_free_timer, 150, 0), 0);
	assert_true(run_until(&loop, &done, N, 5000));
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(res[i].calls, 1);
		assert_false(res[i].sync);
		assert_int_equal(res[i].curl_code, CURLE_ABORTED_BY_CALLBACK);
		assert_int_equal(res[i].status, 0);
		assert_int_equal(res[i].request_in_cb, -ECANCELED);
		/* the first two were in flight and had sent their request */
		if (i < 2)
			assert_true(res[i].maybe_sent);
		else
			assert_false(res[i].maybe_sent);
		result_clear(&res[i]);
	}
	client_free(&loop, NULL);
}

static void test_free_in_callback(void **state)
{
	(void)state;
	enum { N = 4 };
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, 1);
	struct result res[N];
	unsigned done = 0;
	for (unsigned i = 0; i < N; i++) {
		char url[128];
		url_of(url, sizeof(url), "/n?i=0");
		memset(&res[i], 0, sizeof(res[i]));
		res[i].done = &done;
		res[i].h = h;
		res[i].free_client = i == 0;
		assert_int_equal(submit(h, "GET", url, NULL, NULL, 0, 5000, &res[i]), 0);
	}
	assert_true(run_until(&loop, &done, N, 5000));
	assert_int_equal(res[0].curl_code, CURLE_OK);
	assert_string_equal(res[0].body, "resp-0");
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(res[i].calls, 1);
		if (i > 0) {
			assert_int_equal(res[i].curl_code, CURLE_ABORTED_BY_CALLBACK);
			assert_false(res[i].maybe_sent);
		}
		result_clear(&res[i]);
	}
	client_free(&loop, NULL);
}

static void test_invalid(void **state)
{
	(void)state;
	uv_loop_t loop;
	wj_http_t *h = client_new(&loop, 1);
	struct result r = { 0 };
	unsigned done = 0;
	r.done = &done;
	wj_http_req_t req = { .method = "PUT", .url = "http://127.0.0.1:1/" };
	assert_int_equal(wj_http_request(h, &req, on_resp, &r), -EINVAL);
	req.method = "GET";
	req.url = NULL;
	assert_int_equal(wj_http_request(h, &req, on_resp, &r), -EINVAL);
	req.url = "http://127.0.0.1:1/";
	assert_int_equal(wj_http_request(h, &req, NULL, &r), -EINVAL);
	assert_int_equal(wj_http_queued(h) + wj_http_inflight(h), 0);
	/* only http and https are allowed */
	assert_int_equal(submit(h, "GET", "file:///etc/passwd", NULL, NULL, 0, 2000, &r), 0);
	assert_true(run_until(&loop, &done, 1, 5000));
	assert_int_equal(r.calls, 1);
	assert_false(r.sync);
	assert_int_equal(r.curl_code, CURLE_UNSUPPORTED_PROTOCOL);
	assert_false(r.maybe_sent);
	assert_int_equal(r.body_len, 0);
	result_clear(&r);
	client_free(&loop, h);
}

static void test_urlencode(void **state)
{
	(void)state;
	char *s = wj_urlencode("a b/é~");
	assert_string_equal(s, "a%20b%2F%C3%A9~");
	free(s);
	s = wj_urlencode("AZaz09-._~!*'();:@&=+$,?#[]%");
	assert_string_equal(s, "AZaz09-._~%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%3F%23%5B%5D%25");
	free(s);
	s = wj_urlencode("");
	assert_string_equal(s, "");
	free(s);
	assert_null(wj_urlencode(NULL));
}

static int group_setup(void **state)
{
	(void)state;
	return 0;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (wj_http_global_init() < 0)
		return 1;
	if (server_start() < 0) {
		fprintf(stderr, "cannot start the test server on 127.0.0.1\n");
		server_stop();
		wj_http_global_cleanup();
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urlencode),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_many_capped),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_big_bodies),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_retry_after_cap),
		cmocka_unit_test(test_body_cap),
		cmocka_unit_test(test_post_headers),
		cmocka_unit_test(test_set_max_inflight),
		cmocka_unit_test(test_free_pending),
		cmocka_unit_test(test_free_in_callback),
	};
	int rc = cmocka_run_group_tests(tests, group_setup, NULL);
	server_stop();
	wj_http_global_cleanup();
	return rc;
}
