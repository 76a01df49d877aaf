"""Contacts (C1, C2): identity, fields, tags, lists, consent, external ids and the timeline."""
