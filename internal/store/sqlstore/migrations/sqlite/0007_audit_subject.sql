-- The person an audit record is about, so one person's history is read by an index rather
-- than a scan of the log. Outside the hash chain: an index, not evidence (the record's own
-- actor and detail still say who). Records from before: idp.* events are the person's own
-- (the actor), eid.* events name the person in their detail: both are filled here.
ALTER TABLE audit_log ADD COLUMN subject TEXT NOT NULL DEFAULT '';
UPDATE audit_log SET subject = actor WHERE action LIKE 'idp.%';
UPDATE audit_log SET subject = COALESCE(json_extract(CAST(detail AS TEXT), '$.subject'), '')
  WHERE action LIKE 'eid.%' AND detail IS NOT NULL AND json_valid(CAST(detail AS TEXT));
CREATE INDEX audit_log_subject ON audit_log (subject, seq) WHERE subject <> '';
