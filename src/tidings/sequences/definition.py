"""What a sequence is (S1): a versioned graph of steps, as written in its file format.

The same models read the API's JSON and the export/import file (S6), so one set of rules
decides what a valid sequence is. Pydantic checks each step's shape; ``check_graph`` checks the
graph as a whole: every branch leads somewhere, every step can be reached, and no loop can spin
without waiting. Pure: no storage, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import time, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from tidings.conditions.domain import (
    MAX_CONDITION_PARTS,
    Condition,
    Duration,
    Matcher,
    count_parts,
    error_path,
    steps_named,
)
from tidings.kernel.errors import TidingsError, invalid
from tidings.kernel.templating import check_template

FORMAT = "tidings.sequence/v1"
STEP_ID = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
StepId = Annotated[str, Field(pattern=STEP_ID)]
_STRICT = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Window(BaseModel):
    """When a step may run, in the contact's time zone: these weekdays, from ``start`` to
    ``end`` (``end`` before ``start`` spans midnight)."""

    model_config = _STRICT
    days: tuple[Weekday, ...] = Field(default=WEEKDAYS, min_length=1)
    start: time = time(9, 0)
    end: time = time(20, 0)

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == self.end:
            raise ValueError("start and end are the same time: the window would be empty")
        if len(set(self.days)) != len(self.days):
            raise ValueError("a weekday is listed twice")
        return self


class WeeklyTime(BaseModel):
    """The next of these weekdays at this local time."""

    model_config = _STRICT
    days: tuple[Weekday, ...] = Field(min_length=1)
    time: time


class TemplateRef(BaseModel):
    """An approved WhatsApp template; a text parameter may name a contact field
    (``{"type": "text", "field": "first_name", "fallback": "friend"}``)."""

    model_config = _STRICT
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=16)
    components: list[dict[str, Any]] = Field(default_factory=list)


class StepBase(BaseModel):
    model_config = _STRICT
    id: StepId
    title: str | None = Field(None, max_length=200)
    delay: Duration | None = None  # waited on arrival, before the window is applied
    window: Window | None = None
    next: StepId | None = None  # absent: the enrollment completes after this step

    def links(self) -> Iterator[tuple[str, str]]:
        """Each step this one may lead to, with the field that names it."""
        if self.next is not None:
            yield "next", self.next

    def targets(self) -> Iterator[str]:
        for _, target in self.links():
            yield target


class SendWhatsApp(StepBase):
    """Free-form ``text`` while the contact's 24-hour window is open, otherwise ``template``
    (P1); either may be absent, and a step that cannot send is skipped with the reason."""

    type: Literal["send_whatsapp"]
    text: str | None = Field(None, min_length=1, max_length=4096)
    template: TemplateRef | None = None
    purpose: Literal["marketing", "utility"] = "marketing"

    @field_validator("text")
    @classmethod
    def _compiles(cls, text: str | None) -> str | None:
        return None if text is None else _compiling(text)

    @model_validator(mode="after")
    def _something_to_send(self) -> SendWhatsApp:
        if self.text is None and self.template is None:
            raise ValueError("give text (inside the 24-hour window), template, or both")
        return self


class SendEmail(StepBase):
    """An e-mail from the workspace's default sender: either a stored e-mail ``template`` (by
    name; edits to it reach the sequence's later sends), or ``subject`` and the HTML ``body``
    written in the step. Both are Jinja in the sandbox (``{{ contact.first_name }}``,
    ``{{ unsubscribe_url }}``); ``text`` is the plain-text part, generated from the HTML when
    absent."""

    type: Literal["send_email"]
    template: str | None = Field(None, min_length=1, max_length=200)
    subject: str | None = Field(None, min_length=1, max_length=300)
    body: str | None = Field(None, min_length=1, max_length=100_000)
    text: str | None = Field(None, min_length=1, max_length=100_000)
    purpose: Literal["marketing", "utility"] = "marketing"

    @field_validator("subject", "body", "text")
    @classmethod
    def _compiles(cls, text: str | None) -> str | None:
        return None if text is None else _compiling(text)

    @model_validator(mode="after")
    def _one_source(self) -> SendEmail:
        written = [k for k in ("subject", "body", "text") if getattr(self, k) is not None]
        if self.template is not None and written:
            raise ValueError(f"give a template or {', '.join(written)}, not both")
        if self.template is None and (self.subject is None or self.body is None):
            raise ValueError("give a template, or a subject and a body")
        return self


class Wait(StepBase):
    """Wait a ``duration``; ``until`` a weekday and time; or ``until_event`` with a
    ``timeout``, going to ``next`` on the event and to ``on_timeout`` (or ``next``) otherwise."""

    type: Literal["wait"]
    duration: Duration | None = None
    until: WeeklyTime | None = None
    until_event: Matcher | None = None
    timeout: Duration | None = None
    on_timeout: StepId | None = None

    @model_validator(mode="after")
    def _one_way_to_wait(self) -> Wait:
        given = [k for k in ("duration", "until", "until_event") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of duration, until, until_event")
        if self.until_event is not None and self.timeout is None:
            raise ValueError("until_event needs a timeout: nobody waits forever")
        if self.until_event is None and (self.timeout is not None or self.on_timeout is not None):
            raise ValueError("timeout and on_timeout belong to until_event")
        return self

    def links(self) -> Iterator[tuple[str, str]]:
        yield from super().links()
        if self.on_timeout is not None:
            yield "on_timeout", self.on_timeout


class Branch(BaseModel):
    model_config = _STRICT
    percent: int = Field(ge=1, le=99)
    next: StepId
    name: str | None = Field(None, max_length=64)


class Winner(BaseModel):
    """After ``after`` from publication, every new arrival takes the branch that did best."""

    model_config = _STRICT
    metric: Literal["read", "replied", "clicked", "converted"]
    after: Duration


class IfElse(StepBase):
    """A yes/no branch judged on event time, after the sequence's settle delay (S8)."""

    type: Literal["condition"]
    if_: Condition = Field(alias="if")
    yes: StepId
    no: StepId

    def links(self) -> Iterator[tuple[str, str]]:
        yield "yes", self.yes
        yield "no", self.no

    @field_validator("if_", mode="before")
    @classmethod
    def _not_enormous(cls, value: Any) -> Any:
        # Counted before it is parsed: an enormous tree costs nothing to refuse.
        parts = count_parts(value)
        if parts > MAX_CONDITION_PARTS:
            raise ValueError(
                f"a condition has at most {MAX_CONDITION_PARTS} parts; this one has {parts}"
            )
        return value

    @model_validator(mode="after")
    def _no_next(self) -> IfElse:
        if self.next is not None:
            raise ValueError("a condition goes on by yes and no, not next")
        return self


