/* The HTML status report (see report.h). */
#include "lib/report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/history.h"
#include "lib/log.h"

#define T(zh_text, en_text) (r->en ? (en_text) : (zh_text))

/* Chart geometry, viewBox units. */
#define CW 960.0  /* width */
#define CL 56.0   /* left margin: the y labels */
#define CR 8.0
#define CT 12.0   /* top margin */
#define CH 160.0  /* plot height */
#define CB 28.0   /* bottom margin: the day labels */

#define DLQ_GROUPS 50  /* reasons listed */
#define DLQ_FIRST 5    /* orders named per reason */
#define DLQ_SCAN 2000  /* dead letters grouped (each is parsed whole, order included) */
#define REVIEW_ROWS 200

/* One hour of the report. */
typedef struct hour {
	int64_t start; /* epoch s */
	uint64_t n[WJ_H_COUNT];
	uint32_t wdt_peak, jdy_peak; /* calls in the busiest minute */
	uint32_t lag[WJ_HISTORY_FLOWS]; /* the largest lag per report flow, or unknown */
	uint64_t fn[WJ_HISTORY_FLOWS][WJ_HF_COUNT]; /* per report flow: saved, parked, review */
} hour_t;

typedef struct report {
	bool en;
	const wj_config_t *cfg;
	wj_buf_t *b;
	int64_t now;
	unsigned hours;
	hour_t *h;
	const char *flows[WJ_HISTORY_FLOWS]; /* the flows of the configuration, in order */
	unsigned n_flows;
	int err;
} report_t;

/* ---- text ------------------------------------------------------------------------------- */

static void out(report_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(report_t *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char small[512];
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		r->err = r->err ? r->err : -EINVAL;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		if (wj_buf_append(r->b, small, (size_t)n) < 0)
			r->err = -ENOMEM;
		return;
	}
	va_start(ap, fmt);
	char *big = NULL;
	if (vasprintf(&big, fmt, ap) < 0 || wj_buf_append(r->b, big, strlen(big)) < 0)
		r->err = -ENOMEM;
	va_end(ap);
	free(big);
}

/* Text from the state or the status: printable, secrets masked, escaped for HTML (also
 * "://", so that no address in an error text reads as a link). */
static void text_n(report_t *r, const char *s, size_t n)
{
	char *p = wj_text_printable(s ? s : "", s ? n : 0);
	if (!p) {
		r->err = -ENOMEM;
		return;
	}
	wj_log_mask(p);
	for (const char *c = p; *c; c++) {
		const char *e = NULL;
		switch (*c) {
		case '&': e = "&amp;"; break;
		case '<': e = "&lt;"; break;
		case '>': e = "&gt;"; break;
		case '"': e = "&quot;"; break;
		case '\'': e = "&#39;"; break;
		case ':': e = !strncmp(c, "://", 3) ? "&#58;" : NULL; break;
		}
		if (wj_buf_append(r->b, e ? e : c, e ? strlen(e) : 1) < 0)
			r->err = -ENOMEM;
	}
	free(p);
}

static void text(report_t *r, const char *s)
{
	text_n(r, s, s ? strlen(s) : 0);
}

static const char *jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void when(report_t *r, int64_t epoch)
{
	char buf[WJ_TIME_LEN];
	wj_time_format(epoch, r->cfg->tz_offset, buf);
	out(r, "%s", buf);
}

static void duration(report_t *r, int64_t s)
{
	if (s < 0)
		s = 0;
	if (s < 120)
		out(r, T("%lld 秒", "%lld s"), (long long)s);
	else if (s < 7200)
		out(r, T("%lld 分钟", "%lld min"), (long long)(s / 60));
	else if (s < 2 * 86400)
		out(r, T("%lld 小时 %lld 分", "%lld h %lld min"), (long long)(s / 3600),
		    (long long)(s % 3600 / 60));
	else
		out(r, T("%lld 天 %lld 小时", "%lld d %lld h"), (long long)(s / 86400),
		    (long long)(s % 86400 / 3600));
}

/* ---- the history, by hour ---------------------------------------------------------------- */

