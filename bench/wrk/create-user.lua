-- POST /api/users with a new email address on every request.
-- BENCH_HOST, BENCH_AUTH as in request.lua.
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1000000))
local headers = {
  ["Host"] = os.getenv("BENCH_HOST"),
  ["Authorization"] = os.getenv("BENCH_AUTH"),
  ["Content-Type"] = "application/vnd.api+json",
}
function setup(thread)
  thread:set("id", tostring(math.random(1000000000)))
end
request = function()
  counter = counter + 1
  local email = "new-" .. prefix .. "-" .. id .. "-" .. counter .. "@example.com"
  local body = '{"data":{"type":"user","attributes":{"email":"' .. email ..
    '","password":"correct horse battery staple","password_confirmation":"correct horse battery staple"}}}'
  return wrk.format("POST", "/api/users", headers, body)
end
