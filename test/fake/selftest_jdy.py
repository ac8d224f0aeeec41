#!/usr/bin/env python3
"""Self-test of the fake Kingdee gateway: python3 selftest_jdy.py PATH/TO/fake_jdy"""

import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wjfake_jdy as wj  # noqa: E402

FAILS = []
NET_ERRORS = (ConnectionError, urllib.error.URLError, http.client.HTTPException, socket.timeout,
              TimeoutError)


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL: " + what, flush=True)
    return cond


def test_vectors():
    s = wj.sign_string(
        "GET", "/jdyconnector/app_management/kingdee_auth_token",
        [("app_signature", "MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0"
                           "NzZhN2YxZDJmOTlkZA=="),
         ("app_key", "bVZgAZOv1")],
        "4427456950", "1670305063559")
    want_s = ("GET\n%2Fjdyconnector%2Fapp_management%2Fkingdee_auth_token\napp_key=bVZgAZOv1&"
              "app_signature=MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0"
              "NzZhN2YxZDJmOTlkZA%253D%253D\nx-api-nonce:4427456950\nx-api-timestamp:1670305063559\n")
    check(s == want_s, "string to sign matches the API.md vector")
    check(wj.hmac_b64hex("f2adcfef73369bfc4e1384677d38a0ff", want_s) ==
          "OTFiZTliNDFiMjNkYTI3YzVhNzg4MDI4ZGU3MWY1ZTA5ZTk1NjVlNGM1YTI1ZjIxY2Y5YTA3ZGY2OGI1MGQ1MQ==",
          "gateway signature vector")
    check(wj.app_signature("abc", "abc123") ==
          "ZDljMTI3NGIyNTE1MTRkYzlkNjc1MDNhYjUzMzgzNWMyY2M4YTdjMzdmNmM3YTVlNDkxMTkzNjdiOTFjNzUyZQ==",
          "app_signature vector")


def v1_body(remark, qty=3, material="M1", store="S01", unit="U2", date="2026-11-28"):
    return {"billdate": date, "remark": remark, "material_entity": [
        {"materialid_id": material, "stockid_id": store, "qty": qty, "unit_id": unit,
         "billno": "PD001"}]}


def v2_body(remark, lines=None, date="2026-11-28"):
    if lines is None:
        lines = [{"material_id": "M1", "stock_id": "S01", "qty": 2, "unit_id": "U2"}]
    return {"bill_date": date, "remark": remark, "material_entity": lines}


