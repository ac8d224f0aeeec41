/* Fake WDT server for tests, the demo and benchmarks: the stock-in order query over the Qimen
 * router (POST /router/qm) and the native openapi2 endpoint, with seeded generated orders,
 * a per-minute rate limit, live changes, fault injection and admin endpoints under /admin/.
 * See test/fake/README.md for the flags and the admin interface. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>

#include "lib/util.h"

#define MAX_BODY (256u << 20)
#define QIMEN_METHOD "wdt.stockin.order.query"
#define QIMEN_SKEW 600
#define OPENAPI2_SKEW 300
#define MAX_SPAN (30 * 86400)
#define HEX_MARKER "@@hex:"
#define RAW_MARKER "@@raw:"

/* When total_count is in an answer (WDT's docs: "returned when page_no = 0"). */
enum total_mode { TC_PAGE0, TC_ALWAYS, TC_ZERO, TC_NULL, TC_NONE };
static const char *const total_names[] = {"page0", "always", "zero", "null", "none"};

enum bad_kind { BAD_NONE, BAD_MATERIAL, BAD_QTY, BAD_STORE, BAD_EMPTY };
static const char *const bad_names[] = {"", "unknown_material", "zero_qty", "unknown_store",
					"empty_details"};

enum endpoint { EP_QIMEN, EP_OPENAPI2, EP_COUNT };
static const char *const ep_names[] = {"qimen", "openapi2"};

enum outcome {
	OUT_OK,
	OUT_RATE_LIMITED,
	OUT_SIGN_ERROR,
	OUT_TIMESTAMP_ERROR,
	OUT_BAD_PARAMS,
	OUT_COUNT
};
static const char *const out_names[] = {"ok", "rate_limited", "sign_errors", "timestamp_errors",
					"bad_params"};

struct opts {
	const char *sid, *app_key, *app_secret, *target_app_key, *port_file, *start;
	int tz, port, span_days, eligible_pct, bad_pct, materials;
	enum total_mode total;
	long clock_offset; /* seconds added to the host's clock: the fake's now */
	uint64_t seed;
	long orders;
	bool verbose;
};

/* One stock-in order. obj is NULL while the order is still the generated original (rebuilt on
 * demand from gen_index, id and modified); it is set once the order was changed or posted. */
struct order {
	int64_t id;
	int64_t modified;
	uint64_t gen_index;
	char *order_type, *status, *warehouse_no, *src_order_no, *stockin_no;
	json_t *obj;
};

struct counters {
	uint64_t calls, out[OUT_COUNT], fault_5xx, dropped, malformed;
};

struct knobs {
	int latency_ms, fail_5xx, drop, malformed, shift_pct, swap_pct, rate_limit;
	int swap_cancels; /* the order leaving in a swap is also cancelled (status 10) */
	double live_create, live_modify;
};

/* Everything below is guarded by lock. */
static struct {
	pthread_mutex_t lock;
	struct opts o;
	struct order *v;
	size_t n, cap;
	uint64_t next_index;
	int64_t max_id;
	uint64_t rng;
	struct knobs k;
	struct counters ep[EP_COUNT];
	uint64_t admin_calls, swaps;
	json_t *cancelled; /* stockin_no of the orders a swap cancelled */
	uint64_t *calls_ms; /* monotonic times of the calls that passed the rate limit */
	size_t calls_n, calls_cap;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static atomic_bool stopping;

/* The fake's clock: the host's, shifted by --clock-offset. */
static int64_t fake_now(void)
{
	return wj_now() + g.o.clock_offset;
}

/* ---- random numbers ---- */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s, uint64_t n)
{
	return n ? splitmix(s) % n : 0;
}

static uint64_t stream(uint64_t index, uint64_t which)
{
	uint64_t s = g.o.seed ^ (index * 0xD1B54A32D192ED03ull) ^ (which * 0x8CB92BA72F3D8DD7ull);
	splitmix(&s);
	return s;
}

/* ---- catalogue ---- */

static const char *const colors[] = {"蓝色", "红色", "白色", "黑色", "灰色", "绿色", "黄色", "粉色"};
static const char *const fabrics[] = {"棉", "麻", "真丝", "羊毛", "涤纶"};
static const char *const items[] = {"T恤", "衬衫", "卫衣", "牛仔裤", "外套",
				    "袜子", "帽子", "围巾", "毛衣", "短裤"};
static const char *const sizes[] = {"S码", "M码", "L码", "XL码"};
static const char *const unit_names[] = {"个", "箱", "千克"};
static const char *const wh_names[] = {"一号仓", "二号仓", "三号仓", "四号仓", "五号仓",
				       "六号仓", "七号仓", "八号仓", "九号仓"};
static const char *const operators[] = {"张伟", "王芳", "李娜", "刘洋", "陈静", "赵磊"};
static const char *const type_names[] = {"", "采购入库", "调拨入库", "退货入库", "盘盈入库",
					 "生产入库", "其他入库", "保修入库", "纠错入库",
					 "初始化入库", "预入库", "JIT退货入库", "委外入库"};
static const char *const src_prefix[] = {"QT", "CG", "DB", "TH", "PD", "SC", "QT",
					 "BX", "JC", "CS", "YR", "JT", "WW"};
/* Non-eligible (order_type, status) pairs; the first two are the near misses. */
static const int other_pairs[][2] = {{4, 30}, {1, 80}, {4, 20}, {4, 10}, {2, 80}, {3, 80},
				     {6, 80}, {4, 60}, {1, 30}, {5, 80}, {4, 32}, {9, 80}};

static void set_str(json_t *o, const char *k, const char *v)
{
	json_object_set_new(o, k, json_string(v));
}

