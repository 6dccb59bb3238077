-- W1/W2 against the Pushgateway: the same two gauges, pushed as Prometheus text with PUT
-- (what prometheus_client.push_to_gateway does) to one group.
-- args: <job>
local counter = 0
local job

function init(args)
  job = args[1] or "hpc"
end

function request()
  counter = counter + 1
  local body = string.format("slurm_pending_jobs %d\nslurm_running_jobs %d\n",
                             counter % 500, counter % 100)
  return wrk.format("PUT", "/metrics/job/" .. job, {
    ["Content-Type"] = "text/plain; version=0.0.4",
  }, body)
end
