-- dynamic.lua: one request built per call, for the scenarios whose requests must differ.
--   wrk ... -s dynamic.lua URL -- MODE NONCE [IDS]
-- MODE  signup   POST URL's path, {"name":..,"email":..} with an e-mail unique per request: NONCE (one per wrk run,
--                so a warm-up and the timed run never collide), the wrk thread number and a per-thread counter
--       user     GET /users/<id>, id uniformly random in 1..IDS (ids that exist)
--       pay      POST URL's path, {"userId":<random 1..IDS>,"amount":<n>}
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

-- runs in the main state once per thread before they start: number the threads
local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

local mode, nonce, ids
local counter = 0
local json_headers = { ["Content-Type"] = "application/json" }

function init(args)
  mode = args[1] or "signup"
  nonce = args[2] or tostring(os.time())
  ids = tonumber(args[3]) or 1
  math.randomseed(os.time() * 1000 + (tid or 0))
  if mode ~= "signup" and mode ~= "user" and mode ~= "pay" then
    error("dynamic.lua: unknown mode " .. tostring(mode))
  end
end

function request()
  counter = counter + 1
  if mode == "signup" then
    local body = string.format('{"name":"Bench User %d","email":"u%s-%d-%d@bench.example.com"}', counter, nonce,
      tid or 0, counter)
    return wrk.format("POST", wrk.path, json_headers, body)
  elseif mode == "user" then
    return wrk.format("GET", "/users/" .. math.random(1, ids))
  else
    local body = string.format('{"userId":%d,"amount":%d}', math.random(1, ids), 1 + counter % 1000)
    return wrk.format("POST", wrk.path, json_headers, body)
  end
end