static void set_fmt(json_t *o, const char *k, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_fmt(json_t *o, const char *k, const char *fmt, ...)
{
	char buf[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	set_str(o, k, buf);
}

static void set_time(json_t *o, const char *k, int64_t t)
{
	char buf[WJ_TIME_LEN];
	wj_time_format(t, g.o.tz, buf);
	set_str(o, k, buf);
}

static void ymd(int64_t t, char out[9])
{
	char buf[WJ_TIME_LEN];
	wj_time_format(t, g.o.tz, buf);
	snprintf(out, 9, "%.4s%.2s%.2s", buf, buf + 5, buf + 8);
}

static json_t *gen_line(int64_t id, uint64_t rec, int mat, const char *type, int64_t created,
			int64_t modified, long count, bool nosuch)
{
	json_t *l = json_object();
	int unit = mat % 3;
	double price = 5.0 + (mat % 50) * 1.5;
	char name[64];
	snprintf(name, sizeof(name), "%s%s%s", colors[mat % 8], fabrics[(mat / 8) % 5],
		 items[(mat / 40) % 10]);
	json_object_set_new(l, "rec_id", json_integer((json_int_t)rec));
	json_object_set_new(l, "stockin_id", json_integer(id));
	set_str(l, "src_order_type", type);
	set_fmt(l, "spec_id", "%d", mat);
	if (nosuch)
		set_fmt(l, "spec_no", "NOSUCH%05d", mat);
	else
		set_fmt(l, "spec_no", "SP%05d", mat);
	set_fmt(l, "goods_no", "G%05d", mat);
	set_str(l, "goods_name", name);
	set_str(l, "spec_name", sizes[mat % 4]);
	set_fmt(l, "spec_code", "C%05d", mat);
	set_fmt(l, "goods_count", "%ld.0000", count);
	set_fmt(l, "num", "%ld.0000", count);
	set_fmt(l, "expect_num", "%ld.0000", count);
	set_fmt(l, "right_num", "%ld.0000", count);
	set_fmt(l, "adjust_num", "%ld.0000", count);
	set_str(l, "num2", "0.0000");
	set_str(l, "goods_unit", unit_names[unit]);
	set_fmt(l, "base_unit_id", "%d", unit + 1);
	set_fmt(l, "unit_id", "%d", unit + 1);
	set_str(l, "unit_ratio", "1.0000");
	set_fmt(l, "cost_price", "%.4f", price);
	set_fmt(l, "cost_price2", "%.4f", price);
	set_fmt(l, "src_price", "%.4f", price);
	set_fmt(l, "tax_price", "%.4f", price);
	set_fmt(l, "right_price", "%.4f", price);
	set_fmt(l, "adjust_price", "%.4f", price);
	set_fmt(l, "total_cost", "%.4f", price * (double)count);
	set_fmt(l, "right_cost", "%.4f", price * (double)count);
	set_fmt(l, "tax_amount", "%.4f", price * (double)count);
	set_str(l, "tax", "0.0000");
	set_str(l, "discount", "0.0000");
	set_str(l, "share_post_cost", "0.0000");
	set_str(l, "share_post_total", "0.0000");
	set_str(l, "src_order_detail_id", "0");
	set_str(l, "org_stockin_detail_id", "0");
	set_str(l, "batch_id", "0");
	set_str(l, "batch_no", "");
	set_str(l, "batch_remark", "");
	set_str(l, "position_id", "0");
	set_str(l, "position_no", "ZANCUN");
	set_str(l, "production_date", "0000-00-00 00:00:00");
	set_str(l, "expire_date", "0000-00-00 00:00:00");
	set_str(l, "validity_days", "0");
	set_fmt(l, "brand_no", "B%02d", mat % 7 + 1);
	set_str(l, "brand_name", "测试品牌");
	set_str(l, "prop2", "");
	set_str(l, "remark", "");
	set_time(l, "created", created);
	set_time(l, "modified", modified);
	return l;
}

/* Generate order number index (1-based) deterministically from the seed. Fills the header
 * strings of o (caller frees them with order_clear) and, when obj is not NULL, the full order
 * (new reference). */
static void gen_order(uint64_t index, int64_t id, int64_t modified, struct order *o, json_t **obj)
{
	uint64_t r = stream(index, 1);
	int type = 4, status = 80;
	enum bad_kind bad = BAD_NONE;
	if ((int)rnd(&r, 100) < g.o.eligible_pct) {
		if (g.o.bad_pct > 0 && (int)rnd(&r, 100) < g.o.bad_pct)
			bad = (enum bad_kind)(1 + rnd(&r, 4));
	} else {
		const int *p = other_pairs[rnd(&r, sizeof(other_pairs) / sizeof(other_pairs[0]))];
		type = p[0];
		status = p[1];
	}
	int wh = 1 + (int)rnd(&r, 5);
	if (bad == BAD_STORE)
		wh = 9;
	int64_t created = modified - (int64_t)rnd(&r, 3 * 86400);
	int64_t stockin = created + (int64_t)rnd(&r, 3600);
	if (stockin > modified)
		stockin = modified;
	int op = (int)rnd(&r, sizeof(operators) / sizeof(operators[0]));
	bool note = rnd(&r, 2);
	char day[9], buf[64];

	ymd(created, day);
	if (o) {
		snprintf(buf, sizeof(buf), "%d", type);
		o->order_type = strdup(buf);
		snprintf(buf, sizeof(buf), "%d", status);
		o->status = strdup(buf);
		snprintf(buf, sizeof(buf), "WH%02d", wh);
		o->warehouse_no = strdup(buf);
		snprintf(buf, sizeof(buf), "%s%s%04" PRIu64, src_prefix[type], day, index);
		o->src_order_no = strdup(buf);
		snprintf(buf, sizeof(buf), "RK%s%04" PRIu64, day, index);
		o->stockin_no = strdup(buf);
	}
	if (!obj)
		return;

	json_t *j = json_object();
	json_object_set_new(j, "stockin_id", json_integer(id));
	set_fmt(j, "stockin_no", "RK%s%04" PRIu64, day, index);
	set_fmt(j, "order_type", "%d", type);
	set_str(j, "order_type_name", type_names[type]);
	set_fmt(j, "status", "%d", status);
	set_fmt(j, "warehouse_id", "%d", wh);
	set_fmt(j, "warehouse_no", "WH%02d", wh);
	set_str(j, "warehouse_name", wh_names[wh - 1]);
	set_fmt(j, "src_order_id", "%" PRIu64, 50000 + index);
	set_fmt(j, "src_order_no", "%s%s%04" PRIu64, src_prefix[type], day, index);
	set_str(j, "outer_no", "");
	set_time(j, "created_time", created);
	set_time(j, "stockin_time", stockin);
	if (status == 80)
		set_time(j, "check_time", stockin);
	else
		set_str(j, "check_time", "0000-00-00 00:00:00");
	set_time(j, "modified", modified);
	if (bad)
		set_fmt(j, "remark", "BAD:%s", bad_names[bad]);
	else
		set_str(j, "remark", note ? "月末盘点" : "");
	set_str(j, "stockin_reason", type == 4 ? "盘点盈余" : "");
	set_str(j, "reason_id", "0");
	set_fmt(j, "operator_id", "%d", op + 1);
	set_str(j, "operator_name", operators[op]);
	set_str(j, "post_fee", "0.0000");
	set_str(j, "other_fee", "0.0000");
	set_str(j, "logistics_id", "0");
	set_str(j, "logistics_no", "");
	set_str(j, "logistics_type", "0");
	set_str(j, "post_share_type", "0");
	set_str(j, "wms_status", "0");
	set_str(j, "wms_result", "");
	set_str(j, "fa_status", "0");
	set_str(j, "note_count", "0");
	set_str(j, "flag_id", "0");

	/* Lines come from their own stream so the header does not depend on them. */
	uint64_t rl = stream(index, 2);
	int nlines = 1 + (int)rnd(&rl, 20);
	if (nlines > g.o.materials)
		nlines = g.o.materials;
	if (bad == BAD_EMPTY)
		nlines = 0;
	int bad_line = nlines ? (int)rnd(&rl, (uint64_t)nlines) : 0;
	json_t *lines = json_array();
	int mats[20];
	double amount = 0;
	char type_s[8];
	snprintf(type_s, sizeof(type_s), "%d", type);
	for (int i = 0; i < nlines; i++) {
		int m;
		bool dup;
		do {
			m = 1 + (int)rnd(&rl, (uint64_t)g.o.materials);
			dup = false;
			for (int k = 0; k < i; k++)
				dup = dup || mats[k] == m;
		} while (dup);
		mats[i] = m;
		long count = 1 + (long)rnd(&rl, 50);
		if (bad == BAD_QTY && i == bad_line)
			count = 0;
		amount += (5.0 + (m % 50) * 1.5) * (double)count;
		json_array_append_new(lines, gen_line(id, (uint64_t)id * 100 + (uint64_t)i + 1, m,
						      type_s, created, modified, count,
						      bad == BAD_MATERIAL && i == bad_line));
	}
	set_fmt(j, "goods_amount", "%.4f", amount);
	set_fmt(j, "total_price", "%.4f", amount);
	json_object_set_new(j, "details_list", lines);
	*obj = j;
}

static void order_clear(struct order *o)
{
	free(o->order_type);
	free(o->status);
	free(o->warehouse_no);
	free(o->src_order_no);
	free(o->stockin_no);
	json_decref(o->obj);
	memset(o, 0, sizeof(*o));
}

static int orders_push(struct order *o)
{
	if (g.n == g.cap) {
		size_t cap = g.cap ? g.cap * 2 : 1024;
		struct order *v = realloc(g.v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		g.v = v;
		g.cap = cap;
	}
	g.v[g.n++] = *o;
	if (o->id > g.max_id)
		g.max_id = o->id;
	return 0;
}

static int orders_generate(int64_t start, long count)
{
	uint64_t span = (uint64_t)g.o.span_days * 86400;
	for (long i = 1; i <= count; i++) {
		uint64_t r = stream((uint64_t)i, 0);
		struct order o = {.gen_index = (uint64_t)i, .id = 10000 + i};
		o.modified = start + (int64_t)rnd(&r, span ? span : 1);
		gen_order(o.gen_index, o.id, o.modified, &o, NULL);
		if (orders_push(&o) < 0) {
			order_clear(&o);
			return -ENOMEM;
		}
	}
	g.next_index = (uint64_t)count + 1;
	return 0;
}

/* Full order object, new reference. */
static json_t *order_json(const struct order *o)
{
	if (o->obj)
		return json_incref(o->obj);
	json_t *j = NULL;
	gen_order(o->gen_index, o->id, o->modified, NULL, &j);
	return j;
}

static void order_materialize(struct order *o)
{
	if (!o->obj)
		o->obj = order_json(o);
}

/* Set modified on an order and its lines. */
static void order_touch(struct order *o, int64_t t)
{
	order_materialize(o);
	o->modified = t;
	set_time(o->obj, "modified", t);
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(o->obj, "details_list"), i, l)
		if (json_is_object(l))
			set_time(l, "modified", t);
}

static bool order_eligible(const struct order *o)
{
	return !strcmp(o->order_type, "4") && !strcmp(o->status, "80");
}

/* ---- live mode ---- */

static void live_create_one(int64_t now)
{
	struct order o = {.gen_index = g.next_index++, .id = g.max_id + 1, .modified = now};
	gen_order(o.gen_index, o.id, o.modified, &o, NULL);
	if (orders_push(&o) < 0)
		order_clear(&o);
}

static void live_modify_one(int64_t now)
{
	if (!g.n)
		return;
	struct order *o = &g.v[rnd(&g.rng, g.n)];
	order_touch(o, now);
	set_fmt(o->obj, "flag_id", "%d", (int)rnd(&g.rng, 10));
	const char *remark = json_string_value(json_object_get(o->obj, "remark"));
	bool bad = remark && !strncmp(remark, "BAD:", 4);
	json_t *lines = json_object_get(o->obj, "details_list");
	if (order_eligible(o) && !bad && json_array_size(lines) && rnd(&g.rng, 3) == 0) {
		json_t *l = json_array_get(lines, rnd(&g.rng, json_array_size(lines)));
		const char *c = json_string_value(json_object_get(l, "goods_count"));
		long n = c ? strtol(c, NULL, 10) : 0;
		set_fmt(l, "goods_count", "%ld.0000", n + 1);
	} else {
		const char *nc = json_string_value(json_object_get(o->obj, "note_count"));
		set_fmt(o->obj, "note_count", "%ld", (nc ? strtol(nc, NULL, 10) : 0) + 1);
	}
}

static void *live_thread(void *arg)
{
	(void)arg;
	double credit_c = 0, credit_m = 0;
	while (!atomic_load(&stopping)) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&g.lock);
		int64_t now = fake_now();
		credit_c += g.k.live_create / 10.0;
		credit_m += g.k.live_modify / 10.0;
		for (; credit_c >= 1; credit_c -= 1)
			live_create_one(now);
		for (; credit_m >= 1; credit_m -= 1)
			live_modify_one(now);
		pthread_mutex_unlock(&g.lock);
	}
	return NULL;
}

