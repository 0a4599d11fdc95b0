-- wrk script for bench/proxy.sh's strict check: every response must be exactly 200 with the upstream's body
-- ("hello\n"); counts everything else and keeps the first few bad responses (status, headers, body).
--
-- done() prints:
--   CHECK requests=N ok=N bad=N connect=N read=N write=N timeout=N statuses="200:N 502:N ..." first_bad="..."

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  bad = 0
  statuses = {}
  first_bad = ""
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 and body == "hello\n" then
    ok = ok + 1
  else
    bad = bad + 1
    if bad <= 3 then
      local h = ""
      for k, v in pairs(headers) do h = h .. k .. ": " .. v .. "; " end
      first_bad = first_bad .. "[" .. tostring(status) .. " {" .. h .. "} " .. string.sub(body or "", 1, 300) .. "] "
    end
  end
end

function done(summary, latency, requests)
  local t_ok, t_bad, fb, st = 0, 0, "", {}
  for _, thread in ipairs(threads) do
    t_ok = t_ok + (thread:get("ok") or 0)
    t_bad = t_bad + (thread:get("bad") or 0)
    local b = thread:get("first_bad")
    if b and b ~= "" and #fb < 2000 then fb = fb .. b end
    local s = thread:get("statuses")
    if s then for k, v in pairs(s) do st[k] = (st[k] or 0) + v end end
  end
  local keys = {}
  for k in pairs(st) do table.insert(keys, k) end
  table.sort(keys)
  local dist = ""
  for _, k in ipairs(keys) do dist = dist .. tostring(k) .. ":" .. tostring(st[k]) .. " " end
  local e = summary.errors
  fb = string.gsub(string.gsub(fb, "[\r\n]", "\\n"), "\"", "'")
  io.write(string.format("CHECK requests=%d ok=%d bad=%d connect=%d read=%d write=%d timeout=%d statuses=\"%s\" first_bad=\"%s\"\n",
    summary.requests, t_ok, t_bad, e.connect, e.read, e.write, e.timeout, dist, fb))
end
