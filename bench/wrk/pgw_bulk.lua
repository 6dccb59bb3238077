-- W3 against the Pushgateway: 1,000 samples per push (10 hosts x 100 gauges) as text, PUT to
-- one group per host set.
local counter = 0
local body

function init(args)
  local lines = {}
  for host = 1, 10 do
    for m = 1, 100 do
      lines[#lines + 1] = string.format('bulk_metric_%d{host="h%d"} %d.5', m, host, m * host)
    end
  end
  body = table.concat(lines, "\n") .. "\n"
end

function request()
  counter = counter + 1
  return wrk.format("PUT", "/metrics/job/bulk", {
    ["Content-Type"] = "text/plain; version=0.0.4",
  }, body)
end
