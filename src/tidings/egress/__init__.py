"""The one guard on every request the server makes to an address a user or an admin chose
(outgoing webhooks, a sequence step's or a rule's webhook, a WhatsApp number's API address):
see :mod:`tidings.egress.policy` for what it refuses and :mod:`tidings.egress.http` for how."""