def test_main(binary):
    with wj.FakeJdy(binary, ["--materials", "50", "--seed", "7"]) as f:
        c = f.client()
        # login refused for an unknown instance
        bad = f.client(outer_id="nope")
        st, _, b = bad.signed("POST", wj.PATH_AUTHORIZE, [("outerInstanceId", "nope")], body={})
        check(st == 200 and b["errcode"] != 0, "unknown outerInstanceId refused")
        auth = c.authorize()
        check(auth["appKey"] == wj.DEFAULT_APP_KEY and auth["domain"] == f.url and
              auth["appSecret"].startswith("appsecret-") and auth["status"] == "1",
              "authorize answers appKey, appSecret, domain")
        st, _, b = c.fetch_token(app_secret="wrong")
        check(st == 200 and b["errcode"] != 0, "bad app_signature refused")
        st, _, b = c.fetch_token()
        check(st == 200 and b["errcode"] == 0 and b["data"]["app-token"] !=
              b["data"]["access_token"], "token issued, access_token another token")
        st, _, b2 = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")],
                           token=b["data"]["access_token"])
        check(b2["errcode"] == 1030002006, "the answer's access_token is no app-token")
        c.token = b["data"]["app-token"]
        now_ms = time.time() * 1000
        check(abs(b["data"]["expires"] - (now_ms + 86400000)) < 60000,
              "expires is an absolute ms timestamp by default")

        # gateway signature errors
        st, _, b = c.signed("GET", "/jdy/v2/bd/material_detail", [("number", "SP00001")],
                            extra={"app-token": c.token, "X-GW-Router-Addr": c.domain},
                            secret="not-the-secret")
        check(st == 519 and b.get("description_cn") == "签名校验失败", "bad signature → 519")
        st, _, b = c.signed("GET", "/jdy/v2/bd/material_detail", [("number", "SP00001")],
                            extra={"app-token": c.token, "X-GW-Router-Addr": c.domain},
                            timestamp=int(time.time() * 1000) - 10 * 60 * 1000)
        check(st == 519, "stale timestamp → 519")
        other = f.client(client_id="someone-else")
        other.token, other.domain = c.token, c.domain
        st, _, b = other.call("GET", "/jdy/v2/bd/material_detail", [("number", "SP00001")])
        check(st == 519, "unknown client id → 519")
        # query tampered after signing
        h = wj.gateway_headers(c.client_id, c.client_secret, "GET", "/jdy/v2/bd/material_detail",
                               [("number", "SP00001")])
        h.update({"app-token": c.token, "X-GW-Router-Addr": c.domain})
        st, _, b = wj.http("GET", f.url + "/jdy/v2/bd/material_detail?number=SP00002", h)
        check(st == 519, "changed query → 519")

        # lookups
        st, _, b = c.call("GET", "/jdy/v2/bd/material_detail", [("number", "SP00001")])
        check(st == 200 and b["errcode"] == 0 and b["data"]["id"] == "M1" and
              b["data"]["base_unit_id"] == "U2" and b["data"]["store_unit_id"] == "U2",
              "material_detail SP00001")
        st, _, b = c.call("GET", "/jdy/v2/bd/material_detail", [("number", "SP00050")])
        check(b["errcode"] == 0 and b["data"]["id"] == "M50" and b["data"]["base_unit_id"] == "U3",
              "material_detail SP00050")
        for num in ("SP00051", "NOSUCH00001", "SP1", ""):
            st, _, b = c.call("GET", "/jdy/v2/bd/material_detail", [("number", num)])
            check(st == 200 and b["errcode"] != 0 and "物料不存在" in b["description"],
                  "unknown material %r refused" % num)
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH03")])
        check(b["errcode"] == 0 and b["data"]["id"] == "S03", "store WH03")
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "CK001")])
        check(b["errcode"] == 0 and b["data"]["id"] == "S99", "store CK001")
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH09")])
        check(b["errcode"] != 0, "store WH09 unknown")
        st, _, b = c.call("GET", "/jdy/v2/bd/material",
                          [("search", "SP0000"), ("page", "2"), ("page_size", "5")])
        d = b["data"]
        check(d["count"] == 9 and d["total_page"] == 2 and len(d["rows"]) == 4 and
              d["rows"][0]["number"] == "SP00006", "material list search and paging")
        st, _, b = c.call("GET", "/jdy/v2/bd/material",
                          [("search", ""), ("page", "1"), ("page_size", "500")])
        check(b["data"]["page_size"] == 100 and b["data"]["count"] == 50 and
              len(b["data"]["rows"]) == 50, "material list page_size cut to 100")

        # saves
        remark1 = "WDT:SI 001/测试=&+"
        st, _, b = c.call("POST", "/jdy/inv/inv_check_gain_bill_save", body=v1_body(remark1))
        check(st == 200 and b["success"] is True and b["errorCode"] == 0 and
              len(b["data"]["successPkIds"]) == 1 and b["data"]["errorInfo"] == [],
              "save v1 valid")
        st, _, b = c.call("POST", "/jdy/inv/inv_check_gain_bill_save",
                          body=v1_body("WDT:SI002", qty="3.5000", material="M4", unit="U2"))
        check(b.get("success") is True, "save v1 with a numeric string qty")
        for what, body, field in (
                ("qty 0", v1_body("WDT:BAD1", qty=0), "qty"),
                ("qty text", v1_body("WDT:BAD1", qty="abc"), "qty"),
                ("unknown material", v1_body("WDT:BAD1", material="M999"), "materialid_id"),
                ("unknown store", v1_body("WDT:BAD1", store="S09"), "stockid_id"),
                ("wrong unit", v1_body("WDT:BAD1", unit="U1"), "unit_id"),
                ("bad date", v1_body("WDT:BAD1", date="2026-02-30"), "billdate")):
            st, _, b = c.call("POST", "/jdy/inv/inv_check_gain_bill_save", body=body)
            check(st == 200 and b.get("success") is False and b["errorCode"] != 0 and
                  b["data"]["successPkIds"] == [] and field in b["data"]["errorInfo"][0]["msg"],
                  "save v1 rejects " + what)
        st, _, b = c.call("POST", "/jdy/inv/inv_check_gain_bill_save", body=v1_body("x", qty=0))
        check("第1行" in b["message"], "v1 message names the line")

        st, _, b = c.call("POST", "/jdy/v2/scm/inv_check_gail_bill", body=v2_body("WDT:SI003"))
        ok = check(st == 200 and b["errcode"] == 0 and len(b["data"]["ids"]) == 1, "save v2 valid")
        if ok:
            bid = b["data"]["ids"][0]
            no = b["data"]["id_number_map"][bid]
            check(re.fullmatch(r"PYD-20261128-\d{6}", no) is not None, "v2 bill number format")
        lines = [{"material_id": "M1", "stock_id": "S01", "qty": 2, "unit_id": "U2"},
                 {"material_id": "M77", "stock_id": "S01", "qty": 2, "unit_id": "U2"}]
        st, _, b = c.call("POST", "/jdy/v2/scm/inv_check_gail_bill", body=v2_body("x", lines))
        check(b["errcode"] != 0 and "第2行" in b["description"] and
              "material_id" in b["description"], "save v2 names line and field")
        for what, body in (("empty entries", v2_body("x", [])),
                           ("missing date", {"remark": "x", "material_entity": lines[:1]}),
                           ("missing qty", v2_body("x", [{"material_id": "M1", "stock_id": "S01",
                                                          "unit_id": "U2"}])),
                           ("negative qty", v2_body("x", [dict(lines[0], qty=-1)])),
                           ("not JSON", b"{nope")):
            st, _, b = c.call("POST", "/jdy/v2/scm/inv_check_gail_bill", body=body)
            check(st == 200 and b["errcode"] != 0, "save v2 rejects " + what)
        st, _, b = c.call("POST", "/jdy/v2/scm/inv_check_gail_bill", body=v2_body("WDT:SI003"))
        check(b["errcode"] == 0, "duplicate remark accepted (the fake does not dedupe)")

        # list: search matches bill numbers only by default
        L = "/jdy/v2/scm/inv_check_gail_bill"
        st, _, b = c.call("GET", L, [("search", remark1), ("page", "1"), ("page_size", "100")])
        check(b["errcode"] == 0 and b["data"]["count"] == 0, "search number: remarks not matched")
        st, _, b = c.call("GET", L, [("search", "PYD-"), ("page", "2"), ("page_size", "3")])
        check(len(b["data"]["rows"]) == 1 and b["data"]["total_page"] == 2 and
              b["data"]["count"] == 4, "list paging")
        row = b["data"]["rows"][0]
        bno = row["bill_no"]
        check(re.fullmatch(r"\d{13}", row["create_time"] or "") is not None,
              "rows carry create_time in ms (%r)" % row.get("create_time"))
        st, _, b = c.call("GET", L, [("search", bno)])
        check(b["data"]["count"] == 1, "list by bill number")
        # creation-time filters (epoch ms, both inclusive)
        ct = int(row["create_time"])
        st, _, b = c.call("GET", L, [("create_start_time", str(ct)), ("create_end_time", str(ct))])
        check(b["errcode"] == 0 and bno in [r["bill_no"] for r in b["data"]["rows"]],
              "create time filter includes its bounds")
        st, _, b = c.call("GET", L, [("create_start_time", str(ct + 3600000))])
        check(b["errcode"] == 0 and b["data"]["count"] == 0, "create_start_time after every bill")
        st, _, b = c.call("GET", L, [("create_end_time", "1000")])
        check(b["data"]["count"] == 0, "create_end_time before every bill")
        st, _, b = c.call("GET", L, [("create_start_time", "2026-11-28 00:00:00")])
        check(b["errcode"] != 0 and "create_start_time" in b["description"],
              "a create time that is not ms is refused")
        # the other readings of search
        f.admin_post("/admin/faults", {"search_mode": "remark", "create_time_format": "datetime"})
        st, _, b = c.call("GET", L, [("search", remark1), ("page", "1"), ("page_size", "100")])
        check(b["errcode"] == 0 and b["data"]["count"] == 1 and
              b["data"]["rows"][0]["remark"] == remark1 and
              b["data"]["rows"][0]["bill_date"] == "2026-11-28", "search remark: odd chars")
        check(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d",
                           b["data"]["rows"][0]["create_time"]) is not None,
              "create-time-format datetime")
        st, _, b = c.call("GET", L, [("search", "WDT:"), ("page", "1"), ("page_size", "1000")])
        check(b["data"]["count"] == 4 and b["data"]["page_size"] == 100, "list search WDT:")
        f.admin_post("/admin/faults", {"search_mode": "none", "create_time_format": "ms"})
        st, _, b = c.call("GET", L, [("search", "no such thing")])
        check(b["data"]["count"] == 4, "search none: search ignored")
        check(f.admin_get("/admin/faults")["search_mode"] == "none", "search_mode knob reads back")
        f.admin_post("/admin/faults", {"search_mode": "number"})

        # token and router checks
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")], token="bogus")
        check(st == 200 and b["errcode"] == 1030002006, "unknown token → 1030002006")
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")],
                          router="http://127.0.0.1:1")
        check(st == 200 and b["errcode"] != 0, "wrong X-GW-Router-Addr refused")

        # admin
        bills = f.admin_get("/admin/bills")["bills"]
        check(len(bills) == 4 and bills[0]["remark"] == remark1 and
              bills[0]["body"]["material_entity"][0]["billno"] == "PD001" and
              bills[0]["bill_no"].startswith("PYD-20261128-"), "admin bills keep body and remark")
        s = f.admin_get("/admin/stats")
        check(s["saves_ok"] == 4 and s["saves_rejected"] == 13 and s["sig_errors"] == 4 and
              s["duplicate_remarks"] == 1 and s["tokens"] == 1 and
              s["calls"]["material_detail"] >= 6 and s["auth_errors"] >= 4,
              "admin stats counts: %s" % s)
        f.admin_post("/admin/expire-tokens")
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")])
        check(b["errcode"] == 1030002006, "expire-tokens invalidates the token")
        f.admin_post("/admin/reset-stats")
        s = f.admin_get("/admin/stats")
        check(s["saves_ok"] == 0 and s["calls"]["store_detail"] == 0, "reset-stats")
        st, _, b = wj.http("POST", f.url + "/admin/faults", body={"no_such_knob": 1})
        check(st == 400, "unknown fault knob refused")

        # token endpoint rate limit (default 10/min; 2 used so far)
        limited = None
        for i in range(12):
            st, h, b = c.fetch_token()
            if st == 429:
                limited = (i, h, b)
                break
        check(limited is not None and limited[0] == 8 and limited[2]["errcode"] != 0 and
              int(limited[1].get("Retry-After", "0")) >= 1, "token endpoint limited at 10/min")
        check(f.admin_get("/admin/stats")["logins"] == 9, "logins counted")
        check(f.stop() == 0, "SIGTERM exits 0")