/* ---- request parameters ---- */

struct kv {
	char *k, *v;
};

struct params {
	struct kv *v;
	size_t n, cap;
	bool dup;
};

static void params_free(struct params *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].k);
		free(p->v[i].v);
	}
	free(p->v);
	memset(p, 0, sizeof(*p));
}

static const char *param(const struct params *p, const char *k)
{
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->v[i].k, k))
			return p->v[i].v;
	return NULL;
}

static int params_add(struct params *p, const char *k, size_t kn, const char *v, size_t vn)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct kv *nv = realloc(p->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		p->v = nv;
		p->cap = cap;
	}
	char *ks = strndup(k, kn), *vs = strndup(v, vn);
	if (!ks || !vs) {
		free(ks);
		free(vs);
		return -ENOMEM;
	}
	if (param(p, ks))
		p->dup = true;
	p->v[p->n++] = (struct kv){ks, vs};
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode one form-urlencoded component in place; returns the new length. */
static size_t form_decode(char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			s[o++] = ' ';
		} else if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
			   hexval(s[i + 2]) >= 0) {
			s[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
		} else {
			s[o++] = s[i];
		}
	}
	return o;
}

static int parse_form(struct params *p, char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t end = i;
		while (end < n && s[end] != '&')
			end++;
		if (end > i) {
			size_t eq = i;
			while (eq < end && s[eq] != '=')
				eq++;
			size_t kn = form_decode(s + i, eq - i);
			size_t vn = eq < end ? form_decode(s + eq + 1, end - eq - 1) : 0;
			int ret = params_add(p, s + i, kn, eq < end ? s + eq + 1 : "", vn);
			if (ret < 0)
				return ret;
		}
		i = end + 1;
	}
	return 0;
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	(void)kind;
	const char *v = value ? value : "";
	params_add(cls, key, strlen(key), v, strlen(v));
	return MHD_YES;
}

static int cmp_kv(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

/* ---- signatures ---- */

static void md5_hex(const char *s, size_t n, bool upper, char out[33])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdn = 0;
	if (!EVP_Digest(s, n, md, &mdn, EVP_md5(), NULL) || mdn != 16) {
		out[0] = '\0';
		return;
	}
	wj_hex(md, 16, out, upper);
}

