"""Use cases of sequences: define and version, enroll and remove, pause and resume, migrate
running enrollments, export and import, preview. Runs inside the caller's transaction and
never commits. The worker's part (advancing enrollments, reacting to events) is in ``jobs``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import distinct, func, select, update
from sqlalchemy.orm import Session

from tidings.broadcasts.domain import personalise
from tidings.channels import service as channels
from tidings.contacts import service as contacts
from tidings.db.base import among, bulk_insert, table_of
from tidings.kernel.errors import TidingsError, conflict, invalid, not_found
from tidings.mailing import service as mailing
from tidings.messaging import registry
from tidings.messaging import service as messaging
from tidings.messaging.domain import Purpose
from tidings.sequences.definition import (
    EmailTemplateSpec,
    EnrollElsewhere,
    SendEmail,
    SendWhatsApp,
    SequenceDefinition,
    Split,
    TemplateSpec,
    dump_definition,
    parse_definition,
)
from tidings.sequences.domain import (
    BranchResult,
    EmailText,
    branch_label,
    choose_winner,
    email_template_names,
)
from tidings.sequences.files import read_sequence_file, write_sequence_file
from tidings.sequences.orm import Enrollment, SequenceRecord, SequenceVersion, StepRunRecord
from tidings.sequences.preview import Preview, parse_behaviours, preview
from tidings.workspaces import service as workspaces
from tidings.workspaces.orm import Workspace

STATUSES = ("draft", "active", "paused", "archived")
RUNNING = "active"


# --- definitions and versions -------------------------------------------------------------------

# Parsed definitions by their stored text: versions never change, and the text (not the row
# id) is the key, so two databases in one process (the tests) never mix their sequences.
_DEFINITIONS: dict[bytes, SequenceDefinition] = {}


def definition_of(version: SequenceVersion) -> SequenceDefinition:
    """The parsed definition of a stored version (parsed once per process)."""
    return _parsed(version.definition)


def _parsed(stored: dict[str, Any]) -> SequenceDefinition:
    key = orjson.dumps(stored, option=orjson.OPT_SORT_KEYS)
    found = _DEFINITIONS.get(key)
    if found is None:
        found = parse_definition(stored)
        if len(_DEFINITIONS) > 1024:
            _DEFINITIONS.clear()
        _DEFINITIONS[key] = found
    return found


def definitions_by_version(
    session: Session, version_ids: Collection[int]
) -> dict[int, SequenceDefinition]:
    rows = session.execute(
        select(SequenceVersion.id, SequenceVersion.definition).where(
            among(session, SequenceVersion.id, sorted(set(version_ids)))
        )
    )
    return {version_id: _parsed(stored) for version_id, stored in rows}


def check_definition(
    session: Session, workspace: Workspace, data: Any, *, sequence_id: int | None = None
) -> SequenceDefinition:
    """Parse a definition and check what it names in this workspace: the number, the e-mail
    templates of its send steps and the sequences its enroll steps name.

    Raises:
        TidingsError: 422 naming the field at fault.
    """
    definition = data if isinstance(data, SequenceDefinition) else parse_definition(data)
    if definition.settings.number_id is not None:
        channels.get_active_number(session, workspace, definition.settings.number_id)
    stored = mailing.templates_named(session, workspace.id, email_template_names(definition))
    number_id = channels.sending_number_id(
        session, workspace_id=workspace.id, number_id=definition.settings.number_id
    )
    for position, step in enumerate(definition.steps):
        if isinstance(step, SendEmail) and step.template and step.template not in stored:
            raise invalid(
                "unknown_email_template",
                f"no e-mail template is called {step.template!r}",
                field=f"steps[{position}].template",
            )
        if isinstance(step, SendWhatsApp) and step.template is not None and number_id:
            _check_template(session, number_id, step, position)
        if isinstance(step, EnrollElsewhere) and step.sequence != definition.name:
            found = _by_name(session, workspace, step.sequence)
            if found is None or found.id == sequence_id:
                raise invalid(
                    "unknown_sequence",
                    f"no other sequence is called {step.sequence!r}",
                    field=f"steps[{position}].sequence",
                )
    return definition


def _check_template(session: Session, number_id: int, step: SendWhatsApp, position: int) -> None:
    """The step's template against the number's registry, as a contact with no fields would get
    it: a template the number does not have (once synced), one not approved, parameters that do
    not fit its placeholders, or a marketing template in a utility step are refused now rather
    than skipped at send time."""
    assert step.template is not None
    template: dict[str, Any] = {
        "name": step.template.name,
        "language": {"code": step.template.language},
    }
    if step.template.components:
        template["components"] = personalise(list(step.template.components), {})
    asked = Purpose(step.purpose)
    try:
        sent_as = registry.check_template_message(
            session,
            number_id=number_id,
            content={"type": "template", "template": template},
            purpose=asked,
        )
    except TidingsError as error:
        where = (error.field or "").removeprefix("content.template").lstrip(".")
        error.field = f"steps[{position}].template" + (f".{where}" if where else "")
        raise
    if sent_as != asked:
        raise invalid(
            "template_category",
            f"{step.template.name!r} is a marketing template: a {step.purpose} step cannot send "
            "it (marketing consent and caps apply); set purpose to marketing",
            field=f"steps[{position}].purpose",
        )


def create_sequence(
    session: Session,
    *,
    workspace: Workspace,
    data: Any,
    status: str = "draft",
    created_by: str,
    now: datetime,
) -> SequenceRecord:
    """Save a new sequence as its version 1.

    Raises:
        TidingsError: 422 naming the field; 409 when the name is taken.
    """
    definition = check_definition(session, workspace, data)
    _check_status(status)
    if _by_name(session, workspace, definition.name) is not None:
        raise conflict("name_taken", "another sequence has this name", field="name")
    sequence = SequenceRecord(
        workspace_id=workspace.id,
        name=definition.name,
        status=status,
        current_version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(sequence)
    session.flush()
    _add_version(session, sequence, definition, created_by=created_by, now=now)
    return sequence


def update_sequence(
    session: Session,
    *,
    workspace: Workspace,
    sequence_id: int,
    data: Any,
    created_by: str,
    now: datetime,
) -> SequenceVersion:
    """Save an edited definition as the next version. Running enrollments keep the version
    they run (S2); ``migrate_enrollments`` moves them explicitly."""
    sequence = get_sequence_or_404(session, workspace, sequence_id)
    if sequence.status == "archived":
        raise conflict("archived", "an archived sequence cannot change", field="status")
    definition = check_definition(session, workspace, data, sequence_id=sequence.id)
    other = _by_name(session, workspace, definition.name)
    if other is not None and other.id != sequence.id:
        raise conflict("name_taken", "another sequence has this name", field="name")
    sequence.name = definition.name
    sequence.current_version += 1
    sequence.updated_at = now
    return _add_version(session, sequence, definition, created_by=created_by, now=now)


def _add_version(
    session: Session,
    sequence: SequenceRecord,
    definition: SequenceDefinition,
    *,
    created_by: str,
    now: datetime,
) -> SequenceVersion:
    version = SequenceVersion(
        workspace_id=sequence.workspace_id,
        sequence_id=sequence.id,
        version=sequence.current_version,
        definition=dump_definition(definition),
        winners={},
        created_by=created_by[:200],
        created_at=now,
    )
    session.add(version)
    session.flush()
    return version


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise invalid("invalid_status", "one of " + ", ".join(STATUSES), field="status")
    return status


def _by_name(session: Session, workspace: Workspace, name: str) -> SequenceRecord | None:
    return session.scalar(
        select(SequenceRecord).where(
            SequenceRecord.workspace_id == workspace.id,
            func.lower(SequenceRecord.name) == name.lower(),
        )
    )


def find_sequence(session: Session, workspace: Workspace, name: str) -> SequenceRecord | None:
    return _by_name(session, workspace, name)


def find_by_name_or_id(session: Session, workspace: Workspace, text: str) -> SequenceRecord:
    """A sequence by its name (case-insensitive) or, for digits, its id.

    Raises:
        TidingsError: 422 on ``SEQUENCE`` (the command-line argument) when none matches.
    """
    found = _by_name(session, workspace, text)
    if found is None and text.isdigit():
        found = session.scalar(
            select(SequenceRecord).where(
                SequenceRecord.workspace_id == workspace.id, SequenceRecord.id == int(text)
            )
        )
    if found is None:
        raise invalid("unknown_sequence", f"no sequence named {text!r}", field="SEQUENCE")
    return found


def get_sequence_or_404(session: Session, workspace: Workspace, sequence_id: int) -> SequenceRecord:
    sequence = session.scalar(
        select(SequenceRecord).where(
            SequenceRecord.workspace_id == workspace.id, SequenceRecord.id == sequence_id
        )
    )
    if sequence is None:
        raise not_found("sequence")
    return sequence


def list_sequences(session: Session, workspace: Workspace) -> list[SequenceRecord]:
    return list(
        session.scalars(
            select(SequenceRecord)
            .where(SequenceRecord.workspace_id == workspace.id)
            .order_by(SequenceRecord.id)
        )
    )


def enrollment_counts(session: Session, workspace: Workspace) -> dict[int, dict[str, int]]:
    """sequence id → enrollment status → how many, for the workspace's sequences."""
    # By the sequences' ids: counted from the (sequence_id, status) index alone.
    ids = select(SequenceRecord.id).where(SequenceRecord.workspace_id == workspace.id)
    rows = session.execute(
        select(Enrollment.sequence_id, Enrollment.status, func.count())
        .where(Enrollment.sequence_id.in_(ids))
        .group_by(Enrollment.sequence_id, Enrollment.status)
    )
    found: dict[int, dict[str, int]] = {}
    for sequence_id, status, count in rows:
        found.setdefault(sequence_id, {})[status] = int(count)
    return found


