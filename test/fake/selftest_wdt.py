#!/usr/bin/env python3
"""Self-test of the fake WDT server: signatures (API.md vectors), both transports, window and
paging semantics, parameter checks, rate limit, faults, admin endpoints, generator determinism,
live mode, shifting and swapping during a scan, the readings of total_count, a shifted clock and
bare number tokens. Usage: selftest_wdt.py PATH/TO/fake_wdt"""

import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wjfake  # noqa: E402
from wjfake import openapi2_call, qimen_call, wdt_time, parse_wdt_time  # noqa: E402

BINARY = sys.argv[1] if len(sys.argv) > 1 else wjfake.wdt_binary()
START = "2026-08-01 00:00:00"
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, flush=True)


def start(*args):
    return wjfake.start_wdt(*args, binary=BINARY)


def ok_list(resp, transport):
    """(total_count or None when absent, stockin_list) of a successful answer, or None."""
    body = resp["response"] if transport == "qimen" else resp
    code = body.get("errorcode") if transport == "qimen" else body.get("code")
    if code != 0 or "flag" in body:
        return None
    return body.get("total_count"), body["stockin_list"]


def error_code(resp, transport):
    body = resp["response"] if transport == "qimen" else resp
    if body.get("flag") == "failure":
        return body.get("code")
    return body.get("errorcode") if transport == "qimen" else body.get("code")


CALL = {"qimen": qimen_call, "openapi2": openapi2_call}


def scan(url, transport, business, page_size, max_pages=200):
    """Page through a window; returns (total_count of page 0, ids in order)."""
    ids, total = [], None
    for page in range(max_pages):
        q = dict(business, page_no=str(page), page_size=str(page_size))
        status, resp = CALL[transport](url, q)
        r = ok_list(resp, transport)
        if status != 200 or r is None:
            raise AssertionError("page %d failed: %r" % (page, resp))
        if total is None:
            total = r[0]
        ids += [o["stockin_id"] for o in r[1]]
        if len(r[1]) < page_size:
            break
    return total, ids


def expected(orders, t0, t1, order_type=None, status=None):
    sel = [o for o in orders
           if t0 <= parse_wdt_time(o["modified"]) <= t1
           and (order_type is None or o["order_type"] == order_type)
           and (status is None or o["status"] == status)]
    sel.sort(key=lambda o: (parse_wdt_time(o["modified"]), o["stockin_id"]))
    return [o["stockin_id"] for o in sel]


def test_vectors():
    p = {"app_key": "12345678", "end_time": "2024-01-01 12:00:00", "format": "json",
         "method": "wdt.stockin.order.query", "order_type": "4", "page_no": "0",
         "page_size": "40", "sid": "test2", "sign_method": "md5",
         "start_time": "2024-01-01 00:00:00", "target_app_key": "21363512",
         "timestamp": "2024-01-01 12:00:00", "v": "2.0"}
    check(wjfake.qimen_sign(p, "testsecret") == "EAE9CFE97298369077F4B47732AEF272",
          "qimen vector")
    p = {"appkey": "test2-xx", "end_time": "2016-08-01 13:00:00", "page_no": "0",
         "page_size": "40", "sid": "test2", "start_time": "2016-08-01 12:00:00",
         "timestamp": "1470042310"}
    check(wjfake.openapi2_pack(p) ==
          "06-appkey:0008-test2-xx;08-end_time:0019-2016-08-01 13:00:00;07-page_no:0001-0;"
          "09-page_size:0002-40;03-sid:0005-test2;10-start_time:0019-2016-08-01 12:00:00;"
          "09-timestamp:0010-1470042310", "openapi2 packed vector")
    check(wjfake.openapi2_sign(p, "12345") == "ad4e6fe037ea6e3ba4768317be9d1309",
          "openapi2 vector")
    check(wjfake.openapi2_pack({"k": "盘点"}) == "01-k:0002-盘点", "code point lengths")


