-- SET_PERSISTENT: sets remember-me to ARGV[9] ("1" or "0"); only a logged-in session may have it.
-- Answers "ok" and the metadata; {"gone"}, {"locked"}, {"notloggedin"}.
if not load(true) then return missing end
if busy() then
  save()
  return {'locked'}
end
if ARGV[9] == '1' and m[1] == '0' then
  slide()
  return {'notloggedin'}
end
m[2] = ARGV[9]
slide('p', m[2])
return reply()