static size_t codepoints(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* Qimen: sorted key+value pairs without sign, wrapped in the secret, MD5 uppercase. */
static int sign_qimen(struct params *p, char out[33])
{
	wj_buf_t b = {0};
	qsort(p->v, p->n, sizeof(p->v[0]), cmp_kv);
	int ret = wj_buf_append(&b, g.o.app_secret, strlen(g.o.app_secret));
	for (size_t i = 0; !ret && i < p->n; i++)
		if (strcmp(p->v[i].k, "sign"))
			ret = wj_buf_printf(&b, "%s%s", p->v[i].k, p->v[i].v);
	if (!ret)
		ret = wj_buf_append(&b, g.o.app_secret, strlen(g.o.app_secret));
	if (!ret)
		md5_hex(b.data, b.len, true, out);
	wj_buf_free(&b);
	return ret;
}

/* openapi2: sorted "LL-key:VVVV-value" pairs joined by ';', then the secret, MD5 lowercase. */
static int sign_openapi2(struct params *p, char out[33])
{
	wj_buf_t b = {0};
	int ret = 0;
	bool first = true;
	qsort(p->v, p->n, sizeof(p->v[0]), cmp_kv);
	for (size_t i = 0; !ret && i < p->n; i++) {
		if (!strcmp(p->v[i].k, "sign"))
			continue;
		ret = wj_buf_printf(&b, "%s%02zu-%s:%04zu-%s", first ? "" : ";",
				    codepoints(p->v[i].k), p->v[i].k, codepoints(p->v[i].v),
				    p->v[i].v);
		first = false;
	}
	if (!ret)
		ret = wj_buf_append(&b, g.o.app_secret, strlen(g.o.app_secret));
	if (!ret)
		md5_hex(b.data ? b.data : "", b.len, false, out);
	wj_buf_free(&b);
	return ret;
}

/* ---- the query ---- */

struct query {
	int64_t start, end;
	const char *order_type, *status, *warehouse_no, *src_order_no, *stockin_no;
	long page_no, page_size;
};

static bool parse_long(const char *s, long *out)
{
	if (!s || !*s || strlen(s) > 9)
		return false;
	for (const char *c = s; *c; c++)
		if (*c < '0' || *c > '9')
			return false;
	*out = strtol(s, NULL, 10);
	return true;
}

static bool parse_time_full(const char *s, int64_t *t)
{
	return s && strlen(s) == 19 && wj_time_parse(s, g.o.tz, t) == 0;
}

/* 0, or -1 with a message naming the problem. */
static int query_parse(const struct params *p, struct query *q, char *msg, size_t msgn)
{
	const char *st = param(p, "start_time"), *et = param(p, "end_time");
	const char *pn = param(p, "page_no"), *ps = param(p, "page_size");
	if (!st || !et) {
		snprintf(msg, msgn, "缺少参数: %s", !st ? "start_time" : "end_time");
		return -1;
	}
	if (!parse_time_full(st, &q->start) || !parse_time_full(et, &q->end)) {
		snprintf(msg, msgn, "参数无效: %s",
			 !parse_time_full(st, &q->start) ? "start_time" : "end_time");
		return -1;
	}
	if (q->start > q->end) {
		snprintf(msg, msgn, "开始时间不能大于结束时间");
		return -1;
	}
	if (q->end - q->start > MAX_SPAN) {
		snprintf(msg, msgn, "时间跨度不能超过30天");
		return -1;
	}
	q->page_no = 0;
	q->page_size = 40;
	if (pn && !parse_long(pn, &q->page_no)) {
		snprintf(msg, msgn, "参数无效: page_no");
		return -1;
	}
	if (ps && (!parse_long(ps, &q->page_size) || q->page_size < 1 || q->page_size > 100)) {
		snprintf(msg, msgn, "参数无效: page_size");
		return -1;
	}
	q->order_type = param(p, "order_type");
	q->status = param(p, "status");
	q->warehouse_no = param(p, "warehouse_no");
	q->src_order_no = param(p, "src_order_no");
	q->stockin_no = param(p, "stockin_no");
	return 0;
}

static bool match(const char *want, const char *have)
{
	return !want || (have && !strcmp(want, have));
}

static int cmp_idx(const void *a, const void *b)
{
	const struct order *x = &g.v[*(const size_t *)a], *y = &g.v[*(const size_t *)b];
	if (x->modified != y->modified)
		return x->modified < y->modified ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/* Indices of the matching orders sorted by (modified, stockin_id); caller frees. */
static size_t *query_filter(const struct query *q, size_t *count)
{
	size_t *idx = malloc((g.n ? g.n : 1) * sizeof(*idx)), n = 0;
	if (!idx)
		return NULL;
	for (size_t i = 0; i < g.n; i++) {
		const struct order *o = &g.v[i];
		if (o->modified < q->start || o->modified > q->end)
			continue;
		if (match(q->order_type, o->order_type) && match(q->status, o->status) &&
		    match(q->warehouse_no, o->warehouse_no) &&
		    match(q->src_order_no, o->src_order_no) && match(q->stockin_no, o->stockin_no))
			idx[n++] = i;
	}
	qsort(idx, n, sizeof(*idx), cmp_idx);
	*count = n;
	return idx;
}

static int admin_put_order(json_t *j);

/* A new order made from the copy of another (borrowed): next stockin_id, its own numbers,
 * modified at. It matches the filters the other one matched. */
static int swap_in(json_t *copy, int64_t at)
{
	json_int_t id = (json_int_t)g.max_id + 1;
	uint64_t n = ++g.swaps;
	char buf[WJ_TIME_LEN];
	wj_time_format(at, g.o.tz, buf);
	json_object_set_new(copy, "stockin_id", json_integer(id));
	set_fmt(copy, "stockin_no", "RKSWAP%06" PRIu64, n);
	set_fmt(copy, "src_order_no", "PDSWAP%06" PRIu64, n);
	set_str(copy, "modified", buf);
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(copy, "details_list"), i, l) {
		json_object_set_new(l, "stockin_id", json_integer(id));
		json_object_set_new(l, "rec_id", json_integer(id * 100 + (json_int_t)i + 1));
		set_str(l, "modified", buf);
	}
	return admin_put_order(copy) < 0 ? -ENOMEM : 0;
}

/* Run a parsed query: total and the page's orders (new reference). */
static int query_run(const struct query *q, int64_t *total, json_t **list)
{
	size_t n;
	size_t *idx = query_filter(q, &n);
	if (!idx)
		return -ENOMEM;
	uint64_t off = (uint64_t)q->page_no * (uint64_t)q->page_size;
	if (g.k.shift_pct > 0 && q->page_no > 0 && off <= n && off > 0 &&
	    (int)rnd(&g.rng, 100) < g.k.shift_pct) {
		/* An order on an earlier page changes now: it leaves the window (or moves to its
		 * end), so the later ones move up one place and the client misses one. */
		order_touch(&g.v[idx[rnd(&g.rng, off)]], fake_now());
		free(idx);
		idx = query_filter(q, &n);
		if (!idx)
			return -ENOMEM;
	}
	if (g.k.swap_pct > 0 && q->page_no > 0 && off <= n && off > 0 &&
	    (int)rnd(&g.rng, 100) < g.k.swap_pct) {
		/* One order on a page already read leaves the window, and another one enters it at
		 * its end: the count stays the same, but the first order of this page moved onto
		 * the previous one. */
		struct order *a = &g.v[idx[rnd(&g.rng, off)]];
		json_t *orig = order_json(a), *copy = json_deep_copy(orig);
		json_decref(orig);
		order_touch(a, fake_now());
		if (g.k.swap_cancels) {
			/* it leaves by no longer matching the query, not only by its time */
			char *st = strdup("10");
			if (st) {
				free(a->status);
				a->status = st;
				set_str(a->obj, "status", st);
				if (!g.cancelled)
					g.cancelled = json_array();
				json_array_append(g.cancelled, json_object_get(a->obj, "stockin_no"));
			}
		}
		int ret = swap_in(copy, q->end);
		json_decref(copy);
		free(idx);
		idx = ret < 0 ? NULL : query_filter(q, &n);
		if (!idx)
			return -ENOMEM;
	}
	json_t *arr = json_array();
	for (uint64_t i = off; i < n && i < off + (uint64_t)q->page_size; i++)
		json_array_append_new(arr, order_json(&g.v[idx[i]]));
	free(idx);
	*total = (int64_t)n;
	*list = arr;
	return 0;
}

/* ---- rate limit and stats ---- */

static uint64_t calls_since(uint64_t since)
{
	size_t lo = 0, hi = g.calls_n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (g.calls_ms[mid] < since)
			lo = mid + 1;
		else
			hi = mid;
	}
	return g.calls_n - lo;
}

/* Every caller passes the sign check with the one configured app key, so the per-key sliding
 * window is a single window. Returns false when the call exceeds the limit. */
static bool rate_admit(void)
{
	uint64_t now = wj_mono_ms();
	if (g.k.rate_limit > 0 &&
	    calls_since(now >= 60000 ? now - 60000 + 1 : 0) >= (uint64_t)g.k.rate_limit)
		return false;
	if (g.calls_n == g.calls_cap) {
		size_t cap = g.calls_cap ? g.calls_cap * 2 : 1024;
		uint64_t *v = realloc(g.calls_ms, cap * sizeof(*v));
		if (!v)
			return true;
		g.calls_ms = v;
		g.calls_cap = cap;
	}
	g.calls_ms[g.calls_n++] = now;
	return true;
}

static uint64_t max_in_60s(void)
{
	uint64_t best = 0;
	size_t lo = 0;
	for (size_t hi = 0; hi < g.calls_n; hi++) {
		while (g.calls_ms[hi] - g.calls_ms[lo] >= 60000)
			lo++;
		if (hi - lo + 1 > best)
			best = hi - lo + 1;
	}
	return best;
}

