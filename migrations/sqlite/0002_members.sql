-- The server processes serving this database, as etcd's Cluster.MemberList
-- shows them; each refreshes its row while it runs.
CREATE TABLE members (
    id           INTEGER NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    client_url   TEXT    NOT NULL,
    heartbeat_ms INTEGER NOT NULL
);
