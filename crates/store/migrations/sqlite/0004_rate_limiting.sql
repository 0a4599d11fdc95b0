-- Version 4 (SQLite): the `rate-limiting` plugin's `cluster` counters, as Kong keeps them in its
-- `ratelimiting_metrics` table. One row per window of one period, for one identifier, in the scope of one plugin
-- instance (the null UUID stands for "no route" or "no service", as in Kong). `period_date` is the window's first
-- second and `expires_at` the second it ends (unix time); rows past it are pruned.

CREATE TABLE ratelimiting_metrics (
    route_id    TEXT    NOT NULL,
    service_id  TEXT    NOT NULL,
    identifier  TEXT    NOT NULL,
    period      TEXT    NOT NULL,
    period_date INTEGER NOT NULL,
    value       INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (route_id, service_id, identifier, period, period_date)
);

CREATE INDEX ratelimiting_metrics_expires_at ON ratelimiting_metrics (expires_at);