static int read_hours(report_t *r, wj_txn_t *t, unsigned days)
{
	int tz = r->cfg->tz_offset;
	int64_t last = (r->now + tz) / 3600; /* the current hour, local */
	r->hours = days * 24;
	r->h = calloc(r->hours, sizeof(*r->h));
	if (!r->h)
		return -ENOMEM;
	for (unsigned i = 0; i < r->hours; i++) {
		hour_t *h = &r->h[i];
		h->start = (last - r->hours + 1 + i) * 3600 - tz;
		for (unsigned f = 0; f < WJ_HISTORY_FLOWS; f++)
			h->lag[f] = WJ_HISTORY_LAG_UNKNOWN;
		for (int64_t m = h->start / 60; m < h->start / 60 + 60; m++) {
			wj_hist_minute_t x;
			int ret = wj_history_get(t, m, &x);
			if (ret == -ENOENT)
				continue;
			if (ret < 0)
				return ret;
			for (int c = 0; c < WJ_H_COUNT; c++)
				h->n[c] += x.n[c];
			uint32_t jdy = x.n[WJ_H_JDY_SAVE] + x.n[WJ_H_JDY_MATERIAL] +
				       x.n[WJ_H_JDY_STORE] + x.n[WJ_H_JDY_LIST];
			if (x.n[WJ_H_WDT] > h->wdt_peak)
				h->wdt_peak = x.n[WJ_H_WDT];
			if (jdy > h->jdy_peak)
				h->jdy_peak = jdy;
			for (unsigned f = 0; f < r->n_flows; f++) {
				const wj_hist_flow_t *hf = wj_history_flow(&x, r->flows[f]);
				if (!hf)
					continue;
				for (int k = 0; k < WJ_HF_COUNT; k++)
					h->fn[f][k] += hf->n[k];
				if (hf->lag != WJ_HISTORY_LAG_UNKNOWN &&
				    (h->lag[f] == WJ_HISTORY_LAG_UNKNOWN || hf->lag > h->lag[f]))
					h->lag[f] = hf->lag;
			}
		}
	}
	return 0;
}

/* ---- charts ------------------------------------------------------------------------------ */

static void hour_label(report_t *r, int64_t start, char buf[WJ_TIME_LEN])
{
	wj_time_format(start, r->cfg->tz_offset, buf);
	memcpy(buf + 14, "00", 3); /* "YYYY-MM-DD HH:00" */
}

/* The frame of a chart: the <svg> with its scale, the y axis up to ymax, a label per day. */
static void chart_open(report_t *r, const char *cls, const char *title, double scale,
		       double ymax)
{
	out(r, "<svg class=\"chart %s\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
	       "data-scale=\"%.6f\" data-hours=\"%u\"><title>", cls, CW, CT + CH + CB, scale,
	    r->hours);
	text(r, title);
	out(r, "</title><text class=\"name\" x=\"%.1f\" y=\"%.1f\">", CL + 6, CT + 12);
	text(r, title);
	out(r, "</text>");
	out(r, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", CL,
	    CT + CH, CW - CR, CT + CH);
	out(r, "<text class=\"y\" x=\"%.1f\" y=\"%.1f\">%.0f</text>", CL - 4, CT + 8, ymax);
	out(r, "<text class=\"y\" x=\"%.1f\" y=\"%.1f\">0</text>", CL - 4, CT + CH);
	double bw = (CW - CL - CR) / r->hours;
	for (unsigned i = 0; i < r->hours; i++) {
		char l[WJ_TIME_LEN];
		hour_label(r, r->h[i].start, l);
		if (strcmp(l + 11, "00:00") && i)
			continue;
		l[10] = '\0';
		out(r, "<line class=\"day\" x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\"/>"
		       "<text class=\"x\" x=\"%.2f\" y=\"%.1f\">%s</text>", CL + i * bw, CT,
		    CL + i * bw, CT + CH + 4, CL + i * bw + 2, CT + CH + 18, l + 5);
	}
}

