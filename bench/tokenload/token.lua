-- wrk script of the token load benchmark (bench/load.sh runs it through bench/tokenload).
--
--   wrk -t2 -c64 -d15s --latency -s token.lua http://127.0.0.1:PORT/token -- DATA.lua
--     sends a new request every time, built from DATA.lua (written by tokenload): a random
--     account with its own API key, 1 to 3 scopes, each for a repository the account holds a
--     grant on (half the time; a name under one of its globs is made up fresh) or for one of
--     the 100,000 of the universe, asking for pull or push,pull. No two requests need repeat,
--     so no decision cache can answer them.
--   wrk -t2 -c64 -d15s --latency -s token.lua URL
--     sends URL as it is, again and again (anonymous, cached and peer references).
--
-- Either way done() prints one line of figures, "tokenload requests=… p999_us=…", which
-- tokenload reads: wrk's own report stops at p99.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local accounts, path, service, namespaces, per_namespace

-- seed differs for every thread of every run: a run must not replay the requests of the one
-- before it (the warm-up, another round), which the decision cache would then answer.
local function seed()
  local f = io.open("/dev/urandom", "rb")
  local b = f:read(4)
  f:close()
  return ((b:byte(1) * 256 + b:byte(2)) * 256 + b:byte(3)) * 128 + b:byte(4) % 128 + id
end

function init(args)
  if args[1] == nil or args[1] == "" then
    -- Without a request function wrk sends the URL it was given, prepared once.
    request = nil
    return
  end
  local data = dofile(args[1])
  accounts, path, service = data.accounts, data.path, data.service
  namespaces, per_namespace = data.namespaces, data.per_namespace
  math.randomseed(seed())
end

local function repository(account)
  if math.random() < 0.5 then
    local g = account.grants[math.random(#account.grants)]
    if g:sub(-1) == "/" then
      -- a glob "ns/*": a name under it that no other request needs to share
      return g .. "x" .. math.random(1, 1000000000)
    end
    return g
  end
  return string.format("ns%d/app%d", math.random(0, namespaces - 1), math.random(0, per_namespace - 1))
end

function request()
  local a = accounts[math.random(#accounts)]
  local q = { path, "?service=", service }
  for _ = 1, math.random(3) do
    q[#q + 1] = "&scope=repository:" .. repository(a) .. (math.random() < 0.3 and ":push,pull" or ":pull")
  end
  return wrk.format("GET", table.concat(q), { Authorization = a.auth })
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "tokenload requests=%d duration_us=%d errors_status=%d errors_connect=%d errors_read=%d " ..
    "errors_write=%d errors_timeout=%d p50_us=%d p75_us=%d p90_us=%d p99_us=%d p999_us=%d " ..
    "max_us=%d mean_us=%.1f\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
