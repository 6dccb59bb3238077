-- Bodies prepared on disk (bench/encode.py), sent in turn: binary-safe (remote_write) and
-- without building anything per request.
-- args: <method> <path> <directory> <count> <authorization or -> <content-type>
--       [<content-encoding>]
local bodies = {}
local method, path, headers
local counter = 0

function init(args)
  method, path = args[1], args[2]
  local count = tonumber(args[4])
  for i = 0, count - 1 do
    local file = assert(io.open(args[3] .. "/body_" .. i, "rb"))
    bodies[#bodies + 1] = file:read("*a")
    file:close()
  end
  headers = {["Content-Type"] = args[6]}
  if args[5] ~= "-" then headers["Authorization"] = args[5] end
  if args[7] then headers["Content-Encoding"] = args[7] end
  if args[7] == "snappy" then headers["X-Prometheus-Remote-Write-Version"] = "0.1.0" end
end

function request()
  counter = counter + 1
  return wrk.format(method, path, headers, bodies[(counter % #bodies) + 1])
end
