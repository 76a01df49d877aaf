"""HTTP routes of the workspace, its agents and API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tidings.api.deps import Context, decode_cursor, encode_cursor
from tidings.kernel.errors import not_found
from tidings.workspaces import repository, service
from tidings.workspaces.domain import Role
from tidings.workspaces.orm import Team, Workspace
from tidings.workspaces.schemas import (
    AgentCreate,
    AgentRead,
    AgentUpdate,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    SignInPage,
    SignInRead,
    TeamCreate,
    TeamRead,
    WorkspaceRead,
    WorkspaceUpdate,
)

router = APIRouter(tags=["workspace"])


def _workspace_read(workspace: Workspace) -> WorkspaceRead:
    return WorkspaceRead(
        id=workspace.id,
        slug=workspace.slug,
        name=workspace.name,
        default_region=workspace.default_region,
        timezone=workspace.timezone,
        locale=workspace.locale,
        policy=service.policy_for(workspace).model_dump(mode="json"),
        policy_overrides=workspace.policy_overrides,
        created_at=workspace.created_at,
        updated_at=workspace.updated_at,
    )


@router.get("/workspace")
def read_workspace(ctx: Context) -> WorkspaceRead:
    return _workspace_read(ctx.workspace)


@router.patch("/workspace")
def update_workspace(body: WorkspaceUpdate, ctx: Context) -> WorkspaceRead:
    ctx.require(Role.ADMIN, action="changing workspace settings")
    workspace = service.update_workspace(
        ctx.session,
        workspace=ctx.workspace,
        changes=body.model_dump(exclude_unset=True),
        now=ctx.now,
    )
    return _workspace_read(workspace)


@router.get("/agents")
def list_agents(ctx: Context) -> list[AgentRead]:
    return [AgentRead.model_validate(u) for u in repository.list_users(ctx.session, ctx.workspace)]


@router.get("/agents/{agent_id}")
def read_agent(agent_id: int, ctx: Context) -> AgentRead:
    return AgentRead.model_validate(service.get_user_or_404(ctx.session, ctx.workspace, agent_id))


@router.post("/agents", status_code=201)
def create_agent(body: AgentCreate, ctx: Context) -> AgentRead:
    ctx.require(Role.ADMIN, action="adding agents")
    user = service.create_user(
        ctx.session,
        workspace=ctx.workspace,
        email=body.email,
        name=body.name,
        role=body.role,
        password=body.password,
        granted_by=ctx.principal.role,
        now=ctx.now,
    )
    return AgentRead.model_validate(user)


@router.patch("/agents/{agent_id}")
def update_agent(agent_id: int, body: AgentUpdate, ctx: Context) -> AgentRead:
    ctx.require(Role.ADMIN, action="changing agents")
    user = service.update_user(
        ctx.session,
        workspace=ctx.workspace,
        user_id=agent_id,
        changes=body.model_dump(exclude_unset=True),
        granted_by=ctx.principal.role,
        now=ctx.now,
    )
    return AgentRead.model_validate(user)


@router.post("/agents/{agent_id}/sign-out-everywhere")
def sign_out_everywhere(agent_id: int, ctx: Context) -> dict[str, int]:
    """End every web session of a user at once: their own, or anyone's for an admin."""
    if agent_id != ctx.principal.user_id:
        ctx.require(Role.ADMIN, action="signing other users out")
    ended = service.end_sessions_everywhere(
        ctx.session, workspace=ctx.workspace, user_id=agent_id, now=ctx.now
    )
    return {"sessions_ended": ended}


@router.get("/audit/sign-ins")
def list_sign_ins(
    ctx: Context,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> SignInPage:
    """Sign-in attempts to this workspace, newest first: who, from which address, and whether
    they signed in, failed, or were refused while throttled (#21)."""
    ctx.require(Role.ADMIN, action="reading the sign-in record")
    rows = service.sign_in_records(
        ctx.session, ctx.workspace, before_id=decode_cursor(cursor), limit=limit
    )
    return SignInPage(
        items=[SignInRead.model_validate(row) for row in rows],
        next_cursor=encode_cursor(rows[-1].id) if len(rows) == limit else None,
    )


@router.get("/api-keys")
def list_api_keys(ctx: Context) -> list[ApiKeyRead]:
    ctx.require(Role.ADMIN, action="listing API keys")
    return [
        ApiKeyRead.model_validate(k) for k in repository.list_api_keys(ctx.session, ctx.workspace)
    ]


@router.post("/api-keys", status_code=201)
def create_api_key(body: ApiKeyCreate, ctx: Context) -> ApiKeyCreated:
    ctx.require(Role.ADMIN, action="creating API keys")
    key, plaintext = service.create_api_key(
        ctx.session,
        workspace=ctx.workspace,
        name=body.name,
        role=body.role,
        granted_by=ctx.principal.role,
        created_by_user_id=ctx.principal.user_id,
        now=ctx.now,
    )
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=plaintext)


@router.delete("/api-keys/{key_id}")
def revoke_api_key(key_id: int, ctx: Context) -> ApiKeyRead:
    ctx.require(Role.ADMIN, action="revoking API keys")
    if repository.get_api_key(ctx.session, ctx.workspace, key_id) is None:
        raise not_found("API key")
    key = service.revoke_api_key(ctx.session, workspace=ctx.workspace, key_id=key_id, now=ctx.now)
    return ApiKeyRead.model_validate(key)


def _team(team: Team, member_ids: list[int]) -> TeamRead:
    return TeamRead(id=team.id, name=team.name, member_ids=member_ids, created_at=team.created_at)


def _team_with_members(ctx: Context, team_id: int) -> TeamRead:
    for team, members in service.list_teams(ctx.session, ctx.workspace):
        if team.id == team_id:
            return _team(team, members)
    raise not_found("team")


@router.get("/teams")
def list_teams(ctx: Context) -> list[TeamRead]:
    return [_team(t, m) for t, m in service.list_teams(ctx.session, ctx.workspace)]


@router.post("/teams", status_code=201)
def create_team(body: TeamCreate, ctx: Context) -> TeamRead:
    ctx.require(Role.ADMIN, action="managing teams")
    team = service.create_team(ctx.session, workspace=ctx.workspace, name=body.name, now=ctx.now)
    return _team(team, [])


@router.put("/teams/{team_id}/members/{user_id}")
def add_team_member(team_id: int, user_id: int, ctx: Context) -> TeamRead:
    ctx.require(Role.ADMIN, action="managing teams")
    service.add_team_member(ctx.session, workspace=ctx.workspace, team_id=team_id, user_id=user_id)
    return _team_with_members(ctx, team_id)


@router.delete("/teams/{team_id}/members/{user_id}")
def remove_team_member(team_id: int, user_id: int, ctx: Context) -> TeamRead:
    ctx.require(Role.ADMIN, action="managing teams")
    service.remove_team_member(
        ctx.session, workspace=ctx.workspace, team_id=team_id, user_id=user_id
    )
    return _team_with_members(ctx, team_id)


@router.delete("/teams/{team_id}", status_code=204)
def delete_team(team_id: int, ctx: Context) -> None:
    ctx.require(Role.ADMIN, action="managing teams")
    service.delete_team(ctx.session, workspace=ctx.workspace, team_id=team_id)