static json_t *counters_json(const struct counters *c)
{
	json_t *j = json_object();
	json_object_set_new(j, "calls", json_integer((json_int_t)c->calls));
	for (int i = 0; i < OUT_COUNT; i++)
		json_object_set_new(j, out_names[i], json_integer((json_int_t)c->out[i]));
	json_object_set_new(j, "fault_5xx", json_integer((json_int_t)c->fault_5xx));
	json_object_set_new(j, "dropped", json_integer((json_int_t)c->dropped));
	json_object_set_new(j, "malformed", json_integer((json_int_t)c->malformed));
	return j;
}

static json_t *stats_json(void)
{
	struct counters sum = {0};
	json_t *eps = json_object();
	for (int e = 0; e < EP_COUNT; e++) {
		const struct counters *c = &g.ep[e];
		sum.calls += c->calls;
		for (int i = 0; i < OUT_COUNT; i++)
			sum.out[i] += c->out[i];
		sum.fault_5xx += c->fault_5xx;
		sum.dropped += c->dropped;
		sum.malformed += c->malformed;
		json_object_set_new(eps, ep_names[e], counters_json(c));
	}
	json_t *j = counters_json(&sum);
	json_object_set_new(j, "endpoints", eps);
	json_object_set_new(j, "accepted_calls", json_integer((json_int_t)g.calls_n));
	json_object_set_new(j, "max_calls_in_any_60s", json_integer((json_int_t)max_in_60s()));
	json_object_set_new(j, "admin_calls", json_integer((json_int_t)g.admin_calls));
	json_object_set_new(j, "swaps", json_integer((json_int_t)g.swaps));
	if (g.cancelled)
		json_object_set(j, "swap_cancelled", g.cancelled);
	else
		json_object_set_new(j, "swap_cancelled", json_array());
	json_object_set_new(j, "orders", json_integer((json_int_t)g.n));
	return j;
}

static json_t *knobs_json(void)
{
	return json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f}", "latency_ms", g.k.latency_ms,
			 "fail_5xx", g.k.fail_5xx, "drop", g.k.drop, "malformed", g.k.malformed,
			 "shift_during_scan", g.k.shift_pct, "swap_during_scan", g.k.swap_pct,
			 "rate_limit", g.k.rate_limit, "live_create", g.k.live_create,
			 "live_modify", g.k.live_modify);
}

/* ---- responses ---- */

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, const char *ctype,
				 const char *body, size_t len)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	/* the fake's clock, as WDT's own answers carry it */
	char date[64];
	time_t now = (time_t)fake_now();
	struct tm tm;
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
	MHD_add_response_header(r, MHD_HTTP_HEADER_DATE, date);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return send_body(c, 500, "text/plain", "encode error\n", 13);
	enum MHD_Result ret = send_body(c, status, "application/json; charset=utf-8", s, strlen(s));
	free(s);
	return ret;
}

/* Strings "@@hex:<hex>" in posted orders go out as those raw bytes (for invalid UTF-8 tests);
 * bytes JSON cannot carry raw are escaped. Strings "@@raw:TEXT" go out as TEXT without the
 * quotes (bare number tokens such as 1e400). Returns a new string; caller frees. */
static char *expand_markers(const char *s)
{
	wj_buf_t b = {0};
	const char *p = s, *h, *r;
	for (;;) {
		h = strstr(p, "\"" HEX_MARKER);
		r = strstr(p, "\"" RAW_MARKER);
		if (!h && !r)
			break;
		if (r && (!h || r < h)) {
			const char *end = strchr(r + 1, '"');
			if (!end)
				break;
			wj_buf_append(&b, p, (size_t)(r - p));
			wj_buf_append(&b, r + 1 + strlen(RAW_MARKER),
				      (size_t)(end - r - 1 - strlen(RAW_MARKER)));
			p = end + 1;
			continue;
		}
		wj_buf_append(&b, p, (size_t)(h - p) + 1);
		p = h + 1 + strlen(HEX_MARKER);
		while (hexval(p[0]) >= 0 && hexval(p[1]) >= 0) {
			unsigned char ch = (unsigned char)(hexval(p[0]) * 16 + hexval(p[1]));
			if (ch < 0x20 || ch == '"' || ch == '\\')
				wj_buf_printf(&b, "\\u%04x", ch);
			else
				wj_buf_append(&b, &ch, 1);
			p += 2;
		}
	}
	wj_buf_append(&b, p, strlen(p));
	return b.data;
}

static json_t *qimen_failure(const char *code, const char *msg, const char *sub_code,
			     const char *sub_msg)
{
	return json_pack("{s:{s:s,s:s,s:s,s:s,s:s}}", "response", "flag", "failure", "code", code,
			 "message", msg, "sub_code", sub_code, "sub_message", sub_msg);
}

static json_t *api_error(enum endpoint ep, int code, const char *msg)
{
	json_t *j = json_pack("{s:i,s:s}", ep == EP_QIMEN ? "errorcode" : "code", code, "message",
			      msg);
	return ep == EP_QIMEN ? json_pack("{s:o}", "response", j) : j;
}

/* Checks of the Qimen system parameters; NULL when they pass. */
static json_t *qimen_auth(struct params *p, enum outcome *out)
{
	static const char *const required[] = {"method", "app_key", "target_app_key", "sid",
					       "timestamp", "format", "v", "sign_method"};
	char msg[128];
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (!param(p, required[i])) {
			*out = OUT_BAD_PARAMS;
			snprintf(msg, sizeof(msg), "缺少参数: %s", required[i]);
			return api_error(EP_QIMEN, 100, msg);
		}
	}
	if (strcmp(param(p, "method"), QIMEN_METHOD)) {
		*out = OUT_BAD_PARAMS;
		return qimen_failure("invalid-method", "Invalid method", "isv.invalid-method",
				     "不支持的方法");
	}
	static const char *const fixed[][2] = {{"format", "json"}, {"v", "2.0"},
					       {"sign_method", "md5"}};
	for (size_t i = 0; i < 3; i++) {
		if (strcmp(param(p, fixed[i][0]), fixed[i][1])) {
			*out = OUT_BAD_PARAMS;
			snprintf(msg, sizeof(msg), "参数无效: %s", fixed[i][0]);
			return api_error(EP_QIMEN, 100, msg);
		}
	}
	*out = OUT_SIGN_ERROR;
	if (strcmp(param(p, "app_key"), g.o.app_key))
		return qimen_failure("isv.appkey-not-exists", "Invalid app key",
				     "isv.invalid-app-key", "应用不存在");
	if (strcmp(param(p, "target_app_key"), g.o.target_app_key))
		return qimen_failure("isv.target-appkey-not-exists", "Invalid target app key",
				     "isv.invalid-target-app-key", "目标应用不存在");
	if (strcmp(param(p, "sid"), g.o.sid))
		return qimen_failure("isv.invalid-sid", "Invalid sid", "isv.invalid-sid",
				     "卖家账号不存在");
	int64_t ts;
	if (!parse_time_full(param(p, "timestamp"), &ts)) {
		*out = OUT_BAD_PARAMS;
		return api_error(EP_QIMEN, 100, "参数无效: timestamp");
	}
	if (llabs(ts - fake_now()) > QIMEN_SKEW) {
		*out = OUT_TIMESTAMP_ERROR;
		return qimen_failure("invalid-timestamp", "Invalid timestamp",
				     "isv.invalid-timestamp", "时间戳已过期");
	}
	const char *sign = param(p, "sign");
	char want[33];
	if (!sign || sign_qimen(p, want) < 0 || strcmp(sign, want))
		return qimen_failure("sign-check-failure", "Illegal request",
				     "isv.invalid-signature", "签名错误");
	*out = OUT_OK;
	return NULL;
}

