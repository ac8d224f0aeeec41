"""A fake alert receiver: plays a DingTalk, a WeCom and a Feishu robot and a plain webhook on
one loopback port, checks each request the way that robot does (signatures, timestamps, body
shape) and records what arrived. Python standard library only.

    r = Receiver(secrets={"ding": "SEC...", "feishu": "...", "hook": "..."})
    cfg["alerts"] = [{"kind": "dingtalk", "url": r.url("ding"), "secret": "SEC..."}, ...]
    ...
    r.messages("ding")   # [{"text": ..., "ok": True, "why": ""}, ...]
    r.close()

Paths: /ding?access_token=TOKEN, /wecom?key=KEY, /feishu, /hook. r.fail[path] = n makes the next
n requests to that robot answer an error the way that robot does."""

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "ding-robot-token-7f3a9c"
KEY = "wecom-robot-key-5be21d"


class Receiver:
    def __init__(self, secrets=None):
        self.secrets = secrets or {}
        self.got = {"ding": [], "wecom": [], "feishu": [], "hook": []}
        self.fail = {}
        self.lock = threading.Lock()
        rec = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                u = urllib.parse.urlsplit(self.path)
                name = u.path.strip("/")
                q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
                status, answer = rec._handle(name, q, dict(self.headers.items()), body)
                out = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name):
        base = "http://127.0.0.1:%d/%s" % (self.port, name)
        return {"ding": base + "?access_token=" + TOKEN, "wecom": base + "?key=" + KEY}.get(
            name, base)

    def messages(self, name):
        with self.lock:
            return list(self.got[name])

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # ---- checks, one per robot ----

    def _record(self, name, text, why, extra=None):
        m = {"text": text, "ok": not why, "why": why, "at": time.time()}
        m.update(extra or {})
        with self.lock:
            self.got[name].append(m)
        return m

    def _fail_now(self, name):
        with self.lock:
            if self.fail.get(name, 0) > 0:
                self.fail[name] -= 1
                return True
        return False

    def _handle(self, name, q, headers, body):
        try:
            doc = json.loads(body.decode("utf-8"))
        except ValueError:
            doc = None
        if name == "ding":
            why = ""
            secret = self.secrets.get("ding")
            if q.get("access_token") != TOKEN:
                why = "access_token"
            elif secret:
                ts = q.get("timestamp", "")
                want = base64.b64encode(hmac.new(secret.encode(), ("%s\n%s" % (ts, secret)).encode(),
                                                 hashlib.sha256).digest()).decode()
                if q.get("sign") != want:
                    why = "sign not match"
                elif abs(int(ts or 0) / 1000 - time.time()) > 3600:
                    why = "timestamp"
            text = ((doc or {}).get("text") or {}).get("content")
            if not why and (doc or {}).get("msgtype") != "text":
                why = "msgtype"
            self._record(name, text, why)
            if why or self._fail_now(name):
                return 200, {"errcode": 310000, "errmsg": why or "injected failure"}
            return 200, {"errcode": 0, "errmsg": "ok"}
        if name == "wecom":
            why = "" if q.get("key") == KEY else "key"
            text = ((doc or {}).get("text") or {}).get("content")
            self._record(name, text, why)
            if why or self._fail_now(name):
                return 200, {"errcode": 93000, "errmsg": why or "injected failure"}
            return 200, {"errcode": 0, "errmsg": "ok"}
        if name == "feishu":
            why = ""
            secret = self.secrets.get("feishu")
            if secret:
                ts = (doc or {}).get("timestamp", "")
                want = base64.b64encode(hmac.new(("%s\n%s" % (ts, secret)).encode(), b"",
                                                 hashlib.sha256).digest()).decode()
                if (doc or {}).get("sign") != want:
                    why = "sign match fail"
            text = ((doc or {}).get("content") or {}).get("text")
            self._record(name, text, why)
            if why or self._fail_now(name):
                return 200, {"code": 19021, "msg": why or "injected failure"}
            return 200, {"code": 0, "msg": "success"}
        if name == "hook":
            why = ""
            secret = self.secrets.get("hook")
            if secret:
                ts = headers.get("X-Wdt2jdy-Timestamp", "")
                want = hmac.new(secret.encode(), ts.encode() + b"\n" + body,
                                hashlib.sha256).hexdigest()
                if headers.get("X-Wdt2jdy-Signature") != want:
                    why = "signature"
            d = doc or {}
            self._record(name, d.get("text"), why, {"event": d.get("event"),
                                                     "count": d.get("count")})
            if why or self._fail_now(name):
                return 500, {"error": why or "injected failure"}
            return 200, {}
        return 404, {"error": "no such robot"}
