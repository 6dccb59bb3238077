-- W3 against VictoriaMetrics' /api/v1/import/prometheus: the same 1,000 samples per push, with
-- millisecond timestamps, a fresh timestamp per request.
-- args: <first timestamp in seconds>
local counter = 0
local base
local prefix = {}

function init(args)
  base = tonumber(args[1])
  for host = 1, 10 do
    for m = 1, 100 do
      prefix[#prefix + 1] = string.format('bulk_metric_%d{host="h%d",source="bulk"} %d.5 ',
                                          m, host, m * host)
    end
  end
end

function request()
  counter = counter + 1
  local ts = tostring((base + counter) * 1000)
  local lines = {}
  for i, p in ipairs(prefix) do
    lines[i] = p .. ts
  end
  return wrk.format("POST", "/api/v1/import/prometheus", {
    ["Content-Type"] = "text/plain",
  }, table.concat(lines, "\n") .. "\n")
end
