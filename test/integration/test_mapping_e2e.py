"""The mapping end to end, seen on the wire: quantities go out exactly as WDT wrote them
("3.3000" → 3.3, never 3.2999999999999998), a number no quantity can be is parked with its
order, field and text while the rest posts, a header bill number set by a mapping that
extends the default reaches Kingdee next to the seed's line billno, and against a Kingdee whose
materials and stores are batch-, shelf-life- and location-managed (the fake's --managed) the
lines carry what it requires, while an order lacking it is parked before any post. A hostile
proxy (here only forwarding) in front of the fake Kingdee records the raw save bodies."""

import json
import os
import re
import shutil
import subprocess

from wjtest import DAEMON, base_config, check, ctl, finish, tempdir, write_config
from e2e import close_stack, compare_bills, derived_order, e2e_stack, wait_settled
from hostile import Proxy

SAVE_PATHS = ("/jdy/inv/inv_check_gain_bill_save", "/jdy/v2/scm/inv_check_gail_bill")
# a quantity in its shortest exact form: no exponent, no trailing zeros in a fraction
SHORTEST = re.compile(r'^-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$')


def dead_letters(st):
    out = {}
    for d in json.loads(ctl(st.cfg_path, "dlq", "list", "--json").stdout or "[]"):
        out[d["stockin_no"]] = d.get("reason") or ""
    return out


def raw_saves(proxy):
    """(raw body text, parsed body) of every save request that reached the proxy."""
    out = []
    for r in proxy.seen(lambda r: r.method == "POST" and r.path in SAVE_PATHS):
        text = r.body.decode("utf-8")
        out.append((text, json.loads(text)))
    return out


def start_settled(st, what):
    """Start the daemon and wait until every eligible order has a bill or a dead letter."""
    st.start()
    expect = len(st.eligible())
    took, nb, nd = wait_settled(st, expect, timeout=300)
    check(took is not None, "%s: every order settled (%d bills, %d dead of %d)"
          % (what, nb, nd, expect))


