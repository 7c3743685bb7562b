-- Who a lease belongs to: '' for the platform (the server's own leases and
-- those the platform admin grants), otherwise the tenant whose member
-- granted it. Leases granted before owners existed belong to the platform,
-- out of every tenant's reach.
ALTER TABLE leases ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX leases_owner ON leases (owner, id);

-- Failed sign-ins, counted per account ('account:<email>') and per address
-- ('address:<ip>'), shared by the REST API and the etcd API and by every
-- server process on this database.
CREATE TABLE sign_in_failures (
    key             TEXT    NOT NULL PRIMARY KEY,
    failures        INTEGER NOT NULL,
    window_start_ms INTEGER NOT NULL,
    locked_until_ms INTEGER NOT NULL
);