def test_token_expiry(binary):
    with wj.FakeJdy(binary, ["--token-ttl", "2", "--expires-mode", "duration"]) as f:
        c = f.client()
        c.login()
        first = c.token
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH02")])
        check(b["errcode"] == 0, "fresh token works")
        st, _, b = c.fetch_token()
        check(b["data"]["expires"] == 2, "expires is the lifetime in duration mode")
        second = b["data"]["app-token"]
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH02")], token=first)
        check(b["errcode"] == 0, "previous token stays valid until its own expiry")
        time.sleep(2.3)
        for tok in (first, second):
            st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH02")], token=tok)
            check(st == 200 and b["errcode"] == 1030002006 and
                  b["description"] == "授权密钥无效或已过期", "expired token → 1030002006")
        c.login()
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH02")])
        check(b["errcode"] == 0, "re-login works")
        check(f.stop() == 0, "clean exit (token expiry)")


def test_secret_rotation(binary):
    with wj.FakeJdy(binary, ["--secret-rotate", "3"]) as f:
        c = f.client()
        s0 = c.authorize()["appSecret"]
        s1 = s0
        deadline = time.monotonic() + 5
        while s1 == s0 and time.monotonic() < deadline:
            time.sleep(0.1)
            s1 = c.authorize()["appSecret"]
        check(s1 != s0, "appSecret rotates")
        st, _, b = c.fetch_token(app_secret=s0)
        check(b["errcode"] == 0, "previous secret accepted within the grace")
        time.sleep(2.2)
        st, _, b = c.fetch_token(app_secret=s0)
        check(b["errcode"] != 0, "previous secret refused after the grace")
        st, _, b = c.fetch_token(app_secret=s1)
        check(b["errcode"] == 0, "current secret accepted")
        check(f.stop() == 0, "clean exit (secret rotation)")


