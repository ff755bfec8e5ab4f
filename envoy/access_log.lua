-- The error type a 403 from VPC Lattice starts with (`AccessDeniedException: ...`), as dynamic
-- metadata for the access log. Envoy runs this only for 403 answers; the body is read only when
-- its length is known and small, so no other answer is ever buffered.
local MAX_ERROR_BODY = 4096

function envoy_on_response(handle)
  local length = tonumber(handle:headers():get("content-length") or "")
  if length == nil or length == 0 or length > MAX_ERROR_BODY then
    return
  end
  local body = handle:body()
  if body == nil then
    return
  end
  local kind = string.match(body:getBytes(0, body:length()), "^(%a+Exception)")
  if kind then
    handle:streamInfo():dynamicMetadata():set("lattice_xds", "lattice_error", kind)
  end
end
