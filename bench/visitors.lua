-- wrk script: returning visitors, each with its own visitor cookie, spread over all campaigns.
-- Environment: VISITORS_FILE (one "name=value" cookie per line, made by scripts/loadtest.sh),
-- CAMPAIGNS (comma-separated ids), LOADTEST_PATH (optional: a fixed path, for the baseline),
-- LOADTEST_MODE: page (/campaigns/<id>, the default), embed (/embed/<id>?target=top, the iframe snippet's
-- document, with the cookie) or decision (/api/decision?c=<id>&vid=<the cookie's vid>, as the JS tag asks).
-- Each thread takes its share of the visitors and hands them out round robin. wrk does not tell a
-- script which connection a request goes out on, so only a thread with one connection (wrk -t N -c N,
-- scripts/loadtest.sh's default) gives its connection one visitor, with one request in flight at a
-- time. A thread with several connections spreads its visitors over them: one visitor can then have
-- two requests in flight at once.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
  table.insert(threads, thread)
end

local function split(text, sep)
  local items = {}
  for item in string.gmatch(text or "", "[^" .. sep .. "]+") do
    table.insert(items, item)
  end
  return items
end

local visitors, campaigns, fixed_path, mode = {}, {}, nil, "page"
local turn, non2xx, statuses = 0, 0, {}

function init(args)
  fixed_path = os.getenv("LOADTEST_PATH")
  mode = os.getenv("LOADTEST_MODE") or "page"
  campaigns = split(os.getenv("CAMPAIGNS"), ",")
  local all = {}
  local file = os.getenv("VISITORS_FILE")
  if file then
    for line in io.lines(file) do
      if #line > 0 then table.insert(all, line) end
    end
  end
  local count = tonumber(os.getenv("THREADS") or "1")
  for i, cookie in ipairs(all) do
    if (i - 1) % count == index - 1 then table.insert(visitors, cookie) end
  end
end

function request()
  turn = turn + 1
  if fixed_path then
    return wrk.format("GET", fixed_path)
  end
  local v = (turn - 1) % #visitors + 1
  -- Visitor v's k-th request goes to campaign (v + k): every visitor visits every campaign.
  local k = math.floor((turn - 1) / #visitors)
  local campaign = campaigns[(v + k + index * 7) % #campaigns + 1]
  if mode == "embed" then
    return wrk.format("GET", "/embed/" .. campaign .. "?target=top", { Cookie = visitors[v] })
  elseif mode == "decision" then
    local vid = string.match(visitors[v], "=(.*)$")
    return wrk.format("GET", "/api/decision?c=" .. campaign .. "&vid=" .. vid)
  end
  return wrk.format("GET", "/campaigns/" .. campaign, { Cookie = visitors[v] })
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write("RESULT requests=", summary.requests, " duration_us=", summary.duration,
    " non2xx=", bad, " connect=", e.connect, " read=", e.read, " write=", e.write,
    " status=", e.status, " timeout=", e.timeout,
    " p50_us=", latency:percentile(50), " p90_us=", latency:percentile(90),
    " p99_us=", latency:percentile(99), " max_us=", latency.max, "\n")
end
