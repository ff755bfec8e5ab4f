-- The egress access log's two facts that no log operator reads: the destination's route, out
-- of the provenance its route's name carries ("destination h:p; route ns/name; ..."), and on a
-- 403 the error type Lattice's body starts with (`AccessDeniedException: ...`). Both become
-- dynamic metadata under lattice_xds for the log line. Only a 403 body of known, small length is
-- read, so no other response is ever buffered.
local MAX_ERROR_BODY = 4096

function envoy_on_response(handle)
  local info = handle:streamInfo()
  local route = string.match(info:routeName() or "", "route ([^;]+)")
  if route then
    info:dynamicMetadata():set("lattice_xds", "route", route)
  end
  local headers = handle:headers()
  if headers:get(":status") ~= "403" then
    return
  end
  local length = tonumber(headers:get("content-length") or "")
  if length == nil or length == 0 or length > MAX_ERROR_BODY then
    return
  end
  local body = handle:body()
  if body == nil then
    return
  end
  local kind = string.match(body:getBytes(0, body:length()), "^(%a+Exception)")
  if kind then
    -- Waiting for the body ends the scope of objects taken before: ask again.
    handle:streamInfo():dynamicMetadata():set("lattice_xds", "lattice_error", kind)
  end
end
