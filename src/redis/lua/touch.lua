-- TOUCH: a use, sliding the expiry.
-- Answers "ok" and the metadata; {"gone"}.
if not load(true) then return missing end
slide()
return reply()