/* A bar of count from y_base upwards; returns its height. */
static double bar(report_t *r, const char *cls, double x, double w, double y_base,
		  uint64_t count, double scale)
{
	double h = (double)count * scale;
	out(r, "<rect class=\"%s\" data-count=\"%llu\" x=\"%.3f\" y=\"%.3f\" width=\"%.3f\" "
	       "height=\"%.3f\"/>", cls, (unsigned long long)count, x, y_base - h, w, h);
	return h;
}

/* Bills saved per hour, dead letters stacked on top: of flow f, or of all flows (f < 0). */
static void chart_bills(report_t *r, int f)
{
	uint64_t max = 1, (*n)[2] = calloc(r->hours, sizeof(*n));
	if (!n) {
		r->err = -ENOMEM;
		return;
	}
	for (unsigned i = 0; i < r->hours; i++) {
		const hour_t *h = &r->h[i];
		n[i][0] = f < 0 ? h->n[WJ_H_SAVED] : h->fn[f][WJ_HF_SAVED];
		n[i][1] = f < 0 ? h->n[WJ_H_PARKED] : h->fn[f][WJ_HF_PARKED];
		if (n[i][0] + n[i][1] > max)
			max = n[i][0] + n[i][1];
	}
	double scale = CH / (double)max, bw = (CW - CL - CR) / r->hours;
	chart_open(r, f < 0 ? "bills" : "bills flow",
		   f < 0 ? T("每小时保存的单据与死信 (所有数据流)",
			     "Bills saved and dead letters per hour (all flows)")
			 : T("每小时保存的单据与死信", "Bills saved and dead letters per hour"),
		   scale, (double)max);
	for (unsigned i = 0; i < r->hours; i++) {
		char l[WJ_TIME_LEN];
		hour_label(r, r->h[i].start, l);
		out(r, "<g class=\"hour\" data-hour=\"%s\" data-saved=\"%llu\" data-dead=\"%llu\">"
		       "<title>%s: %llu %s, %llu %s</title>", l, (unsigned long long)n[i][0],
		    (unsigned long long)n[i][1], l, (unsigned long long)n[i][0], T("张单据", "bills"),
		    (unsigned long long)n[i][1], T("条死信", "dead letters"));
		double x = CL + i * bw + bw * 0.1, w = bw * 0.8;
		double hs = bar(r, "saved", x, w, CT + CH, n[i][0], scale);
		bar(r, "dead", x, w, CT + CH - hs, n[i][1], scale);
		out(r, "</g>");
	}
	out(r, "</svg>\n");
	free(n);
}

/* Calls in the busiest minute of each hour against the limit (calls a minute). */
static void chart_quota(report_t *r, const char *title, bool jdy, wj_rate_t rate)
{
	double limit = rate.period_ms ? (double)rate.count * 60000.0 / (double)rate.period_ms : 0;
	double max = limit > 1 ? limit : 1;
	for (unsigned i = 0; i < r->hours; i++) {
		uint32_t p = jdy ? r->h[i].jdy_peak : r->h[i].wdt_peak;
		if (p > max)
			max = p;
	}
	max *= 1.1; /* room above the limit line */
	double scale = CH / max, bw = (CW - CL - CR) / r->hours;
	chart_open(r, "quota", title, scale, max);
	for (unsigned i = 0; i < r->hours; i++) {
		const hour_t *h = &r->h[i];
		uint32_t p = jdy ? h->jdy_peak : h->wdt_peak;
		char l[WJ_TIME_LEN];
		hour_label(r, h->start, l);
		out(r, "<g class=\"hour\" data-hour=\"%s\" data-peak=\"%u\"><title>%s: %u %s</title>",
		    l, p, l, p, T("次/分钟 (峰值)", "calls/min (peak)"));
		bar(r, p > limit ? "peak over" : "peak", CL + i * bw + bw * 0.1, bw * 0.8, CT + CH,
		    p, scale);
		out(r, "</g>");
	}
	double y = CT + CH - limit * scale;
	out(r, "<line class=\"limit\" data-limit=\"%.3f\" x1=\"%.1f\" y1=\"%.3f\" x2=\"%.1f\" "
	       "y2=\"%.3f\"/><text class=\"limit\" x=\"%.1f\" y=\"%.3f\">%s %.0f/min</text>",
	    limit, CL, y, CW - CR, y, CW - CR - 4, y - 4, T("限额", "limit"), limit);
	out(r, "</svg>\n");
}

