"""01_core: the HTTP contract of switchyard (DESIGN sections 1 and 7): the command line, validation and the NestJS
error shape, 404/405/413/415, Lua errors as 500 with an error id, what handlers may return, request ids,
keep-alive, and stopping on SIGTERM/SIGINT. Kafka flows are in 02_kafka."""

import os
import re
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sy  # noqa: E402
from sy import Switchyard, assert_json_error, check, eq  # noqa: E402

BAD_REQUEST_KEYS = ["statusCode", "message", "error"]

# A routes file exercising what a handler can do and return.
APP_ROUTES = r"""
local Thing = dto.object { name = dto.string { not_empty = true } }

http.get("/boom", function(req) error("kaboom secret-detail") end)
http.get("/bad-status", function(req) return 1000, { x = 1 } end)
http.get("/text", function(req) return "hello, world" end)
http.post("/created", function(req) return 201, { ok = true, got = req.body }, { ["x-custom"] = "1" } end)
http.get("/items/:a/:b", function(req) return { params = req.params, query = req.query } end)
http.put("/things/:id", { body = Thing }, function(req)
  return { method = req.method, id = req.params.id, name = req.body.name }
end)
http.patch("/things/:id", function(req) return { method = req.method, id = req.params.id, body = req.body } end)
http.delete("/things/:id", function(req) return { method = req.method, deleted = req.params.id } end)
http.get("/slow", function(req)
  log.info("slow handler started")
  sleep(tonumber(req.query.ms) or 1000)
  return { slept = true }
end)
"""


def app_routes():
    return sy.write_routes(APP_ROUTES)


def reference(bin):
    """The server on the repository's routes.lua that the read-only contract tests share."""
    return sy.shared("reference", lambda: Switchyard(bin))


def app(bin):
    """The server on APP_ROUTES that the handler tests share."""
    return sy.shared("app", lambda: Switchyard(bin, app_routes(), allowed_errors=[r"invalid HTTP status"]))


