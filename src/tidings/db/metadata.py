"""All tables, gathered for migrations: importing this module registers every ``orm`` module."""

from __future__ import annotations

from tidings.automation import orm as automation_orm
from tidings.broadcasts import orm as broadcasts_orm
from tidings.channels import orm as channels_orm
from tidings.contacts import orm as contacts_orm
from tidings.crm_sync import orm as crm_sync_orm
from tidings.db.base import Base
from tidings.exports import orm as exports_orm
from tidings.mailing import orm as mailing_orm
from tidings.messaging import orm as messaging_orm
from tidings.scheduler import orm as scheduler_orm
from tidings.sequences import orm as sequences_orm
from tidings.webhooks import orm as webhooks_orm
from tidings.workspaces import orm as workspaces_orm

REGISTERED = (
    automation_orm,
    broadcasts_orm,
    channels_orm,
    contacts_orm,
    crm_sync_orm,
    exports_orm,
    mailing_orm,
    messaging_orm,
    scheduler_orm,
    sequences_orm,
    webhooks_orm,
    workspaces_orm,
)
target_metadata = Base.metadata