/* The flow's lag over the period, the largest of each hour, as a line. */
static void chart_lag(report_t *r, unsigned f)
{
	uint32_t max = 60;
	for (unsigned i = 0; i < r->hours; i++)
		if (r->h[i].lag[f] != WJ_HISTORY_LAG_UNKNOWN && r->h[i].lag[f] > max)
			max = r->h[i].lag[f];
	double scale = CH / (double)max, bw = (CW - CL - CR) / r->hours;
	chart_open(r, "lag", T("延迟 (秒, 每小时最大值)", "Lag (s, largest per hour)"), scale, max);
	out(r, "<polyline class=\"lag\" points=\"");
	for (unsigned i = 0; i < r->hours; i++)
		if (r->h[i].lag[f] != WJ_HISTORY_LAG_UNKNOWN)
			out(r, "%.2f,%.2f ", CL + (i + 0.5) * bw,
			    CT + CH - (double)r->h[i].lag[f] * scale);
	out(r, "\"/>");
	for (unsigned i = 0; i < r->hours; i++) /* a lone hour shows as a dot */
		if (r->h[i].lag[f] != WJ_HISTORY_LAG_UNKNOWN)
			out(r, "<circle class=\"lag\" data-lag=\"%u\" cx=\"%.2f\" cy=\"%.2f\" r=\"2\"/>",
			    r->h[i].lag[f], CL + (i + 0.5) * bw, CT + CH - (double)r->h[i].lag[f] * scale);
	out(r, "</svg>\n");
}

/* ---- sections ---------------------------------------------------------------------------- */

static const char CSS[] =
	"body{font-family:system-ui,-apple-system,\"Noto Sans CJK SC\",\"Microsoft YaHei\","
	"sans-serif;margin:24px;color:#1d2733;background:#fff;max-width:1040px}"
	"h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;"
	"border-bottom:1px solid #d5dbe3;padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}"
	".meta{color:#5b6776;font-size:13px}"
	".health{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;"
	"font-weight:600;margin-left:8px;font-size:14px}"
	".running{background:#1f8f4e}.degraded{background:#d98a00}.stopped{background:#c0392b}"
	".up{color:#1f8f4e}.down{color:#c0392b;font-weight:600}"
	"table{border-collapse:collapse;font-size:13px;margin:6px 0}"
	"td,th{border:1px solid #d5dbe3;padding:3px 8px;text-align:left;vertical-align:top}"
	"th{background:#f1f4f8}td.n{text-align:right}.err{color:#c0392b}"
	".cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}"
	".card{border:1px solid #d5dbe3;border-radius:6px;padding:8px 14px;min-width:110px}"
	".card b{display:block;font-size:22px}"
	"svg.chart{width:100%;height:auto;display:block;margin:4px 0 12px;background:#fafbfc}"
	"svg .axis,svg .day{stroke:#b8c2cc;stroke-width:1}svg .day{stroke-dasharray:2 3}"
	"svg text{font-size:11px;fill:#5b6776}svg text.y{text-anchor:end}"
	"svg rect.saved{fill:#2e7dd7}svg rect.dead{fill:#d9534f}"
	"svg rect.peak{fill:#7a9cc6}svg rect.over{fill:#d9534f}"
	"svg line.limit{stroke:#c0392b;stroke-width:1.5;stroke-dasharray:6 4}"
	"svg text.limit{fill:#c0392b;text-anchor:end}svg text.name{font-size:12px;fill:#1d2733}"
	"svg polyline.lag{fill:none;stroke:#8e44ad;stroke-width:1.5}svg circle.lag{fill:#8e44ad}"
	".legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}"
	".note{color:#5b6776;font-size:12px}";

/* running, degraded or stopped: the status says so, unless it is older than three status
 * intervals (a daemon that died writes nothing). */
