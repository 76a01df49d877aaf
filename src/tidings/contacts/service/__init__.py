"""Use cases of contacts. Every function runs inside the caller's transaction and never commits.

Each change a person would want to see later (tag added, list joined, consent changed …) is
also appended to the contact's timeline in the same transaction. The modules split the use
cases by concern; this package exposes them all under one name.
"""

from tidings.contacts.service.audience import (
    ContactFilter,
    Member,
    audience_countries,
    audience_criteria,
    audience_page,
    count_audience,
    whatsapp_ids,
)
from tidings.contacts.service.consent import (
    SendingFacts,
    countries,
    external_ids,
    opt_out,
    sending_facts,
    set_consent,
    set_external_id,
)
from tidings.contacts.service.facts import (
    Profile,
    events_after,
    events_of,
    field_change,
    latest_event_id,
    list_names,
    profiles,
    tag_names,
)
from tidings.contacts.service.fields import (
    create_field_definition,
    delete_field_definition,
    field_specs,
)
from tidings.contacts.service.labels import (
    add_tags,
    change_list_by_name,
    create_list,
    delete_list,
    delete_tag,
    ensure_tags,
    get_list_or_404,
    join_list,
    leave_list,
    remove_tag,
)
from tidings.contacts.service.matching import (
    NotAudienceConditionError,
    Sources,
    consents_of,
    count_matching,
    matching_ids_query,
)
from tidings.contacts.service.records import (
    MATCH_KEYS,
    ContactView,
    count_all_contacts,
    create_contact,
    delete_contact,
    describe_contacts,
    get_contact_or_404,
    update_contact,
    upsert_contact,
)
from tidings.contacts.service.timeline import (
    EVENT_TYPE_MAX,
    caused_at_depth,
    customers_acquired,
    log_event,
    record_event,
)

__all__ = [
    "EVENT_TYPE_MAX",
    "MATCH_KEYS",
    "ContactFilter",
    "ContactView",
    "Member",
    "NotAudienceConditionError",
    "Profile",
    "SendingFacts",
    "Sources",
    "add_tags",
    "audience_countries",
    "audience_criteria",
    "audience_page",
    "caused_at_depth",
    "change_list_by_name",
    "consents_of",
    "count_all_contacts",
    "count_audience",
    "count_matching",
    "countries",
    "create_contact",
    "create_field_definition",
    "create_list",
    "customers_acquired",
    "delete_contact",
    "delete_field_definition",
    "delete_list",
    "delete_tag",
    "describe_contacts",
    "ensure_tags",
    "events_after",
    "events_of",
    "external_ids",
    "field_change",
    "field_specs",
    "get_contact_or_404",
    "get_list_or_404",
    "join_list",
    "latest_event_id",
    "leave_list",
    "list_names",
    "log_event",
    "matching_ids_query",
    "opt_out",
    "profiles",
    "record_event",
    "remove_tag",
    "sending_facts",
    "set_consent",
    "set_external_id",
    "tag_names",
    "update_contact",
    "upsert_contact",
    "whatsapp_ids",
]
