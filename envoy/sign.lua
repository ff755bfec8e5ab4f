-- lattice-xds, Lua signing mode: every request is signed by the signer sidecar's HTTP endpoint.
--
-- The request is described in the body of a POST to /v1/sign, one item per line: the method,
-- the path with its query, then one "name: value" line per header (the authority as "host").
-- The signer answers 200 with one "name: value" line per header to set and one "-name" line per
-- header to remove. Any other answer, and any failure here, is returned to the application as
-- an error: a request is never sent on unsigned.
local SIGNER_CLUSTER = {{cluster}}
local REGION = {{region}}
local SERVICE = {{service}}
local ALGORITHM = {{algorithm}}
local REGION_SET = {{region_set}}
local TIMEOUT_MS = 1000
-- How the signer's own refusals begin (no credentials, a request it cannot sign).
local SIGNER_REFUSAL = "lattice-xds signer:"

local function describe(headers)
  local lines = { headers:get(":method"), headers:get(":path"), "host: " .. headers:get(":authority") }
  for name, value in pairs(headers) do
    if string.sub(name, 1, 1) ~= ":" and name ~= "host" then
      lines[#lines + 1] = name .. ": " .. value
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

local function sign(request_handle)
  local answer, body = request_handle:httpCall(SIGNER_CLUSTER, {
    [":method"] = "POST",
    [":path"] = "/v1/sign",
    [":authority"] = "lattice-xds-signer",
    ["content-type"] = "text/plain",
    ["x-lattice-xds-region"] = REGION,
    ["x-lattice-xds-service"] = SERVICE,
    ["x-lattice-xds-algorithm"] = ALGORITHM,
    ["x-lattice-xds-region-set"] = REGION_SET,
  }, describe(request_handle:headers()), TIMEOUT_MS)
  local status = answer and answer[":status"]
  if status ~= "200" or body == nil then
    if body == nil or string.sub(body, 1, #SIGNER_REFUSAL) ~= SIGNER_REFUSAL then
      -- Envoy's own answer for the call (no connection, a timeout): the signer was not reached.
      local detail = string.gsub(body or "no answer", "%s+$", "")
      body = "lattice-xds: the signer is unreachable, so the request was not sent ("
        .. (status or "-") .. " " .. detail .. ")\n"
      status = "503"
    end
    request_handle:respond({ [":status"] = status, ["content-type"] = "text/plain" }, body)
    return
  end
  -- httpCall yields: header handles taken before it are no longer valid.
  local headers = request_handle:headers()
  for line in string.gmatch(body, "[^\n]+") do
    if string.sub(line, 1, 1) == "-" then
      headers:remove(string.sub(line, 2))
    else
      local name, value = string.match(line, "^([^:]+): (.*)$")
      if name then
        headers:replace(name, value)
      end
    end
  end
end

function envoy_on_request(request_handle)
  local ok, err = pcall(sign, request_handle)
  if not ok then
    request_handle:logErr("lattice-xds signing failed: " .. tostring(err))
    request_handle:respond({ [":status"] = "500", ["content-type"] = "text/plain" },
      "lattice-xds: signing failed; the request was not sent\n")
  end
end
