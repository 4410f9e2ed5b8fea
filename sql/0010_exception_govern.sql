-- Governing approved exceptions over time (app/exceptions/govern.py): the
-- reminders sent before an exception ends, the in-app notifications they make,
-- and the outbox their emails leave through.
--
-- A reminder, its notifications and its outbox mails are written in one
-- transaction; the mail is sent later by the outbox job, which marks each row
-- delivered. So a crash loses no reminder and a reminder is never made twice.

-- One row per exception, term and threshold: the UNIQUE key is what makes a
-- reminder go out exactly once, across restarts and concurrently running
-- instances alike. `ends_on` is the end it was for, so a changed end date
-- starts the reminders of the new term afresh.
CREATE TABLE exception_reminder (
    tenant_id      uuid NOT NULL REFERENCES tenant (id),
    exception_id   uuid NOT NULL,
    ends_on        date NOT NULL,
    threshold_days integer NOT NULL CHECK (threshold_days IN (90, 60, 30)),
    sent_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, exception_id, ends_on, threshold_days),
    FOREIGN KEY (tenant_id, exception_id) REFERENCES exception (tenant_id, id) ON DELETE CASCADE
);

-- What a user sees in the app's notification list. The text is complete in
-- itself (no join needed to show it); it names the exception, never a person.
CREATE TABLE notification (
    tenant_id    uuid NOT NULL REFERENCES tenant (id),
    id           uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id      uuid NOT NULL,
    exception_id uuid,
    kind         text NOT NULL CHECK (kind IN ('reminder')),
    text         text NOT NULL CHECK (length(text) BETWEEN 1 AND 1000),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    read_at      timestamptz,
    FOREIGN KEY (tenant_id, user_id) REFERENCES app_user (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, exception_id) REFERENCES exception (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX notification_unread ON notification (tenant_id, user_id, created_at DESC) WHERE read_at IS NULL;
CREATE INDEX notification_recent ON notification (tenant_id, user_id, created_at DESC);

-- Mail waiting to be sent. It holds the recipient's user id, not their
-- address: the address is read from app_user when the mail is sent (so a
-- changed or erased address is honoured, and the queue holds no copy of it),
-- and delivered rows are deleted after a while (app/jobs/outbox.py).
CREATE TABLE mail_outbox (
    tenant_id    uuid NOT NULL REFERENCES tenant (id),
    id           uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id      uuid NOT NULL,
    subject      text NOT NULL CHECK (length(subject) BETWEEN 1 AND 300),
    body         text NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    status       text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'dropped')),
    attempts     integer NOT NULL DEFAULT 0,
    not_before   timestamptz NOT NULL DEFAULT '-infinity',   -- the next attempt after a failed one
    last_error   text CHECK (length(last_error) <= 500),
    done_at      timestamptz,                                -- sent, or dropped (recipient disabled or gone)
    CHECK ((status = 'queued') = (done_at IS NULL)),
    FOREIGN KEY (tenant_id, user_id) REFERENCES app_user (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX mail_outbox_due ON mail_outbox (tenant_id, not_before, created_at) WHERE status = 'queued';
CREATE INDEX mail_outbox_done ON mail_outbox (tenant_id, done_at) WHERE status <> 'queued';

SELECT isolate_by_tenant(t)
  FROM unnest(ARRAY['exception_reminder', 'notification', 'mail_outbox']::regclass[]) AS t;
GRANT SELECT, INSERT ON exception_reminder TO exceptao_app;            -- reminders are never changed or removed
GRANT SELECT, INSERT ON notification TO exceptao_app;
GRANT UPDATE (read_at) ON notification TO exceptao_app;                 -- a user marks theirs read, nothing else
GRANT SELECT, INSERT, DELETE ON mail_outbox TO exceptao_app;
GRANT UPDATE (status, attempts, not_before, last_error, done_at) ON mail_outbox TO exceptao_app;
