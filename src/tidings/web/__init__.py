"""The browser app for agents and marketers: pages served by the app itself, talking to the
same JSON API as every other client (with the session cookie and a CSRF token)."""
