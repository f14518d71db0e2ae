-- Several processes append to one entry's log: `seq` comes from one sequence, so rows
-- never collide whoever writes them. It starts above every seq already used (log rows
-- and snapshots' upto_seq), so existing logs keep their order.
CREATE SEQUENCE IF NOT EXISTS entry_updates_seq AS BIGINT OWNED BY entry_updates.seq;
SELECT setval('entry_updates_seq',
    GREATEST((SELECT max(seq) FROM entry_updates), (SELECT max(upto_seq) FROM entry_snapshots), 1));
ALTER TABLE entry_updates ALTER COLUMN seq SET DEFAULT nextval('entry_updates_seq');
