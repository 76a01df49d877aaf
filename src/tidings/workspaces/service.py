"""Use cases of workspaces, users and API keys. Runs inside the caller's transaction."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import ValidationError
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from tidings.kernel.errors import TidingsError, conflict, invalid, not_found, unauthenticated
from tidings.kernel.localization import check_locale, check_region, check_timezone
from tidings.workspaces import repository, security
from tidings.workspaces.domain import (
    ACCOUNT_FREE_FAILURES,
    ADDRESS_FREE_FAILURES,
    SIGN_IN_MEMORY,
    Principal,
    Role,
    WorkspacePolicy,
    check_can_grant,
    check_slug,
    sign_in_wait,
    usable_overrides,
)
from tidings.workspaces.orm import (
    ApiKey,
    SignInRecord,
    SignInThrottle,
    Team,
    TeamMember,
    User,
    WebSession,
    Workspace,
)

MIN_PASSWORD_LENGTH = 10
WEB_SESSION_LIFETIME = timedelta(days=14)
LAST_USED_RESOLUTION = timedelta(minutes=1)

log = logging.getLogger(__name__)
audit = logging.getLogger("tidings.audit")


@dataclass(frozen=True)
class WorkspaceSettings:
    """What a workspace owner may set."""

    name: str
    default_region: str = "TW"
    timezone: str = "Asia/Taipei"
    locale: str = "zh-Hant-TW"


def create_workspace(
    session: Session, *, slug: str, settings: WorkspaceSettings, now: datetime
) -> Workspace:
    """Create a tenant.

    Raises:
        TidingsError: invalid slug/region/time zone/locale (422), taken slug (409).
    """
    check_slug(slug)
    if repository.get_workspace_by_slug(session, slug) is not None:
        raise conflict("slug_taken", f"a workspace {slug!r} exists already", field="slug")
    workspace = Workspace(slug=slug, policy_overrides={}, created_at=now, updated_at=now)
    _apply_settings(workspace, settings)
    session.add(workspace)
    session.flush()
    return workspace


def update_workspace(
    session: Session, *, workspace: Workspace, changes: dict[str, Any], now: datetime
) -> Workspace:
    """Change a workspace's name, region, time zone, locale or policy overrides.

    Raises:
        TidingsError: 422 naming the offending field.
    """
    current = WorkspaceSettings(
        workspace.name, workspace.default_region, workspace.timezone, workspace.locale
    )
    merged = {k: changes.get(k, getattr(current, k)) for k in WorkspaceSettings.__annotations__}
    _apply_settings(workspace, WorkspaceSettings(**merged))
    if "policy" in changes and changes["policy"] is not None:
        workspace.policy_overrides = _checked_policy_overrides(
            {**workspace.policy_overrides, **changes["policy"]}
        )
    workspace.updated_at = now
    session.flush()
    return workspace


def allow_private_webhooks(
    session: Session, workspace: Workspace, *, allow: bool, now: datetime
) -> None:
    """The operator's permission for this workspace's webhooks to reach private addresses;
    deliberately not part of ``update_workspace``, which the workspace's own admins call."""
    workspace.allow_private_webhooks = allow
    workspace.updated_at = now
    session.flush()


def _apply_settings(workspace: Workspace, settings: WorkspaceSettings) -> None:
    name = settings.name.strip()
    if not name:
        raise invalid("required", "a workspace needs a name", field="name")
    workspace.name = name
    workspace.default_region = check_region(settings.default_region)
    workspace.timezone = check_timezone(settings.timezone)
    workspace.locale = check_locale(settings.locale)


def _checked_policy_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    try:
        policy = WorkspacePolicy(**overrides)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(p) for p in first["loc"])
        raise invalid("invalid_policy", first["msg"], field=f"policy.{location}") from None
    return policy.model_dump(mode="json", include=set(overrides))


def policy_for(workspace: Workspace) -> WorkspacePolicy:
    """The workspace's policy: the spec's defaults with its overrides applied.

    Overrides are checked when written; should a stored one be unusable all the same, it is
    left out (and logged) so that the workspace keeps working on the default figure.
    """
    try:
        return WorkspacePolicy(**workspace.policy_overrides)
    except (ValidationError, TypeError):
        kept, dropped = usable_overrides(workspace.policy_overrides)
        log.error("workspace %s: unusable policy overrides ignored: %s", workspace.id, dropped)
        return WorkspacePolicy(**kept)


