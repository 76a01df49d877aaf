"""E-mail: sender identities, templates, the e-mail outbox's dispatcher, open and click
tracking, unsubscribing and bounces (issue #7)."""
