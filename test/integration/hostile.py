"""A hostile reverse proxy for the integration tests: it stands between the daemon and a fake
server and does what proxies, gateways and broken networks do in the field.

Python standard library only. The test starts it in its own process:

    from hostile import Proxy
    p = Proxy(fake.url)                      # listens on 127.0.0.1, a free port
    p.add(lambda r: r.path.startswith("/jdy/inv/"), "status_after", status=502, times=1)
    cfg["kingdee"]["url"] = p.url
    ...
    p.close()

Rules are tried in the order they were added; the first whose match(request) is true and that
has uses left decides what happens to the request. A request no rule takes is forwarded as is.
Actions:
  "forward"        forward and relay the answer (the default)
  "status_after"   forward (the server acts on it), then throw its answer away and answer
                   status/body/headers instead: an answer lost after the server acted
  "drop_after"     forward, then close the connection without any answer
  "status_before"  answer status/body/headers without forwarding (the server never sees it)
  "drop_before"    close the connection without forwarding
  "rewrite"        forward, then fn(status, headers, body) -> (status, headers, body);
                   with with_request=True, fn(request, status, headers, body)
  "delay"          wait `seconds`, then forward
  "huge"           answer 200 with a body of `size` bytes (default 1 GiB) made on the fly, never
                   held in memory: with its Content-Length when announce=True, else chunked;
                   after=True forwards first (the server acts, then the answer is huge). The
                   request's .sent tells how many body bytes went out before the client hung up.
A rule's times is how many requests it takes (None: every matching one). For "status_before"
and "status_after", body may be a function of the request.

Proxy(upstream, tls=(certfile, keyfile)) speaks HTTPS to the daemon (.url starts with
https://) and plain HTTP to the upstream.

Every request is recorded in .requests as a Request (method, path, query, headers, body,
action, status) for assertions."""

import http.client
import json
import socketserver
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "content-length", "host"}


class Request:
    def __init__(self, method, target, headers, body):
        self.method = method
        parts = urllib.parse.urlsplit(target)
        self.path = parts.path
        self.query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        self.target = target
        self.headers = headers
        self.body = body
        self.action = None
        self.status = None
        self.sent = 0

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None

    def __repr__(self):
        return "<%s %s %s -> %s>" % (self.method, self.path, self.action, self.status)


class Rule:
    def __init__(self, match, action, times, **kw):
        self.match = match
        self.action = action
        self.times = times
        self.kw = kw
        self.used = 0

    def takes(self, req):
        return (self.times is None or self.used < self.times) and self.match(req)


class Proxy:
    def __init__(self, upstream, timeout=60, tls=None):
        u = urllib.parse.urlsplit(upstream)
        self.up_host = u.hostname
        self.up_port = u.port or 80
        self.timeout = timeout
        self.rules = []
        self.requests = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # a client that hung up, a refused TLS handshake: part of the game

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            # the handshake happens in the handler's thread: a refused one stops nothing else
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)
            self.url = "https://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # ---- configuration ----

    def add(self, match, action="forward", times=None, **kw):
        """Add a rule; match is a predicate over Request, or a path prefix string."""
        if isinstance(match, str):
            prefix = match
            match = lambda r: r.path.startswith(prefix)  # noqa: E731
        rule = Rule(match, action, times, **kw)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self):
        with self.lock:
            self.rules = []

    def seen(self, pred=lambda r: True):
        with self.lock:
            return [r for r in self.requests if pred(r)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # ---- serving ----

    def _pick(self, req):
        with self.lock:
            self.requests.append(req)
            for rule in self.rules:
                if rule.takes(req):
                    rule.used += 1
                    return rule
        return None

    def _forward(self, req):
        conn = http.client.HTTPConnection(self.up_host, self.up_port, timeout=self.timeout)
        try:
            headers = {k: v for k, v in req.headers.items() if k.lower() not in HOP_HEADERS}
            headers["Host"] = "%s:%d" % (self.up_host, self.up_port)
            conn.request(req.method, req.target, body=req.body or None, headers=headers)
            r = conn.getresponse()
            body = r.read()
            hdrs = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP_HEADERS]
            return r.status, hdrs, body
        finally:
            conn.close()

    @staticmethod
    def _body(kw, req, default):
        body = kw.get("body", default)
        return body(req) if callable(body) else body

    def _answer(self, h, req, status, headers, body):
        if isinstance(body, str):
            body = body.encode("utf-8")
        req.status = status
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()

    def _huge(self, h, req, size, announce):
        """Stream size bytes of a JSON-looking body; stop when the client goes away."""
        req.status = 200
        chunk = b'{"response":{"errorcode":0,"total_count":1,"stockin_list":["' + b"x" * (1 << 20)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        if announce:
            h.send_header("Content-Length", str(size))
        else:
            h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            while req.sent < size:
                part = chunk[:min(len(chunk), size - req.sent)]
                if announce:
                    h.wfile.write(part)
                else:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                req.sent += len(part)
            if not announce:
                h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()
        except OSError:
            h.close_connection = True

    def _drop(self, h):
        h.close_connection = True
        try:
            h.connection.shutdown(2)
        except OSError:
            pass

    def _handle(self, h):
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else b""
        req = Request(h.command, h.path, dict(h.headers.items()), body)
        rule = self._pick(req)
        action = rule.action if rule else "forward"
        kw = rule.kw if rule else {}
        req.action = action
        try:
            if action == "delay":
                time.sleep(kw.get("seconds", 1))
                action = "forward"
            if action == "status_before":
                self._answer(h, req, kw.get("status", 502), list(kw.get("headers", [])),
                             self._body(kw, req, "Bad Gateway"))
                return
            if action == "huge" and not kw.get("after"):
                self._huge(h, req, kw.get("size", 1 << 30), kw.get("announce", False))
                return
            if action == "drop_before":
                self._drop(h)
                return
            status, headers, rbody = self._forward(req)
            if action == "status_after":
                self._answer(h, req, kw.get("status", 502), list(kw.get("headers", [])),
                             self._body(kw, req, "<html><body>502 Bad Gateway</body></html>"))
            elif action == "huge":
                self._huge(h, req, kw.get("size", 1 << 30), kw.get("announce", False))
            elif action == "drop_after":
                req.status = status
                self._drop(h)
            elif action == "rewrite":
                if kw.get("with_request"):
                    status, headers, rbody = kw["fn"](req, status, headers, rbody)
                else:
                    status, headers, rbody = kw["fn"](status, headers, rbody)
                self._answer(h, req, status, headers, rbody)
            else:
                self._answer(h, req, status, headers, rbody)
        except (OSError, http.client.HTTPException) as e:
            req.status = "error: %s" % e
            self._drop(h)
