-- Each tenant's Pod Security level (Kubernetes' Pod Security Standards),
-- which admission checks its pods and pod templates against. Existing
-- tenants get the default, baseline.
ALTER TABLE tenants ADD COLUMN pod_security TEXT NOT NULL DEFAULT 'baseline'
    CHECK (pod_security IN ('privileged', 'baseline', 'restricted'));