def project_version():
    with open(os.path.join(sy.ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*switchyard\s+VERSION\s+([0-9.]+)", f.read())
    return m.group(1) if m else None


def messages_of(r):
    check(isinstance(r.json, dict) and isinstance(r.json.get("message"), list),
          "expected a list of messages, got %r" % (r.body[:300],))
    return r.json["message"]


def assert_validation_error(r, *expected):
    """400 with exactly the NestJS ValidationPipe shape, and every expected message in it."""
    assert_json_error(r, 400)
    eq(list(r.json.keys()), BAD_REQUEST_KEYS, "keys of the 400 body")
    eq(r.json["error"], "Bad Request", "error")
    msgs = messages_of(r)
    check(all(isinstance(m, str) for m in msgs), "messages must be strings: %r" % (msgs,))
    for e in expected:
        check(e in msgs, "%r not among the messages %r" % (e, msgs))


# -- command line --------------------------------------------------------------------------------------------------

def test_check_reference_routes_lists_them(bin):
    rc, out, err = sy.run_binary(bin, ["--check", sy.REFERENCE_ROUTES])
    eq(rc, 0, "exit status of --check routes.lua (stderr %r)" % err[-500:])
    for route in ["/healthz", "/auth/sign-up", "/users/:id", "/payments/pay"]:
        check(route in out, "--check output does not list %s:\n%s" % (route, out))
    check(re.search(r"POST\s+/auth/sign-up", out), "--check output lacks 'POST /auth/sign-up':\n" + out)


def test_check_syntax_error_exits_1_with_file_and_line(bin):
    path = sy.write_routes('http.get("/a", function(req)\n  return {\nend)\n', name="broken.lua")
    rc, out, err = sy.run_binary(bin, ["--check", path])
    eq(rc, 1, "exit status of --check on a syntax error")
    check(re.search(r"broken\.lua:\d+:", out + err), "no file:line in the output:\n%s%s" % (out, err))


def test_check_top_level_error_exits_1(bin):
    path = sy.write_routes('http.get("/a", function() return 1 end)\nerror("boom")\n', name="raises.lua")
    rc, out, err = sy.run_binary(bin, ["--check", path])
    eq(rc, 1, "exit status of --check on a file that raises")
    check(re.search(r"raises\.lua:2:.*boom", out + err), "no 'raises.lua:2: boom' in the output:\n%s%s" % (out, err))


def test_serving_a_broken_routes_file_exits_non_zero(bin):
    path = sy.write_routes('error("boom")\n', name="raises.lua")
    rc, out, err = sy.run_binary(bin, ["--listen", "127.0.0.1:%d" % sy.free_port(), "--data-dir",
                                       os.path.join(sy.scratch_dir(), "data"), path])
    check(rc != 0, "switchyard started on a routes file that raises")
    check("boom" in out + err, "the error is not reported:\n%s%s" % (out, err))


def test_help_version_and_unknown_option(bin):
    rc, out, _ = sy.run_binary(bin, ["--help"])
    eq(rc, 0, "exit status of --help")
    for opt in ["--listen", "--workers", "--data-dir", "--brokers", "--max-body", "--check"]:
        check(opt in out, "--help does not mention %s" % opt)
    rc, out, _ = sy.run_binary(bin, ["--version"])
    eq(rc, 0, "exit status of --version")
    version = project_version()
    check(version is not None and version in out, "--version printed %r, expected %r" % (out, version))
    rc, out, err = sy.run_binary(bin, ["--no-such-option"])
    check(rc != 0, "an unknown option exited 0")
    check("--no-such-option" in err, "the message does not name the option: %r" % err[:300])


# -- validation (routes.lua) ---------------------------------------------------------------------------------------

def test_sign_up_validation_errors(bin):
    s = reference(bin)
    r = s.post_json("/auth/sign-up", {"name": "", "email": "not-an-email"})
    assert_validation_error(r, "email must be an email", "name should not be empty")
    # missing fields
    assert_validation_error(s.post_json("/auth/sign-up", {}), "name should not be empty", "email must be an email")
    assert_validation_error(s.post_json("/auth/sign-up", {"name": "Al"}), "email must be an email")
    # wrong types
    assert_validation_error(s.post_json("/auth/sign-up", {"name": 5, "email": True}),
                            "name must be a string", "email must be an email")


def test_payment_validation_errors(bin):
    s = reference(bin)
    assert_validation_error(s.post_json("/payments/pay", {"userId": "x", "amount": 10}),
                            "userId must be a number conforming to the specified constraints")
    assert_validation_error(s.post_json("/payments/pay", {"userId": 1}),
                            "amount must be a number conforming to the specified constraints")


def test_bodies_that_are_not_json_objects_get_400(bin):
    s = reference(bin)
    r = s.post_json("/auth/sign-up", '{"name": "a", "email": ')
    assert_json_error(r, 400)
    eq(r.json["error"], "Bad Request", "error of malformed JSON")
    assert_json_error(s.post_json("/auth/sign-up", ""), 400)
    assert_json_error(s.request("POST", "/auth/sign-up"), 400)  # no body, no content-type
    for text in ["[]", '"str"', "null", "42", "true"]:
        r = s.post_json("/auth/sign-up", text)
        check(r.status == 400, "body %s: expected 400, got %d %r" % (text, r.status, r.body[:200]))
        assert_json_error(r, 400)


def test_text_plain_body_is_415(bin):
    s = reference(bin)
    r = s.request("POST", "/auth/sign-up", body="name=a&email=b", headers={"Content-Type": "text/plain"})
    assert_json_error(r, 415)
    r = s.request("POST", "/auth/sign-up", body='{"name":"a","email":"a@example.com"}',
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_json_error(r, 415)


def test_path_params_are_validated(bin):
    s = reference(bin)
    for path in ["/users/abc", "/users/0", "/users/-1", "/users/1.5"]:
        r = s.request("GET", path)
        check(r.status == 400, "%s: expected 400, got %d %r" % (path, r.status, r.body[:200]))
        assert_validation_error(r)


# -- routing errors ------------------------------------------------------------------------------------------------

def test_unknown_route_is_404_json(bin):
    s = reference(bin)
    r = s.request("GET", "/no/such/route")
    assert_json_error(r, 404)
    eq(r.json["message"], "Cannot GET /no/such/route", "404 message")
    eq(r.json["error"], "Not Found", "404 error")
    r = s.post_json("/nothing-here", {})
    assert_json_error(r, 404)
    eq(r.json["message"], "Cannot POST /nothing-here", "404 message")


def test_wrong_method_is_405_with_allow(bin):
    s = reference(bin)
    r = s.request("GET", "/auth/sign-up")
    assert_json_error(r, 405)
    eq(r.headers.get("allow"), "POST", "Allow header")
    r = s.request("DELETE", "/healthz")
    assert_json_error(r, 405)
    check("GET" in r.headers.get("allow", ""), "Allow of /healthz lacks GET: %r" % r.headers.get("allow"))


def test_healthz_is_static_200(bin):
    s = reference(bin)
    r = s.request("GET", "/healthz")
    eq(r.status, 200, "status of /healthz")
    eq(r.headers.get("content-type"), "application/json", "content-type of /healthz")
    eq(r.json, {"status": "ok"}, "body of /healthz")


# -- body size -----------------------------------------------------------------------------------------------------

def big_sign_up(size):
    prefix, suffix = '{"name":"', '","email":"a@example.com"}'
    return prefix + "a" * (size - len(prefix) - len(suffix)) + suffix


def test_body_over_1_mib_is_413(bin):
    s = reference(bin)
    r = s.post_json("/auth/sign-up", big_sign_up((1 << 20) + 1))
    eq(r.status, 413, "status of a body over 1 MiB")
    # a body just under the limit is read and validated (the name is too long: 400, not 413)
    r = s.post_json("/auth/sign-up", big_sign_up((1 << 20) - 16))
    assert_validation_error(r, "name must be shorter than or equal to 200 characters")


def test_max_body_option(bin):
    with Switchyard(bin, extra_args=["--max-body", "1k"]) as s:
        r = s.post_json("/auth/sign-up", big_sign_up(2048))
        eq(r.status, 413, "status of a 2 KiB body with --max-body 1k")
        r = s.post_json("/auth/sign-up", big_sign_up(1000))
        assert_validation_error(r, "name must be shorter than or equal to 200 characters")


def test_413_body_is_json(bin):
    # DESIGN section 7: every error body is JSON, 413 included
    with Switchyard(bin, extra_args=["--max-body", "1k"]) as s:
        assert_json_error(s.post_json("/auth/sign-up", big_sign_up(2048)), 413)


# -- request ids ---------------------------------------------------------------------------------------------------

def test_request_id_generated_and_echoed(bin):
    s = reference(bin)
    a = s.post_json("/auth/sign-up", {})
    b = s.post_json("/auth/sign-up", {})
    ida, idb = a.headers.get("x-request-id"), b.headers.get("x-request-id")
    check(ida and idb, "no x-request-id on a Lua-handled response: %r" % (a.headers,))
    check(ida != idb, "two requests got the same x-request-id %r" % ida)
    r = s.request("GET", "/users/0", headers={"X-Request-Id": "e2e-Trace_1.2"})
    eq(r.headers.get("x-request-id"), "e2e-Trace_1.2", "echoed x-request-id")
    # a value that is not a plain token is replaced, never reflected
    r = s.request("GET", "/users/0", headers={"X-Request-Id": "bad id <script>"})
    rid = r.headers.get("x-request-id")
    check(rid and rid != "bad id <script>", "unsafe x-request-id reflected or missing: %r" % rid)


# -- handlers (a routes file of the test's own) --------------------------------------------------------------------

def test_lua_error_is_500_with_error_id_and_logged_traceback(bin):
    s = app(bin)
    r = s.request("GET", "/boom")
    body = assert_json_error(r, 500)
    error_id = body.get("errorId")
    check(isinstance(error_id, str) and error_id, "no errorId in the 500 body: %r" % body)
    text = r.body.decode("utf-8", "replace")
    for leak in ["traceback", ".lua", "kaboom", "secret-detail", s.routes]:
        check(leak not in text, "the 500 body leaks %r: %s" % (leak, text))
    lines = s.wait_for_log(re.escape(error_id), timeout=5)
    check(any(" error " in l and "stack traceback" in l and "kaboom" in l for l in lines),
          "the log line with the error id lacks the error or the traceback: %r" % lines)
    s.allowed_errors.append(re.escape(error_id))
    # still serving, on every worker
    for _ in range(6):
        eq(s.request("GET", "/text").status, 200, "status after a handler error")


def test_invalid_status_from_handler_is_500(bin):
    s = app(bin)
    body = assert_json_error(s.request("GET", "/bad-status"), 500)
    check(body.get("errorId"), "no errorId in %r" % body)


def test_handler_return_values(bin):
    s = app(bin)
    r = s.request("GET", "/text")
    eq(r.status, 200, "status of a string return")
    check(r.headers.get("content-type", "").startswith("text/plain"), "content-type %r" % r.headers)
    eq(r.body, b"hello, world", "body of a string return")
    r = s.post_json("/created", {"a": [1, 2]})
    eq(r.status, 201, "status of (201, table, headers)")
    eq(r.headers.get("content-type"), "application/json", "content-type of a table return")
    eq(r.json, {"ok": True, "got": {"a": [1, 2]}}, "body of (201, table, headers)")
    eq(r.headers.get("x-custom"), "1", "custom header")
    check(r.headers.get("x-request-id"), "no x-request-id on a Lua-handled response")


def test_path_params_and_query_reach_the_handler(bin):
    s = app(bin)
    r = s.request("GET", "/items/first/two%20words?x=1&y=hello%20world&flag")
    eq(r.status, 200, "status of /items/:a/:b (%r)" % r.body[:200])
    eq(r.json["params"], {"a": "first", "b": "two words"}, "params")
    eq(r.json["query"], {"x": "1", "y": "hello world", "flag": ""}, "query")
    r = s.request("GET", "/items/only-one")
    assert_json_error(r, 404)


def test_put_patch_delete_routes(bin):
    s = app(bin)
    r = s.request("PUT", "/things/7", body={"name": "seven"})
    eq((r.status, r.json), (200, {"method": "PUT", "id": "7", "name": "seven"}), "PUT")
    assert_validation_error(s.request("PUT", "/things/7", body={"name": ""}), "name should not be empty")
    r = s.request("PATCH", "/things/8", body={"a": 1})
    eq((r.status, r.json), (200, {"method": "PATCH", "id": "8", "body": {"a": 1}}), "PATCH")
    r = s.request("DELETE", "/things/9")
    eq((r.status, r.json), (200, {"method": "DELETE", "deleted": "9"}), "DELETE")
    r = s.request("POST", "/things/9", body={})
    assert_json_error(r, 405)
    allow = {m.strip() for m in r.headers.get("allow", "").split(",")}
    check({"PUT", "PATCH", "DELETE"} <= allow, "Allow of /things/:id: %r" % r.headers.get("allow"))


# -- connections ---------------------------------------------------------------------------------------------------

def test_200_requests_on_one_keep_alive_connection(bin):
    s = reference(bin)
    conn = s.connection()
    try:
        sock = None
        for i in range(200):
            kind = i % 3
            if kind == 0:
                conn.request("GET", "/healthz")
            elif kind == 1:
                conn.request("POST", "/auth/sign-up", body='{"name":""}',
                             headers={"Content-Type": "application/json"})
            else:
                conn.request("GET", "/no/such/route")
            resp = conn.getresponse()
            body = resp.read()
            eq(resp.status, [200, 400, 404][kind], "status of request %d (%r)" % (i, body[:100]))
            check(conn.sock is not None, "the server closed the connection after request %d" % i)
            if sock is None:
                sock = conn.sock
            check(conn.sock is sock, "request %d went over a new connection" % i)
    finally:
        conn.close()


# -- stopping ------------------------------------------------------------------------------------------------------

def stop_within(s, sig, seconds):
    t0 = time.monotonic()
    rc = s.stop(sig)
    took = time.monotonic() - t0
    eq(rc, 0, "exit status after %s" % signal.Signals(sig).name)
    check(took < seconds, "%s took %.1f s to stop (more than %d)" % (signal.Signals(sig).name, took, seconds))


def test_sigterm_exits_0_promptly(bin):
    s = Switchyard(bin).start()
    try:
        eq(s.request("GET", "/healthz").status, 200, "status")
        stop_within(s, signal.SIGTERM, 5)
    finally:
        s._kill_quietly()


def test_sigint_exits_0_promptly(bin):
    s = Switchyard(bin).start()
    try:
        eq(s.post_json("/auth/sign-up", {}).status, 400, "status")
        stop_within(s, signal.SIGINT, 5)
    finally:
        s._kill_quietly()


def test_sigterm_with_an_idle_keep_alive_connection(bin):
    # The drain must close idle keep-alive connections itself: a client that keeps one open (a load balancer's pool)
    # must neither crash the stop (h2o asserts when a context is disposed with connections on it) nor make the worker
    # give up on its teardown and leave memory behind (LeakSanitizer in the ASan build; the log says so here).
    s = Switchyard(bin).start()
    conn = s.connection()
    try:
        conn.request("POST", "/auth/sign-up", body="{}", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        eq(resp.status, 400, "status")
        stop_within(s, signal.SIGTERM, 5)  # the client still holds its connection open
        conn.sock.settimeout(5)
        eq(conn.sock.recv(1), b"", "what the idle connection reads after the stop")
        eq(s.log_matches(r"connections still open at exit"), [], "log lines about connections left open")
    finally:
        conn.close()
        s._kill_quietly()


def test_sigterm_lets_an_in_flight_request_finish(bin):
    s = Switchyard(bin, app_routes()).start()
    result = {}

    def slow():
        try:
            result["r"] = s.request("GET", "/slow?ms=1500")
        except Exception as e:
            result["e"] = e
    t = threading.Thread(target=slow)
    try:
        t.start()
        s.wait_for_log(r"slow handler started", timeout=10)
        stop_within(s, signal.SIGTERM, 8)
        t.join(10)
        check("e" not in result, "the in-flight request failed: %r" % (result.get("e"),))
        r = result.get("r")
        check(r is not None, "the in-flight request got no answer")
        eq((r.status, r.json), (200, {"slept": True}), "the in-flight request's answer")
    finally:
        s._kill_quietly()
        t.join(10)


if __name__ == "__main__":
    sy.run(globals())