static json_t *openapi2_auth(struct params *p, enum outcome *out)
{
	static const char *const required[] = {"sid", "appkey", "timestamp", "sign"};
	char msg[128];
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (!param(p, required[i])) {
			*out = OUT_BAD_PARAMS;
			snprintf(msg, sizeof(msg), "缺少参数: %s", required[i]);
			return api_error(EP_OPENAPI2, 100, msg);
		}
	}
	*out = OUT_SIGN_ERROR;
	if (strcmp(param(p, "appkey"), g.o.app_key))
		return api_error(EP_OPENAPI2, 1001, "appkey不存在");
	if (strcmp(param(p, "sid"), g.o.sid))
		return api_error(EP_OPENAPI2, 1002, "卖家账号不存在");
	const char *tss = param(p, "timestamp");
	if (strlen(tss) > 12 || strspn(tss, "0123456789") != strlen(tss)) {
		*out = OUT_BAD_PARAMS;
		return api_error(EP_OPENAPI2, 100, "参数无效: timestamp");
	}
	int64_t t = strtoll(tss, NULL, 10);
	if (llabs(t - fake_now()) > OPENAPI2_SKEW) {
		*out = OUT_TIMESTAMP_ERROR;
		return api_error(EP_OPENAPI2, 1005, "时间戳已过期");
	}
	char want[33];
	if (sign_openapi2(p, want) < 0 || strcmp(param(p, "sign"), want))
		return api_error(EP_OPENAPI2, 1004, "签名错误");
	*out = OUT_OK;
	return NULL;
}

/* Answer a query call; called with the lock held. */
static json_t *api_answer(enum endpoint ep, struct params *p, enum outcome *out)
{
	char msg[160];
	if (p->dup) {
		*out = OUT_BAD_PARAMS;
		return api_error(ep, 100, "参数重复");
	}
	for (size_t i = 0; i < p->n; i++) {
		if (!p->v[i].v[0]) {
			*out = OUT_BAD_PARAMS;
			snprintf(msg, sizeof(msg), "参数值为空: %.100s", p->v[i].k);
			return api_error(ep, 100, msg);
		}
	}
	json_t *err = ep == EP_QIMEN ? qimen_auth(p, out) : openapi2_auth(p, out);
	if (err)
		return err;
	if (!rate_admit()) {
		*out = OUT_RATE_LIMITED;
		return api_error(ep, 1012, "系统调用频繁");
	}
	struct query q;
	if (query_parse(p, &q, msg, sizeof(msg)) < 0) {
		*out = OUT_BAD_PARAMS;
		return api_error(ep, 100, msg);
	}
	int64_t total = 0;
	json_t *list = NULL;
	if (query_run(&q, &total, &list) < 0) {
		*out = OUT_BAD_PARAMS;
		return api_error(ep, 500, "内部错误");
	}
	*out = OUT_OK;
	json_t *j = json_pack("{s:i,s:s,s:o}", ep == EP_QIMEN ? "errorcode" : "code", 0,
			      "message", "", "stockin_list", list);
	json_t *tc = NULL;
	switch (g.o.total) {
	case TC_PAGE0: tc = q.page_no == 0 ? json_integer((json_int_t)total) : NULL; break;
	case TC_ALWAYS: tc = json_integer((json_int_t)total); break;
	case TC_ZERO: tc = json_integer(0); break;
	case TC_NULL: tc = json_null(); break;
	case TC_NONE: break;
	}
	if (tc)
		json_object_set_new(j, "total_count", tc);
	return ep == EP_QIMEN ? json_pack("{s:o}", "response", j) : j;
}

struct req {
	wj_buf_t body;
	bool too_big;
};

static enum MHD_Result handle_api(struct MHD_Connection *c, enum endpoint ep, struct req *r)
{
	pthread_mutex_lock(&g.lock);
	struct knobs k = g.k;
	g.ep[ep].calls++;
	bool drop = k.drop > 0 && (int)rnd(&g.rng, 100) < k.drop;
	bool fail = !drop && k.fail_5xx > 0 && (int)rnd(&g.rng, 100) < k.fail_5xx;
	bool bad = !drop && !fail && k.malformed > 0 && (int)rnd(&g.rng, 100) < k.malformed;
	if (drop)
		g.ep[ep].dropped++;
	if (fail)
		g.ep[ep].fault_5xx++;
	if (bad)
		g.ep[ep].malformed++;
	pthread_mutex_unlock(&g.lock);

	if (k.latency_ms > 0)
		usleep((useconds_t)k.latency_ms * 1000);
	if (drop) {
		if (g.o.verbose)
			fprintf(stderr, "fake_wdt: %s dropped\n", ep_names[ep]);
		return MHD_NO;
	}
	if (fail) {
		static const char html[] =
			"<html><head><title>502 Bad Gateway</title></head><body>"
			"<h1>502 Bad Gateway</h1></body></html>\n";
		if (g.o.verbose)
			fprintf(stderr, "fake_wdt: %s 502\n", ep_names[ep]);
		return send_body(c, 502, "text/html", html, sizeof(html) - 1);
	}

	struct params p = {0};
	if (ep == EP_QIMEN)
		MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &p);
	if (r->too_big || parse_form(&p, r->body.data ? r->body.data : "", r->body.len) < 0) {
		params_free(&p);
		return send_body(c, 413, "text/plain", "request too large\n", 18);
	}
	enum outcome out = OUT_BAD_PARAMS;
	pthread_mutex_lock(&g.lock);
	json_t *j = api_answer(ep, &p, &out);
	g.ep[ep].out[out]++;
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	pthread_mutex_unlock(&g.lock);
	params_free(&p);
	if (!s)
		return send_body(c, 500, "text/plain", "encode error\n", 13);
	char *x = strstr(s, HEX_MARKER) || strstr(s, RAW_MARKER) ? expand_markers(s) : NULL;
	const char *body = x ? x : s;
	size_t len = strlen(body);
	if (bad)
		len /= 2;
	if (g.o.verbose)
		fprintf(stderr, "fake_wdt: %s %s%s\n", ep_names[ep], out_names[out],
			bad ? " (truncated)" : "");
	enum MHD_Result ret = send_body(c, 200, "application/json; charset=utf-8", body, len);
	free(x);
	free(s);
	return ret;
}

/* ---- admin ---- */

static char *dup_field(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	char buf[32];
	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return strdup(buf);
	}
	return strdup("");
}

/* Insert or replace (by a numeric stockin_id) one posted order. An order whose stockin_id is
 * missing or not a number below 10^18 is always inserted, under an internal id that only
 * orders it. 1 replaced, 0 inserted, -EINVAL. */
static int admin_put_order(json_t *j)
{
	json_t *idv = json_object_get(j, "stockin_id");
	int64_t id, mod;
	long l;
	bool keyed = true;
	if (!json_is_object(j))
		return -EINVAL;
	if (json_is_integer(idv)) {
		id = json_integer_value(idv);
	} else if (json_is_string(idv) && (l = strlen(json_string_value(idv))) > 0 && l < 19 &&
		   strspn(json_string_value(idv), "0123456789") == (size_t)l) {
		id = strtoll(json_string_value(idv), NULL, 10);
	} else {
		id = g.max_id + 1;
		keyed = false;
	}
	if (!parse_time_full(json_string_value(json_object_get(j, "modified")), &mod))
		return -EINVAL;
	struct order o = {.id = id, .modified = mod, .obj = json_incref(j)};
	o.order_type = dup_field(j, "order_type");
	o.status = dup_field(j, "status");
	o.warehouse_no = dup_field(j, "warehouse_no");
	o.src_order_no = dup_field(j, "src_order_no");
	o.stockin_no = dup_field(j, "stockin_no");
	for (size_t i = 0; i < g.n && keyed; i++) {
		if (g.v[i].id == id) {
			order_clear(&g.v[i]);
			g.v[i] = o;
			return 1;
		}
	}
	if (orders_push(&o) < 0) {
		order_clear(&o);
		return -ENOMEM;
	}
	return 0;
}