static const char *health(report_t *r, json_t *st)
{
	const char *state = jstr(st, "state");
	int64_t updated = json_integer_value(json_object_get(st, "updated"));
	int64_t stale = (int64_t)(r->cfg->status_interval_ms / 1000) * 3 + 30;
	if (!state || !strcmp(state, "stopped") || !strcmp(state, "stopping") ||
	    r->now - updated > stale)
		return "stopped";
	if (!strcmp(state, "degraded"))
		return "degraded";
	json_t *eps = json_object_get(st, "endpoints"), *ep;
	const char *k;
	json_object_foreach(eps, k, ep)
		if (json_is_false(json_object_get(ep, "up")))
			return "degraded";
	return "running";
}

static void section_header(report_t *r, json_t *st, json_t *counts)
{
	const char *hl = health(r, st);
	const char *hl_text = !strcmp(hl, "running")    ? T("运行中", "running")
			      : !strcmp(hl, "degraded") ? T("降级", "degraded")
							: T("已停止", "stopped");
	out(r, "<h1>wdt2jdy %s<span class=\"health %s\" data-health=\"%s\">%s</span></h1>\n",
	    T("状态报告", "status report"), hl, hl, hl_text);
	out(r, "<p class=\"meta\">%s ", T("生成于", "Generated"));
	when(r, r->now);
	out(r, " (%s)", r->cfg->timezone ? r->cfg->timezone : "");
	out(r, " · %s %u %s", T("时段: 最近", "period: the last"), r->hours / 24,
	    T("天", r->hours == 24 ? "day" : "days"));
	if (jstr(st, "updated") || json_is_integer(json_object_get(st, "updated"))) {
		out(r, " · %s ", T("守护进程状态写于", "daemon status written"));
		when(r, json_integer_value(json_object_get(st, "updated")));
	} else {
		out(r, " · %s", T("没有守护进程的状态文件", "no status file of the daemon"));
	}
	out(r, "</p>\n");
	/* endpoints */
	out(r, "<table class=\"endpoints\"><tr><th>%s</th><th>%s</th><th>%s</th></tr>",
	    T("接口", "API"), T("状态", "state"), T("原因", "why"));
	static const char *const eps[2] = {"wdt", "kingdee"};
	for (int i = 0; i < 2; i++) {
		json_t *ep = json_object_get(json_object_get(st, "endpoints"), eps[i]);
		bool known = json_is_boolean(json_object_get(ep, "up"));
		bool up = json_is_true(json_object_get(ep, "up"));
		out(r, "<tr data-endpoint=\"%s\" data-up=\"%s\"><td>%s</td><td class=\"%s\">%s</td><td>",
		    eps[i], !known ? "unknown" : up ? "true" : "false",
		    i ? T("金蝶云星辰", "Kingdee") : T("旺店通", "WDT"), up ? "up" : "down",
		    !known ? "-" : up ? T("正常", "up") : T("不可用", "down"));
		if (!up)
			text(r, jstr(ep, "error"));
		out(r, "</td></tr>");
	}
	out(r, "</table>\n");
	if (jstr(st, "last_error")) {
		out(r, "<p class=\"err\" id=\"last-error\">%s: ", T("最近错误", "Last error"));
		text(r, jstr(st, "last_error"));
		if (jstr(st, "last_error_at")) {
			out(r, " (");
			text(r, jstr(st, "last_error_at"));
			out(r, ")");
		}
		out(r, "</p>\n");
	}
	out(r, "<div class=\"cards\">");
	static const char *const keys[4] = {"posted", "dead", "review", "depth"};
	const char *names[4] = {T("已保存单据", "bills saved"), T("死信", "dead letters"),
				T("待复核", "to review"), T("队列", "queued")};
	for (int i = 0; i < 4; i++)
		out(r, "<div class=\"card\" data-card=\"%s\"><b>%lld</b>%s</div>", keys[i],
		    (long long)json_integer_value(json_object_get(counts, keys[i])), names[i]);
	out(r, "</div>\n");
}

