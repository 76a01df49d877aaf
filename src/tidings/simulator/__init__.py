"""A local stand-in for Meta's WhatsApp Cloud API: the demo's and the tests' WhatsApp."""
