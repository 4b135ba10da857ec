-- wrk script for P2: agents PATCH progress onto their own executions.
--
-- Usage: wrk ... -H 'X-API-Key: AGENT' -s bench/lua/patch_progress.lua URL -- IDS_FILE
-- IDS_FILE holds one execution id per line. Request n goes to execution n mod #ids with
-- progress floor(n / #ids) mod 100, so each execution's next update always changes its
-- progress (a write and an event row every time, never a no-op). With more ids than
-- connections, no two requests in flight share an execution in practice; if they did,
-- the row lock would order them (no expected_version is sent, so no conflict either way).

local ids = {}
local counter = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      ids[#ids + 1] = line
    end
  end
  if #ids == 0 then
    error("no execution ids in " .. tostring(args[1]))
  end
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local n = #ids
  local index = counter % n
  local progress = math.floor(counter / n) % 100
  counter = counter + 1
  local body = '{"progress": ' .. progress .. '}'
  return wrk.format("PATCH", "/v1/executions/" .. ids[index + 1], nil, body)
end