def get_version(
    session: Session, sequence: SequenceRecord, version: int | None = None
) -> SequenceVersion:
    found = session.scalar(
        select(SequenceVersion).where(
            SequenceVersion.sequence_id == sequence.id,
            SequenceVersion.version == (version or sequence.current_version),
        )
    )
    if found is None:
        raise not_found("sequence version", field="version")
    return found


def versions_of(session: Session, sequence: SequenceRecord) -> list[SequenceVersion]:
    return list(
        session.scalars(
            select(SequenceVersion)
            .where(SequenceVersion.sequence_id == sequence.id)
            .order_by(SequenceVersion.version)
        )
    )


def set_status(
    session: Session, *, workspace: Workspace, sequence_id: int, status: str, now: datetime
) -> SequenceRecord:
    """Activate, pause (enrollments wait where they are), resume, or archive (enrollments end).

    Raises:
        TidingsError: 422 for an unknown status; 409 to change an archived sequence.
    """
    sequence = get_sequence_or_404(session, workspace, sequence_id)
    _check_status(status)
    if sequence.status == "archived" and status != "archived":
        raise conflict("archived", "an archived sequence stays archived", field="status")
    if status == "draft" and sequence.status != "draft":
        raise conflict("not_draft", "a sequence that ran cannot become a draft", field="status")
    sequence.status, sequence.updated_at = status, now
    if status == "archived":
        _end_running(session, [sequence.id], status="removed", reason="sequence archived", now=now)
    return sequence