def test_rate_limit(binary):
    with wj.FakeJdy(binary, ["--rate-limit", "5"]) as f:
        c = f.client()
        c.login()
        codes = []
        for _ in range(7):
            st, h, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")])
            codes.append(st)
        check(codes == [200] * 5 + [429] * 2, "6th call in a minute → 429: %s" % codes)
        check(int(h.get("Retry-After", "0")) >= 50 and isinstance(b, dict) and
              b["errcode"] != 0, "429 has Retry-After and a JSON body")
        s = f.admin_get("/admin/stats")
        check(s["rate_limited"] == 2 and s["max_calls_in_any_60s"] == 7, "rate limit stats")
        f.admin_post("/admin/faults", {"rate_limit": 0})
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")])
        check(st == 200, "rate limit off at runtime")
        check(f.stop() == 0, "clean exit (rate limit)")


def test_faults(binary):
    with wj.FakeJdy(binary, ["--drop-after-save", "100"]) as f:
        c = f.client()
        c.login()
        try:
            c.call("POST", "/jdy/v2/scm/inv_check_gail_bill", body=v2_body("WDT:DROP"), timeout=5)
            dropped = False
        except NET_ERRORS:
            dropped = True
        check(dropped, "drop-after-save closes the connection")
        bills = f.admin_get("/admin/bills")["bills"]
        check(len(bills) == 1 and bills[0]["remark"] == "WDT:DROP", "dropped save is stored")
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")])
        check(b["errcode"] == 0, "drop applies to saves only")

        f.admin_post("/admin/faults", {"drop_after_save": 0, "slow_after_save": 100,
                                       "slow_after_save_ms": 1500})
        try:
            c.call("POST", "/jdy/inv/inv_check_gain_bill_save", body=v1_body("WDT:SLOW"),
                   timeout=0.5)
            timed_out = False
        except NET_ERRORS:
            timed_out = True
        check(timed_out, "slow-after-save outlasts the client timeout")
        check(len(f.admin_get("/admin/bills")["bills"]) == 2, "slow save is stored")

        f.admin_post("/admin/faults", {"slow_after_save": 0, "fail_5xx": 100})
        st, _, b = c.call("POST", "/jdy/v2/scm/inv_check_gail_bill", body=v2_body("WDT:5XX"))
        check(st in (500, 502, 503), "fail-5xx answers 5xx (%s)" % st)
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")])
        check(st in (500, 502, 503), "fail-5xx applies to lookups")
        f.admin_post("/admin/faults", {"fail_5xx": 0, "fail_429": 100})
        st, h, b = c.call("POST", "/jdy/v2/scm/inv_check_gail_bill", body=v2_body("WDT:429"))
        check(st == 429 and h.get("Retry-After") == "1", "fail-429 answers 429, Retry-After 1")
        check(len(f.admin_get("/admin/bills")["bills"]) == 2, "failed saves are not stored")

        f.admin_post("/admin/faults", {"fail_429": 0, "max_saves_per_sec": 5})
        t0 = time.monotonic()
        for i in range(6):
            st, _, b = c.call("POST", "/jdy/v2/scm/inv_check_gail_bill",
                              body=v2_body("WDT:T%d" % i))
        dt = time.monotonic() - t0
        check(b["errcode"] == 0 and dt >= 0.9, "max-saves-per-sec throttles (%.2fs)" % dt)

        f.admin_post("/admin/faults", {"max_saves_per_sec": 0, "latency_ms": 300})
        t0 = time.monotonic()
        c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")])
        check(time.monotonic() - t0 >= 0.3, "latency-ms delays calls")
        s = f.admin_get("/admin/stats")
        check(s["dropped"] == 1 and s["slowed"] == 1 and s["faults_5xx"] == 2 and
              s["faults_429"] == 1, "fault stats: %s" % s)
        check(f.stop() == 0, "clean exit (faults)")