static json_t *admin_post_orders(json_t *in, unsigned *status)
{
	json_t *list = json_is_object(in) && json_is_array(json_object_get(in, "orders"))
			       ? json_object_get(in, "orders")
			       : in;
	size_t i, ins = 0, rep = 0;
	json_t *o;
	if (json_is_object(list)) {
		int ret = admin_put_order(list);
		if (ret < 0)
			goto fail;
		ret ? rep++ : ins++;
	} else if (json_is_array(list)) {
		json_array_foreach(list, i, o) {
			int ret = admin_put_order(o);
			if (ret < 0)
				goto fail;
			ret ? rep++ : ins++;
		}
	} else {
		goto fail;
	}
	return json_pack("{s:I,s:I,s:I}", "inserted", (json_int_t)ins, "replaced",
			 (json_int_t)rep, "orders", (json_int_t)g.n);
fail:
	*status = 400;
	return json_pack("{s:s,s:I,s:I}", "error",
			 "order needs modified \"YYYY-MM-DD HH:MM:SS\"", "inserted",
			 (json_int_t)ins, "replaced", (json_int_t)rep);
}

static bool pct_ok(json_int_t v)
{
	return v >= 0 && v <= 100;
}

static json_t *admin_post_faults(json_t *in, unsigned *status)
{
	const char *key;
	json_t *v;
	if (!json_is_object(in))
		goto fail;
	json_object_foreach(in, key, v) {
		if (!json_is_number(v))
			goto fail;
		json_int_t n = json_is_integer(v) ? json_integer_value(v) : (json_int_t)json_number_value(v);
		if (!strcmp(key, "latency_ms") && n >= 0 && n <= 600000)
			g.k.latency_ms = (int)n;
		else if (!strcmp(key, "fail_5xx") && pct_ok(n))
			g.k.fail_5xx = (int)n;
		else if (!strcmp(key, "drop") && pct_ok(n))
			g.k.drop = (int)n;
		else if (!strcmp(key, "malformed") && pct_ok(n))
			g.k.malformed = (int)n;
		else if (!strcmp(key, "shift_during_scan") && pct_ok(n))
			g.k.shift_pct = (int)n;
		else if (!strcmp(key, "swap_during_scan") && pct_ok(n))
			g.k.swap_pct = (int)n;
		else if (!strcmp(key, "swap_cancels") && (n == 0 || n == 1))
			g.k.swap_cancels = (int)n;
		else if (!strcmp(key, "rate_limit") && n >= 0 && n <= 1000000)
			g.k.rate_limit = (int)n;
		else if (!strcmp(key, "live_create") && json_number_value(v) >= 0)
			g.k.live_create = json_number_value(v);
		else if (!strcmp(key, "live_modify") && json_number_value(v) >= 0)
			g.k.live_modify = json_number_value(v);
		else
			goto fail;
	}
	return knobs_json();
fail:
	*status = 400;
	return json_pack("{s:s}", "error", "unknown fault knob or value out of range");
}

static enum MHD_Result handle_admin(struct MHD_Connection *c, const char *url, const char *method,
				    struct req *r)
{
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	unsigned status = 200;
	json_t *in = NULL, *out = NULL;
	if (post && r->body.len) {
		in = json_loadb(r->body.data, r->body.len, 0, NULL);
		if (!in)
			return send_json(c, 400, json_pack("{s:s}", "error", "invalid JSON body"));
	}
	pthread_mutex_lock(&g.lock);
	g.admin_calls++;
	if (get && !strcmp(url, "/admin/stats")) {
		out = stats_json();
	} else if (get && !strcmp(url, "/admin/faults")) {
		out = knobs_json();
	} else if (get && !strcmp(url, "/admin/orders")) {
		const char *el = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "eligible");
		bool only = el && !strcmp(el, "1");
		json_t *arr = json_array();
		for (size_t i = 0; i < g.n; i++)
			if (!only || order_eligible(&g.v[i]))
				json_array_append_new(arr, order_json(&g.v[i]));
		out = json_pack("{s:o}", "orders", arr);
	} else if (post && !strcmp(url, "/admin/orders") && in) {
		out = admin_post_orders(in, &status);
	} else if (post && !strcmp(url, "/admin/faults") && in) {
		out = admin_post_faults(in, &status);
	} else if (post && !strcmp(url, "/admin/reset-stats")) {
		memset(g.ep, 0, sizeof(g.ep));
		g.admin_calls = 0;
		g.calls_n = 0;
		out = json_pack("{s:b}", "ok", 1);
	} else {
		status = 404;
		out = json_pack("{s:s}", "error", "no such admin endpoint");
	}
	/* Dump under the lock: order objects may change once it is released. */
	char *s = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	json_decref(in);
	pthread_mutex_unlock(&g.lock);
	if (g.o.verbose)
		fprintf(stderr, "fake_wdt: %s %s %u\n", method, url, status);
	if (!s)
		return send_body(c, 500, "text/plain", "encode error\n", 13);
	enum MHD_Result ret = send_body(c, status, "application/json; charset=utf-8", s, strlen(s));
	free(s);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	(void)cls;
	(void)version;
	struct req *r = *con_cls;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_size) {
		if (r->too_big || r->body.len + *upload_size > MAX_BODY ||
		    wj_buf_append(&r->body, upload, *upload_size) < 0)
			r->too_big = true;
		*upload_size = 0;
		return MHD_YES;
	}
	if (!strncmp(url, "/admin/", 7)) {
		if (r->too_big)
			return send_body(c, 413, "text/plain", "request too large\n", 18);
		return handle_admin(c, url, method, r);
	}
	enum endpoint ep;
	if (!strcmp(url, "/router/qm"))
		ep = EP_QIMEN;
	else if (!strcmp(url, "/openapi2/stockin_order_query.php"))
		ep = EP_OPENAPI2;
	else
		return send_body(c, 404, "text/plain", "not found\n", 10);
	if (strcmp(method, "POST"))
		return send_body(c, 405, "text/plain", "method not allowed\n", 19);
	return handle_api(c, ep, r);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
		    enum MHD_RequestTerminationCode code)
{
	(void)cls;
	(void)c;
	(void)code;
	struct req *r = *con_cls;
	if (r) {
		wj_buf_free(&r->body);
		free(r);
		*con_cls = NULL;
	}
}

/* ---- main ---- */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	if (!g.o.verbose)
		return;
	fputs("fake_wdt: ", stderr);
	vfprintf(stderr, fmt, ap);
}

static void usage(FILE *f)
{
	fputs("usage: fake_wdt [--port N] [--port-file PATH] [--seed N] [--orders N]\n"
	      "  [--start 'YYYY-MM-DD HH:MM:SS'] [--span-days D] [--eligible-pct P] [--bad-pct P]\n"
	      "  [--materials M] [--sid S] [--app-key K] [--app-secret S] [--target-app-key K]\n"
	      "  [--tz +08:00] [--rate-limit N[/min]] [--live-create R] [--live-modify R]\n"
	      "  [--shift-during-scan[=PCT]] [--swap-during-scan[=PCT]] [--latency-ms N]\n"
	      "  [--fail-5xx PCT] [--drop PCT] [--malformed PCT]\n"
	      "  [--total-count page0|always|zero|null|none] [--clock-offset SECONDS] [--verbose]\n",
	      f);
}

static bool int_arg(const char *s, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = (int)v;
	return true;
}

static bool rate_arg(const char *s, int *out)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%s", s);
	char *slash = strchr(buf, '/');
	if (slash) {
		if (strcmp(slash, "/min"))
			return false;
		*slash = '\0';
	}
	return int_arg(buf, 0, 1000000, out);
}

