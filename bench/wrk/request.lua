-- One fixed request, described by environment variables:
-- BENCH_METHOD (default GET), BENCH_BODY, BENCH_AUTH (Authorization value),
-- BENCH_HOST (Host header), BENCH_CONTENT_TYPE, BENCH_COOKIE (Cookie value;
-- wrk keeps no cookies, so Set-Cookie answers are never sent back).
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Host"] = os.getenv("BENCH_HOST")
local auth = os.getenv("BENCH_AUTH")
if auth then wrk.headers["Authorization"] = auth end
local content_type = os.getenv("BENCH_CONTENT_TYPE")
if content_type then wrk.headers["Content-Type"] = content_type end
local cookie = os.getenv("BENCH_COOKIE")
if cookie then wrk.headers["Cookie"] = cookie end