def test_v1(binary):
    with wj.FakeJdy(binary, ["--materials", "150", "--v1-login", "post"]) as f:
        v = f.v1_client()
        st, _, b = v.login_answer(post=False)
        check(st == 405, "--v1-login post: GET refused with 405 (%s)" % st)
        st, _, b = v.login_answer(post=True)
        check(st == 200 and b["errcode"] == 0 and len(b["data"]["access_token"]) == 32 and
              abs(b["data"]["expires_in"] - (time.time() * 1000 + 86400000)) < 60000,
              "v1 login by POST form")
        f.admin_post("/admin/faults", {"v1_login": "get"})
        st, _, b = v.login_answer(post=True)
        check(st == 405, "--v1-login get: POST refused")
        bad = f.v1_client(password="wrong")
        st, _, b = bad.login_answer()
        check(st == 200 and b["errcode"] != 0 and "密码" in b["description"], "bad password refused")
        v.login()
        st, _, b = v.accounts()
        ids = [g["accountId"] for svc in b["data"] for g in svc["accountGroups"]]
        check(b["success"] is True and ids == [wj.DEFAULT_ACCOUNT_ID, "9000000000000000002"],
              "account sets listed")
        st, _, b = v.accounts(token="bogus")
        check(st == 401 and b["success"] is False and "access_token" in b["message"],
              "bad token → 401 naming access_token")
        # calls with the access token
        st, _, b = v.call("/jdy/inv/inv_check_gain_bill_save", v1_body("WDT:V1A"))
        check(st == 200 and b["success"] is True and len(b["data"]["successPkIds"]) == 1,
              "v1 save with access_token")
        st, _, b = v.call("/jdy/inv/inv_check_gain_bill_save", v1_body("WDT:V1B"), token="bogus")
        check(st == 401, "v1 save with a bad token → 401")
        st, _, b = v.call("/jdy/inv/inv_check_gain_bill_save", v1_body("WDT:V1B"), group="g-other")
        check(st == 200 and b["errcode"] != 0 and "账套" in b["description"],
              "another account set's group refused")
        st, _, b = v.call("/jdy/inv/inv_check_gain_bill_list", {"page": 1, "pagesize": 10})
        d = b["data"]
        check(b["success"] is True and d["count"] == 1 and d["totalpage"] == 1 and
              d["rows"][0]["remark"] == "WDT:V1A" and d["rows"][0]["billno"].startswith("PYD-") and
              re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", d["rows"][0]["createtime"]),
              "v1 bill list rows: %s" % d)
        far = int(time.time() * 1000) + 3600000
        st, _, b = v.call("/jdy/inv/inv_check_gain_bill_list", {"create_start_time": far})
        check(b["data"]["count"] == 0, "v1 bill list: creation-time filter")
        st, _, b = v.call("/jdy/basedata/material_list",
                          {"search": "SP0010", "page": 1, "pagesize": 100})
        d = b["data"]
        check(d["count"] == 10 and d["rows"][0]["number"] == "SP00100" and
              d["rows"][0]["baseunitid_id"] == "U2" and "isbatch" not in d["rows"][0],
              "v1 material_list search (%s)" % d.get("count"))
        st, _, b = v.call("/jdy/basedata/store_list", {"search": "WH0"})
        check(b["data"]["count"] == 5 and b["data"]["rows"][0]["id"] == "S01", "v1 store_list")
        # the gateway signature on V1 paths: accepted by default, refused with --v1-gateway no
        c = f.client()
        c.login()
        st, _, b = c.call("POST", "/jdy/inv/inv_check_gain_bill_save", body=v1_body("WDT:GW1"))
        check(b.get("success") is True, "--v1-gateway yes: gateway-signed v1 save")
        f.admin_post("/admin/faults", {"v1_gateway": "no"})
        st, _, b = c.call("POST", "/jdy/inv/inv_check_gain_bill_save", body=v1_body("WDT:GW2"))
        check(st == 200 and b["errcode"] == 1030002011 and "access_token" in b["description"],
              "--v1-gateway no: gateway-signed v1 save refused")
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")])
        check(b["errcode"] == 0, "--v1-gateway no: v2 paths unaffected")
        s = f.admin_get("/admin/stats")
        check(s["calls"]["v1_login"] == 5 and s["calls"]["v1_account_groups"] == 3,
              "v1 calls counted: %s" % s["calls"])
        check(f.stop() == 0, "clean exit (v1)")


