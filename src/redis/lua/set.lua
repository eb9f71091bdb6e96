-- SET: writes field ARGV[6] = ARGV[7], unless that adds a key past ARGV[8] (max keys) or
-- grows the session past ARGV[9] bytes (max session bytes).
-- Answers "ok" and the metadata; {"gone"}, {"locked"}, {"toomany"}, {"toobig", size}.
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
local refused = put(ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]))
slide()
if refused then return refused end
return reply()
