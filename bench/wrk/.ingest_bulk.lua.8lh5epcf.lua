-- W3: bulk pushes, 1,000 samples per push as a JSON array of 10 objects x 100 metrics
-- (10 hosts, the same 1,000 series every push), a fresh timestamp per request.
-- args: <token> <first timestamp>
local counter = 0
local token, base
local parts = {}

function init(args)
  token = args[1]
  base = tonumber(args[2])
  -- Pre-build the body around the timestamp slots so each request is one table.concat.
  local chunk = {}
  for host = 1, 10 do
    local metrics = {}
    for m = 1, 100 do
      metrics[m] = string.format('"bulk_metric_%d":%d.5', m, m * host)
    end
    parts[#parts + 1] = (host == 1 and "[" or ",") ..
      string.format('{"source":"bulk","labels":{"host":"h%d"},"metrics":{%s},"timestamp":',
                    host, table.concat(metrics, ","))
    parts[#parts + 1] = false  -- timestamp slot
    parts[#parts + 1] = "}"
  end
  parts[#parts + 1] = "]"
end

function request()
  counter = counter + 1
  local ts = tostring(base + counter)
  local body = {}
  for i, part in ipairs(parts) do
    body[i] = part or ts
  end
  return wrk.format("POST", "/ingest", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, table.concat(body))
end

-- Shared done(): one JSON line with throughput, errors and latency percentiles (microseconds).
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"latency_p50_us":%d,"latency_p90_us":%d,"latency_p99_us":%d,"latency_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
