-- static.lua: the same request every time (the URL's path, GET): no request() function, so wrk pre-builds it and
-- spends no Lua per request. Used for scenario 1 (the ceiling).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