def _end_running(
    session: Session,
    sequence_ids: Sequence[int],
    *,
    status: str,
    reason: str,
    now: datetime,
    contact_ids: Sequence[int] | None = None,
    enrolled_before: datetime | None = None,
) -> int:
    query = update(Enrollment).where(
        among(session, Enrollment.sequence_id, list(sequence_ids)), Enrollment.status == RUNNING
    )
    if contact_ids is not None:
        query = query.where(among(session, Enrollment.contact_id, list(contact_ids)))
    if enrolled_before is not None:
        query = query.where(Enrollment.enrolled_at < enrolled_before)
    result = session.execute(
        query.values(
            status=status, due_at=None, ended_at=now, end_reason=reason[:300], updated_at=now
        ).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- enrollment ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollResult:
    enrolled: list[int]  # contact ids
    refused: dict[int, str]  # contact id → why not


def enroll_contacts(
    session: Session,
    *,
    workspace: Workspace,
    sequence: SequenceRecord,
    contact_ids: Sequence[int],
    source: str,
    now: datetime,
) -> EnrollResult:
    """Enroll contacts at the first step of the current version, due now (S2, S3).

    A contact still running this sequence is never enrolled twice; one who left enters again
    only as the re-entry rule allows. Contacts of other workspaces are refused as unknown.
    """
    if sequence.status != RUNNING:
        raise conflict(
            "not_active", f"the sequence is {sequence.status}; activate it first", field="status"
        )
    version = get_version(session, sequence)
    definition = definition_of(version)
    wanted = list(dict.fromkeys(contact_ids))
    known = contacts.profiles(session, wanted)
    refused = {
        c: "no such contact"
        for c in wanted
        if c not in known or known[c].workspace_id != workspace.id
    }
    candidates = [c for c in wanted if c not in refused]
    latest = _latest_enrollments(session, sequence.id, candidates)
    rows: list[dict[str, Any]] = []
    for contact_id in candidates:
        reason = _reentry_refusal(definition, latest.get(contact_id), now)
        if reason is not None:
            refused[contact_id] = reason
            continue
        rows.append(
            {
                "workspace_id": workspace.id,
                "sequence_id": sequence.id,
                "version_id": version.id,
                "contact_id": contact_id,
                "status": RUNNING,
                "step_id": definition.entry,
                "arrived_at": now,
                "due_at": now,
                "visit": 0,
                "reached_goals": "",
                "source": source[:64],
                "enrolled_at": now,
                "updated_at": now,
            }
        )
    if rows:
        bulk_insert(session, table_of(Enrollment), rows, skip_conflicts=True)
    return EnrollResult([row["contact_id"] for row in rows], refused)


def _latest_enrollments(
    session: Session, sequence_id: int, contact_ids: Sequence[int]
) -> dict[int, Any]:
    if not contact_ids:
        return {}
    rows = session.execute(
        select(Enrollment.contact_id, Enrollment.status, Enrollment.ended_at)
        .where(
            Enrollment.sequence_id == sequence_id,
            among(session, Enrollment.contact_id, list(contact_ids)),
        )
        .order_by(Enrollment.id)
    )
    return {row.contact_id: row for row in rows}  # the last one per contact wins


def _reentry_refusal(definition: SequenceDefinition, latest: Any, now: datetime) -> str | None:
    if latest is None:
        return None
    if latest.status == RUNNING:
        return "already enrolled"
    rule = definition.settings.reentry
    if rule.mode == "never":
        return "was enrolled before, and the sequence does not take anyone twice"
    if (
        rule.mode == "after"
        and rule.after is not None
        and latest.ended_at is not None
        and latest.ended_at + rule.after > now
    ):
        return f"may enter again from {(latest.ended_at + rule.after).isoformat()}"
    return None


def remove_contact(
    session: Session, *, workspace: Workspace, sequence_id: int, contact_id: int, now: datetime
) -> Enrollment:
    """Take a contact out of a sequence at once.

    Raises:
        TidingsError: 404 when the contact is not running this sequence.
    """
    sequence = get_sequence_or_404(session, workspace, sequence_id)
    enrollment = session.scalar(
        select(Enrollment).where(
            Enrollment.sequence_id == sequence.id,
            Enrollment.contact_id == contact_id,
            Enrollment.status == RUNNING,
        )
    )
    if enrollment is None:
        raise not_found("running enrollment", field="contact_id")
    enrollment.status, enrollment.due_at = "removed", None
    enrollment.ended_at = enrollment.updated_at = now
    enrollment.end_reason = "removed by hand"
    return enrollment


def unenroll_contact(
    session: Session,
    *,
    workspace: Workspace,
    sequence: SequenceRecord,
    contact_id: int,
    reason: str,
    now: datetime,
) -> bool:
    """End the contact's running enrollment in the sequence (it leaves as "exited" with the
    reason); False when it was not running there."""
    running = session.scalars(
        select(Enrollment).where(
            Enrollment.workspace_id == workspace.id,
            Enrollment.sequence_id == sequence.id,
            Enrollment.contact_id == contact_id,
            Enrollment.status == RUNNING,
        )
    ).all()
    for enrollment in running:
        enrollment.status, enrollment.due_at = "exited", None
        enrollment.ended_at, enrollment.end_reason = now, reason[:300]
        enrollment.updated_at = now
    return bool(running)


def enrollments_of(
    session: Session,
    workspace: Workspace,
    sequence_id: int,
    *,
    status: str | None,
    after_id: int,
    limit: int,
) -> list[Enrollment]:
    sequence = get_sequence_or_404(session, workspace, sequence_id)
    query = select(Enrollment).where(
        Enrollment.sequence_id == sequence.id, Enrollment.id > after_id
    )
    if status is not None:
        query = query.where(Enrollment.status == status)
    return list(session.scalars(query.order_by(Enrollment.id).limit(limit)))


def step_runs_of(session: Session, workspace: Workspace, enrollment_id: int) -> list[StepRunRecord]:
    return list(
        session.scalars(
            select(StepRunRecord)
            .where(
                StepRunRecord.workspace_id == workspace.id,
                StepRunRecord.enrollment_id == enrollment_id,
            )
            .order_by(StepRunRecord.visit)
        )
    )


def end_for_contacts(
    session: Session,
    *,
    contact_ids: Sequence[int],
    sequence_ids: Sequence[int],
    reason: str,
    now: datetime,
    enrolled_before: datetime | None = None,
) -> int:
    """End the running enrollments of these contacts in these sequences (e.g. an opt-out);
    with ``enrolled_before``, only those that began before it (an event is not the business of
    an enrollment that began after it)."""
    if not contact_ids or not sequence_ids:
        return 0
    return _end_running(
        session,
        sequence_ids,
        status="exited",
        reason=reason,
        now=now,
        contact_ids=contact_ids,
        enrolled_before=enrolled_before,
    )


# --- migrating running enrollments to a newer version -------------------------------------------


@dataclass(frozen=True)
class Migration:
    moved: dict[str, dict[str, int]]  # old step → new step → how many
    kept: dict[str, int]  # why they stay on their version → how many


def migrate_enrollments(
    session: Session,
    *,
    workspace: Workspace,
    sequence_id: int,
    from_version: int,
    mapping: Mapping[str, str] | None,
    dry_run: bool,
    now: datetime,
) -> Migration:
    """Move running enrollments of ``from_version`` to the current version, each from the step
    it waits at to the step ``mapping`` names (by default: the step with the same id).

    A contact is never sent back over ground it has covered: one whose target step it has
    already run (a Mautic failure: re-sending on edit) stays on its version, as do those
    whose step has no target. ``dry_run`` reports without moving anyone.

    Raises:
        TidingsError: 422 naming ``mapping.<step>`` for a target the new version lacks.
    """
    sequence = get_sequence_or_404(session, workspace, sequence_id)
    old = get_version(session, sequence, from_version)
    new = get_version(session, sequence)
    if old.id == new.id:
        raise invalid("same_version", "that is already the current version", field="from_version")
    old_steps, new_steps = definition_of(old).index(), definition_of(new).index()
    for source, target in (mapping or {}).items():
        if source not in old_steps:
            raise invalid(
                "unknown_step",
                f"version {from_version} has no step {source!r}",
                field=f"mapping.{source}",
            )
        if target not in new_steps:
            raise invalid(
                "unknown_step",
                f"the current version has no step {target!r}",
                field=f"mapping.{source}",
            )
    targets: dict[str, str | None] = {
        s: (mapping or {}).get(s, s if s in new_steps else None) for s in old_steps
    }
    running = session.execute(
        select(Enrollment.id, Enrollment.step_id).where(
            Enrollment.version_id == old.id, Enrollment.status == RUNNING
        )
    ).all()
    ran = _steps_run(session, [row.id for row in running])
    moved: dict[str, dict[str, int]] = {}
    kept: dict[str, int] = {}
    moves: dict[str, list[int]] = {}
    for enrollment_id, step_id in running:
        goes_to = targets.get(step_id)
        if goes_to is None:
            why = f"step {step_id!r} has no counterpart"
            kept[why] = kept.get(why, 0) + 1
        elif goes_to != step_id and goes_to in ran.get(enrollment_id, set()):
            why = f"already ran step {goes_to!r}"
            kept[why] = kept.get(why, 0) + 1
        else:
            moved.setdefault(step_id, {})[goes_to] = moved.get(step_id, {}).get(goes_to, 0) + 1
            moves.setdefault(goes_to, []).append(enrollment_id)
    if not dry_run:
        for target, ids in moves.items():
            session.execute(
                update(Enrollment)
                .where(among(session, Enrollment.id, ids), Enrollment.status == RUNNING)
                .values(version_id=new.id, step_id=target, updated_at=now)
                .execution_options(synchronize_session=False)
            )
    return Migration(moved, kept)


def _steps_run(session: Session, enrollment_ids: Sequence[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    if not enrollment_ids:
        return found
    rows = session.execute(
        select(StepRunRecord.enrollment_id, StepRunRecord.step_id).where(
            among(session, StepRunRecord.enrollment_id, list(enrollment_ids))
        )
    )
    for enrollment_id, step_id in rows:
        found.setdefault(enrollment_id, set()).add(step_id)
    return found


# --- files (S6) and preview (S7) ----------------------------------------------------------------


def export_sequence(
    session: Session, workspace: Workspace, sequence_id: int, *, as_json: bool = False
) -> str:
    """The sequence's current version as a file, with the templates its steps use."""
    sequence = get_sequence_or_404(session, workspace, sequence_id)
    definition = definition_of(get_version(session, sequence))
    wanted = {
        (step.template.name, step.template.language)
        for step in definition.steps
        if isinstance(step, SendWhatsApp) and step.template is not None
    }
    known = {(t.name, t.language): t for t in definition.templates}
    for template in registry.list_templates(session, workspace):
        key = (template.name, template.language)
        if key in wanted and key not in known:
            known[key] = TemplateSpec(
                name=template.name,
                language=template.language,
                category=template.category,
                components=list(template.components or []),
            )
    carried = [known[key] for key in sorted(known) if key in wanted]
    # E-mail templates as the workspace has them now (they may have been edited since).
    names = email_template_names(definition)
    mails = {t.name: t for t in definition.email_templates if t.name in names}
    for name, stored in mailing.templates_named(session, workspace.id, names).items():
        mails[name] = EmailTemplateSpec(
            name=name, subject=stored.subject, html=stored.html, text=stored.text
        )
    return write_sequence_file(
        definition.model_copy(
            update={"templates": carried, "email_templates": [mails[n] for n in sorted(mails)]}
        ),
        as_json=as_json,
    )


@dataclass(frozen=True)
class Imported:
    sequence: SequenceRecord
    templates_defined: list[str]
    # Carried by the file but not defined: the workspace has no WhatsApp number yet.
    templates_without_number: list[str]
    email_templates_defined: list[str]


def import_sequence(
    session: Session,
    *,
    workspace: Workspace,
    text: str,
    name: str | None,
    created_by: str,
    now: datetime,
) -> Imported:
    """Create a sequence from a file (as a draft), defining on the workspace's number the
    templates it carries that the number does not have yet (they await Meta's approval), and
    the e-mail templates it carries that the workspace does not have.

    Raises:
        TidingsError: 422 with the place in the file (path and line); 409 for a taken name.
    """
    definition = read_sequence_file(text)
    if name:
        definition = definition.model_copy(update={"name": name})
    # A number id means nothing in another workspace: the sequence uses this one's default.
    portable = definition.settings.model_copy(update={"number_id": None})
    definition = definition.model_copy(update={"settings": portable})
    defined, waiting = [], []
    number_id = channels.sending_number_id(session, workspace_id=workspace.id, number_id=None)
    for spec in definition.templates:
        if number_id is None:
            waiting.append(f"{spec.name} [{spec.language}]")
            continue
        if registry.template_exists(
            session, number_id=number_id, name=spec.name, language=spec.language
        ):
            continue
        registry.define_template(
            session,
            workspace=workspace,
            number_id=number_id,
            data=spec.model_dump(mode="json"),
            now=now,
        )
        defined.append(f"{spec.name} [{spec.language}]")
    # E-mail templates the workspace lacks are created; one it has by that name is kept.
    mails = []
    present = mailing.templates_named(
        session, workspace.id, [t.name for t in definition.email_templates]
    )
    for mail in definition.email_templates:
        if mail.name not in present:
            mailing.create_template(
                session, workspace=workspace, data=mail.model_dump(mode="json"), now=now
            )
            mails.append(mail.name)
    sequence = create_sequence(
        session, workspace=workspace, data=definition, created_by=created_by, now=now
    )
    return Imported(sequence, defined, waiting, mails)


def preview_sequence(
    session: Session,
    *,
    workspace: Workspace,
    definition: SequenceDefinition,
    behaviours: Sequence[str],
    contact: Mapping[str, Any] | None,
    start: datetime,
) -> Preview:
    """Run a test lead through ``definition`` on a virtual clock with this workspace's
    sending policy and time zone (S7). Nothing is stored or sent."""
    return preview(
        definition,
        start=start,
        behaviours=parse_behaviours(behaviours),
        contact=contact,
        timezone=(contact or {}).get("timezone") or workspace.timezone,
        policy=workspaces.policy_for(workspace),
        workspace_name=workspace.name,
        email_templates={
            name: EmailText(t.subject, t.html, t.text)
            for name, t in mailing.templates_named(
                session, workspace.id, email_template_names(definition)
            ).items()
        },
    )


# --- step statistics (S5) -----------------------------------------------------------------------

STATISTICS = ("entered", "sent", "delivered", "read", "clicked", "replied", "converted", "exited")
REPLY_WINDOW_DAYS = 3  # a reply within three days of a step's message counts for that step


def step_statistics(
    session: Session, workspace: Workspace, sequence_id: int, *, version: int | None = None
) -> dict[str, dict[str, int]]:
    """Per step: entered (runs), sent, delivered, read (from the messages' statuses), clicked
    and replied (timeline events within ``REPLY_WINDOW_DAYS`` after the step's message),
    converted (enrollments that reached a goal after running the step) and exited (left the
    sequence at the step)."""
    sequence = get_sequence_or_404(session, workspace, sequence_id)
    runs = StepRunRecord
    where = [runs.sequence_id == sequence.id]
    if version is not None:
        where.append(runs.version_id == get_version(session, sequence, version).id)
    found: dict[str, dict[str, int]] = {}

    def add(step_id: str, name: str, number: int = 1) -> None:
        found.setdefault(step_id, dict.fromkeys(STATISTICS, 0))[name] += number

    entered = runs.outcome != "left"
    for step_id, number in session.execute(
        select(runs.step_id, func.count()).where(*where, entered).group_by(runs.step_id)
    ):
        add(step_id, "entered", int(number))
    for step_id, number in session.execute(
        select(runs.step_id, func.count())
        .where(*where, runs.outcome == "left")
        .group_by(runs.step_id)
    ):
        add(step_id, "exited", int(number))
    for step_id, number in session.execute(
        select(runs.step_id, func.count(distinct(runs.enrollment_id)))
        .join(Enrollment, Enrollment.id == runs.enrollment_id)
        .where(*where, entered, Enrollment.converted_at.is_not(None))
        .group_by(runs.step_id)
    ):
        add(step_id, "converted", int(number))
    _count_messages(session, where, add)
    return found


def _count_messages(session: Session, where: list[Any], add: Any) -> None:
    runs = StepRunRecord
    sent = session.execute(
        select(runs.step_id, runs.contact_id, runs.message_id).where(
            *where, runs.message_id.is_not(None)
        )
    ).all()
    moments = messaging.message_moments(session, [m or 0 for _, _, m in sent])
    window = timedelta(days=REPLY_WINDOW_DAYS)
    types = {"link.clicked": "clicked", "message.received": "replied"}
    events = contacts.events_of(session, {c for _, c, _ in sent}, types=set(types))
    for step_id, contact_id, message_id in sent:
        known = moments.get(message_id or 0)
        if known is None or not known.dispatched:
            continue
        if known.status in ("sent", "delivered", "read"):
            add(step_id, "sent")
        if known.status in ("delivered", "read"):
            add(step_id, "delivered")
        if known.read_at is not None:
            add(step_id, "read")
        at = known.sent_at
        for kind in {
            types[e.type] for e in events.get(contact_id, ()) if at <= e.occurred_at <= at + window
        }:
            add(step_id, kind)


# --- split winners (S1) -------------------------------------------------------------------------

REACTION_EVENTS = {"replied": "message.received", "clicked": "link.clicked"}


def choose_split_winners(session: Session, *, now: datetime) -> int:
    """For every running sequence version with a split whose test period (``winner.after``
    from the version's publication) is over and no winner yet: choose the branch with the best
    rate of its metric among the enrollments that took the split; from then on every new
    arrival takes it. Returns how many winners were chosen."""
    chosen = 0
    versions = session.scalars(
        select(SequenceVersion)
        .join(SequenceRecord, SequenceRecord.id == SequenceVersion.sequence_id)
        .where(SequenceRecord.status == RUNNING)
    ).all()
    for version in versions:
        definition = definition_of(version)
        decided = dict(version.winners or {})
        for step in definition.steps:
            if not isinstance(step, Split) or step.winner is None or step.id in decided:
                continue
            if version.created_at + step.winner.after > now:
                continue
            winner = choose_winner(step, _branch_results(session, version, step))
            if winner is not None:
                decided[step.id] = winner
                chosen += 1
        if decided != (version.winners or {}):
            version.winners = decided
    return chosen


def split_winners(session: Session, sequence: SequenceRecord) -> dict[str, str]:
    """The winners chosen so far in the current version: split step id → branch label."""
    version = get_version(session, sequence)
    definition = definition_of(version)
    found = {}
    for step_id, index in (version.winners or {}).items():
        step = definition.step(step_id)
        if isinstance(step, Split) and 0 <= int(index) < len(step.branches):
            found[step_id] = branch_label(step, int(index))
    return found


def _branch_results(
    session: Session, version: SequenceVersion, step: Split
) -> dict[int, BranchResult]:
    assert step.winner is not None
    labels = {branch_label(step, i): i for i in range(len(step.branches))}
    taken = session.execute(
        select(StepRunRecord.enrollment_id, StepRunRecord.contact_id, StepRunRecord.detail,
               StepRunRecord.at)
        .where(
            StepRunRecord.version_id == version.id,
            StepRunRecord.step_id == step.id,
            StepRunRecord.outcome == "branch",
        )
    ).all()  # fmt: skip
    succeeded = _succeeded(session, step.winner.metric, taken)
    entered = dict.fromkeys(range(len(step.branches)), 0)
    wins = dict.fromkeys(range(len(step.branches)), 0)
    for enrollment_id, _, label, _ in taken:
        index = labels.get(label)
        if index is None:
            continue
        entered[index] += 1
        wins[index] += enrollment_id in succeeded
    return {i: BranchResult(entered[i], wins[i]) for i in entered}


def _succeeded(session: Session, metric: str, taken: Sequence[Any]) -> set[int]:
    """The enrollments among ``taken`` (enrollment, contact, label, split moment) that did
    what ``metric`` asks after taking the split."""
    enrollment_ids = [row[0] for row in taken]
    if not enrollment_ids:
        return set()
    if metric == "converted":
        return set(
            session.scalars(
                select(Enrollment.id).where(
                    among(session, Enrollment.id, enrollment_ids),
                    Enrollment.converted_at.is_not(None),
                )
            )
        )
    split_at = {row[0]: row[3] for row in taken}
    if metric == "read":
        later = session.execute(
            select(StepRunRecord.enrollment_id, StepRunRecord.message_id, StepRunRecord.at).where(
                among(session, StepRunRecord.enrollment_id, enrollment_ids),
                StepRunRecord.message_id.is_not(None),
            )
        ).all()
        moments = messaging.message_moments(session, [m for _, m, _ in later if m])
        return {
            enrollment_id
            for enrollment_id, message_id, at in later
            if at >= split_at[enrollment_id]
            and (known := moments.get(message_id or 0)) is not None
            and known.read_at is not None
        }
    contact_of = {row[0]: row[1] for row in taken}
    events = contacts.events_of(session, set(contact_of.values()), types={REACTION_EVENTS[metric]})
    return {
        enrollment_id
        for enrollment_id, contact_id in contact_of.items()
        if any(e.occurred_at >= split_at[enrollment_id] for e in events.get(contact_id, ()))
    }
