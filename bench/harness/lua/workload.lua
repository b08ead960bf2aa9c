-- One wrk workload, configured from the environment by bench/harness/load.py:
--   BENCH_METHOD, BENCH_PATH, BENCH_HEADERS ("Name: value" lines, "\n"-separated),
--   BENCH_BODY (one body for every request) or BENCH_BODIES (a file, one body per line;
--   thread n of N takes lines n, n+N, ... and stops sending when its share is used up, so
--   no body is ever sent twice), BENCH_SAVE (a directory: each 200 body is appended to
--   thread-<n>.txt there, for the load run's accounting).
-- done() prints one JSON line: requests, seconds, latency percentiles (µs), errors by kind
-- and by status.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

statuses = {}  -- global: done() reads it from every thread
local bodies, position, saved = nil, 0, nil
local method, path, headers, body

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  method = os.getenv("BENCH_METHOD") or "GET"
  path = os.getenv("BENCH_PATH") or "/"
  body = os.getenv("BENCH_BODY")
  headers = {}
  for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
    local name, value = string.match(line, "^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  local file = os.getenv("BENCH_BODIES")
  if file then
    bodies = {}
    local n = 0
    for line in io.lines(file) do
      if n % nthreads == id - 1 then table.insert(bodies, line) end
      n = n + 1
    end
  end
  local save = os.getenv("BENCH_SAVE")
  if save then
    saved = io.open(save .. "/thread-" .. id .. ".txt", "a")
    saved:setvbuf("line")
  end
end

function request()
  local payload = body
  if bodies then
    position = position + 1
    payload = bodies[position]
    if payload == nil then
      -- This thread's share is used up: ask for something harmless and don't count it.
      return wrk.format("GET", "/__bench_exhausted__", headers)
    end
  end
  return wrk.format(method, path, headers, payload)
end

function response(status, response_headers, response_body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if saved and status == 200 then
    saved:write(response_body, "\n")
  end
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for key, value in pairs(counts) do merged[key] = (merged[key] or 0) + value end
  end
  local parts = {}
  for key, value in pairs(merged) do table.insert(parts, string.format('"%s": %d', key, value)) end
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status, table.concat(parts, ", ")))
end
