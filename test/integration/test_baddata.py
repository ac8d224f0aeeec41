"""Bad remote data: orders with missing fields, wrong types, huge numbers, invalid UTF-8 and
10,000 lines, and malformed or failing WDT answers → each is saved or parked with a clear
reason, the flow goes on, and the daemon never crashes."""

import json

from wjtest import check, ctl, finish
from e2e import close_stack, derived_order, e2e_stack, wait_settled

st = e2e_stack(120, span_days=3, seed=808, wdt_args=["--malformed", "5", "--fail-5xx", "5",
                                                     "--drop", "3"])
try:
    elig = st.eligible()
    tpl = next(o for o in elig if len(o["details_list"]) >= 2)
    when = elig[len(elig) // 2]["modified"]
    lines10k = [dict(tpl["details_list"][0], rec_id=i + 1, spec_no="SP%05d" % (i % 500 + 1),
                     goods_count="1.0000") for i in range(10000)]
    bad_line = dict(tpl["details_list"][0])
    del bad_line["spec_no"]
    cases = {
        # stockin_no serial → (fields, expected: "bill" or a text the dead letter names)
        1: ({"details_list": [bad_line] + tpl["details_list"][1:]}, "spec_no: missing"),
        2: ({"details_list": [dict(tpl["details_list"][0], goods_count="abc")]},
            "expected a number"),
        3: ({"details_list": [dict(tpl["details_list"][0], goods_count="1e400")]},
            "expected a number"),
        4: ({"details_list": {"not": "a list"}}, "no lines"),
        5: ({"stockin_time": 12345, "check_time": None}, "expected a time"),
        6: ({"goods_name_raw": "@@hex:e8ff41", "details_list": [
            dict(tpl["details_list"][0], goods_name="@@hex:e8ff41c0af")]}, "bill"),
        7: ({"details_list": lines10k}, "bill"),
        8: ({"stockin_time": None, "check_time": "0000-00-00 00:00:00"}, "bill"),
        9: ({"warehouse_no": 1234}, "1234"),
    }
    made = {}
    for serial, (fields, want) in cases.items():
        o = derived_order(tpl, serial, when, **fields)
        made[o["stockin_no"]] = want
        st.wdt.admin_post("/admin/orders", o)

    st.start()
    expect = len(st.eligible())
    took, nb, nd = wait_settled(st, expect, timeout=600)
    check(st.daemon.alive(), "the daemon is alive after all of it")
    check(took is not None, "every trackable order settled (%d bills, %d dead of %d)"
          % (nb, nd, expect))
    remarks = {b["remark"] for b in st.bills()}
    dl = {}
    for d in json.loads(ctl(st.cfg_path, "dlq", "list", "--json").stdout or "[]"):
        dl[d["stockin_no"]] = d.get("reason") or ""
    for no, want in sorted(made.items()):
        if want == "bill":
            check("WDT:" + no in remarks, "%s: saved despite the odd data" % no)
        else:
            check(no in dl and want in dl[no], "%s: parked with a clear reason (%r)"
                  % (no, dl.get(no)))
    stats = st.wdt.admin_get("/admin/stats")
    check(stats.get("malformed", 0) + stats.get("fault_5xx", 0) + stats.get("dropped", 0) > 0,
          "malformed, failing and dropped WDT answers happened and were retried")
    big = [b for b in st.bills() if b["remark"] == "WDT:RKE2E00007"]
    check(big and len(big[0]["body"]["material_entity"]) == 10000,
          "the 10,000-line order became one bill with 10,000 entries")
    check(close_stack(st) == 0, "daemon exits 0")
finally:
    close_stack(st)
finish()