static bool num_arg(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || *end || v < 0 || v > 1e6)
		return false;
	*out = v;
	return true;
}

static int parse_args(int argc, char **argv)
{
	enum { O_PORT = 256, O_PORT_FILE, O_SEED, O_ORDERS, O_START, O_SPAN, O_ELIG, O_BAD, O_MAT,
	       O_SID, O_KEY, O_SECRET, O_TARGET, O_TZ, O_RATE, O_LIVE_C, O_LIVE_M, O_SHIFT,
	       O_LAT, O_5XX, O_DROP, O_MALF, O_VERBOSE, O_HELP, O_SWAP, O_TOTAL, O_CLOCK };
	static const struct option lo[] = {
		{"port", required_argument, NULL, O_PORT},
		{"port-file", required_argument, NULL, O_PORT_FILE},
		{"seed", required_argument, NULL, O_SEED},
		{"orders", required_argument, NULL, O_ORDERS},
		{"start", required_argument, NULL, O_START},
		{"span-days", required_argument, NULL, O_SPAN},
		{"eligible-pct", required_argument, NULL, O_ELIG},
		{"bad-pct", required_argument, NULL, O_BAD},
		{"materials", required_argument, NULL, O_MAT},
		{"sid", required_argument, NULL, O_SID},
		{"app-key", required_argument, NULL, O_KEY},
		{"app-secret", required_argument, NULL, O_SECRET},
		{"target-app-key", required_argument, NULL, O_TARGET},
		{"tz", required_argument, NULL, O_TZ},
		{"rate-limit", required_argument, NULL, O_RATE},
		{"live-create", required_argument, NULL, O_LIVE_C},
		{"live-modify", required_argument, NULL, O_LIVE_M},
		{"shift-during-scan", optional_argument, NULL, O_SHIFT},
		{"swap-during-scan", optional_argument, NULL, O_SWAP},
		{"total-count", required_argument, NULL, O_TOTAL},
		{"clock-offset", required_argument, NULL, O_CLOCK},
		{"latency-ms", required_argument, NULL, O_LAT},
		{"fail-5xx", required_argument, NULL, O_5XX},
		{"drop", required_argument, NULL, O_DROP},
		{"malformed", required_argument, NULL, O_MALF},
		{"verbose", no_argument, NULL, O_VERBOSE},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	struct opts *o = &g.o;
	int c = 0, orders = 1000;
	bool ok = true;
	while (ok && (c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_PORT: ok = int_arg(optarg, 0, 65535, &o->port); break;
		case O_PORT_FILE: o->port_file = optarg; break;
		case O_SEED: {
			char *end;
			o->seed = strtoull(optarg, &end, 10);
			ok = end != optarg && !*end;
			break;
		}
		case O_ORDERS: ok = int_arg(optarg, 0, 10000000, &orders); break;
		case O_START: o->start = optarg; break;
		case O_SPAN: ok = int_arg(optarg, 0, 36500, &o->span_days); break;
		case O_ELIG: ok = int_arg(optarg, 0, 100, &o->eligible_pct); break;
		case O_BAD: ok = int_arg(optarg, 0, 100, &o->bad_pct); break;
		case O_MAT: ok = int_arg(optarg, 1, 99999, &o->materials); break;
		case O_SID: o->sid = optarg; break;
		case O_KEY: o->app_key = optarg; break;
		case O_SECRET: o->app_secret = optarg; break;
		case O_TARGET: o->target_app_key = optarg; break;
		case O_TZ: ok = wj_tz_parse(optarg, &o->tz) == 0; break;
		case O_RATE: ok = rate_arg(optarg, &g.k.rate_limit); break;
		case O_LIVE_C: ok = num_arg(optarg, &g.k.live_create); break;
		case O_LIVE_M: ok = num_arg(optarg, &g.k.live_modify); break;
		case O_SHIFT:
			g.k.shift_pct = 50;
			if (optarg)
				ok = int_arg(optarg, 0, 100, &g.k.shift_pct);
			break;
		case O_SWAP:
			g.k.swap_pct = 50;
			if (optarg)
				ok = int_arg(optarg, 0, 100, &g.k.swap_pct);
			break;
		case O_TOTAL:
			ok = false;
			for (int i = 0; i <= TC_NONE; i++)
				if (!strcmp(optarg, total_names[i])) {
					o->total = (enum total_mode)i;
					ok = true;
				}
			break;
		case O_CLOCK: {
			int off;
			ok = int_arg(optarg, -100000000, 100000000, &off);
			o->clock_offset = off;
			break;
		}
		case O_LAT: ok = int_arg(optarg, 0, 600000, &g.k.latency_ms); break;
		case O_5XX: ok = int_arg(optarg, 0, 100, &g.k.fail_5xx); break;
		case O_DROP: ok = int_arg(optarg, 0, 100, &g.k.drop); break;
		case O_MALF: ok = int_arg(optarg, 0, 100, &g.k.malformed); break;
		case O_VERBOSE: o->verbose = true; break;
		case O_HELP: usage(stdout); exit(0);
		default: ok = false;
		}
	}
	if (!ok || optind != argc) {
		if (optind < argc && ok)
			fprintf(stderr, "fake_wdt: unexpected argument: %s\n", argv[optind]);
		else if (c != '?')
			fprintf(stderr, "fake_wdt: invalid value for %s\n", argv[optind - 1]);
		usage(stderr);
		return -EINVAL;
	}
	o->orders = orders;
	return 0;
}

int main(int argc, char **argv)
{
	g.o = (struct opts){.sid = "test-sid", .app_key = "test-key", .app_secret = "test-secret",
			    .target_app_key = "21363512", .tz = 8 * 3600, .span_days = 90,
			    .eligible_pct = 70, .materials = 500,
			    .start = "2026-08-01 00:00:00"};
	g.k.rate_limit = 60;
	if (parse_args(argc, argv) < 0)
		return 2;
	int64_t start;
	if (wj_time_parse(g.o.start, g.o.tz, &start) < 0) {
		fprintf(stderr, "fake_wdt: invalid --start\n");
		return 2;
	}
	g.rng = g.o.seed ^ 0x5DEECE66Dull;
	if (orders_generate(start, g.o.orders) < 0) {
		fprintf(stderr, "fake_wdt: out of memory\n");
		return 1;
	}

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g.o.port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
		(uint16_t)g.o.port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
		MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
		NULL, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)120, MHD_OPTION_END);
	int rc = 1;
	pthread_t live;
	bool live_started = false;
	if (!d) {
		fprintf(stderr, "fake_wdt: cannot listen on 127.0.0.1:%d\n", g.o.port);
		goto out;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	int port = info ? info->port : g.o.port;
	if (g.o.port_file) {
		char buf[16];
		int n = snprintf(buf, sizeof(buf), "%d\n", port);
		if (wj_write_file_atomic(g.o.port_file, buf, (size_t)n, 0644) < 0) {
			fprintf(stderr, "fake_wdt: cannot write %s\n", g.o.port_file);
			goto out;
		}
	}
	if (pthread_create(&live, NULL, live_thread, NULL) != 0)
		goto out;
	live_started = true;
	if (g.o.verbose)
		fprintf(stderr, "fake_wdt: listening on 127.0.0.1:%d with %zu orders\n", port, g.n);
	int sig = 0;
	while (sigwait(&set, &sig) == 0 && sig == SIGPIPE)
		;
	rc = 0;
out:
	atomic_store(&stopping, true);
	if (live_started)
		pthread_join(live, NULL);
	if (d)
		MHD_stop_daemon(d);
	for (size_t i = 0; i < g.n; i++)
		order_clear(&g.v[i]);
	free(g.v);
	free(g.calls_ms);
	return rc;
}
