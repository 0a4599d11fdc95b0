#!/usr/bin/env python3
"""Helpers of bench/scale.sh (standard library only).

  scale.py gen N DIR                   decK files: N services, each with one route and two plugins
  scale.py propagate ADMIN PROXY COUNT [SERVICE]
                                       COUNT times: create a route through the Admin API, then poll the proxy
                                       (one kept-alive connection, no pause) until it serves it; prints the
                                       milliseconds from the Admin API's 201 to the proxy's first 200, then
                                       p50/p99/max; deletes the routes afterwards
"""
import http.client
import json
import os
import sys
import time
import urllib.parse


def gen(n, path):
    # Every service answers through request-termination (no upstream needed), so a proxied request measures the
    # router, the plugin lookup and the plugins, not an upstream. cors is cheap when a request has no Origin.
    # PATH is a directory of files of 2,000 services each: decK's reader caps one file at 250,000 YAML nodes.
    os.makedirs(path, exist_ok=True)
    for start in range(1, n + 1, 2000):
      with open(os.path.join(path, f"part-{start:06d}.yaml"), "w") as f:
        f.write('_format_version: "3.0"\nservices:\n')
        for i in range(start, min(n, start + 1999) + 1):
            f.write(
                f"- name: s{i}\n  url: http://127.0.0.1:9/\n"
                f"  routes:\n  - name: r{i}\n    paths: [/s{i}/]\n"
                f"  plugins:\n  - name: request-termination\n    config: {{status_code: 200, message: s{i}}}\n"
                f"  - name: cors\n"
            )


def conn(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def propagate(admin, proxy, count, service):
    a, p = conn(admin), conn(proxy)
    took, made = [], []
    stamp = int(time.time())
    for i in range(count):
        name = f"probe-{stamp}-{i}"
        body = json.dumps({"name": name, "paths": [f"/{name}/"]})
        a.request("POST", f"/services/{service}/routes", body, {"content-type": "application/json"})
        r = a.getresponse()
        text = r.read()
        if r.status != 201:
            sys.exit(f"POST route -> {r.status} {text[:200]!r}")
        made.append(json.loads(text)["id"])
        start = time.perf_counter()
        while True:
            p.request("GET", f"/{name}/x")
            r = p.getresponse()
            r.read()
            if r.status == 200:
                break
            if time.perf_counter() - start > 30:
                sys.exit(f"route {name} not served after 30 s (last status {r.status})")
        took.append((time.perf_counter() - start) * 1000)
    for rid in made:
        a.request("DELETE", f"/routes/{rid}")
        a.getresponse().read()
    print(f"RESULT count={count} p50_ms={pct(took, 50):.1f} p99_ms={pct(took, 99):.1f} max_ms={max(took):.1f}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(int(sys.argv[2]), sys.argv[3])
    elif cmd == "propagate":
        propagate(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else "s1")
    else:
        sys.exit(__doc__)