static void section_flows(report_t *r, wj_txn_t *t)
{
	out(r, "<h2>%s</h2>\n", T("数据流", "Flows"));
	out(r, "<p class=\"legend\"><span style=\"background:#2e7dd7\"></span>%s"
	       "<span style=\"background:#d9534f\"></span>%s</p>\n",
	    T("已保存单据", "bills saved"), T("死信 (叠加)", "dead letters (stacked)"));
	chart_bills(r, -1);
	for (unsigned f = 0; f < r->n_flows; f++) {
		const char *name = r->flows[f];
		json_t *c = wj_txn_get_json(t, WJ_DB_CURSORS, name, strlen(name));
		int64_t cursor = json_integer_value(json_object_get(c, "cursor"));
		json_decref(c);
		out(r, "<section class=\"flow\" data-flow=\"");
		text(r, name);
		out(r, "\"><h3 class=\"flow\" data-flow=\"");
		text(r, name);
		out(r, "\">%s ", T("数据流", "Flow"));
		text(r, name);
		out(r, "</h3>\n<table><tr><th>%s</th><td>", T("游标", "cursor"));
		if (cursor > 0)
			when(r, cursor);
		else
			out(r, "-");
		out(r, "</td></tr><tr><th>%s</th><td>", T("延迟", "lag"));
		if (cursor > 0)
			duration(r, r->now - cursor);
		else
			out(r, "-");
		out(r, "</td></tr></table>\n");
		chart_bills(r, (int)f);
		chart_lag(r, f);
		out(r, "</section>\n");
	}
}

static void section_quota(report_t *r)
{
	const wj_config_t *c = r->cfg;
	out(r, "<h2>%s</h2>\n<p class=\"note\">%s</p>\n", T("接口配额", "API quota"),
	    T("每小时内最繁忙一分钟的调用次数；虚线为配置的限额。",
	      "Calls in the busiest minute of each hour; the dashed line is the configured limit."));
	out(r, "<h3>%s</h3>\n", T("旺店通", "WDT"));
	chart_quota(r, T("旺店通每分钟调用 (峰值)", "WDT calls a minute (peak)"), false,
		    c->wdt.rate_limit);
	out(r, "<h3>%s</h3>\n", T("金蝶云星辰", "Kingdee"));
	chart_quota(r, T("金蝶每分钟调用 (峰值)", "Kingdee calls a minute (peak)"), true,
		    c->kingdee.rate_limit);
	/* totals of the period */
	uint64_t tot[WJ_H_COUNT] = {0};
	for (unsigned i = 0; i < r->hours; i++)
		for (int k = 0; k < WJ_H_COUNT; k++)
			tot[k] += r->h[i].n[k];
	out(r, "<table class=\"totals\"><tr>");
	for (int k = WJ_H_WDT; k < WJ_H_COUNT; k++)
		out(r, "<th>%s</th>", wj_history_count_name(k));
	out(r, "</tr><tr>");
	for (int k = WJ_H_WDT; k < WJ_H_COUNT; k++)
		out(r, "<td class=\"n\" data-total=\"%s\">%llu</td>", wj_history_count_name(k),
		    (unsigned long long)tot[k]);
	out(r, "</tr></table>\n<p class=\"note\">%s</p>\n",
	    T("调用与错误 (rate_limited: 被限流的应答; auth, transient, permanent, unknown: "
	      "按类别的失败调用) 为本时段合计。",
	      "Calls and errors of the period (rate_limited: answers that said too many calls; "
	      "auth, transient, permanent, unknown: failed calls by kind)."));
}

typedef struct dlq_group {
	char *reason;
	size_t count;
	char *first[DLQ_FIRST];
} dlq_group_t;