class Split(StepBase):
    """A/B (or more): each enrollment takes a branch by the percentages, stably."""

    type: Literal["split"]
    branches: list[Branch] = Field(min_length=2, max_length=10)
    winner: Winner | None = None

    @model_validator(mode="after")
    def _adds_up(self) -> Split:
        if sum(b.percent for b in self.branches) != 100:
            raise ValueError("the branches' percentages must add up to 100")
        if self.next is not None:
            raise ValueError("a split goes on by its branches, not next")
        return self

    def links(self) -> Iterator[tuple[str, str]]:
        for index, branch in enumerate(self.branches):
            yield f"branches[{index}].next", branch.next


class AddTag(StepBase):
    type: Literal["add_tag"]
    tag: str = Field(min_length=1, max_length=64)


class RemoveTag(StepBase):
    type: Literal["remove_tag"]
    tag: str = Field(min_length=1, max_length=64)


class AddToList(StepBase):
    type: Literal["add_to_list"]
    list: str = Field(min_length=1, max_length=200)


class RemoveFromList(StepBase):
    type: Literal["remove_from_list"]
    list: str = Field(min_length=1, max_length=200)


class SetField(StepBase):
    type: Literal["set_field"]
    field: str = Field(min_length=1, max_length=64)
    value: str | int | float | bool | None


class ChangeScore(StepBase):
    type: Literal["change_score"]
    by: int = Field(ge=-1_000_000, le=1_000_000)

    @field_validator("by")
    @classmethod
    def _not_zero(cls, by: int) -> int:
        if by == 0:
            raise ValueError("a change of 0 changes nothing")
        return by


class Notify(StepBase):
    """A note for the team on the contact's conversation, assigned to ``agent`` (an e-mail)
    when given; with ``task_due`` it is a follow-up task due that long after."""

    type: Literal["notify"]
    message: str = Field(min_length=1, max_length=2000)
    agent: str | None = Field(None, max_length=320)
    task_due: Duration | None = None

    @field_validator("message")
    @classmethod
    def _compiles(cls, text: str) -> str:
        return _compiling(text)


class CallWebhook(StepBase):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2000)
    payload: dict[str, Any] = Field(default_factory=dict)


class EnrollElsewhere(StepBase):
    type: Literal["enroll"]
    sequence: str = Field(min_length=1, max_length=200)


