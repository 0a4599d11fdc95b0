-- wrk script: one fixed form POST, response checking, and a machine-readable summary line.
--
-- Environment (read in every wrk thread):
--   BENCH_BODY     the x-www-form-urlencoded body
--   BENCH_AUTH     the Authorization header value ("Basic ...")
--   BENCH_EXPECT   optional: a substring every 200 response body must contain (e.g. "access_token", "\"active\":true")
--
-- done() prints one line:
--   RESULT requests=N seconds=S rps=R p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. ok=N non200=N mismatch=N
--          sockerr=N first_bad="status body..."
-- ok counts 200 responses whose body contains BENCH_EXPECT; non200 any other status; mismatch a 200 without it.

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  expect = os.getenv("BENCH_EXPECT")
  if expect == "" then expect = nil end
  ok = 0
  non200 = 0
  mismatch = 0
  first_bad = ""
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_bad == "" then first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 200) end
  elseif expect and not string.find(body or "", expect, 1, true) then
    mismatch = mismatch + 1
    if first_bad == "" then first_bad = "200 " .. string.sub(body or "", 1, 200) end
  else
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local t_ok, t_non200, t_mismatch, bad = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    t_ok = t_ok + (thread:get("ok") or 0)
    t_non200 = t_non200 + (thread:get("non200") or 0)
    t_mismatch = t_mismatch + (thread:get("mismatch") or 0)
    local fb = thread:get("first_bad")
    if bad == "" and fb and fb ~= "" then bad = fb end
  end
  local e = summary.errors
  local sockerr = e.connect + e.read + e.write + e.timeout
  local seconds = summary.duration / 1e6
  bad = string.gsub(string.gsub(bad, "[\r\n]", " "), "\"", "'")
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f ok=%d non200=%d mismatch=%d sockerr=%d first_bad=\"%s\"\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, t_ok, t_non200, t_mismatch, sockerr, bad))
end
