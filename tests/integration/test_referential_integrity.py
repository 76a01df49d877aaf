"""The hot tables without a foreign key on their workspace still never keep an orphan (#23).

Contact external ids, conversations, messages, timeline events and send traces reach their
workspace through their contact (migration 0024). Deleting a contact, or a whole workspace,
must still take every one of their rows with it and leave the other workspace's alone; and
migration 0024 goes down (the keys come back) and up again to the models' schema.
"""

from __future__ import annotations

from datetime import timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, inspect, text

from tidings.bootstrap import Tidings
from tidings.channels import inbound
from tidings.channels import service as channels
from tidings.channels.domain import InboundMessage, MessageKind, WhatsAppIdentity
from tidings.contacts import service as contacts
from tidings.db.metadata import target_metadata
from tidings.db.migrate import downgrade, upgrade
from tidings.messaging.orm import SendTrace
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

HOT = ("contact_external_ids", "conversations", "messages", "contact_events", "send_traces")


def shop(tidings: Tidings, name: str, digit: int) -> tuple[int, list[int]]:
    """A workspace where three customers wrote (through the batch intake); the workspace id
    and the customers' contact ids."""
    now = tidings.clock.now()
    with tidings.db.transaction() as session:
        workspace = workspaces.create_workspace(
            session,
            slug=name,
            settings=workspaces.WorkspaceSettings(name, "TW", "Asia/Taipei", "zh-Hant-TW"),
            now=now,
        )
        number = channels.add_number(
            session,
            workspace=workspace,
            data={
                "name": name,
                "phone_number_id": f"{digit}0654035224292",
                "business_account_id": "102290129340398",
                "display_phone_number": "+852 3000 1234",
                "access_token": "access-token-0123",
                "app_secret": "app-secret-0123",
                "verify_token": "verify-token-0123",
            },
            box=tidings.secret_box,
            now=now,
        )
        received = [
            inbound.Received(
                n,
                number.id,
                InboundMessage(
                    channel_id=f"{digit}0654035224292",
                    account_id="102290129340398",
                    message_id=f"wamid.{name}.{n}",
                    sender=WhatsAppIdentity(wa_id=f"88690000{digit}{n:03d}", profile_name="Lin"),
                    sent_at=now - timedelta(minutes=1),
                    kind=MessageKind.TEXT,
                    text="hello",
                ),
            )
            for n in range(3)
        ]
        outcome = inbound.record_inbound_messages(
            session, workspace=workspace, received=received, now=now
        )
        assert outcome.done == [0, 1, 2]
        session.add_all(
            SendTrace(
                workspace_id=workspace.id,
                message_id=message_id,
                contact_id=contact_id,
                outcome="received",
                reason="integrity test",
                at=now,
            )
            for message_id, contact_id in session.execute(
                text("SELECT id, contact_id FROM messages WHERE workspace_id = :w"),
                {"w": workspace.id},
            )
        )
        people = session.scalars(
            text("SELECT id FROM contacts WHERE workspace_id = :w ORDER BY id"),
            {"w": workspace.id},
        ).all()
        return workspace.id, list(people)


def rows_of(tidings: Tidings, workspace_id: int) -> dict[str, int]:
    with tidings.db.reading() as session:
        return {
            table: session.execute(
                text(f"SELECT count(*) FROM {table} WHERE workspace_id = :w"),  # noqa: S608
                {"w": workspace_id},
            ).scalar_one()
            for table in HOT
        }


def orphans(tidings: Tidings) -> dict[str, int]:
    """Rows whose contact or workspace is gone."""
    with tidings.db.reading() as session:
        return {
            table: session.execute(
                text(
                    f"SELECT count(*) FROM {table} t WHERE NOT EXISTS"  # noqa: S608
                    " (SELECT 1 FROM contacts c WHERE c.id = t.contact_id)"
                    " OR NOT EXISTS (SELECT 1 FROM workspaces w WHERE w.id = t.workspace_id)"
                )
            ).scalar_one()
            for table in HOT
        }


def test_deleting_a_contact_or_a_workspace_leaves_no_orphan_in_the_hot_tables(
    tidings: Tidings,
) -> None:
    gone, (first, *_) = shop(tidings, "closing-shop", 1)
    kept, _ = shop(tidings, "staying-shop", 2)
    before = rows_of(tidings, kept)
    assert all(before.values()), before  # every hot table holds rows to lose
    with tidings.db.transaction() as session:
        workspace = workspaces.get_workspace(session, gone)
        assert workspace is not None
        contacts.delete_contact(session, workspace=workspace, contact_id=first)
    with tidings.db.reading() as session:
        for table in HOT:
            left = session.execute(
                text(f"SELECT count(*) FROM {table} WHERE contact_id = :c"),  # noqa: S608
                {"c": first},
            ).scalar_one()
            assert left == 0, table
    assert all(rows_of(tidings, gone).values())  # the other two customers' rows stay
    with tidings.db.transaction() as session:
        session.execute(delete(Workspace).where(Workspace.id == gone))
    assert rows_of(tidings, gone) == dict.fromkeys(HOT, 0)
    assert rows_of(tidings, kept) == before
    assert orphans(tidings) == dict.fromkeys(HOT, 0)


def test_migration_0024_goes_down_with_the_keys_and_up_again_keeping_every_row(
    tidings: Tidings,
) -> None:
    """Down and up rebuild the tables on SQLite, which must not delete in cascade the rows
    pointing at them (a conversation's messages): every row is still there after."""
    workspace_id, _ = shop(tidings, "migrating-shop", 3)
    before = rows_of(tidings, workspace_id)
    assert all(before.values()), before

    def workspace_keys() -> set[str]:
        with tidings.db.engine.connect() as connection:
            found = inspect(connection)
            return {
                table
                for table in HOT
                for key in found.get_foreign_keys(table)
                if key["referred_table"] == "workspaces"
            }

    assert workspace_keys() == set()
    downgrade(tidings.db.engine, "0023")
    assert workspace_keys() == set(HOT)
    assert rows_of(tidings, workspace_id) == before
    upgrade(tidings.db.engine)
    assert workspace_keys() == set()
    assert rows_of(tidings, workspace_id) == before
    with tidings.db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, target_metadata) == []