static void section_dead(report_t *r, wj_txn_t *t)
{
	dlq_group_t g[DLQ_GROUPS + 1] = {{0}}; /* the last: every other reason */
	size_t ng = 0, total = 0, scanned = 0;
	wj_txn_count(t, WJ_DB_DEAD, &total);
	wj_iter_t it;
	if (wj_iter_open(t, WJ_DB_DEAD, &it) == 0) {
		for (int ret = wj_iter_seek(&it, NULL, 0); ret == 0 && scanned < DLQ_SCAN;
		     ret = wj_iter_next(&it)) {
			wj_val_t v = wj_iter_val(&it);
			json_t *dl = json_loadb(v.data, v.len, 0, NULL);
			const char *reason = jstr(dl, "reason") ? jstr(dl, "reason") : "?";
			const char *no = jstr(dl, "stockin_no") ? jstr(dl, "stockin_no") : "?";
			size_t i = 0;
			while (i < ng && strcmp(g[i].reason, reason))
				i++;
			if (i == ng && ng < DLQ_GROUPS && (g[i].reason = strdup(reason)))
				ng++;
			else if (i == ng)
				i = DLQ_GROUPS; /* past the groups listed, or out of memory */
			if (g[i].count < DLQ_FIRST && !(g[i].first[g[i].count] = strdup(no)))
				r->err = -ENOMEM;
			g[i].count++;
			scanned++;
			json_decref(dl);
		}
		wj_iter_close(&it);
	}
	if (total < scanned) /* the count failed */
		total = scanned;
	out(r, "<h2>%s <small data-dead-total=\"%zu\">(%zu)</small></h2>\n",
	    T("死信 (按原因)", "Dead letters by reason"), total, total);
	if (!total)
		out(r, "<p>%s</p>\n", T("没有死信。", "None."));
	else
		out(r, "<table class=\"dlq\"><tr><th>%s</th><th>%s</th><th>%s</th></tr>\n",
		    T("原因", "reason"), T("数量", "count"), T("前几个单号", "first orders"));
	for (size_t i = 0; i <= DLQ_GROUPS; i++) {
		if (!g[i].count)
			continue;
		out(r, "<tr class=\"dlq-group\" data-count=\"%zu\"><td>", g[i].count);
		if (i < DLQ_GROUPS)
			text(r, g[i].reason);
		else
			out(r, "%s", T("其他原因", "other reasons"));
		out(r, "</td><td class=\"n\">%zu</td><td>", g[i].count);
		for (size_t k = 0; k < DLQ_FIRST && k < g[i].count; k++) {
			out(r, "%s<span class=\"dlq-order\" data-stockin-no=\"", k ? ", " : "");
			text(r, g[i].first[k]);
			out(r, "\">");
			text(r, g[i].first[k]);
			out(r, "</span>");
			free(g[i].first[k]);
		}
		if (g[i].count > DLQ_FIRST)
			out(r, " …");
		out(r, "</td></tr>\n");
		free(g[i].reason);
	}
	if (total > scanned)
		out(r, "</table>\n<p class=\"note\" data-dead-grouped=\"%zu\">%s %zu%s</p>\n",
		    scanned, T("按原因分组的仅为前", "grouped by reason: the first"), scanned,
		    T(" 条", ""));
	if (total)
		out(r, "%s<p class=\"note\">%s</p>\n", total > scanned ? "" : "</table>\n",
		    T("wdt2jdyctl dlq list 列出全部; 修正原因后用 wdt2jdyctl dlq retry 重试。",
		      "wdt2jdyctl dlq list shows them all; fix the cause, then wdt2jdyctl dlq retry."));
}

static void review_row(report_t *r, wj_val_t v)
{
	json_t *rv = json_loadb(v.data, v.len, 0, NULL);
	out(r, "<tr class=\"review-row\" data-stockin-no=\"");
	text(r, jstr(rv, "stockin_no"));
	out(r, "\"><td>");
	text(r, jstr(rv, "flow"));
	out(r, "</td><td>");
	text(r, jstr(rv, "stockin_no"));
	out(r, "</td><td>");
	text(r, jstr(rv, "bill_no"));
	out(r, "</td><td>");
	if (json_integer_value(json_object_get(rv, "seen")) > 0)
		when(r, json_integer_value(json_object_get(rv, "seen")));
	out(r, "</td><td>");
	text(r, jstr(rv, "note") ? jstr(rv, "note") : jstr(rv, "cannot_map"));
	out(r, "</td></tr>\n");
	json_decref(rv);
}