class Goal(StepBase):
    """Reached when ``when`` happens, from anywhere in the flow: the contact is pulled
    forward to here, counted as converted, and goes on to ``next`` (or leaves)."""

    type: Literal["goal"]
    when: Matcher


class Exit(StepBase):
    type: Literal["exit"]
    reason: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _no_next(self) -> Exit:
        if self.next is not None:
            raise ValueError("nothing follows an exit")
        return self


Step = Annotated[
    SendWhatsApp
    | SendEmail
    | Wait
    | IfElse
    | Split
    | AddTag
    | RemoveTag
    | AddToList
    | RemoveFromList
    | SetField
    | ChangeScore
    | Notify
    | CallWebhook
    | EnrollElsewhere
    | Goal
    | Exit,
    Field(discriminator="type"),
]
STEP_TYPES = (
    "send_whatsapp", "send_email", "wait", "condition", "split", "add_tag", "remove_tag",
    "add_to_list", "remove_from_list", "set_field", "change_score", "notify", "webhook",
    "enroll", "goal", "exit",
)  # fmt: skip


class Reentry(BaseModel):
    """May a contact enter again after leaving? Never while still enrolled, whatever this says."""

    model_config = _STRICT
    mode: Literal["never", "always", "after"] = "never"
    after: Duration | None = None

    @model_validator(mode="after")
    def _after_needs_time(self) -> Reentry:
        if (self.mode == "after") != (self.after is not None):
            raise ValueError('mode "after" needs after (a duration), and only it does')
        return self


class Settings(BaseModel):
    model_config = _STRICT
    number_id: int | None = Field(None, description="the workspace's first number by default")
    reentry: Reentry = Field(default_factory=Reentry)
    exit_on_reply: bool = False  # as HubSpot: a reply ends the enrollment
    exit_on: list[Matcher] = Field(default_factory=list, max_length=20)
    # S8: a condition is judged this long after its moment, on events that happened by then.
    settle: Duration = Field(default_factory=lambda: timedelta(minutes=5))
    window: Window | None = None  # the sending window of send steps without their own


class TemplateSpec(BaseModel):
    """A template the sequence uses, carried in its file so another workspace can define it."""

    model_config = _STRICT
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=16)
    category: Literal["marketing", "utility", "authentication"]
    components: list[dict[str, Any]] = Field(default_factory=list)


class EmailTemplateSpec(BaseModel):
    """An e-mail template the sequence uses, carried in its file for another workspace."""

    model_config = _STRICT
    name: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=300)
    html: str = Field(min_length=1, max_length=100_000)
    text: str | None = Field(None, min_length=1, max_length=100_000)

    @field_validator("subject", "html", "text")
    @classmethod
    def _compiles(cls, text: str | None) -> str | None:
        return None if text is None else _compiling(text)


class SequenceDefinition(BaseModel):
    """One version of a sequence; the first step is where every enrollment starts."""

    model_config = _STRICT
    format: Literal["tidings.sequence/v1"] = "tidings.sequence/v1"
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    settings: Settings = Field(default_factory=Settings)
    triggers: list[Matcher] = Field(default_factory=list, max_length=20)
    steps: list[Step] = Field(min_length=1, max_length=500)
    templates: list[TemplateSpec] = Field(default_factory=list)
    email_templates: list[EmailTemplateSpec] = Field(default_factory=list)
    _index: dict[str, Any] | None = PrivateAttr(None)
    _memo: dict[str, Any] = PrivateAttr(default_factory=dict)

    # The runner asks for steps and memos several times per enrollment: the private
    # attributes are read from pydantic's own dict, not through its ``__getattr__`` (which
    # cost more than the lookups themselves).

    def remember(self, key: str, compute: Callable[[], Any]) -> Any:
        """What ``compute`` returns, worked out once per loaded definition (it never changes)."""
        memo: dict[str, Any] = self.__pydantic_private__["_memo"]  # type: ignore[index]
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def step(self, step_id: str) -> Any:
        return self.index()[step_id]

    def index(self) -> dict[str, Any]:
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        found = private["_index"]
        if found is None:
            found = private["_index"] = {s.id: s for s in self.steps}
        return found  # type: ignore[no-any-return]

    @property
    def entry(self) -> str:
        return str(self.steps[0].id)

    def goals(self) -> list[Goal]:
        return [s for s in self.steps if isinstance(s, Goal)]


def _compiling(text: str) -> str:
    try:
        return check_template(text, field="text")
    except TidingsError as error:
        raise ValueError(error.message) from None


# --- the graph as a whole -----------------------------------------------------------------------


