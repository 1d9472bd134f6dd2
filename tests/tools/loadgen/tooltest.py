"""Helpers for the tests that run the embsum tools as processes.

Used by the tests under tests/tools/{loadgen,eval,echo_server}. Runs with
/usr/bin/python3 and the standard library only.
"""

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def fail(message):
    print("FAIL: " + message, file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def free_port():
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, expect_rc=0, timeout=120):
    """Runs a tool; fails the test on an unexpected exit status."""
    print("+ " + " ".join(args), flush=True)
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    if expect_rc is not None and p.returncode != expect_rc:
        fail("%s exited %d, expected %d" % (args[0], p.returncode, expect_rc))
    return p


@contextlib.contextmanager
def workdir():
    with tempfile.TemporaryDirectory(prefix="embsum_tooltest_") as d:
        yield d


@contextlib.contextmanager
def process(args, log_path):
    """Starts a long-running tool; SIGTERMs it (then SIGKILLs) on exit."""
    print("+ " + " ".join(args) + " &", flush=True)
    with open(log_path, "w") as log:
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        with open(log_path) as log:
            tail = log.read()[-4000:]
        print("--- %s log (tail) ---\n%s" % (os.path.basename(args[0]), tail))


def wait_for_line(log_path, pattern, proc, timeout=30):
    """Waits until the log has a line matching `pattern`; returns the match."""
    import time
    deadline = time.time() + timeout
    rx = re.compile(pattern)
    while time.time() < deadline:
        with open(log_path) as f:
            m = rx.search(f.read())
        if m:
            return m
        if proc.poll() is not None:
            fail("%s exited %d before printing %r" % (proc.args[0], proc.returncode, pattern))
        time.sleep(0.05)
    fail("timed out waiting for %r in %s" % (pattern, log_path))


def check_load_report(path, expect_zero_errors=True):
    """Checks the JSON report of embsum-loadgen (docs/design.md section 6)."""
    with open(path) as f:
        report = json.load(f)
    for key in ("qps", "errors", "codes", "latency_seconds"):
        check(key in report, "%s: no %r field" % (path, key))
    lat = report["latency_seconds"]
    for key in ("p50", "p90", "p99", "p999", "max"):
        check(isinstance(lat.get(key), (int, float)), "%s: latency_seconds.%s" % (path, key))
    check(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"],
          "%s: percentiles not ordered: %r" % (path, lat))
    check(report["requests"] > 0, "%s: no requests measured" % path)
    check(sum(report["codes"].values()) == report["requests"],
          "%s: codes %r do not add up to %d requests" % (path, report["codes"], report["requests"]))
    if expect_zero_errors:
        check(report["errors"] == 0, "%s: %d errors, codes %r" % (path, report["errors"], report["codes"]))
        check(report["codes"] == {"OK": report["requests"]}, "%s: codes %r" % (path, report["codes"]))
        check(report["qps"] > 0, "%s: qps %r" % (path, report["qps"]))
    return report


def check_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    check(len(rows) > 3, "%s: only %d rows" % (path, len(rows)))
    check(list(rows[0].keys()) == ["percentile", "latency_seconds", "total_count", "inverse_tail"],
          "%s: header %r" % (path, list(rows[0].keys())))
    pct = [float(r["percentile"]) for r in rows]
    lat = [float(r["latency_seconds"]) for r in rows]
    check(pct == sorted(pct) and pct[-1] == 100.0, "%s: percentiles not ascending to 100" % path)
    check(lat == sorted(lat), "%s: latencies not monotone" % path)


def check_svg(path):
    root = ET.parse(path).getroot()  # raises on malformed XML
    check(root.tag == "{http://www.w3.org/2000/svg}svg", "%s: root is %s" % (path, root.tag))
    lines = root.findall(".//{http://www.w3.org/2000/svg}polyline")
    check(len(lines) >= 1, "%s: no plotted line" % path)
    for line in lines:
        points = line.get("points").split()
        check(len(points) > 3, "%s: a line with %d points" % (path, len(points)))


@contextlib.contextmanager
def live_server(tools, work, users=200, items=2000, dim=64, user_codes=8,
                item_codes=4, impressions=400):
    """Generates a small model, ingests it and serves it with embsum-server.

    Yields (address, model_dir)."""
    model = os.path.join(work, "model")
    data = os.path.join(work, "data")
    run([tools["datagen"], "--out=" + model, "--users=%d" % users, "--items=%d" % items,
         "--dim=%d" % dim, "--user_codes=%d" % user_codes, "--item_codes=%d" % item_codes,
         "--seed=3", "--impressions=%d" % impressions])
    run([tools["ingest"], "--model_dir=" + model, "--data_dir=" + data])
    port = free_port()
    args = [tools["server"], "--data_dir=" + data,
            "--listen=127.0.0.1:%d" % port,
            "--admin_listen=127.0.0.1:%d" % free_port(),
            "--metrics_listen=127.0.0.1:%d" % free_port()]
    with process(args, os.path.join(work, "server.log")) as server:
        yield "127.0.0.1:%d" % port, model
        check(server.poll() is None, "embsum-server died during the test")