def test_sign_encoding(binary):
    spaced = [("number", "SP 00001")]
    for mode, rfc_ok, form_ok in (("rfc3986", True, False), ("form", False, True),
                                  ("either", True, True)):
        with wj.FakeJdy(binary, ["--sign-encoding", mode]) as f:
            c = f.client()
            c.authorize()
            st, _, b = c.fetch_token()
            c.token = b["data"]["app-token"]
            st, _, b = c.call("GET", "/jdy/v2/bd/material_detail", spaced)
            check((st == 200 and b["data"]["number"] == "SP 00001" and
                   b["data"]["id"] == "M1") == rfc_ok, "%s: RFC 3986 signature (%s)" % (mode, st))
            st, _, b = c.call("GET", "/jdy/v2/bd/material_detail", spaced, form=True)
            check((st == 200) == form_ok, "%s: form signature (%s)" % (mode, st))
            # without a space, *, ~ or a key needing encoding both readings agree
            st, _, b = c.call("GET", "/jdy/v2/bd/material_detail", [("number", "SP00002")],
                              form=(mode == "form"))
            check(st == 200 and b["data"]["id"] == "M2", "%s: plain number" % mode)
    check(wj.sign_string("GET", "/p", [("b", "A 01*~"), ("a", "x")], "1", "2") ==
          "GET\n%2Fp\na=x&b=A%252001%252A~\nx-api-nonce:1\nx-api-timestamp:2\n",
          "RFC 3986 reading of space, * and ~")
    check(wj.sign_string("GET", "/p", [("b", "A 01*~"), ("a", "x")], "1", "2", form=True) ==
          "GET\n%2Fp\na=x&b=A%2B01*%257E\nx-api-nonce:1\nx-api-timestamp:2\n",
          "form reading of space, * and ~")


