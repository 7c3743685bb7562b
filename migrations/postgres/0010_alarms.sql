-- etcd's alarms (Maintenance.Alarm): which member raised which alarm
-- (1 NOSPACE, 2 CORRUPT). Kept until an admin disarms them.
CREATE TABLE alarms (
    member_id BIGINT NOT NULL,
    alarm     INTEGER NOT NULL,
    PRIMARY KEY (member_id, alarm)
);
