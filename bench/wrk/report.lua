-- report.lua: the done() of every bench script (loaded by static.lua and dynamic.lua).
-- Prints one machine-readable line that bench/run parses:
--   BENCH {"requests":..,"duration_us":..,"p50_us":..,...,"p999_us":..,"non2xx":..,"socket_errors":..}
-- wrk's own --latency table (p50/75/90/99) comes from the same histogram; p99.9 is only available here.
-- `non2xx` is wrk's errors.status, which counts responses with a status above 399 (no 3xx are expected here).
function done(summary, latency, requests)
  local e = summary.errors
  local fields = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"mean_us":%.1f', latency.mean),
    string.format('"max_us":%d', latency.max),
    string.format('"non2xx":%d', e.status),
    string.format('"socket_errors":%d', e.connect + e.read + e.write + e.timeout),
    string.format('"connect_errors":%d', e.connect),
    string.format('"read_errors":%d', e.read),
    string.format('"write_errors":%d', e.write),
    string.format('"timeouts":%d', e.timeout),
  }
  for _, p in ipairs({ { "p50", 50 }, { "p75", 75 }, { "p90", 90 }, { "p99", 99 }, { "p999", 99.9 } }) do
    fields[#fields + 1] = string.format('"%s_us":%d', p[1], latency:percentile(p[2]))
  end
  io.write("BENCH {" .. table.concat(fields, ",") .. "}\n")
end