def run(api, seed):
    st = e2e_stack(8, span_days=2, seed=seed, kingdee_api=api)
    proxy = Proxy(st.jdy.url)
    try:
        st.cfg["kingdee"]["url"] = proxy.url
        if api == "v1":
            st.cfg["flows"][0]["mapping"] = {
                "extends": "default", "bill": {"billno": {"template": "PY-{stockin_no}"}}}
        st.write()
        elig = st.eligible()
        tpl = next(o for o in elig if len(o["details_list"]) >= 3)
        when = elig[len(elig) // 2]["modified"]
        lines = [dict(d, goods_count=c) for d, c in
                 zip(tpl["details_list"], ("3.3000", "0.1000", "10.0000"))]
        exact = derived_order(tpl, 1, when, details_list=lines)
        huge = derived_order(tpl, 2, when, details_list=[
            dict(tpl["details_list"][0], goods_count="99999999999999999999")])
        expo = derived_order(tpl, 3, when, details_list=[
            dict(tpl["details_list"][0], goods_count="1e400")])
        for o in (exact, huge, expo):
            st.wdt.admin_post("/admin/orders", o)
        start_settled(st, api)

        saves = raw_saves(proxy)
        mine = [t for t, b in saves if b.get("remark") == "WDT:" + exact["stockin_no"]]
        check(len(mine) >= 1, "%s: the order with 3.3000, 0.1000, 10.0000 was posted" % api)
        text = mine[0] if mine else ""
        check('"qty":3.3,' in text and '"qty":0.1,' in text and '"qty":10,' in text,
              "%s: sent as 3.3, 0.1 and 10 on the wire (%s)" % (api, text[:300]))
        check("2999999" not in text and "0000000" not in text,
              "%s: no binary approximation reached Kingdee" % api)
        qtys = [e.get("qty") for _, b in saves for e in b.get("material_entity", [])]
        raw_qtys = re.findall(r'"qty":([^,}]*)', "".join(t for t, _ in saves))
        check(qtys and all(SHORTEST.match(q) for q in raw_qtys),
              "%s: every quantity of %d lines is in its shortest exact form" % (api, len(qtys)))

        dl = dead_letters(st)
        for o, text_ in ((huge, "99999999999999999999"), (expo, "1e400")):
            want = 'order %s: details_list[0].goods_count: "%s" is not a usable quantity' % (
                o["stockin_no"], text_)
            got = dl.get(o["stockin_no"], "")
            check(want in got, "%s: %s parked naming order, field and text (%r)"
                  % (api, o["stockin_no"], got))
            check(not any(b.get("remark") == "WDT:" + o["stockin_no"] for _, b in saves),
                  "%s: nothing was posted for %s" % (api, o["stockin_no"]))

        good = [o for o in st.eligible()
                if o["stockin_no"] not in (huge["stockin_no"], expo["stockin_no"])]
        missing, dups, extra, problems = compare_bills(st.bills(), good, api)
        check(not missing and not dups and not extra,
              "%s: one bill per valid order (missing %s, dup %s, extra %s)"
              % (api, missing[:3], dups[:3], extra[:3]))
        check(not problems, "%s: bodies as the default mapping says (%s)" % (api, problems[:3]))

        if api == "v1":
            ok = all(b.get("billno") == "PY-" + b["remark"][4:] and
                     all(e.get("billno", "").startswith("P") for e in b["material_entity"])
                     for _, b in saves)
            check(saves and ok, "v1: header billno PY-<stockin_no> next to the line billno")
            check(all(t.index('"billno":"PY-') < t.index('"material_entity"') for t, _ in saves),
                  "v1: the header billno is a bill field, not a line field")
        else:
            check(not any("billno" in b for _, b in saves), "v2: no header billno by default")
        check(close_stack(st) == 0, "%s: daemon exits 0" % api)
    finally:
        proxy.close()
        close_stack(st)


def config_check(mapping):
    """--check on a config whose flow has this mapping: (exit status, stdout + stderr)."""
    tmp = tempdir()
    try:
        cfg = base_config(tmp)
        cfg["flows"][0]["mapping"] = mapping
        path = os.path.join(tmp, "wdt2jdy.json")
        write_config(path, cfg)
        p = subprocess.run([DAEMON, "--check", "-c", path], capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# an extending mapping is checked when the configuration is loaded
rc, out = config_check({"extends": "default", "bill": {"billno": {"template": "PY-{stockin_no}"}},
                        "lines": {"unit_cost": {"path": "cost_price", "convert": "number",
                                                "optional": True}}})
check(rc == 0 and "configuration OK" in out, "--check accepts an extension of the default")
for mapping, want in (
        ({"extends": "v2"}, 'flows[0].mapping.extends: expected "default"'),
        ({"extends": "default", "bill": {"billno": {"templat": "PY-{stockin_no}"}}},
         "flows[0].mapping.bill.billno.templat: unknown key"),
        ({"extends": "default", "lines": {"batch": None}},
         "flows[0].mapping.lines.batch: null removes a field of the default"),
        ({"extends": "default", "lines": {"spid_id": {"lookup": "store.location",
                                                      "path": "position_no",
                                                      "when": "store.located"}}},
         "flows[0].mapping.lines.spid_id.when: expected")):
    rc, out = config_check(mapping)
    check(rc == 78 and want in out, "--check refuses %s (%s)" % (json.dumps(mapping),
                                                              out.strip()[-160:]))

# ---- managed materials and stores -----------------------------------------------------------

NAMES = {"v1": {"batch": "batchno", "kf_date": "kfdate", "kf_period": "kfperiod",
                "kf_type": "kftype", "valid_date": "validdate", "location": "spid_id"},
         "v2": {"batch": "batch_no", "kf_date": "kf_date", "kf_period": "kf_period",
                "kf_type": "kf_type", "valid_date": "valid_date", "location": "sp_id"}}
# what the mapping says when it refuses a line for its material or store
REFUSALS = ("is batch-managed but", "managed by shelf life but", "is location-managed but",
            "has no location")


def managed_line(base, spec_no, **fields):
    d = dict(base, spec_no=spec_no, goods_count="1.0000")
    d.update(fields)
    return d


def run_managed(api, seed, **over):
    """--managed: SP…3/SP…9 batch-managed, SP…7/SP…9 shelf-life, WH05 locations A-01..A-03
    (ids SP501..SP503). Generated WDT lines have no batch, zero dates and position ZANCUN."""
    st = e2e_stack(6, span_days=2, seed=seed, kingdee_api=api, jdy_args=["--managed"], **over)
    if over.get("kingdee__auth") == "password":
        del st.cfg["kingdee"]["outer_instance_id"]
    proxy = Proxy(st.jdy.url)
    what = "%s %s" % (api, over.get("kingdee__auth", "gateway"))
    n = NAMES[api]
    try:
        st.cfg["kingdee"]["url"] = proxy.url
        st.write()
        elig = st.eligible()
        tpl = elig[0]
        base = tpl["details_list"][0]
        when = elig[len(elig) // 2]["modified"]
        good = derived_order(tpl, 11, when, warehouse_no="WH05", details_list=[
            managed_line(base, "SP00003", batch_no="B3", position_no="A-01"),
            managed_line(base, "SP00007", production_date="2026-10-01 00:00:00",
                         validity_days="365", position_no="A-02"),
            managed_line(base, "SP00009", batch_no="B9", production_date="2026-10-02 00:00:00",
                         expire_date="2027-10-02 00:00:00", position_no="A-03"),
            managed_line(base, "SP00001", position_no="A-01")])
        cases = [
            (12, "WH01", managed_line(base, "SP00013"),
             "details_list[0] (SP00013): material is batch-managed but the line has no batch_no"),
            (13, "WH05", managed_line(base, "SP00001", position_no=""),
             "details_list[0] (WH05): store is location-managed but the line has no position_no"),
            (14, "WH05", managed_line(base, "SP00001", position_no="Z-09"),
             "details_list[0].position_no: Kingdee store WH05 has no location Z-09"),
            (15, "WH01", managed_line(base, "SP00017", production_date="2026-10-01 00:00:00"),
             "details_list[0] (SP00017): material is managed by shelf life but the line has no "
             "validity_days or expire_date"),
        ]
        parked = {}
        st.wdt.admin_post("/admin/orders", good)
        for serial, wh, ln, reason in cases:
            o = derived_order(tpl, serial, when, warehouse_no=wh, details_list=[ln])
            parked[o["stockin_no"]] = "order %s: %s" % (o["stockin_no"], reason)
            st.wdt.admin_post("/admin/orders", o)
        start_settled(st, what + " managed")
        saves = raw_saves(proxy)
        mine = [b for _, b in saves if b.get("remark") == "WDT:" + good["stockin_no"]]
        lines = mine[0]["material_entity"] if mine else [{}] * 4
        want = [{n["location"]: "SP501", n["batch"]: "B3"},
                {n["location"]: "SP502", n["kf_date"]: "2026-10-01", n["kf_period"]: 365,
                 n["kf_type"]: "1"},
                {n["location"]: "SP503", n["batch"]: "B9", n["kf_date"]: "2026-10-02",
                 n["valid_date"]: "2027-10-02"},
                {n["location"]: "SP501"}]
        managed_keys = set(n.values())
        for i, w in enumerate(want):
            got = {k: v for k, v in lines[i].items() if k in managed_keys}
            check(got == w, "%s managed: line %d carries %s (got %s)" % (what, i, w, got))
        check(any(b.get("remark") == "WDT:" + good["stockin_no"] for b in st.bills()),
              "%s managed: Kingdee accepted the bill with them" % what)
        dl = dead_letters(st)
        for no, reason in sorted(parked.items()):
            check(dl.get(no, "") == reason, "%s managed: %s parked (%r)" % (what, no, dl.get(no)))
            check(not any(b.get("remark") == "WDT:" + no for _, b in saves),
                  "%s managed: nothing was posted for %s" % (what, no))
        # the fake's own orders: a bill, or parked by the mapping, never refused by Kingdee
        others = {no: r for no, r in dl.items() if no not in parked}
        check(all(r.startswith("order %s: " % no) and any(x in r for x in REFUSALS)
                  for no, r in others.items()),
              "%s managed: %d generated orders parked by the mapping, none refused by Kingdee "
              "(%s)" % (what, len(others), sorted(others.values())[:2]))
        check(close_stack(st) == 0, "%s managed: daemon exits 0" % what)
    finally:
        proxy.close()
        close_stack(st)


run("v1", 4101)
run("v2", 4102)
run_managed("v2", 4103)
run_managed("v1", 4104, kingdee__auth="password", kingdee__username="test-user",
            kingdee__password="test-password", kingdee__account_id="1584244570835057173")
finish()