def create_user(
    session: Session,
    *,
    workspace: Workspace,
    email: str,
    name: str,
    role: Role,
    password: str | None,
    granted_by: Role,
    now: datetime,
) -> User:
    """Add an owner, admin or agent to the workspace.

    Raises:
        TidingsError: bad e-mail or short password (422), e-mail taken (409), role above the
            granter's (403).
    """
    check_can_grant(granted_by, role)
    address = normalize_login_email(email)
    if repository.get_user_by_email(session, workspace, address) is not None:
        raise conflict("email_taken", f"{address} is already a user here", field="email")
    if not name.strip():
        raise invalid("required", "a user needs a name", field="name")
    user = User(
        workspace_id=workspace.id,
        email=address,
        name=name.strip(),
        role=role.value,
        password_hash=(
            _checked_password_hash(password, email=address, workspace_name=workspace.name)
            if password is not None
            else None
        ),
        is_active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    session.flush()
    return user


def update_user(
    session: Session,
    *,
    workspace: Workspace,
    user_id: int,
    changes: dict[str, Any],
    granted_by: Role,
    now: datetime,
) -> User:
    """Change a user's name, role, password or active flag.

    Raises:
        TidingsError: unknown user (404), bad values (422), role above the granter's (403),
            removing the last active owner (409).
    """
    user = get_user_or_404(session, workspace, user_id)
    check_can_grant(granted_by, Role(user.role))
    if changes.get("name") is not None:
        if not changes["name"].strip():
            raise invalid("required", "a user needs a name", field="name")
        user.name = changes["name"].strip()
    if changes.get("password") is not None:
        user.password_hash = _checked_password_hash(
            changes["password"], email=user.email, workspace_name=workspace.name
        )
        # Whoever signed in with the old password is signed out.
        repository.end_user_sessions(session, user, now=now)
    demotes = changes.get("role") is not None and Role(changes["role"]) != Role.OWNER
    deactivates = changes.get("is_active") is False
    if user.role == Role.OWNER and (demotes or deactivates):
        _check_not_last_owner(session, workspace, user)
    if changes.get("role") is not None:
        check_can_grant(granted_by, Role(changes["role"]))
        user.role = Role(changes["role"]).value
    if changes.get("is_active") is not None:
        user.is_active = bool(changes["is_active"])
    if deactivates:
        # A deactivated user can do nothing: no session, and no key they made, still works.
        repository.end_user_sessions(session, user, now=now)
        repository.revoke_user_keys(session, user, now=now)
    user.updated_at = now
    session.flush()
    return user


def _check_not_last_owner(session: Session, workspace: Workspace, user: User) -> None:
    owners = [
        u
        for u in repository.list_users(session, workspace)
        if u.role == Role.OWNER and u.is_active and u.id != user.id
    ]
    if not owners:
        raise conflict("last_owner", "a workspace must keep at least one active owner")


def get_user_or_404(session: Session, workspace: Workspace, user_id: int) -> User:
    """Raises ``TidingsError`` (404) when the user is not in this workspace."""
    user = repository.get_user(session, workspace, user_id)
    if user is None:
        raise not_found("user")
    return user


def normalize_login_email(email: str) -> str:
    """Raises ``TidingsError`` (422 on ``email``) for an unusable address."""
    try:
        return validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise invalid("invalid_email", str(error), field="email") from None


def _checked_password_hash(password: str, *, email: str, workspace_name: str) -> str:
    problem = security.password_weakness(
        password, minimum=MIN_PASSWORD_LENGTH, personal=(email, email.split("@")[0], workspace_name)
    )
    if problem is not None:
        raise invalid("weak_password", problem, field="password")
    return security.hash_password(password)


def end_sessions_everywhere(
    session: Session, *, workspace: Workspace, user_id: int, now: datetime
) -> int:
    """Sign a user out of every browser at once; returns how many sessions were open."""
    user = get_user_or_404(session, workspace, user_id)
    return repository.end_user_sessions(session, user, now=now)


def authenticate_password(
    session: Session, *, workspace: Workspace, email: str, password: str
) -> Principal:
    """Check a user's password.

    Raises:
        TidingsError: 401, without saying whether the e-mail or the password was wrong.
    """
    user = repository.get_user_by_email(session, workspace, email.strip().lower())
    if (
        user is None
        or not user.is_active
        or user.password_hash is None
        or not security.verify_password(user.password_hash, password)
    ):
        raise unauthenticated("wrong e-mail or password")
    return Principal(
        workspace_id=workspace.id, role=Role(user.role), user_id=user.id, label=user.email
    )


# --- web sessions: the browser app's sign-in --------------------------------------------------


def open_web_session(
    session: Session, *, workspace_slug: str, email: str, password: str, now: datetime
) -> tuple[WebSession, str]:
    """Sign a user in: ``(session, token)``; the token goes in the cookie and only its digest
    is kept.

    Raises:
        TidingsError: 401, without saying which of workspace, e-mail or password was wrong.
    """
    workspace = repository.get_workspace_by_slug(session, workspace_slug.strip().lower())
    if workspace is None:
        raise unauthenticated("wrong e-mail or password")
    principal = authenticate_password(session, workspace=workspace, email=email, password=password)
    assert principal.user_id is not None
    token = security.new_session_token()
    web_session = WebSession(
        workspace_id=workspace.id,
        user_id=principal.user_id,
        digest=security.digest_api_key(token),
        csrf_token=security.new_session_token(),
        created_at=now,
        expires_at=now + WEB_SESSION_LIFETIME,
    )
    session.add(web_session)
    session.flush()
    return web_session, token


def authenticate_web_session(
    session: Session, *, token: str, now: datetime
) -> tuple[Principal, Workspace, WebSession]:
    """The user behind a session cookie.

    Raises:
        TidingsError: 401 for an unknown, ended or expired session, or a deactivated user.
    """
    found = repository.find_web_session_by_digest(session, security.digest_api_key(token))
    if found is None or found.ended_at is not None or found.expires_at <= now:
        raise unauthenticated("sign in again")
    workspace = repository.get_workspace(session, found.workspace_id)
    user = repository.get_user(session, workspace, found.user_id) if workspace else None
    if workspace is None or user is None or not user.is_active:
        raise unauthenticated("sign in again")
    principal = Principal(
        workspace_id=workspace.id, role=Role(user.role), user_id=user.id, label=user.email
    )
    return principal, workspace, found


def end_web_session(session: Session, *, token: str, now: datetime) -> None:
    """Sign out: the cookie's session stops working at once, everywhere."""
    found = repository.find_web_session_by_digest(session, security.digest_api_key(token))
    if found is not None and found.ended_at is None:
        found.ended_at = now


def create_api_key(
    session: Session,
    *,
    workspace: Workspace,
    name: str,
    role: Role,
    granted_by: Role,
    created_by_user_id: int | None,
    now: datetime,
) -> tuple[ApiKey, str]:
    """Make a key; the plaintext is returned once and only its digest is stored.

    Raises:
        TidingsError: empty name (422), role above the granter's (403).
    """
    check_can_grant(granted_by, role)
    if not name.strip():
        raise invalid("required", "give the key a name that says who uses it", field="name")
    plaintext = security.new_api_key()
    key = ApiKey(
        workspace_id=workspace.id,
        name=name.strip(),
        role=role.value,
        digest=security.digest_api_key(plaintext),
        prefix=security.display_prefix(plaintext),
        created_by_user_id=created_by_user_id,
        created_at=now,
    )
    session.add(key)
    session.flush()
    return key, plaintext


def revoke_api_key(session: Session, *, workspace: Workspace, key_id: int, now: datetime) -> ApiKey:
    """Raises ``TidingsError`` (404) for a key of another workspace or none."""
    key = repository.get_api_key(session, workspace, key_id)
    if key is None:
        raise not_found("API key")
    if key.revoked_at is None:
        key.revoked_at = now
    session.flush()
    return key


def authenticate_api_key(
    session: Session, *, plaintext: str, now: datetime, may_write: bool
) -> tuple[Principal, Workspace]:
    """Find the workspace and role behind a presented key.

    ``last_used_at`` is refreshed at most once a minute, and only in write transactions, so
    that reads never take a write lock just to record use.

    Raises:
        TidingsError: 401 for an unknown or revoked key.
    """
    key = repository.find_api_key_by_digest(session, security.digest_api_key(plaintext))
    if key is None or key.revoked_at is not None:
        raise unauthenticated("unknown or revoked API key")
    workspace = repository.get_workspace(session, key.workspace_id)
    if workspace is None:
        raise unauthenticated("unknown or revoked API key")
    if key.created_by_user_id is not None:
        # Keys are revoked with their maker; this also covers keys from before that rule.
        maker = repository.get_user(session, workspace, key.created_by_user_id)
        if maker is None or not maker.is_active:
            raise unauthenticated("unknown or revoked API key")
    if may_write and (key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION):
        key.last_used_at = now
    principal = Principal(
        workspace_id=workspace.id, role=Role(key.role), api_key_id=key.id, label=key.name
    )
    return principal, workspace


def find_workspace(session: Session, slug: str) -> Workspace | None:
    return repository.get_workspace_by_slug(session, slug)


def list_workspaces(session: Session) -> Sequence[Workspace]:
    return repository.list_workspaces(session)


def list_api_keys(session: Session, workspace: Workspace) -> Sequence[ApiKey]:
    return repository.list_api_keys(session, workspace)


def open_workspace(
    session: Session,
    *,
    slug: str,
    settings: WorkspaceSettings,
    owner_email: str | None,
    owner_password: str | None,
    key_name: str,
    now: datetime,
) -> tuple[Workspace, str]:
    """Create a workspace, its owner (when an e-mail is given) and a first owner API key.

    Returns the workspace and the key's plaintext, to be shown once.

    Raises:
        TidingsError: as :func:`create_workspace` and :func:`create_user`.
    """
    workspace = create_workspace(session, slug=slug, settings=settings, now=now)
    owner_id = None
    if owner_email is not None:
        owner = create_user(
            session,
            workspace=workspace,
            email=owner_email,
            name="Owner",
            role=Role.OWNER,
            password=owner_password,
            granted_by=Role.OWNER,
            now=now,
        )
        owner_id = owner.id
    _, key = create_api_key(
        session,
        workspace=workspace,
        name=key_name,
        role=Role.OWNER,
        granted_by=Role.OWNER,
        created_by_user_id=owner_id,
        now=now,
    )
    return workspace, key


def find_user_by_email(session: Session, workspace: Workspace, email: str) -> User | None:
    return repository.get_user_by_email(session, workspace, email.strip().lower())


def get_workspace(session: Session, workspace_id: int) -> Workspace | None:
    return repository.get_workspace(session, workspace_id)


# --- Teams (I3) ------------------------------------------------------------------------------


def find_team(session: Session, workspace: Workspace, name: str) -> Team | None:
    return repository.team_by_name(session, workspace, " ".join(name.split()))


def create_team(session: Session, *, workspace: Workspace, name: str, now: datetime) -> Team:
    """Raises ``TidingsError``: blank name (422), a team of that name exists (409)."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > 100:
        raise invalid("required", "a team needs a name of 1-100 characters", field="name")
    if repository.team_by_name(session, workspace, cleaned) is not None:
        raise conflict("team_exists", "a team of that name exists", field="name")
    team = Team(workspace_id=workspace.id, name=cleaned, created_at=now)
    session.add(team)
    session.flush()
    return team


def get_team_or_404(session: Session, workspace: Workspace, team_id: int) -> Team:
    team = repository.get_team(session, workspace, team_id)
    if team is None:
        raise not_found("team", field="team_id")
    return team


def list_teams(session: Session, workspace: Workspace) -> list[tuple[Team, list[int]]]:
    teams = repository.list_teams(session, workspace)
    members = repository.team_member_ids(session, [team.id for team in teams])
    return [(team, members[team.id]) for team in teams]


def add_team_member(session: Session, *, workspace: Workspace, team_id: int, user_id: int) -> Team:
    team = get_team_or_404(session, workspace, team_id)
    get_user_or_404(session, workspace, user_id)
    if repository.find_membership(session, team, user_id) is None:
        session.add(TeamMember(workspace_id=workspace.id, team_id=team.id, user_id=user_id))
        session.flush()
    return team


def remove_team_member(
    session: Session, *, workspace: Workspace, team_id: int, user_id: int
) -> Team:
    team = get_team_or_404(session, workspace, team_id)
    membership = repository.find_membership(session, team, user_id)
    if membership is not None:
        session.delete(membership)
        session.flush()
    return team


def delete_team(session: Session, *, workspace: Workspace, team_id: int) -> None:
    session.delete(get_team_or_404(session, workspace, team_id))
    session.flush()


@dataclass(frozen=True)
class SignIn:
    """What came of a sign-in: a session token, or why not (``retry_after`` when throttled)."""

    token: str | None = None
    refusal: TidingsError | None = None
    retry_after: timedelta | None = None


def attempt_sign_in(
    session: Session,
    *,
    workspace_slug: str,
    email: str,
    password: str,
    address: str | None,
    now: datetime,
) -> SignIn:
    """Sign a user in, unless the account or the address has failed too often lately.

    A throttled try is refused before the password is even checked (the right password too),
    and every failure is written, so this transaction is committed either way.
    """
    subjects = {
        f"account:{workspace_slug.strip().lower()}:{email.strip().lower()}"[:400]: (
            ACCOUNT_FREE_FAILURES
        ),
    }
    if address:
        subjects[f"address:{address}"[:400]] = ADDRESS_FREE_FAILURES
    throttles = {s: session.get(SignInThrottle, s) for s in subjects}
    blocked = [t.blocked_until for t in throttles.values() if t and t.blocked_until]
    wait = max((until - now for until in blocked), default=timedelta(0))
    record = partial(
        _record_sign_in, session, workspace_slug=workspace_slug, email=email, address=address
    )
    if wait > timedelta(0):
        audit.warning("sign-in refused while throttled: %s", ", ".join(subjects))
        record(outcome="throttled", now=now)
        message = f"too many failed sign-ins; try again in {math.ceil(wait.total_seconds())} s"
        return SignIn(refusal=TidingsError("throttled", message, None, 429), retry_after=wait)
    try:
        _, token = open_web_session(
            session, workspace_slug=workspace_slug, email=email, password=password, now=now
        )
    except TidingsError as error:
        for subject, free in subjects.items():
            throttle = throttles[subject]
            if throttle is None or now - throttle.last_failure_at > SIGN_IN_MEMORY:
                throttle = session.merge(SignInThrottle(subject=subject, failures=0))
            throttle.failures += 1
            throttle.last_failure_at = now
            throttle.blocked_until = now + sign_in_wait(throttle.failures, free=free)
        audit.warning("sign-in failed: %s", ", ".join(subjects))
        record(outcome="failed", now=now)
        return SignIn(refusal=error)
    for subject, throttle in throttles.items():
        if throttle is not None and subject.startswith("account:"):
            session.delete(throttle)  # the account's owner is back; the address keeps count
    audit.info("signed in: %s", next(iter(subjects)))
    record(outcome="signed_in", now=now)
    return SignIn(token=token)


def _record_sign_in(
    session: Session,
    *,
    workspace_slug: str,
    email: str,
    address: str | None,
    outcome: str,
    now: datetime,
) -> None:
    workspace = repository.get_workspace_by_slug(session, workspace_slug.strip().lower())
    session.add(
        SignInRecord(
            workspace_id=workspace.id if workspace is not None else None,
            email=email.strip().lower()[:320],
            address=(address or None) and address[:64],
            outcome=outcome,
            at=now,
        )
    )


def sign_in_records(
    session: Session, workspace: Workspace, *, before_id: int | None, limit: int
) -> Sequence[SignInRecord]:
    """The workspace's sign-in attempts, newest first."""
    query = select(SignInRecord).where(SignInRecord.workspace_id == workspace.id)
    if before_id is not None:
        query = query.where(SignInRecord.id < before_id)
    return session.scalars(query.order_by(SignInRecord.id.desc()).limit(limit)).all()


PRUNE_CHUNK = 5000


def prune_sign_in_records(session: Session, *, now: datetime, keep_days: int) -> int:
    """Forget sign-in attempts older than ``keep_days``, and the throttles of addresses that
    have been quiet for a day; a chunk at a time, so the writer is never held for long (the
    next run takes the rest). Returns how many records went."""
    cutoff = now - timedelta(days=keep_days)
    oldest = (
        select(SignInRecord.id)
        .where(SignInRecord.at < cutoff)
        .order_by(SignInRecord.at)
        .limit(PRUNE_CHUNK)
        .scalar_subquery()
    )
    gone = session.execute(
        delete(SignInRecord).where(SignInRecord.id.in_(oldest)).returning(SignInRecord.id)
    ).all()
    quiet = now - timedelta(days=1)
    session.execute(
        delete(SignInThrottle).where(
            SignInThrottle.last_failure_at < quiet,
            or_(SignInThrottle.blocked_until.is_(None), SignInThrottle.blocked_until < now),
        )
    )
    return len(gone)
