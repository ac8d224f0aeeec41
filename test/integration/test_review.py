"""Review without noise: an order changed after its bill was posted is put up for review only
when the bill it would make differs from the one it has (the mapping's view of the order), not
when WDT changes a flag, a note count or the time of day of a date the bill holds. `review
list` names the bill by its id when Kingdee answered none (V1 saves), and `review show` prints
the changes field by field (old -> new)."""

import copy
import time

from e2e import close_stack, e2e_stack, log_tail, wait_settled
from wjtest import check, ctl, finish, read, wait_for
import wjfake


def changed(order, **fields):
    o = copy.deepcopy(order)
    o["modified"] = wjfake.wdt_time(time.time())
    for d in o.get("details_list") or []:
        d["modified"] = o["modified"]
    o.update(fields)
    return o


def read_again(st, no):
    """The daemon has read order no again and found its bill unchanged by it (debug line)."""
    return any("not in what the bill holds" in line and no in line
               for line in read(st.log).splitlines())


def short(v):
    """A quantity as the view writes it: its shortest exact decimal."""
    return "%.15g" % float(v)


st = e2e_stack(40, span_days=3, seed=414)
st.cfg["log"]["level"] = "debug"
st.write()
try:
    elig = [o for o in st.eligible() if len(o["details_list"]) >= 2]
    st.start()
    took, nb, nd = wait_settled(st, len(st.eligible()), timeout=120)
    check(took is not None and nd == 0, "run settled: %d bills" % nb)
    bills = {b["remark"]: b for b in st.bills()}
    a, b, c, d = elig[0], elig[1], elig[2], elig[3]

    # WDT changes what the bill does not hold: a flag, a note count, the time of day
    st.wdt.admin_post("/admin/orders", changed(a, flag_id="7", note_count="3"))
    later = c["stockin_time"][:11] + ("23:59:58" if c["stockin_time"][11:] != "23:59:58"
                                      else "00:00:01")
    st.wdt.admin_post("/admin/orders", changed(c, stockin_time=later))
    check(wait_for(lambda: read_again(st, a["stockin_no"]) and read_again(st, c["stockin_no"]),
                   timeout=30, step=0.2),
          "the daemon read the flag change and the time-of-day change: %s"
          % log_tail(st, 5))
    p = ctl(st.cfg_path, "review", "list")
    check(p.returncode == 0 and a["stockin_no"] not in p.stdout
          and c["stockin_no"] not in p.stdout and "0 orders to review" in p.stdout,
          "no review for a flag, note count or time-of-day change: %r" % p.stdout)

    # ... and what it holds: a quantity, the warehouse
    qty0 = b["details_list"][0]["goods_count"]
    nb_lines = changed(b)
    nb_lines["details_list"][0]["goods_count"] = "99.0000"
    st.wdt.admin_post("/admin/orders", nb_lines)
    wh = "WH02" if d["warehouse_no"] != "WH02" else "WH03"
    st.wdt.admin_post("/admin/orders", changed(d, warehouse_no=wh))
    ok = wait_for(lambda: ctl(st.cfg_path, "review", "list").stdout.count("\n") >= 4,
                  timeout=30, step=0.3)
    p = ctl(st.cfg_path, "review", "list")
    bill_b = bills["WDT:" + b["stockin_no"]]
    row_b = [line for line in p.stdout.splitlines() if b["stockin_no"] in line]
    check(ok and "2 orders to review" in p.stdout and row_b,
          "a quantity and a warehouse change are reviewed: %r" % p.stdout)
    check(row_b and ("id " + bill_b["id"]) in row_b[0],
          "review list names the V1 bill by its id: %r" % row_b)
    check(row_b and ("material_entity[0].qty: %s -> 99" % short(qty0)) in row_b[0],
          "review list says what changed: %r" % row_b)
    p = ctl(st.cfg_path, "review", "show", b["stockin_no"])
    check(p.returncode == 0 and ("  material_entity[0].qty: %s -> 99\n" % short(qty0)) in p.stdout
          and "id " + bill_b["id"] in p.stdout and "99.0000" in p.stdout,
          "review show: the quantity old -> new, the bill, the order now: %r" % p.stdout[:600])
    body_d = bills["WDT:" + d["stockin_no"]]["body"]
    p = ctl(st.cfg_path, "review", "show", d["stockin_no"])
    want = ["  material_entity[%d].stockid_id: %s -> %s" % (i, d["warehouse_no"], wh)
            for i in range(len(body_d["material_entity"]))]
    check(p.returncode == 0 and all(w in p.stdout for w in want) and "qty" not in
          p.stdout.split("record:")[0],
          "review show: every line's warehouse old -> new, nothing else: %r"
          % p.stdout.split("record:")[0])
    check(len(st.bills()) == nb and st.jdy_stats().get("duplicate_remarks") == 0,
          "no second bill for any changed order")
    check(close_stack(st) == 0, "daemon exits 0")
finally:
    close_stack(st)

finish()
