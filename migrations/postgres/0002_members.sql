-- The server processes serving this database, as etcd's Cluster.MemberList
-- shows them; each refreshes its row while it runs.
CREATE TABLE members (
    id           BIGINT  NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    client_url   TEXT    NOT NULL,
    heartbeat_ms BIGINT  NOT NULL
);
