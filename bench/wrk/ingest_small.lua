-- W1/W2: the Worker's push shape (one source, two metrics), a fresh timestamp per request so
-- every request stores two new samples (nothing is replaced, row counts can be checked).
-- args: <token> <first timestamp>
local counter = 0
local token, base

function init(args)
  token = args[1]
  base = tonumber(args[2])
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"source":"hpc","timestamp":%d,"metrics":{"slurm_pending_jobs":%d,"slurm_running_jobs":%d}}',
    base + counter, counter % 500, counter % 100)
  return wrk.format("POST", "/ingest", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end