def test_expires_modes(binary):
    for mode, want in (("absolute", lambda t: abs(t - (time.time() * 1000 + 7200000)) < 60000),
                       ("absolute-s", lambda t: abs(t - (time.time() + 7200)) < 60),
                       ("duration", lambda t: t == 7200),
                       ("duration-ms", lambda t: t == 7200000)):
        with wj.FakeJdy(binary, ["--token-ttl", "7200", "--expires-mode", mode]) as f:
            c = f.client()
            c.authorize()
            st, _, b = c.fetch_token()
            check(want(b["data"]["expires"]), "expires-mode %s: %s" % (mode, b["data"]["expires"]))
            st, _, b = f.v1_client().login_answer()
            check(want(b["data"]["expires_in"]), "expires-mode %s (v1): %s" % (
                mode, b["data"]["expires_in"]))


def test_managed(binary):
    with wj.FakeJdy(binary, ["--managed"]) as f:
        c = f.client()
        c.login()
        flags = {}
        for i in (1, 3, 7, 9):
            st, _, b = c.call("GET", "/jdy/v2/bd/material_detail", [("number", "SP%05d" % i)])
            flags[i] = (b["data"]["is_batch"], b["data"]["is_kf_period"])
        check(flags == {1: (False, False), 3: (True, False), 7: (False, True), 9: (True, True)},
              "managed materials: %s" % flags)
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH05")])
        d = b["data"]
        check(d["is_open_sp"] is True and [x["id"] for x in d["sp_entity"]] ==
              ["SP501", "SP502", "SP503"] and d["sp_entity"][0]["number"] == "A-01",
              "WH05 location-managed with locations")
        st, _, b = c.call("GET", "/jdy/v2/bd/store_detail", [("number", "WH01")])
        check(b["data"]["is_open_sp"] is False and b["data"]["sp_entity"] == [], "WH01 not")
        line = {"material_id": "M3", "stock_id": "S01", "qty": 1, "unit_id": "U1"}
        for what, extra, ok in (("batch missing", {}, False),
                                ("batch given", {"batch_no": "B1"}, True)):
            st, _, b = c.call("POST", "/jdy/v2/scm/inv_check_gail_bill",
                              body=v2_body("x", [dict(line, **extra)]))
            check((b["errcode"] == 0) == ok and (ok or "batch_no" in b["description"]),
                  "v2 " + what)
        line = {"material_id": "M7", "stock_id": "S05", "qty": 1, "unit_id": "U2",
                "kf_date": "2026-01-01", "kf_period": 365}
        for what, extra, ok in (("location missing", {}, False),
                                ("unknown location", {"sp_id": "SP599"}, False),
                                ("location given", {"sp_id": "SP502"}, True),
                                ("no shelf life", {"sp_id": "SP502", "kf_date": None}, False),
                                ("valid date instead of period",
                                 {"sp_id": "SP501", "kf_period": None, "valid_date": "2027-01-01"},
                                 True)):
            ln = {k: v for k, v in dict(line, **extra).items() if v is not None}
            st, _, b = c.call("POST", "/jdy/v2/scm/inv_check_gail_bill", body=v2_body("x", [ln]))
            check((b["errcode"] == 0) == ok, "v2 %s: %s" % (what, b.get("description")))
        st, _, b = c.call("POST", "/jdy/inv/inv_check_gain_bill_save",
                          body=v1_body("x", material="M3", unit="U1"))
        check(b["success"] is False and "batchno" in b["message"], "v1 batch missing")
        body = v1_body("x", material="M3", unit="U1")
        body["material_entity"][0]["batchno"] = "B1"
        st, _, b = c.call("POST", "/jdy/inv/inv_check_gain_bill_save", body=body)
        check(b["success"] is True, "v1 batch given")
        v = f.v1_client()
        v.login()
        st, _, b = v.call("/jdy/basedata/material_list", {"search": "SP00009"})
        check(b["data"]["rows"][0]["isbatch"] is True and
              b["data"]["rows"][0]["iskfperiod"] is True, "v1 material flags")
        st, _, b = v.call("/jdy/basedata/store_list", {"search": "WH05"})
        r = b["data"]["rows"][0]
        check(r["isopensp"] is True and len(r["spentity"]) == 3, "v1 store locations")


