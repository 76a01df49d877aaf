"""The outgoing pipeline: queue, decide, dispatch, retry, trace (architecture guide)."""