def test_queries(fake, orders):
    t0 = parse_wdt_time(START) + 10 * 86400
    t1 = t0 + 30 * 86400
    biz = {"start_time": wdt_time(t0), "end_time": wdt_time(t1), "order_type": "4",
           "status": "80"}
    want = expected(orders, t0, t1, "4", "80")
    check(len(want) > 40, "enough eligible orders in the window (%d)" % len(want))
    for transport in ("qimen", "openapi2"):
        total, ids = scan(fake.url, transport, biz, 17)
        check(total == len(want), "%s total_count %s != %d" % (transport, total, len(want)))
        check(ids == want, "%s paging gives the sorted filtered set" % transport)
    # Without filters: all order types.
    total, ids = scan(fake.url, "qimen", {"start_time": biz["start_time"],
                                          "end_time": biz["end_time"]}, 100)
    check(ids == expected(orders, t0, t1), "unfiltered window")
    check(any(o["order_type"] != "4" or o["status"] != "80" for o in orders),
          "generator makes non-eligible orders")
    # Inclusive window ends.
    o = orders[len(orders) // 2]
    t = parse_wdt_time(o["modified"])
    for transport in ("qimen", "openapi2"):
        _, ids = scan(fake.url, transport, {"start_time": o["modified"],
                                            "end_time": o["modified"]}, 100)
        check(o["stockin_id"] in ids, "%s single-second window holds its order" % transport)
        _, ids = scan(fake.url, transport, {"start_time": wdt_time(t - 100),
                                            "end_time": wdt_time(t - 1)}, 100)
        check(o["stockin_id"] not in ids, "%s window ending before excludes it" % transport)
        _, ids = scan(fake.url, transport, {"start_time": wdt_time(t + 1),
                                            "end_time": wdt_time(t + 100)}, 100)
        check(o["stockin_id"] not in ids, "%s window starting after excludes it" % transport)
    # Other filters.
    wh = orders[0]["warehouse_no"]
    _, ids = scan(fake.url, "openapi2", {"start_time": START, "end_time": wdt_time(
        parse_wdt_time(START) + 30 * 86400), "warehouse_no": wh}, 100)
    check(ids and all(x["warehouse_no"] == wh for x in orders if x["stockin_id"] in ids),
          "warehouse_no filter")
    _, ids = scan(fake.url, "qimen", {"start_time": START, "end_time": wdt_time(
        parse_wdt_time(START) + 30 * 86400), "stockin_no": orders[0]["stockin_no"]}, 100)
    check(ids == [orders[0]["stockin_id"]] or parse_wdt_time(orders[0]["modified"]) >
          parse_wdt_time(START) + 30 * 86400, "stockin_no filter")
    # Exactly 30 days is allowed; a page past the end is empty, without total_count (page0).
    status, resp = qimen_call(fake.url, dict(biz, page_no="1000", page_size="100"))
    r = ok_list(resp, "qimen")
    check(r is not None and r[0] is None and r[1] == [], "page past the end")
    # A Chinese value (signed with code point lengths) is accepted by openapi2.
    status, resp = openapi2_call(fake.url, dict(biz, note="盘点单"))
    check(ok_list(resp, "openapi2") is not None, "openapi2 with a Chinese value: %r" % resp)
    # Qimen parameters in the query string.
    p = wjfake.qimen_params(biz)
    qs = urllib.parse.urlencode(p)
    req = urllib.request.Request(fake.url + "/router/qm?" + qs, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        check(ok_list(json.loads(r.read()), "qimen") is not None, "qimen query string")


def test_rejections(fake):
    t0 = parse_wdt_time(START)
    good = {"start_time": wdt_time(t0), "end_time": wdt_time(t0 + 86400)}
    cases = [
        ("page_size 101", dict(good, page_size="101"), 100),
        ("page_size 0", dict(good, page_size="0"), 100),
        ("page_no -1", dict(good, page_no="-1"), 100),
        ("31-day window", {"start_time": wdt_time(t0), "end_time": wdt_time(t0 + 31 * 86400)},
         100),
        ("30 days + 1 s", {"start_time": wdt_time(t0),
                           "end_time": wdt_time(t0 + 30 * 86400 + 1)}, 100),
        ("start after end", {"start_time": wdt_time(t0 + 10), "end_time": wdt_time(t0)}, 100),
        ("missing end_time", {"start_time": wdt_time(t0)}, 100),
        ("date only", {"start_time": "2026-08-01", "end_time": wdt_time(t0)}, 100),
    ]
    for transport in ("qimen", "openapi2"):
        for name, biz, code in cases:
            status, resp = CALL[transport](fake.url, biz)
            check(status == 200 and error_code(resp, transport) == code,
                  "%s %s rejected with %d: %r" % (transport, name, code, resp))
        status, resp = CALL[transport](fake.url, dict(good, page_size="100"))
        check(ok_list(resp, transport) is not None, "%s page_size 100 accepted" % transport)
    check("page_size" in json.dumps(
        qimen_call(fake.url, dict(good, page_size="101"))[1], ensure_ascii=False),
        "message names the parameter")
    # Bad signatures.
    status, resp = qimen_call(fake.url, good, secret="wrong")
    body = resp["response"]
    check(status == 200 and body.get("flag") == "failure" and
          body.get("code") == "sign-check-failure" and
          body.get("sub_code") == "isv.invalid-signature", "qimen bad sign: %r" % resp)
    status, resp = openapi2_call(fake.url, good, secret="wrong")
    check(resp.get("code") == 1004, "openapi2 bad sign: %r" % resp)
    # Wrong keys.
    status, resp = qimen_call(fake.url, good, app_key="other", secret="test-secret")
    check(resp["response"].get("flag") == "failure", "qimen wrong app_key")
    status, resp = qimen_call(fake.url, good, target_app_key="1")
    check(resp["response"].get("flag") == "failure", "qimen wrong target_app_key")
    status, resp = qimen_call(fake.url, good, sid="other")
    check(resp["response"].get("flag") == "failure", "qimen wrong sid")
    status, resp = openapi2_call(fake.url, good, sid="other")
    check(resp.get("code") not in (0, None), "openapi2 wrong sid")
    # Stale and fresh timestamps.
    now = time.time()
    status, resp = qimen_call(fake.url, good, timestamp=wdt_time(now - 11 * 60))
    check(resp["response"].get("flag") == "failure", "qimen stale timestamp: %r" % resp)
    status, resp = qimen_call(fake.url, good, timestamp=wdt_time(now + 11 * 60))
    check(resp["response"].get("flag") == "failure", "qimen future timestamp")
    status, resp = qimen_call(fake.url, good, timestamp=wdt_time(now - 8 * 60))
    check(ok_list(resp, "qimen") is not None, "qimen 8-minute-old timestamp accepted")
    status, resp = openapi2_call(fake.url, good, timestamp=int(now) - 6 * 60)
    check(resp.get("code") not in (0, None), "openapi2 stale timestamp: %r" % resp)
    status, resp = openapi2_call(fake.url, good, timestamp=int(now) - 3 * 60)
    check(ok_list(resp, "openapi2") is not None, "openapi2 3-minute-old timestamp accepted")
    # Empty values are never sent by the real client.
    status, resp = qimen_call(fake.url, dict(good, warehouse_no=""))
    check(error_code(resp, "qimen") == 100, "qimen empty value rejected")
    status, resp = openapi2_call(fake.url, dict(good, warehouse_no=""))
    check(error_code(resp, "openapi2") == 100, "openapi2 empty value rejected")
    status, resp = qimen_call(fake.url, good, method="wdt.trade.query")
    check(resp["response"].get("flag") == "failure", "qimen wrong method")
    # Not the API.
    try:
        urllib.request.urlopen(fake.url + "/router/other", timeout=10)
        check(False, "unknown path answers 404")
    except urllib.error.HTTPError as e:
        check(e.code == 404, "unknown path answers 404")


def test_admin(fake, orders):
    check(all(o["order_type"] == "4" and o["status"] == "80"
              for o in fake.admin_get("/admin/orders?eligible=1")["orders"]),
          "eligible filter of /admin/orders")
    elig = [o for o in orders if o["order_type"] == "4" and o["status"] == "80"]
    check(len(fake.admin_get("/admin/orders?eligible=1")["orders"]) == len(elig),
          "eligible count")
    o = orders[0]
    check(o["stockin_no"].startswith("RK") and isinstance(o["stockin_id"], int) and
          isinstance(o["status"], str) and 1 <= len(o["details_list"]) <= 20,
          "order shape")
    line = o["details_list"][0]
    check(line["goods_count"].endswith(".0000") and line["spec_no"].startswith("SP") and
          line["goods_unit"] in ("个", "箱", "千克"), "line shape")
    check(all(x["src_order_no"].startswith("PD") for x in elig), "PD numbers on stock-takes")
    crafted = json.loads(json.dumps(o))
    crafted.update(stockin_id=990001, stockin_no="RKCRAFTED1", remark="crafted",
                   modified="2026-08-02 10:00:00")
    crafted["details_list"] = [dict(line, goods_name="@@hex:ff41", stockin_id=990001)]
    r = fake.admin_post("/admin/orders", crafted)
    check(r.get("inserted") == 1 and r.get("replaced") == 0, "insert: %r" % r)
    crafted["remark"] = "crafted again"
    r = fake.admin_post("/admin/orders", {"orders": [crafted]})
    check(r.get("inserted") == 0 and r.get("replaced") == 1, "replace: %r" % r)
    got = [x for x in fake.admin_get("/admin/orders")["orders"] if x["stockin_id"] == 990001]
    check(len(got) == 1 and got[0]["remark"] == "crafted again", "replaced order listed")
    biz = {"start_time": "2026-08-02 10:00:00", "end_time": "2026-08-02 10:00:00",
           "stockin_no": "RKCRAFTED1"}
    status, raw = qimen_call(fake.url, biz, raw=True)
    check(b'"goods_name":"\xffA"' in raw, "raw invalid UTF-8 bytes served")
    try:
        raw.decode("utf-8")
        check(False, "served body is not valid UTF-8")
    except UnicodeDecodeError:
        pass
    big = json.loads(json.dumps(o))
    big.update(stockin_id="990002", stockin_no="RKBIG", modified="2026-08-03 10:00:00")
    big["details_list"] = [dict(line, rec_id=5000000 + i, spec_no="SP%05d" % (i % 500 + 1))
                           for i in range(10000)]
    r = fake.admin_post("/admin/orders", [big])
    check(r.get("inserted") == 1, "10,000-line order inserted (string id)")
    _, resp = openapi2_call(fake.url, {"start_time": "2026-08-03 10:00:00",
                                       "end_time": "2026-08-03 10:00:00",
                                       "stockin_no": "RKBIG"})
    got = ok_list(resp, "openapi2")
    check(got and got[0] == 1 and len(got[1][0]["details_list"]) == 10000,
          "10,000-line order served")
    try:
        fake.admin_post("/admin/orders", {"stockin_id": 1})
        check(False, "order without modified refused")
    except urllib.error.HTTPError as e:
        check(e.code == 400, "order without modified refused")


def test_faults(fake):
    biz = {"start_time": START, "end_time": "2026-08-02 00:00:00"}
    fake.admin_post("/admin/faults", {"fail_5xx": 100})
    status, raw = qimen_call(fake.url, biz, raw=True)
    check(status == 502 and b"<html>" in raw, "fail_5xx gives 502 HTML")
    fake.admin_post("/admin/faults", {"fail_5xx": 0, "malformed": 100})
    status, raw = openapi2_call(fake.url, biz, raw=True)
    try:
        json.loads(raw)
        check(False, "malformed gives truncated JSON")
    except ValueError:
        check(status == 200 and raw.startswith(b"{"), "malformed gives truncated JSON")
    fake.admin_post("/admin/faults", {"malformed": 0, "drop": 100})
    try:
        qimen_call(fake.url, biz, raw=True)
        check(False, "drop closes the connection")
    except (http.client.HTTPException, ConnectionError, urllib.error.URLError):
        pass
    fake.admin_post("/admin/faults", {"drop": 0, "latency_ms": 300})
    t = time.monotonic()
    status, resp = qimen_call(fake.url, biz)
    check(time.monotonic() - t >= 0.29 and ok_list(resp, "qimen") is not None, "latency")
    knobs = fake.admin_post("/admin/faults", {"latency_ms": 0})
    check(knobs["latency_ms"] == 0 and knobs["drop"] == 0, "knobs echoed")
    try:
        fake.admin_post("/admin/faults", {"no_such_knob": 1})
        check(False, "unknown knob refused")
    except urllib.error.HTTPError as e:
        check(e.code == 400, "unknown knob refused")
    stats = fake.admin_get("/admin/stats")
    check(stats["fault_5xx"] == 1 and stats["malformed"] == 1 and stats["dropped"] == 1,
          "fault counters: %r" % stats)


def test_stats(fake):
    fake.admin_post("/admin/reset-stats", {})
    biz = {"start_time": START, "end_time": "2026-08-02 00:00:00"}
    for _ in range(3):
        qimen_call(fake.url, biz)
    openapi2_call(fake.url, biz)
    qimen_call(fake.url, biz, secret="x")
    openapi2_call(fake.url, dict(biz, page_size="101"))
    s = fake.admin_get("/admin/stats")
    check(s["calls"] == 6 and s["ok"] == 4 and s["sign_errors"] == 1 and
          s["bad_params"] == 1, "stats totals: %r" % s)
    check(s["endpoints"]["qimen"]["calls"] == 4 and s["endpoints"]["openapi2"]["ok"] == 1,
          "stats per endpoint")
    check(s["max_calls_in_any_60s"] == 5, "max_calls_in_any_60s counts admitted calls")


def test_rate_limit():
    with start("--orders", "5", "--rate-limit", "5/min") as fake:
        biz = {"start_time": START, "end_time": "2026-08-02 00:00:00"}
        codes = []
        for i in range(8):
            transport = "qimen" if i % 2 == 0 else "openapi2"
            _, resp = CALL[transport](fake.url, biz)
            codes.append(error_code(resp, transport))
        check(codes[:5] == [0] * 5 and codes[5:] == [1012] * 3, "rate limit: %r" % codes)
        s = fake.admin_get("/admin/stats")
        check(s["rate_limited"] == 3 and s["max_calls_in_any_60s"] == 5, "rate stats %r" % s)
        fake.admin_post("/admin/faults", {"rate_limit": 0})
        _, resp = qimen_call(fake.url, biz)
        check(error_code(resp, "qimen") == 0, "rate limit off at runtime")


def test_bad_and_determinism(orders_a):
    with start("--seed", "42", "--orders", "300") as fake:
        check(fake.admin_get("/admin/orders")["orders"] == orders_a, "same seed, same orders")
    with start("--seed", "43", "--orders", "300") as fake:
        check(fake.admin_get("/admin/orders")["orders"] != orders_a, "other seed differs")
    with start("--seed", "5", "--orders", "200", "--bad-pct", "100",
               "--eligible-pct", "100", "--materials", "50") as fake:
        orders = fake.admin_get("/admin/orders")["orders"]
        reasons = set()
        for o in orders:
            r = o["remark"]
            ok = r.startswith("BAD:")
            kind = r[4:]
            reasons.add(kind)
            lines = o["details_list"]
            if kind == "unknown_material":
                ok = ok and any(x["spec_no"].startswith("NOSUCH") for x in lines)
            elif kind == "zero_qty":
                ok = ok and any(x["goods_count"] == "0.0000" for x in lines)
            elif kind == "unknown_store":
                ok = ok and o["warehouse_no"] == "WH09"
            elif kind == "empty_details":
                ok = ok and lines == []
            else:
                ok = False
            check(ok, "bad order %d: %s" % (o["stockin_id"], r))
            check(all(1 <= int(x["spec_no"][-5:]) <= 50 for x in lines), "materials range")
        check(len(reasons) == 4, "all four bad kinds: %r" % reasons)
    with start("--seed", "5", "--orders", "200") as fake:
        orders = fake.admin_get("/admin/orders")["orders"]
        check(not any(o["remark"].startswith("BAD:") for o in orders), "no bad by default")
        n = sum(o["order_type"] == "4" and o["status"] == "80" for o in orders)
        check(100 <= n <= 180, "about 70%% eligible: %d" % n)
        kinds = {(o["order_type"], o["status"]) for o in orders}
        check(("4", "30") in kinds and ("1", "80") in kinds, "near misses generated")


def test_live():
    with start("--orders", "10", "--live-create", "20", "--live-modify", "20") as fake:
        deadline = time.monotonic() + 10
        n = 10
        while time.monotonic() < deadline and n < 20:
            time.sleep(0.1)
            n = len(fake.admin_get("/admin/orders")["orders"])
        check(n >= 20, "live-create adds orders (%d)" % n)
        orders = fake.admin_get("/admin/orders")["orders"]
        now = time.time()
        recent = [o for o in orders if abs(parse_wdt_time(o["modified"]) - now) < 30]
        check(len(recent) >= 10, "live orders carry modified = now")
        ids = [o["stockin_id"] for o in orders]
        check(len(ids) == len(set(ids)), "live ids unique")
        old = [o for o in orders if o["stockin_id"] <= 10010]
        check(any(abs(parse_wdt_time(o["modified"]) - now) < 30 for o in old),
              "live-modify touches existing orders")
        status, resp = qimen_call(fake.url, {"start_time": wdt_time(now - 60),
                                             "end_time": wdt_time(now + 60),
                                             "page_size": "100"})
        check(ok_list(resp, "qimen") and ok_list(resp, "qimen")[0] >= 10,
              "live orders are queryable")
        check(fake.stop() == 0, "exits 0 on SIGTERM")


def test_shift():
    with start("--orders", "200", "--span-days", "10", "--shift-during-scan=100",
               "--rate-limit", "0") as fake:
        biz = {"start_time": START, "end_time": "2026-08-11 00:00:00"}
        total, ids = scan(fake.url, "qimen", biz, 20)
        check(total == 200, "shift: first total %s" % total)
        check(len(set(ids)) < total, "shifting during a scan makes the client miss orders")
        _, resp = qimen_call(fake.url, dict(biz, page_size="100"))
        check(ok_list(resp, "qimen")[0] < 200, "shifted orders left the window")


def test_total_count():
    """Each reading of total_count, on page 0 and on a later page."""
    want = {"page0": (300, None), "always": (300, 300), "zero": (0, 0), "null": (None, None),
            "none": (None, None)}
    biz = {"start_time": START, "end_time": "2026-08-31 00:00:00"}
    for mode, (first, later) in want.items():
        args = ["--orders", "300", "--span-days", "10", "--rate-limit", "0"]
        with start(*(args if mode == "page0" else args + ["--total-count", mode])) as fake:
            for transport in ("qimen", "openapi2"):
                answers = []
                for page in ("0", "1"):
                    _, resp = CALL[transport](fake.url, dict(biz, page_no=page, page_size="100"))
                    body = resp["response"] if transport == "qimen" else resp
                    answers.append(body)
                check(answers[0].get("total_count", "absent") ==
                      (first if first is not None or mode == "null" else "absent"),
                      "%s %s page 0: %r" % (mode, transport, answers[0].get("total_count")))
                check(answers[1].get("total_count", "absent") ==
                      (later if later is not None or mode == "null" else "absent"),
                      "%s %s page 1: %r" % (mode, transport, answers[1].get("total_count")))
                check(len(answers[1]["stockin_list"]) == 100, "%s: page 1 is served" % mode)


def test_swap():
    with start("--orders", "200", "--span-days", "10", "--swap-during-scan=100",
               "--total-count", "always", "--rate-limit", "0") as fake:
        biz = {"start_time": START, "end_time": "2026-08-11 00:00:00"}
        total, ids = scan(fake.url, "qimen", biz, 20)
        _, resp = qimen_call(fake.url, dict(biz, page_size="100", page_no="0"))
        after = ok_list(resp, "qimen")[0]
        stats = fake.admin_get("/admin/stats")
        check(stats["swaps"] >= 9, "swap: one swap per later page (%d)" % stats["swaps"])
        check(total == 200 and after == 200, "swap: the count stays %s/%s" % (total, after))
        orders = fake.admin_get("/admin/orders")["orders"]
        inside = {o["stockin_id"] for o in orders
                  if parse_wdt_time(o["modified"]) <= parse_wdt_time(biz["end_time"])}
        check(len(set(ids)) == 200 and inside - set(ids),
              "swap: a client that trusts the count misses orders still in the window (%d)"
              % len(inside - set(ids)))
        new = [o for o in orders if o["stockin_no"].startswith("RKSWAP")]
        check(len(new) == stats["swaps"] and all(o["modified"] == biz["end_time"] for o in new),
              "swap: the entering orders sit at the window's end")


def test_clock_offset():
    with start("--orders", "10", "--clock-offset", "-480", "--live-create", "20",
               "--rate-limit", "0") as fake:
        with urllib.request.urlopen(fake.url + "/admin/stats", timeout=10) as r:
            date = r.headers.get("Date")
        import email.utils
        off = email.utils.parsedate_to_datetime(date).timestamp() - time.time()
        check(-482 <= off <= -478, "clock offset: Date is 480 s behind (%r)" % off)
        # timestamps are checked against the fake's clock: 8 minutes behind is within Qimen's
        # ±10 min, beyond openapi2's ±5 min
        status, resp = qimen_call(fake.url, {"start_time": START, "end_time": START})
        check(ok_list(resp, "qimen") is not None, "clock offset: qimen accepts host time")
        status, resp = openapi2_call(fake.url, {"start_time": START, "end_time": START})
        check(error_code(resp, "openapi2") == 1005, "clock offset: openapi2 refuses host time")
        status, resp = openapi2_call(fake.url, {"start_time": START, "end_time": START},
                                     timestamp=int(time.time()) - 480)
        check(ok_list(resp, "openapi2") is not None, "clock offset: openapi2 accepts its time")
        wait_until = time.monotonic() + 10
        live = []
        while time.monotonic() < wait_until and not live:
            time.sleep(0.2)
            live = [o for o in fake.admin_get("/admin/orders")["orders"]
                    if o["stockin_id"] > 10010]
        check(live and abs(parse_wdt_time(live[0]["modified"]) - (time.time() - 480)) < 5,
              "clock offset: live orders are stamped with the fake's clock")


def test_raw_numbers():
    with start("--orders", "0", "--rate-limit", "0") as fake:
        fake.admin_post("/admin/orders", {"stockin_id": 1, "modified": START,
                                          "goods_count": "@@raw:1e400",
                                          "n": "@@raw:99999999999999999999"})
        status, body = qimen_call(fake.url, {"start_time": START, "end_time": START}, raw=True)
        check(b'"goods_count":1e400' in body and b'"n":99999999999999999999' in body,
              "raw: number tokens are sent bare: %r" % body[:300])
        check(fake.admin_get("/admin/orders")["orders"][0]["goods_count"] == "@@raw:1e400",
              "raw: the admin list shows the marker")
        # orders whose stockin_id is no usable number are kept as posted, each one
        r = fake.admin_post("/admin/orders", [
            {"stockin_no": "RKNOID", "modified": START},
            {"stockin_no": "RKEMPTY", "stockin_id": "", "modified": START},
            {"stockin_no": "RKEMPTY", "stockin_id": "", "modified": START},
            {"stockin_no": "RKBIG", "stockin_id": "@@raw:99999999999999999999",
             "modified": START}])
        check(r.get("inserted") == 4, "raw: orders without a usable stockin_id inserted: %r" % r)
        _, resp = qimen_call(fake.url, {"start_time": START, "end_time": START})
        got = ok_list(resp, "qimen")
        check(got and got[0] == 5 and "stockin_id" not in got[1][1] and
              got[1][2]["stockin_id"] == "", "raw: they are served as posted: %r" % (got,))


def main():
    test_vectors()
    fake = start("--seed", "42", "--orders", "300", "--rate-limit", "0")
    try:
        orders = fake.admin_get("/admin/orders")["orders"]
        check(len(orders) == 300, "300 orders generated")
        test_queries(fake, orders)
        test_rejections(fake)
        test_stats(fake)
        test_faults(fake)
        test_bad_and_determinism(orders)
        test_admin(fake, orders)
    finally:
        check(fake.stop() == 0, "exit status 0 on SIGTERM")
    test_rate_limit()
    test_live()
    test_shift()
    test_swap()
    test_total_count()
    test_clock_offset()
    test_raw_numbers()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