def test_echo(binary):
    with wj.FakeJdy(binary, ["--echo-token-in-errors"]) as f:
        c = f.client()
        c.login()
        st, _, b = c.call("GET", "/jdy/v2/bd/material_detail", [("number", "NOPE")])
        check(c.token in b["description"], "echo: the app-token in an error")
        st, _, b = c.call("GET", "/jdy/v2/bd/material_detail", [("number", "SP00001")])
        check(c.token not in json.dumps(b), "echo: not in a success")
        v = f.v1_client()
        v.login()
        st, _, b = v.call("/jdy/inv/inv_check_gain_bill_save", v1_body("x", qty=0))
        check(v.token in b["data"]["errorInfo"][0]["msg"], "echo: the access_token in errorInfo")
        st, _, b = f.v1_client(password="wrong-pw-123").login_answer()
        check("wrong-pw-123" in b["description"], "echo: the password in a login error")


def main():
    if len(sys.argv) != 2:
        print("usage: selftest_jdy.py FAKE_JDY_BINARY", file=sys.stderr)
        return 2
    binary = sys.argv[1]
    t0 = time.monotonic()
    test_vectors()
    for t in (test_main, test_token_expiry, test_secret_rotation, test_rate_limit, test_faults,
              test_v1, test_sign_encoding, test_expires_modes, test_managed, test_echo):
        try:
            t(binary)
        except Exception as e:  # report and go on with the next group
            check(False, "%s raised %r" % (t.__name__, e))
    print("selftest_jdy: %d failure(s) in %.1fs" % (len(FAILS), time.monotonic() - t0))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
