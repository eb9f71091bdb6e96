-- INFO: reads the metadata; not a use (the expiry does not slide).
-- Answers "ok" and the metadata; {"gone"}.
if not load(false) then return missing end
return reply()
