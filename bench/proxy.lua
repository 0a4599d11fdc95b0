-- wrk script for bench/proxy.sh: plain GETs (no per-response Lua, so wrk stays as cheap as without a script) and
-- one machine-readable summary line.
--
-- done() prints:
--   RESULT requests=N seconds=S rps=R p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. non2xx=N connect=N read=N write=N
--          timeout=N
-- non2xx is wrk's "Non-2xx or 3xx responses" (status >= 400); connect/read/write/timeout are socket errors (a reset
-- or a connection closed by the server shows up as read errors). bench/proxy-check.lua checks statuses exactly.

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout))
end