static void section_review(report_t *r, wj_txn_t *t)
{
	size_t n = 0;
	wj_txn_count(t, WJ_DB_REVIEW, &n);
	out(r, "<h2>%s <small data-review-total=\"%zu\">(%zu)</small></h2>\n",
	    T("待复核 (过账后变更)", "To review (changed after posting)"), n, n);
	if (!n) {
		out(r, "<p>%s</p>\n", T("没有。", "None."));
		return;
	}
	out(r, "<table class=\"review\"><tr><th>%s</th><th>%s</th><th>%s</th><th>%s</th><th>%s</th>"
	       "</tr>\n", T("数据流", "flow"), T("入库单号", "stock-in"), T("单据", "bill"),
	    T("发现于", "seen"), T("说明", "note"));
	wj_iter_t it;
	size_t shown = 0;
	if (wj_iter_open(t, WJ_DB_REVIEW, &it) == 0) {
		for (int ret = wj_iter_seek(&it, NULL, 0); ret == 0 && shown < REVIEW_ROWS;
		     ret = wj_iter_next(&it), shown++)
			review_row(r, wj_iter_val(&it));
		wj_iter_close(&it);
	}
	out(r, "</table>\n");
	if (n > shown)
		out(r, "<p class=\"note\">%s %zu; wdt2jdyctl review list</p>\n",
		    T("仅显示前", "only the first shown:"), shown);
}

int wj_report_html(wj_store_t *s, const wj_config_t *cfg, json_t *status,
		   const wj_report_opts_t *o, wj_buf_t *b)
{
	report_t rep = {.en = o->en, .cfg = cfg, .b = b, .now = o->now}, *r = &rep;
	unsigned days = o->days < 1 ? 1 : o->days > WJ_HISTORY_DAYS ? WJ_HISTORY_DAYS : o->days;
	for (size_t i = 0; i < cfg->n_flows && r->n_flows < WJ_HISTORY_FLOWS; i++)
		r->flows[r->n_flows++] = cfg->flows[i].name;
	wj_txn_t t;
	int ret = wj_txn_begin(s, &t, false);
	if (ret < 0)
		return ret;
	ret = read_hours(r, &t, days);
	if (ret < 0)
		goto fail;
	size_t dead = 0, review = 0, q = 0, dl = 0, in = 0;
	wj_txn_count(&t, WJ_DB_DEAD, &dead);
	wj_txn_count(&t, WJ_DB_REVIEW, &review);
	wj_txn_count(&t, WJ_DB_QUEUE, &q);
	wj_txn_count(&t, WJ_DB_DELAYED, &dl);
	wj_txn_count(&t, WJ_DB_INFLIGHT, &in);
	uint64_t saved = wj_stat_get(&t, "stat:saved");
	json_t *counts = json_pack("{s:I, s:I, s:I, s:I}", "posted", (json_int_t)saved, "dead",
				   (json_int_t)dead, "review", (json_int_t)review, "depth",
				   (json_int_t)(q + dl + in));

	out(r, "<!DOCTYPE html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">"
	       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
	       "<title>wdt2jdy %s</title><style>%s</style></head><body>\n",
	    T("zh-CN", "en"), T("状态报告", "status report"), CSS);
	section_header(r, status, counts);
	json_decref(counts);
	section_flows(r, &t);
	section_quota(r);
	section_dead(r, &t);
	section_review(r, &t);
	out(r, "<p class=\"note\">%s</p>\n</body></html>\n",
	    T("图表: 每个柱的高度 = data-count × 图表的 data-scale。本页不含脚本, 也不引用任何外部资源。",
	      "Charts: each bar's height = data-count × the chart's data-scale. This page has no "
	      "script and refers to nothing outside itself."));
	ret = t.err ? t.err : r->err;
fail:
	wj_txn_abort(&t);
	free(r->h);
	return ret;
}

int wj_report_write(const char *path, wj_store_t *s, const wj_config_t *cfg, json_t *status,
		    const wj_report_opts_t *o)
{
	wj_buf_t b = {0};
	int ret = wj_report_html(s, cfg, status, o, &b);
	if (ret == 0)
		ret = wj_write_file_atomic(path, b.data, b.len, 0640);
	wj_buf_free(&b);
	return ret;
}
