"""05_observability: the admin listener and the request telemetry stream.

/healthz at once; /readyz 503 (with a reason) until the consumer groups have partitions and the reply partitions
are owned, then 200; /metrics parses as the Prometheus text format (checked by a strict parser below) and its
counters match the requests sent; /status is JSON describing workers and groups; http_telemetry holds one record
per request, in gzip-compressed batches; the request id is returned to the client and carried as a Kafka header
on the records the request produced.
"""

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sy  # noqa: E402
from sy import Switchyard, check, eq  # noqa: E402

KAFKA_TIMEOUT = 30


def admin_get(s, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (s.admin_port, path), timeout=10) as r:
            return r.status, r.headers.get("content-type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


# -- a strict parser of the Prometheus text exposition format (version 0.0.4) ----------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s(?:,%s)*)?\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$" % (NAME, LABEL, LABEL))


def parse_prometheus(text):
    """Returns {family: {"type": t, "samples": [(name, labels dict, value)]}}; raises on any malformed line."""
    families, current = {}, None
    check(text.endswith("\n"), "exposition does not end with a newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            parts = line.split(" ", 3)
            check(len(parts) == 4 and re.match("^%s$" % NAME, parts[2]), "line %d: bad HELP: %r" % (n, line))
            check(parts[2] not in families or "help" not in families[parts[2]], "line %d: second HELP" % n)
            families.setdefault(parts[2], {"samples": []})["help"] = parts[3]
            current = parts[2]
        elif line.startswith("# TYPE "):
            parts = line.split(" ")
            check(len(parts) == 4 and parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"),
                  "line %d: bad TYPE: %r" % (n, line))
            fam = families.setdefault(parts[2], {"samples": []})
            check("type" not in fam and not fam["samples"], "line %d: TYPE after samples or twice" % n)
            fam["type"] = parts[3]
            current = parts[2]
        elif line.startswith("#"):
            continue
        else:
            m = SAMPLE.match(line)
            check(m is not None, "line %d: not a sample: %r" % (n, line))
            name, labels, value = m.group(1), m.group(2) or "{}", m.group(3)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            fam = base if base in families else name
            check(fam == current, "line %d: sample of %s outside its family block (%s)" % (n, name, current))
            lab = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
            families[fam]["samples"].append((name, lab, float(value)))
    for fam, f in families.items():
        if f.get("type") == "histogram":
            series = {}
            for name, lab, v in f["samples"]:
                key = tuple(sorted((k, x) for k, x in lab.items() if k != "le"))
                series.setdefault(key, {"buckets": [], "count": None})
                if name.endswith("_bucket"):
                    series[key]["buckets"].append((float(lab["le"].replace("+Inf", "inf")), v))
                elif name.endswith("_count"):
                    series[key]["count"] = v
            for key, sr in series.items():
                b = sr["buckets"]
                check(b and b[-1][0] == float("inf"), "%s%r: no +Inf bucket" % (fam, key))
                check(all(b[i][0] < b[i + 1][0] and b[i][1] <= b[i + 1][1] for i in range(len(b) - 1)),
                      "%s%r: buckets not cumulative and increasing" % (fam, key))
                eq(b[-1][1], sr["count"], "%s%r: +Inf bucket vs _count" % (fam, key))
    return families


def value(families, name, **labels):
    total = 0.0
    for fam in families.values():
        for n, lab, v in fam["samples"]:
            if n == name and all(lab.get(k) == x for k, x in labels.items()):
                total += v
    return total


def test_health_readiness_metrics_status(bin):
    with Switchyard(bin) as s:
        eq(admin_get(s, "/healthz")[0], 200, "/healthz")
        status, ctype, body = admin_get(s, "/readyz")
        if status == 503:  # before the groups joined (they take ~3 s on the embedded broker)
            check("reason" in json.loads(body), "503 /readyz without a reason: %r" % body)
        s.wait_for(lambda: admin_get(s, "/readyz")[0] == 200, KAFKA_TIMEOUT, "/readyz 200")
        before = parse_prometheus(admin_get(s, "/metrics")[2])  # the harness's own start-up probes count too
        for _ in range(7):
            s.post_json("/auth/sign-up", {"name": "", "email": "x"})
        for _ in range(3):
            s.request("GET", "/no/such/route")
        ok = s.post_json("/auth/sign-up", {"name": "Obs", "email": "obs-%d@example.com" % os.getpid()})
        eq(ok.status, 202, "a valid sign-up")
        status, ctype, text = admin_get(s, "/metrics")
        eq(status, 200, "/metrics")
        check(ctype.startswith("text/plain"), "metrics content-type %r" % ctype)
        fams = parse_prometheus(text)
        eq(value(fams, "switchyard_http_requests_total", route="/auth/sign-up", method="POST", status="400"), 7,
           "sign-up 400s counted")
        eq(value(fams, "switchyard_http_requests_total", route="/auth/sign-up", status="202"), 1, "sign-up 202s")
        eq(value(fams, "switchyard_http_requests_total", route="unmatched", status="404") -
           value(before, "switchyard_http_requests_total", route="unmatched", status="404"), 3, "404s counted")
        eq(value(fams, "switchyard_http_request_duration_seconds_count", route="/auth/sign-up"), 8,
           "duration histogram count")
        check(value(fams, "switchyard_kafka_acked_total", topic="create_user") >= 1, "acked create_user counted")
        check(value(fams, "switchyard_kafka_consumed_total", topic="create_user") >= 0, "consumed family present")
        eq(fams["switchyard_http_request_duration_seconds"]["type"], "histogram", "histogram type")
        # consumer lag per group/topic/partition (refreshed by the workers a few times a second)
        fams = s.wait_for(lambda: (lambda f: f if any(lab.get("group") == "auth-consumer" and
                                                      lab.get("topic") == "create_user"
                                                      for n, lab, v in f.get("switchyard_kafka_consumer_lag",
                                                                             {"samples": []})["samples"]) else None)(
            parse_prometheus(admin_get(s, "/metrics")[2])), 10, "consumer lag of auth-consumer on create_user")
        eq(fams["switchyard_kafka_consumer_lag"]["type"], "gauge", "lag type")
        check("switchyard_kafka_late_replies_total" in fams, "late replies counter exported")
        status, ctype, body = admin_get(s, "/status")
        eq(status, 200, "/status")
        st = json.loads(body)
        eq(st["ready"], True, "status ready")
        eq(len(st["workers"]), 2, "workers in status")
        groups = {c["group"] for w in st["workers"] for c in w["consumers"]}
        eq(groups, {"auth-consumer", "payment-consumer"}, "groups in status")
        check(st["kafka"]["embedded"] is True and st["kafka"]["bootstrap"], "kafka in status")
        eq(admin_get(s, "/nope")[0], 404, "unknown admin path")


def test_telemetry_records_in_gzip_batches(bin):
    with Switchyard(bin) as s:
        for i in range(25):
            s.post_json("/auth/sign-up", {"name": "", "email": "t%d" % i}, headers={"X-Request-Id": "tele-%d" % i})
        recs = s.wait_for(lambda: (lambda r: r if len(r) >= 20 else None)(s.kcat_dump("http_telemetry")),
                          KAFKA_TIMEOUT, "at least 20 telemetry records")
        values = [json.loads(v) for k, v, h in recs]
        values = [v for v in values if v["route"] != "unmatched"]  # the harness's start-up probes
        ids = {v["requestId"] for v in values}
        check(ids <= {"tele-%d" % i for i in range(25)}, "records of requests not sent: %r" % (ids,))
        for v in values:
            eq((v["route"], v["method"], v["status"]), ("/auth/sign-up", "POST", 400), "telemetry record")
            check(v["bodyLength"] > 0 and v["durationUs"] >= 0, "lengths and times: %r" % v)
        # the partial batch (25 = 2 x 10 + 5) leaves after the flush interval
        signups = lambda: [v for k, v, h in s.kcat_dump("http_telemetry") if '"/auth/sign-up"' in v]
        s.wait_for(lambda: len(signups()) == 25, KAFKA_TIMEOUT, "the partial batch")
        total = len(s.kcat_dump("http_telemetry"))
        p = subprocess.run(["kcat", "-b", s.bootstrap(), "-C", "-t", "http_telemetry", "-o", "beginning", "-e",
                            "-d", "msg"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        sets = [l for l in p.stderr.decode().splitlines() if "Enqueue" in l and "http_telemetry" in l]
        # librdkafka sends a set uncompressed when gzip would not make it smaller (a lone small record)
        batched = [l for l in sets if int(re.search(r"Enqueue (\d+) message", l).group(1)) >= 5]
        check(batched and all(l.rstrip(")").endswith("gzip") for l in batched),
              "telemetry batches are not gzip: %r" % sets[:3])
        sizes = [int(re.search(r"Enqueue (\d+) message", l).group(1)) for l in sets]
        eq(sum(sizes), total, "records in the message sets")
        check(max(sizes) >= 10, "batches of 10 travel together: %r" % sizes)


def test_request_id_travels_to_kafka(bin):
    with Switchyard(bin) as s:
        r = s.post_json("/auth/sign-up", {"name": "Rid", "email": "rid-%d@example.com" % os.getpid()},
                        headers={"X-Request-Id": "rid-abc-123", "traceparent":
                                 "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
        eq(r.status, 202, "sign-up")
        eq(r.headers.get("x-request-id"), "rid-abc-123", "x-request-id echoed")
        rec = s.wait_for(lambda: [h for k, v, h in s.kcat_dump("create_user") if k == str(r.json["id"])],
                         KAFKA_TIMEOUT, "the create_user record")[0]
        eq(rec.get("x-request-id"), "rid-abc-123", "request id header on the Kafka record")
        eq(rec.get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "traceparent")
        r = s.request("GET", "/users/abc")
        check(re.match(r"^[0-9a-f]{16}$", r.headers.get("x-request-id", "")), "generated request id: %r" %
              r.headers.get("x-request-id"))
        r = s.request("GET", "/no/such/route", headers={"X-Request-Id": "lost-1"})
        eq(r.status, 404, "unknown route")
        eq(r.headers.get("x-request-id"), "lost-1", "a 404 carries the request id")


if __name__ == "__main__":
    sy.run(globals())