def check_graph(definition: SequenceDefinition) -> None:
    """Raises ``TidingsError`` (422) naming the step at fault: a duplicate id, a branch to a
    step that does not exist, a step nothing leads to, or a loop that never waits."""
    seen: dict[str, int] = {}
    for position, step in enumerate(definition.steps):
        if step.id in seen:
            raise invalid(
                "duplicate_step",
                f"step id {step.id!r} is also used by steps[{seen[step.id]}]",
                field=f"steps[{position}].id",
            )
        seen[step.id] = position
    for position, step in enumerate(definition.steps):
        for name, target in step.links():
            if target not in seen:
                raise invalid(
                    "unknown_step",
                    f"no step has the id {target!r}",
                    field=f"steps[{position}].{name}",
                )
        for named in _condition_steps(step):
            if named not in seen:
                raise invalid(
                    "unknown_step",
                    f"the condition names step {named!r}, which does not exist",
                    field=f"steps[{position}].if",
                )
    _check_reachable(definition, seen)
    _check_loops_wait(definition, seen)


def _condition_steps(step: Any) -> set[str]:
    return steps_named(step.if_) if isinstance(step, IfElse) else set()


def _check_reachable(definition: SequenceDefinition, seen: dict[str, int]) -> None:
    index = definition.index()
    # Goals are entered from anywhere when their event happens, so they are starting points too.
    frontier = [definition.entry, *(g.id for g in definition.goals())]
    reached = set(frontier)
    while frontier:
        for target in index[frontier.pop()].targets():
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    for step in definition.steps:
        if step.id not in reached:
            raise invalid(
                "unreachable_step",
                f"nothing leads to step {step.id!r}",
                field=f"steps[{seen[step.id]}]",
            )


def takes_time(step: Any) -> bool:
    """A step that always waits before the enrollment moves on (breaks a loop)."""
    return isinstance(step, Wait) or (step.delay is not None and step.delay.total_seconds() > 0)


def _check_loops_wait(definition: SequenceDefinition, seen: dict[str, int]) -> None:
    """Depth-first search over the steps that take no time: any cycle among them would spin."""
    index = definition.index()
    instant = {s.id for s in definition.steps if not takes_time(s)}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(step_id: str, path: list[str]) -> None:
        state[step_id] = 1
        for target in index[step_id].targets():
            if target not in instant:
                continue
            if state.get(target) == 1:
                loop = [*path[path.index(target) :], target] if target in path else [target]
                raise invalid(
                    "loop_without_wait",
                    "these steps loop without a wait: " + " → ".join(loop),
                    field=f"steps[{seen[target]}]",
                )
            if target not in state:
                visit(target, [*path, target])
        state[step_id] = 2

    for step_id in (s.id for s in definition.steps if s.id in instant):  # file order: stable
        if step_id not in state:
            visit(step_id, [step_id])


def parse_definition(data: Any) -> SequenceDefinition:
    """Read and check a sequence; raises ``TidingsError`` (422) naming the field at fault
    (``steps[2].duration``) for anything malformed."""
    from pydantic import ValidationError

    try:
        definition = SequenceDefinition.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = location(first["loc"], data)
        if first["type"] in ("union_tag_not_found", "union_tag_invalid"):
            field += ".type"  # a step without a type, or with one we do not know
        raise invalid("invalid_sequence", _message(first), field=field) from None
    check_graph(definition)
    return definition


def _message(error: Any) -> str:
    kinds = ", ".join(STEP_TYPES)
    if error["type"] == "union_tag_not_found":
        return f"every step needs a type, one of: {kinds}"
    if error["type"] == "union_tag_invalid":
        return f"{error['ctx']['tag']!r} is not a step type; use one of: {kinds}"
    if error["type"] == "string_pattern_mismatch" and error["ctx"]["pattern"] == STEP_ID:
        return (
            f"{error['input']!r} is not a step id: lowercase letters, digits, - and _, "
            "starting with a letter or digit, at most 64"
        )
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def location(loc: tuple[Any, ...], data: Any) -> str:
    """A Pydantic location as a path: ``steps[2].template.name``; the step-kind tags Pydantic
    adds (``steps.2.wait.duration``) are left out."""
    return error_path(loc, data, tag_keys=("type",)) or "sequence"


def dump_definition(definition: SequenceDefinition) -> dict[str, Any]:
    """The canonical form stored and exported: defaults left out, durations as text."""
    return definition.model_dump(mode="json", by_alias=True, exclude_defaults=True) | {
        "format": FORMAT
    }
